//! The virtio-pci modern transport (virtio 1.2 §4.1): a [`VirtioDevice`] as a PCI function.
//!
//! IDs: vendor 0x1af4, device 0x1040 + the virtio device ID, revision 1 (modern only).
//! One 16 KiB memory BAR 0 holds the four regions, each found through a vendor-specific
//! capability in config space:
//!
//! ```text
//!  BAR 0 + 0x0000  common configuration  (cap at 0x40, cfg_type 1)
//!  BAR 0 + 0x1000  ISR status            (cap at 0x64, cfg_type 3)
//!  BAR 0 + 0x2000  device configuration  (cap at 0x74, cfg_type 4)
//!  BAR 0 + 0x3000  notifications         (cap at 0x50, cfg_type 2, multiplier 4:
//!                                         queue n is notified at 0x3000 + 4 n)
//! ```
//!
//! Interrupts are INTx (the ISR register says why; reading it lowers the line). MSI-X
//! vectors read back as `NO_VECTOR`, which Linux takes as "use INTx". A queue is served
//! synchronously on the guest's notify write, only while `DRIVER_OK`, the queue is
//! enabled and bus mastering is on; work that arrives from elsewhere (a frame for a NIC)
//! is served when the runtime polls the function ([`PciFunction::poll`]), under the same
//! conditions, with the same interrupt. A driver that breaks a queue (see
//! [`QueueError`](super::queue::QueueError)) gets `DEVICE_NEEDS_RESET` and a
//! configuration interrupt, and the device does nothing more until it is reset. The
//! `VIRTIO_PCI_CAP_PCI_CFG` window is not offered: reading through it would need a
//! BAR access with its side effects from a config read, which `PciFunction` does not
//! give (no driver we know of uses it).
#![deny(unsafe_code)]

use super::queue::SplitQueue;
use super::{
    VirtioDevice, STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER_OK, STATUS_FEATURES_OK,
    VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1,
};
use crate::mmio::AccessSize;
use crate::pci::{BarSpec, PciFunction, PciIds, PciIrq};
use crate::vm::devices::IoCtx;
use alloc::vec::Vec;

/// PCI vendor ID of virtio devices.
pub const VIRTIO_VENDOR: u16 = 0x1af4;
/// PCI device ID of a modern virtio device of ID 0.
pub const VIRTIO_DEVICE_BASE: u16 = 0x1040;
/// Subsystem ID of modern virtio devices (as QEMU's).
pub const VIRTIO_SUBSYSTEM: u16 = 0x1100;

/// Offset of the common configuration in BAR 0.
pub const COMMON_CFG: u64 = 0x0000;
/// Offset of the ISR status in BAR 0.
pub const ISR_CFG: u64 = 0x1000;
/// Offset of the device configuration in BAR 0.
pub const DEVICE_CFG: u64 = 0x2000;
/// Offset of the notification area in BAR 0.
pub const NOTIFY_CFG: u64 = 0x3000;
/// Size of each region.
pub const REGION_SIZE: u64 = 0x1000;
/// Bytes between the notify addresses of two queues.
pub const NOTIFY_OFF_MULTIPLIER: u32 = 4;
/// Size of BAR 0.
pub const BAR_SIZE: u64 = 0x4000;

/// Capability ID of vendor-specific capabilities.
pub const PCI_CAP_ID_VNDR: u8 = 0x09;
/// `cfg_type` of the common configuration.
pub const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
/// `cfg_type` of the notification area.
pub const VIRTIO_PCI_CAP_NOTIFY_CFG: u8 = 2;
/// `cfg_type` of the ISR status.
pub const VIRTIO_PCI_CAP_ISR_CFG: u8 = 3;
/// `cfg_type` of the device configuration.
pub const VIRTIO_PCI_CAP_DEVICE_CFG: u8 = 4;

/// `config_msix_vector` / `queue_msix_vector` without MSI-X.
pub const VIRTIO_MSI_NO_VECTOR: u16 = 0xffff;

/// ISR bit: a queue has used buffers.
pub const ISR_QUEUE: u8 = 1;
/// ISR bit: the device configuration (or status) changed.
pub const ISR_CONFIG: u8 = 2;

/// Offset of the first capability in config space.
const CAPS_AT: u16 = 0x40;

/// Common configuration fields (offset in the region).
mod common {
    pub const DEVICE_FEATURE_SELECT: usize = 0x00;
    pub const DEVICE_FEATURE: usize = 0x04;
    pub const DRIVER_FEATURE_SELECT: usize = 0x08;
    pub const DRIVER_FEATURE: usize = 0x0c;
    pub const CONFIG_MSIX_VECTOR: usize = 0x10;
    pub const NUM_QUEUES: usize = 0x12;
    pub const DEVICE_STATUS: usize = 0x14;
    pub const CONFIG_GENERATION: usize = 0x15;
    pub const QUEUE_SELECT: usize = 0x16;
    pub const QUEUE_SIZE: usize = 0x18;
    pub const QUEUE_MSIX_VECTOR: usize = 0x1a;
    pub const QUEUE_ENABLE: usize = 0x1c;
    pub const QUEUE_NOTIFY_OFF: usize = 0x1e;
    pub const QUEUE_DESC: usize = 0x20;
    pub const QUEUE_DRIVER: usize = 0x28;
    pub const QUEUE_DEVICE: usize = 0x30;
    /// Size of the structure (virtio 1.0 fields).
    pub const LEN: usize = 0x38;
}

/// The vendor capabilities, as config space bytes from [`CAPS_AT`].
fn capabilities() -> [u8; 0x44] {
    let mut caps = [0u8; 0x44];
    // (position, cfg_type, next, offset in BAR 0, length)
    let list: [(usize, u8, u8, u64, u64); 4] = [
        (
            0x00,
            VIRTIO_PCI_CAP_COMMON_CFG,
            0x50,
            COMMON_CFG,
            REGION_SIZE,
        ),
        (
            0x10,
            VIRTIO_PCI_CAP_NOTIFY_CFG,
            0x64,
            NOTIFY_CFG,
            REGION_SIZE,
        ),
        (0x24, VIRTIO_PCI_CAP_ISR_CFG, 0x74, ISR_CFG, REGION_SIZE),
        (
            0x34,
            VIRTIO_PCI_CAP_DEVICE_CFG,
            0x00,
            DEVICE_CFG,
            REGION_SIZE,
        ),
    ];
    for (at, cfg_type, next, offset, length) in list {
        let len = if cfg_type == VIRTIO_PCI_CAP_NOTIFY_CFG {
            20
        } else {
            16
        };
        let c = &mut caps[at..at + len];
        c[0] = PCI_CAP_ID_VNDR;
        c[1] = next;
        c[2] = len as u8;
        c[3] = cfg_type;
        c[4] = 0; // BAR 0
        c[8..12].copy_from_slice(&(offset as u32).to_le_bytes());
        c[12..16].copy_from_slice(&(length as u32).to_le_bytes());
        if cfg_type == VIRTIO_PCI_CAP_NOTIFY_CFG {
            c[16..20].copy_from_slice(&NOTIFY_OFF_MULTIPLIER.to_le_bytes());
        }
    }
    caps
}

/// A virtio device on the PCI bus (modern transport).
pub struct VirtioPci<D: VirtioDevice> {
    device: D,
    bars: [BarSpec; 1],
    caps: [u8; 0x44],
    queues: Vec<SplitQueue>,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    status: u8,
    config_generation: u8,
    queue_select: u16,
    isr: u8,
}

impl<D: VirtioDevice> VirtioPci<D> {
    /// `device` behind the virtio-pci transport, in its reset state.
    pub fn new(device: D) -> Self {
        let queues = device
            .queue_max_sizes()
            .iter()
            .map(|&m| SplitQueue::new(m))
            .collect();
        Self {
            device,
            bars: [BarSpec {
                index: 0,
                size: BAR_SIZE,
                is_64bit: false,
                prefetchable: false,
            }],
            caps: capabilities(),
            queues,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            config_generation: 0,
            queue_select: 0,
            isr: 0,
        }
    }

    /// The device type behind the transport.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device type behind the transport, writable.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The device status register.
    pub fn status(&self) -> u8 {
        self.status
    }

    /// Every feature bit offered: the device's, plus the transport's.
    pub fn offered_features(&self) -> u64 {
        self.device.features() | VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC
    }

    fn reset_state(&mut self) {
        self.device.reset();
        for q in &mut self.queues {
            q.reset();
        }
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.status = 0;
        self.queue_select = 0;
        self.isr = 0;
    }

    fn selected(&self) -> Option<&SplitQueue> {
        self.queues.get(usize::from(self.queue_select))
    }

    /// The common configuration as the driver reads it.
    fn common_image(&self) -> [u8; common::LEN] {
        use common::*;
        let mut img = [0u8; LEN];
        let mut put = |at: usize, bytes: &[u8]| img[at..at + bytes.len()].copy_from_slice(bytes);
        let offered = self.offered_features();
        let word = |v: u64, sel: u32| match sel {
            0 => v as u32,
            1 => (v >> 32) as u32,
            _ => 0,
        };
        put(
            DEVICE_FEATURE_SELECT,
            &self.device_feature_select.to_le_bytes(),
        );
        put(
            DEVICE_FEATURE,
            &word(offered, self.device_feature_select).to_le_bytes(),
        );
        put(
            DRIVER_FEATURE_SELECT,
            &self.driver_feature_select.to_le_bytes(),
        );
        put(
            DRIVER_FEATURE,
            &word(self.driver_features, self.driver_feature_select).to_le_bytes(),
        );
        put(CONFIG_MSIX_VECTOR, &VIRTIO_MSI_NO_VECTOR.to_le_bytes());
        put(NUM_QUEUES, &(self.queues.len() as u16).to_le_bytes());
        put(DEVICE_STATUS, &[self.status]);
        put(CONFIG_GENERATION, &[self.config_generation]);
        put(QUEUE_SELECT, &self.queue_select.to_le_bytes());
        if let Some(q) = self.selected() {
            put(QUEUE_SIZE, &q.size.to_le_bytes());
            put(QUEUE_MSIX_VECTOR, &VIRTIO_MSI_NO_VECTOR.to_le_bytes());
            put(QUEUE_ENABLE, &u16::from(q.ready).to_le_bytes());
            put(QUEUE_NOTIFY_OFF, &self.queue_select.to_le_bytes());
            put(QUEUE_DESC, &q.desc_table.to_le_bytes());
            put(QUEUE_DRIVER, &q.avail_ring.to_le_bytes());
            put(QUEUE_DEVICE, &q.used_ring.to_le_bytes());
        }
        img
    }

    fn common_write(&mut self, ctx: &mut IoCtx<'_>, irq: &mut dyn PciIrq, off: usize, data: &[u8]) {
        use common::*;
        let end = off + data.len();
        if end > LEN {
            return;
        }
        let mut img = self.common_image();
        img[off..end].copy_from_slice(data);
        let touches = |at: usize, len: usize| off < at + len && at < end;
        let u16_at = |at: usize| u16::from_le_bytes([img[at], img[at + 1]]);
        let u32_at =
            |at: usize| u32::from_le_bytes([img[at], img[at + 1], img[at + 2], img[at + 3]]);
        let u64_at = |at: usize| u64::from(u32_at(at)) | u64::from(u32_at(at + 4)) << 32;
        if touches(DEVICE_FEATURE_SELECT, 4) {
            self.device_feature_select = u32_at(DEVICE_FEATURE_SELECT);
        }
        if touches(DRIVER_FEATURE_SELECT, 4) {
            self.driver_feature_select = u32_at(DRIVER_FEATURE_SELECT);
        }
        if touches(DRIVER_FEATURE, 4) && self.status & STATUS_FEATURES_OK == 0 {
            let v = u64::from(u32_at(DRIVER_FEATURE));
            match self.driver_feature_select {
                0 => self.driver_features = (self.driver_features & !0xffff_ffff) | v,
                1 => self.driver_features = (self.driver_features & 0xffff_ffff) | v << 32,
                _ => {}
            }
        }
        if touches(QUEUE_SELECT, 2) {
            self.queue_select = u16_at(QUEUE_SELECT);
        }
        let sel = usize::from(self.queue_select);
        if let Some(q) = self.queues.get_mut(sel).filter(|q| !q.ready) {
            if touches(QUEUE_SIZE, 2) {
                q.size = u16_at(QUEUE_SIZE);
            }
            if touches(QUEUE_DESC, 8) {
                q.desc_table = u64_at(QUEUE_DESC);
            }
            if touches(QUEUE_DRIVER, 8) {
                q.avail_ring = u64_at(QUEUE_DRIVER);
            }
            if touches(QUEUE_DEVICE, 8) {
                q.used_ring = u64_at(QUEUE_DEVICE);
            }
            // Enabling a queue whose configuration is unusable leaves it disabled.
            if touches(QUEUE_ENABLE, 2) && u16_at(QUEUE_ENABLE) == 1 && q.is_valid() {
                q.ready = true;
            }
        }
        if touches(DEVICE_STATUS, 1) {
            self.write_status(ctx, irq, img[DEVICE_STATUS]);
        }
    }

    fn write_status(&mut self, ctx: &mut IoCtx<'_>, irq: &mut dyn PciIrq, value: u8) {
        if value == 0 {
            self.reset_state();
            irq.set_intx(ctx, false);
            return;
        }
        let mut new = value & !STATUS_DEVICE_NEEDS_RESET;
        new |= self.status & STATUS_DEVICE_NEEDS_RESET;
        if new & STATUS_FEATURES_OK != 0 && self.status & STATUS_FEATURES_OK == 0 {
            let ok = self.driver_features & VIRTIO_F_VERSION_1 != 0
                && self.driver_features & !self.offered_features() == 0;
            if !ok {
                new &= !STATUS_FEATURES_OK;
            }
        }
        // DRIVER_OK counts only after a successful feature negotiation.
        if new & STATUS_DRIVER_OK != 0 && new & STATUS_FEATURES_OK == 0 {
            new &= !STATUS_DRIVER_OK;
        }
        let activate = new & STATUS_DRIVER_OK != 0 && self.status & STATUS_DRIVER_OK == 0;
        self.status = new;
        if activate {
            self.device.activate(self.driver_features);
        }
    }

    /// Queue `index` was notified.
    fn notify(&mut self, ctx: &mut IoCtx<'_>, irq: &mut dyn PciIrq, index: u16) {
        if self.status & STATUS_DRIVER_OK == 0
            || self.status & STATUS_DEVICE_NEEDS_RESET != 0
            || !irq.bus_master()
        {
            return;
        }
        let Some(q) = self.queues.get_mut(usize::from(index)).filter(|q| q.ready) else {
            return;
        };
        let mut mem = ctx.mem.lock();
        let result = match self.device.process_queue(index, &mut *q, &mut *mem) {
            Ok(true) => q.interrupts_suppressed(&mut *mem).map(|s| !s),
            other => other,
        };
        drop(mem);
        self.complete(ctx, irq, result);
    }

    /// Work outside a guest access ([`VirtioDevice::poll`]), under the same conditions
    /// as a notify: the driver runs the device and bus mastering is on.
    fn poll_device(&mut self, ctx: &mut IoCtx<'_>, irq: &mut dyn PciIrq) {
        if self.status & STATUS_DRIVER_OK == 0
            || self.status & STATUS_DEVICE_NEEDS_RESET != 0
            || !irq.bus_master()
        {
            return;
        }
        let mut mem = ctx.mem.lock();
        let result = self
            .device
            .poll(&mut self.queues, &mut *mem)
            .and_then(|used| {
                let mut raise = false;
                for (i, q) in self.queues.iter().enumerate().take(32) {
                    if used & (1 << i) != 0 && q.ready && !q.interrupts_suppressed(&mut *mem)? {
                        raise = true;
                    }
                }
                Ok(raise)
            });
        drop(mem);
        self.complete(ctx, irq, result);
    }

    /// After the device served queues: a queue interrupt if `result` asks for one, or
    /// `DEVICE_NEEDS_RESET` and a configuration interrupt if the driver broke a queue.
    fn complete(
        &mut self,
        ctx: &mut IoCtx<'_>,
        irq: &mut dyn PciIrq,
        result: Result<bool, super::queue::QueueError>,
    ) {
        match result {
            Ok(false) => {}
            Ok(true) => {
                if self.isr == 0 {
                    // The line goes up: a new interrupt for the guest.
                    self.device.interrupt_raised();
                }
                self.isr |= ISR_QUEUE;
            }
            Err(_) => {
                self.status |= STATUS_DEVICE_NEEDS_RESET;
                self.isr |= ISR_CONFIG;
            }
        }
        irq.set_intx(ctx, self.isr != 0);
    }
}

/// The little-endian value of `size` bytes of `bytes` at `off` (bytes past the end read 0).
fn le_read(bytes: &[u8], off: u64, size: AccessSize) -> u64 {
    let mut v = [0u8; 8];
    for (i, b) in v.iter_mut().take(size.bytes() as usize).enumerate() {
        *b = usize::try_from(off)
            .ok()
            .and_then(|o| o.checked_add(i))
            .and_then(|o| bytes.get(o))
            .copied()
            .unwrap_or(0);
    }
    u64::from_le_bytes(v)
}

impl<D: VirtioDevice> PciFunction for VirtioPci<D> {
    fn ids(&self) -> PciIds {
        PciIds {
            vendor: VIRTIO_VENDOR,
            device: VIRTIO_DEVICE_BASE + self.device.device_id(),
            class: self.device.pci_class(),
            revision: 1,
            subsystem_vendor: VIRTIO_VENDOR,
            subsystem: VIRTIO_SUBSYSTEM,
        }
    }

    fn bars(&self) -> &[BarSpec] {
        &self.bars
    }

    fn capabilities_pointer(&self) -> u8 {
        CAPS_AT as u8
    }

    fn config_read(&mut self, offset: u16, size: AccessSize) -> u32 {
        match offset.checked_sub(CAPS_AT) {
            Some(off) => le_read(&self.caps, u64::from(off), size) as u32,
            None => 0,
        }
    }

    fn config_write(
        &mut self,
        _ctx: &mut IoCtx<'_>,
        _irq: &mut dyn PciIrq,
        _offset: u16,
        _size: AccessSize,
        _value: u32,
    ) {
        // Every capability field is read-only.
    }

    fn bar_read(
        &mut self,
        ctx: &mut IoCtx<'_>,
        irq: &mut dyn PciIrq,
        bar: u8,
        offset: u64,
        size: AccessSize,
    ) -> u64 {
        if bar != 0 {
            return 0;
        }
        match offset & !(REGION_SIZE - 1) {
            COMMON_CFG => le_read(&self.common_image(), offset, size),
            ISR_CFG if offset == ISR_CFG => {
                // Reading the ISR acknowledges it and lowers INTx.
                let v = self.isr;
                self.isr = 0;
                irq.set_intx(ctx, false);
                u64::from(v)
            }
            DEVICE_CFG => {
                let mut buf = [0u8; 8];
                let n = size.bytes() as usize;
                self.device.config_read(offset - DEVICE_CFG, &mut buf[..n]);
                u64::from_le_bytes(buf)
            }
            _ => 0,
        }
    }

    fn bar_write(
        &mut self,
        ctx: &mut IoCtx<'_>,
        irq: &mut dyn PciIrq,
        bar: u8,
        offset: u64,
        size: AccessSize,
        value: u64,
    ) {
        if bar != 0 {
            return;
        }
        let n = size.bytes() as usize;
        let bytes = value.to_le_bytes();
        match offset & !(REGION_SIZE - 1) {
            COMMON_CFG => self.common_write(ctx, irq, offset as usize, &bytes[..n]),
            DEVICE_CFG => self.device.config_write(offset - DEVICE_CFG, &bytes[..n]),
            NOTIFY_CFG => {
                let rel = offset - NOTIFY_CFG;
                if rel.is_multiple_of(u64::from(NOTIFY_OFF_MULTIPLIER)) {
                    let index = rel / u64::from(NOTIFY_OFF_MULTIPLIER);
                    self.notify(ctx, irq, index as u16);
                }
            }
            _ => {}
        }
    }

    fn poll(&mut self, ctx: &mut IoCtx<'_>, irq: &mut dyn PciIrq) {
        self.poll_device(ctx, irq);
    }

    fn reset(&mut self) {
        self.reset_state();
    }
}
