//! Checked tests whose failures the root package's `tests/reports.rs` reads: where a failure is
//! located (a plain test, a test in a `#[leakcheck] mod`), what a report shows of a stack deeper
//! than it prints in full (with std's `catch_unwind` inside) and of one deeper than a capture
//! keeps whole, and that leaks made while a panic is handled (in a `Display` of the panic
//! message, in a `Drop` while unwinding) are caught.
//!
//! Each leaking test leaks a byte count no other test uses; e2e finds the `file:line:column`
//! each check expects by searching this file for text that occurs once (the marked comments and
//! the test names). `black_box` keeps release builds from removing the allocations.

use std::hint::black_box;

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

#[leakcheck::test]
fn plain_leak() {
    std::mem::forget(black_box(vec![0u8; 1111])); // site: plain_leak
}

// The attribute on the module, the test further down: a failure is located at the test.
#[leakcheck::leakcheck]
mod in_module {
    use std::hint::black_box;

    fn helper_that_is_not_a_test() -> usize {
        3
    }

    #[test]
    fn clean_in_module() {
        assert_eq!(helper_that_is_not_a_test(), 3);
    }

    #[test]
    fn module_leak() {
        std::mem::forget(black_box(vec![0u8; 1112])); // site: module_leak
    }
}

/// Recurses `depth` times, then leaks `bytes` bytes: a stack deeper than a report shows in
/// full.
#[inline(never)]
fn deep(depth: usize, bytes: usize) -> usize {
    if depth == 0 {
        let block = black_box(vec![0u8; bytes]); // site: deep
        let len = block.len();
        std::mem::forget(block);
        return len;
    }
    // Not a tail call: every level keeps its frame.
    black_box(deep(depth - 1, bytes)) // call: deep
}

#[leakcheck::test]
fn deep_leak_inside_catch_unwind() {
    let leaked = std::panic::catch_unwind(|| deep(24, 1113)); // call: deep_leak_inside_catch_unwind
    assert_eq!(leaked.ok(), Some(1113));
}

// Deeper than a capture keeps whole: its innermost and outermost frames are kept.
#[leakcheck::test]
fn very_deep_leak() {
    assert_eq!(deep(150, 1116), 1116); // call: very_deep_leak
}

/// Leaks when dropped.
struct LeaksOnDrop;

impl Drop for LeaksOnDrop {
    fn drop(&mut self) {
        std::mem::forget(black_box(vec![0u8; 1114])); // site: LeaksOnDrop
    }
}

#[leakcheck::test]
fn leak_in_drop_while_unwinding() {
    let caught = std::panic::catch_unwind(|| {
        let _guard = LeaksOnDrop;
        panic!("a panic the test expects, unwinding through a guard");
    });
    assert!(caught.is_err());
}

/// Leaks when formatted.
struct LeaksWhenShown;

impl std::fmt::Display for LeaksWhenShown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::mem::forget(black_box(vec![0u8; 1115])); // site: LeaksWhenShown
        f.write_str("a value that leaks when shown")
    }
}

#[leakcheck::test]
fn leak_in_panic_message() {
    let caught = std::panic::catch_unwind(|| panic!("a panic the test expects: {}", LeaksWhenShown));
    assert!(caught.is_err());
}

#[leakcheck::test]
fn caught_panic_is_clean() {
    let caught = std::panic::catch_unwind(|| panic!("a panic the test expects"));
    assert!(caught.is_err());
}
