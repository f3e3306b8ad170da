//! Kernel modules of the cached Debian kernels, for initramfs and root file system images.
//!
//! Debian's kernel packages ship `lib/modules/<release>/` without `modules.dep`: the
//! package's postinst runs `depmod` on the machine it is installed on. So the first use of a
//! kernel's modules indexes the package itself: every module's `.modinfo` section names the
//! modules it needs (`depends=`, written by modpost), from which a `modules.dep` in depmod's
//! format is generated (each module's dependencies transitively, the one to load first
//! last). The package stays in the cache; each image then extracts only the modules it asks
//! for, with their dependencies.
//!
//! ```text
//! target/guest-cache/linux-<series>/
//!   package.deb     the kernel package (kept by `guest fetch`, downloaded here if missing)
//!   modules/        release, prefix (where lib/modules/<release>/ sits in the package),
//!                   modules.dep and modules.alias (generated from every module's .modinfo),
//!                   modules.builtin, modules.order (copied from the package)
//! ```
//!
//! Compression: the 5.10 and 6.1 cloud kernels ship plain `.ko` files, 6.12 ships `.ko.xz`
//! (`CONFIG_MODULE_COMPRESS_XZ`). busybox's `insmod` hands the file's bytes to
//! `init_module(2)`, which wants a plain ELF; the 6.12 kernel could decompress in
//! `finit_module(2)`, which busybox does not use, and whether busybox unpacks xz itself depends
//! on its build. So modules are decompressed here (`xz`, `zstd` or gzip) and written into
//! images as plain `.ko` files, and the `modules.dep` written with them names those.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use flate2::read::GzDecoder;

use super::{
    cache_dir, extract_members, io_err, mkdir, read, remove_dir, rename, write, GuestError,
    GuestImages, GuestKernel, PrivateApt, KERNELS,
};

/// Why a module could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// No module of that name in the package, and not built in either.
    #[error("kernel module `{name}` is neither in the package of {release} nor built into it (modules.builtin){}", hint(similar))]
    Unknown {
        /// The name asked for.
        name: String,
        /// The kernel release.
        release: String,
        /// Module names that look alike.
        similar: Vec<String>,
    },
    /// A `modules.dep` line without `:`.
    #[error("modules.dep line {line} `{text}` is not `path: dependency paths`")]
    BadDepLine {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// A dependency that has no line of its own in `modules.dep`, or a `depends=` name that
    /// matches no module of the package.
    #[error("module `{module}` depends on `{dep}`, which is not in the module list")]
    MissingDependency {
        /// The module.
        module: String,
        /// Its missing dependency.
        dep: String,
    },
    /// Modules that depend on each other in a circle.
    #[error("kernel modules depend on each other in a cycle: {0}")]
    Cycle(String),
    /// A module file that is not ELF (after decompression).
    #[error("`{path}` is not an ELF kernel module (even after decompression)")]
    NotElf {
        /// The module's path in the package.
        path: String,
    },
    /// A compressed module needs a tool the host lacks.
    #[error("`{tool}` is needed to decompress `{path}` and could not be run ({source}); install Debian's `{package}` (apt-get install {package})")]
    ToolMissing {
        /// The tool.
        tool: &'static str,
        /// The Debian package providing it.
        package: &'static str,
        /// The module.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A decompressor ran and failed.
    #[error("`{tool} -dc` failed on `{path}`: {stderr}")]
    Decompress {
        /// The tool.
        tool: &'static str,
        /// The module.
        path: String,
        /// Its error output.
        stderr: String,
    },
    /// No series of that name.
    #[error("no guest kernel `{0}`; the series are 5.10, 6.1 and 6.12")]
    NoSeries(String),
    /// The package has no `lib/modules/<release>/`.
    #[error("`{deb}` has no lib/modules/{release}/ (with modules.order); the package layout changed: update xtask/src/guest/modules.rs")]
    NoModuleTree {
        /// The package.
        deb: PathBuf,
        /// The release looked for.
        release: String,
    },
    /// Fetching, extracting or writing failed.
    #[error(transparent)]
    Guest(#[from] GuestError),
}

fn hint(similar: &[String]) -> String {
    if similar.is_empty() {
        String::new()
    } else {
        format!("; similar names: {}", similar.join(", "))
    }
}

/// The module name of a path in `modules.dep` (`kernel/lib/crc-t10dif.ko.xz` is
/// `crc_t10dif`): the file name without `.ko` and compression suffix, `-` read as `_` (the
/// kernel treats both alike in module names).
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = [".ko.xz", ".ko.zst", ".ko.gz", ".ko"]
        .iter()
        .find_map(|s| file.strip_suffix(s))
        .unwrap_or(file);
    normalize(stem)
}

fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// A module path with any compression suffix dropped (`x.ko.xz` becomes `x.ko`).
pub fn plain_path(path: &str) -> String {
    [".xz", ".zst", ".gz"]
        .iter()
        .find_map(|s| path.strip_suffix(s))
        .filter(|p| p.ends_with(".ko"))
        .unwrap_or(path)
        .to_string()
}

/// A parsed `modules.dep` (depmod's format: `path: dependency paths`, one line per module,
/// paths relative to `lib/modules/<release>/`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModDep {
    /// Each module's path and its dependencies' paths, in file order.
    entries: Vec<(String, Vec<String>)>,
    by_name: HashMap<String, usize>,
    by_path: HashMap<String, usize>,
}

impl ModDep {
    /// Parses `modules.dep` text; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<Self, ModuleError> {
        let mut dep = Self::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (path, deps) = line
                .split_once(':')
                .ok_or_else(|| ModuleError::BadDepLine {
                    line: n + 1,
                    text: line.into(),
                })?;
            let path = path.trim();
            if path.is_empty() {
                return Err(ModuleError::BadDepLine {
                    line: n + 1,
                    text: line.into(),
                });
            }
            dep.push(
                path.to_string(),
                deps.split_whitespace().map(str::to_string).collect(),
            );
        }
        Ok(dep)
    }

    fn push(&mut self, path: String, deps: Vec<String>) {
        let i = self.entries.len();
        self.by_name.insert(module_name(&path), i);
        self.by_path.insert(path.clone(), i);
        self.entries.push((path, deps));
    }

    /// The path of the module called `name` (`-` and `_` alike).
    pub fn path_of(&self, name: &str) -> Option<&str> {
        let i = *self.by_name.get(&normalize(name))?;
        Some(&self.entries[i].0)
    }

    /// The module names, in file order.
    pub fn names(&self) -> impl Iterator<Item = String> + '_ {
        self.entries.iter().map(|(p, _)| module_name(p))
    }

    /// Paths of the modules `names` and everything they depend on, in an order `insmod` can
    /// load them: each module after all of its dependencies, each once, otherwise in the
    /// order asked. Every name must be a module here (see [`resolve`] for built-in ones).
    pub fn load_order(&self, names: &[&str], release: &str) -> Result<Vec<String>, ModuleError> {
        let mut done = vec![false; self.entries.len()];
        let mut on_path = Vec::new();
        let mut out = Vec::new();
        for name in names {
            let i = *self
                .by_name
                .get(&normalize(name))
                .ok_or_else(|| ModuleError::Unknown {
                    name: (*name).into(),
                    release: release.into(),
                    similar: self.similar(name),
                })?;
            self.visit(i, &mut done, &mut on_path, &mut out)?;
        }
        Ok(out)
    }

    /// Depth-first, dependencies before dependents. A module's listed dependencies are
    /// visited from last to first (depmod lists the one to load first last); as each one's
    /// own dependencies are visited before it, the order holds for any listing order.
    fn visit(
        &self,
        i: usize,
        done: &mut [bool],
        on_path: &mut Vec<usize>,
        out: &mut Vec<String>,
    ) -> Result<(), ModuleError> {
        if done[i] {
            return Ok(());
        }
        if let Some(at) = on_path.iter().position(|&j| j == i) {
            let mut names: Vec<String> = on_path[at..]
                .iter()
                .map(|&j| module_name(&self.entries[j].0))
                .collect();
            names.push(module_name(&self.entries[i].0));
            return Err(ModuleError::Cycle(names.join(" -> ")));
        }
        on_path.push(i);
        let (path, deps) = &self.entries[i];
        for d in deps.iter().rev() {
            let j = *self
                .by_path
                .get(d)
                .ok_or_else(|| ModuleError::MissingDependency {
                    module: module_name(path),
                    dep: d.clone(),
                })?;
            self.visit(j, done, on_path, out)?;
        }
        on_path.pop();
        done[i] = true;
        out.push(path.clone());
        Ok(())
    }

    /// Up to five module names that look like `name` (share a 5-character prefix or contain it).
    fn similar(&self, name: &str) -> Vec<String> {
        let want = normalize(name);
        let prefix: String = want.chars().take(5).collect();
        let mut out: Vec<String> = self
            .names()
            .filter(|n| n.starts_with(&prefix) || n.contains(&want) || want.contains(n.as_str()))
            .collect();
        out.sort();
        out.truncate(5);
        out
    }

    /// depmod's text form.
    pub fn render(&self) -> String {
        self.entries
            .iter()
            .map(|(p, d)| {
                if d.is_empty() {
                    format!("{p}:\n")
                } else {
                    format!("{p}: {}\n", d.join(" "))
                }
            })
            .collect()
    }
}

/// What [`resolve`] found for a list of module names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Paths (as in `modules.dep`) to load, in load order.
    pub load: Vec<String>,
    /// Names asked for that are built into the kernel (nothing to load).
    pub builtin: Vec<String>,
}

/// The modules to load for `names`: built-in names (from `modules.builtin` lines, paths or
/// names) are set aside, the others resolved with [`ModDep::load_order`].
pub fn resolve(
    dep: &ModDep,
    builtin: &str,
    names: &[&str],
    release: &str,
) -> Result<Resolved, ModuleError> {
    let builtin_names: BTreeSet<String> = builtin
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(module_name)
        .collect();
    let (as_module, as_builtin): (Vec<&str>, Vec<&str>) = names
        .iter()
        .partition(|n| dep.path_of(n).is_some() || !builtin_names.contains(&normalize(n)));
    Ok(Resolved {
        load: dep.load_order(&as_module, release)?,
        builtin: as_builtin.iter().map(|n| (*n).to_string()).collect(),
    })
}

/// One module ready for an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// Module name (`virtio_blk`).
    pub name: String,
    /// Path under `lib/modules/<release>/`, plain `.ko` (`kernel/drivers/block/virtio_blk.ko`).
    pub path: String,
    /// The decompressed ELF module.
    pub data: Vec<u8>,
}

/// Modules of one kernel for an image: what to load, in order, and what is built in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelModules {
    /// `uname -r` of the kernel; the modules go under `/lib/modules/<release>/`.
    pub release: String,
    /// The modules, in load order (dependencies first).
    pub modules: Vec<Module>,
    /// Names asked for that the kernel has built in.
    pub builtin: Vec<String>,
    /// `modules.dep` for exactly these modules (plain `.ko` paths), for busybox `modprobe`.
    pub modules_dep: String,
    /// The kernel's `modules.builtin`, so that `modprobe` of a built-in name succeeds.
    pub modules_builtin: String,
}

impl KernelModules {
    /// Files to put under `/lib/modules/<release>/` (paths relative to it): the modules,
    /// then `modules.dep` and `modules.builtin`.
    pub fn files(&self) -> Vec<(String, &[u8])> {
        let mut out: Vec<(String, &[u8])> = self
            .modules
            .iter()
            .map(|m| (m.path.clone(), &m.data[..]))
            .collect();
        out.push(("modules.dep".into(), self.modules_dep.as_bytes()));
        out.push(("modules.builtin".into(), self.modules_builtin.as_bytes()));
        out
    }

    /// The lines [`Self::load_script`] prints when every module loads, in order: for
    /// scenario expectations.
    pub fn load_lines(&self, tag: &str) -> Vec<String> {
        self.builtin
            .iter()
            .map(|b| format!("{tag} module {b} is built in"))
            .chain(
                self.modules
                    .iter()
                    .map(|m| format!("{tag} loaded module {}", m.name)),
            )
            .collect()
    }

    /// Shell text that loads the modules in order with busybox `insmod`, printing
    /// `TAG loaded module NAME` for each one, `TAG module NAME is built in` for built-in
    /// names, and `TAG FAILED to load module NAME ...` (then carrying on) when one fails.
    pub fn load_script(&self, tag: &str) -> String {
        load_script(tag, &self.release, &self.modules, &self.builtin)
    }
}

/// See [`KernelModules::load_script`].
pub fn load_script(tag: &str, release: &str, modules: &[Module], builtin: &[String]) -> String {
    let mut s = format!(
        "# Kernel modules, dependencies first (xtask/src/guest/modules.rs).\n\
         xtask_insmod() {{\n\
         \tif /bin/busybox insmod \"/lib/modules/{release}/$2\"; then\n\
         \t\techo \"{tag} loaded module $1\"\n\
         \telse\n\
         \t\techo \"{tag} FAILED to load module $1 (insmod /lib/modules/{release}/$2 exited $?)\"\n\
         \tfi\n\
         }}\n"
    );
    for b in builtin {
        s.push_str(&format!("echo \"{tag} module {b} is built in\"\n"));
    }
    for m in modules {
        s.push_str(&format!("xtask_insmod {} {}\n", m.name, m.path));
    }
    s
}

/// The cached index of one kernel's modules.
struct ModuleIndex {
    release: String,
    /// Where `lib/modules/<release>/` is in the package's tar (`./lib/modules/R/`).
    prefix: String,
    dep: ModDep,
    builtin: String,
    package: PathBuf,
}

/// The modules `names` of the cached kernel of `series` with their dependencies, in load
/// order, decompressed; built-in names are listed apart. Downloads the kernel package
/// (through the private apt state) and indexes it on first use.
pub fn kernel_modules(
    images: &GuestImages,
    series: &str,
    names: &[&str],
) -> Result<KernelModules, String> {
    let k = images
        .kernel(series)
        .ok_or_else(|| ModuleError::NoSeries(series.into()).to_string())?;
    // The cache the kernel came from: `<cache>/linux-<series>/Image`.
    let cache = k
        .image
        .parent()
        .and_then(Path::parent)
        .map_or_else(cache_dir, Path::to_path_buf);
    modules_of(&cache, k, names).map_err(|e| e.to_string())
}

fn modules_of(cache: &Path, k: &GuestKernel, names: &[&str]) -> Result<KernelModules, ModuleError> {
    let index = ensure_index(cache, k)?;
    let resolved = resolve(&index.dep, &index.builtin, names, &index.release)?;
    let mut modules = Vec::new();
    if !resolved.load.is_empty() {
        // Scratch space outside the shared cache, so a killed run leaves nothing there.
        let tmp = scratch_dir("pick", k.series);
        let members: Vec<String> = resolved
            .load
            .iter()
            .map(|p| format!("{}{p}", index.prefix))
            .collect();
        extract_members(&index.package, &members, &tmp)?;
        for (member, path) in members.iter().zip(&resolved.load) {
            let file = tmp.join(member.trim_start_matches("./"));
            let data = decompress(path, read(&file)?)?;
            modules.push(Module {
                name: module_name(path),
                path: plain_path(path),
                data,
            });
        }
        remove_dir(&tmp)?;
    }
    let mut modules_dep = String::new();
    for path in &resolved.load {
        let i = index.dep.by_path[path];
        let deps: Vec<String> = index.dep.entries[i]
            .1
            .iter()
            .map(|d| plain_path(d))
            .collect();
        modules_dep.push_str(&format!("{}:", plain_path(path)));
        for d in deps {
            modules_dep.push(' ');
            modules_dep.push_str(&d);
        }
        modules_dep.push('\n');
    }
    Ok(KernelModules {
        release: index.release,
        modules,
        builtin: resolved.builtin,
        modules_dep,
        modules_builtin: index.builtin,
    })
}

/// A per-process scratch directory in the system's temporary directory.
fn scratch_dir(what: &str, series: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "xtask-modules-{what}-{series}-{}",
        std::process::id()
    ))
}

/// Moves a downloaded kernel package into the kernel's cache directory as `package.deb`
/// (and removes the directory it was downloaded into).
pub(super) fn keep_package(deb: &Path, kernel_dir: &Path) -> Result<PathBuf, GuestError> {
    let kept = kernel_dir.join("package.deb");
    rename(deb, &kept)?;
    if let Some(dir) = deb.parent() {
        remove_dir(dir)?;
    }
    Ok(kept)
}

/// The kernel's package in the cache, downloaded (the exact cached version) if missing.
fn ensure_package(cache: &Path, k: &GuestKernel) -> Result<PathBuf, GuestError> {
    let dir = cache.join(format!("linux-{}", k.series));
    let kept = dir.join("package.deb");
    if kept.is_file() {
        return Ok(kept);
    }
    let package = format!("linux-image-{}", k.release);
    eprintln!(
        "guest modules: downloading {package} {} for its modules",
        k.version
    );
    let apt = PrivateApt::new(&cache.join("apt"))?;
    let deb = match apt.download(&package, &k.version) {
        Ok(deb) => deb,
        // The package lists may be missing or stale: refresh them once.
        Err(_) => {
            apt.update()?;
            apt.download(&package, &k.version)?
        }
    };
    keep_package(&deb, &dir)
}

/// The index of the kernel's modules, built from its package on first use.
fn ensure_index(cache: &Path, k: &GuestKernel) -> Result<ModuleIndex, ModuleError> {
    let kernel_dir = cache.join(format!("linux-{}", k.series));
    let dir = kernel_dir.join("modules");
    let package = ensure_package(cache, k)?;
    let cached = |name: &str| fs::read_to_string(dir.join(name)).ok();
    if cached("release").is_some_and(|r| r.trim() == k.release) {
        if let (Some(prefix), Some(dep), Some(builtin)) = (
            cached("prefix"),
            cached("modules.dep"),
            cached("modules.builtin"),
        ) {
            return Ok(ModuleIndex {
                release: k.release.clone(),
                prefix: prefix.trim().to_string(),
                dep: ModDep::parse(&dep)?,
                builtin,
                package,
            });
        }
    }
    eprintln!(
        "guest modules: indexing the modules of {} (once)",
        k.release
    );
    let pid = std::process::id();
    let tmp = scratch_dir("index", k.series);
    let tree_pattern = format!("*lib/modules/{}/*", k.release);
    extract_members(&package, &["--wildcards".into(), tree_pattern], &tmp)?;
    let (root, prefix) = ["usr/lib", "lib"]
        .iter()
        .map(|lib| {
            (
                tmp.join(format!("{lib}/modules/{}", k.release)),
                format!("./{lib}/modules/{}/", k.release),
            )
        })
        .find(|(root, _)| root.join("modules.order").is_file())
        .ok_or_else(|| ModuleError::NoModuleTree {
            deb: package.clone(),
            release: k.release.clone(),
        })?;
    let mut files = Vec::new();
    walk(&root, &root, &mut files)?;
    files.sort();
    let order = fs::read_to_string(root.join("modules.order")).unwrap_or_default();
    let builtin = fs::read_to_string(root.join("modules.builtin")).unwrap_or_default();
    let index = build_index(&root, &files, &order)?;
    let out = kernel_dir.join(format!("modules.tmp{pid}"));
    if out.exists() {
        remove_dir(&out)?;
    }
    mkdir(&out)?;
    write(&out.join("modules.dep"), index.0.render().as_bytes())?;
    write(&out.join("modules.alias"), index.1.as_bytes())?;
    write(&out.join("modules.builtin"), builtin.as_bytes())?;
    write(&out.join("modules.order"), order.as_bytes())?;
    write(&out.join("prefix"), prefix.as_bytes())?;
    // `release` last: it marks the index complete.
    write(&out.join("release"), k.release.as_bytes())?;
    remove_dir(&tmp)?;
    let current =
        |d: &Path| fs::read_to_string(d.join("release")).is_ok_and(|r| r.trim() == k.release);
    if current(&dir) {
        // Another build indexed the same package meanwhile: keep its index.
        remove_dir(&out)?;
    } else {
        if dir.exists() {
            remove_dir(&dir)?;
        }
        rename(&out, &dir)?;
    }
    Ok(ModuleIndex {
        release: k.release.clone(),
        prefix,
        dep: index.0,
        builtin,
        package,
    })
}

/// Module files (`.ko`, `.ko.xz`, `.ko.zst`, `.ko.gz`) under `dir`, relative to `root`.
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), GuestError> {
    for e in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let e = e.map_err(io_err("list", dir))?;
        let p = e.path();
        let ty = e.file_type().map_err(io_err("stat", &p))?;
        if ty.is_dir() {
            walk(root, &p, out)?;
        } else if plain_path(&p.to_string_lossy()).ends_with(".ko") {
            if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    Ok(())
}

/// `modules.dep` and `modules.alias` from each module's `.modinfo`, modules in
/// `modules.order` order (then any others by path).
fn build_index(
    root: &Path,
    files: &[String],
    order: &str,
) -> Result<(ModDep, String), ModuleError> {
    let rank: HashMap<String, usize> = order
        .lines()
        .enumerate()
        .map(|(i, l)| (module_name(l.trim()), i))
        .collect();
    let mut files = files.to_vec();
    files.sort_by_key(|f| {
        (
            rank.get(&module_name(f)).copied().unwrap_or(usize::MAX),
            f.clone(),
        )
    });
    let mut direct = ModDep::default();
    let mut alias = String::new();
    for f in &files {
        let data = decompress(f, read(&root.join(f))?)?;
        let info = modinfo(&data).ok_or_else(|| ModuleError::NotElf { path: f.clone() })?;
        let name = module_name(f);
        let depends: Vec<String> = info
            .iter()
            .filter(|(k, _)| k == "depends")
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(normalize)
            .collect();
        for (_, a) in info.iter().filter(|(k, _)| k == "alias") {
            alias.push_str(&format!("alias {a} {name}\n"));
        }
        direct.push(f.clone(), depends);
    }
    // `depends=` holds names; modules.dep holds paths, transitively, the first to load last.
    let paths: HashMap<String, String> =
        files.iter().map(|f| (module_name(f), f.clone())).collect();
    for (path, deps) in &mut direct.entries {
        for d in deps.iter_mut() {
            *d = paths
                .get(d.as_str())
                .cloned()
                .ok_or_else(|| ModuleError::MissingDependency {
                    module: module_name(path),
                    dep: d.clone(),
                })?;
        }
    }
    let mut full = ModDep::default();
    for (path, _) in &direct.entries {
        let mut closure = direct.load_order(&[&module_name(path)], "")?;
        closure.pop();
        closure.reverse();
        full.push(path.clone(), closure);
    }
    Ok((full, alias))
}

/// The `key=value` strings of an ELF module's `.modinfo` section.
fn modinfo(elf: &[u8]) -> Option<Vec<(String, String)>> {
    use object::{Object, ObjectSection};
    let file = object::File::parse(elf).ok()?;
    let data = file.section_by_name(".modinfo")?.data().ok()?;
    Some(
        data.split(|b| *b == 0)
            .filter_map(|e| {
                let (k, v) = std::str::from_utf8(e).ok()?.split_once('=')?;
                Some((k.to_string(), v.to_string()))
            })
            .collect(),
    )
}

/// A module file's bytes, decompressed by its suffix (`.xz` with `xz`, `.zst` with `zstd`,
/// `.gz` in process); checked to be ELF.
pub fn decompress(path: &str, data: Vec<u8>) -> Result<Vec<u8>, ModuleError> {
    let out = if path.ends_with(".gz") {
        let mut out = Vec::new();
        GzDecoder::new(&data[..])
            .read_to_end(&mut out)
            .map_err(|e| ModuleError::Decompress {
                tool: "gzip",
                path: path.into(),
                stderr: e.to_string(),
            })?;
        out
    } else if path.ends_with(".xz") {
        pipe("xz", "xz-utils", path, data)?
    } else if path.ends_with(".zst") {
        pipe("zstd", "zstd", path, data)?
    } else {
        data
    };
    if out.starts_with(b"\x7fELF") {
        Ok(out)
    } else {
        Err(ModuleError::NotElf { path: path.into() })
    }
}

/// `tool -dc` with `data` on its standard input.
fn pipe(
    tool: &'static str,
    package: &'static str,
    path: &str,
    data: Vec<u8>,
) -> Result<Vec<u8>, ModuleError> {
    let mut child = Command::new(tool)
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ModuleError::ToolMissing {
            tool,
            package,
            path: path.into(),
            source,
        })?;
    let mut stdin = child.stdin.take();
    let writer = std::thread::spawn(move || {
        if let Some(s) = stdin.as_mut() {
            let _ = s.write_all(&data);
        }
    });
    let out = child
        .wait_with_output()
        .map_err(|source| ModuleError::ToolMissing {
            tool,
            package,
            path: path.into(),
            source,
        })?;
    let _ = writer.join();
    if !out.status.success() {
        return Err(ModuleError::Decompress {
            tool,
            path: path.into(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

/// `cargo xtask guest modules SERIES NAME...`: prints the load order (for a look before
/// building an image).
pub fn cmd_list(series: &str, names: &[&str]) -> Result<(), String> {
    if !KERNELS.iter().any(|k| k.series == series) {
        return Err(ModuleError::NoSeries(series.into()).to_string());
    }
    let images = super::ensure()?;
    let m = kernel_modules(&images, series, names)?;
    for b in &m.builtin {
        println!("{b}: built into {}", m.release);
    }
    for module in &m.modules {
        println!(
            "{} /lib/modules/{}/{} ({} bytes)",
            module.name,
            m.release,
            module.path,
            module.data.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A modules.dep in depmod's form, deps listed with the one to load first last.
    const DEP: &str = "\
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/scsi/scsi_common.ko:
kernel/drivers/scsi/scsi_mod.ko: kernel/drivers/scsi/scsi_common.ko
kernel/drivers/ata/libata.ko.xz: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/drivers/ata/libahci.ko.xz: kernel/drivers/ata/libata.ko.xz kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/drivers/ata/ahci.ko.xz: kernel/drivers/ata/libahci.ko.xz kernel/drivers/ata/libata.ko.xz kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/lib/crc-t10dif.ko:
kernel/drivers/scsi/sd_mod.ko: kernel/lib/crc-t10dif.ko kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
";

    fn names(paths: &[String]) -> Vec<String> {
        paths.iter().map(|p| module_name(p)).collect()
    }

    #[test]
    fn dependencies_load_first_each_once() {
        let dep = ModDep::parse(DEP).unwrap();
        let order = dep.load_order(&["virtio_blk", "virtio_pci"], "r").unwrap();
        assert_eq!(
            names(&order),
            [
                "virtio",
                "virtio_ring",
                "virtio_blk",
                "virtio_pci_modern_dev",
                "virtio_pci"
            ]
        );
        let order = dep.load_order(&["ahci", "sd_mod"], "r").unwrap();
        assert_eq!(
            names(&order),
            [
                "scsi_common",
                "scsi_mod",
                "libata",
                "libahci",
                "ahci",
                "crc_t10dif",
                "sd_mod"
            ]
        );
        assert_eq!(order[4], "kernel/drivers/ata/ahci.ko.xz");
    }

    #[test]
    fn order_holds_whatever_order_dependencies_are_listed_in() {
        // The same graph with every dependency list reversed (and only direct ones).
        let dep = ModDep::parse("a.ko:\nb.ko: a.ko\nc.ko: a.ko b.ko\nd.ko: b.ko c.ko\n").unwrap();
        assert_eq!(
            names(&dep.load_order(&["d"], "r").unwrap()),
            ["a", "b", "c", "d"]
        );
    }

    #[test]
    fn names_match_with_dash_or_underscore() {
        let dep = ModDep::parse(DEP).unwrap();
        assert_eq!(dep.path_of("crc-t10dif"), Some("kernel/lib/crc-t10dif.ko"));
        assert_eq!(dep.path_of("crc_t10dif"), Some("kernel/lib/crc-t10dif.ko"));
        assert_eq!(module_name("kernel/drivers/ata/ahci.ko.xz"), "ahci");
        assert_eq!(
            plain_path("kernel/drivers/ata/ahci.ko.xz"),
            "kernel/drivers/ata/ahci.ko"
        );
        assert_eq!(plain_path("kernel/x.ko"), "kernel/x.ko");
    }

    #[test]
    fn unknown_module_is_named_with_similar_ones() {
        let dep = ModDep::parse(DEP).unwrap();
        let err = dep
            .load_order(&["virtio_blkk"], "6.1.0-50-cloud-arm64")
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`virtio_blkk`"), "{text}");
        assert!(text.contains("6.1.0-50-cloud-arm64"), "{text}");
        assert!(text.contains("similar names: virtio, virtio_blk"), "{text}");
    }

    #[test]
    fn built_in_names_are_set_aside() {
        let dep = ModDep::parse(DEP).unwrap();
        let builtin = "kernel/drivers/nvme/host/nvme.ko\nkernel/drivers/virtio/virtio_mmio.ko\n";
        let r = resolve(&dep, builtin, &["nvme", "virtio_blk"], "r").unwrap();
        assert_eq!(r.builtin, ["nvme"]);
        assert_eq!(names(&r.load), ["virtio", "virtio_ring", "virtio_blk"]);
        assert!(matches!(
            resolve(&dep, builtin, &["nvmf"], "r"),
            Err(ModuleError::Unknown { .. })
        ));
    }

    #[test]
    fn broken_dep_files_are_reported() {
        assert!(matches!(
            ModDep::parse("a.ko\n"),
            Err(ModuleError::BadDepLine { line: 1, .. })
        ));
        let dep = ModDep::parse("a.ko: b.ko\n").unwrap();
        assert!(matches!(
            dep.load_order(&["a"], "r"),
            Err(ModuleError::MissingDependency { .. })
        ));
        let dep = ModDep::parse("a.ko: b.ko\nb.ko: a.ko\n").unwrap();
        let err = dep.load_order(&["a"], "r").unwrap_err().to_string();
        assert!(err.contains("a -> b -> a"), "{err}");
    }

    #[test]
    fn render_round_trips() {
        let dep = ModDep::parse(DEP).unwrap();
        assert_eq!(dep.render(), DEP);
        assert_eq!(ModDep::parse(&dep.render()).unwrap(), dep);
    }

    #[test]
    fn load_script_loads_in_order_and_reports_each_module() {
        let m = |name: &str, path: &str| Module {
            name: name.into(),
            path: path.into(),
            data: Vec::new(),
        };
        let s = load_script(
            "[initramfs]",
            "6.1.0-50-cloud-arm64",
            &[
                m("virtio", "kernel/drivers/virtio/virtio.ko"),
                m("virtio_blk", "kernel/drivers/block/virtio_blk.ko"),
            ],
            &["virtio_pci".into()],
        );
        assert!(
            s.contains("if /bin/busybox insmod \"/lib/modules/6.1.0-50-cloud-arm64/$2\"; then\n")
        );
        assert!(s.contains("echo \"[initramfs] loaded module $1\"\n"));
        assert!(s.contains(
            "echo \"[initramfs] FAILED to load module $1 (insmod /lib/modules/6.1.0-50-cloud-arm64/$2 exited $?)\"\n"
        ));
        assert!(s.contains("echo \"[initramfs] module virtio_pci is built in\"\n"));
        let a = s
            .find("xtask_insmod virtio kernel/drivers/virtio/virtio.ko\n")
            .unwrap();
        let b = s
            .find("xtask_insmod virtio_blk kernel/drivers/block/virtio_blk.ko\n")
            .unwrap();
        assert!(a < b);
    }

    #[test]
    fn load_lines_are_what_the_script_prints() {
        let k = KernelModules {
            release: "r".into(),
            modules: vec![Module {
                name: "libata".into(),
                path: "kernel/drivers/ata/libata.ko".into(),
                data: Vec::new(),
            }],
            builtin: vec!["virtio_pci".into()],
            modules_dep: String::new(),
            modules_builtin: String::new(),
        };
        assert_eq!(
            k.load_lines("[x]"),
            [
                "[x] module virtio_pci is built in",
                "[x] loaded module libata"
            ]
        );
        let script = k.load_script("[x]");
        assert!(script.contains("echo \"[x] module virtio_pci is built in\""));
        assert!(script.contains("echo \"[x] loaded module $1\""));
        assert!(script.contains("xtask_insmod libata kernel/drivers/ata/libata.ko\n"));
    }

    #[test]
    fn decompress_checks_for_elf_and_unpacks_gzip() {
        use flate2::write::GzEncoder;
        let elf = b"\x7fELF\x02\x01\x01rest".to_vec();
        assert_eq!(decompress("x.ko", elf.clone()).unwrap(), elf);
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&elf).unwrap();
        assert_eq!(decompress("x.ko.gz", gz.finish().unwrap()).unwrap(), elf);
        assert!(matches!(
            decompress("x.ko", b"MZ".to_vec()),
            Err(ModuleError::NotElf { .. })
        ));
    }
}
