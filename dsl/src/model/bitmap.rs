//! `load = bitmap(k, v)`: K and/or V read from Mustafar's bitmap-compressed cache.
//!
//! The arguments name the tensors read compressed, each at most once. This stage checks only what
//! is written; the KV tile rule of a bitmap load (`tessera_desc::check_load`) needs the tiles, so
//! `validate` applies it.

use proc_macro2::Group;
use syn::ext::IdentExt;
use tessera_desc::BitmapLoad;

use crate::errors::Errors;
use crate::parse::{self, Value, ValueKind};

/// The flag of `BitmapLoad` one argument turns on.
type Flag = fn(&mut BitmapLoad) -> &mut bool;

/// The arguments, each with its flag.
const TENSORS: [(&str, Flag); 2] = [("k", |load| &mut load.k), ("v", |load| &mut load.v)];

/// `bitmap(...)`, the `value` of `load`; `args` are the parenthesized arguments.
pub fn bitmap(value: &Value, args: &Group) -> syn::Result<BitmapLoad> {
    let items = parse::items(args.stream(), "`bitmap(...)` arguments")?;
    if items.is_empty() {
        return Err(value.error(
            "`bitmap()` names no tensor to read compressed; write `bitmap(k, v)`, `bitmap(k)` or \
             `bitmap(v)`",
        ));
    }
    let mut errors = Errors::default();
    let mut load = BitmapLoad { k: false, v: false };
    for item in &items {
        let Some(flag) = errors.capture(argument(item)) else { continue };
        let on = flag(&mut load);
        if *on {
            errors.push(item.error(format!(
                "duplicate argument `{item}` in `bitmap(...)`; list each tensor once"
            )));
        }
        *on = true;
    }
    errors.finish().map(|()| load)
}

/// The flag one argument turns on, or why it names no tensor.
fn argument(item: &Value) -> syn::Result<Flag> {
    let ValueKind::Ident(ident) = &item.kind else {
        let fix = match &item.kind {
            ValueKind::Str(s) => {
                meant(&s.value()).map(|fix| format!("; remove the quotes: `{fix}`"))
            }
            _ => None,
        };
        return Err(item.error(format!(
            "`bitmap(...)` takes the identifiers `k` and `v`, found {}{}",
            item.describe(),
            fix.unwrap_or_default()
        )));
    };
    let word = ident.unraw().to_string();
    if let Some((_, flag)) = TENSORS.iter().find(|(name, _)| *name == word) {
        return Ok(*flag);
    }
    let hint = match meant(&word) {
        Some(fix) => format!("; write `{fix}`"),
        None => "; expected `k` (keys) or `v` (values)".to_string(),
    };
    Err(item.error(format!("unknown argument `{word}` in `bitmap(...)`{hint}")))
}

/// The arguments a word probably stands for: the tensors' long names and capitals, which edit
/// distance cannot guess from one-letter names (it would offer `k` for `q`).
fn meant(word: &str) -> Option<&'static str> {
    match word.to_lowercase().as_str() {
        "k" | "key" | "keys" => Some("k"),
        "v" | "value" | "values" => Some("v"),
        "kv" | "k_v" => Some("k, v"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::{Delimiter, Ident, Span, TokenStream};
    use quote::quote;

    fn load(args: TokenStream) -> syn::Result<BitmapLoad> {
        let group = Group::new(Delimiter::Parenthesis, args);
        let name = Ident::new("bitmap", Span::call_site());
        let value =
            Value { tokens: quote!(#name #group), kind: ValueKind::Call(name, group.clone()) };
        bitmap(&value, &group)
    }

    fn messages(args: TokenStream) -> Vec<String> {
        match load(args) {
            Ok(_) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn arguments_turn_on_their_tensor() {
        let ok = |args: TokenStream| load(args).map_err(|e| e.to_string());
        assert_eq!(ok(quote!(k, v)), Ok(BitmapLoad { k: true, v: true }));
        assert_eq!(ok(quote!(v, k,)), Ok(BitmapLoad { k: true, v: true }));
        assert_eq!(ok(quote!(k)), Ok(BitmapLoad { k: true, v: false }));
        assert_eq!(ok(quote!(r#v)), Ok(BitmapLoad { k: false, v: true }));
    }

    #[test]
    fn argument_errors_accumulate() {
        assert_eq!(
            messages(quote!()),
            ["`bitmap()` names no tensor to read compressed; write `bitmap(k, v)`, `bitmap(k)` \
              or `bitmap(v)`"]
        );
        assert_eq!(
            messages(quote!(k, K, values, kv, q, "v", 1, k)),
            [
                "unknown argument `K` in `bitmap(...)`; write `k`",
                "unknown argument `values` in `bitmap(...)`; write `v`",
                "unknown argument `kv` in `bitmap(...)`; write `k, v`",
                "unknown argument `q` in `bitmap(...)`; expected `k` (keys) or `v` (values)",
                "`bitmap(...)` takes the identifiers `k` and `v`, found the string literal `\"v\"`; \
                 remove the quotes: `v`",
                "`bitmap(...)` takes the identifiers `k` and `v`, found the integer `1`",
                "duplicate argument `k` in `bitmap(...)`; list each tensor once",
            ]
        );
        assert_eq!(
            messages(quote!(k v)),
            ["unexpected `v` after `k`; separate `bitmap(...)` arguments with commas"]
        );
    }
}
