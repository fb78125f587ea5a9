//! `tessera run`: one kernel on `q`, `k` and `v` from a safetensors file, `o` (and `lse`) to
//! another.
//!
//! The file is read and checked before a GPU is opened, so a bad input is reported as such on
//! any machine.

use std::io::Write;
use std::path::PathBuf;

use cudarc::driver::CudaSlice;
use tessera_desc::{Config, Dtype, KernelDesc, Layout, Load, Visit, Window, WindowAxis};

use super::{config_of, find_kernel};
use crate::{Error, catalog};
use crate::gpu::{Attention, AttentionArgs, DeviceTensor, Gpu, GpuError};
use crate::io::{self, AttentionInputs, HostTensor};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kernel name, as `tessera list` prints it, or `na` for a 1-D neighborhood given by
    /// --window [--dilation --stride --causal --dtype --head-dim].
    kernel: String,
    /// safetensors file holding `q`, `k` and `v`, each [batch, heads, tokens, head_dim] in the
    /// kernel's dtype; k and v may have fewer heads than q (grouped-query attention).
    #[arg(long, value_name = "FILE")]
    inputs: PathBuf,
    /// Where to write `o` (q's dtype and shape) and, with --lse, `lse`; replaced if it exists.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Config overrides over the kernel's default, e.g. `block_q=128,warps=8`.
    #[arg(long, value_name = "KEY=VALUE,...")]
    config: Option<String>,
    /// Also write `lse`: F32 [batch, heads, seq_q], the natural log of each query row's softmax
    /// denominator (of the scaled scores).
    #[arg(long)]
    lse: bool,
    /// Softmax scale; default 1/sqrt(head_dim).
    #[arg(long, value_parser = parse_scale)]
    scale: Option<f32>,
    #[command(flatten)]
    na: NaArgs,
}

/// With the kernel name `na`: 1-D neighborhood attention over the tokens of the inputs, its
/// window given here rather than by a catalog kernel.
#[derive(Debug, clap::Args)]
struct NaArgs {
    /// Window size (`na` only).
    #[arg(long)]
    window: Option<u32>,
    /// Dilation (`na` only).
    #[arg(long, default_value_t = 1)]
    dilation: u32,
    /// Stride (`na` only).
    #[arg(long, default_value_t = 1)]
    stride: u32,
    /// Causal neighborhoods (`na` only).
    #[arg(long)]
    causal: bool,
    /// Element type of the inputs (`na` only): bf16 or f16.
    #[arg(long, default_value = "bf16", value_parser = parse_dtype)]
    dtype: Dtype,
    /// Head dim of the inputs (`na` only).
    #[arg(long, default_value_t = 128)]
    head_dim: u32,
}

impl NaArgs {
    /// The `na` kernel these flags describe, at the catalog's tuning space.
    fn kernel(&self) -> Result<KernelDesc, Error> {
        let invalid = |message: String| Error::Config {
            kernel: "na1d",
            source: tessera_desc::ConfigError::Rule(message),
        };
        let size = self.window.ok_or_else(|| invalid("`tessera run na` needs --window".into()))?;
        let axis = WindowAxis { size, dilation: self.dilation, stride: self.stride, causal: self.causal };
        let unused = WindowAxis { size: 1, dilation: 1, stride: 1, causal: false };
        let window = Window { dims: 1, axes: [axis, unused, unused] };
        tessera_desc::check_window(&window).map_err(invalid)?;
        tessera_desc::check_head_dim(self.head_dim).map_err(invalid)?;
        Ok(KernelDesc {
            name: "na1d",
            head_dim: self.head_dim,
            dtype: self.dtype,
            layout: Layout::Bhsd,
            visit: Visit::Window(window),
            load: Load::Dense,
            schedule: catalog::schedule(),
        })
    }
}

fn parse_dtype(s: &str) -> Result<Dtype, String> {
    Dtype::from_name(s).ok_or_else(|| format!("unknown dtype `{s}` (bf16 or f16)"))
}

pub fn run(args: &Args, out: &mut dyn Write) -> Result<(), Error> {
    let na;
    let desc = if args.kernel == "na" {
        na = args.na.kernel()?;
        &na
    } else {
        find_kernel(&args.kernel)?
    };
    let cfg = config_of(desc, args.config.as_deref())?;
    let inputs = io::read_inputs(&args.inputs, desc)?;
    if let Visit::Window(w) = desc.visit {
        // Checked here too so that a window that cannot fit is reported without a GPU.
        let dims = inputs.dims;
        if dims.seq_q != dims.seq_kv {
            return Err(Error::Config {
                kernel: desc.name,
                source: tessera_desc::ConfigError::Rule(format!(
                    "a neighborhood needs as many keys as queries: q has {} tokens, k {}",
                    dims.seq_q, dims.seq_kv
                )),
            });
        }
        tessera_desc::check_window_extents(&w, &[dims.seq_q]).map_err(|m| Error::Config {
            kernel: desc.name,
            source: tessera_desc::ConfigError::Rule(m),
        })?;
    }
    let gpu = Gpu::open(0)?;
    let (o, lse) = launch(&gpu, desc, &cfg, &inputs, args.lse, args.scale)?;

    let mut tensors = vec![("o", &o)];
    if let Some(lse) = &lse {
        tensors.push(("lse", lse));
    }
    // Enough to tell later which kernel and launch produced the file.
    let mut metadata = vec![
        ("kernel", desc.name.to_string()),
        ("config", cfg.to_string()),
    ];
    if let Some(scale) = args.scale {
        metadata.push(("scale", scale.to_string()));
    }
    io::write_tensors(&args.output, &tensors, &metadata)?;
    writeln!(
        out,
        "{} ({cfg}) on {}: wrote {} to {}",
        desc.name,
        gpu.name,
        tensors
            .iter()
            .map(|(name, t)| format!("{name} {} {:?}", t.dtype, t.shape))
            .collect::<Vec<_>>()
            .join(" and "),
        args.output.display()
    )
    .map_err(Error::Stdout)
}

/// Uploads the inputs, runs the kernel once and downloads `o` and, if asked for, `lse`.
fn launch(
    gpu: &Gpu,
    desc: &KernelDesc,
    cfg: &Config,
    inputs: &AttentionInputs,
    want_lse: bool,
    scale: Option<f32>,
) -> Result<(HostTensor, Option<HostTensor>), GpuError> {
    // First: a config the GPU cannot run fails before anything is allocated.
    let attn = Attention::load(gpu, desc, cfg)?;
    let dims = inputs.dims;
    let upload = |t: &HostTensor, shape| DeviceTensor::from_bits(gpu, desc.dtype, shape, &t.bits());
    let q = upload(&inputs.q, dims.q_shape())?;
    let k = upload(&inputs.k, dims.kv_shape())?;
    let v = upload(&inputs.v, dims.kv_shape())?;
    // NaN-filled, so that anything the kernel fails to write shows in the file.
    let mut o = DeviceTensor::poisoned(gpu, desc.dtype, dims.q_shape())?;
    let lse_len: usize = dims.lse_shape().iter().product();
    let mut lse: Option<CudaSlice<f32>> = match want_lse {
        true => Some(gpu.stream.clone_htod(&vec![f32::NAN; lse_len])?),
        false => None,
    };

    attn.run(
        gpu,
        AttentionArgs {
            q: &q,
            k: &k,
            v: &v,
            o: &mut o,
            lse: lse.as_mut(),
            scale,
            grid: None,
        },
    )?;
    gpu.stream.synchronize()?;

    let o = HostTensor::from_bits(
        inputs.q.dtype,
        dims.q_shape().to_vec(),
        &gpu.stream.clone_dtoh(&o.data)?,
    );
    let lse = match &lse {
        Some(lse) => Some(HostTensor::from_f32(
            dims.lse_shape().to_vec(),
            &gpu.stream.clone_dtoh(lse)?,
        )),
        None => None,
    };
    Ok((o, lse))
}

fn parse_scale(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        Ok(x) => Err(format!("the scale must be finite and positive, got {x}")),
        Err(e) => Err(format!("`{s}` is not a number: {e}")),
    }
}
