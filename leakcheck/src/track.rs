//! What the allocator does with each block: the per-thread and process-wide scope state, and
//! the bookkeeping of blocks made inside a scope.
//!
//! The idle path (no check anywhere) is one read of a const-initialised thread-local and one
//! relaxed load of a global that only changes when a check starts or ends, so its cache line
//! is shared, never bounced. Nothing here takes a lock that allocates, panics or formats.
#![forbid(unsafe_code)]

use crate::raw::intern::{self, MAX_FRAMES};
use crate::raw::stack;
use crate::raw::table::{self, Record};
use core::cell::Cell;
use core::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// A scope id's low bit says whether its allocations capture stacks, so the hot path needs no
/// lookup to know.
pub(crate) const STACKS_BIT: u32 = 1;

#[derive(Clone, Copy)]
struct ThreadState {
    /// The scope this thread's allocations belong to, 0 for none.
    scope: u32,
    /// Non-zero while this thread must not track: inside leakcheck's own bookkeeping, while a
    /// report is built, inside `ignore`.
    blocked: u32,
    /// The scope came from the thread that created this one; it may end while this thread
    /// runs, so it is checked against the active scopes before each record.
    inherited: bool,
}

thread_local! {
    static THREAD: Cell<ThreadState> = const { Cell::new(ThreadState { scope: 0, blocked: 0, inherited: false }) };
    /// 0 unknown, 1 the process's main thread, 2 any other thread.
    static ROLE: Cell<u8> = const { Cell::new(0) };
}

/// A process-wide scope (one test per process, as under nextest): every thread but the main
/// one allocates into it.
static PROCESS_SCOPE: AtomicU32 = AtomicU32::new(0);
/// Scopes that are armed or still have records. While 0, frees skip the table entirely.
static TABLE_USERS: AtomicUsize = AtomicUsize::new(0);
/// Blocks that should have been tracked but whose record could not be stored (out of memory).
static UNTRACKED: AtomicU64 = AtomicU64::new(0);
static NEXT_SCOPE: AtomicU32 = AtomicU32::new(1);

#[inline]
pub(crate) fn allocated(addr: usize, size: usize) {
    let Ok(state) = THREAD.try_with(Cell::get) else {
        return;
    };
    if state.blocked != 0 {
        return;
    }
    if state.scope != 0 {
        if state.inherited {
            record_inherited(addr, size, state.scope);
        } else {
            record(addr, size, state.scope);
        }
    } else if PROCESS_SCOPE.load(Ordering::Relaxed) != 0 {
        record_process_wide(addr, size);
    }
}

#[inline]
pub(crate) fn freeing(addr: usize) {
    if TABLE_USERS.load(Ordering::Relaxed) != 0 {
        table::remove(addr);
    }
}

/// Takes the record of a block about to be reallocated, before the inner allocator can give
/// its address to another thread.
#[inline]
pub(crate) fn reallocating(addr: usize) -> Option<Record> {
    if TABLE_USERS.load(Ordering::Relaxed) != 0 {
        table::remove(addr)
    } else {
        None
    }
}

/// A reallocated block keeps its original scope and stack, with its new address and size. A
/// failed reallocation leaves the old block live, so its record goes back.
#[inline]
pub(crate) fn reallocated(old: Option<Record>, new_addr: usize, new_size: usize) {
    if let Some(old) = old {
        let record = if new_addr == 0 {
            old
        } else {
            Record {
                addr: new_addr,
                size: new_size,
                ..old
            }
        };
        store(record);
    }
}

#[inline(never)]
fn record_process_wide(addr: usize, size: usize) {
    if is_main_thread() {
        return;
    }
    // Pairs with the release store in `arm`: the scope's entry in TABLE_USERS is visible
    // before this block's record, so whichever thread frees the block looks it up.
    fence(Ordering::Acquire);
    let scope = PROCESS_SCOPE.load(Ordering::Relaxed);
    if scope != 0 {
        record(addr, size, scope);
    }
}

#[inline(never)]
fn record_inherited(addr: usize, size: usize, scope: u32) {
    if is_active(scope) {
        record(addr, size, scope);
    } else {
        // The check that started this thread is over: stop tracking here for good.
        let _ = THREAD.try_with(|t| {
            t.set(ThreadState {
                scope: 0,
                blocked: 0,
                inherited: false,
            })
        });
    }
}

/// Scopes that threads may inherit: registered while armed, so a thread that outlives its
/// check stops recording into it. Scopes beyond the first 128 at once are not inherited.
static ACTIVE_SCOPES: [AtomicU32; 128] = [const { AtomicU32::new(0) }; 128];

fn is_active(scope: u32) -> bool {
    ACTIVE_SCOPES
        .iter()
        .any(|s| s.load(Ordering::Acquire) == scope)
}

fn register_active(scope: u32) -> bool {
    ACTIVE_SCOPES.iter().any(|s| {
        s.compare_exchange(0, scope, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}

fn unregister_active(scope: u32) {
    for s in &ACTIVE_SCOPES {
        let _ = s.compare_exchange(scope, 0, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// The scope a thread created now should start in: the creator's, if it is inside an
/// inheritable check and not blocked.
pub(crate) fn inheritable_scope() -> u32 {
    match THREAD.try_with(Cell::get) {
        Ok(state) if state.blocked == 0 && state.scope != 0 && is_active(state.scope) => {
            state.scope
        }
        _ => 0,
    }
}

/// Called first thing on a thread created inside a check.
pub(crate) fn inherit(scope: u32) {
    if is_active(scope) {
        let _ = THREAD.try_with(|t| {
            t.set(ThreadState {
                scope,
                blocked: 0,
                inherited: true,
            })
        });
    }
}

#[inline(never)]
fn record(addr: usize, size: usize, scope: u32) {
    let _blocked = Block::new();
    let stack = if scope & STACKS_BIT != 0 {
        let mut frames = [0usize; MAX_FRAMES];
        let len = stack::capture(&mut frames);
        intern::intern(&frames[..len])
    } else {
        0
    };
    store(Record {
        addr,
        size,
        stack,
        scope,
    });
}

fn store(record: Record) {
    if !table::insert(record) {
        UNTRACKED.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(target_os = "linux")]
fn is_main_thread() -> bool {
    let role = ROLE.try_with(Cell::get).unwrap_or(2);
    if role != 0 {
        return role == 1;
    }
    let main = std::process::id() as i64 == crate::raw::current_thread_id();
    let _ = ROLE.try_with(|r| r.set(if main { 1 } else { 2 }));
    main
}

#[cfg(not(target_os = "linux"))]
fn is_main_thread() -> bool {
    let _ = &ROLE;
    false
}

/// Suspends tracking on this thread while alive (re-entrancy, report building, `ignore`).
///
/// WARNING: it restores the state in `Drop`, so a panic that unwinds through a blocked region
/// cannot leave the thread blocked for good.
pub(crate) struct Block(core::marker::PhantomData<*const ()>);

impl Block {
    pub(crate) fn new() -> Block {
        let _ = THREAD.try_with(|t| {
            let mut s = t.get();
            s.blocked += 1;
            t.set(s);
        });
        Block(core::marker::PhantomData)
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        let _ = THREAD.try_with(|t| {
            let mut s = t.get();
            s.blocked -= 1;
            t.set(s);
        });
    }
}

/// A check's scope: blocks made by threads that have entered it (and, process-wide, by every
/// thread but the main one) are recorded under it until [`Scope::finish`]. Dropping it
/// unfinished (a panic in the body) discards its records.
pub(crate) struct Scope {
    id: u32,
    process_wide: bool,
    done: bool,
}

impl Scope {
    pub(crate) fn new(stacks: bool, process_wide: bool) -> Scope {
        let n = NEXT_SCOPE.fetch_add(1, Ordering::Relaxed).max(1);
        let id = (n << 1) | if stacks { STACKS_BIT } else { 0 };
        TABLE_USERS.fetch_add(1, Ordering::SeqCst);
        // A nested check inside a process-wide one stays per-thread.
        let process_wide = process_wide
            && PROCESS_SCOPE
                .compare_exchange(0, id, Ordering::Release, Ordering::Relaxed)
                .is_ok();
        if crate::raw::thread_inheritance() {
            register_active(id);
        }
        Scope {
            id,
            process_wide,
            done: false,
        }
    }

    /// Makes this thread's allocations belong to the scope until the guard drops; the thread's
    /// previous scope (an outer check) comes back then.
    pub(crate) fn enter(&self) -> Entered {
        let previous = THREAD
            .try_with(|t| {
                let mut s = t.get();
                let previous = s.scope;
                s.scope = self.id;
                t.set(s);
                previous
            })
            .unwrap_or(0);
        Entered {
            previous,
            _not_send: core::marker::PhantomData,
        }
    }

    /// Whether a block is recorded under this scope (used to prove the allocator is installed).
    pub(crate) fn owns(&self, addr: usize) -> bool {
        table::lookup(addr).is_some_and(|r| r.scope == self.id)
    }

    /// Stops recording and takes every record still live under this scope.
    pub(crate) fn finish(mut self) -> Vec<Record> {
        self.done = true;
        self.disarm_and_drain()
    }

    fn disarm_and_drain(&mut self) -> Vec<Record> {
        unregister_active(self.id);
        if self.process_wide {
            PROCESS_SCOPE.store(0, Ordering::Release);
        }
        let _blocked = Block::new();
        let mut records = Vec::new();
        loop {
            let mut batch = Vec::with_capacity(table::count_scope(self.id) + 16);
            let complete = table::drain_scope(self.id, &mut batch);
            records.append(&mut batch);
            if complete {
                break;
            }
        }
        TABLE_USERS.fetch_sub(1, Ordering::SeqCst);
        records
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            drop(self.disarm_and_drain());
        }
    }
}

/// A thread inside a [`Scope`]; leaving restores the thread's previous scope.
pub(crate) struct Entered {
    previous: u32,
    _not_send: core::marker::PhantomData<*const ()>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let previous = self.previous;
        let _ = THREAD.try_with(|t| {
            let mut s = t.get();
            s.scope = previous;
            t.set(s);
        });
    }
}

/// Blocks whose record could not be stored so far, process-wide.
pub(crate) fn untracked_so_far() -> u64 {
    UNTRACKED.load(Ordering::Relaxed)
}
