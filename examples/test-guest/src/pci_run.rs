//! What the PCIe modes share on the target (`storage-*`, `net-*`): guest RAM the devices
//! DMA to and from, bus 0 enumeration with BAR placement, and the virtio-pci modern
//! transport's common configuration (reset, feature negotiation, queue set-up). The pure
//! parts (BAR decoding, capability walk) are in `storage.rs`.

use crate::dt::Platform;
use crate::mmio::Mmio;
use crate::storage::{self, virtio_status as vs, PciHost};
use crate::{checks, println};

/// Most functions driven.
pub const MAX_FUNCTIONS: usize = 4;
/// Polls of a status register before giving up (completions are synchronous).
pub const POLLS: u32 = 100_000;

/// Guest RAM that controllers DMA to and from, touched only by aligned volatile 32-bit
/// accesses (the MMU is off: RAM is Device memory to the guest).
#[derive(Clone, Copy, Debug)]
pub struct Dma {
    /// Guest-physical (= CPU, MMU off) address of its first byte.
    pub base: u64,
    /// Bytes.
    pub size: u64,
}

impl Dma {
    pub fn addr(&self, off: u64) -> u64 {
        assert!(
            off % 4 == 0 && off + 4 <= self.size,
            "DMA offset {off:#x} outside its area"
        );
        self.base + off
    }

    pub fn write32(&self, off: u64, v: u32) {
        // SAFETY: (1) the address is 4-byte aligned inside the DMA area (`addr`), RAM past
        // the image, its `.bss` and stacks and below the DTB (`storage::dma_area`); (2) no
        // Rust object lives there, so the store aliases nothing.
        unsafe { core::ptr::write_volatile(self.addr(off) as *mut u32, v) }
    }

    pub fn read32(&self, off: u64) -> u32 {
        // SAFETY: as in `write32`; reading RAM has no side effect.
        unsafe { core::ptr::read_volatile(self.addr(off) as *const u32) }
    }

    pub fn write_words(&self, off: u64, words: &[u32]) {
        for (i, &w) in words.iter().enumerate() {
            self.write32(off + 4 * i as u64, w);
        }
    }

    pub fn read_words(&self, off: u64, words: &mut [u32]) {
        for (i, w) in words.iter_mut().enumerate() {
            *w = self.read32(off + 4 * i as u64);
        }
    }

    pub fn zero(&self, off: u64, bytes: u64) {
        for i in (0..bytes).step_by(4) {
            self.write32(off + i, 0);
        }
    }

    pub fn sub(&self, off: u64, size: u64) -> Dma {
        assert!(off + size <= self.size, "DMA sub-area outside its area");
        Dma {
            base: self.base + off,
            size,
        }
    }
}

/// Waits until `done` or `POLLS` tries.
pub fn poll(mut done: impl FnMut() -> bool) -> bool {
    (0..POLLS).any(|_| done())
}

/// Busy-waits `ms` milliseconds of the virtual counter.
pub fn delay_ms(ms: u64) {
    let deadline = checks::counter() + checks::ticks(ms);
    while checks::counter() < deadline {
        core::hint::spin_loop();
    }
}

// ---- PCI ----

/// Config space: command register.
pub const PCI_COMMAND: usize = 0x04;
/// Command: memory space, bus master, INTx disabled (the guest polls).
pub const PCI_COMMAND_ON: u32 = 1 << 1 | 1 << 2 | 1 << 10;

/// A function of bus 0 with its BARs placed.
#[derive(Clone, Copy, Debug)]
pub struct Function<K> {
    /// Its slot (device number) on bus 0.
    pub slot: u8,
    /// What the caller's classifier made of it.
    pub kind: K,
    /// Its 4 KiB of ECAM configuration space.
    pub cfg: Mmio,
    /// CPU address of each memory BAR (0: none).
    pub bars: [u64; 6],
    /// Size of each memory BAR.
    pub sizes: [u64; 6],
}

impl<K> Function<K> {
    /// Memory BAR `index` as placed, if it is.
    pub fn bar(&self, index: u8) -> Option<Mmio> {
        let i = usize::from(index);
        let (base, size) = (*self.bars.get(i)?, self.sizes[i]);
        // SAFETY: (1) the guest placed this BAR itself in the bridge's memory window (from
        // the DTB), where only device registers are; (2) register accesses do not change
        // guest memory other than by the DMA the guest asks for in its own DMA area.
        (base != 0).then(|| unsafe { Mmio::new(base as usize, size as usize) })
    }
}

/// Enumerates bus 0: each function `classify(vendor, device, class)` names (others are
/// listed as `not wanted`, left alone) gets every memory BAR placed in the 32-bit window
/// and memory decoding and bus mastering turned on (INTx off: the modes poll); prints one
/// line per function and BAR, `name` giving what a kind is called.
pub fn enumerate<K: Copy>(
    host: PciHost,
    mode: &str,
    not_wanted: &str,
    classify: impl Fn(u16, u16, u32) -> Option<K>,
    name: impl Fn(K) -> &'static str,
) -> ([Option<Function<K>>; MAX_FUNCTIONS], usize) {
    // SAFETY: (1) the ECAM window comes from the DTB's host bridge `reg`: configuration
    // space, never RAM; (2) config accesses do not change guest memory.
    let ecam = unsafe {
        Mmio::new(
            host.ecam.base as usize,
            host.ecam.size.min(1 << 20) as usize,
        )
    };
    let mut alloc = storage::BarAllocator::new(host.mem32);
    let mut found = [None; MAX_FUNCTIONS];
    let mut count = 0;
    for slot in 0..storage::SLOTS {
        let cfg = ecam.frame(
            storage::ecam_offset(slot) as usize,
            storage::ECAM_FUNCTION as usize,
        );
        let id = cfg.read32(0);
        if id & 0xffff == 0xffff {
            continue;
        }
        let (vendor, device) = (id as u16, (id >> 16) as u16);
        let class = cfg.read32(8) >> 8;
        let Some(kind) = classify(vendor, device, class) else {
            println!("{mode}: 00:{slot:02x}.0 {vendor:04x}:{device:04x} class {class:06x}: {not_wanted}, left alone");
            continue;
        };
        if count == MAX_FUNCTIONS {
            println!(
                "{mode}: 00:{slot:02x}.0 {}: more than {MAX_FUNCTIONS} controllers, left alone",
                name(kind)
            );
            continue;
        }
        cfg.write32(PCI_COMMAND, 0);
        let mut f = Function {
            slot,
            kind,
            cfg,
            bars: [0; 6],
            sizes: [0; 6],
        };
        let mut i = 0_u8;
        while i < 6 {
            let off = 0x10 + 4 * usize::from(i);
            cfg.write32(off, 0xffff_ffff);
            let low = cfg.read32(off);
            let is_64 = low & 1 == 0 && (low >> 1) & 3 == 0b10 && i < 5;
            let high = if is_64 {
                cfg.write32(off + 4, 0xffff_ffff);
                cfg.read32(off + 4)
            } else {
                0
            };
            let probe = storage::bar_probe(i, low, high);
            if probe.size != 0 {
                match alloc.place(probe.size) {
                    Some(at) => {
                        cfg.write32(off, at as u32);
                        if probe.is_64bit {
                            cfg.write32(off + 4, (at >> 32) as u32);
                        }
                        f.bars[usize::from(i)] = at;
                        f.sizes[usize::from(i)] = probe.size;
                        println!(
                            "{mode}: 00:{slot:02x}.0 {vendor:04x}:{device:04x} {} BAR{i} at {at:#x} ({} KiB)",
                            name(kind),
                            probe.size >> 10
                        );
                    }
                    None => println!(
                        "{mode}: FAIL 00:{slot:02x}.0 BAR{i} of {:#x} bytes does not fit the window {:#x}+{:#x}",
                        probe.size, host.mem32.base, host.mem32.size
                    ),
                }
            } else {
                cfg.write32(off, 0);
            }
            i += if probe.is_64bit { 2 } else { 1 };
        }
        cfg.write32(PCI_COMMAND, PCI_COMMAND_ON);
        found[count] = Some(f);
        count += 1;
    }
    (found, count)
}

// ---- virtio-pci (modern) ----

/// Common configuration fields (virtio 1.2 §4.1.4.3).
pub mod cc {
    pub const DEVICE_FEATURE_SELECT: usize = 0x00;
    pub const DEVICE_FEATURE: usize = 0x04;
    pub const DRIVER_FEATURE_SELECT: usize = 0x08;
    pub const DRIVER_FEATURE: usize = 0x0c;
    pub const DEVICE_STATUS: usize = 0x14;
    pub const QUEUE_SELECT: usize = 0x16;
    pub const QUEUE_SIZE: usize = 0x18;
    pub const QUEUE_ENABLE: usize = 0x1c;
    pub const QUEUE_NOTIFY_OFF: usize = 0x1e;
    pub const QUEUE_DESC: usize = 0x20;
    pub const QUEUE_DRIVER: usize = 0x28;
    pub const QUEUE_DEVICE: usize = 0x30;
}

/// Feature bit 32: `VIRTIO_F_VERSION_1`.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// A virtio-pci function's registers, found through its vendor capabilities.
#[derive(Clone, Copy, Debug)]
pub struct VirtioRegs {
    /// Common configuration.
    pub common: Mmio,
    /// Device-specific configuration (at least `device_len` bytes).
    pub device: Mmio,
    /// The notification BAR from the notification capability's offset on.
    notify: Mmio,
    multiplier: u32,
}

impl VirtioRegs {
    /// The regions of `f`, whose BARs are placed; `device_len` bytes of device
    /// configuration are needed.
    pub fn find<K>(f: &Function<K>, device_len: usize) -> Result<Self, &'static str> {
        let mut config = [0_u8; 256];
        for (i, chunk) in config.chunks_exact_mut(4).enumerate() {
            chunk.copy_from_slice(&f.cfg.read32(4 * i).to_le_bytes());
        }
        let caps = storage::virtio_caps(&config);
        let region = |place: Option<(u8, u32)>, len: usize| -> Option<Mmio> {
            let (bar, off) = place?;
            let regs = f.bar(bar)?;
            ((off as usize) + len <= regs.size()).then(|| regs.frame(off as usize, len))
        };
        let common = region(caps.common, 0x38).ok_or("no common configuration capability")?;
        let device = region(caps.device, device_len).ok_or("no device configuration capability")?;
        let (bar, off) = caps.notify.ok_or("no notification capability")?;
        let regs = f.bar(bar).ok_or("notification BAR unassigned")?;
        if off as usize + 2 > regs.size() {
            return Err("notification capability outside its BAR");
        }
        let notify = regs.frame(off as usize, regs.size() - off as usize);
        Ok(Self {
            common,
            device,
            notify,
            multiplier: caps.notify_multiplier,
        })
    }

    /// The device status register.
    pub fn status(&self) -> u8 {
        self.common.read8(cc::DEVICE_STATUS)
    }

    /// Writes 0 to the device status and waits until it reads back 0.
    pub fn reset(&self) -> Result<(), &'static str> {
        self.common.write8(cc::DEVICE_STATUS, 0);
        if poll(|| self.status() == 0) {
            Ok(())
        } else {
            Err("device status does not go back to 0 on reset")
        }
    }

    /// ACKNOWLEDGE, DRIVER, `features` (which must hold `VIRTIO_F_VERSION_1`, offered by
    /// the device) and FEATURES_OK, which the device must keep.
    pub fn negotiate(&self, features: u64) -> Result<(), &'static str> {
        let c = self.common;
        c.write8(cc::DEVICE_STATUS, vs::ACKNOWLEDGE);
        c.write8(cc::DEVICE_STATUS, vs::ACKNOWLEDGE | vs::DRIVER);
        let mut offered = 0_u64;
        for sel in 0..2_u32 {
            c.write32(cc::DEVICE_FEATURE_SELECT, sel);
            offered |= u64::from(c.read32(cc::DEVICE_FEATURE)) << (32 * sel);
        }
        if offered & VIRTIO_F_VERSION_1 == 0 {
            return Err("the device does not offer VIRTIO_F_VERSION_1");
        }
        if features & !offered != 0 {
            return Err("the device does not offer every feature asked for");
        }
        for sel in 0..2_u32 {
            c.write32(cc::DRIVER_FEATURE_SELECT, sel);
            c.write32(cc::DRIVER_FEATURE, (features >> (32 * sel)) as u32);
        }
        let status = vs::ACKNOWLEDGE | vs::DRIVER | vs::FEATURES_OK;
        c.write8(cc::DEVICE_STATUS, status);
        if c.read8(cc::DEVICE_STATUS) & vs::FEATURES_OK == 0 {
            return Err("the device refused FEATURES_OK");
        }
        Ok(())
    }

    /// Sets queue `index` up with `size` entries (at most what the device offers) and its
    /// three areas, enables it, and returns its notify register.
    pub fn queue(
        &self,
        index: u16,
        size: u16,
        desc: u64,
        avail: u64,
        used: u64,
    ) -> Result<Mmio, &'static str> {
        let c = self.common;
        c.write16(cc::QUEUE_SELECT, index);
        let max = c.read16(cc::QUEUE_SIZE);
        if max < size {
            return Err("the queue is smaller than the size asked for");
        }
        c.write16(cc::QUEUE_SIZE, size);
        for (field, addr) in [
            (cc::QUEUE_DESC, desc),
            (cc::QUEUE_DRIVER, avail),
            (cc::QUEUE_DEVICE, used),
        ] {
            c.write32(field, addr as u32);
            c.write32(field + 4, (addr >> 32) as u32);
        }
        let at = usize::from(c.read16(cc::QUEUE_NOTIFY_OFF)) * self.multiplier as usize;
        if at + 2 > self.notify.size() {
            return Err("queue notify address outside its BAR");
        }
        c.write16(cc::QUEUE_ENABLE, 1);
        Ok(self.notify.frame(at, 2))
    }

    /// DRIVER_OK on top of FEATURES_OK.
    pub fn driver_ok(&self) {
        self.common.write8(
            cc::DEVICE_STATUS,
            vs::ACKNOWLEDGE | vs::DRIVER | vs::FEATURES_OK | vs::DRIVER_OK,
        );
    }
}

// ---- The DMA area ----

extern "C" {
    /// One past the image's `.bss` and stacks (`image.ld`).
    static __image_end: u8;
}

/// `bytes` of DMA memory after the image, after a `FAIL` line if RAM has no room.
pub fn dma_area(platform: &Platform, mode: &str, bytes: u64) -> Option<Dma> {
    let image_end = (&raw const __image_end) as u64;
    match storage::dma_area(platform.ram, image_end, bytes) {
        Some(r) => Some(Dma {
            base: r.base,
            size: r.size,
        }),
        None => {
            println!("{mode}: FAIL no {bytes:#x} bytes of RAM between the image end {image_end:#x} and the DTB: give the VM more RAM");
            None
        }
    }
}
