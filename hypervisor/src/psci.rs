//! PSCI 1.1 and SMCCC 1.1 architecture calls made by guests (Arm DEN0022, DEN0028), pure.
//!
//! The trap handler passes the function ID (`W0`) and `X1..X3` of a guest HVC or SMC to
//! [`handle`], writes [`PsciOutcome::x0`] back to the guest's `X0` (leaving `X1..X3`
//! unchanged) and carries out [`PsciOutcome::action`]. The VM's vCPU table is reached
//! through [`PsciBackend`]. Function IDs and return codes come from the `smccc` crate.
//!
//! ```
//! use hypervisor::psci::{handle, PsciAction, PsciBackend, VcpuPowerState};
//! use hypervisor::types::{GuestPhysAddr, VcpuId};
//! # struct Vm;
//! # impl PsciBackend for Vm {
//! #     fn vcpu_by_mpidr(&self, _: u64) -> Option<VcpuId> { None }
//! #     fn vcpu_state(&self, _: VcpuId) -> VcpuPowerState { VcpuPowerState::Off }
//! #     fn vcpu_mpidrs(&self) -> Vec<u64> { Vec::new() }
//! #     fn request_cpu_on(&mut self, _: VcpuId, _: GuestPhysAddr, _: u64)
//! #         -> Result<(), hypervisor::psci::CpuOnError> { Ok(()) }
//! #     fn entry_valid(&self, _: GuestPhysAddr) -> bool { true }
//! # }
//! let out = handle(smccc::psci::PSCI_VERSION, [0; 3], &mut Vm);
//! assert_eq!((out.x0, out.action), (0x1_0001, PsciAction::Continue));
//! ```
#![deny(unsafe_code)]

use crate::types::{GuestPhysAddr, VcpuId};
use smccc::arch::{
    SMCCC_ARCH_FEATURES, SMCCC_ARCH_WORKAROUND_1, SMCCC_ARCH_WORKAROUND_2, SMCCC_ARCH_WORKAROUND_3,
    SMCCC_VERSION,
};
use smccc::psci::error::{
    ALREADY_ON, INTERNAL_FAILURE, INVALID_ADDRESS, INVALID_PARAMETERS, NOT_SUPPORTED, ON_PENDING,
    SUCCESS,
};
use smccc::psci::{
    PSCI_AFFINITY_INFO_32, PSCI_AFFINITY_INFO_64, PSCI_CPU_OFF, PSCI_CPU_ON_32, PSCI_CPU_ON_64,
    PSCI_CPU_SUSPEND_32, PSCI_CPU_SUSPEND_64, PSCI_FEATURES, PSCI_MIGRATE_INFO_TYPE,
    PSCI_SYSTEM_OFF, PSCI_SYSTEM_RESET, PSCI_VERSION,
};

/// PSCI version reported by `PSCI_VERSION`: 1.1 (major in bits 30:16).
pub const PSCI_VERSION_1_1: u32 = 0x0001_0001;
/// SMCCC version reported by `SMCCC_VERSION`: 1.1.
pub const SMCCC_VERSION_1_1: u32 = 0x0001_0001;
/// The affinity fields of an MPIDR (Aff3 bits 39:32, Aff2..Aff0 bits 23:0); PSCI requires
/// the other bits of a `target_cpu` argument to be zero.
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;
/// `MIGRATE_INFO_TYPE` result: no Trusted OS, migration not required (DEN0022 5.9.1).
const MIGRATE_TYPE_NOT_REQUIRED: i32 = 2;
/// `SMCCC_ARCH_FEATURES` result for a workaround the PE does not need (DEN0028 7.5.2).
const WORKAROUND_RET_UNAFFECTED: i32 = 1;
/// `SMCCC_ARCH_FEATURES` result for a workaround that is not required (DEN0028 7.6.2).
const WORKAROUND_RET_NOT_REQUIRED: i32 = smccc::arch::error::NOT_REQUIRED;

/// The power state of a vCPU as PSCI's `AFFINITY_INFO` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuPowerState {
    /// Running or runnable (`AFFINITY_INFO` returns 0).
    On = 0,
    /// Off: never started, or after `CPU_OFF` (returns 1).
    Off = 1,
    /// A `CPU_ON` was accepted and the vCPU has not started yet (returns 2).
    OnPending = 2,
}

/// Why the backend refused a `CPU_ON` it was asked to carry out (a race with another
/// vCPU's `CPU_ON`, or a resource failure).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CpuOnError {
    /// The vCPU is already on; the guest gets `ALREADY_ON`.
    #[error("vCPU is already on; the guest must not CPU_ON it twice")]
    AlreadyOn,
    /// Another `CPU_ON` for it is in progress; the guest gets `ON_PENDING`.
    #[error("a CPU_ON for this vCPU is already pending; the guest should poll AFFINITY_INFO")]
    OnPending,
    /// The vCPU could not be started; the guest gets `INTERNAL_FAILURE`.
    #[error("the vCPU could not be started; check the hypervisor log for the cause")]
    Internal,
}

/// How an `SMCCC_ARCH_WORKAROUND_*` call is provided to the guest (DEN0028 7.5-7.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkaroundSupport {
    /// Not implemented: `SMCCC_ARCH_FEATURES` returns `NOT_SUPPORTED` (-1) and the guest
    /// assumes it may be vulnerable.
    NotSupported,
    /// Implemented and needed: `SMCCC_ARCH_FEATURES` returns 0 and guest calls are passed
    /// to [`PsciBackend::apply_arch_workaround`].
    Mitigated,
    /// This PE is not affected: `SMCCC_ARCH_FEATURES` returns 1 (workarounds 1 and 3).
    Unaffected,
    /// The mitigation is always on: `SMCCC_ARCH_FEATURES` returns `NOT_REQUIRED` (-2)
    /// (workaround 2).
    NotRequired,
}

impl WorkaroundSupport {
    /// What the firmware's `SMCCC_ARCH_FEATURES(SMCCC_ARCH_WORKAROUND_n)` answer `ret`
    /// means (DEN0028 7.5.2, 7.6.2, 7.7.2); anything unknown counts as not supported.
    pub const fn from_firmware(ret: i32) -> Self {
        match ret {
            0 => Self::Mitigated,
            WORKAROUND_RET_UNAFFECTED => Self::Unaffected,
            WORKAROUND_RET_NOT_REQUIRED => Self::NotRequired,
            _ => Self::NotSupported,
        }
    }
}

/// What the machine's firmware provides of SMCCC, asked once at boot (by `smc`, in the
/// order DEN0028 7.2 prescribes: `PSCI_FEATURES(SMCCC_VERSION)`, then `SMCCC_VERSION`, then
/// `SMCCC_ARCH_FEATURES` for each workaround). Guests are told the same, so that they reach
/// the mitigation state they would have on the bare machine; their workaround calls go to
/// the firmware through [`FirmwareSmccc::call`].
#[derive(Clone, Copy, Debug)]
pub struct FirmwareSmccc {
    /// `SMCCC_VERSION`'s answer; `None` for an SMCCC 1.0 firmware (it does not implement
    /// `SMCCC_VERSION`, nor `SMCCC_ARCH_FEATURES`).
    pub version: Option<u32>,
    /// `SMCCC_ARCH_FEATURES` of `SMCCC_ARCH_WORKAROUND_1`, `_2` and `_3`, as answered.
    pub workarounds: [i32; 3],
    /// Makes workaround call `function_id` with `W1 = arg` at the firmware, on this CPU.
    pub call: fn(function_id: u32, arg: u64),
}

impl FirmwareSmccc {
    /// A firmware that provides nothing beyond SMCCC 1.0 (and a call that does nothing).
    pub const NONE: Self = Self {
        version: None,
        workarounds: [smccc::arch::error::NOT_SUPPORTED; 3],
        call: |_, _| {},
    };

    /// `SMCCC_VERSION` as guests see it: the firmware's, at most 1.1 (what this handler
    /// implements); `None` (not supported) when the firmware is SMCCC 1.0.
    pub fn guest_version(&self) -> Option<u32> {
        self.version
            .filter(|&v| v as i32 >= 0)
            .map(|v| v.min(SMCCC_VERSION_1_1))
    }

    /// How the firmware provides workaround `function_id` (`NotSupported` below SMCCC 1.1,
    /// where `SMCCC_ARCH_FEATURES` does not exist).
    pub fn workaround(&self, function_id: u32) -> WorkaroundSupport {
        let i = match function_id {
            SMCCC_ARCH_WORKAROUND_1 => 0,
            SMCCC_ARCH_WORKAROUND_2 => 1,
            SMCCC_ARCH_WORKAROUND_3 => 2,
            _ => return WorkaroundSupport::NotSupported,
        };
        if self.guest_version().is_none_or(|v| v < SMCCC_VERSION_1_1) {
            return WorkaroundSupport::NotSupported;
        }
        WorkaroundSupport::from_firmware(self.workarounds[i])
    }
}

/// What the VM provides to the PSCI handler.
pub trait PsciBackend {
    /// The vCPU whose virtual MPIDR affinity fields are `mpidr` (non-affinity bits
    /// already checked to be zero), if the VM has one.
    fn vcpu_by_mpidr(&self, mpidr: u64) -> Option<VcpuId>;
    /// The vCPU's current power state.
    fn vcpu_state(&self, vcpu: VcpuId) -> VcpuPowerState;
    /// The affinity fields of every vCPU's virtual MPIDR, in vCPU order (for
    /// `AFFINITY_INFO` above level 0, which asks about a whole cluster or socket).
    fn vcpu_mpidrs(&self) -> alloc::vec::Vec<u64>;
    /// Starts `vcpu` (currently off) at `entry` with `X0 = context_id`, MMU and caches off,
    /// at EL1h with all exceptions masked (DEN0022 6.4.3). On success the vCPU is
    /// `OnPending` or `On`.
    fn request_cpu_on(
        &mut self,
        vcpu: VcpuId,
        entry: GuestPhysAddr,
        context_id: u64,
    ) -> Result<(), CpuOnError>;
    /// Whether `addr` is a valid entry point: inside the guest's RAM.
    fn entry_valid(&self, addr: GuestPhysAddr) -> bool;
    /// The SMCCC version guests are told (`None`: SMCCC 1.0, `SMCCC_VERSION` and
    /// `SMCCC_ARCH_FEATURES` are not supported). At least 1.1 for the architecture calls.
    fn smccc_version(&self) -> Option<u32> {
        Some(SMCCC_VERSION_1_1)
    }
    /// How `SMCCC_ARCH_WORKAROUND_{1,2,3}` (`function_id`) is provided.
    fn arch_workaround(&self, function_id: u32) -> WorkaroundSupport {
        let _ = function_id;
        WorkaroundSupport::NotSupported
    }
    /// Carries out a workaround call the backend reported as
    /// [`WorkaroundSupport::Mitigated`] (`arg` is `X1`, the enable flag of workaround 2).
    fn apply_arch_workaround(&mut self, function_id: u32, arg: u64) {
        let _ = (function_id, arg);
    }
}

/// What the caller must do after writing `x0` back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciAction {
    /// Resume the calling vCPU.
    Continue,
    /// `CPU_SUSPEND` to a standby state: treat like WFI (the call returns success on the
    /// next wake-up event), then resume.
    Standby,
    /// `CPU_SUSPEND` to a power-down state (`power_state` bit 16, the original format):
    /// the vCPU's context is lost. It waits like WFI for a wake-up event, then starts at
    /// `entry` with `X0 = context_id`, as after `CPU_ON` (EL1h, exceptions masked, MMU and
    /// caches off; DEN0022 5.4.2 and 6.4.3).
    PowerDown {
        /// Where it resumes.
        entry: GuestPhysAddr,
        /// Its `X0` there.
        context_id: u64,
    },
    /// `CPU_OFF`: stop the calling vCPU; it does not return to the guest.
    CpuOff,
    /// `SYSTEM_OFF`: stop the whole VM.
    SystemOff,
    /// `SYSTEM_RESET`: reset the whole VM.
    SystemReset,
    /// `CPU_ON` succeeded: schedule the target vCPU, then resume the caller.
    WakeVcpu(VcpuId),
}

/// The result of one call: the value for the guest's `X0` and the action to take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PsciOutcome {
    /// Value for the guest's `X0` (a negative return code sign-extended to 64 bits).
    pub x0: u64,
    /// What the caller does next.
    pub action: PsciAction,
}

impl PsciOutcome {
    const fn ret(code: i32) -> Self {
        Self {
            x0: code as i64 as u64,
            action: PsciAction::Continue,
        }
    }

    const fn with(code: i32, action: PsciAction) -> Self {
        Self {
            x0: code as i64 as u64,
            action,
        }
    }
}

/// True for the SMC32/HVC32 calling convention (function ID bit 30 clear): arguments are
/// the low 32 bits of `X1..X3`.
const fn is_smc32(function_id: u32) -> bool {
    function_id & (1 << 30) == 0
}

/// Whether `function_id` is a PSCI or SMCCC function this handler implements.
pub fn is_implemented(function_id: u32) -> bool {
    matches!(
        function_id,
        PSCI_VERSION
            | PSCI_CPU_SUSPEND_32
            | PSCI_CPU_SUSPEND_64
            | PSCI_CPU_OFF
            | PSCI_CPU_ON_32
            | PSCI_CPU_ON_64
            | PSCI_AFFINITY_INFO_32
            | PSCI_AFFINITY_INFO_64
            | PSCI_MIGRATE_INFO_TYPE
            | PSCI_SYSTEM_OFF
            | PSCI_SYSTEM_RESET
            | PSCI_FEATURES
            | SMCCC_VERSION
            | SMCCC_ARCH_FEATURES
    )
}

/// Handles one PSCI/SMCCC call. `function_id` is `W0`, `args` are `X1..X3`.
pub fn handle(function_id: u32, args: [u64; 3], backend: &mut impl PsciBackend) -> PsciOutcome {
    let [mut a1, mut a2, mut a3] = args;
    if is_smc32(function_id) {
        a1 &= 0xffff_ffff;
        a2 &= 0xffff_ffff;
        a3 &= 0xffff_ffff;
    }
    match function_id {
        PSCI_VERSION => PsciOutcome::ret(PSCI_VERSION_1_1 as i32),
        PSCI_FEATURES => PsciOutcome::ret(psci_features(a1 as u32, backend)),
        PSCI_CPU_SUSPEND_32 | PSCI_CPU_SUSPEND_64 => {
            cpu_suspend(a1, GuestPhysAddr(a2), a3, backend)
        }
        PSCI_CPU_OFF => PsciOutcome::with(SUCCESS, PsciAction::CpuOff),
        PSCI_CPU_ON_32 | PSCI_CPU_ON_64 => cpu_on(a1, GuestPhysAddr(a2), a3, backend),
        PSCI_AFFINITY_INFO_32 | PSCI_AFFINITY_INFO_64 => {
            PsciOutcome::ret(affinity_info(a1, a2, backend))
        }
        PSCI_MIGRATE_INFO_TYPE => PsciOutcome::ret(MIGRATE_TYPE_NOT_REQUIRED),
        PSCI_SYSTEM_OFF => PsciOutcome::with(SUCCESS, PsciAction::SystemOff),
        PSCI_SYSTEM_RESET => PsciOutcome::with(SUCCESS, PsciAction::SystemReset),
        SMCCC_VERSION => match backend.smccc_version() {
            Some(v) => PsciOutcome::ret(v as i32),
            None => PsciOutcome::ret(NOT_SUPPORTED),
        },
        SMCCC_ARCH_FEATURES if has_arch_calls(backend) => {
            PsciOutcome::ret(arch_features(a1 as u32, backend))
        }
        SMCCC_ARCH_WORKAROUND_1 | SMCCC_ARCH_WORKAROUND_2 | SMCCC_ARCH_WORKAROUND_3 => {
            if backend.arch_workaround(function_id) == WorkaroundSupport::Mitigated {
                backend.apply_arch_workaround(function_id, a1);
                PsciOutcome::ret(SUCCESS)
            } else {
                PsciOutcome::ret(NOT_SUPPORTED)
            }
        }
        _ => PsciOutcome::ret(NOT_SUPPORTED),
    }
}

/// True for the SMCCC architecture calls (`SMCCC_VERSION`, `SMCCC_ARCH_FEATURES`,
/// `SMCCC_ARCH_WORKAROUND_1..3`): their answer is a value or a call to the firmware, never a
/// change to a vCPU's power state ([`PsciAction::Continue`]), so the run loop may handle
/// them without its general entry. Guests make them outside power management: Linux probes
/// the workarounds at boot and calls them on cores that need them.
pub const fn is_arch_call(function_id: u32) -> bool {
    matches!(
        function_id,
        SMCCC_VERSION
            | SMCCC_ARCH_FEATURES
            | SMCCC_ARCH_WORKAROUND_1
            | SMCCC_ARCH_WORKAROUND_2
            | SMCCC_ARCH_WORKAROUND_3
    )
}

/// `PSCI_FEATURES`: 0 for implemented PSCI functions and `SMCCC_VERSION` (Linux probes
/// it this way before calling it); for `CPU_SUSPEND` the feature flags 0 mean the original
/// power-state format without OS-initiated mode. `NOT_SUPPORTED` for everything else,
/// including the SMCCC architecture calls, which are discovered through
/// `SMCCC_ARCH_FEATURES`.
fn psci_features(queried: u32, backend: &impl PsciBackend) -> i32 {
    match queried {
        SMCCC_ARCH_FEATURES => NOT_SUPPORTED,
        SMCCC_VERSION if backend.smccc_version().is_none() => NOT_SUPPORTED,
        id if is_implemented(id) => SUCCESS,
        _ => NOT_SUPPORTED,
    }
}

/// SMCCC 1.1 or later: `SMCCC_ARCH_FEATURES` exists.
fn has_arch_calls(backend: &impl PsciBackend) -> bool {
    backend
        .smccc_version()
        .is_some_and(|v| v >= SMCCC_VERSION_1_1)
}

/// `SMCCC_ARCH_FEATURES` (DEN0028 7.3).
fn arch_features(queried: u32, backend: &impl PsciBackend) -> i32 {
    match queried {
        SMCCC_VERSION | SMCCC_ARCH_FEATURES => SUCCESS,
        SMCCC_ARCH_WORKAROUND_1 | SMCCC_ARCH_WORKAROUND_2 | SMCCC_ARCH_WORKAROUND_3 => {
            match backend.arch_workaround(queried) {
                WorkaroundSupport::NotSupported => smccc::arch::error::NOT_SUPPORTED,
                WorkaroundSupport::Mitigated => SUCCESS,
                WorkaroundSupport::Unaffected => WORKAROUND_RET_UNAFFECTED,
                WorkaroundSupport::NotRequired => WORKAROUND_RET_NOT_REQUIRED,
            }
        }
        _ => smccc::arch::error::NOT_SUPPORTED,
    }
}

/// `CPU_ON(target_cpu, entry_point_address, context_id)` (DEN0022 5.6).
fn cpu_on(
    target: u64,
    entry: GuestPhysAddr,
    context_id: u64,
    backend: &mut impl PsciBackend,
) -> PsciOutcome {
    if target & !MPIDR_AFFINITY_MASK != 0 {
        return PsciOutcome::ret(INVALID_PARAMETERS);
    }
    let Some(vcpu) = backend.vcpu_by_mpidr(target) else {
        return PsciOutcome::ret(INVALID_PARAMETERS);
    };
    match backend.vcpu_state(vcpu) {
        VcpuPowerState::On => return PsciOutcome::ret(ALREADY_ON),
        VcpuPowerState::OnPending => return PsciOutcome::ret(ON_PENDING),
        VcpuPowerState::Off => {}
    }
    if !backend.entry_valid(entry) {
        return PsciOutcome::ret(INVALID_ADDRESS);
    }
    match backend.request_cpu_on(vcpu, entry, context_id) {
        Ok(()) => PsciOutcome::with(SUCCESS, PsciAction::WakeVcpu(vcpu)),
        Err(CpuOnError::AlreadyOn) => PsciOutcome::ret(ALREADY_ON),
        Err(CpuOnError::OnPending) => PsciOutcome::ret(ON_PENDING),
        Err(CpuOnError::Internal) => PsciOutcome::ret(INTERNAL_FAILURE),
    }
}

/// `power_state` bit 16 in the original format (DEN0022 5.4.2.1): StateType, 1 = power down.
const POWER_STATE_TYPE_POWERDOWN: u64 = 1 << 16;

/// `CPU_SUSPEND(power_state, entry_point_address, context_id)` (DEN0022 5.4): standby
/// states wait like WFI and return; power-down states lose the vCPU's context and resume at
/// the entry point, which must be valid like `CPU_ON`'s.
fn cpu_suspend(
    power_state: u64,
    entry: GuestPhysAddr,
    context_id: u64,
    backend: &impl PsciBackend,
) -> PsciOutcome {
    if power_state & POWER_STATE_TYPE_POWERDOWN == 0 {
        return PsciOutcome::with(SUCCESS, PsciAction::Standby);
    }
    if !backend.entry_valid(entry) {
        return PsciOutcome::ret(INVALID_ADDRESS);
    }
    PsciOutcome::with(SUCCESS, PsciAction::PowerDown { entry, context_id })
}

/// The MPIDR affinity fields below `level` (0: none, 1: Aff0, 2: Aff1..0, 3: Aff2..0).
fn affinity_below(level: u64) -> u64 {
    match level {
        0 => 0,
        1 => 0xff,
        2 => 0xffff,
        _ => 0xff_ffff,
    }
}

/// `AFFINITY_INFO(target_affinity, lowest_affinity_level)` (DEN0022 5.1.5, 5.7): the state
/// of the affinity instance at `lowest_level` that holds `target` — one vCPU at level 0,
/// its cluster at level 1, and so on up to level 3. An instance is on when any of its vCPUs
/// is on, on-pending when none is on and one is pending, and off when all are off; the
/// affinity fields below the level are ignored.
fn affinity_info(target: u64, lowest_level: u64, backend: &impl PsciBackend) -> i32 {
    if lowest_level > 3 || target & !MPIDR_AFFINITY_MASK != 0 {
        return INVALID_PARAMETERS;
    }
    if lowest_level == 0 {
        return match backend.vcpu_by_mpidr(target) {
            Some(vcpu) => backend.vcpu_state(vcpu) as i32,
            None => INVALID_PARAMETERS,
        };
    }
    let ignore = affinity_below(lowest_level);
    let mut members = backend
        .vcpu_mpidrs()
        .into_iter()
        .enumerate()
        .filter(|(_, m)| (m & !ignore) == (target & !ignore))
        .map(|(i, _)| backend.vcpu_state(VcpuId(i)))
        .peekable();
    if members.peek().is_none() {
        return INVALID_PARAMETERS;
    }
    let (mut on, mut pending) = (false, false);
    for state in members {
        on |= state == VcpuPowerState::On;
        pending |= state == VcpuPowerState::OnPending;
    }
    if on {
        VcpuPowerState::On as i32
    } else if pending {
        VcpuPowerState::OnPending as i32
    } else {
        VcpuPowerState::Off as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// A VM whose vCPU n has MPIDR Aff0 = n and RAM at [0x4000_0000, 0x8000_0000).
    struct FakeVm {
        states: Vec<VcpuPowerState>,
        started: Vec<(VcpuId, GuestPhysAddr, u64)>,
        refuse: Option<CpuOnError>,
        workaround: WorkaroundSupport,
        applied: Vec<(u32, u64)>,
    }

    impl FakeVm {
        fn new(n: usize) -> Self {
            let mut states = vec![VcpuPowerState::Off; n];
            states[0] = VcpuPowerState::On;
            Self {
                states,
                started: Vec::new(),
                refuse: None,
                workaround: WorkaroundSupport::NotSupported,
                applied: Vec::new(),
            }
        }
    }

    impl PsciBackend for FakeVm {
        fn vcpu_by_mpidr(&self, mpidr: u64) -> Option<VcpuId> {
            let n = mpidr as usize;
            (mpidr < 256 && n < self.states.len()).then_some(VcpuId(n))
        }
        fn vcpu_state(&self, vcpu: VcpuId) -> VcpuPowerState {
            self.states[vcpu.0]
        }
        fn vcpu_mpidrs(&self) -> Vec<u64> {
            // Two vCPUs per cluster: Aff1 = n / 2, Aff0 = n % 2 (vcpu_by_mpidr is only
            // used at level 0, where the tests name vCPUs by index).
            (0..self.states.len() as u64)
                .map(|n| ((n / 2) << 8) | (n % 2))
                .collect()
        }
        fn request_cpu_on(
            &mut self,
            vcpu: VcpuId,
            entry: GuestPhysAddr,
            context_id: u64,
        ) -> Result<(), CpuOnError> {
            if let Some(e) = self.refuse {
                return Err(e);
            }
            self.states[vcpu.0] = VcpuPowerState::OnPending;
            self.started.push((vcpu, entry, context_id));
            Ok(())
        }
        fn entry_valid(&self, addr: GuestPhysAddr) -> bool {
            (0x4000_0000..0x8000_0000).contains(&addr.0)
        }
        fn arch_workaround(&self, _: u32) -> WorkaroundSupport {
            self.workaround
        }
        fn apply_arch_workaround(&mut self, function_id: u32, arg: u64) {
            self.applied.push((function_id, arg));
        }
    }

    fn x0(code: i32) -> u64 {
        code as i64 as u64
    }

    #[test]
    fn version_is_1_1() {
        let out = handle(PSCI_VERSION, [0; 3], &mut FakeVm::new(1));
        assert_eq!(out.x0, 0x1_0001);
        assert_eq!(out.action, PsciAction::Continue);
    }

    #[test]
    fn features_reports_implemented_functions_as_supported() {
        let mut vm = FakeVm::new(1);
        for id in [
            PSCI_CPU_ON_64,
            PSCI_CPU_OFF,
            PSCI_SYSTEM_OFF,
            PSCI_FEATURES,
            SMCCC_VERSION,
        ] {
            assert_eq!(
                handle(PSCI_FEATURES, [id as u64, 0, 0], &mut vm).x0,
                0,
                "{id:#x}"
            );
        }
    }

    #[test]
    fn features_reports_unimplemented_functions_as_not_supported() {
        let mut vm = FakeVm::new(1);
        for id in [
            smccc::psci::PSCI_SYSTEM_SUSPEND_64,
            smccc::psci::PSCI_MIGRATE_64,
            0x1234,
        ] {
            assert_eq!(
                handle(PSCI_FEATURES, [id as u64, 0, 0], &mut vm).x0,
                x0(NOT_SUPPORTED),
                "{id:#x}"
            );
        }
    }

    #[test]
    fn cpu_on_starts_an_off_vcpu_and_wakes_it() {
        let mut vm = FakeVm::new(2);
        let out = handle(PSCI_CPU_ON_64, [1, 0x4008_0000, 0xc0ffee], &mut vm);
        assert_eq!(
            out,
            PsciOutcome::with(SUCCESS, PsciAction::WakeVcpu(VcpuId(1)))
        );
        assert_eq!(
            vm.started,
            vec![(VcpuId(1), GuestPhysAddr(0x4008_0000), 0xc0ffee)]
        );
    }

    #[test]
    fn cpu_on_32_truncates_arguments_to_32_bits() {
        let mut vm = FakeVm::new(2);
        let hi = 0xdead_0000_0000_0000;
        let out = handle(PSCI_CPU_ON_32, [hi | 1, hi | 0x4000_1000, hi | 7], &mut vm);
        assert_eq!(out.action, PsciAction::WakeVcpu(VcpuId(1)));
        assert_eq!(vm.started, vec![(VcpuId(1), GuestPhysAddr(0x4000_1000), 7)]);
    }

    #[test]
    fn cpu_on_unknown_mpidr_is_invalid_parameters() {
        let mut vm = FakeVm::new(2);
        let out = handle(PSCI_CPU_ON_64, [5, 0x4000_0000, 0], &mut vm);
        assert_eq!(out, PsciOutcome::ret(INVALID_PARAMETERS));
        assert!(vm.started.is_empty());
    }

    #[test]
    fn cpu_on_with_non_affinity_bits_is_invalid_parameters() {
        let mut vm = FakeVm::new(2);
        // Bit 31 (RES1 in MPIDR_EL1) is not an affinity field.
        let out = handle(PSCI_CPU_ON_64, [(1 << 31) | 1, 0x4000_0000, 0], &mut vm);
        assert_eq!(out.x0, x0(INVALID_PARAMETERS));
    }

    #[test]
    fn cpu_on_running_vcpu_is_already_on() {
        let mut vm = FakeVm::new(2);
        assert_eq!(
            handle(PSCI_CPU_ON_64, [0, 0x4000_0000, 0], &mut vm).x0,
            x0(ALREADY_ON)
        );
    }

    #[test]
    fn cpu_on_twice_is_on_pending() {
        let mut vm = FakeVm::new(2);
        handle(PSCI_CPU_ON_64, [1, 0x4000_0000, 0], &mut vm);
        assert_eq!(
            handle(PSCI_CPU_ON_64, [1, 0x4000_0000, 0], &mut vm).x0,
            x0(ON_PENDING)
        );
        assert_eq!(vm.started.len(), 1);
    }

    #[test]
    fn cpu_on_entry_outside_ram_is_invalid_address() {
        let mut vm = FakeVm::new(2);
        let out = handle(PSCI_CPU_ON_64, [1, 0x0900_0000, 0], &mut vm);
        assert_eq!(out, PsciOutcome::ret(INVALID_ADDRESS));
        assert!(vm.started.is_empty());
    }

    #[test]
    fn cpu_on_race_reported_by_backend_maps_to_psci_codes() {
        let mut vm = FakeVm::new(2);
        for (refusal, code) in [
            (CpuOnError::AlreadyOn, ALREADY_ON),
            (CpuOnError::OnPending, ON_PENDING),
            (CpuOnError::Internal, INTERNAL_FAILURE),
        ] {
            vm.refuse = Some(refusal);
            assert_eq!(
                handle(PSCI_CPU_ON_64, [1, 0x4000_0000, 0], &mut vm).x0,
                x0(code)
            );
        }
    }

    #[test]
    fn cpu_off_stops_the_caller() {
        assert_eq!(
            handle(PSCI_CPU_OFF, [0; 3], &mut FakeVm::new(1)).action,
            PsciAction::CpuOff
        );
    }

    #[test]
    fn cpu_suspend_to_a_standby_state_is_standby() {
        assert_eq!(
            handle(
                PSCI_CPU_SUSPEND_64,
                [0, 0x4000_0000, 0],
                &mut FakeVm::new(1)
            ),
            PsciOutcome::with(SUCCESS, PsciAction::Standby)
        );
    }

    #[test]
    fn cpu_suspend_to_a_power_down_state_resumes_at_the_entry_point() {
        let out = handle(
            PSCI_CPU_SUSPEND_64,
            [0x1_0000, 0x4008_0000, 0xc0de],
            &mut FakeVm::new(1),
        );
        assert_eq!(
            out.action,
            PsciAction::PowerDown {
                entry: GuestPhysAddr(0x4008_0000),
                context_id: 0xc0de
            }
        );
        // SMC32: the upper halves of the arguments are ignored.
        let out = handle(
            PSCI_CPU_SUSPEND_32,
            [0xffff_0000_0001_0000, 0x1_4008_0000, 0x1_0000_0007],
            &mut FakeVm::new(1),
        );
        assert_eq!(
            out.action,
            PsciAction::PowerDown {
                entry: GuestPhysAddr(0x4008_0000),
                context_id: 7
            }
        );
    }

    #[test]
    fn cpu_suspend_power_down_outside_ram_is_invalid_address() {
        assert_eq!(
            handle(
                PSCI_CPU_SUSPEND_64,
                [0x1_0000, 0x1000, 0],
                &mut FakeVm::new(1)
            ),
            PsciOutcome::ret(INVALID_ADDRESS)
        );
    }

    #[test]
    fn affinity_info_reports_each_state() {
        let mut vm = FakeVm::new(3);
        vm.states[2] = VcpuPowerState::OnPending;
        assert_eq!(handle(PSCI_AFFINITY_INFO_64, [0, 0, 0], &mut vm).x0, 0);
        assert_eq!(handle(PSCI_AFFINITY_INFO_64, [1, 0, 0], &mut vm).x0, 1);
        assert_eq!(handle(PSCI_AFFINITY_INFO_32, [2, 0, 0], &mut vm).x0, 2);
    }

    #[test]
    fn affinity_info_at_level_1_reports_the_cluster() {
        // Clusters of two: {0, 1}, {2, 3}, {4, 5}.
        let mut vm = FakeVm::new(6);
        vm.states[3] = VcpuPowerState::OnPending;
        let info = |vm: &mut FakeVm, mpidr: u64, level: u64| {
            handle(PSCI_AFFINITY_INFO_64, [mpidr, level, 0], vm).x0
        };
        // vCPU 0 is on: its cluster is on, whichever member (or Aff0) is named.
        assert_eq!(info(&mut vm, 0x001, 1), 0);
        assert_eq!(info(&mut vm, 0x0ff, 1), 0);
        // Cluster 1: vCPU 2 off, vCPU 3 pending.
        assert_eq!(info(&mut vm, 0x100, 1), 2);
        // Cluster 2: both off.
        assert_eq!(info(&mut vm, 0x200, 1), 1);
        // No cluster 3.
        assert_eq!(info(&mut vm, 0x300, 1), x0(INVALID_PARAMETERS));
        // Levels 2 and 3: the whole VM (one Aff2/Aff3 instance), which is on.
        assert_eq!(info(&mut vm, 0x200, 2), 0);
        assert_eq!(info(&mut vm, 0x0, 3), 0);
        // Level 4 does not exist.
        assert_eq!(info(&mut vm, 0x0, 4), x0(INVALID_PARAMETERS));
        // Everything off but the pending one: the VM is on-pending at level 2.
        vm.states[0] = VcpuPowerState::Off;
        assert_eq!(info(&mut vm, 0x0, 2), 2);
    }

    #[test]
    fn affinity_info_unknown_mpidr_is_invalid_parameters() {
        assert_eq!(
            handle(PSCI_AFFINITY_INFO_64, [9, 0, 0], &mut FakeVm::new(2)).x0,
            x0(INVALID_PARAMETERS)
        );
    }

    #[test]
    fn system_off_and_reset_stop_the_vm() {
        let mut vm = FakeVm::new(1);
        assert_eq!(
            handle(PSCI_SYSTEM_OFF, [0; 3], &mut vm).action,
            PsciAction::SystemOff
        );
        assert_eq!(
            handle(PSCI_SYSTEM_RESET, [0; 3], &mut vm).action,
            PsciAction::SystemReset
        );
    }

    #[test]
    fn migrate_info_type_says_migration_not_required() {
        assert_eq!(
            handle(PSCI_MIGRATE_INFO_TYPE, [0; 3], &mut FakeVm::new(1)).x0,
            2
        );
    }

    #[test]
    fn smccc_version_is_1_1() {
        assert_eq!(
            handle(SMCCC_VERSION, [0; 3], &mut FakeVm::new(1)).x0,
            0x1_0001
        );
    }

    #[test]
    fn arch_features_reports_workarounds_as_the_backend_says() {
        let mut vm = FakeVm::new(1);
        let q = |vm: &mut FakeVm, id: u32| handle(SMCCC_ARCH_FEATURES, [id as u64, 0, 0], vm).x0;
        assert_eq!(q(&mut vm, SMCCC_ARCH_WORKAROUND_1), x0(-1));
        vm.workaround = WorkaroundSupport::Mitigated;
        assert_eq!(q(&mut vm, SMCCC_ARCH_WORKAROUND_1), 0);
        vm.workaround = WorkaroundSupport::Unaffected;
        assert_eq!(q(&mut vm, SMCCC_ARCH_WORKAROUND_3), 1);
        vm.workaround = WorkaroundSupport::NotRequired;
        assert_eq!(q(&mut vm, SMCCC_ARCH_WORKAROUND_2), x0(-2));
        assert_eq!(q(&mut vm, smccc::arch::SMCCC_ARCH_SOC_ID), x0(-1));
        assert_eq!(q(&mut vm, SMCCC_VERSION), 0);
    }

    #[test]
    fn workaround_call_runs_only_when_mitigated() {
        let mut vm = FakeVm::new(1);
        assert_eq!(
            handle(SMCCC_ARCH_WORKAROUND_2, [1, 0, 0], &mut vm).x0,
            x0(-1)
        );
        assert!(vm.applied.is_empty());
        vm.workaround = WorkaroundSupport::Mitigated;
        assert_eq!(handle(SMCCC_ARCH_WORKAROUND_2, [1, 0, 0], &mut vm).x0, 0);
        assert_eq!(vm.applied, vec![(SMCCC_ARCH_WORKAROUND_2, 1)]);
    }

    /// A VM whose backend answers from a [`FirmwareSmccc`], as the hypervisor's does.
    struct FirmwareVm {
        vm: FakeVm,
        fw: FirmwareSmccc,
    }

    impl PsciBackend for FirmwareVm {
        fn vcpu_by_mpidr(&self, mpidr: u64) -> Option<VcpuId> {
            self.vm.vcpu_by_mpidr(mpidr)
        }
        fn vcpu_state(&self, vcpu: VcpuId) -> VcpuPowerState {
            self.vm.vcpu_state(vcpu)
        }
        fn vcpu_mpidrs(&self) -> Vec<u64> {
            self.vm.vcpu_mpidrs()
        }
        fn request_cpu_on(
            &mut self,
            vcpu: VcpuId,
            entry: GuestPhysAddr,
            context_id: u64,
        ) -> Result<(), CpuOnError> {
            self.vm.request_cpu_on(vcpu, entry, context_id)
        }
        fn entry_valid(&self, addr: GuestPhysAddr) -> bool {
            self.vm.entry_valid(addr)
        }
        fn smccc_version(&self) -> Option<u32> {
            self.fw.guest_version()
        }
        fn arch_workaround(&self, function_id: u32) -> WorkaroundSupport {
            self.fw.workaround(function_id)
        }
        fn apply_arch_workaround(&mut self, function_id: u32, arg: u64) {
            (self.fw.call)(function_id, arg)
        }
    }

    std::thread_local! {
        static FIRMWARE_CALLS: core::cell::RefCell<Vec<(u32, u64)>> =
            const { core::cell::RefCell::new(Vec::new()) };
    }

    fn record_call(function_id: u32, arg: u64) {
        FIRMWARE_CALLS.with(|c| c.borrow_mut().push((function_id, arg)));
    }

    fn firmware_vm(version: Option<u32>, workarounds: [i32; 3]) -> FirmwareVm {
        FIRMWARE_CALLS.with(|c| c.borrow_mut().clear());
        FirmwareVm {
            vm: FakeVm::new(1),
            fw: FirmwareSmccc {
                version,
                workarounds,
                call: record_call,
            },
        }
    }

    const WORKAROUNDS: [u32; 3] = [
        SMCCC_ARCH_WORKAROUND_1,
        SMCCC_ARCH_WORKAROUND_2,
        SMCCC_ARCH_WORKAROUND_3,
    ];

    #[test]
    fn firmware_with_the_workarounds_has_them_forwarded() {
        // SMCCC 1.2 firmware mitigating all three (the guest is told 1.1, what we implement).
        let mut vm = firmware_vm(Some(0x1_0002), [0, 0, 0]);
        assert_eq!(handle(SMCCC_VERSION, [0; 3], &mut vm).x0, 0x1_0001);
        assert_eq!(
            handle(PSCI_FEATURES, [SMCCC_VERSION as u64, 0, 0], &mut vm).x0,
            0
        );
        for (n, id) in WORKAROUNDS.into_iter().enumerate() {
            assert_eq!(
                handle(SMCCC_ARCH_FEATURES, [id as u64, 0, 0], &mut vm).x0,
                0,
                "{id:#x}"
            );
            assert_eq!(handle(id, [1, 0, 0], &mut vm).x0, 0, "{id:#x}");
            assert_eq!(
                FIRMWARE_CALLS.with(|c| c.borrow().len()),
                n + 1,
                "{id:#x} was not forwarded"
            );
        }
        assert_eq!(
            FIRMWARE_CALLS.with(|c| c.borrow().clone()),
            vec![
                (SMCCC_ARCH_WORKAROUND_1, 1),
                (SMCCC_ARCH_WORKAROUND_2, 1),
                (SMCCC_ARCH_WORKAROUND_3, 1)
            ]
        );
    }

    #[test]
    fn firmware_answers_other_than_mitigated_reach_the_guest_unchanged() {
        let mut vm = firmware_vm(Some(0x1_0001), [1, -2, -1]);
        let q =
            |vm: &mut FirmwareVm, id: u32| handle(SMCCC_ARCH_FEATURES, [id as u64, 0, 0], vm).x0;
        assert_eq!(q(&mut vm, SMCCC_ARCH_WORKAROUND_1), 1);
        assert_eq!(q(&mut vm, SMCCC_ARCH_WORKAROUND_2), x0(-2));
        assert_eq!(q(&mut vm, SMCCC_ARCH_WORKAROUND_3), x0(-1));
        for id in WORKAROUNDS {
            assert_eq!(handle(id, [0; 3], &mut vm).x0, x0(NOT_SUPPORTED), "{id:#x}");
        }
        assert!(FIRMWARE_CALLS.with(|c| c.borrow().is_empty()));
    }

    #[test]
    fn firmware_without_the_workarounds_makes_them_not_supported() {
        let mut vm = firmware_vm(Some(0x1_0001), [-1; 3]);
        for id in WORKAROUNDS {
            assert_eq!(
                handle(SMCCC_ARCH_FEATURES, [id as u64, 0, 0], &mut vm).x0,
                x0(NOT_SUPPORTED),
                "{id:#x}"
            );
            assert_eq!(handle(id, [1, 0, 0], &mut vm).x0, x0(NOT_SUPPORTED));
        }
        assert!(FIRMWARE_CALLS.with(|c| c.borrow().is_empty()));
    }

    #[test]
    fn smccc_1_0_firmware_gives_the_guest_smccc_1_0() {
        // No SMCCC_VERSION at the firmware: the guest finds none either (PSCI_FEATURES says
        // so, as DEN0028 discovery asks), nor ARCH_FEATURES, and the workarounds stay off
        // even if the cached answers said otherwise.
        let mut vm = firmware_vm(None, [0, 0, 0]);
        assert_eq!(
            handle(PSCI_FEATURES, [SMCCC_VERSION as u64, 0, 0], &mut vm).x0,
            x0(NOT_SUPPORTED)
        );
        assert_eq!(handle(SMCCC_VERSION, [0; 3], &mut vm).x0, x0(NOT_SUPPORTED));
        assert_eq!(
            handle(
                SMCCC_ARCH_FEATURES,
                [SMCCC_ARCH_WORKAROUND_1 as u64, 0, 0],
                &mut vm
            )
            .x0,
            x0(NOT_SUPPORTED)
        );
        assert_eq!(
            handle(SMCCC_ARCH_WORKAROUND_1, [0; 3], &mut vm).x0,
            x0(NOT_SUPPORTED)
        );
        assert!(FIRMWARE_CALLS.with(|c| c.borrow().is_empty()));
    }

    #[test]
    fn unknown_function_is_not_supported_in_x0() {
        let out = handle(0xc200_0000, [0; 3], &mut FakeVm::new(1));
        assert_eq!(out, PsciOutcome::ret(-1));
        assert_eq!(out.x0, u64::MAX);
    }
}
