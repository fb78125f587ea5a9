//! The decode program (GQA-packed query tiles, split-KV, bitmap-compressed region plus dense
//! window) run by the interpreter against Mustafar's float64 decode reference.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tessera_codegen::decode_program;
use tessera_codegen::format::{CachePolicy, MustafarCache, PruneRule, from_f32, to_f32};
use tessera_codegen::interp::{DecodeInputs, decode};
use tessera_codegen::ir::decode::DecodeSizes;
use tessera_codegen::ir::{Program, Stmt};
use tessera_codegen::reference::{self, DecodeShape, Pruning, mustafar_decode_tokens};
use tessera_desc::{BitmapLoad, Config, Dtype, KernelDesc, Layout, Load, Param, Schedule, Visit};

fn desc(dtype: Dtype, head_dim: u32) -> KernelDesc {
    KernelDesc {
        name: "decode",
        head_dim,
        dtype,
        layout: Layout::Bhsd,
        visit: Visit::Dense,
        load: Load::Bitmap(BitmapLoad { k: true, v: true }),
        schedule: Schedule::line(
            Param::Choices(&[16, 64, 128]),
            Param::Choices(&[64, 128]),
            Param::Choices(&[1, 4]),
            Param::Choices(&[1, 2, 3]),
        ),
    }
}

struct Case {
    batch: usize,
    heads: usize,
    kv_heads: usize,
    /// Tokens pushed into the cache: the compressed region is the whole chunks of the part
    /// older than the residual window, the rest stays dense.
    tokens: usize,
    head_dim: usize,
    splits: usize,
    dtype: Dtype,
    cfg: Config,
    /// Tokens the cache keeps dense at least.
    residual: usize,
}

fn run(case: &Case, seed: u64) -> f64 {
    run_zeroed(case, seed, 0..0)
}

fn run_zeroed(case: &Case, seed: u64, zeros: std::ops::Range<usize>) -> f64 {
    run_edited(case, seed, zeros, &|_| {}).unwrap_or_else(|e| panic!("{e}"))
}

/// `run` with the K and V of tokens `zeros` (of every plane) set to zero: pruning keeps no
/// element of them, so the cache's tiles over them are empty (bitmap 0, no values).
/// The relative error of the decode program, changed by `edit`, or the interpreter's error.
fn run_edited(case: &Case, seed: u64, zeros: std::ops::Range<usize>, edit: &dyn Fn(&mut Program)) -> Result<f64, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (d, planes) = (case.head_dim, case.batch * case.kv_heads);
    let mut fill = |n| {
        (0..n)
            .map(|_| {
                to_f32(
                    case.dtype,
                    from_f32(case.dtype, rng.random_range(-1.0f32..1.0)),
                )
            })
            .collect::<Vec<_>>()
    };
    let q = fill(case.batch * case.heads * d);
    let (mut k, mut v) = (
        fill(planes * case.tokens * d),
        fill(planes * case.tokens * d),
    );
    for plane in 0..planes {
        let rows = (plane * case.tokens + zeros.start) * d..(plane * case.tokens + zeros.end) * d;
        k[rows.clone()].fill(0.0);
        v[rows].fill(0.0);
    }
    let policy = CachePolicy {
        k_sparsity: 0.7,
        v_sparsity: 0.5,
        rule: PruneRule::KthSmallest,
        residual: case.residual,
        chunk: 128,
    };
    let mut cache = MustafarCache::new(case.dtype, planes, d, policy).unwrap();
    let bits = |x: &[f32]| {
        x.iter()
            .map(|&x| from_f32(case.dtype, x))
            .collect::<Vec<_>>()
    };
    cache.push(&bits(&k), &bits(&v), case.tokens).unwrap();
    if zeros.len() >= 128 {
        // Some whole 64-token tile lies in the zeroed range: the test reads empty tiles.
        assert!(cache.k.bitmaps.contains(&0) && cache.v.bitmaps.contains(&0), "no empty tile");
    }
    let (tc, tl) = (cache.k.tokens, cache.local_len);
    assert_eq!(tc + tl, case.tokens);
    let floats = |x: &[u16]| x.iter().map(|&b| to_f32(case.dtype, b)).collect::<Vec<_>>();
    let (kl, vl) = (floats(&cache.local_k), floats(&cache.local_v));

    let sizes = DecodeSizes {
        batch: case.batch,
        heads: case.heads,
        kv_heads: case.kv_heads,
        compressed: tc,
        window: tl,
        splits: case.splits,
    };
    let mut program = decode_program(&desc(case.dtype, d as u32), &case.cfg).unwrap();
    edit(&mut program);
    let scale = 1.0 / (d as f32).sqrt();
    let inputs = DecodeInputs {
        sizes,
        scale,
        q: &q,
        k: &kl,
        v: &vl,
        k_cache: &cache.k,
        v_cache: &cache.v,
    };
    let out = decode(&program, &inputs)?;

    // The reference prunes the compressed region itself, from the tokens as they were pushed.
    let wide = |x: &[f32]| x.iter().map(|&v| v as f64).collect::<Vec<_>>();
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
        scale as f64,
        &wide(&q),
        &wide(&k),
        &wide(&v),
    )
    .unwrap();
    if !out.o.iter().all(|x| x.is_finite()) {
        return Err("an output is not finite (not written, or computed from overwritten bytes)".into());
    }
    let lse_err = out
        .lse
        .iter()
        .zip(&want.lse)
        .map(|(&a, &b)| (a as f64 - b).abs())
        .fold(0.0, f64::max);
    assert!(lse_err < 1e-3, "lse error {lse_err}");
    Ok(reference::rel_error(
        &out.o.iter().map(|&x| x as f64).collect::<Vec<_>>(),
        &want.o,
    ))
}

fn tolerance(dtype: Dtype) -> f64 {
    if dtype == Dtype::Bf16 { 1e-2 } else { 2e-3 }
}

/// GQA groups of 4 and 1, both element types, split counts that do and do not divide the
/// compressed tiles (some splits get none), windows that are not a multiple of the KV tile.
#[test]
fn decode_matches_the_reference() {
    let cfg = Config::line(16, 64, 1, 2);
    let cases = [
        (4, 1, 32 + 256 + 40, 1, Dtype::Bf16),
        (4, 2, 32 + 384 + 7, 3, Dtype::F16),
        (1, 1, 32 + 128 + 100, 2, Dtype::Bf16),
        (1, 2, 32 + 256 + 1, 7, Dtype::F16),
        (4, 1, 32 + 128 + 64, 5, Dtype::Bf16),
    ];
    for (i, &(group, batch, tokens, splits, dtype)) in cases.iter().enumerate() {
        let case = Case {
            batch,
            heads: 2 * group,
            kv_heads: 2,
            tokens,
            head_dim: 64,
            splits,
            dtype,
            cfg,
            residual: 32,
        };
        let err = run(&case, i as u64);
        assert!(err < tolerance(dtype), "case {i}: relative error {err}");
    }
}

/// Other schedules: 4 warps splitting each KV tile's keys (16 or 32 each), 128-key tiles, no
/// pipelining, D=128.
#[test]
fn decode_schedules_agree() {
    for (i, cfg) in [Config::line(64, 64, 4, 3), Config::line(16, 128, 1, 1), Config::line(64, 128, 4, 2)]
        .into_iter()
        .enumerate()
    {
        let case = Case {
            batch: 1,
            heads: 8,
            kv_heads: 2,
            tokens: 32 + 256 + 50,
            head_dim: 128,
            splits: 3,
            dtype: Dtype::Bf16,
            cfg,
            residual: 32,
        };
        let err = run(&case, 10 + i as u64);
        assert!(
            err < tolerance(Dtype::Bf16),
            "config {i}: relative error {err}"
        );
    }
}

/// Four warps over 128 rows split the keys with two 16-row slabs each: groups of 17 to 32 heads
/// (the catalog's fallback for them); one warp over 128 rows holds up to 128 heads in eight
/// slabs (the fallback for 65 to 128). Ragged in both the compressed region and the window.
#[test]
fn wide_groups_on_several_slabs_a_warp() {
    let cases = [(32, 1, 4), (40, 2, 4), (80, 1, 1)];
    for (i, (heads, kv_heads, warps)) in cases.into_iter().enumerate() {
        let case = Case {
            batch: 1,
            heads,
            kv_heads,
            tokens: 32 + 256 + 45,
            head_dim: 128,
            splits: 2,
            dtype: Dtype::Bf16,
            cfg: Config::line(128, 64, warps, 2),
            residual: 32,
        };
        let err = run(&case, 40 + i as u64);
        assert!(err < tolerance(Dtype::Bf16), "group of {}: relative error {err}", heads / kv_heads);
    }
}

/// A cache that is all window (nothing compressed yet) and one whose window is empty.
#[test]
fn decode_edges() {
    let cfg = Config::line(16, 64, 1, 2);
    for (i, (tokens, residual)) in [(20, 32), (256, 0)].into_iter().enumerate() {
        let case = Case {
            batch: 1,
            heads: 4,
            kv_heads: 1,
            tokens,
            head_dim: 64,
            splits: 2,
            dtype: Dtype::F16,
            cfg,
            residual,
        };
        let err = run(&case, 20 + i as u64);
        assert!(
            err < tolerance(Dtype::F16),
            "tokens {tokens}: relative error {err}"
        );
    }
}

/// Tokens whose K and V are all zero leave whole bitmap tiles empty (no set bit, no value); the
/// decode reads them as zeros, matching the reference, and writes finite outputs (issue 8).
#[test]
fn all_pruned_tiles_read_as_zeros() {
    for (cfg, zeros) in [(Config::line(16, 64, 1, 2), 64..192), (Config::line(64, 64, 4, 2), 0..300)] {
        let case = Case {
            batch: 2,
            heads: 8,
            kv_heads: 2,
            tokens: 420,
            head_dim: 64,
            splits: 3,
            dtype: Dtype::Bf16,
            cfg,
            residual: 32,
        };
        let err = run_zeroed(&case, 31, zeros.clone());
        assert!(err < tolerance(Dtype::Bf16), "{cfg}, zero tokens {zeros:?}: relative error {err}");
    }
}

/// V is expanded into the bytes the scores read Kᵀ from (`Shared::overlay`): without the
/// barrier between them, the interpreter reports the race; expanded before the scores, it
/// leaves them NaN to read, as a GPU would leave them V's values. The same for the warps'
/// partial states, written over the window's K stages.
#[test]
fn expanding_over_bytes_still_read_is_a_race() {
    let case = Case { batch: 1, heads: 4, kv_heads: 1, tokens: 300, head_dim: 64, splits: 1, dtype: Dtype::Bf16, cfg: Config::line(64, 64, 4, 2), residual: 32 };
    assert!(run_edited(&case, 41, 0..0, &|_| {}).is_ok());
    let drop_barrier = |p: &mut Program| {
        for s in &mut p.body {
            if let Stmt::For { body, .. } = s
                && let Some(i) = body.iter().rposition(|s| matches!(s, Stmt::Expand { .. }))
            {
                assert!(matches!(body[i - 1], Stmt::Barrier));
                body.remove(i - 1);
            }
        }
    };
    let err = run_edited(&case, 41, 0..0, &drop_barrier).unwrap_err();
    assert!(err.contains("races"), "{err}");
    // V expanded right after K, before the scores read Kᵀ: no read races with it, but the
    // interpreter models the shared bytes, so the scores read what V left there.
    let expand_early = |p: &mut Program| {
        for s in &mut p.body {
            if let Stmt::For { body, .. } = s
                && let Some(i) = body.iter().rposition(|s| matches!(s, Stmt::Expand { .. }))
            {
                let v = body.remove(i);
                let k = body.iter().position(|s| matches!(s, Stmt::Expand { .. })).unwrap();
                body.insert(k + 1, v);
            }
        }
    };
    let err = run_edited(&case, 41, 0..0, &expand_early).unwrap_err();
    assert!(err.contains("not finite"), "{err}");
    // The warps' partial states go through bytes the last window tile's K was read from (and
    // at 128 rows, larger than K's stages, through V's too: `passes::smem` lets the overlay
    // run on, and the interpreter compares placed bytes). One stage needs no barrier here: its
    // window loop ends each step with one.
    let merge_unfenced = |p: &mut Program| {
        let i = p.body.iter().position(|s| matches!(s, Stmt::MergeParts { .. })).unwrap();
        assert!(matches!(p.body[i - 1], Stmt::Barrier));
        p.body.remove(i - 1);
    };
    for cfg in [Config::line(64, 64, 4, 2), Config::line(128, 64, 4, 2)] {
        let case = Case { cfg, ..case };
        assert!(run_edited(&case, 41, 0..0, &|_| {}).is_ok(), "{cfg}");
        let err = run_edited(&case, 41, 0..0, &merge_unfenced).expect_err(&cfg.to_string());
        assert!(err.contains("races"), "{cfg}: {err}");
    }
}

/// The partial states' scratch lies over the loops' buffers, dead by then, from K's stages on:
/// at 128 rows it is larger than those stages and runs on over the next buffers, instead of
/// taking 52 KB of its own (2 stages then fit an A100's 163 KiB).
#[test]
fn the_partial_states_lie_over_the_loops_buffers() {
    let program = decode_program(&desc(Dtype::Bf16, 128), &Config::line(128, 64, 4, 2)).unwrap();
    let buf = |name: &str| program.shared.iter().find(|b| b.name == name).unwrap();
    let (parts, ks) = (buf("Parts"), buf("Ks"));
    let elem = program.elem_bytes();
    assert!(parts.bytes(elem) > ks.bytes(elem));
    assert_eq!(parts.offset, ks.offset);
    let end = |b: &tessera_codegen::ir::Shared| b.offset.unwrap() + b.bytes(elem);
    assert!(program.shared.iter().all(|b| end(b) <= 124 * 1024 + 1024), "{}", program.shared_bytes());
    assert!(program.shared_bytes() < 163 * 1024, "{}", program.shared_bytes());
}

/// Launch sizes the program cannot run are errors before anything runs.
#[test]
fn bad_decode_sizes_are_errors() {
    let program = decode_program(&desc(Dtype::Bf16, 64), &Config::line(16, 64, 1, 2)).unwrap();
    let ok = DecodeSizes {
        batch: 1,
        heads: 8,
        kv_heads: 2,
        compressed: 128,
        window: 3,
        splits: 2,
    };
    assert!(ok.check(&program).is_ok());
    for bad in [
        DecodeSizes { heads: 7, ..ok },
        DecodeSizes { heads: 64, ..ok },
        DecodeSizes {
            compressed: 100,
            ..ok
        },
        DecodeSizes { splits: 0, ..ok },
        DecodeSizes {
            compressed: 0,
            window: 0,
            ..ok
        },
    ] {
        assert!(bad.check(&program).is_err(), "{bad:?}");
    }
    // Warps that split the keys each hold the whole group: 16 rows of a 64-row tile. The
    // tuner's count of a config's rows (`query_rows`) is the program's.
    let split = decode_program(&desc(Dtype::Bf16, 64), &Config::line(64, 64, 4, 2)).unwrap();
    assert_eq!(split.key_parts, 4);
    for cfg in desc(Dtype::Bf16, 64).configs() {
        let program = decode_program(&desc(Dtype::Bf16, 64), &cfg).unwrap();
        assert_eq!(program.rows_per_part(), tessera_codegen::ir::decode::query_rows(&cfg), "{cfg}");
    }
    assert!(DecodeSizes { heads: 32, ..ok }.check(&split).is_ok());
    assert!(DecodeSizes { heads: 34, ..ok }.check(&split).is_err());
    let mut dense = desc(Dtype::Bf16, 64);
    dense.load = Load::Dense;
    assert!(decode_program(&dense, &Config::line(16, 64, 1, 2)).is_err());
}

/// Q's A fragments are loaded once, after its copy landed (4-warp configs): loaded before the
/// wait and barrier that land it, the interpreter reports the early read.
#[test]
fn q_is_loaded_into_registers_after_it_lands() {
    let case = Case { batch: 1, heads: 4, kv_heads: 1, tokens: 300, head_dim: 64, splits: 1, dtype: Dtype::Bf16, cfg: Config::line(64, 64, 4, 2), residual: 32 };
    let early = |p: &mut Program| {
        let i = p.body.iter().position(|s| matches!(s, Stmt::LoadOperand { .. })).unwrap();
        assert!(matches!(p.body[i - 2..i], [Stmt::Wait { .. }, Stmt::Barrier]));
        p.body.drain(i - 2..i);
    };
    let err = run_edited(&case, 51, 0..0, &early).unwrap_err();
    assert!(err.contains("before its async copy was waited for"), "{err}");
}
