//! `tessera run`: one kernel on `q`, `k` and `v` from a safetensors file, `o` (and `lse`) to
//! another.
//!
//! The file is read and checked before a GPU is opened, so a bad input is reported as such on
//! any machine.

use std::io::Write;
use std::path::PathBuf;

use cudarc::driver::CudaSlice;
use tessera_desc::{Config, KernelDesc};

use super::{config_of, find_kernel};
use crate::Error;
use crate::gpu::{Attention, AttentionArgs, DeviceTensor, Gpu, GpuError};
use crate::io::{self, AttentionInputs, HostTensor};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kernel name, as `tessera list` prints it.
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
}

pub fn run(args: &Args, out: &mut dyn Write) -> Result<(), Error> {
    let desc = find_kernel(&args.kernel)?;
    let cfg = config_of(desc, args.config.as_deref())?;
    let inputs = io::read_inputs(&args.inputs, desc)?;
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
