//! Roots in the threads a check started that still run when it ends (a pool, an executor, a
//! worker fed by a channel, started lazily by the test that first needs it): the live part of
//! each one's stack, from its stack pointer to its top (its static TLS included), and the
//! registers the kernel shows for it. LeakSanitizer scans every live thread this way; leakcheck
//! scans only a check's own threads, because under a parallel runner the other threads run
//! other tests, whose stacks hold stale copies of this test's addresses.
//!
//! The stack pointer of a thread blocked in a system call (a pool waiting for work) is in
//! `/proc/self/task/TID/syscall`, with the call's six argument registers. A thread that keeps
//! running through a few reads has its whole stack read instead: more words, so a stale one
//! may keep a lost block, but never a block it does keep reported lost.
#![forbid(unsafe_code)]

/// How often a running thread's stack pointer is asked for before its whole stack is read.
const TRIES: u32 = 20;

/// Root ranges, as `(start, length)`, for a scan made while `self` is alive: the registers
/// are words in a buffer of its own, which the ranges point into.
pub(crate) struct ThreadRoots {
    stacks: Vec<(usize, usize)>,
    registers: Vec<usize>,
}

impl ThreadRoots {
    /// The roots of the threads listed under `scope` (see `raw::threads`), except the calling
    /// thread's, whose stack is left out on purpose (see `check::classify`).
    pub(crate) fn of(scope: u32) -> ThreadRoots {
        let mut roots = ThreadRoots {
            stacks: Vec::new(),
            registers: Vec::new(),
        };
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            let me = crate::raw::current_thread_id() as i32;
            for thread in crate::raw::threads::listed_under(scope) {
                if thread.tid == me || thread.low >= thread.end {
                    continue;
                }
                let from = match blocked_state(thread.tid) {
                    Some(state) => {
                        roots.registers.extend(state.arguments);
                        // The red zone below the stack pointer may hold a leaf's live words.
                        state.stack_pointer.saturating_sub(128).max(thread.low)
                    }
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

    /// The ranges to scan, as `(start, length)`; valid while `self` lives.
    pub(crate) fn ranges(&self) -> Vec<(usize, usize)> {
        let mut ranges = self.stacks.clone();
        if !self.registers.is_empty() {
            ranges.push((
                self.registers.as_ptr() as usize,
                std::mem::size_of_val(self.registers.as_slice()),
            ));
        }
        ranges
    }
}

/// What the kernel shows of a thread stopped in (or on its way into) the kernel.
#[derive(Debug, PartialEq, Eq)]
struct Blocked {
    stack_pointer: usize,
    arguments: Vec<usize>,
}

/// Asks up to [`TRIES`] times for the state of thread `tid`; `None` while it runs, or when
/// the kernel does not say.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn blocked_state(tid: i32) -> Option<Blocked> {
    let path = format!("/proc/self/task/{tid}/syscall");
    for _ in 0..TRIES {
        let text = std::fs::read_to_string(&path).ok()?;
        if let Some(state) = parse_syscall(&text) {
            return Some(state);
        }
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
    None
}

/// Parses `/proc/PID/task/TID/syscall`: `running`; or `-1 SP PC` for a thread blocked outside
/// a system call; or `NR ARG1 .. ARG6 SP PC`, the numbers after NR in hexadecimal.
fn parse_syscall(text: &str) -> Option<Blocked> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let hex = |field: &str| usize::from_str_radix(field.strip_prefix("0x")?, 16).ok();
    match fields.len() {
        3 => Some(Blocked {
            stack_pointer: hex(fields[1])?,
            arguments: Vec::new(),
        }),
        9 => Some(Blocked {
            stack_pointer: hex(fields[7])?,
            arguments: fields[1..7].iter().map(|f| hex(f)).collect::<Option<_>>()?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_in_a_system_call_shows_its_stack_pointer_and_arguments() {
        let text = "202 0x7f3a0000a0b0 0x80 0x0 0x0 0x0 0x0 0x7f3a12345670 0x7f3a9876543a\n";
        assert_eq!(
            parse_syscall(text),
            Some(Blocked {
                stack_pointer: 0x7f3a_1234_5670,
                arguments: vec![0x7f3a_0000_a0b0, 0x80, 0, 0, 0, 0],
            })
        );
    }

    #[test]
    fn a_thread_blocked_outside_a_system_call_shows_its_stack_pointer() {
        let state = parse_syscall("-1 0x7ffc00001000 0x55550000abcd\n").unwrap();
        assert_eq!(state.stack_pointer, 0x7ffc_0000_1000);
        assert!(state.arguments.is_empty());
    }

    #[test]
    fn a_running_thread_shows_nothing() {
        assert_eq!(parse_syscall("running\n"), None);
        assert_eq!(parse_syscall(""), None);
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_parked_thread_reads_as_blocked_inside_its_own_stack() {
        let (tx, rx) = std::sync::mpsc::channel::<i32>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let parked = std::thread::spawn(move || {
            tx.send(crate::raw::current_thread_id() as i32).unwrap();
            done_rx.recv().unwrap();
        });
        let tid = rx.recv().unwrap();
        let mut state = None;
        for _ in 0..200 {
            state = blocked_state(tid);
            if state.is_some() {
                break;
            }
        }
        done_tx.send(()).unwrap();
        parked.join().unwrap();
        let state = state.expect("a thread waiting in recv is blocked in futex");
        assert_eq!(state.arguments.len(), 6);
        assert!(state.stack_pointer != 0);
    }
}
