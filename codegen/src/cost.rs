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

    /// The counts by brute force on small grids: the computed pairs from the kernel's own tile
    /// program after every pass (per CTA, the trip count of its KV loop as its `let`s evaluate
    /// at the launch's sizes, times a query tile's rows and a KV tile's keys), the held pairs
    /// from every (query, key) pair of the grid against the reference rule.
    #[test]
    fn matches_a_count_of_the_visited_pairs() {
        use crate::ir::{Stmt, Var};
        for (extents, axes, q, kv) in [
            (vec![37], vec![WindowAxis { size: 9, dilation: 2, stride: 1, causal: false }], [16, 1, 1], [16, 1, 1]),
            (vec![20, 13], vec![axis(5), WindowAxis { size: 4, dilation: 1, stride: 2, causal: true }], [4, 4, 1], [8, 2, 1]),
            (vec![6, 7, 9], vec![axis(3), axis(4), WindowAxis { size: 3, dilation: 2, stride: 1, causal: false }], [2, 2, 4], [1, 4, 4]),
        ] {
            let c = Config { warps: 1, ..cfg(q, kv) };
            let schedule = Schedule { q_tile: q.map(Param::Fixed), kv_tile: kv.map(Param::Fixed), warps: Param::Fixed(1), stages: Param::Fixed(c.stages) };
            let desc = KernelDesc { schedule, ..kernel(&axes) };
            let program = crate::tile_program(&desc, &c).unwrap();
            let tokens: usize = extents.iter().product();
            let sizes = |v: Var| match v {
                Var::Grid(a) => Some(extents.get(a as usize).copied().unwrap_or(1) as i32),
                Var::SeqQ | Var::SeqKv => Some(tokens as i32),
                Var::Heads | Var::KvHeads | Var::Batch => Some(1),
                _ => None,
            };
            let mut computed = 0usize;
            for cta in 0..program.grid[0].eval(&sizes).unwrap() {
                let mut vars: std::collections::HashMap<Var, i32> = [(Var::Cta(0), cta), (Var::Cta(1), 0), (Var::Cta(2), 0)].into();
                let lookup = |vars: &std::collections::HashMap<Var, i32>, v: Var| vars.get(&v).copied().or_else(|| sizes(v));
                for stmt in &program.body {
                    match stmt {
                        Stmt::Let { var, value } => {
                            let x = value.eval(&|v| lookup(&vars, v)).unwrap();
                            vars.insert(*var, x);
                        }
                        Stmt::For { begin, end, .. } => {
                            let trips = end.eval(&|v| lookup(&vars, v)).unwrap() - begin.eval(&|v| lookup(&vars, v)).unwrap();
                            computed += trips.max(0) as usize * (c.block_q() * c.block_kv()) as usize;
                            break;
                        }
                        _ => {}
                    }
                }
            }
            let rules: Vec<_> = axes.iter().zip(&extents).map(|(a, &l)| Axis { extent: l, window: a.size as usize, dilation: a.dilation as usize, stride: a.stride as usize, causal: a.causal }.rule().unwrap()).collect();
            let cells: Vec<Vec<usize>> = extents.iter().fold(vec![vec![]], |acc, &l| acc.into_iter().flat_map(|c| (0..l).map(move |x| [c.clone(), vec![x]].concat())).collect());
            let held = cells.iter().flat_map(|qc| cells.iter().map(move |kc| (qc, kc))).filter(|(qc, kc)| rules.iter().enumerate().all(|(a, r)| r.allowed(qc[a], kc[a]))).count();
            let got = window_efficiency(&desc, &c, &extents).unwrap().unwrap();
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
