//! The record table: which live blocks were allocated under which scope, and from where.
//!
//! A global, fixed set of 4096 shards, each a small open-addressing hash table behind its own
//! spin lock, grouped by address region (see [`locate`]) so that two threads rarely touch
//! the same shard and the cache lines of locks do not bounce between cores (a handful of
//! shared shards, as in `dashmap`'s default, costs 12x at two threads on this workload). Deletion uses backward shifting, so there are no
//! tombstones to pile up over a long test run. Slot arrays come straight from `System`, never
//! from the global allocator, so the table cannot re-enter leakcheck.

use super::spin::{SpinGuard, SpinLock};
use core::sync::atomic::{AtomicBool, Ordering};
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
}

/// A record as the table stores it, in 16 bytes: the address (56 bits, more than any
/// user-space address on the 64-bit targets leakcheck knows) with the tag above it, and the
/// size (40 bits: 1 TiB) with the stack id (24 bits; the interner holds at most 2^22 stacks)
/// above it. 24-byte records at up to 75% load cost 50 bytes per live block at 1M blocks;
/// these cost about 32. A record that does not fit is not stored: the block goes untracked
/// and the report says so.
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

/// An empty slot: address 0.
const EMPTY: Packed = Packed {
    addr_tag: 0,
    size_stack: 0,
};

impl Packed {
    fn pack(record: &Record) -> Option<Packed> {
        let (addr, size, stack) = (record.addr as u64, record.size as u64, record.stack as u64);
        if addr == 0 || addr > ADDR_MASK || size > SIZE_MASK || stack >> (64 - SIZE_BITS) != 0 {
            return None;
        }
        Some(Packed {
            addr_tag: addr | (record.tag as u64) << ADDR_BITS,
            size_stack: size | stack << SIZE_BITS,
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
            stack: (self.size_stack >> SIZE_BITS) as u32,
            tag: self.tag(),
        }
    }
}
const SHARD_BITS: u32 = 12;
const SHARDS: usize = 1 << SHARD_BITS;
const MIN_CAPACITY: usize = 16;
/// Tables up to this many slots keep a lower load (see [`Slots::is_full`]).
const SMALL_CAPACITY: usize = 64;

struct Slots {
    ptr: *mut Packed,
    /// Always zero or a power of two.
    capacity: usize,
    len: usize,
}

// SAFETY: `Slots` owns its array exclusively (allocated from `System`, freed only by `Slots`);
// moving that ownership to another thread is sound.
unsafe impl Send for Slots {}

#[repr(align(64))]
struct Shard {
    slots: SpinLock<Slots>,
    /// Whether `slots` holds any record, readable without the lock: a free of a block that no
    /// shard can hold (the common case outside checks, once some check has retained a lazy
    /// static's blocks and frees must look) costs a load instead of a locked lookup. Written
    /// under the lock. A tracked block's record is stored before its allocation returns, so
    /// every thread that can free the block sees `true` here.
    has_records: AtomicBool,
}

impl Shard {
    fn lock(&self) -> SpinGuard<'_, Slots> {
        self.slots.lock()
    }

    /// Locks the shard if it holds records.
    fn lock_if_used(&self) -> Option<SpinGuard<'_, Slots>> {
        self.has_records
            .load(Ordering::Relaxed)
            .then(|| self.slots.lock())
    }

    /// Publishes whether the shard, locked by `slots`, holds records.
    fn note_len(&self, slots: &Slots) {
        self.has_records.store(slots.len != 0, Ordering::Relaxed);
    }
}

static SHARD_TABLE: [Shard; SHARDS] = [const {
    Shard {
        slots: SpinLock::new(Slots {
            ptr: core::ptr::null_mut(),
            capacity: 0,
            len: 0,
        }),
        has_records: AtomicBool::new(false),
    }
}; SHARDS];

/// Fault injection for tests: while set, no shard grows, as if `System` were out of memory.
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

/// Blocks within one aligned 64 KiB region share a group of shards, and their addresses spread
/// them over its shards. Allocators hand each thread its own memory (glibc: one arena per
/// thread, 64 MiB apart), so two threads mostly work in different groups and the cache lines of
/// their shards' locks and slots stay put; hashing every address over all shards made two
/// threads bounce lines on nearly every operation (stacks off: 5.4x System at 2 threads against
/// 3.0x at 1). Putting a whole region in one shard instead made its table long and its probes
/// slow (+35% instructions per operation), hence groups.
const REGION_BITS: u32 = 16;
const GROUP_BITS: u32 = 6;

/// Where an address lives: its shard, and the hash its shard's table probes from. One [`mix`]
/// per operation: its top [`GROUP_BITS`] bits pick the shard within the region's group, its low
/// bits the home slot (independent bits, so a shard's records still spread over its slots).
/// Consecutive regions are spread over the groups by a multiplication (Fibonacci hashing).
#[inline]
fn locate(addr: usize) -> (&'static Shard, u64) {
    let hash = mix(addr);
    let region = (addr >> REGION_BITS) as u64;
    let group = region.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - (SHARD_BITS - GROUP_BITS));
    let member = hash >> (64 - GROUP_BITS);
    (
        &SHARD_TABLE[((group << GROUP_BITS) | member) as usize],
        hash,
    )
}

impl Slots {
    fn slots(&self) -> &[Packed] {
        if self.capacity == 0 {
            return &[];
        }
        // SAFETY: `ptr` points to `capacity` initialised records owned by `self`.
        unsafe { core::slice::from_raw_parts(self.ptr, self.capacity) }
    }

    /// The slot array for a walk over the whole table: empty when no slot is occupied (a kept
    /// array of an emptied shard costs the walk nothing).
    fn occupied_slots(&self) -> &[Packed] {
        if self.len == 0 {
            return &[];
        }
        self.slots()
    }

    fn slots_mut(&mut self) -> &mut [Packed] {
        if self.capacity == 0 {
            return &mut [];
        }
        // SAFETY: as in `slots`, and `&mut self` guarantees exclusive access.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.capacity) }
    }

    /// Whether one more record would push the table past its maximum load: 13/16 for large
    /// tables (16-byte records at 13/16 cost 29 bytes per live block on average over a doubling
    /// cycle), 1/2 for small ones, whose probe runs and backward shifts this keeps short on
    /// the hot path while costing at most 4096 shards x 64 slots x 16 bytes = 4 MiB in all.
    fn is_full(&self) -> bool {
        if self.capacity <= SMALL_CAPACITY {
            (self.len + 1) * 2 > self.capacity
        } else {
            (self.len + 1) * 16 > self.capacity * 13
        }
    }

    fn home(&self, hash: u64) -> usize {
        hash as usize & (self.capacity - 1)
    }

    /// The slot holding `addr`'s record, or else the empty slot that ends its probe run (where
    /// it would go). The table must have at least one slot, and an empty one.
    fn probe(&self, addr: usize, hash: u64) -> usize {
        let slots = self.slots();
        let mask = self.capacity - 1;
        let mut i = self.home(hash);
        loop {
            let slot = slots[i].addr();
            if slot == addr || slot == 0 {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    fn find(&self, addr: usize, hash: u64) -> Option<usize> {
        if self.capacity == 0 {
            return None;
        }
        let i = self.probe(addr, hash);
        (self.slots()[i].addr() != 0).then_some(i)
    }

    /// Stores a record in its slot: over the stale record of the same address (a block freed
    /// behind our back, e.g. by a foreign allocator: the new block wins), or in the empty slot
    /// that ends its probe run. The table must have room.
    fn put(&mut self, record: Packed, hash: u64) {
        let i = self.probe(record.addr(), hash);
        if self.slots()[i].addr() == 0 {
            self.len += 1;
        }
        self.slots_mut()[i] = record;
    }

    /// Moves the records into a new array of `capacity` slots (0 frees the array). Returns
    /// false, leaving the table unchanged, if `System` has no memory for it.
    fn resize(&mut self, capacity: usize) -> bool {
        if capacity > self.capacity && REFUSE_GROWTH.load(Ordering::Relaxed) {
            return false;
        }
        let old = Slots {
            ptr: self.ptr,
            capacity: self.capacity,
            len: self.len,
        };
        if capacity == 0 {
            self.ptr = core::ptr::null_mut();
        } else {
            let Ok(layout) = Layout::array::<Packed>(capacity) else {
                return false;
            };
            // SAFETY: `layout` has a non-zero size. All-zero bytes are a valid `Packed` (EMPTY).
            let ptr = unsafe { System.alloc_zeroed(layout) }.cast::<Packed>();
            if ptr.is_null() {
                return false;
            }
            self.ptr = ptr;
        }
        self.capacity = capacity;
        self.len = 0;
        for record in old.slots() {
            if record.addr() != 0 {
                self.put(*record, mix(record.addr()));
            }
        }
        old.free();
        true
    }

    fn free(self) {
        if self.capacity != 0 {
            // SAFETY: `ptr` was allocated by `System` with exactly this layout in `resize`.
            unsafe {
                System.dealloc(
                    self.ptr.cast(),
                    Layout::array::<Packed>(self.capacity).unwrap_unchecked(),
                )
            };
        }
    }

    /// Removes the record in slot `hole`, shifting later members of its probe run back so
    /// that lookups never stop early at the gap.
    fn remove_at(&mut self, mut hole: usize) -> Packed {
        let mask = self.capacity - 1;
        let removed = self.slots()[hole];
        let mut next = hole;
        loop {
            next = (next + 1) & mask;
            let candidate = self.slots()[next];
            if candidate.addr() == 0 {
                break;
            }
            let home = self.home(mix(candidate.addr()));
            // The candidate may move into the hole unless its home lies cyclically in
            // (hole, next]: moving it before its home would hide it from lookups.
            let stays = if hole <= next {
                hole < home && home <= next
            } else {
                hole < home || home <= next
            };
            if !stays {
                self.slots_mut()[hole] = candidate;
                hole = next;
            }
        }
        self.slots_mut()[hole] = EMPTY;
        self.len -= 1;
        removed
    }
}

/// Records a live block. Returns false if the table could not grow, or the record does not fit
/// in 16 bytes (the block then goes untracked; the caller counts it).
#[inline]
pub(crate) fn insert(record: Record) -> bool {
    let Some(packed) = Packed::pack(&record) else {
        return false;
    };
    let (shard, hash) = locate(record.addr);
    let mut slots = shard.lock();
    if slots.is_full() {
        let capacity = (slots.capacity * 2).max(MIN_CAPACITY);
        if !slots.resize(capacity) {
            return false;
        }
    }
    slots.put(packed, hash);
    shard.note_len(&slots);
    true
}

/// Removes and returns the record of a block, if it is tracked. A block whose shard holds no
/// records costs a hash and a load: the locked part is a separate function, so this one
/// saves no registers before it knows it needs the lock.
#[inline]
pub(crate) fn remove(addr: usize) -> Option<Record> {
    let (shard, hash) = locate(addr);
    if shard.has_records.load(Ordering::Relaxed) {
        let removed = remove_from(shard, addr, hash);
        (removed != EMPTY).then(|| removed.unpack())
    } else {
        None
    }
}

/// The locked part of [`remove`]: the packed record, or [`EMPTY`] (returned in two registers,
/// where an `Option<Record>` goes through memory).
#[inline(never)]
fn remove_from(shard: &Shard, addr: usize, hash: u64) -> Packed {
    let mut slots = shard.lock();
    let Some(i) = slots.find(addr, hash) else {
        return EMPTY;
    };
    // An emptied shard keeps its array: with ~1 live block per shard, freeing it here and
    // allocating it again on the next insert was half the cost of a tracked alloc+free.
    // Draining a scope frees empty arrays larger than SMALL_CAPACITY.
    let removed = slots.remove_at(i);
    shard.note_len(&slots);
    removed
}

/// Moves a block's record from tag `from` to tag `to`; false if it has no record under `from`
/// (it was freed, or its address now belongs to another block).
pub(crate) fn retag(addr: usize, from: u8, to: u8) -> bool {
    let (shard, hash) = locate(addr);
    let Some(mut slots) = shard.lock_if_used() else {
        return false;
    };
    let Some(i) = slots.find(addr, hash) else {
        return false;
    };
    let record = &mut slots.slots_mut()[i];
    if record.tag() != from {
        return false;
    }
    record.set_tag(to);
    true
}

/// Whether a block is tracked (and under which scope).
pub(crate) fn lookup(addr: usize) -> Option<Record> {
    let (shard, hash) = locate(addr);
    let slots = shard.lock_if_used()?;
    slots.find(addr, hash).map(|i| slots.slots()[i].unpack())
}

/// How many live records carry `tag`.
pub(crate) fn count_tag(tag: u8) -> usize {
    SHARD_TABLE
        .iter()
        .map(|shard| {
            shard
                .lock()
                .occupied_slots()
                .iter()
                .filter(|r| r.addr() != 0 && r.tag() == tag)
                .count()
        })
        .sum()
}

/// Copies (or, with `drain`, moves) every record with `tag` into `out` without growing it (the
/// caller's buffer must not reallocate while a shard lock is held: that would re-enter the
/// allocator and the lock). Returns true when every such record fitted.
pub(crate) fn collect_tag(tag: u8, out: &mut Vec<Record>, drain: bool) -> bool {
    if !drain {
        let mut complete = true;
        for shard in &SHARD_TABLE {
            let slots = shard.lock();
            for record in slots
                .occupied_slots()
                .iter()
                .filter(|r| r.addr() != 0 && r.tag() == tag)
            {
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
    for shard in &SHARD_TABLE {
        let mut slots = shard.lock();
        let mut i = 0;
        // An emptied shard (a kept array included) is not walked.
        while i < slots.capacity && slots.len != 0 {
            let record = slots.slots()[i];
            if record.addr() != 0 && record.tag() == tag {
                if out.len() == out.capacity() {
                    complete = false;
                    break;
                }
                out.push(slots.remove_at(i).unpack());
                // Backward shifting may have moved a later record into slot `i`: look again.
                continue;
            }
            i += 1;
        }
        if slots.len == 0 {
            // Small arrays stay for the next check (at most 4 MiB over all shards): freeing
            // them and growing them back from nothing in the next test cost a test suite a
            // tenth of what it spent in leakcheck outside its allocations.
            if slots.capacity > SMALL_CAPACITY {
                slots.resize(0);
            }
        } else if slots.capacity > MIN_CAPACITY * 4 && slots.len * 8 < slots.capacity {
            let capacity = (slots.len * 2).next_power_of_two().max(MIN_CAPACITY);
            slots.resize(capacity);
        }
        shard.note_len(&slots);
    }
    complete
}

/// Bytes of bookkeeping currently held by the table (slot arrays), for the benchmarks.
pub(crate) fn footprint() -> (usize, usize) {
    SHARD_TABLE.iter().fold((0, 0), |(bytes, live), shard| {
        let slots = shard.lock();
        (
            bytes + slots.capacity * core::mem::size_of::<Packed>(),
            live + slots.len,
        )
    })
}

/// In a freshly forked child only the forking thread exists: a shard that another thread held
/// at the fork stays locked forever, and its slots may be half-updated (a record placed but
/// not counted, one shifted back but not yet cleared). Such a shard is emptied, abandoning its
/// array: the child loses the records of the blocks hashed there (made before the fork, by the
/// parent's checks) but never reads a torn table. Runs in the child
/// before it returns from `fork`, single-threaded; it does not allocate.
pub(crate) fn recover_after_fork() {
    for shard in &SHARD_TABLE {
        if shard.slots.is_locked() {
            shard.slots.force_unlock();
            let mut slots = shard.lock();
            *slots = Slots {
                ptr: core::ptr::null_mut(),
                capacity: 0,
                len: 0,
            };
            shard.note_len(&slots);
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
        }
    }

    #[test]
    fn records_round_trip_through_16_bytes_and_the_unfit_are_refused() {
        assert_eq!(core::mem::size_of::<Packed>(), 16);
        let record = Record {
            addr: 0x7fff_ffff_fff0,
            size: (1 << 40) - 1,
            stack: (1 << 24) - 1,
            tag: 255,
        };
        assert_eq!(Packed::pack(&record).unwrap().unpack(), record);
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
    fn small_tables_grow_at_half_load_large_ones_at_thirteen_sixteenths() {
        let full_at = |capacity: usize| {
            (0..=capacity)
                .find(|&len| {
                    Slots {
                        ptr: core::ptr::null_mut(),
                        capacity,
                        len,
                    }
                    .is_full()
                })
                .unwrap()
        };
        assert_eq!(full_at(16), 8);
        assert_eq!(full_at(SMALL_CAPACITY), SMALL_CAPACITY / 2);
        assert_eq!(full_at(128), 104);
        assert_eq!(full_at(1 << 20), (1 << 20) / 16 * 13);
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
