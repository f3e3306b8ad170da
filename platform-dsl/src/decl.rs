//! Typed declarations of a board file: what `decode` produces and `merge`, `check` and
//! `lower` consume.
//!
//! Every value keeps its span and original spelling ([`Sp`]) so that the checks can point
//! at it and quote it. Parts a node may leave out (or that failed to decode, already
//! reported) are `Option`s.

use miette::SourceSpan;

use crate::model::{GicVersion, SupportLevel, Trigger, Verification};

/// Largest SPI count a GIC can implement (INTIDs 32..=1019).
pub const MAX_SPIS: u32 = 988;
/// Number of PPIs (INTIDs 16..=31).
pub const PPI_COUNT: u32 = 16;
/// GICv2 targets CPUs by an 8-bit mask.
pub const GICV2_MAX_CPUS: usize = 8;
/// Granule every region must be aligned to.
pub const PAGE: u64 = 0x1000;
/// MPIDR_EL1 bits that hold affinity (Aff3 39:32, Aff2..Aff0 23:0).
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// A value with its span and original spelling.
#[derive(Clone, Debug, PartialEq)]
pub struct Sp<T> {
    /// The decoded value.
    pub value: T,
    /// Where it was written (for defaults: the node that would hold it).
    pub span: SourceSpan,
    /// How it was written (empty for defaults).
    pub text: String,
}

impl<T> Sp<T> {
    /// A value read at `span`, spelled `text` (empty for a default).
    pub fn new(value: T, span: SourceSpan, text: impl Into<String>) -> Self {
        Sp {
            value,
            span,
            text: text.into(),
        }
    }
}

/// An MMIO window (`reg`, `distributor`, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct RegDecl {
    /// Window name.
    pub name: String,
    /// Base address.
    pub base: Sp<u64>,
    /// Size.
    pub size: Sp<u64>,
    /// The node name.
    pub span: SourceSpan,
}

/// PPI or SPI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqKind {
    /// Private peripheral interrupt (INTID 16 + n).
    Ppi,
    /// Shared peripheral interrupt (INTID 32 + n).
    Spi,
}

/// An interrupt as written (`irq spi=1 trigger="level"`, `ppi=9`, timer PPIs).
#[derive(Clone, Debug, PartialEq)]
pub struct IrqDecl {
    /// PPI or SPI.
    pub kind: IrqKind,
    /// The PPI/SPI number (not the INTID).
    pub number: Sp<u32>,
    /// Trigger.
    pub trigger: Trigger,
}

/// The `gic` node.
#[derive(Clone, Debug, PartialEq)]
pub struct GicDecl {
    /// The node name.
    pub span: SourceSpan,
    /// `version=`.
    pub version: Sp<GicVersion>,
    /// `compatible=`.
    pub compatible: Sp<String>,
    /// `spis=`.
    pub spis: Sp<u32>,
    /// `distributor`.
    pub distributor: Option<RegDecl>,
    /// `redistributor`s.
    pub redistributors: Vec<RegDecl>,
    /// `cpu-interface`.
    pub cpu_interface: Option<RegDecl>,
    /// `hyp-interface`.
    pub hyp_interface: Option<RegDecl>,
    /// `virtual-cpu-interface`.
    pub virtual_cpu_interface: Option<RegDecl>,
    /// `its`.
    pub its: Option<RegDecl>,
    /// `maintenance-irq`.
    pub maintenance: Option<IrqDecl>,
}

/// The `timer` node (PPI numbers).
#[derive(Clone, Debug, PartialEq)]
pub struct TimerDecl {
    /// The node name.
    pub span: SourceSpan,
    /// `secure-phys=`.
    pub secure_phys: IrqDecl,
    /// `phys=`.
    pub phys: IrqDecl,
    /// `virt=`.
    pub virt: IrqDecl,
    /// `hyp-phys=`.
    pub hyp_phys: IrqDecl,
    /// `hyp-virt=`: the EL2 virtual timer (ARMv8.1 VHE), where the SoC wires it.
    pub hyp_virt: Option<IrqDecl>,
}

/// The `pmu` node.
#[derive(Clone, Debug, PartialEq)]
pub struct PmuDecl {
    /// The node name.
    pub span: SourceSpan,
    /// `ppi=`, or one `irq spi= cpu=` child per CPU.
    pub irqs: PmuIrqsDecl,
}

/// How the PMU's overflow interrupts are wired.
#[derive(Clone, Debug, PartialEq)]
pub enum PmuIrqsDecl {
    /// `pmu ppi=N`: one PPI for every CPU.
    Ppi(IrqDecl),
    /// `pmu { irq spi=N cpu=MPIDR; ... }`: one SPI per CPU, in the order written.
    PerCpuSpi(Vec<PmuSpiDecl>),
    /// `pmu unavailable="REASON"`: no overflow interrupt reaches the hypervisor.
    Unavailable(Sp<String>),
}

/// One `irq spi=N cpu=MPIDR` inside `pmu`.
#[derive(Clone, Debug, PartialEq)]
pub struct PmuSpiDecl {
    /// The SPI.
    pub irq: IrqDecl,
    /// MPIDR affinity of the CPU it belongs to.
    pub cpu: Sp<u64>,
}

/// A `device` node; `None`/empty fields are not given (a board override keeps the SoC's).
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceDecl {
    /// Device name.
    pub name: Sp<String>,
    /// `compatible=` and following string arguments.
    pub compatible: Option<Vec<Sp<String>>>,
    /// `status=`: `true` for okay.
    pub okay: Option<Sp<bool>>,
    /// `reason=`.
    pub reason: Option<Sp<String>>,
    /// `bus-id=`.
    pub bus_id: Option<Sp<String>>,
    /// `reg` children.
    pub regs: Vec<RegDecl>,
    /// `irq` children.
    pub irqs: Vec<IrqDecl>,
    /// `clock` child.
    pub clock: Option<Sp<u64>>,
    /// `dma-coherent` child: the device's DMA snoops the CPU caches.
    pub dma_coherent: Option<Sp<bool>>,
}

/// A `soc` node.
#[derive(Clone, Debug, PartialEq)]
pub struct SocDecl {
    /// SoC name.
    pub name: Sp<String>,
    /// GIC.
    pub gic: Option<GicDecl>,
    /// Timer.
    pub timer: Option<TimerDecl>,
    /// PMU.
    pub pmu: Option<PmuDecl>,
    /// Devices.
    pub devices: Vec<DeviceDecl>,
    /// `stage2`.
    pub stage2: Option<Stage2Decl>,
    /// Names of the child nodes written, decoded or not (a broken one is already reported,
    /// so later stages do not report it missing).
    pub written: Vec<String>,
}

/// `topology sockets= clusters= cores=`.
#[derive(Clone, Debug, PartialEq)]
pub struct TopologyDecl {
    /// The node name.
    pub span: SourceSpan,
    /// Sockets.
    pub sockets: Sp<u32>,
    /// Clusters per socket.
    pub clusters: Sp<u32>,
    /// Cores per cluster.
    pub cores: Sp<u32>,
}

/// One `cpu` in `cpus`.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuDecl {
    /// MPIDR affinity.
    pub mpidr: Sp<u64>,
    /// Socket index.
    pub socket: Sp<u32>,
    /// Cluster index.
    pub cluster: Sp<u32>,
    /// Core compatible (from `cpus core=` or the cpu's own `core=`).
    pub core: Sp<String>,
    /// How the CPU is started (from `cpus enable-method=` or the cpu's own; `psci` when
    /// neither is written, spanning the cpu's name).
    pub enable_method: Sp<EnableMethodKind>,
    /// `release-addr=`: the spin-table release address.
    pub release_addr: Option<Sp<u64>>,
}

/// `enable-method=` of a CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnableMethodKind {
    /// `"psci"`: PSCI CPU_ON (the default).
    Psci,
    /// `"spin-table"`: the CPU waits on its `release-addr=`.
    SpinTable,
}

/// `memory "NAME" BASE size= node=`, or `memory "NAME" [BASE] from="firmware" node=` for
/// RAM the firmware describes at boot (its size, and its base when not written).
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryDecl {
    /// Region name.
    pub name: Sp<String>,
    /// Base; `None` only with `from="firmware"` and no base written.
    pub base: Option<Sp<u64>>,
    /// Size; `None` exactly when `from="firmware"`.
    pub size: Option<Sp<u64>>,
    /// Where `from="firmware"` is written, when it is.
    pub from_firmware: Option<SourceSpan>,
    /// NUMA node.
    pub node: Sp<u32>,
}

/// `numa-distances { from 0 10 20; from 1 20 10 }`: the distance from each NUMA node to
/// every node, as in ACPI's SLIT and the device tree's `distance-map`.
#[derive(Clone, Debug, PartialEq)]
pub struct DistancesDecl {
    /// The node name.
    pub span: SourceSpan,
    /// `from` rows, in order.
    pub rows: Vec<DistanceRowDecl>,
}

/// `from NODE D0 D1 ...`: distances from `NODE` to node 0, 1, ...
#[derive(Clone, Debug, PartialEq)]
pub struct DistanceRowDecl {
    /// The row's name (`from`).
    pub span: SourceSpan,
    /// The node the distances are from.
    pub from: Sp<u32>,
    /// Distance to node 0, 1, ...
    pub to: Vec<Sp<u64>>,
}

/// `hypervisor load= size=`.
#[derive(Clone, Debug, PartialEq)]
pub struct HypervisorDecl {
    /// The node name.
    pub span: SourceSpan,
    /// Load address; may be left out only when a `memory` region's base comes from the
    /// firmware (the image is position independent; it is then linked at 0).
    pub load: Option<Sp<u64>>,
    /// Reserved size.
    pub size: Sp<u64>,
}

/// `stage2 ram-mappings="blocks"|"pages"`.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage2Decl {
    /// The node name.
    pub span: SourceSpan,
    /// `ram-mappings=`.
    pub ram_mappings: Sp<crate::model::Stage2RamMappings>,
}

/// `quirk "NAME" matches=`.
#[derive(Clone, Debug, PartialEq)]
pub struct QuirkDecl {
    /// Quirk name.
    pub name: Sp<String>,
    /// Compatible or bus ID.
    pub matches: Sp<String>,
}

/// `network uplink="auto" { port-group "NAME" vlan=N }`.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkDecl {
    /// `uplink=`.
    pub uplink: Option<Sp<crate::model::UplinkChoice>>,
    /// `port-group` children, in order.
    pub port_groups: Vec<PortGroupDecl>,
}

/// `port-group "NAME" vlan=N`.
#[derive(Clone, Debug, PartialEq)]
pub struct PortGroupDecl {
    /// Name.
    pub name: Sp<String>,
    /// `vlan=`.
    pub vlan: Option<Sp<u64>>,
}

/// A `board` node; required parts are `None` when missing (already reported).
///
/// The same struct serves before and after [`crate::merge`]: merged, its `gic`, `timer`,
/// `pmu`, `stage2` and `devices` include the SoC's.
#[derive(Clone, Debug, PartialEq)]
pub struct BoardDecl {
    /// Board name.
    pub name: Sp<String>,
    /// `soc=`.
    pub soc: Option<Sp<String>>,
    /// `model`.
    pub model: Option<Sp<String>>,
    /// `support`.
    pub support: Option<Sp<SupportLevel>>,
    /// `verified-by`.
    pub verified_by: Option<Sp<Verification>>,
    /// `topology`.
    pub topology: Option<TopologyDecl>,
    /// `cpus` (None if the node is missing).
    pub cpus: Option<Vec<CpuDecl>>,
    /// Where the `cpus` node's name is written.
    pub cpus_span: Option<SourceSpan>,
    /// `memory` nodes.
    pub memory: Vec<MemoryDecl>,
    /// `hypervisor`.
    pub hypervisor: Option<HypervisorDecl>,
    /// `console "NAME"`.
    pub console: Option<Sp<String>>,
    /// `console unavailable="REASON"`: the board has no console the hypervisor can drive.
    pub console_unavailable: Option<Sp<String>>,
    /// Board-level GIC (overrides the SoC's).
    pub gic: Option<GicDecl>,
    /// Board-level timer.
    pub timer: Option<TimerDecl>,
    /// Board-level PMU.
    pub pmu: Option<PmuDecl>,
    /// Devices (new or overriding the SoC's by name).
    pub devices: Vec<DeviceDecl>,
    /// Quirks.
    pub quirks: Vec<QuirkDecl>,
    /// `network`.
    pub network: Option<NetworkDecl>,
    /// `stage2` (the board's, or else its SoC's once merged).
    pub stage2: Option<Stage2Decl>,
    /// `numa-distances`.
    pub numa_distances: Option<DistancesDecl>,
    /// Names of the board's own child nodes written, decoded or not, in order.
    pub written: Vec<String>,
}

impl BoardDecl {
    /// The CPUs in boot order (none when `cpus` is missing or broken).
    pub fn cpu_list(&self) -> &[CpuDecl] {
        self.cpus.as_deref().unwrap_or_default()
    }

    /// One NUMA node per socket on multi-socket boards, a single node otherwise.
    pub fn numa_node_count(&self) -> u32 {
        self.topology.as_ref().map_or(1, |t| t.sockets.value.max(1))
    }

    /// Whether every `memory` node the board wrote decoded (a broken one is already
    /// reported, and the hypervisor's placement is not judged against the rest).
    pub fn memory_complete(&self) -> bool {
        self.memory.len() == self.written.iter().filter(|n| *n == "memory").count()
    }
}

/// Declarations for the stages' unit tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::{DeviceDecl, IrqDecl, IrqKind, Sp};
    use crate::model::Trigger;
    use miette::SourceSpan;

    /// `value` with an empty span.
    pub fn sp<T>(value: T) -> Sp<T> {
        Sp::new(value, SourceSpan::from(0..0), "")
    }

    /// An enabled PL011 `name` with SPI 1 and a 24 MHz clock.
    pub fn dev(name: &str) -> DeviceDecl {
        DeviceDecl {
            name: sp(name.to_owned()),
            compatible: Some(vec![sp("arm,pl011".to_owned())]),
            okay: None,
            reason: None,
            bus_id: None,
            regs: vec![],
            irqs: vec![IrqDecl {
                kind: IrqKind::Spi,
                number: sp(1),
                trigger: Trigger::Level,
            }],
            clock: Some(sp(24_000_000)),
            dma_coherent: None,
        }
    }
}
