//! A spin lock that the thread using it can take without an atomic read-modify-write.
//!
//! Each tracked alloc+free pair takes two shard locks; with one thread at work the `xchg` of a
//! plain spin lock was about a tenth of a checked pair's time (it waits for the store buffer to
//! drain). So a shard is *biased* to the first thread that locks it: that thread enters by
//! raising its `busy` flag with a plain store and checking that the bias is still its own.
//! Any other thread takes the ordinary lock and *revokes* the bias for good: it marks the
//! bias revoked, runs `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` (which makes every
//! running thread of the process execute a full memory barrier, so the owner either sees the
//! revocation or has its `busy` flag visible), and waits for `busy` to drop. From then on
//! everyone, the former owner included, takes the ordinary lock. This is an asymmetric
//! Dekker protocol, as in user-space RCU's membarrier flavour: the cost moves to the rare
//! revocation (a system call, at most once per shard and process; after
//! [`REVOCATION_BUDGET`] of them no new bias is granted).
//!
//! A thread gives its biases back when it exits (see [`BiasedLock::release`]), so the shards
//! of a thread-per-task program (libtest's thread per test, or a benchmark's) are biased to
//! whichever thread uses them next instead of revoked. Biases are only granted where the
//! `membarrier` call is registered and works (Linux 4.14 and later); elsewhere every lock is
//! the ordinary one.
//!
//! # Registering before `main`
//!
//! The expedited barrier needs the process registered for it, once. The kernel makes that
//! cheap only while the process has one thread: then it sets a flag (0.3-0.8 µs here);
//! once other threads share the address space it waits for an RCU grace period (5.8-14.7 ms
//! on kernel 6.18, measured). A test process always has two threads by its first check
//! (libtest runs every test on a thread of its own), so registering on first use made every
//! nextest test wait ~10 ms before its check could start. So the process registers from an
//! ELF constructor ([`membarrier`]'s `REGISTER_AT_LOAD`), which the loader runs before `main`
//! while the process is still single-threaded, and a forked child registers again in its
//! `fork` handler, where it has one thread too. A process in which neither ran (a platform
//! without `.init_array`, a failed registration) grants no biases and never registers late:
//! every shard takes the ordinary lock, which costs a tenth of a tracked pair, never a stall.
//! (A library that starts threads from its own constructor, before leakcheck's, makes the
//! registration wait for the grace period once, before `main`.)
//!
//! WARNING: runs inside the global allocator: no allocation, no panic.

use super::spin::relax;
use core::cell::{Cell, UnsafeCell};
use core::mem::MaybeUninit;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{compiler_fence, AtomicBool, AtomicU32, AtomicU8, Ordering};

/// No bias yet: the next thread that takes the ordinary lock gets it.
const UNBIASED: u32 = 0;
/// Revoked: ordinary locking only, for good.
const REVOKED: u32 = u32::MAX;

/// Revocations after which no more biases are granted: a process whose threads keep taking
/// each other's shards (libtest's parallel tests, whose check ends look through every shard
/// holding cached blocks) gains nothing from biases and would pay a system call, and an
/// interrupt of every running thread, per shard. Single-threaded work (a nextest test process,
/// a benchmark) revokes none and keeps them.
const REVOCATION_BUDGET: u32 = 64;
static REVOCATIONS: AtomicU32 = AtomicU32::new(0);

/// A thread's bias token: non-zero, never reused. 0 means "holds no bias".
pub(crate) type Token = u32;

/// Hands out tokens; [`REVOKED`] and the values after it are never handed out.
static NEXT_TOKEN: AtomicU32 = AtomicU32::new(1);

thread_local! {
    /// The calling thread's token, assigned when it is first granted a bias.
    static TOKEN: Cell<Token> = const { Cell::new(UNBIASED) };
    /// Set once the thread has given its biases back on exit: it takes no more.
    static EXITED: Cell<bool> = const { Cell::new(false) };
}

/// A fresh token, or 0 once 4 billion have been handed out (such threads never hold biases).
fn new_token() -> Token {
    NEXT_TOKEN
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |next| {
            (next < REVOKED).then_some(next + 1)
        })
        .unwrap_or(UNBIASED)
}

/// The calling thread's token (0 if it holds no bias, or its thread-locals are gone).
#[inline(always)]
pub(crate) fn my_token() -> Token {
    TOKEN.try_with(Cell::get).unwrap_or(UNBIASED)
}

/// The calling thread's token, assigning one if it has none and may take biases.
fn my_token_for_bias() -> Token {
    let token = my_token();
    if token != UNBIASED || EXITED.try_with(Cell::get).unwrap_or(true) {
        return token;
    }
    let token = new_token();
    if TOKEN.try_with(|t| t.set(token)).is_err() {
        return UNBIASED;
    }
    token
}

/// Called as the thread exits: from now on it takes no biases. Returns the token whose biases
/// the caller must give back ([`BiasedLock::release`] on every lock), if it has one.
pub(crate) fn thread_exiting() -> Option<Token> {
    let _ = EXITED.try_with(|e| e.set(true));
    let token = TOKEN.try_with(|t| t.replace(UNBIASED)).unwrap_or(UNBIASED);
    Some(token).filter(|&token| token != UNBIASED)
}

pub(crate) struct BiasedLock<T> {
    /// The ordinary lock, for everyone but the bias owner.
    locked: AtomicBool,
    /// Raised by the owner, with a plain store, while it is inside.
    busy: AtomicBool,
    /// Whether `value` holds a value; if not, the first thread inside writes
    /// [`FirstUse::first_use`]'s.
    /// Read and written under `locked` only: a bias is granted under it, after the value is
    /// there, so the owner's fast path never sees an empty lock.
    ready: UnsafeCell<bool>,
    /// [`UNBIASED`], [`REVOKED`], or the owner's token. Changed only by a holder of `locked`,
    /// except that the owner may give its bias back (compare-exchange to [`UNBIASED`]).
    bias: AtomicU32,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: the lock hands out access to `value` to one thread at a time (see `lock`), and
// `ready` is only touched under the ordinary lock, so sharing the lock between threads is sound
// whenever the value may move between them.
unsafe impl<T: Send> Sync for BiasedLock<T> {}

/// The value of a lock made [`BiasedLock::empty`], written by the first thread that locks it.
pub(crate) trait FirstUse: Sized {
    /// The lock's first value; `lock` is where it goes (the record table tells its shards
    /// apart by their address).
    fn first_use(lock: &BiasedLock<Self>) -> Self;
}

impl<T: FirstUse> BiasedLock<T> {
    #[cfg(test)]
    pub(crate) const fn new(value: T) -> Self {
        BiasedLock {
            locked: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            ready: UnsafeCell::new(true),
            bias: AtomicU32::new(UNBIASED),
            value: UnsafeCell::new(MaybeUninit::new(value)),
        }
    }

    /// A lock whose value is [`FirstUse::first_use`]'s, written by the first thread that takes
    /// it (on the slow path, which every thread passes before it can hold a bias). All
    /// its bytes are zero, so a static array of them lies in `.bss`: the record table's 4,096
    /// shards, each holding a pointer to hashbrown's shared empty group, had been 256 KiB of
    /// `.data` with 4,096 relocations, which the loader applied (and whose 64 pages it copied)
    /// in every process that links leakcheck, whether or not it ever checks.
    pub(crate) const fn empty() -> Self {
        BiasedLock {
            locked: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            ready: UnsafeCell::new(false),
            bias: AtomicU32::new(UNBIASED),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Locks for the thread holding `token` (0: none), which takes the bias if nobody has it.
    /// Not re-entrant: the bias owner must not lock again while inside (leakcheck never
    /// holds two shard locks at once).
    /// The owner's path: two loads, two plain stores, no read-modify-write.
    #[inline]
    pub(crate) fn lock(&self, token: Token) -> BiasedGuard<'_, T> {
        self.lock_inner(token, true)
    }

    /// Locks without taking the bias: for walks over every lock, which would otherwise bias
    /// them all to the walking thread (and every other thread would have to revoke them).
    #[inline]
    pub(crate) fn lock_passing(&self, token: Token) -> BiasedGuard<'_, T> {
        self.lock_inner(token, false)
    }

    #[inline(always)]
    fn lock_inner(&self, token: Token, take_bias: bool) -> BiasedGuard<'_, T> {
        if token != UNBIASED && self.bias.load(Ordering::Relaxed) == token {
            self.busy.store(true, Ordering::Relaxed);
            // Only the compiler must not move the load above the store: a revoker's
            // `membarrier` orders them on the processor (see the module docs).
            compiler_fence(Ordering::SeqCst);
            // Acquire keeps the compiler from reading the value before this check.
            if self.bias.load(Ordering::Acquire) == token {
                return BiasedGuard {
                    lock: self,
                    biased: true,
                };
            }
            self.busy.store(false, Ordering::Release);
        }
        self.lock_slow(token, take_bias)
    }

    #[cold]
    #[inline(never)]
    fn lock_slow(&self, token: Token, take_bias: bool) -> BiasedGuard<'_, T> {
        self.lock_ordinary();
        // SAFETY: `ready` and, while it is false, `value` are only touched under `locked`,
        // which this thread holds; no bias exists before `ready` is set (the bias is granted
        // below), so no owner is inside either.
        unsafe {
            if !*self.ready.get() {
                (*self.value.get()).write(T::first_use(self));
                *self.ready.get() = true;
            }
        }
        // Acquire: pairs with the release of a bias given back (`release`), so the former
        // owner's last changes are visible before this thread touches the value.
        let bias = self.bias.load(Ordering::Acquire);
        if bias == UNBIASED {
            if take_bias
                && REVOCATIONS.load(Ordering::Relaxed) < REVOCATION_BUDGET
                && membarrier::available()
            {
                let token = if token == UNBIASED {
                    my_token_for_bias()
                } else {
                    token
                };
                if token != UNBIASED {
                    self.bias.store(token, Ordering::Relaxed);
                }
            }
        } else if bias != REVOKED && bias != token {
            self.bias.store(REVOKED, Ordering::Relaxed);
            REVOCATIONS.fetch_add(1, Ordering::Relaxed);
            membarrier::barrier();
            // The owner may have been preempted inside: wait as for the ordinary lock.
            let mut spins = 0u32;
            while self.busy.load(Ordering::Acquire) {
                relax(&mut spins);
            }
        }
        BiasedGuard {
            lock: self,
            biased: false,
        }
    }

    fn lock_ordinary(&self) {
        let mut spins = 0u32;
        loop {
            if !self.locked.swap(true, Ordering::Acquire) {
                return;
            }
            while self.locked.load(Ordering::Relaxed) {
                relax(&mut spins);
            }
        }
    }

    /// Gives the bias back if `token` holds it (a thread about to exit), so the next user
    /// gets it without a revocation. The caller must not be inside the lock.
    pub(crate) fn release(&self, token: Token) {
        if token != UNBIASED && self.bias.load(Ordering::Relaxed) == token {
            // Release: the owner's changes, made without the ordinary lock, become visible to
            // whoever takes the bias next (it loads it with Acquire).
            let _ =
                self.bias
                    .compare_exchange(token, UNBIASED, Ordering::Release, Ordering::Relaxed);
        }
    }

    /// In a freshly forked child (one thread, nothing else running): whether some thread
    /// was inside at the fork (its changes may be half made). The lock is left free and
    /// unbiased either way, its bias given up unless `keep` (the forking thread's token)
    /// holds it.
    pub(crate) fn reset_after_fork(&self, keep: Token) -> bool {
        let bias = self.bias.load(Ordering::Relaxed);
        let owner_inside = self.busy.load(Ordering::Relaxed) && bias != keep;
        let was_held = self.locked.load(Ordering::Relaxed) || owner_inside;
        self.locked.store(false, Ordering::Release);
        self.busy.store(false, Ordering::Release);
        if bias != keep || !membarrier::available() {
            self.bias.store(UNBIASED, Ordering::Relaxed);
        }
        was_held
    }

    /// Whether the lock is biased to `token` now (for tests).
    #[cfg(test)]
    pub(crate) fn is_biased_to(&self, token: Token) -> bool {
        self.bias.load(Ordering::Relaxed) == token
    }

    /// Sets the count of revocations so far (for tests of the budget).
    #[cfg(test)]
    pub(crate) fn set_revocations(n: u32) {
        REVOCATIONS.store(n, Ordering::Relaxed);
    }

    /// Whether the bias was revoked (for tests).
    #[cfg(test)]
    pub(crate) fn is_revoked(&self) -> bool {
        self.bias.load(Ordering::Relaxed) == REVOKED
    }
}

pub(crate) struct BiasedGuard<'a, T> {
    lock: &'a BiasedLock<T>,
    biased: bool,
}

impl<T> Deref for BiasedGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard is exclusive access: the owner's `busy` flag with its bias (a
        // revoker waits for the flag to drop), or the ordinary lock (held by one thread, and
        // the bias, if any, is this thread's or revoked with its owner outside). The value is
        // initialised: every guard is made after `lock_slow` filled it, under the ordinary
        // lock, before any bias could be granted.
        unsafe { (*self.lock.value.get()).assume_init_ref() }
    }
}

impl<T> DerefMut for BiasedGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference through the guard.
        unsafe { (*self.lock.value.get()).assume_init_mut() }
    }
}

impl<T> Drop for BiasedGuard<'_, T> {
    fn drop(&mut self) {
        if self.biased {
            self.lock.busy.store(false, Ordering::Release);
        } else {
            self.lock.locked.store(false, Ordering::Release);
        }
    }
}

/// The process-wide memory barrier revocations need.
pub(crate) mod membarrier {
    use super::*;

    const UNKNOWN: u8 = 0;
    const WORKS: u8 = 1;
    const MISSING: u8 = 2;
    static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

    #[cfg(target_os = "linux")]
    const CMD_QUERY: libc::c_int = 0;
    #[cfg(target_os = "linux")]
    const CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
    #[cfg(target_os = "linux")]
    const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

    #[cfg(target_os = "linux")]
    fn call(cmd: libc::c_int) -> libc::c_long {
        // SAFETY: `membarrier(cmd, flags = 0, cpu_id = 0)` takes no pointers; it cannot touch
        // our memory or allocate, and fails with an error code where it is not supported.
        unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                cmd,
                0 as libc::c_uint,
                0 as libc::c_int,
            )
        }
    }

    /// Whether biases may be granted: the expedited barrier is supported and this process
    /// registered for it before `main` (or in its `fork` handler). Never registers here: by
    /// the time a shard is locked the process has more than one thread, and registering then
    /// takes milliseconds (see the module docs).
    #[inline]
    pub(crate) fn available() -> bool {
        STATE.load(Ordering::Acquire) == WORKS
    }

    /// Run by the loader before `main` (`.init_array`), while the process has one thread:
    /// registering costs a flag in the kernel then, not an RCU grace period.
    // SAFETY (of the attribute): `.init_array` entries are called once by the loader with
    // (argc, argv, envp), which a function taking no arguments may ignore under the C ABI;
    // `register` makes two system calls and stores an atomic, before `main` as at any time.
    #[cfg(target_os = "linux")]
    #[used]
    #[link_section = ".init_array"]
    static REGISTER_AT_LOAD: extern "C" fn() = register_at_load;

    #[cfg(target_os = "linux")]
    extern "C" fn register_at_load() {
        register();
    }

    #[cfg(target_os = "linux")]
    fn register() -> bool {
        let supported = call(CMD_QUERY);
        let works = supported >= 0
            && supported & CMD_PRIVATE_EXPEDITED as libc::c_long != 0
            && call(CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
        STATE.store(if works { WORKS } else { MISSING }, Ordering::Release);
        works
    }

    #[cfg(not(target_os = "linux"))]
    fn register() -> bool {
        STATE.store(MISSING, Ordering::Release);
        false
    }

    /// Makes every running thread of the process execute a full memory barrier. Only called
    /// to revoke a bias, which [`available`] granted.
    pub(crate) fn barrier() {
        #[cfg(target_os = "linux")]
        {
            if call(CMD_PRIVATE_EXPEDITED) != 0 {
                // Registered, so this cannot fail; if it did, a bias owner might not see the
                // revocation. Fall back to the slower barrier the kernel offers every process
                // (a global one), and grant no more biases.
                STATE.store(MISSING, Ordering::Release);
                let _ = call(1);
            }
        }
    }

    /// In a freshly forked child, which has one thread (so this costs a flag in the kernel):
    /// registration may not carry over, so register again before a bias is granted.
    pub(crate) fn register_in_child() {
        register();
    }

    /// Whether registering before `main` worked: the kernel supports the expedited barrier
    /// and the constructor ran (for tests).
    #[cfg(all(test, target_os = "linux"))]
    pub(crate) fn kernel_supports_it() -> bool {
        let supported = call(CMD_QUERY);
        supported >= 0 && supported & CMD_PRIVATE_EXPEDITED as libc::c_long != 0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    impl FirstUse for u64 {
        fn first_use(_: &BiasedLock<u64>) -> u64 {
            0
        }
    }

    impl FirstUse for () {
        fn first_use(_: &BiasedLock<()>) {}
    }
    use std::sync::{Arc, Mutex, MutexGuard};

    /// Tests of biases hold this (the budget test exhausts them for a moment) and start with a
    /// fresh budget; `None` where this kernel grants no biases (nothing to test there).
    pub(crate) fn granting() -> Option<MutexGuard<'static, ()>> {
        static BIAS_TESTS: Mutex<()> = Mutex::new(());
        let guard = BIAS_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        BiasedLock::<()>::set_revocations(0);
        membarrier::available().then_some(guard)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_registered_before_main() {
        // Nothing registers late: without the constructor, biases would silently never be
        // granted.
        if membarrier::kernel_supports_it() {
            assert!(
                membarrier::available(),
                "the `.init_array` constructor did not register for the expedited barrier"
            );
        }
    }

    #[test]
    fn after_the_revocation_budget_no_bias_is_granted() {
        let Some(_granting) = granting() else {
            return;
        };
        BiasedLock::<()>::set_revocations(REVOCATION_BUDGET);
        let lock = BiasedLock::new(());
        drop(lock.lock(new_token()));
        BiasedLock::<()>::set_revocations(0);
        assert!(lock.is_biased_to(UNBIASED));
        drop(lock.lock(new_token()));
        assert!(!lock.is_biased_to(UNBIASED), "a fresh budget grants again");
    }

    #[test]
    fn the_first_locker_gets_the_bias_and_another_thread_revokes_it_for_good() {
        let Some(_granting) = granting() else {
            return; // ordinary locking only on this kernel: nothing to test here
        };
        let lock = Arc::new(BiasedLock::new(0u64));
        let (mine, theirs) = (new_token(), new_token());
        assert!(mine != UNBIASED && theirs != UNBIASED);
        *lock.lock(mine) += 1;
        assert!(lock.is_biased_to(mine));
        {
            let guard = lock.lock(mine);
            assert!(guard.biased, "the owner enters without the ordinary lock");
        }
        let other = Arc::clone(&lock);
        std::thread::spawn(move || *other.lock(theirs) += 1)
            .join()
            .unwrap();
        assert!(lock.is_biased_to(REVOKED));
        let guard = lock.lock(mine);
        assert!(
            !guard.biased,
            "the former owner takes the ordinary lock too"
        );
        assert_eq!(*guard, 2);
    }

    #[test]
    fn a_passing_lock_takes_no_bias() {
        let Some(_granting) = granting() else {
            return;
        };
        let lock = BiasedLock::new(());
        let token = new_token();
        drop(lock.lock_passing(token));
        assert!(lock.is_biased_to(UNBIASED));
        drop(lock.lock(token));
        assert!(lock.is_biased_to(token));
    }

    #[test]
    fn a_released_bias_goes_to_the_next_locker() {
        let Some(_granting) = granting() else {
            return;
        };
        let lock = BiasedLock::new(());
        let (first, next) = (new_token(), new_token());
        drop(lock.lock(first));
        lock.release(next);
        assert!(lock.is_biased_to(first), "only the owner gives a bias back");
        lock.release(first);
        drop(lock.lock(next));
        assert!(lock.is_biased_to(next));
    }

    #[test]
    fn owner_and_revoker_never_overlap() {
        // Also where no bias is granted: the ordinary lock must count right too.
        let _granting = granting();
        // Each round: one thread takes a fresh lock's bias and counts under it, others revoke
        // it midway; the counts use a plain read-then-write, so an overlap loses increments.
        const ROUNDS: usize = 200;
        const COUNTS: u64 = 2_000;
        for _ in 0..ROUNDS {
            let lock = Arc::new(BiasedLock::new(0u64));
            let threads: Vec<_> = (0..3)
                .map(|_| {
                    let lock = Arc::clone(&lock);
                    std::thread::spawn(move || {
                        let token = new_token();
                        for _ in 0..COUNTS {
                            let mut guard = lock.lock(token);
                            let seen = *guard;
                            core::hint::spin_loop();
                            *guard = seen + 1;
                        }
                    })
                })
                .collect();
            for thread in threads {
                thread.join().unwrap();
            }
            assert_eq!(*lock.lock(UNBIASED), 3 * COUNTS);
        }
    }
}
