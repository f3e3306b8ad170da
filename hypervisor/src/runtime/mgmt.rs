//! Host management at run time: the VM definitions the API manages, their console logs,
//! and [`RuntimeHost`], the `mgmt::host::Host` the API calls.
//!
//! A *definition* is a VM the host knows by name: one of the image's build-time VM table,
//! or one read from the datastore (`VMS/*.toml`) or created through the API. A defined VM
//! runs as an instance in the VM table (`vms`); stopping it keeps the instance (its RAM),
//! starting it again reloads its images, deleting it destroys the instance and the
//! definition.

use super::vms;
use crate::arch;
use crate::arch::cpu;
use crate::config::VmDesc;
use crate::hvprintln;
use crate::sync::Mutex;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use mgmt::console::ConsoleLog;
use mgmt::host::{ApiError, Evaluation, Host, HostSummary, VmInfo, VmState, VmStats};

/// How long a guest has to power off after `shutdown` before it is powered off.
pub const SHUTDOWN_TIMEOUT_MS: u64 = 30_000;

/// A VM the host knows by name.
struct Defined {
    desc: &'static VmDesc,
    autostart: bool,
    /// Its file on the datastore (deleted with it); `None`: the build-time VM table's.
    file: Option<String>,
    /// Counter value at which a `shutdown` turns into a power-off.
    shutdown_deadline: Option<u64>,
}

static DEFINED: Mutex<Vec<Defined>> = Mutex::new(Vec::new());
static CONSOLES: Mutex<BTreeMap<String, ConsoleLog>> = Mutex::new(BTreeMap::new());
/// The evaluation state (evaluation builds only) and the message a refused start gives.
static EVALUATION: Mutex<Option<(Evaluation, String)>> = Mutex::new(None);
/// How the datastore keeps VM files; `None` on hosts without one.
static FILES: Mutex<Option<&'static dyn DefinitionFiles>> = Mutex::new(None);

/// Where definitions made at run time are kept (the datastore).
pub trait DefinitionFiles: Sync {
    /// Saves a definition's TOML; returns the file's path.
    fn save(&self, name: &str, toml: &str) -> Result<String, String>;
    /// Removes a definition's file.
    fn remove(&self, path: &str) -> Result<(), String>;
    /// Defines a VM from TOML (validated as at build time, images loaded).
    fn define(&self, toml: &str) -> Result<(&'static VmDesc, bool), ApiError>;
}

/// Sets where run-time definitions are kept (at boot, once the datastore is up).
pub fn set_files(files: &'static dyn DefinitionFiles) {
    *FILES.lock() = Some(files);
}

/// Sets the evaluation state shown and enforced.
pub fn set_evaluation(state: Evaluation, message: String) {
    *EVALUATION.lock() = Some((state, message));
}

/// Adds a definition; refused if the name is taken.
pub fn define(
    desc: &'static VmDesc,
    autostart: bool,
    file: Option<String>,
) -> Result<(), ApiError> {
    let mut defined = DEFINED.lock();
    if defined.iter().any(|d| d.desc.name == desc.name) {
        return Err(ApiError::Conflict(format!(
            "a VM named \"{}\" exists already: choose another name",
            desc.name
        )));
    }
    defined.push(Defined {
        desc,
        autostart,
        file,
        shutdown_deadline: None,
    });
    Ok(())
}

/// Defines the build-time VM table's VMs (they are created by `vms::create_all`).
pub fn define_builtin(table: &'static crate::config::VmTable) {
    for desc in table.vms {
        let _ = define(desc, true, None);
    }
}

/// Starts the definitions marked `autostart` that are not in the VM table yet.
pub fn autostart() {
    let due: Vec<&'static VmDesc> = DEFINED
        .lock()
        .iter()
        .filter(|d| d.autostart && d.file.is_some())
        .map(|d| d.desc)
        .collect();
    for desc in due {
        if let Err(e) = RuntimeHost.start(desc.name) {
            hvprintln!("[hv] VM `{}` not started: {e}", desc.name);
        }
    }
}

/// Records a line of VM `tag`'s console output for the API.
pub fn record_console(tag: &str, line: &[u8]) {
    let mut logs = CONSOLES.lock();
    let log = match logs.get_mut(tag) {
        Some(l) => l,
        None => logs.entry(tag.to_string()).or_default(),
    };
    log.push(line);
    log.push(b"\n");
}

/// Powers off the VMs whose `shutdown` timed out. Called from the management poll.
pub fn check_shutdowns() {
    let now = cpu::counter();
    let due: Vec<&'static str> = {
        let mut defined = DEFINED.lock();
        defined
            .iter_mut()
            .filter(|d| d.shutdown_deadline.is_some_and(|t| now >= t))
            .map(|d| {
                d.shutdown_deadline = None;
                d.desc.name
            })
            .collect()
    };
    for name in due {
        if let Some((_, vm)) = vms::find_named(name) {
            if !vm.is_stopped() {
                hvprintln!(
                    "[hv] VM `{name}` did not power off within 30 s of shutdown: powering it off"
                );
                vms::stop_vm(&vm, "powered off: shutdown timed out");
            }
            vms::put(vm);
        }
    }
}

/// The management API's view of the machine.
pub struct RuntimeHost;

fn desc_of(name: &str) -> Result<&'static VmDesc, ApiError> {
    DEFINED
        .lock()
        .iter()
        .find(|d| d.desc.name == name)
        .map(|d| d.desc)
        .ok_or_else(|| ApiError::NoSuchVm(name.into()))
}

/// Runs `f` on the VM's instance, if it has one.
fn with_instance<R>(name: &str, f: impl FnOnce(&vms::Instance) -> R) -> Option<R> {
    let (_, vm) = vms::find_named(name)?;
    let r = f(&vm);
    vms::put(vm);
    Some(r)
}

fn ms(ticks: u64) -> u64 {
    ticks.saturating_mul(1000) / cpu::counter_frequency().max(1)
}

impl Host for RuntimeHost {
    fn summary(&self) -> HostSummary {
        let board = arch::board();
        HostSummary {
            board: board.name.into(),
            support: format!("{:?}", board.support).to_lowercase(),
            cpus: super::pcpu_count() as u32,
            memory_mib: board.memory.iter().map(|m| m.size).sum::<u64>() >> 20,
            memory_free_mib: arch::mem::free_ram_bytes() >> 20,
            uptime_s: cpu::counter() / cpu::counter_frequency().max(1),
            evaluation: EVALUATION.lock().as_ref().map(|(e, _)| e.clone()),
        }
    }

    fn vms(&self) -> Vec<VmInfo> {
        let defined: Vec<(&'static VmDesc, bool, bool)> = DEFINED
            .lock()
            .iter()
            .map(|d| (d.desc, d.autostart, d.shutdown_deadline.is_some()))
            .collect();
        defined
            .into_iter()
            .map(|(desc, autostart, shutting)| {
                let running = with_instance(desc.name, |vm| !vm.is_stopped()).unwrap_or(false);
                VmInfo {
                    name: desc.name.into(),
                    state: match (running, shutting) {
                        (false, _) => VmState::Stopped,
                        (true, true) => VmState::ShuttingDown,
                        (true, false) => VmState::Running,
                    },
                    vcpus: desc.vcpus,
                    memory_mib: desc.memory_size >> 20,
                    autostart,
                }
            })
            .collect()
    }

    fn stats(&self, name: &str) -> Result<VmStats, ApiError> {
        desc_of(name)?;
        Ok(with_instance(name, |vm| VmStats {
            cpu_time_ms: ms(vm.guest_ticks.load(Ordering::Relaxed)),
            exits: vm.exits.load(Ordering::Relaxed),
            memory_mib: vm.desc.memory_size >> 20,
        })
        .unwrap_or_default())
    }

    fn start(&self, name: &str) -> Result<(), ApiError> {
        let desc = desc_of(name)?;
        if let Some((e, message)) = EVALUATION.lock().as_ref() {
            if e.expired {
                return Err(ApiError::Forbidden(message.clone()));
            }
        }
        if let Some(d) = DEFINED.lock().iter_mut().find(|d| d.desc.name == name) {
            d.shutdown_deadline = None;
        }
        vms::set_managed();
        match with_instance(name, vms::start_again) {
            Some(true) => Ok(()),
            Some(false) => Err(ApiError::Conflict(format!("VM \"{name}\" is running"))),
            None => vms::create_from(desc)
                .map(|_| ())
                .map_err(|e| ApiError::Failed(format!("VM \"{name}\" not created: {e}"))),
        }
    }

    fn shutdown(&self, name: &str) -> Result<(), ApiError> {
        desc_of(name)?;
        let pressed = with_instance(name, |vm| {
            if vm.is_stopped() {
                return false;
            }
            // TODO(merge evalpwr): vm.devices.lock().press_power_button();
            vms::kick_vm(vm);
            true
        });
        if pressed != Some(true) {
            return Err(ApiError::Conflict(format!("VM \"{name}\" is not running")));
        }
        let deadline = cpu::counter() + SHUTDOWN_TIMEOUT_MS * cpu::counter_frequency() / 1000;
        if let Some(d) = DEFINED.lock().iter_mut().find(|d| d.desc.name == name) {
            d.shutdown_deadline = Some(deadline);
        }
        hvprintln!("[hv] VM `{name}`: power button pressed (shutdown)");
        Ok(())
    }

    fn stop(&self, name: &str) -> Result<(), ApiError> {
        desc_of(name)?;
        let stopped = with_instance(name, |vm| {
            if vm.is_stopped() {
                return false;
            }
            vms::stop_vm(vm, "stopped through the management API");
            true
        });
        if let Some(d) = DEFINED.lock().iter_mut().find(|d| d.desc.name == name) {
            d.shutdown_deadline = None;
        }
        match stopped {
            Some(true) => Ok(()),
            _ => Err(ApiError::Conflict(format!("VM \"{name}\" is not running"))),
        }
    }

    fn reset(&self, name: &str) -> Result<(), ApiError> {
        desc_of(name)?;
        let done = with_instance(name, |vm| {
            if vm.is_stopped() {
                return false;
            }
            vms::reset_vm(vm);
            true
        });
        match done {
            Some(true) => Ok(()),
            _ => Err(ApiError::Conflict(format!("VM \"{name}\" is not running"))),
        }
    }

    fn create(&self, toml: &str) -> Result<String, ApiError> {
        let files = (*FILES.lock()).ok_or_else(|| {
            ApiError::Forbidden("this host has no datastore: VMs come from its image".into())
        })?;
        let (desc, autostart) = files.define(toml)?;
        if desc_of(desc.name).is_ok() {
            return Err(ApiError::Conflict(format!(
                "a VM named \"{}\" exists already: choose another name",
                desc.name
            )));
        }
        let path = files.save(desc.name, toml).map_err(ApiError::Failed)?;
        define(desc, autostart, Some(path))?;
        hvprintln!("[hv] VM `{}` defined through the management API", desc.name);
        Ok(desc.name.into())
    }

    fn delete(&self, name: &str) -> Result<(), ApiError> {
        desc_of(name)?;
        if with_instance(name, |vm| !vm.is_stopped()).unwrap_or(false) {
            return Err(ApiError::Conflict(format!(
                "VM \"{name}\" is running: stop it first"
            )));
        }
        let file = {
            let defined = DEFINED.lock();
            let d = defined.iter().find(|d| d.desc.name == name);
            match d.map(|d| d.file.clone()) {
                Some(Some(f)) => f,
                _ => {
                    return Err(ApiError::Conflict(format!(
                        "VM \"{name}\" is in the image's build-time VM table: it cannot be deleted"
                    )))
                }
            }
        };
        if let Some(files) = *FILES.lock() {
            files.remove(&file).map_err(ApiError::Failed)?;
        }
        if let Some((slot, vm)) = vms::find_named(name) {
            vms::put(vm);
            vms::destroy_slot(slot);
        }
        DEFINED.lock().retain(|d| d.desc.name != name);
        CONSOLES.lock().remove(name);
        hvprintln!("[hv] VM `{name}` deleted through the management API");
        Ok(())
    }

    fn console_read(&self, name: &str, since: u64) -> Result<(u64, Vec<u8>), ApiError> {
        desc_of(name)?;
        Ok(CONSOLES
            .lock()
            .get(name)
            .map_or((0, Vec::new()), |log| log.read(since, 16 * 1024)))
    }

    fn console_write(&self, name: &str, bytes: &[u8]) -> Result<(), ApiError> {
        desc_of(name)?;
        with_instance(name, |vm| {
            if vm.is_stopped() {
                return false;
            }
            vms::console_write(vm, bytes);
            true
        })
        .filter(|&ok| ok)
        .map(|_| ())
        .ok_or_else(|| ApiError::Conflict(format!("VM \"{name}\" is not running")))
    }
}
