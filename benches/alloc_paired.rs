//! Allocator overhead, paired in one process: the small rows' ratios without the
//! machine's drift between processes.
//!
//! `scripts/bench` times each `#[global_allocator]` in its own process, minutes apart; on a
//! shared virtual machine System's own figure moves by a third between rounds, which is more
//! than the differences the idle target asks about. Here one binary installs leakcheck and
//! calls each variant's `GlobalAlloc` methods directly, with the same workloads as the
//! criterion rows (ring of 1024 live blocks, 12 frames deep, per-thread CPU time):
//!
//! - `system`: `System` called directly (what a bare passthrough wrapper compiles to: no call
//!   to std's default allocator shim, so it is a few instructions cheaper than the process
//!   without a `#[global_allocator]`, and the ratios here are the stricter ones);
//! - `passthrough`: a bare wrapper struct around `System` (the same code again: its ratio to
//!   `system` shows how steady the method is);
//! - `idle`: the installed leakcheck allocator, no check running;
//! - `checked`: the same, with each thread inside its own `leakcheck::check`; stacks as
//!   `LEAKCHECK_BACKTRACE` says (0: off; on: frame pointers in a frame-pointer build, else the
//!   cached DWARF walker).
//!
//! A burst runs every variant once, one after the other (rotating which goes first), each for
//! the same number of operations; the figures are medians over bursts of each variant's time
//! and of its ratio to the others' in the same burst, so whatever slows the machine for a
//! second slows both sides of a ratio. Prints one `bench-paired` line per variant, workload
//! and thread count. `LEAKCHECK_BENCH_BURSTS` (default 200) sets the number of bursts.

#[path = "common/parts.rs"]
mod parts;
#[path = "common/passthrough.rs"]
mod passthrough;

use parts::{at_depth, Clock, Workload, XorShift, DEPTH, GROWTH, RING};
use passthrough::Passthrough;
use std::alloc::{handle_alloc_error, GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::Barrier;
use std::time::Duration;

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

/// `System` behind one out-of-line call per operation, the way a process without a
/// `#[global_allocator]` reaches it: std's `__rust_alloc` calls its `__rdl_alloc` shim, which
/// calls `System` (std's shims are not inlined into user code). The targets are
/// ratios to that System.
struct StdDefault;

#[inline(never)]
extern "C" fn std_default_alloc(size: usize, align: usize) -> *mut u8 {
    // SAFETY: `size` and `align` come from a valid `Layout` with a non-zero size.
    unsafe { System.alloc(Layout::from_size_align_unchecked(size, align)) }
}

#[inline(never)]
extern "C" fn std_default_dealloc(ptr: *mut u8, size: usize, align: usize) {
    // SAFETY: `ptr` came from `std_default_alloc` or `std_default_realloc` with this layout.
    unsafe { System.dealloc(ptr, Layout::from_size_align_unchecked(size, align)) }
}

#[inline(never)]
extern "C" fn std_default_realloc(
    ptr: *mut u8,
    size: usize,
    align: usize,
    new_size: usize,
) -> *mut u8 {
    // SAFETY: as in `std_default_dealloc`; `new_size` is non-zero.
    unsafe {
        System.realloc(
            ptr,
            Layout::from_size_align_unchecked(size, align),
            new_size,
        )
    }
}

// SAFETY: every method forwards its arguments unchanged to `System` (through one call) and
// returns its result unchanged.
unsafe impl GlobalAlloc for StdDefault {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        std_default_alloc(layout.size(), layout.align())
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        std_default_dealloc(ptr, layout.size(), layout.align())
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        std_default_realloc(ptr, layout.size(), layout.align(), new_size)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    StdDefault,
    System,
    Passthrough,
    Idle,
    Checked,
}

impl Variant {
    const ALL: [Variant; 5] = [
        Variant::StdDefault,
        Variant::System,
        Variant::Passthrough,
        Variant::Idle,
        Variant::Checked,
    ];

    fn name(self) -> &'static str {
        match self {
            Variant::StdDefault => "std-default",
            Variant::System => "system",
            Variant::Passthrough => "passthrough",
            Variant::Idle => "idle",
            Variant::Checked => "checked",
        }
    }
}

impl Workload {
    /// Operations per variant per burst: a few milliseconds of the slowest variant.
    fn ops(self) -> u64 {
        match self {
            Workload::Pairs | Workload::Mixed => 20_000,
            Workload::Realloc => 500,
        }
    }
}

/// Sets up, waits for the other threads, times `ops` operations with `alloc`, waits for the
/// other threads to stop their clocks too, cleans up. Without the second wait, a thread done
/// early went on to the next variant while another was still timed: when that variant was
/// the checked one, its check's start put every thread's frees on the slow path (as a check
/// does), the idle row's tail among them (idle/wrapper 1.14x at 2 threads, 1.09x at 1).
fn run<A: GlobalAlloc>(
    alloc: &A,
    workload: Workload,
    ops: u64,
    seed: u64,
    barrier: &Barrier,
    clock: Clock,
) -> Duration {
    match workload {
        Workload::Pairs => {
            let layout = Layout::new::<[u8; 32]>();
            let mut ring: Vec<(*mut u8, Layout)> = (0..RING)
                .map(|_| (allocate(alloc, layout), layout))
                .collect();
            barrier.wait();
            let start = clock.start();
            pairs(alloc, &mut ring, ops);
            let elapsed = start.elapsed();
            barrier.wait();
            free_all(alloc, ring);
            elapsed
        }
        Workload::Realloc => {
            barrier.wait();
            let start = clock.start();
            growths(alloc, ops);
            let elapsed = start.elapsed();
            barrier.wait();
            elapsed
        }
        Workload::Mixed => {
            let mut rng = XorShift(seed | 1);
            let mut ring: Vec<(*mut u8, Layout)> = (0..RING)
                .map(|_| {
                    let layout = sized(rng.size());
                    (allocate(alloc, layout), layout)
                })
                .collect();
            barrier.wait();
            let start = clock.start();
            mixed(alloc, &mut ring, &mut rng, ops);
            let elapsed = start.elapsed();
            barrier.wait();
            free_all(alloc, ring);
            elapsed
        }
    }
}

fn sized(size: usize) -> Layout {
    Layout::from_size_align(size, 8).expect("bench sizes are small")
}

fn allocate<A: GlobalAlloc>(alloc: &A, layout: Layout) -> *mut u8 {
    // SAFETY: every layout here has a non-zero size.
    let ptr = unsafe { alloc.alloc(layout) };
    if ptr.is_null() {
        handle_alloc_error(layout);
    }
    ptr
}

fn free_all<A: GlobalAlloc>(alloc: &A, ring: Vec<(*mut u8, Layout)>) {
    for (ptr, layout) in ring {
        // SAFETY: each block came from `alloc` with this layout and is freed once.
        unsafe { alloc.dealloc(ptr, layout) };
    }
}

/// Replaces the oldest of the ring's 32-byte blocks: one alloc and one free, as
/// `workload::pairs` does with `Box<[u8; 32]>`.
#[inline(never)]
fn pairs<A: GlobalAlloc>(alloc: &A, ring: &mut [(*mut u8, Layout)], ops: u64) {
    let layout = Layout::new::<[u8; 32]>();
    let mut slot = 0;
    for i in 0..ops {
        let ptr = allocate(alloc, layout);
        // SAFETY: `ptr` is a fresh block of 32 bytes.
        unsafe { ptr.write_bytes(i as u8, 32) };
        let (old, old_layout) = std::mem::replace(&mut ring[slot], (black_box(ptr), layout));
        // SAFETY: `old` came from `alloc` with `old_layout` and leaves the ring here.
        unsafe { alloc.dealloc(old, old_layout) };
        slot = (slot + 1) % RING;
    }
}

/// Grows a buffer of `u64`s to [`GROWTH`] elements by doubling from 4, as `Vec::push` does
/// (1 alloc, 10 reallocs, 1 free), writing every element.
#[inline(never)]
fn growths<A: GlobalAlloc>(alloc: &A, ops: u64) {
    for _ in 0..ops {
        let mut capacity = 4usize;
        let mut layout = sized(capacity * 8);
        let mut ptr = allocate(alloc, layout).cast::<u64>();
        fill(ptr, 0, capacity);
        while capacity < GROWTH as usize {
            let filled = capacity;
            capacity *= 2;
            // SAFETY: `ptr` came from `alloc` with `layout`; the new size is non-zero.
            let grown = unsafe { alloc.realloc(ptr.cast(), layout, capacity * 8) };
            layout = sized(capacity * 8);
            if grown.is_null() {
                handle_alloc_error(layout);
            }
            ptr = grown.cast();
            fill(ptr, filled, capacity);
        }
        black_box(ptr);
        // SAFETY: `ptr` came from `alloc` with `layout`.
        unsafe { alloc.dealloc(ptr.cast(), layout) };
    }
}

/// Writes elements `from..to`: one function for every variant, so that no variant's loop is
/// vectorised differently from another's.
#[inline(never)]
fn fill(buffer: *mut u64, from: usize, to: usize) {
    for k in from..to {
        // SAFETY: callers pass `to` at most the buffer's capacity.
        unsafe { buffer.add(k).write(k as u64) };
    }
}

/// Replaces the oldest of the ring's blocks with one of a pseudo-random size in 8..=4096.
#[inline(never)]
fn mixed<A: GlobalAlloc>(alloc: &A, ring: &mut [(*mut u8, Layout)], rng: &mut XorShift, ops: u64) {
    let mut slot = 0;
    for _ in 0..ops {
        let layout = sized(rng.size());
        let ptr = black_box(allocate(alloc, layout));
        let (old, old_layout) = std::mem::replace(&mut ring[slot], (ptr, layout));
        // SAFETY: `old` came from `alloc` with `old_layout` and leaves the ring here.
        unsafe { alloc.dealloc(old, old_layout) };
        slot = (slot + 1) % RING;
    }
}

/// One thread's part of a burst: every variant in `order`, each started with the other
/// threads, at [`DEPTH`] frames; returns each variant's time.
fn thread_burst(
    workload: Workload,
    order: &[Variant],
    seed: u64,
    barrier: &Barrier,
    clock: Clock,
) -> Vec<(Variant, Duration)> {
    let ops = workload.ops();
    order
        .iter()
        .map(|&variant| {
            let mut elapsed = Duration::ZERO;
            let mut body = || {
                at_depth(DEPTH, &mut || {
                    elapsed = match variant {
                        Variant::StdDefault => {
                            run(&StdDefault, workload, ops, seed, barrier, clock)
                        }
                        Variant::System => run(&System, workload, ops, seed, barrier, clock),
                        Variant::Passthrough => {
                            run(&Passthrough, workload, ops, seed, barrier, clock)
                        }
                        Variant::Idle | Variant::Checked => {
                            run(&ALLOC, workload, ops, seed, barrier, clock)
                        }
                    };
                })
            };
            if variant == Variant::Checked {
                let report = leakcheck::check(body);
                assert!(
                    report.is_clean(),
                    "the benchmark workload leaked:\n{report}"
                );
            } else {
                body();
            }
            (variant, elapsed)
        })
        .collect()
}

/// One burst at `threads` threads: per variant, the slowest thread's time per operation (ns).
fn burst(
    workload: Workload,
    threads: usize,
    order: &[Variant],
    clock: Clock,
) -> Vec<(Variant, f64)> {
    let barrier = Barrier::new(threads);
    let per_thread: Vec<Vec<(Variant, Duration)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads as u64)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || thread_burst(workload, order, 0x9E37_79B9 + t, barrier, clock))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("benchmark thread panicked"))
            .collect()
    });
    order
        .iter()
        .enumerate()
        .map(|(i, &variant)| {
            let slowest = per_thread.iter().map(|times| times[i].1).max();
            let ns = slowest.unwrap_or_default().as_nanos() as f64 / workload.ops() as f64;
            (variant, ns)
        })
        .collect()
}

/// The median and the quartiles of `values`.
fn quartiles(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.25), at(0.75))
}

fn main() {
    let bursts: usize = match std::env::var("LEAKCHECK_BENCH_BURSTS") {
        Ok(value) => match value.parse() {
            Ok(n) if n > 0 => n,
            _ => panic!("LEAKCHECK_BENCH_BURSTS={value:?}: expected a positive whole number"),
        },
        Err(_) => 200,
    };
    let clock = Clock::from_env();
    println!("bench-info\tclock\t{}", clock.name());
    let filter = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .unwrap_or_default();
    // The first check reads LEAKCHECK_BACKTRACE and calibrates the stack walker.
    let report = leakcheck::check(|| drop(black_box(Box::new(0u64))));
    assert!(report.is_clean(), "{report}");
    let stacks = std::env::var("LEAKCHECK_BACKTRACE").map_or(true, |v| v != "0");
    let walker = if stacks {
        leakcheck::__private::unwinder()
    } else {
        "none"
    };
    println!("bench-info\tunwinder\t{walker}");
    for workload in Workload::ALL {
        for threads in [1, 2] {
            let name = format!("{}/{threads}t", workload.name());
            if !name.contains(&filter) {
                continue;
            }
            // One burst to warm up (lazy set-up, the stack walker's caches), not counted.
            burst(workload, threads, &Variant::ALL, clock);
            let mut times: Vec<[f64; 5]> = Vec::with_capacity(bursts);
            for b in 0..bursts {
                let mut order = Variant::ALL;
                order.rotate_left(b % Variant::ALL.len());
                let mut row = [0.0; 5];
                for (variant, ns) in burst(workload, threads, &order, clock) {
                    row[variant as usize] = ns;
                }
                times.push(row);
            }
            for variant in Variant::ALL {
                let v = variant as usize;
                let (ns, _, _) = quartiles(times.iter().map(|t| t[v]).collect());
                let ratio = |base: Variant| {
                    quartiles(times.iter().map(|t| t[v] / t[base as usize]).collect())
                };
                let (to_std, low, high) = ratio(Variant::StdDefault);
                let (to_passthrough, _, _) = ratio(Variant::Passthrough);
                println!(
                    "bench-paired\t{}\t{threads}\t{}\t{ns:.2}\t{to_std:.3}\t{low:.3}\t{high:.3}\t{to_passthrough:.3}",
                    workload.name(),
                    variant.name(),
                );
            }
            eprintln!("alloc_paired: {name} done ({bursts} bursts)");
        }
    }
}
