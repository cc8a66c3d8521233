//! Helpers the harness fixture's tests call, so that reports show a frame outside the test file.

/// Leaks `bytes` bytes in one `Vec` allocation made here.
#[inline(never)]
pub fn leak_here(bytes: usize) {
    std::mem::forget(std::hint::black_box(vec![0x5au8; bytes]));
}
