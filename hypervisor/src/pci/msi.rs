//! MSI delivery: how a PCI function's message write becomes an interrupt in the VM.
//!
//! The VM has no ITS: an MSI is a write of an SPI's INTID to a doorbell that makes that
//! SPI pending (an edge). A GICv3 VM's doorbell is its distributor's `GICD_SETSPI_NSR`
//! (message-based SPIs, `GICD_TYPER.MBIS`; the guest learns the range from the GIC node's
//! `mbi-ranges`), a GICv2 VM's the `MSI_SETSPI_NS` register of a GICv2m frame
//! ([`GicV2mFrame`], `arm,gic-v2m-frame`). Either way only the SPIs of
//! [`layout::MSI_FIRST_INTID`] onwards can be raised: a message naming another INTID, or
//! written anywhere else, is dropped, as a stray DMA write would be by an IOMMU.
#![deny(unsafe_code)]

use crate::mmio::{AccessSize, MmioDevice, MmioError};
use crate::platform::GicVersion;
use crate::vgic::dist::GICD_SETSPI_NSR;
use crate::vm::devices::IoCtx;
use crate::vm::layout;

/// `MSI_TYPER` of a GICv2m frame: base SPI (INTID) in bits 25:16, count in bits 9:0.
pub const V2M_MSI_TYPER: u64 = 0x008;
/// `MSI_SETSPI_NS` of a GICv2m frame: the doorbell.
pub const V2M_MSI_SETSPI_NS: u64 = 0x040;
/// `MSI_IIDR` of a GICv2m frame.
pub const V2M_MSI_IIDR: u64 = 0xfcc;
/// Our `MSI_IIDR`: Arm's JEP106 code, product 0 (no Linux quirk matches it).
pub const V2M_IIDR: u32 = 0x0000_043b;

/// Where a VM's MSIs go and which SPIs they may raise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiTarget {
    /// Guest-physical address of the doorbell register.
    pub doorbell: u64,
    /// First INTID a message may name.
    pub first_intid: u32,
    /// How many.
    pub count: u32,
}

impl MsiTarget {
    /// The MSI doorbell of a VM with this GIC, at the addresses of [`layout`].
    pub const fn for_gic(gic: GicVersion) -> Self {
        let doorbell = match gic {
            GicVersion::V3 => layout::GICD_BASE + GICD_SETSPI_NSR,
            GicVersion::V2 => layout::GICV2M_BASE + V2M_MSI_SETSPI_NS,
        };
        Self {
            doorbell,
            first_intid: layout::MSI_FIRST_INTID,
            count: layout::MSI_SPIS,
        }
    }

    /// `intid` is one this target may raise.
    pub const fn covers(&self, intid: u32) -> bool {
        intid >= self.first_intid && intid - self.first_intid < self.count
    }

    /// A 32-bit message write of `data` to `address`: an edge on the SPI whose INTID is
    /// in `data` bits 9:0 (the bits the GIC's doorbell registers decode) if `address` is
    /// the doorbell and that SPI one of the MSI SPIs; otherwise nothing. The vCPU the
    /// interrupt became deliverable to is added to `ctx.kicks`.
    pub fn deliver(&self, ctx: &mut IoCtx<'_>, address: u64, data: u32) {
        let intid = data & 0x3ff;
        if address != self.doorbell || !self.covers(intid) {
            return;
        }
        ctx.vgic.message_spi(true, intid);
        let kicks = ctx.vgic.take_kicks();
        ctx.kicks.extend(kicks);
    }
}

/// A GICv2m MSI frame (Arm Server Base System Architecture, appendix "GICv2m"): tells a
/// GICv2 guest its MSI SPIs and turns writes to its doorbell into edges.
pub struct GicV2mFrame {
    target: MsiTarget,
}

impl GicV2mFrame {
    /// The frame of [`layout::GICV2M_BASE`], raising the MSI SPIs of [`layout`].
    pub const fn new() -> Self {
        Self {
            target: MsiTarget::for_gic(GicVersion::V2),
        }
    }
}

impl Default for GicV2mFrame {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> MmioDevice<IoCtx<'a>> for GicV2mFrame {
    fn read(
        &mut self,
        _ctx: &mut IoCtx<'a>,
        offset: u64,
        size: AccessSize,
    ) -> Result<u64, MmioError> {
        if size != AccessSize::Word {
            return Ok(0);
        }
        Ok(match offset {
            V2M_MSI_TYPER => u64::from((self.target.first_intid << 16) | self.target.count),
            V2M_MSI_IIDR => u64::from(V2M_IIDR),
            _ => 0,
        })
    }

    fn write(
        &mut self,
        ctx: &mut IoCtx<'a>,
        offset: u64,
        size: AccessSize,
        value: u64,
    ) -> Result<(), MmioError> {
        if offset == V2M_MSI_SETSPI_NS && matches!(size, AccessSize::Word | AccessSize::HalfWord) {
            let doorbell = self.target.doorbell;
            self.target.deliver(ctx, doorbell, value as u32);
        }
        Ok(())
    }
}
