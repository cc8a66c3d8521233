//! End-to-end tests and benchmarks for leakcheck live in `tests/` and `benches/`.
