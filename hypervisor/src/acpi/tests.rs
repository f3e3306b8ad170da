//! Host tests: synthetic tables built here (valid, checksummed, laid out as QEMU's virt
//! machine and a two-socket Mt. Jade lay them out), checked against the real boards of
//! `boards.kdl` with their real line numbers.

use super::*;
use crate::platform::{
    BoardDesc, CpuDesc, CpuEnable, DeviceDesc, DeviceStatus, GicDesc, GicVersion, IrqDesc,
    MemoryDesc, NetworkDesc, PmuDesc, RegDesc, SourceDesc, SupportLevel, TimerDesc, Trigger,
    VerificationDesc,
};
use platform_dsl::model;

// ---- fake physical memory -------------------------------------------------------------

/// Byte ranges at physical addresses; a read must fall inside one.
#[derive(Default, Clone)]
pub(super) struct Mem(pub Vec<(u64, Vec<u8>)>);

impl PhysRead for Mem {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), PhysReadError> {
        let err = PhysReadError {
            pa,
            len: buf.len() as u64,
        };
        for (base, bytes) in &self.0 {
            let Some(off) = pa.checked_sub(*base) else {
                continue;
            };
            let Ok(off) = usize::try_from(off) else {
                continue;
            };
            if let Some(src) = off
                .checked_add(buf.len())
                .and_then(|end| bytes.get(off..end))
            {
                buf.copy_from_slice(src);
                return Ok(());
            }
        }
        Err(err)
    }
}

// ---- table builder ---------------------------------------------------------------------

fn fix_checksum(t: &mut [u8], at: usize) {
    t[at] = 0;
    let s = t.iter().fold(0u8, |a, &b| a.wrapping_add(b));
    t[at] = 0u8.wrapping_sub(s);
}

/// A table: header (signature, length, revision, checksum, OEM fields) + `body`.
fn sdt(sig: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(sig);
    t.extend_from_slice(&((36 + body.len()) as u32).to_le_bytes());
    t.push(revision);
    t.push(0);
    t.extend_from_slice(b"BOCHS ");
    t.extend_from_slice(b"BXPC    ");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(b"BXPC");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(body);
    fix_checksum(&mut t, 9);
    t
}

fn rsdp(xsdt: u64) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(b"RSD PTR ");
    r.push(0);
    r.extend_from_slice(b"BOCHS ");
    r.push(2);
    r.extend_from_slice(&0u32.to_le_bytes());
    r.extend_from_slice(&36u32.to_le_bytes());
    r.extend_from_slice(&xsdt.to_le_bytes());
    r.extend_from_slice(&[0; 4]);
    fix_checksum(&mut r[..20], 8);
    fix_checksum(&mut r, 32);
    r
}

struct W(Vec<u8>);
impl W {
    fn new() -> Self {
        W(Vec::new())
    }
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
}

/// A MADT GICC structure (ACPI 6.0 layout, 80 bytes), as QEMU's build_madt writes it.
#[allow(clippy::too_many_arguments)]
fn gicc(
    uid: u32,
    mpidr: u64,
    flags: u32,
    pmu: u32,
    maint: u32,
    gicr: u64,
    v2: Option<[u64; 3]>,
) -> Vec<u8> {
    let [gicc_base, gicv, gich] = v2.unwrap_or([0; 3]);
    W::new()
        .u8(0x0b)
        .u8(80)
        .u16(0)
        .u32(uid) // CPU interface number
        .u32(uid)
        .u32(flags)
        .u32(0) // parking protocol
        .u32(pmu)
        .u64(0) // parked address
        .u64(gicc_base)
        .u64(gicv)
        .u64(gich)
        .u32(maint)
        .u64(gicr)
        .u64(mpidr)
        .u8(0)
        .u8(0)
        .u16(0)
        .0
}

fn gicd(base: u64, version: u8) -> Vec<u8> {
    W::new()
        .u8(0x0c)
        .u8(24)
        .u16(0)
        .u32(0)
        .u64(base)
        .u32(0)
        .u8(version)
        .u8(0)
        .u16(0)
        .0
}

fn gicr(base: u64, len: u32) -> Vec<u8> {
    W::new().u8(0x0e).u8(16).u16(0).u64(base).u32(len).0
}

fn its(id: u32, base: u64) -> Vec<u8> {
    W::new().u8(0x0f).u8(20).u16(0).u32(id).u64(base).u32(0).0
}

fn madt(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut body = W::new().u32(0).u32(0).0;
    for e in entries {
        body.extend_from_slice(e);
    }
    sdt(b"APIC", 4, &body)
}

/// GTDT revision 2 as QEMU writes it: level timers, NS EL1 always-on.
fn gtdt(s: u32, ns: u32, v: u32, hyp: u32) -> Vec<u8> {
    let body = W::new()
        .u64(u64::MAX)
        .u32(0)
        .u32(s)
        .u32(0)
        .u32(ns)
        .u32(4)
        .u32(v)
        .u32(0)
        .u32(hyp)
        .u32(0)
        .u64(u64::MAX)
        .u32(0)
        .u32(0)
        .0;
    sdt(b"GTDT", 2, &body)
}

/// SPCR revision 2 as QEMU's build_spcr writes it (80 bytes).
fn spcr(kind: u8, base: u64, gsiv: u32) -> Vec<u8> {
    let mut body = W::new()
        .u8(kind)
        .u8(0)
        .u16(0)
        .u8(0) // GAS: system memory
        .u8(8)
        .u8(0)
        .u8(1)
        .u64(base)
        .u8(1 << 3) // interrupt type: GIC
        .u8(0)
        .u32(gsiv)
        .u8(3) // 9600 baud
        .u8(0)
        .u8(1)
        .u8(2)
        .u8(0)
        .u8(0)
        .u16(0xffff)
        .u16(0xffff)
        .0;
    body.resize(80 - 36, 0);
    sdt(b"SPCR", 2, &body)
}

fn mcfg(base: u64, seg: u16, start: u8, end: u8) -> Vec<u8> {
    let body = W::new()
        .u64(0)
        .u64(base)
        .u16(seg)
        .u8(start)
        .u8(end)
        .u32(0)
        .0;
    sdt(b"MCFG", 1, &body)
}

fn srat_mem(domain: u32, base: u64, len: u64) -> Vec<u8> {
    W::new()
        .u8(1)
        .u8(40)
        .u32(domain)
        .u16(0)
        .u32(base as u32)
        .u32((base >> 32) as u32)
        .u32(len as u32)
        .u32((len >> 32) as u32)
        .u32(0)
        .u32(1)
        .u64(0)
        .0
}

fn srat_cpu(domain: u32, uid: u32) -> Vec<u8> {
    W::new().u8(3).u8(18).u32(domain).u32(uid).u32(1).u32(0).0
}

fn srat(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut body = W::new().u32(1).u64(0).0;
    for e in entries {
        body.extend_from_slice(e);
    }
    sdt(b"SRAT", 3, &body)
}

fn slit(n: u64, m: &[u8]) -> Vec<u8> {
    let mut body = W::new().u64(n).0;
    body.extend_from_slice(m);
    sdt(b"SLIT", 1, &body)
}

/// A PPTT processor hierarchy node.
fn pptt_node(flags: u32, parent: u32, uid: u32) -> Vec<u8> {
    W::new()
        .u8(0)
        .u8(20)
        .u16(0)
        .u32(flags)
        .u32(parent)
        .u32(uid)
        .u32(0)
        .0
}

const RSDP_PA: u64 = 0x4000_0000;
const XSDT_PA: u64 = 0x4000_1000;
const TABLES_PA: u64 = 0x4001_0000;

/// Memory holding an RSDP, an XSDT and `tables` (each 64 KiB apart).
fn machine(tables: &[Vec<u8>]) -> Mem {
    let ptrs: Vec<u8> = (0..tables.len())
        .flat_map(|i| (TABLES_PA + 0x1_0000 * i as u64).to_le_bytes())
        .collect();
    let mut mem = vec![(RSDP_PA, rsdp(XSDT_PA)), (XSDT_PA, sdt(b"XSDT", 1, &ptrs))];
    for (i, t) in tables.iter().enumerate() {
        mem.push((TABLES_PA + 0x1_0000 * i as u64, t.clone()));
    }
    Mem(mem)
}

/// QEMU virt (`gic-version=3`, `-smp cpus`) as hw/arm/virt-acpi-build.c builds it: GICD
/// 0x0800_0000 v3, one GICC per CPU (UID = index, MPIDR = index, PMU PPI 23,
/// maintenance PPI 25), one GICR range 0x080a_0000 + 0xf6_0000, ITS 0 at 0x0808_0000;
/// GTDT 29/30/27/26 level; SPCR PL011 at 0x0900_0000 GSIV 33; MCFG segment 0 at
/// VIRT_HIGH_PCIE_ECAM, buses 0-255.
fn qemu_virt_tables(cpus: u32, gicd_base: u64) -> Vec<Vec<u8>> {
    let mut m = vec![gicd(gicd_base, 3)];
    for i in 0..cpus {
        m.push(gicc(i, u64::from(i), 1, 23, 25, 0, None));
    }
    m.push(gicr(0x080a_0000, 0xf6_0000));
    m.push(its(0, 0x0808_0000));
    vec![
        sdt(b"FACP", 5, &[0; 240]),
        madt(&m),
        gtdt(29, 30, 27, 26),
        mcfg(0x40_1000_0000, 0, 0, 255),
        spcr(3, 0x0900_0000, 33),
    ]
}

// ---- the boards of boards.kdl as the image sees them -------------------------------------

fn boards_kdl() -> &'static str {
    include_str!("../../../boards.kdl")
}

fn leak<T>(v: Vec<T>) -> &'static [T] {
    Vec::leak(v)
}

fn s(v: &str) -> &'static str {
    String::leak(v.to_owned())
}

fn irq(i: model::Irq) -> IrqDesc {
    IrqDesc {
        intid: i.intid,
        trigger: match i.trigger {
            model::Trigger::Level => Trigger::Level,
            model::Trigger::Edge => Trigger::Edge,
        },
    }
}

fn reg(r: &model::Reg) -> RegDesc {
    RegDesc {
        name: s(&r.name),
        base: r.base,
        size: r.size,
    }
}

/// The `BoardDesc` that `board!` generates for `name` (the fields the check reads).
fn board(name: &str) -> &'static BoardDesc {
    let boards = platform_dsl::load_str("boards.kdl", boards_kdl()).expect("boards.kdl loads");
    let b = platform_dsl::find_board(&boards, name).expect("board exists");
    let node = |socket| {
        b.numa_nodes
            .iter()
            .find(|n| n.socket == socket)
            .map_or(0, |n| n.id)
    };
    let devices: Vec<DeviceDesc> = b
        .devices
        .iter()
        .map(|d| DeviceDesc {
            name: s(&d.name),
            compatible: leak(d.compatible.iter().map(|c| s(c)).collect()),
            regs: leak(d.regs.iter().map(reg).collect()),
            irqs: leak(d.irqs.iter().map(|i| irq(*i)).collect()),
            status: DeviceStatus::Okay,
            bus_id: None,
            clock_hz: d.clock_hz,
            dma_coherent: d.dma_coherent,
        })
        .collect();
    let console = b
        .devices
        .iter()
        .position(|d| b.is_console(&d.name))
        .expect("console device");
    let desc = BoardDesc {
        name: s(&b.name),
        model: s(&b.model),
        soc: s(&b.soc),
        support: SupportLevel::Supported,
        verified_by: VerificationDesc::None,
        cpus: leak(
            b.cpus
                .iter()
                .map(|c| CpuDesc {
                    mpidr: c.mpidr,
                    socket: c.socket,
                    cluster: c.cluster,
                    numa_node: node(c.socket),
                    core: s(&c.core),
                    enable: CpuEnable::Psci,
                })
                .collect(),
        ),
        memory: leak(
            b.memory
                .iter()
                .map(|m| MemoryDesc {
                    name: s(&m.name),
                    base: m.base,
                    size: m.size,
                    numa_node: m.numa_node,
                    from_firmware: match m.from_firmware {
                        model::FromFirmware::Nothing => crate::platform::FromFirmware::Nothing,
                        model::FromFirmware::Size => crate::platform::FromFirmware::Size,
                        model::FromFirmware::BaseAndSize => {
                            crate::platform::FromFirmware::BaseAndSize
                        }
                    },
                })
                .collect(),
        ),
        hypervisor_base: b.hypervisor.load_address,
        hypervisor_size: b.hypervisor.size,
        gic: GicDesc {
            version: match b.gic.version {
                model::GicVersion::V2 => GicVersion::V2,
                model::GicVersion::V3 => GicVersion::V3,
            },
            compatible: s(&b.gic.compatible),
            distributor: reg(&b.gic.distributor),
            redistributors: leak(b.gic.redistributors.iter().map(reg).collect()),
            cpu_interface: b.gic.cpu_interface.as_ref().map(reg),
            hyp_interface: b.gic.hyp_interface.as_ref().map(reg),
            virtual_cpu_interface: b.gic.virtual_cpu_interface.as_ref().map(reg),
            its: b.gic.its.as_ref().map(reg),
            maintenance_irq: irq(b.gic.maintenance_irq),
            spi_count: b.gic.spi_count,
        },
        timer: TimerDesc {
            secure_phys: irq(b.timer.secure_phys),
            phys: irq(b.timer.phys),
            virt: irq(b.timer.virt),
            hyp_phys: irq(b.timer.hyp_phys),
        },
        pmu: match &b.pmu {
            model::Pmu::Ppi(i) => PmuDesc::Ppi(irq(*i)),
            model::Pmu::Unavailable { reason } => {
                PmuDesc::Unavailable(Box::leak(reason.clone().into_boxed_str()))
            }
            model::Pmu::PerCpuSpi(v) => {
                PmuDesc::PerCpuSpi(leak(v.iter().map(|p| (irq(p.irq), p.mpidr)).collect()))
            }
        },
        console: Some(console),
        interrupt_controller: devices.len(),
        devices: leak(devices),
        quirks: &[],
        network: NetworkDesc::DEFAULT,
        stage2_ram_mappings: crate::platform::Stage2RamMappings::Blocks,
        source: SourceDesc {
            file: s(&b.source.file),
            lines: leak(b.source.lines.iter().map(|(k, l)| (s(k), *l)).collect()),
        },
        numa_distances: leak(
            b.numa_distances
                .iter()
                .map(|row| leak(row.clone()))
                .collect(),
        ),
    };
    Box::leak(Box::new(desc))
}

/// The line (from 1) of the first line of boards.kdl after the one starting `after` that
/// contains `needle`: found from the text, not written down, so that editing the file
/// does not break the tests.
fn line_of(after: &str, needle: &str) -> u32 {
    let lines: Vec<&str> = boards_kdl().lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with(after))
        .expect("anchor line");
    let i = (start..lines.len())
        .find(|&i| lines[i].contains(needle))
        .expect("needle line");
    i as u32 + 1
}

fn refusals(f: &[Finding]) -> Vec<&Finding> {
    f.iter()
        .filter(|f| f.severity == Severity::Refuse)
        .collect()
}

// ---- parsing ---------------------------------------------------------------------------

#[test]
fn qemu_virt_tables_parse_to_what_qemu_wrote() {
    let mem = machine(&qemu_virt_tables(4, 0x0800_0000));
    let info = discover(RSDP_PA, &mem).expect("valid tables");
    assert!(info.xsdt);
    assert_eq!(info.revision, 2);
    assert_eq!(
        info.madt.gicd,
        Some(Gicd {
            base: 0x0800_0000,
            version: 3
        })
    );
    assert_eq!(info.madt.cpus.len(), 4);
    let c3 = info.madt.cpus[3];
    assert_eq!(
        (c3.uid, c3.mpidr, c3.enabled, c3.online_capable),
        (3, 3, true, false)
    );
    assert_eq!((c3.pmu_gsiv, c3.maintenance_gsiv), (23, 25));
    assert_eq!(
        info.madt.gicr,
        vec![GicrRange {
            base: 0x080a_0000,
            length: 0xf6_0000
        }]
    );
    assert_eq!(
        info.madt.its,
        vec![GicIts {
            id: 0,
            base: 0x0808_0000
        }]
    );
    let t = info.gtdt.expect("GTDT");
    assert_eq!(
        (
            t.secure_el1.gsiv,
            t.nonsecure_el1.gsiv,
            t.virtual_el1.gsiv,
            t.el2.gsiv
        ),
        (29, 30, 27, 26)
    );
    assert!(!t.nonsecure_el1.edge && t.el2_virtual.is_none());
    let sp = info.spcr.expect("SPCR");
    assert_eq!(
        (sp.interface_type, sp.base, sp.gsiv),
        (3, 0x0900_0000, Some(33))
    );
    assert_eq!(
        info.mcfg,
        vec![Mcfg {
            base: 0x40_1000_0000,
            segment: 0,
            bus_start: 0,
            bus_end: 255
        }]
    );
    assert_eq!(info.mcfg[0].size(), 0x1000_0000);
    assert_eq!(info.tables.len(), 5);
    let banner = info.to_string();
    for part in [
        "4 CPUs enabled",
        "GICv3 GICD 0x8000000",
        "GICR 0x80a0000+0xf60000",
        "GTDT timers phys 30 virt 27 hyp 26",
        "SPCR console ARM PL011 at 0x9000000 GSIV 33",
        "ECAM seg 0 at 0x4010000000 buses 0-255",
        "no SRAT",
    ] {
        assert!(banner.contains(part), "{part:?} not in {banner:?}");
    }
}

#[test]
fn an_rsdt_only_acpi_1_rsdp_is_followed() {
    let tables = qemu_virt_tables(2, 0x0800_0000);
    let mut rsdp1 = rsdp(0);
    rsdp1.truncate(20);
    rsdp1[15] = 0;
    rsdp1[16..20].copy_from_slice(&(XSDT_PA as u32).to_le_bytes());
    fix_checksum(&mut rsdp1, 8);
    let ptrs: Vec<u8> = (0..tables.len())
        .flat_map(|i| ((TABLES_PA + 0x1_0000 * i as u64) as u32).to_le_bytes())
        .collect();
    let mut mem = machine(&tables);
    mem.0[0] = (RSDP_PA, rsdp1);
    mem.0[1] = (XSDT_PA, sdt(b"RSDT", 1, &ptrs));
    let info = discover(RSDP_PA, &mem).expect("RSDT tables");
    assert!(!info.xsdt);
    assert_eq!(info.madt.cpus.len(), 2);
}

#[test]
fn srat_and_slit_for_two_nodes_parse_to_domains_and_distances() {
    let mut tables = qemu_virt_tables(4, 0x0800_0000);
    tables.push(srat(&[
        srat_cpu(0, 0),
        srat_cpu(0, 1),
        srat_cpu(1, 2),
        srat_cpu(1, 3),
        srat_mem(0, 0x4000_0000, 0x4000_0000),
        srat_mem(1, 0x8000_0000, 0x4000_0000),
    ]));
    tables.push(slit(2, &[10, 20, 20, 10]));
    let info = discover(RSDP_PA, &machine(&tables)).expect("valid tables");
    let srat = info.srat.as_ref().expect("SRAT");
    assert_eq!(srat.domains(), vec![0, 1]);
    assert_eq!(srat.cpu_domain(1), Some(0));
    assert_eq!(srat.cpu_domain(2), Some(1));
    assert_eq!(srat.cpu_domain(9), None);
    assert_eq!(srat.memory[1].domain, 1);
    assert_eq!(srat.memory[1].base, 0x8000_0000);
    assert_eq!(srat.memory[1].length, 0x4000_0000);
    let slit = info.slit.as_ref().expect("SLIT");
    assert_eq!(slit.distance(0, 0), Some(10));
    assert_eq!(slit.distance(0, 1), Some(20));
    assert_eq!(slit.distance(1, 0), Some(20));
    assert_eq!(slit.distance(2, 0), None);
    assert!(info
        .to_string()
        .contains("SRAT 2 NUMA node(s), SLIT distances [10 20; 20 10]"));
}

#[test]
fn pptt_places_cores_in_packages_and_clusters() {
    // package(0x24) -> cluster(0x38) -> cores 0,1; package(0x60) -> cluster(0x74) -> core 2
    // with two threads (uids 2, 3). Offsets: entries start at 36, each 20 bytes.
    let nodes = [
        pptt_node(1, 0, 0),           // 36: package 0
        pptt_node(0, 36, 0),          // 56: cluster
        pptt_node(2 | 8, 56, 0),      // 76: core uid 0
        pptt_node(2 | 8, 56, 1),      // 96: core uid 1
        pptt_node(1, 0, 0),           // 116: package 1
        pptt_node(0, 116, 0),         // 136: cluster
        pptt_node(0, 136, 0),         // 156: core
        pptt_node(2 | 4 | 8, 156, 2), // 176: thread uid 2
        pptt_node(2 | 4 | 8, 156, 3), // 196: thread uid 3
    ];
    let mut tables = qemu_virt_tables(4, 0x0800_0000);
    tables.push(sdt(b"PPTT", 2, &nodes.concat()));
    let info = discover(RSDP_PA, &machine(&tables)).expect("valid tables");
    let p = info.pptt.expect("PPTT");
    assert_eq!(
        p,
        vec![
            CpuPlace {
                uid: 0,
                package: 0,
                cluster: 0,
                thread: false
            },
            CpuPlace {
                uid: 1,
                package: 0,
                cluster: 0,
                thread: false
            },
            CpuPlace {
                uid: 2,
                package: 1,
                cluster: 0,
                thread: true
            },
            CpuPlace {
                uid: 3,
                package: 1,
                cluster: 0,
                thread: true
            },
        ]
    );
}

#[test]
fn a_pptt_parent_loop_is_an_error() {
    let nodes = [pptt_node(0, 56, 0), pptt_node(2 | 8, 36, 0)];
    let mut tables = qemu_virt_tables(1, 0x0800_0000);
    tables.push(sdt(b"PPTT", 2, &nodes.concat()));
    let err = discover(RSDP_PA, &machine(&tables)).expect_err("loop");
    assert!(matches!(err, AcpiError::Entry { .. }), "{err}");
}

// ---- corrupt tables are errors, never panics -----------------------------------------------

#[test]
fn a_bad_checksum_names_the_table() {
    let mut tables = qemu_virt_tables(4, 0x0800_0000);
    tables[1][50] ^= 0x40; // inside the MADT
    let err = discover(RSDP_PA, &machine(&tables)).expect_err("bad MADT");
    assert!(
        matches!(err, AcpiError::Checksum { table: Sig(s), .. } if &s == b"APIC"),
        "{err}"
    );
    assert!(err.to_string().contains("APIC"), "{err}");
}

#[test]
fn a_bad_rsdp_is_an_error() {
    let mut mem = machine(&qemu_virt_tables(1, 0x0800_0000));
    mem.0[0].1[20] = 0x99; // extended length, extended checksum now wrong
    assert!(discover(RSDP_PA, &mem).is_err());
    let mut mem = machine(&qemu_virt_tables(1, 0x0800_0000));
    mem.0[0].1[0] = b'X';
    assert_eq!(
        discover(RSDP_PA, &mem).err(),
        Some(AcpiError::NoRsdp { pa: RSDP_PA })
    );
    assert!(matches!(
        discover(0x1234, &mem),
        Err(AcpiError::Read(PhysReadError { pa: 0x1234, .. }))
    ));
}

#[test]
fn a_length_past_the_memory_or_too_small_is_an_error() {
    let mut tables = qemu_virt_tables(4, 0x0800_0000);
    tables[2][4..8].copy_from_slice(&0x10_0000u32.to_le_bytes()); // GTDT claims 1 MiB
    assert!(matches!(
        discover(RSDP_PA, &machine(&tables)),
        Err(AcpiError::Read(_))
    ));
    let mut tables = qemu_virt_tables(4, 0x0800_0000);
    tables[2][4..8].copy_from_slice(&40u32.to_le_bytes()); // GTDT shorter than its fields
    fix_checksum(&mut tables[2], 9);
    let err = discover(RSDP_PA, &machine(&tables)).expect_err("short GTDT");
    assert!(matches!(err, AcpiError::Length { .. }), "{err}");
    let mut tables = qemu_virt_tables(4, 0x0800_0000);
    tables[1][4..8].copy_from_slice(&0x200_0000u32.to_le_bytes()); // MADT claims 32 MiB
    let err = discover(RSDP_PA, &machine(&tables)).expect_err("huge MADT");
    assert!(matches!(err, AcpiError::Length { .. }), "{err}");
}

#[test]
fn a_madt_entry_running_past_its_table_is_an_error() {
    let mut m = madt(&[gicd(0x0800_0000, 3), gicc(0, 0, 1, 23, 25, 0, None)]);
    let gicc_at = 44 + 24;
    m[gicc_at + 1] = 200; // GICC length past the end
    fix_checksum(&mut m, 9);
    let err = discover(RSDP_PA, &machine(&[m.clone()])).expect_err("overrun");
    assert!(
        matches!(err, AcpiError::Entry { offset, .. } if offset == gicc_at),
        "{err}"
    );
    m[gicc_at + 1] = 0; // zero length would loop forever
    fix_checksum(&mut m, 9);
    assert!(matches!(
        discover(RSDP_PA, &machine(&[m.clone()])),
        Err(AcpiError::Entry { .. })
    ));
    m[gicc_at + 1] = 40; // a GICC too short for its MPIDR
    fix_checksum(&mut m, 9);
    assert!(matches!(
        discover(RSDP_PA, &machine(&[m])),
        Err(AcpiError::Entry { .. })
    ));
}

#[test]
fn a_slit_whose_matrix_does_not_fit_is_an_error() {
    let mut tables = qemu_virt_tables(1, 0x0800_0000);
    tables.push(slit(3, &[10, 20, 20, 10]));
    assert!(matches!(
        discover(RSDP_PA, &machine(&tables)),
        Err(AcpiError::Entry { .. })
    ));
    let mut tables = qemu_virt_tables(1, 0x0800_0000);
    tables.push(slit(u64::MAX, &[10]));
    assert!(matches!(
        discover(RSDP_PA, &machine(&tables)),
        Err(AcpiError::Entry { .. })
    ));
}

#[test]
fn no_madt_is_an_error() {
    let mut tables = qemu_virt_tables(1, 0x0800_0000);
    tables.remove(1);
    let err = discover(RSDP_PA, &machine(&tables)).expect_err("no MADT");
    assert!(err.to_string().contains("no APIC table"), "{err}");
}

/// Every single-byte corruption and every truncation of every table either parses or is
/// an error: none panics (the fuzz target `acpi_tables` goes further).
#[test]
fn every_corruption_and_truncation_is_handled() {
    let mut tables = qemu_virt_tables(4, 0x0800_0000);
    tables.push(srat(&[
        srat_cpu(0, 0),
        srat_mem(0, 0x4000_0000, 0x4000_0000),
    ]));
    tables.push(slit(1, &[10]));
    tables.push(sdt(
        b"PPTT",
        2,
        &[pptt_node(1, 0, 0), pptt_node(2 | 8, 36, 0)].concat(),
    ));
    let board = board("qemu-virt");
    let base = machine(&tables);
    for region in 0..base.0.len() {
        for at in 0..base.0[region].1.len() {
            for (fix, value) in [(false, 0xff), (true, 0x00), (true, 0x7f)] {
                let mut mem = base.clone();
                let bytes = &mut mem.0[region].1;
                bytes[at] = bytes[at].wrapping_add(value);
                if fix && bytes.len() >= 36 && region > 1 {
                    fix_checksum(bytes, 9); // reach the parsers, not just the checksum
                }
                if let Ok(info) = discover(RSDP_PA, &mem) {
                    let _ = check(board, &info);
                    let _ = info.to_string();
                }
            }
        }
        for len in 0..base.0[region].1.len() {
            let mut mem = base.clone();
            mem.0[region].1.truncate(len);
            let _ = discover(RSDP_PA, &mem);
        }
    }
}

// ---- the check against the KDL ------------------------------------------------------------

#[test]
fn qemu_virt_tables_match_the_qemu_virt_board() {
    let board = board("qemu-virt");
    let (info, findings) =
        discover_and_check(RSDP_PA, &machine(&qemu_virt_tables(4, 0x0800_0000)), board)
            .expect("valid tables");
    assert_eq!(info.madt.cpus.len(), 4);
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn another_gicd_base_is_refused_naming_the_kdl_line() {
    let board = board("qemu-virt");
    let info = discover(RSDP_PA, &machine(&qemu_virt_tables(4, 0x0900_0000))).expect("tables");
    let findings = check(board, &info);
    let refused = refusals(&findings);
    assert_eq!(refused.len(), 1, "{findings:#?}");
    let line = line_of("soc \"qemu-virt\"", "distributor 0x0800_0000");
    assert_eq!(
        refused[0].message,
        format!(
            "boards.kdl:{line} gic distributor 0x8000000, but the firmware's MADT says GICD at \
             0x9000000: refusing to start; fix the board KDL or pick the right board"
        )
    );
    assert_eq!(refused[0].key, "gic.distributor");
}

#[test]
fn another_gic_version_is_refused() {
    let board = board("qemu-virt-gicv2");
    let info = discover(RSDP_PA, &machine(&qemu_virt_tables(4, 0x0800_0000))).expect("tables");
    let findings = check(board, &info);
    let refused = refusals(&findings);
    assert!(
        refused.iter().any(|f| f.key == "gic"
            && f.message
                .contains("gic version=2, but the firmware's MADT says GICv3")),
        "{findings:#?}"
    );
}

#[test]
fn gicv2_interfaces_are_compared() {
    let board = board("qemu-virt-gicv2");
    let v2 = |hyp| {
        let mut m = vec![gicd(0x0800_0000, 2)];
        for i in 0..4 {
            m.push(gicc(
                i,
                u64::from(i),
                1,
                23,
                25,
                0,
                Some([0x0801_0000, 0x0804_0000, hyp]),
            ));
        }
        let mut t = qemu_virt_tables(0, 0);
        t[1] = madt(&m);
        discover(RSDP_PA, &machine(&t)).expect("tables")
    };
    assert!(refusals(&check(board, &v2(0x0803_0000))).is_empty());
    let findings = check(board, &v2(0x0805_0000));
    let refused = refusals(&findings);
    assert_eq!(refused.len(), 1, "{findings:#?}");
    assert_eq!(refused[0].key, "gic.hyp-interface");
    let line = line_of("board \"qemu-virt-gicv2\"", "hyp-interface 0x0803_0000");
    assert!(
        refused[0]
            .message
            .starts_with(&format!("boards.kdl:{line} ")),
        "{}",
        refused[0]
    );
}

#[test]
fn fewer_cpus_is_a_warning_naming_the_cpus_line() {
    let board = board("qemu-virt");
    let info = discover(RSDP_PA, &machine(&qemu_virt_tables(2, 0x0800_0000))).expect("tables");
    let findings = check(board, &info);
    assert!(refusals(&findings).is_empty(), "{findings:#?}");
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let line = line_of("board \"qemu-virt\"", "cpus core=");
    assert_eq!(findings[0].severity, Severity::Warn);
    assert_eq!(
        findings[0].message,
        format!(
            "boards.kdl:{line} cpus: 4 CPUs, but the firmware's MADT enables 2 of them; MPIDR \
             0x2, 0x3 absent or disabled, not started"
        )
    );
}

#[test]
fn an_extra_cpu_and_other_timer_ppis_are_warnings() {
    let board = board("qemu-virt");
    let mut tables = qemu_virt_tables(5, 0x0800_0000);
    tables[2] = gtdt(29, 30, 27, 28);
    let info = discover(RSDP_PA, &machine(&tables)).expect("tables");
    let findings = check(board, &info);
    assert!(refusals(&findings).is_empty(), "{findings:#?}");
    assert!(findings
        .iter()
        .any(|f| f.key == "cpus" && f.message.contains("also has MPIDR 0x4")));
    assert!(findings.iter().any(|f| f.key == "timer"
        && f.message
            .contains("timer hyp-phys INTID 26 (level), but the firmware's GTDT says GSIV 28")));
}

#[test]
fn console_base_differs_is_refused_and_ecam_difference_warned() {
    let board = board("qemu-virt");
    let mut tables = qemu_virt_tables(4, 0x0800_0000);
    tables[4] = spcr(3, 0x0901_0000, 33);
    tables[3] = mcfg(0x3f00_0000, 0, 0, 15);
    let info = discover(RSDP_PA, &machine(&tables)).expect("tables");
    let findings = check(board, &info);
    let refused = refusals(&findings);
    assert_eq!(refused.len(), 1, "{findings:#?}");
    let line = line_of("soc \"qemu-virt\"", "reg 0x0900_0000");
    assert!(
        refused[0].message.starts_with(&format!(
            "boards.kdl:{line} console \"uart0\" at 0x9000000, but the firmware's SPCR says the \
             console (ARM PL011) is at 0x9010000"
        )),
        "{}",
        refused[0]
    );
    let ecam_line = line_of("soc \"qemu-virt\"", "name=\"ecam\"");
    assert!(findings.iter().any(|f| f.severity == Severity::Warn
        && f.message
            .starts_with(&format!("boards.kdl:{ecam_line} device \"pcie\" ECAM"))));
}

#[test]
fn numa_differences_are_warnings() {
    let board = board("qemu-virt");
    let mut tables = qemu_virt_tables(4, 0x0800_0000);
    tables.push(srat(&[
        srat_cpu(0, 0),
        srat_cpu(0, 1),
        srat_cpu(1, 2),
        srat_cpu(1, 3),
        srat_mem(0, 0x4000_0000, 0x4000_0000),
        srat_mem(1, 0x8000_0000, 0x4000_0000),
    ]));
    tables.push(slit(2, &[10, 20, 20, 10]));
    let info = discover(RSDP_PA, &machine(&tables)).expect("tables");
    let findings = check(board, &info);
    assert!(refusals(&findings).is_empty(), "{findings:#?}");
    assert!(findings.iter().any(|f| f.key == "topology"
        && f.message
            .contains("board has 1 NUMA node(s), but the firmware's SRAT has 2")));
    assert!(findings
        .iter()
        .any(|f| f.key == "cpu.2" && f.message.contains("proximity domain 1")));
    assert!(findings
        .iter()
        .any(|f| f.key == "memory.dram0" && f.message.contains("domain 1")));
}

// ---- two redistributor regions (Mt. Jade) ---------------------------------------------------

/// Mt. Jade's tables as its firmware builds them from the KDL's own facts: GICD, one GICC
/// per KDL CPU (UID = index), one GICR range per socket (`gicr` picks which), SRAT with the
/// KDL's nodes, SLIT.
fn mt_jade_tables(gicr_ranges: &[(u64, u32)]) -> Vec<Vec<u8>> {
    let b = board("ampere-mt-jade");
    let mut m = vec![gicd(b.gic.distributor.base, 3)];
    for (i, c) in b.cpus.iter().enumerate() {
        m.push(gicc(i as u32, c.mpidr, 1, 23, 25, 0, None));
    }
    for &(base, len) in gicr_ranges {
        m.push(gicr(base, len));
    }
    m.push(its(2, b.gic.its.expect("its").base));
    let mut sr: Vec<Vec<u8>> = b
        .cpus
        .iter()
        .enumerate()
        .map(|(i, c)| srat_cpu(c.numa_node, i as u32))
        .collect();
    sr.extend(
        b.memory
            .iter()
            .map(|r| srat_mem(r.numa_node, r.base, r.size)),
    );
    let console = b.console_device().expect("console");
    vec![
        madt(&m),
        gtdt(29, 30, 27, 26),
        spcr(
            0x0e,
            console.regs[0].base,
            console.irqs.first().map_or(0, |i| i.intid),
        ),
        srat(&sr),
        slit(2, &[10, 20, 20, 10]),
    ]
}

const JADE_GICR: [(u64, u32); 2] = [
    (0x1001_0014_0000, 0x100_0000),
    (0x5001_0014_0000, 0x100_0000),
];

#[test]
fn mt_jade_kdl_has_two_redistributor_regions_with_their_lines() {
    let b = board("ampere-mt-jade");
    assert_eq!(b.gic.redistributors.len(), 2);
    assert_eq!(b.gic.redistributors[1].base, 0x5001_0014_0000);
    assert_eq!(
        b.source.line("gic.redistributor.1"),
        Some(line_of(
            "board \"ampere-mt-jade\"",
            "redistributor 0x5001_0014_0000"
        ))
    );
}

#[test]
fn two_region_madt_is_accepted_by_the_two_region_kdl() {
    let b = board("ampere-mt-jade");
    let info = discover(RSDP_PA, &machine(&mt_jade_tables(&JADE_GICR))).expect("tables");
    assert_eq!(info.madt.gicr.len(), 2);
    assert_eq!(info.madt.cpus.len(), 160);
    let findings = check(b, &info);
    assert!(refusals(&findings).is_empty(), "{findings:#?}");
}

#[test]
fn a_region_the_firmware_lacks_is_refused() {
    let b = board("ampere-mt-jade");
    let info = discover(RSDP_PA, &machine(&mt_jade_tables(&JADE_GICR[..1]))).expect("tables");
    let findings = check(b, &info);
    let refused = refusals(&findings);
    assert_eq!(refused.len(), 1, "{findings:#?}");
    assert_eq!(refused[0].key, "gic.redistributor.1");
    let line = line_of("board \"ampere-mt-jade\"", "redistributor 0x5001_0014_0000");
    assert!(
        refused[0].message.starts_with(&format!(
            "boards.kdl:{line} gic redistributor 0x500100140000 size=0x1000000, but the \
             firmware's MADT has no redistributor there"
        )),
        "{}",
        refused[0]
    );
}

#[test]
fn a_region_the_kdl_lacks_is_refused() {
    // The single-socket Altra KDL against the two-socket machine's MADT.
    let altra = board("ampere-altra");
    let info = discover(RSDP_PA, &machine(&mt_jade_tables(&JADE_GICR))).expect("tables");
    let findings = check(altra, &info);
    assert!(
        refusals(&findings).iter().any(|f| f
            .message
            .contains("the firmware's MADT has GICR range 0x500100140000+0x1000000, which the KDL does not have")),
        "{findings:#?}"
    );
}

#[test]
fn per_cpu_gicr_bases_are_checked_against_the_regions() {
    // No GICR structures: each GICC gives its own redistributor (ACPI allows either).
    let b = board("ampere-mt-jade");
    let per_cpu = |socket1_base: u64| {
        let mut m = vec![gicd(b.gic.distributor.base, 3)];
        let mut n = [0u64; 2];
        for (i, c) in b.cpus.iter().enumerate() {
            let s = c.socket as usize;
            let base = [0x1001_0014_0000, socket1_base][s] + n[s] * 0x2_0000;
            n[s] += 1;
            m.push(gicc(i as u32, c.mpidr, 1, 23, 25, base, None));
        }
        let mut t = mt_jade_tables(&[]);
        t[0] = madt(&m);
        discover(RSDP_PA, &machine(&t)).expect("tables")
    };
    assert!(refusals(&check(b, &per_cpu(0x5001_0014_0000))).is_empty());
    let findings = check(b, &per_cpu(0x6001_0014_0000));
    assert!(
        refusals(&findings)
            .iter()
            .any(|f| f.key == "gic.redistributor.1"),
        "{findings:#?}"
    );
}

// ---- the fuzz target's seed --------------------------------------------------------------

/// `tables` laid out flat from physical address 0 (RSDP at 0, XSDT at 0x40, each table
/// 16-byte aligned after it): the fuzz target's memory format.
fn flat(tables: &[Vec<u8>]) -> Vec<u8> {
    let xsdt_len = 36 + 8 * tables.len();
    let mut at = (0x40 + xsdt_len).next_multiple_of(16);
    let mut ptrs = Vec::new();
    for t in tables {
        ptrs.extend_from_slice(&(at as u64).to_le_bytes());
        at = (at + t.len()).next_multiple_of(16);
    }
    let mut out = rsdp(0x40);
    out.resize(0x40, 0);
    out.extend_from_slice(&sdt(b"XSDT", 1, &ptrs));
    for t in tables {
        out.resize(out.len().next_multiple_of(16), 0);
        out.extend_from_slice(t);
    }
    out
}

/// `fuzz/corpus/acpi_tables/qemu-virt-numa` is this module's QEMU virt tables plus a
/// two-node SRAT, SLIT and PPTT (`UPDATE_FUZZ_SEED=1` rewrites it).
#[test]
fn the_fuzz_seed_is_the_two_node_qemu_virt_tables() {
    let mut tables = qemu_virt_tables(4, 0x0800_0000);
    tables.push(srat(&[
        srat_cpu(0, 0),
        srat_cpu(0, 1),
        srat_cpu(1, 2),
        srat_cpu(1, 3),
        srat_mem(0, 0x4000_0000, 0x4000_0000),
        srat_mem(1, 0x8000_0000, 0x4000_0000),
    ]));
    tables.push(slit(2, &[10, 20, 20, 10]));
    tables.push(sdt(
        b"PPTT",
        2,
        &[
            pptt_node(1, 0, 0),
            pptt_node(0, 36, 0),
            pptt_node(2 | 8, 56, 0),
            pptt_node(2 | 8, 56, 1),
            pptt_node(2 | 8, 56, 2),
            pptt_node(2 | 8, 56, 3),
        ]
        .concat(),
    ));
    let seed = flat(&tables);
    let info = discover(0, &Mem(vec![(0, seed.clone())])).expect("the seed parses");
    assert_eq!(info.madt.cpus.len(), 4);
    assert_eq!(info.slit.map(|s| s.localities), Some(2));
    assert_eq!(info.pptt.map(|p| p.len()), Some(4));
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/corpus/acpi_tables/qemu-virt-numa"
    );
    if std::env::var_os("UPDATE_FUZZ_SEED").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(std::path::Path::new(path).parent().expect("dir"))
            .expect("corpus dir");
        std::fs::write(path, &seed).expect("write the seed");
    }
    assert_eq!(
        std::fs::read(path).expect("the seed exists (UPDATE_FUZZ_SEED=1 writes it)"),
        seed
    );
}

// ---- tables compiled by iasl (acpica-tools) ----------------------------------------------

/// `hypervisor/tests/acpi/*.aml`: QEMU virt's tables written as `.dsl` data tables and
/// compiled with `iasl` (acpica-tools), independently of this module's builder.
fn iasl_tables(numa: bool) -> Vec<Vec<u8>> {
    let mut t = vec![
        include_bytes!("../../tests/acpi/qemu-virt-madt.aml").to_vec(),
        include_bytes!("../../tests/acpi/qemu-virt-gtdt.aml").to_vec(),
        include_bytes!("../../tests/acpi/qemu-virt-mcfg.aml").to_vec(),
        include_bytes!("../../tests/acpi/qemu-virt-spcr.aml").to_vec(),
    ];
    if numa {
        t.push(include_bytes!("../../tests/acpi/qemu-virt-numa-srat.aml").to_vec());
        t.push(include_bytes!("../../tests/acpi/qemu-virt-numa-slit.aml").to_vec());
    }
    t
}

#[test]
fn iasl_compiled_qemu_virt_tables_parse_as_the_builders_do() {
    let compiled = discover(RSDP_PA, &machine(&iasl_tables(false))).expect("iasl tables");
    let built = discover(RSDP_PA, &machine(&qemu_virt_tables(4, 0x0800_0000)[1..])).expect("built");
    assert_eq!(compiled.madt, built.madt);
    assert_eq!(compiled.gtdt, built.gtdt);
    assert_eq!(compiled.spcr, built.spcr);
    assert_eq!(compiled.mcfg, built.mcfg);
    assert!(check(board("qemu-virt"), &compiled).is_empty());
}

#[test]
fn iasl_compiled_two_node_srat_and_slit_parse_to_domains_and_distances() {
    let info = discover(RSDP_PA, &machine(&iasl_tables(true))).expect("iasl tables");
    let srat = info.srat.as_ref().expect("SRAT");
    assert_eq!(srat.domains(), vec![0, 1]);
    assert_eq!(
        (0..4).map(|uid| srat.cpu_domain(uid)).collect::<Vec<_>>(),
        vec![Some(0), Some(0), Some(1), Some(1)]
    );
    assert_eq!(
        srat.memory,
        vec![
            MemAffinity {
                domain: 0,
                base: 0x4000_0000,
                length: 0x4000_0000,
                enabled: true,
                hot_pluggable: false
            },
            MemAffinity {
                domain: 1,
                base: 0x8000_0000,
                length: 0x4000_0000,
                enabled: true,
                hot_pluggable: false
            },
        ]
    );
    let slit = info.slit.as_ref().expect("SLIT");
    assert_eq!(slit.localities, 2);
    assert_eq!(slit.distances, vec![10, 20, 20, 10]);
}

// ---- what FirmwareRam may read -------------------------------------------------------------

#[test]
fn firmware_ram_reads_only_board_ram_outside_the_hypervisor() {
    let b = board("qemu-virt"); // RAM 0x4000_0000 + 2 GiB, hypervisor 32 MiB in it
    let own = (b.hypervisor_base.unwrap(), b.hypervisor_size);
    let (base, end) = (own.0, own.0 + own.1);
    let ok = |pa, len| readable_firmware_ram(b.memory, own, pa, len);
    assert!(ok(0x4000_0000, 36));
    assert!(ok(0xbfff_ffdc, 36), "the last 36 bytes of RAM");
    assert!(!ok(0xbfff_ffdd, 36), "one byte past RAM");
    assert!(!ok(0x0900_0000, 4), "MMIO (the UART)");
    assert!(!ok(base, 1), "the hypervisor's image");
    assert!(
        !ok(base - 0x10, 0x20),
        "a read running into the hypervisor's region"
    );
    assert!(ok(end, 8), "just past the hypervisor's region");
    assert!(!ok(u64::MAX - 3, 8), "a wrapping range");
    assert!(!ok(0x3fff_fff0, 0x20), "a read starting below RAM");
}

#[test]
fn slit_distances_other_than_the_kdls_are_warnings_naming_its_line() {
    let board = board("qemu-virt-2s");
    let tables_with = |distances: &[u8]| {
        let mut tables = qemu_virt_tables(4, 0x0800_0000);
        tables.push(srat(&[
            srat_cpu(0, 0),
            srat_cpu(0, 1),
            srat_cpu(1, 2),
            srat_cpu(1, 3),
            srat_mem(0, 0x4000_0000, 0x4000_0000),
            srat_mem(1, 0x8000_0000, 0x4000_0000),
        ]));
        tables.push(slit(2, distances));
        tables
    };
    // The KDL's own 10/25: nothing said of distances.
    let info = discover(RSDP_PA, &machine(&tables_with(&[10, 25, 25, 10]))).expect("tables");
    let findings = check(board, &info);
    assert!(
        !findings.iter().any(|f| f.message.contains("SLIT says")),
        "{findings:#?}"
    );
    // QEMU's default 10/20 against the KDL's 25.
    let info = discover(RSDP_PA, &machine(&tables_with(&[10, 20, 20, 10]))).expect("tables");
    let findings = check(board, &info);
    assert!(refusals(&findings).is_empty(), "{findings:#?}");
    let line = board
        .source
        .line("numa-distances")
        .expect("numa-distances line");
    let want = format!(
        "boards.kdl:{line} distance from node 0 to node 1 is 25, but the firmware's SLIT says 20"
    );
    assert!(
        findings
            .iter()
            .any(|f| f.severity == Severity::Warn && f.message.starts_with(&want)),
        "{want}\n{findings:#?}"
    );
}

#[test]
fn firmware_sized_memory_is_compared_by_its_base_and_firmware_based_not_at_all() {
    use crate::platform::FromFirmware;
    let mut tables = qemu_virt_tables(4, 0x0800_0000);
    tables.push(srat(&[
        srat_cpu(0, 0),
        srat_mem(0, 0x4000_0000, 0x4000_0000),
    ]));
    let info = discover(RSDP_PA, &machine(&tables)).expect("tables");
    let findings_for = |base: u64, from: FromFirmware| {
        let mut b = *board("qemu-virt");
        b.memory = Box::leak(Box::new([MemoryDesc {
            name: "dram0",
            base,
            size: 0,
            numa_node: 0,
            from_firmware: from,
        }]));
        let b: &'static BoardDesc = Box::leak(Box::new(b));
        check(b, &info)
            .into_iter()
            .filter(|f| f.key == "memory.dram0")
            .map(|f| f.message)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        findings_for(0x4000_0000, FromFirmware::Size),
        Vec::<String>::new()
    );
    let moved = findings_for(0x2000_0000, FromFirmware::Size);
    assert!(
        moved.len() == 1
            && moved[0].contains("size=from the firmware, but the firmware's SRAT has no memory"),
        "{moved:?}"
    );
    assert_eq!(
        findings_for(0, FromFirmware::BaseAndSize),
        Vec::<String>::new()
    );
}
