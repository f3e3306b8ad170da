//! Plugin contracts and registries: drivers and quirks register into `linkme` slices.
//!
//! The core never names a plugin. A plugin crate adds an entry to [`DRIVERS`] or
//! [`QUIRKS`]; board bring-up matches the generated device table against them.
//!
//! ```ignore
//! use hypervisor::plugin::{DriverEntry, DriverKind, Probed, DRIVERS};
//! #[linkme::distributed_slice(DRIVERS)]
//! static PL011: DriverEntry = DriverEntry {
//!     name: "uart-pl011",
//!     compatible: &["arm,pl011"],
//!     kind: DriverKind::Console,
//!     probe: probe_pl011,
//! };
//! ```
#![deny(unsafe_code)]

pub mod irq;
pub mod pci;
pub mod rtc;
pub mod usb;

use crate::platform::{BoardDesc, DeviceDesc, GicVersion};
use linkme::distributed_slice;

/// Errors a driver's probe can report. Bring-up logs them and goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The device has no MMIO window; add a `reg` to the device in the board's KDL.
    #[error("device has no MMIO window; add a `reg` entry to the device in the board KDL")]
    MissingReg,
    /// A required property is missing from the device; the message names it.
    #[error("device lacks `{0}`; add it to the device in the board KDL")]
    MissingProperty(&'static str),
    /// The hardware did not respond as the driver expects.
    #[error("device did not respond as expected: {0}")]
    Hardware(&'static str),
    /// A second instance of a singleton driver was probed.
    #[error("driver supports only one instance")]
    AlreadyProbed,
}

/// The register block of `dev`'s first `reg` window as a `T`: what every MMIO driver's
/// probe checks before it takes the registers. The window must hold a whole `T` and its
/// base must be non-zero and aligned for `T`; each failure says what to fix in the KDL.
/// The pointer is what a driver hands its `unsafe` constructor (e.g.
/// `safe_mmio::UniqueMmioPointer::new`): the core maps every device window as device memory
/// before probing, and the board validator refuses overlapping windows.
pub fn register_block<T>(dev: &DeviceDesc) -> Result<core::ptr::NonNull<T>, ProbeError> {
    let reg = dev.regs.first().ok_or(ProbeError::MissingReg)?;
    if reg.size < core::mem::size_of::<T>() as u64 {
        return Err(ProbeError::Hardware(
            "the `reg` window is smaller than the driver's register block; fix its size",
        ));
    }
    usize::try_from(reg.base)
        .ok()
        .filter(|b| b % core::mem::align_of::<T>() == 0)
        .and_then(|b| core::ptr::NonNull::new(b as *mut T))
        .ok_or(ProbeError::Hardware(
            "the `reg` address is zero or not aligned for the driver's registers; fix it",
        ))
}

/// The driver's one instance: made by `make` on the first probe, kept in `slot`; a second
/// device for the same single-instance driver is [`ProbeError::AlreadyProbed`].
pub fn probe_once<T>(
    slot: &'static spin::Once<T>,
    make: impl FnOnce() -> T,
) -> Result<&'static T, ProbeError> {
    let mut fresh = false;
    let instance = slot.call_once(|| {
        fresh = true;
        make()
    });
    if fresh {
        Ok(instance)
    } else {
        Err(ProbeError::AlreadyProbed)
    }
}

/// A byte-oriented console (the hypervisor's physical UART). Compare tock's `hil::uart`.
pub trait Console: Sync {
    /// Writes all bytes, blocking until the hardware accepted them.
    fn write_bytes(&self, bytes: &[u8]);
    /// Returns a received byte, if one is waiting.
    fn read_byte(&self) -> Option<u8>;
    /// Enables or disables the receive interrupt.
    fn set_rx_interrupt(&self, enabled: bool);
}

/// Physical interrupt controller operations the core needs.
pub trait IrqChip: Sync {
    /// GIC version this driver drives.
    fn version(&self) -> GicVersion;
    /// Global (distributor) initialisation, on the boot CPU, once.
    fn init_global(&self);
    /// Per-CPU initialisation (redistributor / CPU interface), on each CPU. Called with
    /// the CPU's index in the board's CPU table.
    fn init_cpu(&self, cpu_index: usize);
    /// Enables INTID with a priority; SPIs are routed to the CPU with `target_mpidr`.
    fn enable(&self, intid: u32, priority: u8, edge: bool, target_mpidr: u64);
    /// Disables INTID.
    fn disable(&self, intid: u32);
    /// Unmasks (`enabled`) or masks INTID without changing its configuration. A private
    /// interrupt (SGI/PPI) changes only for the CPU with `target_mpidr` (on GICv2 its
    /// enable bits are banked: call this on that CPU); an SPI changes for every CPU.
    fn set_enabled(&self, intid: u32, enabled: bool, target_mpidr: u64);
    /// Acknowledges the highest-priority pending interrupt (IAR), if any (`None` for
    /// spurious).
    fn acknowledge(&self) -> Option<u32>;
    /// Priority drop for INTID (EOIR). With split EOI, deactivation is separate.
    fn end_of_interrupt(&self, intid: u32);
    /// Deactivates INTID (DIR).
    fn deactivate(&self, intid: u32);
    /// The run loop's kick in one call: acknowledges; if that gave `kick`, ends it and
    /// acknowledges once more, `Ok` with what that gave; otherwise `Err` with the first
    /// acknowledge's INTID (`kick` not ended). Left to this default, each driver's copy
    /// calls its own `acknowledge` and `end_of_interrupt` statically (inlined), instead of
    /// three calls through the trait object.
    fn acknowledge_kick(&self, kick: u32) -> Result<Option<u32>, Option<u32>> {
        let first = self.acknowledge();
        if first != Some(kick) {
            return Err(first);
        }
        self.end_of_interrupt(kick);
        Ok(self.acknowledge())
    }
    /// Sends SGI `sgi` (0..16) to the CPU with MPIDR `target_mpidr`.
    fn send_sgi(&self, sgi: u32, target_mpidr: u64);
    /// The CPU with MPIDR `target_mpidr` as [`Self::send_sgi_routed`] addresses it, worked
    /// out once (the run loop keeps each CPU's for its kicks). Default: the MPIDR itself.
    fn sgi_route(&self, target_mpidr: u64) -> u64 {
        target_mpidr
    }
    /// [`Self::send_sgi`] to the CPU whose [`Self::sgi_route`] is `route`.
    fn send_sgi_routed(&self, sgi: u32, route: u64) {
        self.send_sgi(sgi, route);
    }
}

/// What a probed driver hands to the core.
#[derive(Clone, Copy)]
pub enum Probed {
    /// A console; the core uses it if it is the board's console.
    Console(&'static dyn Console),
    /// The interrupt controller.
    IrqChip(&'static dyn IrqChip),
    /// A real-time clock; the core reads the first one ([`rtc::now`]). The device stays
    /// free for passthrough: the core only reads it.
    Rtc(&'static dyn rtc::Rtc),
    /// A driver with no core-facing interface yet (it initialised its device).
    Other,
}

/// Kind of a driver, for the banner and for matching order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverKind {
    /// UART console.
    Console,
    /// Interrupt controller.
    IrqChip,
    /// Real-time clock.
    Rtc,
    /// Anything else.
    Other,
}

/// A driver registration: plain data, matched by `compatible`.
pub struct DriverEntry {
    /// Driver name, e.g. `uart-pl011`.
    pub name: &'static str,
    /// Compatibles it handles; matched against the device's list in order.
    pub compatible: &'static [&'static str],
    /// Kind.
    pub kind: DriverKind,
    /// Probe: called once per matched, enabled device.
    pub probe: fn(&'static DeviceDesc, &'static BoardDesc) -> Result<Probed, ProbeError>,
}

/// A quirk registration: matched by name from the board's `quirk` list, or by a
/// device's compatible / bus id (`usb:0bda:8153`, `pci:1b4b:9215`).
pub struct QuirkEntry {
    /// Quirk set name, e.g. `rtl8153-usb-nic`.
    pub name: &'static str,
    /// Compatibles or bus ids it applies to.
    pub matches: &'static [&'static str],
    /// Human-readable effects, shown in the banner.
    pub description: &'static str,
    /// The quirk's data (read by the subsystem it concerns).
    pub data: QuirkData,
}

/// Quirk data, by subsystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuirkData {
    /// USB NIC quirks.
    UsbNic {
        /// Disable USB link power management (U1/U2) on this device.
        disable_lpm: bool,
        /// Maximum bulk-in transfer size in bytes.
        max_rx_transfer: u32,
        /// Reset the device after this many consecutive TX timeouts.
        reset_after_tx_timeouts: u32,
        /// Which of the device's configurations to select instead of the generic choice
        /// ([`usb::choose_configuration`]).
        configuration: UsbConfigSelect,
    },
    /// Storage controller quirks presented to guests.
    Storage {
        /// Limit of queue depth exposed to guests (0 = no limit).
        max_queue_depth: u32,
        /// Do not advertise a volatile write cache.
        no_write_cache: bool,
        /// Force 512-byte logical sectors.
        force_512_sectors: bool,
        /// NVMe: ignore the controller's subsystem NQN (not unique on some drives) and
        /// synthesize one per controller (Linux `NVME_QUIRK_IGNORE_DEV_SUBNQN`).
        ignore_subnqn: bool,
        /// NVMe: wait this many milliseconds after writing CC.EN before polling CSTS.RDY
        /// (Linux `NVME_QUIRK_DELAY_BEFORE_CHK_RDY` waits 2300); 0 = no delay.
        ready_delay_ms: u32,
        /// PCI: the device also issues DMA as this function number of its slot, so the
        /// SMMU must map that requester ID too (Linux `quirk_dma_func1_alias`).
        dma_alias_function: Option<u8>,
    },
    /// CPU / SoC quirks.
    Soc {
        /// Extra delay in microseconds after PSCI CPU_ON before polling.
        cpu_on_delay_us: u32,
    },
}

/// Which configuration of a USB device enumeration selects (a USB NIC quirk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsbConfigSelect {
    /// The generic choice ([`usb::choose_configuration`]).
    Generic,
    /// The configuration whose first interface has this class and subclass (e.g. 02/06,
    /// CDC Ethernet); the generic choice if the device has none.
    FirstInterface {
        /// `bInterfaceClass`.
        class: u8,
        /// `bInterfaceSubClass`.
        subclass: u8,
    },
}

/// Registered drivers.
#[distributed_slice]
pub static DRIVERS: [DriverEntry];

/// Registered quirk sets.
#[distributed_slice]
pub static QUIRKS: [QuirkEntry];

/// Finds the driver for a device: the first registered driver sharing a compatible,
/// preferring the device's most specific compatible.
pub fn match_driver<'a>(
    drivers: &'a [DriverEntry],
    device: &DeviceDesc,
) -> Option<&'a DriverEntry> {
    device
        .compatible
        .iter()
        .find_map(|c| drivers.iter().find(|d| d.compatible.contains(c)))
}

/// Finds the quirk sets that apply to `key` (a compatible or a bus id).
pub fn match_quirks<'a>(
    quirks: &'a [QuirkEntry],
    key: &'a str,
) -> impl Iterator<Item = &'a QuirkEntry> + 'a {
    quirks.iter().filter(move |q| q.matches.contains(&key))
}

#[cfg(test)]
mod probe_helper_tests {
    use super::*;
    use crate::platform::{DeviceStatus, RegDesc};

    #[repr(C, align(4))]
    struct Regs([u32; 4]);

    fn dev(regs: &'static [RegDesc]) -> DeviceDesc {
        DeviceDesc {
            name: "uart0",
            compatible: &["x,uart"],
            regs,
            irqs: &[],
            status: DeviceStatus::Okay,
            bus_id: None,
            clock_hz: None,
            dma_coherent: false,
        }
    }

    fn reg(base: u64, size: u64) -> RegDesc {
        RegDesc {
            name: "regs",
            base,
            size,
        }
    }

    #[test]
    fn a_register_block_needs_a_whole_aligned_window() {
        let leak = |r: RegDesc| -> &'static [RegDesc] { Box::leak(Box::new([r])) };
        let p = register_block::<Regs>(&dev(leak(reg(0x900_0000, 0x1000)))).unwrap();
        assert_eq!(p.as_ptr() as usize, 0x900_0000);
        assert_eq!(
            register_block::<Regs>(&dev(&[])).unwrap_err(),
            ProbeError::MissingReg
        );
        for bad in [reg(0x900_0000, 8), reg(0x900_0002, 0x1000), reg(0, 0x1000)] {
            assert!(matches!(
                register_block::<Regs>(&dev(leak(bad))),
                Err(ProbeError::Hardware(_))
            ));
        }
    }

    #[test]
    fn a_single_instance_driver_refuses_its_second_device() {
        static SLOT: spin::Once<u32> = spin::Once::new();
        assert_eq!(probe_once(&SLOT, || 7).copied(), Ok(7));
        assert_eq!(
            probe_once(&SLOT, || 8).err(),
            Some(ProbeError::AlreadyProbed)
        );
    }
}

#[cfg(test)]
mod kick_tests {
    use super::*;
    use spin::Mutex;
    use std::vec::Vec;

    /// A CPU interface that hands out `pending` in order and records every EOI.
    struct Fake {
        pending: Mutex<Vec<u32>>,
        eois: Mutex<Vec<u32>>,
        acks: Mutex<usize>,
        sent: Mutex<Vec<(u32, u64)>>,
    }

    impl IrqChip for Fake {
        fn version(&self) -> GicVersion {
            GicVersion::V3
        }
        fn init_global(&self) {}
        fn init_cpu(&self, _cpu_index: usize) {}
        fn enable(&self, _intid: u32, _priority: u8, _edge: bool, _target_mpidr: u64) {}
        fn disable(&self, _intid: u32) {}
        fn set_enabled(&self, _intid: u32, _enabled: bool, _target_mpidr: u64) {}
        fn acknowledge(&self) -> Option<u32> {
            *self.acks.lock() += 1;
            let mut p = self.pending.lock();
            (!p.is_empty()).then(|| p.remove(0))
        }
        fn end_of_interrupt(&self, intid: u32) {
            self.eois.lock().push(intid);
        }
        fn deactivate(&self, _intid: u32) {}
        fn send_sgi(&self, sgi: u32, target_mpidr: u64) {
            self.sent.lock().push((sgi, target_mpidr));
        }
    }

    fn fake(pending: &[u32]) -> Fake {
        Fake {
            pending: Mutex::new(pending.to_vec()),
            eois: Mutex::new(Vec::new()),
            acks: Mutex::new(0),
            sent: Mutex::new(Vec::new()),
        }
    }

    /// By default an SGI sent through a CPU's route is `send_sgi` to its MPIDR.
    #[test]
    fn a_routed_sgi_is_send_sgi_by_default() {
        let chip = fake(&[]);
        let dyn_chip: &dyn IrqChip = &chip;
        for (sgi, mpidr) in [(0, 0), (0, 1), (5, 0x1_0002_0301), (15, 0xff_00ff_ffff)] {
            dyn_chip.send_sgi_routed(sgi, dyn_chip.sgi_route(mpidr));
            assert_eq!(chip.sent.lock().pop(), Some((sgi, mpidr)));
        }
    }

    /// `acknowledge_kick` (through the trait object, as the run loop calls it) against the
    /// three calls it replaces: the result, the EOIs and the number of acknowledges.
    #[test]
    fn acknowledge_kick_is_the_acknowledge_eoi_acknowledge_it_replaces() {
        const KICK: u32 = 0;
        for (pending, result, eois, acks) in [
            (&[KICK, 33][..], Ok(Some(33)), &[KICK][..], 2),
            (&[KICK], Ok(None), &[KICK], 2),
            (&[KICK, KICK], Ok(Some(KICK)), &[KICK], 2),
            (&[27, KICK], Err(Some(27)), &[], 1),
            (&[], Err(None), &[], 1),
        ] {
            let chip = fake(pending);
            let dyn_chip: &dyn IrqChip = &chip;
            assert_eq!(dyn_chip.acknowledge_kick(KICK), result, "{pending:?}");
            assert_eq!(*chip.eois.lock(), eois, "{pending:?}");
            assert_eq!(*chip.acks.lock(), acks, "{pending:?}");
        }
    }
}
