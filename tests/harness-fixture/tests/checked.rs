//! A `harness = false` target whose tests have known verdicts under `leakcheck::harness`; the
//! root package's `tests/harness.rs` lists them. Each leaking test leaks one block of a size
//! no other test uses, allocated on a line of its own.
// The registrations that `#[leakcheck]` emits must not trip this.
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::sync::{Condvar, Mutex};

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

// ---- plain tests ----

#[leakcheck::leakcheck]
fn clean_allocates_and_frees() {
    let v: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    assert_eq!(v.len(), 1000);
}

#[leakcheck::leakcheck]
fn forgotten_vec() {
    std::mem::forget(black_box(vec![0u8; 1024]));
}

#[leakcheck::leakcheck]
fn leak_in_helper() {
    harness_fixture::leak_here(3000);
}

#[leakcheck::leakcheck]
#[test]
fn test_attribute_below() {
    std::mem::forget(black_box(vec![0u8; 1202]));
}

/// Output is not captured by the harness, so printing leaves no capture buffer behind.
#[leakcheck::test]
fn prints_a_line() {
    eprintln!("prints_a_line says hello");
}

// ---- threads ----

#[leakcheck::leakcheck]
fn leak_in_spawned_thread() {
    std::thread::spawn(|| std::mem::forget(black_box(vec![0u8; 4096])))
        .join()
        .unwrap();
}

/// A worker thread started by `main` before any test, like a global thread pool: only
/// process-wide attribution gives what it allocates to the test that hands it work. A mutex
/// and a condition variable (which never allocate) hand it the job.
struct Pool {
    state: Mutex<State>,
    wake: Condvar,
}

struct State {
    job: Option<fn()>,
    done: bool,
}

static POOL: Pool = Pool {
    state: Mutex::new(State {
        job: None,
        done: false,
    }),
    wake: Condvar::new(),
};

fn start_pool() {
    std::thread::spawn(|| loop {
        let mut state = POOL.state.lock().unwrap();
        let job = loop {
            if let Some(job) = state.job.take() {
                break job;
            }
            state = POOL.wake.wait(state).unwrap();
        };
        drop(state);
        job();
        POOL.state.lock().unwrap().done = true;
        POOL.wake.notify_all();
    });
}

/// Runs `job` on the pool's thread and waits for it.
fn on_pool(job: fn()) {
    let mut state = POOL.state.lock().unwrap();
    *state = State {
        job: Some(job),
        done: false,
    };
    POOL.wake.notify_all();
    while !state.done {
        state = POOL.wake.wait(state).unwrap();
    }
}

#[leakcheck::leakcheck]
fn leak_in_pool_thread() {
    on_pool(|| std::mem::forget(black_box(vec![0u8; 2500])));
}

#[leakcheck::leakcheck]
fn clean_in_pool_thread() {
    on_pool(|| drop(black_box(vec![0u8; 2600])));
}

// ---- Result, should_panic, ignore ----

#[leakcheck::leakcheck]
fn result_ok_clean() -> Result<(), String> {
    let v = black_box(vec![1, 2, 3]);
    assert_eq!(v.len(), 3);
    Ok(())
}

#[leakcheck::leakcheck]
fn result_ok_leaking() -> Result<(), String> {
    std::mem::forget(black_box(vec![0u8; 5000]));
    Ok(())
}

#[leakcheck::leakcheck]
fn result_err() -> Result<(), String> {
    Err("the error of result_err".to_owned())
}

#[leakcheck::leakcheck]
#[should_panic(expected = "boom")]
fn should_panic_panics() {
    std::mem::forget(black_box(vec![0u8; 777]));
    panic!("a boom as expected");
}

#[leakcheck::leakcheck]
#[should_panic = "boom"]
fn should_panic_wrong_message() {
    panic!("a bang instead");
}

#[leakcheck::leakcheck]
#[should_panic]
fn should_panic_leaks_without_panic() {
    std::mem::forget(black_box(vec![0u8; 700]));
}

#[leakcheck::leakcheck]
#[ignore]
fn ignored_leaking() {
    std::mem::forget(black_box(vec![0u8; 6000]));
}

// ---- async ----

async fn async_work() -> usize {
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    let task = tokio::spawn(async { (0..100u32).map(|i| i.to_string()).collect::<Vec<_>>().len() });
    task.await.unwrap()
}

#[leakcheck::leakcheck]
#[tokio::test]
async fn tokio_below_leaking() {
    assert_eq!(async_work().await, 100);
    std::mem::forget(black_box(vec![0u8; 2002]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[leakcheck::leakcheck]
async fn tokio_above_clean() {
    assert_eq!(async_work().await, 100);
}

// ---- modules ----

mod nested {
    use std::hint::black_box;

    #[leakcheck::leakcheck]
    fn deep_clean() {
        drop(black_box(Box::new(7u64)));
    }

    #[leakcheck::leakcheck]
    fn deep_leaking() {
        std::mem::forget(black_box(vec![0u8; 1500]));
    }
}

fn main() {
    start_pool();
    leakcheck::harness::main();
}
