//! Tiles as boxes of the token grid: which token each row of a tile is, and whether it exists.
//!
//! Dense and causal kernels see their tokens as a line (queries and keys with lengths of their
//! own); neighborhood kernels tile the launch's grid of extents `grid_x × grid_y × grid_z`,
//! row-major, so a tile row is a token of a box and a tile of consecutive tokens is the 1-D case.
//!
//! Along a dilated axis (dilation d) a tile holds consecutive *positions* of one dilation group,
//! the coordinates `g + d·p`: a query only sees keys of its own group, so a tile of contiguous
//! coordinates would compute d − 1 hidden keys for every visible one. Each group is cut into
//! tiles as if it were an axis of `ceil(extent / d)` tokens (a shorter group's last tiles hold
//! rows past the grid, which do not exist); tile `i` along the axis is tile `i % per_group` of
//! group `i / per_group`. This is NATTEN's token permutation for dilation, done by addressing.

use tessera_desc::{Config, Visit};

use super::{Expr, Var};

/// One side's tiles (queries or keys): the grid they cut and the box shape.
#[derive(Clone, Debug, PartialEq)]
pub struct TileBox {
    pub dims: usize,
    pub extents: [Expr; 3],
    pub shape: [u32; 3],
    /// Dilation per axis (1 on lines and undilated axes): tiles hold one dilation group each.
    pub groups: [u32; 3],
}

impl TileBox {
    pub fn queries(visit: Visit, cfg: &Config) -> TileBox {
        TileBox::of(visit, cfg.q_tile, Var::SeqQ)
    }

    pub fn keys(visit: Visit, cfg: &Config) -> TileBox {
        TileBox::of(visit, cfg.kv_tile, Var::SeqKv)
    }

    fn of(visit: Visit, shape: [u32; 3], line: Var) -> TileBox {
        match visit {
            Visit::Window(w) => TileBox {
                dims: w.dims as usize,
                extents: [Var::Grid(0).into(), Var::Grid(1).into(), Var::Grid(2).into()],
                shape,
                groups: w.axes.map(|a| a.dilation.max(1)),
            },
            _ => TileBox { dims: 1, extents: [line.into(), 1.into(), 1.into()], shape, groups: [1; 3] },
        }
    }

    /// The origin of the KV tile a `VisitTiles` body is on, in `Var::KvTile` coordinates.
    pub fn visit_origin(&self) -> Vec<Expr> {
        (0..self.dims).map(|a| self.tile_origin(a, Var::KvTile(a as u8).into())).collect()
    }

    /// Tiles along axis `a` per dilation group.
    pub fn per_group(&self, a: usize) -> Expr {
        self.extents[a].clone().ceil_div(self.groups[a] as i32).ceil_div(self.shape[a] as i32)
    }

    /// Tiles along axis `a`.
    pub fn count(&self, a: usize) -> Expr {
        match self.groups[a] {
            1 => self.extents[a].clone().ceil_div(self.shape[a] as i32),
            d => self.per_group(a).mul(d as i32),
        }
    }

    /// The first grid coordinate along axis `a` of the tile with index `i` along it.
    pub fn tile_origin(&self, a: usize, i: Expr) -> Expr {
        let (t, d) = (self.shape[a] as i32, self.groups[a] as i32);
        if d == 1 {
            return i.mul(t);
        }
        let per_group = self.per_group(a);
        i.clone().div(per_group.clone()).add(i.rem(per_group).mul(t * d))
    }

    /// Tiles in the whole grid.
    pub fn total(&self) -> Expr {
        (1..self.dims).fold(self.count(0), |n, a| n.mul(self.count(a)))
    }

    /// Origins (first grid coordinate per axis) of the tile with row-major index `t`.
    pub fn origin_of(&self, t: Expr) -> Vec<Expr> {
        (0..self.dims)
            .map(|a| {
                let inner = (a + 1..self.dims).fold(None, |acc: Option<Expr>, b| {
                    Some(acc.map_or(self.count(b), |n| n.mul(self.count(b))))
                });
                let mut index = inner.map_or(t.clone(), |n| t.clone().div(n));
                if a > 0 {
                    index = index.rem(self.count(a));
                }
                self.tile_origin(a, index)
            })
            .collect()
    }

    /// The grid coordinate along axis `a` of row `row` of the tile at `origin`.
    pub fn coord(&self, origin: &[Expr], a: usize, row: Expr) -> Expr {
        let inner: u32 = self.shape[a + 1..self.dims].iter().product();
        let mut local = if inner > 1 { row.div(inner as i32) } else { row };
        // Row indices stay below the tile's size, so axis 0 needs no wrap.
        if a > 0 {
            local = local.rem(self.shape[a] as i32);
        }
        origin[a].clone().add(local.mul(self.groups[a] as i32))
    }

    /// The token (row-major grid index) of row `row` of the tile at `origin`.
    pub fn token(&self, origin: &[Expr], row: Expr) -> Expr {
        (1..self.dims).fold(self.coord(origin, 0, row.clone()), |acc, a| {
            acc.mul(self.extents[a].clone()).add(self.coord(origin, a, row.clone()))
        })
    }

    /// Row `row` of the tile at `origin` lies inside the grid.
    pub fn valid(&self, origin: &[Expr], row: Expr) -> Expr {
        (1..self.dims).fold(self.coord(origin, 0, row.clone()).lt(self.extents[0].clone()), |acc, a| {
            acc.and(self.coord(origin, a, row.clone()).lt(self.extents[a].clone()))
        })
    }

    /// The last grid coordinate along `a` of a real row of the tile at `origin` (the tile's
    /// group holds `ceil((extent − origin) / d)` coordinates from its origin on).
    pub fn last(&self, origin: &[Expr], a: usize) -> Expr {
        let (t, d) = (self.shape[a] as i32, self.groups[a] as i32);
        if d == 1 {
            return origin[a].clone().add(t).min(self.extents[a].clone()).sub(1);
        }
        let rows = self.extents[a].clone().sub(origin[a].clone()).add(d - 1).div(d).min(t);
        origin[a].clone().add(rows.sub(1).mul(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_desc::{Mma, Window, WindowAxis};

    const AXIS: WindowAxis = WindowAxis { size: 3, dilation: 1, stride: 1, causal: false };

    /// Every token of a ragged 3-D grid is the row of exactly one tile, at the right place,
    /// with and without dilation groups; a dilated tile's rows are all of one group, and its
    /// last row is the `last` coordinate.
    #[test]
    fn tiles_cover_the_grid_once() {
        for dilation in [[1, 1, 1], [2, 3, 1], [1, 2, 3]] {
            let axes = dilation.map(|d| WindowAxis { dilation: d, ..AXIS });
            cover_once(Visit::Window(Window { dims: 3, axes }), dilation);
        }
    }

    fn cover_once(visit: Visit, dilation: [u32; 3]) {
        let cfg = Config { q_tile: [2, 4, 2], kv_tile: [1, 1, 16], warps: 1, stages: 1, mma: Mma::Sync };
        let grid = [5, 7, 3];
        let tiles = TileBox::queries(visit, &cfg);
        let env = |v: Var| match v {
            Var::Grid(a) => Some(grid[a as usize]),
            _ => None,
        };
        let eval = |e: &Expr| e.eval(&env).unwrap();
        let mut seen = vec![0; 5 * 7 * 3];
        for t in 0..eval(&tiles.total()) {
            let origin = tiles.origin_of(t.into());
            for r in 0..16 {
                let row = Expr::Const(r);
                if eval(&tiles.valid(&origin, row.clone())) == 1 {
                    let c: Vec<i32> = (0..3).map(|a| eval(&tiles.coord(&origin, a, row.clone()))).collect();
                    let token = eval(&tiles.token(&origin, row));
                    assert_eq!(token, (c[0] * 7 + c[1]) * 3 + c[2]);
                    seen[token as usize] += 1;
                    for a in 0..3 {
                        let d = dilation[a] as i32;
                        assert_eq!(c[a] % d, eval(&origin[a]) % d, "{dilation:?}: a row outside its tile's group");
                        assert!(c[a] <= eval(&tiles.last(&origin, a)), "{dilation:?}: a row past the tile's last");
                    }
                }
            }
        }
        assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
    }
}
