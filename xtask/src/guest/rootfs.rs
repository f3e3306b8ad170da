//! Root file system images: a busybox tree turned into an ext4 image file, without root.
//!
//! The tree is staged in a directory next to the image, then `mke2fs -t ext4 -d DIR` copies
//! it into the image file. Files staged by an ordinary user belong to that user, and
//! `mke2fs -d` keeps their owner (`-E root_owner=0:0` only sets the root directory's), so every
//! inode is given to root afterwards with `debugfs -w` (`set_inode_field PATH uid 0`): the
//! guest sees a root-owned tree whoever built it. No device nodes are made (that would need
//! root, or more debugfs): an init mounts devtmpfs first, then opens the console
//! ([`rootfs_init_script`] does both).

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{
    io_err, mkdir, modules::KernelModules, read, remove_dir, rename, write, GuestError,
    GuestImages, APPLETS, MODULE_APPLETS,
};

/// What goes into a root file system image besides busybox.
#[derive(Clone, Debug, Default)]
pub struct RootfsSpec<'a> {
    /// Kernel series whose modules are installed (`"6.1"`); only used with `modules`.
    pub series: &'a str,
    /// Kernel modules installed (with their dependencies) under `/lib/modules/<release>/`,
    /// with a `modules.dep` for busybox `modprobe`; not loaded by themselves.
    pub modules: &'a [&'a str],
    /// The whole `/init` script (`/sbin/init` links to it).
    pub init: &'a str,
    /// More files: path in the image (no leading `/`), mode, contents.
    pub files: Vec<(String, u32, Vec<u8>)>,
    /// Image size in MiB.
    pub size_mib: u64,
}

/// Why a root file system image could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// mke2fs or debugfs is missing and could not be installed.
    #[error("`{tool}` (Debian package e2fsprogs) is missing{how}; install it (as root: apt-get install e2fsprogs)")]
    NoE2fsprogs {
        /// The tool.
        tool: &'static str,
        /// What was tried.
        how: String,
    },
    /// mke2fs or debugfs failed.
    #[error("`{command}` failed ({status}):\n{stderr}\n{hint}")]
    Tool {
        /// The command line.
        command: String,
        /// Exit status (or "errors on stderr").
        status: String,
        /// Its error output.
        stderr: String,
        /// What may help.
        hint: &'static str,
    },
    /// A file path of the spec is not a relative path inside the image.
    #[error("rootfs file `{0}` must be a relative path without `..`")]
    BadPath(String),
    /// Staging or writing failed.
    #[error(transparent)]
    Guest(#[from] GuestError),
}

/// The start of an init for a root file system: devtmpfs on `/dev` before anything else (the
/// image has no device nodes, so the kernel found no `/dev/console` to give init), then the
/// console as standard input and output, busybox's applet links, proc and sysfs; `body`;
/// then `sync` and power off (so QEMU exits).
pub fn rootfs_init_script(body: &str) -> String {
    format!(
        "#!/bin/sh\n\
         /bin/busybox mount -t devtmpfs devtmpfs /dev\n\
         exec </dev/console >/dev/console 2>&1\n\
         /bin/busybox --install -s 2>/dev/null\n\
         export PATH=/bin:/sbin:/usr/bin:/usr/sbin\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         for c in /sys/bus/serial-base/devices/*/power/control; do [ -e \"$c\" ] && echo on > \"$c\"; done\n\
         {body}\n\
         sync\n\
         poweroff -f\n"
    )
}

/// Writes an ext4 image of `size_mib` MiB to `out`: busybox with applet links, `init` as
/// `/init` (and `/sbin/init`), the kernel modules `modules` of the kernel of `series` with
/// their dependencies under `/lib/modules/<release>/` (not loaded: `init` may `modprobe`
/// them), and empty `/dev`, `/proc`, `/sys`, `/mnt`, `/tmp`. Every file is owned by root.
pub fn write_ext4_rootfs(
    images: &GuestImages,
    series: &str,
    modules: &[&str],
    init: &str,
    size_mib: u64,
    out: &Path,
) -> Result<(), String> {
    let spec = RootfsSpec {
        series,
        modules,
        init,
        files: Vec::new(),
        size_mib,
    };
    write_ext4_rootfs_with(images, &spec, out)
}

/// [`write_ext4_rootfs`] with extra files.
pub fn write_ext4_rootfs_with(
    images: &GuestImages,
    spec: &RootfsSpec,
    out: &Path,
) -> Result<(), String> {
    let mods = if spec.modules.is_empty() {
        None
    } else {
        Some(super::kernel_modules(images, spec.series, spec.modules)?)
    };
    let busybox = read(&images.busybox).map_err(|e| e.to_string())?;
    build(&busybox, spec, mods.as_ref(), out).map_err(|e| e.to_string())
}

fn build(
    busybox: &[u8],
    spec: &RootfsSpec,
    mods: Option<&KernelModules>,
    out: &Path,
) -> Result<(), RootfsError> {
    let tools = E2fsprogs::ensure()?;
    let pid = std::process::id();
    let name = out
        .file_name()
        .map_or_else(|| "rootfs".into(), |n| n.to_string_lossy().into_owned());
    let tree = out.with_file_name(format!("{name}.tree{pid}"));
    let tmp = out.with_file_name(format!("{name}.tmp{pid}"));
    let paths = stage(&tree, busybox, spec, mods)?;
    let made = tools.make(&tree, &paths, spec.size_mib, &tmp);
    remove_dir(&tree)?;
    if let Err(e) = made {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    rename(&tmp, out)?;
    Ok(())
}

/// The directories every image has.
const DIRS: &[&str] = &[
    "bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "mnt", "tmp", "root", "etc",
    "lib",
];

/// Stages the tree in a fresh `dir`; returns every path in it (relative, parents first).
fn stage(
    dir: &Path,
    busybox: &[u8],
    spec: &RootfsSpec,
    mods: Option<&KernelModules>,
) -> Result<Vec<String>, RootfsError> {
    if dir.exists() {
        remove_dir(dir)?;
    }
    mkdir(dir)?;
    let mut paths: Vec<String> = Vec::new();
    let add_dirs = |paths: &mut Vec<String>, rel: &str| -> Result<(), GuestError> {
        let mut at = 0;
        while let Some(i) = rel[at..].find('/') {
            let d = &rel[..at + i];
            if !paths.iter().any(|p| p == d) {
                mkdir(&dir.join(d))?;
                paths.push(d.to_string());
            }
            at += i + 1;
        }
        Ok(())
    };
    for d in DIRS {
        add_dirs(&mut paths, &format!("{d}/"))?;
    }
    chmod(&dir.join("tmp"), 0o1777)?;
    let file = |paths: &mut Vec<String>, rel: &str, mode: u32, data: &[u8]| {
        add_dirs(paths, rel)?;
        let p = dir.join(rel);
        write(&p, data)?;
        chmod(&p, mode)?;
        paths.push(rel.to_string());
        Ok::<(), GuestError>(())
    };
    file(&mut paths, "bin/busybox", 0o755, busybox)?;
    for a in APPLETS.iter().chain(MODULE_APPLETS) {
        let rel = format!("bin/{a}");
        let p = dir.join(&rel);
        symlink("busybox", &p).map_err(io_err("create the link", &p))?;
        paths.push(rel);
    }
    file(&mut paths, "init", 0o755, spec.init.as_bytes())?;
    let sbin_init = dir.join("sbin/init");
    symlink("/init", &sbin_init).map_err(io_err("create the link", &sbin_init))?;
    paths.push("sbin/init".into());
    if let Some(m) = mods {
        for (rel, data) in m.files() {
            file(
                &mut paths,
                &format!("lib/modules/{}/{rel}", m.release),
                0o644,
                data,
            )?;
        }
    }
    for (rel, mode, data) in &spec.files {
        let bad = rel.is_empty()
            || rel.starts_with('/')
            || rel.split('/').any(|c| c == ".." || c.is_empty());
        if bad {
            return Err(RootfsError::BadPath(rel.clone()));
        }
        file(&mut paths, rel, *mode, data)?;
    }
    Ok(paths)
}

fn chmod(p: &Path, mode: u32) -> Result<(), GuestError> {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", p))
}

/// The mke2fs configuration of every image (Debian 12's, so the same whatever the host's):
/// ext4 features that Linux 5.10 (the oldest guest kernel) mounts read-write, and the usage
/// types mke2fs picks by size (`floppy` under 3 MiB, `small` under 512 MiB, ...).
const MKE2FS_CONF: &str = "[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384

[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
	small = {
		blocksize = 1024
		inode_ratio = 4096
	}
	floppy = {
		blocksize = 1024
		inode_ratio = 8192
	}
	big = {
		inode_ratio = 32768
	}
	huge = {
		inode_ratio = 65536
	}
";

/// The e2fsprogs tools, found in `PATH` or `/usr/sbin` and `/sbin` (often not in an ordinary
/// user's `PATH`).
pub struct E2fsprogs {
    /// `mke2fs`.
    pub mke2fs: PathBuf,
    /// `debugfs`.
    pub debugfs: PathBuf,
}

impl E2fsprogs {
    /// The contents of the file `path` inside the ext4 image `image` (`debugfs -R cat`),
    /// read without mounting it.
    pub fn cat(&self, image: &Path, path: &str) -> Result<Vec<u8>, String> {
        let out = Command::new(&self.debugfs)
            .arg("-R")
            .arg(format!("cat {path}"))
            .arg(image)
            .output()
            .map_err(|e| format!("{}: {e}", self.debugfs.display()))?;
        let err = String::from_utf8_lossy(&out.stderr);
        // debugfs prints its banner on stderr and exits 0 even when `cat` fails.
        if !out.status.success() || err.lines().any(|l| !l.starts_with("debugfs ")) {
            return Err(format!(
                "debugfs cat {path} in {}: {}",
                image.display(),
                err.trim()
            ));
        }
        Ok(out.stdout)
    }

    /// Finds the tools; installs Debian's e2fsprogs first if they are missing and this is root.
    pub fn ensure() -> Result<Self, RootfsError> {
        if let Some(t) = Self::find() {
            return Ok(t);
        }
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        if !is_root {
            return Err(RootfsError::NoE2fsprogs {
                tool: "mke2fs",
                how: " (not installed: xtask is not running as root)".into(),
            });
        }
        eprintln!("xtask: mke2fs not found; installing Debian's e2fsprogs");
        let apt = |args: &[&str]| {
            crate::build::run(
                Command::new("apt-get")
                    .args(args)
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )
        };
        let installed = apt(&["update", "-q"]).and_then(|_| {
            apt(&[
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "e2fsprogs",
            ])
        });
        match (installed, Self::find()) {
            (_, Some(t)) => Ok(t),
            (Err(e), None) => Err(RootfsError::NoE2fsprogs {
                tool: "mke2fs",
                how: format!(" and `apt-get install e2fsprogs` failed: {e}"),
            }),
            (Ok(()), None) => Err(RootfsError::NoE2fsprogs {
                tool: "mke2fs",
                how: " even after `apt-get install e2fsprogs`".into(),
            }),
        }
    }

    fn find() -> Option<Self> {
        Some(Self {
            mke2fs: find_tool("mke2fs")?,
            debugfs: find_tool("debugfs")?,
        })
    }

    /// Makes the image `out` from the staged `tree` and gives each of `paths` to root.
    fn make(
        &self,
        tree: &Path,
        paths: &[String],
        size_mib: u64,
        out: &Path,
    ) -> Result<(), RootfsError> {
        let f = fs::File::create(out).map_err(io_err("create", out))?;
        f.set_len(size_mib << 20).map_err(io_err("size", out))?;
        drop(f);
        // Our own mke2fs.conf: the same features whatever the host's defaults (a newer
        // e2fsprogs adds `orphan_file`, which Linux before 5.15 cannot mount).
        let conf = out.with_extension("mke2fs.conf");
        write(&conf, MKE2FS_CONF.as_bytes())?;
        let mut mke2fs = Command::new(&self.mke2fs);
        mke2fs
            .env("MKE2FS_CONFIG", &conf)
            .args(["-q", "-F", "-t", "ext4", "-L", "rootfs"])
            .args(["-E", "root_owner=0:0", "-d"])
            .arg(tree)
            .arg(out);
        let made = run_checked(
            &mut mke2fs,
            "is size_mib large enough for the tree (busybox, modules and files)?",
        );
        let _ = fs::remove_file(&conf);
        made?;
        let mut script = String::new();
        for p in paths {
            script.push_str(&format!("sif /{p} uid 0\nsif /{p} gid 0\n"));
        }
        let cmds = out.with_extension("debugfs");
        write(&cmds, script.as_bytes())?;
        let mut debugfs = Command::new(&self.debugfs);
        debugfs.arg("-w").arg("-f").arg(&cmds).arg(out);
        let result = run_checked(&mut debugfs, "");
        let _ = fs::remove_file(&cmds);
        result
    }
}

/// `name` in `PATH`, `/usr/sbin` or `/sbin`.
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs an e2fsprogs tool: it fails on a non-zero status, and on any error output other
/// than the version banner (debugfs reports failed commands there but exits 0).
fn run_checked(cmd: &mut Command, hint: &'static str) -> Result<(), RootfsError> {
    let describe = |cmd: &Command| {
        let mut s = cmd.get_program().to_string_lossy().into_owned();
        for a in cmd.get_args() {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    };
    let out = cmd.output().map_err(|e| RootfsError::NoE2fsprogs {
        tool: "mke2fs",
        how: format!(" or could not be run ({e})"),
    })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("debugfs ") && !l.starts_with("mke2fs "))
        .collect();
    if !out.status.success() || !errors.is_empty() {
        return Err(RootfsError::Tool {
            command: describe(cmd),
            status: if out.status.success() {
                "errors on stderr".into()
            } else {
                out.status.to_string()
            },
            stderr: errors.join("\n"),
            hint: if hint.is_empty() { "" } else { hint },
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own, removed when the test ends.
    fn scratch(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("xtask-{name}-"))
            .tempdir()
            .unwrap()
    }

    /// `debugfs -R CMD IMG`'s output.
    fn debugfs(img: &Path, cmd: &str) -> String {
        let tools = E2fsprogs::ensure().unwrap();
        let out = Command::new(&tools.debugfs)
            .arg("-R")
            .arg(cmd)
            .arg(img)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn init_script_mounts_devtmpfs_before_anything_else() {
        let s = rootfs_init_script("echo hi");
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "#!/bin/sh");
        assert_eq!(lines[1], "/bin/busybox mount -t devtmpfs devtmpfs /dev");
        assert_eq!(lines[2], "exec </dev/console >/dev/console 2>&1");
        assert!(s.ends_with("echo hi\nsync\npoweroff -f\n"));
    }

    #[test]
    fn staged_tree_has_busybox_init_and_mount_points() {
        let tmp = scratch("rootfs-stage");
        let dir = tmp.path();
        let spec = RootfsSpec {
            init: "#!/bin/sh\necho x\n",
            files: vec![("etc/a/b.txt".into(), 0o600, b"B".to_vec())],
            size_mib: 8,
            ..RootfsSpec::default()
        };
        let paths = stage(&dir.join("t"), b"BB", &spec, None).unwrap();
        let t = dir.join("t");
        for d in ["dev", "proc", "sys", "mnt", "tmp", "lib"] {
            assert!(t.join(d).is_dir(), "{d}");
        }
        assert_eq!(fs::read(t.join("bin/busybox")).unwrap(), b"BB");
        assert_eq!(
            fs::read_link(t.join("bin/insmod")).unwrap(),
            Path::new("busybox")
        );
        assert_eq!(
            fs::read_link(t.join("sbin/init")).unwrap(),
            Path::new("/init")
        );
        assert_eq!(fs::read(t.join("etc/a/b.txt")).unwrap(), b"B");
        let pos = |p: &str| paths.iter().position(|x| x == p).unwrap();
        assert!(pos("etc/a") < pos("etc/a/b.txt"), "parents first");
        assert!(matches!(
            stage(
                &dir.join("u"),
                b"",
                &RootfsSpec {
                    files: vec![("../x".into(), 0o644, Vec::new())],
                    ..RootfsSpec::default()
                },
                None
            ),
            Err(RootfsError::BadPath(_))
        ));
    }

    /// The image holds the tree, every inode owned by root even when the staged files were
    /// not (as root the test gives them to uid 4242 first; as a user they are the user's).
    #[test]
    fn image_holds_the_tree_owned_by_root() {
        let tmp = scratch("rootfs-image");
        let dir = tmp.path();
        let spec = RootfsSpec {
            init: "#!/bin/sh\necho from-init\n",
            files: vec![("etc/token".into(), 0o644, b"t0k3n\n".to_vec())],
            size_mib: 8,
            ..RootfsSpec::default()
        };
        let tree = dir.join("tree");
        let paths = stage(&tree, b"BUSYBOX", &spec, None).unwrap();
        for p in &paths {
            // Not following links (lchown); an error means we are not root: already not root-owned.
            let _ = std::os::unix::fs::lchown(tree.join(p), Some(4242), Some(4242));
        }
        let img = dir.join("rootfs.ext4");
        E2fsprogs::ensure()
            .unwrap()
            .make(&tree, &paths, spec.size_mib, &img)
            .unwrap();
        assert_eq!(fs::metadata(&img).unwrap().len(), 8 << 20);
        assert_eq!(debugfs(&img, "cat /etc/token"), "t0k3n\n");
        assert_eq!(debugfs(&img, "cat /init"), "#!/bin/sh\necho from-init\n");
        for p in [
            "/init",
            "/bin/busybox",
            "/etc/token",
            "/etc",
            "/bin/sh",
            "/",
        ] {
            let stat = debugfs(&img, &format!("stat {p}"));
            assert!(
                stat.contains("User:     0   Group:     0"),
                "{p} is not root's:\n{stat}"
            );
        }
        assert!(debugfs(&img, "stat /init").contains("Mode:  0755"));
        let features = debugfs(&img, "features");
        for f in ["has_journal", "extent", "metadata_csum", "64bit"] {
            assert!(features.contains(f), "no {f}: {features}");
        }
        assert!(
            !features.contains("orphan_file"),
            "5.10 cannot mount: {features}"
        );
    }

    #[test]
    fn a_tree_too_big_for_the_image_is_an_error_with_a_hint() {
        let tmp = scratch("rootfs-small");
        let dir = tmp.path();
        let spec = RootfsSpec {
            init: "#!/bin/sh\n",
            files: vec![("big".into(), 0o644, vec![7u8; 3 << 20])],
            size_mib: 2,
            ..RootfsSpec::default()
        };
        let tree = dir.join("tree");
        let paths = stage(&tree, b"B", &spec, None).unwrap();
        let err = E2fsprogs::ensure()
            .unwrap()
            .make(&tree, &paths, spec.size_mib, &dir.join("x.ext4"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("size_mib"), "{err}");
    }
}
