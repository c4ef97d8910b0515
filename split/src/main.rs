use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use kiln_split::cli::Args;
use kiln_split::error::exit;

// glibc's malloc keeps freed chunk-sized buffers in per-thread arenas and
// raises its trim threshold as it goes, so RSS crept up with the input size;
// mimalloc returns memory promptly and is faster for our allocation pattern.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    kiln_contracts::logging::init(args.verbose);
    let (json, quiet) = (args.json, args.quiet);
    let command: Vec<String> = std::env::args().collect();
    let result = args
        .into_options(std::io::stderr().is_terminal(), command)
        .and_then(|opts| kiln_split::run(&opts));
    match result {
        Ok(summary) => {
            if !quiet {
                eprint!("{}", summary.human());
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
            eprintln!("kiln-split: error: {e:#}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
