// `crate = ...` takes a path or a string holding one; the error is on the value:
//
// error: expected the path of the leakcheck crate, e.g. `crate = ::leakcheck` or `crate = "::leakcheck"`
//   | #[leakcheck(crate = 42)]
//   |                     ^^
// error: `not a path!` is not a path; expected e.g. `crate = "::leakcheck"`
//   | #[leakcheck(crate = "not a path!")]
//   |                     ^^^^^^^^^^^^^
// error: expected `crate = path::to::leakcheck`
//   | #[leakcheck(crate)]
//   |             ^^^^^
//
// (A path that does not resolve is rustc's own error, and only in `cargo test`: trybuild builds
// without cfg(test), where the generated #[test] function is compiled out, so it has no case here.)

use leakcheck::leakcheck;

#[leakcheck(crate = 42)]
fn number() {}

#[leakcheck(crate = "not a path!")]
fn not_a_path() {}

#[leakcheck(crate)]
fn no_value() {}

fn main() {}
