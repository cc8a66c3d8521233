//! The `GlobalAlloc` wrapper. It forwards every call to the inner allocator and tells
//! [`crate::track`] about blocks as they come and go; all decisions live there, in
//! non-generic code compiled with leakcheck's own optimisation level.

use crate::track;
use std::alloc::{GlobalAlloc, Layout, System};

/// The tracking allocator. Install it once per binary:
///
/// ```
/// #[global_allocator]
/// static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();
/// # fn main() {}
/// ```
///
/// It wraps any inner allocator (`System` by default): `LeakCheck::new(mimalloc::MiMalloc)`.
/// When no check is running it adds, to each allocation and deallocation, one or two compares
/// of the thread's own thread-local state and two bumps of its own counters for
/// [`stats`](crate::stats); inside a check it records each block made by the checked code
/// (address, size, and the stack that made it) until the block is freed, on any thread.
pub struct LeakCheck<A = System> {
    inner: A,
    /// Keeps the `LEAKCHECK_AT_EXIT` constructor linked into every binary that installs the
    /// allocator (see `raw::exit`); never read.
    _at_exit: super::exit::Hook,
}

impl LeakCheck<System> {
    /// Wraps the system allocator.
    ///
    /// ```
    /// #[global_allocator]
    /// static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();
    /// # fn main() {}
    /// ```
    pub const fn system() -> Self {
        LeakCheck {
            inner: System,
            _at_exit: super::exit::HOOK,
        }
    }
}

impl<A> LeakCheck<A> {
    /// Wraps `inner`, e.g. a jemalloc or mimalloc allocator.
    ///
    /// ```
    /// use std::alloc::System;
    /// #[global_allocator]
    /// static ALLOC: leakcheck::LeakCheck<System> = leakcheck::LeakCheck::new(System);
    /// # fn main() {}
    /// ```
    pub const fn new(inner: A) -> Self {
        LeakCheck {
            inner,
            _at_exit: super::exit::HOOK,
        }
    }

    /// The wrapped allocator.
    pub const fn inner(&self) -> &A {
        &self.inner
    }
}

// SAFETY: every method forwards to the inner allocator with the caller's arguments unchanged
// and returns its result unchanged; the tracking calls only read the addresses and never touch
// the blocks. A record is dropped before its block goes back to the inner allocator (which may
// hand the address to another thread at once) and added only after the inner allocator has
// returned a non-null block; a failed allocation is neither recorded nor counted.
unsafe impl<A: GlobalAlloc> GlobalAlloc for LeakCheck<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees (`layout` has non-zero size).
        let ptr = unsafe { self.inner.alloc(layout) };
        if !ptr.is_null() {
            track::allocated(ptr as usize, layout.size());
        }
        ptr
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let ptr = unsafe { self.inner.alloc_zeroed(layout) };
        if !ptr.is_null() {
            track::allocated(ptr as usize, layout.size());
        }
        ptr
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track::freeing(ptr as usize, layout.size());
        // SAFETY: forwarded with the caller's guarantees (`ptr` came from this allocator with
        // `layout`).
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moving = track::reallocating(ptr as usize);
        // SAFETY: forwarded with the caller's guarantees.
        let new_ptr = unsafe { self.inner.realloc(ptr, layout, new_size) };
        track::reallocated(moving, layout.size(), new_ptr as usize, new_size);
        new_ptr
    }
}
