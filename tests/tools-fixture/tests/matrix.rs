//! The test-tool matrix: `#[leakcheck]` beside each tool people write tests with, in every order
//! that works. Each combination has a clean test that really uses the tool (spawns tasks, logs,
//! takes keys, runs generated cases), which must pass, and a test that leaks, which must fail.
//!
//! The root package's `tests/tools.rs` runs this binary under `cargo test` at 1, 2 and 8
//! threads and under `cargo nextest run`. The test names, the byte counts and the
//! `// site: NAME` markers are its contract: each leaking test leaks one block (one per case for
//! the rstest cases) of a size no other test leaks, allocated on the line its marker ends, on the
//! test's own thread, so that its verdict is exact under every runner.
//!
//! Each lost block is made in an `#[inline(never)]` helper whose frame `scrub_the_stack_below`
//! overwrites right after, before the tool's work: a conservative scan (leakcheck's, valgrind's,
//! LeakSanitizer's) counts a block reachable when any word it reads points into it, and a copy
//! of the lost pointer left in that dead frame could be read again by a later frame or copied
//! into a live heap block by a move. `black_box` keeps release builds from removing the leaks.

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

use std::hint::black_box;

/// Overwrites 8 KiB of the stack below the caller's frame, where a leaking helper's frame was
/// (see the module's header).
#[inline(never)]
fn scrub_the_stack_below() {
    black_box(&mut [0usize; 1024]);
}

/// rstest: `#[case]`s and a `#[fixture]`, with `#[rstest]` above and below `#[leakcheck]`.
/// The fixture's value is built before the check (rstest resolves arguments before calling the
/// test) and dropped inside it.
mod rstest_cases {
    use rstest::{fixture, rstest};
    use std::hint::black_box;

    #[fixture]
    fn words() -> Vec<String> {
        (0..32).map(|i| format!("word-{i}")).collect()
    }

    #[rstest]
    #[case(1)]
    #[case(7)]
    #[leakcheck::leakcheck]
    fn clean_rstest_above(words: Vec<String>, #[case] n: usize) {
        let joined: Vec<String> = words.iter().map(|w| w.repeat(n)).collect();
        assert_eq!(black_box(joined).len(), 32);
    }

    #[leakcheck::leakcheck]
    #[rstest]
    #[case(2)]
    #[case(3)]
    fn clean_rstest_below(words: Vec<String>, #[case] n: usize) {
        let longest = words.iter().map(|w| w.len() * n).max();
        assert!(black_box(longest).is_some());
    }

    #[inline(never)]
    fn lose_case(bytes: usize) {
        std::mem::forget(black_box(vec![0x11u8; bytes])); // site: rstest_case
    }

    #[rstest]
    #[case(1_101)]
    #[case(1_102)]
    #[leakcheck::leakcheck]
    fn leak_rstest_above(words: Vec<String>, #[case] bytes: usize) {
        lose_case(bytes);
        crate::scrub_the_stack_below();
        assert_eq!(black_box(&words).len(), 32);
    }

    #[inline(never)]
    fn lose_below() {
        std::mem::forget(black_box(vec![0x12u8; 1_203])); // site: rstest_below
    }

    #[leakcheck::leakcheck]
    #[rstest]
    #[case(5)]
    fn leak_rstest_below(words: Vec<String>, #[case] n: usize) {
        lose_below();
        crate::scrub_the_stack_below();
        assert_eq!(black_box(&words).len() * n, 160);
    }
}

/// test-log (its `trace` feature: a `tracing_subscriber` fmt subscriber installed in every
/// test): sync tests with `#[test_log::test]` above and below `#[leakcheck]`, and
/// `#[test_log::test(tokio::test)]` in both orders.
mod test_log_tests {
    use std::hint::black_box;

    fn log_some_events(n: usize) -> usize {
        let mut sum = 0;
        for i in 0..n {
            tracing::info!(i, "an event from a test-log test");
            tracing::debug!(?i, "a debug event, filtered out by default");
            sum += i;
        }
        sum
    }

    #[test_log::test]
    #[leakcheck::leakcheck]
    fn clean_test_log_above() {
        assert_eq!(log_some_events(black_box(10)), 45);
    }

    #[leakcheck::leakcheck]
    #[test_log::test]
    fn clean_test_log_below() {
        let span = tracing::info_span!("a span", test = "below");
        let _entered = span.enter();
        assert_eq!(log_some_events(black_box(5)), 10);
    }

    #[test_log::test(tokio::test)]
    #[leakcheck::leakcheck]
    async fn clean_test_log_tokio_above() {
        let task = tokio::spawn(async { log_some_events(black_box(4)) });
        assert_eq!(task.await.unwrap(), 6);
    }

    #[leakcheck::leakcheck]
    #[test_log::test(tokio::test)]
    async fn clean_test_log_tokio_below() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move { tx.send(log_some_events(black_box(3))).unwrap() });
        assert_eq!(rx.await.unwrap(), 3);
    }

    #[inline(never)]
    fn lose_above() {
        std::mem::forget(black_box(vec![0x21u8; 2_101])); // site: test_log_above
    }

    #[test_log::test]
    #[leakcheck::leakcheck]
    fn leak_test_log_above() {
        lose_above();
        crate::scrub_the_stack_below();
        log_some_events(black_box(3));
    }

    #[inline(never)]
    fn lose_below() {
        std::mem::forget(black_box(vec![0x22u8; 2_202])); // site: test_log_below
    }

    #[leakcheck::leakcheck]
    #[test_log::test]
    fn leak_test_log_below() {
        lose_below();
        crate::scrub_the_stack_below();
        log_some_events(black_box(3));
    }

    #[inline(never)]
    fn lose_tokio_above() {
        std::mem::forget(black_box(vec![0x23u8; 2_303])); // site: test_log_tokio_above
    }

    #[test_log::test(tokio::test)]
    #[leakcheck::leakcheck]
    async fn leak_test_log_tokio_above() {
        lose_tokio_above();
        crate::scrub_the_stack_below();
        let task = tokio::spawn(async { log_some_events(black_box(2)) });
        assert_eq!(task.await.unwrap(), 1);
    }

    #[inline(never)]
    fn lose_tokio_below() {
        std::mem::forget(black_box(vec![0x24u8; 2_404])); // site: test_log_tokio_below
    }

    #[leakcheck::leakcheck]
    #[test_log::test(tokio::test)]
    async fn leak_test_log_tokio_below() {
        lose_tokio_below();
        crate::scrub_the_stack_below();
        let task = tokio::spawn(async { log_some_events(black_box(2)) });
        assert_eq!(task.await.unwrap(), 1);
    }
}

/// tokio: `#[tokio::test]` (current-thread) and `flavor = "multi_thread"`, each above and below
/// `#[leakcheck]`.
mod tokio_tests {
    use std::hint::black_box;

    async fn spawn_and_join(tasks: usize) -> usize {
        let handles: Vec<_> = (0..tasks)
            .map(|i| {
                tokio::spawn(async move {
                    tokio::task::yield_now().await;
                    black_box(vec![i; 16]).iter().sum::<usize>()
                })
            })
            .collect();
        let mut total = 0;
        for handle in handles {
            total += handle.await.unwrap();
        }
        total
    }

    #[tokio::test]
    #[leakcheck::leakcheck]
    async fn clean_current_thread_above() {
        assert_eq!(spawn_and_join(black_box(4)).await, 16 * 6);
    }

    #[leakcheck::leakcheck]
    #[tokio::test]
    async fn clean_current_thread_below() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            for i in 0..10u32 {
                tx.send(black_box(vec![i; 8])).await.unwrap();
            }
        });
        let mut received = 0;
        while let Some(v) = rx.recv().await {
            received += v.len();
        }
        assert_eq!(received, 80);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[leakcheck::leakcheck]
    async fn clean_multi_thread_above() {
        assert_eq!(spawn_and_join(black_box(8)).await, 16 * 28);
    }

    #[leakcheck::leakcheck]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clean_multi_thread_below() {
        let blocking = tokio::task::spawn_blocking(|| black_box(vec![1u8; 300]).len());
        assert_eq!(spawn_and_join(black_box(3)).await + blocking.await.unwrap(), 48 + 300);
    }

    #[inline(never)]
    fn lose_current_above() {
        std::mem::forget(black_box(vec![0x31u8; 3_101])); // site: tokio_current_above
    }

    #[tokio::test]
    #[leakcheck::leakcheck]
    async fn leak_current_thread_above() {
        lose_current_above();
        crate::scrub_the_stack_below();
        assert_eq!(spawn_and_join(black_box(2)).await, 16);
    }

    #[inline(never)]
    fn lose_current_below() {
        std::mem::forget(black_box(vec![0x32u8; 3_202])); // site: tokio_current_below
    }

    #[leakcheck::leakcheck]
    #[tokio::test]
    async fn leak_current_thread_below() {
        lose_current_below();
        crate::scrub_the_stack_below();
        assert_eq!(spawn_and_join(black_box(2)).await, 16);
    }

    #[inline(never)]
    fn lose_multi_above() {
        std::mem::forget(black_box(vec![0x33u8; 3_303])); // site: tokio_multi_above
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[leakcheck::leakcheck]
    async fn leak_multi_thread_above() {
        lose_multi_above();
        crate::scrub_the_stack_below();
        assert_eq!(spawn_and_join(black_box(2)).await, 16);
    }

    #[inline(never)]
    fn lose_multi_below() {
        std::mem::forget(black_box(vec![0x34u8; 3_404])); // site: tokio_multi_below
    }

    #[leakcheck::leakcheck]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leak_multi_thread_below() {
        lose_multi_below();
        crate::scrub_the_stack_below();
        assert_eq!(spawn_and_join(black_box(2)).await, 16);
    }
}

/// async-std: `#[async_std::test]` above and below `#[leakcheck]`; tasks run on its global
/// executor's threads, which the first test to spawn starts.
mod async_std_tests {
    use std::hint::black_box;

    async fn spawn_and_join(tasks: usize) -> usize {
        let handles: Vec<_> = (0..tasks)
            .map(|i| {
                async_std::task::spawn(async move {
                    async_std::task::yield_now().await;
                    black_box(vec![i; 16]).iter().sum::<usize>()
                })
            })
            .collect();
        let mut total = 0;
        for handle in handles {
            total += handle.await;
        }
        total
    }

    #[async_std::test]
    #[leakcheck::leakcheck]
    async fn clean_async_std_above() {
        assert_eq!(spawn_and_join(black_box(4)).await, 16 * 6);
    }

    #[leakcheck::leakcheck]
    #[async_std::test]
    async fn clean_async_std_below() {
        let (tx, rx) = async_std::channel::bounded(2);
        async_std::task::spawn(async move {
            for i in 0..10u32 {
                tx.send(black_box(vec![i; 8])).await.unwrap();
            }
        });
        let mut received = 0;
        while let Ok(v) = rx.recv().await {
            received += v.len();
        }
        assert_eq!(received, 80);
    }

    #[inline(never)]
    fn lose_above() {
        std::mem::forget(black_box(vec![0x41u8; 4_101])); // site: async_std_above
    }

    #[async_std::test]
    #[leakcheck::leakcheck]
    async fn leak_async_std_above() {
        lose_above();
        crate::scrub_the_stack_below();
        assert_eq!(spawn_and_join(black_box(2)).await, 16);
    }

    #[inline(never)]
    fn lose_below() {
        std::mem::forget(black_box(vec![0x42u8; 4_202])); // site: async_std_below
    }

    #[leakcheck::leakcheck]
    #[async_std::test]
    async fn leak_async_std_below() {
        lose_below();
        crate::scrub_the_stack_below();
        assert_eq!(spawn_and_join(black_box(2)).await, 16);
    }
}

/// smol: `smol::block_on` in a checked test, with a local executor's tasks, and `smol::spawn`
/// onto smol's global executor (its threads start on first use).
mod smol_tests {
    use std::hint::black_box;

    #[leakcheck::test]
    fn clean_block_on_local_executor() {
        let executor = smol::LocalExecutor::new();
        let total = smol::block_on(executor.run(async {
            let tasks: Vec<_> = (0..4usize)
                .map(|i| executor.spawn(async move { black_box(vec![i; 16]).iter().sum::<usize>() }))
                .collect();
            let mut total = 0;
            for task in tasks {
                total += task.await;
            }
            total
        }));
        assert_eq!(total, 16 * 6);
    }

    #[leakcheck::test]
    fn clean_smol_spawn() {
        let total = smol::block_on(async {
            let (tx, rx) = smol::channel::bounded(2);
            smol::spawn(async move {
                for i in 0..10u32 {
                    tx.send(black_box(vec![i; 8])).await.unwrap();
                }
            })
            .detach();
            let mut received = 0;
            while let Ok(v) = rx.recv().await {
                received += v.len();
            }
            received
        });
        assert_eq!(total, 80);
    }

    #[inline(never)]
    fn lose_block_on() {
        std::mem::forget(black_box(vec![0x51u8; 5_101])); // site: smol_block_on
    }

    #[leakcheck::test]
    fn leak_block_on() {
        lose_block_on();
        crate::scrub_the_stack_below();
        let n = smol::block_on(async { black_box(vec![1u8; 64]).len() });
        assert_eq!(n, 64);
    }

    #[inline(never)]
    fn lose_spawn() {
        std::mem::forget(black_box(vec![0x52u8; 5_202])); // site: smol_spawn
    }

    #[leakcheck::test]
    fn leak_smol_spawn() {
        lose_spawn();
        crate::scrub_the_stack_below();
        let n = smol::block_on(smol::spawn(async { black_box(vec![1u8; 64]).len() }));
        assert_eq!(n, 64);
    }
}

/// futures: `futures::executor::block_on`, and a `LocalPool` running spawned futures.
mod futures_tests {
    use futures::task::LocalSpawnExt;
    use std::hint::black_box;

    #[leakcheck::test]
    fn clean_block_on_join() {
        let (a, b) = futures::executor::block_on(async {
            futures::join!(async { black_box(vec![1u8; 100]).len() }, async {
                black_box(String::from("joined")).len()
            })
        });
        assert_eq!(a + b, 106);
    }

    #[leakcheck::test]
    fn clean_local_pool_spawn() {
        let mut pool = futures::executor::LocalPool::new();
        let spawner = pool.spawner();
        let handles: Vec<_> = (0..4usize)
            .map(|i| {
                spawner
                    .spawn_local_with_handle(async move { black_box(vec![i; 16]).iter().sum::<usize>() })
                    .unwrap()
            })
            .collect();
        let total: usize = pool.run_until(futures::future::join_all(handles)).iter().sum();
        assert_eq!(total, 16 * 6);
    }

    #[inline(never)]
    fn lose_block_on() {
        std::mem::forget(black_box(vec![0x61u8; 6_101])); // site: futures_block_on
    }

    #[leakcheck::test]
    fn leak_block_on() {
        lose_block_on();
        crate::scrub_the_stack_below();
        let n = futures::executor::block_on(async { black_box(vec![1u8; 64]).len() });
        assert_eq!(n, 64);
    }
}

/// proptest: `proptest! { #[test] #[leakcheck] fn .. }`; the check wraps the whole run of
/// generated cases. The leaking property loses its block in the first case only.
mod proptest_tests {
    use proptest::prelude::*;
    use std::hint::black_box;
    use std::sync::atomic::{AtomicBool, Ordering};

    static LOST: AtomicBool = AtomicBool::new(false);

    #[inline(never)]
    fn lose_once() {
        if !LOST.swap(true, Ordering::Relaxed) {
            std::mem::forget(black_box(vec![0x71u8; 7_101])); // site: proptest
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        #[leakcheck::leakcheck]
        fn clean_proptest(v in proptest::collection::vec(any::<u16>(), 0..64)) {
            let mut sorted = black_box(v.clone());
            sorted.sort_unstable();
            prop_assert_eq!(sorted.len(), v.len());
        }

        #[test]
        #[leakcheck::leakcheck]
        fn leak_proptest(x in 0u32..1000) {
            lose_once();
            crate::scrub_the_stack_below();
            prop_assert!(black_box(vec![x; 4]).len() == 4);
        }
    }
}

/// quickcheck: `#[quickcheck]` above `#[leakcheck]` (the order that works: it generates the
/// test that calls the property), and `quickcheck! { #[leakcheck] fn .. }`. The leaking
/// properties lose their block in the first case only.
mod quickcheck_tests {
    use quickcheck_macros::quickcheck;
    use std::hint::black_box;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[quickcheck]
    #[leakcheck::leakcheck]
    fn clean_quickcheck_attribute(v: Vec<u16>) -> bool {
        let mut reversed = black_box(v.clone());
        reversed.reverse();
        reversed.reverse();
        reversed == v
    }

    static LOST_ATTRIBUTE: AtomicBool = AtomicBool::new(false);

    #[inline(never)]
    fn lose_attribute() {
        if !LOST_ATTRIBUTE.swap(true, Ordering::Relaxed) {
            std::mem::forget(black_box(vec![0x81u8; 8_101])); // site: quickcheck_attribute
        }
    }

    #[quickcheck]
    #[leakcheck::leakcheck]
    fn leak_quickcheck_attribute(x: u32) -> bool {
        lose_attribute();
        crate::scrub_the_stack_below();
        black_box(vec![x; 4]).len() == 4
    }

    static LOST_MACRO: AtomicBool = AtomicBool::new(false);

    #[inline(never)]
    fn lose_macro() {
        if !LOST_MACRO.swap(true, Ordering::Relaxed) {
            std::mem::forget(black_box(vec![0x82u8; 8_202])); // site: quickcheck_macro
        }
    }

    quickcheck::quickcheck! {
        #[leakcheck::leakcheck]
        fn clean_quickcheck_macro(s: String) -> bool {
            black_box(s.clone()).chars().count() == s.chars().count()
        }

        #[leakcheck::leakcheck]
        fn leak_quickcheck_macro(x: u32) -> bool {
            lose_macro();
            crate::scrub_the_stack_below();
            black_box(vec![x; 4]).len() == 4
        }
    }
}

/// serial_test: `#[serial(key)]` and `#[parallel]`, above and below `#[leakcheck]`. serial_test
/// fills its global map of locks lazily, per key, from whichever test takes the key first.
mod serial_tests {
    use serial_test::{parallel, serial};
    use std::hint::black_box;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Only tests holding `matrix_key` touch it: a second holder at once would be a bug.
    static HOLDERS: AtomicUsize = AtomicUsize::new(0);

    fn hold_the_key() {
        assert_eq!(HOLDERS.fetch_add(1, Ordering::SeqCst), 0, "two holders of one key");
        let work: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        std::thread::yield_now();
        assert_eq!(black_box(work).len(), 50);
        HOLDERS.fetch_sub(1, Ordering::SeqCst);
    }

    #[serial(matrix_key)]
    #[leakcheck::test]
    fn clean_serial_above() {
        hold_the_key();
    }

    #[leakcheck::test]
    #[serial(matrix_key)]
    fn clean_serial_below() {
        hold_the_key();
    }

    #[serial(other_key)]
    #[leakcheck::test]
    fn clean_serial_other_key() {
        assert_eq!(black_box(vec![3u8; 30]).len(), 30);
    }

    #[parallel(matrix_key)]
    #[leakcheck::test]
    fn clean_parallel_above() {
        assert_eq!(HOLDERS.load(Ordering::SeqCst), 0, "a serial test ran beside #[parallel]");
        assert_eq!(black_box(vec![4u8; 40]).len(), 40);
    }

    #[leakcheck::test]
    #[parallel(matrix_key)]
    fn clean_parallel_below() {
        assert_eq!(HOLDERS.load(Ordering::SeqCst), 0, "a serial test ran beside #[parallel]");
        assert_eq!(black_box(vec![5u8; 50]).len(), 50);
    }

    #[inline(never)]
    fn lose_serial() {
        std::mem::forget(black_box(vec![0x91u8; 9_101])); // site: serial_key
    }

    #[serial(matrix_key)]
    #[leakcheck::test]
    fn leak_serial() {
        lose_serial();
        crate::scrub_the_stack_below();
        hold_the_key();
    }

    #[inline(never)]
    fn lose_serial_new_key() {
        std::mem::forget(black_box(vec![0x92u8; 9_202])); // site: serial_new_key
    }

    /// The only test with this key: its lock is made inside this test's check.
    #[leakcheck::test]
    #[serial(key_of_one_test)]
    fn leak_serial_new_key() {
        lose_serial_new_key();
        crate::scrub_the_stack_below();
        assert_eq!(black_box(vec![6u8; 60]).len(), 60);
    }

    #[inline(never)]
    fn lose_parallel() {
        std::mem::forget(black_box(vec![0x93u8; 9_303])); // site: parallel
    }

    #[parallel(matrix_key)]
    #[leakcheck::test]
    fn leak_parallel() {
        lose_parallel();
        crate::scrub_the_stack_below();
        assert_eq!(HOLDERS.load(Ordering::SeqCst), 0, "a serial test ran beside #[parallel]");
    }
}

/// tracing-subscriber: every test sets up a fmt subscriber (`fmt().try_init()`, which fails
/// quietly when an earlier test of the process installed one) and logs.
mod tracing_tests {
    use std::hint::black_box;

    fn set_up_and_log(events: usize) {
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        for i in 0..events {
            tracing::info!(i, text = %format!("event {i}"), "logged from a checked test");
        }
    }

    #[leakcheck::test]
    fn clean_fmt_try_init() {
        set_up_and_log(black_box(10));
    }

    #[leakcheck::test]
    fn clean_fmt_try_init_in_a_thread() {
        std::thread::spawn(|| set_up_and_log(black_box(5)))
            .join()
            .unwrap();
        set_up_and_log(black_box(5));
    }

    #[leakcheck::test]
    fn clean_fmt_try_init_with_a_span() {
        set_up_and_log(1);
        let span = tracing::info_span!("request", id = black_box(42));
        let _entered = span.enter();
        tracing::warn!("inside a span");
    }

    #[inline(never)]
    fn lose() {
        std::mem::forget(black_box(vec![0xA1u8; 10_101])); // site: tracing
    }

    #[leakcheck::test]
    fn leak_fmt_try_init() {
        lose();
        crate::scrub_the_stack_below();
        set_up_and_log(black_box(3));
    }
}
