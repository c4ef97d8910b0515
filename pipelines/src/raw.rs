//! The manifest as serde reads it: every key known (unknown ones are
//! errors, with serde_yaml_ng's line and column), nothing expanded yet.

use indexmap::IndexMap;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    pub name: String,
    #[serde(default)]
    pub workdir: Option<String>,
    #[serde(default)]
    pub vars: IndexMap<String, Scalar>,
    #[serde(default)]
    pub defaults: RawDefaults,
    pub stages: IndexMap<String, RawStage>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub memory_limit: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<u32>,
    #[serde(default)]
    pub env: IndexMap<String, Scalar>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStage {
    #[serde(default)]
    pub desc: Option<String>,
    pub cmd: RawCmd,
    #[serde(default)]
    pub deps: Vec<String>,
    #[serde(default)]
    pub outs: Vec<String>,
    #[serde(default)]
    pub params: IndexMap<String, serde_yaml_ng::Value>,
    pub memory_limit: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<u32>,
    #[serde(default)]
    pub env: IndexMap<String, Scalar>,
    #[serde(default)]
    pub always_run: bool,
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "a command line (string) or an argument list")]
pub enum RawCmd {
    Line(String),
    Argv(Vec<Scalar>),
}

/// A string, number or boolean, kept as the text the user wrote.
#[derive(Deserialize)]
#[serde(untagged, expecting = "a string, number or boolean")]
pub enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    pub fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}
