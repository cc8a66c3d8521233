//! Suppressions: known leaks, by pattern, in LeakSanitizer's syntax.
//!
//! A file of lines `leak:<pattern>`, `#` comments and blank lines, found through
//! `LEAKCHECK_SUPPRESSIONS=<path>` or as `leakcheck.supp` at the workspace root. A pattern
//! matches a leak when it matches the function name, module path or source file of any frame
//! of its stack, the way LeakSanitizer matches: `*` is any run of characters, `^` and `$`
//! anchor the start and end, and an unanchored pattern may match anywhere in the name.
#![forbid(unsafe_code)]

use crate::report::Frame;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One suppression pattern and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) pattern: String,
    /// `path:line`, or `#[leakcheck(ignore)]`.
    pub(crate) origin: String,
}

/// A suppression file that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SuppressionError(String);

impl fmt::Display for SuppressionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The rules of the process's suppression file, read once.
pub(crate) fn file_rules() -> Result<&'static [Rule], SuppressionError> {
    static RULES: OnceLock<Result<Vec<Rule>, SuppressionError>> = OnceLock::new();
    RULES.get_or_init(load).as_deref().map_err(Clone::clone)
}

fn load() -> Result<Vec<Rule>, SuppressionError> {
    if let Some(path) = std::env::var_os("LEAKCHECK_SUPPRESSIONS").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        let text = std::fs::read_to_string(&path).map_err(|error| {
            SuppressionError(format!(
                "leakcheck: LEAKCHECK_SUPPRESSIONS names {}, which cannot be read ({error}); \
                 fix the path or unset the variable",
                path.display()
            ))
        })?;
        return parse(&text, &path);
    }
    match default_file() {
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text, &path),
            Err(error) => Err(SuppressionError(format!(
                "leakcheck: cannot read the suppression file {} ({error})",
                path.display()
            ))),
        },
        None => Ok(Vec::new()),
    }
}

/// `leakcheck.supp` in the package directory or any directory above it, up to the workspace
/// root (`NEXTEST_WORKSPACE_ROOT` under nextest, else the first directory holding
/// `Cargo.lock`). Both cargo and nextest give a test its package's `CARGO_MANIFEST_DIR`.
fn default_file() -> Option<PathBuf> {
    let workspace = std::env::var_os("NEXTEST_WORKSPACE_ROOT").map(PathBuf::from);
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .or_else(|| workspace.clone())
        .or_else(|| std::env::current_dir().ok())?;
    for dir in start.ancestors() {
        let candidate = dir.join("leakcheck.supp");
        if candidate.is_file() {
            return Some(candidate);
        }
        if workspace.as_deref() == Some(dir) || dir.join("Cargo.lock").is_file() {
            break;
        }
    }
    None
}

/// Parses a suppression file; `path` names it in errors.
pub(crate) fn parse(text: &str, path: &Path) -> Result<Vec<Rule>, SuppressionError> {
    let mut rules = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let origin = format!("{}:{}", path.display(), index + 1);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(pattern) = line.strip_prefix("leak:") else {
            return Err(SuppressionError(format!(
                "leakcheck: {origin}: expected `leak:<pattern>`, a `#` comment or a blank line, found `{line}`"
            )));
        };
        let pattern = pattern.trim();
        if pattern.is_empty() || pattern == "^" || pattern == "$" {
            return Err(SuppressionError(format!(
                "leakcheck: {origin}: `leak:` needs a pattern, e.g. `leak:my_crate::cache::*`"
            )));
        }
        rules.push(Rule {
            pattern: pattern.to_owned(),
            origin,
        });
    }
    Ok(rules)
}

/// The first rule that matches a frame of `frames`.
pub(crate) fn find<'r>(rules: &'r [Rule], frames: &[Frame]) -> Option<&'r Rule> {
    rules.iter().find(|rule| {
        frames
            .iter()
            .any(|frame| frame_matches(&rule.pattern, frame))
    })
}

fn frame_matches(pattern: &str, frame: &Frame) -> bool {
    let function = frame.function.as_deref();
    let module = function.map(module_of);
    let file = frame.file.as_ref().map(|f| f.to_string_lossy());
    let matched = [function, module, file.as_deref()]
        .into_iter()
        .flatten()
        .any(|name| pattern_matches(pattern, name));
    matched
}

/// `my_crate::cache::Cache::insert` is in `my_crate::cache::Cache` (for a method, the type;
/// for a function, its module): everything before the last path segment.
fn module_of(function: &str) -> &str {
    let name = function.split('<').next().unwrap_or(function);
    name.rfind("::").map_or(name, |i| &name[..i])
}

/// LeakSanitizer's matching: `*` is any run of characters; `^`/`$` anchor; otherwise the
/// pattern may match anywhere.
pub(crate) fn pattern_matches(pattern: &str, text: &str) -> bool {
    let (anchored_start, pattern) = match pattern.strip_prefix('^') {
        Some(rest) => (true, rest),
        None => (false, pattern),
    };
    let (anchored_end, pattern) = match pattern.strip_suffix('$') {
        Some(rest) => (true, rest),
        None => (false, pattern),
    };
    let mut parts = pattern.split('*').peekable();
    let mut rest = text;
    let mut first = true;
    while let Some(part) = parts.next() {
        let last = parts.peek().is_none();
        if first && anchored_start {
            let Some(after) = rest.strip_prefix(part) else {
                return false;
            };
            rest = after;
        } else if last && anchored_end {
            return rest.ends_with(part) && (rest.len() >= part.len());
        } else if !part.is_empty() {
            let Some(at) = rest.find(part) else {
                return false;
            };
            rest = &rest[at + part.len()..];
        }
        first = false;
    }
    !anchored_end || rest.is_empty() || pattern.ends_with('*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_leak_sanitizer() {
        assert!(pattern_matches("cache", "my_crate::cache::Cache::insert"));
        assert!(pattern_matches(
            "my_crate::*::insert",
            "my_crate::cache::Cache::insert"
        ));
        assert!(pattern_matches(
            "^my_crate::",
            "my_crate::cache::Cache::insert"
        ));
        assert!(!pattern_matches("^cache", "my_crate::cache::Cache::insert"));
        assert!(pattern_matches("insert$", "my_crate::cache::Cache::insert"));
        assert!(!pattern_matches("Cache$", "my_crate::cache::Cache::insert"));
        assert!(pattern_matches(
            "^my_crate::cache::Cache::insert$",
            "my_crate::cache::Cache::insert"
        ));
        assert!(pattern_matches("src/cache.rs", "src/cache.rs"));
        assert!(pattern_matches("*", "anything"));
        assert!(!pattern_matches("^a*c$", "abd"));
        assert!(pattern_matches("^a*c$", "abc"));
    }

    #[test]
    fn frames_match_on_function_module_or_file() {
        let frame = Frame {
            function: Some("my_crate::cache::Cache::insert".into()),
            file: Some("src/cache.rs".into()),
            line: Some(42),
            column: Some(9),
            address: 0,
        };
        assert!(
            frame_matches("^my_crate::cache::Cache$", &frame),
            "module path"
        );
        assert!(
            frame_matches("^my_crate::cache::Cache::insert$", &frame),
            "function"
        );
        assert!(frame_matches("^src/cache.rs$", &frame), "file");
        assert!(!frame_matches("^other", &frame));
    }

    #[test]
    fn parse_reports_file_and_line_of_bad_lines() {
        let text = "# known leaks\n\nleak:my_crate::cache\nleek:typo\n";
        let error = parse(text, Path::new("leakcheck.supp"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "leakcheck: leakcheck.supp:4: expected `leak:<pattern>`, a `#` comment or a blank line, found `leek:typo`"
        );
        let error = parse("leak:\n", Path::new("x.supp"))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("leakcheck: x.supp:1: `leak:` needs a pattern"),
            "{error}"
        );
        let rules = parse("leak:a\n  leak: b  \n", Path::new("s")).unwrap();
        assert_eq!(
            rules,
            [
                Rule {
                    pattern: "a".into(),
                    origin: "s:1".into()
                },
                Rule {
                    pattern: "b".into(),
                    origin: "s:2".into()
                }
            ]
        );
    }
}
