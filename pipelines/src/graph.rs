//! `kiln-pipeline graph`: the DAG as text or Graphviz DOT.

use crate::pipeline::Pipeline;

/// Stages in run order, each with what it reads from which stage.
pub fn text(p: &Pipeline) -> String {
    let m = &p.manifest;
    let mut out = format!("{} ({} stages, in run order)\n", m.name, m.stages.len());
    for &i in &p.dag.order {
        let stage = &m.stages[i];
        let ups: Vec<&str> = p.dag.upstream[i]
            .iter()
            .map(|&u| m.stages[u].name.as_str())
            .collect();
        let downs: Vec<&str> = p.dag.downstream[i]
            .iter()
            .map(|&d| m.stages[d].name.as_str())
            .collect();
        out.push_str(&stage.name);
        if let Some(desc) = &stage.desc {
            out.push_str(&format!("  — {desc}"));
        }
        out.push('\n');
        if !ups.is_empty() {
            out.push_str(&format!("  after: {}\n", ups.join(", ")));
        }
        for dep in &stage.deps {
            out.push_str(&format!("  dep:   {}\n", dep.shown));
        }
        for o in &stage.outs {
            out.push_str(&format!("  out:   {}\n", o.shown));
        }
        if !downs.is_empty() {
            out.push_str(&format!("  feeds: {}\n", downs.join(", ")));
        }
    }
    out
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `kiln-pipeline graph --dot FILE | dot -Tpng > dag.png`
pub fn dot(p: &Pipeline) -> String {
    let m = &p.manifest;
    let mut out = format!(
        "digraph {} {{\n  rankdir=LR;\n  node [shape=box, style=rounded];\n",
        quote(&m.name)
    );
    for &i in &p.dag.order {
        let s = &m.stages[i];
        let label = match &s.desc {
            Some(d) => format!("{}\\n{}", s.name, d.replace('"', "'")),
            None => s.name.clone(),
        };
        out.push_str(&format!("  {} [label=\"{label}\"];\n", quote(&s.name)));
    }
    for &i in &p.dag.order {
        for &d in &p.dag.downstream[i] {
            let via: Vec<String> = m.stages[d]
                .deps
                .iter()
                .filter(|dep| {
                    m.stages[i]
                        .outs
                        .iter()
                        .any(|o| crate::dag::overlaps(&o.abs, &dep.abs))
                })
                .map(|dep| dep.shown.replace('\\', "/").replace('"', "'"))
                .collect();
            out.push_str(&format!(
                "  {} -> {} [label=\"{}\"];\n",
                quote(&m.stages[i].name),
                quote(&m.stages[d].name),
                via.join("\\n")
            ));
        }
    }
    out.push_str("}\n");
    out
}
