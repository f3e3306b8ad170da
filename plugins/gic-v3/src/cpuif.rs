//! The GICv3 CPU interface of the calling CPU: `ICC_*` system registers.
//!
//! On aarch64 these go through arm-gic's `GicCpuInterface` (IAR1, EOIR1, PMR, IGRPEN1),
//! `arm-sysregs` (CTLR, DIR, SGI1R) and `aarch64-cpu` (ICC_SRE_EL2, barriers). Host builds
//! have no such registers: there this module does nothing, so that the distributor and
//! redistributor logic above it can be unit-tested on the build machine.

#[cfg(target_arch = "aarch64")]
mod imp {
    use aarch64_cpu::asm::barrier;
    use aarch64_cpu::registers::{ReadWriteable, ICC_SRE_EL2};
    use arm_gic::gicv3::GicCpuInterface;
    use arm_gic::{IntId, InterruptGroup};
    use arm_sysregs::el1::accessors::{
        read_icc_ctlr_el1, read_icc_iar1_el1, write_icc_ctlr_el1, write_icc_dir_el1,
        write_icc_eoir1_el1, write_icc_sgi1r_el1,
    };
    use arm_sysregs::el1::registers::{IccCtlrEl1, IccDirEl1, IccEoir1El1, IccSgi1rEl1};

    /// Enables the system-register interface at EL2 (and lets EL1 see ICC_SRE_EL1, as a
    /// GICv3 guest expects), unmasks every priority, selects EOImode 0 (a write to EOIR1
    /// also deactivates) and enables Group 1 interrupts.
    pub fn init() {
        ICC_SRE_EL2.modify(ICC_SRE_EL2::SRE::SET + ICC_SRE_EL2::ENABLE::SET);
        barrier::isb(barrier::SY);
        GicCpuInterface::set_priority_mask(0xff);
        write_icc_ctlr_el1(IccCtlrEl1::empty());
        GicCpuInterface::enable_group1(true);
        barrier::isb(barrier::SY);
    }

    /// Reads ICC_IAR1_EL1; `None` for the spurious INTID 1023.
    pub fn acknowledge() -> Option<u32> {
        GicCpuInterface::get_and_acknowledge_interrupt(InterruptGroup::Group1).map(u32::from)
    }

    /// Writes ICC_EOIR1_EL1.
    pub fn end_of_interrupt(intid: u32) {
        if let Ok(id) = IntId::try_from(intid) {
            GicCpuInterface::end_interrupt(id, InterruptGroup::Group1);
        }
    }

    /// The run loop's kick (`IrqChip::acknowledge_kick`) on the registers themselves:
    /// ICC_IAR1_EL1; if that gave `kick`, ICC_EOIR1_EL1 and ICC_IAR1_EL1 again. The same
    /// register accesses as `acknowledge`, `end_of_interrupt`, `acknowledge`, without
    /// arm-gic's `IntId` conversions (`kick` is an SGI, 0..16, checked by the caller).
    pub fn acknowledge_kick(kick: u32) -> Result<Option<u32>, Option<u32>> {
        super::kick_sequence(
            || read_icc_iar1_el1().intid(),
            |intid| write_icc_eoir1_el1(IccEoir1El1::from_bits_retain(u64::from(intid))),
            kick,
        )
    }

    /// Writes ICC_DIR_EL1 if EOImode is 1. With EOImode 0 (this driver's setting) EOIR
    /// has already deactivated the interrupt and a DIR write would be UNPREDICTABLE.
    pub fn deactivate(intid: u32) {
        if read_icc_ctlr_el1().contains(IccCtlrEl1::EOIMODE) {
            let mut dir = IccDirEl1::empty();
            dir.set_intid(intid);
            write_icc_dir_el1(dir);
        }
    }

    /// Writes ICC_SGI1R_EL1 after making prior stores visible to the target.
    pub fn send_sgi1r(value: u64) {
        barrier::dsb(barrier::ISHST);
        write_icc_sgi1r_el1(IccSgi1rEl1::from_bits_retain(value));
        barrier::isb(barrier::SY);
    }
}

#[cfg(not(target_arch = "aarch64"))]
mod imp {
    /// Host build: no CPU interface.
    pub fn init() {}
    /// Host build: nothing is ever pending.
    pub fn acknowledge() -> Option<u32> {
        None
    }
    /// Host build: no CPU interface.
    pub fn end_of_interrupt(_intid: u32) {}
    /// Host build: nothing is ever pending.
    pub fn acknowledge_kick(_kick: u32) -> Result<Option<u32>, Option<u32>> {
        Err(None)
    }
    /// Host build: no CPU interface.
    pub fn deactivate(_intid: u32) {}
    /// Host build: no CPU interface.
    pub fn send_sgi1r(_value: u64) {}
}

/// INTID 1023: no interrupt pending (ICC_IAR1_EL1).
const SPURIOUS: u32 = 1023;

/// `acknowledge_kick` on raw register values: `iar` reads ICC_IAR1_EL1's INTID, `eoir`
/// writes ICC_EOIR1_EL1's. `None` for the spurious INTID, as `acknowledge` gives.
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
fn kick_sequence(
    mut iar: impl FnMut() -> u32,
    eoir: impl FnOnce(u32),
    kick: u32,
) -> Result<Option<u32>, Option<u32>> {
    let mut ack = || Some(iar()).filter(|&intid| intid != SPURIOUS);
    let first = ack();
    if first != Some(kick) {
        return Err(first);
    }
    eoir(kick);
    Ok(ack())
}

pub use imp::*;

#[cfg(test)]
mod tests {
    use super::*;

    /// The kick sequence reads IAR, writes EOIR with the kick only when IAR gave it, and
    /// reads IAR once more; the spurious INTID is `None` (as `acknowledge` gives it).
    #[test]
    fn the_kick_sequence_is_acknowledge_eoi_acknowledge() {
        const KICK: u32 = 0;
        for (iars, result, eois, reads) in [
            (&[KICK, 33][..], Ok(Some(33)), &[KICK][..], 2),
            (&[KICK, SPURIOUS], Ok(None), &[KICK], 2),
            (&[KICK, KICK], Ok(Some(KICK)), &[KICK], 2),
            (&[27, KICK], Err(Some(27)), &[], 1),
            (&[SPURIOUS, KICK], Err(None), &[], 1),
        ] {
            let mut next = iars.iter().copied();
            let mut n = 0;
            let mut written = Vec::new();
            let got = kick_sequence(
                || {
                    n += 1;
                    next.next().unwrap_or(SPURIOUS)
                },
                |i| written.push(i),
                KICK,
            );
            assert_eq!(got, result, "{iars:?}");
            assert_eq!(written, eois, "{iars:?}");
            assert_eq!(n, reads, "{iars:?}");
        }
    }
}
