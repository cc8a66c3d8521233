use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};

use bench_suite::data::{lorem, Rng, WORDS};
use bench_suite::inventory::*;

macro_rules! inventory_sizes {
    ($($name:ident: $seed:expr, $items:expr;)*) => {$(
        #[test]
        #[cfg_attr(feature = "checked", leakcheck::leakcheck)]
        fn $name() {
            let inv = random_inventory($seed, $items);
            assert_eq!(inv.len(), $items);
            assert!(inv.consistent());
            let report = inv.report();
            assert_eq!(report.lines().count(), $items);
        }
    )*};
}

inventory_sizes! {
    inventory_of_100_items: 1, 100;
    inventory_of_300_items: 2, 300;
    inventory_of_600_items: 3, 600;
    inventory_of_1000_items: 4, 1000;
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn removing_half_keeps_indexes_consistent() {
    let mut inv = random_inventory(10, 600);
    for n in (0..600).step_by(2) {
        assert!(inv.remove(&format!("SKU-{n:06}")).is_some());
    }
    assert_eq!(inv.len(), 300);
    assert!(inv.consistent());
    assert!(inv.remove("SKU-000000").is_none());
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn restock_then_sell() {
    let mut inv = random_inventory(11, 400);
    let mut revenue = 0;
    for n in 0..400 {
        let sku = format!("SKU-{n:06}");
        inv.restock(&sku, 10).unwrap();
        revenue += inv.sell(&sku, 5).unwrap();
    }
    assert!(revenue > 0);
    assert_eq!(inv.history().len(), 400 * 3);
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn selling_more_than_stock_fails() {
    let mut inv = random_inventory(12, 400);
    for n in 0..400 {
        let sku = format!("SKU-{n:06}");
        let have = inv.get(&sku).unwrap().qty;
        match inv.sell(&sku, have + 1) {
            Err(StockError::Insufficient { wanted, .. }) => assert_eq!(wanted, have + 1),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn unknown_skus_are_errors() {
    let mut inv = random_inventory(13, 300);
    for n in 300..900 {
        let sku = format!("SKU-{n:06}");
        assert_eq!(inv.restock(&sku, 1), Err(StockError::Unknown(sku.clone())));
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn price_range_queries_are_sorted() {
    let inv = random_inventory(14, 800);
    for lo in (0..50_000).step_by(5_000) {
        let skus = inv.in_price_range(lo, lo + 4_999);
        let prices: Vec<u64> = skus
            .iter()
            .map(|s| inv.get(s).unwrap().price_cents)
            .collect();
        assert!(prices.windows(2).all(|w| w[0] <= w[1]));
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn tags_index_every_item() {
    let inv = random_inventory(15, 700);
    let tags = inv.tags();
    for (tag, count) in &tags {
        assert_eq!(inv.with_tag(tag).len(), *count);
    }
    assert!(inv.with_tag("no-such-tag").is_empty());
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn re_adding_replaces_the_item() {
    let mut inv = random_inventory(16, 300);
    let mut rng = Rng::new(99);
    for n in 0..300 {
        let mut item = random_item(&mut rng, n);
        item.qty = 7;
        inv.add(item);
    }
    assert_eq!(inv.len(), 300);
    assert!(inv.consistent());
    assert_eq!(
        inv.total_value(),
        (0..300)
            .map(|n| inv.get(&format!("SKU-{n:06}")).unwrap().price_cents * 7)
            .sum::<u64>()
    );
}

macro_rules! hashmap_churn {
    ($($name:ident: $seed:expr, $rounds:expr;)*) => {$(
        #[test]
        #[cfg_attr(feature = "checked", leakcheck::leakcheck)]
        fn $name() {
            let mut rng = Rng::new($seed);
            let mut map: HashMap<String, Vec<u32>> = HashMap::new();
            for round in 0..$rounds {
                for i in 0..200 {
                    let key = format!("{}-{}", WORDS[rng.below(30) as usize], rng.below(500));
                    map.entry(key).or_default().push(round * 1000 + i);
                }
                map.retain(|_, v| v.len() % 3 != 0);
            }
            assert!(!map.is_empty());
        }
    )*};
}

hashmap_churn! {
    hashmap_churn_a: 21, 10;
    hashmap_churn_b: 22, 15;
    hashmap_churn_c: 23, 20;
    hashmap_churn_d: 24, 25;
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn btreemap_range_queries() {
    let mut map = BTreeMap::new();
    for i in 0..5000u32 {
        map.insert(format!("key-{:05}", i * 7 % 5000), i);
    }
    for start in (0..5000).step_by(250) {
        let lo = format!("key-{start:05}");
        let hi = format!("key-{:05}", start + 100);
        assert_eq!(map.range(lo..hi).count(), 100);
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn set_algebra() {
    let a: BTreeSet<String> = (0..3000)
        .filter(|i| i % 2 == 0)
        .map(|i| format!("{i}"))
        .collect();
    let b: BTreeSet<String> = (0..3000)
        .filter(|i| i % 3 == 0)
        .map(|i| format!("{i}"))
        .collect();
    let both: BTreeSet<&String> = a.intersection(&b).collect();
    let either: BTreeSet<&String> = a.union(&b).collect();
    assert_eq!(both.len(), 500);
    assert_eq!(either.len(), 2000);
    let ha: HashSet<String> = a.iter().cloned().collect();
    let hb: HashSet<String> = b.iter().cloned().collect();
    assert_eq!(ha.symmetric_difference(&hb).count(), 1500);
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn vecdeque_as_a_ring_buffer() {
    let mut ring: VecDeque<String> = VecDeque::with_capacity(64);
    for i in 0..8000 {
        if ring.len() == 64 {
            ring.pop_front();
        }
        ring.push_back(format!("event-{i}"));
    }
    assert_eq!(ring.front().unwrap(), "event-7936");
    ring.make_contiguous().sort();
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn entry_api_counting() {
    let text = lorem(31, 8000);
    let mut by_len: HashMap<usize, HashMap<&str, usize>> = HashMap::new();
    for word in text.split_whitespace() {
        *by_len
            .entry(word.len())
            .or_default()
            .entry(word)
            .or_insert(0) += 1;
    }
    let total: usize = by_len.values().flat_map(|m| m.values()).sum();
    assert_eq!(total, 8000);
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn group_people_by_city_and_age() {
    let people = bench_suite::sorting::random_people(32, 1500);
    let mut groups: BTreeMap<&str, BTreeMap<u32, Vec<&str>>> = BTreeMap::new();
    for p in &people {
        groups
            .entry(&p.city)
            .or_default()
            .entry(p.age / 10 * 10)
            .or_default()
            .push(&p.name);
    }
    let n: usize = groups.values().flat_map(|m| m.values()).map(Vec::len).sum();
    assert_eq!(n, 1500);
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn transpose_a_matrix_of_strings() {
    let rows: Vec<Vec<String>> = (0..120)
        .map(|r| (0..60).map(|c| format!("{r}:{c}")).collect())
        .collect();
    let cols: Vec<Vec<String>> = (0..60)
        .map(|c| rows.iter().map(|row| row[c].clone()).collect())
        .collect();
    assert_eq!(cols[5][7], "7:5");
    let back: Vec<Vec<String>> = (0..120)
        .map(|r| cols.iter().map(|col| col[r].clone()).collect())
        .collect();
    assert_eq!(back, rows);
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn priority_queue_scheduling() {
    let mut rng = Rng::new(33);
    let mut heap = BinaryHeap::new();
    for i in 0..4000 {
        heap.push((rng.below(100), std::cmp::Reverse(i), format!("job-{i}")));
    }
    let mut last = u64::MAX;
    while let Some((prio, _, name)) = heap.pop() {
        assert!(prio <= last);
        assert!(name.starts_with("job-"));
        last = prio;
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn retain_and_drain() {
    let mut items: Vec<String> = (0..6000).map(|i| format!("item-{i}")).collect();
    items.retain(|s| !s.ends_with('7'));
    let drained: Vec<String> = items.drain(..1000).collect();
    assert_eq!(drained.len(), 1000);
    items.dedup();
    items.truncate(10);
    items.shrink_to_fit();
    assert_eq!(items.len(), 10);
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn dedup_strings_with_a_hashset() {
    let mut rng = Rng::new(34);
    let words: Vec<String> = (0..6000)
        .map(|_| format!("{}{}", rng.pick(WORDS), rng.below(50)))
        .collect();
    let unique: HashSet<&String> = words.iter().collect();
    let mut sorted: Vec<&String> = unique.into_iter().collect();
    sorted.sort();
    assert!(sorted.len() <= 30 * 50);
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn nested_vec_growth() {
    let mut grid: Vec<Vec<u64>> = Vec::new();
    for r in 0..300 {
        let mut row = Vec::new();
        for c in 0..r {
            row.push((r * c) as u64);
        }
        grid.push(row);
    }
    assert_eq!(grid.iter().map(Vec::len).sum::<usize>(), 300 * 299 / 2);
}
