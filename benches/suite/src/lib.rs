//! The code under test of the benchmark suite: ordinary application code that allocates the
//! way application code does (strings, collections, serde models, parsers, trees, async
//! services). Nothing here leaks; `tests/suite/` exercises it.

pub mod data;
pub mod graph;
pub mod inventory;
pub mod model;
pub mod parse;
pub mod service;
pub mod sorting;
pub mod text;
pub mod tree;
