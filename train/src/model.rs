//! The seed's branch model: an LSTM over the window, an MLP over the static
//! attributes, joined into a regression head (plain LSTM + head without
//! attributes).
//!
//! Parameter names are PyTorch's `state_dict` names for this module, so
//! `model.safetensors` loads with `load_state_dict` (docs/TRAIN.md):
//!
//! ```python
//! class BranchLSTM(nn.Module):
//!     def __init__(self, F, A, K, H, L, Ha, p):
//!         super().__init__()
//!         self.lstm = nn.LSTM(F, H, L, batch_first=True, dropout=p if L > 1 else 0)
//!         self.attr = nn.Sequential(nn.Linear(A, Ha), nn.ReLU())       # only if A > 0
//!         self.head = nn.Sequential(nn.Linear(H + Ha, H), nn.ReLU(), nn.Dropout(p), nn.Linear(H, K))
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use crate::error::{Result, TrainError};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelShape {
    pub features: i64,
    pub attributes: i64,
    pub targets: i64,
    pub hidden: i64,
    pub layers: i64,
    pub attribute_hidden: i64,
    pub dropout: f64,
}

pub struct BranchLstm {
    pub vs: nn::VarStore,
    lstm: Vec<Tensor>,
    attr: Option<nn::Linear>,
    head_in: nn::Linear,
    head_out: nn::Linear,
    pub shape: ModelShape,
}

impl BranchLstm {
    pub fn new(shape: ModelShape, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let (h, f) = (shape.hidden, shape.features);
        // PyTorch's LSTM initialization: U(-1/sqrt(H), 1/sqrt(H)) everywhere.
        let bound = 1.0 / (h as f64).sqrt();
        let init = nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let lstm_path = &root / "lstm";
        let mut lstm = Vec::new();
        for l in 0..shape.layers {
            let input = if l == 0 { f } else { h };
            lstm.push(lstm_path.var(&format!("weight_ih_l{l}"), &[4 * h, input], init));
            lstm.push(lstm_path.var(&format!("weight_hh_l{l}"), &[4 * h, h], init));
            lstm.push(lstm_path.var(&format!("bias_ih_l{l}"), &[4 * h], init));
            lstm.push(lstm_path.var(&format!("bias_hh_l{l}"), &[4 * h], init));
        }
        let attr = (shape.attributes > 0).then(|| {
            nn::linear(
                &root / "attr" / "0",
                shape.attributes,
                shape.attribute_hidden,
                Default::default(),
            )
        });
        let joined = h + if attr.is_some() {
            shape.attribute_hidden
        } else {
            0
        };
        let head_in = nn::linear(&root / "head" / "0", joined, h, Default::default());
        let head_out = nn::linear(&root / "head" / "3", h, shape.targets, Default::default());
        Self {
            vs,
            lstm,
            attr,
            head_in,
            head_out,
            shape,
        }
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// `x`: `[B, T, F]`, `attributes`: `[B, A]` → `[B, K]`.
    pub fn forward(&self, x: &Tensor, attributes: &Tensor, train: bool) -> Tensor {
        let b = x.size()[0];
        let s = &self.shape;
        let zeros = Tensor::zeros([s.layers, b, s.hidden], (Kind::Float, self.device()));
        let (out, _, _) = x.lstm(
            &[&zeros, &zeros],
            &self.lstm.iter().collect::<Vec<_>>(),
            true,
            s.layers,
            if s.layers > 1 { s.dropout } else { 0.0 },
            train,
            false,
            true,
        );
        let last = out.select(1, -1);
        let joined = match &self.attr {
            Some(attr) => Tensor::cat(&[last, attr.forward(attributes).relu()], 1),
            None => last,
        };
        let hidden = self
            .head_in
            .forward(&joined)
            .relu()
            .dropout(s.dropout, train);
        self.head_out.forward(&hidden)
    }

    /// Parameters sorted by name (the order optimizer state is kept in).
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let vars: BTreeMap<String, Tensor> = self.vs.variables().into_iter().collect();
        vars.into_iter().collect()
    }

    /// Copy named tensors into the parameters; every parameter must be there
    /// with its shape.
    pub fn load_tensors(&mut self, tensors: &BTreeMap<String, Tensor>, path: &Path) -> Result<()> {
        for (name, mut var) in self.named_parameters() {
            let src = tensors.get(&name).ok_or_else(|| {
                TrainError::data(
                    path,
                    format!(
                        "no tensor {name:?}; was it saved by this kiln-train with this config?"
                    ),
                )
            })?;
            if src.size() != var.size() {
                return Err(TrainError::data(
                    path,
                    format!(
                        "tensor {name:?} has shape {:?}, the model needs {:?}",
                        src.size(),
                        var.size()
                    ),
                ));
            }
            tch::no_grad(|| var.copy_(src));
        }
        Ok(())
    }
}

/// Mean squared error over observed targets only (NaN = not observed).
pub fn masked_mse(pred: &Tensor, y: &Tensor) -> (Tensor, i64) {
    let observed = y.isnan().logical_not();
    let count = i64::try_from(observed.sum(Kind::Int64)).unwrap_or(0);
    let diff = (pred - y.nan_to_num(0.0, None, None)) * observed.to_kind(Kind::Float);
    let loss = diff.square().sum(Kind::Float) / (count.max(1) as f64);
    (loss, count)
}

/// Adam (Kingma & Ba) with global-norm gradient clipping, kept in tensors we
/// own so that a checkpoint holds the full optimizer state and `--resume`
/// continues exactly where training stopped.
pub struct Adam {
    pub lr: f64,
    pub step: i64,
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
    clip: f64,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

impl Adam {
    pub fn new(params: &[(String, Tensor)], lr: f64, clip: f64) -> Self {
        let zeros = || params.iter().map(|(_, p)| p.zeros_like()).collect();
        Self {
            lr,
            step: 0,
            m: zeros(),
            v: zeros(),
            clip,
        }
    }

    pub fn zero_grad(params: &mut [(String, Tensor)]) {
        for (_, p) in params.iter_mut() {
            p.zero_grad();
        }
    }

    /// One update from the gradients in `params`. Returns the gradient norm
    /// before clipping.
    pub fn step(&mut self, params: &mut [(String, Tensor)]) -> f64 {
        tch::no_grad(|| {
            let grads: Vec<Tensor> = params.iter().map(|(_, p)| p.grad()).collect();
            let norm_sq = grads
                .iter()
                .filter(|g| g.defined())
                .map(|g| g.square().sum(Kind::Float))
                .fold(None::<Tensor>, |acc, s| {
                    Some(acc.map_or(s.shallow_clone(), |a| a + s))
                });
            let norm = norm_sq.map_or(0.0, |t| f64::try_from(t.sqrt()).unwrap_or(f64::NAN));
            let scale = if self.clip > 0.0 && norm > self.clip {
                self.clip / (norm + 1e-6)
            } else {
                1.0
            };
            self.step += 1;
            let bc1 = 1.0 - BETA1.powi(self.step as i32);
            let bc2 = 1.0 - BETA2.powi(self.step as i32);
            for (i, ((_, p), g)) in params.iter_mut().zip(&grads).enumerate() {
                if !g.defined() {
                    continue;
                }
                let g = g * scale;
                let _ = self.m[i].g_mul_scalar_(BETA1).g_add_(&(&g * (1.0 - BETA1)));
                let _ = self.v[i]
                    .g_mul_scalar_(BETA2)
                    .g_add_(&(g.square() * (1.0 - BETA2)));
                let denom = (&self.v[i] / bc2).sqrt() + EPS;
                let update = (&self.m[i] / bc1) / denom * self.lr;
                let _ = p.g_sub_(&update);
            }
            norm
        })
    }
}
