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
//! `opt-level = 3` for leakcheck and backtrace: `cargo bench -p leakcheck-suite --profile dev
//! --bench caught_panic`.

use criterion::{Criterion, SamplingMode};
use std::hint::black_box;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// Runs `body` as `#[leakcheck]` would: the test fails if the check finds a leak.
fn checked(name: &'static str, body: fn()) {
    leakcheck::__private::run_test(
        &leakcheck::__private::TestMeta {
            fn_name: name,
            module_path: module_path!(),
            file: file!(),
            line: line!(),
            column: column!(),
            should_panic: false,
            options: leakcheck::__private::Options::new(),
        },
        body,
    )
}

/// The test named `name` (`plain_one`, `checked_ten`, ...): whether it is checked, and its
/// body.
fn test_named(name: &str) -> Option<(bool, fn())> {
    let (kind, body) = name.split_once('_')?;
    let checked = match kind {
        "plain" => false,
        "checked" => true,
        _ => return None,
    };
    let (_, body) = BODIES.iter().find(|(b, _)| *b == body)?;
    Some((checked, *body))
}

/// The child process: `--exact NAME` names the test, run as libtest runs it, on a thread named
/// after it that the main thread waits for.
fn child() -> ! {
    let args: Vec<String> = std::env::args().collect();
    let name = args
        .iter()
        .position(|a| a == "--exact")
        .and_then(|i| args.get(i + 1))
        .expect("the child is run with --exact NAME");
    let Some((is_checked, body)) = test_named(name) else {
        eprintln!("caught_panic: no test named `{name}`");
        std::process::exit(2);
    };
    let name: &'static str = Box::leak(name.clone().into_boxed_str());
    let passed = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            if is_checked {
                checked(name, body)
            } else {
                body()
            }
        })
        .expect("a test thread starts")
        .join()
        .is_ok();
    std::process::exit(if passed { 0 } else { 101 })
}

/// Wall and CPU time of one child process running `name`.
// The child is reaped by `wait4`, which also gives its CPU time; `Child::wait` cannot.
#[allow(clippy::zombie_processes)]
fn spawn_test(exe: &std::path::Path, name: &str) -> (Duration, Duration) {
    let start = Instant::now();
    let child = Command::new(exe)
        .args(["--exact", name, "--nocapture"])
        .env(CHILD, "1")
        .env("RUST_BACKTRACE", "1")
        .env("NEXTEST", "1")
        .env("NEXTEST_EXECUTION_MODE", "process-per-test")
        .env("NEXTEST_TEST_NAME", name)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the benchmark can run itself");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value for `wait4` to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet waited for; `status` and `usage` are writable.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert_eq!(waited, pid, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "test `{name}` failed in its own process (status {status:#x}): run \
         `{CHILD}=1 RUST_BACKTRACE=1 NEXTEST=1 NEXTEST_EXECUTION_MODE=process-per-test {} --exact {name}` \
         to see why",
        exe.display()
    );
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (wall, time(usage.ru_utime) + time(usage.ru_stime))
}

/// Median of the per-iteration times of a benchmark's samples, in milliseconds.
fn median_ms(samples: &[(u64, Duration)]) -> f64 {
    let mut per_iter: Vec<f64> = samples
        .iter()
        .map(|&(n, t)| t.as_secs_f64() * 1000.0 / n as f64)
        .collect();
    per_iter.sort_by(f64::total_cmp);
    per_iter
        .get(per_iter.len() / 2)
        .copied()
        .unwrap_or(f64::NAN)
}

const SAMPLES: usize = 10;

fn main() {
    if std::env::var_os(CHILD).is_some() {
        child();
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
                        let (w, c) = spawn_test(&exe, &name);
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
