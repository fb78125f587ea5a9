//! The Mustafar decode kernel on the GPU against the float64 reference (prune, then dense decode
//! attention): fresh random inputs (with a run of zero tokens, whose tiles are empty, in the
//! longer contexts), poisoned outputs, contexts whose compressed region and window are not
//! multiples of the split or the tile, GQA groups 4 (32 query heads over 8 KV heads) and 1, bf16
//! and f16, default and explicit split counts; groups of 16 (a warp's rows, full), 32 (4 warps
//! over 128 rows, and the one-warp 64-row config) and 80 (one warp over 128 rows). Without a
//! GPU every test prints why it skipped and passes. A module of the `gpu` test binary (`--test gpu mustafar`), so that
//! the GPU bundle carries no extra copy of LLVM.

use crate::common::gpu;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tessera_codegen::format::{CachePolicy, MustafarCache, PruneRule, from_f32, to_f32};
use tessera_codegen::reference::{self, DecodeShape, Pruning, mustafar_decode_tokens};
use tessera_desc::Dtype;
use tessera_runtime::catalog;
use tessera_runtime::gpu::{DecodeArgs, DeviceMustafarCache, DeviceTensor, Gpu, MustafarDecode};

struct Case {
    batch: usize,
    heads: usize,
    kv_heads: usize,
    tokens: usize,
    dtype: Dtype,
    splits: Option<usize>,
}

/// Configs beyond the default: one warp over a 16-row query tile, 4 warps over 128 rows (the
/// config for GQA groups of 17 to 32 heads, two slabs a warp) and one warp over 64 or 128 rows
/// (for 33 to 64 and 65 to 128).
const ONE_WARP: &str = "block_q=16,warps=1,stages=1";
const THIRTY_TWO_ROWS: &str = "block_q=128,warps=4,stages=2";
const SIXTY_FOUR_ROWS: &str = "block_q=64,warps=1,stages=1";
const ONE_TWENTY_EIGHT_ROWS: &str = "block_q=128,warps=1,stages=1";

/// Relative errors of o and lse against the reference, at the default config or `config`.
fn run_case(gpu: &Gpu, case: &Case, config: Option<&str>, seed: u64) -> (f64, f64) {
    let name = format!("mustafar_{}_d128", case.dtype.name());
    let desc = catalog::find(&name).unwrap();
    let d = desc.head_dim as usize;
    let planes = case.batch * case.kv_heads;
    let mut rng = StdRng::seed_from_u64(seed);
    let dt = case.dtype;
    let mut fill = |n| {
        (0..n)
            .map(|_| to_f32(dt, from_f32(dt, rng.random_range(-2.0f32..2.0))))
            .collect::<Vec<_>>()
    };
    let q = fill(case.batch * case.heads * d);
    let (mut k, mut v) = (
        fill(planes * case.tokens * d),
        fill(planes * case.tokens * d),
    );
    // Longer contexts hold 128 zero tokens, whose cache tiles are empty (no bit, no value).
    if case.tokens >= 1024 {
        for plane in 0..planes {
            let rows = (plane * case.tokens + 256) * d..(plane * case.tokens + 384) * d;
            k[rows.clone()].fill(0.0);
            v[rows].fill(0.0);
        }
    }
    let policy = CachePolicy {
        k_sparsity: 0.7,
        v_sparsity: 0.7,
        rule: PruneRule::KthSmallest,
        residual: 32,
        chunk: 256,
    };
    let mut cache = MustafarCache::new(dt, planes, d, policy).unwrap();
    let bits = |x: &[f32]| x.iter().map(|&x| from_f32(dt, x)).collect::<Vec<_>>();
    cache.push(&bits(&k), &bits(&v), case.tokens).unwrap();

    let dev_cache = DeviceMustafarCache::upload(gpu, &cache, case.batch, case.kv_heads).unwrap();
    let shape = [case.batch, case.heads, 1, d];
    let qd = DeviceTensor::from_f32(gpu, dt, shape, &q).unwrap();
    let mut od = DeviceTensor::poisoned(gpu, dt, shape).unwrap();
    let mut lse = gpu
        .stream
        .clone_htod(&vec![f32::NAN; case.batch * case.heads])
        .unwrap();
    let cfg = desc.parse_config(config.unwrap_or("")).unwrap();
    let mut kernel = MustafarDecode::load(gpu, desc, &cfg).unwrap();
    let args = DecodeArgs {
        q: &qd,
        cache: &dev_cache,
        o: &mut od,
        lse: Some(&mut lse),
        scale: None,
        splits: case.splits,
    };
    kernel.run(gpu, args).unwrap();
    gpu.stream.synchronize().unwrap();
    let out = od.to_f32(gpu).unwrap();
    let lse = gpu.stream.clone_dtoh(&lse).unwrap();

    let wide = |x: &[f32]| x.iter().map(|&v| v as f64).collect::<Vec<_>>();
    let (tc, tl) = (cache.k.tokens, cache.local_len);
    let shape = DecodeShape {
        batch: case.batch,
        heads: case.heads,
        kv_heads: case.kv_heads,
        compressed: tc,
        local: tl,
        head_dim: d,
    };
    let pruning = Pruning::from(&policy);
    let want = mustafar_decode_tokens(
        &shape,
        pruning,
        1.0 / (d as f64).sqrt(),
        &wide(&q),
        &wide(&k),
        &wide(&v),
    )
    .unwrap();
    (
        reference::rel_error(&wide(&out), &want.o),
        reference::rel_error(&wide(&lse), &want.lse),
    )
}

#[test]
fn decode_matches_the_reference() {
    let Some(gpu) = gpu() else { return };
    let base = crate::run_seed();
    // tokens = compressed (multiples of the 256-token chunk) + a window of 32..288 tokens.
    let cases = [
        Case {
            batch: 1,
            heads: 32,
            kv_heads: 8,
            tokens: 8192 + 100,
            dtype: Dtype::Bf16,
            splits: None,
        },
        Case {
            batch: 1,
            heads: 32,
            kv_heads: 8,
            tokens: 4096 + 33,
            dtype: Dtype::Bf16,
            splits: Some(7),
        },
        Case {
            batch: 2,
            heads: 32,
            kv_heads: 8,
            tokens: 2048 + 287,
            dtype: Dtype::F16,
            splits: Some(3),
        },
        Case {
            batch: 3,
            heads: 8,
            kv_heads: 8,
            tokens: 1024 + 50,
            dtype: Dtype::F16,
            splits: None,
        },
        Case {
            batch: 1,
            heads: 8,
            kv_heads: 8,
            tokens: 512 + 40,
            dtype: Dtype::Bf16,
            splits: Some(1),
        },
        // More splits than compressed tiles: some CTAs see only the window or nothing.
        Case {
            batch: 1,
            heads: 32,
            kv_heads: 8,
            tokens: 256 + 40,
            dtype: Dtype::Bf16,
            splits: Some(9),
        },
        // Nothing compressed yet: the window alone.
        Case {
            batch: 1,
            heads: 32,
            kv_heads: 8,
            tokens: 200,
            dtype: Dtype::F16,
            splits: Some(2),
        },
    ];
    let runs = cases.iter().flat_map(|case| [(case, None), (case, Some(ONE_WARP))]);
    // Groups that fill a warp's 16 rows (the 4-warp default, whose warps split the keys),
    // groups of 32, which 4 warps over 128 rows and one warp over 64 rows hold, and one of 80,
    // which one warp over 128 rows holds.
    let wide = [
        Case { batch: 1, heads: 32, kv_heads: 2, tokens: 2048 + 70, dtype: Dtype::Bf16, splits: None },
        Case { batch: 1, heads: 32, kv_heads: 1, tokens: 1024 + 33, dtype: Dtype::F16, splits: Some(3) },
        Case { batch: 1, heads: 80, kv_heads: 1, tokens: 512 + 40, dtype: Dtype::Bf16, splits: Some(2) },
    ];
    let runs = runs.chain([
        (&wide[0], None),
        (&wide[1], Some(THIRTY_TWO_ROWS)),
        (&wide[1], Some(SIXTY_FOUR_ROWS)),
        (&wide[2], Some(ONE_TWENTY_EIGHT_ROWS)),
    ]);
    for (i, (case, config)) in runs.enumerate() {
        let (o_err, lse_err) = run_case(&gpu, case, config, base ^ i as u64);
        let tol = if case.dtype == Dtype::Bf16 {
            1e-2
        } else {
            2e-3
        };
        println!("run {i} {config:?}: o {o_err:.2e}, lse {lse_err:.2e}");
        assert!(
            o_err < tol && lse_err < 1e-3,
            "run {i} {config:?}: o error {o_err}, lse error {lse_err}"
        );
    }
}

/// Bad launches are errors before anything runs: a query of the wrong dtype or token count, an
/// output of another shape, a cache of another batch, zero splits.
#[test]
fn bad_arguments_are_errors() {
    let Some(gpu) = gpu() else { return };
    let desc = catalog::find("mustafar_bf16_d128").unwrap();
    let policy = CachePolicy {
        k_sparsity: 0.5,
        v_sparsity: 0.5,
        rule: PruneRule::KthSmallest,
        residual: 32,
        chunk: 256,
    };
    let mut cache = MustafarCache::new(Dtype::Bf16, 8, 128, policy).unwrap();
    let n = 8 * 300 * 128;
    cache.push(&vec![0x3f80; n], &vec![0x3f80; n], 300).unwrap();
    let dev_cache = DeviceMustafarCache::upload(&gpu, &cache, 1, 8).unwrap();
    assert!(DeviceMustafarCache::upload(&gpu, &cache, 2, 8).is_err());
    let mut kernel = MustafarDecode::load(&gpu, desc, &desc.default_config().unwrap()).unwrap();
    let tensor = |dt, shape| {
        DeviceTensor::from_f32(&gpu, dt, shape, &vec![0.0; shape.iter().product()]).unwrap()
    };
    let good = [1, 32, 1, 128];
    for (q, o, splits) in [
        (tensor(Dtype::F16, good), tensor(Dtype::Bf16, good), None),
        (
            tensor(Dtype::Bf16, [1, 32, 2, 128]),
            tensor(Dtype::Bf16, [1, 32, 2, 128]),
            None,
        ),
        (
            tensor(Dtype::Bf16, good),
            tensor(Dtype::Bf16, [1, 16, 1, 128]),
            None,
        ),
        (
            tensor(Dtype::Bf16, [2, 32, 1, 128]),
            tensor(Dtype::Bf16, [2, 32, 1, 128]),
            None,
        ),
        (
            tensor(Dtype::Bf16, good),
            tensor(Dtype::Bf16, good),
            Some(0),
        ),
    ] {
        let mut o = o;
        let args = DecodeArgs {
            q: &q,
            cache: &dev_cache,
            o: &mut o,
            lse: None,
            scale: None,
            splits,
        };
        assert!(kernel.run(&gpu, args).is_err());
    }
    let dense = catalog::find("dense_bf16_d128").unwrap();
    assert!(MustafarDecode::load(&gpu, dense, &dense.default_config().unwrap()).is_err());
}
