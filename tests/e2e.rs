//! End to end: builds `tests/fixture` (a crate that uses leakcheck the way the manual says a user
//! should), runs its test binaries as a user's `cargo test` and `cargo nextest run` would, and
//! checks every verdict and the text of the reports.
//!
//! The fixture is built once per profile into `target/fixture`, so later runs are incremental.
//! Every failed assertion prints the whole output of the subprocess it is about.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use support::{parse_libtest, parse_nextest, thousands, Fixture, Profile, Run, Verdict};

// ---- what the fixture's `tests/verdicts.rs` must do ----

/// Tests that leak (and nothing else makes them fail), with the bytes each leaks in one block.
const LEAKING: &[(&str, usize)] = &[
    ("forgotten_vec", 1024),
    ("leak_in_helper", 3000),
    ("result_ok_leaking", 5000),
    ("should_panic_leaks_without_panic", 700),
    ("test_above_attribute", 1201),
    ("test_below_attribute", 1202),
    ("leakcheck_test_alone", 1203),
    ("inner_attribute_leaking", 1204),
    ("crate_path_leaking", 1300),
    ("tokio_above_leaking", 2001),
    ("tokio_below_leaking", 2002),
    // On a thread the test spawns: leakcheck interposes `pthread_create` under `cargo test`,
    // and owns every thread but the main one under nextest.
    ("leak_in_spawned_thread", 4096),
];

/// Tests that fail for another reason first: their output must not carry a leak report.
const FAILING_WITHOUT_REPORT: &[(&str, &str)] = &[
    ("result_err", "Error: \"the error of result_err\""),
    ("leaks_and_panics", "the panic of leaks_and_panics"),
];

const PASSING: &[&str] = &[
    "clean_allocates_a_lot",
    "prints_100_lines",
    "lazy_lock_first_touch",
    "once_lock_first_touch",
    "thread_local_first_touch",
    "ignore_box_leak",
    "result_ok_clean",
    "should_panic_leaks_then_panics",
    "tokio_above_clean",
    "tokio_below_clean",
    "test_written_above_inside_a_macro",
    "test_written_by_a_macro",
    "proptest_macro::property_checked_once",
    "quickcheck_macro::property_checked_once",
];

const IGNORED: &str = "ignored_leaking";

/// `parallel::leaky_K` leaks `K * 100 + 8` bytes; `parallel::clean_K` leaks nothing.
const PARALLEL: std::ops::RangeInclusive<usize> = 1..=12;

fn parallel_leaky() -> impl Iterator<Item = (String, usize)> {
    PARALLEL.map(|k| (format!("parallel::leaky_{k:02}"), k * 100 + 8))
}

fn parallel_clean() -> impl Iterator<Item = String> {
    PARALLEL.map(|k| format!("parallel::clean_{k:02}"))
}

/// Every leaking test whose report e2e checks, with its bytes.
fn all_leaking() -> Vec<(String, usize)> {
    LEAKING
        .iter()
        .map(|&(name, bytes)| (name.to_owned(), bytes))
        .chain(parallel_leaky())
        .collect()
}

/// Names of the tests that must fail.
fn expected_failing() -> BTreeSet<String> {
    all_leaking()
        .into_iter()
        .map(|(name, _)| name)
        .chain(
            FAILING_WITHOUT_REPORT
                .iter()
                .map(|(name, _)| name.to_string()),
        )
        .collect()
}

fn expected_passing() -> BTreeSet<String> {
    PASSING
        .iter()
        .map(|name| name.to_string())
        .chain(parallel_clean())
        .collect()
}

// ---- building and running the fixture ----

fn fixture() -> Fixture {
    Fixture::new("tests/fixture")
}

/// The fixture's test executable `name`, built once per profile.
fn exe(profile: Profile, name: &str) -> PathBuf {
    fixture().build(profile).get(name).to_owned()
}

fn verdicts(profile: Profile) -> PathBuf {
    exe(profile, "verdicts")
}

fn site(file: &str, needle: &str) -> String {
    fixture().site(file, needle)
}

// ---- what a report must say ----

/// The line a leaking test's report must point at first (frame 0), and later frames if any.
fn expected_frames(name: &str, bytes: usize) -> Vec<(String, String)> {
    let verdicts = "tests/verdicts.rs";
    let body = format!("verdicts::{name}::{{{{closure}}}}");
    if name == "leak_in_helper" {
        vec![
            (
                "fixture::helper_fn".to_owned(),
                site("src/lib.rs", "Vec::with_capacity(bytes)"),
            ),
            (body, site(verdicts, "fixture::helper_fn(3000)")),
        ]
    } else if name.starts_with("parallel::") {
        vec![(body, site(verdicts, "vec![$k as u8"))]
    } else {
        // Async bodies and the spawned thread's closure are one closure deeper.
        let nested = name.starts_with("tokio_") || name == "leak_in_spawned_thread";
        let function = if nested {
            format!("{body}::{{{{closure}}}}")
        } else {
            body
        };
        vec![(function, site(verdicts, &format!("vec![0u8; {bytes}]")))]
    }
}

/// Checks that `text` holds the report of `name` leaking exactly `bytes` in one block, and
/// nothing leaked by any other test. `stacks` says whether the report should show where.
/// `inlined_names` accepts any name for a frame, since `debug = "line-tables-only"` gives
/// inlined frames short names in release (`{closure#0}`, `{async_block#0}`); the
/// file:line:col must still be exact.
fn check_report(
    run: &Run,
    name: &str,
    text: &str,
    bytes: usize,
    stacks: bool,
    inlined_names: bool,
) {
    let amount = thousands(bytes);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let has = |wanted: &str| lines.contains(&wanted);
    let context = |what: &str| format!("report of `{name}`: {what}\n---- its section ----\n{text}");
    let header = format!("leakcheck: memory leak in test `{name}`: 1 allocation, {amount} bytes");
    run.check(has(&header), &context(&format!("no line `{header}`")));
    let summary = format!("SUMMARY: leakcheck: {amount} bytes leaked in 1 allocation");
    run.check(has(&summary), &context(&format!("no line `{summary}`")));
    let groups: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()) && l.contains(" in "))
        .collect();
    // The group line may qualify the allocation ("definitely lost") before its ending.
    let (start, end) = (
        format!("{amount} bytes in 1 allocation"),
        if stacks {
            "allocated at:"
        } else {
            "(stacks are off)"
        },
    );
    run.check(
        groups.len() == 1 && groups[0].starts_with(&start) && groups[0].ends_with(end),
        &context(&format!(
            "want exactly one group `{start}...{end}`, got {groups:?}"
        )),
    );
    if !stacks {
        let note = "note: stacks are off (LEAKCHECK_BACKTRACE=0): set LEAKCHECK_BACKTRACE=1 to see where these were allocated";
        run.check(has(note), &context("no note that stacks are off"));
        return;
    }
    for (i, (function, at)) in expected_frames(name, bytes).iter().enumerate() {
        let frame = format!("{i}: {function}");
        let at = format!("at {at}");
        let found = lines.windows(2).any(|w| {
            let named = w[0] == frame || (inlined_names && w[0].starts_with(&format!("{i}: ")));
            named && w[1] == at
        });
        run.check(
            found,
            &context(&format!("no frame `{frame}` followed by `{at}`")),
        );
    }
}

/// Runs the whole `verdicts` binary with 8 test threads and checks every verdict and report.
fn check_verdicts(profile: Profile, label: &str) {
    let run = fixture().run_test(&verdicts(profile), &["--test-threads=8"], &[]);
    let parsed = parse_libtest(&run.stdout);
    let failed = parsed.with(Verdict::Failed);
    let passed = parsed.with(Verdict::Ok);
    run.check_same_set(
        "{label}: wrong failing set",
        ("failed but should pass", &failed),
        ("should fail but did not", &expected_failing()),
    );
    run.check(
        passed == expected_passing(),
        &format!(
            "{label}: wrong passing set: missing {:?}",
            expected_passing().difference(&passed).collect::<Vec<_>>()
        ),
    );
    run.check(
        parsed.verdicts.get(IGNORED) == Some(&Verdict::Ignored),
        &format!("{label}: `{IGNORED}` must be ignored"),
    );
    let section = |name: &str| {
        let text = parsed.sections.get(name);
        run.check(
            text.is_some(),
            &format!("{label}: no failure section for `{name}`"),
        );
        text.unwrap().as_str()
    };
    for (name, bytes) in all_leaking() {
        check_report(
            &run,
            &name,
            section(&name),
            bytes,
            true,
            profile == Profile::Release,
        );
    }
    let text = section("should_panic_leaks_without_panic");
    run.check(
        text.contains("did not panic"),
        "`should_panic_leaks_without_panic` must fail for not panicking",
    );
    for (name, message) in FAILING_WITHOUT_REPORT {
        let text = section(name);
        run.check(
            text.contains(message),
            &format!("{label}: `{name}` must fail with `{message}`\n{text}"),
        );
        run.check(
            !text.contains("leakcheck"),
            &format!("{label}: `{name}` fails already; no leak report may be added\n{text}"),
        );
    }
}

// ---- the tests ----

#[test]
fn debug_verdicts_and_reports_are_exact_three_runs_in_a_row() {
    for i in 1..=3 {
        check_verdicts(Profile::Debug, &format!("debug run {i}/3"));
    }
}

#[test]
fn release_verdicts_and_reports_are_exact() {
    check_verdicts(Profile::Release, "release run");
}

#[test]
fn every_attribute_placement_registers_the_test_once() {
    let run = fixture().run_test(&verdicts(Profile::Debug), &["--list"], &[]);
    run.check(run.success(), "--list failed");
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for line in run.stdout.lines() {
        if let Some(name) = line.strip_suffix(": test") {
            *counts.entry(name).or_default() += 1;
        }
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    run.check(
        twice.is_empty(),
        &format!("registered more than once: {twice:?}"),
    );
    let listed: BTreeSet<String> = counts.keys().map(|s| s.to_string()).collect();
    let mut expected = expected_failing();
    expected.extend(expected_passing());
    expected.insert(IGNORED.to_owned());
    run.check(
        listed == expected,
        &format!(
            "the fixture and this file disagree on the tests: only listed {:?}, only expected {:?}",
            listed.difference(&expected).collect::<Vec<_>>(),
            expected.difference(&listed).collect::<Vec<_>>()
        ),
    );
}

#[test]
fn a_missing_global_allocator_fails_with_setup_instructions() {
    let run = fixture().run_test(&exe(Profile::Debug, "not_installed"), &[], &[]);
    let parsed = parse_libtest(&run.stdout);
    let name = "checked_without_allocator";
    run.check(
        parsed.verdicts.get(name) == Some(&Verdict::Failed),
        "must fail",
    );
    let text = parsed.sections.get(name).map_or("", String::as_str);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    run.check(
        text.contains("allocator is not installed"),
        "must say the allocator is not installed",
    );
    let setup = [
        "#[global_allocator]",
        "static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();",
    ];
    run.check(
        lines.windows(2).any(|w| w == setup),
        "must show the two lines to add",
    );
}

/// The leaking tests the environment cases run, with `--exact`.
const SMALL_SUBSET: &[&str] = &["forgotten_vec", "leak_in_helper"];

#[test]
fn leakcheck_warn_passes_and_prints_the_report() {
    // Without --nocapture: libtest drops a passing test's captured output, and the report
    // must reach CI logs all the same, once per test.
    let mut args = vec!["--exact", "--test-threads=2"];
    args.extend(SMALL_SUBSET);
    let run = fixture().run_test(&verdicts(Profile::Debug), &args, &[("LEAKCHECK", "warn")]);
    run.check(
        run.success() && run.stdout.contains("test result: ok. 2 passed; 0 failed"),
        "LEAKCHECK=warn: leaking tests must pass",
    );
    for (name, bytes) in [("forgotten_vec", "1,024"), ("leak_in_helper", "3,000")] {
        let header =
            format!("leakcheck: memory leak in test `{name}`: 1 allocation, {bytes} bytes");
        run.check(
            run.stderr.matches(&header).count() == 1,
            &format!("LEAKCHECK=warn: not one `{header}` on stderr"),
        );
        let summary = format!("SUMMARY: leakcheck: {bytes} bytes leaked in 1 allocation");
        run.check(
            run.stderr.contains(&summary),
            &format!("LEAKCHECK=warn: no `{summary}` on stderr"),
        );
    }
}

#[test]
fn leakcheck_off_passes_without_a_word() {
    let mut args = vec!["--exact", "--nocapture", "--test-threads=1"];
    args.extend(SMALL_SUBSET);
    let run = fixture().run_test(&verdicts(Profile::Debug), &args, &[("LEAKCHECK", "off")]);
    run.check(
        run.success() && run.stdout.contains("test result: ok. 2 passed; 0 failed"),
        "LEAKCHECK=off: leaking tests must pass",
    );
    run.check(
        !run.output().contains("leakcheck"),
        "LEAKCHECK=off: nothing may be printed",
    );
}

/// Every test that runs must fail with a message naming `variable`, `value` and `allowed`.
fn check_invalid_setting(variable: &str, value: &str, allowed: &[&str]) {
    let run = fixture().run_test(
        &verdicts(Profile::Debug),
        &["--test-threads=8"],
        &[(variable, value)],
    );
    let parsed = parse_libtest(&run.stdout);
    let mut should_fail = expected_failing();
    should_fail.extend(expected_passing());
    let failed = parsed.with(Verdict::Failed);
    run.check(
        failed == should_fail,
        &format!(
            "{variable}={value}: every checked test must fail; these did not: {:?}",
            should_fail.difference(&failed).collect::<Vec<_>>()
        ),
    );
    for name in &failed {
        let text = parsed.sections.get(name).map_or("", String::as_str);
        // `should_panic(expected)` shows the message Debug-escaped, so no quotes here.
        let says = text.contains("is not a valid setting")
            && text.contains(&format!("{variable}="))
            && text.contains(value)
            && allowed.iter().all(|a| text.contains(a));
        run.check(
            says,
            &format!("{variable}={value}: `{name}` must name the variable and {allowed:?}\n{text}"),
        );
    }
}

#[test]
fn an_invalid_leakcheck_value_fails_every_checked_test() {
    check_invalid_setting("LEAKCHECK", "bogus", &["fail", "warn", "off"]);
}

#[test]
fn an_invalid_backtrace_value_fails_every_checked_test() {
    check_invalid_setting("LEAKCHECK_BACKTRACE", "yes", &["`1`", "`0`"]);
}

#[test]
fn backtrace_off_still_fails_leaks_with_exact_bytes() {
    let leaky: Vec<(String, usize)> = parallel_leaky()
        .chain([("forgotten_vec".to_owned(), 1024)])
        .collect();
    let clean: Vec<String> = parallel_clean()
        .chain(["clean_allocates_a_lot".to_owned()])
        .collect();
    let mut args = vec!["--exact", "--test-threads=8"];
    args.extend(leaky.iter().map(|(name, _)| name.as_str()));
    args.extend(clean.iter().map(String::as_str));
    let run = fixture().run_test(
        &verdicts(Profile::Debug),
        &args,
        &[("LEAKCHECK_BACKTRACE", "0")],
    );
    let parsed = parse_libtest(&run.stdout);
    let failed = parsed.with(Verdict::Failed);
    let want: BTreeSet<String> = leaky.iter().map(|(name, _)| name.clone()).collect();
    run.check(failed == want, "LEAKCHECK_BACKTRACE=0: wrong failing set");
    run.check(
        parsed.with(Verdict::Ok) == clean.iter().cloned().collect(),
        "LEAKCHECK_BACKTRACE=0: the clean tests must pass",
    );
    for (name, bytes) in &leaky {
        let text = parsed.sections.get(name).map_or("", String::as_str);
        check_report(&run, name, text, *bytes, false, false);
    }
}

// ---- nextest ----

#[test]
fn nextest_process_per_test_gives_the_same_verdicts_and_reports() {
    fixture().build(Profile::Debug);
    let run = fixture().nextest(&[], &[]);
    let parsed = parse_nextest(&run.stderr);
    let failed = parsed.failed();
    let mut want: BTreeSet<String> = expected_failing()
        .into_iter()
        .map(|name| format!("fixture::verdicts {name}"))
        .collect();
    want.insert("fixture::not_installed checked_without_allocator".to_owned());
    run.check_same_set(
        "nextest: wrong failing set",
        ("failed but should pass", &failed),
        ("should fail but did not", &want),
    );
    let passed = parsed.with_status("PASS").len();
    run.check(
        passed == expected_passing().len(),
        &format!(
            "nextest: {passed} passed, want {}",
            expected_passing().len()
        ),
    );
    let parsed = parsed.binary("fixture::verdicts");
    for (name, bytes) in all_leaking() {
        let stderr = parsed.test(&name).stderr();
        check_report(&run, &name, &stderr, bytes, true, false);
    }
    for (name, message) in FAILING_WITHOUT_REPORT {
        let text = parsed.test(name).output;
        run.check(
            text.contains(message) && !text.contains("leakcheck:"),
            &format!("nextest: `{name}` must fail with `{message}` and no leak report\n{text}"),
        );
    }
}
