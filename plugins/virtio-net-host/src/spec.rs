//! What the driver needs of the virtio 1.2 specification (OASIS, "virtio 1.2" below):
//! feature bits, status bits, the virtio-pci capabilities (4.1.4) and the split virtqueue
//! layout (2.7). Pure, host-tested.

/// Device status bits (2.1).
pub mod status {
    /// The guest OS noticed the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// It knows how to drive it.
    pub const DRIVER: u8 = 2;
    /// The driver is ready.
    pub const DRIVER_OK: u8 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u8 = 8;
    /// The device hit an error it cannot recover from without a reset.
    pub const DEVICE_NEEDS_RESET: u8 = 64;
    /// The driver gave up on the device.
    pub const FAILED: u8 = 128;
}

/// Feature bits (5.1.3, 6).
pub mod feature {
    /// The device has a MAC address in its configuration space.
    pub const NET_MAC: u64 = 1 << 5;
    /// The configuration space's `status` field (link up) is valid.
    pub const NET_STATUS: u64 = 1 << 16;
    /// Virtio 1.x (not legacy): required.
    pub const VERSION_1: u64 = 1 << 32;
    /// What this driver accepts: no offloads, no mergeable buffers, no control queue, no
    /// event index, so every header field it sends is zero and every buffer it posts holds
    /// a whole frame.
    pub const WANTED: u64 = NET_MAC | NET_STATUS | VERSION_1;
}

/// `struct virtio_net_config` (5.1.4): `mac` at 0, `status` at 6.
pub mod net_config {
    /// Offset of `mac[6]`.
    pub const MAC: usize = 0;
    /// Offset of `status` (le16).
    pub const STATUS: usize = 6;
    /// `VIRTIO_NET_S_LINK_UP`.
    pub const LINK_UP: u16 = 1;
}

/// Bytes of `struct virtio_net_hdr` with VERSION_1 (5.1.6: `num_buffers` is always
/// present in 1.x).
pub const NET_HDR: usize = 12;
/// Receive queue index (5.1.2: receiveq1).
pub const RX_QUEUE: u16 = 0;
/// Transmit queue index (transmitq1).
pub const TX_QUEUE: u16 = 1;

/// PCI capability of virtio-pci (4.1.4): vendor-specific capability ID.
const CAP_VENDOR: u8 = 0x09;
/// `cfg_type` values (4.1.4).
mod cfg_type {
    pub const COMMON: u8 = 1;
    pub const NOTIFY: u8 = 2;
    pub const ISR: u8 = 3;
    pub const DEVICE: u8 = 4;
}

/// Where one virtio structure is: a BAR, and an offset and length inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// BAR number.
    pub bar: u8,
    /// Offset in the BAR.
    pub offset: u32,
    /// Length in bytes.
    pub length: u32,
}

/// The four structures the driver uses (4.1.4.3-4.1.4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// Common configuration.
    pub common: Region,
    /// Notifications, and the multiplier of `queue_notify_off`.
    pub notify: Region,
    /// `notify_off_multiplier`.
    pub notify_multiplier: u32,
    /// ISR status.
    pub isr: Region,
    /// Device-specific configuration.
    pub device: Region,
}

/// Bytes of `struct virtio_pci_common_cfg` (4.1.4.3) up to `queue_device`.
pub const COMMON_CFG_LEN: u32 = 0x38;

/// Why the capabilities cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapError {
    /// No capability list, or one of the four structures is missing: a legacy-only device.
    Missing,
    /// A structure is too short or misaligned, or the list loops.
    Malformed,
}

/// Walks the function's capability list (`read32` reads configuration space dwords) and
/// finds the first capability of each type (4.1.4: "the driver SHOULD use the first
/// instance of each virtio structure type they can support").
pub fn parse_caps(mut read32: impl FnMut(u16) -> u32) -> Result<Caps, CapError> {
    let byte = |read32: &mut dyn FnMut(u16) -> u32, off: u16| -> u8 {
        (read32(off & !3) >> ((off & 3) * 8)) as u8
    };
    // Status register bit 4: capabilities list (PCI 3.0 6.2.3).
    if (read32(0x04) >> 16) & (1 << 4) == 0 {
        return Err(CapError::Missing);
    }
    let mut ptr = u16::from(byte(&mut read32, 0x34)) & !3;
    let (mut common, mut notify, mut isr, mut device) = (None, None, None, None);
    let mut multiplier = 0;
    // At most 48 capabilities fit in the 192 bytes after the header: more is a loop.
    for _ in 0..48 {
        if ptr < 0x40 {
            break;
        }
        let head = read32(ptr);
        let (id, next, len, ty) = (
            head as u8,
            (head >> 8) as u8,
            (head >> 16) as u8,
            (head >> 24) as u8,
        );
        if id == CAP_VENDOR && len >= 16 {
            let bar = read32(ptr + 4) as u8;
            let region = Region {
                bar,
                offset: read32(ptr + 8),
                length: read32(ptr + 12),
            };
            let slot = match ty {
                cfg_type::COMMON => Some(&mut common),
                cfg_type::NOTIFY if len >= 20 => {
                    if notify.is_none() {
                        multiplier = read32(ptr + 16);
                    }
                    Some(&mut notify)
                }
                cfg_type::ISR => Some(&mut isr),
                cfg_type::DEVICE => Some(&mut device),
                _ => None,
            };
            // BARs 0-5 only (4.1.4: other values are reserved).
            if let Some(s) = slot.filter(|s| s.is_none() && bar < 6) {
                *s = Some(region);
            }
        }
        ptr = u16::from(next) & !3;
    }
    if ptr >= 0x40 {
        return Err(CapError::Malformed);
    }
    let (Some(common), Some(notify), Some(isr), Some(device)) = (common, notify, isr, device)
    else {
        return Err(CapError::Missing);
    };
    // 4.1.4.4: the multiplier is an even power of 2 or 0; offsets aligned to the fields.
    let aligned = |r: Region, a: u32| r.offset.is_multiple_of(a);
    if common.length < COMMON_CFG_LEN
        || !aligned(common, 4)
        || isr.length < 1
        || notify.length < 2
        || !aligned(notify, 2)
        || (multiplier != 0 && (!multiplier.is_power_of_two() || !multiplier.is_multiple_of(2)))
        || device.length < 8
        || !aligned(device, 4)
    {
        return Err(CapError::Malformed);
    }
    Ok(Caps {
        common,
        notify,
        notify_multiplier: multiplier,
        isr,
        device,
    })
}

/// Byte offsets of a split virtqueue of `size` entries laid out in one buffer (2.7): the
/// descriptor table (16-byte aligned) at 0, the driver (available) ring after it, the device
/// (used) ring 4-byte aligned after that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Entries.
    pub size: u16,
    /// `avail` ring offset: flags, idx, ring[size], used_event.
    pub avail: usize,
    /// `used` ring offset: flags, idx, ring[size] of (id le32, len le32), avail_event.
    pub used: usize,
    /// Total bytes.
    pub bytes: usize,
}

impl Layout {
    /// The layout of a queue of `size` entries.
    pub fn new(size: u16) -> Self {
        let n = usize::from(size);
        let avail = 16 * n;
        let used = (avail + 6 + 2 * n).next_multiple_of(4);
        Self {
            size,
            avail,
            used,
            bytes: used + 6 + 8 * n,
        }
    }

    /// Offset of `avail.idx`.
    pub fn avail_idx(&self) -> usize {
        self.avail + 2
    }

    /// Offset of `avail.ring[i % size]`.
    pub fn avail_slot(&self, i: u16) -> usize {
        self.avail + 4 + 2 * usize::from(i % self.size)
    }

    /// Offset of `used.idx`.
    pub fn used_idx(&self) -> usize {
        self.used + 2
    }

    /// Offset of `used.ring[i % size]`.
    pub fn used_slot(&self, i: u16) -> usize {
        self.used + 4 + 8 * usize::from(i % self.size)
    }
}

/// Descriptor flag: the device writes this buffer (2.7.5).
pub const DESC_F_WRITE: u16 = 2;

/// A descriptor (2.7.5): address, length, flags, next.
pub fn desc(addr: u64, len: u32, flags: u16) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[0..8].copy_from_slice(&addr.to_le_bytes());
    d[8..12].copy_from_slice(&len.to_le_bytes());
    d[12..14].copy_from_slice(&flags.to_le_bytes());
    d
}

/// The queue size the driver uses: the largest power of two up to both the device's
/// maximum and `cap` (2.7: split queue sizes are powers of two).
pub fn queue_size(device_max: u16, cap: u16) -> u16 {
    let m = device_max.min(cap);
    if m == 0 {
        0
    } else {
        1 << (15 - m.leading_zeros())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A configuration space with QEMU's virtio-net-pci capabilities (all in BAR 4:
    /// common 0x0, ISR 0x1000, device 0x2000, notify 0x3000 with multiplier 4), after an
    /// MSI-X capability and a PCI configuration access capability (which is skipped).
    pub(crate) fn qemu_config() -> [u8; 256] {
        let mut c = [0u8; 256];
        c[0x06] = 0x10; // status: capabilities list
        c[0x34] = 0xb0;
        // MSI-X capability (ID 0x11) at 0xb0, next 0x98.
        c[0xb0] = 0x11;
        c[0xb1] = 0x98;
        let vcap = |c: &mut [u8; 256], at: usize, next: u8, ty: u8, off: u32, len: u32| {
            c[at] = 0x09;
            c[at + 1] = next;
            c[at + 2] = if ty == 2 || ty == 5 { 20 } else { 16 };
            c[at + 3] = ty;
            c[at + 4] = 4;
            c[at + 8..at + 12].copy_from_slice(&off.to_le_bytes());
            c[at + 12..at + 16].copy_from_slice(&len.to_le_bytes());
        };
        vcap(&mut c, 0x98, 0x84, 5, 0, 0); // PCI config access: ignored
        vcap(&mut c, 0x84, 0x70, 1, 0x0, 0x1000);
        vcap(&mut c, 0x70, 0x60, 3, 0x1000, 0x1000);
        vcap(&mut c, 0x60, 0x48, 4, 0x2000, 0x1000);
        vcap(&mut c, 0x48, 0x00, 2, 0x3000, 0x1000);
        c[0x48 + 16] = 4;
        c
    }

    pub(crate) fn reader(c: &[u8; 256]) -> impl FnMut(u16) -> u32 + '_ {
        move |off| {
            let o = usize::from(off);
            u32::from_le_bytes(c[o..o + 4].try_into().unwrap())
        }
    }

    #[test]
    fn qemu_capabilities_are_found() {
        let c = qemu_config();
        let caps = parse_caps(reader(&c)).unwrap();
        let r = |offset| Region {
            bar: 4,
            offset,
            length: 0x1000,
        };
        assert_eq!(
            caps,
            Caps {
                common: r(0),
                notify: r(0x3000),
                notify_multiplier: 4,
                isr: r(0x1000),
                device: r(0x2000),
            }
        );
    }

    #[test]
    fn missing_looping_and_malformed_capabilities_are_refused() {
        let mut c = qemu_config();
        c[0x06] = 0;
        assert_eq!(parse_caps(reader(&c)), Err(CapError::Missing));
        let mut c = qemu_config();
        c[0x61] = 0x00; // the list ends after the device structure: no notify
        assert_eq!(parse_caps(reader(&c)), Err(CapError::Missing));
        let mut c = qemu_config();
        c[0x49] = 0x84; // loops back to the common structure
        assert_eq!(parse_caps(reader(&c)), Err(CapError::Malformed));
        c = qemu_config();
        c[0x84 + 12..0x84 + 16].copy_from_slice(&16u32.to_le_bytes()); // common: 16 bytes
        assert_eq!(parse_caps(reader(&c)), Err(CapError::Malformed));
        c = qemu_config();
        c[0x48 + 16] = 3; // multiplier not a power of two
        assert_eq!(parse_caps(reader(&c)), Err(CapError::Malformed));
        c = qemu_config();
        c[0x60 + 4] = 7; // device structure in a reserved BAR: not usable
        assert_eq!(parse_caps(reader(&c)), Err(CapError::Missing));
    }

    #[test]
    fn split_queue_layout_and_sizes() {
        let l = Layout::new(256);
        assert_eq!((l.avail, l.used, l.bytes), (4096, 4616, 4616 + 6 + 2048));
        assert_eq!(l.avail_slot(257), 4096 + 4 + 2);
        assert_eq!(l.used_slot(256), 4616 + 4);
        assert_eq!(Layout::new(2).used % 4, 0);
        assert_eq!(queue_size(256, 128), 128);
        assert_eq!(queue_size(100, 128), 64);
        assert_eq!(queue_size(0, 128), 0);
        assert_eq!(queue_size(1, 128), 1);
        let d = desc(0x1234, 2048, DESC_F_WRITE);
        assert_eq!((d[8], d[9], d[12]), (0, 8, 2));
    }
}
