// Options are `name = value`, or a bare name for the flags (`threads`, `fds`, `resources`).

use leakcheck::leakcheck;

#[leakcheck(repeat)]
fn value_missing() {}

#[leakcheck(repeat =)]
fn value_empty() {}

#[leakcheck(repeat = 3 4)]
fn trailing_tokens() {}

#[leakcheck(threads = true)]
fn flag_with_a_value() {}

#[leakcheck("repeat")]
fn not_a_name() {}

fn main() {}
