use std::collections::HashSet;
use std::rc::Rc;

use bench_suite::data::{lorem, Rng};
use bench_suite::tree::*;

macro_rules! file_trees {
    ($($name:ident: $seed:expr, $nodes:expr;)*) => {$(
        #[test]
        #[cfg_attr(feature = "checked", leakcheck::leakcheck)]
        fn $name() {
            let root = random_tree($seed, $nodes);
            assert_eq!(root.count(), $nodes);
            let paths = Node::all_paths(&root);
            assert_eq!(paths.len(), $nodes);
            let unique: HashSet<&String> = paths.iter().collect();
            assert_eq!(unique.len(), $nodes);
            assert!(paths.iter().all(|p| p.starts_with("/root")));
        }
    )*};
}

file_trees! {
    file_tree_of_100_nodes: 1, 100;
    file_tree_of_250_nodes: 2, 250;
    file_tree_of_500_nodes: 3, 500;
    file_tree_of_800_nodes: 4, 800;
    file_tree_of_1200_nodes: 5, 1200;
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn sizes_add_up() {
    let root = random_tree(6, 1500);
    let mut sum = 0;
    let mut stack = vec![root.clone()];
    while let Some(n) = stack.pop() {
        sum += n.size;
        stack.extend(n.children.borrow().iter().cloned());
    }
    assert_eq!(root.total_size(), sum);
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn find_by_name() {
    let root = random_tree(7, 1500);
    for word in ["alpha", "zulu", "café", ".txt"] {
        for node in Node::find(&root, word) {
            assert!(node.name.contains(word));
            assert!(node.path().ends_with(&node.name));
        }
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn parent_links_do_not_keep_the_tree_alive() {
    for seed in 0..20 {
        let root = random_tree(100 + seed, 100);
        let leaf = Node::find(&root, ".txt").pop().expect("some file");
        let parent = Rc::downgrade(&root);
        assert!(leaf.parent.borrow().upgrade().is_some());
        drop(root);
        assert!(parent.upgrade().is_none());
        assert!(leaf.parent.borrow().upgrade().is_none());
        assert_eq!(Rc::strong_count(&leaf), 1);
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn detached_subtrees_report_their_own_paths() {
    let root = random_tree(8, 800);
    let dirs: Vec<Rc<Node>> = root
        .children
        .borrow()
        .iter()
        .filter(|c| !c.name.ends_with(".txt"))
        .cloned()
        .collect();
    root.children.borrow_mut().clear();
    drop(root);
    for d in dirs {
        // The parent is gone: paths now start at the detached directory.
        assert!(Node::all_paths(&d)
            .iter()
            .all(|p| p.starts_with(&format!("/{}", d.name))));
    }
}

macro_rules! search_trees {
    ($($name:ident: $seed:expr, $keys:expr;)*) => {$(
        #[test]
        #[cfg_attr(feature = "checked", leakcheck::leakcheck)]
        fn $name() {
            let mut rng = Rng::new($seed);
            let mut bst = Bst::default();
            let mut model = std::collections::BTreeMap::new();
            for i in 0..$keys {
                let key = format!("{}-{}", lorem(rng.below(1000), 1), rng.below(1000));
                assert_eq!(bst.insert(key.clone(), i), model.insert(key, i));
            }
            assert_eq!(bst.len(), model.len());
            assert_eq!(bst.keys(), model.keys().cloned().collect::<Vec<_>>());
            for (k, v) in &model {
                assert_eq!(bst.get(k), Some(*v));
            }
            assert!(bst.height() < 4 * (64 - (bst.len() as u64).leading_zeros()) as usize);
        }
    )*};
}

search_trees! {
    search_tree_of_300_keys: 1, 300;
    search_tree_of_1000_keys: 2, 1000;
    search_tree_of_2000_keys: 3, 2000;
    search_tree_of_3000_keys: 4, 3000;
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn sorted_inserts_degenerate_the_tree() {
    let mut bst = Bst::default();
    for i in 0..600u64 {
        bst.insert(format!("{i:06}"), i);
    }
    assert_eq!(bst.height(), 600);
    assert_eq!(bst.get("000599"), Some(599));
}

macro_rules! arc_trees {
    ($($name:ident: $depth:expr, $fanout:expr;)*) => {$(
        #[test]
        #[cfg_attr(feature = "checked", leakcheck::leakcheck)]
        fn $name() {
            let root = arc_tree($depth, $fanout, 1);
            assert_eq!(parallel_sum(&root), arc_sum(&root));
        }
    )*};
}

arc_trees! {
    arc_tree_depth_4_fanout_4: 4, 4;
    arc_tree_depth_5_fanout_4: 5, 4;
    arc_tree_depth_6_fanout_3: 6, 3;
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn persistent_lists_share_tails() {
    let mut base = Rc::new(List::Nil);
    for i in 0..2000 {
        base = push(&base, format!("item-{i}"));
    }
    let branches: Vec<Rc<List>> = (0..50)
        .map(|b| push(&base, format!("branch-{b}")))
        .collect();
    assert_eq!(Rc::strong_count(&base), 51);
    assert!(branches.iter().all(|b| list_len(b) == 2001));
    assert_eq!(list_items(&branches[3])[1], "item-1999");
    drop(branches);
    drop_list(base);
}
