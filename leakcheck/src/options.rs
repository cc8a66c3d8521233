//! [`Check`]: the options of a leak check, shared by the attribute and code.
#![forbid(unsafe_code)]

use crate::report::Report;
use crate::resources::ResourceOptions;

/// What to do with blocks still reachable from a static, a thread-local or a live stack frame
/// when the body returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reachable {
    /// Report them in one line; they do not fail the check (the default).
    #[default]
    Ignore,
    /// They fail the check like lost blocks.
    Fail,
}

/// What to do with lost blocks made by threads the check started and left running (a pool or
/// an executor that the first test to need it started) while other checks were open. Other
/// tests may have handed their work to those threads meanwhile, so such blocks cannot be given
/// to one test by time alone. Where no other check was open when a block was made (under
/// cargo-nextest, `--test-threads=1`, leakcheck's harness) there is nothing to decide: it is
/// the check's, and counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SharedThreads {
    /// Report them in a note, with their stacks and the tests that ran meanwhile; they do not
    /// fail the check (the default).
    #[default]
    Note,
    /// They fail the check like the check's own lost blocks.
    Fail,
}

/// A leak check with options: the builder behind `#[leakcheck(...)]` and [`check`](crate::check).
///
/// Each method is the attribute option of the same name.
///
/// ```
/// #[global_allocator]
/// static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();
///
/// # fn main() {
/// let report = leakcheck::Check::new()
///     .allow_bytes(64)          // up to 64 leaked bytes are fine
///     .max_allocs(10)           // but the body may allocate at most 10 times
///     .run(|| {
///         let v: Vec<u8> = Vec::with_capacity(8);
///         std::mem::forget(std::hint::black_box(v));
///     });
/// assert!(report.is_clean(), "{report}");
/// assert_eq!(report.leaked_bytes(), 8);
/// # }
/// ```
#[derive(Clone, Debug, Default)]
#[must_use = "a Check does nothing until `run`"]
pub struct Check {
    pub(crate) allow_bytes: Option<usize>,
    pub(crate) allow_allocs: Option<usize>,
    pub(crate) max_allocs: Option<u64>,
    pub(crate) max_bytes: Option<u64>,
    pub(crate) max_peak_bytes: Option<u64>,
    pub(crate) repeat: usize,
    pub(crate) reachable: Reachable,
    pub(crate) shared_threads: SharedThreads,
    pub(crate) ignore: Vec<String>,
    pub(crate) resources: ResourceOptions,
}

impl Check {
    /// A check with the defaults: any leak fails it.
    pub const fn new() -> Check {
        Check {
            allow_bytes: None,
            allow_allocs: None,
            max_allocs: None,
            max_bytes: None,
            max_peak_bytes: None,
            repeat: 0,
            reachable: Reachable::Ignore,
            shared_threads: SharedThreads::Note,
            ignore: Vec::new(),
            resources: ResourceOptions::new(),
        }
    }

    /// Leaks of up to `bytes` bytes in total pass (`allow_bytes = N`). With only
    /// [`allow_allocs`](Check::allow_allocs) given, bytes are unlimited, and the other way round.
    pub fn allow_bytes(mut self, bytes: usize) -> Check {
        self.allow_bytes = Some(bytes);
        self
    }

    /// Leaks of up to `allocations` blocks pass (`allow_allocs = N`).
    pub fn allow_allocs(mut self, allocations: usize) -> Check {
        self.allow_allocs = Some(allocations);
        self
    }

    /// The body may allocate at most `allocations` times, freed or not; `0` means not at all
    /// (`max_allocs = N`). Reallocations of the body's own blocks count. A failure shows the
    /// stack of the first allocation past the budget.
    pub fn max_allocs(mut self, allocations: u64) -> Check {
        self.max_allocs = Some(allocations);
        self
    }

    /// The body may allocate at most `bytes` bytes in total, freed or not (`max_bytes = N`).
    pub fn max_bytes(mut self, bytes: u64) -> Check {
        self.max_bytes = Some(bytes);
        self
    }

    /// The body's own blocks may never hold more than `bytes` bytes at once
    /// (`max_peak_bytes = N`).
    pub fn max_peak_bytes(mut self, bytes: u64) -> Check {
        self.max_peak_bytes = Some(bytes);
        self
    }

    /// Runs the body `runs + 1` times: a warm-up, then `runs` measured runs; fails only if
    /// EVERY measured run leaves more live memory behind than there was before it (the growth
    /// of a cache that reachability excuses). `repeat = N` in the attribute.
    pub fn repeat(mut self, runs: usize) -> Check {
        self.repeat = runs;
        self
    }

    /// Whether blocks still reachable at the end fail the check (`reachable = "fail"`).
    pub fn reachable(mut self, reachable: Reachable) -> Check {
        self.reachable = reachable;
        self
    }

    /// Whether lost blocks made by the check's shared threads while other checks were open
    /// fail it (`shared_threads = "fail"`; see [`SharedThreads`]).
    pub fn shared_threads(mut self, shared: SharedThreads) -> Check {
        self.shared_threads = shared;
        self
    }

    /// Leaks whose stack matches `pattern` are suppressed, with the same matching as a
    /// suppression file's `leak:` lines (`ignore = "pattern"`; may be given several times).
    pub fn ignore(mut self, pattern: impl Into<String>) -> Check {
        self.ignore.push(pattern.into());
        self
    }

    /// Threads alive when the body returns that were not alive when it started fail the check
    /// (`threads`). Exact only when the test has the process to itself (cargo-nextest,
    /// `--test-threads=1`, leakcheck's harness); elsewhere the check is skipped with a note.
    pub fn threads(mut self) -> Check {
        self.resources.threads = true;
        self
    }

    /// File descriptors open when the body returns that were not open when it started fail
    /// the check (`fds`), with the same exactness as [`threads`](Check::threads).
    pub fn fds(mut self) -> Check {
        self.resources.fds = true;
        self
    }

    /// Both [`threads`](Check::threads) and [`fds`](Check::fds) (`resources`).
    pub fn resources(self) -> Check {
        self.threads().fds()
    }

    /// How long to wait for threads and fds that are still going away before deciding
    /// (`threads_linger_ms = N`, default 100).
    pub fn threads_linger_ms(mut self, milliseconds: u64) -> Check {
        self.resources.linger_ms = milliseconds;
        self
    }

    /// Threads whose name matches the glob (`*`, `?`) are not reported (`ignore_threads`).
    pub fn ignore_threads(mut self, glob: impl Into<String>) -> Check {
        self.resources.ignore_threads = Some(glob.into());
        self
    }

    /// File descriptors whose target (a path, `socket:[...]`, `pipe:[...]`) matches the glob
    /// are not reported (`ignore_fds`).
    pub fn ignore_fds(mut self, glob: impl Into<String>) -> Check {
        self.resources.ignore_fds = Some(glob.into());
        self
    }

    /// Runs `body` under this check and returns what it found. `body` runs `repeat + 1` times.
    ///
    /// # Panics
    ///
    /// As [`check`](crate::check).
    #[track_caller]
    pub fn run<F: FnMut()>(self, body: F) -> Report {
        self.run_from(core::panic::Location::caller(), body, true)
    }

    /// [`run`](Check::run) for a body that may run only once (no warm-up run where the
    /// reachability scan is missing; `repeat` is ignored).
    #[track_caller]
    pub(crate) fn run_once<F: FnOnce()>(mut self, body: F) -> Report {
        self.repeat = 0;
        let mut body = Some(body);
        let once = move || {
            if let Some(body) = body.take() {
                body();
            }
        };
        self.run_from(core::panic::Location::caller(), once, false)
    }

    fn run_from(
        self,
        location: &core::panic::Location<'_>,
        mut body: impl FnMut(),
        repeatable: bool,
    ) -> Report {
        let subject = format!("check at {}:{}", location.file(), location.line());
        let config = match crate::config::Config::from_env() {
            Ok(config) => config,
            Err(error) => panic!("{error}"),
        };
        // Code may run checks on several threads of one test: each owns its own thread and the
        // threads it starts, never the whole process (only a test attribute owns that, under
        // nextest or leakcheck's harness), so `process_per_test` stays off.
        let unwinder = config.backtrace.then(crate::raw::stack::calibrate);
        let mut runner =
            match crate::check::Runner::new(&self, &config, subject, unwinder, repeatable) {
                Ok(runner) => runner,
                Err(error) => panic!("{error}"),
            };
        loop {
            runner.run(&mut body);
            if runner.done() {
                break;
            }
        }
        runner.finish()
    }
}
