//! The front end under mangled input: whatever tokens reach the attribute, the macro answers
//! with our expansion or with compile errors, never a panic (a panicking proc macro gives the
//! user rustc's "proc macro panicked" and no span). Valid definitions mutated token by token
//! cover near-misses, the kind of input users actually write.

use proc_macro2::{Delimiter, Group, Literal, Punct, Spacing, TokenStream, TokenTree};
use proptest::prelude::*;
use quote::quote;

use crate::expand::attention;

/// Definitions that pass, one per front-end path (visits, windows in 1-3 axes, tile shapes,
/// bitmap loads, tuning lists).
fn valid() -> Vec<TokenStream> {
    vec![
        quote!(head_dim = 128, dtype = bf16, visit = causal, tile = (q = [64, 128], kv = 64), tune = (warps = [4, 8], stages = [1, 2])),
        quote!(head_dim = 64, dtype = f16, visit = dense, tile = (q = 64, kv = [32, 64])),
        quote!(head_dim = 128, dtype = f16, visit = window(size = 13, dilation = 2, stride = 2, causal = true), tile = (q = 64, kv = 64)),
        quote!(head_dim = 128, dtype = bf16, visit = window(size = [13, 9], dilation = [2, 1], causal = [true, false]), tile = (q = (8, 16), kv = (8, [8, 16]))),
        quote!(name = "na3d", head_dim = 128, dtype = bf16, visit = window(size = [3, 5, 7]), tile = (q = (1, 8, 8), kv = (1, 4, [8, 16])), tune = (warps = 4)),
        quote!(head_dim = 128, dtype = bf16, visit = dense, load = bitmap(k, v), tile = (q = 16, kv = [64, 128]), tune = (warps = 1, stages = 2)),
    ]
}

/// Tokens a mutation may put in: every keyword and value word the front end knows, numbers at
/// and past the limits, and the punctuation of the grammar.
fn vocabulary() -> Vec<TokenTree> {
    let mut out: Vec<TokenTree> = [
        "head_dim", "dtype", "visit", "load", "tile", "tune", "name", "layout", "q", "kv", "warps", "stages", "window",
        "size", "dilation", "stride", "causal", "bitmap", "blocks", "k", "v", "dense", "bf16", "f16", "f32", "bhsd",
        "true", "false", "x",
    ]
    .iter()
    .map(|w| TokenTree::Ident(proc_macro2::Ident::new(w, proc_macro2::Span::call_site())))
    .collect();
    for n in [0u64, 1, 7, 8, 16, 64, 65, 256, 4096, u32::MAX as u64 + 1] {
        out.push(TokenTree::Literal(Literal::u64_unsuffixed(n)));
    }
    out.extend([TokenTree::Literal(Literal::string("k")), TokenTree::Literal(Literal::f64_unsuffixed(1.5))]);
    for c in [',', '=', '-', ':', ';', '.'] {
        out.push(TokenTree::Punct(Punct::new(c, Spacing::Alone)));
    }
    for d in [Delimiter::Parenthesis, Delimiter::Bracket, Delimiter::Brace] {
        out.push(TokenTree::Group(Group::new(d, TokenStream::new())));
    }
    out
}

#[derive(Clone, Debug)]
enum Edit {
    Delete,
    Replace(usize),
    Insert(usize),
    Duplicate,
}

/// Applies `edits` (each at a position taken modulo the current length) to a flat token list,
/// recursing into groups so that arguments inside `(...)` and `[...]` are mutated too.
fn mutate(stream: TokenStream, edits: &[(usize, Edit)], vocab: &[TokenTree]) -> TokenStream {
    let mut tokens: Vec<TokenTree> = stream.into_iter().collect();
    for (at, edit) in edits {
        if tokens.is_empty() {
            break;
        }
        let i = at % tokens.len();
        match edit {
            Edit::Delete => {
                tokens.remove(i);
            }
            Edit::Replace(w) => tokens[i] = vocab[w % vocab.len()].clone(),
            Edit::Insert(w) => tokens.insert(i, vocab[w % vocab.len()].clone()),
            Edit::Duplicate => tokens.insert(i, tokens[i].clone()),
        }
        // Half of the edits land inside the group at this position, if it is one.
        if at % 2 == 1
            && let Some(TokenTree::Group(g)) = tokens.get(i).cloned()
        {
            let inner = mutate(g.stream(), &[(at / 2, edit.clone())], vocab);
            tokens[i] = TokenTree::Group(Group::new(g.delimiter(), inner));
        }
    }
    tokens.into_iter().collect()
}

fn edit() -> impl Strategy<Value = (usize, Edit)> {
    (any::<usize>(), prop_oneof![Just(Edit::Delete), any::<usize>().prop_map(Edit::Replace), any::<usize>().prop_map(Edit::Insert), Just(Edit::Duplicate)])
}

#[test]
fn every_valid_definition_expands_without_errors() {
    for attr in valid() {
        let out = attention(attr.clone(), quote!(pub struct K;)).to_string();
        assert!(!out.contains("compile_error"), "{attr}: {out}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn mangled_definitions_get_errors_not_panics(which in any::<usize>(), edits in proptest::collection::vec(edit(), 1..5)) {
        let defs = valid();
        let attr = mutate(defs[which % defs.len()].clone(), &edits, &vocabulary());
        let shown = attr.to_string();
        let out = std::panic::catch_unwind(|| attention(attr, quote!(pub struct K;)).to_string());
        prop_assert!(out.is_ok(), "the macro panicked on `{}`", shown);
    }
}
