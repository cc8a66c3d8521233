// Every error is reported at once, in source order: options first, then the function.
//
// error: unknown leakcheck option `foo`; expected one of: `crate`, `repeat`, `reachable`, `shared_threads`, `allow_bytes`, `allow_allocs`, `max_allocs`, `max_bytes`, `max_peak_bytes`, `ignore`, `threads`, `fds`, `resources`, `threads_linger_ms`, `ignore_threads`, `ignore_fds`
//   | #[leakcheck(foo, crate = 1, crate = leakcheck, bar = "x")]
//   |             ^^^
// error: expected the path of the leakcheck crate, e.g. `crate = ::leakcheck` or `crate = "::leakcheck"`
//   |                          ^
// error: duplicate leakcheck option `crate`
//   |                             ^^^^^
// error: unknown leakcheck option `bar`; expected one of: `crate`, `repeat`, `reachable`, `shared_threads`, `allow_bytes`, `allow_allocs`, `max_allocs`, `max_bytes`, `max_peak_bytes`, `ignore`, `threads`, `fds`, `resources`, `threads_linger_ms`, `ignore_threads`, `ignore_fds`
//   |                                                ^^^
// error: #[leakcheck] test functions cannot take arguments
//   | async fn everything_wrong(_x: u32) {}
//   |                           ^^^^^^^
// error: async tests need a runtime attribute such as `#[tokio::test]`; add it below or above #[leakcheck]
//   | async fn everything_wrong(_x: u32) {}
//   | ^^^^^

use leakcheck::leakcheck;

#[leakcheck(foo, crate = 1, crate = leakcheck, bar = "x")]
async fn everything_wrong(_x: u32) {}

fn main() {}
