//! What every allocator-overhead bench shares: the per-thread clock, the stack depth
//! the workloads run at, and the workloads' sizes, so that the criterion rows
//! (`workload.rs`) and the paired in-process rows (`alloc_paired.rs`) time the same thing.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Where a thread's time comes from.
#[derive(Clone, Copy)]
pub enum Clock {
    /// CPU time of the calling thread.
    Cpu,
    /// Elapsed time.
    Wall,
}

impl Clock {
    pub fn from_env() -> Clock {
        match std::env::var("LEAKCHECK_BENCH_CLOCK").as_deref() {
            Ok("wall") => Clock::Wall,
            Ok("cpu") | Err(_) => Clock::Cpu,
            Ok(other) => {
                panic!("LEAKCHECK_BENCH_CLOCK={other:?}: expected `cpu` (default) or `wall`")
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Clock::Cpu => "thread-cpu",
            Clock::Wall => "wall",
        }
    }

    pub fn start(self) -> Timer {
        Timer {
            clock: self,
            wall: Instant::now(),
            cpu: thread_cpu_time(),
        }
    }
}

pub struct Timer {
    clock: Clock,
    wall: Instant,
    cpu: Duration,
}

impl Timer {
    pub fn elapsed(&self) -> Duration {
        match self.clock {
            Clock::Cpu => thread_cpu_time().saturating_sub(self.cpu),
            Clock::Wall => self.wall.elapsed(),
        }
    }
}

pub fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; the call only writes to it.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// `#[inline(never)]` frames between the thread's wrapper and the allocating loop, so stack
/// capture walks a realistic depth (about 30 frames in all, counting std's thread start-up).
pub const DEPTH: u32 = 12;
/// The workloads, by the names both drivers print.
#[derive(Clone, Copy)]
pub enum Workload {
    /// Replace the oldest of 1024 live 32-byte blocks: one alloc and one free.
    Pairs,
    /// Push 4096 `u64`s into an empty buffer that doubles from 4, then drop it.
    Realloc,
    /// Replace the oldest of 1024 live blocks with one of a pseudo-random size in 8..=4096.
    Mixed,
}

impl Workload {
    pub const ALL: [Workload; 3] = [Workload::Pairs, Workload::Realloc, Workload::Mixed];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Pairs => "alloc_free_32",
            Workload::Realloc => "vec_growth_4096",
            Workload::Mixed => "mixed_8_4096",
        }
    }
}

/// Live blocks each thread keeps in the ring workloads.
pub const RING: usize = 1024;
/// Elements pushed per growth in the realloc workload (1 alloc, 10 reallocs, 1 free).
pub const GROWTH: u64 = 4096;

/// Deterministic sizes: the same sequence in every variant.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn size(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        8 + (self.0 % 4089) as usize
    }
}

/// Calls `body` under `depth` more frames of real (non-inlined, non-tail) recursion.
#[inline(never)]
pub fn at_depth(depth: u32, body: &mut dyn FnMut()) {
    if depth == 0 {
        body();
    } else {
        at_depth(black_box(depth - 1), body);
    }
    black_box(depth);
}
