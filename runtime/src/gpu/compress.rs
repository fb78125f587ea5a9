//! Mustafar's pruning and compression on the GPU (`llvm::compress` in codegen): dense K or V
//! `[batch, kv_heads, tokens, head_dim]` on the device becomes a [`DeviceBitmapCache`], the
//! bytes `BitmapCache::compress` of the host-pruned values would be (the authors' rule).
//!
//! One launch, one CTA per 64-token block, that reads the input once: it prunes the block,
//! writes its bitmaps, finds where its values go with a decoupled look-back over the blocks
//! before it (over all planes, so the head bases come out of it too), and writes its values.
//! The buffers live in a [`CompressWorkspace`], which grows to the largest input it has seen
//! and is reused, so that repeated compression (a cache growing chunk by chunk) neither
//! allocates nor synchronizes; its values buffer has room for every value, because ties with
//! the threshold can keep a whole token. [`CompressWorkspace::cache`] copies the last result
//! out as a cache of its own, which reads the planes' value counts back (one small
//! synchronizing copy).

use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits};
use cudarc::nvrtc::Ptx;
use tessera_codegen::format::bitmap::{PAD, TILE};
use tessera_codegen::format::prune::smallest_rank;
use tessera_codegen::format::{BitmapCache, PruneRule, TileOrder, from_f32};
use tessera_codegen::{COMPRESS_THREADS, compress_entry, compress_ptx};
use tessera_desc::Dtype;

use super::mustafar::{BitmapShape, DeviceArrays, DeviceBitmapCache};
use super::{DeviceTensor, Gpu, GpuError};

/// The compression entry for one head dim, loaded.
pub struct Compressor {
    head_dim: usize,
    kernel: cudarc::driver::CudaFunction,
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
        let planes = batch.checked_mul(kv_heads).ok_or_else(|| GpuError::Invalid(format!("{batch} × {kv_heads} planes overflow")))?;
        let blocks = tokens / TILE;
        let tiles = blocks.checked_mul(d).ok_or_else(|| GpuError::Invalid(format!("{tokens} tokens of {d} channels overflow the tile count")))?;
        // Block starts and head bases count 16-byte units in i32 (and below 2^29 in the
        // look-back's words), and a tile takes at most 8 (every value kept): bounding the worst
        // case keeps every index in range whatever the data. Offsets count pairs per plane, 4 per
        // unit, so they fit too; so do the blocks, one CTA each in a 1-D grid, and their words.
        let units = planes.checked_mul(tiles).and_then(|t| t.checked_mul(PAD)).and_then(|u| u.checked_mul(4));
        int("value pairs (every value kept)", units.unwrap_or(usize::MAX))?;
        Ok(Layout { planes, tokens, head_dim: d, blocks, tiles })
    }

    fn is_empty(&self) -> bool {
        self.planes == 0 || self.tokens == 0
    }

    /// 64-token blocks over all planes: the launch's CTAs.
    fn ctas(&self) -> usize {
        self.planes * self.blocks
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

/// The epoch of the launch after one of `epoch`, and whether the look-back's words must be
/// cleared before it: epochs tag the words (`llvm::compress` in codegen) so that a launch reads
/// the words earlier ones left as unpublished without a clearing launch before each; 0, a fresh
/// buffer's, is never a launch's, so they start over at 1 once they wrap, from cleared words.
fn next_epoch(epoch: u32) -> (u32, bool) {
    match epoch.checked_add(1) {
        Some(next) => (next, false),
        None => (1, true),
    }
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
    /// The look-back's words: one per 64-token block, then one per plane.
    flags: Slot<u64>,
    /// The counter CTAs take their blocks from; each launch leaves it at zero.
    ticket: Slot<u32>,
    /// The last launch's epoch (0: none yet).
    epoch: u32,
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
        Ok(Compressor { head_dim, kernel: module.load_function(&compress_entry(head_dim as u32))? })
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
            flags: Slot(None),
            ticket: Slot(None),
            epoch: 0,
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
            self.launch(gpu, ws, x, order, smallest_rank(sparsity, l.head_dim), &l)?;
        }
        ws.last = Some((order, x.dtype, l));
        Ok(())
    }

    fn launch(&self, gpu: &Gpu, ws: &mut CompressWorkspace, x: &DeviceTensor, order: TileOrder, rank: usize, l: &Layout) -> Result<(), GpuError> {
        let (tokens, rank, ctas) = (int("tokens", l.tokens)?, int("rank", rank)?, int("blocks", l.ctas())?);
        let order: i32 = match order {
            TileOrder::Keys => 0,
            TileOrder::Values => 1,
        };
        let bitmaps = ws.bitmaps.fit(gpu, l.planes * l.tiles)?;
        let offsets = ws.offsets.fit(gpu, l.planes * (l.tiles + 1))?;
        let head_base = ws.head_base.fit(gpu, l.planes)?;
        let totals = ws.totals.fit(gpu, l.planes)?;
        let values = ws.values.fit(gpu, l.values_bound())?;
        let flags = ws.flags.fit(gpu, l.ctas() + l.planes)?;
        let ticket = ws.ticket.fit(gpu, 1)?;
        let (epoch, clear) = next_epoch(ws.epoch);
        if clear {
            gpu.stream.memset_zeros(&mut *flags)?;
        }
        ws.epoch = epoch;
        let grid = LaunchConfig { grid_dim: (ctas as u32, 1, 1), block_dim: (COMPRESS_THREADS, 1, 1), shared_mem_bytes: 0 };
        let infinity = i32::from(from_f32(x.dtype, f32::INFINITY));
        // The kernel reads the epoch's bits as an i32.
        let epoch = epoch as i32;
        // SAFETY: arguments in the order and types of COMPRESS_PARAMS; x holds planes × tokens ×
        // d values (checked by `compress_into`), the format's arrays were fitted above (bitmaps
        // planes × tiles, offsets planes × (tiles + 1), head bases and totals one per plane,
        // values the bound of every value kept plus the trailing unit), the words one per CTA
        // and one per plane, the ticket counter one, and the epoch is not 0. The counter is zero
        // (fresh, or left so by the launch before) and no other launch takes tickets from it
        // meanwhile: a workspace's launches write its buffers, so they run one after another (on
        // one stream, or across streams by cudarc's event tracking of written buffers).
        let mut launch = gpu.stream.launch_builder(&self.kernel);
        launch
            .arg(&x.data)
            .arg(&mut *bitmaps)
            .arg(&mut *offsets)
            .arg(&mut *head_base)
            .arg(&mut *totals)
            .arg(&mut *values)
            .arg(&mut *flags)
            .arg(&mut *ticket)
            .arg(&tokens)
            .arg(&rank)
            .arg(&order)
            .arg(&infinity)
            .arg(&epoch);
        unsafe { launch.launch(grid) }?;
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
        // More planes than a grid's y extent: the blocks form a 1-D grid.
        assert_eq!(Layout::new([256, 256, 64, 128], 128).unwrap().ctas(), 65536);
        assert!(Layout::new([1 << 16, 256, 64, 128], 128).is_err());
        assert!(Layout::new([1, 1, 1 << 25, 128], 128).is_err());
        assert!(Layout::new([1, 1, (1 << 25) - 64, 128], 128).is_ok());
        assert!(Layout::new([2, 1, (1 << 24), 128], 128).is_err());
    }

    #[test]
    fn epochs_skip_zero_and_clear_the_words_when_they_wrap() {
        assert_eq!(next_epoch(0), (1, false));
        assert_eq!(next_epoch(41), (42, false));
        assert_eq!(next_epoch(u32::MAX), (1, true));
    }

    #[test]
    fn planes_start_where_the_previous_ones_end() {
        assert_eq!(Layout::starts(&[12, 0, 4]), (vec![0, 24, 24], 32 + PAD));
        assert_eq!(Layout::starts(&[]), (vec![], PAD));
    }
}
