//! Per-VM stage-2 translation tables (IPA -> PA), built with `aarch64-paging`.
//!
//! Configuration (Arm ARM D8, `VTCR_EL2`): 4 KiB granule, translation starting at level 1
//! with a single 4 KiB root table, so the IPA space is 39 bits (512 GiB, `T0SZ` = 25,
//! `SL0` = 0b01). A 40-bit IPA space would need two concatenated level-1 root tables,
//! which `aarch64-paging` 0.12 does not build; 512 GiB is far above any guest layout in
//! [`crate::vm::layout`].
//!
//! Guest RAM is mapped Normal write-back, inner shareable, read/write/execute; pass-through
//! device windows are Device-nGnRE, read/write, execute-never. Everything else stays
//! unmapped, so a guest access there takes a stage-2 fault to EL2 (MMIO emulation).
//!
//! Tables are allocated from the heap with `aarch64-paging`'s identity translation: the
//! hypervisor runs identity-mapped at EL2 (VA == PA), and host tests never hand the
//! tables to hardware.

use super::PAGE_SIZE;
use crate::types::{GuestPhysAddr, HostPhysAddr, VmId};
use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes};
use aarch64_paging::idmap::IdTranslation;
use aarch64_paging::paging::{Constraints, MemoryRegion, Stage2 as Stage2Regime};
use aarch64_paging::{MapError, Mapping};
use alloc::vec::Vec;

/// Root level of the tables.
pub const ROOT_LEVEL: usize = 1;
/// Bits of IPA space the tables translate.
pub const IPA_BITS: u32 = 39;
/// Size of the IPA space (512 GiB).
pub const IPA_SIZE: u64 = 1 << IPA_BITS;
/// Largest stage-2 VMID with 8-bit VMIDs (`VTCR_EL2.VS` = 0).
pub const MAX_VMID: u16 = 0xFF;

/// `VTCR_EL2.RES1` bit 31.
const VTCR_RES1: u64 = 1 << 31;
/// `VTCR_EL2.SL0` = 0b01: start at level 1 with a 4 KiB granule.
const VTCR_SL0_LEVEL1: u64 = 0b01 << 6;
/// `VTCR_EL2.IRGN0`/`ORGN0` = 0b01: table walks write-back read/write-allocate.
const VTCR_WALK_WB: u64 = (0b01 << 8) | (0b01 << 10);
/// `VTCR_EL2.SH0` = 0b11: table walks inner shareable.
const VTCR_SH0_INNER: u64 = 0b11 << 12;
/// `VTCR_EL2.PS` shift.
const VTCR_PS_SHIFT: u32 = 16;

/// Attributes of guest RAM: Normal inner/outer write-back, inner shareable, RW, executable.
pub const RAM_ATTRIBUTES: Stage2Attributes = Stage2Attributes::VALID
    .union(Stage2Attributes::ACCESS_FLAG)
    .union(Stage2Attributes::MEMATTR_NORMAL_INNER_WB)
    .union(Stage2Attributes::MEMATTR_NORMAL_OUTER_WB)
    .union(Stage2Attributes::SH_INNER)
    .union(Stage2Attributes::S2AP_ACCESS_RW);

/// Attributes of a pass-through device window: Device-nGnRE, RW, execute-never.
pub const DEVICE_ATTRIBUTES: Stage2Attributes = Stage2Attributes::VALID
    .union(Stage2Attributes::ACCESS_FLAG)
    .union(Stage2Attributes::MEMATTR_DEVICE_nGnRE)
    .union(Stage2Attributes::S2AP_ACCESS_RW)
    .union(Stage2Attributes::XN);

/// Errors building stage-2 tables.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Stage2Error {
    /// VMIDs are 8 bits wide.
    #[error("VM {vm} needs VMID {}, above the 8-bit maximum {MAX_VMID}: run fewer VMs", vm.0 + 1)]
    VmidOutOfRange {
        /// The VM.
        vm: VmId,
    },
    /// Mapping of zero bytes.
    #[error("stage-2 mapping at IPA {ipa} has size 0: give the region a size")]
    ZeroSize {
        /// IPA.
        ipa: GuestPhysAddr,
    },
    /// An address or size is not 4 KiB aligned.
    #[error("stage-2 mapping IPA {ipa} -> PA {pa}, size {size:#x} is not 4 KiB aligned: align base and size to 4 KiB")]
    Unaligned {
        /// IPA.
        ipa: GuestPhysAddr,
        /// PA.
        pa: HostPhysAddr,
        /// Size.
        size: u64,
    },
    /// The range does not fit in the IPA space (or wraps).
    #[error("stage-2 mapping at IPA {ipa}, size {size:#x} ends beyond the {IPA_BITS}-bit IPA space (or a 64-bit address wraps): move it below {IPA_SIZE:#x}")]
    OutOfRange {
        /// IPA.
        ipa: GuestPhysAddr,
        /// Size.
        size: u64,
    },
    /// The range overlaps an existing mapping.
    #[error("stage-2 mapping at IPA {ipa}, size {size:#x} overlaps the mapping at IPA {existing}, size {existing_size:#x}: fix the VM's memory layout")]
    Overlap {
        /// IPA.
        ipa: GuestPhysAddr,
        /// Size.
        size: u64,
        /// Existing mapping's IPA.
        existing: GuestPhysAddr,
        /// Existing mapping's size.
        existing_size: u64,
    },
    /// The change would need break-before-make on live tables.
    #[error("stage-2 change at {0} would break live mappings without break-before-make: stop the VM's vCPUs and mark the tables inactive first")]
    BreakBeforeMake(MemoryRegion),
    /// Another `aarch64-paging` error.
    #[error("stage-2 table update failed: {0}")]
    Paging(MapError),
    /// The CPU cannot output addresses as wide as the IPA space needs.
    #[error("ID_AA64MMFR0_EL1.PARange = {0} (< 40 bits) cannot back a {IPA_BITS}-bit IPA space")]
    PaRangeTooSmall(u8),
}

impl From<MapError> for Stage2Error {
    fn from(e: MapError) -> Self {
        match e {
            MapError::BreakBeforeMakeViolation(r) => Self::BreakBeforeMake(r),
            e => Self::Paging(e),
        }
    }
}

/// What a mapped region is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// Guest RAM.
    Ram,
    /// Pass-through device window.
    Device,
}

/// One mapped region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage2Region {
    /// First IPA.
    pub ipa: GuestPhysAddr,
    /// First PA.
    pub pa: HostPhysAddr,
    /// Bytes.
    pub size: u64,
    /// RAM or device.
    pub kind: RegionKind,
}

/// The stage-2 tables of one VM.
pub struct Stage2 {
    mapping: Mapping<IdTranslation<Stage2Attributes>, Stage2Regime>,
    vmid: u16,
    regions: Vec<Stage2Region>,
    /// Map with 4 KiB pages only, never 2 MiB or 1 GiB blocks.
    pages_only: bool,
}

impl core::fmt::Debug for Stage2 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Stage2")
            .field("vmid", &self.vmid)
            .field("regions", &self.regions)
            .field("pages_only", &self.pages_only)
            .finish()
    }
}

/// `VTCR_EL2` for these tables, given `ID_AA64MMFR0_EL1.PARange` (bits 3:0): `T0SZ` = 25,
/// `SL0` = level 1, 4 KiB granule (`TG0` = 0), write-back inner-shareable walks,
/// `PS` = PARange (capped at 48 bits: descriptors are built without 52-bit support),
/// 8-bit VMIDs.
pub fn vtcr_el2(pa_range: u8) -> Result<u64, Stage2Error> {
    let pa_range = pa_range & 0xF;
    if pa_range < 2 {
        return Err(Stage2Error::PaRangeTooSmall(pa_range));
    }
    let ps = u64::from(pa_range.min(0b101));
    Ok(VTCR_RES1
        | (ps << VTCR_PS_SHIFT)
        | VTCR_SH0_INNER
        | VTCR_WALK_WB
        | VTCR_SL0_LEVEL1
        | u64::from(64 - IPA_BITS))
}

impl Stage2 {
    /// Empty tables for `vm` (stage-2 VMID = `vm` + 1; VMID 0 is left to the host).
    pub fn new(vm: VmId) -> Result<Self, Stage2Error> {
        let vmid = u16::try_from(vm.0 + 1)
            .ok()
            .filter(|v| *v <= MAX_VMID)
            .ok_or(Stage2Error::VmidOutOfRange { vm })?;
        Ok(Self {
            mapping: Mapping::new(IdTranslation::new(), ROOT_LEVEL, Stage2Regime),
            vmid,
            regions: Vec::new(),
            pages_only: false,
        })
    }

    /// From now on, maps with 4 KiB pages only, never blocks: for a board whose KDL says
    /// `stage2 ram-mappings="pages"`. Blocks are what hardware wants (fewer TLB entries,
    /// shorter walks), but QEMU's TCG files every TLB entry of the guest under the larger
    /// of its two stages' sizes, so with blocks each by-address `TLBI` of the guest empties
    /// the guest's whole (emulated) TLB.
    pub fn use_pages_only(&mut self) {
        self.pages_only = true;
    }

    /// True after [`Self::use_pages_only`].
    pub fn pages_only(&self) -> bool {
        self.pages_only
    }

    /// Stage-2 VMID.
    pub fn vmid(&self) -> u16 {
        self.vmid
    }

    /// Value for `VTTBR_EL2`: VMID in 55:48, root table PA in 47:1.
    pub fn vttbr(&self) -> u64 {
        (u64::from(self.vmid) << 48) | self.root_pa().0
    }

    /// Physical address of the root table.
    pub fn root_pa(&self) -> HostPhysAddr {
        HostPhysAddr(self.mapping.root_address().0 as u64)
    }

    /// Regions mapped so far.
    pub fn regions(&self) -> &[Stage2Region] {
        &self.regions
    }

    /// Maps guest RAM `ipa..ipa+size` to `pa` (Normal write-back, RWX).
    pub fn map_ram(
        &mut self,
        ipa: GuestPhysAddr,
        pa: HostPhysAddr,
        size: u64,
    ) -> Result<(), Stage2Error> {
        self.map(ipa, pa, size, RegionKind::Ram, self.pages_only)
    }

    /// [`Self::map_ram`] with blocks wherever the range allows, even after
    /// [`Self::use_pages_only`]: a 2 MiB block needs no table of its own, when the heap
    /// cannot spare the 4 KiB its pages would.
    pub fn map_ram_in_blocks(
        &mut self,
        ipa: GuestPhysAddr,
        pa: HostPhysAddr,
        size: u64,
    ) -> Result<(), Stage2Error> {
        self.map(ipa, pa, size, RegionKind::Ram, false)
    }

    /// Maps a pass-through device window `ipa..ipa+size` to `pa` (Device-nGnRE, RW, XN).
    pub fn map_device(
        &mut self,
        ipa: GuestPhysAddr,
        pa: HostPhysAddr,
        size: u64,
    ) -> Result<(), Stage2Error> {
        self.map(ipa, pa, size, RegionKind::Device, self.pages_only)
    }

    fn map(
        &mut self,
        ipa: GuestPhysAddr,
        pa: HostPhysAddr,
        size: u64,
        kind: RegionKind,
        pages_only: bool,
    ) -> Result<(), Stage2Error> {
        if size == 0 {
            return Err(Stage2Error::ZeroSize { ipa });
        }
        if !(ipa.0 | pa.0 | size).is_multiple_of(PAGE_SIZE) {
            return Err(Stage2Error::Unaligned { ipa, pa, size });
        }
        let end = ipa
            .0
            .checked_add(size)
            .filter(|e| *e <= IPA_SIZE && pa.0.checked_add(size).is_some())
            .ok_or(Stage2Error::OutOfRange { ipa, size })?;
        if let Some(r) = self
            .regions
            .iter()
            .find(|r| ipa.0 < r.ipa.0 + r.size && r.ipa.0 < end)
        {
            return Err(Stage2Error::Overlap {
                ipa,
                size,
                existing: r.ipa,
                existing_size: r.size,
            });
        }
        let attrs = match kind {
            RegionKind::Ram => RAM_ATTRIBUTES,
            RegionKind::Device => DEVICE_ATTRIBUTES,
        };
        // IPA space is 39 bits, so these fit in usize on every supported host and target.
        let region = MemoryRegion::new(ipa.0 as usize, end as usize);
        self.mapping.map_range(
            &region,
            PhysicalAddress(pa.0 as usize),
            attrs,
            if pages_only {
                Constraints::NO_BLOCK_MAPPINGS
            } else {
                Constraints::empty()
            },
        )?;
        self.regions.push(Stage2Region {
            ipa,
            pa,
            size,
            kind,
        });
        Ok(())
    }

    /// Removes the mapping that starts at `ipa` (the whole region that `map_*` created).
    /// On live tables `aarch64-paging` performs the TLB maintenance.
    pub fn unmap(&mut self, ipa: GuestPhysAddr) -> Result<Stage2Region, Stage2Error> {
        let idx = self
            .regions
            .iter()
            .position(|r| r.ipa == ipa)
            .ok_or(Stage2Error::OutOfRange { ipa, size: 0 })?;
        let r = self.regions[idx];
        let region = MemoryRegion::new(r.ipa.0 as usize, (r.ipa.0 + r.size) as usize);
        self.mapping.map_range(
            &region,
            PhysicalAddress(0),
            Stage2Attributes::empty(),
            Constraints::empty(),
        )?;
        self.regions.swap_remove(idx);
        Ok(r)
    }

    /// Tells the tables they are now in `VTTBR_EL2` of some CPU: from then on, changes that
    /// need break-before-make are refused with [`Stage2Error::BreakBeforeMake`].
    pub fn mark_active(&self) {
        self.mapping.mark_active();
    }

    /// Tells the tables no CPU uses them any more (balances [`Self::mark_active`]).
    pub fn mark_inactive(&self) {
        self.mapping.mark_inactive();
    }

    /// Walks the tables: the PA and attributes `ipa` translates to, `None` if unmapped.
    pub fn translate(&self, ipa: GuestPhysAddr) -> Option<(HostPhysAddr, Stage2Attributes)> {
        self.translate_with_size(ipa)
            .map(|(pa, flags, _)| (pa, flags))
    }

    /// Like [`Self::translate`], plus the size of the page or block that maps `ipa`.
    pub fn translate_with_size(
        &self,
        ipa: GuestPhysAddr,
    ) -> Option<(HostPhysAddr, Stage2Attributes, u64)> {
        if ipa.0 >= IPA_SIZE {
            return None;
        }
        let page = (ipa.0 & !(PAGE_SIZE - 1)) as usize;
        let mut out = None;
        self.mapping
            .walk_range(
                &MemoryRegion::new(page, page + PAGE_SIZE as usize),
                &mut |_, desc, level| {
                    if desc.is_valid() {
                        let size = PAGE_SIZE << ((3 - level) * 9);
                        let pa = desc.output_address().0 as u64 | (ipa.0 & (size - 1));
                        let flags = desc.flags() & !Stage2Attributes::TABLE_OR_PAGE;
                        out = Some((HostPhysAddr(pa), flags, size));
                    }
                    Ok(())
                },
            )
            .ok()?;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::layout::{RAM_BASE, UART_BASE};

    const GIB: u64 = 0x4000_0000;

    fn s2() -> Stage2 {
        Stage2::new(VmId(0)).unwrap()
    }

    #[test]
    fn vmid_is_vm_index_plus_one_and_lands_in_vttbr_55_48() {
        let s = Stage2::new(VmId(4)).unwrap();
        assert_eq!(s.vmid(), 5);
        assert_eq!(s.vttbr() >> 48, 5);
        assert_eq!(s.vttbr() & 0xFFFF_FFFF_FFFF, s.root_pa().0);
        assert_eq!(s.root_pa().0 % PAGE_SIZE, 0, "root table is page aligned");
    }

    #[test]
    fn vm_beyond_8_bit_vmids_is_refused() {
        assert_eq!(
            Stage2::new(VmId(255)).unwrap_err(),
            Stage2Error::VmidOutOfRange { vm: VmId(255) }
        );
    }

    #[test]
    fn vtcr_encodes_39_bit_ipa_level1_start_4k_granule() {
        // PARange 0b0010 = 40 bits.
        let v = vtcr_el2(2).unwrap();
        assert_eq!(v & 0x3F, 25, "T0SZ");
        assert_eq!((v >> 6) & 3, 1, "SL0");
        assert_eq!((v >> 14) & 3, 0, "TG0 = 4 KiB");
        assert_eq!((v >> 12) & 3, 3, "SH0");
        assert_eq!((v >> 16) & 7, 2, "PS");
        assert_eq!(v >> 31 & 1, 1, "RES1");
        assert_eq!((vtcr_el2(6).unwrap() >> 16) & 7, 5, "PS capped at 48 bits");
        assert_eq!(vtcr_el2(1), Err(Stage2Error::PaRangeTooSmall(1)));
    }

    #[test]
    fn mapped_ram_translates_to_expected_pa_with_normal_rwx_attributes() {
        let mut s = s2();
        s.map_ram(GuestPhysAddr(RAM_BASE), HostPhysAddr(0x8_8000_0000), GIB)
            .unwrap();
        for off in [0, 0x1234, 0x20_0000, GIB - 1] {
            let (pa, attrs) = s.translate(GuestPhysAddr(RAM_BASE + off)).unwrap();
            assert_eq!(pa, HostPhysAddr(0x8_8000_0000 + off));
            assert_eq!(attrs, RAM_ATTRIBUTES);
            assert!(!attrs.contains(Stage2Attributes::XN));
        }
        assert_eq!(s.translate(GuestPhysAddr(RAM_BASE + GIB)), None);
        assert_eq!(s.translate(GuestPhysAddr(RAM_BASE - 1)), None);
    }

    #[test]
    fn device_window_translates_with_device_xn_attributes() {
        let mut s = s2();
        s.map_device(
            GuestPhysAddr(0x0a00_0000),
            HostPhysAddr(0xfe20_0000),
            0x1000,
        )
        .unwrap();
        let (pa, attrs) = s.translate(GuestPhysAddr(0x0a00_0010)).unwrap();
        assert_eq!(pa, HostPhysAddr(0xfe20_0010));
        assert_eq!(attrs, DEVICE_ATTRIBUTES);
        assert_eq!(s.translate(GuestPhysAddr(0x0a00_1000)), None);
    }

    #[test]
    fn emulated_windows_stay_unmapped() {
        let mut s = s2();
        s.map_ram(
            GuestPhysAddr(RAM_BASE),
            HostPhysAddr(0x8000_0000),
            0x20_0000,
        )
        .unwrap();
        assert_eq!(s.translate(GuestPhysAddr(UART_BASE)), None);
        assert_eq!(s.translate(GuestPhysAddr(0)), None);
        assert_eq!(s.translate(GuestPhysAddr(IPA_SIZE)), None);
    }

    #[test]
    fn overlapping_mapping_is_refused_and_first_mapping_is_kept() {
        let mut s = s2();
        s.map_ram(
            GuestPhysAddr(RAM_BASE),
            HostPhysAddr(0x8000_0000),
            0x40_0000,
        )
        .unwrap();
        let e = s
            .map_device(
                GuestPhysAddr(RAM_BASE + 0x20_0000),
                HostPhysAddr(0x1000),
                0x1000,
            )
            .unwrap_err();
        assert!(matches!(e, Stage2Error::Overlap { .. }), "{e}");
        let (pa, _) = s.translate(GuestPhysAddr(RAM_BASE + 0x20_0000)).unwrap();
        assert_eq!(pa, HostPhysAddr(0x8020_0000));
    }

    #[test]
    fn bad_ranges_are_refused() {
        let mut s = s2();
        let (ipa, pa) = (GuestPhysAddr(RAM_BASE), HostPhysAddr(0x8000_0000));
        assert!(matches!(
            s.map_ram(ipa, pa, 0),
            Err(Stage2Error::ZeroSize { .. })
        ));
        assert!(matches!(
            s.map_ram(ipa, pa, 0x800),
            Err(Stage2Error::Unaligned { .. })
        ));
        assert!(matches!(
            s.map_ram(ipa, HostPhysAddr(0x8000_0800), 0x1000),
            Err(Stage2Error::Unaligned { .. })
        ));
        assert!(matches!(
            s.map_ram(GuestPhysAddr(IPA_SIZE - 0x1000), pa, 0x2000),
            Err(Stage2Error::OutOfRange { .. })
        ));
        assert!(matches!(
            s.map_ram(GuestPhysAddr(!0xFFF), pa, 0x2000),
            Err(Stage2Error::OutOfRange { .. })
        ));
        assert!(s.regions().is_empty());
    }

    #[test]
    fn splitting_a_live_block_is_a_break_before_make_error() {
        let mut s = s2();
        s.map_ram(
            GuestPhysAddr(RAM_BASE),
            HostPhysAddr(0x8000_0000),
            0x20_0000,
        )
        .unwrap();
        s.mark_active();
        // Unmapping part of a live 2 MiB block would require splitting it.
        let e = s.mapping.map_range(
            &MemoryRegion::new(RAM_BASE as usize, RAM_BASE as usize + 0x1000),
            PhysicalAddress(0),
            Stage2Attributes::empty(),
            Constraints::empty(),
        );
        assert!(matches!(
            e.map_err(Stage2Error::from),
            Err(Stage2Error::BreakBeforeMake(_))
        ));
        s.mark_inactive();
    }

    #[test]
    fn mapping_new_range_while_live_is_allowed() {
        let mut s = s2();
        s.mark_active();
        s.map_ram(
            GuestPhysAddr(RAM_BASE),
            HostPhysAddr(0x8000_0000),
            0x20_0000,
        )
        .unwrap();
        assert!(s.translate(GuestPhysAddr(RAM_BASE)).is_some());
        s.mark_inactive();
    }

    #[test]
    fn ram_is_mapped_in_blocks_unless_pages_only() {
        let (ipa, pa) = (GuestPhysAddr(RAM_BASE), HostPhysAddr(0x8000_0000));
        let mut blocks = s2();
        blocks.map_ram(ipa, pa, 0x40_0000).unwrap();
        let mut pages = s2();
        pages.use_pages_only();
        pages.map_ram(ipa, pa, 0x40_0000).unwrap();
        for off in [0, 0x1000, 0x1f_f008, 0x20_0000, 0x3f_f000] {
            let at = GuestPhysAddr(ipa.0 + off);
            let (bpa, bflags, bsize) = blocks.translate_with_size(at).unwrap();
            let (ppa, pflags, psize) = pages.translate_with_size(at).unwrap();
            assert_eq!(
                (bpa, bsize),
                (HostPhysAddr(pa.0 + off), 0x20_0000),
                "{off:#x}"
            );
            assert_eq!((ppa, psize), (HostPhysAddr(pa.0 + off), 0x1000), "{off:#x}");
            assert_eq!(bflags, pflags, "{off:#x}");
        }
        assert_eq!(pages.translate(GuestPhysAddr(ipa.0 + 0x40_0000)), None);
        // Unmapping and mapping again keeps to pages.
        pages.unmap(ipa).unwrap();
        assert_eq!(pages.translate(ipa), None);
        pages.map_ram(ipa, pa, 0x20_0000).unwrap();
        assert_eq!(pages.translate_with_size(ipa).unwrap().2, 0x1000);
        // Short of heap, one block as a block all the same, beside the pages.
        let next = GuestPhysAddr(ipa.0 + 0x20_0000);
        pages
            .map_ram_in_blocks(next, HostPhysAddr(pa.0 + 0x20_0000), 0x20_0000)
            .unwrap();
        assert!(pages.pages_only());
        assert_eq!(
            pages.translate_with_size(GuestPhysAddr(next.0 + 0x1234)),
            Some((
                HostPhysAddr(pa.0 + 0x20_1234),
                bflags_of(&blocks),
                0x20_0000
            ))
        );
        assert_eq!(pages.translate_with_size(ipa).unwrap().2, 0x1000);
    }

    fn bflags_of(s: &Stage2) -> Stage2Attributes {
        s.translate(GuestPhysAddr(RAM_BASE)).unwrap().1
    }

    #[test]
    fn unmap_removes_the_region() {
        let mut s = s2();
        s.map_device(
            GuestPhysAddr(0x0a00_0000),
            HostPhysAddr(0xfe20_0000),
            0x2000,
        )
        .unwrap();
        let r = s.unmap(GuestPhysAddr(0x0a00_0000)).unwrap();
        assert_eq!(r.kind, RegionKind::Device);
        assert_eq!(s.translate(GuestPhysAddr(0x0a00_0000)), None);
        s.map_ram(
            GuestPhysAddr(0x0a00_0000),
            HostPhysAddr(0x9000_0000),
            0x1000,
        )
        .unwrap();
    }
}
