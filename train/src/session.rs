//! What fit, eval and predict share: choosing the device, and running the
//! model over a part's windows.

use std::sync::Arc;

use tch::{Device, Kind, Tensor};

use crate::config::DeviceChoice;
use crate::error::{Result, TrainError};
use crate::loader::{Loader, LoaderOptions, MiniBatch};
use crate::model::BranchLstm;
use crate::plan::Plan;
use crate::scaler::Scaler;
use crate::windows::SkipCounts;

pub fn select_device(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => Ok(Device::cuda_if_available()),
        DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        DeviceChoice::Cuda => Err(TrainError::Config(
            "device cuda was requested but libtorch sees no CUDA GPU (driver missing, or no GPU); \
             use --device auto or cpu"
                .into(),
        )),
    }
}

pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// A minibatch as model tensors on `device`: x `[B,T,F]`, attributes
/// `[B,A]` (`[B,0]` without), y `[B,K]`.
pub fn to_tensors(
    mb: &MiniBatch,
    model: &BranchLstm,
    window: usize,
    device: Device,
) -> (Tensor, Tensor, Tensor) {
    let b = mb.size as i64;
    let s = &model.shape;
    let x = Tensor::from_slice(&mb.x)
        .view([b, window as i64, s.features])
        .to_device(device);
    let a = if s.attributes > 0 {
        Tensor::from_slice(&mb.attributes)
            .view([b, s.attributes])
            .to_device(device)
    } else {
        Tensor::zeros([b, 0], (Kind::Float, device))
    };
    let y = Tensor::from_slice(&mb.y)
        .view([b, s.targets])
        .to_device(device);
    (x, a, y)
}

/// Run the model (eval mode, no gradients) over the windows `opts` selects;
/// `each` gets every minibatch with its scaled predictions `[B × K]`.
pub fn predict_windows(
    model: &BranchLstm,
    plan: &Arc<Plan>,
    scaler: &Arc<Scaler>,
    opts: LoaderOptions,
    mut each: impl FnMut(&MiniBatch, &[f32]),
) -> Result<SkipCounts> {
    let window = opts.rules.window;
    let _guard = tch::no_grad_guard();
    let streamed = Loader::start(plan.clone(), scaler.clone(), opts, 0).for_each(|mb| {
        let (x, a, _) = to_tensors(&mb, model, window, model.device());
        let pred = model
            .forward(&x, &a, false)
            .to_device(Device::Cpu)
            .contiguous();
        let numel = pred.numel();
        let mut values = vec![0f32; numel];
        pred.copy_data(&mut values, numel);
        each(&mb, &values);
        Ok(())
    })?;
    Ok(streamed.skipped)
}
