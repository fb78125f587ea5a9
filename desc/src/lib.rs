//! The kernel description: the one data model between the DSL front end (which builds it at
//! compile time, without LLVM) and codegen (which lowers it). The rules that decide what is a
//! valid description or config live here too, so the macro and the CLI reject the same things.

mod config;
mod kernel;
mod problem;
mod rules;
mod schedule;

pub use config::{Config, ConfigError, Mma};
pub use kernel::{Kernel, KernelDesc};
pub use problem::{BitmapLoad, Blocks, Dtype, Estimate, Layout, Load, Visit, Window, WindowAxis};
pub use rules::{
    MMA_K, MMA_M, MMA_N, MAX_STAGES, MAX_WARPS, SUPPORTED_HEAD_DIMS, check_block_kv,
    check_block_q, check_blocks, check_combination, check_head_dim, check_load, check_mma, check_stages, check_tile_axes, check_warps, check_window,
    check_window_extents,
};
pub use schedule::{Param, Schedule, shape_text, tile_space};
