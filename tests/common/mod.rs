//! What the snapshot and PTX-check tests share: the kernels and the config each one pins.

use tessera::{Config, KernelDesc, Mma, Target};

/// Fixed rather than each kernel's default, so that a change of the catalog's tuning space does
/// not rewrite every snapshot. Two stages so the cp.async pipeline is in the PTX; one 16-row
/// slab per warp so that every pinned config assembles without spills.
const LINE: Config = Config::line(64, 64, 4, 2);

/// The representatives: both dense visits, both dtypes, both head dims, a neighborhood over
/// a 1-, 2- and 3-D grid (dilated, and causal along one axis) with box tiles, SALE's block-sparse
/// visit at SALE's 64 × 32 tiles, and the Mustafar decode kernel (bitmap loads, split-KV, its
/// merge entry).
pub const CASES: [(&str, Config); 8] = [
    ("dense_bf16_d128", LINE),
    ("causal_bf16_d128", LINE),
    ("causal_f16_d64", LINE),
    ("na1d_w13_d2_bf16_d128", LINE),
    ("na2d_w13x13_d2x2_bf16_d128", Config { q_tile: [8, 8, 1], kv_tile: [4, 8, 1], warps: 4, stages: 2, mma: Mma::Sync }),
    ("na3d_w7x15x15_c100_bf16_d128", Config { q_tile: [1, 8, 8], kv_tile: [1, 4, 8], warps: 4, stages: 2, mma: Mma::Sync }),
    ("sale_causal_bf16_d128", Config::line(64, 32, 4, 2)),
    ("mustafar_bf16_d128", LINE),
];

/// Cases emitted with wgmma for sm_90a (the only target that has it): the FlashAttention-3
/// shape (two warpgroups, 128×128 tiles), f16 at head_dim 64 with two 64-row slabs per
/// warpgroup, box tiles over a 2-D grid, and the block-sparse visit.
pub const WGMMA_CASES: [(&str, Config); 4] = [
    ("dense_bf16_d128", Config::line(128, 128, 8, 2).with_mma(Mma::Wgmma)),
    ("causal_f16_d64", Config::line(128, 64, 4, 2).with_mma(Mma::Wgmma)),
    ("na2d_w13x13_d2x2_bf16_d128", CASES[4].1.with_mma(Mma::Wgmma)),
    ("sale_causal_bf16_d128", CASES[6].1.with_mma(Mma::Wgmma)),
];

/// Every (kernel, config, target) that the PTX tests cover, with the name of its snapshot.
pub fn ptx_cases() -> Vec<(String, &'static KernelDesc, Config, Target)> {
    let mut out = Vec::new();
    for (name, config) in CASES {
        for target in Target::ALL {
            out.push((format!("{name}_{target}"), kernel(name), config, target));
        }
    }
    for (name, config) in WGMMA_CASES {
        out.push((format!("{name}_wgmma_{}", Target::Sm90a), kernel(name), config, Target::Sm90a));
    }
    out
}

pub fn kernel(name: &str) -> &'static KernelDesc {
    match tessera_runtime::catalog::find(name) {
        Some(desc) => desc,
        None => panic!("`{name}` is not in the catalog"),
    }
}
