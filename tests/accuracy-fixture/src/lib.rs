//! The definitely-lost scenarios of the accuracy corpus, as plain functions with no leakcheck in
//! them: `tests/scenarios.rs` runs each inside a check, and `examples/definite_leaks.rs` runs
//! the same function alone so that valgrind and LeakSanitizer can judge the same code at the
//! same lines (`scripts/compare-valgrind`).
//!
//! Every function leaks a byte count that no other scenario leaks, so a report can be matched
//! to its scenario. The line of each allocation ends in a `// site: NAME` marker: the
//! root package's `tests/accuracy.rs` and `scripts/compare-valgrind` look the line up by its
//! marker, so moving code does not break them. `#[inline(never)]` keeps every function a frame
//! of its own, and `black_box` keeps the optimiser from removing a leak.

use std::cell::RefCell;
use std::hint::black_box;
use std::rc::Rc;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// `Box::leak` of a 1,101-byte buffer.
#[inline(never)]
pub fn box_leak() -> &'static mut [u8; 1_101] {
    Box::leak(black_box(Box::new([0x11u8; 1_101]))) // site: box_leak
}

/// `mem::forget` of a 1,202-byte `Vec`.
#[inline(never)]
pub fn forget_vec() {
    let buffer = vec![0x12u8; 1_202]; // site: forget_vec
    std::mem::forget(black_box(buffer));
}

/// `mem::forget` of a `String` with 1,303 bytes of capacity.
#[inline(never)]
pub fn forget_string() {
    let mut text = String::with_capacity(1_303); // site: forget_string
    text.push_str("forgotten");
    std::mem::forget(black_box(text));
}

/// `Box::into_raw` of a 1,404-byte buffer, never turned back into a box.
#[inline(never)]
pub fn box_into_raw() -> *mut [u8; 1_404] {
    Box::into_raw(black_box(Box::new([0x14u8; 1_404]))) // site: box_into_raw
}

/// A node of [`rc_cycle`]: 48 bytes in its `Rc` allocation (two counts of 8, a boxed slice of
/// 16, a `RefCell<Option<Rc>>` of 16).
pub struct RcNode {
    payload: Box<[u8]>,
    next: RefCell<Option<Rc<RcNode>>>,
}

/// Two `Rc` nodes that point at each other, with payloads of 1,501 and 1,502 bytes, and no
/// other owner: the cycle keeps both counts above zero forever.
///
/// Both nodes are made at the same line, so which one is "definitely lost" (the one a
/// valgrind-style checker starts the lost structure from) does not change the report: 48 bytes
/// definitely lost and 48 + 3,003 indirectly lost.
#[inline(never)]
pub fn rc_cycle() {
    let nodes: Vec<Rc<RcNode>> = [1_501, 1_502]
        .into_iter()
        .map(|len| {
            let payload = vec![0x15u8; len].into_boxed_slice(); // site: rc_cycle_payload
            let next = RefCell::new(None);
            Rc::new(RcNode { payload, next }) // site: rc_cycle_node
        })
        .collect();
    *nodes[0].next.borrow_mut() = Some(Rc::clone(&nodes[1]));
    *nodes[1].next.borrow_mut() = Some(Rc::clone(&nodes[0]));
    black_box(nodes.iter().map(|n| n.payload.len()).sum::<usize>());
}

/// A node of [`arc_cycle`]: 48 bytes in its `Arc` allocation (two counts of 8, a boxed slice of
/// 16, a `Mutex<Option<Arc>>` of 16).
pub struct ArcNode {
    payload: Box<[u8]>,
    next: Mutex<Option<Arc<ArcNode>>>,
}

/// [`rc_cycle`] with `Arc` and `Mutex`, payloads of 1,601 and 1,602 bytes.
#[inline(never)]
pub fn arc_cycle() {
    let nodes: Vec<Arc<ArcNode>> = [1_601, 1_602]
        .into_iter()
        .map(|len| {
            let payload = vec![0x16u8; len].into_boxed_slice(); // site: arc_cycle_payload
            let next = Mutex::new(None);
            Arc::new(ArcNode { payload, next }) // site: arc_cycle_node
        })
        .collect();
    *nodes[0].next.lock().unwrap() = Some(Arc::clone(&nodes[1]));
    *nodes[1].next.lock().unwrap() = Some(Arc::clone(&nodes[0]));
    black_box(nodes.iter().map(|n| n.payload.len()).sum::<usize>());
}

/// A singly linked list node of 128 bytes.
pub struct ListNode {
    value: [u8; 120],
    next: Option<Box<ListNode>>,
}

/// A six-node list whose head is forgotten: the head is definitely lost (128 bytes) and the
/// five nodes behind it indirectly lost (640 bytes).
#[inline(never)]
pub fn leak_linked_list() {
    let mut head: Option<Box<ListNode>> = None;
    for i in 0..6u8 {
        let node = ListNode {
            value: [i; 120],
            next: head.take(),
        };
        head = Some(Box::new(node)); // site: linked_list_node
    }
    let mut len = 0;
    let mut node = head.as_deref();
    while let Some(n) = node {
        len += n.value.len();
        node = n.next.as_deref();
    }
    black_box(len);
    std::mem::forget(head);
}

/// A thread from `std::thread::spawn`, joined, that forgets 2,101 bytes.
#[inline(never)]
pub fn leak_in_spawned_thread() {
    std::thread::spawn(|| {
        std::mem::forget(black_box(vec![0x21u8; 2_101])); // site: thread_spawn
    })
    .join()
    .unwrap();
}

/// A scoped thread (`std::thread::scope`) that forgets 2,202 bytes.
#[inline(never)]
pub fn leak_in_scoped_thread() {
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::mem::forget(black_box(vec![0x22u8; 2_202])); // site: thread_scope
        });
    });
}

/// A named thread from `std::thread::Builder`, joined, that forgets 2,303 bytes.
#[inline(never)]
pub fn leak_in_builder_thread() {
    std::thread::Builder::new()
        .name("leaky-builder".to_owned())
        .stack_size(256 * 1024)
        .spawn(|| {
            std::mem::forget(black_box(vec![0x23u8; 2_303])); // site: thread_builder
        })
        .unwrap()
        .join()
        .unwrap();
}

/// Catches a panic (whose message std's hook writes into the test harness's output capture,
/// growing a buffer made before the check), then forgets 1,111 bytes.
#[inline(never)]
pub fn leak_beside_a_caught_panic() {
    let caught = std::panic::catch_unwind(|| panic!("caught on purpose: {}", black_box(42)));
    assert!(caught.is_err());
    std::mem::forget(black_box(vec![0x1bu8; 1_111])); // site: beside_caught_panic
}

/// A thread that starts a second thread, which forgets 2,404 bytes: ownership passes down.
#[inline(never)]
pub fn leak_in_grandchild_thread() {
    std::thread::spawn(|| {
        std::thread::spawn(|| {
            std::mem::forget(black_box(vec![0x24u8; 2_404])); // site: thread_grandchild
        })
        .join()
        .unwrap();
    })
    .join()
    .unwrap();
}

/// A worker thread left running, as a pool or an executor started lazily by the first code
/// that needs it: it waits for buffers on a channel and keeps every one it gets, on its own
/// stack, for good. Nothing it or its callers allocate is freed, so that no freed block's
/// address is left in a consumed channel slot, where a later leak at the same address would
/// look reachable to any conservative scan.
pub struct Worker {
    buffers: Mutex<Sender<Vec<u8>>>,
    /// How many buffers the worker has kept.
    kept: Arc<(Mutex<usize>, Condvar)>,
}

impl Worker {
    /// Starts the worker thread.
    pub fn start() -> Worker {
        let (buffers, inbox) = channel::<Vec<u8>>();
        let kept = Arc::new((Mutex::new(0), Condvar::new()));
        let counter = Arc::clone(&kept);
        std::thread::spawn(move || {
            let mut buffers: Vec<Vec<u8>> = Vec::with_capacity(64);
            for buffer in inbox {
                buffers.push(buffer);
                *counter.0.lock().unwrap() = buffers.len();
                counter.1.notify_all();
            }
        });
        Worker {
            buffers: Mutex::new(buffers),
            kept,
        }
    }

    /// Hands `count` buffers of `bytes` bytes to the worker and waits until it has kept them.
    pub fn hand_over(&self, count: usize, bytes: usize) {
        let sender = self.buffers.lock().unwrap();
        let target = *self.kept.0.lock().unwrap() + count;
        for i in 0..count {
            sender.send(vec![i as u8; bytes]).unwrap();
        }
        let mut kept = self.kept.0.lock().unwrap();
        while *kept < target {
            kept = self.kept.1.wait(kept).unwrap();
        }
    }
}

/// A worker thread started before `main` (from `.init_array`, as a C library or a `ctor`
/// starts one), fed through a channel made there, which keeps the last buffer it was sent in a
/// local of its loop: the shape of a service thread that no test started.
pub struct EarlyWorker {
    jobs: Mutex<Sender<(Vec<u8>, Sender<()>)>>,
}

static EARLY_WORKER: OnceLock<EarlyWorker> = OnceLock::new();

#[used]
#[link_section = ".init_array"]
static START_EARLY_WORKER: extern "C" fn() = start_early_worker;

extern "C" fn start_early_worker() {
    let worker = EARLY_WORKER.get_or_init(|| {
        let (jobs, inbox) = channel::<(Vec<u8>, Sender<()>)>();
        std::thread::spawn(move || {
            let mut latest = None;
            for (buffer, kept) in inbox {
                drop(latest.replace(buffer));
                kept.send(()).unwrap();
                black_box(&latest);
            }
        });
        EarlyWorker {
            jobs: Mutex::new(jobs),
        }
    });
    // The channel's first block of slots is made here, before main, where no check sees it.
    worker.keep(vec![0u8; 8]);
}

impl EarlyWorker {
    /// The worker, started before `main`.
    pub fn get() -> &'static EarlyWorker {
        EARLY_WORKER.get().expect("started from .init_array")
    }

    /// Hands the worker `buffer` to keep (dropping the one it kept) and waits until it has.
    pub fn keep(&self, buffer: Vec<u8>) {
        let (kept, wait) = channel();
        self.jobs.lock().unwrap().send((buffer, kept)).unwrap();
        wait.recv().unwrap();
    }
}

/// A pool of two threads started before `main` (from `.init_array`), fed boxed jobs through a
/// channel made there: a global pool no test started, as rayon's is once an earlier test used
/// it.
pub struct EarlyPool {
    jobs: Mutex<Sender<Job>>,
}

type Job = (Box<dyn FnOnce() + Send>, Sender<()>);

static EARLY_POOL: OnceLock<EarlyPool> = OnceLock::new();

#[used]
#[link_section = ".init_array"]
static START_EARLY_POOL: extern "C" fn() = start_early_pool;

extern "C" fn start_early_pool() {
    let pool = EARLY_POOL.get_or_init(|| {
        let (jobs, inbox) = channel::<Job>();
        let inbox = Arc::new(Mutex::new(inbox));
        for _ in 0..2 {
            let inbox = Arc::clone(&inbox);
            std::thread::spawn(move || loop {
                let next = inbox.lock().unwrap().recv();
                let Ok((job, done)) = next else { return };
                job();
                done.send(()).unwrap();
            });
        }
        EarlyPool {
            jobs: Mutex::new(jobs),
        }
    });
    // The channel's first block of slots is made here, before main, where no check sees it.
    pool.run(Box::new(|| ()));
}

impl EarlyPool {
    /// The pool, started before `main`.
    pub fn get() -> &'static EarlyPool {
        EARLY_POOL.get().expect("started from .init_array")
    }

    /// Runs `job` on one of the pool's threads and waits until it has run.
    pub fn run(&self, job: Box<dyn FnOnce() + Send>) {
        let (done, wait) = channel();
        self.jobs.lock().unwrap().send((job, done)).unwrap();
        wait.recv().unwrap();
    }
}

/// A job on the pool started before `main` forgets 2,707 bytes: the test's work, done on a
/// thread no test started. The pool's thread waits for its next job at the check's end, and
/// its stack is a root: the leak's frame is overwritten first, or the dead slot holding its
/// address, inside the frames of the wait, keeps it (for valgrind and LeakSanitizer too).
#[inline(never)]
pub fn leak_in_a_job_on_a_pool_started_before_main() {
    EarlyPool::get().run(Box::new(|| {
        forget_on_the_pool();
        scrub_the_stack_below();
    }));
}

#[inline(never)]
fn forget_on_the_pool() {
    std::mem::forget(black_box(vec![0x27u8; 2_707])); // site: early_pool_job
}

/// Forgets 1,818 bytes, then starts a worker, left running with three buffers it keeps (none of
/// them lost).
///
/// The leak comes first, in a frame of its own that is overwritten before the worker starts:
/// building the worker's channel moves a value with padding from the stack into the heap, and
/// whatever the padding's stack slot held goes with it. Made after, the leak landed, 4 times
/// in 87 runs at 2 threads, at an address a word in that padding already held, and looked
/// reachable: to leakcheck's scan as to valgrind's or LeakSanitizer's.
#[inline(never)]
pub fn leak_beside_a_worker_left_running() {
    forget_beside_the_worker();
    scrub_the_stack_below();
    static WORKER: OnceLock<Worker> = OnceLock::new();
    WORKER.get_or_init(Worker::start).hand_over(3, 700);
}

#[inline(never)]
fn forget_beside_the_worker() {
    std::mem::forget(black_box(vec![0x18u8; 1_818])); // site: beside_worker_left_running
}

/// Overwrites 8 KiB of the stack below the caller's frame, where a returned helper's frame was.
#[inline(never)]
fn scrub_the_stack_below() {
    let mut area = [0usize; 1024];
    black_box(&mut area);
}

/// A task spawned onto the current tokio runtime (a worker thread under `multi_thread`) that
/// forgets 2,505 bytes.
pub async fn leak_in_spawned_task() {
    tokio::spawn(async {
        std::mem::forget(black_box(vec![0x25u8; 2_505])); // site: tokio_task
    })
    .await
    .unwrap();
}

/// A closure run on tokio's blocking pool that forgets 2,606 bytes.
pub async fn leak_in_blocking_task() {
    tokio::task::spawn_blocking(|| {
        std::mem::forget(black_box(vec![0x26u8; 2_606])); // site: tokio_blocking
    })
    .await
    .unwrap();
}

/// The scenarios above by the name of the test in `tests/scenarios.rs` that runs each:
/// `examples/definite_leaks.rs` takes these names, so every tool's figures can be matched to
/// leakcheck's report of the same test.
pub const DEFINITE_LEAKS: &[&str] = &[
    "definite::box_leak",
    "definite::mem_forget_vec",
    "definite::mem_forget_string",
    "definite::box_into_raw_never_reclaimed",
    "definite::rc_cycle",
    "definite::arc_cycle",
    "definite::leaked_linked_list",
    "definite::leak_beside_a_caught_panic",
    "definite::leak_beside_a_worker_left_running",
    "threads::leak_in_std_thread_spawn_joined",
    "threads::leak_in_thread_scope",
    "threads::leak_in_thread_builder",
    "threads::leak_in_thread_started_by_a_spawned_thread",
    "tokio_runtime::leak_in_a_spawned_task",
    "tokio_runtime::leak_in_spawn_blocking",
];
