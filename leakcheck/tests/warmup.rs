//! Where no reachability scan is possible (other platforms, or `LEAKCHECK_SCAN=0`), a check
//! runs the body once as a warm-up and counts only what the second run leaves live. On Linux
//! the fallback is reached with `LEAKCHECK_SCAN=0`, in a child process of this test binary so
//! that the variable is set before anything reads it.

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

fn in_child() -> bool {
    std::env::var_os("LEAKCHECK_WARMUP_CHILD").is_some()
}

/// Runs one test of this binary in a child with `LEAKCHECK_SCAN=0`; returns (passed, output).
fn child(test: &str) -> (bool, String) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--test-threads=1", "--nocapture"])
        .env("LEAKCHECK_WARMUP_CHILD", "1")
        .env("LEAKCHECK_SCAN", "0")
        .env("RUST_BACKTRACE", "0")
        .env_remove("NEXTEST_EXECUTION_MODE")
        .env_remove("LEAKCHECK")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

static CACHE: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());
static RUNS: AtomicUsize = AtomicUsize::new(0);

/// Fills the cache on its first call only: a one-off that the warm-up run absorbs. Not a lazy
/// static, so no stack rule excuses it; only the warm-up does.
#[inline(never)]
fn fill_cache_once() {
    let mut cache = CACHE.lock().unwrap();
    if cache.is_empty() {
        cache.push(black_box(vec![1u8; 4000]).into_boxed_slice());
    }
}

#[inline(never)]
fn leak(n: usize) {
    std::mem::forget(black_box(vec![2u8; n]));
}

#[test]
fn without_the_scan_a_warm_up_absorbs_one_off_caches_and_real_leaks_still_fail() {
    if !in_child() {
        let (passed, text) =
            child("without_the_scan_a_warm_up_absorbs_one_off_caches_and_real_leaks_still_fail");
        assert!(passed, "{text}");
        // Said once per process, though two checks ran.
        let notice = "leakcheck: LEAKCHECK_SCAN=0: leftover blocks are judged without reachability";
        assert_eq!(text.matches(notice).count(), 1, "{text}");
        return;
    }
    let cache = leakcheck::Check::new().run(|| {
        RUNS.fetch_add(1, Ordering::Relaxed);
        fill_cache_once();
    });
    assert_eq!(RUNS.load(Ordering::Relaxed), 2, "the body runs twice");
    assert!(cache.is_clean(), "{cache}");

    // Leaks 100 bytes a run: only the measured run's 100 count, not the warm-up's.
    let leaking = leakcheck::Check::new().run(|| leak(100));
    assert_eq!(leaking.leaked_bytes(), 100, "{leaking}");
    assert_eq!(leaking.leaked_allocations(), 1, "{leaking}");
    let text = leaking.to_string();
    assert!(
        text.contains("judged without the reachability scan (LEAKCHECK_SCAN=0)"),
        "{text}"
    );
    assert!(text.contains("tests/warmup.rs:"), "{text}");
}

#[test]
fn without_the_scan_a_block_kept_in_a_static_by_every_run_counts() {
    if !in_child() {
        let (passed, text) = child("without_the_scan_a_block_kept_in_a_static_by_every_run_counts");
        assert!(passed, "{text}");
        return;
    }
    // What the scan would call reachable is a leak without it, once the warm-up is over.
    let report = leakcheck::Check::new().run(|| {
        CACHE
            .lock()
            .unwrap()
            .push(black_box(vec![3u8; 250]).into_boxed_slice())
    });
    assert_eq!(report.leaked_bytes(), 250, "{report}");
}

#[test]
fn without_the_scan_check_runs_its_body_once_and_counts_everything_it_left() {
    if !in_child() {
        let (passed, text) =
            child("without_the_scan_check_runs_its_body_once_and_counts_everything_it_left");
        assert!(passed, "{text}");
        return;
    }
    let mut runs = 0;
    let report = leakcheck::check(|| {
        runs += 1;
        fill_cache_once();
        leak(60);
    });
    assert_eq!(runs, 1, "an FnOnce body cannot run twice");
    // The cache's entry, its table (room for 4 boxed slices) and the leak.
    let table = 4 * std::mem::size_of::<Box<[u8]>>();
    assert_eq!(report.leaked_bytes(), 4000 + table + 60, "{report}");
    assert!(
        report
            .to_string()
            .contains("`leakcheck::check` runs its body once"),
        "{report}"
    );
}

#[test]
fn with_repeat_the_first_run_already_warms_up() {
    if !in_child() {
        let (passed, text) = child("with_repeat_the_first_run_already_warms_up");
        assert!(passed, "{text}");
        return;
    }
    let runs = AtomicUsize::new(0);
    let report = leakcheck::Check::new().repeat(3).run(|| {
        runs.fetch_add(1, Ordering::Relaxed);
        leak(10);
    });
    assert_eq!(
        runs.load(Ordering::Relaxed),
        4,
        "one warm-up and three measured runs"
    );
    assert!(!report.is_clean(), "{report}");
    assert!(
        report.to_string().contains("grew by [10, 10, 10] bytes"),
        "{report}"
    );
}
