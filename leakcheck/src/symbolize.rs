//! Turning raw stacks into frames a person reads, only for leaked blocks and only once per
//! distinct stack. Called with tracking blocked on the calling thread: the symbolizer's caches
//! are permanent allocations that must never show up as the test's leaks.
#![forbid(unsafe_code)]

use crate::raw::intern;
use crate::raw::stack::GAP_LIMIT;
use crate::report::Frame;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Threads inside [`resolve`] now. A child forked while one is there would wait forever for
/// the locks it holds (the caches' here and in `crate::symbols`), so [`forked`] turns symbols
/// off instead.
static RESOLVING: AtomicUsize = AtomicUsize::new(0);
/// Set in a forked child whose parent was resolving symbols at the fork.
static NO_SYMBOLS: AtomicBool = AtomicBool::new(false);

/// Called in a freshly forked child (single-threaded, before `fork` returns). Symbols are off
/// too when the loader's lock may be lost: resolving walks the loaded objects.
pub(crate) fn forked() {
    if RESOLVING.swap(0, Ordering::SeqCst) > 0 || !crate::raw::loader_usable() {
        NO_SYMBOLS.store(true, Ordering::SeqCst);
    }
}

struct Resolving;

impl Resolving {
    fn enter() -> Resolving {
        RESOLVING.fetch_add(1, Ordering::SeqCst);
        Resolving
    }
}

impl Drop for Resolving {
    fn drop(&mut self) {
        RESOLVING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Resolved frames of an interned stack, innermost first, inlined frames expanded. In a child
/// forked while another thread resolved symbols: the raw addresses only.
pub(crate) fn resolve(stack: u32) -> Arc<[Frame]> {
    if NO_SYMBOLS.load(Ordering::Relaxed) {
        return intern::frames(stack)
            .unwrap_or_default()
            .iter()
            .map(|&address| unresolved(address))
            .collect();
    }
    let _resolving = Resolving::enter();
    static CACHE: OnceLock<Mutex<HashMap<u32, Arc<[Frame]>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(frames) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&stack) {
        return frames.clone();
    }
    let frames: Arc<[Frame]> = intern::frames(stack)
        .map(resolve_addresses)
        .unwrap_or_default()
        .into();
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(stack, frames.clone());
    frames
}

fn resolve_addresses(addresses: &[usize]) -> Vec<Frame> {
    let root = source_root();
    let mut frames = Vec::new();
    for (&address, symbols) in addresses.iter().zip(crate::symbols::resolve(addresses)) {
        // A gap marker (the count of frames a deep stack left out between its ends) maps to
        // no object, so it resolves to nothing and stays as it is.
        if address < GAP_LIMIT || symbols.is_empty() {
            frames.push(unresolved(address));
            continue;
        }
        frames.extend(symbols.into_iter().map(|symbol| Frame {
            function: symbol.name,
            file: symbol.file.map(|f| shorten(&f, root.as_deref())),
            line: symbol.line,
            column: symbol.column,
            address,
        }));
    }
    frames
}

fn unresolved(address: usize) -> Frame {
    Frame {
        function: None,
        file: None,
        line: None,
        column: None,
        address,
    }
}

/// Whether `frame` stands for frames a deep stack left out (see `stack::Kept`); its
/// `address` is how many.
pub(crate) fn is_gap(frame: &Frame) -> bool {
    frame.function.is_none() && frame.file.is_none() && frame.address < GAP_LIMIT
}

/// Paths inside the workspace are shown relative to it, as a person would type them.
fn source_root() -> Option<PathBuf> {
    std::env::var_os("NEXTEST_WORKSPACE_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
}

fn shorten(file: &Path, root: Option<&Path>) -> PathBuf {
    root.and_then(|root| file.strip_prefix(root).ok())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| file.to_path_buf())
}

/// Who a frame belongs to, for trimming and for deciding who owns a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// leakcheck itself (its stack walkers and symbolizer included), the allocator shims.
    Machinery,
    /// std, core, alloc, the test runner, or no symbol at all.
    Std,
    /// The test runner and thread start-up below the test body.
    Runner,
    /// Everything else: the user's code and their dependencies.
    User,
}

/// A frame's function name (without a leading `<` of `<T as Trait>::f`) and source file, as
/// text for matching; empty when unknown.
fn name_and_file(frame: &Frame) -> (&str, std::borrow::Cow<'_, str>) {
    let name = frame
        .function
        .as_deref()
        .unwrap_or("")
        .trim_start_matches('<');
    let file = frame
        .file
        .as_deref()
        .map(Path::to_string_lossy)
        .unwrap_or_default();
    (name, file)
}

pub(crate) fn owner(frame: &Frame) -> Owner {
    let (name, file) = name_and_file(frame);
    let file = file.as_ref();
    // Files decide first: with `debug = "line-tables-only"` (the usual release setting)
    // inlined frames carry short names such as `walk_slow` or `push`, but always their file.
    const MACHINERY: &[&str] = &["leakcheck::"];
    // The allocator shims, with or without the `__rustc::` of newer toolchains; not every
    // `__rustc::` symbol (`__rustc::rust_begin_unwind` is std's panic entry, which a leak made
    // while formatting a panic message has on its stack, between the user's frames).
    const ALLOCATOR_SHIMS: &[&str] = &[
        "__rust_alloc",
        "__rust_realloc",
        "__rust_dealloc",
        "__rust_no_alloc_shim_is_unstable",
        "__rdl_",
        "__rg_",
    ];
    let unprefixed = name.strip_prefix("__rustc::").unwrap_or(name);
    if in_leakcheck(file)
        || MACHINERY.iter().any(|p| name.starts_with(p))
        || ALLOCATOR_SHIMS.iter().any(|p| unprefixed.starts_with(p))
    {
        return Owner::Machinery;
    }
    const RUNNER: &[&str] = &[
        "test::",
        "std::rt::",
        "start_thread",
        "clone",
        "__libc_start",
    ];
    if file.contains("/library/test/")
        || RUNNER.iter().any(|p| name.starts_with(p))
        || name.contains("__rust_begin_short_backtrace")
        || name.ends_with("thread_start")
    {
        return Owner::Runner;
    }
    const STD: &[&str] = &[
        "std::",
        "core::",
        "alloc::",
        "hashbrown::",
        "panic_unwind::",
        "__rustc::",
    ];
    if in_std(file)
        || STD.iter().any(|p| name.starts_with(p))
        || (file.is_empty() && !name.contains("::"))
    {
        return Owner::Std;
    }
    Owner::User
}

/// A file of the standard library, as the precompiled std records it.
fn in_std(file: &str) -> bool {
    file.starts_with("/rustc/")
        || [
            "/library/std/",
            "/library/core/",
            "/library/alloc/",
            "/rust/deps/",
        ]
        .iter()
        .any(|p| file.contains(p))
}

/// A file of leakcheck's own source.
fn in_leakcheck(file: &str) -> bool {
    const OWN_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/");
    // Frames show paths relative to the workspace when they are inside it, as leakcheck's are
    // when it is built from a path in the user's workspace (or its own tests).
    static OWN_SOURCE_SHOWN: OnceLock<String> = OnceLock::new();
    let shown = OWN_SOURCE_SHOWN.get_or_init(|| {
        let shown = shorten(Path::new(OWN_SOURCE), source_root().as_deref());
        format!("{}/", shown.display())
    });
    file.starts_with(OWN_SOURCE)
        || (!shown.starts_with('/') && file.starts_with(shown.as_str()))
        || in_crate(file, "leakcheck")
}

/// A file of the registry crate `name` (any version): `.../name-1.2.3/src/...`.
fn in_crate(file: &str, name: &str) -> bool {
    file.split('/').any(|part| {
        part.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|version| version.starts_with(|c: char| c.is_ascii_digit()))
    })
}

/// An async runtime's scheduling frames: below them is the runtime driving the test body (or
/// a worker thread), not the code that allocated.
fn is_executor(frame: &Frame) -> bool {
    let (name, file) = name_and_file(frame);
    const EXECUTORS: &[&str] = &[
        "tokio::runtime::",
        "async_std::task::",
        "async_executor::",
        "futures_executor::",
        "smol::",
    ];
    EXECUTORS.iter().any(|p| name.starts_with(p))
        || (in_crate(&file, "tokio") && file.contains("/src/runtime/"))
}

/// Why a block left live by the test is not the test's leak, judged from its stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Excuse {
    /// The test harness's output capture, or std's lazily created stdout/stderr buffers.
    Stdio,
    /// Made during one-time initialisation of a lazy static, `OnceLock`, `OnceCell` or
    /// thread-local: it belongs to the static, which outlives every test.
    OneTimeInit,
    /// std's process-wide table of threads (each thread's stack guard, for the stack-overflow
    /// message), whose nodes split and merge as threads start and exit: it belongs to std.
    ThreadTable,
    /// Debug info parsed by std's symbolizer (or the `backtrace` crate's, in code that uses
    /// it), e.g. for a panic message under `RUST_BACKTRACE=1`: it belongs to the symbolizer's
    /// static cache, which the scan does not read (see `crate::noise`).
    SymbolizerCache,
}

pub(crate) fn excuse(frames: &[Frame]) -> Option<Excuse> {
    const STDIO_NAMES: &[&str] = &["std::io::stdio::"];
    const STDIO_FILES: &[&str] = &["/library/std/src/io/stdio.rs"];
    const INIT_NAMES: &[&str] = &[
        "std::sync::once_lock::OnceLock<",
        "std::sync::lazy_lock::LazyLock<",
        "std::sync::once::Once::call_once",
        "std::sync::poison::once::Once::call_once",
        "std::sys::sync::once::",
        "core::cell::once::OnceCell<",
        "core::cell::lazy::LazyCell<",
        "once_cell::imp::",
        "once_cell::sync::OnceCell<",
        "once_cell::unsync::OnceCell<",
        "once_cell::sync::Lazy<",
        "once_cell::unsync::Lazy<",
        "lazy_static::lazy::Lazy<",
    ];
    const INIT_FILES: &[&str] = &[
        "/library/std/src/sync/once_lock.rs",
        "/library/std/src/sync/lazy_lock.rs",
        "/library/std/src/sync/once.rs",
        "/library/std/src/sync/poison/once.rs",
        "/library/std/src/sys/sync/once/",
        "/library/core/src/cell/once.rs",
        "/library/core/src/cell/lazy.rs",
    ];
    // Thread-locals initialise and destroy in the same files: only the initialising frames
    // excuse a block (a leak in a thread-local's destructor is a leak).
    const TLS_FILES: &[&str] = &["/library/std/src/sys/thread_local/"];
    const SYMBOLIZER_NAMES: &[&str] = &[
        "std::backtrace_rs::symbolize::",
        "std::backtrace::",
        "backtrace::symbolize::",
    ];
    let mut found = None;
    let mut below_user_code = false;
    for frame in frames {
        let (name, file) = name_and_file(frame);
        let file = file.as_ref();
        // std's default panic hook writes the message (and, with RUST_BACKTRACE, a backtrace)
        // into the test harness's output capture, a buffer the harness made before the test:
        // what the hook's writing leaves live is that buffer's growth. Code of the user's
        // called by the hook (a payload's `Display`) comes before the hook here, and is theirs.
        if !below_user_code && name.starts_with("std::panicking::default_hook") {
            return Some(Excuse::Stdio);
        }
        // A thread starting adds itself to std's table of threads; many starting at once in a
        // check split a node of it, whose parent the table made before the check.
        if !below_user_code
            && name.starts_with("std::sys::pal::unix::stack_overflow::thread_info::")
        {
            return Some(Excuse::ThreadTable);
        }
        below_user_code |= owner(frame) == Owner::User;
        if SYMBOLIZER_NAMES.iter().any(|p| name.starts_with(p))
            || file.contains("/backtrace/src/symbolize/")
            || (in_crate(file, "backtrace") && file.contains("/src/symbolize/"))
        {
            return Some(Excuse::SymbolizerCache);
        }
        if STDIO_NAMES.iter().any(|p| name.starts_with(p))
            || STDIO_FILES.iter().any(|p| file.contains(p))
        {
            return Some(Excuse::Stdio);
        }
        let thread_local_init = (name.starts_with("std::sys::thread_local::")
            || TLS_FILES.iter().any(|p| file.contains(p)))
            && name.contains("init");
        let init = thread_local_init
            || INIT_NAMES.iter().any(|p| name.starts_with(p))
            || INIT_FILES.iter().any(|p| file.contains(p))
            || in_crate(file, "once_cell")
            || in_crate(file, "lazy_static");
        if init {
            found = Some(Excuse::OneTimeInit);
        }
    }
    found
}

/// The frames worth showing: from the first frame outside leakcheck and std (so the user's
/// call site comes first) down to the test body, without the runner below it, and without the
/// frames of std between the user's (`catch_unwind`'s `do_call`, `FnOnce::call_once`, the
/// panic machinery that formats a message, `drop_in_place`): how the user's code reached the
/// user's code, which a reader skips, and which took the room of the test body's frame.
pub(crate) fn user_frames(frames: &[Frame]) -> Vec<Frame> {
    let shown = outer_user_frames(frames);
    if shown.iter().any(|f| owner(f) == Owner::User) {
        shown
            .into_iter()
            .filter(|f| owner(f) == Owner::User || is_gap(f))
            .collect()
    } else {
        shown
    }
}

/// [`user_frames`] with std's frames between the user's still in.
fn outer_user_frames(frames: &[Frame]) -> Vec<Frame> {
    let start = frames
        .iter()
        .position(|f| owner(f) == Owner::User)
        .or_else(|| frames.iter().position(|f| owner(f) != Owner::Machinery))
        .unwrap_or(frames.len());
    let rest = &frames[start..];
    let end = rest
        .iter()
        .enumerate()
        .position(|(i, f)| {
            matches!(owner(f), Owner::Machinery | Owner::Runner) || (i > 0 && is_executor(f))
        })
        .or_else(|| {
            rest.iter()
                .rposition(|f| owner(f) == Owner::User)
                .map(|i| i + 1)
        })
        .unwrap_or(rest.len());
    // std glue between the body and what drives it (`Pin::poll`, `FnOnce::call_once`).
    let end = rest[..end]
        .iter()
        .rposition(|f| owner(f) == Owner::User)
        .map_or(end, |last_user| last_user + 1);
    rest[..end].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str) -> Frame {
        Frame {
            function: Some(function.to_owned()),
            file: None,
            line: None,
            column: None,
            address: 0,
        }
    }

    /// The names of the frames [`user_frames`] keeps of a stack given by function names.
    fn shown(functions: &[&str]) -> Vec<String> {
        let frames: Vec<Frame> = functions.iter().copied().map(frame).collect();
        user_frames(&frames)
            .into_iter()
            .map(|f| f.function.unwrap())
            .collect()
    }

    #[test]
    fn a_test_body_driven_by_tokio_ends_where_the_runtime_begins() {
        let names = shown(&[
            "leakcheck::track::record",
            "alloc::vec::Vec<T,A>::push",
            "my_crate::tests::fetches::{{closure}}",
            "<core::pin::Pin<P> as core::future::future::Future>::poll",
            "tokio::runtime::park::CachedParkThread::block_on::{{closure}}",
            "tokio::runtime::park::CachedParkThread::block_on",
            "tokio::runtime::runtime::Runtime::block_on",
            "my_crate::tests::fetches",
            "leakcheck::__private::run_test",
        ]);
        assert_eq!(names, ["my_crate::tests::fetches::{{closure}}"]);
    }

    #[test]
    fn trims_machinery_std_and_runner() {
        let names = shown(&[
            "leakcheck::raw::stack::capture",
            "leakcheck::track::record",
            "__rust_alloc",
            "alloc::raw_vec::RawVecInner<A>::finish_grow",
            "alloc::vec::Vec<T,A>::push",
            "my_crate::cache::Cache::insert",
            "core::ops::function::FnOnce::call_once",
            "config::parses_config::{{closure}}",
            "leakcheck::__private::run_test",
            "config::parses_config",
            "test::__rust_begin_short_backtrace",
            "std::thread::Builder::spawn_unchecked_",
        ]);
        assert_eq!(
            names,
            [
                "my_crate::cache::Cache::insert",
                "config::parses_config::{{closure}}"
            ]
        );
    }

    #[test]
    fn std_between_the_user_s_frames_is_folded_away() {
        // A leak in a `Display` that formats a panic message, inside `catch_unwind`.
        let names = shown(&[
            "leakcheck::track::record",
            "__rustc::__rust_alloc",
            "alloc::raw_vec::RawVecInner<A>::finish_grow",
            "<my_tests::Shown as core::fmt::Display>::fmt",
            "core::fmt::write",
            "std::panicking::begin_panic_handler::{{closure}}",
            "std::sys::backtrace::__rust_end_short_backtrace",
            "__rustc::rust_begin_unwind",
            "core::panicking::panic_fmt",
            "my_tests::panics::{{closure}}::{{closure}}",
            "std::panicking::catch_unwind::do_call",
            "__rust_try",
            "std::panicking::catch_unwind",
            "std::panic::catch_unwind",
            "my_tests::panics::{{closure}}",
            "leakcheck::__private::run_test",
        ]);
        assert_eq!(
            names,
            [
                "<my_tests::Shown as core::fmt::Display>::fmt",
                "my_tests::panics::{{closure}}::{{closure}}",
                "my_tests::panics::{{closure}}",
            ]
        );
        // Only std on the stack: what there is stays.
        assert_eq!(
            shown(&[
                "__rustc::__rust_alloc",
                "alloc::vec::Vec<T>::push",
                "std::io::stdio::print_to_buffer_if_capture_used",
            ]),
            [
                "alloc::vec::Vec<T>::push",
                "std::io::stdio::print_to_buffer_if_capture_used"
            ]
        );
    }

    fn at(function: &str, file: &str) -> Frame {
        Frame {
            function: Some(function.to_owned()),
            file: Some(file.into()),
            line: Some(1),
            column: Some(1),
            address: 0,
        }
    }

    #[test]
    fn short_inlined_names_are_classified_by_file() {
        let registry = "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f";
        assert_eq!(
            owner(&at(
                "walk_slow",
                concat!(env!("CARGO_MANIFEST_DIR"), "/src/raw/stack.rs")
            )),
            Owner::Machinery
        );
        assert_eq!(
            owner(&at(
                "resolve",
                concat!(env!("CARGO_MANIFEST_DIR"), "/src/symbols.rs")
            )),
            Owner::Machinery
        );
        assert_eq!(
            owner(&at("push", "/rustc/abc/library/alloc/src/vec/mod.rs")),
            Owner::Std
        );
        assert_eq!(owner(&at("helper_fn", "app/src/lib.rs")), Owner::User);
        assert_eq!(
            owner(&at("run_test", "/rustc/abc/library/test/src/lib.rs")),
            Owner::Runner
        );
        assert_eq!(
            owner(&at("backtrace_parser", "app/backtrace-tools/x.rs")),
            Owner::User,
            "not a registry crate"
        );
        let lazy = [
            at("push", "/rustc/abc/library/alloc/src/vec/mod.rs"),
            at(
                "initialize",
                "/rustc/abc/library/std/src/sys/thread_local/native/lazy.rs",
            ),
        ];
        assert_eq!(excuse(&lazy), Some(Excuse::OneTimeInit));
        let cell = [at(
            "get_or_init",
            &format!("{registry}/once_cell-1.21.4/src/lib.rs"),
        )];
        assert_eq!(excuse(&cell), Some(Excuse::OneTimeInit));
        let destroy = [at(
            "destroy",
            "/rustc/abc/library/std/src/sys/thread_local/native/lazy.rs",
        )];
        assert_eq!(excuse(&destroy), None, "a leak in a destructor is a leak");
    }

    #[test]
    fn excuses_capture_and_lazy_init_only() {
        let capture = [
            frame("alloc::raw_vec::finish_grow"),
            frame("std::io::stdio::print_to_buffer_if_capture_used"),
        ];
        assert_eq!(excuse(&capture), Some(Excuse::Stdio));
        let lazy = [
            frame("alloc::vec::Vec<T>::push"),
            frame("std::sync::once_lock::OnceLock<T>::initialize"),
        ];
        assert_eq!(excuse(&lazy), Some(Excuse::OneTimeInit));
        let user = [frame("alloc::vec::Vec<T>::push"), frame("my_crate::f")];
        assert_eq!(excuse(&user), None);
        let panic_backtrace = [
            frame("<gimli::read::abbrev::Abbreviations>::insert"),
            frame("std::backtrace_rs::symbolize::gimli::Cache::with_global"),
            frame("std::panicking::default_hook"),
            frame("my_crate::tests::panics"),
        ];
        assert_eq!(excuse(&panic_backtrace), Some(Excuse::SymbolizerCache));
    }

    #[test]
    fn excuses_the_panic_hooks_writing_into_the_capture_but_not_user_code_it_calls() {
        let caught_panic = [
            frame("leakcheck::track::record"),
            frame("alloc::raw_vec::RawVecInner<A>::finish_grow"),
            frame("alloc::vec::Vec<T,A>::extend_from_slice"),
            frame("<alloc::vec::Vec<u8,A> as std::io::Write>::write_all"),
            frame("core::fmt::write"),
            frame("std::panicking::default_hook::{{closure}}"),
            frame("std::panicking::default_hook"),
            frame("std::panicking::rust_panic_with_hook"),
            frame("core::panicking::panic_fmt"),
            frame("my_crate::tests::catches"),
        ];
        assert_eq!(excuse(&caught_panic), Some(Excuse::Stdio));
        let payload_display = [
            frame("alloc::vec::Vec<T>::push"),
            frame("<my_crate::Payload as core::fmt::Display>::fmt"),
            frame("core::fmt::write"),
            frame("std::panicking::default_hook::{{closure}}"),
            frame("std::panicking::default_hook"),
        ];
        assert_eq!(excuse(&payload_display), None);
    }

    #[test]
    fn excuses_std_s_table_of_threads() {
        let node_split = [
            frame("alloc::alloc::alloc"),
            frame("alloc::collections::btree::node::InternalNode<K,V>::new"),
            frame("alloc::collections::btree::map::BTreeMap<K,V,A>::insert"),
            frame("std::sys::pal::unix::stack_overflow::thread_info::set_current_info"),
            frame("std::sys::pal::unix::thread::Thread::new::thread_start"),
        ];
        assert_eq!(excuse(&node_split), Some(Excuse::ThreadTable));
    }
}
