//! Float64 reference of NATTEN's neighborhood attention (`na1d`, `na2d`, `na3d`; seeds.md §3.1)
//! over a 1-, 2- or 3-axis token grid: self-attention in which a query sees a key iff every
//! axis's [`AxisRule`] allows the pair.
//!
//! Layout: `[batch, heads, tokens, head_dim]` as in the dense reference, with the tokens of the
//! grid `(X[, Y[, Z]])` in row-major order (the last axis varies fastest), so token
//! `(x * Y + y) * Z + z` is at coordinates `(x, y, z)`. NATTEN's own tensors are heads-last
//! (`[batch, X, Y, heads, head_dim]`); callers comparing against it transpose.

use super::rule::{Axis, AxisRule};
use super::{Output, Shape, masked_attention};

/// Most axes a grid may have, as in NATTEN (`na1d` to `na3d`).
pub const MAX_AXES: usize = 3;

/// A neighborhood-attention problem. Grouped-query attention when `kv_heads < heads`, mapped as
/// in the dense reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NaShape {
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    /// The grid, outermost axis first; 1 to [`MAX_AXES`] axes.
    pub axes: Vec<Axis>,
    pub head_dim: usize,
}

impl NaShape {
    /// The validated grid rule.
    pub fn neighborhood(&self) -> Result<Neighborhood, String> {
        Neighborhood::new(&self.axes)
    }

    /// The dense shape of the same tensors (self-attention, `seq_q = seq_kv = tokens`); its
    /// `q_len`, `kv_len` and `lse_len` size the inputs and outputs.
    pub fn dense_shape(&self) -> Result<Shape, String> {
        let tokens = self.neighborhood()?.tokens();
        let shape = Shape {
            batch: self.batch,
            heads: self.heads,
            kv_heads: self.kv_heads,
            seq_q: tokens,
            seq_kv: tokens,
            head_dim: self.head_dim,
        };
        shape.check()?;
        Ok(shape)
    }

    /// Rejects a problem no kernel can run: bad axes (see [`Axis::check`]), a wrong number of
    /// axes, or a dense shape that [`Shape::check`] rejects.
    pub fn check(&self) -> Result<(), String> {
        self.dense_shape().map(drop)
    }
}

/// The neighborhood rule of a whole grid, from axes that all passed [`Axis::check`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Neighborhood {
    rules: Vec<AxisRule>,
    tokens: usize,
}

impl Neighborhood {
    pub fn new(axes: &[Axis]) -> Result<Neighborhood, String> {
        if axes.is_empty() || axes.len() > MAX_AXES {
            return Err(format!(
                "a neighborhood needs 1 to {MAX_AXES} axes, got {}",
                axes.len()
            ));
        }
        let rules = axes
            .iter()
            .enumerate()
            .map(|(i, a)| a.rule().map_err(|e| format!("axis {i}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let tokens = axes
            .iter()
            .try_fold(1usize, |n, a| n.checked_mul(a.extent))
            .ok_or_else(|| {
                format!(
                    "the grid {:?} has more tokens than fit in usize",
                    extents(axes)
                )
            })?;
        Ok(Neighborhood { rules, tokens })
    }

    pub fn rules(&self) -> &[AxisRule] {
        &self.rules
    }

    pub fn extents(&self) -> Vec<usize> {
        self.rules.iter().map(|r| r.axis().extent).collect()
    }

    /// Tokens in the grid, the product of the extents.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Grid coordinates of `token` (row-major), or `None` past the last token.
    pub fn coords(&self, token: usize) -> Option<Vec<usize>> {
        if token >= self.tokens {
            return None;
        }
        let mut rest = token;
        let mut coords = vec![0; self.rules.len()];
        for (c, rule) in coords.iter_mut().zip(&self.rules).rev() {
            let extent = rule.axis().extent;
            *c = rest % extent;
            rest /= extent;
        }
        Some(coords)
    }

    /// Token at grid `coords` (row-major), or `None` for coordinates outside the grid.
    pub fn token(&self, coords: &[usize]) -> Option<usize> {
        if coords.len() != self.rules.len() {
            return None;
        }
        coords.iter().zip(&self.rules).try_fold(0, |t, (&c, rule)| {
            let extent = rule.axis().extent;
            // Cannot overflow: the result is below `tokens`, which fits.
            (c < extent).then(|| t * extent + c)
        })
    }

    /// Whether query token `q` sees key token `k`: every axis allows the pair of coordinates.
    pub fn allowed(&self, q: usize, k: usize) -> bool {
        if q >= self.tokens || k >= self.tokens {
            return false;
        }
        // Decoding in place rather than through `coords` keeps this allocation-free: the
        // reference calls it tokens² times.
        let (mut q, mut k) = (q, k);
        for rule in self.rules.iter().rev() {
            let extent = rule.axis().extent;
            if !rule.allowed(q % extent, k % extent) {
                return false;
            }
            (q, k) = (q / extent, k / extent);
        }
        true
    }
}

fn extents(axes: &[Axis]) -> Vec<usize> {
    axes.iter().map(|a| a.extent).collect()
}

/// Neighborhood attention, softmax(scale · Q Kᵀ + NA mask) V, in float64: `q`, `k`, `v` and the
/// output `o` are `[batch, heads or kv_heads, tokens, head_dim]`, `lse` is
/// `[batch, heads, tokens]`.
///
/// No row is ever fully masked for a valid shape: every query sees itself on every axis (its
/// own position lies in its window, causal or not). The dense convention (`o = 0`,
/// `lse = -inf`) would apply if one were.
pub fn neighborhood_attention(
    shape: &NaShape,
    scale: f64,
    q: &[f64],
    k: &[f64],
    v: &[f64],
) -> Result<Output, String> {
    let neighborhood = shape.neighborhood()?;
    let dense = shape.dense_shape()?;
    masked_attention(&dense, scale, q, k, v, |i, j| neighborhood.allowed(i, j))
        .map_err(|e| format!("grid {:?}: {e}", neighborhood.extents()))
}

#[cfg(test)]
mod tests {
    use super::super::{Mask, attention, rel_error};
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Enough cases to hit odd/even windows, borders and partial groups on small grids, few
    /// enough to keep the suite fast in debug builds.
    fn config() -> ProptestConfig {
        ProptestConfig::with_cases(64)
    }

    fn random(rng: &mut StdRng, n: usize) -> Vec<f64> {
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// Batch, heads, GQA and data for a random problem over `axes`.
    #[derive(Debug, Clone)]
    struct Problem {
        batch: usize,
        kv_heads: usize,
        group: usize,
        head_dim: usize,
        scale: f64,
        seed: u64,
    }

    impl Problem {
        fn shape(&self, axes: Vec<Axis>) -> NaShape {
            NaShape {
                batch: self.batch,
                heads: self.kv_heads * self.group,
                kv_heads: self.kv_heads,
                axes,
                head_dim: self.head_dim,
            }
        }

        fn data(&self, shape: &NaShape) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
            let dense = shape.dense_shape().expect("valid test shape");
            let mut rng = StdRng::seed_from_u64(self.seed);
            (
                random(&mut rng, dense.q_len()),
                random(&mut rng, dense.kv_len()),
                random(&mut rng, dense.kv_len()),
            )
        }
    }

    fn problem() -> impl Strategy<Value = Problem> {
        (
            1..=2usize,
            1..=2usize,
            1..=2usize,
            4..=8usize,
            0.1..2.0f64,
            any::<u64>(),
        )
            .prop_map(|(batch, kv_heads, group, head_dim, scale, seed)| Problem {
                batch,
                kv_heads,
                group,
                head_dim,
                scale,
                seed,
            })
    }

    /// Any valid axis with extent up to `max_extent`.
    fn axis(max_extent: usize) -> impl Strategy<Value = Axis> {
        (1..=max_extent)
            .prop_flat_map(|extent| (Just(extent), 1..=extent))
            .prop_flat_map(|(extent, window)| {
                (
                    Just(extent),
                    Just(window),
                    1..=extent / window,
                    1..=window,
                    any::<bool>(),
                )
            })
            .prop_map(|(extent, window, dilation, stride, causal)| Axis {
                extent,
                window,
                dilation,
                stride,
                causal,
            })
    }

    /// 1 to 3 axes; 3-D grids smaller so that tokens² stays cheap.
    fn grid() -> impl Strategy<Value = Vec<Axis>> {
        (1..=3usize).prop_flat_map(|n| prop::collection::vec(axis([12, 12, 6][n - 1]), n))
    }

    fn non_causal(axes: Vec<Axis>) -> Vec<Axis> {
        axes.into_iter().map(|a| a.with_causal(false)).collect()
    }

    fn count_keys(nb: &Neighborhood, q: usize) -> usize {
        (0..nb.tokens()).filter(|&k| nb.allowed(q, k)).count()
    }

    /// `x` (`[bh, tokens, d]`) restricted to the tokens `idx`, in that order.
    fn gather(x: &[f64], bh: usize, tokens: usize, d: usize, idx: &[usize]) -> Vec<f64> {
        (0..bh)
            .flat_map(|r| idx.iter().map(move |&t| (r * tokens + t) * d))
            .flat_map(|s| x[s..s + d].iter().copied())
            .collect()
    }

    fn assert_close(got: &Output, want: &Output, what: &str) {
        let (eo, el) = (rel_error(&got.o, &want.o), rel_error(&got.lse, &want.lse));
        assert!(
            eo <= 1e-14 && el <= 1e-14,
            "{what}: o error {eo}, lse error {el}"
        );
    }

    proptest! {
        #![proptest_config(config())]

        /// window = extent on every axis covers the whole grid whatever the stride: NA is dense
        /// self-attention (GQA included).
        #[test]
        fn na_full_window_is_dense_attention(
            extents_strides in (1..=3usize).prop_flat_map(|n| prop::collection::vec(
                (1..=[12usize, 8, 5][n - 1]).prop_flat_map(|e| (Just(e), 1..=e)), n)),
            p in problem(),
        ) {
            let axes = extents_strides
                .iter()
                .map(|&(e, s)| Axis::new(e, e).with_stride(s))
                .collect();
            let shape = p.shape(axes);
            let (q, k, v) = p.data(&shape);
            let na = neighborhood_attention(&shape, p.scale, &q, &k, &v).unwrap();
            let dense = attention(&shape.dense_shape().unwrap(), Mask::None, p.scale, &q, &k, &v);
            assert_close(&na, &dense, "full window");
        }

        /// Causal with window = extent on one axis is causal self-attention, whatever the
        /// stride (the window start is 0 for every leader).
        #[test]
        fn na_causal_full_window_is_dense_causal(
            (extent, stride) in (1..=24usize).prop_flat_map(|e| (Just(e), 1..=e)),
            p in problem(),
        ) {
            let shape = p.shape(vec![Axis::new(extent, extent).with_stride(stride).with_causal(true)]);
            let (q, k, v) = p.data(&shape);
            let na = neighborhood_attention(&shape, p.scale, &q, &k, &v).unwrap();
            let dense = attention(&shape.dense_shape().unwrap(), Mask::Causal, p.scale, &q, &k, &v);
            assert_close(&na, &dense, "causal full window");
        }

        /// Dilation δ is undilated NA (same window, stride, causal flag) run independently on
        /// each of the δ interleaved sub-sequences, which have unequal lengths here because the
        /// extent is never a multiple of δ.
        #[test]
        fn na_dilation_is_undilated_na_per_group(
            (dilation, window, more, rem) in (2..=4usize, 1..=4usize, 0..=2usize)
                .prop_flat_map(|(d, w, m)| (Just(d), Just(w), Just(m), 1..d)),
            stride_pick in any::<prop::sample::Index>(),
            causal in any::<bool>(),
            p in problem(),
        ) {
            let extent = (window + more) * dilation + rem;
            let stride = stride_pick.index(window) + 1;
            let axis = Axis { extent, window, dilation, stride, causal };
            let shape = p.shape(vec![axis]);
            let (q, k, v) = p.data(&shape);
            let na = neighborhood_attention(&shape, p.scale, &q, &k, &v).unwrap();

            let (bh, kvh, d) = (shape.batch * shape.heads, shape.batch * shape.kv_heads, p.head_dim);
            let mut lens = vec![];
            for g in 0..dilation {
                let idx: Vec<usize> = (g..extent).step_by(dilation).collect();
                lens.push(idx.len());
                let sub = p.shape(vec![Axis { extent: idx.len(), dilation: 1, ..axis }]);
                let want = neighborhood_attention(
                    &sub,
                    p.scale,
                    &gather(&q, bh, extent, d, &idx),
                    &gather(&k, kvh, extent, d, &idx),
                    &gather(&v, kvh, extent, d, &idx),
                )
                .unwrap();
                let got = Output {
                    o: gather(&na.o, bh, extent, d, &idx),
                    lse: gather(&na.lse, bh, extent, 1, &idx),
                };
                assert_close(&got, &want, &format!("{axis:?}, group {g}"));
            }
            prop_assert!(lens.iter().any(|&l| l != lens[0]), "groups should be unequal: {lens:?}");
        }

        /// Every non-causal query sees exactly ∏ window keys, itself among them.
        #[test]
        fn na_non_causal_query_sees_product_of_windows(axes in grid().prop_map(non_causal)) {
            let nb = Neighborhood::new(&axes).unwrap();
            let want: usize = axes.iter().map(|a| a.window).product();
            for q in 0..nb.tokens() {
                prop_assert_eq!(count_keys(&nb, q), want, "query {}", q);
                prop_assert!(nb.allowed(q, q));
            }
        }

        /// With causal axes in the mix a query sees the product of its per-axis key counts;
        /// a causal axis gives between 1 and `window` (so no row is ever fully masked).
        #[test]
        fn na_query_sees_product_of_axis_counts(axes in grid()) {
            let nb = Neighborhood::new(&axes).unwrap();
            for q in 0..nb.tokens() {
                let coords = nb.coords(q).unwrap();
                let want: usize = nb
                    .rules()
                    .iter()
                    .zip(&coords)
                    .map(|(r, &x)| {
                        let n = r.key_range(x).len();
                        let w = r.axis().window;
                        assert!(if r.axis().causal { (1..=w).contains(&n) } else { n == w });
                        n
                    })
                    .product();
                prop_assert_eq!(count_keys(&nb, q), want, "query {} at {:?}", q, coords);
                prop_assert!(nb.allowed(q, q));
            }
        }

        /// The grid rule is the conjunction of the axis rules on row-major coordinates, decoded
        /// here independently of `Neighborhood`.
        #[test]
        fn na_is_separable(
            axes in (2..=3usize).prop_flat_map(|n| prop::collection::vec(axis([0, 8, 5][n - 1]), n)),
        ) {
            let nb = Neighborhood::new(&axes).unwrap();
            let rules: Vec<AxisRule> = axes.iter().map(|a| a.rule().unwrap()).collect();
            let ext: Vec<usize> = axes.iter().map(|a| a.extent).collect();
            let decode = |t: usize| -> Vec<usize> {
                if ext.len() == 2 {
                    vec![t / ext[1], t % ext[1]]
                } else {
                    vec![t / (ext[1] * ext[2]), t / ext[2] % ext[1], t % ext[2]]
                }
            };
            for q in 0..nb.tokens() {
                let cq = decode(q);
                prop_assert_eq!(nb.coords(q), Some(cq.clone()));
                prop_assert_eq!(nb.token(&cq), Some(q));
                for k in 0..nb.tokens() {
                    let ck = decode(k);
                    let want = rules.iter().zip(cq.iter().zip(&ck)).all(|(r, (&a, &b))| r.allowed(a, b));
                    prop_assert_eq!(nb.allowed(q, k), want, "q {:?} k {:?}", cq, ck);
                }
            }
        }

        /// Non-causal queries in the same stride group on every axis see the same key set: the
        /// leader's window.
        #[test]
        fn na_stride_group_shares_keys(axes in grid().prop_map(non_causal)) {
            let nb = Neighborhood::new(&axes).unwrap();
            let stride_group = |t: usize| -> Vec<(usize, usize)> {
                nb.coords(t)
                    .unwrap()
                    .iter()
                    .zip(nb.rules())
                    .map(|(&x, r)| (r.group(x), r.position(x) / r.axis().stride))
                    .collect()
            };
            let keys = |t: usize| -> Vec<usize> {
                (0..nb.tokens()).filter(|&k| nb.allowed(t, k)).collect()
            };
            let mut seen = std::collections::HashMap::new();
            for q in 0..nb.tokens() {
                let ks = keys(q);
                let first = seen.entry(stride_group(q)).or_insert_with(|| ks.clone());
                prop_assert_eq!(&*first, &ks, "query {}", q);
            }
        }
    }

    #[test]
    fn na_hand_checked_windows_shift_inward() {
        // 1-D, extent 5, window 3: query 0's window shifts right to keys 0..3, so its output is
        // dense attention of q0 over the first 3 tokens; query 4's shifts left to 2..5.
        let p = Problem {
            batch: 1,
            kv_heads: 1,
            group: 1,
            head_dim: 4,
            scale: 0.5,
            seed: 11,
        };
        let shape = p.shape(vec![Axis::new(5, 3)]);
        let (q, k, v) = p.data(&shape);
        let na = neighborhood_attention(&shape, 0.5, &q, &k, &v).unwrap();
        let one = |qi: usize, keys: std::ops::Range<usize>| {
            let s = Shape {
                batch: 1,
                heads: 1,
                kv_heads: 1,
                seq_q: 1,
                seq_kv: keys.len(),
                head_dim: 4,
            };
            let kr = keys.start * 4..keys.end * 4;
            attention(
                &s,
                Mask::None,
                0.5,
                &q[qi * 4..qi * 4 + 4],
                &k[kr.clone()],
                &v[kr],
            )
        };
        for (qi, keys) in [(0, 0..3), (1, 0..3), (2, 1..4), (3, 2..5), (4, 2..5)] {
            let want = one(qi, keys);
            let got = Output {
                o: na.o[qi * 4..qi * 4 + 4].to_vec(),
                lse: vec![na.lse[qi]],
            };
            assert_close(&got, &want, &format!("query {qi}"));
        }

        // 2-D 4×5 grid, window 3×2: token (0, 4) sees rows 0..3 and columns 3..5.
        let nb = Neighborhood::new(&[Axis::new(4, 3), Axis::new(5, 2)]).unwrap();
        let q = nb.token(&[0, 4]).unwrap();
        let seen: Vec<Vec<usize>> = (0..nb.tokens())
            .filter(|&k| nb.allowed(q, k))
            .map(|k| nb.coords(k).unwrap())
            .collect();
        assert_eq!(
            seen,
            [[0, 3], [0, 4], [1, 3], [1, 4], [2, 3], [2, 4]].map(Vec::from)
        );
    }

    #[test]
    fn na_shape_errors() {
        let ok = NaShape {
            batch: 1,
            heads: 2,
            kv_heads: 1,
            axes: vec![Axis::new(4, 3), Axis::new(5, 2)],
            head_dim: 8,
        };
        assert!(ok.check().is_ok());
        let s = ok.dense_shape().unwrap();
        assert_eq!(
            (s.seq_q, s.seq_kv, s.q_len(), s.kv_len()),
            (20, 20, 320, 160)
        );

        let with_axes = |axes: Vec<Axis>| NaShape { axes, ..ok.clone() };
        let err = |s: &NaShape| s.check().unwrap_err();
        assert!(err(&with_axes(vec![])).contains("1 to 3 axes, got 0"));
        assert!(err(&with_axes(vec![Axis::new(2, 1); 4])).contains("got 4"));
        let e = err(&with_axes(vec![Axis::new(4, 3), Axis::new(5, 6)]));
        assert!(e.contains("axis 1") && e.contains("window (6)"), "{e}");
        let e = err(&with_axes(vec![Axis::new(usize::MAX, 1), Axis::new(3, 1)]));
        assert!(e.contains("more tokens than fit"), "{e}");
        // Elements overflow though tokens fit: the dense shape check catches it.
        assert!(err(&with_axes(vec![Axis::new(usize::MAX / 2, 1)])).contains("usize"));
        assert!(
            err(&NaShape {
                kv_heads: 3,
                ..ok.clone()
            })
            .contains("multiple")
        );
        assert!(
            err(&NaShape {
                head_dim: 0,
                ..ok.clone()
            })
            .contains("head_dim")
        );

        let e = neighborhood_attention(&ok, 1.0, &[0.0; 320], &[0.0; 160], &[0.0; 3]).unwrap_err();
        assert!(
            e.contains("v has 3 elements") && e.contains("[4, 5]"),
            "{e}"
        );
        assert!(neighborhood_attention(&with_axes(vec![]), 1.0, &[], &[], &[]).is_err());
        // An empty batch is a valid, empty problem.
        let empty = neighborhood_attention(
            &NaShape {
                batch: 0,
                ..ok.clone()
            },
            1.0,
            &[],
            &[],
            &[],
        );
        assert_eq!(
            empty.unwrap(),
            Output {
                o: vec![],
                lse: vec![]
            }
        );
    }

    #[test]
    fn na_coords_outside_the_grid() {
        let nb = Neighborhood::new(&[Axis::new(3, 1), Axis::new(2, 1)]).unwrap();
        assert_eq!(nb.tokens(), 6);
        assert_eq!(nb.coords(5), Some(vec![2, 1]));
        assert_eq!(nb.coords(6), None);
        assert_eq!(nb.token(&[2, 2]), None);
        assert_eq!(nb.token(&[1]), None);
        assert!(nb.allowed(5, 5) && !nb.allowed(6, 6) && !nb.allowed(0, 6));
    }
}
