//! `#[tessera::attention(...)]`: turns an attention kernel definition into a
//! `tessera::Kernel` impl, checked at compile time by the same rules tessera-desc applies at run
//! time. Stages: `parse` (tokens → entries) → `model` (typed, spanned) → `validate` → `expand`.

mod errors;
mod expand;
mod model;
mod parse;
mod validate;

use proc_macro::TokenStream;

#[proc_macro_attribute]
pub fn attention(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::attention(attr.into(), item.into()).into()
}
