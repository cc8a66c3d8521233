//! Conservative reachability: which candidate blocks something still points to, decided the way
//! LeakSanitizer and valgrind decide it.
//!
//! The roots are the writable data segments of every loaded object (`PT_LOAD` with `PF_W`,
//! minus the `PT_GNU_RELRO` part, which is read-only once relocated), the calling thread's
//! static TLS blocks (`PT_TLS`, located by `dl_iterate_phdr`), the live part of the calling
//! thread's stack (from the stack pointer at entry to [`classify`] up to the top that
//! `pthread_getattr_np` reports, which on a spawned thread also covers its static TLS, but not
//! glibc's thread descriptor above it), the callee-saved registers at entry, and the caller's
//! `extra_roots`. Every aligned word of the roots that points inside a candidate makes it
//! reachable (interior pointers count, as in LSan's default, at the offsets Rust keeps owned
//! blocks alive by: see [`points_into`]), and the reached blocks are scanned in turn. Besides
//! the candidates, the caller may name *transit* blocks: heap blocks known to be live (those
//! that earlier checks left reachable), which get no verdict but, once reached, are scanned
//! like roots, so a block kept only by a cache that an earlier check created is reachable.
//! Other heap blocks are not scanned.
//!
//! # Reading memory
//!
//! Nothing here dereferences an address it was given or found. Every word scanned, roots and
//! candidates alike, is copied into a heap buffer by `process_vm_readv(2)` on our own process,
//! which fails with `EFAULT` on memory that is not mapped readable instead of faulting, and is
//! not a data race with threads writing that memory. Plain reads of blocks below glibc's mmap
//! threshold were considered and rejected: glibc trims the top of the main heap with `sbrk` and
//! unmaps a secondary arena's heap once it is empty, the threshold can be lowered with
//! `MALLOC_MMAP_THRESHOLD_`, and `LeakCheck::new` may wrap allocators that return memory to the
//! system eagerly, so a block freed by another thread during the scan may be gone. Reads are
//! batched (up to 1024 blocks or 64 KiB per call), so the copy costs little.
//!
//! # Working memory
//!
//! Everything the scan keeps (the sorted index of candidates, the worklist, the copy buffer) is
//! in heap buffers, which are not roots, and in frames below the stack pointer taken at entry,
//! which are not scanned: holding candidate addresses there does not make them reachable.
//!
//! # Stale addresses
//!
//! Like every conservative scan, this one errs towards "reachable": any word that happens to
//! hold an address inside a block keeps it, and live frames are full of slots left over from
//! earlier calls, even in frames far above the one that allocated (glibc's `free` leaves the
//! address of the chunk it freed in its frame, and the next block of that size gets the same
//! address). Measured here: a leaked `vec![1u8; 100]` inside a check called in a loop was
//! "reachable" from stale slots of the caller's frames every time. So the check scans without
//! the stack ([`classify_without_stack`]); [`classify`] with it remains for callers that accept
//! the risk.

/// What the scan concluded about one candidate block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Lost, and no other lost block points into it. Of a cycle of lost blocks that nothing
    /// else points into, the lowest-addressed block is the definitely lost one, as in
    /// valgrind, so every lost structure has one.
    DefinitelyLost,
    /// Lost, but only pointed to from lost blocks: it goes away with the definitely lost ones.
    IndirectlyLost,
    /// A root points into it, directly or through other candidates.
    Reachable,
}

impl Reach {
    /// "definitely", "indirectly" or "reachable".
    pub(crate) fn name(self) -> &'static str {
        match self {
            Reach::DefinitelyLost => "definitely",
            Reach::IndirectlyLost => "indirectly",
            Reach::Reachable => "reachable",
        }
    }
}

/// Whether [`classify`] can scan on this platform: Linux with glibc on x86_64, when
/// `process_vm_readv` works on our own process (a seccomp policy may forbid it). Elsewhere
/// `classify` claims nothing: every block is `Reachable`. Also false in a child forked while
/// the loader's lock may have been held: the statics' ranges cannot be listed there.
pub(crate) fn supported() -> bool {
    super::loader_usable() && os::supported()
}

/// Classifies live heap `blocks`, given as (address, size), in the same order.
///
/// `extra_roots` are more (start, length) ranges to scan as roots, e.g. other threads' stacks;
/// a range that is not mapped readable is skipped, never faulted on.
///
/// Call it with tracking blocked on this thread, from a frame that has not itself held
/// candidate addresses in locals (build `blocks` in a heap buffer, in a helper whose frame is
/// gone by now): the frames above this call are roots, and a stale copy of an address there
/// makes its block reachable. `blocks` must be disjoint, as live heap blocks are. When the
/// calling thread's stack cannot be located (it runs on a stack that `pthread_getattr_np`
/// does not describe, such as a coroutine's), the roots are unknown and every block is
/// `Reachable`, as on unsupported platforms.
#[inline]
pub(crate) fn classify(blocks: &[(usize, usize)], extra_roots: &[(usize, usize)]) -> Vec<Reach> {
    os::classify(blocks, &Transit::default(), extra_roots, &[], &[], None)
}

/// [`classify`] without the stack: the roots are the statics of every loaded object and this
/// thread's TLS. Live frames keep stale copies of addresses in slots they never wrote (a freed
/// block's address, later reused by a leaked block), so a verdict that must not miss a leak
/// leaves them out.
///
/// `transit` are live heap blocks, disjoint from `blocks` and from each other, that get no
/// verdict: a transit block the roots reach is scanned, and what it points to where an owner
/// points (its start, a tagged start, `Arc::into_raw`'s address, a hash table's control
/// bytes) is reachable: earlier checks' structures keep stale addresses in their spare slots.
/// `thread_stacks` are (start, length) ranges of other threads' live stacks (see
/// `crate::thread_roots`): a word there keeps a block only where an owner keeps it (its start,
/// a tagged start, `Arc::into_raw`'s address or a hash table's control bytes). Live frames
/// leave slots unwritten, and the words found there pointing elsewhere into a lost block were
/// stale (a test's leak looked reachable through a worker's stack in 14 of 150 corpus runs at
/// 8 threads). `shaped_transit` are transit blocks whose words keep only candidates, and only
/// in an owner's shape, as a thread stack's do: blocks other checks still run with, whose spare
/// capacity may hold anything. `excluded` are [start, end) ranges of static memory that are not roots (see
/// `crate::noise`).
pub(crate) fn classify_without_stack(
    blocks: &[(usize, usize)],
    transit: &[(usize, usize)],
    shaped_transit: &[(usize, usize)],
    thread_stacks: &[(usize, usize)],
    excluded: &[(usize, usize)],
) -> Vec<Reach> {
    os::classify(
        blocks,
        &Transit {
            plain: transit,
            shaped: shaped_transit,
        },
        &[],
        thread_stacks,
        excluded,
        Some(NO_STACK),
    )
}

/// Blocks that get no verdict but pass reachability on (see [`classify_without_stack`]).
#[derive(Clone, Copy, Default)]
struct Transit<'a> {
    plain: &'a [(usize, usize)],
    /// Words in these keep a block only in an owner's shape.
    shaped: &'a [(usize, usize)],
}

/// The calling thread's stack as [low, end), with its static TLS and without its descriptor
/// (see `live_stack`); `None` where the scan is not supported or the stack is unknown.
pub(crate) fn own_stack() -> Option<(usize, usize)> {
    os::own_stack()
}

/// A loaded object: its file (the main program as `/proc/self/exe`), its load bias, and its
/// writable segments as [start, end).
pub(crate) struct LoadedObject {
    pub(crate) path: std::path::PathBuf,
    pub(crate) bias: usize,
    pub(crate) writable: Vec<(usize, usize)>,
}

/// Every loaded object, for reading their symbol tables and excluding their data.
pub(crate) fn loaded_object_files() -> Vec<LoadedObject> {
    os::loaded_object_files()
}

/// `ranges` (sorted, disjoint) minus `holes`.
#[cfg_attr(
    not(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64")),
    allow(dead_code)
)]
fn subtract(ranges: &[(usize, usize)], holes: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(ranges.len() + holes.len());
    for &(start, end) in ranges {
        let mut pieces = vec![(start, end)];
        for &(hole_start, hole_end) in holes {
            pieces = pieces
                .into_iter()
                .flat_map(|(s, e)| {
                    [(s, e.min(hole_start)), (s.max(hole_end), e)]
                        .into_iter()
                        .filter(|(s, e)| s < e)
                })
                .collect();
        }
        out.extend(pieces);
    }
    out
}

/// Asks [`os::classify`] to scan no stack frames.
const NO_STACK: usize = usize::MAX;

/// Where the words that belong to a block end. glibc lends a block the first word of the chunk
/// after it (its `prev_size`), so for most sizes the next chunk's header lies inside the
/// block's last bytes, and glibc's arena (a static: the top chunk, the bins) points at that
/// header. Such a pointer is not a pointer to the block; counting it made a leaked
/// `vec![0u8; 100]` look reachable every time. A zero-sized block still owns its address.
fn owned_end(start: usize, size: usize) -> usize {
    let end = start.saturating_add(size.max(1));
    if start % 16 != 0 {
        return end;
    }
    // glibc's request2size on 64-bit: header word added, rounded up to 16, at least 32.
    let chunk = (size.saturating_add(8 + 15) & !15).max(32);
    let next_header = (start - 16).saturating_add(chunk);
    if next_header > start && next_header < end {
        next_header
    } else {
        end
    }
}

/// Whether a word `offset` bytes into a block at `start` of `size` bytes is taken as a
/// pointer to it: at its start, a tagged pointer to it (low bits set, an offset below 8), or a
/// word-aligned offset inside it (a field, an element, `Arc::into_raw`, the control bytes of a
/// hash table).
///
/// An offset that is neither is not taken as a pointer. Rust keeps a block alive through its
/// start (`Box`, `Vec`, `Rc`, `Arc`), a tagged start (crossbeam's `Atomic`, `bytes::Bytes`) or
/// an aligned interior address; an odd offset is a byte slice into a block that something
/// else owns. Such words are far more often data: the low bytes of an enum (its tag, a `u8`
/// field) under padding that still holds the upper half of an old pointer.
///
/// Such data reads as an address in the first mebibyte after a 4 GiB boundary: a word whose
/// low half is a small number and whose high half is a heap's. A thread's arena can start
/// there (1 in 64 of them do), and then its first blocks are at such addresses. A compiled
/// regex holds hundreds of such words (byte-range transitions, two bytes under stale
/// padding), and they made leaks in new threads look reachable. A block there is taken only
/// from the pointers Rust keeps to a block it owns: its start, a tagged start, `Arc::into_raw`
/// (16 bytes in) and a hash table's control bytes ([`hash_table_control`]).
#[cfg_attr(
    not(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64")),
    allow(dead_code)
)]
fn points_into(start: usize, size: usize, offset: usize) -> bool {
    if start & 0xffff_ffff < SMALL_NUMBERS {
        return holds_by_owner_shape(start, size, offset);
    }
    offset < 8 || offset % 8 == 0
}

/// Whether a word `offset` bytes into a block at `start` of `size` bytes is where an owner
/// keeps it: its start, a tagged start (offset below 8), `Arc::into_raw`'s address (16 bytes
/// in, or further for an over-aligned value: [`over_aligned_arc_value`]) or a hash table's
/// control bytes ([`hash_table_control`]).
#[cfg_attr(
    not(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64")),
    allow(dead_code)
)]
fn holds_by_owner_shape(start: usize, size: usize, offset: usize) -> bool {
    offset < 8
        || offset == 16
        || over_aligned_arc_value(start, size, offset)
        || hash_table_control(size, offset)
}

/// Whether `offset` is where `Arc::into_raw` points for a value aligned to more than 16 bytes
/// (`#[repr(align(128))]`, crossbeam's `CachePadded`): the two counts are padded to the
/// value's alignment, which the block's start has too. async-executor keeps its state so, 128
/// bytes into the block, in an `AtomicPtr` in a static: the block was reported lost whenever
/// the executor's arena began just past a 4 GiB boundary.
#[cfg_attr(
    not(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64")),
    allow(dead_code)
)]
fn over_aligned_arc_value(start: usize, size: usize, offset: usize) -> bool {
    offset.is_power_of_two()
        && (32..=4096).contains(&offset)
        && offset < size
        && start % offset == 0
}

/// Below this, the low half of an address reads as a small number (see [`points_into`]).
#[cfg_attr(
    not(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64")),
    allow(dead_code)
)]
const SMALL_NUMBERS: usize = 1 << 20;

/// Whether `offset` is where hashbrown's tables (std's `HashMap` and `HashSet`) point: a
/// table of `buckets` entries (a power of two, at least 4) is one block of the entries, padded
/// to 16 bytes, then `buckets + 16` control bytes, and the table keeps the address of the
/// control bytes only.
#[cfg_attr(
    not(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64")),
    allow(dead_code)
)]
fn hash_table_control(size: usize, offset: usize) -> bool {
    offset % 16 == 0
        && size
            .checked_sub(offset + 16)
            .is_some_and(|buckets| buckets >= 4 && buckets.is_power_of_two() && offset >= buckets)
}

/// Candidate blocks sorted by address, answering "which block does this word point into".
#[cfg_attr(
    not(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64")),
    allow(dead_code)
)]
struct Index {
    starts: Vec<usize>,
    ends: Vec<usize>,
    /// The size asked for (the largest, for blocks that share a start).
    sizes: Vec<usize>,
    /// Lowest start, and `highest end - low`: one comparison rejects most words.
    low: usize,
    span: usize,
}

#[cfg_attr(
    not(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64")),
    allow(dead_code)
)]
impl Index {
    /// The index, and for each of `blocks` its position in it (blocks with the same address
    /// share one position).
    fn new(blocks: &[(usize, usize)]) -> (Index, Vec<u32>) {
        let mut order: Vec<u32> = (0..blocks.len() as u32).collect();
        order.sort_unstable_by_key(|&i| blocks[i as usize].0);
        let mut index = Index {
            starts: Vec::with_capacity(blocks.len()),
            ends: Vec::with_capacity(blocks.len()),
            sizes: Vec::with_capacity(blocks.len()),
            low: 0,
            span: 0,
        };
        let mut position = vec![0u32; blocks.len()];
        for &i in &order {
            let (start, size) = blocks[i as usize];
            let end = owned_end(start, size);
            if index.starts.last() == Some(&start) {
                let last = index.ends.len() - 1;
                index.ends[last] = index.ends[last].max(end);
                index.sizes[last] = index.sizes[last].max(size);
            } else {
                index.starts.push(start);
                index.ends.push(end);
                index.sizes.push(size);
            }
            position[i as usize] = (index.starts.len() - 1) as u32;
        }
        if let Some(&low) = index.starts.first() {
            index.low = low;
            index.span = index.ends.iter().max().map_or(0, |&high| high - low);
        }
        (index, position)
    }

    fn len(&self) -> usize {
        self.starts.len()
    }

    /// The block `word` points into, if any: see [`points_into`] for the offsets taken.
    #[inline]
    fn find(&self, word: usize) -> Option<u32> {
        if word.wrapping_sub(self.low) >= self.span {
            return None;
        }
        // `word >= low == starts[0]`, so at least one start is <= word.
        let i = self.starts.partition_point(|&start| start <= word) - 1;
        (word < self.ends[i] && points_into(self.starts[i], self.sizes[i], word - self.starts[i]))
            .then_some(i as u32)
    }
}

/// The verdict for each of `n` blocks, from the blocks the roots point into (`rooted`,
/// repeats allowed) and `scan(batch, edges)`, which pushes `(from, to)` for every block `to`
/// that a block `from` of `batch` points into. `scan` is asked about each block at most once,
/// in batches, so each block is read once.
///
/// Reachable: reached from `rooted`. Among the rest, a block is definitely lost when it is the
/// lowest-indexed block of a strongly connected component that no other lost block points
/// into (for acyclic structures: no lost block points to it), and indirectly lost otherwise.
/// Blocks marked in `transit` only pass reachability on: they are left out of the lost
/// structure (their verdict is meaningless), so a candidate that only an unreached transit
/// block points to is definitely lost.
#[cfg_attr(
    not(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64")),
    allow(dead_code)
)]
fn classify_graph(
    n: usize,
    rooted: &[u32],
    transit: &[bool],
    mut scan: impl FnMut(&[u32], &mut Vec<(u32, u32)>),
) -> Vec<Reach> {
    let mut reached = vec![false; n];
    let mut frontier = Vec::new();
    for &block in rooted {
        if !core::mem::replace(&mut reached[block as usize], true) {
            frontier.push(block);
        }
    }
    let mut edges = Vec::new();
    let mut next = Vec::new();
    while !frontier.is_empty() {
        edges.clear();
        scan(&frontier, &mut edges);
        for &(_, to) in &edges {
            if !core::mem::replace(&mut reached[to as usize], true) {
                next.push(to);
            }
        }
        core::mem::swap(&mut frontier, &mut next);
        next.clear();
    }

    let mut verdicts: Vec<Reach> = reached
        .iter()
        .map(|&r| {
            if r {
                Reach::Reachable
            } else {
                Reach::IndirectlyLost
            }
        })
        .collect();
    // Ascending, so the first block of a component met below is its lowest-addressed one.
    let lost: Vec<u32> = (0..n as u32)
        .filter(|&b| !reached[b as usize] && !transit.get(b as usize).copied().unwrap_or(false))
        .collect();
    if lost.is_empty() {
        return verdicts;
    }
    let mut slot = vec![u32::MAX; n];
    for (k, &block) in lost.iter().enumerate() {
        slot[block as usize] = k as u32;
    }
    edges.clear();
    scan(&lost, &mut edges);
    edges.retain(|&(from, to)| {
        from != to && slot[from as usize] != u32::MAX && slot[to as usize] != u32::MAX
    });

    // The lost subgraph in compressed rows, over positions in `lost`.
    let mut offsets = vec![0usize; lost.len() + 1];
    for &(from, _) in &edges {
        offsets[slot[from as usize] as usize + 1] += 1;
    }
    for k in 1..offsets.len() {
        offsets[k] += offsets[k - 1];
    }
    let mut fill = offsets.clone();
    let mut targets = vec![0u32; edges.len()];
    for &(from, to) in &edges {
        let row = slot[from as usize] as usize;
        targets[fill[row]] = slot[to as usize];
        fill[row] += 1;
    }

    let (component, count) = strongly_connected(&offsets, &targets);
    let mut entered = vec![false; count];
    for v in 0..lost.len() {
        for &w in &targets[offsets[v]..offsets[v + 1]] {
            if component[v] != component[w as usize] {
                entered[component[w as usize] as usize] = true;
            }
        }
    }
    let mut has_leader = vec![false; count];
    for (k, &block) in lost.iter().enumerate() {
        let c = component[k] as usize;
        if !entered[c] && !core::mem::replace(&mut has_leader[c], true) {
            verdicts[block as usize] = Reach::DefinitelyLost;
        }
    }
    verdicts
}

/// Tarjan's strongly connected components of the graph whose edges out of node `v` are
/// `targets[offsets[v]..offsets[v + 1]]`, without recursion (a lost linked list can be
/// millions of nodes deep). Returns each node's component and the number of components.
#[cfg_attr(
    not(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64")),
    allow(dead_code)
)]
fn strongly_connected(offsets: &[usize], targets: &[u32]) -> (Vec<u32>, usize) {
    const UNSEEN: u32 = u32::MAX;
    let n = offsets.len() - 1;
    let mut order = vec![UNSEEN; n];
    let mut low = vec![0u32; n];
    let mut component = vec![UNSEEN; n];
    // Visited nodes without a component are exactly those on Tarjan's stack.
    let mut stack: Vec<u32> = Vec::new();
    let mut calls: Vec<(u32, usize)> = Vec::new();
    let mut next_order = 0u32;
    let mut count = 0u32;
    for root in 0..n {
        if order[root] != UNSEEN {
            continue;
        }
        order[root] = next_order;
        low[root] = next_order;
        next_order += 1;
        stack.push(root as u32);
        calls.push((root as u32, offsets[root]));
        while let Some(&(v, edge)) = calls.last() {
            let v = v as usize;
            if edge < offsets[v + 1] {
                if let Some(call) = calls.last_mut() {
                    call.1 += 1;
                }
                let w = targets[edge] as usize;
                if order[w] == UNSEEN {
                    order[w] = next_order;
                    low[w] = next_order;
                    next_order += 1;
                    stack.push(w as u32);
                    calls.push((w as u32, offsets[w]));
                } else if component[w] == UNSEEN {
                    low[v] = low[v].min(order[w]);
                }
            } else {
                calls.pop();
                if let Some(&(u, _)) = calls.last() {
                    low[u as usize] = low[u as usize].min(low[v]);
                }
                if low[v] == order[v] {
                    while let Some(w) = stack.pop() {
                        component[w as usize] = count;
                        if w as usize == v {
                            break;
                        }
                    }
                    count += 1;
                }
            }
        }
    }
    (component, count as usize)
}

#[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
mod os {
    use super::{classify_graph, Index, Reach};
    use core::ffi::{c_int, c_void};
    use core::sync::atomic::{AtomicU8, Ordering};

    const WORD: usize = core::mem::size_of::<usize>();
    /// The copy buffer: 64 KiB.
    const BUF_WORDS: usize = 8192;
    const BUF_BYTES: usize = BUF_WORDS * WORD;
    /// Linux's `IOV_MAX`: iovecs per `process_vm_readv` call.
    const MAX_IOV: usize = 1024;
    /// Granularity at which a range that failed to copy is retried.
    const PAGE: usize = 4096;

    /// 0 unknown, 1 yes, 2 no.
    static SUPPORTED: AtomicU8 = AtomicU8::new(0);

    pub(super) fn supported() -> bool {
        match SUPPORTED.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => {
                // One call on four words of this frame, not a `Reader`: its 64 KiB buffer,
                // zeroed and faulted in, was most of the first check's setup in a process
                // that ends up never scanning.
                let probe = [0x5ca1_ab1e_usize, 1, 2, 3];
                let mut copy = [0usize; 4];
                let bytes = core::mem::size_of_val(&probe);
                let local = libc::iovec {
                    iov_base: copy.as_mut_ptr().cast(),
                    iov_len: bytes,
                };
                let remote = libc::iovec {
                    iov_base: probe.as_ptr() as *mut c_void,
                    iov_len: bytes,
                };
                // SAFETY: `local` describes `copy`, writable and owned by this frame; `remote`
                // describes `probe`, which the kernel only reads.
                let copied =
                    unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
                let works = usize::try_from(copied) == Ok(bytes) && copy == probe;
                SUPPORTED.store(if works { 1 } else { 2 }, Ordering::Relaxed);
                works
            }
        }
    }

    /// Takes the stack pointer and the callee-saved registers, then scans from a deeper frame.
    /// Must not be inlined: its frame is the lowest one scanned.
    #[inline(never)]
    pub(super) fn classify(
        blocks: &[(usize, usize)],
        transit: &super::Transit<'_>,
        extra_roots: &[(usize, usize)],
        thread_stacks: &[(usize, usize)],
        excluded: &[(usize, usize)],
        stack_from: Option<usize>,
    ) -> Vec<Reach> {
        if blocks.is_empty() || !supported() {
            return vec![Reach::Reachable; blocks.len()];
        }
        // rsp, then rbx, rbp, r12-r15: a caller's pointer held only in a callee-saved register
        // is either still there now or was saved by this function's prologue, above rsp.
        let mut registers = [0usize; 7];
        // SAFETY: stores seven registers into `registers`, seven words this frame owns; the
        // asm touches no other memory, does not use the stack and keeps the flags.
        unsafe {
            core::arch::asm!(
                "mov [{p}], rsp",
                "mov [{p} + 8], rbx",
                "mov [{p} + 16], rbp",
                "mov [{p} + 24], r12",
                "mov [{p} + 32], r13",
                "mov [{p} + 40], r14",
                "mov [{p} + 48], r15",
                p = in(reg) registers.as_mut_ptr(),
                options(nostack, preserves_flags),
            );
        }
        // The array lives in this frame, above the stack pointer it holds: the stack scan
        // covers it.
        scan_from(
            core::hint::black_box(&registers),
            blocks,
            transit,
            extra_roots,
            thread_stacks,
            excluded,
            stack_from,
        )
    }

    #[inline(never)]
    fn scan_from(
        registers: &[usize; 7],
        blocks: &[(usize, usize)],
        transit: &super::Transit<'_>,
        extra_roots: &[(usize, usize)],
        thread_stacks: &[(usize, usize)],
        excluded: &[(usize, usize)],
        stack_from: Option<usize>,
    ) -> Vec<Reach> {
        // Scanning from an outer frame leaves out this frame, and the registers saved in it:
        // at that depth they hold leakcheck's own values. `NO_STACK` leaves the stack out.
        let stack = match stack_from {
            Some(super::NO_STACK) => None,
            from => match live_stack(from.unwrap_or(registers[0])) {
                Some(stack) => Some(stack),
                None => return vec![Reach::Reachable; blocks.len()],
            },
        };
        let all: Vec<(usize, usize)> = blocks
            .iter()
            .chain(transit.plain)
            .chain(transit.shaped)
            .copied()
            .collect();
        let (index, position) = Index::new(&all);
        let mut is_transit = vec![false; index.len()];
        for &p in &position[blocks.len()..] {
            is_transit[p as usize] = true;
        }
        let mut is_shaped = vec![false; index.len()];
        for &p in &position[blocks.len() + transit.plain.len()..] {
            is_shaped[p as usize] = true;
        }

        let mut roots = loaded_objects();
        roots.extend(stack);
        roots.extend(
            extra_roots
                .iter()
                .map(|&(start, len)| (start, start.saturating_add(len))),
        );
        // Sorted and merged, so a spawned thread's TLS (inside its stack block) is read once.
        roots.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(roots.len());
        for (start, end) in roots {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }

        let merged = super::subtract(&merged, excluded);
        let mut reader = Reader::new();
        let mut pieces = Vec::new();
        for &(start, end) in &merged {
            split(&mut pieces, 0, start, end.saturating_sub(start));
        }
        let mut seen = vec![false; index.len()];
        let mut rooted = Vec::new();
        reader.read(&pieces, |_, words| {
            for &word in words {
                if let Some(block) = index.find(word) {
                    if !core::mem::replace(&mut seen[block as usize], true) {
                        rooted.push(block);
                    }
                }
            }
        });
        pieces.clear();
        for &(start, len) in thread_stacks {
            split(&mut pieces, 0, start, len);
        }
        reader.read(&pieces, |_, words| {
            for &word in words {
                if let Some(block) = index.find(word) {
                    let (start, size) = (index.starts[block as usize], index.sizes[block as usize]);
                    let at_start = super::holds_by_owner_shape(start, size, word - start);
                    if at_start && !core::mem::replace(&mut seen[block as usize], true) {
                        rooted.push(block);
                    }
                }
            }
        });

        let verdicts = classify_graph(index.len(), &rooted, &is_transit, |batch, edges| {
            pieces.clear();
            // All of a block's words, its last one included: `owned_end` stops short of it
            // only for words pointing in, where glibc's arena names the next chunk's header.
            for &block in batch {
                let (start, size) = (index.starts[block as usize], index.sizes[block as usize]);
                split(&mut pieces, block, start, size);
            }
            reader.read(&pieces, |from, words| {
                for &word in words {
                    if let Some(to) = index.find(word) {
                        if is_transit[from as usize] {
                            // Where an owner points, and from another check's block only into
                            // a candidate or another such block (a subscriber another test
                            // installed keeps its shards in a block of their own). A retained
                            // executor's queue kept stale addresses of freed tasks whose memory
                            // a test's leak then reused: they pointed into the middle of the
                            // leak. A path on from another check's block through retained ones
                            // met such a slot.
                            let (start, size) =
                                (index.starts[to as usize], index.sizes[to as usize]);
                            let into_retained = is_transit[to as usize] && !is_shaped[to as usize];
                            if !super::holds_by_owner_shape(start, size, word - start)
                                || (is_shaped[from as usize] && into_retained)
                            {
                                continue;
                            }
                        }
                        edges.push((from, to));
                    }
                }
            });
        });
        position[..blocks.len()]
            .iter()
            .map(|&p| verdicts[p as usize])
            .collect()
    }

    pub(super) fn own_stack() -> Option<(usize, usize)> {
        let (low, _) = stack_bounds()?;
        live_stack(low)
    }

    /// [stack pointer, top of this thread's stack), or `None` when `sp` is not on the stack
    /// glibc knows for this thread.
    fn live_stack(sp: usize) -> Option<(usize, usize)> {
        let (low, top) = stack_bounds()?;
        if !(low <= sp && sp < top) {
            return None;
        }
        // On a thread glibc started, the stack block ends with its static TLS (kept) and its
        // descriptor, `struct pthread`, which starts at the thread pointer (left out). The
        // descriptor holds no live Rust heap pointers, but it keeps the start routine's
        // argument, which std frees as the thread starts: a block reusing that memory would
        // look reachable. The main thread's descriptor is elsewhere.
        let descriptor = thread_pointer();
        let end = if sp < descriptor && descriptor < top {
            descriptor
        } else {
            top
        };
        Some((sp, end))
    }

    /// [low, top) of the calling thread's stack, as glibc knows it.
    fn stack_bounds() -> Option<(usize, usize)> {
        let mut attr = core::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
        let mut addr = core::ptr::null_mut();
        let mut size = 0usize;
        // SAFETY: `attr` is valid for writes; it is read and destroyed only after
        // `pthread_getattr_np` initialised it. For the main thread glibc reads /proc/self/maps
        // with its own `malloc`, which is not the Rust global allocator.
        let ok = unsafe {
            if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
                return None;
            }
            let ok = libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size) == 0;
            libc::pthread_attr_destroy(attr.as_mut_ptr());
            ok
        };
        ok.then(|| (addr as usize, (addr as usize).saturating_add(size)))
    }

    /// The calling thread's thread pointer: the address of its `struct pthread`.
    fn thread_pointer() -> usize {
        let tp: usize;
        // SAFETY: on x86_64 Linux the word at %fs:0 is the thread control block's pointer to
        // itself, always mapped for the calling thread; nothing is written.
        unsafe {
            core::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly, preserves_flags));
        }
        tp
    }

    /// The writable data and the calling thread's TLS of every loaded object, as [start, end).
    fn loaded_objects() -> Vec<(usize, usize)> {
        let mut ranges: Vec<(usize, usize)> = Vec::with_capacity(64);
        // SAFETY: `each_object` has the callback's C signature and uses `data` only as the
        // `Vec` passed here, which outlives the call. glibc holds its loader lock meanwhile, so
        // the objects it describes cannot be unloaded during the callback.
        unsafe {
            crate::raw::loader::iterate_objects(
                each_object,
                (&mut ranges as *mut Vec<(usize, usize)>).cast(),
            );
        }
        ranges
    }

    pub(super) fn loaded_object_files() -> Vec<super::LoadedObject> {
        crate::raw::loader::mapped_objects()
            .into_iter()
            .map(|object| super::LoadedObject {
                path: object.path,
                bias: object.bias,
                writable: object.writable,
            })
            .collect()
    }

    unsafe extern "C" fn each_object(
        info: *mut libc::dl_phdr_info,
        size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: `data` is the `Vec` of `loaded_objects`, not otherwise borrowed during the
        // iteration; `info` points to a `dl_phdr_info` that glibc keeps valid during the call.
        let (ranges, info) = unsafe { (&mut *data.cast::<Vec<(usize, usize)>>(), &*info) };
        let headers = if info.dlpi_phdr.is_null() {
            &[][..]
        } else {
            // SAFETY: `dlpi_phdr` points to the object's `dlpi_phnum` program headers, mapped
            // for as long as the object is loaded.
            unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) }
        };
        let base = info.dlpi_addr as usize;
        let at = |vaddr: u64, len: u64| {
            let start = base.wrapping_add(vaddr as usize);
            (start, start.saturating_add(len as usize))
        };
        let relro = headers
            .iter()
            .find(|h| h.p_type == libc::PT_GNU_RELRO)
            .map_or((0, 0), |h| at(h.p_vaddr, h.p_memsz));
        for h in headers {
            if h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_W != 0 {
                let (start, end) = at(h.p_vaddr, h.p_memsz);
                // The segment minus its read-only (after relocation) part.
                for (s, e) in [(start, end.min(relro.0)), (start.max(relro.1), end)] {
                    if s < e {
                        ranges.push((s, e));
                    }
                }
            }
        }
        // `dlpi_tls_data` (glibc 2.27+): this thread's block of the object's TLS, or null if
        // the object has none or its dynamic TLS was never touched on this thread.
        let has_tls_data = size
            >= core::mem::offset_of!(libc::dl_phdr_info, dlpi_tls_data)
                + core::mem::size_of::<*mut c_void>();
        if has_tls_data && !info.dlpi_tls_data.is_null() {
            if let Some(tls) = headers.iter().find(|h| h.p_type == libc::PT_TLS) {
                let start = info.dlpi_tls_data as usize;
                ranges.push((start, start.saturating_add(tls.p_memsz as usize)));
            }
        }
        0
    }

    /// A word-aligned stretch of memory to copy, at most one buffer long, labelled with the
    /// block (or 0 for roots) it belongs to.
    #[derive(Clone, Copy)]
    struct Piece {
        tag: u32,
        addr: usize,
        words: usize,
    }

    /// Appends the aligned words of [start, start + len) as pieces cut at 64 KiB boundaries.
    fn split(pieces: &mut Vec<Piece>, tag: u32, start: usize, len: usize) {
        let Some(mut addr) = start.checked_add(WORD - 1).map(|a| a & !(WORD - 1)) else {
            return;
        };
        let end = start.saturating_add(len) & !(WORD - 1);
        while addr < end {
            let piece_end = end.min((addr | (BUF_BYTES - 1)).saturating_add(1));
            pieces.push(Piece {
                tag,
                addr,
                words: (piece_end - addr) / WORD,
            });
            addr = piece_end;
        }
    }

    /// Copies memory of this process with `process_vm_readv`, never faulting.
    struct Reader {
        buf: Vec<usize>,
        local: Vec<libc::iovec>,
        remote: Vec<libc::iovec>,
    }

    impl Reader {
        fn new() -> Reader {
            Reader {
                buf: vec![0; BUF_WORDS],
                local: Vec::with_capacity(MAX_IOV),
                remote: Vec::with_capacity(MAX_IOV),
            }
        }

        /// Calls `visit(tag, words)` with the contents of every piece, in order; parts that
        /// are not mapped readable are left out (a piece that fails is retried page by page).
        fn read(&mut self, pieces: &[Piece], mut visit: impl FnMut(u32, &[usize])) {
            let mut i = 0;
            while i < pieces.len() {
                let mut j = i;
                let mut words = 0;
                while j < pieces.len() && j - i < MAX_IOV && words + pieces[j].words <= BUF_WORDS {
                    words += pieces[j].words;
                    j += 1;
                }
                let copied = self.copy(&pieces[i..j]) / WORD;
                let mut offset = 0;
                let mut k = i;
                while k < j && offset + pieces[k].words <= copied {
                    visit(pieces[k].tag, &self.buf[offset..offset + pieces[k].words]);
                    offset += pieces[k].words;
                    k += 1;
                }
                if k < j {
                    // The kernel stops at the first piece it cannot copy entirely.
                    self.salvage(pieces[k], &mut visit);
                    k += 1;
                }
                i = k;
            }
        }

        fn salvage(&mut self, piece: Piece, visit: &mut impl FnMut(u32, &[usize])) {
            let end = piece.addr + piece.words * WORD;
            let mut addr = piece.addr;
            while addr < end {
                let page_end = end.min((addr | (PAGE - 1)) + 1);
                let part = Piece {
                    tag: piece.tag,
                    addr,
                    words: (page_end - addr) / WORD,
                };
                if self.copy(&[part]) == part.words * WORD {
                    visit(part.tag, &self.buf[..part.words]);
                }
                addr = page_end;
            }
        }

        /// Copies `pieces` (at most `MAX_IOV`, `BUF_WORDS` words in all) to the start of the
        /// buffer, back to back. Returns the bytes copied: all of them, or up to the first
        /// piece that could not be copied entirely.
        fn copy(&mut self, pieces: &[Piece]) -> usize {
            self.local.clear();
            self.remote.clear();
            let base = self.buf.as_mut_ptr();
            let mut offset = 0;
            for piece in pieces {
                let len = piece.words * WORD;
                self.local.push(libc::iovec {
                    iov_base: base.wrapping_add(offset).cast(),
                    iov_len: len,
                });
                self.remote.push(libc::iovec {
                    iov_base: piece.addr as *mut c_void,
                    iov_len: len,
                });
                offset += piece.words;
            }
            debug_assert!(offset <= self.buf.len() && pieces.len() <= MAX_IOV);
            // SAFETY: the local iovecs lie back to back inside `self.buf` (the caller keeps the
            // total within its `BUF_WORDS` words), which nothing else borrows now, and any bit
            // pattern is a valid `usize`. The remote iovecs are only read, by the kernel, which
            // checks each page and fails with EFAULT where a plain read would fault.
            let copied = unsafe {
                libc::process_vm_readv(
                    libc::getpid(),
                    self.local.as_ptr(),
                    self.local.len() as libc::c_ulong,
                    self.remote.as_ptr(),
                    self.remote.len() as libc::c_ulong,
                    0,
                )
            };
            usize::try_from(copied).unwrap_or(0)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn read_all(start: usize, len: usize) -> Vec<usize> {
            let mut pieces = Vec::new();
            split(&mut pieces, 7, start, len);
            let mut out = Vec::new();
            Reader::new().read(&pieces, |tag, words| {
                assert_eq!(tag, 7);
                out.extend_from_slice(words);
            });
            out
        }

        #[test]
        fn reads_own_memory_in_pieces() {
            assert!(supported());
            let data: Vec<usize> = (0..3 * BUF_WORDS + 5).collect();
            let start = data.as_ptr() as usize;
            assert_eq!(read_all(start, data.len() * WORD), data);
            // Unaligned edges are trimmed to whole words.
            assert_eq!(read_all(start + 3, 2 * WORD), [1]);
        }

        #[test]
        fn a_thread_stack_keeps_blocks_only_where_owners_point() {
            assert!(supported());
            let blocks: Vec<Box<[usize; 16]>> = (0..3).map(|_| Box::new([0usize; 16])).collect();
            let at = |i: usize| &*blocks[i] as *const [usize; 16] as usize;
            // What another thread's live stack holds: the first block's start, 16 bytes into
            // the second (`Arc::into_raw`), 40 bytes into the third (a stale interior word).
            let stack: Vec<usize> = vec![at(0), at(1) + 16, at(2) + 40];
            let range = [(stack.as_ptr() as usize, stack.len() * WORD)];
            let candidates: Vec<(usize, usize)> = (0..3).map(|i| (at(i), 16 * WORD)).collect();
            let as_thread_stack =
                super::super::classify_without_stack(&candidates, &[], &[], &range, &[]);
            assert_eq!(
                as_thread_stack,
                [Reach::Reachable, Reach::Reachable, Reach::DefinitelyLost]
            );
        }

        #[test]
        fn a_blocks_last_word_is_read_when_it_shares_the_next_chunks_header() {
            assert!(supported());
            // 40 bytes: glibc's chunk ends 8 bytes early, lending the block the next chunk's
            // first word, which is where this block keeps its pointer.
            let target = Box::new([7usize; 4]);
            let mut holder = Box::new([0usize; 5]);
            holder[4] = &*target as *const [usize; 4] as usize;
            let candidates = [
                (&*holder as *const [usize; 5] as usize, 5 * WORD),
                (&*target as *const [usize; 4] as usize, 4 * WORD),
            ];
            let stack = [candidates[0].0];
            let range = [(stack.as_ptr() as usize, WORD)];
            let verdicts = super::super::classify_without_stack(&candidates, &[], &[], &range, &[]);
            assert_eq!(verdicts, [Reach::Reachable, Reach::Reachable]);
            drop(core::hint::black_box(holder));
        }

        #[test]
        fn transit_blocks_keep_blocks_only_where_owners_point() {
            assert!(supported());
            let blocks: Vec<Box<[usize; 16]>> = (0..3).map(|_| Box::new([0usize; 16])).collect();
            let at = |i: usize| &*blocks[i] as *const [usize; 16] as usize;
            // A retained block: the second candidate's start.
            let retained: Box<[usize; 2]> = Box::new([at(1), 0]);
            let retained_at = &*retained as *const [usize; 2] as usize;
            // Another check's table: the first candidate's start, 40 bytes into the third (what
            // spare capacity may still hold), and the retained block's start.
            let table: Box<[usize; 3]> = Box::new([at(0), at(2) + 40, retained_at]);
            let table_at = &*table as *const [usize; 3] as usize;
            let stack = [table_at];
            let range = [(stack.as_ptr() as usize, WORD)];
            let candidates: Vec<(usize, usize)> = (0..3).map(|i| (at(i), 16 * WORD)).collect();
            let kept = [(retained_at, 2 * WORD)];
            let others = [(table_at, 3 * WORD)];
            let classify = |plain: &[(usize, usize)], shaped: &[(usize, usize)]| {
                super::super::classify_without_stack(&candidates, plain, shaped, &range, &[])
            };
            // As another check's block: only into a candidate, where an owner points.
            assert_eq!(
                classify(&kept, &others),
                [
                    Reach::Reachable,
                    Reach::DefinitelyLost,
                    Reach::DefinitelyLost
                ]
            );
            // As a retained block: on through other retained blocks, where owners point.
            let both = [kept[0], others[0]];
            assert_eq!(
                classify(&both, &[]),
                [Reach::Reachable, Reach::Reachable, Reach::DefinitelyLost]
            );
        }

        #[test]
        fn unmapped_memory_is_skipped_not_faulted_on() {
            assert!(read_all(0x1000, 64).is_empty());
            let len = 3 * PAGE;
            // SAFETY: an anonymous private mapping of three pages, owned by this test.
            let map = unsafe {
                libc::mmap(
                    core::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(map, libc::MAP_FAILED);
            let start = map as usize;
            // SAFETY: the middle page lies inside the mapping made above.
            let unmapped = unsafe { libc::munmap((start + PAGE) as *mut c_void, PAGE) };
            assert_eq!(unmapped, 0);
            let words = read_all(start, len);
            assert_eq!(words.len(), 2 * PAGE / WORD, "the two mapped pages");
            for page in [start, start + 2 * PAGE] {
                // SAFETY: unmaps a page of the mapping made above that is still mapped.
                unsafe { libc::munmap(page as *mut c_void, PAGE) };
            }
        }

        #[test]
        fn roots_include_data_tls_and_stack() {
            let objects = loaded_objects();
            assert!(!objects.is_empty());
            thread_local! {
                static MARK: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
            }
            let tls = MARK.with(|m| m as *const _ as usize);
            assert!(
                objects.iter().any(|&(s, e)| s <= tls && tls < e),
                "TLS at {tls:#x} not in {objects:x?}"
            );
            static DATA: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(1);
            let data = &DATA as *const _ as usize;
            assert!(objects.iter().any(|&(s, e)| s <= data && data < e));
            let local = 0usize;
            let here = core::hint::black_box(&local) as *const usize as usize;
            let (sp, top) = live_stack(here).expect("on this thread's stack");
            assert!(sp == here && top > here);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64")))]
mod os {
    use super::Reach;

    pub(super) fn supported() -> bool {
        false
    }

    pub(super) fn loaded_object_files() -> Vec<super::LoadedObject> {
        Vec::new()
    }

    pub(super) fn own_stack() -> Option<(usize, usize)> {
        None
    }

    pub(super) fn classify(
        blocks: &[(usize, usize)],
        _transit: &super::Transit<'_>,
        _extra_roots: &[(usize, usize)],
        _thread_stacks: &[(usize, usize)],
        _excluded: &[(usize, usize)],
        _stack_from: Option<usize>,
    ) -> Vec<Reach> {
        vec![Reach::Reachable; blocks.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Reach::{DefinitelyLost as D, IndirectlyLost as I, Reachable as R};

    /// Classifies a synthetic graph, checking that each block is scanned at most once.
    fn run(adjacency: &[&[u32]], rooted: &[u32]) -> Vec<Reach> {
        run_with_transit(adjacency, rooted, &[])
    }

    fn run_with_transit(adjacency: &[&[u32]], rooted: &[u32], transit: &[bool]) -> Vec<Reach> {
        let mut scanned = vec![0; adjacency.len()];
        let verdicts = classify_graph(adjacency.len(), rooted, transit, |batch, edges| {
            for &from in batch {
                scanned[from as usize] += 1;
                edges.extend(adjacency[from as usize].iter().map(|&to| (from, to)));
            }
        });
        assert!(scanned.iter().all(|&n| n <= 1), "scanned {scanned:?}");
        verdicts
    }

    #[test]
    fn subtracting_holes_from_root_ranges() {
        assert_eq!(
            subtract(&[(0, 100), (200, 300)], &[(50, 60), (90, 210), (290, 400)]),
            [(0, 50), (60, 90), (210, 290)]
        );
        assert_eq!(subtract(&[(0, 10)], &[]), [(0, 10)]);
        assert_eq!(subtract(&[(0, 10)], &[(0, 10)]), []);
    }

    #[test]
    fn nothing_points_anywhere() {
        assert_eq!(run(&[&[], &[]], &[]), [D, D]);
        assert_eq!(run(&[], &[]), []);
    }

    #[test]
    fn reachable_transitively_from_roots() {
        assert_eq!(run(&[&[1], &[2], &[], &[]], &[0, 0]), [R, R, R, D]);
    }

    #[test]
    fn lost_chain_has_one_definite_head() {
        assert_eq!(run(&[&[1], &[2], &[]], &[]), [D, I, I]);
        // The head need not have the lowest address.
        assert_eq!(run(&[&[], &[0], &[1]], &[]), [I, I, D]);
        // Two lost blocks sharing a child.
        assert_eq!(run(&[&[2], &[2], &[]], &[]), [D, D, I]);
    }

    #[test]
    fn lost_block_pointing_at_a_reachable_one() {
        assert_eq!(run(&[&[], &[0]], &[0]), [R, D]);
    }

    #[test]
    fn transit_blocks_pass_reachability_on_but_are_not_lost_structure() {
        // 0 is a transit block (a cache table an earlier check left reachable).
        let transit = [true, false, false];
        // Rooted transit block → 1 reachable; 2 lost.
        assert_eq!(
            run_with_transit(&[&[1], &[], &[]], &[0], &transit)[1..],
            [R, D]
        );
        // Unreached transit block pointing at 1: 1 is still definitely lost, not indirect.
        assert_eq!(
            run_with_transit(&[&[1], &[], &[]], &[], &transit)[1..],
            [D, D]
        );
    }

    #[test]
    fn self_pointer_and_cycles() {
        assert_eq!(run(&[&[0]], &[]), [D]);
        assert_eq!(run(&[&[1], &[0]], &[]), [D, I]);
        // A cycle entered from a lost block: the entry is the definite one.
        assert_eq!(run(&[&[], &[2], &[1], &[1]], &[]), [D, I, I, D]);
        // A rooted cycle.
        assert_eq!(run(&[&[1], &[0], &[]], &[1]), [R, R, D]);
    }

    #[test]
    fn cycle_feeding_a_lower_addressed_cycle() {
        // {2, 3} points into {0, 1}: only 2 is definite, whatever the address order.
        assert_eq!(run(&[&[1], &[0], &[3, 0], &[2]], &[]), [I, I, D, I]);
        assert_eq!(run(&[&[1, 2], &[0], &[3], &[2]], &[]), [D, I, I, I]);
    }

    #[test]
    fn deep_lost_list_needs_no_recursion() {
        let n = 200_000u32;
        let adjacency: Vec<Vec<u32>> = (0..n)
            .map(|i| if i + 1 < n { vec![i + 1] } else { vec![0] })
            .collect();
        let slices: Vec<&[u32]> = adjacency.iter().map(Vec::as_slice).collect();
        let verdicts = run(&slices, &[]);
        assert_eq!(verdicts[0], D);
        assert!(verdicts[1..].iter().all(|&v| v == I));
    }

    #[test]
    fn index_finds_interior_pointers() {
        // Far from a 4 GiB boundary (see `points_into`).
        let base = 0x5555_1234_0000;
        let (index, position) = Index::new(&[
            (base + 0x3000, 16),
            (base + 0x1000, 32),
            (base + 0x2000, 0),
            (base + 0x1000, 8),
        ]);
        assert_eq!(position, [2, 0, 1, 0]);
        assert_eq!(index.find(base + 0x1000), Some(0));
        assert_eq!(index.find(base + 0x1007), Some(0), "a tagged pointer");
        assert_eq!(index.find(base + 0x1018), Some(0), "an aligned field");
        assert_eq!(
            index.find(base + 0x1009),
            None,
            "an odd offset past the tag bits"
        );
        assert_eq!(index.find(base + 0x101f), None);
        assert_eq!(index.find(base + 0x1020), None);
        assert_eq!(index.find(base + 0x2000), Some(1));
        assert_eq!(index.find(base + 0x2001), None);
        assert_eq!(index.find(base + 0x3008), Some(2));
        assert_eq!(index.find(base + 0x3010), None);
        assert_eq!(index.find(base + 0xfff), None);
        assert_eq!(index.find(0), None);
        assert_eq!(index.find(usize::MAX), None);
    }

    #[test]
    fn blocks_whose_address_reads_as_small_numbers_need_rust_shaped_pointers() {
        // 4 GiB-aligned heap, block 0xd00 in: words like 0x7f2d_0000_0d08 are as often data.
        let start = 0x7f2d_0000_0d00;
        assert!(points_into(start, 2404, 0), "its start");
        assert!(points_into(start, 2404, 3), "a tagged start");
        assert!(points_into(start, 2404, 16), "Arc::into_raw");
        assert!(!points_into(start, 2404, 8));
        assert!(!points_into(start, 2404, 1024));
        // A table of 8 buckets of 24 bytes: 192 bytes, then 8 + 16 control bytes.
        assert!(
            points_into(start, 192 + 8 + 16, 192),
            "a hash table's control bytes"
        );
        assert!(!points_into(start, 192 + 8 + 16, 176));
        // Elsewhere, any word-aligned offset counts.
        assert!(points_into(0x7f2d_1234_0d00, 2404, 1024));
        assert!(!points_into(0x7f2d_1234_0d00, 2404, 1025));
        assert!(points_into(0x7f2d_0010_0000, 2404, 8), "past the first MiB");
    }

    #[test]
    fn arc_into_raw_of_an_over_aligned_value() {
        // `Arc<T>` with `T` aligned to 128: the counts are padded to 128 bytes.
        let start = 0x7f2d_0000_0c80;
        assert!(points_into(start, 896, 128));
        assert!(!points_into(start, 896, 896), "past the block");
        assert!(!points_into(start, 896, 96), "not a power of two");
        assert!(
            !points_into(0x7f2d_0000_0d40, 896, 128),
            "the block is not aligned to the offset"
        );
        assert!(
            !points_into(start, 1 << 14, 8192),
            "beyond a page's alignment"
        );
    }

    #[test]
    fn hash_table_control_bytes() {
        // A HashMap<u64, u64> with 16 buckets: 256 bytes of entries, 32 control bytes.
        assert!(hash_table_control(256 + 16 + 16, 256));
        assert!(!hash_table_control(256 + 16 + 16, 128));
        assert!(
            !hash_table_control(256 + 12 + 16, 256),
            "not a power of two"
        );
        assert!(!hash_table_control(256, 256));
    }

    #[test]
    fn the_next_chunk_header_is_not_part_of_a_block() {
        assert_eq!(owned_end(0x1000, 100), 0x1000 + 96);
        assert_eq!(owned_end(0x1000, 1000), 0x1000 + 992);
        assert_eq!(owned_end(0x1000, 32), 0x1000 + 32);
        assert_eq!(owned_end(0x1000, 0), 0x1001);
        assert_eq!(owned_end(0x1008, 100), 0x1008 + 100, "not a glibc chunk");
    }
}
