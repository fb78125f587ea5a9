//! Block maps for timing a block-sparse kernel (`tessera bench --density`) until the
//! estimation kernel makes real ones: every causally visible tile is kept with probability
//! `density` (a seeded hash, so every config and run sees the same map for its tiles), the
//! tiles the diagonal cuts always (SALE always computes them), and the FLOPs counted are
//! exactly the visible (query, key) pairs of the kept tiles.

use tessera_codegen::format::BlockLists;

/// The tiles of a `seq_q` × `seq_kv` launch over `planes` planes, in `block_q` × `block_kv`.
#[derive(Clone, Copy, Debug)]
pub struct Tiling {
    pub planes: usize,
    pub seq_q: usize,
    pub seq_kv: usize,
    pub block_q: usize,
    pub block_kv: usize,
}

impl Tiling {
    fn tiles(&self) -> (usize, usize) {
        (
            self.seq_q.div_ceil(self.block_q),
            self.seq_kv.div_ceil(self.block_kv),
        )
    }

    /// Causally visible (query, key) pairs of tile (qt, kt): query `i` sees key `j` iff
    /// `j <= i + seq_kv - seq_q`, as the kernel's mask.
    fn visible_pairs(&self, qt: usize, kt: usize) -> u64 {
        let rows = qt * self.block_q..((qt + 1) * self.block_q).min(self.seq_q);
        let (k0, k1) = (
            kt * self.block_kv,
            ((kt + 1) * self.block_kv).min(self.seq_kv),
        );
        // The last key row i sees, plus one, as a signed count (negative: none).
        let limit = |i: usize| i as i64 + self.seq_kv as i64 - self.seq_q as i64 + 1;
        let seen = |i: usize| (limit(i) - k0 as i64).clamp(0, (k1 - k0) as i64) as u64;
        if rows.is_empty() || k0 >= k1 {
            return 0;
        }
        // Whole tiles below the diagonal (the common case) and above it need no loop.
        if limit(rows.start) >= k1 as i64 {
            return (rows.len() * (k1 - k0)) as u64;
        }
        if limit(rows.end - 1) <= k0 as i64 {
            return 0;
        }
        rows.map(seen).sum()
    }
}

/// The map and the pairs it visits.
pub struct BenchMap {
    pub lists: BlockLists,
    pub pairs: u64,
}

/// A seeded map of about `density` of the visible tiles, the diagonal's always kept.
pub fn random_causal(t: &Tiling, density: f64, seed: u64) -> Result<BenchMap, String> {
    if !(density > 0.0 && density <= 1.0) {
        return Err(format!("density must be in (0, 1], got {density}"));
    }
    let (nq, nk) = t.tiles();
    let threshold = (density * u64::MAX as f64) as u64;
    let mut pairs = 0;
    let lists = BlockLists::from_fn(t.planes, nq, nk, |plane, qt, kt| {
        let visible = t.visible_pairs(qt, kt);
        let full = (((qt + 1) * t.block_q).min(t.seq_q) - qt * t.block_q)
            * (((kt + 1) * t.block_kv).min(t.seq_kv) - kt * t.block_kv);
        let diagonal = visible > 0 && visible < full as u64;
        let keep = visible > 0
            && (diagonal || splitmix(seed ^ ((plane * nq + qt) * nk + kt) as u64) <= threshold);
        if keep {
            pairs += visible;
        }
        keep
    })?;
    Ok(BenchMap { lists, pairs })
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Tiling = Tiling {
        planes: 2,
        seq_q: 100,
        seq_kv: 130,
        block_q: 64,
        block_kv: 32,
    };

    #[test]
    fn a_full_map_is_causal_attention() {
        let map = random_causal(&T, 1.0, 7).unwrap();
        // Query i sees i + 31 keys (up to 130): Σ_{i<100} min(i + 31, 130).
        let per_plane: u64 = (0..100u64).map(|i| (i + 31).min(130)).sum();
        assert_eq!(map.pairs, 2 * per_plane);
        assert!(map.lists.validate().is_ok());
    }

    #[test]
    fn sparser_maps_keep_the_diagonal_and_fewer_pairs() {
        let full = random_causal(&T, 1.0, 7).unwrap();
        let sparse = random_causal(
            &Tiling {
                seq_q: 4096,
                seq_kv: 4096,
                ..T
            },
            0.2,
            7,
        )
        .unwrap();
        let dense = random_causal(
            &Tiling {
                seq_q: 4096,
                seq_kv: 4096,
                ..T
            },
            1.0,
            7,
        )
        .unwrap();
        let ratio = sparse.pairs as f64 / dense.pairs as f64;
        assert!((0.15..0.3).contains(&ratio), "{ratio}");
        assert!(full.pairs >= random_causal(&T, 0.01, 7).unwrap().pairs);
        // Query tile 1 (rows 64..128) of plane 0 always keeps the tiles its diagonal cuts
        // (keys 64..128: KV tiles 2 and 3), and never one past it.
        let kept = sparse.lists.kept();
        assert!(kept[128 + 2] && kept[128 + 3] && !kept[128 + 4]);
        assert!(random_causal(&T, 0.0, 7).is_err() && random_causal(&T, f64::NAN, 7).is_err());
    }
}
