//! What the snapshot and PTX-check tests share: the kernels and the one config they pin.

use tessera::{Config, KernelDesc};

/// The dense family's representatives: both visits, both dtypes, both head dims.
pub const KERNELS: [&str; 3] = ["dense_bf16_d128", "causal_bf16_d128", "causal_f16_d64"];

/// Fixed rather than each kernel's default, so that a change of the catalog's tuning space does
/// not rewrite every snapshot. Two stages so the cp.async pipeline is in the PTX.
pub const CONFIG: Config = Config::line(64, 64, 4, 2);

pub fn kernel(name: &str) -> &'static KernelDesc {
    match tessera_runtime::catalog::find(name) {
        Some(desc) => desc,
        None => panic!("`{name}` is not in the catalog"),
    }
}
