//! Graph algorithms over owned, string-keyed adjacency maps.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};

use crate::data::Rng;

#[derive(Debug, Default, Clone)]
pub struct Graph {
    pub edges: HashMap<String, Vec<(String, u64)>>,
}

impl Graph {
    pub fn add_edge(&mut self, from: &str, to: &str, weight: u64) {
        self.edges
            .entry(from.to_string())
            .or_default()
            .push((to.to_string(), weight));
        self.edges.entry(to.to_string()).or_default();
    }

    pub fn nodes(&self) -> BTreeSet<String> {
        self.edges.keys().cloned().collect()
    }

    /// Hop counts from `start` by breadth-first search.
    pub fn bfs(&self, start: &str) -> HashMap<String, usize> {
        let mut dist = HashMap::from([(start.to_string(), 0)]);
        let mut queue = VecDeque::from([start.to_string()]);
        while let Some(node) = queue.pop_front() {
            let d = dist[&node];
            for (next, _) in self.edges.get(&node).into_iter().flatten() {
                if !dist.contains_key(next) {
                    dist.insert(next.clone(), d + 1);
                    queue.push_back(next.clone());
                }
            }
        }
        dist
    }

    /// Shortest weighted distances and the path to `goal`.
    pub fn dijkstra(&self, start: &str, goal: &str) -> Option<(u64, Vec<String>)> {
        let mut dist: HashMap<String, u64> = HashMap::from([(start.to_string(), 0)]);
        let mut prev: HashMap<String, String> = HashMap::new();
        let mut heap = BinaryHeap::from([Reverse((0u64, start.to_string()))]);
        while let Some(Reverse((d, node))) = heap.pop() {
            if node == goal {
                let mut path = vec![goal.to_string()];
                let mut cur = goal;
                while let Some(p) = prev.get(cur) {
                    path.push(p.clone());
                    cur = p;
                }
                path.reverse();
                return Some((d, path));
            }
            if d > *dist.get(&node).unwrap_or(&u64::MAX) {
                continue;
            }
            for (next, w) in self.edges.get(&node).into_iter().flatten() {
                let nd = d + w;
                if nd < *dist.get(next).unwrap_or(&u64::MAX) {
                    dist.insert(next.clone(), nd);
                    prev.insert(next.clone(), node.clone());
                    heap.push(Reverse((nd, next.clone())));
                }
            }
        }
        None
    }

    /// Kahn's algorithm; `None` if there is a cycle. Ties in name order.
    pub fn topo_sort(&self) -> Option<Vec<String>> {
        let mut indegree: BTreeMap<&str, usize> =
            self.edges.keys().map(|k| (k.as_str(), 0)).collect();
        for targets in self.edges.values() {
            for (t, _) in targets {
                *indegree.get_mut(t.as_str()).expect("known node") += 1;
            }
        }
        let mut ready: BTreeSet<&str> = indegree
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(k, _)| *k)
            .collect();
        let mut out = Vec::new();
        while let Some(node) = ready.pop_first() {
            out.push(node.to_string());
            for (t, _) in &self.edges[node] {
                let d = indegree.get_mut(t.as_str()).expect("known node");
                *d -= 1;
                if *d == 0 {
                    ready.insert(t.as_str());
                }
            }
        }
        (out.len() == self.edges.len()).then_some(out)
    }

    /// Connected components, ignoring direction.
    pub fn components(&self) -> Vec<BTreeSet<String>> {
        let mut undirected: HashMap<&str, Vec<&str>> = HashMap::new();
        for (from, targets) in &self.edges {
            undirected.entry(from).or_default();
            for (to, _) in targets {
                undirected.entry(from).or_default().push(to);
                undirected.entry(to).or_default().push(from);
            }
        }
        let mut seen: HashSet<&str> = HashSet::new();
        let mut out = Vec::new();
        let mut names: Vec<&str> = undirected.keys().copied().collect();
        names.sort_unstable();
        for start in names {
            if !seen.insert(start) {
                continue;
            }
            let mut comp = BTreeSet::new();
            let mut stack = vec![start];
            while let Some(n) = stack.pop() {
                comp.insert(n.to_string());
                for &m in &undirected[n] {
                    if seen.insert(m) {
                        stack.push(m);
                    }
                }
            }
            out.push(comp);
        }
        out
    }
}

/// A random graph; `dag` only adds edges from lower to higher node numbers.
pub fn random_graph(seed: u64, nodes: usize, edges: usize, dag: bool) -> Graph {
    let mut rng = Rng::new(seed);
    let mut g = Graph::default();
    for i in 0..nodes {
        g.edges.entry(format!("n{i:04}")).or_default();
    }
    for _ in 0..edges {
        let a = rng.below(nodes as u64) as usize;
        let b = rng.below(nodes as u64) as usize;
        if a == b {
            continue;
        }
        let (a, b) = if dag && a > b { (b, a) } else { (a, b) };
        g.add_edge(&format!("n{a:04}"), &format!("n{b:04}"), 1 + rng.below(20));
    }
    g
}
