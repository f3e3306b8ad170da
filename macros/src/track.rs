//! Rebuild tracking: generated code names its input files and variables so cargo rebuilds on change.

use crate::select::TRACKED_ENV;
use proc_macro2::TokenStream;
use quote::quote;
use std::path::Path;

/// `const _: &[u8] = include_bytes!(..)` for each existing file (rustc then lists it in the
/// crate's dep-info), and `option_env!` for each `HV_SELECTED_*` variable (cargo tracks
/// those too).
pub fn inputs(files: &[&Path]) -> TokenStream {
    let files = files
        .iter()
        .filter(|f| f.is_file())
        .filter_map(|f| std::path::absolute(f).ok())
        .map(|f| f.display().to_string());
    let vars = TRACKED_ENV.iter();
    quote! {
        #(const _: &[u8] = ::core::include_bytes!(#files);)*
        #(const _: ::core::option::Option<&str> = ::core::option_env!(#vars);)*
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lit::compact;

    #[test]
    fn existing_files_are_included_and_missing_ones_skipped() {
        let me = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/track.rs");
        let out = compact(&inputs(&[&me, Path::new("/nonexistent/x.kdl")]));
        assert!(
            out.contains(&format!("include_bytes!(\"{}\")", me.display())),
            "{out}"
        );
        assert!(!out.contains("nonexistent"), "{out}");
    }

    #[test]
    fn selection_variables_are_tracked() {
        let out = compact(&inputs(&[]));
        for v in TRACKED_ENV {
            assert!(out.contains(&format!("option_env!(\"{v}\")")), "{v}: {out}");
        }
    }
}
