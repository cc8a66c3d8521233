//! Settings read from the environment, strictly: a value that is not one of the allowed ones
//! is an error naming the variable, never a silent default.
#![forbid(unsafe_code)]

use std::fmt;

/// What a checked test does with a leak (`LEAKCHECK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Fail the test (default).
    Fail,
    /// Print the report, pass the test.
    Warn,
    /// Do not track at all.
    Off,
}

/// The environment's settings for one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Config {
    pub(crate) mode: Mode,
    /// Capture allocation stacks (`LEAKCHECK_BACKTRACE`).
    pub(crate) backtrace: bool,
    /// The check owns every thread but the main one. Never read from the environment: only a
    /// test attribute turns it on, where `__private::test_owns_process` says the test runs
    /// alone ([`alone_in_process`] or the harness).
    pub(crate) process_per_test: bool,
    /// How reports are printed (`LEAKCHECK_FORMAT`).
    pub(crate) format: Format,
    /// Track the whole program from before `main` and report at exit (`LEAKCHECK_AT_EXIT`).
    pub(crate) at_exit: bool,
    /// Judge leftover blocks by the reachability scan where the platform has one
    /// (`LEAKCHECK_SCAN`); without it, a warm-up run stands in for it.
    pub(crate) scan: bool,
    /// Check every test the test runner starts, annotated or not (`LEAKCHECK_ALL_TESTS`).
    pub(crate) all_tests: bool,
}

/// How reports are printed on stderr (`LEAKCHECK_FORMAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// The text report (default).
    Text,
    /// The JSON report, one line (the schema of `Report::to_json`).
    Json,
}

/// The directory for report files (`LEAKCHECK_OUT`); unset or empty: none. Any path is
/// accepted; it is created when the first file is written.
pub(crate) fn out_dir() -> Option<std::path::PathBuf> {
    out_dir_from(std::env::var_os("LEAKCHECK_OUT"))
}

fn out_dir_from(value: Option<std::ffi::OsString>) -> Option<std::path::PathBuf> {
    value.filter(|v| !v.is_empty()).map(Into::into)
}

/// Whether a checked test has the process to itself: cargo-nextest's process per test, or
/// libtest running one test at a time. Then the test owns every thread but the main one: a pool
/// or an executor that a constructor or an earlier test started runs only its work. Read once:
/// neither changes while the process runs.
///
/// Sound signals only. Seeing two threads (libtest's main thread and this one) when a body
/// starts is not one: under parallel `cargo test` it only means the other slots are empty for
/// a moment, and libtest starts the next test in one of them.
pub(crate) fn alone_in_process() -> bool {
    static ALONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ALONE.get_or_init(|| {
        alone_from(
            |name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()),
            std::env::args_os().map(|arg| arg.to_string_lossy().into_owned()),
            || std::thread::available_parallelism().map_or(1, usize::from),
        )
    })
}

fn alone_from(
    lookup: impl Fn(&str) -> Option<String>,
    args: impl Iterator<Item = String>,
    cpus: impl FnOnce() -> usize,
) -> bool {
    lookup("NEXTEST_EXECUTION_MODE").as_deref() == Some("process-per-test")
        || test_threads(args, lookup("RUST_TEST_THREADS"), cpus) == 1
}

/// libtest's thread count, as its `get_concurrency` decides: `--test-threads N` (or
/// `--test-threads=N`) in the arguments after the program's name and before `--`, else
/// `RUST_TEST_THREADS`, else the CPUs the process may use. What libtest would reject (0, not a
/// number) is 0: libtest stops before running a test then.
fn test_threads(
    mut args: impl Iterator<Item = String>,
    variable: Option<String>,
    cpus: impl FnOnce() -> usize,
) -> usize {
    args.next();
    let mut from_args = None;
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--test-threads" {
            from_args = args.next();
        } else if let Some(value) = arg.strip_prefix("--test-threads=") {
            from_args = Some(value.to_owned());
        }
    }
    match from_args.or(variable) {
        Some(value) => value.parse().unwrap_or(0),
        None => cpus(),
    }
}

/// The variable that turns on the check of every test (`LEAKCHECK_ALL_TESTS`).
pub(crate) const ALL_TESTS: &str = "LEAKCHECK_ALL_TESTS";

/// An environment variable with a value leakcheck does not accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConfigError {
    variable: &'static str,
    value: String,
    allowed: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "leakcheck: {}={:?} is not a valid setting; allowed values: {}. \
             Fix or unset the variable to run the leak check.",
            self.variable, self.value, self.allowed
        )
    }
}

impl std::error::Error for ConfigError {}

/// The value of `variable` among `choices`; unset or empty means `default`, anything else is
/// an error that names the variable and the `allowed` values.
fn choose<T: Copy>(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: T,
    choices: &[(&str, T)],
    allowed: &'static str,
) -> Result<T, ConfigError> {
    let Some(value) = lookup(variable).filter(|v| !v.is_empty()) else {
        return Ok(default);
    };
    choices
        .iter()
        .find(|(name, _)| *name == value)
        .map(|&(_, choice)| choice)
        .ok_or(ConfigError {
            variable,
            value,
            allowed,
        })
}

impl Config {
    pub(crate) fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    pub(crate) fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mode = choose(
            &lookup,
            "LEAKCHECK",
            Mode::Fail,
            &[
                ("fail", Mode::Fail),
                ("warn", Mode::Warn),
                ("off", Mode::Off),
            ],
            "`fail` (the default), `warn`, `off`",
        )?;
        let backtrace = choose(
            &lookup,
            "LEAKCHECK_BACKTRACE",
            true,
            &[("1", true), ("0", false)],
            "`1` (stacks on, the default), `0` (stacks off)",
        )?;
        let format = choose(
            &lookup,
            "LEAKCHECK_FORMAT",
            Format::Text,
            &[("text", Format::Text), ("json", Format::Json)],
            "`text` (the default), `json`",
        )?;
        let at_exit = choose(
            &lookup,
            "LEAKCHECK_AT_EXIT",
            false,
            &[("0", false), ("1", true)],
            "`0` (the default), `1` (report what the program leaks at exit)",
        )?;
        let scan = choose(
            &lookup,
            "LEAKCHECK_SCAN",
            true,
            &[("1", true), ("0", false)],
            "`1` (the reachability scan, the default), \
             `0` (no scan: a warm-up run, then every leftover block counts)",
        )?;
        let all_tests = choose(
            &lookup,
            ALL_TESTS,
            false,
            &[("0", false), ("1", true)],
            "`0` (the default), `1` (check every test the test runner starts, as if each carried \
             #[leakcheck])",
        )?;
        Ok(Config {
            mode,
            backtrace,
            process_per_test: false,
            format,
            at_exit,
            scan,
            all_tests,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    fn alone(vars: &[(&str, &str)], args: &[&str], cpus: usize) -> bool {
        alone_from(
            |name| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            },
            args.iter().map(|arg| arg.to_string()),
            || cpus,
        )
    }

    #[test]
    fn alone_in_process_only_from_sound_signals() {
        let nextest = [("NEXTEST_EXECUTION_MODE", "process-per-test")];
        assert!(alone(&nextest, &["t"], 8));
        assert!(!alone(&[("NEXTEST_EXECUTION_MODE", "single")], &["t"], 8));
        assert!(alone(&[], &["t", "--ignored", "--test-threads=1"], 8));
        assert!(alone(&[], &["t", "--test-threads", "1", "filter"], 8));
        assert!(alone(
            &[("RUST_TEST_THREADS", "1")],
            &["t", "--exact", "name"],
            8
        ));
        assert!(!alone(&[("RUST_TEST_THREADS", "2")], &["t"], 1));
        // The command line wins over the variable, the variable over the CPUs, as in libtest.
        assert!(!alone(
            &[("RUST_TEST_THREADS", "1")],
            &["t", "--test-threads=2"],
            1
        ));
        assert!(alone(&[], &["t"], 1));
        assert!(!alone(&[], &["t"], 2));
        // After `--` it is a test name filter; the program's name is no option either.
        assert!(!alone(&[], &["t", "--", "--test-threads=1"], 2));
        assert!(!alone(&[], &["--test-threads=1"], 2));
        // What libtest rejects runs no test.
        assert!(!alone(&[], &["t", "--test-threads=x"], 1));
    }

    #[test]
    fn defaults_fail_with_stacks_in_threads() {
        let config = parse(&[]).unwrap();
        assert_eq!(
            config,
            Config {
                mode: Mode::Fail,
                backtrace: true,
                process_per_test: false,
                format: Format::Text,
                at_exit: false,
                scan: true,
                all_tests: false,
            }
        );
        assert_eq!(parse(&[("LEAKCHECK", "")]).unwrap().mode, Mode::Fail);
    }

    #[test]
    fn accepts_every_documented_value() {
        assert_eq!(parse(&[("LEAKCHECK", "warn")]).unwrap().mode, Mode::Warn);
        assert_eq!(parse(&[("LEAKCHECK", "off")]).unwrap().mode, Mode::Off);
        assert_eq!(parse(&[("LEAKCHECK", "fail")]).unwrap().mode, Mode::Fail);
        assert!(!parse(&[("LEAKCHECK_BACKTRACE", "0")]).unwrap().backtrace);
        assert!(parse(&[("LEAKCHECK_BACKTRACE", "1")]).unwrap().backtrace);
    }

    #[test]
    fn rejects_other_values_naming_variable_and_allowed_values() {
        let err = parse(&[("LEAKCHECK", "yes")]).unwrap_err().to_string();
        assert!(
            err.starts_with("leakcheck: LEAKCHECK=\"yes\" is not a valid setting"),
            "{err}"
        );
        assert!(
            err.contains("`fail`") && err.contains("`warn`") && err.contains("`off`"),
            "{err}"
        );
        let err = parse(&[("LEAKCHECK_BACKTRACE", "true")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("LEAKCHECK_BACKTRACE=\"true\""), "{err}");
        assert!(err.contains("`1`") && err.contains("`0`"), "{err}");
    }

    #[test]
    fn output_settings_parse_strictly() {
        assert_eq!(
            parse(&[("LEAKCHECK_FORMAT", "json")]).unwrap().format,
            Format::Json
        );
        assert_eq!(
            parse(&[("LEAKCHECK_FORMAT", "text")]).unwrap().format,
            Format::Text
        );
        assert_eq!(
            parse(&[("LEAKCHECK_FORMAT", "")]).unwrap().format,
            Format::Text
        );
        assert!(!parse(&[("LEAKCHECK_SCAN", "0")]).unwrap().scan);
        let error = parse(&[("LEAKCHECK_SCAN", "no")]).unwrap_err().to_string();
        assert!(
            error.contains("LEAKCHECK_SCAN=\"no\"") && error.contains("`0` (no scan"),
            "{error}"
        );
        assert!(parse(&[("LEAKCHECK_AT_EXIT", "1")]).unwrap().at_exit);
        assert!(!parse(&[("LEAKCHECK_AT_EXIT", "0")]).unwrap().at_exit);
        assert!(!parse(&[("LEAKCHECK_AT_EXIT", "")]).unwrap().at_exit);
        let err = parse(&[("LEAKCHECK_FORMAT", "JSON")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("LEAKCHECK_FORMAT=\"JSON\""), "{err}");
        assert!(err.contains("`text`") && err.contains("`json`"), "{err}");
        let err = parse(&[("LEAKCHECK_AT_EXIT", "yes")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("LEAKCHECK_AT_EXIT=\"yes\""), "{err}");
        assert!(err.contains("`0`") && err.contains("`1`"), "{err}");
    }

    #[test]
    fn all_tests_is_0_1_or_empty_and_nothing_else() {
        assert!(parse(&[("LEAKCHECK_ALL_TESTS", "1")]).unwrap().all_tests);
        assert!(!parse(&[("LEAKCHECK_ALL_TESTS", "0")]).unwrap().all_tests);
        assert!(!parse(&[("LEAKCHECK_ALL_TESTS", "")]).unwrap().all_tests);
        assert!(!parse(&[]).unwrap().all_tests);
        for bad in ["true", "yes", "2", " 1"] {
            let err = parse(&[("LEAKCHECK_ALL_TESTS", bad)])
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!(
                    "leakcheck: LEAKCHECK_ALL_TESTS={bad:?} is not a valid setting; allowed values: `0`"
                )),
                "{err}"
            );
            assert!(err.contains("`1` (check every test"), "{err}");
        }
    }

    #[test]
    fn out_dir_is_any_non_empty_path() {
        assert_eq!(out_dir_from(None), None);
        assert_eq!(out_dir_from(Some("".into())), None);
        assert_eq!(
            out_dir_from(Some("target/leakcheck".into())),
            Some(std::path::PathBuf::from("target/leakcheck"))
        );
    }
}
