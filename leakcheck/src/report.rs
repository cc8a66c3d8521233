//! The leak report: what a check found, as data and as the text a failing test prints.
#![forbid(unsafe_code)]

use crate::options::{Check, Reachable};
use crate::overlap::Overlapped;
use crate::raw::stack::Unwinder;
use crate::raw::table::Record;
use crate::resources::ResourceOutcome;
use crate::suppress::{self, Rule};
use crate::symbolize::{self, Excuse};
use crate::track::ScopeStats;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

/// Groups shown in the text report; the rest are summarised in one line.
const SHOWN_GROUPS: usize = 10;
/// Frames shown per group: at most this many, the allocation site and the frames nearest it
/// first, then (of a longer stack) the last [`SHOWN_LAST_FRAMES`], which end at the test body.
const SHOWN_FRAMES: usize = 16;
const SHOWN_LAST_FRAMES: usize = 4;

/// One resolved stack frame.
///
/// ```
/// #[global_allocator]
/// static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();
///
/// # fn main() {
/// let report = leakcheck::check(|| std::mem::forget(std::hint::black_box(vec![1u8; 10])));
/// for group in report.groups() {
///     for frame in group.frames() {
///         println!("{:?} at {:?}:{:?}", frame.function, frame.file, frame.line);
///     }
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Frame {
    /// Demangled function name, without the hash suffix.
    pub function: Option<String>,
    /// Source file, relative to the workspace when inside it.
    pub file: Option<PathBuf>,
    /// 1-based line.
    pub line: Option<u32>,
    /// 1-based column.
    pub column: Option<u32>,
    /// The return address this frame was resolved from. A frame with neither function nor
    /// file whose `address` is below 4096 stands for that many frames of a deep stack that were
    /// not kept: a stack keeps its innermost frames (the allocation site) and its outermost
    /// (the test body) whatever its depth.
    pub address: usize,
}

/// How a leftover block relates to the program's roots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Kind {
    /// Nothing points to it: lost for good.
    Definite,
    /// Only lost blocks point to it.
    Indirect,
    /// A static, a thread-local or a live stack frame still points to it.
    Reachable,
    /// Live memory that grew in every measured run of a `repeat` check.
    Growth,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Definite => "definitely lost",
            Kind::Indirect => "indirectly lost",
            Kind::Reachable => "still reachable",
            Kind::Growth => "grew in the last run",
        }
    }
}

/// Leaked blocks that share one allocation stack.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeakGroup {
    bytes: usize,
    allocations: usize,
    kind: Kind,
    frames: Vec<Frame>,
}

impl LeakGroup {
    /// Bytes leaked from this stack.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Blocks leaked from this stack.
    pub fn allocations(&self) -> usize {
        self.allocations
    }

    /// How the blocks were lost.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The allocation stack, innermost (the allocating call) first, trimmed to the user's
    /// frames; empty when stacks were off.
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    /// A suppression line that matches this group, ready to paste into `leakcheck.supp`.
    ///
    /// It names the innermost frame of the user's own code (a source file inside the
    /// workspace), else the innermost frame outside std, core and alloc; never a frame of
    /// those, whose pattern (`^alloc::alloc::alloc$`) would hide every leak in the program,
    /// nor a dependency's when the user's code is on the stack (`^smallvec::SmallVec<A>::try_grow$`
    /// would hide every leak through that function). `None` when no frame qualifies.
    pub fn suppression(&self) -> Option<String> {
        let qualifies = |frame: &&Frame| {
            symbolize::owner(frame) == symbolize::Owner::User && !symbolize::is_gap(frame)
        };
        let own_code = |frame: &&Frame| frame.file.as_ref().is_some_and(|file| file.is_relative());
        let frame = self
            .frames
            .iter()
            .filter(qualifies)
            .find(own_code)
            .or_else(|| self.frames.iter().find(qualifies))?;
        let function = frame.function.as_deref().unwrap_or("");
        // A closure's frame is matched through its enclosing function's path (one level is
        // cut when matching, see `suppress`), so one trailing `{{closure}}` goes; a closure
        // inside an impl's path (`<m::f::{{closure}}::T as Drop>::drop`) stays as it is.
        let function = function.strip_suffix("::{{closure}}").unwrap_or(function);
        if function.contains("::") {
            return Some(format!("leak:^{function}$"));
        }
        // Short names (`{closure#0}`, inlined frames in builds with line tables only) would
        // match far too much: the file says where.
        let file = frame.file.as_ref()?;
        Some(format!("leak:{}", file.display()))
    }
}

/// A suppression pattern that matched, and how much it hid.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SuppressionUse {
    /// The pattern, as written after `leak:`.
    pub pattern: String,
    /// Where it was written: `file:line`, or `#[leakcheck(ignore)]`.
    pub origin: String,
    /// Blocks it suppressed.
    pub allocations: usize,
    /// Bytes it suppressed.
    pub bytes: usize,
}

/// A heap budget (`max_allocs`, `max_bytes`, `max_peak_bytes`) the body went over.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BudgetOverrun {
    /// The option's name.
    pub budget: &'static str,
    /// The allowed figure.
    pub limit: u64,
    /// The figure measured.
    pub actual: u64,
    /// For `max_allocs`: the stack of the first allocation past the budget.
    pub frames: Vec<Frame>,
}

/// The growth measured by a `repeat` check.
#[derive(Clone)]
pub(crate) struct Growth {
    /// Live bytes gained by each measured run.
    pub(crate) per_run: Vec<i64>,
    /// Stacks whose live blocks grew in the last run: (stack, bytes, blocks).
    pub(crate) sites: Vec<(u32, usize, usize)>,
}

/// Everything a report is made from.
pub(crate) struct ReportInput<'a> {
    pub(crate) subject: String,
    pub(crate) records: &'a [Record],
    pub(crate) kinds: &'a [Kind],
    /// Per record: lost, but maybe another test's (see `check::Judged`); empty for none.
    pub(crate) shared: &'a [bool],
    /// The checks that were open while this one was.
    pub(crate) overlapped: &'a Overlapped,
    pub(crate) stacks: Option<Unwinder>,
    pub(crate) untracked: u64,
    /// Blocks recorded without their stack (the stack store was full).
    pub(crate) stackless: u64,
    /// Why leftovers were judged without the reachability scan, and whether a warm-up run
    /// came first.
    pub(crate) without_scan: Option<(&'static str, bool)>,
    pub(crate) check: &'a Check,
    pub(crate) stats: ScopeStats,
    pub(crate) growth: Option<Growth>,
    pub(crate) rules: &'a [Rule],
    pub(crate) resources: ResourceOutcome,
}

/// What a check found: the blocks made during the checked code and still live at its end,
/// judged against the check's options.
///
/// Returned by [`check`](crate::check) and [`Check::run`]; a failing `#[leakcheck]` test prints
/// its `Display` form.
///
/// ```
/// #[global_allocator]
/// static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();
///
/// # fn main() {
/// let report = leakcheck::check(|| {
///     std::mem::forget(std::hint::black_box(vec![0u8; 100]));
/// });
/// assert!(!report.is_clean());
/// assert_eq!(report.leaked_bytes(), 100);
/// assert_eq!(report.leaked_allocations(), 1);
/// println!("{report}");
/// # }
/// ```
#[must_use = "a Report says whether the code leaked; check `is_clean()`"]
#[derive(Clone, Debug)]
pub struct Report {
    subject: String,
    groups: Vec<LeakGroup>,
    reachable: (usize, usize),
    excused: Vec<(Excuse, usize, usize)>,
    suppressed: Vec<SuppressionUse>,
    allowance: Option<(Option<usize>, Option<usize>)>,
    budgets: Vec<BudgetOverrun>,
    growth: Option<Vec<i64>>,
    stacks: Option<Unwinder>,
    untracked: u64,
    stackless: u64,
    without_scan: Option<(&'static str, bool)>,
    /// `reachable = "fail"` was set.
    reachable_fails: bool,
    resources: ResourceOutcome,
    /// Lost blocks that threads the check left running made while other checks were open.
    shared: Vec<LeakGroup>,
    overlapped: Overlapped,
}

impl Report {
    /// Whether the check passed: no leak beyond the allowance, no budget broken, no growth in
    /// every run.
    pub fn is_clean(&self) -> bool {
        !self.leaks_fail() && self.budgets.is_empty() && !self.grew() && self.resources.is_clean()
    }

    /// Whether the report carries something to say even when clean (e.g. a skipped thread
    /// check), so the attribute prints it.
    pub(crate) fn has_notes(&self) -> bool {
        !self.resources.notes.is_empty() || !self.shared.is_empty()
    }

    /// Lost blocks that may be another test's, grouped by stack, not counted: made by threads
    /// the check started and left running (a pool, an executor) while other checks were open,
    /// which those checks' tests may have handed work to. Empty where no other check was open
    /// (cargo-nextest, `--test-threads=1`), and with `shared_threads = "fail"`, which counts
    /// them in [`groups`](Report::groups).
    pub fn shared_thread_groups(&self) -> &[LeakGroup] {
        &self.shared
    }

    /// Threads left running when the body returned, as `(tid, name)` (with `threads`).
    pub fn leaked_threads(&self) -> Vec<(u32, String)> {
        self.resources
            .leaked_threads
            .iter()
            .map(|t| (t.tid, t.name.clone()))
            .collect()
    }

    /// File descriptors left open when the body returned, as `(fd, target)` (with `fds`).
    pub fn leaked_fds(&self) -> Vec<(u32, String)> {
        self.resources
            .leaked_fds
            .iter()
            .map(|f| (f.fd, f.target.clone()))
            .collect()
    }

    /// Bytes that count as leaked (definitely and indirectly lost; reachable ones too with
    /// `reachable = "fail"`; for `repeat`, the growth of the last run). Allowed leaks are
    /// included (they pass the check, but show); suppressed ones are not (see
    /// [`suppressions_used`](Report::suppressions_used)).
    pub fn leaked_bytes(&self) -> usize {
        self.groups.iter().map(|g| g.bytes).sum()
    }

    /// Blocks that count as leaked, like [`leaked_bytes`](Report::leaked_bytes).
    pub fn leaked_allocations(&self) -> usize {
        self.groups.iter().map(|g| g.allocations).sum()
    }

    /// Bytes and blocks still reachable at the end (not failing unless `reachable = "fail"`).
    pub fn reachable(&self) -> (usize, usize) {
        self.reachable
    }

    /// Leaks grouped by allocation stack: definitely lost first, then indirectly lost, then
    /// (with `reachable = "fail"`) reachable, each largest first.
    pub fn groups(&self) -> &[LeakGroup] {
        &self.groups
    }

    /// The suppressions that matched, with what they hid.
    pub fn suppressions_used(&self) -> &[SuppressionUse] {
        &self.suppressed
    }

    /// The heap budgets the body went over.
    pub fn budget_overruns(&self) -> &[BudgetOverrun] {
        &self.budgets
    }

    /// For a `repeat` check: the live bytes each measured run added.
    pub fn growth_per_run(&self) -> Option<&[i64]> {
        self.growth.as_deref()
    }

    fn leaks_fail(&self) -> bool {
        if self.growth.is_some() || self.leaked_allocations() == 0 {
            return false;
        }
        match self.allowance {
            None => true,
            Some((bytes, allocs)) => {
                bytes.is_some_and(|b| self.leaked_bytes() > b)
                    || allocs.is_some_and(|a| self.leaked_allocations() > a)
            }
        }
    }

    /// Every measured run grew, by more than `allow_bytes` where that is set.
    fn grew(&self) -> bool {
        let tolerated = self
            .allowance
            .and_then(|(bytes, _)| bytes)
            .map_or(0, |b| b as i64);
        self.growth
            .as_ref()
            .is_some_and(|runs| !runs.is_empty() && runs.iter().all(|&g| g > tolerated))
    }

    /// Builds the report. Resolves each distinct stack once.
    pub(crate) fn build(input: ReportInput<'_>) -> Report {
        let ReportInput {
            subject,
            records,
            kinds,
            shared,
            overlapped,
            stacks,
            untracked,
            stackless,
            without_scan,
            check,
            stats,
            growth,
            rules,
            resources,
        } = input;
        let mut by_stack: HashMap<(u32, Kind, bool), (usize, usize)> = HashMap::new();
        match &growth {
            Some(growth) => {
                for &(stack, bytes, blocks) in &growth.sites {
                    by_stack.insert((stack, Kind::Growth, false), (bytes, blocks));
                }
            }
            None => {
                for (i, (record, &kind)) in records.iter().zip(kinds).enumerate() {
                    let is_shared = shared.get(i).copied().unwrap_or(false);
                    let entry = by_stack.entry((record.stack, kind, is_shared)).or_default();
                    entry.0 += record.size;
                    entry.1 += 1;
                }
            }
        }
        let ignore_rules: Vec<Rule> = check
            .ignore
            .iter()
            .map(|pattern| Rule {
                pattern: pattern.clone(),
                origin: "#[leakcheck(ignore)]".into(),
            })
            .collect();
        // Different raw stacks that show the same frames are one group to the reader.
        let mut by_frames: HashMap<(Kind, Vec<FrameKey>), Tally> = HashMap::new();
        let mut shared_by_frames: HashMap<(Kind, Vec<FrameKey>), Tally> = HashMap::new();
        let mut excused: HashMap<Excuse, (usize, usize)> = HashMap::new();
        let mut suppressed: Vec<SuppressionUse> = Vec::new();
        let mut reachable = (0, 0);
        for ((stack, kind, is_shared), (bytes, allocations)) in by_stack {
            // Reachable blocks that do not count need no stack: not resolving them keeps a
            // passing test from loading debug info for its lazy statics.
            if kind == Kind::Reachable && check.reachable == Reachable::Ignore {
                reachable.0 += bytes;
                reachable.1 += allocations;
                continue;
            }
            let frames = if stack == 0 {
                Vec::new()
            } else {
                symbolize::resolve(stack).to_vec()
            };
            if let Some(reason) = symbolize::excuse(&frames) {
                let entry = excused.entry(reason).or_default();
                entry.0 += bytes;
                entry.1 += allocations;
                continue;
            }
            if let Some(rule) =
                suppress::find(&ignore_rules, &frames).or_else(|| suppress::find(rules, &frames))
            {
                match suppressed
                    .iter_mut()
                    .find(|u| u.pattern == rule.pattern && u.origin == rule.origin)
                {
                    Some(used) => {
                        used.allocations += allocations;
                        used.bytes += bytes;
                    }
                    None => suppressed.push(SuppressionUse {
                        pattern: rule.pattern.clone(),
                        origin: rule.origin.clone(),
                        allocations,
                        bytes,
                    }),
                }
                continue;
            }
            // Counted here, past the suppressions, so the note's "counted as leaks" is true.
            if kind == Kind::Reachable {
                reachable.0 += bytes;
                reachable.1 += allocations;
            }
            let shown = symbolize::user_frames(&frames);
            let key = (kind, shown.iter().map(FrameKey::of).collect());
            let groups = if is_shared {
                &mut shared_by_frames
            } else {
                &mut by_frames
            };
            let entry = groups.entry(key).or_insert((shown, 0, 0));
            entry.1 += bytes;
            entry.2 += allocations;
        }
        let groups = sorted_groups(by_frames);
        let shared = sorted_groups(shared_by_frames);
        let mut excused: Vec<(Excuse, usize, usize)> =
            excused.into_iter().map(|(e, (b, a))| (e, b, a)).collect();
        excused.sort_by_key(|(e, ..)| matches!(e, Excuse::OneTimeInit));
        suppressed.sort_by_key(|used| core::cmp::Reverse(used.bytes));
        let budgets = budget_overruns(check, &stats);
        let allowance = (check.allow_bytes.is_some() || check.allow_allocs.is_some())
            .then_some((check.allow_bytes, check.allow_allocs));
        Report {
            subject,
            groups,
            reachable,
            excused,
            suppressed,
            allowance,
            budgets,
            growth: growth.map(|g| g.per_run),
            stacks,
            untracked,
            stackless,
            without_scan,
            reachable_fails: check.reachable == Reachable::Fail,
            resources,
            overlapped: if shared.is_empty() {
                Overlapped::default()
            } else {
                overlapped.clone()
            },
            shared,
        }
    }
}

/// Groups from their tallies: definitely lost first, then indirectly lost, reachable and
/// growth, each largest first.
fn sorted_groups(by_frames: HashMap<(Kind, Vec<FrameKey>), Tally>) -> Vec<LeakGroup> {
    let mut groups: Vec<LeakGroup> = by_frames
        .into_iter()
        .map(|((kind, _), (frames, bytes, allocations))| LeakGroup {
            bytes,
            allocations,
            kind,
            frames,
        })
        .collect();
    groups.sort_by(|a, b| {
        a.kind
            .cmp(&b.kind)
            .then(b.bytes.cmp(&a.bytes))
            .then(b.allocations.cmp(&a.allocations))
            .then_with(|| a.frames.len().cmp(&b.frames.len()))
    });
    groups
}

fn budget_overruns(check: &Check, stats: &ScopeStats) -> Vec<BudgetOverrun> {
    let mut overruns = Vec::new();
    if let Some(limit) = check.max_allocs.filter(|&limit| stats.allocations > limit) {
        let frames = if stats.watched_stack == 0 {
            Vec::new()
        } else {
            symbolize::user_frames(&symbolize::resolve(stats.watched_stack))
        };
        overruns.push(BudgetOverrun {
            budget: "max_allocs",
            limit,
            actual: stats.allocations,
            frames,
        });
    }
    if let Some(limit) = check.max_bytes.filter(|&limit| stats.bytes > limit) {
        overruns.push(BudgetOverrun {
            budget: "max_bytes",
            limit,
            actual: stats.bytes,
            frames: Vec::new(),
        });
    }
    if let Some(limit) = check.max_peak_bytes.filter(|&limit| stats.peak > limit) {
        overruns.push(BudgetOverrun {
            budget: "max_peak_bytes",
            limit,
            actual: stats.peak,
            frames: Vec::new(),
        });
    }
    overruns
}

/// The frames shown for a group, with its bytes and blocks.
type Tally = (Vec<Frame>, usize, usize);

#[derive(PartialEq, Eq, Hash)]
struct FrameKey(Option<String>, Option<PathBuf>, Option<u32>, Option<u32>);

impl FrameKey {
    fn of(frame: &Frame) -> FrameKey {
        FrameKey(
            frame.function.clone(),
            frame.file.clone(),
            frame.line,
            frame.column,
        )
    }
}

/// `1048576` as `1,048,576`.
pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_headline(f)?;
        for overrun in &self.budgets {
            writeln!(f)?;
            write_overrun(f, overrun)?;
        }
        if self.leaked_allocations() > 0 && !self.groups.is_empty() {
            for group in self.groups.iter().take(SHOWN_GROUPS) {
                writeln!(f)?;
                write_group(f, group, self.stacks.is_some())?;
            }
            let hidden = &self.groups[self.groups.len().min(SHOWN_GROUPS)..];
            if !hidden.is_empty() {
                let bytes: usize = hidden.iter().map(|g| g.bytes).sum();
                writeln!(
                    f,
                    "\n... and {} more ({})",
                    plural(hidden.len(), "group", "groups"),
                    plural(bytes, "byte", "bytes")
                )?;
            }
        }
        if !self.suppressed.is_empty() {
            writeln!(f, "\nSuppressions used:")?;
            for used in &self.suppressed {
                writeln!(
                    f,
                    "  {} in {}: leak:{} ({})",
                    plural(used.bytes, "byte", "bytes"),
                    plural(used.allocations, "allocation", "allocations"),
                    used.pattern,
                    used.origin
                )?;
            }
        }
        if !self.is_clean() || self.leaked_allocations() > 0 {
            writeln!(f)?;
        }
        if self.resources.leaked_threads.len()
            + self.resources.leaked_fds.len()
            + self.resources.notes.len()
            > 0
        {
            write!(f, "{}", self.resources)?;
        }
        self.write_notes(f)?;
        let mut failures = Vec::new();
        if self.grew() || self.leaks_fail() {
            let what = if self.grew() { "grew" } else { "leaked" };
            failures.push(format!(
                "{} {what} in {}",
                plural(self.leaked_bytes(), "byte", "bytes"),
                plural(self.leaked_allocations(), "allocation", "allocations")
            ));
        }
        for overrun in &self.budgets {
            failures.push(format!(
                "{} = {} exceeded ({})",
                overrun.budget,
                thousands(overrun.limit as usize),
                thousands(overrun.actual as usize)
            ));
        }
        if !self.is_clean() && !failures.is_empty() {
            writeln!(f, "SUMMARY: leakcheck: {}", failures.join("; "))?;
        }
        Ok(())
    }
}

impl Report {
    fn write_headline(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.budgets.is_empty() {
            writeln!(f, "leakcheck: heap budget exceeded in {}", self.subject)?;
        }
        let totals = format!(
            "{}, {}",
            plural(self.leaked_allocations(), "allocation", "allocations"),
            plural(self.leaked_bytes(), "byte", "bytes")
        );
        if let Some(runs) = &self.growth {
            let runs_text: Vec<String> = runs.iter().map(|g| g.to_string()).collect();
            let verdict = if self.grew() {
                "memory grew in every run of"
            } else {
                "no steady memory growth in"
            };
            writeln!(
                f,
                "leakcheck: {verdict} {}: grew by [{}] bytes per run (repeat = {}, after a warm-up run)",
                self.subject,
                runs_text.join(", "),
                runs.len()
            )?;
        } else if self.leaks_fail() {
            let lost: usize = self
                .groups
                .iter()
                .filter(|g| g.kind == Kind::Indirect)
                .map(|g| g.bytes)
                .sum();
            if lost > 0 {
                let direct: usize = self
                    .groups
                    .iter()
                    .filter(|g| g.kind == Kind::Definite)
                    .map(|g| g.bytes)
                    .sum();
                writeln!(
                    f,
                    "leakcheck: memory leak in {}: {} ({} direct, {} indirect) bytes in {}",
                    self.subject,
                    thousands(self.leaked_bytes()),
                    thousands(direct),
                    thousands(lost),
                    plural(self.leaked_allocations(), "allocation", "allocations")
                )?;
            } else {
                writeln!(f, "leakcheck: memory leak in {}: {totals}", self.subject)?;
            }
        } else if !self.groups.is_empty() && self.allowance.is_some() {
            writeln!(
                f,
                "leakcheck: leaks in {} are within the allowance: {totals}",
                self.subject
            )?;
        } else if self.budgets.is_empty() {
            writeln!(f, "leakcheck: no memory leaks in {}", self.subject)?;
        }
        if let Some((bytes, allocs)) = self.allowance {
            let limit = |n: Option<usize>| n.map_or_else(|| "unlimited".to_owned(), thousands);
            writeln!(
                f,
                "allowance: allow_bytes = {}, allow_allocs = {}",
                limit(bytes),
                limit(allocs)
            )?;
        }
        Ok(())
    }
}

fn write_overrun(f: &mut fmt::Formatter<'_>, overrun: &BudgetOverrun) -> fmt::Result {
    let unit = if overrun.budget == "max_allocs" {
        ("allocation", "allocations")
    } else {
        ("byte", "bytes")
    };
    let measured = match overrun.budget {
        "max_allocs" => "made",
        "max_bytes" => "allocated in total",
        _ => "live at the peak",
    };
    writeln!(
        f,
        "{} {measured}; the budget is {} = {}",
        plural(overrun.actual as usize, unit.0, unit.1),
        overrun.budget,
        thousands(overrun.limit as usize)
    )?;
    if !overrun.frames.is_empty() {
        writeln!(f, "the first allocation past the budget was made at:")?;
        write_frames(f, &overrun.frames)?;
    }
    Ok(())
}

fn write_group(f: &mut fmt::Formatter<'_>, group: &LeakGroup, stacks_on: bool) -> fmt::Result {
    let what = format!(
        "{} in {} {}",
        plural(group.bytes, "byte", "bytes"),
        plural(group.allocations, "allocation", "allocations"),
        group.kind.describe()
    );
    if group.frames.is_empty() {
        let why = if stacks_on {
            "no stack could be resolved"
        } else {
            "stacks are off"
        };
        return writeln!(f, "{what} ({why})");
    }
    writeln!(f, "{what}, allocated at:")?;
    write_frames(f, &group.frames)?;
    if let Some(line) = group.suppression() {
        writeln!(f, "      to suppress, add to leakcheck.supp: {line}")?;
    }
    Ok(())
}

pub(crate) fn write_frames(f: &mut fmt::Formatter<'_>, frames: &[Frame]) -> fmt::Result {
    // A deep stack (recursion, layers of helpers) keeps its ends: where the block was made and
    // the test body that led there. Frames are numbered by depth, counting those a deep
    // capture left out (a gap frame) and those not shown here.
    let (first, last) = if frames.len() > SHOWN_FRAMES {
        let first = SHOWN_FRAMES - SHOWN_LAST_FRAMES;
        (first, frames.len() - SHOWN_LAST_FRAMES)
    } else {
        (frames.len(), frames.len())
    };
    let depth_of = |frame: &Frame| {
        if symbolize::is_gap(frame) {
            frame.address
        } else {
            1
        }
    };
    let mut depth = 0;
    for (i, frame) in frames.iter().enumerate() {
        if i == first && last > first {
            let hidden: usize = frames[first..last].iter().map(depth_of).sum();
            writeln!(f, "      ... {hidden} more frames")?;
        }
        let number = depth;
        depth += depth_of(frame);
        if i >= first && i < last {
            continue;
        }
        if symbolize::is_gap(frame) {
            writeln!(f, "      ... {} more frames", frame.address)?;
            continue;
        }
        writeln!(
            f,
            "{number:>4}: {}",
            frame.function.as_deref().unwrap_or("<unknown>")
        )?;
        if let Some(file) = &frame.file {
            write!(f, "             at {}", file.display())?;
            if let Some(line) = frame.line {
                write!(f, ":{line}")?;
                if let Some(column) = frame.column {
                    write!(f, ":{column}")?;
                }
            }
            writeln!(f)?;
        }
    }
    Ok(())
}

impl Report {
    /// The note on lost blocks that may be another test's (see [`Report::shared_thread_groups`]).
    fn write_shared(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.shared.is_empty() {
            return Ok(());
        }
        let bytes: usize = self.shared.iter().map(|g| g.bytes).sum();
        let allocations: usize = self.shared.iter().map(|g| g.allocations).sum();
        let mut others: Vec<String> = self
            .overlapped
            .subjects
            .iter()
            .map(|subject| format!("`{subject}`"))
            .collect();
        if self.overlapped.more > 0 {
            others.push(format!("and {} more", thousands(self.overlapped.more)));
        }
        let others = if others.is_empty() {
            String::new()
        } else {
            format!(" ({})", others.join(", "))
        };
        writeln!(
            f,
            "note: not counted: {} in {} lost by threads this test started and left running (a \
             pool, an executor, a worker), made while other checks were open{others}: those \
             tests may have handed the threads their work. For the exact verdict run this test \
             alone (--test-threads=1) or under cargo-nextest; shared_threads = \"fail\" counts \
             them.",
            plural(bytes, "byte", "bytes"),
            plural(allocations, "allocation", "allocations"),
        )?;
        for group in self.shared.iter().take(SHOWN_GROUPS) {
            write_group(f, group, self.stacks.is_some())?;
        }
        if self.shared.len() > SHOWN_GROUPS {
            writeln!(
                f,
                "... and {} more",
                plural(self.shared.len() - SHOWN_GROUPS, "group", "groups")
            )?;
        }
        Ok(())
    }

    fn write_notes(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_shared(f)?;
        if self.reachable.1 > 0 {
            let verdict = if self.reachable_fails {
                "counted as leaks (reachable = \"fail\")"
            } else {
                "not counted; reachable = \"fail\" counts them"
            };
            writeln!(
                f,
                "note: still reachable from statics, thread-locals or the stack: {} in {}, {verdict}",
                plural(self.reachable.0, "byte", "bytes"),
                plural(self.reachable.1, "allocation", "allocations"),
            )?;
        }
        for (reason, bytes, allocations) in &self.excused {
            let what = match reason {
                Excuse::Stdio => {
                    "std's stdout/stderr buffers and the test harness's output capture"
                }
                Excuse::OneTimeInit => {
                    "one-time initialisation (lazy statics, OnceLock, thread-locals)"
                }
                Excuse::SymbolizerCache => {
                    "the backtrace symbolizer's cache of debug info (a panic under RUST_BACKTRACE)"
                }
                Excuse::ThreadTable => "std's table of threads, as threads start",
            };
            writeln!(
                f,
                "note: not counted: {} in {} made by {what}",
                plural(*bytes, "byte", "bytes"),
                plural(*allocations, "allocation", "allocations"),
            )?;
        }
        if self.untracked > 0 {
            writeln!(
                f,
                "note: {} could not be tracked: leakcheck's bookkeeping ran out of memory",
                plural(self.untracked as usize, "allocation", "allocations")
            )?;
        }
        if self.stackless > 0 {
            writeln!(
                f,
                "note: stacks unavailable for {}: leakcheck's stack store is full or out of memory; \
                 they are counted, in a group whose stack could not be resolved",
                plural(self.stackless as usize, "allocation", "allocations")
            )?;
        }
        if let Some((reason, warmed_up)) = self.without_scan {
            if !self.groups.is_empty() {
                let how = if warmed_up {
                    "the body ran twice and every block its second run left live counts"
                } else {
                    "every block the body left live counts (`leakcheck::check` runs its body once; \
                     `Check::run` and `#[leakcheck]` add a warm-up run that absorbs one-off caches)"
                };
                writeln!(
                    f,
                    "note: judged without the reachability scan ({reason}): {how}"
                )?;
            }
        }
        if self.is_clean() || self.groups.is_empty() {
            return Ok(());
        }
        if self.stacks.is_none() {
            writeln!(
                f,
                "note: stacks are off (LEAKCHECK_BACKTRACE=0): set LEAKCHECK_BACKTRACE=1 to see where these were allocated"
            )?;
        }
        Ok(())
    }

    /// How the stacks were taken, when that is worth advice: it is the same for every check of
    /// the process, so it is not part of the report; [`process_note_once`] says it once.
    fn stack_note(&self) -> Option<&'static str> {
        if self.is_clean() || self.groups.is_empty() {
            return None;
        }
        let unwinder = self.stacks?;
        if !crate::symbols::SUPPORTED {
            return Some(
                "note: frames show as addresses: leakcheck resolves them to functions, files and lines only on Linux with glibc",
            );
        }
        match unwinder {
            Unwinder::FramePointers => None,
            Unwinder::CachedCfi => Some(
                "note: stacks came from DWARF unwind tables because frame pointers are missing; \
                 for ~2x cheaper checks add `-C force-frame-pointers=yes` to `[build] rustflags` in .cargo/config.toml",
            ),
            Unwinder::Slow | Unwinder::Unknown => Some(
                "note: stacks came from the slow DWARF unwinder (libgcc) because frame pointers are missing; \
                 for ~30x cheaper checks add `-C force-frame-pointers=yes` to `[build] rustflags` in .cargo/config.toml",
            ),
        }
    }
}

/// The note that holds for every check of the process (how stacks are taken, and how to make
/// that cheaper), for the first printed report it applies to; `None` for every later one: a
/// suite with many leaks said it under every report.
pub(crate) fn process_note_once(report: &Report) -> Option<&'static str> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static SAID: AtomicBool = AtomicBool::new(false);
    let note = report.stack_note()?;
    (!SAID.swap(true, Ordering::Relaxed)).then_some(note)
}

// ---- accessors for sessions and the JSON/DHAT output ----

impl Report {
    /// What was checked: "test `name`", "check at file:line", "session started at file:line"
    /// or "program `name`" (for `LEAKCHECK_AT_EXIT`).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Leaks beyond the allowance fail the report.
    pub(crate) fn leaks_fail_report(&self) -> bool {
        self.leaks_fail()
    }

    /// Every measured run of a `repeat` check grew.
    pub(crate) fn grew_every_run(&self) -> bool {
        self.grew()
    }

    /// Blocks not counted, by reason: (reason, bytes, blocks).
    pub(crate) fn not_counted(&self) -> &[(Excuse, usize, usize)] {
        &self.excused
    }

    /// The stack walker used, `None` when stacks were off.
    pub(crate) fn unwinder(&self) -> Option<Unwinder> {
        self.stacks
    }

    /// Blocks leakcheck could not record (its bookkeeping ran out of memory).
    pub(crate) fn untracked(&self) -> u64 {
        self.untracked
    }

    /// `allow_bytes` and `allow_allocs`, when either was given.
    pub(crate) fn allowance(&self) -> Option<(Option<usize>, Option<usize>)> {
        self.allowance
    }
}

// ---- end of the accessors for sessions and output ----

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, file: &str) -> Frame {
        Frame {
            function: Some(function.into()),
            file: Some(file.into()),
            line: Some(1),
            column: Some(1),
            address: 0x1000,
        }
    }

    fn suggested(frames: Vec<Frame>) -> Option<String> {
        LeakGroup {
            bytes: 8,
            allocations: 1,
            kind: Kind::Definite,
            frames,
        }
        .suppression()
    }

    const STD_FILE: &str = "/rustc/0123/library/alloc/src/alloc.rs";
    const REGISTRY_FILE: &str = "/home/u/.cargo/registry/src/index/smallvec-1.13.2/src/lib.rs";

    #[test]
    fn the_suggestion_names_the_user_s_frame_not_std_s_nor_a_dependency_s() {
        let body = frame("my_tests::grows::{{closure}}", "tests/grows.rs");
        assert_eq!(
            suggested(vec![frame("alloc::alloc::alloc", STD_FILE), body.clone()]),
            Some("leak:^my_tests::grows$".into())
        );
        assert_eq!(
            suggested(vec![
                frame("smallvec::SmallVec<A>::try_grow", REGISTRY_FILE),
                body.clone()
            ]),
            Some("leak:^my_tests::grows$".into())
        );
        // The user's own helper, innermost, is the most specific.
        assert_eq!(
            suggested(vec![
                frame("my_crate::cache::fill", "my_crate/src/cache.rs"),
                body
            ]),
            Some("leak:^my_crate::cache::fill$".into())
        );
        // Only std on the stack: no line that would hide every leak.
        assert_eq!(
            suggested(vec![frame("alloc::alloc::alloc", STD_FILE)]),
            None
        );
    }

    #[test]
    fn every_suggestion_suppresses_its_own_frames() {
        let stacks = [
            vec![frame("my_tests::grows::{{closure}}", "tests/grows.rs")],
            vec![frame(
                "my_tests::grows::{{closure}}::{{closure}}",
                "tests/grows.rs",
            )],
            vec![frame(
                "<lru::tests::pop::{{closure}}::DropPanic as core::ops::drop::Drop>::drop",
                "lru/src/lib.rs",
            )],
            vec![frame("smallvec::SmallVec<A>::try_grow", REGISTRY_FILE)],
        ];
        for frames in stacks {
            let line = suggested(frames.clone()).expect("a suggestion");
            let rules = suppress::parse(&line, std::path::Path::new("leakcheck.supp")).unwrap();
            assert!(
                suppress::find(&rules, &frames).is_some(),
                "{line} for {frames:?}"
            );
        }
    }

    #[test]
    fn a_deep_stack_shows_both_ends() {
        struct Shown(Vec<Frame>);
        impl fmt::Display for Shown {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_frames(f, &self.0)
            }
        }
        let frames = |n: usize| {
            (0..n)
                .map(|i| frame(&format!("my_tests::level_{i}"), "tests/deep.rs"))
                .collect::<Vec<_>>()
        };
        let text = Shown(frames(30)).to_string();
        let names: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("at "))
            .collect();
        let mut want: Vec<String> = (0..12)
            .map(|i| format!("{i:>4}: my_tests::level_{i}"))
            .collect();
        want.push("      ... 14 more frames".into());
        want.extend((26..30).map(|i| format!("{i:>4}: my_tests::level_{i}")));
        assert_eq!(names, want, "{text}");
        // Up to the limit, every frame.
        let text = Shown(frames(SHOWN_FRAMES)).to_string();
        assert!(!text.contains("more frames"), "{text}");
        assert!(text.contains("  15: my_tests::level_15"), "{text}");
        // A capture that left 500 frames out (a gap frame) numbers the frames after it by
        // their depth, and counts the gap with the frames not shown.
        let mut deep = frames(30);
        deep[20] = Frame {
            function: None,
            file: None,
            line: None,
            column: None,
            address: 500,
        };
        let text = Shown(deep.clone()).to_string();
        assert!(text.contains("      ... 513 more frames\n"), "{text}");
        assert!(text.contains(" 528: my_tests::level_29"), "{text}");
        // Shown when it falls among the frames shown.
        let text = Shown(deep[15..].to_vec()).to_string();
        assert!(text.contains("      ... 500 more frames\n"), "{text}");
        assert!(text.contains(" 513: my_tests::level_29"), "{text}");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_048), "1,048");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }

    fn build(records: &[Record], check: &Check) -> Report {
        let kinds = vec![Kind::Definite; records.len()];
        Report::build(ReportInput {
            subject: "test `t`".into(),
            records,
            kinds: &kinds,
            shared: &[],
            overlapped: &crate::overlap::Overlapped::default(),
            stacks: None,
            untracked: 0,
            stackless: 0,
            without_scan: None,
            check,
            stats: ScopeStats::default(),
            growth: None,
            rules: &[],
            resources: ResourceOutcome::default(),
        })
    }

    fn blocks(n: usize, size: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                addr: 0x1000 + i * 16,
                size,
                stack: 0,
                tag: 2,
                shared: false,
            })
            .collect()
    }

    #[test]
    fn report_without_stacks_groups_everything_together() {
        let report = build(&blocks(12, 8), &Check::new());
        assert_eq!(report.leaked_bytes(), 96);
        assert_eq!(report.leaked_allocations(), 12);
        assert_eq!(report.groups().len(), 1);
        assert!(!report.is_clean());
        let text = report.to_string();
        assert!(
            text.starts_with("leakcheck: memory leak in test `t`: 12 allocations, 96 bytes\n"),
            "{text}"
        );
        assert!(
            text.contains("96 bytes in 12 allocations definitely lost (stacks are off)"),
            "{text}"
        );
        assert!(text.contains("LEAKCHECK_BACKTRACE=1"), "{text}");
        assert!(
            text.ends_with("SUMMARY: leakcheck: 96 bytes leaked in 12 allocations\n"),
            "{text}"
        );
    }

    #[test]
    fn allowances_pass_within_and_fail_beyond() {
        let within = build(&blocks(2, 10), &Check::new().allow_bytes(20));
        assert!(within.is_clean(), "{within}");
        assert!(within.to_string().starts_with("leakcheck: leaks in test `t` are within the allowance: 2 allocations, 20 bytes\nallowance: allow_bytes = 20, allow_allocs = unlimited\n"), "{within}");
        let beyond = build(&blocks(3, 10), &Check::new().allow_bytes(20));
        assert!(!beyond.is_clean());
        assert!(
            beyond
                .to_string()
                .contains("allowance: allow_bytes = 20, allow_allocs = unlimited"),
            "{beyond}"
        );
        let by_count = build(&blocks(3, 1), &Check::new().allow_allocs(2));
        assert!(!by_count.is_clean(), "{by_count}");
        assert!(build(&blocks(2, 1000), &Check::new().allow_allocs(2)).is_clean());
    }

    #[test]
    fn budgets_name_the_figure_and_the_budget() {
        let kinds: Vec<Kind> = Vec::new();
        let check = Check::new()
            .max_allocs(0)
            .max_bytes(10)
            .max_peak_bytes(1000);
        let report = Report::build(ReportInput {
            subject: "test `t`".into(),
            records: &[],
            kinds: &kinds,
            shared: &[],
            overlapped: &crate::overlap::Overlapped::default(),
            stacks: None,
            untracked: 0,
            stackless: 0,
            without_scan: None,
            check: &check,
            stats: ScopeStats {
                allocations: 3,
                bytes: 48,
                peak: 16,
                watched_stack: 0,
            },
            growth: None,
            rules: &[],
            resources: ResourceOutcome::default(),
        });
        assert!(!report.is_clean());
        let text = report.to_string();
        assert!(text.contains("heap budget exceeded in test `t`"), "{text}");
        assert!(
            text.contains("3 allocations made; the budget is max_allocs = 0"),
            "{text}"
        );
        assert!(
            text.contains("48 bytes allocated in total; the budget is max_bytes = 10"),
            "{text}"
        );
        assert!(!text.contains("max_peak_bytes"), "{text}");
    }

    #[test]
    fn growth_fails_only_when_every_run_grew() {
        let grow = |per_run: Vec<i64>| {
            let kinds: Vec<Kind> = Vec::new();
            Report::build(ReportInput {
                subject: "test `t`".into(),
                records: &[],
                kinds: &kinds,
                shared: &[],
                overlapped: &crate::overlap::Overlapped::default(),
                stacks: None,
                untracked: 0,
                stackless: 0,
                without_scan: None,
                check: &Check::new().repeat(per_run.len()),
                stats: ScopeStats::default(),
                growth: Some(Growth {
                    per_run,
                    sites: vec![(0, 100, 1)],
                }),
                rules: &[],
                resources: ResourceOutcome::default(),
            })
        };
        let report = grow(vec![100, 100, 100]);
        assert!(!report.is_clean());
        assert!(
            report.to_string().contains(
                "memory grew in every run of test `t`: grew by [100, 100, 100] bytes per run"
            ),
            "{report}"
        );
        assert!(grow(vec![0, 0, 100]).is_clean());
        assert!(grow(vec![100, -100, 100]).is_clean());
    }

    #[test]
    fn clean_report_says_so() {
        let report = build(&[], &Check::new());
        assert!(report.is_clean());
        assert_eq!(
            report.to_string(),
            "leakcheck: no memory leaks in test `t`\n"
        );
    }
}
