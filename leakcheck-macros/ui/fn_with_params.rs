// A test takes no arguments (unless `#[rstest]` supplies them); the error is on the parameters:
//
// error: #[leakcheck] test functions cannot take arguments
//   |
//   | fn with_params(_a: u32, _b: &str) {}
//   |                ^^^^^^^^^^^^^^^^^

use leakcheck::leakcheck;

#[leakcheck]
fn with_params(_a: u32, _b: &str) {}

fn main() {}
