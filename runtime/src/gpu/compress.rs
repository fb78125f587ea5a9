//! Mustafar's pruning and compression on the GPU (`llvm::compress` in codegen): dense K or V
//! `[batch, kv_heads, tokens, head_dim]` on the device becomes a [`DeviceBitmapCache`], the
//! bytes `BitmapCache::compress` of the host-pruned values would be (the authors' rule).
//!
//! Three launches and one small copy back: prune + bitmaps + counts, the offsets' scan with
//! each plane's total, then (after the host has placed the planes' values and sized the
//! buffer from the totals) prune again + scatter.

use cudarc::driver::{CudaFunction, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::Ptx;
use tessera_codegen::format::bitmap::{PAD, TILE};
use tessera_codegen::format::prune::smallest_rank;
use tessera_codegen::format::{BitmapCache, PruneRule, TileOrder};
use tessera_codegen::{COMPRESS_THREADS, compress_entries, compress_ptx};

use super::mustafar::{BitmapShape, DeviceArrays, DeviceBitmapCache};
use super::{DeviceTensor, Gpu, GpuError};

/// The compression entries for one head dim, loaded.
pub struct Compressor {
    head_dim: usize,
    prune_count: CudaFunction,
    offsets: CudaFunction,
    scatter: CudaFunction,
}

fn int(name: &str, v: usize) -> Result<i32, GpuError> {
    i32::try_from(v).map_err(|_| GpuError::Invalid(format!("{name} = {v} does not fit in i32")))
}

impl Compressor {
    pub fn load(gpu: &Gpu, head_dim: usize) -> Result<Compressor, GpuError> {
        let ptx = compress_ptx(head_dim as u32, gpu.target()?)?;
        let module = gpu.ctx.load_module(Ptx::from_src(ptx))?;
        let [prune_count, offsets, scatter] = compress_entries(head_dim as u32);
        Ok(Compressor {
            head_dim,
            prune_count: module.load_function(&prune_count)?,
            offsets: module.load_function(&offsets)?,
            scatter: module.load_function(&scatter)?,
        })
    }

    /// Prunes every token of `x` at `sparsity` (`rule` must be the authors', the one the kernel
    /// implements; exact top-k prunes on the host) and compresses it in `order`.
    pub fn compress(&self, gpu: &Gpu, x: &DeviceTensor, order: TileOrder, sparsity: f64, rule: PruneRule) -> Result<DeviceBitmapCache, GpuError> {
        let [batch, kv_heads, tokens, d] = x.shape;
        if d != self.head_dim {
            return Err(GpuError::Invalid(format!("x has head_dim {d}; this compressor was built for {}", self.head_dim)));
        }
        if rule != PruneRule::KthSmallest {
            return Err(GpuError::Unsupported(format!("GPU compression prunes by the authors' rule (KthSmallest), not {rule:?}: prune on the host")));
        }
        if !(0.0..1.0).contains(&sparsity) {
            return Err(GpuError::Invalid(format!("sparsity {sparsity} is not in [0, 1)")));
        }
        if !tokens.is_multiple_of(TILE) {
            return Err(GpuError::Invalid(format!("{tokens} tokens per plane: compression takes whole 64-token tiles")));
        }
        let planes = batch * kv_heads;
        let tiles = tokens / TILE * d;
        let (planes_i, tokens_i, tiles_i) = (int("planes", planes)?, int("tokens", tokens)?, int("tiles", tiles)?);
        // Offsets count value pairs in i32: at most 32 pairs per tile.
        int("offsets", (tiles + 1) * 32)?;
        let rank = int("rank", smallest_rank(sparsity, d))?;
        let order_i: i32 = match order {
            TileOrder::Keys => 0,
            TileOrder::Values => 1,
        };
        if planes == 0 || tokens == 0 {
            let empty = BitmapCache::compress(&[], x.dtype, planes, tokens, d, order).map_err(|e| GpuError::Invalid(e.to_string()))?;
            return DeviceBitmapCache::upload(gpu, &empty);
        }
        let blocks = LaunchConfig {
            grid_dim: (int("blocks", tokens / TILE)? as u32, planes_i as u32, 1),
            block_dim: (COMPRESS_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        if blocks.grid_dim.1 > 65535 {
            return Err(GpuError::Invalid(format!("{planes} planes: at most 65535")));
        }
        let mut bitmaps = gpu.stream.alloc_zeros::<u64>(planes * tiles)?;
        let mut counts = gpu.stream.alloc_zeros::<i32>(planes * tiles)?;
        let mut offsets = gpu.stream.alloc_zeros::<i32>(planes * (tiles + 1))?;
        let mut totals = gpu.stream.alloc_zeros::<i32>(planes)?;
        // SAFETY (all three launches): arguments in the order and types of the entries'
        // PRUNE_COUNT_PARAMS / OFFSETS_PARAMS / SCATTER_PARAMS; x holds planes × tokens × d
        // values (its shape), and every output was sized above from the same numbers.
        let mut launch = gpu.stream.launch_builder(&self.prune_count);
        launch.arg(&x.data).arg(&mut bitmaps).arg(&mut counts).arg(&tokens_i).arg(&rank).arg(&order_i);
        unsafe { launch.launch(blocks) }?;
        let scan = LaunchConfig { grid_dim: (planes_i as u32, 1, 1), block_dim: (COMPRESS_THREADS, 1, 1), shared_mem_bytes: 0 };
        let mut launch = gpu.stream.launch_builder(&self.offsets);
        launch.arg(&counts).arg(&mut offsets).arg(&mut totals).arg(&tiles_i);
        unsafe { launch.launch(scan) }?;
        // Each plane's values start where the previous ones end, in 16-byte units.
        let totals: Vec<usize> = gpu.stream.clone_dtoh(&totals)?.into_iter().map(|t| t.max(0) as usize).collect();
        let (mut head_base, mut starts) = (Vec::with_capacity(planes), Vec::with_capacity(planes));
        let mut pairs = 0usize;
        for &t in &totals {
            head_base.push(int("head base", pairs / 4)?);
            starts.push(2 * pairs);
            pairs += t;
        }
        let mut values = gpu.stream.alloc_zeros::<u16>(2 * pairs + PAD)?;
        let head_base = gpu.stream.clone_htod(&head_base)?;
        let mut launch = gpu.stream.launch_builder(&self.scatter);
        launch.arg(&x.data).arg(&offsets).arg(&head_base).arg(&mut values).arg(&tokens_i).arg(&rank).arg(&order_i);
        unsafe { launch.launch(blocks) }?;
        Ok(DeviceBitmapCache::from_device(
            BitmapShape { order, dtype: x.dtype, planes, tokens, head_dim: d },
            DeviceArrays { bitmaps, offsets, values, head_base },
            (totals, starts),
        ))
    }
}
