//! The stage graph, derived from deps and outs: stage B depends on stage A
//! when one of B's deps is, contains or lies inside one of A's outs.

use std::collections::BTreeSet;
use std::path::Path;

use crate::manifest::{Manifest, Problem};

#[derive(Debug, Clone)]
pub struct Dag {
    /// `upstream[i]`: the stages whose outs stage `i` reads.
    pub upstream: Vec<BTreeSet<usize>>,
    pub downstream: Vec<BTreeSet<usize>>,
    /// Every stage, each after all of its upstream; ties in manifest order.
    pub order: Vec<usize>,
}

/// Whether two paths name the same file or one contains the other.
pub fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

impl Dag {
    pub fn build(m: &Manifest) -> Result<Dag, Vec<Problem>> {
        let n = m.stages.len();
        let mut problems = Vec::new();
        for (i, a) in m.stages.iter().enumerate() {
            for out in &a.outs {
                for (di, dep) in a.deps.iter().enumerate() {
                    if overlaps(&out.abs, &dep.abs) {
                        problems.push(m.problem(
                            &format!("stages.{}.deps[{di}]", a.name),
                            format!(
                                "stage '{}' reads '{}', which is also its own out '{}'",
                                a.name, dep.shown, out.shown
                            ),
                        ));
                    }
                }
                for b in &m.stages[i + 1..] {
                    if let Some(other) = b.outs.iter().find(|o| overlaps(&o.abs, &out.abs)) {
                        problems.push(m.problem(
                            &format!("stages.{}.outs", b.name),
                            format!(
                                "stages '{}' and '{}' both write '{}' (as '{}' and '{}'): an out belongs to one stage",
                                a.name, b.name, out.shown, out.shown, other.shown
                            ),
                        ));
                    }
                }
            }
        }
        let mut upstream = vec![BTreeSet::new(); n];
        let mut downstream = vec![BTreeSet::new(); n];
        for (i, b) in m.stages.iter().enumerate() {
            for (j, a) in m.stages.iter().enumerate() {
                if i != j
                    && b.deps
                        .iter()
                        .any(|d| a.outs.iter().any(|o| overlaps(&o.abs, &d.abs)))
                {
                    upstream[i].insert(j);
                    downstream[j].insert(i);
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        // Kahn's algorithm, always taking the first ready stage in manifest order.
        let mut waiting: Vec<usize> = upstream.iter().map(BTreeSet::len).collect();
        let mut ready: BTreeSet<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &d in &downstream[i] {
                waiting[d] -= 1;
                if waiting[d] == 0 {
                    ready.insert(d);
                }
            }
        }
        if order.len() < n {
            let cycle = find_cycle(&upstream, &waiting);
            let names: Vec<&str> = cycle.iter().map(|&i| m.stages[i].name.as_str()).collect();
            let first = cycle[0];
            return Err(vec![m.problem(
                &format!("stages.{}", m.stages[first].name),
                format!(
                    "cycle: {} (each reads an out of the one before)",
                    names.join(" → ")
                ),
            )]);
        }
        Ok(Dag {
            upstream,
            downstream,
            order,
        })
    }

    /// `roots` and everything downstream of them.
    pub fn downstream_closure(&self, roots: &[usize]) -> BTreeSet<usize> {
        let mut seen: BTreeSet<usize> = roots.iter().copied().collect();
        let mut todo: Vec<usize> = roots.to_vec();
        while let Some(i) = todo.pop() {
            for &d in &self.downstream[i] {
                if seen.insert(d) {
                    todo.push(d);
                }
            }
        }
        seen
    }
}

/// A cycle among the stages Kahn's algorithm could not order, as a path that
/// returns to its first stage.
fn find_cycle(upstream: &[BTreeSet<usize>], waiting: &[usize]) -> Vec<usize> {
    let start = (0..waiting.len()).find(|&i| waiting[i] > 0).unwrap_or(0);
    // Walk upstream edges among unordered stages until a stage repeats.
    let mut path = vec![start];
    let mut at = start;
    loop {
        let next = upstream[at]
            .iter()
            .copied()
            .find(|&u| waiting[u] > 0)
            .unwrap_or(start);
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle: Vec<usize> = path[pos..].to_vec();
            cycle.reverse();
            let min_at = (0..cycle.len()).min_by_key(|&k| cycle[k]).unwrap_or(0);
            cycle.rotate_left(min_at);
            cycle.push(cycle[0]);
            return cycle;
        }
        path.push(next);
        at = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn dag(text: &str) -> Result<(Manifest, Dag), String> {
        let m = Manifest::parse(Path::new("/w/p.yaml"), text, &[]).map_err(|e| e.to_string())?;
        let d = Dag::build(&m).map_err(|p| {
            p.iter()
                .map(|p| format!("{}: {}", p.pos, p.message))
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        Ok((m, d))
    }

    #[test]
    fn order_follows_paths_into_directories() {
        let (m, d) = dag(
            "name: t\nstages:\n  train:\n    cmd: t\n    deps: [split/_index.parquet]\n    outs: [run]\n  split:\n    cmd: s\n    deps: [in.csv]\n    outs: [split]\n  other:\n    cmd: o\n",
        )
        .unwrap();
        let names: Vec<_> = d.order.iter().map(|&i| m.stages[i].name.as_str()).collect();
        assert_eq!(names, ["split", "train", "other"]);
    }

    #[test]
    fn cycles_and_shared_outs_are_reported_with_lines() {
        let e = dag("name: t\nstages:\n  a:\n    cmd: x\n    deps: [b.out]\n    outs: [a.out]\n  b:\n    cmd: y\n    deps: [a.out]\n    outs: [b.out]\n").unwrap_err();
        assert!(e.contains("3:3: cycle: a → b → a"), "{e}");
        let e = dag("name: t\nstages:\n  a:\n    cmd: x\n    outs: [d]\n  b:\n    cmd: y\n    outs: [d/f]\n").unwrap_err();
        assert!(e.contains("8:5: stages 'a' and 'b' both write 'd'"), "{e}");
    }
}
