//! Everything `unsafe` in leakcheck lives below this module: the `GlobalAlloc` impl, the
//! record table, the stack interner and the stack walkers.
//!
//! WARNING: code here runs inside the global allocator. It must never panic, never allocate
//! through the global allocator while holding one of its own locks, never format, and only
//! touch thread-locals that are const-initialised and have no `Drop`.

pub(crate) mod alloc;
pub(crate) mod biased;
pub(crate) mod exit;
pub(crate) mod intern;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) mod loader;
pub(crate) mod local;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) mod map;
pub(crate) mod scan;
pub(crate) mod spin;
pub(crate) mod stack;
pub(crate) mod table;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) mod threads;

/// Keeps the `pthread_create` interposer linked; returns whether this platform has it.
pub(crate) fn thread_inheritance() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        core::hint::black_box(threads::interposer_address());
        true
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// Calls `all_tests::test_thread_exited(token)` when the calling thread exits, after its
/// thread-locals' destructors; false where that cannot be arranged.
pub(crate) fn at_test_thread_exit(token: u32) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        threads::at_test_thread_exit(token)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = token;
        false
    }
}

/// Whether this process may walk the loaded objects (false in a child forked while the
/// loader's lock may have been held; see `loader`).
pub(crate) fn loader_usable() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        loader::usable()
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    true
}

/// The kernel's id of the calling thread (equal to the process id on the main thread).
#[cfg(target_os = "linux")]
pub(crate) fn current_thread_id() -> i64 {
    // SAFETY: `gettid` is a plain system call with no preconditions; it cannot fail or allocate.
    unsafe { libc::gettid() as i64 }
}

/// Registers (once) the `fork` handlers that keep a child from hanging on locks held by threads
/// that do not exist in it. The child abandons leakcheck's own locks (see each module's
/// `recover_after_fork`). The loader's lock cannot be abandoned, so the parent waits for
/// leakcheck's walks of the loaded objects to finish before it forks (see `loader`); nothing
/// else is waited for: taking every lock before each fork made forks wait on busy shards and on
/// a symbolizing thread (fork tests went from 2 s to 60-100 s).
pub(crate) fn prepare_for_fork() {
    #[cfg(unix)]
    {
        static REGISTERED: std::sync::Once = std::sync::Once::new();
        extern "C" fn before() {
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            loader::before_fork();
        }
        extern "C" fn in_parent() {
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            loader::after_fork_in_parent();
        }
        extern "C" fn in_child() {
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            loader::after_fork_in_child();
            biased::membarrier::register_in_child();
            table::recover_after_fork();
            crate::counters::recover_after_fork();
            intern::recover_after_fork();
            threads::forget_roster_after_fork();
            crate::symbolize::forked();
            crate::all_tests::forked();
            crate::overlap::forked();
        }
        REGISTERED.call_once(|| {
            // SAFETY: the handlers are plain `extern "C" fn`s that only touch leakcheck's own
            // statics, without allocating; `before` waits a bounded time and `in_child` never
            // blocks: safe around `fork` and in a freshly forked child.
            unsafe { libc::pthread_atfork(Some(before), Some(in_parent), Some(in_child)) };
        });
    }
}
