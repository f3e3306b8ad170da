//! Guest device tree generation (`vm-fdt`): the description of the virtual platform that a
//! Linux guest boots with, shaped like QEMU's `virt` machine DTB.
//!
//! Generated nodes: root (`linux,dummy-virt`, 2 address/size cells, `interrupt-parent` =
//! the GIC), `/cpus` (`cpu@N`, PSCI enable method), `/memory@...`, `/psci` (HVC),
//! `/intc@...` (GICv3 with GICD + GICR, or GICv2 with GICD + GICC), `/timer`, `/pmu`,
//! `/apb-pclk` (24 MHz fixed clock), `/pl011@...`, the power button (`/pl061@...` and
//! `/gpio-keys`, see [`PowerButtonDt`]) and `/chosen`; with PCI devices also
//! `/pcie@...` (a generic ECAM host bridge, see [`PciHostDt`]) and the MSI controller it
//! sends messages to (`msi-controller` + `mbi-ranges` on a GICv3 node, or a
//! `arm,gic-v2m-frame` child of a GICv2 node).
#![deny(unsafe_code)]

use crate::types::{GuestPhysAddr, IntId};
use crate::vm::layout;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use vm_fdt::FdtWriter;

/// `interrupts` flag: level-sensitive, active high (Linux `IRQ_TYPE_LEVEL_HIGH`), what
/// QEMU's `virt` uses for the timer, PMU, maintenance and UART interrupts.
const IRQ_LEVEL_HIGH: u32 = 4;
/// First cell of an `interrupts` triple: SPI.
const GIC_SPI: u32 = 0;
/// First cell of an `interrupts` triple: PPI.
const GIC_PPI: u32 = 1;
/// Phandle of the interrupt controller.
const PHANDLE_GIC: u32 = 1;
/// Phandle of the APB clock.
const PHANDLE_APB_PCLK: u32 = 2;
/// Phandle of the GICv2m frame.
const PHANDLE_V2M: u32 = 3;
/// Phandle of the power button's PL061 GPIO.
const PHANDLE_GPIO: u32 = 4;
/// Linux input event code of the power key (`KEY_POWER`, include/uapi/linux/input-event-codes.h).
pub const KEY_POWER: u32 = 116;
/// `ranges` space code of 32-bit non-prefetchable memory (`phys.hi` `ss` = 0b10).
const PCI_SPACE_MEM32: u32 = 0x0200_0000;
/// Frequency of the fixed APB clock feeding the PL011 (as QEMU's `virt`).
pub const APB_PCLK_HZ: u32 = 24_000_000;

/// A guest-physical window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Base.
    pub base: GuestPhysAddr,
    /// Size in bytes.
    pub size: u64,
}

/// Interrupt controller the guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestGic {
    /// GICv3: distributor and one contiguous redistributor region.
    V3 {
        /// GICD.
        dist: Window,
        /// GICR frames of all vCPUs.
        redist: Window,
    },
    /// GICv2: distributor and CPU interface.
    V2 {
        /// GICD.
        dist: Window,
        /// GICC.
        cpu: Window,
    },
}

/// Architected timer PPIs, as INTIDs (16-31).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerPpis {
    /// Secure physical timer.
    pub secure_phys: IntId,
    /// Non-secure physical timer.
    pub phys: IntId,
    /// Virtual timer.
    pub virt: IntId,
    /// EL2 (hypervisor) physical timer.
    pub hyp_phys: IntId,
}

/// A board device passed through to the guest: described at its host address (the VM maps
/// it identity), with its SPIs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassthroughNode<'a> {
    /// Node name, e.g. `rtc`.
    pub name: &'a str,
    /// Compatibles, most specific first.
    pub compatible: &'a [&'a str],
    /// MMIO windows (guest address = host address).
    pub regs: Vec<Window>,
    /// SPIs (same INTID in guest and host).
    pub spis: Vec<IntId>,
}

/// Where a PCI host bridge's MSIs go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestMsi {
    /// GICv3 message-based SPIs: the GIC node itself is the MSI controller (doorbell
    /// `GICD_SETSPI_NSR`), for INTIDs `first_intid..first_intid + count`.
    Mbi {
        /// First INTID.
        first_intid: u32,
        /// How many.
        count: u32,
    },
    /// A GICv2m frame (its `MSI_TYPER` tells the guest the SPIs).
    V2m {
        /// The frame.
        frame: Window,
    },
}

/// A generic ECAM PCIe host bridge (`pci-host-ecam-generic`, Linux's `pci-host-generic`
/// driver), as [`crate::pci::ecam`] emulates it.
///
/// No `linux,pci-probe-only`: the guest assigns the BARs itself inside `mem`, as it does
/// on QEMU's `virt` (the bridge starts every BAR unassigned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciHostDt {
    /// The ECAM window (1 MiB per bus, from bus 0).
    pub ecam: Window,
    /// The 32-bit memory window BARs are placed in (CPU address = PCI address).
    pub mem: Window,
    /// The SPIs of INTA..INTD (swizzled by slot in the `interrupt-map`).
    pub intx: [IntId; 4],
    /// Where MSIs go; `None` leaves out `msi-parent` (INTx only).
    pub msi: Option<GuestMsi>,
}

impl PciHostDt {
    /// The bridge at the addresses of [`crate::vm::layout`], for a GICv3 (MBI) or GICv2
    /// (v2m frame) VM.
    pub fn from_layout(gic_v3: bool) -> Self {
        let msi = if gic_v3 {
            GuestMsi::Mbi {
                first_intid: layout::MSI_FIRST_INTID,
                count: layout::MSI_SPIS,
            }
        } else {
            GuestMsi::V2m {
                frame: Window {
                    base: GuestPhysAddr(layout::GICV2M_BASE),
                    size: layout::GICV2M_SIZE,
                },
            }
        };
        Self {
            ecam: Window {
                base: GuestPhysAddr(layout::PCI_ECAM_BASE),
                size: layout::PCI_ECAM_SIZE,
            },
            mem: Window {
                base: GuestPhysAddr(layout::PCI_MMIO_BASE),
                size: layout::PCI_MMIO_SIZE,
            },
            intx: layout::PCI_INTX_INTIDS.map(IntId),
            msi: Some(msi),
        }
    }

    /// The last bus number the ECAM window covers.
    fn last_bus(&self) -> u32 {
        ((self.ecam.size >> 20).clamp(1, 256) - 1) as u32
    }

    /// The SPIs the bridge uses: INTx, and the MSI range of MBI (a v2m frame's range
    /// is in [`crate::vm::layout`] and not described here).
    fn spis(&self) -> impl Iterator<Item = u32> + '_ {
        let msi = match self.msi {
            Some(GuestMsi::Mbi { first_intid, count }) => first_intid..first_intid + count,
            _ => layout::MSI_FIRST_INTID..layout::MSI_FIRST_INTID + layout::MSI_SPIS,
        };
        self.intx.iter().map(|i| i.0).chain(msi)
    }

    /// The guest-physical windows the bridge occupies.
    fn windows(&self) -> Vec<Window> {
        let mut w = Vec::from([self.ecam, self.mem]);
        if let Some(GuestMsi::V2m { frame }) = self.msi {
            w.push(frame);
        }
        w
    }
}

/// The virtual power button: a PL061 GPIO (`arm,pl061`) and a `gpio-keys` node whose
/// `poweroff` key is one of its lines with code [`KEY_POWER`], exactly as QEMU's `virt`
/// describes its own (`create_gpio_devices` in hw/arm/virt.c), so that guests that power
/// off on `system_powerdown` there do here too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PowerButtonDt {
    /// The GPIO's window.
    pub gpio: Window,
    /// Its interrupt (an SPI).
    pub intid: IntId,
    /// The button's line.
    pub line: u32,
}

impl PowerButtonDt {
    /// The button at the address of [`crate::vm::layout`], on
    /// [`crate::vgpio::POWER_BUTTON_LINE`].
    pub fn from_layout() -> Self {
        Self {
            gpio: Window {
                base: GuestPhysAddr(layout::GPIO_BASE),
                size: layout::GPIO_SIZE,
            },
            intid: IntId(layout::GPIO_INTID),
            line: u32::from(crate::vgpio::POWER_BUTTON_LINE),
        }
    }
}

/// Everything the guest device tree describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestDtbConfig<'a> {
    /// How many times the VM has been reset (`/chosen/hypervisor,reset-count`).
    pub reset_count: u32,
    /// Passed-through board devices.
    pub passthrough: Vec<PassthroughNode<'a>>,
    /// vCPUs (`cpu@0` .. `cpu@{vcpus-1}`, MPIDR Aff0 = index).
    pub vcpus: usize,
    /// Guest RAM.
    pub ram: Window,
    /// Interrupt controller.
    pub gic: GuestGic,
    /// GIC maintenance interrupt PPI.
    pub maintenance: IntId,
    /// PL011 window.
    pub uart: Window,
    /// PL011 interrupt (an SPI).
    pub uart_intid: IntId,
    /// The power button; `None` leaves out its GPIO and `gpio-keys` nodes.
    pub power_button: Option<PowerButtonDt>,
    /// Kernel command line.
    pub cmdline: &'a str,
    /// Initrd `[start, end)`.
    pub initrd: Option<(GuestPhysAddr, GuestPhysAddr)>,
    /// Timer PPIs.
    pub timer: TimerPpis,
    /// PMU PPI; `None` leaves out `/pmu`.
    pub pmu: Option<IntId>,
    /// The PMU counts but never interrupts (the host board's overflow interrupt is
    /// unavailable, `PmuDesc::Unavailable`): `/pmu` has no `interrupts`, which Linux's
    /// driver takes as "no sampling", counting still works.
    pub pmu_counting_only: bool,
    /// The PCIe host bridge, for a VM with PCI devices
    /// ([`VmDevices::has_pci`](crate::vm::devices::VmDevices::has_pci)).
    pub pci: Option<PciHostDt>,
    /// A VM spanning NUMA nodes: one memory node per RAM part, `numa-node-id` on each,
    /// on each CPU, and a `distance-map`. `None`: one memory node, no NUMA properties.
    pub numa: Option<crate::vm::numa::GuestNuma>,
}

impl<'a> GuestDtbConfig<'a> {
    /// The configuration for the standard guest layout of [`crate::vm::layout`].
    pub fn from_layout(
        vcpus: usize,
        ram_size: u64,
        gic_v3: bool,
        cmdline: &'a str,
        initrd: Option<(GuestPhysAddr, GuestPhysAddr)>,
    ) -> Self {
        let dist = Window {
            base: GuestPhysAddr(layout::GICD_BASE),
            size: layout::GICD_SIZE,
        };
        let gic = if gic_v3 {
            GuestGic::V3 {
                dist,
                redist: Window {
                    base: GuestPhysAddr(layout::GICR_BASE),
                    size: layout::GICR_STRIDE * vcpus as u64,
                },
            }
        } else {
            GuestGic::V2 {
                dist,
                cpu: Window {
                    base: GuestPhysAddr(layout::GICC_BASE),
                    size: layout::GICC_SIZE,
                },
            }
        };
        Self {
            reset_count: 0,
            passthrough: Vec::new(),
            vcpus,
            ram: Window {
                base: GuestPhysAddr(layout::RAM_BASE),
                size: ram_size,
            },
            gic,
            maintenance: IntId(layout::MAINT_INTID),
            uart: Window {
                base: GuestPhysAddr(layout::UART_BASE),
                size: layout::UART_SIZE,
            },
            uart_intid: IntId(layout::UART_INTID),
            power_button: Some(PowerButtonDt::from_layout()),
            cmdline,
            initrd,
            timer: TimerPpis {
                secure_phys: IntId(29),
                phys: IntId(layout::PTIMER_INTID),
                virt: IntId(layout::VTIMER_INTID),
                hyp_phys: IntId(26),
            },
            pmu: Some(IntId(layout::PMU_INTID)),
            pmu_counting_only: false,
            pci: None,
            numa: None,
        }
    }
}

/// Errors building a guest device tree.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FdtError {
    /// No vCPUs.
    #[error("a guest device tree needs at least one vCPU: set the VM's vcpus")]
    NoVcpus,
    /// The virtual NUMA topology does not describe the VM's RAM and vCPUs.
    #[error("the VM's NUMA topology covers {ram_mib} MiB and {vcpus} vCPU(s), the VM has {want_mib} MiB and {want_vcpus}")]
    NumaMismatch {
        /// RAM the topology's memory parts add up to, MiB.
        ram_mib: u64,
        /// vCPUs it places.
        vcpus: usize,
        /// The VM's RAM, MiB.
        want_mib: u64,
        /// The VM's vCPUs.
        want_vcpus: usize,
    },
    /// An interrupt that must be a PPI is not in 16..=31.
    #[error("{what} interrupt {intid} is not a PPI (INTID 16-31): fix the VM layout")]
    NotAPpi {
        /// Which interrupt.
        what: &'static str,
        /// INTID.
        intid: IntId,
    },
    /// An interrupt that must be an SPI is not in 32..=1019.
    #[error("{what} interrupt {intid} is not an SPI (INTID 32-1019): fix the VM layout")]
    NotAnSpi {
        /// Which interrupt.
        what: &'static str,
        /// INTID.
        intid: IntId,
    },
    /// The initrd range is backwards.
    #[error("initrd end {end} is below its start {start}")]
    InitrdBackwards {
        /// Start.
        start: GuestPhysAddr,
        /// End.
        end: GuestPhysAddr,
    },
    /// A passed-through device uses an SPI or addresses of the PCI host bridge.
    #[error("passthrough device `{device}` uses {what} of the VM's PCI host bridge: give the VM no PCI devices or do not pass the device through")]
    PciConflict {
        /// The passed-through device.
        device: String,
        /// What both use.
        what: &'static str,
    },
    /// `vm-fdt` refused the tree (e.g. a NUL byte in the command line).
    #[error("device tree writer failed: {0} (a NUL byte in the command line?)")]
    Writer(vm_fdt::Error),
}

impl From<vm_fdt::Error> for FdtError {
    fn from(e: vm_fdt::Error) -> Self {
        Self::Writer(e)
    }
}

/// A PPI triple; `cpu_mask` goes in flag bits 15:8 (GICv2 bindings only, as QEMU does).
fn ppi(what: &'static str, intid: IntId, cpu_mask: u32) -> Result<[u32; 3], FdtError> {
    match intid.0 {
        16..=31 => Ok([GIC_PPI, intid.0 - 16, IRQ_LEVEL_HIGH | (cpu_mask << 8)]),
        _ => Err(FdtError::NotAPpi { what, intid }),
    }
}

fn spi(what: &'static str, intid: IntId) -> Result<[u32; 3], FdtError> {
    match intid.0 {
        32..=1019 => Ok([GIC_SPI, intid.0 - 32, IRQ_LEVEL_HIGH]),
        _ => Err(FdtError::NotAnSpi { what, intid }),
    }
}

fn reg(windows: &[Window]) -> Vec<u64> {
    windows.iter().flat_map(|w| [w.base.0, w.size]).collect()
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Refuses a passed-through device that shares an SPI or addresses with the bridge.
fn check_pci_conflicts(
    pci: &PciHostDt,
    passthrough: &[PassthroughNode<'_>],
) -> Result<(), FdtError> {
    let overlaps = |a: &Window, b: &Window| {
        a.base.0 < b.base.0.saturating_add(b.size) && b.base.0 < a.base.0.saturating_add(a.size)
    };
    for dev in passthrough {
        let conflict = |what| FdtError::PciConflict {
            device: dev.name.to_string(),
            what,
        };
        if dev.spis.iter().any(|s| pci.spis().any(|p| p == s.0)) {
            return Err(conflict("an interrupt (INTx or MSI SPI)"));
        }
        if dev
            .regs
            .iter()
            .any(|r| pci.windows().iter().any(|w| overlaps(r, w)))
        {
            return Err(conflict("guest-physical addresses"));
        }
    }
    Ok(())
}

/// The `pcie@...` node of a generic ECAM host bridge (the same properties as QEMU's
/// `virt`: Linux's `pci-host-generic` binding, `Documentation/devicetree/bindings/pci/
/// host-generic-pci.yaml`).
fn pci_host_node(fdt: &mut FdtWriter, pci: &PciHostDt) -> Result<(), FdtError> {
    let node = fdt.begin_node(&format!("pcie@{:x}", pci.ecam.base.0))?;
    fdt.property_string("compatible", "pci-host-ecam-generic")?;
    fdt.property_string("device_type", "pci")?;
    fdt.property_u32("#address-cells", 3)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_u32("linux,pci-domain", 0)?;
    fdt.property_array_u32("bus-range", &[0, pci.last_bus()])?;
    fdt.property_array_u64("reg", &reg(&[pci.ecam]))?;
    fdt.property_null("dma-coherent")?;
    // (PCI address: space, hi, lo) (CPU address: hi, lo) (size: hi, lo); identity.
    let (base, size) = (pci.mem.base.0, pci.mem.size);
    let cells = [
        PCI_SPACE_MEM32,
        (base >> 32) as u32,
        base as u32,
        (base >> 32) as u32,
        base as u32,
        (size >> 32) as u32,
        size as u32,
    ];
    fdt.property_array_u32("ranges", &cells)?;
    // INTx: device number bits 12:11 of phys.hi and the pin; the standard swizzle
    // (slot + pin - 1) % 4 onto INTA..INTD. Each entry: child unit address (3 cells),
    // pin, GIC phandle, GIC unit address (2 cells, its #address-cells), SPI triple.
    fdt.property_u32("#interrupt-cells", 1)?;
    fdt.property_array_u32("interrupt-map-mask", &[0x1800, 0, 0, 7])?;
    let mut map = Vec::with_capacity(16 * 10);
    for slot in 0..4u32 {
        for pin in 1..=4u32 {
            let line = pci.intx[((slot + pin - 1) % 4) as usize];
            map.extend_from_slice(&[slot << 11, 0, 0, pin, PHANDLE_GIC, 0, 0]);
            map.extend_from_slice(&spi("PCI INTx", line)?);
        }
    }
    fdt.property_array_u32("interrupt-map", &map)?;
    match pci.msi {
        Some(GuestMsi::Mbi { .. }) => fdt.property_u32("msi-parent", PHANDLE_GIC)?,
        Some(GuestMsi::V2m { .. }) => fdt.property_u32("msi-parent", PHANDLE_V2M)?,
        None => {}
    }
    fdt.end_node(node)?;
    Ok(())
}

/// Builds the flattened device tree blob for a guest.
pub fn build_guest_dtb(cfg: &GuestDtbConfig<'_>) -> Result<Vec<u8>, FdtError> {
    if cfg.vcpus == 0 {
        return Err(FdtError::NoVcpus);
    }
    if let Some((start, end)) = cfg.initrd {
        if end < start {
            return Err(FdtError::InitrdBackwards { start, end });
        }
    }
    if let Some(n) = &cfg.numa {
        let ram: u64 = n.memory.iter().map(|m| m.0).sum();
        if ram != cfg.ram.size || n.vcpu_nodes.len() != cfg.vcpus {
            return Err(FdtError::NumaMismatch {
                ram_mib: ram >> 20,
                vcpus: n.vcpu_nodes.len(),
                want_mib: cfg.ram.size >> 20,
                want_vcpus: cfg.vcpus,
            });
        }
    }
    let uart_irq = spi("UART", cfg.uart_intid)?;
    let gpio_irq = cfg
        .power_button
        .map(|b| spi("power button GPIO", b.intid))
        .transpose()?;
    let cpu_mask = match cfg.gic {
        GuestGic::V3 { .. } => 0,
        GuestGic::V2 { .. } => (1u32 << cfg.vcpus.min(8)) - 1,
    };
    let maint_irq = ppi("GIC maintenance", cfg.maintenance, cpu_mask)?;
    let mut timer_irqs = Vec::with_capacity(12);
    for (what, id) in [
        ("secure physical timer", cfg.timer.secure_phys),
        ("physical timer", cfg.timer.phys),
        ("virtual timer", cfg.timer.virt),
        ("hypervisor timer", cfg.timer.hyp_phys),
    ] {
        timer_irqs.extend_from_slice(&ppi(what, id, cpu_mask)?);
    }
    let pmu_irq = cfg.pmu.map(|id| ppi("PMU", id, cpu_mask)).transpose()?;
    if let Some(pci) = &cfg.pci {
        check_pci_conflicts(pci, &cfg.passthrough)?;
        for (i, &id) in pci.intx.iter().enumerate() {
            spi(["PCI INTA", "PCI INTB", "PCI INTC", "PCI INTD"][i], id)?;
        }
    }

    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_string("compatible", "linux,dummy-virt")?;
    fdt.property_string("model", "linux,dummy-virt")?;
    fdt.property_u32("interrupt-parent", PHANDLE_GIC)?;

    let chosen = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", cfg.cmdline)?;
    fdt.property_string("stdout-path", &format!("/pl011@{:x}", cfg.uart.base.0))?;
    fdt.property_u32("hypervisor,reset-count", cfg.reset_count)?;
    if let Some((start, end)) = cfg.initrd {
        fdt.property_u64("linux,initrd-start", start.0)?;
        fdt.property_u64("linux,initrd-end", end.0)?;
    }
    fdt.end_node(chosen)?;

    match &cfg.numa {
        None => {
            let memory = fdt.begin_node(&format!("memory@{:x}", cfg.ram.base.0))?;
            fdt.property_string("device_type", "memory")?;
            fdt.property_array_u64("reg", &reg(&[cfg.ram]))?;
            fdt.end_node(memory)?;
        }
        Some(numa) => {
            // One memory node per part, where the part really is (Linux `of_numa`).
            let mut base = cfg.ram.base.0;
            for &(size, node) in &numa.memory {
                let memory = fdt.begin_node(&format!("memory@{base:x}"))?;
                fdt.property_string("device_type", "memory")?;
                let part = Window {
                    base: GuestPhysAddr(base),
                    size,
                };
                fdt.property_array_u64("reg", &reg(&[part]))?;
                fdt.property_u32("numa-node-id", node)?;
                fdt.end_node(memory)?;
                base += size;
            }
            // Documentation/devicetree/bindings/numa.txt: `distance-matrix` triplets
            // <from to distance>, 10 for a node to itself.
            let map = fdt.begin_node("distance-map")?;
            fdt.property_string("compatible", "numa-distance-map-v1")?;
            let mut matrix = Vec::new();
            for (a, row) in numa.distances.iter().enumerate() {
                for (b, d) in row.iter().enumerate() {
                    matrix.extend_from_slice(&[a as u32, b as u32, *d]);
                }
            }
            fdt.property_array_u32("distance-matrix", &matrix)?;
            fdt.end_node(map)?;
        }
    }

    let cpus = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 1)?;
    fdt.property_u32("#size-cells", 0)?;
    for i in 0..cfg.vcpus {
        let cpu = fdt.begin_node(&format!("cpu@{i:x}"))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_string("compatible", "arm,armv8")?;
        fdt.property_string("enable-method", "psci")?;
        fdt.property_u32("reg", i as u32)?;
        if let Some(node) = cfg.numa.as_ref().and_then(|n| n.vcpu_nodes.get(i)) {
            fdt.property_u32("numa-node-id", *node)?;
        }
        fdt.end_node(cpu)?;
    }
    fdt.end_node(cpus)?;

    let psci = fdt.begin_node("psci")?;
    fdt.property_string_list("compatible", strings(&["arm,psci-1.0", "arm,psci-0.2"]))?;
    fdt.property_string("method", "hvc")?;
    fdt.end_node(psci)?;

    let (dist, compatible, windows) = match cfg.gic {
        GuestGic::V3 { dist, redist } => (dist, "arm,gic-v3", [dist, redist]),
        GuestGic::V2 { dist, cpu } => (dist, "arm,cortex-a15-gic", [dist, cpu]),
    };
    let intc = fdt.begin_node(&format!("intc@{:x}", dist.base.0))?;
    fdt.property_string("compatible", compatible)?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_u32("#interrupt-cells", 3)?;
    // Cells and `ranges` as QEMU's `virt`, ready for an ITS / v2m child frame.
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_null("ranges")?;
    fdt.property_array_u64("reg", &reg(&windows))?;
    if matches!(cfg.gic, GuestGic::V3 { .. }) {
        fdt.property_u32("#redistributor-regions", 1)?;
    }
    fdt.property_array_u32("interrupts", &maint_irq)?;
    fdt.property_phandle(PHANDLE_GIC)?;
    match cfg.pci.and_then(|p| p.msi) {
        Some(GuestMsi::Mbi { first_intid, count }) => {
            // Linux looks for MBI only here (`mbi_init`, when GICD_TYPER.MBIS is set).
            fdt.property_null("msi-controller")?;
            fdt.property_array_u32("mbi-ranges", &[first_intid, count])?;
        }
        Some(GuestMsi::V2m { frame }) => {
            let v2m = fdt.begin_node(&format!("v2m@{:x}", frame.base.0))?;
            fdt.property_string("compatible", "arm,gic-v2m-frame")?;
            fdt.property_null("msi-controller")?;
            fdt.property_array_u64("reg", &reg(&[frame]))?;
            fdt.property_phandle(PHANDLE_V2M)?;
            fdt.end_node(v2m)?;
        }
        None => {}
    }
    fdt.end_node(intc)?;

    let timer = fdt.begin_node("timer")?;
    fdt.property_string_list(
        "compatible",
        strings(&["arm,armv8-timer", "arm,armv7-timer"]),
    )?;
    fdt.property_array_u32("interrupts", &timer_irqs)?;
    fdt.property_null("always-on")?;
    fdt.end_node(timer)?;

    if let Some(irq) = pmu_irq {
        let pmu = fdt.begin_node("pmu")?;
        fdt.property_string("compatible", "arm,armv8-pmuv3")?;
        if !cfg.pmu_counting_only {
            fdt.property_array_u32("interrupts", &irq)?;
        }
        fdt.end_node(pmu)?;
    }

    let clk = fdt.begin_node("apb-pclk")?;
    fdt.property_string("compatible", "fixed-clock")?;
    fdt.property_u32("#clock-cells", 0)?;
    fdt.property_u32("clock-frequency", APB_PCLK_HZ)?;
    fdt.property_string("clock-output-names", "clk24mhz")?;
    fdt.property_phandle(PHANDLE_APB_PCLK)?;
    fdt.end_node(clk)?;

    for dev in &cfg.passthrough {
        let base = dev.regs.first().map_or(0, |w| w.base.0);
        let node = fdt.begin_node(&format!("{}@{:x}", dev.name, base))?;
        fdt.property_string_list("compatible", strings(dev.compatible))?;
        fdt.property_array_u64("reg", &reg(&dev.regs))?;
        let mut irqs = Vec::with_capacity(dev.spis.len() * 3);
        for &id in &dev.spis {
            irqs.extend_from_slice(&spi("passthrough device", id)?);
        }
        if !irqs.is_empty() {
            fdt.property_array_u32("interrupts", &irqs)?;
        }
        if dev.compatible.contains(&"arm,primecell") {
            fdt.property_u32("clocks", PHANDLE_APB_PCLK)?;
            fdt.property_string("clock-names", "apb_pclk")?;
        }
        fdt.end_node(node)?;
    }

    if let Some(pci) = &cfg.pci {
        pci_host_node(&mut fdt, pci)?;
    }

    if let (Some(button), Some(irq)) = (cfg.power_button, gpio_irq) {
        let gpio = fdt.begin_node(&format!("pl061@{:x}", button.gpio.base.0))?;
        fdt.property_string_list("compatible", strings(&["arm,pl061", "arm,primecell"]))?;
        fdt.property_array_u64("reg", &reg(&[button.gpio]))?;
        fdt.property_array_u32("interrupts", &irq)?;
        fdt.property_null("gpio-controller")?;
        fdt.property_u32("#gpio-cells", 2)?;
        fdt.property_u32("clocks", PHANDLE_APB_PCLK)?;
        fdt.property_string("clock-names", "apb_pclk")?;
        fdt.property_phandle(PHANDLE_GPIO)?;
        fdt.end_node(gpio)?;

        let keys = fdt.begin_node("gpio-keys")?;
        fdt.property_string("compatible", "gpio-keys")?;
        let key = fdt.begin_node("poweroff")?;
        fdt.property_string("label", "GPIO Key Poweroff")?;
        fdt.property_u32("linux,code", KEY_POWER)?;
        // Line `line`, flags 0 = GPIO_ACTIVE_HIGH.
        fdt.property_array_u32("gpios", &[PHANDLE_GPIO, button.line, 0])?;
        fdt.end_node(key)?;
        fdt.end_node(keys)?;
    }

    let uart = fdt.begin_node(&format!("pl011@{:x}", cfg.uart.base.0))?;
    fdt.property_string_list("compatible", strings(&["arm,pl011", "arm,primecell"]))?;
    fdt.property_array_u64("reg", &reg(&[cfg.uart]))?;
    fdt.property_array_u32("interrupts", &uart_irq)?;
    // Linux's AMBA bus enables `apb_pclk` before probing the PL011.
    fdt.property_array_u32("clocks", &[PHANDLE_APB_PCLK, PHANDLE_APB_PCLK])?;
    fdt.property_string_list("clock-names", strings(&["uartclk", "apb_pclk"]))?;
    fdt.end_node(uart)?;

    fdt.end_node(root)?;
    Ok(fdt.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::fdt::Fdt;

    const RAM: u64 = 0x1000_0000;

    fn v3(vcpus: usize) -> Vec<u8> {
        let cfg = GuestDtbConfig::from_layout(
            vcpus,
            RAM,
            true,
            "console=ttyAMA0 earlycon",
            Some((GuestPhysAddr(0x4800_0000), GuestPhysAddr(0x4810_0000))),
        );
        build_guest_dtb(&cfg).unwrap()
    }

    fn u32s(bytes: &[u8]) -> Vec<u32> {
        bytes
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    fn strs(bytes: &[u8]) -> Vec<&str> {
        bytes
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| core::str::from_utf8(s).unwrap())
            .collect()
    }

    fn prop<'a>(fdt: &'a Fdt<'a>, node: &str, name: &str) -> &'a [u8] {
        fdt.find_node(node)
            .unwrap_or_else(|| panic!("node {node}"))
            .property(name)
            .unwrap_or_else(|| panic!("{node}:{name}"))
            .value
    }

    #[test]
    fn root_is_dummy_virt_with_two_cell_addresses_and_gic_parent() {
        let blob = v3(1);
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(strs(prop(&fdt, "/", "compatible")), ["linux,dummy-virt"]);
        assert_eq!(u32s(prop(&fdt, "/", "#address-cells")), [2]);
        assert_eq!(u32s(prop(&fdt, "/", "#size-cells")), [2]);
        assert_eq!(u32s(prop(&fdt, "/", "interrupt-parent")), [PHANDLE_GIC]);
    }

    #[test]
    fn one_cpu_node_per_vcpu_with_psci_enable_method() {
        let blob = v3(3);
        let fdt = Fdt::new(&blob).unwrap();
        let cpus: Vec<_> = fdt.cpus().collect();
        assert_eq!(cpus.len(), 3);
        for (i, cpu) in cpus.iter().enumerate() {
            assert_eq!(cpu.ids().first(), i);
        }
        assert_eq!(strs(prop(&fdt, "/cpus/cpu@2", "enable-method")), ["psci"]);
        assert_eq!(strs(prop(&fdt, "/cpus/cpu@2", "compatible")), ["arm,armv8"]);
        assert_eq!(strs(prop(&fdt, "/cpus/cpu@0", "device_type")), ["cpu"]);
        assert_eq!(u32s(prop(&fdt, "/cpus", "#size-cells")), [0]);
    }

    #[test]
    fn memory_node_covers_guest_ram() {
        let blob = v3(1);
        let fdt = Fdt::new(&blob).unwrap();
        let regions: Vec<_> = fdt.memory().regions().collect();
        assert_eq!(regions.len(), 1);
        assert_eq!(regions[0].starting_address as u64, layout::RAM_BASE);
        assert_eq!(regions[0].size, Some(RAM as usize));
        assert!(fdt.find_node("/memory@40000000").is_some());
    }

    #[test]
    fn a_vm_spanning_nodes_sees_its_numa_topology() {
        let mut cfg = GuestDtbConfig::from_layout(2, RAM, true, "", None);
        let half = RAM / 2;
        cfg.numa = Some(crate::vm::numa::GuestNuma {
            memory: vec![(half, 0), (half, 1)],
            vcpu_nodes: vec![0, 1],
            distances: vec![vec![10, 25], vec![25, 10]],
        });
        let blob = build_guest_dtb(&cfg).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        let regions: Vec<_> = fdt.memory().regions().collect();
        assert_eq!(
            regions.len(),
            1,
            "fdt's memory() reads the first memory node"
        );
        let second = format!("/memory@{:x}", layout::RAM_BASE + half);
        assert_eq!(u32s(prop(&fdt, "/memory@40000000", "numa-node-id")), [0]);
        assert_eq!(u32s(prop(&fdt, &second, "numa-node-id")), [1]);
        let reg = prop(&fdt, &second, "reg");
        let cells: Vec<u64> = reg
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(cells, [layout::RAM_BASE + half, half]);
        assert_eq!(u32s(prop(&fdt, "/cpus/cpu@0", "numa-node-id")), [0]);
        assert_eq!(u32s(prop(&fdt, "/cpus/cpu@1", "numa-node-id")), [1]);
        assert_eq!(
            strs(prop(&fdt, "/distance-map", "compatible")),
            ["numa-distance-map-v1"]
        );
        assert_eq!(
            u32s(prop(&fdt, "/distance-map", "distance-matrix")),
            [0, 0, 10, 0, 1, 25, 1, 0, 25, 1, 1, 10]
        );
    }

    #[test]
    fn a_vm_on_one_node_has_no_numa_properties() {
        let blob = v3(2);
        let fdt = Fdt::new(&blob).unwrap();
        assert!(fdt.find_node("/distance-map").is_none());
        let cpu = fdt.find_node("/cpus/cpu@0").unwrap();
        assert!(cpu.property("numa-node-id").is_none());
    }

    #[test]
    fn a_numa_topology_that_misses_ram_is_refused() {
        let mut cfg = GuestDtbConfig::from_layout(2, RAM, true, "", None);
        cfg.numa = Some(crate::vm::numa::GuestNuma {
            memory: vec![(RAM / 2, 0)],
            vcpu_nodes: vec![0, 0],
            distances: vec![vec![10]],
        });
        assert!(matches!(
            build_guest_dtb(&cfg),
            Err(FdtError::NumaMismatch { .. })
        ));
    }

    #[test]
    fn psci_node_uses_hvc_and_psci_1_0() {
        let blob = v3(1);
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(
            strs(prop(&fdt, "/psci", "compatible")),
            ["arm,psci-1.0", "arm,psci-0.2"]
        );
        assert_eq!(strs(prop(&fdt, "/psci", "method")), ["hvc"]);
    }

    #[test]
    fn gicv3_node_has_gicd_and_all_gicr_frames() {
        let blob = v3(4);
        let fdt = Fdt::new(&blob).unwrap();
        let node = "/intc@8000000";
        assert_eq!(strs(prop(&fdt, node, "compatible")), ["arm,gic-v3"]);
        assert_eq!(u32s(prop(&fdt, node, "#interrupt-cells")), [3]);
        assert!(prop(&fdt, node, "interrupt-controller").is_empty());
        let r: Vec<_> = fdt.find_node(node).unwrap().reg().unwrap().collect();
        assert_eq!(r[0].starting_address as u64, layout::GICD_BASE);
        assert_eq!(r[0].size, Some(layout::GICD_SIZE as usize));
        assert_eq!(r[1].starting_address as u64, layout::GICR_BASE);
        assert_eq!(r[1].size, Some(4 * layout::GICR_STRIDE as usize));
        assert_eq!(u32s(prop(&fdt, node, "interrupts")), [1, 9, 4]);
        assert_eq!(u32s(prop(&fdt, node, "phandle")), [PHANDLE_GIC]);
    }

    #[test]
    fn gicv2_node_has_gicd_and_gicc() {
        let cfg = GuestDtbConfig::from_layout(2, RAM, false, "", None);
        let blob = build_guest_dtb(&cfg).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        let node = "/intc@8000000";
        assert_eq!(strs(prop(&fdt, node, "compatible")), ["arm,cortex-a15-gic"]);
        let r: Vec<_> = fdt.find_node(node).unwrap().reg().unwrap().collect();
        assert_eq!(r[1].starting_address as u64, layout::GICC_BASE);
        assert_eq!(r[1].size, Some(layout::GICC_SIZE as usize));
        assert!(fdt
            .find_node(node)
            .unwrap()
            .property("#redistributor-regions")
            .is_none());
    }

    #[test]
    fn timer_lists_four_ppis_in_binding_order_level_high() {
        let blob = v3(1);
        let fdt = Fdt::new(&blob).unwrap();
        // Same cells as QEMU's virt: secure 13, non-secure 14, virtual 11, hyp 10.
        assert_eq!(
            u32s(prop(&fdt, "/timer", "interrupts")),
            [1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]
        );
        assert_eq!(
            strs(prop(&fdt, "/timer", "compatible")),
            ["arm,armv8-timer", "arm,armv7-timer"]
        );
        assert!(prop(&fdt, "/timer", "always-on").is_empty());
    }

    #[test]
    fn pmu_node_uses_ppi_7() {
        let blob = v3(1);
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(strs(prop(&fdt, "/pmu", "compatible")), ["arm,armv8-pmuv3"]);
        assert_eq!(u32s(prop(&fdt, "/pmu", "interrupts")), [1, 7, 4]);
    }

    #[test]
    fn a_counting_only_pmu_node_has_no_interrupts() {
        let mut cfg = GuestDtbConfig::from_layout(1, RAM, true, "", None);
        cfg.pmu_counting_only = true;
        let blob = build_guest_dtb(&cfg).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(strs(prop(&fdt, "/pmu", "compatible")), ["arm,armv8-pmuv3"]);
        assert!(fdt
            .find_node("/pmu")
            .unwrap()
            .property("interrupts")
            .is_none());
    }

    #[test]
    fn pmu_node_is_left_out_when_not_configured() {
        let mut cfg = GuestDtbConfig::from_layout(1, RAM, true, "", None);
        cfg.pmu = None;
        let blob = build_guest_dtb(&cfg).unwrap();
        assert!(Fdt::new(&blob).unwrap().find_node("/pmu").is_none());
    }

    #[test]
    fn pl011_has_spi_1_and_apb_pclk_clocks() {
        let blob = v3(1);
        let fdt = Fdt::new(&blob).unwrap();
        let node = "/pl011@9000000";
        assert_eq!(
            strs(prop(&fdt, node, "compatible")),
            ["arm,pl011", "arm,primecell"]
        );
        assert_eq!(u32s(prop(&fdt, node, "interrupts")), [0, 1, 4]);
        assert_eq!(
            strs(prop(&fdt, node, "clock-names")),
            ["uartclk", "apb_pclk"]
        );
        assert_eq!(
            u32s(prop(&fdt, node, "clocks")),
            [PHANDLE_APB_PCLK, PHANDLE_APB_PCLK]
        );
        let clk = fdt.find_phandle(PHANDLE_APB_PCLK).unwrap();
        assert_eq!(clk.name, "apb-pclk");
        assert_eq!(
            u32s(prop(&fdt, "/apb-pclk", "clock-frequency")),
            [APB_PCLK_HZ]
        );
        assert_eq!(u32s(prop(&fdt, "/apb-pclk", "#clock-cells")), [0]);
        assert_eq!(strs(prop(&fdt, "/apb-pclk", "compatible")), ["fixed-clock"]);
        let r: Vec<_> = fdt.find_node(node).unwrap().reg().unwrap().collect();
        assert_eq!(r[0].size, Some(layout::UART_SIZE as usize));
    }

    #[test]
    fn power_button_nodes_are_qemu_virts() {
        let blob = v3(1);
        let fdt = Fdt::new(&blob).unwrap();
        let gpio = "/pl061@9030000";
        assert_eq!(
            strs(prop(&fdt, gpio, "compatible")),
            ["arm,pl061", "arm,primecell"]
        );
        assert_eq!(u32s(prop(&fdt, gpio, "reg")), [0, 0x0903_0000, 0, 0x1000]);
        // SPI 7, level high.
        assert_eq!(u32s(prop(&fdt, gpio, "interrupts")), [0, 7, 4]);
        assert!(prop(&fdt, gpio, "gpio-controller").is_empty());
        assert_eq!(u32s(prop(&fdt, gpio, "#gpio-cells")), [2]);
        assert_eq!(u32s(prop(&fdt, gpio, "clocks")), [PHANDLE_APB_PCLK]);
        assert_eq!(strs(prop(&fdt, gpio, "clock-names")), ["apb_pclk"]);
        assert_eq!(u32s(prop(&fdt, gpio, "phandle")), [PHANDLE_GPIO]);
        let key = "/gpio-keys/poweroff";
        assert_eq!(strs(prop(&fdt, "/gpio-keys", "compatible")), ["gpio-keys"]);
        assert_eq!(strs(prop(&fdt, key, "label")), ["GPIO Key Poweroff"]);
        assert_eq!(u32s(prop(&fdt, key, "linux,code")), [116]);
        assert_eq!(u32s(prop(&fdt, key, "gpios")), [PHANDLE_GPIO, 3, 0]);
    }

    #[test]
    fn no_power_button_no_gpio_nodes() {
        let mut cfg = GuestDtbConfig::from_layout(1, RAM, true, "", None);
        cfg.power_button = None;
        let blob = build_guest_dtb(&cfg).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        assert!(fdt.find_node("/gpio-keys").is_none());
        assert!(fdt.find_node("/pl061@9030000").is_none());
    }

    #[test]
    fn chosen_has_bootargs_stdout_and_initrd() {
        let blob = v3(1);
        let fdt = Fdt::new(&blob).unwrap();
        let chosen = fdt.chosen();
        assert_eq!(chosen.bootargs(), Some("console=ttyAMA0 earlycon"));
        assert_eq!(chosen.stdout().unwrap().name, "pl011@9000000");
        assert_eq!(
            strs(prop(&fdt, "/chosen", "stdout-path")),
            ["/pl011@9000000"]
        );
        let start = prop(&fdt, "/chosen", "linux,initrd-start");
        assert_eq!(start, 0x4800_0000u64.to_be_bytes());
        let end = prop(&fdt, "/chosen", "linux,initrd-end");
        assert_eq!(end, 0x4810_0000u64.to_be_bytes());
    }

    #[test]
    fn chosen_has_no_initrd_properties_without_initrd() {
        let cfg = GuestDtbConfig::from_layout(1, RAM, true, "quiet", None);
        let blob = build_guest_dtb(&cfg).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        assert!(fdt
            .find_node("/chosen")
            .unwrap()
            .property("linux,initrd-start")
            .is_none());
    }

    fn with_pci(gic_v3: bool) -> Vec<u8> {
        let mut cfg = GuestDtbConfig::from_layout(2, RAM, gic_v3, "", None);
        cfg.pci = Some(PciHostDt::from_layout(gic_v3));
        build_guest_dtb(&cfg).unwrap()
    }

    /// What Linux's `pci-host-generic` (`of_pci_get_host_bridge_resources`,
    /// `of_irq_parse_raw` over `interrupt-map`, `of_msi_get_domain`) reads.
    #[test]
    fn pci_host_node_has_what_pci_host_generic_needs() {
        let blob = with_pci(true);
        let fdt = Fdt::new(&blob).unwrap();
        let node = "/pcie@3f000000";
        assert_eq!(
            strs(prop(&fdt, node, "compatible")),
            ["pci-host-ecam-generic"]
        );
        assert_eq!(strs(prop(&fdt, node, "device_type")), ["pci"]);
        assert_eq!(u32s(prop(&fdt, node, "#address-cells")), [3]);
        assert_eq!(u32s(prop(&fdt, node, "#size-cells")), [2]);
        assert_eq!(u32s(prop(&fdt, node, "#interrupt-cells")), [1]);
        assert_eq!(u32s(prop(&fdt, node, "bus-range")), [0, 15]);
        assert!(prop(&fdt, node, "dma-coherent").is_empty());
        let r: Vec<_> = fdt.find_node(node).unwrap().reg().unwrap().collect();
        assert_eq!(r[0].starting_address as u64, layout::PCI_ECAM_BASE);
        assert_eq!(r[0].size, Some(layout::PCI_ECAM_SIZE as usize));
        // One 32-bit memory range, identity-mapped: the window of the layout.
        assert_eq!(
            u32s(prop(&fdt, node, "ranges")),
            [0x0200_0000, 0, 0x1000_0000, 0, 0x1000_0000, 0, 0x2eff_0000]
        );
        assert_eq!(
            u32s(prop(&fdt, node, "interrupt-map-mask")),
            [0x1800, 0, 0, 7]
        );
        let map = u32s(prop(&fdt, node, "interrupt-map"));
        assert_eq!(map.len(), 16 * 10);
        for entry in map.chunks_exact(10) {
            let (slot, pin) = (entry[0] >> 11, entry[3]);
            assert_eq!(&entry[1..3], [0, 0]);
            assert_eq!(entry[4], PHANDLE_GIC);
            assert_eq!(&entry[5..7], [0, 0], "GIC #address-cells is 2");
            let spi = layout::PCI_INTX_INTIDS[((slot + pin - 1) % 4) as usize] - 32;
            assert_eq!(&entry[7..], [GIC_SPI, spi, IRQ_LEVEL_HIGH]);
        }
        // The GICv3 node is the MSI controller, with its MBI range.
        assert_eq!(u32s(prop(&fdt, node, "msi-parent")), [PHANDLE_GIC]);
        let gic = "/intc@8000000";
        assert!(prop(&fdt, gic, "msi-controller").is_empty());
        assert_eq!(
            u32s(prop(&fdt, gic, "mbi-ranges")),
            [layout::MSI_FIRST_INTID, layout::MSI_SPIS]
        );
        assert_eq!(u32s(prop(&fdt, gic, "#address-cells")), [2]);
        // The bridge assigns no BARs: Linux must not be told to leave them alone.
        assert!(fdt
            .find_node("/chosen")
            .unwrap()
            .property("linux,pci-probe-only")
            .is_none());
    }

    #[test]
    fn gicv2_pci_msis_go_to_a_v2m_frame_under_the_gic() {
        let blob = with_pci(false);
        let fdt = Fdt::new(&blob).unwrap();
        let frame = "/intc@8000000/v2m@8020000";
        assert_eq!(strs(prop(&fdt, frame, "compatible")), ["arm,gic-v2m-frame"]);
        assert!(prop(&fdt, frame, "msi-controller").is_empty());
        let r: Vec<_> = fdt.find_node(frame).unwrap().reg().unwrap().collect();
        assert_eq!(r[0].starting_address as u64, layout::GICV2M_BASE);
        assert_eq!(r[0].size, Some(layout::GICV2M_SIZE as usize));
        let parent = u32s(prop(&fdt, "/pcie@3f000000", "msi-parent"))[0];
        assert_eq!(fdt.find_phandle(parent).unwrap().name, "v2m@8020000");
        assert!(fdt
            .find_node("/intc@8000000")
            .unwrap()
            .property("mbi-ranges")
            .is_none());
    }

    #[test]
    fn no_pci_devices_no_pci_nodes() {
        for v3 in [true, false] {
            let cfg = GuestDtbConfig::from_layout(1, RAM, v3, "", None);
            let blob = build_guest_dtb(&cfg).unwrap();
            let fdt = Fdt::new(&blob).unwrap();
            assert!(fdt.find_node("/pcie@3f000000").is_none());
            let gic = fdt.find_node("/intc@8000000").unwrap();
            assert!(gic.property("msi-controller").is_none());
            assert_eq!(gic.children().count(), 0);
        }
    }

    #[test]
    fn passthrough_devices_may_not_share_the_bridge_spis_or_windows() {
        let mut cfg = GuestDtbConfig::from_layout(1, RAM, true, "", None);
        cfg.pci = Some(PciHostDt::from_layout(true));
        let dev = |spi: u32, base: u64| PassthroughNode {
            name: "rtc",
            compatible: &["arm,pl031", "arm,primecell"],
            regs: Vec::from([Window {
                base: GuestPhysAddr(base),
                size: 0x1000,
            }]),
            spis: Vec::from([IntId(spi)]),
        };
        cfg.passthrough = Vec::from([dev(34, 0x0901_0000)]);
        assert!(build_guest_dtb(&cfg).is_ok());
        for bad in [
            dev(35, 0x0901_0000),
            dev(100, 0x0901_0000),
            dev(34, 0x2000_0000),
            dev(34, 0x3f00_1000),
        ] {
            cfg.passthrough = Vec::from([bad]);
            assert!(
                matches!(build_guest_dtb(&cfg), Err(FdtError::PciConflict { .. })),
                "{:?}",
                cfg.passthrough
            );
        }
        // Without PCI the same device is fine.
        cfg.pci = None;
        assert!(build_guest_dtb(&cfg).is_ok());
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mut cfg = GuestDtbConfig::from_layout(0, RAM, true, "", None);
        assert_eq!(build_guest_dtb(&cfg), Err(FdtError::NoVcpus));
        cfg.vcpus = 1;
        cfg.uart_intid = IntId(27);
        assert!(matches!(
            build_guest_dtb(&cfg),
            Err(FdtError::NotAnSpi { .. })
        ));
        cfg.uart_intid = IntId(33);
        cfg.timer.virt = IntId(40);
        assert!(matches!(
            build_guest_dtb(&cfg),
            Err(FdtError::NotAPpi { .. })
        ));
        cfg.timer.virt = IntId(27);
        cfg.initrd = Some((GuestPhysAddr(2), GuestPhysAddr(1)));
        assert!(matches!(
            build_guest_dtb(&cfg),
            Err(FdtError::InitrdBackwards { .. })
        ));
        cfg.initrd = None;
        cfg.cmdline = "a\0b";
        assert!(matches!(build_guest_dtb(&cfg), Err(FdtError::Writer(_))));
    }
}
