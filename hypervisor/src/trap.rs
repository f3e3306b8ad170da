//! Decoding of `ESR_EL2` (Arm ARM D24.2, "ESR_EL2, Exception Syndrome Register (EL2)").
//!
//! The exception vector in `arch/` reads `ESR_EL2`, `FAR_EL2` and `HPFAR_EL2` and hands the
//! plain values to [`decode`] and [`fault_ipa`]; nothing here touches a register. Every `u64`
//! decodes to some [`TrapCause`]: an encoding this module does not know is
//! [`TrapCause::Other`], and a data abort without a valid instruction syndrome
//! (`ISV == 0`) has `access: None`, for which the caller injects an abort into the guest.
//!
//! ```
//! use hypervisor::trap::{decode, TrapCause};
//! // HVC #0 from AArch64 (EC 0x16, IL 1).
//! assert_eq!(decode(0x5a00_0000), TrapCause::Hvc { imm: 0 });
//! ```
#![deny(unsafe_code)]

use crate::mmio::{AccessSize, MmioAccess};
use crate::types::GuestPhysAddr;

/// `ESR_EL2.EC`, the exception class (bits 31:26). Names follow the Arm ARM's descriptions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ExceptionClass {
    /// Unknown reason (also undefined instructions trapped to EL2).
    Unknown = 0x00,
    /// Trapped WFI, WFE, WFIT or WFET.
    WfxTrap = 0x01,
    /// Trapped MCR or MRC access with coproc 0b1111 (AArch32).
    Mcr15Trap = 0x03,
    /// Trapped MCRR or MRRC access with coproc 0b1111 (AArch32).
    Mcrr15Trap = 0x04,
    /// Trapped MCR or MRC access with coproc 0b1110 (AArch32).
    Mcr14Trap = 0x05,
    /// Trapped LDC or STC access (AArch32).
    LdcStcTrap = 0x06,
    /// Access to SME, SVE, Advanced SIMD or floating point trapped by CPACR/CPTR.
    FpAsimdTrap = 0x07,
    /// Trapped VMRS access, from ID group trap (AArch32).
    VmrsTrap = 0x08,
    /// Trapped pointer authentication instruction.
    PacTrap = 0x09,
    /// Trapped LD64B/ST64B* or other instruction not covered elsewhere (FEAT_LS64).
    Ls64Trap = 0x0a,
    /// Trapped MRRC access with coproc 0b1110 (AArch32).
    Mrrc14Trap = 0x0c,
    /// Branch Target Exception (FEAT_BTI).
    BranchTarget = 0x0d,
    /// Illegal Execution state.
    IllegalState = 0x0e,
    /// SVC executed in AArch32 state.
    Svc32 = 0x11,
    /// HVC executed in AArch32 state.
    Hvc32 = 0x12,
    /// SMC executed in AArch32 state, trapped by `HCR_EL2.TSC`.
    Smc32 = 0x13,
    /// SVC executed in AArch64 state.
    Svc64 = 0x15,
    /// HVC executed in AArch64 state.
    Hvc64 = 0x16,
    /// SMC executed in AArch64 state, trapped by `HCR_EL2.TSC`.
    Smc64 = 0x17,
    /// Trapped MSR, MRS or System instruction in AArch64 state.
    SysReg64 = 0x18,
    /// Access to SVE functionality trapped by CPACR/CPTR `ZEN`.
    SveTrap = 0x19,
    /// Trapped ERET, ERETAA or ERETAB (FEAT_NV).
    EretTrap = 0x1a,
    /// TSTART in a disallowed state (FEAT_TME).
    TstartTrap = 0x1b,
    /// Pointer authentication failure (FEAT_FPAC).
    PacFail = 0x1c,
    /// Access to SME functionality trapped (FEAT_SME).
    SmeTrap = 0x1d,
    /// Granule Protection Check exception (FEAT_RME).
    GranuleProtectionCheck = 0x1e,
    /// IMPLEMENTATION DEFINED exception taken to EL3.
    ImpDefEl3 = 0x1f,
    /// Instruction Abort from a lower Exception level (includes stage-2 faults).
    InstrAbortLowerEl = 0x20,
    /// Instruction Abort taken without a change in Exception level.
    InstrAbortSameEl = 0x21,
    /// PC alignment fault.
    PcAlignment = 0x22,
    /// Data Abort from a lower Exception level (includes stage-2 faults, so MMIO).
    DataAbortLowerEl = 0x24,
    /// Data Abort taken without a change in Exception level.
    DataAbortSameEl = 0x25,
    /// SP alignment fault.
    SpAlignment = 0x26,
    /// Memory Operation Exception (FEAT_MOPS).
    MemoryOperation = 0x27,
    /// Trapped floating-point exception from AArch32.
    FpException32 = 0x28,
    /// Trapped floating-point exception from AArch64.
    FpException64 = 0x2c,
    /// Guarded Control Stack exception (FEAT_GCS).
    GcsException = 0x2d,
    /// SError exception.
    SError = 0x2f,
    /// Breakpoint from a lower Exception level.
    BreakpointLowerEl = 0x30,
    /// Breakpoint taken without a change in Exception level.
    BreakpointSameEl = 0x31,
    /// Software Step from a lower Exception level.
    SoftwareStepLowerEl = 0x32,
    /// Software Step taken without a change in Exception level.
    SoftwareStepSameEl = 0x33,
    /// Watchpoint from a lower Exception level.
    WatchpointLowerEl = 0x34,
    /// Watchpoint taken without a change in Exception level.
    WatchpointSameEl = 0x35,
    /// BKPT executed in AArch32 state.
    Bkpt32 = 0x38,
    /// Vector Catch exception from AArch32.
    VectorCatch32 = 0x3a,
    /// BRK executed in AArch64 state.
    Brk64 = 0x3c,
}

impl ExceptionClass {
    /// Every allocated exception class, in encoding order.
    pub const ALL: [Self; 47] = [
        Self::Unknown,
        Self::WfxTrap,
        Self::Mcr15Trap,
        Self::Mcrr15Trap,
        Self::Mcr14Trap,
        Self::LdcStcTrap,
        Self::FpAsimdTrap,
        Self::VmrsTrap,
        Self::PacTrap,
        Self::Ls64Trap,
        Self::Mrrc14Trap,
        Self::BranchTarget,
        Self::IllegalState,
        Self::Svc32,
        Self::Hvc32,
        Self::Smc32,
        Self::Svc64,
        Self::Hvc64,
        Self::Smc64,
        Self::SysReg64,
        Self::SveTrap,
        Self::EretTrap,
        Self::TstartTrap,
        Self::PacFail,
        Self::SmeTrap,
        Self::GranuleProtectionCheck,
        Self::ImpDefEl3,
        Self::InstrAbortLowerEl,
        Self::InstrAbortSameEl,
        Self::PcAlignment,
        Self::DataAbortLowerEl,
        Self::DataAbortSameEl,
        Self::SpAlignment,
        Self::MemoryOperation,
        Self::FpException32,
        Self::FpException64,
        Self::GcsException,
        Self::SError,
        Self::BreakpointLowerEl,
        Self::BreakpointSameEl,
        Self::SoftwareStepLowerEl,
        Self::SoftwareStepSameEl,
        Self::WatchpointLowerEl,
        Self::WatchpointSameEl,
        Self::Bkpt32,
        Self::VectorCatch32,
        Self::Brk64,
    ];

    /// The class with encoding `ec` (only bits 5:0 are looked at), `None` if unallocated.
    pub const fn from_ec(ec: u8) -> Option<Self> {
        Some(match ec & 0x3f {
            0x00 => Self::Unknown,
            0x01 => Self::WfxTrap,
            0x03 => Self::Mcr15Trap,
            0x04 => Self::Mcrr15Trap,
            0x05 => Self::Mcr14Trap,
            0x06 => Self::LdcStcTrap,
            0x07 => Self::FpAsimdTrap,
            0x08 => Self::VmrsTrap,
            0x09 => Self::PacTrap,
            0x0a => Self::Ls64Trap,
            0x0c => Self::Mrrc14Trap,
            0x0d => Self::BranchTarget,
            0x0e => Self::IllegalState,
            0x11 => Self::Svc32,
            0x12 => Self::Hvc32,
            0x13 => Self::Smc32,
            0x15 => Self::Svc64,
            0x16 => Self::Hvc64,
            0x17 => Self::Smc64,
            0x18 => Self::SysReg64,
            0x19 => Self::SveTrap,
            0x1a => Self::EretTrap,
            0x1b => Self::TstartTrap,
            0x1c => Self::PacFail,
            0x1d => Self::SmeTrap,
            0x1e => Self::GranuleProtectionCheck,
            0x1f => Self::ImpDefEl3,
            0x20 => Self::InstrAbortLowerEl,
            0x21 => Self::InstrAbortSameEl,
            0x22 => Self::PcAlignment,
            0x24 => Self::DataAbortLowerEl,
            0x25 => Self::DataAbortSameEl,
            0x26 => Self::SpAlignment,
            0x27 => Self::MemoryOperation,
            0x28 => Self::FpException32,
            0x2c => Self::FpException64,
            0x2d => Self::GcsException,
            0x2f => Self::SError,
            0x30 => Self::BreakpointLowerEl,
            0x31 => Self::BreakpointSameEl,
            0x32 => Self::SoftwareStepLowerEl,
            0x33 => Self::SoftwareStepSameEl,
            0x34 => Self::WatchpointLowerEl,
            0x35 => Self::WatchpointSameEl,
            0x38 => Self::Bkpt32,
            0x3a => Self::VectorCatch32,
            0x3c => Self::Brk64,
            _ => return None,
        })
    }
}

/// `ESR_EL2.EC` as a raw 6-bit value.
pub const fn ec(esr: u64) -> u8 {
    ((esr >> 26) & 0x3f) as u8
}

/// `ESR_EL2.ISS` (bits 24:0).
pub const fn iss(esr: u64) -> u32 {
    (esr & 0x1ff_ffff) as u32
}

/// `ESR_EL2.IL`: the trapped instruction was 32 bits wide (A64, or T32 32-bit encoding).
pub const fn il(esr: u64) -> bool {
    esr & (1 << 25) != 0
}

/// Length in bytes of the trapped instruction: 4, or 2 for a 16-bit T32 instruction.
pub const fn instr_len(esr: u64) -> u64 {
    if il(esr) {
        4
    } else {
        2
    }
}

/// Bytes to add to `ELR_EL2` once the trapped instruction has been emulated, so that the
/// guest resumes after it.
///
/// For HVC and SVC the preferred return address is already the next instruction (0); for
/// SMC trapped by `HCR_EL2.TSC`, system-register traps, WFx and data aborts it is the
/// trapping instruction itself, so the caller skips [`instr_len`] bytes. A fault that is
/// reflected into the guest rather than emulated must not be skipped.
pub const fn emulated_pc_advance(esr: u64) -> u64 {
    match ec(esr) {
        0x11 | 0x12 | 0x15 | 0x16 => 0,
        _ => instr_len(esr),
    }
}

/// A trapped MSR/MRS/System instruction (EC 0x18, Arm ARM D24.2, "ISS encoding for an
/// exception from MSR, MRS, or System instruction execution in AArch64 state").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysRegAccess {
    /// `Op0` (ISS bits 21:20).
    pub op0: u8,
    /// `Op1` (ISS bits 16:14).
    pub op1: u8,
    /// `CRn` (ISS bits 13:10).
    pub crn: u8,
    /// `CRm` (ISS bits 4:1).
    pub crm: u8,
    /// `Op2` (ISS bits 19:17).
    pub op2: u8,
    /// The general-purpose register transferred (ISS bits 9:5); 31 is XZR.
    pub rt: u8,
    /// `Direction == 1`: MRS (a read of the system register into `Xt`).
    pub is_read: bool,
}

impl SysRegAccess {
    /// The register's encoding in the form of [`sysreg`], to compare with the named consts.
    pub const fn encoding(&self) -> u32 {
        sysreg(self.op0, self.op1, self.crn, self.crm, self.op2)
    }
}

/// A data abort taken to EL2 (EC 0x24/0x25, Arm ARM D24.2, "ISS encoding for an exception
/// from a Data Abort").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataAbort {
    /// `ISV`: ISS bits 23:14 hold a valid instruction syndrome.
    pub isv: bool,
    /// The decoded load/store, present only when `isv` is set. `None` means the access
    /// cannot be emulated from the syndrome (e.g. a load pair or a post-indexed access):
    /// inject an abort into the guest.
    pub access: Option<MmioAccess>,
    /// `FnV`: `FAR_EL2` is not valid (the low 12 bits of the fault address are unknown).
    pub fnv: bool,
    /// `EA`: external abort type (IMPLEMENTATION DEFINED classification).
    pub ea: bool,
    /// `CM`: the abort came from a cache maintenance or address translation instruction.
    pub cm: bool,
    /// `S1PTW`: a stage-2 fault on a stage-1 translation table walk.
    pub s1ptw: bool,
    /// `WnR`: the abort was caused by a write.
    pub wnr: bool,
    /// `DFSC`: the data fault status code (ISS bits 5:0), see [`FaultStatus`].
    pub dfsc: u8,
}

/// A decoded `DFSC`/`IFSC` (Arm ARM D24.2, the "DFSC" field table), for the classes the
/// core acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultStatus {
    /// Address size fault at the given lookup level (-1..=3).
    AddressSize {
        /// Lookup level.
        level: i8,
    },
    /// Translation fault at the given lookup level (-1..=3): for stage 2, an unmapped IPA.
    Translation {
        /// Lookup level.
        level: i8,
    },
    /// Access flag fault at the given lookup level (0..=3).
    AccessFlag {
        /// Lookup level.
        level: i8,
    },
    /// Permission fault at the given lookup level (0..=3).
    Permission {
        /// Lookup level.
        level: i8,
    },
    /// Synchronous External abort, not on a translation table walk.
    SyncExternal,
    /// Alignment fault.
    Alignment,
    /// TLB conflict abort.
    TlbConflict,
    /// Any other code (parity/ECC, lockdown, atomic, table walk external aborts, ...).
    Other(u8),
}

impl FaultStatus {
    /// Decodes a 6-bit fault status code.
    pub const fn from_code(code: u8) -> Self {
        let code = code & 0x3f;
        let level = (code & 0b11) as i8;
        match code {
            0x00..=0x03 => Self::AddressSize { level },
            0x04..=0x07 => Self::Translation { level },
            0x09..=0x0b => Self::AccessFlag { level },
            0x08 => Self::AccessFlag { level: 0 },
            0x0c..=0x0f => Self::Permission { level },
            0x10 => Self::SyncExternal,
            0x21 => Self::Alignment,
            0x29 => Self::AddressSize { level: -1 },
            0x2b => Self::Translation { level: -1 },
            0x30 => Self::TlbConflict,
            other => Self::Other(other),
        }
    }
}

impl DataAbort {
    /// The decoded fault status code.
    pub const fn fault_status(&self) -> FaultStatus {
        FaultStatus::from_code(self.dfsc)
    }
}

/// Why the guest trapped to EL2: the part of `ESR_EL2` the core acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapCause {
    /// WFI/WFE (and WFIT/WFET) trapped by `HCR_EL2.TWI`/`TWE`.
    Wfx {
        /// The instruction was WFE or WFET (else WFI or WFIT).
        is_wfe: bool,
        /// For WFIT/WFET: the register holding the timeout (`ISS.RV == 1`, `ISS.Rn`);
        /// the guest wants to be woken when the virtual count reaches its value.
        timeout_reg: Option<u8>,
    },
    /// HVC from AArch64 with its 16-bit immediate. `ELR_EL2` already points past it.
    Hvc {
        /// `imm16` of the HVC instruction.
        imm: u16,
    },
    /// SMC from AArch64 trapped by `HCR_EL2.TSC`. `ELR_EL2` points at the SMC.
    Smc {
        /// `imm16` of the SMC instruction.
        imm: u16,
    },
    /// Trapped MSR/MRS/System instruction.
    SysReg(SysRegAccess),
    /// Data abort from the guest (EC 0x24), typically a stage-2 fault on emulated MMIO.
    DataAbort(DataAbort),
    /// Instruction abort from the guest (EC 0x20).
    InstrAbort {
        /// `IFSC`: the instruction fault status code, see [`FaultStatus`].
        ifsc: u8,
    },
    /// Anything else; the raw class and ISS, for logging and injecting an undefined
    /// instruction exception.
    Other {
        /// `ESR_EL2.EC`.
        ec: u8,
        /// `ESR_EL2.ISS`.
        iss: u32,
    },
}

/// The exception-syndrome registers an exit left at EL2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syndrome {
    /// `ESR_EL2`.
    pub esr: u64,
    /// `FAR_EL2`.
    pub far: u64,
    /// `HPFAR_EL2`.
    pub hpfar: u64,
}

/// The ISS bits of a trapped `MSR`/`MRS` (EC 0x18) that name its register: Op0, Op2, Op1,
/// CRn and CRm (not Rt, not the direction).
pub const SYSREG_ISS_MASK: u32 =
    (0b11 << 20) | (0b111 << 17) | (0b111 << 14) | (0xf << 10) | (0xf << 1);

/// Where the register `enc` (a [`sysreg`] value) puts its fields in the ISS of a trapped
/// access: compare with the ISS under [`SYSREG_ISS_MASK`] to recognise a register without
/// decoding the syndrome (what an exit fast path does).
pub const fn sysreg_iss(enc: u32) -> u32 {
    let op0 = (enc >> 19) & 0b11;
    let op1 = (enc >> 16) & 0b111;
    let crn = (enc >> 12) & 0xf;
    let crm = (enc >> 8) & 0xf;
    let op2 = (enc >> 5) & 0b111;
    (op0 << 20) | (op2 << 17) | (op1 << 14) | (crn << 10) | (crm << 1)
}

/// Decodes `ESR_EL2`. Total: never panics, whatever the value.
pub fn decode(esr: u64) -> TrapCause {
    let iss = iss(esr);
    let bit = |n: u32| (iss >> n) & 1 != 0;
    let field = |lsb: u32, width: u32| ((iss >> lsb) & ((1 << width) - 1)) as u8;
    match ExceptionClass::from_ec(ec(esr)) {
        Some(ExceptionClass::WfxTrap) => {
            // TI (bits 1:0): 0b00 WFI, 0b01 WFE, 0b10 WFIT, 0b11 WFET; RV (bit 2) says
            // Rn (bits 9:5) holds the timeout.
            TrapCause::Wfx {
                is_wfe: bit(0),
                timeout_reg: if bit(1) && bit(2) {
                    Some(field(5, 5))
                } else {
                    None
                },
            }
        }
        Some(ExceptionClass::Hvc64) => TrapCause::Hvc {
            imm: (iss & 0xffff) as u16,
        },
        Some(ExceptionClass::Smc64) => TrapCause::Smc {
            imm: (iss & 0xffff) as u16,
        },
        Some(ExceptionClass::SysReg64) => TrapCause::SysReg(SysRegAccess {
            op0: field(20, 2),
            op1: field(14, 3),
            crn: field(10, 4),
            crm: field(1, 4),
            op2: field(17, 3),
            rt: field(5, 5),
            is_read: bit(0),
        }),
        Some(ExceptionClass::DataAbortLowerEl) => {
            let isv = bit(24);
            let wnr = bit(6);
            let access = if isv {
                Some(MmioAccess {
                    size: AccessSize::from_sas(field(22, 2)),
                    sign_extend: bit(21),
                    srt: field(16, 5),
                    sf: bit(15),
                    acquire_release: bit(14),
                    is_write: wnr,
                })
            } else {
                None
            };
            TrapCause::DataAbort(DataAbort {
                isv,
                access,
                fnv: bit(10),
                ea: bit(9),
                cm: bit(8),
                s1ptw: bit(7),
                wnr,
                dfsc: field(0, 6),
            })
        }
        Some(ExceptionClass::InstrAbortLowerEl) => TrapCause::InstrAbort { ifsc: field(0, 6) },
        _ => TrapCause::Other { ec: ec(esr), iss },
    }
}

/// The faulting guest-physical address of a stage-2 abort: `HPFAR_EL2.FIPA` (bits 47:4,
/// IPA bits 55:12 with FEAT_LPA/LPA2 included) shifted into place, plus the page offset
/// from `FAR_EL2` bits 11:0 (valid when the syndrome's `FnV` is clear).
pub const fn fault_ipa(hpfar_el2: u64, far_el2: u64) -> GuestPhysAddr {
    let fipa = (hpfar_el2 >> 4) & ((1 << 44) - 1);
    GuestPhysAddr((fipa << 12) | (far_el2 & 0xfff))
}

/// Encodes a system register the way [`SysRegAccess::encoding`] does:
/// `op0:op1:CRn:CRm:op2` packed as in the `MRS`/`MSR` instruction (bits 20:5).
pub const fn sysreg(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> u32 {
    ((op0 as u32 & 0b11) << 19)
        | ((op1 as u32 & 0b111) << 16)
        | ((crn as u32 & 0xf) << 12)
        | ((crm as u32 & 0xf) << 8)
        | ((op2 as u32 & 0b111) << 5)
}

/// `ICC_SGI1R_EL1`: generate a Group 1 SGI for the current Security state.
pub const ICC_SGI1R_EL1: u32 = sysreg(3, 0, 12, 11, 5);
/// `ICC_ASGI1R_EL1`: generate a Group 1 SGI for the other Security state.
pub const ICC_ASGI1R_EL1: u32 = sysreg(3, 0, 12, 11, 6);
/// `ICC_SGI0R_EL1`: generate a Group 0 SGI.
pub const ICC_SGI0R_EL1: u32 = sysreg(3, 0, 12, 11, 7);
/// `CNTP_TVAL_EL0`: EL1 physical timer TimerValue (trapped when `CNTHCTL_EL2.EL1PCEN == 0`).
pub const CNTP_TVAL_EL0: u32 = sysreg(3, 3, 14, 2, 0);
/// `CNTP_CTL_EL0`: EL1 physical timer control.
pub const CNTP_CTL_EL0: u32 = sysreg(3, 3, 14, 2, 1);
/// `CNTP_CVAL_EL0`: EL1 physical timer CompareValue.
pub const CNTP_CVAL_EL0: u32 = sysreg(3, 3, 14, 2, 2);
/// `CNTPCT_EL0`: physical count (trapped when `CNTHCTL_EL2.EL1PCTEN == 0`).
pub const CNTPCT_EL0: u32 = sysreg(3, 3, 14, 0, 1);
/// `PMCR_EL0`: Performance Monitors Control Register.
pub const PMCR_EL0: u32 = sysreg(3, 3, 9, 12, 0);
/// `PMCNTENSET_EL0`: Performance Monitors Count Enable Set.
pub const PMCNTENSET_EL0: u32 = sysreg(3, 3, 9, 12, 1);
/// `PMCNTENCLR_EL0`: Performance Monitors Count Enable Clear.
pub const PMCNTENCLR_EL0: u32 = sysreg(3, 3, 9, 12, 2);
/// `PMOVSCLR_EL0`: Performance Monitors Overflow Flag Status Clear.
pub const PMOVSCLR_EL0: u32 = sysreg(3, 3, 9, 12, 3);
/// `PMSWINC_EL0`: Performance Monitors Software Increment.
pub const PMSWINC_EL0: u32 = sysreg(3, 3, 9, 12, 4);
/// `PMSELR_EL0`: Performance Monitors Event Counter Selection.
pub const PMSELR_EL0: u32 = sysreg(3, 3, 9, 12, 5);
/// `PMCEID0_EL0`: Performance Monitors Common Event Identification 0.
pub const PMCEID0_EL0: u32 = sysreg(3, 3, 9, 12, 6);
/// `PMCEID1_EL0`: Performance Monitors Common Event Identification 1.
pub const PMCEID1_EL0: u32 = sysreg(3, 3, 9, 12, 7);
/// `PMCCNTR_EL0`: Performance Monitors Cycle Count Register.
pub const PMCCNTR_EL0: u32 = sysreg(3, 3, 9, 13, 0);
/// `PMXEVTYPER_EL0`: Performance Monitors Selected Event Type.
pub const PMXEVTYPER_EL0: u32 = sysreg(3, 3, 9, 13, 1);
/// `PMXEVCNTR_EL0`: Performance Monitors Selected Event Count.
pub const PMXEVCNTR_EL0: u32 = sysreg(3, 3, 9, 13, 2);
/// `PMUSERENR_EL0`: Performance Monitors User Enable.
pub const PMUSERENR_EL0: u32 = sysreg(3, 3, 9, 14, 0);
/// `PMINTENSET_EL1`: Performance Monitors Interrupt Enable Set.
pub const PMINTENSET_EL1: u32 = sysreg(3, 0, 9, 14, 1);
/// `PMINTENCLR_EL1`: Performance Monitors Interrupt Enable Clear.
pub const PMINTENCLR_EL1: u32 = sysreg(3, 0, 9, 14, 2);
/// `PMOVSSET_EL0`: Performance Monitors Overflow Flag Status Set.
pub const PMOVSSET_EL0: u32 = sysreg(3, 3, 9, 14, 3);
/// `PMMIR_EL1`: Performance Monitors Machine Identification (FEAT_PMUv3p4).
pub const PMMIR_EL1: u32 = sysreg(3, 0, 9, 14, 6);
/// `PMCCFILTR_EL0`: Performance Monitors Cycle Count Filter.
pub const PMCCFILTR_EL0: u32 = sysreg(3, 3, 14, 15, 7);

/// `PMEVCNTR<n>_EL0` (n in 0..=30): `op0=3, op1=3, CRn=14, CRm=0b10:n[4:3], op2=n[2:0]`.
pub const fn pmevcntr_el0(n: u8) -> u32 {
    sysreg(3, 3, 14, 0b1000 | ((n >> 3) & 0b11), n & 0b111)
}

/// `PMEVTYPER<n>_EL0` (n in 0..=30): `op0=3, op1=3, CRn=14, CRm=0b11:n[4:3], op2=n[2:0]`.
pub const fn pmevtyper_el0(n: u8) -> u32 {
    sysreg(3, 3, 14, 0b1100 | ((n >> 3) & 0b11), n & 0b111)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IL: u64 = 1 << 25;

    fn esr(ec: u64, iss: u64) -> u64 {
        (ec << 26) | IL | iss
    }

    #[test]
    fn exception_class_round_trips_every_allocated_encoding() {
        let mut seen = 0u64;
        for ec in 0u8..64 {
            if let Some(class) = ExceptionClass::from_ec(ec) {
                assert_eq!(class as u8, ec);
                seen |= 1 << ec;
            }
        }
        let listed = ExceptionClass::ALL
            .iter()
            .fold(0u64, |acc, c| acc | 1 << (*c as u8));
        assert_eq!(seen, listed);
        assert_eq!(seen.count_ones(), 47);
    }

    #[test]
    fn exception_class_unallocated_encodings_are_none() {
        for ec in [
            0x02, 0x0b, 0x0f, 0x10, 0x14, 0x23, 0x29, 0x2e, 0x36, 0x39, 0x3b, 0x3f,
        ] {
            assert_eq!(ExceptionClass::from_ec(ec), None, "EC {ec:#x}");
        }
    }

    #[test]
    fn hvc_carries_its_immediate() {
        assert_eq!(decode(esr(0x16, 0x1234)), TrapCause::Hvc { imm: 0x1234 });
    }

    #[test]
    fn smc_carries_its_immediate() {
        assert_eq!(decode(esr(0x17, 0)), TrapCause::Smc { imm: 0 });
    }

    #[test]
    fn wfi_and_wfe_are_told_apart() {
        assert_eq!(
            decode(esr(0x01, 0b00)),
            TrapCause::Wfx {
                is_wfe: false,
                timeout_reg: None
            }
        );
        assert_eq!(
            decode(esr(0x01, 0b01)),
            TrapCause::Wfx {
                is_wfe: true,
                timeout_reg: None
            }
        );
    }

    #[test]
    fn wfit_names_its_timeout_register() {
        // TI = 0b10 (WFIT), RV = 1, Rn = 7.
        assert_eq!(
            decode(esr(0x01, (7 << 5) | (1 << 2) | 0b10)),
            TrapCause::Wfx {
                is_wfe: false,
                timeout_reg: Some(7)
            }
        );
    }

    #[test]
    fn msr_icc_sgi1r_el1_decodes_fields_and_encoding() {
        // MSR ICC_SGI1R_EL1, X3: op0=3 op2=5 op1=0 CRn=12 Rt=3 CRm=11 Direction=0.
        let iss = (3 << 20) | (5 << 17) | (12 << 10) | (3 << 5) | (11 << 1);
        let TrapCause::SysReg(access) = decode(esr(0x18, iss)) else {
            panic!("not a sysreg trap");
        };
        assert_eq!(
            access,
            SysRegAccess {
                op0: 3,
                op1: 0,
                crn: 12,
                crm: 11,
                op2: 5,
                rt: 3,
                is_read: false
            }
        );
        assert_eq!(access.encoding(), ICC_SGI1R_EL1);
    }

    #[test]
    fn mrs_sets_is_read() {
        // MRS X0, CNTP_CTL_EL0.
        let iss = (3 << 20) | (1 << 17) | (3 << 14) | (14 << 10) | (2 << 1) | 1;
        let TrapCause::SysReg(access) = decode(esr(0x18, iss)) else {
            panic!("not a sysreg trap");
        };
        assert!(access.is_read);
        assert_eq!(access.encoding(), CNTP_CTL_EL0);
    }

    #[test]
    fn data_abort_with_valid_syndrome_decodes_the_access() {
        // STR W5, [X1] to an unmapped IPA: ISV, SAS=0b10, SRT=5, WnR, DFSC=0x06 (L2 translation).
        let iss = (1 << 24) | (0b10 << 22) | (5 << 16) | (1 << 6) | 0x06;
        let TrapCause::DataAbort(abort) = decode(esr(0x24, iss)) else {
            panic!("not a data abort");
        };
        assert_eq!(
            abort.access,
            Some(MmioAccess {
                size: AccessSize::Word,
                sign_extend: false,
                srt: 5,
                sf: false,
                acquire_release: false,
                is_write: true
            })
        );
        assert!(abort.wnr);
        assert_eq!(abort.fault_status(), FaultStatus::Translation { level: 2 });
    }

    #[test]
    fn data_abort_sign_extending_64_bit_acquire_load() {
        // LDAR-like: ISV, SAS=0b01, SSE, SRT=30, SF, AR, read.
        let iss = (1 << 24) | (0b01 << 22) | (1 << 21) | (30 << 16) | (1 << 15) | (1 << 14) | 0x07;
        let TrapCause::DataAbort(abort) = decode(esr(0x24, iss)) else {
            panic!("not a data abort");
        };
        let access = abort.access.unwrap();
        assert_eq!(access.size, AccessSize::HalfWord);
        assert!(access.sign_extend && access.sf && access.acquire_release && !access.is_write);
        assert_eq!(access.srt, 30);
    }

    #[test]
    fn data_abort_without_isv_has_no_access() {
        // ISV = 0 (e.g. LDP): the syndrome bits must not be trusted.
        let iss = (0b11 << 22) | (1 << 21) | (1 << 6) | 0x06;
        let TrapCause::DataAbort(abort) = decode(esr(0x24, iss)) else {
            panic!("not a data abort");
        };
        assert!(!abort.isv);
        assert_eq!(abort.access, None);
        assert!(abort.wnr);
    }

    #[test]
    fn data_abort_flags_decode() {
        let iss = (1 << 10) | (1 << 9) | (1 << 8) | (1 << 7) | 0x0f;
        let TrapCause::DataAbort(a) = decode(esr(0x24, iss)) else {
            panic!("not a data abort");
        };
        assert!(a.fnv && a.ea && a.cm && a.s1ptw && !a.wnr);
        assert_eq!(a.fault_status(), FaultStatus::Permission { level: 3 });
    }

    #[test]
    fn instruction_abort_carries_ifsc() {
        assert_eq!(
            decode(esr(0x20, 0x05)),
            TrapCause::InstrAbort { ifsc: 0x05 }
        );
    }

    #[test]
    fn other_classes_keep_raw_ec_and_iss() {
        assert_eq!(
            decode(esr(0x07, 0x1ff_ffff)),
            TrapCause::Other {
                ec: 0x07,
                iss: 0x1ff_ffff
            }
        );
        assert_eq!(decode(0x02 << 26), TrapCause::Other { ec: 0x02, iss: 0 });
    }

    #[test]
    fn upper_bits_beyond_ec_are_ignored() {
        // ISS2 (bits 55:32) must not leak into the decoded fields.
        assert_eq!(
            decode((0xff_ffff << 32) | esr(0x16, 0x42)),
            TrapCause::Hvc { imm: 0x42 }
        );
    }

    #[test]
    fn instruction_length_follows_il() {
        assert_eq!(instr_len(esr(0x24, 0)), 4);
        assert_eq!(instr_len(0x24 << 26), 2);
    }

    #[test]
    fn hvc_needs_no_pc_advance_but_smc_and_mmio_do() {
        assert_eq!(emulated_pc_advance(esr(0x16, 0)), 0);
        assert_eq!(emulated_pc_advance(esr(0x17, 0)), 4);
        assert_eq!(emulated_pc_advance(esr(0x24, 1 << 24)), 4);
        assert_eq!(emulated_pc_advance(esr(0x18, 0)), 4);
        assert_eq!(emulated_pc_advance(esr(0x01, 0)), 4);
    }

    #[test]
    fn fault_ipa_combines_hpfar_page_and_far_offset() {
        // IPA 0x0900_0018: HPFAR.FIPA = 0x9000 (IPA[47:12]) at bits 47:4.
        assert_eq!(
            fault_ipa(0x9000 << 4, 0xffff_0000_dead_b018),
            GuestPhysAddr(0x0900_0018)
        );
    }

    #[test]
    fn fault_ipa_ignores_hpfar_ns_bit() {
        // HPFAR_EL2.NS is bit 63.
        assert_eq!(fault_ipa((1 << 63) | (0x1 << 4), 0), GuestPhysAddr(0x1000));
    }

    #[test]
    fn sysreg_encodings_match_the_arm_arm() {
        assert_eq!(ICC_SGI1R_EL1, (3 << 19) | (12 << 12) | (11 << 8) | (5 << 5));
        assert_ne!(ICC_SGI0R_EL1, ICC_SGI1R_EL1);
        assert_eq!(pmevcntr_el0(0), sysreg(3, 3, 14, 8, 0));
        assert_eq!(pmevcntr_el0(30), sysreg(3, 3, 14, 11, 6));
        assert_eq!(pmevtyper_el0(9), sysreg(3, 3, 14, 13, 1));
    }

    /// `sysreg_iss` puts a register's encoding where `decode` reads it from the ISS: for
    /// random trapped `MSR`/`MRS` syndromes, the masked ISS is that of the decoded register.
    #[test]
    fn sysreg_iss_matches_decode() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let esr = (0x18 << 26) | (1 << 25) | (x & 0x1ff_ffff);
            let TrapCause::SysReg(acc) = decode(esr) else {
                panic!("{esr:#x} is not a system register trap");
            };
            assert_eq!(
                sysreg_iss(acc.encoding()),
                iss(esr) & SYSREG_ISS_MASK,
                "{esr:#x}"
            );
        }
        assert_eq!(
            sysreg_iss(ICC_SGI1R_EL1),
            (3 << 20) | (5 << 17) | (12 << 10) | (11 << 1)
        );
    }

    #[test]
    fn decode_never_panics_on_pseudo_random_values() {
        // xorshift64*; covers every EC with random ISS/ISS2 bits.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut decoded_aborts = 0;
        for i in 0..200_000u64 {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let mut v = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
            // Force every EC to appear.
            v = (v & !(0x3f << 26)) | ((i & 0x3f) << 26);
            let cause = decode(v);
            if let TrapCause::DataAbort(a) = cause {
                decoded_aborts += 1;
                if let Some(access) = a.access {
                    assert!(access.srt <= 31);
                    let _ = crate::mmio::load_value(&access, v);
                    let _ = crate::mmio::store_value(&access, v);
                }
                let _ = a.fault_status();
            }
            let _ = emulated_pc_advance(v);
            let _ = fault_ipa(v, x);
        }
        assert!(decoded_aborts > 0);
    }
}
