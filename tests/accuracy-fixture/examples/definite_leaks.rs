//! Runs one definitely-lost scenario of the accuracy corpus on the plain system allocator, with
//! no leakcheck linked, so that valgrind and LeakSanitizer judge exactly the code that
//! `tests/scenarios.rs` checks: `definite_leaks <scenario>` (the names are
//! `accuracy_fixture::DEFINITE_LEAKS`). `scripts/compare-valgrind` at the repository root runs
//! each one under both tools.

use std::hint::black_box;

fn main() {
    let Some(name) = std::env::args().nth(1) else {
        eprintln!(
            "usage: definite_leaks <scenario>; one of {:?}",
            accuracy_fixture::DEFINITE_LEAKS
        );
        std::process::exit(2);
    };
    match name.as_str() {
        "box_leak" => {
            black_box(accuracy_fixture::box_leak());
        }
        "forget_vec" => accuracy_fixture::forget_vec(),
        "forget_string" => accuracy_fixture::forget_string(),
        "box_into_raw" => {
            black_box(accuracy_fixture::box_into_raw());
        }
        "rc_cycle" => accuracy_fixture::rc_cycle(),
        "arc_cycle" => accuracy_fixture::arc_cycle(),
        "linked_list" => accuracy_fixture::leak_linked_list(),
        "thread_spawn" => accuracy_fixture::leak_in_spawned_thread(),
        "thread_scope" => accuracy_fixture::leak_in_scoped_thread(),
        "thread_builder" => accuracy_fixture::leak_in_builder_thread(),
        "thread_grandchild" => accuracy_fixture::leak_in_grandchild_thread(),
        // As `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` expands: a runtime
        // built for the test and dropped after it.
        "tokio_task" | "tokio_blocking" => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            if name == "tokio_task" {
                runtime.block_on(accuracy_fixture::leak_in_spawned_task());
            } else {
                runtime.block_on(accuracy_fixture::leak_in_blocking_task());
            }
            drop(runtime);
        }
        other => {
            eprintln!(
                "unknown scenario `{other}`; one of {:?}",
                accuracy_fixture::DEFINITE_LEAKS
            );
            std::process::exit(2);
        }
    }
}
