//! Tests without `#[leakcheck]`: under `LEAKCHECK_ALL_TESTS=1` each is checked as if it carried
//! it. The root package's `tests/all_tests.rs` knows which leak, how much and where: names,
//! sizes and the allocating expressions here are part of what it checks.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{LazyLock, Mutex, OnceLock};

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

// ---- leaking ----

#[test]
fn forgotten_vec() {
    std::mem::forget(std::hint::black_box(vec![0u8; 1024]));
}

#[test]
fn leaked_box() {
    let leaked: &'static mut [u8] =
        Box::leak(std::hint::black_box(vec![7u8; 2048]).into_boxed_slice());
    leaked[0] = 1;
}

#[test]
fn leak_in_helper() {
    all_tests_fixture::leak_here(3000);
}

struct Node {
    next: RefCell<Option<Rc<Node>>>,
    _payload: [u8; 200],
}

#[test]
fn rc_cycle() {
    let a = Rc::new(Node {
        next: RefCell::new(None),
        _payload: [1; 200],
    });
    let b = Rc::new(Node {
        next: RefCell::new(Some(a.clone())),
        _payload: [2; 200],
    });
    *a.next.borrow_mut() = Some(b);
}

#[test]
fn leak_in_spawned_thread() {
    std::thread::spawn(|| std::mem::forget(std::hint::black_box(vec![0u8; 4096])))
        .join()
        .unwrap();
}

mod nested {
    #[test]
    fn deep_leaking() {
        std::mem::forget(std::hint::black_box(vec![0u8; 1500]));
    }
}

// ---- clean ----

#[test]
fn allocates_and_frees() {
    let v: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    assert_eq!(v.len(), 100);
}

#[test]
fn prints() {
    println!("a line on stdout");
    eprintln!("a line on stderr");
    for i in 0..100 {
        println!("line {i} of a hundred, long enough to grow the capture buffer a few times");
    }
}

#[test]
fn panics_and_catches() {
    let caught = std::panic::catch_unwind(|| panic!("caught on purpose: {}", 42));
    assert!(caught.is_err());
}

static LAZY: LazyLock<Vec<String>> = LazyLock::new(|| vec!["lazy".to_owned(); 10]);
static ONCE: OnceLock<Box<[u8]>> = OnceLock::new();
static REGISTRY: Mutex<Vec<Box<u64>>> = Mutex::new(Vec::new());
thread_local! {
    static LOCAL: RefCell<Vec<u8>> = RefCell::new(vec![0; 512]);
}

#[test]
fn initialises_lazies() {
    assert_eq!(LAZY.len(), 10);
    ONCE.get_or_init(|| vec![0u8; 300].into_boxed_slice());
    REGISTRY.lock().unwrap().push(Box::new(9));
    LOCAL.with(|l| l.borrow_mut().push(1));
}

#[test]
fn spawns_and_joins() {
    let handles: Vec<_> = (0..4)
        .map(|i| std::thread::spawn(move || vec![i; 1000].iter().sum::<i32>()))
        .collect();
    let total: i32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 6000);
    let mut data = vec![1u64; 100];
    std::thread::scope(|s| {
        for chunk in data.chunks_mut(25) {
            s.spawn(move || chunk.iter_mut().for_each(|x| *x += 1));
        }
    });
    assert!(data.iter().all(|&x| x == 2));
}

#[test]
fn returns_ok() -> Result<(), String> {
    let text = String::from("fine");
    if text.is_empty() {
        return Err(text);
    }
    Ok(())
}

#[test]
#[should_panic(expected = "expected panic")]
fn should_panic_clean() {
    let v = vec![1, 2, 3];
    panic!("expected panic after {}", v.len());
}

// A child forked from a test (here after earlier tests left blocks for the end of the run) is
// not the test runner: its exit reports nothing and keeps its own status. `libc::exit` runs the
// exit hooks without std's stdout lock, which another thread may have held at the fork.
#[test]
fn forks_a_child_that_exits() {
    // SAFETY: the child calls only `exit`, as a forked child of a threaded process may.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: ends the child, running its exit hooks.
        unsafe { libc::exit(7) };
    }
    assert!(pid > 0, "fork failed");
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is valid for writes.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 7,
        "the child's status must be its own: {status:#x}"
    );
}

// Fails, and leaks nothing: its failure is libtest's, with no leak report.
#[test]
fn fails_without_leaking() {
    let v = vec![1, 2, 3];
    assert_eq!(v.len(), 4, "fails on purpose");
}

// More tests than one block of libtest's result channel holds (31 results), each printing:
// the runner's own blocks on the test threads must never count.
macro_rules! printing_tests {
    ($($name:ident)*) => {$(
        #[test]
        fn $name() {
            println!("{} prints a line", stringify!($name));
        }
    )*};
}

mod many {
    printing_tests!(
        p00 p01 p02 p03 p04 p05 p06 p07 p08 p09 p10 p11 p12 p13 p14 p15 p16 p17 p18 p19
        p20 p21 p22 p23 p24 p25 p26 p27 p28 p29 p30 p31 p32 p33 p34 p35 p36 p37 p38 p39
    );
}

// ---- with the attribute: its own options and in-test verdict ----

#[leakcheck::leakcheck(allow_bytes = 100)]
fn annotated_within_allowance() {
    std::mem::forget(std::hint::black_box(vec![0u8; 64]));
}

#[leakcheck::leakcheck]
fn annotated_leaking() {
    std::mem::forget(std::hint::black_box(vec![0u8; 777]));
}
