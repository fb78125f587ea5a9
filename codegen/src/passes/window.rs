//! NATTEN's neighborhood rule on one axis, as index expressions: the mask the kernel applies per
//! element and the KV tile range it visits are built from the same window bounds, and the
//! interpreter evaluates exactly these expressions (checked against `reference::neighborhood`).
//!
//! Coordinates split into dilation groups (`x % d`) and positions within a group (`x / d`); a
//! group holds `ceil((L - g) / d)` tokens. Window bounds are in positions.

use tessera_desc::WindowAxis;

use crate::ir::Expr;

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
            let lg = self.extent.clone();
            return self.start(&q, &lg).le(k.clone()).and(k.lt(self.end(&q, &lg)));
        }
        let (gq, pq) = (q.clone().rem(d), q.div(d));
        let (gk, pk) = (k.clone().rem(d), k.div(d));
        let lg = self.group_len(gq.clone());
        let same_group = gq.clone().le(gk.clone()).and(gk.le(gq));
        same_group.and(self.start(&pq, &lg).le(pk.clone())).and(pk.lt(self.end(&pq, &lg)))
    }

    /// Key coordinates `[begin, end)` covering the windows of queries `q_first..=q_last`. Bounds
    /// grow with the position and with the group length, so the first query's position in the
    /// shortest group and the last query's in the longest bound every group.
    pub fn key_span(&self, q_first: &Expr, q_last: &Expr) -> (Expr, Expr) {
        let d = self.d();
        if d == 1 {
            let lg = self.extent.clone();
            return (self.start(q_first, &lg), self.end(q_last, &lg));
        }
        let shortest = self.extent.clone().div(d);
        let longest = self.extent.clone().add(d - 1).div(d);
        let begin = self.start(&q_first.clone().div(d), &shortest).mul(d);
        let end = self.end(&q_last.clone().div(d), &longest).mul(d).min(self.extent.clone());
        (begin, end)
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
                            for q0 in 0..l {
                                for q1 in q0..l.min(q0 + 5) {
                                    let (b, e) = rule.key_span(&(q0 as i32).into(), &(q1 as i32).into());
                                    let (b, e) = (eval(&b, l as i32) as usize, eval(&e, l as i32) as usize);
                                    for q in q0..=q1 {
                                        for k in reference.keys(q) {
                                            assert!(b <= k && k < e, "L={l} w={w} d={d} s={s} causal={causal}: key {k} of query {q} outside [{b}, {e})");
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
