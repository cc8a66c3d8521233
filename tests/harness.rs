//! `leakcheck::harness` end to end: builds `tests/harness-fixture` (a `harness = false` target
//! whose `main` is the harness), runs it under `cargo test` and `cargo nextest run` and with
//! libtest's options, and checks every verdict and what each failure shows.
//!
//! Every failed assertion prints the whole output of the subprocess it is about.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use support::{parse_libtest, parse_nextest, thousands, Fixture, Libtest, Profile, Run, Verdict};

// ---- what the fixture's `tests/checked.rs` must do ----

/// Tests that fail for a leak, with the bytes each leaks in one block and the sites its report
/// must show (`file`, the text that starts the line's allocating expression).
/// (test name, bytes leaked, sites as (file, start of the allocating expression)).
type Leaking = (&'static str, usize, &'static [(&'static str, &'static str)]);

const LEAKING: &[Leaking] = &[
    ("forgotten_vec", 1024, &[(CHECKED, "vec![0u8; 1024]")]),
    (
        "leak_in_helper",
        3000,
        &[
            ("src/lib.rs", "vec![0x5au8; bytes]"),
            (CHECKED, "harness_fixture::leak_here(3000)"),
        ],
    ),
    (
        "test_attribute_below",
        1202,
        &[(CHECKED, "vec![0u8; 1202]")],
    ),
    // On a thread the test starts.
    (
        "leak_in_spawned_thread",
        4096,
        &[(CHECKED, "vec![0u8; 4096]")],
    ),
    // On a thread that `main` started before any test: only process-wide attribution sees it.
    ("leak_in_pool_thread", 2500, &[(CHECKED, "vec![0u8; 2500]")]),
    ("result_ok_leaking", 5000, &[(CHECKED, "vec![0u8; 5000]")]),
    ("tokio_below_leaking", 2002, &[(CHECKED, "vec![0u8; 2002]")]),
    (
        "nested::deep_leaking",
        1500,
        &[(CHECKED, "vec![0u8; 1500]")],
    ),
];

/// Tests that fail for another reason, with what their failure says (and no leak report).
const FAILING_WITHOUT_REPORT: &[(&str, &str)] = &[
    ("result_err", "Error: \"the error of result_err\""),
    (
        "should_panic_wrong_message",
        "note: panic did not contain expected string",
    ),
    (
        "should_panic_leaks_without_panic",
        "note: test did not panic as expected at tests/checked.rs:",
    ),
];

const PASSING: &[&str] = &[
    "clean_allocates_and_frees",
    "clean_in_pool_thread",
    "nested::deep_clean",
    "prints_a_line",
    "result_ok_clean",
    "should_panic_panics",
    "tokio_above_clean",
];

const IGNORED: (&str, usize) = ("ignored_leaking", 6000);

const CHECKED: &str = "tests/checked.rs";

fn all_names() -> BTreeSet<String> {
    LEAKING
        .iter()
        .map(|(name, ..)| *name)
        .chain(FAILING_WITHOUT_REPORT.iter().map(|(name, _)| *name))
        .chain(PASSING.iter().copied())
        .chain([IGNORED.0])
        .map(str::to_owned)
        .collect()
}

fn failing_names() -> BTreeSet<String> {
    LEAKING
        .iter()
        .map(|(name, ..)| *name)
        .chain(FAILING_WITHOUT_REPORT.iter().map(|(name, _)| *name))
        .map(str::to_owned)
        .collect()
}

// ---- building and running ----

fn fixture() -> Fixture {
    Fixture::new("tests/harness-fixture")
}

/// The fixture's `checked` executable, built once per process.
fn checked_exe() -> PathBuf {
    fixture().build(Profile::Debug).get("checked").to_owned()
}

fn checked(args: &[&str]) -> Run {
    fixture().run_test(&checked_exe(), args, &[])
}

fn site(file: &str, needle: &str) -> String {
    fixture().site(file, needle)
}

/// `text` holds the report of `name` leaking `bytes` in one block, allocated at `sites`.
fn check_report(run: &Run, name: &str, text: &str, bytes: usize, sites: &[(&str, &str)]) {
    let amount = thousands(bytes);
    let context = |what: String| format!("report of `{name}`: {what}\n---- it ----\n{text}");
    for wanted in [
        format!("leakcheck: memory leak in test `{name}`: 1 allocation, {amount} bytes"),
        format!("SUMMARY: leakcheck: {amount} bytes leaked in 1 allocation"),
    ] {
        run.check(
            text.lines().any(|line| line.trim() == wanted),
            &context(format!("no line `{wanted}`")),
        );
    }
    for (file, needle) in sites {
        let at = format!("at {}", site(file, needle));
        run.check(
            text.lines().any(|line| line.trim() == at),
            &context(format!("no frame `{at}`")),
        );
    }
}

/// Exactly the clean tests passed.
fn check_passing(run: &Run, parsed: &Libtest) {
    let want: BTreeSet<String> = PASSING.iter().map(|name| name.to_string()).collect();
    run.check_same_set(
        "wrong passing set",
        ("passed but should not have", &parsed.with(Verdict::Ok)),
        ("should pass but did not", &want),
    );
}

/// The failing set and, per failure, its section: reports, other failures, no strays.
fn check_failures(run: &Run, parsed: &Libtest) {
    let failed = parsed.with(Verdict::Failed);
    let want = failing_names();
    run.check_same_set(
        "wrong failing set",
        ("failed but should pass", &failed),
        ("should fail but did not", &want),
    );
    for (name, bytes, sites) in LEAKING {
        let text = parsed.section(name);
        let panicked = format!("thread '{name}' panicked at tests/checked.rs:");
        run.check(
            text.starts_with(&panicked),
            &format!("`{name}`'s failure must start with `{panicked}`\n{text}"),
        );
        check_report(run, name, text, *bytes, sites);
    }
    for (name, message) in FAILING_WITHOUT_REPORT {
        let text = parsed.section(name);
        run.check(
            text.contains(message) && !text.contains("leakcheck:"),
            &format!("`{name}` must fail with `{message}` and no leak report\n{text}"),
        );
    }
}

// ---- the tests ----

#[test]
fn cargo_test_runs_every_registered_test_with_libtests_verdicts() {
    checked_exe();
    let args = ["test", "--test", "checked", "--", "--test-threads=4"];
    let run = Run::new(
        &format!("cargo {}", args.join(" ")),
        &mut fixture().cargo(&args),
    );
    run.check(!run.success(), "the harness must exit with failure");
    run.check(
        run.code() == Some(101),
        "libtest's exit status on failure is 101",
    );
    let parsed = parse_libtest(&run.stdout);
    check_passing(&run, &parsed);
    run.check(
        parsed.with(Verdict::Ignored) == BTreeSet::from([IGNORED.0.to_owned()]),
        "only `ignored_leaking` is ignored",
    );
    run.check(
        parsed.verdicts.keys().cloned().collect::<BTreeSet<_>>() == all_names(),
        "every test of the fixture, and nothing else, is run or ignored",
    );
    check_failures(&run, &parsed);
    run.check(
        run.stdout
            .contains("test result: FAILED. 7 passed; 11 failed; 1 ignored;"),
        "libtest's summary line",
    );
    // A `should_panic` test that returns fails as "did not panic"; its leak is printed, not a
    // second failure.
    check_report(
        &run,
        "should_panic_leaks_without_panic",
        &run.stderr,
        700,
        &[(CHECKED, "vec![0u8; 700]")],
    );
}

#[test]
fn list_terse_names_every_test_as_nextest_reads_it() {
    let run = checked(&["--list", "--format", "terse"]);
    run.check(run.success(), "--list succeeds");
    let listed: Vec<&str> = run.stdout.lines().collect();
    let want: Vec<String> = all_names()
        .into_iter()
        .map(|name| format!("{name}: test"))
        .collect();
    run.check(listed == want, &format!("--list: want {want:#?}"));

    let run = checked(&["--list", "--format", "terse", "--ignored"]);
    run.check(
        run.stdout.lines().collect::<Vec<_>>() == ["ignored_leaking: test"],
        "--list --ignored lists the ignored test only",
    );
}

#[test]
fn filter_exact_and_skip_select_tests_as_libtest_does() {
    let run = checked(&["leak_in_"]);
    let parsed = parse_libtest(&run.stdout);
    let names: BTreeSet<&str> = parsed.verdicts.keys().map(String::as_str).collect();
    run.check(
        names
            == BTreeSet::from([
                "leak_in_helper",
                "leak_in_pool_thread",
                "leak_in_spawned_thread",
            ]),
        "a filter runs the tests whose names contain it",
    );
    run.check(
        parsed.with(Verdict::Failed).len() == 3 && run.code() == Some(101),
        "all three leak",
    );

    let run = checked(&["--exact", "nested::deep_clean"]);
    let parsed = parse_libtest(&run.stdout);
    run.check(
        parsed.verdicts == BTreeMap::from([("nested::deep_clean".into(), Verdict::Ok)])
            && run.success(),
        "--exact runs that one test",
    );
    let run = checked(&["--exact", "deep_clean"]);
    run.check(
        parse_libtest(&run.stdout).verdicts.is_empty() && run.success(),
        "--exact needs the whole name",
    );

    let skips = ["leak", "forgotten", "below", "should_panic", "result_err"];
    let run = checked(
        &skips
            .iter()
            .flat_map(|skip| ["--skip", skip])
            .collect::<Vec<_>>(),
    );
    let parsed = parse_libtest(&run.stdout);
    let want: BTreeSet<String> = all_names()
        .into_iter()
        .filter(|name| !skips.iter().any(|skip| name.contains(skip)))
        .collect();
    run.check(
        parsed.verdicts.keys().cloned().collect::<BTreeSet<_>>() == want,
        &format!("--skip leaves {want:?}"),
    );
    run.check(
        run.success() && parsed.with(Verdict::Ok) == want,
        "the rest pass",
    );
}

#[test]
fn ignored_runs_the_ignored_test_and_reports_its_leak() {
    let run = checked(&["--ignored", "--nocapture"]);
    let parsed = parse_libtest(&run.stdout);
    run.check(
        parsed.verdicts == BTreeMap::from([(IGNORED.0.into(), Verdict::Failed)]),
        "--ignored runs only the ignored test",
    );
    let text = parsed.sections.get(IGNORED.0).map_or("", String::as_str);
    check_report(
        &run,
        IGNORED.0,
        text,
        IGNORED.1,
        &[(CHECKED, "vec![0u8; 6000]")],
    );
}

// ---- a `main` that never runs the tests ----

#[test]
fn a_main_that_never_runs_the_tests_fails_naming_them() {
    let fixture = fixture();
    let binaries = fixture.build(Profile::Debug);
    let run = fixture.run_test(binaries.get("forgot_main"), &[], &[]);
    run.check(
        run.stdout.contains("main ran"),
        "the program's own main runs",
    );
    run.check(
        run.code() == Some(101),
        &format!("exit status 101, got {:?}", run.code()),
    );
    run.check(
        run.stderr.contains(
            "leakcheck: 2 tests marked #[leakcheck] never ran \
             (inner::never_run_second, never_run_first): in a doc test or a `harness = false` \
             target",
        ) && run.stderr.contains("call it from `main`"),
        "names the tests and the way out",
    );
    let run = checked(&["--list"]);
    run.check(
        run.success() && !run.stderr.contains("never ran"),
        "a main that calls leakcheck::harness::main() is quiet",
    );
}

// ---- nextest ----

#[test]
fn nextest_lists_and_runs_the_target_with_the_same_verdicts() {
    checked_exe();
    let run = fixture().nextest(&["--test", "checked"], &[]);
    run.check(!run.success(), "nextest must report failures");
    let parsed = parse_nextest(&run.stderr).binary("harness-fixture::checked");
    let failed = parsed.failed();
    let want = failing_names();
    run.check_same_set(
        "nextest: wrong failing set",
        ("failed but should pass", &failed),
        ("should fail but did not", &want),
    );
    let passed = parsed.with_status("PASS");
    let want: BTreeSet<String> = PASSING.iter().map(|name| name.to_string()).collect();
    run.check(passed == want, &format!("nextest: passing {passed:?}"));
    run.check(
        run.stderr.contains("1 test skipped") || run.stderr.contains("1 skipped"),
        "nextest skips the ignored test",
    );
    for (name, bytes, sites) in LEAKING {
        check_report(&run, name, &parsed.test(name).output, *bytes, sites);
    }
    for (name, message) in FAILING_WITHOUT_REPORT {
        let text = parsed.test(name).output;
        run.check(
            text.contains(message),
            &format!("nextest: `{name}` must fail with `{message}`\n{text}"),
        );
    }
}

// ---- LEAKCHECK_ALL_TESTS ----

#[test]
fn all_tests_mode_keeps_each_attributes_verdict() {
    // Every test the harness runs carries `#[leakcheck]`: under LEAKCHECK_ALL_TESTS=1 its thread
    // is recognised as a test's, and the attribute's check takes it over, so the verdicts, the
    // reports and the exit status are the attribute's alone.
    let run = fixture().run_test(
        &checked_exe(),
        &["--test-threads=4"],
        &[("LEAKCHECK_ALL_TESTS", "1")],
    );
    run.check(
        run.code() == Some(101),
        "libtest's exit status on failure is 101, not the whole-test mode's 23",
    );
    let parsed = parse_libtest(&run.stdout);
    check_passing(&run, &parsed);
    check_failures(&run, &parsed);
    run.check(
        !run.stderr.contains("LEAKCHECK_ALL_TESTS=1"),
        "no test is judged again at the end",
    );
}
