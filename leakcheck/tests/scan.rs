//! The reachability scan on real memory: statics, thread-locals, caller frames, interior
//! pointers, lost lists and cycles.
//!
//! The scan reads the live part of the calling thread's stack, so a test must not keep a
//! plain copy of a block's address in its own frame (that alone would make the block
//! reachable). Blocks are made in `#[inline(never)]` helpers, whose frames are dead and zeroed
//! when the scan runs, and their addresses travel XOR-masked until `unmask` writes them into a
//! heap buffer, which the scan does not read.
//!
//! The scan is conservative: a stale copy of an address in a live frame above the test (the
//! harness's, std's thread start) holds whatever block later reuses that memory. So the blocks
//! whose verdict is "lost" are big (36 MiB): glibc maps each one fresh, far from the chunks
//! that the harness allocated and freed. They are calloc'd, so their untouched pages cost no
//! memory.
#![cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

use std::cell::RefCell;
use std::hint::black_box;
use std::mem::size_of;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::Mutex;

const MASK: usize = 0xa5a5_0000_0000_5a5a;

/// A block as (masked address, size).
type Masked = (usize, usize);

/// Words in a big block: 36 MiB, above the 32 MiB ceiling of glibc's mmap threshold.
const WORDS: usize = 36 << 17;

/// A big block whose first word can hold a link to another block.
type Big = Box<[usize]>;

fn big() -> Big {
    black_box(vec![0usize; WORDS].into_boxed_slice())
}

#[inline(never)]
fn masked(block: &Big) -> Masked {
    (
        block.as_ptr() as usize ^ MASK,
        size_of::<usize>() * block.len(),
    )
}

#[inline(never)]
fn unmask(blocks: &[Masked]) -> Vec<(usize, usize)> {
    black_box(blocks)
        .iter()
        .map(|&(addr, size)| (addr ^ MASK, size))
        .collect()
}

/// Zeroes the dead stack below the caller's frame: frames called next are laid over those of
/// calls that returned, and would otherwise keep stale copies of the addresses they held.
#[inline(never)]
fn scrub_stack() {
    let mut zeros = [0usize; 2048];
    black_box(&mut zeros);
}

/// Inlined into the test, so its calls run right below the test's frame.
#[inline(always)]
fn scan(blocks: &[Masked]) -> Vec<&'static str> {
    let blocks = unmask(blocks);
    scrub_stack();
    leakcheck::__private::scan_for_tests(&blocks)
}

static HELD: AtomicPtr<usize> = AtomicPtr::new(std::ptr::null_mut());

#[inline(never)]
fn hold_in_static() -> Masked {
    let block = big();
    let at = masked(&block);
    HELD.store(Box::into_raw(block).cast(), Ordering::SeqCst);
    at
}

#[test]
fn box_held_by_a_static_is_reachable() {
    let block = hold_in_static();
    assert_eq!(scan(&[block]), ["reachable"]);
    // A static nobody reads is optimised away, stores and all.
    black_box(&HELD);
}

#[inline(never)]
fn leak_unreferenced() -> Masked {
    let block = big();
    let at = masked(&block);
    std::mem::forget(black_box(block));
    at
}

#[test]
fn box_nothing_points_to_is_definitely_lost() {
    let block = leak_unreferenced();
    assert_eq!(scan(&[block]), ["definitely"]);
}

/// head -> second -> third, each link in the block's first word.
#[inline(never)]
fn forget_list() -> [Masked; 3] {
    let third = big();
    let mut second = big();
    let mut head = big();
    second[0] = third.as_ptr() as usize;
    head[0] = second.as_ptr() as usize;
    let list = [masked(&head), masked(&second), masked(&third)];
    for block in [head, second, third] {
        std::mem::forget(black_box(block));
    }
    list
}

#[test]
fn forgotten_list_head_is_definitely_lost_and_the_rest_indirectly() {
    let list = forget_list();
    assert_eq!(scan(&list), ["definitely", "indirectly", "indirectly"]);
    // Listed in another order, the verdicts follow the blocks.
    assert_eq!(
        scan(&[list[2], list[0], list[1]]),
        ["indirectly", "definitely", "indirectly"]
    );
}

#[inline(never)]
fn forget_cycle() -> [Masked; 2] {
    let mut a = big();
    let mut b = big();
    a[0] = b.as_ptr() as usize;
    // An interior pointer closes the cycle.
    b[0] = a.as_ptr() as usize + 1000;
    let cycle = [masked(&a), masked(&b)];
    std::mem::forget(black_box(a));
    std::mem::forget(black_box(b));
    cycle
}

#[test]
fn lost_cycle_has_one_definitely_lost_block() {
    let mut verdicts = scan(&forget_cycle());
    verdicts.sort_unstable();
    assert_eq!(verdicts, ["definitely", "indirectly"]);
}

thread_local! {
    static LOCAL: RefCell<Option<Big>> = const { RefCell::new(None) };
    static LAZY: Big = big();
}

#[inline(never)]
fn hold_in_thread_locals() -> [Masked; 2] {
    let block = big();
    let local = masked(&block);
    LOCAL.with(|slot| *slot.borrow_mut() = Some(block));
    let lazy = LAZY.with(masked);
    [local, lazy]
}

static THEIRS: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];
static THEY_MAY_EXIT: AtomicBool = AtomicBool::new(false);

#[test]
fn box_held_by_a_thread_local_is_reachable() {
    let blocks = hold_in_thread_locals();
    assert_eq!(scan(&blocks), ["reachable", "reachable"]);

    // Another thread's thread-locals (and stack) are not roots of this thread's scan. Its
    // blocks' addresses come back through statics, masked.
    let other = std::thread::spawn(|| {
        let [(a, a_size), (b, b_size)] = hold_in_thread_locals();
        for (slot, value) in THEIRS.iter().zip([a, a_size, b, b_size]) {
            slot.store(value, Ordering::SeqCst);
        }
        while !THEY_MAY_EXIT.load(Ordering::SeqCst) {
            std::thread::park();
        }
    });
    while THEIRS[3].load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    let theirs = [
        (
            THEIRS[0].load(Ordering::SeqCst),
            THEIRS[1].load(Ordering::SeqCst),
        ),
        (
            THEIRS[2].load(Ordering::SeqCst),
            THEIRS[3].load(Ordering::SeqCst),
        ),
    ];
    assert_eq!(scan(&theirs), ["definitely", "definitely"]);
    THEY_MAY_EXIT.store(true, Ordering::SeqCst);
    other.thread().unpark();
    other.join().unwrap();
}

#[test]
fn box_held_by_a_caller_frame_is_reachable() {
    let held = big();
    let block = masked(&held);
    assert_eq!(scan(&[block]), ["reachable"]);
    black_box(&held);
}

static INTERIOR: AtomicUsize = AtomicUsize::new(0);
static PAST_THE_END: AtomicUsize = AtomicUsize::new(0);

#[inline(never)]
fn hold_interior_pointers() -> [Masked; 2] {
    let inside = big();
    INTERIOR.store(inside.as_ptr() as usize + 5000, Ordering::SeqCst);
    let past = big();
    PAST_THE_END.store(
        past.as_ptr() as usize + size_of::<usize>() * WORDS,
        Ordering::SeqCst,
    );
    let blocks = [masked(&inside), masked(&past)];
    std::mem::forget(black_box(inside));
    std::mem::forget(black_box(past));
    blocks
}

#[test]
fn interior_pointer_holds_a_block_but_one_past_the_end_does_not() {
    assert_eq!(scan(&hold_interior_pointers()), ["reachable", "definitely"]);
    black_box((&INTERIOR, &PAST_THE_END));
}

static CHAIN: AtomicPtr<usize> = AtomicPtr::new(std::ptr::null_mut());

#[inline(never)]
fn hold_chain_in_static() -> [Masked; 3] {
    let list = forget_list();
    CHAIN.store(
        black_box((list[0].0 ^ MASK) as *mut usize),
        Ordering::SeqCst,
    );
    list
}

#[test]
fn blocks_reached_through_other_candidates_are_reachable() {
    assert_eq!(
        scan(&hold_chain_in_static()),
        ["reachable", "reachable", "reachable"]
    );
    black_box(&CHAIN);
}

#[test]
fn unmapped_blocks_are_read_without_faulting() {
    let never_mapped = (0x1234_5678_0000 ^ MASK, 4096);
    assert_eq!(scan(&[never_mapped]), ["definitely"]);
}

static MANY: Mutex<Vec<&[u64; 8]>> = Mutex::new(Vec::new());

/// `n` small blocks held through a static's vector (whose buffer is a candidate too), then
/// `n` forgotten ones.
#[inline(never)]
fn many_blocks(n: usize) -> Vec<Masked> {
    let mut blocks = Vec::with_capacity(2 * n + 1);
    let mut held = MANY.lock().unwrap();
    held.reserve_exact(n);
    for i in 0..n {
        let block: &[u64; 8] = Box::leak(black_box(Box::new([i as u64; 8])));
        blocks.push((block as *const [u64; 8] as usize ^ MASK, 64));
        held.push(block);
    }
    for i in 0..n {
        let lost = Box::into_raw(black_box(Box::new([i as u64; 8])));
        blocks.push((lost as usize ^ MASK, 64));
    }
    blocks.push((
        held.as_ptr() as usize ^ MASK,
        held.capacity() * size_of::<usize>(),
    ));
    blocks
}

#[test]
fn thousand_candidates_timing() {
    let blocks = many_blocks(500);
    let started = std::time::Instant::now();
    let verdicts = scan(&blocks);
    let elapsed = started.elapsed();
    let (held, lost) = verdicts[..1000].split_at(500);
    let lost_found = lost.iter().filter(|&&v| v == "definitely").count();
    println!(
        "scan of {} candidates: {:.2} ms ({lost_found} of 500 lost blocks found lost)",
        blocks.len(),
        elapsed.as_secs_f64() * 1e3
    );
    assert!(held.iter().all(|&v| v == "reachable"));
    assert_eq!(verdicts[1000], "reachable");
    // Small blocks may reuse memory whose stale address lingers above the test: a few may
    // look reachable, never more.
    assert!(lost_found >= 490, "{lost_found}");
    black_box(&MANY);
}
