//! Allocator overhead: a bare `#[global_allocator]` wrapper that forwards every call to
//! `System`, the floor for any wrapping allocator (leakcheck with no check running should be
//! within 10% of it).

#[path = "common/passthrough.rs"]
mod passthrough;
#[path = "common/workload.rs"]
mod workload;

#[global_allocator]
static ALLOC: passthrough::Passthrough = passthrough::Passthrough;

fn main() {
    workload::main("passthrough", None);
}
