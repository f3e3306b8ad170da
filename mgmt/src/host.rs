//! What the API asks of the machine: the host's facts and the VM lifecycle.
//!
//! `hypervisor::runtime::mgmt` implements [`Host`] over the running VMs; the API's tests use
//! a fake. Every method is quick (no guest runs inside it) and returns an [`ApiError`] the
//! API turns into a status code.

use alloc::string::String;
use alloc::vec::Vec;
use serde::Serialize;

/// Facts about the host (`GET /api/host`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostSummary {
    /// The board's name (from its KDL).
    pub board: String,
    /// Its support level (`supported`, `experimental`, ...).
    pub support: String,
    /// Physical CPUs.
    pub cpus: u32,
    /// RAM the board has, in MiB.
    pub memory_mib: u64,
    /// RAM free for VMs, in MiB.
    pub memory_free_mib: u64,
    /// Seconds since the hypervisor started.
    pub uptime_s: u64,
    /// Evaluation builds: the days left; `None` in a normal build.
    pub evaluation: Option<Evaluation>,
}

/// The state of an evaluation build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    /// Whole days left (0 once expired).
    pub days_left: u32,
    /// The period has ended: no VM may start.
    pub expired: bool,
}

/// A VM's run state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VmState {
    /// Its vCPUs run.
    Running,
    /// Asked to power off (shutdown), not yet off.
    ShuttingDown,
    /// Powered off (defined, holds no RAM).
    Stopped,
}

/// One VM in the list (`GET /api/vms`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VmInfo {
    /// Its name (unique on the host).
    pub name: String,
    /// Run state.
    pub state: VmState,
    /// vCPUs.
    pub vcpus: u32,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// Started when the host boots.
    pub autostart: bool,
}

/// Per-VM counters (`GET /api/vms/NAME/stats`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VmStats {
    /// Time its vCPUs spent in the guest, in ms.
    pub cpu_time_ms: u64,
    /// Guest exits taken.
    pub exits: u64,
    /// Guest RAM it holds now, in MiB (0 when stopped).
    pub memory_mib: u64,
}

/// Why a host request failed; the API maps each to a status code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No VM of that name (404).
    #[error("no VM named \"{0}\"")]
    NoSuchVm(String),
    /// The request does not fit the VM's state, e.g. start a running VM (409).
    #[error("{0}")]
    Conflict(String),
    /// A VM definition was refused (400), with where in the TOML.
    #[error("{message}")]
    Invalid {
        /// What is wrong and what to write.
        message: String,
        /// 1-based line, if the error has a place.
        line: Option<u32>,
        /// 1-based column.
        column: Option<u32>,
    },
    /// Not allowed in this state of the host, e.g. evaluation expired (403).
    #[error("{0}")]
    Forbidden(String),
    /// The host could not do it (500), e.g. a datastore write failed.
    #[error("{0}")]
    Failed(String),
}

/// The machine as the API sees it. Implemented by the runtime; faked in tests.
pub trait Host: Sync {
    /// Facts about the host.
    fn summary(&self) -> HostSummary;
    /// Every defined VM, in definition order.
    fn vms(&self) -> Vec<VmInfo>;
    /// Counters of one VM.
    fn stats(&self, name: &str) -> Result<VmStats, ApiError>;
    /// Starts a stopped VM (images reloaded, RAM zeroed).
    fn start(&self, name: &str) -> Result<(), ApiError>;
    /// Asks a running VM's guest to power off; powered off after the timeout.
    fn shutdown(&self, name: &str) -> Result<(), ApiError>;
    /// Powers a running VM off now.
    fn stop(&self, name: &str) -> Result<(), ApiError>;
    /// Resets a running VM (as a power cycle).
    fn reset(&self, name: &str) -> Result<(), ApiError>;
    /// Defines a VM from one `[[vm]]` of TOML (validated as at build time), saves it on the
    /// datastore and returns its name. It is not started.
    fn create(&self, toml: &str) -> Result<String, ApiError>;
    /// Removes a stopped VM's definition (and its datastore file).
    fn delete(&self, name: &str) -> Result<(), ApiError>;
    /// Console output from byte offset `since` of the VM's output stream; returns the
    /// offset after the last byte given. Older bytes than the kept window are skipped.
    fn console_read(&self, name: &str, since: u64) -> Result<(u64, Vec<u8>), ApiError>;
    /// Bytes to the VM's console input.
    fn console_write(&self, name: &str, bytes: &[u8]) -> Result<(), ApiError>;
}
