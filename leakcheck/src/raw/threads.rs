//! Threads started inside a check belong to it: `pthread_create` is interposed (the way
//! sanitizer runtimes do it) so that a thread spawned by checked code starts inside the
//! spawner's scope. std, tokio, rayon and every other crate create threads through
//! `pthread_create`, and the executable's definition wins over glibc's for all of them.

use crate::track;
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};
use std::alloc::{GlobalAlloc, Layout, System};

type StartRoutine = extern "C" fn(*mut c_void) -> *mut c_void;
type CreateFn = unsafe extern "C" fn(
    *mut libc::pthread_t,
    *const libc::pthread_attr_t,
    StartRoutine,
    *mut c_void,
) -> c_int;

static REAL_CREATE: AtomicUsize = AtomicUsize::new(0);

fn real_create() -> Option<CreateFn> {
    let mut address = REAL_CREATE.load(Ordering::Relaxed);
    if address == 0 {
        // SAFETY: `dlsym` with RTLD_NEXT and a NUL-terminated name has no other
        // preconditions; it returns null when the symbol is missing.
        address = unsafe { libc::dlsym(libc::RTLD_NEXT, c"pthread_create".as_ptr()) } as usize;
        if address == 0 {
            return None;
        }
        REAL_CREATE.store(address, Ordering::Relaxed);
    }
    // SAFETY: `address` is glibc's `pthread_create`, whose C signature is `CreateFn`.
    Some(unsafe { core::mem::transmute::<usize, CreateFn>(address) })
}

/// What a new thread needs to start inside its creator's scope. Allocated from `System` so
/// it is never tracked.
struct Inherit {
    start: StartRoutine,
    arg: *mut c_void,
    /// The creator's scope, or 0.
    scope: u32,
    /// The creator was inside `leakcheck::ignore`: so is the new thread, for good.
    blocked: bool,
}

extern "C" fn start_inside_scope(data: *mut c_void) -> *mut c_void {
    let data = data.cast::<Inherit>();
    // SAFETY: `data` is the `Inherit` written by `pthread_create` below, handed to exactly this
    // thread; it is read once and freed here with the layout it was allocated with.
    let Inherit {
        start,
        arg,
        scope,
        blocked,
    } = unsafe {
        let inherit = data.read();
        System.dealloc(data.cast(), Layout::new::<Inherit>());
        inherit
    };
    if blocked {
        track::start_ignored();
    } else {
        track::inherit(scope);
        mark_exit(scope);
    }
    start(arg)
}

/// A thread-specific key whose destructor tells the scope that one of its threads is gone.
/// glibc runs key destructors after the thread's Rust thread-local destructors (those go
/// through `__cxa_thread_atexit_impl`), so by then the thread has freed its handle, its result
/// packet and its thread-locals.
static EXIT_KEY: AtomicUsize = AtomicUsize::new(usize::MAX);

extern "C" fn thread_exited(value: *mut c_void) {
    track::inherited_thread_exited(value as usize as u32);
}

fn mark_exit(scope: u32) {
    let mut key = EXIT_KEY.load(Ordering::Acquire);
    if key == usize::MAX {
        let mut created: libc::pthread_key_t = 0;
        // SAFETY: `created` is valid for writes; `thread_exited` has the destructor signature.
        if unsafe { libc::pthread_key_create(&mut created, Some(thread_exited)) } != 0 {
            track::inherited_thread_exited(scope);
            return;
        }
        key = match EXIT_KEY.compare_exchange(
            usize::MAX,
            created as usize,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => created as usize,
            Err(existing) => {
                // SAFETY: `created` is a key this thread made and nobody else knows.
                unsafe { libc::pthread_key_delete(created) };
                existing
            }
        };
    }
    // SAFETY: `key` is a live key (never deleted once published); the value is a non-null
    // integer used as a token, never dereferenced. Scope ids are never 0.
    if unsafe {
        libc::pthread_setspecific(key as libc::pthread_key_t, scope as usize as *const c_void)
    } != 0
    {
        track::inherited_thread_exited(scope);
    }
}

/// Creates a thread. When the creating thread is inside a check, the new thread starts inside
/// the same check; otherwise this is glibc's `pthread_create` exactly.
///
/// # Safety
///
/// The contract of `pthread_create(3)`.
#[no_mangle]
pub unsafe extern "C" fn pthread_create(
    thread: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    start: StartRoutine,
    arg: *mut c_void,
) -> c_int {
    let Some(create) = real_create() else {
        return libc::EAGAIN;
    };
    let scope = track::inheritable_scope();
    let blocked = scope == 0 && track::new_threads_start_ignored();
    if blocked || (scope != 0 && track::inherited_thread_starting(scope)) {
        // SAFETY: the layout has a non-zero size.
        let data = unsafe { System.alloc(Layout::new::<Inherit>()) }.cast::<Inherit>();
        if !data.is_null() {
            // SAFETY: `data` is a fresh allocation for one `Inherit`.
            unsafe {
                data.write(Inherit {
                    start,
                    arg,
                    scope,
                    blocked,
                })
            };
            // SAFETY: the caller's contract, with our start routine and its data in place of
            // theirs; their routine and argument are called unchanged on the new thread.
            let result = unsafe { create(thread, attr, start_inside_scope, data.cast()) };
            if result != 0 {
                // SAFETY: the thread was not created, so `data` is still ours.
                unsafe { System.dealloc(data.cast(), Layout::new::<Inherit>()) };
                if !blocked {
                    track::inherited_thread_exited(scope);
                }
            }
            return result;
        }
        if !blocked {
            track::inherited_thread_exited(scope);
        }
    }
    // SAFETY: the caller's contract, forwarded unchanged.
    unsafe { create(thread, attr, start, arg) }
}

/// Makes sure the linker keeps this object (and so the interposer) in every binary that
/// runs a check.
pub(crate) fn interposer_address() -> usize {
    pthread_create as *const () as usize
}
