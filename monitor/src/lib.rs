//! kiln-monitor: a memory watchdog for Kiln's stages and any other command.
//!
//! * [`run`] starts a command in its own process group and [`watch`] follows
//!   a running one; both hand the tree to [`watchdog`], which samples it
//!   ([`sampler`]), warns once, stops it on a breach of the [`limits`], and
//!   writes the [`record`] log and the [`summary`].
//! * [`cgroup`] adds the optional kernel-enforced `--hard` limit.
//! * [`report`] draws a log as a chart.
//!
//! Documented for users in docs/MONITOR.md.

pub mod cgroup;
pub mod cli;
pub mod error;
pub mod limits;
pub mod record;
pub mod report;
pub mod run;
pub mod sampler;
pub mod summary;
pub mod watch;
pub mod watchdog;

use cli::{Command, Limits};
use error::{exit, MonitorError};
use limits::Thresholds;
use summary::Summary;

/// Runs a parsed command line; returns kiln-monitor's exit status.
pub fn main_with(cli: cli::Cli) -> i32 {
    match execute(cli.command) {
        Ok(status) => status,
        Err(e) => {
            eprintln!("kiln-monitor: error: {e}");
            e.exit_code()
        }
    }
}

fn execute(command: Command) -> Result<i32, MonitorError> {
    match command {
        Command::Run(args) => {
            let mut settings = settings(&args.limits, sampler::total_memory())?;
            let hard = if args.hard {
                hard_cgroup(&args, &mut settings)?
            } else {
                None
            };
            let summary = run::run(&args.command, &settings, hard)?;
            Ok(finish(&summary, &args.limits))
        }
        Command::Watch(args) => {
            let settings = settings(&args.limits, sampler::total_memory())?;
            let summary = watch::watch_pid(args.pid, &settings)?;
            Ok(finish(&summary, &args.limits))
        }
        Command::Report(args) => {
            let records = record::read_log(&args.log)?;
            let summary = Summary::from_records(&records);
            eprint!("{}", summary.human());
            if let Some(png) = &args.png {
                report::chart(&records, png)?;
                eprintln!("  chart: {}", png.display());
            }
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&summary).expect("summary serializes")
                );
            }
            Ok(exit::OK)
        }
        Command::CgroupExec {
            procs_file,
            command,
        } => Ok(cgroup::exec_in_cgroup(&procs_file, &command)),
    }
}

fn settings(limits: &Limits, total: u64) -> Result<watchdog::Settings, MonitorError> {
    let thresholds = Thresholds::resolve(limits.limit, limits.warn, limits.min_available, total)
        .map_err(MonitorError::Usage)?;
    if let Some(log) = &limits.log {
        // Fail before starting anything, not after the command ran.
        if let Some(parent) = log.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.is_dir() {
                return Err(MonitorError::Usage(format!(
                    "--log {}: directory {} does not exist",
                    log.display(),
                    parent.display()
                )));
            }
        }
    }
    Ok(watchdog::Settings {
        thresholds,
        interval: limits.interval,
        grace: limits.grace,
        log: limits.log.clone(),
        hard_limit: None,
        total_memory: total,
    })
}

/// The `--hard` cgroup. A usage error (no limit to derive it from) is an
/// error; a machine without cgroup v2 is not: that is said in one line, and
/// the watchdog goes on alone.
fn hard_cgroup(
    args: &cli::RunArgs,
    settings: &mut watchdog::Settings,
) -> Result<Option<cgroup::HardCgroup>, MonitorError> {
    let max = match (args.hard_limit, settings.thresholds.tree_limit) {
        (Some(amount), _) => amount.resolve(settings.total_memory),
        (None, Some(limit)) => limit + limit / 10,
        (None, None) => {
            return Err(MonitorError::Usage(
                "--hard needs --limit or --hard-limit to know the cgroup's memory.max".into(),
            ))
        }
    };
    match cgroup::HardCgroup::create(max) {
        Ok(cgroup) => {
            settings.hard_limit = Some(cgroup.max);
            tracing::info!("hard limit: {}", cgroup.describe());
            Ok(Some(cgroup))
        }
        Err(why) => {
            eprintln!(
                "kiln-monitor: --hard is not available: {why}; the watchdog alone enforces the limit"
            );
            Ok(None)
        }
    }
}

fn finish(summary: &Summary, limits: &Limits) -> i32 {
    if !limits.quiet {
        eprint!("{}", summary.human());
    }
    if limits.json {
        println!(
            "{}",
            serde_json::to_string_pretty(summary).expect("summary serializes")
        );
    }
    summary.exit_status.unwrap_or(exit::MONITOR_ERROR)
}
