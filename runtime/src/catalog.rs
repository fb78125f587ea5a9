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
    (
        $($ty:ident => $name:literal: { $($visit:tt)* }, $dtype:ident, $head_dim:literal;)*
        @others $($other:ident),* $(,)?
    ) => {
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
        pub static ALL: &[KernelDesc] = &[$(<$ty as Kernel>::DESC,)* $(<$other as Kernel>::DESC),*];
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
    // SALE's block-sparse causal prefill: visits the KV tiles a block map (a launch input, in
    // the config's tiles; SALE's 64 × 32 is one config of the space) keeps.
    SaleCausalBf16D128 => "sale_causal_bf16_d128": { blocks(estimate(bits = 4, sink = 1, local = 128), causal = true) }, bf16, 128;
    @others Na2dW80x80F16D128, Na3dW18x24x24F16D128, Na2dW13x13D2Bf16D128, Na3dW7x15x15C100Bf16D128,
    MustafarBf16D128, MustafarF16D128,
}

// 2-D and 3-D neighborhoods: NATTEN's benchmark cases (seeds.md §3). Their tiles are boxes of
// the grid, so each has its own space of per-axis tile shapes: query boxes of 128 or 64 tokens
// and KV boxes of 32 to 128. Four warps: on the H100, 8-warp mma.sync configs were 10-20%
// slower on every one of these cases, and 256-token query boxes spilled kilobytes; on the H200
// two 64-row warpgroups under wgmma were too (80×80: 16.41 ms against one warpgroup's 15.12).
#[tessera_dsl::attention(
    name = "na2d_w80x80_f16_d128",
    head_dim = 128,
    dtype = f16,
    visit = window(size = [80, 80]),
    tile = (q = ([16, 8], 8), kv = ([8, 4], [8, 16])),
    tune = (warps = 4, stages = [2, 3]),
)]
pub struct Na2dW80x80F16D128;

// 3-D boxes (both 3-D kernels share the space, as `grid_schedule` hands it to `run na`): the
// measured H100 winners (1×8×8 over 2×4×8; causal: over 1×8×8) first, and the shapes that waste
// least on the 18×24×24 case's grid (`cost::window_efficiency`: 2×8×4 over 2×4×4 computes 74%
// useful pairs against the winner's 57%), not yet timed.
#[tessera_dsl::attention(
    name = "na3d_w18x24x24_f16_d128",
    head_dim = 128,
    dtype = f16,
    visit = window(size = [18, 24, 24]),
    tile = (q = ([1, 2], 8, [8, 4]), kv = ([2, 1], [4, 8], [8, 4])),
    tune = (warps = 4, stages = [2, 3]),
)]
pub struct Na3dW18x24x24F16D128;

#[tessera_dsl::attention(
    name = "na2d_w13x13_d2x2_bf16_d128",
    head_dim = 128,
    dtype = bf16,
    visit = window(size = [13, 13], dilation = 2),
    tile = (q = ([16, 8], 8), kv = ([8, 4], [8, 16])),
    tune = (warps = 4, stages = [2, 3]),
)]
pub struct Na2dW13x13D2Bf16D128;

#[tessera_dsl::attention(
    name = "na3d_w7x15x15_c100_bf16_d128",
    head_dim = 128,
    dtype = bf16,
    visit = window(size = [7, 15, 15], causal = [true, false, false]),
    tile = (q = ([1, 2], 8, [8, 4]), kv = ([2, 1], [4, 8], [8, 4])),
    tune = (warps = 4, stages = [2, 3]),
)]
pub struct Na3dW7x15x15C100Bf16D128;

// Mustafar decode (seeds.md §1): K and V read from the bitmap-compressed cache plus its dense
// window, one query token per head (`ir::decode`). Warps own 16-row query slabs, so the choice
// is 4 warps over 64 rows, each holding the GQA group (up to 16 heads) and multiplying a quarter
// of every KV tile's keys, or 1 warp over 16 rows (a quarter of the decoding threads). 4 warps
// over 128 rows hold groups of up to 32 heads (two slabs a warp, one CTA an SM, no spills). 1
// warp over 64 or 128 rows spills kilobytes and the tuner never times it, but those configs
// hold groups of 33 to 64 and 65 to 128 heads (`tune::policy` falls back to the fewest rows that
// hold the group). KV tiles are single 64-token bitmap tiles.
#[tessera_dsl::attention(
    name = "mustafar_bf16_d128",
    head_dim = 128,
    dtype = bf16,
    visit = dense,
    load = bitmap(k, v),
    tile = (q = [64, 16, 128], kv = 64),
    tune = (warps = [4, 1], stages = [2, 1, 3]),
)]
pub struct MustafarBf16D128;

#[tessera_dsl::attention(
    name = "mustafar_f16_d128",
    head_dim = 128,
    dtype = f16,
    visit = dense,
    load = bitmap(k, v),
    tile = (q = [64, 16, 128], kv = 64),
    tune = (warps = [4, 1], stages = [2, 1, 3]),
)]
pub struct MustafarF16D128;

/// Every catalog kernel, in listing order.
pub fn all() -> &'static [KernelDesc] {
    ALL
}

/// The tuning space of the catalog's kernels over a `dims`-D token grid (kernels of one
/// dimensionality share theirs), for kernels the runtime builds itself over such a grid: 1-D
/// tiles are runs of tokens, 2-D and 3-D tiles boxes of the grid. `None` past 3 axes.
pub fn grid_schedule(dims: u8) -> Option<tessera::Schedule> {
    attention().find(|k| k.visit.grid_dims() == dims as usize).map(|k| k.schedule)
}

/// The kernels that attend dense K/V tensors (all but the Mustafar decode kernels).
pub fn attention() -> impl Iterator<Item = &'static KernelDesc> {
    ALL.iter().filter(|k| k.load == tessera::Load::Dense)
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

    /// Kernels whose tiles are runs of tokens (all but the 2-D/3-D neighborhoods).
    fn on_a_line(k: &KernelDesc) -> bool {
        k.visit.grid_dims() == 1
    }

    #[test]
    fn kernels_of_one_dimensionality_share_a_schedule() {
        for dims in 1..=3 {
            let space = grid_schedule(dims).unwrap();
            let same = attention().filter(|k| k.visit.grid_dims() == dims as usize).all(|k| k.schedule == space);
            assert!(same, "{dims}-D");
        }
        assert_eq!(grid_schedule(4), None);
    }

    #[test]
    fn covers_every_combination_once() {
        let combos: HashSet<_> = ALL.iter().map(|k| (k.visit, k.load, k.dtype, k.head_dim)).collect();
        assert_eq!(ALL.len(), 17);
        assert_eq!(combos.len(), 17);
    }

    // The rows give name and parameters separately; this keeps them from drifting apart.
    #[test]
    fn names_follow_the_parameters() {
        for k in ALL {
            let visit = match k.visit {
                tessera::Visit::Window(w) => {
                    let axes = w.axes();
                    let join = |f: &dyn Fn(&tessera::WindowAxis) -> String| axes.iter().map(f).collect::<Vec<_>>().join("x");
                    let mut name = format!("na{}d_w{}", w.dims, join(&|a| a.size.to_string()));
                    if axes.iter().any(|a| a.dilation > 1) {
                        name += &format!("_d{}", join(&|a| a.dilation.to_string()));
                    }
                    if axes.iter().any(|a| a.causal) {
                        name += &format!("_c{}", axes.iter().map(|a| if a.causal { "1" } else { "0" }).collect::<String>());
                    }
                    name
                }
                tessera::Visit::Blocks(b) => {
                    assert_eq!(b.estimate, tessera::Estimate::SALE, "{}", k.name);
                    if b.causal { "sale_causal" } else { "sale" }.to_string()
                }
                _ if k.load != tessera::Load::Dense => "mustafar".to_string(),
                other => other.name().to_string(),
            };
            let expected = format!("{visit}_{}_d{}", k.dtype.name(), k.head_dim);
            assert_eq!(k.name, expected);
            assert_eq!(find(k.name), Some(k));
        }
        assert_eq!(find("nope"), None);
    }

    #[test]
    fn every_kernel_has_a_space() {
        for k in attention() {
            let n = k.configs().len();
            if on_a_line(k) {
                // 2 block_q × 3 block_kv × 2 warps × 3 stages, minus block_q=64 with 8 warps.
                assert_eq!(n, 27, "{}", k.name);
            } else {
                assert!(n >= 8, "{}: {n} configs", k.name);
            }
            assert_eq!(k.load, tessera::Load::Dense);
            assert_eq!(k.layout, tessera::Layout::Bhsd);
        }
        for k in ALL.iter().filter(|k| k.load != tessera::Load::Dense) {
            // 3 block_q × 2 warps × 3 stages, minus block_q=16 over 4 warps.
            assert_eq!(k.configs().len(), 15, "{}", k.name);
            assert_eq!(k.load, tessera::Load::Bitmap(tessera::BitmapLoad { k: true, v: true }));
        }
    }
}
