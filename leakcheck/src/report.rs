//! The leak report: what a check found, as data and as the text a failing test prints.
#![forbid(unsafe_code)]

use crate::raw::stack::Unwinder;
use crate::raw::table::Record;
use crate::symbolize::{self, Excuse};
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

/// Groups shown in the text report; the rest are summarised in one line.
const SHOWN_GROUPS: usize = 10;
/// Frames shown per group.
const SHOWN_FRAMES: usize = 16;

/// One resolved stack frame.
///
/// ```
/// let report = leakcheck::check(|| {});
/// for group in report.groups() {
///     for frame in group.frames() {
///         println!("{:?} at {:?}:{:?}", frame.function, frame.file, frame.line);
///     }
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Frame {
    /// Demangled function name, without the hash suffix.
    pub function: Option<String>,
    /// Source file, relative to the workspace when inside it.
    pub file: Option<PathBuf>,
    /// 1-based line.
    pub line: Option<u32>,
    /// 1-based column.
    pub column: Option<u32>,
    /// The return address this frame was resolved from.
    pub address: usize,
}

/// Leaked blocks that share one allocation stack.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeakGroup {
    bytes: usize,
    allocations: usize,
    frames: Vec<Frame>,
}

impl LeakGroup {
    /// Bytes leaked from this stack.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Blocks leaked from this stack.
    pub fn allocations(&self) -> usize {
        self.allocations
    }

    /// The allocation stack, innermost (the allocating call) first, trimmed to the user's
    /// frames; empty when stacks were off.
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }
}

/// What a check found: the blocks made during the checked code and still live at its end.
///
/// Returned by [`check`](crate::check); a failing `#[leakcheck]` test prints its `Display` form.
///
/// ```
/// #[global_allocator]
/// static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();
///
/// # fn main() {
/// let report = leakcheck::check(|| {
///     std::mem::forget(vec![0u8; 100]);
/// });
/// assert!(!report.is_clean());
/// assert_eq!(report.leaked_bytes(), 100);
/// assert_eq!(report.leaked_allocations(), 1);
/// println!("{report}");
/// # }
/// ```
#[must_use = "a Report says whether the code leaked; check `is_clean()`"]
#[derive(Clone, Debug)]
pub struct Report {
    subject: String,
    groups: Vec<LeakGroup>,
    leaked_bytes: usize,
    leaked_allocations: usize,
    excused: HashMap<Excuse, (usize, usize)>,
    stacks: Option<Unwinder>,
    untracked: u64,
}

impl Report {
    /// Whether nothing leaked.
    pub fn is_clean(&self) -> bool {
        self.leaked_allocations == 0
    }

    /// Total bytes leaked.
    pub fn leaked_bytes(&self) -> usize {
        self.leaked_bytes
    }

    /// Number of leaked blocks.
    pub fn leaked_allocations(&self) -> usize {
        self.leaked_allocations
    }

    /// Leaks grouped by allocation stack, largest first.
    pub fn groups(&self) -> &[LeakGroup] {
        &self.groups
    }

    /// Builds the report from the records a scope left live. Resolves each distinct stack once.
    pub(crate) fn build(
        subject: String,
        records: &[Record],
        stacks: Option<Unwinder>,
        untracked: u64,
    ) -> Report {
        let mut by_stack: HashMap<u32, (usize, usize)> = HashMap::new();
        for record in records {
            let entry = by_stack.entry(record.stack).or_default();
            entry.0 += record.size;
            entry.1 += 1;
        }
        // Different raw stacks that show the same frames (e.g. differing only below the test
        // body) are one group to the reader.
        let mut by_frames: HashMap<Vec<FrameKey>, (Vec<Frame>, usize, usize)> = HashMap::new();
        let mut excused: HashMap<Excuse, (usize, usize)> = HashMap::new();
        for (stack, (bytes, allocations)) in by_stack {
            let frames = if stack == 0 {
                Vec::new()
            } else {
                symbolize::resolve(stack).to_vec()
            };
            if let Some(reason) = symbolize::excuse(&frames) {
                let entry = excused.entry(reason).or_default();
                entry.0 += bytes;
                entry.1 += allocations;
                continue;
            }
            let shown = symbolize::user_frames(&frames);
            let entry = by_frames
                .entry(shown.iter().map(FrameKey::of).collect())
                .or_insert((shown, 0, 0));
            entry.1 += bytes;
            entry.2 += allocations;
        }
        let mut groups: Vec<LeakGroup> = by_frames
            .into_values()
            .map(|(frames, bytes, allocations)| LeakGroup {
                bytes,
                allocations,
                frames,
            })
            .collect();
        groups.sort_by(|a, b| {
            b.bytes
                .cmp(&a.bytes)
                .then(b.allocations.cmp(&a.allocations))
                .then_with(|| a.frames.len().cmp(&b.frames.len()))
        });
        let leaked_bytes = groups.iter().map(|g| g.bytes).sum();
        let leaked_allocations = groups.iter().map(|g| g.allocations).sum();
        Report {
            subject,
            groups,
            leaked_bytes,
            leaked_allocations,
            excused,
            stacks,
            untracked,
        }
    }
}

#[derive(PartialEq, Eq, Hash)]
struct FrameKey(Option<String>, Option<PathBuf>, Option<u32>, Option<u32>);

impl FrameKey {
    fn of(frame: &Frame) -> FrameKey {
        FrameKey(
            frame.function.clone(),
            frame.file.clone(),
            frame.line,
            frame.column,
        )
    }
}

/// `1048576` as `1,048,576`.
pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            writeln!(f, "leakcheck: no memory leaks in {}", self.subject)?;
        } else {
            writeln!(
                f,
                "leakcheck: memory leak in {}: {}, {}",
                self.subject,
                plural(self.leaked_allocations, "allocation", "allocations"),
                plural(self.leaked_bytes, "byte", "bytes"),
            )?;
            for group in self.groups.iter().take(SHOWN_GROUPS) {
                writeln!(f)?;
                write_group(f, group, self.stacks.is_some())?;
            }
            let hidden = &self.groups[self.groups.len().min(SHOWN_GROUPS)..];
            if !hidden.is_empty() {
                let bytes: usize = hidden.iter().map(|g| g.bytes).sum();
                writeln!(
                    f,
                    "\n... and {} more ({})",
                    plural(hidden.len(), "group", "groups"),
                    plural(bytes, "byte", "bytes")
                )?;
            }
            writeln!(f)?;
        }
        self.write_notes(f)?;
        if !self.is_clean() {
            writeln!(
                f,
                "SUMMARY: leakcheck: {} leaked in {}",
                plural(self.leaked_bytes, "byte", "bytes"),
                plural(self.leaked_allocations, "allocation", "allocations")
            )?;
        }
        Ok(())
    }
}

fn write_group(f: &mut fmt::Formatter<'_>, group: &LeakGroup, stacks_on: bool) -> fmt::Result {
    let what = format!(
        "{} in {}",
        plural(group.bytes, "byte", "bytes"),
        plural(group.allocations, "allocation", "allocations")
    );
    if group.frames.is_empty() {
        let why = if stacks_on {
            "no stack could be resolved"
        } else {
            "stacks are off"
        };
        return writeln!(f, "{what} ({why})");
    }
    writeln!(f, "{what}, allocated at:")?;
    for (i, frame) in group.frames.iter().take(SHOWN_FRAMES).enumerate() {
        writeln!(
            f,
            "{i:>4}: {}",
            frame.function.as_deref().unwrap_or("<unknown>")
        )?;
        if let Some(file) = &frame.file {
            write!(f, "             at {}", file.display())?;
            if let Some(line) = frame.line {
                write!(f, ":{line}")?;
                if let Some(column) = frame.column {
                    write!(f, ":{column}")?;
                }
            }
            writeln!(f)?;
        }
    }
    if group.frames.len() > SHOWN_FRAMES {
        writeln!(
            f,
            "      ... {} more frames",
            group.frames.len() - SHOWN_FRAMES
        )?;
    }
    Ok(())
}

impl Report {
    fn write_notes(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut excused: Vec<_> = self.excused.iter().collect();
        excused.sort_by_key(|(reason, _)| matches!(reason, Excuse::OneTimeInit));
        for (reason, (bytes, allocations)) in excused {
            let what = match reason {
                Excuse::Stdio => {
                    "std's stdout/stderr buffers and the test harness's output capture"
                }
                Excuse::OneTimeInit => {
                    "one-time initialisation (lazy statics, OnceLock, thread-locals)"
                }
            };
            writeln!(
                f,
                "note: not counted: {} in {} made by {what}",
                plural(*bytes, "byte", "bytes"),
                plural(*allocations, "allocation", "allocations"),
            )?;
        }
        if self.untracked > 0 {
            writeln!(
                f,
                "note: {} could not be tracked: leakcheck's bookkeeping ran out of memory",
                plural(self.untracked as usize, "allocation", "allocations")
            )?;
        }
        if self.is_clean() {
            return Ok(());
        }
        match self.stacks {
            None => writeln!(
                f,
                "note: stacks are off (LEAKCHECK_BACKTRACE=0): set LEAKCHECK_BACKTRACE=1 to see where these were allocated"
            )?,
            Some(Unwinder::FramePointers) => {}
            Some(_) => writeln!(
                f,
                "note: stacks came from the slow DWARF unwinder because frame pointers are missing; \
                 for ~30x cheaper checks add `-C force-frame-pointers=yes` to `[build] rustflags` in .cargo/config.toml"
            )?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_048), "1,048");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }

    #[test]
    fn report_without_stacks_groups_everything_together() {
        let records: Vec<Record> = (0..12)
            .map(|i| Record {
                addr: 0x1000 + i * 16,
                size: 8,
                stack: 0,
                scope: 2,
            })
            .collect();
        let report = Report::build("test `t`".into(), &records, None, 0);
        assert_eq!(report.leaked_bytes(), 96);
        assert_eq!(report.leaked_allocations(), 12);
        assert_eq!(report.groups().len(), 1);
        let text = report.to_string();
        assert!(
            text.starts_with("leakcheck: memory leak in test `t`: 12 allocations, 96 bytes\n"),
            "{text}"
        );
        assert!(
            text.contains("96 bytes in 12 allocations (stacks are off)"),
            "{text}"
        );
        assert!(text.contains("LEAKCHECK_BACKTRACE=1"), "{text}");
        assert!(
            text.ends_with("SUMMARY: leakcheck: 96 bytes leaked in 12 allocations\n"),
            "{text}"
        );
    }

    #[test]
    fn clean_report_says_so() {
        let report = Report::build("test `t`".into(), &[], Some(Unwinder::FramePointers), 0);
        assert!(report.is_clean());
        assert_eq!(
            report.to_string(),
            "leakcheck: no memory leaks in test `t`\n"
        );
    }
}
