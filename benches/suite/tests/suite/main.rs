//! The benchmark suite: ~160 ordinary, allocation-heavy tests in one integration-test binary.
//!
//! Built plainly, these are `#[test]`s on the System allocator. With `--features checked`
//! every test also carries `#[leakcheck::leakcheck]` (each test is written
//! `#[test] #[cfg_attr(feature = "checked", leakcheck::leakcheck)]`, or the same under
//! `#[tokio::test]`) and the leakcheck allocator is installed, so the two builds run identical
//! bodies and differ only by leak checking. `scripts/bench-suite` times both.

#[cfg(feature = "checked")]
#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

mod collections;
mod graphs;
mod json;
mod parsing;
mod services;
mod sorting;
mod text;
mod trees;

/// Tells `scripts/bench-suite` which stack walker leakcheck chose (it runs this test alone
/// with `BENCH_SUITE_INFO=<file>`); a no-op otherwise, and in the plain build.
#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn zz_bench_info() {
    if let Some(path) = std::env::var_os("BENCH_SUITE_INFO") {
        #[cfg(feature = "checked")]
        let info = format!("unwinder\t{}\n", leakcheck::__private::unwinder());
        #[cfg(not(feature = "checked"))]
        let info = String::from("unwinder\tnone\n");
        std::fs::write(path, info).expect("BENCH_SUITE_INFO is writable");
    }
}
