//! Device and compute dtype, chosen once at start-up from `--device` / `--dtype`.

use candle_core::{DType, Device};

use super::{ModelError, Result};

pub use super::pref::{DevicePref, DtypePref};

/// Opens the device a preference names (candle's side of [`DevicePref`]).
pub trait OpenDevice {
    fn open(self) -> Result<Device>;
}

impl OpenDevice for DevicePref {
    fn open(self) -> Result<Device> {
        match self {
            DevicePref::Cpu => Ok(Device::Cpu),
            DevicePref::Auto => {
                if candle_core::utils::cuda_is_available() {
                    Device::new_cuda(0).map_err(|e| ModelError::Device(e.to_string()))
                } else {
                    Ok(Device::Cpu)
                }
            }
            DevicePref::Cuda(n) => {
                if !candle_core::utils::cuda_is_available() {
                    return Err(ModelError::Device(format!(
                        "cuda:{n} requested but this build has no CUDA support (rebuild with `--features cuda`) or no GPU is visible"
                    )));
                }
                Device::new_cuda(n).map_err(|e| ModelError::Device(format!("cuda:{n}: {e}")))
            }
        }
    }
}

pub fn device_label(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => "cuda".into(),
        Device::Metal(_) => "metal".into(),
    }
}

/// The compute dtype a preference names on a device (candle's side of [`DtypePref`]).
pub trait ResolveDtype {
    fn resolve(self, device: &Device) -> DType;
}

impl ResolveDtype for DtypePref {
    /// f32 on the CPU (candle's CPU half-precision matmuls are slow), bf16 on a GPU.
    fn resolve(self, device: &Device) -> DType {
        match self {
            DtypePref::F32 => DType::F32,
            DtypePref::F16 => DType::F16,
            DtypePref::Bf16 => DType::BF16,
            DtypePref::Auto => {
                if device.is_cpu() {
                    DType::F32
                } else {
                    DType::BF16
                }
            }
        }
    }
}
