//! The rules a well-formed definition must still pass. The per-value rules and their messages come
//! from `tessera_desc`, the same functions the CLI and runtime apply to configs given at run time,
//! so the two can never disagree; this module only decides where each message points.

use proc_macro2::Span;
use syn::Error;
use syn::ext::IdentExt;
use tessera_desc::{
    MMA_M, Visit, check_block_kv, check_block_q, check_blocks, check_combination, check_head_dim, check_load,
    check_stages, check_tile_axes, check_warps, check_window,
};

use crate::errors::Errors;
use crate::model::{Kernel, Name, Param, PerAxis, Tile, UNUSED_AXIS, WindowSpec, size, snake_case};

type Rule = fn(u32) -> Result<(), String>;

/// The rules one tile is held to, and how messages name it.
struct TileRules {
    key: &'static str,
    /// What messages call it.
    what: &'static str,
    /// What its size counts.
    counts: &'static str,
    /// The rule on its size: the product of its extents.
    size: Rule,
    /// The rule on one axis of a shape, alone: a box with that extent along one axis.
    extent: Rule,
}

const Q_TILE: TileRules = TileRules {
    key: "q",
    what: "query tile",
    counts: "rows",
    size: check_block_q,
    extent: |v| check_tile_axes(&Visit::Dense, &[v, 1, 1], &[1; 3]),
};

const KV_TILE: TileRules = TileRules {
    key: "kv",
    what: "KV tile",
    counts: "keys",
    size: check_block_kv,
    extent: |v| check_tile_axes(&Visit::Dense, &[1; 3], &[v, 1, 1]),
};

pub fn check(kernel: &Kernel) -> syn::Result<()> {
    let mut errors = Errors::default();
    if let Err(message) = check_head_dim(kernel.head_dim.value) {
        errors.push(Error::new(kernel.head_dim.span, message));
    }
    let block_q_ok = tile(&mut errors, &Q_TILE, &kernel.q_tile, kernel.grid_axes());
    let kv_ok = tile(&mut errors, &KV_TILE, &kernel.kv_tile, kernel.grid_axes());
    let warps_ok = param(&mut errors, Place::Key("warps"), &kernel.warps, check_warps);
    param(&mut errors, Place::Key("stages"), &kernel.stages, check_stages);
    // With a bad block_q or warps value already reported, a combination error would only repeat it.
    if block_q_ok && warps_ok {
        combination(&mut errors, kernel);
    }
    // The load's rule prunes KV tiles; it says nothing useful about tiles already reported.
    if kv_ok {
        load(&mut errors, kernel);
        blocks(&mut errors, kernel);
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

/// One tile: its form against the grid, each value at its own token, then the size of every
/// shape its choices give. Returns whether all passed.
fn tile(errors: &mut Errors, rules: &TileRules, tile: &Tile, grid_axes: usize) -> bool {
    if let Err(error) = form(rules, tile, grid_axes) {
        errors.push(error);
        return false;
    }
    match tile {
        Tile::Run(run) => param(errors, Place::Key(rules.key), run, rules.size),
        Tile::Shape { axes, .. } => {
            let mut ok = true;
            for (axis, extent) in axes.iter().enumerate() {
                ok &= param(errors, Place::Axis(rules.key, axis), extent, rules.extent);
            }
            ok && shape_sizes(errors, rules, tile)
        }
    }
}

/// A run of tokens for one sequence (dense, causal, 1-D windows), a shape with one extent per
/// axis for a window over more axes. A bare number there would extend the tile along axis 0
/// only: a box `check_tile_axes` accepts, but a column of the row-major grid rather than the run
/// of consecutive tokens it reads as, so the shape is asked for instead.
fn form(rules: &TileRules, tile: &Tile, grid_axes: usize) -> syn::Result<()> {
    let key = rules.key;
    let example = shape_example(grid_axes);
    match tile {
        Tile::Run(_) if grid_axes > 1 => Err(tile.error(format!(
            "a {grid_axes}-D window needs a tile shape per axis, such as `{key} = {example}` \
             (the tile's {} are the product)",
            rules.counts
        ))),
        Tile::Shape { .. } if grid_axes == 1 => Err(tile.error(format!(
            "tile shapes are for windows over 2 or 3 axes, but this kernel's tokens form one \
             sequence; give the number of {}, such as `{key} = 64`",
            rules.counts
        ))),
        Tile::Shape { axes, .. } if axes.len() != grid_axes => {
            let extents = match axes.len() {
                1 => "1 extent".to_string(),
                n => format!("{n} extents"),
            };
            Err(tile.error(format!(
                "`{key}` gives {extents}, but the window has {grid_axes} axes; give one extent \
                 per axis, such as `{key} = {example}`"
            )))
        }
        _ => Ok(()),
    }
}

/// 128 rows over the axes of a grid.
fn shape_example(grid_axes: usize) -> &'static str {
    match grid_axes {
        2 => "(8, 16)",
        _ => "(4, 4, 8)",
    }
}

/// Every shape of the choices must pass the size rule, as every value of a list must: the tuner
/// takes all of their combinations, and one it can never build is a mistake of the definition.
fn shape_sizes(errors: &mut Errors, rules: &TileRules, tile: &Tile) -> bool {
    let counts = rules.counts;
    let shapes = tile.shapes();
    let failures: Vec<(&Vec<u32>, String)> = shapes
        .iter()
        .filter_map(|shape| {
            let reason = match size(shape) {
                Some(n) => (rules.size)(n).err().map(|rule| format!("has {n} {counts}: {rule}")),
                None => Some(format!("has more {counts} than a u32 holds")),
            };
            reason.map(|reason| (shape, reason))
        })
        .collect();
    let Some((shape, reason)) = failures.first() else { return true };
    let others = match failures.len() {
        1 => String::new(),
        n => format!("; {n} of the {} shapes its choices give fail", shapes.len()),
    };
    let text: Vec<String> = shape.iter().map(u32::to_string).collect();
    errors.push(tile.error(format!("the {} {} {reason}{others}", rules.what, text.join("x"))));
    false
}

/// Where a parameter is written, for messages: under its key, or as one axis of a tile shape.
#[derive(Clone, Copy)]
enum Place<'a> {
    Key(&'a str),
    Axis(&'a str, usize),
}

impl std::fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Key(key) => write!(f, "`{key}`"),
            Place::Axis(key, axis) => write!(f, "axis {axis} of `{key}`"),
        }
    }
}

impl Place<'_> {
    fn empty_choices(self) -> String {
        match self {
            Place::Key(key) => format!(
                "`{key} = []` leaves nothing to choose from; give at least one value, \
                 e.g. `{key} = [{}]`",
                example(key)
            ),
            Place::Axis(..) => format!(
                "`[]` leaves {self} nothing to choose from; give at least one extent, e.g. `[8]`"
            ),
        }
    }
}

/// Checks every value of one parameter at its own token; returns whether all passed.
fn param(errors: &mut Errors, place: Place, param: &Param, rule: Rule) -> bool {
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
            fail(param.error(place.empty_choices()))
        }
        Param::Choices { items, .. } => {
            for (i, num) in items.iter().enumerate() {
                if items[..i].iter().any(|earlier| earlier.value == num.value) {
                    fail(Error::new(
                        num.span,
                        format!(
                            "duplicate choice `{}` in {place}; list each value once",
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
    let (qs, warps) = (kernel.q_tile.sizes(), kernel.warps.values());
    if qs.iter().any(|&q| warps.iter().any(|&w| check_combination(q, w).is_ok())) {
        return;
    }
    // Quote the pair closest to working: the largest tile over the fewest warps.
    let (Some(&q), Some(&w)) = (qs.iter().max(), warps.iter().min()) else { return };
    let Err(reason) = check_combination(q, w) else { return };
    let space = if qs.len() * warps.len() > 1 {
        format!(
            " among block_q = {} and warps = {}",
            list(kernel.q_tile.tunable(), &qs),
            list(kernel.warps.tunable(), &warps)
        )
    } else {
        String::new()
    };
    let others = if qs.len() * warps.len() > 1 { ", and every other pair fails too" } else { "" };
    errors.push(kernel.q_tile.error(format!(
        "no valid (block_q, warps) combination{space}: {reason}{others}; use a block_q that is a \
         multiple of {MMA_M} × warps, or fewer warps"
    )));
}

/// The tuner prunes the KV tiles that fail `check_load` (a bitmap load reads whole bitmap tiles);
/// a space where every tile fails would leave it nothing, which is an error of the definition.
fn load(errors: &mut Errors, kernel: &Kernel) {
    let shapes = kernel.kv_tile.shapes();
    let failures: Vec<String> = shapes
        .iter()
        .filter_map(|shape| check_load(&kernel.load.value, &kernel.visit.value, &grid(shape)).err())
        .collect();
    let Some(reason) = failures.first() else { return };
    if failures.len() < shapes.len() {
        return;
    }
    let (space, others) = match shapes.len() {
        1 => (String::new(), ""),
        _ => (
            format!(" among block_kv = {}", list(true, &kernel.kv_tile.sizes())),
            ", and every other choice fails too",
        ),
    };
    errors.push(kernel.kv_tile.error(format!(
        "no KV tile{space} suits `load = {}`: {reason}{others}",
        kernel.load.value
    )));
}

/// The tuner prunes the KV tiles that fail `check_blocks` (the estimate's local window must be
/// whole tiles); if every tile fails, the error points at the window's `local`.
fn blocks(errors: &mut Errors, kernel: &Kernel) {
    let Some(spec) = &kernel.blocks else { return };
    let shapes = kernel.kv_tile.shapes();
    let failures: Vec<String> =
        shapes.iter().filter_map(|shape| check_blocks(&kernel.visit.value, &grid(shape)).err()).collect();
    let Some(reason) = failures.first() else { return };
    if failures.len() < shapes.len() {
        return;
    }
    let others = if shapes.len() > 1 { ", and every other KV tile of the space fails too" } else { "" };
    errors.push(Error::new(
        spec.local,
        format!("{reason}{others}; use a `local` that is a multiple of block_kv, or another KV tile"),
    ));
}

/// A tile shape as the `Config` holds it: one extent per grid axis, 1 past the written ones.
fn grid(shape: &[u32]) -> [u32; 3] {
    let mut out = [1; 3];
    for (slot, &extent) in out.iter_mut().zip(shape) {
        *slot = extent;
    }
    out
}

fn list(tunable: bool, values: &[u32]) -> String {
    let values: Vec<String> = values.iter().map(u32::to_string).collect();
    if tunable { format!("[{}]", values.join(", ")) } else { values.concat() }
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

    /// The messages of a 128-dim bf16 definition with the given other keys.
    fn messages(keys: TokenStream) -> Vec<String> {
        let attr = quote!(head_dim = 128, dtype = bf16, #keys);
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
        let tile_2d = quote!(tile = (q = (8, 8), kv = (8, 8)));
        assert!(
            messages(quote!(visit = window(size = [7, 7], stride = [7, 1]), #tile_2d)).is_empty()
        );
        assert_eq!(
            messages(quote!(
                visit = window(size = [7, 0, 5], stride = [8, 1, 6], dilation = [1, 1, 0]),
                tile = (q = (4, 4, 4), kv = (4, 4, 4))
            )),
            [
                "axis 0: stride 8 is larger than the window size 7",
                "axis 1: window size, dilation and stride must be at least 1",
                "axis 2: window size, dilation and stride must be at least 1",
            ]
        );
        // One value shared by every axis is one mistake.
        assert_eq!(
            messages(quote!(visit = window(size = [3, 3], dilation = 0), #tile_2d)).len(),
            1,
            "shared value reported once"
        );
    }

    #[test]
    fn tile_shapes_have_one_extent_per_grid_axis() {
        let na2d = quote!(visit = window(size = [7, 7]));
        assert!(messages(quote!(#na2d, tile = (q = (8, 16), kv = (8, [8, 16])))).is_empty());
        assert!(
            messages(quote!(visit = window(size = 7), tile = (q = 64, kv = [32, 64]))).is_empty()
        );
        assert_eq!(
            messages(quote!(#na2d, tile = (q = 64, kv = (8, 8, 1)))),
            [
                "a 2-D window needs a tile shape per axis, such as `q = (8, 16)` (the tile's rows \
                 are the product)",
                "`kv` gives 3 extents, but the window has 2 axes; give one extent per axis, such \
                 as `kv = (8, 16)`",
            ]
        );
        assert_eq!(
            messages(quote!(visit = causal, tile = (q = (64), kv = (8, 8)))),
            [
                "tile shapes are for windows over 2 or 3 axes, but this kernel's tokens form one \
                 sequence; give the number of rows, such as `q = 64`",
                "tile shapes are for windows over 2 or 3 axes, but this kernel's tokens form one \
                 sequence; give the number of keys, such as `kv = 64`",
            ]
        );
        assert_eq!(
            messages(quote!(visit = window(size = [7, 7, 7]), tile = (q = (8, 16), kv = 64))),
            [
                "`q` gives 2 extents, but the window has 3 axes; give one extent per axis, such \
                 as `q = (4, 4, 8)`",
                "a 3-D window needs a tile shape per axis, such as `kv = (4, 4, 8)` (the tile's \
                 keys are the product)",
            ]
        );
    }

    #[test]
    fn tile_shapes_follow_the_block_rules_for_every_combination() {
        let na2d = quote!(visit = window(size = [7, 7]));
        assert_eq!(
            messages(quote!(#na2d, tile = (q = (0, [16, 16]), kv = ([], 8)))),
            [
                "the query tile has an axis of extent 0",
                "duplicate choice `16` in axis 1 of `q`; list each value once",
                "`[]` leaves axis 0 of `kv` nothing to choose from; give at least one extent, \
                 e.g. `[8]`",
            ]
        );
        assert_eq!(
            messages(quote!(#na2d, tile = (q = ([1, 2, 8], 8), kv = (16, [16, 32])))),
            [
                "the query tile 1x8 has 8 rows: block_q = 8 is not a positive multiple of 16 (the \
                 mma m16n8k16 row count)",
                "the KV tile 16x32 has 512 keys: block_kv = 512 is larger than 256",
            ]
        );
        assert_eq!(
            messages(quote!(#na2d, tile = (q = ([1, 3], 8), kv = (8, 8)))),
            ["the query tile 1x8 has 8 rows: block_q = 8 is not a positive multiple of 16 (the \
              mma m16n8k16 row count); 2 of the 2 shapes its choices give fail"]
        );
        // The products stand for block_q in the (block_q, warps) rule.
        assert_eq!(
            messages(quote!(#na2d, tile = (q = (4, [4, 8]), kv = (8, 8)), tune = (warps = 8))),
            ["no valid (block_q, warps) combination among block_q = [16, 32] and warps = 8: \
              block_q = 32 does not split into 16-row slabs over 8 warps (needs a multiple of \
              128), and every other pair fails too; use a block_q that is a multiple of 16 × \
              warps, or fewer warps"]
        );
        assert_eq!(
            messages(quote!(#na2d, tile = (q = (65536, 65536), kv = (8, 8)))),
            ["the query tile 65536x65536 has more rows than a u32 holds"]
        );
    }

    #[test]
    fn a_bitmap_load_needs_some_kv_tile_of_whole_bitmap_tiles() {
        let dense = quote!(visit = dense, load = bitmap(k, v));
        assert!(messages(quote!(#dense, tile = (q = 64, kv = [64, 32, 128]))).is_empty());
        assert_eq!(
            messages(quote!(#dense, tile = (q = 64, kv = 32))),
            ["no KV tile suits `load = bitmap(k, v)`: a bitmap load reads KV tiles of whole \
              64-token bitmap tiles: block_kv = 32 is not a multiple of 64"]
        );
        assert_eq!(
            messages(quote!(visit = causal, load = bitmap(v), tile = (q = 64, kv = [16, 96]))),
            ["no KV tile among block_kv = [16, 96] suits `load = bitmap(v)`: a bitmap load reads \
              KV tiles of whole 64-token bitmap tiles: block_kv = 16 is not a multiple of 64, and \
              every other choice fails too"]
        );
        // A KV tile that breaks its own rules is reported once, not again for the load.
        assert_eq!(
            messages(quote!(#dense, tile = (q = 64, kv = 8))),
            ["block_kv = 8 is not a positive multiple of 16 (two mma n8 tiles, one ldmatrix.x4)"]
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
