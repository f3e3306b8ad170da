//! Networking for VMs: Ethernet addresses, the uplinks (the machine's own NICs, driven by
//! plugins) and the virtual switch that joins them to the VMs' virtual NICs.
//!
//! Frames are plain Ethernet II frames without FCS (at most [`MAX_FRAME`] bytes: 1514 plus
//! one 802.1Q tag). Who owns what:
//! - [`uplink`]: the registry of host NICs. A driver plugin (xHCI + CDC-ECM, e1000e,
//!   virtio-net) registers a device that transmits, and hands each frame it receives to
//!   its [`uplink::UplinkHandle`].
//! - [`switch`]: a learning L2 switch with a port per VM NIC (each in a port group, an
//!   802.1Q VLAN or the untagged one) and one uplink; it is the registry's
//!   [`uplink::UplinkSink`]. Frames for a VM wait in its port's queue until the VM's own
//!   vCPU moves them into its receive ring.
//! - [`crate::virtio::net`]: the virtio-net NIC a guest sees, one switch port each.
#![deny(unsafe_code)]

pub mod switch;
pub mod uplink;

use core::fmt;

/// Bytes of an Ethernet header (destination, source, EtherType).
pub const ETH_HEADER: usize = 14;
/// Largest frame without FCS: 1500 bytes of payload, the header and one 802.1Q tag.
pub const MAX_FRAME: usize = 1500 + ETH_HEADER + 4;
/// Smallest frame a NIC sends (without FCS); shorter frames are padded with zeros.
pub const MIN_FRAME: usize = 60;

/// A 48-bit Ethernet (MAC) address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

/// A MAC address that cannot be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    /// Not six hex pairs separated by `:`.
    #[error("a MAC address is six hex pairs separated by `:`, such as 52:54:00:12:34:56")]
    Syntax,
    /// A group (multicast) address cannot be a NIC's own.
    #[error("a NIC's MAC address must be unicast: the lowest bit of the first byte must be 0 (try 52:54:00:...)")]
    Multicast,
}

impl MacAddr {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// Parses `aa:bb:cc:dd:ee:ff` (hex, either case); a NIC's address must be unicast.
    pub fn parse_unicast(s: &str) -> Result<Self, MacError> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in out.iter_mut() {
            let p = parts.next().ok_or(MacError::Syntax)?;
            if p.len() != 2 {
                return Err(MacError::Syntax);
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| MacError::Syntax)?;
        }
        if parts.next().is_some() {
            return Err(MacError::Syntax);
        }
        let mac = MacAddr(out);
        if mac.is_multicast() {
            return Err(MacError::Multicast);
        }
        Ok(mac)
    }

    /// A stable, locally administered unicast address for NIC `index` of VM `vm_name`:
    /// `02:` then 40 bits of an FNV-1a hash of the name and index. The same VM file gives
    /// the same addresses on every boot (DHCP leases and ARP caches stay valid).
    pub fn generated(vm_name: &str, index: usize) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in vm_name
            .bytes()
            .chain([0u8])
            .chain((index as u32).to_le_bytes())
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let b = h.to_le_bytes();
        MacAddr([0x02, b[0], b[1], b[2], b[3], b[4]])
    }

    /// A group address (multicast, or broadcast).
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }

    /// `ff:ff:ff:ff:ff:ff`.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// The destination address of `frame`, if it has a header.
    pub fn destination(frame: &[u8]) -> Option<Self> {
        frame.get(0..6).map(|d| {
            let mut a = [0u8; 6];
            a.copy_from_slice(d);
            MacAddr(a)
        })
    }

    /// The source address of `frame`, if it has a header.
    pub fn source(frame: &[u8]) -> Option<Self> {
        frame.get(6..12).map(|d| {
            let mut a = [0u8; 6];
            a.copy_from_slice(d);
            MacAddr(a)
        })
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            a[0], a[1], a[2], a[3], a[4], a[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let m = MacAddr::parse_unicast("52:54:00:AB:cd:0f").unwrap();
        assert_eq!(m.0, [0x52, 0x54, 0, 0xab, 0xcd, 0x0f]);
        assert_eq!(format!("{m}"), "52:54:00:ab:cd:0f");
    }

    #[test]
    fn refuses_bad_addresses() {
        for bad in [
            "",
            "52:54:00:12:34",
            "52:54:00:12:34:56:78",
            "5:54:00:12:34:56",
            "zz:54:00:12:34:56",
        ] {
            assert_eq!(MacAddr::parse_unicast(bad), Err(MacError::Syntax), "{bad}");
        }
        assert_eq!(
            MacAddr::parse_unicast("01:00:5e:00:00:01"),
            Err(MacError::Multicast)
        );
    }

    #[test]
    fn generated_addresses_are_stable_local_unicast_and_distinct() {
        let a = MacAddr::generated("web", 0);
        assert_eq!(a, MacAddr::generated("web", 0));
        assert_ne!(a, MacAddr::generated("web", 1));
        assert_ne!(a, MacAddr::generated("db", 0));
        assert!(!a.is_multicast());
        assert_eq!(a.0[0] & 2, 2, "locally administered");
    }

    #[test]
    fn header_fields() {
        let mut f = [0u8; 60];
        f[..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        assert!(MacAddr::destination(&f).unwrap().is_broadcast());
        assert_eq!(MacAddr::source(&f).unwrap().0, [2, 0, 0, 0, 0, 1]);
        assert_eq!(MacAddr::source(&f[..8]), None);
    }
}
