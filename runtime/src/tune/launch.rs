//! One launch of a candidate on a problem's inputs, whatever the kernel reads: dense K and V
//! (`Attention`), or a Mustafar cache (`MustafarDecode`, its decode and merge entries), so that
//! the correctness gate and the timing take every kernel the same way.

use cudarc::driver::CudaSlice;
use tessera_codegen::format::MustafarCache;
use tessera_desc::{Config, KernelDesc};

use super::decode::is_decode;
use crate::gpu::{Attention, AttentionArgs, DecodeArgs, DeviceMustafarCache, DeviceTensor, Gpu, GpuError, MustafarDecode};

/// A candidate loaded on a GPU.
pub enum Kernel {
    Attention(Attention),
    /// Launched with the default split count, as launches without `--splits` are.
    Decode(MustafarDecode),
}

/// What a kernel reads besides Q. (A sweep holds two per GPU: the cache is boxed for size's
/// sake only.)
pub enum Kv {
    Dense { k: DeviceTensor, v: DeviceTensor },
    Cache(Box<DeviceMustafarCache>),
}

/// A problem's inputs on one GPU.
pub struct Inputs {
    pub q: DeviceTensor,
    pub kv: Kv,
}

impl Inputs {
    /// Q and a host cache of `batch × kv_heads` planes.
    pub fn with_cache(gpu: &Gpu, q: DeviceTensor, cache: &MustafarCache, batch: usize, kv_heads: usize) -> Result<Inputs, GpuError> {
        Ok(Inputs {
            q,
            kv: Kv::Cache(Box::new(DeviceMustafarCache::upload(gpu, cache, batch, kv_heads)?)),
        })
    }
}

impl Kernel {
    pub fn load(gpu: &Gpu, desc: &KernelDesc, config: &Config) -> Result<Kernel, GpuError> {
        Ok(if is_decode(desc) {
            Kernel::Decode(MustafarDecode::load(gpu, desc, config)?)
        } else {
            Kernel::Attention(Attention::load(gpu, desc, config)?)
        })
    }

    /// Runs on `inputs`, writing `o` (and `lse` when given); `grid` as `AttentionArgs::grid`.
    pub fn run(
        &mut self,
        gpu: &Gpu,
        inputs: &Inputs,
        o: &mut DeviceTensor,
        lse: Option<&mut CudaSlice<f32>>,
        grid: Option<&[usize]>,
    ) -> Result<(), GpuError> {
        match (self, &inputs.kv) {
            (Kernel::Attention(attn), Kv::Dense { k, v }) => attn.run(
                gpu,
                AttentionArgs {
                    q: &inputs.q,
                    k,
                    v,
                    o,
                    lse,
                    scale: None,
                    grid,
                    blocks: None,
                },
            ),
            (Kernel::Decode(decode), Kv::Cache(cache)) => decode.run(
                gpu,
                DecodeArgs {
                    q: &inputs.q,
                    cache,
                    o,
                    lse,
                    scale: None,
                    splits: None,
                },
            ),
            _ => Err(GpuError::Invalid(
                "a decode kernel reads a Mustafar cache and an attention kernel dense K and V".into(),
            )),
        }
    }
}
