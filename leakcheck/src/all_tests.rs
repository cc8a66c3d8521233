//! `LEAKCHECK_ALL_TESTS=1`: every test the test runner starts is checked on its own, as if it
//! carried `#[leakcheck]` with the default options, with no annotation.
//!
//! # Which threads are tests
//!
//! libtest runs every test on a thread that its main thread spawns and names after the test
//! (with `--test-threads=1` too); cargo-nextest runs libtest once per test, and
//! `leakcheck::harness` does the same as libtest. So a test thread is a thread the main thread
//! creates (`raw::threads` marks it as it starts) and std then names: the name is the test's.
//! Threads a test spawns are created by the test's thread, not the main thread: they start
//! inside the test's check, as under the attribute.
//!
//! # When the check opens and closes
//!
//! It opens when std names the thread, before the runner's code on that thread runs, and it
//! closes in a thread-specific key's destructor, which glibc runs after every thread-local
//! destructor of the thread: by then the output capture (made on the test's thread, and what
//! the attribute's check has to excuse) and every thread-local the test filled are freed. The
//! blocks still live are classified as a check classifies them at the end of a body: those
//! reachable from statics settle (lazy statics, caches); the lost ones wait for the end of the
//! process under a tag of their own. What the runner made on the test's thread after the body
//! (the copy of the captured output it sends to the main thread, the block of the channel that
//! carries it) is freed by the main thread before the end; a leak is not.
//!
//! # The verdict
//!
//! libtest has recorded a test's result when its thread ends, and a thread's exit cannot fail
//! it. So, as LeakSanitizer does, the reports come after the runner's summary: an exit hook
//! prints each leaking test's report (its name first) on stderr and ends the process with
//! status 23. Under nextest, where each test is a process, that fails exactly the leaking tests
//! with their reports in their output. A test that carries `#[leakcheck]` keeps its options and
//! its own in-test verdict: the attribute takes the thread over when its check starts.
#![forbid(unsafe_code)]

use crate::check::{untracked, Judged, Runner};
use crate::config::{self, Config, Mode};
use crate::options::Check;
use crate::raw::stack;
use std::cell::Cell;
use std::collections::HashSet;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// Whether the mode is on; set before `main`, never cleared.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// The environment's settings, read once before `main`.
static CONFIG: OnceLock<Config> = OnceLock::new();
/// The options of an unannotated test: the attribute's defaults.
static DEFAULTS: Check = Check::new();

/// The checks of test threads still running, by token.
static RUNNING: Mutex<Vec<(u32, Runner<'static>)>> = Mutex::new(Vec::new());
/// Finished tests whose lost blocks wait for the end of the process, in the order they were
/// moved under the pending tag.
static PENDING: Mutex<Vec<Judged<'static>>> = Mutex::new(Vec::new());
/// Tokens handed to test threads (never 0).
static NEXT_TOKEN: AtomicU32 = AtomicU32::new(1);

thread_local! {
    /// The token of this thread's check, 0 for none. Const-initialised, no destructor: read
    /// by the attribute on this thread, never in the allocator.
    static THIS_THREAD: Cell<u32> = const { Cell::new(0) };
}

/// Set in a child process forked from a test: the tests are the parent's to report.
static FORKED: AtomicBool = AtomicBool::new(false);

/// Called in a freshly forked child (single-threaded, before `fork` returns): the child
/// starts no test and reports none. Its exit (a test's helper process calling `exit`) must not
/// print the parent's pending reports or change the child's exit status.
pub(crate) fn forked() {
    FORKED.store(true, Ordering::Relaxed);
    ENABLED.store(false, Ordering::Relaxed);
}

/// Whether test threads are checked (`LEAKCHECK_ALL_TESTS=1`, and not `LEAKCHECK=off`).
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Called before `main` (see `raw::exit`): turns the mode on when the environment asks for it.
/// Never panics. An invalid setting while the mode is asked for ends the process with status
/// 2 and the message: a suite that was meant to be checked must not pass unchecked.
pub(crate) fn start() {
    let _ = std::panic::catch_unwind(|| {
        let asked = std::env::var_os(config::ALL_TESTS).is_some_and(|v| !v.is_empty());
        if !asked {
            return;
        }
        let config = match Config::from_env() {
            Ok(config) => config,
            Err(error) => {
                eprintln!("{error}");
                std::process::exit(2);
            }
        };
        if !config.all_tests || config.mode == Mode::Off {
            return;
        }
        if !crate::raw::thread_inheritance() {
            eprintln!(
                "leakcheck: LEAKCHECK_ALL_TESTS=1 needs Linux with glibc (it recognises test \
                 threads by interposing pthread_create); no test is checked here. Use \
                 #[leakcheck] on the tests instead"
            );
            return;
        }
        if !crate::raw::exit::report_tests_at_exit() {
            eprintln!(
                "leakcheck: LEAKCHECK_ALL_TESTS=1: could not register the exit hook that reports \
                 leaks; no test is checked"
            );
            return;
        }
        let _ = CONFIG.set(config);
        ENABLED.store(true, Ordering::Release);
    });
}

/// Called on a thread the main thread created, right after std named it: opens the check of
/// the test it runs. Never panics (it runs inside `pthread_setname_np`).
pub(crate) fn test_thread_named() {
    let _ = std::panic::catch_unwind(|| {
        let Some(config) = CONFIG.get() else {
            return;
        };
        let Some(name) = untracked(test_name) else {
            return;
        };
        let mut config = *config;
        config.process_per_test = crate::__private::test_owns_process();
        let runner = untracked(|| {
            let unwinder = config.backtrace.then(stack::calibrate);
            Runner::new(
                &DEFAULTS,
                &config,
                format!("test `{name}`"),
                unwinder,
                false,
            )
        });
        let runner = match runner {
            Ok(runner) => runner,
            Err(error) => {
                untracked(|| {
                    to_real_stderr(&format!(
                        "leakcheck: test `{name}` is not checked (LEAKCHECK_ALL_TESTS=1): {error}\n"
                    ))
                });
                CANNOT_CHECK.store(true, Ordering::Relaxed);
                return;
            }
        };
        let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed).max(1);
        runner.enter_for_good();
        untracked(|| {
            lock(&RUNNING).push((token, runner));
            let _ = THIS_THREAD.try_with(|t| t.set(token));
            if !crate::raw::at_test_thread_exit(token) {
                abandon(token);
                to_real_stderr(&format!(
                    "leakcheck: test `{name}` is not checked (LEAKCHECK_ALL_TESTS=1): no \
                     thread-specific key left for its end\n"
                ));
                CANNOT_CHECK.store(true, Ordering::Relaxed);
            }
        });
    });
}

/// Some test could not be checked: the run fails at the end, as with a leak.
static CANNOT_CHECK: AtomicBool = AtomicBool::new(false);

/// This thread's name, if it is a test's: libtest and nextest name test threads after the
/// test; under nextest the name is also in `NEXTEST_TEST_NAME`, and a thread named otherwise
/// is not the test's.
///
/// Called inside the `pthread_setname_np` std makes when it starts a named thread. std installs
/// the thread's handle first and then names the OS thread (Rust 1.88 and 1.95 do, both run
/// against the end-to-end fixture), so `thread::current()` returns that handle. A std that named
/// the thread first would have this call create a handle of its own, and std's installation of
/// the real one after it would abort the process.
fn test_name() -> Option<String> {
    let name = std::thread::current().name()?.to_owned();
    if name == "main" {
        return None;
    }
    match std::env::var("NEXTEST_TEST_NAME") {
        Ok(test) if test != name => None,
        _ => Some(name),
    }
}

/// Called by `#[leakcheck]` when its check starts: a test that carries the attribute keeps
/// its own options and verdict, so the whole-test check of its thread ends unjudged.
pub(crate) fn attribute_takes_over() {
    if !enabled() {
        return;
    }
    let token = THIS_THREAD.try_with(|t| t.replace(0)).unwrap_or(0);
    if token != 0 {
        untracked(|| abandon(token));
    }
}

/// Drops the check of `token` without a verdict (its records go with it).
fn abandon(token: u32) {
    let runner = take(token);
    if let Some(runner) = runner {
        runner.leave();
        drop(runner);
    }
}

fn take(token: u32) -> Option<Runner<'static>> {
    let mut running = lock(&RUNNING);
    let index = running.iter().position(|(t, _)| *t == token)?;
    Some(running.swap_remove(index).1)
}

/// Called when a test thread has exited (its thread-locals destroyed): judges what its test
/// left. Never panics (it runs in a key destructor).
pub(crate) fn test_thread_exited(token: u32) {
    let _ = std::panic::catch_unwind(|| {
        let _blocked = crate::track::Block::new();
        let Some(runner) = take(token) else {
            // The attribute took the thread over.
            return;
        };
        runner.leave();
        runner.finish_pending(&PENDING);
    });
}

/// Called by the exit hook, after the test runner's summary: prints the report of every test
/// whose lost blocks are still live, and ends the process with status 23 when one did (not
/// under `LEAKCHECK=warn`).
pub(crate) fn finish() {
    let outcome = std::panic::catch_unwind(|| {
        if FORKED.load(Ordering::Relaxed) {
            return false;
        }
        let _blocked = crate::track::Block::new();
        let Some(config) = CONFIG.get() else {
            return false;
        };
        let mut pending = std::mem::take(&mut *lock(&PENDING));
        // An address claimed by a later test was freed and given again: not the earlier one's.
        let mut claimed: HashSet<usize> = HashSet::new();
        let mut leaking = Vec::new();
        for judged in pending.iter_mut().rev() {
            let addresses: Vec<usize> = judged.addresses().collect();
            judged.keep_pending(&|addr| claimed.contains(&addr));
            claimed.extend(addresses);
            let report = judged.report();
            let shown = report.leaked_allocations() > 0 || !report.suppressions_used().is_empty();
            let failing = !report.is_clean();
            if shown || failing {
                leaking.push((failing, crate::output::for_verdict(config, report)));
            }
        }
        // By test name, as libtest lists results.
        leaking.sort_by(|a, b| a.1.subject().cmp(b.1.subject()));
        let mut failed = 0;
        for (failing, report) in &leaking {
            failed += usize::from(*failing);
            to_real_stderr(&format!("{report}"));
        }
        let cannot_check = CANNOT_CHECK.load(Ordering::Relaxed);
        if failed == 0 && !cannot_check {
            return false;
        }
        let warn = config.mode == Mode::Warn;
        let tests = if failed == 1 { "test" } else { "tests" };
        let line = if warn {
            format!(
                "leakcheck: {failed} {tests} leaked memory (LEAKCHECK_ALL_TESTS=1 with \
                 LEAKCHECK=warn: the exit status is the test runner's)\n"
            )
        } else if failed > 0 {
            format!(
                "leakcheck: {failed} {tests} leaked memory, reports above (LEAKCHECK_ALL_TESTS=1): \
                 exit status {}; with LEAKCHECK=warn the reports are printed and the status is \
                 the test runner's\n",
                crate::raw::exit::LEAKED_STATUS
            )
        } else {
            format!(
                "leakcheck: some tests could not be checked, messages above \
                 (LEAKCHECK_ALL_TESTS=1): exit status {}\n",
                crate::raw::exit::LEAKED_STATUS
            )
        };
        to_real_stderr(&line);
        !warn
    });
    if outcome.unwrap_or(false) {
        crate::raw::exit::exit_leaked();
    }
}

/// Writes to the process's stderr itself, past libtest's output capture.
fn to_real_stderr(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
