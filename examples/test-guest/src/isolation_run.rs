//! `secret` and `scan` modes on the target: write the secret pattern over free RAM and stay up,
//! or look for it in all of RAM and probe outside RAM (the pure parts are in `isolation.rs`).

use crate::checks::{self, Probe};
use crate::dt::{Platform, Region};
use crate::gic::Gic;
use crate::isolation::{self, PROBES};
use crate::{println, spec};

/// How long the secret VM stays up after writing, so that a scanner runs while it exists.
const SECRET_ALIVE_MS: u64 = 3000;
/// How long the scanner waits before reading, so that the secret VM has written.
const SCAN_DELAY_MS: u64 = 500;

extern "C" {
    /// First byte of the image (`image.ld`).
    static __image_start: u8;
    /// One past the image's `.bss` and stacks (`image.ld`).
    static __image_end: u8;
}

/// The guest's own image, header to the end of its stacks.
fn image() -> Region {
    let start = (&raw const __image_start) as u64;
    let end = (&raw const __image_end) as u64;
    Region {
        base: start,
        size: end - start,
    }
}

/// `secret`: fills every word from the image end to `DTB_RESERVE` before RAM end with
/// `PATTERN ^ address`, sleeps `SECRET_ALIVE_MS`, and returns (the caller powers off).
pub fn secret(platform: &Platform, gic: &Gic) {
    if !write_secret(platform) {
        return;
    }
    let deadline = checks::counter() + checks::ticks(SECRET_ALIVE_MS);
    checks::sleep_until(gic, platform.vtimer_intid, deadline, || false);
    println!("secret: done");
}

/// Fills every word from the image end to `DTB_RESERVE` before RAM end with
/// `PATTERN ^ address`; false (after a `FAIL` line) if there is no such RAM.
pub fn write_secret(platform: &Platform) -> bool {
    let Some(range) = isolation::secret_range(platform.ram, image().end()) else {
        println!(
            "secret: FAIL no RAM between the image end {:#x} and the DTB reserve: give the VM more RAM",
            image().end()
        );
        return false;
    };
    let mut addr = range.base;
    while addr < range.end() {
        // SAFETY: (1) `addr` is 8-byte aligned and inside RAM, past the image, its `.bss` and
        // stacks and before the DTB's 2 MiB (`secret_range`); (2) no Rust object lives there
        // and nothing else in the guest reads it, so the store aliases nothing.
        unsafe { core::ptr::write_volatile(addr as *mut u64, isolation::secret_word(addr)) };
        addr += 8;
    }
    println!("secret: written {} MiB", range.size >> 20);
    true
}

/// The first word of a NUMA marker: "NUMAMARK" in memory order.
pub const NUMA_MARK: u64 = u64::from_le_bytes(*b"NUMAMARK");
/// Bytes of RAM the marker is written over.
const NUMA_MARK_BYTES: u64 = 1 << 20;

/// `numa-mark`: writes `NUMA_MARK` and a value read now (the counter) as 16-byte pairs over
/// the first MiB of free RAM and prints the value; the host looks for the pair in the
/// backing file of each NUMA node.
pub fn numa_mark(platform: &Platform) {
    let Some(range) =
        isolation::secret_range(platform.ram, image().end()).filter(|r| r.size >= NUMA_MARK_BYTES)
    else {
        println!("numa-mark: FAIL less than 1 MiB of free RAM: give the VM more RAM");
        return;
    };
    let value = checks::counter();
    let mut addr = range.base;
    let mut written = 0u64;
    while addr + 16 <= range.base + NUMA_MARK_BYTES {
        // SAFETY: (1) `addr` and `addr + 8` are 8-byte aligned RAM of this VM, past the image,
        // its `.bss` and stacks and before the DTB reserve (`secret_range`); (2) no Rust
        // object lives there and nothing else in the guest reads it.
        unsafe {
            core::ptr::write_volatile(addr as *mut u64, NUMA_MARK);
            core::ptr::write_volatile((addr + 8) as *mut u64, value);
        }
        addr += 16;
        written += 1;
    }
    println!(
        "numa-mark: value={value:#018x} written {written} times at {:#x}",
        range.base
    );
}

/// Words read and secret words found by `scan_range`.
#[derive(Clone, Copy, Debug, Default)]
struct Found {
    words: u64,
    matches: u64,
    /// Address and value of the first secret word.
    first_match: Option<(u64, u64)>,
}

/// Reads every 8-byte word of `[start, end)` (both 8-byte aligned, inside RAM).
fn scan_range(start: u64, end: u64, found: &mut Found) {
    let mut addr = start;
    while addr < end {
        // SAFETY: `addr` is 8-byte aligned RAM of this VM (the caller's range); reading it has
        // no side effect and creates no reference.
        let value = unsafe { core::ptr::read_volatile(addr as *const u64) };
        found.words += 1;
        if isolation::is_secret_word(value) {
            found.matches += 1;
            found.first_match.get_or_insert((addr, value));
        }
        addr += 8;
    }
}

/// `scan`: waits `SCAN_DELAY_MS`, reads all RAM outside its own image for the secret, probes
/// `PROBES` addresses outside RAM and device windows (each must raise a data abort), prints the
/// counts and `PASS` or `FAIL`, and returns (the caller powers off).
pub fn scan(platform: &Platform, gic: &Gic) {
    let deadline = checks::counter() + checks::ticks(SCAN_DELAY_MS);
    checks::sleep_until(gic, platform.vtimer_intid, deadline, || false);

    let ram = platform.ram;
    let image = image();
    let mut found = Found::default();
    let below_end = image.base.clamp(ram.base, ram.end()) & !7;
    scan_range(ram.base.next_multiple_of(8), below_end, &mut found);
    let above_start = image.end().clamp(ram.base, ram.end()).next_multiple_of(8);
    scan_range(above_start, ram.end() & !7, &mut found);

    let (windows, window_count) = isolation::device_windows(platform);
    let (probes, probe_count) = isolation::probe_addresses(ram, &windows[..window_count]);
    let mut aborted = 0_usize;
    let mut first_leak: Option<(u64, Probe)> = None;
    for &addr in &probes[..probe_count] {
        let outcome = checks::probe(addr);
        match outcome {
            Probe::Exception { esr, .. } if spec::esr_ec(esr) == spec::EC_DATA_ABORT_SAME_EL => {
                aborted += 1
            }
            _ => {
                first_leak.get_or_insert((addr, outcome));
            }
        }
    }

    println!(
        "scan: words={} matches={} probes={} aborted={}",
        found.words, found.matches, probe_count, aborted
    );
    if found.matches == 0 && aborted == probe_count && probe_count == PROBES {
        println!("scan: PASS");
        return;
    }
    if let Some((addr, value)) = found.first_match {
        println!(
            "scan: FAIL {} word(s) of the secret VM's pattern in this VM's RAM, first at {addr:#x} (value {value:#x}): its pages are shared or were not scrubbed",
            found.matches
        );
    }
    if let Some((addr, outcome)) = first_leak {
        println!(
            "scan: FAIL {} of {probe_count} probe(s) outside RAM did not raise a data abort, first at {addr:#x}: {outcome:x?}; the address must not be mapped at stage 2",
            probe_count - aborted
        );
    }
    if probe_count < PROBES {
        println!("scan: FAIL only {probe_count} of {PROBES} probe addresses found outside RAM and the device windows");
    }
}
