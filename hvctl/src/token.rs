//! Where the session token is kept: `$HVCTL_TOKEN`, else the token file.

use crate::Error;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The token file: `$XDG_CONFIG_HOME/hvctl/token` if that variable is an absolute path
/// (the XDG rule), else `$HOME/.config/hvctl/token`.
pub fn path() -> Result<PathBuf, Error> {
    path_from(
        std::env::var_os("XDG_CONFIG_HOME"),
        std::env::var_os("HOME"),
    )
}

/// [`path`] from the two variables' values.
pub fn path_from(xdg: Option<OsString>, home: Option<OsString>) -> Result<PathBuf, Error> {
    if let Some(x) = xdg.map(PathBuf::from).filter(|p| p.is_absolute()) {
        return Ok(x.join("hvctl").join("token"));
    }
    match home.map(PathBuf::from).filter(|p| p.is_absolute()) {
        Some(h) => Ok(h.join(".config").join("hvctl").join("token")),
        None => Err(Error::msg(
            "neither XDG_CONFIG_HOME nor HOME is set: cannot find the token file (or set HVCTL_TOKEN)",
        )),
    }
}

/// Checks that a token can be sent in a header: visible ASCII, not empty.
pub fn valid(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic())
}

/// The token: `$HVCTL_TOKEN` if set and not empty, else the token file's, else `None`.
pub fn load() -> Result<Option<String>, Error> {
    if let Some(t) = std::env::var_os("HVCTL_TOKEN").filter(|t| !t.is_empty()) {
        let t = t.into_string().unwrap_or_default();
        let t = t.trim();
        if !valid(t) {
            return Err(Error::msg("HVCTL_TOKEN is not a valid token"));
        }
        return Ok(Some(t.to_owned()));
    }
    let p = path()?;
    match std::fs::read_to_string(&p) {
        Ok(s) if valid(s.trim()) => Ok(Some(s.trim().to_owned())),
        Ok(_) => Err(Error::Msg(format!(
            "{} is not a valid token file; run hvctl login",
            p.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Msg(format!("cannot read {}: {e}", p.display()))),
    }
}

/// Writes `token` to `file` readable by the owner only (0600; its directory 0700).
pub fn save(file: &Path, token: &str) -> Result<(), Error> {
    let err = |e: std::io::Error| Error::Msg(format!("cannot write {}: {e}", file.display()));
    if let Some(dir) = file.parent() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(dir).map_err(err)?;
    }
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(file).map_err(err)?;
    // An older file keeps its mode on open: narrow it before the token is in it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    writeln!(f, "{token}").map_err(err)
}

/// Removes the token file; `false` if there was none.
pub fn remove(file: &Path) -> Result<bool, Error> {
    match std::fs::remove_file(file) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::Msg(format!("cannot remove {}: {e}", file.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let p = path_from(Some("/x/cfg".into()), Some("/home/u".into())).unwrap();
        assert_eq!(p, Path::new("/x/cfg/hvctl/token"));
        // A relative XDG_CONFIG_HOME is ignored, as the XDG spec says.
        let p = path_from(Some("rel".into()), Some("/home/u".into())).unwrap();
        assert_eq!(p, Path::new("/home/u/.config/hvctl/token"));
        let p = path_from(None, Some("/home/u".into())).unwrap();
        assert_eq!(p, Path::new("/home/u/.config/hvctl/token"));
        assert!(path_from(None, None).is_err());
    }

    #[test]
    fn tokens() {
        assert!(valid("abc-DEF_123"));
        assert!(!valid(""));
        assert!(!valid("a b"));
        assert!(!valid("a\r\nX-Evil: 1"));
    }

    #[cfg(unix)]
    #[test]
    fn saved_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("cfg/hvctl/token");
        save(&f, "t0k").unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "t0k\n");
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // An existing world-readable file is narrowed.
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        save(&f, "t1").unwrap();
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(remove(&f).unwrap());
        assert!(!remove(&f).unwrap());
    }
}
