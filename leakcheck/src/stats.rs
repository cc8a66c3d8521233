//! `leakcheck::stats()`: process-wide allocation counters, summed from per-thread ones.
//!
//! Each thread that allocates takes one slot of a fixed registry the first time it allocates,
//! and only that thread ever writes the slot's counters, with a plain load and store (no
//! read-modify-write, no lock prefix, so no cache line bounces between cores: shared atomic
//! counters cost 2 to 16 times a bare `malloc`). [`stats`] sums the slots. When the thread
//! exits, a thread-local destructor folds its counts into the process's retired totals and
//! gives the slot back; anything it allocates or frees after that (other thread-locals'
//! destructors run after ours) goes straight to the retired totals, as do threads beyond the
//! registry's size.
//!
//! WARNING: [`allocated`], [`deallocated`] and [`reallocated`] run inside the global allocator:
//! they must never allocate, panic or take a lock. The only thread-local they touch on the hot
//! path is const-initialised and has no `Drop`; the one with a `Drop` (the exit guard) is first
//! touched on the thread's first allocation, in the cold path, where its registration with
//! glibc's `__cxa_thread_atexit_impl` uses glibc's own `malloc`, not ours.
#![forbid(unsafe_code)]

use core::cell::Cell;
use core::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Process-wide allocation counters, as [`stats`] returns them.
///
/// Every figure counts what went through the leakcheck allocator since the process started,
/// on every thread, checked or not: the figures `stats_alloc` users know. A reallocation counts
/// once in [`reallocations`](Stats::reallocations) and its growth (or shrinkage) in
/// [`bytes_allocated`](Stats::bytes_allocated) (or [`bytes_deallocated`](Stats::bytes_deallocated)).
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

/// Returns the process-wide allocation counters.
///
/// Cheap (sums a few hundred per-thread counters, allocates nothing) and usable anywhere, also
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
const FIELDS: usize = 5;

/// Threads that can count without atomic read-modify-writes at the same time; more go to the
/// shared retired totals (correct, only slower).
const SLOT_COUNT: usize = 256;

/// One thread's counters, on a cache line of its own. Written by the owning thread only.
#[repr(align(64))]
struct Slot {
    in_use: AtomicBool,
    counts: [AtomicU64; FIELDS],
}

static SLOTS: [Slot; SLOT_COUNT] = [const {
    Slot {
        in_use: AtomicBool::new(false),
        counts: [const { AtomicU64::new(0) }; FIELDS],
    }
}; SLOT_COUNT];

/// One past the highest slot ever taken: [`stats`] sums no further.
static SLOTS_USED: AtomicUsize = AtomicUsize::new(0);

/// Counts of exited threads, of threads without a slot, and of threads' last allocations
/// after their exit guard ran. Updated with `fetch_add` (the slow path).
static RETIRED: [AtomicU64; FIELDS] = [const { AtomicU64::new(0) }; FIELDS];

/// Retirements started and finished: a retirement moves counts from a slot to [`RETIRED`],
/// and a sum taken while one is under way would see them twice or not at all.
static RETIRING_STARTED: AtomicU64 = AtomicU64::new(0);
static RETIRING_FINISHED: AtomicU64 = AtomicU64::new(0);

static PEAK: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's slot while it has one. Read on every allocation and free.
    static MY_SLOT: Cell<Option<&'static Slot>> = const { Cell::new(None) };
    /// Whether this thread has been given a slot, or counts as retired (exited, or no slot
    /// was free). Read only in the cold path.
    static SLOT_STATE: Cell<SlotState> = const { Cell::new(SlotState::Unassigned) };
    /// Its destructor gives the slot back when the thread exits. Touched once per thread, in
    /// the cold path.
    static EXIT_GUARD: ExitGuard = const { ExitGuard };
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Unassigned,
    Assigned,
    Retired,
}

struct ExitGuard;

impl Drop for ExitGuard {
    fn drop(&mut self) {
        retire_this_thread();
    }
}

/// Adds `n` to a counter only this thread writes: a load and a store, no atomic
/// read-modify-write.
#[inline(always)]
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

#[inline(always)]
fn my_slot() -> Option<&'static Slot> {
    MY_SLOT.try_with(Cell::get).ok().flatten()
}

/// A block of `size` bytes was allocated.
#[inline(always)]
pub(crate) fn allocated(size: usize) {
    if !counted_allocation(size) {
        allocated_slow(size);
    }
}

/// Counts an allocation if this thread has its slot (the common case); false if it has none,
/// and nothing was counted.
#[inline(always)]
pub(crate) fn counted_allocation(size: usize) -> bool {
    match my_slot() {
        Some(slot) => {
            bump(&slot.counts[ALLOCATIONS], 1);
            bump(&slot.counts[BYTES_ALLOCATED], size as u64);
            true
        }
        None => false,
    }
}

#[cold]
#[inline(never)]
fn allocated_slow(size: usize) {
    slow(ALLOCATIONS, 1, BYTES_ALLOCATED, size as u64);
}

/// A block of `size` bytes is being freed.
#[inline(always)]
pub(crate) fn deallocated(size: usize) {
    match my_slot() {
        Some(slot) => {
            bump(&slot.counts[DEALLOCATIONS], 1);
            bump(&slot.counts[BYTES_DEALLOCATED], size as u64);
        }
        None => deallocated_slow(size),
    }
}

#[cold]
#[inline(never)]
fn deallocated_slow(size: usize) {
    slow(DEALLOCATIONS, 1, BYTES_DEALLOCATED, size as u64);
}

/// A block was reallocated from `old_size` to `new_size` bytes.
#[inline]
pub(crate) fn reallocated(old_size: usize, new_size: usize) {
    let (field, delta) = if new_size >= old_size {
        (BYTES_ALLOCATED, (new_size - old_size) as u64)
    } else {
        (BYTES_DEALLOCATED, (old_size - new_size) as u64)
    };
    match my_slot() {
        Some(slot) => {
            bump(&slot.counts[REALLOCATIONS], 1);
            bump(&slot.counts[field], delta);
        }
        None => slow(REALLOCATIONS, 1, field, delta),
    }
}

/// The first event of a thread (takes a slot), or one of a thread without a slot.
fn slow(field: usize, n: u64, field2: usize, n2: u64) {
    let slot = match SLOT_STATE.try_with(Cell::get) {
        Ok(SlotState::Unassigned) => take_slot(),
        _ => None,
    };
    for (field, n) in [(field, n), (field2, n2)] {
        match slot {
            Some(slot) => bump(&slot.counts[field], n),
            None => {
                RETIRED[field].fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

fn take_slot() -> Option<&'static Slot> {
    // Anything this thread allocates while the slot is being set up counts as retired, and
    // so does all it does if no slot is free.
    let _ = SLOT_STATE.try_with(|s| s.set(SlotState::Retired));
    let (index, slot) = SLOTS.iter().enumerate().find(|(_, slot)| {
        !slot.in_use.load(Ordering::Relaxed)
            && slot
                .in_use
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    })?;
    // Fails when the thread's thread-locals are being destroyed already: then nothing would
    // give the slot back, so the thread counts as retired for the rest of its life.
    if EXIT_GUARD.try_with(|_| ()).is_err() {
        slot.in_use.store(false, Ordering::Release);
        return None;
    }
    SLOTS_USED.fetch_max(index + 1, Ordering::Relaxed);
    let _ = MY_SLOT.try_with(|s| s.set(Some(slot)));
    let _ = SLOT_STATE.try_with(|s| s.set(SlotState::Assigned));
    Some(slot)
}

/// Moves this thread's counts to the retired totals and gives its slot back.
fn retire_this_thread() {
    let _ = SLOT_STATE.try_with(|s| s.set(SlotState::Retired));
    let Some(slot) = MY_SLOT.try_with(|s| s.take()).ok().flatten() else {
        return;
    };
    RETIRING_STARTED.fetch_add(1, Ordering::Relaxed);
    fence(Ordering::Release);
    for (field, counter) in slot.counts.iter().enumerate() {
        RETIRED[field].fetch_add(counter.swap(0, Ordering::Relaxed), Ordering::Relaxed);
    }
    RETIRING_FINISHED.fetch_add(1, Ordering::Release);
    slot.in_use.store(false, Ordering::Release);
}

/// Sums every slot and the retired totals, retrying (a bounded number of times) while a
/// thread's retirement is under way, the way a sequence lock's reader does.
fn sum() -> [u64; FIELDS] {
    let mut totals = [0u64; FIELDS];
    for _ in 0..1000 {
        let finished = RETIRING_FINISHED.load(Ordering::Acquire);
        let started = RETIRING_STARTED.load(Ordering::Acquire);
        if started != finished {
            core::hint::spin_loop();
            continue;
        }
        totals = read_all();
        fence(Ordering::Acquire);
        if RETIRING_STARTED.load(Ordering::Relaxed) == started {
            return totals;
        }
    }
    totals
}

fn read_all() -> [u64; FIELDS] {
    let mut totals = [0u64; FIELDS];
    let used = SLOTS_USED.load(Ordering::Acquire).min(SLOT_COUNT);
    for slot in &SLOTS[..used] {
        for (total, counter) in totals.iter_mut().zip(&slot.counts) {
            *total = total.wrapping_add(counter.load(Ordering::Relaxed));
        }
    }
    for (total, counter) in totals.iter_mut().zip(&RETIRED) {
        *total = total.wrapping_add(counter.load(Ordering::Relaxed));
    }
    totals
}

#[cfg(test)]
mod tests {
    //! The unit-test binary does not install the allocator, so only these tests move the
    //! counters: they call the hooks directly, one test at a time.
    use super::*;
    use std::sync::Mutex;

    static SERIAL: Mutex<()> = Mutex::new(());

    fn slots_in_use() -> usize {
        SLOTS
            .iter()
            .filter(|s| s.in_use.load(Ordering::Relaxed))
            .count()
    }

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

    #[test]
    fn many_threads_reuse_slots() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let before = stats();
        for _ in 0..(SLOT_COUNT + 10) {
            std::thread::spawn(|| allocated(1)).join().unwrap();
        }
        let after = stats();
        assert_eq!(
            after.allocations - before.allocations,
            SLOT_COUNT as u64 + 10
        );
        assert!(SLOTS_USED.load(Ordering::Relaxed) < SLOT_COUNT);
    }
}
