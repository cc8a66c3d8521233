//! Statics that the root scan must not read: the symbolizers' caches, and the cached DWARF
//! walker's gimli context (`raw::stack::scratch_statics`), which fills up the same way.
//!
//! The `backtrace` crate (leakcheck's symbolizer) and std's copy of it keep parsed debug info
//! in a static, `MAPPINGS_CACHE`, whose storage is an inline array of `MaybeUninit` slots.
//! Entries are moved in and out bitwise, so the slots are full of leftovers: words copied from
//! the stack of whatever thread symbolized, and addresses of blocks freed since. Read as roots,
//! those leftovers made real leaks look "still reachable" (the accuracy corpus's `definite::`
//! group under `cargo test --test-threads=1`: a lost `Rc` cycle's payload in 8-10 runs of 10,
//! always through a word inside `MAPPINGS_CACHE`). What only such a cache keeps alive was made
//! by the symbolizer itself (std's, when a panic prints a backtrace inside a check): without
//! the cache as a root those blocks look lost, and their stacks excuse them instead
//! (`symbolize::Excuse::SymbolizerCache`).
//!
//! They are found by name in each loaded object's symbol table (`.symtab`), read from its file
//! once per process. A stripped object has no such table; its caches stay roots.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::OnceLock;

/// [start, end) of every static the scan must not read: the symbolizer caches in the objects
/// loaded when first asked, leakcheck's own unwinder scratch (the cached DWARF walker's gimli
/// context, which holds leftovers of the stacks it unwound in the same way), and the C
/// library's data, where glibc's `malloc` keeps its main arena.
pub(crate) fn excluded_statics() -> &'static [(usize, usize)] {
    static EXCLUDED: OnceLock<Vec<(usize, usize)>> = OnceLock::new();
    EXCLUDED.get_or_init(|| {
        let objects = crate::raw::scan::loaded_object_files();
        let mut ranges = crate::raw::stack::scratch_statics();
        for object in &objects {
            ranges.extend(
                find_statics(&object.path, is_symbolizer_cache)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(value, size)| {
                        let start = object.bias.wrapping_add(value as usize);
                        (start, start.saturating_add(size as usize))
                    }),
            );
            if is_c_library(&object.path) {
                ranges.extend(&object.writable);
            }
        }
        ranges
    })
}

/// glibc's `libc.so.6`. Its data holds `malloc`'s main arena, whose `last_remainder` and bins
/// keep addresses of chunks that have since been merged into, or carved into, live blocks:
/// read as roots they kept a lost list's nodes "reachable" (every run, in one build of
/// `leakcheck/tests/reachability.rs` under nextest). The Rust blocks a C library's statics
/// keep on purpose are rare (an `on_exit` argument); the arena's stale words are routine.
fn is_c_library(path: &std::path::Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with("libc.so"))
}

/// `backtrace::symbolize::gimli::Cache::with_global::MAPPINGS_CACHE` and std's
/// `std::backtrace_rs::...::MAPPINGS_CACHE`, in legacy (`14MAPPINGS_CACHE`) or v0 mangling.
fn is_symbolizer_cache(name: &[u8]) -> bool {
    contains(name, b"MAPPINGS_CACHE") && contains(name, b"gimli")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

const SHT_SYMTAB: u32 = 2;
const STT_OBJECT: u8 = 1;
const SECTION_HEADER: usize = 64;
const SYMBOL: usize = 24;

/// (value, size) of the data symbols in `path`'s `.symtab` whose names satisfy `wanted`;
/// `None` when the file is not a little-endian 64-bit ELF file or cannot be read.
fn find_statics(path: &std::path::Path, wanted: fn(&[u8]) -> bool) -> Option<Vec<(u64, u64)>> {
    let mut file = File::open(path).ok()?;
    let mut header = [0u8; 64];
    file.read_exact(&mut header).ok()?;
    // \x7fELF, 64-bit, little-endian.
    if header[..4] != *b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return None;
    }
    let section_headers = u64_at(&header, 0x28)?;
    let entry_size = u16_at(&header, 0x3a)? as usize;
    let count = u16_at(&header, 0x3c)? as usize;
    if entry_size != SECTION_HEADER || count == 0 {
        return None;
    }
    let sections = read_at(&mut file, section_headers, count * SECTION_HEADER)?;
    let section = |i: usize| sections.get(i * SECTION_HEADER..(i + 1) * SECTION_HEADER);
    let mut found = Vec::new();
    for i in 0..count {
        let Some(symtab) = section(i) else { break };
        if u32_at(symtab, 4)? != SHT_SYMTAB {
            continue;
        }
        let strtab = section(u32_at(symtab, 0x28)? as usize)?;
        let names = read_at(
            &mut file,
            u64_at(strtab, 0x18)?,
            u64_at(strtab, 0x20)? as usize,
        )?;
        let symbols = read_at(
            &mut file,
            u64_at(symtab, 0x18)?,
            u64_at(symtab, 0x20)? as usize,
        )?;
        for symbol in symbols.chunks_exact(SYMBOL) {
            if symbol[4] & 0xf != STT_OBJECT {
                continue;
            }
            let name_start = u32_at(symbol, 0)? as usize;
            let Some(rest) = names.get(name_start..) else {
                continue;
            };
            let name = &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())];
            if wanted(name) {
                found.push((u64_at(symbol, 8)?, u64_at(symbol, 16)?));
            }
        }
    }
    Some(found)
}

/// `len` bytes of `file` from `offset`; `None` if they are not all there. Tables larger than
/// 1 GiB are refused rather than read.
fn read_at(file: &mut File, offset: u64, len: usize) -> Option<Vec<u8>> {
    if len > 1 << 30 {
        return None;
    }
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut bytes = vec![0u8; len];
    file.read_exact(&mut bytes).ok()?;
    Some(bytes)
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    static SOME_STATIC_FOR_THE_TEST: std::sync::atomic::AtomicUsize =
        std::sync::atomic::AtomicUsize::new(7);

    #[test]
    fn finds_a_named_static_in_this_test_binary() {
        // Written, so the compiler keeps it as a symbol.
        SOME_STATIC_FOR_THE_TEST.fetch_add(0, std::sync::atomic::Ordering::Relaxed);
        std::hint::black_box(&SOME_STATIC_FOR_THE_TEST);
        let exe = std::env::current_exe().unwrap();
        let found = find_statics(&exe, |name| contains(name, b"SOME_STATIC_FOR_THE_TEST"))
            .expect("this test binary is a 64-bit little-endian ELF file");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].1, 8, "an AtomicUsize");
        assert_eq!(
            SOME_STATIC_FOR_THE_TEST.load(std::sync::atomic::Ordering::Relaxed),
            7
        );
    }

    #[test]
    fn not_an_elf_file() {
        let dir = std::env::temp_dir().join("leakcheck-noise-test");
        std::fs::write(&dir, b"not an ELF file at all, just text").unwrap();
        assert_eq!(find_statics(&dir, |_| true), None);
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn the_symbolizer_cache_of_the_backtrace_crate_is_found_once_it_exists() {
        // Resolve one address, so `backtrace`'s cache is linked in and used.
        backtrace::resolve(
            finds_a_named_static_in_this_test_binary as *mut core::ffi::c_void,
            |_| {},
        );
        let caches = excluded_statics();
        assert!(caches.len() >= 2, "no MAPPINGS_CACHE found: {caches:x?}");
        assert!(caches.iter().all(|&(s, e)| s < e));
    }
}
