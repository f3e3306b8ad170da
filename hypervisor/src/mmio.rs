//! The guest MMIO bus: ranges of guest-physical space routed to emulated devices.
//!
//! A trapped data abort whose syndrome is valid (`ESR_EL2.ISV == 1`) is decoded by
//! [`crate::trap`] into an [`MmioAccess`]; the caller looks the fault address up on the
//! VM's [`MmioBus`], which hands the device only `(offset, data)` (firecracker
//! `vstate/bus.rs`). An address no device claims is [`MmioError::Unmapped`]: the caller
//! injects an abort into the guest, it never panics the hypervisor.
//!
//! ```
//! use hypervisor::mmio::{AccessSize, MmioBus, MmioDevice, MmioError};
//! use hypervisor::types::GuestPhysAddr;
//!
//! struct Scratch(u64);
//! impl MmioDevice for Scratch {
//!     fn read(&mut self, _: &mut (), _: u64, _: AccessSize) -> Result<u64, MmioError> {
//!         Ok(self.0)
//!     }
//!     fn write(&mut self, _: &mut (), _: u64, _: AccessSize, v: u64) -> Result<(), MmioError> {
//!         self.0 = v;
//!         Ok(())
//!     }
//! }
//!
//! let mut bus: MmioBus<Scratch> = MmioBus::new();
//! bus.insert(GuestPhysAddr(0x900_0000), 0x1000, Scratch(0)).unwrap();
//! bus.dispatch_write(&mut (), GuestPhysAddr(0x900_0008), AccessSize::Word, 7).unwrap();
//! assert_eq!(bus.dispatch_read(&mut (), GuestPhysAddr(0x900_0000), AccessSize::Word), Ok(7));
//! ```
#![deny(unsafe_code)]

use crate::types::GuestPhysAddr;
use alloc::boxed::Box;
use alloc::vec::Vec;

/// Width of one MMIO access, as encoded by `ESR_EL2.ISS.SAS` for data aborts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccessSize {
    /// 8 bits (`SAS == 0b00`).
    Byte = 1,
    /// 16 bits (`SAS == 0b01`).
    HalfWord = 2,
    /// 32 bits (`SAS == 0b10`).
    Word = 4,
    /// 64 bits (`SAS == 0b11`).
    DoubleWord = 8,
}

impl AccessSize {
    /// Decodes the two-bit `SAS` field (only bits 1:0 are looked at).
    pub const fn from_sas(sas: u8) -> Self {
        match sas & 0b11 {
            0 => Self::Byte,
            1 => Self::HalfWord,
            2 => Self::Word,
            _ => Self::DoubleWord,
        }
    }

    /// The access width in bytes (1, 2, 4 or 8).
    pub const fn bytes(self) -> u64 {
        self as u64
    }

    /// The access width in bits (8, 16, 32 or 64).
    pub const fn bits(self) -> u32 {
        (self as u32) * 8
    }

    /// A mask of the low `bits()` bits.
    pub const fn mask(self) -> u64 {
        match self {
            Self::DoubleWord => u64::MAX,
            _ => (1u64 << self.bits()) - 1,
        }
    }
}

/// A decoded load or store that trapped on a data abort with a valid syndrome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// Access width (`ISS.SAS`).
    pub size: AccessSize,
    /// The load sign-extends the loaded value (`ISS.SSE`).
    pub sign_extend: bool,
    /// The general-purpose register transferred (`ISS.SRT`): 0..=30, or 31 for XZR/WZR.
    pub srt: u8,
    /// The register is 64 bits wide (`ISS.SF`): `Xt` rather than `Wt`.
    pub sf: bool,
    /// The instruction has acquire/release semantics (`ISS.AR`).
    pub acquire_release: bool,
    /// The access is a store (`ISS.WnR`).
    pub is_write: bool,
}

impl MmioAccess {
    /// The register to read or write, `None` for the zero register (SRT == 31): a load
    /// into XZR is discarded and a store from XZR writes zero.
    pub const fn target_register(&self) -> Option<u8> {
        if self.srt < 31 {
            Some(self.srt)
        } else {
            None
        }
    }
}

/// Computes the register value a load leaves in `Xt`/`Wt`, from the device's `raw` data.
///
/// `raw` is truncated to the access width, sign-extended if `ISS.SSE` says so (to 64 bits
/// for an `Xt` target, to 32 bits for a `Wt` target), and the upper half of the register
/// is zeroed for a `Wt` target, as the load instructions do (Arm ARM C6, `LDR (register)`
/// and friends).
pub const fn load_value(access: &MmioAccess, raw: u64) -> u64 {
    let bits = access.size.bits();
    let value = raw & access.size.mask();
    let extended = if access.sign_extend && bits < 64 {
        let shift = 64 - bits;
        (((value << shift) as i64) >> shift) as u64
    } else {
        value
    };
    if access.sf {
        extended
    } else {
        extended & 0xffff_ffff
    }
}

/// Computes the data a store writes, from the value of register `Xt` (`reg`): the low
/// access-width bits of it. Pass 0 for SRT == 31 (the zero register).
pub const fn store_value(access: &MmioAccess, reg: u64) -> u64 {
    reg & access.size.mask()
}

/// Errors from a device or from the bus. The caller answers every one by injecting a
/// synchronous external abort into the guest (the guest did something its platform does
/// not allow); none of them is a hypervisor bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MmioError {
    /// No device claims the address.
    #[error(
        "no emulated device at guest address {addr}: inject an abort, or add a device \
         there to the VM's MMIO bus"
    )]
    Unmapped {
        /// The faulting guest-physical address.
        addr: GuestPhysAddr,
    },
    /// The access starts inside a device's range but runs past its end.
    #[error(
        "{size:?} access at guest address {addr} runs past the end of the device's \
         range: inject an abort (the guest accessed beyond the device)"
    )]
    CrossesRange {
        /// The faulting guest-physical address.
        addr: GuestPhysAddr,
        /// The width of the access.
        size: AccessSize,
    },
    /// The device does not support this width or alignment at this offset.
    #[error(
        "device does not support a {size:?} access at offset {offset:#x}: inject an \
         abort (check the width the guest driver uses against the device's spec)"
    )]
    BadAccess {
        /// Offset of the access within the device's range.
        offset: u64,
        /// The width of the access.
        size: AccessSize,
    },
}

/// An emulated device on the MMIO bus. It sees offsets within its own range, never
/// absolute guest addresses. `C` is what the bus's owner hands every access: for a VM's
/// devices, [`crate::vm::devices::IoCtx`] (the trapping vCPU, the VM's virtual GIC and
/// the vCPUs to kick); `()` for a device that needs nothing.
pub trait MmioDevice<C: ?Sized = ()>: Send {
    /// Reads `size` bytes at `offset`; the result is zero-extended to 64 bits.
    fn read(&mut self, ctx: &mut C, offset: u64, size: AccessSize) -> Result<u64, MmioError>;
    /// Writes the low `size` bytes of `value` at `offset`.
    fn write(
        &mut self,
        ctx: &mut C,
        offset: u64,
        size: AccessSize,
        value: u64,
    ) -> Result<(), MmioError>;
    /// Puts the device in its reset state (the VM was reset). Devices whose state lives
    /// elsewhere (the vGIC frames) keep the default, which does nothing.
    fn reset(&mut self) {}
}

impl<C: ?Sized, T: MmioDevice<C> + ?Sized> MmioDevice<C> for Box<T> {
    fn read(&mut self, ctx: &mut C, offset: u64, size: AccessSize) -> Result<u64, MmioError> {
        (**self).read(ctx, offset, size)
    }

    fn write(
        &mut self,
        ctx: &mut C,
        offset: u64,
        size: AccessSize,
        value: u64,
    ) -> Result<(), MmioError> {
        (**self).write(ctx, offset, size, value)
    }

    fn reset(&mut self) {
        (**self).reset()
    }
}

/// Errors building an [`MmioBus`] (configuration mistakes, found at VM creation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// A range of zero bytes was inserted.
    #[error("MMIO range at {base} has zero length: give the device a non-zero size")]
    ZeroLength {
        /// Base of the rejected range.
        base: GuestPhysAddr,
    },
    /// `base + len` does not fit in 64 bits.
    #[error(
        "MMIO range at {base} of {len:#x} bytes wraps past the top of the address space: \
         lower the base or the size"
    )]
    Overflow {
        /// Base of the rejected range.
        base: GuestPhysAddr,
        /// Length of the rejected range.
        len: u64,
    },
    /// The range overlaps one already on the bus.
    #[error(
        "MMIO range at {base} of {len:#x} bytes overlaps the device at {other_base} of \
         {other_len:#x} bytes: move one of them in the VM's guest-physical layout"
    )]
    Overlap {
        /// Base of the rejected range.
        base: GuestPhysAddr,
        /// Length of the rejected range.
        len: u64,
        /// Base of the range already on the bus.
        other_base: GuestPhysAddr,
        /// Length of the range already on the bus.
        other_len: u64,
    },
}

/// Names a device on an [`MmioBus`], returned by [`MmioBus::insert`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceHandle(usize);

#[derive(Clone, Copy, Debug)]
struct Range {
    base: u64,
    len: u64,
    device: usize,
}

impl Range {
    /// Last address of the range (inclusive); `len > 0` and no overflow are invariants.
    const fn last(&self) -> u64 {
        self.base + (self.len - 1)
    }
}

/// The MMIO bus of one VM. It owns its devices: `D` is a device enum, or
/// `Box<dyn MmioDevice>` when devices come from plugins.
pub struct MmioBus<D> {
    devices: Vec<D>,
    /// Sorted by base, pairwise disjoint.
    ranges: Vec<Range>,
}

impl<D> Default for MmioBus<D> {
    fn default() -> Self {
        Self::new()
    }
}

impl<D> MmioBus<D> {
    /// An empty bus.
    pub const fn new() -> Self {
        Self {
            devices: Vec::new(),
            ranges: Vec::new(),
        }
    }

    /// Adds `device` at `[base, base + len)`. Rejects a zero length, a range that wraps
    /// past 2^64 and a range that overlaps one already on the bus.
    pub fn insert(
        &mut self,
        base: GuestPhysAddr,
        len: u64,
        device: D,
    ) -> Result<DeviceHandle, BusError> {
        let index = self.check_range(base, len)?;
        let handle = self.devices.len();
        self.devices.push(device);
        self.ranges.insert(
            index,
            Range {
                base: base.0,
                len,
                device: handle,
            },
        );
        Ok(DeviceHandle(handle))
    }

    /// Validates a new range and returns where it goes in the sorted list.
    fn check_range(&self, base: GuestPhysAddr, len: u64) -> Result<usize, BusError> {
        if len == 0 {
            return Err(BusError::ZeroLength { base });
        }
        let last = base
            .0
            .checked_add(len - 1)
            .ok_or(BusError::Overflow { base, len })?;
        let index = self.ranges.partition_point(|r| r.base < base.0);
        let neighbours = [index.checked_sub(1), Some(index)];
        for other in neighbours.into_iter().flatten() {
            if let Some(r) = self.ranges.get(other) {
                if r.base <= last && base.0 <= r.last() {
                    return Err(BusError::Overlap {
                        base,
                        len,
                        other_base: GuestPhysAddr(r.base),
                        other_len: r.len,
                    });
                }
            }
        }
        Ok(index)
    }

    /// The device behind `handle`, to feed it input or read its interrupt line.
    pub fn device_mut(&mut self, handle: DeviceHandle) -> Option<&mut D> {
        self.devices.get_mut(handle.0)
    }

    /// The device behind `handle`.
    pub fn device(&self, handle: DeviceHandle) -> Option<&D> {
        self.devices.get(handle.0)
    }

    /// All devices, in insertion order (for saving state or polling interrupt lines).
    pub fn devices_mut(&mut self) -> impl Iterator<Item = (DeviceHandle, &mut D)> {
        self.devices
            .iter_mut()
            .enumerate()
            .map(|(i, d)| (DeviceHandle(i), d))
    }

    /// Finds the device claiming `[addr, addr + size)` and the offset of `addr` in it.
    fn resolve(
        &mut self,
        addr: GuestPhysAddr,
        size: AccessSize,
    ) -> Result<(&mut D, u64), MmioError> {
        let index = self.ranges.partition_point(|r| r.base <= addr.0);
        let range = index
            .checked_sub(1)
            .and_then(|i| self.ranges.get(i))
            .filter(|r| addr.0 <= r.last())
            .copied()
            .ok_or(MmioError::Unmapped { addr })?;
        let offset = addr.0 - range.base;
        if size.bytes() > range.len - offset {
            return Err(MmioError::CrossesRange { addr, size });
        }
        let device = self
            .devices
            .get_mut(range.device)
            .ok_or(MmioError::Unmapped { addr })?;
        Ok((device, offset))
    }
}

impl<D> MmioBus<D> {
    /// Routes a load of `size` bytes at `addr` to its device.
    pub fn dispatch_read<C: ?Sized>(
        &mut self,
        ctx: &mut C,
        addr: GuestPhysAddr,
        size: AccessSize,
    ) -> Result<u64, MmioError>
    where
        D: MmioDevice<C>,
    {
        let (device, offset) = self.resolve(addr, size)?;
        Ok(device.read(ctx, offset, size)? & size.mask())
    }

    /// Routes a store of the low `size` bytes of `value` at `addr` to its device.
    pub fn dispatch_write<C: ?Sized>(
        &mut self,
        ctx: &mut C,
        addr: GuestPhysAddr,
        size: AccessSize,
        value: u64,
    ) -> Result<(), MmioError>
    where
        D: MmioDevice<C>,
    {
        let (device, offset) = self.resolve(addr, size)?;
        device.write(ctx, offset, size, value & size.mask())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// Records every access it sees.
    #[derive(Default)]
    struct Recorder {
        log: Vec<(bool, u64, AccessSize, u64)>,
        read_value: u64,
    }

    impl MmioDevice for Recorder {
        fn read(&mut self, _: &mut (), offset: u64, size: AccessSize) -> Result<u64, MmioError> {
            self.log.push((false, offset, size, 0));
            Ok(self.read_value)
        }
        fn write(
            &mut self,
            _: &mut (),
            offset: u64,
            size: AccessSize,
            value: u64,
        ) -> Result<(), MmioError> {
            self.log.push((true, offset, size, value));
            Ok(())
        }
    }

    fn access(size: AccessSize, sign_extend: bool, sf: bool) -> MmioAccess {
        MmioAccess {
            size,
            sign_extend,
            srt: 0,
            sf,
            acquire_release: false,
            is_write: false,
        }
    }

    #[test]
    fn insert_rejects_zero_length() {
        let mut bus = MmioBus::new();
        assert_eq!(
            bus.insert(GuestPhysAddr(0x1000), 0, Recorder::default()),
            Err(BusError::ZeroLength {
                base: GuestPhysAddr(0x1000)
            })
        );
    }

    #[test]
    fn insert_rejects_wrap_past_top_of_address_space() {
        let mut bus = MmioBus::new();
        assert!(matches!(
            bus.insert(GuestPhysAddr(u64::MAX - 0xfff), 0x1001, Recorder::default()),
            Err(BusError::Overflow { .. })
        ));
    }

    #[test]
    fn insert_accepts_range_ending_at_top_of_address_space() {
        let mut bus = MmioBus::new();
        assert!(bus
            .insert(GuestPhysAddr(u64::MAX - 0xfff), 0x1000, Recorder::default())
            .is_ok());
    }

    #[test]
    fn insert_rejects_overlap_on_either_side() {
        let mut bus = MmioBus::new();
        bus.insert(GuestPhysAddr(0x2000), 0x1000, Recorder::default())
            .unwrap();
        // Ends inside the existing range.
        assert!(matches!(
            bus.insert(GuestPhysAddr(0x1800), 0x1000, Recorder::default()),
            Err(BusError::Overlap {
                other_base: GuestPhysAddr(0x2000),
                ..
            })
        ));
        // Starts inside the existing range.
        assert!(matches!(
            bus.insert(GuestPhysAddr(0x2fff), 0x10, Recorder::default()),
            Err(BusError::Overlap { .. })
        ));
        // Covers the existing range.
        assert!(matches!(
            bus.insert(GuestPhysAddr(0x1000), 0x4000, Recorder::default()),
            Err(BusError::Overlap { .. })
        ));
    }

    #[test]
    fn insert_accepts_adjacent_ranges() {
        let mut bus = MmioBus::new();
        bus.insert(GuestPhysAddr(0x2000), 0x1000, Recorder::default())
            .unwrap();
        assert!(bus
            .insert(GuestPhysAddr(0x1000), 0x1000, Recorder::default())
            .is_ok());
        assert!(bus
            .insert(GuestPhysAddr(0x3000), 0x1000, Recorder::default())
            .is_ok());
    }

    #[test]
    fn dispatch_gives_device_offset_not_address() {
        let mut bus = MmioBus::new();
        let h = bus
            .insert(GuestPhysAddr(0x900_0000), 0x1000, Recorder::default())
            .unwrap();
        bus.dispatch_write(&mut (), GuestPhysAddr(0x900_0018), AccessSize::Word, 0x55)
            .unwrap();
        bus.dispatch_read(&mut (), GuestPhysAddr(0x900_0ffc), AccessSize::Word)
            .unwrap();
        assert_eq!(
            bus.device(h).unwrap().log,
            vec![
                (true, 0x18, AccessSize::Word, 0x55),
                (false, 0xffc, AccessSize::Word, 0)
            ]
        );
    }

    #[test]
    fn dispatch_routes_to_the_device_that_claims_the_address() {
        let mut bus = MmioBus::new();
        let a = bus
            .insert(GuestPhysAddr(0x1000), 0x1000, Recorder::default())
            .unwrap();
        let b = bus
            .insert(GuestPhysAddr(0x3000), 0x1000, Recorder::default())
            .unwrap();
        bus.dispatch_write(&mut (), GuestPhysAddr(0x3004), AccessSize::Byte, 1)
            .unwrap();
        assert!(bus.device(a).unwrap().log.is_empty());
        assert_eq!(bus.device(b).unwrap().log.len(), 1);
    }

    #[test]
    fn dispatch_to_gap_is_unmapped() {
        let mut bus = MmioBus::new();
        bus.insert(GuestPhysAddr(0x1000), 0x1000, Recorder::default())
            .unwrap();
        for addr in [0x0, 0xfff, 0x2000, u64::MAX] {
            assert_eq!(
                bus.dispatch_read(&mut (), GuestPhysAddr(addr), AccessSize::Byte),
                Err(MmioError::Unmapped {
                    addr: GuestPhysAddr(addr)
                })
            );
        }
    }

    #[test]
    fn dispatch_on_empty_bus_is_unmapped() {
        let mut bus: MmioBus<Recorder> = MmioBus::new();
        assert!(matches!(
            bus.dispatch_write(&mut (), GuestPhysAddr(0), AccessSize::Word, 0),
            Err(MmioError::Unmapped { .. })
        ));
    }

    #[test]
    fn dispatch_rejects_access_running_past_range_end() {
        let mut bus = MmioBus::new();
        bus.insert(GuestPhysAddr(0x1000), 0x1000, Recorder::default())
            .unwrap();
        assert_eq!(
            bus.dispatch_read(&mut (), GuestPhysAddr(0x1ffc), AccessSize::DoubleWord),
            Err(MmioError::CrossesRange {
                addr: GuestPhysAddr(0x1ffc),
                size: AccessSize::DoubleWord
            })
        );
    }

    #[test]
    fn dispatch_truncates_values_to_access_width() {
        let mut bus = MmioBus::new();
        let h = bus
            .insert(
                GuestPhysAddr(0x1000),
                0x1000,
                Recorder {
                    read_value: 0x1234_5678_9abc_def0,
                    ..Recorder::default()
                },
            )
            .unwrap();
        assert_eq!(
            bus.dispatch_read(&mut (), GuestPhysAddr(0x1000), AccessSize::HalfWord),
            Ok(0xdef0)
        );
        bus.dispatch_write(&mut (), GuestPhysAddr(0x1000), AccessSize::Byte, 0x1ff)
            .unwrap();
        assert_eq!(bus.device(h).unwrap().log[1].3, 0xff);
    }

    #[test]
    fn bus_of_boxed_trait_objects_dispatches() {
        let mut bus: MmioBus<Box<dyn MmioDevice>> = MmioBus::new();
        bus.insert(
            GuestPhysAddr(0x1000),
            0x100,
            Box::new(Recorder {
                read_value: 9,
                ..Recorder::default()
            }),
        )
        .unwrap();
        assert_eq!(
            bus.dispatch_read(&mut (), GuestPhysAddr(0x1010), AccessSize::Word),
            Ok(9)
        );
    }

    #[test]
    fn load_zero_extends_unsigned_byte_into_w_register() {
        assert_eq!(
            load_value(&access(AccessSize::Byte, false, false), 0x1ff),
            0xff
        );
    }

    #[test]
    fn load_sign_extends_byte_to_64_bits_for_x_register() {
        assert_eq!(
            load_value(&access(AccessSize::Byte, true, true), 0x80),
            0xffff_ffff_ffff_ff80
        );
    }

    #[test]
    fn load_sign_extends_halfword_to_32_bits_and_zeroes_top_for_w_register() {
        assert_eq!(
            load_value(&access(AccessSize::HalfWord, true, false), 0x8001),
            0x0000_0000_ffff_8001
        );
    }

    #[test]
    fn load_sign_extend_of_positive_value_is_unchanged() {
        assert_eq!(
            load_value(&access(AccessSize::Word, true, true), 0x7fff_ffff),
            0x7fff_ffff
        );
    }

    #[test]
    fn load_word_into_w_register_zeroes_upper_half() {
        assert_eq!(
            load_value(
                &access(AccessSize::Word, false, false),
                0xdead_beef_cafe_f00d
            ),
            0xcafe_f00d
        );
    }

    #[test]
    fn load_doubleword_keeps_all_bits() {
        assert_eq!(
            load_value(&access(AccessSize::DoubleWord, true, true), u64::MAX - 1),
            u64::MAX - 1
        );
    }

    #[test]
    fn store_takes_low_bytes_of_register() {
        let a = access(AccessSize::HalfWord, false, true);
        assert_eq!(store_value(&a, 0x1122_3344_5566_7788), 0x7788);
        let a = access(AccessSize::DoubleWord, false, true);
        assert_eq!(
            store_value(&a, 0x1122_3344_5566_7788),
            0x1122_3344_5566_7788
        );
    }

    #[test]
    fn srt_31_is_the_zero_register() {
        let mut a = access(AccessSize::Word, false, false);
        a.srt = 31;
        assert_eq!(a.target_register(), None);
        a.srt = 30;
        assert_eq!(a.target_register(), Some(30));
    }

    #[test]
    fn access_size_decodes_sas() {
        assert_eq!(AccessSize::from_sas(0), AccessSize::Byte);
        assert_eq!(AccessSize::from_sas(1), AccessSize::HalfWord);
        assert_eq!(AccessSize::from_sas(2), AccessSize::Word);
        assert_eq!(AccessSize::from_sas(3), AccessSize::DoubleWord);
        assert_eq!(AccessSize::Word.mask(), 0xffff_ffff);
    }
}
