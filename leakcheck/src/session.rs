//! Ad-hoc leak hunting in a whole program: a process-wide [`Session`], [`Snapshot`]s of what
//! it holds by call site, their [`Diff`], and `LEAKCHECK_AT_EXIT`.
#![forbid(unsafe_code)]

use crate::check::StartError;
use crate::config::Config;
use crate::options::{Check, Reachable};
use crate::raw::stack::{self, Unwinder};
use crate::raw::table::Record;
use crate::report::{thousands, write_frames, Frame, Kind, Report, ReportInput};
use crate::suppress;
use crate::symbolize;
use crate::track::{self, Scope, ScopeSettings, ScopeStats};
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set while a [`Session`] exists (one per process).
static SESSION_RUNNING: AtomicBool = AtomicBool::new(false);
/// Set while the `LEAKCHECK_AT_EXIT` session runs.
static AT_EXIT_RUNNING: AtomicBool = AtomicBool::new(false);

/// Leak tracking for the whole process, for hunting leaks and growth in a program (a server,
/// a CLI, a benchmark) rather than in one test: tracemalloc's snapshots and diffs, for Rust.
///
/// ```
/// #[global_allocator]
/// static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();
///
/// # fn main() {
/// let session = leakcheck::Session::start();
/// let before = session.snapshot();
/// let cache: Vec<Vec<u8>> = (0..4).map(|_| std::hint::black_box(vec![0u8; 256])).collect();
/// let after = session.snapshot();
/// let diff = after.diff(&before);
/// assert_eq!(diff.bytes_delta(), after.total_bytes() as i64 - before.total_bytes() as i64);
/// println!("{}", diff.top(10));
/// drop(cache);
/// let report = session.finish();
/// println!("{report}");
/// # }
/// ```
///
/// From [`start`](Session::start) on, every thread's allocations are recorded with their stack
/// (`LEAKCHECK_BACKTRACE=0` turns stacks off), except blocks made inside a [`check`] or a
/// `#[leakcheck]` test, which belong to that check. Tracking costs what it costs inside a
/// check (a stack walk per allocation): it is a tool for hunting, not for production.
///
/// [`check`]: crate::check
#[must_use = "tracking runs until the session is finished or dropped"]
pub struct Session {
    scope: Option<Scope>,
    subject: String,
    stacks: Option<Unwinder>,
    rules: &'static [suppress::Rule],
    untracked_before: u64,
    at_exit: bool,
}

impl Session {
    /// Starts tracking every thread of the process, the calling one included.
    ///
    /// # Panics
    ///
    /// If a session is already running (one per process, `LEAKCHECK_AT_EXIT=1` starts one
    /// before `main`), if a process-wide check is running (a `#[leakcheck]` test under
    /// cargo-nextest or `leakcheck::harness` owns the process), if the leakcheck allocator is
    /// not the `#[global_allocator]`, or if an environment variable or the suppression file is
    /// invalid.
    #[track_caller]
    pub fn start() -> Session {
        let location = core::panic::Location::caller();
        let subject = format!("session started at {}:{}", location.file(), location.line());
        match Session::try_start(subject, false) {
            Ok(session) => session,
            Err(message) => panic!("{message}"),
        }
    }

    fn try_start(subject: String, at_exit: bool) -> Result<Session, String> {
        let config = Config::from_env().map_err(|e| e.to_string())?;
        if SESSION_RUNNING.swap(true, Ordering::AcqRel) {
            return Err(if AT_EXIT_RUNNING.load(Ordering::Relaxed) {
                "leakcheck: Session::start(): LEAKCHECK_AT_EXIT=1 already tracks this process \
                 from before `main`; unset LEAKCHECK_AT_EXIT to run your own session"
                    .to_owned()
            } else {
                "leakcheck: Session::start(): another leakcheck::Session is running in this \
                 process; finish() or drop it first (one session per process)"
                    .to_owned()
            });
        }
        let session = Session::arm(subject, &config, at_exit);
        if session.is_err() {
            SESSION_RUNNING.store(false, Ordering::Release);
        }
        session
    }

    fn arm(subject: String, config: &Config, at_exit: bool) -> Result<Session, String> {
        crate::output::mark_epoch();
        let rules = suppress::file_rules().map_err(|e| e.to_string())?;
        let stacks = config.backtrace.then(stack::calibrate);
        let scope = Scope::new(ScopeSettings {
            stacks: stacks.is_some(),
            process_wide: true,
            ..ScopeSettings::default()
        })
        .map_err(|_| StartError::TooManyChecks.to_string())?;
        if !scope.is_process_wide() {
            return Err(
                "leakcheck: Session::start(): a process-wide leak check is running (a \
                 #[leakcheck] test under cargo-nextest or leakcheck::harness owns the process); \
                 start sessions outside checked tests, or run the tests under `cargo test`"
                    .to_owned(),
            );
        }
        scope.include_main_thread();
        let session = Session {
            scope: Some(scope),
            subject,
            stacks,
            rules,
            untracked_before: track::untracked_so_far(),
            at_exit,
        };
        if !session.allocator_sees_scope() {
            return Err(StartError::NotInstalled.to_string());
        }
        Ok(session)
    }

    fn allocator_sees_scope(&self) -> bool {
        let Some(scope) = &self.scope else {
            return false;
        };
        let _inside = scope.enter();
        let probe = std::hint::black_box(Box::new(0u64));
        let seen = scope.owns(&*probe as *const u64 as usize);
        drop(probe);
        seen
    }

    /// The blocks allocated since [`start`](Session::start) and live now, by call site.
    pub fn snapshot(&self) -> Snapshot {
        let _blocked = track::Block::new();
        let records = self
            .scope
            .as_ref()
            .map(Scope::live_records)
            .unwrap_or_default();
        Snapshot::of(&records)
    }

    /// Stops tracking and reports what was allocated since [`start`](Session::start) and is
    /// still live, in the report a failing test prints.
    ///
    /// Every group is listed, labelled with what a conservative scan of the statics and the
    /// calling thread's thread-locals found: definitely lost, indirectly lost, or still
    /// reachable. Stacks are not scanned (stale copies of addresses in their frames would hide
    /// leaks), so a block that only a local variable points to is labelled lost. Blocks made
    /// by one-time initialisation (lazy statics) and std's stdio buffers are not counted, as in
    /// tests. The report [`is_clean`](Report::is_clean) when nothing is left;
    /// [`Report::write_files`] saves it for CI or a viewer.
    pub fn finish(mut self) -> Report {
        self.finish_with(false)
    }

    /// `at_exit`: report only the blocks that are not reachable (LeakSanitizer's at-exit
    /// report); otherwise every block still live, with its kind.
    fn finish_with(&mut self, at_exit: bool) -> Report {
        let reachable = if at_exit {
            Reachable::Ignore
        } else {
            Reachable::Fail
        };
        let Some(scope) = self.scope.take() else {
            return self.build(&[], &[], reachable);
        };
        let finished = scope.finish();
        let _blocked = track::Block::new();
        let records = finished.records().to_vec();
        let verdicts = classify(&records, finished.id());
        let held = crate::check::held_addresses(&records, &verdicts.held_by_threads);
        let report = self.build(&records, &verdicts.kinds, reachable);
        crate::check::settle(finished, &records, &verdicts.kinds, &held);
        report
    }

    fn build(&self, records: &[Record], kinds: &[Kind], reachable: Reachable) -> Report {
        let check = Check::new().reachable(reachable);
        Report::build(ReportInput {
            subject: self.subject.clone(),
            records,
            kinds,
            shared: &[],
            overlapped: &crate::overlap::Overlapped::default(),
            stacks: self.stacks,
            untracked: track::untracked_so_far().saturating_sub(self.untracked_before),
            stackless: 0,
            without_scan: None,
            check: &check,
            stats: ScopeStats::default(),
            growth: None,
            rules: self.rules,
            resources: Default::default(),
        })
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("subject", &self.subject)
            .field("running", &self.scope.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Dropping the scope discards its records.
        self.scope = None;
        if self.at_exit {
            AT_EXIT_RUNNING.store(false, Ordering::Relaxed);
        }
        SESSION_RUNNING.store(false, Ordering::Release);
    }
}

/// How the blocks left at the end relate to the roots: the same conservative scan as checks
/// (statics, this thread's thread-locals and the stacks of the threads started during the
/// session that still run; not this thread's stack: at exit `main` has returned). Threads
/// started before the session are no roots of it.
fn classify(records: &[Record], scope: u32) -> crate::check::Verdicts {
    crate::check::classify(records, scope, None)
}

/// A call site's frames as a key: two raw stacks that read the same are one site.
type SiteKey = Vec<(Option<String>, Option<PathBuf>, Option<u32>, Option<u32>)>;

fn key_of(frames: &[Frame]) -> SiteKey {
    frames
        .iter()
        .map(|f| (f.function.clone(), f.file.clone(), f.line, f.column))
        .collect()
}

/// The blocks a [`Session`] holds at one moment, grouped by the stack that allocated them.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    sites: Vec<Site>,
    total_bytes: usize,
    total_blocks: usize,
}

/// Live blocks allocated from one call site.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Site {
    frames: Vec<Frame>,
    bytes: usize,
    blocks: usize,
}

impl Site {
    /// The allocation stack, the allocating call first, trimmed to the program's own frames as
    /// in reports; empty when stacks are off.
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    /// Live bytes allocated here.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Live blocks allocated here.
    pub fn blocks(&self) -> usize {
        self.blocks
    }
}

impl Snapshot {
    fn of(records: &[Record]) -> Snapshot {
        let mut by_stack: HashMap<u32, (usize, usize)> = HashMap::new();
        for record in records {
            let entry = by_stack.entry(record.stack).or_default();
            entry.0 += record.size;
            entry.1 += 1;
        }
        let mut by_site: HashMap<SiteKey, Site> = HashMap::new();
        for (stack, (bytes, blocks)) in by_stack {
            let frames = if stack == 0 {
                Vec::new()
            } else {
                symbolize::user_frames(&symbolize::resolve(stack))
            };
            let site = by_site.entry(key_of(&frames)).or_insert(Site {
                frames,
                bytes: 0,
                blocks: 0,
            });
            site.bytes += bytes;
            site.blocks += blocks;
        }
        let mut sites: Vec<Site> = by_site.into_values().collect();
        sites.sort_by(|a, b| {
            b.bytes
                .cmp(&a.bytes)
                .then(b.blocks.cmp(&a.blocks))
                .then_with(|| key_of(&a.frames).cmp(&key_of(&b.frames)))
        });
        Snapshot {
            total_bytes: sites.iter().map(|s| s.bytes).sum(),
            total_blocks: sites.iter().map(|s| s.blocks).sum(),
            sites,
        }
    }

    /// Call sites, most bytes first.
    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    /// Live bytes in all.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// Live blocks in all.
    pub fn total_blocks(&self) -> usize {
        self.total_blocks
    }

    /// What changed from `earlier` to this snapshot, per call site, largest change first.
    pub fn diff(&self, earlier: &Snapshot) -> Diff {
        let _blocked = track::Block::new();
        let mut before: HashMap<SiteKey, &Site> = earlier
            .sites
            .iter()
            .map(|s| (key_of(&s.frames), s))
            .collect();
        let mut sites: Vec<SiteDiff> = self
            .sites
            .iter()
            .map(|site| {
                let old = before.remove(&key_of(&site.frames));
                SiteDiff {
                    frames: site.frames.clone(),
                    bytes: site.bytes,
                    blocks: site.blocks,
                    bytes_delta: site.bytes as i64 - old.map_or(0, |o| o.bytes as i64),
                    blocks_delta: site.blocks as i64 - old.map_or(0, |o| o.blocks as i64),
                }
            })
            .collect();
        // Sites that are gone now.
        sites.extend(
            earlier
                .sites
                .iter()
                .filter(|old| before.contains_key(&key_of(&old.frames)))
                .map(|old| SiteDiff {
                    frames: old.frames.clone(),
                    bytes: 0,
                    blocks: 0,
                    bytes_delta: -(old.bytes as i64),
                    blocks_delta: -(old.blocks as i64),
                }),
        );
        // tracemalloc's `compare_to` order: absolute size change, size, absolute count
        // change, count; then the stack, so the order is stable.
        sites.sort_by(|a, b| {
            b.bytes_delta
                .unsigned_abs()
                .cmp(&a.bytes_delta.unsigned_abs())
                .then(b.bytes.cmp(&a.bytes))
                .then(
                    b.blocks_delta
                        .unsigned_abs()
                        .cmp(&a.blocks_delta.unsigned_abs()),
                )
                .then(b.blocks.cmp(&a.blocks))
                .then_with(|| key_of(&a.frames).cmp(&key_of(&b.frames)))
        });
        Diff {
            bytes_delta: self.total_bytes as i64 - earlier.total_bytes as i64,
            blocks_delta: self.total_blocks as i64 - earlier.total_blocks as i64,
            sites,
        }
    }
}

impl fmt::Display for Snapshot {
    /// The ten largest call sites with their stacks.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "leakcheck: {} live in {} from {}",
            bytes(self.total_bytes),
            allocations(self.total_blocks),
            count(self.sites.len(), "call site", "call sites")
        )?;
        for (i, site) in self.sites.iter().take(10).enumerate() {
            writeln!(
                f,
                "\n#{}: {} in {}{}",
                i + 1,
                bytes(site.bytes),
                allocations(site.blocks),
                allocated_at(&site.frames)
            )?;
            write_frames(f, &site.frames)?;
        }
        if self.sites.len() > 10 {
            writeln!(f, "\n... and {} more call sites", self.sites.len() - 10)?;
        }
        Ok(())
    }
}

/// Per-call-site changes between two [`Snapshot`]s, from [`Snapshot::diff`].
///
/// Sorted like Python's `tracemalloc.Snapshot.compare_to`: largest absolute change in bytes
/// first, then largest size, largest absolute change in blocks, most blocks. Sites present
/// in only one snapshot are included (a site that is gone has `bytes() == 0`).
#[derive(Clone, Debug, Default)]
pub struct Diff {
    sites: Vec<SiteDiff>,
    bytes_delta: i64,
    blocks_delta: i64,
}

/// One call site's change between two snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SiteDiff {
    frames: Vec<Frame>,
    bytes: usize,
    blocks: usize,
    bytes_delta: i64,
    blocks_delta: i64,
}

impl SiteDiff {
    /// The allocation stack, as in [`Site::frames`].
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    /// Live bytes from this site in the later snapshot.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Live blocks from this site in the later snapshot.
    pub fn blocks(&self) -> usize {
        self.blocks
    }

    /// Bytes gained (negative: lost) since the earlier snapshot.
    pub fn bytes_delta(&self) -> i64 {
        self.bytes_delta
    }

    /// Blocks gained (negative: lost) since the earlier snapshot.
    pub fn blocks_delta(&self) -> i64 {
        self.blocks_delta
    }
}

impl Diff {
    /// Every call site of either snapshot, largest change first.
    pub fn sites(&self) -> &[SiteDiff] {
        &self.sites
    }

    /// Change in live bytes, all sites together.
    pub fn bytes_delta(&self) -> i64 {
        self.bytes_delta
    }

    /// Change in live blocks, all sites together.
    pub fn blocks_delta(&self) -> i64 {
        self.blocks_delta
    }

    /// The first `n` sites, for printing with their stacks.
    pub fn top(&self, n: usize) -> Top<'_> {
        Top { diff: self, n }
    }
}

impl fmt::Display for Diff {
    /// Every site that changed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let changed = self
            .sites
            .iter()
            .filter(|s| s.bytes_delta != 0 || s.blocks_delta != 0)
            .count();
        Top {
            diff: self,
            n: changed,
        }
        .fmt(f)
    }
}

/// The first sites of a [`Diff`], printed with their stacks: [`Diff::top`].
#[derive(Clone, Copy, Debug)]
pub struct Top<'a> {
    diff: &'a Diff,
    n: usize,
}

impl fmt::Display for Top<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.diff.sites[..self.n.min(self.diff.sites.len())];
        writeln!(
            f,
            "leakcheck: top {} of {} by growth: {}, {} in all",
            shown.len(),
            count(self.diff.sites.len(), "call site", "call sites"),
            signed(self.diff.bytes_delta, "byte", "bytes"),
            signed(self.diff.blocks_delta, "allocation", "allocations"),
        )?;
        for (i, site) in shown.iter().enumerate() {
            writeln!(
                f,
                "\n#{}: {}, {} (now {} in {}){}",
                i + 1,
                signed(site.bytes_delta, "byte", "bytes"),
                signed(site.blocks_delta, "allocation", "allocations"),
                bytes(site.bytes),
                allocations(site.blocks),
                allocated_at(&site.frames)
            )?;
            write_frames(f, &site.frames)?;
        }
        let rest = self.diff.sites.len() - shown.len();
        if rest > 0 {
            writeln!(f, "\n... and {rest} more call sites")?;
        }
        Ok(())
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

fn bytes(n: usize) -> String {
    count(n, "byte", "bytes")
}

fn allocations(n: usize) -> String {
    count(n, "allocation", "allocations")
}

fn signed(n: i64, one: &str, many: &str) -> String {
    let sign = if n < 0 { "-" } else { "+" };
    let abs = n.unsigned_abs() as usize;
    format!(
        "{sign}{} {}",
        thousands(abs),
        if abs == 1 { one } else { many }
    )
}

fn allocated_at(frames: &[Frame]) -> &'static str {
    if frames.is_empty() {
        " (no stack: LEAKCHECK_BACKTRACE=0, or none could be resolved)"
    } else {
        ", allocated at:"
    }
}

// ---- LEAKCHECK_AT_EXIT ----

/// The session `LEAKCHECK_AT_EXIT=1` starts before `main`.
static AT_EXIT_SESSION: std::sync::Mutex<Option<Session>> = std::sync::Mutex::new(None);

/// Called before `main` by the constructor in `raw::exit`: starts the process's session when
/// `LEAKCHECK_AT_EXIT=1`. Never panics (a panic cannot unwind out of a constructor).
pub(crate) fn start_at_exit() {
    let _ = std::panic::catch_unwind(|| {
        let config = match Config::from_env() {
            Ok(config) => config,
            Err(error) => {
                // Only complain when the error is about this variable or it asks for tracking.
                if std::env::var_os("LEAKCHECK_AT_EXIT").is_some_and(|v| !v.is_empty()) {
                    eprintln!("{error}");
                }
                return;
            }
        };
        if !config.at_exit {
            return;
        }
        AT_EXIT_RUNNING.store(true, Ordering::Relaxed);
        match Session::try_start(format!("program `{}`", program_name()), true) {
            Ok(session) => {
                if crate::raw::exit::report_at_exit() {
                    *AT_EXIT_SESSION.lock().unwrap_or_else(|e| e.into_inner()) = Some(session);
                } else {
                    eprintln!("leakcheck: LEAKCHECK_AT_EXIT=1: could not register the exit hook");
                }
            }
            Err(message) => {
                AT_EXIT_RUNNING.store(false, Ordering::Relaxed);
                eprintln!("{message}");
            }
        }
    });
}

/// Called by the `atexit` hook: finishes the session and prints (and saves) what is left that
/// nothing points to.
pub(crate) fn finish_at_exit() {
    let leaked = std::panic::catch_unwind(|| {
        let session = AT_EXIT_SESSION
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(mut session) = session else {
            return false;
        };
        let report = session.finish_with(true);
        drop(session);
        let _blocked = track::Block::new();
        crate::output::at_exit(&report, &program_name());
        if !crate::raw::scan::supported() {
            eprintln!(
                "note: leakcheck cannot scan for pointers on this platform: every block still live \
                 at exit is listed as lost, reachable or not"
            );
        }
        let warn = Config::from_env().is_ok_and(|c| c.mode == crate::config::Mode::Warn);
        if report.is_clean() || warn {
            return false;
        }
        eprintln!(
            "leakcheck: the program leaked: exit status {} (LEAKCHECK_AT_EXIT=1; with \
             LEAKCHECK=warn the report is printed and the status is the program's)",
            crate::raw::exit::LEAKED_STATUS
        );
        true
    });
    if leaked.unwrap_or(false) {
        crate::raw::exit::exit_leaked();
    }
}

fn program_name() -> String {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "program".to_owned())
}
