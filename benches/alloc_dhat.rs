//! Allocator overhead of dhat 0.3.3: `dhat::Alloc` with a heap profiler running for the whole
//! benchmark (one per process, which is what its users run). Its profile goes to a temporary
//! file that is removed afterwards.

#[path = "common/workload.rs"]
mod workload;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() {
    let file =
        std::env::temp_dir().join(format!("leakcheck-bench-dhat-{}.json", std::process::id()));
    let profiler = dhat::Profiler::builder().file_name(&file).build();
    workload::main("dhat", None);
    drop(profiler);
    let _ = std::fs::remove_file(&file);
}
