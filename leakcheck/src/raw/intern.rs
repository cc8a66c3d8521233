//! Stack interning: every distinct raw stack is stored once and named by a `u32`, so a record
//! costs 4 bytes of stack, not 256.
//!
//! Stacks live in an append-only arena of chunks allocated from `System` and are never freed
//! (the set of distinct allocation sites is small). A per-thread direct-mapped cache answers
//! repeat sites without touching the shared index, so two threads allocating from the same
//! loop do not fight over its lock.

use super::spin::SpinLock;
use core::cell::Cell;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};
use std::alloc::{GlobalAlloc, Layout, System};

/// Entries of a recorded stack; a deeper stack keeps its innermost and outermost frames and a
/// count of those between (`stack::Kept`). Async tests need the depth: a tokio runtime puts
/// some 30 frames between the test body and an allocation.
pub(crate) const MAX_FRAMES: usize = 64;

#[derive(Clone, Copy)]
struct StoredStack {
    hash: u64,
    len: u32,
    frames: [usize; MAX_FRAMES],
}

const CHUNK_BITS: u32 = 10;
const CHUNK_LEN: usize = 1 << CHUNK_BITS;
const MAX_CHUNKS: usize = 4096;

static CHUNKS: [AtomicPtr<StoredStack>; MAX_CHUNKS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CHUNKS];
/// Number of stacks published; ids are 1-based indexes into the arena.
static PUBLISHED: AtomicU32 = AtomicU32::new(0);

struct Index {
    /// Open-addressing table of stack ids (0 = empty), keyed by the stack's hash.
    ids: *mut u32,
    capacity: usize,
    len: usize,
}

// SAFETY: the index exclusively owns its `System` allocation.
unsafe impl Send for Index {}

static INDEX: SpinLock<Index> = SpinLock::new(Index {
    ids: core::ptr::null_mut(),
    capacity: 0,
    len: 0,
});

const CACHE_LEN: usize = 256;

thread_local! {
    static CACHE_HASH: [Cell<u64>; CACHE_LEN] = const { [const { Cell::new(0) }; CACHE_LEN] };
    static CACHE_ID: [Cell<u32>; CACHE_LEN] = const { [const { Cell::new(0) }; CACHE_LEN] };
}

fn hash(frames: &[usize]) -> u64 {
    let mut h = frames.len() as u64;
    for &frame in frames {
        h = (h.rotate_left(5) ^ frame as u64).wrapping_mul(0x51_7C_C1_B7_27_22_0A_95);
    }
    // 0 marks an empty cache slot.
    h | 1
}

fn stored(id: u32) -> Option<&'static StoredStack> {
    if id == 0 || id > PUBLISHED.load(Ordering::Acquire) {
        return None;
    }
    let index = (id - 1) as usize;
    let chunk = CHUNKS[index >> CHUNK_BITS].load(Ordering::Acquire);
    if chunk.is_null() {
        return None;
    }
    // SAFETY: ids up to PUBLISHED were written completely before PUBLISHED was raised with
    // release ordering, their chunk is never freed, and published stacks are never written
    // again; `index & (CHUNK_LEN - 1)` is within the chunk.
    Some(unsafe { &*chunk.add(index & (CHUNK_LEN - 1)) })
}

/// The frames of an interned stack.
pub(crate) fn frames(id: u32) -> Option<&'static [usize]> {
    stored(id).map(|s| &s.frames[..s.len as usize])
}

/// Interns `frames` and returns its id, or 0 when the arena or index cannot grow.
pub(crate) fn intern(frames: &[usize]) -> u32 {
    let frames = &frames[..frames.len().min(MAX_FRAMES)];
    let hash = hash(frames);
    let slot = (hash >> 3) as usize % CACHE_LEN;
    let cached = CACHE_HASH.try_with(|c| c[slot].get()).unwrap_or(0);
    if cached == hash {
        if let Ok(id) = CACHE_ID.try_with(|c| c[slot].get()) {
            return id;
        }
    }
    let id = intern_shared(frames, hash);
    if id != 0 {
        let _ = CACHE_HASH.try_with(|c| c[slot].set(hash));
        let _ = CACHE_ID.try_with(|c| c[slot].set(id));
    }
    id
}

/// Fault injection for tests: while set, no new stack is stored, as if the arena were full.
static REFUSE_NEW: AtomicBool = AtomicBool::new(false);

/// See [`REFUSE_NEW`].
pub(crate) fn refuse_new_stacks(refuse: bool) {
    REFUSE_NEW.store(refuse, Ordering::Relaxed);
}

fn intern_shared(frames: &[usize], hash: u64) -> u32 {
    let mut index = INDEX.lock();
    if (index.len + 1) * 2 > index.capacity && !index.grow() {
        return 0;
    }
    let mask = index.capacity - 1;
    let mut i = hash as usize & mask;
    loop {
        // SAFETY: `i < capacity`; the array is owned by the locked index.
        let id = unsafe { *index.ids.add(i) };
        if id == 0 {
            break;
        }
        if let Some(s) = stored(id) {
            if s.hash == hash && &s.frames[..s.len as usize] == frames {
                return id;
            }
        }
        i = (i + 1) & mask;
    }
    if REFUSE_NEW.load(Ordering::Relaxed) {
        return 0;
    }
    let new_id = PUBLISHED.load(Ordering::Relaxed) + 1;
    let position = (new_id - 1) as usize;
    let chunk_index = position >> CHUNK_BITS;
    if chunk_index >= MAX_CHUNKS {
        return 0;
    }
    let mut chunk = CHUNKS[chunk_index].load(Ordering::Relaxed);
    if chunk.is_null() {
        let layout = Layout::array::<StoredStack>(CHUNK_LEN).expect("chunk layout is small");
        // SAFETY: the layout has a non-zero size.
        chunk = unsafe { System.alloc(layout) }.cast();
        if chunk.is_null() {
            return 0;
        }
        CHUNKS[chunk_index].store(chunk, Ordering::Release);
    }
    let mut stack = StoredStack {
        hash,
        len: frames.len() as u32,
        frames: [0; MAX_FRAMES],
    };
    stack.frames[..frames.len()].copy_from_slice(frames);
    // SAFETY: `position` is in this chunk and not yet published, so no reader can see it; the
    // index lock serialises writers.
    unsafe { chunk.add(position & (CHUNK_LEN - 1)).write(stack) };
    // SAFETY: `i < capacity` and was found empty above.
    unsafe { *index.ids.add(i) = new_id };
    index.len += 1;
    PUBLISHED.store(new_id, Ordering::Release);
    new_id
}

impl Index {
    fn grow(&mut self) -> bool {
        let capacity = (self.capacity * 2).max(1024);
        let Ok(layout) = Layout::array::<u32>(capacity) else {
            return false;
        };
        // SAFETY: non-zero size; zeroed u32s are valid (0 = empty).
        let ids = unsafe { System.alloc_zeroed(layout) }.cast::<u32>();
        if ids.is_null() {
            return false;
        }
        for old in 0..self.capacity {
            // SAFETY: `old < self.capacity`, within the old array.
            let id = unsafe { *self.ids.add(old) };
            let Some(s) = stored(id) else { continue };
            let mut i = s.hash as usize & (capacity - 1);
            // SAFETY: `i < capacity` throughout, within the new array.
            while unsafe { *ids.add(i) } != 0 {
                i = (i + 1) & (capacity - 1);
            }
            // SAFETY: as above.
            unsafe { *ids.add(i) = id };
        }
        if self.capacity != 0 {
            // SAFETY: the old array was allocated by `System` with this layout.
            unsafe {
                System.dealloc(
                    self.ids.cast(),
                    Layout::array::<u32>(self.capacity).unwrap_unchecked(),
                )
            };
        }
        self.ids = ids;
        self.capacity = capacity;
        true
    }
}

/// See [`super::table::recover_after_fork`]: an index another thread held at the fork may be
/// half-grown, so it is abandoned. The stacks themselves stay (the arena is append-only and an
/// id is published only once its stack is complete); a stack interned again in the child gets
/// a second id, which reports merge, as they merge any raw stacks that read the same.
pub(crate) fn recover_after_fork() {
    if INDEX.is_locked() {
        INDEX.force_unlock();
        *INDEX.lock() = Index {
            ids: core::ptr::null_mut(),
            capacity: 0,
            len: 0,
        };
    }
}

/// How many distinct stacks are stored, and the bytes they take.
pub(crate) fn footprint() -> (usize, usize) {
    let stacks = PUBLISHED.load(Ordering::Acquire) as usize;
    let chunks = stacks.div_ceil(CHUNK_LEN);
    (
        stacks,
        chunks * CHUNK_LEN * core::mem::size_of::<StoredStack>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_frames_same_id_and_round_trip() {
        let a = [0x1000usize, 0x2000, 0x3000];
        let b = [0x1000usize, 0x2000, 0x3001];
        let ia = intern(&a);
        let ib = intern(&b);
        assert_ne!(ia, 0);
        assert_ne!(ia, ib);
        assert_eq!(intern(&a), ia);
        assert_eq!(frames(ia), Some(&a[..]));
        assert_eq!(frames(ib), Some(&b[..]));
        assert_eq!(frames(0), None);
    }

    #[test]
    fn many_distinct_stacks_survive_index_growth() {
        let ids: Vec<u32> = (0..5000usize)
            .map(|i| intern(&[0xabc0_0000 + i, 7]))
            .collect();
        for (i, &id) in ids.iter().enumerate() {
            assert_eq!(frames(id), Some(&[0xabc0_0000 + i, 7][..]));
        }
    }
}
