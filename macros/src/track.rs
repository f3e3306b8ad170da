//! Rebuild tracking: generated code names its input files and variables so cargo rebuilds on change.

use crate::select::TRACKED_ENV;
use proc_macro2::TokenStream;
use quote::quote;
use std::path::Path;

/// `const _: &[u8] = include_bytes!(..)` of the model file if it exists (rustc then lists
/// it in the crate's dep-info), and `option_env!` for `HV_MODEL` (cargo tracks that too).
///
/// The build script reruns when the board KDL, the VM file or a guest image changes
/// (`cargo:rerun-if-changed`) and rewrites the model, so the image rebuilds with it.
pub fn inputs(model: Option<&Path>) -> TokenStream {
    let files = model
        .into_iter()
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
    fn an_existing_model_is_included_and_a_missing_one_skipped() {
        let me = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/track.rs");
        let out = compact(&inputs(Some(&me)));
        assert!(
            out.contains(&format!("include_bytes!(\"{}\")", me.display())),
            "{out}"
        );
        let out = compact(&inputs(Some(Path::new("/nonexistent/hv-model.json"))));
        assert!(!out.contains("nonexistent"), "{out}");
    }

    #[test]
    fn selection_variables_are_tracked() {
        let out = compact(&inputs(None));
        for v in TRACKED_ENV {
            assert!(out.contains(&format!("option_env!(\"{v}\")")), "{v}: {out}");
        }
    }
}
