//! Allocation stacks without frame pointers: the allocator's stack walker (the cached
//! DWARF CFI walker on x86_64 Linux, libgcc's unwinder elsewhere) must report exactly the
//! callers that libgcc's `_Unwind_Backtrace` sees from the same function, through frames of
//! every shape: rsp-based frames small and large, frames that keep a frame pointer (stack
//! realignment), rbp saved as an ordinary register, calls through `dyn`.
//!
//! This package is built without `-C force-frame-pointers` (the workspace sets no rustflags), so
//! the frames below are walked by their unwind tables; with frame pointers forced the test
//! still compares, against the frame-pointer walk.

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

use std::hint::black_box;

/// What libgcc saw from the allocating function.
struct Trace {
    ips: [usize; 128],
    len: usize,
}

impl Trace {
    fn new() -> Trace {
        Trace {
            ips: [0; 128],
            len: 0,
        }
    }
}

// libgcc's unwinder, which std links on Linux, called directly: the reference walk.
unsafe extern "C" {
    fn _Unwind_Backtrace(
        trace: unsafe extern "C" fn(*mut core::ffi::c_void, *mut core::ffi::c_void) -> i32,
        data: *mut core::ffi::c_void,
    ) -> i32;
    fn _Unwind_GetIP(context: *mut core::ffi::c_void) -> usize;
}

unsafe extern "C" fn record_frame(
    context: *mut core::ffi::c_void,
    data: *mut core::ffi::c_void,
) -> i32 {
    // SAFETY: `data` is the `Trace` that `leaf` passed, used by nothing else during the walk;
    // `context` is libgcc's, valid during the call.
    let (trace, ip) = unsafe { (&mut *data.cast::<Trace>(), _Unwind_GetIP(context)) };
    trace.ips[trace.len] = ip;
    trace.len += 1;
    // `_URC_NO_REASON` goes on, `_URC_END_OF_STACK` stops.
    if trace.len < trace.ips.len() {
        0
    } else {
        5
    }
}

/// Records libgcc's stack (into a fixed array: nothing allocated), then leaks `size` bytes.
#[inline(never)]
fn leaf(trace: &mut Trace, size: usize) {
    // SAFETY: `record_frame` uses `data` only as the `Trace` passed here, which outlives the
    // walk.
    unsafe { _Unwind_Backtrace(record_frame, (trace as *mut Trace).cast()) };
    std::mem::forget(black_box(vec![0u8; size]));
}

#[path = "support/shaped_frames.rs"]
mod shaped_frames;
use shaped_frames::shaped;

/// Leaks `size` bytes `depth` shaped frames down inside a check, and asserts that the leak's
/// stack lists, after the allocating function, exactly the callers libgcc saw.
fn leak_and_compare(depth: u32, size: usize) {
    let mut trace = Trace::new();
    let report = leakcheck::check(|| {
        shaped(depth, &mut || leaf(&mut trace, size));
    });
    let group = report
        .groups()
        .iter()
        .find(|g| g.bytes() == size)
        .unwrap_or_else(|| panic!("no leak of {size} bytes in\n{report}"));
    // Inlined frames share their caller's return address: one address per physical frame.
    let mut addresses: Vec<usize> = group.frames().iter().map(|f| f.address).collect();
    addresses.dedup();
    // The first is inside `leaf` (its call into the allocator, where libgcc saw its call into
    // `_Unwind_Backtrace`); the rest are `leaf`'s callers up to the closure inside the check.
    let callers = &addresses[1..];
    let seen = &trace.ips[..trace.len];
    let start = seen
        .iter()
        .position(|&ip| ip == callers[0])
        .unwrap_or_else(|| panic!("{callers:x?} not in libgcc's {seen:x?}\n{report}"));
    assert_eq!(
        &seen[start..(start + callers.len()).min(seen.len())],
        callers,
        "libgcc saw {seen:x?}\n{report}"
    );
    assert!(
        callers.len() > depth as usize,
        "only {} callers: {report}",
        callers.len()
    );
}

#[test]
fn leak_stacks_list_every_caller() {
    leak_and_compare(24, 4001);
    if leakcheck::__private::unwinder() != "dwarf-cached" {
        eprintln!(
            "note: stacks came from the `{}` walker, not DWARF CFI",
            leakcheck::__private::unwinder()
        );
    }
}

#[test]
fn leak_stacks_list_every_caller_on_concurrent_threads() {
    let threads: Vec<_> = (0..4)
        .map(|i| std::thread::spawn(move || leak_and_compare(6 + i * 5, 4100 + i as usize)))
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}
