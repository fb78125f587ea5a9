//! A Mustafar K/V cache as the decode loop keeps it (seeds.md §1.1): a compressed region of
//! pruned, bitmap-compressed chunks, then a dense window of the most recent tokens. Tokens enter
//! the dense window; whenever it holds `residual + chunk` tokens, its oldest `chunk` tokens are
//! pruned, compressed and appended to the compressed region, whose older chunks are never
//! recompressed. A prefill is the same as pushing its tokens one by one.

use tessera_desc::Dtype;

use super::bitmap::{BitmapCache, FormatError, TileOrder};
use super::prune::{PruneRule, prune_token};
use super::{from_f32, to_f32};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CachePolicy {
    pub k_sparsity: f64,
    pub v_sparsity: f64,
    pub rule: PruneRule,
    /// Tokens that always stay dense (the authors use 32).
    pub residual: usize,
    /// Tokens compressed at a time, a multiple of 64 (the authors' kernel path uses 256).
    pub chunk: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MustafarCache {
    pub policy: CachePolicy,
    pub k: BitmapCache,
    pub v: BitmapCache,
    /// The dense window, `[heads, local_len, head_dim]` element bits.
    pub local_k: Vec<u16>,
    pub local_v: Vec<u16>,
    pub local_len: usize,
}

impl MustafarCache {
    pub fn new(dtype: Dtype, heads: usize, head_dim: usize, policy: CachePolicy) -> Result<MustafarCache, FormatError> {
        if policy.chunk == 0 || !policy.chunk.is_multiple_of(super::bitmap::TILE) {
            return Err(FormatError::NotMultiple { what: "chunk", got: policy.chunk, multiple: super::bitmap::TILE });
        }
        let empty = |order| BitmapCache::compress(&[], dtype, heads, 0, head_dim, order);
        Ok(MustafarCache {
            policy,
            k: empty(TileOrder::Keys)?,
            v: empty(TileOrder::Values)?,
            local_k: Vec::new(),
            local_v: Vec::new(),
            local_len: 0,
        })
    }

    fn heads(&self) -> usize {
        self.k.heads
    }

    fn head_dim(&self) -> usize {
        self.k.head_dim
    }

    /// Appends `tokens` new tokens per head (`k`, `v`: `[heads, tokens, head_dim]` bits), then
    /// compresses full chunks out of the dense window.
    pub fn push(&mut self, k: &[u16], v: &[u16], tokens: usize) -> Result<(), FormatError> {
        let (heads, d) = (self.heads(), self.head_dim());
        for x in [k, v] {
            if x.len() != heads * tokens * d {
                return Err(FormatError::Length { got: x.len(), want: heads * tokens * d, heads, tokens, head_dim: d });
            }
        }
        self.local_k = concat_tokens(&self.local_k, self.local_len, k, tokens, heads, d);
        self.local_v = concat_tokens(&self.local_v, self.local_len, v, tokens, heads, d);
        self.local_len += tokens;
        // Every full chunk beyond the residual at once: the same bytes as compressing them one
        // by one (tiles are chunk-major, tokens pruned independently), in one append rather
        // than one per chunk, so a long prefill costs linear time.
        let (residual, chunk) = (self.policy.residual, self.policy.chunk);
        if self.local_len >= residual + chunk {
            self.compress_oldest((self.local_len - residual) / chunk * chunk)?;
        }
        Ok(())
    }

    fn compress_oldest(&mut self, chunk: usize) -> Result<(), FormatError> {
        let (heads, d) = (self.heads(), self.head_dim());
        let p = self.policy;
        let (old_k, rest_k) = split_tokens(&self.local_k, self.local_len, chunk, heads, d);
        let (old_v, rest_v) = split_tokens(&self.local_v, self.local_len, chunk, heads, d);
        let dtype = self.k.dtype;
        let pruned_k = prune_bits(&old_k, dtype, d, p.k_sparsity, p.rule);
        let pruned_v = prune_bits(&old_v, dtype, d, p.v_sparsity, p.rule);
        self.k.append(&BitmapCache::compress(&pruned_k, dtype, heads, chunk, d, TileOrder::Keys)?)?;
        self.v.append(&BitmapCache::compress(&pruned_v, dtype, heads, chunk, d, TileOrder::Values)?)?;
        (self.local_k, self.local_v) = (rest_k, rest_v);
        self.local_len -= chunk;
        Ok(())
    }

    /// Every token as the attention sees it, `[heads, tokens, head_dim]` bits: the compressed
    /// region decompressed (pruned values as +0), then the dense window.
    pub fn dense_view(&self) -> (Vec<u16>, Vec<u16>) {
        let (heads, d, tc) = (self.heads(), self.head_dim(), self.k.tokens);
        let view = |c: &BitmapCache, l: &[u16]| concat_tokens(&c.decompress(), tc, l, self.local_len, heads, d);
        (view(&self.k, &self.local_k), view(&self.v, &self.local_v))
    }

    /// The planes `n` times over (see `BitmapCache::repeat_planes`), the dense window too.
    pub fn repeat_planes(&self, n: usize) -> Result<MustafarCache, FormatError> {
        Ok(MustafarCache {
            policy: self.policy,
            k: self.k.repeat_planes(n)?,
            v: self.v.repeat_planes(n)?,
            local_k: self.local_k.repeat(n),
            local_v: self.local_v.repeat(n),
            local_len: self.local_len,
        })
    }

    /// Bytes held: both compressed regions (format overhead included) and the dense window.
    pub fn bytes(&self) -> usize {
        self.k.bytes() + self.v.bytes() + 2 * (self.local_k.len() + self.local_v.len())
    }
}

/// Per head, `a`'s `na` tokens followed by `b`'s `nb` (both `[heads, tokens, d]`).
pub(crate) fn concat_tokens<T: Copy>(a: &[T], na: usize, b: &[T], nb: usize, heads: usize, d: usize) -> Vec<T> {
    (0..heads)
        .flat_map(|h| a[h * na * d..(h + 1) * na * d].iter().chain(&b[h * nb * d..(h + 1) * nb * d]).copied())
        .collect()
}

/// Per head, the first `n` of `len` tokens, and the rest.
fn split_tokens(x: &[u16], len: usize, n: usize, heads: usize, d: usize) -> (Vec<u16>, Vec<u16>) {
    let mut first = Vec::with_capacity(heads * n * d);
    let mut rest = Vec::with_capacity(heads * (len - n) * d);
    for h in 0..heads {
        let plane = &x[h * len * d..(h + 1) * len * d];
        first.extend_from_slice(&plane[..n * d]);
        rest.extend_from_slice(&plane[n * d..]);
    }
    (first, rest)
}

/// Each token of `x` (element bits) pruned; exact, since pruning only zeroes values.
pub fn prune_bits(x: &[u16], dtype: Dtype, head_dim: usize, sparsity: f64, rule: PruneRule) -> Vec<u16> {
    x.chunks(head_dim)
        .flat_map(|t| {
            let values: Vec<f32> = t.iter().map(|&b| to_f32(dtype, b)).collect();
            let kept = prune_token(&values, sparsity, rule);
            t.iter().zip(kept).map(|(&b, v)| if v == 0.0 { from_f32(dtype, 0.0) } else { b }).collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const POLICY: CachePolicy = CachePolicy { k_sparsity: 0.5, v_sparsity: 0.7, rule: PruneRule::KthSmallest, residual: 32, chunk: 128 };

    fn tokens(rng: &mut StdRng, heads: usize, n: usize, d: usize) -> Vec<u16> {
        (0..heads * n * d).map(|_| half::f16::from_f32(rng.random_range(-2.0f32..2.0)).to_bits()).collect()
    }

    /// Issue 6's first bar is a property of the format: at sparsity 0.7 the cache (bitmaps,
    /// offsets, head bases, padded values and the dense window) is at most 47% of the dense
    /// cache. 32K tokens of one KV head at D = 128, the authors' rule, residual and chunk.
    #[test]
    fn the_cache_at_the_issue_sparsities_is_under_its_byte_bars() {
        let d = 128;
        let mut rng = StdRng::seed_from_u64(3);
        // The authors' chunks of 256 leave up to 287 tokens dense: 3.5% of an 8K context, which
        // takes the cache to 47.9% there; chunks of 64 keep it under the bar from 8K on.
        for (n, chunk) in [(32768, 256), (8192, 64)] {
            let (k, v) = (tokens(&mut rng, 1, n, d), tokens(&mut rng, 1, n, d));
            for (sparsity, bar) in [(0.7, 0.47), (0.5, 0.70)] {
                let policy = CachePolicy { k_sparsity: sparsity, v_sparsity: sparsity, residual: 32, chunk, ..POLICY };
                let mut cache = MustafarCache::new(Dtype::F16, 1, d, policy).unwrap();
                cache.push(&k, &v, n).unwrap();
                let ratio = cache.bytes() as f64 / (2 * 2 * n * d) as f64;
                assert!(ratio <= bar, "{n} tokens, chunks of {chunk}, sparsity {sparsity}: {:.2}% of dense", 100.0 * ratio);
            }
        }
    }

    #[test]
    fn prefill_equals_token_by_token_decode() {
        let (heads, d, n) = (2, 64, 420);
        let mut rng = StdRng::seed_from_u64(7);
        let (k, v) = (tokens(&mut rng, heads, n, d), tokens(&mut rng, heads, n, d));
        let mut prefill = MustafarCache::new(Dtype::F16, heads, d, POLICY).unwrap();
        prefill.push(&k, &v, n).unwrap();
        let mut decode = MustafarCache::new(Dtype::F16, heads, d, POLICY).unwrap();
        for t in 0..n {
            let token = |x: &[u16]| (0..heads).flat_map(|h| x[(h * n + t) * d..(h * n + t + 1) * d].to_vec()).collect::<Vec<_>>();
            decode.push(&token(&k), &token(&v), 1).unwrap();
            // The dense window never holds a full chunk beyond the residual.
            assert!(decode.local_len < POLICY.residual + POLICY.chunk);
        }
        assert_eq!(prefill, decode);
        // ((420 - 32) / 128) * 128 = 384 tokens compressed, as the authors' prefill computes.
        assert_eq!((prefill.k.tokens, prefill.local_len), (384, 36));
    }

    #[test]
    fn the_view_is_the_pruned_prefix_then_the_dense_window() {
        let (heads, d, n) = (3, 128, 300);
        let mut rng = StdRng::seed_from_u64(9);
        let (k, v) = (tokens(&mut rng, heads, n, d), tokens(&mut rng, heads, n, d));
        let mut cache = MustafarCache::new(Dtype::F16, heads, d, POLICY).unwrap();
        cache.push(&k, &v, n).unwrap();
        let tc = cache.k.tokens;
        let expect = |x: &[u16], s| {
            let (old, rest) = split_tokens(x, n, tc, heads, d);
            concat_tokens(&prune_bits(&old, Dtype::F16, d, s, POLICY.rule), tc, &rest, n - tc, heads, d)
        };
        let (vk, vv) = cache.dense_view();
        assert_eq!(vk, expect(&k, POLICY.k_sparsity));
        assert_eq!(vv, expect(&v, POLICY.v_sparsity));
        assert!(cache.bytes() < 2 * 2 * heads * n * d);
    }

    #[test]
    fn bad_policies_and_lengths_are_errors() {
        let bad = CachePolicy { chunk: 100, ..POLICY };
        assert!(MustafarCache::new(Dtype::F16, 1, 64, bad).is_err());
        let mut c = MustafarCache::new(Dtype::F16, 1, 64, POLICY).unwrap();
        assert!(c.push(&[0; 64], &[0; 63], 1).is_err());
    }
}
