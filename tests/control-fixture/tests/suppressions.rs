//! Leaks that suppression files match by function name, module path and source file.
//! `tests/control.rs` in the root package runs this binary with and without
//! `LEAKCHECK_SUPPRESSIONS` and with `leakcheck.supp` found or not, and asserts each verdict
//! and what each report says.

use std::hint::black_box;

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

#[leakcheck::test]
fn by_function_name() {
    control_fixture::leak_here(310);
}

/// Two stacks (two call lines) that one module-path pattern matches.
#[leakcheck::test]
fn by_module_path() {
    control_fixture::cache::remember(510);
    control_fixture::cache::remember(510);
}

#[leakcheck::test]
fn by_source_file() {
    control_fixture::generated::table(710);
}

/// Three suppressed leaks and one that is not.
#[leakcheck::test]
fn partly_suppressed() {
    control_fixture::leak_here(320);
    control_fixture::cache::remember(520);
    control_fixture::generated::table(720);
    std::mem::forget(black_box(vec![0u8; 64]));
}

/// Suppressed by the fixture's own `leakcheck.supp`, when that file is the one in use.
#[leakcheck::test]
fn discovered_file_suppresses() {
    control_fixture::discovered::leak(400);
}

#[leakcheck::test]
fn clean() {
    drop(black_box(vec![0u8; 4096]));
}
