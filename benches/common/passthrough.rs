//! A bare wrapper that forwards every call to `System`: the floor for any wrapping allocator
//! (leakcheck with no check running should be within 10% of it). `alloc_passthrough.rs`
//! installs it as the global allocator; `alloc_paired.rs` calls it directly.

use std::alloc::{GlobalAlloc, Layout, System};

pub struct Passthrough;

// SAFETY: every method forwards its arguments unchanged to `System` and returns its result
// unchanged, so `System`'s guarantees are this allocator's.
unsafe impl GlobalAlloc for Passthrough {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees (`ptr` came from `System`).
        unsafe { System.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees (`ptr` came from `System`).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
