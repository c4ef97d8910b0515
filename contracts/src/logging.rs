//! The one logging setup every Kiln binary shares: tracing on stderr (stdout
//! is for `--json`), `-v` info, `-vv` debug, `RUST_LOG` over both; colours
//! only on a terminal (a log file or a pipeline's stage log gets plain text).

/// Installs the global subscriber; call once, first thing in `main`.
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
