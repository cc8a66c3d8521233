//! leakcheck's walks of the loaded objects (`dl_iterate_phdr`), fenced against `fork`.
//!
//! `dl_iterate_phdr` holds the loader's write lock while it runs. glibc's `fork` resets the
//! loader's other lock in the child, not this one, so a child forked while another thread was
//! inside `dl_iterate_phdr` hangs at its own first call. leakcheck makes such calls from inside
//! the allocator (the DWARF walker on a new return address, the scan, symbolization), so a
//! tracked thread that allocates while its process forks would hang the child.
//!
//! Before each fork, the forking thread closes a gate and waits until no leakcheck walk is in
//! flight (each is one pass over the list of loaded objects); walks that arrive meanwhile wait
//! at the gate until the fork is done. If a walk is still in flight after [`FORK_WAIT`] (its
//! thread descheduled for that long, or blocked), the fork goes ahead and the child makes no
//! walk at all: callers treat that as "no object found", never as a hang.

use core::cell::Cell;
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::spin::relax;

/// How long a fork waits for walks in flight before it goes ahead without them: long enough
/// for a walking thread descheduled on a busy machine to get a core back.
const FORK_WAIT: Duration = Duration::from_secs(1);

/// Walks in flight, across threads (a nested walk on one thread counts once).
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// Forks under way: new walks wait while this is not zero.
static FORKING: AtomicUsize = AtomicUsize::new(0);
/// Set in a child forked while a walk was in flight: the loader's lock may be held by a thread
/// that does not exist here, so this process makes no walk.
static LOCK_LOST: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The calling thread's walks in progress (a callback may allocate, and the allocator walk).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// The callback type of `dl_iterate_phdr`.
pub(crate) type Callback =
    unsafe extern "C" fn(*mut libc::dl_phdr_info, usize, *mut c_void) -> c_int;

/// Calls `dl_iterate_phdr(callback, data)`; false, without calling it, in a child forked while
/// the loader's lock may have been held (see the module docs).
///
/// # Safety
/// The contract of `dl_iterate_phdr`: `callback` must treat `data` as what the caller passed.
pub(crate) unsafe fn iterate_objects(callback: Callback, data: *mut c_void) -> bool {
    if LOCK_LOST.load(Ordering::Relaxed) {
        return false;
    }
    let depth = DEPTH.with(Cell::get);
    if depth == 0 {
        enter();
    }
    DEPTH.with(|d| d.set(depth + 1));
    // SAFETY: forwarded from the caller.
    unsafe { libc::dl_iterate_phdr(Some(callback), data) };
    DEPTH.with(|d| d.set(depth));
    if depth == 0 {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
    true
}

/// Counts the calling thread in, once no fork is under way.
fn enter() {
    let mut spins = 0u32;
    loop {
        while FORKING.load(Ordering::SeqCst) != 0 {
            relax(&mut spins);
        }
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        if FORKING.load(Ordering::SeqCst) == 0 {
            return;
        }
        // A fork began between the two loads: let it go first.
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `fork`'s prepare step: closes the gate and waits, up to [`FORK_WAIT`], for walks in flight.
/// A walk on the forking thread itself (a fork from inside an allocation) cannot finish first
/// and is not waited for.
pub(crate) fn before_fork() {
    FORKING.fetch_add(1, Ordering::SeqCst);
    let own = usize::from(DEPTH.with(Cell::get) > 0);
    let deadline = Instant::now() + FORK_WAIT;
    let mut spins = 0u32;
    while IN_FLIGHT.load(Ordering::SeqCst) > own && Instant::now() < deadline {
        relax(&mut spins);
    }
}

/// `fork`'s parent step: reopens the gate.
pub(crate) fn after_fork_in_parent() {
    FORKING.fetch_sub(1, Ordering::SeqCst);
}

/// `fork`'s child step: only the forking thread exists here, so only its own walk can still
/// be in flight; any other means the loader's lock is lost.
pub(crate) fn after_fork_in_child() {
    let own = usize::from(DEPTH.with(Cell::get) > 0);
    if IN_FLIGHT.load(Ordering::SeqCst) > own {
        LOCK_LOST.store(true, Ordering::SeqCst);
    }
    IN_FLIGHT.store(own, Ordering::SeqCst);
    FORKING.store(0, Ordering::SeqCst);
}

/// Whether this process makes walks (false in a child that lost the loader's lock).
pub(crate) fn usable() -> bool {
    !LOCK_LOST.load(Ordering::Relaxed)
}

/// A loaded object: its file (the main program as `/proc/self/exe`), its load bias (run-time
/// address minus the address the file states), its loaded segments as [start, end) at run
/// time (for the symbolizer), and the writable ones among them (for the scan).
pub(crate) struct MappedObject {
    pub(crate) path: std::path::PathBuf,
    pub(crate) bias: usize,
    pub(crate) segments: Vec<(usize, usize)>,
    pub(crate) writable: Vec<(usize, usize)>,
}

/// Every loaded object with its segments; empty in a child that lost the loader's lock.
pub(crate) fn mapped_objects() -> Vec<MappedObject> {
    unsafe extern "C" fn each(info: *mut libc::dl_phdr_info, _: usize, data: *mut c_void) -> c_int {
        // SAFETY: `data` is the `Vec` of `mapped_objects`, not otherwise borrowed during the
        // walk; `info` is valid during the call, `dlpi_name` is a NUL-terminated string
        // (empty for the main program) or null, and `dlpi_phdr` points to `dlpi_phnum`
        // program headers mapped while the object is loaded.
        let (objects, info) = unsafe { (&mut *data.cast::<Vec<MappedObject>>(), &*info) };
        let name = if info.dlpi_name.is_null() {
            &[][..]
        } else {
            // SAFETY: as above.
            unsafe { core::ffi::CStr::from_ptr(info.dlpi_name) }.to_bytes()
        };
        let path = if name.is_empty() {
            std::path::PathBuf::from("/proc/self/exe")
        } else {
            std::path::PathBuf::from(
                <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name),
            )
        };
        let headers = if info.dlpi_phdr.is_null() {
            &[][..]
        } else {
            // SAFETY: as above.
            unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) }
        };
        let bias = info.dlpi_addr as usize;
        let segments = headers
            .iter()
            .filter(|h| h.p_type == libc::PT_LOAD)
            .map(|h| {
                let start = bias.wrapping_add(h.p_vaddr as usize);
                let range = (start, start.saturating_add(h.p_memsz as usize));
                (range, h.p_flags & libc::PF_W != 0)
            })
            .collect::<Vec<_>>();
        objects.push(MappedObject {
            path,
            bias,
            writable: segments
                .iter()
                .filter(|(_, writable)| *writable)
                .map(|(range, _)| *range)
                .collect(),
            segments: segments.into_iter().map(|(range, _)| range).collect(),
        });
        0
    }
    let mut objects: Vec<MappedObject> = Vec::new();
    // SAFETY: `each` has the callback's C signature and uses `data` only as the `Vec` passed
    // here, which outlives the walk.
    unsafe { iterate_objects(each, (&mut objects as *mut Vec<MappedObject>).cast()) };
    objects
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" fn count(_: *mut libc::dl_phdr_info, _: usize, data: *mut c_void) -> c_int {
        // SAFETY: `data` is the counter passed by the test below.
        unsafe { *data.cast::<usize>() += 1 };
        0
    }

    #[test]
    fn the_program_is_among_the_mapped_objects_and_holds_this_code() {
        let here = the_program_is_among_the_mapped_objects_and_holds_this_code as fn() as usize;
        let objects = mapped_objects();
        let holder = objects
            .iter()
            .find(|o| o.segments.iter().any(|&(s, e)| s <= here && here < e))
            .expect("some object holds this function");
        assert_eq!(holder.path, std::path::Path::new("/proc/self/exe"));
        assert!(objects
            .iter()
            .any(|o| o.path.to_string_lossy().contains("libc.so")));
    }

    #[test]
    fn a_walk_visits_the_loaded_objects_and_leaves_nothing_in_flight() {
        let mut objects = 0usize;
        // SAFETY: `count` uses `data` as the `usize` passed here.
        let walked = unsafe { iterate_objects(count, (&raw mut objects).cast()) };
        assert!(walked);
        assert!(objects >= 2, "the program and libc at least, saw {objects}");
        assert_eq!(DEPTH.with(Cell::get), 0);
    }

    /// Keeps its thread inside the walk until a fork has begun (or 2 s have passed, when no
    /// fork handler waits for it).
    unsafe extern "C" fn hold_until_a_fork(
        _: *mut libc::dl_phdr_info,
        _: usize,
        inside: *mut c_void,
    ) -> c_int {
        // SAFETY: `inside` is the test's `AtomicBool`, which outlives the walk.
        let inside = unsafe { &*inside.cast::<AtomicBool>() };
        inside.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(2);
        while FORKING.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        1 // stop after the first object
    }

    #[test]
    fn a_child_forked_during_another_threads_walk_can_walk() {
        crate::raw::prepare_for_fork();
        let inside = std::sync::Arc::new(AtomicBool::new(false));
        let walker = {
            let inside = inside.clone();
            std::thread::spawn(move || {
                let data = std::sync::Arc::as_ptr(&inside).cast_mut().cast::<c_void>();
                // SAFETY: `hold_until_a_fork` uses `data` as the `AtomicBool`, kept alive by
                // this closure's `Arc` for the whole walk.
                unsafe { iterate_objects(hold_until_a_fork, data) }
            })
        };
        while !inside.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        // SAFETY: the child only walks the loaded objects (no allocation, no lock of ours) and
        // leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let mut objects = 0usize;
            // SAFETY: `count` uses `data` as the `usize` passed here.
            let walked = unsafe { iterate_objects(count, (&raw mut objects).cast()) };
            // SAFETY: `_exit` ends the child at once.
            unsafe { libc::_exit(if walked && objects >= 2 { 0 } else { 1 }) }
        }
        assert!(walker.join().unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut status = 0;
        loop {
            // SAFETY: `pid` is our child; `status` is valid for writes.
            let waited = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if waited == pid {
                break;
            }
            if Instant::now() > deadline {
                // SAFETY: `pid` is our child, still running; it is reaped right after.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                panic!("the child hung on the loader's lock for 30 s and was killed");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "status {status:#x}"
        );
    }
}
