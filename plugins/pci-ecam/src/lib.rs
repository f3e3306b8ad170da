//! PCIe host bridge with an ECAM configuration window (`compatible "pci-host-ecam-generic"`,
//! as on QEMU `virt` and Ampere Altra), for the machine's own PCI devices.
//!
//! The board's KDL declares the bridge: its ECAM window (`reg ... name="ecam"`, 1 MiB per
//! bus), the 32-bit memory window BARs are placed in (`reg ... name="mem32"`) and its
//! INTA..INTD SPIs (`irq`, in pin order). Both windows are mapped by the EL2 page tables as
//! device memory like every device window. Probing scans bus 0: each function's memory BARs
//! are sized and assigned in the `mem32` window (without firmware, as under QEMU `-kernel`,
//! nothing assigned them; on a board with no `mem32` window the firmware's assignment is
//! kept), memory space and bus mastering are enabled and the function is offered to the
//! PCI drivers ([`hypervisor::plugin::pci`]). Bridges behind bus 0 are reported, not
//! followed. Only 32-bit configuration accesses are made (Altra's ECAM answers nothing
//! else).
#![cfg_attr(not(test), no_std)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ptr::NonNull;
use hypervisor::pci::PciIds;
use hypervisor::platform::{BoardDesc, DeviceDesc, IrqDesc};
use hypervisor::plugin::pci::{note, offer, Bdf, ConfigSpace, HostBar, HostPciFunction};
use hypervisor::plugin::{DriverEntry, DriverKind, ProbeError, Probed, DRIVERS};
use hypervisor::sync::Mutex;
use safe_mmio::fields::ReadWrite;
use safe_mmio::UniqueMmioPointer;

/// Configuration header offsets (PCI Local Bus 3.0, 6.1).
pub mod cfg {
    /// Vendor ID (15:0), device ID (31:16).
    pub const ID: u16 = 0x00;
    /// Command (15:0), status (31:16).
    pub const COMMAND: u16 = 0x04;
    /// Revision (7:0), class code (31:8).
    pub const CLASS: u16 = 0x08;
    /// Header type (23:16), bit 23: multi-function.
    pub const HEADER: u16 = 0x0c;
    /// BAR 0; BAR n at `BAR0 + 4 n`.
    pub const BAR0: u16 = 0x10;
    /// Subsystem vendor (15:0) and subsystem ID (31:16).
    pub const SUBSYSTEM: u16 = 0x2c;
    /// Interrupt line (7:0), interrupt pin (15:8, 1 = INTA).
    pub const INTERRUPT: u16 = 0x3c;
    /// Bridge (type 1): primary (7:0), secondary (15:8) and subordinate (23:16) bus.
    pub const BUS_NUMBERS: u16 = 0x18;
    /// Bridge: I/O base and limit (15:0).
    pub const IO_BASE_LIMIT: u16 = 0x1c;
    /// Bridge: memory base (15:4 = address 31:20) and limit (31:20 in 31:20).
    pub const MEM_BASE_LIMIT: u16 = 0x20;
    /// Bridge: prefetchable memory base and limit.
    pub const PREF_BASE_LIMIT: u16 = 0x24;
    /// Bridge: prefetchable base, upper 32 bits.
    pub const PREF_BASE_UPPER: u16 = 0x28;
    /// Bridge: prefetchable limit, upper 32 bits.
    pub const PREF_LIMIT_UPPER: u16 = 0x2c;
    /// Command: memory space enable.
    pub const CMD_MEMORY: u32 = 1 << 1;
    /// Command: bus master enable.
    pub const CMD_BUS_MASTER: u32 = 1 << 2;
    /// Command: INTx disable.
    pub const CMD_INTX_DISABLE: u32 = 1 << 10;
}

/// A bump allocator over a bus-address window, placing each BAR at its natural alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    next: u64,
    end: u64,
}

impl Window {
    /// The window `[base, base + size)`.
    pub fn new(base: u64, size: u64) -> Self {
        Self {
            next: base,
            end: base.saturating_add(size),
        }
    }

    /// Moves the next free address up to a multiple of `align` (a power of two).
    pub fn align(&mut self, align: u64) {
        self.next = self.next.saturating_add(align - 1) & !(align - 1);
    }

    /// `size` bytes (a power of two) aligned to `size`, or `None` when the window is full.
    pub fn alloc(&mut self, size: u64) -> Option<u64> {
        if !size.is_power_of_two() {
            return None;
        }
        let base = self.next.checked_add(size - 1)? & !(size - 1);
        let end = base.checked_add(size)?;
        (end <= self.end).then(|| {
            self.next = end;
            base
        })
    }
}

/// The size a memory BAR decodes, from what it reads back after all ones were written
/// (`low`, and `high` for the upper half of a 64-bit BAR); `None` for an unimplemented BAR.
pub fn bar_size(low: u32, high: Option<u32>) -> Option<u64> {
    let mask = (u64::from(high.unwrap_or(if low == 0 { 0 } else { u32::MAX })) << 32)
        | u64::from(low & !0xf);
    (mask != 0).then(|| (!mask).wrapping_add(1))
}

/// Why a function could not be set up (it is reported and left disabled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupError {
    /// A BAR did not fit the `mem32` window.
    WindowFull {
        /// The BAR.
        bar: u8,
        /// Its size.
        size: u64,
    },
    /// The board declares no `mem32` window and the firmware left a BAR (or a bridge's
    /// bus numbers) unassigned.
    Unassigned {
        /// The BAR.
        bar: u8,
    },
    /// A bridge for which no bus number is left in the ECAM window.
    NoBus,
}

impl SetupError {
    /// What went wrong and what to change, for the console.
    pub fn message(self) -> &'static str {
        match self {
            Self::WindowFull { .. } => {
                "left disabled: a BAR does not fit the bridge's `mem32` window; enlarge it in the board KDL"
            }
            Self::Unassigned { .. } => {
                "left disabled: firmware left a BAR or bus number unassigned and the bridge has no `mem32` window in the board KDL"
            }
            Self::NoBus => "left disabled: a bridge with no bus number left in the ECAM window",
        }
    }
}

/// What enumeration found at one function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// A type-0 function, enabled.
    Function(HostPciFunction),
    /// A type-0 function that could not be set up.
    Failed(Bdf, PciIds, SetupError),
    /// A PCI-to-PCI bridge (root port) and its secondary bus, which was scanned.
    Bridge(Bdf, PciIds, u8),
}

fn ids_of(config: &dyn ConfigSpace, bdf: Bdf, id: u32) -> PciIds {
    let class = config.read32(bdf, cfg::CLASS);
    let sub = config.read32(bdf, cfg::SUBSYSTEM);
    PciIds {
        vendor: id as u16,
        device: (id >> 16) as u16,
        class: class >> 8,
        revision: class as u8,
        subsystem_vendor: sub as u16,
        subsystem: (sub >> 16) as u16,
    }
}

/// Sizes and places the memory BARs of the type-0 function `bdf` (memory decoding must be
/// off), in `window` or, without one, where the firmware put them.
fn setup_bars(
    config: &dyn ConfigSpace,
    bdf: Bdf,
    mut window: Option<&mut Window>,
    count: u8,
) -> Result<Vec<HostBar>, SetupError> {
    let mut bars = Vec::new();
    let mut i = 0u8;
    while i < count {
        let off = cfg::BAR0 + 4 * u16::from(i);
        let orig = config.read32(bdf, off);
        if orig & 1 != 0 {
            i += 1; // I/O BAR: not used by the hypervisor's drivers.
            continue;
        }
        let is_64bit = (orig >> 1) & 3 == 2 && i + 1 < count;
        let orig_high = if is_64bit {
            config.read32(bdf, off + 4)
        } else {
            0
        };
        config.write32(bdf, off, u32::MAX);
        let low = config.read32(bdf, off);
        let high = is_64bit.then(|| {
            config.write32(bdf, off + 4, u32::MAX);
            config.read32(bdf, off + 4)
        });
        let step = if is_64bit { 2 } else { 1 };
        let Some(size) = bar_size(low, high) else {
            config.write32(bdf, off, orig);
            i += step;
            continue;
        };
        let base = match window.as_deref_mut() {
            Some(w) => w
                .alloc(size.max(0x1000))
                .ok_or(SetupError::WindowFull { bar: i, size })?,
            None => {
                let fw = (u64::from(orig_high) << 32) | u64::from(orig & !0xf);
                if fw == 0 {
                    return Err(SetupError::Unassigned { bar: i });
                }
                fw
            }
        };
        config.write32(bdf, off, (base as u32 & !0xf) | (orig & 0xf));
        if is_64bit {
            config.write32(bdf, off + 4, (base >> 32) as u32);
        }
        bars.push(HostBar {
            index: i,
            base,
            size,
            is_64bit,
            prefetchable: orig & 8 != 0,
        });
        i += step;
    }
    Ok(bars)
}

/// The SPI of `pin` (1 = INTA) of device `dev` on bus 0: the standard swizzle over the
/// bridge's four lines (QEMU virt's `interrupt-map`, ACPI `_PRT`).
pub fn intx_line(intx: &[IrqDesc], dev: u8, pin: u8) -> Option<IrqDesc> {
    if !(1..=4).contains(&pin) || intx.len() != 4 {
        return None;
    }
    intx.get((usize::from(dev) + usize::from(pin) - 1) % 4)
        .copied()
}

/// The root-bus device and pin an INTx pin arrives at: `path` holds the device numbers
/// from the root bus down to the function; each bridge on the way rotates the pin by the
/// device number below it (PCI-to-PCI Bridge spec 9.1, Linux `pci_common_swizzle`).
pub fn swizzle(path: &[u8], pin: u8) -> (u8, u8) {
    let mut pin = pin;
    for &dev in path.iter().skip(1).rev() {
        pin = ((pin.wrapping_sub(1)).wrapping_add(dev) % 4) + 1;
    }
    (path.first().copied().unwrap_or(0), pin)
}

/// Scans the buses of `config` from bus 0: every function's BARs are assigned (in
/// `window`, or as the firmware left them) and, when that worked, memory space and bus
/// mastering are turned on. PCI-to-PCI bridges (root ports) are followed: with a window
/// they get bus numbers in scan order and a memory window around what is behind them;
/// without one the firmware's bus numbers are followed. Buses at or above `buses` (the
/// ECAM's size) are not scanned.
pub fn enumerate(
    config: &dyn ConfigSpace,
    mut window: Option<&mut Window>,
    intx: &[IrqDesc],
    buses: u16,
) -> Vec<Found> {
    let mut scan = Scan {
        config,
        intx,
        buses,
        next_bus: 1,
        found: Vec::new(),
    };
    scan.bus(0, &mut window, &mut Vec::new());
    scan.found
}

struct Scan<'a> {
    config: &'a dyn ConfigSpace,
    intx: &'a [IrqDesc],
    buses: u16,
    next_bus: u16,
    found: Vec<Found>,
}

/// Bridge windows have 1 MiB granularity.
const BRIDGE_ALIGN: u64 = 1 << 20;

impl Scan<'_> {
    fn bus(&mut self, bus: u8, window: &mut Option<&mut Window>, path: &mut Vec<u8>) {
        if path.len() > 8 {
            return; // deeper than any real topology: a loop in firmware bus numbers
        }
        for device in 0..32u8 {
            for function in 0..8u8 {
                let bdf = Bdf {
                    bus,
                    device,
                    function,
                };
                let id = self.config.read32(bdf, cfg::ID);
                if id as u16 == 0xffff || id as u16 == 0 {
                    if function == 0 {
                        break;
                    }
                    continue;
                }
                let header = self.config.read32(bdf, cfg::HEADER) >> 16;
                let ids = ids_of(self.config, bdf, id);
                path.push(device);
                match header & 0x7f {
                    0 => self.endpoint(bdf, ids, window, path),
                    1 => self.bridge(bdf, ids, window, path),
                    _ => {}
                }
                path.pop();
                if function == 0 && header & 0x80 == 0 {
                    break;
                }
            }
        }
    }

    fn endpoint(&mut self, bdf: Bdf, ids: PciIds, window: &mut Option<&mut Window>, path: &[u8]) {
        let config = self.config;
        let cmd = config.read32(bdf, cfg::COMMAND) & 0xffff;
        let off = cmd & !(cfg::CMD_MEMORY | cfg::CMD_BUS_MASTER);
        config.write32(bdf, cfg::COMMAND, off);
        match setup_bars(config, bdf, window.as_deref_mut(), 6) {
            Ok(bars) => {
                let pin = (config.read32(bdf, cfg::INTERRUPT) >> 8) as u8;
                let (root_dev, root_pin) = swizzle(path, pin);
                let line = if (1..=4).contains(&pin) {
                    intx_line(self.intx, root_dev, root_pin)
                } else {
                    None
                };
                config.write32(
                    bdf,
                    cfg::COMMAND,
                    off | cfg::CMD_MEMORY | cfg::CMD_BUS_MASTER,
                );
                self.found.push(Found::Function(HostPciFunction {
                    bdf,
                    ids,
                    bars,
                    intx: line,
                }));
            }
            Err(e) => self.found.push(Found::Failed(bdf, ids, e)),
        }
    }

    fn bridge(
        &mut self,
        bdf: Bdf,
        ids: PciIds,
        window: &mut Option<&mut Window>,
        path: &mut Vec<u8>,
    ) {
        let config = self.config;
        let cmd = config.read32(bdf, cfg::COMMAND) & 0xffff;
        let off = cmd & !(cfg::CMD_MEMORY | cfg::CMD_BUS_MASTER);
        config.write32(bdf, cfg::COMMAND, off);
        let buses = config.read32(bdf, cfg::BUS_NUMBERS);
        let Some(w) = window.as_deref_mut() else {
            // Firmware's topology: follow its bus numbers.
            let secondary = (buses >> 8) as u8;
            if u16::from(secondary) <= u16::from(bdf.bus) || u16::from(secondary) >= self.buses {
                self.found
                    .push(Found::Failed(bdf, ids, SetupError::Unassigned { bar: 0 }));
                return;
            }
            self.found.push(Found::Bridge(bdf, ids, secondary));
            self.bus(secondary, window, path);
            config.write32(
                bdf,
                cfg::COMMAND,
                cmd | cfg::CMD_MEMORY | cfg::CMD_BUS_MASTER,
            );
            return;
        };
        if self.next_bus >= self.buses {
            self.found.push(Found::Failed(bdf, ids, SetupError::NoBus));
            return;
        }
        let secondary = self.next_bus as u8;
        self.next_bus += 1;
        let keep = buses & 0xff00_0000; // secondary latency timer
        let numbers = |sub: u8| {
            keep | (u32::from(sub) << 16) | (u32::from(secondary) << 8) | u32::from(bdf.bus)
        };
        config.write32(bdf, cfg::BUS_NUMBERS, numbers(0xff));
        // No I/O or prefetchable window: base above limit disables them.
        config.write32(bdf, cfg::IO_BASE_LIMIT, 0x00f0);
        config.write32(bdf, cfg::PREF_BASE_LIMIT, 0x0000_fff0);
        config.write32(bdf, cfg::PREF_BASE_UPPER, 0);
        config.write32(bdf, cfg::PREF_LIMIT_UPPER, 0);
        w.align(BRIDGE_ALIGN);
        let start = w.next;
        self.found.push(Found::Bridge(bdf, ids, secondary));
        self.bus(secondary, window, path);
        let w = window.as_deref_mut();
        let end = w.map_or(start, |w| {
            w.align(BRIDGE_ALIGN);
            w.next
        });
        config.write32(bdf, cfg::BUS_NUMBERS, numbers((self.next_bus - 1) as u8));
        let mem = if end > start {
            (((start >> 16) as u32) & 0xfff0) | ((((end - 1) >> 16) as u32 & 0xfff0) << 16)
        } else {
            0x0000_fff0
        };
        config.write32(bdf, cfg::MEM_BASE_LIMIT, mem);
        config.write32(
            bdf,
            cfg::COMMAND,
            off | cfg::CMD_MEMORY | cfg::CMD_BUS_MASTER,
        );
    }
}

/// One host bridge's ECAM window.
pub struct Ecam {
    regs: Mutex<UniqueMmioPointer<'static, [ReadWrite<u32>]>>,
}

impl Ecam {
    /// Takes ownership of the ECAM window at `base`, `size` bytes.
    ///
    /// # Safety
    ///
    /// The caller guarantees that:
    /// 1. `[base, base + size)` is a host bridge's ECAM window, 4-byte aligned, mapped as
    ///    device memory for the rest of the program (identity-mapped at EL2), and every
    ///    dword of it may be read and written (a missing function reads as all ones);
    /// 2. nothing else (another `Ecam`, another driver, a guest mapping) accesses the window
    ///    while this value exists.
    pub unsafe fn new(base: NonNull<ReadWrite<u32>>, size: usize) -> Self {
        let slice = NonNull::slice_from_raw_parts(base, size / 4);
        Self {
            // SAFETY: (1) and (2) of this function's contract are those of
            // `UniqueMmioPointer::new`: valid, aligned, device-mapped and unaliased.
            regs: Mutex::new(unsafe { UniqueMmioPointer::new(slice) }),
        }
    }

    fn index(bdf: Bdf, offset: u16) -> usize {
        (usize::from(bdf.bus) << 18)
            | (usize::from(bdf.device & 0x1f) << 13)
            | (usize::from(bdf.function & 7) << 10)
            | usize::from((offset & 0xffc) >> 2)
    }
}

impl ConfigSpace for Ecam {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        let mut regs = self.regs.lock();
        regs.get(Self::index(bdf, offset))
            .map_or(u32::MAX, |mut r| r.read())
    }

    fn write32(&self, bdf: Bdf, offset: u16, value: u32) {
        let mut regs = self.regs.lock();
        if let Some(mut r) = regs.get(Self::index(bdf, offset)) {
            r.write(value);
        }
    }
}

fn probe(dev: &'static DeviceDesc, _board: &'static BoardDesc) -> Result<Probed, ProbeError> {
    let ecam = dev
        .regs
        .iter()
        .find(|r| r.name == "ecam")
        .or(dev.regs.first())
        .ok_or(ProbeError::MissingReg)?;
    if ecam.size < 1 << 20 {
        return Err(ProbeError::Hardware(
            "ECAM window is smaller than one bus (1 MiB); fix the `reg ... name=\"ecam\"` size",
        ));
    }
    let base = usize::try_from(ecam.base)
        .ok()
        .filter(|b| b % 4 == 0)
        .and_then(|b| NonNull::new(b as *mut ReadWrite<u32>))
        .ok_or(ProbeError::Hardware(
            "ECAM base is zero or not 4-byte aligned; fix the `reg` address",
        ))?;
    let size = usize::try_from(ecam.size).map_err(|_| ProbeError::Hardware("ECAM too large"))?;
    // SAFETY: (1) the board's device table places this bridge's ECAM at `base` with `size`
    // bytes (at least one bus, checked above, as is alignment), and bring-up identity-maps
    // every enabled device window as device memory before probing; (2) each device is
    // probed once and the board validator rejects overlapping windows, so no other driver
    // owns this window; the `Ecam` is leaked and lives for the rest of the program.
    let config: &'static Ecam = Box::leak(Box::new(unsafe { Ecam::new(base, size) }));
    let mut window = dev
        .regs
        .iter()
        .find(|r| r.name == "mem32")
        .map(|r| Window::new(r.base, r.size));
    let buses = u16::try_from(ecam.size >> 20).unwrap_or(256).min(256);
    for f in enumerate(config, window.as_mut(), dev.irqs, buses) {
        match f {
            Found::Function(function) => offer(function, config, dev),
            Found::Failed(bdf, ids, e) => note(bdf, ids, dev, e.message().into()),
            Found::Bridge(bdf, ids, bus) => {
                note(bdf, ids, dev, alloc::format!("bridge to bus {bus:02x}"))
            }
        }
    }
    Ok(Probed::Other)
}

/// Registration: matches `compatible "pci-host-ecam-generic"`.
#[linkme::distributed_slice(DRIVERS)]
static PCI_ECAM_DRIVER: DriverEntry = DriverEntry {
    name: "pci-ecam",
    // Said once, in build.rs, which also announces it to the image crate.
    compatible: include!(concat!(env!("OUT_DIR"), "/compatible.rs")),
    kind: DriverKind::Other,
    probe,
};

#[cfg(test)]
mod tests {
    use super::*;
    use hypervisor::platform::Trigger;
    use hypervisor::plugin::DRIVERS;
    use std::collections::BTreeMap;

    /// A function's config space: plain registers, and BARs that decode `sizes[i]` bytes
    /// (0 = unimplemented) the way hardware does (the low bits of the address read as 0).
    struct FakeFn {
        regs: BTreeMap<u16, u32>,
        sizes: [u64; 6],
    }

    /// Functions by (bus, device, function).
    struct FakeBus(std::sync::Mutex<BTreeMap<(u8, u8, u8), FakeFn>>);

    impl FakeBus {
        fn new(fns: impl IntoIterator<Item = ((u8, u8, u8), FakeFn)>) -> Self {
            Self(std::sync::Mutex::new(fns.into_iter().collect()))
        }
    }

    impl ConfigSpace for FakeBus {
        fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
            let bus = self.0.lock().unwrap();
            let Some(f) = bus.get(&(bdf.bus, bdf.device, bdf.function)) else {
                return u32::MAX;
            };
            f.regs.get(&offset).copied().unwrap_or(0)
        }

        fn write32(&self, bdf: Bdf, offset: u16, value: u32) {
            let mut bus = self.0.lock().unwrap();
            let Some(f) = bus.get_mut(&(bdf.bus, bdf.device, bdf.function)) else {
                return;
            };
            let old = f.regs.get(&offset).copied().unwrap_or(0);
            let bars = if f.regs.get(&cfg::HEADER).copied().unwrap_or(0) >> 16 & 0x7f == 1 {
                2
            } else {
                6
            };
            let v = if (cfg::BAR0..cfg::BAR0 + 4 * bars).contains(&offset) {
                let i = usize::from((offset - cfg::BAR0) / 4);
                // The upper half of a 64-bit BAR takes its mask from the BAR below it.
                let (size, high) = match f.sizes[i] {
                    0 if i > 0
                        && f.sizes[i - 1] != 0
                        && f.regs.get(&(offset - 4)).copied().unwrap_or(0) & 6 == 4 =>
                    {
                        (f.sizes[i - 1], true)
                    }
                    s => (s, false),
                };
                if size == 0 {
                    0
                } else if high {
                    (((!(size - 1)) >> 32) as u32) & value
                } else {
                    (value & !((size - 1) as u32) & !0xf) | (old & 0xf)
                }
            } else {
                value
            };
            f.regs.insert(offset, v);
        }
    }

    fn root_port() -> FakeFn {
        let mut regs = BTreeMap::new();
        regs.insert(cfg::ID, 0x000c_1b36);
        regs.insert(cfg::CLASS, 0x0604_0000);
        regs.insert(cfg::HEADER, 0x0001_0000);
        FakeFn {
            regs,
            sizes: [0; 6],
        }
    }

    fn nvme_like() -> FakeFn {
        let mut regs = BTreeMap::new();
        regs.insert(cfg::ID, 0x0010_1b36);
        regs.insert(cfg::CLASS, 0x0108_0202);
        regs.insert(cfg::INTERRUPT, 0x0100);
        regs.insert(cfg::BAR0, 0x4); // 64-bit memory BAR, 16 KiB
        regs.insert(cfg::BAR0 + 8, 0x0); // 32-bit memory BAR, 4 KiB
        FakeFn {
            regs,
            sizes: [0x4000, 0, 0x1000, 0, 0, 0],
        }
    }

    fn host_bridge() -> FakeFn {
        let mut regs = BTreeMap::new();
        regs.insert(cfg::ID, 0x0008_1b36);
        regs.insert(cfg::CLASS, 0x0600_0000);
        FakeFn {
            regs,
            sizes: [0; 6],
        }
    }

    fn spis() -> Vec<IrqDesc> {
        (35..39)
            .map(|intid| IrqDesc {
                intid,
                trigger: Trigger::Level,
            })
            .collect()
    }

    #[test]
    fn window_places_bars_at_their_alignment_until_full() {
        let mut w = Window::new(0x1000_0000, 0x1_0000);
        assert_eq!(w.alloc(0x1000), Some(0x1000_0000));
        assert_eq!(w.alloc(0x4000), Some(0x1000_4000));
        assert_eq!(w.alloc(0x3000), None, "not a power of two");
        assert_eq!(w.alloc(0x1_0000), None, "does not fit");
        assert_eq!(w.alloc(0x8000), Some(0x1000_8000));
    }

    #[test]
    fn bar_sizes_from_the_all_ones_readback() {
        assert_eq!(bar_size(0xffff_c004, Some(0xffff_ffff)), Some(0x4000));
        assert_eq!(bar_size(0xffff_f000, None), Some(0x1000));
        assert_eq!(bar_size(0, None), None);
        assert_eq!(
            bar_size(0x0000_0004, Some(0xffff_fff0)),
            Some(0x10_0000_0000)
        );
    }

    #[test]
    fn bus_0_is_scanned_bars_are_assigned_and_the_function_enabled() {
        let bus = FakeBus::new([((0, 0, 0), host_bridge()), ((0, 2, 0), nvme_like())]);
        let mut w = Window::new(0x1000_0000, 0x2eff_0000);
        let found = enumerate(&bus, Some(&mut w), &spis(), 256);
        assert_eq!(found.len(), 2);
        let Found::Function(f) = &found[1] else {
            panic!("{found:?}")
        };
        assert_eq!(f.bdf.to_string(), "00:02.0");
        assert_eq!(
            (f.ids.vendor, f.ids.device, f.ids.class),
            (0x1b36, 0x10, 0x01_08_02)
        );
        assert_eq!(
            f.bar(0).map(|b| (b.base, b.size, b.is_64bit)),
            Some((0x1000_0000, 0x4000, true))
        );
        assert_eq!(
            f.bar(2).map(|b| (b.base, b.size)),
            Some((0x1000_4000, 0x1000))
        );
        // Dev 2, INTA: the swizzle gives the bridge's third line, SPI 5 = INTID 37.
        assert_eq!(f.intx.map(|i| i.intid), Some(37));
        let b = Bdf {
            bus: 0,
            device: 2,
            function: 0,
        };
        assert_eq!(bus.read32(b, cfg::BAR0), 0x1000_0004);
        assert_eq!(bus.read32(b, cfg::BAR0 + 4), 0);
        let cmd = bus.read32(b, cfg::COMMAND);
        assert_eq!(cmd & 6, 6, "memory space and bus master on");
    }

    #[test]
    fn a_full_window_leaves_the_function_disabled() {
        let bus = FakeBus::new([((0, 1, 0), nvme_like())]);
        let mut w = Window::new(0x1000_0000, 0x2000);
        let found = enumerate(&bus, Some(&mut w), &spis(), 256);
        assert!(matches!(
            found[0],
            Found::Failed(
                _,
                _,
                SetupError::WindowFull {
                    bar: 0,
                    size: 0x4000
                }
            )
        ));
        let b = Bdf {
            bus: 0,
            device: 1,
            function: 0,
        };
        assert_eq!(bus.read32(b, cfg::COMMAND) & 6, 0);
    }

    #[test]
    fn without_a_window_firmware_bars_are_kept_and_unassigned_ones_refused() {
        let mut f = nvme_like();
        f.regs.insert(cfg::BAR0, 0x8000_0004);
        f.regs.insert(cfg::BAR0 + 8, 0x8001_0000);
        let bus = FakeBus::new([((0, 0, 0), f)]);
        let found = enumerate(&bus, None, &[], 256);
        let Found::Function(f) = &found[0] else {
            panic!("{found:?}")
        };
        assert_eq!(f.bar(0).map(|b| b.base), Some(0x8000_0000));
        assert_eq!(f.bar(2).map(|b| b.base), Some(0x8001_0000));
        assert_eq!(f.intx, None);

        let bus = FakeBus::new([((0, 0, 0), nvme_like())]);
        let found = enumerate(&bus, None, &[], 256);
        assert!(matches!(
            found[0],
            Found::Failed(_, _, SetupError::Unassigned { bar: 0 })
        ));
    }

    #[test]
    fn functions_behind_a_root_port_get_a_bus_a_window_and_a_swizzled_line() {
        // Root port at 00:01.0 (its secondary bus will be 1), the NVMe at 01:00.0 behind
        // it, and a second NVMe on bus 0 after it.
        let bus = FakeBus::new([
            ((0, 0, 0), host_bridge()),
            ((0, 1, 0), root_port()),
            ((1, 0, 0), nvme_like()),
            ((0, 2, 0), nvme_like()),
        ]);
        let mut w = Window::new(0x1000_0000, 0x2eff_0000);
        let found = enumerate(&bus, Some(&mut w), &spis(), 256);
        let port = Bdf {
            bus: 0,
            device: 1,
            function: 0,
        };
        assert!(
            matches!(found[1], Found::Bridge(b, _, 1) if b == port),
            "{found:?}"
        );
        let Found::Function(behind) = &found[2] else {
            panic!("{found:?}")
        };
        assert_eq!(behind.bdf.to_string(), "01:00.0");
        assert_eq!(behind.bar(0).map(|b| b.base), Some(0x1000_0000));
        // INTA of device 0 behind the port in slot 1 arrives as INTA of slot 1: SPI 4.
        assert_eq!(behind.intx.map(|i| i.intid), Some(36));
        // Primary 0, secondary 1, subordinate 1; memory window 0x1000_0000..0x100f_ffff.
        assert_eq!(bus.read32(port, cfg::BUS_NUMBERS) & 0xff_ffff, 0x01_01_00);
        assert_eq!(bus.read32(port, cfg::MEM_BASE_LIMIT), 0x1000_1000);
        assert_eq!(bus.read32(port, cfg::COMMAND) & 6, 6);
        // The next function on bus 0 is placed after the bridge's 1 MiB window.
        let Found::Function(after) = &found[3] else {
            panic!("{found:?}")
        };
        assert_eq!(after.bar(0).map(|b| b.base), Some(0x1010_0000));
        assert_eq!(swizzle(&[3, 0, 2], 1), (3, 3));
    }

    #[test]
    fn registered_for_pci_host_ecam_generic() {
        let dev = plugin_test_support::device(&["pci-host-ecam-generic"], 0, 0x1000_0000, None);
        let entry = hypervisor::plugin::match_driver(&DRIVERS, dev).expect("registered");
        assert_eq!(entry.name, "pci-ecam");
    }
}
