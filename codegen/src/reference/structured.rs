//! Long-context inputs with the structure real attention has, for sparse-attention methods whose
//! selection random inputs would fool (uniform random Q/K give near-uniform attention, so any
//! block mask looks as good as any other): keys drift slowly along the sequence (nearby tokens
//! are alike, so queries attend locally), the first token is an attention sink every query
//! looks at, and a few queries are planted to retrieve one far-away key each.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::Shape;

#[derive(Clone, Debug)]
pub struct Structured {
    pub q: Vec<f64>,
    pub k: Vec<f64>,
    pub v: Vec<f64>,
    /// (batch·head plane of q, query, key) of every planted retrieval.
    pub planted: Vec<(usize, usize, usize)>,
}

/// Retrievals planted per query head.
pub const PLANTED_PER_HEAD: usize = 4;

/// Inputs for causal self-attention over `shape` (`seq_q == seq_kv`, at least 8 tokens),
/// reproducible from `seed`.
pub fn structured_inputs(shape: &Shape, seed: u64) -> Result<Structured, String> {
    shape.check()?;
    if shape.seq_q != shape.seq_kv || shape.seq_q < 8 {
        return Err(format!("structured inputs are for self-attention of at least 8 tokens, not {shape:?}"));
    }
    let (l, d) = (shape.seq_q, shape.head_dim);
    let mut rng = StdRng::seed_from_u64(seed);
    let noise = |rng: &mut StdRng, n: usize| -> Vec<f64> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
    let mut k = Vec::with_capacity(shape.kv_len());
    for _ in 0..shape.batch * shape.kv_heads {
        let sink: Vec<f64> = noise(&mut rng, d).iter().map(|x| 4.0 * x).collect();
        let mut prev = noise(&mut rng, d);
        for j in 0..l {
            // An AR(1) drift: consecutive keys correlate at 0.8.
            let fresh = noise(&mut rng, d);
            prev = prev.iter().zip(&fresh).map(|(p, f)| 0.8 * p + 0.6 * f).collect();
            k.extend(if j == 0 { &sink } else { &prev });
        }
    }
    let v = noise(&mut rng, shape.kv_len());
    let mut q = Vec::with_capacity(shape.q_len());
    let mut planted = Vec::new();
    for b in 0..shape.batch {
        for h in 0..shape.heads {
            let plane = b * shape.heads + h;
            let kh = &k[(b * shape.kv_heads + h / shape.group_size()) * l * d..][..l * d];
            // Retrieving queries in the second half, each for a key in the first quarter past
            // the sink: far from the query's local window.
            let targets: Vec<(usize, usize)> = (0..PLANTED_PER_HEAD)
                .map(|_| (rng.random_range(l / 2..l), rng.random_range(1..l / 4)))
                .collect();
            for i in 0..l {
                let own = &kh[i * d..][..d];
                let sink = &kh[..d];
                let mut row: Vec<f64> = noise(&mut rng, d).iter().zip(own).zip(sink).map(|((n, o), s)| 0.5 * n + 3.6 * o + 0.15 * s).collect();
                for &(qi, kj) in targets.iter().filter(|t| t.0 == i) {
                    for (r, x) in row.iter_mut().zip(&kh[kj * d..][..d]) {
                        *r += 5.0 * x;
                    }
                    planted.push((plane, qi, kj));
                }
                q.extend(row);
            }
        }
    }
    Ok(Structured { q, k, v, planted })
}

/// Inputs whose block selection is known exactly: every query points along channel 0 (4 or 5,
/// so that smoothing leaves codes), and the keys of KV tile `t` (`block_k` tokens) along it
/// (4) for even `t` and against it (-64) for odd `t`; the other channels are 0, and V is K.
/// All values are exact in f16 and bf16. With `scale = 1/√D`, a score is about +1.4 on an even
/// tile and below -20 on an odd one, so under any τ in [1e-4, 1e-2] a row's threshold (its LSE
/// over at most a few hundred forced keys, plus ln τ) lies between the two by more than a unit:
/// a selection keeps exactly the forced tiles and the visible even ones, whatever order it
/// accumulates in. Tiles that vote differently from step to step catch a vote stored for the
/// wrong tile.
pub fn alternating_tiles(shape: &Shape, block_k: usize) -> Result<Structured, String> {
    shape.check()?;
    if block_k == 0 {
        return Err("tiles of 0 keys".into());
    }
    let d = shape.head_dim;
    let along = |len: usize, value: &dyn Fn(usize) -> f64| -> Vec<f64> {
        (0..len).flat_map(|t| (0..d).map(move |c| if c == 0 { value(t) } else { 0.0 })).collect()
    };
    let q = along(shape.q_len() / d, &|t| if t % 2 == 0 { 4.0 } else { 5.0 });
    let k = along(shape.kv_len() / d, &|t| if ((t % shape.seq_kv) / block_k).is_multiple_of(2) { 4.0 } else { -64.0 });
    Ok(Structured { q, v: k.clone(), k, planted: Vec::new() })
}
