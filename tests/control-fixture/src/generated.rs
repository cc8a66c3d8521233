//! A file that suppressions name by path (`leak:src/generated.rs`).

/// Leaks `bytes` bytes in one block allocated in this file.
#[inline(never)]
pub fn table(bytes: usize) {
    std::mem::forget(std::hint::black_box(vec![0x11u8; bytes]));
}
