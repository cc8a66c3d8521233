//! Runs one definitely-lost scenario of the accuracy corpus on the plain system allocator, with
//! no leakcheck linked, so that valgrind and LeakSanitizer judge exactly the code that
//! `tests/scenarios.rs` checks: `definite_leaks <test name>`, e.g. `definite_leaks
//! definite::rc_cycle` (the names are `accuracy_fixture::DEFINITE_LEAKS`). `scripts/compare-valgrind` at the repository root runs
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
        "definite::box_leak" => {
            black_box(accuracy_fixture::box_leak());
        }
        "definite::mem_forget_vec" => accuracy_fixture::forget_vec(),
        "definite::mem_forget_string" => accuracy_fixture::forget_string(),
        "definite::box_into_raw_never_reclaimed" => {
            black_box(accuracy_fixture::box_into_raw());
        }
        "definite::rc_cycle" => accuracy_fixture::rc_cycle(),
        "definite::arc_cycle" => accuracy_fixture::arc_cycle(),
        "definite::leaked_linked_list" => accuracy_fixture::leak_linked_list(),
        "definite::leak_beside_a_caught_panic" => accuracy_fixture::leak_beside_a_caught_panic(),
        "definite::leak_beside_a_worker_left_running" => {
            accuracy_fixture::leak_beside_a_worker_left_running()
        }
        "threads::leak_in_std_thread_spawn_joined" => accuracy_fixture::leak_in_spawned_thread(),
        "threads::leak_in_thread_scope" => accuracy_fixture::leak_in_scoped_thread(),
        "threads::leak_in_thread_builder" => accuracy_fixture::leak_in_builder_thread(),
        "threads::leak_in_thread_started_by_a_spawned_thread" => {
            accuracy_fixture::leak_in_grandchild_thread()
        }
        // As `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` expands: a runtime
        // built for the test and dropped after it.
        "tokio_runtime::leak_in_a_spawned_task" | "tokio_runtime::leak_in_spawn_blocking" => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            if name == "tokio_runtime::leak_in_a_spawned_task" {
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
