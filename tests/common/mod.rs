//! What the snapshot and PTX-check tests share: the kernels and the config each one pins.

use tessera::{Config, KernelDesc};

/// Fixed rather than each kernel's default, so that a change of the catalog's tuning space does
/// not rewrite every snapshot. Two stages so the cp.async pipeline is in the PTX; one 16-row
/// slab per warp so that every pinned config assembles without spills.
const LINE: Config = Config::line(64, 64, 4, 2);

/// The representatives: both dense visits, both dtypes, both head dims, a neighborhood over
/// a 1-, 2- and 3-D grid (dilated, and causal along one axis) with box tiles, and the Mustafar
/// decode kernel (bitmap loads, split-KV, its merge entry).
pub const CASES: [(&str, Config); 7] = [
    ("dense_bf16_d128", LINE),
    ("causal_bf16_d128", LINE),
    ("causal_f16_d64", LINE),
    ("na1d_w13_d2_bf16_d128", LINE),
    ("na2d_w13x13_d2x2_bf16_d128", Config { q_tile: [8, 8, 1], kv_tile: [4, 8, 1], warps: 4, stages: 2 }),
    ("na3d_w7x15x15_c100_bf16_d128", Config { q_tile: [1, 8, 8], kv_tile: [1, 4, 8], warps: 4, stages: 2 }),
    ("mustafar_bf16_d128", LINE),
];

pub fn kernel(name: &str) -> &'static KernelDesc {
    match tessera_runtime::catalog::find(name) {
        Some(desc) => desc,
        None => panic!("`{name}` is not in the catalog"),
    }
}
