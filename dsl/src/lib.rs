use proc_macro::TokenStream; #[proc_macro_attribute] pub fn attention(_a: TokenStream, i: TokenStream) -> TokenStream { i }
