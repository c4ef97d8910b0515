use std::process::ExitCode;

use clap::Parser;
use kiln_monitor::cli::Cli;
use kiln_monitor::error::exit;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Usage errors get 125, not clap's 2: the command's own statuses
            // pass through, so kiln-monitor's must not look like them.
            let code = if e.use_stderr() {
                exit::MONITOR_ERROR
            } else {
                0
            };
            let _ = e.print();
            return ExitCode::from(code as u8);
        }
    };
    kiln_contracts::logging::init(cli.verbose);
    ExitCode::from(kiln_monitor::main_with(cli) as u8)
}
