//! What the end-to-end tests of the root package share: building a fixture crate (a crate of
//! its own under `tests/`, with its own workspace and lock file, that uses leakcheck the way a
//! user would), running its test binaries and `cargo nextest run` as subprocesses, and reading
//! libtest's and nextest's output.
//!
//! Each test file uses it with `mod support;`. Every fixture builds into the one target
//! directory `target/fixture`, so leakcheck and its dependencies are compiled once for all of
//! them, and later runs are incremental.
//!
//! A [`Run`] prints the whole output of its subprocess when one of its checks fails
//! ([`Run::check`]), so a failure always shows what the fixture said.
#![allow(dead_code)] // Each test file uses part of it.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::Mutex;

// ---- where things are ----

/// The root package's directory (the repository root).
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The target directory every fixture builds into.
pub fn target_dir() -> PathBuf {
    root().join("target/fixture")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Profile {
    /// `cargo test`'s dev profile.
    Debug,
    /// `cargo test --release`.
    Release,
    /// `cargo test --release` with `-C force-frame-pointers=yes` added to `RUSTFLAGS`, for every
    /// crate as the manual's `.cargo/config.toml` setting gives, into a target directory of its
    /// own ([`target_dir_with_frame_pointers`]): other flags would rebuild `target/fixture`.
    ReleaseWithFramePointers,
}

/// The target directory of [`Profile::ReleaseWithFramePointers`] builds.
pub fn target_dir_with_frame_pointers() -> PathBuf {
    root().join("target/fixture-fp")
}

/// A fixture crate under the repository root.
#[derive(Clone, Debug)]
pub struct Fixture {
    dir: PathBuf,
}

/// The test executables of one build of a fixture, by target name (`verdicts` for
/// `tests/verdicts.rs`, the crate name for its unit tests).
#[derive(Clone, Debug)]
pub struct Binaries {
    pub executables: BTreeMap<String, PathBuf>,
}

impl Binaries {
    /// The executable of test target `name`; panics naming the ones there are.
    #[track_caller]
    pub fn get(&self, name: &str) -> &Path {
        match self.executables.get(name) {
            Some(exe) => exe,
            None => panic!(
                "no test executable `{name}`; the build made {:?}",
                self.executables.keys().collect::<Vec<_>>()
            ),
        }
    }
}

impl Fixture {
    /// The fixture crate at `relative` (e.g. `tests/fixture`) from the repository root.
    pub fn new(relative: &str) -> Fixture {
        Fixture {
            dir: root().join(relative),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Builds the fixture's test targets (`cargo test --no-run`) once per process and profile;
    /// builds never overlap. Panics with cargo's output if the build fails.
    pub fn build(&self, profile: Profile) -> Binaries {
        static BUILT: Mutex<BTreeMap<(PathBuf, Profile), Binaries>> = Mutex::new(BTreeMap::new());
        // Held during the build: one build at a time, and each at most once.
        let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
        built
            .entry((self.dir.clone(), profile))
            .or_insert_with(|| self.build_now(profile))
            .clone()
    }

    fn build_now(&self, profile: Profile) -> Binaries {
        let mut cmd = self.cargo(&["test", "--no-run", "--message-format=json"]);
        if profile != Profile::Debug {
            cmd.arg("--release");
        }
        if profile == Profile::ReleaseWithFramePointers {
            // Added to the flags the environment gives (cargo reads the encoded form first).
            match std::env::var("CARGO_ENCODED_RUSTFLAGS") {
                Ok(flags) if !flags.is_empty() => {
                    cmd.env(
                        "CARGO_ENCODED_RUSTFLAGS",
                        format!("{flags}\x1f-C\x1fforce-frame-pointers=yes"),
                    );
                }
                _ => {
                    let flags = std::env::var("RUSTFLAGS").unwrap_or_default();
                    cmd.env("RUSTFLAGS", format!("{flags} -C force-frame-pointers=yes"));
                }
            }
            cmd.env("CARGO_TARGET_DIR", target_dir_with_frame_pointers());
        }
        let run = Run::new(
            &format!("build {} ({profile:?})", self.dir.display()),
            &mut cmd,
        );
        run.check(run.success(), "the fixture does not build");
        let mut executables = BTreeMap::new();
        for line in run.stdout.lines().filter(|l| l.starts_with('{')) {
            let message: serde_json::Value = serde_json::from_str(line).expect("cargo's JSON");
            let is_test = message["profile"]["test"] == true;
            if let (true, Some(exe)) = (is_test, message["executable"].as_str()) {
                let name = message["target"]["name"].as_str().unwrap_or_default();
                executables.insert(name.to_owned(), PathBuf::from(exe));
            }
        }
        Binaries { executables }
    }

    /// `cargo <args>` in the fixture's directory, into the shared target directory, with a
    /// clean environment (see [`clean_command`]).
    pub fn cargo(&self, args: &[&str]) -> Command {
        let mut cmd = clean_command(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.env("CARGO_TARGET_DIR", target_dir())
            .current_dir(&self.dir)
            .args(args);
        cmd
    }

    /// Runs the test executable `exe` of this fixture as `cargo test` would: from the fixture's
    /// directory (so reports show paths relative to it), with `CARGO_MANIFEST_DIR` set to it,
    /// in a clean environment plus `env`.
    pub fn run_test(&self, exe: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = clean_command(exe);
        cmd.args(args)
            .current_dir(&self.dir)
            .env("CARGO_MANIFEST_DIR", &self.dir);
        for (key, value) in env {
            cmd.env(key, value);
        }
        let name = exe.file_name().unwrap().to_string_lossy();
        let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Run::new(
            &format!("{} {name} {}", env.join(" "), args.join(" ")),
            &mut cmd,
        )
    }

    /// `cargo nextest run --no-fail-fast --color never <args>` in the fixture, with `env`.
    /// Read its result with [`parse_nextest`] on [`Run::stderr`].
    pub fn nextest(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.cargo(&["nextest", "run", "--no-fail-fast", "--color", "never"]);
        cmd.args(args);
        for (key, value) in env {
            cmd.env(key, value);
        }
        let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Run::new(
            &format!(
                "{} cargo nextest run {} (in {})",
                env.join(" "),
                args.join(" "),
                self.dir.display()
            ),
            &mut cmd,
        )
    }

    /// `FILE:LINE:COLUMN` (as reports print it) of the only occurrence of `needle` in the
    /// fixture's `file` (relative to the fixture's directory); panics unless there is one.
    pub fn site(&self, file: &str, needle: &str) -> String {
        let source = std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_else(|e| panic!("cannot read {file} of the fixture: {e}"));
        let hits: Vec<String> = source
            .lines()
            .enumerate()
            .filter_map(|(i, line)| {
                let column = line.find(needle)?;
                Some(format!(
                    "{file}:{}:{}",
                    i + 1,
                    line[..column].chars().count() + 1
                ))
            })
            .collect();
        assert_eq!(hits.len(), 1, "`{needle}` in {file}: {hits:?}");
        hits[0].clone()
    }

    /// `FILE:LINE` of the only occurrence of `needle` in the fixture's `file`.
    pub fn line(&self, file: &str, needle: &str) -> String {
        let site = self.site(file, needle);
        site[..site.rfind(':').unwrap()].to_owned()
    }
}

// ---- running subprocesses ----

/// A command whose environment cannot change a fixture's verdicts: no backtraces, no
/// leakcheck settings, no libtest settings, nothing that would make a test believe it runs
/// under nextest (this suite may itself run under nextest), and nothing cargo set for the root
/// package (its `CARGO_MANIFEST_DIR` would point suppression-file discovery here).
pub fn clean_command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let drop = [
            "RUST_BACKTRACE",
            "RUST_LIB_BACKTRACE",
            "NO_COLOR",
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_CRATE_NAME",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
        ]
        .contains(&&*key)
            || ["LEAKCHECK", "NEXTEST", "RUST_TEST_", "CARGO_PKG_"]
                .iter()
                .any(|prefix| key.starts_with(prefix));
        if drop {
            cmd.env_remove(&*key);
        }
    }
    cmd.env("CARGO_TERM_COLOR", "never");
    cmd
}

/// A finished subprocess.
pub struct Run {
    /// What ran, for messages.
    pub label: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Runs `cmd` to the end; `label` names it in messages.
    pub fn new(label: &str, cmd: &mut Command) -> Run {
        let output = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run `{label}`: {e}"));
        Run {
            label: label.trim().to_owned(),
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit code (`None` if a signal ended it).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Both streams, for searching where it does not matter which one said it.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Panics with `what` and the whole output unless `ok`.
    #[track_caller]
    pub fn check(&self, ok: bool, what: &str) {
        if !ok {
            panic!("{what}\n{self}");
        }
    }

    /// Fails with this run's output unless `got.1` and `want.1` are the same set, naming what
    /// only one of them holds under its label ("failed but should pass", say).
    pub fn check_same_set<T: Ord + fmt::Debug>(
        &self,
        what: &str,
        got: (&str, &BTreeSet<T>),
        want: (&str, &BTreeSet<T>),
    ) {
        let ((got_label, got), (want_label, want)) = (got, want);
        self.check(
            got == want,
            &format!(
                "{what}\n  {got_label}: {:?}\n  {want_label}: {:?}",
                got.difference(want).collect::<Vec<_>>(),
                want.difference(got).collect::<Vec<_>>(),
            ),
        );
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "==== `{}` ({}) ====\n---- stdout ----\n{}\n---- stderr ----\n{}\n==== end of `{}` ====",
            self.label, self.status, self.stdout, self.stderr, self.label
        )
    }
}

// ---- reading libtest's output ----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Failed,
    Ignored,
}

/// A test binary's libtest output: its `test NAME ... VERDICT` lines and the output sections
/// of failing tests (and of passing ones with `--show-output`), `---- NAME stdout ----`
/// (libtest) or `---- NAME ----` (libtest-mimic, which `leakcheck::harness` uses).
#[derive(Clone, Debug, Default)]
pub struct Libtest {
    pub verdicts: BTreeMap<String, Verdict>,
    pub sections: BTreeMap<String, String>,
}

impl Libtest {
    /// The tests with `verdict`.
    pub fn with(&self, verdict: Verdict) -> BTreeSet<String> {
        self.verdicts
            .iter()
            .filter(|(_, v)| **v == verdict)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Every test that ran or was ignored.
    pub fn names(&self) -> BTreeSet<String> {
        self.verdicts.keys().cloned().collect()
    }

    /// What test `name` printed (its section: failing tests, and passing ones with
    /// `--show-output`), or `""`.
    pub fn section(&self, name: &str) -> &str {
        self.sections.get(name).map_or("", String::as_str)
    }
}

/// Reads libtest's (or libtest-mimic's) stdout.
pub fn parse_libtest(stdout: &str) -> Libtest {
    let mut verdicts = BTreeMap::new();
    let mut sections = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in stdout.lines() {
        if let Some((name, verdict)) = line
            .strip_prefix("test ")
            .and_then(|rest| rest.split_once(" ... "))
        {
            // libtest-mimic pads names; libtest marks `#[should_panic]` tests.
            let name = name.trim().trim_end_matches(" - should panic");
            let verdict = match verdict.split([',', ' ']).next() {
                Some("ok") => Some(Verdict::Ok),
                Some("FAILED") => Some(Verdict::Failed),
                Some("ignored") => Some(Verdict::Ignored),
                _ => None,
            };
            if let Some(verdict) = verdict {
                verdicts.insert(name.to_owned(), verdict);
                continue;
            }
        }
        let header = line
            .strip_prefix("---- ")
            .and_then(|rest| rest.strip_suffix(" ----"))
            .map(|name| name.strip_suffix(" stdout").unwrap_or(name));
        // `successes:` precedes `--show-output`'s sections and ends them.
        if header.is_some() || line == "failures:" || line == "successes:" {
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

// ---- reading nextest's output ----

/// One test in nextest's output.
#[derive(Clone, Debug, Default)]
pub struct NextestTest {
    /// Its final status: `PASS`, `FAIL`, `SIGSEGV`, `TIMEOUT`, `LEAK`, ...
    pub status: String,
    /// Everything nextest showed under its status line (indented as nextest indents it).
    pub output: String,
}

impl NextestTest {
    /// The section of the output under nextest's `  stdout ───` header, or `""`.
    pub fn stdout(&self) -> String {
        self.section("stdout")
    }

    /// The section of the output under nextest's `  stderr ───` header, or `""`.
    pub fn stderr(&self) -> String {
        self.section("stderr")
    }

    /// The lines under nextest's `  NAME ───` header, up to the next header.
    fn section(&self, name: &str) -> String {
        let mut text = String::new();
        let mut inside = false;
        for line in self.output.lines() {
            if let Some(header) = nextest_section_header(line) {
                inside = header == name;
            } else if inside {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }
}

/// `stdout` for nextest's `  stdout ───` header line.
fn nextest_section_header(line: &str) -> Option<&str> {
    let (word, rest) = line.trim().split_once(' ')?;
    let is_header = rest.starts_with("───") && word.chars().all(|c| c.is_ascii_lowercase());
    is_header.then_some(word)
}

/// nextest's result: each test by `BINARY-ID TEST-NAME` (`fixture::verdicts forgotten_vec`).
#[derive(Clone, Debug, Default)]
pub struct Nextest {
    pub tests: BTreeMap<String, NextestTest>,
}

impl Nextest {
    /// The tests with `status`.
    pub fn with_status(&self, status: &str) -> BTreeSet<String> {
        self.tests
            .iter()
            .filter(|(_, test)| test.status == status)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The tests whose status is not `PASS` (a `LEAK`, a test that passed but left a
    /// subprocess's handles open, counts too: no fixture should do that).
    pub fn failed(&self) -> BTreeSet<String> {
        self.tests
            .iter()
            .filter(|(_, test)| test.status != "PASS")
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The tests of one binary (`fixture::verdicts`), by test name alone.
    pub fn binary(&self, id: &str) -> Nextest {
        let prefix = format!("{id} ");
        Nextest {
            tests: self
                .tests
                .iter()
                .filter_map(|(name, test)| {
                    Some((name.strip_prefix(&prefix)?.to_owned(), test.clone()))
                })
                .collect(),
        }
    }

    /// Test `name`, or an empty one (no status, no output).
    pub fn test(&self, name: &str) -> NextestTest {
        self.tests.get(name).cloned().unwrap_or_default()
    }
}

/// Reads `cargo nextest run`'s stderr: status lines
/// (`FAIL [   0.012s] ( 3/48) fixture::verdicts NAME`, the counter only in newer nextest)
/// and the output shown under each.
pub fn parse_nextest(stderr: &str) -> Nextest {
    let mut tests: BTreeMap<String, NextestTest> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_summary = false;
    for line in stderr.lines() {
        let trimmed = line.trim_start();
        if let Some((status, test)) = nextest_status(trimmed) {
            current = None;
            // Progress lines, not verdicts.
            if ["START", "SLOW", "RETRY", "DELAY"].contains(&status) {
                continue;
            }
            let entry = tests.entry(test.clone()).or_default();
            if !in_summary {
                entry.status = status.to_owned();
                current = Some(test);
            } else if entry.status.is_empty() {
                entry.status = status.to_owned();
            }
        } else if trimmed.starts_with("Summary [") {
            in_summary = true;
            current = None;
        } else if trimmed.starts_with("────") {
            current = None;
        } else if let Some(test) = &current {
            let text = &mut tests.get_mut(test).unwrap().output;
            text.push_str(line);
            text.push('\n');
        }
    }
    Nextest { tests }
}

/// `(STATUS, "BINARY-ID TEST-NAME")` of a status line.
fn nextest_status(line: &str) -> Option<(&str, String)> {
    let (status, rest) = line.split_once(" [")?;
    let is_status = !status.is_empty()
        && status.starts_with(|c: char| c.is_ascii_uppercase())
        && status
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-' || c == ' ');
    if !is_status {
        return None;
    }
    let (_, rest) = rest.split_once(']')?;
    let mut rest = rest.trim_start();
    if rest.starts_with('(') {
        rest = rest.split_once(')')?.1;
    }
    let mut words = rest.split_whitespace();
    let binary = words.next()?;
    let name = words.next()?;
    // "TRY 2 FAIL": the last word is the status.
    let status = status.rsplit(' ').next()?;
    Some((status, format!("{binary} {name}")))
}

// ---- reports ----

/// `1024` as `1,024`, as reports print figures.
pub fn thousands(n: usize) -> String {
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

/// `text` without nextest's indentation: every line trimmed.
pub fn trimmed_lines(text: &str) -> Vec<&str> {
    text.lines().map(str::trim).collect()
}

// ---- reading a report ----

/// A group as a report prints it: bytes, allocations, kind, and `FILE:LINE` of the first
/// frame (the allocation site; inlined frames follow it on further `at` lines).
pub type Printed = (usize, usize, String, String);

pub fn number(text: &str) -> Option<usize> {
    text.replace(',', "").parse().ok()
}

/// `1,808 bytes in 1 allocation still reachable, allocated at:` followed by
/// `0: function` and `at FILE:LINE:COLUMN`.
pub fn printed_groups(report: &str) -> Vec<Printed> {
    let lines = trimmed_lines(report);
    let mut groups = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(head) = line.strip_suffix(", allocated at:") else {
            continue;
        };
        let Some((bytes, rest)) = head
            .split_once(" bytes in ")
            .or_else(|| head.split_once(" byte in "))
        else {
            continue;
        };
        let Some((allocations, kind)) = rest
            .split_once(" allocations ")
            .or_else(|| rest.split_once(" allocation "))
        else {
            continue;
        };
        let (Some(bytes), Some(allocations)) = (number(bytes), number(allocations)) else {
            continue;
        };
        let site = lines[i + 1..]
            .iter()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix("at "))
            .map(|at| {
                at.rsplit_once(':')
                    .map_or(at, |(file_line, _column)| file_line)
            })
            .unwrap_or("<no frame>");
        groups.push((bytes, allocations, kind.to_owned(), site.to_owned()));
    }
    groups.sort();
    groups
}
