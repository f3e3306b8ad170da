//! `ICH_LR<n>_EL2` list-register encoding and the `ICH_HCR_EL2` bits the vGIC asks for.
//!
//! Field layout from the Arm ARM (DDI 0487), `ICH_LR<n>_EL2`: vINTID 31:0, pINTID 44:32
//! (when HW=1; when HW=0 bit 41 is EOI and the rest RES0), Priority 55:48, Group 60, HW 61,
//! State 63:62.
//!
//! One addition of our own: for a GICv2 guest's SGIs (HW=0) bits 34:32 carry the source CPU
//! that the GICv2 `GICH_LR.CPUID` field holds (IHI 0048B 5.3.11). Only a GICv2 vGIC sets it,
//! and its LRs go to a GICH frame through [`crate::vgic::v2::lr_v3_to_v2`]; on a GICv3 CPU
//! interface the field stays 0, as those bits are RES0 there.

use crate::types::IntId;

/// `ICH_HCR_EL2.En`: enable the virtual CPU interface.
pub const ICH_HCR_EN: u64 = 1 << 0;
/// `ICH_HCR_EL2.UIE`: maintenance interrupt when at most one LR holds a valid interrupt
/// (underflow), so that interrupts that did not fit can be flushed in.
pub const ICH_HCR_UIE: u64 = 1 << 1;

const VINTID_MASK: u64 = 0xFFFF_FFFF;
const PINTID_SHIFT: u32 = 32;
const PINTID_MASK: u64 = 0x1FFF;
const EOI_BIT: u64 = 1 << 41;
const SOURCE_SHIFT: u32 = 32;
const SOURCE_MASK: u64 = 0x7;
const PRIORITY_SHIFT: u32 = 48;
const GROUP_BIT: u64 = 1 << 60;
const HW_BIT: u64 = 1 << 61;
const STATE_SHIFT: u32 = 62;

/// `ICH_LR<n>_EL2.State`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrState {
    /// 0b00: the LR is free (or the guest deactivated its interrupt).
    Invalid,
    /// 0b01.
    Pending,
    /// 0b10.
    Active,
    /// 0b11.
    PendingActive,
}

impl LrState {
    /// Builds the state from pending and active flags.
    pub const fn from_flags(pending: bool, active: bool) -> Self {
        match (pending, active) {
            (false, false) => Self::Invalid,
            (true, false) => Self::Pending,
            (false, true) => Self::Active,
            (true, true) => Self::PendingActive,
        }
    }

    /// Pending bit of the state.
    pub const fn pending(self) -> bool {
        matches!(self, Self::Pending | Self::PendingActive)
    }

    /// Active bit of the state.
    pub const fn active(self) -> bool {
        matches!(self, Self::Active | Self::PendingActive)
    }

    const fn bits(self) -> u64 {
        match self {
            Self::Invalid => 0,
            Self::Pending => 1,
            Self::Active => 2,
            Self::PendingActive => 3,
        }
    }
}

/// What the LR is linked to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrKind {
    /// A purely virtual interrupt (HW=0). `eoi_maintenance` asks for a maintenance
    /// interrupt when the guest deactivates it (`ICH_LR.EOI`, bit 41).
    Virtual {
        /// Bit 41.
        eoi_maintenance: bool,
    },
    /// Linked to a physical interrupt (HW=1): the guest's deactivation deactivates `pintid`.
    Hardware {
        /// Physical INTID (13 bits).
        pintid: u32,
    },
}

/// One decoded list register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lr {
    /// Virtual INTID the guest sees.
    pub vintid: IntId,
    /// State.
    pub state: LrState,
    /// Priority.
    pub priority: u8,
    /// Group 1 (signalled as vIRQ) or Group 0 (vFIQ).
    pub group1: bool,
    /// Virtual or hardware-linked.
    pub kind: LrKind,
    /// GICv2 SGIs: the CPU that sent it (`GICH_LR.CPUID`, shown in the guest's
    /// `GICC_IAR`); 0 otherwise. Ignored for hardware-linked LRs.
    pub source: u8,
}

impl Lr {
    /// An invalid (free) list register value.
    pub const EMPTY: u64 = 0;

    /// Encodes to the `ICH_LR<n>_EL2` value.
    pub const fn encode(&self) -> u64 {
        let mut v = self.vintid.0 as u64 & VINTID_MASK;
        v |= (self.priority as u64) << PRIORITY_SHIFT;
        if self.group1 {
            v |= GROUP_BIT;
        }
        match self.kind {
            LrKind::Virtual { eoi_maintenance } => {
                if eoi_maintenance {
                    v |= EOI_BIT;
                }
                v |= (self.source as u64 & SOURCE_MASK) << SOURCE_SHIFT;
            }
            LrKind::Hardware { pintid } => {
                v |= HW_BIT | ((pintid as u64 & PINTID_MASK) << PINTID_SHIFT);
            }
        }
        v | (self.state.bits() << STATE_SHIFT)
    }

    /// Decodes an `ICH_LR<n>_EL2` value.
    pub const fn decode(v: u64) -> Self {
        let state = match v >> STATE_SHIFT {
            0 => LrState::Invalid,
            1 => LrState::Pending,
            2 => LrState::Active,
            _ => LrState::PendingActive,
        };
        let (kind, source) = if v & HW_BIT != 0 {
            let pintid = ((v >> PINTID_SHIFT) & PINTID_MASK) as u32;
            (LrKind::Hardware { pintid }, 0)
        } else {
            let eoi_maintenance = v & EOI_BIT != 0;
            let source = ((v >> SOURCE_SHIFT) & SOURCE_MASK) as u8;
            (LrKind::Virtual { eoi_maintenance }, source)
        };
        Self {
            vintid: IntId((v & VINTID_MASK) as u32),
            state,
            priority: (v >> PRIORITY_SHIFT) as u8,
            group1: v & GROUP_BIT != 0,
            kind,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn virt(vintid: u32, state: LrState) -> Lr {
        Lr {
            vintid: IntId(vintid),
            state,
            priority: 0,
            group1: false,
            kind: LrKind::Virtual {
                eoi_maintenance: false,
            },
            source: 0,
        }
    }

    #[test]
    fn vintid_occupies_bits_31_to_0() {
        assert_eq!(virt(1019, LrState::Invalid).encode(), 1019);
    }

    #[test]
    fn state_occupies_bits_63_62() {
        assert_eq!(virt(0, LrState::Pending).encode(), 1 << 62);
        assert_eq!(virt(0, LrState::Active).encode(), 2 << 62);
        assert_eq!(virt(0, LrState::PendingActive).encode(), 3 << 62);
    }

    #[test]
    fn priority_occupies_bits_55_48() {
        let mut lr = virt(0, LrState::Invalid);
        lr.priority = 0xA0;
        assert_eq!(lr.encode(), 0xA0 << 48);
    }

    #[test]
    fn group1_is_bit_60_and_hw_is_bit_61() {
        let mut lr = virt(0, LrState::Invalid);
        lr.group1 = true;
        assert_eq!(lr.encode(), 1 << 60);
        lr.group1 = false;
        lr.kind = LrKind::Hardware { pintid: 0 };
        assert_eq!(lr.encode(), 1 << 61);
    }

    #[test]
    fn eoi_maintenance_is_bit_41_for_virtual_interrupts() {
        let mut lr = virt(0, LrState::Invalid);
        lr.kind = LrKind::Virtual {
            eoi_maintenance: true,
        };
        assert_eq!(lr.encode(), 1 << 41);
    }

    #[test]
    fn pintid_occupies_bits_44_32_for_hardware_interrupts() {
        let mut lr = virt(0, LrState::Invalid);
        lr.kind = LrKind::Hardware { pintid: 0x1FFF };
        assert_eq!(lr.encode(), (1 << 61) | (0x1FFF << 32));
    }

    #[test]
    fn decode_inverts_encode() {
        let lr = Lr {
            vintid: IntId(27),
            state: LrState::PendingActive,
            priority: 0x80,
            group1: true,
            kind: LrKind::Hardware { pintid: 30 },
            source: 0,
        };
        assert_eq!(Lr::decode(lr.encode()), lr);
        let lr = Lr {
            kind: LrKind::Virtual {
                eoi_maintenance: true,
            },
            source: 5,
            ..lr
        };
        assert_eq!(Lr::decode(lr.encode()), lr);
    }

    #[test]
    fn gicv2_sgi_source_occupies_bits_34_to_32_of_software_lrs_only() {
        let mut lr = virt(3, LrState::Pending);
        lr.source = 7;
        assert_eq!(lr.encode(), 3 | (1 << 62) | (7 << 32));
        lr.kind = LrKind::Hardware { pintid: 0 };
        assert_eq!(
            Lr::decode(lr.encode()).source,
            0,
            "HW=1: bits 44:32 are the pINTID"
        );
    }
}
