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
//! `opt-level = 3` for leakcheck and backtrace (this workspace's `[profile.dev.package.*]`,
//! which also optimise gimli): `cargo bench -p leakcheck-suite --profile dev --bench fixed_cost`.

use criterion::{Criterion, SamplingMode};
use std::hint::black_box;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// Runs `body` as `#[leakcheck]` would: the test fails (panics) if the check finds a leak.
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

/// The test named `name` (`plain_empty`, `checked_keeps`, ...): whether it is checked, and its
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

/// One test, as libtest runs it: on a thread named after it, which this thread waits for.
fn run_one(name: &'static str, is_checked: bool, body: fn()) -> bool {
    std::thread::Builder::new()
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
        .is_ok()
}

/// The child process: `--exact NAME` names the test.
fn child() -> ! {
    let args: Vec<String> = std::env::args().collect();
    let name = args
        .iter()
        .position(|a| a == "--exact")
        .and_then(|i| args.get(i + 1))
        .expect("the child is run with --exact NAME");
    let Some((is_checked, body)) = test_named(name) else {
        eprintln!("fixed_cost: no test named `{name}`");
        std::process::exit(2);
    };
    let name: &'static str = Box::leak(name.clone().into_boxed_str());
    std::process::exit(if run_one(name, is_checked, body) {
        0
    } else {
        101
    })
}

/// Wall and CPU time of one child process running `name`.
// The child is reaped by `wait4`, which also gives its CPU time; `Child::wait` cannot.
#[allow(clippy::zombie_processes)]
fn spawn_test(exe: &std::path::Path, name: &str) -> (Duration, Duration) {
    let start = Instant::now();
    let child = Command::new(exe)
        .args(["--exact", name, "--nocapture"])
        .env(CHILD, "1")
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
         `{CHILD}=1 NEXTEST=1 NEXTEST_EXECUTION_MODE=process-per-test {} --exact {name}` to see why",
        exe.display()
    );
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (wall, time(usage.ru_utime) + time(usage.ru_stime))
}

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
    let mut per_iter: Vec<f64> = samples
        .iter()
        .map(|&(n, t)| t.as_nanos() as f64 / n as f64 / 1000.0)
        .collect();
    per_iter.sort_by(f64::total_cmp);
    per_iter
        .get(per_iter.len() / 2)
        .copied()
        .unwrap_or(f64::NAN)
}

const SAMPLES: usize = 30;

fn main() {
    if std::env::var_os(CHILD).is_some() {
        child();
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
                            let (w, c) = spawn_test(&exe, &name);
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
                            assert!(run_one(name, is_checked, body), "test `{name}` failed");
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
