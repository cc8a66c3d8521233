//! A `harness = false` target whose `main` never calls `leakcheck::harness::main()`: rustc
//! compiled its test functions out, so they never run, and the program must say so and fail.

#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

#[leakcheck::leakcheck]
fn never_run_first() {}

mod inner {
    #[leakcheck::leakcheck]
    fn never_run_second() {}
}

fn main() {
    println!("main ran");
}
