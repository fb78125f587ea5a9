//! How much of a neighborhood kernel's tile work is useful, before anything runs: a query box
//! visits the box of whole KV tiles its queries' windows touch (`passes::visit`), so along each
//! axis it computes window + box − 1 keys rounded out to KV tiles, and its rows past the grid.
//! The fraction of the computed (query, key) pairs that the neighborhoods hold bounds the
//! kernel's effective rate against its dense rate, and differs by tile shape by up to 2× on
//! NATTEN's 3-D cases, which is what the tuner ranks candidates by.
//!
//! Both counts factor over the axes (boxes are products of per-axis tiles; a neighborhood is a
//! conjunction of per-axis rules), so each is a product of per-axis sums. The computed keys come
//! from the same tiles (`ir::geometry`, dilation groups included) and `passes::window` spans the
//! kernel's loop bounds are built from, the held keys from `reference::rule`.

use tessera_desc::{Config, KernelDesc, Visit};

use crate::ir::Expr;
use crate::ir::geometry::TileBox;
use crate::passes::window::AxisRule;
use crate::reference::Axis;

/// The fraction of the (query, key) pairs `desc`'s tile products compute at `cfg` over the grid
/// `extents` that its neighborhoods hold; `None` for a kernel without a window.
pub fn window_efficiency(desc: &KernelDesc, cfg: &Config, extents: &[usize]) -> Result<Option<f64>, String> {
    let Visit::Window(w) = desc.visit else {
        return Ok(None);
    };
    if extents.len() != w.axes().len() {
        return Err(format!("{} has a {}-D window; got {} extents", desc.name, w.dims, extents.len()));
    }
    let (mut held, mut computed) = (1.0f64, 1.0f64);
    for (a, (&ax, &extent)) in w.axes().iter().zip(extents).enumerate() {
        let reference = Axis { extent, window: ax.size as usize, dilation: ax.dilation as usize, stride: ax.stride as usize, causal: ax.causal }.rule()?;
        held *= (0..extent).map(|x| reference.key_range(x).len() as f64).sum::<f64>();
        let extent_i = i32::try_from(extent).map_err(|_| format!("extent {extent} does not fit in i32"))?;
        let rule = AxisRule { axis: ax, extent: extent_i.into() };
        // This axis's tiles as a line of their own (the spans along one axis depend on it alone).
        let line = |t: u32| TileBox { dims: 1, extents: [extent_i.into(), 1.into(), 1.into()], shape: [t, 1, 1], groups: [ax.dilation.max(1), 1, 1] };
        let (q, kv) = (line(cfg.q_tile[a]), line(cfg.kv_tile[a]));
        let eval = |e: &Expr| e.eval(&|_| None);
        let mut keys = 0.0;
        for i in 0..eval(&q.count(0))? {
            let first = q.tile_origin(0, i.into());
            let last = q.last(std::slice::from_ref(&first), 0);
            let (begin, end) = rule.tile_span(0, &kv, &first, &last);
            let tiles = (eval(&end)? - eval(&begin)?).max(0);
            keys += (cfg.q_tile[a] as i64 * tiles as i64 * cfg.kv_tile[a] as i64) as f64;
        }
        computed *= keys;
    }
    Ok(Some(if computed > 0.0 { held / computed } else { 1.0 }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_desc::{Dtype, Layout, Load, Param, Schedule, Window, WindowAxis};

    fn kernel(axes: &[WindowAxis]) -> KernelDesc {
        let unused = WindowAxis { size: 1, dilation: 1, stride: 1, causal: false };
        let mut all = [unused; 3];
        all[..axes.len()].copy_from_slice(axes);
        KernelDesc {
            name: "na",
            head_dim: 64,
            dtype: Dtype::Bf16,
            layout: Layout::Bhsd,
            visit: Visit::Window(Window { dims: axes.len() as u8, axes: all }),
            load: Load::Dense,
            schedule: Schedule::line(Param::Fixed(64), Param::Fixed(64), Param::Fixed(4), Param::Fixed(2)),
        }
    }

    fn axis(size: u32) -> WindowAxis {
        WindowAxis { size, dilation: 1, stride: 1, causal: false }
    }

    fn cfg(q: [u32; 3], kv: [u32; 3]) -> Config {
        Config { q_tile: q, kv_tile: kv, ..Config::line(64, 64, 4, 2) }
    }

    /// The counts by brute force on small grids: every (query, key) pair of every query box
    /// and the box of KV tiles the kernel's spans give it, against the pairs the reference
    /// allows among all (query, key) pairs of the grid.
    #[test]
    fn matches_a_count_of_the_visited_pairs() {
        for (extents, axes, q, kv) in [
            (vec![37], vec![WindowAxis { size: 9, dilation: 2, stride: 1, causal: false }], [8, 1, 1], [16, 1, 1]),
            (vec![20, 13], vec![axis(5), WindowAxis { size: 4, dilation: 1, stride: 2, causal: true }], [4, 4, 1], [8, 2, 1]),
            (vec![6, 7, 9], vec![axis(3), axis(4), WindowAxis { size: 3, dilation: 2, stride: 1, causal: false }], [2, 2, 4], [1, 4, 2]),
        ] {
            let desc = kernel(&axes);
            let dims = extents.len();
            let rules: Vec<_> = axes.iter().zip(&extents).map(|(a, &l)| Axis { extent: l, window: a.size as usize, dilation: a.dilation as usize, stride: a.stride as usize, causal: a.causal }.rule().unwrap()).collect();
            // Per axis and query tile: (its rows, the KV tile rows it visits).
            // The kernel's own tile program: its loop over the KV box of every query tile, run
            // with the launch's sizes, counts the pairs its products compute.
            let visit = desc.visit;
            let c = cfg(q, kv);
            let (q_box, kv_box) = (TileBox::queries(visit, &c), TileBox::keys(visit, &c));
            let grid = |v: crate::ir::Var| match v {
                crate::ir::Var::Grid(a) => Some(extents.get(a as usize).copied().unwrap_or(1) as i32),
                _ => None,
            };
            let eval = |e: &Expr| e.eval(&grid).unwrap();
            let mut computed = 0usize;
            for t in 0..eval(&q_box.total()) {
                let origin = q_box.origin_of(t.into());
                let mut pairs = c.block_q() as usize;
                for a in 0..dims {
                    let rule = AxisRule { axis: axes[a], extent: q_box.extents[a].clone() };
                    let (b, e) = rule.tile_span(a, &kv_box, &origin[a], &q_box.last(&origin, a));
                    pairs *= (eval(&e) - eval(&b)).max(0) as usize * kv[a] as usize;
                }
                computed += pairs;
            }
            let cells: Vec<Vec<usize>> = extents.iter().fold(vec![vec![]], |acc, &l| acc.into_iter().flat_map(|c| (0..l).map(move |x| [c.clone(), vec![x]].concat())).collect());
            let held = cells.iter().flat_map(|qc| cells.iter().map(move |kc| (qc, kc))).filter(|(qc, kc)| rules.iter().enumerate().all(|(a, r)| r.allowed(qc[a], kc[a]))).count();
            let got = window_efficiency(&desc, &cfg(q, kv), &extents).unwrap().unwrap();
            assert!((got - held as f64 / computed as f64).abs() < 1e-12, "{extents:?}: {got} vs {held}/{computed}");
        }
    }

    /// NATTEN's 3-D case: 2×8×4 query boxes over 2×4×4 KV tiles waste less than 1×8×8 over
    /// 2×4×8, and a window as large as the grid with one tile is fully used.
    #[test]
    fn ranks_tile_shapes() {
        let desc = kernel(&[axis(18), axis(24), axis(24)]);
        let grid = [30, 48, 80];
        let e = |q, kv| window_efficiency(&desc, &cfg(q, kv), &grid).unwrap().unwrap();
        assert!(e([2, 8, 4], [2, 4, 4]) > e([1, 8, 8], [2, 4, 8]) + 0.1);
        let full = kernel(&[axis(8), axis(8)]);
        assert_eq!(window_efficiency(&full, &cfg([8, 8, 1], [8, 8, 1]), &[8, 8]).unwrap(), Some(1.0));
        let dense = KernelDesc { visit: Visit::Dense, ..desc };
        assert_eq!(window_efficiency(&dense, &cfg([64, 1, 1], [64, 1, 1]), &[100]).unwrap(), None);
        assert!(window_efficiency(&desc, &cfg([2, 8, 4], [2, 4, 4]), &[30, 48]).is_err());
    }
}
