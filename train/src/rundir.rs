//! The run directory: everything a training run leaves behind, each file
//! written atomically (temp + fsync + rename), so a killed run leaves the
//! previous complete file or none.
//!
//! ```text
//! RUN/config.yaml                 effective configuration
//! RUN/scaler.json                 feature/target/attribute mean and std
//! RUN/model.safetensors           best weights (PyTorch state_dict names)
//! RUN/metrics.csv                 one row per epoch
//! RUN/loss.png                    train/val loss per epoch
//! RUN/state.json                  where training stands (for --resume)
//! RUN/checkpoints/epoch-0007.safetensors   weights + Adam state after epoch 7
//! RUN/summary.json                final summary
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{Result, TrainError};
use crate::model::ModelShape;

pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
    pub fn config(&self) -> PathBuf {
        self.path.join("config.yaml")
    }
    pub fn scaler(&self) -> PathBuf {
        self.path.join("scaler.json")
    }
    pub fn model(&self) -> PathBuf {
        self.path.join("model.safetensors")
    }
    pub fn metrics(&self) -> PathBuf {
        self.path.join("metrics.csv")
    }
    pub fn loss_png(&self) -> PathBuf {
        self.path.join("loss.png")
    }
    pub fn state(&self) -> PathBuf {
        self.path.join("state.json")
    }
    pub fn summary(&self) -> PathBuf {
        self.path.join("summary.json")
    }
    pub fn checkpoints(&self) -> PathBuf {
        self.path.join("checkpoints")
    }
    pub fn checkpoint(&self, epoch: usize) -> PathBuf {
        self.checkpoints()
            .join(format!("epoch-{epoch:04}.safetensors"))
    }

    /// A run lives here already (something --resume could continue).
    pub fn holds_run(&self) -> bool {
        self.state().exists() || self.model().exists()
    }

    /// Create the directories, and remove the temp files of atomic writes a
    /// killed run left behind (`.NAME.tmp.*`; never a file under its name).
    pub fn create(&self) -> Result<()> {
        std::fs::create_dir_all(self.checkpoints())
            .map_err(|e| TrainError::io(self.checkpoints(), e))?;
        for dir in [self.path.clone(), self.checkpoints()] {
            let entries = std::fs::read_dir(&dir).map_err(|e| TrainError::io(&dir, e))?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && name.contains(".tmp") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }

    /// Remove what a previous run left (for --force), nothing else.
    pub fn clear(&self) -> Result<()> {
        for f in [
            self.state(),
            self.model(),
            self.metrics(),
            self.loss_png(),
            self.summary(),
            self.scaler(),
            self.config(),
        ] {
            match std::fs::remove_file(&f) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(TrainError::io(f, e))
                }
                _ => {}
            }
        }
        match std::fs::remove_dir_all(self.checkpoints()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(TrainError::io(self.checkpoints(), e))
            }
            _ => Ok(()),
        }
    }

    /// A file the run needs (eval/predict/resume), with a helpful error.
    pub fn require(&self, path: PathBuf) -> Result<PathBuf> {
        if path.exists() {
            Ok(path)
        } else {
            Err(TrainError::data(
                &path,
                format!(
                    "missing; is {} a kiln-train run directory?",
                    self.path.display()
                ),
            ))
        }
    }
}

/// Where training stands after an epoch: enough to resume exactly.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    pub epochs_done: usize,
    pub best_epoch: usize,
    pub best_val_loss: f64,
    pub epochs_without_improvement: usize,
    pub adam_step: i64,
    pub model: ModelShape,
    /// Training ended (all epochs, or early stopping).
    pub finished: bool,
    pub stopped_early: bool,
}

impl TrainState {
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| TrainError::data(path, format!("not a kiln-train state file: {e}")))
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("state serializes");
        kiln_contracts::atomic::write_atomic(path, &json)?;
        Ok(())
    }
}

/// Write float32 tensors as safetensors, atomically, with string metadata.
pub fn save_tensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
            let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
            let numel = t.numel();
            let mut values = vec![0f32; numel];
            t.copy_data(&mut values, numel);
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), shape, bytes)
        })
        .collect();
    let views: Vec<(&str, TensorView<'_>)> = data
        .iter()
        .map(|(name, shape, bytes)| {
            let view =
                TensorView::new(Dtype::F32, shape.clone(), bytes).expect("shape matches data");
            (name.as_str(), view)
        })
        .collect();
    let bytes = safetensors::serialize(views, &Some(metadata)).map_err(|e| {
        TrainError::Internal(format!("{}: cannot serialize tensors: {e}", path.display()))
    })?;
    kiln_contracts::atomic::write_atomic(path, &bytes)?;
    Ok(())
}

pub fn load_tensors(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let tensors = Tensor::read_safetensors(path)
        .map_err(|e| TrainError::data(path, format!("not a readable safetensors file: {e}")))?;
    Ok(tensors.into_iter().collect())
}
