//! A DWARF CFI stack walker with cached unwind rules (x86_64 Linux, glibc).
//!
//! Without frame pointers the only way up the stack is the unwind tables (`.eh_frame`). libgcc's
//! `_Unwind_Backtrace` does not remember anything between frames or captures: for every frame
//! of every capture it finds the object, binary-searches `.eh_frame_hdr`, parses the FDE and its
//! CIE and interprets the CFA program up to the pc (~100 ns a frame). Yet the rule for one return
//! address never changes while its object stays loaded, and on x86_64 nearly every rule is tiny:
//! CFA = rsp or rbp + offset, the return address at CFA - 8, rbp either unchanged or saved at
//! CFA + offset. This walker keeps that reduced rule per return address in a fixed, lock-free,
//! open-addressing table in static memory, so a cached frame costs a hash probe, three
//! comparisons that bound the frame inside the stack, and one or two stack reads (~45
//! instructions). A miss finds the object with `dl_iterate_phdr`, looks the FDE up through
//! `.eh_frame_hdr` and evaluates its row with gimli (once per return address for the life of
//! the process).
//!
//! The walker gives up — [`walk`] returns `None` and the caller falls back to libgcc for that
//! capture — on any frame whose rule the reduced form cannot express: a CFA computed by a DWARF
//! expression or from a register other than rsp/rbp, a return address or rbp recovered any other
//! way, a signal trampoline, code outside every loaded object (JIT code registered with
//! `__register_frame`), and on any stack read outside the thread's own stack (a bad rule, or code
//! running on an alternate signal stack or a coroutine's stack). A walk ends normally where libgcc
//! ends: at a frame whose return address is undefined (`_start`, `clone3`) or that has no FDE.
//!
//! Rules are keyed by address and never evicted: an object unloaded with `dlclose` and another
//! loaded at the same address would see stale rules (every read stays bounds-checked).
//!
//! Runs inside the global allocator: no panics, no formatting, no allocation at all (gimli is
//! used with `read-core` only and a fixed-size context in static memory), and the one lock (the
//! gimli context's, taken only on a miss) is a bounded try-lock that a forked child can take over.

use crate::raw::intern::MAX_FRAMES;
use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, LittleEndian, Register, RegisterRule,
    UnwindContext, UnwindContextStorage, UnwindSection, UnwindTableRow, X86_64,
};

/// Captures the calling thread's stack into `buf`, innermost frame first: `buf[0]` is the return
/// address into the caller of `walk`. `bounds` is the thread's stack, [low, high). Returns the
/// number of frames, or `None` when some frame needs the full unwinder.
#[inline(never)]
///
/// The walk ends (successfully) at the first frame whose return address is stored at or above
/// `limit`: the frames of whoever called the check (see `stack::CaptureLimit`). Frames whose
/// return address is stored below `from` are unwound but not kept (leakcheck's own).
pub(crate) fn walk(
    buf: &mut [usize; MAX_FRAMES],
    bounds: (usize, usize),
    from: usize,
    limit: usize,
) -> Option<usize> {
    let (pc, sp, bp) = registers();
    let (low, high) = bounds;
    if sp < low || sp >= high || sp % WORD != 0 {
        return None;
    }
    // Nothing a caller saved lies below this frame: reads are confined to [sp, high).
    let low = sp;
    let mut sp = sp;
    let mut bp = bp;
    // The first frame is this function at `pc` itself; callers are looked up at their return
    // address - 1, inside the call instruction (the return address may already belong to the
    // next function or to another row).
    let mut lookup = pc;
    let mut kept = super::Kept::new(buf);
    // The loop works on the packed rule (see `pack`) and keeps one invariant: `sp` is a word
    // boundary inside [low, high). Each frame then needs three comparisons on the CFA, and
    // none on the return address's slot, which lies in [sp, CFA).
    loop {
        // A cached frame rule passes one test; an empty slot (0) and the other steps, the rest.
        let mut word = cached(lookup);
        if word & FRAME == 0 {
            if word == 0 {
                word = step_word_uncached(lookup);
            }
            if word & FRAME == 0 {
                return (word == END).then(|| kept.finish());
            }
        }
        let base = if word & CFA_FROM_RBP != 0 { bp } else { sp };
        let cfa = base.wrapping_add_signed((word >> 32) as u32 as i32 as isize);
        // Every caller's frame lies strictly above its callee's, inside the stack.
        if cfa <= sp || cfa > high || cfa % WORD != 0 {
            return None;
        }
        let ret_slot = cfa - WORD;
        if ret_slot >= limit {
            return Some(kept.finish());
        }
        // SAFETY: `sp` and `cfa` are word boundaries with low <= sp < cfa <= high, so the
        // word [cfa - 8, cfa) lies inside this thread's stack, which is mapped while it runs.
        let ret = unsafe { read_word(ret_slot) };
        if word & RBP_SAVED != 0 {
            // Walkable (`rbp_below_is_walkable`, enforced by `pack`): a multiple of 8, at least
            // 16, so the slot is a word of its own below the return address's.
            let below = ((word >> 16) & 0xffff) as usize;
            if cfa - low < below {
                return None;
            }
            // SAFETY: low <= cfa - below and cfa - below + 8 <= cfa - 8 < high, a word
            // boundary (cfa and below are multiples of 8): inside this thread's stack.
            bp = unsafe { read_word(cfa - below) };
        }
        sp = cfa;
        if ret == 0 {
            return Some(kept.finish());
        }
        if ret_slot >= from && !kept.push(ret) {
            return Some(kept.finish());
        }
        lookup = ret - 1;
    }
}

/// This function's pc, rsp and rbp, all at the same instruction boundary (inlined into
/// [`walk`], so they describe `walk`'s frame).
#[inline(always)]
fn registers() -> (usize, usize, usize) {
    let (pc, sp, bp): (usize, usize, usize);
    // SAFETY: reads rip (by address arithmetic), rsp and rbp into registers; no memory access,
    // no stack use, no flags changed.
    unsafe {
        core::arch::asm!(
            "lea {pc}, [rip]",
            "mov {sp}, rsp",
            "mov {bp}, rbp",
            pc = out(reg) pc,
            sp = out(reg) sp,
            bp = out(reg) bp,
            options(nomem, nostack, preserves_flags),
        );
    }
    (pc, sp, bp)
}

const WORD: usize = core::mem::size_of::<usize>();

/// Reads one word of this thread's stack.
///
/// # Safety
///
/// `addr` must be a word boundary with [addr, addr + 8) inside the calling thread's stack.
#[inline(always)]
unsafe fn read_word(addr: usize) -> usize {
    // SAFETY: the caller's promise: an aligned word of this thread's stack, mapped for as long
    // as the thread runs. `read_volatile` because the words belong to other frames and are not
    // Rust values we own.
    unsafe { core::ptr::read_volatile(addr as *const usize) }
}

// ---- rules ----

/// How to get from one frame to its caller, reduced to what x86_64 code nearly always uses. The
/// return address is at CFA - 8 (the only rule x86_64 compilers emit; others are `Unsupported`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rule {
    /// CFA = rbp + `cfa_offset` (else rsp + `cfa_offset`).
    cfa_from_rbp: bool,
    cfa_offset: i32,
    /// The caller's rbp is at CFA - `rbp_below` (a multiple of 8, at least 16); `None`: rbp is
    /// unchanged in this frame.
    rbp_below: Option<u16>,
}

/// What the walk does at one pc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Unwind one frame with this rule.
    Frame(Rule),
    /// This is the outermost frame: its return address is undefined, or it has no unwind info.
    End,
    /// The rule does not fit [`Rule`], or the pc is outside every loaded object: libgcc must
    /// walk this stack.
    Unsupported,
}

/// A frame's rule (else `END` or `UNSUPPORTED`, which have this bit clear).
const FRAME: u64 = 1;
const CFA_FROM_RBP: u64 = 1 << 1;
const RBP_SAVED: u64 = 1 << 2;
const END: u64 = 1 << 3;
const UNSUPPORTED: u64 = 1 << 4;

/// Packs a step into one non-zero word, laid out for [`walk`]'s loop to use without unpacking:
/// flags in bits 0-4, rbp's distance below the CFA in bits 16-31, the CFA's offset in 32-63.
fn pack(step: Step) -> u64 {
    match step {
        Step::End => END,
        Step::Unsupported => UNSUPPORTED,
        Step::Frame(rule) => {
            let mut word = FRAME | u64::from(rule.cfa_offset as u32) << 32;
            if rule.cfa_from_rbp {
                word |= CFA_FROM_RBP;
            }
            match rule.rbp_below {
                None => {}
                Some(below) if rbp_below_is_walkable(below) => {
                    word |= RBP_SAVED | u64::from(below) << 16;
                }
                // `reduce_rules` makes no such rule; `walk` relies on it.
                Some(_) => return UNSUPPORTED,
            }
            word
        }
    }
}

/// The inverse of [`pack`]; `word` is not 0.
#[cfg(test)]
fn unpack(word: u64) -> Step {
    if word & FRAME != 0 {
        Step::Frame(Rule {
            cfa_from_rbp: word & CFA_FROM_RBP != 0,
            cfa_offset: (word >> 32) as u32 as i32,
            rbp_below: (word & RBP_SAVED != 0).then_some((word >> 16) as u16),
        })
    } else if word == END {
        Step::End
    } else {
        Step::Unsupported
    }
}

// ---- the cache ----

/// 16384 slots of 16 bytes: 256 KiB of zeroed static memory, touched only where used. A test
/// binary's captured stacks pass through a few thousand distinct return addresses at most.
const CACHE_BITS: u32 = 14;
const CACHE_LEN: usize = 1 << CACHE_BITS;
/// Slots tried from a pc's home slot before giving up on caching it.
const PROBES: usize = 8;

/// One cached rule. Written once: `pc` goes from 0 to its final value (compare-exchange), then
/// `step` from 0 to the packed rule, and neither changes again. Any thread that computes the
/// rule for a pc computes the same word, so readers need no ordering between the two fields: a
/// reader that sees `pc` but still 0 in `step` computes the rule itself.
struct Slot {
    pc: AtomicUsize,
    step: AtomicU64,
}

static CACHE: [Slot; CACHE_LEN] = [const {
    Slot {
        pc: AtomicUsize::new(0),
        step: AtomicU64::new(0),
    }
}; CACHE_LEN];

#[inline(always)]
fn home(pc: usize) -> usize {
    ((pc as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - CACHE_BITS)) as usize
}

/// The packed step cached for `pc`, or 0 (which has no flag set, [`FRAME`] included).
#[inline(always)]
fn cached(pc: usize) -> u64 {
    let mut i = home(pc);
    for _ in 0..PROBES {
        let slot = &CACHE[i];
        let key = slot.pc.load(Ordering::Relaxed);
        if key == pc {
            return slot.step.load(Ordering::Relaxed);
        }
        if key == 0 {
            return 0;
        }
        i = (i + 1) & (CACHE_LEN - 1);
    }
    0
}

/// Caches `word` for `pc`; does nothing when the pc's probe run is full.
fn remember(pc: usize, word: u64) {
    let mut i = home(pc);
    for _ in 0..PROBES {
        let slot = &CACHE[i];
        match slot
            .pc
            .compare_exchange(0, pc, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => {
                slot.step.store(word, Ordering::Relaxed);
                return;
            }
            Err(key) if key == pc => {
                slot.step.store(word, Ordering::Relaxed);
                return;
            }
            Err(_) => i = (i + 1) & (CACHE_LEN - 1),
        }
    }
}

/// The packed step at `pc` (a return address - 1, or the walker's own pc), from the cache or
/// computed, as [`walk`] finds it.
#[cfg(test)]
fn step_word(pc: usize) -> u64 {
    match cached(pc) {
        0 => step_word_uncached(pc),
        word => word,
    }
}

#[cold]
#[inline(never)]
fn step_word_uncached(pc: usize) -> u64 {
    match resolve(pc) {
        Some(step) => {
            let word = pack(step);
            remember(pc, word);
            word
        }
        // The context is busy for too long: walk this stack with libgcc, cache nothing.
        None => UNSUPPORTED,
    }
}

// ---- a miss: find the FDE and evaluate its row ----

/// gimli's unwind context in static memory: a fixed-size rule set (x86_64 code saves at most
/// the 6 callee-saved registers plus the return address) and stack (`DW_CFA_remember_state`
/// nesting), so evaluating never allocates.
struct Fixed;

impl<T: gimli::ReaderOffset> UnwindContextStorage<T> for Fixed {
    type Rules = [(Register, RegisterRule<T>); 32];
    type Stack = [UnwindTableRow<T, Self>; 4];
}

type Context = UnwindContext<usize, Fixed>;

/// The one gimli context, behind a lock that records its holder's process id: a child forked
/// while another thread of its parent held it takes it over (that thread does not exist in the
/// child).
struct ContextLock {
    owner: AtomicU32,
    context: UnsafeCell<Option<Context>>,
}

// SAFETY: `context` is only touched by the thread that set `owner` from 0 (or from a dead
// parent's pid) to its own pid, until it stores 0 again (acquire/release).
unsafe impl Sync for ContextLock {}

static CONTEXT: ContextLock = ContextLock {
    owner: AtomicU32::new(0),
    context: UnsafeCell::new(None),
};

/// Where the gimli context lies, [start, end). Its storage is moved in and out of this static
/// bitwise, uninitialised slots included, so it holds leftovers of the stacks that unwound
/// through it (a user's pointers among them): the root scan must not read it.
pub(crate) fn scratch() -> (usize, usize) {
    let start = &CONTEXT as *const ContextLock as usize;
    (start, start + core::mem::size_of::<ContextLock>())
}

/// How long a miss waits for another thread's miss (each takes a few microseconds) before the
/// capture falls back to libgcc.
const LOCK_SPINS: u32 = 1 << 12;

/// Computes the step at `pc`; `None` if the context stayed busy.
fn resolve(pc: usize) -> Option<Step> {
    // SAFETY: `getpid` has no preconditions and cannot fail.
    let me = unsafe { libc::getpid() } as u32;
    let mut spins = 0;
    let taken_over = loop {
        match CONTEXT
            .owner
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => break false,
            // Held in the process we were forked from, by a thread that is not in this one.
            Err(holder)
                if holder != me
                    && CONTEXT
                        .owner
                        .compare_exchange(holder, me, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok() =>
            {
                break true
            }
            Err(_) => {
                spins += 1;
                if spins >= LOCK_SPINS {
                    return None;
                }
                core::hint::spin_loop();
            }
        }
    };
    // SAFETY: this thread holds the lock (above) until the store below; nothing else touches
    // the context meanwhile, and nothing in between can unwind (no panics in this path).
    let context = unsafe { &mut *CONTEXT.context.get() };
    if taken_over {
        // The fork may have caught the holder half-way through writing the context: start
        // afresh, without running its destructor on what may be a torn value.
        // SAFETY: `context` is valid for writes and exclusively ours (above); the old value
        // owns nothing (gimli's context is plain arrays), so not dropping it leaks nothing.
        unsafe { core::ptr::write(context, None) };
    }
    let context = context.get_or_insert_with(Context::new_in);
    let mut search = Search {
        pc,
        context,
        step: Step::Unsupported,
    };
    // SAFETY: `find_in_object` matches the callback type, only reads the program headers it is
    // given and the sections they describe (mapped while the loader lock is held, i.e. for the
    // whole iteration), and `search` outlives the call.
    unsafe {
        crate::raw::loader::iterate_objects(find_in_object, (&raw mut search).cast::<c_void>());
    }
    let step = search.step;
    CONTEXT.owner.store(0, Ordering::Release);
    Some(step)
}

struct Search<'a> {
    pc: usize,
    context: &'a mut Context,
    /// `Unsupported` until the object containing `pc` is found.
    step: Step,
}

/// Loaded segments remembered per object, to bound `.eh_frame` (its length is not recorded in
/// `.eh_frame_hdr`: it runs at most to the end of the segment holding it).
const MAX_SEGMENTS: usize = 16;

/// `dl_iterate_phdr` callback: when this object holds the pc, evaluates its rule into the
/// search and stops the iteration (returns 1).
unsafe extern "C" fn find_in_object(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: `data` is the `Search` passed by `resolve`, exclusively ours for the call; `info`
    // is valid for the call and describes `dlpi_phnum` program headers at `dlpi_phdr`.
    let (search, info) = unsafe { (&mut *data.cast::<Search<'_>>(), &*info) };
    let headers: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
        &[]
    } else {
        // SAFETY: as above.
        unsafe { core::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
    };
    let base = info.dlpi_addr as usize;
    let mut contains = false;
    let mut eh_frame_hdr = None;
    let mut segments = [(0usize, 0usize); MAX_SEGMENTS];
    let mut loaded = 0;
    for header in headers {
        let start = base.wrapping_add(header.p_vaddr as usize);
        let end = start.wrapping_add(header.p_memsz as usize);
        if header.p_type == libc::PT_LOAD {
            contains |= (start..end).contains(&search.pc);
            if loaded < MAX_SEGMENTS {
                segments[loaded] = (start, end);
                loaded += 1;
            }
        } else if header.p_type == libc::PT_GNU_EH_FRAME {
            eh_frame_hdr = Some((start, header.p_memsz as usize));
        }
    }
    if !contains {
        return 0;
    }
    search.step = match eh_frame_hdr {
        Some(hdr) => evaluate(search.pc, search.context, hdr, &segments[..loaded]),
        None => Step::Unsupported,
    };
    1
}

/// Finds the FDE for `pc` through the object's `.eh_frame_hdr` and reduces its row at `pc`.
fn evaluate(
    pc: usize,
    context: &mut Context,
    (hdr_addr, hdr_len): (usize, usize),
    segments: &[(usize, usize)],
) -> Step {
    let bases = BaseAddresses::default().set_eh_frame_hdr(hdr_addr as u64);
    // SAFETY: the PT_GNU_EH_FRAME segment is mapped (it lies inside a PT_LOAD segment) and
    // read-only while its object is loaded, which the loader lock held by `dl_iterate_phdr`
    // guarantees for the duration of this call.
    let hdr = unsafe { core::slice::from_raw_parts(hdr_addr as *const u8, hdr_len) };
    let Ok(parsed) = EhFrameHdr::new(hdr, LittleEndian).parse(&bases, 8) else {
        return Step::Unsupported;
    };
    let Ok(eh_frame_addr) = parsed.eh_frame_ptr().direct() else {
        return Step::Unsupported;
    };
    let eh_frame_addr = eh_frame_addr as usize;
    let Some(&(_, segment_end)) = segments
        .iter()
        .find(|&&(start, end)| (start..end).contains(&eh_frame_addr))
    else {
        return Step::Unsupported;
    };
    // No search table (an object linked without --eh-frame-hdr): libgcc scans linearly.
    let Some(table) = parsed.table() else {
        return Step::Unsupported;
    };
    // SAFETY: `.eh_frame` starts at `eh_frame_addr` inside a loaded segment and the slice ends
    // with that segment, so all of it is mapped, read-only, while the object stays loaded
    // (guaranteed for this call, as above).
    let eh_frame = unsafe {
        core::slice::from_raw_parts(eh_frame_addr as *const u8, segment_end - eh_frame_addr)
    };
    let eh_frame = EhFrame::new(eh_frame, LittleEndian);
    let bases = bases.set_eh_frame(eh_frame_addr as u64);
    let fde = match table.fde_for_address(&eh_frame, &bases, pc as u64, |section, bases, offset| {
        section.cie_from_offset(bases, offset)
    }) {
        Ok(fde) => fde,
        Err(gimli::Error::NoUnwindInfoForAddress) => return Step::End,
        Err(_) => return Step::Unsupported,
    };
    if fde.is_signal_trampoline() || fde.cie().return_address_register() != X86_64::RA {
        return Step::Unsupported;
    }
    match fde.unwind_info_for_address(&eh_frame, &bases, context, pc as u64) {
        Ok(row) => reduce(row),
        Err(gimli::Error::NoUnwindInfoForAddress) => Step::End,
        Err(_) => Step::Unsupported,
    }
}

/// Whether [`walk`] may read a saved rbp this far below the CFA without checking the slot's
/// alignment or its distance from the return address's: a word of its own below it.
const fn rbp_below_is_walkable(below: u16) -> bool {
    below >= 16 && below % 8 == 0
}

/// Reduces a CFI row to a [`Rule`], if it fits. gimli reads a register the row leaves out as
/// `Undefined`: for the return address that is the outermost frame, for rbp "not saved".
fn reduce(row: &UnwindTableRow<usize, Fixed>) -> Step {
    let rbp = match row.register(X86_64::RBP) {
        RegisterRule::Undefined => None,
        rule => Some(rule),
    };
    reduce_rules(row.cfa(), Some(row.register(X86_64::RA)), rbp)
}

fn reduce_rules(
    cfa: &CfaRule<usize>,
    ra: Option<RegisterRule<usize>>,
    rbp: Option<RegisterRule<usize>>,
) -> Step {
    match ra {
        Some(RegisterRule::Offset(-8)) => {}
        // No caller: the outermost frame (`_start`, `clone3`).
        Some(RegisterRule::Undefined) => return Step::End,
        _ => return Step::Unsupported,
    }
    let (cfa_from_rbp, cfa_offset) = match *cfa {
        CfaRule::RegisterAndOffset { register, offset } => {
            let from_rbp = if register == X86_64::RSP {
                false
            } else if register == X86_64::RBP {
                true
            } else {
                return Step::Unsupported;
            };
            match i32::try_from(offset) {
                Ok(offset) => (from_rbp, offset),
                Err(_) => return Step::Unsupported,
            }
        }
        CfaRule::Expression(_) => return Step::Unsupported,
    };
    // A saved rbp lies in a word of its own below the return address, where compilers put it
    // (the walk reads it without further checks on its alignment).
    let rbp_below = match rbp {
        None | Some(RegisterRule::SameValue) => None,
        Some(RegisterRule::Offset(offset)) if offset < 0 => {
            match u16::try_from(offset.unsigned_abs()) {
                Ok(below) if rbp_below_is_walkable(below) => Some(below),
                _ => return Step::Unsupported,
            }
        }
        Some(_) => return Step::Unsupported,
    };
    Step::Frame(Rule {
        cfa_from_rbp,
        cfa_offset,
        rbp_below,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;

    /// The cached walk (`None` if it gave up; retried while another test's miss holds the
    /// context) and libgcc's, both from this function. Does not panic (it runs under an
    /// `extern "C"` frame below).
    #[inline(never)]
    fn try_both_walks() -> (Option<Vec<usize>>, Vec<usize>) {
        let mut buf = [0; MAX_FRAMES];
        let bounds = super::super::frame_pointers::stack_bounds();
        let cached = (0..100)
            .find_map(|_| walk(&mut buf, bounds, 0, usize::MAX))
            .map(|n| buf[..n].to_vec());
        let n = super::super::walk_slow(&mut buf, 0, usize::MAX);
        (cached, buf[..n].to_vec())
    }

    #[inline(never)]
    fn both_walks() -> (Vec<usize>, Vec<usize>) {
        let (cached, slow) = try_both_walks();
        (cached.expect("the cached walker gave up"), slow)
    }

    /// Asserts that the cached walk lists exactly libgcc's frames, from the caller of
    /// `both_walks` to the end of the stack (or to the depth cap).
    fn assert_same_frames(cached: &[usize], slow: &[usize]) {
        assert!(
            super::super::cached_walk_agrees(cached, slow),
            "cached walk {cached:x?}\nlibgcc {slow:x?}"
        );
    }

    /// The rules the walk used for each of its frames' callers.
    fn rules_of(frames: &[usize]) -> Vec<Rule> {
        frames
            .iter()
            .filter_map(|&ret| match unpack(step_word(ret - 1)) {
                Step::Frame(rule) => Some(rule),
                _ => None,
            })
            .collect()
    }

    // Shared with tests/unwind.rs (this file's directory is not a module path, hence include!).
    mod shaped_frames {
        include!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/shaped_frames.rs"
        ));
    }
    use shaped_frames::shaped;

    fn walks_after(depth: u32) -> (Vec<usize>, Vec<usize>) {
        let mut walks = None;
        shaped(depth, &mut || walks = Some(both_walks()));
        walks.unwrap()
    }

    #[test]
    fn matches_libgcc_through_frames_of_every_shape() {
        // Deep, but under the 64-frame cap with the test harness's frames, so both walks
        // must also end at the same outermost frame.
        let (cached, slow) = walks_after(24);
        assert!(slow.len() < MAX_FRAMES, "{} frames", slow.len());
        assert_same_frames(&cached, &slow);
        let rules = rules_of(&cached);
        let from_rbp = rules.iter().filter(|r| r.cfa_from_rbp).count();
        assert!(from_rbp > 0, "no frame kept a frame pointer: {rules:?}");
        // std is built with frame pointers, leakcheck's own code (this test) is not unless
        // RUSTFLAGS force them, and then the shaped frames have none of the shapes below. The
        // first rule is `try_both_walks`'s own frame (512 bytes of locals): rsp-based without
        // frame pointers.
        let own_code_has_frame_pointers = rules.first().is_some_and(|r| r.cfa_from_rbp);
        if own_code_has_frame_pointers {
            eprintln!("note: this crate has frame pointers (-C force-frame-pointers?)");
        } else {
            assert!(
                rules.iter().any(|r| !r.cfa_from_rbp && r.cfa_offset > 3000),
                "no large rsp-based frame: {rules:?}"
            );
            assert!(
                rules
                    .iter()
                    .any(|r| !r.cfa_from_rbp && r.rbp_below.is_some()),
                "rbp never saved as a plain callee-saved register: {rules:?}"
            );
        }
    }

    #[test]
    fn matches_libgcc_on_a_stack_deeper_than_a_capture_keeps() {
        let (cached, slow) = walks_after(100);
        assert_eq!(cached.len(), MAX_FRAMES);
        // Both ends kept, the frames between counted (see `stack::Kept`).
        assert!(
            cached.iter().any(|&ret| ret < super::super::GAP_LIMIT),
            "{cached:x?}"
        );
        assert_same_frames(&cached, &slow);
    }

    #[test]
    fn matches_libgcc_on_many_threads_at_once() {
        let threads: Vec<_> = (0..4)
            .map(|i| std::thread::spawn(move || walks_after(8 + i * 5)))
            .collect();
        for thread in threads {
            let (cached, slow) = thread.join().unwrap();
            assert_same_frames(&cached, &slow);
        }
    }

    #[test]
    fn a_read_outside_the_stack_ends_the_walk() {
        let mut buf = [0; MAX_FRAMES];
        let here = black_box(&buf) as *const _ as usize;
        // A stack that seems to end just above this frame: the walk must give up, not read on.
        assert_eq!(walk(&mut buf, (0, here + 64), 0, usize::MAX), None);
        // A stack that does not contain this frame at all.
        assert_eq!(walk(&mut buf, (1, 1), 0, usize::MAX), None);
    }

    // Hand-written frames with exactly known CFI, independent of how Rust code was compiled:
    // `outer` keeps a frame pointer (CFA = rbp + 16) and calls `inner`, which has an rsp-based
    // CFA, saves rbp at CFA - 32 and then points rbp somewhere wrong before calling the
    // callback. A walker that did not restore rbp from its save slot would compute `outer`'s CFA
    // from the wrong rbp.
    core::arch::global_asm!(
        ".text",
        ".p2align 4",
        ".type leakcheck_unwind_test_outer,@function",
        "leakcheck_unwind_test_outer:",
        ".cfi_startproc",
        "pushq %rbp",
        ".cfi_def_cfa_offset 16",
        ".cfi_offset %rbp, -16",
        "movq %rsp, %rbp",
        ".cfi_def_cfa_register %rbp",
        "subq $2048, %rsp",
        "callq leakcheck_unwind_test_inner",
        "movq %rbp, %rsp",
        "popq %rbp",
        ".cfi_def_cfa %rsp, 8",
        "retq",
        ".cfi_endproc",
        ".size leakcheck_unwind_test_outer, .-leakcheck_unwind_test_outer",
        ".p2align 4",
        ".type leakcheck_unwind_test_inner,@function",
        "leakcheck_unwind_test_inner:",
        ".cfi_startproc",
        "subq $40, %rsp",
        ".cfi_def_cfa_offset 48",
        "movq %rbp, 16(%rsp)",
        ".cfi_offset %rbp, -32",
        "leaq 8(%rsp), %rbp",
        "movq %rdi, %rax",
        "movq %rsi, %rdi",
        "callq *%rax",
        "movq 16(%rsp), %rbp",
        ".cfi_restore %rbp",
        "addq $40, %rsp",
        ".cfi_def_cfa_offset 8",
        "retq",
        ".cfi_endproc",
        ".size leakcheck_unwind_test_inner, .-leakcheck_unwind_test_inner",
        options(att_syntax),
    );

    unsafe extern "C" {
        /// Calls `callback(data)` through the two hand-written frames.
        fn leakcheck_unwind_test_outer(callback: extern "C" fn(*mut c_void), data: *mut c_void);
        fn leakcheck_unwind_test_inner(callback: extern "C" fn(*mut c_void), data: *mut c_void);
    }

    type Walks = Option<(Option<Vec<usize>>, Vec<usize>)>;

    extern "C" fn walk_into(data: *mut c_void) {
        // SAFETY: `data` is the `Walks` passed by the test below, alive and unaliased.
        let out = unsafe { &mut *data.cast::<Walks>() };
        *out = Some(try_both_walks());
    }

    #[test]
    fn restores_rbp_through_hand_written_frames() {
        let mut out: Walks = None;
        // SAFETY: the assembly functions follow the C ABI: they call `walk_into(data)` and
        // restore every callee-saved register and the stack pointer before returning.
        unsafe { leakcheck_unwind_test_outer(walk_into, (&raw mut out).cast::<c_void>()) };
        let (cached, slow) = out.unwrap();
        let cached = cached.expect("the cached walker gave up in the hand-written frames");
        assert_same_frames(&cached, &slow);
        // `inner` follows `outer` and is shorter than 64 bytes.
        let outer = leakcheck_unwind_test_outer as *const () as usize;
        let inner = leakcheck_unwind_test_inner as *const () as usize;
        let at = |range: core::ops::Range<usize>| cached.iter().position(|ret| range.contains(ret));
        let (Some(i), Some(o)) = (at(inner..inner + 64), at(outer..inner)) else {
            panic!("the walk missed the hand-written frames: {cached:x?}");
        };
        assert_eq!(o, i + 1);
        assert_eq!(
            rules_of(&cached[i..=o]),
            [
                Rule {
                    cfa_from_rbp: false,
                    cfa_offset: 48,
                    rbp_below: Some(32),
                },
                Rule {
                    cfa_from_rbp: true,
                    cfa_offset: 16,
                    rbp_below: Some(16),
                },
            ]
        );
    }

    #[test]
    fn packing_round_trips() {
        let rules = [
            Rule {
                cfa_from_rbp: false,
                cfa_offset: 8,
                rbp_below: None,
            },
            Rule {
                cfa_from_rbp: true,
                cfa_offset: 16,
                rbp_below: Some(16),
            },
            Rule {
                cfa_from_rbp: false,
                cfa_offset: i32::MAX,
                rbp_below: Some(u16::MAX - 7),
            },
            Rule {
                cfa_from_rbp: true,
                cfa_offset: i32::MIN,
                rbp_below: Some(16),
            },
        ];
        for rule in rules {
            let word = pack(Step::Frame(rule));
            assert_ne!(word, 0);
            assert_eq!(unpack(word), Step::Frame(rule));
        }
        for step in [Step::End, Step::Unsupported] {
            assert_eq!(unpack(pack(step)), step);
        }
        // A saved rbp the walk could not read unchecked is never packed as a frame.
        for below in [0, 8, 12, 20, u16::MAX] {
            let rule = Rule {
                cfa_from_rbp: false,
                cfa_offset: 64,
                rbp_below: Some(below),
            };
            assert_eq!(pack(Step::Frame(rule)), UNSUPPORTED, "rbp at CFA-{below}");
        }
    }

    #[test]
    fn reduces_only_the_simple_rules() {
        let rsp = |offset| CfaRule::RegisterAndOffset {
            register: X86_64::RSP,
            offset,
        };
        let ra = Some(RegisterRule::Offset(-8));
        assert_eq!(
            reduce_rules(&rsp(4104), ra.clone(), None),
            Step::Frame(Rule {
                cfa_from_rbp: false,
                cfa_offset: 4104,
                rbp_below: None,
            })
        );
        let rbp = CfaRule::RegisterAndOffset {
            register: X86_64::RBP,
            offset: 16,
        };
        assert_eq!(
            reduce_rules(&rbp, ra.clone(), Some(RegisterRule::Offset(-16))),
            Step::Frame(Rule {
                cfa_from_rbp: true,
                cfa_offset: 16,
                rbp_below: Some(16),
            })
        );
        assert_eq!(
            reduce_rules(&rsp(8), Some(RegisterRule::Undefined), None),
            Step::End
        );
        let rbx = CfaRule::RegisterAndOffset {
            register: X86_64::RBX,
            offset: 8,
        };
        assert_eq!(reduce_rules(&rbx, ra.clone(), None), Step::Unsupported);
        assert_eq!(
            reduce_rules(
                &rsp(8),
                ra.clone(),
                Some(RegisterRule::Register(X86_64::RBX))
            ),
            Step::Unsupported
        );
        assert_eq!(
            reduce_rules(&rsp(1 << 40), ra.clone(), None),
            Step::Unsupported
        );
        assert_eq!(
            reduce_rules(&rsp(8), Some(RegisterRule::SameValue), None),
            Step::Unsupported
        );
        // The walk reads the return address at CFA - 8 and a saved rbp in a word of its own
        // below it, without further checks: anything else is libgcc's to walk.
        for ra_offset in [-16, 0, 8] {
            let ra = Some(RegisterRule::Offset(ra_offset));
            assert_eq!(reduce_rules(&rsp(16), ra, None), Step::Unsupported);
        }
        for rbp_offset in [-8, -12, 0, 8, -(1 << 16), i64::MIN] {
            let rbp = Some(RegisterRule::Offset(rbp_offset));
            assert_eq!(
                reduce_rules(&rsp(64), ra.clone(), rbp),
                Step::Unsupported,
                "rbp at CFA{rbp_offset:+}"
            );
        }
        assert_eq!(
            reduce_rules(&rsp(64), ra.clone(), Some(RegisterRule::Offset(-56))),
            Step::Frame(Rule {
                cfa_from_rbp: false,
                cfa_offset: 64,
                rbp_below: Some(56),
            })
        );
    }
}
