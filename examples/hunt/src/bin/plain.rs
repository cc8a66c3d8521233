//! A program that only installs the allocator. Run it with `LEAKCHECK_AT_EXIT=1` and, with no
//! code change, it prints at exit what it allocated and lost, and exits with status 23:
//!
//! ```text
//! LEAKCHECK_AT_EXIT=1 cargo run --manifest-path examples/hunt/Cargo.toml --bin plain
//! ```

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

use std::sync::Mutex;

/// Still reachable at exit: not a leak.
static CONFIG: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[inline(never)]
fn load_config() {
    CONFIG.lock().unwrap().push("listen = 127.0.0.1:8080".to_owned());
}

/// Lost at exit: nothing points to it any more.
#[inline(never)]
fn parse_request(line: &str) -> usize {
    let words: Vec<String> = line.split(' ').map(str::to_owned).collect();
    let count = words.len();
    std::mem::forget(words);
    count
}

fn main() {
    load_config();
    let count = parse_request("GET /index.html HTTP/1.1");
    println!("{count} words");
}
