//! What the driver needs of the Intel 82574 GbE Controller Family datasheet (revision 3.4,
//! "82574 datasheet" below): register offsets and bits, and the legacy descriptor formats.
//! Pure data and encoding, host-tested.

/// Register offsets in BAR 0 (82574 datasheet section 10.2, table 10-2).
pub mod reg {
    /// Device Control (10.2.2.1).
    pub const CTRL: u32 = 0x0000;
    /// Device Status (10.2.2.2).
    pub const STATUS: u32 = 0x0008;
    /// EEPROM Read (10.2.2.5).
    pub const EERD: u32 = 0x0014;
    /// Interrupt Cause Read, clear on read (10.2.4.1).
    pub const ICR: u32 = 0x00c0;
    /// Interrupt Throttling Rate (10.2.4.2).
    pub const ITR: u32 = 0x00c4;
    /// Interrupt Mask Set/Read (10.2.4.4).
    pub const IMS: u32 = 0x00d0;
    /// Interrupt Mask Clear (10.2.4.5).
    pub const IMC: u32 = 0x00d8;
    /// Receive Control (10.2.5.1).
    pub const RCTL: u32 = 0x0100;
    /// Transmit Control (10.2.6.1).
    pub const TCTL: u32 = 0x0400;
    /// Transmit Inter-Packet Gap (10.2.6.2).
    pub const TIPG: u32 = 0x0410;
    /// Receive Descriptor Base Address Low/High, Length, Head, Tail (10.2.5.6-10).
    pub const RDBAL: u32 = 0x2800;
    /// See [`RDBAL`].
    pub const RDBAH: u32 = 0x2804;
    /// See [`RDBAL`].
    pub const RDLEN: u32 = 0x2808;
    /// See [`RDBAL`].
    pub const RDH: u32 = 0x2810;
    /// See [`RDBAL`].
    pub const RDT: u32 = 0x2818;
    /// Receive Interrupt Packet Delay Timer (10.2.5.11).
    pub const RDTR: u32 = 0x2820;
    /// Receive Interrupt Absolute Delay Timer (10.2.5.14).
    pub const RADV: u32 = 0x282c;
    /// Transmit Descriptor Base Address Low/High, Length, Head, Tail (10.2.6.5-9).
    pub const TDBAL: u32 = 0x3800;
    /// See [`TDBAL`].
    pub const TDBAH: u32 = 0x3804;
    /// See [`TDBAL`].
    pub const TDLEN: u32 = 0x3808;
    /// See [`TDBAL`].
    pub const TDH: u32 = 0x3810;
    /// See [`TDBAL`].
    pub const TDT: u32 = 0x3818;
    /// Receive Filter Control (10.2.5.5): its EXSTEN bit selects extended RX descriptors.
    pub const RFCTL: u32 = 0x5008;
    /// Multicast Table Array, 128 dwords (10.2.5.15).
    pub const MTA: u32 = 0x5200;
    /// Receive Address Low/High of entry 0 (10.2.5.16-17): the NIC's own MAC.
    pub const RAL0: u32 = 0x5400;
    /// See [`RAL0`].
    pub const RAH0: u32 = 0x5404;
}

/// CTRL bits (10.2.2.1).
pub mod ctrl {
    /// Full duplex.
    pub const FD: u32 = 1 << 0;
    /// Auto-speed detection enable.
    pub const ASDE: u32 = 1 << 5;
    /// Set link up.
    pub const SLU: u32 = 1 << 6;
    /// Device reset (self-clearing).
    pub const RST: u32 = 1 << 26;
}

/// STATUS bits (10.2.2.2).
pub mod status {
    /// Link up.
    pub const LU: u32 = 1 << 1;
}

/// EERD fields (10.2.2.5): start, done, word address at bits 15:2, data at 31:16.
pub mod eerd {
    /// Start a read.
    pub const START: u32 = 1 << 0;
    /// The read is done and DATA valid.
    pub const DONE: u32 = 1 << 1;
    /// Shift of the word address.
    pub const ADDR_SHIFT: u32 = 2;
    /// Shift of the data read.
    pub const DATA_SHIFT: u32 = 16;
}

/// Interrupt cause and mask bits, common to ICR/IMS/IMC (10.2.4.1).
pub mod int {
    /// Transmit descriptor written back.
    pub const TXDW: u32 = 1 << 0;
    /// Link status change.
    pub const LSC: u32 = 1 << 2;
    /// Receive descriptor minimum threshold reached.
    pub const RXDMT0: u32 = 1 << 4;
    /// Receiver overrun (no free descriptor).
    pub const RXO: u32 = 1 << 6;
    /// Receiver timer interrupt (a frame was received).
    pub const RXT0: u32 = 1 << 7;
    /// What the driver unmasks. Not TXDW: each transmit reclaims the descriptors the
    /// device finished, so an interrupt per frame sent (one per 1514 bytes of a VM's TCP
    /// stream, with ITR off) would buy nothing.
    pub const ENABLED: u32 = LSC | RXDMT0 | RXO | RXT0;
}

/// RCTL bits (10.2.5.1).
pub mod rctl {
    /// Receiver enable.
    pub const EN: u32 = 1 << 1;
    /// Unicast promiscuous.
    pub const UPE: u32 = 1 << 3;
    /// Multicast promiscuous.
    pub const MPE: u32 = 1 << 4;
    /// Broadcast accept.
    pub const BAM: u32 = 1 << 15;
    /// Strip the Ethernet CRC from received frames (it is then not DMAed nor counted in
    /// the descriptor's length).
    pub const SECRC: u32 = 1 << 26;
    /// BSIZE 00 with BSEX 0: 2048-byte receive buffers.
    pub const BSIZE_2048: u32 = 0;
}

/// TCTL bits (10.2.6.1).
pub mod tctl {
    /// Transmitter enable.
    pub const EN: u32 = 1 << 1;
    /// Pad short packets to 64 bytes.
    pub const PSP: u32 = 1 << 3;
    /// Collision threshold 15 (the datasheet's recommended value), bits 11:4.
    pub const CT_15: u32 = 0x0f << 4;
    /// Collision distance 63 byte times for full duplex (10.2.6.1), bits 21:12.
    pub const COLD_FD: u32 = 0x3f << 12;
}

/// TIPG for copper links: IPGT 8, IPGR1 8, IPGR2 6 (10.2.6.2, recommended values).
pub const TIPG_COPPER: u32 = 8 | (8 << 10) | (6 << 20);

/// Bytes of one legacy descriptor, RX or TX (7.1.4, 7.2.10.1).
pub const DESC_SIZE: usize = 16;
/// Receive buffer size programmed in RCTL (BSIZE 00, BSEX 0).
pub const RX_BUF: usize = 2048;

/// Legacy receive descriptor status bits (7.1.4.1, table 7-4).
pub mod rx_status {
    /// Descriptor done.
    pub const DD: u8 = 1 << 0;
    /// End of packet.
    pub const EOP: u8 = 1 << 1;
}

/// Legacy transmit descriptor command and status bits (7.2.10.1, tables 7-40/7-41).
pub mod tx {
    /// End of packet.
    pub const EOP: u8 = 1 << 0;
    /// Insert FCS.
    pub const IFCS: u8 = 1 << 1;
    /// Report status: write DD back when done.
    pub const RS: u8 = 1 << 3;
    /// Status: descriptor done.
    pub const DD: u8 = 1 << 0;
}

/// A legacy receive descriptor as the device wrote it back (7.1.4.1): buffer address (8),
/// length (2), packet checksum (2), status (1), errors (1), special (2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxDesc {
    /// Bytes DMAed into the buffer.
    pub length: u16,
    /// Status bits ([`rx_status`]).
    pub status: u8,
    /// Error bits (CRC, symbol, sequence, RX data errors: any is a bad frame).
    pub errors: u8,
}

impl RxDesc {
    /// Decodes the device's write-back.
    pub fn decode(d: &[u8; DESC_SIZE]) -> Self {
        Self {
            length: u16::from_le_bytes([d[8], d[9]]),
            status: d[12],
            errors: d[13],
        }
    }

    /// A fresh descriptor handing the buffer at `addr` to the device (status cleared).
    pub fn fresh(addr: u64) -> [u8; DESC_SIZE] {
        let mut d = [0u8; DESC_SIZE];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d
    }
}

/// A legacy transmit descriptor (7.2.10.1): buffer address (8), length (2), CSO (1),
/// command (1), status (1), CSS (1), special (2).
pub fn tx_desc(addr: u64, len: u16) -> [u8; DESC_SIZE] {
    let mut d = [0u8; DESC_SIZE];
    d[0..8].copy_from_slice(&addr.to_le_bytes());
    d[8..10].copy_from_slice(&len.to_le_bytes());
    d[11] = tx::EOP | tx::IFCS | tx::RS;
    d
}

/// The TX descriptor's status byte.
pub fn tx_status(d: &[u8; DESC_SIZE]) -> u8 {
    d[12]
}

/// The MAC address in RAL0/RAH0 (low byte first), if RAH0's Address Valid bit is set and
/// it is a unicast, non-zero address.
pub fn mac_from_ra(ral: u32, rah: u32) -> Option<[u8; 6]> {
    const AV: u32 = 1 << 31;
    let l = ral.to_le_bytes();
    let h = rah.to_le_bytes();
    let mac = [l[0], l[1], l[2], l[3], h[0], h[1]];
    (rah & AV != 0 && mac != [0; 6] && mac[0] & 1 == 0).then_some(mac)
}

/// The MAC address in EEPROM words 0..3 (82574 datasheet 6.1.1.1, "Ethernet Address"),
/// if it is a unicast, non-zero address.
pub fn mac_from_eeprom(words: [u16; 3]) -> Option<[u8; 6]> {
    let [a, b, c] = words.map(u16::to_le_bytes);
    let mac = [a[0], a[1], b[0], b[1], c[0], c[1]];
    (mac != [0; 6] && mac != [0xff; 6] && mac[0] & 1 == 0).then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_addresses_come_from_ra_or_eeprom_and_must_be_unicast() {
        // QEMU's default 52:54:00:12:34:56 with AV.
        assert_eq!(
            mac_from_ra(0x1200_5452, 0x8000_5634),
            Some([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
        );
        assert_eq!(mac_from_ra(0x1200_5452, 0x0000_5634), None); // not valid
        assert_eq!(mac_from_ra(0, 0x8000_0000), None);
        assert_eq!(mac_from_ra(0x1200_5453, 0x8000_5634), None); // multicast
        assert_eq!(
            mac_from_eeprom([0x5452, 0x1200, 0x5634]),
            Some([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
        );
        assert_eq!(mac_from_eeprom([0xffff; 3]), None);
    }

    #[test]
    fn descriptors_encode_as_the_datasheet_lays_them_out() {
        let d = tx_desc(0x1122_3344_5566_7788, 60);
        assert_eq!(&d[0..8], &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!((d[8], d[9], d[11], d[12]), (60, 0, 0x0b, 0));
        let mut r = RxDesc::fresh(0x1000);
        assert_eq!(RxDesc::decode(&r).status, 0);
        r[8..10].copy_from_slice(&1514u16.to_le_bytes());
        r[12] = rx_status::DD | rx_status::EOP;
        assert_eq!(
            RxDesc::decode(&r),
            RxDesc {
                length: 1514,
                status: 3,
                errors: 0
            }
        );
        assert_eq!(TIPG_COPPER, 0x0060_2008);
    }
}
