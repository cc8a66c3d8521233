//! Nothing: the fixture's tests are in `tests/reports.rs`.
