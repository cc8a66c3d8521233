//! Roots in the threads a check started that still run when it ends (a pool, an executor, a
//! worker fed by a channel, started lazily by the test that first needs it): the live part of
//! each one's stack, from its stack pointer to its top (its static TLS included), and the
//! LeakSanitizer scans every live thread this way, with its registers; leakcheck scans only a
//! check's own threads, because under a parallel runner the other threads run other tests,
//! whose stacks hold stale copies of this test's addresses.
//!
//! The stack pointer of a thread blocked in a system call (a pool waiting for work) is in
//! `/proc/self/task/TID/syscall`. The six argument registers shown there are left out: the
//! kernel shows all six whatever the call takes, and the unused ones held a lost block's
//! address left over from the allocation. A thread that keeps running through a few reads has
//! its whole stack read instead: more words, so a stale one may keep a lost block, but never a
//! block it does keep reported lost. A thread whose start routine has returned is no root: it
//! is only freeing its thread-locals on its way out.
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
    pub(crate) fn of(scope: u32) -> ThreadRoots {
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
                if from < thread.end {
                    roots.stacks.push((from, thread.end - from));
                }
            }
        }
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        let _ = scope;
        roots
    }

    /// The ranges to scan, as `(start, length)`.
    pub(crate) fn ranges(&self) -> &[(usize, usize)] {
        &self.stacks
    }
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
        use std::time::Instant;
        let me = crate::raw::current_thread_id() as i32;
        let deadline = Instant::now() + limit;
        // Per thread: the stack pointer last seen, and since when.
        let mut seen: Vec<(i32, usize, Instant)> = Vec::new();
        loop {
            let now = Instant::now();
            let mut settled = true;
            let listed = crate::raw::threads::listed_under(scope);
            for thread in listed.iter().filter(|t| t.tid != me) {
                let sp = read_stack_pointer(thread.tid);
                let entry = seen.iter_mut().find(|(tid, _, _)| *tid == thread.tid);
                match (sp, entry) {
                    (Some(sp), Some(entry)) if entry.1 == sp => {
                        settled &= now.duration_since(entry.2) >= SETTLED;
                    }
                    (Some(sp), Some(entry)) => {
                        *entry = (thread.tid, sp, now);
                        settled = false;
                    }
                    (Some(sp), None) => {
                        seen.push((thread.tid, sp, now));
                        settled = false;
                    }
                    (None, _) => settled = false,
                }
            }
            if settled || now >= deadline {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = (scope, limit);
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
