//! `tessera run`: one kernel on `q`, `k` and `v` from a safetensors file, `o` (and `lse`) to
//! another.
//!
//! The file is read and checked before a GPU is opened, so a bad input is reported as such on
//! any machine.

use std::io::Write;
use std::path::PathBuf;

use cudarc::driver::CudaSlice;
use tessera_codegen::reference::Shape;
use tessera_desc::{ConfigError, Dtype, KernelDesc, Layout, Load, Visit, Window, WindowAxis};

use super::{config_of, find_kernel};
use crate::{Error, catalog};
use crate::gpu::{Attention, AttentionArgs, DeviceBlockLists, DeviceTensor, Gpu, GpuError, grid_extents};
use crate::io::{self, AttentionInputs, HostTensor};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kernel name, as `tessera list` prints it, `na` for a neighborhood given by
    /// --window [--dilation --stride --causal --dtype --head-dim], `mustafar` for a decode
    /// step over k and v pruned and compressed by the --k-sparsity ... --chunk policy, or `sale`
    /// for SALE's block-sparse prefill (blocks selected by --tau --estimate).
    kernel: String,
    /// safetensors file holding `q`, `k` and `v`, each [batch, heads, tokens, head_dim] in the
    /// kernel's dtype; k and v may have fewer heads than q (grouped-query attention). For
    /// `mustafar`: q has one token, head_dim is 128, and k and v are the cache's tokens before
    /// pruning (bf16 or f16, as q).
    #[arg(long, value_name = "FILE")]
    inputs: PathBuf,
    /// Where to write `o` (q's dtype and shape) and, with --lse, `lse`; replaced if it exists.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// A neighborhood's token grid, one extent per axis (row-major; their product is the
    /// tokens of q, k and v). Needed for 2-D and 3-D windows; a 1-D grid defaults to the tokens.
    #[arg(long, num_args = 1..=3, value_name = "EXTENT")]
    grid: Option<Vec<usize>>,
    /// Config overrides over the kernel's default, e.g. `block_q=128,warps=8` or
    /// `q_tile=8x16,kv_tile=8x8`.
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
    #[command(flatten)]
    mustafar: super::mustafar::CacheArgs,
    #[command(flatten)]
    sale: super::sale::SaleArgs,
}

/// With the kernel name `na`: neighborhood attention over the token grid of the inputs, its
/// window given here rather than by a catalog kernel. The per-axis flags take one value per grid
/// axis, or one value for every axis.
#[derive(Debug, clap::Args)]
struct NaArgs {
    /// Window size per grid axis (`na` only); without --grid, as many axes as sizes.
    #[arg(long, num_args = 1..=3, value_name = "SIZE")]
    window: Vec<u32>,
    /// Dilation per grid axis (`na` only).
    #[arg(long, num_args = 1..=3, default_values_t = [1])]
    dilation: Vec<u32>,
    /// Stride per grid axis (`na` only).
    #[arg(long, num_args = 1..=3, default_values_t = [1])]
    stride: Vec<u32>,
    /// Causal neighborhoods (`na` only): alone for every axis, or a boolean (1/0, true/false)
    /// per axis.
    #[arg(
        long,
        num_args = 0..=3,
        default_value = "false",
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
    )]
    causal: Vec<bool>,
    /// Element type of the inputs (`na` only): bf16 or f16.
    #[arg(long, default_value = "bf16", value_parser = parse_dtype)]
    dtype: Dtype,
    /// Head dim of the inputs (`na` only).
    #[arg(long, default_value_t = 128)]
    head_dim: u32,
}

impl NaArgs {
    /// The `na` kernel these flags describe over a grid of `grid`'s axes (else of --window's),
    /// at the tuning space of the catalog's kernels of as many axes.
    fn kernel(&self, grid: Option<&[usize]>) -> Result<KernelDesc, Error> {
        let dims = grid.map_or(self.window.len(), <[usize]>::len);
        // clap takes 1 to 3 values for each list: 0 axes only when neither is given, an error.
        let name = ["na", "na1d", "na2d", "na3d"][dims];
        let invalid = |message: String| Error::Config { kernel: name, source: ConfigError::Rule(message) };
        if self.window.is_empty() {
            return Err(invalid("`tessera run na` needs --window".into()));
        }
        let window = self.window(dims).map_err(invalid)?;
        tessera_desc::check_window(&window).map_err(invalid)?;
        tessera_desc::check_head_dim(self.head_dim).map_err(invalid)?;
        Ok(KernelDesc {
            name,
            head_dim: self.head_dim,
            dtype: self.dtype,
            layout: Layout::Bhsd,
            visit: Visit::Window(window),
            load: Load::Dense,
            schedule: catalog::grid_schedule(window.dims)
                .ok_or_else(|| invalid(format!("no catalog tuning space for {dims}-D grids")))?,
        })
    }

    /// The window over `dims` axes that the per-axis flags give.
    fn window(&self, dims: usize) -> Result<Window, String> {
        let size = per_axis("window", &self.window, dims)?;
        let dilation = per_axis("dilation", &self.dilation, dims)?;
        let stride = per_axis("stride", &self.stride, dims)?;
        let causal = per_axis("causal", &self.causal, dims)?;
        let mut axes = [WindowAxis { size: 1, dilation: 1, stride: 1, causal: false }; 3];
        for (i, axis) in axes[..dims].iter_mut().enumerate() {
            *axis = WindowAxis { size: size[i], dilation: dilation[i], stride: stride[i], causal: causal[i] };
        }
        Ok(Window { dims: dims as u8, axes })
    }
}

/// A per-axis flag's values over `dims` axes: one per axis, or its single value on each.
fn per_axis<T: Copy>(flag: &str, values: &[T], dims: usize) -> Result<Vec<T>, String> {
    match values {
        [one] => Ok(vec![*one; dims]),
        all if all.len() == dims => Ok(all.to_vec()),
        all => Err(format!(
            "--{flag} has {} values for a {dims}-D grid: give one per axis or one for every axis",
            all.len()
        )),
    }
}

fn parse_dtype(s: &str) -> Result<Dtype, String> {
    Dtype::from_name(s).ok_or_else(|| format!("unknown dtype `{s}` (bf16 or f16)"))
}

pub fn run(args: &Args, out: &mut dyn Write) -> Result<(), Error> {
    if args.kernel == "mustafar" {
        return super::mustafar::run(&args.inputs, &args.output, args.config.as_deref(), args.lse, args.scale, &args.mustafar, out);
    }
    let grid = args.grid.as_deref();
    let na;
    let desc = match args.kernel.as_str() {
        "na" => {
            na = args.na.kernel(grid)?;
            &na
        }
        "sale" => find_kernel(super::sale::SALE_KERNEL)?,
        name => find_kernel(name)?,
    };
    let cfg = config_of(desc, args.config.as_deref())?;
    let inputs = io::read_inputs(&args.inputs, desc)?;
    let extents = token_grid(desc, &inputs.dims, grid)?;
    // A block-sparse kernel's map: selected on the host before a GPU is opened, or its flags
    // checked there for the selection on the GPU.
    let blocks = matches!(desc.visit, Visit::Blocks(_));
    let host_selection = if blocks { args.sale.select_on_host(desc, &cfg, &inputs, args.scale)? } else { None };
    let gpu = Gpu::open(0)?;
    // First: a config the GPU cannot run fails before anything is allocated.
    let attn = Attention::load(&gpu, desc, &cfg)?;
    let x = upload(&gpu, desc, &inputs)?;
    let (host_lists, workspace);
    let (lists, selected) = if !blocks {
        (None, None)
    } else if let Some(s) = &host_selection {
        host_lists = DeviceBlockLists::upload(&gpu, &s.lists)?;
        (Some(&host_lists), Some((s.density, s.metadata.clone())))
    } else {
        let (ws, density, metadata) = args.sale.select_on_gpu(&gpu, desc, &cfg, (&x[0], &x[1], &x[2]), args.scale)?;
        workspace = ws;
        (Some(workspace.lists()), Some((density, metadata)))
    };
    let (o, lse) = launch(&gpu, &attn, &inputs, &x, (grid, lists), args.lse, args.scale)?;

    let mut tensors = vec![("o", &o)];
    if let Some(lse) = &lse {
        tensors.push(("lse", lse));
    }
    // Enough to tell later which kernel and launch produced the file: `na` kernels are named
    // by their dimensionality only, so a window's file also records it and the grid.
    let mut metadata = vec![
        ("kernel", desc.name.to_string()),
        ("config", cfg.to_string()),
    ];
    if let (Visit::Window(w), Some(extents)) = (desc.visit, &extents) {
        metadata.push(("window", w.to_string()));
        metadata.push(("grid", format!("{extents:?}")));
    }
    if let Some(scale) = args.scale {
        metadata.push(("scale", scale.to_string()));
    }
    if let Some((_, selection)) = &selected {
        metadata.extend(selection.iter().cloned());
    }
    io::write_tensors(&args.output, &tensors, &metadata)?;
    if let Some((density, _)) = &selected {
        writeln!(out, "{}: kept {:.1}% of the causally visible blocks", desc.name, 100.0 * density).map_err(Error::Stdout)?;
    }
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

/// A neighborhood's token grid, one extent per axis (`None` for kernels without a window),
/// checked against the kernel and the inputs as the launch will check it, so that a grid or
/// window that does not fit is reported without a GPU.
fn token_grid(desc: &KernelDesc, shape: &Shape, grid: Option<&[usize]>) -> Result<Option<Vec<usize>>, Error> {
    let invalid = |message: String| Error::Config { kernel: desc.name, source: ConfigError::Rule(message) };
    let Visit::Window(w) = desc.visit else {
        return grid_extents(desc, shape.seq_q, grid).map(|_| None).map_err(invalid);
    };
    if shape.seq_q != shape.seq_kv {
        return Err(invalid(format!(
            "a neighborhood needs as many keys as queries: q has {} tokens, k {}",
            shape.seq_q, shape.seq_kv
        )));
    }
    // The one rule about the flag rather than the grid: name it.
    if grid.is_none() && w.dims > 1 {
        return Err(invalid(format!("a {}-D window needs --grid with its {} extents", w.dims, w.dims)));
    }
    let extents = grid_extents(desc, shape.seq_q, grid).map_err(invalid)?;
    Ok(Some(extents[..w.dims as usize].to_vec()))
}

/// q, k and v on the device, in the kernel's element type.
fn upload(gpu: &Gpu, desc: &KernelDesc, inputs: &AttentionInputs) -> Result<[DeviceTensor; 3], GpuError> {
    let dims = inputs.dims;
    let up = |t: &HostTensor, shape| DeviceTensor::from_bits(gpu, desc.dtype, shape, &t.bits());
    Ok([up(&inputs.q, dims.q_shape())?, up(&inputs.k, dims.kv_shape())?, up(&inputs.v, dims.kv_shape())?])
}

/// Runs the kernel once on the uploaded `x` and downloads `o` and, if asked for, `lse`.
fn launch(
    gpu: &Gpu,
    attn: &Attention,
    inputs: &AttentionInputs,
    [q, k, v]: &[DeviceTensor; 3],
    (grid, blocks): (Option<&[usize]>, Option<&DeviceBlockLists>),
    want_lse: bool,
    scale: Option<f32>,
) -> Result<(HostTensor, Option<HostTensor>), GpuError> {
    let dims = inputs.dims;
    // NaN-filled, so that anything the kernel fails to write shows in the file.
    let mut o = DeviceTensor::poisoned(gpu, attn.desc.dtype, dims.q_shape())?;
    let lse_len: usize = dims.lse_shape().iter().product();
    let mut lse: Option<CudaSlice<f32>> = match want_lse {
        true => Some(gpu.stream.clone_htod(&vec![f32::NAN; lse_len])?),
        false => None,
    };

    attn.run(
        gpu,
        AttentionArgs {
            q,
            k,
            v,
            o: &mut o,
            lse: lse.as_mut(),
            scale,
            grid,
            blocks,
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
