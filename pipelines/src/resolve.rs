//! From what serde read to a checked [`Manifest`]: variables expanded,
//! commands split, paths made absolute, values checked — every problem
//! collected with its position.

use std::collections::BTreeMap;
use std::path::Path;

use indexmap::IndexMap;

use crate::interp;
use crate::manifest::{normalize, Manifest, Problems, Stage, StagePath};
use crate::positions::Positions;
use crate::raw::{RawCmd, RawManifest};

pub fn build(
    file: &Path,
    raw: RawManifest,
    overrides: &[(String, String)],
    problems: &std::cell::RefCell<Problems>,
) -> Manifest {
    let report = |path: &str, message: String| problems.borrow_mut().at(path, message);
    if !valid_name(&raw.name) {
        report(
            "name",
            format!("name '{}': use letters, digits, '-', '_' and '.'", raw.name),
        );
    }
    let env = |name: &str| std::env::var(name).ok();
    // Every string goes through here: expanded, or its problem reported at `path`.
    let expand_at = |path: &str, text: &str, lookup: &dyn Fn(&str) -> Option<String>| {
        interp::expand(text, lookup)
            .map_err(|e| report(path, e))
            .ok()
    };

    let mut vars: IndexMap<String, String> = IndexMap::new();
    for (name, value) in &raw.vars {
        let path = format!("vars.{name}");
        if let Some((_, v)) = overrides.iter().find(|(n, _)| n == name) {
            vars.insert(name.clone(), v.clone());
            continue;
        }
        let lookup = |n: &str| vars.get(n).cloned().or_else(|| env(n));
        if let Some(v) = expand_at(&path, &value.text(), &lookup) {
            vars.insert(name.clone(), v);
        }
    }
    for (name, _) in overrides {
        if !vars.contains_key(name) {
            report(
                "vars",
                format!("--var {name}: the manifest has no such var"),
            );
        }
    }
    let lookup_vars = |n: &str| vars.get(n).cloned().or_else(|| env(n));
    let expand = |path: &str, text: &str| expand_at(path, text, &lookup_vars);

    let base = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
    let workdir = match &raw.workdir {
        Some(w) => expand("workdir", w)
            .map(|w| normalize(&base.join(w)))
            .unwrap_or(base.clone()),
        None => base.clone(),
    };

    let default_env: Vec<(String, String)> = raw
        .defaults
        .env
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), expand(&format!("defaults.env.{k}"), &v.text())?)))
        .collect();
    let default_memory = raw
        .defaults
        .memory_limit
        .as_deref()
        .and_then(|m| expand("defaults.memory_limit", m));
    let default_timeout = raw
        .defaults
        .timeout
        .as_deref()
        .and_then(|t| expand("defaults.timeout", t));

    let mut stages = Vec::new();
    for (name, rs) in raw.stages {
        let at = format!("stages.{name}");
        if !valid_name(&name) {
            report(
                &at,
                format!("stage name '{name}': use letters, digits, '-', '_' and '.'"),
            );
        }
        // Params first: the command may refer to them as ${params.NAME}.
        let mut params = BTreeMap::new();
        let mut param_text = BTreeMap::new();
        for (key, value) in &rs.params {
            let value = expand_value(value, &mut |t| {
                expand(&format!("{at}.params.{key}"), t).unwrap_or_default()
            });
            if let Some(text) = scalar_text(&value) {
                param_text.insert(format!("params.{key}"), text);
            }
            params.insert(
                key.clone(),
                serde_json::to_string(&value).unwrap_or_default(),
            );
        }
        let lookup = |n: &str| {
            param_text
                .get(n)
                .cloned()
                .or_else(|| vars.get(n).cloned())
                .or_else(|| env(n))
        };
        let expand_stage = |path: String, text: &str| expand_at(&path, text, &lookup);
        let argv: Vec<String> = match &rs.cmd {
            RawCmd::Line(line) => match shlex::split(line) {
                Some(words) => words
                    .iter()
                    .filter_map(|w| expand_stage(format!("{at}.cmd"), w))
                    .collect(),
                None => {
                    report(
                        &format!("{at}.cmd"),
                        "unbalanced quotes in the command".into(),
                    );
                    Vec::new()
                }
            },
            RawCmd::Argv(words) => words
                .iter()
                .enumerate()
                .filter_map(|(i, w)| expand_stage(format!("{at}.cmd[{i}]"), &w.text()))
                .collect(),
        };
        if argv.is_empty() {
            report(&format!("{at}.cmd"), "empty command".into());
        }
        let paths = |kind: &str, list: &[String]| -> Vec<StagePath> {
            list.iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    let path = format!("{at}.{kind}[{i}]");
                    let text = expand_stage(path.clone(), p)?;
                    if text.is_empty() {
                        report(&path, format!("empty path in {kind}"));
                        return None;
                    }
                    Some(stage_path(&workdir, &text))
                })
                .collect()
        };
        let deps = paths("deps", &rs.deps);
        let outs = paths("outs", &rs.outs);
        if outs.iter().any(|o| o.abs == workdir) {
            report(
                &format!("{at}.outs"),
                "an out cannot be the whole workdir".into(),
            );
        }

        let memory_limit = match &rs.memory_limit {
            Some(m) => expand_stage(format!("{at}.memory_limit"), m),
            None => default_memory.clone(),
        };
        if let Some(m) = &memory_limit {
            if let Err(e) = check_memory_limit(m) {
                report(&format!("{at}.memory_limit"), e);
            }
        }
        let timeout_text = match &rs.timeout {
            Some(t) => expand_stage(format!("{at}.timeout"), t),
            None => default_timeout.clone(),
        };
        let timeout = match timeout_text.as_deref() {
            None | Some("none") => None,
            Some(t) => match humantime::parse_duration(t) {
                Ok(d) if !d.is_zero() => Some(d),
                Ok(_) => {
                    report(
                        &format!("{at}.timeout"),
                        "timeout must be above zero".into(),
                    );
                    None
                }
                Err(e) => {
                    report(
                        &format!("{at}.timeout"),
                        format!("timeout '{t}': {e} (e.g. 90s, 30m, 2h)"),
                    );
                    None
                }
            },
        };
        let mut env_map: BTreeMap<String, String> = default_env.iter().cloned().collect();
        for (k, v) in &rs.env {
            if let Some(v) = expand_stage(format!("{at}.env.{k}"), &v.text()) {
                env_map.insert(k.clone(), v);
            }
        }
        stages.push(Stage {
            name,
            desc: rs.desc,
            argv,
            deps,
            outs,
            params,
            memory_limit,
            timeout,
            retries: rs.retries.or(raw.defaults.retries).unwrap_or(0),
            env: env_map,
            always_run: rs.always_run,
        });
    }
    if stages.is_empty() {
        report("stages", "no stages".into());
    }
    Manifest {
        file: file.to_path_buf(),
        name: raw.name,
        workdir,
        vars,
        stages,
        positions: Positions::default(),
    }
}

/// Expands references in every string of a param value.
fn expand_value(
    value: &serde_yaml_ng::Value,
    expand: &mut dyn FnMut(&str) -> String,
) -> serde_yaml_ng::Value {
    use serde_yaml_ng::Value;
    match value {
        Value::String(s) => Value::String(expand(s)),
        Value::Sequence(items) => {
            Value::Sequence(items.iter().map(|v| expand_value(v, expand)).collect())
        }
        Value::Mapping(map) => Value::Mapping(
            map.iter()
                .map(|(k, v)| (k.clone(), expand_value(v, expand)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn scalar_text(value: &serde_yaml_ng::Value) -> Option<String> {
    use serde_yaml_ng::Value;
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `2GiB`, `512MiB`, `80%` — what `kiln-monitor run --limit` takes.
pub fn check_memory_limit(text: &str) -> Result<(), String> {
    if let Some(pct) = text.strip_suffix('%') {
        return match pct.trim().parse::<f64>() {
            Ok(p) if p > 0.0 && p <= 100.0 => Ok(()),
            _ => Err(format!(
                "memory_limit '{text}': a percentage is above 0 and at most 100"
            )),
        };
    }
    match parse_size::parse_size(text) {
        Ok(0) => Err(format!("memory_limit '{text}' is zero")),
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "memory_limit '{text}': {e} (e.g. 2GiB, 512MiB, 80%)"
        )),
    }
}

fn stage_path(workdir: &Path, text: &str) -> StagePath {
    let abs = normalize(&workdir.join(text));
    let shown = match abs.strip_prefix(workdir) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
        _ => abs.display().to_string(),
    };
    StagePath { shown, abs }
}
