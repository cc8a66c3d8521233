//! The thread and fd checks (`leakcheck/src/resources.rs`) against the real `/proc`: runs the
//! module's `#[ignore]`d scenario tests in the modes they need and checks that each one ran
//! (not skipped) and passed, and the text of the reports they print.
//!
//! - `alone_*` need the process to themselves: `cargo test -- --ignored --test-threads=1`, and
//!   `cargo nextest run --run-ignored only` (one process per test);
//! - `shared_*` need parallel `cargo test`, where the checks must skip with a note.
//!
//! Built into `target/resources-scenarios`, so later runs are incremental.
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Scenarios that need the process to themselves.
const ALONE: &[&str] = &[
    "alone_detached_looping_thread_is_flagged",
    "alone_thread_finishing_within_linger_is_not_flagged",
    "alone_joined_threads_are_clean",
    "alone_dropped_tokio_runtimes_are_clean",
    "alone_forgotten_file_is_flagged",
    "alone_closed_file_is_clean",
    "alone_forgotten_listener_is_flagged",
    "alone_closed_listener_and_pipe_are_clean",
    "alone_forgotten_pipe_is_flagged",
    "alone_ignore_globs_exclude_matches",
];

/// Scenarios that need other tests in the process.
const SHARED: &[&str] = &["shared_parallel_cargo_test_skips_with_note"];

const SKIP_NOTE: &str = "leakcheck: thread and fd checks skipped: other tests run in this \
    process at the same time (parallel `cargo test`); to check, run under `cargo nextest run` \
    or with `cargo test -- --test-threads=1`";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    root().join("target/resources-scenarios")
}

/// `cargo` with the settings of the test run that started us removed: under nextest this
/// process has `NEXTEST_EXECUTION_MODE=process-per-test`, which would make every child think it
/// is alone.
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if ["LEAKCHECK", "NEXTEST", "RUST_TEST_"]
            .iter()
            .any(|prefix| key.starts_with(prefix))
        {
            cmd.env_remove(&*key);
        }
    }
    cmd.current_dir(root())
        .env("CARGO_TERM_COLOR", "never")
        .env("CARGO_TARGET_DIR", target_dir());
    cmd
}

/// Runs `cmd`, returns stdout and stderr together; panics with both unless it succeeded.
fn run(mut cmd: Command) -> String {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    assert!(status.success(), "{cmd:?} failed ({status}):\n{text}");
    text
}

fn assert_ran(text: &str, checked: &[&str], skipped: &[&str]) {
    for name in checked {
        let line = format!("scenario {name}: checked");
        assert!(text.contains(&line), "missing `{line}` in:\n{text}");
    }
    for name in skipped {
        let line = format!("scenario {name}: skipped");
        assert!(text.contains(&line), "missing `{line}` in:\n{text}");
    }
}

/// What the flagged scenarios print: names, tids, targets, and what to do next.
fn assert_reports(text: &str) {
    let has_line = |prefix: &str, contains: &str| {
        text.lines()
            .any(|line| line.starts_with(prefix) && line.contains(contains))
    };
    assert!(
        has_line(
            "leakcheck: 1 thread left running by test: `lc-looper` (tid ",
            ")"
        ),
        "{text}"
    );
    assert!(
        has_line(
            "note: still alive 100 ms after the body returned",
            "ignore_threads"
        ),
        "{text}"
    );
    assert!(
        has_line(
            "leakcheck: 1 file descriptor left open by test: fd ",
            "/leakcheck-forgotten-"
        ),
        "{text}"
    );
    assert!(
        has_line(
            "leakcheck: 1 file descriptor left open by test: fd ",
            " -> socket:["
        ),
        "{text}"
    );
    assert!(
        has_line(
            "leakcheck: 2 file descriptors left open by test: fd ",
            " -> pipe:["
        ),
        "{text}"
    );
    assert!(has_line("note: close them", "ignore_fds"), "{text}");
}

#[test]
fn scenarios_under_cargo_test_one_thread() {
    let mut cmd = cargo();
    cmd.args(["test", "-p", "leakcheck", "--lib", "resources::tests::"])
        .args(["--", "--ignored", "--test-threads=1", "--nocapture"]);
    let text = run(cmd);
    assert_ran(&text, ALONE, SHARED);
    assert_reports(&text);
    assert!(!text.contains("skipped: other tests"), "{text}");
}

#[test]
fn scenarios_skip_with_note_under_parallel_cargo_test() {
    let mut cmd = cargo();
    cmd.args([
        "test",
        "-p",
        "leakcheck",
        "--lib",
        "resources::tests::shared_",
    ])
    .args(["--", "--ignored", "--test-threads=2", "--nocapture"]);
    let text = run(cmd);
    assert_ran(&text, SHARED, &[]);
    assert_eq!(
        text.lines().filter(|line| *line == SKIP_NOTE).count(),
        SHARED.len(),
        "{text}"
    );
}

#[test]
fn scenarios_under_nextest() {
    let mut cmd = cargo();
    cmd.args(["nextest", "run", "-p", "leakcheck", "--lib"])
        .args(["--run-ignored", "only", "-E", "test(resources::tests::)"])
        .arg("--no-capture");
    let text = run(cmd);
    assert_ran(&text, ALONE, SHARED);
    assert_reports(&text);
    let summary = format!(
        "{} tests run: {} passed",
        ALONE.len() + SHARED.len(),
        ALONE.len() + SHARED.len()
    );
    assert!(text.contains(&summary), "missing `{summary}` in:\n{text}");
}
