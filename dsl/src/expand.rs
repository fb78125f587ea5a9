//! The pipeline driver and the generated `Kernel` impl.

use proc_macro2::{Literal, TokenStream};
use quote::quote;
use syn::{Error, Item, LitStr};
use tessera_desc::{BitmapLoad, Blocks, Dtype, Layout, Load, Visit, Window};

use crate::errors;
use crate::model::{self, Kernel, Param, Spanned, Tile};
use crate::{parse, validate};

pub fn attention(attr: TokenStream, item: TokenStream) -> TokenStream {
    match try_expand(attr, item.clone()) {
        Ok(expanded) => quote!(#item #expanded),
        // The item is kept as written so the only errors the user sees are ours, not follow-up
        // "cannot find type" errors from code that uses the struct.
        Err(error) => {
            let error = error.into_compile_error();
            quote!(#error #item)
        }
    }
}

fn try_expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let item: Item = syn::parse2(item)?;
    let (ident, entries) = errors::join(model::target(&item), parse::entries(attr))?;
    let kernel = Kernel::from_syntax(ident, &entries)?;
    validate::check(&kernel)?;
    impl_kernel(&kernel)
}

// Paths name only items re-exported at the root of tessera-desc: crates that alias tessera-desc
// itself as `tessera` (instead of the facade) must be able to use the macro too.
fn impl_kernel(kernel: &Kernel) -> syn::Result<TokenStream> {
    let ident = &kernel.ident;
    let name = LitStr::new(&kernel.name.value, kernel.name.span);
    let head_dim = Literal::u32_unsuffixed(kernel.head_dim.value);
    let dtype = variant("dtype", kernel.dtype, |d| match d {
        Dtype::Bf16 => Some(quote!(Bf16)),
        Dtype::F16 => Some(quote!(F16)),
        _ => None,
    })?;
    let layout = variant("layout", kernel.layout, |l| match l {
        Layout::Bhsd => Some(quote!(Bhsd)),
        _ => None,
    })?;
    let visit = variant("visit", kernel.visit, |v| match v {
        Visit::Dense => Some(quote!(Dense)),
        Visit::Causal => Some(quote!(Causal)),
        Visit::Window(w) => Some(window(&w)),
        Visit::Blocks(b) => Some(blocks(&b)),
        _ => None,
    })?;
    let load = variant("load", kernel.load, |l| match l {
        Load::Dense => Some(quote!(Dense)),
        Load::Bitmap(BitmapLoad { k, v }) => {
            Some(quote!(Bitmap(::tessera::BitmapLoad { k: #k, v: #v })))
        }
        _ => None,
    })?;
    let q_tile = tile(&kernel.q_tile);
    let kv_tile = tile(&kernel.kv_tile);
    let warps = param(&kernel.warps);
    let stages = param(&kernel.stages);
    Ok(quote! {
        impl ::tessera::Kernel for #ident {
            const DESC: ::tessera::KernelDesc = ::tessera::KernelDesc {
                name: #name,
                head_dim: #head_dim,
                dtype: ::tessera::Dtype::#dtype,
                layout: ::tessera::Layout::#layout,
                visit: ::tessera::Visit::#visit,
                load: ::tessera::Load::#load,
                schedule: ::tessera::Schedule {
                    q_tile: #q_tile,
                    kv_tile: #kv_tile,
                    warps: #warps,
                    stages: #stages,
                },
            };
        }
    })
}

/// The enums are `non_exhaustive`: a variant tessera-desc adds (and names in its `ALL` lists)
/// before this crate learns to spell it becomes an error at the user's value, not a panic.
fn variant<T: Copy + std::fmt::Debug>(
    key: &str,
    value: Spanned<T>,
    spell: impl FnOnce(T) -> Option<TokenStream>,
) -> syn::Result<TokenStream> {
    spell(value.value).ok_or_else(|| {
        Error::new(
            value.span,
            format!("this version of tessera-dsl cannot generate {key} {:?}", value.value),
        )
    })
}

/// `Window(::tessera::Window { .. })`, all three axes written out (the unused ones as the model
/// filled them), so the constant equals the `Window` the model built.
fn window(w: &Window) -> TokenStream {
    let dims = Literal::u8_unsuffixed(w.dims);
    let axes = w.axes.iter().map(|a| {
        let size = Literal::u32_unsuffixed(a.size);
        let dilation = Literal::u32_unsuffixed(a.dilation);
        let stride = Literal::u32_unsuffixed(a.stride);
        let causal = a.causal;
        quote! {
            ::tessera::WindowAxis {
                size: #size,
                dilation: #dilation,
                stride: #stride,
                causal: #causal,
            }
        }
    });
    quote!(Window(::tessera::Window { dims: #dims, axes: [#(#axes),*] }))
}

/// `Blocks(::tessera::Blocks { .. })` with every estimate field written out.
fn blocks(b: &Blocks) -> TokenStream {
    let causal = b.causal;
    let bits = Literal::u8_unsuffixed(b.estimate.bits);
    let sink = Literal::u32_unsuffixed(b.estimate.sink);
    let local = Literal::u32_unsuffixed(b.estimate.local);
    quote! {
        Blocks(::tessera::Blocks {
            causal: #causal,
            estimate: ::tessera::Estimate { bits: #bits, sink: #sink, local: #local },
        })
    }
}

/// `[p0, p1, p2]`: one extent per grid axis, those past the written ones `Fixed(1)` (a run of
/// tokens is its extent along axis 0). The grid has at most a window's axes.
fn tile(tile: &Tile) -> TokenStream {
    let written = tile.axes().iter().map(param);
    let rest = (tile.axes().len()..usize::from(Window::MAX_DIMS))
        .map(|_| quote!(::tessera::Param::Fixed(1)));
    let axes = written.chain(rest);
    quote!([#(#axes),*])
}

/// An integer stays `Fixed` and a list stays `Choices`, even of one value: a list says "tunable".
fn param(param: &Param) -> TokenStream {
    match param {
        Param::Default(value) => {
            let value = Literal::u32_unsuffixed(*value);
            quote!(::tessera::Param::Fixed(#value))
        }
        Param::Fixed(num) => {
            let value = Literal::u32_unsuffixed(num.value);
            quote!(::tessera::Param::Fixed(#value))
        }
        Param::Choices { items, .. } => {
            let values = items.iter().map(|num| Literal::u32_unsuffixed(num.value));
            quote!(::tessera::Param::Choices(&[#(#values),*]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(attr: TokenStream, item: TokenStream) -> String {
        attention(attr, item).to_string()
    }

    #[test]
    fn generates_the_desc_impl() {
        let out = expand(
            quote!(
                head_dim = 128,
                dtype = bf16,
                visit = causal,
                tile = (q = [64, 128], kv = 64),
                tune = (stages = [1, 2])
            ),
            quote!(
                pub struct CausalBf16;
            ),
        );
        let expected = quote! {
            pub struct CausalBf16;
            impl ::tessera::Kernel for CausalBf16 {
                const DESC: ::tessera::KernelDesc = ::tessera::KernelDesc {
                    name: "causal_bf16",
                    head_dim: 128,
                    dtype: ::tessera::Dtype::Bf16,
                    layout: ::tessera::Layout::Bhsd,
                    visit: ::tessera::Visit::Causal,
                    load: ::tessera::Load::Dense,
                    schedule: ::tessera::Schedule {
                        q_tile: [::tessera::Param::Choices(&[64, 128]), ::tessera::Param::Fixed(1), ::tessera::Param::Fixed(1)],
                        kv_tile: [::tessera::Param::Fixed(64), ::tessera::Param::Fixed(1), ::tessera::Param::Fixed(1)],
                        warps: ::tessera::Param::Fixed(4),
                        stages: ::tessera::Param::Choices(&[1, 2]),
                    },
                };
            }
        };
        assert_eq!(out, expected.to_string());
    }

    #[test]
    fn windows_spell_every_axis() {
        let out = expand(
            quote!(
                head_dim = 128,
                dtype = f16,
                visit = window(size = [13, 9], dilation = 2, causal = [true, false]),
                tile = (q = (8, 16), kv = (8, [8, 16]))
            ),
            quote!(
                pub struct Na2d;
            ),
        );
        let visit = quote! {
            visit: ::tessera::Visit::Window(::tessera::Window {
                dims: 2,
                axes: [
                    ::tessera::WindowAxis { size: 13, dilation: 2, stride: 1, causal: true, },
                    ::tessera::WindowAxis { size: 9, dilation: 2, stride: 1, causal: false, },
                    ::tessera::WindowAxis { size: 1, dilation: 1, stride: 1, causal: false, }
                ]
            }),
        };
        assert!(out.contains(&visit.to_string()), "{out}");
        let tiles = quote! {
            q_tile: [::tessera::Param::Fixed(8), ::tessera::Param::Fixed(16), ::tessera::Param::Fixed(1)],
            kv_tile: [::tessera::Param::Fixed(8), ::tessera::Param::Choices(&[8, 16]), ::tessera::Param::Fixed(1)],
        };
        assert!(out.contains(&tiles.to_string()), "{out}");
    }

    #[test]
    fn bitmap_loads_spell_both_flags() {
        let out = expand(
            quote!(
                head_dim = 128,
                dtype = bf16,
                visit = dense,
                load = bitmap(v),
                tile = (q = 64, kv = 64)
            ),
            quote!(
                pub struct Compressed;
            ),
        );
        let load = quote! {
            load: ::tessera::Load::Bitmap(::tessera::BitmapLoad { k: false, v: true }),
        };
        assert!(out.contains(&load.to_string()), "{out}");
    }

    #[test]
    fn errors_keep_the_item() {
        let out = expand(
            quote!(head_dim = 96),
            quote!(
                pub struct Dense;
            ),
        );
        assert!(out.starts_with(":: core :: compile_error !"), "{out}");
        assert!(out.ends_with("pub struct Dense ;"), "{out}");
    }

    #[test]
    fn item_and_attribute_errors_are_reported_together() {
        let out = expand(
            quote!(head_dim = ),
            quote!(
                enum E {}
            ),
        );
        assert_eq!(out.matches("compile_error").count(), 2, "{out}");
    }
}
