//! std's default panic hook, run with tracking blocked.
//!
//! # Why
//!
//! Under `RUST_BACKTRACE=1` (usual in CI) std's default hook captures and symbolises a
//! backtrace for every panic, also one the test catches: tens of thousands of allocations of
//! parsed debug info, most of it kept in std's symbolizer cache. Inside a check each of them was
//! recorded with its stack, and at the check's end what the cache kept was resolved only to be
//! excused as the symbolizer's: a test that catches a panic ran four to six times slower than
//! without a check (`benches/caught_panic.rs`). None of it is the test's memory.
//!
//! # What is untracked, and why no leak of the test's can hide there
//!
//! Only the run of std's own default hook: [`wrap_default`] replaces it, before `main`, with a
//! hook that calls it with tracking blocked on the panicking thread. Nothing the user wrote
//! runs inside it:
//!
//! - std formats the panic message (the user's `Display` impls in `panic!("{x}")`) in
//!   `rust_panic_with_hook`, as it builds the hook's argument, *before* it calls the hook; that
//!   formatting is tracked as before;
//! - unwinding (the user's `Drop`s, a `catch_unwind`'s handler) starts after the hook returns;
//! - the default hook itself writes the formatted message, the thread's name and the backtrace
//!   to stderr or to libtest's output capture: std's code and std's buffers only.
//!
//! Frees stay tracked while blocked, so a block of the test's freed there is still no leak.
//!
//! Installed before `main` (from the loader's `.init_array`, see `raw::exit`), the hook it
//! replaces is std's default one: no code of the program has run yet to set another (only
//! another library's load-time constructor could, before ours). A hook the program sets later
//! replaces this one and its work is tracked like any other code of the program's; a hook that
//! calls the one it replaced (`take_hook`) calls this one, and so std's default, untracked.
//! Where there is no `.init_array` (not Linux) nothing is replaced and the hook's work is
//! tracked, as before.
#![forbid(unsafe_code)]

use std::panic;

/// Replaces the panic hook (std's default before `main`) with one that runs it untracked.
pub(crate) fn wrap_default() {
    // `take_hook` and `set_hook` panic on a panicking thread: not the case before `main`.
    if std::thread::panicking() {
        return;
    }
    let default = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        let _untracked = crate::track::Block::new();
        default(info)
    }));
}
