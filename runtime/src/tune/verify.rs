//! The correctness gate: a fast wrong config must never win, so every candidate first runs a
//! small problem (see `Problem::check_problem`) and is compared with codegen's float64 reference.

use cudarc::driver::CudaSlice;
use tessera_codegen::format::MustafarCache;
use tessera_codegen::reference;
use tessera_codegen::semantics::round_to;
use tessera_desc::KernelDesc;

use super::decode::{self, is_decode};
use super::launch::{Inputs, Kernel, Kv};
use super::problem::Problem;
use crate::gpu::bench::uniform;
use crate::gpu::{DeviceTensor, Gpu, GpuError};

/// The tolerances of the GPU correctness tests (`tests/gpu.rs`): the output is rounded to 16
/// bits, the logsumexp is f32.
pub const MAX_O_ERROR: f64 = 1e-2;
pub const MAX_LSE_ERROR: f64 = 1e-3;

/// The small problem's inputs and the reference's answer, computed once per sweep.
pub struct Case {
    desc: KernelDesc,
    problem: Problem,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// A decode kernel's cache of `k` and `v`.
    cache: Option<MustafarCache>,
    want: reference::Output,
}

impl Case {
    pub fn new(desc: &KernelDesc, problem: &Problem) -> Result<Case, String> {
        let small = problem.check_problem(desc);
        let d = desc.head_dim as usize;
        // Values in [-2, 2): scores large enough that a wrong max or scale shows.
        let values = |dims: [usize; 4], seed| -> Vec<f32> {
            let rounded = uniform(dims.iter().product(), seed)
                .into_iter()
                .map(|x| round_to(desc.dtype, 2.0 * x));
            rounded.collect()
        };
        let (q, k, v) = (
            values(small.q_dims(d), 1),
            values(small.kv_dims(d), 2),
            values(small.kv_dims(d), 3),
        );
        let cache = is_decode(desc).then(|| decode::cache(desc, &small, &k, &v)).transpose()?;
        let want = match &cache {
            Some(c) => decode::expected(desc, &small, c, (&wide(&q), &wide(&k), &wide(&v)))?,
            None => expected(desc, &small, &q, &k, &v)?,
        };
        Ok(Case {
            desc: *desc,
            problem: small,
            q,
            k,
            v,
            cache,
            want,
        })
    }
}

/// The float64 reference of what `desc` computes on `problem`'s grid.
fn expected(
    desc: &KernelDesc,
    problem: &Problem,
    q: &[f32],
    k: &[f32],
    v: &[f32],
) -> Result<reference::Output, String> {
    let shape = problem.shape(desc.head_dim as usize);
    let scale = 1.0 / (shape.head_dim as f64).sqrt();
    let grid = problem.extents();
    reference::of_desc(desc, &shape, &grid, scale, &wide(q), &wide(k), &wide(v))
}

/// The case's inputs on one GPU.
pub fn upload(gpu: &Gpu, case: &Case) -> Result<Inputs, GpuError> {
    let (p, dt) = (&case.problem, case.desc.dtype);
    let d = case.desc.head_dim as usize;
    let q = DeviceTensor::from_f32(gpu, dt, p.q_dims(d), &case.q)?;
    match &case.cache {
        Some(cache) => Inputs::with_cache(gpu, q, cache, p.batch, p.kv_heads),
        None => Ok(Inputs {
            q,
            kv: Kv::Dense {
                k: DeviceTensor::from_f32(gpu, dt, p.kv_dims(d), &case.k)?,
                v: DeviceTensor::from_f32(gpu, dt, p.kv_dims(d), &case.v)?,
            },
        }),
    }
}

/// `Ok(Err(why))` when the candidate computes the wrong answer; `Err` when the GPU failed.
pub fn check(
    gpu: &Gpu,
    kernel: &mut Kernel,
    case: &Case,
    inputs: &Inputs,
) -> Result<Result<(), String>, GpuError> {
    let p = &case.problem;
    // Fresh NaN outputs per candidate: one that writes nothing must not pass on what the
    // previous candidate left behind.
    let mut o = DeviceTensor::poisoned(gpu, case.desc.dtype, inputs.q.shape)?;
    let mut lse: CudaSlice<f32> = gpu
        .stream
        .clone_htod(&vec![f32::NAN; case.want.lse.len()])?;
    kernel.run(gpu, inputs, &mut o, Some(&mut lse), p.grid_arg())?;
    gpu.stream.synchronize()?;
    let o = o.to_f32(gpu)?;
    let lse = gpu.stream.clone_dtoh(&lse)?;
    let o_err = reference::rel_error(&wide(&o), &case.want.o);
    let lse_err = reference::rel_error(&wide(&lse), &case.want.lse);
    Ok(if o_err > MAX_O_ERROR || lse_err > MAX_LSE_ERROR {
        Err(format!(
            "wrong result on {p}: o rel error {o_err:.1e} (max {MAX_O_ERROR:.0e}), \
             lse {lse_err:.1e} (max {MAX_LSE_ERROR:.0e})"
        ))
    } else {
        Ok(())
    })
}

fn wide(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}
