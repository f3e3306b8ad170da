//! VM creation and the per-physical-CPU run loop: scheduling vCPUs, entering guests and
//! handling their exits.

use super::console::{self, InputRouter, Routed};
use super::ram::GuestRam;
use super::{irqchip, KICK_SGI};
use crate::arch::boot::MAX_CPUS;
use crate::arch::exception::ExitKind;
use crate::arch::sysreg::El1Context;
use crate::arch::{self, cpu};
use crate::config::VmDeviceDesc;
use crate::config::{VmDesc, VmTable};
use crate::conmux::Command;
use crate::exit::{self, Diag, Outcome, VmEvent};
use crate::hvprintln;
use crate::mm::stage2::Stage2;
use crate::platform::{BoardDesc, DeviceDesc};
use crate::ptimer::{PtimerState, PTIMER_INTID};
use crate::sched::{time_slice_ticks, RunQueue, VcpuRunState};
use crate::sync::Mutex;
use crate::types::{GuestPhysAddr, HostPhysAddr, IntId, VcpuId, VmId};
use crate::vcpu::{Attention, GuestRegs, Next, PowerState, VcpuShared};
use crate::vgic::{VGic, VcpuSet};
use crate::vm::devices::{DevicesError, VmDevices};
use crate::vm::{layout, ExitTally, Vm};
use crate::vtimer::{VtimerState, VTIMER_INTID};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// A VM as the runtime holds it: the [`Vm`] every CPU shares, and its RAM and stage-2
/// tables. Shared by the VM table and the vCPUs on their physical CPUs; when the last
/// reference goes ([`release`]), its RAM returns to the pool, its tables to the heap and
/// its VMID (its slot) may be reused.
pub struct Instance {
    vm: Vm,
    ram: Arc<Mutex<GuestRam>>,
    /// The virtual NUMA topology its device tree shows (a VM spanning nodes).
    numa: Option<crate::vm::numa::GuestNuma>,
    /// Set by `destroy`: each physical CPU drops the VM's vCPUs.
    destroyed: AtomicBool,
}

impl core::ops::Deref for Instance {
    type Target = Vm;
    fn deref(&self) -> &Vm {
        &self.vm
    }
}

/// The VM table at run time: slot `n` is VM `n` (and stage-2 VMID `n + 1`).
static VMS: Mutex<Vec<Option<Arc<Instance>>>> = Mutex::new(Vec::new());
static CREATED: AtomicBool = AtomicBool::new(false);
static VMS_RUNNING: AtomicUsize = AtomicUsize::new(0);
/// Set once the console was used to manage VMs: the machine then stays up when no VM runs
/// (until `poweroff`).
static MANAGED: AtomicBool = AtomicBool::new(false);
static INPUT: Mutex<InputRouter> = Mutex::new(InputRouter::new());

type Arrivals = Mutex<Vec<(Arc<Instance>, VcpuId)>>;
#[allow(clippy::declare_interior_mutable_const)] // Only to initialise `ARRIVALS`.
const NO_ARRIVALS: Arrivals = Mutex::new(Vec::new());
/// vCPUs a physical CPU is to take on (a VM created for it).
static ARRIVALS: [Arrivals; MAX_CPUS] = [NO_ARRIVALS; MAX_CPUS];
/// `ARRIVALS[cpu]` is not empty (so the run loop takes its lock only then).
static ARRIVING: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Per physical CPU: a VM of the CPU stopped, reset, is leaving or arrived since the
/// receiver fast path last looked ([`kick_fast`] checks this instead of each condition).
/// Raised by [`raise_attention`] (in [`kick_vm`], [`stop_vm`] and [`reset_vm`]).
static ATTENTION: [Attention; MAX_CPUS] = [const { Attention::new() }; MAX_CPUS];

/// Per physical CPU: counter ticks spent in a guest, ticks idle at EL2 (`WFI` with nothing
/// to run), and guest exits. Where a VM's time goes (the rest is the hypervisor's work);
/// printed with the network counters when the last VM stops.
static CPU_TIME: [[AtomicU64; 3]; MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; 3] }; MAX_CPUS];

fn add_time(slot: usize, since: u64) {
    add_cpu_time(slot, cpu::counter().wrapping_sub(since));
}

/// Adds `n` to this CPU's [`CPU_TIME`] `slot`. Only this CPU writes its row, so a load and
/// a store do (no read-modify-write loop: the exit path runs this twice per exit).
fn add_cpu_time(slot: usize, n: u64) {
    if let Some(c) = CPU_TIME
        .get(cpu::current_index())
        .and_then(|row| row.get(slot))
    {
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }
}

/// Adds the guest runs `lv` counted since the last call ([`ExitTally`]) to its VM's
/// counters and to this CPU's [`CPU_TIME`] slots 0 and 2.
#[inline]
fn flush_tally(lv: &mut LocalVcpu) {
    let Some(t) = lv.tally.flush_into(&lv.vm.guest_ticks, &lv.vm.exits) else {
        return;
    };
    if let Some([guest, _, exits]) = CPU_TIME.get(cpu::current_index()) {
        guest.store(
            guest.load(Ordering::Relaxed).wrapping_add(t.ticks),
            Ordering::Relaxed,
        );
        exits.store(
            exits.load(Ordering::Relaxed).wrapping_add(t.exits),
            Ordering::Relaxed,
        );
    }
}

/// Prints [`CPU_TIME`] of every CPU that ran a vCPU, in ms of the counter since boot.
fn print_cpu_time() {
    let freq = cpu::counter_frequency().max(1);
    let ms = |t: u64| t as f64 * 1000.0 / freq as f64;
    let now = cpu::counter();
    for (i, c) in CPU_TIME.iter().enumerate().take(arch::board().cpus.len()) {
        let [guest, idle, exits] = [0, 1, 2].map(|k| c[k].load(Ordering::Relaxed));
        if exits == 0 {
            // It never ran a vCPU (its idle loop is not counted).
            continue;
        }
        hvprintln!(
            "[hv] cpu {i}: {:.1} ms in guests, {:.1} ms idle, {:.1} ms at EL2 of {:.1} ms; {exits} exits",
            ms(guest),
            ms(idle),
            ms(now.saturating_sub(guest + idle)),
            ms(now)
        );
    }
}

/// VM `n`, if its slot holds one.
fn vm_at(n: usize) -> Option<Arc<Instance>> {
    VMS.lock().get(n).cloned().flatten()
}

/// Number of VM slots (used or free).
fn slot_count() -> usize {
    VMS.lock().len()
}

/// Drops a reference to a VM; the last one frees it and says what the host has left.
fn release(vm: Arc<Instance>) {
    let Some(inst) = Arc::into_inner(vm) else {
        return;
    };
    let (id, desc) = (inst.vm.id, inst.vm.desc);
    drop(inst);
    detach_disks(id, desc);
    let (id, name) = (id.0, desc.name);
    // Its VMID may be reused: no CPU may keep translations of it.
    cpu::flush_guest_tlbs();
    hvprintln!(
        "[hv] VM {id} `{name}` destroyed; host memory heap_used={} pool_free={}",
        arch::heap_used(),
        arch::mem::free_ram_bytes()
    );
}

/// The VM a physical SPI is passed through to.
fn passthrough_owner(intid: u32) -> Option<Arc<Instance>> {
    VMS.lock()
        .iter()
        .flatten()
        .find(|vm| vm.passthrough_irq(intid).is_some())
        .cloned()
}

/// Unmasks a passed-through interrupt at the physical GIC, routed to the CPU of the VM's
/// vCPU 0 with the trigger the board declares.
fn enable_passthrough_irq(vm: &Vm, irq: &crate::platform::IrqDesc) {
    let target = arch::board().cpus[vm.vcpus[0].pcpu].mpidr;
    let edge = irq.trigger == crate::platform::Trigger::Edge;
    irqchip().enable(irq.intid, 0xa0, edge, target);
}

/// Makes `key` the console switch key (a VM file's `[console] escape`).
pub fn set_switch_key(key: u8) {
    INPUT.lock().set_switch_key(key);
}

/// The console switch key.
fn switch_key() -> u8 {
    INPUT.lock().switch_key()
}

/// Blocks a secondary CPU until the boot CPU has created the VMs.
pub fn wait_until_created() {
    while !CREATED.load(Ordering::Acquire) {
        cpu::yield_now(); // Hands the CPU over under QEMU's round-robin TCG (see `sync`).
    }
}

/// Creates every VM of the table: RAM, stage-2, images, DTB, devices.
pub fn create_all(board: &'static BoardDesc, table: &'static VmTable, pcpus: usize) {
    if let Err(e) = arch::mem::init_pool() {
        hvprintln!("[hv] board memory map unusable: {e}; no VM can run");
        cpu::firmware_system_off();
    }
    let mut created = 0;
    for (i, desc) in table.vms.iter().enumerate() {
        let placed = place_vcpus(VmId(i), desc, pcpus);
        match placed.and_then(|pcpus| admit(VmId(i), desc, &pcpus)) {
            Ok(()) => created += 1,
            Err(e) => {
                VMS.lock().push(None);
                hvprintln!("[hv] VM {} ({}) not created: {e}", i, desc.name);
            }
        }
    }
    if created == 0 && !MANAGED.load(Ordering::Acquire) {
        hvprintln!("[hv] no VM to run; powering off");
        cpu::firmware_system_off();
    }
    CREATED.store(true, Ordering::Release);
    // The console's receive interrupt goes to this (the boot) CPU.
    if let Some(dev) = board.console_device() {
        if let Some(irq) = dev.irqs.first() {
            irqchip().enable(irq.intid, 0xa0, false, board.cpus[0].mpidr);
            console::enable_rx_interrupt();
            let first = VMS
                .lock()
                .first()
                .and_then(|s| s.as_ref().map(|vm| vm.desc.name));
            hvprintln!(
                "[hv] console input goes to VM 0{}; keys: {}",
                first.map_or(String::new(), |n| format!(" `{n}`")),
                crate::conmux::keys_help(switch_key())
            );
        }
    }
}

/// Errors creating a VM.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Not enough free RAM.
    #[error("cannot allocate {0} MiB of guest RAM; lower `memory_mib` or free board RAM")]
    NoMemory(u64),
    /// Stage-2 mapping failed.
    #[error("stage-2 mapping failed: {0}")]
    Stage2(crate::mm::stage2::Stage2Error),
    /// Kernel image is not a Linux arm64 Image.
    #[error(
        "kernel `{path}` ({size} bytes at host {at:#x}) has no arm64 Image header: bytes \
         0x38..0x3c are {found:02x?}, not `ARM\\x64` ({:02x?}); the file is not an arm64 \
         Image, or the loader put it elsewhere than {at:#x}",
        *b"ARM\x64"
    )]
    BadKernel {
        /// The image's build-time path.
        path: &'static str,
        /// Where it was looked for.
        at: u64,
        /// Its size.
        size: u64,
        /// What is where the magic belongs.
        found: [u8; 4],
    },
    /// Images do not fit in guest RAM.
    #[error("kernel, initrd and DTB do not fit in {0} MiB of guest RAM")]
    TooSmall(u64),
    /// The VM's devices could not be built.
    #[error("devices: {0}")]
    Devices(DevicesError),
    /// A virtual NIC could not be made.
    #[error("network: {0}")]
    Nic(super::net::NicError),
    /// DTB generation failed.
    #[error("device tree: {0}")]
    Fdt(crate::fdt::FdtError),
    /// The vCPUs cannot be placed on the board's CPUs.
    #[error("placement: {0}")]
    Placement(crate::sched::PlacementError),
    /// The RAM cannot be laid out over the VM's NUMA nodes.
    #[error("NUMA: {0}")]
    Numa(crate::vm::numa::NumaError),
    /// An image is not where the loader staged it.
    #[error("{0}")]
    Memory(#[from] arch::mem::MemError),
    /// An image could not be put into guest RAM.
    #[error("{0}")]
    Ram(#[from] super::ram::RamError),
    /// A passthrough device cannot be given to this VM.
    #[error("passthrough device `{0}`: {1}; change `devices` in the VM file")]
    Passthrough(&'static str, &'static str),
    /// A virtual disk's partition cannot be opened.
    #[error(
        "disk \"{0}\": {1}; check `[[vm.disk]]` in the VM file against `[hv] datastore:` at boot"
    )]
    Disk(&'static str, crate::datastore::DatastoreError),
    /// A virtual disk's partition is smaller than the size the VM file asks for.
    #[error("disk \"{label}\": the partition has {have} MiB, the VM file asks for {want} MiB")]
    DiskTooSmall {
        /// The partition label.
        label: &'static str,
        /// Its size.
        have: u64,
        /// `size-mib` in the VM file.
        want: u64,
    },
    /// A virtual disk controller could not be built.
    #[error("disk \"{0}\": {1}")]
    DiskController(&'static str, crate::vnvme::VNvmeError),
}

/// The physical CPUs (of the first `online`) for VM `id`'s vCPUs: on one node (its
/// `numa-node`, or the least loaded), or over every node for `numa = "spread"`, each on
/// the least loaded CPU there given the vCPUs the VMs in the table already run
/// ([`crate::sched::place_vm`]).
fn place_vcpus(id: VmId, desc: &VmDesc, online: usize) -> Result<Vec<usize>, CreateError> {
    use crate::config::VmNuma;
    use crate::sched::{place_vm, NumaChoice, NumaNode};
    let board = arch::board();
    let nodes: Vec<NumaNode> = board
        .cpus
        .iter()
        .take(online.max(1))
        .map(|c| NumaNode(c.numa_node))
        .collect();
    let mut load = alloc::vec![0u32; nodes.len()];
    for vm in VMS.lock().iter().flatten() {
        if vm.destroyed.load(Ordering::Acquire) {
            continue;
        }
        for v in &vm.vcpus {
            if let Some(l) = load.get_mut(v.pcpu) {
                *l += 1;
            }
        }
    }
    let choice = match desc.numa {
        VmNuma::Local => NumaChoice::Local,
        VmNuma::Node(n) => NumaChoice::Node(NumaNode(n)),
        VmNuma::Spread => NumaChoice::Spread,
    };
    let placed =
        place_vm(id, desc.vcpus, choice, &nodes, &mut load).map_err(CreateError::Placement)?;
    Ok(placed.into_iter().map(|p| p.0).collect())
}

/// The NUMA node of host RAM at `addr` (the board's `memory` regions).
fn node_of(addr: HostPhysAddr) -> Option<u32> {
    arch::board()
        .memory
        .iter()
        .find(|m| addr.0 >= m.base && addr.0 - m.base < m.size)
        .map(|m| m.numa_node)
}

/// Creates VM `id` (its slot, which must exist or be the next one) from `desc` with vCPU
/// `n` on physical CPU `pcpus[n]`, puts it in the VM table, hands its vCPUs to their CPUs
/// and starts vCPU 0.
fn admit(id: VmId, desc: &'static VmDesc, pcpus: &[usize]) -> Result<(), CreateError> {
    let before = arch::heap_used();
    // Built on this CPU, but its state (vGIC, devices, stage-2 tables, vCPU table) belongs
    // on the node of the CPU that runs its vCPU 0.
    let board = arch::board();
    let node = pcpus
        .first()
        .and_then(|&p| board.cpus.get(p))
        .map_or(0, |c| c.numa_node);
    let vm = arch::heap::with_alloc_node(node, || create_vm(id, desc, pcpus).map(Arc::new))?;
    // Heap taken by creating the VM (vGIC, stage-2 tables, devices, vCPU table), plus the
    // run state each vCPU gets on its physical CPU's run queue.
    let heap = arch::heap_used().saturating_sub(before);
    let run_state = vm.vcpus.len() * core::mem::size_of::<LocalVcpu>();
    hvprintln!(
        "[hv] VM {} `{}`: {} vCPU(s) on pCPU(s) {:?}, {} MiB RAM at host {:#x}, hypervisor memory {} B",
        vm.id.0,
        vm.desc.name,
        vm.vcpus.len(),
        pcpus,
        vm.desc.memory_size >> 20,
        vm.ram_host.0,
        heap + run_state as u64
    );
    {
        let ram = vm.ram.lock();
        for (offset, host, size) in ram.host_ranges() {
            let node = node_of(host).map_or("?".into(), |n| format!("{n}"));
            hvprintln!(
                "[hv] VM {} `{}`: RAM {:#x}..{:#x} at host {:#x} on NUMA node {node}",
                vm.id.0,
                vm.desc.name,
                layout::RAM_BASE + offset,
                layout::RAM_BASE + offset + size,
                host.0
            );
        }
    }
    if board.cpus.iter().any(|c| c.numa_node != node) {
        // Where the state really is: the heap that holds it, and the addresses, so that a
        // test can check them against the machine's memory map.
        let at = Arc::as_ptr(&vm) as usize;
        let root = vm.vttbr & 0x0000_ffff_ffff_fffe;
        hvprintln!(
            "[hv] VM {} `{}`: hypervisor state on NUMA node {}: VM at host {at:#x}, stage-2 root at host {root:#x}",
            vm.id.0,
            vm.desc.name,
            arch::heap::heap_node_of(at).map_or("?".into(), |n| format!("{n}")),
        );
    }
    if let Some(numa) = &vm.numa {
        hvprintln!(
            "[hv] VM {} `{}`: virtual NUMA nodes: vCPUs on {:?}, distances {:?}",
            vm.id.0,
            vm.desc.name,
            numa.vcpu_nodes,
            numa.distances
        );
    }
    {
        let mut table = VMS.lock();
        match table.get_mut(id.0) {
            Some(slot) => *slot = Some(vm.clone()),
            None => table.push(Some(vm.clone())),
        }
    }
    VMS_RUNNING.fetch_add(1, Ordering::AcqRel);
    // Physical interrupts of passed-through devices go to the CPU of the VM's vCPU 0.
    for dev in &vm.passthrough {
        for irq in dev.irqs {
            enable_passthrough_irq(&vm, irq);
            hvprintln!(
                "[hv] VM {} `{}`: device {} passed through, INTID {}",
                vm.id.0,
                vm.desc.name,
                dev.name,
                irq.intid
            );
        }
    }
    for (v, shared) in vm.vcpus.iter().enumerate() {
        if let Some(queue) = ARRIVALS.get(shared.pcpu) {
            queue.lock().push((vm.clone(), VcpuId(v)));
            ARRIVING[shared.pcpu].store(true, Ordering::Release);
        }
    }
    kick_vm(&vm);
    Ok(())
}

fn create_vm(id: VmId, desc: &'static VmDesc, pcpus: &[usize]) -> Result<Instance, CreateError> {
    // RAM from the node(s) of the physical CPUs the vCPUs run on: one part per node.
    // Not zeroed here: each 2 MiB block is zeroed when the guest first gets it (GuestRam).
    let board = arch::board();
    let vcpu_nodes: Vec<u32> = pcpus
        .iter()
        .map(|&p| board.cpus.get(p).map_or(0, |c| c.numa_node))
        .collect();
    let split =
        crate::vm::numa::ram_split(desc.memory_size, &vcpu_nodes).map_err(CreateError::Numa)?;
    let mut parts = Vec::with_capacity(split.len());
    let mut ram_nodes = Vec::with_capacity(split.len());
    for &(node, size) in &split {
        let part = arch::mem::alloc_ram(size, crate::mm::BLOCK_2M, Some(node))
            .map_err(|_| CreateError::NoMemory(desc.memory_size >> 20))?;
        let got = node_of(part.base()).unwrap_or(node);
        if got != node {
            hvprintln!(
                "[hv] VM {} `{}`: NUMA node {node} has no {} MiB free; that RAM comes from node {got}",
                id.0,
                desc.name,
                size >> 20
            );
        }
        ram_nodes.push((got, size));
        parts.push(part);
    }
    let numa =
        crate::vm::numa::guest_numa(&ram_nodes, &vcpu_nodes, |a, b| board.numa_distance(a, b));
    if numa.is_none() && crate::vm::numa::nodes_of(&vcpu_nodes).len() > 1 {
        hvprintln!(
            "[hv] VM {} `{}`: its vCPUs span NUMA nodes but its RAM does not follow them; the guest sees no NUMA topology",
            id.0,
            desc.name
        );
    }
    let mut s2 = Stage2::new(id).map_err(CreateError::Stage2)?;
    if arch::board().stage2_ram_mappings == crate::platform::Stage2RamMappings::Pages {
        // The board's KDL says so (QEMU's machines: see `Stage2::use_pages_only`).
        s2.use_pages_only();
    }
    if gic_v2() {
        // The guest's GICv2 CPU interface is the hardware's virtual CPU interface (GICV).
        let gicv = arch::board()
            .gic
            .virtual_cpu_interface
            .ok_or(CreateError::Passthrough(
                "gic",
                "the board's GICv2 has no virtual-cpu-interface",
            ))?;
        for (guest, host) in layout::gicv_pages(gicv.base, gicv.size) {
            s2.map_device(GuestPhysAddr(guest), HostPhysAddr(host), 0x1000)
                .map_err(CreateError::Stage2)?;
        }
    }
    let passthrough = passthrough_devices(desc)?;
    for dev in &passthrough {
        // Whole pages: a window need not be page aligned, and the VM rules made sure the
        // pages that cover it hold no other device (`vm_config::page_neighbour`).
        let windows: Vec<(u64, u64)> = dev.regs.iter().map(|r| (r.base, r.size)).collect();
        for (base, size) in vm_config::covering_pages(&windows) {
            s2.map_device(GuestPhysAddr(base), HostPhysAddr(base), size)
                .map_err(CreateError::Stage2)?;
        }
    }
    let vttbr = s2.vttbr();
    let mut ram = GuestRam::from_parts(parts, s2);
    let boot = load_images(desc, &mut ram, &passthrough, 0, numa.as_ref())?;
    let host_base = ram.host_base();
    let ram = Arc::new(Mutex::new(ram));
    // As many SPIs as its devices raise: the console, PCI (disks and NICs are PCI
    // functions) and the passed-through devices' SPIs.
    let has_pci = !desc.disks.is_empty() || !desc.nics.is_empty();
    let spis = layout::vgic_spis(
        has_pci,
        passthrough
            .iter()
            .flat_map(|d| d.irqs.iter().map(|i| i.intid)),
    );
    let mut devices = VmDevices::with_spis(
        arch::board().gic.version,
        desc.vcpus as usize,
        spis,
        desc.name,
        console::print_vm_line,
    )
    .map_err(CreateError::Devices)?
    .with_memory(ram.clone());
    attach_disks(id, desc, &mut devices)?;
    if let Err(e) =
        super::net::attach_nics(id, desc, &mut devices, pcpus.first().copied().unwrap_or(0))
    {
        detach_disks(id, desc);
        return Err(CreateError::Nic(e));
    }
    notify_eois(&mut devices.vgic, &passthrough);
    let mut vm = Vm::new(
        id,
        desc,
        host_base,
        vttbr,
        devices,
        pcpus,
        boot,
        passthrough,
    );
    vm.firmware = super::firmware_smccc();
    Ok(Instance {
        vm,
        ram,
        numa,
        destroyed: AtomicBool::new(false),
    })
}

/// Who holds a VM's partitions in the datastore (named when another open is refused).
fn disk_holder(id: VmId, desc: &VmDesc) -> String {
    format!("VM {} `{}`", id.0, desc.name)
}

/// Gives the VM its virtual disks: each `[[vm.disk]]` partition, opened in the datastore,
/// behind the controller the VM file names, as a function on the VM's PCIe bus. On an
/// error the partitions opened so far are given back.
fn attach_disks(
    id: VmId,
    desc: &'static VmDesc,
    devices: &mut VmDevices,
) -> Result<(), CreateError> {
    use crate::config::DiskController;
    use crate::datastore;
    let holder = disk_holder(id, desc);
    for (n, d) in desc.disks.iter().enumerate() {
        let attached = (|| {
            let part = datastore::open(d.partition, d.read_only, &holder)
                .map_err(|e| CreateError::Disk(d.partition, e))?;
            let part = match d.size {
                None => part,
                Some(bytes) => {
                    let have =
                        crate::block::BlockDevice::sectors(&part) * crate::block::SECTOR as u64;
                    part.truncated(bytes / crate::block::SECTOR as u64).ok_or(
                        CreateError::DiskTooSmall {
                            label: d.partition,
                            have: have >> 20,
                            want: bytes >> 20,
                        },
                    )?
                }
            };
            let disk: Box<dyn crate::block::BlockDevice> = Box::new(part);
            // Unique per disk of the VM (an NVMe guest derives its subsystem NQN from it).
            let label: String = d
                .partition
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(14)
                .collect();
            let serial = format!("hv{n}-{label}");
            let function: Box<dyn crate::pci::PciFunction> = match d.controller {
                DiskController::Nvme => Box::new(
                    crate::vnvme::VNvme::new(disk, &serial, None, Default::default())
                        .map_err(|e| CreateError::DiskController(d.partition, e))?,
                ),
                DiskController::VirtioBlk => Box::new(crate::virtio::pci::VirtioPci::new(
                    crate::virtio::blk::VirtioBlk::new(disk, &serial),
                )),
                DiskController::Ahci => {
                    Box::new(crate::vahci::VAhci::new(disk, &serial, Default::default()))
                }
            };
            devices
                .add_pci(d.partition, function)
                .map_err(CreateError::Devices)
        })();
        if let Err(e) = attached {
            for opened in &desc.disks[..=n] {
                datastore::release(opened.partition, &holder);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Gives back a destroyed (or never created) VM's partitions.
fn detach_disks(id: VmId, desc: &VmDesc) {
    let holder = disk_holder(id, desc);
    for d in desc.disks {
        crate::datastore::release(d.partition, &holder);
    }
}

/// Asks the vGIC for the guest deactivations the core acts on: each vCPU's virtual timer
/// and PMU interrupt (to unmask the physical source) and passed-through interrupts.
fn notify_eois(vgic: &mut VGic, passthrough: &[&'static DeviceDesc]) {
    for v in 0..vgic.vcpu_count() {
        let _ = vgic.set_eoi_notify(IntId(layout::VTIMER_INTID), VcpuId(v), true);
        let _ = vgic.set_eoi_notify(IntId(layout::PMU_INTID), VcpuId(v), true);
    }
    for dev in passthrough {
        for irq in dev.irqs {
            let _ = vgic.set_eoi_notify(IntId(irq.intid), VcpuId(0), true);
        }
    }
}

/// True if the board's GIC (and so every guest's) is a GICv2.
pub fn gic_v2() -> bool {
    arch::board().gic.version == crate::platform::GicVersion::V2
}

/// The board devices a VM asks for, checked against the guest-physical layout (they are
/// mapped at their host address) and the virtual GIC's SPI range.
fn passthrough_devices(desc: &'static VmDesc) -> Result<Vec<&'static DeviceDesc>, CreateError> {
    let board = arch::board();
    let mut out = Vec::new();
    for d in desc.devices {
        let VmDeviceDesc::Passthrough { device } = *d;
        let dev = board
            .devices
            .iter()
            .find(|x| x.name == device && x.is_enabled())
            .ok_or(CreateError::Passthrough(
                device,
                "not an enabled device of this board",
            ))?;
        // The pages that will be mapped, not only the bytes of the windows.
        let windows: Vec<(u64, u64)> = dev.regs.iter().map(|r| (r.base, r.size)).collect();
        for (base, size) in vm_config::covering_pages(&windows) {
            let end = base.saturating_add(size);
            let clash = [
                (layout::GICD_BASE, layout::UART_BASE + layout::UART_SIZE),
                (layout::GPIO_BASE, layout::GPIO_BASE + layout::GPIO_SIZE),
                (layout::RAM_BASE, layout::RAM_BASE + desc.memory_size),
            ]
            .iter()
            .any(|&(s, e)| base < e && s < end);
            if clash {
                return Err(CreateError::Passthrough(
                    device,
                    "its registers overlap the guest's GIC, UART, power-button GPIO or RAM",
                ));
            }
        }
        if dev.irqs.iter().any(|i| i.intid == layout::GPIO_INTID) {
            return Err(CreateError::Passthrough(
                device,
                "its interrupt is the guest's power-button GPIO SPI (INTID 39)",
            ));
        }
        if dev
            .irqs
            .iter()
            .any(|i| !(32..=layout::LAST_SPI_INTID).contains(&i.intid))
        {
            return Err(CreateError::Passthrough(
                device,
                "an interrupt is not an SPI (INTIDs 32-1019)",
            ));
        }
        if board.is_hypervisor_device(dev) {
            return Err(CreateError::Passthrough(
                device,
                "the hypervisor drives it itself (console or interrupt controller)",
            ));
        }
        if super::is_driven(dev) {
            return Err(CreateError::Passthrough(
                device,
                "the hypervisor drives it itself (a driver plugin probed it, e.g. a PCIe host bridge whose disks are the datastore's)",
            ));
        }
        out.push(dev);
    }
    Ok(out)
}

/// Copies kernel, initrd and DTB from the staging area into guest RAM; returns the guest
/// entry point and DTB address.
fn load_images(
    desc: &'static VmDesc,
    ram: &mut GuestRam,
    passthrough: &[&'static DeviceDesc],
    reset_count: u32,
    numa: Option<&crate::vm::numa::GuestNuma>,
) -> Result<(u64, u64), CreateError> {
    let kernel = arch::mem::staged(&desc.kernel)?;
    let mut header = [0u8; 64];
    kernel.read(0, &mut header)?;
    if &header[0x38..0x3c] != b"ARM\x64" {
        return Err(CreateError::BadKernel {
            path: desc.kernel.path,
            at: desc.kernel.staging_base,
            size: desc.kernel.size,
            found: [header[0x38], header[0x39], header[0x3a], header[0x3b]],
        });
    }
    let le = |o: usize| u64::from_le_bytes(header[o..o + 8].try_into().unwrap_or([0; 8]));
    let text_offset = le(8);
    let image_size = le(16).max(desc.kernel.size);
    let size = desc.memory_size;
    let dtb_off = size
        .checked_sub(layout::DTB_OFFSET_FROM_END)
        .ok_or(CreateError::TooSmall(size >> 20))?;
    // The header's fields are the image's word: never trust them to stay in range.
    let kernel_end = text_offset
        .checked_add(image_size)
        .filter(|&e| e <= dtb_off)
        .ok_or(CreateError::TooSmall(size >> 20))?;
    ram.copy_part(text_offset, &kernel, kernel.size())?;
    let mut initrd = None;
    if let Some(rd) = desc.initrd {
        // The initrd sits just below the DTB, 4 KiB aligned.
        let off = dtb_off
            .checked_sub(rd.size)
            .map(|o| o & !0xfff)
            .filter(|&o| o >= kernel_end)
            .ok_or(CreateError::TooSmall(size >> 20))?;
        let rd_img = arch::mem::staged(&rd)?;
        ram.copy_part(off, &rd_img, rd_img.size())?;
        initrd = Some((layout::RAM_BASE + off, layout::RAM_BASE + off + rd.size));
    }
    let dtb_guest = layout::RAM_BASE + dtb_off;
    match desc.dtb {
        Some(d) => {
            let dtb = arch::mem::staged(&d)?;
            let len = dtb.size().min(layout::DTB_OFFSET_FROM_END);
            ram.copy_part(dtb_off, &dtb, len)?;
        }
        None => {
            let initrd = initrd.map(|(s, e)| (GuestPhysAddr(s), GuestPhysAddr(e)));
            let v3 = arch::board().gic.version == crate::platform::GicVersion::V3;
            let mut cfg = crate::fdt::GuestDtbConfig::from_layout(
                desc.vcpus as usize,
                size,
                v3,
                desc.cmdline,
                initrd,
            );
            cfg.reset_count = reset_count;
            cfg.numa = numa.cloned();
            cfg.pmu_counting_only =
                matches!(arch::board().pmu, crate::platform::PmuDesc::Unavailable(_));
            // Every virtual disk and NIC is a function on the VM's PCIe bus.
            if !desc.disks.is_empty() || !desc.nics.is_empty() {
                cfg.pci = Some(crate::fdt::PciHostDt::from_layout(v3));
            }
            cfg.passthrough = passthrough
                .iter()
                .map(|d| crate::fdt::PassthroughNode {
                    name: d.name,
                    compatible: d.compatible,
                    regs: d
                        .regs
                        .iter()
                        .map(|r| crate::fdt::Window {
                            base: GuestPhysAddr(r.base),
                            size: r.size,
                        })
                        .collect(),
                    spis: d.irqs.iter().map(|i| IntId(i.intid)).collect(),
                })
                .collect();
            let blob = crate::fdt::build_guest_dtb(&cfg).map_err(CreateError::Fdt)?;
            ram.write(dtb_off, &blob)?;
        }
    }
    Ok((layout::RAM_BASE + text_offset, dtb_guest))
}

/// A vCPU as its physical CPU holds it.
struct LocalVcpu {
    vm: Arc<Instance>,
    id: VcpuId,
    regs: GuestRegs,
    el1: El1Context,
    /// Whether the hypervisor holds the virtual timer's `CNTV_CTL.IMASK` (its line is high).
    vtimer: VtimerState,
    /// The hypervisor masked this CPU's PMU overflow interrupt at the GIC after it fired for
    /// this vCPU (until the guest's EOI, or until another vCPU's PMU state is loaded).
    pmu_masked: bool,
    lrs: [u64; 16],
    /// LR 0 holds this SGI, delivered directly ([`VGic::direct_sgi_lr`]): the vGIC does not
    /// know of it until [`VGic::adopt_direct`], which every fold-back of the LRs does first.
    direct: Option<u32>,
    /// What the last direct delivery found, for the next one without the lock.
    quiet: Option<Quiet>,
    /// Guest runs not yet added to the VM's and this CPU's counters ([`flush_tally`]).
    tally: ExitTally,
}

/// The state a direct SGI delivery was made in, valid while the VM's epoch
/// ([`crate::vm::Vm::epoch`]) stays the same: the vGIC had nothing in flight for the vCPU,
/// and SGI `sgi` posted again goes into LR 0 as `lr`. (Taken with the emulated physical
/// timer idle and the virtual timer not held masked, which the fast path checks again.)
#[derive(Clone, Copy)]
struct Quiet {
    epoch: u64,
    sgi: u32,
    lr: u64,
}

impl LocalVcpu {
    fn shared(&self) -> &VcpuShared {
        &self.vm.vcpus[self.id.0]
    }

    fn reset(&mut self, entry: u64, x0: u64) {
        self.regs = GuestRegs::at_entry(entry, x0);
        self.el1 = El1Context::reset(self.shared().mpidr);
        self.vtimer = VtimerState::default();
        // Both timers restart disabled, their lines low.
        self.shared().ptimer.store(PtimerState::default());
        {
            let mut dev = self.vm.devices();
            let _ = dev.vgic.set_level(VTIMER_INTID, self.id, false);
            let _ = dev.vgic.set_level(PTIMER_INTID, self.id, false);
        }
        self.unmask_pmu();
        self.lrs = [0; 16];
        self.direct = None;
        self.quiet = None;
    }

    /// Unmasks this CPU's PMU overflow interrupt if this vCPU had it masked.
    fn unmask_pmu(&mut self) {
        unmask_pmu(&mut self.pmu_masked);
    }
}

/// Unmasks this CPU's PMU overflow interrupt if `masked` (a vCPU's flag) says it was.
fn unmask_pmu(masked: &mut bool) {
    if core::mem::take(masked) {
        if let Some(irq) = pmu_irq() {
            irqchip().set_enabled(irq, true, cpu::mpidr());
        }
    }
}

/// Runs the vCPUs pinned to physical CPU `cpu` for ever, scheduled by a
/// [`RunQueue`](crate::sched::RunQueue) with 10 ms slices from the EL2 physical timer.
pub fn run_cpu(cpu_index: usize) -> ! {
    let mut local: Vec<LocalVcpu> = Vec::new();
    let mut rq = RunQueue::new(time_slice_ticks(cpu::counter_frequency()));
    let mut hw = HwLrs {
        num: crate::arch::vgic_hw::num_lrs().min(16),
        dirty: crate::arch::vgic_hw::num_lrs().min(16),
        hcr: u64::MAX,
        twi: true,
        sched_deadline: None,
    };
    let mut loaded: Option<usize> = None;
    loop {
        cpu::park_if_requested();
        check_power_off(cpu_index);
        super::mgmt::poll();
        if ARRIVING[cpu_index].swap(false, Ordering::AcqRel) {
            take_arrivals(cpu_index, &mut local, &mut rq);
        }
        // Power-state changes requested by other vCPUs, and wake-ups.
        let mut leaving = false;
        for (i, lv) in local.iter_mut().enumerate() {
            let state = rq.state(i).unwrap_or(VcpuRunState::Off);
            if lv.vm.destroyed.load(Ordering::Acquire) {
                leaving = true;
                continue;
            }
            if lv.vm.stopped.load(Ordering::Acquire) {
                if state != VcpuRunState::Stopped {
                    let _ = rq.set_state(i, VcpuRunState::Stopped);
                }
                continue;
            }
            match lv.shared().power.load() {
                PowerState::OnPending => {
                    let (e, c) = lv.shared().start_point();
                    lv.reset(e, c);
                    if loaded == Some(i) {
                        // Its old EL1 state is in the registers: load the reset state.
                        lv.el1.restore();
                    }
                    lv.shared().power.store(PowerState::On);
                    let _ = rq.set_state(i, VcpuRunState::Runnable);
                }
                PowerState::Off => {
                    if state != VcpuRunState::Off {
                        let _ = rq.set_state(i, VcpuRunState::Off);
                    }
                }
                PowerState::On => {
                    if matches!(state, VcpuRunState::Blocked { .. })
                        && wake_condition(lv, loaded == Some(i))
                    {
                        let _ = rq.wake(i);
                    }
                }
            }
        }
        if leaving {
            drop_destroyed(&mut local, &mut rq, &mut loaded);
        }
        let Some(i) = rq.pick_next(cpu::counter()) else {
            idle(&mut local, &rq, loaded);
            continue;
        };
        if loaded != Some(i) {
            if let Some(l) = loaded {
                local[l].el1.save();
            }
            local[i].el1.restore();
            // The outgoing vCPU's PMU state (and with it its overflow line) left the PMU:
            // the incoming vCPU's overflows must get through. The outgoing one's virtual
            // interrupt stays pending until its EOI. (Nothing was loaded: an overflow taken
            // then had no owner to unmask it.)
            match loaded {
                Some(l) => local[l].unmask_pmu(),
                None => {
                    if let Some(irq) = pmu_irq() {
                        irqchip().set_enabled(irq, true, cpu::mpidr());
                    }
                }
            }
            cpu::set_vttbr(local[i].vm.vttbr);
            loaded = Some(i);
        }
        hw.sched_deadline = with_mgmt_deadline(rq.next_deadline());
        match hw.sched_deadline {
            Some(d) => cpu::set_hyp_timer(d),
            None => cpu::stop_hyp_timer(),
        }
        // A vCPU alone on this CPU idles in place when it blocks: nothing else could run.
        let solo = local.len() == 1;
        let lv = &mut local[i];
        let next = run_vcpu(lv, &mut hw, solo);
        // Whatever ended the run, its exits are counted before the scheduler looks again.
        flush_tally(lv);
        match next {
            Next::Block => {
                // Wake at the earlier of its timers' deadlines (CNTVOFF_EL2 = 0: the virtual
                // and physical counts are the same).
                let (ctl, cval) = cpu::vtimer();
                let _ = rq.block(i, timer_deadline(lv, ctl, cval));
                lv.vm.devices().flush_prompt();
            }
            Next::Off => {
                // CPU_OFF or a stopped VM; a reset may already have asked for ON again.
                let _ = lv
                    .shared()
                    .power
                    .compare_exchange(PowerState::On, PowerState::Off);
                let _ = rq.set_state(i, VcpuRunState::Off);
            }
            Next::Yield => rq.yield_current(),
            Next::Resume | Next::Resched => {}
        }
    }
}

/// Takes on the vCPUs handed to this CPU (VMs created since it last looked).
fn take_arrivals(cpu_index: usize, local: &mut Vec<LocalVcpu>, rq: &mut RunQueue<usize>) {
    let arrived = core::mem::take(&mut *ARRIVALS[cpu_index].lock());
    for (vm, id) in arrived {
        let mpidr = vm.vcpus[id.0].mpidr;
        local.push(LocalVcpu {
            vm,
            id,
            regs: GuestRegs::default(),
            el1: El1Context::reset(mpidr),
            vtimer: VtimerState::default(),
            pmu_masked: false,
            lrs: [0; 16],
            direct: None,
            quiet: None,
            tally: ExitTally::default(),
        });
        let _ = rq.add(local.len() - 1, VcpuRunState::Off);
    }
}

/// Drops the vCPUs of destroyed VMs from this CPU; the run queue is rebuilt with the
/// others' states (its handles are indices into `local`). The VMs are released last, once
/// this function's own buffers are gone, so the memory figures a last release prints do not
/// count them.
fn drop_destroyed(
    local: &mut Vec<LocalVcpu>,
    rq: &mut RunQueue<usize>,
    loaded: &mut Option<usize>,
) {
    let mut fresh = RunQueue::new(time_slice_ticks(cpu::counter_frequency()));
    let mut kept = Vec::with_capacity(local.len());
    let mut doomed = Vec::new();
    let mut new_loaded = None;
    for (old, mut lv) in core::mem::take(local).into_iter().enumerate() {
        if lv.vm.destroyed.load(Ordering::Acquire) {
            if *loaded == Some(old) {
                lv.unmask_pmu();
                // No guest runs until a vCPU is loaded again, which sets VTTBR_EL2.
                cpu::set_vttbr(0);
            }
            doomed.push(lv.vm);
            continue;
        }
        if *loaded == Some(old) {
            new_loaded = Some(kept.len());
        }
        let _ = fresh.add(kept.len(), rq.state(old).unwrap_or(VcpuRunState::Off));
        kept.push(lv);
    }
    *local = kept;
    *rq = fresh;
    *loaded = new_loaded;
    for vm in doomed {
        release(vm);
    }
}

/// True if a blocked vCPU should run: an interrupt its priority mask lets through is
/// pending, or its timer expired.
fn wake_condition(lv: &LocalVcpu, is_loaded: bool) -> bool {
    let pmr = if is_loaded {
        crate::arch::vgic_hw::priority_mask()
    } else {
        crate::vgic::vmcr_priority_mask(lv.el1.ich_vmcr_el2, gic_v2())
    };
    if super::net::pending(lv.vm.id) || lv.vm.devices().vgic.has_pending_unmasked(lv.id, pmr) {
        return true;
    }
    let (ctl, cval) = if is_loaded {
        cpu::vtimer()
    } else {
        (lv.el1.cntv_ctl_el0, lv.el1.cntv_cval_el0)
    };
    let now = cpu::virtual_counter();
    crate::vtimer::should_fire(ctl, cval, now) || lv.shared().ptimer.load().level(now)
}

/// The count at which a blocked vCPU's timers wake it: the earlier of its virtual timer's
/// (`ctl`, `cval`) and its physical timer's deadlines.
fn timer_deadline(lv: &LocalVcpu, ctl: u64, cval: u64) -> Option<u64> {
    let v = crate::vtimer::deadline(ctl, cval);
    let p = lv.shared().ptimer.load().deadline();
    match (v, p) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Brings the loaded vCPU's timer lines up to date before it enters the guest: its
/// physical timer's line follows the count; its virtual timer's is re-sampled while the
/// hypervisor holds its mask (so a timer the guest disabled or re-armed drops its line).
/// Returns the physical timer's deadline when it is still ahead (the EL2 timer must fire
/// then, so that the line rises on time).
fn update_timer_lines(
    shared: &VcpuShared,
    id: VcpuId,
    vtimer: &mut VtimerState,
    vgic: &mut VGic,
) -> Option<u64> {
    let timer = shared.ptimer.load();
    let high = vgic.irq(PTIMER_INTID, id).is_ok_and(|i| i.line_level);
    let mut ahead = None;
    if timer.deadline().is_some() || high {
        let level = timer.level(cpu::counter());
        if level != high {
            let _ = vgic.set_level(PTIMER_INTID, id, level);
        }
        if !level {
            ahead = timer.deadline();
        }
    }
    if vtimer.hv_masked {
        let _ = vgic.set_level(VTIMER_INTID, id, sample_vtimer(vtimer));
    }
    ahead
}

/// Samples the loaded vCPU's virtual timer ([`VtimerState::sample`]): writes back the mask
/// it decides and returns the line's level.
fn sample_vtimer(state: &mut VtimerState) -> bool {
    let (ctl, cval) = cpu::vtimer();
    let (new, line) = state.sample(ctl, cval, cpu::virtual_counter());
    if new != ctl {
        cpu::set_vtimer_ctl(new);
    }
    line
}

/// The loaded vCPU's EL1 registers as exit handling sees them: live in this CPU.
struct LiveSysRegs<'a> {
    vtimer: &'a mut VtimerState,
}

impl exit::GuestSysRegs for LiveSysRegs<'_> {
    fn vbar_el1(&self) -> u64 {
        cpu::vbar_el1()
    }

    fn set_el1_exception(&mut self, esr: u64, far: Option<u64>, elr: u64, spsr: u64) {
        cpu::set_el1_exception(esr, far, elr, spsr);
    }

    fn priority_mask(&self) -> u8 {
        crate::arch::vgic_hw::priority_mask()
    }

    fn counter(&self) -> u64 {
        cpu::counter()
    }

    fn sample_vtimer(&mut self) -> bool {
        sample_vtimer(self.vtimer)
    }

    fn power_down_el1(&mut self) {
        cpu::el1_power_down();
    }

    fn pmu_read(&mut self, reg: crate::vpmu::PmuReg) -> u64 {
        crate::arch::sysreg::pmu_read(reg)
    }

    fn pmu_write(&mut self, reg: crate::vpmu::PmuReg, value: u64) {
        crate::arch::sysreg::pmu_write(reg, value);
    }
}

/// The loaded vCPU, alone on this physical CPU, waits for an interrupt: the CPU sleeps
/// right here instead of going through the scheduler, and the vCPU resumes as soon as
/// an interrupt is pending for it or its timer fires (its virtual timer's interrupt is
/// live on this CPU and wakes the `WFI`). Returns [`Next::Off`] if the vCPU was turned
/// off meanwhile (its VM stopped or reset).
fn idle_in_place(lv: &mut LocalVcpu) -> Next {
    lv.vm.devices().flush_prompt();
    loop {
        if lv.vm.is_stopped() || lv.shared().power.load() != PowerState::On {
            return Next::Off;
        }
        if wake_condition(lv, true) {
            return Next::Resume;
        }
        // Its physical timer is emulated: the EL2 timer wakes this CPU at its deadline.
        match with_mgmt_deadline(lv.shared().ptimer.load().deadline()) {
            Some(d) => cpu::set_hyp_timer(d),
            None => cpu::stop_hyp_timer(),
        }
        let t = cpu::counter();
        cpu::wait_for_interrupt();
        add_time(1, t);
        handle_physical_irqs(Some(lv));
    }
}

/// Nothing runnable: sleep until an interrupt or the run queue's next deadline (a
/// blocked vCPU's timer).
fn idle(local: &mut [LocalVcpu], rq: &RunQueue<usize>, loaded: Option<usize>) {
    match with_mgmt_deadline(rq.next_deadline()) {
        Some(d) => cpu::set_hyp_timer(d),
        None => cpu::stop_hyp_timer(),
    }
    let t = cpu::counter();
    cpu::wait_for_interrupt();
    add_time(1, t);
    handle_physical_irqs(loaded.and_then(|l| local.get_mut(l)));
}

fn check_power_off(cpu_index: usize) {
    if cpu_index == 0
        && CREATED.load(Ordering::Acquire)
        && VMS_RUNNING.load(Ordering::Acquire) == 0
        && !MANAGED.load(Ordering::Acquire)
    {
        // The network counters once more, for logs (the bench reads exits per frame).
        if super::net::has_nics() {
            super::net::print_stats();
            print_cpu_time();
        }
        hvprintln!("[hv] all VMs stopped; powering off");
        cpu::firmware_system_off();
    }
}

/// What this physical CPU's list registers and `ICH_HCR_EL2` hold, so that an entry and
/// exit with no virtual interrupt in flight touches neither (the exit fast path).
struct HwLrs {
    /// List registers implemented (at most 16).
    num: usize,
    /// List registers `dirty..num` hold `Lr::EMPTY` (the guest cannot write them).
    dirty: usize,
    /// Last value written to `ICH_HCR_EL2`.
    hcr: u64,
    /// `HCR_EL2.TWI` as last set (`init_el2` sets it).
    twi: bool,
    /// The run queue's deadline the EL2 physical timer was set to before this vCPU ran
    /// (the loaded vCPU's physical-timer deadline shares that timer).
    sched_deadline: Option<u64>,
}

impl HwLrs {
    fn set_hcr(&mut self, v: u64) {
        if self.hcr != v {
            crate::arch::vgic_hw::set_hcr(v);
            self.hcr = v;
        }
    }

    fn set_twi(&mut self, trap: bool) {
        if self.twi != trap {
            cpu::set_wfi_trap(trap);
            self.twi = trap;
        }
    }
}

/// The run loop's entry for `lv` (the general path): the stop and power checks, pending
/// network frames, the `WFI` trap, the timer lines, a full `flush` and the LR writes.
/// Returns the LRs in use, or `None` if the vCPU must stop running.
fn enter_general(lv: &mut LocalVcpu, hw: &mut HwLrs, solo: bool) -> Option<usize> {
    let num_lrs = hw.num;
    if lv.vm.stopped.load(Ordering::Acquire) || lv.shared().power.load() != PowerState::On {
        return None;
    }
    let mut io_kicks = VcpuSet::EMPTY;
    let ptimer_ahead;
    let used = {
        let mut dev = lv.vm.devices();
        // Frames queued for the VM's NICs go into its receive rings first.
        if super::net::take_pending(lv.vm.id) {
            io_kicks = dev.poll_io();
        }
        // Alone on this CPU, the vCPU sleeps in `WFI` without trapping; unless its
        // console shows a prompt that going idle must emit.
        hw.set_twi(!solo || dev.prompt_waiting());
        ptimer_ahead =
            update_timer_lines(&lv.vm.vcpus[lv.id.0], lv.id, &mut lv.vtimer, &mut dev.vgic);
        match dev.vgic.flush(lv.id, &mut lv.lrs, num_lrs) {
            Ok(f) => {
                hw.set_hcr(f.ich_hcr_el2());
                f.used
            }
            Err(_) => {
                hw.set_hcr(1);
                0
            }
        }
    };
    kick_vcpus(&lv.vm, io_kicks);
    if let Some(d) = ptimer_ahead {
        // The EL2 timer ends the run at the earlier of the run queue's deadline and the
        // physical timer's; the exit it causes re-samples the line.
        cpu::set_hyp_timer(hw.sched_deadline.map_or(d, |s| s.min(d)));
    }
    // Only the LRs in use now or at the last entry: the others already hold EMPTY.
    for n in 0..used.max(hw.dirty).min(num_lrs) {
        crate::arch::vgic_hw::write_lr(n, lv.lrs[n]);
    }
    hw.dirty = used;
    Some(used)
}

/// The receiver fast path, for an IRQ exit of a vCPU alone on this CPU (usually asleep in
/// the guest's own `WFI`): if the only physical interrupt is the kick and the vCPU's only
/// newly pending interrupt is one of its own SGIs or PPIs, acknowledges the kick, folds the
/// `used` LRs back (`sync`, under the same lock as the flush; `used` is then 0), puts that
/// interrupt in LR 0 exactly as the general `flush` would ([`VGic::flush_kicked`]) and
/// returns the LRs in use, to re-enter without the scheduler checks. Otherwise returns
/// what the general path must still handle: an interrupt already acknowledged, and what
/// the kick (if taken) asks for. It declines whenever the general entry would do more: the
/// VM stopping, resetting or leaving, a VM arriving, network frames, the `WFI` trap or a
/// console prompt, the management stack due.
fn kick_fast(
    lv: &mut LocalVcpu,
    hw: &mut HwLrs,
    used: &mut usize,
) -> Result<usize, (Option<u32>, Next)> {
    // One call through the trait object for the acknowledge, EOI and second acknowledge.
    match irqchip().acknowledge_kick(KICK_SGI) {
        Err(first) => return Err((first, Next::Resume)),
        Ok(Some(other)) => return Err((Some(other), Next::Resched)),
        Ok(None) => {}
    }
    const GENERAL: Result<usize, (Option<u32>, Next)> = Err((None, Next::Resched));
    // The VM and the vCPU's shared state looked up once (through `lv` each use reloaded
    // them after every call).
    let vm: &Instance = &lv.vm;
    let shared = &vm.vcpus[lv.id.0];
    // A stop, reset, destruction or arrival raised this CPU's attention before its kick
    // (the general path reads those conditions after the take).
    let cpu_index = cpu::current_index();
    if hw.twi
        || ATTENTION.get(cpu_index).is_none_or(Attention::take)
        || super::net::is_pending(vm.id)
        || (cpu_index == 0 && super::mgmt::poll_due())
    {
        return GENERAL;
    }
    if let Some(q) = lv.quiet {
        let finished = DirectLr {
            lrs: &mut lv.lrs,
            direct: &mut lv.direct,
        };
        if direct_unlocked(
            vm,
            shared,
            lv.id,
            q,
            lv.vtimer.hv_masked,
            finished,
            hw,
            *used,
        ) {
            return Ok(1);
        }
    }
    for n in 0..*used {
        lv.lrs[n] = crate::arch::vgic_hw::read_lr(n);
    }
    let (now, ptimer_ahead) = {
        // Only this vCPU's SGIs matter below (its LRs, its timers, its flush): the others'
        // posts stay in their boxes, and its own are in hand.
        let (mut dev, sgis) = lv.vm.devices_for_own_sgis(lv.id);
        lv.quiet = None;
        if let Some(sgi) = lv.direct.take() {
            let _ = dev.vgic.adopt_direct(lv.id, sgi);
        }
        if *used > 0 {
            // Usually the previous SGI's LR, which the guest has deactivated: folded back
            // without the general loop, and with no deactivation to act on.
            if !dev.vgic.sync_one_finished(lv.id, &lv.lrs[..*used]) {
                let _ = dev.vgic.sync(lv.id, &lv.lrs[..*used]);
                handle_eois(
                    &lv.vm,
                    lv.id,
                    &mut lv.vtimer,
                    &mut lv.pmu_masked,
                    &mut dev.vgic,
                );
                // Shared interrupts (SPIs) may have changed: other vCPUs' direct deliveries
                // must look again.
                lv.vm.bump_epoch();
            }
            // Folded back: the general path has nothing left to sync.
            *used = 0;
        }
        if dev.prompt_waiting() {
            dev.vgic.post_sgis(lv.id, sgis);
            return GENERAL;
        }
        let ahead = update_timer_lines(&lv.vm.vcpus[lv.id.0], lv.id, &mut lv.vtimer, &mut dev.vgic);
        let timers_idle = ahead.is_none()
            && !lv.vtimer.hv_masked
            && lv.shared().ptimer.load().deadline().is_none()
            && dev
                .vgic
                .irq(PTIMER_INTID, lv.id)
                .is_ok_and(|i| !i.line_level);
        let direct = if sgis.is_power_of_two() && timers_idle && hw.num > 0 {
            let sgi = sgis.trailing_zeros();
            dev.vgic.direct_sgi_lr(lv.id, sgi).map(|lr| (sgi, lr))
        } else {
            None
        };
        if let Some((sgi, lr)) = direct {
            // Delivered without the vGIC recording it; the next kick may do the same
            // without the lock while nothing behind it changes.
            lv.lrs[0] = lr;
            lv.lrs[1..hw.num.min(16)].fill(crate::vgic::Lr::EMPTY);
            lv.direct = Some(sgi);
            lv.quiet = Some(Quiet {
                epoch: lv.vm.epoch(),
                sgi,
                lr,
            });
            hw.set_hcr(crate::vgic::lr::ICH_HCR_EN);
            (1, ahead)
        } else {
            dev.vgic.post_sgis(lv.id, sgis);
            let Some(f) = dev.vgic.flush_kicked(lv.id, &mut lv.lrs, hw.num) else {
                return GENERAL;
            };
            hw.set_hcr(f.ich_hcr_el2());
            (f.used, ahead)
        }
    };
    if let Some(d) = ptimer_ahead {
        cpu::set_hyp_timer(hw.sched_deadline.map_or(d, |s| s.min(d)));
    }
    for n in 0..now.max(hw.dirty).min(hw.num) {
        crate::arch::vgic_hw::write_lr(n, lv.lrs[n]);
    }
    hw.dirty = now;
    Ok(now)
}

/// Where [`direct_unlocked`] records its LR: the vCPU's LR copy and its direct SGI.
struct DirectLr<'a> {
    lrs: &'a mut [u64; 16],
    direct: &'a mut Option<u32>,
}

/// The receiver fast path without the lock, for vCPU `id` of `vm` (`shared` its shared
/// state): if the last direct delivery's state `q` still holds (the VM's epoch unchanged,
/// the timers still idle, LR 0 free or holding the previous direct SGI now finished) and
/// exactly that SGI was posted to the vCPU again, puts it in LR 0 and returns true (one LR
/// in use). Otherwise false, with any SGI taken from the mailbox put back.
#[allow(clippy::too_many_arguments)] // The parts of `LocalVcpu` it reads, borrowed apart.
#[inline]
fn direct_unlocked(
    vm: &Vm,
    shared: &VcpuShared,
    id: VcpuId,
    q: Quiet,
    vtimer_masked: bool,
    out: DirectLr<'_>,
    hw: &mut HwLrs,
    used: usize,
) -> bool {
    let Some(mail) = vm.sgi_mail.as_ref() else {
        return false;
    };
    let lr0_free = match used {
        0 => true,
        // An invalid LR (state bits 63:62 clear): the guest finished the SGI.
        1 => out.direct.is_some() && crate::arch::vgic_hw::read_lr(0) >> 62 == 0,
        _ => false,
    };
    if !lr0_free || vtimer_masked || shared.ptimer.load().deadline().is_some() {
        return false;
    }
    let sgis = mail.take(id);
    // The epoch is read after the take: a sender that posted after a change behind the lock
    // (having taken the lock since, or made the change itself) is seen with that change's
    // count, so an SGI sent after, say, its disable is not delivered with the old state.
    if sgis != 1 << q.sgi || q.epoch != vm.epoch() {
        if sgis != 0 {
            mail.restore(id, sgis);
        }
        return false;
    }
    *out.direct = Some(q.sgi);
    out.lrs[0] = q.lr;
    crate::arch::vgic_hw::write_lr(0, q.lr);
    for n in 1..hw.dirty.min(hw.num) {
        out.lrs[n] = crate::vgic::Lr::EMPTY;
        crate::arch::vgic_hw::write_lr(n, crate::vgic::Lr::EMPTY);
    }
    hw.dirty = 1;
    hw.set_hcr(crate::vgic::lr::ICH_HCR_EN);
    true
}

/// Acts on the deactivations the core asked to hear of (after a `sync` of `id`'s LRs):
/// passed-through lines are unmasked, the PMU and virtual timer lines re-sampled.
fn handle_eois(
    vm: &Vm,
    id: VcpuId,
    vtimer: &mut VtimerState,
    pmu_masked: &mut bool,
    vgic: &mut VGic,
) {
    while let Some(intid) = vgic.pop_eoi_notified(id) {
        if let Some(irq) = vm.passthrough_irq(intid.0) {
            let _ = vgic.set_level(intid, VcpuId(0), false);
            enable_passthrough_irq(vm, irq);
            continue;
        }
        if intid.0 == layout::PMU_INTID {
            // The guest handled its overflow: lower the virtual line and let the
            // physical one through again (it fires again if still asserted).
            let _ = vgic.set_level(intid, id, false);
            unmask_pmu(pmu_masked);
            continue;
        }
        if intid == VTIMER_INTID {
            // The guest handled its timer interrupt: the line stays high (and the
            // mask with it) only if the timer is still due.
            let line = sample_vtimer(vtimer);
            let _ = vgic.set_level(VTIMER_INTID, id, line);
        }
    }
}

/// Enters the guest until the vCPU blocks, yields or stops.
fn run_vcpu(lv: &mut LocalVcpu, hw: &mut HwLrs, solo: bool) -> Next {
    // LRs already filled by the receiver fast path ([`kick_fast`]): how many are in use.
    let mut prepared: Option<usize> = None;
    loop {
        let mut used = match prepared.take() {
            Some(used) => used,
            None => {
                flush_tally(lv);
                match enter_general(lv, hw, solo) {
                    Some(used) => used,
                    None => return Next::Off,
                }
            }
        };
        // An exit handled whole without the vCPU's list registers: what comes next.
        let mut handled = None;
        // A console access done by its fast path that still needs the general entry.
        let mut console_done = None;
        let kind = loop {
            let entered = cpu::counter();
            let kind = arch::run_guest(&mut lv.regs);
            let ran = cpu::counter().wrapping_sub(entered);
            // Counted here, added to the VM's and the CPU's counters at the next general
            // entry or when the batch is full (the fast paths below skip the general
            // entry).
            if lv.tally.count(ran) {
                flush_tally(lv);
            }
            if kind == ExitKind::Sync {
                // An SGI to other vCPUs: the sender's LRs and `ICH_HCR_EL2` stay as the
                // guest left them, so it goes straight back in (no fold-back, no flush),
                // unless a target shares this CPU and must get the chance to run.
                let mut local = false;
                let esr = cpu::esr();
                if exit::sgi_to_others(&lv.vm, lv.id, esr, &mut lv.regs, |t| {
                    local |= kick_target(&lv.vm, t);
                })
                .is_some()
                {
                    if !local {
                        continue;
                    }
                    handled = Some(Next::Yield);
                } else if crate::trap::ec(esr)
                    == crate::trap::ExceptionClass::DataAbortLowerEl as u8
                {
                    // A console access: its register state only, then straight back in
                    // as above when no interrupt line moved.
                    match exit::console_fast(&lv.vm, lv.id, cpu::syndrome(), &mut lv.regs) {
                        Some(exit::FastExit::Quiet) => continue,
                        Some(exit::FastExit::Then(out)) => console_done = Some(out),
                        None => {}
                    }
                } else if matches!(crate::trap::ec(esr), 0x16 | 0x17)
                    && crate::psci::is_arch_call(lv.regs.x[0] as u32)
                    && exit::smccc_fast(&lv.vm, esr, &mut lv.regs)
                {
                    // An SMCCC version, feature or workaround call (HVC or SMC): done.
                    continue;
                }
            }
            break kind;
        };
        // The one LR of a direct SGI delivery asks for no EOI maintenance.
        let no_eoi_requests = used == 0 || (used == 1 && lv.direct.is_some());
        if !no_eoi_requests || hw.hcr != crate::vgic::lr::ICH_HCR_EN {
            // A deactivated LR with its EOI bit, or underflow, keeps the maintenance
            // interrupt asserted while the interface is enabled: stop it firing at EL2.
            // With no LR asking for an EOI and no underflow request there is nothing to
            // assert.
            hw.set_hcr(0);
        }
        // The receiver fast path: a kick with one SGI or PPI to deliver (folds the LRs back
        // itself, under the same lock as its flush).
        let mut after_kick = None;
        if handled.is_none() && kind == ExitKind::Irq && solo {
            match kick_fast(lv, hw, &mut used) {
                Ok(now) => {
                    prepared = Some(now);
                    continue;
                }
                Err(rest) => after_kick = Some(rest),
            }
        }
        if used > 0 {
            for n in 0..used {
                lv.lrs[n] = crate::arch::vgic_hw::read_lr(n);
            }
            let mut dev = lv.vm.devices();
            if let Some(sgi) = lv.direct.take() {
                let _ = dev.vgic.adopt_direct(lv.id, sgi);
            }
            let _ = dev.vgic.sync(lv.id, &lv.lrs[..used]);
            handle_eois(
                &lv.vm,
                lv.id,
                &mut lv.vtimer,
                &mut lv.pmu_masked,
                &mut dev.vgic,
            );
        }
        let next = match (handled, kind) {
            (Some(next), _) => next,
            (None, ExitKind::Sync) => {
                let out = match console_done {
                    Some(out) => out,
                    None => exit::handle_sync(
                        &lv.vm,
                        lv.id,
                        cpu::syndrome(),
                        &mut lv.regs,
                        &mut LiveSysRegs {
                            vtimer: &mut lv.vtimer,
                        },
                    ),
                };
                act_on(&lv.vm, lv.id, out)
            }
            (None, ExitKind::Irq) if after_kick.is_some() => {
                let (first, next) = after_kick.unwrap_or((None, Next::Resume));
                handle_physical_irqs_from(first, next, Some(lv))
            }
            (None, ExitKind::Irq | ExitKind::Fiq) => handle_physical_irqs(Some(lv)),
            (None, ExitKind::SError) => {
                stop_vm(&lv.vm, "SError from the guest");
                Next::Off
            }
            (None, ExitKind::Aarch32) => {
                stop_vm(&lv.vm, "AArch32 execution is not supported");
                Next::Off
            }
        };
        match next {
            Next::Resume => continue,
            // A kick or the console for a vCPU alone on its CPU: nothing else to schedule,
            // so straight back in (the loop's top sees a stop or power change) unless a VM
            // arrived or is leaving, which only the scheduler loop handles.
            Next::Resched
                if solo
                    && !ARRIVING[lv.shared().pcpu].load(Ordering::Acquire)
                    && !lv.vm.destroyed.load(Ordering::Acquire) =>
            {
                continue
            }
            Next::Block if solo => match idle_in_place(lv) {
                Next::Resume => continue,
                other => return other,
            },
            other => return other,
        }
    }
}

/// This physical CPU's PMU overflow interrupt, if the board has one.
fn pmu_irq() -> Option<u32> {
    arch::board().pmu.irq_for(cpu::mpidr()).map(|i| i.intid)
}

/// Acknowledges and handles every pending physical interrupt. `loaded` is the vCPU whose
/// EL1 state (and so virtual timer) is live on this CPU, if any.
fn handle_physical_irqs(loaded: Option<&mut LocalVcpu>) -> Next {
    handle_physical_irqs_from(None, Next::Resume, loaded)
}

/// [`handle_physical_irqs`] after [`kick_fast`] declined: `first` was acknowledged already,
/// and `next` is what the interrupts it handled ask for.
fn handle_physical_irqs_from(
    mut first: Option<u32>,
    mut next: Next,
    mut loaded: Option<&mut LocalVcpu>,
) -> Next {
    let gic = irqchip();
    let board = arch::board();
    while let Some(intid) = first.take().or_else(|| gic.acknowledge()) {
        // Until its EOI the GIC signals nothing of the same priority: a driver's handler
        // must not nap in `WFI` (nothing would end it).
        cpu::set_in_interrupt(true);
        if intid == KICK_SGI {
            // First: the common case of an idle vCPU woken for an interrupt.
            next = Next::Resched;
        } else if intid == board.timer.virt.intid {
            // The loaded vCPU's virtual timer fired: mask it (until its line drops) and
            // raise its virtual line.
            match loaded.as_deref_mut() {
                Some(lv) => {
                    let line = sample_vtimer(&mut lv.vtimer);
                    let _ = lv.vm.devices().vgic.set_level(VTIMER_INTID, lv.id, line);
                }
                None => {
                    let (ctl, _) = cpu::vtimer();
                    cpu::set_vtimer_ctl(ctl | crate::vtimer::cntv_ctl::IMASK);
                }
            }
        } else if intid == board.timer.hyp_phys.intid {
            cpu::stop_hyp_timer();
            next = Next::Resched;
        } else if Some(intid) == pmu_irq() {
            // A PMU counter of the loaded vCPU overflowed: its virtual PMU interrupt is a
            // level that follows the physical one; mask the physical one until the guest's
            // EOI so that it does not fire again meanwhile.
            gic.set_enabled(intid, false, cpu::mpidr());
            if let Some(lv) = loaded.as_deref_mut() {
                lv.pmu_masked = true;
                let _ = lv
                    .vm
                    .devices()
                    .vgic
                    .set_level(IntId(layout::PMU_INTID), lv.id, true);
            }
        } else if board
            .console_device()
            .and_then(|d| d.irqs.first())
            .is_some_and(|i| i.intid == intid)
        {
            console_input();
            next = Next::Resched;
        } else if crate::plugin::irq::dispatch(intid) {
            // A host device's driver (a NIC, a USB host controller) served it; VMs it gave
            // work to were kicked.
        } else if let Some(vm) = passthrough_owner(intid) {
            // Level interrupt of a passed-through device: masked at the physical GIC until
            // the guest has handled it (EOI notification), then unmasked and re-sampled.
            gic.disable(intid);
            let _ = vm.devices().vgic.set_level(IntId(intid), VcpuId(0), true);
            kick_vm(&vm);
            release(vm);
            next = Next::Resched;
        }
        gic.end_of_interrupt(intid);
        cpu::set_in_interrupt(false);
    }
    // The management stack (CPU 0): frames for the host port, its timers.
    super::mgmt::poll();
    next
}

fn console_input() {
    while let Some(b) = console::read_byte() {
        let routed = INPUT.lock().route(b, slot_count());
        match routed {
            Routed::Deliver { vm, byte } => {
                if let Some(vm) = vm_at(vm) {
                    let kicks = vm.devices().console_input(byte);
                    kick_vcpus(&vm, kicks);
                    release(vm);
                }
            }
            Routed::Switched(n) => {
                if let Some(vm) = vm_at(n) {
                    hvprintln!("[hv] console input now goes to VM {n} `{}`", vm.desc.name);
                    release(vm);
                }
            }
            Routed::Command(line) => run_command(&line),
            Routed::List => list_vms(),
            Routed::Nothing => {}
        }
    }
}

/// Lists the VM slots (`Ctrl-]` `?`, `vms`), marking the one console input goes to, and the
/// console keys.
fn list_vms() {
    let focused = INPUT.lock().focused();
    for (n, slot) in VMS.lock().iter().enumerate() {
        let mark = if n == focused {
            " <- console input"
        } else {
            ""
        };
        match slot {
            Some(vm) => hvprintln!(
                "[hv] VM {n} `{}`: {}, {} vCPU(s), {} MiB{mark}",
                vm.desc.name,
                if vm.is_stopped() {
                    "stopped"
                } else {
                    "running"
                },
                vm.vcpus.len(),
                vm.desc.memory_size >> 20
            ),
            None => hvprintln!("[hv] VM {n}: free slot{mark}"),
        }
    }
    hvprintln!("[hv] keys: {}", crate::conmux::keys_help(switch_key()));
}

/// Carries out a console command (`Ctrl-]` `:` then the line); the machine then stays up
/// when no VM runs, until `poweroff`.
fn run_command(line: &[u8]) {
    MANAGED.store(true, Ordering::Release);
    hvprintln!(
        "[hv] command: {}",
        core::str::from_utf8(line).unwrap_or("?")
    );
    let command = match Command::parse(line) {
        Ok(c) => c,
        Err(e) => {
            hvprintln!("[hv] {e}");
            return;
        }
    };
    match command {
        Command::List => list_vms(),
        Command::Console(n) => {
            let count = slot_count();
            if INPUT.lock().focus(n, count) {
                match vm_at(n) {
                    Some(vm) => {
                        hvprintln!("[hv] console input now goes to VM {n} `{}`", vm.desc.name);
                        release(vm);
                    }
                    None => hvprintln!("[hv] console input now goes to VM {n} (a free slot)"),
                }
            } else {
                hvprintln!("[hv] no VM {n}: there are {count} slot(s) (see `vms`)");
            }
        }
        Command::Create(name) => {
            let Some(desc) = arch::vm_table().vms.iter().find(|d| d.name == name) else {
                hvprintln!("[hv] no VM `{name}` in this image's VM table (see the VM file it was built with)");
                return;
            };
            if let Err(e) = create_from(desc) {
                hvprintln!("[hv] VM `{name}` not created: {e}");
            }
        }
        Command::Stop(n) => match vm_at(n) {
            Some(vm) => {
                stop_vm(&vm, "stopped from the console");
                release(vm);
            }
            None => hvprintln!("[hv] no VM {n}: see `vms`"),
        },
        Command::Start(n) => match vm_at(n) {
            Some(vm) => {
                if vm.mark_running() {
                    VMS_RUNNING.fetch_add(1, Ordering::AcqRel);
                    hvprintln!("[hv] VM {n} `{}` starting", vm.desc.name);
                    reset_vm(&vm);
                } else {
                    hvprintln!("[hv] VM {n} is running: `stop {n}` first");
                }
                release(vm);
            }
            None => hvprintln!("[hv] no VM {n}: see `vms`"),
        },
        Command::Destroy(n) => destroy(n),
        Command::Power(n) => match vm_at(n) {
            Some(vm) if vm.is_stopped() => {
                hvprintln!("[hv] VM {n} is stopped");
                release(vm);
            }
            Some(vm) => {
                hvprintln!("[hv] VM {n} `{}`: power button pressed", vm.desc.name);
                let kicks = vm.devices().press_power_button();
                kick_vcpus(&vm, kicks);
                release(vm);
            }
            None => hvprintln!("[hv] no VM {n}: see `vms`"),
        },
        Command::Mem => hvprintln!(
            "[hv] host memory heap_used={} pool_free={}",
            arch::heap_used(),
            arch::mem::free_ram_bytes()
        ),
        Command::Net => super::net::print_stats(),
        Command::PowerOff => {
            hvprintln!("[hv] powering off");
            cpu::firmware_system_off();
        }
    }
}

/// Destroys stopped VM `n`: it leaves the VM table, its CPUs drop its vCPUs, and the last
/// of them frees its RAM, stage-2 tables and slot ([`release`]).
fn destroy(n: usize) {
    let vm = {
        let mut table = VMS.lock();
        match table.get_mut(n) {
            Some(slot) if slot.as_ref().is_some_and(|vm| !vm.is_stopped()) => {
                drop(table);
                hvprintln!("[hv] VM {n} is running: `stop {n}` first");
                return;
            }
            Some(slot) => slot.take(),
            None => None,
        }
    };
    let Some(vm) = vm else {
        hvprintln!("[hv] no VM {n}: see `vms`");
        return;
    };
    vm.destroyed.store(true, Ordering::Release);
    for v in &vm.vcpus {
        ARRIVING[v.pcpu].store(true, Ordering::Release);
    }
    kick_vm(&vm);
    release(vm);
}

/// The machine stays up when no VM runs (a managed host: until `poweroff`).
pub(super) fn set_managed() {
    MANAGED.store(true, Ordering::Release);
}

/// The VM named `name` in the VM table, with its slot.
pub(super) fn find_named(name: &str) -> Option<(usize, Arc<Instance>)> {
    VMS.lock().iter().enumerate().find_map(|(n, s)| {
        s.as_ref()
            .filter(|vm| vm.desc.name == name)
            .map(|vm| (n, vm.clone()))
    })
}

/// Creates and starts a VM from `desc` in the first free slot, its vCPUs spread over the
/// physical CPUs from that slot on; returns the slot.
pub(super) fn create_from(desc: &'static VmDesc) -> Result<usize, CreateError> {
    let slot = {
        let table = VMS.lock();
        table
            .iter()
            .position(Option::is_none)
            .unwrap_or(table.len())
    };
    let pcpus = place_vcpus(VmId(slot), desc, super::pcpu_count())?;
    admit(VmId(slot), desc, &pcpus).map(|()| slot)
}

/// Starts a stopped VM again (as after a reset: images reloaded, RAM zeroed); false if it
/// was running.
pub(super) fn start_again(vm: &Instance) -> bool {
    if !vm.mark_running() {
        return false;
    }
    VMS_RUNNING.fetch_add(1, Ordering::AcqRel);
    hvprintln!("[hv] VM {} `{}` starting", vm.id.0, vm.desc.name);
    reset_vm(vm);
    true
}

/// Destroys the stopped VM in slot `n` (see [`destroy`]).
pub(super) fn destroy_slot(n: usize) {
    destroy(n)
}

/// Feeds `bytes` to the VM's console input, as typed on the machine's console.
pub(super) fn console_write(vm: &Instance, bytes: &[u8]) {
    let mut kicks = VcpuSet::EMPTY;
    {
        let mut dev = vm.devices();
        for &b in bytes {
            kicks = VcpuSet(kicks.0 | dev.console_input(b).0);
        }
    }
    kick_vcpus(vm, kicks);
}

/// Drops a VM reference taken from [`find_named`].
pub(super) fn put(vm: Arc<Instance>) {
    release(vm)
}

/// Kicks the boot CPU (it runs the management stack).
pub(super) fn kick_cpu0() {
    irqchip().send_sgi(KICK_SGI, arch::board().cpus[0].mpidr);
}

/// The EL2 timer deadline `d` of this CPU, made earlier on CPU 0 by the management
/// stack's next poll.
fn with_mgmt_deadline(d: Option<u64>) -> Option<u64> {
    if cpu::current_index() != 0 {
        return d;
    }
    match (d, super::mgmt::next_deadline()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Raises the attention flag of every physical CPU running a vCPU of `vm`: its stop,
/// reset, destruction or arrival must not be run past by [`kick_fast`].
fn raise_attention(vm: &Vm) {
    for v in &vm.vcpus {
        if let Some(a) = ATTENTION.get(v.pcpu) {
            a.raise();
        }
    }
}

/// Kicks every physical CPU running a vCPU of `vm` (after raising their attention flags:
/// whatever the kick is for, the receiver fast path declines it).
pub fn kick_vm(vm: &Vm) {
    raise_attention(vm);
    let me = cpu::current_index();
    let board = arch::board();
    let mut done = 0u64;
    for v in &vm.vcpus {
        if v.pcpu != me && v.pcpu < 64 && done & (1 << v.pcpu) == 0 {
            done |= 1 << v.pcpu;
            irqchip().send_sgi(KICK_SGI, board.cpus[v.pcpu].mpidr);
        }
    }
}

/// Kicks the physical CPU that runs `vcpu` of `vm` (if it is not this one).
pub fn kick_vcpu(vm: &Vm, vcpu: VcpuId) {
    let _ = kick_target(vm, vcpu);
}

/// Stops a VM for good (SYSTEM_OFF or a fatal guest error); the others go on.
pub fn stop_vm(vm: &Vm, why: &str) {
    if !vm.mark_stopped() {
        return;
    }
    raise_attention(vm);
    if let Some(out) = vm.devices().console_output() {
        out.flush_partial();
    }
    hvprintln!("[hv] VM {} `{}` stopped: {why}", vm.id.0, vm.desc.name);
    kick_vm(vm);
    if VMS_RUNNING.fetch_sub(1, Ordering::AcqRel) == 1 {
        // The last VM: wake the boot CPU so that it powers off.
        irqchip().send_sgi(KICK_SGI, arch::board().cpus[0].mpidr);
    }
}

/// Restarts a VM (SYSTEM_RESET): images reloaded, vCPU 0 at the kernel entry.
pub fn reset_vm(vm: &Instance) {
    hvprintln!("[hv] VM {} `{}` resetting", vm.id.0, vm.desc.name);
    for v in &vm.vcpus {
        v.power.store(PowerState::Off);
        // Its timers restart disabled (a vCPU started again resets its own, too).
        v.ptimer.store(crate::ptimer::PtimerState::default());
    }
    raise_attention(vm);
    let count = vm.resets.fetch_add(1, Ordering::AcqRel) + 1;
    let loaded = {
        let mut ram = vm.ram.lock();
        match ram.reclaim_all() {
            Ok(()) => load_images(vm.desc, &mut ram, &vm.passthrough, count, vm.numa.as_ref()),
            Err(e) => Err(e.into()),
        }
    };
    match loaded {
        Ok(_) => {}
        Err(e) => {
            stop_vm(vm, "reset failed");
            hvprintln!("[hv] reset of `{}` failed: {e}", vm.desc.name);
            return;
        }
    }
    {
        let mut dev = vm.devices();
        if let Err(e) = dev.reset() {
            drop(dev);
            stop_vm(vm, "reset failed");
            hvprintln!("[hv] reset of `{}` failed: {e}", vm.desc.name);
            return;
        }
        notify_eois(&mut dev.vgic, &vm.passthrough);
    }
    vm.vcpus[0].request_start(vm.boot.0, vm.boot.1);
    kick_vm(vm);
}

/// Carries out what exit handling decided beyond the vCPU's own next step: VM events,
/// log lines, and waking the vCPUs that got work. A woken vCPU sharing this physical CPU
/// makes the caller yield, so that it runs soon.
fn act_on(vm: &Instance, vcpu: VcpuId, out: Outcome) -> Next {
    match out.diag {
        Some(Diag::UnhandledClass { ec, pc }) => hvprintln!(
            "[hv] VM `{}` vCPU {}: unhandled exception class {ec:#x} at {pc:#x}",
            vm.desc.name,
            vcpu.0
        ),
        Some(Diag::FaultInVectors { pc, far }) => hvprintln!(
            "[hv] VM `{}` vCPU {}: fault at {pc:#x} (FAR {far:#x}) inside its exception vectors",
            vm.desc.name,
            vcpu.0
        ),
        None => {}
    }
    match out.event {
        Some(VmEvent::TouchRam(ipa)) => {
            if let Err(e) = vm.ram.lock().touch(ipa) {
                hvprintln!(
                    "[hv] VM `{}`: cannot give it RAM at {ipa}: {e}",
                    vm.desc.name
                );
                stop_vm(vm, "guest RAM could not be mapped");
                return Next::Off;
            }
        }
        Some(VmEvent::Stop(why)) => stop_vm(vm, why),
        Some(VmEvent::Reset) => reset_vm(vm),
        None => {}
    }
    if kick_vcpus(vm, out.wake) && out.next == Next::Resume {
        Next::Yield
    } else {
        out.next
    }
}

/// Kicks the physical CPUs of the vCPUs in `set` (other than this one); true if one of
/// them shares this physical CPU.
fn kick_vcpus(vm: &Vm, set: VcpuSet) -> bool {
    let mut local = false;
    for t in set.iter() {
        local |= kick_target(vm, t);
    }
    local
}

/// Kicks the CPU of vCPU `t` of `vm`; true if that is this CPU (nothing sent: the caller
/// must give `t` the chance to run). One lookup of `t`.
#[inline]
fn kick_target(vm: &Vm, t: VcpuId) -> bool {
    let Some(v) = vm.vcpus.get(t.0) else {
        return false;
    };
    if v.pcpu == cpu::current_index() {
        return true;
    }
    super::kick_cpu(v.pcpu);
    false
}
