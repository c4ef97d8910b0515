//! A manifest made ready to run: the graph, each stage's program and
//! kiln-monitor found, sources checked — every problem reported before any
//! stage starts.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::dag::Dag;
use crate::error::PipelineError;
use crate::manifest::{Manifest, ManifestError, Problem};
use crate::tools;

#[derive(Debug)]
pub struct Pipeline {
    pub manifest: Manifest,
    pub dag: Dag,
    /// Each stage's resolved program, by stage index.
    pub programs: Vec<PathBuf>,
    pub monitor: PathBuf,
    /// Lock, run records and logs: `WORKDIR/.kiln/<name>/` unless moved.
    pub state_dir: PathBuf,
}

fn manifest_error(m: &Manifest, problems: Vec<Problem>) -> PipelineError {
    PipelineError::Manifest(ManifestError {
        file: m.file.clone(),
        problems,
    })
}

impl Pipeline {
    pub fn open(file: &Path, vars: &[(String, String)]) -> Result<Pipeline, PipelineError> {
        let manifest = Manifest::load(file, vars)?;
        let dag = Dag::build(&manifest);
        let programs = tools::resolve_programs(&manifest);
        let mut problems = Vec::new();
        if let Err(p) = &dag {
            problems.extend(p.iter().cloned());
        }
        if let Err(p) = &programs {
            problems.extend(p.iter().cloned());
        }
        if !problems.is_empty() {
            problems.sort_by_key(|p| (p.pos.line, p.pos.col));
            return Err(manifest_error(&manifest, problems));
        }
        let monitor = tools::monitor().map_err(PipelineError::Setup)?;
        Ok(Pipeline {
            state_dir: manifest.state_dir(),
            dag: dag.unwrap_or_else(|_| unreachable!()),
            programs: programs.unwrap_or_else(|_| unreachable!()),
            manifest,
            monitor,
        })
    }

    /// Deps that no stage writes and that do not exist: nothing could make
    /// them, so the run stops before it starts.
    pub fn check_sources(&self, selected: &BTreeSet<usize>) -> Result<(), PipelineError> {
        let m = &self.manifest;
        let mut problems = Vec::new();
        for &i in selected {
            let stage = &m.stages[i];
            for (d, dep) in stage.deps.iter().enumerate() {
                if !m.written_by_a_stage(&dep.abs) && !dep.abs.exists() {
                    problems.push(m.problem(
                        &format!("stages.{}.deps[{d}]", stage.name),
                        format!(
                            "stage '{}': dep '{}' does not exist and no stage writes it",
                            stage.name, dep.shown
                        ),
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(manifest_error(m, problems))
        }
    }

    /// The stages a run covers: `--stage` names exactly, `--from` a stage
    /// and everything downstream of it, else all.
    pub fn select(
        &self,
        only: &[String],
        from: Option<&str>,
    ) -> Result<BTreeSet<usize>, PipelineError> {
        let index = |name: &str| {
            self.manifest.index_of(name).ok_or_else(|| {
                let known: Vec<&str> = self
                    .manifest
                    .stages
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect();
                PipelineError::Usage(format!(
                    "no stage '{name}' in {} (stages: {})",
                    self.manifest.file.display(),
                    known.join(", ")
                ))
            })
        };
        let mut selected = BTreeSet::new();
        for name in only {
            selected.insert(index(name)?);
        }
        if let Some(from) = from {
            selected.extend(self.dag.downstream_closure(&[index(from)?]));
        }
        if only.is_empty() && from.is_none() {
            selected.extend(0..self.manifest.stages.len());
        }
        Ok(selected)
    }

    /// A path for messages: relative to the workdir when inside it.
    pub fn shown(&self, path: &Path) -> String {
        match path.strip_prefix(&self.manifest.workdir) {
            Ok(rel) => rel.display().to_string(),
            Err(_) => path.display().to_string(),
        }
    }
}
