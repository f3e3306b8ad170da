//! Static VM table: the types that `macros::vms!` fills from the VM TOML file.
//!
//! Guest images (kernel, initrd, DTB) are not linked into the hypervisor: the boot loader
//! (QEMU's `-device loader`, U-Boot on hardware) places each file at its `staging_base`,
//! a host-physical address computed at build time by `platform_dsl::vmconfig`.
//!
//! VMs defined while the host runs are checked by the same rules (`vm-config`) and become
//! the same [`VmDesc`] through [`define()`].
#![deny(unsafe_code)]

pub mod define;

pub use define::{define, DefineError, ImageLoader};

/// A guest image placed in host RAM by the boot loader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageDesc {
    /// Path of the file at build time (for messages).
    pub path: &'static str,
    /// Host-physical address where the loader puts it.
    pub staging_base: u64,
    /// Size in bytes.
    pub size: u64,
}

/// A virtual device given to a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmDeviceDesc {
    /// Pass a board device (by name) through: its MMIO is mapped and its IRQs routed.
    Passthrough {
        /// Device name in the board.
        device: &'static str,
    },
}

/// The controller a virtual disk is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskController {
    /// NVMe on the VM's PCIe bus.
    Nvme,
    /// virtio-blk over virtio-pci.
    VirtioBlk,
    /// AHCI (SATA), the disk on port 0.
    Ahci,
}

/// A virtual disk: a GPT partition of one of the machine's disks, found by label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmDiskDesc {
    /// GPT partition label in the datastore.
    pub partition: &'static str,
    /// The controller the guest sees.
    pub controller: DiskController,
    /// The guest may not write it.
    pub read_only: bool,
    /// Bytes the guest sees (the partition must be at least this big); `None`: all of it.
    pub size: Option<u64>,
}

/// One VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmDesc {
    /// VM name, used to tag its console output.
    pub name: &'static str,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// Guest RAM in bytes (a multiple of 2 MiB).
    pub memory_size: u64,
    /// Kernel (Linux arm64 `Image` format: header with text_offset and image_size).
    pub kernel: ImageDesc,
    /// Initial ramdisk.
    pub initrd: Option<ImageDesc>,
    /// A DTB to use instead of the generated one.
    pub dtb: Option<ImageDesc>,
    /// Kernel command line (`/chosen/bootargs`).
    pub cmdline: &'static str,
    /// Extra devices.
    pub devices: &'static [VmDeviceDesc],
    /// Virtual disks.
    pub disks: &'static [VmDiskDesc],
    /// Virtual NICs.
    pub nics: &'static [VmNicDesc],
    /// Where its vCPUs and RAM go on the board's NUMA nodes (`numa-node`, `numa`).
    pub numa: VmNuma,
}

/// A VM's NUMA placement (the VM file's `numa-node` and `numa` keys).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VmNuma {
    /// Every vCPU on one node, the least loaded; RAM from that node.
    #[default]
    Local,
    /// Every vCPU on this node; RAM from it.
    Node(u32),
    /// vCPUs spread over the nodes; RAM from each node for its vCPUs there, and a virtual
    /// NUMA topology in the VM's device tree.
    Spread,
}

/// A virtio-net NIC of a VM, on the virtual switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmNicDesc {
    /// Its MAC address; `None`: generated from the VM's name and the NIC's position.
    pub mac: Option<[u8; 6]>,
    /// The board port group it joins; `None`: the board's first.
    pub port_group: Option<&'static str>,
}

/// The VM table and the staging area the images occupy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmTable {
    /// VMs in start order.
    pub vms: &'static [VmDesc],
    /// First host-physical byte of the staging area.
    pub staging_base: u64,
    /// One past the last staging byte; guest RAM is allocated outside the staging area.
    pub staging_end: u64,
    /// The console switch key of the VM file's `[console] escape` (the byte a terminal
    /// sends); `None`: `Ctrl-]`.
    pub console_escape: Option<u8>,
}
