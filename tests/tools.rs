//! The test-tool matrix: builds `tests/tools-fixture`, whose `matrix` test binary combines
//! `#[leakcheck]` with rstest, test-log, tokio, async-std, smol, futures, proptest, quickcheck,
//! serial_test and tracing-subscriber, and checks that each test is registered once, that under
//! `cargo test` at 1, 2 and 8 threads and under `cargo nextest run` exactly the leaking tests
//! fail, each with its own byte count at the `file:line` of its `// site: NAME` marker, and that
//! every suppression a report suggests suppresses its own leak and no other.
//!
//! CI runs the `--list` and nextest checks. The `cargo test` and suppression checks are
//! ignored until leakcheck's verdicts are stable there (each says why), and
//! `stable_verdicts_over_repeated_parallel_runs` (80 runs of the binary) measures how stable
//! they are; `cargo test --test tools -- --ignored` runs all three, and docs/accuracy.md has
//! the figures.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use support::{parse_libtest, parse_nextest, thousands, trimmed_lines, Fixture, Profile, Run};
use support::{printed_groups, Libtest, Printed, Verdict};

fn fixture() -> Fixture {
    Fixture::new("tests/tools-fixture")
}

/// The fixture's test binary (`tests/matrix.rs`) and its nextest id.
const BINARY: &str = "matrix";
const NEXTEST_BINARY: &str = "tools-fixture::matrix";
const FILE: &str = "tests/matrix.rs";

/// The tests that must pass.
const CLEAN: &[&str] = &[
    "rstest_cases::clean_rstest_above::case_1",
    "rstest_cases::clean_rstest_above::case_2",
    "rstest_cases::clean_rstest_below::case_1",
    "rstest_cases::clean_rstest_below::case_2",
    "test_log_tests::clean_test_log_above",
    "test_log_tests::clean_test_log_below",
    "test_log_tests::clean_test_log_tokio_above",
    "test_log_tests::clean_test_log_tokio_below",
    "tokio_tests::clean_current_thread_above",
    "tokio_tests::clean_current_thread_below",
    "tokio_tests::clean_multi_thread_above",
    "tokio_tests::clean_multi_thread_below",
    "async_std_tests::clean_async_std_above",
    "async_std_tests::clean_async_std_below",
    "smol_tests::clean_block_on_local_executor",
    "smol_tests::clean_smol_spawn",
    "futures_tests::clean_block_on_join",
    "futures_tests::clean_local_pool_spawn",
    "proptest_tests::clean_proptest",
    "quickcheck_tests::clean_quickcheck_attribute",
    "quickcheck_tests::clean_quickcheck_macro",
    "serial_tests::clean_serial_above",
    "serial_tests::clean_serial_below",
    "serial_tests::clean_serial_other_key",
    "serial_tests::clean_parallel_above",
    "serial_tests::clean_parallel_below",
    "tracing_tests::clean_fmt_try_init",
    "tracing_tests::clean_fmt_try_init_in_a_thread",
    "tracing_tests::clean_fmt_try_init_with_a_span",
];

/// The tests that must fail, each with one lost block of a size no other test loses, made on the
/// line of `tests/matrix.rs` marked `// site: MARKER`.
const LEAKS: &[(&str, usize, &str)] = &[
    (
        "rstest_cases::leak_rstest_above::case_1",
        1_101,
        "rstest_case",
    ),
    (
        "rstest_cases::leak_rstest_above::case_2",
        1_102,
        "rstest_case",
    ),
    (
        "rstest_cases::leak_rstest_below::case_1",
        1_203,
        "rstest_below",
    ),
    (
        "test_log_tests::leak_test_log_above",
        2_101,
        "test_log_above",
    ),
    (
        "test_log_tests::leak_test_log_below",
        2_202,
        "test_log_below",
    ),
    (
        "test_log_tests::leak_test_log_tokio_above",
        2_303,
        "test_log_tokio_above",
    ),
    (
        "test_log_tests::leak_test_log_tokio_below",
        2_404,
        "test_log_tokio_below",
    ),
    (
        "tokio_tests::leak_current_thread_above",
        3_101,
        "tokio_current_above",
    ),
    (
        "tokio_tests::leak_current_thread_below",
        3_202,
        "tokio_current_below",
    ),
    (
        "tokio_tests::leak_multi_thread_above",
        3_303,
        "tokio_multi_above",
    ),
    (
        "tokio_tests::leak_multi_thread_below",
        3_404,
        "tokio_multi_below",
    ),
    (
        "async_std_tests::leak_async_std_above",
        4_101,
        "async_std_above",
    ),
    (
        "async_std_tests::leak_async_std_below",
        4_202,
        "async_std_below",
    ),
    ("smol_tests::leak_block_on", 5_101, "smol_block_on"),
    ("smol_tests::leak_smol_spawn", 5_202, "smol_spawn"),
    ("futures_tests::leak_block_on", 6_101, "futures_block_on"),
    ("proptest_tests::leak_proptest", 7_101, "proptest"),
    (
        "quickcheck_tests::leak_quickcheck_attribute",
        8_101,
        "quickcheck_attribute",
    ),
    (
        "quickcheck_tests::leak_quickcheck_macro",
        8_202,
        "quickcheck_macro",
    ),
    ("serial_tests::leak_serial", 9_101, "serial_key"),
    ("serial_tests::leak_serial_new_key", 9_202, "serial_new_key"),
    ("serial_tests::leak_parallel", 9_303, "parallel"),
    ("tracing_tests::leak_fmt_try_init", 10_101, "tracing"),
];

fn names(list: impl IntoIterator<Item = &'static str>) -> BTreeSet<String> {
    list.into_iter().map(str::to_owned).collect()
}

fn clean() -> BTreeSet<String> {
    names(CLEAN.iter().copied())
}

fn leaking() -> BTreeSet<String> {
    names(LEAKS.iter().map(|(name, _, _)| *name))
}

// ---- reading a report ----

/// What is wrong with the report of leaking test `name` (`text`: what the runner showed for
/// it), or `None`: it must hold exactly one group, the test's own block at its site, and the
/// summary line with its byte count.
fn report_problem(name: &str, bytes: usize, marker: &str, text: &str) -> Option<String> {
    let site = fixture().line(FILE, &format!("// site: {marker}"));
    let want = vec![(bytes, 1, "definitely lost".to_owned(), site)];
    let got = printed_groups(text);
    if got != want {
        return Some(format!(
            "`{name}`: wrong groups (bytes, allocations, kind, site)\n  want {want:?}\n  got {got:?}\n---- its output ----\n{text}"
        ));
    }
    let summary = format!(
        "SUMMARY: leakcheck: {} bytes leaked in 1 allocation",
        thousands(bytes)
    );
    if !trimmed_lines(text).contains(&summary.as_str()) {
        return Some(format!(
            "`{name}`: no line `{summary}`\n---- its output ----\n{text}"
        ));
    }
    None
}

/// The failing and passing sets every run must have: the leaking tests fail, the clean ones
/// pass.
fn expected_sets() -> (BTreeSet<String>, BTreeSet<String>) {
    (leaking(), clean())
}

/// Checks one `cargo test` run's verdicts and reports; `what` names it.
fn check_libtest_run(run: &Run, what: &str) {
    let parsed = parse_libtest(&run.stdout);
    let (expected_failing, expected_passing) = expected_sets();
    run.check_same_set(
        &format!("{what}: wrong failing set"),
        ("failed but should pass", &parsed.with(Verdict::Failed)),
        ("should fail but did not", &expected_failing),
    );
    run.check_same_set(
        &format!("{what}: wrong passing set"),
        ("passed but should fail", &parsed.with(Verdict::Ok)),
        ("should pass but did not run or pass", &expected_passing),
    );
    for (name, bytes, marker) in LEAKS {
        if let Some(problem) = report_problem(name, *bytes, marker, parsed.section(name)) {
            run.check(false, &format!("{what}: {problem}"));
        }
    }
}

// ---- the tests ----

#[test]
fn every_test_is_listed_exactly_once() {
    let fixture = fixture();
    let exe = fixture.build(Profile::Debug);
    let run = fixture.run_test(exe.get(BINARY), &["--list"], &[]);
    run.check(run.success(), "--list failed");
    let mut listed: BTreeMap<&str, usize> = BTreeMap::new();
    for name in run.stdout.lines().filter_map(|l| l.strip_suffix(": test")) {
        *listed.entry(name).or_default() += 1;
    }
    let twice: Vec<_> = listed.iter().filter(|(_, n)| **n > 1).collect();
    run.check(
        twice.is_empty(),
        &format!("registered more than once: {twice:?}"),
    );
    let listed: BTreeSet<String> = listed.keys().map(|n| n.to_string()).collect();
    let expected: BTreeSet<String> = clean().union(&leaking()).cloned().collect();
    assert_eq!(
        expected.len(),
        CLEAN.len() + LEAKS.len(),
        "a name is here twice"
    );
    run.check_same_set(
        "the fixture and this file disagree",
        ("only in the fixture", &listed),
        ("only here", &expected),
    );
    let sizes: BTreeSet<usize> = LEAKS.iter().map(|(_, bytes, _)| *bytes).collect();
    assert_eq!(
        sizes.len(),
        LEAKS.len(),
        "two leaking tests lose the same size"
    );
}

/// Each thread count interleaves the tests differently: which one first starts a shared
/// executor (async-std's, smol's), takes a serial_test key or installs the global tracing
/// subscriber changes with it.
///
/// Ignored: its verdicts are not stable yet, for reasons in leakcheck (docs/accuracy.md, "The
/// test-tool matrix", has the rates). Leaks are missed: a lost block is counted "still
/// reachable" because a stale word holds its address (`reachable = "fail"` on a copy of the
/// test shows it), for tokio, smol and test-log tests, at every thread count, at rates that
/// move with the build. For the test-log tests a likely holder is known: when another test has
/// installed the global subscriber, test-log's `try_init` fails and drops its own, and
/// tracing-core keeps the dropped subscriber's memory allocated (a `Weak` in its list of
/// dispatchers) with the addresses of the blocks it freed still in it. And clean tests fail
/// under parallel runs with reports other than the span deviation above: a dropped
/// subscriber's `Dispatch::new` block; a new serial_test key inserted into the lock map's
/// table that a test with `#[serial]` below `#[leakcheck]` made outside every check.
/// `cargo nextest run` (a process per test) checks the same verdicts and reports in CI.
#[test]
#[ignore = "unstable verdicts (missed leaks, false leaks) under cargo test; see docs/accuracy.md"]
fn cargo_test_fails_exactly_the_leaking_tests_at_1_2_and_8_threads() {
    let fixture = fixture();
    let exe = fixture.build(Profile::Debug);
    for threads in [1, 2, 8] {
        let arg = format!("--test-threads={threads}");
        let run = fixture.run_test(exe.get(BINARY), &[&arg], &[]);
        check_libtest_run(&run, &format!("cargo test {arg}"));
    }
    // CI often sets it: std's backtrace capture in the panic of each failing test, and
    // test-log's and tracing's formatting, must not change a verdict.
    let run = fixture.run_test(
        exe.get(BINARY),
        &["--test-threads=8"],
        &[("RUST_BACKTRACE", "1")],
    );
    check_libtest_run(&run, "RUST_BACKTRACE=1 cargo test --test-threads=8");
}

#[test]
fn nextest_fails_exactly_the_leaking_tests() {
    let fixture = fixture();
    // Built first so that nextest's own build finds everything up to date.
    fixture.build(Profile::Debug);
    let run = fixture.nextest(&[], &[]);
    let parsed = parse_nextest(&run.stderr).binary(NEXTEST_BINARY);
    let (expected_failing, expected_passing) = expected_sets();
    run.check_same_set(
        "cargo nextest run: wrong failing set",
        ("failed but should pass", &parsed.failed()),
        ("should fail but did not", &expected_failing),
    );
    run.check_same_set(
        "cargo nextest run: wrong passing set",
        ("passed but should fail", &parsed.with_status("PASS")),
        ("should pass but did not run or pass", &expected_passing),
    );
    for (name, bytes, marker) in LEAKS {
        let text = parsed.test(name).stderr();
        if let Some(problem) = report_problem(name, *bytes, marker, &text) {
            run.check(false, &format!("cargo nextest run: {problem}"));
        }
    }
}

/// The groups each leaking test reports when it runs alone (`--exact`, a process of its own, as
/// under nextest), with `env`, and the whole output of that run.
fn groups_alone(
    exe: &std::path::Path,
    env: &[(&str, &str)],
) -> BTreeMap<String, (Vec<Printed>, String)> {
    let fixture = fixture();
    LEAKS
        .iter()
        .map(|(name, _, _)| {
            let run = fixture.run_test(exe, &["--exact", name], env);
            let parsed = parse_libtest(&run.stdout);
            let groups = printed_groups(parsed.section(name));
            (name.to_string(), (groups, run.to_string()))
        })
        .collect()
}

/// Every suppression a report suggests, pasted alone into a suppression file, suppresses the
/// leak it came from and no other (as in tests/accuracy.rs). Each leaking test runs alone, as
/// under nextest: in one process after the others, `test_log_tests::leak_test_log_tokio_below`
/// can pass without any suppression (see the ignored `cargo test` check above).
///
/// Ignored: it fails every time here. With `LEAKCHECK_SUPPRESSIONS` naming a file of one
/// rule that matches nothing in the test, at a path of 30 characters or more (this test's is
/// longer), `smol_tests::leak_block_on` passes: the file's loading moves blocks so that its
/// 5,101-byte block is counted still reachable through a stale word (`reachable = "fail"`
/// shows it), and the check reads that as the rule suppressing it. At a short path every rule
/// suppresses its own leak and no other. docs/accuracy.md has the commands.
#[test]
#[ignore = "fails: a suppression file moves blocks and a stale word then hides smol_tests::leak_block_on's leak; see docs/accuracy.md"]
fn each_suggested_suppression_suppresses_its_own_leak_and_no_other() {
    const SUGGESTS: &str = "to suppress, add to leakcheck.supp: ";
    let fixture = fixture();
    let exe = fixture.build(Profile::Debug);
    let matrix = exe.get(BINARY);
    let mut suggested: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut before: BTreeMap<String, Vec<Printed>> = BTreeMap::new();
    for (name, _, _) in LEAKS {
        let run = fixture.run_test(matrix, &["--exact", name], &[]);
        let report = parse_libtest(&run.stdout).section(name).to_owned();
        let rules: Vec<&str> = trimmed_lines(&report)
            .into_iter()
            .filter_map(|line| line.strip_prefix(SUGGESTS))
            .collect();
        run.check(
            !rules.is_empty(),
            &format!("`{name}` suggests no suppression"),
        );
        for rule in rules {
            suggested
                .entry(rule.to_owned())
                .or_default()
                .insert(name.to_string());
        }
        before.insert(name.to_string(), printed_groups(&report));
    }
    let file = support::target_dir().join("tools-suggested.supp");
    for (rule, from) in &suggested {
        std::fs::write(&file, format!("{rule}\n")).unwrap();
        let after = groups_alone(
            matrix,
            &[("LEAKCHECK_SUPPRESSIONS", file.to_str().unwrap())],
        );
        for (name, groups) in &before {
            let (now, output) = &after[name];
            if from.contains(name) {
                assert!(
                    now.len() < groups.len(),
                    "`{rule}`, suggested by `{name}`, did not suppress any of its groups\n{output}"
                );
            } else {
                assert!(
                    now == groups,
                    "`{rule}` (suggested by {from:?}) changed `{name}`'s report\n  before {groups:?}\n  after {now:?}\n{output}"
                );
            }
        }
    }
}

/// Verdicts over repeated parallel runs: 20 runs each at 8 and at 2 threads, with
/// `RUST_BACKTRACE` unset and `=1` (80 runs). Every deviation (a clean test failing, a leak
/// missed or misreported) is printed with its report, and any fails the test.
/// Ignored by default for its length; run with
/// `cargo test --test tools -- --ignored --nocapture`.
#[test]
#[ignore = "80 runs of the fixture; run it with --ignored to measure stability"]
fn stable_verdicts_over_repeated_parallel_runs() {
    const RUNS: usize = 20;
    let fixture = fixture();
    let exe = fixture.build(Profile::Debug);
    let mut deviations: Vec<String> = Vec::new();
    for threads in [8, 2] {
        for backtrace in [None, Some("1")] {
            let env: Vec<(&str, &str)> = backtrace
                .map(|v| ("RUST_BACKTRACE", v))
                .into_iter()
                .collect();
            let mut deviating_runs = 0;
            for i in 1..=RUNS {
                let arg = format!("--test-threads={threads}");
                let run = fixture.run_test(exe.get(BINARY), &[&arg], &env);
                let parsed = parse_libtest(&run.stdout);
                let what = format!(
                    "RUST_BACKTRACE={} --test-threads={threads}, run {i}/{RUNS}",
                    backtrace.unwrap_or("unset")
                );
                let before = deviations.len();
                deviations.extend(run_deviations(&what, &run, &parsed));
                deviating_runs += usize::from(deviations.len() > before);
            }
            println!(
                "RUST_BACKTRACE={} --test-threads={threads}: {deviating_runs} of {RUNS} runs deviated",
                backtrace.unwrap_or("unset")
            );
        }
    }
    for deviation in &deviations {
        println!("==== deviation ====\n{deviation}");
    }
    assert_eq!(deviations.len(), 0, "deviations (printed above)");
}

/// Every way run `what` differs from the expected verdicts and reports.
fn run_deviations(what: &str, run: &Run, parsed: &Libtest) -> Vec<String> {
    let mut found = Vec::new();
    for name in CLEAN {
        match parsed.verdicts.get(*name) {
            Some(Verdict::Ok) => {}
            verdict => {
                let section = parsed.section(name);
                found.push(format!("{what}: clean `{name}` {verdict:?}\n{section}"));
            }
        }
    }
    for (name, bytes, marker) in LEAKS {
        match parsed.verdicts.get(*name) {
            Some(Verdict::Failed) => {
                if let Some(problem) = report_problem(name, *bytes, marker, parsed.section(name)) {
                    found.push(format!("{what}: {problem}"));
                }
            }
            verdict => found.push(format!(
                "{what}: leaking `{name}` {verdict:?} (leak missed)"
            )),
        }
    }
    if found.is_empty() && parsed.verdicts.len() != CLEAN.len() + LEAKS.len() {
        found.push(format!("{what}: {} verdicts\n{run}", parsed.verdicts.len()));
    }
    found
}
