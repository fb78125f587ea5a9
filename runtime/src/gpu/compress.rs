//! Mustafar's pruning and compression on the GPU (`llvm::compress` in codegen): dense K or V
//! `[batch, kv_heads, tokens, head_dim]` on the device becomes a [`DeviceBitmapCache`], the
//! bytes `BitmapCache::compress` of the host-pruned values would be (the authors' rule).
//!
//! Three launches and nothing read back in between: prune + bitmaps + each 64-token block's
//! padded value count, the scan that places every block's values (over all planes, so the
//! head bases come out of it too), then the scatter of the kept values. The buffers live in a
//! [`CompressWorkspace`], which grows to the largest input it has seen and is reused, so that
//! repeated compression (a cache growing chunk by chunk) neither allocates nor synchronizes;
//! its values buffer has room for every value, because ties with the threshold can keep a whole
//! token. [`CompressWorkspace::cache`] copies the last result out as a cache of its own, which
//! reads the planes' value counts back (one small synchronizing copy).

use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits};
use cudarc::nvrtc::Ptx;
use tessera_codegen::format::bitmap::{PAD, TILE};
use tessera_codegen::format::prune::smallest_rank;
use tessera_codegen::format::{BitmapCache, PruneRule, TileOrder, from_f32};
use tessera_codegen::{COMPRESS_THREADS, SCAN_THREADS, compress_entries, compress_ptx};
use tessera_desc::Dtype;

use super::mustafar::{BitmapShape, DeviceArrays, DeviceBitmapCache};
use super::{DeviceTensor, Gpu, GpuError};

/// The compression entries for one head dim, loaded.
pub struct Compressor {
    head_dim: usize,
    prune: cudarc::driver::CudaFunction,
    scan: cudarc::driver::CudaFunction,
    scatter: cudarc::driver::CudaFunction,
}

/// The sizes of one compression, checked before anything is launched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    planes: usize,
    tokens: usize,
    head_dim: usize,
    /// 64-token blocks per plane.
    blocks: usize,
    /// Tiles per plane.
    tiles: usize,
}

/// The most planes a launch takes (its grid's y extent).
const MAX_PLANES: usize = 65535;

fn int(name: &str, v: usize) -> Result<i32, GpuError> {
    i32::try_from(v).map_err(|_| GpuError::Invalid(format!("{name} = {v} does not fit in i32")))
}

impl Layout {
    fn new(shape: [usize; 4], head_dim: usize) -> Result<Layout, GpuError> {
        let [batch, kv_heads, tokens, d] = shape;
        if d != head_dim {
            return Err(GpuError::Invalid(format!("x has head_dim {d}; this compressor was built for {head_dim}")));
        }
        if !tokens.is_multiple_of(TILE) {
            return Err(GpuError::Invalid(format!("{tokens} tokens per plane: compression takes whole 64-token tiles")));
        }
        let planes = batch.checked_mul(kv_heads).filter(|&p| p <= MAX_PLANES);
        let planes = planes.ok_or_else(|| GpuError::Invalid(format!("{batch} × {kv_heads} planes: at most {MAX_PLANES}")))?;
        let blocks = tokens / TILE;
        let tiles = blocks.checked_mul(d).ok_or_else(|| GpuError::Invalid(format!("{tokens} tokens of {d} channels overflow the tile count")))?;
        // Block starts and head bases count 16-byte units in i32, and a tile takes at most 8
        // (every value kept): bounding the worst case keeps every index in range whatever the
        // data. Offsets count pairs per plane, 4 per unit, so they fit too.
        let units = planes.checked_mul(tiles).and_then(|t| t.checked_mul(PAD)).and_then(|u| u.checked_mul(4));
        int("value pairs (every value kept)", units.unwrap_or(usize::MAX))?;
        Ok(Layout { planes, tokens, head_dim: d, blocks, tiles })
    }

    fn is_empty(&self) -> bool {
        self.planes == 0 || self.tokens == 0
    }

    /// Values with every element kept, the decode kernel's trailing unit after them.
    fn values_bound(&self) -> usize {
        self.planes * self.tiles * TILE + PAD
    }

    /// Each plane's values from its value pair count: where each starts (values), and the
    /// length of the values array (trailing unit included).
    fn starts(totals: &[usize]) -> (Vec<usize>, usize) {
        let mut at = 0;
        let starts = totals
            .iter()
            .map(|&t| {
                let s = at;
                at += 2 * t;
                s
            })
            .collect();
        (starts, at + PAD)
    }
}

/// The three launches of a compression, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    Prune,
    Scan,
    Scatter,
}

impl Stage {
    pub(crate) const ALL: [Stage; 3] = [Stage::Prune, Stage::Scan, Stage::Scatter];
}

/// One device buffer of a workspace, allocated on first use and grown when too short.
struct Slot<T>(Option<CudaSlice<T>>);

impl<T: DeviceRepr + ValidAsZeroBits> Slot<T> {
    fn fit(&mut self, gpu: &Gpu, len: usize) -> Result<&mut CudaSlice<T>, GpuError> {
        if self.0.as_ref().is_none_or(|b| b.len() < len) {
            // Dropped first, so that the old and the new buffer are never both held.
            self.0 = None;
            self.0 = Some(gpu.stream.alloc_zeros::<T>(len.max(1))?);
        }
        self.0.as_mut().ok_or_else(|| GpuError::Invalid("a workspace buffer was not allocated".into()))
    }

    fn get(&self) -> Result<&CudaSlice<T>, GpuError> {
        self.0.as_ref().ok_or_else(|| GpuError::Invalid("the workspace has not compressed anything yet".into()))
    }

    /// The first `n` elements (`n > 0`: the driver refuses empty allocations), copied into an
    /// array of their own.
    fn copy(&self, gpu: &Gpu, n: usize) -> Result<CudaSlice<T>, GpuError> {
        let buf = self.get()?;
        let view = buf.try_slice(..n).ok_or_else(|| GpuError::Invalid(format!("{n} elements asked of a workspace buffer of {}", buf.len())))?;
        Ok(gpu.stream.clone_dtod(&view)?)
    }
}

/// Device buffers for [`Compressor::compress_into`], and its last result.
pub struct CompressWorkspace {
    /// What the last compression was, `None` before the first.
    last: Option<(TileOrder, Dtype, Layout)>,
    bitmaps: Slot<u64>,
    offsets: Slot<i32>,
    head_base: Slot<i32>,
    /// Value pairs per plane.
    totals: Slot<i32>,
    values: Slot<u16>,
    /// Per 64-token block: its padded values in 16-byte units, and where they start.
    block_units: Slot<i32>,
    block_start: Slot<i32>,
}

impl CompressWorkspace {
    /// The last compression as a cache of its own (the workspace stays as it is): the planes'
    /// value counts are read back, then the arrays are copied at their exact lengths.
    pub fn cache(&self, gpu: &Gpu) -> Result<DeviceBitmapCache, GpuError> {
        let (order, dtype, l) = self.last.ok_or_else(|| GpuError::Invalid("the workspace has not compressed anything yet".into()))?;
        if l.is_empty() {
            let empty = BitmapCache::compress(&[], dtype, l.planes, l.tokens, l.head_dim, order).map_err(|e| GpuError::Invalid(e.to_string()))?;
            return DeviceBitmapCache::upload(gpu, &empty);
        }
        let totals: Vec<usize> = gpu.download(self.totals.get()?, l.planes)?.into_iter().map(|t| t.max(0) as usize).collect();
        let (starts, values) = Layout::starts(&totals);
        let arrays = DeviceArrays {
            bitmaps: self.bitmaps.copy(gpu, l.planes * l.tiles)?,
            offsets: self.offsets.copy(gpu, l.planes * (l.tiles + 1))?,
            values: self.values.copy(gpu, values)?,
            head_base: self.head_base.copy(gpu, l.planes)?,
        };
        let shape = BitmapShape { order, dtype, planes: l.planes, tokens: l.tokens, head_dim: l.head_dim };
        Ok(DeviceBitmapCache::from_device(shape, arrays, (totals, starts)))
    }
}

impl Compressor {
    pub fn load(gpu: &Gpu, head_dim: usize) -> Result<Compressor, GpuError> {
        let ptx = compress_ptx(head_dim as u32, gpu.target()?)?;
        let module = gpu.ctx.load_module(Ptx::from_src(ptx))?;
        let [prune, scan, scatter] = compress_entries(head_dim as u32);
        Ok(Compressor {
            head_dim,
            prune: module.load_function(&prune)?,
            scan: module.load_function(&scan)?,
            scatter: module.load_function(&scatter)?,
        })
    }

    /// An empty workspace: its buffers are allocated by the first compression into it.
    pub fn workspace(&self) -> CompressWorkspace {
        CompressWorkspace {
            last: None,
            bitmaps: Slot(None),
            offsets: Slot(None),
            head_base: Slot(None),
            totals: Slot(None),
            values: Slot(None),
            block_units: Slot(None),
            block_start: Slot(None),
        }
    }

    /// Prunes every token of `x` at `sparsity` (`rule` must be the authors', the one the kernel
    /// implements; exact top-k prunes on the host) and compresses it in `order`, as a cache of
    /// its own (`compress_into` a fresh workspace, then [`CompressWorkspace::cache`]).
    pub fn compress(&self, gpu: &Gpu, x: &DeviceTensor, order: TileOrder, sparsity: f64, rule: PruneRule) -> Result<DeviceBitmapCache, GpuError> {
        let mut ws = self.workspace();
        self.compress_into(gpu, &mut ws, x, order, sparsity, rule)?;
        ws.cache(gpu)
    }

    /// As [`Compressor::compress`], into `ws`: only launches once `ws` has held an input this
    /// large, nothing allocated or read back.
    pub fn compress_into(&self, gpu: &Gpu, ws: &mut CompressWorkspace, x: &DeviceTensor, order: TileOrder, sparsity: f64, rule: PruneRule) -> Result<(), GpuError> {
        if rule != PruneRule::KthSmallest {
            return Err(GpuError::Unsupported(format!("GPU compression prunes by the authors' rule (KthSmallest), not {rule:?}: prune on the host")));
        }
        if !(0.0..1.0).contains(&sparsity) {
            return Err(GpuError::Invalid(format!("sparsity {sparsity} is not in [0, 1)")));
        }
        let l = Layout::new(x.shape, self.head_dim)?;
        if x.data.len() < l.planes * l.tokens * l.head_dim {
            return Err(GpuError::Invalid(format!("x holds {} values, its shape {:?} says more", x.data.len(), x.shape)));
        }
        ws.last = None;
        if !l.is_empty() {
            self.launch(gpu, ws, x, order, smallest_rank(sparsity, l.head_dim), &l, &Stage::ALL)?;
        }
        ws.last = Some((order, x.dtype, l));
        Ok(())
    }

    /// One of the three launches alone, for timing them one by one: the later ones read what
    /// the earlier ones left in `ws`, so `ws` must hold a compression of `x` in `order` at
    /// `sparsity` (which repeating a stage leaves as it was).
    pub(crate) fn stage(&self, gpu: &Gpu, ws: &mut CompressWorkspace, x: &DeviceTensor, order: TileOrder, sparsity: f64, stage: Stage) -> Result<(), GpuError> {
        let l = Layout::new(x.shape, self.head_dim)?;
        if l.is_empty() || ws.last != Some((order, x.dtype, l)) {
            return Err(GpuError::Invalid("a compression stage runs on a workspace holding a compression of the same input".into()));
        }
        self.launch(gpu, ws, x, order, smallest_rank(sparsity, l.head_dim), &l, &[stage])
    }

    #[allow(clippy::too_many_arguments)]
    fn launch(&self, gpu: &Gpu, ws: &mut CompressWorkspace, x: &DeviceTensor, order: TileOrder, rank: usize, l: &Layout, stages: &[Stage]) -> Result<(), GpuError> {
        let all_blocks = l.planes * l.blocks;
        let (tokens, rank, blocks_i) = (int("tokens", l.tokens)?, int("rank", rank)?, int("blocks", all_blocks)?);
        let order: i32 = match order {
            TileOrder::Keys => 0,
            TileOrder::Values => 1,
        };
        let blocks = LaunchConfig {
            grid_dim: (int("blocks per plane", l.blocks)? as u32, l.planes as u32, 1),
            block_dim: (COMPRESS_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        if stages.contains(&Stage::Prune) {
            self.prune(gpu, ws, x, l, [tokens, rank, order], blocks)?;
        }
        if stages.contains(&Stage::Scan) {
            let block_start = ws.block_start.fit(gpu, all_blocks + 1)?;
            let one = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (SCAN_THREADS, 1, 1), shared_mem_bytes: 0 };
            let mut launch = gpu.stream.launch_builder(&self.scan);
            launch.arg(ws.block_units.get()?).arg(&mut *block_start).arg(&blocks_i);
            // SAFETY: as SCAN_PARAMS; block units were fitted to one per block by the pruning
            // stage (a stage alone runs only on a workspace that held this layout), starts one
            // more.
            unsafe { launch.launch(one) }?;
        }
        if stages.contains(&Stage::Scatter) {
            self.scatter(gpu, ws, x, l, [tokens, order], blocks)?;
        }
        Ok(())
    }

    fn prune(&self, gpu: &Gpu, ws: &mut CompressWorkspace, x: &DeviceTensor, l: &Layout, [tokens, rank, order]: [i32; 3], blocks: LaunchConfig) -> Result<(), GpuError> {
        let bitmaps = ws.bitmaps.fit(gpu, l.planes * l.tiles)?;
        let block_units = ws.block_units.fit(gpu, l.planes * l.blocks)?;
        // SAFETY: arguments in the order and types of PRUNE_PARAMS; x holds planes × tokens × d
        // values (checked by `compress_into`), bitmaps and block units were fitted above.
        let mut launch = gpu.stream.launch_builder(&self.prune);
        let infinity = i32::from(from_f32(x.dtype, f32::INFINITY));
        launch.arg(&x.data).arg(&mut *bitmaps).arg(&mut *block_units).arg(&tokens).arg(&rank).arg(&order).arg(&infinity);
        unsafe { launch.launch(blocks) }?;
        Ok(())
    }

    fn scatter(&self, gpu: &Gpu, ws: &mut CompressWorkspace, x: &DeviceTensor, l: &Layout, [tokens, order]: [i32; 2], blocks: LaunchConfig) -> Result<(), GpuError> {
        let offsets = ws.offsets.fit(gpu, l.planes * (l.tiles + 1))?;
        let head_base = ws.head_base.fit(gpu, l.planes)?;
        let totals = ws.totals.fit(gpu, l.planes)?;
        let values = ws.values.fit(gpu, l.values_bound())?;
        // SAFETY: arguments in the order and types of SCATTER_PARAMS; x as for the pruning,
        // bitmaps and block starts fitted by the stages before (planes × tiles, one more than
        // blocks), offsets planes × (tiles + 1), head bases and totals one per plane, values the
        // bound of every value kept plus the trailing unit.
        let mut launch = gpu.stream.launch_builder(&self.scatter);
        launch
            .arg(&x.data)
            .arg(ws.bitmaps.get()?)
            .arg(ws.block_start.get()?)
            .arg(&mut *offsets)
            .arg(&mut *head_base)
            .arg(&mut *totals)
            .arg(&mut *values)
            .arg(&tokens)
            .arg(&order);
        unsafe { launch.launch(blocks) }?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_checked_before_any_launch() {
        let l = Layout::new([2, 4, 320, 128], 128).unwrap();
        assert_eq!((l.planes, l.blocks, l.tiles), (8, 5, 5 * 128));
        assert_eq!(l.values_bound(), 8 * 320 * 128 + PAD);
        assert!(Layout::new([1, 1, 64, 64], 64).unwrap().tokens == 64);
        assert!(Layout::new([1, 0, 64, 128], 128).unwrap().is_empty());
        assert!(Layout::new([1, 1, 0, 128], 128).unwrap().is_empty());
        // Wrong head dim, partial blocks, too many planes, indices past i32.
        assert!(Layout::new([1, 1, 64, 64], 128).is_err());
        assert!(Layout::new([1, 1, 100, 128], 128).is_err());
        assert!(Layout::new([256, 256, 64, 128], 128).is_err());
        assert!(Layout::new([1, 1, 1 << 25, 128], 128).is_err());
        assert!(Layout::new([1, 1, (1 << 25) - 64, 128], 128).is_ok());
        assert!(Layout::new([2, 1, (1 << 24), 128], 128).is_err());
    }

    #[test]
    fn planes_start_where_the_previous_ones_end() {
        assert_eq!(Layout::starts(&[12, 0, 4]), (vec![0, 24, 24], 32 + PAD));
        assert_eq!(Layout::starts(&[]), (vec![], PAD));
    }
}
