//! What identifies a GPU for tuning purposes.

use cudarc::driver::sys;
use serde::{Deserialize, Serialize};

use crate::gpu::{Gpu, GpuError};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub name: String,
    pub compute_capability: (i32, i32),
    /// As `cuDriverGetVersion` reports it: 1000·major + 10·minor (13000 is CUDA 13.0).
    pub driver: i32,
}

impl DeviceInfo {
    pub fn of(gpu: &Gpu) -> Result<DeviceInfo, GpuError> {
        Ok(DeviceInfo {
            name: gpu.name.clone(),
            compute_capability: gpu.compute_capability,
            driver: driver_version()?,
        })
    }

    /// `NVIDIA H100 80GB HBM3 (cc 9.0, driver 13.0)`.
    pub fn describe(&self) -> String {
        let (major, minor) = self.compute_capability;
        format!(
            "{} (cc {major}.{minor}, driver {}.{})",
            self.name,
            self.driver / 1000,
            self.driver % 1000 / 10
        )
    }
}

/// cudarc has no safe wrapper for it. Only called with a `Gpu` open, so the driver is loaded.
fn driver_version() -> Result<i32, GpuError> {
    let mut version = 0;
    // SAFETY: the pointer is to a live i32 the call writes once.
    unsafe { sys::cuDriverGetVersion(&mut version) }.result()?;
    Ok(version)
}
