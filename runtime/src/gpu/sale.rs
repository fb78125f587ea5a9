//! SALE's block selection on the GPU (seeds.md §2.1–2.3, the two-pass variant), feeding the
//! block-sparse kernel (`visit = blocks(..)`) lists that never leave the device:
//!
//! 1. once per shape ([`SaleSelect::workspace`]): the forced lists (sink, causal diagonal,
//!    segment-aligned local window) by `sale_forced_lists`;
//! 2. per call ([`SaleSelect::select`]): the block-sparse kernel itself over the forced lists,
//!    for each row's LSE over its always-kept keys; `sale_theta` turns it into the thresholds
//!    θ = LSE + ln τ_h; the selection program (`ir::select`) votes per visible tile from the
//!    scores; `sale_lists` writes the lists of forced and voted tiles.
//!
//! The scores are exact (`Scores::Exact`: the element type's Q·Kᵀ, f32 accumulators) or SALE's
//! int8 estimate of them (`Scores::Int8`: `gpu::Quantizer` smooths and quantizes Q and K first,
//! then the selection program multiplies the codes with `mma.sync` s8).

use tessera_codegen::ir::select::Scores;
use cudarc::driver::{CudaFunction, CudaSlice, LaunchConfig, PushKernelArg};
use tessera_codegen::ir::Program;
use tessera_codegen::reference::Shape;
use tessera_codegen::reference::sale::{DENSE_BELOW, SaleBlocks};
use tessera_codegen::{SALE_ENTRIES, SALE_THREADS, compile_program, sale_ptx, select_program};
use tessera_desc::{Config, KernelDesc, Load, Mma, Visit};

use super::attention::launch_config;
use super::blocks::DeviceBlockLists;
use super::{Attention, AttentionArgs, DeviceQuantized, DeviceTensor, Gpu, GpuError, Quantizer};

/// The selection's kernels for one block-sparse kernel at one config.
pub struct SaleSelect {
    blocks: SaleBlocks,
    scores: Scores,
    /// The block-sparse kernel, run over the forced lists for the rows' statistics.
    forced_pass: Attention,
    select_program: Program,
    select: CudaFunction,
    /// The int8 estimate's quantizer (`None` for exact scores).
    quantizer: Option<Quantizer>,
    theta: CudaFunction,
    forced_lists: CudaFunction,
    lists: CudaFunction,
}

/// What one selection reads.
pub struct SelectArgs<'a> {
    pub q: &'a DeviceTensor,
    pub k: &'a DeviceTensor,
    /// Read by the forced pass, which is the block-sparse kernel itself.
    pub v: &'a DeviceTensor,
    /// One threshold τ per query head; below `DENSE_BELOW` a head runs dense.
    pub tau: &'a [f64],
    /// The softmax scale, as the block-sparse kernel's (default 1/sqrt(head_dim)).
    pub scale: Option<f32>,
}

/// The device buffers of one shape's selections; the selected lists stay here.
pub struct SaleWorkspace {
    /// q's shape and k's heads.
    shape: [usize; 4],
    kv_heads: usize,
    /// What the workspace was made for: a selection of other blocks or scores must not use it
    /// (its forced lists, or the arguments its buffers give the selection program, would be
    /// another selection's).
    blocks: SaleBlocks,
    scores: Scores,
    /// The thresholds `log_tau` holds, uploaded again only when they change.
    taus: Vec<f64>,
    forced: DeviceBlockLists,
    lists: DeviceBlockLists,
    /// The forced pass's output (unused) and LSE, the thresholds, ln τ per head, the votes.
    o: DeviceTensor,
    lse: CudaSlice<f32>,
    theta: CudaSlice<f32>,
    log_tau: CudaSlice<f32>,
    map: CudaSlice<i32>,
    /// The int8 estimate's operands (`Scores::Int8`).
    quantized: Option<DeviceQuantized>,
}

impl SaleWorkspace {
    /// The lists of the last [`SaleSelect::select`] (the forced lists before the first).
    pub fn lists(&self) -> &DeviceBlockLists {
        &self.lists
    }

    /// The forced lists alone: what every selection keeps.
    pub fn forced(&self) -> &DeviceBlockLists {
        &self.forced
    }

    /// The last int8 selection's codes, scales and corrections.
    pub fn quantized(&self) -> Option<&DeviceQuantized> {
        self.quantized.as_ref()
    }

    /// The last selection's thresholds θ, `[batch, heads, seq]` (for tests and reports).
    pub fn theta(&self, gpu: &Gpu) -> Result<Vec<f32>, GpuError> {
        let [batch, heads, seq, _] = self.shape;
        gpu.download(&self.theta, batch * heads * seq)
    }
}

fn int(name: &str, v: usize) -> Result<i32, GpuError> {
    i32::try_from(v).map_err(|_| GpuError::Invalid(format!("{name} = {v} does not fit in i32")))
}

impl SaleSelect {
    /// The selection for `desc` (a causal block-sparse kernel with dense loads) at `cfg` from
    /// `scores`, its local window aligned to segments of `segment` tokens (SALE's 128).
    pub fn load(gpu: &Gpu, desc: &KernelDesc, cfg: &Config, segment: usize, scores: Scores) -> Result<SaleSelect, GpuError> {
        let (Visit::Blocks(visit), Load::Dense) = (desc.visit, desc.load) else {
            return Err(GpuError::Invalid(format!("{}: SALE's selection is for block-sparse kernels with dense loads", desc.name)));
        };
        if !visit.causal {
            return Err(GpuError::Invalid(format!("{}: SALE's selection is for causal self-attention", desc.name)));
        }
        let blocks = SaleBlocks {
            block_q: cfg.block_q() as usize,
            block_k: cfg.block_kv() as usize,
            local: visit.estimate.local as usize,
            segment,
            sink_blocks: visit.estimate.sink as usize,
        };
        if segment == 0 || !segment.is_multiple_of(blocks.block_k) || !blocks.local.is_multiple_of(blocks.block_k) {
            return Err(GpuError::Invalid(format!(
                "{}: the segment ({segment} tokens, positive) and the local window ({}) must be whole KV tiles of {}",
                desc.name, blocks.local, blocks.block_k
            )));
        }
        let target = gpu.target()?;
        let forced_pass = Attention::load(gpu, desc, cfg)?;
        // The kernel's instruction family (wgmma on Hopper for its wgmma twins), except where
        // wgmma cannot read the tiles (int8 codes of 64 channels are half its 128-byte rows):
        // there the selection stays on mma.sync, every target's.
        let engine = |cfg: &Config| -> Result<Program, GpuError> {
            tessera_codegen::passes::engine::select(select_program(desc, cfg, scores)?, target).map_err(GpuError::Invalid)
        };
        let program = match engine(cfg) {
            Err(_) if cfg.mma == Mma::Wgmma => engine(&Config { mma: Mma::Sync, ..*cfg })?,
            other => other?,
        };
        let ptx = compile_program(&program, target)?;
        let what = format!("{} at {cfg}", program.name);
        let [select] = gpu.load_ptx(&what, &ptx, program.shared_bytes(), [program.name.as_str()])?;
        let [theta, forced_lists, lists] = gpu.load_ptx("SALE's list entries", &sale_ptx(target)?, 0, SALE_ENTRIES)?;
        let quantizer = match scores {
            Scores::Exact => None,
            Scores::Int8 => Some(Quantizer::load(gpu, desc.head_dim as usize)?),
        };
        Ok(SaleSelect { blocks, scores, forced_pass, select_program: program, select, quantizer, theta, forced_lists, lists })
    }

    pub fn blocks(&self) -> &SaleBlocks {
        &self.blocks
    }

    /// Quantizes q and k into `ws` for the int8 estimate, the step of `select` that exact scores
    /// do without; false (nothing done) for exact scores.
    pub fn quantize(&self, gpu: &Gpu, ws: &mut SaleWorkspace, q: &DeviceTensor, k: &DeviceTensor) -> Result<bool, GpuError> {
        match (&self.quantizer, &mut ws.quantized) {
            (Some(quantizer), Some(out)) => quantizer.quantize_into(gpu, q, k, out).map(|()| true),
            _ => Ok(false),
        }
    }

    /// Buffers for selections over q of shape `[batch, heads, seq, d]` and k with `kv_heads`
    /// heads, with the forced lists made.
    pub fn workspace(&self, gpu: &Gpu, q_shape: [usize; 4], kv_heads: usize) -> Result<SaleWorkspace, GpuError> {
        let [batch, heads, seq, _] = q_shape;
        let (nq, nk) = (seq.div_ceil(self.blocks.block_q), seq.div_ceil(self.blocks.block_k));
        let planes = batch * heads;
        let cells = planes.checked_mul(nq).and_then(|r| r.checked_mul(nk));
        let cells = cells.ok_or_else(|| GpuError::Invalid(format!("a map of {planes} × {nq} × {nk} tiles overflows")))?;
        int("map entries", cells)?;
        // Never a zero-length allocation (see `DeviceBlockLists::upload`).
        let alloc_i32 = |n: usize| gpu.stream.alloc_zeros::<i32>(n.max(1));
        let alloc_f32 = |n: usize| gpu.stream.alloc_zeros::<f32>(n.max(1));
        let mut ws = SaleWorkspace {
            shape: q_shape,
            kv_heads,
            blocks: self.blocks,
            scores: self.scores,
            taus: Vec::new(),
            forced: DeviceBlockLists::from_device((planes, nq, nk), alloc_i32(cells)?, alloc_i32(planes * nq)?),
            lists: DeviceBlockLists::from_device((planes, nq, nk), alloc_i32(cells)?, alloc_i32(planes * nq)?),
            o: DeviceTensor::poisoned(gpu, self.forced_pass.desc.dtype, q_shape)?,
            lse: alloc_f32(planes * seq)?,
            theta: alloc_f32(planes * seq)?,
            log_tau: alloc_f32(heads)?,
            map: alloc_i32(cells)?,
            quantized: match &self.quantizer {
                None => None,
                Some(_) => {
                    let shape = Shape { batch, heads, kv_heads, seq_q: seq, seq_kv: seq, head_dim: q_shape[3] };
                    Some(DeviceQuantized::poisoned(gpu, &shape, self.blocks.block_k)?)
                }
            },
        };
        self.launch_lists(gpu, &self.forced_lists, &mut ws, true)?;
        gpu.stream.memcpy_dtod(&ws.forced.list, &mut ws.lists.list)?;
        gpu.stream.memcpy_dtod(&ws.forced.count, &mut ws.lists.count)?;
        Ok(ws)
    }

    /// Selects the blocks of `x`; the lists land in `ws`.
    pub fn select(&self, gpu: &Gpu, ws: &mut SaleWorkspace, x: SelectArgs<'_>) -> Result<(), GpuError> {
        let SelectArgs { q, k, v, tau, scale } = x;
        if (ws.blocks, ws.scores) != (self.blocks, self.scores) {
            return Err(GpuError::Invalid(format!(
                "the workspace is for a selection from {:?} scores over {:?}; this one is from {:?} over {:?}",
                ws.scores, ws.blocks, self.scores, self.blocks
            )));
        }
        if q.shape != ws.shape || k.shape[1] != ws.kv_heads {
            return Err(GpuError::Invalid(format!(
                "the workspace is for q {:?} and {} KV heads; got q {:?}, k {:?}",
                ws.shape, ws.kv_heads, q.shape, k.shape
            )));
        }
        let [batch, heads, seq, d] = q.shape;
        if k.shape[2] != seq {
            return Err(GpuError::Invalid(format!("SALE's selection is for self-attention: q has {seq} tokens, k {}", k.shape[2])));
        }
        if tau.len() != heads {
            return Err(GpuError::Invalid(format!("{} thresholds for {heads} query heads", tau.len())));
        }
        if let Some(t) = tau.iter().find(|t| !(t.is_finite() && **t >= 0.0)) {
            return Err(GpuError::Invalid(format!("threshold {t} is not a finite, non-negative number")));
        }
        // Checks every tensor against the kernel and each other (and the scale) as it runs.
        self.forced_pass.run(gpu, AttentionArgs { q, k, v, o: &mut ws.o, lse: Some(&mut ws.lse), scale, grid: None, blocks: Some(&ws.forced) })?;
        // A pageable copy waits for the work before it: once per thresholds, not per call.
        if ws.taus != tau {
            let log_tau: Vec<f32> = tau.iter().map(|&t| if t < DENSE_BELOW { f32::NEG_INFINITY } else { t.ln() as f32 }).collect();
            gpu.stream.memcpy_htod(&log_tau, &mut ws.log_tau)?;
            ws.taus = tau.to_vec();
        }
        let total = batch * heads * seq;
        if total == 0 {
            return Ok(());
        }
        let (rows_i, heads_i, total_i) = (int("seq", seq)?, int("heads", heads)?, int("elements", total)?);
        let cfg = LaunchConfig { grid_dim: (total.div_ceil(SALE_THREADS as usize) as u32, 1, 1), block_dim: (SALE_THREADS, 1, 1), shared_mem_bytes: 0 };
        let mut launch = gpu.stream.launch_builder(&self.theta);
        launch.arg(&ws.lse).arg(&ws.log_tau).arg(&mut ws.theta).arg(&rows_i).arg(&heads_i).arg(&total_i);
        // SAFETY: THETA_PARAMS in order and type; lse and theta hold `total` f32 (the
        // workspace's shape, checked against q above) and log_tau one per query head.
        unsafe { launch.launch(cfg) }?;

        self.quantize(gpu, ws, q, k)?;
        let sizes = [int("batch", batch)?, heads_i, int("kv_heads", ws.kv_heads)?, rows_i, rows_i];
        if let Some(cfg) = launch_config(&self.select_program, sizes, [rows_i, 1, 1])? {
            let scale = scale.unwrap_or(1.0 / (d as f32).sqrt());
            let mut launch = gpu.stream.launch_builder(&self.select);
            // KERNEL_PARAMS: q, k (or their codes), v (unread), o (the map), lse (θ, read),
            // sizes, scale, grid; then an int8 selection's SCALE_PARAMS.
            match &ws.quantized {
                None => launch.arg(&q.data).arg(&k.data).arg(&k.data),
                Some(x) => launch.arg(&x.q8).arg(&x.k8).arg(&x.k8),
            };
            launch.arg(&mut ws.map).arg(&ws.theta);
            launch.arg(&rows_i).arg(&rows_i).arg(&heads_i).arg(&sizes[2]).arg(&scale).arg(&rows_i).arg(&1i32).arg(&1i32);
            if let Some(x) = &ws.quantized {
                launch.arg(&x.q_scale).arg(&x.k_scale).arg(&x.qmk).arg(&x.qk_mean);
            }
            // SAFETY: q and k passed the forced pass's checks against this kernel's tiles and
            // head_dim (and their codes and scales were made for the workspace's shape, which
            // is theirs); the map holds planes × q_tiles × kv_tiles entries of this config's
            // tiles and θ one per query row; the program reads nothing else.
            unsafe { launch.launch(cfg) }?;
        }
        self.launch_lists(gpu, &self.lists, ws, false)
    }

    /// Runs a list entry (`forced`: `sale_forced_lists` into `ws.forced`, else `sale_lists`
    /// into `ws.lists`).
    fn launch_lists(&self, gpu: &Gpu, entry: &CudaFunction, ws: &mut SaleWorkspace, forced: bool) -> Result<(), GpuError> {
        let [batch, heads, seq, _] = ws.shape;
        let (nq, nk) = (seq.div_ceil(self.blocks.block_q), seq.div_ceil(self.blocks.block_k));
        let rows = batch * heads * nq;
        if rows == 0 {
            return Ok(());
        }
        let b = &self.blocks;
        let tiles = |tokens: usize| tokens / b.block_k;
        let scalars = [
            int("rows", rows)?,
            int("q_tiles", nq)?,
            int("kv_tiles", nk)?,
            int("seq", seq)?,
            int("block_q", b.block_q)?,
            int("block_kv", b.block_k)?,
            int("sink", b.sink_blocks)?,
            int("local", tiles(b.local))?,
            int("segment", tiles(b.segment))?,
        ];
        let warps = (SALE_THREADS / 32) as usize;
        let cfg = LaunchConfig { grid_dim: (rows.div_ceil(warps) as u32, 1, 1), block_dim: (SALE_THREADS, 1, 1), shared_mem_bytes: 0 };
        let out = if forced { &mut ws.forced } else { &mut ws.lists };
        let mut launch = gpu.stream.launch_builder(entry);
        launch.arg(&ws.map).arg(&mut out.list).arg(&mut out.count);
        for s in &scalars {
            launch.arg(s);
        }
        // SAFETY: LISTS_PARAMS in order and type; the map and lists hold rows × kv_tiles
        // entries and the counts one per row (allocated by `workspace` for this shape); the
        // forced entry does not read the map; segment is positive (checked at load).
        unsafe { launch.launch(cfg) }?;
        Ok(())
    }
}
