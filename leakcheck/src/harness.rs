//! A test harness for `harness = false` targets that checks every `#[leakcheck]` test with exact
//! attribution, under plain `cargo test` as under cargo-nextest.
//!
//! ```toml
//! # Cargo.toml
//! [dev-dependencies]
//! leakcheck = { version = "0.1", features = ["harness"] }
//!
//! [[test]]
//! name = "integration"
//! harness = false
//! ```
//!
//! ```no_run
//! // tests/integration.rs
//! #[global_allocator]
//! static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();
//!
//! #[leakcheck::leakcheck]
//! fn parses_config() {
//!     let config = vec![("key", "value")];
//!     assert_eq!(config.len(), 1);
//! }
//!
//! fn main() {
//!     leakcheck::harness::main();
//! }
//! ```
//!
//! [`main`] finds every `#[leakcheck]` function of the target without a list: the attribute
//! registers each one. Test names are libtest's (the module path without the crate name, then
//! the function name: `parser::parses_config`), and so is the command line, through
//! [libtest-mimic](https://docs.rs/libtest-mimic): a filter, `--exact`, `--skip`, `--ignored`,
//! `--include-ignored`, `--list` (with `--format terse`, which is how cargo-nextest lists the
//! target before running each test in its own process), `--test-threads`, `--nocapture`,
//! `--quiet`. The output is libtest's too: `test NAME ... ok` or `FAILED` per test, then a
//! `failures:` section with, for each failed test, its panic message (a leak report, with the
//! allocation stacks' `file:line`) and a summary line.
//!
//! # One test at a time
//!
//! The harness runs the tests one after another, whatever `--test-threads` says, each on a
//! thread of its own named after it (as libtest does), and checks each with process-wide
//! attribution: everything allocated on any thread but the harness's main thread while the test
//! runs is the test's, including threads that existed before it (a global thread pool) and
//! threads it starts. So the verdicts are exact, as under cargo-nextest's process-per-test
//! mode, at the price of parallelism; for parallel and exact, run the same target under
//! `cargo nextest run`, which runs each test in its own process.
//!
//! # What the attribute does for it
//!
//! rustc compiles a `harness = false` target without `--test`, and so compiles every `#[test]`
//! function out (cargo still sets `cfg(test)`, so `cfg` cannot tell the two builds apart).
//! `#[leakcheck]` asks the compiler it runs in: under `--test` (libtest, nextest) it expands
//! as always and registers nothing; without it, the checked function gets no `#[test]` (a
//! `#[test]` written below `#[leakcheck]` is dropped) and registers itself for the harness
//! through [inventory](https://docs.rs/inventory). Its body is compiled once either way.
//!
//! - `#[should_panic]` (with or without `expected`) and `#[ignore]` mean what they mean under
//!   libtest. A test returning `Result` fails on `Err` with `Error: {err:?}`.
//! - `#[tokio::test]` works below or above `#[leakcheck]`: tokio puts the `#[test]` of the
//!   function it generates below `#[leakcheck]`, which drops it as its own.
//! - Other test attributes (`#[test_log::test]`, `#[rstest]`, `#[async_std::test]`) make a
//!   `#[test]` function the target compiles out. The harness lists such a test and fails it
//!   with a message that says so, rather than skip it silently.
//!
//! # What it cannot do
//!
//! - Output is not captured (libtest-mimic cannot): `println!` in a test prints as it runs,
//!   and `--nocapture` changes nothing. A test's panic message goes into the failures section
//!   either way.
//! - Only `#[leakcheck]` functions run: a plain `#[test]` is compiled out of the target, as in
//!   any `harness = false` target, and so is a `#[leakcheck]` function with a built-in
//!   `#[test]` written above it (that one expands first): write `#[leakcheck]` above, or alone.
//! - A thread that a test leaves running keeps allocating into the checks of the tests after
//!   it; a check with `threads` catches such a test.
//! - Registration runs before `main` (inventory: Linux, macOS, Windows, the BSDs,
//!   WebAssembly). Tests in a library that the target links are found only if the linker keeps
//!   them, i.e. if the target uses something from the same object.
#![forbid(unsafe_code)]

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::btree_map::{BTreeMap, Entry};
use std::panic::{self, AssertUnwindSafe, PanicHookInfo};
use std::sync::atomic::Ordering;
use std::sync::Once;

use libtest_mimic::{Arguments, Failed, Trial};

use crate::__private::{Body, Registration, ShouldPanic, HARNESS_OWNS_PROCESS};

/// Runs the target's `#[leakcheck]` tests as libtest would, with the command line the target
/// was started with, and exits: with status 0 if every test run passed, 101 otherwise.
///
/// See the [module documentation](self) for what it supports.
pub fn main() -> ! {
    let mut args = Arguments::from_args();
    // One at a time, each check owning the process: see "One test at a time".
    args.test_threads = Some(1);
    HARNESS_OWNS_PROCESS.store(true, Ordering::Relaxed);
    install_panic_hook();
    libtest_mimic::run(&args, trials()).exit()
}

/// One trial per registered test, sorted by name (as libtest sorts).
fn trials() -> Vec<Trial> {
    let mut tests: BTreeMap<String, &'static Registration> = BTreeMap::new();
    for registration in inventory::iter::<Registration> {
        match tests.entry(test_name(registration)) {
            Entry::Vacant(entry) => {
                entry.insert(registration);
            }
            // The function a runtime attribute generated registered itself: run that.
            Entry::Occupied(mut entry) => {
                if matches!(entry.get().body, Body::Missing { .. })
                    && matches!(registration.body, Body::Run(_))
                {
                    entry.insert(registration);
                }
            }
        }
    }
    tests
        .into_iter()
        .map(|(name, registration)| {
            let ignored = registration.ignored;
            Trial::test(name.clone(), move || run_test(&name, registration))
                .with_ignored_flag(ignored)
        })
        .collect()
}

/// libtest's name: the module path without the crate's name, then the function's.
fn test_name(registration: &Registration) -> String {
    match registration.module_path.split_once("::") {
        Some((_, module)) => format!("{module}::{}", registration.fn_name),
        None => registration.fn_name.to_owned(),
    }
}

/// How the test's thread ended.
enum Ending {
    Returned(Result<(), String>),
    /// The panic message as libtest shows it, and the payload's text.
    Panicked(String, String),
}

fn run_test(name: &str, registration: &'static Registration) -> Result<(), Failed> {
    let run = match registration.body {
        Body::Run(run) => run,
        Body::Missing { attribute } => return Err(missing(name, registration, attribute).into()),
    };
    let ending = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            CAPTURING.with(|capturing| capturing.set(true));
            let result = panic::catch_unwind(AssertUnwindSafe(run));
            CAPTURING.with(|capturing| capturing.set(false));
            match result {
                Ok(value) => Ending::Returned(value),
                Err(payload) => {
                    let text = payload_text(&*payload);
                    let message = PANIC
                        .with(|panic| panic.borrow_mut().take())
                        .unwrap_or_else(|| text.clone());
                    Ending::Panicked(message, text)
                }
            }
        })
        .map_err(|error| format!("leakcheck: cannot start a thread for the test: {error}"))?
        .join()
        .map_err(|_| "leakcheck: the test's thread ended abnormally".to_owned())?;
    judge(registration, ending).map_err(Failed::from)
}

/// libtest's verdict, `#[should_panic]` included.
fn judge(registration: &Registration, ending: Ending) -> Result<(), String> {
    match (registration.should_panic, ending) {
        (_, Ending::Returned(Err(error))) => Err(error),
        (ShouldPanic::No, Ending::Returned(Ok(()))) => Ok(()),
        (ShouldPanic::No, Ending::Panicked(message, _)) => Err(message),
        (ShouldPanic::Yes | ShouldPanic::Expected(_), Ending::Returned(Ok(()))) => Err(format!(
            "note: test did not panic as expected at {}:{}",
            registration.file, registration.line
        )),
        (ShouldPanic::Yes, Ending::Panicked(..)) => Ok(()),
        (ShouldPanic::Expected(expected), Ending::Panicked(message, text)) => {
            if text.contains(expected) {
                Ok(())
            } else {
                Err(format!(
                    "{message}\nnote: panic did not contain expected string\n      \
                     panic message: {text:?},\n expected substring: {expected:?}"
                ))
            }
        }
    }
}

fn missing(name: &str, registration: &Registration, attribute: &str) -> String {
    format!(
        "leakcheck: test `{name}` ({}:{}) cannot run under leakcheck::harness: its `{attribute}` \
         makes a #[test] function, which a `harness = false` target compiles out.\n\
         Use #[leakcheck] alone (or with #[test] or #[tokio::test]), or move the test to a \
         target with the default harness.",
        registration.file, registration.line
    )
}

fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

thread_local! {
    /// This thread runs a test: its panic message goes into the test's failure.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    /// The message of the test thread's last panic.
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Panics on a test's thread are kept for its failure (libtest captures them with the test's
/// output); panics anywhere else go to the hook that was there before.
fn install_panic_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CAPTURING.with(Cell::get) {
                // The harness's own work, as std's hook's is (`crate::panic_hook`): the payload
                // (the user's `Display`s) was formatted before any hook ran.
                let _untracked = crate::track::Block::new();
                let message = panic_message(info);
                PANIC.with(|panic| *panic.borrow_mut() = Some(message));
            } else {
                previous(info);
            }
        }));
    });
}

/// `thread 'NAME' panicked at FILE:LINE:COLUMN:` and the message, as std's hook prints it.
fn panic_message(info: &PanicHookInfo<'_>) -> String {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("<unnamed>");
    let text = payload_text(info.payload());
    let mut message = match info.location() {
        Some(location) => format!("thread '{name}' panicked at {location}:\n{text}"),
        None => format!("thread '{name}' panicked:\n{text}"),
    };
    let backtrace = std::backtrace::Backtrace::capture();
    if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
        message.push_str(&format!("\nstack backtrace:\n{backtrace}"));
    } else {
        message.push_str(
            "\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
        );
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(should_panic: ShouldPanic) -> Registration {
        Registration {
            fn_name: "parses",
            module_path: "integration::config",
            file: "tests/integration.rs",
            line: 7,
            ignored: false,
            should_panic,
            body: Body::Run(|| Ok(())),
        }
    }

    #[test]
    fn names_are_libtests() {
        assert_eq!(test_name(&registration(ShouldPanic::No)), "config::parses");
        let top = Registration {
            module_path: "integration",
            ..registration(ShouldPanic::No)
        };
        assert_eq!(test_name(&top), "parses");
    }

    fn panicked(text: &str) -> Ending {
        Ending::Panicked(
            format!("thread 't' panicked at x.rs:1:1:\n{text}"),
            text.to_owned(),
        )
    }

    #[test]
    fn verdicts_are_libtests() {
        let no = registration(ShouldPanic::No);
        assert_eq!(judge(&no, Ending::Returned(Ok(()))), Ok(()));
        assert_eq!(
            judge(&no, Ending::Returned(Err("Error: \"e\"".into()))),
            Err("Error: \"e\"".into())
        );
        assert_eq!(
            judge(&no, panicked("leakcheck: memory leak")),
            Err("thread 't' panicked at x.rs:1:1:\nleakcheck: memory leak".into())
        );

        let yes = registration(ShouldPanic::Yes);
        assert_eq!(judge(&yes, panicked("anything")), Ok(()));
        assert_eq!(
            judge(&yes, Ending::Returned(Ok(()))),
            Err("note: test did not panic as expected at tests/integration.rs:7".into())
        );

        let expected = registration(ShouldPanic::Expected("boom"));
        assert_eq!(judge(&expected, panicked("a boom here")), Ok(()));
        let wrong = judge(&expected, panicked("bang")).unwrap_err();
        assert!(
            wrong.ends_with(
                "note: panic did not contain expected string\n      panic message: \"bang\",\n expected substring: \"boom\""
            ),
            "{wrong}"
        );
    }

    #[test]
    fn missing_says_which_attribute_and_what_to_do() {
        let message = missing(
            "config::parses",
            &registration(ShouldPanic::No),
            "#[test_log::test]",
        );
        assert!(
            message.starts_with(
                "leakcheck: test `config::parses` (tests/integration.rs:7) cannot run under leakcheck::harness: its `#[test_log::test]`"
            ),
            "{message}"
        );
        assert!(message.contains("Use #[leakcheck] alone"), "{message}");
    }
}
