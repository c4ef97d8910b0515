use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use kiln_train::cli::{Cli, Command};
use kiln_train::error::{exit, TrainError};
use serde::Serialize;

fn report<S: Serialize>(
    result: Result<S, TrainError>,
    human: impl Fn(&S) -> String,
    json: bool,
    quiet: bool,
) -> ExitCode {
    match result {
        Ok(summary) => {
            if !quiet {
                eprint!("{}", human(&summary));
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&summary).expect("summary serializes")
                );
            }
            ExitCode::from(exit::OK as u8)
        }
        Err(e) => {
            eprintln!("kiln-train: error: {e:#}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    kiln_contracts::logging::init(cli.verbose);
    let (json, quiet) = (cli.json, cli.quiet);
    let progress = std::io::stderr().is_terminal() && !quiet;
    match cli.command {
        Command::Fit(args) => report(
            args.into_options(progress, quiet)
                .and_then(|o| kiln_train::training::fit(&o)),
            |s| s.human(),
            json,
            quiet,
        ),
        Command::Eval(args) => report(
            kiln_train::infer::eval(&args.into_options()),
            |s| s.human(),
            json,
            quiet,
        ),
        Command::Predict(args) => report(
            kiln_train::infer::predict(&args.into_options()),
            |s| s.human(),
            json,
            quiet,
        ),
        Command::Scan(args) => {
            let opts = args
                .config
                .resolve(None)
                .map(|config| kiln_train::scan::ScanOptions {
                    dataset: args.dataset,
                    config,
                    readers: args.readers,
                });
            report(
                opts.and_then(|o| kiln_train::scan::scan(&o)),
                |s| s.human(),
                json,
                quiet,
            )
        }
    }
}
