//! What a checked test costs before and after its body: per process, as cargo-nextest runs
//! tests, and per check, as `cargo test` runs them.
//!
//! One binary installs leakcheck and has three test bodies, each run plainly (what the
//! allocator alone costs) and as `#[leakcheck]` runs it (through `__private::run_test`, the
//! function the attribute expands to):
//!
//! - `empty`: allocates nothing;
//! - `few_hundred`: allocates 300 boxes and a `Vec` of them, and frees them;
//! - `keeps`: `few_hundred`, then swaps a fresh 64-byte block into a static, freeing the one
//!   the previous run left: the check ends with a block reachable from a static, so its end
//!   scans the roots (a test that fills a lazy static or a cache does the same).
//!
//! `process/{plain,checked}/{body}` spawns this binary as nextest spawns a test binary
//! (`<bin> --exact NAME --nocapture`, with nextest's environment): the child does what libtest
//! does for one test (a thread named after the test runs it; the main thread waits) and exits.
//! Criterion times the child's wall time, which is what a nextest run waits for; the summary
//! also gives the child's CPU time (user + system, from `wait4`). Leakcheck's cost per test is
//! the checked row less the plain row of the same body.
//!
//! `check/{plain,checked}/{body}` runs one test per iteration inside this process, on a fresh
//! thread named after the test, as libtest does under `cargo test --test-threads=1`; criterion
//! times the process's CPU time. Leakcheck's cost per check is again checked less plain.
//!
//! At the end one `bench-fixed` line per benchmark gives the median over criterion's samples,
//! and one `bench-fixed-overhead` line per body and kind the checked median less the plain one.
//!
//! Release: `cargo bench -p leakcheck-suite --bench fixed_cost`. Debug with the manual's
//! `opt-level = 3` for leakcheck and gimli (this workspace's `[profile.dev.package.*]`):
//! `cargo bench -p leakcheck-suite --profile dev --bench fixed_cost`.

use criterion::{Criterion, SamplingMode};

#[path = "common/per_test.rs"]
mod per_test;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::Duration;

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

/// Set in the environment of a child process: run one test and exit.
const CHILD: &str = "LEAKCHECK_BENCH_FIXED_CHILD";

const BODIES: [(&str, fn()); 3] = [
    ("empty", empty),
    ("few_hundred", few_hundred),
    ("keeps", keeps),
];

fn empty() {}

#[inline(never)]
fn few_hundred() {
    let boxes: Vec<Box<u64>> = (0..300u64).map(Box::new).collect();
    black_box(&boxes);
}

static KEPT: Mutex<Option<Vec<u8>>> = Mutex::new(None);

#[inline(never)]
fn keeps() {
    few_hundred();
    let fresh = black_box(vec![7u8; 64]);
    let old = KEPT.lock().unwrap().replace(fresh);
    drop(old);
}

/// The CPU time this process has used, all threads.
fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Median of the per-iteration times of a benchmark's samples, in microseconds.
fn median_us(samples: &[(u64, Duration)]) -> f64 {
    per_test::median_per_iteration(samples).map_or(f64::NAN, |t| t.as_secs_f64() * 1e6)
}

const SAMPLES: usize = 30;

fn main() {
    if std::env::var_os(CHILD).is_some() {
        per_test::child("fixed_cost", &BODIES);
    }
    if std::env::var_os("NEXTEST_EXECUTION_MODE").is_some() {
        panic!("fixed_cost: run it with `cargo bench`, not under nextest (the per-check rows need a process that is not one test)");
    }
    let exe = std::env::current_exe().expect("the benchmark knows its own path");
    // (benchmark, iterations, time) of every timed call: wall and CPU of processes, CPU of
    // checks.
    let samples: Mutex<Vec<(String, u64, Duration)>> = Mutex::new(Vec::new());
    let mut criterion = Criterion::default()
        .sample_size(SAMPLES)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .without_plots()
        .configure_from_args();
    {
        let mut group = criterion.benchmark_group("process");
        group.sampling_mode(SamplingMode::Flat);
        for (body, _) in BODIES {
            for kind in ["plain", "checked"] {
                let id = format!("{kind}/{body}");
                let name = format!("{kind}_{body}");
                group.bench_function(&id, |b| {
                    b.iter_custom(|iters| {
                        let (mut wall, mut cpu) = (Duration::ZERO, Duration::ZERO);
                        for _ in 0..iters {
                            let (w, c) = per_test::spawn_test(&exe, CHILD, &[], &name);
                            wall += w;
                            cpu += c;
                        }
                        let mut taken = samples.lock().unwrap();
                        taken.push((format!("process/{id}/wall"), iters, wall));
                        taken.push((format!("process/{id}/cpu"), iters, cpu));
                        wall
                    })
                });
            }
        }
        group.finish();
    }
    {
        let mut group = criterion.benchmark_group("check");
        group.sampling_mode(SamplingMode::Flat);
        for (body_name, body) in BODIES {
            for (kind, is_checked) in [("plain", false), ("checked", true)] {
                let id = format!("{kind}/{body_name}");
                let name: &'static str = Box::leak(format!("{kind}_{body_name}").into_boxed_str());
                group.bench_function(&id, |b| {
                    b.iter_custom(|iters| {
                        let start = process_cpu_time();
                        for _ in 0..iters {
                            assert!(
                                per_test::run_one(name, is_checked, body),
                                "test `{name}` failed"
                            );
                        }
                        let cpu = process_cpu_time().saturating_sub(start);
                        samples
                            .lock()
                            .unwrap()
                            .push((format!("check/{id}/cpu"), iters, cpu));
                        cpu
                    })
                });
            }
        }
        group.finish();
    }
    criterion.final_summary();
    // Criterion's warm-up calls come first; the last SAMPLES calls of each are its samples.
    let taken = samples.into_inner().unwrap();
    let median = |id: &str| {
        let of_id: Vec<(u64, Duration)> = taken
            .iter()
            .filter(|(i, _, _)| i == id)
            .map(|&(_, n, t)| (n, t))
            .collect();
        (!of_id.is_empty()).then(|| median_us(&of_id[of_id.len().saturating_sub(SAMPLES)..]))
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "bench-fixed-info\tload\t{}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "bench-fixed-info\tunwinder\t{}",
        leakcheck::__private::unwinder()
    );
    for (group, clocks) in [("process", &["wall", "cpu"][..]), ("check", &["cpu"][..])] {
        for (body, _) in BODIES {
            for clock in clocks {
                let plain = median(&format!("{group}/plain/{body}/{clock}"));
                let checked = median(&format!("{group}/checked/{body}/{clock}"));
                for (kind, value) in [("plain", plain), ("checked", checked)] {
                    if let Some(us) = value {
                        println!("bench-fixed\t{group}\t{kind}\t{body}\t{clock}\t{us:.1} us");
                    }
                }
                if let (Some(plain), Some(checked)) = (plain, checked) {
                    println!(
                        "bench-fixed-overhead\t{group}\t{body}\t{clock}\t{:.1} us",
                        checked - plain
                    );
                }
            }
        }
    }
}
