//! Tiles as boxes of the token grid: which token each row of a tile is, and whether it exists.
//!
//! Dense and causal kernels see their tokens as a line (queries and keys with lengths of their
//! own); neighborhood kernels tile the launch's grid of extents `grid_x × grid_y × grid_z`,
//! row-major, so a tile row is a token of a box and a tile of consecutive tokens is the 1-D case.

use tessera_desc::{Config, Visit};

use super::{Expr, Var};

/// One side's tiles (queries or keys): the grid they cut and the box shape.
#[derive(Clone, Debug, PartialEq)]
pub struct TileBox {
    pub dims: usize,
    pub extents: [Expr; 3],
    pub shape: [u32; 3],
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
            },
            _ => TileBox { dims: 1, extents: [line.into(), 1.into(), 1.into()], shape },
        }
    }

    /// The origin of the KV tile a `VisitTiles` body is on, in `Var::KvTile` coordinates.
    pub fn visit_origin(&self) -> Vec<Expr> {
        (0..self.dims).map(|a| Expr::var(Var::KvTile(a as u8)).mul(self.shape[a] as i32)).collect()
    }

    /// Tiles along axis `a`.
    pub fn count(&self, a: usize) -> Expr {
        self.extents[a].clone().ceil_div(self.shape[a] as i32)
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
                index.mul(self.shape[a] as i32)
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
        origin[a].clone().add(local)
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

    /// The last grid coordinate along `a` of a real row of the tile at `origin`.
    pub fn last(&self, origin: &[Expr], a: usize) -> Expr {
        origin[a].clone().add(self.shape[a] as i32).min(self.extents[a].clone()).sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_desc::{Mma, Window, WindowAxis};

    const AXIS: WindowAxis = WindowAxis { size: 3, dilation: 1, stride: 1, causal: false };

    /// Every token of a ragged 3-D grid is the row of exactly one tile, at the right place.
    #[test]
    fn tiles_cover_the_grid_once() {
        let visit = Visit::Window(Window { dims: 3, axes: [AXIS; 3] });
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
                }
            }
        }
        assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
    }
}
