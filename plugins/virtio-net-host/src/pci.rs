//! The virtio-pci modern transport on real registers (virtio 1.2 4.1.4): the common
//! configuration, notification, ISR and device configuration structures, each a
//! `safe-mmio` pointer into the BAR its capability names.

use crate::nic::Transport;
use crate::spec::{Caps, Region};
use core::ptr::NonNull;
use hypervisor::plugin::pci::HostBar;
use safe_mmio::fields::{ReadOnly, ReadPure, ReadWrite, WriteOnly};
use safe_mmio::{field, UniqueMmioPointer};

/// `struct virtio_pci_common_cfg` (4.1.4.3) up to `queue_device`; the 64-bit queue
/// addresses as two 32-bit halves (4.1.3.1: the driver may access them so, and QEMU only
/// accepts accesses of up to 32 bits here).
#[repr(C)]
pub struct CommonCfg {
    device_feature_select: ReadWrite<u32>,
    device_feature: ReadOnly<u32>,
    driver_feature_select: ReadWrite<u32>,
    driver_feature: ReadWrite<u32>,
    config_msix_vector: ReadWrite<u16>,
    num_queues: ReadOnly<u16>,
    device_status: ReadWrite<u8>,
    config_generation: ReadOnly<u8>,
    queue_select: ReadWrite<u16>,
    queue_size: ReadWrite<u16>,
    queue_msix_vector: ReadWrite<u16>,
    queue_enable: ReadWrite<u16>,
    queue_notify_off: ReadOnly<u16>,
    queue_desc_lo: ReadWrite<u32>,
    queue_desc_hi: ReadWrite<u32>,
    queue_driver_lo: ReadWrite<u32>,
    queue_driver_hi: ReadWrite<u32>,
    queue_device_lo: ReadWrite<u32>,
    queue_device_hi: ReadWrite<u32>,
}

/// The head of `struct virtio_net_config` (5.1.4): `mac` and `status`.
#[repr(C)]
pub struct NetConfig {
    mac: [ReadPure<u8>; 6],
    status: ReadPure<u16>,
}

/// The transport of one function.
pub struct PciTransport {
    common: UniqueMmioPointer<'static, CommonCfg>,
    notify: UniqueMmioPointer<'static, [WriteOnly<u16>]>,
    notify_multiplier: u32,
    /// `queue_notify_off` of queues 0 and 1, read when they were enabled.
    notify_off: [u16; 2],
    isr: UniqueMmioPointer<'static, ReadOnly<u8>>,
    device: UniqueMmioPointer<'static, NetConfig>,
}

/// The address of `r` (needing `need` bytes, aligned to `align`) inside the BARs, if it
/// lies wholly in one assigned BAR.
fn place(bars: &[HostBar], r: Region, need: usize, align: u64) -> Result<u64, &'static str> {
    let bar = bars
        .iter()
        .find(|b| b.index == r.bar)
        .ok_or("a virtio structure is in a BAR that was not assigned")?;
    let end = u64::from(r.offset) + need.max(r.length as usize) as u64;
    if end > bar.size {
        return Err("a virtio structure runs past the end of its BAR");
    }
    let addr = bar.base + u64::from(r.offset);
    if addr == 0 || addr % align != 0 {
        return Err("a virtio structure is misaligned");
    }
    Ok(addr)
}

fn overlap(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0 + b.1 && b.0 < a.0 + a.1
}

impl PciTransport {
    /// The transport over the structures `caps` names in `bars`.
    ///
    /// # Safety
    ///
    /// `bars` must be the function's memory BARs as its host bridge assigned and enabled
    /// them, inside a window the EL2 page tables map as device memory for the rest of the
    /// program, and nothing else may access them while the returned value exists.
    pub unsafe fn new(bars: &[HostBar], caps: &Caps) -> Result<Self, &'static str> {
        let common_len = size_of::<CommonCfg>();
        let net_len = size_of::<NetConfig>();
        let common = place(bars, caps.common, common_len, 4)?;
        let notify = place(bars, caps.notify, 2, 2)?;
        let isr = place(bars, caps.isr, 1, 1)?;
        let device = place(bars, caps.device, net_len, 2)?;
        let spans = [
            (common, common_len as u64),
            (notify, u64::from(caps.notify.length)),
            (isr, 1),
            (device, net_len as u64),
        ];
        for (i, a) in spans.iter().enumerate() {
            if spans[i + 1..].iter().any(|b| overlap(*a, *b)) {
                return Err("virtio structures overlap");
            }
        }
        let nn = |a: u64| NonNull::new(a as *mut u8).ok_or("a virtio structure at address 0");
        let notify_ptr = NonNull::slice_from_raw_parts(
            nn(notify)?.cast::<WriteOnly<u16>>(),
            caps.notify.length as usize / 2,
        );
        // SAFETY: each pointer is inside an assigned BAR (checked by `place`), aligned for
        // its type, the four do not overlap (checked above), and the caller's contract
        // makes them device memory nobody else accesses: `UniqueMmioPointer::new`'s terms.
        // Every field of the structures is safe to read and write as declared (virtio 1.2
        // 4.1.4.3-4.1.4.6; the ISR read clears it, which the driver wants).
        unsafe {
            Ok(Self {
                common: UniqueMmioPointer::new(nn(common)?.cast()),
                notify: UniqueMmioPointer::new(notify_ptr),
                notify_multiplier: caps.notify_multiplier,
                notify_off: [0; 2],
                isr: UniqueMmioPointer::new(nn(isr)?.cast()),
                device: UniqueMmioPointer::new(nn(device)?.cast()),
            })
        }
    }
}

impl Transport for PciTransport {
    fn status(&mut self) -> u8 {
        field!(self.common, device_status).read()
    }

    fn set_status(&mut self, status: u8) {
        field!(self.common, device_status).write(status);
    }

    fn device_features(&mut self) -> u64 {
        let mut f = 0;
        for sel in 0..2u32 {
            field!(self.common, device_feature_select).write(sel);
            f |= u64::from(field!(self.common, device_feature).read()) << (32 * sel);
        }
        f
    }

    fn set_driver_features(&mut self, features: u64) {
        for sel in 0..2u32 {
            field!(self.common, driver_feature_select).write(sel);
            field!(self.common, driver_feature).write((features >> (32 * sel)) as u32);
        }
    }

    fn queue_max(&mut self, q: u16) -> u16 {
        field!(self.common, queue_select).write(q);
        field!(self.common, queue_size).read()
    }

    fn enable_queue(&mut self, q: u16, size: u16, desc: u64, driver: u64, device: u64) {
        let c = &mut self.common;
        field!(*c, queue_select).write(q);
        field!(*c, queue_size).write(size);
        // No MSI-X vector: interrupts go through INTx and the ISR (4.1.5.3).
        field!(*c, queue_msix_vector).write(0xffff);
        field!(*c, queue_desc_lo).write(desc as u32);
        field!(*c, queue_desc_hi).write((desc >> 32) as u32);
        field!(*c, queue_driver_lo).write(driver as u32);
        field!(*c, queue_driver_hi).write((driver >> 32) as u32);
        field!(*c, queue_device_lo).write(device as u32);
        field!(*c, queue_device_hi).write((device >> 32) as u32);
        let off = field!(*c, queue_notify_off).read();
        if let Some(o) = self.notify_off.get_mut(usize::from(q)) {
            *o = off;
        }
        field!(self.common, queue_enable).write(1);
    }

    fn notify(&mut self, q: u16) {
        let Some(&off) = self.notify_off.get(usize::from(q)) else {
            return;
        };
        // 4.1.4.4: cap.offset + queue_notify_off * notify_off_multiplier, a le16 write of
        // the queue index. Outside the structure (a device that lied): not written.
        let at = u64::from(off) * u64::from(self.notify_multiplier) / 2;
        if let Some(mut r) = usize::try_from(at).ok().and_then(|i| self.notify.get(i)) {
            r.write(q);
        }
    }

    fn isr(&mut self) -> u8 {
        self.isr.read()
    }

    fn config_generation(&mut self) -> u8 {
        field!(self.common, config_generation).read()
    }

    fn config8(&mut self, offset: usize) -> u8 {
        let mut mac = field!(self.device, mac);
        mac.get(offset).map_or(0xff, |m| m.read())
    }

    fn config16(&mut self, offset: usize) -> u16 {
        if offset == crate::spec::net_config::STATUS {
            field!(self.device, status).read()
        } else {
            0xffff
        }
    }
}
