//! Helpers the fixture's tests leak through, so that reports (and suppressions) see a
//! function, a module path and a source file outside the test files. Each leaks one block of
//! exactly `bytes` bytes.

use std::hint::black_box;

pub mod generated;

/// Leaks one block made here (suppressed by function name: `^control_fixture::leak_here$`).
#[inline(never)]
pub fn leak_here(bytes: usize) {
    std::mem::forget(black_box(vec![0x22u8; bytes]));
}

/// Suppressed by module path (`^control_fixture::cache$`).
pub mod cache {
    /// Leaks one block made here.
    #[inline(never)]
    pub fn remember(bytes: usize) {
        std::mem::forget(std::hint::black_box(vec![0x33u8; bytes]));
    }
}

/// Suppressed by the `leakcheck.supp` that sits at this fixture's root.
pub mod discovered {
    /// Leaks one block made here.
    #[inline(never)]
    pub fn leak(bytes: usize) {
        std::mem::forget(std::hint::black_box(vec![0x44u8; bytes]));
    }
}
