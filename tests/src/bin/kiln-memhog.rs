//! kiln-memhog: a process that uses memory on purpose, for kiln-monitor's
//! tests and benchmark.
//!
//! It allocates `--steps` blocks of `--step` bytes, `--every` apart, writing
//! every page so the memory is resident, and prints two JSON lines per step —
//! `{"pid", "allocating", "unix_ms"}` before and `{"pid", "step", "rss",
//! "unix_ms"}` after — so a test knows within one step when it crossed a
//! limit, even if it is killed halfway through the step. `--children N --depth D` first starts a tree of copies of itself
//! (N children each, D levels), all allocating the same way.

use std::io::Write;
use std::process::{Child, Command, ExitCode};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "kiln-memhog",
    version,
    about = "Allocate memory in steps (a test workload for kiln-monitor)",
    after_help = "\
Examples:
  kiln-memhog --step 64MiB --steps 8 --every 100ms --hold 2s
  kiln-memhog --children 2 --depth 2 --step 16MiB --steps 4   # 7 processes
  kiln-memhog --ignore-sigterm --hold 60s                      # needs SIGKILL"
)]
struct Cli {
    /// Bytes added per step.
    #[arg(long, default_value = "16MiB", value_parser = parse_bytes)]
    step: u64,
    /// Number of steps.
    #[arg(long, default_value_t = 4)]
    steps: u32,
    /// Pause between steps.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    every: Duration,
    /// How long to keep the memory after the last step.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    hold: Duration,
    /// Children to start (each a copy of this process).
    #[arg(long, default_value_t = 0)]
    children: u32,
    /// Levels of children (2 = children and grandchildren).
    #[arg(long, default_value_t = 1)]
    depth: u32,
    /// Survive SIGTERM (so only SIGKILL stops it).
    #[arg(long)]
    ignore_sigterm: bool,
    /// Exit status once done.
    #[arg(long, default_value_t = 0)]
    exit_code: u8,
    /// Print this line on stdout and stderr first.
    #[arg(long)]
    echo: Option<String>,
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(s)
        .map_err(|e| format!("'{s}': {e}"))
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn spawn_children(cli: &Cli) -> Vec<Child> {
    if cli.depth == 0 || cli.children == 0 {
        return Vec::new();
    }
    let me = std::env::current_exe().expect("own path");
    (0..cli.children)
        .map(|_| {
            Command::new(&me)
                .args(["--step", &cli.step.to_string()])
                .args(["--steps", &cli.steps.to_string()])
                .args(["--every", &format!("{}ms", cli.every.as_millis())])
                .args(["--hold", &format!("{}ms", cli.hold.as_millis())])
                .args(["--children", &cli.children.to_string()])
                .args(["--depth", &(cli.depth - 1).to_string()])
                .args(cli.ignore_sigterm.then_some("--ignore-sigterm"))
                .spawn()
                .expect("spawn a child memhog")
        })
        .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.ignore_sigterm {
        // A handler that only sets a flag replaces the default action (exit).
        signal_hook::flag::register(
            signal_hook::consts::SIGTERM,
            Arc::new(AtomicBool::new(false)),
        )
        .expect("install a SIGTERM handler");
    }
    if let Some(text) = &cli.echo {
        println!("{text}");
        eprintln!("{text}");
    }
    let mut children = spawn_children(&cli);
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut out = std::io::stdout();
    for step in 1..=cli.steps {
        let line = format!(
            "{{\"pid\":{},\"allocating\":{step},\"unix_ms\":{}}}",
            std::process::id(),
            unix_ms()
        );
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        // Non-zero bytes: the kernel must back every page with real memory.
        blocks.push(vec![0xA5; cli.step as usize]);
        let rss = kiln_contracts::mem::current_rss_bytes().unwrap_or(0);
        let line = format!(
            "{{\"pid\":{},\"step\":{step},\"rss\":{rss},\"unix_ms\":{}}}",
            std::process::id(),
            unix_ms()
        );
        // A closed stdout must not stop the workload.
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        if step < cli.steps {
            std::thread::sleep(cli.every);
        }
    }
    std::thread::sleep(cli.hold);
    for child in &mut children {
        let _ = child.wait();
    }
    std::hint::black_box(&blocks);
    ExitCode::from(cli.exit_code)
}
