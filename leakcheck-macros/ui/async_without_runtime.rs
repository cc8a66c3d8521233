// An async test needs a runtime attribute to drive it; the error is on `async`:
//
// error: async tests need a runtime attribute such as `#[tokio::test]`; add it below or above #[leakcheck]
//   |
//   | async fn without_runtime() {}
//   | ^^^^^

use leakcheck::leakcheck;

#[leakcheck]
async fn without_runtime() {}

fn main() {}
