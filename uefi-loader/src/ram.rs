//! Usable RAM from the UEFI memory map: the ranges handed to the hypervisor as `/memory`.
//!
//! RAM is what the firmware describes as write-back cacheable (`EFI_MEMORY_WB`, as Linux's
//! EFI stub also requires) and free once boot services are gone: `EfiConventionalMemory`,
//! `EfiBootServicesCode`/`Data` and `EfiLoaderCode`/`Data` (the loader's own allocations
//! among them, which the handoff DTB reserves). Everything else (reserved, runtime services
//! code and data, ACPI tables and NVS, MMIO, unusable, persistent, unaccepted memory) is
//! never listed.

use alloc::vec::Vec;

/// UEFI page size.
pub const PAGE: u64 = 4096;

/// `EfiLoaderCode`.
pub const LOADER_CODE: u32 = 1;
/// `EfiLoaderData`.
pub const LOADER_DATA: u32 = 2;
/// `EfiBootServicesCode`.
pub const BOOT_SERVICES_CODE: u32 = 3;
/// `EfiBootServicesData`.
pub const BOOT_SERVICES_DATA: u32 = 4;
/// `EfiConventionalMemory`.
pub const CONVENTIONAL: u32 = 7;
/// `EFI_MEMORY_WB`.
pub const ATTR_WB: u64 = 0x8;

/// One memory map descriptor, as far as it matters here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// `EFI_MEMORY_TYPE`.
    pub ty: u32,
    /// Physical start.
    pub start: u64,
    /// Number of 4 KiB pages.
    pub pages: u64,
    /// Attribute bits.
    pub attribute: u64,
}

/// Is memory of this type and attribute RAM that the hypervisor may use after boot
/// services?
pub fn usable(ty: u32, attribute: u64) -> bool {
    attribute & ATTR_WB != 0
        && matches!(
            ty,
            LOADER_CODE | LOADER_DATA | BOOT_SERVICES_CODE | BOOT_SERVICES_DATA | CONVENTIONAL
        )
}

/// The usable RAM of `map` as sorted, merged `(start, size)` ranges (adjacent and
/// overlapping descriptors joined; empty and overflowing ones dropped).
pub fn usable_ranges(map: impl IntoIterator<Item = Descriptor>) -> Vec<(u64, u64)> {
    let mut r: Vec<(u64, u64)> = map
        .into_iter()
        .filter(|d| usable(d.ty, d.attribute) && d.pages > 0)
        .filter_map(|d| {
            let size = d.pages.checked_mul(PAGE)?;
            d.start.checked_add(size)?;
            Some((d.start, size))
        })
        .collect();
    r.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(r.len());
    for (start, size) in r {
        match out.last_mut() {
            Some((s, len)) if start <= *s + *len => {
                *len = (*len).max(start + size - *s);
            }
            _ => out.push((start, size)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ty: u32, start: u64, pages: u64) -> Descriptor {
        Descriptor {
            ty,
            start,
            pages,
            attribute: ATTR_WB | 0xf,
        }
    }

    #[test]
    fn only_usable_types_are_ram_and_neighbours_merge() {
        let map = [
            d(CONVENTIONAL, 0x4000_0000, 0x100),
            d(LOADER_DATA, 0x4010_0000, 0x10),
            d(0, 0x4011_0000, 1), // reserved
            d(BOOT_SERVICES_DATA, 0x4011_1000, 0x2f),
            d(5, 0x4014_0000, 4),  // runtime services code
            d(6, 0x4014_4000, 4),  // runtime services data
            d(9, 0x4014_8000, 4),  // ACPI reclaim
            d(10, 0x4014_c000, 4), // ACPI NVS
            d(11, 0x0900_0000, 1), // MMIO
            d(CONVENTIONAL, 0x4015_0000, 0x10),
            d(BOOT_SERVICES_CODE, 0x4016_0000, 0x10),
            d(LOADER_CODE, 0x4017_0000, 0x10),
        ];
        assert_eq!(
            usable_ranges(map),
            [
                (0x4000_0000, 0x11_0000),
                (0x4011_1000, 0x2_f000),
                (0x4015_0000, 0x3_0000)
            ]
        );
    }

    #[test]
    fn memory_without_write_back_is_not_ram() {
        let mut x = d(CONVENTIONAL, 0x8000_0000, 16);
        x.attribute = 0x1; // UC only
        assert!(usable_ranges([x]).is_empty());
    }

    #[test]
    fn unsorted_and_overlapping_descriptors_merge_and_overflow_is_dropped() {
        let map = [
            d(CONVENTIONAL, 0x5000_0000, 0x10),
            d(CONVENTIONAL, 0x4000_0000, 0x20),
            d(CONVENTIONAL, 0x4001_0000, 0x20),
            d(CONVENTIONAL, u64::MAX - 0xfff, 2),
            d(CONVENTIONAL, 0x6000_0000, 0),
        ];
        assert_eq!(
            usable_ranges(map),
            [(0x4000_0000, 0x3_0000), (0x5000_0000, 0x1_0000)]
        );
    }
}
