// `ignore`, `ignore_threads` and `ignore_fds` take a non-empty string pattern.

use leakcheck::leakcheck;

#[leakcheck(ignore = 3)]
fn number() {}

#[leakcheck(ignore = "")]
fn empty() {}

#[leakcheck(ignore_threads = tokio_worker)]
fn unquoted() {}

fn main() {}
