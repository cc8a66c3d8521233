//! Allocator overhead: each benchmark thread runs its loop inside its own `leakcheck::check`.
//!
//! One binary for three rows of `scripts/bench`: `LEAKCHECK_BACKTRACE=0` (stacks off), and
//! stacks on built with and without `RUSTFLAGS="-C force-frame-pointers=yes"`. It prints the
//! stack walker leakcheck settled on, so a row cannot claim frame pointers it did not use.
//! Targets (x System): stacks off <= 3 (1 thread) / 4 (2 threads); stacks on with frame
//! pointers <= 10 / 12; without them <= 50.

#[path = "common/workload.rs"]
mod workload;

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

fn checked(body: &mut dyn FnMut()) {
    let report = leakcheck::check(body);
    assert!(
        report.is_clean(),
        "the benchmark workload leaked:\n{report}"
    );
}

fn main() {
    // The first check reads LEAKCHECK_BACKTRACE and calibrates the stack walker: do it before
    // anything is timed, and name the variant after what it found.
    checked(&mut || drop(std::hint::black_box(Box::new(0u64))));
    let stacks = std::env::var("LEAKCHECK_BACKTRACE").map_or(true, |v| v != "0");
    let unwinder = leakcheck::__private::unwinder();
    let label = if stacks {
        format!("leakcheck-check-stacks-{unwinder}")
    } else {
        "leakcheck-check-no-stacks".into()
    };
    println!(
        "bench-info\tunwinder\t{}",
        if stacks { unwinder } else { "none" }
    );
    workload::main(&label, Some(checked));
}
