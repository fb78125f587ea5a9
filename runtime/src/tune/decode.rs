//! What tuning a Mustafar decode kernel adds: its KV cache. The tuner prunes and compresses
//! K and V on the host as the decode loop would, with one policy, and the float64 reference
//! prunes the same tokens the same way.

use tessera_codegen::format::{CachePolicy, MustafarCache, PruneRule, from_f32};
use tessera_codegen::ir::decode::query_rows;
use tessera_codegen::reference::{self, DecodeShape, Pruning};
use tessera_desc::{Config, KernelDesc, Load};

use super::problem::Problem;
use crate::gpu::bench::uniform;

/// The cache policy of the tuner's caches and `tessera run/bench mustafar`'s defaults: the
/// authors' (70% of each compressed token pruned, the k-th smallest magnitude kept, 32 recent
/// tokens dense, 256-token chunks). The decode's time depends on the sparsities through the
/// bytes it reads, but its schedule's trade-offs (query rows per warp, pipeline depth) do not
/// follow them closely, and a cache on the device does not know its policy: the key leaves
/// them out, and a winner tuned at this policy serves caches of any.
pub const POLICY: CachePolicy = CachePolicy {
    k_sparsity: 0.7,
    v_sparsity: 0.7,
    rule: PruneRule::KthSmallest,
    residual: 32,
    chunk: 256,
};

/// Whether `desc` is a decode kernel (it reads a bitmap-compressed cache).
pub fn is_decode(desc: &KernelDesc) -> bool {
    matches!(desc.load, Load::Bitmap(_))
}

/// Whether `config` of `desc` can run `problem`: a decode config's query rows must hold the
/// problem's GQA group (`ir::decode::query_rows`); other kernels' configs all can.
pub fn holds_group(desc: &KernelDesc, config: &Config, problem: &Problem) -> bool {
    !is_decode(desc) || problem.group() <= query_rows(config) as usize
}

/// `problem`'s cache of the tokens `k`, `v` (`[batch, kv_heads, seq_kv, head_dim]` values,
/// rounded to the kernel's dtype on the way in).
pub fn cache(desc: &KernelDesc, problem: &Problem, k: &[f32], v: &[f32]) -> Result<MustafarCache, String> {
    let bits = |x: &[f32]| x.iter().map(|&x| from_f32(desc.dtype, x)).collect::<Vec<_>>();
    let planes = problem.batch * problem.kv_heads;
    let mut cache = MustafarCache::new(desc.dtype, planes, desc.head_dim as usize, POLICY).map_err(|e| format!("Mustafar cache: {e}"))?;
    cache.push(&bits(k), &bits(v), problem.seq_kv).map_err(|e| format!("Mustafar cache: {e}"))?;
    Ok(cache)
}

/// The cache a timing runs on: one batch element's random tokens, repeated over the batch, as
/// `tessera bench mustafar` makes it (the kernel's work does not depend on the values, and
/// host compression of a batch of long contexts would take minutes).
pub fn timing_cache(desc: &KernelDesc, problem: &Problem) -> Result<MustafarCache, String> {
    let one = Problem { batch: 1, ..*problem };
    let n = one.kv_dims(desc.head_dim as usize).iter().product();
    cache(desc, &one, &uniform(n, 12), &uniform(n, 13))?
        .repeat_planes(problem.batch)
        .map_err(|e| format!("Mustafar cache: {e}"))
}

/// The float64 reference of a decode step over `cache`, made of the tokens `k`, `v`.
pub fn expected(
    desc: &KernelDesc,
    problem: &Problem,
    cache: &MustafarCache,
    (q, k, v): (&[f64], &[f64], &[f64]),
) -> Result<reference::Output, String> {
    let head_dim = desc.head_dim as usize;
    let shape = DecodeShape {
        batch: problem.batch,
        heads: problem.heads,
        kv_heads: problem.kv_heads,
        compressed: cache.k.tokens,
        local: cache.local_len,
        head_dim,
    };
    let scale = 1.0 / (head_dim as f64).sqrt();
    reference::mustafar_decode_tokens(&shape, Pruning::from(&POLICY), scale, q, k, v)
}
