//! Bring-up and the per-CPU run loop: the glue between the board tables, the plugins and the
//! rooms of the core. Safe code only; privileged steps go through [`crate::arch`].
#![deny(unsafe_code)]

pub mod console;
pub mod mgmt;
mod net;
#[cfg(feature = "net-selftest")]
mod net_selftest;
mod ram;
pub mod vms;

use crate::arch::{self, cpu};
use crate::hvprintln;
use crate::platform::{BoardDesc, DeviceStatus};
use crate::plugin::{self, IrqChip, Probed, DRIVERS, QUIRKS};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use spin::Once;

/// SGI used to kick a physical CPU (a vCPU it runs has new work).
pub const KICK_SGI: u32 = 0;

static IRQCHIP: Once<&'static dyn IrqChip> = Once::new();
/// Per physical CPU: its route for the kick (`IrqChip::sgi_route` of its MPIDR), worked out
/// at bring-up; 0 until then (a kick then goes through `send_sgi` with the MPIDR).
static KICK_ROUTE: [AtomicU64; arch::boot::MAX_CPUS] =
    [const { AtomicU64::new(0) }; arch::boot::MAX_CPUS];
static CPUS_ONLINE: AtomicUsize = AtomicUsize::new(0);
static PCPU_COUNT: AtomicUsize = AtomicUsize::new(1);

/// The physical interrupt controller (after bring-up).
pub fn irqchip() -> &'static dyn IrqChip {
    match IRQCHIP.get() {
        Some(c) => *c,
        None => {
            hvprintln!("[hv] no interrupt controller driver probed; stopping");
            halt()
        }
    }
}

/// Sends the kick SGI to physical CPU `pcpu`, through its route when there is one.
#[inline]
pub fn kick_cpu(pcpu: usize) {
    let gic = irqchip();
    match KICK_ROUTE.get(pcpu).map(|r| r.load(Ordering::Acquire)) {
        Some(route) if route != 0 => gic.send_sgi_routed(KICK_SGI, route),
        _ => {
            if let Some(c) = arch::board().cpus.get(pcpu) {
                gic.send_sgi(KICK_SGI, c.mpidr);
            }
        }
    }
}

/// Number of physical CPUs that came up.
pub fn pcpu_count() -> usize {
    PCPU_COUNT.load(Ordering::Acquire)
}

fn halt() -> ! {
    loop {
        cpu::wait_for_interrupt();
    }
}

/// Entry of every physical CPU.
pub fn cpu_main(cpu_index: usize) -> ! {
    if cpu_index == 0 {
        primary_main()
    } else {
        secondary_main(cpu_index)
    }
}

fn primary_main() -> ! {
    // When the hypervisor was entered (CNTVOFF_EL2 is 0 for every guest, so guests' virtual
    // counters share this timeline): the start of the "VM start" figure.
    let entered = cpu::counter();
    let heap = arch::init_heap();
    let board = arch::board();
    // RAM: the firmware's (the loader's device tree), checked against the board KDL's.
    let ram = arch::mem::discover_ram();
    let mmu = arch::mmu::build(board, &ram.regions);
    // The boot code relocated the image, and .bss, the stacks and the heap's early arena
    // were written, with the MMU and D-cache off: drop any line a loader left in the caches
    // for those parts (cleaned to PoC by the boot contract) before the caches are on. Only
    // those: cleaning the whole 32 MiB region took about 2.2 M instructions of every start.
    for (start, end) in arch::boot::written_before_mmu(board.cpus.len())
        .into_iter()
        .chain([arch::early_span()])
    {
        cpu::clean_dcache_range(start, end.saturating_sub(start));
    }
    arch::mmu::enable_this_cpu();
    // The rest of the region joins the heap now that its accesses go through the caches.
    arch::grow_home_heap();
    // Before probing: disk drivers take their DMA memory from the pool. A failure is
    // reported when the VMs are created.
    let _ = arch::mem::init_pool();
    let numa_lines = numa_heaps(board, heap);
    let probed = probe_devices(board);
    hvprintln!();
    hvprintln!(
        "[hv] hypervisor {} starting at EL2; counter entered_at={entered} freq={}",
        env!("CARGO_PKG_VERSION"),
        cpu::counter_frequency()
    );
    banner(board, &probed, heap);
    for line in &numa_lines {
        hvprintln!("[hv] {line}");
    }
    if let Some(why) = &ram.refusal {
        hvprintln!("[hv] FATAL: {why}");
        halt()
    }
    // Before the GIC or any other device is initialised: a board KDL the firmware
    // contradicts stops here.
    firmware_tables(board);
    match mmu {
        Ok(()) => {
            hvprintln!("[hv] EL2 page tables: identity map of RAM and devices, MMU and caches on")
        }
        Err(e) => hvprintln!("[hv] running without EL2 page tables: {e}"),
    }
    probe_pci(board);
    report_datastore();
    #[cfg(feature = "storage-selftest")]
    storage_selftest();

    let gic = irqchip();
    gic.init_global();
    for (route, c) in KICK_ROUTE.iter().zip(board.cpus) {
        route.store(gic.sgi_route(c.mpidr), Ordering::Release);
    }
    if board.gic.version == crate::platform::GicVersion::V2 {
        match board.gic.hyp_interface {
            Some(gich) => arch::vgic_hw::init(Some(gich.base)),
            None => {
                hvprintln!("[hv] the board's GICv2 has no hyp-interface (GICH): add it to the board KDL; no VM can run");
                halt()
            }
        }
    }
    init_this_cpu(0);
    // Interrupts of host devices whose drivers registered a handler while probing.
    for (intid, level, name) in plugin::irq::registered() {
        gic.enable(intid, 0x80, !level, cpu::mpidr());
        hvprintln!(
            "[hv] interrupt {intid} ({}) for {name}, on CPU 0",
            if level { "level" } else { "edge" }
        );
    }

    #[cfg(feature = "net-selftest")]
    net_selftest::run();
    // After the self-test (which listens to the uplinks itself): the switch takes them.
    net::init(board);

    // Bring up the other CPUs of the board.
    CPUS_ONLINE.store(1, Ordering::Release);
    let mut started = 1;
    for (i, c) in board.cpus.iter().enumerate().skip(1) {
        if i >= arch::boot::MAX_CPUS {
            hvprintln!("[hv] CPU {i} ({:#x}): no stack reserved, left off", c.mpidr);
            continue;
        }
        node_local_stack(i, c.numa_node);
        match cpu::start_cpu(i, c) {
            Ok(()) => started += 1,
            Err(e) => hvprintln!("[hv] CPU {i} ({:#x}) did not start: {e:?}", c.mpidr),
        }
    }
    let spin: Vec<alloc::string::String> = board
        .cpus
        .iter()
        .enumerate()
        .skip(1)
        .filter_map(|(i, c)| match c.enable {
            crate::platform::CpuEnable::SpinTable { release_addr } => {
                Some(alloc::format!("CPU {i} at {release_addr:#x}"))
            }
            crate::platform::CpuEnable::Psci => None,
        })
        .collect();
    if !spin.is_empty() {
        hvprintln!(
            "[hv] started by spin-table (release address written): {}",
            spin.join(", ")
        );
    }
    let t0 = cpu::counter();
    let timeout = cpu::counter_frequency(); // one second
    while CPUS_ONLINE.load(Ordering::Acquire) < started && cpu::counter() - t0 < timeout {
        cpu::yield_now(); // Hands the CPU over under QEMU's round-robin TCG (see `sync`).
    }
    let online = CPUS_ONLINE.load(Ordering::Acquire);
    PCPU_COUNT.store(online, Ordering::Release);
    hvprintln!("[hv] {online} of {} CPUs online", board.cpus.len());

    let fw = firmware_smccc();
    if board.has_psci_firmware() {
        hvprintln!(
            "[hv] firmware SMCCC: version {}, ARCH_FEATURES(WORKAROUND_1/2/3) = {:?}",
            fw.version.map_or("1.0".into(), |v| alloc::format!(
                "{}.{}",
                v >> 16,
                v & 0xffff
            )),
            fw.workarounds
        );
    } else {
        hvprintln!(
            "[hv] firmware SMCCC: no firmware (every CPU starts by spin table); no SMC is made, guests get PSCI from the hypervisor"
        );
    }
    if let crate::platform::PmuDesc::Unavailable(reason) = board.pmu {
        hvprintln!(
            "[hv] PMU: no overflow interrupt ({reason}); guests' PMUs count without interrupting"
        );
    }
    if let Some(key) = arch::vm_table().console_escape {
        vms::set_switch_key(key);
    }
    // The datastore's VMs and the management network (hosts with a datastore).
    mgmt::boot();
    // The VMs the boot loader handed over as device-tree modules.
    mgmt::define_boot_modules();
    vms::create_all(board, arch::vm_table(), online);
    mgmt::autostart();
    vms::run_cpu(0)
}

/// Node-local hypervisor memory on a NUMA board: each CPU allocates on its own node, and
/// each node with CPUs other than the one holding the hypervisor's region gets a heap of
/// the home heap's size from its own RAM. Returns the banner lines (the console is not up
/// yet).
fn numa_heaps(board: &BoardDesc, home_heap: u64) -> Vec<alloc::string::String> {
    let (region_start, _, _) = arch::image_layout();
    let home = arch::mem::node_of(crate::types::HostPhysAddr(region_start)).unwrap_or(0);
    arch::heap::set_home_node(home);
    let mut nodes: Vec<u32> = Vec::new();
    for (i, c) in board.cpus.iter().enumerate() {
        arch::heap::set_cpu_node(i, c.numa_node);
        if !nodes.contains(&c.numa_node) {
            nodes.push(c.numa_node);
        }
    }
    if nodes.len() < 2 {
        return Vec::new();
    }
    let size = (home_heap & !(crate::mm::BLOCK_2M - 1)).max(crate::mm::BLOCK_2M);
    let mut lines = alloc::vec![alloc::format!(
        "NUMA node {home}: hypervisor heap {} MiB in the hypervisor's region",
        home_heap >> 20
    )];
    for node in nodes.into_iter().filter(|&n| n != home) {
        lines.push(match arch::heap::add_node_heap(node, size) {
            Ok(base) => alloc::format!(
                "NUMA node {node}: hypervisor heap {} MiB at host {base:#x}",
                size >> 20
            ),
            Err(e) => alloc::format!(
                "NUMA node {node}: no heap of its own ({e}); its CPUs allocate on node {home}"
            ),
        });
    }
    lines
}

/// Gives secondary CPU `cpu` a stack from its node's heap when that is not the home node
/// (its .bss stack is on the home node); prints where it is.
fn node_local_stack(cpu: usize, node: u32) {
    let (region_start, _, _) = arch::image_layout();
    let home = arch::mem::node_of(crate::types::HostPhysAddr(region_start)).unwrap_or(0);
    if node == home {
        return;
    }
    match arch::boot::give_node_stack(cpu, node) {
        Some(base) => hvprintln!("[hv] CPU {cpu}: stack on NUMA node {node} at host {base:#x}"),
        None => hvprintln!(
            "[hv] CPU {cpu}: NUMA node {node}'s heap has no room for its stack; it runs on its .bss stack"
        ),
    }
}

/// What the firmware provides of SMCCC: asked by `smc` on first use (at boot, before any
/// VM), then cached; every VM's guests are told the same.
pub fn firmware_smccc() -> crate::psci::FirmwareSmccc {
    static FIRMWARE: Once<crate::psci::FirmwareSmccc> = Once::new();
    *FIRMWARE.call_once(cpu::firmware_smccc)
}

fn secondary_main(cpu_index: usize) -> ! {
    arch::mmu::enable_this_cpu();
    init_this_cpu(cpu_index);
    CPUS_ONLINE.fetch_add(1, Ordering::AcqRel);
    vms::wait_until_created();
    vms::run_cpu(cpu_index)
}

fn init_this_cpu(cpu_index: usize) {
    let gic = irqchip();
    gic.init_cpu(cpu_index);
    let board = arch::board();
    let me = board.cpus.get(cpu_index).map(|c| c.mpidr).unwrap_or(0);
    // Physical interrupts the core handles itself: kick SGI, EL2 timer, virtual timer,
    // GIC maintenance.
    gic.enable(KICK_SGI, 0x80, true, me);
    gic.enable(board.timer.hyp_phys.intid, 0x80, false, me);
    gic.enable(board.timer.virt.intid, 0x80, false, me);
    gic.enable(board.gic.maintenance_irq.intid, 0x80, false, me);
    // This CPU's PMU overflow line: forwarded to the vCPU whose PMU state is loaded.
    if let Some(pmu) = board.pmu.irq_for(me) {
        let edge = pmu.trigger == crate::platform::Trigger::Edge;
        gic.enable(pmu.intid, 0x80, edge, me);
    }
    match crate::mm::stage2::vtcr_el2(cpu::pa_range()) {
        Ok(vtcr) => cpu::init_el2(vtcr, board.gic.version == crate::platform::GicVersion::V3),
        Err(e) => {
            hvprintln!("[hv] CPU {cpu_index}: cannot run guests: {e}");
            halt()
        }
    }
    cpu::allow_naps();
}

/// Devices a driver plugin probed successfully: the hypervisor owns them, so no VM may be
/// given them (their windows and interrupts) by passthrough.
static DRIVEN: Once<Vec<&'static str>> = Once::new();

/// True if a driver plugin drives `dev`.
pub fn is_driven(dev: &crate::platform::DeviceDesc) -> bool {
    DRIVEN.get().is_some_and(|d| d.contains(&dev.name))
}

/// What bring-up found, for the banner.
pub struct ProbeReport {
    lines: Vec<(&'static str, &'static str, Result<(), plugin::ProbeError>)>,
    unmatched: Vec<&'static str>,
    /// Devices a driver only reads (an RTC): still free for passthrough.
    shared: Vec<&'static str>,
}

fn probe_devices(board: &'static BoardDesc) -> ProbeReport {
    let mut report = ProbeReport {
        lines: Vec::new(),
        unmatched: Vec::new(),
        shared: Vec::new(),
    };
    // Console first, so that everything after can be reported.
    let console_idx = board.console;
    let order = console_idx
        .into_iter()
        .chain((0..board.devices.len()).filter(move |&i| Some(i) != console_idx));
    for i in order {
        let Some(dev) = board.devices.get(i) else {
            continue;
        };
        if !dev.is_enabled() {
            continue;
        }
        match plugin::match_driver(&DRIVERS, dev) {
            Some(drv) => {
                let r = (drv.probe)(dev, board);
                match r {
                    Ok(Probed::Console(c)) if Some(i) == console_idx => console::install(c),
                    Ok(Probed::IrqChip(c)) => {
                        IRQCHIP.call_once(|| c);
                    }
                    Ok(Probed::Rtc(c)) => {
                        plugin::rtc::install(c);
                        // Only read: the device may still be passed through to a VM.
                        report.shared.push(dev.name);
                    }
                    _ => {}
                }
                report.lines.push((dev.name, drv.name, r.map(|_| ())));
            }
            None => report.unmatched.push(dev.name),
        }
    }
    DRIVEN.call_once(|| {
        report
            .lines
            .iter()
            .filter(|(dev, _, r)| r.is_ok() && !report.shared.contains(dev))
            .map(|(dev, _, _)| *dev)
            .collect()
    });
    report
}

/// The firmware's ACPI tables, when the loader passed their RSDP (`/chosen hv,acpi-rsdp`),
/// against the board KDL: the summary and every difference are printed, each naming its
/// KDL line; a difference that makes going on unsafe (another GIC or console address)
/// halts the host.
fn firmware_tables(board: &'static BoardDesc) {
    let Some(rsdp) = arch::mem::boot_info().and_then(|i| i.acpi_rsdp) else {
        return;
    };
    let Some(mem) = arch::mem::boot_firmware_ram(board) else {
        hvprintln!("[hv] ACPI tables at RSDP {rsdp:#x} not read: the EL2 MMU is off");
        return;
    };
    match crate::acpi::discover_and_check(rsdp, &mem, board) {
        Ok((info, findings)) => {
            hvprintln!("[hv] {info}");
            let mut refuse = false;
            for f in &findings {
                hvprintln!("[hv] {f}");
                refuse |= f.severity == crate::acpi::Severity::Refuse;
            }
            if findings.is_empty() {
                hvprintln!(
                    "[hv] ACPI agrees with the board KDL ({})",
                    board.source.file
                );
            }
            if refuse {
                hvprintln!(
                    "[hv] FATAL: the firmware's ACPI tables contradict the board KDL (above); not starting"
                );
                halt()
            }
        }
        Err(e) => hvprintln!(
            "[hv] ACPI tables at RSDP {rsdp:#x} cannot be read ({e}); going on with the board KDL"
        ),
    }
}

fn banner(board: &BoardDesc, probed: &ProbeReport, heap: u64) {
    hvprintln!(
        "[hv] board: {} ({}), SoC {}, support level: {}",
        board.name,
        board.model,
        board.soc,
        board.support.as_str()
    );
    let sockets = board.cpus.iter().map(|c| c.socket).max().unwrap_or(0) + 1;
    hvprintln!(
        "[hv] CPUs: {} in {} socket(s); GIC {:?} ({})",
        board.cpus.len(),
        sockets,
        board.gic.version,
        board.gic.compatible
    );
    hvprintln!(
        "[hv] stage 2: guest RAM mapped in {}",
        match board.stage2_ram_mappings {
            crate::platform::Stage2RamMappings::Blocks => "2 MiB blocks",
            crate::platform::Stage2RamMappings::Pages =>
                "4 KiB pages (the board's `stage2 ram-mappings=\"pages\"`)",
        }
    );
    let (link, load) = arch::boot::link_and_load_address();
    if link == load {
        hvprintln!("[hv] loaded at {load:#x} (its link address)");
    } else {
        hvprintln!(
            "[hv] loaded at {load:#x}, linked at {link:#x}: relocated by {}{:#x}",
            if load < link { "-" } else { "+" },
            load.abs_diff(link)
        );
    }
    if let Some(ram) = arch::mem::ram_choice() {
        for line in &ram.lines {
            hvprintln!("[hv] {line}");
        }
        if let Some(w) = &ram.warning {
            hvprintln!("[hv] WARNING: {w}");
        }
    }
    if let Some(info) = arch::mem::boot_info() {
        if let Some(rsdp) = info.acpi_rsdp {
            hvprintln!("[hv] ACPI RSDP at {rsdp:#x} (from /chosen)");
        }
        for m in &info.modules {
            hvprintln!(
                "[hv] module {}: {:#x}..{:#x} {}",
                m.node_name,
                m.base,
                m.base + m.size,
                m.kind
            );
        }
    }
    for m in arch::mem::ram_regions() {
        hvprintln!(
            "[hv] memory {}: {:#x}..{:#x} ({} MiB, node {})",
            m.name,
            m.base,
            m.base + m.size,
            m.size >> 20,
            m.numa_node
        );
    }
    let (img_start, img_end, _) = arch::image_layout();
    hvprintln!(
        "[hv] image {:#x}..{:#x} ({} KiB), heap {} KiB",
        img_start,
        img_end,
        (img_end - img_start) >> 10,
        heap >> 10
    );
    for (dev, drv, r) in &probed.lines {
        match r {
            Ok(()) => hvprintln!("[hv] device {dev}: driver {drv}"),
            Err(e) => hvprintln!("[hv] device {dev}: driver {drv} failed: {e}"),
        }
    }
    for dev in &probed.unmatched {
        hvprintln!("[hv] device {dev}: no driver registered (not used)");
    }
    for d in board.devices {
        if let DeviceStatus::Disabled { reason } = d.status {
            hvprintln!("[hv] device {}: disabled: {reason}", d.name);
        }
    }
    for q in board.quirks {
        let found = QUIRKS.iter().find(|e| e.name == q.name);
        match found {
            Some(e) => hvprintln!("[hv] quirk {} for {}: {}", q.name, q.matches, e.description),
            None => hvprintln!(
                "[hv] quirk {} for {}: no quirk plugin linked",
                q.name,
                q.matches
            ),
        }
    }
    hvprintln!(
        "[hv] plugins: {} driver(s), {} PCI driver(s), {} quirk set(s) registered",
        DRIVERS.len(),
        plugin::pci::PCI_DRIVERS.len(),
        QUIRKS.len()
    );
}

/// Hands each PCI function the host bridges offered to its driver, and reports what they
/// found and left alone.
fn probe_pci(board: &'static BoardDesc) {
    use plugin::pci::{match_pci_driver, take_notes, take_offered, PciProbe, PCI_DRIVERS};
    for n in take_notes() {
        hvprintln!(
            "[hv] pci {} {} {:04x}:{:04x} class {:06x}: {}",
            n.host.name,
            n.bdf,
            n.ids.vendor,
            n.ids.device,
            n.ids.class,
            n.what
        );
    }
    for o in take_offered() {
        let f = &o.function;
        let what = match match_pci_driver(&PCI_DRIVERS, &f.ids) {
            None => Err("no driver registered (not used)"),
            Some(drv) => {
                let probe = PciProbe {
                    function: f,
                    config: o.config,
                    host: o.host,
                    board,
                };
                Ok((drv.name, (drv.probe)(&probe)))
            }
        };
        let head = alloc::format!(
            "[hv] pci {} {} {:04x}:{:04x} class {:06x}",
            o.host.name,
            f.bdf,
            f.ids.vendor,
            f.ids.device,
            f.ids.class
        );
        match what {
            Err(why) => hvprintln!("{head}: {why}"),
            Ok((drv, Ok(()))) => hvprintln!("{head}: driver {drv}"),
            Ok((drv, Err(e))) => hvprintln!("{head}: driver {drv} failed: {e}"),
        }
    }
}

/// Lists the datastore's disks and their partitions.
fn report_datastore() {
    use core::fmt::Write;
    crate::datastore::with(|store| {
        for d in store.disks() {
            let mut line = alloc::format!(
                "[hv] datastore: {} ({}, {} MiB): ",
                d.name,
                d.info.model,
                d.sectors >> 11
            );
            match &d.table {
                Ok(parts) if parts.is_empty() => line.push_str("no partitions"),
                Ok(parts) => {
                    line.push_str("partitions");
                    for (i, p) in parts.iter().enumerate() {
                        let sep = if i == 0 { "" } else { "," };
                        let _ = write!(line, "{sep} \"{}\" {} MiB", p.label, p.sectors >> 11);
                    }
                }
                Err(e) => {
                    let _ = write!(line, "{e}");
                }
            }
            hvprintln!("{line}");
        }
    });
}

/// Boot-time storage self-test (feature `storage-selftest`, scenario `storage-host-nvme`):
/// writes a value computed now into the first sector of the partition labelled
/// `hv-selftest`, flushes, reads it back and prints it, for the host to find in the image.
#[cfg(feature = "storage-selftest")]
fn storage_selftest() {
    use crate::block::{BlockDevice, SECTOR};
    const LABEL: &str = "hv-selftest";
    let mut part = match crate::datastore::open(LABEL, false, "self-test") {
        Ok(p) => p,
        Err(e) => {
            hvprintln!("[hv] storage self-test: FAIL: {e}");
            return;
        }
    };
    // A value nobody could have put in the image beforehand: the counter at this moment,
    // mixed so that consecutive boots differ in many bits.
    let value = cpu::counter().wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ cpu::counter_frequency();
    let mut sector = [0u8; SECTOR];
    let text = alloc::format!("HV-SELFTEST {value:016x}\n");
    sector[..text.len()].copy_from_slice(text.as_bytes());
    let mut back = [0u8; SECTOR];
    let r = part
        .write(0, &sector)
        .and_then(|()| part.flush())
        .and_then(|()| part.read(0, &mut back));
    match r {
        Ok(()) if back == sector => hvprintln!(
            "[hv] storage self-test: wrote value={value:016x} to \"{LABEL}\" sector 0, flushed, read back equal"
        ),
        Ok(()) => hvprintln!("[hv] storage self-test: FAIL: read back differs from value={value:016x}"),
        Err(e) => hvprintln!("[hv] storage self-test: FAIL: {e}"),
    }
    // A transfer bigger than the driver's bounce buffer, starting at an odd sector: split
    // requests and PRP lists. Byte `i` is the `i % 8`th byte of `value` plus `i / 512`.
    const BIG_AT: u64 = 9;
    const BIG_SECTORS: usize = 401;
    let pattern: alloc::vec::Vec<u8> = (0..BIG_SECTORS * SECTOR)
        .map(|i| ((value >> ((i % 8) * 8)) as u8).wrapping_add((i / SECTOR) as u8))
        .collect();
    let mut back = alloc::vec![0u8; pattern.len()];
    let r = part
        .write(BIG_AT, &pattern)
        .and_then(|()| part.flush())
        .and_then(|()| part.read(BIG_AT, &mut back));
    match r {
        Ok(()) if back == pattern => hvprintln!(
            "[hv] storage self-test: {BIG_SECTORS} sectors at sector {BIG_AT} of \"{LABEL}\" written, flushed, read back equal"
        ),
        Ok(()) => hvprintln!("[hv] storage self-test: FAIL: {BIG_SECTORS} sectors read back differ"),
        Err(e) => hvprintln!("[hv] storage self-test: FAIL: {e}"),
    }
    match selftest_dma(&mut part, value) {
        Ok(Some(n)) => hvprintln!(
            "[hv] storage self-test: {n} sectors at sector {DMA_AT} of \"{LABEL}\" written and read back by DMA lists, equal"
        ),
        Ok(None) => hvprintln!("[hv] storage self-test: DMA lists declined: copies through buffers"),
        Err(e) => hvprintln!("[hv] storage self-test: FAIL: DMA lists: {e}"),
    }
    drop(part);
    crate::datastore::release(LABEL, "self-test");
}

/// First sector of the self-test's DMA transfer (a multiple of 8: whole 4 KiB blocks).
#[cfg(feature = "storage-selftest")]
const DMA_AT: u64 = 1024;

/// The path guests' NVMe and virtio-blk I/O takes: 520 sectors (more than one bounce
/// buffer) written from pool RAM and read back into other pool RAM through
/// `write_dma`/`read_dma`, each list starting 512 bytes into a page (a guest's PRP1
/// offset), with the driver's cache maintenance on a non-coherent bridge. `Ok(None)` if
/// the disk declines lists (AHCI).
#[cfg(feature = "storage-selftest")]
fn selftest_dma(
    part: &mut crate::block::Partition,
    value: u64,
) -> Result<Option<usize>, alloc::string::String> {
    use crate::block::{BlockDevice, DmaList, DmaSeg, SECTOR};
    use alloc::string::ToString;
    const SECTORS: usize = 520;
    let len = SECTORS * SECTOR;
    let pattern: alloc::vec::Vec<u8> = (0..len)
        .map(|i| ((value >> ((i % 8) * 8)) as u8) ^ (i / SECTOR) as u8 ^ 0x5a)
        .collect();
    let mut ram = crate::arch::mem::alloc_ram(2 * len as u64 + 0x4000, 0x1000, None)
        .map_err(|e| e.to_string())?;
    let (src, dst) = (512u64, len as u64 + 0x2000 + 512);
    ram.write(src, &pattern).map_err(|e| e.to_string())?;
    let list = |off: u64| {
        DmaList::new(alloc::vec![DmaSeg {
            addr: ram.base().0 + off,
            len: len as u64,
        }])
    };
    // The lists point into `ram`, which this function owns and keeps until they are gone.
    if !part
        .write_dma(DMA_AT, &list(src))
        .map_err(|e| e.to_string())?
    {
        return Ok(None);
    }
    part.flush().map_err(|e| e.to_string())?;
    if !part
        .read_dma(DMA_AT, &list(dst))
        .map_err(|e| e.to_string())?
    {
        return Err("the read list was declined after the write list was taken".into());
    }
    let mut back = alloc::vec![0u8; len];
    ram.read(dst, &mut back).map_err(|e| e.to_string())?;
    if back != pattern {
        return Err("read back differs".into());
    }
    Ok(Some(SECTORS))
}
