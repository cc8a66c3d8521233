//! Allocator overhead of stats_alloc 0.1.10: six shared `SeqCst` counters per call.

use stats_alloc::StatsAlloc;
use std::alloc::System;

#[path = "common/workload.rs"]
mod workload;

#[global_allocator]
static ALLOC: StatsAlloc<System> = StatsAlloc::system();

fn main() {
    workload::main("stats_alloc", None);
}
