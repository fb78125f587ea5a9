//! SALE's int8 quantization on the GPU against the host definition (`SmoothedInt8`): codes and
//! per-row scales bit for bit given the GPU's means; the means, the correction and the shift within
//! the f32 rounding of their sums, relative to the magnitudes summed (the orders differ). Fresh random
//! inputs each run (seed printed) with per-channel offsets and outliers, poisoned outputs,
//! ragged lengths (1, 77, 1000, 4099) and blocks that do not divide them, GQA, Q and K of
//! different lengths, bf16 and f16, head_dim 64 and 128. Without a GPU every test prints why it
//! skipped and passes.

use crate::common::gpu;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tessera_codegen::format::smoothed::{SmoothedInt8, plane_means};
use tessera_codegen::format::{from_f32, to_f32};
use tessera_codegen::reference::Shape;
use tessera_desc::Dtype;
use tessera_runtime::gpu::{DeviceQuantized, DeviceTensor, Gpu, Quantizer};

/// Values of `dtype` (so that host and GPU see the same ones), as bits and as f32.
fn values(rng: &mut StdRng, dtype: Dtype, n: usize, d: usize) -> (Vec<u16>, Vec<f32>) {
    let bits: Vec<u16> = (0..n)
        .map(|i| {
            let x = if rng.random_bool(0.005) { rng.random_range(-30.0..30.0) } else { rng.random_range(-2.0f32..2.0) + (i % d) as f32 * 0.05 };
            from_f32(dtype, x)
        })
        .collect();
    let x = bits.iter().map(|&b| to_f32(dtype, b)).collect();
    (bits, x)
}

/// `|got - want| <= (terms + 64) · 2^-24 · scale` element by element: the f32 rounding of a
/// sum of `terms` values whose magnitudes add up to `scale`, in two summation orders.
fn close(what: &str, got: &[f32], want: &[f32], scale: &[f64], terms: usize) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let tolerance = (terms as f64 + 64.0) * f64::from(f32::EPSILON) / 2.0;
    for (i, ((&g, &w), &s)) in got.iter().zip(want).zip(scale).enumerate() {
        assert!(((g - w) as f64).abs() <= tolerance * s + 1e-30, "{what}[{i}]: {g} vs {w} (scale {s})");
    }
}

fn same<T: PartialEq + std::fmt::Debug>(what: &str, got: &[T], want: &[T]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        panic!("{what}[{i}]: {:?} vs {:?} ({} of {} differ)", got[i], want[i], (0..got.len()).filter(|&i| got[i] != want[i]).count(), got.len());
    }
}

/// Mean |x| per (plane, channel): the scale of a mean's rounding error.
fn mean_magnitudes(x: &[f32], planes: usize, tokens: usize, d: usize) -> Vec<f64> {
    let mut out = vec![0.0; planes * d];
    for p in 0..planes {
        for t in 0..tokens {
            for c in 0..d {
                out[p * d + c] += x[(p * tokens + t) * d + c].abs() as f64 / tokens as f64;
            }
        }
    }
    out
}

/// Σ_c |q̄_hc · Ks_jc| per (query head, key): the scale of a correction's rounding error.
fn correction_magnitudes(s: &Shape, k: &[f32], want: &SmoothedInt8) -> Vec<f64> {
    let (d, group) = (s.head_dim, s.group_size());
    let mut out = Vec::with_capacity(want.qmk.len());
    for h in 0..s.batch * s.heads {
        let p = h / group;
        for j in 0..s.seq_kv {
            out.push((0..d).map(|c| (want.q_mean[h * d + c] as f64 * (k[(p * s.seq_kv + j) * d + c] - want.k_mean[p * d + c]) as f64).abs()).sum());
        }
    }
    out
}

/// Σ_c |q_ic · k̄_c| per query row: the scale of a shift's rounding error.
fn shift_magnitudes(s: &Shape, q: &[f32], want: &SmoothedInt8) -> Vec<f64> {
    let (d, group) = (s.head_dim, s.group_size());
    (0..s.batch * s.heads * s.seq_q)
        .map(|r| {
            let p = r / s.seq_q / group;
            (0..d).map(|c| (q[r * d + c] as f64 * want.k_mean[p * d + c] as f64).abs()).sum()
        })
        .collect()
}

fn check(gpu: &Gpu, quantizer: &Quantizer, rng: &mut StdRng, dtype: Dtype, s: Shape, block: usize) {
    let at = format!("{dtype} {s:?} block {block}");
    let d = s.head_dim;
    let (q_bits, q) = values(rng, dtype, s.q_len(), d);
    let (k_bits, k) = values(rng, dtype, s.kv_len(), d);
    let qd = DeviceTensor::from_bits(gpu, dtype, s.q_shape(), &q_bits).unwrap();
    let kd = DeviceTensor::from_bits(gpu, dtype, s.kv_shape(), &k_bits).unwrap();
    let mut out = DeviceQuantized::poisoned(gpu, &s, block).unwrap();
    quantizer.quantize_into(gpu, &qd, &kd, &mut out).unwrap();
    let got = out.download(gpu).unwrap();

    let (q_planes, k_planes) = (s.batch * s.heads, s.batch * s.kv_heads);
    // The GPU's means: a warp's rows of a 512-token chunk, four warps, the chunks in order.
    let mean_terms = |tokens: usize| 128 + 3 + tokens.div_ceil(512);
    close(&format!("{at}: q means"), &got.q_mean, &plane_means(&q, q_planes, s.seq_q, d).unwrap(), &mean_magnitudes(&q, q_planes, s.seq_q, d), mean_terms(s.seq_q));
    close(&format!("{at}: k means"), &got.k_mean, &plane_means(&k, k_planes, s.seq_kv, d).unwrap(), &mean_magnitudes(&k, k_planes, s.seq_kv, d), mean_terms(s.seq_kv));
    let want = SmoothedInt8::with_means(&s, block, &q, &k, got.q_mean.clone(), got.k_mean.clone()).unwrap();
    same(&format!("{at}: q codes"), &got.q8, &want.q8);
    same(&format!("{at}: k codes"), &got.k8, &want.k8);
    same(&format!("{at}: q scales"), &got.q_scale, &want.q_scale);
    same(&format!("{at}: k scales"), &got.k_scale, &want.k_scale);
    close(&format!("{at}: qmk"), &got.qmk, &want.qmk, &correction_magnitudes(&s, &k, &want), d);
    close(&format!("{at}: qk_mean"), &got.qk_mean, &want.qk_mean, &shift_magnitudes(&s, &q, &want), d);

    // No atomics: a second run writes the same bits.
    let again = quantizer.quantize(gpu, &qd, &kd, block).unwrap().download(gpu).unwrap();
    assert!(again == got, "{at}: a second run differs");
    println!("{at}: ok");
}

fn shape(batch: usize, heads: usize, kv_heads: usize, seq_q: usize, seq_kv: usize, head_dim: usize) -> Shape {
    Shape { batch, heads, kv_heads, seq_q, seq_kv, head_dim }
}

#[test]
fn gpu_quantization_matches_the_host_bit_for_bit() {
    let Some(gpu) = gpu() else { return };
    let seed = std::env::var("TESSERA_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
    println!("inputs from TESSERA_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    for d in [128, 64, 32, 256] {
        let quantizer = Quantizer::load(&gpu, d).unwrap();
        for (dtype, s, block) in [
            (Dtype::Bf16, shape(1, 4, 4, 77, 77, d), 32),
            (Dtype::F16, shape(2, 8, 2, 1000, 1000, d), 64),
            (Dtype::Bf16, shape(1, 2, 1, 1, 1, d), 32),
            (Dtype::F16, shape(1, 4, 1, 1000, 77, d), 8),
            (Dtype::Bf16, shape(1, 3, 3, 77, 1000, d), 24),
            (Dtype::Bf16, shape(1, 2, 2, 4099, 4099, d), 256),
        ] {
            check(&gpu, &quantizer, &mut rng, dtype, s, block);
        }
    }
}

#[test]
fn empty_problems_and_bad_arguments() {
    let Some(gpu) = gpu() else { return };
    let d = 64;
    let quantizer = Quantizer::load(&gpu, d).unwrap();
    // An empty tensor holds one placeholder element (the driver refuses zero-byte allocations).
    let t = |dtype, shape: [usize; 4]| {
        let n: usize = shape.iter().product();
        DeviceTensor { data: gpu.stream.clone_htod(&vec![from_f32(dtype, 1.0); n.max(1)]).unwrap(), dtype, shape }
    };

    // No tokens: no codes, zero means, and (no queries) zero corrections.
    let got = quantizer.quantize(&gpu, &t(Dtype::Bf16, [1, 2, 0, d]), &t(Dtype::Bf16, [1, 1, 5, d]), 32).unwrap().download(&gpu).unwrap();
    assert!(got.q8.is_empty() && got.q_scale.is_empty());
    assert_eq!(got.q_mean, vec![0.0; 2 * d]);
    assert_eq!(got.qmk, vec![0.0; 2 * 5]);
    let got = quantizer.quantize(&gpu, &t(Dtype::F16, [0, 2, 7, d]), &t(Dtype::F16, [0, 1, 7, d]), 32).unwrap().download(&gpu).unwrap();
    assert!(got.q8.is_empty() && got.k8.is_empty() && got.qmk.is_empty() && got.k_mean.is_empty());

    // Bad input is an error before any launch.
    let (q, k) = (t(Dtype::Bf16, [1, 4, 10, d]), t(Dtype::Bf16, [1, 2, 10, d]));
    assert!(quantizer.quantize(&gpu, &q, &k, 32).is_ok());
    let err = |q: &DeviceTensor, k: &DeviceTensor, block| quantizer.quantize(&gpu, q, k, block).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err(&q, &k, 12).contains("multiple of 8"));
    assert!(err(&q, &k, 0).contains("multiple of 8"));
    assert!(err(&q, &t(Dtype::F16, [1, 2, 10, d]), 32).contains("dtype"));
    assert!(err(&q, &t(Dtype::Bf16, [1, 3, 10, d]), 32).contains("multiple of kv_heads"));
    assert!(err(&q, &t(Dtype::Bf16, [2, 2, 10, d]), 32).contains("batch"));
    assert!(err(&t(Dtype::Bf16, [1, 4, 10, 128]), &k, 32).contains("head_dim"));
    let lying = DeviceTensor { data: gpu.stream.clone_htod(&vec![0u16; 10]).unwrap(), dtype: Dtype::Bf16, shape: [1, 2, 10, d] };
    assert!(err(&q, &lying, 32).contains("elements"));
    let mut other = DeviceQuantized::poisoned(&gpu, &shape(1, 4, 2, 11, 10, d), 32).unwrap();
    assert!(quantizer.quantize_into(&gpu, &q, &k, &mut other).is_err());
    assert!(Quantizer::load(&gpu, 96).is_err());
}
