//! Per-interrupt virtual state, shared by every register frame (GICv3 now, GICv2 later).
//!
//! Plain data only: no pointers, no hardware handles, so that a VM's interrupt state can be
//! saved and restored (migration) field by field.

use crate::platform::Trigger;
use crate::types::VcpuId;

/// Priority bits a guest can set: the top five, the minimum `ICH_VTR_EL2.PRIbits` of GICv3
/// CPU interfaces (IHI 0069: unimplemented low priority bits are RAZ/WI).
pub const PRIORITY_MASK: u8 = 0xF8;

/// State of one virtual interrupt (SGI, PPI or SPI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqState {
    /// `GICD_ISENABLER`/`GICR_ISENABLER0`.
    pub enabled: bool,
    /// Pending latch: set by an edge, by `ISPENDR` or by an SGI; cleared by `ICPENDR` or
    /// when the interrupt is handed to a list register.
    pub pending_latch: bool,
    /// Line level for level-sensitive sources (devices, timers).
    pub line_level: bool,
    /// Active (acknowledged by the guest, not yet deactivated).
    pub active: bool,
    /// Priority (lower is more urgent), masked with [`PRIORITY_MASK`].
    pub priority: u8,
    /// Group 1 (`IGROUPR` bit set) or Group 0.
    pub group1: bool,
    /// Edge or level (`ICFGR`).
    pub trigger: Trigger,
    /// For SPIs: the vCPU that `GICD_IROUTER` selects, `None` if it names no vCPU of the VM.
    /// For SGIs/PPIs: the owning vCPU.
    pub target: Option<VcpuId>,
    /// For SPIs: `GICD_IROUTER` as last written (affinity fields only).
    pub irouter: u64,
    /// For SPIs of a GICv2 guest: `GICD_ITARGETSR` as last written (implemented CPUs' bits
    /// only); `target` is its lowest CPU.
    pub v2_targets: u8,
    /// The core wants to hear when the guest deactivates this interrupt (virtual timer).
    pub eoi_notify: bool,
    /// Physical INTID when the interrupt is a pass-through hardware interrupt (`ICH_LR.HW`).
    pub hw_intid: Option<u32>,
    /// The vCPU whose list registers hold this interrupt right now.
    pub in_lr_of: Option<VcpuId>,
}

impl IrqState {
    /// Reset state of an interrupt owned by / routed to `target`.
    pub const fn new(trigger: Trigger, target: Option<VcpuId>) -> Self {
        Self {
            enabled: false,
            pending_latch: false,
            line_level: false,
            active: false,
            priority: 0,
            group1: true,
            trigger,
            target,
            irouter: 0,
            v2_targets: 0,
            eoi_notify: false,
            hw_intid: None,
            in_lr_of: None,
        }
    }

    /// Pending as the architecture defines it: latched, or a level source whose line is high.
    pub const fn pending(&self) -> bool {
        self.pending_latch || (matches!(self.trigger, Trigger::Level) && self.line_level)
    }

    /// Whether this interrupt should be presented to its vCPU, given which groups the
    /// distributor has enabled.
    pub const fn deliverable(&self, grp0_enabled: bool, grp1_enabled: bool) -> bool {
        let group_on = if self.group1 {
            grp1_enabled
        } else {
            grp0_enabled
        };
        self.pending() && self.enabled && group_on
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_interrupt_is_pending_while_its_line_is_high() {
        let mut irq = IrqState::new(Trigger::Level, Some(VcpuId(0)));
        assert!(!irq.pending());
        irq.line_level = true;
        assert!(irq.pending());
    }

    #[test]
    fn edge_interrupt_ignores_line_level() {
        let mut irq = IrqState::new(Trigger::Edge, Some(VcpuId(0)));
        irq.line_level = true;
        assert!(!irq.pending());
        irq.pending_latch = true;
        assert!(irq.pending());
    }

    #[test]
    fn pending_interrupt_is_not_deliverable_while_disabled_or_group_off() {
        let mut irq = IrqState::new(Trigger::Edge, Some(VcpuId(0)));
        irq.pending_latch = true;
        assert!(!irq.deliverable(true, true));
        irq.enabled = true;
        assert!(irq.deliverable(false, true));
        assert!(!irq.deliverable(true, false));
        irq.group1 = false;
        assert!(irq.deliverable(true, false));
    }
}
