//! Capturing raw stacks (return addresses) inside the allocator.
//!
//! Three walkers: a frame-pointer walk (~2 ns a frame), a DWARF CFI walk with cached rules
//! (`unwind.rs`, a few ns a frame; x86_64 Linux with glibc) and libgcc's `_Unwind_Backtrace`
//! (re-parsing DWARF CFI for every frame, ~100 ns a frame). The frame-pointer walk is only
//! correct when every frame on the path keeps a frame pointer: std's precompiled code does, the
//! user's crates only with `-C force-frame-pointers=yes`. Without it the walk silently skips
//! frames, so it is used only after [`calibrate`] has seen it agree with libgcc on a stack that
//! runs through code compiled like the user's. Otherwise the cached CFI walk is used, once
//! [`calibrate`] has seen it agree with libgcc too, and libgcc walks every stack the cached walk
//! gives up on (and every stack on other targets).

use super::intern::{self, MAX_FRAMES};
use core::cell::{Cell, RefCell};
use core::sync::atomic::{AtomicU8, Ordering};

// The cached CFI walker: a child of this module (not of `raw`) as nothing else uses it.
#[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
#[path = "unwind.rs"]
mod unwind;

/// Static memory of the stack walkers that holds leftovers of other stacks (see
/// `unwind::scratch`), which the root scan must not read.
pub(crate) fn scratch_statics() -> Vec<(usize, usize)> {
    #[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
    {
        vec![unwind::scratch()]
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64")))]
    {
        Vec::new()
    }
}

/// Which walker captures stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unwinder {
    /// Not calibrated yet: the slow walker is used.
    Unknown,
    /// Verified frame-pointer walk.
    FramePointers,
    /// DWARF CFI through the cached walker (frame pointers missing), verified against
    /// libgcc; a stack it cannot walk goes to libgcc.
    CachedCfi,
    /// libgcc's DWARF unwinder: frame pointers missing and no verified cached walker on this
    /// target.
    Slow,
}

static UNWINDER: AtomicU8 = AtomicU8::new(0);

pub(crate) fn unwinder() -> Unwinder {
    match UNWINDER.load(Ordering::Relaxed) {
        1 => Unwinder::FramePointers,
        2 => Unwinder::Slow,
        3 => Unwinder::CachedCfi,
        _ => Unwinder::Unknown,
    }
}

thread_local! {
    /// Where this thread's captures go: a fresh buffer would be 512 bytes zeroed per tracked
    /// allocation. Holds return addresses only, never heap addresses, so it cannot make a
    /// block look reachable to the root scan.
    static FRAMES: RefCell<[usize; MAX_FRAMES]> = const { RefCell::new([0; MAX_FRAMES]) };
}

thread_local! {
    /// Captures on this thread stop below this address (0: no limit); see [`CaptureLimit`].
    static LIMIT: Cell<usize> = const { Cell::new(0) };
}

/// While alive, stacks captured on this thread end at the frame that holds `marker` (a local
/// of the function that runs a check's body): the frames above it are the runner's, the same
/// for every allocation of the check and never shown in a report (the report's frames end at
/// the test body), yet a third of each walk and of the interner's hashing under libtest.
/// Every frame the body makes lies below `marker`, and so does the return address into the
/// marker's function (the body's own code when it is inlined there).
pub(crate) struct CaptureLimit {
    previous: usize,
    _not_send: core::marker::PhantomData<*const ()>,
}

impl CaptureLimit {
    pub(crate) fn below(marker: &u8) -> CaptureLimit {
        let limit = marker as *const u8 as usize;
        let previous = LIMIT.try_with(|l| l.replace(limit)).unwrap_or(0);
        CaptureLimit {
            previous,
            _not_send: core::marker::PhantomData,
        }
    }
}

impl Drop for CaptureLimit {
    fn drop(&mut self) {
        let _ = LIMIT.try_with(|l| l.set(self.previous));
    }
}

fn capture_limit() -> usize {
    match LIMIT.try_with(Cell::get) {
        Ok(0) | Err(_) => usize::MAX,
        Ok(limit) => limit,
    }
}

/// Return addresses below this are gap markers (see [`Kept`]): no code is mapped in the
/// lowest page.
pub(crate) const GAP_LIMIT: usize = 4096;
/// Of a stack deeper than [`MAX_FRAMES`], the outermost frames kept: the test body's among
/// them (the walk ends at the check's own frame).
const TAIL_FRAMES: usize = 8;
/// ... and the innermost: the allocation site and its callers.
const HEAD_FRAMES: usize = MAX_FRAMES - TAIL_FRAMES - 1;
/// The slots from [`HEAD_FRAMES`] on, a ring while the walk goes deeper.
const RING: usize = MAX_FRAMES - HEAD_FRAMES;
/// Frames walked at most, so that the count of those skipped stays a gap marker.
const MAX_WALK: usize = HEAD_FRAMES + TAIL_FRAMES + GAP_LIMIT - 1;

/// Where a walk keeps the return addresses it reads, innermost first. A stack that fits is
/// kept whole. Of a deeper one (recursion, layers of generic code in a debug build) the walk
/// goes on to the end, keeping the first [`HEAD_FRAMES`] and the last [`TAIL_FRAMES`] with,
/// between them, one marker: the number of frames left out (below [`GAP_LIMIT`]). Cutting at the
/// buffer's end instead lost the outermost frames, the test body's, which a report ends at.
pub(crate) struct Kept<'a> {
    buf: &'a mut [usize; MAX_FRAMES],
    /// Return addresses pushed so far.
    seen: usize,
}

impl<'a> Kept<'a> {
    #[inline(always)]
    pub(crate) fn new(buf: &'a mut [usize; MAX_FRAMES]) -> Kept<'a> {
        Kept { buf, seen: 0 }
    }

    /// Keeps the next (outer) return address; false when the walk must stop here.
    #[inline(always)]
    pub(crate) fn push(&mut self, ret: usize) -> bool {
        let slot = if self.seen < HEAD_FRAMES {
            self.seen
        } else {
            HEAD_FRAMES + (self.seen - HEAD_FRAMES) % RING
        };
        // Always in bounds; `get_mut` keeps a panic path out of the allocator.
        if let Some(slot) = self.buf.get_mut(slot) {
            *slot = ret;
        }
        self.seen += 1;
        self.seen < MAX_WALK
    }

    /// The number of entries of the buffer that hold the capture, in order.
    #[inline(always)]
    pub(crate) fn finish(self) -> usize {
        if self.seen <= MAX_FRAMES {
            return self.seen;
        }
        // The ring holds the last RING frames, the oldest where the next would have gone.
        let ring = &mut self.buf[HEAD_FRAMES..];
        ring.rotate_left((self.seen - HEAD_FRAMES) % RING);
        // Its oldest gives way to the marker: TAIL_FRAMES stay.
        ring[0] = self.seen - HEAD_FRAMES - TAIL_FRAMES;
        MAX_FRAMES
    }
}

/// Captures the current stack and interns it; returns its id (0 when the stack store is full).
/// Frames whose return address is stored below `from` (a stack address in the recording
/// function: leakcheck's own frames under it) are walked through but not kept, so that neither
/// the walk's buffer nor the interner's hash pays for frames every report trims.
pub(crate) fn capture_interned(from: usize) -> u32 {
    let on_scratch = FRAMES.try_with(|frames| {
        // Busy only if a capture re-entered this one (tracking is blocked while capturing, so
        // it should not happen): then a fresh buffer below.
        let mut frames = frames.try_borrow_mut().ok()?;
        let len = capture(&mut frames, from);
        Some(intern::intern(&frames[..len]))
    });
    if let Ok(Some(id)) = on_scratch {
        return id;
    }
    let mut frames = [0usize; MAX_FRAMES];
    let len = capture(&mut frames, from);
    intern::intern(&frames[..len])
}

/// Captures the current stack into `buf`, innermost frame first, from `from` (see
/// [`capture_interned`]) up to this thread's [`CaptureLimit`]; returns how many frames. Every
/// walker keeps the same frames of a given stack: one allocation site has one stack id, which
/// is what `repeat` compares between runs.
#[inline(never)]
pub(crate) fn capture(buf: &mut [usize; MAX_FRAMES], from: usize) -> usize {
    let limit = capture_limit();
    match unwinder() {
        Unwinder::FramePointers => {
            let n = walk_frame_pointers(buf, from, limit);
            if n > 0 {
                return n;
            }
        }
        Unwinder::CachedCfi => {
            if let Some(n) = walk_cached_cfi(buf, from, limit) {
                return n;
            }
        }
        Unwinder::Slow | Unwinder::Unknown => {}
    }
    walk_slow(buf, from, limit)
}

/// libgcc's walk, keeping the frames the fast walkers keep: a return address is kept when the
/// slot it was read from lies in [`from`, `limit`). libgcc's CFA for a frame is its callee's
/// (the caller's stack pointer after the return), so the slot is the word below it.
#[inline(never)]
fn walk_slow(buf: &mut [usize; MAX_FRAMES], from: usize, limit: usize) -> usize {
    let mut walk = SlowWalk {
        kept: Kept::new(buf),
        from,
        limit,
    };
    libgcc::backtrace(&mut walk);
    walk.kept.finish()
}

/// The state of [`walk_slow`] that the unwinder's callback updates.
#[cfg_attr(not(all(unix, not(target_arch = "arm"))), allow(dead_code))]
struct SlowWalk<'a> {
    kept: Kept<'a>,
    from: usize,
    limit: usize,
}

#[cfg_attr(not(all(unix, not(target_arch = "arm"))), allow(dead_code))]
impl SlowWalk<'_> {
    /// Takes one frame's return address and CFA; false to stop.
    #[inline(always)]
    fn frame(&mut self, ip: usize, cfa: usize) -> bool {
        const WORD: usize = core::mem::size_of::<usize>();
        // libgcc ends with the outermost frame's undefined return address, at 0.
        if ip == 0 {
            return false;
        }
        let slot = cfa.checked_sub(WORD);
        if slot.is_some_and(|slot| slot >= self.limit) {
            return false;
        }
        if slot.is_none_or(|slot| slot >= self.from) {
            return self.kept.push(ip);
        }
        true
    }
}

/// The platform's DWARF unwinder, called directly: `_Unwind_Backtrace` of libgcc_s (which std
/// links on Linux) or of the system's libunwind. It is thread-safe, and may allocate (the
/// capture blocks tracking around it); its callback runs in the walking thread.
#[cfg(all(unix, not(target_arch = "arm")))]
mod libgcc {
    use super::SlowWalk;
    use core::ffi::{c_int, c_void};

    /// libgcc's `struct _Unwind_Context`, only ever behind a pointer.
    #[repr(C)]
    struct Context {
        _opaque: [u8; 0],
    }

    /// `_URC_NO_REASON`: go on. Any other value stops the walk; `_URC_END_OF_STACK` is the
    /// one that says why.
    const GO_ON: c_int = 0;
    const STOP: c_int = 5;

    type Trace = unsafe extern "C" fn(*mut Context, *mut c_void) -> c_int;

    unsafe extern "C" {
        fn _Unwind_Backtrace(trace: Trace, data: *mut c_void) -> c_int;
        fn _Unwind_GetIP(context: *mut Context) -> usize;
        fn _Unwind_GetCFA(context: *mut Context) -> usize;
    }

    unsafe extern "C" fn each_frame(context: *mut Context, data: *mut c_void) -> c_int {
        // SAFETY: `data` is the `SlowWalk` that `backtrace` passed, borrowed for the walk and
        // touched by nothing else meanwhile; `context` is the unwinder's, valid during the call.
        let (walk, ip, cfa) = unsafe {
            (
                &mut *data.cast::<SlowWalk<'_>>(),
                _Unwind_GetIP(context),
                _Unwind_GetCFA(context),
            )
        };
        if walk.frame(ip, cfa) {
            GO_ON
        } else {
            STOP
        }
    }

    /// Walks the calling thread's stack, outwards, from the caller of `_Unwind_Backtrace`.
    #[inline(always)]
    pub(super) fn backtrace(walk: &mut SlowWalk<'_>) {
        // SAFETY: `each_frame` has the callback's C signature and uses `data` only as the
        // `SlowWalk` passed here, which outlives the walk.
        unsafe { _Unwind_Backtrace(each_frame, (walk as *mut SlowWalk<'_>).cast()) };
    }
}

/// No unwinder is called on other targets (32-bit ARM's EHABI has no `_Unwind_GetIP`
/// function): without frame pointers, stacks there are empty, and reports say so.
#[cfg(not(all(unix, not(target_arch = "arm"))))]
mod libgcc {
    pub(super) fn backtrace(_walk: &mut super::SlowWalk<'_>) {}
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod frame_pointers {
    use super::*;

    thread_local! {
        /// This thread's stack bounds, [low, high); (0, 0) until known, (1, 1) if unknowable.
        static STACK_LOW: Cell<usize> = const { Cell::new(0) };
        static STACK_HIGH: Cell<usize> = const { Cell::new(0) };
    }

    /// This thread's stack, [low, high); an empty range if unknowable.
    pub(crate) fn stack_bounds() -> (usize, usize) {
        let low = STACK_LOW.try_with(Cell::get).unwrap_or(1);
        if low != 0 {
            return (low, STACK_HIGH.try_with(Cell::get).unwrap_or(1));
        }
        let (low, high) = query_stack_bounds().unwrap_or((1, 1));
        let _ = STACK_LOW.try_with(|c| c.set(low));
        let _ = STACK_HIGH.try_with(|c| c.set(high));
        (low, high)
    }

    fn query_stack_bounds() -> Option<(usize, usize)> {
        let mut attr = core::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
        // SAFETY: `attr` is valid for writes; on success it is initialised and destroyed below.
        // For the main thread glibc reads /proc/self/maps with malloc: the caller has blocked
        // tracking on this thread, so that allocation passes straight through.
        unsafe {
            if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
                return None;
            }
            let mut addr = core::ptr::null_mut();
            let mut size = 0usize;
            let ok = libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size) == 0;
            libc::pthread_attr_destroy(attr.as_mut_ptr());
            ok.then(|| (addr as usize, addr as usize + size))
        }
    }

    #[inline(always)]
    fn current_frame_pointer() -> usize {
        let fp: usize;
        // SAFETY: reads the frame-pointer register; no memory access, no side effects.
        unsafe {
            #[cfg(target_arch = "x86_64")]
            core::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags));
            #[cfg(target_arch = "aarch64")]
            core::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags));
        }
        fp
    }

    /// Follows the chain of saved frame pointers; every read is checked to lie inside this
    /// thread's stack, so a broken chain ends the walk instead of faulting. Frame records at
    /// or above `limit` are not read (see `CaptureLimit`).
    #[inline(never)]
    pub(crate) fn walk_frame_pointers(
        buf: &mut [usize; MAX_FRAMES],
        from: usize,
        limit: usize,
    ) -> usize {
        let (low, high) = stack_bounds();
        let high = high.min(limit);
        let word = core::mem::size_of::<usize>();
        // The last address at which a whole frame record [saved fp, return address] fits.
        let Some(last) = high.checked_sub(2 * word) else {
            return 0;
        };
        let mut fp = current_frame_pointer();
        if fp < low {
            return 0;
        }
        // Each `fp` is at least `low`: the first was checked, and every next one is strictly
        // above the one before (frames grow downwards: a caller's record is above its
        // callee's), so one comparison with `last` bounds it on both sides.
        // The frames whose return address lies below `from` are followed, not kept.
        while fp + word < from {
            if fp > last || fp % word != 0 {
                return 0;
            }
            // SAFETY: `fp` lies within this thread's mapped stack, [low, last] (checked above),
            // and is word-aligned.
            let next = unsafe { *(fp as *const usize) };
            if next <= fp {
                return 0;
            }
            fp = next;
        }
        let mut kept = Kept::new(buf);
        loop {
            if fp > last || fp % word != 0 {
                break;
            }
            // SAFETY: `fp` and `fp + word` lie within this thread's mapped stack, [low, high)
            // (checked above), and are word-aligned.
            let (next, ret) = unsafe { (*(fp as *const usize), *((fp + word) as *const usize)) };
            if ret == 0 {
                break;
            }
            if !kept.push(ret) || next <= fp {
                break;
            }
            fp = next;
        }
        kept.finish()
    }
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod frame_pointers {
    use super::*;

    pub(crate) fn walk_frame_pointers(
        _buf: &mut [usize; MAX_FRAMES],
        _from: usize,
        _limit: usize,
    ) -> usize {
        0
    }
}

use frame_pointers::walk_frame_pointers;

/// The cached CFI walk from the calling function (`buf[0]` is the return address into it), or
/// `None` where it gives up or does not exist.
#[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
#[inline(always)]
fn walk_cached_cfi(buf: &mut [usize; MAX_FRAMES], from: usize, limit: usize) -> Option<usize> {
    unwind::walk(buf, frame_pointers::stack_bounds(), from, limit)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64")))]
#[inline(always)]
fn walk_cached_cfi(_buf: &mut [usize; MAX_FRAMES], _from: usize, _limit: usize) -> Option<usize> {
    None
}

/// Decides, once per process, whether frame-pointer walking is trustworthy (and, if not,
/// whether the cached CFI walker is). Must be called from a frame compiled with the user's
/// flags (a generic function instantiated in the user's crate) so that a missing
/// `-C force-frame-pointers=yes` shows up as a disagreement.
#[inline(never)]
pub(crate) fn calibrate() -> Unwinder {
    let current = unwinder();
    if current != Unwinder::Unknown {
        return current;
    }
    let mut fast = [0usize; MAX_FRAMES];
    let fast_len = walk_frame_pointers(&mut fast, 0, usize::MAX);
    let mut slow = [0usize; MAX_FRAMES];
    let slow_len = walk_slow(&mut slow, 0, usize::MAX);
    let mut cached = [0usize; MAX_FRAMES];
    let cached_len = walk_cached_cfi(&mut cached, 0, usize::MAX);
    let (fast, slow) = (&fast[..fast_len], &slow[..slow_len]);
    // The cached CFI walker must list exactly libgcc's callers.
    let cached = cached_len
        .map(|len| &cached[..len])
        .filter(|cached| cached_walk_agrees(cached, slow));
    let verdict = if frame_walks_agree(fast, slow) && starts_in_calibrate(fast, cached) {
        Unwinder::FramePointers
    } else if cached.is_some() {
        Unwinder::CachedCfi
    } else {
        Unwinder::Slow
    };
    UNWINDER.store(
        match verdict {
            Unwinder::FramePointers => 1,
            Unwinder::Slow => 2,
            Unwinder::CachedCfi => 3,
            Unwinder::Unknown => 0,
        },
        Ordering::Relaxed,
    );
    verdict
}

/// Return addresses this close are taken to be in the same function.
const SAME_FUNCTION: usize = 512;

/// Whether the frame-pointer walk started at `calibrate`'s own call to it. Where `calibrate`
/// (like the rest of leakcheck, built with the user's flags) keeps no frame pointer, the walk
/// starts at whichever older frame last kept one, and from there on agrees with libgcc by
/// construction, although it skipped every frame in between: [`frame_walks_agree`] alone cannot
/// tell. With a verified cached CFI walk (which started in `calibrate` too) the test is exact:
/// both must name `calibrate`'s caller second. Elsewhere the first return address must lie just
/// past `calibrate`'s entry (the walk is its first call).
fn starts_in_calibrate(fast: &[usize], cached: Option<&[usize]>) -> bool {
    match cached {
        Some(cached) => fast.len() > 1 && cached.len() > 1 && fast[1] == cached[1],
        None => {
            let entry = calibrate as fn() -> Unwinder as usize;
            fast.first()
                .is_some_and(|&first| first > entry && first - entry <= SAME_FUNCTION)
        }
    }
}

/// `fast[0]` and the frame before `fast[1]` in `slow` are both return addresses into
/// `calibrate` (after its two different calls); from there on both walks must list the same
/// callers, for at least a few frames. A walk that skipped a frame without a frame pointer
/// lands on an older caller and fails the first check.
fn frame_walks_agree(fast: &[usize], slow: &[usize]) -> bool {
    const MIN_CHECKED: usize = 3;
    if fast.len() < 2 {
        return false;
    }
    let Some(p) = slow.iter().position(|&ip| ip == fast[1]) else {
        return false;
    };
    if p == 0 || slow[p - 1].abs_diff(fast[0]) > SAME_FUNCTION {
        return false;
    }
    // Up to a deep capture's gap marker, whose count differs by where each walk started.
    let callers = before_gap(&fast[1..]);
    let slow_callers = before_gap(&slow[p..]);
    let checked = callers.len().min(slow_callers.len());
    checked >= MIN_CHECKED.min(slow_callers.len()) && callers[..checked] == slow_callers[..checked]
}

/// The frames of a capture up to its gap marker (see [`Kept`]), all of them if it has none.
fn before_gap(frames: &[usize]) -> &[usize] {
    let end = frames
        .iter()
        .position(|&ret| ret < GAP_LIMIT)
        .unwrap_or(frames.len());
    &frames[..end]
}

/// Like [`frame_walks_agree`], but every caller must match, and both walks must end at the
/// same frame. Of a stack deeper than [`MAX_FRAMES`] (see [`Kept`]) the innermost frames kept
/// must match as far as both go (the walks start a few frames apart, so one keeps fewer of
/// the callers and counts more in its gap) and the outermost ones exactly.
fn cached_walk_agrees(cached: &[usize], slow: &[usize]) -> bool {
    if !frame_walks_agree(cached, slow) {
        return false;
    }
    let Some(p) = slow.iter().position(|&ip| ip == cached[1]) else {
        return false;
    };
    let (callers, slow_callers) = (&cached[1..], &slow[p..]);
    let split = |frames: &[usize]| -> (usize, Option<usize>) {
        let gap = frames.iter().position(|&ret| ret < GAP_LIMIT);
        (gap.unwrap_or(frames.len()), gap)
    };
    match (split(callers), split(slow_callers)) {
        ((_, None), (_, None)) => callers == slow_callers,
        ((head, gap), (slow_head, slow_gap)) => {
            let common = head.min(slow_head);
            let tails_agree = match (gap, slow_gap) {
                (Some(gap), Some(slow_gap)) => callers[gap + 1..] == slow_callers[slow_gap + 1..],
                // One walk just fits: its end cannot be told from the other's gap.
                _ => true,
            };
            callers[..common] == slow_callers[..common] && tails_agree
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a capture keeps of a walk through `depth` frames with made-up return addresses.
    fn capture_of(depth: usize) -> Vec<usize> {
        let mut buf = [0; MAX_FRAMES];
        let mut kept = Kept::new(&mut buf);
        for i in 0..depth {
            if !kept.push(0x10000 + i) {
                break;
            }
        }
        let n = kept.finish();
        buf[..n].to_vec()
    }

    fn frames_in(range: std::ops::Range<usize>) -> Vec<usize> {
        range.map(|i| 0x10000 + i).collect()
    }

    #[test]
    fn a_deep_capture_keeps_both_ends_and_counts_the_gap() {
        assert_eq!(capture_of(5), frames_in(0..5));
        assert_eq!(capture_of(MAX_FRAMES), frames_in(0..MAX_FRAMES));
        for depth in [MAX_FRAMES + 1, MAX_FRAMES + 7, 1000] {
            let kept = capture_of(depth);
            assert_eq!(kept.len(), MAX_FRAMES, "{depth}");
            assert_eq!(
                kept[..HEAD_FRAMES],
                frames_in(0..HEAD_FRAMES)[..],
                "{depth}"
            );
            assert_eq!(
                kept[HEAD_FRAMES],
                depth - HEAD_FRAMES - TAIL_FRAMES,
                "{depth}"
            );
            assert_eq!(
                kept[HEAD_FRAMES + 1..],
                frames_in(depth - TAIL_FRAMES..depth)[..],
                "{depth}"
            );
        }
        // The walk stops while the count of the frames left out is still a marker.
        let longest = capture_of(100_000);
        assert_eq!(longest[HEAD_FRAMES], GAP_LIMIT - 1);
        assert_eq!(
            longest[HEAD_FRAMES + 1..],
            frames_in(MAX_WALK - TAIL_FRAMES..MAX_WALK)[..]
        );
    }

    #[test]
    fn agreement_requires_the_same_callers() {
        let slow = [1, 2, 1000, 5000, 6000, 7000, 8000];
        assert!(frame_walks_agree(&[1010, 5000, 6000, 7000], &slow));
        // Skipped the caller at 5000: lands on 6000, whose predecessor is not in calibrate.
        assert!(!frame_walks_agree(&[1010, 6000, 7000, 8000], &slow));
        assert!(!frame_walks_agree(&[1010], &slow));
        assert!(!frame_walks_agree(&[1010, 5000, 6001], &slow));
    }

    #[test]
    fn a_frame_pointer_walk_that_skipped_calibrate_is_caught() {
        // The cached walk's second frame is calibrate's caller: so must the frame-pointer
        // walk's be.
        let cached = [1010, 5000, 6000, 7000];
        assert!(starts_in_calibrate(&[1020, 5000, 6000], Some(&cached)));
        assert!(!starts_in_calibrate(&[5000, 6000, 7000], Some(&cached)));
        // Without it, the first frame must be just past calibrate's entry.
        let entry = calibrate as fn() -> Unwinder as usize;
        assert!(starts_in_calibrate(&[entry + 40, 5000], None));
        assert!(!starts_in_calibrate(&[entry + 4000, 5000], None));
        assert!(!starts_in_calibrate(&[], None));
    }

    #[test]
    fn cached_walk_must_match_to_the_end() {
        let slow = [1, 2, 1000, 5000, 6000, 7000, 8000];
        assert!(cached_walk_agrees(&[1010, 5000, 6000, 7000, 8000], &slow));
        // Stopped early, or went on past libgcc's last frame.
        assert!(!cached_walk_agrees(&[1010, 5000, 6000, 7000], &slow));
        assert!(!cached_walk_agrees(
            &[1010, 5000, 6000, 7000, 8000, 9000],
            &slow
        ));
        assert!(!cached_walk_agrees(&[1010, 5000, 6000, 7001, 8000], &slow));
    }

    #[test]
    fn calibration_verifies_the_cached_walker() {
        // This package is built without frame pointers unless RUSTFLAGS force them.
        if calibrate() != Unwinder::FramePointers
            && cfg!(all(
                target_os = "linux",
                target_env = "gnu",
                target_arch = "x86_64"
            ))
        {
            assert_eq!(unwinder(), Unwinder::CachedCfi);
            let mut buf = [0; MAX_FRAMES];
            assert!(walk_cached_cfi(&mut buf, 0, usize::MAX).is_some_and(|n| n > 2));
        }
    }

    /// The walk this build trusts (frame pointers if every frame keeps one, else the cached
    /// CFI walk), from the caller, up to the thread's limit; `None` where neither applies.
    #[inline(never)]
    fn walk_to_limit() -> Option<Vec<usize>> {
        walk_between(0)
    }

    /// As [`walk_to_limit`], keeping only the frames whose return address lies at or above
    /// `from`.
    #[inline(never)]
    fn walk_between(from: usize) -> Option<Vec<usize>> {
        let mut buf = [0; MAX_FRAMES];
        let n = match calibrate() {
            Unwinder::FramePointers => walk_frame_pointers(&mut buf, from, capture_limit()),
            Unwinder::CachedCfi => {
                (0..100).find_map(|_| walk_cached_cfi(&mut buf, from, capture_limit()))?
            }
            Unwinder::Slow | Unwinder::Unknown => return None,
        };
        Some(buf[..n].to_vec())
    }

    #[inline(never)]
    fn nest(depth: u32, leaf: &mut dyn FnMut()) {
        if depth == 0 {
            leaf();
        } else {
            nest(depth - 1, leaf);
        }
        std::hint::black_box(depth);
    }

    /// Whether a return address is in `function` itself (not one of its closures), inlined or
    /// not. A release build may inline a test's body into libtest's `FnOnce::call_once` shim,
    /// together with the test's harness closure, which is the next frame out otherwise.
    fn is_in(ret: usize, function: &str) -> (bool, Vec<String>) {
        let names: Vec<String> = crate::symbols::resolve(&[ret])
            .remove(0)
            .into_iter()
            .filter_map(|symbol| symbol.name)
            .collect();
        let found = names.iter().any(|n| n.ends_with(&format!("::{function}")));
        (found, names)
    }

    #[test]
    fn captures_end_at_the_frame_that_set_the_limit() {
        let marker = 0u8;
        let mut limit = Some(CaptureLimit::below(std::hint::black_box(&marker)));
        let (mut limited, mut full) = (None, None);
        nest(5, &mut || {
            limited = walk_to_limit();
            drop(limit.take());
            full = walk_to_limit();
        });
        let (Some(limited), Some(full)) = (limited, full) else {
            eprintln!("note: no walker that honours limits on this target");
            return;
        };
        // Both walks go through the same callers (after the walker's own frame, the closure's
        // two call sites differ).
        assert!(limited.len() < full.len(), "{limited:x?} vs {full:x?}");
        assert_eq!(limited[2..], full[2..limited.len()]);
        // The last frame kept is the return address into this test (the closure's caller
        // chain ends at `nest`'s outermost call, made from here); nothing above it.
        let last = *limited.last().unwrap();
        let (found, names) = is_in(last, "captures_end_at_the_frame_that_set_the_limit");
        assert!(found, "last frame kept is in {names:?}");
        // Limits nest: dropping the inner one restores the outer.
        let outer = 1u8;
        let _outer = CaptureLimit::below(&outer);
        let inner = 2u8;
        drop(CaptureLimit::below(&inner));
        assert_eq!(capture_limit(), &outer as *const u8 as usize);
    }

    /// Walks from `depth` frames below a frame holding a start marker: the whole walk, and the
    /// walk that starts at the marker.
    #[inline(never)]
    fn walks_below_a_marker(depth: u32) -> (Option<Vec<usize>>, Option<Vec<usize>>) {
        let here = 0u8;
        let from = std::hint::black_box(&here) as *const u8 as usize;
        let (mut full, mut started) = (None, None);
        nest(depth, &mut || {
            full = walk_between(0);
            started = walk_between(from);
        });
        std::hint::black_box(&here);
        (full, started)
    }

    #[test]
    fn captures_start_at_the_frame_that_holds_the_start_marker() {
        let (Some(full), Some(started)) = walks_below_a_marker(5) else {
            eprintln!("note: no walker that honours a start on this target");
            return;
        };
        // The frames below the marker (the walker's callers up to `walks_below_a_marker`: the
        // closure, `nest` six times) are gone; the rest is the same walk.
        assert!(started.len() + 6 <= full.len(), "{started:x?} vs {full:x?}");
        assert_eq!(started[..], full[full.len() - started.len()..]);
        // The first frame kept is the return address into the caller of the marker's function.
        let first = started[0];
        let (found, names) = is_in(
            first,
            "captures_start_at_the_frame_that_holds_the_start_marker",
        );
        assert!(found, "first frame kept is in {names:?}");
    }

    #[test]
    fn slow_walk_sees_frames() {
        let mut buf = [0; MAX_FRAMES];
        assert!(walk_slow(&mut buf, 0, usize::MAX) > 2);
    }

    /// The trusted walk (`slow` false) or libgcc's, from the caller of this function up to
    /// the thread's limit.
    #[inline(never)]
    fn walk_from_here(slow: bool) -> Option<Vec<usize>> {
        let here = 0u8;
        let from = std::hint::black_box(&here) as *const u8 as usize;
        let walk = if slow {
            let mut buf = [0; MAX_FRAMES];
            let n = walk_slow(&mut buf, from, capture_limit());
            Some(buf[..n].to_vec())
        } else {
            walk_between(from)
        };
        std::hint::black_box(&here);
        walk
    }

    /// A fast walker that gives up hands the stack to libgcc mid-run: the site must keep its
    /// stack (and so its id), or `repeat` sees one site shrink and another grow.
    #[test]
    fn the_slow_walk_keeps_the_frames_the_fast_walk_keeps() {
        let marker = 0u8;
        let _limit = CaptureLimit::below(std::hint::black_box(&marker));
        let (mut trusted, mut slow) = (None, None);
        nest(4, &mut || {
            trusted = walk_from_here(false);
            slow = walk_from_here(true);
        });
        let (Some(trusted), Some(slow)) = (trusted, slow) else {
            eprintln!("note: no fast walker on this target");
            return;
        };
        // The closure's two call sites differ; its callers (`nest` five times, this test) and
        // where the walk stops are the same.
        assert!(slow.len() >= 6, "{slow:x?}");
        assert_eq!(trusted[1..], slow[1..], "fast {trusted:x?}\nslow {slow:x?}");
        let (found, names) = is_in(
            *slow.last().unwrap(),
            "the_slow_walk_keeps_the_frames_the_fast_walk_keeps",
        );
        assert!(found, "last frame kept is in {names:?}");
    }

    /// Deeper than a capture holds: every walker keeps the same innermost frames, the same
    /// count of those left out, and the same outermost frames, ending in this test.
    #[test]
    fn deep_walks_keep_both_ends_alike() {
        let marker = 0u8;
        let _limit = CaptureLimit::below(std::hint::black_box(&marker));
        let (mut trusted, mut slow) = (None, None);
        nest(100, &mut || {
            trusted = walk_from_here(false);
            slow = walk_from_here(true);
        });
        let (Some(trusted), Some(slow)) = (trusted, slow) else {
            eprintln!("note: no fast walker on this target");
            return;
        };
        assert_eq!(slow.len(), MAX_FRAMES, "{slow:x?}");
        assert_eq!(
            slow[HEAD_FRAMES],
            101 + 2 - HEAD_FRAMES - TAIL_FRAMES,
            "{slow:x?}"
        );
        assert_eq!(trusted[1..], slow[1..], "fast {trusted:x?}\nslow {slow:x?}");
        let (found, names) = is_in(*slow.last().unwrap(), "deep_walks_keep_both_ends_alike");
        assert!(found, "last frame kept is in {names:?}");
    }
}
