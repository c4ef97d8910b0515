use std::process::ExitCode;

use clap::Parser;
use kiln_pipeline::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    kiln_contracts::logging::init(cli.verbose);
    ExitCode::from(kiln_pipeline::main_with(cli).clamp(0, 255) as u8)
}
