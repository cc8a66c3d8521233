//! leakcheck's memory per tracked block, the time to build and print a large report, and
//! (with `--big`) ten million live tracked blocks. Prints markdown lines for `scripts/bench`.
//!
//! Run with stacks on (the default) and, for realistic speed, frame pointers:
//! `RUSTFLAGS="-C force-frame-pointers=yes" cargo bench -p leakcheck-suite --bench bookkeeping`.
//! Targets: <= 32 bytes of record table per live tracked block (interned stacks come on top);
//! a report of 10,000 leaks from 100 sites built and formatted in under a second.

use std::hint::black_box;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

/// Allocates `count` 32-byte boxes and frees them; returns both times per block.
fn fill_and_free(count: usize) -> (f64, f64) {
    let t = Instant::now();
    let blocks: Vec<Box<[u8; 32]>> = (0..count).map(|i| Box::new([i as u8; 32])).collect();
    let allocating = t.elapsed();
    let t = Instant::now();
    drop(black_box(blocks));
    let freeing = t.elapsed();
    let per_block = |d: Duration| d.as_nanos() as f64 / count as f64;
    (per_block(allocating), per_block(freeing))
}

/// Holds `count` live 32-byte boxes inside one check and prints what leakcheck spends on them,
/// next to the same boxes allocated and freed with no check running. Returns the record table's
/// bytes per tracked block.
fn hold(count: usize) -> f64 {
    let (untracked_alloc, untracked_free) = fill_and_free(count);
    let mut figures = (0, 0, 0, 0);
    let mut times = (0.0, 0.0);
    let start = Instant::now();
    let report = leakcheck::check(|| {
        let t = Instant::now();
        let blocks: Vec<Box<[u8; 32]>> = (0..count).map(|i| Box::new([i as u8; 32])).collect();
        times.0 = t.elapsed().as_nanos() as f64 / count as f64;
        figures = leakcheck::__private::bookkeeping();
        let t = Instant::now();
        drop(black_box(blocks));
        times.1 = t.elapsed().as_nanos() as f64 / count as f64;
    });
    let total = start.elapsed();
    assert!(report.is_clean(), "{report}");
    let (table_bytes, records, stacks, stack_bytes) = figures;
    assert!(
        records > count,
        "only {records} of {count} blocks were tracked"
    );
    let per_block = table_bytes as f64 / records as f64;
    println!(
        "- {} live tracked 32-byte blocks (+1 for their `Vec`), unwinder `{}`: record table {} = \
         **{per_block:.1} bytes per tracked block** (target <= 32: {}); interned stacks: \
         {stacks} distinct so far in the process, arena {}. Allocating took {:.0} ns/block \
         ({:.0} with no check running), freeing {:.0} ns/block ({:.0}); the whole check {:.2} s.",
        thousands(count),
        leakcheck::__private::unwinder(),
        mib(table_bytes),
        verdict(per_block <= 32.0),
        mib(stack_bytes),
        times.0,
        untracked_alloc,
        times.1,
        untracked_free,
        total.as_secs_f64(),
    );
    per_block
}

/// Bytes per tracked block depend on where the count falls in the tables' doubling cycle
/// (just past a doubling, half the slots are free): hold counts spread over one cycle and
/// give the mean and the worst.
fn sweep() {
    let counts = [1_000_000, 1_200_000, 1_400_000, 1_600_000, 1_800_000];
    let figures: Vec<f64> = counts.iter().map(|&count| hold(count)).collect();
    let mean = figures.iter().sum::<f64>() / figures.len() as f64;
    let worst = figures.iter().copied().fold(0.0, f64::max);
    println!(
        "- Record table over one doubling cycle (1.0M to 1.8M live blocks): **{mean:.1} bytes per \
         tracked block on average** (target <= 32: {}), {worst:.1} at worst (just past a doubling).",
        verdict(mean <= 32.0)
    );
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**MISSED**"
    }
}

/// `1000000` as `1,000,000`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB ({bytes} B)", bytes as f64 / (1024.0 * 1024.0))
}

/// Defines one allocation site per name and `SITES`, the list of them. Each body allocates a
/// different size, so no two are identical code that the compiler could fold into one.
macro_rules! sites {
    ($($name:ident $n:literal)*) => {
        $(
            #[inline(never)]
            fn $name() -> Vec<u8> {
                black_box(Vec::with_capacity(16 + $n))
            }
        )*
        const SITES: [fn() -> Vec<u8>; 100] = [$($name),*];
    };
}

sites!(
    site00 0 site01 1 site02 2 site03 3 site04 4 site05 5 site06 6 site07 7 site08 8 site09 9
    site10 10 site11 11 site12 12 site13 13 site14 14 site15 15 site16 16 site17 17 site18 18
    site19 19 site20 20 site21 21 site22 22 site23 23 site24 24 site25 25 site26 26 site27 27
    site28 28 site29 29 site30 30 site31 31 site32 32 site33 33 site34 34 site35 35 site36 36
    site37 37 site38 38 site39 39 site40 40 site41 41 site42 42 site43 43 site44 44 site45 45
    site46 46 site47 47 site48 48 site49 49 site50 50 site51 51 site52 52 site53 53 site54 54
    site55 55 site56 56 site57 57 site58 58 site59 59 site60 60 site61 61 site62 62 site63 63
    site64 64 site65 65 site66 66 site67 67 site68 68 site69 69 site70 70 site71 71 site72 72
    site73 73 site74 74 site75 75 site76 76 site77 77 site78 78 site79 79 site80 80 site81 81
    site82 82 site83 83 site84 84 site85 85 site86 86 site87 87 site88 88 site89 89 site90 90
    site91 91 site92 92 site93 93 site94 94 site95 95 site96 96 site97 97 site98 98 site99 99
);

/// Leaks 10,000 blocks from 100 sites and times the report: the check's end (draining the
/// records, resolving each distinct stack, grouping) and formatting it as text.
fn report(run: &str) {
    let mut body = Duration::ZERO;
    let start = Instant::now();
    // Every block counts, reachable or not: a leaked `Vec`'s spare capacity holds whatever the
    // memory held before, and a stale address there can make another leak look reachable or
    // indirect (conservative scanning, as in valgrind), which would move the count.
    let report = leakcheck::Check::new()
        .reachable(leakcheck::Reachable::Fail)
        .run(|| {
            let t = Instant::now();
            for _ in 0..100 {
                for site in SITES {
                    std::mem::forget(site());
                }
            }
            body = t.elapsed();
        });
    let building = start.elapsed() - body;
    let t = Instant::now();
    let text = report.to_string();
    let formatting = t.elapsed();
    assert_eq!(report.leaked_allocations(), 10_000, "{text}");
    println!(
        "- Report of {} leaked blocks in {} groups ({run}): built in {:.1} ms, formatted \
         ({} lines) in {:.2} ms: **{:.1} ms in all** (target < 1 s: {}).",
        thousands(report.leaked_allocations()),
        report.groups().len(),
        building.as_secs_f64() * 1e3,
        text.lines().count(),
        formatting.as_secs_f64() * 1e3,
        (building + formatting).as_secs_f64() * 1e3,
        verdict(building + formatting < Duration::from_secs(1)),
    );
}

fn main() {
    // Any other argument is cargo's or criterion's (`--bench`).
    let big = std::env::args().any(|arg| arg == "--big");
    sweep();
    report("first, loads debug info");
    report("again, symbols cached");
    if big {
        let _ = hold(10_000_000);
    }
}
