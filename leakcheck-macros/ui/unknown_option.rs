// An unknown option is an error on its name that lists the valid ones:
//
// error: unknown leakcheck option `repeats`; expected one of: `crate`, `repeat`, `reachable`, `shared_threads`, `allow_bytes`, `allow_allocs`, `max_allocs`, `max_bytes`, `max_peak_bytes`, `ignore`, `threads`, `fds`, `resources`, `threads_linger_ms`, `ignore_threads`, `ignore_fds`
//  --> ui/unknown_option.rs
//   |
//   | #[leakcheck(repeats = 3)]
//   |             ^^^^^^^

use leakcheck::leakcheck;

#[leakcheck(repeats = 3)]
fn unknown_option() {}

fn main() {}
