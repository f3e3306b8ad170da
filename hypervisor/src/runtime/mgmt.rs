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
    /// Its images read from the datastore (given back to the pool when it is deleted).
    images: Vec<crate::types::HostPhysAddr>,
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
    /// Defines a VM from TOML (validated as at build time, images loaded); returns it, its
    /// `autostart` and where its images were loaded.
    fn define(&self, toml: &str) -> Result<Definition, ApiError>;
}

/// Sets where run-time definitions are kept (at boot, once the datastore is up).
pub fn set_files(files: &'static dyn DefinitionFiles) {
    *FILES.lock() = Some(files);
}

/// Sets the evaluation state shown and enforced.
pub fn set_evaluation(state: Evaluation, message: String) {
    *EVALUATION.lock() = Some((state, message));
}

/// A VM defined from TOML: its description, `autostart`, and the images loaded for it.
pub type Definition = (&'static VmDesc, bool, Vec<crate::types::HostPhysAddr>);

/// Adds a definition; refused if the name is taken.
pub fn define(
    desc: &'static VmDesc,
    autostart: bool,
    file: Option<String>,
) -> Result<(), ApiError> {
    define_with_images(desc, autostart, file, Vec::new())
}

/// [`define`] of a VM whose images were loaded for it (given back when it is deleted,
/// or now if the definition is refused).
fn define_with_images(
    desc: &'static VmDesc,
    autostart: bool,
    file: Option<String>,
    images: Vec<crate::types::HostPhysAddr>,
) -> Result<(), ApiError> {
    let mut defined = DEFINED.lock();
    if defined.iter().any(|d| d.desc.name == desc.name) {
        drop(defined);
        for base in images {
            arch::mem::forget_loaded(base);
        }
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
        images,
    });
    Ok(())
}

/// Defines the build-time VM table's VMs (they are created by `vms::create_all`).
pub fn define_builtin(table: &'static crate::config::VmTable) {
    for desc in table.vms {
        let _ = define(desc, true, None);
    }
}

/// What a boot module's VM has as its `file` (it has none: it cannot be deleted).
const BOOT_MODULE: &str = "boot module ";

/// Defines the VMs of the boot device tree's `hv,vm-config` modules (the loader handed
/// them over: docs/ARCHITECTURE.md "Boot"), their images taken in place from its
/// `hv,vm-image` modules; [`autostart`] then starts those marked so. A host with such VMs
/// is managed: it stays up when they stop, as with the datastore's.
pub fn define_boot_modules() {
    let Some(info) = arch::mem::boot_info() else {
        return;
    };
    let mut any = false;
    for m in crate::bootinfo::define_modules(info, &RuntimeBoard, arch::mem::module_bytes) {
        if let Some(key) = m.console_escape {
            // The file the loader handed over is the newer word on the host's settings.
            vms::set_switch_key(key);
            hvprintln!(
                "[hv] boot module {}: console switch key {}",
                m.module,
                vm_config::escape_key_name(key)
            );
        }
        let vms = match m.vms {
            Ok(v) => v,
            Err(e) => {
                hvprintln!("[hv] boot module {}: {e}", m.module);
                continue;
            }
        };
        for vm in vms {
            let desc = match vm.result {
                Ok(d) => d,
                Err(e) => {
                    hvprintln!("[hv] boot module {}: VM `{}`: {e}", m.module, vm.name);
                    continue;
                }
            };
            let file = format!("{BOOT_MODULE}{}", m.module);
            match define(desc, vm.autostart, Some(file)) {
                Ok(()) => {
                    any = true;
                    hvprintln!(
                        "[hv] VM `{}` defined from boot module {}{}",
                        desc.name,
                        m.module,
                        if vm.autostart { " (autostart)" } else { "" }
                    )
                }
                Err(e) => hvprintln!("[hv] boot module {}: {e}", m.module),
            }
        }
    }
    if any {
        vms::set_managed();
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
        None => logs
            .entry(tag.to_string())
            .or_insert_with(ConsoleLog::preallocated),
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
            memory_mib: arch::mem::ram_regions().iter().map(|m| m.size).sum::<u64>() >> 20,
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
        evaluate();
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
            let _ = vm.devices().press_power_button();
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
        let (desc, autostart, images) = files.define(toml)?;
        let refuse = |images: Vec<crate::types::HostPhysAddr>, e: ApiError| {
            for base in images {
                arch::mem::forget_loaded(base);
            }
            Err(e)
        };
        if desc_of(desc.name).is_ok() {
            return refuse(
                images,
                ApiError::Conflict(format!(
                    "a VM named \"{}\" exists already: choose another name",
                    desc.name
                )),
            );
        }
        let path = match files.save(desc.name, toml) {
            Ok(p) => p,
            Err(e) => return refuse(images, ApiError::Failed(e)),
        };
        define_with_images(desc, autostart, Some(path), images)?;
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
                Some(Some(f)) if f.starts_with(BOOT_MODULE) => {
                    return Err(ApiError::Conflict(format!(
                        "VM \"{name}\" is defined by a {f} of the boot loader: it cannot be deleted"
                    )))
                }
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
        let gone: Vec<Defined> = {
            let mut defined = DEFINED.lock();
            let (gone, kept) = core::mem::take(&mut *defined)
                .into_iter()
                .partition(|d| d.desc.name == name);
            *defined = kept;
            gone
        };
        for d in gone {
            for base in d.images {
                arch::mem::forget_loaded(base);
            }
        }
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

// ---- The datastore, the management network and the poll loop ----

use crate::block::{BlockDevice, BlockError, Partition};
use core::sync::atomic::{AtomicBool, AtomicU64};
use mgmt::store::{Blocks, Store};

/// The GPT label of the datastore partition.
pub const DATASTORE_LABEL: &str = "hv-datastore";
/// Biggest file read whole from the datastore (VM files, keys, records).
const SMALL_FILE: u64 = 1 << 20;

/// The datastore partition as `mgmt::store` reads it.
pub struct PartitionBlocks(Partition);

impl Blocks for PartitionBlocks {
    type Error = BlockError;
    fn blocks(&self) -> u64 {
        self.0.sectors()
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        BlockDevice::read(&mut self.0, lba, buf)
    }
    fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), BlockError> {
        BlockDevice::write(&mut self.0, lba, data)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        BlockDevice::flush(&mut self.0)
    }
}

/// The datastore's file system, once mounted.
pub static STORE: Mutex<Option<Store<PartitionBlocks>>> = Mutex::new(None);

/// The host port on the virtual switch.
struct HostPort {
    mac: [u8; 6],
}

impl mgmt::netif::FramePort for HostPort {
    fn receive(&mut self) -> Option<Vec<u8>> {
        super::net::switch().pop_for_host()
    }
    fn transmit(&mut self, frame: &[u8]) {
        let _ = super::net::switch().send_from_host(frame);
    }
    fn mac(&self) -> [u8; 6] {
        self.mac
    }
}

struct Server {
    net: mgmt::netif::MgmtNet<HostPort>,
    api: mgmt::api::Api<'static>,
}

static HOST: RuntimeHost = RuntimeHost;
static SERVER: Mutex<Option<Server>> = Mutex::new(None);
/// Frames wait for the host port.
static FRAMES: AtomicBool = AtomicBool::new(false);
/// Counter value at which the management stack wants its next poll (`u64::MAX`: none).
static POLL_AT: AtomicU64 = AtomicU64::new(u64::MAX);

fn now_ms() -> u64 {
    ms(cpu::counter())
}

/// Entropy the board has: `RNDR`, the SMCCC TRNG, and the jitter of the counter around
/// memory work (under emulation and on hardware, its low bits vary with what the caches,
/// the interconnect and the host did).
fn board_entropy() -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..8 {
        if let Some(r) = cpu::rndr() {
            out.extend_from_slice(&r.to_le_bytes());
        }
    }
    if let Some(t) = cpu::smccc_trng() {
        for w in t {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
    let mut scratch = alloc::vec![0u64; 4096];
    for round in 0..512u64 {
        let t0 = cpu::counter();
        for (i, w) in scratch.iter_mut().enumerate().step_by(61) {
            *w = w
                .wrapping_mul(6364136223846793005)
                .wrapping_add(round ^ i as u64 ^ t0);
        }
        let t1 = cpu::counter();
        out.push((t1.wrapping_sub(t0) ^ t1) as u8);
    }
    out.extend_from_slice(&scratch[7].to_le_bytes());
    out
}

/// What the management stack reads from the datastore at boot.
fn read_small(store: &Store<PartitionBlocks>, path: &str) -> Result<Vec<u8>, String> {
    store.read(path, SMALL_FILE).map_err(|e| e.to_string())
}

/// Mounts the datastore, seeds the CSPRNG, defines the VMs on it and brings up the
/// management network. A host without a `hv-datastore` partition keeps its build-time VM
/// table only.
pub fn boot() {
    define_builtin(arch::vm_table());
    let part = match crate::datastore::open(DATASTORE_LABEL, false, "the hypervisor (datastore)") {
        Ok(p) => p,
        Err(crate::datastore::DatastoreError::NotFound(_)) => return,
        Err(e) => {
            hvprintln!("[hv] mgmt: datastore: {e}");
            return;
        }
    };
    let mut store = match Store::open(PartitionBlocks(part)) {
        Ok(s) => s,
        Err(e) => {
            hvprintln!("[hv] mgmt: {e}");
            return;
        }
    };
    vms::set_managed();
    hvprintln!(
        "[hv] mgmt: datastore {DATASTORE_LABEL} mounted ({:?})",
        store.kind()
    );
    // Randomness first: sessions and TLS keys depend on it.
    let seed = store.read("HV/SEED.BIN", 4096).unwrap_or_default();
    if seed.is_empty() {
        hvprintln!("[hv] mgmt: no HV/SEED.BIN on the datastore: randomness from the board only");
    }
    let entropy = board_entropy();
    mgmt::rng::seed(&[&seed, &entropy, &cpu::counter().to_le_bytes()]);
    let mut fresh = [0u8; 64];
    if mgmt::rng::fill(&mut fresh).is_ok() {
        if let Err(e) = store.write("HV/SEED.BIN", &fresh) {
            hvprintln!("[hv] mgmt: cannot rewrite HV/SEED.BIN: {e}");
        }
    }
    load_vm_files(&mut store);
    let server = start_server(&store);
    *STORE.lock() = Some(store);
    evaluate();
    set_files(&DATASTORE_FILES);
    match server {
        Ok(s) => *SERVER.lock() = Some(s),
        Err(e) => hvprintln!("[hv] mgmt: management network not started: {e}"),
    }
    POLL_AT.store(0, Ordering::Release);
}

/// A stable, locally administered MAC for the host port, derived from the install's
/// certificate (so a DHCP server gives the host the same address every boot).
fn host_mac(seed: &[u8]) -> [u8; 6] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in seed {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    let b = h.to_le_bytes();
    [0x02, 0x68, 0x76, b[0], b[1], b[2]]
}

fn start_server(store: &Store<PartitionBlocks>) -> Result<Server, String> {
    let host_toml = match store.read("HV/HOST.TOM", SMALL_FILE) {
        Ok(b) => String::from_utf8(b).map_err(|_| "HV/HOST.TOM is not UTF-8".to_string())?,
        Err(mgmt::store::StoreError::NotFound(_)) => String::new(),
        Err(e) => return Err(e.to_string()),
    };
    let config =
        mgmt::netif::NetConfig::from_toml(&host_toml).map_err(|e| format!("HV/HOST.TOM: {e}"))?;
    let phc = String::from_utf8(read_small(store, "HV/ADMIN.PWD")?)
        .map_err(|_| "HV/ADMIN.PWD is not UTF-8".to_string())?;
    let auth = mgmt::auth::Auth::new("root", &phc, |b| mgmt::rng::fill(b).map_err(|_| ()))
        .map_err(|e| format!("HV/ADMIN.PWD: {e}"))?;
    let cert = read_small(store, "HV/CERT.DER")?;
    let ca = read_small(store, "HV/CA.DER")?;
    let key = read_small(store, "HV/KEY.DER")?;
    let mac = host_mac(&cert);
    let tls = mgmt::tls::TlsConfig::new(alloc::vec![cert, ca], key)
        .map_err(|e| format!("HV/CERT.DER, HV/KEY.DER: {e}"))?;
    let notify = alloc::sync::Arc::new(|| {
        FRAMES.store(true, Ordering::Release);
        if cpu::current_index() != 0 {
            vms::kick_cpu0();
        }
    });
    super::net::switch()
        .set_host_port(crate::net::MacAddr(mac), notify)
        .map_err(|e| e.to_string())?;
    let net =
        mgmt::netif::MgmtNet::new(HostPort { mac }, config, tls).map_err(|e| e.to_string())?;
    hvprintln!(
        "[hv] mgmt: host port {} on the uplink",
        crate::net::MacAddr(mac)
    );
    Ok(Server {
        net,
        api: mgmt::api::Api::new(&HOST, auth),
    })
}

/// The VM files on the datastore (`VMS/*.toml`, long or 8.3 names).
fn load_vm_files(store: &mut Store<PartitionBlocks>) {
    let entries = match store.list("VMS") {
        Ok(e) => e,
        Err(mgmt::store::StoreError::NotFound(_)) => return,
        Err(e) => {
            hvprintln!("[hv] mgmt: VMS: {e}");
            return;
        }
    };
    for e in entries {
        let lower = e.name.to_ascii_lowercase();
        if e.is_dir || !(lower.ends_with(".toml") || lower.ends_with(".tom")) {
            continue;
        }
        let path = format!("VMS/{}", e.short_name);
        let text = match store.read(&path, SMALL_FILE) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(err) => {
                hvprintln!("[hv] mgmt: {path}: {err}");
                continue;
            }
        };
        match define_from_store(store, &text) {
            Ok((desc, autostart, images)) => {
                match define_with_images(desc, autostart, Some(path.clone()), images) {
                    Ok(()) => hvprintln!(
                        "[hv] mgmt: VM `{}` defined from VMS/{}{}",
                        desc.name,
                        e.name,
                        if autostart { " (autostart)" } else { "" }
                    ),
                    Err(err) => hvprintln!("[hv] mgmt: VMS/{}: {err}", e.name),
                }
            }
            Err(ApiError::Invalid {
                message,
                line,
                column,
            }) => hvprintln!(
                "[hv] mgmt: VMS/{}:{}:{}: {message}",
                e.name,
                line.unwrap_or(0),
                column.unwrap_or(0)
            ),
            Err(err) => hvprintln!("[hv] mgmt: VMS/{}: {err}", e.name),
        }
    }
}

/// The datastore as the keeper of run-time definitions.
struct DatastoreFiles;
static DATASTORE_FILES: DatastoreFiles = DatastoreFiles;

impl DefinitionFiles for DatastoreFiles {
    fn save(&self, name: &str, toml: &str) -> Result<String, String> {
        let mut guard = STORE.lock();
        let store = guard.as_mut().ok_or("the datastore is not mounted")?;
        // An 8.3 name from the VM's name, numbered if taken.
        let stem: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(6)
            .collect::<String>()
            .to_ascii_uppercase();
        let stem = if stem.is_empty() { "VM".into() } else { stem };
        let taken: Vec<String> = store
            .list("VMS")
            .map(|l| l.into_iter().map(|e| e.short_name).collect())
            .unwrap_or_default();
        let path = (0..100)
            .map(|n| format!("{stem}{n:02}.TOM"))
            .find(|f| !taken.iter().any(|t| t.eq_ignore_ascii_case(f)))
            .ok_or("no free VM file name in VMS")?;
        let _ = store.create_dir("VMS");
        let path = format!("VMS/{path}");
        store
            .write(&path, toml.as_bytes())
            .map_err(|e| e.to_string())?;
        Ok(path)
    }

    fn remove(&self, path: &str) -> Result<(), String> {
        let mut guard = STORE.lock();
        let store = guard.as_mut().ok_or("the datastore is not mounted")?;
        store.remove(path).map_err(|e| e.to_string())
    }

    fn define(&self, toml: &str) -> Result<Definition, ApiError> {
        let mut guard = STORE.lock();
        let store = guard
            .as_mut()
            .ok_or_else(|| ApiError::Failed("the datastore is not mounted".into()))?;
        define_from_store(store, toml)
    }
}

/// Called (without the switch's lock) when the management stack should run soon.
pub fn poll_due() -> bool {
    FRAMES.load(Ordering::Acquire) || cpu::counter() >= POLL_AT.load(Ordering::Acquire)
}

/// When CPU 0's EL2 timer must fire for the management stack.
pub fn next_deadline() -> Option<u64> {
    let at = POLL_AT.load(Ordering::Acquire);
    (at != u64::MAX).then_some(at)
}

/// Runs the management stack: frames in and out, TCP timers, requests. CPU 0 only (the
/// host port's frames and the stack's timer interrupt go there).
pub fn poll() {
    if cpu::current_index() != 0 || !poll_due() {
        return;
    }
    FRAMES.store(false, Ordering::Release);
    check_shutdowns();
    let Some(mut guard) = SERVER.try_lock() else {
        return;
    };
    let Some(server) = guard.as_mut() else {
        POLL_AT.store(u64::MAX, Ordering::Release);
        return;
    };
    let Server { net, api } = server;
    let now = now_ms();
    let next = net.poll(now, &mut |r: &mgmt::request::Request<'_>, t| {
        api.handle(r, t)
    });
    for ev in net.take_events() {
        hvprintln!("[hv] {ev}");
    }
    // At least once a second: shutdown timeouts, TCP keep-alive.
    let wait_ms = next.unwrap_or(1000).clamp(1, 1000);
    let freq = cpu::counter_frequency();
    POLL_AT.store(cpu::counter() + wait_ms * freq / 1000, Ordering::Release);
}

/// Reads a VM's images from the datastore into pool RAM (kept as staged images).
struct StoreLoader<'a> {
    store: &'a Store<PartitionBlocks>,
    loaded: Vec<crate::types::HostPhysAddr>,
}

impl crate::config::define::ImageLoader for StoreLoader<'_> {
    fn load(&mut self, path: &str) -> Result<crate::config::ImageDesc, String> {
        let path = path.trim_start_matches('/');
        let size = self.store.size(path).map_err(|e| e.to_string())?;
        if size == 0 {
            return Err(format!("{path} on the datastore is empty"));
        }
        let rounded = size.div_ceil(4096) * 4096;
        let mut ram = arch::mem::alloc_ram(rounded, 4096, None)
            .map_err(|e| format!("{path}: no RAM to load it ({} MiB): {e}", size >> 20))?;
        let mut copy =
            |offset: u64, bytes: &[u8]| ram.write(offset, bytes).map_err(|e| e.to_string());
        self.store
            .read_chunks(path, &mut copy)
            .map_err(|e| e.to_string())?;
        let base = ram.base();
        arch::mem::keep_loaded(ram);
        self.loaded.push(base);
        Ok(crate::config::ImageDesc {
            path: alloc::boxed::Box::leak(path.to_string().into_boxed_str()),
            staging_base: base.0,
            size,
        })
    }
}

/// The board as the VM rules see it (passthrough devices, port groups).
struct RuntimeBoard;

impl vm_config::BoardFacts for RuntimeBoard {
    fn board_name(&self) -> &str {
        arch::board().name
    }
    fn port_groups(&self) -> Vec<String> {
        arch::board()
            .network
            .port_groups
            .iter()
            .map(|g| g.name.to_string())
            .collect()
    }
    fn device(&self, name: &str) -> Option<vm_config::DeviceUse> {
        let board = arch::board();
        let dev = board.devices.iter().find(|d| d.name == name)?;
        Some(if !dev.is_enabled() {
            vm_config::DeviceUse::Disabled {
                reason: "the board disables it".into(),
            }
        } else if board.is_hypervisor_device(dev) || super::is_driven(dev) {
            vm_config::DeviceUse::Console
        } else {
            // A VM is given whole 4 KiB pages: they must hold nothing else.
            let mine: Vec<(u64, u64)> = dev.regs.iter().map(|r| (r.base, r.size)).collect();
            let others = board
                .devices
                .iter()
                .filter(|d| d.name != dev.name)
                .flat_map(|d| {
                    d.regs.iter().map(move |r| {
                        (
                            alloc::format!(
                                "device \"{}\" window `{}` [{:#x}, +{:#x}]",
                                d.name,
                                r.name,
                                r.base,
                                r.size
                            ),
                            r.base,
                            r.size,
                        )
                    })
                });
            match vm_config::page_neighbour(&mine, others) {
                Some((page, other)) => vm_config::DeviceUse::SharesPage { page, other },
                None => vm_config::DeviceUse::Passable,
            }
        })
    }
    fn numa_nodes(&self) -> u32 {
        arch::board().numa_node_count()
    }
    fn passable_devices(&self) -> Vec<String> {
        let board = arch::board();
        board
            .devices
            .iter()
            .filter(|d| d.is_enabled() && !board.is_hypervisor_device(d) && !super::is_driven(d))
            .map(|d| d.name.to_string())
            .collect()
    }
}

/// Defines a VM from TOML whose image paths are on the datastore.
fn define_from_store(store: &Store<PartitionBlocks>, text: &str) -> Result<Definition, ApiError> {
    let invalid = |e: crate::config::define::DefineError| ApiError::Invalid {
        message: e.message,
        line: e.line.map(|l| l as u32),
        column: e.column.map(|c| c as u32),
    };
    let autostart = vm_config::parse_one(text)
        .map_err(|e| invalid(e.into()))?
        .autostart;
    let mut loader = StoreLoader {
        store,
        loaded: Vec::new(),
    };
    match crate::config::define::define(text, &RuntimeBoard, &mut loader) {
        Ok(desc) => Ok((desc, autostart, loader.loaded)),
        Err(e) => {
            for base in loader.loaded {
                arch::mem::forget_loaded(base);
            }
            Err(invalid(e))
        }
    }
}

/// The evaluation record on the datastore.
#[cfg(feature = "evaluation")]
const EVAL_FILE: &str = "HV/EVAL.BIN";

/// Evaluation builds: reads the board's RTC and the record of the first boot, keeps the
/// latest time seen, and sets what the API shows and [`RuntimeHost::start`] enforces.
/// Normal builds have no expiry.
pub fn evaluate() {
    #[cfg(feature = "evaluation")]
    {
        let Some(now) = crate::plugin::rtc::now() else {
            return cannot_count(
                "this evaluation build needs the board's real-time clock to count its 180 \
                 days and found no RTC driver: VMs cannot start",
            );
        };
        let mut guard = STORE.lock();
        let Some(store) = guard.as_mut() else {
            drop(guard);
            return cannot_count(
                "this evaluation build records its first boot on the datastore and found \
                 none: VMs cannot start",
            );
        };
        let stored = store.read(EVAL_FILE, 4096).ok();
        let (record, status) = mgmt::eval::check(stored.as_deref(), now);
        if let Some(r) = record {
            let bytes = r.to_bytes();
            if stored.as_deref() != Some(&bytes[..]) {
                if let Err(e) = store.write(EVAL_FILE, &bytes) {
                    hvprintln!("[hv] evaluation: cannot write {EVAL_FILE}: {e}");
                }
            }
        }
        drop(guard);
        let message = status.refusal().unwrap_or_default();
        let state = Evaluation {
            days_left: status.days_left.min(u32::MAX as u64) as u32,
            expired: status.expired,
        };
        let changed = EVALUATION.lock().as_ref().map(|(e, _)| e.clone()) != Some(state.clone());
        if changed {
            if status.expired {
                report_evaluation(&message);
            } else {
                hvprintln!(
                    "[hv] evaluation: day {} of {}, {} day{} left (first boot {})",
                    status.days_used,
                    mgmt::eval::EVALUATION_DAYS,
                    status.days_left,
                    if status.days_left == 1 { "" } else { "s" },
                    mgmt::eval::civil_from_days(
                        (status.first_boot / mgmt::eval::SECONDS_PER_DAY) as i64
                    )
                );
            }
        }
        set_evaluation(state, message);
    }
}

#[cfg(feature = "evaluation")]
fn report_evaluation(message: &str) {
    hvprintln!("[hv] evaluation: {message}");
}

/// An evaluation build that cannot count its days refuses every start, saying why.
#[cfg(feature = "evaluation")]
fn cannot_count(why: &str) {
    report_evaluation(why);
    set_evaluation(
        Evaluation {
            days_left: 0,
            expired: true,
        },
        why.into(),
    );
}
