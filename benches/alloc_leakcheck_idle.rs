//! Allocator overhead: leakcheck installed, no check running anywhere (what every test that is
//! not `#[leakcheck]` pays). Target: within 10% of `alloc_passthrough`.

#[path = "common/workload.rs"]
mod workload;

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

fn main() {
    workload::main("leakcheck-idle", None);
}
