//! What a checked test that panics and catches the panic costs under `RUST_BACKTRACE=1`, against
//! the same test without a check.
//!
//! Under `RUST_BACKTRACE=1` std's panic hook captures and symbolises a backtrace: the first time
//! in a process it parses the binary's debug info, tens of thousands of allocations, most of
//! them kept in std's symbolizer cache. This bench runs each test in a process of its own, as
//! cargo-nextest does and as the first panic of a `cargo test` process is: it spawns this binary
//! as nextest spawns a test binary (`<bin> --exact NAME --nocapture`, with nextest's environment
//! and `RUST_BACKTRACE=1`), and the child runs one test on a thread named after it, as libtest
//! does, and exits. Criterion times the child's wall time; the summary also gives its CPU time
//! (user + system, from `wait4`).
//!
//! Tests, each run plainly (`plain_*`: the allocator installed, no check) and as `#[leakcheck]`
//! runs it (`checked_*`, through `__private::run_test`, the function the attribute expands to):
//!
//! - `one`: one caught panic;
//! - `ten`: ten caught panics (the first parses the debug info, the others reuse it);
//! - `unwinding`: one caught panic whose unwinding drops a vector of 300 boxes the body made.
//!
//! At the end one `bench-panic` line per benchmark gives the median over criterion's samples,
//! and one `bench-panic-ratio` line per test and clock the checked median over the plain one.
//!
//! Release: `cargo bench -p leakcheck-suite --bench caught_panic`. Debug with the manual's
//! `opt-level = 3` for leakcheck and gimli: `cargo bench -p leakcheck-suite --profile dev
//! --bench caught_panic`.

use criterion::{Criterion, SamplingMode};

#[path = "common/per_test.rs"]
mod per_test;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::Duration;

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

/// Set in the environment of a child process: run one test and exit.
const CHILD: &str = "LEAKCHECK_BENCH_PANIC_CHILD";

const BODIES: [(&str, fn()); 3] = [("one", one), ("ten", ten), ("unwinding", unwinding)];

#[inline(never)]
fn caught() {
    let caught = std::panic::catch_unwind(|| panic!("a panic the test expects"));
    assert!(black_box(caught).is_err());
}

fn one() {
    caught();
}

fn ten() {
    for _ in 0..10 {
        caught();
    }
}

fn unwinding() {
    let caught = std::panic::catch_unwind(|| {
        let boxes: Vec<Box<u64>> = (0..300u64).map(Box::new).collect();
        black_box(&boxes);
        panic!(
            "a panic the test expects, with {} boxes to drop",
            boxes.len()
        );
    });
    assert!(black_box(caught).is_err());
}

/// Median of the per-iteration times of a benchmark's samples, in milliseconds.
fn median_ms(samples: &[(u64, Duration)]) -> f64 {
    per_test::median_per_iteration(samples).map_or(f64::NAN, |t| t.as_secs_f64() * 1e3)
}

const SAMPLES: usize = 10;

fn main() {
    if std::env::var_os(CHILD).is_some() {
        per_test::child("caught_panic", &BODIES);
    }
    if std::env::var_os("NEXTEST_EXECUTION_MODE").is_some() {
        panic!("caught_panic: run it with `cargo bench`, not under nextest");
    }
    let exe = std::env::current_exe().expect("the benchmark knows its own path");
    // (benchmark, iterations, time) of every timed call.
    let samples: Mutex<Vec<(String, u64, Duration)>> = Mutex::new(Vec::new());
    let mut criterion = Criterion::default()
        .sample_size(SAMPLES)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5))
        .without_plots()
        .configure_from_args();
    let mut group = criterion.benchmark_group("caught_panic");
    group.sampling_mode(SamplingMode::Flat);
    for (body, _) in BODIES {
        for kind in ["plain", "checked"] {
            let id = format!("{kind}/{body}");
            let name = format!("{kind}_{body}");
            group.bench_function(&id, |b| {
                b.iter_custom(|iters| {
                    let (mut wall, mut cpu) = (Duration::ZERO, Duration::ZERO);
                    for _ in 0..iters {
                        let (w, c) =
                            per_test::spawn_test(&exe, CHILD, &[("RUST_BACKTRACE", "1")], &name);
                        wall += w;
                        cpu += c;
                    }
                    let mut taken = samples.lock().unwrap();
                    taken.push((format!("{id}/wall"), iters, wall));
                    taken.push((format!("{id}/cpu"), iters, cpu));
                    wall
                })
            });
        }
    }
    group.finish();
    criterion.final_summary();
    // Criterion's warm-up calls come first; the last SAMPLES calls of each are its samples.
    let taken = samples.into_inner().unwrap();
    let median = |id: &str| {
        let of_id: Vec<(u64, Duration)> = taken
            .iter()
            .filter(|(i, _, _)| i == id)
            .map(|&(_, n, t)| (n, t))
            .collect();
        (!of_id.is_empty()).then(|| median_ms(&of_id[of_id.len().saturating_sub(SAMPLES)..]))
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "bench-panic-info\tload\t{}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    for (body, _) in BODIES {
        for clock in ["wall", "cpu"] {
            let plain = median(&format!("plain/{body}/{clock}"));
            let checked = median(&format!("checked/{body}/{clock}"));
            for (kind, value) in [("plain", plain), ("checked", checked)] {
                if let Some(ms) = value {
                    println!("bench-panic\t{kind}\t{body}\t{clock}\t{ms:.1} ms");
                }
            }
            if let (Some(plain), Some(checked)) = (plain, checked) {
                println!(
                    "bench-panic-ratio\t{body}\t{clock}\t{:.2}x",
                    checked / plain
                );
            }
        }
    }
}
