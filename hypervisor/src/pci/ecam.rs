//! The VM's PCIe host bridge: a generic ECAM host (`pci-host-ecam-generic`, as QEMU's
//! `virt` and kvmtool give guests) with one bus of [`SLOTS`] single-function devices.
//!
//! Two devices on the VM's MMIO bus share the bridge ([`PciHost`] behind a lock):
//! [`EcamWindow`], the configuration space (`bus << 20 | device << 15 | function << 12 |
//! register`), and [`PciMemWindow`], the memory window in which the guest places BARs: an
//! access there goes to the function whose enabled BAR decodes it.
//!
//! BARs start unassigned: the guest's PCI core sizes and places them (Linux does on a DT
//! host bridge with `ranges` and without `linux,pci-probe-only`, as on QEMU's `virt`), so
//! the hypervisor needs no allocator and a guest can never be handed overlapping BARs it
//! did not choose itself. A function only decodes while the guest has memory space
//! enabled, only DMAs and sends MSIs while bus mastering is on, and its INTA is swizzled
//! onto the four INTx SPIs by slot, as the standard `interrupt-map` says.
//!
//! Locks, always in this order: the VM's device lock (held by every bus access), the
//! bridge, the VM's RAM (a function doing DMA), a shared disk (a block back-end).
//!
//! Anything a guest does here is safe: unimplemented slots, functions and buses read all
//! ones, accesses that straddle a register or a BAR's end read all ones and are dropped,
//! and garbage in BARs only moves where that function decodes.
#![deny(unsafe_code)]

use super::config::{self, Header};
use super::msi::MsiTarget;
use super::{PciError, PciFunction, PciIrq};
use crate::mmio::{AccessSize, MmioDevice, MmioError};
use crate::platform::GicVersion;
use crate::sync::Mutex;
use crate::types::IntId;
use crate::vm::devices::IoCtx;
use crate::vm::layout;
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;

/// Device slots on bus 0.
pub const SLOTS: usize = 32;

/// The INTID that INTA of the device in `slot` raises: the standard swizzle
/// (`(slot + pin - 1) % 4`) over [`layout::PCI_INTX_INTIDS`].
pub const fn intx_intid(slot: u8) -> IntId {
    IntId(layout::PCI_INTX_INTIDS[slot as usize % 4])
}

/// One occupied slot.
struct Slot {
    name: &'static str,
    function: Box<dyn PciFunction>,
    header: Header,
}

/// What a function sees of its header while the bridge calls into it.
struct FunctionIrq<'h> {
    header: &'h mut Header,
    msi: MsiTarget,
}

impl PciIrq for FunctionIrq<'_> {
    fn bus_master(&self) -> bool {
        self.header.command() & config::CMD_BUS_MASTER != 0
    }

    fn set_intx(&mut self, _ctx: &mut IoCtx<'_>, level: bool) {
        // The bridge drives the shared SPI after the call ([`PciHost::update_intx`]).
        self.header.intx_level = level;
    }

    fn msi(&mut self, ctx: &mut IoCtx<'_>, address: u64, data: u32) {
        // A message is a DMA write: no bus mastering, no message.
        if self.bus_master() {
            self.msi.deliver(ctx, address, data);
        }
    }
}

/// The bridge: every function of the VM's bus 0 and the INTx lines they share.
pub struct PciHost {
    slots: Vec<Option<Slot>>,
    msi: MsiTarget,
    /// Level last driven onto each INTx SPI (`None`: drive it on the next update).
    intx_driven: [Option<bool>; 4],
}

/// The bridge as its two bus devices share it.
pub type SharedPciHost = Arc<Mutex<PciHost>>;

/// A config-space access split into its ECAM fields.
struct ConfigAddr {
    slot: usize,
    reg: u16,
}

/// Decodes an ECAM offset; `None` for anything but function 0 of a device on bus 0.
fn decode(offset: u64) -> Option<ConfigAddr> {
    let (bus, device, function) = (offset >> 20, (offset >> 15) & 0x1f, (offset >> 12) & 7);
    (bus == 0 && function == 0).then_some(ConfigAddr {
        slot: device as usize,
        reg: (offset & 0xfff) as u16,
    })
}

/// Byte-enable mask of a `size`-byte access at `reg` inside its dword.
fn byte_mask(reg: u16, size: AccessSize) -> u8 {
    let bytes = (1u16 << size.bytes()) - 1;
    (bytes << (reg & 3)) as u8
}

impl PciHost {
    /// An empty bus whose functions send MSIs to the doorbell of a `gic` VM.
    pub fn new(gic: GicVersion) -> Self {
        Self {
            slots: (0..SLOTS).map(|_| None).collect(),
            msi: MsiTarget::for_gic(gic),
            intx_driven: [None; 4],
        }
    }

    /// Puts `function` in the first free slot and returns the slot.
    pub fn add(
        &mut self,
        name: &'static str,
        function: Box<dyn PciFunction>,
    ) -> Result<u8, PciError> {
        let header = Header::new(
            function.ids(),
            function.bars(),
            function.capabilities_pointer(),
        )?;
        let free = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(PciError::NoFreeSlot(SLOTS))?;
        self.slots[free] = Some(Slot {
            name,
            function,
            header,
        });
        Ok(free as u8)
    }

    /// The occupied slots: slot number, name and IDs.
    pub fn functions(&self) -> impl Iterator<Item = (u8, &'static str, super::PciIds)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i as u8, s.name, s.function.ids())))
    }

    /// Runs `f` on the function in `slot` with an interrupt handle (to complete work that
    /// finished outside a guest access, e.g. a back-end's completion); `None` if the slot
    /// is empty. The INTx lines are updated afterwards.
    pub fn with_function<R>(
        &mut self,
        ctx: &mut IoCtx<'_>,
        slot: u8,
        f: impl FnOnce(&mut dyn PciFunction, &mut IoCtx<'_>, &mut dyn PciIrq) -> R,
    ) -> Option<R> {
        let msi = self.msi;
        let s = self.slots.get_mut(usize::from(slot))?.as_mut()?;
        let mut irq = FunctionIrq {
            header: &mut s.header,
            msi,
        };
        let r = f(&mut *s.function, ctx, &mut irq);
        self.update_intx(ctx);
        Some(r)
    }

    /// Lets every function complete work that arrived outside a guest access
    /// ([`PciFunction::poll`]); the INTx lines are updated afterwards.
    pub fn poll_all(&mut self, ctx: &mut IoCtx<'_>) {
        let msi = self.msi;
        for s in self.slots.iter_mut().flatten() {
            let mut irq = FunctionIrq {
                header: &mut s.header,
                msi,
            };
            s.function.poll(ctx, &mut irq);
        }
        self.update_intx(ctx);
    }

    /// A guest read of `size` bytes at `offset` in the ECAM window.
    pub fn config_read(&mut self, offset: u64, size: AccessSize) -> u64 {
        if size == AccessSize::DoubleWord {
            if !offset.is_multiple_of(8) {
                return u64::MAX;
            }
            let lo = self.config_read(offset, AccessSize::Word);
            let hi = self.config_read(offset + 4, AccessSize::Word);
            return lo | hi << 32;
        }
        let all_ones = size.mask();
        let Some(a) = decode(offset) else {
            return all_ones;
        };
        let Some(Some(s)) = self.slots.get_mut(a.slot) else {
            return all_ones;
        };
        if u64::from(a.reg & 3) + size.bytes() > 4 {
            return all_ones;
        }
        if a.reg >= config::FUNCTION_SPACE {
            return u64::from(s.function.config_read(a.reg, size)) & all_ones;
        }
        let dword = s.header.read(a.reg & !3);
        u64::from(dword >> (8 * (a.reg & 3))) & all_ones
    }

    /// A guest write of the low `size` bytes of `value` at `offset` in the ECAM window.
    pub fn config_write(&mut self, ctx: &mut IoCtx<'_>, offset: u64, size: AccessSize, value: u64) {
        if size == AccessSize::DoubleWord {
            if offset.is_multiple_of(8) {
                self.config_write(ctx, offset, AccessSize::Word, value & 0xffff_ffff);
                self.config_write(ctx, offset + 4, AccessSize::Word, value >> 32);
            }
            return;
        }
        let msi = self.msi;
        let Some(a) = decode(offset) else {
            return;
        };
        let Some(Some(s)) = self.slots.get_mut(a.slot) else {
            return;
        };
        if u64::from(a.reg & 3) + size.bytes() > 4 {
            return;
        }
        if a.reg >= config::FUNCTION_SPACE {
            let mut irq = FunctionIrq {
                header: &mut s.header,
                msi,
            };
            s.function
                .config_write(ctx, &mut irq, a.reg, size, value as u32);
        } else {
            let shifted = (value as u32) << (8 * (a.reg & 3));
            s.header.write(a.reg & !3, shifted, byte_mask(a.reg, size));
        }
        // INTx disable may have changed, or the function's line.
        self.update_intx(ctx);
    }

    /// The slot and BAR decoding `[addr, addr + size)`.
    fn decode_mem(&self, addr: u64, size: AccessSize) -> Option<(usize, u8, u64)> {
        self.slots.iter().enumerate().find_map(|(i, s)| {
            let (bar, off) = s.as_ref()?.header.decode(addr, size.bytes())?;
            Some((i, bar, off))
        })
    }

    /// A guest read at guest-physical `addr` in the memory window: the function whose BAR
    /// decodes it answers; nothing decodes → all ones (a master abort).
    pub fn mem_read(&mut self, ctx: &mut IoCtx<'_>, addr: u64, size: AccessSize) -> u64 {
        let Some((slot, bar, off)) = self.decode_mem(addr, size) else {
            return size.mask();
        };
        let r = self
            .with_function(ctx, slot as u8, |f, ctx, irq| {
                f.bar_read(ctx, irq, bar, off, size)
            })
            .unwrap_or(u64::MAX);
        r & size.mask()
    }

    /// A guest write at guest-physical `addr` in the memory window (dropped if no BAR
    /// decodes it).
    pub fn mem_write(&mut self, ctx: &mut IoCtx<'_>, addr: u64, size: AccessSize, value: u64) {
        if let Some((slot, bar, off)) = self.decode_mem(addr, size) {
            self.with_function(ctx, slot as u8, |f, ctx, irq| {
                f.bar_write(ctx, irq, bar, off, size, value & size.mask())
            });
        }
    }

    /// Drives each INTx SPI to the OR of the INTA lines swizzled onto it (functions with
    /// INTx disabled do not count); the vGIC only hears of changes.
    pub fn update_intx(&mut self, ctx: &mut IoCtx<'_>) {
        let mut levels = [false; 4];
        for (slot, s) in self.slots.iter().enumerate() {
            if let Some(s) = s {
                levels[slot % 4] |= s.header.intx_asserted();
            }
        }
        for (i, level) in levels.into_iter().enumerate() {
            if self.intx_driven[i] != Some(level) {
                self.intx_driven[i] = Some(level);
                ctx.set_irq_level(IntId(layout::PCI_INTX_INTIDS[i]), level);
            }
        }
    }

    /// Every function back to its reset state (the VM was reset: its vGIC is new, so
    /// every INTx line is driven again on the next access).
    pub fn reset(&mut self) {
        for s in self.slots.iter_mut().flatten() {
            s.header.reset();
            s.function.reset();
        }
        self.intx_driven = [None; 4];
    }

    /// The header the bridge keeps for `slot` (for tests and state dumps).
    pub fn header(&self, slot: u8) -> Option<&Header> {
        Some(&self.slots.get(usize::from(slot))?.as_ref()?.header)
    }
}

/// The ECAM window of the bridge on the VM's bus ([`layout::PCI_ECAM_BASE`]).
pub struct EcamWindow(pub SharedPciHost);

impl<'a> MmioDevice<IoCtx<'a>> for EcamWindow {
    fn read(
        &mut self,
        _ctx: &mut IoCtx<'a>,
        offset: u64,
        size: AccessSize,
    ) -> Result<u64, MmioError> {
        Ok(self.0.lock().config_read(offset, size))
    }

    fn write(
        &mut self,
        ctx: &mut IoCtx<'a>,
        offset: u64,
        size: AccessSize,
        value: u64,
    ) -> Result<(), MmioError> {
        self.0.lock().config_write(ctx, offset, size, value);
        Ok(())
    }

    fn reset(&mut self) {
        // The bridge is reset once, here; the memory window shares it.
        self.0.lock().reset();
    }
}

/// The memory window of the bridge on the VM's bus ([`layout::PCI_MMIO_BASE`]).
pub struct PciMemWindow {
    /// The bridge.
    pub host: SharedPciHost,
    /// Guest-physical base of the window (offsets on the bus are relative to it).
    pub base: u64,
}

impl<'a> MmioDevice<IoCtx<'a>> for PciMemWindow {
    fn read(
        &mut self,
        ctx: &mut IoCtx<'a>,
        offset: u64,
        size: AccessSize,
    ) -> Result<u64, MmioError> {
        Ok(self.host.lock().mem_read(ctx, self.base + offset, size))
    }

    fn write(
        &mut self,
        ctx: &mut IoCtx<'a>,
        offset: u64,
        size: AccessSize,
        value: u64,
    ) -> Result<(), MmioError> {
        self.host
            .lock()
            .mem_write(ctx, self.base + offset, size, value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::config::*;
    use crate::pci::{BarSpec, PciIds};
    use crate::types::{GuestPhysAddr, VcpuId};
    use crate::vgic::dist::{GICD_CTLR, GICD_ISENABLER};
    use crate::vm::devices::{DevicesError, PciSlot, VmDevices};

    /// A function with a 16 KiB 32-bit BAR 0 and a 64-bit BAR 2, one byte-wide capability
    /// at 0x40, and a register file: BAR 0 offset 0 drives INTx (write 1/0), offset 8
    /// sends an MSI to the address written at 0x10 with the data written at 0x18.
    struct Probe {
        bars: [BarSpec; 2],
        regs: [u64; 4],
        accesses: Vec<(u8, u64)>,
        resets: u32,
    }

    impl Probe {
        fn new() -> Self {
            Self {
                bars: [
                    BarSpec {
                        index: 0,
                        size: 0x4000,
                        is_64bit: false,
                        prefetchable: false,
                    },
                    BarSpec {
                        index: 2,
                        size: 0x1000,
                        is_64bit: true,
                        prefetchable: true,
                    },
                ],
                regs: [0; 4],
                accesses: Vec::new(),
                resets: 0,
            }
        }
    }

    impl PciFunction for Probe {
        fn ids(&self) -> PciIds {
            PciIds {
                vendor: 0x1234,
                device: 0x5678,
                class: 0x01_08_02,
                revision: 2,
                subsystem_vendor: 0x1af4,
                subsystem: 0x0001,
            }
        }
        fn bars(&self) -> &[BarSpec] {
            &self.bars
        }
        fn capabilities_pointer(&self) -> u8 {
            0x40
        }
        fn config_read(&mut self, offset: u16, size: AccessSize) -> u32 {
            match (offset, size) {
                (0x40, AccessSize::Word) => 0x0000_0009, // vendor cap, next 0
                (0x44, _) => 0xabcd,
                _ => 0,
            }
        }
        fn config_write(
            &mut self,
            _: &mut IoCtx<'_>,
            _: &mut dyn PciIrq,
            offset: u16,
            _: AccessSize,
            value: u32,
        ) {
            self.accesses
                .push((0xff, u64::from(offset) << 32 | u64::from(value)));
        }
        fn bar_read(
            &mut self,
            _: &mut IoCtx<'_>,
            _: &mut dyn PciIrq,
            bar: u8,
            offset: u64,
            _: AccessSize,
        ) -> u64 {
            self.accesses.push((bar, offset));
            0x1122_3344_5566_7788
        }
        fn bar_write(
            &mut self,
            ctx: &mut IoCtx<'_>,
            irq: &mut dyn PciIrq,
            bar: u8,
            offset: u64,
            _: AccessSize,
            value: u64,
        ) {
            self.accesses.push((bar, offset));
            match offset {
                0 => irq.set_intx(ctx, value != 0),
                8 => irq.msi(ctx, self.regs[2], self.regs[3] as u32),
                0x10 => self.regs[2] = value,
                0x18 => self.regs[3] = value,
                _ => {}
            }
        }
        fn reset(&mut self) {
            self.resets += 1;
        }
    }

    fn discard(_: &str, _: &[u8]) {}

    fn vm(gic: GicVersion) -> VmDevices {
        let mut dev = VmDevices::new(gic, 2, "t", discard).unwrap();
        // The guest enables group 1 (v3) / group 0 (v2) and every SPI.
        let ctlr = if gic == GicVersion::V3 { 2 } else { 1 };
        dev.mmio_write(
            VcpuId(0),
            GuestPhysAddr(layout::GICD_BASE + GICD_CTLR),
            AccessSize::Word,
            ctlr,
        )
        .unwrap();
        for n in 1..5 {
            dev.mmio_write(
                VcpuId(0),
                GuestPhysAddr(layout::GICD_BASE + GICD_ISENABLER + 4 * n),
                AccessSize::Word,
                0xffff_ffff,
            )
            .unwrap();
        }
        dev
    }

    fn cfg_addr(slot: u8, reg: u64) -> GuestPhysAddr {
        GuestPhysAddr(layout::PCI_ECAM_BASE + (u64::from(slot) << 15) + reg)
    }

    fn cfg_read(dev: &mut VmDevices, slot: u8, reg: u64, size: AccessSize) -> u64 {
        dev.mmio_read(VcpuId(0), cfg_addr(slot, reg), size)
            .unwrap()
            .0
    }

    fn cfg_write(dev: &mut VmDevices, slot: u8, reg: u64, size: AccessSize, v: u64) {
        dev.mmio_write(VcpuId(0), cfg_addr(slot, reg), size, v)
            .unwrap();
    }

    fn line(dev: &VmDevices, intid: u32) -> bool {
        dev.vgic.irq(IntId(intid), VcpuId(0)).unwrap().line_level
    }

    fn pending(dev: &VmDevices, intid: u32) -> bool {
        dev.vgic.irq(IntId(intid), VcpuId(0)).unwrap().pending()
    }

    /// Sizes and places BAR 0 at `base` and BAR 2 at `base + 0x10_0000` as Linux does,
    /// and turns on memory space and bus mastering.
    fn assign(dev: &mut VmDevices, slot: u8, base: u64) {
        use AccessSize::Word;
        cfg_write(dev, slot, 0x10, Word, 0xffff_ffff);
        assert_eq!(cfg_read(dev, slot, 0x10, Word), 0xffff_c000);
        cfg_write(dev, slot, 0x10, Word, base);
        cfg_write(dev, slot, 0x18, Word, 0xffff_ffff);
        cfg_write(dev, slot, 0x1c, Word, 0xffff_ffff);
        assert_eq!(cfg_read(dev, slot, 0x18, Word), 0xffff_f00c);
        assert_eq!(cfg_read(dev, slot, 0x1c, Word), 0xffff_ffff);
        cfg_write(dev, slot, 0x18, Word, base + 0x10_0000);
        cfg_write(dev, slot, 0x1c, Word, 0);
        cfg_write(dev, slot, 0x04, AccessSize::HalfWord, 0x6);
    }

    #[test]
    fn enumeration_sees_ids_caps_pin_and_all_ones_elsewhere() {
        use AccessSize::*;
        let mut dev = vm(GicVersion::V3);
        assert!(!dev.has_pci());
        assert_eq!(
            dev.add_pci("probe", Box::new(Probe::new())).unwrap(),
            PciSlot(0)
        );
        assert_eq!(
            dev.add_pci("probe2", Box::new(Probe::new())).unwrap(),
            PciSlot(1)
        );
        assert!(dev.has_pci());
        assert_eq!(cfg_read(&mut dev, 0, 0, Word), 0x5678_1234);
        assert_eq!(cfg_read(&mut dev, 0, 2, HalfWord), 0x5678);
        assert_eq!(cfg_read(&mut dev, 0, 8, Word), 0x0108_0202);
        assert_eq!(
            cfg_read(&mut dev, 0, 0x0e, Byte),
            0,
            "type 0, single function"
        );
        assert_eq!(
            cfg_read(&mut dev, 0, 0x06, HalfWord),
            u64::from(STATUS_CAP_LIST)
        );
        assert_eq!(cfg_read(&mut dev, 0, 0x34, Byte), 0x40);
        assert_eq!(cfg_read(&mut dev, 0, 0x3d, Byte), 1, "INTA");
        assert_eq!(cfg_read(&mut dev, 0, 0x2c, Word), 0x0001_1af4);
        // From 0x40 on the function answers.
        assert_eq!(cfg_read(&mut dev, 0, 0x40, Word), 9);
        assert_eq!(cfg_read(&mut dev, 0, 0x44, HalfWord), 0xabcd);
        // Empty slots, other functions and other buses read all ones.
        assert_eq!(cfg_read(&mut dev, 2, 0, Word), 0xffff_ffff);
        assert_eq!(cfg_read(&mut dev, 31, 0, HalfWord), 0xffff);
        assert_eq!(cfg_read(&mut dev, 0, 1 << 12, Word), 0xffff_ffff);
        assert_eq!(cfg_read(&mut dev, 0, 1 << 20, Word), 0xffff_ffff);
        // A dword access straddling two registers reads all ones.
        assert_eq!(cfg_read(&mut dev, 0, 2, Word), 0xffff_ffff);
        // An 8-byte read is two dwords.
        assert_eq!(cfg_read(&mut dev, 0, 0, DoubleWord), 0x0010_0000_5678_1234);
    }

    #[test]
    fn bars_decode_in_the_memory_window_only_while_memory_space_is_on() {
        use AccessSize::*;
        let mut dev = vm(GicVersion::V3);
        dev.add_pci("a", Box::new(Probe::new())).unwrap();
        dev.add_pci("b", Box::new(Probe::new())).unwrap();
        let base = layout::PCI_MMIO_BASE;
        assign(&mut dev, 0, base);
        assign(&mut dev, 1, base + 0x4000);
        let read = |dev: &mut VmDevices, a: u64, s| {
            dev.mmio_read(VcpuId(0), GuestPhysAddr(a), s).unwrap().0
        };
        assert_eq!(read(&mut dev, base + 0x3ffc, Word), 0x5566_7788);
        assert_eq!(read(&mut dev, base + 0x4008, HalfWord), 0x7788);
        assert_eq!(
            read(&mut dev, base + 0x10_0ff8, DoubleWord),
            0x1122_3344_5566_7788
        );
        // Past every BAR, and straddling the end of one: a master abort.
        assert_eq!(read(&mut dev, base + 0x8000, Word), 0xffff_ffff);
        assert_eq!(read(&mut dev, base + 0x3ffe, Word), 0xffff_ffff);
        // Slot 0 stops decoding when the guest clears memory space.
        cfg_write(&mut dev, 0, 4, HalfWord, 0x4);
        assert_eq!(read(&mut dev, base, Word), 0xffff_ffff);
        let host = dev_host(&mut dev);
        let h = host.lock();
        assert_eq!(h.header(1).unwrap().bar_address(0), base + 0x4000);
    }

    fn dev_host(dev: &mut VmDevices) -> SharedPciHost {
        // The ECAM window is the bus device just after the console and the GIC frames.
        let mut found = None;
        for (_, d) in dev.bus.devices_mut() {
            if let Some(e) = d.as_any_mut().downcast_mut::<EcamWindow>() {
                found = Some(e.0.clone());
            }
        }
        found.unwrap()
    }

    #[test]
    fn intx_is_swizzled_by_slot_shared_and_masked_by_intx_disable() {
        use AccessSize::*;
        let mut dev = vm(GicVersion::V3);
        for _ in 0..5 {
            dev.add_pci("p", Box::new(Probe::new())).unwrap();
        }
        let base = layout::PCI_MMIO_BASE;
        for slot in 0..5u8 {
            assign(&mut dev, slot, base + u64::from(slot) * 0x20_0000);
        }
        let bar0 = |slot: u8| GuestPhysAddr(base + u64::from(slot) * 0x20_0000);
        // Slot 1 raises INTB = SPI 4.
        dev.mmio_write(VcpuId(0), bar0(1), Word, 1).unwrap();
        assert!(line(&dev, 36) && !line(&dev, 35) && !line(&dev, 37));
        assert_eq!(
            cfg_read(&mut dev, 1, 6, HalfWord) & 8,
            8,
            "Status.Interrupt"
        );
        // Slots 0 and 4 share INTA: the line falls only once both let go.
        dev.mmio_write(VcpuId(0), bar0(0), Word, 1).unwrap();
        dev.mmio_write(VcpuId(0), bar0(4), Word, 1).unwrap();
        dev.mmio_write(VcpuId(0), bar0(0), Word, 0).unwrap();
        assert!(line(&dev, 35));
        // INTx disable on slot 4 takes its line off the SPI; enabling it again puts it back.
        cfg_write(&mut dev, 4, 4, HalfWord, 0x406);
        assert!(!line(&dev, 35));
        cfg_write(&mut dev, 4, 4, HalfWord, 0x6);
        assert!(line(&dev, 35));
        // A VM reset resets the functions and their headers.
        dev.reset().unwrap();
        let host = dev_host(&mut dev);
        assert_eq!(host.lock().header(4).unwrap().command(), 0);
        assert!(!line(&dev, 35));
        drop(host);
        assert_eq!(cfg_read(&mut dev, 4, 0x10, Word), 0);
    }

    #[test]
    fn msis_reach_the_mbi_doorbell_only_with_bus_mastering_and_in_range() {
        use AccessSize::*;
        let mut dev = vm(GicVersion::V3);
        dev.add_pci("p", Box::new(Probe::new())).unwrap();
        let base = layout::PCI_MMIO_BASE;
        assign(&mut dev, 0, base);
        let w = |dev: &mut VmDevices, off: u64, v: u64| {
            dev.mmio_write(VcpuId(0), GuestPhysAddr(base + off), DoubleWord, v)
                .unwrap()
        };
        let doorbell = layout::GICD_BASE + 0x40;
        w(&mut dev, 0x10, doorbell);
        w(&mut dev, 0x18, 100);
        let kicks = w(&mut dev, 8, 0);
        assert!(pending(&dev, 100));
        assert!(kicks.contains(VcpuId(0)));
        // Out of the MSI range (the UART's SPI), or another address: dropped.
        w(&mut dev, 0x18, u64::from(layout::UART_INTID));
        w(&mut dev, 8, 0);
        assert!(!pending(&dev, layout::UART_INTID));
        w(&mut dev, 0x10, doorbell + 4);
        w(&mut dev, 0x18, 101);
        w(&mut dev, 8, 0);
        assert!(!pending(&dev, 101));
        // No bus mastering, no message.
        w(&mut dev, 0x10, doorbell);
        cfg_write(&mut dev, 0, 4, HalfWord, 0x2);
        w(&mut dev, 8, 0);
        assert!(!pending(&dev, 101));
        cfg_write(&mut dev, 0, 4, HalfWord, 0x6);
        w(&mut dev, 8, 0);
        assert!(pending(&dev, 101));
    }

    #[test]
    fn gicv2_vms_get_a_v2m_frame_that_reports_and_raises_the_msi_spis() {
        use AccessSize::*;
        let mut dev = vm(GicVersion::V2);
        let frame = layout::GICV2M_BASE;
        assert!(dev
            .mmio_read(VcpuId(0), GuestPhysAddr(frame + 8), Word)
            .is_err());
        dev.add_pci("p", Box::new(Probe::new())).unwrap();
        let typer = dev
            .mmio_read(VcpuId(0), GuestPhysAddr(frame + 8), Word)
            .unwrap()
            .0;
        assert_eq!(
            typer,
            u64::from(layout::MSI_FIRST_INTID << 16 | layout::MSI_SPIS)
        );
        let iidr = dev
            .mmio_read(VcpuId(0), GuestPhysAddr(frame + 0xfcc), Word)
            .unwrap()
            .0;
        assert_eq!(iidr, 0x43b);
        // The device's message, through the frame.
        let base = layout::PCI_MMIO_BASE;
        assign(&mut dev, 0, base);
        let w = |dev: &mut VmDevices, off: u64, v: u64| {
            dev.mmio_write(VcpuId(0), GuestPhysAddr(base + off), DoubleWord, v)
                .unwrap()
        };
        w(&mut dev, 0x10, frame + 0x40);
        w(&mut dev, 0x18, 150);
        w(&mut dev, 8, 0);
        assert!(pending(&dev, 150));
        // A CPU write to the doorbell works too; an INTID outside the range does not.
        dev.mmio_write(VcpuId(0), GuestPhysAddr(frame + 0x40), Word, 120)
            .unwrap();
        assert!(pending(&dev, 120));
        dev.mmio_write(VcpuId(0), GuestPhysAddr(frame + 0x40), Word, 35)
            .unwrap();
        assert!(!pending(&dev, 35));
        // The GICv3 doorbell in the distributor is no doorbell for a GICv2 VM.
        dev.mmio_write(
            VcpuId(0),
            GuestPhysAddr(layout::GICD_BASE + 0x40),
            Word,
            121,
        )
        .unwrap();
        assert!(!pending(&dev, 121));
    }

    #[test]
    fn garbage_in_bars_and_headers_never_decodes_outside_the_function() {
        use AccessSize::*;
        let mut dev = vm(GicVersion::V3);
        dev.add_pci("p", Box::new(Probe::new())).unwrap();
        // Every header byte written with every width, all ones and patterns.
        for reg in 0..0x40u64 {
            for (size, v) in [
                (Byte, 0xff),
                (HalfWord, 0xa5a5),
                (Word, 0xffff_ffff),
                (DoubleWord, u64::MAX),
            ] {
                cfg_write(&mut dev, 0, reg, size, v);
                let _ = cfg_read(&mut dev, 0, reg, size);
            }
        }
        // IDs survived.
        assert_eq!(cfg_read(&mut dev, 0, 0, Word), 0x5678_1234);
        // BAR 0 holds its size mask (outside the window): nothing in the window decodes.
        let got = dev
            .mmio_read(VcpuId(0), GuestPhysAddr(layout::PCI_MMIO_BASE), Word)
            .unwrap()
            .0;
        assert_eq!(got, 0xffff_ffff);
        // Writes to an empty slot change nothing.
        cfg_write(&mut dev, 7, 0x10, Word, layout::PCI_MMIO_BASE);
        assert_eq!(cfg_read(&mut dev, 7, 0x10, Word), 0xffff_ffff);
    }

    #[test]
    fn a_full_bus_and_bad_bars_are_errors() {
        let mut dev = vm(GicVersion::V3);
        for _ in 0..SLOTS {
            dev.add_pci("p", Box::new(Probe::new())).unwrap();
        }
        assert!(matches!(
            dev.add_pci("one-too-many", Box::new(Probe::new())),
            Err(DevicesError::Pci {
                source: PciError::NoFreeSlot(SLOTS),
                ..
            })
        ));
        let mut dev = vm(GicVersion::V3);
        let mut p = Probe::new();
        p.bars[1].index = 5;
        assert!(matches!(
            dev.add_pci("bad", Box::new(p)),
            Err(DevicesError::Pci {
                source: PciError::BadBar { index: 5, .. },
                ..
            })
        ));
    }
}
