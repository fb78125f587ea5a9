//! NATTEN's neighborhood rule on one axis, as index expressions: the mask the kernel applies per
//! element and the KV tile range it visits are built from the same window bounds, and the
//! interpreter evaluates exactly these expressions (checked against `reference::neighborhood`).
//!
//! Coordinates split into dilation groups (`x % d`) and positions within a group (`x / d`); a
//! group holds `ceil((L - g) / d)` tokens. Window bounds are in positions.

use tessera_desc::WindowAxis;

use crate::ir::Expr;
use crate::ir::geometry::TileBox;

pub struct AxisRule {
    pub axis: WindowAxis,
    /// The axis extent (a launch-time size).
    pub extent: Expr,
}

impl AxisRule {
    fn d(&self) -> i32 {
        self.axis.dilation as i32
    }

    /// Tokens in dilation group `g`.
    pub fn group_len(&self, g: Expr) -> Expr {
        self.extent.clone().sub(g).add(self.d() - 1).div(self.d())
    }

    /// The query's stride leader: the group's centre (right-centre for even strides), or its
    /// last query when causal; a group cut short by the axis end uses its last position.
    fn leader(&self, p: &Expr, lg: &Expr) -> Expr {
        let s = self.axis.stride as i32;
        let offset = if self.axis.causal { s - 1 } else { s / 2 };
        p.clone().div(s).mul(s).add(offset).min(lg.clone().sub(1))
    }

    /// First key position of the window of the query at position `p` in a group of `lg`.
    pub fn start(&self, p: &Expr, lg: &Expr) -> Expr {
        let w = self.axis.size as i32;
        let leader = self.leader(p, lg);
        if self.axis.causal {
            return leader.sub(w - 1).max(0);
        }
        // The window shifts inward at both borders: its centre stays in [left, lg - 1 - right].
        let (left, right) = (w / 2, w / 2 + w % 2 - 1);
        leader.min(lg.clone().sub(1 + right)).max(left).sub(left)
    }

    /// One past the last key position of that window.
    pub fn end(&self, p: &Expr, lg: &Expr) -> Expr {
        if self.axis.causal {
            p.clone().add(1).min(lg.clone())
        } else {
            self.start(p, lg).add(self.axis.size as i32)
        }
    }

    /// Query coordinate `q` sees key coordinate `k`.
    pub fn allowed(&self, q: Expr, k: Expr) -> Expr {
        let d = self.d();
        if d == 1 {
            return self.in_window(&q, &self.extent, k);
        }
        let (gq, pq) = (q.clone().rem(d), q.div(d));
        let (gk, pk) = (k.clone().rem(d), k.div(d));
        let lg = self.group_len(gq.clone());
        let same_group = gq.clone().le(gk.clone()).and(gk.le(gq));
        same_group.and(self.in_window(&pq, &lg, pk))
    }

    /// Key position `k` lies in the window of the query at position `p`.
    fn in_window(&self, p: &Expr, lg: &Expr, k: Expr) -> Expr {
        let start = self.start(p, lg);
        if self.axis.causal {
            return start.le(k.clone()).and(k.lt(self.end(p, lg)));
        }
        // As an offset from the window's start, so that a kernel keeps one bound per query row
        // live through the KV loop instead of two (`0 <= off < size` is one unsigned compare).
        let off = k.sub(start);
        Expr::Const(0).le(off.clone()).and(off.lt(self.axis.size as i32))
    }

    /// The KV tiles `[begin, end)` along this axis (indices among `kv`'s tiles) holding the
    /// keys of the windows of the query tile that starts at coordinate `q_first` and whose last
    /// real row is `q_last` (both of one dilation group, `ir::geometry`): the positions
    /// `[start(first), end(last))` of that group, in the group's KV tiles. Window bounds grow
    /// with the position, so the first and last queries bound the tile's.
    pub fn tile_span(&self, a: usize, kv: &TileBox, q_first: &Expr, q_last: &Expr) -> (Expr, Expr) {
        let (t, d) = (kv.shape[a] as i32, self.d());
        if d == 1 {
            let lg = self.extent.clone();
            let (begin, end) = (self.start(q_first, &lg), self.end(q_last, &lg));
            return (begin.div(t), end.ceil_div(t).min(kv.count(a)));
        }
        let group = q_first.clone().rem(d);
        let lg = self.group_len(group.clone());
        let (begin, end) = (self.start(&q_first.clone().div(d), &lg), self.end(&q_last.clone().div(d), &lg));
        let base = group.mul(kv.per_group(a));
        (base.clone().add(begin.div(t)), base.add(end.ceil_div(t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Var;
    use crate::reference::Axis;

    fn eval(e: &Expr, l: i32) -> i32 {
        e.eval(&|v| (v == Var::SeqKv).then_some(l)).unwrap()
    }

    /// Every (query, key) pair of small axes agrees with the f64 reference's rule, and every
    /// allowed key lies inside the key span of any tile containing its query.
    #[test]
    fn matches_reference_rule_and_spans_cover_windows() {
        for l in 1..=14usize {
            for w in 1..=l {
                for d in 1..=(l / w).max(1) {
                    if w * d > l {
                        continue;
                    }
                    for s in 1..=w {
                        for causal in [false, true] {
                            let ax = WindowAxis { size: w as u32, dilation: d as u32, stride: s as u32, causal };
                            let rule = AxisRule { axis: ax, extent: Var::SeqKv.into() };
                            let reference = Axis { extent: l, window: w, dilation: d, stride: s, causal }.rule().unwrap();
                            for q in 0..l {
                                for k in 0..l {
                                    let got = eval(&rule.allowed((q as i32).into(), (k as i32).into()), l as i32) != 0;
                                    assert_eq!(got, reference.allowed(q, k), "L={l} w={w} d={d} s={s} causal={causal} q={q} k={k}");
                                }
                            }
                            // Every key a query sees lies in a KV tile of its query tile's span.
                            for (qt, kt) in [(1, 1), (2, 3), (4, 2)] {
                                let boxes = |t: u32| TileBox { dims: 1, extents: [Var::SeqKv.into(), 1.into(), 1.into()], shape: [t, 1, 1], groups: [d as u32, 1, 1] };
                                let (q_box, kv_box) = (boxes(qt), boxes(kt));
                                for i in 0..eval(&q_box.count(0), l as i32) {
                                    let first = q_box.tile_origin(0, i.into());
                                    let last = q_box.last(std::slice::from_ref(&first), 0);
                                    let (b, e) = rule.tile_span(0, &kv_box, &first, &last);
                                    let (b, e) = (eval(&b, l as i32), eval(&e, l as i32));
                                    for r in 0..qt as i32 {
                                        let q = eval(&q_box.coord(std::slice::from_ref(&first), 0, r.into()), l as i32);
                                        if q >= l as i32 {
                                            continue;
                                        }
                                        for k in reference.keys(q as usize) {
                                            let covered = (b..e).any(|j| {
                                                let o = kv_box.tile_origin(0, j.into());
                                                (0..kt as i32).any(|c| eval(&kv_box.coord(std::slice::from_ref(&o), 0, c.into()), l as i32) == k as i32)
                                            });
                                            assert!(covered, "L={l} w={w} d={d} s={s} causal={causal} tiles {qt}/{kt}: key {k} of query {q} outside tiles [{b}, {e})");
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
