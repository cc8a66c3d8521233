//! Everything `unsafe` in leakcheck lives below this module: the `GlobalAlloc` impl, the
//! record table, the stack interner and the stack walkers.
//!
//! WARNING: code here runs inside the global allocator. It must never panic, never allocate
//! through the global allocator while holding one of its own locks, never format, and only
//! touch thread-locals that are const-initialised and have no `Drop`.

pub(crate) mod alloc;
pub(crate) mod intern;
pub(crate) mod spin;
pub(crate) mod stack;
pub(crate) mod table;

/// The kernel's id of the calling thread (equal to the process id on the main thread).
#[cfg(target_os = "linux")]
pub(crate) fn current_thread_id() -> i64 {
    // SAFETY: `gettid` is a plain system call with no preconditions; it cannot fail or allocate.
    unsafe { libc::gettid() as i64 }
}
