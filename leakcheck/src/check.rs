//! One leak check: arm a scope, prove the allocator sees it, run the body (repeatedly, for
//! `repeat`), and judge what is left. Shared by the attribute and [`Check::run`].
#![forbid(unsafe_code)]

use crate::config::Config;
use crate::options::{Check, SharedThreads};
use crate::overlap::{Overlapped, Registration};
use crate::raw::scan::{self, Reach};
use crate::raw::stack::{self, CaptureLimit, Unwinder};
use crate::raw::table::Record;
use crate::report::{Growth, Kind, Report, ReportInput};
use crate::resources::Watch;
use crate::suppress;
use crate::thread_roots::Idle;
use crate::track::{self, Scope, ScopeSettings, ScopeStats};
use std::collections::HashMap;
use std::fmt;

/// How long a check waits for threads it started to finish exiting before it judges.
const THREAD_EXIT_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

/// How long a check waits, after [`THREAD_EXIT_GRACE`], for the threads it started that still
/// run to exit or settle (see `thread_roots::wait_until_settled`).
const SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Why a check could not start.
#[derive(Debug)]
pub(crate) enum StartError {
    /// The leakcheck allocator is not the process's global allocator.
    NotInstalled,
    /// More checks run at once than leakcheck has room for.
    TooManyChecks,
    /// The suppression file is unusable.
    Suppressions(suppress::SuppressionError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::NotInstalled => f.write_str(
                "leakcheck: the leakcheck allocator is not installed, so nothing could be checked for leaks.\n\
                 Add these two lines to the test crate (the top of the test file, or src/lib.rs):\n\
                 \n    #[global_allocator]\n    static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();\n",
            ),
            StartError::TooManyChecks => f.write_str(
                "leakcheck: more than 125 checks are running at once in this process; \
                 run fewer tests in parallel (--test-threads) or use cargo-nextest",
            ),
            StartError::Suppressions(error) => error.fmt(f),
        }
    }
}

/// A check in progress: one scope for all runs of the body.
pub(crate) struct Runner<'c> {
    check: &'c Check,
    subject: String,
    stacks: Option<Unwinder>,
    scope: Scope,
    rules: &'static [suppress::Rule],
    untracked_before: u64,
    stackless_before: u64,
    /// Why leftover blocks are judged without the reachability scan, if they are; a body that
    /// can run twice then gets a warm-up run whose leftovers do not count (unless `repeat`
    /// already warms up).
    without_scan: Option<NoScan>,
    repeatable: bool,
    runs: usize,
    /// Live bytes of the scope after each run (the first is the warm-up).
    live_after: Vec<usize>,
    /// Live bytes and blocks per stack before and after the latest run.
    by_stack_before: HashMap<u32, (usize, usize)>,
    by_stack_after: HashMap<u32, (usize, usize)>,
    /// The last run's statistics, relative to its start.
    stats: ScopeStats,
    /// Threads and file descriptors open before the first run.
    watch: Watch,
    /// The check's entry among the open checks (see [`crate::overlap`]).
    registration: Registration,
    /// Other threads' CPU time at the start (see [`Idle`]).
    idle: Idle,
}

impl<'c> Runner<'c> {
    /// Arms a scope. `unwinder` is the result of [`stack::calibrate`] when stacks are on; the
    /// caller calibrates because only it runs in a frame compiled with the user's flags.
    pub(crate) fn new(
        check: &'c Check,
        config: &Config,
        subject: String,
        unwinder: Option<Unwinder>,
        repeatable: bool,
    ) -> Result<Runner<'c>, StartError> {
        // Before the scope: its snapshot of /proc allocates.
        let watch = Watch::start(&check.resources);
        let rules = suppress::file_rules().map_err(StartError::Suppressions)?;
        let stacks = if config.backtrace {
            unwinder.or(Some(stack::unwinder()))
        } else {
            None
        };
        let budgets = check.max_allocs.is_some()
            || check.max_bytes.is_some()
            || check.max_peak_bytes.is_some();
        let settings = ScopeSettings {
            stacks: stacks.is_some(),
            stats: budgets,
            watch_allocation: check.max_allocs.map(|n| n + 1),
            process_wide: config.process_per_test,
        };
        let scope = Scope::new(settings).map_err(|_| StartError::TooManyChecks)?;
        let (registration, idle) = untracked(|| {
            (
                Registration::open(scope.id(), &subject),
                Idle::now(scope.id()),
            )
        });
        let without_scan = if !config.scan {
            Some(NoScan::Disabled)
        } else if !scan::supported() {
            Some(NoScan::Unsupported)
        } else {
            None
        };
        if let Some(reason) = without_scan {
            reason.say_once();
        }
        let mut runner = Runner {
            check,
            subject,
            stacks,
            scope,
            rules,
            untracked_before: track::untracked_so_far(),
            stackless_before: track::stackless_so_far(),
            without_scan,
            repeatable,
            runs: 0,
            live_after: Vec::new(),
            by_stack_before: HashMap::new(),
            by_stack_after: HashMap::new(),
            stats: ScopeStats::default(),
            watch,
            registration,
            idle,
        };
        if !runner.allocator_sees_scope() {
            return Err(StartError::NotInstalled);
        }
        // The probe's own record does not count.
        runner.untracked_before = track::untracked_so_far();
        runner.stackless_before = track::stackless_so_far();
        Ok(runner)
    }

    /// Allocates one probe block inside the scope: if no record appears, some other global
    /// allocator is in charge and every verdict would be a silent pass.
    /// A probe whose record could not be stored (leakcheck's bookkeeping is out of memory)
    /// was still seen.
    fn allocator_sees_scope(&self) -> bool {
        let untracked = track::untracked_so_far();
        let _inside = self.scope.enter();
        let probe = std::hint::black_box(Box::new(0u64));
        let seen = self.scope.owns(&*probe as *const u64 as usize)
            || track::untracked_so_far() > untracked;
        drop(probe);
        seen
    }

    /// Makes the rest of this thread's life the checked body (`LEAKCHECK_ALL_TESTS`: a test's
    /// thread, from when it is named until it exits), until [`Runner::leave`].
    pub(crate) fn enter_for_good(&self) {
        self.scope.enter_for_good();
    }

    /// Ends [`Runner::enter_for_good`] on this thread.
    pub(crate) fn leave(&self) {
        self.scope.leave();
    }

    /// Runs the body once inside the scope.
    pub(crate) fn run<R>(&mut self, body: &mut impl FnMut() -> R) -> R {
        self.scope.reset_stats();
        let value = __rust_begin_short_backtrace(&self.scope, body);
        self.stats = self.scope.stats();
        self.runs += 1;
        if self.check.repeat > 0 {
            self.measure_growth();
        } else if self.warms_up() && self.runs == 1 {
            // What the warm-up made and still holds (lazy statics, caches) is not the test's.
            self.scope.forget_live_records();
        }
        value
    }

    fn warms_up(&self) -> bool {
        self.without_scan.is_some() && self.check.repeat == 0 && self.repeatable
    }

    #[inline(never)]
    fn measure_growth(&mut self) {
        let _blocked = track::Block::new();
        let records = self.scope.live_records();
        self.live_after.push(records.iter().map(|r| r.size).sum());
        self.by_stack_before = std::mem::replace(&mut self.by_stack_after, by_stack(&records));
    }

    /// Whether every run (warm-up and measured) has been made.
    pub(crate) fn done(&self) -> bool {
        self.runs > self.check.repeat + usize::from(self.warms_up())
    }

    /// Disarms the scope and judges what is still live.
    pub(crate) fn finish(self) -> Report {
        let (judged, finished) = self.judge();
        let report = judged.report();
        settle(finished, &judged.records, &judged.kinds, &judged.held);
        report
    }

    /// Disarms the scope and sorts what is still live into reachable and lost; the report
    /// waits for the end of the process (`LEAKCHECK_ALL_TESTS`). The reachable blocks settle as
    /// after any check; the lost ones stay in the table under [`track::PENDING_TAG`], so that
    /// whatever frees them before the end (the test runner's own blocks, made on the test's
    /// thread after the body) takes them out of the report ([`Judged::keep_pending`]).
    pub(crate) fn finish_pending(self, pending: &std::sync::Mutex<Vec<Judged<'c>>>) {
        let (mut judged, finished) = self.judge();
        let reachable: Vec<usize> = judged
            .records
            .iter()
            .zip(&judged.kinds)
            .filter(|(_, kind)| **kind == Kind::Reachable)
            .map(|(record, _)| record.addr)
            .collect();
        let lost: Vec<usize> = judged
            .records
            .iter()
            .zip(&judged.kinds)
            .filter(|(_, kind)| **kind != Kind::Reachable)
            .map(|(record, _)| record.addr)
            .collect();
        // Moving the blocks and listing them happen under one lock: once a block is moved, its
        // address can be freed and given to a later check's lost block, and the list's order
        // must say which claim came last.
        let mut list = pending.lock().unwrap_or_else(|e| e.into_inner());
        let mut moved = finished.settle_pending(reachable, &lost).into_iter();
        // Only the lost blocks that are waiting now count at the end; reachable ones never do.
        let keep: Vec<bool> = judged
            .kinds
            .iter()
            .map(|kind| *kind != Kind::Reachable && moved.next().unwrap_or(false))
            .collect();
        judged.retain(&keep);
        if !judged.records.is_empty() {
            list.push(judged);
        }
    }

    /// Disarms the scope and classifies its leftover blocks.
    fn judge(self) -> (Judged<'c>, track::Finished) {
        let warmed_up = self.warms_up();
        let Runner {
            check,
            subject,
            stacks,
            scope,
            rules,
            untracked_before,
            stackless_before,
            without_scan,
            live_after,
            by_stack_before,
            by_stack_after,
            stats,
            watch,
            registration,
            idle,
            ..
        } = self;
        // While threads linger on their way out they free what they hold: wait before judging
        // the heap. The waiting allocates, untracked.
        let (resources, left_running, overlapped) = untracked(|| {
            scope.wait_for_threads(THREAD_EXIT_GRACE);
            crate::thread_roots::wait_until_settled(scope.id(), SETTLE_LIMIT);
            let left_running = crate::thread_roots::left_running(scope.id());
            (watch.finish(), left_running, registration.close())
        });
        let finished = scope.finish();
        let _blocked = track::Block::new();
        let growth = (check.repeat > 0).then(|| Growth {
            per_run: live_after
                .windows(2)
                .map(|w| w[1] as i64 - w[0] as i64)
                .collect(),
            sites: growth_sites(&by_stack_before, &by_stack_after),
        });
        let (kinds, held) = match without_scan {
            None => {
                let verdicts = classify_settled(finished.records(), finished.id(), &idle);
                let held = held_addresses(finished.records(), &verdicts.held_by_threads);
                (verdicts.kinds, held)
            }
            Some(_) => (vec![Kind::Definite; finished.records().len()], Vec::new()),
        };
        // Blocks the body's threads put into shared structures (std's table of thread stacks,
        // a global pool) can be freed by other threads while the check ends: only blocks still
        // live, and still the check's, are its leaks.
        let (records, kinds): (Vec<Record>, Vec<Kind>) = finished
            .records()
            .iter()
            .zip(kinds)
            .filter(|(record, kind)| *kind == Kind::Reachable || finished.still_live(record))
            .map(|(record, kind)| (*record, kind))
            .unzip();
        let judged = Judged {
            check,
            subject,
            stacks,
            rules,
            records,
            kinds,
            left_running,
            overlapped,
            held,
            untracked: track::untracked_so_far().saturating_sub(untracked_before),
            stackless: track::stackless_so_far().saturating_sub(stackless_before),
            without_scan: without_scan.map(|reason| (reason.explain(), warmed_up)),
            stats,
            growth,
            resources,
        };
        (judged, finished)
    }
}

/// A finished check's verdict on each leftover block, from which its report is made.
pub(crate) struct Judged<'c> {
    check: &'c Check,
    subject: String,
    stacks: Option<Unwinder>,
    rules: &'static [suppress::Rule],
    records: Vec<Record>,
    kinds: Vec<Kind>,
    /// Threads the check started still ran when it ended (see [`Judged::shared`]).
    left_running: bool,
    /// The checks open at some moment while this one was.
    overlapped: Overlapped,
    /// Reachable blocks only the check's running threads keep (see [`settle`]), sorted.
    held: Vec<usize>,
    untracked: u64,
    stackless: u64,
    without_scan: Option<(&'static str, bool)>,
    stats: ScopeStats,
    growth: Option<Growth>,
    resources: crate::resources::ResourceOutcome,
}

impl Judged<'_> {
    /// The report on the blocks judged.
    pub(crate) fn report(&self) -> Report {
        let _blocked = track::Block::new();
        Report::build(ReportInput {
            subject: self.subject.clone(),
            records: &self.records,
            kinds: &self.kinds,
            shared: &self.shared(),
            overlapped: &self.overlapped,
            stacks: self.stacks,
            untracked: self.untracked,
            stackless: self.stackless,
            without_scan: self.without_scan,
            check: self.check,
            stats: self.stats,
            growth: self.growth.clone(),
            rules: self.rules,
            resources: self.resources.clone(),
        })
    }

    /// Keeps the blocks whose entry in `keep` is true.
    fn retain(&mut self, keep: &[bool]) {
        let mut keep_record = keep.iter();
        self.records
            .retain(|_| *keep_record.next().unwrap_or(&false));
        let mut keep_kind = keep.iter();
        self.kinds.retain(|_| *keep_kind.next().unwrap_or(&false));
    }

    /// Per record: lost, but maybe another test's, so reported apart and not counted. A
    /// thread the check started and left running made it while other checks were open: a
    /// pool started by this test runs the jobs of every test that overlaps it.
    fn shared(&self) -> Vec<bool> {
        self.records
            .iter()
            .zip(&self.kinds)
            .map(|(record, &kind)| {
                self.left_running
                    && record.shared
                    && self.check.shared_threads == SharedThreads::Note
                    && matches!(kind, Kind::Definite | Kind::Indirect)
            })
            .collect()
    }

    /// Keeps only the blocks still waiting under [`track::PENDING_TAG`] now, and not at
    /// `claimed` (addresses a later check found lost: the block judged here was freed, and its
    /// address given to that one).
    pub(crate) fn keep_pending(&mut self, claimed: &dyn Fn(usize) -> bool) {
        let keep: Vec<bool> = self
            .records
            .iter()
            .map(|record| track::still_pending(record.addr) && !claimed(record.addr))
            .collect();
        self.retain(&keep);
    }

    /// Addresses of the blocks judged.
    pub(crate) fn addresses(&self) -> impl Iterator<Item = usize> + '_ {
        self.records.iter().map(|record| record.addr)
    }
}

/// Ends a finished scope, keeping its reachable blocks: they may be how a later check's blocks
/// are reached (a cache this body created and a later one fills).
/// Keeps the blocks found reachable for later checks to scan through, except those only a
/// running thread's stack keeps (`held`: addresses, sorted): no later check reads that stack,
/// and the stale words such a block carries would only hide later leaks.
pub(crate) fn settle(
    finished: track::Finished,
    records: &[Record],
    kinds: &[Kind],
    held: &[usize],
) {
    finished.settle(
        records
            .iter()
            .zip(kinds)
            .filter(|(record, kind)| {
                **kind == Kind::Reachable && held.binary_search(&record.addr).is_err()
            })
            .map(|(record, _)| record.addr),
    );
}

/// The addresses of the records `held_by_threads` marks, sorted (see [`settle`]).
pub(crate) fn held_addresses(records: &[Record], held_by_threads: &[bool]) -> Vec<usize> {
    let mut held: Vec<usize> = records
        .iter()
        .zip(held_by_threads)
        .filter(|(_, &held)| held)
        .map(|(record, _)| record.addr)
        .collect();
    held.sort_unstable();
    held
}

/// Why a check judges leftover blocks without the reachability scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NoScan {
    /// `LEAKCHECK_SCAN=0`.
    Disabled,
    /// No scan on this platform (or `process_vm_readv` is forbidden here).
    Unsupported,
}

impl NoScan {
    fn explain(self) -> &'static str {
        match self {
            NoScan::Disabled => "LEAKCHECK_SCAN=0",
            NoScan::Unsupported => {
                "leakcheck has no reachability scan on this platform (it needs x86_64 Linux with \
                 glibc and process_vm_readv)"
            }
        }
    }

    /// Says once per process, on stderr, how checks judge leftovers.
    fn say_once(self) {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            untracked(|| {
                eprintln!(
                    "leakcheck: {}: leftover blocks are judged without reachability. A checked \
                     body that can run twice (`#[leakcheck]`, `Check::run`) runs once as a warm-up \
                     first (lazy statics and caches fill up there), and only what its measured run \
                     leaves live counts",
                    self.explain()
                )
            })
        });
    }
}

/// Runs the body inside the scope. Named as libtest names the function that calls a test: std's
/// short backtraces (`RUST_BACKTRACE=1`) of a panic in the body stop at a frame of that name,
/// so they end at the test's code rather than run on through leakcheck's frames.
#[inline(never)]
fn __rust_begin_short_backtrace<R>(scope: &Scope, body: &mut impl FnMut() -> R) -> R {
    // Stacks captured in the body end at this frame: what lies above is the runner's.
    let marker = 0u8;
    let _below = CaptureLimit::below(std::hint::black_box(&marker));
    let _inside = scope.enter();
    // Used after the call, so the call is not a tail call that would drop this frame.
    std::hint::black_box(body())
}

/// Whether each leftover block is lost or still reachable, by a conservative scan of the
/// roots: the statics of every loaded object and this thread's TLS, and through the blocks
/// earlier checks left reachable (see [`track::RETAINED_TAG`]). Not the stack: the frames
/// above the check (the test function, the runner) keep stale copies of addresses in slots
/// they never wrote, from calls that returned before the check (a freed block's address, later
/// reused by a leaked one), and a stale copy makes a real leak look reachable. Where no scan is
/// possible every block counts as lost: a false alarm can be suppressed, a silent miss cannot
/// be noticed.
/// [`classify`], twice when the first scan finds lost blocks: other threads may be rewriting a
/// shared structure (std's table of thread stacks, say) while the scan reads it, and a block
/// reachable in either scan is reachable.
fn classify_settled(records: &[Record], scope: u32, idle: &Idle) -> Verdicts {
    let first = classify(records, scope, Some(idle));
    if first.kinds.iter().all(|&kind| kind == Kind::Reachable) {
        return first;
    }
    std::thread::yield_now();
    let second = classify(records, scope, Some(idle));
    let kinds = second
        .kinds
        .iter()
        .zip(&first.kinds)
        .map(|(&second, &first)| {
            if first == Kind::Reachable {
                Kind::Reachable
            } else {
                second
            }
        })
        .collect();
    let held_by_threads = (0..records.len())
        .map(|i| {
            let without_threads =
                first.reachable_without_threads[i] || second.reachable_without_threads[i];
            !without_threads && (first.held_by_threads[i] || second.held_by_threads[i])
        })
        .collect();
    Verdicts {
        kinds,
        reachable_without_threads: Vec::new(),
        held_by_threads,
    }
}

/// What [`classify`] found, one entry per record.
pub(crate) struct Verdicts {
    pub(crate) kinds: Vec<Kind>,
    /// Reachable from the statics, this thread's thread-locals and earlier checks' blocks.
    reachable_without_threads: Vec<bool>,
    /// Reachable only through the stacks of the check's threads that still run: theirs, not
    /// kept for later checks to scan through (see [`settle`]).
    pub(crate) held_by_threads: Vec<bool>,
}

/// The roots: the statics, this thread's thread-locals, and the live stacks of the threads
/// started inside `scope` that still run and of other settled threads (see
/// `crate::thread_roots`); not this thread's stack. Traversal also goes through the blocks
/// earlier checks left reachable and, with `idle` (a check, not a session), those other
/// checks still run with, whose words count only in an owner's shape.
pub(crate) fn classify(records: &[Record], scope: u32, idle: Option<&Idle>) -> Verdicts {
    if records.is_empty() || !scan::supported() {
        return Verdicts {
            kinds: vec![Kind::Definite; records.len()],
            reachable_without_threads: vec![false; records.len()],
            held_by_threads: vec![false; records.len()],
        };
    }
    let blocks: Vec<(usize, usize)> = records.iter().map(|r| (r.addr, r.size)).collect();
    let transit: Vec<(usize, usize)> = track::retained_records()
        .iter()
        .map(|r| (r.addr, r.size))
        .collect();
    let scan = |thread_stacks: &[(usize, usize)], others: &[(usize, usize)]| -> Vec<Kind> {
        scan::classify_without_stack(
            &blocks,
            &transit,
            others,
            thread_stacks,
            crate::noise::excluded_statics(),
        )
        .into_iter()
        .map(|reach| match reach {
            Reach::DefinitelyLost => Kind::Definite,
            Reach::IndirectlyLost => Kind::Indirect,
            Reach::Reachable => Kind::Reachable,
        })
        .collect()
    };
    let unaccounted = |kinds: &[Kind]| kinds.iter().any(|&kind| kind != Kind::Reachable);
    let without = scan(&[], &[]);
    let reachable_without_threads: Vec<bool> = without
        .iter()
        .map(|&kind| kind == Kind::Reachable)
        .collect();
    if !unaccounted(&without) {
        return Verdicts {
            kinds: without,
            held_by_threads: vec![false; records.len()],
            reachable_without_threads,
        };
    }
    // Each further root only while blocks are unaccounted for: the check's own threads; then
    // settled threads of no check of ours, as finding those takes a pause; then the blocks
    // other checks still run with (a shared table, a list of subscribers another test made).
    let mut threads = crate::thread_roots::ThreadRoots::own(scope);
    let mut kinds = if threads.is_empty() {
        without.clone()
    } else {
        scan(threads.ranges(), &[])
    };
    if let Some(idle) = idle {
        if unaccounted(&kinds) {
            let beside = crate::thread_roots::ThreadRoots::beside(scope, idle);
            if !beside.is_empty() {
                threads = threads.and(beside);
                kinds = scan(threads.ranges(), &[]);
            }
        }
        if unaccounted(&kinds) {
            let others: Vec<(usize, usize)> = track::records_of_other_checks(scope)
                .iter()
                .map(|r| (r.addr, r.size))
                .collect();
            if !others.is_empty() {
                kinds = scan(threads.ranges(), &others);
            }
        }
    }
    let held_by_threads = kinds
        .iter()
        .zip(&reachable_without_threads)
        .map(|(&kind, &without)| kind == Kind::Reachable && !without)
        .collect();
    Verdicts {
        kinds,
        reachable_without_threads,
        held_by_threads,
    }
}

fn by_stack(records: &[Record]) -> HashMap<u32, (usize, usize)> {
    let mut totals: HashMap<u32, (usize, usize)> = HashMap::new();
    for record in records {
        let entry = totals.entry(record.stack).or_default();
        entry.0 += record.size;
        entry.1 += 1;
    }
    totals
}

/// Stacks whose live bytes grew in the last run, with the growth.
fn growth_sites(
    before: &HashMap<u32, (usize, usize)>,
    after: &HashMap<u32, (usize, usize)>,
) -> Vec<(u32, usize, usize)> {
    after
        .iter()
        .filter_map(|(&stack, &(bytes, blocks))| {
            let (old_bytes, old_blocks) = before.get(&stack).copied().unwrap_or_default();
            (bytes > old_bytes)
                .then(|| (stack, bytes - old_bytes, blocks.saturating_sub(old_blocks)))
        })
        .collect()
}

/// Calls `f` with tracking suspended on this thread: what it allocates is never reported.
pub(crate) fn untracked<R>(f: impl FnOnce() -> R) -> R {
    let _blocked = track::Block::new();
    f()
}
