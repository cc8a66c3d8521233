// Counts must be non-negative integer literals; each bad value is an error on the value.

use leakcheck::leakcheck;

#[leakcheck(repeat = "3")]
fn repeat_as_string() {}

#[leakcheck(max_allocs = -1)]
fn negative_budget() {}

#[leakcheck(allow_bytes = 1.5)]
fn fractional_allowance() {}

#[leakcheck(max_bytes = 99999999999999999999999)]
fn too_large() {}

#[leakcheck(max_peak_bytes = some_constant)]
fn not_a_literal() {}

fn main() {}
