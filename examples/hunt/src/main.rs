//! Hunting memory growth in a running program, the way Python users reach for tracemalloc:
//! a tiny "server" answers requests, its memory grows, and a leakcheck session finds out why.
//!
//! ```text
//! cargo run --manifest-path examples/hunt/Cargo.toml
//! ```
//!
//! Two things grow here. A response cache that never evicts (a snapshot diff shows it growing
//! with every new page), and a scratch buffer that one code path forgets to free (the final
//! report shows it as definitely lost, while the cache, still held by a static, is reachable).
//! Set `HUNT_OUT=<dir>` to also save the report as JSON and as a DHAT file for `dh_view.html`.

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

use std::collections::HashMap;
use std::sync::Mutex;

/// Rendered pages by id. The bug: nothing ever evicts an entry.
static CACHE: Mutex<Option<HashMap<u64, String>>> = Mutex::new(None);

fn render(id: u64) -> String {
    format!("<html><body>page {id}</body></html>\n").repeat(8)
}

/// Looks a page up in the cache, rendering it on a miss.
#[inline(never)]
fn cached_page(id: u64) -> usize {
    let mut cache = CACHE.lock().unwrap();
    let cache = cache.get_or_insert_with(HashMap::new);
    cache.entry(id).or_insert_with(|| render(id)).len()
}

/// Handles one request.
#[inline(never)]
fn handle(id: u64) -> usize {
    let mut scratch = Vec::with_capacity(512);
    scratch.extend_from_slice(&id.to_le_bytes());
    let size = cached_page(id) + scratch.len();
    if id.is_multiple_of(50) {
        // The other bug: an early-exit path that hands the buffer to nobody.
        std::mem::forget(scratch);
    }
    size
}

fn serve(requests: std::ops::Range<u64>) -> usize {
    let mut total = 0;
    for id in requests {
        total += handle(id);
    }
    total
}

fn main() {
    let session = leakcheck::Session::start();
    serve(0..100); // warm-up
    let before = session.snapshot();
    let served = serve(100..1100);
    let after = session.snapshot();
    println!("served {served} bytes\n");
    println!("{}", after.diff(&before).top(3));

    let report = session.finish();
    println!("{report}");
    if let Some(dir) = std::env::var_os("HUNT_OUT") {
        let (json, dhat) = report.write_files(dir, "hunt").expect("writing the report files");
        println!("wrote {} and {}", json.display(), dhat.display());
    }
}
