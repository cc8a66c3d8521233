//! Allocator overhead of checkers 0.7: each benchmark thread runs its loop inside its own
//! `checkers::with` (checkers tracks the calling thread only). The snapshot is not validated:
//! that happens after the timed loop anyway and is not part of the per-allocation cost.

#[path = "common/workload.rs"]
mod workload;

#[global_allocator]
static ALLOC: checkers::Allocator = checkers::Allocator::system();

fn checked(body: &mut dyn FnMut()) {
    drop(checkers::with(body));
}

fn main() {
    workload::main("checkers", Some(checked));
}
