//! Model-based property test of the tracking: a random sequence of allocations, frees,
//! reallocations and forgotten blocks runs inside a check on one thread, next to a reference
//! model (a plain list of live blocks); the report must name exactly the model's leaked set.
//!
//! Blocks made before the check take part too (freed, reallocated or forgotten inside it):
//! they are never the check's leaks, however they move.

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

use proptest::prelude::*;
use std::alloc::Layout;
use std::ptr::NonNull;

#[derive(Clone, Debug)]
enum Op {
    /// Allocate `size` bytes aligned to `align` (zeroed or not).
    Alloc {
        size: usize,
        align: usize,
        zeroed: bool,
    },
    /// Free the `i`-th live block (modulo the live count).
    Free(usize),
    /// Reallocate the `i`-th live block to `size` bytes.
    Realloc(usize, usize),
    /// Forget the `i`-th live block: no later operation touches it.
    Forget(usize),
    /// Allocate `size` bytes inside `leakcheck::ignore`: never the check's leak.
    AllocIgnored(usize),
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 1usize..=64,
        3 => 65usize..=4096,
        1 => 4097usize..=100_000,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (size(), prop::sample::select(vec![1usize, 2, 8, 16, 64, 4096]), any::<bool>())
            .prop_map(|(size, align, zeroed)| Op::Alloc { size, align, zeroed }),
        2 => any::<usize>().prop_map(Op::Free),
        2 => (any::<usize>(), size()).prop_map(|(i, size)| Op::Realloc(i, size)),
        1 => any::<usize>().prop_map(Op::Forget),
        1 => size().prop_map(Op::AllocIgnored),
    ]
}

/// A live block, and whether the check made it (or a block from before the check).
struct Live {
    ptr: NonNull<u8>,
    layout: Layout,
    mine: bool,
}

fn allocate(size: usize, align: usize, zeroed: bool) -> Live {
    let layout = Layout::from_size_align(size, align).unwrap();
    // SAFETY: non-zero size.
    let ptr = unsafe {
        if zeroed {
            std::alloc::alloc_zeroed(layout)
        } else {
            std::alloc::alloc(layout)
        }
    };
    let ptr = NonNull::new(std::hint::black_box(ptr)).expect("out of memory");
    // SAFETY: at least one byte is writable.
    unsafe { ptr.as_ptr().write(1) };
    Live {
        ptr,
        layout,
        mine: true,
    }
}

/// Applies `ops` to `live` (which starts with the blocks made before the check), moving
/// forgotten blocks to `forgotten`, out of reach of later operations.
fn apply(ops: &[Op], live: &mut Vec<Live>, forgotten: &mut Vec<Live>) {
    for op in ops {
        match *op {
            Op::Alloc {
                size,
                align,
                zeroed,
            } => live.push(allocate(size, align, zeroed)),
            Op::AllocIgnored(size) => {
                let mut block = leakcheck::ignore(|| allocate(size, 8, false));
                block.mine = false;
                live.push(block);
            }
            Op::Free(i) if !live.is_empty() => {
                let block = live.swap_remove(i % live.len());
                // SAFETY: allocated with this layout; its only handle.
                unsafe { std::alloc::dealloc(block.ptr.as_ptr(), block.layout) };
            }
            Op::Realloc(i, size) if !live.is_empty() => {
                let n = live.len();
                let block = &mut live[i % n];
                // SAFETY: allocated with `layout`; the new size is non-zero and small.
                let ptr = unsafe { std::alloc::realloc(block.ptr.as_ptr(), block.layout, size) };
                block.ptr = NonNull::new(std::hint::black_box(ptr)).expect("out of memory");
                block.layout = Layout::from_size_align(size, block.layout.align()).unwrap();
            }
            Op::Forget(i) if !live.is_empty() => {
                let n = live.len();
                forgotten.push(live.swap_remove(i % n));
            }
            _ => {}
        }
    }
}

fn free_all(blocks: &mut Vec<Live>) {
    for block in blocks.drain(..) {
        // SAFETY: allocated with this layout; its only handle.
        unsafe { std::alloc::dealloc(block.ptr.as_ptr(), block.layout) };
    }
}

fn run_case(before: &[(usize, usize)], ops: &[Op]) -> Result<(), TestCaseError> {
    // Room for every block there can be, reserved outside the check, so the bookkeeping's own
    // vectors never allocate inside it.
    let room = before.len() + ops.len();
    let mut live: Vec<Live> = Vec::with_capacity(room);
    let mut forgotten: Vec<Live> = Vec::with_capacity(room);
    for &(size, align) in before {
        let mut block = allocate(size, align, false);
        block.mine = false;
        live.push(block);
    }
    // `reachable = "fail"`: every block the check made and left live counts, whether or not
    // something still points to it (the model's handles do), so the verdict does not depend
    // on what a conservative root scan finds on the stack.
    let report = leakcheck::Check::new()
        .reachable(leakcheck::Reachable::Fail)
        .run(|| apply(ops, &mut live, &mut forgotten));
    // The model: the check leaked exactly the blocks it made that were still live when it
    // ended (still held or forgotten), at their last size.
    let expected: Vec<usize> = live
        .iter()
        .chain(&forgotten)
        .filter(|b| b.mine)
        .map(|b| b.layout.size())
        .collect();
    let expected_bytes: usize = expected.iter().sum();
    free_all(&mut live);
    free_all(&mut forgotten);
    prop_assert_eq!(report.leaked_allocations(), expected.len(), "{}", report);
    prop_assert_eq!(report.leaked_bytes(), expected_bytes, "{}", report);
    let (group_blocks, group_bytes) = report
        .groups()
        .iter()
        .fold((0, 0), |(n, b), g| (n + g.allocations(), b + g.bytes()));
    prop_assert_eq!(group_blocks, expected.len(), "{}", report);
    prop_assert_eq!(group_bytes, expected_bytes, "{}", report);
    prop_assert_eq!(report.is_clean(), expected.is_empty(), "{}", report);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn report_matches_the_model(
        before in prop::collection::vec((size(), prop::sample::select(vec![1usize, 8, 64])), 0..8),
        ops in prop::collection::vec(op(), 0..64),
    ) {
        run_case(&before, &ops)?;
    }
}

#[test]
fn model_catches_a_forgotten_realloc() {
    // A fixed case the random ones may take long to hit: grow, shrink, forget.
    run_case(
        &[(10, 8)],
        &[
            Op::Alloc {
                size: 10,
                align: 8,
                zeroed: false,
            },
            Op::Realloc(1, 5000),
            Op::Realloc(1, 3),
            Op::Realloc(0, 700),
            Op::Forget(1),
            Op::Forget(0),
        ],
    )
    .unwrap();
}
