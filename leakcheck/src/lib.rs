//! Make memory leaks fail tests.
//!
//! leakcheck is a global allocator that records every heap block a checked piece of code
//! allocates, and an attribute that fails a test when any of those blocks is still live when the
//! test body returns, with a report of what leaked, how much, and where it was allocated.
//!
//! # Setup
//!
//! ```toml
//! [dev-dependencies]
//! leakcheck = "0.1"
//!
//! # The allocator runs under every allocation of your test binary, and gimli parses debug info
//! # for the reports: build both optimised even in the dev profile that `cargo test` uses.
//! [profile.dev.package.leakcheck]
//! opt-level = 3
//! [profile.dev.package.gimli]
//! opt-level = 3
//! ```
//!
//! In each test crate (each file under `tests/` is one), install the allocator once and mark
//! the tests to check:
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();
//!
//! #[leakcheck::test]
//! fn parses_config() {
//!     let config = vec![("key", "value")];
//!     assert_eq!(config.len(), 1);
//! }
//! # fn main() {}
//! ```
//!
//! For unit tests, `src/lib.rs` installs it in test builds only: leakcheck is a
//! dev-dependency, so the other builds of the library do not have it.
//!
//! ```no_run
//! #[cfg(test)]
//! #[global_allocator]
//! static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();
//!
//! #[cfg(test)]
//! #[leakcheck::leakcheck] // every test inside (see the attribute below)
//! mod tests {
//!     #[test]
//!     fn parses_config() {
//!         assert_eq!("42".parse::<u32>(), Ok(42));
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! In a workspace, each member with tests takes the dev-dependency and installs the allocator
//! in its test crates; the `[profile.dev.package.*]` sections go in the workspace root's
//! `Cargo.toml`, as cargo reads profiles only there. To check every test without annotating
//! any, see [Every test, without the attribute](#every-test-without-the-attribute).
//!
//! Stack capture is about twice as cheap with frame pointers. Add to `.cargo/config.toml`:
//!
//! ```toml
//! [build]
//! rustflags = ["-C", "force-frame-pointers=yes"]
//! ```
//!
//! leakcheck checks at run time that the frame-pointer walk sees the same frames as the DWARF
//! unwinder; when it does not, stacks come from the DWARF unwind tables (on x86_64 Linux through
//! leakcheck's own walker, which caches each return address's rule), and reports say so.
//!
//! # The attribute
//!
//! `#[leakcheck::leakcheck]`, also exported as `#[leakcheck::test]`:
//!
//! - works above or below `#[test]`, and alone adds `#[test]` itself (on Rust 1.85 to 1.87, whose
//!   proc macros cannot read the source around them, put it above `#[test]` or leave `#[test]`
//!   out: below one, the test is registered twice);
//! - stacks with `#[tokio::test]` (and other `*::test` runtime attributes) in either order, with
//!   the same meaning: the runtime attribute expands first (`#[leakcheck]` above it moves it up)
//!   and the check wraps the function it generates, so the runtime is built, runs the test's
//!   future and is dropped inside the check. The runtime's own bookkeeping is freed before the
//!   verdict, and tasks spawned onto `flavor = "multi_thread"` workers belong to the test. On a
//!   sync function the same holds for other crates' test attributes that wrap the body
//!   (`#[test_log::test]`) and for serial_test's `#[serial]`/`#[parallel]`: what they set up
//!   first (a subscriber, a table of keys) is made inside the check;
//! - goes below `#[quickcheck]` (which generates the test that calls the property with its
//!   arguments; the other order is a compile error that says so) and below or above `#[rstest]`.
//!   rstest runs a `#[fixture]` to build the test's arguments before the test, so outside the
//!   check: to check a fixture, call it from a checked test of its own. The body runs in a
//!   closure the check may call more than once (`repeat`), so it borrows the arguments it is
//!   given: moving one out (`drop(words)`) is a compile error ("cannot move out of ..., a
//!   captured variable in an `FnMut` closure"); use `&words`, or clone;
//! - works inside macros that pass a test's attributes on (`proptest! { #[test]
//!   #[leakcheck] fn .. }`, `quickcheck! { #[leakcheck] fn .. }`, a `macro_rules!` of the
//!   project's own), registering each test once;
//! - in a doc test, which rustdoc builds without the test harness (a test function there is
//!   compiled out and never runs), registers the function for [`harness::main`] as in a
//!   `harness = false` target (feature `harness`); a doc test that does not call it should call
//!   [`check`] instead. A program that registered such tests and never called
//!   `harness::main()` names them at exit and fails (status 101), so none goes unrun unseen
//!   (a doc example that only shows the attribute is `no_run`);
//! - keeps `#[should_panic]`, `#[ignore]`, doc comments, `async` and the return type. A test
//!   returning `Result<(), E>` gets its value back unchanged; an `Err` fails the test as usual
//!   and no leak report is added on top. A body that panics fails with its panic, without a
//!   leak report;
//! - `#[leakcheck(crate = my_reexport::leakcheck)]` names the runtime crate when it is renamed
//!   or re-exported. Unknown options are compile errors that list the valid ones.
//!
//! Without the attribute, the same check from code: [`check`] returns a [`Report`], and
//! [`Check`] takes the same options as the attribute.
//!
//! # Options
//!
//! `#[leakcheck(option = value, ...)]`, or the [`Check`] method of the same name:
//!
//! | option | meaning |
//! |---|---|
//! | `allow_bytes = N`, `allow_allocs = N` | leaks within the allowance pass (and still show); beyond it the report gives the total and the allowance |
//! | `max_allocs = N` | the body may allocate at most N times, freed or not (`0`: not at all); a failure shows the stack of the first allocation past the budget |
//! | `max_bytes = N` | the body may allocate at most N bytes in total, freed or not |
//! | `max_peak_bytes = N` | the body's own blocks may never hold more than N bytes at once |
//! | `repeat = N` | run the body N+1 times (a warm-up, then N measured runs) and fail only if EVERY measured run leaves more live memory behind than before it, CPython `-R` style: the report shows `grew by [100, 100, 100] bytes per run` and the growing sites. This catches a cache that grows on every call, which no end-of-test check can tell from a lazy static. Its verdict is growth alone, of every live block, reachable or not (so `reachable` has no effect); `allow_bytes` tolerates that much growth per run |
//! | `reachable = "fail"` | blocks still reachable at the end from statics, thread-locals or other threads' stacks fail too (default `"ignore"`) |
//! | `shared_threads = "fail"` | lost blocks made by a thread the test started and left running (a pool, an executor) while other checks were open fail too; by default (`"note"`) they are listed in a note with their stacks and the tests that ran meanwhile, as those tests may have handed that thread the work. Where no other check was open (nextest, `--test-threads=1`) such blocks are simply the test's |
//! | `ignore = "pattern"` | leaks whose stack matches the pattern are suppressed (may be repeated; matching as in suppression files) |
//! | `threads` | threads alive when the body returns that were not alive when it started fail the test |
//! | `fds` | file descriptors open when the body returns that were not open when it started fail the test |
//! | `resources` | both `threads` and `fds` |
//! | `threads_linger_ms = N` | how long `threads` and `fds` wait for threads that are exiting and fds that are closing before deciding (default 100) |
//! | `ignore_threads = "glob"` | threads whose name matches the glob (`*`, `?`) are not reported |
//! | `ignore_fds = "glob"` | file descriptors whose target (a path, `socket:[...]`, `pipe:[...]`) matches the glob are not reported |
//! | `crate = path` | the runtime crate is renamed or re-exported |
//!
//! `threads`, `fds` and `resources` read the process's thread and fd tables (`/proc/self`,
//! Linux only; elsewhere the check is skipped with a note). Those tables are the whole
//! process's, so the verdict is exact only when the test has the process to itself
//! (cargo-nextest, `--test-threads=1`, `leakcheck::harness`); under parallel `cargo test` the check is
//! skipped with a note rather than guessed.
//!
//! Options combine. Unknown options, duplicates and bad values are compile errors that say
//! what is expected. On an inline module, `#[leakcheck(...)] mod tests { ... }` puts the
//! attribute with its options on every `#[test]` and `#[tokio::test]` function inside, at any
//! depth, and leaves other items alone.
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();
//!
//! #[leakcheck::leakcheck(max_allocs = 0)]
//! fn parsing_is_allocation_free() {
//!     assert_eq!("42".parse::<u32>(), Ok(42));
//! }
//!
//! #[leakcheck::leakcheck(repeat = 3)]
//! fn cache_does_not_grow() { /* call the cached function */ }
//! # fn main() {}
//! ```
//!
//! ## Suppressions
//!
//! Known leaks in code you do not own go into a suppression file in LeakSanitizer's syntax:
//!
//! ```text
//! # leakcheck.supp
//! leak:some_dependency::registry::*
//! leak:^my_crate::init_logging$
//! leak:src/generated.rs
//! ```
//!
//! Each `leak:` pattern is matched against the function name, module path and source file of
//! every frame of a leak's stack: `*` matches any run of characters, `^` and `$` anchor, and an
//! unanchored pattern may match anywhere. The file is `LEAKCHECK_SUPPRESSIONS=<path>` or else
//! `leakcheck.supp` in the package directory or a parent up to the workspace root. A
//! malformed line fails the checked tests with its `file:line`. Reports list the suppressions
//! that matched ("Suppressions used:", with counts and bytes, so stale ones show) and end each
//! leak group with a ready-to-paste `leak:` line. It names the innermost frame of your own
//! code (a file inside the workspace), else the innermost one outside std; never a frame of
//! std, core or alloc, which would hide every leak. A group whose stack holds only std's
//! frames gets no line.
//!
//! # Running
//!
//! `cargo test` or `cargo nextest run`, nothing else. Environment variables:
//!
//! | variable | values |
//! |---|---|
//! | `LEAKCHECK` | `fail` (default): a leak fails the test; `warn`: print the report on the process's stderr, past libtest's output capture, and pass; `off`: no tracking at all |
//! | `LEAKCHECK_BACKTRACE` | `1` (default): capture allocation stacks; `0`: do not (cheaper, reports have no stacks) |
//! | `LEAKCHECK_SUPPRESSIONS` | path of a suppression file (see [Suppressions](#suppressions)) |
//! | `LEAKCHECK_OUT` | a directory: each failing checked test writes its report there as JSON and as a DHAT file (see [Report files](#report-files)) |
//! | `LEAKCHECK_FORMAT` | `text` (default); `json`: print the JSON report instead of the text one |
//! | `LEAKCHECK_AT_EXIT` | `0` (default); `1`: track the whole program from before `main` and report its leaks at exit, then exit with status 23 if it leaked (LeakSanitizer's; `LEAKCHECK=warn` keeps the program's status; see [Hunting leaks in a program](#hunting-leaks-in-a-program)) |
//! | `LEAKCHECK_SCAN` | `1` (default): blocks still reachable from statics, thread-locals and other threads' stacks are not leaks; `0`: no reachability scan, as on platforms without one: the body runs once as a warm-up, and every block its measured run leaves live is a leak |
//! | `LEAKCHECK_ALL_TESTS` | `0` (default); `1`: check every test the binary runs, annotated or not, each on its own; leaking tests are reported after the test runner's summary and the process exits with status 23 (see [Every test, without the attribute](#every-test-without-the-attribute)) |
//!
//! Any other value fails each checked test with a message naming the variable and the allowed
//! values (for `LEAKCHECK_ALL_TESTS`, the test binary prints it and exits with status 2 before
//! running any test).
//!
//! ## Who owns an allocation
//!
//! - Under `cargo test`, tests run in parallel on their own threads. A checked test owns what its
//!   own thread allocates during the body, and what every thread it starts allocates (threads
//!   started by those too), until the check ends: leakcheck interposes `pthread_create`, the
//!   way sanitizer runtimes do, so a thread begins inside its creator's check whether it comes
//!   from `std::thread::spawn`, `thread::scope`, `Builder`, tokio or rayon. Other tests, checked
//!   or not, never affect its verdict. A block freed on any thread is no longer live.
//! - Under cargo-nextest (`NEXTEST_EXECUTION_MODE=process-per-test`), each test has the
//!   process to itself: the test owns everything allocated during the body on every thread but
//!   the test runner's main thread, so leaks in threads the test spawns are caught too, and
//!   leaks in work it hands to a pool or an executor that was already running.
//! - When libtest runs one test at a time (`--test-threads=1`, `RUST_TEST_THREADS=1`, or a
//!   machine with one CPU) and under `leakcheck::harness` (below), the same as under
//!   cargo-nextest: what a pool started before `main` or by an earlier test allocates during the
//!   check is the test's work.
//!
//! ## Every test exact under `cargo test`: `leakcheck::harness`
//!
//! A test target declared with `harness = false` whose `main` calls
//! `leakcheck::harness::main()` runs its `#[leakcheck]` functions, found without listing them,
//! one at a time, each owning the process as under cargo-nextest, with libtest's command line
//! and output, so `cargo test` and `cargo nextest run` both run it:
//!
//! ```toml
//! [[test]]
//! name = "integration"
//! harness = false
//! ```
//!
//! The module `leakcheck::harness` shows the test file and says what runs and what cannot. It
//! needs the feature `harness`, off by default because it brings in libtest-mimic and its clap:
//! `leakcheck = { version = "0.1", features = ["harness"] }` in `[dev-dependencies]`.
//!
//! ## Every test, without the attribute
//!
//! `LEAKCHECK_ALL_TESTS=1 cargo test` (or `cargo nextest run`) checks every test of each test
//! binary that installs the allocator, each on its own, as if it carried `#[leakcheck]` with
//! the default options: no annotation, no change to the code under test. The ownership rules
//! above, the reachability scan and the "not counted" rules below are the attribute's.
//!
//! ```sh
//! LEAKCHECK_ALL_TESTS=1 cargo test
//! ```
//!
//! libtest records a test's result when its thread ends, before leakcheck can judge what the
//! thread left, so the verdict comes at the end, as LeakSanitizer's does: after libtest's
//! summary, each leaking test's report (its name first) is printed on stderr, a closing line
//! says how many tests leaked, and the process exits with status 23:
//!
//! ```text
//! test result: ok. 56 passed; 0 failed; ...
//!
//! leakcheck: memory leak in test `cache::fills_once`: 1 allocation, 1,024 bytes
//! ...
//! SUMMARY: leakcheck: 1,024 bytes leaked in 1 allocation
//! leakcheck: 1 test leaked memory, reports above (LEAKCHECK_ALL_TESTS=1): exit status 23; ...
//! ```
//!
//! Under cargo-nextest each test is a process of its own, so exactly the leaking tests fail
//! (`test failed with exit code 23`), each with its report in its output. With `LEAKCHECK=warn` the reports
//! are printed and the exit status stays the test runner's: a soft rollout that shows in CI
//! logs. `LEAKCHECK=off` turns the mode off.
//!
//! Rolling leakcheck out on an existing suite therefore takes three steps: run CI with
//! `LEAKCHECK_ALL_TESTS=1 LEAKCHECK=warn`, which reports every leaking test and fails none;
//! fix or suppress what it finds, then drop `LEAKCHECK=warn` so a leak fails the job; then give
//! the tests that need them options (`allow_bytes`, `ignore`, `repeat`, budgets) with the
//! attribute.
//!
//! - A test that carries `#[leakcheck]` keeps its options and its in-test verdict; it is not
//!   judged again at the end. Under `leakcheck::harness` every test carries it, so the mode
//!   changes nothing there.
//! - A test is judged when its thread has exited and its thread-locals are destroyed, so what
//!   the test left in a `thread_local!` is freed by then, and libtest's output capture with it.
//!   What the test left reachable from a static is not a leak, as under the attribute.
//! - A failing test's leaks are reported too (the attribute does not judge a body that
//!   panicked); its failure already fails the run.
//! - Test threads are recognised as libtest and cargo-nextest make them: threads the main
//!   thread spawns and names after the test. Run the mode on test binaries; in a program whose
//!   main thread spawns named threads, each such thread would be judged like a test.
//! - Linux with glibc only (it interposes `pthread_create`, `pthread_detach` and
//!   `pthread_setname_np`); on
//!   other targets only annotated tests are checked.
//!
//! ## What is not counted
//!
//! Some blocks are live when the body returns without being the test's leak. With stacks on,
//! leakcheck recognises them from their allocation stack and lists them in one `note:` line:
//!
//! - the test harness's output capture (`println!` in a test under `cargo test` grows a
//!   buffer that libtest owns, and so does a caught panic, whose message std's panic hook
//!   writes there) and std's lazily created stdout/stderr buffers;
//! - one-time initialisation: blocks allocated while a `LazyLock`, `OnceLock`, `OnceCell`,
//!   `once_cell::sync::Lazy`, `lazy_static!` or a `thread_local!` initialises its value;
//! - std's own tables: the symbolizer's cache of debug info (a panic under `RUST_BACKTRACE`),
//!   and the table of threads that std keeps for its stack-overflow message, whose nodes
//!   split when many threads start at once.
//!
//! std's default panic hook runs untracked (on Linux, where leakcheck wraps it before `main`):
//! a panic the test catches writes its message, and under `RUST_BACKTRACE=1` symbolises a
//! backtrace, without cost to the check and without a report. The panic's message is
//! formatted before the hook runs and unwinding starts after it, so a leak in a `Display` of
//! the message or in a `Drop` that runs while unwinding still fails the test.
//!
//! - blocks still reachable at the end from a static, a thread-local, or another thread's
//!   stack, directly or through other such blocks (a registry the test filled, a
//!   `thread_local!` cache, a pool's queue, a message a worker keeps): leakcheck scans the
//!   statics of every loaded object, the test thread's TLS, the live stacks of the threads the
//!   test started that still run, and those of other threads that ran during the test and now
//!   wait (a worker fed by a channel, a pool started before `main`), conservatively, like
//!   LeakSanitizer and valgrind, and reports them in one `note:` line. Traversal goes on
//!   through blocks other checks made (a subscriber list another test created, a lock table
//!   another test grew). `#[leakcheck(reachable = "fail")]` counts them as leaks.
//!
//! What is left is lost: **definitely lost** (nothing points to it) or **indirectly lost**
//! (only lost blocks point to it, like the tail of a forgotten list), and the headline says
//! `88 (8 direct, 80 indirect) bytes` as valgrind does. Deliberate leaks go through
//! [`ignore`].
//!
//! # Reading a report
//!
//! ```text
//! leakcheck: memory leak in test `config::parses_config`: 2 allocations, 1,048 bytes
//!
//! 1,024 bytes in 1 allocation definitely lost, allocated at:
//!    0: my_crate::cache::Cache::insert
//!              at src/cache.rs:42:9
//!    1: config::parses_config::{{closure}}
//!              at tests/config.rs:17:5
//!       to suppress, add to leakcheck.supp: leak:^my_crate::cache::Cache::insert$
//!
//! 24 bytes in 1 allocation definitely lost, allocated at:
//!    0: config::parses_config::{{closure}}
//!              at tests/config.rs:18:13
//!       to suppress, add to leakcheck.supp: leak:^config::parses_config$
//!
//! SUMMARY: leakcheck: 1,048 bytes leaked in 2 allocations
//! ```
//!
//! Leaks are grouped by allocation stack, largest group first, at most ten groups (then
//! `... and N more`). Each stack starts at the first frame outside std and leakcheck, the line
//! that called `Box::new`, `Vec::push` or `String::from`, and ends at the test body (shown as
//! the test's `{{closure}}`, since the body runs in a closure). std's frames between your own
//! (`catch_unwind`'s, a panic's, `FnOnce::call_once`) are left out; a stack of more than 16
//! frames shows its first 12 and its last 4, with the count of those between, and frames are
//! numbered by their depth (a recursion 500 deep ends at frame 500 or so, however much of it is
//! shown).
//!
//! A failing test's report comes after `thread 'NAME' panicked at FILE:LINE:COLUMN:`, the
//! position of the test's name (also for a test inside a `#[leakcheck] mod`), on stderr, where
//! nextest's JUnit output keeps it. No backtrace follows, whatever `RUST_BACKTRACE` says: the
//! test unwinds without running the panic hook, and the report already says where the leak
//! was made. A note that holds for every test of the process (stacks taken without frame
//! pointers) follows the first report only.
//!
//! # Report files
//!
//! With `LEAKCHECK_OUT=<dir>`, each checked test that fails (a leak, a broken budget, growth)
//! writes two files named after the test (`module::test` becomes `module__test`); passing
//! tests write nothing:
//!
//! - `<dir>/<test>.json`: the report in leakcheck's JSON schema, versioned by
//!   `schema_version` ([`JSON_SCHEMA_VERSION`]): the test, the verdict and its reasons,
//!   totals, and each group with its kind, bytes, allocations and frames. The fields are listed
//!   at [`Report::to_json`]. Keep the directory as a CI artifact.
//! - `<dir>/<test>.dhat.json`: the same leaks in DHAT's file format, which Valgrind's viewer
//!   opens (`dh_view.html`, "Load"): one program point per leak group, whose bytes and blocks
//!   "at t-end" are what leaked, with its stack.
//!
//! `LEAKCHECK_FORMAT=json` prints the JSON report, on one line, where the text report would
//! go (stderr and the failing test's panic message). From code: [`Report::to_json`],
//! [`Report::to_dhat_json`], [`Report::write_files`].
//!
//! # Hunting leaks in a program
//!
//! Outside tests, install the allocator in the program (a server, a CLI) and ask what grows,
//! as Python users do with tracemalloc:
//!
//! ```
//! #[global_allocator]
//! static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();
//!
//! # fn serve_requests() { std::mem::forget(std::hint::black_box(vec![0u8; 100])); }
//! # fn main() {
//! let session = leakcheck::Session::start(); // every thread, from now on
//! let before = session.snapshot();            // live blocks made since start, by call site
//! serve_requests();
//! let after = session.snapshot();
//! println!("{}", after.diff(&before).top(10)); // call sites by growth, with their stacks
//! let report = session.finish();               // what is still live, as a test reports it
//! println!("{report}");
//! # }
//! ```
//!
//! - [`Session::start`] records every thread's allocations with their stacks until
//!   [`Session::finish`] (one session per process; blocks made inside a check belong to the
//!   check). Tracking costs what it costs in a check: it is for hunting, not for production.
//! - [`Snapshot::diff`] compares two snapshots per call site, sorted like tracemalloc's
//!   `compare_to` (largest absolute change in bytes first); [`Diff::top`] prints the first
//!   sites with their stacks. [`Snapshot::sites`] and [`Diff::sites`] give the figures.
//! - [`Session::finish`] lists every block still live, each group labelled definitely lost,
//!   indirectly lost or still reachable (from statics and thread-locals), and
//!   [`Report::write_files`] saves the JSON and DHAT pair.
//! - `stats()`, with the feature `stats` (`features = ["stats"]`), returns process-wide
//!   counters at any time, with or without a session: allocations, deallocations,
//!   reallocations, bytes allocated and freed, live bytes and blocks, and a peak
//!   (`Stats::peak_live_bytes` says exactly what that peak is). Each thread counts in a
//!   thread-local block of its own without atomic read-modify-writes, so the counters cost
//!   every allocation and free two instructions, and `stats()` sums them. Beyond 1,024 threads
//!   alive at once, the extra threads count with shared atomics (slower). The feature is off
//!   by default because those instructions are most of what the installed allocator costs
//!   while no check runs (7% of a bare `malloc`+`free` pair), and leak checks never read them.
//!
//! With `LEAKCHECK_AT_EXIT=1` a program that installed the allocator needs no code change at
//! all: a session starts before `main`, and when the program exits (returning from `main` or
//! calling `std::process::exit`) it prints on stderr what was allocated and is neither freed
//! nor reachable from a static or thread-local, grouped by call site, like LeakSanitizer's
//! report (`LEAKCHECK_OUT` and `LEAKCHECK_FORMAT` apply). When it found a leak, the process
//! then exits with status 23, as LeakSanitizer's does, so a CI step that runs the program fails;
//! under `LEAKCHECK=warn` the report is printed and the status stays the program's. Linux
//! only; the program runs at the speed of a checked test. `examples/hunt` in the repository
//! shows both uses.
//!
//! # Limitations
//!
//! - Only heap memory that goes through the Rust global allocator is seen: not C libraries
//!   calling `malloc` directly, not `mmap`.
//! - Under parallel `cargo test`, work done for the test by threads that existed before it (a
//!   global thread pool such as rayon's, started by an earlier test) is not attributed to it;
//!   under cargo-nextest it is. Thread inheritance needs glibc's `pthread_create`; on other
//!   platforms only the test's own thread is checked under `cargo test`.
//! - A thread that the test starts and leaves running belongs to the test until its check
//!   ends; then it is a shared thread like any other. While other checks are open, such a
//!   thread (a pool or an executor the first test to need it started) may run their work: what
//!   it makes then and loses is listed in a `note:` with its stacks and the tests that ran
//!   meanwhile, not counted (`shared_threads = "fail"` counts it). Exact under cargo-nextest
//!   and `--test-threads=1`, where no other check is open.
//! - The "not counted" rules need stacks: with `LEAKCHECK_BACKTRACE=0`, a `println!` under
//!   output capture or the first touch of a lazy static can be reported as a leak. Run with
//!   `--nocapture`, or keep stacks on.
//! - The root scan sees statics and thread-locals, and follows pointers through blocks made
//!   during the check, through blocks that earlier checks left reachable (a cache one test
//!   created and another fills) and through blocks other running checks hold (only into the
//!   check's own blocks, and only at an owner's address: their spare capacity holds stale
//!   words). A heap object made outside every check (before the first one, in an unannotated
//!   test, or inside `ignore`) is not followed: what only it keeps is reported as lost (the
//!   block of slots a `std::sync::mpsc` channel made before `main` adds when a test sends a
//!   burst); use `ignore` or a suppression for it. Once a check has left reachable
//!   blocks behind, every free in the process looks its block up in leakcheck's table (a hash
//!   and a load, and a shard lock where the shard may hold it), so unchecked code runs a little
//!   slower than with the allocator idle (30% more instructions per alloc+free pair). The
//!   scan does not read the test thread's stack frames: the frames above a check keep stale
//!   copies of addresses (glibc's `free` leaves the freed address behind, and the next block
//!   of that size gets it), which made real leaks look reachable in our tests, so a block that
//!   the body hands to a local variable of its caller counts as lost. It reads the live stacks
//!   of the threads the check started that still run at its end, and of other threads that ran
//!   during the check and are blocked at its end, where a word keeps a block only by its start
//!   (or a tagged start, `Arc::into_raw`'s address, a hash table's control bytes); never the
//!   stacks of test threads or of threads another running check started and can still join
//!   (a thread detached from its handle, such as a lazily started pool, serves every test), and
//!   not those of
//!   threads that did not run during the check or
//!   keep running at its end (each would hold stale copies of freed addresses). Finding the
//!   blocked ones takes a 50 ms pause, paid only when blocks are still unaccounted for after
//!   the rest of the scan (a leaking test, or one whose blocks only such a thread keeps). Like
//!   every conservative scan (valgrind's,
//!   LeakSanitizer's), it reads whole blocks, spare capacity included. Blocks made inside a
//!   check are handed out zeroed, and the part a reallocation adds too (up to 128 KiB), so
//!   what the memory's previous owner left there cannot point at a leak (it did: a regex
//!   cache's spare capacity kept a later leak "reachable" once in ~80 parallel runs of the
//!   accuracy corpus). Stale values the program itself leaves behind (a popped element, a
//!   removed map entry) can still make another leaked block look indirectly lost, or, in a
//!   reachable block, reachable. A word counts as a pointer to a block at its start, a tagged
//!   start (an offset below 8) or a word-aligned offset inside it, the shapes Rust keeps
//!   owned blocks alive by; in blocks earlier or other checks made, only at an owner's
//!   address (a retained executor's queue kept stale addresses of freed tasks whose memory a
//!   leak then reused, pointing into its middle): a block kept only by a byte slice at an odd offset (a sub-slice of
//!   a leaked `String`) is reported. A block in the first MiB after a 4 GiB boundary, where
//!   data (two small `u32`s, a small value under an old pointer's upper half) reads as its
//!   address and where a new thread's arena can start, is kept only by its start, a tagged
//!   start, `Arc::into_raw`'s address or a hash table's control bytes.
//! - The scan runs on x86_64 Linux with glibc. Elsewhere (or with `LEAKCHECK_SCAN=0`) a
//!   warning says so once, and checks fall back to a warm-up run: a body that can run twice
//!   (`#[leakcheck]`, [`Check::run`]) runs once first, and every block its measured run leaves
//!   live counts, reachable or not; [`check`] runs its `FnOnce` body once and counts all it
//!   leaves. A body with side effects that cannot happen twice needs the scan.
//! - Each shard of leakcheck's record table is biased to the thread that uses it, which then
//!   locks it without an atomic read-modify-write. Another thread that needs the shard revokes
//!   the bias with a `membarrier` system call (Linux 4.14 or later), once per shard and
//!   process (at most 4,096), which interrupts the process's running threads for a few
//!   microseconds. Where `membarrier` is missing or forbidden (other systems, some seccomp
//!   sandboxes), every shard takes an ordinary spin lock: the same verdicts, about a tenth
//!   slower per tracked block.
//! - Release builds without debug info show function names but no file:line; add
//!   `debug = "line-tables-only"` to the profile for line numbers. Frames are resolved on
//!   Linux with glibc (ELF and DWARF); elsewhere reports show addresses. Compressed debug
//!   sections give names without file:line; split DWARF (`split-debuginfo`) gives file:line
//!   without inlined frames.
//! - Frame pointers are walked on x86_64 and aarch64 Linux. Without them, x86_64 Linux with
//!   glibc uses leakcheck's cached DWARF walker (it hands stacks it cannot describe, such as
//!   signal frames or CFA expressions, to libgcc), and other targets libgcc's unwinder, about
//!   15 times slower. Stacks are cut at 64 frames, counted from the allocation; inside a
//!   check they also end at the check itself (the frames of whoever called it are not
//!   captured), except under libgcc's unwinder.
//! - The scan leaves out the symbolizers' static caches (std's `MAPPINGS_CACHE`, and the
//!   `backtrace` crate's where your code uses it), whose uninitialised slots hold stale
//!   addresses; they are found by name in the symbol table, so in a stripped binary they stay
//!   roots and can, rarely, keep a leak "reachable". It also leaves out glibc's data segment, where `malloc` keeps stale chunk
//!   addresses; a Rust block that only a C library's static keeps (an `on_exit` argument)
//!   therefore counts as lost. The inner allocator's own statics are read like any others:
//!   one that keeps stale addresses in them (as glibc does) can hide a leak, rarely.
//! - Sessions and `LEAKCHECK_AT_EXIT`: a block that only a local variable, or the stack of a
//!   thread started before the session, points to is labelled lost (as in checks, only the
//!   stacks of threads started during the session that still run are scanned). A huge
//!   reachable heap (a panic's backtrace loads ~50 MB of debug info) can contain a word that
//!   happens to point into a lost block, which then shows as reachable. Exiting through a
//!   signal or `abort` skips the at-exit report. A session cannot start while a test owns the
//!   process (cargo-nextest, `leakcheck::harness`).
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod all_tests;
mod check;
mod config;
// Not `stats`: without the feature, a call to `leakcheck::stats()` must find nothing by that
// name, so that rustc says the function is gated behind the `stats` feature.
mod counters;
mod json;
#[cfg(target_os = "linux")]
mod never_ran;
mod noise;
mod options;
mod output;
mod overlap;
mod panic_hook;
#[allow(unsafe_code)]
mod raw;
mod report;
mod resources;
mod session;
mod suppress;
mod symbolize;
mod symbols;
mod thread_roots;
mod track;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

#[cfg(feature = "harness")]
pub mod harness;

#[cfg(feature = "stats")]
pub use counters::{stats, Stats};
pub use leakcheck_macros::leakcheck;
pub use leakcheck_macros::leakcheck as test;
pub use options::{Check, Reachable, SharedThreads};
pub use output::JSON_SCHEMA_VERSION;
pub use raw::alloc::LeakCheck;
pub use report::{BudgetOverrun, Frame, Kind, LeakGroup, Report, SuppressionUse};
pub use session::{Diff, Session, Site, SiteDiff, Snapshot, Top};

/// Runs `body` and reports the heap blocks it allocated that are still live when it returns:
/// the same check as `#[leakcheck]`, for custom harnesses, property tests and benchmarks.
///
/// ```
/// #[global_allocator]
/// static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();
///
/// # fn main() {
/// let report = leakcheck::check(|| {
///     let v = vec![1, 2, 3];
///     assert_eq!(v.len(), 3);
/// });
/// assert!(report.is_clean(), "{report}");
/// # }
/// ```
///
/// `LEAKCHECK_BACKTRACE` applies; `LEAKCHECK` (fail/warn/off) does not, since the caller
/// decides what to do with the report. A check from code owns the calling thread and the
/// threads it starts, also under cargo-nextest: only a test attribute owns the whole process.
///
/// # Panics
///
/// If the leakcheck allocator is not the `#[global_allocator]` (there would be nothing to
/// report), or an environment variable has a value leakcheck does not accept.
#[track_caller]
pub fn check<F: FnOnce()>(body: F) -> Report {
    Check::new().run_once(body)
}

/// Runs `f` with leak tracking suspended on this thread and returns its value: what it
/// allocates is never reported, for deliberate leaks such as `Box::leak` of a `&'static`
/// configuration.
///
/// ```
/// #[global_allocator]
/// static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();
///
/// # fn main() {
/// let report = leakcheck::check(|| {
///     let config: &'static str = leakcheck::ignore(|| Box::leak(String::from("key=value").into_boxed_str()));
///     assert_eq!(config, "key=value");
/// });
/// assert!(report.is_clean(), "{report}");
/// # }
/// ```
pub fn ignore<R>(f: impl FnOnce() -> R) -> R {
    check::untracked(f)
}

/// The guard form of [`ignore`], for longer regions: nothing this thread allocates while the
/// guard lives is reported. It is tied to the thread that made it (it is not `Send`).
///
/// ```
/// #[global_allocator]
/// static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();
///
/// # fn main() {
/// let report = leakcheck::check(|| {
///     let _ignoring = leakcheck::ignoring();
///     let registry: &'static mut Vec<u32> = Box::leak(Box::new(vec![1, 2, 3]));
///     registry.push(4);
/// });
/// assert!(report.is_clean(), "{report}");
/// # }
/// ```
pub fn ignoring() -> Ignoring {
    Ignoring(track::Block::new())
}

/// Returned by [`ignoring`]; tracking resumes when it drops.
#[must_use = "tracking resumes as soon as the guard is dropped"]
pub struct Ignoring(track::Block);

impl core::fmt::Debug for Ignoring {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Ignoring")
    }
}
