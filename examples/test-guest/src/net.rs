//! `net-hostile` and `net-neighbour` modes' pure parts (host-tested): the frames the two
//! VMs exchange over the hypervisor's virtual switch, and how the hostile VM reads the
//! device's answer to a probe (`net_run.rs` drives the NICs).
//!
//! Every frame of the two modes is an Ethernet II frame of EtherType [`ETHERTYPE`] (IEEE
//! "local experimental") whose payload is [`Msg`]: the magic `NHST`, a [`Kind`], a
//! sequence number, a 64-bit marker and two counters. The neighbour broadcasts a `Tick`
//! every few milliseconds, answers each `Ping` with a `Pong` carrying the ping's sequence
//! number and marker and what it has seen so far (frames of kind `Probe`, frames sent
//! from its own address), and stops at `Bye`. Every frame the hostile VM sends in a probe
//! is of kind `Probe`, so a probe frame that got through the device and the switch is
//! counted by the neighbour and reported back in the next `Pong`.

/// EtherType of the modes' frames (IEEE 802 local experimental EtherType 1).
pub const ETHERTYPE: u16 = 0x88b5;
/// Bytes of an Ethernet header (destination, source, EtherType).
pub const ETH_HEADER: usize = 14;
/// Shortest Ethernet frame without its FCS: shorter frames are padded with zeros.
pub const MIN_FRAME: usize = 60;
/// Longest frame the hypervisor's NIC sends: 1500 bytes of MTU, the header and a VLAN tag.
pub const MAX_FRAME: usize = 1518;
/// Bytes of the `virtio_net_hdr` in front of every frame (virtio 1.x).
pub const NET_HDR: usize = 12;
/// `virtio_net_hdr.flags`: the device must finish the checksum (needs `VIRTIO_NET_F_CSUM`).
pub const HDR_F_NEEDS_CSUM: u8 = 1;
/// `virtio_net_hdr.gso_type`: TCPv4 segmentation (needs `VIRTIO_NET_F_HOST_TSO4`).
pub const GSO_TCPV4: u8 = 1;
/// Feature bit 5: `VIRTIO_NET_F_MAC`.
pub const VIRTIO_NET_F_MAC: u64 = 1 << 5;
/// PCI device ID of a modern virtio-net function (0x1040 + device ID 1).
pub const VIRTIO_NET_DEVICE: u16 = 0x1041;

/// Magic at the start of every payload.
const MAGIC: [u8; 4] = *b"NHST";
/// Bytes of a payload: magic, kind, sequence, marker, two counters.
pub const PAYLOAD: usize = 4 + 1 + 4 + 8 + 4 + 4;

/// A MAC address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: Mac = Mac([0xff; 6]);
}

impl core::fmt::Display for Mac {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// What a frame of the modes is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Hostile to neighbour: answer with a `Pong`.
    Ping,
    /// Neighbour to hostile: the answer, with the neighbour's counters.
    Pong,
    /// Neighbour to everyone, every few milliseconds: traffic for the hostile VM's receive
    /// queue while it probes.
    Tick,
    /// Sent by a probe: must never arrive.
    Probe,
    /// Hostile to neighbour: done, power off.
    Bye,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Ping => 1,
            Kind::Pong => 2,
            Kind::Tick => 3,
            Kind::Probe => 4,
            Kind::Bye => 5,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => Kind::Ping,
            2 => Kind::Pong,
            3 => Kind::Tick,
            4 => Kind::Probe,
            5 => Kind::Bye,
            _ => return None,
        })
    }
}

/// One frame of the modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msg {
    /// Destination address.
    pub dst: Mac,
    /// Source address.
    pub src: Mac,
    /// What it is for.
    pub kind: Kind,
    /// Sequence number (a `Pong` repeats its `Ping`'s).
    pub seq: u32,
    /// A value the answer must repeat (a `Pong` repeats its `Ping`'s).
    pub marker: u64,
    /// In a `Pong`: `Probe` frames the neighbour received so far.
    pub probes: u32,
    /// In a `Pong`: frames the neighbour received with its own address as source.
    pub forged: u32,
}

impl Msg {
    /// A message with zero counters.
    pub fn new(dst: Mac, src: Mac, kind: Kind, seq: u32, marker: u64) -> Self {
        Msg {
            dst,
            src,
            kind,
            seq,
            marker,
            probes: 0,
            forged: 0,
        }
    }

    /// Writes the frame into `buf`, `len` bytes long (at least [`MIN_FRAME`], at most
    /// `buf.len()`; the bytes after the payload are a pattern of their offset), and returns
    /// its length.
    pub fn encode(&self, buf: &mut [u8], len: usize) -> usize {
        let len = len.max(MIN_FRAME).min(buf.len());
        buf[0..6].copy_from_slice(&self.dst.0);
        buf[6..12].copy_from_slice(&self.src.0);
        buf[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
        let p = &mut buf[ETH_HEADER..];
        p[0..4].copy_from_slice(&MAGIC);
        p[4] = self.kind.code();
        p[5..9].copy_from_slice(&self.seq.to_le_bytes());
        p[9..17].copy_from_slice(&self.marker.to_le_bytes());
        p[17..21].copy_from_slice(&self.probes.to_le_bytes());
        p[21..25].copy_from_slice(&self.forged.to_le_bytes());
        for (i, b) in buf[ETH_HEADER + PAYLOAD..len].iter_mut().enumerate() {
            *b = i as u8;
        }
        len
    }

    /// The message in `frame`, if it is one of the modes' frames.
    pub fn decode(frame: &[u8]) -> Option<Self> {
        if frame.len() < ETH_HEADER + PAYLOAD
            || frame[12..14] != ETHERTYPE.to_be_bytes()
            || frame[ETH_HEADER..ETH_HEADER + 4] != MAGIC
        {
            return None;
        }
        let mac = |at: usize| {
            let mut m = [0_u8; 6];
            m.copy_from_slice(&frame[at..at + 6]);
            Mac(m)
        };
        let p = &frame[ETH_HEADER..];
        let u32_at = |at: usize| u32::from_le_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]]);
        let mut marker = [0_u8; 8];
        marker.copy_from_slice(&p[9..17]);
        Some(Msg {
            dst: mac(0),
            src: mac(6),
            kind: Kind::from_code(p[4])?,
            seq: u32_at(5),
            marker: u64::from_le_bytes(marker),
            probes: u32_at(17),
            forged: u32_at(21),
        })
    }
}

/// The 12-byte `virtio_net_hdr` with `flags` and `gso_type` (everything else 0), as three
/// little-endian words.
pub fn net_hdr(flags: u8, gso_type: u8) -> [u32; 3] {
    [u32::from(flags) | u32::from(gso_type) << 8, 0, 0]
}

/// Word `i` (bytes `4i..4i+4`, little-endian) of a frame `len` bytes long whose first
/// bytes are `head` (from [`Msg::encode`]) and whose rest is `encode`'s padding pattern:
/// how the guest writes a frame of any length into its DMA memory without holding it.
pub fn frame_word(head: &[u8], len: usize, i: usize) -> u32 {
    let byte = |j: usize| -> u8 {
        if j >= len {
            0
        } else if let Some(&b) = head.get(j) {
            b
        } else {
            (j - (ETH_HEADER + PAYLOAD)) as u8
        }
    };
    u32::from_le_bytes([
        byte(4 * i),
        byte(4 * i + 1),
        byte(4 * i + 2),
        byte(4 * i + 3),
    ])
}

/// What the device did with the chains of a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The device marked itself `DEVICE_NEEDS_RESET`.
    NeedsReset,
    /// `used` chains came back (of `asked`), the device still running.
    Used {
        /// Chains the probe made available.
        asked: u16,
        /// Chains back in the used ring.
        used: u16,
    },
}

/// The outcome from what the driver sees: the device status after the probe (NEEDS_RESET
/// bit 0x40) and how far the used index moved.
pub fn outcome(device_status: u8, asked: u16, used: u16) -> Outcome {
    if device_status & 0x40 != 0 {
        Outcome::NeedsReset
    } else {
        Outcome::Used { asked, used }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Mac = Mac([0x52, 0x54, 0, 0x4e, 0x48, 1]);
    const B: Mac = Mac([0x52, 0x54, 0, 0x4e, 0x48, 2]);

    #[test]
    fn messages_round_trip_and_are_padded() {
        let mut m = Msg::new(B, A, Kind::Pong, 7, 0x0123_4567_89ab_cdef);
        m.probes = 3;
        m.forged = 9;
        let mut buf = [0xee_u8; 2048];
        assert_eq!(m.encode(&mut buf, 0), MIN_FRAME);
        assert_eq!(&buf[12..14], &[0x88, 0xb5]);
        assert_eq!(Msg::decode(&buf[..MIN_FRAME]), Some(m));
        assert_eq!(buf[ETH_HEADER + PAYLOAD], 0, "padding starts at 0");
        assert_eq!(m.encode(&mut buf, 1519), 1519);
        assert_eq!(m.encode(&mut buf, 4096), 2048, "at most the buffer");
    }

    #[test]
    fn frame_words_rebuild_a_long_frame_from_its_head() {
        let m = Msg::new(B, A, Kind::Probe, 3, 4);
        let mut big = [0_u8; 9000];
        let n = m.encode(&mut big, 9000);
        let mut head = [0_u8; 64];
        let h = m.encode(&mut head, 64);
        for len in [60, 61, 1519, 9000] {
            let n = n.min(len);
            let mut back = Vec::new();
            for i in 0..n.div_ceil(4) {
                back.extend_from_slice(&frame_word(&head[..h], n, i).to_le_bytes());
            }
            assert_eq!(&back[..n], &big[..n], "{len} bytes");
            assert!(back[n..].iter().all(|&b| b == 0), "zero after the end");
        }
    }

    #[test]
    fn other_frames_are_not_messages() {
        let mut buf = [0_u8; 64];
        let n = Msg::new(B, A, Kind::Tick, 1, 2).encode(&mut buf, 60);
        assert!(Msg::decode(&buf[..n]).is_some());
        let mut arp = buf;
        arp[12..14].copy_from_slice(&0x0806_u16.to_be_bytes());
        assert_eq!(Msg::decode(&arp), None, "another EtherType");
        let mut bad = buf;
        bad[ETH_HEADER] = b'X';
        assert_eq!(Msg::decode(&bad), None, "no magic");
        let mut kind = buf;
        kind[ETH_HEADER + 4] = 99;
        assert_eq!(Msg::decode(&kind), None, "unknown kind");
        assert_eq!(Msg::decode(&buf[..ETH_HEADER + PAYLOAD - 1]), None, "short");
    }

    #[test]
    fn macs_print_as_hex_pairs() {
        assert_eq!(A.to_string(), "52:54:00:4e:48:01");
        assert_eq!(Mac::BROADCAST.to_string(), "ff:ff:ff:ff:ff:ff");
    }

    #[test]
    fn headers() {
        assert_eq!(net_hdr(HDR_F_NEEDS_CSUM, GSO_TCPV4), [0x0101, 0, 0]);
        assert_eq!(net_hdr(0, 0), [0; 3]);
    }

    #[test]
    fn outcome_is_needs_reset_whatever_was_used() {
        assert_eq!(outcome(0x4f, 1, 0), Outcome::NeedsReset);
        assert_eq!(outcome(0x4f, 1, 1), Outcome::NeedsReset);
        assert_eq!(outcome(0x0f, 1, 1), Outcome::Used { asked: 1, used: 1 });
        assert_eq!(outcome(0x0f, 2, 0), Outcome::Used { asked: 2, used: 0 });
    }
}
