//! The VM TOML (`[[vm]]` tables) to validated VMs: one set of rules for the build-time VM
//! file (`platform_dsl::vmconfig`) and for VMs defined while the host runs (the
//! hypervisor's `config::define`, fed by `POST /api/vms`).
//!
//! ```toml
//! [[vm]]
//! name = "linux"
//! vcpus = 2
//! memory_mib = 256
//! kernel = "guests/Image"          # a path; what it is relative to is the caller's business
//! initrd = "guests/initrd.cpio.gz" # optional
//! dtb = "guests/custom.dtb"        # optional; otherwise the core generates one
//! cmdline = "console=ttyAMA0"
//! devices = [{ passthrough = "uart1" }]
//! autostart = true                 # optional, default false
//! numa-node = 1                    # optional: vCPUs and RAM on this NUMA node
//! numa = "spread"                  # optional: "local" (default) or "spread" over the nodes
//!
//! [[vm.disk]]                      # a virtual disk (any number)
//! partition = "linux-root"         # GPT partition label in the machine's datastore
//! controller = "nvme"              # nvme | virtio-blk | ahci
//! read-only = false                # optional, default false
//! size-mib = 512                   # optional: the partition must be at least this big
//!
//! [[vm.nic]]                       # a virtio-net NIC on the virtual switch (any number)
//! mac = "52:54:00:12:34:56"        # optional; default: generated from the VM's name
//! port-group = "lan"               # optional; default: the board's first group
//!
//! [console]                        # optional, the host's: only in a file of VMs the host
//! escape = "ctrl-b"                # boots with; the console switch key (default "ctrl-]")
//! ```
//!
//! no_std + alloc, no file system: images stay path strings. Rules that need the board are
//! expressed over [`BoardFacts`]. Every error carries, where it belongs to a key or a table,
//! its [`Location`] (byte span, 1-based line and column) in the TOML text.
#![no_std]

extern crate alloc;

mod board;
mod error;

pub use board::{
    check_board, check_numa, covering_pages, page_neighbour, BoardFacts, DeviceUse, PAGE,
};
pub use error::{ConfigError, ErrorKind, Location};

use alloc::borrow::ToOwned;
use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// Largest vCPU count a VM may have.
///
/// The guest-physical map (`hypervisor::vm::layout`) has room for 123 GICv3
/// redistributor frames; 64 keeps a margin and matches the scheduler's CPU masks.
pub const MAX_VCPUS: u32 = 64;

/// Guest RAM and staged images are placed in 2 MiB blocks (one stage-2 block entry).
pub const BLOCK: u64 = 2 * MIB;

/// One MiB.
pub const MIB: u64 = 1024 * 1024;

/// Longest GPT partition name: 36 UTF-16 code units.
pub const MAX_PARTITION_LABEL: usize = 36;

/// Which image of a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageKind {
    /// The kernel (`kernel`).
    Kernel,
    /// The initial ramdisk (`initrd`).
    Initrd,
    /// A device tree to use instead of the generated one (`dtb`).
    Dtb,
}

impl fmt::Display for ImageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImageKind::Kernel => "kernel",
            ImageKind::Initrd => "initrd",
            ImageKind::Dtb => "dtb",
        })
    }
}

/// A device given to a VM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum VmDevice {
    /// Pass the board device of this name through.
    Passthrough(String),
}

/// The controller a virtual disk is attached to, as the guest sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiskController {
    /// An NVMe controller on the VM's PCIe bus (Linux: built into the cloud kernels).
    Nvme,
    /// A virtio-blk device over virtio-pci.
    VirtioBlk,
    /// An AHCI (SATA) controller with the disk on port 0.
    Ahci,
}

impl DiskController {
    /// The name written in the VM file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Nvme => "nvme",
            Self::VirtioBlk => "virtio-blk",
            Self::Ahci => "ahci",
        }
    }
}

/// The `numa` key: how a VM's vCPUs and RAM sit on the board's NUMA nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NumaMode {
    /// Every vCPU on one node, its RAM from that node (the default).
    Local,
    /// vCPUs spread over the nodes, RAM from each node for its vCPUs there, and a virtual
    /// NUMA topology in the VM's device tree.
    Spread,
}

/// Where a VM's vCPUs and RAM go, from `numa-node` and `numa`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NumaPolicy {
    /// One node, the hypervisor's pick (the least loaded).
    #[default]
    Local,
    /// This node (`numa-node = N`).
    Node(u32),
    /// Over every node (`numa = "spread"`).
    Spread,
}

/// A virtual disk of a VM: a GPT partition of one of the machine's disks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct VmDisk {
    /// GPT partition label in the datastore.
    pub partition: String,
    /// The controller the guest sees.
    pub controller: DiskController,
    /// Writes are refused (the guest sees a read-only disk).
    #[serde(default)]
    pub read_only: bool,
    /// Size the guest sees, in MiB; the partition must be at least this big.
    #[serde(default)]
    pub size_mib: Option<u64>,
}

/// A virtio-net NIC of a VM, on the hypervisor's virtual switch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct VmNic {
    /// Its MAC address (`aa:bb:cc:dd:ee:ff`, lower case once validated); `None`: the
    /// hypervisor generates a stable one from the VM's name and the NIC's position.
    #[serde(default)]
    pub mac: Option<String>,
    /// The board port group it joins; `None`: the board's first.
    #[serde(default)]
    pub port_group: Option<String>,
}

/// Parses a unicast MAC address `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Result<[u8; 6], &'static str> {
    let mut out = [0u8; 6];
    let mut parts = text.split(':');
    for b in out.iter_mut() {
        let p = parts.next().ok_or("it has fewer than six parts")?;
        if p.len() != 2 {
            return Err("each part must be two hex digits");
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| "each part must be two hex digits")?;
    }
    if parts.next().is_some() {
        return Err("it has more than six parts");
    }
    if out[0] & 1 != 0 {
        return Err("it is a multicast address (odd first byte)");
    }
    if out == [0; 6] {
        return Err("it is all zeros");
    }
    Ok(out)
}

/// Where a disk's keys are in the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSpans {
    /// `partition = ...`.
    pub partition: Location,
    /// `size-mib = ...`, if written.
    pub size_mib: Option<Location>,
}

/// Where a NIC's keys are in the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NicSpans {
    /// The NIC's table.
    pub table: Location,
    /// `mac = ...`, if written.
    pub mac: Option<Location>,
    /// `port-group = ...`, if written.
    pub port_group: Option<Location>,
}

/// Where a VM's keys are in the text, for errors found after parsing (board checks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmSpans {
    /// The `[[vm]]` table.
    pub table: Location,
    /// `name = ...`.
    pub name: Location,
    /// `vcpus = ...`.
    pub vcpus: Location,
    /// `memory_mib = ...`.
    pub memory_mib: Location,
    /// `kernel = ...`.
    pub kernel: Location,
    /// `initrd = ...`, if written.
    pub initrd: Option<Location>,
    /// `dtb = ...`, if written.
    pub dtb: Option<Location>,
    /// Each entry of `devices`, in order.
    pub devices: Vec<Location>,
    /// Each `[[vm.disk]]`, in order.
    pub disks: Vec<DiskSpans>,
    /// Each `[[vm.nic]]`, in order.
    pub nics: Vec<NicSpans>,
    /// `numa-node = ...`, if written.
    pub numa_node: Option<Location>,
}

/// One validated VM, images as the path strings written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmSpec {
    /// Name, not empty.
    pub name: String,
    /// vCPUs, 1..=[`MAX_VCPUS`].
    pub vcpus: u32,
    /// Guest RAM in MiB, a multiple of 2.
    pub memory_mib: u64,
    /// Guest RAM in bytes (`memory_mib` MiB; fits a `u64`).
    pub memory_bytes: u64,
    /// Kernel image path, not empty.
    pub kernel: String,
    /// Initial ramdisk path.
    pub initrd: Option<String>,
    /// Path of a DTB replacing the generated one.
    pub dtb: Option<String>,
    /// Kernel command line.
    pub cmdline: String,
    /// Extra devices.
    pub devices: Vec<VmDevice>,
    /// Virtual disks (labels checked, sizes non-zero).
    pub disks: Vec<VmDisk>,
    /// Virtual NICs (MACs checked and lower case).
    pub nics: Vec<VmNic>,
    /// Start when the host boots, for VMs on the datastore.
    pub autostart: bool,
    /// NUMA placement.
    pub numa: NumaPolicy,
    /// Where each key was written.
    pub spans: VmSpans,
}

impl VmSpec {
    /// The VM's images in staging order (kernel, initrd, dtb): kind, path, location.
    pub fn images(&self) -> impl Iterator<Item = (ImageKind, &str, &Location)> {
        [
            Some((ImageKind::Kernel, self.kernel.as_str(), &self.spans.kernel)),
            self.initrd
                .as_deref()
                .zip(self.spans.initrd.as_ref())
                .map(|(p, l)| (ImageKind::Initrd, p, l)),
            self.dtb
                .as_deref()
                .zip(self.spans.dtb.as_ref())
                .map(|(p, l)| (ImageKind::Dtb, p, l)),
        ]
        .into_iter()
        .flatten()
    }

    /// Checks the VM against the board (passthrough devices, port groups).
    pub fn check_board(&self, board: &dyn BoardFacts) -> Result<(), ConfigError> {
        check_board(
            board,
            &self.name,
            &self.devices,
            &self.nics,
            Some(&self.spans),
        )?;
        check_numa(board, &self.name, self.numa, Some(&self.spans))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    /// `None`: no `vm` key at all; `Some(empty)`: `vm = []`, said on purpose.
    #[serde(default)]
    vm: Option<Vec<Spanned<RawVm>>>,
    /// The host's console settings (`[console]`).
    #[serde(default)]
    console: Option<Spanned<RawConsole>>,
}

/// `[console]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsole {
    #[serde(default)]
    escape: Option<Spanned<String>>,
}

/// The console switch key when the VM file names none: `Ctrl-]` (0x1d), as telnet and
/// QEMU's own monitor-less consoles use it.
pub const DEFAULT_ESCAPE: u8 = 0x1d;

/// A console switch key as written in `[console] escape` (`"ctrl-b"`, `"ctrl-]"`, any
/// case) to the byte a terminal sends for it. Keys that terminals and line editors need
/// are refused: Ctrl-H (backspace), Ctrl-I (Tab), Ctrl-J and Ctrl-M (Enter), Ctrl-[ (Esc,
/// which starts every arrow key), Ctrl-@ (NUL).
pub fn escape_key(written: &str) -> Option<u8> {
    let lower = written.trim().to_ascii_lowercase();
    let key = lower
        .strip_prefix("ctrl-")
        .or_else(|| lower.strip_prefix('^'))?;
    let &[c] = key.as_bytes() else {
        return None;
    };
    let byte = match c {
        b'a'..=b'z' => c - b'a' + 1,
        b'\\' | b']' | b'^' | b'_' => c - 0x40,
        _ => return None,
    };
    (![0x08, 0x09, 0x0a, 0x0d].contains(&byte)).then_some(byte)
}

/// How the console names a switch key: `Ctrl-B`, `Ctrl-]`.
pub fn escape_key_name(byte: u8) -> impl fmt::Display {
    struct Name(u8);
    impl fmt::Display for Name {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self.0 {
                b @ 0x01..=0x1f => write!(f, "Ctrl-{}", char::from(b + 0x40)),
                b => write!(f, "0x{b:02x}"),
            }
        }
    }
    Name(byte)
}

/// The host's settings a VM file may carry besides its VMs (`[console]`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostSettings {
    /// `[console] escape`, as a byte ([`escape_key`]); `None`: not written.
    pub console_escape: Option<u8>,
}

/// The host settings of a VM file (its `[console]` table). The file's VMs are not
/// validated here; [`parse_vms`] does that.
pub fn parse_host_settings(text: &str) -> Result<HostSettings, ConfigError> {
    let raw = raw_file(text)?;
    let Some(console) = raw.console else {
        return Ok(HostSettings::default());
    };
    let Some(escape) = console.into_inner().escape else {
        return Ok(HostSettings::default());
    };
    match escape_key(escape.get_ref()) {
        Some(byte) => Ok(HostSettings {
            console_escape: Some(byte),
        }),
        None => Err(ConfigError::new(
            ErrorKind::BadEscapeKey {
                written: escape.get_ref().clone(),
            },
            Some(Location::of(text, escape.span())),
        )),
    }
}

/// A `[[vm]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVm {
    name: Spanned<String>,
    vcpus: Spanned<u32>,
    memory_mib: Spanned<u64>,
    kernel: Spanned<String>,
    initrd: Option<Spanned<String>>,
    dtb: Option<Spanned<String>>,
    cmdline: String,
    #[serde(default)]
    devices: Vec<Spanned<VmDevice>>,
    #[serde(default)]
    disk: Vec<RawDisk>,
    #[serde(default)]
    nic: Vec<Spanned<RawNic>>,
    #[serde(default)]
    autostart: bool,
    #[serde(default, rename = "numa-node")]
    numa_node: Option<Spanned<u32>>,
    #[serde(default)]
    numa: Option<Spanned<NumaMode>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawDisk {
    partition: Spanned<String>,
    controller: DiskController,
    #[serde(default)]
    read_only: bool,
    #[serde(default)]
    size_mib: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawNic {
    #[serde(default)]
    mac: Option<Spanned<String>>,
    #[serde(default)]
    port_group: Option<Spanned<String>>,
}

fn raw_file(text: &str) -> Result<RawFile, ConfigError> {
    toml::from_str(text).map_err(|e| {
        ConfigError::new(
            ErrorKind::Syntax {
                message: with_suggestion(e.message().trim_end()),
            },
            e.span().map(|s| Location::of(text, s)),
        )
    })
}

/// `toml`'s message, with "did you mean `x`?" added when it is serde's unknown-field error
/// (`unknown field `memory`, expected one of `name`, `vcpus`, ...`) and one expected field
/// is close to the key written.
fn with_suggestion(message: &str) -> String {
    let mut out = message.to_owned();
    if let Some(best) = unknown_field_suggestion(message) {
        out.push_str("; did you mean `");
        out.push_str(best);
        out.push_str("`?");
    }
    out
}

/// The expected field closest to the unknown one in serde's message, if close enough: at
/// most a third of the key's characters (at least 2) edited, or one a prefix of the other.
fn unknown_field_suggestion(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    let expected = rest.split_once("expected")?.1;
    let best = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|f| (edit_distance(key, f), f))
        .min_by_key(|(d, _)| *d)?;
    let (d, field) = best;
    let near = d <= (key.chars().count() / 3).max(2);
    let prefix = key.len() >= 3 && (field.starts_with(key) || key.starts_with(field));
    (near || prefix).then_some(field)
}

/// Levenshtein distance in characters (no_std, so not `strsim`).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = (up + 1).min(row[j] + 1).min(diag + usize::from(ca != *cb));
            diag = up;
        }
    }
    row[b.len()]
}

/// Parses and validates a VM file: one or more `[[vm]]` tables with unique names, no
/// partition written by two disks, no MAC address given twice. `vm = []` says on purpose
/// that the image has no build-time VMs (a host whose VMs all live on its datastore).
pub fn parse_vms(text: &str) -> Result<Vec<VmSpec>, ConfigError> {
    parse_host_settings(text)?;
    let raw = raw_file(text)?;
    match raw.vm {
        None => Err(ConfigError::new(ErrorKind::NoVms, None)),
        Some(vms) => validate_all(vms, text),
    }
}

/// Parses and validates a definition of exactly one VM (`POST /api/vms`, a datastore VM
/// file): the rules of [`parse_vms`], and a second `[[vm]]` is an error pointing at it.
pub fn parse_one(text: &str) -> Result<VmSpec, ConfigError> {
    let file = raw_file(text)?;
    if let Some(console) = file.console {
        return Err(ConfigError::new(
            ErrorKind::HostSettingInVm,
            Some(Location::of(text, console.span())),
        ));
    }
    let raw = file.vm.unwrap_or_default();
    if let Some(second) = raw.get(1) {
        return Err(ConfigError::new(
            ErrorKind::MoreThanOne,
            Some(Location::of(text, second.span())),
        ));
    }
    let mut vms = validate_all(raw, text)?;
    vms.pop()
        .ok_or_else(|| ConfigError::new(ErrorKind::NoVms, None))
}

fn validate_all(raw: Vec<Spanned<RawVm>>, text: &str) -> Result<Vec<VmSpec>, ConfigError> {
    let mut names = BTreeSet::new();
    let mut vms = Vec::with_capacity(raw.len());
    for (index, raw) in raw.into_iter().enumerate() {
        let table = Location::of(text, raw.span());
        let raw = raw.into_inner();
        let at = Some(Location::of(text, raw.name.span()));
        if raw.name.get_ref().trim().is_empty() {
            return Err(ConfigError::new(ErrorKind::EmptyName { index }, at));
        }
        if !names.insert(raw.name.get_ref().clone()) {
            let name = raw.name.into_inner();
            return Err(ConfigError::new(ErrorKind::DuplicateName { name }, at));
        }
        vms.push(validate_vm(raw, table, text)?);
    }
    check_disk_sharing(&vms)?;
    check_macs(&vms)?;
    Ok(vms)
}

fn validate_vm(raw: RawVm, table: Location, text: &str) -> Result<VmSpec, ConfigError> {
    let at = |s: &dyn SpanOf| Location::of(text, s.span_of());
    let vm = raw.name.get_ref().clone();
    let vcpus = *raw.vcpus.get_ref();
    if vcpus == 0 || vcpus > MAX_VCPUS {
        let kind = ErrorKind::VcpusOutOfRange { vm, vcpus };
        return Err(ConfigError::new(kind, Some(at(&raw.vcpus))));
    }
    let memory_mib = *raw.memory_mib.get_ref();
    let memory_at = Some(at(&raw.memory_mib));
    if memory_mib < 2 {
        let kind = ErrorKind::MemoryTooSmall { vm, memory_mib };
        return Err(ConfigError::new(kind, memory_at));
    }
    if !memory_mib.is_multiple_of(2) {
        let rounded = memory_mib + 1;
        let kind = ErrorKind::MemoryNotAligned {
            vm,
            memory_mib,
            rounded,
        };
        return Err(ConfigError::new(kind, memory_at));
    }
    let Some(memory_bytes) = memory_mib.checked_mul(MIB) else {
        let kind = ErrorKind::MemoryTooLarge { vm, memory_mib };
        return Err(ConfigError::new(kind, memory_at));
    };
    for (field, path) in [
        (ImageKind::Kernel, Some(&raw.kernel)),
        (ImageKind::Initrd, raw.initrd.as_ref()),
        (ImageKind::Dtb, raw.dtb.as_ref()),
    ] {
        if let Some(path) = path.filter(|p| p.get_ref().trim().is_empty()) {
            let kind = ErrorKind::EmptyImagePath { vm, field };
            return Err(ConfigError::new(kind, Some(at(path))));
        }
    }
    let mut disks = Vec::with_capacity(raw.disk.len());
    let mut disk_spans = Vec::with_capacity(raw.disk.len());
    for d in raw.disk {
        let label = d.partition.get_ref();
        let label_at = at(&d.partition);
        if label.trim().is_empty() || label.encode_utf16().count() > MAX_PARTITION_LABEL {
            let kind = ErrorKind::BadPartitionLabel {
                vm,
                label: label.clone(),
            };
            return Err(ConfigError::new(kind, Some(label_at)));
        }
        let size_at = d.size_mib.as_ref().map(|s| at(s));
        let size_mib = d.size_mib.map(Spanned::into_inner);
        if size_mib.is_some_and(|m| m == 0 || m.checked_mul(MIB).is_none()) {
            let kind = ErrorKind::DiskSizeZero {
                vm,
                label: label.clone(),
            };
            return Err(ConfigError::new(kind, size_at));
        }
        disk_spans.push(DiskSpans {
            partition: label_at,
            size_mib: size_at,
        });
        disks.push(VmDisk {
            partition: d.partition.into_inner(),
            controller: d.controller,
            read_only: d.read_only,
            size_mib,
        });
    }
    let mut nics = Vec::with_capacity(raw.nic.len());
    let mut nic_spans = Vec::with_capacity(raw.nic.len());
    for (index, n) in raw.nic.into_iter().enumerate() {
        let nic_at = at(&n);
        let n = n.into_inner();
        let mac_at = n.mac.as_ref().map(|m| at(m));
        let mac = match n.mac.map(Spanned::into_inner) {
            Some(mac) => match parse_mac(&mac) {
                Ok(_) => Some(mac.to_ascii_lowercase()),
                Err(why) => {
                    let kind = ErrorKind::BadMac {
                        vm,
                        index,
                        mac,
                        why,
                    };
                    return Err(ConfigError::new(kind, mac_at));
                }
            },
            None => None,
        };
        nic_spans.push(NicSpans {
            table: nic_at,
            mac: mac_at,
            port_group: n.port_group.as_ref().map(|g| at(g)),
        });
        nics.push(VmNic {
            mac,
            port_group: n.port_group.map(Spanned::into_inner),
        });
    }
    let numa = match (
        raw.numa_node.as_ref(),
        raw.numa.as_ref().map(|m| *m.get_ref()),
    ) {
        (Some(node), Some(NumaMode::Spread)) => {
            let kind = ErrorKind::NumaNodeAndSpread {
                vm,
                node: *node.get_ref(),
            };
            return Err(ConfigError::new(kind, Some(at(node))));
        }
        (Some(node), _) => NumaPolicy::Node(*node.get_ref()),
        (None, Some(NumaMode::Spread)) => NumaPolicy::Spread,
        (None, _) => NumaPolicy::Local,
    };
    let spans = VmSpans {
        numa_node: raw.numa_node.as_ref().map(|n| at(n)),
        table,
        name: at(&raw.name),
        vcpus: at(&raw.vcpus),
        memory_mib: at(&raw.memory_mib),
        kernel: at(&raw.kernel),
        initrd: raw.initrd.as_ref().map(|p| at(p)),
        dtb: raw.dtb.as_ref().map(|p| at(p)),
        devices: raw.devices.iter().map(|d| at(d)).collect(),
        disks: disk_spans,
        nics: nic_spans,
    };
    Ok(VmSpec {
        name: vm,
        vcpus,
        memory_mib,
        memory_bytes,
        kernel: raw.kernel.into_inner(),
        initrd: raw.initrd.map(Spanned::into_inner),
        dtb: raw.dtb.map(Spanned::into_inner),
        cmdline: raw.cmdline,
        devices: raw.devices.into_iter().map(Spanned::into_inner).collect(),
        disks,
        nics,
        autostart: raw.autostart,
        numa,
        spans,
    })
}

/// The span of any `Spanned<T>`, whatever `T`.
trait SpanOf {
    fn span_of(&self) -> core::ops::Range<usize>;
}

impl<T> SpanOf for Spanned<T> {
    fn span_of(&self) -> core::ops::Range<usize> {
        self.span()
    }
}

/// Every NIC given a MAC address has its own (across all VMs of the text).
fn check_macs(vms: &[VmSpec]) -> Result<(), ConfigError> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for vm in vms {
        for (nic, spans) in vm.nics.iter().zip(&vm.spans.nics) {
            let Some(mac) = nic.mac.as_deref() else {
                continue;
            };
            if let Some((_, first)) = seen.iter().find(|(m, _)| *m == mac) {
                let kind = ErrorKind::DuplicateMac {
                    mac: mac.to_owned(),
                    first: (*first).to_owned(),
                    second: vm.name.clone(),
                };
                return Err(ConfigError::new(kind, spans.mac.clone()));
            }
            seen.push((mac, &vm.name));
        }
    }
    Ok(())
}

/// A partition is given read-write to one disk of one VM at most; read-only users may
/// share it only if nobody writes it.
fn check_disk_sharing(vms: &[VmSpec]) -> Result<(), ConfigError> {
    let mut users: Vec<(&str, &str, bool)> = Vec::new();
    for vm in vms {
        for (d, spans) in vm.disks.iter().zip(&vm.spans.disks) {
            if let Some(&(other, _, _)) = users
                .iter()
                .find(|(_, l, ro)| *l == d.partition && !(*ro && d.read_only))
            {
                let kind = ErrorKind::DiskShared {
                    label: d.partition.clone(),
                    first: other.to_owned(),
                    second: vm.name.clone(),
                };
                return Err(ConfigError::new(kind, Some(spans.partition.clone())));
            }
            users.push((&vm.name, &d.partition, d.read_only));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
