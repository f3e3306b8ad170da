//! Transmit offloads done in software: a guest's frame that asks for its checksum to be
//! filled in (`VIRTIO_NET_HDR_F_NEEDS_CSUM`) or to be cut into TCP segments
//! (`VIRTIO_NET_HDR_GSO_TCPV4`, up to 64 KiB) becomes the plain frames of at most
//! [`MAX_FRAME`](super::MAX_FRAME) bytes that every port and uplink takes, each with its
//! IPv4 and TCP checksums correct. So a VM's Linux hands over one 64 KiB chain where it
//! would otherwise segment, checksum and queue ~45 frames itself.
//!
//! Everything the guest wrote is untrusted: the headers are parsed here (the guest's
//! `hdr_len` is not used), and a frame that is not what its offload needs (not
//! Ethernet II + IPv4 without fragmentation + TCP for segmentation, a checksum position
//! outside the frame, a segment size that would not fit a frame) is refused, never
//! partly sent.
#![deny(unsafe_code)]

use super::{ETH_HEADER, MAX_FRAME};

/// EtherType of IPv4.
const ETHERTYPE_IPV4: u16 = 0x0800;
/// IP protocol number of TCP.
const IPPROTO_TCP: u8 = 6;
/// TCP flags.
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// Largest frame a guest may hand over with segmentation: the Ethernet header, one
/// 802.1Q tag and the largest IPv4 datagram.
pub const MAX_GSO_FRAME: usize = ETH_HEADER + 4 + 65535;

/// What a transmitted frame asks for (from its `virtio_net_hdr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TxOffload {
    /// Fill in a checksum: the ones' complement sum from `.0` to the end of the frame,
    /// stored at `.0 + .1` (which holds the pseudo-header sum already, as the guest
    /// computed it).
    pub csum: Option<(u16, u16)>,
    /// Cut into TCP/IPv4 segments of this many payload bytes.
    pub tcp4_mss: Option<u16>,
}

/// Why a frame's offload could not be done (the frame is dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffloadError {
    /// The checksum position lies outside the frame.
    BadChecksumPosition,
    /// Segmentation of something that is not Ethernet II, IPv4 (unfragmented) and TCP,
    /// or whose headers do not fit the frame.
    NotTcpV4,
    /// A segment size of zero, or one whose frames would exceed [`MAX_FRAME`].
    BadSegmentSize,
    /// A frame over [`MAX_FRAME`] without segmentation, or over [`MAX_GSO_FRAME`].
    TooBig,
}

/// The ones' complement sum of `data` as big-endian 16-bit words (an odd last byte is
/// padded with zero), added to `sum`, not folded.
pub fn sum_words(data: &[u8], mut sum: u64) -> u64 {
    // 32-bit words into a 64-bit accumulator: folding later gives the same 16-bit ones'
    // complement sum, with a quarter of the additions.
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        sum += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        sum += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [b] = pairs.remainder() {
        sum += u64::from(*b) << 8;
    }
    sum
}

/// Folds a sum of [`sum_words`] to 16 bits and complements it: the checksum to store.
pub fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Passes the frame(s) `frame` becomes under `off` to `out`, in order. Returns how many,
/// or why none (then `out` was not called). `scratch` holds one segment at a time.
pub fn resolve(
    frame: &mut [u8],
    off: TxOffload,
    scratch: &mut [u8; MAX_FRAME],
    mut out: impl FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    if frame.len() > MAX_GSO_FRAME {
        return Err(OffloadError::TooBig);
    }
    if let Some(mss) = off.tcp4_mss {
        return segment(frame, usize::from(mss), scratch, out);
    }
    if frame.len() > MAX_FRAME {
        return Err(OffloadError::TooBig);
    }
    if let Some((start, offset)) = off.csum {
        let start = usize::from(start);
        let at = start + usize::from(offset);
        if start >= frame.len() || at + 2 > frame.len() {
            return Err(OffloadError::BadChecksumPosition);
        }
        let c = fold(sum_words(&frame[start..], 0));
        put16(frame, at, c);
    }
    out(frame);
    Ok(1)
}

/// The header offsets of an Ethernet II + IPv4 + TCP frame: (IP, TCP, payload).
fn tcp4_headers(frame: &[u8]) -> Result<(usize, usize, usize), OffloadError> {
    let ip = ETH_HEADER;
    if frame.len() < ip + 20 || be16(frame, 12) != ETHERTYPE_IPV4 {
        return Err(OffloadError::NotTcpV4);
    }
    let (ver, ihl) = (frame[ip] >> 4, usize::from(frame[ip] & 0xf) * 4);
    // Fragments (MF set or an offset) cannot be segmented.
    if ver != 4 || ihl < 20 || frame[ip + 9] != IPPROTO_TCP || be16(frame, ip + 6) & 0x3fff != 0 {
        return Err(OffloadError::NotTcpV4);
    }
    let tcp = ip + ihl;
    if frame.len() < tcp + 20 {
        return Err(OffloadError::NotTcpV4);
    }
    let doff = usize::from(frame[tcp + 12] >> 4) * 4;
    let payload = tcp + doff;
    if doff < 20 || frame.len() < payload {
        return Err(OffloadError::NotTcpV4);
    }
    Ok((ip, tcp, payload))
}

/// TCP segmentation (what a NIC's TSO does): each segment the headers of `frame` with
/// the IP length, identification and checksum and the TCP sequence number, flags and
/// checksum made right for its share of the payload.
fn segment(
    frame: &[u8],
    mss: usize,
    scratch: &mut [u8; MAX_FRAME],
    mut out: impl FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    let (ip, tcp, hdrs) = tcp4_headers(frame)?;
    if mss == 0 || hdrs + mss > MAX_FRAME {
        return Err(OffloadError::BadSegmentSize);
    }
    let payload = &frame[hdrs..];
    let count = payload.len().div_ceil(mss).max(1);
    let id0 = be16(frame, ip + 4);
    let seq0 = u32::from_be_bytes([
        frame[tcp + 4],
        frame[tcp + 5],
        frame[tcp + 6],
        frame[tcp + 7],
    ]);
    let flags0 = frame[tcp + 13];
    // The pseudo header without its length: source, destination, protocol.
    let pseudo = sum_words(&frame[ip + 12..ip + 20], u64::from(IPPROTO_TCP));
    for i in 0..count {
        let chunk = payload
            .get(i * mss..payload.len().min((i + 1) * mss))
            .unwrap_or(&[]);
        let len = hdrs + chunk.len();
        let seg = &mut scratch[..len];
        seg[..hdrs].copy_from_slice(&frame[..hdrs]);
        seg[hdrs..].copy_from_slice(chunk);
        // IPv4: total length, identification (one more per segment), checksum.
        put16(seg, ip + 2, (len - ip) as u16);
        put16(seg, ip + 4, id0.wrapping_add(i as u16));
        put16(seg, ip + 10, 0);
        let c = fold(sum_words(&seg[ip..tcp], 0));
        put16(seg, ip + 10, c);
        // TCP: sequence number; FIN and PSH only on the last segment, CWR only on the
        // first; checksum over the pseudo header, the TCP header and the payload.
        let seq = seq0.wrapping_add((i * mss) as u32);
        seg[tcp + 4..tcp + 8].copy_from_slice(&seq.to_be_bytes());
        let mut flags = flags0;
        if i + 1 < count {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            flags &= !TCP_CWR;
        }
        seg[tcp + 13] = flags;
        put16(seg, tcp + 16, 0);
        let c = fold(sum_words(&seg[tcp..], pseudo + (len - tcp) as u64));
        put16(seg, tcp + 16, c);
        out(seg);
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// A TCP/IPv4 frame with `payload` bytes (pattern), checksums left as garbage.
    fn tcp_frame(payload: usize, flags: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 32 + payload];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = 14;
        f[ip] = 0x45;
        f[ip + 6] = 0x40; // DF
        f[ip + 8] = 64;
        f[ip + 9] = 6;
        f[ip + 4..ip + 6].copy_from_slice(&0xfffeu16.to_be_bytes());
        f[ip + 10..ip + 12].copy_from_slice(&[0xde, 0xad]);
        f[ip + 12..ip + 16].copy_from_slice(&[10, 0, 2, 15]);
        f[ip + 16..ip + 20].copy_from_slice(&[10, 0, 2, 2]);
        let tcp = ip + 20;
        f[tcp..tcp + 2].copy_from_slice(&40000u16.to_be_bytes());
        f[tcp + 2..tcp + 4].copy_from_slice(&5001u16.to_be_bytes());
        f[tcp + 4..tcp + 8].copy_from_slice(&0xffff_f000u32.to_be_bytes());
        f[tcp + 12] = 8 << 4; // 32 bytes: 12 of options
        f[tcp + 13] = flags;
        f[tcp + 16..tcp + 18].copy_from_slice(&[0xbe, 0xef]);
        for (i, b) in f[tcp + 32..].iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        f
    }

    /// Checks a segment the way a receiver does: the IPv4 header sums to 0xffff, and so
    /// do the pseudo header, TCP header and payload.
    fn checksums_ok(f: &[u8]) -> bool {
        let ip = 14;
        let ihl = usize::from(f[ip] & 0xf) * 4;
        let tot = usize::from(be16(f, ip + 2));
        let ip_ok = fold(sum_words(&f[ip..ip + ihl], 0)) == 0;
        let tcp_len = tot - ihl;
        let pseudo = sum_words(&f[ip + 12..ip + 20], 6 + tcp_len as u64);
        let tcp_ok = fold(sum_words(&f[ip + ihl..ip + tot], pseudo)) == 0;
        ip_ok && tcp_ok && f.len() == ip + tot
    }

    #[test]
    fn sums_match_the_rfc_1071_example_and_odd_lengths() {
        // RFC 1071 section 3: 0001 f203 f4f5 f6f7 sums to 0xddf2 (checksum 0x220d).
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_words(&d, 0)), !0xddf2);
        // Any split into 16-bit words gives the same as one 16-bit word at a time.
        let d: Vec<u8> = (0..1001u32).map(|i| (i * 31 + 7) as u8).collect();
        let mut by16 = 0u64;
        for p in d.chunks(2) {
            by16 += u64::from(p[0]) << 8 | u64::from(*p.get(1).unwrap_or(&0));
        }
        assert_eq!(fold(sum_words(&d, 0)), fold(by16));
    }

    #[test]
    fn segmentation_cuts_the_payload_and_makes_each_header_right() {
        let payload = 4000;
        let f = tcp_frame(payload, TCP_PSH | TCP_FIN | TCP_CWR | 0x10);
        let mut frame = f.clone();
        let mut scratch = [0u8; MAX_FRAME];
        let mut segs: Vec<Vec<u8>> = Vec::new();
        let off = TxOffload {
            csum: Some((34, 16)),
            tcp4_mss: Some(1448),
        };
        let n = resolve(&mut frame, off, &mut scratch, |s| segs.push(s.to_vec())).unwrap();
        assert_eq!(n, 3);
        let mut data = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            assert!(checksums_ok(s), "segment {i}");
            assert!(s.len() <= MAX_FRAME);
            let tcp = 34;
            let seq = u32::from_be_bytes([s[tcp + 4], s[tcp + 5], s[tcp + 6], s[tcp + 7]]);
            assert_eq!(seq, 0xffff_f000u32.wrapping_add(1448 * i as u32), "wraps");
            assert_eq!(be16(s, 18), 0xfffeu16.wrapping_add(i as u16));
            let flags = s[tcp + 13];
            assert_eq!(flags & (TCP_PSH | TCP_FIN) != 0, i == 2);
            assert_eq!(flags & TCP_CWR != 0, i == 0);
            assert_eq!(flags & 0x10, 0x10, "ACK stays");
            assert_eq!(s[..14], f[..14]);
            assert_eq!(
                s[tcp + 8..tcp + 13],
                f[tcp + 8..tcp + 13],
                "ack number, offset"
            );
            assert_eq!(s[tcp + 20..tcp + 32], f[tcp + 20..tcp + 32], "options");
            data.extend_from_slice(&s[tcp + 32..]);
        }
        assert_eq!(data, f[66..]);
        assert_eq!(segs[2].len(), 66 + 4000 - 2 * 1448);
    }

    #[test]
    fn a_checksum_is_filled_in_where_the_guest_asked() {
        let mut f = tcp_frame(100, 0x18);
        // What Linux leaves there: the pseudo header's sum (with the length), folded, not
        // complemented.
        let tcp_len = f.len() - 34;
        let pseudo = sum_words(&f[26..34], 6 + tcp_len as u64);
        let mut p = fold(pseudo);
        p = !p;
        put16(&mut f, 34 + 16, p);
        let ip_len = (f.len() - 14) as u16;
        put16(&mut f, 16, ip_len);
        put16(&mut f, 24, 0);
        let c = fold(sum_words(&f[14..34], 0));
        put16(&mut f, 24, c);
        let mut scratch = [0u8; MAX_FRAME];
        let mut out = Vec::new();
        let off = TxOffload {
            csum: Some((34, 16)),
            tcp4_mss: None,
        };
        assert_eq!(
            resolve(&mut f, off, &mut scratch, |s| out = s.to_vec()),
            Ok(1)
        );
        assert!(checksums_ok(&out));
    }

    #[test]
    fn what_the_guest_gets_wrong_is_refused_without_sending() {
        let mut scratch = [0u8; MAX_FRAME];
        let sent = core::cell::Cell::new(0);
        let mut run = |f: &mut Vec<u8>, off: TxOffload| {
            resolve(f, off, &mut scratch, |_| sent.set(sent.get() + 1))
        };
        let csum = |s, o| TxOffload {
            csum: Some((s, o)),
            tcp4_mss: None,
        };
        let tso = |m| TxOffload {
            csum: None,
            tcp4_mss: Some(m),
        };
        let mut f = tcp_frame(100, 0);
        let len = f.len() as u16;
        assert_eq!(
            run(&mut f, csum(len, 0)),
            Err(OffloadError::BadChecksumPosition)
        );
        assert_eq!(
            run(&mut f, csum(len - 1, 0)),
            Err(OffloadError::BadChecksumPosition)
        );
        assert_eq!(
            run(&mut f, csum(60, u16::MAX)),
            Err(OffloadError::BadChecksumPosition)
        );
        assert_eq!(run(&mut f, tso(0)), Err(OffloadError::BadSegmentSize));
        assert_eq!(run(&mut f, tso(1500)), Err(OffloadError::BadSegmentSize));
        // Not IPv4, a fragment, not TCP, headers cut short, a bad data offset.
        for (at, v) in [(12, 0x86), (20, 0x20), (23, 17), (14, 0x44), (46, 0x20)] {
            let mut g = tcp_frame(100, 0);
            g[at] = v;
            assert_eq!(
                run(&mut g, tso(1000)),
                Err(OffloadError::NotTcpV4),
                "byte {at}"
            );
        }
        let mut g = tcp_frame(0, 0);
        g.truncate(50);
        assert_eq!(run(&mut g, tso(1000)), Err(OffloadError::NotTcpV4));
        let mut big = tcp_frame(2000, 0);
        assert_eq!(run(&mut big, csum(34, 16)), Err(OffloadError::TooBig));
        let mut huge = vec![0u8; MAX_GSO_FRAME + 1];
        assert_eq!(run(&mut huge, tso(1000)), Err(OffloadError::TooBig));
        assert_eq!(sent.get(), 0);
        // Headers only: one segment.
        let mut g = tcp_frame(0, 0x10);
        assert_eq!(run(&mut g, tso(1000)), Ok(1));
    }
}
