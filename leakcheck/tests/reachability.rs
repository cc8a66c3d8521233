//! What the root scan makes of blocks left live by a check: kept by a static or a
//! thread-local (reachable, not a failure unless `reachable = "fail"`), lost outright
//! (definitely), or held only by lost blocks (indirectly).

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

use leakcheck::{Check, Kind, Reachable};
use std::cell::RefCell;
use std::hint::black_box;
use std::sync::Mutex;

static REGISTRY: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());

thread_local! {
    static SCRATCH: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

#[inline(never)]
fn register(n: usize) {
    REGISTRY
        .lock()
        .unwrap()
        .push(black_box(vec![7u8; n]).into_boxed_slice());
}

// Each test has its own static, so that no test depends on another having run first.
#[test]
fn a_cache_in_a_static_is_reachable_and_passes() {
    let report = leakcheck::check(|| register(300));
    assert!(report.is_clean(), "{report}");
    let (bytes, blocks) = report.reachable();
    assert!(bytes >= 300 && blocks >= 1, "{report}");
    assert!(
        report
            .to_string()
            .contains("still reachable from statics, thread-locals or the stack"),
        "{report}"
    );
}

static OTHER_REGISTRY: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());

static SHARED_CACHE: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());

/// Two tests sharing a cache under `cargo test`: the first creates its table, the second only
/// adds an entry, which the table (a block from the first check, not from the second) points
/// to. The scan must follow blocks that earlier checks left reachable, or the second test fails
/// for a leak it did not make.
#[test]
fn an_entry_added_to_a_cache_that_an_earlier_check_created_is_reachable() {
    let created = leakcheck::check(|| SHARED_CACHE.lock().unwrap().reserve(16));
    assert!(created.is_clean(), "{created}");
    assert!(created.reachable().0 >= 16 * 16, "{created}");
    let filled = leakcheck::check(|| {
        let mut cache = SHARED_CACHE.lock().unwrap();
        let before = cache.capacity();
        cache.push(black_box(vec![3u8; 302]).into_boxed_slice());
        assert_eq!(cache.capacity(), before, "the table must not have grown");
    });
    assert!(filled.is_clean(), "{filled}");
    assert_eq!(filled.reachable(), (302, 1), "{filled}");
    // A block that only such a table pointed to, once the table drops it, is a leak again.
    let lost = Check::new().run(|| {
        let entry = SHARED_CACHE.lock().unwrap().pop().unwrap();
        std::mem::forget(black_box(entry));
        leak_box_in_table(303);
    });
    assert_eq!(lost.leaked_bytes(), 303, "{lost}");
}

/// A block put into the shared table, then the table slot overwritten: nothing points to it.
#[inline(never)]
fn leak_box_in_table(n: usize) {
    let mut cache = SHARED_CACHE.lock().unwrap();
    cache.push(black_box(vec![4u8; n]).into_boxed_slice());
    let slot = cache.last_mut().unwrap();
    std::mem::forget(std::mem::replace(slot, Box::new([])));
}

#[test]
fn reachable_fail_counts_them() {
    let report = Check::new().reachable(Reachable::Fail).run(|| {
        OTHER_REGISTRY
            .lock()
            .unwrap()
            .push(black_box(vec![7u8; 301]).into_boxed_slice());
    });
    assert!(!report.is_clean(), "{report}");
    assert!(
        report
            .groups()
            .iter()
            .any(|g| g.kind() == Kind::Reachable && g.bytes() == 301),
        "{report}"
    );
}

#[test]
fn a_thread_local_cache_is_reachable() {
    let report = leakcheck::check(|| {
        SCRATCH.with(|s| {
            s.borrow_mut()
                .push(black_box(vec![1u8; 222]).into_boxed_slice())
        });
    });
    assert!(report.is_clean(), "{report}");
    assert!(report.reachable().0 >= 222, "{report}");
}

struct Node {
    _payload: [u8; 40],
    _next: Option<Box<Node>>,
}

#[test]
fn a_lost_list_is_one_direct_and_the_rest_indirect() {
    let report = leakcheck::check(|| {
        let tail = Box::new(Node {
            _payload: [0; 40],
            _next: None,
        });
        let middle = Box::new(Node {
            _payload: [1; 40],
            _next: Some(tail),
        });
        let head = Box::new(Node {
            _payload: [2; 40],
            _next: Some(middle),
        });
        std::mem::forget(black_box(head));
    });
    assert!(!report.is_clean(), "{report}");
    let direct: usize = report
        .groups()
        .iter()
        .filter(|g| g.kind() == Kind::Definite)
        .map(|g| g.allocations())
        .sum();
    let indirect: usize = report
        .groups()
        .iter()
        .filter(|g| g.kind() == Kind::Indirect)
        .map(|g| g.allocations())
        .sum();
    assert_eq!((direct, indirect), (1, 2), "{report}");
    let text = report.to_string();
    let size = std::mem::size_of::<Node>();
    assert!(
        text.contains(&format!(
            "{} ({} direct, {} indirect) bytes in 3 allocations",
            3 * size,
            size,
            2 * size
        )),
        "{text}"
    );
}

#[inline(never)]
fn leak(n: usize) {
    std::mem::forget(black_box(vec![1u8; n]));
}

#[test]
fn repeated_checks_never_mistake_stale_stack_slots_for_pointers() {
    // Each check frees its report and the next leak may reuse the address: a scan of the
    // caller's stack frames would see the stale copy and call the leak reachable.
    for _ in 0..50 {
        let report = leakcheck::check(|| leak(100));
        assert_eq!(report.leaked_bytes(), 100, "{report}");
    }
}

static STALE_CACHE: Mutex<Vec<Vec<usize>>> = Mutex::new(Vec::new());

/// The allocator hands out memory as the last owner left it. A cache's spare capacity can
/// therefore hold the address of a block freed long ago, and when a leak reuses that address
/// the cache "points" to the leak: a conservative scan calls it reachable, and the leak passes
/// silently (seen in the accuracy corpus once in ~80 parallel runs: a regex cache's spare
/// capacity kept a tokio task's leak alive). Blocks made inside a check are handed out zeroed
/// up to their size, so no stale word is left in them.
#[test]
fn a_stale_address_in_a_fresh_blocks_spare_capacity_does_not_hide_a_leak() {
    let mut leaked_at = 0;
    let mut reused = false;
    let report = leakcheck::check(|| {
        // A 200-byte block's address, then the block goes back to the allocator.
        let first = black_box(Box::new([1u8; 200]));
        let stale = &*first as *const [u8; 200] as usize;
        drop(first);
        // A 512-byte block that records that address, then goes back too.
        let mut old: Vec<usize> = Vec::with_capacity(64);
        old.extend(std::iter::repeat_n(stale, 64));
        drop(black_box(old));
        // A cache of the same size (glibc hands the same chunk back), kept by a static, its
        // capacity unused.
        let cache: Vec<usize> = black_box(Vec::with_capacity(64));
        STALE_CACHE.lock().unwrap().push(cache);
        // The leak, at the first block's address.
        let leak = black_box(Box::new([2u8; 200]));
        leaked_at = &*leak as *const [u8; 200] as usize;
        reused = leaked_at == stale;
        std::mem::forget(leak);
    });
    assert!(
        reused,
        "the allocator did not reuse the freed block's address, so this test proves nothing"
    );
    assert_eq!(report.leaked_allocations(), 1, "{report}");
    assert_eq!(report.leaked_bytes(), 200, "{report}");
    assert!(leaked_at != 0);
}
