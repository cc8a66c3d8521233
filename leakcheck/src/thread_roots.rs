//! Roots in the other threads that run when a check ends (a pool, an executor, a worker fed by
//! a channel): the live part of each one's stack, from its stack pointer to its top (its
//! static TLS included), as LeakSanitizer scans every live thread.
//!
//! The threads the check started are always roots. Other threads (started before the check,
//! by a check that has ended, or before `main`) are roots only when they ran during the check
//! (see [`Idle`]) and have settled, blocked at one stack pointer as an idle worker is; never
//! test threads, nor the threads of another check still running (they run that test's work:
//! another test's tokio workers held a stale copy of a task's leaked address, 1 run in the
//! accuracy corpus at 4 threads). Other threads' stacks are where stale
//! copies of this test's addresses come from: the allocator hands a test the blocks other
//! threads just freed, and glibc hands a new thread the cached stack of one that exited. On
//! the accuracy corpus, scanning every other thread's stack missed 14 leaks in 100 runs at 8
//! threads; leaving out test threads and threads that had not settled, 1 in 100; leaving out
//! also threads that had not run since the check started, none in 150.
//!
//! The stack pointer of a thread blocked in a system call (a pool waiting for work) is in
//! `/proc/self/task/TID/syscall`. The six argument registers shown there are left out: the
//! kernel shows all six whatever the call takes, and the unused ones held a lost block's
//! address left over from the allocation. A thread this check started that keeps running
//! through a few reads has its whole stack read instead: more words, so a stale one may keep a
//! lost block, but never a block it does keep reported lost. A thread whose start routine has
//! returned is no root: it is only freeing its thread-locals on its way out.
#![forbid(unsafe_code)]

/// How often a running thread's stack pointer is asked for before its whole stack is read.
const TRIES: u32 = 20;

/// Root ranges, as `(start, length)`.
pub(crate) struct ThreadRoots {
    stacks: Vec<(usize, usize)>,
}

impl ThreadRoots {
    /// The roots of the threads listed under `scope` (see `raw::threads`), except the calling
    /// thread's, whose stack is left out on purpose (see `check::classify`).
    pub(crate) fn own(scope: u32) -> ThreadRoots {
        let mut roots = ThreadRoots { stacks: Vec::new() };
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            let me = crate::raw::current_thread_id() as i32;
            for thread in crate::raw::threads::listed_under(scope) {
                if thread.tid == me || thread.low >= thread.end {
                    continue;
                }
                let from = match stack_pointer(thread.tid) {
                    Some(sp) => sp.max(thread.low),
                    None => thread.low,
                };
                roots.push(from, thread.end);
            }
        }
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        let _ = scope;
        roots
    }

    /// The roots of the other listed threads that ran since the check started (see [`Idle`])
    /// and are settled (see [`wait_until_settled`]): blocked in the kernel at one stack
    /// pointer across [`SETTLED`], as a worker waiting for work is. Threads that ran a check as
    /// their own are never among them (see `raw::threads::listed_beside`). Takes at least
    /// [`SETTLED`] when there is any such thread, and at most [`BESIDE_LIMIT`].
    pub(crate) fn beside(scope: u32, idle: &Idle) -> ThreadRoots {
        let mut roots = ThreadRoots { stacks: Vec::new() };
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            let me = crate::raw::current_thread_id() as i32;
            let candidates = || {
                crate::raw::threads::listed_beside(scope)
                    .into_iter()
                    .filter(|thread| thread.tid != me && thread.low < thread.end)
                    .filter(|thread| thread.detached || !crate::track::is_running(thread.scope))
                    .filter(|thread| !idle.still_idle(thread.tid))
                    .collect()
            };
            for (thread, sp) in settle(candidates, BESIDE_LIMIT) {
                roots.push(sp.max(thread.low), thread.end);
            }
        }
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        let _ = (scope, idle);
        roots
    }

    fn push(&mut self, from: usize, end: usize) {
        if from < end {
            self.stacks.push((from, end - from));
        }
    }

    /// Whether there is nothing to scan.
    pub(crate) fn is_empty(&self) -> bool {
        self.stacks.is_empty()
    }

    /// These roots and `other`'s.
    pub(crate) fn and(mut self, other: ThreadRoots) -> ThreadRoots {
        self.stacks.extend(other.stacks);
        self
    }

    /// The ranges to scan, as `(start, length)`.
    pub(crate) fn ranges(&self) -> &[(usize, usize)] {
        &self.stacks
    }
}

/// The CPU time of the other listed threads when a check starts. A thread whose time has not
/// moved by the check's end did not run during it, so nothing on its stack was put there by
/// the check: any copy of a check's address there is stale, left from a block that an earlier
/// test freed and the allocator handed out again. Such copies made idle workers of earlier
/// tests hide real leaks.
pub(crate) struct Idle {
    threads: Vec<(i32, u64)>,
}

impl Idle {
    /// The listed threads outside `scope`, and their CPU time now.
    pub(crate) fn now(scope: u32) -> Idle {
        let threads = crate::raw::threads::listed_beside(scope)
            .iter()
            .filter_map(|thread| Some((thread.tid, crate::raw::threads::cpu_time(thread.tid)?)))
            .collect();
        Idle { threads }
    }

    /// Whether thread `tid` was listed when the check started and has not run since.
    fn still_idle(&self, tid: i32) -> bool {
        self.threads.iter().any(|&(listed, time)| {
            listed == tid && crate::raw::threads::cpu_time(tid) == Some(time)
        })
    }
}

/// Whether threads started inside `scope` still run (other than the calling thread): a pool,
/// an executor or a worker the check left behind.
pub(crate) fn left_running(scope: u32) -> bool {
    let me = crate::raw::current_thread_id() as i32;
    crate::raw::threads::listed_under(scope)
        .iter()
        .any(|thread| thread.tid != me)
}

/// How long a thread must sit in the kernel at one stack pointer to count as settled.
const SETTLED: std::time::Duration = std::time::Duration::from_millis(50);

/// Waits, up to `limit`, until each thread listed under `scope` has exited or settled: blocked
/// in the kernel at an unchanged stack pointer for [`SETTLED`], as a pool waiting for work is.
/// A thread on its way out (a runtime's worker after the runtime was dropped, on a busy
/// machine) is neither: its stack still holds its own recent words, among them copies of the
/// addresses of blocks it leaked, and a stale one hid a tokio task's leak in the accuracy
/// corpus (about 1 run in 100 at 2 threads) until the check waited for such threads.
pub(crate) fn wait_until_settled(scope: u32, limit: std::time::Duration) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let me = crate::raw::current_thread_id() as i32;
        let listed = || {
            crate::raw::threads::listed_under(scope)
                .into_iter()
                .filter(|thread| thread.tid != me)
                .collect()
        };
        settle(listed, limit);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = (scope, limit);
}

/// How long a check waits for other threads that ran during it to settle (see
/// [`ThreadRoots::beside`]): one look at each, so a thread must already be blocked where it
/// stays for [`SETTLED`]. A worker that other tests keep busy is then no root. Waiting up to
/// 200 ms for such threads to settle too let stale copies on the stacks of executors that
/// other tests were using hide 3 leaks in 40 runs of the reachability fixture at 8 threads.
const BESIDE_LIMIT: std::time::Duration = SETTLED;

/// Watches the threads `listed` names (asked again each round, as threads exit) until each
/// has settled or `limit` has passed; returns those settled then, with their stack pointers.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn settle(
    listed: impl Fn() -> Vec<crate::raw::threads::Listed>,
    limit: std::time::Duration,
) -> Vec<(crate::raw::threads::Listed, usize)> {
    use std::time::Instant;
    let deadline = Instant::now() + limit;
    // Per thread: the stack pointer last seen, and since when.
    let mut seen: Vec<(i32, usize, Instant)> = Vec::new();
    loop {
        let now = Instant::now();
        let mut settled = Vec::new();
        let mut all = true;
        for thread in listed() {
            let sp = read_stack_pointer(thread.tid);
            let entry = seen.iter_mut().find(|(tid, _, _)| *tid == thread.tid);
            match (sp, entry) {
                (Some(sp), Some(entry)) if entry.1 == sp => {
                    if now.duration_since(entry.2) >= SETTLED {
                        settled.push((thread, sp));
                    } else {
                        all = false;
                    }
                }
                (Some(sp), Some(entry)) => {
                    *entry = (thread.tid, sp, now);
                    all = false;
                }
                (Some(sp), None) => {
                    seen.push((thread.tid, sp, now));
                    all = false;
                }
                (None, _) => all = false,
            }
        }
        if all || now >= deadline {
            return settled;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The stack pointer of thread `tid` now, if it is in the kernel.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn read_stack_pointer(tid: i32) -> Option<usize> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
    parse_stack_pointer(&text)
}

/// The stack pointer of thread `tid`, asked for up to [`TRIES`] times; `None` while it runs,
/// or when the kernel does not say.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn stack_pointer(tid: i32) -> Option<usize> {
    for _ in 0..TRIES {
        if let Some(sp) = read_stack_pointer(tid) {
            return Some(sp);
        }
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
    None
}

/// The stack pointer in `/proc/PID/task/TID/syscall`: `running` has none; a thread blocked
/// outside a system call shows `-1 SP PC`, one inside a call `NR ARG1 .. ARG6 SP PC`, the
/// numbers after NR in hexadecimal.
fn parse_stack_pointer(text: &str) -> Option<usize> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let field = match fields.len() {
        3 => fields[1],
        9 => fields[7],
        _ => return None,
    };
    usize::from_str_radix(field.strip_prefix("0x")?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_in_a_system_call_shows_its_stack_pointer() {
        let text = "202 0x7f3a0000a0b0 0x80 0x0 0x0 0x0 0x0 0x7f3a12345670 0x7f3a9876543a\n";
        assert_eq!(parse_stack_pointer(text), Some(0x7f3a_1234_5670));
    }

    #[test]
    fn a_thread_blocked_outside_a_system_call_shows_its_stack_pointer() {
        let text = "-1 0x7ffc00001000 0x55550000abcd\n";
        assert_eq!(parse_stack_pointer(text), Some(0x7ffc_0000_1000));
    }

    #[test]
    fn a_running_thread_shows_nothing() {
        assert_eq!(parse_stack_pointer("running\n"), None);
        assert_eq!(parse_stack_pointer(""), None);
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_parked_thread_reads_as_blocked_inside_its_own_stack() {
        let (tx, rx) = std::sync::mpsc::channel::<(i32, usize)>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let parked = std::thread::spawn(move || {
            let here = 0u8;
            let at = std::hint::black_box(&here) as *const u8 as usize;
            tx.send((crate::raw::current_thread_id() as i32, at))
                .unwrap();
            done_rx.recv().unwrap();
        });
        let (tid, local) = rx.recv().unwrap();
        let mut sp = None;
        for _ in 0..200 {
            sp = stack_pointer(tid);
            if sp.is_some() {
                break;
            }
        }
        done_tx.send(()).unwrap();
        parked.join().unwrap();
        let sp = sp.expect("a thread waiting in recv is blocked in futex");
        assert!(
            sp < local && local - sp < 64 * 1024,
            "sp {sp:#x}, a local at {local:#x}"
        );
    }
}
