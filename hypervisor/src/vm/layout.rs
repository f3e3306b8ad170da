//! Guest-physical memory map of every VM (the "virtual platform").
//!
//! ```text
//!  guest physical                                   what
//!  0x0000_0000 ┌──────────────────────────────┐
//!              │ unmapped (abort)             │
//!  0x0800_0000 ├──────────────────────────────┤ GICD (64 KiB, emulated, trapped)
//!  0x0801_0000 ├──────────────────────────────┤ GICv2 GICC (8 KiB, GICV mapped) [v2 only]
//!  0x0802_0000 ├──────────────────────────────┤ GICv2m MSI frame (4 KiB) [v2 with PCI only]
//!  0x080a_0000 ├──────────────────────────────┤ GICR frames, 128 KiB per vCPU [v3 only]
//!              │ ...                          │  (RD_base + SGI_base per vCPU)
//!  0x0900_0000 ├──────────────────────────────┤ PL011 UART (4 KiB, emulated), SPI 1 = INTID 33
//!  0x0900_1000 ├──────────────────────────────┤
//!              │ unmapped (abort)             │
//!  0x0903_0000 ├──────────────────────────────┤ PL061 GPIO (4 KiB, emulated), SPI 7 = INTID 39:
//!              │                              │  the power button on line 3
//!  0x0903_1000 ├──────────────────────────────┤
//!              │ unmapped (abort)             │
//!  0x1000_0000 ├──────────────────────────────┤ PCI memory window (BARs) [PCI only]
//!              │ ...                          │
//!  0x3eff_0000 ├──────────────────────────────┤ (QEMU's PCI I/O window: unused)
//!  0x3f00_0000 ├──────────────────────────────┤ PCIe ECAM, buses 0-15 (16 MiB) [PCI only]
//!  0x4000_0000 ├──────────────────────────────┤ RAM (memory_size bytes)
//!              │ kernel at RAM + text_offset  │
//!              │ ...                          │
//!              │ initrd                       │
//!              │ DTB (RAM end - 2 MiB)        │
//!  RAM end     └──────────────────────────────┘
//! ```
//! The layout mirrors QEMU's `virt` machine so that unmodified kernels find familiar
//! addresses; guests learn all of it from the generated device tree.
//!
//! SPIs (INTID = SPI + 32): the UART is SPI 1, the GPIO SPI 7, PCI INTA..INTD are SPIs 3-6 (as QEMU's
//! `virt`), and MSIs (GICv3 MBI or the GICv2m frame) use SPIs 64-127, above every SPI a
//! passed-through device can have in a VM built before PCI existed (INTID < 96).

/// GIC distributor.
pub const GICD_BASE: u64 = 0x0800_0000;
/// Size of the GICD frame.
pub const GICD_SIZE: u64 = 0x1_0000;
/// GICv2 CPU interface (backed by the physical GICV frame).
pub const GICC_BASE: u64 = 0x0801_0000;
/// Size of the GICv2 CPU interface window.
pub const GICC_SIZE: u64 = 0x2000;

/// Where the two 4 KiB pages of the guest's GICv2 CPU interface come from in the board's
/// GICV frame at `base` (`size` bytes): `(guest address, host address)` each.
///
/// The second page holds `GICV_DIR` (offset 0x1000), which a guest in EOImode 1 writes.
/// A GIC-400 wired with 64 KiB pages (ZynqMP, Armada AP806, Tegra: a 128 KiB region in the
/// KDL) repeats each 4 KiB page across 64 KiB, so its second page starts at `base +
/// 0x1_0000`, and `base + 0x1000` is an alias of the first (a `GICV_DIR` write there would
/// land in `GICV_CTLR`); Linux's `gic_check_eoimode` handles the same layout for GICC.
pub fn gicv_pages(base: u64, size: u64) -> [(u64, u64); 2] {
    let second = if size >= 0x2_0000 { 0x1_0000 } else { 0x1000 };
    [(GICC_BASE, base), (GICC_BASE + 0x1000, base + second)]
}
/// First GICv3 redistributor.
pub const GICR_BASE: u64 = 0x080a_0000;
/// Bytes of redistributor space per vCPU (RD_base + SGI_base frames).
pub const GICR_STRIDE: u64 = 0x2_0000;
/// Maximum vCPUs per VM (bounded by the redistributor window up to the UART).
pub const MAX_VCPUS: u64 = (UART_BASE - GICR_BASE) / GICR_STRIDE;
/// PL011 UART.
pub const UART_BASE: u64 = 0x0900_0000;
/// Size of the UART window.
pub const UART_SIZE: u64 = 0x1000;
/// INTID of the UART interrupt (SPI 1).
pub const UART_INTID: u32 = 33;
/// PL061 GPIO carrying the virtual power button (QEMU `virt`'s `VIRT_GPIO`).
pub const GPIO_BASE: u64 = 0x0903_0000;
/// Size of the GPIO window.
pub const GPIO_SIZE: u64 = 0x1000;
/// INTID of the GPIO interrupt (SPI 7, QEMU `virt`'s `a15irqmap[VIRT_GPIO]`).
pub const GPIO_INTID: u32 = 39;
/// Start of guest RAM.
pub const RAM_BASE: u64 = 0x4000_0000;
/// Offset from the end of RAM at which the DTB is placed.
pub const DTB_OFFSET_FROM_END: u64 = 0x20_0000;
/// Virtual timer PPI seen by guests.
pub const VTIMER_INTID: u32 = 27;
/// Non-secure physical timer PPI seen by guests.
pub const PTIMER_INTID: u32 = 30;
/// Maintenance interrupt INTID advertised to guests (none are delivered).
pub const MAINT_INTID: u32 = 25;
/// PMU interrupt seen by guests.
pub const PMU_INTID: u32 = 23;
/// GICv2m MSI frame of a GICv2 VM with PCI devices (`arm,gic-v2m-frame`, QEMU's address).
pub const GICV2M_BASE: u64 = 0x0802_0000;
/// Size of the GICv2m frame.
pub const GICV2M_SIZE: u64 = 0x1000;
/// First INTID that MSIs raise (SPI 64), through MBI (GICv3) or the GICv2m frame.
pub const MSI_FIRST_INTID: u32 = 96;
/// Number of MSI SPIs, from [`MSI_FIRST_INTID`].
pub const MSI_SPIS: u32 = 64;
/// PCI memory window: where guest BARs are placed (32-bit, non-prefetchable).
pub const PCI_MMIO_BASE: u64 = 0x1000_0000;
/// Size of the PCI memory window.
pub const PCI_MMIO_SIZE: u64 = 0x2eff_0000;
/// PCIe ECAM (enhanced configuration access): 1 MiB per bus.
pub const PCI_ECAM_BASE: u64 = 0x3f00_0000;
/// Size of the ECAM window: buses 0-15 (only bus 0 has devices).
pub const PCI_ECAM_SIZE: u64 = 0x100_0000;
/// INTIDs of PCI INTA..INTD (SPIs 3-6), swizzled by slot in the `interrupt-map`.
pub const PCI_INTX_INTIDS: [u32; 4] = [35, 36, 37, 38];
/// The last INTID an SPI can have (1020-1023 are special).
pub const LAST_SPI_INTID: u32 = 1019;

/// How many SPIs a VM's virtual GIC implements (INTIDs 32..32 + this), from the VM's
/// devices: the console and the power button's GPIO ([`UART_INTID`], [`GPIO_INTID`]), with PCI functions the INTx lines and the MSI
/// range ([`PCI_INTX_INTIDS`], [`MSI_FIRST_INTID`]..+[`MSI_SPIS`]), and the SPIs of the
/// devices passed through (`passthrough`; INTIDs that are not SPIs are skipped, the caller
/// refuses them). In whole blocks of 32 interrupts, which is what
/// `GICD_TYPER.ITLinesNumber` counts, and at most [`crate::vgic::MAX_SPIS`] (INTID 1019).
pub fn vgic_spis(pci: bool, passthrough: impl IntoIterator<Item = u32>) -> u32 {
    let mut top = UART_INTID.max(GPIO_INTID);
    if pci {
        let intx = PCI_INTX_INTIDS.iter().copied().max().unwrap_or(0);
        top = top.max(intx).max(MSI_FIRST_INTID + MSI_SPIS - 1);
    }
    for intid in passthrough {
        if (32..=LAST_SPI_INTID).contains(&intid) {
            top = top.max(intid);
        }
    }
    ((top - 31).div_ceil(32) * 32).min(crate::vgic::MAX_SPIS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gicv_second_page_follows_the_gic400_64k_aliasing() {
        // QEMU virt: 4 KiB pages back to back.
        assert_eq!(
            gicv_pages(0x0804_0000, 0x1_0000),
            [(GICC_BASE, 0x0804_0000), (GICC_BASE + 0x1000, 0x0804_1000)]
        );
        // ZynqMP GIC-400: each page repeated over 64 KiB, GICV_DIR at +64 KiB.
        assert_eq!(
            gicv_pages(0xf906_0000, 0x2_0000),
            [(GICC_BASE, 0xf906_0000), (GICC_BASE + 0x1000, 0xf907_0000)]
        );
    }

    #[test]
    fn spi_count_follows_the_devices_in_blocks_of_32() {
        // The console alone: SPIs 0-31.
        assert_eq!(vgic_spis(false, []), 32);
        // PCI: INTx and the MSI range up to INTID 159.
        assert_eq!(vgic_spis(true, []), 128);
        assert!(32 + vgic_spis(true, []) > MSI_FIRST_INTID + MSI_SPIS - 1);
        // A passed-through device's SPI 400 (INTID 432): 416 SPIs cover INTIDs up to 447.
        assert_eq!(vgic_spis(false, [34, 432]), 416);
        assert_eq!(vgic_spis(true, [64]), 128);
        // The last SPI: 988 (not a whole block: 1020-1023 are special).
        assert_eq!(vgic_spis(false, [1019]), 988);
        // Not SPIs: ignored.
        assert_eq!(vgic_spis(false, [27, 1020, u32::MAX]), 32);
    }
}
