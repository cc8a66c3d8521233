//! Statics that the root scan must not read: the symbolizers' caches, and the cached DWARF
//! walker's gimli context (`raw::stack::scratch_statics`), which fills up the same way.
//!
//! std's symbolizer (its copy of the `backtrace` crate), and that crate itself where the user's
//! code depends on it, keep parsed debug info in a static, `MAPPINGS_CACHE`, whose storage is
//! an inline array of `MaybeUninit` slots.
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
//! once per process. A stripped object has no such table; its caches stay roots. leakcheck's
//! own symbolizer (`crate::symbols`) needs no exclusion: its static holds only pointers to
//! memory allocated untracked, which is never a candidate.
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

/// std's `std::backtrace_rs::symbolize::gimli::Cache::with_global::MAPPINGS_CACHE`, and the
/// `backtrace` crate's `backtrace::symbolize::gimli::...::MAPPINGS_CACHE` when the user's
/// code uses it, in legacy (`14MAPPINGS_CACHE`) or v0 mangling.
fn is_symbolizer_cache(name: &[u8]) -> bool {
    contains(name, b"MAPPINGS_CACHE") && contains(name, b"gimli")
}

/// Whether `needle` (ASCII) occurs in `haystack`. Names are text: std's `str::contains`
/// compares 16 bytes at a time, where a byte-by-byte search cost 14 instructions a byte.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    match (std::str::from_utf8(haystack), std::str::from_utf8(needle)) {
        (Ok(haystack), Ok(needle)) => haystack.contains(needle),
        _ => haystack.windows(needle.len()).any(|w| w == needle),
    }
}

const SHT_SYMTAB: u32 = 2;
const STT_OBJECT: u8 = 1;
const SHF_WRITE: u64 = 1;
const SECTION_HEADER: usize = 64;
const SYMBOL: usize = 24;
/// The tables are read in pieces of this size through one buffer. A test binary's symbol and
/// string tables run to megabytes, read once per process (once per test under nextest); read
/// whole, into buffers that size, the page faults of the fresh buffers cost more than the
/// reading.
const CHUNK: usize = 64 << 10;

/// (value, size) of the data symbols in `path`'s `.symtab` whose names satisfy `wanted`;
/// `None` when the file is not a little-endian 64-bit ELF file or cannot be read. Only data
/// symbols' names are read from the string table.
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
    let mut buffer = Vec::with_capacity(CHUNK);
    for i in 0..count {
        let Some(symtab) = section(i) else { break };
        if u32_at(symtab, 4)? != SHT_SYMTAB {
            continue;
        }
        let strtab = section(u32_at(symtab, 0x28)? as usize)?;
        // (name offset, value, size) of every data symbol, in name order.
        let mut objects = Vec::new();
        let (offset, size) = (u64_at(symtab, 0x18)?, u64_at(symtab, 0x20)?);
        let piece = (CHUNK / SYMBOL * SYMBOL) as u64;
        let mut at = 0;
        while at < size {
            let len = (size - at).min(piece) as usize;
            read_into(&mut file, &mut buffer, offset + at, len)?;
            for symbol in buffer.chunks_exact(SYMBOL) {
                // A cache is written at run time, so it lies in a writable section: constants
                // and vtables, about half of the data symbols, need no name comparison.
                let writable = section(u16_at(symbol, 6)? as usize)
                    .and_then(|header| u64_at(header, 0x08))
                    .is_some_and(|flags| flags & SHF_WRITE != 0);
                if symbol[4] & 0xf == STT_OBJECT && writable {
                    let name = u32_at(symbol, 0)? as u64;
                    objects.push((name, u64_at(symbol, 8)?, u64_at(symbol, 16)?));
                }
            }
            at += len as u64;
        }
        objects.sort_unstable_by_key(|&(name, _, _)| name);
        // Each read starts at the first name not yet seen and takes every name that ends
        // inside it; a name cut off by the piece's end starts the next read.
        let (names_offset, names_size) = (u64_at(strtab, 0x18)?, u64_at(strtab, 0x20)?);
        let mut next = 0;
        while let Some(&(start, _, _)) = objects.get(next) {
            if start >= names_size {
                break;
            }
            let len = (names_size - start).min(CHUNK as u64) as usize;
            read_into(&mut file, &mut buffer, names_offset + start, len)?;
            let first = next;
            while let Some(&(name_start, value, size)) = objects.get(next) {
                let Some(rest) = buffer.get((name_start - start) as usize..) else {
                    break;
                };
                let Some(end) = rest.iter().position(|&b| b == 0) else {
                    break;
                };
                let name = &rest[..end];
                if wanted(name) {
                    found.push((value, size));
                }
                next += 1;
            }
            if next == first {
                // A name longer than a piece: no static of interest is named so.
                next += 1;
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
    let mut bytes = Vec::new();
    read_into(file, &mut bytes, offset, len)?;
    Some(bytes)
}

/// Reads `len` bytes of `file` from `offset` into `buffer` (replacing its contents, without
/// zeroing it first); `None` if they are not all there.
fn read_into(file: &mut File, buffer: &mut Vec<u8>, offset: u64, len: usize) -> Option<()> {
    file.seek(SeekFrom::Start(offset)).ok()?;
    buffer.clear();
    buffer.reserve(len);
    (&mut *file).take(len as u64).read_to_end(buffer).ok()?;
    (buffer.len() == len).then_some(())
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

    /// A minimal ELF file: a header, a symbol table of data symbols (name offset, value,
    /// whether it lies in the writable section or the read-only one), its string table, and
    /// the two (empty) data sections.
    fn elf_with(symbols: &[(u32, u64, bool)], names: &[u8]) -> Vec<u8> {
        let symtab_at = 64u64;
        let symtab_len = (symbols.len() * SYMBOL) as u64;
        let strtab_at = symtab_at + symtab_len;
        let sections_at = strtab_at + names.len() as u64;
        let mut file = vec![0u8; 64];
        file[..6].copy_from_slice(b"\x7fELF\x02\x01");
        file[0x28..0x30].copy_from_slice(&sections_at.to_le_bytes());
        file[0x3a..0x3c].copy_from_slice(&(SECTION_HEADER as u16).to_le_bytes());
        file[0x3c..0x3e].copy_from_slice(&5u16.to_le_bytes());
        for &(name, value, writable) in symbols {
            let mut symbol = [0u8; SYMBOL];
            symbol[..4].copy_from_slice(&name.to_le_bytes());
            symbol[4] = STT_OBJECT;
            symbol[6..8].copy_from_slice(&(if writable { 3u16 } else { 4 }).to_le_bytes());
            symbol[8..16].copy_from_slice(&value.to_le_bytes());
            symbol[16..24].copy_from_slice(&8u64.to_le_bytes());
            file.extend_from_slice(&symbol);
        }
        file.extend_from_slice(names);
        let mut section = |kind: u32, flags: u64, link: u32, at: u64, len: u64| {
            let mut header = [0u8; SECTION_HEADER];
            header[4..8].copy_from_slice(&kind.to_le_bytes());
            header[0x08..0x10].copy_from_slice(&flags.to_le_bytes());
            header[0x18..0x20].copy_from_slice(&at.to_le_bytes());
            header[0x20..0x28].copy_from_slice(&len.to_le_bytes());
            header[0x28..0x2c].copy_from_slice(&link.to_le_bytes());
            file.extend_from_slice(&header);
        };
        section(0, 0, 0, 0, 0);
        section(SHT_SYMTAB, 0, 2, symtab_at, symtab_len);
        section(3, 0, 0, strtab_at, names.len() as u64);
        // .bss (NOBITS, writable and allocated) and .rodata (PROGBITS, allocated).
        section(8, SHF_WRITE | 2, 0, 0, 0);
        section(1, 2, 0, 0, 0);
        file
    }

    #[test]
    fn names_are_read_in_pieces_and_a_name_cut_by_a_piece_is_read_whole() {
        let mut names = vec![0u8];
        let mut symbols = Vec::new();
        let mut add = |names: &mut Vec<u8>, name: &[u8], value: u64| {
            symbols.push((names.len() as u32, value, true));
            names.extend_from_slice(name);
            names.push(0);
        };
        add(&mut names, b"first::gimli::MAPPINGS_CACHE", 1);
        while names.len() < CHUNK - 10 {
            add(
                &mut names,
                b"_ZN4core3ptr13drop_in_place17h0123456789abcdefE",
                100,
            );
        }
        add(&mut names, b"cut::gimli::MAPPINGS_CACHE::h1", 2);
        // A name longer than a piece is passed over, and the names after it still read.
        let long = vec![b'x'; CHUNK + 5];
        add(&mut names, &long, 100);
        add(&mut names, b"std::gimli::MAPPINGS_CACHE", 3);
        add(&mut names, b"no::MAPPINGS_CACHE", 100);
        // A linker may point a symbol into the middle of another's name (tail merging).
        let merged = names.len() as u32;
        names.extend_from_slice(b"prefix_gimli::MAPPINGS_CACHE\0");
        symbols.push((merged + 7, 4, true));
        // A constant in a read-only section cannot be a cache, whatever its name.
        symbols.push((merged + 7, 5, false));
        let path = std::env::temp_dir().join(format!("leakcheck-noise-elf-{}", std::process::id()));
        std::fs::write(&path, elf_with(&symbols, &names)).unwrap();
        let found = find_statics(&path, is_symbolizer_cache);
        let _ = std::fs::remove_file(&path);
        let mut values: Vec<u64> = found.unwrap().iter().map(|&(value, _)| value).collect();
        values.sort_unstable();
        assert_eq!(values, [1, 2, 3, 4]);
    }

    #[test]
    fn not_an_elf_file() {
        let dir = std::env::temp_dir().join("leakcheck-noise-test");
        std::fs::write(&dir, b"not an ELF file at all, just text").unwrap();
        assert_eq!(find_statics(&dir, |_| true), None);
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn the_symbolizer_cache_of_std_is_found_once_it_exists() {
        // Symbolize one backtrace with std's symbolizer, so its cache is linked in and used.
        let shown = std::backtrace::Backtrace::force_capture().to_string();
        assert!(!shown.is_empty());
        let exe = std::env::current_exe().unwrap();
        let caches = find_statics(&exe, is_symbolizer_cache).expect("an ELF file");
        assert_eq!(caches.len(), 1, "std's MAPPINGS_CACHE: {caches:x?}");
        assert!(caches.iter().all(|&(_, size)| size > 0));
        let excluded = excluded_statics();
        assert!(excluded.iter().all(|&(s, e)| s < e));
    }
}
