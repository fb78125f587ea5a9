//! Attribute tokens → a syntax tree of `key = value` entries.
//!
//! Written over raw token trees rather than with `syn::parse` combinators so that one malformed
//! entry does not hide the others: a bad entry is reported and parsing resumes after the next
//! comma at the same nesting level. Nothing here knows which keys exist; that is the model's job.

use std::fmt;

use proc_macro2::{Delimiter, Group, Ident, Span, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::{Error, Lit, LitInt, LitStr};

use crate::errors::Errors;

/// `key = value`.
pub struct Entry {
    pub key: Ident,
    pub value: Value,
}

impl Entry {
    /// The key without any `r#` prefix, which is how keys are compared.
    pub fn key_name(&self) -> String {
        self.key.unraw().to_string()
    }
}

pub struct Value {
    pub kind: ValueKind,
    /// The value's own tokens, so an error can underline all of it (`-64`, `window(dims = 2)`).
    pub tokens: TokenStream,
}

pub enum ValueKind {
    Int(LitInt),
    Str(LitStr),
    Ident(Ident),
    /// `[v, ...]`
    List(Vec<Value>),
    /// `(v, ...)`: one value per position, such as a tile shape `(8, 16)`.
    Tuple(Vec<Value>),
    /// `(key = value, ...)`
    Group(Vec<Entry>),
    /// `name(...)`: arguments stay raw, since each call form has its own syntax (the model parses
    /// `window(...)`'s as entries and `bitmap(...)`'s as items; reserved forms never look inside).
    Call(Ident, Group),
    /// A well-formed token the DSL never accepts; the text describes it for wrong-type errors.
    Other(&'static str),
}

impl Value {
    pub fn error(&self, message: impl fmt::Display) -> Error {
        Error::new_spanned(&self.tokens, message)
    }

    /// What the value is, for "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            ValueKind::Int(_) => format!("the integer `{self}`"),
            ValueKind::Str(_) => format!("the string literal `{self}`"),
            ValueKind::Ident(_) => format!("the identifier `{self}`"),
            ValueKind::List(_) => format!("the list `{self}`"),
            ValueKind::Tuple(_) => format!("the tuple `{self}`"),
            ValueKind::Group(_) => format!("the group `{self}`"),
            ValueKind::Call(..) => format!("the call `{self}`"),
            ValueKind::Other(what) => format!("{what} `{self}`"),
        }
    }
}

/// Source-like text, for messages: `TokenStream`'s own `Display` spaces out `[64 , 128]`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn join<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{item}")?;
            }
            Ok(())
        }
        match &self.kind {
            ValueKind::Int(lit) => write!(f, "{lit}"),
            ValueKind::Str(lit) => write!(f, "{:?}", lit.value()),
            ValueKind::Ident(ident) => write!(f, "{ident}"),
            ValueKind::List(items) => {
                f.write_str("[")?;
                join(f, items)?;
                f.write_str("]")
            }
            ValueKind::Tuple(items) => {
                f.write_str("(")?;
                join(f, items)?;
                f.write_str(")")
            }
            ValueKind::Group(entries) => {
                f.write_str("(")?;
                join(f, entries)?;
                f.write_str(")")
            }
            ValueKind::Call(name, args) => write!(f, "{name}{args}"),
            // Token by token, so `-64` does not print as `- 64`.
            ValueKind::Other(_) => {
                self.tokens.clone().into_iter().try_for_each(|t| write!(f, "{t}"))
            }
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}", self.key, self.value)
    }
}

/// Parses `key = value, ...` (the attribute's arguments, or the inside of a `( ... )` value).
pub fn entries(tokens: TokenStream) -> syn::Result<Vec<Entry>> {
    let mut errors = Errors::default();
    let mut out = Vec::new();
    for segment in split_commas(tokens, &mut errors) {
        if let Some(entry) = errors.capture(entry(&segment)) {
            out.push(entry);
        }
    }
    errors.finish().map(|()| out)
}

fn entry(tokens: &[TokenTree]) -> syn::Result<Entry> {
    let key = match tokens.first() {
        Some(TokenTree::Ident(key)) => key.clone(),
        Some(other) => {
            return Err(Error::new(other.span(), "expected `key = value`, e.g. `head_dim = 128`"));
        }
        None => return Err(Error::new(Span::call_site(), "expected `key = value`")),
    };
    let eq = match tokens.get(1) {
        Some(TokenTree::Punct(p)) if p.as_char() == '=' => p,
        Some(other) => {
            return Err(Error::new(
                other.span(),
                format!("expected `=` after `{key}`, found `{other}`"),
            ));
        }
        None => return Err(Error::new(key.span(), format!("expected `{key} = <value>`"))),
    };
    let rest = &tokens[2..];
    if rest.is_empty() {
        return Err(Error::new(eq.span(), format!("expected a value after `{key} =`")));
    }
    let (value, used) = value(rest)?;
    if let Some(extra) = rest.get(used) {
        return Err(Error::new(
            extra.span(),
            format!("unexpected `{extra}` after `{key} = {value}`; separate entries with commas"),
        ));
    }
    Ok(Entry { key, value })
}

/// Parses one value at the start of `tokens`; returns it and how many token trees it used.
fn value(tokens: &[TokenTree]) -> syn::Result<(Value, usize)> {
    let (kind, used) = match tokens {
        [] => return Err(Error::new(Span::call_site(), "expected a value")),
        [TokenTree::Literal(lit), ..] => (literal(Lit::new(lit.clone())), 1),
        [TokenTree::Punct(minus), TokenTree::Literal(_), ..] if minus.as_char() == '-' => {
            (ValueKind::Other("the negative number"), 2)
        }
        [TokenTree::Ident(name), TokenTree::Group(args), ..]
            if args.delimiter() == Delimiter::Parenthesis =>
        {
            (ValueKind::Call(name.clone(), args.clone()), 2)
        }
        [TokenTree::Ident(ident), ..] => (ValueKind::Ident(ident.clone()), 1),
        [TokenTree::Group(group), ..] => match group.delimiter() {
            Delimiter::Bracket => (ValueKind::List(items(group.stream(), "list items")?), 1),
            Delimiter::Parenthesis if is_tuple(group) => {
                (ValueKind::Tuple(items(group.stream(), "tuple items")?), 1)
            }
            Delimiter::Parenthesis => (ValueKind::Group(entries(group.stream())?), 1),
            Delimiter::Brace => (ValueKind::Other("the block"), 1),
            // An invisible group is what `macro_rules!` leaves around a `$x:expr`: look inside.
            Delimiter::None => {
                let inner: Vec<TokenTree> = group.stream().into_iter().collect();
                let (inner_value, inner_used) = value(&inner)?;
                if inner_used != inner.len() {
                    return Err(Error::new(group.span(), "expected a single value"));
                }
                let tokens = TokenTree::Group(group.clone()).into();
                return Ok((Value { kind: inner_value.kind, tokens }, 1));
            }
        },
        [other, ..] => {
            return Err(Error::new(other.span(), format!("expected a value, found `{other}`")));
        }
    };
    let tokens = tokens[..used].iter().cloned().collect();
    Ok((Value { kind, tokens }, used))
}

fn literal(lit: Lit) -> ValueKind {
    match lit {
        Lit::Int(int) => ValueKind::Int(int),
        Lit::Str(s) => ValueKind::Str(s),
        Lit::Float(_) => ValueKind::Other("the float literal"),
        Lit::Char(_) => ValueKind::Other("the character literal"),
        Lit::Bool(_) => ValueKind::Other("the boolean"),
        Lit::Byte(_) | Lit::ByteStr(_) | Lit::CStr(_) => ValueKind::Other("the byte literal"),
        _ => ValueKind::Other("the literal"),
    }
}

/// `(8, 16)` is a tuple and `(q = 64)` a group of entries, told apart by a top-level `=`. An empty
/// `()` stays a group, so that `tile = ()` reports its missing keys.
fn is_tuple(group: &Group) -> bool {
    let mut tokens = group.stream().into_iter().peekable();
    tokens.peek().is_some()
        && !tokens.any(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == '='))
}

/// One argument of a call whose arguments mix positions and keys, such as
/// `blocks(estimate(bits = 4), causal = true)`.
pub enum Argument {
    Positional(Value),
    Named(Entry),
}

/// Parses a call's arguments: `key = value` where a top-level `=` follows the first token,
/// else a value.
pub fn arguments(tokens: TokenStream, noun: &str) -> syn::Result<Vec<Argument>> {
    let mut errors = Errors::default();
    let mut out = Vec::new();
    for segment in split_commas(tokens, &mut errors) {
        let named = matches!(segment.get(1), Some(TokenTree::Punct(p)) if p.as_char() == '=');
        let parsed = if named {
            entry(&segment).map(Argument::Named)
        } else {
            value(&segment).and_then(|(item, used)| match segment.get(used) {
                None => Ok(Argument::Positional(item)),
                Some(extra) => Err(Error::new(
                    extra.span(),
                    format!("unexpected `{extra}` after `{item}`; separate {noun} with commas"),
                )),
            })
        };
        if let Some(argument) = errors.capture(parsed) {
            out.push(argument);
        }
    }
    errors.finish().map(|()| out)
}

/// The inside of `[ ... ]`, of a tuple's `( ... )` or of a call's arguments; `noun` names what
/// it holds in messages ("list items").
pub fn items(tokens: TokenStream, noun: &str) -> syn::Result<Vec<Value>> {
    let mut errors = Errors::default();
    let mut out = Vec::new();
    for segment in split_commas(tokens, &mut errors) {
        let parsed = value(&segment).and_then(|(item, used)| match segment.get(used) {
            None => Ok(item),
            Some(extra) => Err(Error::new(
                extra.span(),
                format!("unexpected `{extra}` after `{item}`; separate {noun} with commas"),
            )),
        });
        if let Some(item) = errors.capture(parsed) {
            out.push(item);
        }
    }
    errors.finish().map(|()| out)
}

/// Splits at top-level commas (commas inside groups belong to those groups). A trailing comma is
/// allowed; an empty segment elsewhere (`a = 1,, b = 2`) is an error at its comma.
fn split_commas(tokens: TokenStream, errors: &mut Errors) -> Vec<Vec<TokenTree>> {
    let mut segments = Vec::new();
    let mut current = Vec::new();
    for token in tokens {
        match &token {
            TokenTree::Punct(p) if p.as_char() == ',' => {
                if current.is_empty() {
                    errors.push(Error::new(p.span(), "unexpected `,`"));
                } else {
                    segments.push(std::mem::take(&mut current));
                }
            }
            _ => current.push(token),
        }
    }
    if !current.is_empty() {
        segments.push(current);
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn parse(tokens: TokenStream) -> Vec<Entry> {
        match entries(tokens) {
            Ok(entries) => entries,
            Err(e) => panic!("unexpected parse error: {e}"),
        }
    }

    fn error(tokens: TokenStream) -> String {
        match entries(tokens) {
            Ok(entries) => panic!("expected an error, parsed {} entries", entries.len()),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect::<Vec<_>>().join(" | "),
        }
    }

    #[test]
    fn every_value_form() {
        let entries = parse(quote! {
            a = 128, b = "x", c = bf16, d = [64, 128], e = (q = 1, kv = [2]), f = window(dims = 2),
            g = -1, h = 1.5, i = { 1 }, j = (8, [8, 16]),
        });
        let rendered: Vec<String> = entries.iter().map(|e| format!("{e}")).collect();
        assert_eq!(
            rendered,
            [
                "a = 128",
                "b = \"x\"",
                "c = bf16",
                "d = [64, 128]",
                "e = (q = 1, kv = [2])",
                "f = window(dims = 2)",
                "g = -1",
                "h = 1.5",
                "i = { 1 }",
                "j = (8, [8, 16])",
            ]
        );
        assert!(matches!(entries[0].value.kind, ValueKind::Int(_)));
        assert!(matches!(entries[6].value.kind, ValueKind::Other("the negative number")));
        assert!(matches!(entries[7].value.kind, ValueKind::Other("the float literal")));
    }

    #[test]
    fn empty_and_trailing_commas() {
        assert!(parse(quote! {}).is_empty());
        assert_eq!(parse(quote! { a = 1, }).len(), 1);
        assert!(
            matches!(&parse(quote! { a = [] })[0].value.kind, ValueKind::List(v) if v.is_empty())
        );
        assert!(
            matches!(&parse(quote! { a = [1,] })[0].value.kind, ValueKind::List(v) if v.len() == 1)
        );
        assert_eq!(error(quote! { a = 1,, b = 2 }), "unexpected `,`");
    }

    #[test]
    fn parentheses_hold_entries_or_a_tuple() {
        let entries = parse(quote! { a = (), b = (64), c = (x = (1, 2)), d = ((1, 2), 3) });
        assert!(matches!(&entries[0].value.kind, ValueKind::Group(e) if e.is_empty()));
        assert!(matches!(&entries[1].value.kind, ValueKind::Tuple(v) if v.len() == 1));
        let ValueKind::Group(inner) = &entries[2].value.kind else { panic!("not a group") };
        assert!(matches!(&inner[0].value.kind, ValueKind::Tuple(v) if v.len() == 2));
        assert!(matches!(&entries[3].value.kind, ValueKind::Tuple(v) if v.len() == 2));
        assert_eq!(entries[3].value.describe(), "the tuple `((1, 2), 3)`");
        assert_eq!(
            error(quote! { q = (8 16) }),
            "unexpected `16` after `8`; separate tuple items with commas"
        );
    }

    #[test]
    fn raw_keys_compare_without_prefix() {
        assert_eq!(parse(quote! { r#type = 1 })[0].key_name(), "type");
    }

    #[test]
    fn invisible_groups_from_macro_rules_are_transparent() {
        let inner = TokenTree::Group(Group::new(Delimiter::None, quote! { 64 }));
        let entries = parse(quote! { q = #inner });
        assert!(matches!(&entries[0].value.kind, ValueKind::Int(i) if i.base10_digits() == "64"));
    }

    #[test]
    fn malformed_entries_are_all_reported() {
        assert_eq!(
            error(quote! { head_dim 128, dtype: bf16, = 3, visit = }),
            "expected `=` after `head_dim`, found `128` | expected `=` after `dtype`, found `:` \
             | expected `key = value`, e.g. `head_dim = 128` | expected a value after `visit =`"
        );
        assert_eq!(error(quote! { tile }), "expected `tile = <value>`");
    }

    #[test]
    fn missing_comma_is_reported_at_the_next_token() {
        assert_eq!(
            error(quote! { head_dim = 128 dtype = bf16 }),
            "unexpected `dtype` after `head_dim = 128`; separate entries with commas"
        );
        assert_eq!(
            error(quote! { q = [64 128] }),
            "unexpected `128` after `64`; separate list items with commas"
        );
    }

    #[test]
    fn errors_inside_groups_surface() {
        assert_eq!(
            error(quote! { tile = (q = , kv = 64), tune = (warps = [4 ; 8]) }),
            "expected a value after `q =` | unexpected `;` after `4`; separate list items with \
             commas"
        );
    }
}
