//! The manifest: read with serde (unknown keys are errors), variables
//! expanded, paths made absolute, every value checked — and every problem
//! reported with its `file:line:col` before anything runs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;

use crate::positions::{Pos, Positions};

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
        let raw: crate::raw::RawManifest = serde_yaml_ng::from_str(text).map_err(|e| {
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
        let manifest = crate::resolve::build(file, raw, overrides, &problems);
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

    /// Whether some stage's out is, contains or lies inside `path`: a path
    /// that may not exist before the run.
    pub fn written_by_a_stage(&self, path: &Path) -> bool {
        self.stages
            .iter()
            .any(|s| s.outs.iter().any(|o| crate::dag::overlaps(&o.abs, path)))
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
