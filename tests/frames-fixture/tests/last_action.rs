//! One helper per allocation path, each `#[inline(never)]` with the allocation as its last
//! action, in two shapes where the compiler keeps both: `returns_*` hand the block back (the
//! test leaks it through `black_box`), `drops_*` forget it themselves, so that nothing but the
//! allocator uses the pointer after the allocation (the shape in which an optimised allocator
//! path can end in a tail call). The root package's `tests/frames.rs` runs this binary in
//! release builds, with and without frame pointers, and checks that each report's first frame
//! is the helper's line (marked `// site: NAME`) and the next one the test's call (marked
//! `// call: TEST`).
//!
//! Each test leaks one block of a size no other test uses. A raw `alloc` or `alloc_zeroed`
//! whose pointer is only checked for null is removed outright in release builds, so the raw
//! paths have the returning shape only.

use std::alloc::Layout;
use std::hint::black_box;

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

// ---- GlobalAlloc::alloc ----

#[inline(never)]
fn returns_alloc() -> *mut u8 {
    // SAFETY: the layout's size is not zero.
    unsafe { std::alloc::alloc(layout(40)) } // site: returns_alloc
}

#[leakcheck::test]
fn alloc_returned() {
    black_box(returns_alloc()); // call: alloc_returned
}

// ---- GlobalAlloc::alloc_zeroed ----

#[inline(never)]
fn returns_alloc_zeroed() -> *mut u8 {
    // SAFETY: the layout's size is not zero.
    unsafe { std::alloc::alloc_zeroed(layout(42)) } // site: returns_alloc_zeroed
}

#[leakcheck::test]
fn alloc_zeroed_returned() {
    black_box(returns_alloc_zeroed()); // call: alloc_zeroed_returned
}

#[inline(never)]
fn drops_new_zeroed() {
    std::mem::forget(Box::<[u64; 7]>::new_zeroed()); // site: drops_new_zeroed
}

#[leakcheck::test]
fn new_zeroed_dropped() {
    drops_new_zeroed(); // call: new_zeroed_dropped
}

// ---- GlobalAlloc::realloc (the block keeps the stack of its first allocation) ----

#[inline(never)]
fn returns_realloc() -> *mut u8 {
    // SAFETY: the layout's size is not zero; the block is live and reallocated with its layout.
    unsafe {
        let block = std::alloc::alloc(layout(8)); // site: returns_realloc
        if block.is_null() {
            std::alloc::handle_alloc_error(layout(8));
        }
        std::alloc::realloc(block, layout(8), 244)
    }
}

#[leakcheck::test]
fn realloc_returned() {
    black_box(returns_realloc()); // call: realloc_returned
}

#[inline(never)]
fn drops_realloc() {
    let mut v: Vec<u8> = Vec::with_capacity(8); // site: drops_realloc
    v.reserve_exact(245);
    std::mem::forget(v);
}

#[leakcheck::test]
fn realloc_dropped() {
    drops_realloc(); // call: realloc_dropped
}

// ---- Box::new (of zeroes, which the optimiser may turn into alloc_zeroed, and of others) ----

#[inline(never)]
fn returns_box() -> Box<[u8; 46]> {
    Box::new([0x5a; 46]) // site: returns_box
}

#[leakcheck::test]
fn box_returned() {
    std::mem::forget(black_box(returns_box())); // call: box_returned
}

#[inline(never)]
fn drops_box() {
    std::mem::forget(Box::new([0x5a_u8; 47])); // site: drops_box
}

#[leakcheck::test]
fn box_dropped() {
    drops_box(); // call: box_dropped
}

#[inline(never)]
fn drops_zeroed_box() {
    std::mem::forget(Box::new([0u8; 51])); // site: drops_zeroed_box
}

#[leakcheck::test]
fn zeroed_box_dropped() {
    drops_zeroed_box(); // call: zeroed_box_dropped
}

// ---- vec! (of zeroes: alloc_zeroed; of other bytes: alloc) ----

#[inline(never)]
fn returns_zeroed_vec() -> Vec<u8> {
    vec![0u8; 48] // site: returns_zeroed_vec
}

#[leakcheck::test]
fn zeroed_vec_returned() {
    std::mem::forget(black_box(returns_zeroed_vec())); // call: zeroed_vec_returned
}

#[inline(never)]
fn drops_zeroed_vec() {
    std::mem::forget(vec![0u8; 49]); // site: drops_zeroed_vec
}

#[leakcheck::test]
fn zeroed_vec_dropped() {
    drops_zeroed_vec(); // call: zeroed_vec_dropped
}

#[inline(never)]
fn drops_zeroed_u64_vec(n: usize) {
    std::mem::forget(vec![0u64; n]); // site: drops_zeroed_u64_vec
}

#[leakcheck::test]
fn zeroed_u64_vec_dropped() {
    drops_zeroed_u64_vec(black_box(9)); // call: zeroed_u64_vec_dropped
}

#[inline(never)]
fn returns_filled_vec() -> Vec<u8> {
    vec![0x5a_u8; 52] // site: returns_filled_vec
}

#[leakcheck::test]
fn filled_vec_returned() {
    std::mem::forget(black_box(returns_filled_vec())); // call: filled_vec_returned
}

#[inline(never)]
fn drops_filled_vec() {
    std::mem::forget(vec![0x5a_u8; 53]); // site: drops_filled_vec
}

#[leakcheck::test]
fn filled_vec_dropped() {
    drops_filled_vec(); // call: filled_vec_dropped
}

// ---- format! ----

#[inline(never)]
fn returns_format(n: u64) -> String {
    format!("{n:>54}") // site: returns_format
}

#[leakcheck::test]
fn format_returned() {
    std::mem::forget(black_box(returns_format(black_box(7)))); // call: format_returned
}

#[inline(never)]
fn drops_format(n: u64) {
    std::mem::forget(format!("{n:>55}")); // site: drops_format
}

#[leakcheck::test]
fn format_dropped() {
    drops_format(black_box(7)); // call: format_dropped
}

// ---- Vec::push (the first push allocates) ----

// The push is the allocation under test, not `vec![n]`.
#[allow(clippy::vec_init_then_push)]
#[inline(never)]
fn returns_pushed(n: u64) -> Vec<u64> {
    let mut v = Vec::new();
    v.push(n); // site: returns_pushed
    v
}

#[leakcheck::test]
fn push_returned() {
    std::mem::forget(black_box(returns_pushed(black_box(7)))); // call: push_returned
}

#[allow(clippy::vec_init_then_push)]
#[inline(never)]
fn drops_pushed(n: u16) {
    let mut v = Vec::new();
    v.push(n); // site: drops_pushed
    std::mem::forget(v);
}

#[leakcheck::test]
fn push_dropped() {
    drops_pushed(black_box(7)); // call: push_dropped
}
