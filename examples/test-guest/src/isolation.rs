//! `secret` / `scan` modes (isolation between VMs): the address-dependent secret pattern, the
//! test a scanner applies to every word it can read, and the addresses it probes outside RAM.
//!
//! VM A (`secret`) writes `PATTERN ^ address` into every 8-byte word of its free RAM; VM B
//! (`scan`) reads all of its own RAM and counts words that decode to an address of A's RAM,
//! then probes addresses outside its RAM and device windows, each of which must abort. A page
//! of A leaking into B (shared frame, stale page not scrubbed, stage-2 alias) shows up as a
//! match; because the pattern depends on the address, no word of B matches by accident.

use crate::dt::{GicInfo, Platform, Region};

/// The secret, XORed with each word's guest-physical address.
pub const PATTERN: u64 = 0x5EC2_E7C0_FFEE_D00D;
/// Where the secret VM's RAM can be: every VM's RAM starts at the same guest-physical base
/// (`hypervisor/src/vm/layout.rs` `RAM_BASE`); a scenario gives it at most 1 GiB.
pub const OTHER_VM_RAM: Region = Region {
    base: 0x4000_0000,
    size: 1 << 30,
};
/// The hypervisor puts the DTB in the last 2 MiB of RAM (`layout.rs` `DTB_OFFSET_FROM_END`):
/// the secret stops there.
pub const DTB_RESERVE: u64 = 2 << 20;
/// Addresses probed outside RAM by `scan`.
pub const PROBES: usize = 64;
/// How many of them lie below RAM (if RAM does not start at 0).
pub const PROBES_BELOW_RAM: usize = 8;
/// Probes sit on this grid (stage-2 block size of 2 MiB and more divide it).
const PROBE_GRAIN: u64 = 16 << 20;
/// Probes above RAM are spread up to here (further if RAM ends near it).
const PROBE_CEILING: u64 = 1 << 32;
/// Offset of a below-RAM probe inside its 16 MiB cell, away from the cell's first page where
/// device frames usually start.
const BELOW_OFFSET: u64 = 8 << 20;
/// Most device windows `device_windows` reports: GICD, 4 GICRs (or GICC), PL011, PL031.
pub const MAX_WINDOWS: usize = 7;

/// The word the secret VM writes at `addr`.
pub fn secret_word(addr: u64) -> u64 {
    PATTERN ^ addr
}

/// Whether `value`, read anywhere, is a secret word of the other VM: `value ^ PATTERN` is an
/// 8-byte-aligned address in `OTHER_VM_RAM`.
pub fn is_secret_word(value: u64) -> bool {
    let addr = value ^ PATTERN;
    addr % 8 == 0 && contains(OTHER_VM_RAM, addr)
}

/// Whether `addr` lies in `region`.
fn contains(region: Region, addr: u64) -> bool {
    addr >= region.base && addr < region.end()
}

/// The words the secret VM fills: from the end of its image (`.bss` and stacks included),
/// rounded up to 8 bytes, to `DTB_RESERVE` before the end of RAM; `None` if nothing is left.
pub fn secret_range(ram: Region, image_end: u64) -> Option<Region> {
    let start = image_end.checked_add(7)? & !7;
    let end = ram.end().checked_sub(DTB_RESERVE)? & !7;
    if start < ram.base || start >= end {
        return None;
    }
    Some(Region {
        base: start,
        size: end - start,
    })
}

/// The device frames the DTB gives the guest (GIC, PL011, a usable PL031): `scan` never
/// probes them (a read there is no isolation failure, and on a GICv2 `GICC_IAR` it would
/// acknowledge an interrupt).
pub fn device_windows(platform: &Platform) -> ([Region; MAX_WINDOWS], usize) {
    let mut windows = [Region { base: 0, size: 0 }; MAX_WINDOWS];
    let mut len = 0;
    let mut push = |r: Region| {
        if let Some(slot) = windows.get_mut(len) {
            *slot = r;
            len += 1;
        }
    };
    match platform.gic {
        GicInfo::V2 { gicd, gicc } => {
            push(gicd);
            push(gicc);
        }
        GicInfo::V3 {
            gicd,
            gicr,
            gicr_count,
        } => {
            push(gicd);
            gicr.iter().take(gicr_count).for_each(|&r| push(r));
        }
    }
    push(platform.uart);
    if let Some(Ok(rtc)) = platform.rtc {
        push(rtc.regs);
    }
    (windows, len)
}

/// `PROBES` addresses outside `ram` and every window, each on its own 16 MiB cell: up to
/// `PROBES_BELOW_RAM` spread below RAM, the rest spread from RAM's end to 4 GiB (past it, one
/// per 16 MiB, if RAM ends too close). Ascending; the count is short only if the address
/// space runs out.
pub fn probe_addresses(ram: Region, windows: &[Region]) -> ([u64; PROBES], usize) {
    let usable = |a: u64| !contains(ram, a) && !windows.iter().any(|&w| contains(w, a));
    let mut probes = [0_u64; PROBES];
    let mut len = 0;

    let below_cells = ram.base / PROBE_GRAIN;
    let below_step = (below_cells / PROBES_BELOW_RAM as u64).max(1);
    for addr in (0..below_cells)
        .step_by(below_step as usize)
        .map(|cell| cell * PROBE_GRAIN + BELOW_OFFSET)
        .filter(|&a| usable(a))
        .take(PROBES_BELOW_RAM)
    {
        probes[len] = addr;
        len += 1;
    }

    let Some(first) = ram.end().checked_next_multiple_of(PROBE_GRAIN) else {
        return (probes, len);
    };
    let wanted = (PROBES - len) as u64;
    let step = match PROBE_CEILING.checked_sub(first) {
        Some(span) => (span / wanted / PROBE_GRAIN).max(1) * PROBE_GRAIN,
        None => PROBE_GRAIN,
    };
    let mut addr = Some(first);
    while let (Some(a), true) = (addr, len < PROBES) {
        if usable(a) {
            probes[len] = a;
            len += 1;
        }
        addr = a.checked_add(step);
    }
    (probes, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM_1G: Region = Region {
        base: 0x4000_0000,
        size: 1 << 30,
    };

    fn qemu_virt_v3() -> Platform {
        let blob: &[u8] = include_bytes!("../fixtures/qemu-virt-gicv3.dtb");
        crate::dt::parse(&fdt::Fdt::new(blob).expect("DTB")).expect("parses")
    }

    #[test]
    fn the_secret_word_at_an_address_is_recognised() {
        for addr in [0x4000_0000, 0x4008_0000, 0x7fdf_fff8, 0x7fff_fff8] {
            assert!(is_secret_word(secret_word(addr)), "{addr:#x}");
        }
    }

    #[test]
    fn zero_and_all_ones_are_not_secret() {
        assert!(!is_secret_word(0));
        assert!(!is_secret_word(u64::MAX));
        assert!(!is_secret_word(PATTERN));
    }

    #[test]
    fn a_secret_word_for_an_address_outside_the_other_ram_is_not_counted() {
        assert!(!is_secret_word(secret_word(0x3fff_fff8)));
        assert!(!is_secret_word(secret_word(0x8000_0000)));
        assert!(!is_secret_word(secret_word(0x1_4000_0000)));
    }

    #[test]
    fn a_misaligned_address_is_not_counted() {
        assert!(!is_secret_word(secret_word(0x4000_0004)));
        assert!(!is_secret_word(secret_word(0x4000_0001)));
    }

    #[test]
    fn the_secret_fills_from_the_image_end_to_two_mib_before_ram_end() {
        let r = secret_range(RAM_1G, 0x4012_3455).expect("room");
        assert_eq!(r.base, 0x4012_3458);
        assert_eq!(r.end(), 0x8000_0000 - DTB_RESERVE);
    }

    #[test]
    fn no_secret_range_when_the_image_reaches_the_dtb() {
        assert_eq!(secret_range(RAM_1G, 0x7fe0_0000), None);
        assert_eq!(
            secret_range(
                Region {
                    base: 0x4000_0000,
                    size: 1 << 20
                },
                0x4008_0000
            ),
            None
        );
    }

    #[test]
    fn an_image_end_below_ram_gives_no_range() {
        assert_eq!(secret_range(RAM_1G, 0x1000), None);
    }

    #[test]
    fn windows_are_the_gic_uart_and_rtc_frames() {
        let p = qemu_virt_v3();
        let (w, len) = device_windows(&p);
        let w = &w[..len];
        assert!(w.contains(&p.uart));
        if let GicInfo::V3 { gicd, gicr, .. } = p.gic {
            assert!(w.contains(&gicd));
            assert!(w.contains(&gicr[0]));
        } else {
            panic!("fixture is GICv3");
        }
        let rtc = p.rtc.expect("pl031 in the fixture").expect("usable");
        assert!(w.contains(&rtc.regs));
        assert_eq!(len, 4);
    }

    #[test]
    fn there_are_64_distinct_ascending_probes() {
        let p = qemu_virt_v3();
        let (w, wl) = device_windows(&p);
        let (probes, len) = probe_addresses(p.ram, &w[..wl]);
        assert_eq!(len, PROBES);
        assert!(probes.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn no_probe_is_in_ram_or_a_device_window() {
        let p = qemu_virt_v3();
        let (w, wl) = device_windows(&p);
        let (probes, len) = probe_addresses(p.ram, &w[..wl]);
        for &a in &probes[..len] {
            assert!(!contains(p.ram, a), "{a:#x} in RAM");
            assert!(
                !w[..wl].iter().any(|&r| contains(r, a)),
                "{a:#x} in a window"
            );
            assert_eq!(a % 8, 0);
        }
    }

    #[test]
    fn eight_probes_lie_below_ram_and_the_rest_below_4_gib() {
        let (probes, len) = probe_addresses(RAM_1G, &[]);
        assert_eq!(len, PROBES);
        let below = probes.iter().filter(|&&a| a < RAM_1G.base).count();
        assert_eq!(below, PROBES_BELOW_RAM);
        assert!(probes.iter().all(|&a| a < PROBE_CEILING));
        assert_eq!(probes[PROBES_BELOW_RAM], 0x8000_0000);
    }

    #[test]
    fn a_window_over_a_probe_moves_it_to_the_next_cell() {
        let gicd = Region {
            base: 0x0800_0000,
            size: 0x100_0000,
        };
        let (probes, _) = probe_addresses(RAM_1G, &[gicd]);
        assert!(!probes.contains(&0x0880_0000));
        assert_eq!(probes[0], 0x0080_0000);
        assert_eq!(probes[1], 0x1080_0000);
    }

    #[test]
    fn ram_at_zero_ending_near_4_gib_still_gets_64_probes_above_it() {
        let ram = Region {
            base: 0,
            size: 0xff00_0000,
        };
        let (probes, len) = probe_addresses(ram, &[]);
        assert_eq!(len, PROBES);
        assert!(probes.iter().all(|&a| a >= ram.end()));
    }
}
