//! One test per process, as cargo-nextest runs tests: the pieces the per-test benchmarks
//! (`fixed_cost`, `caught_panic`) share. Each names its tests `plain_<body>` and
//! `checked_<body>` over a table of bodies, spawns itself with `--exact NAME` and an
//! environment variable of its own that makes the copy a child, and reads the child's wall
//! and CPU time.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `body` as `#[leakcheck]` would: the test fails (panics) if the check finds a leak.
pub fn checked(name: &'static str, body: fn()) {
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

/// The test named `name` (`plain_one`, `checked_keeps`, ...) among `bodies`: whether it is
/// checked, and its body.
pub fn test_named(bodies: &[(&str, fn())], name: &str) -> Option<(bool, fn())> {
    let (kind, body) = name.split_once('_')?;
    let checked = match kind {
        "plain" => false,
        "checked" => true,
        _ => return None,
    };
    let (_, body) = bodies.iter().find(|(b, _)| *b == body)?;
    Some((checked, *body))
}

/// One test, as libtest runs it: on a thread named after it, which this thread waits for.
pub fn run_one(name: &'static str, is_checked: bool, body: fn()) -> bool {
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

/// The child process of benchmark `bench`: `--exact NAME` names the test among `bodies`.
pub fn child(bench: &str, bodies: &[(&str, fn())]) -> ! {
    let args: Vec<String> = std::env::args().collect();
    let name = args
        .iter()
        .position(|a| a == "--exact")
        .and_then(|i| args.get(i + 1))
        .expect("the child is run with --exact NAME");
    let Some((is_checked, body)) = test_named(bodies, name) else {
        eprintln!("{bench}: no test named `{name}`");
        std::process::exit(2);
    };
    let name: &'static str = Box::leak(name.clone().into_boxed_str());
    std::process::exit(if run_one(name, is_checked, body) {
        0
    } else {
        101
    })
}

/// Wall and CPU time of one child process running `name`: `exe` run with `child_var=1`,
/// nextest's environment and `env`.
// The child is reaped by `wait4`, which also gives its CPU time; `Child::wait` cannot.
#[allow(clippy::zombie_processes)]
pub fn spawn_test(
    exe: &std::path::Path,
    child_var: &str,
    env: &[(&str, &str)],
    name: &str,
) -> (Duration, Duration) {
    let start = Instant::now();
    let child = Command::new(exe)
        .args(["--exact", name, "--nocapture"])
        .env(child_var, "1")
        .envs(env.iter().copied())
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
    let shown_env: String = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "test `{name}` failed in its own process (status {status:#x}): run \
         `{child_var}=1 {shown_env}NEXTEST=1 NEXTEST_EXECUTION_MODE=process-per-test {} --exact {name}` \
         to see why",
        exe.display()
    );
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (wall, time(usage.ru_utime) + time(usage.ru_stime))
}

/// Median of the per-iteration times of a benchmark's samples (iterations, time).
pub fn median_per_iteration(samples: &[(u64, Duration)]) -> Option<Duration> {
    let mut per_iter: Vec<Duration> = samples
        .iter()
        .map(|&(n, t)| t / u32::try_from(n.max(1)).unwrap_or(u32::MAX))
        .collect();
    per_iter.sort();
    per_iter.get(per_iter.len() / 2).copied()
}
