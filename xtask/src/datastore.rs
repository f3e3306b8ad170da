//! `cargo xtask datastore create`: the install step. Writes a raw disk image with a GPT
//! whose partition `hv-datastore` holds a FAT file system laid out as
//! `docs/management.md` says ("The datastore partition"): `VMS/` (the VM files, their image
//! paths rewritten to `IMAGES/...`), `IMAGES/`, and `HV/` with the host settings, the
//! administrator password's Argon2id hash, an install CA and the host certificate signed
//! by it, and a random seed. No root: the GPT is written by [`crate::disk`], the FAT by
//! the `fatfs` crate through a window on the image file.
//!
//! ```text
//! cargo xtask datastore create OUT.img SIZE --password-file F [--vm FILE.toml]...
//!     [--image SRC=DEST]... [--host-config F] [--san NAME]...
//!     [--extra-partition LABEL:SIZE[:FILE]]...
//! ```

use crate::disk::{self, PartSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The GPT label of the datastore partition.
pub const LABEL: &str = "hv-datastore";

/// `HV/HOST.TOM` when no `--host-config` is given.
pub const DEFAULT_HOST_CONFIG: &str = "[mgmt]\naddress = \"dhcp\"\nport = 443\n";

/// Argon2id cost of the administrator password: 8 MiB, 2 passes, 1 lane. The hypervisor
/// verifies it at each login, under QEMU's emulation too, so it stays moderate.
pub const ARGON2_M_KIB: u32 = 8192;
/// Argon2id passes.
pub const ARGON2_T: u32 = 2;
/// Argon2id lanes.
pub const ARGON2_P: u32 = 1;

/// Names the host certificate always carries (QEMU's user network gives the guest
/// 10.0.2.15; clients on the host reach it through a forwarded localhost port).
pub const DEFAULT_SANS: [&str; 3] = ["localhost", "127.0.0.1", "10.0.2.15"];

/// What to put on the disk.
#[derive(Clone, Debug, Default)]
pub struct Spec {
    /// The image file to write.
    pub out: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// VM files to copy to `VMS/`, with their images to `IMAGES/`.
    pub vms: Vec<PathBuf>,
    /// Files to copy as they are: source and datastore path (`IMAGES/x.bin`).
    pub images: Vec<(PathBuf, String)>,
    /// The administrator password (not empty).
    pub password: String,
    /// `HV/HOST.TOM`'s source; [`DEFAULT_HOST_CONFIG`] if none.
    pub host_config: Option<PathBuf>,
    /// Names added to the host certificate beside [`DEFAULT_SANS`].
    pub sans: Vec<String>,
    /// Partitions after the datastore.
    pub extra: Vec<PartSpec>,
}

/// What [`create`] made.
#[derive(Clone, Debug)]
pub struct Created {
    /// The CA certificate (DER) clients trust: `OUT.ca.der`.
    pub ca: PathBuf,
    /// The datastore partition's first sector and length in 512-byte sectors.
    pub datastore: (u64, u64),
}

const MIB: u64 = 1 << 20;

/// Writes the disk image `spec` describes.
pub fn create(spec: &Spec) -> Result<Created, String> {
    if spec.password.is_empty() {
        return Err(
            "the administrator password is empty: there is no default password, \
                    put one in the --password-file"
                .into(),
        );
    }
    let host_config = match &spec.host_config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            text.parse::<toml::Table>()
                .map_err(|e| format!("{} is not valid TOML: {e}", p.display()))?;
            text
        }
        None => DEFAULT_HOST_CONFIG.to_string(),
    };
    // The datastore takes what the other partitions and the GPT leave (1 MiB alignment
    // before each partition, the backup GPT at the end).
    let others: u64 = spec.extra.iter().map(|p| p.bytes.div_ceil(MIB) * MIB).sum();
    let ds_bytes = spec
        .size
        .checked_sub(2 * MIB + others)
        .filter(|b| *b >= 8 * MIB)
        .ok_or_else(|| {
            format!(
                "a disk of {} bytes leaves less than 8 MiB for the datastore (2 MiB go to \
                 the GPT and alignment, {others} to the other partitions)",
                spec.size
            )
        })?
        / MIB
        * MIB;
    let mut parts = vec![PartSpec {
        label: LABEL.into(),
        bytes: ds_bytes,
        fill: None,
    }];
    parts.extend(spec.extra.iter().cloned());
    let at = disk::create(&spec.out, spec.size, &parts)?;
    let (start, sectors) = at[0];

    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&spec.out)
        .map_err(|e| format!("cannot open {}: {e}", spec.out.display()))?;
    let window = Window::new(file, start * 512, sectors * 512);
    let io_err = |what: &str, e: io::Error| format!("{}: {what}: {e}", spec.out.display());
    let fat_type = if ds_bytes >= 64 * MIB {
        fatfs::FatType::Fat32
    } else {
        fatfs::FatType::Fat16
    };
    fatfs::format_volume(
        window.clone_handle().map_err(|e| io_err("format", e))?,
        fatfs::FormatVolumeOptions::new()
            .fat_type(fat_type)
            .volume_label(*b"HVDATASTORE"),
    )
    .map_err(|e| io_err("format the datastore", e))?;
    // Directories first, with `mgmt::store` (see Cargo.toml for why not fatfs).
    let mut dirs = vec!["HV".to_string(), "VMS".into(), "IMAGES".into()];
    for (_, dest) in &spec.images {
        let comps: Vec<&str> = dest.split('/').filter(|c| !c.is_empty()).collect();
        for n in 1..comps.len() {
            dirs.push(comps[..n].join("/"));
        }
    }
    let mut store = mgmt::store::Store::open(WindowBlocks(
        window.clone_handle().map_err(|e| io_err("open", e))?,
    ))
    .map_err(|e| format!("{}: {e}", spec.out.display()))?;
    store.set_time(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    for d in &dirs {
        store
            .create_dir(d)
            .map_err(|e| format!("datastore directory {d}: {e}"))?;
    }
    store
        .close()
        .map_err(|e| format!("{}: {e}", spec.out.display()))?;
    let fs = fatfs::FileSystem::new(window, fatfs::FsOptions::new())
        .map_err(|e| io_err("mount the datastore", e))?;
    let ca = {
        let root = fs.root_dir();
        let put = |path: &str, bytes: &[u8]| -> Result<(), String> {
            let mut f = create_file(&root, path)?;
            f.write_all(bytes).map_err(|e| format!("{path}: {e}"))
        };
        let mut images = Images::default();
        for vm in &spec.vms {
            let (name, text) = images.vm_file(vm)?;
            if root.open_file(&format!("VMS/{name}")).is_ok() {
                return Err(format!(
                    "two VM files are named {name}: rename one (the datastore keeps file names)"
                ));
            }
            put(&format!("VMS/{name}"), text.as_bytes())?;
        }
        let mut written = BTreeSet::new();
        for (src, dest) in images.copies.values().chain(&spec.images) {
            if !written.insert(dest.trim_start_matches('/').to_lowercase()) {
                return Err(format!(
                    "two files would be written to {dest}: give each --image its own DEST"
                ));
            }
            copy_in(&root, src, dest)?;
        }
        put("HV/HOST.TOM", host_config.as_bytes())?;
        put("HV/ADMIN.PWD", hash_password(&spec.password)?.as_bytes())?;
        let mut sans: Vec<String> = DEFAULT_SANS.iter().map(|s| s.to_string()).collect();
        sans.extend(spec.sans.iter().cloned());
        let pki = make_pki(sans)?;
        put("HV/CA.DER", &pki.ca)?;
        put("HV/CERT.DER", &pki.cert)?;
        put("HV/KEY.DER", &pki.key)?;
        let mut seed = [0u8; 64];
        getrandom::getrandom(&mut seed).map_err(|e| format!("no OS randomness: {e}"))?;
        put("HV/SEED.BIN", &seed)?;
        pki.ca
    };
    fs.unmount().map_err(|e| io_err("write the datastore", e))?;
    let mut ca_path = spec.out.clone().into_os_string();
    ca_path.push(".ca.der");
    let ca_path = PathBuf::from(ca_path);
    std::fs::write(&ca_path, ca).map_err(|e| format!("cannot write {}: {e}", ca_path.display()))?;
    Ok(Created {
        ca: ca_path,
        datastore: (start, sectors),
    })
}

type Dir<'a> = fatfs::Dir<'a, Window>;

/// Creates (or truncates) `path` in `root` (its directories exist).
fn create_file<'a>(root: &Dir<'a>, path: &str) -> Result<fatfs::File<'a, Window>, String> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let Some((name, dirs)) = comps.split_last() else {
        return Err(format!("`{path}` names no file"));
    };
    if comps.iter().any(|c| *c == "." || *c == "..") {
        return Err(format!(
            "`{path}`: `.` and `..` are not allowed in a datastore path"
        ));
    }
    let mut dir = root.clone();
    for d in dirs {
        dir = dir.open_dir(d).map_err(|e| format!("{path}: {e}"))?;
    }
    let mut f = dir.create_file(name).map_err(|e| format!("{path}: {e}"))?;
    f.truncate().map_err(|e| format!("{path}: {e}"))?;
    Ok(f)
}

/// Copies the host file `src` to the datastore path `dest`, streaming.
fn copy_in(root: &Dir<'_>, src: &Path, dest: &str) -> Result<(), String> {
    let mut from = File::open(src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
    let mut to = create_file(root, dest)?;
    io::copy(&mut from, &mut to)
        .map(|_| ())
        .map_err(|e| format!("{} -> {dest}: {e}", src.display()))
}

/// The images the VM files name: each source once, under a name unique in `IMAGES/`
/// (the datastore's root, or `HV/` on an ESP: `crate::uefi`).
#[derive(Default)]
pub(crate) struct Images {
    /// By canonical source path: the source and its path in the store.
    pub(crate) copies: BTreeMap<PathBuf, (PathBuf, String)>,
    /// Datastore names taken (lower case: FAT compares names without case).
    taken: BTreeSet<String>,
}

impl Images {
    /// Reads the VM file `path`, points its `kernel`, `initrd` and `dtb` at `IMAGES/...`
    /// and notes the files to copy. Returns its file name and new text.
    fn vm_file(&mut self, path: &Path) -> Result<(String, String), String> {
        let table = self.rewrite(path)?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{}: no file name", path.display()))?
            .to_string();
        let body = toml::to_string(&table).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok((
            name,
            format!(
                "# Written by `cargo xtask datastore create` from {}; image paths are\n\
                 # relative to the datastore root.\n\n{body}",
                path.display()
            ),
        ))
    }

    /// Reads the VM file `path` and returns its table with `kernel`, `initrd` and `dtb`
    /// pointed at `IMAGES/...`, the files noted for copying.
    pub(crate) fn rewrite(&mut self, path: &Path) -> Result<toml::Table, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut table: toml::Table = text
            .parse()
            .map_err(|e| format!("{} is not valid TOML: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let vms = table
            .get_mut("vm")
            .and_then(toml::Value::as_array_mut)
            .ok_or_else(|| format!("{}: no [[vm]] table", path.display()))?;
        for vm in vms.iter_mut() {
            let Some(vm) = vm.as_table_mut() else {
                return Err(format!("{}: `vm` must be [[vm]] tables", path.display()));
            };
            for key in ["kernel", "initrd", "dtb"] {
                let Some(v) = vm.get_mut(key) else { continue };
                let Some(rel) = v.as_str() else {
                    return Err(format!("{}: `{key}` must be a path", path.display()));
                };
                let dest = self.add(&base.join(rel))?;
                *v = toml::Value::String(dest);
            }
        }
        Ok(table)
    }

    /// Notes `src` for copying and returns its datastore path.
    fn add(&mut self, src: &Path) -> Result<String, String> {
        let canon = src
            .canonicalize()
            .map_err(|e| format!("image {}: {e}", src.display()))?;
        if let Some((_, dest)) = self.copies.get(&canon) {
            return Ok(dest.clone());
        }
        let file = canon
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("image {}: no usable file name", src.display()))?;
        let parent = canon
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .unwrap_or("image");
        let candidates = std::iter::once(file.to_string())
            .chain(std::iter::once(format!("{parent}-{file}")))
            .chain((2..).map(|n| format!("{n}-{file}")));
        for name in candidates {
            if self.taken.insert(name.to_lowercase()) {
                let dest = format!("IMAGES/{name}");
                self.copies
                    .insert(canon.clone(), (canon.clone(), dest.clone()));
                return Ok(dest);
            }
        }
        Err(format!("image {}: no free name", src.display()))
    }
}

/// The Argon2id PHC string of `password` ([`ARGON2_M_KIB`], [`ARGON2_T`], [`ARGON2_P`]).
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None)
        .map_err(|e| format!("argon2 parameters: {e}"))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| format!("no OS randomness: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| format!("salt: {e}"))?;
    argon
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// The install CA, the host certificate it signs and the host key, all DER.
struct Pki {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

/// An ECDSA P-256 CA "hypervisor install CA" and a host certificate for `sans` signed by
/// it (server authentication), with a PKCS#8 key.
fn make_pki(sans: Vec<String>) -> Result<Pki, String> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    fn e(what: &str) -> impl Fn(rcgen::Error) -> String + '_ {
        move |err| format!("{what}: {err}")
    }
    let ca_key = KeyPair::generate().map_err(e("CA key"))?;
    let mut ca = CertificateParams::new(Vec::new()).map_err(e("CA"))?;
    ca.distinguished_name
        .push(DnType::CommonName, "hypervisor install CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = rcgen::date_time_ymd(2024, 1, 1);
    ca.not_after = rcgen::date_time_ymd(2050, 1, 1);
    let ca_cert = ca.self_signed(&ca_key).map_err(e("CA certificate"))?;

    let host_key = KeyPair::generate().map_err(e("host key"))?;
    let mut host = CertificateParams::new(sans.clone())
        .map_err(|err| format!("host certificate names {sans:?}: {err}"))?;
    host.distinguished_name
        .push(DnType::CommonName, "hypervisor");
    host.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    host.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    host.use_authority_key_identifier_extension = true;
    host.not_before = rcgen::date_time_ymd(2024, 1, 1);
    host.not_after = rcgen::date_time_ymd(2050, 1, 1);
    let issuer = Issuer::new(ca, ca_key);
    let host_cert = host
        .signed_by(&host_key, &issuer)
        .map_err(e("host certificate"))?;
    Ok(Pki {
        ca: ca_cert.der().to_vec(),
        cert: host_cert.der().to_vec(),
        key: host_key.serialize_der(),
    })
}

/// The datastore partition as `mgmt::store` reads it: 512-byte blocks of a [`Window`].
pub struct WindowBlocks(pub Window);

impl mgmt::store::Blocks for WindowBlocks {
    type Error = io::Error;
    fn blocks(&self) -> u64 {
        self.0.len / 512
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        self.0.seek(SeekFrom::Start(lba * 512))?;
        self.0.read_exact(buf)
    }
    fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), Self::Error> {
        self.0.seek(SeekFrom::Start(lba * 512))?;
        self.0.write_all(data)
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        self.0.file.sync_data()
    }
}

/// A byte range of the image file (the datastore partition) as a seekable stream for
/// `fatfs`.
pub struct Window {
    file: File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Window {
    /// `len` bytes of `file` from `start`.
    pub fn new(file: File, start: u64, len: u64) -> Self {
        Self {
            file,
            start,
            len,
            pos: 0,
        }
    }

    fn clone_handle(&self) -> io::Result<Self> {
        Ok(Self {
            file: self.file.try_clone()?,
            start: self.start,
            len: self.len,
            pos: 0,
        })
    }
}

impl Read for Window {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.len.saturating_sub(self.pos)).min(buf.len() as u64) as usize;
        let n = self.file.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for Window {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (self.len.saturating_sub(self.pos)).min(buf.len() as u64) as usize;
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "past the end of the datastore partition",
            ));
        }
        let n = self.file.write_at(&buf[..n], self.start + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for Window {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        self.pos = pos;
        Ok(pos)
    }
}

/// `cargo xtask datastore ...`.
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// A disk image with the hv-datastore FAT partition: VM files, images, host config, the
    /// admin password hash and the install CA (docs/management.md)
    Create(CreateArgs),
}

/// `cargo xtask datastore create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The disk image to write
    #[arg(value_name = "OUT.img")]
    out: PathBuf,
    /// Its size (e.g. 512M)
    size: String,
    /// A file holding the administrator password (a trailing newline is dropped)
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// VM files to put on the datastore (repeat, or comma-separate)
    #[arg(
        long = "vm",
        visible_alias = "vms",
        value_name = "FILE.toml",
        value_delimiter = ','
    )]
    vms: Vec<String>,
    /// An extra file: SRC on the host, DEST on the datastore (repeatable)
    #[arg(long = "image", value_name = "SRC=DEST")]
    images: Vec<String>,
    /// The host configuration file
    #[arg(long, value_name = "FILE")]
    host_config: Option<PathBuf>,
    /// Extra subject alternative names of the host certificate (repeatable)
    #[arg(long = "san", value_name = "NAME")]
    sans: Vec<String>,
    /// A partition besides the datastore (repeatable)
    #[arg(long = "extra-partition", value_name = "LABEL:SIZE[:FILE]")]
    extra: Vec<String>,
}

/// `cargo xtask datastore create ...`.
pub fn cmd(cmd: Cmd) -> Result<(), String> {
    let Cmd::Create(args) = cmd;
    let mut spec = Spec {
        vms: args
            .vms
            .iter()
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .collect(),
        ..Spec::default()
    };
    for v in &args.images {
        let (src, dest) = v
            .split_once('=')
            .ok_or_else(|| format!("--image {v}: want SRC=DEST"))?;
        spec.images.push((PathBuf::from(src), dest.to_string()));
    }
    spec.host_config = args.host_config;
    spec.sans = args.sans;
    for v in &args.extra {
        let mut p = v.splitn(3, ':');
        let label = p.next().unwrap_or_default().to_string();
        let bytes = disk::parse_size(
            p.next()
                .ok_or_else(|| format!("--extra-partition {v}: want LABEL:SIZE[:FILE]"))?,
        )?;
        if label.is_empty() || label == LABEL {
            return Err(format!(
                "--extra-partition {v}: needs a label other than {LABEL}"
            ));
        }
        spec.extra.push(PartSpec {
            label,
            bytes,
            fill: p.next().map(PathBuf::from),
        });
    }
    spec.out = args.out;
    spec.size = disk::parse_size(&args.size)?;
    let password_file = args.password_file.ok_or(
        "give the administrator password with --password-file FILE (a file holding it; a \
         trailing newline is dropped): there is no default password",
    )?;
    spec.password = read_password(&password_file)?;
    let made = create(&spec)?;
    println!(
        "{}: {LABEL} at sectors {}..{}; clients trust {}",
        spec.out.display(),
        made.datastore.0,
        made.datastore.0 + made.datastore.1,
        made.ca.display()
    );
    Ok(())
}

/// The password in `path`, without one trailing newline (`\n` or `\r\n`).
fn read_password(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the password file {}: {e}", path.display()))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    Ok(text.to_string())
}

#[cfg(test)]
mod tests;
