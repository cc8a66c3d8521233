//! Reports as files and as JSON: leakcheck's own versioned JSON schema, DHAT's file format for
//! Valgrind's `dh_view.html`, `LEAKCHECK_OUT=<dir>` and `LEAKCHECK_FORMAT=json`.
#![forbid(unsafe_code)]

use crate::config::{self, Config, Format};
use crate::json::{self, json_object};
use crate::raw::stack::Unwinder;
use crate::report::{Frame, Kind, LeakGroup, Report};
use crate::symbolize::Excuse;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

/// The version of the JSON schema written by [`Report::to_json`]. It changes only when a field
/// is removed or changes meaning; new fields may appear within a version.
pub const JSON_SCHEMA_VERSION: u32 = 1;

/// DHAT's time origin: when the program started (the constructor in `raw::exit`, on Linux),
/// else when a session started or leakcheck first wrote a report.
static EPOCH: OnceLock<Instant> = OnceLock::new();

pub(crate) fn mark_epoch() {
    EPOCH.get_or_init(Instant::now);
}

struct JsonReport<'a> {
    schema_version: u32,
    tool: &'static str,
    tool_version: &'static str,
    test: &'a str,
    subject: &'a str,
    verdict: &'static str,
    reasons: Vec<&'static str>,
    totals: Totals,
    allowance: Option<Allowance>,
    groups: Vec<JsonGroup<'a>>,
    budgets: Vec<JsonBudget<'a>>,
    growth_per_run: Option<&'a [i64]>,
    suppressions_used: Vec<JsonSuppression<'a>>,
    not_counted: Vec<NotCounted>,
    shared_thread_groups: Vec<JsonGroup<'a>>,
    threads: Vec<JsonThread>,
    fds: Vec<JsonFd>,
    stacks: Option<&'static str>,
}
json_object!(JsonReport<'a> { schema_version, tool, tool_version, test, subject, verdict, reasons, totals, allowance, groups, budgets, growth_per_run, suppressions_used, not_counted, shared_thread_groups, threads, fds, stacks });

struct Totals {
    leaked_bytes: usize,
    leaked_allocations: usize,
    reachable_bytes: usize,
    reachable_allocations: usize,
    suppressed_bytes: usize,
    suppressed_allocations: usize,
    not_counted_bytes: usize,
    not_counted_allocations: usize,
    untracked_allocations: u64,
}
json_object!(Totals {
    leaked_bytes,
    leaked_allocations,
    reachable_bytes,
    reachable_allocations,
    suppressed_bytes,
    suppressed_allocations,
    not_counted_bytes,
    not_counted_allocations,
    untracked_allocations
});

struct Allowance {
    allow_bytes: Option<usize>,
    allow_allocs: Option<usize>,
}
json_object!(Allowance {
    allow_bytes,
    allow_allocs
});

struct JsonGroup<'a> {
    kind: &'static str,
    bytes: usize,
    allocations: usize,
    frames: Vec<JsonFrame<'a>>,
    suppression: Option<String>,
}
json_object!(JsonGroup<'a> { kind, bytes, allocations, frames, suppression });

struct JsonFrame<'a> {
    function: Option<&'a str>,
    file: Option<String>,
    line: Option<u32>,
    column: Option<u32>,
    address: String,
}
json_object!(JsonFrame<'a> { function, file, line, column, address });

struct JsonBudget<'a> {
    budget: &'static str,
    limit: u64,
    actual: u64,
    frames: Vec<JsonFrame<'a>>,
}
json_object!(JsonBudget<'a> { budget, limit, actual, frames });

struct JsonSuppression<'a> {
    pattern: &'a str,
    origin: &'a str,
    bytes: usize,
    allocations: usize,
}
json_object!(JsonSuppression<'a> { pattern, origin, bytes, allocations });

struct NotCounted {
    reason: &'static str,
    bytes: usize,
    allocations: usize,
}
json_object!(NotCounted {
    reason,
    bytes,
    allocations
});

struct JsonThread {
    tid: u32,
    name: String,
}
json_object!(JsonThread { tid, name });

struct JsonFd {
    fd: u32,
    target: String,
}
json_object!(JsonFd { fd, target });

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Definite => "definitely_lost",
        Kind::Indirect => "indirectly_lost",
        Kind::Reachable => "still_reachable",
        Kind::Growth => "growth",
    }
}

fn groups_json(groups: &[LeakGroup]) -> Vec<JsonGroup<'_>> {
    groups
        .iter()
        .map(|g| JsonGroup {
            kind: kind_name(g.kind()),
            bytes: g.bytes(),
            allocations: g.allocations(),
            frames: frames_json(g.frames()),
            suppression: g.suppression(),
        })
        .collect()
}

fn frames_json(frames: &[Frame]) -> Vec<JsonFrame<'_>> {
    frames
        .iter()
        .map(|f| JsonFrame {
            function: f.function.as_deref(),
            file: f.file.as_ref().map(|p| p.display().to_string()),
            line: f.line,
            column: f.column,
            address: format!("{:#x}", f.address),
        })
        .collect()
}

/// The name of the test from a subject "test `name`"; other subjects as they are.
fn test_name(subject: &str) -> &str {
    subject
        .strip_prefix("test `")
        .and_then(|rest| rest.strip_suffix('`'))
        .unwrap_or(subject)
}

/// `name` as a file name: letters, digits, `-`, `_` and `.` kept, `::` and anything else
/// become `_`, at most 200 bytes.
fn file_stem(name: &str) -> String {
    let mut stem: String = name
        .replace("::", "__")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    stem.truncate(200);
    let stem = stem.trim_matches('.').to_owned();
    if stem.is_empty() {
        "leakcheck".to_owned()
    } else {
        stem
    }
}

impl Report {
    /// The report as one line of JSON, in leakcheck's versioned schema:
    ///
    /// | field | meaning |
    /// |---|---|
    /// | `schema_version` | `1` ([`JSON_SCHEMA_VERSION`](crate::JSON_SCHEMA_VERSION)) |
    /// | `tool`, `tool_version` | `"leakcheck"` and its version |
    /// | `test` | the test's name (`module::test`), or the subject for a check, session or program |
    /// | `subject` | as in the text report's headline: "test \`name\`", "check at file:line", ... |
    /// | `verdict` | `"fail"` or `"pass"` ([`is_clean`](Report::is_clean)) |
    /// | `reasons` | why it fails: any of `"leak"`, `"budget"`, `"growth"`, `"threads"`, `"fds"` |
    /// | `totals` | `leaked_bytes`, `leaked_allocations`, `reachable_bytes`, `reachable_allocations`, `suppressed_bytes`, `suppressed_allocations`, `not_counted_bytes`, `not_counted_allocations`, `untracked_allocations` |
    /// | `allowance` | `{allow_bytes, allow_allocs}` or `null` |
    /// | `groups` | leak groups as in [`groups`](Report::groups): `kind` (`"definitely_lost"`, `"indirectly_lost"`, `"still_reachable"`, `"growth"`), `bytes`, `allocations`, `frames` (innermost first: `function`, `file`, `line`, `column`, `address` as a hex string), `suppression` (a ready `leak:` line) |
    /// | `budgets` | broken heap budgets: `budget`, `limit`, `actual`, `frames` |
    /// | `growth_per_run` | for `repeat`: live bytes each measured run added, else `null` |
    /// | `suppressions_used` | `pattern`, `origin`, `bytes`, `allocations` |
    /// | `not_counted` | blocks not counted as leaks: `reason` (`"stdio"`, `"one_time_init"`, `"symbolizer_cache"`, `"thread_table"`), `bytes`, `allocations` |
    /// | `shared_thread_groups` | lost blocks not counted because they may be another test's, as in [`shared_thread_groups`](Report::shared_thread_groups), shaped as `groups` |
    /// | `threads`, `fds` | threads left running (`tid`, `name`) and descriptors left open (`fd`, `target`) |
    /// | `stacks` | `"frame-pointers"`, `"dwarf"`, or `null` when stacks were off |
    ///
    /// ```
    /// #[global_allocator]
    /// static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();
    ///
    /// # fn main() {
    /// let report = leakcheck::check(|| std::mem::forget(std::hint::black_box(vec![0u8; 64])));
    /// let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    /// assert_eq!(json["schema_version"], 1);
    /// assert_eq!(json["verdict"], "fail");
    /// assert_eq!(json["totals"]["leaked_bytes"], 64);
    /// # }
    /// ```
    pub fn to_json(&self) -> String {
        let _blocked = crate::track::Block::new();
        let mut reasons = Vec::new();
        if self.leaks_fail_report() {
            reasons.push("leak");
        }
        if !self.budget_overruns().is_empty() {
            reasons.push("budget");
        }
        if self.grew_every_run() {
            reasons.push("growth");
        }
        let (threads, fds) = (self.leaked_threads(), self.leaked_fds());
        if !threads.is_empty() {
            reasons.push("threads");
        }
        if !fds.is_empty() {
            reasons.push("fds");
        }
        let (reachable_bytes, reachable_allocations) = self.reachable();
        let not_counted: Vec<NotCounted> = self
            .not_counted()
            .iter()
            .map(|&(reason, bytes, allocations)| NotCounted {
                reason: match reason {
                    Excuse::Stdio => "stdio",
                    Excuse::OneTimeInit => "one_time_init",
                    Excuse::SymbolizerCache => "symbolizer_cache",
                    Excuse::ThreadTable => "thread_table",
                },
                bytes,
                allocations,
            })
            .collect();
        let json = JsonReport {
            schema_version: JSON_SCHEMA_VERSION,
            tool: "leakcheck",
            tool_version: env!("CARGO_PKG_VERSION"),
            test: test_name(self.subject()),
            subject: self.subject(),
            verdict: if self.is_clean() { "pass" } else { "fail" },
            reasons,
            totals: Totals {
                leaked_bytes: self.leaked_bytes(),
                leaked_allocations: self.leaked_allocations(),
                reachable_bytes,
                reachable_allocations,
                suppressed_bytes: self.suppressions_used().iter().map(|s| s.bytes).sum(),
                suppressed_allocations: self
                    .suppressions_used()
                    .iter()
                    .map(|s| s.allocations)
                    .sum(),
                not_counted_bytes: not_counted.iter().map(|n| n.bytes).sum(),
                not_counted_allocations: not_counted.iter().map(|n| n.allocations).sum(),
                untracked_allocations: self.untracked(),
            },
            allowance: self
                .allowance()
                .map(|(allow_bytes, allow_allocs)| Allowance {
                    allow_bytes,
                    allow_allocs,
                }),
            groups: groups_json(self.groups()),
            budgets: self
                .budget_overruns()
                .iter()
                .map(|b| JsonBudget {
                    budget: b.budget,
                    limit: b.limit,
                    actual: b.actual,
                    frames: frames_json(&b.frames),
                })
                .collect(),
            growth_per_run: self.growth_per_run(),
            suppressions_used: self
                .suppressions_used()
                .iter()
                .map(|s| JsonSuppression {
                    pattern: &s.pattern,
                    origin: &s.origin,
                    bytes: s.bytes,
                    allocations: s.allocations,
                })
                .collect(),
            not_counted,
            shared_thread_groups: groups_json(self.shared_thread_groups()),
            threads: threads
                .into_iter()
                .map(|(tid, name)| JsonThread { tid, name })
                .collect(),
            fds: fds
                .into_iter()
                .map(|(fd, target)| JsonFd { fd, target })
                .collect(),
            stacks: self.unwinder().map(|u| match u {
                Unwinder::FramePointers => "frame-pointers",
                Unwinder::CachedCfi | Unwinder::Slow | Unwinder::Unknown => "dwarf",
            }),
        };
        json::to_string(&json)
    }

    /// The report in DHAT's file format (`dhatFileVersion` 2, heap mode), for Valgrind's
    /// viewer `dh_view.html`: one program point per leak group, whose `eb`/`ebk` ("at t-end")
    /// are the bytes and blocks leaked from it and whose frames are its stack. leakcheck knows
    /// only the blocks still live at the end, so `tb`, `mb` and `gb` (total, maximum, at the
    /// global peak) repeat the leaked figures and lifetimes (`tl`) are 0; `te` and `tg` are the
    /// microseconds from the program's start (on Linux; elsewhere from the session's start or
    /// leakcheck's first report) to this report.
    ///
    /// ```
    /// #[global_allocator]
    /// static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();
    ///
    /// # fn main() {
    /// let report = leakcheck::check(|| std::mem::forget(std::hint::black_box(vec![0u8; 64])));
    /// let dhat: serde_json::Value = serde_json::from_str(&report.to_dhat_json()).unwrap();
    /// assert_eq!(dhat["dhatFileVersion"], 2);
    /// assert_eq!(dhat["pps"][0]["eb"], 64);
    /// assert_eq!(dhat["ftbl"][0], "[root]");
    /// # }
    /// ```
    pub fn to_dhat_json(&self) -> String {
        let _blocked = crate::track::Block::new();
        json::to_string(&dhat(self))
    }

    /// Writes `<dir>/<name>.json` ([`to_json`](Report::to_json)) and `<dir>/<name>.dhat.json`
    /// ([`to_dhat_json`](Report::to_dhat_json)), creating `dir` if needed; `name` is made
    /// safe as a file name (`module::test` becomes `module__test`). Returns the two paths.
    ///
    /// `#[leakcheck]` tests that fail do this by themselves when `LEAKCHECK_OUT=<dir>` is set.
    ///
    /// ```
    /// #[global_allocator]
    /// static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let session = leakcheck::Session::start();
    /// std::mem::forget(std::hint::black_box(vec![0u8; 64]));
    /// let report = session.finish();
    /// let dir = std::env::temp_dir().join(format!("leakcheck-doc-{}", std::process::id()));
    /// let (json, dhat) = report.write_files(&dir, "my_program")?;
    /// assert!(json.ends_with("my_program.json") && dhat.ends_with("my_program.dhat.json"));
    /// # std::fs::remove_dir_all(&dir)
    /// # }
    /// ```
    pub fn write_files(&self, dir: impl AsRef<Path>, name: &str) -> io::Result<(PathBuf, PathBuf)> {
        let _blocked = crate::track::Block::new();
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)?;
        let stem = file_stem(name);
        let json = dir.join(format!("{stem}.json"));
        let dhat = dir.join(format!("{stem}.dhat.json"));
        std::fs::write(&json, self.to_json())?;
        std::fs::write(&dhat, self.to_dhat_json())?;
        Ok((json, dhat))
    }
}

#[allow(non_snake_case)]
struct DhatFile {
    dhatFileVersion: u32,
    mode: &'static str,
    verb: &'static str,
    bklt: bool,
    bkacc: bool,
    tu: &'static str,
    Mtu: &'static str,
    tuth: u64,
    cmd: String,
    pid: u32,
    te: u64,
    tg: u64,
    pps: Vec<ProgramPoint>,
    ftbl: Vec<String>,
}
json_object!(DhatFile {
    dhatFileVersion,
    mode,
    verb,
    bklt,
    bkacc,
    tu,
    Mtu,
    tuth,
    cmd,
    pid,
    te,
    tg,
    pps,
    ftbl
});

struct ProgramPoint {
    tb: u64,
    tbk: u64,
    tl: u64,
    mb: u64,
    mbk: u64,
    gb: u64,
    gbk: u64,
    eb: u64,
    ebk: u64,
    fs: Vec<usize>,
}
json_object!(ProgramPoint {
    tb,
    tbk,
    tl,
    mb,
    mbk,
    gb,
    gbk,
    eb,
    ebk,
    fs
});

/// A frame as dhat-rs writes it: `0x1234: my_crate::f (src/lib.rs:10:5)`.
fn dhat_frame(frame: &Frame) -> String {
    format!(
        "{:#x}: {} ({}:{}:{})",
        frame.address,
        frame.function.as_deref().unwrap_or("???"),
        frame
            .file
            .as_ref()
            .map_or_else(|| "???".to_owned(), |p| p.display().to_string()),
        frame.line.unwrap_or(0),
        frame.column.unwrap_or(0)
    )
}

fn dhat(report: &Report) -> DhatFile {
    let mut ftbl = vec!["[root]".to_owned()];
    let mut index: HashMap<String, usize> = HashMap::new();
    let pps = report
        .groups()
        .iter()
        .map(|group| {
            let fs = group
                .frames()
                .iter()
                .map(|frame| {
                    let text = dhat_frame(frame);
                    *index.entry(text).or_insert_with_key(|text| {
                        ftbl.push(text.clone());
                        ftbl.len() - 1
                    })
                })
                .collect();
            let (bytes, blocks) = (group.bytes() as u64, group.allocations() as u64);
            ProgramPoint {
                tb: bytes,
                tbk: blocks,
                tl: 0,
                mb: bytes,
                mbk: blocks,
                gb: bytes,
                gbk: blocks,
                eb: bytes,
                ebk: blocks,
                fs,
            }
        })
        .collect();
    let elapsed = EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64;
    DhatFile {
        dhatFileVersion: 2,
        mode: "rust-heap",
        verb: "Allocated",
        bklt: true,
        bkacc: false,
        tu: "µs",
        Mtu: "s",
        tuth: 10,
        cmd: std::env::args().collect::<Vec<_>>().join(" "),
        pid: std::process::id(),
        te: elapsed,
        tg: elapsed,
        pps,
        ftbl,
    }
}

/// A report as a test prints it: text, or JSON with `LEAKCHECK_FORMAT=json`.
pub(crate) struct Shown {
    report: Report,
    json: bool,
}

impl Shown {
    /// The report as the test prints it, followed, for the first report of the process it
    /// applies to, by the note that holds for the whole process (not in JSON, which says which
    /// walker took the stacks in `stacks`).
    pub(crate) fn text(&self) -> String {
        let mut text = self.to_string();
        if !self.json {
            if let Some(note) = crate::report::process_note_once(&self.report) {
                text.push_str(note);
                text.push('\n');
            }
        }
        text
    }
}

impl core::ops::Deref for Shown {
    type Target = Report;
    fn deref(&self) -> &Report {
        &self.report
    }
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.json {
            writeln!(f, "{}", self.report.to_json())
        } else {
            self.report.fmt(f)
        }
    }
}

/// Called with every `#[leakcheck]` test's report before the verdict: a failing one is saved
/// to `LEAKCHECK_OUT` (a file that cannot be written is reported, not fatal), and the report
/// prints as `LEAKCHECK_FORMAT` says.
pub(crate) fn for_verdict(config: &Config, report: Report) -> Shown {
    if !report.is_clean() {
        if let Some(dir) = config::out_dir() {
            save(&report, &dir, test_name(report.subject()));
        }
    }
    Shown {
        report,
        json: config.format == Format::Json,
    }
}

fn save(report: &Report, dir: &Path, name: &str) {
    if let Err(error) = report.write_files(dir, name) {
        eprintln!(
            "leakcheck: could not write the report files for {} to {} (LEAKCHECK_OUT): {error}",
            report.subject(),
            dir.display()
        );
    }
}

/// Prints the `LEAKCHECK_AT_EXIT` report on stderr and saves it to `LEAKCHECK_OUT`.
pub(crate) fn at_exit(report: &Report, program: &str) {
    let json = Config::from_env().is_ok_and(|c| c.format == Format::Json);
    if json {
        eprintln!("{}", report.to_json());
    } else {
        eprint!("{report}");
        if let Some(note) = crate::report::process_note_once(report) {
            eprintln!("{note}");
        }
    }
    if let Some(dir) = config::out_dir() {
        save(report, &dir, program);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_names_become_safe_file_names() {
        assert_eq!(file_stem("config::parses_config"), "config__parses_config");
        assert_eq!(file_stem("a b/c\\d"), "a_b_c_d");
        assert_eq!(file_stem("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(file_stem(""), "leakcheck");
        assert_eq!(file_stem(".."), "leakcheck");
        assert_eq!(file_stem(&"x".repeat(300)).len(), 200);
    }

    #[test]
    fn test_name_comes_from_the_subject() {
        assert_eq!(test_name("test `m::t`"), "m::t");
        assert_eq!(test_name("check at a.rs:1"), "check at a.rs:1");
    }

    #[test]
    fn dhat_frames_read_like_dhat_rs() {
        let frame = Frame {
            function: Some("my_crate::f".into()),
            file: Some("src/lib.rs".into()),
            line: Some(10),
            column: Some(5),
            address: 0x1234,
        };
        assert_eq!(dhat_frame(&frame), "0x1234: my_crate::f (src/lib.rs:10:5)");
    }
}
