//! Allocator overhead, baseline: no `#[global_allocator]`, so std's `System` allocator (glibc
//! malloc). Every other `alloc_*` bench is a ratio to this one; `scripts/bench` runs them all.

#[path = "common/workload.rs"]
mod workload;

fn main() {
    workload::main("system", None);
}
