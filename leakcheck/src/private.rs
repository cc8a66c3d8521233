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
    /// `line!()` at the test.
    pub line: u32,
    /// The test has `#[should_panic]`.
    pub should_panic: bool,
    /// Options given in the attribute.
    pub options: Options,
}

/// The attribute's options: the public builder, so each option has one implementation.
pub use crate::options::Check as Options;
pub use crate::options::Reachable;

/// Whether a test's return value already fails it (then the failure is the error, not a leak).
pub trait Outcome {
    /// True when the test fails because of this value.
    fn is_failure(&self) -> bool;
}

impl Outcome for () {
    fn is_failure(&self) -> bool {
        false
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

#[track_caller]
fn config() -> Config {
    Config::from_env().unwrap_or_else(|error| panic!("{error}"))
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
#[track_caller]
fn verdict(config: &Config, meta: &TestMeta, report: Report) {
    if report.is_clean() {
        // Allowed or suppressed leaks still show, so nothing is hidden silently.
        if report.leaked_allocations() > 0
            || !report.suppressions_used().is_empty()
            || report.has_notes()
        {
            eprint!("{report}");
        }
        return;
    }
    match config.mode {
        Mode::Fail if !meta.should_panic => panic!("{report}"),
        // A `should_panic` test that returned fails already ("did not panic"); a panic here
        // would make it pass.
        Mode::Fail | Mode::Warn => eprint!("{report}"),
        Mode::Off => {}
    }
}

/// Runs a synchronous test body inside a check (`repeat + 1` times with `repeat`).
#[track_caller]
pub fn run_test<R: Outcome>(meta: &TestMeta, mut body: impl FnMut() -> R) -> R {
    let config = config();
    if config.mode == Mode::Off {
        return body();
    }
    // Called from this generic function, which is compiled in the user's crate with the user's
    // flags, so calibration sees whether their code keeps frame pointers.
    let unwinder = config.backtrace.then(stack::calibrate);
    let mut runner = Runner::new(&meta.options, &config, subject(meta), unwinder)
        .unwrap_or_else(|error| panic!("{error}"));
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

/// Leakcheck's own memory, for the benchmarks: (record table bytes, live records, distinct
/// stacks, stack arena bytes).
pub fn bookkeeping() -> (usize, usize, usize, usize) {
    let (table_bytes, records) = crate::raw::table::footprint();
    let (stacks, stack_bytes) = crate::raw::intern::footprint();
    (table_bytes, records, stacks, stack_bytes)
}

/// Which stack walker checks use: "frame-pointers", "dwarf" or "uncalibrated".
pub fn unwinder() -> &'static str {
    match stack::unwinder() {
        stack::Unwinder::FramePointers => "frame-pointers",
        stack::Unwinder::Slow => "dwarf",
        stack::Unwinder::Unknown => "uncalibrated",
    }
}
