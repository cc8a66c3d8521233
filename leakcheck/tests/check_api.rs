//! `leakcheck::check` from code: exact counts, cross-thread frees, realloc, threads, nesting.

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

// This package's tests build at opt-level 3 (see the workspace profile), where LLVM removes
// allocations nobody reads: `black_box` keeps them real.
#[inline(never)]
fn leak_bytes(n: usize) {
    std::mem::forget(std::hint::black_box(vec![0u8; n]));
}
/// The line of the `vec!` above.
const LEAK_LINE: u32 = line!() - 3;

#[test]
fn counts_exact_bytes_and_blocks() {
    let report = leakcheck::check(|| {
        leak_bytes(1000);
        leak_bytes(24);
        drop(vec![0u8; 4096]);
    });
    assert_eq!(report.leaked_bytes(), 1024, "{report}");
    assert_eq!(report.leaked_allocations(), 2, "{report}");
    assert!(!report.is_clean());
}

#[test]
fn report_names_the_allocating_function_file_and_line() {
    let report = leakcheck::check(|| leak_bytes(77));
    let text = report.to_string();
    assert!(
        text.starts_with("leakcheck: memory leak in check at leakcheck/tests/check_api.rs:")
            || text.starts_with("leakcheck: memory leak in check at tests/check_api.rs:"),
        "{text}"
    );
    let group = &report.groups()[0];
    assert_eq!(group.bytes(), 77);
    let first = &group.frames()[0];
    // Release builds with line tables only name the function without its module.
    let function = first.function.as_deref().unwrap_or_default();
    assert!(
        function == "check_api::leak_bytes" || function == "leak_bytes",
        "{text}"
    );
    assert!(
        first.file.as_ref().unwrap().ends_with("tests/check_api.rs"),
        "{text}"
    );
    assert_eq!(first.line, Some(LEAK_LINE), "{text}");
    assert!(
        text.contains("SUMMARY: leakcheck: 77 bytes leaked in 1 allocation"),
        "{text}"
    );
}

#[test]
fn freed_on_another_thread_is_not_a_leak() {
    use std::sync::{Arc, Barrier, Mutex};
    // Everything the hand-over needs exists before the check, so the only blocks the check
    // makes are the ones another thread frees.
    let shelf = Arc::new(Mutex::new(Vec::<Vec<u8>>::with_capacity(100)));
    let barrier = Arc::new(Barrier::new(2));
    let freer = {
        let (shelf, barrier) = (shelf.clone(), barrier.clone());
        std::thread::spawn(move || {
            barrier.wait();
            shelf.lock().unwrap().clear();
            barrier.wait();
        })
    };
    let report = leakcheck::check(|| {
        shelf
            .lock()
            .unwrap()
            .extend((0..100).map(|i| vec![i as u8; 512]));
        barrier.wait();
        barrier.wait();
    });
    freer.join().unwrap();
    assert!(report.is_clean(), "{report}");

    let kept = leakcheck::check(|| {
        shelf
            .lock()
            .unwrap()
            .extend((0..3).map(|i| vec![i as u8; 512]));
    });
    assert_eq!(
        kept.leaked_bytes(),
        3 * 512,
        "the same hand-over, never freed: {kept}"
    );
}

#[test]
fn realloc_keeps_the_first_site_with_the_final_size() {
    let report = leakcheck::check(|| {
        let mut v: Vec<u64> = Vec::with_capacity(1);
        for i in 0..1000 {
            v.push(i);
        }
        v.shrink_to_fit();
        std::mem::forget(v);
    });
    assert_eq!(report.leaked_allocations(), 1, "{report}");
    assert_eq!(report.leaked_bytes(), 8000, "{report}");
}

#[test]
fn thousands_of_leaked_blocks_are_all_reported() {
    // More than the first collecting pass makes room for: it counts, and takes them again.
    let report = leakcheck::check(|| {
        for i in 0..3000u64 {
            std::mem::forget(std::hint::black_box(Box::new(i)));
        }
    });
    assert_eq!(report.leaked_allocations(), 3000, "{report}");
    assert_eq!(report.leaked_bytes(), 3000 * 8, "{report}");
    let next = leakcheck::check(|| drop(std::hint::black_box(Box::new(1u64))));
    assert!(next.is_clean(), "{next}");
}

#[test]
fn blocks_allocated_before_the_check_are_not_its_leaks() {
    let mut outside: Vec<u64> = Vec::with_capacity(1);
    let report = leakcheck::check(|| {
        // Growing a block from before the check moves it, but it is still not the check's.
        for i in 0..1000 {
            outside.push(i);
        }
    });
    assert!(report.is_clean(), "{report}");
}

#[test]
fn spawned_threads_belong_to_the_check() {
    let report = leakcheck::check(|| {
        std::thread::spawn(|| leak_bytes(3000)).join().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| leak_bytes(5000));
        });
    });
    let sizes: Vec<usize> = report.groups().iter().map(|g| g.bytes()).collect();
    assert!(sizes.contains(&3000) && sizes.contains(&5000), "{report}");
}

#[test]
fn joined_threads_that_free_everything_are_clean() {
    let report = leakcheck::check(|| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                std::thread::spawn(move || {
                    (0..1000)
                        .map(|j| std::hint::black_box(vec![i as u8; j % 64]).len())
                        .sum::<usize>()
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
    });
    assert!(report.is_clean(), "{report}");
}

#[test]
fn ignore_excludes_deliberate_leaks() {
    let report = leakcheck::check(|| {
        let config: &'static mut [u8] =
            leakcheck::ignore(|| Box::leak(vec![1u8; 64].into_boxed_slice()));
        assert_eq!(config.len(), 64);
    });
    assert!(report.is_clean(), "{report}");
}

#[test]
fn lazy_statics_and_thread_locals_are_not_leaks() {
    static TABLE: std::sync::LazyLock<Vec<String>> =
        std::sync::LazyLock::new(|| (0..10).map(|i| i.to_string()).collect());
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(256));
    }
    let report = leakcheck::check(|| {
        assert_eq!(TABLE.len(), 10);
        assert_eq!(NAME.get_or_init(|| "leakcheck".to_owned()), "leakcheck");
        SCRATCH.with(|s| s.borrow_mut().push(1));
    });
    assert!(report.is_clean(), "{report}");
}

#[test]
fn nested_checks_report_separately() {
    let mut inner_bytes = 0;
    let outer = leakcheck::check(|| {
        leak_bytes(100);
        // The inner report is itself allocated inside the outer check: keep only a number.
        inner_bytes = leakcheck::check(|| leak_bytes(200)).leaked_bytes();
    });
    assert_eq!(inner_bytes, 200);
    assert_eq!(outer.leaked_bytes(), 100, "{outer}");
}

#[test]
fn a_panicking_body_leaves_tracking_disarmed() {
    let result = std::panic::catch_unwind(|| {
        let _ = leakcheck::check(|| {
            leak_bytes(10);
            panic!("boom");
        });
    });
    assert!(result.is_err());
    let report = leakcheck::check(|| {});
    assert!(report.is_clean(), "{report}");
}
