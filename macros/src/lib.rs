//! Proc macros: the selected board's KDL and the VM TOML become static tables for the core.
use proc_macro::TokenStream;

/// Generates the board tables (placeholder until the generator lands).
#[proc_macro]
pub fn board(_input: TokenStream) -> TokenStream {
    TokenStream::new()
}

/// Generates the VM table (placeholder until the generator lands).
#[proc_macro]
pub fn vms(_input: TokenStream) -> TokenStream {
    TokenStream::new()
}
