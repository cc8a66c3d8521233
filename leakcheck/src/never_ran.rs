//! `#[leakcheck]` tests that nothing ran. In a doc test or a `harness = false` target, rustc
//! compiles `#[test]` functions out, and the attribute registers each one for
//! `leakcheck::harness::main()` instead; a program whose `main` never calls it would end with
//! its tests silently unrun. At exit it says so, naming them, and fails.
#![forbid(unsafe_code)]

use crate::__private::Registration;

/// The exit status of a program whose `#[leakcheck]` tests never ran: a failed Rust test
/// program's.
const NEVER_RAN_STATUS: i32 = 101;

/// At exit (see `raw::exit`): fails the process if it registered tests of its own for
/// `leakcheck::harness::main()` and never called it.
pub(crate) fn check_at_exit() {
    if crate::__private::harness_owns_process()
        || inventory::iter::<Registration>.into_iter().next().is_none()
    {
        return;
    }
    let Some(program) = program_crate() else {
        return;
    };
    let names = unrun(&program, inventory::iter::<Registration>);
    if names.is_empty() {
        return;
    }
    eprintln!("{}", message(&names));
    crate::raw::exit::exit_with(NEVER_RAN_STATUS);
}

/// The crate name of the running program, from its file name: cargo names a test target's
/// binary `NAME-HASH`, rustdoc a doc test `rust_out`.
fn program_crate() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let stem = exe.file_stem()?.to_str()?;
    Some(crate_of_binary(stem))
}

fn crate_of_binary(stem: &str) -> String {
    let name = match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name
        }
        _ => stem,
    };
    name.replace('-', "_")
}

/// The tests registered by the program's own crate (`program`), by name. Registrations a
/// library brings along are its own business: its tests run in its own targets.
fn unrun<'a>(
    program: &str,
    registrations: impl IntoIterator<Item = &'a Registration>,
) -> Vec<String> {
    let mut names: Vec<String> = registrations
        .into_iter()
        .filter(|r| r.module_path.split("::").next() == Some(program))
        .map(|r| match r.module_path.split_once("::") {
            Some((_, module)) => format!("{module}::{}", r.fn_name),
            None => r.fn_name.to_owned(),
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

fn message(names: &[String]) -> String {
    let count = names.len();
    let (tests, them) = if count == 1 {
        ("test", "it")
    } else {
        ("tests", "them")
    };
    format!(
        "leakcheck: {count} {tests} marked #[leakcheck] never ran ({}): in a doc test or a \
         `harness = false` target, rustc compiles test functions out, and only \
         `leakcheck::harness::main()` (feature `harness`) runs {them}; call it from `main`, or \
         check code in a doc test with `leakcheck::check`",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::__private::{Body, ShouldPanic};

    fn registration(module_path: &'static str, fn_name: &'static str) -> Registration {
        Registration {
            fn_name,
            module_path,
            file: "src/main.rs",
            line: 1,
            ignored: false,
            should_panic: ShouldPanic::No,
            body: Body::Run(|| Ok(())),
        }
    }

    #[test]
    fn a_binary_names_its_crate() {
        assert_eq!(crate_of_binary("rust_out"), "rust_out");
        assert_eq!(crate_of_binary("my-tests-0123456789abcdef"), "my_tests");
        assert_eq!(crate_of_binary("integration"), "integration");
        assert_eq!(crate_of_binary("tool-v2"), "tool_v2");
    }

    #[test]
    fn only_the_programs_own_tests_count() {
        let registered = [
            registration("rust_out", "t"),
            registration("rust_out::inner", "u"),
            registration("some_library::tests", "v"),
        ];
        assert_eq!(unrun("rust_out", &registered), ["inner::u", "t"]);
        assert!(unrun("other", &registered).is_empty());
    }

    #[test]
    fn the_message_names_the_tests_and_the_way_out() {
        let one = message(&["t".to_owned()]);
        assert!(
            one.starts_with("leakcheck: 1 test marked #[leakcheck] never ran (t): "),
            "{one}"
        );
        assert!(
            one.contains("leakcheck::harness::main()") && one.contains("runs it;"),
            "{one}"
        );
        let two = message(&["a".to_owned(), "b".to_owned()]);
        assert!(
            two.contains("2 tests marked #[leakcheck] never ran (a, b)"),
            "{two}"
        );
    }
}
