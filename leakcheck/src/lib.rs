//! Make memory leaks fail tests.
//!
//! TODO: manual
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod check;
mod config;
#[allow(unsafe_code)]
mod raw;
mod report;
mod symbolize;
mod track;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use leakcheck_macros::leakcheck;
pub use leakcheck_macros::leakcheck as test;
pub use raw::alloc::LeakCheck;
pub use report::{Frame, LeakGroup, Report};

use crate::config::Config;

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
    let location = core::panic::Location::caller();
    let config = Config::from_env().unwrap_or_else(|error| panic!("{error}"));
    let unwinder = config.backtrace.then(raw::stack::calibrate);
    let subject = format!("check at {}:{}", location.file(), location.line());
    let running = check::Running::start(&config, subject, unwinder).unwrap_or_else(|error| panic!("{error}"));
    {
        let _inside = running.scope().enter();
        body();
    }
    running.finish()
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
