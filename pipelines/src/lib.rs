//! kiln-pipeline: chain Kiln's stages from a YAML manifest (docs/PIPELINES.md).
//!
//! [`manifest`] reads and checks the manifest, [`dag`] derives the stage
//! graph from deps and outs, [`lock`] and [`fingerprint`] decide what is up
//! to date, [`run`] schedules stages and [`exec`] runs one under
//! kiln-monitor.

pub mod cli;
pub mod dag;
pub mod error;
pub mod exec;
pub mod fingerprint;
pub mod graph;
pub mod interp;
pub mod lock;
pub mod manifest;
pub mod pipeline;
pub mod positions;
pub mod raw;
pub mod record;
pub mod resolve;
pub mod run;
pub mod stage;
pub mod status;
pub mod tools;
pub mod ui;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use cli::{Cli, Command};
use error::{exit, PipelineError};
use pipeline::Pipeline;

fn open(args: &cli::ManifestArgs) -> Result<Pipeline, PipelineError> {
    let mut p = Pipeline::open(&args.manifest, &args.vars)?;
    if let Some(dir) = &args.state_dir {
        p.state_dir = std::path::absolute(dir).map_err(|e| PipelineError::io(dir, e))?;
    }
    Ok(p)
}

/// Runs a parsed command line; returns the exit status.
pub fn main_with(cli: Cli) -> i32 {
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kiln-pipeline: {e}");
            e.exit_code()
        }
    }
}

fn dispatch(cli: Cli) -> Result<i32, PipelineError> {
    match cli.command {
        Command::Validate(args) => {
            let p = open(&args)?;
            let all = (0..p.manifest.stages.len()).collect();
            p.check_sources(&all)?;
            println!(
                "{}: ok ({} stages, workdir {})",
                args.manifest.display(),
                p.manifest.stages.len(),
                p.manifest.workdir.display()
            );
            Ok(exit::OK)
        }
        Command::Graph(args) => {
            let p = open(&args.manifest)?;
            print!(
                "{}",
                if args.dot {
                    graph::dot(&p)
                } else {
                    graph::text(&p)
                }
            );
            Ok(exit::OK)
        }
        Command::Status(args) => {
            let p = open(&args.manifest)?;
            let lines = status::status(&p)?;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&lines).expect("serializes")
                );
            } else {
                print!("{}", status::status_text(&p, &lines));
            }
            Ok(exit::OK)
        }
        Command::Run(args) => {
            let p = open(&args.manifest)?;
            let stop = Arc::new(AtomicUsize::new(0));
            for signal in [
                signal_hook::consts::SIGINT,
                signal_hook::consts::SIGTERM,
                signal_hook::consts::SIGHUP,
            ] {
                signal_hook::flag::register_usize(signal, stop.clone(), signal as usize).map_err(
                    |e| PipelineError::Setup(format!("cannot handle signal {signal}: {e}")),
                )?;
            }
            let opts = run::RunOptions {
                only: args.stages,
                from: args.from,
                force: args.force,
                dry_run: args.dry_run,
                jobs: args.jobs as usize,
                show_output: args.show_output,
                keep_runs: args.keep_runs,
                quiet: args.quiet,
            };
            let outcome = run::run(&p, &opts, &stop)?;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&outcome.record).expect("serializes")
                );
            }
            Ok(outcome.exit_code)
        }
    }
}
