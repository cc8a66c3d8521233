//! Control options end to end, through the attribute: builds `tests/control-fixture`
//! (tests that use every option of `#[leakcheck(...)]`, the module form, and leaks that
//! suppression files match), runs its test binaries under `cargo test` (parallel) and
//! `cargo nextest run`, with and without suppression files and with bad settings, and asserts
//! which tests fail and what each report says: figures, budgets and allowances, file:line of
//! the frames, suppressions used, and the errors.
//!
//! Every failed assertion prints the whole output of the subprocess it is about.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use support::{parse_libtest, parse_nextest, target_dir, Fixture, Profile, Run, Verdict};

const OPTIONS: &str = "tests/options.rs";
const SUPPRESSIONS: &str = "tests/suppressions.rs";

fn fixture() -> Fixture {
    Fixture::new("tests/control-fixture")
}

fn exe(name: &str) -> PathBuf {
    fixture().build(Profile::Debug).get(name).to_owned()
}

/// A fresh, empty directory for one test's files (suppression files, fake workspaces).
fn scratch(name: &str) -> PathBuf {
    let dir = target_dir().join("control-scratch").join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

// ---- what a report must say ----

/// One thing a test's output must (or must not) show, compared line by line, trimmed.
enum Want {
    /// A whole line.
    Line(String),
    /// Frame `N: FUNCTION` followed by its `at FILE:LINE:COLUMN` line.
    Frame(usize, String, String),
    /// Text that must not appear anywhere.
    Absent(&'static str),
}

fn line(text: impl Into<String>) -> Want {
    Want::Line(text.into())
}

/// Frame `index` is `function`, at the only occurrence of `needle` in the fixture's `file`.
fn frame_in(index: usize, function: impl Into<String>, file: &str, needle: &str) -> Want {
    Want::Frame(index, function.into(), fixture().site(file, needle))
}

/// Frame `index` is the body of options test `test`, at `needle` in tests/options.rs.
fn body(index: usize, test: &str, needle: &str) -> Want {
    let function = format!("options::{test}::{{{{closure}}}}");
    frame_in(index, function, OPTIONS, needle)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!(
        "{} {}",
        support::thousands(n),
        if n == 1 { one } else { many }
    )
}

/// The headline and the summary of a leak that fails test `test`.
fn leak(test: &str, allocations: usize, bytes: usize) -> Vec<Want> {
    vec![
        line(format!(
            "leakcheck: memory leak in test `{test}`: {}, {}",
            plural(allocations, "allocation", "allocations"),
            plural(bytes, "byte", "bytes")
        )),
        line(format!(
            "SUMMARY: leakcheck: {} leaked in {}",
            plural(bytes, "byte", "bytes"),
            plural(allocations, "allocation", "allocations")
        )),
    ]
}

/// The headline of leaks within the allowance (they pass, and still show).
fn within(test: &str, allocations: usize, bytes: usize) -> Vec<Want> {
    vec![
        line(format!(
            "leakcheck: leaks in test `{test}` are within the allowance: {}, {}",
            plural(allocations, "allocation", "allocations"),
            plural(bytes, "byte", "bytes")
        )),
        Want::Absent("SUMMARY"),
    ]
}

fn allowance(bytes: Option<usize>, allocations: Option<usize>) -> Want {
    let limit = |n: Option<usize>| n.map_or("unlimited".to_owned(), support::thousands);
    line(format!(
        "allowance: allow_bytes = {}, allow_allocs = {}",
        limit(bytes),
        limit(allocations)
    ))
}

/// A group's first line: `BYTES in N allocations KIND, allocated at:`.
fn group(bytes: usize, allocations: usize, kind: &str) -> Want {
    line(format!(
        "{} in {} {kind}, allocated at:",
        plural(bytes, "byte", "bytes"),
        plural(allocations, "allocation", "allocations")
    ))
}

fn budget_exceeded(test: &str) -> Want {
    line(format!("leakcheck: heap budget exceeded in test `{test}`"))
}

const PAST_THE_BUDGET: &str = "the first allocation past the budget was made at:";

fn suppression_used(bytes: usize, allocations: usize, pattern: &str, origin: &str) -> Want {
    line(format!(
        "{} in {}: leak:{pattern} ({origin})",
        plural(bytes, "byte", "bytes"),
        plural(allocations, "allocation", "allocations")
    ))
}

const IGNORE: &str = "#[leakcheck(ignore)]";

/// Panics (with the subprocess's output) unless `text`, the output of test `name`, shows
/// every one of `wants`.
fn check_wants(run: &Run, label: &str, name: &str, text: &str, wants: &[Want]) {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let context = |what: String| format!("{label}: `{name}`: {what}\n---- its output ----\n{text}");
    for want in wants {
        match want {
            Want::Line(wanted) => run.check(
                lines.contains(&wanted.as_str()),
                &context(format!("no line `{wanted}`")),
            ),
            Want::Frame(index, function, at) => {
                let (frame, at) = (format!("{index}: {function}"), format!("at {at}"));
                run.check(
                    lines.windows(2).any(|w| w[0] == frame && w[1] == at),
                    &context(format!("no frame `{frame}` followed by `{at}`")),
                );
            }
            Want::Absent(unwanted) => run.check(
                !text.contains(unwanted),
                &context(format!("`{unwanted}` must not appear")),
            ),
        }
    }
}

// ---- what the fixture's `tests/options.rs` must do ----

struct Case {
    name: &'static str,
    fails: bool,
    wants: Vec<Want>,
}

fn fails(name: &'static str, wants: Vec<Want>) -> Case {
    Case {
        name,
        fails: true,
        wants,
    }
}

fn passes(name: &'static str, wants: Vec<Want>) -> Case {
    Case {
        name,
        fails: false,
        wants,
    }
}

/// A passing test that prints nothing.
fn silent(name: &'static str) -> Case {
    passes(name, vec![Want::Absent("leakcheck")])
}

fn cat(parts: Vec<Vec<Want>>) -> Vec<Want> {
    parts.into_iter().flatten().collect()
}

/// Every test of the options binary, with its verdict and what its output must show (a
/// passing test's output is seen with `--show-output`).
fn option_cases() -> Vec<Case> {
    let lost = "definitely lost";
    vec![
        // allow_bytes, allow_allocs
        passes(
            "allow_bytes_within",
            cat(vec![
                within("allow_bytes_within", 1, 100),
                vec![
                    allowance(Some(100), None),
                    group(100, 1, lost),
                    body(0, "allow_bytes_within", "vec![0u8; 100]"),
                ],
            ]),
        ),
        fails(
            "allow_bytes_beyond",
            cat(vec![
                leak("allow_bytes_beyond", 1, 101),
                vec![
                    allowance(Some(100), None),
                    group(101, 1, lost),
                    body(0, "allow_bytes_beyond", "vec![0u8; 101]"),
                ],
            ]),
        ),
        passes(
            "allow_allocs_within",
            cat(vec![
                within("allow_allocs_within", 2, 60),
                vec![allowance(None, Some(2)), group(60, 2, lost)],
            ]),
        ),
        fails(
            "allow_allocs_beyond",
            cat(vec![
                leak("allow_allocs_beyond", 3, 93),
                vec![
                    allowance(None, Some(2)),
                    group(93, 3, lost),
                    body(0, "allow_allocs_beyond", "vec![0u8; 31]"),
                ],
            ]),
        ),
        passes(
            "allow_both_within",
            cat(vec![
                within("allow_both_within", 2, 100),
                vec![allowance(Some(100), Some(2))],
            ]),
        ),
        fails(
            "allow_both_beyond_by_count",
            cat(vec![
                leak("allow_both_beyond_by_count", 3, 60),
                vec![allowance(Some(100), Some(2)), group(60, 3, lost)],
            ]),
        ),
        fails(
            "allow_both_beyond_by_bytes",
            cat(vec![
                leak("allow_both_beyond_by_bytes", 1, 150),
                vec![allowance(Some(100), Some(2)), group(150, 1, lost)],
            ]),
        ),
        // max_allocs, max_bytes, max_peak_bytes
        silent("max_allocs_zero_pure"),
        fails(
            "max_allocs_zero_allocates",
            vec![
                budget_exceeded("max_allocs_zero_allocates"),
                line("1 allocation made; the budget is max_allocs = 0"),
                line(PAST_THE_BUDGET),
                body(0, "max_allocs_zero_allocates", "vec![0u8; 16]"),
                Want::Absent("memory leak"),
            ],
        ),
        silent("max_allocs_within"),
        fails(
            "max_allocs_beyond",
            vec![
                budget_exceeded("max_allocs_beyond"),
                line("4 allocations made; the budget is max_allocs = 2"),
                line(PAST_THE_BUDGET),
                // The third box: the first allocation past a budget of two.
                body(0, "max_allocs_beyond", "Box::new(13u64)"),
            ],
        ),
        silent("max_bytes_within"),
        fails(
            "max_bytes_beyond",
            vec![
                budget_exceeded("max_bytes_beyond"),
                line("3,003 bytes allocated in total; the budget is max_bytes = 2,999"),
                Want::Absent("max_allocs"),
                Want::Absent("max_peak_bytes"),
            ],
        ),
        silent("max_peak_bytes_within"),
        fails(
            "max_peak_bytes_beyond",
            vec![
                budget_exceeded("max_peak_bytes_beyond"),
                line("2,007 bytes live at the peak; the budget is max_peak_bytes = 1,500"),
                Want::Absent("max_bytes ="),
            ],
        ),
        silent("budgets_all_within"),
        fails(
            "budgets_all_beyond",
            vec![
                budget_exceeded("budgets_all_beyond"),
                line("3 allocations made; the budget is max_allocs = 2"),
                body(0, "budgets_all_beyond", "vec![0u8; 403]"),
                line("1,206 bytes allocated in total; the budget is max_bytes = 1,000"),
                line("1,206 bytes live at the peak; the budget is max_peak_bytes = 600"),
            ],
        ),
        // allowances with budgets
        passes(
            "allowance_and_budget_within",
            cat(vec![
                within("allowance_and_budget_within", 1, 60),
                vec![allowance(Some(100), None), Want::Absent("heap budget")],
            ]),
        ),
        fails(
            "allowance_within_budget_beyond",
            vec![
                line(
                    "leakcheck: leaks in test `allowance_within_budget_beyond` are within the \
                     allowance: 1 allocation, 61 bytes",
                ),
                budget_exceeded("allowance_within_budget_beyond"),
                allowance(Some(100), None),
                line("3 allocations made; the budget is max_allocs = 2"),
                body(0, "allowance_within_budget_beyond", "vec![0u8; 10]"),
                group(61, 1, lost),
                body(0, "allowance_within_budget_beyond", "vec![0u8; 61]"),
            ],
        ),
        // repeat
        fails(
            "repeat_grows_every_run",
            vec![
                line(
                    "leakcheck: memory grew in every run of test `repeat_grows_every_run`: grew \
                     by [128, 128, 128] bytes per run (repeat = 3, after a warm-up run)",
                ),
                group(128, 1, "grew in the last run"),
                frame_in(0, "options::push", OPTIONS, "Box::new(Node {"),
                body(1, "repeat_grows_every_run", "push(&GROWING);"),
                line("SUMMARY: leakcheck: 128 bytes grew in 1 allocation"),
            ],
        ),
        silent("no_repeat_cache_growth_is_reachable"),
        passes(
            "repeat_grows_every_other_run",
            vec![
                line(
                    "leakcheck: no steady memory growth in test `repeat_grows_every_other_run`: \
                     grew by [128, 0, 128] bytes per run (repeat = 3, after a warm-up run)",
                ),
                Want::Absent("SUMMARY"),
            ],
        ),
        silent("repeat_cache_filled_once"),
        fails(
            "repeat_leaks_every_run",
            vec![
                line(
                    "leakcheck: memory grew in every run of test `repeat_leaks_every_run`: grew \
                     by [72, 72] bytes per run (repeat = 2, after a warm-up run)",
                ),
                group(72, 1, "grew in the last run"),
                body(0, "repeat_leaks_every_run", "vec![0u8; 72]"),
                line("SUMMARY: leakcheck: 72 bytes grew in 1 allocation"),
            ],
        ),
        silent("repeat_with_budget_within"),
        fails(
            "repeat_with_budget_beyond",
            vec![
                line(
                    "leakcheck: no steady memory growth in test `repeat_with_budget_beyond`: \
                     grew by [0, 0, 0] bytes per run (repeat = 3, after a warm-up run)",
                ),
                budget_exceeded("repeat_with_budget_beyond"),
                line("2 allocations made; the budget is max_allocs = 1"),
                body(0, "repeat_with_budget_beyond", "vec![0u8; 51]"),
            ],
        ),
        // shared_threads
        fails(
            "shared_threads_fail_counts_a_worker_left_running",
            cat(vec![
                leak("shared_threads_fail_counts_a_worker_left_running", 1, 4_068),
                vec![
                    group(4_068, 1, lost),
                    frame_in(
                        0,
                        "options::lose_on_the_worker",
                        OPTIONS,
                        "vec![5u8; 4_068]",
                    ),
                ],
            ]),
        ),
        // reachable
        silent("reachable_default_passes"),
        fails(
            "reachable_fail_fails",
            cat(vec![
                leak("reachable_fail_fails", 1, 65),
                vec![
                    group(65, 1, "still reachable"),
                    body(0, "reachable_fail_fails", "Box::new([2u8; 65])"),
                    line(
                        "note: still reachable from statics, thread-locals or the stack: 65 bytes \
                         in 1 allocation, counted as leaks (reachable = \"fail\")",
                    ),
                ],
            ]),
        ),
        passes(
            "reachable_fail_within_allowance",
            cat(vec![
                within("reachable_fail_within_allowance", 1, 66),
                vec![allowance(Some(66), None), group(66, 1, "still reachable")],
            ]),
        ),
        silent("reachable_fail_with_repeat_judges_growth"),
        // ignore
        passes(
            "ignore_by_function_name",
            vec![
                line("leakcheck: no memory leaks in test `ignore_by_function_name`"),
                line("Suppressions used:"),
                suppression_used(300, 1, "^control_fixture::leak_here$", IGNORE),
            ],
        ),
        passes(
            "ignore_by_module_path",
            vec![
                line("Suppressions used:"),
                suppression_used(500, 1, "^control_fixture::cache$", IGNORE),
            ],
        ),
        passes(
            "ignore_by_source_file",
            vec![
                line("Suppressions used:"),
                suppression_used(700, 1, "^src/generated.rs$", IGNORE),
            ],
        ),
        fails(
            "ignore_leaves_other_leaks",
            cat(vec![
                leak("ignore_leaves_other_leaks", 1, 301),
                vec![
                    group(301, 1, lost),
                    frame_in(
                        0,
                        "control_fixture::leak_here",
                        "src/lib.rs",
                        "vec![0x22u8; bytes]",
                    ),
                    body(
                        1,
                        "ignore_leaves_other_leaks",
                        "control_fixture::leak_here(301)",
                    ),
                    line("Suppressions used:"),
                    suppression_used(501, 1, "^control_fixture::cache$", IGNORE),
                ],
            ]),
        ),
        passes(
            "ignore_repeated_with_wildcards",
            vec![
                suppression_used(702, 1, "generated.rs", IGNORE),
                suppression_used(302, 1, "control_fixture::leak_h*e", IGNORE),
            ],
        ),
        fails(
            "ignore_anchored_does_not_match_a_prefix",
            cat(vec![
                leak("ignore_anchored_does_not_match_a_prefix", 1, 303),
                vec![Want::Absent("Suppressions used:")],
            ]),
        ),
        passes(
            "ignore_with_allowance",
            cat(vec![
                within("ignore_with_allowance", 1, 45),
                vec![
                    allowance(Some(50), None),
                    suppression_used(502, 1, "^control_fixture::cache$", IGNORE),
                ],
            ]),
        ),
        passes(
            "ignore_with_reachable_fail",
            vec![
                line("leakcheck: no memory leaks in test `ignore_with_reachable_fail`"),
                suppression_used(68, 1, "options::keep", IGNORE),
            ],
        ),
        // the module form: `#[leakcheck(allow_bytes = 100)] mod module_form`
        passes(
            "module_form::sync_within",
            cat(vec![
                within("module_form::sync_within", 1, 90),
                vec![
                    allowance(Some(100), None),
                    body(0, "module_form::sync_within", "vec![0u8; 90]"),
                ],
            ]),
        ),
        fails(
            "module_form::sync_beyond",
            cat(vec![
                leak("module_form::sync_beyond", 1, 210),
                vec![
                    allowance(Some(100), None),
                    body(0, "module_form::sync_beyond", "vec![0u8; 210]"),
                ],
            ]),
        ),
        passes(
            "module_form::tokio_within",
            cat(vec![
                within("module_form::tokio_within", 1, 91),
                vec![allowance(Some(100), None)],
            ]),
        ),
        fails(
            "module_form::tokio_beyond",
            cat(vec![
                leak("module_form::tokio_beyond", 1, 211),
                vec![
                    allowance(Some(100), None),
                    frame_in(
                        0,
                        "options::module_form::tokio_beyond::{{closure}}::{{closure}}",
                        OPTIONS,
                        "vec![0u8; 211]",
                    ),
                ],
            ]),
        ),
        fails(
            "module_form::helper_beyond",
            cat(vec![
                leak("module_form::helper_beyond", 1, 212),
                vec![
                    allowance(Some(100), None),
                    frame_in(
                        0,
                        "options::module_form::leak_through_helper",
                        OPTIONS,
                        "vec![0u8; bytes]",
                    ),
                    body(1, "module_form::helper_beyond", "leak_through_helper(212)"),
                ],
            ]),
        ),
        passes(
            "module_form::own_attribute_wins",
            cat(vec![
                within("module_form::own_attribute_wins", 1, 500),
                vec![allowance(Some(1000), None)],
            ]),
        ),
        passes(
            "module_form::nested::deep_within",
            cat(vec![
                within("module_form::nested::deep_within", 1, 92),
                vec![allowance(Some(100), None)],
            ]),
        ),
        fails(
            "module_form::nested::deep_beyond",
            cat(vec![
                leak("module_form::nested::deep_beyond", 1, 213),
                vec![
                    allowance(Some(100), None),
                    body(0, "module_form::nested::deep_beyond", "vec![0u8; 213]"),
                ],
            ]),
        ),
    ]
}

/// Panics unless the tests that failed are exactly `want`.
fn check_failing_set(run: &Run, label: &str, failed: &BTreeSet<String>, want: &BTreeSet<String>) {
    run.check(
        failed == want,
        &format!(
            "{label}: wrong failing set\n  failed but should pass: {:?}\n  should fail but did not: {:?}",
            failed.difference(want).collect::<Vec<_>>(),
            want.difference(failed).collect::<Vec<_>>(),
        ),
    );
}

// ---- a neutral dependency ----

/// The options fixture compares a byte slice with `&[]`, which stops compiling (E0283) when a
/// crate in leakcheck's dependencies adds a `PartialEq` impl for `u8`, as serde_json does.
#[test]
fn a_crate_comparing_a_slice_with_an_empty_array_still_compiles_with_leakcheck() {
    assert!(exe("options").exists());
}

// ---- the option tests ----

#[test]
fn every_option_under_parallel_cargo_test_three_runs_in_a_row() {
    for i in 1..=3 {
        check_options_under_cargo_test(&format!("cargo test run {i}/3"));
    }
}

fn check_options_under_cargo_test(label: &str) {
    let run = fixture().run_test(&exe("options"), &["--test-threads=8", "--show-output"], &[]);
    let parsed = parse_libtest(&run.stdout);
    let cases = option_cases();
    let all: BTreeSet<String> = cases.iter().map(|c| c.name.to_owned()).collect();
    run.check(
        parsed.names() == all,
        &format!(
            "the fixture and this file disagree on the tests: only run {:?}, only expected {:?}",
            parsed.names().difference(&all).collect::<Vec<_>>(),
            all.difference(&parsed.names()).collect::<Vec<_>>()
        ),
    );
    let want: BTreeSet<String> = cases
        .iter()
        .filter(|c| c.fails)
        .map(|c| c.name.to_owned())
        .collect();
    check_failing_set(&run, label, &parsed.with(Verdict::Failed), &want);
    for case in &cases {
        let text = parsed.section(case.name);
        check_wants(&run, label, case.name, text, &case.wants);
    }
}

/// The tests the suppressions binary fails with no suppression file but its discovered
/// `leakcheck.supp`.
const UNSUPPRESSED_FAILING: &[&str] = &[
    "by_function_name",
    "by_module_path",
    "by_source_file",
    "partly_suppressed",
];

#[test]
fn every_option_under_nextest_and_the_discovered_file_under_nextest() {
    fixture().build(Profile::Debug);
    let run = fixture().nextest(&[], &[]);
    let parsed = parse_nextest(&run.stderr);
    let options = parsed.binary("control-fixture::options");
    let cases = option_cases();
    let all: BTreeSet<String> = cases.iter().map(|c| c.name.to_owned()).collect();
    run.check(
        options.tests.keys().cloned().collect::<BTreeSet<_>>() == all,
        "nextest must run every options test",
    );
    let want: BTreeSet<String> = cases
        .iter()
        .filter(|c| c.fails)
        .map(|c| c.name.to_owned())
        .collect();
    check_failing_set(&run, "nextest (options)", &options.failed(), &want);
    run.check(
        options.with_status("PASS") == all.difference(&want).cloned().collect(),
        "nextest: every other options test passes",
    );
    for case in cases.iter().filter(|c| c.fails) {
        let stderr = options.test(case.name).stderr();
        check_wants(&run, "nextest", case.name, &stderr, &case.wants);
    }
    // NEXTEST_WORKSPACE_ROOT is the fixture's directory, where its `leakcheck.supp` is.
    let suppressions = parsed.binary("control-fixture::suppressions");
    let want: BTreeSet<String> = UNSUPPRESSED_FAILING.iter().map(|s| s.to_string()).collect();
    check_failing_set(
        &run,
        "nextest (suppressions)",
        &suppressions.failed(),
        &want,
    );
    run.check(
        suppressions.with_status("PASS")
            == BTreeSet::from(["clean".to_owned(), "discovered_file_suppresses".to_owned()]),
        "nextest: the discovered file suppresses `discovered_file_suppresses`",
    );
}

#[test]
fn the_module_form_makes_tests_of_test_functions_only_at_any_depth() {
    let run = fixture().run_test(&exe("options"), &["--list", "module_form::"], &[]);
    run.check(run.success(), "--list succeeds");
    let listed: BTreeSet<&str> = run
        .stdout
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .collect();
    let want = BTreeSet::from([
        "module_form::sync_within",
        "module_form::sync_beyond",
        "module_form::tokio_within",
        "module_form::tokio_beyond",
        "module_form::helper_beyond",
        "module_form::own_attribute_wins",
        "module_form::nested::deep_within",
        "module_form::nested::deep_beyond",
    ]);
    run.check(
        listed == want,
        &format!("the module's tests, and not its helpers: want {want:#?}"),
    );
}

// ---- suppression files ----

fn suppressions(args: &[&str], env: &[(&str, &str)]) -> Run {
    fixture().run_test(&exe("suppressions"), args, env)
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn a_suppression_file_matches_by_function_module_path_and_source_file() {
    let file = scratch("by_kind").join("known.supp");
    write(
        &file,
        "# known leaks\n\
         leak:^control_fixture::leak_here$\n\
         leak:^control_fixture::cache$\n\
         leak:src/generated.rs\n\
         leak:^never_matches_anything$\n",
    );
    let origin = |line: usize| format!("{}:{line}", file.display());
    let run = suppressions(
        &["--test-threads=8", "--show-output"],
        &[("LEAKCHECK_SUPPRESSIONS", path_str(&file))],
    );
    let parsed = parse_libtest(&run.stdout);
    // The explicit file replaces the discovered `leakcheck.supp`.
    let want = BTreeSet::from([
        "partly_suppressed".to_owned(),
        "discovered_file_suppresses".to_owned(),
    ]);
    check_failing_set(
        &run,
        "LEAKCHECK_SUPPRESSIONS",
        &parsed.with(Verdict::Failed),
        &want,
    );
    run.check(
        parsed.with(Verdict::Ok).len() == 4,
        "the other four tests pass",
    );
    let label = "LEAKCHECK_SUPPRESSIONS";
    let used = |name: &str, wants: &[Want]| {
        check_wants(&run, label, name, parsed.section(name), wants);
    };
    used(
        "by_function_name",
        &[
            line("leakcheck: no memory leaks in test `by_function_name`"),
            line("Suppressions used:"),
            suppression_used(310, 1, "^control_fixture::leak_here$", &origin(2)),
        ],
    );
    // Two stacks, one pattern: one line with both.
    used(
        "by_module_path",
        &[suppression_used(
            1020,
            2,
            "^control_fixture::cache$",
            &origin(3),
        )],
    );
    used(
        "by_source_file",
        &[suppression_used(710, 1, "src/generated.rs", &origin(4))],
    );
    let mut wants = leak("partly_suppressed", 1, 64);
    wants.extend([
        group(64, 1, "definitely lost"),
        frame_in(
            0,
            "suppressions::partly_suppressed::{{closure}}",
            SUPPRESSIONS,
            "vec![0u8; 64]",
        ),
        line("to suppress, add to leakcheck.supp: leak:^suppressions::partly_suppressed$"),
        line("Suppressions used:"),
        suppression_used(720, 1, "src/generated.rs", &origin(4)),
        suppression_used(520, 1, "^control_fixture::cache$", &origin(3)),
        suppression_used(320, 1, "^control_fixture::leak_here$", &origin(2)),
        // A pattern that matched nothing is not listed.
        Want::Absent("never_matches_anything"),
    ]);
    used("partly_suppressed", &wants);
    // Largest first.
    let text = parsed.section("partly_suppressed");
    let order: Vec<usize> = ["720 bytes", "520 bytes", "320 bytes"]
        .iter()
        .map(|s| {
            text.find(&format!("  {s} in 1 allocation: leak:"))
                .unwrap_or(0)
        })
        .collect();
    run.check(
        order.windows(2).all(|w| w[0] < w[1]),
        "suppressions used are listed largest first",
    );
    used(
        "discovered_file_suppresses",
        &leak("discovered_file_suppresses", 1, 400),
    );
}

/// The `leak:` lines a failing report suggests, one per group, each right after its stack.
fn suggested_lines(run: &Run, name: &str, text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut pending = false;
    for line in text.lines().map(str::trim) {
        if line.ends_with("allocated at:") {
            run.check(
                !pending,
                &format!("`{name}`: a group without a suggested line\n{text}"),
            );
            pending = true;
        } else if let Some(rule) = line.strip_prefix("to suppress, add to leakcheck.supp: ") {
            run.check(
                pending,
                &format!("`{name}`: a suggestion outside a group\n{text}"),
            );
            lines.push(rule.to_owned());
            pending = false;
        }
    }
    run.check(
        !pending,
        &format!("`{name}`: the last group has no suggested line\n{text}"),
    );
    lines
}

#[test]
fn each_group_ends_with_a_ready_to_paste_line_that_suppresses_it() {
    let run = suppressions(&["--test-threads=8"], &[]);
    let parsed = parse_libtest(&run.stdout);
    let want: BTreeSet<String> = UNSUPPRESSED_FAILING.iter().map(|s| s.to_string()).collect();
    check_failing_set(
        &run,
        "no suppressions",
        &parsed.with(Verdict::Failed),
        &want,
    );
    let mut pasted = BTreeSet::new();
    for name in UNSUPPRESSED_FAILING {
        pasted.extend(suggested_lines(&run, name, parsed.section(name)));
    }
    let expected = BTreeSet::from([
        "leak:^control_fixture::leak_here$".to_owned(),
        "leak:^control_fixture::cache::remember$".to_owned(),
        "leak:^control_fixture::generated::table$".to_owned(),
        "leak:^suppressions::partly_suppressed$".to_owned(),
    ]);
    run.check(
        pasted == expected,
        &format!("suggested lines: {pasted:#?}, want {expected:#?}"),
    );
    // Pasted into a file, they suppress every one of those leaks.
    let file = scratch("pasted").join("pasted.supp");
    let text: String = pasted.iter().map(|l| format!("{l}\n")).collect();
    write(&file, &text);
    let mut args = vec!["--exact", "--test-threads=8", "--show-output"];
    args.extend(UNSUPPRESSED_FAILING);
    let rerun = suppressions(&args, &[("LEAKCHECK_SUPPRESSIONS", path_str(&file))]);
    let reparsed = parse_libtest(&rerun.stdout);
    rerun.check(
        rerun.success() && reparsed.with(Verdict::Ok) == want,
        &format!("with the suggested lines ({text}) every test passes"),
    );
    for name in UNSUPPRESSED_FAILING {
        rerun.check(
            reparsed.section(name).contains("Suppressions used:"),
            &format!("`{name}` lists the suppressions it used"),
        );
    }
}

/// Runs `discovered_file_suppresses` and `clean` with `env`; says whether a `leakcheck.supp`
/// was found, and checks which one (`origin`: `path:line` of its pattern).
fn discovered(label: &str, env: &[(&str, &str)], origin: Option<&str>) {
    let run = suppressions(&["--exact", "discovered_file_suppresses", "clean"], env);
    let parsed = parse_libtest(&run.stdout);
    let name = "discovered_file_suppresses";
    run.check(
        parsed.verdicts.get("clean") == Some(&Verdict::Ok),
        &format!("{label}: `clean` passes"),
    );
    match origin {
        Some(origin) => {
            run.check(
                parsed.verdicts.get(name) == Some(&Verdict::Ok),
                &format!("{label}: the file must be found"),
            );
            let run = suppressions(&["--exact", name, "--show-output"], env);
            let parsed = parse_libtest(&run.stdout);
            check_wants(
                &run,
                label,
                name,
                parsed.section(name),
                &[suppression_used(
                    400,
                    1,
                    "^control_fixture::discovered::",
                    origin,
                )],
            );
        }
        None => {
            run.check(
                parsed.verdicts.get(name) == Some(&Verdict::Failed),
                &format!("{label}: no file may be found"),
            );
            check_wants(&run, label, name, parsed.section(name), &leak(name, 1, 400));
        }
    }
}

#[test]
fn leakcheck_supp_is_found_from_the_package_up_to_the_workspace_root() {
    let own = format!("{}:4", fixture().dir().join("leakcheck.supp").display());
    let rule = "leak:^control_fixture::discovered::\n";
    // The package directory (`cargo test` sets CARGO_MANIFEST_DIR to it).
    discovered("the package directory", &[], Some(&own));
    // Up from a directory without Cargo.lock.
    let src = fixture().dir().join("src");
    discovered(
        "a parent of CARGO_MANIFEST_DIR",
        &[("CARGO_MANIFEST_DIR", path_str(&src))],
        Some(&own),
    );
    let dir = scratch("discovery");
    // A workspace: the file at its root, a member package below it.
    let workspace = dir.join("workspace");
    write(&workspace.join("Cargo.lock"), "");
    write(&workspace.join("leakcheck.supp"), rule);
    let member = workspace.join("member");
    fs::create_dir_all(&member).unwrap();
    let workspace_file = format!("{}:1", workspace.join("leakcheck.supp").display());
    discovered(
        "the workspace root above the package",
        &[("CARGO_MANIFEST_DIR", path_str(&member))],
        Some(&workspace_file),
    );
    // Not above the workspace root (the first directory with Cargo.lock).
    let outside = dir.join("outside");
    write(&outside.join("leakcheck.supp"), rule);
    let inner = outside.join("inner");
    write(&inner.join("Cargo.lock"), "");
    discovered(
        "above the workspace root",
        &[("CARGO_MANIFEST_DIR", path_str(&inner))],
        None,
    );
    // Under nextest: from the package up to NEXTEST_WORKSPACE_ROOT, which ends the search even
    // where it holds no Cargo.lock (nextest knows the root; no lock file needs to be there).
    discovered(
        "nextest: the workspace root above the package",
        &[
            ("NEXTEST_WORKSPACE_ROOT", path_str(&workspace)),
            ("CARGO_MANIFEST_DIR", path_str(&member)),
        ],
        Some(&workspace_file),
    );
    let above = dir.join("above");
    write(&above.join("leakcheck.supp"), rule);
    let root_without_lock = above.join("root");
    let package = root_without_lock.join("package");
    fs::create_dir_all(&package).unwrap();
    discovered(
        "nextest: not above NEXTEST_WORKSPACE_ROOT",
        &[
            ("NEXTEST_WORKSPACE_ROOT", path_str(&root_without_lock)),
            ("CARGO_MANIFEST_DIR", path_str(&package)),
        ],
        None,
    );
}

/// The manual: "`leakcheck.supp` in the package directory or a parent up to the workspace
/// root". Under `cargo test` a member package's own file is found; under nextest the search
/// starts at NEXTEST_WORKSPACE_ROOT, so the same file is not, and the same test fails.
#[test]
fn leakcheck_supp_in_a_member_package_is_found_under_nextest_too() {
    let dir = scratch("member_file");
    let workspace = dir.join("workspace");
    write(&workspace.join("Cargo.lock"), "");
    let member = workspace.join("member");
    write(
        &member.join("leakcheck.supp"),
        "leak:^control_fixture::discovered::\n",
    );
    let origin = format!("{}:1", member.join("leakcheck.supp").display());
    discovered(
        "cargo test: the member's directory",
        &[("CARGO_MANIFEST_DIR", path_str(&member))],
        Some(&origin),
    );
    // What nextest sets for a test of that member.
    discovered(
        "nextest: the member's directory",
        &[
            ("NEXTEST_WORKSPACE_ROOT", path_str(&workspace)),
            ("CARGO_MANIFEST_DIR", path_str(&member)),
        ],
        Some(&origin),
    );
}

// ---- errors ----

/// Every test run (one leaking, one clean) must fail with a message that has every one of
/// `parts`.
fn every_checked_test_fails_with(label: &str, env: &[(&str, &str)], parts: &[&str]) {
    let run = suppressions(&["--exact", "by_function_name", "clean"], env);
    let parsed = parse_libtest(&run.stdout);
    let both = BTreeSet::from(["by_function_name".to_owned(), "clean".to_owned()]);
    check_failing_set(&run, label, &parsed.with(Verdict::Failed), &both);
    for name in &both {
        let text = parsed.section(name);
        run.check(
            text.contains(&format!("thread '{name}'"))
                && text.contains(&format!("panicked at {SUPPRESSIONS}:")),
            &format!("{label}: `{name}` fails with a panic of its own\n{text}"),
        );
        for part in parts {
            run.check(
                text.contains(part),
                &format!("{label}: `{name}` must say `{part}`\n{text}"),
            );
        }
        run.check(
            !text.contains("memory leak"),
            &format!("{label}: `{name}`: no leak report when the check cannot run\n{text}"),
        );
    }
}

#[test]
fn a_malformed_suppression_line_fails_checked_tests_naming_file_line_and_what_is_expected() {
    let dir = scratch("malformed");
    let typo = dir.join("typo.supp");
    write(
        &typo,
        "# comment\n\nleak:^control_fixture::leak_here$\nleek:typo\n",
    );
    every_checked_test_fails_with(
        "a line that is not `leak:`",
        &[("LEAKCHECK_SUPPRESSIONS", path_str(&typo))],
        &[&format!(
            "leakcheck: {}:4: expected `leak:<pattern>`, a `#` comment or a blank line, found `leek:typo`",
            typo.display()
        )],
    );
    let empty = dir.join("empty.supp");
    write(&empty, "leak:   \n");
    every_checked_test_fails_with(
        "an empty pattern",
        &[("LEAKCHECK_SUPPRESSIONS", path_str(&empty))],
        &[&format!(
            "leakcheck: {}:1: `leak:` needs a pattern, e.g. `leak:my_crate::cache::*`",
            empty.display()
        )],
    );
    // A discovered file is held to the same rules.
    let workspace = dir.join("workspace");
    write(&workspace.join("Cargo.lock"), "");
    write(
        &workspace.join("leakcheck.supp"),
        "\nleak:ok\nsuppress:this\n",
    );
    every_checked_test_fails_with(
        "a malformed discovered file",
        &[("CARGO_MANIFEST_DIR", path_str(&workspace))],
        &[&format!(
            "leakcheck: {}:3: expected `leak:<pattern>`, a `#` comment or a blank line, found `suppress:this`",
            workspace.join("leakcheck.supp").display()
        )],
    );
}

#[test]
fn a_missing_suppression_file_fails_checked_tests_naming_the_variable() {
    let missing = scratch("missing").join("no-such.supp");
    every_checked_test_fails_with(
        "LEAKCHECK_SUPPRESSIONS=<missing>",
        &[("LEAKCHECK_SUPPRESSIONS", path_str(&missing))],
        &[
            &format!(
                "leakcheck: LEAKCHECK_SUPPRESSIONS names {}, which cannot be read (",
                missing.display()
            ),
            "); fix the path or unset the variable",
        ],
    );
}

#[test]
fn a_bad_setting_fails_checked_tests_naming_the_variable_and_the_allowed_values() {
    every_checked_test_fails_with(
        "LEAKCHECK=bogus",
        &[("LEAKCHECK", "bogus")],
        &[
            "leakcheck: LEAKCHECK=\"bogus\" is not a valid setting; allowed values: `fail` (the \
             default), `warn`, `off`. Fix or unset the variable to run the leak check.",
        ],
    );
    every_checked_test_fails_with(
        "LEAKCHECK_FORMAT=xml",
        &[("LEAKCHECK_FORMAT", "xml")],
        &[
            "leakcheck: LEAKCHECK_FORMAT=\"xml\" is not a valid setting; allowed values: `text` \
             (the default), `json`.",
        ],
    );
}

// ---- bugs found here, fixed: kept as regression tests ----

/// A test that fails only for a budget ends its report with a SUMMARY that says nothing
/// leaked; the summary of a failure should name what failed.
#[test]
fn a_budget_failure_summary_does_not_say_nothing_leaked() {
    let run = fixture().run_test(
        &exe("options"),
        &["--exact", "max_allocs_zero_allocates"],
        &[],
    );
    let parsed = parse_libtest(&run.stdout);
    let text = parsed.section("max_allocs_zero_allocates");
    run.check(
        parsed.with(Verdict::Failed).len() == 1,
        "the budget fails the test",
    );
    run.check(
        !text.contains("SUMMARY: leakcheck: 0 bytes leaked in 0 allocations"),
        &format!("the summary of a failing test says nothing leaked\n{text}"),
    );
    run.check(
        text.contains("SUMMARY: leakcheck: max_allocs = 0 exceeded (1)"),
        &format!("the summary names the budget\n{text}"),
    );
}

/// With `reachable = "fail"` and the reachable block suppressed by `ignore`, the note tells the
/// user to set the option the test already has.
#[test]
fn the_reachable_note_does_not_advise_an_option_already_set() {
    let name = "ignore_with_reachable_fail";
    let run = fixture().run_test(&exe("options"), &["--exact", name, "--show-output"], &[]);
    let text = parse_libtest(&run.stdout).section(name).to_owned();
    run.check(
        text.contains("Suppressions used:"),
        "the reachable block is suppressed",
    );
    run.check(
        !text.contains("reachable = \"fail\" counts them"),
        &format!("the note advises `reachable = \"fail\"`, which the test already sets\n{text}"),
    );
}

/// The manual: "Each stack ... ends at the test body, shown as the test's `{{closure}}`". For
/// a `#[tokio::test]` the stack goes on through tokio's scheduler (16 frames, then `... 6 more
/// frames`).
#[test]
fn tokio_test_stacks_end_at_the_test_body() {
    let name = "module_form::tokio_beyond";
    let run = fixture().run_test(&exe("options"), &["--exact", name], &[]);
    let text = parse_libtest(&run.stdout).section(name).to_owned();
    run.check(
        text.contains("0: options::module_form::tokio_beyond::{{closure}}::{{closure}}"),
        "frame 0 is the body",
    );
    run.check(
        !text.contains(": tokio::") && !text.contains("more frames"),
        &format!("the stack goes on past the test body\n{text}"),
    );
}
