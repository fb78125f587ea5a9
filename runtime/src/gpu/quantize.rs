//! SALE's int8 quantization of Q and K on the GPU (`llvm::quantize` in codegen): Q `[batch,
//! heads, seq_q, d]` and K `[batch, kv_heads, seq_kv, d]` on the device become a
//! [`DeviceQuantized`], the values `format::smoothed::SmoothedInt8` defines (codes and scales
//! bit for bit given the means).
//!
//! Six launches and nothing copied back: for Q, then K, the column sums by chunks of tokens and
//! the means; then Q's codes, scales and shifts `q_i · k̄`, which read K's means; then K's
//! codes, scales and correction, which read Q's means.

use cudarc::driver::{CudaFunction, CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits};
use cudarc::nvrtc::Ptx;
use tessera_codegen::format::smoothed::SmoothedInt8;
use tessera_codegen::reference::Shape;
use tessera_codegen::{QUANT_THREADS, quantize_entries, quantize_ptx};
use tessera_desc::Dtype;

use super::{DeviceTensor, Gpu, GpuError};

/// Tokens per CTA of the column sums: enough work per CTA (128 KiB of a d = 128 bf16 plane) that
/// the means' pass over the chunk sums stays small, and at 32 planes of 4K tokens still 256 CTAs.
const CHUNK: usize = 512;
/// Rows per CTA of the quantization entries, about: enough to amortise a CTA's start.
const ROWS_PER_CTA: usize = 128;
/// The most planes a launch takes (the grid's y extent).
const MAX_PLANES: usize = 65535;

/// One dtype's entries (the means entry is shared).
struct Entries {
    colsum: CudaFunction,
    quant_q: CudaFunction,
    quant_k: CudaFunction,
}

/// The quantization entries for one head dim, both dtypes, loaded.
pub struct Quantizer {
    head_dim: usize,
    mean: CudaFunction,
    bf16: Entries,
    f16: Entries,
}

/// SALE's int8 operands on the device (`SmoothedInt8`'s arrays, as they are). The shape is
/// private with the arrays: launches trust it, so it cannot change apart from them. An empty
/// array is allocated as one element (the driver refuses zero bytes).
pub struct DeviceQuantized {
    shape: Shape,
    block: usize,
    pub(crate) q8: CudaSlice<i8>,
    pub(crate) k8: CudaSlice<i8>,
    pub(crate) q_scale: CudaSlice<f32>,
    pub(crate) k_scale: CudaSlice<f32>,
    pub(crate) qmk: CudaSlice<f32>,
    pub(crate) qk_mean: CudaSlice<f32>,
    pub(crate) q_mean: CudaSlice<f32>,
    pub(crate) k_mean: CudaSlice<f32>,
}

fn int(name: &str, v: usize) -> Result<i32, GpuError> {
    i32::try_from(v).map_err(|_| GpuError::Invalid(format!("{name} = {v} does not fit in i32")))
}

/// `n` elements filled with `value` (one for `n = 0`).
fn filled<T: DeviceRepr + Copy>(gpu: &Gpu, n: usize, value: T) -> Result<CudaSlice<T>, GpuError> {
    Ok(gpu.stream.clone_htod(&vec![value; n.max(1)])?)
}

/// `n` elements (one for `n = 0`) that the launches will write before anything reads them.
fn output<T: DeviceRepr + ValidAsZeroBits>(gpu: &Gpu, n: usize) -> Result<CudaSlice<T>, GpuError> {
    // SAFETY: i8 and f32 take any bits, and `quantize_into` writes every element.
    Ok(unsafe { gpu.stream.alloc::<T>(n.max(1)) }?)
}

/// The array lengths of a shape: Q's and K's elements, their rows (planes × tokens), the
/// correction's elements, and Q's and K's means.
struct Lengths {
    q: usize,
    k: usize,
    q_rows: usize,
    k_rows: usize,
    qmk: usize,
    q_mean: usize,
    k_mean: usize,
}

fn lengths(s: &Shape) -> Lengths {
    Lengths {
        q: s.q_len(),
        k: s.kv_len(),
        q_rows: s.batch * s.heads * s.seq_q,
        k_rows: s.batch * s.kv_heads * s.seq_kv,
        qmk: s.batch * s.heads * s.seq_kv,
        q_mean: s.batch * s.heads * s.head_dim,
        k_mean: s.batch * s.kv_heads * s.head_dim,
    }
}

impl DeviceQuantized {
    /// Arrays for `shape`, made from their lengths by `codes` and `floats`.
    fn with_arrays(
        shape: &Shape,
        block: usize,
        codes: impl Fn(usize) -> Result<CudaSlice<i8>, GpuError>,
        floats: impl Fn(usize) -> Result<CudaSlice<f32>, GpuError>,
    ) -> Result<Self, GpuError> {
        let n = lengths(shape);
        Ok(DeviceQuantized {
            shape: *shape,
            block,
            q8: codes(n.q)?,
            k8: codes(n.k)?,
            q_scale: floats(n.q_rows)?,
            k_scale: floats(n.k_rows)?,
            // The selection reads a tile's corrections without bounds (`QMK_PAD`); the padding
            // holds what the allocation was filled with (NaN when poisoned, zeros in
            // `quantize`), which only masked columns see.
            qmk: floats(n.qmk + tessera_codegen::QMK_PAD)?,
            qk_mean: floats(n.q_rows)?,
            q_mean: floats(n.q_mean)?,
            k_mean: floats(n.k_mean)?,
        })
    }

    /// Outputs for `shape` and `block` with every element poisoned: codes -128 (quantization
    /// writes [-127, 127] only) and f32 NaN, so that anything a launch fails to write shows.
    pub fn poisoned(gpu: &Gpu, shape: &Shape, block: usize) -> Result<Self, GpuError> {
        shape.check().map_err(GpuError::Invalid)?;
        Self::with_arrays(shape, block, |n| filled(gpu, n, i8::MIN), |n| filled(gpu, n, f32::NAN))
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    pub fn block(&self) -> usize {
        self.block
    }

    /// The arrays back on the host.
    pub fn download(&self, gpu: &Gpu) -> Result<SmoothedInt8, GpuError> {
        let n = lengths(&self.shape);
        Ok(SmoothedInt8 {
            shape: self.shape,
            block: self.block,
            q8: gpu.download(&self.q8, n.q)?,
            k8: gpu.download(&self.k8, n.k)?,
            q_scale: gpu.download(&self.q_scale, n.q_rows)?,
            k_scale: gpu.download(&self.k_scale, n.k_rows)?,
            qmk: gpu.download(&self.qmk, n.qmk)?,
            qk_mean: gpu.download(&self.qk_mean, n.q_rows)?,
            q_mean: gpu.download(&self.q_mean, n.q_mean)?,
            k_mean: gpu.download(&self.k_mean, n.k_mean)?,
        })
    }
}

impl Quantizer {
    pub fn load(gpu: &Gpu, head_dim: usize) -> Result<Quantizer, GpuError> {
        let d = u32::try_from(head_dim).map_err(|_| GpuError::Invalid(format!("head_dim = {head_dim} does not fit in u32")))?;
        let ptx = quantize_ptx(d, gpu.target()?)?;
        let module = gpu.ctx.load_module(Ptx::from_src(ptx))?;
        let entries = |dtype| -> Result<(CudaFunction, Entries), GpuError> {
            let [colsum, mean, quant_q, quant_k] = quantize_entries(dtype, d);
            let entries = Entries { colsum: module.load_function(&colsum)?, quant_q: module.load_function(&quant_q)?, quant_k: module.load_function(&quant_k)? };
            Ok((module.load_function(&mean)?, entries))
        };
        let ((mean, bf16), (_, f16)) = (entries(Dtype::Bf16)?, entries(Dtype::F16)?);
        Ok(Quantizer { head_dim, mean, bf16, f16 })
    }

    fn entries(&self, dtype: Dtype) -> Result<&Entries, GpuError> {
        match dtype {
            Dtype::Bf16 => Ok(&self.bf16),
            Dtype::F16 => Ok(&self.f16),
            other => Err(GpuError::Unsupported(format!("GPU quantization of {other}"))),
        }
    }

    /// Smooths and quantizes `q` and `k` with K's scale groups spread over blocks of `block`
    /// keys (the KV tile of the selection that reads them).
    pub fn quantize(&self, gpu: &Gpu, q: &DeviceTensor, k: &DeviceTensor, block: usize) -> Result<DeviceQuantized, GpuError> {
        let shape = self.shape(q, k)?;
        let mut out = DeviceQuantized::with_arrays(&shape, block, |n| output(gpu, n), |n| output(gpu, n))?;
        // Quantization writes qmk's tokens, not its padding, which the selection reads.
        let tokens = lengths(&shape).qmk;
        gpu.stream.memset_zeros(&mut out.qmk.slice_mut(tokens..))?;
        self.quantize_into(gpu, q, k, &mut out)?;
        Ok(out)
    }

    /// As `quantize`, into `out` (made for the same shape; its block is K's).
    pub fn quantize_into(&self, gpu: &Gpu, q: &DeviceTensor, k: &DeviceTensor, out: &mut DeviceQuantized) -> Result<(), GpuError> {
        let shape = self.shape(q, k)?;
        if shape != out.shape {
            return Err(GpuError::Mismatch { arg: "out", what: "shape", expected: format!("{shape:?}"), got: format!("{:?}", out.shape) });
        }
        let block = out.block;
        if block == 0 || !block.is_multiple_of(8) {
            return Err(GpuError::Invalid(format!("block = {block}: K's scale groups need blocks of a positive multiple of 8 keys")));
        }
        let entries = self.entries(q.dtype)?;
        let (q_planes, k_planes) = (shape.batch * shape.heads, shape.batch * shape.kv_heads);
        if q_planes > MAX_PLANES {
            return Err(GpuError::Invalid(format!("{q_planes} planes (batch × heads): at most {MAX_PLANES}")));
        }
        // The kernels round tokens up to whole spans (16 queries, a block of keys) in i32; query
        // planes (at most MAX_PLANES) are i32 too.
        int("seq_q + 16", shape.seq_q + 16)?;
        int("seq_kv + block", shape.seq_kv + block)?;
        let group = int("group", shape.group_size())?;
        if q_planes == 0 {
            return Ok(());
        }
        self.means(gpu, entries, q, q_planes, &mut out.q_mean)?;
        self.means(gpu, entries, k, k_planes, &mut out.k_mean)?;
        if shape.seq_q > 0 {
            let (tokens, per_cta) = (int("seq_q", shape.seq_q)?, ROWS_PER_CTA / 2);
            let groups = shape.seq_q.div_ceil(16) * 8;
            let grid = LaunchConfig { grid_dim: (int("CTAs", groups.div_ceil(per_cta))? as u32, q_planes as u32, 1), block_dim: (QUANT_THREADS, 1, 1), shared_mem_bytes: 0 };
            let per_cta = int("groups per CTA", per_cta)?;
            let mut launch = gpu.stream.launch_builder(&entries.quant_q);
            launch.arg(&q.data).arg(&out.q_mean).arg(&mut out.q8).arg(&mut out.q_scale).arg(&out.k_mean).arg(&mut out.qk_mean);
            launch.arg(&tokens).arg(&group).arg(&per_cta);
            // SAFETY: arguments in the order and types of QUANT_Q_PARAMS; q holds q_planes ×
            // seq_q × d values (checked in `shape`), the outputs were sized from the same shape
            // (checked above), k_mean holds the q_planes / group KV planes' means, and the grid
            // covers the groups of seq_q tokens, q_planes planes.
            unsafe { launch.launch(grid) }?;
        }
        if shape.seq_kv > 0 {
            let (tokens, block_i) = (int("seq_kv", shape.seq_kv)?, int("block", block)?);
            // A group is a quarter of a block's keys.
            let per_cta = (ROWS_PER_CTA * 4 / block).max(4);
            let groups = shape.seq_kv.div_ceil(block) * 4;
            let grid = LaunchConfig { grid_dim: (int("CTAs", groups.div_ceil(per_cta))? as u32, k_planes as u32, 1), block_dim: (QUANT_THREADS, 1, 1), shared_mem_bytes: 0 };
            let per_cta = int("groups per CTA", per_cta)?;
            let mut launch = gpu.stream.launch_builder(&entries.quant_k);
            launch.arg(&k.data).arg(&out.k_mean).arg(&mut out.k8).arg(&mut out.k_scale).arg(&out.q_mean).arg(&mut out.qmk);
            launch.arg(&tokens).arg(&block_i).arg(&group).arg(&per_cta);
            // SAFETY: as Q's, with QUANT_K_PARAMS; q_mean holds the k_planes × group query
            // planes' means and qmk their seq_kv corrections each.
            unsafe { launch.launch(grid) }?;
        }
        Ok(())
    }

    /// The means over tokens of each of `x`'s `planes` into `mean` (zeros for no tokens).
    fn means(&self, gpu: &Gpu, entries: &Entries, x: &DeviceTensor, planes: usize, mean: &mut CudaSlice<f32>) -> Result<(), GpuError> {
        let tokens = x.shape[2];
        if tokens == 0 {
            gpu.stream.memset_zeros(mean)?;
            return Ok(());
        }
        let chunks = tokens.div_ceil(CHUNK);
        let mut partial = output::<f32>(gpu, planes * chunks * self.head_dim)?;
        let (tokens_i, chunk_i, chunks_i) = (int("tokens", tokens)?, int("chunk", CHUNK)?, int("chunks", chunks)?);
        let grid = LaunchConfig { grid_dim: (chunks_i as u32, planes as u32, 1), block_dim: (QUANT_THREADS, 1, 1), shared_mem_bytes: 0 };
        let mut launch = gpu.stream.launch_builder(&entries.colsum);
        launch.arg(&x.data).arg(&mut partial).arg(&tokens_i).arg(&chunk_i);
        // SAFETY: arguments in the order and types of COLSUM_PARAMS; x holds planes × tokens × d
        // values, partial planes × chunks × d, and the grid is (chunks, planes).
        unsafe { launch.launch(grid) }?;
        let grid = LaunchConfig { grid_dim: (planes as u32, 1, 1), block_dim: (QUANT_THREADS, 1, 1), shared_mem_bytes: 0 };
        let mut launch = gpu.stream.launch_builder(&self.mean);
        launch.arg(&partial).arg(mean).arg(&tokens_i).arg(&chunks_i);
        // SAFETY: MEAN_PARAMS; partial as written above, mean holds planes × d (the caller's
        // output for this shape), one CTA per plane.
        unsafe { launch.launch(grid) }?;
        Ok(())
    }

    /// The problem `q` and `k` make, checked against this quantizer and each other.
    fn shape(&self, q: &DeviceTensor, k: &DeviceTensor) -> Result<Shape, GpuError> {
        let ([batch, heads, seq_q, d], [kv_batch, kv_heads, seq_kv, kv_d]) = (q.shape, k.shape);
        let mismatch = |arg, what, expected: usize, got: usize| Err(GpuError::Mismatch { arg, what, expected: expected.to_string(), got: got.to_string() });
        if k.dtype != q.dtype {
            return Err(GpuError::Mismatch { arg: "k", what: "dtype", expected: q.dtype.to_string(), got: k.dtype.to_string() });
        }
        if d != self.head_dim {
            return mismatch("q", "head_dim (this quantizer's)", self.head_dim, d);
        }
        if kv_d != self.head_dim {
            return mismatch("k", "head_dim (this quantizer's)", self.head_dim, kv_d);
        }
        if kv_batch != batch {
            return mismatch("k", "batch", batch, kv_batch);
        }
        let shape = Shape { batch, heads, kv_heads, seq_q, seq_kv, head_dim: d };
        shape.check().map_err(GpuError::Invalid)?;
        for (arg, x) in [("q", q), ("k", k)] {
            // The kernels index by the shape, so the allocation must hold exactly that many (an
            // empty tensor may hold one placeholder: the driver refuses zero-byte allocations).
            let n: usize = x.shape.iter().product();
            if x.data.len() != n && !(n == 0 && x.data.len() == 1) {
                return Err(GpuError::Invalid(format!("{arg} has {} elements for shape {:?}, which has {n}", x.data.len(), x.shape)));
            }
        }
        Ok(shape)
    }
}
