//! The options of `Check` (the same ones `#[leakcheck(...)]` takes): allowances, budgets,
//! repeat, ignore patterns.

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

use leakcheck::{Check, Kind};
use std::hint::black_box;

#[inline(never)]
fn leak(n: usize) {
    std::mem::forget(black_box(vec![1u8; n]));
}

#[test]
fn allow_bytes_passes_within_and_fails_beyond() {
    let within = Check::new().allow_bytes(100).run(|| leak(100));
    assert!(within.is_clean(), "{within}");
    assert_eq!(within.leaked_bytes(), 100);
    assert!(
        within.to_string().contains("within the allowance"),
        "{within}"
    );
    let beyond = Check::new().allow_bytes(100).run(|| leak(101));
    assert!(!beyond.is_clean(), "{beyond}");
    assert!(beyond.to_string().contains("allow_bytes = 100"), "{beyond}");
}

#[test]
fn allow_allocs_counts_blocks() {
    assert!(Check::new()
        .allow_allocs(2)
        .run(|| {
            leak(1);
            leak(1)
        })
        .is_clean());
    let report = Check::new().allow_allocs(2).run(|| {
        leak(1);
        leak(1);
        leak(1)
    });
    assert!(!report.is_clean(), "{report}");
}

#[test]
fn max_allocs_zero_means_no_allocation_at_all() {
    let pure = Check::new().max_allocs(0).run(|| {
        let x = black_box(41) + 1;
        assert_eq!(x, 42);
    });
    assert!(pure.is_clean(), "{pure}");
    let allocating = Check::new()
        .max_allocs(0)
        .run(|| drop(black_box(vec![1u8; 8])));
    assert!(!allocating.is_clean(), "{allocating}");
    let overrun = &allocating.budget_overruns()[0];
    assert_eq!(
        (overrun.budget, overrun.limit, overrun.actual),
        ("max_allocs", 0, 1)
    );
    let text = allocating.to_string();
    assert!(
        text.contains("1 allocation made; the budget is max_allocs = 0"),
        "{text}"
    );
    assert!(
        text.contains("the first allocation past the budget was made at:"),
        "{text}"
    );
    assert!(
        text.contains("tests/options.rs"),
        "the stack names this file: {text}"
    );
}

#[test]
fn max_allocs_counts_freed_blocks_and_shows_the_first_past_the_budget() {
    let report = Check::new().max_allocs(3).run(|| {
        for _ in 0..5 {
            drop(black_box(Box::new(1u64)));
        }
    });
    assert_eq!(report.budget_overruns()[0].actual, 5, "{report}");
    assert!(!report.budget_overruns()[0].frames.is_empty(), "{report}");
    assert!(Check::new()
        .max_allocs(5)
        .run(|| {
            for _ in 0..5 {
                drop(black_box(Box::new(1u64)));
            }
        })
        .is_clean());
}

#[test]
fn max_bytes_and_peak() {
    let report = Check::new().max_bytes(1000).max_peak_bytes(600).run(|| {
        let a = black_box(vec![0u8; 500]);
        drop(a);
        let b = black_box(vec![0u8; 500]);
        drop(b);
    });
    let budgets: Vec<_> = report
        .budget_overruns()
        .iter()
        .map(|o| (o.budget, o.actual))
        .collect();
    assert!(
        budgets.is_empty(),
        "500 + 500 bytes, never more than 500 live: {report}"
    );
    let report = Check::new().max_bytes(999).max_peak_bytes(999).run(|| {
        let a = black_box(vec![0u8; 500]);
        let b = black_box(vec![0u8; 500]);
        drop((a, b));
    });
    let budgets: Vec<_> = report
        .budget_overruns()
        .iter()
        .map(|o| (o.budget, o.actual))
        .collect();
    assert_eq!(
        budgets,
        [("max_bytes", 1000), ("max_peak_bytes", 1000)],
        "{report}"
    );
}

#[test]
fn repeat_fails_a_cache_that_grows_every_run() {
    use std::sync::Mutex;
    static CACHE: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());
    let report = Check::new().repeat(3).run(|| {
        CACHE
            .lock()
            .unwrap()
            .push(black_box(vec![0u8; 100]).into_boxed_slice());
    });
    assert!(!report.is_clean(), "{report}");
    let runs = report.growth_per_run().unwrap();
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|&g| g >= 100), "{report}");
    let text = report.to_string();
    assert!(
        text.contains("memory grew in every run of check at"),
        "{text}"
    );
    assert!(
        report
            .groups()
            .iter()
            .any(|g| g.kind() == Kind::Growth && g.bytes() == 100),
        "{text}"
    );
}

#[test]
fn repeat_forgives_one_time_initialisation() {
    use std::sync::Mutex;
    static WARM: Mutex<Option<Vec<u8>>> = Mutex::new(None);
    let mut runs = 0;
    let report = Check::new().repeat(3).run(|| {
        runs += 1;
        WARM.lock()
            .unwrap()
            .get_or_insert_with(|| black_box(vec![0u8; 4096]));
        drop(black_box(vec![0u8; 64]));
    });
    assert_eq!(runs, 4, "a warm-up and three measured runs");
    assert!(report.is_clean(), "{report}");
}

#[test]
fn ignore_patterns_suppress_and_are_listed() {
    // `leak$` matches `options::leak`, and `leak` where release line tables drop the module.
    let report = Check::new().ignore("leak$").run(|| leak(10));
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.leaked_bytes(), 0, "suppressed leaks are not counted");
    let used = &report.suppressions_used()[0];
    assert_eq!(
        (used.pattern.as_str(), used.allocations, used.bytes),
        ("leak$", 1, 10)
    );
    let text = report.to_string();
    assert!(
        text.contains(
            "Suppressions used:\n  10 bytes in 1 allocation: leak:leak$ (#[leakcheck(ignore)])"
        ),
        "{text}"
    );
    let unmatched = Check::new().ignore("^nothing$").run(|| leak(10));
    assert!(!unmatched.is_clean(), "{unmatched}");
    let text = unmatched.to_string();
    let by_name = "to suppress, add to leakcheck.supp: leak:^options::leak$";
    let by_file = "to suppress, add to leakcheck.supp: leak:tests/options.rs";
    assert!(text.contains(by_name) || text.contains(by_file), "{text}");
}

#[inline(never)]
fn grow_shared(n: usize) {
    GROWING
        .lock()
        .unwrap()
        .push(std::hint::black_box(vec![0u8; n]));
}

static GROWING: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

#[test]
fn allow_bytes_tolerates_that_much_growth_per_run_under_repeat() {
    let within = Check::new()
        .repeat(3)
        .allow_bytes(200)
        .run(|| grow_shared(100));
    assert!(within.is_clean(), "{within}");
    let beyond = Check::new()
        .repeat(3)
        .allow_bytes(50)
        .run(|| grow_shared(100));
    assert!(!beyond.is_clean(), "{beyond}");
    assert!(
        beyond.to_string().contains("memory grew in every run"),
        "{beyond}"
    );
}
