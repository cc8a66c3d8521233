//! How a failing test reads, end to end: builds `tests/reports-fixture`, runs its `reports`
//! binary as `cargo test` and `cargo nextest run` would, with `RUST_BACKTRACE` unset, `1` and
//! `full`, and checks that
//!
//! - a leak failure is located at the test (`thread 'NAME' panicked at FILE:LINE:COLUMN` of the
//!   test's name, also for a test in a `#[leakcheck] mod`), and prints no backtrace, so no frame
//!   of leakcheck's, whatever `RUST_BACKTRACE` says;
//! - a report shows the allocation site and the test body, without std's frames between the
//!   user's (`catch_unwind`'s, a panic's), also when the stack is deeper than a report prints,
//!   and deeper than a capture keeps whole;
//! - the note on how stacks were taken comes once per process, not once per report;
//! - leaks made while a panic is handled, by a `Display` of the panic message and by a `Drop`
//!   during unwinding, fail their tests with their `file:line:column`, while std's panic hook
//!   runs untracked.
//!
//! Every failed assertion prints the whole output of the subprocess it is about.

mod support;

use std::collections::BTreeSet;
use support::{parse_libtest, parse_nextest, Fixture, Profile, Run, Verdict};

const FILE: &str = "tests/reports.rs";

fn fixture() -> Fixture {
    Fixture::new("tests/reports-fixture")
}

/// A leaking test: its name, what its report's first frame is, the text that marks where it
/// allocates, and its bytes.
struct Leak {
    name: &'static str,
    first_frame: &'static str,
    site: &'static str,
    bytes: &'static str,
}

const LEAKS: &[Leak] = &[
    Leak {
        name: "plain_leak",
        first_frame: "reports::plain_leak::{{closure}}",
        site: "vec![0u8; 1111]",
        bytes: "1,111",
    },
    Leak {
        name: "in_module::module_leak",
        first_frame: "reports::in_module::module_leak::{{closure}}",
        site: "vec![0u8; 1112]",
        bytes: "1,112",
    },
    Leak {
        name: "deep_leak_inside_catch_unwind",
        first_frame: "reports::deep",
        site: "vec![0u8; bytes]",
        bytes: "1,113",
    },
    Leak {
        name: "very_deep_leak",
        first_frame: "reports::deep",
        site: "vec![0u8; bytes]",
        bytes: "1,116",
    },
    Leak {
        name: "leak_in_drop_while_unwinding",
        first_frame: "<reports::LeaksOnDrop as core::ops::drop::Drop>::drop",
        site: "vec![0u8; 1114]",
        bytes: "1,114",
    },
    Leak {
        name: "leak_in_panic_message",
        first_frame: "<reports::LeaksWhenShown as core::fmt::Display>::fmt",
        site: "vec![0u8; 1115]",
        bytes: "1,115",
    },
];

const PASSING: &[&str] = &["caught_panic_is_clean", "in_module::clean_in_module"];

/// What the note on stacks taken without frame pointers says.
const STACK_NOTE: &str = "frame pointers are missing";

/// Frames of std that a report folds away: `catch_unwind`'s, a panic's, drop glue.
const FOLDED: &[&str] = &[
    "std::panicking",
    "std::panic::catch_unwind",
    "__rust_try",
    "core::panicking",
    "core::ptr::drop_in_place",
    "core::fmt::write",
    "rust_begin_unwind",
];

/// `FILE:LINE:COLUMN` of the test's name, where its failure must be located.
fn test_site(name: &str) -> String {
    let function = name.rsplit("::").next().unwrap();
    fixture().site(FILE, &format!("fn {function}()"))
}

/// The site of a test's name starts at its `fn`; the failure points at the name after it.
fn name_site(name: &str) -> String {
    let site = test_site(name);
    let (rest, column) = site.rsplit_once(':').unwrap();
    format!("{rest}:{}", column.parse::<usize>().unwrap() + "fn ".len())
}

/// Checks what one leaking test printed (`text`: its libtest section or nextest output).
/// `short_backtraces`: `RUST_BACKTRACE=1`, where no frame of leakcheck's may show anywhere (the
/// test's own caught panic included); under `full` std shows every frame of a panic the test
/// makes itself, so only the failure's own message is checked.
fn check_leak(run: &Run, label: &str, leak: &Leak, text: &str, short_backtraces: bool) {
    let context = |what: &str| {
        format!(
            "{label}: `{}`: {what}\n---- its output ----\n{text}",
            leak.name
        )
    };
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let located = format!(
        "thread '{}' panicked at {}:",
        leak.name,
        name_site(leak.name)
    );
    let Some(start) = lines.iter().position(|l| *l == located) else {
        run.check(false, &context(&format!("no line `{located}`")));
        unreachable!()
    };
    let failure = &lines[start..];
    let header = format!(
        "leakcheck: memory leak in test `{}`: 1 allocation, {} bytes",
        leak.name, leak.bytes
    );
    run.check(
        failure.get(1) == Some(&header.as_str()),
        &context(&format!("`{located}` must be followed by `{header}`")),
    );
    run.check(
        !failure.iter().any(|l| l.starts_with("stack backtrace:")),
        &context("a leak failure must print no backtrace"),
    );
    for internal in ["leakcheck::", "__private", "run_test", "verdict"] {
        run.check(
            !failure.iter().any(|l| l.contains(internal)),
            &context(&format!("the failure shows leakcheck's own `{internal}`")),
        );
    }
    if short_backtraces {
        run.check(
            !text.contains("leakcheck::"),
            &context("under RUST_BACKTRACE=1 no frame of leakcheck's may show"),
        );
    }
    // The frames: `N: FUNCTION` then `at FILE:LINE:COLUMN`.
    let frames: Vec<(&str, &str)> = failure
        .windows(2)
        .filter(|w| w[1].starts_with("at "))
        .map(|w| (w[0].split_once(": ").map_or(w[0], |(_, f)| f), &w[1][3..]))
        .collect();
    let site = fixture().site(FILE, leak.site);
    run.check(
        frames.first() == Some(&(leak.first_frame, site.as_str())),
        &context(&format!(
            "the first frame must be `{}` at {site}",
            leak.first_frame
        )),
    );
    let body = format!("reports::{}::{{{{closure}}}}", leak.name);
    run.check(
        frames.last().is_some_and(|(function, _)| *function == body),
        &context(&format!("the last frame must be the test body `{body}`")),
    );
    for folded in FOLDED {
        run.check(
            !frames.iter().any(|(function, _)| function.contains(folded)),
            &context(&format!("std's `{folded}` must be folded away")),
        );
    }
}

/// A deep test's report: both ends of the stack, the gap counted. `call` marks where the test
/// body calls into the recursion, `depth` is how deep it goes.
fn check_deep(run: &Run, label: &str, text: &str, test: &str, call: &str, depth: usize) {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let context = |what: &str| format!("{label}: `{test}`: {what}\n---- its output ----\n{text}");
    run.check(
        lines
            .iter()
            .any(|l| l.starts_with("... ") && l.ends_with(" more frames")),
        &context("a stack deeper than a report prints must say how many frames it skips"),
    );
    let recursion = format!("at {}", fixture().site(FILE, "deep(depth - 1, bytes)"));
    run.check(
        lines.iter().filter(|l| **l == recursion).count() >= 2,
        &context(&format!("the recursion's frames (`{recursion}`) must show")),
    );
    let call = format!("at {}", fixture().site(FILE, call));
    let body_frame = format!(": reports::{test}::{{{{closure}}}}");
    let body = lines.iter().rposition(|l| l.ends_with(&body_frame));
    run.check(
        body.is_some_and(|i| lines.get(i + 1) == Some(&call.as_str())),
        &context(&format!("the test body's frame must be at {call}")),
    );
    // Frames are numbered by depth: the body is below every level of the recursion.
    let number = body
        .and_then(|i| lines[i].split_once(':'))
        .and_then(|(n, _)| n.parse::<usize>().ok());
    run.check(
        number.is_some_and(|n| n > depth),
        &context(&format!(
            "the test body's frame must be numbered past {depth}"
        )),
    );
}

/// Both deep tests.
fn check_deep_tests(run: &Run, label: &str, section: impl Fn(&str) -> String) {
    check_deep(
        run,
        label,
        &section("deep_leak_inside_catch_unwind"),
        "deep_leak_inside_catch_unwind",
        "std::panic::catch_unwind(|| deep(24, 1113))",
        24,
    );
    check_deep(
        run,
        label,
        &section("very_deep_leak"),
        "very_deep_leak",
        "deep(150, 1116)",
        150,
    );
}

/// Whether the environment already asks every crate for frame pointers.
fn environment_has_frame_pointers() -> bool {
    ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS"]
        .iter()
        .any(|var| std::env::var(var).is_ok_and(|flags| flags.contains("force-frame-pointers=yes")))
}

fn expected_failing() -> BTreeSet<String> {
    LEAKS.iter().map(|leak| leak.name.to_owned()).collect()
}

fn check_cargo_test(backtrace: Option<&str>) {
    let fixture = fixture();
    let exe = fixture.build(Profile::Debug).get("reports").to_owned();
    let env: Vec<(&str, &str)> = backtrace
        .map(|b| ("RUST_BACKTRACE", b))
        .into_iter()
        .collect();
    let run = fixture.run_test(&exe, &["--test-threads=4"], &env);
    let label = format!(
        "cargo test, RUST_BACKTRACE={}",
        backtrace.unwrap_or("unset")
    );
    let parsed = parse_libtest(&run.stdout);
    run.check(
        parsed.with(Verdict::Failed) == expected_failing(),
        &format!("{label}: wrong failing set"),
    );
    run.check(
        parsed.with(Verdict::Ok) == PASSING.iter().map(|n| n.to_string()).collect(),
        &format!("{label}: wrong passing set"),
    );
    for leak in LEAKS {
        let text = parsed.section(leak.name);
        check_leak(&run, &label, leak, text, backtrace == Some("1"));
    }
    check_deep_tests(&run, &label, |name| parsed.section(name).to_owned());
    // One process, six reports with stacks: the note once.
    let notes = run.output().matches(STACK_NOTE).count();
    let want = usize::from(!environment_has_frame_pointers());
    run.check(
        notes == want,
        &format!("{label}: the note `{STACK_NOTE}` shows {notes} times, want {want}"),
    );
}

#[test]
fn cargo_test_failures_are_located_at_the_test_without_backtraces() {
    check_cargo_test(None);
}

#[test]
fn cargo_test_with_rust_backtrace_shows_no_frame_of_leakcheck() {
    check_cargo_test(Some("1"));
}

#[test]
fn cargo_test_with_full_backtraces_prints_none_for_a_leak() {
    check_cargo_test(Some("full"));
}

#[test]
fn nextest_failures_are_located_at_the_test_without_backtraces() {
    fixture().build(Profile::Debug);
    let run = fixture().nextest(&["--test", "reports"], &[("RUST_BACKTRACE", "1")]);
    let label = "nextest, RUST_BACKTRACE=1";
    let parsed = parse_nextest(&run.stderr).binary("reports-fixture::reports");
    run.check(
        parsed.failed() == expected_failing(),
        &format!("{label}: wrong failing set"),
    );
    run.check(
        parsed.with_status("PASS") == PASSING.iter().map(|n| n.to_string()).collect(),
        &format!("{label}: wrong passing set"),
    );
    for leak in LEAKS {
        let text = parsed.test(leak.name).stderr();
        check_leak(&run, label, leak, &text, true);
    }
    check_deep_tests(&run, label, |name| parsed.test(name).stderr());
}
