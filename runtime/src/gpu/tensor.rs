//! Device tensors of 16-bit elements (bf16 or f16 bits) with their shape.

use cudarc::driver::CudaSlice;
use tessera_desc::Dtype;

use super::{Gpu, GpuError};

/// A contiguous `[batch, heads, tokens, head_dim]` tensor on the device.
pub struct DeviceTensor {
    pub data: CudaSlice<u16>,
    pub dtype: Dtype,
    pub shape: [usize; 4],
}

impl DeviceTensor {
    /// Uploads f32 values rounded to `dtype`.
    pub fn from_f32(
        gpu: &Gpu,
        dtype: Dtype,
        shape: [usize; 4],
        values: &[f32],
    ) -> Result<Self, GpuError> {
        let bits: Vec<u16> = values.iter().map(|&x| to_bits(dtype, x)).collect();
        Self::from_bits(gpu, dtype, shape, &bits)
    }

    /// Uploads elements given as `dtype` bit patterns, e.g. as read from a file.
    pub fn from_bits(
        gpu: &Gpu,
        dtype: Dtype,
        shape: [usize; 4],
        bits: &[u16],
    ) -> Result<Self, GpuError> {
        let n: usize = shape.iter().product();
        if bits.len() != n {
            return Err(GpuError::Invalid(format!(
                "{} elements given for shape {shape:?}, which has {n}",
                bits.len()
            )));
        }
        Ok(DeviceTensor {
            data: gpu.stream.clone_htod(bits)?,
            dtype,
            shape,
        })
    }

    /// A tensor whose every element is NaN, so that anything a kernel fails to write shows.
    pub fn poisoned(gpu: &Gpu, dtype: Dtype, shape: [usize; 4]) -> Result<Self, GpuError> {
        let n: usize = shape.iter().product();
        Self::from_f32(gpu, dtype, shape, &vec![f32::NAN; n])
    }

    pub fn to_f32(&self, gpu: &Gpu) -> Result<Vec<f32>, GpuError> {
        let bits = gpu.stream.clone_dtoh(&self.data)?;
        Ok(bits.into_iter().map(|b| from_bits(self.dtype, b)).collect())
    }
}

pub fn to_bits(dtype: Dtype, x: f32) -> u16 {
    match dtype {
        Dtype::F16 => half::f16::from_f32(x).to_bits(),
        _ => half::bf16::from_f32(x).to_bits(),
    }
}

pub fn from_bits(dtype: Dtype, b: u16) -> f32 {
    match dtype {
        Dtype::F16 => half::f16::from_bits(b).to_f32(),
        _ => half::bf16::from_bits(b).to_f32(),
    }
}
