//! A family tree: the classic way to leak memory in safe Rust is an `Rc` cycle.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

/// A person with links to their children and their parent.
pub struct Person {
    pub name: String,
    pub children: RefCell<Vec<Rc<Person>>>,
    /// Correct: a weak link back up the tree.
    pub parent: RefCell<Weak<Person>>,
    /// The bug: a strong link back up the tree makes parent and child keep each other alive.
    pub guardian: RefCell<Option<Rc<Person>>>,
}

impl Person {
    pub fn new(name: &str) -> Rc<Person> {
        Rc::new(Person {
            name: name.to_owned(),
            children: RefCell::new(Vec::new()),
            parent: RefCell::new(Weak::new()),
            guardian: RefCell::new(None),
        })
    }
}

/// Links `child` under `parent` with a weak back link: dropping the parent frees both.
pub fn adopt(parent: &Rc<Person>, child: Rc<Person>) {
    *child.parent.borrow_mut() = Rc::downgrade(parent);
    parent.children.borrow_mut().push(child);
}

/// Links `child` under `parent` with a strong back link: a reference cycle that never frees.
pub fn adopt_as_guardian(parent: &Rc<Person>, child: Rc<Person>) {
    *child.guardian.borrow_mut() = Some(Rc::clone(parent));
    parent.children.borrow_mut().push(child);
}
