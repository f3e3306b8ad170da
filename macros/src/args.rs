//! Arguments of `board!(...)` and `vms!(...)`.

use syn::parse::{Parse, ParseStream};
use syn::{Ident, LitBool, LitStr, Token};

/// `board!()` or `board!(file = "x.kdl", name = "y", allow_experimental = true)`.
#[derive(Default)]
pub struct BoardArgs {
    /// KDL file, relative to `CARGO_MANIFEST_DIR`.
    pub file: Option<LitStr>,
    /// Board name.
    pub name: Option<LitStr>,
    /// Opt-in for experimental boards.
    pub allow_experimental: Option<LitBool>,
}

impl Parse for BoardArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = BoardArgs::default();
        while !input.is_empty() {
            let key: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            match key.to_string().as_str() {
                "file" => set(&mut args.file, &key, input.parse()?)?,
                "name" => set(&mut args.name, &key, input.parse()?)?,
                "allow_experimental" => set(&mut args.allow_experimental, &key, input.parse()?)?,
                other => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!(
                            "unknown argument `{other}`; board! takes `file = \"boards.kdl\"`, \
                             `name = \"BOARD\"` and `allow_experimental = true`"
                        ),
                    ))
                }
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(args)
    }
}

fn set<T>(slot: &mut Option<T>, key: &Ident, value: T) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new(
            key.span(),
            format!("`{key}` is given twice; keep one"),
        ));
    }
    *slot = Some(value);
    Ok(())
}

/// `vms!()` or `vms!("vms.toml")`.
#[derive(Default)]
pub struct VmsArgs {
    /// VM file, relative to `CARGO_MANIFEST_DIR`.
    pub file: Option<LitStr>,
}

impl Parse for VmsArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.is_empty() {
            return Ok(Self::default());
        }
        let file = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "vms! takes nothing (the build's VM file, HV_VMS) or its path: vms!(\"vms.toml\")",
            )
        })?;
        let _ = input.parse::<Option<Token![,]>>()?;
        if !input.is_empty() {
            return Err(input.error("vms! takes a single path: vms!(\"vms.toml\")"));
        }
        Ok(Self { file: Some(file) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_board_args() {
        let a: BoardArgs = syn::parse_str("").unwrap();
        assert!(a.file.is_none() && a.name.is_none() && a.allow_experimental.is_none());
    }

    #[test]
    fn all_board_args_with_trailing_comma() {
        let a: BoardArgs =
            syn::parse_str(r#"file = "a.kdl", name = "b", allow_experimental = true,"#).unwrap();
        assert_eq!(a.file.unwrap().value(), "a.kdl");
        assert_eq!(a.name.unwrap().value(), "b");
        assert!(a.allow_experimental.unwrap().value);
    }

    #[test]
    fn unknown_board_arg_lists_the_known_ones() {
        let e = syn::parse_str::<BoardArgs>(r#"board = "x""#).err().unwrap();
        assert!(e.to_string().contains("unknown argument `board`"), "{e}");
        assert!(e.to_string().contains("allow_experimental"), "{e}");
    }

    #[test]
    fn repeated_board_arg_is_an_error() {
        let e = syn::parse_str::<BoardArgs>(r#"name = "x", name = "y""#)
            .err()
            .unwrap();
        assert!(e.to_string().contains("given twice"), "{e}");
    }

    #[test]
    fn vms_args() {
        assert!(syn::parse_str::<VmsArgs>("").unwrap().file.is_none());
        let a: VmsArgs = syn::parse_str(r#""v.toml""#).unwrap();
        assert_eq!(a.file.unwrap().value(), "v.toml");
        assert!(syn::parse_str::<VmsArgs>(r#""a", "b""#).is_err());
        assert!(syn::parse_str::<VmsArgs>("x = 1").is_err());
    }
}
