//! Tensors on the host and in safetensors files: what `tessera run` reads and writes. Nothing
//! here needs a GPU, so every check on a user's file runs (and is tested) without one.

mod file;
mod inputs;

use std::borrow::Cow;

pub use file::{TensorFile, write_tensors};
pub use inputs::{AttentionInputs, check_inputs, read_inputs};
pub use safetensors::Dtype as FileDtype;

/// A tensor as a safetensors file holds it: any element type, row-major, little-endian bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub dtype: FileDtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl HostTensor {
    /// 16-bit elements (bf16, f16) given as their bit patterns.
    pub fn from_bits(dtype: FileDtype, shape: Vec<usize>, bits: &[u16]) -> HostTensor {
        HostTensor {
            dtype,
            shape,
            bytes: bits.iter().flat_map(|b| b.to_le_bytes()).collect(),
        }
    }

    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> HostTensor {
        HostTensor {
            dtype: FileDtype::F32,
            shape,
            bytes: values.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    /// The elements as 16-bit patterns; meaningful for bf16 and f16 tensors.
    pub fn bits(&self) -> Vec<u16> {
        self.bytes
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect()
    }

    /// The elements widened to f32, for the element types tessera reads or writes.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        let bits = self.bits().into_iter();
        match self.dtype {
            FileDtype::BF16 => Some(bits.map(|b| half::bf16::from_bits(b).to_f32()).collect()),
            FileDtype::F16 => Some(bits.map(|b| half::f16::from_bits(b).to_f32()).collect()),
            FileDtype::F32 => Some(
                self.bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            ),
            _ => None,
        }
    }
}

/// How safetensors names a kernel's element type; `None` for one it has no name for.
pub fn file_dtype(dtype: tessera_desc::Dtype) -> Option<FileDtype> {
    match dtype {
        tessera_desc::Dtype::Bf16 => Some(FileDtype::BF16),
        tessera_desc::Dtype::F16 => Some(FileDtype::F16),
        _ => None,
    }
}

impl safetensors::View for &HostTensor {
    fn dtype(&self) -> FileDtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }

    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

#[cfg(test)]
mod tests;
