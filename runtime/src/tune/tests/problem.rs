use tessera_desc::{KernelDesc, Visit, Window, WindowAxis};

use super::super::{Grid, Problem};
use crate::catalog;

#[test]
fn shapes_parse_and_are_checked() {
    let p: Problem = "1,32,8,16384,4096".parse().unwrap();
    assert_eq!(
        (p.batch, p.heads, p.kv_heads, p.seq_q, p.seq_kv, p.group()),
        (1, 32, 8, 16384, 4096, 4)
    );
    assert_eq!(p.to_string().parse::<Problem>().unwrap(), p);
    for (bad, why) in [
        ("1,32,32,16384", "is not B,H,HKV,SQ,SKV"),
        ("1,32,5,128,128", "must divide heads"),
        ("1,32,32,0,128", "seq_q must be at least 1"),
        ("1,x,32,128,128", "heads `x` is not a count"),
        ("1,32,32,3000000000,128", "does not fit in i32"),
    ] {
        let err = bad.parse::<Problem>().unwrap_err();
        assert!(err.contains(why), "{bad}: {err}");
    }
}

#[test]
fn the_check_problem_is_small_ragged_and_keeps_group_and_ordering() {
    let p: Problem = "4,32,8,16384,16384".parse().unwrap();
    let s = p.check_problem(super::dense());
    assert_eq!(
        (s.batch, s.heads, s.kv_heads, s.seq_q, s.seq_kv, s.grid),
        (1, 8, 2, 131, 131, None)
    );
    let causal = catalog::find("causal_bf16_d64").unwrap();
    let longer_kv = "1,4,4,512,4096"
        .parse::<Problem>()
        .unwrap()
        .check_problem(causal);
    assert!(longer_kv.seq_kv > longer_kv.seq_q);
    let shorter_kv = "1,4,4,4096,512"
        .parse::<Problem>()
        .unwrap()
        .check_problem(causal);
    assert!(shorter_kv.seq_kv < shorter_kv.seq_q);
    for s in [s, longer_kv, shorter_kv] {
        assert!(s.seq_q % 16 != 0 && s.seq_kv % 16 != 0, "{s:?}");
    }
}

fn window(size: u32, dilation: u32) -> KernelDesc {
    let axis = WindowAxis {
        size,
        dilation,
        stride: 1,
        causal: false,
    };
    let mut desc = *super::dense();
    desc.visit = Visit::Window(Window {
        dims: 1,
        axes: [axis; 3],
    });
    desc
}

#[test]
fn window_kernels_need_one_grid_that_holds_the_window() {
    let desc = window(65, 2);
    assert!(
        "1,4,4,4096,4096"
            .parse::<Problem>()
            .unwrap()
            .check_for(&desc)
            .is_ok()
    );
    let unequal = "1,4,4,4096,2048"
        .parse::<Problem>()
        .unwrap()
        .check_for(&desc);
    assert!(unequal.unwrap_err().contains("seq_q = seq_kv"));
    let short = "1,4,4,100,100".parse::<Problem>().unwrap().check_for(&desc);
    assert!(
        short.clone().unwrap_err().contains("does not fit"),
        "{short:?}"
    );
    // Other kernels take unequal lengths.
    assert!(
        "1,4,4,4096,2048"
            .parse::<Problem>()
            .unwrap()
            .check_for(super::dense())
            .is_ok()
    );

    // The check problem: the window's span and one largest tile (128) more, ragged, where the
    // reference can afford it, else just the span, ragged.
    let p: Problem = "1,4,4,16384,16384".parse().unwrap();
    let small = p.check_problem(&window(17, 3));
    assert_eq!((small.seq_q, small.seq_kv, small.grid), (179, 179, None));
    let wide = p.check_problem(&window(65, 3));
    assert_eq!((wide.seq_q, wide.seq_kv), (323, 323));
    let aligned = p.check_problem(&window(2048, 1));
    assert_eq!((aligned.seq_q, aligned.seq_kv), (2049, 2049));
}

#[test]
fn grids_take_the_place_of_the_lengths_and_round_trip() {
    let p: Problem = "2,16,4,56x56".parse().unwrap();
    assert_eq!(
        (p.batch, p.heads, p.kv_heads, p.seq_q, p.seq_kv, p.group()),
        (2, 16, 4, 3136, 3136, 4)
    );
    assert_eq!(p.grid_arg(), Some(&[56, 56][..]));
    assert_eq!(p.extents(), [56, 56]);
    assert_eq!(p, Problem::on_grid(2, 16, 4, Grid::new(&[56, 56]).unwrap()));
    for text in ["2,16,4,56x56", "1,8,8,16x32x30", "1,32,8,16384,4096"] {
        let p: Problem = text.parse().unwrap();
        assert_eq!(p.to_string(), text);
        assert_eq!(p.to_string().parse::<Problem>().unwrap(), p);
    }
    let line: Problem = "1,8,8,1000,1000".parse().unwrap();
    assert_eq!((line.grid, line.extents()), (None, vec![1000]));
    for (bad, why) in [
        ("1,8,8,56", "is not B,H,HKV,SQ,SKV"),
        ("1,8,8,56x56,56", "seq_q `56x56` is not a count"),
        ("1,8,8,56x", "grid `56x` is not XxY or XxYxZ"),
        ("1,8,8,2x3x4x5", "2 or 3 extents, not 4"),
        ("1,8,8,56x0", "at least 1"),
        (
            "1,8,8,100000x100000",
            "seq_q = 10000000000 does not fit in i32",
        ),
        (
            "1,1,1,4000000000x4000000000x4000000000",
            "more tokens than fit in usize",
        ),
        ("1,8,3,56x56", "must divide heads"),
    ] {
        let err = bad.parse::<Problem>().unwrap_err();
        assert!(err.contains(why), "{bad}: {err}");
    }
}

#[test]
fn a_grid_is_checked_against_the_kernel_as_a_launch_checks_it() {
    let na2d = catalog::find("na2d_w13x13_d2x2_bf16_d128").unwrap();
    let check = |desc: &KernelDesc, shape: &str| shape.parse::<Problem>().unwrap().check_for(desc);
    assert!(check(na2d, "1,4,4,26x40").is_ok());
    for (desc, shape, why) in [
        // The window's span, 13 × dilation 2, must fit on each axis.
        (
            na2d,
            "1,4,4,25x40",
            "axis 0: window 13 × dilation 2 = 26 does not fit",
        ),
        (
            na2d,
            "1,4,4,1040,1040",
            "is a 2-D window: give its grid extents",
        ),
        (na2d, "1,4,4,26x40x2", "needs 2 grid extents, got 3"),
        (
            super::dense(),
            "1,4,4,26x40",
            "has no window, so it takes no grid",
        ),
        (&window(13, 1), "1,4,4,26x40", "needs 1 grid extents, got 2"),
    ] {
        let err = check(desc, shape).unwrap_err();
        assert!(err.contains(why), "{shape}: {err}");
    }
    // A problem built by hand whose lengths are not its grid's tokens.
    let mut p: Problem = "1,4,4,26x40".parse().unwrap();
    p.seq_q += 1;
    p.seq_kv += 1;
    assert!(p.check_for(na2d).unwrap_err().contains("holds 1040 tokens"));
}

/// The catalog's windows over 2 and 3 axes.
fn grid_kernels() -> impl Iterator<Item = &'static KernelDesc> {
    catalog::all()
        .iter()
        .filter(|d| matches!(d.visit, Visit::Window(w) if w.dims > 1))
}

#[test]
fn the_check_grid_holds_the_window_and_is_ragged_for_every_tile() {
    let p: Problem = "1,32,8,128x128".parse().unwrap();
    let grid = |name: &str| {
        let small = p.check_problem(catalog::find(name).unwrap());
        assert_eq!((small.batch, small.heads, small.kv_heads), (1, 8, 2));
        small.grid.map(|g| g.to_string())
    };
    // A small window gets one largest tile (16) of room beyond its span (26); large ones only
    // their span, plus what makes each extent ragged for every tile of the axis.
    assert_eq!(grid("na2d_w13x13_d2x2_bf16_d128").as_deref(), Some("43x43"));
    assert_eq!(grid("na2d_w80x80_f16_d128").as_deref(), Some("81x81"));
    assert_eq!(grid("na3d_w18x24x24_f16_d128").as_deref(), Some("19x25x25"));
    assert_eq!(
        grid("na3d_w7x15x15_c100_bf16_d128").as_deref(),
        Some("7x15x15")
    );

    for desc in grid_kernels() {
        let small = p.check_problem(desc);
        assert!(small.check_for(desc).is_ok(), "{}: {small}", desc.name);
        for config in desc.configs() {
            for (a, &e) in small.extents().iter().enumerate() {
                for tile in [config.q_tile[a], config.kv_tile[a]] {
                    let ragged = tile == 1 || e % tile as usize != 0;
                    assert!(ragged, "{}: {small}, {config}", desc.name);
                }
            }
        }
    }
}

/// Pairs of a query and a key the float64 reference computes for `desc`'s check problem.
fn reference_pairs(desc: &KernelDesc, p: &Problem) -> usize {
    let small = p.check_problem(desc);
    let keys = match desc.visit {
        Visit::Window(w) => w.axes().iter().map(|a| a.size as usize).product(),
        _ => small.seq_kv,
    };
    small.seq_q * keys
}

#[test]
fn every_kind_of_kernel_has_a_reference_for_the_check() {
    let p: Problem = "1,2,2,16384,16384".parse().unwrap();
    // A window of thousands of keys costs minutes of an unoptimised reference: a small 3-D
    // window stands in for the catalog's large ones.
    let mut small_3d = *grid_kernels().find(|d| d.name.starts_with("na3d")).unwrap();
    let Visit::Window(mut w) = small_3d.visit else {
        unreachable!("a grid kernel is a window")
    };
    for (axis, size) in w.axes.iter_mut().zip([3, 5, 4]) {
        axis.size = size;
    }
    small_3d.visit = Visit::Window(w);
    // Block-sparse kernels need a block map, which the tuner does not make: it refuses them.
    let (sparse, tunable): (Vec<&KernelDesc>, Vec<&KernelDesc>) =
        catalog::all().iter().chain([&small_3d]).partition(|d| matches!(d.visit, Visit::Blocks(_)));
    assert!(!sparse.is_empty());
    for desc in sparse {
        assert!(p.check_for(desc).unwrap_err().contains("block map"), "{}", desc.name);
    }
    let kernels: Vec<&KernelDesc> =
        tunable.into_iter().filter(|d| reference_pairs(d, &p) <= 350_000).collect();
    let kinds: std::collections::HashSet<(&str, u8)> = kernels
        .iter()
        .map(|d| match d.visit {
            Visit::Window(w) => ("window", w.dims),
            v => (v.name(), 1),
        })
        .collect();
    assert_eq!(kinds.len(), 5, "{kinds:?}");
    for desc in kernels {
        let case = super::super::verify::Case::new(desc, &p);
        assert!(case.is_ok(), "{}: {:?}", desc.name, case.err());
    }
}

fn mustafar() -> &'static KernelDesc {
    catalog::find("mustafar_bf16_d128").unwrap()
}

/// A decode step is `B,H,HKV,1,CONTEXT`; the GQA group must fit some config's query rows (64
/// on one warp; 16 per warp where 4 warps split the keys), and the check problem keeps the
/// group over a context with compressed tiles and a ragged dense window.
#[test]
fn a_decode_problem_is_one_query_token_over_a_context() {
    let p: Problem = "2,32,8,1,32768".parse().unwrap();
    assert_eq!(p, Problem::decode(2, 32, 8, 32768));
    assert_eq!(p.check_for(mustafar()), Ok(()));
    assert_eq!(Problem::decode(1, 64, 1, 100).check_for(mustafar()), Ok(()));
    assert_eq!(Problem::decode(1, 128, 1, 100).check_for(mustafar()), Ok(()));
    for (bad, why) in [
        ("1,32,8,4096,4096", "is a decode kernel"),
        ("1,32,8,2,4096", "B,H,HKV,1,CONTEXT (got 1,32,8,2,4096)"),
        ("1,32,8,64x64", "is a decode kernel"),
        ("1,256,1,1,4096", "256 query heads per KV head do not fit any config of mustafar_bf16_d128 (at most 128 query rows per warp)"),
    ] {
        let err = bad.parse::<Problem>().unwrap().check_for(mustafar()).unwrap_err();
        assert!(err.contains(why), "{bad}: {err}");
    }
    // Dense kernels are not held to it.
    let dense = catalog::find("dense_bf16_d128").unwrap();
    assert_eq!(p.check_for(dense), Ok(()));

    let small = p.check_problem(mustafar());
    assert_eq!(small, Problem::decode(1, 8, 2, super::super::problem::DECODE_CHECK_CONTEXT));
    // The tuner's policy splits it into two compressed chunks and a window of 100 tokens.
    let n = small.kv_dims(128).iter().product();
    let values: Vec<f32> = (0..n).map(|i| (i % 7) as f32 - 3.0).collect();
    let cache = super::super::decode::cache(mustafar(), &small, &values, &values).unwrap();
    assert_eq!((cache.k.tokens, cache.local_len), (512, 100));
    assert!(super::super::verify::Case::new(mustafar(), &p).is_ok());
}

/// Without a stored winner a decode runs at the default config (4 warps, 16 query rows each),
/// unless the GQA group does not fit it: then at a config that holds it and fits the device's
/// shared memory, preferring one the tuner would time, then the fewest rows (for 32 heads, 4
/// warps over 128 rows, which spill nothing, not 1 warp over 64: 2 stages (122 KiB) on an
/// H100's 227 KiB and an A100's 163 KiB alike, 1 stage where 96 KiB is all), and the tuner
/// prunes the configs whose rows do not.
#[test]
fn a_group_larger_than_the_default_rows_falls_back_to_a_config_that_holds_it() {
    use super::super::policy::fallback;
    use tessera_codegen::ir::decode::query_rows;
    let desc = mustafar();
    let (h100, a100) = (227 * 1024, 163 * 1024);
    let default = desc.default_config().unwrap();
    assert_eq!(fallback(desc, &Problem::decode(1, 32, 8, 4096), h100), Ok(default));
    let mqa = Problem::decode(1, 32, 1, 4096);
    assert!(query_rows(&default) < 32, "{default}");
    let chosen = fallback(desc, &mqa, h100).unwrap();
    assert_eq!((query_rows(&chosen), chosen.block_q(), chosen.warps, chosen.stages), (32, 128, 4, 2), "{chosen}");
    let on_a100 = fallback(desc, &mqa, a100).unwrap();
    assert_eq!((query_rows(&on_a100), on_a100.block_q(), on_a100.warps, on_a100.stages), (32, 128, 4, 2), "{on_a100}");
    let small = fallback(desc, &mqa, 96 * 1024).unwrap();
    assert_eq!((query_rows(&small), small.block_q(), small.warps, small.stages), (32, 128, 4, 1), "{small}");
    // Only configs the tuner prunes (one warp over 64 or 128 rows spills) hold 48 heads: the
    // fewest rows of those.
    let wide = fallback(desc, &Problem::decode(1, 48, 1, 4096), h100).unwrap();
    assert_eq!((query_rows(&wide), wide.warps), (64, 1), "{wide}");
    // Where nothing that holds the group fits, the error says what it would need.
    let why = fallback(desc, &mqa, 32 * 1024).unwrap_err();
    assert!(why.contains("GQA group of 32 query heads need") && why.contains("this GPU gives a CTA 32768"), "{why}");
    let why = fallback(desc, &Problem::decode(1, 256, 1, 4096), h100).unwrap_err();
    assert!(why.contains("none of its configs holds a GQA group of 256"), "{why}");
    // Other kernels have no group to hold.
    let dense = catalog::find("dense_bf16_d128").unwrap();
    let why = fallback(dense, &"1,32,32,4096,4096".parse().unwrap(), 1024).unwrap_err();
    assert!(why.starts_with("its configs need") && why.ends_with("this GPU gives a CTA 1024"), "{why}");
    let configs = desc.configs();
    let pruned = super::super::space::problem_pruned(desc, &configs, &mqa, 227 * 1024);
    for (c, why) in configs.iter().zip(&pruned) {
        assert_eq!(why.is_some(), query_rows(c) < 32, "{c}: {why:?}");
    }
}
