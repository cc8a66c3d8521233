//! The workloads every allocator-overhead bench binary runs, and the criterion driver
//! around them. Each binary differs only in its `#[global_allocator]` and in how a thread
//! wraps its timed loop (directly, inside `leakcheck::check`, inside `checkers::with`), so each
//! includes this file with `#[path = "common/workload.rs"] mod workload;` and calls [`main`].
//!
//! Every sample spawns one thread per benchmarked thread count (also for one thread, so both
//! cases start from the same stack). Each thread enters its wrapper, recurses [`DEPTH`]
//! `#[inline(never)]` frames, fills its ring, waits for the other threads, and only then starts
//! its clock: thread start-up, check set-up and the report at the end are outside the timing.
//! The clock is the thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), so other processes on a
//! shared machine do not inflate the figures; `LEAKCHECK_BENCH_CLOCK=wall` uses elapsed time.
//! Nothing timed blocks except dhat's global lock at 2 threads, whose waiting only the wall
//! clock sees.
//! One operation is an alloc+free pair for the ring workloads and one whole `Vec` growth for
//! the realloc workload. A sample's time is the slowest thread's, divided by the operations
//! each thread did.
//!
//! Criterion drives warm-up and sample sizes and prints its usual estimates; at the end each
//! binary also prints one `bench-result` line per benchmark (workload, threads, median ns/op
//! over criterion's samples), which `scripts/bench` turns into its table.

#[path = "parts.rs"]
mod parts;

use criterion::{Criterion, SamplingMode};
use parts::{at_depth, Clock, Workload, XorShift, DEPTH, GROWTH, RING};
use std::hint::black_box;
use std::sync::{Barrier, Mutex};
use std::time::Duration;

/// Runs a thread's measured body inside a variant's own check (`leakcheck::check`,
/// `checkers::with`); `None` runs it directly.
pub type Wrap = fn(&mut dyn FnMut());

/// Criterion's minimum; these numbers are ratios, not a regression gate.
const SAMPLES: usize = 10;

impl Workload {
    /// Sets up, waits for the other threads, runs `iters` operations; returns their time.
    fn run(self, iters: u64, seed: u64, barrier: &Barrier, clock: Clock) -> Duration {
        match self {
            Workload::Pairs => {
                let mut ring: Vec<Box<[u8; 32]>> =
                    (0..RING).map(|i| Box::new([i as u8; 32])).collect();
                barrier.wait();
                let start = clock.start();
                pairs(&mut ring, iters);
                start.elapsed()
            }
            Workload::Realloc => {
                barrier.wait();
                let start = clock.start();
                growths(iters);
                start.elapsed()
            }
            Workload::Mixed => {
                let mut rng = XorShift(seed | 1);
                let mut ring: Vec<Vec<u8>> =
                    (0..RING).map(|_| Vec::with_capacity(rng.size())).collect();
                barrier.wait();
                let start = clock.start();
                mixed(&mut ring, &mut rng, iters);
                start.elapsed()
            }
        }
    }
}

#[inline(never)]
fn pairs(ring: &mut [Box<[u8; 32]>], iters: u64) {
    let mut slot = 0;
    for i in 0..iters {
        // Allocates the new box, then frees the one it replaces.
        ring[slot] = black_box(Box::new([i as u8; 32]));
        slot = (slot + 1) % RING;
    }
}

#[inline(never)]
fn growths(iters: u64) {
    for _ in 0..iters {
        let mut v: Vec<u64> = Vec::new();
        for k in 0..GROWTH {
            v.push(k);
        }
        black_box(&mut v);
    }
}

#[inline(never)]
fn mixed(ring: &mut [Vec<u8>], rng: &mut XorShift, iters: u64) {
    let mut slot = 0;
    for _ in 0..iters {
        ring[slot] = black_box(Vec::with_capacity(rng.size()));
        slot = (slot + 1) % RING;
    }
}

/// One criterion sample: `threads` threads each run `iters` operations.
fn sample(
    workload: Workload,
    threads: usize,
    iters: u64,
    wrap: Option<Wrap>,
    clock: Clock,
) -> Duration {
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads as u64)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut elapsed = Duration::ZERO;
                    let mut body = || {
                        at_depth(DEPTH, &mut || {
                            elapsed = workload.run(iters, 0x9E37_79B9 + t, barrier, clock)
                        });
                    };
                    match wrap {
                        Some(wrap) => wrap(&mut body),
                        None => body(),
                    }
                    elapsed
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("benchmark thread panicked"))
            .max()
            .unwrap_or_default()
    })
}

/// Runs every workload at 1 and 2 threads under criterion as group `label`, then prints one
/// `bench-result` line per benchmark that ran (criterion's filter arguments apply).
///
/// With `LEAKCHECK_BENCH_ITERS=N` it skips criterion and times one run of `N` operations per
/// benchmark whose name contains the first free argument: for profilers such as
/// `valgrind --tool=callgrind --toggle-collect='*workload::pairs*'`.
pub fn main(label: &str, wrap: Option<Wrap>) {
    let clock = Clock::from_env();
    println!("bench-info\tclock\t{}", clock.name());
    if let Some(iters) = std::env::var("LEAKCHECK_BENCH_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        let filter = std::env::args()
            .skip(1)
            .find(|arg| !arg.starts_with('-'))
            .unwrap_or_default();
        for workload in Workload::ALL {
            for threads in [1, 2] {
                if format!("{label}/{}/{threads}t", workload.name()).contains(&filter) {
                    let time = sample(workload, threads, iters, wrap, clock);
                    let ns = time.as_nanos() as f64 / iters as f64;
                    println!("bench-result\t{}\t{threads}\t{ns:.2}", workload.name());
                }
            }
        }
        return;
    }
    // (iters, time) of each call, in order; the last `SAMPLES` of a benchmark are its samples.
    let samples: Mutex<Vec<(u64, Duration)>> = Mutex::new(Vec::new());
    let mut results = Vec::new();
    let mut criterion = Criterion::default()
        .sample_size(SAMPLES)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1200))
        .nresamples(10_000)
        .without_plots()
        .configure_from_args();
    {
        let mut group = criterion.benchmark_group(label);
        group.sampling_mode(SamplingMode::Flat);
        for workload in Workload::ALL {
            for threads in [1, 2] {
                group.bench_function(format!("{}/{threads}t", workload.name()), |b| {
                    b.iter_custom(|iters| {
                        let time = sample(workload, threads, iters, wrap, clock);
                        samples.lock().unwrap().push((iters, time));
                        time
                    })
                });
                let mut taken = samples.lock().unwrap();
                let last = &taken[taken.len().saturating_sub(SAMPLES)..];
                let mut per_op: Vec<f64> = last
                    .iter()
                    .map(|&(n, t)| t.as_nanos() as f64 / n as f64)
                    .collect();
                per_op.sort_by(f64::total_cmp);
                if !per_op.is_empty() {
                    results.push((workload.name(), threads, per_op[per_op.len() / 2]));
                }
                taken.clear();
            }
        }
        group.finish();
    }
    criterion.final_summary();
    for (workload, threads, ns) in results {
        println!("bench-result\t{workload}\t{threads}\t{ns:.2}");
    }
}
