//! `iobench DEVICE SEQ_MIB RAND_OPS`: a block-device benchmark for the storage rows of
//! `cargo xtask bench`.
//!
//! Opens `DEVICE` with `O_DIRECT` (no page cache: every request reaches the device) and
//! times, with `CLOCK_MONOTONIC` (`std::time::Instant`), in this order:
//!
//! 1. sequential writes of 1 MiB blocks over the first `SEQ_MIB` MiB;
//! 2. sequential reads of the same blocks (each block's first word must be the stamp the
//!    write put there, so a read that did not reach the device is an error);
//! 3. `RAND_OPS` random 4 KiB writes, then `RAND_OPS` random 4 KiB reads, at 4 KiB-aligned
//!    offsets anywhere on the device drawn from a fixed-seed xorshift64* generator (the same
//!    offsets on every run).
//!
//! It prints one line with the four figures, then one with the raw nanoseconds:
//!
//! ```text
//! [iobench] seq-read MBps=… seq-write MBps=… rand-read IOPS=… rand-write IOPS=… dev=/dev/nvme0n1
//! [iobench] dev=/dev/nvme0n1 bytes=… seq_mib=… rand_ops=… seq_read_ns=… seq_write_ns=… rand_read_ns=… rand_write_ns=…
//! ```
//!
//! MB is 10^6 bytes. On any error it prints `[iobench] error: …` and exits with status 1,
//! so the figures line is missing and the benchmark that waits for it fails.
//!
//! The program writes to the device: give it a scratch disk.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::process::ExitCode;
use std::time::Instant;

/// `O_DIRECT` on arm64 Linux (`include/uapi/asm-generic/fcntl.h` is overridden by
/// `arch/arm64/include/uapi/asm/fcntl.h`: 0o200000).
#[cfg(target_arch = "aarch64")]
const O_DIRECT: i32 = 0o200000;
/// `O_DIRECT` elsewhere (x86 and most others: 0o40000), so the program also runs on a
/// development machine.
#[cfg(not(target_arch = "aarch64"))]
const O_DIRECT: i32 = 0o40000;

const SEQ_BLOCK: usize = 1 << 20;
const RAND_BLOCK: usize = 4096;
/// Buffer alignment: O_DIRECT needs the device's logical block size; a page covers all.
const ALIGN: usize = 4096;
/// Seed of the random offsets: fixed, so every run (bare or as a VM) touches the same blocks.
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// A zeroed, [`ALIGN`]-aligned buffer for O_DIRECT transfers.
struct Buf {
    ptr: *mut u8,
    layout: Layout,
}

impl Buf {
    fn new(len: usize) -> Result<Self, String> {
        let layout = Layout::from_size_align(len, ALIGN).map_err(|e| e.to_string())?;
        // SAFETY: `layout` has a non-zero size (callers pass block sizes).
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(format!("cannot allocate {len} bytes"));
        }
        Ok(Self { ptr, layout })
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` points to `layout.size()` initialised bytes owned by `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

/// xorshift64* (Vigna): small, fast, and the same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// `n` offsets of 4 KiB blocks spread over a device of `bytes` bytes.
fn random_offsets(bytes: u64, n: usize) -> Vec<u64> {
    let blocks = bytes / RAND_BLOCK as u64;
    let mut rng = Rng(SEED);
    (0..n)
        .map(|_| (rng.next() % blocks) * RAND_BLOCK as u64)
        .collect()
}

fn full_write(f: &File, buf: &[u8], at: u64) -> Result<(), String> {
    f.write_all_at(buf, at)
        .map_err(|e| format!("write of {} bytes at {at}: {e}", buf.len()))
}

fn full_read(f: &File, buf: &mut [u8], at: u64) -> Result<(), String> {
    f.read_exact_at(buf, at)
        .map_err(|e| format!("read of {} bytes at {at}: {e}", buf.len()))
}

fn per_second(count: f64, ns: u128) -> f64 {
    if ns == 0 {
        0.0
    } else {
        count * 1e9 / ns as f64
    }
}

fn run(dev: &str, seq_mib: u64, rand_ops: usize) -> Result<(), String> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(O_DIRECT)
        .open(dev)
        .map_err(|e| format!("open {dev} with O_DIRECT: {e}"))?;
    let bytes = f
        .seek(SeekFrom::End(0))
        .map_err(|e| format!("size of {dev}: {e}"))?;
    let seq_bytes = seq_mib * SEQ_BLOCK as u64;
    if seq_mib == 0 || rand_ops == 0 || seq_bytes > bytes || bytes < RAND_BLOCK as u64 {
        return Err(format!(
            "{dev} has {bytes} bytes: need SEQ_MIB ({seq_mib}) MiB and RAND_OPS ({rand_ops}) both > 0 and within it"
        ));
    }

    let mut big = Buf::new(SEQ_BLOCK)?;
    for (i, b) in big.bytes().iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31) ^ 0x5a;
    }
    let stamp = |i: u64| 0x696f_6265_6e63_6800 ^ i;
    let t = Instant::now();
    for i in 0..seq_mib {
        big.bytes()[..8].copy_from_slice(&stamp(i).to_le_bytes());
        full_write(&f, big.bytes(), i * SEQ_BLOCK as u64)?;
    }
    let seq_write_ns = t.elapsed().as_nanos();

    let t = Instant::now();
    for i in 0..seq_mib {
        full_read(&f, big.bytes(), i * SEQ_BLOCK as u64)?;
        let got = u64::from_le_bytes(big.bytes()[..8].try_into().unwrap_or_default());
        if got != stamp(i) {
            return Err(format!(
                "block {i} read back {got:#x}, written {:#x}: the read did not reach the device",
                stamp(i)
            ));
        }
    }
    let seq_read_ns = t.elapsed().as_nanos();

    let offsets = random_offsets(bytes, rand_ops);
    let mut small = Buf::new(RAND_BLOCK)?;
    small.bytes().fill(0xa5);
    let t = Instant::now();
    for &at in &offsets {
        full_write(&f, small.bytes(), at)?;
    }
    let rand_write_ns = t.elapsed().as_nanos();

    let t = Instant::now();
    for &at in &offsets {
        full_read(&f, small.bytes(), at)?;
    }
    let rand_read_ns = t.elapsed().as_nanos();

    let mb = seq_bytes as f64 / 1e6;
    println!(
        "[iobench] seq-read MBps={:.1} seq-write MBps={:.1} rand-read IOPS={:.0} rand-write IOPS={:.0} dev={dev}",
        per_second(mb, seq_read_ns),
        per_second(mb, seq_write_ns),
        per_second(rand_ops as f64, rand_read_ns),
        per_second(rand_ops as f64, rand_write_ns),
    );
    println!(
        "[iobench] dev={dev} bytes={bytes} seq_mib={seq_mib} rand_ops={rand_ops} seq_read_ns={seq_read_ns} seq_write_ns={seq_write_ns} rand_read_ns={rand_read_ns} rand_write_ns={rand_write_ns}"
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let parsed = match &args[..] {
        [_, dev, mib, ops] => mib
            .parse::<u64>()
            .ok()
            .zip(ops.parse::<usize>().ok())
            .map(|(m, o)| (dev.as_str(), m, o)),
        _ => None,
    };
    let Some((dev, seq_mib, rand_ops)) = parsed else {
        println!("[iobench] error: usage: iobench DEVICE SEQ_MIB RAND_OPS");
        return ExitCode::FAILURE;
    };
    match run(dev, seq_mib, rand_ops) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("[iobench] error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_aligned_within_the_device_and_repeat() {
        let a = random_offsets(64 << 20, 1000);
        assert_eq!(a, random_offsets(64 << 20, 1000));
        assert!(a
            .iter()
            .all(|&o| o % RAND_BLOCK as u64 == 0 && o + RAND_BLOCK as u64 <= 64 << 20));
        let distinct: std::collections::BTreeSet<_> = a.iter().collect();
        assert!(distinct.len() > 900, "{}", distinct.len());
    }
}
