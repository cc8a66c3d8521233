//! Each thread's hot-path state, in one thread-local block, and the registry through which
//! other threads reach it.
//!
//! The idle allocator's work is a compare of this block's words and two counter bumps, all
//! addressed from the thread pointer: no pointer to chase, no global to load through the GOT.
//! What other threads must be able to change or read (which operations have to leave the
//! fast path; the counters `leakcheck::stats()` sums) is reached through [`REGISTRY`], a list
//! of the registered threads' blocks behind a spin lock. A thread leaves the registry in its
//! thread-local destructor, under the same lock, before its thread-local memory goes away, so
//! no other thread ever reads a dead thread's block.
//!
//! WARNING: runs inside the global allocator: no allocation, no panic, and the lock is held
//! only for a bounded walk over the registry.

use super::spin::SpinLock;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

/// Allocations must take the out-of-line path (a process-wide scope is armed).
pub(crate) const SLOW_ALLOC: u8 = 1;
/// Frees must take the out-of-line path (some scope has records in the table).
pub(crate) const SLOW_FREE: u8 = 2;
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
    /// Which operations must leave the fast path ([`SLOW_ALLOC`], [`SLOW_FREE`]). Written
    /// under the registry lock, by whichever thread refreshes; read by the owner without it.
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

    #[inline(always)]
    pub(crate) fn set_state(&self, state: u64) {
        self.state.store(state, Ordering::Relaxed);
    }

    /// Whether `operation` ([`SLOW_ALLOC`] or [`SLOW_FREE`]) must leave the fast path.
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
    /// The slow bits every registered thread has (see [`refresh`]).
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
            local.slow.store(registry.wanted, Ordering::Relaxed);
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
            local.slow.store(SLOW_ALL, Ordering::Relaxed);
        },
        (),
    );
}

/// Sets the slow bits of every registered thread (and of those that register later) to what
/// `wanted` computes. It runs under the registry lock, so concurrent refreshes leave the bits
/// the last of them computed, from the state it saw: call it after changing that state.
pub(crate) fn refresh(wanted: impl FnOnce() -> u8) {
    let mut registry = REGISTRY.lock();
    let bits = wanted();
    registry.wanted = bits;
    for local in registry.blocks() {
        local.slow.store(bits, Ordering::SeqCst);
    }
}

/// Calls `f` with the registered threads' blocks, under the registry lock (`f` must not
/// allocate or take the lock): a thread leaving the registry folds its counters elsewhere
/// under the same lock, so `f` sees each count exactly once wherever it reads both.
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
    use crate::stats::tests::SERIAL;
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
}
