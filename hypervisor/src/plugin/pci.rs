//! Drivers for functions on the machine's own PCI buses.
//!
//! A host-bridge driver (a plugin matched by `compatible`, such as `pci-ecam` for
//! `pci-host-ecam-generic`) enumerates its buses, assigns BARs and enables each function,
//! then [`offer`]s every function it found. After the board's devices are probed, bring-up
//! hands each offered function to the first [`PciDriverEntry`] of [`PCI_DRIVERS`] that
//! matches it (vendor:device ID before class code) and reports the result on the console.
//! A community crate adds a controller driver the way a UART driver is added:
//!
//! ```ignore
//! use hypervisor::plugin::pci::{PciDriverEntry, PciMatch, PciProbe, PCI_DRIVERS};
//! use hypervisor::plugin::ProbeError;
//!
//! fn probe(p: &PciProbe<'_>) -> Result<(), ProbeError> {
//!     let bar0 = p.function.bar(0).ok_or(ProbeError::MissingReg)?;
//!     // ... map nothing (the host bridge's window is already mapped), drive bar0.base ...
//!     Ok(())
//! }
//!
//! #[linkme::distributed_slice(PCI_DRIVERS)]
//! static MY_NVME: PciDriverEntry = PciDriverEntry {
//!     name: "my-nvme",
//!     // Every NVMe controller (class 01, subclass 08, interface 02), and one chip by ID.
//!     matches: &[PciMatch::class(0x01_08_02), PciMatch::id(0x144d, 0xa808)],
//!     probe,
//! };
//! ```
//!
//! A driver reaches its function's registers through the BARs the bridge assigned (inside a
//! window the board's KDL declares, which the EL2 page tables map as device memory) and its
//! configuration space through [`PciProbe::config`]. Quirks for the function come from
//! [`quirks_for`]: the quirk sets the board lists for the host bridge whose entries name
//! the function's bus ID (`pci:vvvv:dddd`).
#![deny(unsafe_code)]

use super::{ProbeError, QuirkEntry};
use crate::pci::PciIds;
use crate::platform::{BoardDesc, DeviceDesc, IrqDesc};
use crate::sync::Mutex;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use linkme::distributed_slice;

/// Bus, device and function number of a PCI function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bdf {
    /// Bus number.
    pub bus: u8,
    /// Device number (0..32).
    pub device: u8,
    /// Function number (0..8).
    pub function: u8,
}

impl core::fmt::Display for Bdf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// Access to the configuration space of one host bridge's functions (32-bit accesses only:
/// some ECAMs, such as Ampere Altra's, answer nothing else).
pub trait ConfigSpace: Sync {
    /// Reads the dword at `offset` (a multiple of 4, below 0x1000) of `bdf`'s space; a
    /// missing function reads as all ones.
    fn read32(&self, bdf: Bdf, offset: u16) -> u32;
    /// Writes the dword at `offset` of `bdf`'s space.
    fn write32(&self, bdf: Bdf, offset: u16, value: u32);
}

/// A memory BAR as the host bridge assigned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostBar {
    /// BAR number (a 64-bit BAR also uses the next one).
    pub index: u8,
    /// Host-physical (and bus) address.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
    /// A 64-bit BAR.
    pub is_64bit: bool,
    /// Prefetchable.
    pub prefetchable: bool,
}

/// A function the host bridge enumerated and enabled (memory space and bus master on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPciFunction {
    /// Where it is.
    pub bdf: Bdf,
    /// Its IDs.
    pub ids: PciIds,
    /// Its memory BARs, assigned.
    pub bars: Vec<HostBar>,
    /// The SPI its INTx pin is routed to, if it uses one.
    pub intx: Option<IrqDesc>,
}

impl HostPciFunction {
    /// Memory BAR `index`, if the function has it and it was assigned.
    pub fn bar(&self, index: u8) -> Option<HostBar> {
        self.bars.iter().copied().find(|b| b.index == index)
    }

    /// Memory BAR `index` as a register block for a driver: its base as a non-null pointer
    /// (`align`-byte aligned) and its size. Errors say which BAR and what is wrong with it.
    pub fn mmio_bar<T>(
        &self,
        index: u8,
        align: usize,
    ) -> Result<(core::ptr::NonNull<T>, usize), crate::plugin::ProbeError> {
        use crate::plugin::ProbeError::Hardware;
        const NOT_ASSIGNED: [&str; 6] = [
            "BAR 0 not assigned",
            "BAR 1 not assigned",
            "BAR 2 not assigned",
            "BAR 3 not assigned",
            "BAR 4 not assigned",
            "BAR 5 not assigned",
        ];
        let bar = self.bar(index).ok_or(Hardware(
            NOT_ASSIGNED
                .get(usize::from(index))
                .copied()
                .unwrap_or("BAR not assigned"),
        ))?;
        let size =
            usize::try_from(bar.size).map_err(|_| Hardware("BAR larger than the address space"))?;
        let base = usize::try_from(bar.base)
            .ok()
            .filter(|b| align != 0 && b % align == 0)
            .and_then(|b| core::ptr::NonNull::new(b as *mut T))
            .ok_or(Hardware(
                "BAR at address zero or not aligned as the device needs",
            ))?;
        Ok((base, size))
    }

    /// The bus ID quirk entries use: `pci:vvvv:dddd` (lower-case hex).
    pub fn bus_id(&self) -> String {
        format!("pci:{:04x}:{:04x}", self.ids.vendor, self.ids.device)
    }
}

/// What a PCI driver's probe gets.
pub struct PciProbe<'a> {
    /// The function.
    pub function: &'a HostPciFunction,
    /// Its host bridge's configuration space.
    pub config: &'static dyn ConfigSpace,
    /// The host bridge (a board device).
    pub host: &'static DeviceDesc,
    /// The board.
    pub board: &'static BoardDesc,
}

/// What a PCI driver handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciMatch {
    /// One chip: vendor and device ID.
    Id {
        /// Vendor ID.
        vendor: u16,
        /// Device ID.
        device: u16,
    },
    /// A class of functions: `(class & mask) == (value & mask)` on the 24-bit class code
    /// (class, subclass, programming interface).
    Class {
        /// Class code to compare with.
        value: u32,
        /// Bits that must match.
        mask: u32,
    },
}

impl PciMatch {
    /// Exactly this class code, subclass and programming interface.
    pub const fn class(value: u32) -> Self {
        Self::Class {
            value,
            mask: 0xff_ffff,
        }
    }

    /// One chip.
    pub const fn id(vendor: u16, device: u16) -> Self {
        Self::Id { vendor, device }
    }

    /// True if `ids` is matched.
    pub fn matches(&self, ids: &PciIds) -> bool {
        match *self {
            Self::Id { vendor, device } => ids.vendor == vendor && ids.device == device,
            Self::Class { value, mask } => (ids.class ^ value) & mask & 0xff_ffff == 0,
        }
    }
}

/// A PCI driver registration: plain data, matched by ID or class code.
pub struct PciDriverEntry {
    /// Driver name, e.g. `nvme`.
    pub name: &'static str,
    /// What it handles.
    pub matches: &'static [PciMatch],
    /// Probe: called once per matched function, after the host bridge enabled it.
    pub probe: fn(&PciProbe<'_>) -> Result<(), ProbeError>,
}

/// Registered PCI drivers.
#[distributed_slice]
pub static PCI_DRIVERS: [PciDriverEntry];

/// The driver for a function: one naming its vendor:device ID first, else one matching its
/// class code, in registration order.
pub fn match_pci_driver<'a>(
    drivers: &'a [PciDriverEntry],
    ids: &PciIds,
) -> Option<&'a PciDriverEntry> {
    let by = |id: bool| {
        drivers.iter().find(|d| {
            d.matches
                .iter()
                .any(|m| matches!(m, PciMatch::Id { .. }) == id && m.matches(ids))
        })
    };
    by(true).or_else(|| by(false))
}

/// The quirk entries that apply to `function` behind `host` on `board`: those of the quirk
/// sets the board lists for the host bridge (by one of its compatibles or its name) or for
/// the function's bus ID, whose own match list names the function's bus ID.
pub fn quirks_for<'a>(
    quirks: &'a [QuirkEntry],
    board: &BoardDesc,
    host: &DeviceDesc,
    function: &HostPciFunction,
) -> Vec<&'a QuirkEntry> {
    let bus_id = function.bus_id();
    quirks
        .iter()
        .filter(|q| {
            q.matches.contains(&bus_id.as_str())
                && board.quirks.iter().any(|r| {
                    r.name == q.name
                        && (r.matches == bus_id
                            || r.matches == host.name
                            || host.compatible.contains(&r.matches))
                })
        })
        .collect()
}

/// A function offered by a host bridge, waiting for bring-up to probe it.
pub struct Offered {
    /// The function.
    pub function: HostPciFunction,
    /// Its host bridge's configuration space.
    pub config: &'static dyn ConfigSpace,
    /// The host bridge.
    pub host: &'static DeviceDesc,
}

static OFFERED: Mutex<Vec<Offered>> = Mutex::new(Vec::new());

/// A host-bridge driver offers a function it enabled.
pub fn offer(
    function: HostPciFunction,
    config: &'static dyn ConfigSpace,
    host: &'static DeviceDesc,
) {
    OFFERED.lock().push(Offered {
        function,
        config,
        host,
    });
}

/// Takes every function offered so far (bring-up probes them once).
pub fn take_offered() -> Vec<Offered> {
    core::mem::take(&mut *OFFERED.lock())
}

/// A function a host bridge found but did not offer (a bridge, a function it could not
/// set up), and what it is (for the console).
#[derive(Clone, Debug)]
pub struct Note {
    /// Where.
    pub bdf: Bdf,
    /// Its IDs.
    pub ids: PciIds,
    /// Its host bridge.
    pub host: &'static DeviceDesc,
    /// What it is, or why it is not offered.
    pub what: String,
}

static NOTES: Mutex<Vec<Note>> = Mutex::new(Vec::new());

/// A host-bridge driver reports a function it leaves alone.
pub fn note(bdf: Bdf, ids: PciIds, host: &'static DeviceDesc, what: String) {
    NOTES.lock().push(Note {
        bdf,
        ids,
        host,
        what,
    });
}

/// Takes every note made so far.
pub fn take_notes() -> Vec<Note> {
    core::mem::take(&mut *NOTES.lock())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::{DeviceStatus, QuirkRefDesc};
    use crate::plugin::QuirkData;

    fn ids(vendor: u16, device: u16, class: u32) -> PciIds {
        PciIds {
            vendor,
            device,
            class,
            revision: 0,
            subsystem_vendor: 0,
            subsystem: 0,
        }
    }

    fn board() -> BoardDesc {
        use crate::platform::*;
        let irq = IrqDesc {
            intid: 25,
            trigger: Trigger::Level,
        };
        BoardDesc {
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
                maintenance_irq: irq,
                spi_count: 64,
            },
            timer: TimerDesc {
                secure_phys: irq,
                phys: irq,
                virt: irq,
                hyp_phys: irq,
            },
            pmu: PmuDesc::Ppi(irq),
            console: Some(0),
            interrupt_controller: 0,
            devices: &[],
            quirks: &[],
            network: crate::platform::NetworkDesc::DEFAULT,
            stage2_ram_mappings: crate::platform::Stage2RamMappings::Blocks,
            source: crate::platform::SourceDesc::NONE,
            numa_distances: &[],
        }
    }

    fn ok(_: &PciProbe<'_>) -> Result<(), ProbeError> {
        Ok(())
    }

    static TABLE: [PciDriverEntry; 3] = [
        PciDriverEntry {
            name: "any-storage",
            matches: &[PciMatch::Class {
                value: 0x01_00_00,
                mask: 0xff_00_00,
            }],
            probe: ok,
        },
        PciDriverEntry {
            name: "nvme",
            matches: &[PciMatch::class(0x01_08_02)],
            probe: ok,
        },
        PciDriverEntry {
            name: "one-chip",
            matches: &[PciMatch::id(0x144d, 0xa808)],
            probe: ok,
        },
    ];

    #[test]
    fn a_register_bar_must_be_assigned_and_aligned() {
        let bar = |index, base| HostBar {
            index,
            base,
            size: 0x4000,
            is_64bit: true,
            prefetchable: false,
        };
        let f = |bars| HostPciFunction {
            bdf: Bdf {
                bus: 0,
                device: 1,
                function: 0,
            },
            ids: ids(0x1b36, 0x0010, 0x01_08_02),
            bars,
            intx: None,
        };
        let ok = f(vec![bar(0, 0x1000_0000)]);
        let (base, size) = ok.mmio_bar::<u32>(0, 4096).unwrap();
        assert_eq!((base.as_ptr() as u64, size), (0x1000_0000, 0x4000));
        assert_eq!(
            ok.mmio_bar::<u32>(5, 1024),
            Err(crate::plugin::ProbeError::Hardware("BAR 5 not assigned"))
        );
        assert!(f(vec![bar(0, 0x1000_0400)])
            .mmio_bar::<u32>(0, 4096)
            .is_err());
        assert!(f(vec![bar(0, 0)]).mmio_bar::<u32>(0, 4096).is_err());
    }

    #[test]
    fn an_id_match_wins_over_a_class_match_and_class_matches_go_in_order() {
        let name = |i: PciIds| match_pci_driver(&TABLE, &i).map(|d| d.name);
        assert_eq!(name(ids(0x144d, 0xa808, 0x01_08_02)), Some("one-chip"));
        assert_eq!(name(ids(0x1b36, 0x0010, 0x01_08_02)), Some("any-storage"));
        assert_eq!(name(ids(0x1b36, 0x0008, 0x06_00_00)), None);
        assert!(PciMatch::class(0x01_08_02).matches(&ids(1, 2, 0x01_08_02)));
        assert!(!PciMatch::class(0x01_08_02).matches(&ids(1, 2, 0x01_08_03)));
    }

    #[test]
    fn quirks_apply_only_when_the_board_lists_their_set_for_the_bridge() {
        static QUIRKS: [QuirkEntry; 1] = [QuirkEntry {
            name: "set",
            matches: &["pci:144d:a808"],
            description: "",
            data: QuirkData::Soc { cpu_on_delay_us: 1 },
        }];
        static HOST: DeviceDesc = DeviceDesc {
            name: "pcie",
            compatible: &["pci-host-ecam-generic"],
            regs: &[],
            irqs: &[],
            status: DeviceStatus::Okay,
            bus_id: None,
            clock_hz: None,
            dma_coherent: false,
        };
        let f = HostPciFunction {
            bdf: Bdf {
                bus: 0,
                device: 1,
                function: 0,
            },
            ids: ids(0x144d, 0xa808, 0x01_08_02),
            bars: Vec::new(),
            intx: None,
        };
        let refs = [QuirkRefDesc {
            name: "set",
            matches: "pci-host-ecam-generic",
        }];
        let mut board = board();
        assert!(quirks_for(&QUIRKS, &board, &HOST, &f).is_empty());
        board.quirks = Box::leak(Box::new(refs));
        assert_eq!(quirks_for(&QUIRKS, &board, &HOST, &f).len(), 1);
        let other = HostPciFunction {
            ids: ids(0x1b36, 0x0010, 0x01_08_02),
            ..f
        };
        assert!(quirks_for(&QUIRKS, &board, &HOST, &other).is_empty());
    }
}
