use std::collections::HashMap;
use std::fmt::Write;

use bench_suite::data::{lorem, Rng, WORDS};
use bench_suite::text::*;

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn slugify_titles() {
    for seed in 0..600 {
        let title = lorem(seed, 6);
        let slug = slugify(&title);
        assert!(!slug.contains("--"), "{slug}");
        assert!(!slug.starts_with('-') && !slug.ends_with('-'), "{slug}");
        assert_eq!(slug, slug.to_lowercase());
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn slugify_unicode_and_punctuation() {
    assert_eq!(slugify("Hello, Wörld!"), "hello-wörld");
    assert_eq!(slugify("  Straße -- Ærø  "), "straße-ærø");
    let mut seen = std::collections::HashSet::new();
    for seed in 0..400 {
        let text = format!("{}!!! ({}) -- {}", lorem(seed, 3), seed, lorem(seed + 1, 2));
        seen.insert(slugify(&text));
    }
    assert!(seen.len() > 390);
}

macro_rules! wrap_widths {
    ($($name:ident: $width:expr, $words:expr;)*) => {$(
        #[test]
        #[cfg_attr(feature = "checked", leakcheck::leakcheck)]
        fn $name() {
            let text = lorem($width as u64, $words);
            let lines = wrap(&text, $width);
            for line in &lines {
                assert!(line.chars().count() <= $width || !line.contains(' '), "{line:?}");
            }
            let rejoined = lines.join(" ");
            assert_eq!(rejoined.split_whitespace().count(), text.split_whitespace().count());
        }
    )*};
}

wrap_widths! {
    wrap_20_columns: 20, 3000;
    wrap_40_columns: 40, 3000;
    wrap_72_columns: 72, 4000;
    wrap_80_columns: 80, 4000;
    wrap_132_columns: 132, 5000;
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn render_table_of_people() {
    let people = bench_suite::sorting::random_people(3, 400);
    let rows: Vec<Vec<String>> = people
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.city.clone(),
                p.age.to_string(),
                format!("{:+}", p.score),
            ]
        })
        .collect();
    let table = render_table(&["name", "city", "age", "score"], &rows);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), rows.len() + 2);
    let width = lines[0].chars().count();
    assert!(lines.iter().all(|l| l.chars().count() == width));
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn render_table_unicode_cells() {
    let rows: Vec<Vec<String>> = (0..300)
        .map(|i| {
            vec![
                WORDS[i % WORDS.len()].repeat(1 + i % 3),
                format!("{i}"),
                "naïve café".into(),
            ]
        })
        .collect();
    let table = render_table(&["word", "n", "note"], &rows);
    assert!(table.contains("| Ærø"));
    assert_eq!(table.lines().count(), 302);
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn word_frequencies_count_every_word() {
    let text = lorem(11, 6000);
    let counts = word_frequencies(&text);
    let total: usize = counts.values().sum();
    assert_eq!(total, text.split_whitespace().count());
    assert!(counts
        .keys()
        .all(|k| k.chars().all(|c| c.is_alphanumeric())));
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn top_words_break_ties_alphabetically() {
    let text = lorem(12, 5000);
    let top = top_words(&text, 10);
    assert_eq!(top.len(), 10);
    for pair in top.windows(2) {
        assert!(pair[0].1 > pair[1].1 || (pair[0].1 == pair[1].1 && pair[0].0 < pair[1].0));
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn templates_render_many_variables() {
    let template =
        "Dear {{ name }},\nyour order {{order}} to {{city}} ships {{when}}. {{missing}}\n";
    let mut out = String::new();
    for i in 0..800 {
        let mut rng = Rng::new(i);
        let vars: HashMap<&str, String> = HashMap::from([
            ("name", bench_suite::data::person_name(&mut rng)),
            ("order", format!("ORD-{i:08}")),
            ("city", rng.pick(bench_suite::data::CITIES).to_string()),
            ("when", "tomorrow".to_string()),
        ]);
        out.push_str(&render_template(template, &vars));
    }
    assert_eq!(out.matches("{{missing}}").count(), 800);
    assert!(!out.contains("{{ name }}"));
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn templates_keep_unclosed_braces() {
    let vars = HashMap::from([("a", "1".to_string())]);
    for i in 0..2000 {
        let t = format!("{{{{a}}}} and {{{{b}}}} and {{{{unclosed {i}");
        let r = render_template(&t, &vars);
        assert!(r.starts_with("1 and {{b}} and {{unclosed"), "{r}");
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn csv_round_trip() {
    let rows: Vec<Vec<String>> = (0..600)
        .map(|i| {
            vec![
                format!("id{i}"),
                lorem(i, 5),
                format!("say \"{}\"", WORDS[i as usize % 30]),
                "a,b".into(),
            ]
        })
        .collect();
    let csv = to_csv(&rows);
    let parsed: Vec<Vec<String>> = csv
        .lines()
        .map(bench_suite::parse::parse_csv_line)
        .collect();
    assert_eq!(parsed, rows);
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn title_case_sentences() {
    for seed in 0..400 {
        let t = title_case(&lorem(seed, 12));
        assert!(
            t.split(' ')
                .all(|w| w.chars().next().is_none_or(|c| !c.is_lowercase())),
            "{t}"
        );
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn human_bytes_table() {
    let mut lines = Vec::new();
    for i in 0..3000u64 {
        let n = i * i * 977;
        lines.push(format!("{n:>20} {}", human_bytes(n)));
    }
    assert_eq!(human_bytes(1536), "1.5 KiB");
    assert_eq!(human_bytes(10), "10 B");
    assert!(lines.iter().any(|l| l.ends_with("GiB")));
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn group_thousands_round_trips() {
    for i in 0..5000u64 {
        let n = i.wrapping_mul(0x9E37_79B9) % 10_000_000_000;
        let g = group_thousands(n);
        assert_eq!(g.replace(',', "").parse::<u64>().unwrap(), n);
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn edit_distance_between_words() {
    let words: Vec<String> = (0..50).map(|i| lorem(i, 1)).collect();
    let mut total = 0;
    for a in &words {
        for b in &words {
            let d = edit_distance(a, b);
            assert_eq!(d, edit_distance(b, a));
            total += d;
        }
    }
    assert!(total > 0);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn edit_distance_between_sentences() {
    for i in 0..12 {
        let a = lorem(i, 40);
        let b = lorem(i + 100, 40);
        assert!(edit_distance(&a, &b) <= a.chars().count().max(b.chars().count()));
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn anagram_groups_of_words() {
    let mut words: Vec<String> = Vec::new();
    for w in WORDS {
        let mut chars: Vec<char> = w.chars().collect();
        words.push(w.to_string());
        for _ in 0..40 {
            chars.rotate_left(1);
            words.push(chars.iter().collect());
        }
    }
    let groups = anagram_groups(&words);
    assert!(groups.len() <= WORDS.len());
    assert_eq!(groups.values().map(Vec::len).sum::<usize>(), words.len());
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn line_diff_of_a_small_edit() {
    let a: String = (0..250)
        .map(|i| format!("line {i}: {}\n", lorem(i, 4)))
        .collect();
    let b = a
        .replace("line 100:", "line one hundred:")
        .replace("line 7:", "LINE 7:");
    let diff = line_diff(&a, &b);
    assert_eq!(diff.iter().filter(|l| l.starts_with('-')).count(), 2);
    assert_eq!(diff.iter().filter(|l| l.starts_with('+')).count(), 2);
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn line_diff_of_identical_texts() {
    let a: String = (0..250).map(|i| format!("{}\n", lorem(i * 3, 6))).collect();
    let diff = line_diff(&a, &a);
    assert!(diff.iter().all(|l| l.starts_with(' ')));
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn report_built_with_write() {
    let mut out = String::new();
    for i in 0..4000 {
        writeln!(
            out,
            "{i:>6} | {:<12} | {:>10.3} | {:?}",
            WORDS[i % 30],
            i as f64 / 7.0,
            (i, i * 2)
        )
        .unwrap();
    }
    assert_eq!(out.lines().count(), 4000);
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn split_and_join_round_trip() {
    for seed in 0..300 {
        let text = lorem(seed, 30);
        let parts: Vec<&str> = text.split(' ').collect();
        assert_eq!(parts.join(" "), text);
        let owned: Vec<String> = parts.iter().map(|p| p.to_uppercase()).collect();
        assert_eq!(
            owned.concat().len(),
            owned.iter().map(String::len).sum::<usize>()
        );
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn reversed_strings_and_palindromes() {
    let mut palindromes = 0;
    for seed in 0..1500 {
        let word = lorem(seed, 1);
        let rev: String = word.chars().rev().collect();
        let double = format!("{word}{rev}");
        if double.chars().eq(double.chars().rev()) {
            palindromes += 1;
        }
    }
    assert_eq!(palindromes, 1500);
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn case_conversions() {
    for seed in 0..500 {
        let text = lorem(seed, 10);
        let upper = text.to_uppercase();
        assert_eq!(text.to_lowercase().to_uppercase(), upper);
    }
}
