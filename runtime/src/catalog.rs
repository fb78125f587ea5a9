//! The built-in kernels: what `tessera list`, `emit` and `check` know without a user crate.
//!
//! Each one is written with the DSL exactly as a user would, so the catalog also exercises the
//! macro on every visit × dtype × head_dim combination the lowering supports.

use tessera::{Kernel, KernelDesc};

/// Stamps one `#[tessera::attention]` kernel per row, all sharing one tuning space, and collects
/// their descriptions into [`ALL`].
///
/// Each row spells out the name rather than leaving it to the struct name's snake case: the
/// catalog names are a CLI interface and must not change if the macro's case conversion does.
macro_rules! catalog {
    ($($ty:ident => $name:literal: { $($visit:tt)* }, $dtype:ident, $head_dim:literal;)*) => {
        $(
            #[tessera_dsl::attention(
                name = $name,
                head_dim = $head_dim,
                dtype = $dtype,
                visit = $($visit)*,
                tile = (q = [128, 64], kv = [64, 32, 128]),
                tune = (warps = [4, 8], stages = [2, 1, 3]),
            )]
            pub struct $ty;
        )*

        /// Every catalog kernel, in listing order.
        pub static ALL: &[KernelDesc] = &[$(<$ty as Kernel>::DESC),*];
    };
}

catalog! {
    DenseBf16D64 => "dense_bf16_d64": { dense }, bf16, 64;
    DenseBf16D128 => "dense_bf16_d128": { dense }, bf16, 128;
    DenseF16D64 => "dense_f16_d64": { dense }, f16, 64;
    DenseF16D128 => "dense_f16_d128": { dense }, f16, 128;
    CausalBf16D64 => "causal_bf16_d64": { causal }, bf16, 64;
    CausalBf16D128 => "causal_bf16_d128": { causal }, bf16, 128;
    CausalF16D64 => "causal_f16_d64": { causal }, f16, 64;
    CausalF16D128 => "causal_f16_d128": { causal }, f16, 128;
    // 1-D neighborhoods: the window is part of the kernel (compile time), the sequence is not.
    Na1dW2048F16D128 => "na1d_w2048_f16_d128": { window(size = 2048) }, f16, 128;
    Na1dW13D2Bf16D128 => "na1d_w13_d2_bf16_d128": { window(size = 13, dilation = 2) }, bf16, 128;
}

/// Every catalog kernel, in listing order.
pub fn all() -> &'static [KernelDesc] {
    ALL
}

/// The tuning space every catalog kernel shares (one macro stamps them all), for kernels the
/// runtime builds itself, such as `tessera run na`.
pub fn schedule() -> tessera::Schedule {
    ALL[0].schedule
}

/// The catalog kernel called `name`.
pub fn find(name: &str) -> Option<&'static KernelDesc> {
    ALL.iter().find(|k| k.name == name)
}

/// The catalog's names, comma-separated, for "unknown kernel" messages.
pub fn names() -> String {
    ALL.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_kernel_shares_the_schedule() {
        assert!(ALL.iter().all(|k| k.schedule == schedule()));
    }

    #[test]
    fn covers_every_combination_once() {
        let combos: HashSet<_> = ALL.iter().map(|k| (k.visit, k.dtype, k.head_dim)).collect();
        assert_eq!(ALL.len(), 10);
        assert_eq!(combos.len(), 10);
    }

    // The rows give name and parameters separately; this keeps them from drifting apart.
    #[test]
    fn names_follow_the_parameters() {
        for k in ALL {
            let visit = match k.visit {
                tessera::Visit::Window(w) => {
                    let a = w.axes[0];
                    let dilation = if a.dilation > 1 { format!("_d{}", a.dilation) } else { String::new() };
                    format!("na{}d_w{}{dilation}", w.dims, a.size)
                }
                other => other.name().to_string(),
            };
            let expected = format!("{visit}_{}_d{}", k.dtype.name(), k.head_dim);
            assert_eq!(k.name, expected);
            assert_eq!(find(k.name), Some(k));
        }
        assert_eq!(find("nope"), None);
    }

    #[test]
    fn every_kernel_has_the_shared_space() {
        for k in ALL {
            // 2 block_q × 3 block_kv × 2 warps × 3 stages, minus block_q=64 with 8 warps.
            assert_eq!(k.configs().len(), 27, "{}", k.name);
            assert_eq!(k.load, tessera::Load::Dense);
            assert_eq!(k.layout, tessera::Layout::Bhsd);
        }
    }
}
