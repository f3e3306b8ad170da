//! The VM TOML file (`[[vm]]` tables) to a validated model, and the staging plan for its images.
//!
//! ```toml
//! [[vm]]
//! name = "linux"
//! vcpus = 2
//! memory_mib = 256
//! kernel = "guests/Image"          # paths are relative to the TOML file
//! initrd = "guests/initrd.cpio.gz" # optional
//! dtb = "guests/custom.dtb"        # optional; otherwise the core generates one
//! cmdline = "console=ttyAMA0"
//! devices = [{ passthrough = "uart1" }]
//!
//! [[vm.disk]]                      # a virtual disk (any number)
//! partition = "linux-root"         # GPT partition label in the machine's datastore
//! controller = "nvme"              # nvme | virtio-blk | ahci
//! read-only = false                # optional, default false
//! size-mib = 512                   # optional: the partition must be at least this big,
//!                                  # the guest sees exactly this; default: all of it
//!
//! [[vm.nic]]                       # a virtio-net NIC on the virtual switch (any number)
//! mac = "52:54:00:12:34:56"        # optional; default: generated from the VM's name
//! port-group = "lan"               # optional: a port group of the board's `network`
//!                                  # node; default: its first group
//! ```
//!
//! Guest images are not linked into the hypervisor. The boot loader (QEMU's
//! `-device loader`, U-Boot on hardware) places each one in host RAM at an address
//! computed here by [`plan`]: the *staging area*, which starts at the first 2 MiB boundary
//! after the hypervisor's reserved region and holds every image, 2 MiB aligned, in VM
//! order (kernel, initrd, dtb of the first VM, then the next VM).

use crate::model::{Board, Status};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Largest vCPU count a VM may have.
///
/// The guest-physical map (`hypervisor::vm::layout`) has room for 123 GICv3
/// redistributor frames; 64 keeps a margin and matches the scheduler's CPU masks.
/// The generated VM table re-checks every VM against `layout::MAX_VCPUS` at compile time.
pub const MAX_VCPUS: u32 = 64;

/// Guest RAM and staged images are placed in 2 MiB blocks (one stage-2 block entry).
pub const BLOCK: u64 = 2 * 1024 * 1024;

const MIB: u64 = 1024 * 1024;

/// Errors from loading a VM file or planning its staging area.
#[derive(Debug, Error)]
pub enum VmConfigError {
    /// The file could not be read.
    #[error(
        "cannot read VM file `{path}`: {source}; set HV_VMS (or `--vms`) to an existing TOML file"
    )]
    Read {
        /// File.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// TOML syntax error, a wrong type, a missing or an unknown field (`toml` names the line).
    #[error("invalid VM file `{path}`: {message}")]
    Syntax {
        /// File.
        path: PathBuf,
        /// `toml`'s message, with line and column.
        message: String,
    },
    /// The file declares no VM.
    #[error("VM file `{path}` declares no VM; add a `[[vm]]` table with name, vcpus, memory_mib, kernel and cmdline")]
    NoVms {
        /// File.
        path: PathBuf,
    },
    /// A VM has an empty name.
    #[error("VM #{index} in `{path}` has an empty `name`; write e.g. name = \"linux\"")]
    EmptyName {
        /// File.
        path: PathBuf,
        /// Position of the `[[vm]]` table (0-based).
        index: usize,
    },
    /// A disk's partition label is empty or longer than GPT allows.
    #[error(
        "VM `{vm}`: disk partition label `{label}` must be 1..={MAX_PARTITION_LABEL} characters \
         (a GPT partition name); write the label given to the partition when the disk was made"
    )]
    BadPartitionLabel {
        /// The VM.
        vm: String,
        /// The label written.
        label: String,
    },
    /// `size-mib = 0`.
    #[error(
        "VM `{vm}`: disk `{label}` has size-mib = 0 or a size beyond 64-bit byte counts; \
         remove the key to use the whole partition"
    )]
    DiskSizeZero {
        /// The VM.
        vm: String,
        /// The disk's partition label.
        label: String,
    },
    /// A partition is used by two disks and at least one writes it.
    #[error(
        "partition `{label}` is a disk of `{first}` and of `{second}`, and at least one may \
         write it; give each VM its own partition, or make every use `read-only = true`"
    )]
    DiskShared {
        /// The partition label.
        label: String,
        /// The first VM using it.
        first: String,
        /// The second.
        second: String,
    },
    /// A NIC's MAC address is not a unicast `aa:bb:cc:dd:ee:ff`.
    #[error(
        "VM `{vm}`: NIC {index} has mac = \"{mac}\": {why}; write six hex pairs separated by `:` \
         with an even first byte, e.g. \"52:54:00:12:34:56\", or leave `mac` out for a generated one"
    )]
    BadMac {
        /// The VM.
        vm: String,
        /// The NIC's position among the VM's `[[vm.nic]]` tables.
        index: usize,
        /// What was written.
        mac: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Two NICs have the same MAC address.
    #[error("MAC address {mac} is given to a NIC of `{first}` and of `{second}`; every NIC needs its own")]
    DuplicateMac {
        /// The address.
        mac: String,
        /// The first VM.
        first: String,
        /// The second.
        second: String,
    },
    /// A NIC names a port group the board does not have.
    #[error("VM `{vm}`: NIC {index} joins port group `{group}`, which board `{board}` does not have (its groups: {known}); add `port-group \"{group}\"` to the board's `network` node or use one of those")]
    UnknownPortGroup {
        /// The VM.
        vm: String,
        /// The NIC's position.
        index: usize,
        /// The group written.
        group: String,
        /// Board name.
        board: String,
        /// The board's groups.
        known: String,
    },
    /// Two VMs share a name.
    #[error("VM name `{name}` is used twice; give each `[[vm]]` a unique `name`")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
    /// `vcpus` is 0 or above [`MAX_VCPUS`].
    #[error("VM `{vm}`: vcpus = {vcpus} is out of range; write a value in 1..={MAX_VCPUS}")]
    VcpusOutOfRange {
        /// VM name.
        vm: String,
        /// Value given.
        vcpus: u32,
    },
    /// `memory_mib` is below 2.
    #[error("VM `{vm}`: memory_mib = {memory_mib} is too small; write at least 2 (guest RAM is mapped in 2 MiB blocks)")]
    MemoryTooSmall {
        /// VM name.
        vm: String,
        /// Value given.
        memory_mib: u64,
    },
    /// `memory_mib` is not a multiple of 2.
    #[error("VM `{vm}`: memory_mib = {memory_mib} is not a multiple of 2; write {rounded} (guest RAM is mapped in 2 MiB blocks)")]
    MemoryNotAligned {
        /// VM name.
        vm: String,
        /// Value given.
        memory_mib: u64,
        /// The next multiple of 2.
        rounded: u64,
    },
    /// `memory_mib` overflows a 64-bit byte count.
    #[error("VM `{vm}`: memory_mib = {memory_mib} is larger than any board's RAM; write a size in MiB that the board can hold")]
    MemoryTooLarge {
        /// VM name.
        vm: String,
        /// Value given.
        memory_mib: u64,
    },
    /// A guest image named by the file does not exist.
    #[error("VM `{vm}`: {field} file `{path}` does not exist; run `cargo xtask build` (builds the test guest) or `cargo xtask guest fetch` (Debian kernels and initramfs), or fix the path (it is relative to the TOML file)")]
    ImageMissing {
        /// VM name.
        vm: String,
        /// `kernel`, `initrd` or `dtb`.
        field: ImageKind,
        /// Resolved path.
        path: PathBuf,
    },
    /// A guest image is empty.
    #[error("VM `{vm}`: {field} file `{path}` is empty; rebuild it (`cargo xtask build` / `cargo xtask guest fetch`)")]
    ImageEmpty {
        /// VM name.
        vm: String,
        /// `kernel`, `initrd` or `dtb`.
        field: ImageKind,
        /// Resolved path.
        path: PathBuf,
    },
    /// A passthrough device is not a device of the board.
    #[error("VM `{vm}`: passthrough device `{device}` is not a device of board `{board}`; write one of: {known}")]
    UnknownDevice {
        /// VM name.
        vm: String,
        /// Device asked for.
        device: String,
        /// Board name.
        board: String,
        /// Comma-separated enabled device names.
        known: String,
    },
    /// A passthrough device is disabled on the board.
    #[error("VM `{vm}`: passthrough device `{device}` is disabled on board `{board}` ({reason}); remove it from `devices`")]
    DisabledDevice {
        /// VM name.
        vm: String,
        /// Device asked for.
        device: String,
        /// Board name.
        board: String,
        /// Why the board disables it.
        reason: String,
    },
    /// The board's console cannot be given to a guest.
    #[error("VM `{vm}`: device `{device}` is the hypervisor console of board `{board}` and cannot be passed through; pick another device")]
    ConsolePassthrough {
        /// VM name.
        vm: String,
        /// The console device.
        device: String,
        /// Board name.
        board: String,
    },
    /// The staging area runs past the end of the RAM region that holds the hypervisor.
    #[error("guest images need staging up to {staging_end:#x}, past the end of RAM region `{region}` ({region_end:#x}) of board `{board}`; use smaller images or move `hypervisor load=` lower in the board KDL")]
    StagingOutsideRam {
        /// Board name.
        board: String,
        /// Region holding the hypervisor.
        region: String,
        /// End of that region.
        region_end: u64,
        /// Where staging would end.
        staging_end: u64,
    },
    /// The hypervisor placement is not inside any RAM region (the board validator should have caught it).
    #[error("hypervisor load address {load:#x} of board `{board}` is not inside any memory region; fix `hypervisor load=` in the board KDL")]
    HypervisorOutsideRam {
        /// Board name.
        board: String,
        /// Load address.
        load: u64,
    },
    /// Guest RAM, staging and the hypervisor do not fit in the board's RAM.
    #[error("VMs need {guest_mib} MiB of guest RAM plus {staging_mib} MiB of staged images, but board `{board}` has only {free_mib} MiB of RAM outside the hypervisor; lower `memory_mib` or run fewer VMs")]
    DoesNotFit {
        /// Board name.
        board: String,
        /// Sum of `memory_mib`.
        guest_mib: u64,
        /// Staging area size.
        staging_mib: u64,
        /// RAM minus the hypervisor's region.
        free_mib: u64,
    },
}

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

/// A guest image file: absolute path and size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFile {
    /// Path, resolved against the TOML file's directory.
    pub path: PathBuf,
    /// Size in bytes (read when the file was loaded).
    pub size: u64,
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

/// Longest GPT partition name: 36 UTF-16 code units.
pub const MAX_PARTITION_LABEL: usize = 36;

/// One validated VM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vm {
    /// Unique name.
    pub name: String,
    /// vCPUs, 1..=[`MAX_VCPUS`].
    pub vcpus: u32,
    /// Guest RAM in bytes, a multiple of 2 MiB.
    pub memory_bytes: u64,
    /// Kernel image.
    pub kernel: ImageFile,
    /// Initial ramdisk.
    pub initrd: Option<ImageFile>,
    /// DTB replacing the generated one.
    pub dtb: Option<ImageFile>,
    /// Kernel command line.
    pub cmdline: String,
    /// Extra devices.
    pub devices: Vec<VmDevice>,
    /// Virtual disks.
    pub disks: Vec<VmDisk>,
    /// Virtual NICs.
    #[serde(default)]
    pub nics: Vec<VmNic>,
}

impl Vm {
    /// The VM's images in staging order, with their kind.
    pub fn images(&self) -> impl Iterator<Item = (ImageKind, &ImageFile)> {
        [
            Some((ImageKind::Kernel, &self.kernel)),
            self.initrd.as_ref().map(|i| (ImageKind::Initrd, i)),
            self.dtb.as_ref().map(|i| (ImageKind::Dtb, i)),
        ]
        .into_iter()
        .flatten()
    }
}

/// A validated VM file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmConfig {
    /// The TOML file it was read from (absolute when loaded with [`VmConfig::load`]).
    pub path: PathBuf,
    /// VMs in start order.
    pub vms: Vec<Vm>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    vm: Vec<RawVm>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVm {
    name: String,
    vcpus: u32,
    memory_mib: u64,
    kernel: PathBuf,
    initrd: Option<PathBuf>,
    dtb: Option<PathBuf>,
    cmdline: String,
    #[serde(default)]
    devices: Vec<VmDevice>,
    #[serde(default)]
    disk: Vec<VmDisk>,
    #[serde(default)]
    nic: Vec<VmNic>,
}

impl VmConfig {
    /// Reads and validates a VM file; image paths are resolved against its directory.
    pub fn load(path: &Path) -> Result<Self, VmConfigError> {
        let path = std::path::absolute(path).map_err(|source| VmConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let text = std::fs::read_to_string(&path).map_err(|source| VmConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse(&text, &path)
    }

    /// Validates TOML text as if read from `path` (used to resolve image paths).
    pub fn parse(text: &str, path: &Path) -> Result<Self, VmConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| VmConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        if raw.vm.is_empty() {
            return Err(VmConfigError::NoVms {
                path: path.to_owned(),
            });
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let mut names = BTreeSet::new();
        let mut vms = Vec::with_capacity(raw.vm.len());
        for (index, raw) in raw.vm.into_iter().enumerate() {
            if raw.name.trim().is_empty() {
                return Err(VmConfigError::EmptyName {
                    path: path.to_owned(),
                    index,
                });
            }
            if !names.insert(raw.name.clone()) {
                return Err(VmConfigError::DuplicateName { name: raw.name });
            }
            vms.push(validate_vm(raw, base)?);
        }
        check_disk_sharing(&vms)?;
        check_macs(&vms)?;
        Ok(Self {
            path: path.to_owned(),
            vms,
        })
    }
}

fn validate_vm(raw: RawVm, base: &Path) -> Result<Vm, VmConfigError> {
    let vm = raw.name;
    if raw.vcpus == 0 || raw.vcpus > MAX_VCPUS {
        return Err(VmConfigError::VcpusOutOfRange {
            vm,
            vcpus: raw.vcpus,
        });
    }
    if raw.memory_mib < 2 {
        return Err(VmConfigError::MemoryTooSmall {
            vm,
            memory_mib: raw.memory_mib,
        });
    }
    if !raw.memory_mib.is_multiple_of(2) {
        return Err(VmConfigError::MemoryNotAligned {
            vm,
            memory_mib: raw.memory_mib,
            rounded: raw.memory_mib + 1,
        });
    }
    let Some(memory_bytes) = raw.memory_mib.checked_mul(MIB) else {
        return Err(VmConfigError::MemoryTooLarge {
            vm,
            memory_mib: raw.memory_mib,
        });
    };
    let kernel = image(&vm, ImageKind::Kernel, base, &raw.kernel)?;
    let initrd = raw
        .initrd
        .map(|p| image(&vm, ImageKind::Initrd, base, &p))
        .transpose()?;
    let dtb = raw
        .dtb
        .map(|p| image(&vm, ImageKind::Dtb, base, &p))
        .transpose()?;
    for d in &raw.disk {
        let label = &d.partition;
        if label.trim().is_empty() || label.encode_utf16().count() > MAX_PARTITION_LABEL {
            return Err(VmConfigError::BadPartitionLabel {
                vm,
                label: label.clone(),
            });
        }
        if d.size_mib == Some(0) || d.size_mib.is_some_and(|m| m.checked_mul(MIB).is_none()) {
            return Err(VmConfigError::DiskSizeZero {
                vm,
                label: label.clone(),
            });
        }
    }
    let mut nics = raw.nic;
    for (index, n) in nics.iter_mut().enumerate() {
        if let Some(mac) = &mut n.mac {
            if let Err(why) = parse_mac(mac) {
                return Err(VmConfigError::BadMac {
                    vm,
                    index,
                    mac: mac.clone(),
                    why,
                });
            }
            *mac = mac.to_ascii_lowercase();
        }
    }
    Ok(Vm {
        name: vm,
        vcpus: raw.vcpus,
        memory_bytes,
        kernel,
        initrd,
        dtb,
        cmdline: raw.cmdline,
        devices: raw.devices,
        disks: raw.disk,
        nics,
    })
}

/// Every NIC given a MAC address has its own.
fn check_macs(vms: &[Vm]) -> Result<(), VmConfigError> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for vm in vms {
        for mac in vm.nics.iter().filter_map(|n| n.mac.as_deref()) {
            if let Some((_, first)) = seen.iter().find(|(m, _)| *m == mac) {
                return Err(VmConfigError::DuplicateMac {
                    mac: mac.to_owned(),
                    first: (*first).to_owned(),
                    second: vm.name.clone(),
                });
            }
            seen.push((mac, &vm.name));
        }
    }
    Ok(())
}

/// Every NIC's port group is one of the board's.
fn check_port_groups(board: &Board, vm: &Vm) -> Result<(), VmConfigError> {
    for (index, n) in vm.nics.iter().enumerate() {
        let Some(group) = &n.port_group else {
            continue;
        };
        if !board.network.port_groups.iter().any(|g| &g.name == group) {
            let known: Vec<String> = board
                .network
                .port_groups
                .iter()
                .map(|g| format!("`{}`", g.name))
                .collect();
            return Err(VmConfigError::UnknownPortGroup {
                vm: vm.name.clone(),
                index,
                group: group.clone(),
                board: board.name.clone(),
                known: known.join(", "),
            });
        }
    }
    Ok(())
}

/// A partition is given read-write to one disk of one VM at most; read-only users may
/// share it only if nobody writes it.
fn check_disk_sharing(vms: &[Vm]) -> Result<(), VmConfigError> {
    let mut users: Vec<(&str, &str, bool)> = Vec::new();
    for vm in vms {
        for d in &vm.disks {
            if let Some(&(other, _, _)) = users
                .iter()
                .find(|(_, l, ro)| *l == d.partition && !(*ro && d.read_only))
            {
                return Err(VmConfigError::DiskShared {
                    label: d.partition.clone(),
                    first: other.to_owned(),
                    second: vm.name.clone(),
                });
            }
            users.push((&vm.name, &d.partition, d.read_only));
        }
    }
    Ok(())
}

fn image(vm: &str, field: ImageKind, base: &Path, rel: &Path) -> Result<ImageFile, VmConfigError> {
    let path = normalize(&base.join(rel));
    let size = match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => m.len(),
        _ => {
            return Err(VmConfigError::ImageMissing {
                vm: vm.to_owned(),
                field,
                path,
            })
        }
    };
    if size == 0 {
        return Err(VmConfigError::ImageEmpty {
            vm: vm.to_owned(),
            field,
            path,
        });
    }
    Ok(ImageFile { path, size })
}

/// Removes `.` and `a/..` components lexically, so messages and QEMU arguments show clean paths.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// One image placed in the staging area.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedImage {
    /// Index of the VM in [`VmConfig::vms`].
    pub vm: usize,
    /// Which image of that VM.
    pub kind: ImageKind,
    /// File to load.
    pub path: PathBuf,
    /// Host-physical address the boot loader puts it at (2 MiB aligned).
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
}

/// Where every guest image goes in host RAM before the hypervisor starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// First byte of the staging area: the first 2 MiB boundary at or after the end of
    /// the hypervisor's region (`load + size`).
    pub staging_base: u64,
    /// One past the staging area, rounded up to 2 MiB: guest RAM is allocated elsewhere.
    pub staging_end: u64,
    /// Images in VM order (kernel, initrd, dtb of each VM).
    pub images: Vec<StagedImage>,
}

impl Plan {
    /// The staged image of one VM, if it has that image.
    pub fn image(&self, vm: usize, kind: ImageKind) -> Option<&StagedImage> {
        self.images.iter().find(|i| i.vm == vm && i.kind == kind)
    }

    /// QEMU arguments that load every image at its address
    /// (`-device loader,file=PATH,addr=ADDR,force-raw=on`).
    pub fn qemu_loader_args(&self) -> Vec<String> {
        self.images
            .iter()
            .flat_map(|i| {
                [
                    "-device".to_owned(),
                    format!(
                        "loader,file={},addr={:#x},force-raw=on",
                        i.path.display(),
                        i.addr
                    ),
                ]
            })
            .collect()
    }
}

const fn align_up(value: u64, align: u64) -> Option<u64> {
    match value.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// Checks the VMs against the board (passthrough devices, RAM) and lays out the staging area.
pub fn plan(board: &Board, config: &VmConfig) -> Result<Plan, VmConfigError> {
    for vm in &config.vms {
        check_devices(board, vm)?;
        check_port_groups(board, vm)?;
    }
    let hv = board.hypervisor;
    let hv_end = hv.load_address.saturating_add(hv.size);
    let region = board
        .memory
        .iter()
        .find(|r| r.base <= hv.load_address && hv.load_address - r.base < r.size)
        .ok_or_else(|| VmConfigError::HypervisorOutsideRam {
            board: board.name.clone(),
            load: hv.load_address,
        })?;
    let region_end = region.base.saturating_add(region.size);
    let outside = |staging_end: u64| VmConfigError::StagingOutsideRam {
        board: board.name.clone(),
        region: region.name.clone(),
        region_end,
        staging_end,
    };
    let staging_base = align_up(hv_end, BLOCK).ok_or_else(|| outside(u64::MAX))?;
    let mut cursor = staging_base;
    let mut images = Vec::new();
    for (index, vm) in config.vms.iter().enumerate() {
        for (kind, file) in vm.images() {
            let addr = align_up(cursor, BLOCK).ok_or_else(|| outside(u64::MAX))?;
            cursor = addr
                .checked_add(file.size)
                .ok_or_else(|| outside(u64::MAX))?;
            images.push(StagedImage {
                vm: index,
                kind,
                path: file.path.clone(),
                addr,
                size: file.size,
            });
        }
    }
    let staging_end = align_up(cursor, BLOCK).ok_or_else(|| outside(u64::MAX))?;
    if staging_end > region_end {
        return Err(outside(staging_end));
    }
    let ram: u64 = board.memory.iter().map(|r| r.size).sum();
    let guest: u64 = config.vms.iter().map(|v| v.memory_bytes).sum();
    let staging = staging_end - staging_base;
    let reserved = staging_base - hv.load_address;
    let free = ram.saturating_sub(reserved);
    if guest.saturating_add(staging) > free {
        return Err(VmConfigError::DoesNotFit {
            board: board.name.clone(),
            guest_mib: guest / MIB,
            staging_mib: staging / MIB,
            free_mib: free / MIB,
        });
    }
    Ok(Plan {
        staging_base,
        staging_end,
        images,
    })
}

fn check_devices(board: &Board, vm: &Vm) -> Result<(), VmConfigError> {
    for VmDevice::Passthrough(name) in &vm.devices {
        let Some(device) = board.devices.iter().find(|d| &d.name == name) else {
            let known: Vec<&str> = board
                .devices
                .iter()
                .filter(|d| d.status == Status::Okay && d.name != board.console)
                .map(|d| d.name.as_str())
                .collect();
            return Err(VmConfigError::UnknownDevice {
                vm: vm.name.clone(),
                device: name.clone(),
                board: board.name.clone(),
                known: if known.is_empty() {
                    "(the board has no device to pass through)".to_owned()
                } else {
                    known.join(", ")
                },
            });
        };
        if let Status::Disabled { reason } = &device.status {
            return Err(VmConfigError::DisabledDevice {
                vm: vm.name.clone(),
                device: name.clone(),
                board: board.name.clone(),
                reason: reason.clone(),
            });
        }
        if device.name == board.console {
            return Err(VmConfigError::ConsolePassthrough {
                vm: vm.name.clone(),
                device: name.clone(),
                board: board.name.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::*;

    /// A minimal QEMU-virt-like board: 2 GiB at 0x4000_0000, hypervisor at 0x4020_0000 (31 MiB).
    pub(crate) fn board() -> Board {
        let irq = |intid| Irq {
            intid,
            trigger: Trigger::Level,
        };
        let reg = |name: &str, base, size| Reg {
            name: name.to_owned(),
            base,
            size,
        };
        Board {
            name: "test-virt".into(),
            model: "Test virt".into(),
            soc: "test-soc".into(),
            support: SupportLevel::Supported,
            verified_by: Verification::None,
            topology: Topology {
                sockets: 1,
                clusters_per_socket: 1,
                cores_per_cluster: 1,
            },
            cpus: vec![Cpu {
                mpidr: 0,
                socket: 0,
                cluster: 0,
                core: "arm,cortex-a57".into(),
            }],
            numa_nodes: vec![NumaNode { id: 0, socket: 0 }],
            memory: vec![MemoryRegion {
                name: "dram0".into(),
                base: 0x4000_0000,
                size: 0x8000_0000,
                numa_node: 0,
            }],
            hypervisor: HypervisorPlacement {
                load_address: 0x4020_0000,
                size: 0x01f0_0000,
            },
            gic: Gic {
                version: GicVersion::V3,
                compatible: "arm,gic-v3".into(),
                distributor: reg("gicd", 0x0800_0000, 0x1_0000),
                redistributors: vec![reg("gicr", 0x080a_0000, 0xf6_0000)],
                cpu_interface: None,
                hyp_interface: None,
                virtual_cpu_interface: None,
                its: None,
                maintenance_irq: irq(25),
                spi_count: 256,
            },
            timer: Timer {
                secure_phys: irq(29),
                phys: irq(30),
                virt: irq(27),
                hyp_phys: irq(26),
            },
            pmu: Pmu::Ppi(irq(23)),
            console: "uart0".into(),
            devices: vec![
                Device {
                    name: "uart0".into(),
                    compatible: vec!["arm,pl011".into()],
                    regs: vec![reg("regs", 0x0900_0000, 0x1000)],
                    irqs: vec![irq(33)],
                    status: Status::Okay,
                    bus_id: None,
                    clock_hz: Some(24_000_000),
                    dma_coherent: false,
                },
                Device {
                    name: "uart1".into(),
                    compatible: vec!["arm,pl011".into()],
                    regs: vec![reg("regs", 0x0904_0000, 0x1000)],
                    irqs: vec![irq(40)],
                    status: Status::Okay,
                    bus_id: None,
                    clock_hz: None,
                    dma_coherent: false,
                },
                Device {
                    name: "gpu".into(),
                    compatible: vec!["nvidia,gv11b".into()],
                    regs: vec![reg("regs", 0x1700_0000, 0x100_0000)],
                    irqs: vec![],
                    status: Status::Disabled {
                        reason: "integrated GPU cannot be shared".into(),
                    },
                    bus_id: None,
                    clock_hz: None,
                    dma_coherent: false,
                },
            ],
            quirks: vec![],
            network: crate::model::Network::default(),
        }
    }

    /// A scratch directory with image files of given sizes.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "platform-dsl-vmconfig-{}-{tag}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
        fn file(&self, name: &str, size: usize) -> &Self {
            std::fs::write(self.0.join(name), vec![0xa5u8; size]).unwrap();
            self
        }
        fn parse(&self, toml: &str) -> Result<VmConfig, VmConfigError> {
            VmConfig::parse(toml, &self.0.join("vms.toml"))
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const ONE: &str = r#"
        [[vm]]
        name = "linux"
        vcpus = 2
        memory_mib = 64
        kernel = "Image"
        cmdline = "console=ttyAMA0"
    "#;

    #[test]
    fn valid_file_resolves_paths_against_the_toml_directory() {
        let s = Scratch::new("valid");
        s.file("Image", 100);
        let cfg = s.parse(ONE).unwrap();
        assert_eq!(cfg.vms.len(), 1);
        let vm = &cfg.vms[0];
        assert_eq!(vm.name, "linux");
        assert_eq!(vm.vcpus, 2);
        assert_eq!(vm.memory_bytes, 64 * MIB);
        assert_eq!(vm.kernel.path, s.0.join("Image"));
        assert_eq!(vm.kernel.size, 100);
        assert_eq!(vm.cmdline, "console=ttyAMA0");
        assert!(vm.initrd.is_none() && vm.dtb.is_none() && vm.devices.is_empty());
    }

    #[test]
    fn parent_components_are_normalized() {
        let s = Scratch::new("norm");
        std::fs::create_dir_all(s.0.join("sub")).unwrap();
        s.file("Image", 1);
        let cfg = VmConfig::parse(
            ONE.replace("\"Image\"", "\"../Image\"").as_str(),
            &s.0.join("sub/vms.toml"),
        )
        .unwrap();
        assert_eq!(cfg.vms[0].kernel.path, s.0.join("Image"));
    }

    #[test]
    fn devices_parse_as_passthrough() {
        let s = Scratch::new("dev");
        s.file("Image", 1);
        let cfg = s
            .parse(&format!("{ONE}devices = [{{ passthrough = \"uart1\" }}]\n"))
            .unwrap();
        assert_eq!(
            cfg.vms[0].devices,
            vec![VmDevice::Passthrough("uart1".into())]
        );
    }

    #[test]
    fn disks_parse_with_their_controller_and_defaults() {
        let s = Scratch::new("disks");
        s.file("Image", 1);
        let text = format!(
            "{ONE}\n[[vm.disk]]\npartition = \"root\"\ncontroller = \"nvme\"\n\
             [[vm.disk]]\npartition = \"data\"\ncontroller = \"virtio-blk\"\n\
             read-only = true\nsize-mib = 16\n"
        );
        let cfg = s.parse(&text).unwrap();
        assert_eq!(
            cfg.vms[0].disks,
            vec![
                VmDisk {
                    partition: "root".into(),
                    controller: DiskController::Nvme,
                    read_only: false,
                    size_mib: None,
                },
                VmDisk {
                    partition: "data".into(),
                    controller: DiskController::VirtioBlk,
                    read_only: true,
                    size_mib: Some(16),
                },
            ]
        );
    }

    #[test]
    fn nics_parse_with_their_defaults_and_lower_case_macs() {
        let s = Scratch::new("nics");
        s.file("Image", 1);
        let text = format!(
            "{ONE}\n[[vm.nic]]\n[[vm.nic]]\nmac = \"52:54:00:AB:cd:01\"\nport-group = \"default\"\n"
        );
        let cfg = s.parse(&text).unwrap();
        assert_eq!(
            cfg.vms[0].nics,
            vec![
                VmNic {
                    mac: None,
                    port_group: None
                },
                VmNic {
                    mac: Some("52:54:00:ab:cd:01".into()),
                    port_group: Some("default".into())
                },
            ]
        );
        assert!(plan(&board(), &cfg).is_ok());
    }

    #[test]
    fn bad_and_shared_macs_are_refused_with_what_to_write() {
        let s = Scratch::new("macs");
        s.file("Image", 1);
        for (mac, why) in [
            ("52:54:00:12:34", "fewer than six"),
            ("52:54:00:12:34:56:78", "more than six"),
            ("52:54:0:12:34:56", "two hex digits"),
            ("01:00:5e:00:00:01", "multicast"),
            ("00:00:00:00:00:00", "all zeros"),
        ] {
            let text = format!("{ONE}\n[[vm.nic]]\nmac = \"{mac}\"\n");
            let e = s.parse(&text).unwrap_err().to_string();
            assert!(
                e.contains(why) && e.contains("52:54:00:12:34:56"),
                "{mac}: {e}"
            );
        }
        let two = format!(
            "{ONE}\n[[vm.nic]]\nmac = \"52:54:00:00:00:01\"\n\
             [[vm]]\nname = \"b\"\nvcpus = 1\nmemory_mib = 2\nkernel = \"Image\"\ncmdline = \"\"\n\
             [[vm.nic]]\nmac = \"52:54:00:00:00:01\"\n"
        );
        let e = s.parse(&two).unwrap_err().to_string();
        assert!(e.contains("52:54:00:00:00:01") && e.contains("own"), "{e}");
    }

    #[test]
    fn a_port_group_the_board_lacks_is_named_with_the_choices() {
        let s = Scratch::new("group");
        s.file("Image", 1);
        let text = format!("{ONE}\n[[vm.nic]]\nport-group = \"dmz\"\n");
        let cfg = s.parse(&text).unwrap();
        let e = plan(&board(), &cfg).unwrap_err().to_string();
        assert!(
            e.contains("`dmz`") && e.contains("`default`") && e.contains("port-group \"dmz\""),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_controller_is_named_with_the_choices() {
        let s = Scratch::new("ctrl");
        s.file("Image", 1);
        let text = format!("{ONE}\n[[vm.disk]]\npartition = \"root\"\ncontroller = \"scsi\"\n");
        let e = s.parse(&text).unwrap_err().to_string();
        assert!(
            e.contains("scsi") && e.contains("nvme") && e.contains("virtio-blk"),
            "{e}"
        );
    }

    #[test]
    fn partition_labels_must_fit_gpt() {
        let s = Scratch::new("label");
        s.file("Image", 1);
        for label in ["", &"x".repeat(MAX_PARTITION_LABEL + 1)] {
            let text =
                format!("{ONE}\n[[vm.disk]]\npartition = \"{label}\"\ncontroller = \"nvme\"\n");
            assert!(matches!(
                s.parse(&text),
                Err(VmConfigError::BadPartitionLabel { .. })
            ));
        }
        let text =
            format!("{ONE}\n[[vm.disk]]\npartition = \"a\"\ncontroller = \"ahci\"\nsize-mib = 0\n");
        assert!(matches!(
            s.parse(&text),
            Err(VmConfigError::DiskSizeZero { .. })
        ));
    }

    #[test]
    fn a_partition_written_by_one_vm_is_nobody_elses() {
        let s = Scratch::new("shared");
        s.file("Image", 1);
        let vm = |name: &str, ro: bool| {
            format!(
                "[[vm]]\nname = \"{name}\"\nvcpus = 1\nmemory_mib = 64\nkernel = \"Image\"\n\
                 cmdline = \"\"\n[[vm.disk]]\npartition = \"p\"\ncontroller = \"nvme\"\n\
                 read-only = {ro}\n"
            )
        };
        let e = s
            .parse(&format!("{}{}", vm("a", true), vm("b", false)))
            .unwrap_err();
        assert!(
            matches!(&e, VmConfigError::DiskShared { label, first, second }
                if label == "p" && first == "a" && second == "b"),
            "{e}"
        );
        // Readers only: shared.
        s.parse(&format!("{}{}", vm("a", true), vm("b", true)))
            .unwrap();
    }

    #[test]
    fn unknown_field_is_a_syntax_error_naming_it() {
        let s = Scratch::new("unknown");
        s.file("Image", 1);
        let err = s.parse(&format!("{ONE}memory = 3\n")).unwrap_err();
        assert!(matches!(err, VmConfigError::Syntax { .. }), "{err}");
        assert!(err.to_string().contains("unknown field `memory`"), "{err}");
    }

    #[test]
    fn missing_field_is_a_syntax_error_naming_it() {
        let s = Scratch::new("missing");
        let err = s
            .parse("[[vm]]\nname = \"a\"\nvcpus = 1\nmemory_mib = 2\ncmdline = \"\"\n")
            .unwrap_err();
        assert!(err.to_string().contains("missing field `kernel`"), "{err}");
    }

    #[test]
    fn empty_file_has_no_vms() {
        let s = Scratch::new("empty");
        assert!(matches!(s.parse(""), Err(VmConfigError::NoVms { .. })));
    }

    #[test]
    fn empty_name_is_rejected() {
        let s = Scratch::new("ename");
        s.file("Image", 1);
        let err = s.parse(&ONE.replace("\"linux\"", "\"\"")).unwrap_err();
        assert!(
            matches!(err, VmConfigError::EmptyName { index: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let s = Scratch::new("dup");
        s.file("Image", 1);
        let err = s.parse(&format!("{ONE}{ONE}")).unwrap_err();
        assert!(matches!(&err, VmConfigError::DuplicateName { name } if name == "linux"));
        assert!(err.to_string().contains("unique"), "{err}");
    }

    #[test]
    fn zero_vcpus_is_out_of_range() {
        let s = Scratch::new("vcpu0");
        s.file("Image", 1);
        let err = s.parse(&ONE.replace("vcpus = 2", "vcpus = 0")).unwrap_err();
        assert!(matches!(
            err,
            VmConfigError::VcpusOutOfRange { vcpus: 0, .. }
        ));
        assert!(err.to_string().contains("1..=64"), "{err}");
    }

    #[test]
    fn too_many_vcpus_is_out_of_range() {
        let s = Scratch::new("vcpu65");
        s.file("Image", 1);
        let err = s
            .parse(&ONE.replace("vcpus = 2", "vcpus = 65"))
            .unwrap_err();
        assert!(matches!(
            err,
            VmConfigError::VcpusOutOfRange { vcpus: 65, .. }
        ));
        let ok = s.parse(&ONE.replace("vcpus = 2", "vcpus = 64")).unwrap();
        assert_eq!(ok.vms[0].vcpus, 64);
    }

    #[test]
    fn odd_memory_is_rejected_with_the_rounded_value() {
        let s = Scratch::new("odd");
        s.file("Image", 1);
        let err = s
            .parse(&ONE.replace("memory_mib = 64", "memory_mib = 65"))
            .unwrap_err();
        assert!(matches!(
            err,
            VmConfigError::MemoryNotAligned { rounded: 66, .. }
        ));
        assert!(err.to_string().contains("VM `linux`"), "{err}");
    }

    #[test]
    fn memory_below_two_mib_is_rejected() {
        let s = Scratch::new("small");
        s.file("Image", 1);
        for v in ["0", "1"] {
            let err = s
                .parse(&ONE.replace("memory_mib = 64", &format!("memory_mib = {v}")))
                .unwrap_err();
            assert!(matches!(err, VmConfigError::MemoryTooSmall { .. }), "{err}");
        }
    }

    #[test]
    fn huge_memory_is_rejected() {
        let s = Scratch::new("huge");
        s.file("Image", 1);
        let err = s
            .parse(&ONE.replace("memory_mib = 64", "memory_mib = 9223372036854775806"))
            .unwrap_err();
        assert!(matches!(err, VmConfigError::MemoryTooLarge { .. }), "{err}");
    }

    #[test]
    fn missing_image_tells_how_to_build_it() {
        let s = Scratch::new("noimg");
        let err = s.parse(ONE).unwrap_err();
        assert!(matches!(
            err,
            VmConfigError::ImageMissing {
                field: ImageKind::Kernel,
                ..
            }
        ));
        let msg = err.to_string();
        assert!(
            msg.contains("cargo xtask build") && msg.contains("guest fetch"),
            "{msg}"
        );
    }

    #[test]
    fn missing_initrd_is_named_as_initrd() {
        let s = Scratch::new("noinitrd");
        s.file("Image", 1);
        let err = s
            .parse(&format!("{ONE}initrd = \"initrd.gz\"\n"))
            .unwrap_err();
        assert!(matches!(
            err,
            VmConfigError::ImageMissing {
                field: ImageKind::Initrd,
                ..
            }
        ));
    }

    #[test]
    fn empty_image_is_rejected() {
        let s = Scratch::new("emptyimg");
        s.file("Image", 0);
        let err = s.parse(ONE).unwrap_err();
        assert!(matches!(err, VmConfigError::ImageEmpty { .. }), "{err}");
    }

    #[test]
    fn load_reports_a_missing_file() {
        let err = VmConfig::load(Path::new("/nonexistent/vms.toml")).unwrap_err();
        assert!(matches!(err, VmConfigError::Read { .. }));
    }

    fn two_vms(s: &Scratch) -> VmConfig {
        s.file("k1", 3 * MIB as usize + 5)
            .file("i1", 10)
            .file("k2", 4096)
            .file("d2", 2 * MIB as usize);
        s.parse(
            r#"
            [[vm]]
            name = "a"
            vcpus = 1
            memory_mib = 128
            kernel = "k1"
            initrd = "i1"
            cmdline = ""
            [[vm]]
            name = "b"
            vcpus = 1
            memory_mib = 64
            kernel = "k2"
            dtb = "d2"
            cmdline = ""
            "#,
        )
        .unwrap()
    }

    #[test]
    fn staging_starts_at_the_first_block_after_the_hypervisor() {
        let s = Scratch::new("plan1");
        let plan = plan(&board(), &two_vms(&s)).unwrap();
        // hypervisor 0x4020_0000 + 0x1f0_0000 = 0x4210_0000 -> next 2 MiB: 0x4220_0000.
        assert_eq!(plan.staging_base, 0x4220_0000);
    }

    #[test]
    fn images_are_placed_consecutively_and_block_aligned() {
        let s = Scratch::new("plan2");
        let cfg = two_vms(&s);
        let plan = plan(&board(), &cfg).unwrap();
        let layout: Vec<(usize, ImageKind, u64, u64)> = plan
            .images
            .iter()
            .map(|i| (i.vm, i.kind, i.addr, i.size))
            .collect();
        assert_eq!(
            layout,
            vec![
                (0, ImageKind::Kernel, 0x4220_0000, 3 * MIB + 5),
                (0, ImageKind::Initrd, 0x4260_0000, 10),
                (1, ImageKind::Kernel, 0x4280_0000, 4096),
                (1, ImageKind::Dtb, 0x42a0_0000, 2 * MIB),
            ]
        );
        assert_eq!(plan.staging_end, 0x42c0_0000);
        assert_eq!(
            plan.image(1, ImageKind::Dtb).map(|i| i.addr),
            Some(0x42a0_0000)
        );
        assert_eq!(plan.image(1, ImageKind::Initrd), None);
    }

    #[test]
    fn qemu_loader_args_name_file_and_address() {
        let s = Scratch::new("plan3");
        let plan = plan(&board(), &two_vms(&s)).unwrap();
        let args = plan.qemu_loader_args();
        assert_eq!(args.len(), 8);
        assert_eq!(args[0], "-device");
        assert_eq!(
            args[1],
            format!(
                "loader,file={},addr=0x42200000,force-raw=on",
                s.0.join("k1").display()
            )
        );
    }

    #[test]
    fn guests_larger_than_ram_do_not_fit() {
        let s = Scratch::new("fit");
        s.file("Image", 1);
        let cfg = s
            .parse(&ONE.replace("memory_mib = 64", "memory_mib = 2048"))
            .unwrap();
        let err = plan(&board(), &cfg).unwrap_err();
        assert!(
            matches!(
                err,
                VmConfigError::DoesNotFit {
                    guest_mib: 2048,
                    staging_mib: 2,
                    ..
                }
            ),
            "{err}"
        );
        // 2048 MiB RAM - (0x4220_0000 - 0x4020_0000 = 32 MiB reserved) = 2016 MiB free.
        let ok = s
            .parse(&ONE.replace("memory_mib = 64", "memory_mib = 2014"))
            .unwrap();
        assert!(plan(&board(), &ok).is_ok());
        let over = s
            .parse(&ONE.replace("memory_mib = 64", "memory_mib = 2016"))
            .unwrap();
        assert!(plan(&board(), &over).is_err());
    }

    #[test]
    fn staging_past_the_region_end_is_rejected() {
        let s = Scratch::new("outside");
        s.file("Image", 1);
        let cfg = s.parse(ONE).unwrap();
        let mut b = board();
        b.memory[0].size = 0x0220_0000; // RAM ends exactly at the staging base
        let err = plan(&b, &cfg).unwrap_err();
        assert!(
            matches!(
                err,
                VmConfigError::StagingOutsideRam {
                    staging_end: 0x4240_0000,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn passthrough_of_unknown_device_lists_the_known_ones() {
        let s = Scratch::new("pt1");
        s.file("Image", 1);
        let cfg = s
            .parse(&format!("{ONE}devices = [{{ passthrough = \"uart9\" }}]\n"))
            .unwrap();
        let err = plan(&board(), &cfg).unwrap_err();
        assert!(
            matches!(&err, VmConfigError::UnknownDevice { known, .. } if known == "uart1"),
            "{err}"
        );
    }

    #[test]
    fn passthrough_of_disabled_device_gives_the_reason() {
        let s = Scratch::new("pt2");
        s.file("Image", 1);
        let cfg = s
            .parse(&format!("{ONE}devices = [{{ passthrough = \"gpu\" }}]\n"))
            .unwrap();
        let err = plan(&board(), &cfg).unwrap_err();
        assert!(
            err.to_string().contains("integrated GPU cannot be shared"),
            "{err}"
        );
    }

    #[test]
    fn passthrough_of_the_console_is_rejected() {
        let s = Scratch::new("pt3");
        s.file("Image", 1);
        let cfg = s
            .parse(&format!("{ONE}devices = [{{ passthrough = \"uart0\" }}]\n"))
            .unwrap();
        let err = plan(&board(), &cfg).unwrap_err();
        assert!(
            matches!(err, VmConfigError::ConsolePassthrough { .. }),
            "{err}"
        );
    }

    #[test]
    fn passthrough_of_an_enabled_device_is_accepted() {
        let s = Scratch::new("pt4");
        s.file("Image", 1);
        let cfg = s
            .parse(&format!("{ONE}devices = [{{ passthrough = \"uart1\" }}]\n"))
            .unwrap();
        assert!(plan(&board(), &cfg).is_ok());
    }
}
