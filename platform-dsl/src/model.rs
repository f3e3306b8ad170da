//! The lowered board model: plain data, no spans, what `macros` and `xtask` consume.
//!
//! Every number here has been checked (see `decode` and `check`). Addresses are host-physical.
//! Interrupt numbers are GIC INTIDs (SGI 0-15, PPI 16-31, SPI 32-1019).

use serde::{Deserialize, Serialize};

/// One board, after its SoC node has been merged in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Board {
    /// Board name as written in `board "NAME"`, e.g. `qemu-virt`.
    pub name: String,
    /// Human-readable model string (`model "..."`).
    pub model: String,
    /// Name of the shared `soc` node this board extends.
    pub soc: String,
    /// Support level; `Experimental` boards need an explicit opt-in to build.
    pub support: SupportLevel,
    /// How the board is verified in CI.
    pub verified_by: Verification,
    /// CPU topology as declared; `cpus.len()` always equals
    /// `sockets * clusters_per_socket * cores_per_cluster`.
    pub topology: Topology,
    /// Every CPU, in boot order; `cpus[0]` is the boot CPU.
    pub cpus: Vec<Cpu>,
    /// NUMA nodes (one per socket on multi-socket boards; a single node 0 otherwise).
    pub numa_nodes: Vec<NumaNode>,
    /// `numa_distances[a][b]`: the distance from node `a` to node `b` (10 local; from
    /// `numa-distances`, or 20 between different nodes when the board writes none).
    #[serde(default)]
    pub numa_distances: Vec<Vec<u8>>,
    /// RAM regions, sorted by base, non-overlapping.
    pub memory: Vec<MemoryRegion>,
    /// Where the hypervisor image, its stacks and heap live; inside one memory region.
    pub hypervisor: HypervisorPlacement,
    /// The interrupt controller.
    pub gic: Gic,
    /// Architected timer interrupts.
    pub timer: Timer,
    /// PMU overflow interrupt(s): one PPI, or one SPI per CPU.
    pub pmu: Pmu,
    /// Name of the device (in `devices`) used as the hypervisor console; `None` for a board
    /// without one (`console unavailable="REASON"`).
    pub console: Option<String>,
    /// Why the board has no console (`console unavailable=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_unavailable: Option<String>,
    /// All devices, enabled or not.
    pub devices: Vec<Device>,
    /// Quirk sets this board asks for.
    pub quirks: Vec<QuirkRef>,
    /// The virtual switch: which of the machine's NICs is its uplink, and the port groups
    /// VMs' NICs join (`network` node; without it: any NIC, one untagged group `default`).
    #[serde(default)]
    pub network: Network,
    /// How VMs' RAM is mapped at stage 2 (`stage2 ram-mappings=`; without it: 2 MiB
    /// blocks).
    #[serde(default)]
    pub stage2_ram_mappings: Stage2RamMappings,
    /// Where each part of the board is written (file and line), so that a check made at
    /// boot (the firmware's ACPI tables against this board) can name the line to fix.
    #[serde(default, skip_serializing_if = "Source::is_empty")]
    pub source: Source,
}

impl Board {
    /// The console device, if the board has one.
    pub fn console_device(&self) -> Option<&Device> {
        let name = self.console.as_deref()?;
        self.devices.iter().find(|d| d.name == name)
    }

    /// True when `name` is the board's console.
    pub fn is_console(&self, name: &str) -> bool {
        self.console.as_deref() == Some(name)
    }
}

/// The file a board was read from and the line of each of its parts.
///
/// Keys: `board`, `topology`, `numa-distances`, `cpus`, `cpu.N` (boot order), `memory.NAME`, `hypervisor`,
/// `stage2`, `console`, `gic`, `gic.distributor`, `gic.redistributor.N`, `gic.its`,
/// `gic.cpu-interface`, `gic.hyp-interface`, `gic.virtual-cpu-interface`,
/// `gic.maintenance-irq`, `timer`, `pmu`, `device.NAME`, `device.NAME.reg.REG`. Parts that
/// come from the board's `soc` point into the `soc` node. Lines count from 1.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The file name as given to the loader (empty for a board built in code).
    pub file: String,
    /// `(key, line)` pairs.
    pub lines: Vec<(String, u32)>,
}

impl Source {
    /// True for a board built in code (no file, no lines).
    pub fn is_empty(&self) -> bool {
        self.file.is_empty() && self.lines.is_empty()
    }

    /// The line of part `key`, if the board wrote it.
    pub fn line(&self, key: &str) -> Option<u32> {
        self.lines.iter().find(|(k, _)| k == key).map(|(_, l)| *l)
    }
}

/// Which of the machine's NICs the virtual switch uses as its uplink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UplinkChoice {
    /// The first NIC any driver brings up.
    #[default]
    Auto,
    /// The first USB NIC (boards whose onboard Ethernet is unusable).
    Usb,
    /// The first PCI NIC.
    Pci,
    /// None: VMs talk only to each other.
    None,
}

impl UplinkChoice {
    /// The name written in the KDL.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Usb => "usb",
            Self::Pci => "pci",
            Self::None => "none",
        }
    }
}

/// How a VM's RAM is mapped at stage 2 (the board's `stage2 ram-mappings=`).
///
/// Blocks are right for hardware: a 2 MiB stage-2 entry gives the TLB more reach and
/// the walk one level less. QEMU's TCG (7.2) records each guest TLB entry at the larger of
/// its stage-1 and stage-2 page sizes, so with 2 MiB blocks every entry counts as a large
/// page and each guest TLBI by address flushes the guest's whole TLB; boards that exist
/// only as QEMU machines say `pages` (docs/boards-kdl.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage2RamMappings {
    /// `"blocks"`: 2 MiB blocks (the default).
    #[default]
    Blocks,
    /// `"pages"`: 4 KiB pages only.
    Pages,
}

impl Stage2RamMappings {
    /// The name written in the KDL.
    pub fn name(self) -> &'static str {
        match self {
            Self::Blocks => "blocks",
            Self::Pages => "pages",
        }
    }
}

/// A port group: VM NICs in one group share a segment (a VLAN on the uplink, or untagged).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortGroup {
    /// Its name, as VM files name it (`port-group = "lan"`).
    pub name: String,
    /// The 802.1Q VLAN ID its frames carry on the uplink; `None`: untagged.
    pub vlan: Option<u16>,
}

/// The board's `network` node, lowered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// The uplink.
    pub uplink: UplinkChoice,
    /// Port groups in the order written; the first is where a NIC without a
    /// `port-group` goes.
    pub port_groups: Vec<PortGroup>,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            uplink: UplinkChoice::Auto,
            port_groups: vec![PortGroup {
                name: "default".to_owned(),
                vlan: None,
            }],
        }
    }
}

/// Support level of a board.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SupportLevel {
    /// Booted end to end: by a QEMU scenario of `cargo xtask test` (`verified-by "qemu"`)
    /// or by a recorded run on the hardware (`verified-by "hardware" log=...`).
    Supported,
    /// Described and checked (against an upstream device tree, or the vendor's sources the
    /// KDL cites) but never booted: builds like a supported board, promises no more.
    Described,
    /// Builds only with an explicit opt-in; some devices are disabled.
    Experimental,
    /// Maintained by the community outside the core team.
    Community,
}

/// How a board description is verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verification {
    /// Booted under QEMU with this machine line, e.g.
    /// `machine: "virt,virtualization=on,gic-version=3"`, `cpu: "cortex-a72"`,
    /// `smp: 4`, `memory_mib: 2048`, `extra: []`.
    Qemu {
        /// Value of `-M`.
        machine: String,
        /// Value of `-cpu`.
        cpu: String,
        /// Value of `-smp`.
        smp: u32,
        /// Value of `-m`, in MiB.
        memory_mib: u64,
        /// Extra QEMU arguments.
        extra: Vec<String>,
    },
    /// Checked against an upstream device tree (path inside Debian's kernel package).
    DeviceTree {
        /// e.g. `marvell/armada-8040-mcbin.dtb`.
        dtb: String,
    },
    /// Booted on the real board; `log` is the recorded console output of that run (a path
    /// relative to the board file), which must show the hypervisor's banner for the board.
    Hardware {
        /// e.g. `docs/hardware-runs/raspberrypi-4b.log`.
        log: String,
    },
    /// Not verified by any tool; the KDL cites its sources.
    None,
}

/// Declared CPU topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// Number of sockets (2 on Mt. Jade).
    pub sockets: u32,
    /// Clusters in each socket.
    pub clusters_per_socket: u32,
    /// Cores in each cluster.
    pub cores_per_cluster: u32,
}

/// One CPU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cpu {
    /// Affinity value as in MPIDR_EL1 (Aff3 in bits 39:32, Aff2..Aff0 in 23:0).
    pub mpidr: u64,
    /// Socket index.
    pub socket: u32,
    /// Cluster index within the socket.
    pub cluster: u32,
    /// Core compatible, e.g. `arm,cortex-a72`.
    pub core: String,
    /// How the hypervisor starts this CPU (left out of the JSON when PSCI, the default).
    #[serde(default, skip_serializing_if = "EnableMethod::is_psci")]
    pub enable_method: EnableMethod,
}

impl EnableMethod {
    /// PSCI, the default.
    pub fn is_psci(&self) -> bool {
        *self == Self::Psci
    }
}

/// How a CPU is started (the device tree's `enable-method`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnableMethod {
    /// PSCI CPU_ON through the firmware (SMC/HVC).
    #[default]
    Psci,
    /// Spin table: the CPU waits (WFE) until its release address holds an entry point.
    SpinTable {
        /// Physical address of the 8-byte release word (inside RAM, 8-byte aligned).
        release_addr: u64,
    },
}

/// A NUMA node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumaNode {
    /// Node id.
    pub id: u32,
    /// Socket the node belongs to.
    pub socket: u32,
}

/// A named RAM region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryRegion {
    /// Region name, e.g. `dram0`.
    pub name: String,
    /// Base address (0 when the firmware gives it: see `from_firmware`).
    pub base: u64,
    /// Size in bytes (0 when the firmware gives it: see `from_firmware`).
    pub size: u64,
    /// NUMA node.
    pub numa_node: u32,
    /// What the firmware gives at boot (`from="firmware"`) instead of the KDL.
    #[serde(default, skip_serializing_if = "FromFirmware::is_nothing")]
    pub from_firmware: FromFirmware,
}

impl MemoryRegion {
    /// The base, when the KDL gives it.
    pub fn known_base(&self) -> Option<u64> {
        (self.from_firmware != FromFirmware::BaseAndSize).then_some(self.base)
    }

    /// The size, when the KDL gives it.
    pub fn known_size(&self) -> Option<u64> {
        (self.from_firmware == FromFirmware::Nothing).then_some(self.size)
    }
}

/// Which facts of a `memory` region the firmware gives at boot (its device tree's
/// `/memory` nodes or the UEFI memory map) rather than the KDL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FromFirmware {
    /// `memory "dram0" 0x4000_0000 size=0x8000_0000`: the KDL gives base and size.
    #[default]
    Nothing,
    /// `memory "dram0" 0x8000_0000 from="firmware"`: the base is known, the size is not.
    Size,
    /// `memory "dram0" from="firmware"`: neither is known before boot.
    BaseAndSize,
}

impl FromFirmware {
    /// `Nothing` (for serde's `skip_serializing_if`).
    pub fn is_nothing(&self) -> bool {
        *self == Self::Nothing
    }
}

/// The hypervisor's own RAM: image, per-CPU stacks, heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HypervisorPlacement {
    /// Link and load address of the image (4 KiB aligned, inside RAM); `None` when the KDL
    /// writes no `load=` (allowed only when the firmware gives a RAM base): the image is
    /// then linked at 0 and only ever booted as the relocatable Image.
    pub load_address: Option<u64>,
    /// Bytes reserved from `load_address` for image + stacks + heap.
    pub size: u64,
}

/// GIC architecture version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GicVersion {
    /// GICv2 (GIC-400).
    V2,
    /// GICv3.
    V3,
}

/// An MMIO register window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reg {
    /// Window name, e.g. `gicd` or `regs`.
    pub name: String,
    /// Base address.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
}

/// The interrupt controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gic {
    /// Architecture version.
    pub version: GicVersion,
    /// Compatible string of the controller, e.g. `arm,gic-v3` or `arm,gic-400`.
    pub compatible: String,
    /// GICD.
    pub distributor: Reg,
    /// GICv3: redistributor regions (one per socket on multi-socket boards). Empty on GICv2.
    pub redistributors: Vec<Reg>,
    /// GICv2: GICC (physical CPU interface). `None` on GICv3.
    pub cpu_interface: Option<Reg>,
    /// GICv2: GICH (virtual interface control). `None` on GICv3.
    pub hyp_interface: Option<Reg>,
    /// GICv2: GICV (virtual CPU interface). `None` on GICv3.
    pub virtual_cpu_interface: Option<Reg>,
    /// GICv3 ITS, if any.
    pub its: Option<Reg>,
    /// Virtual maintenance interrupt (a PPI, usually INTID 25).
    pub maintenance_irq: Irq,
    /// Number of SPIs implemented (32..=988).
    pub spi_count: u32,
}

/// Trigger type of an interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// Level-sensitive, active high.
    Level,
    /// Edge-triggered, rising.
    Edge,
}

/// An interrupt line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Irq {
    /// GIC INTID (PPI n is 16+n, SPI n is 32+n).
    pub intid: u32,
    /// Trigger.
    pub trigger: Trigger,
}

/// Architected timer PPIs (INTIDs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    /// Secure physical timer (usually 29).
    pub secure_phys: Irq,
    /// Non-secure physical timer (usually 30).
    pub phys: Irq,
    /// Virtual timer (usually 27).
    pub virt: Irq,
    /// EL2 physical timer (usually 26).
    pub hyp_phys: Irq,
    /// EL2 virtual timer (ARMv8.1 VHE; usually 28), where the SoC wires it (`hyp-virt=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hyp_virt: Option<Irq>,
}

/// PMU overflow interrupts.
///
/// Most SoCs wire each core's overflow line to one PPI. Some (BCM2711, Tegra194, ZynqMP)
/// wire it to an SPI per core instead (device tree: one `interrupts` entry per CPU plus
/// `interrupt-affinity`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pmu {
    /// One PPI shared by every CPU (usually INTID 23, `pmu ppi=7`).
    Ppi(Irq),
    /// One SPI per CPU, in CPU boot order (the order of `Board::cpus`); every CPU has
    /// exactly one entry.
    PerCpuSpi(Vec<PmuSpi>),
    /// No overflow interrupt the hypervisor can take (`pmu unavailable="REASON"`): guests
    /// get a PMU that counts but never interrupts.
    Unavailable {
        /// Why, e.g. "through the AP806 PIC, which no plugin drives".
        reason: String,
    },
}

/// The overflow SPI of one CPU's PMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PmuSpi {
    /// The SPI (INTID 32..=1019).
    pub irq: Irq,
    /// MPIDR affinity of the CPU it belongs to (one of `Board::cpus`).
    pub mpidr: u64,
}

/// Device status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Probed at boot.
    Okay,
    /// Never probed; the reason is shown in the boot banner.
    Disabled {
        /// Why, e.g. "integrated GPU cannot be shared or passed through yet".
        reason: String,
    },
}

/// A device on the board.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Unique name, e.g. `uart0`.
    pub name: String,
    /// Compatible strings, most specific first.
    pub compatible: Vec<String>,
    /// MMIO windows.
    pub regs: Vec<Reg>,
    /// Interrupts.
    pub irqs: Vec<Irq>,
    /// Okay or disabled (with reason).
    pub status: Status,
    /// Bus identifier for devices found on a bus, e.g. `usb:0bda:8153` or `pci:1b4b:9215`.
    pub bus_id: Option<String>,
    /// Input clock in Hz, for UARTs that need it.
    pub clock_hz: Option<u64>,
    /// Its DMA snoops the CPU caches (`dma-coherent`, as in the device tree): drivers skip
    /// cache maintenance on its buffers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dma_coherent: bool,
}

/// A quirk set requested by the board (matched to a quirk plugin by name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuirkRef {
    /// Quirk name, e.g. `rtl8153-usb-nic`.
    pub name: String,
    /// What it applies to: a compatible (`snps,dwc3`) or a bus ID (`usb:0bda:8153`).
    pub matches: String,
}
