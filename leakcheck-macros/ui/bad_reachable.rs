// `reachable` takes "fail" or "ignore".

use leakcheck::leakcheck;

#[leakcheck(reachable = "sometimes")]
fn unknown_value() {}

#[leakcheck(reachable = fail)]
fn unquoted() {}

fn main() {}
