//! `netbench`: the network guests' tool for the networking scenarios and the network rows
//! of `cargo xtask bench`. Static aarch64 musl, standard library only.
//!
//! ```text
//! netbench send ADDR:PORT MIB     connect, send an 8-byte length and MIB MiB of a pattern,
//!                                 wait for the receiver's `ok BYTES SUM` and check both
//! netbench recv PORT              accept one connection on PORT, receive, answer `ok BYTES SUM`
//! netbench spoof IFACE MAC COUNT  send COUNT raw frames with source MAC (another VM's) and
//!                                 COUNT with this interface's own MAC, then an end frame
//! netbench sniff IFACE SECONDS    count those frames arriving on IFACE, by kind, until the
//!                                 end frame or SECONDS pass
//! netbench wait PORT              accept one connection on PORT and read it to its end (a
//!                                 go signal from another guest: `echo go | nc ADDR PORT`)
//! ```
//!
//! Lines printed (MB is 10^6 bytes; times from `CLOCK_MONOTONIC`, i.e. guest time):
//!
//! ```text
//! [netbench] send MBps=… bytes=… ns=… sum=… to=ADDR:PORT
//! [netbench] recv MBps=… bytes=… ns=… sum=… from=ADDR:PORT
//! [netbench] spoof sent spoofed=COUNT own=COUNT src=MAC own_mac=MAC iface=IFACE
//! [netbench] sniff own=N spoofed=N end=yes|no
//! [netbench] wait got=N bytes from=ADDR:PORT
//! ```
//!
//! `SUM` is the wrapping sum of the stream's little-endian 64-bit words: the receiver
//! computes it over what arrived, the sender from what it sent, and `send` fails unless the
//! receiver's byte count and sum are its own. On any error the program prints
//! `[netbench] error: …` and exits with status 1.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Bytes of one pattern block; the stream is whole blocks, each stamped with its index.
const BLOCK: usize = 64 * 1024;
/// Ethertype of the raw frames (IEEE 802 local experimental ethertype 1).
const ETHERTYPE: u16 = 0x88b5;
/// Payload tags of the raw frames.
const TAG_OWN: &[u8] = b"NETBENCH-OWN";
const TAG_SPOOF: &[u8] = b"NETBENCH-SPOOF";
const TAG_END: &[u8] = b"NETBENCH-END";

extern "C" {
    fn socket(domain: i32, ty: i32, protocol: i32) -> i32;
    fn bind(fd: i32, addr: *const SockaddrLl, len: u32) -> i32;
    fn setsockopt(fd: i32, level: i32, name: i32, value: *const Timeval, len: u32) -> i32;
    fn if_nametoindex(name: *const u8) -> u32;
}

/// `struct sockaddr_ll` (`linux/if_packet.h`).
#[repr(C)]
struct SockaddrLl {
    family: u16,
    protocol: u16,
    ifindex: i32,
    hatype: u16,
    pkttype: u8,
    halen: u8,
    addr: [u8; 8],
}

/// `struct timeval` on a 64-bit Linux.
#[repr(C)]
struct Timeval {
    sec: i64,
    usec: i64,
}

const AF_PACKET: i32 = 17;
const SOCK_RAW: i32 = 3;
const SOL_SOCKET: i32 = 1;
/// `SO_RCVTIMEO` (asm-generic, which arm64 uses).
const SO_RCVTIMEO: i32 = 20;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = match args.as_slice() {
        ["send", to, mib] => num(mib).and_then(|m| send(to, m)),
        ["recv", port] => num(port).and_then(|p| recv(p as u16)),
        ["spoof", iface, mac, count] => {
            parse_mac(mac).and_then(|m| num(count).and_then(|c| spoof(iface, m, c)))
        }
        ["sniff", iface, secs] => num(secs).and_then(|s| sniff(iface, s)),
        ["wait", port] => num(port).and_then(|p| wait(p as u16)),
        _ => Err("usage: netbench send ADDR:PORT MIB | recv PORT | spoof IFACE MAC COUNT | sniff IFACE SECONDS | wait PORT".into()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("[netbench] error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn num(s: &str) -> Result<u64, String> {
    s.parse().map_err(|_| format!("`{s}` is not a number"))
}

/// Block `index` of the stream: a fixed xorshift pattern with the index in its first word.
fn block(index: u64, pattern: &[u8]) -> Vec<u8> {
    let mut b = pattern.to_vec();
    b[..8].copy_from_slice(&index.to_le_bytes());
    b
}

/// The fixed pattern every block starts from.
fn pattern() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut p = Vec::with_capacity(BLOCK);
    while p.len() < BLOCK {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p.extend_from_slice(&x.to_le_bytes());
    }
    p
}

/// Wrapping sum of the little-endian 64-bit words of `data` (length a multiple of 8).
fn word_sum(data: &[u8]) -> u64 {
    data.chunks_exact(8).fold(0u64, |s, w| {
        s.wrapping_add(u64::from_le_bytes(w.try_into().unwrap_or([0; 8])))
    })
}

fn mbps(bytes: u64, ns: u128) -> f64 {
    bytes as f64 / (ns.max(1) as f64 / 1e9) / 1e6
}

fn send(to: &str, mib: u64) -> Result<(), String> {
    let blocks = mib * (1 << 20) / BLOCK as u64;
    let bytes = blocks * BLOCK as u64;
    let pat = pattern();
    let rest = word_sum(&pat[8..]);
    // Every block: the pattern's other words plus its index.
    let sum = (0..blocks).fold(0u64, |s, i| s.wrapping_add(rest).wrapping_add(i));
    let mut buf = block(0, &pat);
    let t0 = Instant::now();
    let mut s = TcpStream::connect(to).map_err(|e| format!("connect {to}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.write_all(&bytes.to_le_bytes())
        .map_err(|e| format!("send to {to}: {e}"))?;
    for i in 0..blocks {
        buf[..8].copy_from_slice(&i.to_le_bytes());
        s.write_all(&buf)
            .map_err(|e| format!("send to {to} at block {i}: {e}"))?;
    }
    s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
    let mut reply = String::new();
    BufReader::new(&s)
        .read_line(&mut reply)
        .map_err(|e| format!("reply from {to}: {e}"))?;
    let ns = t0.elapsed().as_nanos();
    let want = format!("ok {bytes} {sum}");
    if reply.trim() != want {
        return Err(format!(
            "receiver at {to} answered `{}`, want `{want}`",
            reply.trim()
        ));
    }
    println!(
        "[netbench] send MBps={:.2} bytes={bytes} ns={ns} sum={sum} to={to}",
        mbps(bytes, ns)
    );
    Ok(())
}

fn recv(port: u16) -> Result<(), String> {
    let l = TcpListener::bind(("0.0.0.0", port)).map_err(|e| format!("listen {port}: {e}"))?;
    println!("[netbench] recv listening port={port}");
    let (mut s, from) = l.accept().map_err(|e| format!("accept: {e}"))?;
    let t0 = Instant::now();
    let mut len = [0u8; 8];
    s.read_exact(&mut len)
        .map_err(|e| format!("length from {from}: {e}"))?;
    let bytes = u64::from_le_bytes(len);
    let mut buf = vec![0u8; BLOCK];
    let (mut got, mut sum, mut carry) = (0u64, 0u64, Vec::new());
    while got < bytes {
        let want = (bytes - got).min(BLOCK as u64) as usize;
        let n = s
            .read(&mut buf[..want])
            .map_err(|e| format!("receive from {from}: {e}"))?;
        if n == 0 {
            return Err(format!("{from} closed after {got} of {bytes} bytes"));
        }
        // Words may straddle reads: keep a partial word for the next one.
        carry.extend_from_slice(&buf[..n]);
        let whole = carry.len() / 8 * 8;
        sum = sum.wrapping_add(word_sum(&carry[..whole]));
        carry.drain(..whole);
        got += n as u64;
    }
    let ns = t0.elapsed().as_nanos();
    s.write_all(format!("ok {got} {sum}\n").as_bytes())
        .map_err(|e| format!("reply to {from}: {e}"))?;
    println!(
        "[netbench] recv MBps={:.2} bytes={got} ns={ns} sum={sum} from={from}",
        mbps(got, ns)
    );
    Ok(())
}

fn wait(port: u16) -> Result<(), String> {
    let l = TcpListener::bind(("0.0.0.0", port)).map_err(|e| format!("listen {port}: {e}"))?;
    let (mut s, from) = l.accept().map_err(|e| format!("accept: {e}"))?;
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .map_err(|e| format!("receive from {from}: {e}"))?;
    println!("[netbench] wait got={} bytes from={from}", got.len());
    Ok(())
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("`{s}` is not a MAC address"))?;
    parts
        .try_into()
        .map_err(|_| format!("`{s}` is not a MAC address"))
}

fn show_mac(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A raw packet socket bound to `iface` for [`ETHERTYPE`] frames, as a `File` (read is one
/// frame in, write one frame out).
fn packet_socket(iface: &str) -> Result<File, String> {
    let proto = ETHERTYPE.to_be();
    let name = format!("{iface}\0");
    // SAFETY: plain libc calls with valid pointers to local, correctly laid-out values;
    // the fd is owned by the returned File.
    unsafe {
        let ifindex = if_nametoindex(name.as_ptr());
        if ifindex == 0 {
            return Err(format!("no interface {iface}"));
        }
        let fd = socket(AF_PACKET, SOCK_RAW, i32::from(proto));
        if fd < 0 {
            return Err(format!(
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            ));
        }
        let file = File::from_raw_fd(fd);
        let addr = SockaddrLl {
            family: AF_PACKET as u16,
            protocol: proto,
            ifindex: ifindex as i32,
            hatype: 0,
            pkttype: 0,
            halen: 0,
            addr: [0; 8],
        };
        if bind(fd, &addr, std::mem::size_of::<SockaddrLl>() as u32) != 0 {
            return Err(format!(
                "bind to {iface}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(file)
    }
}

fn own_mac(iface: &str) -> Result<[u8; 6], String> {
    let path = format!("/sys/class/net/{iface}/address");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    parse_mac(text.trim())
}

/// A broadcast frame from `src` with `tag` and the sequence number `n` as payload (padded
/// to Ethernet's 60-byte minimum).
fn frame(src: &[u8; 6], tag: &[u8], n: u64) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(src);
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    f.extend_from_slice(tag);
    f.extend_from_slice(format!(" {n}").as_bytes());
    f.resize(f.len().max(60), 0);
    f
}

fn spoof(iface: &str, other: [u8; 6], count: u64) -> Result<(), String> {
    let mine = own_mac(iface)?;
    if mine == other {
        return Err(format!("{} is {iface}'s own MAC", show_mac(&other)));
    }
    let mut s = packet_socket(iface)?;
    for n in 0..count {
        // Interleaved, so a switch that dropped by rate or time would not tell them apart.
        s.write_all(&frame(&other, TAG_SPOOF, n))
            .map_err(|e| format!("send spoofed frame {n}: {e}"))?;
        s.write_all(&frame(&mine, TAG_OWN, n))
            .map_err(|e| format!("send own frame {n}: {e}"))?;
        std::thread::sleep(Duration::from_millis(5));
    }
    // The end marker, a few times: a lost one would only cost the sniffer its timeout.
    for n in 0..3 {
        s.write_all(&frame(&mine, TAG_END, n))
            .map_err(|e| format!("send end frame: {e}"))?;
    }
    println!(
        "[netbench] spoof sent spoofed={count} own={count} src={} own_mac={} iface={iface}",
        show_mac(&other),
        show_mac(&mine)
    );
    Ok(())
}

fn sniff(iface: &str, secs: u64) -> Result<(), String> {
    let mut s = packet_socket(iface)?;
    let tv = Timeval { sec: 0, usec: 200_000 };
    // SAFETY: a valid fd and a pointer to a local timeval of the size given.
    let r = unsafe {
        setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&s),
            SOL_SOCKET,
            SO_RCVTIMEO,
            &tv,
            std::mem::size_of::<Timeval>() as u32,
        )
    };
    if r != 0 {
        return Err(format!("SO_RCVTIMEO: {}", std::io::Error::last_os_error()));
    }
    println!("[netbench] sniff listening iface={iface}");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut own, mut spoofed, mut end) = (0u64, 0u64, false);
    let mut buf = [0u8; 2048];
    while !end && Instant::now() < deadline {
        let n = match s.read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(format!("receive on {iface}: {e}")),
        };
        let payload = buf.get(14..n).unwrap_or(&[]);
        if payload.starts_with(TAG_SPOOF) {
            spoofed += 1;
        } else if payload.starts_with(TAG_OWN) {
            own += 1;
        } else if payload.starts_with(TAG_END) {
            end = true;
        }
    }
    println!(
        "[netbench] sniff own={own} spoofed={spoofed} end={}",
        if end { "yes" } else { "no" }
    );
    Ok(())
}
