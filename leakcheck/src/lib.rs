//! Make memory leaks fail tests.
//!
//! leakcheck is a global allocator that records every heap block a checked piece of code
//! allocates, and an attribute that fails a test when any of those blocks is still live when the
//! test body returns, with a report of what leaked, how much, and where it was allocated.
//!
//! # Setup
//!
//! ```toml
//! [dev-dependencies]
//! leakcheck = "0.1"
//!
//! # The allocator runs under every allocation of your test binary: build it (and the unwinder
//! # it uses) optimised even in the dev profile that `cargo test` uses.
//! [profile.dev.package.leakcheck]
//! opt-level = 3
//! [profile.dev.package.backtrace]
//! opt-level = 3
//! ```
//!
//! In each test crate (each file under `tests/`, or `src/lib.rs` for unit tests), install the
//! allocator once and mark the tests to check:
//!
//! ```
//! #[global_allocator]
//! static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();
//!
//! #[leakcheck::test]
//! fn parses_config() {
//!     let config = vec![("key", "value")];
//!     assert_eq!(config.len(), 1);
//! }
//! # fn main() {}
//! ```
//!
//! Stack capture is about 30 times cheaper with frame pointers. Add to `.cargo/config.toml`:
//!
//! ```toml
//! [build]
//! rustflags = ["-C", "force-frame-pointers=yes"]
//! ```
//!
//! leakcheck checks at run time that the frame-pointer walk sees the same frames as the DWARF
//! unwinder and falls back to the unwinder (saying so in reports) when it does not.
//!
//! # The attribute
//!
//! `#[leakcheck::leakcheck]`, also exported as `#[leakcheck::test]`:
//!
//! - works above or below `#[test]`, and alone adds `#[test]` itself;
//! - stacks with `#[tokio::test]` (and other `*::test` runtime attributes) in either order, with
//!   the same meaning: the runtime attribute expands first (`#[leakcheck]` above it moves it up)
//!   and the check wraps the function it generates, so the runtime is built, runs the test's
//!   future and is dropped inside the check. The runtime's own bookkeeping is freed before the
//!   verdict, and tasks spawned onto `flavor = "multi_thread"` workers belong to the test;
//! - keeps `#[should_panic]`, `#[ignore]`, doc comments, `async` and the return type. A test
//!   returning `Result<(), E>` gets its value back unchanged; an `Err` fails the test as usual
//!   and no leak report is added on top. A body that panics fails with its panic, without a
//!   leak report;
//! - `#[leakcheck(crate = my_reexport::leakcheck)]` names the runtime crate when it is renamed
//!   or re-exported. Unknown options are compile errors that list the valid ones.
//!
//! Without the attribute, the same check from code: [`check`] returns a [`Report`], and
//! [`Check`] takes the same options as the attribute.
//!
//! # Options
//!
//! `#[leakcheck(option = value, ...)]`, or the [`Check`] method of the same name:
//!
//! | option | meaning |
//! |---|---|
//! | `allow_bytes = N`, `allow_allocs = N` | leaks within the allowance pass (and still show); beyond it the report gives the total and the allowance |
//! | `max_allocs = N` | the body may allocate at most N times, freed or not (`0`: not at all); a failure shows the stack of the first allocation past the budget |
//! | `max_bytes = N` | the body may allocate at most N bytes in total, freed or not |
//! | `max_peak_bytes = N` | the body's own blocks may never hold more than N bytes at once |
//! | `repeat = N` | run the body N+1 times (a warm-up, then N measured runs) and fail only if EVERY measured run leaves more live memory behind than before it, CPython `-R` style: the report shows `grew by [100, 100, 100] bytes per run` and the growing sites. This catches a cache that grows on every call, which no end-of-test check can tell from a lazy static |
//! | `reachable = "fail"` | blocks still reachable from statics, thread-locals or the stack fail too (default `"ignore"`) |
//! | `ignore = "pattern"` | leaks whose stack matches the pattern are suppressed (may be repeated; matching as in suppression files) |
//! | `crate = path` | the runtime crate is renamed or re-exported |
//!
//! Options combine. Unknown options, duplicates and bad values are compile errors that say
//! what is expected. On an inline module, `#[leakcheck(...)] mod tests { ... }` puts the
//! attribute with its options on every `#[test]` and `#[tokio::test]` function inside, at any
//! depth, and leaves other items alone.
//!
//! ```
//! #[global_allocator]
//! static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();
//!
//! #[leakcheck::leakcheck(max_allocs = 0)]
//! fn parsing_is_allocation_free() {
//!     assert_eq!("42".parse::<u32>(), Ok(42));
//! }
//!
//! #[leakcheck::leakcheck(repeat = 3)]
//! fn cache_does_not_grow() { /* call the cached function */ }
//! # fn main() {}
//! ```
//!
//! ## Suppressions
//!
//! Known leaks in code you do not own go into a suppression file in LeakSanitizer's syntax:
//!
//! ```text
//! # leakcheck.supp
//! leak:some_dependency::registry::*
//! leak:^my_crate::init_logging$
//! leak:src/generated.rs
//! ```
//!
//! Each `leak:` pattern is matched against the function name, module path and source file of
//! every frame of a leak's stack: `*` matches any run of characters, `^` and `$` anchor, and an
//! unanchored pattern may match anywhere. The file is `LEAKCHECK_SUPPRESSIONS=<path>` or else
//! `leakcheck.supp` in the package directory or a parent up to the workspace root. A
//! malformed line fails the checked tests with its `file:line`. Reports list the suppressions
//! that matched ("Suppressions used:", with counts and bytes, so stale ones show) and end each
//! leak group with a ready-to-paste `leak:` line.
//!
//! # Running
//!
//! `cargo test` or `cargo nextest run`, nothing else. Environment variables:
//!
//! | variable | values |
//! |---|---|
//! | `LEAKCHECK` | `fail` (default): a leak fails the test; `warn`: print the report, pass; `off`: no tracking at all |
//! | `LEAKCHECK_BACKTRACE` | `1` (default): capture allocation stacks; `0`: do not (cheaper, reports have no stacks) |
//! | `LEAKCHECK_SUPPRESSIONS` | path of a suppression file (see [Suppressions](#suppressions)) |
//!
//! Any other value fails each checked test with a message naming the variable and the allowed
//! values.
//!
//! ## Who owns an allocation
//!
//! - Under `cargo test`, tests run in parallel on their own threads. A checked test owns what its
//!   own thread allocates during the body, and what every thread it starts allocates (threads
//!   started by those too), until the check ends: leakcheck interposes `pthread_create`, the
//!   way sanitizer runtimes do, so a thread begins inside its creator's check whether it comes
//!   from `std::thread::spawn`, `thread::scope`, `Builder`, tokio or rayon. Other tests, checked
//!   or not, never affect its verdict. A block freed on any thread is no longer live.
//! - Under cargo-nextest (`NEXTEST_EXECUTION_MODE=process-per-test`), each test has the
//!   process to itself: the test owns everything allocated during the body on every thread but
//!   the test runner's main thread, so leaks in threads the test spawns are caught too.
//!
//! ## What is not counted
//!
//! Some blocks are live when the body returns without being the test's leak. With stacks on,
//! leakcheck recognises them from their allocation stack and lists them in one `note:` line:
//!
//! - the test harness's output capture (`println!` in a test under `cargo test` grows a
//!   buffer that libtest owns) and std's lazily created stdout/stderr buffers;
//! - one-time initialisation: blocks allocated while a `LazyLock`, `OnceLock`, `OnceCell`,
//!   `once_cell::sync::Lazy`, `lazy_static!` or a `thread_local!` initialises its value.
//!
//! Deliberate leaks go through [`ignore`].
//!
//! # Reading a report
//!
//! ```text
//! leakcheck: memory leak in test `config::parses_config`: 2 allocations, 1,048 bytes
//!
//! 1,024 bytes in 1 allocation, allocated at:
//!    0: my_crate::cache::Cache::insert
//!              at src/cache.rs:42:9
//!    1: config::parses_config::{{closure}}
//!              at tests/config.rs:17:5
//!
//! 24 bytes in 1 allocation, allocated at:
//!    0: config::parses_config::{{closure}}
//!              at tests/config.rs:18:13
//!
//! SUMMARY: leakcheck: 1,048 bytes leaked in 2 allocations
//! ```
//!
//! Leaks are grouped by allocation stack, largest group first, at most ten groups (then
//! `... and N more`). Each stack starts at the first frame outside std and leakcheck, the line
//! that called `Box::new`, `Vec::push` or `String::from`, and ends at the test body (shown as
//! the test's `{{closure}}`, since the body runs in a closure). The report goes to stderr and
//! into the panic message, so nextest's JUnit output keeps it.
//!
//! # Limitations
//!
//! - Only heap memory that goes through the Rust global allocator is seen: not C libraries
//!   calling `malloc` directly, not `mmap`.
//! - Under parallel `cargo test`, work done for the test by threads that existed before it (a
//!   global thread pool such as rayon's, started by an earlier test) is not attributed to it;
//!   under cargo-nextest it is. Thread inheritance needs glibc's `pthread_create`; on other
//!   platforms only the test's own thread is checked under `cargo test`.
//! - A thread that the test starts and leaves running when the body returns is reported
//!   through what it has allocated so far (its handle, its stack's heap data).
//! - The "not counted" rules need stacks: with `LEAKCHECK_BACKTRACE=0`, a `println!` under
//!   output capture or the first touch of a lazy static can be reported as a leak. Run with
//!   `--nocapture`, or keep stacks on.
//! - Something created during the test and kept alive on purpose by a long-lived object that
//!   existed before the test (a cache in a struct created outside the checked body, a runtime
//!   created by `#[tokio::test]` when `#[leakcheck]` is above it) is reported, because it is
//!   still live when the body returns.
//! - Release builds without debug info show function names but no file:line; add
//!   `debug = "line-tables-only"` to the profile for line numbers.
//! - Frame pointers are walked on x86_64 and aarch64 Linux; other targets use the DWARF
//!   unwinder. Stacks are cut at 32 frames.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod check;
mod config;
mod options;
#[allow(unsafe_code)]
mod raw;
mod report;
mod resources;
mod suppress;
mod symbolize;
mod track;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use leakcheck_macros::leakcheck;
pub use leakcheck_macros::leakcheck as test;
pub use options::{Check, Reachable};
pub use raw::alloc::LeakCheck;
pub use report::{BudgetOverrun, Frame, Kind, LeakGroup, Report, SuppressionUse};

/// Runs `body` and reports the heap blocks it allocated that are still live when it returns:
/// the same check as `#[leakcheck]`, for custom harnesses, property tests and benchmarks.
///
/// ```
/// #[global_allocator]
/// static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();
///
/// # fn main() {
/// let report = leakcheck::check(|| {
///     let v = vec![1, 2, 3];
///     assert_eq!(v.len(), 3);
/// });
/// assert!(report.is_clean(), "{report}");
/// # }
/// ```
///
/// `LEAKCHECK_BACKTRACE` applies; `LEAKCHECK` (fail/warn/off) does not, since the caller
/// decides what to do with the report.
///
/// # Panics
///
/// If the leakcheck allocator is not the `#[global_allocator]` (there would be nothing to
/// report), or an environment variable has a value leakcheck does not accept.
#[track_caller]
pub fn check<F: FnOnce()>(body: F) -> Report {
    let mut body = Some(body);
    Check::new().run(move || {
        if let Some(body) = body.take() {
            body();
        }
    })
}

/// Runs `f` with leak tracking suspended on this thread and returns its value: what it
/// allocates is never reported, for deliberate leaks such as `Box::leak` of a `&'static`
/// configuration.
///
/// ```
/// #[global_allocator]
/// static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();
///
/// # fn main() {
/// let report = leakcheck::check(|| {
///     let config: &'static str = leakcheck::ignore(|| Box::leak(String::from("key=value").into_boxed_str()));
///     assert_eq!(config, "key=value");
/// });
/// assert!(report.is_clean(), "{report}");
/// # }
/// ```
pub fn ignore<R>(f: impl FnOnce() -> R) -> R {
    check::untracked(f)
}
