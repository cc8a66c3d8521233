// Anything but a function is an error on its keyword and name:
//
// error: #[leakcheck] can only be applied to a function or an inline module
//   |
//   | struct NotAFunction;
//   | ^^^^^^^^^^^^^^^^^^^
//
// (and the same for the `impl` block)

use leakcheck::leakcheck;

#[leakcheck]
struct NotAFunction;

#[leakcheck]
impl NotAFunction {}

fn main() {}
