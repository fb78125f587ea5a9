//! Mustafar's bitmap-compressed K/V tiles (seeds.md §1.2), per KV head of `tokens × head_dim`
//! 16-bit values:
//!
//! - a tile is 64 elements with one `u64` bitmap, element `i` at bit `63 - i` (MSB first);
//! - K tiles run along tokens (64 tokens of one channel, tile `c·D + d`), V tiles along
//!   channels (64 channels of one token, tile `c·D + j·64 + r` for token `64c + r`): in both the
//!   strip lies along the M dimension of the product's A operand;
//! - a tile's nonzeros are packed in element order, padded with zeros to a multiple of 8 values
//!   (16 bytes); `offsets[t]` is where tile `t` starts, in 32-bit words (value pairs), with
//!   `tiles + 1` entries per head;
//! - heads' value buffers are concatenated; `head_base[h]` is where head `h`'s starts, in
//!   16-byte units.
//!
//! Zero test: a value is stored iff it is not ±0 (a kept element equal to zero is dropped, which
//! reads back the same; -0 reads back as +0).

use tessera_desc::Dtype;

pub const TILE: usize = 64;
/// Values per 16-byte unit: tile value runs are padded to it.
pub const PAD: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TileOrder {
    /// K: 64 consecutive tokens of one channel.
    Keys,
    /// V: 64 consecutive channels of one token.
    Values,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BitmapCache {
    pub order: TileOrder,
    pub dtype: Dtype,
    /// KV heads times batch: the independent `tokens × head_dim` planes.
    pub heads: usize,
    /// Tokens per head, a multiple of 64.
    pub tokens: usize,
    pub head_dim: usize,
    /// `heads × tiles` bitmaps.
    pub bitmaps: Vec<u64>,
    /// `heads × (tiles + 1)` starts of each tile's values, in value pairs.
    pub offsets: Vec<i32>,
    /// The packed values' bits, all heads concatenated.
    pub values: Vec<u16>,
    /// Start of each head's values, in 16-byte units.
    pub head_base: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("{what} = {got} is not a multiple of {multiple}")]
    NotMultiple { what: &'static str, got: usize, multiple: usize },
    #[error("the dense cache has {got} values, {heads} heads × {tokens} tokens × {head_dim} need {want}")]
    Length { got: usize, want: usize, heads: usize, tokens: usize, head_dim: usize },
    #[error("cannot append a {other} cache to a {this} cache")]
    Mismatch { this: String, other: String },
    #[error("offsets of {0} values do not fit in i32")]
    TooLarge(usize),
}

fn is_zero(bits: u16) -> bool {
    bits & 0x7fff == 0
}

impl BitmapCache {
    fn tiles_per_head(&self) -> usize {
        self.tokens * self.head_dim / TILE
    }

    /// The dense index (within a head's `tokens × head_dim` plane) of element `i` of tile `t`.
    fn element(order: TileOrder, head_dim: usize, t: usize, i: usize) -> usize {
        let chunk = t / head_dim;
        let within = t % head_dim;
        match order {
            // Tile c·D + d: tokens 64c + i, channel d.
            TileOrder::Keys => (chunk * TILE + i) * head_dim + within,
            // Tile c·D + j·64 + r: token 64c + r, channels 64j + i.
            TileOrder::Values => {
                let (j, r) = (within / TILE, within % TILE);
                (chunk * TILE + r) * head_dim + j * TILE + i
            }
        }
    }

    /// Where element (token, channel) of a head's plane lives: its tile and its position in the
    /// tile (the inverse of `element`). This and [`BitmapCache::value_index`] read the format
    /// element by element without decompressing it, as the interpreter does; the decode kernel
    /// expands whole tiles with a running count that lands on the same values.
    pub fn locate(order: TileOrder, head_dim: usize, token: usize, channel: usize) -> Option<(usize, usize)> {
        if channel >= head_dim {
            return None;
        }
        let chunk = token / TILE;
        Some(match order {
            TileOrder::Keys => (chunk * head_dim + channel, token % TILE),
            TileOrder::Values => (chunk * head_dim + (channel / TILE) * TILE + token % TILE, channel % TILE),
        })
    }

    /// The index in `values` of element `i` of tile `t` of head `head`, or `None` when the
    /// element was pruned (or lies outside the cache): the tile's start plus the set bits before
    /// bit `63 - i`.
    pub fn value_index(&self, head: usize, t: usize, i: usize) -> Option<usize> {
        let tiles = self.tiles_per_head();
        if head >= self.heads || t >= tiles || i >= TILE {
            return None;
        }
        let bitmap = self.bitmaps[head * tiles + t];
        if bitmap & (1 << (63 - i)) == 0 {
            return None;
        }
        // Bits above bit 63 - i are elements 0..i; `>> 1 >> (63 - i)` avoids a shift by 64.
        let before = (bitmap >> 1 >> (63 - i)).count_ones() as usize;
        Some(self.tile_start(head, t) + before)
    }

    /// Where tile `t` of head `head` starts in `values`.
    fn tile_start(&self, head: usize, t: usize) -> usize {
        let tiles = self.tiles_per_head();
        self.head_base[head] as usize * PAD + 2 * self.offsets[head * (tiles + 1) + t] as usize
    }

    /// Checks that the arrays hold what the shape says (a cache built by hand or read from
    /// elsewhere), so that reads through `value_index`, and the decode kernel's, stay inside
    /// them: the kernel reads each tile's values from its bitmap's count, rounded up to 8, in
    /// 16-byte vectors from the tile's start, so every tile has room for that many and starts
    /// on a 16-byte boundary.
    pub fn validate(&self) -> Result<(), FormatError> {
        let tiles = self.tiles_per_head();
        let bad = |what: String| Err(FormatError::Mismatch { this: format!("{:?} cache of {} heads × {} tokens × d{}", self.order, self.heads, self.tokens, self.head_dim), other: what });
        if self.bitmaps.len() != self.heads * tiles || self.offsets.len() != self.heads * (tiles + 1) || self.head_base.len() != self.heads {
            return bad(format!("{} bitmaps, {} offsets, {} head bases", self.bitmaps.len(), self.offsets.len(), self.head_base.len()));
        }
        for h in 0..self.heads {
            let offs = &self.offsets[h * (tiles + 1)..(h + 1) * (tiles + 1)];
            if offs.windows(2).any(|w| w[1] < w[0]) || offs[0] < 0 || self.head_base[h] < 0 {
                return bad(format!("decreasing or negative offsets in head {h}"));
            }
            for (t, w) in offs.windows(2).enumerate() {
                let need = (self.bitmaps[h * tiles + t].count_ones() as usize).next_multiple_of(PAD);
                if w[0] % (PAD as i32 / 2) != 0 || 2 * ((w[1] - w[0]) as usize) < need {
                    return bad(format!("tile {t} of head {h}: offsets {}..{} (pairs) for {} kept values, padded to {PAD} and 16-byte aligned", w[0], w[1], need));
                }
            }
            if self.tile_start(h, tiles) > self.values.len() {
                return bad(format!("{} values, head {h} needs {}", self.values.len(), self.tile_start(h, tiles)));
            }
        }
        Ok(())
    }

    /// Compresses `heads` planes of `tokens × head_dim` values (16-bit element bits, already
    /// pruned: zeros are what is left out).
    pub fn compress(dense: &[u16], dtype: Dtype, heads: usize, tokens: usize, head_dim: usize, order: TileOrder) -> Result<BitmapCache, FormatError> {
        if !tokens.is_multiple_of(TILE) {
            return Err(FormatError::NotMultiple { what: "tokens", got: tokens, multiple: TILE });
        }
        if !head_dim.is_multiple_of(TILE) {
            return Err(FormatError::NotMultiple { what: "head_dim", got: head_dim, multiple: TILE });
        }
        let plane = tokens * head_dim;
        if dense.len() != heads * plane {
            return Err(FormatError::Length { got: dense.len(), want: heads * plane, heads, tokens, head_dim });
        }
        let mut cache = BitmapCache {
            order,
            dtype,
            heads,
            tokens,
            head_dim,
            bitmaps: Vec::new(),
            offsets: Vec::new(),
            values: Vec::new(),
            head_base: Vec::new(),
        };
        for h in 0..heads {
            cache.head_base.push(to_i32(cache.values.len() / PAD)?);
            let start = cache.values.len();
            cache.offsets.push(0);
            for t in 0..plane / TILE {
                let mut bitmap = 0u64;
                for i in 0..TILE {
                    let v = dense[h * plane + Self::element(order, head_dim, t, i)];
                    if !is_zero(v) {
                        bitmap |= 1 << (63 - i);
                        cache.values.push(v);
                    }
                }
                cache.values.resize(cache.values.len().next_multiple_of(PAD), 0);
                cache.bitmaps.push(bitmap);
                cache.offsets.push(to_i32((cache.values.len() - start) / 2)?);
            }
        }
        Ok(cache)
    }

    /// The dense planes back (pruned values as +0).
    pub fn decompress(&self) -> Vec<u16> {
        let tiles = self.tiles_per_head();
        let plane = self.tokens * self.head_dim;
        let mut dense = vec![0u16; self.heads * plane];
        for h in 0..self.heads {
            for t in 0..tiles {
                let start = self.tile_start(h, t);
                let bitmap = self.bitmaps[h * tiles + t];
                let set = (0..TILE).filter(|i| bitmap & (1 << (63 - i)) != 0);
                for (i, &value) in set.zip(&self.values[start..]) {
                    dense[h * plane + Self::element(self.order, self.head_dim, t, i)] = value;
                }
            }
        }
        dense
    }

    /// Appends `chunk`'s tokens after this cache's, head by head, without recompressing: its
    /// tiles follow this cache's (tile indices are chunk-major), its offsets are rebased by the
    /// head's value count, and the heads' value buffers are re-concatenated.
    pub fn append(&mut self, chunk: &BitmapCache) -> Result<(), FormatError> {
        let shape = |c: &BitmapCache| format!("{:?} {} {} heads × d{}", c.order, c.dtype.name(), c.heads, c.head_dim);
        if (self.order, self.dtype, self.heads, self.head_dim) != (chunk.order, chunk.dtype, chunk.heads, chunk.head_dim) {
            return Err(FormatError::Mismatch { this: shape(self), other: shape(chunk) });
        }
        let (old, new) = (self.tiles_per_head(), chunk.tiles_per_head());
        let mut merged = BitmapCache { tokens: self.tokens + chunk.tokens, bitmaps: Vec::new(), offsets: Vec::new(), values: Vec::new(), head_base: Vec::new(), ..self.clone() };
        for h in 0..self.heads {
            merged.head_base.push(to_i32(merged.values.len() / PAD)?);
            merged.bitmaps.extend_from_slice(&self.bitmaps[h * old..(h + 1) * old]);
            merged.bitmaps.extend_from_slice(&chunk.bitmaps[h * new..(h + 1) * new]);
            let own = &self.offsets[h * (old + 1)..(h + 1) * (old + 1)];
            merged.offsets.extend_from_slice(own);
            let rebase = own[old];
            for &o in &chunk.offsets[h * (new + 1) + 1..(h + 1) * (new + 1)] {
                merged.offsets.push(rebase.checked_add(o).ok_or(FormatError::TooLarge(usize::MAX))?);
            }
            for c in [&*self, chunk] {
                let tiles = c.tiles_per_head();
                let start = c.head_base[h] as usize * PAD;
                let len = 2 * c.offsets[h * (tiles + 1) + tiles] as usize;
                merged.values.extend_from_slice(&c.values[start..start + len]);
            }
        }
        *self = merged;
        Ok(())
    }

    /// Bytes of the whole format: bitmaps, offsets, values (padding included) and head bases.
    pub fn bytes(&self) -> usize {
        8 * self.bitmaps.len() + 4 * self.offsets.len() + 2 * self.values.len() + 4 * self.head_base.len()
    }

    /// The planes `n` times over (e.g. one batch element's KV heads as a batch of `n`), without
    /// recompressing: the arrays repeat and the head bases move by one copy's values each time.
    pub fn repeat_planes(&self, n: usize) -> Result<BitmapCache, FormatError> {
        let units = self.values.len() / PAD;
        let head_base = (0..n)
            .flat_map(|r| self.head_base.iter().map(move |&b| b as usize + r * units))
            .map(to_i32)
            .collect::<Result<_, _>>()?;
        Ok(BitmapCache {
            order: self.order,
            dtype: self.dtype,
            heads: self.heads * n,
            tokens: self.tokens,
            head_dim: self.head_dim,
            bitmaps: self.bitmaps.repeat(n),
            offsets: self.offsets.repeat(n),
            values: self.values.repeat(n),
            head_base,
        })
    }

    /// Bytes of the same cache stored dense.
    pub fn dense_bytes(&self) -> usize {
        2 * self.heads * self.tokens * self.head_dim
    }
}

fn to_i32(n: usize) -> Result<i32, FormatError> {
    i32::try_from(n).map_err(|_| FormatError::TooLarge(n))
}

#[cfg(test)]
mod repeat_tests {
    use super::*;

    #[test]
    fn repeated_planes_decompress_to_the_repeated_planes() {
        let dense: Vec<u16> = (0..3 * 128 * 64).map(|i| if i % 3 == 0 { 0 } else { 0x3c00 + (i % 97) as u16 }).collect();
        for order in [TileOrder::Keys, TileOrder::Values] {
            let cache = BitmapCache::compress(&dense, Dtype::F16, 3, 128, 64, order).unwrap();
            let twice = cache.repeat_planes(2).unwrap();
            twice.validate().unwrap();
            assert_eq!(twice.decompress(), dense.repeat(2));
            assert_eq!(twice.bytes(), 2 * cache.bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{PruneRule, prune_token};
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn f16_bits(x: f32) -> u16 {
        half::f16::from_f32(x).to_bits()
    }

    /// Planes of random f16 values, each token pruned at `sparsity` by `rule`, as bits.
    fn pruned(rng: &mut StdRng, heads: usize, tokens: usize, d: usize, sparsity: f64, rule: PruneRule) -> Vec<u16> {
        let mut out = Vec::with_capacity(heads * tokens * d);
        for _ in 0..heads * tokens {
            let x: Vec<f32> = (0..d).map(|_| half::f16::from_f32(rng.random_range(-2.0f32..2.0)).to_f32()).collect();
            out.extend(prune_token(&x, sparsity, rule).into_iter().map(f16_bits));
        }
        out
    }

    #[test]
    fn golden_bit_order_padding_and_offsets() {
        // One head, 64 tokens × 64 channels, three nonzeros.
        let mut dense = vec![0u16; 64 * 64];
        dense[0] = f16_bits(1.0); // token 0, channel 0
        dense[5 * 64] = f16_bits(2.0); // token 5, channel 0
        dense[64 + 3] = f16_bits(-3.0); // token 1, channel 3
        let k = BitmapCache::compress(&dense, Dtype::F16, 1, 64, 64, TileOrder::Keys).unwrap();
        // K tile d holds channel d over tokens 0..64: element 0 is bit 63.
        assert_eq!(k.bitmaps[0], (1 << 63) | (1 << 58));
        assert_eq!(k.bitmaps[3], 1 << 62);
        assert_eq!(k.offsets[..5], [0, 4, 4, 4, 8]);
        assert_eq!(k.values[..9], [f16_bits(1.0), f16_bits(2.0), 0, 0, 0, 0, 0, 0, f16_bits(-3.0)]);
        let v = BitmapCache::compress(&dense, Dtype::F16, 1, 64, 64, TileOrder::Values).unwrap();
        // V tile r holds token r over channels 0..64.
        assert_eq!(v.bitmaps[0], 1 << 63);
        assert_eq!(v.bitmaps[1], 1 << 60);
        assert_eq!(v.bitmaps[5], 1 << 63);
        assert_eq!((v.values.len(), k.values.len()), (24, 16));
        assert_eq!(v.head_base, vec![0]);
    }

    #[test]
    fn seventy_percent_is_under_47_percent_of_dense() {
        let mut rng = StdRng::seed_from_u64(1);
        let (heads, tokens, d) = (2, 256, 128);
        for order in [TileOrder::Keys, TileOrder::Values] {
            let dense = pruned(&mut rng, heads, tokens, d, 0.7, PruneRule::KthSmallest);
            let c = BitmapCache::compress(&dense, Dtype::F16, heads, tokens, d, order).unwrap();
            let ratio = c.bytes() as f64 / c.dense_bytes() as f64;
            assert!(ratio <= 0.47, "{order:?}: {ratio}");
        }
    }

    #[test]
    fn reads_outside_the_cache_are_none_and_broken_arrays_are_caught() {
        let z = vec![0u16; 64 * 64];
        let mut c = BitmapCache::compress(&z, Dtype::F16, 1, 64, 64, TileOrder::Keys).unwrap();
        assert_eq!((c.value_index(1, 0, 0), c.value_index(0, 64, 0), c.value_index(0, 0, 64)), (None, None, None));
        assert_eq!(BitmapCache::locate(TileOrder::Keys, 64, 0, 64), None);
        assert!(c.validate().is_ok());
        c.offsets.pop();
        assert!(c.validate().is_err());
    }

    /// Offsets that leave a tile less room than its bitmap's count, or tiles that do not start
    /// on 16 bytes (pair padding), are caught: the kernel would read past the values or fault on
    /// a misaligned vector load (both found in review, where `validate` let them through).
    #[test]
    fn offsets_that_disagree_with_the_bitmaps_are_caught() {
        let dense: Vec<u16> = (0..64 * 64).map(|i| if i % 3 == 0 { 0x3c00 } else { 0 }).collect();
        let good = BitmapCache::compress(&dense, Dtype::F16, 1, 64, 64, TileOrder::Keys).unwrap();
        assert!(good.validate().is_ok());
        let mut zeroed = good.clone();
        zeroed.offsets.iter_mut().for_each(|o| *o = 0);
        assert!(zeroed.validate().is_err());
        let mut pairs = good.clone();
        let mut at = 0;
        for (t, o) in pairs.offsets.iter_mut().enumerate().skip(1) {
            at += (good.bitmaps[t - 1].count_ones() as i32 + 1) / 2;
            *o = at;
        }
        assert!(pairs.validate().is_err());
    }

    #[test]
    fn bad_shapes_are_errors() {
        let z = vec![0u16; 64 * 64];
        assert!(matches!(BitmapCache::compress(&z, Dtype::F16, 1, 32, 128, TileOrder::Keys), Err(FormatError::NotMultiple { .. })));
        assert!(matches!(BitmapCache::compress(&z, Dtype::F16, 2, 64, 64, TileOrder::Keys), Err(FormatError::Length { .. })));
        let mut k = BitmapCache::compress(&z, Dtype::F16, 1, 64, 64, TileOrder::Keys).unwrap();
        let v = BitmapCache::compress(&z, Dtype::F16, 1, 64, 64, TileOrder::Values).unwrap();
        assert!(matches!(k.append(&v), Err(FormatError::Mismatch { .. })));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// decompress ∘ compress is the pruned cache bit for bit (with -0 read back as +0);
        /// every tile's run is padded to 8 values; head bases follow the heads' totals.
        #[test]
        fn round_trip_and_layout(seed: u64, heads in 1usize..4, chunks in 1usize..3, wide: bool, keys: bool, s in 0.0f64..0.95) {
            let d = if wide { 128 } else { 64 };
            let tokens = 64 * chunks;
            let order = if keys { TileOrder::Keys } else { TileOrder::Values };
            let dense = pruned(&mut StdRng::seed_from_u64(seed), heads, tokens, d, s, PruneRule::TopK);
            let c = BitmapCache::compress(&dense, Dtype::F16, heads, tokens, d, order).unwrap();
            let expected: Vec<u16> = dense.iter().map(|&b| if is_zero(b) { 0 } else { b }).collect();
            prop_assert_eq!(c.decompress(), expected);
            let tiles = tokens * d / TILE;
            for h in 0..heads {
                let offs = &c.offsets[h * (tiles + 1)..(h + 1) * (tiles + 1)];
                prop_assert_eq!(offs[0], 0);
                for t in 0..tiles {
                    let words = (offs[t + 1] - offs[t]) as usize;
                    prop_assert_eq!(words % (PAD / 2), 0);
                    prop_assert_eq!(words * 2, (c.bitmaps[h * tiles + t].count_ones() as usize).next_multiple_of(PAD));
                }
                if h + 1 < heads {
                    prop_assert_eq!(c.head_base[h + 1] - c.head_base[h], offs[tiles] / 4);
                }
            }
        }

        /// Reading element by element through `locate` and `value_index`, as a kernel does,
        /// gives the decompressed cache.
        #[test]
        fn element_reads_match_decompress(seed: u64, heads in 1usize..3, keys: bool, wide: bool) {
            let (d, order) = (if wide { 128 } else { 64 }, if keys { TileOrder::Keys } else { TileOrder::Values });
            let dense = pruned(&mut StdRng::seed_from_u64(seed), heads, 128, d, 0.7, PruneRule::KthSmallest);
            let c = BitmapCache::compress(&dense, Dtype::F16, heads, 128, d, order).unwrap();
            let full = c.decompress();
            for h in 0..heads {
                for token in 0..128 {
                    for channel in 0..d {
                        let (t, i) = BitmapCache::locate(order, d, token, channel).unwrap();
                        prop_assert_eq!(BitmapCache::element(order, d, t, i), token * d + channel);
                        let got = c.value_index(h, t, i).map_or(0, |at| c.values[at]);
                        prop_assert_eq!(got, full[(h * 128 + token) * d + channel]);
                    }
                }
            }
        }

        /// Appending a compressed chunk equals compressing the concatenated tokens.
        #[test]
        fn append_equals_compressing_the_whole(seed: u64, heads in 1usize..3, keys: bool, first in 1usize..3, second in 1usize..3) {
            let (d, order) = (64, if keys { TileOrder::Keys } else { TileOrder::Values });
            let mut rng = StdRng::seed_from_u64(seed);
            let a = pruned(&mut rng, heads, 64 * first, d, 0.6, PruneRule::KthSmallest);
            let b = pruned(&mut rng, heads, 64 * second, d, 0.6, PruneRule::KthSmallest);
            let mut whole = Vec::new();
            for h in 0..heads {
                whole.extend_from_slice(&a[h * 64 * first * d..(h + 1) * 64 * first * d]);
                whole.extend_from_slice(&b[h * 64 * second * d..(h + 1) * 64 * second * d]);
            }
            let mut c = BitmapCache::compress(&a, Dtype::F16, heads, 64 * first, d, order).unwrap();
            c.append(&BitmapCache::compress(&b, Dtype::F16, heads, 64 * second, d, order).unwrap()).unwrap();
            prop_assert_eq!(c, BitmapCache::compress(&whole, Dtype::F16, heads, 64 * (first + second), d, order).unwrap());
        }
    }
}
