//! Each thread's hot-path state, in one thread-local block, and the registry through which
//! other threads reach it.
//!
//! The idle allocator's work is one test of this block's byte of slow bits and two counter
//! bumps, all addressed from the thread pointer: no pointer to chase, no global to load through
//! the GOT. What other threads must be able to change or read (which operations have to leave
//! the fast path; the counters `leakcheck::stats()` sums) is reached through [`REGISTRY`], a
//! list of the registered threads' blocks behind a spin lock. A thread leaves the registry in
//! its thread-local destructor, under the same lock, before its thread-local memory goes away,
//! so no other thread ever reads a dead thread's block.
//!
//! The slow byte has two writers: the registry side (whichever thread refreshes, registers or
//! retires, under the lock) owns [`SLOW_ALLOC`] and [`SLOW_FREE`]; the owning thread owns
//! [`SLOW_OWN`], so that an allocation tests its own scope word and the process-wide bits in
//! one byte. Each writer changes its bits with one atomic read-modify-write that leaves the
//! other's as they are: a plain store could undo a bit the other just set, and a thread would
//! then skip a record, or a free skip the lookup of a tracked block.
//!
//! WARNING: runs inside the global allocator: no allocation, no panic, and the lock is held
//! only for a bounded walk over the registry.

use super::spin::SpinLock;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

/// Allocations must take the out-of-line path (a process-wide scope is armed).
pub(crate) const SLOW_ALLOC: u8 = 1;
/// Frees must take the out-of-line path (some scope has records in the table).
pub(crate) const SLOW_FREE: u8 = 2;
/// The thread's own state word is not zero (it is in a scope, an inherited scope, or
/// blocked), so its allocations must take the out-of-line path. Only allocations test it:
/// which frees leave the fast path depends on the table, not on the freeing thread.
pub(crate) const SLOW_OWN: u8 = 4;
/// A thread outside the registry (not yet registered, exited, or the registry was full):
/// everything it does takes the out-of-line path, which knows what to do.
const SLOW_ALL: u8 = SLOW_ALLOC | SLOW_FREE;

/// Counters per thread (their meaning is `stats`'s).
pub(crate) const FIELDS: usize = 5;

/// Threads registered at once; more take the out-of-line paths (correct, only slower).
const CAPACITY: usize = 1024;

/// One thread's block.
#[repr(align(64))]
pub(crate) struct Local {
    /// The thread's scope state (`track::ThreadState`). Only the owning thread touches it.
    state: AtomicU64,
    /// Which operations must leave the fast path: [`SLOW_ALLOC`] and [`SLOW_FREE`], written
    /// under the registry lock by whichever thread refreshes, and [`SLOW_OWN`], set by the
    /// owner while its state word is not zero (see [`set_state`](Self::set_state)). Read by the
    /// owner without the lock.
    slow: AtomicU8,
    /// Whether the thread is in the registry. Written by the owner, under the lock.
    registered: AtomicBool,
    /// Counters only the owning thread writes (a load and a store, no read-modify-write);
    /// other threads read them under the registry lock.
    counts: [AtomicU64; FIELDS],
}

impl Local {
    /// The thread's scope state word.
    #[inline(always)]
    pub(crate) fn state(&self) -> u64 {
        self.state.load(Ordering::Relaxed)
    }

    /// Sets the thread's scope state word; only the owning thread may call it. [`SLOW_OWN`] is
    /// set whenever the word is not zero: on before the word leaves zero, so even a signal
    /// handler that allocates in between takes the out-of-line path. It goes off again when
    /// the word is back at zero, unless allocations are slow anyway ([`SLOW_ALLOC`]: a
    /// process-wide scope, whose records each block the thread around their stack capture;
    /// two atomic read-modify-writes per record cost more than the stale bit, which
    /// [`settle_own_bit`](Self::settle_own_bit) clears later). A change between non-zero words
    /// (a block nested in a scope, a record taken) costs no read-modify-write.
    #[inline(always)]
    pub(crate) fn set_state(&self, state: u64) {
        if state != 0 && !self.is_slow(SLOW_OWN) {
            self.slow.fetch_or(SLOW_OWN, Ordering::Relaxed);
        }
        self.state.store(state, Ordering::Relaxed);
        if state == 0 {
            self.settle_own_bit();
        }
    }

    /// Clears a stale [`SLOW_OWN`] (the word is zero) once allocations are no longer slow
    /// anyway. Only the owning thread may call it.
    #[inline]
    pub(crate) fn settle_own_bit(&self) {
        let slow = self.slow.load(Ordering::Relaxed);
        if slow & SLOW_OWN != 0 && slow & SLOW_ALLOC == 0 && self.state() == 0 {
            self.slow.fetch_and(!SLOW_OWN, Ordering::Relaxed);
        }
    }

    /// Sets the registry side's slow bits to `bits`, keeping the owner's [`SLOW_OWN`], in one
    /// read-modify-write: a bit that stays set is never cleared, even for a moment (a free in
    /// that moment would skip the lookup of a tracked block).
    fn set_shared_slow_bits(&self, bits: u8) {
        let _ = self
            .slow
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |old| {
                Some((old & SLOW_OWN) | (bits & SLOW_ALL))
            });
    }

    /// Whether `operation` ([`SLOW_ALLOC`], [`SLOW_FREE`], [`SLOW_OWN`], or several: whether
    /// any of them) must leave the fast path.
    #[inline(always)]
    pub(crate) fn is_slow(&self, operation: u8) -> bool {
        self.slow.load(Ordering::Relaxed) & operation != 0
    }

    /// Whether the thread's counters are in the registry (else its events go elsewhere).
    #[inline(always)]
    pub(crate) fn is_registered(&self) -> bool {
        self.registered.load(Ordering::Relaxed)
    }

    /// Adds `n` to one of the thread's counters. Only the owning thread may call it.
    #[inline(always)]
    pub(crate) fn bump(&self, field: usize, n: u64) {
        let counter = &self.counts[field];
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// A counter's value.
    pub(crate) fn count(&self, field: usize) -> u64 {
        self.counts[field].load(Ordering::Relaxed)
    }
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            state: AtomicU64::new(0),
            slow: AtomicU8::new(SLOW_ALL),
            registered: AtomicBool::new(false),
            counts: [const { AtomicU64::new(0) }; FIELDS],
        }
    };
}

/// Runs `f` on the calling thread's block. The block is const-initialised and has no `Drop`,
/// so it is there for the thread's whole life (also inside other thread-locals'
/// destructors); `gone` is for the platforms where that cannot be relied on.
#[inline(always)]
pub(crate) fn with<R>(f: impl FnOnce(&Local) -> R, gone: R) -> R {
    LOCAL.try_with(f).unwrap_or(gone)
}

/// Pointers to the registered threads' blocks.
struct Registry {
    threads: [*const Local; CAPACITY],
    len: usize,
    /// The registry side's slow bits every registered thread has (see [`refresh`]).
    wanted: u8,
}

// SAFETY: the registry only holds pointers; every dereference happens under its lock, while
// the pointed-to block is alive (see `register_this_thread`).
unsafe impl Send for Registry {}

impl Registry {
    fn blocks(&self) -> impl Iterator<Item = &Local> {
        // SAFETY: each of the first `len` pointers is a registered thread's block; a thread
        // removes its pointer (under the lock this `&self` is borrowed from) in its
        // thread-local destructor, before its thread-local memory is freed, and a forked
        // child drops the pointers of threads it does not have (`recover_after_fork`).
        self.threads[..self.len].iter().map(|&p| unsafe { &*p })
    }
}

static REGISTRY: SpinLock<Registry> = SpinLock::new(Registry {
    threads: [core::ptr::null(); CAPACITY],
    len: 0,
    wanted: 0,
});

/// Registers the calling thread: its counters become visible to [`with_registered`] and
/// its slow bits follow [`refresh`]. The caller must make sure [`retire_this_thread`] runs
/// before the thread's thread-local memory goes away (a thread-local destructor). Returns
/// false, leaving the thread on the slow paths, if the registry is full.
pub(crate) fn register_this_thread() -> bool {
    let mut registry = REGISTRY.lock();
    if registry.len == CAPACITY {
        return false;
    }
    with(
        |local| {
            let index = registry.len;
            registry.threads[index] = local;
            registry.len += 1;
            local.registered.store(true, Ordering::Relaxed);
            local.set_shared_slow_bits(registry.wanted);
            true
        },
        false,
    )
}

/// Takes the calling thread out of the registry; `fold` sees its counters first, under the
/// lock, so a concurrent [`with_registered`] sees them either here or folded. From then on
/// everything the thread does takes the slow paths.
pub(crate) fn retire_this_thread(fold: impl FnOnce(&Local)) {
    let mut registry = REGISTRY.lock();
    with(
        |local| {
            if !local.is_registered() {
                return;
            }
            let mine: *const Local = local;
            if let Some(index) = registry.threads[..registry.len]
                .iter()
                .position(|&p| p == mine)
            {
                let last = registry.len - 1;
                registry.threads.swap(index, last);
                registry.len = last;
            }
            fold(local);
            for counter in &local.counts {
                counter.store(0, Ordering::Relaxed);
            }
            local.registered.store(false, Ordering::Relaxed);
            // SLOW_OWN stays as the owner left it: the owner's `set_state` keeps it set while
            // the state word is not zero, and allocations are slow from now on anyway.
            local.set_shared_slow_bits(SLOW_ALL);
        },
        (),
    );
}

/// Sets the registry side's slow bits ([`SLOW_ALLOC`], [`SLOW_FREE`]) of every registered
/// thread (and of those that register later) to what `wanted` computes. It runs under the
/// registry lock, so concurrent refreshes leave the bits the last of them computed, from the
/// state it saw: call it after changing that state.
pub(crate) fn refresh(wanted: impl FnOnce() -> u8) {
    let mut registry = REGISTRY.lock();
    let bits = wanted();
    registry.wanted = bits;
    for local in registry.blocks() {
        local.set_shared_slow_bits(bits);
    }
}

/// Calls `f` with the registered threads' blocks, under the registry lock (`f` must not
/// allocate or take the lock): a thread leaving the registry folds its counters elsewhere
/// under the same lock, so `f` sees each count exactly once wherever it reads both.
#[cfg(any(test, feature = "stats"))]
pub(crate) fn with_registered<R>(f: impl FnOnce(&mut dyn Iterator<Item = &Local>) -> R) -> R {
    let registry = REGISTRY.lock();
    let result = f(&mut registry.blocks());
    drop(registry);
    result
}

/// How many threads are registered now.
#[cfg(test)]
pub(crate) fn registered_threads() -> usize {
    REGISTRY.lock().len
}

/// In a freshly forked child: frees the lock from a thread that no longer exists, and takes
/// every other thread's block out of the registry (their memory is still there, a copy of
/// the parent's, but the C library may reuse it for new threads), after `fold` has seen it.
pub(crate) fn recover_after_fork(mut fold: impl FnMut(&Local)) {
    if REGISTRY.is_locked() {
        REGISTRY.force_unlock();
    }
    let mut registry = REGISTRY.lock();
    let mine = with(|local| local as *const Local, core::ptr::null());
    let mut kept = 0;
    for index in 0..registry.len {
        let block = registry.threads[index];
        if block == mine {
            registry.threads[kept] = block;
            kept += 1;
        } else {
            // SAFETY: a registered block of a thread that existed in the parent at the fork;
            // the child's copy of its memory is intact until the child starts new threads.
            let local = unsafe { &*block };
            fold(local);
        }
    }
    registry.len = kept;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::tests::SERIAL;
    use std::sync::{Arc, Barrier};

    #[test]
    fn a_refresh_reaches_registered_threads_and_those_that_register_later() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let registered = Arc::new(Barrier::new(2));
        let refreshed = Arc::new(Barrier::new(2));
        let early = {
            let (registered, refreshed) = (registered.clone(), refreshed.clone());
            std::thread::spawn(move || {
                assert!(with(
                    |l| l.is_slow(SLOW_ALLOC) && l.is_slow(SLOW_FREE),
                    false
                ));
                assert!(register_this_thread());
                let before = with(
                    |l| (l.is_slow(SLOW_ALLOC), l.is_slow(SLOW_FREE)),
                    (true, true),
                );
                registered.wait();
                refreshed.wait();
                let after = with(
                    |l| (l.is_slow(SLOW_ALLOC), l.is_slow(SLOW_FREE)),
                    (true, true),
                );
                retire_this_thread(|_| ());
                let retired = with(|l| l.is_slow(SLOW_ALLOC) && l.is_slow(SLOW_FREE), false);
                (before, after, retired)
            })
        };
        registered.wait();
        refresh(|| SLOW_FREE);
        refreshed.wait();
        let (before, after, retired) = early.join().unwrap();
        assert_eq!(before, (false, false));
        assert_eq!(after, (false, true));
        assert!(retired, "a retired thread takes the slow paths for good");

        let late = std::thread::spawn(|| {
            assert!(register_this_thread());
            let bits = with(
                |l| (l.is_slow(SLOW_ALLOC), l.is_slow(SLOW_FREE)),
                (true, true),
            );
            retire_this_thread(|_| ());
            bits
        });
        assert_eq!(late.join().unwrap(), (false, true));
        refresh(|| 0);
    }

    #[test]
    fn retiring_folds_the_counters_once_and_zeroes_them() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let folded = std::thread::spawn(|| {
            assert!(register_this_thread());
            with(|l| l.bump(1, 5), ());
            with(|l| l.bump(1, 2), ());
            let mut seen = Vec::new();
            retire_this_thread(|l| seen.push(l.count(1)));
            retire_this_thread(|l| seen.push(l.count(1)));
            (seen, with(|l| l.count(1), u64::MAX))
        })
        .join()
        .unwrap();
        assert_eq!(folded, (vec![7], 0));
    }

    /// The slow byte of the calling thread's block.
    fn slow_byte() -> u8 {
        with(|l| l.slow.load(Ordering::Relaxed), u8::MAX)
    }

    fn set_state(state: u64) {
        with(|l| l.set_state(state), ());
    }

    #[test]
    fn the_own_bit_follows_the_state_word_across_zero_and_keeps_the_other_bits() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let seen = std::thread::spawn(|| {
            assert!(register_this_thread());
            let mut seen = vec![slow_byte()];
            for state in [5, 1 << 32, 0, 0, 1 << 48 | 3] {
                set_state(state);
                seen.push(slow_byte());
            }
            set_state(0);
            seen.push(slow_byte());
            retire_this_thread(|_| ());
            seen
        })
        .join()
        .unwrap();
        assert_eq!(seen, [0, SLOW_OWN, SLOW_OWN, 0, 0, SLOW_OWN, 0]);
    }

    #[test]
    fn while_allocations_are_slow_anyway_the_own_bit_stays_until_settled() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let seen = std::thread::spawn(|| {
            assert!(register_this_thread());
            refresh(|| SLOW_ALLOC);
            // A process-wide scope's records: the word goes 0 -> blocked -> 0 per record.
            let mut seen = Vec::new();
            for state in [1 << 32, 0, 1 << 32, 0] {
                set_state(state);
                seen.push(slow_byte());
            }
            with(Local::settle_own_bit, ());
            seen.push(slow_byte());
            refresh(|| 0);
            seen.push(slow_byte());
            with(Local::settle_own_bit, ());
            seen.push(slow_byte());
            retire_this_thread(|_| ());
            seen
        })
        .join()
        .unwrap();
        refresh(|| 0);
        let stale = SLOW_ALLOC | SLOW_OWN;
        assert_eq!(seen, [stale, stale, stale, stale, stale, SLOW_OWN, 0]);
    }

    #[test]
    fn registering_refreshing_and_retiring_keep_the_own_bit() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let seen = std::thread::spawn(|| {
            // A thread that starts inside a scope (inherited) before its first event.
            set_state(1 << 48 | 3);
            let registered = register_this_thread();
            let mut seen = vec![slow_byte()];
            refresh(|| SLOW_ALLOC | SLOW_FREE);
            seen.push(slow_byte());
            refresh(|| SLOW_FREE);
            seen.push(slow_byte());
            set_state(0);
            seen.push(slow_byte());
            refresh(|| 0);
            seen.push(slow_byte());
            set_state(1 << 32);
            seen.push(slow_byte());
            retire_this_thread(|_| ());
            seen.push(slow_byte());
            set_state(0);
            seen.push(slow_byte());
            (registered, seen)
        })
        .join()
        .unwrap();
        refresh(|| 0);
        assert!(seen.0);
        assert_eq!(
            seen.1,
            [
                SLOW_OWN,
                SLOW_ALL | SLOW_OWN,
                SLOW_FREE | SLOW_OWN,
                SLOW_FREE,
                0,
                SLOW_OWN,
                SLOW_ALL | SLOW_OWN,
                // Retired: allocations are slow anyway, so the bit is left as it was.
                SLOW_ALL | SLOW_OWN,
            ]
        );
    }

    #[test]
    fn concurrent_refreshes_and_state_changes_lose_no_bit() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        const ROUNDS: u32 = 100_000;
        let registered = Arc::new(Barrier::new(2));
        let owner = {
            let registered = registered.clone();
            std::thread::spawn(move || {
                assert!(register_this_thread());
                registered.wait();
                // Only the owner writes SLOW_OWN: it must be set whenever the word is not
                // zero (off at zero is not required: SLOW_ALLOC may be set just then).
                let mut lost = 0u32;
                for round in 0..ROUNDS {
                    let state = u64::from(round % 2) << 32;
                    set_state(state);
                    if state != 0 && !with(|l| l.is_slow(SLOW_OWN), false) {
                        lost += 1;
                    }
                }
                set_state(0);
                retire_this_thread(|_| ());
                lost
            })
        };
        registered.wait();
        let mut last = 0;
        // Every refresh reads the owner's bits back under the lock: nothing else writes the
        // registry side's bits meanwhile, so they must be what this refresh stored.
        let mut lost = 0u32;
        for round in 0..ROUNDS {
            last = [SLOW_ALLOC, SLOW_FREE, SLOW_ALL, 0][round as usize % 4];
            refresh(|| last);
            lost += with_registered(|threads| {
                threads
                    .map(|l| u32::from(l.slow.load(Ordering::Relaxed) & SLOW_ALL != last))
                    .sum::<u32>()
            });
        }
        let lost_by_owner = owner.join().unwrap();
        refresh(|| 0);
        assert_eq!((lost_by_owner, lost), (0, 0), "last bits {last}");
    }
}
