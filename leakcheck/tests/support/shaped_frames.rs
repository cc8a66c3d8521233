// Recursion through frames of different shapes, for the unwinder's tests (the unit tests in
// `src/raw/unwind.rs` and `tests/unwind.rs` include this file): rsp-based CFAs with small
// and large offsets, rbp-based CFAs (stack realignment makes LLVM keep a frame pointer) and
// rbp saved as an ordinary callee-saved register. Each adds to its callee's result after the
// call, so no call is a tail call.

use std::hint::black_box;

#[inline(never)]
pub(crate) fn shaped(depth: u32, leaf: &mut dyn FnMut()) -> u64 {
    if depth == 0 {
        leaf();
        return 0;
    }
    match depth % 4 {
        0 => plain(depth - 1, leaf),
        1 => big(depth - 1, leaf),
        2 => aligned(depth - 1, leaf),
        _ => many_registers(depth - 1, leaf),
    }
}

#[inline(never)]
fn plain(depth: u32, leaf: &mut dyn FnMut()) -> u64 {
    black_box(shaped(black_box(depth), leaf)) + 1
}

#[inline(never)]
fn big(depth: u32, leaf: &mut dyn FnMut()) -> u64 {
    let mut block = [0u8; 3000];
    black_box(&mut block);
    let below = shaped(depth, leaf);
    black_box(&block);
    below + u64::from(block[7])
}

#[repr(align(128))]
struct Aligned([u8; 128]);

#[inline(never)]
fn aligned(depth: u32, leaf: &mut dyn FnMut()) -> u64 {
    let mut block = Aligned([1; 128]);
    black_box(&mut block);
    let below = shaped(depth, leaf);
    below + u64::from(black_box(&block).0[3])
}

#[inline(never)]
fn many_registers(depth: u32, leaf: &mut dyn FnMut()) -> u64 {
    let v: [u64; 7] = core::array::from_fn(|i| black_box(i as u64 * 3 + 1));
    let below = shaped(depth, leaf);
    below + v[0] * v[1] + v[2] * v[3] + v[4] * v[5] * v[6]
}
