//! What `#[leakcheck]` expands to calls. Not public API: names and signatures may change in any
//! release, in step with the `leakcheck-macros` version pinned by `leakcheck`.
#![forbid(unsafe_code)]

use crate::check::Runner;
use crate::config::{Config, Mode};
use crate::raw::stack;
use crate::report::Report;

/// Where a checked test comes from, filled in by the attribute.
#[derive(Debug)]
pub struct TestMeta {
    /// The test function's name.
    pub fn_name: &'static str,
    /// `module_path!()` at the test.
    pub module_path: &'static str,
    /// `file!()` at the test.
    pub file: &'static str,
    /// `line!()` at the test's name.
    pub line: u32,
    /// `column!()` at the test's name.
    pub column: u32,
    /// The test has `#[should_panic]`.
    pub should_panic: bool,
    /// Options given in the attribute.
    pub options: Options,
}

/// The attribute's options: the public builder, so each option has one implementation.
pub use crate::options::Check as Options;
pub use crate::options::Reachable;
pub use crate::options::SharedThreads;

/// Whether a test's return value already fails it (then the failure is the error, not a leak).
pub trait Outcome: Sized {
    /// True when the test fails because of this value.
    fn is_failure(&self) -> bool;

    /// The value a test returns when its body was not run (only `()`: the return type of
    /// `#[should_panic]` tests).
    fn without_running() -> Option<Self> {
        None
    }
}

impl Outcome for () {
    fn is_failure(&self) -> bool {
        false
    }

    fn without_running() -> Option<()> {
        Some(())
    }
}

impl<T, E> Outcome for Result<T, E> {
    fn is_failure(&self) -> bool {
        self.is_err()
    }
}

impl Outcome for core::convert::Infallible {
    fn is_failure(&self) -> bool {
        match *self {}
    }
}

fn config() -> Result<Config, crate::config::ConfigError> {
    let mut config = Config::from_env()?;
    config.process_per_test = test_owns_process();
    Ok(config)
}

/// A check that cannot run fails the test. A panic cannot fail a `#[should_panic]` test (it
/// would pass), so such a test prints the error and returns without running its body, and
/// libtest fails it for not panicking.
fn cannot_check<R: Outcome>(meta: &TestMeta, error: &dyn core::fmt::Display) -> R {
    if meta.should_panic {
        if let Some(value) = R::without_running() {
            eprintln!("{error}");
            return value;
        }
    }
    fail(meta, &error.to_string())
}

/// Fails the test with `text`, located at the test's name: the message is printed as std's panic
/// hook prints one (`thread 'NAME' panicked at FILE:LINE:COLUMN:`, which nextest and IDEs look
/// for), then the thread unwinds with `resume_unwind`, which runs no panic hook.
///
/// A `panic!` here would run the hook: under `RUST_BACKTRACE` every failure would end with a
/// backtrace of leakcheck's own frames (this function, `run_test`) above the test function,
/// and no frame of where the leak was made, which the report already shows. `#[track_caller]`
/// moves the location, not the backtrace; nor can a hook be swapped for one test while other
/// tests panic on other threads.
///
/// Under `leakcheck::harness` the message is the payload only: the harness prints a failed
/// test's panic message itself, from the payload when no hook saw one.
fn fail(meta: &TestMeta, text: &str) -> ! {
    let thread = std::thread::current();
    let message = format!(
        "thread '{}' panicked at {}:{}:{}:\n{text}",
        thread.name().unwrap_or("<unnamed>"),
        meta.file,
        meta.line,
        meta.column
    );
    if !harness_owns_process() {
        eprintln!("{message}");
    }
    std::panic::resume_unwind(Box::new(message))
}

/// The name libtest and nextest show for this test.
fn subject(meta: &TestMeta) -> String {
    let current = std::thread::current();
    let name = match current.name() {
        Some(name) if name != "main" => name.to_owned(),
        _ => std::env::var("NEXTEST_TEST_NAME").unwrap_or_else(|_| {
            let module = meta
                .module_path
                .split_once("::")
                .map_or("", |(_, rest)| rest);
            if module.is_empty() {
                meta.fn_name.to_owned()
            } else {
                format!("{module}::{}", meta.fn_name)
            }
        }),
    };
    format!("test `{name}`")
}

/// Fails the test for a leak, or only prints the report, as `LEAKCHECK` says.
fn verdict(config: &Config, meta: &TestMeta, report: Report) {
    // LEAKCHECK_OUT files for a failing test, and LEAKCHECK_FORMAT=json.
    let report = crate::output::for_verdict(config, report);
    if report.is_clean() {
        // Allowed or suppressed leaks still show, so nothing is hidden silently.
        if report.leaked_allocations() > 0
            || !report.suppressions_used().is_empty()
            || report.has_notes()
        {
            eprint!("{}", report.text());
        }
        return;
    }
    match config.mode {
        Mode::Fail if !meta.should_panic => fail(meta, &report.text()),
        // A `should_panic` test that returned fails already ("did not panic"); a panic here
        // would make it pass.
        Mode::Fail => eprint!("{}", report.text()),
        Mode::Warn => to_real_stderr(&report.text()),
        Mode::Off => {}
    }
}

/// Writes a warning's report to the process's stderr itself, past libtest's output capture
/// (which takes `eprint!` and drops what a passing test printed): a warning must show in CI
/// logs. Under nextest the runner still decides what a passing test's output shows.
fn to_real_stderr(text: &str) {
    use std::io::Write as _;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Runs a synchronous test body inside a check (`repeat + 1` times with `repeat`).
pub fn run_test<R: Outcome>(meta: &TestMeta, mut body: impl FnMut() -> R) -> R {
    // Under LEAKCHECK_ALL_TESTS the test's thread is checked already: this check replaces it.
    crate::all_tests::attribute_takes_over();
    let config = match config() {
        Ok(config) => config,
        Err(error) => return cannot_check(meta, &error),
    };
    if config.mode == Mode::Off {
        return body();
    }
    // Called from this generic function, which is compiled in the user's crate with the user's
    // flags, so calibration sees whether their code keeps frame pointers.
    let unwinder = config.backtrace.then(stack::calibrate);
    let mut runner = match Runner::new(&meta.options, &config, subject(meta), unwinder, true) {
        Ok(runner) => runner,
        Err(error) => return cannot_check(meta, &error),
    };
    loop {
        let value = runner.run(&mut body);
        if value.is_failure() || runner.done() {
            let report = runner.finish();
            if !value.is_failure() {
                verdict(&config, meta, report);
            }
            return value;
        }
    }
}

/// Reachability scan of `blocks` (address, size) from this thread, for leakcheck's tests:
/// "definitely", "indirectly" or "reachable" per block; empty where no scan is possible.
pub fn scan_for_tests(blocks: &[(usize, usize)]) -> Vec<&'static str> {
    let _blocked = crate::track::Block::new();
    if !crate::raw::scan::supported() {
        return Vec::new();
    }
    crate::raw::scan::classify(blocks, &[])
        .into_iter()
        .map(crate::raw::scan::Reach::name)
        .collect()
}

/// Leakcheck's own memory, for the benchmarks: (record table bytes, live records, distinct
/// stacks, stack arena bytes).
pub fn bookkeeping() -> (usize, usize, usize, usize) {
    let (table_bytes, records) = crate::raw::table::footprint();
    let (stacks, stack_bytes) = crate::raw::intern::footprint();
    (table_bytes, records, stacks, stack_bytes)
}

/// Fault injection for leakcheck's tests: while `table` is set, the record table cannot grow;
/// while `stacks` is set, the stack store takes no new stacks; as when `System` is out of
/// memory for leakcheck's own bookkeeping.
pub fn fail_bookkeeping(table: bool, stacks: bool) {
    crate::raw::table::refuse_growth(table);
    crate::raw::intern::refuse_new_stacks(stacks);
}

/// Which stack walker checks use: "frame-pointers", "dwarf-cached" (DWARF CFI through
/// leakcheck's cached walker), "dwarf" (libgcc's unwinder) or "uncalibrated".
pub fn unwinder() -> &'static str {
    match stack::unwinder() {
        stack::Unwinder::FramePointers => "frame-pointers",
        stack::Unwinder::CachedCfi => "dwarf-cached",
        stack::Unwinder::Slow => "dwarf",
        stack::Unwinder::Unknown => "uncalibrated",
    }
}

// ---- `leakcheck::harness`: every `#[leakcheck]` test registers itself ----

pub use inventory;

/// A `#[leakcheck]` test as `leakcheck::harness` runs it. The attribute submits one in builds
/// without `--test` (a `harness = false` target), where its `#[test]` function is compiled out.
#[derive(Debug)]
pub struct Registration {
    /// The test function's name.
    pub fn_name: &'static str,
    /// `module_path!()` at the test.
    pub module_path: &'static str,
    /// `file!()` at the test.
    pub file: &'static str,
    /// `line!()` at the test.
    pub line: u32,
    /// The test has `#[ignore]`.
    pub ignored: bool,
    /// The test's `#[should_panic]`.
    pub should_panic: ShouldPanic,
    /// How to run it.
    pub body: Body,
}

inventory::collect!(Registration);

/// A test's `#[should_panic]`, which the harness applies (libtest-mimic does not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShouldPanic {
    /// No `#[should_panic]`.
    No,
    /// `#[should_panic]`.
    Yes,
    /// `#[should_panic(expected = "...")]` or `#[should_panic = "..."]`.
    Expected(&'static str),
}

/// What the harness calls for a registered test.
#[derive(Clone, Copy, Debug)]
pub enum Body {
    /// Calls the checked function and turns its value into a verdict ([`Verdict`]).
    Run(fn() -> Result<(), String>),
    /// The function also carries `attribute`, another crate's test attribute, whose `#[test]`
    /// function a `harness = false` target compiles out. A `Run` registration of the same test
    /// replaces it (`#[tokio::test]` leaves its `#[test]` below `#[leakcheck]`, so the function
    /// it generates registers itself); otherwise the harness fails the test and says why.
    Missing {
        /// The other test attribute, as written.
        attribute: &'static str,
    },
}

/// A test's return value as the harness judges it, like libtest's `Termination`: the error of
/// an `Err` fails the test with its `Debug` form.
pub trait Verdict {
    /// `Err(message)` when the value fails the test.
    fn verdict(self) -> Result<(), String>;
}

impl Verdict for () {
    fn verdict(self) -> Result<(), String> {
        Ok(())
    }
}

impl<T: Verdict, E: core::fmt::Debug> Verdict for Result<T, E> {
    fn verdict(self) -> Result<(), String> {
        match self {
            Ok(value) => value.verdict(),
            Err(error) => Err(format!("Error: {error:?}")),
        }
    }
}

impl Verdict for std::process::ExitCode {
    fn verdict(self) -> Result<(), String> {
        if self == std::process::ExitCode::SUCCESS {
            Ok(())
        } else {
            Err(
                "the test returned a termination value with a non-zero status code, \
                 which indicates a failure"
                    .to_owned(),
            )
        }
    }
}

impl Verdict for core::convert::Infallible {
    fn verdict(self) -> Result<(), String> {
        match self {}
    }
}

/// Set by `leakcheck::harness` before it runs any test: it runs checked tests one at a time, so
/// each check owns every thread but the main one, as under nextest's process-per-test mode.
pub(crate) static HARNESS_OWNS_PROCESS: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

pub(crate) fn harness_owns_process() -> bool {
    HARNESS_OWNS_PROCESS.load(std::sync::atomic::Ordering::Relaxed)
}

/// A test that runs alone owns every thread but the main one: under `leakcheck::harness`, and
/// where [`crate::config::alone_in_process`] says so (nextest, `--test-threads=1`).
pub(crate) fn test_owns_process() -> bool {
    harness_owns_process() || crate::config::alone_in_process()
}
