//! Finding the programs that stages run, before anything runs.
//!
//! A bare name (`kiln-split`) is looked up first beside kiln-pipeline's own
//! executable — so a `target/release` build runs its sibling stages without
//! PATH changes — then on PATH. A name with a `/` is relative to the
//! workdir, and may be an out of an earlier stage (a built tool).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::manifest::{Manifest, Problem};

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Where a bare program name resolves, or None.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)));
    if let Some(path) = beside.filter(|p| is_executable(p)) {
        return Some(path);
    }
    let path_var = std::env::var_os("PATH")?;
    std::env::split_paths(&path_var)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

/// The kiln-monitor that runs every stage: `KILN_MONITOR` when set, else
/// found like any program.
pub fn monitor() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("KILN_MONITOR") {
        let path = PathBuf::from(path);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(format!(
                "KILN_MONITOR={} is not an executable file",
                path.display()
            ))
        };
    }
    find_program("kiln-monitor").ok_or_else(|| {
        "kiln-monitor not found beside kiln-pipeline or on PATH (every stage runs under it; \
         build it with `cargo build --release -p kiln-monitor` or set KILN_MONITOR)"
            .to_string()
    })
}

/// Each stage's program, resolved; a program that is missing (and that no
/// stage produces) is a problem at its `cmd`.
pub fn resolve_programs(m: &Manifest) -> Result<Vec<PathBuf>, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut programs = Vec::new();
    for stage in &m.stages {
        let Some(program) = stage.argv.first() else {
            programs.push(PathBuf::new());
            continue;
        };
        let at = format!("stages.{}.cmd", stage.name);
        if program.contains('/') {
            let path = crate::manifest::normalize(&m.workdir.join(program));
            if !m.written_by_a_stage(&path) && !is_executable(&path) {
                let why = if path.exists() {
                    "is not an executable file"
                } else {
                    "does not exist"
                };
                problems.push(m.problem(
                    &at,
                    format!("stage '{}': program '{program}' {why}", stage.name),
                ));
            }
            programs.push(path);
        } else {
            match find_program(program) {
                Some(path) => programs.push(path),
                None => {
                    problems.push(m.problem(
                        &at,
                        format!(
                            "stage '{}': program '{program}' not found beside kiln-pipeline or on PATH",
                            stage.name
                        ),
                    ));
                    programs.push(PathBuf::new());
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(programs)
    } else {
        Err(problems)
    }
}
