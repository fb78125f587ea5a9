//! `visit = blocks(estimate(bits = 4, sink = 1, local = 128), causal = true)`: SALE's
//! block-sparse visit. A query tile visits the KV tiles its row of a block map keeps; the map's
//! blocks are the config's tiles, and it reaches the kernel at launch. `estimate(...)` says how
//! the estimation kernel builds the map (every key optional: SALE's int4, one sink tile, a
//! 128-token local window); `causal` (default `true`, SALE's prefill) masks keys past each
//! query's diagonal inside the kept tiles.
//!
//! This stage checks what is written; the rule that needs the tiles (the local window is whole
//! KV tiles) is `validate`'s.

use proc_macro2::{Group, Span};
use syn::Error;
use syn::ext::IdentExt;
use tessera_desc::{Blocks, Estimate};

use super::{Fields, Scope, Spanned, num, one_of};
use crate::errors::Errors;
use crate::parse::{self, Argument, Value, ValueKind};

const BLOCKS: Scope = Scope {
    what: "`blocks(...)`",
    group: Some("blocks"),
    keys: &["causal"],
    required: &[],
};

const ESTIMATE: Scope = Scope {
    what: "`estimate(...)`",
    group: Some("estimate"),
    keys: &["bits", "sink", "local"],
    required: &[],
};

/// `blocks(...)` as written: the description and where `local` was written (the span `validate`
/// points at when no KV tile holds the window whole).
pub struct BlocksSpec {
    pub blocks: Blocks,
    pub local: Span,
}

/// `blocks(...)`, the `value` of `visit`; `args` are the parenthesized arguments.
pub fn blocks(value: &Value, args: &Group) -> syn::Result<BlocksSpec> {
    let mut errors = Errors::default();
    let mut named = Vec::new();
    let mut estimates = Vec::new();
    for argument in parse::arguments(args.stream(), "`blocks(...)` arguments")? {
        match argument {
            Argument::Named(entry) => named.push(entry),
            Argument::Positional(item) => match &item.kind {
                ValueKind::Call(word, args) if word.unraw() == "estimate" => {
                    if !estimates.is_empty() {
                        errors.push(item.error(
                            "`blocks(...)` takes one `estimate(...)`; remove this second one",
                        ));
                    } else {
                        // On an error (recorded) SALE's defaults stand in, so that no "missing
                        // estimate" error follows.
                        let parsed = errors.capture(estimate(args));
                        estimates.push(parsed.unwrap_or((Estimate::SALE, Span::call_site())));
                    }
                }
                ValueKind::Ident(word) if word.unraw() == "estimate" => {
                    errors.push(item.error(
                        "`estimate` needs parentheses: write `estimate()` for SALE's defaults, or e.g. `estimate(bits = 8)`",
                    ));
                    estimates.push((Estimate::SALE, Span::call_site()));
                }
                _ => errors.push(item.error(format!(
                    "`blocks(...)` takes `estimate(...)` and `causal = ...`, found {}",
                    item.describe()
                ))),
            },
        }
    }
    let fields = Fields::new(&BLOCKS, &named, &mut errors);
    let causal = match fields.get("causal") {
        None => Some(true),
        Some(v) => errors.capture(boolean("causal", v)),
    };
    if estimates.is_empty() {
        errors.push(value.error(
            "`blocks(...)` needs the estimate that builds its block map; write e.g. \
             `blocks(estimate(bits = 4), causal = true)`",
        ));
    }
    errors.finish()?;
    let (Some(causal), Some(&(estimate, local))) = (causal, estimates.first()) else {
        return Err(value.error("incomplete `blocks(...)`"));
    };
    Ok(BlocksSpec {
        blocks: Blocks { causal, estimate },
        local,
    })
}

/// `estimate(...)`: keys over SALE's defaults, and where `local` was written.
fn estimate(args: &Group) -> syn::Result<(Estimate, Span)> {
    let entries = parse::entries(args.stream())?;
    let mut errors = Errors::default();
    let fields = Fields::new(&ESTIMATE, &entries, &mut errors);
    let mut read = |key: &str, default: u32| match fields.get(key) {
        None => Some(Spanned {
            value: default,
            span: args.span(),
        }),
        Some(v) => errors.capture(int(key, v)),
    };
    let defaults = Estimate::SALE;
    let (bits, sink, local) = (
        read("bits", defaults.bits.into()),
        read("sink", defaults.sink),
        read("local", defaults.local),
    );
    if let Some(bits) = bits
        && !Estimate::BITS.iter().any(|&b| u32::from(b) == bits.value)
    {
        let known: Vec<String> = Estimate::BITS.iter().map(|b| format!("`{b}`")).collect();
        errors.push(Error::new(
            bits.span,
            format!(
                "an estimate of {} bits is not supported; use {} (int4 is SALE's, int8 suits Hopper, \
                 where 4-bit mma.sync is emulated)",
                bits.value,
                one_of(&known, "or")
            ),
        ));
    }
    errors.finish()?;
    let (Some(bits), Some(sink), Some(local)) = (bits, sink, local) else {
        return Err(Error::new(args.span(), "incomplete `estimate(...)`"));
    };
    let bits = u8::try_from(bits.value).map_err(|_| Error::new(bits.span, "bits out of range"))?;
    Ok((
        Estimate {
            bits,
            sink: sink.value,
            local: local.value,
        },
        local.span,
    ))
}

/// Keys written in the other list of `blocks(...)`, and the threshold, which is no key at all.
pub(super) fn misplaced(key: &str, group: Option<&str>) -> Option<String> {
    Some(match (group, key) {
        (Some("blocks"), "bits" | "sink" | "local") => {
            format!("`{key}` belongs inside the estimate: `blocks(estimate({key} = ...))`")
        }
        (Some("estimate"), "causal") => {
            "`causal` belongs to `blocks(...)`, not to the estimate: `blocks(estimate(...), causal = true)`".to_string()
        }
        (_, "tau" | "threshold" | "thresholds") => format!(
            "`{key}` is not part of the kernel: the thresholds are calibrated per head and passed with \
             the inputs of the estimation"
        ),
        _ => return None,
    })
}

fn int(key: &str, value: &Value) -> syn::Result<Spanned<u32>> {
    match &value.kind {
        ValueKind::Int(lit) => num(key, lit),
        _ => Err(value.error(format!(
            "`{key}` in `estimate(...)` must be an integer such as `{key} = {}`, found {}",
            match key {
                "bits" => 4,
                "sink" => 1,
                _ => 128,
            },
            value.describe()
        ))),
    }
}

fn boolean(key: &str, value: &Value) -> syn::Result<bool> {
    match &value.kind {
        ValueKind::Ident(ident) if ident == "true" => Ok(true),
        ValueKind::Ident(ident) if ident == "false" => Ok(false),
        _ => Err(value.error(format!(
            "`{key}` must be `true` or `false`, found {}",
            value.describe()
        ))),
    }
}
