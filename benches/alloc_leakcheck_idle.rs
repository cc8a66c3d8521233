//! Allocator overhead: leakcheck installed, no check running anywhere (what every test that is
//! not `#[leakcheck]` pays). Target: within 10% of `alloc_passthrough`.
//!
//! With `LEAKCHECK_BENCH_AFTER_RETAINED=1` a check first fills a lazily created cache and
//! ends, leaving its blocks tracked as reachable, as in any test binary where an annotated test
//! touches a lazy static: from then on every free must find out whether its block is one of
//! them.

use std::sync::OnceLock;

#[path = "common/workload.rs"]
mod workload;

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

/// A small map of boxed values, like a registry a lazy static would hold.
static CACHE: OnceLock<std::collections::BTreeMap<u64, Box<[u8; 24]>>> = OnceLock::new();

fn main() {
    let retained = std::env::var_os("LEAKCHECK_BENCH_AFTER_RETAINED").is_some_and(|v| v == "1");
    if retained {
        let report = leakcheck::check(|| {
            CACHE.get_or_init(|| (0..64).map(|k| (k, Box::new([k as u8; 24]))).collect());
        });
        assert!(report.is_clean(), "a cache is not a leak:\n{report}");
    }
    workload::main(
        if retained {
            "leakcheck-idle-after-retained"
        } else {
            "leakcheck-idle"
        },
        None,
    );
}
