//! Turning raw stacks into frames a person reads, only for leaked blocks and only once per
//! distinct stack. Called with tracking blocked on the calling thread: the symbolizer's caches
//! are permanent allocations that must never show up as the test's leaks.
#![forbid(unsafe_code)]

use crate::raw::intern;
use crate::report::Frame;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Resolved frames of an interned stack, innermost first, inlined frames expanded.
pub(crate) fn resolve(stack: u32) -> Arc<[Frame]> {
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
    for &address in addresses {
        let before = frames.len();
        // `resolve` treats the address as a return address and looks up the call before it.
        backtrace::resolve(address as *mut core::ffi::c_void, |symbol| {
            frames.push(Frame {
                function: symbol.name().map(|n| format!("{n:#}")),
                file: symbol.filename().map(|f| shorten(f, root.as_deref())),
                line: symbol.lineno(),
                column: symbol.colno(),
                address,
            });
        });
        if frames.len() == before {
            frames.push(Frame {
                function: None,
                file: None,
                line: None,
                column: None,
                address,
            });
        }
    }
    frames
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
    /// leakcheck itself, the unwinder, the allocator shims.
    Machinery,
    /// std, core, alloc, the test runner, or no symbol at all.
    Std,
    /// The test runner and thread start-up below the test body.
    Runner,
    /// Everything else: the user's code and their dependencies.
    User,
}

pub(crate) fn owner(frame: &Frame) -> Owner {
    let Some(name) = frame.function.as_deref() else {
        return Owner::Std;
    };
    let name = name.trim_start_matches('<');
    const MACHINERY: &[&str] = &[
        "leakcheck::",
        "backtrace::",
        "__rust_alloc",
        "__rust_realloc",
        "__rust_dealloc",
        "__rdl_",
        "__rg_",
    ];
    if MACHINERY.iter().any(|p| name.starts_with(p)) {
        return Owner::Machinery;
    }
    const RUNNER: &[&str] = &[
        "test::",
        "std::thread::",
        "std::sys::thread::",
        "std::rt::",
        "start_thread",
        "clone",
        "__libc_start",
    ];
    if RUNNER.iter().any(|p| name.starts_with(p)) || name.contains("__rust_begin_short_backtrace") {
        return Owner::Runner;
    }
    const STD: &[&str] = &[
        "std::",
        "core::",
        "alloc::",
        "test::",
        "hashbrown::",
        "panic_unwind::",
        "__",
    ];
    let std_file = frame.file.as_deref().is_some_and(|f| {
        let f = f.to_string_lossy();
        f.starts_with("/rustc/") || f.contains("/library/std/") || f.contains("/library/core/")
    });
    if std_file || STD.iter().any(|p| name.starts_with(p)) || !name.contains("::") {
        return Owner::Std;
    }
    Owner::User
}

/// Why a block left live by the test is not the test's leak, judged from its stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Excuse {
    /// The test harness's output capture, or std's lazily created stdout/stderr buffers.
    Stdio,
    /// Made during one-time initialisation of a lazy static, `OnceLock`, `OnceCell` or
    /// thread-local: it belongs to the static, which outlives every test.
    OneTimeInit,
}

pub(crate) fn excuse(frames: &[Frame]) -> Option<Excuse> {
    const STDIO: &[&str] = &["std::io::stdio::"];
    const ONE_TIME_INIT: &[&str] = &[
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
        "std::sys::thread_local::",
        "lazy_static::lazy::Lazy<",
    ];
    let mut found = None;
    for frame in frames {
        let Some(name) = frame.function.as_deref() else {
            continue;
        };
        let name = name.trim_start_matches('<');
        if STDIO.iter().any(|p| name.starts_with(p)) {
            return Some(Excuse::Stdio);
        }
        if ONE_TIME_INIT.iter().any(|p| name.starts_with(p)) {
            found = Some(Excuse::OneTimeInit);
        }
    }
    found
}

/// The frames worth showing: from the first frame outside leakcheck and std (so the user's
/// call site comes first) down to the test body, without the runner below it.
pub(crate) fn user_frames(frames: &[Frame]) -> Vec<Frame> {
    let start = frames
        .iter()
        .position(|f| owner(f) == Owner::User)
        .or_else(|| frames.iter().position(|f| owner(f) != Owner::Machinery))
        .unwrap_or(frames.len());
    let rest = &frames[start..];
    let end = rest
        .iter()
        .position(|f| matches!(owner(f), Owner::Machinery | Owner::Runner))
        .or_else(|| {
            rest.iter()
                .rposition(|f| owner(f) == Owner::User)
                .map(|i| i + 1)
        })
        .unwrap_or(rest.len());
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

    #[test]
    fn trims_machinery_std_and_runner() {
        let frames: Vec<Frame> = [
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
        ]
        .into_iter()
        .map(frame)
        .collect();
        let names: Vec<_> = user_frames(&frames)
            .into_iter()
            .map(|f| f.function.unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "my_crate::cache::Cache::insert",
                "core::ops::function::FnOnce::call_once",
                "config::parses_config::{{closure}}"
            ]
        );
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
    }
}
