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
//! The model and its rules are the `vm-config` crate's (no_std), shared with VMs defined
//! while the host runs; this module adds what needs the build machine: reading the file,
//! resolving and sizing the images, the board model as [`BoardFacts`], and the staging
//! plan. Every VM of a build-time file starts at boot: `autostart` (for VMs on the
//! datastore) is accepted and has no effect here.
//!
//! Guest images are not linked into the hypervisor. The boot loader (QEMU's
//! `-device loader`, U-Boot on hardware) places each one in host RAM at an address
//! computed here by [`plan`]: the *staging area*, which starts at the first 2 MiB boundary
//! after the hypervisor's reserved region and holds every image, 2 MiB aligned, in VM
//! order (kernel, initrd, dtb of the first VM, then the next VM).

use crate::model::{Board, Status};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use thiserror::Error;
use vm_config::{BoardFacts, ConfigError, DeviceUse, VmSpans};

pub use vm_config::{
    parse_mac, DiskController, ErrorKind, ImageKind, NumaPolicy, VmDevice, VmDisk, VmNic, BLOCK,
    MAX_PARTITION_LABEL, MAX_VCPUS, MIB,
};

/// A place in a VM file: its path and, when known, the 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    /// The TOML file.
    pub path: PathBuf,
    /// Line and column (1-based).
    pub line_col: Option<(usize, usize)>,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some((line, column)) = self.line_col {
            write!(f, ":{line}:{column}")?;
        }
        Ok(())
    }
}

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
    /// The text breaks a rule of `vm-config`: TOML syntax, a wrong type, a missing or
    /// unknown field, a value out of range, or a device or port group the board lacks.
    #[error("invalid VM file `{at}`: {error}")]
    Invalid {
        /// File, line and column of the key or table at fault.
        at: Place,
        /// What is wrong and what to write (boxed: errors are rare, results many).
        error: Box<ErrorKind>,
    },
    /// A guest image named by the file does not exist.
    #[error("`{at}`: VM `{vm}`: {field} file `{path}` does not exist; run `cargo xtask build` (builds the test guest) or `cargo xtask guest fetch` (Debian kernels and initramfs), or fix the path (it is relative to the TOML file)")]
    ImageMissing {
        /// Where the path is written.
        at: Place,
        /// VM name.
        vm: String,
        /// `kernel`, `initrd` or `dtb`.
        field: ImageKind,
        /// Resolved path.
        path: PathBuf,
    },
    /// A guest image is empty.
    #[error("`{at}`: VM `{vm}`: {field} file `{path}` is empty; rebuild it (`cargo xtask build` / `cargo xtask guest fetch`)")]
    ImageEmpty {
        /// Where the path is written.
        at: Place,
        /// VM name.
        vm: String,
        /// `kernel`, `initrd` or `dtb`.
        field: ImageKind,
        /// Resolved path.
        path: PathBuf,
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
    /// The board writes no `hypervisor load=` (its RAM base comes from the firmware), so
    /// build-time VM images have no address to be staged at.
    #[error("board `{board}` writes no `hypervisor load=` (its RAM base comes from the firmware), so VM `{vm}`'s images cannot be staged at build time; give the VMs as boot modules (`cargo xtask build --boot-vms FILE.toml`) or on the datastore, or write `hypervisor load=` if the RAM base is known")]
    NoStagingAddress {
        /// Board name.
        board: String,
        /// The first VM with an image.
        vm: String,
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

impl VmConfigError {
    /// A `vm-config` error in the file at `path`.
    fn invalid(path: &Path, e: ConfigError) -> Self {
        let line_col = e.line_col();
        let (error, _) = e.into_parts();
        Self::Invalid {
            at: Place {
                path: path.to_owned(),
                line_col,
            },
            error: Box::new(error),
        }
    }

    /// Whether the message names the VM file (else the caller should).
    pub fn names_file(&self) -> bool {
        matches!(
            self,
            Self::Read { .. }
                | Self::Invalid { .. }
                | Self::ImageMissing { .. }
                | Self::ImageEmpty { .. }
        )
    }

    /// The `vm-config` rule broken, if that is the error.
    pub fn rule(&self) -> Option<&ErrorKind> {
        match self {
            Self::Invalid { error, .. } => Some(error),
            _ => None,
        }
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

/// Where a VM's keys are in its file, for the board checks of [`plan`]. Not part of the
/// VM's value: not serialized, and ignored by `==`.
#[derive(Clone, Debug, Default)]
pub struct Spans(pub Option<VmSpans>);

impl PartialEq for Spans {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Spans {}

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
    /// NUMA placement (`numa-node`, `numa`).
    #[serde(default)]
    pub numa: vm_config::NumaPolicy,
    /// Where it was written (present when parsed, absent once read back from JSON).
    #[serde(skip)]
    pub spans: Spans,
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
    /// The console switch key (`[console] escape`, as the byte a terminal sends); `None`:
    /// the hypervisor's default ([`vm_config::DEFAULT_ESCAPE`]).
    #[serde(default)]
    pub console_escape: Option<u8>,
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
        let specs = vm_config::parse_vms(text).map_err(|e| VmConfigError::invalid(path, e))?;
        let host =
            vm_config::parse_host_settings(text).map_err(|e| VmConfigError::invalid(path, e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let vms = specs
            .into_iter()
            .map(|spec| resolve(spec, path, base))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            path: path.to_owned(),
            vms,
            console_escape: host.console_escape,
        })
    }
}

/// Checks a VM file without building anything: reads it, applies the rules of `vm-config`
/// (syntax with line and column, unknown keys, ranges, names) and checks that every image it
/// names exists and is not empty, except those for which `produced_later(path)` is true
/// (images the caller builds or fetches itself, such as `target/guests/*`). A tool calls it
/// before it starts a long build, so that a typo costs seconds, not minutes.
pub fn check_file(
    path: &Path,
    produced_later: impl Fn(&Path) -> bool,
) -> Result<(), VmConfigError> {
    let path = std::path::absolute(path).map_err(|source| VmConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let text = std::fs::read_to_string(&path).map_err(|source| VmConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let specs = vm_config::parse_vms(&text).map_err(|e| VmConfigError::invalid(&path, e))?;
    let base = path.parent().unwrap_or(Path::new("."));
    for spec in &specs {
        for (kind, rel, at) in spec.images() {
            if produced_later(&normalize(&base.join(rel))) {
                continue;
            }
            let at = Place {
                path: path.clone(),
                line_col: Some((at.line, at.column)),
            };
            image(&spec.name, kind, base, Path::new(rel), at)?;
        }
    }
    Ok(())
}

/// A validated VM with its images found and sized on disk.
fn resolve(spec: vm_config::VmSpec, toml: &Path, base: &Path) -> Result<Vm, VmConfigError> {
    let file = |kind, rel: &str, at: &vm_config::Location| {
        let at = Place {
            path: toml.to_owned(),
            line_col: Some((at.line, at.column)),
        };
        image(&spec.name, kind, base, Path::new(rel), at)
    };
    let s = &spec.spans;
    let kernel = file(ImageKind::Kernel, &spec.kernel, &s.kernel)?;
    let optional = |kind, rel: &Option<String>, at: &Option<vm_config::Location>| {
        rel.as_deref()
            .zip(at.as_ref())
            .map(|(rel, at)| file(kind, rel, at))
            .transpose()
    };
    let initrd = optional(ImageKind::Initrd, &spec.initrd, &s.initrd)?;
    let dtb = optional(ImageKind::Dtb, &spec.dtb, &s.dtb)?;
    Ok(Vm {
        name: spec.name,
        vcpus: spec.vcpus,
        memory_bytes: spec.memory_bytes,
        kernel,
        initrd,
        dtb,
        cmdline: spec.cmdline,
        devices: spec.devices,
        disks: spec.disks,
        nics: spec.nics,
        numa: spec.numa,
        spans: Spans(Some(spec.spans)),
    })
}

/// The board model answers the rules' questions about the board.
impl BoardFacts for Board {
    fn board_name(&self) -> &str {
        &self.name
    }

    fn port_groups(&self) -> Vec<String> {
        self.network
            .port_groups
            .iter()
            .map(|g| g.name.clone())
            .collect()
    }

    fn device(&self, name: &str) -> Option<DeviceUse> {
        let device = self.devices.iter().find(|d| d.name == name)?;
        Some(match &device.status {
            Status::Disabled { reason } => DeviceUse::Disabled {
                reason: reason.clone(),
            },
            Status::Okay if self.is_console(&device.name) => DeviceUse::Console,
            Status::Okay => {
                let mine: Vec<(u64, u64)> = device.regs.iter().map(|r| (r.base, r.size)).collect();
                let gic = &self.gic;
                let gic_windows = [Some(&gic.distributor)]
                    .into_iter()
                    .chain(gic.redistributors.iter().map(Some))
                    .chain([
                        gic.cpu_interface.as_ref(),
                        gic.hyp_interface.as_ref(),
                        gic.virtual_cpu_interface.as_ref(),
                        gic.its.as_ref(),
                    ])
                    .flatten()
                    .map(|r| {
                        (
                            format!("GIC window `{}` [{:#x}, +{:#x}]", r.name, r.base, r.size),
                            r.base,
                            r.size,
                        )
                    });
                let others = self
                    .devices
                    .iter()
                    .filter(|d| d.name != device.name)
                    .flat_map(|d| {
                        d.regs.iter().map(move |r| {
                            (
                                format!(
                                    "device \"{}\" window `{}` [{:#x}, +{:#x}]",
                                    d.name, r.name, r.base, r.size
                                ),
                                r.base,
                                r.size,
                            )
                        })
                    })
                    .chain(gic_windows);
                match vm_config::page_neighbour(&mine, others) {
                    Some((page, other)) => DeviceUse::SharesPage { page, other },
                    None => DeviceUse::Passable,
                }
            }
        })
    }

    fn numa_nodes(&self) -> u32 {
        self.numa_nodes.len().max(1) as u32
    }

    fn passable_devices(&self) -> Vec<String> {
        self.devices
            .iter()
            .filter(|d| d.status == Status::Okay && !self.is_console(&d.name))
            .map(|d| d.name.clone())
            .collect()
    }
}

fn image(
    vm: &str,
    field: ImageKind,
    base: &Path,
    rel: &Path,
    at: Place,
) -> Result<ImageFile, VmConfigError> {
    let path = normalize(&base.join(rel));
    let size = match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => m.len(),
        _ => {
            return Err(VmConfigError::ImageMissing {
                at,
                vm: vm.to_owned(),
                field,
                path,
            })
        }
    };
    if size == 0 {
        return Err(VmConfigError::ImageEmpty {
            at,
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
        vm_config::check_board(board, &vm.name, &vm.devices, &vm.nics, vm.spans.0.as_ref())
            .and_then(|()| vm_config::check_numa(board, &vm.name, vm.numa, vm.spans.0.as_ref()))
            .map_err(|e| VmConfigError::invalid(&config.path, e))?;
    }
    let hv = board.hypervisor;
    let Some(load) = hv.load_address else {
        if let Some(vm) = config.vms.iter().find(|v| v.images().next().is_some()) {
            return Err(VmConfigError::NoStagingAddress {
                board: board.name.clone(),
                vm: vm.name.clone(),
            });
        }
        return Ok(Plan {
            staging_base: 0,
            staging_end: 0,
            images: Vec::new(),
        });
    };
    let hv_end = load.saturating_add(hv.size);
    // A region whose size the firmware gives holds `load` when it starts at or below it.
    let region = board
        .memory
        .iter()
        .find(|r| {
            r.known_base()
                .is_some_and(|b| b <= load && r.known_size().is_none_or(|size| load - b < size))
        })
        .ok_or_else(|| VmConfigError::HypervisorOutsideRam {
            board: board.name.clone(),
            load,
        })?;
    // Unknown for RAM the firmware sizes: the hypervisor checks at boot that the firmware's
    // RAM holds the staging area (`bootinfo::plan_ram`).
    let region_end = region
        .known_size()
        .map(|size| region.base.saturating_add(size));
    let outside = |staging_end: u64| VmConfigError::StagingOutsideRam {
        board: board.name.clone(),
        region: region.name.clone(),
        region_end: region_end.unwrap_or(u64::MAX),
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
    if region_end.is_some_and(|end| staging_end > end) {
        return Err(outside(staging_end));
    }
    // With RAM the firmware sizes, whether the VMs fit is known only at boot (the pool
    // refuses a VM it has no RAM for).
    let known: Option<u64> = board.memory.iter().map(|r| r.known_size()).sum();
    if let Some(ram) = known {
        let guest: u64 = config.vms.iter().map(|v| v.memory_bytes).sum();
        let staging = staging_end - staging_base;
        let reserved = staging_base - load;
        let free = ram.saturating_sub(reserved);
        if guest.saturating_add(staging) > free {
            return Err(VmConfigError::DoesNotFit {
                board: board.name.clone(),
                guest_mib: guest / MIB,
                staging_mib: staging / MIB,
                free_mib: free / MIB,
            });
        }
    }
    Ok(Plan {
        staging_base,
        staging_end,
        images,
    })
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
                enable_method: Default::default(),
            }],
            numa_nodes: vec![NumaNode { id: 0, socket: 0 }],
            numa_distances: vec![vec![10]],
            memory: vec![MemoryRegion {
                name: "dram0".into(),
                base: 0x4000_0000,
                size: 0x8000_0000,
                numa_node: 0,
                from_firmware: crate::model::FromFirmware::Nothing,
            }],
            hypervisor: HypervisorPlacement {
                load_address: Some(0x4020_0000),
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
                hyp_virt: None,
            },
            pmu: Pmu::Ppi(irq(23)),
            console: Some("uart0".into()),
            console_unavailable: None,
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
            stage2_ram_mappings: crate::model::Stage2RamMappings::default(),
            source: crate::model::Source::default(),
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
                s.parse(&text).unwrap_err().rule(),
                Some(ErrorKind::BadPartitionLabel { .. })
            ));
        }
        let text =
            format!("{ONE}\n[[vm.disk]]\npartition = \"a\"\ncontroller = \"ahci\"\nsize-mib = 0\n");
        assert!(matches!(
            s.parse(&text).unwrap_err().rule(),
            Some(ErrorKind::DiskSizeZero { .. })
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
            matches!(e.rule(), Some(ErrorKind::DiskShared { label, first, second })
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
        assert!(
            matches!(err.rule(), Some(ErrorKind::Syntax { .. })),
            "{err}"
        );
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
        assert!(matches!(
            s.parse("").unwrap_err().rule(),
            Some(ErrorKind::NoVms)
        ));
    }

    #[test]
    fn empty_name_is_rejected() {
        let s = Scratch::new("ename");
        s.file("Image", 1);
        let err = s.parse(&ONE.replace("\"linux\"", "\"\"")).unwrap_err();
        assert!(
            matches!(err.rule(), Some(ErrorKind::EmptyName { index: 0, .. })),
            "{err}"
        );
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let s = Scratch::new("dup");
        s.file("Image", 1);
        let err = s.parse(&format!("{ONE}{ONE}")).unwrap_err();
        assert!(matches!(err.rule(), Some(ErrorKind::DuplicateName { name }) if name == "linux"));
        assert!(err.to_string().contains("unique"), "{err}");
    }

    #[test]
    fn zero_vcpus_is_out_of_range() {
        let s = Scratch::new("vcpu0");
        s.file("Image", 1);
        let err = s.parse(&ONE.replace("vcpus = 2", "vcpus = 0")).unwrap_err();
        assert!(matches!(
            err.rule(),
            Some(ErrorKind::VcpusOutOfRange { vcpus: 0, .. })
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
            err.rule(),
            Some(ErrorKind::VcpusOutOfRange { vcpus: 65, .. })
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
            err.rule(),
            Some(ErrorKind::MemoryNotAligned { rounded: 66, .. })
        ));
        assert!(err.to_string().contains("VM `linux`"), "{err}");
    }

    #[test]
    fn messages_name_the_file_line_and_column() {
        let s = Scratch::new("where");
        s.file("Image", 1);
        let toml = s.0.join("vms.toml");
        let e = s
            .parse(&ONE.replace("memory_mib = 64", "memory_mib = 65"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "invalid VM file `{}:5:22`: VM `linux`",
                toml.display()
            )),
            "{e}"
        );
        assert!(e.contains("write 66"), "{e}");
        let e = s
            .parse(&format!("{ONE}memory = 3\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("{}:8:5`", toml.display())), "{e}");
        let e = s
            .parse(&ONE.replace("\"Image\"", "\"nothing\""))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "`{}:6:18`: VM `linux`: kernel file",
                toml.display()
            )),
            "{e}"
        );
        let cfg = s
            .parse(&format!("{ONE}[[vm.nic]]\nport-group = \"dmz\"\n"))
            .unwrap();
        let e = plan(&board(), &cfg).unwrap_err().to_string();
        assert!(e.contains(&format!("{}:9:14`", toml.display())), "{e}");
        // Read back from the build model (JSON), the VM has no spans: no line, still the file.
        let back: VmConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
        let e = plan(&board(), &back).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "invalid VM file `{}`: VM `linux`: NIC 0",
                toml.display()
            )),
            "{e}"
        );
    }

    #[test]
    fn memory_below_two_mib_is_rejected() {
        let s = Scratch::new("small");
        s.file("Image", 1);
        for v in ["0", "1"] {
            let err = s
                .parse(&ONE.replace("memory_mib = 64", &format!("memory_mib = {v}")))
                .unwrap_err();
            assert!(
                matches!(err.rule(), Some(ErrorKind::MemoryTooSmall { .. })),
                "{err}"
            );
        }
    }

    #[test]
    fn huge_memory_is_rejected() {
        let s = Scratch::new("huge");
        s.file("Image", 1);
        let err = s
            .parse(&ONE.replace("memory_mib = 64", "memory_mib = 9223372036854775806"))
            .unwrap_err();
        assert!(
            matches!(err.rule(), Some(ErrorKind::MemoryTooLarge { .. })),
            "{err}"
        );
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
            matches!(err.rule(), Some(ErrorKind::UnknownDevice { known, .. }) if known == "uart1"),
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
            matches!(err.rule(), Some(ErrorKind::ConsolePassthrough { .. })),
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

    #[test]
    fn passthrough_of_a_device_sharing_a_page_is_refused_naming_the_other() {
        let s = Scratch::new("pt5");
        s.file("Image", 1);
        let cfg = s
            .parse(&format!("{ONE}devices = [{{ passthrough = \"uart1\" }}]\n"))
            .unwrap();
        // uart1 at 0x0904_0000 (+0x1000) is alone in its page; a second window 0x4c0 into it
        // (byte-disjoint once uart1 is shrunk, as on Amlogic SoCs) is not.
        let mut b = board();
        b.devices[1].regs[0].size = 0x100;
        let mut other = b.devices[1].clone();
        other.name = "uart2".into();
        other.regs[0].base = 0x0904_04c0;
        other.regs[0].size = 0x18;
        b.devices.push(other);
        let err = plan(&b, &cfg).unwrap_err();
        assert!(
            matches!(
                err.rule(),
                Some(ErrorKind::PassthroughSharesPage {
                    page: 0x0904_0000,
                    ..
                })
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("device \"uart2\" window `regs` [0x90404c0, +0x18]"),
            "{err}"
        );
        // The same device in a page of its own passes.
        b.devices[3].regs[0].base = 0x0904_1000;
        assert!(plan(&b, &cfg).is_ok());
    }

    #[test]
    fn firmware_memory_stages_after_the_load_address_or_refuses_without_one() {
        let s = Scratch::new("fw");
        s.file("Image", 1);
        let cfg = s.parse(ONE).unwrap();
        let mut b = board();
        b.memory[0].size = 0;
        b.memory[0].from_firmware = crate::model::FromFirmware::Size;
        // The base is known: staged from the next 2 MiB past the hypervisor, with no end
        // or fit check (the hypervisor checks the firmware's RAM at boot).
        let p = plan(&b, &cfg).unwrap();
        assert_eq!(p.staging_base, 0x4220_0000);
        // Nothing known: no load address, nowhere to stage.
        b.memory[0].base = 0;
        b.memory[0].from_firmware = crate::model::FromFirmware::BaseAndSize;
        b.hypervisor.load_address = None;
        let err = plan(&b, &cfg).unwrap_err();
        assert!(
            matches!(err, VmConfigError::NoStagingAddress { .. })
                && err.to_string().contains("--boot-vms"),
            "{err}"
        );
        // No VMs: nothing to stage, fine.
        let empty = s.parse("vm = []\n").unwrap();
        let p = plan(&b, &empty).unwrap();
        assert_eq!((p.staging_base, p.staging_end), (0, 0));
    }
}
