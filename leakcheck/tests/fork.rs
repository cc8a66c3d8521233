//! Process lifecycle: `fork()` inside a check while another thread allocates (the child must
//! not deadlock on a lock that thread held), and allocations and checks in `atexit` handlers.

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// This package's tests build at opt-level 3, where LLVM removes allocations nobody reads:
// `black_box` keeps them real.
#[inline(never)]
fn leak_bytes(n: usize) {
    std::mem::forget(std::hint::black_box(vec![0u8; n]));
}

#[inline(never)]
fn churn(n: usize) {
    drop(std::hint::black_box(vec![7u8; n]));
}

/// One test at a time: a child forked while another test's thread builds a report deadlocks
/// (see `fork_while_another_thread_builds_reports`), so no two tests here overlap.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A check that counts every block the body left live, whether or not a stale copy of its
/// address makes it look reachable to the conservative root scan (in an `atexit` handler on
/// the main thread a plain check saw its 42-byte leak as "still reachable" in 4 runs of 6).
fn check_every_block(body: impl FnMut()) -> leakcheck::Report {
    leakcheck::Check::new()
        .reachable(leakcheck::Reachable::Fail)
        .run(body)
}

/// Exit codes of the forked child.
const CHILD_OK: i32 = 0;
const CHILD_WRONG_REPORT: i32 = 2;
const CHILD_PANICKED: i32 = 3;

/// What the child does: allocate, run a small check with a known leak, and leave with
/// `_exit` (no atexit handlers, no destructors: the parent's state is not the child's to
/// tear down).
fn in_child() -> ! {
    let code = std::panic::catch_unwind(|| {
        let boxed = std::hint::black_box(Box::new([1u8; 100]));
        drop(boxed);
        churn(5000);
        let report = check_every_block(|| {
            churn(300);
            leak_bytes(37);
        });
        if report.leaked_bytes() == 37 && report.leaked_allocations() == 1 {
            CHILD_OK
        } else {
            CHILD_WRONG_REPORT
        }
    })
    .unwrap_or(CHILD_PANICKED);
    // SAFETY: `_exit` ends the process at once; it is async-signal-safe.
    unsafe { libc::_exit(code) }
}

/// Waits up to `limit` for `pid`; kills it and says so if it does not end.
fn wait_for_child(pid: libc::pid_t, limit: Duration) -> Result<i32, String> {
    let deadline = Instant::now() + limit;
    loop {
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is valid for writes.
        let waited = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if waited == pid {
            return if libc::WIFEXITED(status) {
                Ok(libc::WEXITSTATUS(status))
            } else {
                Err(format!("child ended abnormally, wait status {status:#x}"))
            };
        }
        assert_eq!(waited, 0, "waitpid failed");
        if Instant::now() > deadline {
            // SAFETY: `pid` is our child, still running; it is reaped right after.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Err(format!(
                "child hung for {limit:?} (deadlock) and was killed"
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Where the allocating thread runs while the test forks.
#[derive(Clone, Copy, PartialEq)]
enum Worker {
    /// Started before the check, so untracked; the check makes every free of it look its
    /// block up in leakcheck's table, under a shard lock (reads only).
    Untracked,
    /// Started inside the check, so every allocation and free of it inserts into or removes
    /// from the table under a shard lock (and interns its stack under the index lock).
    Tracked,
}

fn allocate_until(stop: &AtomicBool, spins: &AtomicUsize) {
    let mut kept: Vec<Vec<u8>> = Vec::with_capacity(64);
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        i = i.wrapping_add(1);
        kept.push(std::hint::black_box(vec![i as u8; 16 + i % 500]));
        if kept.len() == 64 {
            kept.clear();
        }
        spins.fetch_add(1, Ordering::Relaxed);
    }
}

/// Forks `rounds` times inside a check while a worker thread allocates in a tight loop; each
/// child allocates, runs a check and exits (see `in_child`) within 10 s or fails the test.
fn fork_under_load(worker: Worker, rounds: usize) {
    let _serial = serial();
    // Resolve one leak's stack before forking, so each child finds the symbolizer's caches
    // warm instead of loading debug info again.
    let warm = check_every_block(|| leak_bytes(37));
    assert_eq!(warm.leaked_bytes(), 37, "{warm}");
    let started = Instant::now();
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let spins = Arc::new(AtomicUsize::new(0));
        let spawn = || {
            let (stop, spins) = (stop.clone(), spins.clone());
            std::thread::spawn(move || allocate_until(&stop, &spins))
        };
        let mut early = (worker == Worker::Untracked).then(spawn);
        let mut outcome = Ok(CHILD_OK);
        let report = leakcheck::check(|| {
            let handle = early.take().unwrap_or_else(spawn);
            // Fork mid-stream, at a different point of the worker's loop each round.
            let target = spins.load(Ordering::Relaxed) + 100 + round * 37;
            while spins.load(Ordering::Relaxed) < target {
                std::hint::spin_loop();
            }
            // SAFETY: the child only allocates, runs a check and `_exit`s (see `in_child`).
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                in_child();
            }
            stop.store(true, Ordering::Relaxed);
            handle.join().unwrap();
            outcome = wait_for_child(pid, Duration::from_secs(10));
        });
        match outcome {
            Ok(CHILD_OK) => {}
            Ok(code) => panic!("round {round}: the child exited with {code}"),
            Err(error) => panic!("round {round}: {error}"),
        }
        assert!(report.is_clean(), "round {round}: {report}");
    }
    eprintln!("fork: {rounds} rounds in {:.2?}", started.elapsed());
}

#[test]
fn fork_inside_a_check_while_another_thread_allocates() {
    fork_under_load(Worker::Untracked, 50);
}

#[test]
fn fork_inside_a_check_while_a_tracked_thread_allocates() {
    // The torn shard this guards against (a child panicked on `len -= 1` in
    // `Slots::remove_at`, then hung on the shard lock it held) was seen about once in 500
    // rounds before children abandoned the shards locked at the fork. CI runs 150 rounds (each
    // spins for a moving target, ~0.15 s on a loaded 2-core machine);
    // LEAKCHECK_FORK_ROUNDS=5000 hunts longer.
    let rounds = std::env::var("LEAKCHECK_FORK_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(150);
    fork_under_load(Worker::Tracked, rounds);
}

#[test]
fn fork_outside_checks_while_a_checked_thread_allocates() {
    let _serial = serial();
    // Warm the symbolizer first: under nextest this test has a process of its own, and every
    // child would otherwise load the debug info again (500 times: minutes on a loaded machine).
    let warm = check_every_block(|| leak_bytes(37));
    assert_eq!(warm.leaked_bytes(), 37, "{warm}");
    let stop = Arc::new(AtomicBool::new(false));
    let spins = Arc::new(AtomicUsize::new(0));
    let worker = {
        let (stop, spins) = (stop.clone(), spins.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let report = leakcheck::check(|| {
                    for i in 0..200 {
                        churn(1 + i);
                        spins.fetch_add(1, Ordering::Relaxed);
                    }
                });
                assert!(report.is_clean(), "{report}");
            }
        })
    };
    let mut failures = Vec::new();
    for round in 0..500 {
        let target = spins.load(Ordering::Relaxed) + 50 + round * 13 % 1000;
        while spins.load(Ordering::Relaxed) < target {
            std::hint::spin_loop();
        }
        // SAFETY: as above.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            in_child();
        }
        match wait_for_child(pid, Duration::from_secs(10)) {
            Ok(CHILD_OK) => {}
            Ok(code) => failures.push(format!("round {round}: the child exited with {code}")),
            Err(error) => failures.push(format!("round {round}: {error}")),
        }
    }
    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();
    assert!(failures.is_empty(), "{failures:#?}");
}

const ATEXIT_CHILD: &str = "LEAKCHECK_FORK_ATEXIT_CHILD";

/// Runs when the child test binary exits: allocates, frees, and runs a check.
extern "C" fn at_exit() {
    let outcome = std::panic::catch_unwind(|| {
        churn(1000);
        let text = std::hint::black_box(format!("{}-{}", "at", "exit"));
        drop(text);
        let report = check_every_block(|| {
            churn(100);
            leak_bytes(42);
        });
        (report.leaked_bytes(), report.leaked_allocations())
    });
    let line = match outcome {
        Ok((bytes, blocks)) => format!("atexit check: {bytes} bytes in {blocks} allocations\n"),
        Err(_) => "atexit check: panicked\n".to_owned(),
    };
    // Straight to the file descriptor: std's stdout may already be flushed and gone.
    // SAFETY: writes `line`'s bytes to fd 2.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

#[test]
fn allocations_and_checks_in_atexit_handlers() {
    if std::env::var_os(ATEXIT_CHILD).is_some() {
        // SAFETY: `at_exit` is an `extern "C" fn()` that never unwinds (it catches panics).
        assert_eq!(unsafe { libc::atexit(at_exit) }, 0);
        // Something for the handler's check to share the process with.
        let report = leakcheck::check(|| churn(10));
        assert!(report.is_clean(), "{report}");
        return;
    }
    let _serial = serial();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "allocations_and_checks_in_atexit_handlers",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ATEXIT_CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "status {:?}; stderr:\n{stderr}",
        output.status
    );
    assert!(
        stderr.contains("atexit check: 42 bytes in 1 allocations"),
        "stderr:\n{stderr}"
    );
}

/// A leak whose stack is one of 4096 distinct ones: `bits` picks the call site at each of
/// twelve levels, so every report resolves a stack the symbolizer has not seen.
#[inline(never)]
fn leak_along(bits: u64, depth: u32) {
    if depth == 0 {
        leak_bytes(1);
    } else if bits & 1 == 0 {
        left(bits >> 1, depth - 1);
    } else {
        right(bits >> 1, depth - 1);
    }
}

#[inline(never)]
fn left(bits: u64, depth: u32) {
    leak_along(bits, depth);
    std::hint::black_box(1u8);
}

#[inline(never)]
fn right(bits: u64, depth: u32) {
    leak_along(bits, depth);
    std::hint::black_box(2u16);
}

#[test]
fn fork_while_another_thread_builds_reports() {
    let _serial = serial();
    let warm = check_every_block(|| leak_bytes(37));
    assert_eq!(warm.leaked_bytes(), 37, "{warm}");
    let stop = Arc::new(AtomicBool::new(false));
    let reports = Arc::new(AtomicUsize::new(0));
    let worker = {
        let (stop, reports) = (stop.clone(), reports.clone());
        std::thread::spawn(move || {
            let mut bits = 0u64;
            while !stop.load(Ordering::Relaxed) {
                bits += 1;
                let report = leakcheck::check(|| leak_along(bits, 12));
                assert_eq!(report.groups().len(), 1, "{report}");
                reports.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let mut failures = Vec::new();
    for round in 0..50 {
        let target = reports.load(Ordering::Relaxed) + 1 + round % 3;
        while reports.load(Ordering::Relaxed) < target {
            std::hint::spin_loop();
        }
        // Somewhere inside the next report's symbolisation.
        std::thread::sleep(Duration::from_micros(50 * (round as u64 % 7)));
        // SAFETY: as above.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            in_child();
        }
        match wait_for_child(pid, Duration::from_secs(10)) {
            Ok(CHILD_OK) => {}
            Ok(code) => failures.push(format!("round {round}: the child exited with {code}")),
            Err(error) => failures.push(format!("round {round}: {error}")),
        }
    }
    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();
    assert!(failures.is_empty(), "{failures:#?}");
}
