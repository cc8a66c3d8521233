//! `LEAKCHECK_AT_EXIT=1`: a constructor that runs before `main` and starts a process-wide
//! session when the variable is set, and an `atexit` hook that reports what is left.
//!
//! The constructor is a function pointer in `.init_array`, which the dynamic loader calls
//! before `main` (as glibc does for C's `__attribute__((constructor))`). A linker keeps an
//! object file from a library only when something refers to it, so [`HOOK`], the address of
//! the constructor, is stored in every [`LeakCheck`](super::alloc::LeakCheck) value: installing
//! the allocator keeps the constructor, at no cost to any allocation.

/// What a `LeakCheck` holds to keep the constructor linked.
#[cfg(target_os = "linux")]
pub(crate) type Hook = &'static extern "C" fn();
#[cfg(not(target_os = "linux"))]
pub(crate) type Hook = ();

#[cfg(target_os = "linux")]
pub(crate) const HOOK: Hook = &AT_START;
#[cfg(not(target_os = "linux"))]
pub(crate) const HOOK: Hook = ();

// SAFETY: `.init_array` holds pointers to functions that take no arguments the callee must
// read (glibc passes argc/argv/envp, which an `extern "C" fn()` ignores) and return nothing:
// `at_start` is such a function, and never unwinds (it catches panics).
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static AT_START: extern "C" fn() = at_start;

#[cfg(target_os = "linux")]
extern "C" fn at_start() {
    crate::output::mark_epoch();
    crate::panic_hook::wrap_default();
    // Before the session's hook, so it runs after the session's report.
    // SAFETY: as in `report_at_exit`.
    unsafe { libc::atexit(never_ran_at_exit) };
    crate::session::start_at_exit();
    crate::all_tests::start();
}

#[cfg(target_os = "linux")]
extern "C" fn never_ran_at_exit() {
    crate::never_ran::check_at_exit();
}

/// The exit status of a program whose `LEAKCHECK_AT_EXIT` report found leaks: LeakSanitizer's,
/// so scripts that already tell a leak from a crash keep working.
pub(crate) const LEAKED_STATUS: i32 = 23;

/// Ends the process with [`LEAKED_STATUS`], from the exit hook. Everything the program wrote
/// through C's stdio is flushed first (Rust's own streams were flushed when `main` returned);
/// the exit hooks registered before ours (before `main`, so few) do not run.
pub(crate) fn exit_leaked() -> ! {
    exit_with(LEAKED_STATUS)
}

/// Ends the process with `status`, from an exit hook, as [`exit_leaked`] does.
pub(crate) fn exit_with(status: i32) -> ! {
    #[cfg(unix)]
    // SAFETY: `fflush(NULL)` flushes every open C stream and `_exit` ends the process at once;
    // neither has preconditions, and during `exit` no other code of the program runs.
    unsafe {
        libc::fflush(core::ptr::null_mut());
        libc::_exit(status)
    }
    #[cfg(not(unix))]
    std::process::exit(status)
}

extern "C" fn at_exit() {
    crate::session::finish_at_exit();
}

extern "C" fn tests_at_exit() {
    crate::all_tests::finish();
}

/// Registers the hook that reports the tests' leaks at exit (`LEAKCHECK_ALL_TESTS`). Returns
/// false if the C library refused.
pub(crate) fn report_tests_at_exit() -> bool {
    #[cfg(unix)]
    {
        // SAFETY: as in `report_at_exit`.
        unsafe { libc::atexit(tests_at_exit) == 0 }
    }
    #[cfg(not(unix))]
    {
        let _ = tests_at_exit as extern "C" fn();
        false
    }
}

/// Registers the hook that reports at exit. Returns false if the C library refused.
pub(crate) fn report_at_exit() -> bool {
    #[cfg(unix)]
    {
        // SAFETY: `at_exit` is an `extern "C" fn()` that never unwinds (it catches panics),
        // as `atexit(3)` requires; registering has no other precondition.
        unsafe { libc::atexit(at_exit) == 0 }
    }
    #[cfg(not(unix))]
    {
        let _ = at_exit as extern "C" fn();
        false
    }
}
