// Installs leakcheck's allocator for this test binary: one line per test crate.
#[global_allocator]
static ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();

use quickstart::{adopt, adopt_as_guardian, Person};

#[leakcheck::test]
fn weak_back_links_free_the_whole_tree() {
    let parent = Person::new("Ada");
    adopt(&parent, Person::new("Byron"));
    assert_eq!(parent.children.borrow()[0].parent.borrow().upgrade().unwrap().name, "Ada");
}

// This one leaks: leakcheck fails it and shows where the leaked blocks were allocated.
#[leakcheck::test]
fn strong_back_links_leak_the_tree() {
    let parent = Person::new("Grace");
    adopt_as_guardian(&parent, Person::new("Hopper"));
    assert_eq!(parent.children.borrow().len(), 1);
}
