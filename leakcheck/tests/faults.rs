//! A failing inner allocator under leakcheck: a null from the inner allocator is handed back
//! unchanged, and a failed allocation is neither recorded, nor counted against a budget, nor
//! allowed to lose the record of the block a failed `realloc` leaves in place.
//!
//! Its own test binary, because it needs its own `#[global_allocator]`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Mutex;

/// `System`, except that the next `n` allocations on the current thread fail.
///
/// The countdown is thread-local (const-initialised, no `Drop`: safe inside an allocator), so
/// libtest's threads and other tests never see a failure meant for one test.
struct FailingAlloc;

thread_local! {
    static FAIL_NEXT: Cell<u32> = const { Cell::new(0) };
    static FAILED: Cell<u32> = const { Cell::new(0) };
}

impl FailingAlloc {
    fn should_fail() -> bool {
        FAIL_NEXT
            .try_with(|n| {
                let left = n.get();
                if left == 0 {
                    return false;
                }
                n.set(left - 1);
                let _ = FAILED.try_with(|f| f.set(f.get() + 1));
                true
            })
            .unwrap_or(false)
    }
}

// SAFETY: forwards to `System` unchanged, or returns null, which every `GlobalAlloc` method may
// do to report failure (a failed `realloc` leaves the old block untouched, as `System` would).
unsafe impl GlobalAlloc for FailingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::should_fail() {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::should_fail() {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if Self::should_fail() {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: leakcheck::LeakCheck<FailingAlloc> = leakcheck::LeakCheck::new(FailingAlloc);

/// Tests here compare the process-wide record count before and after: run them one at a time
/// so no other check in this binary adds or removes records meanwhile.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Makes the next `n` allocations on this thread fail.
fn fail_next(n: u32) {
    FAIL_NEXT.with(|c| c.set(n));
}

fn failures_so_far() -> u32 {
    FAILED.with(Cell::get)
}

/// A check that counts every block the body left live, whether or not a stale copy of its
/// address on the stack makes it look reachable: these tests are about what is recorded.
fn check_every_block(body: impl FnMut()) -> leakcheck::Report {
    leakcheck::Check::new()
        .reachable(leakcheck::Reachable::Fail)
        .run(body)
}

/// Live records in leakcheck's table, process-wide.
fn records() -> usize {
    leakcheck::__private::bookkeeping().1
}

enum Kind {
    Alloc,
    AllocZeroed,
}

/// One allocation through the global allocator (so through leakcheck) that the inner
/// allocator refuses. Returns the pointer it got, which the caller checks is null.
#[inline(never)]
fn failed_allocation(kind: &Kind, layout: Layout) -> *mut u8 {
    fail_next(1);
    let before = failures_so_far();
    // SAFETY: `layout` has a non-zero size.
    let ptr = unsafe {
        match kind {
            Kind::Alloc => std::alloc::alloc(layout),
            Kind::AllocZeroed => std::alloc::alloc_zeroed(layout),
        }
    };
    let ptr = std::hint::black_box(ptr);
    assert_eq!(
        failures_so_far(),
        before + 1,
        "the inner allocator was asked"
    );
    fail_next(0);
    ptr
}

#[test]
fn null_from_the_inner_allocator_is_returned_unchanged() {
    let _serial = serial();
    let layout = Layout::from_size_align(100, 8).unwrap();
    for kind in [Kind::Alloc, Kind::AllocZeroed] {
        // Outside any check, and inside one.
        assert!(failed_allocation(&kind, layout).is_null());
        let report = leakcheck::check(|| {
            assert!(failed_allocation(&kind, layout).is_null());
        });
        assert!(report.is_clean(), "{report}");
    }
    // A failed realloc returns null and leaves the old block intact.
    // SAFETY: non-zero size; the block is freed below with the layout it has.
    unsafe {
        let ptr = std::alloc::alloc(layout);
        assert!(!ptr.is_null());
        ptr.write_bytes(0xAB, 100);
        fail_next(1);
        let grown = std::hint::black_box(std::alloc::realloc(ptr, layout, 4096));
        fail_next(0);
        assert!(grown.is_null());
        assert!((0..100).all(|i| *ptr.add(i) == 0xAB));
        std::alloc::dealloc(ptr, layout);
    }
}

#[test]
fn a_failed_allocation_is_not_recorded() {
    let _serial = serial();
    let layout = Layout::from_size_align(4096, 16).unwrap();
    let mut counts = Vec::with_capacity(8);
    let report = leakcheck::check(|| {
        counts.push(records());
        assert!(failed_allocation(&Kind::Alloc, layout).is_null());
        counts.push(records());
        assert!(failed_allocation(&Kind::AllocZeroed, layout).is_null());
        counts.push(records());
    });
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.leaked_allocations(), 0, "{report}");
    assert!(
        counts.windows(2).all(|w| w[0] == w[1]),
        "record count changed across failed allocations: {counts:?}"
    );
}

#[test]
fn a_failed_allocation_is_not_counted_in_budgets() {
    let _serial = serial();
    let layout = Layout::from_size_align(64, 8).unwrap();
    let report = leakcheck::Check::new().max_allocs(0).max_bytes(0).run(|| {
        assert!(failed_allocation(&Kind::Alloc, layout).is_null());
        assert!(failed_allocation(&Kind::AllocZeroed, layout).is_null());
    });
    assert!(report.is_clean(), "{report}");
    assert!(report.budget_overruns().is_empty(), "{report}");

    // A failed realloc of the body's own block: one allocation and its bytes count, the failed
    // growth does not.
    let report = leakcheck::Check::new()
        .max_allocs(1)
        .max_bytes(64)
        .max_peak_bytes(64)
        .run(|| {
            // SAFETY: non-zero size; freed below with its layout.
            unsafe {
                let ptr = std::hint::black_box(std::alloc::alloc(layout));
                assert!(!ptr.is_null());
                fail_next(1);
                assert!(std::alloc::realloc(ptr, layout, 1 << 20).is_null());
                fail_next(0);
                std::alloc::dealloc(ptr, layout);
            }
        });
    assert!(report.is_clean(), "{report}");
    assert!(report.budget_overruns().is_empty(), "{report}");
}

#[test]
fn a_failed_realloc_keeps_the_original_block_tracked() {
    let _serial = serial();
    let layout = Layout::from_size_align(123, 8).unwrap();
    let before = records();
    let report = check_every_block(|| {
        // SAFETY: non-zero size; the block is deliberately leaked.
        unsafe {
            let ptr = std::hint::black_box(std::alloc::alloc(layout));
            assert!(!ptr.is_null());
            fail_next(1);
            assert!(std::hint::black_box(std::alloc::realloc(ptr, layout, 10_000)).is_null());
            fail_next(0);
            // Forgotten: still live, at its original size.
        }
    });
    assert_eq!(report.leaked_allocations(), 1, "{report}");
    assert_eq!(report.leaked_bytes(), 123, "{report}");
    assert_eq!(report.groups()[0].bytes(), 123, "{report}");
    // The check took its records with it.
    assert_eq!(records(), before);
}

#[test]
fn failures_between_successes_leave_exact_accounting() {
    let _serial = serial();
    // Every third allocation fails; the successful ones are kept, so the report must list
    // exactly those and the failed ones must be invisible.
    let report = check_every_block(|| {
        let mut kept = 0usize;
        for i in 1..=30usize {
            let layout = Layout::from_size_align(i * 8, 8).unwrap();
            fail_next(u32::from(i % 3 == 0));
            // SAFETY: non-zero size; successful blocks are deliberately leaked.
            let ptr = std::hint::black_box(unsafe { std::alloc::alloc(layout) });
            fail_next(0);
            assert_eq!(ptr.is_null(), i % 3 == 0, "allocation {i}");
            if !ptr.is_null() {
                kept += i * 8;
            }
        }
        assert_eq!(kept, 8 * (1..=30).filter(|i| i % 3 != 0).sum::<usize>());
    });
    assert_eq!(report.leaked_allocations(), 20, "{report}");
    assert_eq!(
        report.leaked_bytes(),
        8 * (1..=30).filter(|i| i % 3 != 0).sum::<usize>(),
        "{report}"
    );
}

#[test]
fn a_huge_request_the_system_refuses_is_not_recorded() {
    let _serial = serial();
    // A real failure from the system allocator, not an injected one.
    let layout = Layout::from_size_align(1 << 62, 8).unwrap();
    let before = records();
    let report = leakcheck::Check::new().max_allocs(0).run(|| {
        // SAFETY: non-zero size.
        let ptr = std::hint::black_box(unsafe { std::alloc::alloc(layout) });
        assert!(ptr.is_null());
        assert_eq!(records(), before);
    });
    assert!(report.is_clean(), "{report}");
}

/// Leaks one block from one of `2^depth` distinct call paths, picked by `path`.
#[inline(never)]
fn leak_from_path(path: u32, depth: u32) {
    if depth == 0 {
        std::mem::forget(std::hint::black_box(vec![5u8; 24]));
    } else if path & 1 == 0 {
        leak_left(path >> 1, depth - 1);
    } else {
        leak_right(path >> 1, depth - 1);
    }
}

#[inline(never)]
fn leak_left(path: u32, depth: u32) {
    leak_from_path(path, depth);
    std::hint::black_box(1u8);
}

#[inline(never)]
fn leak_right(path: u32, depth: u32) {
    leak_from_path(path, depth);
    std::hint::black_box(2u16);
}

/// Turns injected bookkeeping failures off again even if the test fails.
struct BookkeepingFault;

impl BookkeepingFault {
    fn new(table: bool, stacks: bool) -> BookkeepingFault {
        leakcheck::__private::fail_bookkeeping(table, stacks);
        BookkeepingFault
    }
}

impl Drop for BookkeepingFault {
    fn drop(&mut self) {
        leakcheck::__private::fail_bookkeeping(false, false);
    }
}

#[test]
fn a_full_stack_store_degrades_to_counting_and_says_so() {
    let _serial = serial();
    let report = {
        let _fault = BookkeepingFault::new(false, true);
        // Sixteen call paths this process has never seen: none can be stored.
        check_every_block(|| (0..16).for_each(|path| leak_from_path(path, 4)))
    };
    assert_eq!(report.leaked_bytes(), 16 * 24, "{report}");
    assert_eq!(report.leaked_allocations(), 16, "{report}");
    let text = report.to_string();
    assert!(
        text.contains("note: stacks unavailable for 16 allocations"),
        "{text}"
    );
    assert!(text.contains("no stack could be resolved"), "{text}");
    // With room again, the same paths get their stacks.
    let report = check_every_block(|| leak_from_path(3, 4));
    assert!(
        !report.to_string().contains("stacks unavailable"),
        "{report}"
    );
    assert!(report.groups()[0].frames().len() > 1, "{report}");
}

#[test]
fn a_table_that_cannot_grow_degrades_to_counting_and_keeps_every_block() {
    let _serial = serial();
    const BLOCKS: usize = 100_000;
    let (report, kept) = {
        let _fault = BookkeepingFault::new(true, false);
        let mut kept = Vec::new();
        let report = check_every_block(|| {
            kept = (0..BLOCKS)
                .map(|i| std::hint::black_box(Box::new(i as u64)))
                .collect::<Vec<_>>();
        });
        (report, kept)
    };
    // The user's blocks are all intact: the bookkeeping failure never touches them.
    assert!(kept.iter().enumerate().all(|(i, b)| **b == i as u64));
    let text = report.to_string();
    assert!(text.contains("could not be tracked"), "{text}");
    assert!(report.leaked_allocations() < BLOCKS + 1, "{report}");
    drop(kept);
}
