//! Threads started inside a check belong to it: `pthread_create` is interposed (the way
//! sanitizer runtimes do it) so that a thread spawned by checked code starts inside the
//! spawner's scope. std, tokio, rayon and every other crate create threads through
//! `pthread_create`, and the executable's definition wins over glibc's for all of them.
//!
//! Under `LEAKCHECK_ALL_TESTS`, the threads the main thread creates are the test runner's test
//! threads (libtest, cargo-nextest's process per test and `leakcheck::harness` all run each test
//! on a thread the main thread spawns and names after the test). Such a thread is marked when it
//! starts; std names it (`pthread_setname_np`, also interposed) once its handle is in place
//! and before it runs anything of the runner's, so that call is where its check opens, under
//! the test's name. The check ends in a thread-specific key's destructor, which glibc runs after
//! the thread's thread-local destructors: the thread's own data is gone by then.
//!
//! Every thread created through the interposer is listed in a roster (tid, stack, and the
//! check it started in, if any) until it exits: when a check ends, the stacks of listed
//! threads that still run are roots of its scan (`crate::thread_roots`), as every live thread's
//! stack is for LeakSanitizer. A pool, an executor or a worker fed by a channel keeps its
//! queues and what it was sent there, whether a test started it or it ran before `main`.

use crate::track;
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};
use std::alloc::{GlobalAlloc, Layout, System};

type StartRoutine = extern "C" fn(*mut c_void) -> *mut c_void;
type CreateFn = unsafe extern "C" fn(
    *mut libc::pthread_t,
    *const libc::pthread_attr_t,
    StartRoutine,
    *mut c_void,
) -> c_int;

static REAL_CREATE: AtomicUsize = AtomicUsize::new(0);

/// The address of the next definition of `name` after ours (glibc's), found once and kept in
/// `cache`; `None` when there is none.
fn next_definition(cache: &AtomicUsize, name: &core::ffi::CStr) -> Option<usize> {
    let mut address = cache.load(Ordering::Relaxed);
    if address == 0 {
        // SAFETY: `dlsym` with RTLD_NEXT and a NUL-terminated name has no other
        // preconditions; it returns null when the symbol is missing.
        address = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
        if address == 0 {
            return None;
        }
        cache.store(address, Ordering::Relaxed);
    }
    Some(address)
}

fn real_create() -> Option<CreateFn> {
    let address = next_definition(&REAL_CREATE, c"pthread_create")?;
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
    /// Created by the main thread while `LEAKCHECK_ALL_TESTS` is on: a test thread.
    candidate: bool,
    /// What the thread is listed under: the scope it starts in (its own, or the process-wide
    /// one), or [`OUTSIDE_CHECKS`].
    roster: u32,
    /// Its roster entry, claimed by the creator (see [`claim_entry`]); `None` when the roster
    /// was full.
    entry: Option<&'static Member>,
}

thread_local! {
    /// This thread may be a test thread (see the module's documentation) and has not been
    /// named yet. Const-initialised, no destructor: read on the way into `pthread_setname_np`.
    static CANDIDATE: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
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
        candidate,
        roster,
        entry,
    } = unsafe {
        let inherit = data.read();
        System.dealloc(data.cast(), Layout::new::<Inherit>());
        inherit
    };
    if let Some(entry) = entry {
        join_roster(entry, roster);
    }
    if blocked {
        track::start_ignored();
    } else if scope != 0 {
        track::inherit(scope);
        mark_exit(scope);
    }
    if candidate {
        let _ = CANDIDATE.try_with(|c| c.set(true));
    }
    let result = start(arg);
    // Only thread-local destructors run from here on; stale words on the way out are no roots
    // (a check waiting for this thread to exit may give up waiting first).
    left_roster(core::ptr::null_mut());
    result
}

/// A thread-specific key whose destructor tells the scope that one of its threads is gone.
/// glibc runs key destructors after the thread's Rust thread-local destructors (those go
/// through `__cxa_thread_atexit_impl`), so by then the thread has freed its handle, its result
/// packet and its thread-locals.
static EXIT_KEY: AtomicUsize = AtomicUsize::new(usize::MAX);

extern "C" fn thread_exited(value: *mut c_void) {
    // Off the roster first: once the count below reaches 0 the check may scan, and this
    // thread's stack is no root any more.
    left_roster(core::ptr::null_mut());
    track::inherited_thread_exited(value as usize as u32);
}

fn mark_exit(scope: u32) {
    if !at_exit(&EXIT_KEY, thread_exited, scope) {
        track::inherited_thread_exited(scope);
    }
}

/// Has `destructor(token)` called when this thread exits, after its thread-locals'
/// destructors, through the thread-specific key kept in `key` (made on first use). `token` is
/// not 0. Returns false if glibc refused.
fn at_exit(key: &AtomicUsize, destructor: extern "C" fn(*mut c_void), token: u32) -> bool {
    let mut known = key.load(Ordering::Acquire);
    if known == usize::MAX {
        let mut created: libc::pthread_key_t = 0;
        // SAFETY: `created` is valid for writes; `destructor` has the destructor signature.
        if unsafe { libc::pthread_key_create(&mut created, Some(destructor)) } != 0 {
            return false;
        }
        known = match key.compare_exchange(
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
    // SAFETY: `known` is a live key (never deleted once published); the value is a non-null
    // integer used as a token, never dereferenced.
    unsafe {
        libc::pthread_setspecific(
            known as libc::pthread_key_t,
            token as usize as *const c_void,
        ) == 0
    }
}

/// Creates a thread, listed in the roster until it exits. When the creating thread is inside a
/// check, the new thread starts inside the same check. If the roster's start data cannot be
/// allocated, this is glibc's `pthread_create` exactly.
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
    let candidate = crate::all_tests::enabled() && track::on_main_thread();
    let inherits = scope != 0 && !blocked && track::inherited_thread_starting(scope);
    let roster = if inherits {
        scope
    } else {
        match track::process_scope_for_new_thread() {
            0 => OUTSIDE_CHECKS,
            process => process,
        }
    };
    let scope = if inherits { scope } else { 0 };
    // SAFETY: the layout has a non-zero size.
    let data = unsafe { System.alloc(Layout::new::<Inherit>()) }.cast::<Inherit>();
    if !data.is_null() {
        // SAFETY: the caller's contract makes a non-null `attr` an initialised attribute
        // object.
        let entry = claim_entry(!attr.is_null() && unsafe { created_detached(attr) });
        // SAFETY: `data` is a fresh allocation for one `Inherit`.
        unsafe {
            data.write(Inherit {
                start,
                arg,
                scope,
                blocked,
                candidate,
                roster,
                entry,
            })
        };
        // SAFETY: the caller's contract, with our start routine and its data in place of
        // theirs; their routine and argument are called unchanged on the new thread.
        let result = unsafe { create(thread, attr, start_inside_scope, data.cast()) };
        if result != 0 {
            // SAFETY: the thread was not created, so `data` is still ours.
            unsafe { System.dealloc(data.cast(), Layout::new::<Inherit>()) };
            if let Some(entry) = entry {
                entry.scope.store(0, Ordering::Release);
            }
            if inherits {
                track::inherited_thread_exited(scope);
            }
        } else if let Some(entry) = entry {
            // Before the caller has the id, so a `pthread_detach` of it finds the entry even
            // if the thread has not started yet. Only into an entry with no id: a thread that
            // has started has put its own there, and one that has already exited may have
            // left its entry to a thread that will.
            // SAFETY: `create` succeeded, so it wrote the new thread's id to `thread`.
            let id = unsafe { *thread } as usize;
            let _ = entry
                .handle
                .compare_exchange(0, id, Ordering::AcqRel, Ordering::Relaxed);
        }
        return result;
    }
    if inherits {
        track::inherited_thread_exited(scope);
    }
    // SAFETY: the caller's contract, forwarded unchanged.
    unsafe { create(thread, attr, start, arg) }
}

extern "C" {
    // glibc's; the libc crate does not declare it.
    fn pthread_attr_getdetachstate(attr: *const libc::pthread_attr_t, state: *mut c_int) -> c_int;
}

/// Whether `attr` makes a thread detached from its start.
///
/// # Safety
///
/// `attr` points to an initialised thread attribute object.
unsafe fn created_detached(attr: *const libc::pthread_attr_t) -> bool {
    let mut state = libc::PTHREAD_CREATE_JOINABLE;
    // SAFETY: `attr` is initialised (the caller's contract); `state` is valid for writes.
    let known = unsafe { pthread_attr_getdetachstate(attr, &mut state) } == 0;
    known && state == libc::PTHREAD_CREATE_DETACHED
}

type SetNameFn = unsafe extern "C" fn(libc::pthread_t, *const libc::c_char) -> c_int;

static REAL_SETNAME: AtomicUsize = AtomicUsize::new(0);

fn real_setname() -> Option<SetNameFn> {
    let address = next_definition(&REAL_SETNAME, c"pthread_setname_np")?;
    // SAFETY: `address` is glibc's `pthread_setname_np`, whose C signature is `SetNameFn`.
    Some(unsafe { core::mem::transmute::<usize, SetNameFn>(address) })
}

/// Names a thread, as glibc's `pthread_setname_np` does. On a thread the main thread created
/// under `LEAKCHECK_ALL_TESTS`, naming itself is also where its test's check opens (see the
/// module's documentation).
///
/// # Safety
///
/// The contract of `pthread_setname_np(3)`.
#[no_mangle]
pub unsafe extern "C" fn pthread_setname_np(
    thread: libc::pthread_t,
    name: *const libc::c_char,
) -> c_int {
    let Some(set_name) = real_setname() else {
        return libc::ENOSYS;
    };
    // SAFETY: the caller's contract, forwarded unchanged.
    let result = unsafe { set_name(thread, name) };
    // SAFETY: `pthread_self` has no preconditions.
    let own = thread == unsafe { libc::pthread_self() };
    if own && CANDIDATE.try_with(|c| c.replace(false)).unwrap_or(false) {
        crate::all_tests::test_thread_named();
    }
    if own {
        keep_listed_name();
    }
    result
}

type DetachFn = unsafe extern "C" fn(libc::pthread_t) -> c_int;

static REAL_DETACH: AtomicUsize = AtomicUsize::new(0);

/// Detaches a thread, as glibc's `pthread_detach` does, and marks its roster entry: nothing
/// will join it, so it serves the whole process (a pool, an executor or a worker whose handle
/// was dropped), not the check that started it (see [`listed_beside`]). std detaches a
/// thread when its `JoinHandle` is dropped unjoined.
///
/// # Safety
///
/// The contract of `pthread_detach(3)`.
#[no_mangle]
pub unsafe extern "C" fn pthread_detach(thread: libc::pthread_t) -> c_int {
    let Some(address) = next_definition(&REAL_DETACH, c"pthread_detach") else {
        return libc::ENOSYS;
    };
    // Marked before glibc detaches it: until then its descriptor, and so its id, cannot be
    // another thread's, even if it has exited. The creator filled the entry's id before it
    // returned the id, so the entry is there even if the thread has not started.
    let handle = thread as usize;
    if let Some(member) = ROSTER.iter().find(|member| {
        member.handle.load(Ordering::Acquire) == handle && member.scope.load(Ordering::Acquire) != 0
    }) {
        member.detached.store(true, Ordering::Release);
    }
    // SAFETY: `address` is glibc's `pthread_detach`, whose C signature is `DetachFn`.
    let detach = unsafe { core::mem::transmute::<usize, DetachFn>(address) };
    // SAFETY: the caller's contract, forwarded unchanged.
    unsafe { detach(thread) }
}

/// The CPU time thread `tid` of this process has used, in nanoseconds; `None` once it has
/// exited. Its CPU-time clock is derived from its id, as glibc's `pthread_getcpuclockid` does,
/// so a thread that exited meanwhile is an error, never a dangling descriptor.
pub(crate) fn cpu_time(tid: i32) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        // The kernel's per-thread scheduler clock: CPUCLOCK_PERTHREAD_MASK | CPUCLOCK_SCHED.
        let clock = ((!tid) << 3) | 6;
        let mut time = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `time` is valid for writes; an unknown clock is an error return.
        if unsafe { libc::clock_gettime(clock as libc::clockid_t, &mut time) } != 0 {
            return None;
        }
        Some(time.tv_sec as u64 * 1_000_000_000 + time.tv_nsec as u64)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = tid;
        None
    }
}

thread_local! {
    /// This thread's roster entry says it ran a check as its own. Const-initialised, no
    /// destructor.
    static LISTED_AS_TESTER: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// Marks the calling thread's roster entry, if it has one, as a thread that runs a check as
/// its own (see [`listed_beside`]). Looks the entry up once per thread.
pub(crate) fn list_as_test_thread() {
    if LISTED_AS_TESTER
        .try_with(|done| done.replace(true))
        .unwrap_or(true)
    {
        return;
    }
    if let Some(member) = own_entry() {
        member.tester.store(true, Ordering::Relaxed);
    }
}

/// On a listed thread that std is naming (its handle is in place by then), keeps the address
/// of the name's heap copy in the thread's roster entry. std holds the name in the handle's
/// inner block, which it allocates with `System`, out of leakcheck's sight: without this word
/// in a static, the name (made inside the check, by the `Builder::name` caller) of every named
/// thread left running was reported lost.
fn keep_listed_name() {
    let Some(member) = own_entry() else {
        return;
    };
    let current = std::thread::current();
    let name = current.name().map_or(0, |name| name.as_ptr() as usize);
    member.name.store(name, Ordering::Release);
}

/// The key whose destructor ends a test thread's check (`LEAKCHECK_ALL_TESTS`).
static TEST_EXIT_KEY: AtomicUsize = AtomicUsize::new(usize::MAX);

extern "C" fn test_thread_exited(value: *mut c_void) {
    crate::all_tests::test_thread_exited(value as usize as u32);
}

/// Calls `all_tests::test_thread_exited(token)` when this thread exits, after its
/// thread-locals' destructors. `token` is not 0. Returns false if glibc refused.
pub(crate) fn at_test_thread_exit(token: u32) -> bool {
    at_exit(&TEST_EXIT_KEY, test_thread_exited, token)
}

/// Makes sure the linker keeps this object (and so the interposer) in every binary that
/// runs a check.
pub(crate) fn interposer_address() -> usize {
    pthread_create as *const () as usize
        ^ pthread_setname_np as *const () as usize
        ^ pthread_detach as *const () as usize
}

/// How many threads the roster lists at once; a thread that finds it full is not listed (its
/// stack is then no root, and a block only it keeps is reported).
const ROSTER_SIZE: usize = 512;
/// A roster entry's scope while its thread writes it.
const WRITING: u32 = u32::MAX;
/// The roster's scope for a thread started outside every check (no scope id is this low).
pub(crate) const OUTSIDE_CHECKS: u32 = 1;

/// One listed thread. Free while `scope` is 0.
struct Member {
    scope: AtomicU32,
    tid: AtomicI32,
    /// [low, end) of the thread's stack, its static TLS included, its descriptor left out.
    low: AtomicUsize,
    end: AtomicUsize,
    /// The address of the thread's name as std keeps it (see `keep_listed_name`), or 0. A
    /// static word: the scan reads it as a root.
    name: AtomicUsize,
    /// The thread has run a check as its own (a test thread): never a root of another check.
    tester: AtomicBool,
    /// The thread's `pthread_t`, for [`pthread_detach`].
    handle: AtomicUsize,
    /// Nothing will join the thread (see [`pthread_detach`]).
    detached: AtomicBool,
}

static ROSTER: [Member; ROSTER_SIZE] = [const {
    Member {
        scope: AtomicU32::new(0),
        tid: AtomicI32::new(0),
        low: AtomicUsize::new(0),
        end: AtomicUsize::new(0),
        name: AtomicUsize::new(0),
        tester: AtomicBool::new(false),
        handle: AtomicUsize::new(0),
        detached: AtomicBool::new(false),
    }
}; ROSTER_SIZE];

/// The key whose destructor takes an exiting thread off the roster.
static ROSTER_KEY: AtomicUsize = AtomicUsize::new(usize::MAX);

extern "C" fn left_roster(_: *mut c_void) {
    if let Some(member) = own_entry() {
        member.name.store(0, Ordering::Release);
        member.handle.store(0, Ordering::Release);
        member.tid.store(0, Ordering::Release);
        member.scope.store(0, Ordering::Release);
    }
}

/// The calling thread's roster entry, if it is listed.
fn own_entry() -> Option<&'static Member> {
    let tid = super::current_thread_id() as i32;
    ROSTER.iter().find(|member| {
        member.tid.load(Ordering::Acquire) == tid && member.scope.load(Ordering::Acquire) != 0
    })
}

/// Claims a free roster entry for a thread about to be created; `None` if the roster is full.
/// The entry is not listed (its scope reads [`WRITING`]) until the thread fills it in
/// [`join_roster`]; its creator fills the thread's id.
fn claim_entry(detached: bool) -> Option<&'static Member> {
    let member = ROSTER.iter().find(|m| {
        m.scope
            .compare_exchange(0, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    })?;
    member.tid.store(0, Ordering::Relaxed);
    member.handle.store(0, Ordering::Relaxed);
    member.name.store(0, Ordering::Relaxed);
    member.tester.store(false, Ordering::Relaxed);
    member.detached.store(detached, Ordering::Release);
    Some(member)
}

/// Lists the calling thread, in the entry its creator claimed, under `scope` until it exits.
/// Never allocates.
fn join_roster(member: &'static Member, scope: u32) {
    let Some((low, end)) = super::scan::own_stack() else {
        member.scope.store(0, Ordering::Release);
        return;
    };
    let tid = super::current_thread_id() as i32;
    member.tid.store(tid, Ordering::Relaxed);
    // The same id the creator stores; whichever lands last, it is this thread's.
    // SAFETY: `pthread_self` has no preconditions.
    member
        .handle
        .store(unsafe { libc::pthread_self() } as usize, Ordering::Release);
    member.low.store(low, Ordering::Relaxed);
    member.end.store(end, Ordering::Relaxed);
    member.scope.store(scope, Ordering::Release);
    if !at_exit(&ROSTER_KEY, left_roster, 1) {
        member.tid.store(0, Ordering::Release);
        member.scope.store(0, Ordering::Release);
    }
}

/// In a forked child: only the thread that forked exists, under a new id, so no entry
/// describes a thread of this process. Without this the child's checks watched the parent's
/// threads, whose ids it cannot read, for the whole settling time.
pub(crate) fn forget_roster_after_fork() {
    for member in &ROSTER {
        member.name.store(0, Ordering::Relaxed);
        member.handle.store(0, Ordering::Relaxed);
        member.tid.store(0, Ordering::Relaxed);
        member.scope.store(0, Ordering::Release);
    }
}

/// A listed thread: its kernel id and its stack as [low, end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Listed {
    pub(crate) tid: i32,
    pub(crate) low: usize,
    pub(crate) end: usize,
    /// The scope it started in, or [`OUTSIDE_CHECKS`].
    pub(crate) scope: u32,
    /// Nothing will join it: it serves the process, not the check that started it.
    pub(crate) detached: bool,
}

/// The threads listed under `scope` now (started inside it and not yet exited).
pub(crate) fn listed_under(scope: u32) -> Vec<Listed> {
    listed_where(|listed_scope, _| scope != 0 && listed_scope == scope)
}

/// The threads listed now under anything but `scope` (started outside every check, inside
/// another one, or inside one that has ended) that never ran a check as their own. A test
/// thread is left out even once its check is over: its stack holds copies of its own test's
/// addresses, which the allocator hands out again to the tests still running.
pub(crate) fn listed_beside(scope: u32) -> Vec<Listed> {
    listed_where(|listed_scope, tester| listed_scope != scope && !tester)
}

fn listed_where(wanted: impl Fn(u32, bool) -> bool) -> Vec<Listed> {
    let mut listed = Vec::new();
    for member in &ROSTER {
        let scope = member.scope.load(Ordering::Acquire);
        if scope == 0 || scope == WRITING || !wanted(scope, member.tester.load(Ordering::Relaxed)) {
            continue;
        }
        let found = Listed {
            tid: member.tid.load(Ordering::Relaxed),
            low: member.low.load(Ordering::Relaxed),
            end: member.end.load(Ordering::Relaxed),
            scope,
            detached: member.detached.load(Ordering::Acquire),
        };
        // An entry freed and taken again while it was read is skipped.
        if member.scope.load(Ordering::Acquire) == scope
            && member.tid.load(Ordering::Relaxed) == found.tid
        {
            listed.push(found);
        }
    }
    listed
}
