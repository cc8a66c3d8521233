//! `leakcheck::harness` end to end: builds `tests/harness-fixture` (a `harness = false` target
//! whose `main` is the harness), runs it under `cargo test` and `cargo nextest run` and with
//! libtest's options, and checks every verdict and what each failure shows.
//!
//! Every failed assertion prints the whole output of the subprocess it is about.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

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

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture_dir() -> PathBuf {
    root().join("tests/harness-fixture")
}

/// A command whose environment cannot change the verdicts: no backtraces, no leakcheck or
/// libtest settings, nothing that says nextest (this suite may itself run under nextest).
fn clean_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let drop = ["RUST_BACKTRACE", "RUST_LIB_BACKTRACE", "NO_COLOR"].contains(&&*key)
            || ["LEAKCHECK", "NEXTEST", "RUST_TEST_"]
                .iter()
                .any(|prefix| key.starts_with(prefix));
        if drop {
            cmd.env_remove(&*key);
        }
    }
    cmd.env("CARGO_TERM_COLOR", "never")
        .current_dir(fixture_dir());
    cmd
}

/// `cargo` in the fixture, with the target directory `tests/e2e.rs` uses for its fixture, so
/// leakcheck and tokio are built once for both.
fn cargo(args: &[&str]) -> Command {
    let mut cmd = clean_command(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.env("CARGO_TARGET_DIR", root().join("target/fixture"))
        .args(args);
    cmd
}

/// The fixture's `checked` executable, built once per process.
fn checked_exe() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let run = Run::new(
            "build the harness fixture",
            &mut cargo(&["test", "--no-run", "--message-format=json"]),
        );
        run.check(run.success, "the harness fixture does not build");
        let exe = run
            .stdout
            .lines()
            .filter(|line| line.starts_with('{'))
            .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("cargo's JSON"))
            .find(|message| message["target"]["name"] == "checked")
            .and_then(|message| message["executable"].as_str().map(PathBuf::from));
        run.check(exe.is_some(), "no test executable `checked`");
        exe.unwrap()
    })
}

fn checked(args: &[&str]) -> Run {
    Run::new(
        &format!("checked {}", args.join(" ")),
        clean_command(checked_exe()).args(args),
    )
}

/// A finished subprocess.
struct Run {
    label: String,
    code: Option<i32>,
    success: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn new(label: &str, cmd: &mut Command) -> Run {
        let output = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run `{label}`: {e}"));
        Run {
            label: label.to_owned(),
            code: output.status.code(),
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    #[track_caller]
    fn check(&self, ok: bool, what: &str) {
        if !ok {
            panic!("{what}\n{self}");
        }
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "==== `{}` (exit {:?}) ====\n---- stdout ----\n{}\n---- stderr ----\n{}\n==== end ====",
            self.label, self.code, self.stdout, self.stderr
        )
    }
}

// ---- reading the output ----

/// libtest's `test NAME ... VERDICT` lines and the harness's `---- NAME ----` failure sections.
struct Libtest {
    verdicts: BTreeMap<String, String>,
    sections: BTreeMap<String, String>,
}

fn parse_libtest(stdout: &str) -> Libtest {
    let mut verdicts = BTreeMap::new();
    let mut sections = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in stdout.lines() {
        if let Some((name, verdict)) = line
            .strip_prefix("test ")
            .and_then(|rest| rest.split_once(" ... "))
        {
            verdicts.insert(name.trim().to_owned(), verdict.trim().to_owned());
            continue;
        }
        let header = line
            .strip_prefix("---- ")
            .and_then(|rest| rest.strip_suffix(" ----"));
        if header.is_some() || line == "failures:" {
            sections.extend(current.take());
        }
        if let Some(name) = header {
            current = Some((name.to_owned(), String::new()));
        } else if let Some((_, text)) = &mut current {
            text.push_str(line);
            text.push('\n');
        }
    }
    sections.extend(current);
    Libtest { verdicts, sections }
}

fn with_verdict(verdicts: &BTreeMap<String, String>, wanted: &str) -> BTreeSet<String> {
    verdicts
        .iter()
        .filter(|(_, verdict)| *verdict == wanted)
        .map(|(name, _)| name.clone())
        .collect()
}

/// `FILE:LINE:COLUMN` of the only occurrence of `needle` in the fixture's `file`.
fn site(file: &str, needle: &str) -> String {
    let source = std::fs::read_to_string(fixture_dir().join(file)).unwrap();
    let mut hits: Vec<String> = source
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let column = line.find(needle)?;
            Some(format!("{file}:{}:{}", i + 1, column + 1))
        })
        .collect();
    assert_eq!(hits.len(), 1, "`{needle}` in {file}: {hits:?}");
    hits.remove(0)
}

/// `1024` as `1,024`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
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

/// The failing set and, per failure, its section: reports, other failures, no strays.
fn check_failures(run: &Run, parsed: &Libtest) {
    let failed = with_verdict(&parsed.verdicts, "FAILED");
    let want = failing_names();
    run.check(
        failed == want,
        &format!(
            "wrong failing set\n  failed but should pass: {:?}\n  should fail but did not: {:?}",
            failed.difference(&want).collect::<Vec<_>>(),
            want.difference(&failed).collect::<Vec<_>>(),
        ),
    );
    for (name, bytes, sites) in LEAKING {
        let text = parsed.sections.get(*name).map_or("", String::as_str);
        let panicked = format!("thread '{name}' panicked at tests/checked.rs:");
        run.check(
            text.starts_with(&panicked),
            &format!("`{name}`'s failure must start with `{panicked}`\n{text}"),
        );
        check_report(run, name, text, *bytes, sites);
    }
    for (name, message) in FAILING_WITHOUT_REPORT {
        let text = parsed.sections.get(*name).map_or("", String::as_str);
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
    let run = Run::new(
        "cargo test --test checked -- --test-threads=4",
        &mut cargo(&["test", "--test", "checked", "--", "--test-threads=4"]),
    );
    run.check(!run.success, "the harness must exit with failure");
    run.check(
        run.code == Some(101),
        "libtest's exit status on failure is 101",
    );
    let parsed = parse_libtest(&run.stdout);
    let passed = with_verdict(&parsed.verdicts, "ok");
    let want: BTreeSet<String> = PASSING.iter().map(|name| name.to_string()).collect();
    run.check(
        passed == want,
        &format!("passing: {passed:?}, want {want:?}"),
    );
    run.check(
        with_verdict(&parsed.verdicts, "ignored") == BTreeSet::from([IGNORED.0.to_owned()]),
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
    run.check(run.success, "--list succeeds");
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
        with_verdict(&parsed.verdicts, "FAILED").len() == 3 && run.code == Some(101),
        "all three leak",
    );

    let run = checked(&["--exact", "nested::deep_clean"]);
    let parsed = parse_libtest(&run.stdout);
    run.check(
        parsed.verdicts == BTreeMap::from([("nested::deep_clean".into(), "ok".into())])
            && run.success,
        "--exact runs that one test",
    );
    let run = checked(&["--exact", "deep_clean"]);
    run.check(
        parse_libtest(&run.stdout).verdicts.is_empty() && run.success,
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
        run.success && with_verdict(&parsed.verdicts, "ok") == want,
        "the rest pass",
    );
}

#[test]
fn ignored_runs_the_ignored_test_and_reports_its_leak() {
    let run = checked(&["--ignored", "--nocapture"]);
    let parsed = parse_libtest(&run.stdout);
    run.check(
        parsed.verdicts == BTreeMap::from([(IGNORED.0.into(), "FAILED".into())]),
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

// ---- nextest ----

/// nextest's status lines (`FAIL [ 0.012s] ( 3/18) harness-fixture::checked NAME`), and the
/// output it shows under each.
fn parse_nextest(stderr: &str) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut verdicts = BTreeMap::new();
    let mut output: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in stderr.lines() {
        let trimmed = line.trim_start();
        let status = trimmed.split_once(" [").and_then(|(status, rest)| {
            let mut words = rest
                .split_whitespace()
                .skip_while(|word| *word != "harness-fixture::checked");
            words.next()?;
            let name = words.next()?;
            let all_caps = status.chars().all(|c| c.is_ascii_uppercase() || c == '-');
            all_caps.then(|| (status.to_owned(), name.to_owned()))
        });
        if let Some((status, name)) = status {
            verdicts.entry(name.clone()).or_insert(status);
            current = Some(name);
        } else if trimmed.starts_with("────") {
            current = None;
        } else if let Some(name) = &current {
            let text = output.entry(name.clone()).or_default();
            text.push_str(line);
            text.push('\n');
        }
    }
    (verdicts, output)
}

#[test]
fn nextest_lists_and_runs_the_target_with_the_same_verdicts() {
    checked_exe();
    let run = Run::new(
        "cargo nextest run (harness fixture)",
        &mut cargo(&[
            "nextest",
            "run",
            "--no-fail-fast",
            "--color",
            "never",
            "--test",
            "checked",
        ]),
    );
    run.check(!run.success, "nextest must report failures");
    let (verdicts, output) = parse_nextest(&run.stderr);
    let failed: BTreeSet<String> = verdicts
        .iter()
        .filter(|(_, status)| *status != "PASS")
        .map(|(name, _)| name.clone())
        .collect();
    let want = failing_names();
    run.check(
        failed == want,
        &format!(
            "nextest: wrong failing set\n  failed but should pass: {:?}\n  should fail but did not: {:?}",
            failed.difference(&want).collect::<Vec<_>>(),
            want.difference(&failed).collect::<Vec<_>>(),
        ),
    );
    let passed = with_verdict(&verdicts, "PASS");
    let want: BTreeSet<String> = PASSING.iter().map(|name| name.to_string()).collect();
    run.check(passed == want, &format!("nextest: passing {passed:?}"));
    run.check(
        run.stderr.contains("1 test skipped") || run.stderr.contains("1 skipped"),
        "nextest skips the ignored test",
    );
    for (name, bytes, sites) in LEAKING {
        let text = output.get(*name).map_or("", String::as_str);
        check_report(&run, name, text, *bytes, sites);
    }
    for (name, message) in FAILING_WITHOUT_REPORT {
        let text = output.get(*name).map_or("", String::as_str);
        run.check(
            text.contains(message),
            &format!("nextest: `{name}` must fail with `{message}`\n{text}"),
        );
    }
}
