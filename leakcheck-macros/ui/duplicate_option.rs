// An option given twice is an error on the second one:
//
// error: duplicate leakcheck option `crate`
//   |
//   | #[leakcheck(crate = leakcheck, crate = leakcheck)]
//   |                                ^^^^^

use leakcheck::leakcheck;

#[leakcheck(crate = leakcheck, crate = leakcheck)]
fn duplicate_option() {}

fn main() {}
