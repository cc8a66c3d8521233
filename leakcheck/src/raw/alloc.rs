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
/// When no check is running it adds, to each allocation and deallocation, one test of a byte
/// of the thread's own thread-local state (and, with the feature `stats`, two bumps of its own
/// counters for `leakcheck::stats()`); inside a check it records each block made by the
/// checked code (address, size, and the stack that made it) until the block is freed, on any
/// thread.
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
    // Both allocating methods use `track::allocated`'s answer after the call: see
    // [`keep_frame`] for why that matters.
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees (`layout` has non-zero size).
        let ptr = unsafe { self.inner.alloc(layout) };
        if !ptr.is_null() && track::allocated(ptr as usize, layout.size()) {
            // SAFETY: `ptr` is a fresh block of `layout.size()` bytes, ours until returned.
            unsafe { wipe_fresh(ptr, layout.size()) };
        }
        ptr
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let ptr = unsafe { self.inner.alloc_zeroed(layout) };
        if !ptr.is_null() && track::allocated(ptr as usize, layout.size()) {
            // Already zeroed: nothing to wipe.
            keep_frame();
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
        let tracked = moving.is_some();
        // SAFETY: forwarded with the caller's guarantees.
        let new_ptr = unsafe { self.inner.realloc(ptr, layout, new_size) };
        track::reallocated(moving, layout.size(), new_ptr as usize, new_size);
        if tracked && !new_ptr.is_null() && new_size > layout.size() {
            // SAFETY: `new_ptr` is the reallocated block of `new_size` bytes; the bytes past
            // the old size are new and not yet the caller's.
            unsafe { wipe(new_ptr, layout.size(), new_size) };
        }
        new_ptr
    }
}

/// Keeps the function that allocated on the stack while its block is recorded.
///
/// These methods are inlined into the code that allocates. Were the call that records a block
/// (and captures its stack) the last thing such a function does, as when it forgets a
/// `vec![0; n]` in place and nothing reads the pointer after the allocation, an optimised build
/// would make that call a jump after popping the function's frame: the captured stack would
/// start at its caller, the report would blame the caller's line and a suppression naming the
/// function would not match. Code after the call that depends on its answer prevents that:
/// `alloc` wipes a recorded block; `alloc_zeroed` reaches this empty `black_box`, which the
/// compiler must keep where it is and cannot see through. It emits no instruction, and only a
/// recorded block reaches it: the idle path is unchanged. This holds whether `track::allocated`
/// is inlined (its out-of-line part is then the call) or not (in builds with debug assertions,
/// where it is the call itself).
#[inline(always)]
fn keep_frame() {
    core::hint::black_box(());
}

/// Blocks above this size are not wiped past it: glibc serves them from fresh (zeroed) pages
/// unless large frees have raised its threshold, and wiping megabytes the program may never
/// touch would cost pages as well as time.
const WIPE_LIMIT: usize = 128 * 1024;

/// Zeroes a fresh tracked block of `size` bytes, as [`wipe`] does: in optimised builds, blocks
/// of up to 64 bytes (most of a test's) with a few overlapping stores in line, no call to
/// `memset`.
///
/// # Safety
/// `ptr..ptr + size` must be a block the caller owns and may write; `size > 0`.
#[inline(always)]
unsafe fn wipe_fresh(ptr: *mut u8, size: usize) {
    // SAFETY: every store writes inside `ptr..ptr + size` (the caller's block): for `n` bytes
    // with `k <= n <= 2k`, stores of `k` bytes at 0 and at `n - k` cover the block; for
    // `32 < n <= 64`, 16-byte stores at 0, 16, `n - 32` and `n - 16` do.
    unsafe {
        // With debug assertions on (the dev profile, even at the manual's opt-level 3), each
        // unaligned store below carries std's pointer checks, two calls apiece: a `memset`
        // call is cheaper there.
        if size > 64 || cfg!(debug_assertions) {
            wipe(ptr, 0, size);
        } else if size > 32 {
            zero::<16>(ptr, 0);
            zero::<16>(ptr, 16);
            zero::<16>(ptr, size - 32);
            zero::<16>(ptr, size - 16);
        } else if size >= 16 {
            zero::<16>(ptr, 0);
            zero::<16>(ptr, size - 16);
        } else if size >= 8 {
            zero::<8>(ptr, 0);
            zero::<8>(ptr, size - 8);
        } else if size >= 4 {
            zero::<4>(ptr, 0);
            zero::<4>(ptr, size - 4);
        } else {
            // 1 to 3 bytes: the first, the middle and the last.
            zero::<1>(ptr, 0);
            zero::<1>(ptr, size / 2);
            zero::<1>(ptr, size - 1);
        }
    }
}

/// Writes `N` zero bytes at `ptr + at`, unaligned.
///
/// # Safety
/// `ptr + at..ptr + at + N` must be writable memory the caller owns.
#[inline(always)]
unsafe fn zero<const N: usize>(ptr: *mut u8, at: usize) {
    // SAFETY: the caller's contract; `write_unaligned` needs no alignment.
    unsafe { ptr.add(at).cast::<[u8; N]>().write_unaligned([0; N]) }
}

/// Zeroes bytes `from..to` (up to [`WIPE_LIMIT`]) of a tracked block before the program gets
/// it. The allocator hands out memory as its last owner left it, addresses of freed blocks
/// included, and a conservative scan cannot tell a block's spare capacity from its contents: a
/// stale address there, which a leak later reuses, made the leak look reachable and pass.
/// Zeroing is invisible to a correct program (fresh memory is uninitialised to it).
///
/// # Safety
/// `ptr..ptr + to` must be a block the caller owns and may write.
#[cold]
#[inline(never)]
unsafe fn wipe(ptr: *mut u8, from: usize, to: usize) {
    let to = to.min(WIPE_LIMIT);
    if from < to {
        // SAFETY: inside the block (the caller's contract), `from < to`.
        unsafe { ptr.add(from).write_bytes(0, to - from) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wiping_a_fresh_block_zeroes_exactly_its_bytes_at_every_small_size() {
        for size in 1..=80 {
            for offset in 0..8 {
                let mut buffer = [0xAAu8; 104];
                // SAFETY: `offset + size <= 88 < 104`: the range is inside `buffer`.
                unsafe { wipe_fresh(buffer.as_mut_ptr().add(offset), size) };
                let (before, rest) = buffer.split_at(offset);
                let (block, after) = rest.split_at(size);
                assert!(
                    before.iter().all(|&b| b == 0xAA),
                    "size {size}: wrote before"
                );
                assert!(block.iter().all(|&b| b == 0), "size {size}: a byte left");
                assert!(after.iter().all(|&b| b == 0xAA), "size {size}: wrote past");
            }
        }
    }
}
