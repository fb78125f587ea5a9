//! The typed model of one kernel definition, built from the syntax tree.
//!
//! This stage decides what each key means and whether its value has the right shape (an integer,
//! a known dtype...). Whether the values are acceptable to the lowering (supported head dims, tile
//! multiples, warp splits) is `validate`'s job, since some rules need the whole model at once.
//! Every value keeps its span so those later errors can point at the user's token.

mod bitmap;
mod blocks;
mod window;

use proc_macro2::{Group, Ident, Span, TokenStream};
use quote::quote;
use syn::ext::IdentExt;
use syn::{Error, Item, LitInt};
use tessera_desc::{Dtype, Layout, Load, Visit};

use crate::errors::Errors;
use crate::parse::{Entry, Value, ValueKind};

pub use blocks::BlocksSpec;
pub use window::{PerAxis, UNUSED_AXIS, WindowSpec};

pub struct Kernel {
    pub ident: Ident,
    pub name: Name,
    pub head_dim: Num,
    pub dtype: Spanned<Dtype>,
    pub layout: Spanned<Layout>,
    pub visit: Spanned<Visit>,
    /// Where each value of a `visit = window(...)` was written; `Some` exactly for windows.
    pub window: Option<WindowSpec>,
    /// Where the values of a `visit = blocks(...)` were written; `Some` exactly for blocks.
    pub blocks: Option<BlocksSpec>,
    pub load: Spanned<Load>,
    pub q_tile: Tile,
    pub kv_tile: Tile,
    pub warps: Param,
    pub stages: Param,
}

#[derive(Clone, Copy)]
pub struct Spanned<T> {
    pub value: T,
    /// For defaults, the attribute (there is no token of the user's to point at).
    pub span: Span,
}

pub type Num = Spanned<u32>;

pub struct Name {
    pub value: String,
    pub span: Span,
    /// Derived from the struct name rather than written as `name = "..."`.
    pub derived: bool,
}

/// A schedule parameter as written: the form matters for errors and for what the tuner gets.
pub enum Param {
    /// Not written; the `tune` defaults.
    Default(u32),
    Fixed(Num),
    /// `[a, b, ...]`, kept as written (even empty or with repeats) so `validate` can point at it.
    Choices {
        tokens: TokenStream,
        items: Vec<Num>,
    },
}

impl Param {
    pub fn values(&self) -> Vec<u32> {
        match self {
            Param::Default(v) => vec![*v],
            Param::Fixed(n) => vec![n.value],
            Param::Choices { items, .. } => items.iter().map(|n| n.value).collect(),
        }
    }

    /// A list says "tunable", even of one value.
    pub fn tunable(&self) -> bool {
        matches!(self, Param::Choices { .. })
    }

    pub fn error(&self, message: impl std::fmt::Display) -> Error {
        match self {
            Param::Default(_) => Error::new(Span::call_site(), message),
            Param::Fixed(n) => Error::new(n.span, message),
            Param::Choices { tokens, .. } => Error::new_spanned(tokens, message),
        }
    }
}

/// `q = ...` or `kv = ...` of `tile = (...)` as written, with the spans `validate` points at.
pub enum Tile {
    /// `q = 64` or `q = [64, 128]`: a run of consecutive tokens (grid axis 0).
    Run(Param),
    /// `q = (8, [8, 16])`: a box of the grid, one extent per axis, each fixed or a list of
    /// choices. Kept at the length written; `validate` holds it to the grid's axis count.
    Shape { tokens: TokenStream, axes: Vec<Param> },
}

impl Tile {
    /// The extent of each grid axis written, from axis 0.
    pub fn axes(&self) -> &[Param] {
        match self {
            Tile::Run(param) => std::slice::from_ref(param),
            Tile::Shape { axes, .. } => axes,
        }
    }

    /// Every shape the choices give, axis 0 varying slowest (the order `KernelDesc::configs` has).
    pub fn shapes(&self) -> Vec<Vec<u32>> {
        self.axes().iter().fold(vec![Vec::new()], |shapes, axis| {
            let values = axis.values();
            shapes
                .iter()
                .flat_map(|shape| values.iter().map(move |&v| [shape.as_slice(), &[v]].concat()))
                .collect()
        })
    }

    /// The rows (or keys) of each shape, each once, in the order of `shapes`; a shape past
    /// `u32::MAX` is left out (`validate` reports it).
    pub fn sizes(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for size in self.shapes().iter().filter_map(|shape| size(shape)) {
            if !out.contains(&size) {
                out.push(size);
            }
        }
        out
    }

    /// Whether the tuner has a choice: a list on any axis.
    pub fn tunable(&self) -> bool {
        self.axes().iter().any(Param::tunable)
    }

    pub fn error(&self, message: impl std::fmt::Display) -> Error {
        match self {
            Tile::Run(param) => param.error(message),
            Tile::Shape { tokens, .. } => Error::new_spanned(tokens, message),
        }
    }
}

/// A shape's rows (or keys); `None` past `u32::MAX`, which no rule could be asked about.
pub fn size(shape: &[u32]) -> Option<u32> {
    shape.iter().try_fold(1u32, |p, &v| p.checked_mul(v))
}

pub const DEFAULT_WARPS: u32 = 4;
pub const DEFAULT_STAGES: u32 = 2;

/// The keys of one `key = value, ...` list, and what to suggest when one is missing.
struct Scope {
    /// How messages name this list.
    what: &'static str,
    /// `tile` / `tune` / `window` for the nested lists; `None` at the top level.
    group: Option<&'static str>,
    keys: &'static [&'static str],
    /// Required keys, each with an example entry for the "missing" message.
    required: &'static [(&'static str, &'static str)],
}

const TOP: Scope = Scope {
    what: "#[tessera::attention]",
    group: None,
    keys: &["head_dim", "dtype", "layout", "visit", "load", "tile", "tune", "name"],
    required: &[
        ("head_dim", "head_dim = 128"),
        ("dtype", "dtype = bf16"),
        ("visit", "visit = dense"),
        ("tile", "tile = (q = 64, kv = 64)"),
    ],
};

const TILE: Scope = Scope {
    what: "`tile = (...)`",
    group: Some("tile"),
    keys: &["q", "kv"],
    required: &[("q", "q = 64"), ("kv", "kv = 64")],
};

const TUNE: Scope = Scope {
    what: "`tune = (...)`",
    group: Some("tune"),
    keys: &["warps", "stages"],
    required: &[],
};

/// The entries of one list by key, after reporting unknown and repeated keys.
struct Fields<'a> {
    scope: &'static Scope,
    found: Vec<&'a Entry>,
    /// Keys offered as "did you mean"; not reported again as missing.
    suggested: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    fn new(scope: &'static Scope, entries: &'a [Entry], errors: &mut Errors) -> Self {
        let mut fields = Fields { scope, found: Vec::new(), suggested: Vec::new() };
        for entry in entries {
            let key = entry.key_name();
            if !scope.keys.contains(&key.as_str()) {
                let (error, suggestion) = unknown_key(scope, entry);
                errors.push(error);
                fields.suggested.extend(suggestion);
            } else if let Some(first) = fields.found.iter().find(|e| e.key_name() == key) {
                let place = match scope.group {
                    None => "in this attribute".to_string(),
                    Some(_) => format!("in {}", scope.what),
                };
                errors.push(Error::new(
                    entry.key.span(),
                    format!(
                        "duplicate key `{key}`: it is already set {place} as `{first}`; \
                         remove one of them"
                    ),
                ));
            } else {
                fields.found.push(entry);
            }
        }
        fields
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.found.iter().find(|e| e.key_name() == key).map(|e| &e.value)
    }

    /// Reports every missing required key in one error, at `span`.
    fn require(&self, span: impl FnOnce(String) -> Error, errors: &mut Errors) {
        let missing: Vec<(&str, &str)> = self
            .scope
            .required
            .iter()
            .filter(|(key, _)| self.get(key).is_none() && !self.suggested.contains(key))
            .copied()
            .collect();
        if missing.is_empty() {
            return;
        }
        let keys: Vec<String> = missing.iter().map(|(key, _)| format!("`{key}`")).collect();
        let examples: Vec<&str> = missing.iter().map(|(_, example)| *example).collect();
        let noun = if missing.len() == 1 { "key" } else { "keys" };
        errors.push(span(format!(
            "{} is missing the required {noun} {}; add e.g. `{}`",
            self.scope.what,
            one_of(&keys, "and"),
            examples.join(", ")
        )));
    }
}

fn unknown_key(scope: &Scope, entry: &Entry) -> (Error, Option<&'static str>) {
    let key = entry.key_name();
    let (message, suggestion) = if let Some(home) = misplaced(&key, scope) {
        home
    } else if let Some(close) = did_you_mean(&key, scope.keys) {
        (format!("unknown key `{key}` in {}; did you mean `{close}`?", scope.what), Some(close))
    } else {
        let keys: Vec<String> = scope.keys.iter().map(|k| format!("`{k}`")).collect();
        (format!("unknown key `{key}` in {}; expected {}", scope.what, one_of(&keys, "or")), None)
    };
    (Error::new(entry.key.span(), message), suggestion)
}

/// Points a key written in the wrong list to where it belongs, including the `block_q`/`block_kv`
/// spellings that configs and the CLI use. Returns the key it stands for when that is in this list.
fn misplaced(key: &str, scope: &Scope) -> Option<(String, Option<&'static str>)> {
    let group = scope.group;
    if group == Some("window")
        && let Some(home) = window::misplaced(key)
    {
        return Some(home);
    }
    if matches!(group, Some("blocks" | "estimate"))
        && let Some(message) = blocks::misplaced(key, group)
    {
        return Some((message, None));
    }
    let tile_key = match key {
        "q" | "block_q" => Some("q"),
        "kv" | "block_kv" => Some("kv"),
        _ => None,
    };
    if let Some(short) = tile_key {
        return Some(match group {
            Some("tile") => (
                format!("unknown key `{key}` in `tile = (...)`; write it as `{short}`"),
                Some(short),
            ),
            _ => (format!("`{key}` belongs inside the tile: `tile = ({short} = ...)`"), None),
        });
    }
    if matches!(key, "warps" | "stages") && group != Some("tune") {
        let message = format!("`{key}` belongs inside the tuning group: `tune = ({key} = ...)`");
        return Some((message, None));
    }
    if group.is_some() && TOP.keys.contains(&key) {
        return Some((format!("`{key}` is a top-level key, not part of {}", scope.what), None));
    }
    None
}

/// The candidate within a small edit distance of `word`, if any: catches typos and swapped
/// letters without suggesting unrelated keys.
fn did_you_mean(word: &str, candidates: &[&'static str]) -> Option<&'static str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), !c.starts_with(word.get(..1).unwrap_or_default()), *c))
        .filter(|(d, _, _)| *d <= limit)
        .min()
        .map(|(_, _, c)| c)
}

/// Optimal string alignment distance: Levenshtein plus adjacent transpositions (`dtpye`).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// `a`, `a or b`, `a, b or c`.
pub fn one_of(items: &[String], conjunction: &str) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} {conjunction} {last}", init.join(", ")),
    }
}

/// The struct the attribute is on; anything else has no type to implement `Kernel` for.
pub fn target(item: &Item) -> syn::Result<Ident> {
    let not_struct = |tokens: TokenStream, what: &str| {
        Error::new_spanned(
            tokens,
            format!(
                "#[tessera::attention] applies to a struct (e.g. `pub struct MyKernel;`), \
                 not to {what}"
            ),
        )
    };
    match item {
        Item::Struct(s) => {
            if !s.generics.params.is_empty() {
                return Err(Error::new_spanned(
                    &s.generics,
                    "a kernel struct cannot have generic parameters: its `Kernel::DESC` \
                     describes exactly one kernel; remove them",
                ));
            }
            if let Some(clause) = &s.generics.where_clause {
                return Err(Error::new_spanned(
                    clause,
                    "a kernel struct cannot have a where clause; remove it",
                ));
            }
            Ok(s.ident.clone())
        }
        Item::Enum(e) => {
            let (token, ident) = (e.enum_token, &e.ident);
            Err(not_struct(quote!(#token #ident), "an enum"))
        }
        Item::Fn(f) => {
            let (token, ident) = (f.sig.fn_token, &f.sig.ident);
            Err(not_struct(quote!(#token #ident), "a function"))
        }
        Item::Union(u) => {
            let (token, ident) = (u.union_token, &u.ident);
            Err(not_struct(quote!(#token #ident), "a union"))
        }
        Item::Trait(t) => {
            let (token, ident) = (t.trait_token, &t.ident);
            Err(not_struct(quote!(#token #ident), "a trait"))
        }
        Item::Type(t) => {
            let (token, ident) = (t.type_token, &t.ident);
            Err(not_struct(quote!(#token #ident), "a type alias"))
        }
        Item::Mod(m) => {
            let (token, ident) = (m.mod_token, &m.ident);
            Err(not_struct(quote!(#token #ident), "a module"))
        }
        other => Err(not_struct(quote!(#other), "this item")),
    }
}

impl Kernel {
    pub fn from_syntax(ident: Ident, entries: &[Entry]) -> syn::Result<Kernel> {
        let mut errors = Errors::default();
        let fields = Fields::new(&TOP, entries, &mut errors);
        fields.require(|message| Error::new(Span::call_site(), message), &mut errors);

        let head_dim = fields.get("head_dim").and_then(|v| errors.capture(int("head_dim", v)));
        let dtype = fields.get("dtype").and_then(|v| errors.capture(DTYPES.parse(v)));
        let layout =
            optional(fields.get("layout"), Layout::Bhsd, &mut errors, |v| LAYOUTS.parse(v));
        let visit = fields.get("visit").and_then(|v| errors.capture(visit(v)));
        let load = optional(fields.get("load"), Load::Dense, &mut errors, load);
        let tile = fields.get("tile").and_then(|v| errors.capture(tile(v)));
        let tune = match fields.get("tune") {
            None => Some((Param::Default(DEFAULT_WARPS), Param::Default(DEFAULT_STAGES))),
            Some(v) => errors.capture(tune(v)),
        };
        let name = match fields.get("name") {
            None => Some(Name {
                value: snake_case(&ident.unraw().to_string()),
                span: ident.span(),
                derived: true,
            }),
            Some(v) => errors.capture(name(v)),
        };
        errors.finish()?;

        // Each `None` above recorded an error, so `finish` has returned already; this only keeps
        // the conversion free of unwraps.
        let (
            Some(head_dim),
            Some(dtype),
            Some(layout),
            Some((visit, window, blocks)),
            Some(load),
            Some((q_tile, kv_tile)),
            Some((warps, stages)),
            Some(name),
        ) = (head_dim, dtype, layout, visit, load, tile, tune, name)
        else {
            return Err(Error::new(Span::call_site(), "incomplete #[tessera::attention]"));
        };
        Ok(Kernel {
            ident,
            name,
            head_dim,
            dtype,
            layout,
            visit,
            window,
            blocks,
            load,
            q_tile,
            kv_tile,
            warps,
            stages,
        })
    }

    /// The axes of the token grid the tiles are boxes of: a window's, else one sequence.
    pub fn grid_axes(&self) -> usize {
        self.window.as_ref().map_or(1, |spec| usize::from(spec.window.dims))
    }
}

fn optional<T: Copy>(
    value: Option<&Value>,
    default: T,
    errors: &mut Errors,
    parse: impl FnOnce(&Value) -> syn::Result<Spanned<T>>,
) -> Option<Spanned<T>> {
    match value {
        None => Some(Spanned { value: default, span: Span::call_site() }),
        Some(v) => errors.capture(parse(v)),
    }
}

/// "; remove the quotes: `key = text`" when a string holds what the key wanted unquoted.
fn unquote_hint(key: &str, value: &Value, fits: impl FnOnce(&str) -> bool) -> String {
    match &value.kind {
        ValueKind::Str(s) if fits(&s.value()) => {
            format!("; remove the quotes: `{key} = {}`", s.value())
        }
        _ => String::new(),
    }
}

fn int(key: &str, value: &Value) -> syn::Result<Num> {
    match &value.kind {
        ValueKind::Int(lit) => num(key, lit),
        _ => Err(value.error(format!(
            "`{key}` must be an integer such as `{key} = 128`, found {}{}",
            value.describe(),
            unquote_hint(key, value, |s| s.parse::<u32>().is_ok())
        ))),
    }
}

fn num(key: &str, lit: &LitInt) -> syn::Result<Num> {
    if !matches!(lit.suffix(), "" | "u32") {
        return Err(Error::new(
            lit.span(),
            format!(
                "`{key}` is a u32; write `{}` without the `{}` suffix",
                lit.base10_digits(),
                lit.suffix()
            ),
        ));
    }
    // A literal from a `macro_rules!` `$x:literal` can carry its own minus sign.
    if lit.base10_digits().starts_with('-') {
        return Err(Error::new(
            lit.span(),
            format!("`{key}` must be a positive integer, found `{}`", lit.base10_digits()),
        ));
    }
    let value = lit.base10_parse::<u32>().map_err(|_| {
        Error::new(lit.span(), format!("`{key}` = {} does not fit in a u32", lit.base10_digits()))
    })?;
    Ok(Spanned { value, span: lit.span() })
}

/// An integer, or a list of integer choices for the tuner.
fn param(key: &str, value: &Value) -> syn::Result<Param> {
    match &value.kind {
        ValueKind::Int(lit) => Ok(Param::Fixed(num(key, lit)?)),
        ValueKind::List(items) => {
            let mut errors = Errors::default();
            let mut nums = Vec::new();
            for item in items {
                let parsed = match &item.kind {
                    ValueKind::Int(lit) => num(key, lit),
                    _ => Err(item.error(format!(
                        "the choices of `{key}` must be integers, found {}",
                        item.describe()
                    ))),
                };
                nums.extend(errors.capture(parsed));
            }
            errors.finish()?;
            Ok(Param::Choices { tokens: value.tokens.clone(), items: nums })
        }
        _ => Err(value.error(format!(
            "`{key}` must be an integer or a list of choices such as `{key} = [64, 128]`, \
             found {}{}",
            value.describe(),
            unquote_hint(key, value, |s| s.parse::<u32>().is_ok())
        ))),
    }
}

/// A run of tokens (an integer or a list of choices), or a shape `(8, [8, 16])` of them per axis.
fn tile_extent(key: &str, value: &Value) -> syn::Result<Tile> {
    let ValueKind::Tuple(items) = &value.kind else {
        return param(key, value).map(Tile::Run);
    };
    let mut errors = Errors::default();
    let mut axes = Vec::new();
    for item in items {
        let parsed = match &item.kind {
            ValueKind::Int(_) | ValueKind::List(_) => param(key, item),
            _ => Err(item.error(format!(
                "each axis of `{key}` must be an integer or a list of choices, such as \
                 `{key} = (8, [8, 16])`, found {}",
                item.describe()
            ))),
        };
        axes.extend(errors.capture(parsed));
    }
    errors.finish().map(|()| Tile::Shape { tokens: value.tokens.clone(), axes })
}

fn tile(value: &Value) -> syn::Result<(Tile, Tile)> {
    let ValueKind::Group(entries) = &value.kind else {
        return Err(value.error(format!(
            "`tile` must be a group of tile sizes such as `tile = (q = 64, kv = 64)`, found {}",
            value.describe()
        )));
    };
    let mut errors = Errors::default();
    let fields = Fields::new(&TILE, entries, &mut errors);
    fields.require(|message| value.error(message), &mut errors);
    let q = fields.get("q").and_then(|v| errors.capture(tile_extent("q", v)));
    let kv = fields.get("kv").and_then(|v| errors.capture(tile_extent("kv", v)));
    errors.finish()?;
    match (q, kv) {
        (Some(q), Some(kv)) => Ok((q, kv)),
        _ => Err(value.error("`tile = (...)` needs both `q` and `kv`")),
    }
}

fn tune(value: &Value) -> syn::Result<(Param, Param)> {
    let ValueKind::Group(entries) = &value.kind else {
        return Err(value.error(format!(
            "`tune` must be a group of tuning choices such as `tune = (warps = [4, 8], stages = 2)`, \
             found {}",
            value.describe()
        )));
    };
    let mut errors = Errors::default();
    let fields = Fields::new(&TUNE, entries, &mut errors);
    let mut get = |key: &str, default: u32| match fields.get(key) {
        None => Some(Param::Default(default)),
        Some(v) => errors.capture(param(key, v)),
    };
    let (warps, stages) = (get("warps", DEFAULT_WARPS), get("stages", DEFAULT_STAGES));
    errors.finish()?;
    match (warps, stages) {
        (Some(warps), Some(stages)) => Ok((warps, stages)),
        _ => Err(value.error("invalid `tune = (...)`")),
    }
}

type VisitSpec = (Spanned<Visit>, Option<WindowSpec>, Option<BlocksSpec>);

/// A visit set: a plain word from `VISITS`, or `window(...)` / `blocks(...)` with arguments.
fn visit(value: &Value) -> syn::Result<VisitSpec> {
    if let Some(args) = call(value, "blocks") {
        let spec = blocks::blocks(value, args)?;
        let visit = Spanned { value: Visit::Blocks(spec.blocks), span: value_span(value) };
        return Ok((visit, None, Some(spec)));
    }
    let Some(args) = call(value, "window") else { return Ok((VISITS.parse(value)?, None, None)) };
    let spec = window::window(value, args)?;
    let visit = Spanned { value: Visit::Window(spec.window), span: value_span(value) };
    Ok((visit, Some(spec), None))
}

/// A load mode: a plain word from `LOADS`, or `bitmap(...)` with its arguments.
fn load(value: &Value) -> syn::Result<Spanned<Load>> {
    let Some(args) = call(value, "bitmap") else { return LOADS.parse(value) };
    let load = Load::Bitmap(bitmap::bitmap(value, args)?);
    Ok(Spanned { value: load, span: value_span(value) })
}

/// The arguments of `value` when it is the call `name(...)`; other values, the bare `name`
/// included, are the vocabulary's to accept or report.
fn call<'a>(value: &'a Value, name: &str) -> Option<&'a Group> {
    match &value.kind {
        ValueKind::Call(word, args) if word.unraw() == name => Some(args),
        _ => None,
    }
}

fn name(value: &Value) -> syn::Result<Name> {
    match &value.kind {
        ValueKind::Str(s) => Ok(Name { value: s.value(), span: s.span(), derived: false }),
        _ => {
            let hint = match &value.kind {
                ValueKind::Ident(ident) => format!("; write `name = \"{ident}\"`"),
                _ => String::new(),
            };
            Err(value.error(format!(
                "`name` must be a string literal such as `name = \"my_kernel\"`, found {}{hint}",
                value.describe()
            )))
        }
    }
}

/// The words one key accepts, taken from the description types so that the macro learns new
/// names when `tessera-desc` does.
struct Vocabulary<T: 'static> {
    key: &'static str,
    /// What one value is called in messages.
    noun: &'static str,
    words: fn() -> Vec<(&'static str, T)>,
    /// Words that take arguments, which the caller parses (`window(...)`, `bitmap(...)`), each
    /// with an example: listed among the expected values, and reported when written without
    /// arguments.
    calls: &'static [(&'static str, &'static str)],
    /// Names of later versions: reported as unsupported rather than unknown.
    reserved: &'static [&'static str],
    /// Appended to "unknown" messages.
    note: &'static str,
}

const DTYPES: Vocabulary<Dtype> = Vocabulary {
    key: "dtype",
    noun: "dtype",
    words: || Dtype::ALL.iter().map(|d| (d.name(), *d)).collect(),
    calls: &[],
    reserved: &[],
    note: "",
};

const LAYOUTS: Vocabulary<Layout> = Vocabulary {
    key: "layout",
    noun: "layout",
    words: || Layout::ALL.iter().map(|l| (l.name(), *l)).collect(),
    calls: &[],
    reserved: &[],
    note: ": [batch, heads, tokens, head_dim], contiguous",
};

// `Visit` and `Load` have no `ALL` list in tessera-desc yet, so their variants are listed here.
const VISITS: Vocabulary<Visit> = Vocabulary {
    key: "visit",
    noun: "visit set",
    words: || [Visit::Dense, Visit::Causal].iter().map(|v| (v.name(), *v)).collect(),
    calls: &[("window", "window(size = 7)"), ("blocks", "blocks(estimate(bits = 4))")],
    reserved: &[],
    note: "",
};

const LOADS: Vocabulary<Load> = Vocabulary {
    key: "load",
    noun: "load mode",
    words: || [Load::Dense].iter().map(|l| (l.name(), *l)).collect(),
    calls: &[("bitmap", "bitmap(k, v)")],
    reserved: &[],
    note: "",
};

impl<T: Copy> Vocabulary<T> {
    fn parse(&self, value: &Value) -> syn::Result<Spanned<T>> {
        let words = (self.words)();
        let names: Vec<&'static str> = words.iter().map(|(name, _)| *name).collect();
        let mut quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        quoted.extend(self.calls.iter().map(|(call, _)| format!("`{call}(...)`")));
        let expected = one_of(&quoted, "or");
        let (word, called) = match &value.kind {
            ValueKind::Ident(ident) => (ident.unraw().to_string(), false),
            ValueKind::Call(ident, _) => (ident.unraw().to_string(), true),
            _ => {
                return Err(value.error(format!(
                    "`{}` must be {expected}, found {}{}",
                    self.key,
                    value.describe(),
                    unquote_hint(self.key, value, |s| names.contains(&s))
                )));
            }
        };
        let shown = value.to_string();
        if let Some((call, example)) = self.calls.iter().find(|(call, _)| *call == word) {
            // Called forms are the caller's; only the bare word reaches this point.
            return Err(value.error(format!(
                "{} `{call}` needs arguments; write e.g. `{} = {example}`",
                self.noun, self.key
            )));
        }
        if self.reserved.contains(&word.as_str()) {
            return Err(value.error(format!(
                "{} `{shown}` is not supported in this version of tessera; use {expected}",
                self.noun
            )));
        }
        match words.iter().find(|(name, _)| *name == word) {
            Some(_) if called => Err(value.error(format!(
                "{} `{word}` takes no arguments; write `{} = {word}`",
                self.noun, self.key
            ))),
            Some((_, found)) => Ok(Spanned { value: *found, span: value_span(value) }),
            None => {
                let known = match quoted.len() {
                    1 => format!("the only supported {} is", self.noun),
                    _ => "expected".to_string(),
                };
                let mut candidates = names.clone();
                candidates.extend(self.calls.iter().map(|(call, _)| *call));
                let guess = match did_you_mean(&word, &candidates) {
                    Some(close) if candidates.len() > 1 => format!("; did you mean `{close}`?"),
                    _ => String::new(),
                };
                Err(value.error(format!(
                    "unknown {} `{shown}` ({known} {expected}{}){guess}",
                    self.noun, self.note
                )))
            }
        }
    }
}

fn value_span(value: &Value) -> Span {
    value.tokens.clone().into_iter().next().map_or_else(Span::call_site, |t| t.span())
}

/// `DenseBf16` → `dense_bf16`, `Na2d` → `na2d`, `HTTPKernel` → `http_kernel`: a word starts at an
/// uppercase letter after a lowercase letter or digit, or at the last capital of an acronym.
pub fn snake_case(ident: &str) -> String {
    let chars: Vec<char> = ident.chars().collect();
    let mut out = String::with_capacity(ident.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1);
            let starts_word = match prev {
                Some(p) if p.is_lowercase() || p.is_numeric() => true,
                Some(p) if p.is_uppercase() => next.is_some_and(|n| n.is_lowercase()),
                _ => false,
            };
            if starts_word {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;
    use quote::quote;
    use tessera_desc::BitmapLoad;

    #[test]
    fn snake_case_names() {
        let cases = [
            ("Dense", "dense"),
            ("DenseBf16", "dense_bf16"),
            ("Na2d", "na2d"),
            ("Fa2Causal", "fa2_causal"),
            ("HTTPKernel", "http_kernel"),
            ("CausalF16QK", "causal_f16_qk"),
            ("already_snake", "already_snake"),
            ("ABC", "abc"),
            ("X", "x"),
            ("_Private", "_private"),
        ];
        for (ident, expected) in cases {
            assert_eq!(snake_case(ident), expected, "{ident}");
        }
    }

    #[test]
    fn suggestions_stay_close() {
        let keys = TOP.keys;
        assert_eq!(did_you_mean("head_dims", keys), Some("head_dim"));
        assert_eq!(did_you_mean("dtpye", keys), Some("dtype"));
        assert_eq!(did_you_mean("tiles", keys), Some("tile"));
        assert_eq!(did_you_mean("batch", keys), None);
        assert_eq!(did_you_mean("k", TILE.keys), Some("kv"));
        assert_eq!(did_you_mean("fp16", &["bf16", "f16"]), Some("f16"));
        assert_eq!(did_you_mean("", keys), None);
    }

    fn model(attr: TokenStream) -> syn::Result<Kernel> {
        Kernel::from_syntax(Ident::new("DenseBf16", Span::call_site()), &parse::entries(attr)?)
    }

    fn messages(attr: TokenStream) -> Vec<String> {
        match model(attr) {
            Ok(_) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn defaults_fill_optional_keys() {
        let Ok(k) = model(quote!(
            head_dim = 64u32,
            dtype = f16,
            visit = causal,
            tile = (q = [64], kv = 32)
        )) else {
            panic!("valid definition rejected");
        };
        assert_eq!((k.name.value.as_str(), k.name.derived), ("dense_bf16", true));
        assert_eq!(
            (k.head_dim.value, k.dtype.value, k.visit.value),
            (64, Dtype::F16, Visit::Causal)
        );
        assert_eq!((k.layout.value, k.load.value), (Layout::Bhsd, Load::Dense));
        assert!(matches!(&k.q_tile, Tile::Run(Param::Choices { items, .. }) if items.len() == 1));
        assert!(matches!(k.kv_tile, Tile::Run(Param::Fixed(Spanned { value: 32, .. }))));
        assert!(matches!(k.warps, Param::Default(DEFAULT_WARPS)));
        assert!(matches!(k.stages, Param::Default(DEFAULT_STAGES)));
    }

    #[test]
    fn tile_shapes_keep_their_axes() {
        let Ok(k) = model(quote!(
            head_dim = 128,
            dtype = bf16,
            visit = window(size = [7, 7]),
            tile = (q = (8, 16), kv = (8, [16, 8]))
        )) else {
            panic!("valid definition rejected");
        };
        assert!(matches!(&k.q_tile, Tile::Shape { axes, .. } if axes.len() == 2));
        assert_eq!(k.kv_tile.shapes(), [vec![8, 16], vec![8, 8]]);
        assert_eq!(
            (k.kv_tile.sizes(), k.kv_tile.tunable(), k.q_tile.tunable()),
            (vec![128, 64], true, false)
        );
        assert_eq!(k.grid_axes(), 2);
        assert_eq!(
            messages(quote!(
                head_dim = 128,
                dtype = bf16,
                visit = dense,
                tile = (q = (8, "16", (1, 2)), kv = (8, [x]))
            )),
            [
                "each axis of `q` must be an integer or a list of choices, such as \
                 `q = (8, [8, 16])`, found the string literal `\"16\"`",
                "each axis of `q` must be an integer or a list of choices, such as \
                 `q = (8, [8, 16])`, found the tuple `(1, 2)`",
                "the choices of `kv` must be integers, found the identifier `x`",
            ]
        );
    }

    #[test]
    fn shape_errors_accumulate() {
        assert_eq!(
            messages(quote!(
                head_dim = -1,
                dtype = "bf16",
                visit = causal(1),
                tile = (q = 1.0, kv = [x]),
                name = k
            )),
            [
                "`head_dim` must be an integer such as `head_dim = 128`, found the negative number `-1`",
                "`dtype` must be `bf16` or `f16`, found the string literal `\"bf16\"`; remove the quotes: `dtype = bf16`",
                "visit set `causal` takes no arguments; write `visit = causal`",
                "`q` must be an integer or a list of choices such as `q = [64, 128]`, found the float literal `1.0`",
                "the choices of `kv` must be integers, found the identifier `x`",
                "`name` must be a string literal such as `name = \"my_kernel\"`, found the identifier `k`; write `name = \"k\"`",
            ]
        );
    }

    #[test]
    fn integer_literal_forms() {
        assert!(
            model(quote!(head_dim = 0x80, dtype = bf16, visit = dense, tile = (q = 64, kv = 64)))
                .is_ok()
        );
        assert_eq!(
            messages(quote!(
                head_dim = 128u8,
                dtype = bf16,
                visit = dense,
                tile = (q = 4294967296, kv = 64)
            )),
            [
                "`head_dim` is a u32; write `128` without the `u8` suffix",
                "`q` = 4294967296 does not fit in a u32",
            ]
        );
    }

    #[test]
    fn misspelled_required_key_is_not_also_missing() {
        assert_eq!(
            messages(quote!(head_dim = 128, dtpye = bf16, tile = (q = 64))),
            [
                "unknown key `dtpye` in #[tessera::attention]; did you mean `dtype`?",
                "#[tessera::attention] is missing the required key `visit`; add e.g. `visit = dense`",
                "`tile = (...)` is missing the required key `kv`; add e.g. `kv = 64`",
            ]
        );
    }

    #[test]
    fn window_is_the_visit_set_with_arguments() {
        let attr = |visit: TokenStream| quote!(head_dim = 128, dtype = bf16, visit = #visit, tile = (q = 64, kv = 64));
        let Ok(k) = model(attr(quote!(window(size = 9)))) else {
            panic!("valid window rejected");
        };
        assert!(matches!(k.visit.value, Visit::Window(w) if w.dims == 1 && w.axes[0].size == 9));
        assert!(k.window.is_some());
        assert!(model(attr(quote!(dense))).is_ok_and(|k| k.window.is_none()));
        assert_eq!(
            messages(attr(quote!(window))),
            ["visit set `window` needs arguments; write e.g. `visit = window(size = 7)`"]
        );
        assert_eq!(
            messages(attr(quote!(windows(size = 9)))),
            ["unknown visit set `windows(size = 9)` (expected `dense`, `causal`, `window(...)` or \
                 `blocks(...)`); did you mean `window`?"]
        );
        assert_eq!(
            messages(attr(quote!(window(size = 9, size = 7, dims = 1)))),
            [
                "duplicate key `size`: it is already set in `window(...)` as `size = 9`; remove \
                 one of them",
                "`window(...)` has no `dims` key: the number of axes is the length of `size`, \
                 e.g. `size = [7, 7]` for a 2-D window",
            ]
        );
    }

    #[test]
    fn blocks_is_the_visit_set_with_an_estimate() {
        use tessera_desc::{Blocks, Estimate};
        let attr = |visit: TokenStream| quote!(head_dim = 128, dtype = bf16, visit = #visit, tile = (q = 64, kv = 32));
        let visit = |visit: TokenStream| model(attr(visit)).map(|k| k.visit.value).map_err(|e| e.to_string());
        let sale = Visit::Blocks(Blocks { causal: true, estimate: Estimate::SALE });
        assert_eq!(visit(quote!(blocks(estimate()))), Ok(sale));
        assert_eq!(visit(quote!(blocks(estimate(bits = 4, sink = 1, local = 128), causal = true))), Ok(sale));
        assert_eq!(
            visit(quote!(blocks(causal = false, estimate(bits = 8, local = 64)))),
            Ok(Visit::Blocks(Blocks { causal: false, estimate: Estimate { bits: 8, sink: 1, local: 64 } }))
        );
        assert_eq!(
            messages(attr(quote!(blocks))),
            ["visit set `blocks` needs arguments; write e.g. `visit = blocks(estimate(bits = 4))`"]
        );
        assert_eq!(
            messages(attr(quote!(blocks(causal = true)))),
            ["`blocks(...)` needs the estimate that builds its block map; write e.g. \
              `blocks(estimate(bits = 4), causal = true)`"]
        );
        assert_eq!(
            messages(attr(quote!(blocks(estimate(bits = 2, sink = x, tau = 0), estimate(), causal = 1, bits = 4, top_k)))),
            [
                "`tau` is not part of the kernel: the thresholds are calibrated per head and passed with \
                 the inputs of the estimation",
                "`sink` in `estimate(...)` must be an integer such as `sink = 1`, found the identifier `x`",
                "an estimate of 2 bits is not supported; use `4` or `8` (int4 is SALE's, int8 suits \
                 Hopper, where 4-bit mma.sync is emulated)",
                "`blocks(...)` takes one `estimate(...)`; remove this second one",
                "`blocks(...)` takes `estimate(...)` and `causal = ...`, found the identifier `top_k`",
                "`bits` belongs inside the estimate: `blocks(estimate(bits = ...))`",
                "`causal` must be `true` or `false`, found the integer `1`",
            ]
        );
        assert_eq!(
            messages(attr(quote!(blocks(estimate, casual = true)))),
            [
                "`estimate` needs parentheses: write `estimate()` for SALE's defaults, or e.g. `estimate(bits = 8)`",
                "unknown key `casual` in `blocks(...)`; did you mean `causal`?",
            ]
        );
    }

    #[test]
    fn bitmap_is_the_load_mode_with_arguments() {
        let attr = |load: TokenStream| quote!(head_dim = 128, dtype = bf16, visit = dense, load = #load, tile = (q = 64, kv = 64));
        assert!(
            model(attr(quote!(bitmap(k))))
                .is_ok_and(|k| k.load.value == Load::Bitmap(BitmapLoad { k: true, v: false }))
        );
        assert_eq!(
            messages(attr(quote!(bitmap))),
            ["load mode `bitmap` needs arguments; write e.g. `load = bitmap(k, v)`"]
        );
        assert_eq!(
            messages(attr(quote!(bitmaps(k)))),
            ["unknown load mode `bitmaps(k)` (expected `dense` or `bitmap(...)`); did you mean \
              `bitmap`?"]
        );
        assert_eq!(
            messages(attr(quote!(dense(k)))),
            ["load mode `dense` takes no arguments; write `load = dense`"]
        );
    }

    #[test]
    fn keys_in_the_wrong_group_are_pointed_home() {
        assert_eq!(
            messages(quote!(
                head_dim = 128,
                dtype = bf16,
                visit = dense,
                warps = 4,
                tile = (block_q = 64, kv = 64, dtype = f16),
                tune = (q = 1)
            )),
            [
                "`warps` belongs inside the tuning group: `tune = (warps = ...)`",
                "unknown key `block_q` in `tile = (...)`; write it as `q`",
                "`dtype` is a top-level key, not part of `tile = (...)`",
                "`q` belongs inside the tile: `tile = (q = ...)`",
            ]
        );
    }
}
