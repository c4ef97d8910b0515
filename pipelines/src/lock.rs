//! The lock file (`.kiln/<name>/lock.json`): for each stage that last
//! succeeded, what it ran with — command, params, env (hashed: env may hold
//! secrets), each dep's and out's state. A stage is up to date when all of
//! that still holds. Written atomically, only after a stage succeeded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fingerprint::{self, content_change, Hashing, PathState};
use crate::manifest::Stage;

pub const LOCK_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Lock {
    pub version: u32,
    pub stages: BTreeMap<String, StageLock>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageLock {
    pub cmd: Vec<String>,
    pub params: BTreeMap<String, String>,
    /// xxh3-64 of each env value, hex.
    pub env: BTreeMap<String, String>,
    pub deps: BTreeMap<String, PathState>,
    pub outs: BTreeMap<String, PathState>,
    pub finished_at: String,
    pub duration_s: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a kiln-pipeline lock file ({source}); delete it to start over")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("stage '{stage}' succeeded but did not produce its out '{out}'")]
    MissingOut { stage: String, out: String },
    #[error("{0}")]
    Write(#[from] kiln_contracts::ContractError),
}

impl Lock {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("lock.json")
    }

    pub fn load(state_dir: &Path) -> Result<Lock, LockError> {
        let path = Self::path(state_dir);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| LockError::Corrupt { path, source })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Lock {
                version: LOCK_VERSION,
                stages: BTreeMap::new(),
            }),
            Err(source) => Err(LockError::Io { path, source }),
        }
    }

    pub fn save(&self, state_dir: &Path) -> Result<(), LockError> {
        std::fs::create_dir_all(state_dir).map_err(|source| LockError::Io {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let mut bytes = serde_json::to_vec_pretty(self).expect("a lock serializes");
        bytes.push(b'\n');
        kiln_contracts::atomic::write_atomic(&Self::path(state_dir), &bytes)?;
        Ok(())
    }
}

pub fn env_hashes(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    env.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                format!("{:016x}", xxhash_rust::xxh3::xxh3_64(v.as_bytes())),
            )
        })
        .collect()
}

/// Whether a stage can be skipped, and the dep states it was judged on.
#[derive(Debug)]
pub struct Verdict {
    /// None: up to date.
    pub stale: Option<String>,
    pub deps: BTreeMap<String, PathState>,
    /// Current out states (only when up to date).
    pub outs: BTreeMap<String, PathState>,
}

fn io_err(path: &Path, source: std::io::Error) -> LockError {
    LockError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Compares a stage with its lock entry. Deps are fingerprinted even when
/// the verdict is already known, because a run records them.
pub fn check(
    stage: &Stage,
    entry: Option<&StageLock>,
    counters: &Hashing,
) -> Result<Verdict, LockError> {
    let mut deps = BTreeMap::new();
    let mut dep_change = None;
    for dep in &stage.deps {
        let before = entry.and_then(|e| e.deps.get(&dep.shown));
        let now =
            fingerprint::state(&dep.abs, before, counters).map_err(|e| io_err(&dep.abs, e))?;
        if dep_change.is_none() {
            dep_change = match before {
                Some(b) => content_change(b, &now).map(|c| format!("dep {} {c}", dep.shown)),
                None => Some(format!("new dep {}", dep.shown)),
            };
        }
        deps.insert(dep.shown.clone(), now);
    }
    let stale = |reason: String, deps| {
        Ok(Verdict {
            stale: Some(reason),
            deps,
            outs: BTreeMap::new(),
        })
    };
    let Some(entry) = entry else {
        return stale("never ran".into(), deps);
    };
    if stage.always_run {
        return stale("always_run".into(), deps);
    }
    // Params before the command: a param usually reaches the command
    // through ${params.NAME}, and its name says more than "command changed".
    if let Some(keys) = changed_keys(&entry.params, &stage.params) {
        return stale(format!("params changed: {keys}"), deps);
    }
    if entry.cmd != stage.argv {
        return stale(command_change(&entry.cmd, &stage.argv), deps);
    }
    if let Some(keys) = changed_keys(&entry.env, &env_hashes(&stage.env)) {
        return stale(format!("env changed: {keys}"), deps);
    }
    if let Some(reason) = dep_change {
        return stale(reason, deps);
    }
    if let Some(gone) = entry.deps.keys().find(|k| !deps.contains_key(*k)) {
        return stale(format!("dep {gone} was removed from the manifest"), deps);
    }
    let mut outs = BTreeMap::new();
    for out in &stage.outs {
        let before = entry.outs.get(&out.shown);
        let now =
            fingerprint::state(&out.abs, before, counters).map_err(|e| io_err(&out.abs, e))?;
        let change = match (before, &now) {
            (_, PathState::Missing) => Some(format!("out {} is missing", out.shown)),
            (None, _) => Some(format!("new out {}", out.shown)),
            (Some(b), now) => content_change(b, now).map(|c| format!("out {} {c}", out.shown)),
        };
        if let Some(reason) = change {
            return stale(reason, deps);
        }
        outs.insert(out.shown.clone(), now);
    }
    Ok(Verdict {
        stale: None,
        deps,
        outs,
    })
}

/// `command changed (word 5: "<upper.txt" was "<", …)`: where the two differ.
fn command_change(old: &[String], new: &[String]) -> String {
    let same = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let word = |w: Option<&String>| {
        w.map(|w| format!("{w:?}"))
            .unwrap_or_else(|| "nothing".into())
    };
    format!(
        "command changed (word {}: {} was {})",
        same + 1,
        word(new.get(same)),
        word(old.get(same))
    )
}

fn changed_keys(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Option<String> {
    let keys: Vec<&str> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .map(String::as_str)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    (!keys.is_empty()).then(|| keys.join(", "))
}

/// The lock entry for a stage that just succeeded: deps as they were when it
/// started, outs as they are now (every out must exist).
pub fn record(
    stage: &Stage,
    deps: BTreeMap<String, PathState>,
    duration_s: f64,
    counters: &Hashing,
) -> Result<StageLock, LockError> {
    let mut outs = BTreeMap::new();
    for out in &stage.outs {
        let now = fingerprint::state(&out.abs, None, counters).map_err(|e| io_err(&out.abs, e))?;
        if now == PathState::Missing {
            return Err(LockError::MissingOut {
                stage: stage.name.clone(),
                out: out.shown.clone(),
            });
        }
        outs.insert(out.shown.clone(), now);
    }
    Ok(StageLock {
        cmd: stage.argv.clone(),
        params: stage.params.clone(),
        env: env_hashes(&stage.env),
        deps,
        outs,
        finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        duration_s,
    })
}
