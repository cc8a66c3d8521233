//! Read-only mappings of object files for the symbolizer (`crate::symbols`).
//!
//! A test binary with debug info runs to hundreds of megabytes, of which a report reads the
//! symbol table and the debug info of a few units: mapped, only those pages are read in;
//! read whole into a buffer, every byte would be copied for each process (each test under
//! nextest).

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// The whole of the file at `path`, mapped read-only and private, for the rest of the process:
/// the symbolizer's parsed tables borrow from it and are cached as long. `None` for an empty
/// file, one that cannot be opened (the vDSO has no file), or a failed mapping.
///
/// A file replaced on disk while mapped keeps its old contents here (the mapping holds the
/// old inode); one truncated in place would fault on access, as it would for the loader.
pub(crate) fn map_file(path: &Path) -> Option<&'static [u8]> {
    let file = File::open(path).ok()?;
    let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
    if len == 0 {
        return None;
    }
    // SAFETY: a fresh private read-only mapping of an open file descriptor; no address hint,
    // so it overlaps nothing. The descriptor may be closed afterwards (the mapping keeps the
    // file). The result is checked against MAP_FAILED before use.
    let address = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        )
    };
    if address == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: `len` bytes at `address` are mapped readable and never unmapped or written (the
    // mapping is private and read-only, and nothing here keeps it to unmap it), so the slice is
    // valid for `'static`.
    Some(unsafe { core::slice::from_raw_parts(address.cast::<u8>(), len) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_a_file_whole() {
        let path = std::env::temp_dir().join(format!("leakcheck-map-{}", std::process::id()));
        std::fs::write(&path, b"\x7fELF and more").unwrap();
        let mapped = map_file(&path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(mapped, Some(&b"\x7fELF and more"[..]));
        assert_eq!(map_file(Path::new("/nonexistent/leakcheck")), None);
    }
}
