//! Code under test for `tests/unannotated.rs`: one function that leaks, so reports show a
//! frame in the library and one in the test.

/// Allocates `bytes` bytes and forgets them.
pub fn leak_here(bytes: usize) {
    std::mem::forget(std::hint::black_box(vec![0x5au8; bytes]));
}
