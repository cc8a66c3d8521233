//! `leakcheck::Session`: snapshots by call site, diffs, the final report, one session per
//! process; `leakcheck::stats()` with exact counts (feature `stats`); `LEAKCHECK_AT_EXIT`.
//!
//! A session tracks the whole process, so the session tests take turns (`SERIAL`) and look
//! their own call sites up by name: the test harness allocates on other threads meanwhile.
//! Figures that must be exact for the whole process (`stats()`, the at-exit report) come from
//! a child process running one test, where nothing else allocates.

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

use leakcheck::{Kind, Session};
use std::hint::black_box;
use std::process::Command;
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Release builds without debug info resolve function names but no file:line.
fn has_line_tables() -> bool {
    cfg!(debug_assertions)
}

fn first_function(frames: &[leakcheck::Frame]) -> &str {
    frames
        .first()
        .and_then(|f| f.function.as_deref())
        .unwrap_or("")
}

// This package's tests build at opt-level 3, where LLVM removes allocations nobody reads:
// `black_box` keeps them real, `inline(never)` keeps each call site a frame of its own.
#[inline(never)]
fn fill_a(cache: &mut Vec<Vec<u8>>, n: usize) {
    for _ in 0..n {
        cache.push(black_box(vec![1u8; 200]));
    }
}
/// The line of `vec![1u8; 200]` above.
const FILL_A_LINE: u32 = line!() - 4;

#[inline(never)]
fn fill_b(cache: &mut Vec<Vec<u8>>, n: usize) {
    for _ in 0..n {
        cache.push(black_box(vec![2u8; 50]));
    }
}

#[inline(never)]
fn scratch() -> Vec<u8> {
    black_box(vec![3u8; 700])
}

#[test]
fn snapshot_groups_live_blocks_by_call_site() {
    let _serial = serial();
    // Room reserved before the session: the pushes themselves allocate nothing.
    let mut cache: Vec<Vec<u8>> = Vec::with_capacity(64);
    let session = Session::start();
    fill_a(&mut cache, 4);
    fill_b(&mut cache, 6);
    let snapshot = session.snapshot();
    let site = |name: &str| {
        snapshot
            .sites()
            .iter()
            .find(|s| first_function(s.frames()) == name)
            .unwrap_or_else(|| panic!("no site {name} in\n{snapshot}"))
            .clone()
    };
    let a = site("session::fill_a");
    assert_eq!((a.bytes(), a.blocks()), (800, 4), "{snapshot}");
    let b = site("session::fill_b");
    assert_eq!((b.bytes(), b.blocks()), (300, 6), "{snapshot}");
    let frame = &a.frames()[0];
    if has_line_tables() {
        assert!(
            frame.file.as_ref().unwrap().ends_with("tests/session.rs"),
            "{snapshot}"
        );
        assert_eq!(frame.line, Some(FILL_A_LINE), "{snapshot}");
    }
    assert!(snapshot.total_bytes() >= 1100, "{snapshot}");
    assert!(snapshot.total_blocks() >= 10, "{snapshot}");
    let text = snapshot.to_string();
    assert!(text.contains("session::fill_a"), "{text}");
    drop(session);
    drop(cache);
}

#[test]
fn diff_sorts_call_sites_by_growth_and_top_prints_their_stacks() {
    let _serial = serial();
    let mut cache: Vec<Vec<u8>> = Vec::with_capacity(64);
    let session = Session::start();
    let temporary = scratch();
    let before = session.snapshot();
    fill_b(&mut cache, 10);
    fill_a(&mut cache, 3);
    drop(temporary);
    let after = session.snapshot();
    let diff = after.diff(&before);
    let position = |name: &str| {
        diff.sites()
            .iter()
            .position(|s| first_function(s.frames()) == name)
            .unwrap_or_else(|| panic!("no site {name} in\n{diff}"))
    };
    let (a, b, gone) = (
        position("session::fill_a"),
        position("session::fill_b"),
        position("session::scratch"),
    );
    let a_site = &diff.sites()[a];
    assert_eq!((a_site.bytes_delta(), a_site.blocks_delta()), (600, 3));
    assert_eq!((a_site.bytes(), a_site.blocks()), (600, 3));
    let b_site = &diff.sites()[b];
    assert_eq!((b_site.bytes_delta(), b_site.blocks_delta()), (500, 10));
    let gone_site = &diff.sites()[gone];
    assert_eq!(
        (
            gone_site.bytes_delta(),
            gone_site.blocks_delta(),
            gone_site.bytes()
        ),
        (-700, -1, 0)
    );
    // tracemalloc's order: the largest absolute change in bytes first.
    assert!(gone < a && a < b, "{diff}");
    assert_eq!(
        diff.bytes_delta(),
        after.total_bytes() as i64 - before.total_bytes() as i64
    );
    let top = diff.top(diff.sites().len()).to_string();
    assert!(top.starts_with("leakcheck: top "), "{top}");
    assert!(
        top.contains("+600 bytes, +3 allocations (now 600 bytes in 3 allocations), allocated at:"),
        "{top}"
    );
    assert!(top.contains("-700 bytes, -1 allocation"), "{top}");
    assert!(top.contains("session::fill_a"), "{top}");
    if has_line_tables() {
        assert!(
            top.contains(&format!("tests/session.rs:{FILL_A_LINE}:")),
            "{top}"
        );
    }
    let top1 = diff.top(1).to_string();
    assert!(top1.contains("... and "), "{top1}");
    drop(session);
    drop(cache);
}

static HELD: Mutex<Option<Vec<u8>>> = Mutex::new(None);

#[inline(never)]
fn forget_buffer() {
    std::mem::forget(black_box(vec![4u8; 333]));
}

#[inline(never)]
fn hold_buffer() {
    *HELD.lock().unwrap() = Some(black_box(vec![5u8; 444]));
}

#[test]
fn finish_reports_what_is_left_with_its_kind() {
    let _serial = serial();
    let session = Session::start();
    forget_buffer();
    hold_buffer();
    let report = session.finish();
    let group = |name: &str| {
        report
            .groups()
            .iter()
            .find(|g| first_function(g.frames()) == name)
            .unwrap_or_else(|| panic!("no group {name} in\n{report}"))
    };
    let lost = group("session::forget_buffer");
    assert_eq!((lost.bytes(), lost.allocations()), (333, 1), "{report}");
    assert_eq!(lost.kind(), Kind::Definite, "{report}");
    let held = group("session::hold_buffer");
    assert_eq!((held.bytes(), held.allocations()), (444, 1), "{report}");
    assert_eq!(held.kind(), Kind::Reachable, "{report}");
    assert!(!report.is_clean());
    let text = report.to_string();
    assert!(
        text.starts_with(
            "leakcheck: memory leak in session started at leakcheck/tests/session.rs:"
        ) || text.starts_with("leakcheck: memory leak in session started at tests/session.rs:"),
        "{text}"
    );
    assert!(
        text.contains("333 bytes in 1 allocation definitely lost"),
        "{text}"
    );
    assert!(
        text.contains("444 bytes in 1 allocation still reachable"),
        "{text}"
    );
    HELD.lock().unwrap().take();
    // After finish, nothing is tracked and a new session can start.
    let again = Session::start();
    drop(again);
}

#[test]
fn one_session_per_process() {
    let _serial = serial();
    let first = Session::start();
    let second = std::panic::catch_unwind(Session::start);
    let message = second
        .expect_err("a second session must not start")
        .downcast::<String>()
        .unwrap();
    assert!(
        message.starts_with("leakcheck: Session::start(): another leakcheck::Session is running"),
        "{message}"
    );
    drop(first);
    drop(Session::start());
}

// ---- child processes: one test, a quiet process ----

/// libtest's main thread prints the test's name while the test starts: give it time to finish
/// before measuring the whole process.
#[cfg(feature = "stats")]
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(200));
}

fn is_child() -> bool {
    std::env::var_os("LEAKCHECK_SESSION_CHILD").is_some()
}

/// Runs one test of this binary in a process of its own.
fn child(test: &str, env: &[(&str, &str)]) -> (bool, String) {
    let (status, text) = child_status(test, env);
    (status == Some(0), text)
}

/// [`child`], with the exit status (`None` if a signal ended it).
fn child_status(test: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    // RUST_BACKTRACE=0: a panic's backtrace loads ~50 MB of debug info into the heap, and a
    // conservative scan of that much reachable memory can find a word that happens to point
    // into a leaked block (then reported as reachable).
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("LEAKCHECK_SESSION_CHILD", "1")
        .env("RUST_BACKTRACE", "0");
    for var in [
        "LEAKCHECK",
        "LEAKCHECK_OUT",
        "LEAKCHECK_FORMAT",
        "LEAKCHECK_AT_EXIT",
        "NEXTEST_EXECUTION_MODE",
    ] {
        cmd.env_remove(var);
    }
    for (key, value) in env {
        cmd.env(key, value);
    }
    let output = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[cfg(feature = "stats")]
#[test]
fn stats_count_exactly() {
    let (ok, output) = child("child_stats_count_exactly", &[]);
    assert!(ok && output.contains("1 passed"), "{output}");
}

#[cfg(feature = "stats")]
#[test]
fn child_stats_count_exactly() {
    if !is_child() {
        return;
    }
    settle();
    let mut keep: Vec<Box<[u8; 64]>> = Vec::with_capacity(16);
    let mut grow: Vec<u8> = Vec::with_capacity(100);
    let before = leakcheck::stats();
    for _ in 0..10 {
        keep.push(black_box(Box::new([0u8; 64])));
    }
    keep.truncate(6);
    grow.reserve_exact(1000);
    black_box(&grow);
    let after = leakcheck::stats();
    assert_eq!(after.allocations - before.allocations, 10);
    assert_eq!(after.deallocations - before.deallocations, 4);
    assert_eq!(after.reallocations - before.reallocations, 1);
    assert_eq!(after.bytes_allocated - before.bytes_allocated, 640 + 900);
    assert_eq!(after.bytes_deallocated - before.bytes_deallocated, 256);
    assert_eq!(after.live_blocks - before.live_blocks, 6);
    assert_eq!(after.live_bytes - before.live_bytes, 640 + 900 - 256);
    assert!(after.peak_live_bytes >= after.live_bytes);
    drop(keep);
    let freed = leakcheck::stats();
    // The six boxes left, and `keep`'s own buffer (allocated before `before`).
    assert_eq!(after.live_bytes - freed.live_bytes, 6 * 64 + 16 * 8);
    assert!(freed.peak_live_bytes >= after.live_bytes);
}

#[cfg(feature = "stats")]
#[test]
fn stats_keep_the_counts_of_exited_threads() {
    let (ok, output) = child("child_stats_keep_the_counts_of_exited_threads", &[]);
    assert!(ok && output.contains("1 passed"), "{output}");
}

#[cfg(feature = "stats")]
#[inline(never)]
fn leak_five() {
    for _ in 0..5 {
        std::mem::forget(black_box(vec![6u8; 100]));
    }
}

#[cfg(feature = "stats")]
#[test]
fn child_stats_keep_the_counts_of_exited_threads() {
    if !is_child() {
        return;
    }
    let delta = |leak: bool| {
        let before = leakcheck::stats();
        std::thread::spawn(move || {
            if leak {
                leak_five();
            }
        })
        .join()
        .unwrap();
        let after = leakcheck::stats();
        (
            after.allocations - before.allocations,
            after.live_blocks as i64 - before.live_blocks as i64,
            after.live_bytes as i64 - before.live_bytes as i64,
        )
    };
    settle();
    delta(false); // one-time set-up of thread spawning
    let quiet = delta(false);
    let leaky = delta(true);
    assert_eq!(leaky.0 - quiet.0, 5, "{quiet:?} {leaky:?}");
    assert_eq!(leaky.1 - quiet.1, 5, "{quiet:?} {leaky:?}");
    assert_eq!(leaky.2 - quiet.2, 500, "{quiet:?} {leaky:?}");
}

#[test]
fn session_refused_while_a_check_owns_the_process() {
    let (ok, output) = child(
        "child_session_refused_while_a_check_owns_the_process",
        &[("NEXTEST_EXECUTION_MODE", "process-per-test")],
    );
    assert!(ok && output.contains("1 passed"), "{output}");
}

// Only a test attribute owns the process (under nextest); `check()` from code never does.
#[leakcheck::leakcheck(reachable = "ignore")]
fn child_session_refused_while_a_check_owns_the_process() {
    if !is_child() {
        return;
    }
    let refused = std::panic::catch_unwind(Session::start).expect_err("must refuse");
    let message = *refused.downcast::<String>().unwrap();
    assert!(
        message.starts_with("leakcheck: Session::start(): a process-wide leak check is running"),
        "{message}"
    );
}

#[test]
fn at_exit_reports_what_the_program_leaked() {
    let (status, output) = child_status(
        "child_at_exit_reports_what_the_program_leaked",
        &[("LEAKCHECK_AT_EXIT", "1")],
    );
    // The tests passed; the leak makes the status LeakSanitizer's 23, and says so.
    assert!(output.contains("1 passed"), "{output}");
    assert_eq!(status, Some(23), "{output}");
    assert!(
        output.contains("leakcheck: the program leaked: exit status 23 (LEAKCHECK_AT_EXIT=1;"),
        "{output}"
    );
    assert!(
        output.contains("leakcheck: memory leak in program `session-"),
        "{output}"
    );
    assert!(
        output.contains("222 bytes in 1 allocation definitely lost, allocated at:"),
        "{output}"
    );
    assert!(output.contains("session::leak_at_exit"), "{output}");
    // Reachable from a static: not reported at exit, only counted in a note.
    assert!(!output.contains("session::keep_at_exit"), "{output}");
    assert!(output.contains("note: still reachable"), "{output}");
    // A session of one's own is refused while the at-exit session runs.
    assert!(
        output.contains("refused: leakcheck: Session::start(): LEAKCHECK_AT_EXIT=1"),
        "{output}"
    );
}

#[test]
fn at_exit_under_warn_reports_and_keeps_the_program_s_status() {
    let (status, output) = child_status(
        "child_at_exit_reports_what_the_program_leaked",
        &[("LEAKCHECK_AT_EXIT", "1"), ("LEAKCHECK", "warn")],
    );
    assert_eq!(status, Some(0), "{output}");
    assert!(
        output.contains("222 bytes in 1 allocation definitely lost, allocated at:"),
        "{output}"
    );
    assert!(!output.contains("exit status 23"), "{output}");
}

#[test]
fn at_exit_with_nothing_leaked_keeps_the_program_s_status() {
    let (status, output) =
        child_status("child_at_exit_leaks_nothing", &[("LEAKCHECK_AT_EXIT", "1")]);
    assert_eq!(status, Some(0), "{output}");
    assert!(!output.contains("exit status 23"), "{output}");
}

#[test]
fn child_at_exit_leaks_nothing() {
    if !is_child() {
        return;
    }
    keep_at_exit();
}

static KEPT_AT_EXIT: Mutex<Option<Vec<u8>>> = Mutex::new(None);

#[inline(never)]
fn leak_at_exit() {
    std::mem::forget(black_box(vec![7u8; 222]));
}

#[inline(never)]
fn keep_at_exit() {
    *KEPT_AT_EXIT.lock().unwrap() = Some(black_box(vec![8u8; 111]));
}

#[test]
fn child_at_exit_reports_what_the_program_leaked() {
    if !is_child() {
        return;
    }
    leak_at_exit();
    keep_at_exit();
    let refused = std::panic::catch_unwind(Session::start).expect_err("must refuse");
    println!("refused: {}", refused.downcast::<String>().unwrap());
}

#[test]
fn at_exit_value_is_checked_strictly() {
    let (ok, output) = child(
        "child_at_exit_reports_what_the_program_leaked",
        &[("LEAKCHECK_AT_EXIT", "yes")],
    );
    // The program runs, untracked, and says why.
    assert!(
        output.contains("leakcheck: LEAKCHECK_AT_EXIT=\"yes\" is not a valid setting"),
        "{output}"
    );
    assert!(!output.contains("memory leak in program"), "{output}");
    let _ = ok;
}

// ---- the example program ----

/// Builds `examples/hunt` (its own workspace) with the cargo that runs these tests.
fn hunt_binaries() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = root.join("examples/hunt/Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--quiet", "--bins", "--manifest-path"])
        .arg(&manifest)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "building examples/hunt: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    root.join("examples/hunt/target/debug")
}

fn run_example(exe: std::path::PathBuf, env: &[(&str, &str)]) -> String {
    run_example_with_status(exe, env, 0)
}

/// Runs an example's binary, which must exit with `status`.
fn run_example_with_status(exe: std::path::PathBuf, env: &[(&str, &str)], status: i32) -> String {
    let mut cmd = Command::new(&exe);
    for var in [
        "LEAKCHECK",
        "LEAKCHECK_OUT",
        "LEAKCHECK_FORMAT",
        "LEAKCHECK_AT_EXIT",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("RUST_BACKTRACE", "0");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let output = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        output.status.code(),
        Some(status),
        "{}: {text}",
        exe.display()
    );
    text
}

#[test]
fn example_hunt_names_the_growing_cache_and_the_forgotten_buffer() {
    let bin = hunt_binaries();
    let output = run_example(bin.join("hunt"), &[]);
    let (diff, report) = output
        .split_once("leakcheck: memory leak in session")
        .unwrap_or_else(|| panic!("{output}"));
    // The diff: the cache's pages grew the most, the forgotten buffers are among the top 3.
    assert!(diff.contains("leakcheck: top 3 of "), "{output}");
    let first = diff.split("\n#2:").next().unwrap();
    assert!(
        first.contains("#1: +280,800 bytes, +1,000 allocations") && first.contains("hunt::render"),
        "{output}"
    );
    assert!(
        diff.contains("+10,240 bytes, +20 allocations (now 10,240 bytes in 20 allocations), allocated at:\n   0: hunt::handle"),
        "{output}"
    );
    // The report: the buffers are lost, the cache is still reachable.
    assert!(
        report.contains(
            "10,240 bytes in 20 allocations definitely lost, allocated at:\n   0: hunt::handle"
        ),
        "{output}"
    );
    assert!(
        report.contains(
            "280,800 bytes in 1,000 allocations still reachable, allocated at:\n   0: hunt::render"
        ),
        "{output}"
    );
}

#[test]
fn at_exit_needs_no_code_change() {
    let bin = hunt_binaries();
    let quiet = run_example(bin.join("plain"), &[]);
    assert_eq!(quiet, "3 words\n");
    let output = run_example_with_status(bin.join("plain"), &[("LEAKCHECK_AT_EXIT", "1")], 23);
    assert!(
        output.contains("leakcheck: memory leak in program `plain`: 118 (96 direct, 22 indirect) bytes in 4 allocations"),
        "{output}"
    );
    assert!(
        output.contains(
            "96 bytes in 1 allocation definitely lost, allocated at:\n   0: plain::parse_request"
        ),
        "{output}"
    );
    assert!(!output.contains("plain::load_config"), "{output}");
}
