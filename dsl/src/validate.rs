//! The rules a well-formed definition must still pass. The per-value rules and their messages come
//! from `tessera_desc`, the same functions the CLI and runtime apply to configs given at run time,
//! so the two can never disagree; this module only decides where each message points.

use proc_macro2::Span;
use syn::Error;
use syn::ext::IdentExt;
use tessera_desc::{
    MMA_M, check_block_kv, check_block_q, check_combination, check_head_dim, check_stages,
    check_warps, check_window,
};

use crate::errors::Errors;
use crate::model::{Kernel, Name, Param, PerAxis, UNUSED_AXIS, WindowSpec, snake_case};

type Rule = fn(u32) -> Result<(), String>;

pub fn check(kernel: &Kernel) -> syn::Result<()> {
    let mut errors = Errors::default();
    if let Err(message) = check_head_dim(kernel.head_dim.value) {
        errors.push(Error::new(kernel.head_dim.span, message));
    }
    let block_q_ok = param(&mut errors, "q", &kernel.block_q, check_block_q);
    param(&mut errors, "kv", &kernel.block_kv, check_block_kv);
    let warps_ok = param(&mut errors, "warps", &kernel.warps, check_warps);
    param(&mut errors, "stages", &kernel.stages, check_stages);
    // With a bad block_q or warps value already reported, a combination error would only repeat it.
    if block_q_ok && warps_ok {
        combination(&mut errors, kernel);
    }
    if let Some(spec) = &kernel.window {
        window(&mut errors, spec);
    }
    name(&mut errors, kernel);
    errors.finish()
}

/// `check_window` axis by axis, the other axes left at the defaults, so that each error names
/// its axis and points at the value that breaks the rule. A single value shared by every axis is
/// reported once.
fn window(errors: &mut Errors, spec: &WindowSpec) {
    let mut failed = false;
    let mut shared_reported: Vec<&str> = Vec::new();
    for (i, axis) in spec.window.axes().iter().enumerate() {
        let mut alone = spec.window;
        for (j, other) in alone.axes.iter_mut().enumerate() {
            if j != i {
                *other = UNUSED_AXIS;
            }
        }
        let Err(message) = check_window(&alone) else { continue };
        failed = true;
        let culprit: Option<(&str, &PerAxis<u32>)> = if axis.size == 0 {
            Some(("size", &spec.size))
        } else if axis.dilation == 0 {
            Some(("dilation", &spec.dilation))
        } else if axis.stride == 0 || axis.stride > axis.size {
            Some(("stride", &spec.stride))
        } else {
            None
        };
        match culprit.and_then(|(key, values)| Some((key, values, values.span(i)?))) {
            Some((key, PerAxis::All(_), _)) if shared_reported.contains(&key) => {}
            Some((key, values, span)) => {
                if matches!(values, PerAxis::All(_)) {
                    shared_reported.push(key);
                }
                errors.push(Error::new(span, message));
            }
            None => errors.push(Error::new_spanned(&spec.tokens, message)),
        }
    }
    // A rule across axes, which no single value breaks.
    if !failed && let Err(message) = check_window(&spec.window) {
        errors.push(Error::new_spanned(&spec.tokens, message));
    }
}

/// Checks every value of one parameter at its own token; returns whether all passed.
fn param(errors: &mut Errors, key: &str, param: &Param, rule: Rule) -> bool {
    let mut ok = true;
    let mut fail = |error: Error| {
        errors.push(error);
        ok = false;
    };
    match param {
        Param::Default(value) => {
            if let Err(message) = rule(*value) {
                fail(Error::new(Span::call_site(), format!("the default {message}")));
            }
        }
        Param::Fixed(num) => {
            if let Err(message) = rule(num.value) {
                fail(Error::new(num.span, message));
            }
        }
        Param::Choices { items, .. } if items.is_empty() => {
            fail(param.error(format!(
                "`{key} = []` leaves nothing to choose from; give at least one value, \
                 e.g. `{key} = [{}]`",
                example(key)
            )));
        }
        Param::Choices { items, .. } => {
            for (i, num) in items.iter().enumerate() {
                if items[..i].iter().any(|earlier| earlier.value == num.value) {
                    fail(Error::new(
                        num.span,
                        format!(
                            "duplicate choice `{}` in `{key}`; list each value once",
                            num.value
                        ),
                    ));
                } else if let Err(message) = rule(num.value) {
                    fail(Error::new(num.span, message));
                }
            }
        }
    }
    ok
}

fn example(key: &str) -> u32 {
    match key {
        "warps" => 4,
        "stages" => 2,
        _ => 64,
    }
}

/// The tuner prunes the (block_q, warps) pairs that fail `check_combination`; a space where every
/// pair fails would leave it nothing, which is an error of the definition.
fn combination(errors: &mut Errors, kernel: &Kernel) {
    let (qs, warps) = (kernel.block_q.values(), kernel.warps.values());
    if qs.iter().any(|&q| warps.iter().any(|&w| check_combination(q, w).is_ok())) {
        return;
    }
    // Quote the pair closest to working: the largest tile over the fewest warps.
    let (Some(&q), Some(&w)) = (qs.iter().max(), warps.iter().min()) else { return };
    let Err(reason) = check_combination(q, w) else { return };
    let space = if qs.len() * warps.len() > 1 {
        format!(
            " among block_q = {} and warps = {}",
            list(&kernel.block_q, &qs),
            list(&kernel.warps, &warps)
        )
    } else {
        String::new()
    };
    let others = if qs.len() * warps.len() > 1 { ", and every other pair fails too" } else { "" };
    errors.push(kernel.block_q.error(format!(
        "no valid (block_q, warps) combination{space}: {reason}{others}; use a block_q that is a \
         multiple of {MMA_M} × warps, or fewer warps"
    )));
}

fn list(param: &Param, values: &[u32]) -> String {
    match param {
        Param::Choices { .. } => {
            format!("[{}]", values.iter().map(u32::to_string).collect::<Vec<_>>().join(", "))
        }
        _ => values.iter().map(u32::to_string).collect(),
    }
}

fn name(errors: &mut Errors, kernel: &Kernel) {
    let Name { value, span, derived } = &kernel.name;
    if value.is_empty() {
        errors.push(Error::new(
            *span,
            format!(
                "the kernel name cannot be empty; remove `name` to use the struct's name in \
                 snake case (`{}`)",
                snake_case(&kernel.ident.unraw().to_string())
            ),
        ));
        return;
    }
    if is_identifier(value) {
        return;
    }
    let rule = "ASCII letters, digits and `_`, not starting with a digit";
    let fix = match sanitized(value) {
        Some(fixed) => format!(", e.g. `name = \"{fixed}\"`"),
        None => String::new(),
    };
    let message = if *derived {
        format!(
            "the kernel name derived from the struct, `{value}`, is not an identifier \
             ({rule}); give one with `name = \"...\"`{fix}"
        )
    } else {
        format!("kernel name `{value}` is not an identifier: use {rule}{fix}")
    };
    errors.push(Error::new(*span, message));
}

/// Kernel names end up in generated symbol names, so they are held to the portable subset.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') && name != "_"
}

/// The closest identifier to a rejected name, for the error's suggestion.
fn sanitized(name: &str) -> Option<String> {
    let mut fixed: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if fixed.starts_with(|c: char| c.is_ascii_digit()) {
        fixed.insert_str(0, "kernel_");
    }
    (is_identifier(&fixed) && fixed.chars().any(|c| c.is_ascii_alphanumeric())).then_some(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;
    use proc_macro2::{Ident, TokenStream};
    use quote::quote;

    /// The messages of a definition with the given visit set.
    fn window_errors(visit: TokenStream) -> Vec<String> {
        let attr = quote!(head_dim = 128, dtype = bf16, visit = #visit, tile = (q = 64, kv = 64));
        let kernel = parse::entries(attr)
            .and_then(|e| Kernel::from_syntax(Ident::new("Na", Span::call_site()), &e));
        let kernel = match kernel {
            Ok(kernel) => kernel,
            Err(e) => panic!("model rejected: {e}"),
        };
        match check(&kernel) {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn window_rules_come_from_check_window_one_axis_at_a_time() {
        assert!(window_errors(quote!(window(size = [7, 7], stride = [7, 1]))).is_empty());
        assert_eq!(
            window_errors(quote!(window(
                size = [7, 0, 5],
                stride = [8, 1, 6],
                dilation = [1, 1, 0]
            ))),
            [
                "axis 0: stride 8 is larger than the window size 7",
                "axis 1: window size, dilation and stride must be at least 1",
                "axis 2: window size, dilation and stride must be at least 1",
            ]
        );
        // One value shared by every axis is one mistake.
        assert_eq!(
            window_errors(quote!(window(size = [3, 3], dilation = 0))).len(),
            1,
            "shared value reported once"
        );
    }

    #[test]
    fn identifiers() {
        for ok in ["dense", "_x", "Fa2", "a_b_1"] {
            assert!(is_identifier(ok), "{ok}");
        }
        for bad in ["", "_", "1x", "my-kernel", "my kernel", "ñ"] {
            assert!(!is_identifier(bad), "{bad}");
        }
        assert_eq!(sanitized("my-kernel").as_deref(), Some("my_kernel"));
        assert_eq!(sanitized("2d causal").as_deref(), Some("kernel_2d_causal"));
        assert_eq!(sanitized("--"), None);
    }
}
