//! The GPU half of a sweep, for one candidate on one GPU: load (the driver JITs the PTX), the
//! correctness gate, a short measurement judged by the race, then the full one. Timing is
//! `gpu::bench::time`'s: CUDA events, warm-up, L2 flushed before each launch, median.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use cudarc::driver::DriverError;
use cudarc::driver::sys::cudaError_enum as Cu;
use tessera_desc::{Config, KernelDesc};

use super::decode::{is_decode, timing_cache};
use super::launch::{Inputs, Kernel, Kv};
use super::problem::Problem;
use super::race::{QUICK_REPS, Race, Verdict};
use super::record::Outcome;
use super::verify::{self, Case};
use crate::gpu::bench::{attention_flops, default_reps, time, uniform};
use crate::gpu::{DeviceTensor, Gpu, GpuError, grid_extents};
use crate::parallel::lock;

/// Untimed launches before each measurement; the correctness check already ran the kernel
/// once, so its module is loaded and its code cached.
const WARMUP: usize = 1;

/// One GPU's inputs for the problem and for the correctness case.
pub struct Bench<'g> {
    gpu: &'g Gpu,
    desc: KernelDesc,
    problem: Problem,
    inputs: Inputs,
    o: DeviceTensor,
    check: Inputs,
    flops: f64,
    reps: usize,
    /// Time spent loading modules (the driver's JIT, mostly), for the sweep's report.
    pub load_time: Duration,
}

impl<'g> Bench<'g> {
    pub fn new(
        gpu: &'g Gpu,
        desc: &KernelDesc,
        problem: &Problem,
        case: &Case,
    ) -> Result<Bench<'g>, GpuError> {
        let d = desc.head_dim as usize;
        let tensor = |dims: [usize; 4], seed| {
            DeviceTensor::from_f32(gpu, desc.dtype, dims, &uniform(dims.iter().product(), seed))
        };
        let p = problem;
        let extents = grid_extents(desc, p.seq_q, p.grid_arg()).map_err(GpuError::Invalid)?;
        let q = tensor(p.q_dims(d), 11)?;
        let inputs = if is_decode(desc) {
            let cache = timing_cache(desc, p).map_err(GpuError::Invalid)?;
            Inputs::with_cache(gpu, q, &cache, p.batch, p.kv_heads)?
        } else {
            let kv = Kv::Dense {
                k: tensor(p.kv_dims(d), 12)?,
                v: tensor(p.kv_dims(d), 13)?,
            };
            Inputs { q, kv }
        };
        Ok(Bench {
            gpu,
            desc: *desc,
            problem: *p,
            inputs,
            o: DeviceTensor::poisoned(gpu, desc.dtype, p.q_dims(d))?,
            check: verify::upload(gpu, case)?,
            flops: attention_flops(desc, p.batch, p.heads, p.seq_q, p.seq_kv, extents),
            reps: default_reps(p.seq_q.max(p.seq_kv)),
            load_time: Duration::ZERO,
        })
    }

    /// What became of `config`. `Err` only for a GPU failure after which this context cannot
    /// be trusted (e.g. an illegal address): the caller stops using this GPU.
    pub fn run(
        &mut self,
        config: &Config,
        case: &Case,
        race: &Mutex<Race>,
    ) -> Result<Outcome, GpuError> {
        let rejected = |what: &str, e: GpuError| -> Result<Outcome, GpuError> {
            if recoverable(&e) {
                Ok(Outcome::Rejected {
                    reason: format!("{what}: {e}"),
                })
            } else {
                Err(e)
            }
        };
        let loading = Instant::now();
        let loaded = Kernel::load(self.gpu, &self.desc, config);
        self.load_time += loading.elapsed();
        let mut kernel = match loaded {
            Ok(a) => a,
            // Loading only compiles and sets attributes: nothing ran, nothing is poisoned.
            Err(e) => {
                return Ok(Outcome::Rejected {
                    reason: format!("load: {e}"),
                });
            }
        };
        match verify::check(self.gpu, &mut kernel, case, &self.check) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => return Ok(Outcome::Rejected { reason: why }),
            Err(e) => return rejected("check", e),
        }
        let quick = match self.time(&mut kernel, QUICK_REPS) {
            Ok(t) => t,
            Err(e) => return rejected("timing", e),
        };
        let verdict = lock(race).judge(quick.median_ms);
        if let Verdict::Eliminated { best_ms } = verdict {
            return Ok(Outcome::Eliminated {
                quick_ms: quick.median_ms,
                best_quick_ms: best_ms,
                reps: QUICK_REPS,
            });
        }
        let full = match self.time(&mut kernel, self.reps) {
            Ok(t) => t,
            Err(e) => return rejected("timing", e),
        };
        let ms = full.median_ms;
        // JSON cannot hold a NaN, and a zero time would be an infinite throughput.
        if !(ms.is_finite() && ms > 0.0 && full.min_ms.is_finite()) {
            return Ok(Outcome::Rejected {
                reason: format!("timing gave {ms} ms"),
            });
        }
        lock(race).record(ms);
        Ok(Outcome::Timed {
            median_ms: ms,
            min_ms: full.min_ms,
            reps: full.reps,
            tflops: self.flops / ms / 1e9,
        })
    }

    fn time(
        &mut self,
        kernel: &mut Kernel,
        reps: usize,
    ) -> Result<crate::gpu::bench::Timing, GpuError> {
        let (gpu, inputs, o) = (self.gpu, &self.inputs, &mut self.o);
        let grid = self.problem.grid_arg();
        time(gpu, WARMUP, reps, || kernel.run(gpu, inputs, o, None, grid))
    }
}

/// Whether the context is still usable after `e`. Host-side errors are, and so are the driver
/// errors a launch reports without running (too many resources, invalid arguments); a kernel
/// that faulted (illegal address, misaligned access, ...) leaves the context unusable.
fn recoverable(e: &GpuError) -> bool {
    match e {
        GpuError::Driver(DriverError(code)) => matches!(
            code,
            Cu::CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES
                | Cu::CUDA_ERROR_INVALID_VALUE
                | Cu::CUDA_ERROR_OUT_OF_MEMORY
        ),
        GpuError::Invalid(_) | GpuError::Mismatch { .. } | GpuError::Codegen(_) => true,
        GpuError::NoDriver | GpuError::NoDevice(_) | GpuError::Unsupported(_) => false,
    }
}
