//! Sorting, merging, dedup and ranking of owned records.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashSet};

use crate::data::{person_name, Rng, CITIES};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub city: String,
    pub age: u32,
    pub score: i64,
}

pub fn random_people(seed: u64, n: usize) -> Vec<Person> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| Person {
            name: person_name(&mut rng),
            city: rng.pick(CITIES).to_string(),
            age: 18 + rng.below(70) as u32,
            score: rng.below(10_000) as i64 - 5_000,
        })
        .collect()
}

/// City ascending, then score descending, then name.
pub fn sort_people(people: &mut [Person]) {
    people.sort_by(|a, b| {
        a.city
            .cmp(&b.city)
            .then_with(|| b.score.cmp(&a.score))
            .then_with(|| a.name.cmp(&b.name))
    });
}

/// Same order through a cached key (what `sort_by_cached_key` is for: the key allocates).
pub fn sort_people_cached(people: &mut [Person]) {
    people.sort_by_cached_key(|p| (p.city.to_lowercase(), Reverse(p.score), p.name.clone()));
}

/// "file2" < "file10".
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, String)> {
        let mut out: Vec<(bool, String)> = Vec::new();
        for c in s.chars() {
            let digit = c.is_ascii_digit();
            match out.last_mut() {
                Some((d, chunk)) if *d == digit => chunk.push(c),
                _ => out.push((digit, c.to_string())),
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for ((da, sa), (db, sb)) in ca.iter().zip(&cb) {
        let ord = if *da && *db {
            let (ta, tb) = (sa.trim_start_matches('0'), sb.trim_start_matches('0'));
            ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb))
        } else {
            sa.cmp(sb)
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    ca.len().cmp(&cb.len())
}

/// k-way merge of sorted vectors through a heap.
pub fn merge_sorted(lists: Vec<Vec<String>>) -> Vec<String> {
    let mut iters: Vec<std::vec::IntoIter<String>> =
        lists.into_iter().map(Vec::into_iter).collect();
    let mut heap = BinaryHeap::new();
    for (i, it) in iters.iter_mut().enumerate() {
        if let Some(first) = it.next() {
            heap.push(Reverse((first, i)));
        }
    }
    let mut out = Vec::new();
    while let Some(Reverse((item, i))) = heap.pop() {
        out.push(item);
        if let Some(next) = iters[i].next() {
            heap.push(Reverse((next, i)));
        }
    }
    out
}

/// The `k` highest scores, best first, with a bounded min-heap.
pub fn top_k(people: &[Person], k: usize) -> Vec<Person> {
    let mut heap: BinaryHeap<Reverse<(i64, String)>> = BinaryHeap::new();
    for p in people {
        heap.push(Reverse((p.score, p.name.clone())));
        if heap.len() > k {
            heap.pop();
        }
    }
    let mut best: Vec<(i64, String)> = heap.into_iter().map(|Reverse(x)| x).collect();
    best.sort_by(|a, b| b.cmp(a));
    best.into_iter()
        .filter_map(|(score, name)| {
            people
                .iter()
                .find(|p| p.score == score && p.name == name)
                .cloned()
        })
        .collect()
}

/// Keeps the first occurrence of each name, in order.
pub fn dedup_by_name(people: Vec<Person>) -> Vec<Person> {
    let mut seen = HashSet::new();
    people
        .into_iter()
        .filter(|p| seen.insert(p.name.clone()))
        .collect()
}

/// Stable counting sort of ages into buckets, returning names per age.
pub fn bucket_by_age(people: &[Person]) -> Vec<(u32, Vec<String>)> {
    let mut buckets: Vec<Vec<String>> = vec![Vec::new(); 100];
    for p in people {
        buckets[p.age as usize].push(p.name.clone());
    }
    buckets
        .into_iter()
        .enumerate()
        .filter(|(_, b)| !b.is_empty())
        .map(|(a, b)| (a as u32, b))
        .collect()
}

/// Median of the scores (sorting a copy).
pub fn median_score(people: &[Person]) -> f64 {
    let mut scores: Vec<i64> = people.iter().map(|p| p.score).collect();
    scores.sort_unstable();
    let n = scores.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        scores[n / 2] as f64
    } else {
        (scores[n / 2 - 1] + scores[n / 2]) as f64 / 2.0
    }
}

pub fn is_sorted_by<T>(items: &[T], cmp: impl Fn(&T, &T) -> Ordering) -> bool {
    items
        .windows(2)
        .all(|w| cmp(&w[0], &w[1]) != Ordering::Greater)
}
