use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use kiln_train::cli::{Cli, Command};
use kiln_train::error::{exit, TrainError};
use serde::Serialize;

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

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
    init_logging(cli.verbose);
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
