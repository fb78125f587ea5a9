//! The tile-IR interpreter against the float64 reference, and the interpreter's own checks of
//! the async-copy discipline.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tessera_codegen::interp::{self, Launch};
use tessera_codegen::ir::{self, Stmt};
use tessera_codegen::reference::{self, Mask, Shape};
use tessera_codegen::{Target, passes, target_program, tile_program};
use tessera_desc::{Config, Dtype, KernelDesc, Layout, Load, Mma, Param, Schedule, Visit, Window, WindowAxis};

const SPACE: Schedule = Schedule::line(Param::Choices(&[16, 32, 64]), Param::Choices(&[16, 32, 64]), Param::Choices(&[1, 2, 4]), Param::Choices(&[1, 2, 3]));

fn desc(visit: Visit, dtype: Dtype, head_dim: u32) -> KernelDesc {
    KernelDesc {
        name: "t",
        head_dim,
        dtype,
        layout: Layout::Bhsd,
        visit,
        load: Load::Dense,
        schedule: SPACE,
    }
}

struct Case {
    shape: Shape,
    grid: [usize; 3],
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
}

impl Case {
    fn random(rng: &mut StdRng, shape: Shape) -> Case {
        let mut fill = |n| (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<_>>();
        Case { q: fill(shape.q_len()), k: fill(shape.kv_len()), v: fill(shape.kv_len()), shape, grid: [shape.seq_q, 1, 1] }
    }

    fn launch(&self) -> Launch<'_> {
        let scale = 1.0 / (self.shape.head_dim as f32).sqrt();
        Launch { grid: self.grid, ..Launch::new(&self.shape, scale, &self.q, &self.k, &self.v) }
    }

    fn reference(&self, mask: Mask, dtype: Dtype) -> reference::Output {
        // The kernel sees inputs rounded to its element type; so does the reference.
        let r = |x: &Vec<f32>| -> Vec<f64> {
            x.iter().map(|&v| tessera_codegen::semantics::round_to(dtype, v) as f64).collect()
        };
        let scale = 1.0 / (self.shape.head_dim as f64).sqrt();
        reference::attention(&self.shape, mask, scale, &r(&self.q), &r(&self.k), &r(&self.v))
    }
}

fn widen(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

fn check(visit: Visit, dtype: Dtype, cfg: Config, shape: Shape, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let case = Case::random(&mut rng, shape);
    let program = tile_program(&desc(visit, dtype, shape.head_dim as u32), &cfg).unwrap();
    let out = interp::run(&program, &case.launch()).unwrap();
    let mask = if visit == Visit::Causal { Mask::Causal } else { Mask::None };
    let want = case.reference(mask, dtype);
    let err = reference::rel_error(&widen(&out.o), &want.o);
    let tol = if dtype == Dtype::Bf16 { 1e-2 } else { 2e-3 };
    assert!(err < tol, "{visit:?} {dtype} {cfg} {shape:?}: rel error {err}");
    for (i, (&got, &want)) in out.lse.iter().zip(&want.lse).enumerate() {
        let ok = if want == f64::NEG_INFINITY { got == f32::NEG_INFINITY } else { (got as f64 - want).abs() < 1e-3 };
        assert!(ok, "{visit:?} {cfg} {shape:?}: lse[{i}] = {got}, reference {want}");
    }
}

fn shape(batch: usize, heads: usize, kv_heads: usize, seq_q: usize, seq_kv: usize, head_dim: usize) -> Shape {
    Shape { batch, heads, kv_heads, seq_q, seq_kv, head_dim }
}

#[test]
fn dense_and_causal_match_reference_on_ragged_lengths() {
    let cfg = Config::line(32, 16, 2, 2);
    for (i, (sq, skv)) in [(1, 1), (17, 17), (33, 50), (50, 33), (64, 64), (5, 70)].into_iter().enumerate() {
        for visit in [Visit::Dense, Visit::Causal] {
            check(visit, Dtype::Bf16, cfg, shape(1, 2, 2, sq, skv, 64), i as u64);
        }
    }
}

#[test]
fn grouped_query_attention_and_f16() {
    let cfg = Config::line(16, 32, 1, 3);
    for (group, dtype) in [(1, Dtype::F16), (4, Dtype::Bf16), (8, Dtype::F16)] {
        check(Visit::Causal, dtype, cfg, shape(2, 8, 8 / group, 23, 41, 64), group as u64);
    }
    check(Visit::Dense, Dtype::Bf16, cfg, shape(1, 4, 1, 19, 77, 128), 9);
}

#[test]
fn every_config_of_the_space_matches_reference() {
    let d = desc(Visit::Causal, Dtype::Bf16, 64);
    for (i, cfg) in d.configs().into_iter().enumerate() {
        check(Visit::Causal, Dtype::Bf16, cfg, shape(1, 1, 1, 37, 45, 64), 100 + i as u64);
    }
}

/// Instruction selection (`passes::engine`) changes how products are issued and how tiles sit
/// in shared memory, not what the tile program means: the interpreter runs the sm_90a wgmma
/// program of every warpgroup config to the mma.sync program's output, bit for bit. (The
/// interpreter ignores the engine and the layout, so this checks the pass, not the wgmma
/// lowering: that is `llvm::wgmma`'s descriptor tests, ptxas, and the GPU tests.)
#[test]
fn wgmma_selection_keeps_the_program_semantics() {
    let mut rng = StdRng::seed_from_u64(21);
    let case = Case::random(&mut rng, shape(1, 2, 1, 70, 90, 64));
    let d = desc(Visit::Causal, Dtype::Bf16, 64);
    let warpgroups: Vec<Config> = d.configs().into_iter().filter(|c| c.warps % 4 == 0).collect();
    assert!(!warpgroups.is_empty());
    for cfg in warpgroups {
        let sync = interp::run(&tile_program(&d, &cfg).unwrap(), &case.launch()).unwrap();
        let wgmma = target_program(&d, &cfg.with_mma(Mma::Wgmma), Target::Sm90a).unwrap();
        assert!(wgmma.shared.iter().all(|b| b.block_cols == 64), "{cfg}");
        assert_eq!(interp::run(&wgmma, &case.launch()).unwrap().o, sync.o, "{cfg}");
    }
    let wgmma_on_sm80 = target_program(&d, &Config::line(64, 64, 4, 2).with_mma(Mma::Wgmma), Target::Sm80);
    assert!(wgmma_on_sm80.is_err());
}

/// Non-finite inputs: a NaN in q or k, or an infinity in k, reaches exactly the outputs the
/// reference says, as the same kind of value (NaN, +inf, -inf); masks replace a key's score
/// whatever it is. V is different, by the tensor cores' arithmetic: a masked key's probability
/// is 0 and 0 · NaN = 0 · inf = NaN, so a non-finite V element reaches every row of the query
/// tiles that load its KV tile, also rows that do not see it (PyTorch's own math path, P @ V,
/// does the same over every row). Where the reference is non-finite we are too, alike.
#[test]
fn non_finite_inputs_reach_the_outputs_the_reference_says() {
    let classify = |x: f64| if x.is_nan() { 'n' } else if x == f64::INFINITY { '+' } else if x == f64::NEG_INFINITY { '-' } else { 'f' };
    let sh = shape(1, 2, 1, 37, 45, 64);
    let cases = [('q', f32::NAN), ('k', f32::NAN), ('k', f32::INFINITY), ('k', f32::NEG_INFINITY), ('v', f32::NAN), ('v', f32::INFINITY), ('v', f32::NEG_INFINITY)];
    for (i, (tensor, value)) in cases.into_iter().enumerate() {
        for visit in [Visit::Dense, Visit::Causal] {
            let mut rng = StdRng::seed_from_u64(40 + i as u64);
            let mut case = Case::random(&mut rng, sh);
            let (buf, at) = match tensor {
                'q' => (&mut case.q, 5 * 64 + 3),
                'k' => (&mut case.k, 20 * 64 + 7),
                _ => (&mut case.v, 20 * 64 + 7),
            };
            buf[at] = value;
            let d = desc(visit, Dtype::Bf16, 64);
            let out = interp::run(&tile_program(&d, &Config::line(32, 16, 2, 2)).unwrap(), &case.launch()).unwrap();
            let mask = if visit == Visit::Causal { Mask::Causal } else { Mask::None };
            let want = case.reference(mask, Dtype::Bf16);
            let got: Vec<char> = out.o.iter().map(|&x| classify(x as f64)).collect();
            let expected: Vec<char> = want.o.iter().map(|&x| classify(x)).collect();
            let at = format!("{visit:?}, {tensor} = {value}");
            assert!(expected.iter().any(|&c| c != 'f'), "{at} reached no output");
            if tensor == 'v' {
                for (n, (&g, &e)) in got.iter().zip(&expected).enumerate() {
                    assert!(e == 'f' && (g == 'f' || g == 'n') || g == e, "{at}: output {n} is {g}, the reference's {e}");
                }
            } else {
                assert!(got == expected, "{at}: {} outputs differ", got.iter().zip(&expected).filter(|(g, e)| g != e).count());
            }
        }
    }
}

#[test]
fn fully_masked_rows_give_zero_and_neg_inf() {
    // seq_q > seq_kv: under bottom-right causal alignment the first rows see no key.
    let cfg = Config::line(16, 16, 1, 2);
    check(Visit::Causal, Dtype::Bf16, cfg, shape(1, 1, 1, 40, 7, 64), 3);
}

#[test]
fn pipelining_does_not_change_results() {
    let mut rng = StdRng::seed_from_u64(7);
    let case = Case::random(&mut rng, shape(1, 2, 1, 45, 83, 64));
    let d = desc(Visit::Causal, Dtype::Bf16, 64);
    let cfg = Config::line(32, 16, 2, 3);
    let synchronous = {
        let p = passes::visit::lower(ir::from_desc::build(&d, &cfg)).unwrap();
        let p = passes::pipeline::pipeline(ir::Program { body: unpipelined(p.body), ..p }).unwrap();
        interp::run(&passes::smem::place(p), &case.launch()).unwrap()
    };
    let pipelined = interp::run(&tile_program(&d, &cfg).unwrap(), &case.launch()).unwrap();
    assert_eq!(synchronous.o, pipelined.o);
}

/// Marks every loop single-stage, so the pipelining pass leaves it synchronous.
fn unpipelined(body: Vec<Stmt>) -> Vec<Stmt> {
    body.into_iter()
        .map(|s| match s {
            Stmt::For { var, begin, end, body, .. } => Stmt::For { var, begin, end, stages: 1, body },
            other => other,
        })
        .collect()
}

/// Removes the first statement matching `pred` anywhere in the program.
fn remove_first(body: &mut Vec<Stmt>, pred: &dyn Fn(&Stmt) -> bool) -> bool {
    if let Some(i) = body.iter().position(pred) {
        body.remove(i);
        return true;
    }
    body.iter_mut().any(|s| match s {
        Stmt::For { body, .. } | Stmt::If { body, .. } => remove_first(body, pred),
        _ => false,
    })
}

fn run_mutant(mutate: &dyn Fn(&mut Vec<Stmt>) -> bool) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(11);
    let case = Case::random(&mut rng, shape(1, 1, 1, 20, 50, 64));
    let d = desc(Visit::Dense, Dtype::Bf16, 64);
    let mut p = tile_program(&d, &Config::line(16, 16, 1, 2)).unwrap();
    assert!(mutate(&mut p.body), "mutation found nothing to change");
    interp::run(&p, &case.launch()).map(|_| ())
}

#[test]
fn interpreter_rejects_a_missing_wait() {
    let err = run_mutant(&|b| remove_first(b, &|s| matches!(s, Stmt::Wait { .. }))).unwrap_err();
    assert!(err.contains("before its async copy was waited for"), "{err}");
}

#[test]
fn interpreter_rejects_a_missing_barrier() {
    let err = run_mutant(&|b| remove_first(b, &|s| matches!(s, Stmt::Barrier))).unwrap_err();
    assert!(err.contains("barrier"), "{err}");
}

fn window_1d(size: u32, dilation: u32, stride: u32, causal: bool) -> Visit {
    let unused = WindowAxis { size: 1, dilation: 1, stride: 1, causal: false };
    Visit::Window(Window { dims: 1, axes: [WindowAxis { size, dilation, stride, causal }, unused, unused] })
}

#[test]
fn one_dimensional_windows_match_the_natten_reference() {
    use tessera_codegen::reference::{Axis, NaShape, neighborhood_attention};
    let cases = [
        (45, 7, 1, 1, false),
        (45, 8, 1, 1, true),
        (70, 9, 3, 1, false),
        (61, 6, 2, 3, true),
        (50, 12, 1, 4, false),
        (33, 33, 1, 1, false),
    ];
    for (i, (len, w, d, s, causal)) in cases.into_iter().enumerate() {
        let cfg = Config::line(16, 16, 1, 2);
        let shape = shape(1, 2, 1, len, len, 64);
        let mut rng = StdRng::seed_from_u64(500 + i as u64);
        let case = Case::random(&mut rng, shape);
        let desc = desc(window_1d(w, d, s, causal), Dtype::Bf16, 64);
        let program = tile_program(&desc, &cfg).unwrap();
        let out = interp::run(&program, &case.launch()).unwrap();
        let r = |x: &Vec<f32>| -> Vec<f64> { x.iter().map(|&v| tessera_codegen::semantics::round_to(Dtype::Bf16, v) as f64).collect() };
        let axis = Axis { extent: len, window: w as usize, dilation: d as usize, stride: s as usize, causal };
        let na = NaShape { batch: 1, heads: 2, kv_heads: 1, axes: vec![axis], head_dim: 64 };
        let want = neighborhood_attention(&na, 1.0 / 8.0, &r(&case.q), &r(&case.k), &r(&case.v)).unwrap();
        let err = reference::rel_error(&widen(&out.o), &want.o);
        assert!(err < 1e-2, "L={len} w={w} d={d} s={s} causal={causal}: rel error {err}");
        let lse_err = reference::rel_error(&widen(&out.lse), &want.lse);
        assert!(lse_err < 1e-4, "L={len} w={w} d={d} s={s} causal={causal}: lse rel error {lse_err}");
    }
}

/// (grid extents, window axes, query tile, KV tile) of one neighborhood case.
type GridCase = (Vec<usize>, [WindowAxis; 3], [u32; 3], [u32; 3]);

/// 2-D and 3-D neighborhoods on ragged grids (extents not multiples of the tile boxes), with
/// odd and even windows, dilation, stride and per-axis causality, against the NATTEN reference.
#[test]
fn multi_dimensional_windows_match_the_natten_reference() {
    let ax = |size, dilation, stride, causal| WindowAxis { size, dilation, stride, causal };
    let unused = ax(1, 1, 1, false);
    #[rustfmt::skip]
    let cases: [GridCase; 6] = [
        (vec![9, 13], [ax(3, 1, 1, false), ax(5, 1, 1, false), unused], [4, 4, 1], [4, 4, 1]),
        (vec![11, 10], [ax(4, 2, 1, false), ax(7, 1, 2, true), unused], [2, 8, 1], [4, 4, 1]),
        (vec![7, 17], [ax(7, 1, 3, true), ax(6, 2, 1, false), unused], [4, 8, 1], [2, 8, 1]),
        (vec![5, 6, 7], [ax(3, 1, 1, false), ax(2, 3, 1, false), ax(5, 1, 1, true)], [2, 2, 4], [1, 4, 4]),
        (vec![4, 9, 5], [ax(4, 1, 2, true), ax(3, 2, 3, false), ax(5, 1, 1, false)], [2, 4, 2], [2, 2, 4]),
        (vec![3, 8, 8], [ax(3, 1, 1, false), ax(8, 1, 1, false), ax(8, 1, 1, true)], [1, 4, 4], [1, 4, 4]),
    ];
    for (i, (grid, axes, q_tile, kv_tile)) in cases.into_iter().enumerate() {
        let window = Window { dims: grid.len() as u8, axes };
        let cfg = Config { q_tile, kv_tile, warps: 1, stages: 2, mma: Mma::Sync };
        let (err, lse_err) = grid_errors(window, &grid, cfg, 2, 900 + i as u64);
        assert!(err < 2e-3, "case {i} grid {grid:?} {cfg}: rel error {err}");
        assert!(lse_err < 1e-4, "case {i} grid {grid:?} {cfg}: lse rel error {lse_err}");
    }
}

/// Runs the window kernel of `window` at `cfg` over `grid` on fresh inputs (f16, D = 64, `batch`
/// sequences of 2 heads sharing one KV head) and returns its o and lse relative errors against
/// NATTEN's reference.
fn grid_errors(window: Window, grid: &[usize], cfg: Config, batch: usize, seed: u64) -> (f64, f64) {
    let fixed = |t: [u32; 3]| t.map(Param::Fixed);
    let schedule = Schedule { q_tile: fixed(cfg.q_tile), kv_tile: fixed(cfg.kv_tile), warps: Param::Fixed(cfg.warps), stages: Param::Fixed(cfg.stages) };
    let d = KernelDesc { schedule, ..desc(Visit::Window(window), Dtype::F16, 64) };
    let tokens: usize = grid.iter().product();
    let mut case = Case::random(&mut StdRng::seed_from_u64(seed), shape(batch, 2, 1, tokens, tokens, 64));
    case.grid[..grid.len()].copy_from_slice(grid);
    let program = tile_program(&d, &cfg).unwrap();
    let out = interp::run(&program, &case.launch()).unwrap();
    let r = |x: &Vec<f32>| -> Vec<f64> { x.iter().map(|&v| tessera_codegen::semantics::round_to(Dtype::F16, v) as f64).collect() };
    let want = reference::of_desc(&d, &case.shape, grid, 1.0 / 8.0, &r(&case.q), &r(&case.k), &r(&case.v)).unwrap();
    (reference::rel_error(&widen(&out.o), &want.o), reference::rel_error(&widen(&out.lse), &want.lse))
}

mod grid_properties {
    use super::*;
    use proptest::prelude::*;

    /// One axis: extent, then a window that fits it with its dilation, a stride up to the
    /// window, and a causal flag.
    fn axis(max_extent: usize) -> impl Strategy<Value = (usize, WindowAxis)> {
        (2..=max_extent)
            .prop_flat_map(|extent| (Just(extent), 1..=3usize))
            .prop_flat_map(|(extent, dilation)| {
                let dilation = dilation.min(extent);
                (Just(extent), 1..=extent / dilation, Just(dilation), any::<bool>())
            })
            .prop_flat_map(|(extent, size, dilation, causal)| {
                (1..=size).prop_map(move |stride| {
                    let axis = WindowAxis { size: size as u32, dilation: dilation as u32, stride: stride as u32, causal };
                    (extent, axis)
                })
            })
    }

    /// Box shapes of 16 or 32 tokens over `dims` axes (16-row mma slabs, one warp).
    fn tile(dims: usize) -> impl Strategy<Value = [u32; 3]> {
        let shapes: &[[u32; 3]] = if dims == 2 {
            &[[2, 8, 1], [4, 4, 1], [8, 2, 1], [16, 1, 1], [1, 16, 1], [4, 8, 1], [8, 4, 1]]
        } else {
            &[[1, 4, 4], [2, 2, 4], [4, 2, 2], [2, 4, 2], [1, 2, 8], [2, 4, 4], [4, 4, 2]]
        };
        proptest::sample::select(shapes.to_vec())
    }

    /// Axes, box tiles, warps (1 or 2: 32-token query boxes split over two warps) and stages
    /// (1 to 3: prefetches one or two tiles ahead across axis boundaries), and a seed.
    fn case() -> impl Strategy<Value = (Vec<(usize, WindowAxis)>, Config, u64)> {
        prop_oneof![proptest::collection::vec(axis(11), 2), proptest::collection::vec(axis(6), 3)]
            .prop_flat_map(|axes| {
                let dims = axes.len();
                (Just(axes), tile(dims), tile(dims), 1..=2u32, 1..=3u32, any::<u64>())
            })
            .prop_filter("query boxes split into 16-row slabs per warp", |(_, q, _, warps, _, _)| {
                q.iter().product::<u32>() % (16 * warps) == 0
            })
            .prop_map(|(axes, q_tile, kv_tile, warps, stages, seed)| (axes, Config { q_tile, kv_tile, warps, stages, mma: Mma::Sync }, seed))
    }

    proptest! {
        // The interpreter runs every CTA of the grid in a debug build: keep the cases few.
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Random 2-D/3-D grids, windows, dilations, strides, causal flags and box tiles: the
        /// interpreter matches NATTEN's reference.
        #[test]
        fn random_grids_match_the_natten_reference((axes, cfg, seed) in case()) {
            let grid: Vec<usize> = axes.iter().map(|a| a.0).collect();
            let mut window = Window { dims: axes.len() as u8, axes: [WindowAxis { size: 1, dilation: 1, stride: 1, causal: false }; 3] };
            for (slot, (_, a)) in window.axes.iter_mut().zip(&axes) {
                *slot = *a;
            }
            let (err, lse_err) = grid_errors(window, &grid, cfg, 1, seed);
            prop_assert!(err < 2e-3, "grid {grid:?} {cfg}: rel error {err}");
            prop_assert!(lse_err < 1e-4, "grid {grid:?} {cfg}: lse rel error {lse_err}");
        }
    }
}

/// A kernel whose K and/or V come from Mustafar's bitmap-compressed cache reads, element by
/// element through the format's own indexing, exactly the pruned cache: it matches dense
/// attention over the decompressed K/V. Decode-shaped (4 query rows: the heads of a GQA group,
/// as a decode kernel lays them out) and prefill-shaped, K, V or both compressed (K in key
/// order, V in value order).
#[test]
fn bitmap_loads_read_the_pruned_cache() {
    use tessera_codegen::format::{BitmapCache, PruneRule, TileOrder, from_f32, prune_token};
    use tessera_desc::{BitmapLoad, Load};
    let (kv_heads, seq_kv, d) = (2, 192, 64);
    for (i, (seq_q, k, v)) in [(4, true, true), (4, true, false), (77, false, true), (77, true, true)].into_iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(40 + i as u64);
        let mut case = Case::random(&mut rng, shape(1, kv_heads, kv_heads, seq_q, seq_kv, d));
        // Prune each token of K and V as the cache holds them (f16), then compress.
        let prune = |x: &mut Vec<f32>, s| {
            let rounded: Vec<f32> = x.iter().map(|&v| tessera_codegen::semantics::round_to(Dtype::F16, v)).collect();
            *x = rounded.chunks(d).flat_map(|t| prune_token(t, s, PruneRule::KthSmallest)).collect();
        };
        prune(&mut case.k, 0.5);
        prune(&mut case.v, 0.7);
        let bits = |x: &[f32]| x.iter().map(|&v| from_f32(Dtype::F16, v)).collect::<Vec<_>>();
        let kc = BitmapCache::compress(&bits(&case.k), Dtype::F16, kv_heads, seq_kv, d, TileOrder::Keys).unwrap();
        let vc = BitmapCache::compress(&bits(&case.v), Dtype::F16, kv_heads, seq_kv, d, TileOrder::Values).unwrap();
        let desc = KernelDesc {
            load: Load::Bitmap(BitmapLoad { k, v }),
            schedule: Schedule::line(Param::Fixed(16), Param::Fixed(64), Param::Fixed(1), Param::Fixed(2)),
            ..desc(Visit::Dense, Dtype::F16, d as u32)
        };
        let program = tile_program(&desc, &desc.default_config().unwrap()).unwrap();
        // The dense copies of the compressed tensors are poisoned: only the caches may be read.
        let poison = vec![f32::NAN; case.k.len()];
        let mut launch = case.launch();
        if k {
            (launch.k, launch.k_bitmap) = (&poison, Some(&kc));
        }
        if v {
            (launch.v, launch.v_bitmap) = (&poison, Some(&vc));
        }
        let out = interp::run(&program, &launch).unwrap();
        let want = case.reference(Mask::None, Dtype::F16);
        let err = reference::rel_error(&widen(&out.o), &want.o);
        assert!(err < 2e-3, "seq_q {seq_q} k {k} v {v}: rel error {err}");
        // A launch without the cache it needs, or with one of another shape, is an error, not
        // a read of the dense tensor or past the cache.
        let missing = Launch { k_bitmap: None, v_bitmap: None, ..case.launch() };
        assert!(interp::run(&program, &missing).is_err());
        let short = BitmapCache::compress(&bits(&case.k[..case.k.len() / 3]), Dtype::F16, kv_heads, 64, d, TileOrder::Keys).unwrap();
        let wrong = Launch { k_bitmap: Some(&short), v_bitmap: Some(&vc), ..case.launch() };
        assert!(matches!(interp::run(&program, &wrong), Err(e) if e.contains("bitmap cache")));
    }
}
