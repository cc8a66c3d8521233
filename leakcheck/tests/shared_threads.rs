//! Threads that serve more than one check: a worker one check started and left running, which
//! another check hands work to while the first is still open, and a worker started before any
//! check, which a check sends data it keeps.
//!
//! Every test takes `ONE_AT_A_TIME`, so that the only checks open in this process are the ones
//! a test opens itself.

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

use leakcheck::{Check, Report, SharedThreads};
use std::hint::black_box;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Barrier, Condvar, Mutex};
use std::thread;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

enum Job {
    /// Leak this many bytes, then say so.
    Leak(usize, Sender<()>),
    /// Keep this payload until the next one, then say so.
    Keep(Vec<u8>, Sender<()>),
}

fn serve(jobs: Receiver<Job>) {
    let mut kept = None;
    for job in jobs {
        match job {
            Job::Leak(bytes, done) => {
                leak_on_the_worker(bytes);
                scrub_the_stack_below();
                done.send(()).unwrap();
            }
            Job::Keep(payload, done) => {
                kept = Some(payload);
                done.send(()).unwrap();
            }
        }
        black_box(&kept);
    }
}

#[inline(never)]
fn leak_on_the_worker(bytes: usize) {
    std::mem::forget(black_box(vec![0x5au8; bytes])); // the worker's leak
}

/// Overwrites the dead frame the leak was made in: the worker's stack is a root, and the
/// frames it waits in next would otherwise lie over that frame's stale copy of the address.
#[inline(never)]
fn scrub_the_stack_below() {
    black_box(&mut [0usize; 1024]);
}

/// The pool's queue, kept in a static as pools keep theirs: a block the queue adds for a job
/// is reachable through it.
static POOL: Mutex<Option<Sender<Job>>> = Mutex::new(None);

/// Check 1 starts a worker and leaves it running; while check 1 is still open, check 2 (on
/// another thread) has the worker leak `bytes`. Returns both reports.
fn worker_leaks_for_another_check(bytes: usize, shared: SharedThreads) -> (Report, Report) {
    let check_1_started = &Barrier::new(2);
    let check_2_done = &Barrier::new(2);
    thread::scope(|s| {
        let first = s.spawn(move || {
            Check::new().shared_threads(shared).run(|| {
                let (jobs, queue) = mpsc::channel();
                thread::spawn(move || serve(queue));
                *POOL.lock().unwrap() = Some(jobs);
                check_1_started.wait();
                check_2_done.wait();
            })
        });
        let second = s.spawn(move || {
            check_1_started.wait();
            let report = Check::new().run(|| {
                let (done, wait) = mpsc::channel();
                let job = Job::Leak(bytes, done);
                POOL.lock().unwrap().as_ref().unwrap().send(job).unwrap();
                wait.recv().unwrap();
            });
            check_2_done.wait();
            report
        });
        (first.join().unwrap(), second.join().unwrap())
    })
}

#[test]
fn a_worker_left_running_that_leaks_for_another_open_check_is_a_note_not_a_failure() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (first, second) = worker_leaks_for_another_check(1_234, SharedThreads::Note);
    assert!(first.is_clean(), "first: {first}");
    assert!(second.is_clean(), "second: {second}");
    let shared: usize = first.shared_thread_groups().iter().map(|g| g.bytes()).sum();
    assert_eq!(shared, 1_234, "{first}");
    let text = first.to_string();
    assert!(text.contains("note: not counted: 1,234 bytes in 1 allocation lost by threads this test started and left running"), "{text}");
    assert!(
        text.contains("shared_threads.rs:"),
        "names the other check: {text}"
    );
    assert!(
        text.contains("leak_on_the_worker"),
        "shows the stack: {text}"
    );
}

#[test]
fn shared_threads_fail_counts_a_shared_workers_leak() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (first, _) = worker_leaks_for_another_check(1_235, SharedThreads::Fail);
    assert!(!first.is_clean(), "{first}");
    assert_eq!(first.leaked_bytes(), 1_235, "{first}");
    assert!(first.shared_thread_groups().is_empty(), "{first}");
}

#[test]
fn a_worker_left_running_that_leaks_while_no_other_check_runs_fails_its_check() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let report = Check::new().run(|| {
        let (jobs, queue) = mpsc::channel();
        thread::spawn(move || serve(queue));
        let (done, wait) = mpsc::channel();
        jobs.send(Job::Leak(1_236, done)).unwrap();
        wait.recv().unwrap();
        std::mem::forget(jobs);
    });
    assert_eq!(report.leaked_bytes(), 1_236, "{report}");
    assert!(report.shared_thread_groups().is_empty(), "{report}");
}

#[test]
fn a_worker_started_before_the_check_keeps_what_the_check_sends_it() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (jobs, queue) = mpsc::channel();
    thread::spawn(move || serve(queue));
    // The channel's first block of slots is made here: a block kept only by a block made
    // outside every check is beyond the scan (see the Limitations).
    let (done, wait) = mpsc::channel();
    jobs.send(Job::Keep(vec![7u8; 8], done)).unwrap();
    wait.recv().unwrap();
    let report = Check::new().run(|| {
        let (done, wait) = mpsc::channel();
        jobs.send(Job::Keep(vec![7u8; 1_237], done)).unwrap();
        wait.recv().unwrap();
    });
    std::mem::forget(jobs);
    assert!(report.is_clean(), "{report}");
    assert!(report.reachable().0 >= 1_237, "{report}");
}

/// A hand-off from checks to a keeper thread: the payload, whether to stop, and how many
/// payloads the keeper has taken. Taking leaves an empty `Vec` (a dangling address), so no
/// copy of a taken payload's address stays in the slot.
struct Handoff {
    slot: Mutex<(Vec<u8>, bool, usize)>,
    changed: Condvar,
}

impl Handoff {
    const fn new() -> Handoff {
        Handoff {
            slot: Mutex::new((Vec::new(), false, 0)),
            changed: Condvar::new(),
        }
    }

    /// Keeps the latest payload handed over, in a local, until told to stop.
    fn keep(&self) {
        let mut kept = Vec::new();
        let mut slot = self.slot.lock().unwrap();
        while !slot.1 {
            if !slot.0.is_empty() {
                kept = std::mem::take(&mut slot.0);
                slot.2 += 1;
                self.changed.notify_all();
            }
            slot = self.changed.wait(slot).unwrap();
            black_box(&kept);
        }
    }

    /// Hands `payload` over and waits until the keeper has it.
    fn hand_over(&self, payload: Vec<u8>) {
        let mut slot = self.slot.lock().unwrap();
        slot.0 = payload;
        self.changed.notify_all();
        while slot.2 == 0 {
            slot = self.changed.wait(slot).unwrap();
        }
    }

    fn stop(&self) {
        self.slot.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
}

/// Check 1 starts a keeper thread on `handoff` (`detach`: dropping its handle, else keeping it
/// to join at its end) and stays open while check 2, on another thread, hands the keeper
/// `bytes`. Returns check 2's report; the keeper is stopped.
fn worker_of_an_open_check_keeps_what_another_sends(
    handoff: &'static Handoff,
    bytes: usize,
    detach: bool,
) -> Report {
    let check_1_started = &Barrier::new(2);
    let check_2_done = &Barrier::new(2);
    let report = thread::scope(|s| {
        s.spawn(move || {
            Check::new().run(|| {
                let keeper = thread::spawn(|| handoff.keep());
                let keeper = if detach {
                    drop(keeper);
                    None
                } else {
                    Some(keeper)
                };
                check_1_started.wait();
                check_2_done.wait();
                if let Some(keeper) = keeper {
                    handoff.stop();
                    keeper.join().unwrap();
                }
            })
        });
        let second = s.spawn(move || {
            check_1_started.wait();
            let report = Check::new().run(|| handoff.hand_over(vec![3u8; bytes]));
            check_2_done.wait();
            report
        });
        second.join().unwrap()
    });
    handoff.stop();
    report
}

/// A worker whose handle was dropped serves the whole process, as a pool or a worker started
/// lazily by the first test that needed it does, even while that test still runs: what it
/// keeps for another test is reachable.
#[test]
fn a_detached_worker_of_another_open_check_keeps_what_this_check_sends_it() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    static HANDOFF: Handoff = Handoff::new();
    let report = worker_of_an_open_check_keeps_what_another_sends(&HANDOFF, 1_238, true);
    assert!(report.is_clean(), "{report}");
    assert!(report.reachable().0 >= 1_238, "{report}");
}

/// A thread another open check will join (a `#[tokio::test]` runtime's workers) is that
/// check's: its stack is no root of this one, as its stale slots hid real leaks. What such a
/// thread keeps for this check is reported (see the Limitations).
#[test]
fn a_thread_another_open_check_will_join_is_no_root() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    static HANDOFF: Handoff = Handoff::new();
    let report = worker_of_an_open_check_keeps_what_another_sends(&HANDOFF, 1_239, false);
    assert_eq!(report.leaked_bytes(), 1_239, "{report}");
}

/// A value aligned to 128 bytes, as crossbeam's `CachePadded` and async-executor's state are.
#[repr(align(128))]
struct Padded(#[allow(dead_code)] [u8; 700]);

/// `Arc::into_raw` of an over-aligned value points past counts padded to its alignment (128
/// bytes into the block, not 16): a thread that keeps only that pointer keeps the block. The
/// pointer goes over through a static the thread clears, so that only its stack has it.
#[test]
fn a_thread_left_running_keeps_an_over_aligned_arc_by_its_value_pointer() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    static HANDED_OVER: AtomicUsize = AtomicUsize::new(0);
    static STOP: Mutex<bool> = Mutex::new(false);
    static STOPPED: Condvar = Condvar::new();
    *STOP.lock().unwrap() = false;
    let report = Check::new().run(|| {
        let value = std::sync::Arc::into_raw(std::sync::Arc::new(Padded([9; 700])));
        HANDED_OVER.store(value as usize, Ordering::SeqCst);
        thread::spawn(|| {
            let kept = black_box(HANDED_OVER.swap(0, Ordering::SeqCst));
            let mut stop = STOP.lock().unwrap();
            while !*stop {
                stop = STOPPED.wait(stop).unwrap();
            }
            black_box(kept)
        });
        while HANDED_OVER.load(Ordering::SeqCst) != 0 {
            thread::yield_now();
        }
    });
    *STOP.lock().unwrap() = true;
    STOPPED.notify_all();
    assert!(report.is_clean(), "{report}");
    assert!(report.reachable().0 >= 896, "{report}");
}

/// A table another open check made keeps what this check puts in it, two of that check's
/// blocks deep (a `Box` holding a `Vec` whose buffer holds this check's block), as a
/// `tracing` subscriber another test installed keeps a span in its shards.
#[test]
fn a_structure_another_open_check_made_keeps_what_this_check_puts_in_it() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The `Box` is the point: a second block of the other check's on the path.
    #[allow(clippy::box_collection)]
    static TABLE: Mutex<Option<Box<Vec<Vec<u8>>>>> = Mutex::new(None);
    let check_1_made_it = &Barrier::new(2);
    let check_2_done = &Barrier::new(2);
    let report = thread::scope(|s| {
        s.spawn(move || {
            Check::new().run(|| {
                *TABLE.lock().unwrap() = Some(Box::new(Vec::with_capacity(8)));
                check_1_made_it.wait();
                check_2_done.wait();
            })
        });
        let second = s.spawn(move || {
            check_1_made_it.wait();
            let report = Check::new().run(|| {
                let mut table = TABLE.lock().unwrap();
                table.as_mut().unwrap().push(vec![5u8; 1_240]);
            });
            check_2_done.wait();
            report
        });
        second.join().unwrap()
    });
    TABLE.lock().unwrap().take();
    assert!(report.is_clean(), "{report}");
    assert!(report.reachable().0 >= 1_240, "{report}");
}
