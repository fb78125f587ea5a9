//! `tessera run mustafar` and `tessera bench mustafar`: Mustafar decode over a KV cache pruned and
//! bitmap-compressed on the host (`format::MustafarCache`, the policy from [`CacheArgs`]), on
//! the catalog's `mustafar_{bf16,f16}_d128` kernels: at `--config`, else at the tuning store's
//! winner for the problem (`tessera autotune mustafar_*`), else at the default config.

use std::io::Write;
use std::path::Path;

use tessera_codegen::format::{CachePolicy, MustafarCache, PruneRule, TileOrder, from_f32};
use tessera_desc::{Config, Dtype, KernelDesc};

use super::table::Table;
use super::{config_of, find_kernel};
use crate::Error;
use crate::gpu::bench::{default_reps, json_number, json_string, time, uniform};
use crate::gpu::{Compressor, DecodeArgs, DeviceMustafarCache, DeviceTensor, Gpu, GpuError, MustafarDecode};
use crate::io::{self, FileDtype, HostTensor, TensorFile};
use crate::tune::{DECODE_POLICY, Policy, Problem};

/// How the cache is pruned and compressed (the authors' defaults, the tuner's policy), and the
/// decode's splits.
#[derive(Debug, clap::Args)]
pub struct CacheArgs {
    /// Fraction of each compressed K token's elements pruned (`mustafar` only).
    #[arg(long, default_value_t = DECODE_POLICY.k_sparsity, value_parser = sparsity)]
    k_sparsity: f64,
    /// Fraction of each compressed V token's elements pruned (`mustafar` only).
    #[arg(long, default_value_t = DECODE_POLICY.v_sparsity, value_parser = sparsity)]
    v_sparsity: f64,
    /// Pruning rule (`mustafar` only): `kth` keeps |x| >= the k-th smallest |x| (the authors'
    /// code, one more element than `topk` without ties), `topk` exactly ceil((1-s)·D).
    #[arg(long, default_value = "kth", value_parser = parse_rule)]
    prune: PruneRule,
    /// Most recent tokens always kept dense (`mustafar` only).
    #[arg(long, default_value_t = DECODE_POLICY.residual)]
    residual: usize,
    /// Tokens compressed at a time, a multiple of 64 (`mustafar` only).
    #[arg(long, default_value_t = DECODE_POLICY.chunk)]
    chunk: usize,
    /// CTAs each (batch, KV head)'s context is split over (`mustafar` only) [default: the
    /// GPU's resident CTAs of the kernel, spread over the (batch, KV head) planes].
    #[arg(long, value_parser = positive)]
    splits: Option<usize>,
}

fn sparsity(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..1.0).contains(&x) => Ok(x),
        Ok(x) => Err(format!("a sparsity is at least 0 and below 1, got {x}")),
        Err(e) => Err(format!("`{s}` is not a number: {e}")),
    }
}

fn parse_rule(s: &str) -> Result<PruneRule, String> {
    match s {
        "kth" => Ok(PruneRule::KthSmallest),
        "topk" => Ok(PruneRule::TopK),
        _ => Err(format!("unknown pruning rule `{s}` (kth or topk)")),
    }
}

fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("`{s}` is not a count: {e}")),
    }
}

impl CacheArgs {
    fn policy(&self) -> CachePolicy {
        CachePolicy {
            k_sparsity: self.k_sparsity,
            v_sparsity: self.v_sparsity,
            rule: self.prune,
            residual: self.residual,
            chunk: self.chunk,
        }
    }

    /// Checks the policy before a GPU is opened.
    fn check(&self, dtype: Dtype, head_dim: usize) -> Result<(), Error> {
        MustafarCache::new(dtype, 1, head_dim, self.policy())
            .map(|_| ())
            .map_err(|e| Error::Problem(format!("Mustafar cache: {e}")))
    }

    /// The cache of `planes` planes of `tokens` tokens (`k`, `v`: element bits, plane-major).
    fn build(
        &self,
        dtype: Dtype,
        planes: usize,
        head_dim: usize,
        k: &[u16],
        v: &[u16],
        tokens: usize,
    ) -> Result<MustafarCache, Error> {
        let problem = |e: tessera_codegen::format::bitmap::FormatError| {
            Error::Problem(format!("Mustafar cache: {e}"))
        };
        let mut cache =
            MustafarCache::new(dtype, planes, head_dim, self.policy()).map_err(problem)?;
        cache.push(k, v, tokens).map_err(problem)?;
        Ok(cache)
    }

    fn metadata(&self) -> Vec<(&'static str, String)> {
        let rule = match self.prune {
            PruneRule::KthSmallest => "kth",
            PruneRule::TopK => "topk",
        };
        vec![
            ("k_sparsity", self.k_sparsity.to_string()),
            ("v_sparsity", self.v_sparsity.to_string()),
            ("prune", rule.to_string()),
            ("residual", self.residual.to_string()),
            ("chunk", self.chunk.to_string()),
        ]
    }
}

/// The catalog's decode kernel for `dtype`.
fn kernel(dtype: Dtype) -> Result<&'static KernelDesc, Error> {
    find_kernel(&format!("mustafar_{}_d128", dtype.name()))
}

/// The decode kernel at the `config` overrides, else as `MustafarDecode::for_problem` chooses
/// for `problem` (the store's winner, else the default config; `TESSERA_AUTOTUNE=1` tunes a
/// key the store lacks).
fn load(gpu: &Gpu, desc: &KernelDesc, config: Option<&str>, problem: &Problem) -> Result<MustafarDecode, Error> {
    Ok(match config {
        Some(_) => MustafarDecode::load(gpu, desc, &config_of(desc, config)?)?,
        None => MustafarDecode::for_problem(gpu, desc, problem, Policy::FromEnv)?,
    })
}

/// `tessera run mustafar`: `q` `[batch, heads, 1, 128]` and the cache's tokens `k`, `v`
/// `[batch, kv_heads, tokens, 128]` (before pruning) from `inputs`; `o` (and `lse`) to `output`.
pub fn run(
    inputs: &Path,
    output: &Path,
    config: Option<&str>,
    want_lse: bool,
    scale: Option<f32>,
    cache_args: &CacheArgs,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let file = TensorFile::open(inputs)?;
    let (q, k, v) = (file.tensor("q")?, file.tensor("k")?, file.tensor("v")?);
    let dtype = match q.dtype {
        FileDtype::BF16 => Dtype::Bf16,
        FileDtype::F16 => Dtype::F16,
        other => {
            return Err(Error::Tensor {
                tensor: "q",
                what: "dtype",
                expected: "BF16 or F16".into(),
                got: format!("{other:?}"),
            });
        }
    };
    let desc = kernel(dtype)?;
    let dims = io::check_inputs(desc, &q, &k, &v)?;
    if dims.seq_q != 1 {
        return Err(Error::Tensor {
            tensor: "q",
            what: "tokens (one query token per head)",
            expected: "1".into(),
            got: dims.seq_q.to_string(),
        });
    }
    // Checked before the cache is built and the GPU opened.
    config_of(desc, config)?;
    let d = dims.head_dim;
    let cache = cache_args.build(
        dtype,
        dims.batch * dims.kv_heads,
        d,
        &k.bits(),
        &v.bits(),
        dims.seq_kv,
    )?;

    let gpu = Gpu::open(0)?;
    let problem = Problem::decode(dims.batch, dims.heads, dims.kv_heads, dims.seq_kv);
    let mut decode = load(&gpu, desc, config, &problem)?;
    let cfg = decode.config;
    let dev_cache = DeviceMustafarCache::upload(&gpu, &cache, dims.batch, dims.kv_heads)?;
    let shape = [dims.batch, dims.heads, 1, d];
    let qd = DeviceTensor::from_bits(&gpu, dtype, shape, &q.bits())?;
    // NaN-filled, so that anything the kernel fails to write shows in the file.
    let mut od = DeviceTensor::poisoned(&gpu, dtype, shape)?;
    let rows = dims.batch * dims.heads;
    let mut lse = if want_lse {
        Some(
            gpu.stream
                .clone_htod(&vec![f32::NAN; rows])
                .map_err(crate::gpu::GpuError::from)?,
        )
    } else {
        None
    };
    decode.run(
        &gpu,
        DecodeArgs {
            q: &qd,
            cache: &dev_cache,
            o: &mut od,
            lse: lse.as_mut(),
            scale,
            splits: cache_args.splits,
        },
    )?;
    gpu.stream
        .synchronize()
        .map_err(crate::gpu::GpuError::from)?;

    let o = HostTensor::from_bits(
        q.dtype,
        shape.to_vec(),
        &gpu.stream
            .clone_dtoh(&od.data)
            .map_err(crate::gpu::GpuError::from)?,
    );
    let lse = match &lse {
        Some(l) => Some(HostTensor::from_f32(
            vec![dims.batch, dims.heads, 1],
            &gpu.stream
                .clone_dtoh(l)
                .map_err(crate::gpu::GpuError::from)?,
        )),
        None => None,
    };
    let mut tensors = vec![("o", &o)];
    if let Some(lse) = &lse {
        tensors.push(("lse", lse));
    }
    let mut metadata = vec![
        ("kernel", desc.name.to_string()),
        ("config", cfg.to_string()),
    ];
    metadata.extend(cache_args.metadata());
    if let Some(scale) = scale {
        metadata.push(("scale", scale.to_string()));
    }
    io::write_tensors(output, &tensors, &metadata)?;
    writeln!(
        out,
        "{} ({cfg}) on {}: {} compressed + {} dense tokens per KV head, cache {} of {} bytes dense; wrote {} to {}",
        desc.name,
        gpu.name,
        cache.k.tokens,
        cache.local_len,
        cache.bytes(),
        2 * 2 * dims.batch * dims.kv_heads * dims.seq_kv * d,
        tensors.iter().map(|(name, t)| format!("{name} {} {:?}", t.dtype, t.shape)).collect::<Vec<_>>().join(" and "),
        output.display()
    )
    .map_err(Error::Stdout)
}

/// What `tessera bench mustafar` times.
pub struct BenchPlan<'a> {
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub contexts: &'a [usize],
    pub dtype: Dtype,
    pub config: Option<&'a str>,
    pub warmup: usize,
    pub reps: Option<usize>,
    pub json: bool,
}

/// Times one decode step (decode and merge launches) per context length over a random cache:
/// bytes of the cache (compressed with the format's overhead, and the dense window) against the
/// same cache dense, the median time, and the rate the cache's bytes are read at.
pub fn bench(
    plan: &BenchPlan<'_>,
    cache_args: &CacheArgs,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let desc = kernel(plan.dtype)?;
    config_of(desc, plan.config)?;
    super::check_heads(plan.heads, plan.kv_heads)?;
    cache_args.check(plan.dtype, desc.head_dim as usize)?;
    let gpu = Gpu::open(0)?;
    let d = desc.head_dim as usize;
    let planes = plan.batch * plan.kv_heads;
    if plan.json {
        writeln!(out, "{{\"device\": {}}}", json_string(&gpu.name)).map_err(Error::Stdout)?;
    } else {
        writeln!(
            out,
            "{}: {} batch {}, heads {}/{} kv, k/v sparsity {}/{}; median ms, L2 flushed; TB/s = cache bytes read / time; compress = K and V pruned + compressed into reused workspaces (kernels only), fresh = with allocation and read-back, in GB/s of dense input; copy = GB/s read + written",
            gpu.name, desc.name, plan.batch, plan.heads, plan.kv_heads, cache_args.k_sparsity, cache_args.v_sparsity
        )
        .map_err(Error::Stdout)?;
    }
    let mut table = Table::new(vec![
        "context",
        "config",
        "splits",
        "cache MiB",
        "dense MiB",
        "cache/dense",
        "ms",
        "TB/s",
        "compress GB/s",
        "fresh GB/s",
        "copy GB/s",
    ]);
    // GPU pruning + compression of the compressed region, the authors' rule only.
    let compressor = (cache_args.prune == PruneRule::KthSmallest).then(|| Compressor::load(&gpu, d)).transpose()?;
    for (i, &context) in plan.contexts.iter().enumerate() {
        let random = |seed: u64, n: usize| -> Vec<u16> { uniform(n, seed).into_iter().map(|x| from_f32(plan.dtype, 2.0 * x)).collect() };
        // One batch element's cache, pruned and compressed on the host, repeated over the batch:
        // the kernel's work does not depend on which random values it reads, and host
        // compression of a batch of long contexts would take minutes.
        let n = plan.kv_heads * context * d;
        let (k, v) = (random(2 * i as u64 + 1, n), random(2 * i as u64 + 2, n));
        let one = cache_args.build(plan.dtype, plan.kv_heads, d, &k, &v, context)?;
        let cache = one
            .repeat_planes(plan.batch)
            .map_err(|e| Error::Problem(format!("Mustafar cache: {e}")))?;
        let dev_cache = DeviceMustafarCache::upload(&gpu, &cache, plan.batch, plan.kv_heads)?;
        // Per context: the store's winner depends on the context's bucket.
        let problem = Problem::decode(plan.batch, plan.heads, plan.kv_heads, context);
        let mut decode = load(&gpu, desc, plan.config, &problem)?;
        let cfg: Config = decode.config;
        let shape = [plan.batch, plan.heads, 1, d];
        let q = DeviceTensor::from_bits(
            &gpu,
            plan.dtype,
            shape,
            &random(99, plan.batch * plan.heads * d),
        )?;
        let mut o = DeviceTensor::poisoned(&gpu, plan.dtype, shape)?;
        let splits = cache_args
            .splits
            .unwrap_or_else(|| decode.default_splits(plan.batch, plan.kv_heads, cache.k.tokens));
        let reps = plan.reps.unwrap_or(default_reps(context));
        let timing = time(&gpu, plan.warmup, reps, || {
            decode.run(
                &gpu,
                DecodeArgs {
                    q: &q,
                    cache: &dev_cache,
                    o: &mut o,
                    lse: None,
                    scale: None,
                    splits: Some(splits),
                },
            )
        })?;
        let (bytes, dense) = (dev_cache.bytes(), 2 * 2 * planes * context * d);
        let tbps = bytes as f64 / (timing.median_ms * 1e-3) / 1e12;
        let rates = match &compressor {
            Some(c) => compression_rates(&gpu, c, cache_args, (&k, &v, plan.dtype), one.k.tokens, (plan.kv_heads, context, d), (plan.warmup, reps))?,
            None => CompressionRates::NONE,
        };
        let mib = |b: usize| b as f64 / (1 << 20) as f64;
        if plan.json {
            writeln!(
                out,
                "{{\"kernel\": {}, \"config\": {}, \"batch\": {}, \"heads\": {}, \"kv_heads\": {}, \"context\": {context}, \"splits\": {splits}, \"cache_bytes\": {bytes}, \"dense_bytes\": {dense}, \"ms\": {:.5}, \"tb_per_s\": {tbps:.3}, {}}}",
                json_string(desc.name),
                json_string(&cfg.to_string()),
                plan.batch,
                plan.heads,
                plan.kv_heads,
                timing.median_ms,
                rates.json()
            )
            .map_err(Error::Stdout)?;
        }
        table.row(vec![
            context.to_string(),
            cfg.to_string(),
            splits.to_string(),
            format!("{:.1}", mib(bytes)),
            format!("{:.1}", mib(dense)),
            format!("{:.1}%", 100.0 * bytes as f64 / dense as f64),
            format!("{:.4}", timing.median_ms),
            format!("{tbps:.2}"),
            format!("{:.0}", rates.input_rate(rates.kernels_ms)),
            format!("{:.0}", rates.input_rate(rates.fresh_ms)),
            format!("{:.0}", rates.copy_rate()),
        ]);
    }
    if !plan.json {
        table.write(out).map_err(Error::Stdout)?;
    }
    Ok(())
}

/// GPU pruning + compression of the compressed region, K and V, against a copy of the same
/// bytes: median times of the three ways, for the next run to say where the time goes.
struct CompressionRates {
    /// `compress_into` reused workspaces: the kernel alone, one launch for K and one for V (no
    /// allocation, nothing read back).
    kernels_ms: f64,
    /// `Compressor::compress`: the kernels, a fresh workspace's allocations, the planes' value
    /// counts read back, and the exact-length copies of the result.
    fresh_ms: f64,
    /// A device-to-device copy of the dense input.
    copy_ms: f64,
    /// Bytes of dense input (K and V).
    input: f64,
}

impl CompressionRates {
    const NONE: CompressionRates = CompressionRates { kernels_ms: f64::NAN, fresh_ms: f64::NAN, copy_ms: f64::NAN, input: f64::NAN };

    /// GB/s of dense input in `ms`.
    fn input_rate(&self, ms: f64) -> f64 {
        self.input / (ms * 1e-3) / 1e9
    }

    /// The copy's GB/s, read plus written.
    fn copy_rate(&self) -> f64 {
        2.0 * self.input_rate(self.copy_ms)
    }

    /// The JSON fields, `null` where nothing was measured (no compressor, no compressed tokens).
    fn json(&self) -> String {
        let fields = [
            ("compress_gb_per_s", self.input_rate(self.kernels_ms), 1),
            ("compress_ms", self.kernels_ms, 5),
            ("compress_fresh_gb_per_s", self.input_rate(self.fresh_ms), 1),
            ("compress_fresh_ms", self.fresh_ms, 5),
            ("copy_gb_per_s", self.copy_rate(), 1),
            ("copy_ms", self.copy_ms, 5),
            ("compress_over_copy", self.input_rate(self.kernels_ms) / self.copy_rate(), 3),
        ];
        fields.iter().map(|&(name, value, decimals)| format!("\"{name}\": {}", json_number(value, decimals))).collect::<Vec<_>>().join(", ")
    }
}

/// GPU pruning + compression of K and V's first `tokens` tokens (`[kv_heads, context, d]`
/// host bits), timed three ways (`CompressionRates`); issue 6 measures the kernels' GB/s of
/// dense input against the copy's GB/s read plus written.
fn compression_rates(
    gpu: &Gpu,
    compressor: &Compressor,
    cache_args: &CacheArgs,
    (k, v, dtype): (&[u16], &[u16], Dtype),
    tokens: usize,
    (kv_heads, context, d): (usize, usize, usize),
    (warmup, reps): (usize, usize),
) -> Result<CompressionRates, Error> {
    if tokens == 0 {
        return Ok(CompressionRates::NONE);
    }
    let region = |x: &[u16]| -> Vec<u16> { x.chunks(context * d).flat_map(|plane| plane[..tokens * d].to_vec()).collect() };
    let shape = [1, kv_heads, tokens, d];
    let (dk, dv) = (DeviceTensor::from_bits(gpu, dtype, shape, &region(k))?, DeviceTensor::from_bits(gpu, dtype, shape, &region(v))?);
    let (ks, vs, rule) = (cache_args.k_sparsity, cache_args.v_sparsity, cache_args.prune);
    let (mut wk, mut wv) = (compressor.workspace(), compressor.workspace());
    let kernels = time(gpu, warmup.max(1), reps, || {
        compressor.compress_into(gpu, &mut wk, &dk, TileOrder::Keys, ks, rule)?;
        compressor.compress_into(gpu, &mut wv, &dv, TileOrder::Values, vs, rule)
    })?;
    let fresh = time(gpu, warmup, reps, || {
        compressor.compress(gpu, &dk, TileOrder::Keys, ks, rule)?;
        compressor.compress(gpu, &dv, TileOrder::Values, vs, rule).map(|_| ())
    })?;
    let mut copy_k = gpu.stream.alloc_zeros::<u16>(dk.data.len()).map_err(GpuError::from)?;
    let mut copy_v = gpu.stream.alloc_zeros::<u16>(dv.data.len()).map_err(GpuError::from)?;
    let copy = time(gpu, warmup, reps, || {
        gpu.stream.memcpy_dtod(&dk.data, &mut copy_k)?;
        Ok(gpu.stream.memcpy_dtod(&dv.data, &mut copy_v)?)
    })?;
    Ok(CompressionRates { kernels_ms: kernels.median_ms, fresh_ms: fresh.median_ms, copy_ms: copy.median_ms, input: 2.0 * 2.0 * (kv_heads * tokens * d) as f64 })
}
