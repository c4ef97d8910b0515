use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use kiln_featurize::cli::{Cli, Command};
use kiln_featurize::error::exit;
use kiln_featurize::{manage, FeaturizeError};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("summaries serialize")
    );
}

fn main() -> ExitCode {
    kiln_contracts::mem::avoid_transparent_huge_pages();
    let cli = Cli::parse();
    kiln_contracts::logging::init(cli.verbose);
    let result: Result<u8, FeaturizeError> = match cli.command {
        Some(Command::Info(a)) => manage::info(&a.out, a.ttl.0, a.per_symbol).map(|info| {
            if a.json {
                print_json(&info);
            } else {
                print!("{}", info.human());
            }
            exit::OK
        }),
        Some(Command::Clear(a)) => manage::clear(&a.out, &a.symbols).map(|c| {
            if !c.not_cached.is_empty() {
                eprintln!(
                    "kiln-featurize: not in the cache: {}",
                    c.not_cached.join(", ")
                );
            }
            eprintln!(
                "kiln-featurize: removed {} symbol(s) from {}; {} remain",
                c.removed.len(),
                c.out.display(),
                c.remaining
            );
            if a.json {
                print_json(&c);
            }
            exit::OK
        }),
        None if cli.run.print_spec => {
            print!("{}", kiln_featurize::spec::DEFAULT_SPEC);
            Ok(exit::OK)
        }
        None => {
            let (json, quiet) = (cli.run.json, cli.run.quiet);
            let args: Vec<String> = std::env::args().collect();
            cli.run
                .into_options(std::io::stderr().is_terminal(), args)
                .and_then(|opts| kiln_featurize::run(&opts))
                .map(|summary| {
                    if !quiet {
                        eprint!("{}", summary.human());
                    }
                    if json {
                        print_json(&summary);
                    }
                    if summary.failed.is_empty() {
                        exit::OK
                    } else {
                        exit::SYMBOLS_FAILED
                    }
                })
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("kiln-featurize: error: {e:#}");
            ExitCode::from(e.exit_code())
        }
    }
}
