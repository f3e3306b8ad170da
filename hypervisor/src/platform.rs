//! Static board description: the types that `macros::board!` fills from the board's KDL.
//!
//! Everything is `&'static` data so that generated code is plain `const`/`static` tables.
//! Addresses are host-physical; interrupt numbers are GIC INTIDs.
#![deny(unsafe_code)]

/// Support level (mirrors `platform_dsl::model::SupportLevel`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SupportLevel {
    /// Booted by a QEMU scenario or a recorded hardware run.
    Supported,
    /// Described and checked, never booted.
    Described,
    /// Built only with an explicit opt-in.
    Experimental,
    /// Community-maintained.
    Community,
}

impl SupportLevel {
    /// Lower-case name as written in KDL.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Supported => "supported",
            Self::Described => "described",
            Self::Experimental => "experimental",
            Self::Community => "community",
        }
    }
}

/// GIC architecture version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    /// GICv2 / GIC-400.
    V2,
    /// GICv3.
    V3,
}

/// Interrupt trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Level-sensitive.
    Level,
    /// Edge-triggered.
    Edge,
}

/// An interrupt line: GIC INTID and trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqDesc {
    /// GIC INTID.
    pub intid: u32,
    /// Trigger.
    pub trigger: Trigger,
}

/// An MMIO window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegDesc {
    /// Window name.
    pub name: &'static str,
    /// Host-physical base.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
}

/// One CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuDesc {
    /// MPIDR affinity fields (Aff3 at 39:32, Aff2..0 at 23:0).
    pub mpidr: u64,
    /// Socket.
    pub socket: u32,
    /// Cluster within socket.
    pub cluster: u32,
    /// NUMA node of this CPU.
    pub numa_node: u32,
    /// Core compatible.
    pub core: &'static str,
    /// How the hypervisor starts this CPU.
    pub enable: CpuEnable,
}

/// How a CPU is started (the board's `enable-method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuEnable {
    /// PSCI CPU_ON through the firmware.
    Psci,
    /// Spin table: the firmware parks the CPU in WFE until the 64-bit word at
    /// `release_addr` (physical, in RAM) holds its entry point.
    SpinTable {
        /// Physical address of the release word.
        release_addr: u64,
    },
}

/// A RAM region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryDesc {
    /// Region name.
    pub name: &'static str,
    /// Host-physical base (0 when the firmware gives it: `from_firmware`).
    pub base: u64,
    /// Size in bytes (0 when the firmware gives it: `from_firmware`).
    pub size: u64,
    /// NUMA node.
    pub numa_node: u32,
    /// What the firmware gives at boot instead of the KDL (`memory ... from="firmware"`).
    pub from_firmware: FromFirmware,
}

/// Which facts of a board KDL `memory` region the firmware gives at boot (the device
/// tree's `/memory` nodes or the UEFI memory map) instead of the KDL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FromFirmware {
    /// Base and size are the KDL's.
    Nothing,
    /// The base is the KDL's, the size the firmware's.
    Size,
    /// Both are the firmware's.
    BaseAndSize,
}

/// The interrupt controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GicDesc {
    /// Version.
    pub version: GicVersion,
    /// Compatible of the controller node.
    pub compatible: &'static str,
    /// GICD.
    pub distributor: RegDesc,
    /// GICv3 redistributor regions.
    pub redistributors: &'static [RegDesc],
    /// GICv2 GICC.
    pub cpu_interface: Option<RegDesc>,
    /// GICv2 GICH.
    pub hyp_interface: Option<RegDesc>,
    /// GICv2 GICV.
    pub virtual_cpu_interface: Option<RegDesc>,
    /// GICv3 ITS.
    pub its: Option<RegDesc>,
    /// Maintenance interrupt.
    pub maintenance_irq: IrqDesc,
    /// SPIs implemented.
    pub spi_count: u32,
}

/// Architected timer interrupts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerDesc {
    /// Secure physical timer PPI.
    pub secure_phys: IrqDesc,
    /// Non-secure physical timer PPI.
    pub phys: IrqDesc,
    /// Virtual timer PPI.
    pub virt: IrqDesc,
    /// EL2 physical timer PPI.
    pub hyp_phys: IrqDesc,
}

/// PMU overflow interrupts (mirrors `platform_dsl::model::Pmu`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmuDesc {
    /// One PPI for every CPU (usually INTID 23).
    Ppi(IrqDesc),
    /// One SPI per CPU: `(SPI, MPIDR affinity of its CPU)`, in CPU boot order, one per
    /// entry of `BoardDesc::cpus` (BCM2711, Tegra194, ZynqMP).
    PerCpuSpi(&'static [(IrqDesc, u64)]),
    /// No overflow interrupt the hypervisor can take, and why (`pmu unavailable=`): the
    /// counters work, overflows interrupt nobody; guests get a `/pmu` without `interrupts`.
    Unavailable(&'static str),
}

impl PmuDesc {
    /// The overflow interrupt of the CPU with affinity `mpidr`, if the board has one.
    pub fn irq_for(&self, mpidr: u64) -> Option<IrqDesc> {
        match *self {
            Self::Ppi(irq) => Some(irq),
            Self::PerCpuSpi(spis) => spis.iter().find(|(_, m)| *m == mpidr).map(|(irq, _)| *irq),
            Self::Unavailable(_) => None,
        }
    }
}

/// Device status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceStatus {
    /// Probe at boot.
    Okay,
    /// Never probed; `reason` goes in the boot banner.
    Disabled {
        /// Why.
        reason: &'static str,
    },
}

/// A board device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceDesc {
    /// Unique name.
    pub name: &'static str,
    /// Compatibles, most specific first.
    pub compatible: &'static [&'static str],
    /// MMIO windows.
    pub regs: &'static [RegDesc],
    /// Interrupts.
    pub irqs: &'static [IrqDesc],
    /// Status.
    pub status: DeviceStatus,
    /// Bus id (`usb:0bda:8153`), if on a discoverable bus.
    pub bus_id: Option<&'static str>,
    /// Input clock, for UARTs.
    pub clock_hz: Option<u64>,
    /// Its DMA snoops the CPU caches (`dma-coherent` in the KDL): no cache maintenance on
    /// its buffers.
    pub dma_coherent: bool,
}

impl DeviceDesc {
    /// True if the device is to be probed.
    pub const fn is_enabled(&self) -> bool {
        matches!(self.status, DeviceStatus::Okay)
    }
}

/// A quirk requested by the board.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuirkRefDesc {
    /// Quirk name.
    pub name: &'static str,
    /// Compatible or bus id it applies to.
    pub matches: &'static str,
}

/// How the board is verified (for the banner and `xtask`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerificationDesc {
    /// QEMU machine string (`-M` value).
    Qemu {
        /// `-M` value.
        machine: &'static str,
    },
    /// Upstream DTB path.
    DeviceTree {
        /// DTB path in Debian's kernel package.
        dtb: &'static str,
    },
    /// A recorded run on the hardware.
    Hardware {
        /// The run's log, relative to the board file.
        log: &'static str,
    },
    /// Not verified.
    None,
}

/// The whole board, as generated by `board!`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoardDesc {
    /// Board name.
    pub name: &'static str,
    /// Model string.
    pub model: &'static str,
    /// SoC node name.
    pub soc: &'static str,
    /// Support level.
    pub support: SupportLevel,
    /// Verification.
    pub verified_by: VerificationDesc,
    /// CPUs, boot CPU first.
    pub cpus: &'static [CpuDesc],
    /// RAM regions.
    pub memory: &'static [MemoryDesc],
    /// Hypervisor load (link) address; `None` when the KDL writes no `load=` (the RAM base
    /// comes from the firmware; the image is linked at 0 and relocates itself).
    pub hypervisor_base: Option<u64>,
    /// Bytes reserved for the hypervisor from `hypervisor_base`.
    pub hypervisor_size: u64,
    /// GIC.
    pub gic: GicDesc,
    /// Timer PPIs.
    pub timer: TimerDesc,
    /// PMU overflow interrupt(s).
    pub pmu: PmuDesc,
    /// Index into `devices` of the console UART; `None` for a board without one (`console
    /// unavailable=` in its KDL): the hypervisor then runs headless.
    pub console: Option<usize>,
    /// Index into `devices` of the interrupt controller: the GIC, a device like the others
    /// (compatible, every register window, the maintenance interrupt), probed by the driver
    /// its compatible matches; `gic` keeps the facts only a GIC has.
    pub interrupt_controller: usize,
    /// Devices, the interrupt controller included.
    pub devices: &'static [DeviceDesc],
    /// Quirks.
    pub quirks: &'static [QuirkRefDesc],
    /// The virtual switch's uplink and port groups.
    pub network: NetworkDesc,
    /// How VMs' RAM is mapped at stage 2 (the KDL's `stage2 ram-mappings=`): 2 MiB blocks
    /// unless the board says `pages`. Blocks suit hardware (more TLB reach, one walk level
    /// less). Pages exist for boards that are only QEMU machines: QEMU's TCG (7.2) records
    /// each guest TLB entry at the larger of its stage-1 and stage-2 sizes, so with 2 MiB
    /// blocks every entry counts as a large page and each guest TLBI by address flushes
    /// the guest's whole TLB (Linux boot: 924K TLB refills against 384K with 4 KiB pages;
    /// docs/performance.md).
    pub stage2_ram_mappings: Stage2RamMappings,
    /// Where each part is written in the board's KDL file (for boot-time messages that
    /// name the line to fix).
    pub source: SourceDesc,
    /// `numa_distances[a][b]`: distance from NUMA node `a` to node `b` (10 local, as in
    /// ACPI's SLIT); empty on a board with one node.
    pub numa_distances: &'static [&'static [u8]],
}

/// How a VM's RAM is mapped at stage 2 (mirrors `platform_dsl::model::Stage2RamMappings`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Stage2RamMappings {
    /// 2 MiB blocks (KDL `"blocks"`, the default): the most TLB reach and the shortest
    /// walks on hardware.
    #[default]
    Blocks,
    /// 4 KiB pages only (KDL `"pages"`): for boards that exist only as QEMU machines, where
    /// TCG would otherwise treat every guest TLB entry as a 2 MiB page and flush the
    /// guest's whole TLB on each TLBI by address.
    Pages,
}

/// The board's KDL file and the line of each of its parts (mirrors
/// `platform_dsl::model::Source`).
///
/// Keys: `board`, `topology`, `numa-distances`, `cpus`, `cpu.N` (boot order), `memory.NAME`,
/// `hypervisor`, `stage2`, `console`, `gic`, `gic.distributor`, `gic.redistributor.N`, `gic.its`,
/// `gic.cpu-interface`, `gic.hyp-interface`, `gic.virtual-cpu-interface`,
/// `gic.maintenance-irq`, `timer`, `pmu`, `device.NAME`, `device.NAME.reg.REG`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceDesc {
    /// File name (without directories), e.g. `boards.kdl`; empty when unknown.
    pub file: &'static str,
    /// `(key, line)` pairs; lines count from 1.
    pub lines: &'static [(&'static str, u32)],
}

impl SourceDesc {
    /// No source: a board built in code (tests).
    pub const NONE: SourceDesc = SourceDesc {
        file: "",
        lines: &[],
    };

    /// The line of part `key`, if known.
    pub fn line(&self, key: &str) -> Option<u32> {
        self.lines.iter().find(|(k, _)| *k == key).map(|(_, l)| *l)
    }

    /// `FILE:LINE` for part `key`, or a fallback naming the part when its line is unknown
    /// (`board KDL (gic.distributor)`).
    pub fn locate<'a>(&'a self, key: &'a str) -> Locate<'a> {
        Locate { src: self, key }
    }
}

/// Display of [`SourceDesc::locate`].
#[derive(Clone, Copy, Debug)]
pub struct Locate<'a> {
    src: &'a SourceDesc,
    key: &'a str,
}

impl core::fmt::Display for Locate<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let file = if self.src.file.is_empty() {
            "board KDL"
        } else {
            self.src.file
        };
        match self.src.line(self.key) {
            Some(line) => write!(f, "{file}:{line}"),
            None => write!(f, "{file} ({})", self.key),
        }
    }
}

/// Which of the machine's NICs the virtual switch uses as its uplink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UplinkChoice {
    /// The first NIC any driver brings up.
    Auto,
    /// The first USB NIC.
    Usb,
    /// The first PCI NIC.
    Pci,
    /// None: VMs talk only to each other.
    None,
}

/// A port group: VM NICs in one group share a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortGroupDesc {
    /// Its name, as VM files name it.
    pub name: &'static str,
    /// The 802.1Q VLAN ID its frames carry on the uplink; `None`: untagged.
    pub vlan: Option<u16>,
}

/// The board's `network` node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkDesc {
    /// The uplink.
    pub uplink: UplinkChoice,
    /// Port groups; the first is where a NIC without a `port-group` goes.
    pub port_groups: &'static [PortGroupDesc],
}

impl NetworkDesc {
    /// Any NIC as uplink, one untagged group `default` (a board without `network`).
    pub const DEFAULT: NetworkDesc = NetworkDesc {
        uplink: UplinkChoice::Auto,
        port_groups: &[PortGroupDesc {
            name: "default",
            vlan: None,
        }],
    };

    /// The group a NIC joins: the one named, or the first.
    pub fn group(&self, name: Option<&str>) -> Option<&'static PortGroupDesc> {
        match name {
            Some(n) => self.port_groups.iter().find(|g| g.name == n),
            None => self.port_groups.first(),
        }
    }
}

/// Whether a machine with these CPUs has PSCI firmware at EL3 to make SMC calls to: yes
/// unless every CPU starts by spin table (the Raspberry Pi's stock armstub8, which sets
/// `SCR_EL3.SMD` so that an `smc` is undefined). A board with PSCI firmware writes
/// `enable-method="psci"` for at least one CPU (the default).
pub fn psci_firmware_present(cpus: &[CpuDesc]) -> bool {
    cpus.iter().any(|c| c.enable == CpuEnable::Psci)
}

impl BoardDesc {
    /// Whether the board has PSCI firmware (see [`psci_firmware_present`]). Without it the
    /// hypervisor makes no SMC: no SMCCC discovery, and power-off parks the CPUs.
    pub fn has_psci_firmware(&self) -> bool {
        psci_firmware_present(self.cpus)
    }

    /// Number of NUMA nodes: one more than the highest node of a CPU or RAM region.
    pub fn numa_node_count(&self) -> u32 {
        let cpus = self.cpus.iter().map(|c| c.numa_node);
        let ram = self.memory.iter().map(|m| m.numa_node);
        cpus.chain(ram).max().map_or(1, |n| n + 1)
    }

    /// Distance from node `a` to node `b`: the board's `numa-distances`, else 10 for the
    /// same node and 20 between nodes (Linux's LOCAL_DISTANCE / REMOTE_DISTANCE).
    pub fn numa_distance(&self, a: u32, b: u32) -> u8 {
        self.numa_distances
            .get(a as usize)
            .and_then(|row| row.get(b as usize))
            .copied()
            .unwrap_or(if a == b { 10 } else { 20 })
    }

    /// The console device.
    pub fn console_device(&self) -> Option<&'static DeviceDesc> {
        self.devices.get(self.console?)
    }

    /// True for the devices the hypervisor itself drives and never gives to a guest: the
    /// console and the interrupt controller.
    pub fn is_hypervisor_device(&self, dev: &DeviceDesc) -> bool {
        [self.console, Some(self.interrupt_controller)]
            .iter()
            .flatten()
            .any(|&i| self.devices.get(i).is_some_and(|d| core::ptr::eq(d, dev)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn level(intid: u32) -> IrqDesc {
        IrqDesc {
            intid,
            trigger: Trigger::Level,
        }
    }

    const fn dev(name: &'static str) -> DeviceDesc {
        DeviceDesc {
            name,
            compatible: &[],
            regs: &[],
            irqs: &[],
            status: DeviceStatus::Okay,
            bus_id: None,
            clock_hz: None,
            dma_coherent: false,
        }
    }

    const fn cpu(mpidr: u64, enable: CpuEnable) -> CpuDesc {
        CpuDesc {
            mpidr,
            socket: 0,
            cluster: 0,
            numa_node: 0,
            core: "arm,cortex-a72",
            enable,
        }
    }

    #[test]
    fn a_board_whose_cpus_all_spin_has_no_psci_firmware() {
        let spin = |a| CpuEnable::SpinTable { release_addr: a };
        assert!(!psci_firmware_present(&[
            cpu(0, spin(0xd8)),
            cpu(1, spin(0xe0))
        ]));
        assert!(psci_firmware_present(&[
            cpu(0, CpuEnable::Psci),
            cpu(1, CpuEnable::Psci)
        ]));
        // One PSCI CPU: the firmware is there (CPU_ON goes to it).
        assert!(psci_firmware_present(&[
            cpu(0, spin(0xd8)),
            cpu(1, CpuEnable::Psci)
        ]));
    }

    #[test]
    fn console_and_interrupt_controller_are_the_hypervisors_own() {
        static DEVICES: [DeviceDesc; 3] = [dev("uart0"), dev("rtc"), dev("gic")];
        let board = BoardDesc {
            name: "b",
            model: "m",
            soc: "s",
            support: SupportLevel::Community,
            verified_by: VerificationDesc::None,
            cpus: &[],
            memory: &[],
            hypervisor_base: None,
            hypervisor_size: 0,
            gic: GicDesc {
                version: GicVersion::V3,
                compatible: "arm,gic-v3",
                distributor: RegDesc {
                    name: "gicd",
                    base: 0,
                    size: 0x1_0000,
                },
                redistributors: &[],
                cpu_interface: None,
                hyp_interface: None,
                virtual_cpu_interface: None,
                its: None,
                maintenance_irq: level(25),
                spi_count: 64,
            },
            timer: TimerDesc {
                secure_phys: level(29),
                phys: level(30),
                virt: level(27),
                hyp_phys: level(26),
            },
            pmu: PmuDesc::Ppi(level(23)),
            console: Some(0),
            interrupt_controller: 2,
            devices: &DEVICES,
            quirks: &[],
            network: crate::platform::NetworkDesc::DEFAULT,
            stage2_ram_mappings: Stage2RamMappings::Blocks,
            source: SourceDesc::NONE,
            numa_distances: &[],
        };
        assert!(board.is_hypervisor_device(&DEVICES[0]));
        assert!(board.is_hypervisor_device(&DEVICES[2]));
        assert!(!board.is_hypervisor_device(&DEVICES[1]));
        // Same name, another table entry: not the board's own.
        assert!(!board.is_hypervisor_device(&dev("gic")));
        assert!(core::ptr::eq(board.console_device().unwrap(), &DEVICES[0]));
        // A board without a console (`console unavailable=`): its UART is a guest's to have.
        let headless = BoardDesc {
            console: None,
            ..board
        };
        assert!(headless.console_device().is_none());
        assert!(!headless.is_hypervisor_device(&DEVICES[0]));
        assert!(headless.is_hypervisor_device(&DEVICES[2]));
    }

    #[test]
    fn source_lines_are_found_by_key() {
        static LINES: [(&str, u32); 2] = [("gic.distributor", 26), ("cpu.3", 73)];
        let src = SourceDesc {
            file: "boards.kdl",
            lines: &LINES,
        };
        assert_eq!(src.line("cpu.3"), Some(73));
        assert_eq!(src.line("cpu.4"), None);
        assert_eq!(src.locate("gic.distributor").to_string(), "boards.kdl:26");
        assert_eq!(src.locate("timer").to_string(), "boards.kdl (timer)");
        assert_eq!(
            SourceDesc::NONE.locate("timer").to_string(),
            "board KDL (timer)"
        );
    }

    #[test]
    fn pmu_ppi_serves_every_cpu() {
        let pmu = PmuDesc::Ppi(level(23));
        assert_eq!(pmu.irq_for(0x0), Some(level(23)));
        assert_eq!(pmu.irq_for(0x301), Some(level(23)));
    }

    #[test]
    fn an_unavailable_pmu_has_no_interrupt_for_any_cpu() {
        let pmu = PmuDesc::Unavailable("through a secondary controller");
        assert_eq!(pmu.irq_for(0x0), None);
        assert_eq!(pmu.irq_for(0x101), None);
    }

    #[test]
    fn pmu_per_cpu_spi_is_found_by_mpidr() {
        static SPIS: [(IrqDesc, u64); 2] = [(level(416), 0x0), (level(418), 0x100)];
        let pmu = PmuDesc::PerCpuSpi(&SPIS);
        assert_eq!(pmu.irq_for(0x100), Some(level(418)));
        assert_eq!(pmu.irq_for(0x0), Some(level(416)));
        assert_eq!(pmu.irq_for(0x1), None);
    }
}
