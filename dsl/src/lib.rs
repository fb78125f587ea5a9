//! `#[tessera::attention(...)]`: turns an attention kernel definition into a
//! `tessera::Kernel` impl, checked at compile time by the same rules tessera-desc applies at run
//! time. Stages: `parse` (tokens → entries) → `model` (typed, spanned) → `validate` → `expand`.

mod errors;
mod expand;
#[cfg(test)]
mod fuzz;
mod model;
mod parse;
mod validate;

use proc_macro::TokenStream;

/// Describes the attention kernel the struct stands for and implements `tessera::Kernel` for it.
///
/// ```text
/// #[tessera::attention(
///     head_dim = 128,                             // 64 or 128
///     dtype = bf16,                               // bf16 or f16
///     visit = window(size = [7, 7], dilation = 2), // dense, causal or window(...)
///     tile = (q = (8, 16), kv = (8, [8, 16])),    // required
///     tune = (warps = [4, 8], stages = [1, 2]),   // optional: 4 warps, 2 stages
///     layout = bhsd, load = dense, name = "na2d", // optional; load: dense or bitmap(...)
/// )]
/// pub struct Na2d;
/// ```
///
/// `tile` gives the query tile (`q`) and the KV tile (`kv`); like `warps` and `stages`, each
/// extent is an integer or a list of choices for the tuner (`[32, 64]`).
/// - Dense, causal and 1-D window kernels take runs of tokens: `q = 64`, `kv = [32, 64]`.
/// - A window over 2 or 3 axes takes a tile shape with one extent per axis, in the order of
///   `size`: `q = (8, 16)` is 8 × 16 = 128 query rows, and `kv = (8, [8, 16])` lets the tuner
///   pick 8 × 8 or 8 × 16 keys.
///
/// `load = bitmap(k, v)` reads K and V from Mustafar's bitmap-compressed cache (`bitmap(k)` or
/// `bitmap(v)` only one of them). Its bitmap tiles hold 64 tokens, so the tuner keeps only the KV
/// tiles that are runs of a multiple of 64 keys: `kv = [32, 64, 128]` tunes over 64 and 128, and
/// a `kv` that leaves none is an error.
///
/// Rows and keys (the product of a shape's extents, for every combination of its choices) must
/// be multiples of 16 up to 256, and some choice of rows must split into 16-row slabs over some
/// choice of warps. Every mistake is a compile error at the offending token.
#[proc_macro_attribute]
pub fn attention(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::attention(attr.into(), item.into()).into()
}
