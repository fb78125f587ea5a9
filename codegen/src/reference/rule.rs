//! NATTEN's neighborhood rule on one axis (`../shared/papers/seeds.md` §3.1, transcribed from
//! NATTEN's `get_na_flex_mask.single_dim_tiling_mask`). A multi-dimensional neighborhood is the
//! conjunction of one such rule per axis ([`super::Neighborhood`]).
//!
//! Vocabulary used throughout:
//! - **coordinate** `x`: a token's index along the axis, `0 ≤ x < extent`;
//! - **dilation group** `g = x % dilation` and **position** `p = x / dilation` within it: a query
//!   only ever sees keys of its own group, and every window, stride group and border is counted
//!   in positions, as if the group were an undilated axis of its own;
//! - **stride group**: the positions `p` with the same `p / stride`; they share one *leader*
//!   whose window (non-causal) or window start (causal) they all use.

use std::ops::Range;

/// The neighborhood parameters of one axis, as a caller writes them. Nothing is validated until
/// [`Axis::rule`] (or [`Axis::check`]), so the fields can be set freely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Axis {
    /// Tokens along the axis (`L`).
    pub extent: usize,
    /// Keys per query along the axis (`w`); odd or even. Causal queries near the start of the
    /// axis or inside a stride group see fewer.
    pub window: usize,
    /// Spacing `δ` between the keys of a window; splits the axis into `δ` interleaved groups.
    pub dilation: usize,
    /// Queries per stride group (`s`); `1` is standard NA, `window` is blocked attention.
    pub stride: usize,
    /// Whether a query sees only keys at or before itself along this axis.
    pub causal: bool,
}

impl Axis {
    /// Standard neighborhood attention on this axis: stride 1, dilation 1, non-causal.
    pub fn new(extent: usize, window: usize) -> Axis {
        Axis {
            extent,
            window,
            dilation: 1,
            stride: 1,
            causal: false,
        }
    }

    pub fn with_dilation(self, dilation: usize) -> Axis {
        Axis { dilation, ..self }
    }

    pub fn with_stride(self, stride: usize) -> Axis {
        Axis { stride, ..self }
    }

    pub fn with_causal(self, causal: bool) -> Axis {
        Axis { causal, ..self }
    }

    /// NATTEN's constraints: `1 ≤ window ≤ extent`, `1 ≤ stride ≤ window`, `dilation ≥ 1` and
    /// `window · dilation ≤ extent`. The last one guarantees every dilation group is at least
    /// one window long, which the border shift needs.
    pub fn check(&self) -> Result<(), String> {
        let Axis {
            extent,
            window,
            dilation,
            stride,
            ..
        } = *self;
        if extent == 0 {
            return Err("extent must be at least 1".into());
        }
        if window == 0 {
            return Err("window must be at least 1".into());
        }
        if window > extent {
            return Err(format!(
                "window ({window}) must not exceed the extent ({extent})"
            ));
        }
        if stride == 0 {
            return Err("stride must be at least 1".into());
        }
        if stride > window {
            return Err(format!(
                "stride ({stride}) must not exceed the window ({window})"
            ));
        }
        if dilation == 0 {
            return Err("dilation must be at least 1".into());
        }
        if window
            .checked_mul(dilation)
            .is_none_or(|span| span > extent)
        {
            return Err(format!(
                "window × dilation ({window} × {dilation}) must not exceed the extent ({extent})"
            ));
        }
        Ok(())
    }

    /// The rule of a valid axis, or why the axis is invalid.
    pub fn rule(&self) -> Result<AxisRule, String> {
        self.check()?;
        Ok(AxisRule { axis: *self })
    }
}

/// The neighborhood rule of an axis that passed [`Axis::check`]; only [`Axis::rule`] makes one,
/// so none of its arithmetic can divide by zero or clamp an empty interval.
///
/// Coordinates at or past the extent are outside the axis: they see nothing and are seen by
/// nothing, so no method panics on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AxisRule {
    axis: Axis,
}

impl AxisRule {
    pub fn axis(&self) -> Axis {
        self.axis
    }

    /// Dilation group of coordinate `x`.
    pub fn group(&self, x: usize) -> usize {
        x % self.axis.dilation
    }

    /// Position of coordinate `x` within its dilation group.
    pub fn position(&self, x: usize) -> usize {
        x / self.axis.dilation
    }

    /// The coordinate at `position` of dilation group `group`.
    pub fn coordinate(&self, group: usize, position: usize) -> usize {
        position * self.axis.dilation + group
    }

    /// Tokens in dilation group `group` (0 for a group that does not exist). When the extent is
    /// not a multiple of the dilation the first `extent % dilation` groups are one longer, e.g.
    /// extent 10, dilation 3 gives 4, 3, 3. NATTEN writes this as
    /// `L // δ + 1 - (g + δ - L % δ) // δ`; it is the count of `x < L` with `x % δ == g`.
    pub fn group_len(&self, group: usize) -> usize {
        if group >= self.axis.dilation {
            return 0;
        }
        (self.axis.extent.saturating_sub(group)).div_ceil(self.axis.dilation)
    }

    /// Position of the stride-group leader of query coordinate `x_q` (within `x_q`'s dilation
    /// group): the centre query of the stride group (the right one of the two centres when the
    /// stride is even) if non-causal, its last query if causal. A stride group cut short by the
    /// end of the dilation group takes its last existing position as leader.
    ///
    /// `None` when `x_q` is outside the axis.
    pub fn leader(&self, x_q: usize) -> Option<usize> {
        if x_q >= self.axis.extent {
            return None;
        }
        let Axis { stride, causal, .. } = self.axis;
        let p = self.position(x_q);
        let group_start = p / stride * stride;
        let offset = if causal { stride - 1 } else { stride / 2 };
        // group_len ≥ 1 because x_q is in the group.
        let last = self.group_len(self.group(x_q)) - 1;
        Some(group_start.saturating_add(offset).min(last))
    }

    /// The keys query coordinate `x_q` sees on this axis, as a half-open range of **positions**
    /// in `x_q`'s dilation group ([`AxisRule::keys`] gives them as coordinates). Empty only for
    /// a coordinate outside the axis.
    ///
    /// - Non-causal: exactly `window` positions, the leader's window
    ///   `[centre - window/2, centre + (window - 1)/2]`, where the centre is the leader shifted
    ///   inward just enough to keep the window inside the group (no padding, no clipping).
    /// - Causal: from `leader - (window - 1)` (at least 0) up to and including the query itself,
    ///   so queries of one stride group share the start but not the end, and queries near the
    ///   start of the group see fewer than `window` keys.
    pub fn key_range(&self, x_q: usize) -> Range<usize> {
        let Some(leader) = self.leader(x_q) else {
            return 0..0;
        };
        let window = self.axis.window;
        if self.axis.causal {
            let start = (leader + 1).saturating_sub(window);
            start..self.position(x_q) + 1
        } else {
            let left = window / 2;
            let right = window - 1 - left;
            let last = self.group_len(self.group(x_q)) - 1;
            // left ≤ last - right because the group holds at least `window` positions
            // (window · dilation ≤ extent), so the clamp interval is never empty.
            let centre = leader.clamp(left, last - right);
            centre - left..centre + right + 1
        }
    }

    /// Whether query coordinate `x_q` sees key coordinate `x_k` on this axis.
    pub fn allowed(&self, x_q: usize, x_k: usize) -> bool {
        x_k < self.axis.extent
            && self.group(x_q) == self.group(x_k)
            && self.key_range(x_q).contains(&self.position(x_k))
    }

    /// The key coordinates query coordinate `x_q` sees on this axis, in increasing order.
    pub fn keys(&self, x_q: usize) -> impl Iterator<Item = usize> + '_ {
        let group = self.group(x_q);
        self.key_range(x_q).map(move |p| self.coordinate(group, p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rule(
        extent: usize,
        window: usize,
        dilation: usize,
        stride: usize,
        causal: bool,
    ) -> AxisRule {
        Axis {
            extent,
            window,
            dilation,
            stride,
            causal,
        }
        .rule()
        .unwrap()
    }

    /// Every valid axis with extent up to `max_extent`.
    fn all_axes(max_extent: usize) -> impl Iterator<Item = AxisRule> {
        (1..=max_extent).flat_map(|l| {
            (1..=l).flat_map(move |w| {
                (1..=l / w).flat_map(move |d| {
                    (1..=w).flat_map(move |s| [false, true].map(|c| rule(l, w, d, s, c)))
                })
            })
        })
    }

    /// NATTEN's Flex mask for one axis (`single_dim_tiling_mask`), transcribed literally in
    /// signed arithmetic so that it shares no code or reformulation with [`AxisRule`].
    fn natten_flex_allowed(a: Axis, xq: usize, xk: usize) -> bool {
        let [l, w, s, d, xq, xk] =
            [a.extent, a.window, a.stride, a.dilation, xq, xk].map(|x| x as i64);
        let (pq, pk) = (xq / d, xk / d);
        let (gq, gk) = (xq % d, xk % d);
        let padding = 1 - ((gq + (d - (l % d))) / d);
        let lg = l / d + padding;
        let left = w / 2;
        let right = w / 2 + (w % 2 - 1);
        if a.causal {
            let leader = ((pq / s) * s + s - 1).min(lg - 1);
            (pq - pk >= 0) && (leader - pk < w) && gq == gk
        } else {
            let leader = ((pq / s) * s + (s / 2)).min(lg - 1);
            let center = leader.clamp(left, lg - 1 - right);
            let (w0, w1) = (center - pk, pk - center);
            (((0 <= w0) && (w0 <= left)) || ((0 <= w1) && (w1 <= right))) && gq == gk
        }
    }

    #[test]
    fn rule_matches_natten_flex_mask_exhaustively() {
        let mut cases = 0;
        for r in all_axes(12) {
            let a = r.axis();
            for xq in 0..a.extent {
                for xk in 0..a.extent {
                    assert_eq!(
                        r.allowed(xq, xk),
                        natten_flex_allowed(a, xq, xk),
                        "{a:?} xq {xq} xk {xk}"
                    );
                    cases += 1;
                }
                // Keys as coordinates agree with `allowed`, and every query sees itself.
                let keys: Vec<usize> = r.keys(xq).collect();
                let want: Vec<usize> = (0..a.extent).filter(|&xk| r.allowed(xq, xk)).collect();
                assert_eq!(keys, want, "{a:?} xq {xq}");
                assert!(r.allowed(xq, xq), "{a:?} xq {xq}");
            }
        }
        assert!(cases > 100_000, "{cases}");
    }

    #[test]
    fn rule_non_causal_window_matches_natten_kernel_form() {
        // seeds.md §3.1's kernel form: start = max(leader - left, 0)
        //   + (leader + right >= L_g) * (L_g - right - leader - 1), end = start + w.
        for r in all_axes(12).filter(|r| !r.axis().causal) {
            let w = r.axis().window as i64;
            let (left, right) = (w / 2, w / 2 + w % 2 - 1);
            for xq in 0..r.axis().extent {
                let lg = r.group_len(r.group(xq)) as i64;
                let leader = r.leader(xq).unwrap() as i64;
                let start = (leader - left).max(0)
                    + i64::from(leader + right >= lg) * (lg - right - leader - 1);
                let range = r.key_range(xq);
                assert_eq!(
                    (range.start as i64, range.end as i64),
                    (start, start + w),
                    "{:?} xq {xq}",
                    r.axis()
                );
            }
        }
    }

    #[test]
    fn rule_group_len_matches_natten_formula() {
        for l in 1..=30usize {
            for d in 1..=l {
                let r = rule(l, 1, d, 1, false);
                let lens: Vec<usize> = (0..d).map(|g| r.group_len(g)).collect();
                assert_eq!(lens.iter().sum::<usize>(), l);
                for (g, &n) in lens.iter().enumerate() {
                    let natten = l / d + 1 - (g + d - l % d) / d;
                    assert_eq!(n, natten, "L {l} d {d} g {g}");
                }
                assert_eq!(r.group_len(d), 0);
            }
        }
    }

    #[test]
    fn rule_hand_checked_examples() {
        let ranges = |r: AxisRule| -> Vec<Range<usize>> {
            (0..r.axis().extent).map(|x| r.key_range(x)).collect()
        };
        // seeds.md: L = 10, δ = 3 gives groups of 4, 3, 3; L = 11 gives 4, 4, 3.
        let r = rule(10, 3, 3, 1, false);
        assert_eq!([0, 1, 2].map(|g| r.group_len(g)), [4, 3, 3]);
        assert_eq!(
            [0, 1, 2].map(|g| rule(11, 3, 3, 1, false).group_len(g)),
            [4, 4, 3]
        );
        // Group 0 is 0, 3, 6, 9: x = 9 (position 3 of 4) shifts to positions 1..4.
        assert_eq!(r.keys(9).collect::<Vec<_>>(), [3, 6, 9]);
        assert_eq!(r.keys(0).collect::<Vec<_>>(), [0, 3, 6]);
        // Group 1 is 1, 4, 7: as long as the window, so every member sees all of it.
        assert_eq!(r.keys(7).collect::<Vec<_>>(), [1, 4, 7]);
        assert!(!r.allowed(9, 8) && !r.allowed(0, 1));

        // w = 3 (left = right = 1): the window shifts inward at both borders.
        assert_eq!(
            ranges(rule(6, 3, 1, 1, false)),
            [0..3, 0..3, 1..4, 2..5, 3..6, 3..6]
        );
        // Even w = 4: left 2, right 1, so the query sits right of the middle; at the borders
        // the window shifts (query 0 and 1 see 0..4, query 6 and 7 see 4..8).
        assert_eq!(
            ranges(rule(8, 4, 1, 1, false)),
            [0..4, 0..4, 0..4, 1..5, 2..6, 3..7, 4..8, 4..8]
        );
        // w = 2: left 1, right 0, i.e. the query and its left neighbour.
        assert_eq!(ranges(rule(4, 2, 1, 1, false)), [0..2, 0..2, 1..3, 2..4]);

        // Stride 2, w = 4: groups {0,1}, {2,3}, ... share the window of their right-centre
        // leader (1, 3, 5, 7), shifted inward at the borders.
        assert_eq!(
            ranges(rule(8, 4, 1, 2, false)),
            [0..4, 0..4, 1..5, 1..5, 3..7, 3..7, 4..8, 4..8]
        );
        // Even stride 4, w = 5: group {4..7} has leader 6 (right of the centres 5 and 6).
        let r = rule(12, 5, 1, 4, false);
        assert_eq!(r.leader(5), Some(6));
        assert_eq!(r.key_range(5), 4..9);
        // Blocked (s = w = 3) on L = 10: the last group {9} is cut short, its leader clamps to
        // 9, and its window shifts to 7..10, overlapping the previous block: not a reshape.
        assert_eq!(
            ranges(rule(10, 3, 1, 3, false)),
            [0..3, 0..3, 0..3, 3..6, 3..6, 3..6, 6..9, 6..9, 6..9, 7..10]
        );

        // Causal, w = 3, stride 1: fewer keys near the start, window ends at the query.
        assert_eq!(
            ranges(rule(5, 3, 1, 1, true)),
            [0..1, 0..2, 0..3, 1..4, 2..5]
        );
        // Causal, w = 3, stride 2: a group shares its last query's start, each query still ends
        // at itself; the last group {8} of L = 9 is cut short so 8 leads it.
        assert_eq!(
            ranges(rule(9, 3, 1, 2, true)),
            [0..1, 0..2, 1..3, 1..4, 3..5, 3..6, 5..7, 5..8, 6..9]
        );
        // Causal with dilation 2 on L = 7: group 0 is 0, 2, 4, 6; x = 6 is position 3.
        let r = rule(7, 2, 2, 1, true);
        assert_eq!(r.keys(6).collect::<Vec<_>>(), [4, 6]);
        assert_eq!(r.keys(1).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn rule_rejects_invalid_parameters() {
        let err = |extent, window, dilation, stride| {
            Axis {
                extent,
                window,
                dilation,
                stride,
                causal: false,
            }
            .rule()
            .unwrap_err()
        };
        assert_eq!(err(0, 1, 1, 1), "extent must be at least 1");
        assert_eq!(err(4, 0, 1, 1), "window must be at least 1");
        assert_eq!(err(4, 5, 1, 1), "window (5) must not exceed the extent (4)");
        assert_eq!(err(4, 2, 1, 0), "stride must be at least 1");
        assert_eq!(err(4, 2, 1, 3), "stride (3) must not exceed the window (2)");
        assert_eq!(err(4, 2, 0, 1), "dilation must be at least 1");
        assert_eq!(
            err(9, 4, 3, 1),
            "window × dilation (4 × 3) must not exceed the extent (9)"
        );
        assert!(err(usize::MAX, 2, usize::MAX, 1).contains("window × dilation"));
        // The boundaries themselves are valid.
        assert!(
            Axis::new(12, 4)
                .with_dilation(3)
                .with_stride(4)
                .check()
                .is_ok()
        );
        assert!(Axis::new(1, 1).with_causal(true).check().is_ok());
    }

    #[test]
    fn rule_coordinates_outside_the_axis_see_nothing() {
        let r = rule(5, 3, 1, 1, false);
        assert_eq!(r.leader(5), None);
        assert_eq!(r.key_range(5), 0..0);
        assert_eq!(r.keys(7).count(), 0);
        assert!(!r.allowed(5, 4) && !r.allowed(4, 5) && !r.allowed(usize::MAX, 0));
        let huge = rule(usize::MAX, 3, 1, 3, true);
        assert_eq!(huge.key_range(usize::MAX - 1), usize::MAX - 3..usize::MAX);
    }

    fn axis(max_extent: usize) -> impl Strategy<Value = AxisRule> {
        (1..=max_extent)
            .prop_flat_map(|l| (Just(l), 1..=l))
            .prop_flat_map(|(l, w)| (Just(l), Just(w), 1..=l / w, 1..=w, any::<bool>()))
            .prop_map(|(l, w, d, s, c)| rule(l, w, d, s, c))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Non-causal: all queries of a stride group (same dilation group, same position /
        /// stride) share one window; causal: each sees its leader's window cut at itself.
        #[test]
        fn rule_stride_group_shares_the_leaders_window(r in axis(40)) {
            let a = r.axis();
            for xq in 0..a.extent {
                let leader = r.coordinate(r.group(xq), r.leader(xq).unwrap());
                prop_assert_eq!(r.group(leader), r.group(xq));
                prop_assert_eq!(r.position(leader) / a.stride, r.position(xq) / a.stride);
                let range = r.key_range(xq);
                if a.causal {
                    let lr = r.key_range(leader);
                    prop_assert_eq!(range.clone(), lr.start..r.position(xq) + 1, "xq {}", xq);
                    prop_assert!(range.len() <= a.window && range.contains(&r.position(xq)));
                } else {
                    prop_assert_eq!(range.clone(), r.key_range(leader), "xq {}", xq);
                    prop_assert_eq!(range.len(), a.window);
                    prop_assert!(range.end <= r.group_len(r.group(xq)));
                }
            }
        }

        /// Windows never move backwards: start and end are monotone in the query position,
        /// which tile-range computations (NATTEN's get_trip_count) rely on.
        #[test]
        fn rule_windows_are_monotone(r in axis(40)) {
            let a = r.axis();
            for xq in a.dilation..a.extent {
                let (prev, cur) = (r.key_range(xq - a.dilation), r.key_range(xq));
                prop_assert!(prev.start <= cur.start && prev.end <= cur.end, "xq {}", xq);
            }
        }
    }
}
