//! Reliability under load and misuse: many threads allocating, reallocating and freeing blocks
//! that travel between threads while checks open and close on some of them; thread teardown;
//! panics inside checks and in `Drop` while unwinding; nested checks; `ignore` re-entrancy.
//!
//! `cargo test -p leakcheck --test stress` runs a short stress (about a million operations);
//! `LEAKCHECK_STRESS_OPS=20000000 cargo test -p leakcheck --release --test stress -- --ignored`
//! runs the long one.

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

use std::alloc::Layout;
use std::cell::RefCell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// Tests that compare leakcheck's process-wide record count, or that need every check slot,
/// take this exclusively; every other test here holds it shared.
static QUIET: RwLock<()> = RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    QUIET
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    QUIET
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A check that counts every block the body left live, whether or not a stale copy of its
/// address (in a stack slot, in the allocator's own statics) makes it look reachable to the
/// conservative root scan: these tests are about what is tracked, not about reachability.
fn check_every_block(body: impl FnMut()) -> leakcheck::Report {
    leakcheck::Check::new()
        .reachable(leakcheck::Reachable::Fail)
        .run(body)
}

/// Live records in leakcheck's table, process-wide.
fn records() -> usize {
    leakcheck::__private::bookkeeping().1
}

// This package's tests build at opt-level 3, where LLVM removes allocations nobody reads:
// `black_box` keeps them real.
#[inline(never)]
fn leak_bytes(n: usize) {
    std::mem::forget(std::hint::black_box(vec![0u8; n]));
}

#[inline(never)]
fn churn(n: usize) {
    let v = std::hint::black_box(vec![7u8; n]);
    let s = std::hint::black_box(format!("{}", v.len()));
    drop((v, s));
}

/// Re-runs this test binary on one test (`name`), with `var=1` in its environment, and
/// returns what it did. The child kills itself after `timeout`.
fn run_child(name: &str, var: &str, timeout: Duration) -> std::process::Output {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            name,
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(var, "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "child `{name}` hung for {timeout:?}; its stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

/// Panics whose message starts with `quiet:` are not printed. The default hook prints a
/// backtrace for a panic inside `Drop` while unwinding (and for every panic under
/// `RUST_BACKTRACE=1`), and std's symbolizer then fills permanent caches inside the check (see
/// `a_caught_panic_with_backtraces_on_is_not_a_leak`).
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if !message.is_some_and(|m| m.starts_with("quiet:")) {
                previous(info);
            }
        }));
    });
}

// ---------------------------------------------------------------------------------------------
// The stress test.

const THREADS: usize = 8;
/// Threads `0..CHECKING` open a check every other round; the others never do.
const CHECKING: usize = 4;
/// Blocks a thread holds at most.
const LOCAL_CAP: usize = 256;
/// Size of the one deliberate leak, made inside one check of thread 0.
const LEAK: usize = 12_345;
const NO_OWNER: usize = usize::MAX;

/// xorshift64*: deterministic, allocation-free.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A raw heap block. `owner` is the thread whose open check made it (it waits for all of them
/// to be freed before it closes the check), or `NO_OWNER` for blocks made outside any check.
struct Blk {
    ptr: NonNull<u8>,
    layout: Layout,
    owner: usize,
}

// SAFETY: a `Blk` is the only handle to its block; the block is plain bytes.
unsafe impl Send for Blk {}

impl Blk {
    fn alloc(rng: &mut Rng, owner: usize) -> Blk {
        let size = match rng.below(100) {
            0..=79 => 1 + rng.below(256),
            80..=97 => 1 + rng.below(4096),
            _ => 1 + rng.below(64 * 1024),
        };
        let align = [1, 8, 16, 64][rng.below(4)];
        let layout = Layout::from_size_align(size, align).unwrap();
        // SAFETY: non-zero size.
        let ptr = unsafe {
            if rng.below(8) == 0 {
                std::alloc::alloc_zeroed(layout)
            } else {
                std::alloc::alloc(layout)
            }
        };
        let ptr = NonNull::new(std::hint::black_box(ptr)).expect("out of memory");
        // SAFETY: the block has `size >= 1` writable bytes.
        unsafe { ptr.as_ptr().write(size as u8) };
        if owner != NO_OWNER {
            PENDING[owner].fetch_add(1, Ordering::Relaxed);
        }
        STATS.allocs.fetch_add(1, Ordering::Relaxed);
        Blk { ptr, layout, owner }
    }

    fn realloc(&mut self, rng: &mut Rng) {
        let limit = if rng.below(10) == 0 { 16 * 1024 } else { 512 };
        let new_size = 1 + rng.below(limit);
        // SAFETY: `ptr` was allocated with `layout`; the new size is non-zero and, rounded to
        // the alignment, far below isize::MAX.
        let ptr = unsafe { std::alloc::realloc(self.ptr.as_ptr(), self.layout, new_size) };
        let ptr = NonNull::new(std::hint::black_box(ptr)).expect("out of memory");
        // SAFETY: the first byte survives a realloc; it was written at allocation.
        let first = unsafe { ptr.as_ptr().read() };
        assert_eq!(
            first,
            self.layout.size() as u8,
            "realloc lost the block's contents"
        );
        // SAFETY: the block has `new_size >= 1` writable bytes.
        unsafe { ptr.as_ptr().write(new_size as u8) };
        self.ptr = ptr;
        self.layout = Layout::from_size_align(new_size, self.layout.align()).unwrap();
        STATS.reallocs.fetch_add(1, Ordering::Relaxed);
    }

    fn free(self) {
        // SAFETY: the block holds what was written last.
        let first = unsafe { self.ptr.as_ptr().read() };
        assert_eq!(first, self.layout.size() as u8, "a block was overwritten");
        // SAFETY: `ptr` was allocated with `layout` and this is its only handle.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
        if self.owner != NO_OWNER {
            PENDING[self.owner].fetch_sub(1, Ordering::Release);
        }
        STATS.frees.fetch_add(1, Ordering::Relaxed);
    }
}

/// Blocks made inside each thread's open check that are still live anywhere.
static PENDING: [AtomicUsize; THREADS] = [const { AtomicUsize::new(0) }; THREADS];

struct Stats {
    allocs: AtomicUsize,
    reallocs: AtomicUsize,
    frees: AtomicUsize,
    checks: AtomicUsize,
}

static STATS: Stats = Stats {
    allocs: AtomicUsize::new(0),
    reallocs: AtomicUsize::new(0),
    frees: AtomicUsize::new(0),
    checks: AtomicUsize::new(0),
};

/// What all workers share. Every buffer is allocated before the workers start, outside any
/// check, with room for every block there is: they never grow, so no check owns them.
struct Board {
    mailboxes: Vec<Mutex<Vec<Blk>>>,
    finished: AtomicUsize,
    progress: Vec<AtomicUsize>,
    leak_reported: AtomicBool,
    /// Wrong reports, collected rather than panicking the worker: a dead worker stops serving
    /// its mailbox and the others would wait for it forever.
    failures: Mutex<Vec<String>>,
}

struct Worker<'b> {
    id: usize,
    rng: Rng,
    board: &'b Board,
    local: Vec<Blk>,
    inbox: Vec<Blk>,
}

impl Worker<'_> {
    /// `n` random operations; blocks made now belong to `owner`.
    fn run_ops(&mut self, n: usize, owner: usize) {
        for _ in 0..n {
            self.board.progress[self.id].fetch_add(1, Ordering::Relaxed);
            match self.rng.below(100) {
                0..=39 => {
                    let blk = Blk::alloc(&mut self.rng, owner);
                    if self.local.len() < LOCAL_CAP {
                        self.local.push(blk);
                    } else {
                        blk.free();
                    }
                }
                40..=59 => {
                    if !self.local.is_empty() {
                        let i = self.rng.below(self.local.len());
                        self.local.swap_remove(i).free();
                    }
                }
                60..=74 => {
                    if !self.local.is_empty() {
                        let i = self.rng.below(self.local.len());
                        self.local[i].realloc(&mut self.rng);
                    }
                }
                75..=89 => {
                    if !self.local.is_empty() {
                        let i = self.rng.below(self.local.len());
                        let blk = self.local.swap_remove(i);
                        let to = (self.id + 1 + self.rng.below(THREADS - 1)) % THREADS;
                        self.board.mailboxes[to].lock().unwrap().push(blk);
                    }
                }
                _ => self.drain_inbox(),
            }
        }
    }

    /// Takes the blocks other threads sent. Blocks some open check waits for are freed at once
    /// (half of them after a realloc, which must keep them in their check); the others join
    /// this thread's blocks.
    fn drain_inbox(&mut self) {
        std::mem::swap(
            &mut self.inbox,
            &mut *self.board.mailboxes[self.id].lock().unwrap(),
        );
        while let Some(mut blk) = self.inbox.pop() {
            if blk.owner != NO_OWNER || self.local.len() >= LOCAL_CAP {
                if self.rng.below(2) == 0 {
                    blk.realloc(&mut self.rng);
                }
                blk.free();
            } else {
                self.local.push(blk);
            }
        }
    }

    fn free_local(&mut self, which: impl Fn(&Blk) -> bool) {
        let mut i = 0;
        while i < self.local.len() {
            if which(&self.local[i]) {
                self.local.swap_remove(i).free();
            } else {
                i += 1;
            }
        }
    }

    /// Frees this thread's own blocks of the current check and waits until every one it sent
    /// away has been freed too, serving its own mailbox meanwhile (so two threads waiting for
    /// each other both make progress).
    fn settle(&mut self) {
        let id = self.id;
        self.free_local(|blk| blk.owner == id);
        let deadline = Instant::now() + Duration::from_secs(60);
        while PENDING[id].load(Ordering::Acquire) != 0 {
            self.drain_inbox();
            std::thread::yield_now();
            assert!(
                Instant::now() < deadline,
                "thread {id}: blocks of its check were never freed"
            );
        }
    }

    fn run(&mut self, ops: usize) {
        let mut done = 0;
        let mut round = 0;
        while done < ops {
            let n = (200 + self.rng.below(2000)).min(ops - done);
            let checking = self.id < CHECKING && round % 2 == 1;
            if checking {
                let leak_here = self.id == 0 && round == 3;
                let seed = self.rng.next();
                // The default check: a thread started inside it may grow std's global
                // thread-info map, a block that stays reachable from a static (not a leak).
                let report = leakcheck::check(|| {
                    // A short-lived thread started inside the check (so inside it too) does
                    // balanced work of its own while this one runs. Joined, not scoped: see
                    // `a_check_ending_right_after_thread_scope_is_clean`.
                    let helper = std::thread::spawn(move || balanced_ops(seed, 300));
                    self.run_ops(n, self.id);
                    helper.join().unwrap();
                    if leak_here {
                        leak_bytes(LEAK);
                    }
                    self.settle();
                });
                STATS.checks.fetch_add(1, Ordering::Relaxed);
                let wrong = if leak_here {
                    let exact = report.leaked_bytes() == LEAK
                        && report.leaked_allocations() == 1
                        && report.groups().len() == 1;
                    self.board.leak_reported.store(exact, Ordering::Relaxed);
                    !exact
                } else {
                    !report.is_clean() || report.leaked_allocations() != 0
                };
                if wrong {
                    let failure = format!("thread {}, round {round}:\n{report}", self.id);
                    self.board.failures.lock().unwrap().push(failure);
                }
            } else {
                self.run_ops(n, NO_OWNER);
            }
            done += n;
            round += 1;
        }
        // Keep serving the mailbox until every thread is done sending, then free everything.
        self.board.finished.fetch_add(1, Ordering::AcqRel);
        while self.board.finished.load(Ordering::Acquire) < THREADS {
            self.drain_inbox();
            std::thread::yield_now();
        }
        self.drain_inbox();
        self.free_local(|_| true);
    }
}

/// Allocates, reallocates and frees `n` times on this thread, leaving nothing behind.
fn balanced_ops(seed: u64, n: usize) {
    let mut rng = Rng::new(seed);
    let mut blocks: Vec<Blk> = Vec::with_capacity(32);
    for _ in 0..n {
        match rng.below(3) {
            0 if blocks.len() < 32 => blocks.push(Blk::alloc(&mut rng, NO_OWNER)),
            1 if !blocks.is_empty() => {
                let i = rng.below(blocks.len());
                blocks[i].realloc(&mut rng);
            }
            _ if !blocks.is_empty() => {
                let i = rng.below(blocks.len());
                blocks.swap_remove(i).free();
            }
            _ => {}
        }
    }
    blocks.into_iter().for_each(Blk::free);
}

fn stress(total_ops: usize, seed: u64) {
    let board = Board {
        mailboxes: (0..THREADS)
            .map(|_| Mutex::new(Vec::with_capacity(THREADS * LOCAL_CAP)))
            .collect(),
        finished: AtomicUsize::new(0),
        progress: (0..THREADS).map(|_| AtomicUsize::new(0)).collect(),
        leak_reported: AtomicBool::new(false),
        failures: Mutex::new(Vec::new()),
    };
    for counter in [&STATS.allocs, &STATS.reallocs, &STATS.frees, &STATS.checks] {
        counter.store(0, Ordering::Relaxed);
    }
    let started = Instant::now();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let board = &board;
        for id in 0..THREADS {
            let done_tx = done_tx.clone();
            std::thread::Builder::new()
                .name(format!("stress-{id}"))
                .spawn_scoped(s, move || {
                    let mut worker = Worker {
                        id,
                        rng: Rng::new(seed ^ (id as u64 + 1)),
                        board,
                        local: Vec::with_capacity(LOCAL_CAP),
                        inbox: Vec::with_capacity(THREADS * LOCAL_CAP),
                    };
                    worker.run(total_ops / THREADS);
                    drop(done_tx);
                })
                .unwrap();
        }
        drop(done_tx);
        // A deadlock shows as no progress; say where each thread was instead of hanging.
        let deadline = started + Duration::from_secs(600);
        loop {
            match done_rx.recv_timeout(Duration::from_millis(100)) {
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                _ if Instant::now() > deadline => {
                    let progress: Vec<usize> = board
                        .progress
                        .iter()
                        .map(|p| p.load(Ordering::Relaxed))
                        .collect();
                    eprintln!("stress: no end after 600 s; operations per thread: {progress:?}");
                    std::process::abort();
                }
                _ => {}
            }
        }
    });
    let failures = board.failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} wrong reports; the first:\n{}",
        failures.len(),
        failures[0]
    );
    assert!(
        board.leak_reported.load(Ordering::Relaxed),
        "the deliberate leak was not reported exactly"
    );
    assert_eq!(
        STATS.allocs.load(Ordering::Relaxed),
        STATS.frees.load(Ordering::Relaxed),
        "the test itself lost blocks"
    );
    let ops: usize = board
        .progress
        .iter()
        .map(|p| p.load(Ordering::Relaxed))
        .sum();
    eprintln!(
        "stress: {ops} operations ({} allocs, {} reallocs, {} frees) on {THREADS} threads, \
         {} checks, in {:.2?}",
        STATS.allocs.load(Ordering::Relaxed),
        STATS.reallocs.load(Ordering::Relaxed),
        STATS.frees.load(Ordering::Relaxed),
        STATS.checks.load(Ordering::Relaxed),
        started.elapsed()
    );
}

#[test]
fn stress_threads_with_checks_opening_and_closing() {
    let _quiet = exclusive();
    let before = records();
    stress(2_000_000, 0x5eed);
    assert_eq!(
        records(),
        before,
        "records left in leakcheck's table after every check closed"
    );
}

#[test]
#[ignore = "long stress; scale with LEAKCHECK_STRESS_OPS (default 20,000,000)"]
fn stress_long() {
    let _quiet = exclusive();
    let ops = std::env::var("LEAKCHECK_STRESS_OPS")
        .map(|v| {
            v.parse()
                .expect("LEAKCHECK_STRESS_OPS is a number of operations")
        })
        .unwrap_or(20_000_000);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("stress_long: seed {seed:#x}");
    let before = records();
    stress(ops, seed);
    assert_eq!(records(), before);
}

// ---------------------------------------------------------------------------------------------
// Thread teardown.

/// Allocates and frees when dropped (a thread-local's destructor at thread exit), and leaks
/// `leak` bytes.
struct OnExit {
    leak: usize,
}

impl Drop for OnExit {
    fn drop(&mut self) {
        churn(1000);
        if self.leak > 0 {
            leak_bytes(self.leak);
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static ON_EXIT: RefCell<Option<OnExit>> = const { RefCell::new(None) };
}

/// Fills this thread's thread-locals, whose destructors run when it exits.
fn fill_thread_locals(leak: usize) {
    SCRATCH.with(|s| s.borrow_mut().extend_from_slice(&[1; 4096]));
    ON_EXIT.with(|e| *e.borrow_mut() = Some(OnExit { leak }));
}

#[test]
fn thread_local_destructors_of_threads_spawned_inside_a_check() {
    let _quiet = shared();
    let report = leakcheck::check(|| {
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| fill_thread_locals(0)))
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
    });
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.leaked_allocations(), 0, "{report}");
}

/// Runs a whole check from a thread-local destructor, during thread teardown, and stores what
/// it found.
struct ChecksOnExit(&'static Mutex<Option<(usize, usize)>>);

impl Drop for ChecksOnExit {
    fn drop(&mut self) {
        churn(100);
        let report = leakcheck::check(|| {
            churn(100);
            leak_bytes(55);
        });
        *self.0.lock().unwrap() = Some((report.leaked_bytes(), report.leaked_allocations()));
    }
}

thread_local! {
    static CHECKER: RefCell<Option<ChecksOnExit>> = const { RefCell::new(None) };
}

/// Spawns a thread (outside any check) whose teardown runs a check, then one inside a check;
/// returns what the two teardown checks found and the outer check's report.
/// What a teardown check found: (bytes, allocations), once it ran.
type Found = Option<(usize, usize)>;

fn checks_in_thread_teardown() -> (Found, Found, leakcheck::Report) {
    static OUTSIDE: Mutex<Option<(usize, usize)>> = Mutex::new(None);
    static INSIDE: Mutex<Option<(usize, usize)>> = Mutex::new(None);
    std::thread::spawn(|| {
        fill_thread_locals(0);
        CHECKER.with(|c| *c.borrow_mut() = Some(ChecksOnExit(&OUTSIDE)));
    })
    .join()
    .unwrap();
    let report = leakcheck::check(|| {
        std::thread::spawn(|| {
            fill_thread_locals(0);
            CHECKER.with(|c| *c.borrow_mut() = Some(ChecksOnExit(&INSIDE)));
        })
        .join()
        .unwrap();
    });
    let outside = OUTSIDE.lock().unwrap().take();
    let inside = INSIDE.lock().unwrap().take();
    (outside, inside, report)
}

#[test]
fn a_check_can_run_in_a_thread_local_destructor() {
    let _quiet = shared();
    let (outside, inside, report) = checks_in_thread_teardown();
    // Both teardown checks ran to the end (no panic, no abort, no deadlock) ...
    assert!(outside.is_some() && inside.is_some());
    // ... and the outer check does not own what the nested one found.
    assert!(report.is_clean(), "{report}");
}

#[test]
fn a_leak_in_a_thread_local_destructor_is_reported() {
    let _quiet = shared();
    let report = leakcheck::check(|| {
        std::thread::spawn(|| fill_thread_locals(777))
            .join()
            .unwrap();
    });
    assert_eq!(report.leaked_bytes(), 777, "{report}");
    assert_eq!(report.leaked_allocations(), 1, "{report}");
    let (outside, inside, _) = checks_in_thread_teardown();
    assert_eq!(outside, Some((55, 1)));
    assert_eq!(inside, Some((55, 1)));
}

const OUTLIVE_CHILD: &str = "LEAKCHECK_STRESS_OUTLIVE_CHILD";

/// Twenty checks that each end while a thread they started is still allocating. Prints how
/// many records were left in leakcheck's table afterwards.
fn checks_ending_under_a_running_thread() {
    let before = records();
    for _ in 0..20 {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let started = std::sync::Arc::new(AtomicBool::new(false));
        let mut handle = None;
        let report = leakcheck::check(|| {
            let (stop, running) = (stop.clone(), started.clone());
            handle = Some(std::thread::spawn(move || {
                fill_thread_locals(0);
                let mut kept: Vec<Vec<u8>> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    kept.push(std::hint::black_box(vec![1u8; 64]));
                    if kept.len() > 32 {
                        kept.clear();
                    }
                    running.store(true, Ordering::Relaxed);
                }
            }));
            while !started.load(Ordering::Relaxed) {
                std::thread::yield_now();
            }
        });
        // The check ended while its thread was still allocating: what the thread holds is
        // reachable from its stack (a thread the check started is a root while it runs), and
        // nothing it allocates after the check is recorded.
        assert!(report.is_clean(), "{report}");
        stop.store(true, Ordering::Relaxed);
        handle.take().unwrap().join().unwrap();
        let after = leakcheck::check(|| churn(10));
        assert!(after.is_clean(), "{after}");
    }
    eprintln!("stale records: {}", records() - before);
}

/// Runs [`checks_ending_under_a_running_thread`] in a fresh process (records it leaves behind
/// would upset the record counts of the other tests here) and returns the stale records.
fn stale_records_after_checks_ending_under_a_running_thread() -> usize {
    let output = run_child(
        "a_thread_that_outlives_its_check_stops_being_tracked",
        OUTLIVE_CHILD,
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .chain(stderr.lines())
        .find_map(|l| l.strip_prefix("stale records: "))
        .unwrap_or_else(|| panic!("no count in the child's output:\n{stderr}"));
    line.trim().parse().unwrap()
}

#[test]
fn a_thread_that_outlives_its_check_stops_being_tracked() {
    if std::env::var_os(OUTLIVE_CHILD).is_some() {
        checks_ending_under_a_running_thread();
        return;
    }
    let _quiet = shared();
    stale_records_after_checks_ending_under_a_running_thread();
}

#[test]
fn a_check_ending_under_a_running_thread_leaves_no_records() {
    let _quiet = shared();
    assert_eq!(
        stale_records_after_checks_ending_under_a_running_thread(),
        0
    );
}

#[test]
fn a_check_ending_right_after_thread_scope_is_clean() {
    let _quiet = shared();
    let mut unclean = 0;
    let mut first = None;
    for _ in 0..200 {
        let report = leakcheck::check(|| {
            std::thread::scope(|s| {
                s.spawn(|| churn(10));
            });
        });
        if !report.is_clean() {
            unclean += 1;
            first.get_or_insert(report);
        }
    }
    assert!(
        first.is_none(),
        "{unclean} of 200 reported; the first:\n{}",
        first.unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// Panics.

#[test]
fn a_panic_inside_a_check_leaves_the_thread_and_outer_checks_working() {
    let _quiet = shared();
    quiet_panics();
    let mut inner_failed = false;
    let outer = check_every_block(|| {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = leakcheck::check(|| {
                leak_bytes(10);
                std::thread::spawn(|| churn(100)).join().unwrap();
                panic!("quiet: boom inside the inner check");
            });
        }));
        inner_failed = result.is_err();
        drop(result);
        leak_bytes(5);
    });
    assert!(inner_failed);
    // The inner check's records went with it; the outer one sees exactly its own leak.
    assert_eq!(outer.leaked_bytes(), 5, "{outer}");
    assert_eq!(outer.leaked_allocations(), 1, "{outer}");
    let next = leakcheck::check(|| churn(10));
    assert!(next.is_clean(), "{next}");
}

/// Catches a panic of its own while the thread unwinds, allocating on the way.
struct PanicsInDrop;

impl Drop for PanicsInDrop {
    fn drop(&mut self) {
        assert!(std::thread::panicking());
        let nested = std::panic::catch_unwind(|| {
            churn(300);
            panic!("quiet: second panic, inside Drop while unwinding");
        });
        assert!(nested.is_err());
        drop(nested);
        leak_bytes(22);
    }
}

#[test]
fn panics_in_drop_during_unwinding_inside_a_check() {
    let _quiet = shared();
    quiet_panics();
    let report = check_every_block(|| {
        let result = std::panic::catch_unwind(|| {
            let _guard = PanicsInDrop;
            leak_bytes(11);
            churn(50);
            panic!("quiet: first panic");
        });
        assert!(result.is_err());
    });
    assert_eq!(report.leaked_bytes(), 11 + 22, "{report}");
    assert_eq!(report.leaked_allocations(), 2, "{report}");
}

const DROP_ABORT_CHILD: &str = "LEAKCHECK_STRESS_DROP_ABORT_CHILD";

/// Panics out of `drop`, which aborts the process when it happens during unwinding.
struct PanicsOutOfDrop;

impl Drop for PanicsOutOfDrop {
    fn drop(&mut self) {
        churn(100);
        panic!("a panic escaping Drop while unwinding");
    }
}

#[test]
fn a_panic_escaping_drop_while_unwinding_aborts_without_hanging() {
    if std::env::var_os(DROP_ABORT_CHILD).is_some() {
        let _ = leakcheck::check(|| {
            let _guard = PanicsOutOfDrop;
            leak_bytes(11);
            panic!("first panic");
        });
        unreachable!("the process aborts first");
    }
    let _quiet = shared();
    let output = run_child(
        "a_panic_escaping_drop_while_unwinding_aborts_without_hanging",
        DROP_ABORT_CHILD,
        Duration::from_secs(20),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGABRT),
        "status {:?}; stderr:\n{stderr}",
        output.status
    );
    assert!(
        stderr.contains("panic in a destructor during cleanup"),
        "stderr:\n{stderr}"
    );
}

const BACKTRACE_CHILD: &str = "LEAKCHECK_STRESS_BACKTRACE_CHILD";

/// The default panic hook under `RUST_BACKTRACE=1` fills std's symbolizer caches (45 MB in
/// 58,000 blocks on the first panic): reachable from std's statics, so not a leak.
#[test]
fn a_caught_panic_with_backtraces_on_is_not_a_leak() {
    if std::env::var_os(BACKTRACE_CHILD).is_some() {
        // A fresh process with RUST_BACKTRACE=1: the first panic's hook prints a backtrace.
        let report = leakcheck::check(|| {
            let result = std::panic::catch_unwind(|| panic!("caught inside the check"));
            assert!(result.is_err());
        });
        assert!(report.is_clean(), "{report}");
        return;
    }
    let _quiet = shared();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "a_caught_panic_with_backtraces_on_is_not_a_leak",
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(BACKTRACE_CHILD, "1")
        .env("RUST_BACKTRACE", "1");
    let output = child.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Nesting and `ignore`.

#[test]
fn nested_checks_three_deep_with_threads_and_cross_level_frees() {
    let _quiet = shared();
    let (mut middle_bytes, mut inner_groups) = (0, Vec::with_capacity(16));
    let outer = check_every_block(|| {
        let mut from_outer = Some(std::hint::black_box(vec![1u8; 100]));
        let mut from_inner = None;
        middle_bytes = check_every_block(|| {
            leak_bytes(200);
            // `from_inner` is still held when this check ends: `reachable = "fail"` counts it
            // whatever the root scan makes of it.
            let inner = check_every_block(|| {
                // Frees a block of the outermost check; leaks one of its own on a thread.
                drop(std::hint::black_box(from_outer.take()));
                std::thread::spawn(|| leak_bytes(300)).join().unwrap();
                from_inner = Some(std::hint::black_box(vec![2u8; 400]));
            });
            // Into room reserved before the checks: a new vector here would be the middle
            // check's.
            inner_groups.extend(inner.groups().iter().map(|g| g.bytes()));
            drop(inner);
        })
        .leaked_bytes();
        // Live when the innermost check ended (its leak), freed now: nothing for anyone.
        drop(from_inner.take());
        leak_bytes(500);
    });
    // (Starting a thread may also grow std's global thread-info map, a block of its own.)
    assert!(
        inner_groups.contains(&300) && inner_groups.contains(&400),
        "{inner_groups:?}"
    );
    assert_eq!(middle_bytes, 200);
    assert_eq!(outer.leaked_bytes(), 500, "{outer}");
    assert_eq!(outer.leaked_allocations(), 1, "{outer}");
}

#[test]
fn report_building_inside_a_check_is_not_the_checks_allocation() {
    let _quiet = shared();
    let mut text_len = 0;
    let outer = leakcheck::check(|| {
        // Symbolising the inner leak loads debug info and fills caches for good: that must not
        // show up in the outer check, which only keeps a number.
        let inner = leakcheck::check(|| leak_bytes(64));
        let text = inner.to_string();
        assert!(text.contains("leak_bytes"), "{text}");
        text_len = text.len();
        drop((inner, text));
    });
    assert!(text_len > 0);
    assert!(outer.is_clean(), "{outer}");
}

#[test]
fn too_many_nested_checks_fail_with_a_clear_message_and_leave_no_trace() {
    // Exclusive: takes every check slot of the process for a moment.
    let _quiet = exclusive();
    fn nest(depth: usize) -> usize {
        let mut deepest = depth;
        let _ = leakcheck::check(|| deepest = nest(depth + 1));
        deepest
    }
    let before = records();
    let panic = std::panic::catch_unwind(|| nest(0)).unwrap_err();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("more than 125 checks are running at once"),
        "{message}"
    );
    drop(panic);
    assert_eq!(records(), before);
    let report = check_every_block(|| leak_bytes(9));
    assert_eq!(report.leaked_bytes(), 9, "{report}");
}

/// Every check slot records and forgets its blocks right, the 64th and later too. The record
/// table's shards keep a 64-bit mask of the checks they hold records of, slot `n` at bit
/// `n % 64`; bit 0 is the retained blocks', whose frees a filter may skip: a check given slot
/// 64 would have its frees skipped too, and its freed blocks reported as leaks.
#[test]
fn blocks_freed_inside_the_64th_and_later_nested_checks_are_not_reported() {
    let _quiet = exclusive();
    fn nest(depth: usize, leaks: &mut Vec<(usize, usize)>) {
        let report = leakcheck::check(|| {
            for n in 1..=64 {
                drop(std::hint::black_box(vec![depth as u8; n * 8]));
            }
            if depth < 80 {
                nest(depth + 1, leaks);
            }
        });
        // Freed blocks whose records stayed show as leaked, or as reachable (glibc's free
        // lists, reached from its thread-locals, point to them).
        let left = report.leaked_bytes() + report.reachable().0;
        if left != 0 {
            leaks.push((depth, left));
        }
    }
    // Room for every depth, so that no check's body grows the vector.
    let mut leaks = Vec::with_capacity(100);
    nest(1, &mut leaks);
    assert!(
        leaks.is_empty(),
        "(depth, bytes) freed but still reported: {leaks:?}"
    );
}

#[test]
fn ignore_nests_and_is_restored_after_a_panic() {
    let _quiet = shared();
    quiet_panics();
    let report = check_every_block(|| {
        leakcheck::ignore(|| {
            leak_bytes(1);
            leakcheck::ignore(|| leak_bytes(2));
            leak_bytes(4);
        });
        let result = std::panic::catch_unwind(|| {
            leakcheck::ignore(|| {
                leak_bytes(8);
                panic!("quiet: inside ignore");
            })
        });
        assert!(result.is_err());
        drop(result);
        // Tracking is back after the panic unwound out of `ignore`.
        leak_bytes(16);
        // A thread spawned inside `ignore` is ignored too.
        leakcheck::ignore(|| std::thread::spawn(|| leak_bytes(32)).join().unwrap());
    });
    assert_eq!(report.leaked_bytes(), 16, "{report}");
    assert_eq!(report.leaked_allocations(), 1, "{report}");
}

#[test]
fn a_check_inside_ignore_still_checks() {
    let _quiet = shared();
    let report = leakcheck::ignore(|| check_every_block(|| leak_bytes(3)));
    assert_eq!(report.leaked_bytes(), 3, "{report}");
}
