//! Report files and JSON: `LEAKCHECK_OUT=<dir>` (leakcheck's JSON schema and DHAT's format),
//! `LEAKCHECK_FORMAT=json`, and `Report::write_files` for sessions.
//!
//! The tests that must fail (a leak, a broken budget) run as child processes of this binary:
//! the `children` tests do their work only when `LEAKCHECK_OUTPUT_CHILD` is set.

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

mod children {
    use std::hint::black_box;

    pub(crate) fn active() -> bool {
        std::env::var_os("LEAKCHECK_OUTPUT_CHILD").is_some()
    }

    // This package's tests build at opt-level 3: `black_box` keeps the allocation.
    #[inline(never)]
    pub(crate) fn leak_123() {
        std::mem::forget(black_box(vec![9u8; 123]));
    }
    /// The line of `vec![9u8; 123]` above.
    pub(crate) const LEAK_LINE: u32 = line!() - 3;

    #[leakcheck::test]
    fn leaks_for_files() {
        if active() {
            leak_123();
        }
    }

    #[leakcheck::test]
    fn clean_for_files() {
        if active() {
            drop(black_box(vec![1u8; 64]));
        }
    }

    #[leakcheck::leakcheck(max_allocs = 0)]
    fn over_budget_for_files() {
        if active() {
            drop(black_box(vec![1u8; 64]));
        }
    }
}

/// Release builds without debug info resolve function names but no file:line.
fn has_line_tables() -> bool {
    cfg!(debug_assertions)
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "leakcheck-output-test-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Runs one test of this binary in a child process; returns (passed, stdout + stderr).
fn child(test: &str, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--test-threads=1", "--nocapture"])
        .env("LEAKCHECK_OUTPUT_CHILD", "1")
        .env("RUST_BACKTRACE", "0");
    for var in [
        "LEAKCHECK",
        "LEAKCHECK_OUT",
        "LEAKCHECK_FORMAT",
        "LEAKCHECK_AT_EXIT",
        "NEXTEST_EXECUTION_MODE",
    ] {
        cmd.env_remove(var);
    }
    for (key, value) in env {
        cmd.env(key, value);
    }
    let output = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_leaking_test_writes_its_report_as_json_and_dhat() {
    let dir = scratch_dir("leak");
    let (passed, output) = child(
        "children::leaks_for_files",
        &[("LEAKCHECK_OUT", dir.to_str().unwrap())],
    );
    assert!(!passed, "{output}");
    assert!(
        output.contains("memory leak in test `children::leaks_for_files`"),
        "{output}"
    );
    assert_eq!(
        files_in(&dir),
        [
            "children__leaks_for_files.dhat.json",
            "children__leaks_for_files.json"
        ],
        "{output}"
    );

    let json = read_json(&dir.join("children__leaks_for_files.json"));
    assert_eq!(json["schema_version"], leakcheck::JSON_SCHEMA_VERSION);
    assert_eq!(json["tool"], "leakcheck");
    assert_eq!(json["test"], "children::leaks_for_files");
    assert_eq!(json["subject"], "test `children::leaks_for_files`");
    assert_eq!(json["verdict"], "fail");
    assert_eq!(json["reasons"], serde_json::json!(["leak"]));
    assert_eq!(json["totals"]["leaked_bytes"], 123);
    assert_eq!(json["totals"]["leaked_allocations"], 1);
    let group = &json["groups"][0];
    assert_eq!(group["kind"], "definitely_lost");
    assert_eq!(group["bytes"], 123);
    assert_eq!(group["allocations"], 1);
    let frame = &group["frames"][0];
    assert!(names_leak_123(&frame["function"]), "{json:#}");
    if has_line_tables() {
        assert!(
            frame["file"].as_str().unwrap().ends_with("tests/output.rs"),
            "{json:#}"
        );
        assert_eq!(frame["line"], children::LEAK_LINE, "{json:#}");
    }
    assert!(frame["address"].as_str().unwrap().starts_with("0x"));
    // By name, or by file where release line tables give the short name only.
    assert!(
        group["suppression"] == "leak:^output::children::leak_123$"
            || group["suppression"] == "leak:tests/output.rs",
        "{json:#}"
    );

    let dhat = read_json(&dir.join("children__leaks_for_files.dhat.json"));
    assert_eq!(dhat["dhatFileVersion"], 2);
    assert_eq!(dhat["mode"], "rust-heap");
    assert_eq!(dhat["verb"], "Allocated");
    assert_eq!(dhat["bklt"], true);
    assert_eq!(dhat["bkacc"], false);
    assert_eq!(dhat["tu"], "µs");
    assert_eq!(dhat["Mtu"], "s");
    assert!(dhat["pid"].as_u64().unwrap() > 0);
    assert!(
        dhat["cmd"].as_str().unwrap().contains("output-"),
        "{dhat:#}"
    );
    assert!(
        dhat["te"].as_u64() > Some(0) && dhat["tg"].is_u64(),
        "{dhat:#}"
    );
    let ftbl = dhat["ftbl"].as_array().unwrap();
    assert_eq!(ftbl[0], "[root]");
    let pps = dhat["pps"].as_array().unwrap();
    let leak = pps
        .iter()
        .find(|pp| pp["eb"].as_u64() > Some(0))
        .expect("a program point with bytes at t-end");
    assert_eq!(leak["eb"], 123);
    assert_eq!(leak["ebk"], 1);
    assert_eq!(leak["tb"], 123);
    assert_eq!(leak["tl"], 0);
    for field in ["tbk", "mb", "mbk", "gb", "gbk"] {
        assert!(leak[field].is_u64(), "{field}: {dhat:#}");
    }
    // The leaking site, found through the frame table as a viewer finds it.
    let first = leak["fs"][0].as_u64().unwrap() as usize;
    let text = ftbl[first].as_str().unwrap();
    assert!(text.starts_with("0x"), "{text}");
    assert!(
        text.contains(": output::children::leak_123 (") || text.contains(": leak_123 ("),
        "{text}"
    );
    if has_line_tables() {
        assert!(
            text.contains(&format!("tests/output.rs:{}:", children::LEAK_LINE)),
            "{text}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_clean_test_writes_nothing() {
    let dir = scratch_dir("clean");
    let (passed, output) = child(
        "children::clean_for_files",
        &[("LEAKCHECK_OUT", dir.to_str().unwrap())],
    );
    assert!(passed, "{output}");
    assert_eq!(files_in(&dir), Vec::<String>::new(), "{output}");
}

#[test]
fn a_broken_budget_writes_files_too() {
    let dir = scratch_dir("budget");
    let (passed, output) = child(
        "children::over_budget_for_files",
        &[("LEAKCHECK_OUT", dir.to_str().unwrap())],
    );
    assert!(!passed, "{output}");
    let json = read_json(&dir.join("children__over_budget_for_files.json"));
    assert_eq!(json["verdict"], "fail");
    assert_eq!(json["reasons"], serde_json::json!(["budget"]));
    assert_eq!(json["budgets"][0]["budget"], "max_allocs");
    assert_eq!(json["budgets"][0]["limit"], 0);
    // The body's allocations: the one it makes, and reading the environment in `active()`.
    assert!(json["budgets"][0]["actual"].as_u64() >= Some(1), "{json:#}");
    assert_eq!(json["totals"]["leaked_bytes"], 0);
    assert!(dir
        .join("children__over_budget_for_files.dhat.json")
        .exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn json_format_prints_the_json_report_instead_of_text() {
    let (passed, output) = child(
        "children::leaks_for_files",
        &[("LEAKCHECK_FORMAT", "json"), ("LEAKCHECK", "warn")],
    );
    assert!(passed, "warn mode passes: {output}");
    assert!(!output.contains("SUMMARY: leakcheck"), "{output}");
    let line = output
        .lines()
        .find(|l| l.starts_with("{\"schema_version\":"))
        .unwrap_or_else(|| panic!("no JSON line in\n{output}"));
    let json: Value = serde_json::from_str(line).unwrap();
    assert_eq!(json["test"], "children::leaks_for_files");
    assert_eq!(json["totals"]["leaked_bytes"], 123);

    // Failing mode: the panic message is the JSON report.
    let (passed, output) = child("children::leaks_for_files", &[("LEAKCHECK_FORMAT", "json")]);
    assert!(!passed, "{output}");
    assert!(output.contains("{\"schema_version\":1,"), "{output}");
    assert!(!output.contains("SUMMARY: leakcheck"), "{output}");
}

#[test]
fn a_bad_format_value_names_the_variable() {
    let (passed, output) = child("children::clean_for_files", &[("LEAKCHECK_FORMAT", "yaml")]);
    assert!(!passed, "{output}");
    assert!(
        output.contains("leakcheck: LEAKCHECK_FORMAT=\"yaml\" is not a valid setting"),
        "{output}"
    );
    assert!(
        output.contains("`text`") && output.contains("`json`"),
        "{output}"
    );
}

#[test]
fn a_session_report_writes_the_same_pair() {
    let session = leakcheck::Session::start();
    children::leak_123();
    let report = session.finish();
    let dir = scratch_dir("session");
    let (json_path, dhat_path) = report.write_files(&dir, "my program::run").unwrap();
    assert_eq!(json_path, dir.join("my_program__run.json"));
    assert_eq!(dhat_path, dir.join("my_program__run.dhat.json"));
    let json = read_json(&json_path);
    assert!(
        json["subject"]
            .as_str()
            .unwrap()
            .starts_with("session started at "),
        "{json:#}"
    );
    let group = json["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| names_leak_123(&g["frames"][0]["function"]))
        .unwrap_or_else(|| panic!("{json:#}"));
    assert_eq!(group["bytes"], 123);
    assert_eq!(group["kind"], "definitely_lost");
    let dhat = read_json(&dhat_path);
    let ftbl = dhat["ftbl"].as_array().unwrap();
    let found = dhat["pps"].as_array().unwrap().iter().any(|pp| {
        pp["eb"] == 123
            && ftbl[pp["fs"][0].as_u64().unwrap() as usize]
                .as_str()
                .unwrap()
                .contains("leak_123 (")
    });
    assert!(found, "{dhat:#}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The leaking helper's frame: fully named, or by its short name where release line tables
/// leave the module out.
fn names_leak_123(function: &serde_json::Value) -> bool {
    function == "output::children::leak_123" || function == "leak_123"
}
