//! `tessera calibrate sale --gpu`: the calibration's errors from the GPU, for prompts of the
//! lengths SALE is for: one step runs SALE's selection (`gpu::SaleSelect`, every head at its
//! current threshold, the settled ones included) and the block-sparse kernel once for all heads,
//! against the causal kernel's output computed once. Heads are independent, so this is the
//! per-head calibration of the CPU path with all heads stepping together.

use tessera_codegen::format::lowbit::LowBit;
use tessera_codegen::ir::select::Scores;
use tessera_codegen::reference::Shape;
use tessera_codegen::reference::sale::{Estimate, SALE_BLOCKS, calibration_error};
use tessera_desc::{Config, Dtype, KernelDesc};

use super::{config_of, find_kernel};
use crate::Error;
use crate::gpu::{Attention, AttentionArgs, DeviceTensor, Gpu, SaleSelect, SaleWorkspace, SelectArgs};

/// The kernels the GPU calibrates with: SALE's and the causal one over the same element type.
const SPARSE: &str = super::sale::SALE_KERNEL;
const DENSE: &str = "causal_bf16_d128";

pub struct GpuCalibration {
    gpu: Gpu,
    shape: Shape,
    q: DeviceTensor,
    k: DeviceTensor,
    v: DeviceTensor,
    /// The causal kernel's output, on the host.
    dense: Vec<f64>,
    select: SaleSelect,
    workspace: SaleWorkspace,
    sparse: Attention,
    out: DeviceTensor,
}

impl GpuCalibration {
    /// Uploads the prompt (rounded to the kernels' element type), runs the causal kernel, and
    /// loads the selection for `estimate` (exact or int8) over blocks of `block_q × block_k`.
    pub fn new(shape: &Shape, (q, k, v): (&[f64], &[f64], &[f64]), estimate: Estimate, (block_q, block_k): (usize, usize)) -> Result<Self, Error> {
        let (sparse_desc, dense_desc): (&KernelDesc, &KernelDesc) = (find_kernel(SPARSE)?, find_kernel(DENSE)?);
        if shape.head_dim != sparse_desc.head_dim as usize {
            return Err(Error::Problem(format!("calibrating on the GPU takes head_dim {} (the prompt's is {})", sparse_desc.head_dim, shape.head_dim)));
        }
        let scores = match estimate {
            Estimate::Exact => Scores::Exact,
            Estimate::LowBit(LowBit::Int8) => Scores::Int8,
            other => return Err(Error::Problem(format!("the GPU selects from exact scores or the int8 estimate, not {}", super::sale::estimate_name(other)))),
        };
        let cfg: Config = config_of(sparse_desc, Some(&format!("block_q={block_q},block_kv={block_k}")))?;
        let gpu = Gpu::open(0)?;
        let up = |x: &[f64], heads| {
            let values: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            DeviceTensor::from_f32(&gpu, Dtype::Bf16, [shape.batch, heads, shape.seq_q, shape.head_dim], &values)
        };
        let (q, k, v) = (up(q, shape.heads)?, up(k, shape.kv_heads)?, up(v, shape.kv_heads)?);
        let mut out = DeviceTensor::poisoned(&gpu, Dtype::Bf16, q.shape)?;
        let causal = Attention::load(&gpu, dense_desc, &dense_desc.default_config().ok_or(Error::Problem("empty space".into()))?)?;
        causal.run(&gpu, AttentionArgs { q: &q, k: &k, v: &v, o: &mut out, lse: None, scale: None, grid: None, blocks: None })?;
        let dense = out.to_f32(&gpu)?.into_iter().map(f64::from).collect();
        let select = SaleSelect::load(&gpu, sparse_desc, &cfg, SALE_BLOCKS.segment, scores)?;
        let workspace = select.workspace(&gpu, q.shape, shape.kv_heads)?;
        let sparse = Attention::load(&gpu, sparse_desc, &cfg)?;
        Ok(GpuCalibration { gpu, shape: *shape, q, k, v, dense, select, workspace, sparse, out })
    }

    /// (error, kept density) per query head with thresholds `taus`, the error averaged over
    /// the batch as the CPU path's.
    pub fn errors(&mut self, taus: &[f64]) -> Result<Vec<(f64, f64)>, Error> {
        let (gpu, s) = (&self.gpu, self.shape);
        let (q, k, v) = (&self.q, &self.k, &self.v);
        self.select.select(gpu, &mut self.workspace, SelectArgs { q, k, v, tau: taus, scale: None })?;
        let args = AttentionArgs { q, k, v, o: &mut self.out, lse: None, scale: None, grid: None, blocks: Some(self.workspace.lists()) };
        self.sparse.run(gpu, args)?;
        let sparse: Vec<f64> = self.out.to_f32(gpu)?.into_iter().map(f64::from).collect();
        let counts = self.workspace.lists().download(gpu)?.count;
        let b = self.select.blocks();
        let nq = s.seq_q.div_ceil(b.block_q);
        let visible: usize = (0..nq).map(|qb| ((qb + 1) * b.block_q).min(s.seq_q).div_ceil(b.block_k)).sum();
        let plane = s.seq_q * s.head_dim;
        Ok((0..s.heads)
            .map(|h| {
                let planes = (0..s.batch).map(|batch| batch * s.heads + h);
                let error: f64 = planes.clone().map(|p| calibration_error(&sparse[p * plane..][..plane], &self.dense[p * plane..][..plane])).sum();
                let kept: usize = planes.map(|p| counts[p * nq..][..nq].iter().map(|&c| c.max(0) as usize).sum::<usize>()).sum();
                (error / s.batch as f64, kept as f64 / (visible * s.batch).max(1) as f64)
            })
            .collect())
    }
}
