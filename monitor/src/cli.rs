//! Command-line interface (clap derive).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::limits::Amount;

/// The hidden subcommand through which a `--hard` child enters its cgroup.
pub const CGROUP_EXEC: &str = "__cgroup-exec";

#[derive(Parser, Debug)]
#[command(
    name = "kiln-monitor",
    version,
    about = "Run a command under a memory watchdog and stop it before the machine does",
    after_help = "\
Examples:
  kiln-monitor run --limit 5GiB -- kiln-split big.csv --key COMID --out split/
  kiln-monitor run --limit 80% --warn 60% --log mem.jsonl -- python train.py
  kiln-monitor run --min-available 10% -- make features     # like earlyoom -m 10
  kiln-monitor run --limit 2GiB --hard -- ./leaky-job        # + cgroup v2 memory.max
  kiln-monitor watch --pid 4242 --limit 12GiB
  kiln-monitor report mem.jsonl --png mem.png

Exit status: the command's own (128+N when signal N killed it); 124 when the
watchdog stopped it; 125 when kiln-monitor itself failed (bad arguments);
126 when the command cannot be executed; 127 when it is not found."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More logging on stderr (-v info, -vv debug; RUST_LOG overrides)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a command and watch its whole process tree
    Run(RunArgs),
    /// Watch a process that is already running (and its descendants)
    Watch(WatchArgs),
    /// Summarize a --log file, optionally drawing memory over time
    Report(ReportArgs),
    #[command(name = CGROUP_EXEC, hide = true)]
    CgroupExec {
        procs_file: PathBuf,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(Args, Debug, Clone)]
pub struct Limits {
    /// Stop the command when its process tree's RSS reaches this (5GiB, 512MiB, 80% of RAM)
    #[arg(long, value_name = "SIZE|PCT")]
    pub limit: Option<Amount>,
    /// Say so once when the tree's RSS reaches this [default: 80% of --limit]
    #[arg(long, value_name = "SIZE|PCT")]
    pub warn: Option<Amount>,
    /// Stop the command when the system's available memory falls below this
    #[arg(long, value_name = "SIZE|PCT")]
    pub min_available: Option<Amount>,
    /// Time between samples (10ms to 1min)
    #[arg(long, default_value = "100ms", value_parser = parse_interval)]
    pub interval: Duration,
    /// Time between SIGTERM and SIGKILL
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub grace: Duration,
    /// Write every sample and event here as JSON Lines
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Print the summary as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// No summary on stderr (warnings and kills are still reported)
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub limits: Limits,
    /// Also put the command in a cgroup v2 with memory.max, a kernel-enforced backstop
    #[arg(long)]
    pub hard: bool,
    /// memory.max for --hard [default: --limit + 10%]
    #[arg(long, value_name = "SIZE|PCT", requires = "hard")]
    pub hard_limit: Option<Amount>,
    /// The command and its arguments (after `--` if it has options of its own)
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true
    )]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// The process to watch
    #[arg(long)]
    pub pid: u32,
    #[command(flatten)]
    pub limits: Limits,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A log written by `kiln-monitor run --log`
    pub log: PathBuf,
    /// Draw memory over time into this PNG
    #[arg(long, value_name = "FILE")]
    pub png: Option<PathBuf>,
    /// Print the summary as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("'{s}': {e} (e.g. 100ms, 1s)"))?;
    if d < Duration::from_millis(10) || d > Duration::from_secs(60) {
        return Err(format!("'{s}' is outside 10ms..1min"));
    }
    Ok(d)
}
