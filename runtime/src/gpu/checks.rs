//! Every check a launch makes before the kernel sees its arguments, over what the arguments
//! say about themselves (dtype, shape, length), so that it is one pure function that the launch
//! calls and property tests exercise without a GPU (`tests::checks`): a launch it lets through
//! reads and writes only inside its tensors.

use tessera_desc::{Config, KernelDesc, Visit};

use super::GpuError;
use super::attention::grid_extents;

/// What a device tensor says of itself: its element type, its `[batch, heads, tokens,
/// head_dim]` shape, how many elements its allocation holds, and the ordinal of the GPU it is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub dtype: tessera_desc::Dtype,
    pub shape: [usize; 4],
    pub len: usize,
    pub device: usize,
}

#[derive(Clone, Copy, Debug)]
pub struct Tensors {
    pub q: Meta,
    pub k: Meta,
    pub v: Meta,
    pub o: Meta,
}

fn mismatch(arg: &'static str, what: &'static str, expected: impl ToString, got: impl ToString) -> GpuError {
    GpuError::Mismatch { arg, what, expected: expected.to_string(), got: got.to_string() }
}

/// Returns [batch, heads, kv_heads, seq_q, seq_kv] and the grid extents as i32 when a launch of
/// `desc` at `config` on GPU `device` with these tensors (the LSE output's length, a
/// neighborhood's grid and a block-sparse kernel's list dimensions, when given) is sound, else
/// the first thing wrong.
#[allow(clippy::too_many_arguments)]
pub fn check_launch(
    desc: &KernelDesc,
    config: &Config,
    device: usize,
    takes_lists: bool,
    t: Tensors,
    lse_len: Option<usize>,
    grid: Option<&[usize]>,
    lists: Option<(usize, usize, usize)>,
) -> Result<([i32; 5], [i32; 3]), GpuError> {
    for (arg, m) in [("q", t.q), ("k", t.k), ("v", t.v), ("o", t.o)] {
        // Another GPU's pointer is not this context's memory.
        if m.device != device {
            return Err(mismatch(arg, "GPU (the kernel's)", device, m.device));
        }
        if m.dtype != desc.dtype {
            return Err(mismatch(arg, "dtype", desc.dtype, m.dtype));
        }
        if m.shape[3] != desc.head_dim as usize {
            return Err(mismatch(arg, "head_dim", desc.head_dim, m.shape[3]));
        }
        // The kernel indexes by the shape: the allocation must hold exactly that many.
        let elements = m.shape.iter().try_fold(1usize, |n, &e| n.checked_mul(e));
        if elements != Some(m.len) {
            return Err(mismatch(arg, "elements (the product of its shape)", format!("{:?}", m.shape), m.len));
        }
    }
    let [b, h, sq, _] = t.q.shape;
    let [kb, hk, skv, _] = t.k.shape;
    if kb != b {
        return Err(mismatch("k", "batch (as q)", b, kb));
    }
    if t.v.shape != t.k.shape {
        return Err(mismatch("v", "shape (as k)", format!("{:?}", t.k.shape), format!("{:?}", t.v.shape)));
    }
    if t.o.shape != t.q.shape {
        return Err(mismatch("o", "shape (as q)", format!("{:?}", t.q.shape), format!("{:?}", t.o.shape)));
    }
    if hk == 0 || h % hk != 0 {
        return Err(mismatch("k", "heads (a divisor of q's heads)", format!("a divisor of {h}"), hk));
    }
    if let Some(len) = lse_len
        && len != b * h * sq
    {
        return Err(mismatch("lse", "length (batch·heads·seq_q)", b * h * sq, len));
    }
    let mut out = [0i32; 5];
    for (o, (name, v)) in out.iter_mut().zip([("batch", b), ("heads", h), ("kv_heads", hk), ("seq_q", sq), ("seq_kv", skv)]) {
        *o = i32::try_from(v).map_err(|_| GpuError::Invalid(format!("{name} = {v} does not fit in i32")))?;
    }
    // Rows per (batch, head) plane are i32 on the device; element offsets are i64.
    for (name, rows) in [("q", b * h * sq), ("k", b * hk * skv)] {
        i32::try_from(rows).map_err(|_| GpuError::Invalid(format!("{name} has {rows} rows, more than the kernel's i32 row index")))?;
    }
    // Neighborhoods are self-attention over one grid of tokens.
    if matches!(desc.visit, Visit::Window(_)) && sq != skv {
        return Err(mismatch("k", "tokens (a window needs as many keys as queries)", sq, skv));
    }
    match (takes_lists, lists) {
        (true, None) => return Err(GpuError::Invalid(format!("{} is block-sparse: give its block lists", desc.name))),
        (false, Some(_)) => {
            return Err(GpuError::Invalid(format!("{} visits no block map, so it takes no block lists", desc.name)));
        }
        (true, Some(dims)) => {
            let (bq, bkv) = (config.block_q() as usize, config.block_kv() as usize);
            tessera_codegen::format::blocks::check_dims(dims, b * h, sq, skv, bq, bkv).map_err(GpuError::Invalid)?;
        }
        (false, None) => {}
    }
    // Each extent divides seq_q, which fits in i32 (checked above).
    let grid = grid_extents(desc, sq, grid).map_err(GpuError::Invalid)?.map(|e| e as i32);
    Ok((out, grid))
}

/// The checks against the kernel's own model: over random tensor metadata, mostly consistent
/// and sometimes wrong in one place (a batch, a head count, a length, a dtype, an LSE length,
/// a tensor on another GPU),
/// every launch the checks accept runs in the interpreter on buffers of exactly the lengths the
/// tensors claim, and matches the float64 reference; what they refuse never runs. (The
/// interpreter rejects any buffer shorter or longer than the launch's sizes, so "accepted"
/// includes "inside every tensor".)
#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use tessera_codegen::interp::{self, Launch};
    use tessera_codegen::reference::{self, Shape};
    use tessera_codegen::semantics::round_to;
    use tessera_desc::Dtype;

    use super::*;
    use crate::catalog;

    #[derive(Clone, Debug)]
    enum Fault {
        None,
        KBatch,
        VTokens,
        OHeads,
        QLen,
        KDtype,
        LseLen,
        KvHeads,
        VDevice,
    }

    fn fault() -> impl Strategy<Value = Fault> {
        prop_oneof![
            4 => Just(Fault::None),
            1 => Just(Fault::KBatch),
            1 => Just(Fault::VTokens),
            1 => Just(Fault::OHeads),
            1 => Just(Fault::QLen),
            1 => Just(Fault::KDtype),
            1 => Just(Fault::LseLen),
            1 => Just(Fault::KvHeads),
            1 => Just(Fault::VDevice),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn accepted_launches_compute_the_reference(
            kernel in prop_oneof![Just("dense_bf16_d64"), Just("causal_f16_d64")],
            (batch, kv_heads, group) in (1usize..3, 1usize..3, 1usize..3),
            (seq_q, seq_kv) in (1usize..80, 1usize..80),
            fault in fault(),
            seed in any::<u64>(),
        ) {
            let desc = catalog::find(kernel).unwrap();
            let cfg = desc.parse_config("block_q=64,block_kv=32,warps=4,stages=2").unwrap();
            let (heads, d) = (kv_heads * group, desc.head_dim as usize);
            let meta = |dtype, shape: [usize; 4]| Meta { dtype, shape, len: shape.iter().product(), device: 0 };
            let mut t = Tensors {
                q: meta(desc.dtype, [batch, heads, seq_q, d]),
                k: meta(desc.dtype, [batch, kv_heads, seq_kv, d]),
                v: meta(desc.dtype, [batch, kv_heads, seq_kv, d]),
                o: meta(desc.dtype, [batch, heads, seq_q, d]),
            };
            let mut lse = batch * heads * seq_q;
            match fault {
                Fault::None => {}
                Fault::KBatch => t.k.shape[0] += 1,
                Fault::VTokens => t.v.shape[2] += 1,
                Fault::OHeads => t.o.shape[1] += 1,
                Fault::QLen => t.q.len -= 1,
                Fault::KDtype => t.k.dtype = if desc.dtype == Dtype::Bf16 { Dtype::F16 } else { Dtype::Bf16 },
                Fault::LseLen => lse += 1,
                Fault::VDevice => t.v.device = 1,
                Fault::KvHeads => {
                    // Heads that q's do not divide into.
                    t.k.shape[1] = heads + 1;
                    t.k.len = t.k.shape.iter().product();
                    t.v = t.k;
                }
            }
            let checked = check_launch(desc, &cfg, 0, false, t, Some(lse), None, None);
            prop_assert_eq!(checked.is_ok(), matches!(fault, Fault::None), "{:?}: {:?}", fault, checked);
            let Ok(([b, h, hk, sq, skv], _)) = checked else { return Ok(()) };
            let (b, h, hk, sq, skv) = (b as usize, h as usize, hk as usize, sq as usize, skv as usize);
            let mut rng = StdRng::seed_from_u64(seed);
            let mut fill = |n: usize| (0..n).map(|_| round_to(desc.dtype, rng.random_range(-1.0f32..1.0))).collect::<Vec<f32>>();
            let (q, k, v) = (fill(t.q.len), fill(t.k.len), fill(t.v.len));
            let shape = Shape { batch: b, heads: h, kv_heads: hk, seq_q: sq, seq_kv: skv, head_dim: d };
            let launch = Launch::new(&shape, 1.0 / (d as f32).sqrt(), &q, &k, &v);
            let program = tessera_codegen::tile_program(desc, &cfg).unwrap();
            let got = interp::run(&program, &launch);
            prop_assert!(got.is_ok(), "{:?}", got.err());
            let wide = |x: &[f32]| x.iter().map(|&v| v as f64).collect::<Vec<_>>();
            let want = reference::of_desc(desc, &shape, &[sq], 1.0 / (d as f64).sqrt(), &wide(&q), &wide(&k), &wide(&v)).unwrap();
            let err = reference::rel_error(&wide(&got.unwrap().o), &want.o);
            // Rows that see no key (causal, seq_q > seq_kv) are 0 in both; otherwise bf16/f16 rounding.
            prop_assert!(err < 2e-2 || want.o.iter().all(|&x| x == 0.0), "{kernel} {shape:?}: rel error {err}");
        }
    }
}
