//! An attention kernel loaded on a GPU, and its checked launch.

use std::collections::HashMap;

use cudarc::driver::{CudaFunction, CudaSlice, LaunchConfig, PushKernelArg};
use tessera_codegen::ir::{Program, Var};
use tessera_codegen::tile_program;
use tessera_desc::{Config, KernelDesc};

use super::checks::{Meta, Tensors};
use super::{DeviceTensor, Gpu, GpuError};

/// The launch's inputs and outputs. `scale` defaults to 1/sqrt(head_dim).
pub struct AttentionArgs<'a> {
    pub q: &'a DeviceTensor,
    pub k: &'a DeviceTensor,
    pub v: &'a DeviceTensor,
    pub o: &'a mut DeviceTensor,
    /// `[batch, heads, seq_q]` f32, written when given.
    pub lse: Option<&'a mut CudaSlice<f32>>,
    pub scale: Option<f32>,
    /// A neighborhood kernel's token grid (row-major, product = tokens); `None` for kernels
    /// without one, and for 1-D windows, whose grid is the token count.
    pub grid: Option<&'a [usize]>,
    /// The block map of a block-sparse kernel (`visit = blocks(..)`), in the config's tiles;
    /// `None` for every other kernel.
    pub blocks: Option<&'a super::DeviceBlockLists>,
}

/// The grid extents of a launch over `tokens` tokens: `grid` checked against the kernel's
/// window (and its extents against the window), or the tokens as one axis. Kernels without a
/// window take no grid.
pub fn grid_extents(desc: &KernelDesc, tokens: usize, grid: Option<&[usize]>) -> Result<[usize; 3], String> {
    let tessera_desc::Visit::Window(w) = desc.visit else {
        return match grid {
            None => Ok([tokens, 1, 1]),
            Some(g) => Err(format!("{} has no window, so it takes no grid (got {g:?})", desc.name)),
        };
    };
    let extents = match grid {
        Some(g) => g.to_vec(),
        None if w.dims == 1 => vec![tokens],
        None => return Err(format!("{} is a {}-D window: give its grid extents", desc.name, w.dims)),
    };
    tessera_desc::check_window_extents(&w, &extents)?;
    // Checked: a product that wraps could match the token count while every extent is huge,
    // and the kernel's token arithmetic would then address outside the tensors.
    let held = extents.iter().try_fold(1usize, |n, &e| n.checked_mul(e));
    if held != Some(tokens) {
        let held = held.map_or("more than usize::MAX".to_string(), |n| n.to_string());
        return Err(format!("grid {extents:?} holds {held} tokens, the tensors {tokens}"));
    }
    let mut out = [1; 3];
    out[..extents.len()].copy_from_slice(&extents);
    Ok(out)
}

pub struct Attention {
    pub desc: KernelDesc,
    pub config: Config,
    program: Program,
    function: CudaFunction,
    /// The ordinal of the GPU the kernel was loaded on.
    device: usize,
}


impl Attention {
    pub fn load(gpu: &Gpu, desc: &KernelDesc, config: &Config) -> Result<Attention, GpuError> {
        if desc.load != tessera_desc::Load::Dense {
            return Err(GpuError::Unsupported(format!(
                "{} reads a bitmap-compressed cache: it is a decode kernel (`tessera run/bench mustafar`, gpu::MustafarDecode)",
                desc.name
            )));
        }
        let program = tile_program(desc, config)?;
        let [function] = gpu.load_entries(desc, config, program.shared_bytes(), [tessera_codegen::entry_name(desc)])?;
        Ok(Attention {
            desc: *desc,
            config: *config,
            program,
            function,
            device: gpu.ctx.ordinal(),
        })
    }

    /// Checks every argument against the kernel and the others, then launches on the stream.
    pub fn run(&self, gpu: &Gpu, args: AttentionArgs<'_>) -> Result<(), GpuError> {
        let ([b, h, hk, sq, skv], [gx, gy, gz]) = self.check(&args)?;
        let scale = args
            .scale
            .unwrap_or(1.0 / (self.desc.head_dim as f32).sqrt());
        if !(scale.is_finite() && scale > 0.0) {
            return Err(GpuError::Invalid(format!(
                "scale must be finite and positive, got {scale}"
            )));
        }
        let Some(cfg) = launch_config(&self.program, [b, h, hk, sq, skv], [gx, gy, gz])? else {
            return Ok(());
        };
        let null: u64 = 0;
        let mut launch = gpu.stream.launch_builder(&self.function);
        launch
            .arg(&args.q.data)
            .arg(&args.k.data)
            .arg(&args.v.data)
            .arg(&args.o.data);
        match &args.lse {
            Some(lse) => launch.arg(&**lse),
            None => launch.arg(&null),
        };
        launch.arg(&sq).arg(&skv).arg(&h).arg(&hk).arg(&scale).arg(&gx).arg(&gy).arg(&gz);
        // `check` made sure the lists are given exactly when the kernel takes them
        // (`TABLE_PARAMS`, in `Table::ALL` order).
        if let Some(lists) = args.blocks {
            launch.arg(&lists.list).arg(&lists.count);
        }
        // SAFETY: the arguments match `kernel_params` in order and type, every tensor's shape
        // and dtype were checked against the kernel and each other above, the block lists
        // (validated at upload) against the launch's tiles, and the grid covers exactly the
        // tiles the program bounds-checks.
        unsafe { launch.launch(cfg) }?;
        Ok(())
    }

    /// Returns [batch, heads, kv_heads, seq_q, seq_kv] and the grid extents as i32 after
    /// checking every argument (`checks::check_launch`).
    fn check(&self, a: &AttentionArgs<'_>) -> Result<([i32; 5], [i32; 3]), GpuError> {
        let meta = |t: &DeviceTensor| Meta { dtype: t.dtype, shape: t.shape, len: t.data.len(), device: t.data.ordinal() };
        let device = self.device;
        let others = [("lse", a.lse.as_ref().map(|l| l.ordinal())), ("blocks", a.blocks.map(|l| l.list.ordinal()))];
        if let Some((arg, Some(got))) = others.into_iter().find(|(_, d)| d.is_some_and(|d| d != device)) {
            return Err(GpuError::Mismatch { arg, what: "GPU (the kernel's)", expected: device.to_string(), got: got.to_string() });
        }
        super::checks::check_launch(
            &self.desc,
            &self.config,
            device,
            self.program.reads_tables(),
            Tensors { q: meta(a.q), k: meta(a.k), v: meta(a.v), o: meta(a.o) },
            a.lse.as_ref().map(|l| l.len()),
            a.grid,
            a.blocks.map(|l| l.dims()),
        )
    }
}


/// The launch of `program` over [batch, heads, kv_heads, seq_q, seq_kv] (checked sizes) and
/// grid extents, or `None` when its grid is empty (nothing to do).
pub(super) fn launch_config(program: &Program, [b, h, hk, sq, skv]: [i32; 5], [gx, gy, gz]: [i32; 3]) -> Result<Option<LaunchConfig>, GpuError> {
    let vars: HashMap<Var, i32> = [
        (Var::Batch, b),
        (Var::Heads, h),
        (Var::KvHeads, hk),
        (Var::SeqQ, sq),
        (Var::SeqKv, skv),
        (Var::Grid(0), gx),
        (Var::Grid(1), gy),
        (Var::Grid(2), gz),
    ]
    .into_iter()
    .collect();
    let mut grid = [0u32; 3];
    for (g, e) in grid.iter_mut().zip(&program.grid) {
        *g = e.eval(&|v| vars.get(&v).copied()).map_err(GpuError::Invalid)? as u32;
    }
    if grid[1] > 65535 || grid[2] > 65535 {
        return Err(GpuError::Invalid(format!("heads ({h}) and batch ({b}) must each be at most 65535")));
    }
    if grid.contains(&0) {
        return Ok(None);
    }
    Ok(Some(LaunchConfig {
        grid_dim: (grid[0], grid[1], grid[2]),
        block_dim: (program.threads(), 1, 1),
        shared_mem_bytes: program.shared_bytes(),
    }))
}

#[cfg(test)]
mod tests {
    use super::grid_extents;
    use crate::catalog;

    #[test]
    fn grids_must_hold_exactly_the_tokens() {
        let na2d = catalog::find("na2d_w13x13_d2x2_bf16_d128").unwrap();
        assert_eq!(grid_extents(na2d, 64 * 64, Some(&[64, 64])), Ok([64, 64, 1]));
        // A product that wraps around usize to the token count must not pass.
        let huge = [4294967301usize, 10330176670282232640];
        assert!(grid_extents(na2d, 64, Some(&huge)).is_err());
        assert!(grid_extents(na2d, 64 * 64, Some(&[64, 63])).is_err());
        assert!(grid_extents(na2d, 64 * 64, None).unwrap_err().contains("give its grid extents"));
        let dense = catalog::find("dense_bf16_d128").unwrap();
        assert_eq!(grid_extents(dense, 100, None), Ok([100, 1, 1]));
        assert!(grid_extents(dense, 100, Some(&[100])).is_err());
    }
}
