//! MSI-X for guest-facing PCI functions: the capability, the vector table and the pending
//! bit array (PCI Local Bus 3.0 / PCIe Base 4.0 section 7.7.2), ready to embed in a
//! [`PciFunction`](super::PciFunction).
//!
//! The function places the 12-byte capability in its config space and the table and PBA in
//! one of its BARs, forwards the accesses that fall there ([`Msix::config_read`],
//! [`Msix::config_write`], [`Msix::bar_read`], [`Msix::bar_write`]; each says whether it
//! claimed the access), and raises vector `n` with [`Msix::signal`]. A message goes out
//! through [`PciIrq::msi`] when MSI-X is enabled and neither the function nor the vector is
//! masked; otherwise the vector's pending bit is set, and the message goes out when the
//! guest unmasks it.
//!
//! ```
//! use hypervisor::mmio::AccessSize;
//! use hypervisor::pci::msix::{Msix, MsixLayout};
//!
//! // 4 vectors: capability at 0x40 (last in the list), table at BAR 0 + 0x2000, PBA at
//! // BAR 0 + 0x3000.
//! let msix = Msix::new(MsixLayout {
//!     cap_offset: 0x40,
//!     next: 0,
//!     vectors: 4,
//!     table_bar: 0,
//!     table_offset: 0x2000,
//!     pba_bar: 0,
//!     pba_offset: 0x3000,
//! })
//! .unwrap();
//! // Capability ID 0x11, next 0, Message Control: table size 4 - 1.
//! assert_eq!(msix.config_read(0x40, AccessSize::Word), Some(0x0003_0011));
//! assert_eq!(msix.config_read(0x44, AccessSize::Word), Some(0x2000));
//! // Every vector starts masked.
//! assert_eq!(msix.bar_read(0, 0x2000 + 12, AccessSize::Word), Some(1));
//! ```
#![deny(unsafe_code)]

use super::PciIrq;
use crate::mmio::AccessSize;
use crate::vm::devices::IoCtx;
use alloc::vec;
use alloc::vec::Vec;

/// The MSI-X capability ID.
pub const CAP_ID: u8 = 0x11;
/// Bytes of the capability in config space.
pub const CAP_LEN: u16 = 12;
/// Bytes of one table entry.
pub const ENTRY_LEN: u64 = 16;
/// Most vectors an MSI-X capability can describe (Table Size is 11 bits, N - 1).
pub const MAX_VECTORS: u16 = 2048;

/// Message Control: MSI-X Enable.
const MC_ENABLE: u16 = 1 << 15;
/// Message Control: Function Mask.
const MC_FUNCTION_MASK: u16 = 1 << 14;
/// Vector Control: Mask Bit.
const VC_MASK: u32 = 1;

/// Where a function puts its MSI-X structures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixLayout {
    /// Config-space offset of the capability (dword aligned, >= 0x40).
    pub cap_offset: u16,
    /// The next capability's offset (0 for the last one).
    pub next: u8,
    /// Number of vectors (1..=2048).
    pub vectors: u16,
    /// BAR holding the table (BIR, 0..=5).
    pub table_bar: u8,
    /// Offset of the table in that BAR (8-byte aligned).
    pub table_offset: u32,
    /// BAR holding the pending bit array.
    pub pba_bar: u8,
    /// Offset of the PBA in that BAR (8-byte aligned).
    pub pba_offset: u32,
}

impl MsixLayout {
    /// Bytes of the table.
    pub fn table_len(&self) -> u64 {
        u64::from(self.vectors) * ENTRY_LEN
    }

    /// Bytes of the PBA (whole qwords).
    pub fn pba_len(&self) -> u64 {
        u64::from(self.vectors).div_ceil(64) * 8
    }
}

/// Why an [`MsixLayout`] is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MsixLayoutError {
    /// Vectors outside 1..=2048.
    #[error("{0} MSI-X vectors (1..=2048 allowed)")]
    Vectors(u16),
    /// The capability is not dword aligned inside 0x40..0x1000.
    #[error("MSI-X capability at {0:#x}")]
    CapOffset(u16),
    /// A BIR above 5, or a table/PBA offset that is not 8-byte aligned.
    #[error("MSI-X table or PBA placement")]
    Placement,
    /// The table and the PBA overlap.
    #[error("MSI-X table and PBA overlap")]
    Overlap,
}

/// One table entry, as the guest wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixEntry {
    /// Message Address (bits 1:0 read as zero).
    pub address: u64,
    /// Message Data.
    pub data: u32,
    /// Vector Control (bit 0: masked).
    pub control: u32,
}

impl MsixEntry {
    const RESET: Self = Self {
        address: 0,
        data: 0,
        control: VC_MASK,
    };

    fn dword(&self, i: u64) -> u32 {
        match i {
            0 => self.address as u32,
            1 => (self.address >> 32) as u32,
            2 => self.data,
            _ => self.control,
        }
    }

    fn set_dword(&mut self, i: u64, v: u32) {
        match i {
            0 => self.address = (self.address & !0xffff_ffff) | u64::from(v & !3),
            1 => self.address = (self.address & 0xffff_ffff) | (u64::from(v) << 32),
            2 => self.data = v,
            // Only the mask bit is writable; the rest is reserved.
            _ => self.control = v & VC_MASK,
        }
    }
}

/// What [`Msix::signal`] did with a vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The message was sent.
    Sent,
    /// The function or the vector is masked: the pending bit is set.
    Pending,
    /// MSI-X is disabled (the function uses INTx), or no such vector: nothing happened.
    Disabled,
}

/// The MSI-X state of one function: plain data, serializable in principle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msix {
    layout: MsixLayout,
    control: u16,
    table: Vec<MsixEntry>,
    pending: Vec<u64>,
}

/// Reads `size` bytes at byte `offset` of a little-endian dword array given by `dword`.
fn read_bytes(offset: u64, size: AccessSize, dword: impl Fn(u64) -> u32) -> u64 {
    let mut v = 0u64;
    for i in 0..size.bytes() {
        let Some(b) = offset.checked_add(i) else {
            break;
        };
        let byte = (dword(b / 4) >> ((b % 4) * 8)) & 0xff;
        v |= u64::from(byte) << (i * 8);
    }
    v
}

/// Writes the low `size` bytes of `value` at byte `offset` of a dword array: each dword
/// touched gets `set(index, merged)`, merged from `get(index)` and the written bytes.
fn write_bytes(
    offset: u64,
    size: AccessSize,
    value: u64,
    get: impl Fn(u64) -> u32,
    mut set: impl FnMut(u64, u32),
) {
    let Some(last) = offset.checked_add(size.bytes() - 1) else {
        return;
    };
    for dw in offset / 4..=last / 4 {
        let mut cur = get(dw);
        for byte in 0..4u64 {
            let b = dw * 4 + byte;
            if b >= offset && b <= last {
                let shift = byte * 8;
                let new = (value >> ((b - offset) * 8)) & 0xff;
                cur = (cur & !(0xff << shift)) | ((new as u32) << shift);
            }
        }
        set(dw, cur);
    }
}

impl Msix {
    /// MSI-X with `layout`, disabled, every vector masked and nothing pending.
    pub fn new(layout: MsixLayout) -> Result<Self, MsixLayoutError> {
        if layout.vectors == 0 || layout.vectors > MAX_VECTORS {
            return Err(MsixLayoutError::Vectors(layout.vectors));
        }
        if layout.cap_offset < 0x40
            || !layout.cap_offset.is_multiple_of(4)
            || layout.cap_offset + CAP_LEN > 0x1000
        {
            return Err(MsixLayoutError::CapOffset(layout.cap_offset));
        }
        if layout.table_bar > 5
            || layout.pba_bar > 5
            || !layout.table_offset.is_multiple_of(8)
            || !layout.pba_offset.is_multiple_of(8)
        {
            return Err(MsixLayoutError::Placement);
        }
        if layout.table_bar == layout.pba_bar {
            let (t, p) = (u64::from(layout.table_offset), u64::from(layout.pba_offset));
            if t < p + layout.pba_len() && p < t + layout.table_len() {
                return Err(MsixLayoutError::Overlap);
            }
        }
        Ok(Self {
            layout,
            control: 0,
            table: vec![MsixEntry::RESET; usize::from(layout.vectors)],
            pending: vec![0; usize::from(layout.vectors).div_ceil(64)],
        })
    }

    /// Its layout.
    pub fn layout(&self) -> &MsixLayout {
        &self.layout
    }

    /// MSI-X Enable is set: the function must not use INTx.
    pub fn enabled(&self) -> bool {
        self.control & MC_ENABLE != 0
    }

    /// Function Mask is set.
    pub fn function_masked(&self) -> bool {
        self.control & MC_FUNCTION_MASK != 0
    }

    /// Vector `vector`'s table entry.
    pub fn entry(&self, vector: u16) -> Option<&MsixEntry> {
        self.table.get(usize::from(vector))
    }

    /// Vector `vector`'s pending bit.
    pub fn is_pending(&self, vector: u16) -> bool {
        let v = usize::from(vector);
        self.pending
            .get(v / 64)
            .is_some_and(|w| w & (1 << (v % 64)) != 0)
    }

    fn set_pending(&mut self, vector: usize, on: bool) {
        if let Some(w) = self.pending.get_mut(vector / 64) {
            if on {
                *w |= 1 << (vector % 64);
            } else {
                *w &= !(1 << (vector % 64));
            }
        }
    }

    /// Back to power-on state: disabled, unmasked function, every vector masked, nothing
    /// pending.
    pub fn reset(&mut self) {
        self.control = 0;
        self.table.fill(MsixEntry::RESET);
        self.pending.fill(0);
    }

    fn cap_dword(&self, i: u64) -> u32 {
        let l = &self.layout;
        match i {
            0 => {
                let mc = self.control | (l.vectors - 1);
                u32::from(CAP_ID) | (u32::from(l.next) << 8) | (u32::from(mc) << 16)
            }
            1 => l.table_offset | u32::from(l.table_bar),
            2 => l.pba_offset | u32::from(l.pba_bar),
            _ => 0,
        }
    }

    /// The capability's offset relative to its start, if `[offset, offset + size)` lies in it.
    fn in_cap(&self, offset: u16, size: AccessSize) -> Option<u64> {
        let rel = offset.checked_sub(self.layout.cap_offset)?;
        (u64::from(rel) + size.bytes() <= u64::from(CAP_LEN)).then_some(u64::from(rel))
    }

    /// A config read: `Some(value)` if it falls in the capability.
    pub fn config_read(&self, offset: u16, size: AccessSize) -> Option<u32> {
        let rel = self.in_cap(offset, size)?;
        Some(read_bytes(rel, size, |i| self.cap_dword(i)) as u32)
    }

    /// A config write; returns false if it is not in the capability. Only Enable and
    /// Function Mask are writable. Unmasking (or enabling) sends the messages of pending
    /// vectors that are not masked.
    pub fn config_write(
        &mut self,
        ctx: &mut IoCtx<'_>,
        irq: &mut dyn PciIrq,
        offset: u16,
        size: AccessSize,
        value: u32,
    ) -> bool {
        let Some(rel) = self.in_cap(offset, size) else {
            return false;
        };
        let mut new_dword0 = None;
        write_bytes(
            rel,
            size,
            u64::from(value),
            |i| self.cap_dword(i),
            |i, v| {
                if i == 0 {
                    new_dword0 = Some(v);
                }
            },
        );
        if let Some(v) = new_dword0 {
            self.control = (v >> 16) as u16 & (MC_ENABLE | MC_FUNCTION_MASK);
            self.deliver_pending(ctx, irq);
        }
        true
    }

    /// A read in `bar` at `offset`: `Some(value)` if it falls in the table or the PBA.
    pub fn bar_read(&self, bar: u8, offset: u64, size: AccessSize) -> Option<u64> {
        let l = &self.layout;
        if let Some(rel) = Self::inside(
            bar,
            offset,
            size,
            l.table_bar,
            l.table_offset,
            l.table_len(),
        ) {
            return Some(read_bytes(rel, size, |dw| {
                let e = (dw * 4 / ENTRY_LEN) as usize;
                self.table[e].dword(dw % 4)
            }));
        }
        let rel = Self::inside(bar, offset, size, l.pba_bar, l.pba_offset, l.pba_len())?;
        Some(read_bytes(rel, size, |dw| {
            let w = self.pending[(dw / 2) as usize];
            (w >> ((dw % 2) * 32)) as u32
        }))
    }

    /// A write in `bar` at `offset`; returns false if it is not in the table or the PBA
    /// (the PBA is read-only: writes there are claimed and dropped). Unmasking a vector
    /// whose pending bit is set sends its message.
    pub fn bar_write(
        &mut self,
        ctx: &mut IoCtx<'_>,
        irq: &mut dyn PciIrq,
        bar: u8,
        offset: u64,
        size: AccessSize,
        value: u64,
    ) -> bool {
        let l = self.layout;
        if let Some(rel) = Self::inside(
            bar,
            offset,
            size,
            l.table_bar,
            l.table_offset,
            l.table_len(),
        ) {
            let table = &mut self.table;
            let snapshot: Vec<(u64, u32)> = {
                let mut v = Vec::new();
                write_bytes(
                    rel,
                    size,
                    value,
                    |dw| table[(dw * 4 / ENTRY_LEN) as usize].dword(dw % 4),
                    |dw, val| v.push((dw, val)),
                );
                v
            };
            for (dw, val) in snapshot {
                table[(dw * 4 / ENTRY_LEN) as usize].set_dword(dw % 4, val);
            }
            self.deliver_pending(ctx, irq);
            return true;
        }
        Self::inside(bar, offset, size, l.pba_bar, l.pba_offset, l.pba_len()).is_some()
    }

    /// `[offset, offset + size)` relative to a structure at `start` of `len` bytes in
    /// `its_bar`, if entirely inside it.
    fn inside(
        bar: u8,
        offset: u64,
        size: AccessSize,
        its_bar: u8,
        start: u32,
        len: u64,
    ) -> Option<u64> {
        if bar != its_bar {
            return None;
        }
        let rel = offset.checked_sub(u64::from(start))?;
        (rel.checked_add(size.bytes())? <= len).then_some(rel)
    }

    fn deliverable(&self, vector: usize) -> bool {
        self.enabled()
            && !self.function_masked()
            && self
                .table
                .get(vector)
                .is_some_and(|e| e.control & VC_MASK == 0)
    }

    fn deliver_pending(&mut self, ctx: &mut IoCtx<'_>, irq: &mut dyn PciIrq) {
        if !self.enabled() || self.function_masked() {
            return;
        }
        for v in 0..self.table.len() {
            if self.is_pending(v as u16) && self.deliverable(v) {
                self.set_pending(v, false);
                let e = self.table[v];
                irq.msi(ctx, e.address, e.data);
            }
        }
    }

    /// Raises `vector`: sends its message, or sets its pending bit if the function or the
    /// vector is masked. Nothing happens while MSI-X is disabled or for a vector the table
    /// does not have.
    pub fn signal(&mut self, vector: u16, ctx: &mut IoCtx<'_>, irq: &mut dyn PciIrq) -> Delivery {
        let v = usize::from(vector);
        if !self.enabled() || v >= self.table.len() {
            return Delivery::Disabled;
        }
        if self.deliverable(v) {
            let e = self.table[v];
            irq.msi(ctx, e.address, e.data);
            Delivery::Sent
        } else {
            self.set_pending(v, true);
            Delivery::Pending
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sync::Mutex;
    use crate::types::GuestPhysAddr;
    use crate::types::VcpuId;
    use crate::vgic::VGic;
    use crate::vgic::VcpuSet;
    use crate::vm::mem::{FakeGuestMemory, GuestMemory};
    use std::vec::Vec;

    /// A [`PciIrq`] that records what the function did.
    #[derive(Default)]
    pub(crate) struct RecIrq {
        pub(crate) bus_master: bool,
        pub(crate) intx: bool,
        pub(crate) intx_changes: usize,
        pub(crate) msis: Vec<(u64, u32)>,
    }

    impl PciIrq for RecIrq {
        fn bus_master(&self) -> bool {
            self.bus_master
        }
        fn set_intx(&mut self, _ctx: &mut IoCtx<'_>, level: bool) {
            self.intx = level;
            self.intx_changes += 1;
        }
        fn msi(&mut self, _ctx: &mut IoCtx<'_>, address: u64, data: u32) {
            self.msis.push((address, data));
        }
    }

    /// Runs `f` with an access context over a small fake RAM.
    pub(crate) fn with_ctx<R>(
        mem: &Mutex<dyn GuestMemory>,
        f: impl FnOnce(&mut IoCtx<'_>) -> R,
    ) -> R {
        let mut vgic = VGic::new(1, 64).unwrap();
        let mut ctx = IoCtx {
            vcpu: VcpuId(0),
            vgic: &mut vgic,
            kicks: VcpuSet::EMPTY,
            mem,
        };
        f(&mut ctx)
    }

    fn layout() -> MsixLayout {
        MsixLayout {
            cap_offset: 0x40,
            next: 0x50,
            vectors: 70,
            table_bar: 0,
            table_offset: 0x2000,
            pba_bar: 4,
            pba_offset: 0x100,
        }
    }

    fn mem() -> Mutex<FakeGuestMemory> {
        Mutex::new(FakeGuestMemory::new(GuestPhysAddr(0x4000_0000), 0x1000))
    }

    const W: AccessSize = AccessSize::Word;

    #[test]
    fn capability_reads_back_its_layout() {
        let m = Msix::new(layout()).unwrap();
        assert_eq!(m.config_read(0x40, W), Some(0x0045_5011));
        assert_eq!(m.config_read(0x42, AccessSize::HalfWord), Some(69));
        assert_eq!(m.config_read(0x44, W), Some(0x2000));
        assert_eq!(m.config_read(0x48, W), Some(0x104));
        assert_eq!(m.config_read(0x4c, W), None);
        assert_eq!(m.config_read(0x3c, W), None);
        assert_eq!(m.config_read(0x4a, W), None, "straddles the end");
    }

    #[test]
    fn bad_layouts_are_refused() {
        let l = layout();
        assert!(Msix::new(MsixLayout { vectors: 0, ..l }).is_err());
        assert!(Msix::new(MsixLayout { vectors: 2049, ..l }).is_err());
        assert!(Msix::new(MsixLayout {
            cap_offset: 0x42,
            ..l
        })
        .is_err());
        assert!(Msix::new(MsixLayout { table_bar: 6, ..l }).is_err());
        assert_eq!(
            Msix::new(MsixLayout {
                pba_bar: 0,
                pba_offset: 0x2000 + 69 * 16,
                ..l
            }),
            Err(MsixLayoutError::Overlap)
        );
        assert!(Msix::new(MsixLayout {
            pba_bar: 0,
            pba_offset: 0x2000 + 70 * 16,
            ..l
        })
        .is_ok());
    }

    #[test]
    fn only_enable_and_function_mask_are_writable() {
        let mem = mem();
        let mut irq = RecIrq::default();
        let mut m = Msix::new(layout()).unwrap();
        with_ctx(&mem, |ctx| {
            assert!(m.config_write(ctx, &mut irq, 0x40, W, 0xffff_ffff));
            assert!(m.config_write(ctx, &mut irq, 0x44, W, 0xffff_ffff));
        });
        assert_eq!(m.config_read(0x40, W), Some(0xc045_5011));
        assert_eq!(m.config_read(0x44, W), Some(0x2000));
        assert!(m.enabled() && m.function_masked());
        // A byte write to the upper byte of Message Control (as Linux's pci_msix_clear_and_set_ctrl does with a word).
        with_ctx(&mem, |ctx| {
            m.config_write(ctx, &mut irq, 0x43, AccessSize::Byte, 0x80)
        });
        assert!(m.enabled() && !m.function_masked());
    }

    #[test]
    fn table_entries_read_back_and_the_pba_is_read_only() {
        let mem = mem();
        let mut irq = RecIrq::default();
        let mut m = Msix::new(layout()).unwrap();
        with_ctx(&mem, |ctx| {
            let base = 0x2000 + 5 * 16;
            assert!(m.bar_write(
                ctx,
                &mut irq,
                0,
                base,
                AccessSize::DoubleWord,
                0x1_0800_0043
            ));
            assert!(m.bar_write(ctx, &mut irq, 0, base + 8, W, 0x77));
            assert!(m.bar_write(ctx, &mut irq, 0, base + 12, W, 0xffff_ffff));
            assert!(m.bar_write(ctx, &mut irq, 4, 0x100, AccessSize::DoubleWord, u64::MAX));
            assert!(!m.bar_write(ctx, &mut irq, 1, base, W, 0));
        });
        let base = 0x2000 + 5 * 16;
        assert_eq!(
            m.bar_read(0, base, AccessSize::DoubleWord),
            Some(0x1_0800_0040)
        );
        assert_eq!(m.bar_read(0, base + 8, W), Some(0x77));
        assert_eq!(m.bar_read(0, base + 12, W), Some(1));
        assert_eq!(m.bar_read(4, 0x100, AccessSize::DoubleWord), Some(0));
        assert_eq!(m.bar_read(0, 0x2000 + 70 * 16, W), None);
        assert_eq!(m.bar_read(4, 0x100 + 16, W), None);
    }

    fn program(m: &mut Msix, ctx: &mut IoCtx<'_>, irq: &mut RecIrq, v: u64, addr: u64, data: u32) {
        let base = 0x2000 + v * 16;
        m.bar_write(ctx, irq, 0, base, AccessSize::DoubleWord, addr);
        m.bar_write(ctx, irq, 0, base + 8, W, u64::from(data));
        m.bar_write(ctx, irq, 0, base + 12, W, 0);
    }

    #[test]
    fn a_vector_is_sent_when_enabled_and_unmasked_else_pending_until_unmasked() {
        let mem = mem();
        let mut irq = RecIrq::default();
        let mut m = Msix::new(layout()).unwrap();
        with_ctx(&mem, |ctx| {
            assert_eq!(m.signal(66, ctx, &mut irq), Delivery::Disabled);
            program(&mut m, ctx, &mut irq, 66, 0x0800_0040, 66);
            // Enabled with the function masked: pending, visible in the PBA.
            m.config_write(ctx, &mut irq, 0x40, W, 0xc000_0000);
            assert_eq!(m.signal(66, ctx, &mut irq), Delivery::Pending);
            assert!(irq.msis.is_empty());
            assert_eq!(m.bar_read(4, 0x108, W), Some(1 << 2));
            // Function unmasked: the pending message goes out, once.
            m.config_write(ctx, &mut irq, 0x40, W, 0x8000_0000);
            assert_eq!(irq.msis, [(0x0800_0040, 66)]);
            assert!(!m.is_pending(66));
            assert_eq!(m.signal(66, ctx, &mut irq), Delivery::Sent);
            assert_eq!(irq.msis.len(), 2);
            // Vector masked: pending; unmasking its entry sends it.
            m.bar_write(ctx, &mut irq, 0, 0x2000 + 66 * 16 + 12, W, 1);
            assert_eq!(m.signal(66, ctx, &mut irq), Delivery::Pending);
            assert_eq!(m.signal(66, ctx, &mut irq), Delivery::Pending);
            assert_eq!(irq.msis.len(), 2);
            m.bar_write(ctx, &mut irq, 0, 0x2000 + 66 * 16 + 12, W, 0);
            assert_eq!(irq.msis.len(), 3);
            assert_eq!(m.signal(70, ctx, &mut irq), Delivery::Disabled);
        });
    }

    #[test]
    fn reset_masks_every_vector_and_clears_pending() {
        let mem = mem();
        let mut irq = RecIrq::default();
        let mut m = Msix::new(layout()).unwrap();
        with_ctx(&mem, |ctx| {
            program(&mut m, ctx, &mut irq, 1, 0x0800_0040, 1);
            m.config_write(ctx, &mut irq, 0x40, W, 0xc000_0000);
            m.signal(1, ctx, &mut irq);
        });
        m.reset();
        assert!(!m.enabled() && !m.is_pending(1));
        assert_eq!(m.entry(1), Some(&MsixEntry::RESET));
    }
}
