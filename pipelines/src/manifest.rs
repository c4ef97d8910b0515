//! The manifest: read with serde (unknown keys are errors), variables
//! expanded, paths made absolute, every value checked — and every problem
//! reported with its `file:line:col` before anything runs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;

use crate::interp;
use crate::positions::{Pos, Positions};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    #[serde(default)]
    workdir: Option<String>,
    #[serde(default)]
    vars: IndexMap<String, Scalar>,
    #[serde(default)]
    defaults: RawDefaults,
    stages: IndexMap<String, RawStage>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    memory_limit: Option<String>,
    timeout: Option<String>,
    retries: Option<u32>,
    #[serde(default)]
    env: IndexMap<String, Scalar>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    #[serde(default)]
    desc: Option<String>,
    cmd: RawCmd,
    #[serde(default)]
    deps: Vec<String>,
    #[serde(default)]
    outs: Vec<String>,
    #[serde(default)]
    params: IndexMap<String, serde_yaml_ng::Value>,
    memory_limit: Option<String>,
    timeout: Option<String>,
    retries: Option<u32>,
    #[serde(default)]
    env: IndexMap<String, Scalar>,
    #[serde(default)]
    always_run: bool,
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "a command line (string) or an argument list")]
enum RawCmd {
    Line(String),
    Argv(Vec<Scalar>),
}

/// A string, number or boolean, kept as the text the user wrote.
#[derive(Deserialize)]
#[serde(untagged, expecting = "a string, number or boolean")]
enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// A dep or out: as written (for messages and the lock) and absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagePath {
    /// Relative to the workdir when inside it, else absolute.
    pub shown: String,
    pub abs: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    pub desc: Option<String>,
    /// The command after expansion, program first, as the manifest names it.
    pub argv: Vec<String>,
    pub deps: Vec<StagePath>,
    pub outs: Vec<StagePath>,
    /// Canonical JSON of each param, by name.
    pub params: BTreeMap<String, String>,
    pub memory_limit: Option<String>,
    pub timeout: Option<Duration>,
    pub retries: u32,
    pub env: BTreeMap<String, String>,
    pub always_run: bool,
}

#[derive(Debug)]
pub struct Manifest {
    pub file: PathBuf,
    pub name: String,
    pub workdir: PathBuf,
    pub vars: IndexMap<String, String>,
    pub stages: Vec<Stage>,
    pub positions: Positions,
}

/// One thing wrong with a manifest, at a place in it.
#[derive(Debug, Clone)]
pub struct Problem {
    pub pos: Pos,
    pub message: String,
}

/// Everything wrong with a manifest, one `file:line:col: message` per line.
#[derive(Debug, thiserror::Error)]
pub struct ManifestError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}: {}", self.file.display(), p.pos, p.message)?;
        }
        Ok(())
    }
}

/// Collects problems while a manifest is checked.
pub struct Problems<'a> {
    positions: &'a Positions,
    pub list: Vec<Problem>,
}

impl<'a> Problems<'a> {
    pub fn new(positions: &'a Positions) -> Self {
        Self {
            positions,
            list: Vec::new(),
        }
    }

    pub fn at(&mut self, path: &str, message: impl Into<String>) {
        self.list.push(Problem {
            pos: self.positions.at(path),
            message: message.into(),
        });
    }
}

impl Manifest {
    /// Reads and checks `file`; `overrides` (from `--var`) replace vars.
    pub fn load(file: &Path, overrides: &[(String, String)]) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(file).map_err(|e| ManifestError {
            file: file.to_path_buf(),
            problems: vec![Problem {
                pos: Pos { line: 0, col: 0 },
                message: format!("cannot read: {e}"),
            }],
        })?;
        Self::parse(file, &text, overrides)
    }

    pub fn parse(
        file: &Path,
        text: &str,
        overrides: &[(String, String)],
    ) -> Result<Manifest, ManifestError> {
        let fail = |problems| ManifestError {
            file: file.to_path_buf(),
            problems,
        };
        let positions = Positions::read(text);
        if !positions.duplicates.is_empty() {
            let problems = positions
                .duplicates
                .iter()
                .map(|(path, pos)| Problem {
                    pos: *pos,
                    message: format!("duplicate key '{path}'"),
                })
                .collect();
            return Err(fail(problems));
        }
        let raw: RawManifest = serde_yaml_ng::from_str(text).map_err(|e| {
            let pos = e
                .location()
                .map(|l| Pos {
                    line: l.line(),
                    col: l.column(),
                })
                .unwrap_or(Pos { line: 1, col: 1 });
            let message = e.to_string();
            // serde_yaml_ng appends " at line L column C": the prefix says it.
            let message = match message.find(" at line ") {
                Some(i) => message[..i].to_string(),
                None => message,
            };
            fail(vec![Problem { pos, message }])
        })?;
        let problems = std::cell::RefCell::new(Problems::new(&positions));
        let manifest = build(file, raw, overrides, &problems);
        let list = problems.into_inner().list;
        if list.is_empty() {
            Ok(Manifest {
                positions,
                ..manifest
            })
        } else {
            Err(fail(list))
        }
    }

    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }

    /// Where kiln-pipeline keeps this manifest's lock, logs and run records.
    pub fn state_dir(&self) -> PathBuf {
        self.workdir.join(".kiln").join(&self.name)
    }

    pub fn problem(&self, path: &str, message: impl Into<String>) -> Problem {
        Problem {
            pos: self.positions.at(path),
            message: message.into(),
        }
    }
}

fn build(
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

    let mut vars: IndexMap<String, String> = IndexMap::new();
    for (name, value) in &raw.vars {
        let path = format!("vars.{name}");
        if let Some((_, v)) = overrides.iter().find(|(n, _)| n == name) {
            vars.insert(name.clone(), v.clone());
            continue;
        }
        let lookup = |n: &str| vars.get(n).cloned().or_else(|| env(n));
        match interp::expand(&value.text(), &lookup) {
            Ok(v) => {
                vars.insert(name.clone(), v);
            }
            Err(e) => report(&path, e),
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
    let expand = |path: &str, text: &str| match interp::expand(text, &lookup_vars) {
        Ok(v) => Some(v),
        Err(e) => {
            report(path, e);
            None
        }
    };

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
        let expand_stage = |path: String, text: &str| match interp::expand(text, &lookup) {
            Ok(v) => Some(v),
            Err(e) => {
                report(&path, e);
                None
            }
        };
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

/// Removes `.` and resolves `..` without touching the file system: deps and
/// outs may not exist yet.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(Path::new("/w/p.yaml"), text, &[])
    }

    #[test]
    fn expands_vars_params_and_splits_commands() {
        let m = parse(
            "name: t\nvars:\n  D: ${KILN_TEST_UNSET_X:-data}\nstages:\n  a:\n    cmd: tool --in '${D}/x y.csv' --n ${params.n}\n    params: {n: 3}\n    deps: [\"${D}/x.csv\"]\n    outs: [../o]\n",
        )
        .unwrap();
        let a = &m.stages[0];
        assert_eq!(a.argv, ["tool", "--in", "data/x y.csv", "--n", "3"]);
        assert_eq!(a.deps[0].shown, "data/x.csv");
        assert_eq!(a.deps[0].abs, Path::new("/w/data/x.csv"));
        assert_eq!(a.outs[0].shown, "/o");
        assert_eq!(a.params["n"], "3");
    }

    #[test]
    fn problems_name_file_line_and_column() {
        let e = parse("name: t\nstages:\n  a:\n    cmd: x\n    dpes: [y]\n").unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("/w/p.yaml:5:"), "{text}");
        assert!(text.contains("unknown field `dpes`"), "{text}");

        let e = parse("name: t\nstages:\n  a:\n    cmd: x ${NOPE_KILN}\n    memory_limit: lots\n")
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("/w/p.yaml:4:5: undefined variable 'NOPE_KILN'"),
            "{text}"
        );
        assert!(
            text.contains("/w/p.yaml:5:5: memory_limit 'lots'"),
            "{text}"
        );
    }
}
