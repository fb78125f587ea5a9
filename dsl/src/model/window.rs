//! `visit = window(...)`: a neighborhood over a 1-, 2- or 3-D token grid.
//!
//! `size` decides the number of axes (an integer is one axis, a list one size per axis); the other
//! keys give one value per axis or a single value for every axis. This stage checks the shapes
//! (keys, types, list lengths, the axis count); `validate` applies the value rules of
//! `tessera_desc::check_window` at the offending values.

use proc_macro2::{Group, Span, TokenStream};
use tessera_desc::{Window, WindowAxis, check_window};

use super::{Fields, Scope, Spanned, num};
use crate::errors::Errors;
use crate::parse::{self, Value, ValueKind};

const WINDOW: Scope = Scope {
    what: "`window(...)`",
    group: Some("window"),
    keys: &["size", "dilation", "stride", "causal"],
    required: &[("size", "size = 7")],
};

/// What a key left out gives every axis, and what fills the unused `axes[dims..]`.
pub const UNUSED_AXIS: WindowAxis = WindowAxis { size: 1, dilation: 1, stride: 1, causal: false };

/// `window(...)` as written: the description it stands for, and where each value came from.
pub struct WindowSpec {
    pub window: Window,
    /// The whole `window(...)`, for an error that no single value causes.
    pub tokens: TokenStream,
    pub size: PerAxis<u32>,
    pub dilation: PerAxis<u32>,
    pub stride: PerAxis<u32>,
    // No rule of `check_window` involves `causal`, so its spans are not kept.
}

/// One key of `window(...)`.
pub enum PerAxis<T> {
    /// Not written: the default for every axis.
    Default,
    /// A single value for every axis: `dilation = 2`.
    All(Spanned<T>),
    /// One value per axis: `dilation = [2, 1]` (as many as the window has axes).
    Each(Vec<Spanned<T>>),
}

impl<T: Copy> PerAxis<T> {
    fn get(&self, axis: usize, default: T) -> T {
        match self {
            PerAxis::Default => default,
            PerAxis::All(one) => one.value,
            PerAxis::Each(values) => values.get(axis).map_or(default, |v| v.value),
        }
    }

    /// Where the value of `axis` was written; `None` for a default.
    pub fn span(&self, axis: usize) -> Option<Span> {
        match self {
            PerAxis::Default => None,
            PerAxis::All(one) => Some(one.span),
            PerAxis::Each(values) => values.get(axis).map(|v| v.span),
        }
    }
}

/// How one key's values are read and described in messages.
struct Key<T> {
    name: &'static str,
    /// What one value is: "an integer".
    one: &'static str,
    /// What the items of a list are: "integers".
    items: &'static str,
    /// `size = [7, 7]`
    list_example: &'static str,
    /// `dilation = 2`
    one_example: &'static str,
    /// The value, or `None` when it has the wrong type.
    read: fn(&str, &Value) -> Option<syn::Result<Spanned<T>>>,
    /// For a value of the wrong type, the value probably meant (`7` for `"7"`).
    fix: fn(&Value) -> Option<String>,
}

const SIZE: Key<u32> = Key {
    name: "size",
    one: "an integer",
    items: "integers",
    list_example: "size = [7, 7]",
    one_example: "size = 7",
    read: read_int,
    fix: int_fix,
};

const DILATION: Key<u32> = Key {
    name: "dilation",
    one: "an integer",
    items: "integers",
    list_example: "dilation = [2, 2]",
    one_example: "dilation = 2",
    read: read_int,
    fix: int_fix,
};

const STRIDE: Key<u32> = Key {
    name: "stride",
    one: "an integer",
    items: "integers",
    list_example: "stride = [1, 4]",
    one_example: "stride = 2",
    read: read_int,
    fix: int_fix,
};

const CAUSAL: Key<bool> = Key {
    name: "causal",
    one: "`true`, `false`",
    items: "`true` or `false`",
    list_example: "causal = [true, false]",
    one_example: "causal = true",
    read: read_bool,
    fix: bool_fix,
};

fn read_int(key: &str, value: &Value) -> Option<syn::Result<Spanned<u32>>> {
    match &value.kind {
        ValueKind::Int(lit) => Some(num(key, lit)),
        _ => None,
    }
}

fn int_fix(value: &Value) -> Option<String> {
    match &value.kind {
        ValueKind::Str(s) if s.value().parse::<u32>().is_ok() => Some(s.value()),
        _ => None,
    }
}

fn read_bool(_: &str, value: &Value) -> Option<syn::Result<Spanned<bool>>> {
    match &value.kind {
        ValueKind::Ident(ident) if ident == "true" => {
            Some(Ok(Spanned { value: true, span: ident.span() }))
        }
        ValueKind::Ident(ident) if ident == "false" => {
            Some(Ok(Spanned { value: false, span: ident.span() }))
        }
        _ => None,
    }
}

fn bool_fix(value: &Value) -> Option<String> {
    let text = match &value.kind {
        ValueKind::Int(lit) => lit.base10_digits().to_string(),
        ValueKind::Str(s) => s.value(),
        _ => return None,
    };
    match text.as_str() {
        "1" | "true" => Some("true".to_string()),
        "0" | "false" => Some("false".to_string()),
        _ => None,
    }
}

/// "; remove the quotes: `causal = true`" or "; write `causal = true`" when `fix` has a guess;
/// `key` is `None` for a list item, where the hint shows the item alone.
fn hint(key: Option<&str>, value: &Value, fix: Option<String>) -> String {
    let Some(fix) = fix else { return String::new() };
    let shown = match key {
        Some(key) => format!("{key} = {fix}"),
        None => fix.to_string(),
    };
    match value.kind {
        ValueKind::Str(_) => format!("; remove the quotes: `{shown}`"),
        _ => format!("; write `{shown}`"),
    }
}

/// Keys written under the names other tools use, and `dims`, which `size` implies.
pub(super) fn misplaced(key: &str) -> Option<(String, Option<&'static str>)> {
    let home = match key {
        "kernel_size" | "window_size" | "window" => "size",
        "is_causal" => "causal",
        "dims" | "dim" | "ndim" | "ndims" | "rank" => {
            let message = format!(
                "`window(...)` has no `{key}` key: the number of axes is the length of `size`, \
                 e.g. `size = [7, 7]` for a 2-D window"
            );
            return Some((message, None));
        }
        _ => return None,
    };
    Some((format!("unknown key `{key}` in `window(...)`; write it as `{home}`"), Some(home)))
}

/// `window(...)`, the `value` of `visit`; `args` are the parenthesized arguments.
pub fn window(value: &Value, args: &Group) -> syn::Result<WindowSpec> {
    let entries = parse::entries(args.stream())?;
    let mut errors = Errors::default();
    let fields = Fields::new(&WINDOW, &entries, &mut errors);
    fields.require(|message| value.error(message), &mut errors);

    // `None`: an error was recorded. A key left out is `Some(PerAxis::Default)`.
    let mut read = |key: &Key<u32>| match fields.get(key.name) {
        None => Some(PerAxis::Default),
        Some(v) => errors.capture(written(key, v)),
    };
    let (size, dilation, stride) = (read(&SIZE), read(&DILATION), read(&STRIDE));
    let causal = match fields.get(CAUSAL.name) {
        None => Some(PerAxis::Default),
        Some(v) => errors.capture(written(&CAUSAL, v)),
    };

    // The axis count comes from `size`; without a usable one the lengths cannot be compared.
    let dims = match (&size, fields.get(SIZE.name)) {
        (Some(size), Some(written)) => errors.capture(axis_count(size, written)),
        _ => None,
    };
    if let (Some(dims), Some(size_value)) = (dims, fields.get(SIZE.name)) {
        let mut lengths = |key: &str, per_axis: Option<usize>| {
            if let (Some(len), Some(v)) = (per_axis, fields.get(key)) {
                errors.capture(length(key, v, len, dims, size_value));
            }
        };
        lengths(DILATION.name, list_len(&dilation));
        lengths(STRIDE.name, list_len(&stride));
        lengths(CAUSAL.name, list_len(&causal));
    }
    for (key, example, per_axis) in [
        (DILATION.name, DILATION.one_example, list_len(&dilation)),
        (STRIDE.name, STRIDE.one_example, list_len(&stride)),
        (CAUSAL.name, CAUSAL.one_example, list_len(&causal)),
    ] {
        if per_axis == Some(0)
            && let Some(v) = fields.get(key)
        {
            errors.push(v.error(format!(
                "`{key} = []` is empty; give one value per axis, or a single value for every \
                 axis such as `{example}`"
            )));
        }
    }
    errors.finish()?;

    let (Some(size), Some(dilation), Some(stride), Some(causal), Some(dims)) =
        (size, dilation, stride, causal, dims)
    else {
        return Err(value.error("incomplete `window(...)`"));
    };
    let mut axes = [UNUSED_AXIS; 3];
    for (i, axis) in axes.iter_mut().enumerate().take(dims) {
        *axis = WindowAxis {
            size: size.get(i, UNUSED_AXIS.size),
            dilation: dilation.get(i, UNUSED_AXIS.dilation),
            stride: stride.get(i, UNUSED_AXIS.stride),
            causal: causal.get(i, UNUSED_AXIS.causal),
        };
    }
    // `axis_count` kept `dims` within 1..=MAX_DIMS.
    let dims = u8::try_from(dims).unwrap_or(Window::MAX_DIMS);
    Ok(WindowSpec {
        window: Window { dims, axes },
        tokens: value.tokens.clone(),
        size,
        dilation,
        stride,
    })
}

/// A single value, or a list of them.
fn written<T: Copy>(key: &Key<T>, value: &Value) -> syn::Result<PerAxis<T>> {
    let name = key.name;
    let ValueKind::List(items) = &value.kind else {
        return match (key.read)(name, value) {
            Some(one) => one.map(PerAxis::All),
            None => Err(value.error(format!(
                "`{name}` must be {} or a list of one per axis such as `{}`, found {}{}",
                key.one,
                key.list_example,
                value.describe(),
                hint(Some(name), value, (key.fix)(value))
            ))),
        };
    };
    let mut errors = Errors::default();
    let mut values = Vec::new();
    for item in items {
        match (key.read)(name, item) {
            Some(one) => values.extend(errors.capture(one)),
            None => errors.push(item.error(format!(
                "the values of `{name}` must be {}, found {}{}",
                key.items,
                item.describe(),
                hint(None, item, (key.fix)(item))
            ))),
        }
    }
    errors.finish().map(|()| PerAxis::Each(values))
}

fn list_len<T>(per_axis: &Option<PerAxis<T>>) -> Option<usize> {
    match per_axis {
        Some(PerAxis::Each(values)) => Some(values.len()),
        _ => None,
    }
}

/// The number of axes `size` gives, held to the axis count rule of `check_window`.
fn axis_count(size: &PerAxis<u32>, value: &Value) -> syn::Result<usize> {
    let dims = match size {
        PerAxis::Each(values) => values.len(),
        PerAxis::All(_) | PerAxis::Default => 1,
    };
    let rule = match u8::try_from(dims) {
        Ok(d) => check_window(&Window { dims: d, axes: [UNUSED_AXIS; 3] }).err(),
        Err(_) => Some(format!("a window has 1 to {} axes, not {dims}", Window::MAX_DIMS)),
    };
    match rule {
        None => Ok(dims),
        Some(rule) if dims == 0 => Err(value.error(format!(
            "{rule}: `size = []` lists no axis; give one size per axis, e.g. `{}`",
            SIZE.list_example
        ))),
        Some(rule) => Err(value.error(format!(
            "{rule}: `size` lists {dims} sizes, one per axis; a window over more axes is not \
             supported"
        ))),
    }
}

/// A list of one value per axis must have as many as `size`.
fn length(key: &str, value: &Value, len: usize, dims: usize, size: &Value) -> syn::Result<()> {
    if len == dims || len == 0 {
        return Ok(());
    }
    let axes = if dims == 1 { "1 axis".to_string() } else { format!("{dims} axes") };
    let values = if len == 1 { "1 value".to_string() } else { format!("{len} values") };
    Err(value.error(format!(
        "`{key} = {value}` has {values}, but the window has {axes} (`size = {size}`); give one \
         value per axis, or a single value for every axis"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::{Delimiter, Ident};
    use quote::quote;

    fn spec(args: TokenStream) -> syn::Result<WindowSpec> {
        let group = Group::new(Delimiter::Parenthesis, args);
        let name = Ident::new("window", Span::call_site());
        let value =
            Value { tokens: quote!(#name #group), kind: ValueKind::Call(name, group.clone()) };
        window(&value, &group)
    }

    fn ok(args: TokenStream) -> Window {
        match spec(args) {
            Ok(spec) => spec.window,
            Err(e) => panic!("rejected: {e}"),
        }
    }

    fn messages(args: TokenStream) -> Vec<String> {
        match spec(args) {
            Ok(_) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    fn axis(size: u32, dilation: u32, stride: u32, causal: bool) -> WindowAxis {
        WindowAxis { size, dilation, stride, causal }
    }

    #[test]
    fn scalars_lists_and_defaults() {
        assert_eq!(
            ok(quote!(size = 2048)),
            Window { dims: 1, axes: [axis(2048, 1, 1, false), UNUSED_AXIS, UNUSED_AXIS] }
        );
        assert_eq!(
            ok(quote!(size = [7, 9], dilation = 2, causal = true)),
            Window { dims: 2, axes: [axis(7, 2, 1, true), axis(9, 2, 1, true), UNUSED_AXIS] }
        );
        assert_eq!(
            ok(quote!(size = [18, 24, 24], stride = [1, 8, 8], causal = [true, false, false],)),
            Window {
                dims: 3,
                axes: [axis(18, 1, 1, true), axis(24, 1, 8, false), axis(24, 1, 8, false)]
            }
        );
        // Zero values are `validate`'s (check_window's) to report.
        assert_eq!(ok(quote!(size = [0], stride = 0)).dims, 1);
    }

    #[test]
    fn shape_errors_accumulate() {
        assert_eq!(
            messages(quote!(
                size = [7, 7],
                dilation = [2, 2, 2],
                stride = [],
                causal = 1,
                dilaton = 2
            )),
            [
                "unknown key `dilaton` in `window(...)`; did you mean `dilation`?",
                "`causal` must be `true`, `false` or a list of one per axis such as \
                 `causal = [true, false]`, found the integer `1`; write `causal = true`",
                "`dilation = [2, 2, 2]` has 3 values, but the window has 2 axes \
                 (`size = [7, 7]`); give one value per axis, or a single value for every axis",
                "`stride = []` is empty; give one value per axis, or a single value for every \
                 axis such as `stride = 2`",
            ]
        );
        assert_eq!(
            messages(quote!(dilation = 2)),
            ["`window(...)` is missing the required key `size`; add e.g. `size = 7`"]
        );
        assert_eq!(
            messages(quote!(kernel_size = 7)),
            ["unknown key `kernel_size` in `window(...)`; write it as `size`"]
        );
    }

    #[test]
    fn axis_count_and_item_types() {
        assert_eq!(
            messages(quote!(size = [3, 3, 3, 3])),
            ["a window has 1 to 3 axes, not 4: `size` lists 4 sizes, one per axis; a window \
              over more axes is not supported"]
        );
        assert_eq!(
            messages(quote!(size = [])),
            ["a window has 1 to 3 axes, not 0: `size = []` lists no axis; give one size per \
              axis, e.g. `size = [7, 7]`"]
        );
        assert_eq!(
            messages(quote!(size = ["7", x], causal = ["true"], stride = -1, dilation = 2u8)),
            [
                "the values of `size` must be integers, found the string literal `\"7\"`; \
                 remove the quotes: `7`",
                "the values of `size` must be integers, found the identifier `x`",
                "`dilation` is a u32; write `2` without the `u8` suffix",
                "`stride` must be an integer or a list of one per axis such as `stride = [1, 4]`, \
                 found the negative number `-1`",
                "the values of `causal` must be `true` or `false`, found the string literal \
                 `\"true\"`; remove the quotes: `true`",
            ]
        );
    }
}
