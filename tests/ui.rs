//! The `#[leakcheck]` attribute's compile errors, one case per file in `leakcheck-macros/ui/`
//! with the expected rustc output beside it. After an intended change to a message, regenerate
//! the `.stderr` files with `TRYBUILD=overwrite cargo test --test ui` and read the diff.

#[test]
fn attribute_errors() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("leakcheck-macros/ui/*.rs");
}
