use std::process::ExitCode;

use clap::Parser;
use kiln_monitor::cli::Cli;
use kiln_monitor::error::exit;

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
    init_logging(cli.verbose);
    ExitCode::from(kiln_monitor::main_with(cli) as u8)
}
