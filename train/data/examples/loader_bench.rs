//! The loader alone, without libtorch in the process: what bench/train
//! measures for "loader only". Same code path as `kiln-train scan`.
//!
//!   loader_bench DATASET CONFIG.yaml [READERS]   → JSON summary on stdout

use std::path::PathBuf;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: loader_bench DATASET CONFIG.yaml [READERS]".into());
    }
    let config =
        kiln_train_data::TrainConfig::read(&PathBuf::from(&args[2])).map_err(|e| e.to_string())?;
    let readers = args
        .get(3)
        .map_or(Ok(0), |r| r.parse())
        .map_err(|e| format!("READERS: {e}"))?;
    let opts = kiln_train_data::scan::ScanOptions {
        dataset: PathBuf::from(&args[1]),
        config,
        readers,
    };
    let summary = kiln_train_data::scan::scan(&opts).map_err(|e| e.to_string())?;
    eprint!("{}", summary.human());
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).expect("serializes")
    );
    Ok(())
}
