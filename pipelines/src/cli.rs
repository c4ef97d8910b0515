//! Command-line interface (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "kiln-pipeline",
    version,
    about = "Run Kiln's stages from a YAML manifest, skipping what is up to date",
    after_help = "\
Examples:
  kiln-pipeline run pipelines/demo.yaml              # every stale stage, in order
  kiln-pipeline run pipelines/demo.yaml -j 2         # independent stages two at a time
  kiln-pipeline run pipelines/demo.yaml --from split # split and everything after it
  kiln-pipeline run pipelines/demo.yaml --stage train --force
  kiln-pipeline run pipelines/nightly.yaml --dry-run # what would run, and why
  kiln-pipeline status pipelines/demo.yaml           # which stages are stale and why
  kiln-pipeline graph pipelines/demo.yaml --dot | dot -Tpng > dag.png
  kiln-pipeline validate pipelines/hydro.yaml --var DATA=/data/hydro

Exit status: 0 all selected stages up to date or done; 2 the manifest or the
command line is wrong (nothing ran); 3 a stage failed (its dependents did not
run; the others did); 4 another run of the manifest is in progress; 1
kiln-pipeline itself failed; 128+N when signal N interrupted the run.
Reference: docs/PIPELINES.md."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More logging on stderr (-v info, -vv debug; RUST_LOG overrides)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the stages that are not up to date
    Run(RunArgs),
    /// Show which stages are stale and why
    Status(StatusArgs),
    /// Print the stage graph (text, or Graphviz DOT with --dot)
    Graph(GraphArgs),
    /// Check the manifest (keys, vars, graph, programs, sources) and exit
    Validate(ManifestArgs),
}

#[derive(Args, Debug)]
pub struct ManifestArgs {
    /// The pipeline manifest (YAML)
    pub manifest: PathBuf,
    /// Override a var of the manifest (repeatable)
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Keep the lock, run records and logs here [default: WORKDIR/.kiln/NAME]
    #[arg(long, value_name = "DIR", env = "KILN_PIPELINE_STATE")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// Run only this stage (repeatable); its upstream stages are not run
    #[arg(long = "stage", value_name = "STAGE")]
    pub stages: Vec<String>,
    /// Run this stage and everything downstream of it
    #[arg(long, value_name = "STAGE")]
    pub from: Option<String>,
    /// Run the selected stages even when they are up to date
    #[arg(long)]
    pub force: bool,
    /// Say what would run and why; run and write nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Stages to run at once when independent (each under its memory limit)
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// Also echo each stage's output on stderr (it always goes to its log)
    #[arg(long)]
    pub show_output: bool,
    /// Run records and log directories to keep under .kiln/<name>/
    #[arg(long, default_value_t = 30)]
    pub keep_runs: usize,
    /// Print the run record as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// Only failures on stderr
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// Print the status as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct GraphArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// Graphviz DOT instead of text
    #[arg(long)]
    pub dot: bool,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("'{s}': expected NAME=VALUE")),
    }
}
