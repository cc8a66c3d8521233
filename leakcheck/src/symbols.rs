//! Return addresses to function names, files and lines: each loaded object's ELF symbol table
//! and DWARF, read from its file with `object` (its ELF reader only) and `addr2line`.
//!
//! Which object holds an address, and at what bias, comes from the loader's list of loaded
//! objects (`dl_iterate_phdr`), taken afresh for each stack: a library loaded since the last
//! report is found. Each file is mapped once per process (`raw::map`) and its parsed tables are
//! kept for the rest of it in `imp::OBJECTS`: a report resolves a few stacks, a suite's reports
//! many, and parsing a test binary's tables is most of the first stack's cost.
//!
//! Names come from DWARF (inlined frames included, innermost first), else from the symbol table
//! (`.symtab`, else `.dynsym`: the C library has only the latter), demangled without the hash.
//! Debug info that cannot be read here degrades to the symbol table's names: compressed debug
//! sections (`--compress-debug-sections`, none by default) give no file:line; split DWARF
//! (`split-debuginfo = "unpacked"`/`"packed"`) keeps its line tables in the object, so
//! file:line remains, but its function entries are in other files, so inlined frames are not
//! expanded. Separate debug files (`.gnu_debuglink`, `/usr/lib/debug`) are not looked up.
//!
//! Called with tracking blocked on the calling thread (see `crate::symbolize`): every
//! allocation here is untracked, never a candidate of the scan, and `imp::OBJECTS` holds only
//! pointers to such memory (no inline storage with leftovers of other data that the root scan
//! could mistake for pointers to a test's blocks), so it needs no exclusion from the scan.
#![forbid(unsafe_code)]

use std::path::PathBuf;

/// One frame at an address: a function, or a function inlined into it.
#[derive(Debug)]
pub(crate) struct Symbol {
    /// Demangled, without the hash.
    pub(crate) name: Option<String>,
    pub(crate) file: Option<PathBuf>,
    pub(crate) line: Option<u32>,
    pub(crate) column: Option<u32>,
}

/// The frames at each return address of `addresses`, innermost (inlined) first; an empty list
/// where nothing is known. A return address is looked up one byte before it, in the call.
pub(crate) fn resolve(addresses: &[usize]) -> Vec<Vec<Symbol>> {
    imp::resolve(addresses)
}

/// Whether this platform has a symbolizer: elsewhere frames are raw addresses.
pub(crate) const SUPPORTED: bool = cfg!(all(target_os = "linux", target_env = "gnu"));

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    use super::*;
    use crate::raw::loader::{mapped_objects, MappedObject};
    use gimli::{EndianSlice, RunTimeEndian, Section};
    use object::{Object, ObjectSection, ObjectSymbol, ObjectSymbolTable, SymbolKind};
    use std::path::Path;
    use std::sync::Mutex;

    type Slice = EndianSlice<'static, RunTimeEndian>;

    /// The objects seen so far, by path: their parsed tables, or `None` where the file could
    /// not be read or parsed. A handful per process, so a list.
    static OBJECTS: Mutex<Vec<(PathBuf, Option<Tables>)>> = Mutex::new(Vec::new());

    /// What one object file says about its addresses.
    struct Tables {
        /// `None` without DWARF that can be read here (see the module docs).
        dwarf: Option<addr2line::Context<Slice>>,
        /// Function and data symbols, by address.
        symbols: Vec<ElfSymbol>,
    }

    struct ElfSymbol {
        address: u64,
        size: u64,
        name: &'static [u8],
    }

    pub(super) fn resolve(addresses: &[usize]) -> Vec<Vec<Symbol>> {
        let loaded = mapped_objects();
        let mut objects = OBJECTS.lock().unwrap_or_else(|e| e.into_inner());
        addresses
            .iter()
            .map(|&address| {
                let mut frames = Vec::new();
                let Some((object, probe)) = holder(&loaded, address.wrapping_sub(1)) else {
                    return frames;
                };
                let index = match objects.iter().position(|(path, _)| *path == object.path) {
                    Some(index) => index,
                    None => {
                        objects.push((object.path.clone(), Tables::load(&object.path)));
                        objects.len() - 1
                    }
                };
                if let Some(tables) = &objects[index].1 {
                    tables.frames(probe as u64, &mut frames);
                }
                frames
            })
            .collect()
    }

    /// The object whose segments hold `address`, and the address as the file states it.
    fn holder(objects: &[MappedObject], address: usize) -> Option<(&MappedObject, usize)> {
        let object = objects.iter().find(|o| {
            o.segments
                .iter()
                .any(|&(start, end)| start <= address && address < end)
        })?;
        Some((object, address.wrapping_sub(object.bias)))
    }

    impl Tables {
        fn load(path: &Path) -> Option<Tables> {
            let data = crate::raw::map::map_file(path)?;
            let file = object::File::parse(data).ok()?;
            Some(Tables {
                dwarf: dwarf(&file),
                symbols: symbols(&file),
            })
        }

        fn frames(&self, probe: u64, out: &mut Vec<Symbol>) {
            if let Some(dwarf) = &self.dwarf {
                // Split DWARF's function entries are in other files: without them, the frame
                // of the line table (the location of `probe`) and the symbol table's name.
                if let Ok(mut frames) = dwarf.find_frames(probe).skip_all_loads() {
                    while let Ok(Some(frame)) = frames.next() {
                        let name = match &frame.function {
                            Some(function) => function.raw_name().ok().map(|n| demangle(&n)),
                            None => self.symbol(probe).map(demangle_bytes),
                        };
                        let location = frame.location.as_ref();
                        out.push(Symbol {
                            name,
                            file: location.and_then(|l| l.file).map(PathBuf::from),
                            line: location.and_then(|l| l.line),
                            column: location.and_then(|l| l.column),
                        });
                    }
                }
            }
            if out.is_empty() {
                if let Some(name) = self.symbol(probe) {
                    out.push(Symbol {
                        name: Some(demangle_bytes(name)),
                        file: None,
                        line: None,
                        column: None,
                    });
                }
            }
        }

        /// The name of the symbol whose extent holds `probe` (its end included: a call as
        /// a function's last instruction returns just past it).
        fn symbol(&self, probe: u64) -> Option<&'static [u8]> {
            let i = match self.symbols.binary_search_by_key(&probe, |s| s.address) {
                Ok(i) => i,
                Err(i) => i.checked_sub(1)?,
            };
            let symbol = self.symbols.get(i)?;
            (probe <= symbol.address.saturating_add(symbol.size)).then_some(symbol.name)
        }
    }

    /// The DWARF context of `file`; `None` when it has no `.debug_info` or its debug sections
    /// are compressed.
    fn dwarf(file: &object::File<'static>) -> Option<addr2line::Context<Slice>> {
        let endian = if file.is_little_endian() {
            RunTimeEndian::Little
        } else {
            RunTimeEndian::Big
        };
        let mut compressed = false;
        let dwarf = gimli::Dwarf::load(|id| -> Result<Slice, ()> {
            let data = match file.section_by_name(id.name()) {
                Some(section) => {
                    let stored = section.compressed_file_range().map(|r| r.format);
                    if stored.is_ok_and(|f| f != object::CompressionFormat::None) {
                        compressed = true;
                    }
                    section.data().unwrap_or(&[])
                }
                None => &[],
            };
            Ok(EndianSlice::new(data, endian))
        })
        .ok()?;
        if compressed || dwarf.debug_info.reader().is_empty() {
            return None;
        }
        addr2line::Context::from_dwarf(dwarf).ok()
    }

    /// The defined function and data symbols of `.symtab`, else of `.dynsym`, by address.
    fn symbols(file: &object::File<'static>) -> Vec<ElfSymbol> {
        let table = file.symbol_table().or_else(|| file.dynamic_symbol_table());
        let mut symbols: Vec<ElfSymbol> = table
            .into_iter()
            .flat_map(|table| table.symbols())
            .filter(|s| matches!(s.kind(), SymbolKind::Text | SymbolKind::Data))
            .filter(|s| !s.is_undefined())
            .filter_map(|s| {
                Some(ElfSymbol {
                    address: s.address(),
                    size: s.size(),
                    name: s.name_bytes().ok()?,
                })
            })
            .collect();
        symbols.sort_unstable_by_key(|s| s.address);
        symbols
    }

    fn demangle(name: &str) -> String {
        // `{:#}`: without the hash suffix, as reports and suppression rules show names.
        format!("{:#}", rustc_demangle::demangle(name))
    }

    fn demangle_bytes(name: &[u8]) -> String {
        demangle(&String::from_utf8_lossy(name))
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    use super::*;

    pub(super) fn resolve(addresses: &[usize]) -> Vec<Vec<Symbol>> {
        addresses.iter().map(|_| Vec::new()).collect()
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_named_function() -> usize {
        std::hint::black_box(7)
    }

    /// The names `resolve` gives the return address `address` (one past a call).
    fn names_at(address: usize) -> Vec<String> {
        resolve(&[address])
            .remove(0)
            .into_iter()
            .filter_map(|s| s.name)
            .collect()
    }

    #[test]
    fn a_function_of_this_program_has_its_name_file_and_line() {
        // An address inside the function, as a return address from a call in it would be.
        let inside = a_named_function as fn() -> usize as usize + 2;
        let frames = resolve(&[inside]).remove(0);
        let innermost = frames.last().expect("a frame for this program's function");
        assert_eq!(
            innermost.name.as_deref(),
            Some("leakcheck::symbols::tests::a_named_function")
        );
        let file = innermost.file.as_deref().expect("debug info: a file");
        assert!(file.ends_with("src/symbols.rs"), "{file:?}");
        assert!(innermost.line.is_some_and(|l| l > 200));
    }

    #[test]
    fn the_c_library_resolves_by_its_dynamic_symbols() {
        // `malloc` is defined in libc.so.6, which is usually stripped of `.symtab`.
        let malloc = libc::malloc as *const () as usize;
        let names = names_at(malloc + 1);
        assert!(
            names.iter().any(|n| n.contains("malloc")),
            "names at malloc: {names:?}"
        );
    }

    #[test]
    fn unmapped_addresses_and_gaps_resolve_to_nothing() {
        let frames = resolve(&[0x10, 8]);
        assert!(frames.iter().all(Vec::is_empty), "{frames:?}");
    }

    /// The return addresses of the current stack, from the caller of this function out.
    #[inline(always)]
    fn capture_inlined() -> Vec<usize> {
        let mut buf = [0usize; crate::raw::intern::MAX_FRAMES];
        let n = crate::raw::stack::capture(&mut buf, 0);
        buf[..n].to_vec()
    }

    #[inline(never)]
    fn calls_an_inlined_function() -> Vec<usize> {
        std::hint::black_box(capture_inlined())
    }

    #[test]
    fn inlined_frames_come_innermost_first() {
        let stack = calls_an_inlined_function();
        let frames = resolve(&stack);
        let names = |frames: &[Symbol]| -> Vec<String> {
            frames
                .iter()
                .map(|s| s.name.clone().unwrap_or_default())
                .collect()
        };
        let at_call = frames
            .iter()
            .find(|f| names(f).iter().any(|n| n.ends_with("::capture_inlined")))
            .unwrap_or_else(|| {
                panic!("{:#?}", frames.iter().map(|f| names(f)).collect::<Vec<_>>())
            });
        let names = names(at_call);
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names[0].ends_with("::capture_inlined"), "{names:?}");
        assert!(
            names[1].ends_with("::calls_an_inlined_function"),
            "{names:?}"
        );
        assert!(at_call[0].line.is_some() && at_call[1].line.is_some());
    }
}
