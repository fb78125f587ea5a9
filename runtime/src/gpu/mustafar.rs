//! Mustafar decode on a GPU: a compressed cache uploaded once ([`DeviceMustafarCache`]), and the
//! checked launch of a decode kernel ([`MustafarDecode`], `ir::decode`) and its merge entry.
//!
//! One decode step is two launches: the decode entry, grid `(splits, kv_heads, batch)`, writes
//! each split's f32 output and LSE to a workspace; the merge entry, one CTA per query head,
//! combines them into `o` (and `lse`). Every shape, dtype and size is checked before either.

use cudarc::driver::{CudaFunction, CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg, sys};
use tessera_codegen::format::bitmap::{PAD, TILE};
use tessera_codegen::format::{BitmapCache, MustafarCache, TileOrder};
use tessera_codegen::ir::Program;
use tessera_codegen::ir::decode::DecodeSizes;
use tessera_desc::{Config, Dtype, KernelDesc, Load};

use super::{DeviceTensor, Gpu, GpuError};

/// One bitmap-compressed cache's arrays on the device (`BitmapCache`'s, as they are). The
/// shape is private with the arrays: launches trust it, so it cannot change apart from them.
pub struct DeviceBitmapCache {
    order: TileOrder,
    dtype: Dtype,
    /// `batch × kv_heads` planes of `tokens × head_dim`.
    planes: usize,
    tokens: usize,
    head_dim: usize,
    bitmaps: CudaSlice<u64>,
    offsets: CudaSlice<i32>,
    values: CudaSlice<u16>,
    head_base: CudaSlice<i32>,
    /// Value pairs per plane (each plane's last offset) and where each plane's values start
    /// (its head base in values), kept on the host so that appending reads nothing back but
    /// the chunk's offsets.
    totals: Vec<usize>,
    starts: Vec<usize>,
    /// Bytes of the format (bitmaps, offsets, padded values, head bases).
    bytes: usize,
}

/// Uploads `data`, or one default element for an empty array (a zero-byte allocation is an
/// error for the driver; the kernel reads nothing from an empty cache).
fn upload<T: DeviceRepr + Default + Copy>(gpu: &Gpu, data: &[T]) -> Result<CudaSlice<T>, GpuError> {
    let one = [T::default()];
    Ok(gpu
        .stream
        .clone_htod(if data.is_empty() { &one[..] } else { data })?)
}

/// What a [`DeviceBitmapCache`] holds, besides its arrays.
pub(super) struct BitmapShape {
    pub order: TileOrder,
    pub dtype: Dtype,
    pub planes: usize,
    pub tokens: usize,
    pub head_dim: usize,
}

/// A cache's arrays made on the device (`gpu::compress`); `values` ends with `PAD` zeros.
pub(super) struct DeviceArrays {
    pub bitmaps: CudaSlice<u64>,
    pub offsets: CudaSlice<i32>,
    pub values: CudaSlice<u16>,
    pub head_base: CudaSlice<i32>,
}

impl DeviceBitmapCache {
    /// A cache written on the device, plane `p` holding `totals[p]` value pairs from value
    /// `starts[p]` on.
    pub(super) fn from_device(shape: BitmapShape, arrays: DeviceArrays, (totals, starts): (Vec<usize>, Vec<usize>)) -> Self {
        let BitmapShape { order, dtype, planes, tokens, head_dim } = shape;
        let (bitmaps, offsets, values, head_base) = (arrays.bitmaps, arrays.offsets, arrays.values, arrays.head_base);
        DeviceBitmapCache { order, dtype, planes, tokens, head_dim, bytes: 0, bitmaps, offsets, values, head_base, totals, starts }.with_bytes()
    }

    fn tiles_per_plane(&self) -> usize {
        self.tokens * self.head_dim / TILE
    }

    /// The cache with its byte count: bitmaps, offsets, values (without the trailing unit), head
    /// bases, as `BitmapCache::bytes` counts them.
    fn with_bytes(mut self) -> Self {
        let tiles = self.planes * self.tiles_per_plane();
        let values: usize = self.totals.iter().map(|t| 2 * t).sum();
        self.bytes = 8 * tiles + 4 * (tiles + self.planes) + 2 * values + 4 * self.planes;
        self
    }

    /// Appends `chunk`'s tokens after this cache's, plane by plane, without recompressing
    /// anything (`BitmapCache::append` on the device): the arrays are re-laid with device
    /// copies, and only the chunk's offsets (one chunk's worth) pass through the host to be
    /// rebased on each plane's value count.
    pub fn append(&mut self, gpu: &Gpu, chunk: &DeviceBitmapCache) -> Result<(), GpuError> {
        let shape = |c: &DeviceBitmapCache| (c.order, c.dtype, c.planes, c.head_dim);
        if shape(self) != shape(chunk) {
            return Err(GpuError::Invalid(format!("appending a chunk of {:?} to a cache of {:?}", shape(chunk), shape(self))));
        }
        let (planes, old, new) = (self.planes, self.tiles_per_plane(), chunk.tiles_per_plane());
        let tiles = old + new;
        let value_units = |totals: &[usize]| totals.iter().map(|t| 2 * t / PAD).sum::<usize>();
        let totals: Vec<usize> = self.totals.iter().zip(&chunk.totals).map(|(a, b)| a + b).collect();
        let units = value_units(&totals);
        // i32 offsets and head bases, as the format and the kernel index them.
        let fits = |n: usize| i32::try_from(n).map_err(|_| GpuError::Invalid(format!("{n} does not fit the format's i32 indices")));
        fits(planes * (tiles + 1))?;
        fits(units)?;
        let mut bitmaps = gpu.stream.alloc_zeros::<u64>((planes * tiles).max(1))?;
        let mut offsets = gpu.stream.alloc_zeros::<i32>(planes * (tiles + 1))?;
        let mut values = gpu.stream.alloc_zeros::<u16>(units * PAD + PAD)?;
        let chunk_offsets = gpu.download(&chunk.offsets, chunk.offsets.len())?;
        let (mut head_base, mut starts) = (Vec::with_capacity(planes), Vec::with_capacity(planes));
        let mut at = 0usize;
        // `src[from..from + n]` to `dst[to..to + n]` (nothing for n = 0: an empty array is a
        // one-element placeholder).
        fn copy<T: DeviceRepr>(gpu: &Gpu, src: &CudaSlice<T>, from: usize, dst: &mut CudaSlice<T>, to: usize, n: usize) -> Result<(), GpuError> {
            if n > 0 {
                gpu.stream.memcpy_dtod(&src.slice(from..from + n), &mut dst.slice_mut(to..to + n))?;
            }
            Ok(())
        }
        for p in 0..planes {
            copy(gpu, &self.bitmaps, p * old, &mut bitmaps, p * tiles, old)?;
            copy(gpu, &chunk.bitmaps, p * new, &mut bitmaps, p * tiles + old, new)?;
            let row = p * (tiles + 1);
            copy(gpu, &self.offsets, p * (old + 1), &mut offsets, row, old + 1)?;
            let rebased: Vec<i32> = chunk_offsets[p * (new + 1) + 1..(p + 1) * (new + 1)].iter().map(|&o| fits(o as usize + self.totals[p])).collect::<Result<_, _>>()?;
            if !rebased.is_empty() {
                gpu.stream.memcpy_htod(&rebased, &mut offsets.slice_mut(row + old + 1..row + tiles + 1))?;
            }
            head_base.push(fits(at / PAD)?);
            starts.push(at);
            for (c, pairs) in [(&*self, self.totals[p]), (chunk, chunk.totals[p])] {
                copy(gpu, &c.values, c.starts[p], &mut values, at, 2 * pairs)?;
                at += 2 * pairs;
            }
        }
        *self = DeviceBitmapCache {
            tokens: self.tokens + chunk.tokens,
            bitmaps,
            offsets,
            values,
            head_base: gpu.stream.clone_htod(&head_base)?,
            totals,
            starts,
            ..*self
        }
        .with_bytes();
        Ok(())
    }

    /// The arrays back on the host, as `BitmapCache` has them (the trailing unit left out).
    pub fn download(&self, gpu: &Gpu) -> Result<BitmapCache, GpuError> {
        let tiles = self.planes * self.tokens * self.head_dim / tessera_codegen::format::bitmap::TILE;

        Ok(BitmapCache {
            order: self.order,
            dtype: self.dtype,
            heads: self.planes,
            tokens: self.tokens,
            head_dim: self.head_dim,
            bitmaps: gpu.download(&self.bitmaps, tiles)?,
            offsets: gpu.download(&self.offsets, tiles + self.planes)?,
            values: gpu.download(&self.values, self.values.len().saturating_sub(PAD))?,
            head_base: gpu.download(&self.head_base, self.planes)?,
        })
    }

    pub fn upload(gpu: &Gpu, cache: &BitmapCache) -> Result<Self, GpuError> {
        cache
            .validate()
            .map_err(|e| GpuError::Invalid(format!("bitmap cache: {e}")))?;
        let tiles = cache.tokens * cache.head_dim / TILE;
        Ok(DeviceBitmapCache {
            order: cache.order,
            dtype: cache.dtype,
            planes: cache.heads,
            tokens: cache.tokens,
            head_dim: cache.head_dim,
            bitmaps: upload(gpu, &cache.bitmaps)?,
            offsets: upload(gpu, &cache.offsets)?,
            // The kernel's zero-size copies may address the 16-byte vector just past the values.
            values: upload(gpu, &[&cache.values[..], &[0; PAD]].concat())?,
            head_base: upload(gpu, &cache.head_base)?,
            // Validated: offsets and head bases are in range and non-negative.
            totals: (0..cache.heads).map(|p| cache.offsets[p * (tiles + 1) + tiles] as usize).collect(),
            starts: cache.head_base.iter().map(|&b| b as usize * PAD).collect(),
            bytes: cache.bytes(),
        })
    }
}

/// A [`MustafarCache`] on the device: the compressed K and V and the dense window
/// (`[batch, kv_heads, window, head_dim]`).
pub struct DeviceMustafarCache {
    k: DeviceBitmapCache,
    v: DeviceBitmapCache,
    window_k: DeviceTensor,
    window_v: DeviceTensor,
    batch: usize,
    kv_heads: usize,
}

impl DeviceMustafarCache {
    /// Uploads a cache of `batch × kv_heads` planes (the cache's heads, batch-major).
    pub fn upload(
        gpu: &Gpu,
        cache: &MustafarCache,
        batch: usize,
        kv_heads: usize,
    ) -> Result<Self, GpuError> {
        if batch == 0 || kv_heads == 0 || batch * kv_heads != cache.k.heads {
            return Err(GpuError::Invalid(format!(
                "the cache holds {} planes, not batch {batch} × kv_heads {kv_heads}",
                cache.k.heads
            )));
        }
        let dims = [batch, kv_heads, cache.local_len, cache.k.head_dim];
        let window = |bits: &[u16]| -> Result<DeviceTensor, GpuError> {
            if bits.len() != dims.iter().product::<usize>() {
                return Err(GpuError::Invalid(format!(
                    "the dense window holds {} values, {dims:?} needs more",
                    bits.len()
                )));
            }
            Ok(DeviceTensor {
                data: upload(gpu, bits)?,
                dtype: cache.k.dtype,
                shape: dims,
            })
        };
        Ok(DeviceMustafarCache {
            k: DeviceBitmapCache::upload(gpu, &cache.k)?,
            v: DeviceBitmapCache::upload(gpu, &cache.v)?,
            window_k: window(&cache.local_k)?,
            window_v: window(&cache.local_v)?,
            batch,
            kv_heads,
        })
    }

    /// Appends compressed K and V chunks of the same tokens (e.g. `gpu::Compressor`'s output of
    /// a full dense window) after the compressed region, without recompressing it. The dense
    /// window is the caller's to refill.
    pub fn append(&mut self, gpu: &Gpu, k: &DeviceBitmapCache, v: &DeviceBitmapCache) -> Result<(), GpuError> {
        if k.tokens != v.tokens || (k.order, v.order) != (TileOrder::Keys, TileOrder::Values) {
            return Err(GpuError::Invalid(format!(
                "a chunk is K in key order and V in value order over the same tokens; got {:?} ({} tokens) and {:?} ({})",
                k.order, k.tokens, v.order, v.tokens
            )));
        }
        // Checked for both before either changes, so that a refused chunk leaves the cache whole.
        let shape = |c: &DeviceBitmapCache| (c.dtype, c.planes, c.head_dim);
        if shape(k) != shape(&self.k) || shape(v) != shape(&self.v) {
            return Err(GpuError::Invalid(format!("chunks of {:?} for a cache of {:?}", shape(k), shape(&self.k))));
        }
        self.k.append(gpu, k)?;
        self.v.append(gpu, v)
    }

    /// Bytes the cache occupies: both compressed regions (format included) and the window.
    pub fn bytes(&self) -> usize {
        let window: usize = self.window_k.shape.iter().product();
        self.k.bytes + self.v.bytes + 2 * 2 * window
    }
}

/// A decode step's inputs and outputs. `scale` defaults to 1/sqrt(head_dim), `splits` to
/// [`MustafarDecode::default_splits`].
pub struct DecodeArgs<'a> {
    /// `[batch, heads, 1, head_dim]`.
    pub q: &'a DeviceTensor,
    pub cache: &'a DeviceMustafarCache,
    /// `[batch, heads, 1, head_dim]`.
    pub o: &'a mut DeviceTensor,
    /// `[batch, heads]` f32, written when given.
    pub lse: Option<&'a mut CudaSlice<f32>>,
    pub scale: Option<f32>,
    pub splits: Option<usize>,
}

pub struct MustafarDecode {
    pub desc: KernelDesc,
    pub config: Config,
    program: Program,
    decode: CudaFunction,
    merge: CudaFunction,
    /// CTAs of the decode entry the GPU runs at once (SMs × resident per SM).
    slots: usize,
    /// The ordinal of the GPU the entries were loaded on.
    device: usize,
    /// The split workspace (partial outputs and LSEs), grown as launches need.
    workspace: Option<(CudaSlice<f32>, CudaSlice<f32>)>,
}


impl MustafarDecode {
    pub fn load(gpu: &Gpu, desc: &KernelDesc, config: &Config) -> Result<Self, GpuError> {
        if !matches!(desc.load, Load::Bitmap(_)) {
            return Err(GpuError::Unsupported(format!(
                "{} reads no bitmap-compressed cache: it is not a decode kernel",
                desc.name
            )));
        }
        let program = tessera_codegen::decode_program(desc, config)?;
        // The merge entry needs no shared memory beyond the default; the opt-in covers both.
        let merge_name = tessera_codegen::merge_entry_name(desc);
        let [decode, merge] = gpu.load_entries(desc, config, program.shared_bytes(), [tessera_codegen::entry_name(desc), &merge_name])?;
        let sms = gpu
            .ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?
            .max(1) as usize;
        let resident = decode.occupancy_max_active_blocks_per_multiprocessor(program.threads(), program.shared_bytes() as usize, None)?.max(1) as usize;
        Ok(MustafarDecode {
            desc: *desc,
            config: *config,
            program,
            decode,
            merge,
            slots: sms * resident,
            device: gpu.ctx.ordinal(),
            workspace: None,
        })
    }

    /// Splits per (batch, KV head) that fill the GPU's CTA slots once without a second, partial
    /// wave (each CTA streams its tiles through a pipeline that takes a few steps to fill, so
    /// one long run per slot beats several short ones), each with at least one compressed
    /// tile: batch 1 still fills the GPU, large batches need no split.
    pub fn default_splits(&self, batch: usize, kv_heads: usize, compressed: usize) -> usize {
        let tiles = compressed / self.config.block_kv() as usize;
        let planes = (batch * kv_heads).max(1);
        (self.slots / planes).min(tiles).clamp(1, 65535)
    }

    /// Checks every argument against the kernel and the others, then launches both entries.
    pub fn run(&mut self, gpu: &Gpu, args: DecodeArgs<'_>) -> Result<(), GpuError> {
        let (sizes, scale) = self.check(&args)?;
        let (b, hk, group, splits) = (sizes.batch, sizes.kv_heads, sizes.group(), sizes.splits);
        let d = self.desc.head_dim as usize;
        let rows = b * sizes.heads;
        let need = rows * splits;
        let workspace = match self.workspace.take() {
            Some(w) if w.1.len() >= need => w,
            _ => (
                gpu.stream.alloc_zeros::<f32>(need * d)?,
                gpu.stream.alloc_zeros::<f32>(need)?,
            ),
        };
        let (o_split, lse_split) = &*self.workspace.insert(workspace);
        let int = |what: &str, v: usize| {
            i32::try_from(v)
                .map_err(|_| GpuError::Invalid(format!("{what} = {v} does not fit in i32")))
        };
        let (group_i, window_i, hk_i, compressed_i, splits_i) = (
            int("group", group)?,
            int("window", sizes.window)?,
            int("kv_heads", hk)?,
            int("compressed", sizes.compressed)?,
            int("splits", splits)?,
        );
        let one = 1i32;
        let c = args.cache;
        let cfg = LaunchConfig {
            grid_dim: (splits as u32, hk as u32, b as u32),
            block_dim: (self.program.threads(), 1, 1),
            shared_mem_bytes: self.program.shared_bytes(),
        };
        let mut launch = gpu.stream.launch_builder(&self.decode);
        // KERNEL_PARAMS in the decode program's packed terms (heads = kv_heads, seq_q = group,
        // seq_kv = the window), then BITMAP_PARAMS.
        launch
            .arg(&args.q.data)
            .arg(&c.window_k.data)
            .arg(&c.window_v.data)
            .arg(o_split)
            .arg(lse_split);
        launch
            .arg(&group_i)
            .arg(&window_i)
            .arg(&hk_i)
            .arg(&hk_i)
            .arg(&scale)
            .arg(&one)
            .arg(&one)
            .arg(&one);
        for cache in [&c.k, &c.v] {
            launch
                .arg(&cache.bitmaps)
                .arg(&cache.offsets)
                .arg(&cache.values)
                .arg(&cache.head_base);
        }
        launch.arg(&compressed_i);
        // SAFETY: the arguments match KERNEL_PARAMS + BITMAP_PARAMS in order and type; the
        // shapes, dtypes, cache arrays (validated at upload) and sizes were checked against the
        // program by `check`, and the workspace holds `rows · splits` rows.
        unsafe { launch.launch(cfg) }?;

        let null: u64 = 0;
        let merge_cfg = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (d as u32 / 2, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut merge = gpu.stream.launch_builder(&self.merge);
        merge.arg(o_split).arg(lse_split).arg(&args.o.data);
        match &args.lse {
            Some(lse) => merge.arg(&**lse),
            None => merge.arg(&null),
        };
        merge.arg(&splits_i).arg(&group_i);
        // SAFETY: MERGE_PARAMS in order and type; the decode launch above wrote every
        // (row, split) of the workspace, and `o`/`lse` hold `rows` rows (checked).
        unsafe { merge.launch(merge_cfg) }?;
        Ok(())
    }

    fn check(&self, a: &DecodeArgs<'_>) -> Result<(DecodeSizes, f32), GpuError> {
        let desc = &self.desc;
        let d = desc.head_dim as usize;
        let c = a.cache;
        for (arg, t) in [
            ("q", a.q),
            ("o", &*a.o),
            ("window k", &c.window_k),
            ("window v", &c.window_v),
        ] {
            if t.data.ordinal() != self.device {
                return Err(mismatch(arg, "GPU (the kernel's)", self.device, t.data.ordinal()));
            }
            if t.dtype != desc.dtype {
                return Err(mismatch(arg, "dtype", desc.dtype.name(), t.dtype.name()));
            }
            if t.shape[3] != d {
                return Err(mismatch(arg, "head_dim", d, t.shape[3]));
            }
        }
        let [b, h, one, _] = a.q.shape;
        if one != 1 {
            return Err(mismatch("q", "tokens (one query token per head)", 1, one));
        }
        if a.o.shape != a.q.shape {
            return Err(mismatch(
                "o",
                "shape (as q)",
                format!("{:?}", a.q.shape),
                format!("{:?}", a.o.shape),
            ));
        }
        if (c.batch, c.window_k.shape) != (b, c.window_v.shape)
            || c.window_k.shape[..2] != [b, c.kv_heads]
        {
            return Err(mismatch(
                "cache",
                "batch and window (as q, k and v alike)",
                b,
                format!("{:?} / {:?}", c.window_k.shape, c.window_v.shape),
            ));
        }
        for (arg, cache, order) in [
            ("k cache", &c.k, TileOrder::Keys),
            ("v cache", &c.v, TileOrder::Values),
        ] {
            if cache.bitmaps.ordinal() != self.device {
                return Err(mismatch(arg, "GPU (the kernel's)", self.device, cache.bitmaps.ordinal()));
            }
            let want = (order, desc.dtype, b * c.kv_heads, d, c.k.tokens);
            let got = (
                cache.order,
                cache.dtype,
                cache.planes,
                cache.head_dim,
                cache.tokens,
            );
            if got != want {
                return Err(mismatch(
                    arg,
                    "order, dtype, planes, head_dim, tokens",
                    format!("{want:?}"),
                    format!("{got:?}"),
                ));
            }
        }
        if let Some(lse) = &a.lse
            && lse.len() != b * h
        {
            return Err(mismatch("lse", "length (batch·heads)", b * h, lse.len()));
        }
        let splits = a
            .splits
            .unwrap_or_else(|| self.default_splits(b, c.kv_heads, c.k.tokens));
        let sizes = DecodeSizes {
            batch: b,
            heads: h,
            kv_heads: c.kv_heads,
            compressed: c.k.tokens,
            window: c.window_k.shape[2],
            splits,
        };
        sizes.check(&self.program).map_err(GpuError::Invalid)?;
        if b > 65535 || c.kv_heads > 65535 {
            return Err(GpuError::Invalid(format!(
                "batch ({b}) and kv_heads ({}) must each be at most 65535",
                c.kv_heads
            )));
        }
        let scale = a.scale.unwrap_or(1.0 / (d as f32).sqrt());
        if !(scale.is_finite() && scale > 0.0) {
            return Err(GpuError::Invalid(format!(
                "scale must be finite and positive, got {scale}"
            )));
        }
        Ok((sizes, scale))
    }
}

fn mismatch(
    arg: &'static str,
    what: &'static str,
    expected: impl ToString,
    got: impl ToString,
) -> GpuError {
    GpuError::Mismatch {
        arg,
        what,
        expected: expected.to_string(),
        got: got.to_string(),
    }
}
