//! The record table: which live blocks were allocated under which scope, and from where.
//!
//! A global, fixed set of 4096 shards, each a small hash table (`hashbrown`'s SwissTable)
//! behind its own spin lock, grouped by address region (see [`locate`]) so that two threads
//! rarely touch the same shard and the cache lines of locks do not bounce between cores (a
//! handful of shared shards, as in `dashmap`'s default, costs 12x at two threads on this
//! workload). Slot arrays come straight from `System`, never from the global allocator, so the
//! table cannot re-enter leakcheck, and every growth is fallible: a record that finds no room
//! leaves its block untracked (and counted as such), never aborts the program.

use super::biased::{self, BiasedGuard, BiasedLock, FirstUse};
use allocator_api2::alloc::{AllocError, Allocator};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use hashbrown::hash_table::{Entry, HashTable};
use std::alloc::{GlobalAlloc, Layout, System};

/// One tracked live block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) addr: usize,
    pub(crate) size: usize,
    /// Interned stack id; 0 when no stack was captured.
    pub(crate) stack: u32,
    /// Who the block belongs to; opaque here (see `track::tag_of`).
    pub(crate) tag: u8,
    /// Made by a thread that another check's work may also have run on (see
    /// `track::record_inherited`).
    pub(crate) shared: bool,
}

/// A record as the table stores it, in 16 bytes: the address (56 bits, more than any
/// user-space address on the 64-bit targets leakcheck knows) with the tag above it, and the
/// size (40 bits: 1 TiB) with the stack id (24 bits; the interner holds at most 2^22 stacks)
/// above it. 24-byte records at up to 75% load cost 50 bytes per live block at 1M blocks;
/// these cost about 32. A record that does not fit is not stored: the block goes untracked
/// and the report says so. The stack id's top bit holds [`Record::shared`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct Packed {
    addr_tag: u64,
    size_stack: u64,
}

const ADDR_BITS: u32 = 56;
const SIZE_BITS: u32 = 40;
const ADDR_MASK: u64 = (1 << ADDR_BITS) - 1;
const SIZE_MASK: u64 = (1 << SIZE_BITS) - 1;
/// The interner's ids fit in 22 bits; the word's top bit is the shared flag.
const STACK_BITS: u32 = 64 - SIZE_BITS - 1;
const STACK_MASK: u64 = (1 << STACK_BITS) - 1;
const SHARED_BIT: u32 = 63;

/// An empty slot: address 0.
const EMPTY: Packed = Packed {
    addr_tag: 0,
    size_stack: 0,
};

impl Packed {
    fn pack(record: &Record) -> Option<Packed> {
        let (addr, size, stack) = (record.addr as u64, record.size as u64, record.stack as u64);
        if addr == 0 || addr > ADDR_MASK || size > SIZE_MASK || stack >> STACK_BITS != 0 {
            return None;
        }
        Some(Packed {
            addr_tag: addr | (record.tag as u64) << ADDR_BITS,
            size_stack: size | stack << SIZE_BITS | u64::from(record.shared) << SHARED_BIT,
        })
    }

    fn addr(&self) -> usize {
        (self.addr_tag & ADDR_MASK) as usize
    }

    fn tag(&self) -> u8 {
        (self.addr_tag >> ADDR_BITS) as u8
    }

    fn set_tag(&mut self, tag: u8) {
        self.addr_tag = (self.addr_tag & ADDR_MASK) | (tag as u64) << ADDR_BITS;
    }

    fn unpack(&self) -> Record {
        Record {
            addr: self.addr(),
            size: (self.size_stack & SIZE_MASK) as usize,
            stack: ((self.size_stack >> SIZE_BITS) & STACK_MASK) as u32,
            tag: self.tag(),
            shared: self.size_stack >> SHARED_BIT != 0,
        }
    }
}
const SHARD_BITS: u32 = 12;
const SHARDS: usize = 1 << SHARD_BITS;
/// Emptied tables up to this many buckets keep their array (see [`drain_tag`]).
const KEPT_BUCKETS: usize = 64;

/// A shard's records: a SwissTable (`hashbrown`), whose probes compare 16 control bytes at a
/// time, so finding, inserting and removing a record take no data-dependent branch in the
/// common case. The linear-probing table this replaced mispredicted about once per tracked
/// alloc+free pair (its probe and backward-shift loops ran 0, 1 or 2 steps at random).
type Slots = HashTable<Packed, TableAlloc>;

/// The slot arrays' allocator: `System` directly, so the table never re-enters leakcheck.
#[derive(Default)]
struct TableAlloc;

// SAFETY: `allocate` returns a block from `System` of at least `layout.size()` bytes with
// `layout`'s alignment, or an error; `deallocate` hands back to `System` exactly such blocks,
// with their layout (hashbrown's contract).
unsafe impl Allocator for TableAlloc {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if REFUSE_GROWTH.load(Ordering::Relaxed) || layout.size() == 0 {
            return Err(AllocError);
        }
        // SAFETY: `layout` has a non-zero size (checked above).
        let ptr = unsafe { System.alloc(layout) };
        NonNull::new(ptr)
            .map(|ptr| NonNull::slice_from_raw_parts(ptr, layout.size()))
            .ok_or(AllocError)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: `ptr` came from `allocate` with this `layout` (the caller's contract).
        unsafe { System.dealloc(ptr.as_ptr(), layout) }
    }
}

#[repr(align(64))]
struct Shard {
    /// Biased to the thread that uses the shard (see `raw::biased`): with one thread at work,
    /// no atomic read-modify-write per operation.
    slots: BiasedLock<Slots>,
    /// Which tags the shard may hold records of (bit `tag_bit(tag)`), 0 when it holds none,
    /// readable without the lock. A free of a block that no shard can hold (the common case
    /// outside checks, once some check has retained a lazy static's blocks and frees must look)
    /// costs a load instead of a locked lookup; a check's walks and lookups skip the shards
    /// without its tag, so they neither wait on other checks' threads nor revoke their biases.
    /// Written under the lock, and exact after a drain; in between a bit may stay set after
    /// its last record went. A tracked block's record is stored before its allocation returns,
    /// so every thread that can free the block (or walk for it) sees its bit here.
    tags: AtomicU64,
}

/// A tag's bit in [`Shard::tags`] (tags of scopes 64 slots apart share one).
const fn tag_bit(tag: u8) -> u64 {
    1 << ((tag >> 1) & 63)
}

/// The tag whose records are also marked in [`FILTERED`]: the blocks that finished checks
/// left reachable (`track::RETAINED_TAG`). Its bit in the shards' masks must be its own (the
/// caller never gives slot 64's bit to another tag): a shard whose mask is that bit alone
/// holds no other records.
pub(crate) const FILTERED_TAG: u8 = 0;
const FILTERED_ONLY: u64 = tag_bit(FILTERED_TAG);

/// Which addresses may have a [`FILTERED_TAG`] record, one bit per hash (64 Ki bits, 8 KiB),
/// set before such a record is stored and never cleared. Once a check has retained a lazy
/// static's blocks, every free in the process looks its block up; where the block's shard holds
/// nothing but retained records (common: test threads reuse the memory of earlier tests), a
/// clear bit here ends the lookup without the shard's lock, so it takes no bias and revokes
/// none (each revocation interrupts every running thread).
static FILTERED: [AtomicU64; FILTER_WORDS] = [const { AtomicU64::new(0) }; FILTER_WORDS];
const FILTER_WORDS: usize = 1024;

/// The word and bit of [`FILTERED`] for a hash: bits the table and the shard choice do not
/// use (the table takes the low and top ones, [`locate`] bits 32..38).
fn filter_bit(hash: u64) -> (&'static AtomicU64, u64) {
    let index = (hash >> 40) as usize & (FILTER_WORDS * 64 - 1);
    (&FILTERED[index / 64], 1 << (index % 64))
}

/// Marks a hash in [`FILTERED`] before a record with it is stored under [`FILTERED_TAG`]. Release:
/// a thread that sees the record's shard mask (acquire) sees the mark.
fn mark_filtered(hash: u64) {
    let (word, bit) = filter_bit(hash);
    // Acquire when the bit is already set: the thread that set it released it, and this one
    // passes it on with its own release of the shard's mask.
    if word.load(Ordering::Acquire) & bit == 0 {
        word.fetch_or(bit, Ordering::Release);
    }
}

/// Marks `addr` in [`FILTERED`]: the caller is about to [`insert`] a [`FILTERED_TAG`] record of
/// it (a retained block reallocated). A separate call, not a test in `insert`, whose few
/// instructions cost every tracked allocation a dozen more.
pub(crate) fn mark_filtered_addr(addr: usize) {
    mark_filtered(mix(addr));
}

/// Whether a block's shard may hold its record, from its mask: any bit but
/// [`FILTERED_ONLY`]'s means yes; that bit alone, only if the filter has the hash.
#[inline(always)]
fn may_hold(tags: u64, hash: u64) -> bool {
    tags != 0
        && (tags != FILTERED_ONLY || {
            let (word, bit) = filter_bit(hash);
            word.load(Ordering::Relaxed) & bit != 0
        })
}

impl Shard {
    #[inline]
    fn lock(&self) -> BiasedGuard<'_, Slots> {
        self.slots.lock(biased::my_token())
    }

    /// Locks the shard, if it may hold records of `tag`, without taking its bias: for lookups
    /// and walks, which the shard's own thread should not have to revoke afterwards. A record
    /// stored before the caller started (in happens-before order) shows in `tags`.
    fn lock_if_holds(&self, tag: u8) -> Option<BiasedGuard<'_, Slots>> {
        (self.tags.load(Ordering::Relaxed) & tag_bit(tag) != 0)
            .then(|| self.slots.lock_passing(biased::my_token()))
    }

    /// Adds `tag`'s bit to the shard's, which `_slots` locks.
    #[inline]
    fn note_tag(&self, tag: u8, _slots: &Slots) {
        let tags = self.tags.load(Ordering::Relaxed);
        if tags & tag_bit(tag) == 0 {
            // Release: see `remove`.
            self.tags.store(tags | tag_bit(tag), Ordering::Release);
        }
    }
}

static SHARD_TABLE: [Shard; SHARDS] = [const {
    Shard {
        slots: BiasedLock::empty(),
        tags: AtomicU64::new(0),
    }
}; SHARDS];

/// Which shards have ever been locked, one bit each, set by the first lock of a shard (which
/// writes its empty table) and never cleared. Only those can hold records or biases, so the
/// walks (a check's end, twice; a thread's exit) visit them alone: over all 4,096 shards they
/// were most of what a check costs beyond its allocations (105 K instructions per check, and
/// 15 K per exiting thread), and in a process that has made few checks, as under nextest,
/// few shards were ever used.
static USED: [AtomicU64; SHARDS / 64] = [const { AtomicU64::new(0) }; SHARDS / 64];

impl FirstUse for Slots {
    fn first_use(lock: &BiasedLock<Slots>) -> Slots {
        // Every lock of this type is a shard's `slots`, at the same offset in each shard.
        let index = (lock as *const BiasedLock<Slots> as usize - SHARD_TABLE.as_ptr() as usize)
            / core::mem::size_of::<Shard>();
        // Release: a walker that sees a record stored after this (its shard's mask, in
        // happens-before order) sees the shard here too.
        if let Some(word) = USED.get(index / 64) {
            word.fetch_or(1 << (index % 64), Ordering::Release);
        }
        HashTable::new_in(TableAlloc)
    }
}

/// The shards that have ever been locked (see [`USED`]).
fn used_shards() -> impl Iterator<Item = &'static Shard> {
    USED.iter().enumerate().flat_map(|(word, bits)| {
        let mut bits = bits.load(Ordering::Acquire);
        core::iter::from_fn(move || {
            let bit = (bits != 0).then(|| bits.trailing_zeros() as usize)?;
            bits &= bits - 1;
            Some(&SHARD_TABLE[word * 64 + bit])
        })
    })
}

/// Fault injection for tests: while set, no shard allocates, as if `System` were out of
/// memory.
static REFUSE_GROWTH: AtomicBool = AtomicBool::new(false);

/// See [`REFUSE_GROWTH`].
pub(crate) fn refuse_growth(refuse: bool) {
    REFUSE_GROWTH.store(refuse, Ordering::Relaxed);
}

#[inline]
fn mix(addr: usize) -> u64 {
    let mut x = addr as u64;
    x ^= x >> 31;
    x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 29)
}

/// The hash a stored record's table probes with (hashbrown calls it when it resizes).
fn rehash(record: &Packed) -> u64 {
    mix(record.addr())
}

/// Blocks within one aligned 64 KiB region share a group of shards, and their addresses spread
/// them over its shards. Allocators hand each thread its own memory (glibc: one arena per
/// thread, 64 MiB apart), so two threads mostly work in different groups and the cache lines of
/// their shards' locks and slots stay put; hashing every address over all shards made two
/// threads bounce lines on nearly every operation (stacks off: 5.4x System at 2 threads against
/// 3.0x at 1). Putting a whole region in one shard instead made its table long and its probes
/// slow (+35% instructions per operation), hence groups.
const REGION_BITS: u32 = 16;
const GROUP_BITS: u32 = 6;
/// Where in the hash the shard's member bits come from: the middle, because the table takes
/// its home bucket from the low bits and its 7-bit control tag from the top ones (bits the
/// records of one shard must not all share).
const MEMBER_SHIFT: u32 = 32;

/// Where an address lives: its shard, and the hash its shard's table probes with. One [`mix`]
/// per operation: [`GROUP_BITS`] of its middle bits pick the shard within the region's group;
/// the table uses its low and top bits. Consecutive regions are spread over the groups by a
/// multiplication (Fibonacci hashing).
#[inline]
fn locate(addr: usize) -> (&'static Shard, u64) {
    let hash = mix(addr);
    let region = (addr >> REGION_BITS) as u64;
    let group = region.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - (SHARD_BITS - GROUP_BITS));
    let member = (hash >> MEMBER_SHIFT) & ((1 << GROUP_BITS) - 1);
    (
        &SHARD_TABLE[((group << GROUP_BITS) | member) as usize],
        hash,
    )
}

/// Records a live block. Returns false if the table could not grow, or the record does not fit
/// in 16 bytes (the block then goes untracked; the caller counts it). A stale record of the
/// same address (a block freed behind our back, e.g. by a foreign allocator) is replaced: the
/// new block wins.
///
/// Always inlined: its callers are the out-of-line recording paths, and a call more (with its
/// register saves) cost 25 instructions of a tracked alloc+free's 490 (stacks off).
#[inline(always)]
pub(crate) fn insert(record: Record) -> bool {
    let Some(packed) = Packed::pack(&record) else {
        return false;
    };
    let (shard, hash) = locate(record.addr);
    debug_assert!(
        record.tag != FILTERED_TAG || may_hold(FILTERED_ONLY, hash),
        "a retained record stored without its filter mark (see `mark_filtered_addr`)"
    );
    let mut slots = shard.lock();
    // Growing first, fallibly: the table's own growth inside `entry` would abort the process
    // when `System` has no memory.
    if slots.try_reserve(1, rehash).is_err() {
        return false;
    }
    match slots.entry(hash, |r| r.addr() == record.addr, rehash) {
        Entry::Occupied(mut stale) => *stale.get_mut() = packed,
        Entry::Vacant(slot) => {
            slot.insert(packed);
        }
    }
    shard.note_tag(record.tag, &slots);
    true
}

/// Removes and returns the record of a block, if it is tracked. A block whose shard holds no
/// records costs a hash and a load. Always inlined, with its locked part, into the free's
/// out-of-line path: the locked part as a call of its own cost 14 instructions of a tracked
/// alloc+free's 465 (stacks off). Callers that are inlined into user code reach it through
/// a function of their own.
#[inline(always)]
pub(crate) fn remove(addr: usize) -> Option<Record> {
    let (shard, hash) = locate(addr);
    // Acquire: pairs with the release of the masks' stores, so a mask that says "retained
    // records only" comes with their marks in the filter.
    if may_hold(shard.tags.load(Ordering::Acquire), hash) {
        let removed = remove_from(shard, addr, hash);
        (removed != EMPTY).then(|| removed.unpack())
    } else {
        None
    }
}

/// The locked part of [`remove`]: the packed record, or [`EMPTY`].
#[inline(always)]
fn remove_from(shard: &Shard, addr: usize, hash: u64) -> Packed {
    let mut slots = shard.lock();
    let Ok(found) = slots.find_entry(hash, |r| r.addr() == addr) else {
        return EMPTY;
    };
    // An emptied shard keeps its array: with ~1 live block per shard, freeing it here and
    // allocating it again on the next insert was half the cost of a tracked alloc+free.
    // Draining a scope frees empty arrays larger than KEPT_BUCKETS.
    let (removed, _) = found.remove();
    if slots.is_empty() {
        shard.tags.store(0, Ordering::Release);
    }
    removed
}

/// Moves a block's record from tag `from` to tag `to`; false if it has no record under `from`
/// (it was freed, or its address now belongs to another block).
pub(crate) fn retag(addr: usize, from: u8, to: u8) -> bool {
    let (shard, hash) = locate(addr);
    let Some(mut slots) = shard.lock_if_holds(from) else {
        return false;
    };
    let Some(record) = slots.find_mut(hash, |r| r.addr() == addr) else {
        return false;
    };
    if record.tag() != from {
        return false;
    }
    if to == FILTERED_TAG {
        mark_filtered(hash);
    }
    record.set_tag(to);
    shard.note_tag(to, &slots);
    true
}

/// Whether a block is tracked under `tag`.
pub(crate) fn holds(addr: usize, tag: u8) -> bool {
    let (shard, hash) = locate(addr);
    shard.lock_if_holds(tag).is_some_and(|slots| {
        slots
            .find(hash, |r| r.addr() == addr)
            .is_some_and(|r| r.tag() == tag)
    })
}

/// Whether a block is tracked (and under which scope).
#[cfg(test)]
fn lookup(addr: usize) -> Option<Record> {
    let (shard, hash) = locate(addr);
    let slots = (shard.tags.load(Ordering::Relaxed) != 0).then(|| shard.lock())?;
    slots.find(hash, |r| r.addr() == addr).map(Packed::unpack)
}

/// How many live records carry `tag`.
pub(crate) fn count_tag(tag: u8) -> usize {
    used_shards()
        .filter_map(|shard| shard.lock_if_holds(tag))
        .map(|slots| slots.iter().filter(|r| r.tag() == tag).count())
        .sum()
}

/// Copies (or, with `drain`, moves) every record with `tag` into `out` without growing it (the
/// caller's buffer must not reallocate while a shard lock is held: that would re-enter the
/// allocator and the lock). Returns true when every such record fitted.
pub(crate) fn collect_tag(tag: u8, out: &mut Vec<Record>, drain: bool) -> bool {
    if !drain {
        let mut complete = true;
        for slots in used_shards().filter_map(|shard| shard.lock_if_holds(tag)) {
            for record in slots.iter().filter(|r| r.tag() == tag) {
                if out.len() == out.capacity() {
                    complete = false;
                    break;
                }
                out.push(record.unpack());
            }
        }
        return complete;
    }
    drain_tag(tag, out)
}

fn drain_tag(tag: u8, out: &mut Vec<Record>) -> bool {
    let mut complete = true;
    for shard in used_shards() {
        let Some(mut slots) = shard.lock_if_holds(tag) else {
            continue;
        };
        let mut room = out.capacity() - out.len();
        // The tags of the records that stay: the shard's bits, exact again.
        let mut staying = 0;
        let taken = slots.extract_if(|r| {
            let take = r.tag() == tag && room != 0;
            room -= usize::from(take);
            complete &= take || r.tag() != tag;
            if !take {
                staying |= tag_bit(r.tag());
            }
            take
        });
        out.extend(taken.map(|r| r.unpack()));
        if slots.is_empty() {
            // Small arrays stay for the next check: freeing them and growing them back from
            // nothing in the next test cost a test suite a tenth of what it spent in
            // leakcheck outside its allocations.
            if slots.num_buckets() > KEPT_BUCKETS {
                *slots = HashTable::new_in(TableAlloc);
            }
        } else if slots.num_buckets() > KEPT_BUCKETS && slots.len() * 8 < slots.num_buckets() {
            shrink(&mut slots);
        }
        // Release: see `remove`.
        shard.tags.store(staying, Ordering::Release);
    }
    complete
}

/// Moves a sparse table's records into a smaller array; keeps the table as it is if `System`
/// has no memory for one (the table's own `shrink_to` would abort the process).
fn shrink(slots: &mut Slots) {
    let mut smaller = HashTable::new_in(TableAlloc);
    if smaller.try_reserve(slots.len() * 2, rehash).is_err() {
        return;
    }
    for record in slots.drain() {
        smaller.insert_unique(rehash(&record), record, rehash);
    }
    *slots = smaller;
}

/// The calling thread is exiting: its shards' biases go back, so the next thread to use them
/// gets them without revoking.
pub(crate) fn release_biases() {
    if let Some(token) = biased::thread_exiting() {
        for shard in used_shards() {
            shard.slots.release(token);
        }
    }
}

/// Bytes of bookkeeping currently held by the table (slot arrays), for the benchmarks.
pub(crate) fn footprint() -> (usize, usize) {
    used_shards().fold((0, 0), |(bytes, live), shard| {
        let slots = shard.slots.lock_passing(biased::my_token());
        (bytes + slots.allocation_size(), live + slots.len())
    })
}

/// In a freshly forked child only the forking thread exists: a shard that another thread held
/// at the fork (its lock, or its bias with the owner inside) stays held forever, and its slots
/// may be half-updated (a record placed but its control byte not yet written). Such a shard is
/// emptied, abandoning its array: the child loses the records of the blocks hashed there (made
/// before the fork, by the parent's checks) but never reads a torn table. Runs in the child
/// before it returns from `fork`, single-threaded; it does not allocate.
pub(crate) fn recover_after_fork() {
    let forking_thread = biased::my_token();
    for shard in &SHARD_TABLE {
        if shard.slots.reset_after_fork(forking_thread) {
            let mut slots = shard.lock();
            // Abandoned, not dropped: dropping would read the torn control bytes.
            core::mem::forget(core::mem::replace(
                &mut *slots,
                HashTable::new_in(TableAlloc),
            ));
            shard.tags.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(addr: usize, tag: u8) -> Record {
        Record {
            addr,
            size: addr % 97,
            stack: 0,
            tag,
            shared: false,
        }
    }

    #[test]
    fn records_round_trip_through_16_bytes_and_the_unfit_are_refused() {
        assert_eq!(core::mem::size_of::<Packed>(), 16);
        let record = Record {
            addr: 0x7fff_ffff_fff0,
            size: (1 << 40) - 1,
            stack: (1 << 23) - 1,
            tag: 255,
            shared: true,
        };
        assert_eq!(Packed::pack(&record).unwrap().unpack(), record);
        let unshared = Record {
            shared: false,
            ..record
        };
        assert_eq!(Packed::pack(&unshared).unwrap().unpack(), unshared);
        let too_deep = Record {
            stack: 1 << 23,
            ..record
        };
        assert_eq!(Packed::pack(&too_deep), None);
        let too_big = Record {
            size: 1 << 40,
            ..record
        };
        assert_eq!(Packed::pack(&too_big), None);
        let too_high = Record {
            addr: 1 << 56,
            ..record
        };
        assert_eq!(Packed::pack(&too_high), None);
    }

    #[test]
    fn a_stale_record_of_the_same_address_is_replaced_not_duplicated() {
        let addr = 0x7f00_beef_0000usize;
        assert!(insert(rec(addr, 202)));
        assert!(insert(Record {
            size: 7,
            ..rec(addr, 203)
        }));
        assert_eq!(count_tag(202), 0);
        assert_eq!(lookup(addr).map(|r| (r.size, r.tag)), Some((7, 203)));
        assert_eq!(remove(addr).map(|r| r.tag), Some(203));
        assert_eq!(remove(addr), None);
    }

    #[test]
    fn walks_for_one_tag_leave_the_shards_of_other_tags_alone() {
        let Some(_granting) = biased::tests::granting() else {
            return; // no biases on this kernel: nothing to revoke
        };
        // A shard no other test has used (their addresses may share a shard with ours).
        let (addr, shard) = (0..256)
            .map(|k| 0x7f00_cafe_0000usize + k * 0x1_0000)
            .map(|addr| (addr, locate(addr).0))
            .find(|(_, shard)| shard.tags.load(Ordering::Relaxed) == 0 && !shard.slots.is_revoked())
            .expect("an unused shard");
        let inserted = std::sync::Arc::new(std::sync::Barrier::new(2));
        let walked = std::sync::Arc::new(std::sync::Barrier::new(2));
        let owner = {
            let (inserted, walked) = (inserted.clone(), walked.clone());
            std::thread::spawn(move || {
                assert!(insert(rec(addr, 206)));
                inserted.wait();
                walked.wait();
            })
        };
        inserted.wait();
        assert_eq!(count_tag(208), 0);
        assert!(!holds(addr, 208));
        let spared = !shard.slots.is_revoked();
        assert!(holds(addr, 206), "a walk for the shard's own tag looks");
        let revoked = shard.slots.is_revoked();
        walked.wait();
        owner.join().unwrap();
        assert_eq!(remove(addr).map(|r| r.tag), Some(206));
        assert!(spared, "a walk for another tag revoked the owner's bias");
        assert!(revoked, "looking into a biased shard revokes its bias");
    }

    #[test]
    fn an_exiting_thread_gives_its_shards_biases_back() {
        let Some(_granting) = biased::tests::granting() else {
            return;
        };
        let (addr, shard) = (0..256)
            .map(|k| 0x7f00_d00d_0000usize + k * 0x1_0000)
            .map(|addr| (addr, locate(addr).0))
            .find(|(_, shard)| {
                shard.tags.load(Ordering::Relaxed) == 0 && shard.slots.is_biased_to(0)
            })
            .expect("an unused shard");
        let held = std::thread::spawn(move || {
            // Registers the thread's counters, and with them its exit guard.
            crate::counters::allocated(1);
            assert!(insert(rec(addr, 207)));
            assert_eq!(remove(addr).map(|r| r.tag), Some(207));
            !shard.slots.is_biased_to(0)
        })
        .join()
        .unwrap();
        assert!(held, "the thread took the shard's bias");
        assert!(
            shard.slots.is_biased_to(0),
            "the exited thread kept its bias"
        );
    }

    #[test]
    fn a_free_passes_a_shard_of_retained_records_without_its_lock_and_finds_them_all() {
        // Serialises with the other bias tests; None where this kernel grants no biases.
        let granting = biased::tests::granting();
        // Shards no other test has used, each to hold one retained record.
        let mut fresh = (0..4096)
            .map(|k| 0x7f00_f11e_0000usize + k * 0x1_0000)
            .filter(|&addr| {
                let shard = locate(addr).0;
                shard.tags.load(Ordering::Relaxed) == 0 && shard.slots.is_biased_to(0)
            });
        let retained = fresh.next().expect("an unused shard");
        let (shard, _) = locate(retained);
        // Recorded and retained by a thread that then exits: the shard's bias goes back.
        std::thread::spawn(move || {
            crate::counters::allocated(1); // registers the thread, and its exit guard
            assert!(insert(rec(retained, 210)));
            assert!(retag(retained, 210, FILTERED_TAG));
            let mut staying = Vec::with_capacity(4);
            assert!(drain_tag(210, &mut staying) && staying.is_empty());
        })
        .join()
        .unwrap();
        assert_eq!(shard.tags.load(Ordering::Relaxed), FILTERED_ONLY);
        assert!(shard.slots.is_biased_to(0));
        // Another address of that shard, outside the filter: the free does not look.
        let passed = (1..1 << 20)
            .map(|k| retained + k * 16)
            .find(|&addr| {
                let (other, hash) = locate(addr);
                let (word, bit) = filter_bit(hash);
                core::ptr::eq(other, shard) && word.load(Ordering::Relaxed) & bit == 0
            })
            .expect("an address of the same shard outside the filter");
        assert_eq!(remove(passed), None);
        if granting.is_some() {
            assert!(
                shard.slots.is_biased_to(0),
                "the free locked the shard (and took its bias)"
            );
        }
        // The retained record itself is still found, and so is one a reallocation moved.
        let moved = fresh.next().expect("another unused shard");
        mark_filtered_addr(moved);
        assert!(insert(rec(moved, FILTERED_TAG)));
        assert_eq!(locate(moved).0.tags.load(Ordering::Relaxed), FILTERED_ONLY);
        assert_eq!(remove(moved).map(|r| r.tag), Some(FILTERED_TAG));
        assert_eq!(
            remove(retained).map(|r| (r.addr, r.tag)),
            Some((retained, FILTERED_TAG))
        );
        assert_eq!(shard.tags.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn insert_lookup_remove_round_trip() {
        // Addresses far from anything the allocator hands out, so parallel tests can't collide.
        let base = 0x7f00_dead_0000usize;
        for i in 0..5000 {
            assert!(insert(rec(base + i * 16, 201)));
        }
        assert_eq!(count_tag(201), 5000);
        for i in (0..5000).step_by(2) {
            assert_eq!(remove(base + i * 16).map(|r| r.addr), Some(base + i * 16));
        }
        for i in 0..5000 {
            assert_eq!(lookup(base + i * 16).is_some(), i % 2 == 1, "address {i}");
        }
        let mut out = Vec::with_capacity(10);
        assert!(
            !drain_tag(201, &mut out),
            "a full buffer must report leftovers"
        );
        assert_eq!(out.len(), 10);
        let mut rest = Vec::with_capacity(count_tag(201));
        assert!(drain_tag(201, &mut rest));
        assert_eq!(out.len() + rest.len(), 2500);
        assert_eq!(count_tag(201), 0);
    }
}
