//! `LEAKCHECK_ALL_TESTS=1` end to end: builds `tests/all-tests-fixture`, whose tests carry no
//! attribute, runs its test binary as `cargo test` runs it (1 and 8 test threads, debug and
//! release) and under `cargo nextest run`, and checks that exactly the leaking tests are named,
//! with their byte counts and the `file:line` of each allocation; that the exit status is 23
//! under libtest and that only the leaking tests fail under nextest; and that clean tests that
//! print, panic and catch, initialise lazies and spawn threads stay clean.
//!
//! Every failed assertion prints the whole output of the subprocess it is about.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use support::{parse_libtest, parse_nextest, Fixture, Profile, Run, Verdict};

const TESTS: &str = "tests/unannotated.rs";

/// A leaking test: its name, what its report's first line says after the name, and the sites
/// its report must show (file, the text that starts the allocating expression).
type Leaking = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const LEAKING: &[Leaking] = &[
    (
        "forgotten_vec",
        "1 allocation, 1,024 bytes",
        &[(TESTS, "vec![0u8; 1024]")],
    ),
    (
        "leaked_box",
        "1 allocation, 2,048 bytes",
        &[(TESTS, "vec![7u8; 2048]")],
    ),
    (
        "leak_in_helper",
        "1 allocation, 3,000 bytes",
        &[
            ("src/lib.rs", "vec![0x5au8; bytes]"),
            (TESTS, "all_tests_fixture::leak_here(3000)"),
        ],
    ),
    (
        "rc_cycle",
        "464 (232 direct, 232 indirect) bytes in 2 allocations",
        &[
            (TESTS, "Rc::new(Node {\n        next: RefCell::new(None)"),
            (TESTS, "Rc::new(Node {\n        next: RefCell::new(Some"),
        ],
    ),
    // On a thread the test starts and joins.
    (
        "leak_in_spawned_thread",
        "1 allocation, 4,096 bytes",
        &[(TESTS, "vec![0u8; 4096]")],
    ),
    (
        "nested::deep_leaking",
        "1 allocation, 1,500 bytes",
        &[(TESTS, "vec![0u8; 1500]")],
    ),
];

/// Tests libtest fails by itself: the attribute's own in-test verdict, and a failing assertion.
const FAILING_IN_TEST: &[&str] = &["annotated_leaking", "fails_without_leaking"];

/// Clean tests with something that looks like a leak to a naive check.
const CLEAN: &[&str] = &[
    "allocates_and_frees",
    "annotated_within_allowance",
    "forks_a_child_that_exits",
    "initialises_lazies",
    "panics_and_catches",
    "prints",
    "returns_ok",
    "should_panic_clean",
    "spawns_and_joins",
];

/// `tests/unannotated.rs` also has 40 `many::pNN` tests that print a line each: more results
/// than one block of libtest's result channel holds.
const MANY: usize = 40;

fn fixture() -> Fixture {
    Fixture::new("tests/all-tests-fixture")
}

fn leaking_names() -> BTreeSet<String> {
    LEAKING.iter().map(|(name, ..)| name.to_string()).collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|name| name.to_string()).collect()
}

/// `FILE:LINE:COLUMN` of the only place `needle` starts in the fixture's `file`; `needle` may
/// span lines.
fn site(file: &str, needle: &str) -> String {
    let source = std::fs::read_to_string(fixture().dir().join(file)).unwrap();
    let at: Vec<usize> = source.match_indices(needle).map(|(at, _)| at).collect();
    assert_eq!(at.len(), 1, "`{needle}` in {file}");
    let line = source[..at[0]].matches('\n').count() + 1;
    let line_start = source[..at[0]].rfind('\n').map_or(0, |i| i + 1);
    let column = source[line_start..at[0]].chars().count() + 1;
    format!("{file}:{line}:{column}")
}

/// The exit-time reports on stderr, by test name: from each `leakcheck: memory leak in test`
/// line to the next one or to leakcheck's closing line.
fn reports(stderr: &str) -> BTreeMap<String, String> {
    let mut reports = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in stderr.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("leakcheck: memory leak in test `") {
            reports.extend(current.take());
            let name = rest.split('`').next().unwrap_or_default().to_owned();
            current = Some((name, String::new()));
        } else if line.contains("(LEAKCHECK_ALL_TESTS=1") {
            reports.extend(current.take());
        }
        if let Some((_, text)) = &mut current {
            text.push_str(line);
            text.push('\n');
        }
    }
    reports.extend(current);
    reports
}

/// Exactly the leaking tests have reports, each with its figures and sites.
fn check_reports(run: &Run, stderr: &str) {
    check_reported(run, stderr, true);
}

/// Exactly the leaking tests have reports, each with its figures, and with its sites if
/// `sites` (stacks are on).
fn check_reported(run: &Run, stderr: &str, with_sites: bool) {
    let reports = reports(stderr);
    let named: BTreeSet<String> = reports.keys().cloned().collect();
    let want = leaking_names();
    run.check_same_set(
        "wrong tests reported",
        ("reported but clean", &named),
        ("leaking but not reported", &want),
    );
    for (name, figures, sites) in LEAKING {
        let text = &reports[*name];
        let context = |what: String| format!("report of `{name}`: {what}\n---- it ----\n{text}");
        let header = format!("leakcheck: memory leak in test `{name}`: {figures}");
        run.check(
            text.lines().next() == Some(header.as_str()),
            &context(format!("it must start with `{header}`")),
        );
        for (file, needle) in sites.iter().filter(|_| with_sites) {
            let at = format!("at {}", site(file, needle));
            run.check(
                text.lines().any(|line| line == at),
                &context(format!("no frame `{at}`")),
            );
        }
    }
}

/// The fixture's test binary under libtest, with `LEAKCHECK_ALL_TESTS=1` and `env`.
fn run_libtest(profile: Profile, threads: usize, env: &[(&str, &str)]) -> Run {
    let fixture = fixture();
    let exe = fixture.build(profile).get("unannotated").to_owned();
    let threads = format!("--test-threads={threads}");
    let mut all = vec![("LEAKCHECK_ALL_TESTS", "1")];
    all.extend_from_slice(env);
    fixture.run_test(&exe, &[&threads], &all)
}

fn check_libtest_verdicts(run: &Run) {
    let parsed = parse_libtest(&run.stdout);
    run.check(
        parsed.with(Verdict::Failed) == names(FAILING_IN_TEST),
        "libtest fails the attribute's leaking test and the failing assertion, nothing else",
    );
    let passed = parsed.with(Verdict::Ok);
    run.check(
        passed.len() == LEAKING.len() + CLEAN.len() + MANY
            && leaking_names().is_subset(&passed)
            && names(CLEAN).is_subset(&passed),
        "libtest passes every other test: it recorded their results before their leaks were judged",
    );
}

// ---- the tests ----

#[test]
fn cargo_test_names_exactly_the_leaking_tests_and_exits_with_23() {
    for (profile, threads) in [
        (Profile::Debug, 1),
        (Profile::Debug, 8),
        (Profile::Release, 8),
    ] {
        let run = run_libtest(profile, threads, &[]);
        run.check(
            run.code() == Some(23),
            "leaks make the exit status 23 (LeakSanitizer's)",
        );
        check_libtest_verdicts(&run);
        check_reports(&run, &run.stderr);
        let last = run.stderr.lines().last().unwrap_or_default();
        run.check(
            last.starts_with(&format!(
                "leakcheck: {} tests leaked memory, reports above (LEAKCHECK_ALL_TESTS=1): exit \
                 status 23",
                LEAKING.len()
            )),
            "one closing line says how many tests leaked and why the status is 23",
        );
        // The attribute's test keeps its in-test verdict and is not judged again at the end.
        run.check(
            parse_libtest(&run.stdout)
                .section("annotated_leaking")
                .contains(
                    "leakcheck: memory leak in test `annotated_leaking`: 1 allocation, 777 bytes",
                ),
            "the annotated test fails in the test, with its report",
        );
    }
}

#[test]
fn the_same_tests_leak_with_rust_backtrace_and_without_stacks() {
    // RUST_BACKTRACE=1: the caught and the failing panics load std's symbolizer, whose caches
    // the attribute's rules excuse. Without stacks those rules cannot apply, but the output
    // capture is freed before the verdict and the runner's blocks before the end, so the
    // printing tests stay clean all the same.
    for (env, with_sites) in [
        (("RUST_BACKTRACE", "1"), true),
        (("LEAKCHECK_BACKTRACE", "0"), false),
    ] {
        let run = run_libtest(Profile::Debug, 4, &[env]);
        run.check(run.code() == Some(23), "leaks make the exit status 23");
        check_libtest_verdicts(&run);
        check_reported(&run, &run.stderr, with_sites);
    }
}

#[test]
fn nextest_fails_exactly_the_leaking_tests_with_their_reports() {
    fixture().build(Profile::Debug);
    let run = fixture().nextest(&[], &[("LEAKCHECK_ALL_TESTS", "1")]);
    let parsed = parse_nextest(&run.stderr).binary("all-tests-fixture::unannotated");
    let failed = parsed.failed();
    let want: BTreeSet<String> = leaking_names()
        .into_iter()
        .chain(names(FAILING_IN_TEST))
        .collect();
    run.check_same_set(
        "nextest: wrong failing set",
        ("failed but should pass", &failed),
        ("should fail but did not", &want),
    );
    run.check(
        parsed.with_status("PASS").len() == CLEAN.len() + MANY,
        "nextest passes the clean tests",
    );
    for (name, ..) in LEAKING {
        let stderr = parsed.test(name).stderr();
        let alone: String = support::trimmed_lines(&stderr).join("\n");
        let reports = reports(&alone);
        run.check(
            reports.keys().collect::<Vec<_>>() == [name],
            &format!("`{name}`'s output holds its own report only\n{stderr}"),
        );
        run.check(
            alone.contains("leakcheck: 1 test leaked memory, reports above (LEAKCHECK_ALL_TESTS=1): exit status 23"),
            &format!("`{name}` fails for its exit status 23\n{stderr}"),
        );
    }
    let leaking_only: String = LEAKING
        .iter()
        .map(|(name, ..)| {
            support::trimmed_lines(&parsed.test(name).stderr())
                .join("\n")
                .to_string()
                + "\n"
        })
        .collect();
    check_reports(&run, &leaking_only);
}

#[test]
fn without_the_variable_only_the_attribute_checks() {
    let fixture = fixture();
    let exe = fixture.build(Profile::Debug).get("unannotated").to_owned();
    let run = fixture.run_test(&exe, &[], &[]);
    run.check(run.code() == Some(101), "libtest's status for its failures");
    check_libtest_verdicts(&run);
    run.check(
        reports(&run.stderr).is_empty() && !run.stderr.contains("LEAKCHECK_ALL_TESTS"),
        "no test without the attribute is checked",
    );
}

#[test]
fn warn_prints_the_reports_and_keeps_the_runners_status() {
    let run = run_libtest(Profile::Debug, 4, &[("LEAKCHECK", "warn")]);
    // `fails_without_leaking` still fails; `annotated_leaking` passes with a warning.
    run.check(run.code() == Some(101), "the exit status is libtest's");
    let parsed = parse_libtest(&run.stdout);
    run.check(
        parsed.with(Verdict::Failed) == names(&["fails_without_leaking"]),
        "only the failing assertion fails",
    );
    let mut stderr = run.stderr.clone();
    // The attribute's warning for `annotated_leaking` goes to stderr too, during the run.
    if let Some(at) = stderr.find("leakcheck: memory leak in test `annotated_leaking`") {
        let end = stderr[at..]
            .find("SUMMARY: leakcheck:")
            .map_or(stderr.len(), |i| at + i);
        stderr.replace_range(at..end, "");
    }
    check_reports(&run, &stderr);
    run.check(
        run.stderr.lines().last()
            == Some(&*format!(
                "leakcheck: {} tests leaked memory (LEAKCHECK_ALL_TESTS=1 with LEAKCHECK=warn: \
                 the exit status is the test runner's)",
                LEAKING.len()
            )),
        "the closing line says the status is the runner's",
    );
}

#[test]
fn an_invalid_value_stops_the_run_naming_the_variable() {
    let fixture = fixture();
    let exe = fixture.build(Profile::Debug).get("unannotated").to_owned();
    for value in ["yes", "true", "2"] {
        let run = fixture.run_test(&exe, &[], &[("LEAKCHECK_ALL_TESTS", value)]);
        run.check(run.code() == Some(2), "exit status 2, before any test runs");
        run.check(
            run.stderr.contains(&format!(
                "leakcheck: LEAKCHECK_ALL_TESTS={value:?} is not a valid setting; allowed \
                 values: `0` (the default), `1`"
            )),
            "the message names the variable and the allowed values",
        );
        run.check(
            parse_libtest(&run.stdout).verdicts.is_empty(),
            "no test ran",
        );
    }
}
