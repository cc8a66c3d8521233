use bench_suite::graph::*;

macro_rules! shortest_paths {
    ($($name:ident: $seed:expr, $nodes:expr, $edges:expr;)*) => {$(
        #[test]
        #[cfg_attr(feature = "checked", leakcheck::leakcheck)]
        fn $name() {
            let g = random_graph($seed, $nodes, $edges, false);
            let hops = g.bfs("n0000");
            for target in g.nodes().iter().take(40) {
                match g.dijkstra("n0000", target) {
                    Some((cost, path)) => {
                        assert!(hops.contains_key(target));
                        assert_eq!(path.first().map(String::as_str), Some("n0000"));
                        assert_eq!(path.last(), Some(target));
                        assert!(cost >= (path.len() as u64).saturating_sub(1));
                        assert!(path.len() > hops[target]);
                    }
                    None => assert!(!hops.contains_key(target)),
                }
            }
        }
    )*};
}

shortest_paths! {
    shortest_paths_sparse_200: 1, 200, 400;
    shortest_paths_dense_200: 2, 200, 1600;
    shortest_paths_sparse_500: 3, 500, 900;
    shortest_paths_dense_500: 4, 500, 3000;
}

macro_rules! topological_orders {
    ($($name:ident: $seed:expr, $nodes:expr, $edges:expr;)*) => {$(
        #[test]
        #[cfg_attr(feature = "checked", leakcheck::leakcheck)]
        fn $name() {
            let g = random_graph($seed, $nodes, $edges, true);
            let order = g.topo_sort().expect("a DAG has a topological order");
            let pos: std::collections::HashMap<&str, usize> =
                order.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
            for (from, targets) in &g.edges {
                for (to, _) in targets {
                    assert!(pos[from.as_str()] < pos[to.as_str()]);
                }
            }
        }
    )*};
}

topological_orders! {
    topological_order_300: 5, 300, 900;
    topological_order_600: 6, 600, 2000;
    topological_order_1000: 7, 1000, 3000;
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn cycles_have_no_topological_order() {
    for seed in 0..10 {
        let mut g = random_graph(20 + seed, 200, 400, true);
        g.add_edge("n0199", "n0198", 1);
        g.add_edge("n0198", "n0199", 1);
        assert!(g.topo_sort().is_none());
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn connected_components_partition_the_nodes() {
    let g = random_graph(30, 1500, 1200, false);
    let comps = g.components();
    let total: usize = comps.iter().map(|c| c.len()).sum();
    assert_eq!(total, 1500);
    let mut seen = std::collections::HashSet::new();
    for c in &comps {
        for n in c {
            assert!(seen.insert(n.clone()));
        }
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn cloned_graphs_are_independent() {
    let g = random_graph(31, 400, 1200, false);
    let mut h = g.clone();
    for i in 0..400 {
        h.add_edge(&format!("n{i:04}"), "hub", 1);
    }
    assert_eq!(h.nodes().len(), g.nodes().len() + 1);
    assert_eq!(h.bfs("n0000").get("hub"), Some(&1));
}
