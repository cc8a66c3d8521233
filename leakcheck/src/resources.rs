//! Threads and file descriptors a test leaves behind (`#[leakcheck(threads)]`, `fds`,
//! `resources`): snapshot the process's thread and fd tables before the body, compare after it,
//! and name what is new.
//!
//! Both tables are process-wide, so a verdict is only sound when the test has the process to
//! itself: cargo-nextest's process-per-test mode, or libtest running one test at a time. Under
//! parallel `cargo test` other tests start threads and open fds at the same moment, so the check
//! is skipped with a note rather than guessed. Linux only: it reads `/proc/self`.
//!
//! The pure parts (glob matching, "alone in the process", diffing two snapshots, the polling
//! loop) take their inputs as arguments, so unit tests feed them synthetic tables; [`Proc`] is
//! the only code that touches `/proc`.
#![forbid(unsafe_code)]
// Wired in by private.rs.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::time::{Duration, Instant};

/// How long `finish` waits for new threads to exit (and new fds to close) before deciding.
pub(crate) const DEFAULT_LINGER_MS: u64 = 100;
/// The longest single pause while polling: short enough that a thread that exits just after a
/// poll costs little extra time.
const MAX_PAUSE: Duration = Duration::from_millis(16);
/// Leaked threads or fds listed by name in the report; the rest are counted.
const SHOWN: usize = 20;

/// What to check, from the attribute's options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResourceOptions {
    /// Threads alive at the end that were not alive at the start fail the test.
    pub(crate) threads: bool,
    /// File descriptors open at the end that were not open at the start fail the test.
    pub(crate) fds: bool,
    /// How long to wait for them to go away before deciding (`threads_linger_ms`).
    pub(crate) linger_ms: u64,
    /// Threads whose name (as Linux keeps it: the first 15 bytes) matches are not reported.
    pub(crate) ignore_threads: Option<String>,
    /// Fds whose target (a path, `socket:[…]`, `pipe:[…]`, `anon_inode:…`) matches are not
    /// reported.
    pub(crate) ignore_fds: Option<String>,
}

impl ResourceOptions {
    /// Nothing checked, linger at its default.
    pub(crate) const fn new() -> ResourceOptions {
        ResourceOptions {
            threads: false,
            fds: false,
            linger_ms: DEFAULT_LINGER_MS,
            ignore_threads: None,
            ignore_fds: None,
        }
    }
}

impl Default for ResourceOptions {
    fn default() -> ResourceOptions {
        ResourceOptions::new()
    }
}

/// A thread alive when the body returned that was not alive when it started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LeakedThread {
    /// Linux thread id.
    pub(crate) tid: u32,
    /// `/proc/self/task/<tid>/comm`: the thread's name cut to 15 bytes, or its creator's name
    /// when it was never named.
    pub(crate) name: String,
}

/// A file descriptor open when the body returned that was not open when it started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LeakedFd {
    pub(crate) fd: u32,
    /// What `/proc/self/fd/<fd>` points at.
    pub(crate) target: String,
}

/// What the thread and fd checks found. `Display` writes the report lines, then the notes.
#[must_use = "a ResourceOutcome says whether the test leaked threads or fds; check `is_clean()`"]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ResourceOutcome {
    pub(crate) leaked_threads: Vec<LeakedThread>,
    pub(crate) leaked_fds: Vec<LeakedFd>,
    /// Why something was not checked, one line each, starting with `leakcheck:`.
    pub(crate) notes: Vec<String>,
    /// How long `finish` waited for leaks to go away, for the report.
    linger_ms: u64,
}

impl ResourceOutcome {
    /// No thread or fd leaked (or nothing was checked: see `notes`).
    pub(crate) fn is_clean(&self) -> bool {
        self.leaked_threads.is_empty() && self.leaked_fds.is_empty()
    }
}

fn plural(n: usize, one: &'static str, many: &'static str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn write_list<T>(
    f: &mut fmt::Formatter<'_>,
    items: &[T],
    one: impl Fn(&mut fmt::Formatter<'_>, &T) -> fmt::Result,
) -> fmt::Result {
    for (i, item) in items.iter().take(SHOWN).enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        one(f, item)?;
    }
    if items.len() > SHOWN {
        write!(f, ", and {} more", items.len() - SHOWN)?;
    }
    Ok(())
}

impl fmt::Display for ResourceOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.leaked_threads.is_empty() {
            write!(
                f,
                "leakcheck: {} left running by test: ",
                plural(self.leaked_threads.len(), "thread", "threads")
            )?;
            write_list(f, &self.leaked_threads, |f, t| {
                write!(f, "`{}` (tid {})", t.name, t.tid)
            })?;
            writeln!(
                f,
                "\nnote: still alive {} ms after the body returned; join them (or drop their \
                 runtime) before the test returns, or exclude them by name with \
                 `#[leakcheck(ignore_threads = \"glob\")]`",
                self.linger_ms
            )?;
        }
        if !self.leaked_fds.is_empty() {
            write!(
                f,
                "leakcheck: {} left open by test: ",
                plural(self.leaked_fds.len(), "file descriptor", "file descriptors")
            )?;
            write_list(f, &self.leaked_fds, |f, d| {
                write!(f, "fd {} -> {}", d.fd, d.target)
            })?;
            writeln!(
                f,
                "\nnote: close them (drop the File, socket or pipe) before the test returns, or \
                 exclude them by target with `#[leakcheck(ignore_fds = \"glob\")]`"
            )?;
        }
        for note in &self.notes {
            writeln!(f, "{note}")?;
        }
        Ok(())
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (`/` included)
/// and `?` exactly one; everything else matches itself.
pub(crate) fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // The last `*` seen: the pattern index after it, and the text index it is matched up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p + 1, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                // Let the last `*` swallow one more character and retry from there.
                Some((after, upto)) => {
                    star = Some((after, upto + 1));
                    p = after;
                    t = upto + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Which checks a note is about.
fn checks_named(options: &ResourceOptions) -> &'static str {
    match (options.threads, options.fds) {
        (true, true) => "thread and fd checks",
        (true, false) => "thread check",
        _ => "fd check",
    }
}

fn skipped_shared(options: &ResourceOptions) -> String {
    format!(
        "leakcheck: {} skipped: other tests run in this process at the same time (parallel \
         `cargo test`); to check, run under `cargo nextest run` or with `cargo test -- \
         --test-threads=1`",
        checks_named(options)
    )
}

fn skipped_unsupported(options: &ResourceOptions) -> String {
    format!(
        "leakcheck: {} skipped: only supported on Linux (they read /proc/self); nothing was \
         checked",
        checks_named(options)
    )
}

fn skipped_unreadable(check: &str, path: &str, error: &io::Error) -> String {
    format!("leakcheck: {check} skipped: cannot read {path}: {error}")
}

/// The process's thread and fd tables. [`Proc`] reads `/proc/self`; tests substitute their own.
pub(crate) trait Tables {
    /// Ids of the threads alive now.
    fn threads(&self) -> io::Result<Vec<u32>>;
    /// A thread's name, or `None` when it has exited.
    fn thread_name(&self, tid: u32) -> Option<String>;
    /// Open fds and what each points at.
    fn fds(&self) -> io::Result<Vec<(u32, String)>>;
}

/// The real tables, from `/proc/self` (Linux).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Proc;

const TASK_DIR: &str = "/proc/self/task";
const FD_DIR: &str = "/proc/self/fd";

/// The numeric entries of a `/proc` directory.
fn numeric_entries(dir: &str) -> io::Result<Vec<u32>> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        if let Some(n) = entry?.file_name().to_str().and_then(|s| s.parse().ok()) {
            numbers.push(n);
        }
    }
    Ok(numbers)
}

impl Tables for Proc {
    fn threads(&self) -> io::Result<Vec<u32>> {
        numeric_entries(TASK_DIR)
    }

    fn thread_name(&self, tid: u32) -> Option<String> {
        let comm = std::fs::read_to_string(format!("{TASK_DIR}/{tid}/comm")).ok()?;
        Some(comm.strip_suffix('\n').unwrap_or(&comm).to_owned())
    }

    fn fds(&self) -> io::Result<Vec<(u32, String)>> {
        // Listing the directory opens an fd of its own. It is closed by the time the links are
        // read, so its `read_link` fails and it drops out (as does any fd closed meanwhile).
        let numbers = numeric_entries(FD_DIR)?;
        Ok(numbers
            .into_iter()
            .filter_map(|fd| {
                let target = std::fs::read_link(format!("{FD_DIR}/{fd}")).ok()?;
                Some((fd, target.to_string_lossy().into_owned()))
            })
            .collect())
    }
}

/// Threads in `now` that are not in `before`, by name, minus those matching `ignore`. A thread
/// whose name cannot be read has exited and is not a leak.
fn new_threads(
    before: &BTreeSet<u32>,
    now: &[u32],
    name_of: impl Fn(u32) -> Option<String>,
    ignore: Option<&str>,
) -> Vec<LeakedThread> {
    let mut leaked: Vec<LeakedThread> = now
        .iter()
        .filter(|tid| !before.contains(tid))
        .filter_map(|&tid| {
            Some(LeakedThread {
                tid,
                name: name_of(tid)?,
            })
        })
        .filter(|thread| !ignore.is_some_and(|glob| glob_matches(glob, &thread.name)))
        .collect();
    leaked.sort_by_key(|thread| thread.tid);
    leaked.dedup();
    leaked
}

/// Fds in `now` that were not open with the same target in `before`, minus those whose target
/// matches `ignore`. An fd number reused for something else counts as new.
fn new_fds(
    before: &BTreeSet<(u32, String)>,
    now: Vec<(u32, String)>,
    ignore: Option<&str>,
) -> Vec<LeakedFd> {
    let mut leaked: Vec<LeakedFd> = now
        .into_iter()
        .filter(|entry| !before.contains(entry))
        .filter(|(_, target)| !ignore.is_some_and(|glob| glob_matches(glob, target)))
        .map(|(fd, target)| LeakedFd { fd, target })
        .collect();
    leaked.sort_by_key(|fd| fd.fd);
    leaked.dedup();
    leaked
}

enum Before {
    /// Neither check was asked for.
    Off,
    /// Not checked; the notes say why.
    Skipped(Vec<String>),
    /// The tables when the body started; `None` for a check not asked for or not readable.
    Snapshot {
        threads: Option<BTreeSet<u32>>,
        fds: Option<BTreeSet<(u32, String)>>,
        notes: Vec<String>,
    },
}

/// A thread/fd check in progress: [`Watch::start`] before the body, [`Watch::finish`] after.
pub(crate) struct Watch<T: Tables = Proc> {
    options: ResourceOptions,
    tables: T,
    before: Before,
}

impl Watch {
    /// Snapshots threads and fds before the body. Allocates: call it before tracking is armed.
    pub(crate) fn start(options: &ResourceOptions) -> Watch {
        let alone = crate::__private::test_owns_process();
        if cfg!(any(target_os = "linux", target_os = "android")) {
            Watch::start_with(options, alone, Proc)
        } else {
            let before = if options.threads || options.fds {
                Before::Skipped(vec![skipped_unsupported(options)])
            } else {
                Before::Off
            };
            Watch {
                options: options.clone(),
                tables: Proc,
                before,
            }
        }
    }
}

impl<T: Tables> Watch<T> {
    /// [`Watch::start`] with "alone in the process" decided and the tables given.
    fn start_with(options: &ResourceOptions, alone: bool, tables: T) -> Watch<T> {
        let before = if !options.threads && !options.fds {
            Before::Off
        } else if !alone {
            Before::Skipped(vec![skipped_shared(options)])
        } else {
            let mut notes = Vec::new();
            let threads = options.threads.then(|| tables.threads()).and_then(|read| {
                read.map(BTreeSet::from_iter)
                    .map_err(|e| notes.push(skipped_unreadable("thread check", TASK_DIR, &e)))
                    .ok()
            });
            let fds = options.fds.then(|| tables.fds()).and_then(|read| {
                read.map(BTreeSet::from_iter)
                    .map_err(|e| notes.push(skipped_unreadable("fd check", FD_DIR, &e)))
                    .ok()
            });
            Before::Snapshot {
                threads,
                fds,
                notes,
            }
        };
        Watch {
            options: options.clone(),
            tables,
            before,
        }
    }

    /// After the body: compares the tables with the snapshot, polling with backoff for up to
    /// `linger_ms` while anything new is still there, so a thread that is just exiting (a
    /// runtime being dropped, a joined thread not yet reaped) is not reported.
    pub(crate) fn finish(self) -> ResourceOutcome {
        let Watch {
            options,
            tables,
            before,
        } = self;
        let mut outcome = ResourceOutcome {
            linger_ms: options.linger_ms,
            ..ResourceOutcome::default()
        };
        let (mut threads_before, mut fds_before) = match before {
            Before::Off => return outcome,
            Before::Skipped(notes) => {
                outcome.notes = notes;
                return outcome;
            }
            Before::Snapshot {
                threads,
                fds,
                notes,
            } => {
                outcome.notes = notes;
                (threads, fds)
            }
        };
        let deadline = Instant::now() + Duration::from_millis(options.linger_ms);
        let mut pause = Duration::from_millis(1);
        loop {
            outcome.leaked_threads = match threads_before.as_ref().map(|_| tables.threads()) {
                Some(Ok(now)) => new_threads(
                    threads_before.as_ref().expect("checked above"),
                    &now,
                    |tid| tables.thread_name(tid),
                    options.ignore_threads.as_deref(),
                ),
                Some(Err(e)) => {
                    threads_before = None;
                    outcome
                        .notes
                        .push(skipped_unreadable("thread check", TASK_DIR, &e));
                    Vec::new()
                }
                None => Vec::new(),
            };
            outcome.leaked_fds = match fds_before.as_ref().map(|_| tables.fds()) {
                Some(Ok(now)) => new_fds(
                    fds_before.as_ref().expect("checked above"),
                    now,
                    options.ignore_fds.as_deref(),
                ),
                Some(Err(e)) => {
                    fds_before = None;
                    outcome
                        .notes
                        .push(skipped_unreadable("fd check", FD_DIR, &e));
                    Vec::new()
                }
                None => Vec::new(),
            };
            let now = Instant::now();
            if outcome.is_clean() || now >= deadline {
                return outcome;
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn set<T: Ord + Clone>(items: &[T]) -> BTreeSet<T> {
        items.iter().cloned().collect()
    }

    fn fd(n: u32, target: &str) -> (u32, String) {
        (n, target.to_owned())
    }

    #[test]
    fn glob_star_and_question_mark() {
        assert!(glob_matches("*", ""));
        assert!(glob_matches("*", "anything/at all"));
        assert!(glob_matches("", ""));
        assert!(!glob_matches("", "x"));
        assert!(glob_matches("tokio-runtime-*", "tokio-runtime-w"));
        assert!(!glob_matches("tokio-runtime-*", "tokio-runtim"));
        assert!(glob_matches("socket:[*]", "socket:[991]"));
        assert!(!glob_matches("socket:[*]", "pipe:[991]"));
        assert!(glob_matches("/tmp/*.txt", "/tmp/a/b/c.txt"));
        assert!(!glob_matches("/tmp/*.txt", "/tmp/a.txt.bak"));
        assert!(glob_matches("worker-?", "worker-3"));
        assert!(!glob_matches("worker-?", "worker-"));
        assert!(!glob_matches("worker-?", "worker-12"));
        assert!(glob_matches("*a*b*", "xxaxxbxx"));
        assert!(glob_matches("a*b*c", "abcbc"));
        assert!(!glob_matches("a*b*c", "acb"));
        assert!(glob_matches("**x", "x"));
        assert!(glob_matches("é?", "éü"));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("exact", "exactly"));
    }

    #[test]
    fn thread_diff_names_new_threads_and_drops_exited_and_ignored() {
        let before = set(&[100, 101]);
        let names = |tid: u32| match tid {
            100 => Some("main".to_owned()),
            101 => Some("t::test".to_owned()),
            205 => Some("worker-3".to_owned()),
            206 => Some("tokio-runtime-w".to_owned()),
            _ => None, // exited between the listing and the name
        };
        let leaked = new_threads(&before, &[206, 100, 101, 205, 207], names, None);
        assert_eq!(
            leaked,
            vec![
                LeakedThread {
                    tid: 205,
                    name: "worker-3".into()
                },
                LeakedThread {
                    tid: 206,
                    name: "tokio-runtime-w".into()
                },
            ]
        );
        let leaked = new_threads(&before, &[100, 101, 205, 206], names, Some("tokio-*"));
        assert_eq!(leaked.len(), 1);
        assert_eq!(leaked[0].tid, 205);
        // Threads that ended (the test's own, even) are not a concern.
        assert!(new_threads(&before, &[100], names, None).is_empty());
    }

    #[test]
    fn fd_diff_by_number_and_target() {
        let before = set(&[fd(0, "/dev/null"), fd(1, "pipe:[5]"), fd(2, "pipe:[5]")]);
        let now = vec![
            fd(0, "/dev/null"),
            fd(1, "pipe:[5]"),
            fd(8, "socket:[991]"),
            fd(7, "/tmp/x.txt"),
            // Closed and reopened on something else: new.
            fd(2, "/tmp/y.txt"),
        ];
        let leaked = new_fds(&before, now.clone(), None);
        let shown: Vec<(u32, &str)> = leaked.iter().map(|d| (d.fd, &*d.target)).collect();
        assert_eq!(
            shown,
            vec![(2, "/tmp/y.txt"), (7, "/tmp/x.txt"), (8, "socket:[991]")]
        );
        let leaked = new_fds(&before, now, Some("/tmp/*"));
        assert_eq!(
            leaked,
            vec![LeakedFd {
                fd: 8,
                target: "socket:[991]".into()
            }]
        );
    }

    #[test]
    fn report_text_lists_names_tids_and_targets() {
        let outcome = ResourceOutcome {
            leaked_threads: vec![LeakedThread {
                tid: 12345,
                name: "worker-3".into(),
            }],
            leaked_fds: vec![
                LeakedFd {
                    fd: 7,
                    target: "/tmp/x.txt".into(),
                },
                LeakedFd {
                    fd: 8,
                    target: "socket:[991]".into(),
                },
            ],
            notes: vec![],
            linger_ms: 100,
        };
        assert!(!outcome.is_clean());
        let text = outcome.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "leakcheck: 1 thread left running by test: `worker-3` (tid 12345)"
        );
        assert!(lines[1].starts_with("note: still alive 100 ms after the body returned"));
        assert!(lines[1].contains("ignore_threads = \"glob\""));
        assert_eq!(
            lines[2],
            "leakcheck: 2 file descriptors left open by test: fd 7 -> /tmp/x.txt, fd 8 -> socket:[991]"
        );
        assert!(lines[3].contains("ignore_fds = \"glob\""));
        assert_eq!(lines.len(), 4);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn report_text_caps_long_lists() {
        let outcome = ResourceOutcome {
            leaked_fds: (0..25)
                .map(|n| LeakedFd {
                    fd: n,
                    target: "pipe:[1]".into(),
                })
                .collect(),
            ..ResourceOutcome::default()
        };
        let text = outcome.to_string();
        assert!(text.starts_with("leakcheck: 25 file descriptors left open by test: fd 0 -> "));
        assert!(text.contains("fd 19 -> pipe:[1], and 5 more\n"), "{text}");
        assert!(ResourceOutcome::default().to_string().is_empty());
    }

    /// Synthetic tables: thread lists that change from one poll to the next.
    struct Fake {
        polls: Cell<usize>,
        threads: Vec<Vec<u32>>,
        fds: Vec<Vec<(u32, String)>>,
    }

    impl Fake {
        fn new(threads: Vec<Vec<u32>>, fds: Vec<Vec<(u32, String)>>) -> Fake {
            Fake {
                polls: Cell::new(0),
                threads,
                fds,
            }
        }
        fn at<T: Clone>(&self, list: &[T]) -> T {
            list[self.polls.get().min(list.len() - 1)].clone()
        }
    }

    impl Tables for Fake {
        fn threads(&self) -> io::Result<Vec<u32>> {
            if self.threads.is_empty() {
                return Err(io::Error::new(io::ErrorKind::NotFound, "no /proc"));
            }
            Ok(self.at(&self.threads))
        }
        fn thread_name(&self, tid: u32) -> Option<String> {
            Some(format!("thread-{tid}"))
        }
        fn fds(&self) -> io::Result<Vec<(u32, String)>> {
            // One poll = one `fds` read (threads are read just before).
            let now = self.at(&self.fds);
            self.polls.set(self.polls.get() + 1);
            Ok(now)
        }
    }

    fn both(linger_ms: u64) -> ResourceOptions {
        ResourceOptions {
            threads: true,
            fds: true,
            linger_ms,
            ..ResourceOptions::new()
        }
    }

    #[test]
    fn default_linger_is_100_ms_and_nothing_checked() {
        let options = ResourceOptions::default();
        assert_eq!(options.linger_ms, 100);
        assert!(!options.threads && !options.fds);
        let outcome = Watch::start(&options).finish();
        assert!(outcome.is_clean() && outcome.notes.is_empty());
    }

    #[test]
    fn lingering_thread_that_exits_while_polling_is_not_reported() {
        // Start snapshot, then two polls that still see thread 3, then it is gone.
        let fake = Fake::new(
            vec![vec![1, 2], vec![1, 2, 3], vec![1, 2, 3], vec![1, 2]],
            vec![vec![fd(0, "/dev/null")]],
        );
        let started = Instant::now();
        let outcome = Watch::start_with(&both(5_000), true, fake).finish();
        assert!(outcome.is_clean(), "{outcome}");
        assert!(outcome.notes.is_empty());
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn thread_still_there_after_linger_is_reported_after_waiting() {
        let fake = Fake::new(
            vec![vec![1, 2], vec![1, 2, 3]],
            vec![
                vec![fd(0, "/dev/null")],
                vec![fd(0, "/dev/null"), fd(3, "pipe:[9]")],
            ],
        );
        let started = Instant::now();
        let outcome = Watch::start_with(&both(30), true, fake).finish();
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert_eq!(
            outcome.leaked_threads,
            vec![LeakedThread {
                tid: 3,
                name: "thread-3".into()
            }]
        );
        assert_eq!(
            outcome.leaked_fds,
            vec![LeakedFd {
                fd: 3,
                target: "pipe:[9]".into()
            }]
        );
        assert!(outcome.to_string().contains("still alive 30 ms"));
    }

    #[test]
    fn shared_process_skips_with_one_line_note() {
        let fake = Fake::new(vec![vec![1], vec![1, 2]], vec![vec![], vec![fd(3, "x")]]);
        let outcome = Watch::start_with(&both(0), false, fake).finish();
        assert!(outcome.is_clean());
        assert_eq!(outcome.notes, vec![skipped_shared(&both(0))]);
        assert_eq!(
            outcome.to_string(),
            "leakcheck: thread and fd checks skipped: other tests run in this process at the \
             same time (parallel `cargo test`); to check, run under `cargo nextest run` or with \
             `cargo test -- --test-threads=1`\n"
        );
        let threads_only = ResourceOptions {
            threads: true,
            ..ResourceOptions::new()
        };
        assert!(skipped_shared(&threads_only).starts_with("leakcheck: thread check skipped: "));
        assert!(skipped_unsupported(&threads_only)
            .starts_with("leakcheck: thread check skipped: only supported on Linux"));
    }

    #[test]
    fn unreadable_proc_is_a_note_not_a_verdict() {
        let fake = Fake::new(vec![], vec![vec![], vec![fd(3, "/tmp/z")]]);
        let outcome = Watch::start_with(&both(0), true, fake).finish();
        assert!(outcome.leaked_threads.is_empty());
        assert_eq!(outcome.leaked_fds.len(), 1);
        assert_eq!(
            outcome.notes,
            vec!["leakcheck: thread check skipped: cannot read /proc/self/task: no /proc"]
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn proc_tables_see_this_thread_and_stdio_but_not_the_listing_fd() {
        let tid: u32 = std::fs::read_link("/proc/thread-self")
            .unwrap()
            .to_string_lossy()
            .rsplit('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(Proc.threads().unwrap().contains(&tid));
        assert!(Proc
            .thread_name(tid)
            .is_some_and(|name| !name.ends_with('\n')));
        assert_eq!(Proc.thread_name(u32::MAX), None);
        let fds = Proc.fds().unwrap();
        assert!(fds.iter().any(|(n, _)| *n == 0), "{fds:?}");
        assert!(
            !fds.iter().any(|(_, target)| target.ends_with("/fd")),
            "{fds:?}"
        );
    }

    // Scenarios against the real /proc. They are `#[ignore]`d because the tables are
    // process-wide: each needs the process to itself (`alone_*`) or to share it (`shared_*`).
    // `tests/resources.rs` in the root package runs them under `cargo test -- --ignored
    // --test-threads=1`, `--test-threads=2` and `cargo nextest run --run-ignored only`, and
    // checks the `scenario …: checked` lines they print.

    /// Runs `body` when the process is in the mode the scenario needs, else says it skipped.
    fn scenario(name: &str, want_alone: bool, body: impl FnOnce()) {
        if !cfg!(target_os = "linux") {
            eprintln!("scenario {name}: skipped (not Linux)");
            return;
        }
        let alone = crate::config::alone_in_process();
        if alone != want_alone {
            eprintln!("scenario {name}: skipped (alone in process: {alone})");
            return;
        }
        body();
        eprintln!("scenario {name}: checked");
    }

    fn current_tid() -> u32 {
        let link = std::fs::read_link("/proc/thread-self").unwrap();
        link.to_string_lossy()
            .rsplit('/')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    fn temp_path(tag: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("leakcheck-{tag}-{}.txt", std::process::id()))
    }

    fn threads() -> ResourceOptions {
        ResourceOptions {
            threads: true,
            ..ResourceOptions::new()
        }
    }

    fn fds() -> ResourceOptions {
        ResourceOptions {
            fds: true,
            ..ResourceOptions::new()
        }
    }

    #[test]
    #[ignore = "needs the process to itself: see tests/resources.rs"]
    fn alone_detached_looping_thread_is_flagged() {
        scenario("alone_detached_looping_thread_is_flagged", true, || {
            use std::sync::atomic::{AtomicBool, Ordering};
            use std::sync::Arc;
            let stop = Arc::new(AtomicBool::new(false));
            let (tx, rx) = std::sync::mpsc::channel();
            let watch = Watch::start(&threads());
            let looper = {
                let stop = Arc::clone(&stop);
                std::thread::Builder::new()
                    .name("lc-looper".into())
                    .spawn(move || {
                        tx.send(current_tid()).unwrap();
                        while !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    })
                    .unwrap()
            };
            let tid = rx.recv().unwrap();
            let started = Instant::now();
            let outcome = watch.finish();
            let waited = started.elapsed();
            stop.store(true, Ordering::Relaxed);
            looper.join().unwrap();
            eprint!("{outcome}");
            assert_eq!(
                outcome.leaked_threads,
                vec![LeakedThread {
                    tid,
                    name: "lc-looper".into()
                }]
            );
            assert!(
                waited >= Duration::from_millis(DEFAULT_LINGER_MS),
                "{waited:?}"
            );
            assert!(outcome.to_string().starts_with(&format!(
                "leakcheck: 1 thread left running by test: `lc-looper` (tid {tid})\n"
            )));
        });
    }

    #[test]
    #[ignore = "needs the process to itself: see tests/resources.rs"]
    fn alone_thread_finishing_within_linger_is_not_flagged() {
        scenario(
            "alone_thread_finishing_within_linger_is_not_flagged",
            true,
            || {
                let watch = Watch::start(&threads());
                // Detached: nobody joins it; it ends 30 ms into the 100 ms linger.
                drop(std::thread::spawn(|| {
                    std::thread::sleep(Duration::from_millis(30))
                }));
                let outcome = watch.finish();
                assert!(outcome.is_clean(), "{outcome}");
                assert!(outcome.notes.is_empty(), "{outcome}");
            },
        );
    }

    #[test]
    #[ignore = "needs the process to itself: see tests/resources.rs"]
    fn alone_joined_threads_are_clean() {
        scenario("alone_joined_threads_are_clean", true, || {
            let watch = Watch::start(&threads());
            let handles: Vec<_> = (0..4)
                .map(|_| std::thread::spawn(|| std::hint::black_box(1 + 1)))
                .collect();
            for handle in handles {
                handle.join().unwrap();
            }
            std::thread::scope(|s| {
                s.spawn(|| ());
            });
            let outcome = watch.finish();
            assert!(outcome.is_clean(), "{outcome}");
        });
    }

    #[test]
    #[ignore = "needs the process to itself: see tests/resources.rs"]
    fn alone_dropped_tokio_runtimes_are_clean() {
        scenario("alone_dropped_tokio_runtimes_are_clean", true, || {
            let options = ResourceOptions {
                threads: true,
                fds: true,
                ..ResourceOptions::new()
            };
            let watch = Watch::start(&options);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let sum = runtime.block_on(async {
                let blocking = tokio::task::spawn_blocking(|| 40);
                let task = tokio::spawn(async { 2 });
                blocking.await.unwrap() + task.await.unwrap()
            });
            assert_eq!(sum, 42);
            drop(runtime);
            let current = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            current.block_on(async { tokio::task::spawn_blocking(|| ()).await.unwrap() });
            drop(current);
            let outcome = watch.finish();
            assert!(outcome.is_clean(), "{outcome}");
        });
    }

    #[test]
    #[ignore = "needs the process to itself: see tests/resources.rs"]
    fn alone_forgotten_file_is_flagged() {
        scenario("alone_forgotten_file_is_flagged", true, || {
            let path = temp_path("forgotten");
            let watch = Watch::start(&fds());
            let file = std::fs::File::create(&path).unwrap();
            let outcome = watch.finish();
            drop(file);
            std::fs::remove_file(&path).unwrap();
            eprint!("{outcome}");
            assert!(outcome.leaked_threads.is_empty());
            assert_eq!(outcome.leaked_fds.len(), 1, "{outcome}");
            assert_eq!(outcome.leaked_fds[0].target, path.to_string_lossy());
            assert!(outcome.to_string().starts_with(&format!(
                "leakcheck: 1 file descriptor left open by test: fd {} -> {}\n",
                outcome.leaked_fds[0].fd,
                path.display()
            )));
        });
    }

    #[test]
    #[ignore = "needs the process to itself: see tests/resources.rs"]
    fn alone_closed_file_is_clean() {
        scenario("alone_closed_file_is_clean", true, || {
            let path = temp_path("closed");
            let watch = Watch::start(&fds());
            std::fs::write(&path, "x").unwrap();
            let file = std::fs::File::open(&path).unwrap();
            drop(file);
            let outcome = watch.finish();
            std::fs::remove_file(&path).unwrap();
            assert!(outcome.is_clean(), "{outcome}");
        });
    }

    #[test]
    #[ignore = "needs the process to itself: see tests/resources.rs"]
    fn alone_forgotten_listener_is_flagged() {
        scenario("alone_forgotten_listener_is_flagged", true, || {
            let watch = Watch::start(&fds());
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let outcome = watch.finish();
            drop(listener);
            eprint!("{outcome}");
            assert_eq!(outcome.leaked_fds.len(), 1, "{outcome}");
            assert!(
                outcome.leaked_fds[0].target.starts_with("socket:["),
                "{outcome}"
            );
            assert!(outcome.to_string().contains(" -> socket:["));
        });
    }

    #[test]
    #[ignore = "needs the process to itself: see tests/resources.rs"]
    fn alone_closed_listener_and_pipe_are_clean() {
        scenario("alone_closed_listener_and_pipe_are_clean", true, || {
            let watch = Watch::start(&fds());
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (accepted, _) = listener.accept().unwrap();
            drop((listener, stream, accepted));
            let (reader, writer) = std::io::pipe().unwrap();
            drop((reader, writer));
            let outcome = watch.finish();
            assert!(outcome.is_clean(), "{outcome}");
        });
    }

    #[test]
    #[ignore = "needs the process to itself: see tests/resources.rs"]
    fn alone_forgotten_pipe_is_flagged() {
        scenario("alone_forgotten_pipe_is_flagged", true, || {
            let watch = Watch::start(&fds());
            let pipe = std::io::pipe().unwrap();
            let outcome = watch.finish();
            drop(pipe);
            eprint!("{outcome}");
            assert_eq!(outcome.leaked_fds.len(), 2, "{outcome}");
            assert!(
                outcome
                    .leaked_fds
                    .iter()
                    .all(|d| d.target.starts_with("pipe:[")),
                "{outcome}"
            );
        });
    }

    #[test]
    #[ignore = "needs the process to itself: see tests/resources.rs"]
    fn alone_ignore_globs_exclude_matches() {
        scenario("alone_ignore_globs_exclude_matches", true, || {
            use std::sync::mpsc;
            let options = ResourceOptions {
                threads: true,
                fds: true,
                linger_ms: 20,
                ignore_threads: Some("lc-ignored-*".into()),
                ignore_fds: Some("socket:*".into()),
            };
            let watch = Watch::start(&options);
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let (stop, stopped) = mpsc::channel::<()>();
            let parked = std::thread::Builder::new()
                .name("lc-ignored-1".into())
                .spawn(move || stopped.recv().ok())
                .unwrap();
            let outcome = watch.finish();
            drop(stop);
            parked.join().unwrap();
            drop(listener);
            assert!(outcome.is_clean(), "{outcome}");
        });
    }

    #[test]
    #[ignore = "needs other tests in the process: see tests/resources.rs"]
    fn shared_parallel_cargo_test_skips_with_note() {
        scenario("shared_parallel_cargo_test_skips_with_note", false, || {
            let options = ResourceOptions {
                threads: true,
                fds: true,
                ..ResourceOptions::new()
            };
            let watch = Watch::start(&options);
            let path = temp_path("shared");
            let file = std::fs::File::create(&path).unwrap();
            let started = Instant::now();
            let outcome = watch.finish();
            drop(file);
            std::fs::remove_file(&path).unwrap();
            eprint!("{outcome}");
            assert!(outcome.is_clean(), "{outcome}");
            assert!(started.elapsed() < Duration::from_millis(DEFAULT_LINGER_MS));
            assert_eq!(outcome.notes, vec![skipped_shared(&options)]);
        });
    }
}
