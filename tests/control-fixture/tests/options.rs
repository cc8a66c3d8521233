//! Every control option of `#[leakcheck(...)]`, alone and combined, each with a test that stays
//! within it and one that goes beyond. `tests/control.rs` in the root package runs this binary
//! and asserts each verdict and what each report says; the names and figures here are part of
//! that contract.
//!
//! Each leaking line allocates a byte count no other line uses (`vec![0u8; BYTES]`), so the
//! runner finds the file:line:column a report must point at by searching this file for it.
//! `black_box` keeps the allocations from being optimised away.

use std::hint::black_box;
use std::mem::forget;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

use leakcheck::leakcheck;

/// Compiles only while leakcheck brings no crate with a second `PartialEq` impl for `u8` into
/// its users' crates: with serde_json in leakcheck's dependencies, this comparison (and every
/// `assert_eq!(&*bytes, &[])`) was ambiguous (E0283). Never called.
#[allow(dead_code)]
fn comparing_with_an_empty_array_still_infers(bytes: &[u8]) -> bool {
    bytes == &[]
}

// ---- allow_bytes, allow_allocs ----

#[leakcheck(allow_bytes = 100)]
fn allow_bytes_within() {
    forget(black_box(vec![0u8; 100]));
}

#[leakcheck(allow_bytes = 100)]
fn allow_bytes_beyond() {
    forget(black_box(vec![0u8; 101]));
}

#[leakcheck(allow_allocs = 2)]
fn allow_allocs_within() {
    for _ in 0..2 {
        forget(black_box(vec![0u8; 30]));
    }
}

#[leakcheck(allow_allocs = 2)]
fn allow_allocs_beyond() {
    for _ in 0..3 {
        forget(black_box(vec![0u8; 31]));
    }
}

#[leakcheck(allow_bytes = 100, allow_allocs = 2)]
fn allow_both_within() {
    for _ in 0..2 {
        forget(black_box(vec![0u8; 50]));
    }
}

/// 60 bytes are within `allow_bytes`, 3 blocks are not within `allow_allocs`.
#[leakcheck(allow_bytes = 100, allow_allocs = 2)]
fn allow_both_beyond_by_count() {
    for _ in 0..3 {
        forget(black_box(vec![0u8; 20]));
    }
}

/// 1 block is within `allow_allocs`, 150 bytes are not within `allow_bytes`.
#[leakcheck(allow_bytes = 100, allow_allocs = 2)]
fn allow_both_beyond_by_bytes() {
    forget(black_box(vec![0u8; 150]));
}

// ---- max_allocs, max_bytes, max_peak_bytes ----

#[leakcheck(max_allocs = 0)]
fn max_allocs_zero_pure() {
    let parsed: u32 = black_box("42").parse().unwrap();
    assert_eq!(parsed + black_box(1), 43);
}

#[leakcheck(max_allocs = 0)]
fn max_allocs_zero_allocates() {
    let scratch = black_box(vec![0u8; 16]);
    drop(scratch);
}

#[leakcheck(max_allocs = 3)]
fn max_allocs_within() {
    let first = black_box(Box::new(1u64));
    let second = black_box(Box::new(2u64));
    let third = black_box(Box::new(3u64));
    drop((first, second, third));
}

/// The report must point at the third box, the first allocation past the budget.
#[leakcheck(max_allocs = 2)]
fn max_allocs_beyond() {
    let first = black_box(Box::new(11u64));
    let second = black_box(Box::new(12u64));
    let third = black_box(Box::new(13u64));
    let fourth = black_box(Box::new(14u64));
    drop((first, second, third, fourth));
}

/// 3,000 bytes in total, freed as it goes.
#[leakcheck(max_bytes = 3000)]
fn max_bytes_within() {
    for _ in 0..3 {
        drop(black_box(vec![0u8; 1000]));
    }
}

#[leakcheck(max_bytes = 2999)]
fn max_bytes_beyond() {
    for _ in 0..3 {
        drop(black_box(vec![0u8; 1001]));
    }
}

/// 3,000 bytes in total, but never more than 1,000 at once.
#[leakcheck(max_peak_bytes = 1500)]
fn max_peak_bytes_within() {
    for _ in 0..3 {
        drop(black_box(vec![0u8; 1002]));
    }
}

#[leakcheck(max_peak_bytes = 1500)]
fn max_peak_bytes_beyond() {
    let first = black_box(vec![0u8; 1003]);
    let second = black_box(vec![0u8; 1004]);
    drop((first, second));
}

#[leakcheck(max_allocs = 2, max_bytes = 1000, max_peak_bytes = 600)]
fn budgets_all_within() {
    for _ in 0..2 {
        drop(black_box(vec![0u8; 400]));
    }
}

/// Breaks all three budgets at once: 3 allocations, 1,203 bytes, all live together.
#[leakcheck(max_allocs = 2, max_bytes = 1000, max_peak_bytes = 600)]
fn budgets_all_beyond() {
    let first = black_box(vec![0u8; 401]);
    let second = black_box(vec![0u8; 402]);
    let third = black_box(vec![0u8; 403]);
    drop((first, second, third));
}

// ---- allowances with budgets ----

#[leakcheck(allow_bytes = 100, max_allocs = 2)]
fn allowance_and_budget_within() {
    forget(black_box(vec![0u8; 60]));
    drop(black_box(vec![0u8; 8]));
}

/// The leak is within the allowance; the budget alone fails the test.
#[leakcheck(allow_bytes = 100, max_allocs = 2)]
fn allowance_within_budget_beyond() {
    forget(black_box(vec![0u8; 61]));
    drop(black_box(vec![0u8; 9]));
    drop(black_box(vec![0u8; 10]));
}

// ---- repeat ----

/// A singly linked list of 128-byte nodes: each push grows live memory by exactly 128 bytes,
/// all of it reachable from a static.
struct Node {
    _payload: [u8; 120],
    _next: Option<Box<Node>>,
}

#[inline(never)]
fn push(list: &Mutex<Option<Box<Node>>>) {
    let mut head = list.lock().unwrap();
    let next = head.take();
    *head = Some(Box::new(Node {
        _payload: [0x5a; 120],
        _next: next,
    }));
}

static GROWING: Mutex<Option<Box<Node>>> = Mutex::new(None);

/// A cache that grows on every call: reachable, so only `repeat` sees it.
#[leakcheck(repeat = 3)]
fn repeat_grows_every_run() {
    push(&GROWING);
}

static GROWING_UNCHECKED: Mutex<Option<Box<Node>>> = Mutex::new(None);

/// The same cache without `repeat`: still reachable from a static, so the test passes.
#[leakcheck]
fn no_repeat_cache_growth_is_reachable() {
    push(&GROWING_UNCHECKED);
}

static EVERY_OTHER: Mutex<Option<Box<Node>>> = Mutex::new(None);
static CALLS: AtomicUsize = AtomicUsize::new(0);

/// Grows on the 2nd and 4th call (measured runs 1 and 3), not on the 3rd: not every run grew.
#[leakcheck(repeat = 3)]
fn repeat_grows_every_other_run() {
    if CALLS.fetch_add(1, Ordering::Relaxed) % 2 == 1 {
        push(&EVERY_OTHER);
    }
}

static FILLED_ONCE: Mutex<Option<Vec<u8>>> = Mutex::new(None);

/// Fills its cache in the warm-up run, then never grows.
#[leakcheck(repeat = 3)]
fn repeat_cache_filled_once() {
    let mut cache = FILLED_ONCE.lock().unwrap();
    if cache.is_none() {
        *cache = Some(vec![0u8; 256]);
    }
}

/// A plain leak in every run is growth in every run.
#[leakcheck(repeat = 2)]
fn repeat_leaks_every_run() {
    forget(black_box(vec![0u8; 72]));
}

/// Budgets apply to each run, not to the sum of runs: 4 runs of 1 allocation pass.
#[leakcheck(repeat = 3, max_allocs = 1)]
fn repeat_with_budget_within() {
    drop(black_box(vec![0u8; 48]));
}

#[leakcheck(repeat = 3, max_allocs = 1)]
fn repeat_with_budget_beyond() {
    drop(black_box(vec![0u8; 49]));
    drop(black_box(vec![0u8; 51]));
}

// ---- shared_threads ----

/// A worker the test starts and leaves running (the sender is kept, as a pool in a static
/// would be) loses a block. With `shared_threads = "fail"` it is the test's leak whether or
/// not other checks ran meanwhile, so the verdict is the same at any thread count.
#[leakcheck(shared_threads = "fail")]
fn shared_threads_fail_counts_a_worker_left_running() {
    let (jobs, queue) = std::sync::mpsc::channel::<std::sync::mpsc::Sender<()>>();
    std::thread::spawn(move || {
        for done in queue {
            lose_on_the_worker();
            scrub_the_stack_below();
            done.send(()).unwrap();
        }
    });
    let (done, wait) = std::sync::mpsc::channel();
    jobs.send(done).unwrap();
    wait.recv().unwrap();
    std::mem::forget(jobs);
}

/// In a frame of its own, which is dead once it returns, and which `scrub_the_stack_below`
/// then overwrites: the worker's live frames, a root of the check, are laid over that memory
/// when it waits for the next job, and slots they leave unwritten would keep the address. Too
/// big for the size class of what std frees as the thread starts: std's box of the thread's
/// closure, live while the thread runs, keeps such a block's address, and a small leak that
/// reused it looked reachable.
#[inline(never)]
fn lose_on_the_worker() {
    std::mem::forget(black_box(vec![5u8; 4_068]));
}

#[inline(never)]
fn scrub_the_stack_below() {
    black_box(&mut [0usize; 1024]);
}

// ---- reachable ----

static KEPT_DEFAULT: Mutex<Option<Box<[u8; 64]>>> = Mutex::new(None);

#[leakcheck]
fn reachable_default_passes() {
    *KEPT_DEFAULT.lock().unwrap() = Some(Box::new([1u8; 64]));
}

static KEPT_FAIL: Mutex<Option<Box<[u8; 65]>>> = Mutex::new(None);

#[leakcheck(reachable = "fail")]
fn reachable_fail_fails() {
    *KEPT_FAIL.lock().unwrap() = Some(Box::new([2u8; 65]));
}

static KEPT_ALLOWED: Mutex<Option<Box<[u8; 66]>>> = Mutex::new(None);

#[leakcheck(reachable = "fail", allow_bytes = 66)]
fn reachable_fail_within_allowance() {
    *KEPT_ALLOWED.lock().unwrap() = Some(Box::new([3u8; 66]));
}

static KEPT_REPEAT: Mutex<Option<Box<[u8; 67]>>> = Mutex::new(None);

/// Replaced by a block of the same size in every run: live memory does not grow. With
/// `repeat`, the verdict is growth, so the block left reachable at the end does not fail it
/// even with `reachable = "fail"` (what `tests/control.rs` asserts is the code's behaviour).
#[leakcheck(reachable = "fail", repeat = 2)]
fn reachable_fail_with_repeat_judges_growth() {
    *KEPT_REPEAT.lock().unwrap() = Some(Box::new([4u8; 67]));
}

// ---- ignore ----

#[leakcheck(ignore = "^control_fixture::leak_here$")]
fn ignore_by_function_name() {
    control_fixture::leak_here(300);
}

#[leakcheck(ignore = "^control_fixture::cache$")]
fn ignore_by_module_path() {
    control_fixture::cache::remember(500);
}

#[leakcheck(ignore = "^src/generated.rs$")]
fn ignore_by_source_file() {
    control_fixture::generated::table(700);
}

/// Only the matching leak is suppressed; the other one fails the test.
#[leakcheck(ignore = "^control_fixture::cache$")]
fn ignore_leaves_other_leaks() {
    control_fixture::cache::remember(501);
    control_fixture::leak_here(301);
}

/// `ignore` may be repeated; `*` matches any run of characters.
#[leakcheck(ignore = "control_fixture::leak_h*e", ignore = "generated.rs")]
fn ignore_repeated_with_wildcards() {
    control_fixture::leak_here(302);
    control_fixture::generated::table(702);
}

/// `$` anchors: `leak_here` is not `leak`.
#[leakcheck(ignore = "^control_fixture::leak$")]
fn ignore_anchored_does_not_match_a_prefix() {
    control_fixture::leak_here(303);
}

/// Suppressed leaks do not use up the allowance.
#[leakcheck(ignore = "^control_fixture::cache$", allow_bytes = 50)]
fn ignore_with_allowance() {
    control_fixture::cache::remember(502);
    forget(black_box(vec![0u8; 45]));
}

static KEPT_IGNORED: Mutex<Option<Vec<u8>>> = Mutex::new(None);

#[inline(never)]
fn keep(bytes: usize) {
    *KEPT_IGNORED.lock().unwrap() = Some(black_box(vec![0x77u8; bytes]));
}

/// A reachable block counted by `reachable = "fail"` can still be ignored.
#[leakcheck(reachable = "fail", ignore = "options::keep")]
fn ignore_with_reachable_fail() {
    keep(68);
}

// ---- the module form ----

/// The attribute on a module applies, with its options, to every `#[test]` and
/// `#[tokio::test]` inside, at any depth; other functions are left alone.
#[leakcheck(allow_bytes = 100)]
mod module_form {
    use std::hint::black_box;
    use std::mem::forget;

    /// A plain helper: as a test it would not even compile (it takes an argument).
    #[inline(never)]
    fn leak_through_helper(bytes: usize) {
        forget(black_box(vec![0u8; bytes]));
    }

    /// A plain helper without arguments: must not become a test.
    #[allow(dead_code)]
    fn plain_helper() {
        forget(black_box(vec![0u8; 9999]));
    }

    #[test]
    fn sync_within() {
        forget(black_box(vec![0u8; 90]));
    }

    #[test]
    fn sync_beyond() {
        forget(black_box(vec![0u8; 210]));
    }

    #[tokio::test]
    async fn tokio_within() {
        forget(black_box(vec![0u8; 91]));
    }

    #[tokio::test]
    async fn tokio_beyond() {
        forget(black_box(vec![0u8; 211]));
    }

    #[test]
    fn helper_beyond() {
        leak_through_helper(212);
    }

    /// A test's own attribute wins over the module's.
    #[leakcheck::leakcheck(allow_bytes = 1000)]
    #[test]
    fn own_attribute_wins() {
        forget(black_box(vec![0u8; 500]));
    }

    mod nested {
        use std::hint::black_box;
        use std::mem::forget;

        #[test]
        fn deep_within() {
            forget(black_box(vec![0u8; 92]));
        }

        #[test]
        fn deep_beyond() {
            forget(black_box(vec![0u8; 213]));
        }
    }
}
