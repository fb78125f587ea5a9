//! Kernel timing: CUDA events around each repetition, warm-up first, L2 flushed before every
//! repetition (a 256 MiB write evicts the H100's 50 MiB L2), median reported.

use cudarc::driver::sys::CUevent_flags;

use super::{Gpu, GpuError};

const FLUSH_BYTES: usize = 256 << 20;

#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub median_ms: f64,
    pub min_ms: f64,
    pub reps: usize,
}

/// Times `launch` (which only enqueues work on `gpu.stream`).
pub fn time(gpu: &Gpu, warmup: usize, reps: usize, mut launch: impl FnMut() -> Result<(), GpuError>) -> Result<Timing, GpuError> {
    if reps == 0 {
        return Err(GpuError::Invalid("at least one timed repetition is needed".into()));
    }
    let mut flush = gpu.stream.alloc_zeros::<u8>(FLUSH_BYTES)?;
    for _ in 0..warmup {
        launch()?;
    }
    let start = gpu.ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
    let end = gpu.ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
    let mut ms = Vec::with_capacity(reps);
    for _ in 0..reps {
        gpu.stream.memset_zeros(&mut flush)?;
        start.record(&gpu.stream)?;
        launch()?;
        end.record(&gpu.stream)?;
        ms.push(start.elapsed_ms(&end)? as f64);
    }
    ms.sort_by(f64::total_cmp);
    Ok(Timing { median_ms: ms[ms.len() / 2], min_ms: ms[0], reps })
}

/// FLOPs of attention's two products (4·B·H·Sq·Skv·D), halved for causal on equal lengths.
pub fn attention_flops(batch: usize, heads: usize, seq_q: usize, seq_kv: usize, head_dim: usize, causal: bool) -> f64 {
    let full = 4.0 * (batch * heads) as f64 * seq_q as f64 * seq_kv as f64 * head_dim as f64;
    if causal { full / 2.0 } else { full }
}
