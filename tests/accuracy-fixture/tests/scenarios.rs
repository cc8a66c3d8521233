//! The accuracy corpus: checked tests whose verdicts are known. The root package's
//! `tests/accuracy.rs` runs this binary under parallel `cargo test` and under
//! `cargo nextest run`, and asserts the exact set of failing tests and, for each, the leaked
//! bytes and the `file:line` of every allocation site in its report. The test names and the
//! byte counts are that file's contract: each leaking scenario leaks a count no other one
//! leaks, and each allocation line ends in a `// site: NAME` marker that it looks up.
//!
//! Modules group the cases of the issue: `no_false_alarm` (must pass), `definite` and
//! `threads` (must fail), `tokio_runtime`, `growth`, `reachable`, `intentional`.

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

/// Things that are meant to live on: one-time initialisation, caches reachable from statics and
/// thread-locals, and library internals. None may fail a checked test.
mod no_false_alarm {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::hint::black_box;
    use std::sync::{LazyLock, Mutex, OnceLock};

    static SQUARES: LazyLock<Vec<u64>> = LazyLock::new(|| (0..500u64).map(|i| i * i).collect());

    #[leakcheck::test]
    fn lazy_lock_first_touch() {
        assert_eq!(SQUARES[21], 441);
    }

    static WORDS: once_cell::sync::Lazy<Vec<String>> =
        once_cell::sync::Lazy::new(|| ["alpha", "beta", "gamma"].map(String::from).to_vec());

    #[leakcheck::test]
    fn once_cell_lazy_first_touch() {
        assert_eq!(WORDS[1], "beta");
    }

    lazy_static::lazy_static! {
        static ref LIMITS: HashMap<&'static str, u32> =
            HashMap::from([("connections", 64), ("requests", 1024)]);
    }

    #[leakcheck::test]
    fn lazy_static_first_touch() {
        assert_eq!(LIMITS["requests"], 1024);
    }

    static GREETING: OnceLock<String> = OnceLock::new();

    #[leakcheck::test]
    fn once_lock_get_or_init() {
        let greeting = GREETING.get_or_init(|| format!("hello from {}", "OnceLock"));
        assert_eq!(greeting, "hello from OnceLock");
    }

    thread_local! {
        static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0u8; 512]);
        static MEMO: RefCell<HashMap<u64, String>> = RefCell::new(HashMap::new());
    }

    /// The value is allocated while the thread-local initialises.
    #[leakcheck::test]
    fn thread_local_first_touch() {
        let len = SCRATCH.with(|scratch| scratch.borrow().len());
        assert_eq!(len, 512);
    }

    /// The map's table and strings are allocated after initialisation, by the body, and stay
    /// reachable from the test thread's thread-local storage until the thread ends.
    #[leakcheck::test]
    fn thread_local_cache_filled_by_the_test() {
        let memo = |n: u64| {
            MEMO.with(|memo| {
                let mut memo = memo.borrow_mut();
                memo.entry(n)
                    .or_insert_with(|| format!("square of {n} is {}", n * n))
                    .clone()
            })
        };
        for n in 0..40 {
            assert!(memo(n).starts_with("square"));
        }
        assert_eq!(memo(7), "square of 7 is 49");
    }

    static ISO_DATE: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"^(\d{4})-(\d{2})-(\d{2})$").unwrap());

    /// The first search also creates the regex's per-thread matching cache, inside the static.
    #[leakcheck::test]
    fn regex_compiled_into_a_static() {
        let caps = ISO_DATE.captures("2024-05-17").unwrap();
        assert_eq!(&caps[2], "05");
        assert!(!ISO_DATE.is_match("17/05/2024"));
    }

    static WORD_PAIR: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"(\w+)\s+(\w+)").unwrap());

    /// Threads other than the regex's first user get matching caches from a pool inside the
    /// static, which keeps them after the threads end.
    #[leakcheck::test]
    fn regex_static_used_from_spawned_threads() {
        let first = WORD_PAIR.captures("leak check").unwrap()[2].to_owned();
        let others: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..3)
                .map(|i| {
                    scope.spawn(move || {
                        let text = format!("thread {i}");
                        WORD_PAIR.captures(&text).unwrap()[2].to_owned()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(first, "check");
        assert_eq!(others, ["0", "1", "2"]);
    }

    #[leakcheck::test]
    fn serde_json_round_trip() {
        let value = serde_json::json!({
            "name": "leakcheck",
            "scenarios": [1, 2, 3],
            "nested": {"reachable": false, "ratio": 0.5}
        });
        let text = serde_json::to_string_pretty(&value).unwrap();
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
    }

    static RESPONSES: LazyLock<Mutex<HashMap<String, Vec<u8>>>> =
        LazyLock::new(|| Mutex::new(HashMap::new()));

    /// A global cache the body fills: every block stays reachable from the static, so it is
    /// not a leak by default (`reachable::global_mutex_hashmap_cache_with_reachable_fail`
    /// fails the same thing).
    #[leakcheck::test]
    fn global_mutex_hashmap_cache_filled_by_the_test() {
        let mut cache = RESPONSES.lock().unwrap();
        for i in 0..20 {
            cache.insert(format!("/page/{i}"), vec![i as u8; 100 + i]);
        }
        assert_eq!(cache["/page/3"].len(), 103);
    }

    /// A thread that frees everything it allocated before it ends.
    #[leakcheck::test]
    fn thread_that_frees_what_it_allocates() {
        let total = std::thread::spawn(|| {
            let blocks: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 1000 + i]).collect();
            blocks.iter().map(Vec::len).sum::<usize>()
        })
        .join()
        .unwrap();
        assert!(total > 64_000);
    }

    /// A block the test thread allocates and another thread frees is not live at the end.
    #[leakcheck::test]
    fn block_freed_on_another_thread() {
        let block = black_box(vec![7u8; 4096]);
        let freed = std::thread::spawn(move || {
            let len = block.len();
            drop(block);
            len
        });
        assert_eq!(freed.join().unwrap(), 4096);
    }

    /// std's panic hook writes the caught panic's message into libtest's output capture (a
    /// buffer libtest made before the check), which grows during the check.
    #[leakcheck::test]
    fn caught_panic_written_into_the_capture() {
        let caught = std::panic::catch_unwind(|| panic!("caught on purpose: {}", black_box(7)));
        assert!(caught.is_err());
    }

    /// A failed `assert_eq!` of long values, caught: a longer message, a larger buffer.
    #[leakcheck::test]
    fn caught_failed_assert_eq() {
        let caught = std::panic::catch_unwind(|| {
            assert_eq!(
                black_box(vec![1u32; 200]),
                vec![2u32; 200],
                "caught on purpose"
            )
        });
        assert!(caught.is_err());
    }

    /// A worker thread the test starts and leaves running, as a pool or an executor started
    /// lazily by the first test that needs it: the buffers it keeps are reachable from its
    /// stack, as LeakSanitizer sees them, and are not the test's leak.
    #[leakcheck::test]
    fn worker_left_running_keeps_what_it_holds() {
        static WORKER: OnceLock<accuracy_fixture::Worker> = OnceLock::new();
        WORKER
            .get_or_init(accuracy_fixture::Worker::start)
            .hand_over(5, 900);
    }

    /// A worker that ran before `main` keeps the buffer the test hands it, on its stack: it
    /// ran during the check and waits for work at its end, so its stack is a root, as every
    /// live thread's is for LeakSanitizer.
    #[leakcheck::test]
    fn worker_started_before_main_keeps_what_it_is_sent() {
        accuracy_fixture::EarlyWorker::get().keep(vec![0x2du8; 1_450]);
    }

    /// A pool that ran before `main` runs the test's jobs: what they make and free, and what
    /// they leave in a static, is no leak, whether or not the pool's threads are the test's.
    #[leakcheck::test]
    fn jobs_on_a_pool_started_before_main() {
        static RESULTS: Mutex<Vec<Vec<u64>>> = Mutex::new(Vec::new());
        for round in 0..3u64 {
            accuracy_fixture::EarlyPool::get().run(Box::new(move || {
                let squares: Vec<u64> = (0..200).map(|i| i * i + round).collect();
                let total: u64 = squares.iter().sum();
                RESULTS.lock().unwrap().push(vec![total; 4]);
            }));
        }
    }

    /// A named thread the test leaves running (pools name their threads): std keeps the name
    /// where only the thread's handle points to it, and allocates the handle with `System`,
    /// out of leakcheck's sight.
    #[leakcheck::test]
    fn named_thread_left_running() {
        static KEEP: Mutex<Vec<std::sync::mpsc::Sender<()>>> = Mutex::new(Vec::new());
        let (wake, asleep) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("worker-1".to_string())
            .spawn(move || {
                let _ = asleep.recv();
            })
            .unwrap();
        KEEP.lock().unwrap().push(wake);
    }

    /// A thread-local initialised on a thread the test starts dies with the thread (its
    /// destructor frees it before `join` returns).
    #[leakcheck::test]
    fn thread_local_in_a_joined_thread() {
        let len = std::thread::spawn(|| SCRATCH.with(|s| s.borrow().len()))
            .join()
            .unwrap();
        assert_eq!(len, 512);
    }
}

/// Heap blocks that nothing points to any more: each must fail with its exact bytes.
mod definite {
    use std::hint::black_box;

    #[leakcheck::test]
    fn box_leak() {
        let leaked: &'static mut [u8; 1_101] = accuracy_fixture::box_leak();
        black_box(leaked);
    }

    #[leakcheck::test]
    fn mem_forget_vec() {
        accuracy_fixture::forget_vec();
    }

    #[leakcheck::test]
    fn mem_forget_string() {
        accuracy_fixture::forget_string();
    }

    #[leakcheck::test]
    fn box_into_raw_never_reclaimed() {
        black_box(accuracy_fixture::box_into_raw());
    }

    /// The worker the test leaves running, and what it keeps, are not the leak; the forgotten
    /// block is.
    #[leakcheck::test]
    fn leak_beside_a_worker_left_running() {
        accuracy_fixture::leak_beside_a_worker_left_running();
    }

    /// The caught panic's message in libtest's capture is not the leak; the forgotten block is.
    #[leakcheck::test]
    fn leak_beside_a_caught_panic() {
        accuracy_fixture::leak_beside_a_caught_panic();
    }

    /// Reported like valgrind: one node definitely lost, the rest of the cycle indirectly.
    #[leakcheck::test]
    fn rc_cycle() {
        accuracy_fixture::rc_cycle();
    }

    #[leakcheck::test]
    fn arc_cycle() {
        accuracy_fixture::arc_cycle();
    }

    #[leakcheck::test]
    fn leaked_linked_list() {
        accuracy_fixture::leak_linked_list();
    }
}

/// Leaks on threads the test starts belong to the test, under either runner.
mod threads {
    #[leakcheck::test]
    fn leak_in_std_thread_spawn_joined() {
        accuracy_fixture::leak_in_spawned_thread();
    }

    #[leakcheck::test]
    fn leak_in_thread_scope() {
        accuracy_fixture::leak_in_scoped_thread();
    }

    #[leakcheck::test]
    fn leak_in_thread_builder() {
        accuracy_fixture::leak_in_builder_thread();
    }

    #[leakcheck::test]
    fn leak_in_thread_started_by_a_spawned_thread() {
        accuracy_fixture::leak_in_grandchild_thread();
    }

    /// A thread no test started (a pool started before `main`) runs the test's leaking job.
    /// When the test runs alone (nextest, `--test-threads=1`) that thread's allocations are
    /// the test's; beside other tests they cannot be told from theirs, and are no one's.
    #[leakcheck::test]
    fn leak_in_a_job_on_a_pool_started_before_main() {
        accuracy_fixture::leak_in_a_job_on_a_pool_started_before_main();
    }
}

/// `#[tokio::test(flavor = "multi_thread")]`: the runtime is built and dropped inside the
/// check, its worker threads belong to the test.
mod tokio_runtime {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[leakcheck::leakcheck]
    async fn leak_in_a_spawned_task() {
        accuracy_fixture::leak_in_spawned_task().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[leakcheck::leakcheck]
    async fn leak_in_spawn_blocking() {
        accuracy_fixture::leak_in_blocking_task().await;
    }

    /// Tasks, timers, the blocking pool and the workers' own bookkeeping: the runtime frees
    /// all of it when it is dropped, so nothing may fail.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[leakcheck::leakcheck]
    async fn runtime_use_without_leaks() {
        let tasks: Vec<_> = (0..32u64)
            .map(|i| {
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(i % 4)).await;
                    let buffer = vec![i as u8; 512 + i as usize];
                    tokio::task::yield_now().await;
                    buffer.iter().map(|&b| b as u64).sum::<u64>()
                })
            })
            .collect();
        let mut total = 0;
        for task in tasks {
            total += task.await.unwrap();
        }
        let blocking = tokio::task::spawn_blocking(|| vec![1u8; 2048].len())
            .await
            .unwrap();
        assert!(total > 0);
        assert_eq!(blocking, 2048);
    }
}

/// `repeat = N`: a warm-up run, then N measured runs; only growth in every run fails.
mod growth {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};

    /// A cache keyed by request number: every call adds an entry. The table is sized up front
    /// (in the lazy initialisation, during the warm-up), so each run grows by exactly one
    /// 1,707-byte value.
    static SEEN_REQUESTS: LazyLock<Mutex<HashMap<u64, Box<[u8]>>>> =
        LazyLock::new(|| Mutex::new(HashMap::with_capacity(64)));

    fn handle_request_and_remember_it() {
        let mut seen = SEEN_REQUESTS.lock().unwrap();
        let id = seen.len() as u64;
        seen.insert(id, vec![0x17u8; 1_707].into_boxed_slice()); // site: growing_cache
    }

    #[leakcheck::leakcheck(repeat = 3)]
    fn cache_growing_every_call() {
        handle_request_and_remember_it();
    }

    static TEMPLATES: LazyLock<Mutex<HashMap<&'static str, Vec<u8>>>> =
        LazyLock::new(|| Mutex::new(HashMap::new()));

    fn render_with_cached_template() -> usize {
        let mut templates = TEMPLATES.lock().unwrap();
        let template = templates
            .entry("index")
            .or_insert_with(|| vec![b'<'; 1_717]);
        template.len()
    }

    /// The warm-up fills the cache; the measured runs find the entry and grow by nothing.
    #[leakcheck::leakcheck(repeat = 3)]
    fn cache_warmed_once_then_flat() {
        assert_eq!(render_with_cached_template(), 1_717);
    }
}

/// `reachable = "fail"`, and reachability through a cache an earlier check created.
mod reachable {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};

    /// Sized while it initialises (not counted), so the only block the body adds is the value.
    static SESSIONS: LazyLock<Mutex<HashMap<u32, Box<[u8]>>>> =
        LazyLock::new(|| Mutex::new(HashMap::with_capacity(16)));

    #[leakcheck::leakcheck(reachable = "fail")]
    fn global_mutex_hashmap_cache_with_reachable_fail() {
        let session = vec![0x18u8; 1_808].into_boxed_slice(); // site: reachable_fail_cache
        SESSIONS.lock().unwrap().insert(1, session);
    }

    /// Created empty; `ensure_shared_cache` gives it room inside a check, so the table is a
    /// block that check leaves reachable.
    static SHARED: LazyLock<Mutex<HashMap<u32, Box<[u8]>>>> =
        LazyLock::new(|| Mutex::new(HashMap::new()));

    fn ensure_shared_cache() {
        SHARED.lock().unwrap().reserve(64);
    }

    /// Under `cargo test` one test often creates a cache and a later one only inserts into it:
    /// the new entry is then pointed to only from the earlier test's table. Both steps run
    /// here as two checks, in this order, so the case is the same under either runner and in
    /// any test order. The second check must see the entry as reachable through the table the
    /// first one left behind.
    #[test]
    fn cache_created_by_one_check_and_inserted_into_by_a_later_one() {
        let created = leakcheck::check(ensure_shared_cache);
        assert!(created.is_clean(), "{created}");
        let inserted = leakcheck::check(|| {
            let entry = vec![0x19u8; 1_909].into_boxed_slice(); // site: cross_check_insert
            let mut shared = SHARED.lock().unwrap();
            let capacity = shared.capacity();
            shared.insert(9, entry);
            // The point of the case: the table was not re-allocated by the insert.
            assert_eq!(shared.capacity(), capacity);
        });
        assert!(inserted.is_clean(), "{inserted}");
    }
}

/// Deliberate leaks: `leakcheck::ignore` and `leakcheck::ignoring()`.
mod intentional {
    use std::hint::black_box;

    /// A configuration leaked on purpose to get a `&'static`.
    #[derive(Debug)]
    struct Config {
        name: String,
        retries: u32,
    }

    #[leakcheck::test]
    fn ignore_box_leak_of_a_static_config() {
        let config: &'static Config = leakcheck::ignore(|| {
            Box::leak(Box::new(Config {
                name: "production".to_owned(),
                retries: 3,
            }))
        });
        assert_eq!((config.name.as_str(), config.retries), ("production", 3));
    }

    #[leakcheck::test]
    fn ignore_returns_the_closures_value() {
        let len = leakcheck::ignore(|| {
            let buffer = black_box(vec![0x31u8; 3_101]);
            let len = buffer.len();
            std::mem::forget(buffer);
            len
        });
        assert_eq!(len, 3_101);
    }

    #[leakcheck::test]
    fn ignoring_guard_covers_a_region() {
        let _ignoring = leakcheck::ignoring();
        let registry: &'static mut Vec<String> = Box::leak(Box::new(Vec::new()));
        registry.extend((0..10).map(|i| format!("plugin-{i}")));
        std::mem::forget(black_box(vec![0u8; 3_111]));
        assert_eq!(registry.len(), 10);
    }

    /// Only what the closure allocates is excused: the leak after it still fails the test.
    #[leakcheck::test]
    fn leak_outside_ignore_still_fails() {
        leakcheck::ignore(|| std::mem::forget(black_box(vec![0u8; 3_121])));
        std::mem::forget(black_box(vec![0x32u8; 3_202])); // site: outside_ignore
    }

    /// The guard excuses nothing after it is dropped.
    #[leakcheck::test]
    fn leak_after_ignoring_guard_is_dropped() {
        let ignoring = leakcheck::ignoring();
        std::mem::forget(black_box(vec![0u8; 3_131]));
        drop(ignoring);
        std::mem::forget(black_box(vec![0x33u8; 3_303])); // site: after_guard
    }
}
