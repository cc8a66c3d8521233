//! One leak check: arm a scope, prove the allocator sees it, run the code, build the report.
//! Shared by the attribute, [`check`](crate::check) and the async form.
#![forbid(unsafe_code)]

use crate::config::Config;
use crate::raw::stack::{self, Unwinder};
use crate::report::Report;
use crate::track::{self, Scope};
use std::fmt;

/// The leakcheck allocator is not the process's global allocator.
#[derive(Debug)]
pub(crate) struct NotInstalled;

impl fmt::Display for NotInstalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "leakcheck: the leakcheck allocator is not installed, so nothing could be checked for leaks.\n\
             Add these two lines to the test crate (the top of the test file, or src/lib.rs):\n\
             \n    #[global_allocator]\n    static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();\n",
        )
    }
}

/// A check in progress.
pub(crate) struct Running {
    scope: Scope,
    subject: String,
    stacks: Option<Unwinder>,
    untracked_before: u64,
}

impl Running {
    /// Arms a scope. `unwinder` is the result of [`stack::calibrate`] when stacks are on; the
    /// caller calibrates because only it runs in a frame compiled with the user's flags.
    pub(crate) fn start(
        config: &Config,
        subject: String,
        unwinder: Option<Unwinder>,
    ) -> Result<Running, NotInstalled> {
        crate::raw::prepare_for_fork();
        let stacks = if config.backtrace {
            unwinder.or(Some(stack::unwinder()))
        } else {
            None
        };
        let scope = Scope::new(stacks.is_some(), config.process_per_test);
        let running = Running {
            scope,
            subject,
            stacks,
            untracked_before: track::untracked_so_far(),
        };
        if !running.allocator_sees_scope() {
            return Err(NotInstalled);
        }
        Ok(running)
    }

    /// Allocates one probe block inside the scope: if no record appears, some other global
    /// allocator is in charge and every verdict would be a silent pass.
    fn allocator_sees_scope(&self) -> bool {
        let _inside = self.scope.enter();
        let probe = std::hint::black_box(Box::new(0u64));
        let seen = self.scope.owns(&*probe as *const u64 as usize);
        drop(probe);
        seen
    }

    pub(crate) fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Disarms the scope and reports what is still live.
    pub(crate) fn finish(self) -> Report {
        let Running {
            scope,
            subject,
            stacks,
            untracked_before,
        } = self;
        let records = scope.finish();
        let _blocked = track::Block::new();
        let untracked = track::untracked_so_far().saturating_sub(untracked_before);
        Report::build(subject, &records, stacks, untracked)
    }
}

/// Calls `f` with tracking suspended on this thread: what it allocates is never reported.
pub(crate) fn untracked<R>(f: impl FnOnce() -> R) -> R {
    let _blocked = track::Block::new();
    f()
}
