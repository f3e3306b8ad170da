//! Literal helpers shared by the generators: readable hex, strings, options.

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::LitInt;

/// `0x0900_0000_u64`-style literal: hex grouped by 4 digits, so `cargo expand` reads like the KDL.
pub fn hex(value: u64) -> LitInt {
    let digits = format!("{value:x}");
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 4 == 0 {
            grouped.push('_');
        }
        grouped.push(c);
    }
    LitInt::new(&format!("0x{grouped}_u64"), Span::call_site())
}

/// `Some(x)` / `None` from an option, mapping the inner value to tokens.
pub fn option<T>(value: Option<&T>, f: impl Fn(&T) -> TokenStream) -> TokenStream {
    match value {
        Some(v) => {
            let inner = f(v);
            quote!(::core::option::Option::Some(#inner))
        }
        None => quote!(::core::option::Option::None),
    }
}

/// A `&'static [..]` slice expression of the items.
pub fn slice<I: ToTokens>(items: impl IntoIterator<Item = I>) -> TokenStream {
    let items: Vec<I> = items.into_iter().collect();
    quote!(&[#(#items),*])
}

/// Token text without spaces, for assertions in tests.
#[cfg(test)]
pub fn compact(tokens: &TokenStream) -> String {
    tokens.to_string().replace(' ', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_groups_by_four_digits() {
        assert_eq!(hex(0x0900_0000).to_string(), "0x900_0000_u64");
        assert_eq!(hex(0x4000_0000).to_string(), "0x4000_0000_u64");
        assert_eq!(hex(0).to_string(), "0x0_u64");
        assert_eq!(
            hex(0x1_0000_0000).base10_parse::<u64>().unwrap(),
            0x1_0000_0000
        );
    }

    #[test]
    fn option_and_slice() {
        let some = option(Some(&3u32), |v| quote!(#v));
        assert_eq!(compact(&some), "::core::option::Option::Some(3u32)");
        let none = option(None::<&u32>, |v| quote!(#v));
        assert_eq!(compact(&none), "::core::option::Option::None");
        assert_eq!(compact(&slice(["a", "b"])), "&[\"a\",\"b\"]");
    }
}
