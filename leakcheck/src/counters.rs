//! `leakcheck::stats()` (feature `stats`): process-wide allocation counters, summed from
//! per-thread ones. Without the feature nothing is counted, and this module only registers each
//! thread (which turns its fast path on) and retires it at exit.
//!
//! The counters are a feature, off by default, because they are the installed allocator's
//! largest idle cost: four counter bumps per alloc+free pair took the idle allocator from 1.04x
//! to 1.11x a bare passthrough wrapper (`benches/alloc_paired.rs`; the idle target is 1.10x at
//! most), and a test suite that only checks for leaks never reads them.
//!
//! Each thread counts in its own thread-local block (`raw::local`), which it registers the
//! first time it allocates; only that thread ever writes its counters, with a plain load and
//! store (no read-modify-write, no lock prefix, so no cache line bounces between cores: shared
//! atomic counters cost 2 to 16 times a bare `malloc`). [`stats`] sums the registered blocks
//! under the registry's lock. When the thread exits, a thread-local destructor folds its
//! counts into the process's retired totals and leaves the registry; anything it allocates or
//! frees after that (other thread-locals' destructors run after ours) goes straight to the
//! retired totals, as do threads beyond the registry's size.
//!
//! WARNING: the counting functions run inside the global allocator: they must never allocate
//! or panic, and the only lock they take (registering, retiring) is the registry's spin lock.
//! The one thread-local with a `Drop` (the exit guard) is first touched on the thread's first
//! allocation, in the cold path, where its registration with glibc's
//! `__cxa_thread_atexit_impl` uses glibc's own `malloc`, not ours.
#![forbid(unsafe_code)]

use crate::raw::local::{self, Local};
use core::cell::Cell;
use core::sync::atomic::{AtomicU64, Ordering};

/// Whether this build counts (the `stats` feature). A constant, so that without the feature
/// the bumps compile to nothing and the idle path is one test of a thread-local byte.
const COUNTING: bool = cfg!(feature = "stats");

/// Process-wide allocation counters, as [`stats`] returns them (feature `stats`).
///
/// Every figure counts what went through the leakcheck allocator since the process started,
/// on every thread, checked or not: the figures `stats_alloc` users know. A reallocation counts
/// once in [`reallocations`](Stats::reallocations) and its growth (or shrinkage) in
/// [`bytes_allocated`](Stats::bytes_allocated) (or [`bytes_deallocated`](Stats::bytes_deallocated)).
#[cfg(feature = "stats")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Blocks allocated (`alloc` and `alloc_zeroed`).
    pub allocations: u64,
    /// Blocks freed.
    pub deallocations: u64,
    /// Successful `realloc` calls.
    pub reallocations: u64,
    /// Bytes allocated, plus what reallocations grew by.
    pub bytes_allocated: u64,
    /// Bytes freed, plus what reallocations shrank by.
    pub bytes_deallocated: u64,
    /// Bytes live now: `bytes_allocated - bytes_deallocated`.
    pub live_bytes: u64,
    /// Blocks live now: `allocations - deallocations`.
    pub live_blocks: u64,
    /// The highest `live_bytes` that any call to [`stats`] in this process has returned, this
    /// one included. It is a lower bound of the true peak: an exact high-water mark needs one
    /// shared counter updated by every allocation on every thread, which is what makes
    /// counting allocators slow. Call `stats()` where the peak is expected (after a burst),
    /// or measure a piece of code exactly with [`Check::max_peak_bytes`](crate::Check::max_peak_bytes).
    pub peak_live_bytes: u64,
}

/// Returns the process-wide allocation counters (feature `stats`:
/// `leakcheck = { version = "0.1", features = ["stats"] }`).
///
/// Cheap (sums the counters of each thread alive now, allocates nothing) and usable anywhere, also
/// inside checks and without one. Each counter is read once; while other threads allocate, the
/// figures are each exact for a moment but not for the same moment (`live_bytes` never goes
/// below zero). All zero when the leakcheck allocator is not the `#[global_allocator]`.
///
/// ```
/// #[global_allocator]
/// static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();
///
/// # fn main() {
/// let before = leakcheck::stats();
/// let buffer = std::hint::black_box(vec![0u8; 4096]);
/// let after = leakcheck::stats();
/// assert!(after.allocations > before.allocations);
/// assert!(after.bytes_allocated >= before.bytes_allocated + 4096);
/// assert!(after.peak_live_bytes >= after.live_bytes);
/// drop(buffer);
/// # }
/// ```
#[cfg(feature = "stats")]
pub fn stats() -> Stats {
    let totals = sum();
    let live_bytes = totals[BYTES_ALLOCATED].saturating_sub(totals[BYTES_DEALLOCATED]);
    let peak = PEAK
        .fetch_max(live_bytes, Ordering::Relaxed)
        .max(live_bytes);
    Stats {
        allocations: totals[ALLOCATIONS],
        deallocations: totals[DEALLOCATIONS],
        reallocations: totals[REALLOCATIONS],
        bytes_allocated: totals[BYTES_ALLOCATED],
        bytes_deallocated: totals[BYTES_DEALLOCATED],
        live_bytes,
        live_blocks: totals[ALLOCATIONS].saturating_sub(totals[DEALLOCATIONS]),
        peak_live_bytes: peak,
    }
}

const ALLOCATIONS: usize = 0;
const DEALLOCATIONS: usize = 1;
const REALLOCATIONS: usize = 2;
const BYTES_ALLOCATED: usize = 3;
const BYTES_DEALLOCATED: usize = 4;
const FIELDS: usize = local::FIELDS;

/// Counts of exited threads, of threads outside the registry, and of threads' last events
/// after their exit guard ran. Updated with `fetch_add` (the slow path).
static RETIRED: [AtomicU64; FIELDS] = [const { AtomicU64::new(0) }; FIELDS];

#[cfg(feature = "stats")]
static PEAK: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Whether this thread has tried to register its counters (whether it is registered now is
    /// its block's to say). A thread that tried and is not registered counts in the retired
    /// totals: it has exited, or the registry was full. Read only in the cold path.
    static TRIED_TO_REGISTER: Cell<bool> = const { Cell::new(false) };
    /// Its destructor takes the thread out of the registry when the thread exits. Touched once
    /// per thread, in the cold path.
    static EXIT_GUARD: ExitGuard = const { ExitGuard };
}

struct ExitGuard;

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let _ = TRIED_TO_REGISTER.try_with(|t| t.set(true));
        local::retire_this_thread(fold_into_retired);
        // Not a statistic, but the same moment: the record table's shards biased to this
        // thread go back, so the next thread that uses them need not revoke.
        crate::raw::table::release_biases();
    }
}

fn fold_into_retired(local: &Local) {
    if !COUNTING {
        return;
    }
    for (field, retired) in RETIRED.iter().enumerate() {
        retired.fetch_add(local.count(field), Ordering::Relaxed);
    }
}

/// Counts an allocation of `size` bytes in this thread's block. The caller has checked that
/// the thread is registered (its fast path is on).
#[inline(always)]
pub(crate) fn count_allocation(local: &Local, size: usize) {
    if COUNTING {
        local.bump(ALLOCATIONS, 1);
        local.bump(BYTES_ALLOCATED, size as u64);
    }
}

/// Counts a free of `size` bytes in this thread's block, as [`count_allocation`].
#[inline(always)]
pub(crate) fn count_deallocation(local: &Local, size: usize) {
    if COUNTING {
        local.bump(DEALLOCATIONS, 1);
        local.bump(BYTES_DEALLOCATED, size as u64);
    }
}

/// A block of `size` bytes was allocated (the out-of-line path: the thread may not be
/// registered).
pub(crate) fn allocated(size: usize) {
    count((ALLOCATIONS, 1), (BYTES_ALLOCATED, size as u64));
}

/// A block of `size` bytes is being freed (the out-of-line path).
pub(crate) fn deallocated(size: usize) {
    count((DEALLOCATIONS, 1), (BYTES_DEALLOCATED, size as u64));
}

/// A block was reallocated from `old_size` to `new_size` bytes. Without the feature, nothing:
/// the thread registers at its first allocation or free, whichever path that takes.
#[inline]
pub(crate) fn reallocated(old_size: usize, new_size: usize) {
    if !COUNTING {
        return;
    }
    let change = if new_size >= old_size {
        (BYTES_ALLOCATED, (new_size - old_size) as u64)
    } else {
        (BYTES_DEALLOCATED, (old_size - new_size) as u64)
    };
    count((REALLOCATIONS, 1), change);
}

/// Adds to two counters: this thread's own if it is registered, else (cold) the retired
/// totals, registering the thread first if it never tried.
#[inline]
fn count(first: (usize, u64), second: (usize, u64)) {
    let counted = local::with(
        |local| {
            local.is_registered() && {
                if COUNTING {
                    local.bump(first.0, first.1);
                    local.bump(second.0, second.1);
                }
                true
            }
        },
        false,
    );
    if !counted {
        slow(first.0, first.1, second.0, second.1);
    }
}

/// The first event of a thread (registers it), or one of a thread outside the registry.
#[cold]
#[inline(never)]
fn slow(field: usize, n: u64, field2: usize, n2: u64) {
    let registered = TRIED_TO_REGISTER
        .try_with(|t| !t.replace(true))
        .unwrap_or(false)
        && register();
    if !COUNTING {
        return;
    }
    for (field, n) in [(field, n), (field2, n2)] {
        let counted = registered
            && local::with(
                |local| {
                    local.bump(field, n);
                    true
                },
                false,
            );
        if !counted {
            RETIRED[field].fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Registers the calling thread, once (the caller marked the try). Anything it does while it
/// registers counts as retired, and so does all it does if it cannot register.
fn register() -> bool {
    // Fails when the thread's thread-locals are being destroyed already: then nothing would
    // take it out of the registry before its memory goes.
    if EXIT_GUARD.try_with(|_| ()).is_err() {
        return false;
    }
    // The registry's lock must not stay held, in a forked child, by a thread it lacks.
    crate::raw::prepare_for_fork();
    local::register_this_thread()
}

/// In a freshly forked child: the threads that did not come along count as exited.
pub(crate) fn recover_after_fork() {
    local::recover_after_fork(fold_into_retired);
}

/// Sums every registered thread's counters and the retired totals, under the registry's lock
/// (a thread folds its counters into the retired totals under the same lock, so none is seen
/// twice or missed).
#[cfg(feature = "stats")]
fn sum() -> [u64; FIELDS] {
    local::with_registered(|threads| {
        let mut totals = [0u64; FIELDS];
        for local in threads {
            for (field, total) in totals.iter_mut().enumerate() {
                *total = total.wrapping_add(local.count(field));
            }
        }
        for (total, retired) in totals.iter_mut().zip(&RETIRED) {
            *total = total.wrapping_add(retired.load(Ordering::Relaxed));
        }
        totals
    })
}

#[cfg(test)]
pub(crate) mod tests {
    //! The unit-test binary does not install the allocator, so only these tests move the
    //! counters: they call the hooks directly, one test at a time.
    use super::*;
    use std::sync::Mutex;

    /// Serialises the tests that count registered threads or change their bits (here and in
    /// `raw::local`).
    pub(crate) static SERIAL: Mutex<()> = Mutex::new(());

    fn slots_in_use() -> usize {
        local::registered_threads()
    }

    #[cfg(feature = "stats")]
    #[test]
    fn counts_survive_thread_exit_and_slots_come_back() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let before = stats();
        let slots_before = slots_in_use();
        std::thread::spawn(move || {
            for _ in 0..3 {
                allocated(100);
            }
            deallocated(40);
            reallocated(10, 30);
            reallocated(30, 5);
            assert_eq!(slots_in_use(), slots_before + 1);
            let now = stats();
            assert_eq!(now.allocations - before.allocations, 3);
            assert_eq!(now.live_bytes - before.live_bytes, 300 - 40 + 20 - 25);
        })
        .join()
        .unwrap();
        assert_eq!(slots_in_use(), slots_before);
        let after = stats();
        assert_eq!(after.allocations - before.allocations, 3);
        assert_eq!(after.deallocations - before.deallocations, 1);
        assert_eq!(after.reallocations - before.reallocations, 2);
        assert_eq!(after.bytes_allocated - before.bytes_allocated, 320);
        assert_eq!(after.bytes_deallocated - before.bytes_deallocated, 65);
        assert_eq!(after.live_bytes - before.live_bytes, 255);
        assert_eq!(after.live_blocks - before.live_blocks, 2);
        assert!(after.peak_live_bytes >= after.live_bytes);
    }

    #[cfg(feature = "stats")]
    #[test]
    fn events_after_the_exit_guard_go_to_the_retired_totals() {
        struct Late;
        impl Drop for Late {
            fn drop(&mut self) {
                // Runs after `EXIT_GUARD`'s destructor (registered later, destroyed earlier).
                allocated(7);
                deallocated(3);
            }
        }
        thread_local! {
            static LATE: Late = const { Late };
        }
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let before = stats();
        let slots_before = slots_in_use();
        std::thread::spawn(|| {
            LATE.with(|_| ());
            allocated(1000);
        })
        .join()
        .unwrap();
        assert_eq!(slots_in_use(), slots_before);
        let after = stats();
        assert_eq!(after.allocations - before.allocations, 2);
        assert_eq!(after.bytes_allocated - before.bytes_allocated, 1007);
        assert_eq!(after.bytes_deallocated - before.bytes_deallocated, 3);
    }

    #[cfg(feature = "stats")]
    #[test]
    fn threads_beyond_the_registry_still_count_exactly() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let before = stats();
        // More threads alive at once than the registry holds: the extra ones count in the
        // retired totals.
        const THREADS: usize = 1100;
        let all_counted = std::sync::Arc::new(std::sync::Barrier::new(THREADS + 1));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let all_counted = all_counted.clone();
                std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || {
                        allocated(10);
                        deallocated(4);
                        all_counted.wait();
                    })
                    .expect("spawning a test thread")
            })
            .collect();
        all_counted.wait();
        let during = stats();
        for thread in threads {
            thread.join().unwrap();
        }
        let after = stats();
        for now in [during, after] {
            assert_eq!(now.allocations - before.allocations, THREADS as u64);
            assert_eq!(
                now.bytes_allocated - before.bytes_allocated,
                10 * THREADS as u64
            );
            assert_eq!(
                now.bytes_deallocated - before.bytes_deallocated,
                4 * THREADS as u64
            );
        }
    }

    #[test]
    fn many_threads_reuse_slots() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        #[cfg(feature = "stats")]
        let before = stats();
        let slots_before = slots_in_use();
        for _ in 0..1100 {
            std::thread::spawn(|| {
                allocated(1);
                assert!(local::with(Local::is_registered, false));
            })
            .join()
            .unwrap();
        }
        assert_eq!(slots_in_use(), slots_before);
        #[cfg(feature = "stats")]
        assert_eq!(stats().allocations - before.allocations, 1100);
    }

    /// Without the feature, threads still register (their fast path needs it) and nothing
    /// counts.
    #[cfg(not(feature = "stats"))]
    #[test]
    fn without_the_feature_threads_register_and_nothing_counts() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let slots_before = slots_in_use();
        std::thread::spawn(move || {
            allocated(100);
            reallocated(100, 200);
            local::with(|local| count_allocation(local, 50), ());
            deallocated(250);
            assert_eq!(slots_in_use(), slots_before + 1);
            let counts = local::with(|local| (0..FIELDS).map(|f| local.count(f)).sum::<u64>(), 1);
            assert_eq!(counts, 0);
        })
        .join()
        .unwrap();
        assert_eq!(slots_in_use(), slots_before);
        assert!(RETIRED.iter().all(|r| r.load(Ordering::Relaxed) == 0));
    }
}
