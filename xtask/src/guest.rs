//! Real Linux guests: Debian arm64 kernels and a busybox initramfs, cached in `target/guest-cache/`.
//!
//! `cargo xtask guest fetch` (and [`ensure`], which other commands call before they boot Linux)
//! resolves the current `linux-image-cloud-arm64` of bullseye (5.10), bookworm (6.1) and
//! bookworm-backports (6.12) from Debian's package index, downloads the real kernel packages
//! and `busybox-static` with apt in a private state directory (the machine's apt configuration
//! and package lists are left alone), keeps each raw arm64 `Image` (and the package, for its
//! modules), and writes a gzip'd `newc` initramfs whose `/init` is `examples/initramfs/init`.
//! What is cached is not fetched again.
//!
//! Storage scenarios need more: [`write_initramfs_with_modules`] adds kernel modules (with
//! their dependencies, loaded by `/init` first) from [`modules`], and
//! [`rootfs::write_ext4_rootfs`] makes an ext4 image of a busybox tree without root.
//! `cargo xtask guest selftest-storage` checks both on bare QEMU.
//!
//! ```text
//! target/guest-cache/
//!   linux-5.10/Image  release  version  config    raw arm64 Image, `uname -r`, package version
//!              package.deb                        the kernel package (its modules, on demand)
//!              modules/                           index of its modules (see guest::modules)
//!   linux-6.1/...                                 (bookworm)
//!   linux-6.12/...                                (bookworm-backports)
//!   busybox                                       /bin/busybox of busybox-static (arm64)
//!   initramfs.cpio.gz                             busybox + examples/initramfs/init
//!   apt/                                          private apt state (lists, sources.list)
//!   perf/                                         linux-perf and its libraries, unpacked on
//!                                                 first use (see guest::perf)
//! ```

use std::fs;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use flate2::read::GzDecoder;

pub mod modules;
pub mod net;
pub mod perf;
pub mod rootfs;
mod selftest;

use flate2::write::GzEncoder;
use flate2::Compression;
pub use modules::{kernel_modules, KernelModules};
pub use rootfs::{rootfs_init_script, write_ext4_rootfs};

/// The `/init` of the default initramfs: prints `[initramfs] userspace up: <uname -r>` and the
/// CPU count; with `autotest` on the kernel command line it prints the timer and GIC lines of
/// `/proc/interrupts` and powers off, otherwise it starts a shell on the console.
pub const DEFAULT_INIT: &str = include_str!("../../examples/initramfs/init");

/// What a custom `/init` starts with when built by [`init_script`]: busybox applet links and
/// the proc, sysfs and devtmpfs mounts.
const INIT_PROLOGUE: &str = "#!/bin/sh
/bin/busybox --install -s 2>/dev/null
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Keep serial ports runtime-active (Linux 6.5+): see examples/initramfs/init.
for c in /sys/bus/serial-base/devices/*/power/control; do [ -e \"$c\" ] && echo on > \"$c\"; done
";

/// Applets linked into `/bin` in the archive itself, so that `/init` works before
/// `busybox --install -s` has run (and if it fails).
const APPLETS: &[&str] = &[
    "sh", "ash", "cat", "cttyhack", "dmesg", "echo", "grep", "head", "ls", "mkdir", "mount",
    "nproc", "poweroff", "reboot", "setsid", "sleep", "tail", "uname",
];

/// Debian's archive signing keys (package `debian-archive-keyring`).
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Mirror used when the machine's apt sources name none.
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// Environment variable that overrides the Debian mirror.
const MIRROR_ENV: &str = "XTASK_DEBIAN_MIRROR";
/// The suite `busybox-static` comes from.
const BUSYBOX_SUITE: &str = "bookworm";
/// The metapackage whose dependency names the current cloud kernel of a suite.
const KERNEL_METAPACKAGE: &str = "linux-image-cloud-arm64";
/// Magic of an arm64 Linux `Image` (`Documentation/arch/arm64/booting.rst`, header field `magic`).
const ARM64_IMAGE_MAGIC: &[u8; 4] = b"ARM\x64";
/// Offset of that magic in the Image header.
const ARM64_IMAGE_MAGIC_OFFSET: usize = 0x38;

/// A kernel series and the Debian suite that carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelSeries {
    /// Upstream series, e.g. `6.1`; the cache directory is `linux-<series>`.
    pub series: &'static str,
    /// Debian suite whose `linux-image-cloud-arm64` is of that series.
    pub suite: &'static str,
}

/// The guest kernels this project tests with.
pub const KERNELS: [KernelSeries; 3] = [
    KernelSeries {
        series: "5.10",
        suite: "bullseye",
    },
    KernelSeries {
        series: "6.1",
        suite: "bookworm",
    },
    KernelSeries {
        series: "6.12",
        suite: "bookworm-backports",
    },
];

/// One cached guest kernel.
#[derive(Clone, Debug)]
pub struct GuestKernel {
    /// Upstream series (`5.10`, `6.1`, `6.12`).
    pub series: &'static str,
    /// The raw arm64 `Image` (QEMU `-kernel`, or a VM TOML's `kernel`).
    pub image: PathBuf,
    /// What `uname -r` prints in the guest, e.g. `6.1.0-50-cloud-arm64`.
    pub release: String,
    /// Debian package version, e.g. `6.1.176-1`.
    pub version: String,
}

/// Everything `guest fetch` provides.
#[derive(Clone, Debug)]
pub struct GuestImages {
    /// The kernels, in [`KERNELS`] order.
    pub kernels: Vec<GuestKernel>,
    /// The default initramfs (gzip'd newc cpio).
    pub initramfs: PathBuf,
    /// The static arm64 busybox, for [`write_initramfs`].
    pub busybox: PathBuf,
}

impl GuestImages {
    /// The kernel of a series (`"6.1"`), if it is one of [`KERNELS`].
    pub fn kernel(&self, series: &str) -> Option<&GuestKernel> {
        self.kernels.iter().find(|k| k.series == series)
    }
}

/// Why fetching or building guest images failed.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// A file or directory could not be read or written.
    #[error("could not {what} `{path}`: {source}; check the permissions of target/guest-cache/ or delete it and retry")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A host tool could not be started.
    #[error("could not run `{tool}`: {source}; `guest fetch` needs apt-get, apt-cache, dpkg-deb and tar (a Debian or Ubuntu host)")]
    Spawn {
        /// The tool.
        tool: &'static str,
        /// The error.
        source: io::Error,
    },
    /// A host tool ran and failed.
    #[error("`{command}` failed ({status}):\n{stderr}\nif the mirror is unreachable or lacks the suite, set {MIRROR_ENV} to another Debian mirror")]
    ToolFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of its standard error.
        stderr: String,
    },
    /// Debian's archive keyring is not installed.
    #[error("Debian's archive keyring `{KEYRING}` is missing; install it with `apt-get install debian-archive-keyring`")]
    NoKeyring,
    /// The package index has no such package in that suite.
    #[error("the package index of `{mirror}` has no `{package}` in suite `{suite}`; check that the mirror carries `{suite}` (set {MIRROR_ENV} to another mirror), then retry")]
    NotInIndex {
        /// Package name.
        package: String,
        /// Suite.
        suite: &'static str,
        /// The mirror.
        mirror: String,
    },
    /// The suite's cloud kernel is not of the expected series.
    #[error("`{KERNEL_METAPACKAGE}` in `{suite}` depends on no linux-image-{series}.*-cloud-arm64 package (its Depends: `{depends}`); the suite moved to another kernel series: update `KERNELS` in xtask/src/guest.rs")]
    WrongSeries {
        /// Expected series.
        series: &'static str,
        /// Suite.
        suite: &'static str,
        /// What the metapackage depends on.
        depends: String,
    },
    /// `apt-get download` succeeded but no matching `.deb` appeared.
    #[error("`apt-get download {package}` left no `.deb` in `{dir}`; delete target/guest-cache/apt and retry")]
    DebMissing {
        /// Package name.
        package: String,
        /// Download directory.
        dir: PathBuf,
    },
    /// The package has no file that was expected in it.
    #[error("`{deb}` has no `{wanted}`; the package layout changed: update xtask/src/guest.rs")]
    NotInPackage {
        /// The package file.
        deb: PathBuf,
        /// What was looked for.
        wanted: &'static str,
    },
    /// The kernel file is not an arm64 Image.
    #[error("`{path}` is not an arm64 Linux Image (no \"ARM\\x64\" magic at offset 0x38, even after gunzip); check that the package is an arm64 kernel")]
    NotArm64Image {
        /// The file.
        path: PathBuf,
    },
    /// An initramfs entry name is too long or has a NUL.
    #[error("initramfs entry name `{name}` is not a valid cpio name (non-empty, no NUL, under 4096 bytes)")]
    BadEntryName {
        /// The name.
        name: String,
    },
}

/// The cache directory: `target/guest-cache/` in the workspace (VM TOML files refer to it by
/// relative path, so it does not follow `CARGO_TARGET_DIR`).
pub fn cache_dir() -> PathBuf {
    crate::build::workspace_root().join("target/guest-cache")
}

/// `cargo xtask guest ...`.
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Fetch the Debian kernels and busybox, build the initramfs (target/guest-cache)
    Fetch,
    /// Print the Image path of a kernel series
    Kernel {
        /// 5.10, 6.1 or 6.12
        series: String,
    },
    /// An initramfs whose /init is SCRIPT (a `#!` script), or mounts + SCRIPT + poweroff (a
    /// script body)
    Initramfs {
        /// The /init script or script body
        script: PathBuf,
        /// The .cpio.gz to write
        #[arg(value_name = "OUT.cpio.gz")]
        out: PathBuf,
        #[command(flatten)]
        modules: ModuleArgs,
    },
    /// An ext4 root file system image (no root needed): busybox, SCRIPT as /init (a body gets
    /// devtmpfs and mounts first), the modules under /lib/modules (not loaded)
    Rootfs {
        /// The /init script or script body
        script: PathBuf,
        /// The ext4 image to write
        #[arg(value_name = "OUT.ext4")]
        out: PathBuf,
        /// Image size in MiB
        #[arg(long, value_name = "MIB", default_value_t = 64)]
        size: u64,
        #[command(flatten)]
        modules: ModuleArgs,
    },
    /// The kernel modules NAME... need, in load order
    Modules {
        /// 5.10, 6.1 or 6.12
        series: String,
        /// Module names
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// The network guest's initramfs (virtio-net; generic: also e1000e and usb-net, for bare QEMU)
    Net {
        /// Kernel flavour
        #[arg(value_parser = ["cloud", "generic"], default_value = "cloud")]
        flavour: String,
    },
    /// Module initramfs and ext4 images on bare QEMU (virtio-blk, AHCI, NVMe root)
    SelftestStorage {
        /// Fail on purpose
        #[arg(long = "break", value_parser = ["module", "file", "order"])]
        sabotage: Option<String>,
    },
}

/// `--kernel SERIES --modules A,B` of `guest initramfs` and `guest rootfs`.
#[derive(Debug, clap::Args)]
pub struct ModuleArgs {
    /// Kernel series whose modules go in (5.10, 6.1 or 6.12)
    #[arg(long, value_name = "SERIES")]
    kernel: Option<String>,
    /// Kernel modules, comma-separated (their dependencies are added)
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    modules: Vec<String>,
}

impl ModuleArgs {
    fn options(&self, size_mib: u64) -> Result<ImageOptions, String> {
        ImageOptions {
            kernel: self.kernel.clone(),
            modules: self
                .modules
                .iter()
                .filter(|m| !m.is_empty())
                .cloned()
                .collect(),
            size_mib,
        }
        .checked()
    }
}

/// The init script: read before anything is fetched, so a wrong path fails at once.
fn read_script(script: &Path) -> Result<String, String> {
    fs::read_to_string(script).map_err(|e| format!("could not read `{}`: {e}", script.display()))
}

/// `cargo xtask guest ...`.
pub fn cmd(cmd: Cmd) -> Result<(), String> {
    match cmd {
        Cmd::Fetch => {
            let images = ensure()?;
            for k in &images.kernels {
                println!(
                    "linux-{:<5} {} ({}, package {})",
                    k.series,
                    k.image.display(),
                    k.release,
                    k.version
                );
            }
            println!("initramfs  {}", images.initramfs.display());
            Ok(())
        }
        Cmd::Kernel { series } => {
            let known: Vec<&str> = KERNELS.iter().map(|k| k.series).collect();
            let unknown = || {
                format!(
                    "no guest kernel `{series}`; the series are {}",
                    known.join(", ")
                )
            };
            if !known.contains(&series.as_str()) {
                return Err(unknown());
            }
            let images = ensure()?;
            let k = images.kernel(&series).ok_or_else(unknown)?;
            println!("{}", k.image.display());
            Ok(())
        }
        Cmd::Initramfs {
            script,
            out,
            modules,
        } => {
            let opts = modules.options(64)?;
            let text = read_script(&script)?;
            let images = ensure()?;
            // A whole script (`#!...`) is /init as is; anything else is a body for init_script.
            let init = if text.starts_with("#!") {
                text
            } else {
                init_script(&text)
            };
            match &opts.kernel {
                None => write_initramfs(&images, &init, &out)?,
                Some(series) => {
                    let names: Vec<&str> = opts.modules.iter().map(String::as_str).collect();
                    write_initramfs_with_modules(&images, series, &names, &init, &out)?;
                }
            }
            println!("{}", out.display());
            Ok(())
        }
        Cmd::Rootfs {
            script,
            out,
            size,
            modules,
        } => {
            let opts = modules.options(size)?;
            let text = read_script(&script)?;
            let images = ensure()?;
            let init = if text.starts_with("#!") {
                text
            } else {
                rootfs_init_script(&text)
            };
            let names: Vec<&str> = opts.modules.iter().map(String::as_str).collect();
            let series = opts.kernel.as_deref().unwrap_or("");
            write_ext4_rootfs(&images, series, &names, &init, opts.size_mib, &out)?;
            println!("{}", out.display());
            Ok(())
        }
        Cmd::Modules { series, names } => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            modules::cmd_list(&series, &names)
        }
        Cmd::SelftestStorage { sabotage } => match &sabotage {
            None => selftest::cmd(&[]),
            Some(s) => selftest::cmd(&["--break", s]),
        },
        Cmd::Net { flavour } => net::cmd(&[&flavour]),
    }
}

/// `--kernel SERIES --modules A,B --size MIB` of `guest initramfs` and `guest rootfs`.
#[derive(Debug, PartialEq, Eq)]
struct ImageOptions {
    kernel: Option<String>,
    modules: Vec<String>,
    size_mib: u64,
}

impl ImageOptions {
    /// `--modules` needs `--kernel`, and the series must exist.
    fn checked(self) -> Result<Self, String> {
        if !self.modules.is_empty() && self.kernel.is_none() {
            return Err("--modules needs --kernel SERIES (5.10, 6.1 or 6.12)".into());
        }
        if let Some(k) = &self.kernel {
            if !KERNELS.iter().any(|s| s.series == k) {
                return Err(format!(
                    "no guest kernel `{k}`; the series are 5.10, 6.1 and 6.12"
                ));
            }
        }
        Ok(self)
    }
}

/// Fetches what is not cached yet (kernels, busybox) and brings the default initramfs up to date.
/// Call it before booting a Linux guest.
pub fn ensure() -> Result<GuestImages, String> {
    fetch(&cache_dir()).map_err(|e| e.to_string())
}

/// The series name of the generic (not cloud) flavour of the 6.1 kernel; its cache
/// directory is `linux-6.1-arm64/`, laid out like the others.
pub const GENERIC_61: &str = "6.1-arm64";

/// The generic `linux-image-6.1.*-arm64` kernel of the same package version as the cached
/// 6.1 cloud kernel, fetched into `target/guest-cache/linux-6.1-arm64/` on first use (with
/// its package, for its modules). Debian's cloud kernels have no USB and no `e1000e` at
/// all (`# CONFIG_USB_SUPPORT is not set`, `# CONFIG_E1000E is not set`), so a bare-QEMU
/// guest that drives QEMU's `usb-net` or `e1000e` itself needs this flavour.
/// `images` gets it as series [`GENERIC_61`], so [`kernel_modules`] finds it.
pub fn ensure_generic_61(images: &mut GuestImages) -> Result<GuestKernel, String> {
    if let Some(k) = images.kernel(GENERIC_61) {
        return Ok(k.clone());
    }
    let cloud = images
        .kernel("6.1")
        .ok_or("no 6.1 kernel in the guest cache")?
        .clone();
    let cache = cache_dir();
    let series = KernelSeries {
        series: GENERIC_61,
        suite: "bookworm",
    };
    let k = match cached_kernel(&cache, &series) {
        Some(k) if k.version == cloud.version => k,
        _ => {
            let release = cloud.release.strip_suffix("-cloud-arm64").ok_or_else(|| {
                format!(
                    "6.1 kernel release `{}` does not end in -cloud-arm64",
                    cloud.release
                )
            })?;
            let package = format!("linux-image-{release}-arm64");
            eprintln!(
                "guest fetch: {package} {} (generic flavour, for USB and e1000e)",
                cloud.version
            );
            let apt = PrivateApt::new(&cache.join("apt")).map_err(|e| e.to_string())?;
            let deb = match apt.download(&package, &cloud.version) {
                Ok(deb) => deb,
                Err(_) => {
                    apt.update().map_err(|e| e.to_string())?;
                    apt.download(&package, &cloud.version)
                        .map_err(|e| e.to_string())?
                }
            };
            let dir = cache.join(format!("linux-{GENERIC_61}"));
            install_kernel(&deb, &dir, &cloud.version).map_err(|e| e.to_string())?;
            modules::keep_package(&deb, &dir).map_err(|e| e.to_string())?;
            cached_kernel(&cache, &series).ok_or_else(|| {
                format!(
                    "{package} installed into {} is not a usable kernel",
                    dir.display()
                )
            })?
        }
    };
    images.kernels.push(k.clone());
    Ok(k)
}

/// Writes an initramfs with the cached busybox and a caller-given `/init` to `out`.
/// [`init_script`] turns a script body into a whole `/init`.
pub fn write_initramfs(images: &GuestImages, init: &str, out: &Path) -> Result<(), String> {
    let busybox = read(&images.busybox).map_err(|e| e.to_string())?;
    let bytes = initramfs(&busybox, init).map_err(|e| e.to_string())?;
    write_if_changed(out, &bytes).map_err(|e| e.to_string())
}

/// Applets linked into `/bin` of an image with kernel modules, besides [`APPLETS`].
const MODULE_APPLETS: &[&str] = &[
    "insmod", "modprobe", "lsmod", "rmmod", "modinfo", "umount", "sync",
];

/// Writes an initramfs like [`write_initramfs`] that also holds the kernel modules `modules`
/// of the cached kernel of `series` (`"6.1"`) with everything they depend on, under
/// `/lib/modules/<release>/` (decompressed, with a `modules.dep` for them), and whose `/init`
/// loads them in dependency order before the rest of `init` runs: the lines of
/// [`KernelModules::load_script`] (`[initramfs] loaded module NAME`, or `[initramfs] FAILED to
/// load module NAME ...`) go right after `init`'s `#!` line, so `init` must be a whole script
/// (see [`init_script`]). A name that is neither a module of the package nor built into the
/// kernel is an error naming it.
pub fn write_initramfs_with_modules(
    images: &GuestImages,
    series: &str,
    modules: &[&str],
    init: &str,
    out: &Path,
) -> Result<(), String> {
    write_initramfs_with_modules_and_files(images, series, modules, &[], init, out)
}

/// A file of the host put into an initramfs: `(path in the archive, e.g. "bin/iobench",
/// host file, permissions)`. Directories on the way must be among the archive's standard
/// ones (`bin`, `sbin`, `usr/bin`, ...).
pub type ExtraFile<'a> = (&'a str, &'a Path, u32);

/// [`write_initramfs_with_modules`] that also puts `files` of the host into the archive
/// (e.g. a static program the `/init` runs).
pub fn write_initramfs_with_modules_and_files(
    images: &GuestImages,
    series: &str,
    modules: &[&str],
    files: &[ExtraFile<'_>],
    init: &str,
    out: &Path,
) -> Result<(), String> {
    let mods = kernel_modules(images, series, modules)?;
    let busybox = read(&images.busybox).map_err(|e| e.to_string())?;
    let init = with_module_prelude(init, &mods.load_script("[initramfs]"))?;
    let mut contents = Vec::new();
    for &(name, host, perm) in files {
        contents.push((name, read(host).map_err(|e| e.to_string())?, perm));
    }
    let bytes = initramfs_with(&busybox, &init, |c| {
        add_modules(c, &mods)?;
        for (name, data, perm) in &contents {
            c.file(name, *perm, data)?;
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    write_if_changed(out, &bytes).map_err(|e| e.to_string())
}

/// `init` with `prelude` inserted after its `#!` line.
fn with_module_prelude(init: &str, prelude: &str) -> Result<String, String> {
    let (shebang, rest) = init
        .split_once('\n')
        .filter(|(first, _)| first.starts_with("#!"))
        .ok_or("an init that loads kernel modules must be a whole script starting with `#!` (init_script() makes one from a body)")?;
    Ok(format!("{shebang}\n{prelude}{rest}"))
}

/// The module applet links and `/lib/modules/<release>/...` (every directory once, in order).
fn add_modules(c: &mut CpioWriter, mods: &KernelModules) -> Result<(), GuestError> {
    for a in MODULE_APPLETS {
        c.symlink(&format!("bin/{a}"), "busybox")?;
    }
    let mut dirs = std::collections::BTreeSet::new();
    for (rel, data) in mods.files() {
        let path = format!("lib/modules/{}/{rel}", mods.release);
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            let dir = &path[..at + i];
            if dirs.insert(dir.to_string()) {
                c.dir(dir, 0o755)?;
            }
            at += i + 1;
        }
        c.file(&path, 0o644, data)?;
    }
    Ok(())
}

/// A whole `/init` around `body`: mounts proc, sysfs and devtmpfs, installs the busybox applet
/// links, runs `body`, then powers off (so QEMU exits).
pub fn init_script(body: &str) -> String {
    format!("{INIT_PROLOGUE}{body}\npoweroff -f\n")
}

/// Fetches into `cache`; see the module doc for the layout.
pub fn fetch(cache: &Path) -> Result<GuestImages, GuestError> {
    mkdir(cache)?;
    let missing: Vec<KernelSeries> = KERNELS
        .iter()
        .copied()
        .filter(|k| cached_kernel(cache, k).is_none())
        .collect();
    let busybox = cache.join("busybox");
    if !missing.is_empty() || !busybox.is_file() {
        let apt = PrivateApt::new(&cache.join("apt"))?;
        apt.update()?;
        for k in &missing {
            let (package, version) = apt.resolve_kernel(k)?;
            eprintln!(
                "guest fetch: {} from {}: {package} {version}",
                k.series, k.suite
            );
            let deb = apt.download(&package, &version)?;
            let dir = cache.join(format!("linux-{}", k.series));
            install_kernel(&deb, &dir, &version)?;
            // Kept: the kernel's modules are taken from it on demand (guest::modules).
            modules::keep_package(&deb, &dir)?;
        }
        if !busybox.is_file() {
            let version = apt.resolve_version("busybox-static", BUSYBOX_SUITE)?;
            eprintln!("guest fetch: busybox-static {version}");
            let deb = apt.download("busybox-static", &version)?;
            let dir = extract(&deb, "./bin/busybox", &cache.join("busybox.extract"))?;
            rename(&dir.join("bin/busybox"), &busybox)?;
            remove_dir(&dir)?;
            remove_download(&deb)?;
        }
    }
    let initramfs_path = cache.join("initramfs.cpio.gz");
    write_if_changed(&initramfs_path, &initramfs(&read(&busybox)?, DEFAULT_INIT)?)?;
    let kernels = KERNELS
        .iter()
        .map(|k| {
            cached_kernel(cache, k).ok_or_else(|| GuestError::NotArm64Image {
                path: cache.join(format!("linux-{}/Image", k.series)),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(GuestImages {
        kernels,
        initramfs: initramfs_path,
        busybox,
    })
}

/// The metapackage whose dependency names bookworm's full (non-cloud) arm64 kernel, which
/// ships the upstream device trees under `/usr/lib/linux-image-<release>/<vendor>/*.dtb`.
const DTB_METAPACKAGE: &str = "linux-image-arm64";
/// The suite whose kernel's device trees `cargo xtask board-diff` compares boards with.
const DTB_SUITE: &str = "bookworm";

/// Downloads bookworm's current `linux-image-6.1.*-arm64` (not `-cloud`) with the private apt
/// state of `target/guest-cache/apt` and extracts its `usr/lib` (the DTBs only; the modules
/// live under `lib/`) into a fresh `into`. Returns the directory holding the `<vendor>/`
/// subdirectories, `into/usr/lib/linux-image-<release>`.
pub fn fetch_dtbs(into: &Path) -> Result<PathBuf, GuestError> {
    let apt = PrivateApt::new(&cache_dir().join("apt"))?;
    apt.update()?;
    let show = apt.show(DTB_METAPACKAGE, DTB_SUITE)?;
    let (package, version) = stanzas(&show)
        .iter()
        .filter(|s| field(s, "Package") == Some(DTB_METAPACKAGE))
        .find_map(|s| {
            field(s, "Depends")?
                .split([',', '|'])
                .map(str::trim)
                .find_map(|dep| {
                    let (name, constraint) = match dep.split_once('(') {
                        Some((n, c)) => (n.trim(), c.trim_end_matches(')').trim()),
                        None => (dep, ""),
                    };
                    let ok = name.starts_with("linux-image-6.1.")
                        && name.ends_with("-arm64")
                        && !name.ends_with("-cloud-arm64")
                        && !name.ends_with("-rt-arm64");
                    let version = constraint
                        .strip_prefix('=')
                        .map(str::trim)
                        .or_else(|| field(s, "Version"))?;
                    ok.then(|| (name.to_string(), version.to_string()))
                })
        })
        .ok_or_else(|| GuestError::NotInIndex {
            package: format!("{DTB_METAPACKAGE} (depending on linux-image-6.1.*-arm64)"),
            suite: DTB_SUITE,
            mirror: apt.mirror.clone(),
        })?;
    eprintln!("dtb fetch: {package} {version}");
    let deb = apt.download(&package, &version)?;
    let dir = extract(&deb, "./usr/lib", into)?;
    remove_download(&deb)?;
    let lib = dir.join("usr/lib");
    let found = fs::read_dir(&lib)
        .map_err(io_err("list", &lib))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("linux-image-"))
        });
    found.ok_or(GuestError::NotInPackage {
        deb,
        wanted: "usr/lib/linux-image-*/",
    })
}

/// The package holding the Linux 6.1 source tree (`usr/src/linux-source-6.1.tar.xz`), from
/// which the device trees Debian's arm64 kernel package does not ship are compiled.
const LINUX_SOURCE: &str = "linux-source-6.1";

/// Downloads bookworm's `linux-source-6.1` with the private apt state and streams only the
/// members of its source tarball that match `patterns` (tar wildcards relative to the tree,
/// e.g. `arch/arm64/boot/dts/nvidia/*`) into a fresh `into`. Returns the tree's root,
/// `into/linux-source-6.1`. The package and the tarball are deleted afterwards.
pub fn fetch_linux_source(into: &Path, patterns: &[&str]) -> Result<PathBuf, GuestError> {
    let apt = PrivateApt::new(&cache_dir().join("apt"))?;
    apt.update()?;
    let version = apt.resolve_version(LINUX_SOURCE, DTB_SUITE)?;
    eprintln!("dtb fetch: {LINUX_SOURCE} {version} (for the DTBs built from source)");
    let deb = apt.download(LINUX_SOURCE, &version)?;
    let mut tmp_name = into.as_os_str().to_owned();
    tmp_name.push(".deb-extract");
    let tmp = extract(&deb, "./usr/src", Path::new(&tmp_name))?;
    remove_download(&deb)?;
    let tarball_name = format!("{LINUX_SOURCE}.tar.xz");
    let tarball = tmp.join("usr/src").join(&tarball_name);
    if !tarball.is_file() {
        return Err(GuestError::NotInPackage {
            deb,
            wanted: "usr/src/linux-source-6.1.tar.xz",
        });
    }
    if into.exists() {
        remove_dir(into)?;
    }
    mkdir(into)?;
    let mut tar = Command::new("tar");
    tar.arg("-xJf")
        .arg(&tarball)
        .arg("-C")
        .arg(into)
        .arg("--wildcards")
        .args(patterns.iter().map(|p| format!("{LINUX_SOURCE}/{p}")));
    run(&mut tar, "tar")?;
    remove_dir(&tmp)?;
    Ok(into.join(LINUX_SOURCE))
}

/// The cached kernel of a series, if its Image is valid and its release and version are recorded.
fn cached_kernel(cache: &Path, k: &KernelSeries) -> Option<GuestKernel> {
    let dir = cache.join(format!("linux-{}", k.series));
    let image = dir.join("Image");
    let mut header = [0u8; ARM64_IMAGE_MAGIC_OFFSET + 4];
    fs::File::open(&image)
        .and_then(|mut f| f.read_exact(&mut header))
        .ok()?;
    if !is_arm64_image(&header) {
        return None;
    }
    let release = fs::read_to_string(dir.join("release"))
        .ok()?
        .trim()
        .to_string();
    let version = fs::read_to_string(dir.join("version"))
        .ok()?
        .trim()
        .to_string();
    Some(GuestKernel {
        series: k.series,
        image,
        release,
        version,
    })
}

fn is_arm64_image(bytes: &[u8]) -> bool {
    bytes.get(ARM64_IMAGE_MAGIC_OFFSET..ARM64_IMAGE_MAGIC_OFFSET + 4) == Some(ARM64_IMAGE_MAGIC)
}

/// Extracts `boot/vmlinuz-*` (gzip'd on bullseye, raw EFI-stub Image on bookworm) and
/// `boot/config-*` from a kernel package into `dir` as `Image`, `config`, `release`, `version`.
fn install_kernel(deb: &Path, dir: &Path, version: &str) -> Result<(), GuestError> {
    let mut tmp_name = dir.as_os_str().to_owned();
    tmp_name.push(".extract");
    let tmp = extract(deb, "./boot", Path::new(&tmp_name))?;
    let boot = tmp.join("boot");
    let entries = fs::read_dir(&boot).map_err(|source| GuestError::Io {
        what: "list",
        path: boot.clone(),
        source,
    })?;
    let mut vmlinuz = None;
    let mut config = None;
    for e in entries {
        let e = e.map_err(|source| GuestError::Io {
            what: "list",
            path: boot.clone(),
            source,
        })?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(release) = name.strip_prefix("vmlinuz-") {
            vmlinuz = Some((e.path(), release.to_string()));
        } else if name.starts_with("config-") {
            config = Some(e.path());
        }
    }
    let (vmlinuz, release) = vmlinuz.ok_or_else(|| GuestError::NotInPackage {
        deb: deb.into(),
        wanted: "boot/vmlinuz-*",
    })?;
    let image = raw_image(&read(&vmlinuz)?).ok_or(GuestError::NotArm64Image {
        path: vmlinuz.clone(),
    })?;
    mkdir(dir)?;
    if let Some(config) = config {
        rename(&config, &dir.join("config"))?;
    }
    write(&dir.join("release"), release.as_bytes())?;
    write(&dir.join("version"), version.as_bytes())?;
    // The Image last: its presence marks the directory complete.
    write_if_changed(&dir.join("Image"), &image)?;
    remove_dir(&tmp)
}

/// The raw arm64 Image in a `vmlinuz` file: the file itself, or its gunzip'd contents.
fn raw_image(vmlinuz: &[u8]) -> Option<Vec<u8>> {
    if vmlinuz.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(vmlinuz).read_to_end(&mut out).ok()?;
        is_arm64_image(&out).then_some(out)
    } else {
        is_arm64_image(vmlinuz).then(|| vmlinuz.to_vec())
    }
}

/// Extracts the members under `member` of a `.deb` into a fresh directory `into`
/// (`dpkg-deb --fsys-tarfile | tar -x`: only those members are written out).
fn extract(deb: &Path, member: &str, into: &Path) -> Result<PathBuf, GuestError> {
    extract_members(deb, &[member.to_string()], into)
}

/// Extracts the members named by `tar_args` (member names, or `--wildcards` and patterns) of
/// a `.deb` into a fresh directory `into`.
fn extract_members(deb: &Path, tar_args: &[String], into: &Path) -> Result<PathBuf, GuestError> {
    if into.exists() {
        remove_dir(into)?;
    }
    mkdir(into)?;
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| GuestError::Spawn {
            tool: "dpkg-deb",
            source,
        })?;
    let tar_in = dpkg
        .stdout
        .take()
        .map(Stdio::from)
        .unwrap_or_else(Stdio::null);
    let mut tar = Command::new("tar");
    tar.arg("-x")
        .arg("-C")
        .arg(into)
        .args(tar_args)
        .stdin(tar_in);
    let tar_result = run(&mut tar, "tar");
    let dpkg_out = dpkg
        .wait_with_output()
        .map_err(|source| GuestError::Spawn {
            tool: "dpkg-deb",
            source,
        })?;
    if !dpkg_out.status.success() {
        return Err(GuestError::ToolFailed {
            command: format!("dpkg-deb --fsys-tarfile {}", deb.display()),
            status: dpkg_out.status,
            stderr: tail(&dpkg_out.stderr),
        });
    }
    tar_result?;
    Ok(into.to_path_buf())
}

/// apt with its own state, cache and sources under one directory; arm64 only.
struct PrivateApt {
    dir: PathBuf,
    mirror: String,
}

impl PrivateApt {
    fn new(dir: &Path) -> Result<Self, GuestError> {
        if !Path::new(KEYRING).is_file() {
            return Err(GuestError::NoKeyring);
        }
        let mirror = std::env::var(MIRROR_ENV)
            .ok()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(system_mirror);
        for sub in ["lists/partial", "cache/archives/partial"] {
            mkdir(&dir.join(sub))?;
        }
        let status = dir.join("status");
        if !status.exists() {
            write(&status, b"")?;
        }
        write(&dir.join("sources.list"), sources_list(&mirror).as_bytes())?;
        Ok(Self {
            dir: dir.to_path_buf(),
            mirror,
        })
    }

    /// The options that point apt at the private directory and arm64.
    fn options(&self) -> Vec<String> {
        let d = self.dir.display();
        [
            format!("Dir::State={d}"),
            format!("Dir::State::Lists={d}/lists"),
            format!("Dir::State::status={d}/status"),
            format!("Dir::Cache={d}/cache"),
            format!("Dir::Etc::SourceList={d}/sources.list"),
            "Dir::Etc::SourceParts=/dev/null".into(),
            "Dir::Etc::Preferences=/dev/null".into(),
            "Dir::Etc::PreferencesParts=/dev/null".into(),
            "APT::Architecture=arm64".into(),
            "APT::Architectures=arm64".into(),
            // No lock files: the state is ours alone, and locking needs root.
            "Debug::NoLocking=1".into(),
            // As root apt downloads as `_apt`, which may not write to the cache; as another
            // user this is a no-op.
            "APT::Sandbox::User=root".into(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_string(), o])
        .collect()
    }

    fn apt(&self, tool: &'static str) -> Command {
        let mut c = Command::new(tool);
        c.arg("-q").args(self.options()).env("LC_ALL", "C");
        c
    }

    /// `apt-get` for a download: on a terminal without `-q`, so that apt shows what it
    /// fetches, its bytes and percent (see [`run_with_progress`]); quiet otherwise.
    fn apt_with_progress(&self) -> Command {
        if !std::io::stderr().is_terminal() {
            return self.apt("apt-get");
        }
        let mut c = Command::new("apt-get");
        c.args(self.options()).env("LC_ALL", "C");
        c
    }

    fn update(&self) -> Result<(), GuestError> {
        eprintln!(
            "guest fetch: apt-get update of {} ({})",
            self.mirror,
            suites().join(", ")
        );
        run_with_progress(self.apt_with_progress().arg("update"), "apt-get")
    }

    /// `apt-cache show PACKAGE/SUITE`.
    fn show(&self, package: &str, suite: &'static str) -> Result<String, GuestError> {
        let out = run(
            self.apt("apt-cache")
                .arg("show")
                .arg(format!("{package}/{suite}")),
            "apt-cache",
        );
        match out {
            Ok(text) if !text.trim().is_empty() => Ok(text),
            // apt-cache exits 100 for an unknown package and 0 with nothing for a missing suite.
            _ => Err(GuestError::NotInIndex {
                package: package.into(),
                suite,
                mirror: self.mirror.clone(),
            }),
        }
    }

    fn resolve_version(&self, package: &str, suite: &'static str) -> Result<String, GuestError> {
        let text = self.show(package, suite)?;
        stanzas(&text)
            .iter()
            .find(|s| field(s, "Package") == Some(package))
            .and_then(|s| field(s, "Version"))
            .map(str::to_string)
            .ok_or_else(|| GuestError::NotInIndex {
                package: package.into(),
                suite,
                mirror: self.mirror.clone(),
            })
    }

    fn resolve_kernel(&self, k: &KernelSeries) -> Result<(String, String), GuestError> {
        resolve_kernel_package(&self.show(KERNEL_METAPACKAGE, k.suite)?, k)
    }

    /// `apt-get download PACKAGE=VERSION` into `debs/`; returns the `.deb`.
    fn download(&self, package: &str, version: &str) -> Result<PathBuf, GuestError> {
        // A fresh directory per package, so a leftover of an interrupted run is never taken.
        let dir = self.dir.join("debs").join(package);
        if dir.exists() {
            remove_dir(&dir)?;
        }
        mkdir(&dir)?;
        run_with_progress(
            self.apt_with_progress()
                .current_dir(&dir)
                .arg("download")
                .arg(format!("{package}={version}")),
            "apt-get",
        )?;
        let entries = fs::read_dir(&dir).map_err(io_err("list", &dir))?;
        entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .ok_or(GuestError::DebMissing {
                package: package.into(),
                dir,
            })
    }
}

fn suites() -> Vec<&'static str> {
    let mut s: Vec<&str> = KERNELS.iter().map(|k| k.suite).collect();
    if !s.contains(&BUSYBOX_SUITE) {
        s.push(BUSYBOX_SUITE);
    }
    s
}

/// The private `sources.list`: arm64 `Packages` indexes only, checked with Debian's keyring.
fn sources_list(mirror: &str) -> String {
    suites()
        .iter()
        .map(|s| {
            format!("deb [arch=arm64 target=Packages signed-by={KEYRING}] {mirror} {s} main\n")
        })
        .collect()
}

/// The Debian mirror the machine's apt sources already use, or [`DEFAULT_MIRROR`].
fn system_mirror() -> String {
    let mut texts: Vec<String> = fs::read_to_string("/etc/apt/sources.list")
        .into_iter()
        .collect();
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.filter_map(Result::ok).map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if p.extension().is_some_and(|e| e == "list" || e == "sources") {
                texts.extend(fs::read_to_string(p).ok());
            }
        }
    }
    texts
        .iter()
        .find_map(|t| debian_mirror_in(t))
        .unwrap_or_else(|| DEFAULT_MIRROR.into())
}

/// The first URI in a sources file (one-line or deb822 form) whose path ends in `/debian`.
fn debian_mirror_in(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| {
            let uris: Vec<&str> = if let Some(v) = l.strip_prefix("URIs:") {
                v.split_whitespace().collect()
            } else if let Some(rest) = l.strip_prefix("deb ") {
                // `deb [options] uri suite components`: the first word after the options.
                let rest = rest.trim_start();
                let rest = match rest.strip_prefix('[') {
                    Some(r) => r.split_once(']').map_or("", |(_, after)| after),
                    None => rest,
                };
                rest.split_whitespace().take(1).collect()
            } else {
                Vec::new()
            };
            uris
        })
        .map(|u| u.trim_end_matches('/'))
        .find(|u| (u.starts_with("http://") || u.starts_with("https://")) && u.ends_with("/debian"))
        .map(str::to_string)
}

/// Stanzas of `apt-cache show` (or a `Packages` file): `Field: value` lines, continuation
/// lines start with a space, stanzas are separated by blank lines.
fn stanzas(text: &str) -> Vec<Vec<(&str, &str)>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else if !line.starts_with([' ', '\t']) {
            if let Some((k, v)) = line.split_once(':') {
                cur.push((k.trim(), v.trim()));
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn field<'a>(stanza: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    stanza
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

/// From `apt-cache show linux-image-cloud-arm64/SUITE`: the real kernel package of the series
/// and its version (the `(= V)` of the dependency, or the metapackage's own version).
fn resolve_kernel_package(show: &str, k: &KernelSeries) -> Result<(String, String), GuestError> {
    let prefix = format!("linux-image-{}.", k.series);
    let metas: Vec<_> = stanzas(show)
        .into_iter()
        .filter(|s| field(s, "Package") == Some(KERNEL_METAPACKAGE))
        .collect();
    let mut depends_seen = Vec::new();
    for s in &metas {
        let depends = field(s, "Depends").unwrap_or("");
        depends_seen.push(depends.to_string());
        for dep in depends.split([',', '|']).map(str::trim) {
            let (name, constraint) = match dep.split_once('(') {
                Some((n, c)) => (n.trim(), Some(c.trim_end_matches(')').trim())),
                None => (dep, None),
            };
            if !(name.starts_with(&prefix) && name.ends_with("-cloud-arm64")) {
                continue;
            }
            let version = match constraint.and_then(|c| c.strip_prefix('=')) {
                Some(v) => v.trim(),
                None => match field(s, "Version") {
                    Some(v) => v,
                    None => continue,
                },
            };
            return Ok((name.to_string(), version.to_string()));
        }
    }
    Err(GuestError::WrongSeries {
        series: k.series,
        suite: k.suite,
        depends: depends_seen.join(" / "),
    })
}

/// Runs a command; its standard output, or [`GuestError::ToolFailed`] with its standard error.
fn run(cmd: &mut Command, tool: &'static str) -> Result<String, GuestError> {
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| GuestError::Spawn { tool, source })?;
    if !out.status.success() {
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        return Err(GuestError::ToolFailed {
            command: format!("{tool} {}", args.join(" ")),
            status: out.status,
            stderr: tail(&out.stderr),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a download. When standard error is a terminal, the tool's standard output (apt's
/// `Get:` lines and its bytes/percent progress line, which apt draws only on a terminal) goes
/// there, so a download of minutes shows how far it is; xtask's own standard output stays
/// for results. Otherwise like [`run`], silent unless it fails.
fn run_with_progress(cmd: &mut Command, tool: &'static str) -> Result<(), GuestError> {
    if std::io::stderr().is_terminal() {
        cmd.stdout(Stdio::from(std::io::stderr()));
    }
    run(cmd, tool).map(drop)
}

/// The last lines of a tool's error output.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The initramfs (gzip'd newc cpio): `/bin/busybox`, applet links in `/bin`, the mount points,
/// `/dev/console` and `/dev/null` (the kernel opens the console before `/init` mounts
/// devtmpfs), and `/init`. Deterministic: the same inputs give the same bytes.
pub fn initramfs(busybox: &[u8], init: &str) -> Result<Vec<u8>, GuestError> {
    initramfs_with(busybox, init, |_| Ok(()))
}

/// [`initramfs`] with more entries, added by `extra` after the base ones and before `/init`.
fn initramfs_with(
    busybox: &[u8],
    init: &str,
    extra: impl FnOnce(&mut CpioWriter) -> Result<(), GuestError>,
) -> Result<Vec<u8>, GuestError> {
    let mut c = CpioWriter::new();
    for d in [
        "bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "root", "etc",
    ] {
        c.dir(d, 0o755)?;
    }
    c.file("bin/busybox", 0o755, busybox)?;
    for a in APPLETS {
        c.symlink(&format!("bin/{a}"), "busybox")?;
    }
    c.char_dev("dev/console", 0o600, 5, 1)?;
    c.char_dev("dev/null", 0o666, 1, 3)?;
    extra(&mut c)?;
    c.file("init", 0o755, init.as_bytes())?;
    let cpio = c.finish();
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&cpio)
        .and_then(|()| gz.finish())
        .map_err(|source| GuestError::Io {
            what: "compress the initramfs for",
            path: "initramfs.cpio.gz".into(),
            source,
        })
}

/// File type bits of `st_mode` (POSIX `<sys/stat.h>`).
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// Writer of the "new ASCII" (`newc`, magic `070701`) cpio format the kernel unpacks
/// (`Documentation/driver-api/early-userspace/buffer-format.rst`): a 110-byte header of
/// 13 eight-digit hex fields, the NUL-terminated name padded to 4 bytes, then the data padded
/// to 4 bytes; the archive ends with an entry named `TRAILER!!!`. Owner root, mtime 0.
pub struct CpioWriter {
    out: Vec<u8>,
    next_ino: u32,
}

/// One header's fields (the 13 fields of a newc header, without magic and check).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct CpioHeader {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    filesize: u32,
    devmajor: u32,
    devminor: u32,
    rdevmajor: u32,
    rdevminor: u32,
    namesize: u32,
}

impl CpioWriter {
    /// An empty archive.
    pub fn new() -> Self {
        Self {
            out: Vec::new(),
            next_ino: 1,
        }
    }

    /// A directory.
    pub fn dir(&mut self, name: &str, perm: u32) -> Result<(), GuestError> {
        self.entry(name, S_IFDIR | perm, 2, (0, 0), &[])
    }

    /// A regular file.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> Result<(), GuestError> {
        self.entry(name, S_IFREG | perm, 1, (0, 0), data)
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> Result<(), GuestError> {
        self.entry(name, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// A character device node.
    pub fn char_dev(
        &mut self,
        name: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), GuestError> {
        self.entry(name, S_IFCHR | perm, 1, (major, minor), &[])
    }

    /// The archive with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.header(
            &CpioHeader {
                nlink: 1,
                namesize: 11,
                ..CpioHeader::default()
            },
            "TRAILER!!!",
        );
        self.out
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<(), GuestError> {
        let bad = || GuestError::BadEntryName { name: name.into() };
        if name.is_empty() || name.contains('\0') || name.len() >= 4096 || name == "TRAILER!!!" {
            return Err(bad());
        }
        let filesize = u32::try_from(data.len()).map_err(|_| bad())?;
        let h = CpioHeader {
            ino: self.next_ino,
            mode,
            nlink,
            filesize,
            rdevmajor: rdev.0,
            rdevminor: rdev.1,
            namesize: u32::try_from(name.len() + 1).map_err(|_| bad())?,
            ..CpioHeader::default()
        };
        self.next_ino += 1;
        self.header(&h, name);
        self.out.extend_from_slice(data);
        self.pad();
        Ok(())
    }

    fn header(&mut self, h: &CpioHeader, name: &str) {
        let fields = [
            h.ino,
            h.mode,
            h.uid,
            h.gid,
            h.nlink,
            h.mtime,
            h.filesize,
            h.devmajor,
            h.devminor,
            h.rdevmajor,
            h.rdevminor,
            h.namesize,
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }
}

impl Default for CpioWriter {
    fn default() -> Self {
        Self::new()
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> GuestError + 'a {
    move |source| GuestError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn mkdir(p: &Path) -> Result<(), GuestError> {
    fs::create_dir_all(p).map_err(io_err("create", p))
}

fn read(p: &Path) -> Result<Vec<u8>, GuestError> {
    fs::read(p).map_err(io_err("read", p))
}

fn write(p: &Path, bytes: &[u8]) -> Result<(), GuestError> {
    fs::write(p, bytes).map_err(io_err("write", p))
}

fn rename(from: &Path, to: &Path) -> Result<(), GuestError> {
    fs::rename(from, to).map_err(io_err("move", from))
}

/// Removes a downloaded `.deb` with the directory [`PrivateApt::download`] made for it.
fn remove_download(deb: &Path) -> Result<(), GuestError> {
    match deb.parent() {
        Some(dir) => remove_dir(dir),
        None => fs::remove_file(deb).map_err(io_err("remove", deb)),
    }
}

fn remove_dir(p: &Path) -> Result<(), GuestError> {
    fs::remove_dir_all(p).map_err(io_err("remove", p))
}

/// Writes `bytes` to `path` through a temporary file and a rename (readers never see half a
/// file), and not at all when the file already holds them (its mtime stays).
fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<(), GuestError> {
    if fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        mkdir(parent)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    write(&tmp, bytes)?;
    rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A newc reader for the tests: (header, name, data) per entry, trailer included.
    fn parse_cpio(mut b: &[u8]) -> Vec<(CpioHeader, String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut offset = 0usize;
        let align = |n: usize| (4 - n % 4) % 4;
        loop {
            assert_eq!(&b[..6], b"070701", "magic at offset {offset}");
            let f: Vec<u32> = (0..13)
                .map(|i| {
                    u32::from_str_radix(std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                        .unwrap()
                })
                .collect();
            assert_eq!(f[12], 0, "check field");
            let h = CpioHeader {
                ino: f[0],
                mode: f[1],
                uid: f[2],
                gid: f[3],
                nlink: f[4],
                mtime: f[5],
                filesize: f[6],
                devmajor: f[7],
                devminor: f[8],
                rdevmajor: f[9],
                rdevminor: f[10],
                namesize: f[11],
            };
            let name_end = 110 + h.namesize as usize;
            assert_eq!(b[name_end - 1], 0, "name is NUL-terminated");
            let name = String::from_utf8(b[110..name_end - 1].to_vec()).unwrap();
            let data_start = name_end + align(name_end);
            let data_end = data_start + h.filesize as usize;
            let data = b[data_start..data_end].to_vec();
            let next = data_end + align(data_end);
            offset += next;
            b = &b[next..];
            let done = name == "TRAILER!!!";
            out.push((h, name, data));
            if done {
                assert!(b.is_empty(), "nothing after the trailer");
                return out;
            }
        }
    }

    #[test]
    fn cpio_round_trips_every_header_field() {
        let mut c = CpioWriter::new();
        c.dir("bin", 0o755).unwrap();
        c.file("bin/busybox", 0o755, b"\x7fELF12345").unwrap();
        c.symlink("bin/sh", "busybox").unwrap();
        c.char_dev("dev/console", 0o600, 5, 1).unwrap();
        let bytes = c.finish();
        assert_eq!(bytes.len() % 4, 0);
        let e = parse_cpio(&bytes);
        let names: Vec<&str> = e.iter().map(|(_, n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["bin", "bin/busybox", "bin/sh", "dev/console", "TRAILER!!!"]
        );

        let (dir, _, _) = &e[0];
        assert_eq!(dir.mode, 0o040_755);
        assert_eq!(dir.nlink, 2);
        assert_eq!(dir.filesize, 0);

        let (file, _, data) = &e[1];
        assert_eq!(file.mode, 0o100_755);
        assert_eq!(file.filesize, 9);
        assert_eq!(data, b"\x7fELF12345");
        assert_eq!(file.namesize, "bin/busybox".len() as u32 + 1);
        assert_eq!((file.uid, file.gid, file.mtime), (0, 0, 0));

        let (link, _, target) = &e[2];
        assert_eq!(link.mode, 0o120_777);
        assert_eq!(target, b"busybox");

        let (dev, _, _) = &e[3];
        assert_eq!(dev.mode, 0o020_600);
        assert_eq!((dev.rdevmajor, dev.rdevminor), (5, 1));
        assert_eq!((dev.devmajor, dev.devminor), (0, 0));

        let inos: Vec<u32> = e[..4].iter().map(|(h, _, _)| h.ino).collect();
        assert_eq!(inos, [1, 2, 3, 4], "inode numbers are distinct");
    }

    #[test]
    fn cpio_rejects_names_the_format_cannot_hold() {
        let mut c = CpioWriter::new();
        assert!(matches!(
            c.file("", 0o644, b""),
            Err(GuestError::BadEntryName { .. })
        ));
        assert!(matches!(
            c.file("a\0b", 0o644, b""),
            Err(GuestError::BadEntryName { .. })
        ));
        assert!(matches!(
            c.dir("TRAILER!!!", 0o755),
            Err(GuestError::BadEntryName { .. })
        ));
    }

    #[test]
    fn initramfs_holds_init_busybox_applets_and_console() {
        let gz = initramfs(b"BUSYBOX", "#!/bin/sh\necho hi\n").unwrap();
        let mut cpio = Vec::new();
        GzDecoder::new(&gz[..]).read_to_end(&mut cpio).unwrap();
        let e = parse_cpio(&cpio);
        let get = |n: &str| {
            e.iter()
                .find(|(_, name, _)| name == n)
                .unwrap_or_else(|| panic!("no {n}"))
        };
        assert_eq!(get("init").2, b"#!/bin/sh\necho hi\n");
        assert_eq!(get("init").0.mode, 0o100_755);
        assert_eq!(get("bin/busybox").2, b"BUSYBOX");
        assert_eq!(get("bin/sh").2, b"busybox");
        assert_eq!(get("bin/poweroff").2, b"busybox");
        assert_eq!(
            (
                get("dev/console").0.rdevmajor,
                get("dev/console").0.rdevminor
            ),
            (5, 1)
        );
        for d in ["proc", "sys", "dev"] {
            assert_eq!(get(d).0.mode & 0o170_000, S_IFDIR);
        }
        assert_eq!(
            gz,
            initramfs(b"BUSYBOX", "#!/bin/sh\necho hi\n").unwrap(),
            "deterministic"
        );
    }

    fn fake_modules() -> KernelModules {
        let m = |name: &str, path: &str| modules::Module {
            name: name.into(),
            path: path.into(),
            data: format!("\x7fELF {name}").into_bytes(),
        };
        KernelModules {
            release: "6.1.0-50-cloud-arm64".into(),
            modules: vec![
                m("virtio", "kernel/drivers/virtio/virtio.ko"),
                m("virtio_ring", "kernel/drivers/virtio/virtio_ring.ko"),
                m("virtio_blk", "kernel/drivers/block/virtio_blk.ko"),
            ],
            builtin: vec!["nvme".into()],
            modules_dep: "kernel/drivers/virtio/virtio.ko:\n".into(),
            modules_builtin: "kernel/drivers/nvme/host/nvme.ko\n".into(),
        }
    }

    #[test]
    fn module_initramfs_lists_modules_in_load_order_before_init() {
        let mods = fake_modules();
        let init = with_module_prelude(&init_script("echo body"), &mods.load_script("[initramfs]"))
            .unwrap();
        let gz = initramfs_with(b"BUSYBOX", &init, |c| add_modules(c, &mods)).unwrap();
        let mut cpio = Vec::new();
        GzDecoder::new(&gz[..]).read_to_end(&mut cpio).unwrap();
        let e = parse_cpio(&cpio);
        let names: Vec<&str> = e.iter().map(|(_, n, _)| n.as_str()).collect();
        let r = "lib/modules/6.1.0-50-cloud-arm64";
        let from = names.iter().position(|n| *n == "lib").unwrap();
        assert_eq!(
            names[from..],
            [
                "lib".to_string(),
                "lib/modules".into(),
                r.into(),
                format!("{r}/kernel"),
                format!("{r}/kernel/drivers"),
                format!("{r}/kernel/drivers/virtio"),
                format!("{r}/kernel/drivers/virtio/virtio.ko"),
                format!("{r}/kernel/drivers/virtio/virtio_ring.ko"),
                format!("{r}/kernel/drivers/block"),
                format!("{r}/kernel/drivers/block/virtio_blk.ko"),
                format!("{r}/modules.dep"),
                format!("{r}/modules.builtin"),
                "init".into(),
                "TRAILER!!!".into(),
            ]
        );
        let get = |n: &str| e.iter().find(|(_, name, _)| name == n).unwrap();
        assert_eq!(
            get(&format!("{r}/kernel/drivers/block/virtio_blk.ko")).2,
            b"\x7fELF virtio_blk"
        );
        assert_eq!(
            get(&format!("{r}/modules.dep")).2,
            b"kernel/drivers/virtio/virtio.ko:\n"
        );
        assert_eq!(get("bin/insmod").2, b"busybox");
        assert_eq!(get("bin/modprobe").2, b"busybox");
        // The prelude right after the `#!` line, modules in order, then the caller's init.
        let init = String::from_utf8(get("init").2.clone()).unwrap();
        assert!(init.starts_with("#!/bin/sh\n# Kernel modules, dependencies first"));
        let at = |s: &str| {
            init.find(s)
                .unwrap_or_else(|| panic!("no `{s}` in\n{init}"))
        };
        assert!(at("module nvme is built in") < at("xtask_insmod virtio kernel/"));
        assert!(at("xtask_insmod virtio kernel/") < at("xtask_insmod virtio_ring "));
        assert!(at("xtask_insmod virtio_ring ") < at("xtask_insmod virtio_blk "));
        assert!(at("xtask_insmod virtio_blk ") < at("mount -t proc proc /proc"));
        assert!(at("mount -t proc proc /proc") < at("echo body"));
    }

    #[test]
    fn module_prelude_needs_a_whole_script() {
        assert!(with_module_prelude("echo body", "P\n")
            .unwrap_err()
            .contains("starting with `#!`"));
        assert_eq!(
            with_module_prelude("#!/bin/sh\necho b\n", "P\n").unwrap(),
            "#!/bin/sh\nP\necho b\n"
        );
    }

    #[test]
    fn image_options_parse_kernel_modules_and_size() {
        use clap::Parser;
        #[derive(Parser)]
        struct Guest {
            #[command(subcommand)]
            cmd: Cmd,
        }
        let options = |args: &[&str]| -> Result<ImageOptions, String> {
            let all = ["guest", "rootfs", "init.sh", "out.ext4"]
                .iter()
                .chain(args);
            match Guest::try_parse_from(all).map_err(|e| e.to_string())?.cmd {
                Cmd::Rootfs { size, modules, .. } => modules.options(size),
                _ => unreachable!("parsed a rootfs command"),
            }
        };
        let o = options(&[
            "--kernel",
            "6.12",
            "--modules",
            "ahci,sd_mod",
            "--size",
            "48",
        ])
        .unwrap();
        assert_eq!(o.kernel.as_deref(), Some("6.12"));
        assert_eq!(o.modules, ["ahci", "sd_mod"]);
        assert_eq!(o.size_mib, 48);
        assert!(options(&["--size", "x"]).is_err());
        assert!(options(&["--modules", "ahci"])
            .unwrap_err()
            .contains("--kernel"));
        assert!(options(&["--kernel", "4.19"]).unwrap_err().contains("4.19"));
    }

    #[test]
    fn default_init_prints_the_markers_and_honours_autotest() {
        assert!(DEFAULT_INIT.contains("[initramfs] userspace up: $(uname -r)"));
        assert!(DEFAULT_INIT.contains("grep -qw autotest /proc/cmdline"));
        assert!(DEFAULT_INIT.contains("poweroff -f"));
        let custom = init_script("echo 42");
        assert!(custom.starts_with("#!/bin/sh\n"));
        assert!(custom.contains("mount -t proc proc /proc\n"));
        assert!(custom.ends_with("echo 42\npoweroff -f\n"));
    }

    #[test]
    fn example_vm_files_point_at_the_cache_layout() {
        let vms = crate::build::workspace_root().join("examples/vms");
        for (file, series) in [
            ("linux.toml", "6.1"),
            ("linux-5.10.toml", "5.10"),
            ("linux-6.12.toml", "6.12"),
        ] {
            let text = fs::read_to_string(vms.join(file)).unwrap();
            let value = |key: &str| {
                let line = text
                    .lines()
                    .find(|l| l.starts_with(&format!("{key} = ")))
                    .unwrap();
                line.split('"').nth(1).unwrap().to_string()
            };
            let resolve = |rel: String| {
                let mut p = vms.clone();
                for c in Path::new(&rel).components() {
                    match c {
                        std::path::Component::ParentDir => assert!(p.pop()),
                        c => p.push(c),
                    }
                }
                p
            };
            assert_eq!(
                resolve(value("kernel")),
                cache_dir().join(format!("linux-{series}/Image")),
                "{file}"
            );
            assert_eq!(
                resolve(value("initrd")),
                cache_dir().join("initramfs.cpio.gz"),
                "{file}"
            );
            assert!(text.contains("vcpus = 4\n"), "{file}");
            assert!(text.contains("memory_mib = 512\n"), "{file}");
            assert!(KERNELS.iter().any(|k| k.series == series));
        }
    }

    const SHOW_BOOKWORM: &str = "\
Package: linux-image-cloud-arm64
Source: linux-signed-arm64 (6.1.176+1)
Version: 6.1.176-1
Installed-Size: 13
Depends: linux-image-6.1.0-50-cloud-arm64 (= 6.1.176-1)
Description: Linux for arm64 cloud (meta-package)
 This package depends on the latest Linux kernel and modules for use on
 cloud platforms.

";

    #[test]
    fn kernel_resolves_to_the_package_the_metapackage_pins() {
        let k = KernelSeries {
            series: "6.1",
            suite: "bookworm",
        };
        let (name, version) = resolve_kernel_package(SHOW_BOOKWORM, &k).unwrap();
        assert_eq!(name, "linux-image-6.1.0-50-cloud-arm64");
        assert_eq!(version, "6.1.176-1");
    }

    #[test]
    fn kernel_resolution_picks_the_stanza_of_the_series() {
        let two = "Package: linux-image-cloud-arm64\nVersion: 6.12.95-1~bpo12+1\n\
                   Depends: linux-image-6.12.95+deb12-cloud-arm64 (= 6.12.95-1~bpo12+1)\n\n\
                   Package: linux-image-cloud-arm64\nVersion: 5.10.223-1\n\
                   Depends: linux-image-5.10.0-32-cloud-arm64 (= 5.10.223-1)\n";
        let k612 = KernelSeries {
            series: "6.12",
            suite: "bookworm-backports",
        };
        assert_eq!(
            resolve_kernel_package(two, &k612).unwrap(),
            (
                "linux-image-6.12.95+deb12-cloud-arm64".into(),
                "6.12.95-1~bpo12+1".into()
            )
        );
        let k510 = KernelSeries {
            series: "5.10",
            suite: "bullseye",
        };
        assert_eq!(
            resolve_kernel_package(two, &k510).unwrap().0,
            "linux-image-5.10.0-32-cloud-arm64"
        );
    }

    #[test]
    fn kernel_resolution_does_not_take_6_12_for_6_1() {
        let show = "Package: linux-image-cloud-arm64\nVersion: 6.12.95-1\n\
                    Depends: linux-image-6.12.95+deb12-cloud-arm64 (= 6.12.95-1)\n";
        let k = KernelSeries {
            series: "6.1",
            suite: "bookworm",
        };
        assert!(matches!(
            resolve_kernel_package(show, &k),
            Err(GuestError::WrongSeries { series: "6.1", .. })
        ));
    }

    #[test]
    fn kernel_resolution_without_version_constraint_uses_the_metapackage_version() {
        let show = "Package: linux-image-cloud-arm64\nVersion: 6.1.1-1\n\
                    Depends: initramfs-tools | linux-initramfs-tool, linux-image-6.1.0-9-cloud-arm64\n";
        let k = KernelSeries {
            series: "6.1",
            suite: "bookworm",
        };
        assert_eq!(
            resolve_kernel_package(show, &k).unwrap(),
            ("linux-image-6.1.0-9-cloud-arm64".into(), "6.1.1-1".into())
        );
    }

    #[test]
    fn stanza_fields_skip_continuation_lines() {
        let s = stanzas(SHOW_BOOKWORM);
        assert_eq!(s.len(), 1);
        assert_eq!(field(&s[0], "Version"), Some("6.1.176-1"));
        assert_eq!(
            field(&s[0], "Source"),
            Some("linux-signed-arm64 (6.1.176+1)")
        );
        assert!(s[0].iter().all(|(k, _)| !k.starts_with("This package")));
    }

    #[test]
    fn mirror_comes_from_deb822_or_one_line_sources() {
        let deb822 = "Types: deb\n# http://snapshot.debian.org/archive/debian/x\n\
                      URIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\n\
                      Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n";
        assert_eq!(
            debian_mirror_in(deb822).as_deref(),
            Some("http://mirror.example/debian")
        );
        let one_line = "# deb http://commented.example/debian bookworm main\n\
                        deb [arch=amd64 signed-by=/k.gpg] https://m.example/debian bookworm main\n";
        assert_eq!(
            debian_mirror_in(one_line).as_deref(),
            Some("https://m.example/debian")
        );
        assert_eq!(
            debian_mirror_in("deb https://packages.example/apt cloud main\n"),
            None
        );
    }

    #[test]
    fn raw_image_accepts_raw_and_gzipped_arm64_images_only() {
        let mut image = vec![0u8; 0x40];
        image[0x38..0x3c].copy_from_slice(b"ARM\x64");
        assert_eq!(raw_image(&image).as_deref(), Some(&image[..]));
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&image).unwrap();
        assert_eq!(
            raw_image(&gz.finish().unwrap()).as_deref(),
            Some(&image[..])
        );
        assert_eq!(raw_image(&[0u8; 0x40]), None);
    }
}
