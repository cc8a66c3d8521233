//! The function that allocated is the first frame of its report, also when the allocation is
//! its last action in an optimised build: builds `tests/frames-fixture` in debug, and in release
//! without and with frame pointers, runs its `last_action` binary and checks that each test's
//! report starts at the helper's own line (`// site: HELPER`), then the test's call
//! (`// call: TEST`).
//!
//! The allocator is inlined into such a helper; were its call to the code that takes the stack
//! the helper's last instruction, the compiler would make it a jump after popping the helper's
//! frame, and the report would start at the helper's caller.

mod support;

use std::collections::BTreeSet;
use support::{parse_libtest, Fixture, Profile, Verdict};

fn fixture() -> Fixture {
    Fixture::new("tests/frames-fixture")
}

const FILE: &str = "tests/last_action.rs";

/// Every test of the fixture's `last_action.rs`, with the helper that leaks its block.
const TESTS: &[(&str, &str)] = &[
    ("alloc_returned", "returns_alloc"),
    ("alloc_zeroed_returned", "returns_alloc_zeroed"),
    ("new_zeroed_dropped", "drops_new_zeroed"),
    ("realloc_returned", "returns_realloc"),
    ("realloc_dropped", "drops_realloc"),
    ("box_returned", "returns_box"),
    ("box_dropped", "drops_box"),
    ("zeroed_box_dropped", "drops_zeroed_box"),
    ("zeroed_vec_returned", "returns_zeroed_vec"),
    ("zeroed_vec_dropped", "drops_zeroed_vec"),
    ("zeroed_u64_vec_dropped", "drops_zeroed_u64_vec"),
    ("filled_vec_returned", "returns_filled_vec"),
    ("filled_vec_dropped", "drops_filled_vec"),
    ("format_returned", "returns_format"),
    ("format_dropped", "drops_format"),
    ("push_returned", "returns_pushed"),
    ("push_dropped", "drops_pushed"),
];

/// What the process says (once, with the first report) when stacks came from the DWARF walker.
const DWARF_NOTE: &str = "frame pointers are missing";

/// Runs the fixture built as `profile` and checks every test's verdict and first two frames.
/// `frame_pointers`: whether the build has them, so the reports must come from the
/// frame-pointer walk (no DWARF note) or from the DWARF walker (the note, once in the run).
fn check(profile: Profile, frame_pointers: bool) {
    let fixture = fixture();
    let exe = fixture.build(profile).get("last_action").to_owned();
    let run = fixture.run_test(&exe, &["--test-threads=4"], &[]);
    let parsed = parse_libtest(&run.stdout);
    let source = std::fs::read_to_string(fixture.dir().join(FILE)).expect("the fixture's source");
    let expected: BTreeSet<String> = TESTS.iter().map(|(test, _)| test.to_string()).collect();
    run.check(
        parsed.names() == expected,
        &format!(
            "{profile:?}: the fixture's tests are not the table's: ran {:?}",
            parsed.names()
        ),
    );
    run.check(
        parsed.with(Verdict::Failed) == expected,
        &format!(
            "{profile:?}: every test leaks and must fail; passed: {:?}",
            parsed.with(Verdict::Ok)
        ),
    );
    // Every test's problems, so that one failure shows them all.
    let mut problems = Vec::new();
    for (test, helper) in TESTS {
        let text = parsed.section(test);
        let site = marked_line(&source, &format!("// site: {helper}"));
        let call = marked_line(&source, &format!("// call: {test}"));
        if let Err(problem) = check_report(text, helper, &site, &call) {
            problems.push(format!(
                "`{test}`: {problem}\n---- its section ----\n{text}"
            ));
        }
    }
    run.check(
        problems.is_empty(),
        &format!("{profile:?}:\n{}", problems.join("\n")),
    );
    // The note holds for the whole process: said once, not under each of the reports.
    let notes = run.output().matches(DWARF_NOTE).count();
    let want = usize::from(!frame_pointers);
    run.check(
        notes == want,
        &format!(
            "{profile:?}: the note `{DWARF_NOTE}` shows {notes} times in the run, want {want} \
             (a frame-pointer build is walked by frame pointers; one without says so once)"
        ),
    );
}

/// Checks one test's report: one group with a stack, whose frame 0 is `helper` at `site` and
/// frame 1 is at `call` (both `FILE:LINE`).
fn check_report(text: &str, helper: &str, site: &str, call: &str) -> Result<(), String> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let groups: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].ends_with("allocated at:"))
        .collect();
    if groups.len() != 1 {
        return Err("want exactly one group with a stack".to_owned());
    }
    // `N: FUNCTION` then `at FILE:LINE:COLUMN`, for frame 0 and frame 1.
    let frames = &lines[groups[0] + 1..];
    let frame = |i: usize| (frames.get(2 * i).copied(), frames.get(2 * i + 1).copied());
    // With `debug = "line-tables-only"` frames carry short names; the helper is never
    // inlined, so its own name is there.
    let (name, at) = frame(0);
    let named =
        name.is_some_and(|l| l == format!("0: {helper}") || l.ends_with(&format!("::{helper}")));
    if !named || !at.is_some_and(|l| l.starts_with(&format!("at {site}:"))) {
        return Err(format!("the first frame must be `{helper}` at {site}"));
    }
    let (name, at) = frame(1);
    if !name.is_some_and(|l| l.starts_with("1: "))
        || !at.is_some_and(|l| l.starts_with(&format!("at {call}:")))
    {
        return Err(format!(
            "the second frame must be the test's call at {call}"
        ));
    }
    Ok(())
}

/// `FILE:LINE` of the only line of the fixture's source that ends with `marker`.
fn marked_line(source: &str, marker: &str) -> String {
    let lines: Vec<usize> = source
        .lines()
        .enumerate()
        .filter(|(_, line)| line.ends_with(marker))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "lines ending with `{marker}` in {FILE}: {lines:?}"
    );
    format!("{FILE}:{}", lines[0])
}

/// Whether the environment already asks every crate for frame pointers.
fn environment_has_frame_pointers() -> bool {
    ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS"]
        .iter()
        .any(|var| std::env::var(var).is_ok_and(|flags| flags.contains("force-frame-pointers=yes")))
}

#[test]
fn debug_reports_start_at_the_allocating_function() {
    check(Profile::Debug, environment_has_frame_pointers());
}

#[test]
fn release_reports_start_at_the_allocating_function_without_frame_pointers() {
    check(Profile::Release, environment_has_frame_pointers());
}

#[test]
fn release_reports_start_at_the_allocating_function_with_frame_pointers() {
    check(Profile::ReleaseWithFramePointers, true);
}
