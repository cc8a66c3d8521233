use std::collections::{BTreeMap, HashMap};

use bench_suite::data::{lorem, Rng, WORDS};
use bench_suite::parse::*;

fn vars() -> HashMap<String, f64> {
    HashMap::from([("x".into(), 3.0), ("y".into(), -2.5), ("z".into(), 10.0)])
}

macro_rules! random_expressions {
    ($($name:ident: $seed:expr, $size:expr;)*) => {$(
        #[test]
        #[cfg_attr(feature = "checked", leakcheck::leakcheck)]
        fn $name() {
            let mut rng = Rng::new($seed);
            let vars = vars();
            for _ in 0..40 {
                let src = random_expr(&mut rng, $size);
                let expr = parse_expr(&src).unwrap_or_else(|e| panic!("{src}: {e}"));
                let value = eval(&expr, &vars).unwrap();
                // Display output parses back to the same tree.
                let again = parse_expr(&expr.to_string()).unwrap();
                assert_eq!(again, expr);
                let v2 = eval(&again, &vars).unwrap();
                assert!(value == v2 || (value.is_nan() && v2.is_nan()));
            }
        }
    )*};
}

random_expressions! {
    expressions_of_8_nodes: 1, 8;
    expressions_of_16_nodes: 2, 16;
    expressions_of_24_nodes: 3, 24;
    expressions_of_32_nodes: 4, 32;
    expressions_of_48_nodes: 5, 48;
    expressions_of_64_nodes: 6, 64;
    expressions_of_96_nodes: 7, 96;
    expressions_of_128_nodes: 8, 128;
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn operator_precedence() {
    let cases = [
        ("1 + 2 * 3", 7.0),
        ("(1 + 2) * 3", 9.0),
        ("2 ^ 3 ^ 2", 512.0),
        ("-2 ^ 2", -4.0),
        ("10 - 4 - 3", 3.0),
        ("7 % 4 * 2", 6.0),
        ("max(1, x, z) - min(y, 0)", 12.5),
        ("sum(1, 2, 3, 4) / abs(-2)", 5.0),
    ];
    for _ in 0..150 {
        for (src, want) in cases {
            assert_eq!(
                eval(&parse_expr(src).unwrap(), &vars()).unwrap(),
                want,
                "{src}"
            );
        }
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn syntax_errors_are_reported() {
    let bad = ["1 +", "(1 + 2", "max(1, 2", "1 $ 2", "1 2", ")", "f(,)"];
    for _ in 0..200 {
        for src in bad {
            assert!(parse_expr(src).is_err(), "{src}");
        }
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn unknown_names_fail_evaluation() {
    for i in 0..500 {
        let src = format!("x + {} * 2", WORDS[i % 26]);
        let err = eval(&parse_expr(&src).unwrap(), &vars()).unwrap_err();
        assert!(err.contains("unknown variable"), "{err}");
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn tokenizer_on_long_input() {
    let src: String = (0..1500)
        .map(|i| format!("v{i} * {i}.5 + "))
        .collect::<String>()
        + "0";
    let tokens = tokenize(&src).unwrap();
    assert_eq!(tokens.len(), 1500 * 4 + 1);
}

fn random_ini(seed: u64, sections: usize) -> Ini {
    let mut rng = Rng::new(seed);
    let mut ini: Ini = BTreeMap::new();
    for s in 0..sections {
        let keys = (0..1 + rng.below(12))
            .map(|k| {
                (
                    format!("{}_{k}", rng.pick(&WORDS[..26])),
                    lorem(seed * 100 + s as u64 + k, 3),
                )
            })
            .collect();
        ini.insert(format!("section.{s}"), keys);
    }
    ini
}

macro_rules! ini_round_trips {
    ($($name:ident: $seed:expr, $sections:expr;)*) => {$(
        #[test]
        #[cfg_attr(feature = "checked", leakcheck::leakcheck)]
        fn $name() {
            let ini = random_ini($seed, $sections);
            let text = write_ini(&ini);
            assert_eq!(parse_ini(&text).unwrap(), ini);
        }
    )*};
}

ini_round_trips! {
    ini_round_trip_20_sections: 1, 20;
    ini_round_trip_60_sections: 2, 60;
    ini_round_trip_120_sections: 3, 120;
    ini_round_trip_200_sections: 4, 200;
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn ini_comments_and_globals() {
    let src = "; comment\nglobal = 1\n# other\n[a]\nk = \"quoted value\"\n\n[b]\nx=y\n";
    for _ in 0..500 {
        let ini = parse_ini(src).unwrap();
        assert_eq!(ini[""]["global"], "1");
        assert_eq!(ini["a"]["k"], "quoted value");
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn ini_errors_name_the_line() {
    for i in 0..400 {
        let src = format!("[ok]\na = b\n{}\n[broken\n", "c = d\n".repeat(i % 5));
        let err = parse_ini(&src).unwrap_err();
        assert_eq!(err, format!("line {}: unclosed section", 4 + i % 5));
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn csv_quoted_fields() {
    for i in 0..800 {
        let line = format!("{i},\"a, b\",\"say \"\"hi\"\"\",plain,");
        let fields = parse_csv_line(&line);
        assert_eq!(
            fields,
            vec![
                i.to_string(),
                "a, b".into(),
                "say \"hi\"".into(),
                "plain".into(),
                String::new()
            ]
        );
    }
}

macro_rules! query_strings {
    ($($name:ident: $seed:expr, $pairs:expr;)*) => {$(
        #[test]
        #[cfg_attr(feature = "checked", leakcheck::leakcheck)]
        fn $name() {
            let mut rng = Rng::new($seed);
            for _ in 0..30 {
                let pairs: Vec<(String, String)> = (0..$pairs)
                    .map(|_| (rng.pick(WORDS).to_string(), lorem(rng.next_u64(), 2)))
                    .collect();
                let query = pairs
                    .iter()
                    .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                let parsed = parse_query(&query);
                let n: usize = parsed.values().map(Vec::len).sum();
                assert_eq!(n, $pairs);
                for (k, v) in &pairs {
                    assert!(parsed[k].contains(v));
                }
            }
        }
    )*};
}

query_strings! {
    query_strings_of_5_pairs: 1, 5;
    query_strings_of_20_pairs: 2, 20;
    query_strings_of_60_pairs: 3, 60;
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn percent_encoding_round_trips() {
    for seed in 0..600 {
        let s = format!("{} & = ? / {}%", lorem(seed, 4), seed);
        assert_eq!(percent_decode(&percent_encode(&s)), s);
    }
}
