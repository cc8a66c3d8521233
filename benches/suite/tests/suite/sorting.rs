use bench_suite::data::{lorem, Rng};
use bench_suite::sorting::*;

macro_rules! people_sorts {
    ($($name:ident: $seed:expr, $n:expr;)*) => {$(
        #[test]
        #[cfg_attr(feature = "checked", leakcheck::leakcheck)]
        fn $name() {
            let mut a = random_people($seed, $n);
            let mut b = a.clone();
            sort_people(&mut a);
            sort_people_cached(&mut b);
            assert_eq!(a, b);
            assert!(is_sorted_by(&a, |x, y| x.city.cmp(&y.city)));
        }
    )*};
}

people_sorts! {
    sort_200_people: 1, 200;
    sort_500_people: 2, 500;
    sort_1000_people: 3, 1000;
    sort_2000_people: 4, 2000;
    sort_3000_people: 5, 3000;
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn natural_order_of_file_names() {
    let mut rng = Rng::new(6);
    let mut names: Vec<String> = (0..1500)
        .map(|_| format!("file{}-part{}.txt", rng.below(200), rng.below(30)))
        .collect();
    names.sort_by(|a, b| natural_cmp(a, b));
    assert!(is_sorted_by(&names, |a, b| natural_cmp(a, b)));
    let file2 = names.iter().position(|n| n.starts_with("file2-")).unwrap();
    let file10 = names.iter().position(|n| n.starts_with("file10-")).unwrap();
    assert!(file2 < file10);
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn k_way_merge() {
    let lists: Vec<Vec<String>> = (0..20)
        .map(|l| {
            let mut v: Vec<String> = (0..300)
                .map(|i| format!("{:05}", (i * 37 + l * 11) % 10_000))
                .collect();
            v.sort();
            v
        })
        .collect();
    let mut expected: Vec<String> = lists.concat();
    expected.sort();
    assert_eq!(merge_sorted(lists), expected);
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn top_k_scores() {
    let people = random_people(7, 3000);
    let top = top_k(&people, 25);
    let mut all: Vec<i64> = people.iter().map(|p| p.score).collect();
    all.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(
        top.iter().map(|p| p.score).collect::<Vec<_>>(),
        all[..25].to_vec()
    );
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn dedup_keeps_first_occurrence() {
    let mut people = random_people(8, 1500);
    people.extend(random_people(8, 700));
    let unique = dedup_by_name(people);
    let names: std::collections::HashSet<&str> = unique.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names.len(), unique.len());
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn ages_bucket_stably() {
    let people = random_people(9, 3000);
    let buckets = bucket_by_age(&people);
    assert_eq!(buckets.iter().map(|(_, b)| b.len()).sum::<usize>(), 3000);
    assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0));
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn median_of_scores() {
    for n in [1usize, 2, 101, 1000, 2001] {
        let people = random_people(n as u64, n);
        let m = median_score(&people);
        let below = people.iter().filter(|p| (p.score as f64) < m).count();
        assert!(below <= n / 2);
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn sort_sentences_by_length_then_text() {
    let mut lines: Vec<String> = (0..2500).map(|i| lorem(i, 1 + (i % 9) as usize)).collect();
    lines.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    lines.dedup();
    assert!(lines.windows(2).all(|w| w[0].len() <= w[1].len()));
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn stable_sort_keeps_insertion_order() {
    let people = random_people(10, 2500);
    let mut indexed: Vec<(usize, &str)> = people
        .iter()
        .enumerate()
        .map(|(i, p)| (i, p.city.as_str()))
        .collect();
    indexed.sort_by_key(|(_, city)| city.to_string());
    assert!(indexed
        .windows(2)
        .all(|w| w[0].1 != w[1].1 || w[0].0 < w[1].0));
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn binary_search_in_sorted_names() {
    let mut names: Vec<String> = random_people(11, 2500)
        .into_iter()
        .map(|p| p.name)
        .collect();
    names.sort();
    names.dedup();
    for (i, n) in names.iter().enumerate() {
        assert_eq!(names.binary_search(n), Ok(i));
    }
}
