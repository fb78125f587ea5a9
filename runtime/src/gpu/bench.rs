//! Kernel timing: CUDA events around each repetition, warm-up first, L2 flushed before every
//! repetition (a 256 MiB write evicts the H100's 50 MiB L2), median reported; and the sweep over
//! configs that `tessera bench` and the `dense` bench share.

use cudarc::driver::sys::CUevent_flags;
use tessera_codegen::reference::Axis;
use tessera_codegen::ir::select::Scores;
use tessera_codegen::reference::Shape;
use tessera_codegen::reference::sale::SALE_BLOCKS;
use tessera_codegen::reference::structured::structured_inputs;
use tessera_desc::{Config, KernelDesc, Visit};

use super::{Attention, AttentionArgs, DeviceTensor, Gpu, GpuError};

const FLUSH_BYTES: usize = 256 << 20;

#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub median_ms: f64,
    pub min_ms: f64,
    pub reps: usize,
}

/// Times `launch` (which only enqueues work on `gpu.stream`).
pub fn time(
    gpu: &Gpu,
    warmup: usize,
    reps: usize,
    mut launch: impl FnMut() -> Result<(), GpuError>,
) -> Result<Timing, GpuError> {
    if reps == 0 {
        return Err(GpuError::Invalid(
            "at least one timed repetition is needed".into(),
        ));
    }
    let mut flush = gpu.stream.alloc_zeros::<u8>(FLUSH_BYTES)?;
    for _ in 0..warmup {
        launch()?;
    }
    let start = gpu.ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
    let end = gpu.ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
    let mut ms = Vec::with_capacity(reps);
    for _ in 0..reps {
        gpu.stream.memset_zeros(&mut flush)?;
        start.record(&gpu.stream)?;
        launch()?;
        end.record(&gpu.stream)?;
        ms.push(start.elapsed_ms(&end)? as f64);
    }
    ms.sort_by(f64::total_cmp);
    Ok(Timing {
        median_ms: ms[ms.len() / 2],
        min_ms: ms[0],
        reps,
    })
}

/// FLOPs of attention's two products, 4·D per visited (query, key) pair and head: every pair
/// when dense, half of them when causal (the anchors' convention), and for a window exactly the
/// pairs its neighborhoods hold on the grid `grid`, so that windowed
/// kernels report their effective rate.
pub fn attention_flops(desc: &KernelDesc, batch: usize, heads: usize, seq_q: usize, seq_kv: usize, grid: [usize; 3]) -> f64 {
    let per_pair = 4.0 * (batch * heads) as f64 * desc.head_dim as f64;
    let pairs = match desc.visit {
        Visit::Causal => seq_q as f64 * seq_kv as f64 / 2.0,
        // A window's key set is a product of per-axis sets, so its pairs are the product of
        // each axis's pair counts.
        Visit::Window(w) => w
            .axes()
            .iter()
            .zip(grid)
            .map(|(a, extent)| {
                let axis = Axis {
                    extent,
                    window: a.size as usize,
                    dilation: a.dilation as usize,
                    stride: a.stride as usize,
                    causal: a.causal,
                };
                axis.rule().map_or(0.0, |rule| (0..extent).map(|x| rule.key_range(x).len() as f64).sum())
            })
            .product(),
        _ => seq_q as f64 * seq_kv as f64,
    };
    per_pair * pairs
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchShape {
    pub batch: usize,
    pub heads: usize,
    /// Heads of K and V, dividing `heads` (a GQA group is `heads / kv_heads` query heads).
    pub kv_heads: usize,
    pub seq: usize,
    /// The token grid given for a window kernel (product `seq`), trailing extents 1; `None`
    /// when the tokens are a line of `seq`.
    pub grid: Option<[usize; 3]>,
}

impl BenchShape {
    /// The grid extents a launch names: a window kernel's own axes of the given grid (a kernel
    /// without a window gets one axis, which the launch rejects: it takes no grid).
    pub fn grid_arg(&self, desc: &KernelDesc) -> Option<&[usize]> {
        self.grid.as_ref().map(|g| &g[..desc.visit.grid_dims()])
    }

    /// The grid the FLOPs are counted on.
    fn extents(&self) -> [usize; 3] {
        self.grid.unwrap_or([self.seq, 1, 1])
    }
}

/// One config of one kernel on one shape.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// The kernel's name (`<name>:select` for SALE's selection of a block-sparse kernel).
    pub kernel: String,
    pub shape: BenchShape,
    pub config: Config,
    /// Why the config could not be loaded on this GPU (e.g. too much shared memory), if so.
    pub timing: Result<Timing, String>,
    pub flops: f64,
    /// A block-sparse kernel's: the fraction of causally visible tiles its map keeps.
    pub density: Option<f64>,
    /// A neighborhood kernel's: the fraction of its tile products' pairs the neighborhoods hold
    /// (`cost::window_efficiency`), so that TFLOP/s over it is the rate per computed pair.
    pub useful: Option<f64>,
}

impl Measurement {
    pub fn tflops(&self) -> Option<f64> {
        let ms = self.timing.as_ref().ok()?.median_ms;
        Some(self.flops / ms / 1e9)
    }

    /// One JSON object, without a newline.
    pub fn json(&self) -> String {
        let BenchShape { batch, heads, kv_heads, seq, .. } = self.shape;
        let grid = self.shape.extents();
        let (kernel, config) = (
            json_string(&self.kernel),
            json_string(&self.config.to_string()),
        );
        let mut head = format!(
            "{{\"kernel\": {kernel}, \"batch\": {batch}, \"heads\": {heads}, \"kv_heads\": {kv_heads}, \"seq\": {seq}, \"grid\": {grid:?}, \"config\": {config}"
        );
        if let Some(d) = self.density {
            head.push_str(&format!(", \"density\": {}", json_number(d, 4)));
        }
        if let Some(u) = self.useful {
            head.push_str(&format!(", \"useful\": {}", json_number(u, 4)));
        }
        match &self.timing {
            Ok(t) => format!(
                "{head}, \"ms\": {}, \"min_ms\": {}, \"reps\": {}, \"tflops\": {}}}",
                json_number(t.median_ms, 4),
                json_number(t.min_ms, 4),
                t.reps,
                json_number(self.tflops().unwrap_or(f64::NAN), 1)
            ),
            Err(e) => format!("{head}, \"error\": {}}}", json_string(e)),
        }
    }
}

/// Timed repetitions when the caller names none: fewer for long sequences, where one run is long
/// enough for the events' resolution and the whole sweep would otherwise take minutes.
pub fn default_reps(seq: usize) -> usize {
    if seq >= 16384 { 10 } else { 30 }
}

/// Times `desc` at each config on one shape, every config on the same inputs. A config that
/// does not load becomes a failed measurement; any other error ends the run, since a failed
/// launch leaves the context unusable for the configs after it. A block-sparse kernel runs on a
/// seeded map of `density` of its visible tiles in each config's tiles (`block_map`), its FLOPs
/// those of the pairs the map keeps.
pub fn bench_attention(
    gpu: &Gpu,
    desc: &KernelDesc,
    configs: &[Config],
    shape: BenchShape,
    density: Option<f64>,
    warmup: usize,
    reps: usize,
) -> Result<Vec<Measurement>, GpuError> {
    let sparse = matches!(desc.visit, Visit::Blocks(_));
    if sparse != density.is_some() {
        return Err(GpuError::Invalid(format!(
            "{}: a block-sparse kernel is timed at a density of kept tiles, and only it",
            desc.name
        )));
    }
    let BenchInputs { q, k, v } = BenchInputs::uniform(gpu, desc, shape)?;
    let mut o = DeviceTensor::poisoned(gpu, desc.dtype, bench_dims(desc, shape, shape.heads))?;
    let flops = attention_flops(desc, shape.batch, shape.heads, shape.seq, shape.seq, shape.extents());

    let mut out = Vec::with_capacity(configs.len());
    for &config in configs {
        let (lists, flops) = match density {
            Some(density) => {
                let tiling = super::block_map::Tiling {
                    planes: shape.batch * shape.heads,
                    seq_q: shape.seq,
                    seq_kv: shape.seq,
                    block_q: config.block_q() as usize,
                    block_kv: config.block_kv() as usize,
                };
                let map = super::block_map::random_causal(&tiling, density, shape.seq as u64).map_err(GpuError::Invalid)?;
                let per_pair = 4.0 * desc.head_dim as f64;
                (Some(super::DeviceBlockLists::upload(gpu, &map.lists)?), per_pair * map.pairs as f64)
            }
            None => (None, flops),
        };
        let timing = match Attention::load(gpu, desc, &config) {
            Ok(attn) => Ok(time(gpu, warmup, reps, || {
                let args = AttentionArgs {
                    q: &q,
                    k: &k,
                    v: &v,
                    o: &mut o,
                    lse: None,
                    scale: None,
                    grid: shape.grid_arg(desc),
                    blocks: lists.as_ref(),
                };
                attn.run(gpu, args)
            })?),
            Err(e) => Err(e.to_string()),
        };
        let useful = tessera_codegen::cost::window_efficiency(desc, &config, &shape.extents()[..desc.visit.grid_dims()]).ok().flatten();
        out.push(Measurement {
            kernel: desc.name.to_string(),
            shape,
            config,
            timing,
            flops,
            density,
            useful,
        });
    }
    Ok(out)
}

/// The Q, K and V a benchmark runs on: `[batch, heads, seq, D]`, K and V with `kv_heads`.
pub struct BenchInputs {
    q: DeviceTensor,
    k: DeviceTensor,
    v: DeviceTensor,
}

impl BenchInputs {
    /// Uniform values, seeded by the sequence length: near-uniform attention, so a selection
    /// keeps almost every tile at any useful τ (its slowest case).
    pub fn uniform(gpu: &Gpu, desc: &KernelDesc, shape: BenchShape) -> Result<Self, GpuError> {
        let input = |heads: usize, seed: u64| {
            let dims = bench_dims(desc, shape, heads);
            DeviceTensor::from_f32(gpu, desc.dtype, dims, &uniform(dims.iter().product(), shape.seq as u64 + seed))
        };
        Ok(BenchInputs { q: input(shape.heads, 1)?, k: input(shape.kv_heads, 2)?, v: input(shape.kv_heads, 3)? })
    }

    /// SALE's structured long-context inputs (`reference::structured`: local patterns, a sink,
    /// planted retrievals; seed 1), whose attention concentrates as real prompts' does, so that
    /// a selection keeps what τ asks for.
    pub fn structured(gpu: &Gpu, desc: &KernelDesc, shape: BenchShape) -> Result<Self, GpuError> {
        let [batch, heads, seq, head_dim] = bench_dims(desc, shape, shape.heads);
        let problem = Shape { batch, heads, kv_heads: shape.kv_heads, seq_q: seq, seq_kv: seq, head_dim };
        let x = structured_inputs(&problem, 1).map_err(GpuError::Invalid)?;
        let upload = |heads: usize, v: &[f64]| {
            DeviceTensor::from_f32(gpu, desc.dtype, bench_dims(desc, shape, heads), &v.iter().map(|&x| x as f32).collect::<Vec<_>>())
        };
        Ok(BenchInputs { q: upload(shape.heads, &x.q)?, k: upload(shape.kv_heads, &x.k)?, v: upload(shape.kv_heads, &x.v)? })
    }
}

/// `[batch, heads, seq, D]` of a tensor with `heads` heads (Q's and O's, or K's and V's).
fn bench_dims(desc: &KernelDesc, shape: BenchShape, heads: usize) -> [usize; 4] {
    [shape.batch, heads, shape.seq, desc.head_dim as usize]
}

/// Times SALE's selection for `desc` at `config` from `scores` (`SaleSelect::select`: the
/// forced pass, the thresholds, for int8 the quantization, the selection program and the lists;
/// the forced lists are made once, outside the timing) with each τ of `taus` for every head,
/// one row per τ (named `<kernel>:select-int8@τ`, `:select-exact@τ`). Its FLOPs are the
/// scores' alone, 2·D per causally visible pair; its density is what it kept. From the int8
/// estimate, a last row times the quantization of Q and K alone (`<kernel>:quantize`, no
/// FLOPs), the part of the selection the exact scores do without.
#[allow(clippy::too_many_arguments)]
pub fn bench_selection(gpu: &Gpu, desc: &KernelDesc, config: Config, shape: BenchShape, inputs: &BenchInputs, (taus, scores): (&[f64], Scores), warmup: usize, reps: usize) -> Result<Vec<Measurement>, GpuError> {
    let dims = bench_dims(desc, shape, shape.heads);
    let BenchInputs { q, k, v } = inputs;
    let causal = tessera_desc::KernelDesc { visit: Visit::Causal, ..*desc };
    let flops = attention_flops(&causal, shape.batch, shape.heads, shape.seq, shape.seq, shape.extents()) / 2.0;
    let name = match scores {
        Scores::Exact => "select-exact",
        Scores::Int8 => "select-int8",
    };
    // A selection that cannot load or allocate its buffers (at 128K tokens they are large) is
    // a failed row; a failed launch ends the run, as in `bench_attention`.
    let loaded = super::SaleSelect::load(gpu, desc, &config, SALE_BLOCKS.segment, scores)
        .and_then(|select| Ok((select.workspace(gpu, dims, shape.kv_heads)?, select)));
    let (mut ws, select) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            let row = |tau: &f64| Measurement { kernel: format!("{}:{name}@{tau}", desc.name), shape, config, timing: Err(e.to_string()), flops, density: None, useful: None };
            return Ok(taus.iter().map(row).collect());
        }
    };
    let mut rows = Vec::new();
    for &tau in taus {
        let per_head = vec![tau; shape.heads];
        let args = || super::SelectArgs { q, k, v, tau: &per_head, scale: None };
        let timing = time(gpu, warmup, reps, || select.select(gpu, &mut ws, args()))?;
        let counts = ws.lists().download(gpu)?.count;
        let b = select.blocks();
        let nq = shape.seq.div_ceil(b.block_q);
        let visible: usize = (0..nq).map(|qb| ((qb + 1) * b.block_q).min(shape.seq).div_ceil(b.block_k)).sum();
        let kept: usize = counts.iter().map(|&c| c.max(0) as usize).sum();
        let density = Some(kept as f64 / (visible * shape.batch * shape.heads).max(1) as f64);
        rows.push(Measurement { kernel: format!("{}:{name}@{tau}", desc.name), shape, config, timing: Ok(timing), flops, density, useful: None });
    }
    if scores == Scores::Int8 {
        let timing = time(gpu, warmup, reps, || select.quantize(gpu, &mut ws, q, k).map(|_| ()))?;
        rows.push(Measurement { kernel: format!("{}:quantize", desc.name), shape, config, timing: Ok(timing), flops: 0.0, density: None, useful: None });
    }
    Ok(rows)
}

/// `n` values in [-1, 1) from SplitMix64: timing needs realistic values, not a statistics-grade
/// generator, and the library has no `rand`.
pub(crate) fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            // The top 24 bits are exact in f32.
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// A JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON number with `decimals` decimals; `null` for what JSON cannot hold (NaN, infinities).
pub fn json_number(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        "null".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;

    #[test]
    fn uniform_values_stay_in_range_and_vary() {
        let v = uniform(10_000, 7);
        assert!(v.iter().all(|x| (-1.0..1.0).contains(x)));
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        assert!(mean.abs() < 0.05, "{mean}");
        assert_ne!(uniform(4, 1), uniform(4, 2));
    }

    #[test]
    fn measurements_are_valid_json_lines() {
        let m = Measurement {
            kernel: "dense_bf16_d64".into(),
            shape: BenchShape {
                batch: 1,
                heads: 32,
                kv_heads: 32,
                seq: 1024,
                grid: None,
            },
            config: Config::line(128, 64, 8, 2),
            timing: Ok(Timing {
                median_ms: 0.5,
                min_ms: 0.25,
                reps: 30,
            }),
            flops: 4.0 * 32.0 * 1024.0 * 1024.0 * 64.0,
            density: None,
            useful: None,
        };
        assert_eq!(
            m.json(),
            "{\"kernel\": \"dense_bf16_d64\", \"batch\": 1, \"heads\": 32, \"kv_heads\": 32, \"seq\": 1024, \
             \"grid\": [1024, 1, 1], \"config\": \"block_q=128,block_kv=64,warps=8,stages=2\", \"ms\": 0.5000, \
             \"min_ms\": 0.2500, \"reps\": 30, \"tflops\": 17.2}"
        );
        let sparse = Measurement { kernel: "sale_causal_bf16_d128:select-int8".into(), density: Some(0.25), ..m.clone() };
        assert!(sparse.json().contains("\"config\": \"block_q=128,block_kv=64,warps=8,stages=2\", \"density\": 0.2500, \"ms\""), "{}", sparse.json());
        let failed = Measurement {
            timing: Err("needs \"too much\"\nshared memory".into()),
            ..m
        };
        assert!(
            failed
                .json()
                .ends_with(", \"error\": \"needs \\\"too much\\\"\\nshared memory\"}"),
            "{}",
            failed.json()
        );
    }

    #[test]
    fn counts_visited_pairs() {
        let dense = catalog::find("dense_bf16_d128").unwrap();
        let causal = catalog::find("causal_bf16_d128").unwrap();
        // window 13, dilation 2, non-causal: every query sees exactly 13 keys.
        let window = catalog::find("na1d_w13_d2_bf16_d128").unwrap();
        let per_pair = 4.0 * 2.0 * 3.0 * 128.0;
        assert_eq!(attention_flops(dense, 2, 3, 100, 80, [100, 1, 1]), per_pair * 8000.0);
        assert_eq!(attention_flops(causal, 2, 3, 100, 100, [100, 1, 1]), per_pair * 5000.0);
        assert_eq!(attention_flops(window, 2, 3, 100, 100, [100, 1, 1]), per_pair * 1300.0);
    }
}
