//! Debian's `perf` (`linux-perf`, bookworm's 6.1 build) in a test initramfs: the binary and
//! the shared libraries it loads, taken from the Debian packages themselves (no host tool
//! of this machine's architecture is involved).
//!
//! The packages are downloaded once with the private apt of `guest fetch` and unpacked
//! under `target/guest-cache/perf/` (`complete` marks a finished unpacking). The initramfs
//! gets `/usr/bin/perf`, `/lib` (the dynamic loader and the C library) and
//! `/usr/lib/aarch64-linux-gnu` (the other libraries), symbolic links kept as links; Perl's
//! and Python's module trees and the plugin directories nothing here loads are left out.

use std::fs;
use std::path::{Path, PathBuf};

use super::{
    extract_members, initramfs_with, io_err, mkdir, read, remove_dir, write, write_if_changed,
    GuestError, GuestImages, PrivateApt,
};

/// `linux-perf` and the packages of every shared library `/usr/bin/perf` loads, directly or
/// through another library (`apt-cache depends --recurse linux-perf`, library packages only;
/// `perl`/`python3` themselves are not needed to run `perf stat`).
const PACKAGES: &[&str] = &[
    "linux-perf",
    "libbabeltrace1",
    "libblkid1",
    "libbz2-1.0",
    "libc6",
    "libcap2",
    "libcom-err2",
    "libcrypt1",
    "libdb5.3",
    "libdw1",
    "libelf1",
    "libexpat1",
    "libffi8",
    "libgcc-s1",
    "libgdbm-compat4",
    "libgdbm6",
    "libglib2.0-0",
    "libgssapi-krb5-2",
    "libk5crypto3",
    "libkeyutils1",
    "libkrb5-3",
    "libkrb5support0",
    "liblzma5",
    "libmount1",
    "libncursesw6",
    "libnsl2",
    "libnuma1",
    "libopencsd1",
    "libpcre2-8-0",
    "libperl5.36",
    "libpython3.11",
    "libselinux1",
    "libslang2",
    "libsqlite3-0",
    "libssl3",
    "libstdc++6",
    "libtinfo6",
    "libtirpc3",
    "libunwind8",
    "libuuid1",
    "libzstd1",
    "zlib1g",
];

/// Subdirectories of `/usr/lib/aarch64-linux-gnu` that `perf stat` does not load from.
const SKIPPED: &[&str] = &[
    "perl",
    "perl5",
    "perl-base",
    "gconv",
    "gio",
    "glib-2.0",
    "krb5",
    "engines-3",
    "ossl-modules",
];

/// One entry of the unpacked tree, relative to its root.
enum Entry {
    Dir(String),
    File(String, PathBuf, u32),
    Link(String, String),
}

/// Unpacks [`PACKAGES`] (bookworm's versions) into `cache/perf` unless already done; returns
/// that directory.
fn ensure_unpacked(cache: &Path) -> Result<PathBuf, GuestError> {
    let root = cache.join("perf");
    if root.join("complete").exists() {
        return Ok(root);
    }
    if root.exists() {
        remove_dir(&root)?;
    }
    mkdir(&root)?;
    let apt = PrivateApt::new(&cache.join("apt"))?;
    for (i, package) in PACKAGES.iter().enumerate() {
        let version = match apt.resolve_version(package, "bookworm") {
            Ok(v) => v,
            Err(_) => {
                apt.update()?;
                apt.resolve_version(package, "bookworm")?
            }
        };
        eprintln!("guest fetch: {package} {version} (for perf)");
        let deb = apt.download(package, &version)?;
        // Each package into its own directory, then merged: tar -x into one tree would
        // trip over the directories another package made.
        let part = root.join(format!("part{i}"));
        extract_members(&deb, &[], &part)?;
        merge(&part, &root)?;
        remove_dir(&part)?;
        super::remove_download(&deb)?;
    }
    write(&root.join("complete"), b"")?;
    Ok(root)
}

/// Moves every entry of `from` into `to`, directories merged.
fn merge(from: &Path, to: &Path) -> Result<(), GuestError> {
    for e in fs::read_dir(from).map_err(io_err("list", from))? {
        let e = e.map_err(io_err("list", from))?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let is_dir = e.file_type().map_err(io_err("stat", &src))?.is_dir();
        if is_dir && dst.is_dir() && !dst.is_symlink() {
            merge(&src, &dst)?;
        } else if !dst.exists() && !dst.is_symlink() {
            fs::rename(&src, &dst).map_err(io_err("move", &src))?;
        }
    }
    Ok(())
}

/// The entries under `dir` (relative path `rel`), depth first, parents before children.
fn walk(root: &Path, rel: &str, out: &mut Vec<Entry>) -> Result<(), GuestError> {
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(io_err("list", &dir))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let path = format!("{rel}/{name}");
        let host = root.join(&path);
        let meta = fs::symlink_metadata(&host).map_err(io_err("stat", &host))?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&host).map_err(io_err("read the link", &host))?;
            out.push(Entry::Link(path, target.to_string_lossy().into_owned()));
        } else if meta.is_dir() {
            if rel == "usr/lib/aarch64-linux-gnu" && SKIPPED.contains(&name.as_str()) {
                continue;
            }
            out.push(Entry::Dir(path.clone()));
            walk(root, &path, out)?;
        } else if meta.is_file() {
            use std::os::unix::fs::PermissionsExt;
            out.push(Entry::File(path, host, meta.permissions().mode() & 0o777));
        }
    }
    Ok(())
}

/// Writes an initramfs with the cached busybox, Debian's `perf` and its libraries, and
/// `init` as `/init` to `out`.
pub fn write_perf_initramfs(images: &GuestImages, init: &str, out: &Path) -> Result<(), String> {
    let cache = super::cache_dir();
    let root = ensure_unpacked(&cache).map_err(|e| e.to_string())?;
    let mut entries = vec![Entry::Dir("lib".into()), Entry::Dir("usr/lib".into())];
    walk(&root, "lib", &mut entries).map_err(|e| e.to_string())?;
    entries.push(Entry::Dir("usr/lib/aarch64-linux-gnu".into()));
    walk(&root, "usr/lib/aarch64-linux-gnu", &mut entries).map_err(|e| e.to_string())?;
    let perf = root.join("usr/bin/perf");
    if !perf.is_file() {
        return Err(format!(
            "{} is missing: the linux-perf package layout changed (update xtask/src/guest/perf.rs)",
            perf.display()
        ));
    }
    entries.push(Entry::File("usr/bin/perf".into(), perf, 0o755));
    let busybox = read(&images.busybox).map_err(|e| e.to_string())?;
    let bytes = initramfs_with(&busybox, init, |c| {
        for e in &entries {
            match e {
                Entry::Dir(p) => c.dir(p, 0o755)?,
                Entry::File(p, host, mode) => c.file(p, *mode, &read(host)?)?,
                Entry::Link(p, target) => c.symlink(p, target)?,
            }
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    write_if_changed(out, &bytes).map_err(|e| e.to_string())
}
