//! What the allocator does with each block: the per-thread and process-wide scope state, and
//! the bookkeeping of blocks made inside a scope.
//!
//! The idle path (no check anywhere) reads only the thread's own const-initialised block
//! (`raw::local`): its byte of slow bits, which checks set in every thread's block when they
//! start and clear when they end, and which also says whether the thread's own scope word is
//! non-zero. Nothing here takes a lock that allocates, panics or formats.
#![forbid(unsafe_code)]

use crate::raw::local;
use crate::raw::stack;
use crate::raw::table::{self, Record};
use core::cell::Cell;
use core::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// A scope id carries what the hot path needs to know without a lookup: bit 0, capture stacks;
/// bit 1, keep allocation statistics (budgets); bits 2..9, the scope's slot in [`SLOTS`];
/// the rest, a counter that makes ids unique.
pub(crate) const STACKS_BIT: u32 = 1;
const STATS_BIT: u32 = 2;
const SLOT_SHIFT: u32 = 2;
const SLOT_COUNT: usize = 128;
const COUNTER_SHIFT: u32 = 9;
/// A slot's id while it is being claimed, and while its scope's records are being drained
/// after the scope ended: not active, not free. Real ids stay below both (see `Scope::new`).
const CLAIMING: u32 = u32::MAX;
const DRAINING: u32 = u32::MAX - 1;

/// What a record stores of its scope, in 8 bits: the slot (bits 1..8) and the statistics bit
/// (bit 0), so a free knows without a lookup whether it must update statistics. Slots are
/// held until their scope's records are drained, so a tag names one scope at a time.
fn tag_of(scope: u32) -> u8 {
    let slot = (scope >> SLOT_SHIFT) as usize & (SLOT_COUNT - 1);
    ((slot as u8) << 1) | u8::from(scope & STATS_BIT != 0)
}

/// The tag of blocks that a finished check left reachable (a cache it filled, a lazy static it
/// initialised): slot 0, which no scope takes. Later checks scan through these blocks: an entry
/// that a test adds to a cache another check created is reachable through the cache's table,
/// which is such a block.
pub(crate) const RETAINED_TAG: u8 = table::FILTERED_TAG;

/// The slot no scope takes, whose tag marks blocks that a finished whole-test check
/// (`LEAKCHECK_ALL_TESTS`) found lost and that wait for the end of the process: blocks the test
/// runner made on the test's thread after the body (the copy of its captured output, the block
/// of the channel that carries its result) are freed by then, leaks are not.
const PENDING_SLOT: usize = SLOT_COUNT - 1;

/// The tag of blocks waiting for the end of the process (see [`PENDING_SLOT`]).
pub(crate) const PENDING_TAG: u8 = (PENDING_SLOT as u8) << 1;

fn slot_of(scope: u32) -> &'static Slot {
    &SLOTS[((scope >> SLOT_SHIFT) as usize) & (SLOT_COUNT - 1)]
}

fn slot_of_tag(tag: u8) -> &'static Slot {
    &SLOTS[(tag >> 1) as usize]
}

/// Per-scope state shared by every thread allocating into the scope. Statistics are only
/// kept (and their cache line only touched) for scopes with budgets.
#[repr(align(64))]
struct Slot {
    /// The scope using this slot, 0 when free.
    id: AtomicU32,
    allocations: AtomicU64,
    bytes: AtomicU64,
    live: AtomicU64,
    peak: AtomicU64,
    /// Live bytes when the current run started.
    start_live: AtomicU64,
    /// Threads started inside the scope that have not finished exiting.
    threads_alive: AtomicU32,
    /// The allocation number whose stack to keep (`max_allocs + 1`), 0 for none.
    watch_allocation: AtomicU64,
    watched_stack: AtomicU32,
}

static SLOTS: [Slot; SLOT_COUNT] = [const {
    Slot {
        id: AtomicU32::new(0),
        allocations: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        live: AtomicU64::new(0),
        peak: AtomicU64::new(0),
        start_live: AtomicU64::new(0),
        threads_alive: AtomicU32::new(0),
        watch_allocation: AtomicU64::new(0),
        watched_stack: AtomicU32::new(0),
    }
}; SLOT_COUNT];

/// What a scope allocated, for budgets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ScopeStats {
    /// Allocations (and reallocations of its own blocks) made in the scope.
    pub(crate) allocations: u64,
    /// Bytes allocated (a reallocation counts what it grew by).
    pub(crate) bytes: u64,
    /// Highest live bytes of the scope's own blocks, above the level when the run started.
    pub(crate) peak: u64,
    /// Stack of the allocation numbered `watch_allocation`, if one was made.
    pub(crate) watched_stack: u32,
}

/// What a thread's allocations do, packed in one word so that the hot path tests it once: the
/// scope they belong to (bits 0..32, 0 for none), how many blocks are in force (bits 32..48:
/// non-zero inside leakcheck's own bookkeeping, while a report is built, inside `ignore`), and
/// whether the scope came from the thread that created this one (bit 48; such a scope may end
/// while this thread runs, so it is checked against the active scopes before each record).
/// Zero means idle; whether it is zero is also a slow bit (`local::SLOW_OWN`), so that the
/// common case costs one test of one byte, shared with the process-wide bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ThreadState(u64);

impl ThreadState {
    const IDLE: ThreadState = ThreadState(0);
    const BLOCK: u64 = 1 << 32;
    const BLOCKS: u64 = 0xffff << 32;
    const INHERITED: u64 = 1 << 48;

    fn own(scope: u32) -> ThreadState {
        ThreadState(scope as u64)
    }

    fn inherited(scope: u32) -> ThreadState {
        ThreadState(scope as u64 | Self::INHERITED)
    }

    fn blocked_idle() -> ThreadState {
        ThreadState(Self::BLOCK)
    }

    fn scope(self) -> u32 {
        self.0 as u32
    }

    fn is_blocked(self) -> bool {
        self.0 & Self::BLOCKS != 0
    }

    /// Recording into its own scope, not blocked: the scope id is the whole word.
    fn records_own(self) -> bool {
        self.0 >> 32 == 0 && self.0 != 0
    }

    /// Another block in force (saturating: 65,535 nested blocks stay blocked).
    fn with_block(self) -> ThreadState {
        if self.0 & Self::BLOCKS == Self::BLOCKS {
            self
        } else {
            ThreadState(self.0 + Self::BLOCK)
        }
    }

    fn without_block(self) -> ThreadState {
        if self.is_blocked() {
            ThreadState(self.0 - Self::BLOCK)
        } else {
            self
        }
    }
}

/// The calling thread's state (blocked, as a thread should be whose thread-locals are gone,
/// where they cannot be reached).
#[inline(always)]
fn thread_state() -> ThreadState {
    local::with(
        |local| ThreadState(local.state()),
        ThreadState::blocked_idle(),
    )
}

fn set_thread_state(state: ThreadState) {
    local::with(|local| local.set_state(state.0), ());
}

fn update_thread_state(update: impl FnOnce(ThreadState) -> ThreadState) {
    local::with(
        |local| local.set_state(update(ThreadState(local.state())).0),
        (),
    );
}

thread_local! {
    /// 0 unknown, 1 the process's main thread, 2 any other thread.
    static ROLE: Cell<u8> = const { Cell::new(0) };
}

/// A process-wide scope (one test per process, as under nextest): every thread but the main
/// one allocates into it.
static PROCESS_SCOPE: AtomicU32 = AtomicU32::new(0);
/// The process-wide scope takes the main thread's blocks too (a `Session`).
static PROCESS_INCLUDES_MAIN: AtomicBool = AtomicBool::new(false);
/// Scopes armed now (checks and sessions running).
static OPEN_SCOPES: AtomicU32 = AtomicU32::new(0);
/// Scopes that are armed or still have records. While 0, frees skip the table entirely.
static TABLE_USERS: AtomicUsize = AtomicUsize::new(0);
/// Whether some check has retained blocks; it then holds one count of `TABLE_USERS` for good,
/// so frees keep looking their blocks up.
static RETAINING: AtomicBool = AtomicBool::new(false);
/// The same for blocks under [`PENDING_TAG`].
static PENDING: AtomicBool = AtomicBool::new(false);
/// Blocks that should have been tracked but whose record could not be stored (out of memory).
static UNTRACKED: AtomicU64 = AtomicU64::new(0);
/// Blocks recorded without their stack because the stack store could not take it.
static STACKLESS: AtomicU64 = AtomicU64::new(0);
static NEXT_SCOPE: AtomicU32 = AtomicU32::new(1);

/// A block was allocated. The idle path (no check on this thread, none process-wide, the
/// thread registered) is one test of the thread's slow bits (and, with the `stats` feature,
/// two counter bumps), all addressed from the thread pointer; everything else is one call out
/// of line, so that the allocator's `alloc` stays small enough to inline into its callers.
/// Returns whether the block is recorded under a scope (the allocator then hands it out
/// zeroed). Callers must use the answer after the call, so that the call is never a tail call
/// that pops the allocating function's frame before its stack is taken (`raw::alloc`'s
/// `keep_frame` says why).
///
/// Inlined only where leakcheck is built without debug assertions (release). An `#[inline]`
/// function is compiled into each crate that calls it, with that crate's optimisation level:
/// in a `cargo test` build that is the user's crate at opt-level 0, whatever the manual's
/// `opt-level = 3` for leakcheck says, and this path, its thread-local access and its atomic
/// loads became a dozen unoptimised calls per allocation. The same holds for [`freeing`],
/// [`reallocating`] and [`reallocated`].
#[cfg_attr(not(debug_assertions), inline)]
#[cfg_attr(debug_assertions, inline(never))]
pub(crate) fn allocated(addr: usize, size: usize) -> bool {
    let counted = local::with(
        |local| {
            // SLOW_OWN stands for "state != IDLE", so the word itself need not be loaded.
            let idle = !local.is_slow(local::SLOW_ALLOC | local::SLOW_OWN);
            if idle {
                // leakcheck::stats() (feature `stats`)
                crate::counters::count_allocation(local, size);
            }
            idle
        },
        false,
    );
    if counted {
        return false;
    }
    allocated_out_of_line(addr, size)
}

// The out-of-line paths are `#[cold]`: the idle path's branch to them is then the unlikely
// one (stable Rust has no `likely`), and falls through without a jump.
#[cold]
#[inline(never)]
fn allocated_out_of_line(addr: usize, size: usize) -> bool {
    crate::counters::allocated(size); // leakcheck::stats() (feature `stats`)
    let state = thread_state();
    if state == ThreadState::IDLE {
        if PROCESS_SCOPE.load(Ordering::Relaxed) != 0 {
            return record_process_wide(addr, size);
        }
        // Here once after a process-wide scope ends: its own bit, left on while the scope
        // made every allocation slow (`Local::set_state`), goes off.
        local::with(local::Local::settle_own_bit, ());
        false
    } else if state.records_own() {
        record(addr, size, state.scope(), false);
        true
    } else if !state.is_blocked() && state.scope() != 0 {
        record_inherited(addr, size, state.scope())
    } else {
        false
    }
}

/// A block is being freed. While no scope has records (and the thread is registered), that
/// is one test of the thread's slow bits (and, with the `stats` feature, two counter bumps).
#[cfg_attr(not(debug_assertions), inline)]
#[cfg_attr(debug_assertions, inline(never))]
pub(crate) fn freeing(addr: usize, size: usize) {
    let counted = local::with(
        |local| {
            let fast = !local.is_slow(local::SLOW_FREE);
            if fast {
                // leakcheck::stats() (feature `stats`)
                crate::counters::count_deallocation(local, size);
            }
            fast
        },
        false,
    );
    if !counted {
        freeing_out_of_line(addr, size);
    }
}

#[cold]
#[inline(never)]
fn freeing_out_of_line(addr: usize, size: usize) {
    // leakcheck::stats() (feature `stats`)
    crate::counters::deallocated(size);
    // No test of TABLE_USERS first: a thread gets here mostly because it is not 0, and a
    // shard without records costs a hash and a load.
    if let Some(record) = table::remove(addr) {
        if record.tag & 1 != 0 {
            freed_with_stats(record.tag, record.size);
        }
    }
}

/// Which operations must leave the fast path now: every thread's slow bits follow this,
/// through [`local::refresh`], after each change of [`PROCESS_SCOPE`] or [`TABLE_USERS`].
fn slow_bits() -> u8 {
    let mut bits = 0;
    if PROCESS_SCOPE.load(Ordering::SeqCst) != 0 {
        bits |= local::SLOW_ALLOC;
    }
    if TABLE_USERS.load(Ordering::SeqCst) != 0 {
        bits |= local::SLOW_FREE;
    }
    bits
}

/// Brings every thread's slow bits in line with [`slow_bits`]. Called after the change, before
/// anything depends on it: a scope's records are made only after its `TABLE_USERS` count is in
/// every thread's bits, so any thread that frees one of its blocks looks the block up.
fn refresh_slow_paths() {
    local::refresh(slow_bits);
}

/// Takes the block's fields, not its record: a record is passed through memory, and the
/// free path would build one on the stack for every block, with or without statistics.
#[inline(never)]
fn freed_with_stats(tag: u8, size: usize) {
    let slot = slot_of_tag(tag);
    if is_live_id(slot.id.load(Ordering::Relaxed)) {
        slot.live.fetch_sub(size as u64, Ordering::Relaxed);
    }
}

/// Whether a slot's id belongs to a running scope.
fn is_live_id(id: u32) -> bool {
    id != 0 && id < DRAINING
}

/// Takes the record of a block about to be reallocated, before the inner allocator can give
/// its address to another thread.
#[cfg_attr(not(debug_assertions), inline)]
#[cfg_attr(debug_assertions, inline(never))]
pub(crate) fn reallocating(addr: usize) -> Option<Record> {
    if TABLE_USERS.load(Ordering::Relaxed) != 0 {
        take_record(addr)
    } else {
        None
    }
}

/// The table's removal, out of line: `reallocating` is inlined into every `realloc` call site.
#[cold]
#[inline(never)]
fn take_record(addr: usize) -> Option<Record> {
    table::remove(addr)
}

/// A reallocated block keeps its original scope and stack, with its new address and size. A
/// failed reallocation leaves the old block live, so its record goes back.
#[cfg_attr(not(debug_assertions), inline)]
#[cfg_attr(debug_assertions, inline(never))]
pub(crate) fn reallocated(old: Option<Record>, old_size: usize, new_addr: usize, new_size: usize) {
    if new_addr != 0 {
        crate::counters::reallocated(old_size, new_size); // leakcheck::stats() (feature `stats`)
    }
    if let Some(old) = old {
        if new_addr != 0 && old.tag & 1 != 0 {
            reallocated_with_stats(&old, new_size);
        }
        let record = if new_addr == 0 {
            old
        } else {
            Record {
                addr: new_addr,
                size: new_size,
                ..old
            }
        };
        put_back(record);
    }
}

/// [`store`], out of line: `reallocated` is inlined into every `realloc` call site.
#[cold]
#[inline(never)]
fn put_back(record: Record) {
    if record.tag == RETAINED_TAG {
        table::mark_filtered_addr(record.addr);
    }
    store(record);
}

#[inline(never)]
fn reallocated_with_stats(old: &Record, new_size: usize) {
    let slot = slot_of_tag(old.tag);
    if !is_live_id(slot.id.load(Ordering::Relaxed)) {
        return;
    }
    slot.allocations.fetch_add(1, Ordering::Relaxed);
    if new_size > old.size {
        let grown = (new_size - old.size) as u64;
        slot.bytes.fetch_add(grown, Ordering::Relaxed);
        let live = slot.live.fetch_add(grown, Ordering::Relaxed) + grown;
        slot.peak.fetch_max(live, Ordering::Relaxed);
    } else {
        slot.live
            .fetch_sub((old.size - new_size) as u64, Ordering::Relaxed);
    }
}

#[inline(never)]
fn record_process_wide(addr: usize, size: usize) -> bool {
    if is_main_thread() && !PROCESS_INCLUDES_MAIN.load(Ordering::Relaxed) {
        return false;
    }
    // Pairs with the release store in `arm`: the scope's entry in TABLE_USERS is visible
    // before this block's record, so whichever thread frees the block looks it up.
    fence(Ordering::Acquire);
    let scope = PROCESS_SCOPE.load(Ordering::Relaxed);
    if scope != 0 {
        record(addr, size, scope, false);
        if slot_of(scope).id.load(Ordering::SeqCst) != scope {
            // The check ended while the record was made (its drain may have missed it, and
            // its slot may serve another check next): take it back.
            table::remove(addr);
        }
    }
    scope != 0
}

/// Records a block made by a thread started inside `scope`. While another check is open, that
/// thread may be running the other check's work (a pool or an executor the first test to need
/// it started, serving every test after it): the record says so (`Record::shared`), and the
/// check decides at its end whether that matters (see `check::Runner::judge`).
#[inline(never)]
fn record_inherited(addr: usize, size: usize, scope: u32) -> bool {
    if is_active(scope) {
        let shared = OPEN_SCOPES.load(Ordering::Relaxed) > 1;
        record(addr, size, scope, shared);
        if slot_of(scope).id.load(Ordering::SeqCst) != scope {
            // The check ended while the record was made (its drain may have missed it).
            table::remove(addr);
        }
        true
    } else {
        // The check that started this thread is over: the thread belongs to no check now,
        // and to the one that owns the process, if one does.
        set_thread_state(ThreadState::IDLE);
        PROCESS_SCOPE.load(Ordering::Relaxed) != 0 && record_process_wide(addr, size)
    }
}

fn is_active(scope: u32) -> bool {
    slot_of(scope).id.load(Ordering::Acquire) == scope
}

/// Whether `scope` is a check still running (not one that ended, nor a made-up id).
pub(crate) fn is_running(scope: u32) -> bool {
    scope & !((1 << COUNTER_SHIFT) - 1) != 0 && is_active(scope)
}

/// The scope a thread created now should start in: the creator's, if it is inside an
/// inheritable check and not blocked.
pub(crate) fn inheritable_scope() -> u32 {
    let state = thread_state();
    if !state.is_blocked() && state.scope() != 0 && is_active(state.scope()) {
        state.scope()
    } else {
        0
    }
}

/// The process-wide scope a thread created now allocates into, or 0 (none, or the creator is
/// inside `ignore`).
pub(crate) fn process_scope_for_new_thread() -> u32 {
    if thread_state().is_blocked() {
        return 0;
    }
    let scope = PROCESS_SCOPE.load(Ordering::Relaxed);
    if scope != 0 && is_active(scope) {
        scope
    } else {
        0
    }
}

/// Whether a thread created now must start inside `ignore`: its creator is in `ignore` while a
/// process-wide scope would otherwise record the new thread.
pub(crate) fn new_threads_start_ignored() -> bool {
    PROCESS_SCOPE.load(Ordering::Relaxed) != 0 && thread_state().is_blocked()
}

/// Called first thing on a thread created inside `ignore`.
pub(crate) fn start_ignored() {
    set_thread_state(ThreadState::blocked_idle());
}

/// A thread is about to start inside `scope`; false if the scope is gone.
pub(crate) fn inherited_thread_starting(scope: u32) -> bool {
    let slot = slot_of(scope);
    slot.threads_alive.fetch_add(1, Ordering::AcqRel);
    if slot.id.load(Ordering::Acquire) == scope {
        true
    } else {
        inherited_thread_exited(scope);
        false
    }
}

/// A thread started inside `scope` has finished exiting (or never started).
pub(crate) fn inherited_thread_exited(scope: u32) {
    let slot = slot_of(scope);
    // The slot may belong to another scope by now: never let the count wrap below zero.
    let _ = slot
        .threads_alive
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
}

/// Called first thing on a thread created inside a check.
pub(crate) fn inherit(scope: u32) {
    if is_active(scope) {
        set_thread_state(ThreadState::inherited(scope));
    }
}

/// Records a block under `scope`. With stacks off and no budgets the record is the block and
/// its scope's tag, stored in the caller (each recording path is a function of its own, and a
/// call more cost a tracked pair ~15 instructions); the rest is [`record_with_extras`].
#[inline(always)]
fn record(addr: usize, size: usize, scope: u32, shared: bool) {
    if scope & (STACKS_BIT | STATS_BIT) == 0 {
        store(Record {
            addr,
            size,
            stack: 0,
            tag: tag_of(scope),
            shared,
        });
    } else {
        record_with_extras(addr, size, scope, shared);
    }
}

/// [`record`] with the allocation's stack, or statistics for budgets, or both.
#[inline(never)]
fn record_with_extras(addr: usize, size: usize, scope: u32, shared: bool) {
    let stack = if scope & STACKS_BIT != 0 {
        // The slow unwinder (libgcc's) may allocate: not into this scope.
        let _blocked = Block::new();
        // A local of this function (or of the one it is inlined into): the frames below
        // it are the capture's own, and the return address into its caller is stored above
        // it, so the stack starts at the allocator's caller.
        let here = 0u8;
        let id = stack::capture_interned(core::hint::black_box(&here) as *const u8 as usize);
        if id == 0 {
            STACKLESS.fetch_add(1, Ordering::Relaxed);
        }
        id
    } else {
        0
    };
    if scope & STATS_BIT != 0 {
        count(scope, size, stack);
    }
    store(Record {
        addr,
        size,
        stack,
        tag: tag_of(scope),
        shared,
    });
}

fn count(scope: u32, size: usize, stack: u32) {
    let slot = slot_of(scope);
    if slot.id.load(Ordering::Relaxed) != scope {
        return;
    }
    let number = slot.allocations.fetch_add(1, Ordering::Relaxed) + 1;
    if number == slot.watch_allocation.load(Ordering::Relaxed) {
        slot.watched_stack.store(stack, Ordering::Relaxed);
    }
    slot.bytes.fetch_add(size as u64, Ordering::Relaxed);
    let live = slot.live.fetch_add(size as u64, Ordering::Relaxed) + size as u64;
    slot.peak.fetch_max(live, Ordering::Relaxed);
}

/// Inlined into the recording paths, each a function of its own (see [`table::insert`]).
#[inline(always)]
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
        update_thread_state(ThreadState::with_block);
        Block(core::marker::PhantomData)
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        update_thread_state(ThreadState::without_block);
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

/// More checks run at once than leakcheck has slots for.
#[derive(Debug)]
pub(crate) struct TooManyScopes;

/// How a new scope records.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ScopeSettings {
    pub(crate) stacks: bool,
    /// Keep [`ScopeStats`] (budgets).
    pub(crate) stats: bool,
    /// Keep the stack of this allocation (1-based), e.g. the first past `max_allocs`.
    pub(crate) watch_allocation: Option<u64>,
    /// One test per process: every thread but the main one records into the scope.
    pub(crate) process_wide: bool,
}

impl Scope {
    pub(crate) fn new(settings: ScopeSettings) -> Result<Scope, TooManyScopes> {
        crate::raw::thread_inheritance();
        {
            // glibc keeps the fork handler in memory it allocates once: not a test's leak.
            let _blocked = Block::new();
            crate::raw::prepare_for_fork();
        }
        // At most 2^23 - 2, so every id stays below DRAINING and CLAIMING.
        let counter =
            NEXT_SCOPE.fetch_add(1, Ordering::Relaxed) % ((1 << (32 - COUNTER_SHIFT)) - 2) + 1;
        let flags = if settings.stacks { STACKS_BIT } else { 0 }
            | if settings.stats { STATS_BIT } else { 0 };
        // Slot 0 is never a scope's: its tag marks retained blocks. Nor is slot 64, whose bit
        // in the record table's shard masks is slot 0's (`table::FILTERED_TAG`), nor the
        // pending slot.
        let (index, id) = SLOTS
            .iter()
            .enumerate()
            .filter(|(index, _)| index % 64 != 0 && *index != PENDING_SLOT)
            .find_map(|(index, slot)| {
                let id = (counter << COUNTER_SHIFT) | ((index as u32) << SLOT_SHIFT) | flags;
                // Claim with a placeholder so the statistics are reset before the id is live.
                slot.id
                    .compare_exchange(0, CLAIMING, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                    .then_some((index, id))
            })
            .ok_or(TooManyScopes)?;
        let slot = &SLOTS[index];
        for counter in [
            &slot.allocations,
            &slot.bytes,
            &slot.live,
            &slot.peak,
            &slot.start_live,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        slot.watch_allocation
            .store(settings.watch_allocation.unwrap_or(0), Ordering::Relaxed);
        slot.watched_stack.store(0, Ordering::Relaxed);
        slot.threads_alive.store(0, Ordering::Relaxed);
        slot.id.store(id, Ordering::Release);
        OPEN_SCOPES.fetch_add(1, Ordering::Relaxed);
        TABLE_USERS.fetch_add(1, Ordering::SeqCst);
        // A nested check inside a process-wide one stays per-thread.
        let process_wide = settings.process_wide
            && PROCESS_SCOPE
                .compare_exchange(0, id, Ordering::Release, Ordering::Relaxed)
                .is_ok();
        refresh_slow_paths();
        Ok(Scope {
            id,
            process_wide,
            done: false,
        })
    }

    /// Makes this thread's allocations belong to the scope until the guard drops; the thread's
    /// previous scope (an outer check) comes back then.
    /// A check inside `ignore` still checks: entering also lifts the block until the guard
    /// drops.
    pub(crate) fn enter(&self) -> Entered {
        let previous = thread_state();
        crate::raw::threads::list_as_test_thread();
        set_thread_state(ThreadState::own(self.id));
        Entered {
            previous,
            _not_send: core::marker::PhantomData,
        }
    }

    /// Makes this thread's allocations belong to the scope from now on, with no guard: for a
    /// check that spans the rest of a test's thread (`LEAKCHECK_ALL_TESTS`), which no frame of
    /// ours encloses. [`Scope::leave`] ends it.
    pub(crate) fn enter_for_good(&self) {
        crate::raw::threads::list_as_test_thread();
        set_thread_state(ThreadState::own(self.id));
    }

    /// Ends [`Scope::enter_for_good`] on this thread, if the thread is still in this scope.
    /// (After the thread's thread-locals are gone, its allocations are not recorded anyway.)
    pub(crate) fn leave(&self) {
        update_thread_state(|state| {
            if state.scope() == self.id {
                // Blocks in force stay in force.
                ThreadState(state.0 & ThreadState::BLOCKS)
            } else {
                state
            }
        });
    }

    // ---- sessions ----

    /// Whether this scope got the process (none was process-wide before it).
    pub(crate) fn is_process_wide(&self) -> bool {
        self.process_wide
    }

    /// Makes a process-wide scope take the main thread's blocks too, as a `Session` does.
    pub(crate) fn include_main_thread(&self) {
        if self.process_wide {
            PROCESS_INCLUDES_MAIN.store(true, Ordering::Relaxed);
        }
    }

    // ---- end sessions ----

    /// Whether a block is recorded under this scope (used to prove the allocator is installed).
    pub(crate) fn owns(&self, addr: usize) -> bool {
        table::holds(addr, tag_of(self.id))
    }

    /// The scope's statistics so far (all zero unless it was created with `stats`).
    pub(crate) fn stats(&self) -> ScopeStats {
        let slot = slot_of(self.id);
        ScopeStats {
            allocations: slot.allocations.load(Ordering::Relaxed),
            bytes: slot.bytes.load(Ordering::Relaxed),
            peak: slot
                .peak
                .load(Ordering::Relaxed)
                .saturating_sub(slot.start_live.load(Ordering::Relaxed)),
            watched_stack: slot.watched_stack.load(Ordering::Relaxed),
        }
    }

    /// Starts the statistics afresh for another run of the body: peaks are measured from the
    /// live bytes at this point.
    pub(crate) fn reset_stats(&self) {
        let slot = slot_of(self.id);
        slot.allocations.store(0, Ordering::Relaxed);
        slot.bytes.store(0, Ordering::Relaxed);
        let live = slot.live.load(Ordering::Relaxed);
        slot.peak.store(live, Ordering::Relaxed);
        slot.start_live.store(live, Ordering::Relaxed);
        slot.watched_stack.store(0, Ordering::Relaxed);
    }

    /// The scope's id: threads started inside it are listed under it (`raw::threads`).
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// Waits, up to `grace`, for the threads started inside the scope to finish exiting: a
    /// joined thread has run its closure, but frees its handle and thread-locals a moment
    /// later, and `thread::scope` returns before that.
    pub(crate) fn wait_for_threads(&self, grace: std::time::Duration) {
        let slot = slot_of(self.id);
        let deadline = std::time::Instant::now() + grace;
        while slot.threads_alive.load(Ordering::Acquire) > 0 && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }

    /// Forgets the blocks live under this scope now (a warm-up run's): they stop counting and
    /// their frees are no longer looked up.
    pub(crate) fn forget_live_records(&self) {
        drop(collect(tag_of(self.id), true));
    }

    /// Copies of the records live under this scope now, leaving them in place.
    pub(crate) fn live_records(&self) -> Vec<Record> {
        collect(tag_of(self.id), false)
    }

    /// Stops recording; the records still live under the scope stay in the table (so frees
    /// from other threads keep finding them) until [`Finished::settle`].
    pub(crate) fn finish(mut self) -> Finished {
        self.done = true;
        self.disarm();
        Finished {
            id: self.id,
            records: collect(tag_of(self.id), false),
            settled: false,
        }
    }

    fn disarm(&mut self) {
        OPEN_SCOPES.fetch_sub(1, Ordering::Relaxed);
        if self.process_wide {
            PROCESS_INCLUDES_MAIN.store(false, Ordering::Relaxed);
            PROCESS_SCOPE.store(0, Ordering::Release);
            refresh_slow_paths();
        }
        // Inactive before the drain: a thread that inherited the scope and is recording right
        // now sees it gone when it checks again after its insert, and takes its record back,
        // so nothing is left behind for good.
        // Draining, not free: no other scope may take the slot (and its tag) while records
        // with that tag are still in the table.
        slot_of(self.id).id.store(DRAINING, Ordering::SeqCst);
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            self.disarm();
            drain_and_release(self.id);
        }
    }
}

/// Copies (or with `drain`, takes) every record under `scope`.
fn collect(tag: u8, drain: bool) -> Vec<Record> {
    let _blocked = Block::new();
    let mut records = Vec::new();
    // Most checks leave a handful of blocks: the first pass over the 4,096 shards takes them
    // with room to spare, and only a bigger set costs a counting pass (then a second try).
    let mut room = FIRST_COLLECT_ROOM;
    loop {
        let mut batch = Vec::with_capacity(room);
        let complete = table::collect_tag(tag, &mut batch, drain);
        // A drained batch is gone from the table and must be kept; an incomplete copy is
        // simply taken again, whole, with more room.
        if drain || complete {
            records.append(&mut batch);
        }
        if complete {
            return records;
        }
        room = table::count_tag(tag) + 16;
    }
}

/// Records the first collecting pass makes room for.
const FIRST_COLLECT_ROOM: usize = 256;

fn drain_and_release(scope: u32) {
    drop(collect(tag_of(scope), true));
    slot_of(scope).id.store(0, Ordering::SeqCst);
    TABLE_USERS.fetch_sub(1, Ordering::SeqCst);
    refresh_slow_paths();
}

/// A disarmed scope whose leftover blocks are still in the table, waiting to be judged.
pub(crate) struct Finished {
    id: u32,
    records: Vec<Record>,
    settled: bool,
}

impl Finished {
    /// The scope's id: threads started inside it are listed under it (`raw::threads`).
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// The blocks left live under the scope when it was disarmed.
    pub(crate) fn records(&self) -> &[Record] {
        &self.records
    }

    /// Whether `record`'s block is still live and still this scope's (not freed since the
    /// scope was disarmed, by any thread).
    pub(crate) fn still_live(&self, record: &Record) -> bool {
        table::holds(record.addr, tag_of(self.id))
    }

    /// Keeps the blocks at `addresses` (of this scope's) as [`RETAINED_TAG`] blocks, for later
    /// checks to scan through, and forgets the rest.
    pub(crate) fn settle(mut self, addresses: impl IntoIterator<Item = usize>) {
        let _blocked = Block::new();
        self.settled = true;
        let mut addresses = addresses.into_iter().peekable();
        if addresses.peek().is_some() && !RETAINING.swap(true, Ordering::SeqCst) {
            TABLE_USERS.fetch_add(1, Ordering::SeqCst);
            refresh_slow_paths();
        }
        for addr in addresses {
            // A block freed since the copy has no record left to retag: nothing to keep.
            table::retag(addr, tag_of(self.id), RETAINED_TAG);
        }
        drain_and_release(self.id);
    }
}

impl Drop for Finished {
    fn drop(&mut self) {
        if !self.settled {
            self.settled = true;
            drain_and_release(self.id);
        }
    }
}

impl Finished {
    /// Like [`Finished::settle`] for the blocks at `reachable`, and moves the blocks at `lost`
    /// under [`PENDING_TAG`]; returns, for each of `lost`, whether it was moved (a block freed
    /// since the copy has no record left).
    pub(crate) fn settle_pending(
        self,
        reachable: impl IntoIterator<Item = usize>,
        lost: &[usize],
    ) -> Vec<bool> {
        let moved = {
            let _blocked = Block::new();
            if !lost.is_empty() && !PENDING.swap(true, Ordering::SeqCst) {
                TABLE_USERS.fetch_add(1, Ordering::SeqCst);
                refresh_slow_paths();
            }
            lost.iter()
                .map(|&addr| table::retag(addr, tag_of(self.id), PENDING_TAG))
                .collect()
        };
        self.settle(reachable);
        moved
    }
}

/// Whether the block at `addr` is still live and still waiting under [`PENDING_TAG`].
pub(crate) fn still_pending(addr: usize) -> bool {
    PENDING.load(Ordering::Relaxed) && table::holds(addr, PENDING_TAG)
}

/// Whether the calling thread is the process's main thread.
pub(crate) fn on_main_thread() -> bool {
    is_main_thread()
}

/// Copies of the records of every other check running now, or ended and still being judged.
pub(crate) fn records_of_other_checks(scope: u32) -> Vec<Record> {
    let mut records = Vec::new();
    let own = core::ptr::from_ref(slot_of(scope));
    for (index, slot) in SLOTS.iter().enumerate() {
        let id = slot.id.load(Ordering::Acquire);
        if core::ptr::eq(slot, own) {
            // The caller's own check, whose slot is draining while it is judged.
        } else if is_live_id(id) {
            records.append(&mut collect(tag_of(id), false));
        } else if id == DRAINING {
            // The ended check's id is gone; its records carry the slot with either
            // statistics bit.
            for tag in [(index as u8) << 1, (index as u8) << 1 | 1] {
                records.append(&mut collect(tag, false));
            }
        }
    }
    records
}

/// Copies of the blocks earlier checks left reachable and that are still live.
pub(crate) fn retained_records() -> Vec<Record> {
    if RETAINING.load(Ordering::Relaxed) {
        collect(RETAINED_TAG, false)
    } else {
        Vec::new()
    }
}

/// A thread inside a [`Scope`]; leaving restores the thread's previous scope.
pub(crate) struct Entered {
    previous: ThreadState,
    _not_send: core::marker::PhantomData<*const ()>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let previous = self.previous;
        set_thread_state(previous);
    }
}

/// Blocks whose record could not be stored so far, process-wide.
pub(crate) fn untracked_so_far() -> u64 {
    UNTRACKED.load(Ordering::Relaxed)
}

/// Blocks recorded without a stack so far because the stack store was full, process-wide.
pub(crate) fn stackless_so_far() -> u64 {
    STACKLESS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::ThreadState;

    #[test]
    fn idle_is_the_only_zero_state_and_blocks_nest() {
        let own = ThreadState::own(0x2a5);
        assert!(own.records_own() && !own.is_blocked() && own.scope() == 0x2a5);
        assert!(!ThreadState::IDLE.records_own());

        let blocked = own.with_block().with_block();
        assert!(blocked.is_blocked() && !blocked.records_own());
        assert_eq!(blocked.scope(), 0x2a5);
        assert!(blocked.without_block().is_blocked());
        assert_eq!(blocked.without_block().without_block(), own);
        assert_eq!(ThreadState::IDLE.without_block(), ThreadState::IDLE);

        let inherited = ThreadState::inherited(u32::MAX - 2);
        assert!(!inherited.records_own() && !inherited.is_blocked());
        assert_eq!(inherited.scope(), u32::MAX - 2);
        assert!(inherited.with_block().is_blocked());
        assert_eq!(inherited.with_block().without_block(), inherited);
        assert_ne!(ThreadState::blocked_idle(), ThreadState::IDLE);
    }

    #[test]
    fn blocks_saturate_instead_of_spilling_into_the_inherited_bit() {
        let mut state = ThreadState::own(7);
        for _ in 0..70_000 {
            state = state.with_block();
        }
        assert!(state.is_blocked());
        assert_eq!(state.scope(), 7);
        assert_eq!(state.0 & ThreadState::INHERITED, 0);
    }
}
