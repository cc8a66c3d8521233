//! Trees: an `Rc<RefCell<_>>` file tree with `Weak` parent links, a boxed binary search tree,
//! an `Arc` tree summed across threads, and a persistent `Rc` list.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use crate::data::{Rng, WORDS};

// ---- file tree with parent links ----

#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub size: u64,
    pub parent: RefCell<Weak<Node>>,
    pub children: RefCell<Vec<Rc<Node>>>,
}

impl Node {
    pub fn new(name: impl Into<String>, size: u64) -> Rc<Node> {
        Rc::new(Node {
            name: name.into(),
            size,
            parent: RefCell::new(Weak::new()),
            children: RefCell::new(Vec::new()),
        })
    }

    pub fn add_child(parent: &Rc<Node>, child: Rc<Node>) {
        *child.parent.borrow_mut() = Rc::downgrade(parent);
        parent.children.borrow_mut().push(child);
    }

    /// `/root/dir/file`, by walking parent links.
    pub fn path(&self) -> String {
        let mut parts = vec![self.name.clone()];
        let mut cur = self.parent.borrow().upgrade();
        while let Some(node) = cur {
            parts.push(node.name.clone());
            cur = node.parent.borrow().upgrade();
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    pub fn total_size(&self) -> u64 {
        self.size
            + self
                .children
                .borrow()
                .iter()
                .map(|c| c.total_size())
                .sum::<u64>()
    }

    pub fn count(&self) -> usize {
        1 + self
            .children
            .borrow()
            .iter()
            .map(|c| c.count())
            .sum::<usize>()
    }

    /// Every node's path, breadth first.
    pub fn all_paths(root: &Rc<Node>) -> Vec<String> {
        let mut out = Vec::new();
        let mut queue = VecDeque::from([root.clone()]);
        while let Some(node) = queue.pop_front() {
            out.push(node.path());
            queue.extend(node.children.borrow().iter().cloned());
        }
        out
    }

    /// Finds nodes whose name contains `needle`.
    pub fn find(root: &Rc<Node>, needle: &str) -> Vec<Rc<Node>> {
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(node) = stack.pop() {
            if node.name.contains(needle) {
                out.push(node.clone());
            }
            stack.extend(node.children.borrow().iter().cloned());
        }
        out
    }
}

/// A random directory tree of about `nodes` nodes.
pub fn random_tree(seed: u64, nodes: usize) -> Rc<Node> {
    let mut rng = Rng::new(seed);
    let root = Node::new("root", 0);
    let mut dirs = vec![root.clone()];
    for i in 1..nodes {
        let parent = dirs[rng.below(dirs.len() as u64) as usize].clone();
        let is_dir = rng.chance(25);
        let name = if is_dir {
            format!("{}-{i}", rng.pick(WORDS))
        } else {
            format!("{}-{i}.txt", rng.pick(WORDS))
        };
        let node = Node::new(name, if is_dir { 0 } else { rng.below(1 << 20) });
        Node::add_child(&parent, node.clone());
        if is_dir {
            dirs.push(node);
        }
    }
    root
}

// ---- boxed binary search tree ----

#[derive(Debug, Default)]
pub struct Bst {
    root: Option<Box<BstNode>>,
    len: usize,
}

#[derive(Debug)]
struct BstNode {
    key: String,
    value: u64,
    left: Option<Box<BstNode>>,
    right: Option<Box<BstNode>>,
}

impl Bst {
    pub fn insert(&mut self, key: String, value: u64) -> Option<u64> {
        let mut slot = &mut self.root;
        while let Some(node) = slot {
            match key.cmp(&node.key) {
                std::cmp::Ordering::Less => slot = &mut node.left,
                std::cmp::Ordering::Greater => slot = &mut node.right,
                std::cmp::Ordering::Equal => {
                    return Some(std::mem::replace(&mut node.value, value))
                }
            }
        }
        *slot = Some(Box::new(BstNode {
            key,
            value,
            left: None,
            right: None,
        }));
        self.len += 1;
        None
    }

    pub fn get(&self, key: &str) -> Option<u64> {
        let mut cur = self.root.as_deref();
        while let Some(node) = cur {
            match key.cmp(node.key.as_str()) {
                std::cmp::Ordering::Less => cur = node.left.as_deref(),
                std::cmp::Ordering::Greater => cur = node.right.as_deref(),
                std::cmp::Ordering::Equal => return Some(node.value),
            }
        }
        None
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn keys(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.len);
        let mut stack: Vec<&BstNode> = Vec::new();
        let mut cur = self.root.as_deref();
        while cur.is_some() || !stack.is_empty() {
            while let Some(node) = cur {
                stack.push(node);
                cur = node.left.as_deref();
            }
            let node = stack.pop().expect("non-empty");
            out.push(node.key.clone());
            cur = node.right.as_deref();
        }
        out
    }

    pub fn height(&self) -> usize {
        fn h(n: Option<&BstNode>) -> usize {
            n.map_or(0, |n| 1 + h(n.left.as_deref()).max(h(n.right.as_deref())))
        }
        h(self.root.as_deref())
    }
}

impl Drop for Bst {
    // Iterative, so that a degenerate (sorted-insert) tree does not overflow the stack.
    fn drop(&mut self) {
        let mut stack: Vec<Box<BstNode>> = self.root.take().into_iter().collect();
        while let Some(mut node) = stack.pop() {
            stack.extend(node.left.take());
            stack.extend(node.right.take());
        }
    }
}

// ---- Arc tree shared across threads ----

#[derive(Debug)]
pub struct ArcNode {
    pub value: u64,
    pub label: String,
    pub children: Vec<Arc<ArcNode>>,
}

pub fn arc_tree(depth: u32, fanout: u64, seed: u64) -> Arc<ArcNode> {
    let children = if depth == 0 {
        Vec::new()
    } else {
        (0..fanout)
            .map(|i| arc_tree(depth - 1, fanout, seed * 7 + i))
            .collect()
    };
    Arc::new(ArcNode {
        value: seed % 1000,
        label: format!("n{depth}-{seed}"),
        children,
    })
}

pub fn arc_sum(node: &ArcNode) -> u64 {
    node.value + node.children.iter().map(|c| arc_sum(c)).sum::<u64>()
}

/// Sums each top-level subtree on its own scoped thread.
pub fn parallel_sum(root: &Arc<ArcNode>) -> u64 {
    let subtotals: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = root
            .children
            .iter()
            .map(|child| {
                let child = Arc::clone(child);
                s.spawn(move || arc_sum(&child))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    });
    root.value + subtotals.iter().sum::<u64>()
}

// ---- persistent list ----

#[derive(Debug)]
pub enum List {
    Nil,
    Cons(String, Rc<List>),
}

pub fn push(list: &Rc<List>, item: String) -> Rc<List> {
    Rc::new(List::Cons(item, Rc::clone(list)))
}

pub fn list_len(mut list: &Rc<List>) -> usize {
    let mut n = 0;
    while let List::Cons(_, next) = &**list {
        n += 1;
        list = next;
    }
    n
}

pub fn list_items(mut list: &Rc<List>) -> Vec<String> {
    let mut out = Vec::new();
    while let List::Cons(item, next) = &**list {
        out.push(item.clone());
        list = next;
    }
    out
}

/// Drops a long list without recursing once per element.
pub fn drop_list(mut list: Rc<List>) {
    while let Ok(List::Cons(_, next)) = Rc::try_unwrap(list) {
        list = next;
    }
}
