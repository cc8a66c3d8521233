//! Nothing: the tests under `tests/` are the fixture.
