use super::*;
use vm_fdt::{FdtReserveEntry, FdtWriter};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// A `/memory` node: its name, `reg` ranges and `numa-node-id`.
type MemNode = (&'static str, Vec<(u64, u64)>, Option<u32>);

/// What a test tree holds.
struct Spec {
    memory: Vec<MemNode>,
    reservations: Vec<(u64, u64)>,
    reserved_memory: Vec<(u64, u64)>,
    rsdp: Option<u64>,
    source: Option<&'static str>,
    modules: Vec<(u64, u64, &'static str, Option<&'static str>)>,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            memory: vec![("memory@40000000", vec![(0x4000_0000, 3 * GIB)], None)],
            reservations: vec![],
            reserved_memory: vec![],
            rsdp: None,
            source: None,
            modules: vec![],
        }
    }
}

fn dtb(spec: &Spec) -> Vec<u8> {
    let rsv: Vec<_> = spec
        .reservations
        .iter()
        .map(|&(a, s)| FdtReserveEntry::new(a, s).unwrap())
        .collect();
    let mut w = FdtWriter::new_with_mem_reserv(&rsv).unwrap();
    let root = w.begin_node("").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 2).unwrap();
    for (name, regs, node) in &spec.memory {
        let m = w.begin_node(name).unwrap();
        w.property_string("device_type", "memory").unwrap();
        let cells: Vec<u64> = regs.iter().flat_map(|&(b, s)| [b, s]).collect();
        w.property_array_u64("reg", &cells).unwrap();
        if let Some(n) = node {
            w.property_u32("numa-node-id", *n).unwrap();
        }
        w.end_node(m).unwrap();
    }
    if !spec.reserved_memory.is_empty() {
        let rm = w.begin_node("reserved-memory").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        w.property_null("ranges").unwrap();
        for (i, &(b, s)) in spec.reserved_memory.iter().enumerate() {
            let c = w.begin_node(&format!("area@{i}")).unwrap();
            w.property_array_u64("reg", &[b, s]).unwrap();
            w.end_node(c).unwrap();
        }
        // A dynamically placed area (no reg) is not a range.
        let c = w.begin_node("pool").unwrap();
        w.property_u64("size", 0x10_0000).unwrap();
        w.end_node(c).unwrap();
        w.end_node(rm).unwrap();
    }
    let chosen = w.begin_node("chosen").unwrap();
    w.property_string("bootargs", "").unwrap();
    if let Some(r) = spec.rsdp {
        w.property_u64("hv,acpi-rsdp", r).unwrap();
    }
    if let Some(s) = spec.source {
        w.property_string("hv,memory-source", s).unwrap();
    }
    if !spec.modules.is_empty() {
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
    }
    for &(base, size, compat, path) in &spec.modules {
        let m = w.begin_node(&format!("module@{base:x}")).unwrap();
        w.property_array_u64("reg", &[base, size]).unwrap();
        w.property_string("compatible", compat).unwrap();
        if let Some(p) = path {
            w.property_string("hv,path", p).unwrap();
        }
        w.end_node(m).unwrap();
    }
    w.end_node(chosen).unwrap();
    w.end_node(root).unwrap();
    w.finish().unwrap()
}

fn kdl_2g() -> Vec<MemoryDesc> {
    vec![MemoryDesc {
        name: "dram0",
        base: 0x4000_0000,
        size: 2 * GIB,
        numa_node: 0,
        from_firmware: crate::platform::FromFirmware::Nothing,
    }]
}

const HV: (u64, u64) = (0x4020_0000, 32 * MIB);
const STAGING: (u64, u64) = (0x4240_0000, 2 * MIB);

#[test]
fn reads_ram_reservations_and_chosen() {
    let blob = dtb(&Spec {
        reservations: vec![(0x4100_0000, 0x1000)],
        reserved_memory: vec![(0x5000_0000, 4 * MIB)],
        rsdp: Some(0x7_5000_0018),
        source: Some("uefi"),
        modules: vec![
            (0x4800_0000, 0x800, "hv,vm-config", None),
            (0x4820_0000, 0x1_0000, "hv,vm-image", Some("test-guest.bin")),
        ],
        ..Spec::default()
    });
    let info = BootInfo::parse(&blob, 0x4400_0000).unwrap();
    assert_eq!(
        info.ram,
        vec![FirmwareRam {
            node_name: "memory@40000000".into(),
            base: 0x4000_0000,
            size: 3 * GIB,
            numa_node: None
        }]
    );
    assert_eq!(
        info.reserved,
        vec![(0x4100_0000, 0x1000), (0x5000_0000, 4 * MIB)]
    );
    assert_eq!(info.dtb, (0x4400_0000, blob.len() as u64));
    assert_eq!(info.acpi_rsdp, Some(0x7_5000_0018));
    assert_eq!(info.memory_source, MemorySource::Uefi);
    assert_eq!(info.modules.len(), 2);
    assert_eq!(info.modules[0].kind, ModuleKind::VmConfig);
    assert_eq!(
        (info.modules[0].base, info.modules[0].size),
        (0x4800_0000, 0x800)
    );
    let img = info.image_module("/Test-Guest.bin").unwrap();
    assert_eq!(img.base, 0x4820_0000);
    assert!(info.image_module("vmlinuz").is_none());
}

#[test]
fn one_cell_addresses_and_several_ranges() {
    let mut w = FdtWriter::new().unwrap();
    let root = w.begin_node("").unwrap();
    w.property_u32("#address-cells", 1).unwrap();
    w.property_u32("#size-cells", 1).unwrap();
    let m = w.begin_node("memory").unwrap();
    w.property_array_u32("reg", &[0x0, 0x3b40_0000, 0x4000_0000, 0x4000_0000])
        .unwrap();
    w.end_node(m).unwrap();
    w.end_node(root).unwrap();
    let blob = w.finish().unwrap();
    let info = BootInfo::parse(&blob, 0).unwrap();
    let ranges: Vec<_> = info.ram.iter().map(|r| (r.base, r.size)).collect();
    assert_eq!(ranges, vec![(0, 0x3b40_0000), (0x4000_0000, 0x4000_0000)]);
    assert_eq!(info.memory_source, MemorySource::DeviceTree);
    assert!(info.modules.is_empty());
}

#[test]
fn plan_warns_on_a_different_size_and_keeps_everything_out_of_the_pool() {
    let blob = dtb(&Spec {
        reservations: vec![(0x4100_0000, 0x1000)],
        modules: vec![(0x4800_0000, 0x800, "hv,vm-config", None)],
        ..Spec::default()
    });
    let info = BootInfo::parse(&blob, 0x4400_0000).unwrap();
    let plan = plan_ram(&info, &kdl_2g(), HV, STAGING).unwrap();
    assert_eq!(
        plan.warning.as_deref(),
        Some("board KDL memory \"dram0\": 2 GiB, the device tree says 3 GiB at 0x4000_0000; using the device tree")
    );
    assert_eq!(plan.regions.len(), 1);
    assert_eq!(plan.regions[0].size, 3 * GIB);
    for r in [
        (0x4100_0000, 0x1000),
        (0x4400_0000, blob.len() as u64),
        (0x4800_0000, 0x800),
        HV,
        STAGING,
    ] {
        assert!(plan.reserved.contains(&r), "{r:x?} not reserved");
    }
    assert!(
        plan.report[1].contains("RAM from the device tree: 3 GiB"),
        "{:?}",
        plan.report
    );
}

#[test]
fn plan_is_quiet_when_the_kdl_is_right() {
    let blob = dtb(&Spec {
        memory: vec![("memory@40000000", vec![(0x4000_0000, 2 * GIB)], None)],
        ..Spec::default()
    });
    let info = BootInfo::parse(&blob, 0x4400_0000).unwrap();
    let plan = plan_ram(&info, &kdl_2g(), HV, STAGING).unwrap();
    assert_eq!(plan.warning, None);
}

#[test]
fn plan_refuses_ram_without_the_hypervisor() {
    let blob = dtb(&Spec {
        memory: vec![("memory@80000000", vec![(0x8000_0000, 2 * GIB)], None)],
        ..Spec::default()
    });
    let info = BootInfo::parse(&blob, 0x8000_0000).unwrap();
    let e = plan_ram(&info, &kdl_2g(), HV, STAGING).unwrap_err();
    assert!(matches!(e, RamError::HypervisorOutsideRam { .. }));
    let msg = e.to_string();
    assert!(msg.contains("0x4020_0000..0x4220_0000"), "{msg}");
    assert!(msg.contains("refusing"), "{msg}");
    // A region that holds only part of the hypervisor's is not enough either.
    let blob = dtb(&Spec {
        memory: vec![("memory@40000000", vec![(0x4000_0000, 0x0210_0000)], None)],
        ..Spec::default()
    });
    let info = BootInfo::parse(&blob, 0x4000_0000).unwrap();
    assert!(plan_ram(&info, &kdl_2g(), HV, STAGING).is_err());
}

#[test]
fn numa_nodes_come_from_the_tree_then_the_kdl() {
    let blob = dtb(&Spec {
        memory: vec![
            ("memory@40000000", vec![(0x4000_0000, GIB)], None),
            ("memory@80000000", vec![(0x8000_0000, GIB)], Some(3)),
            ("memory@100000000", vec![(0x1_0000_0000, GIB)], None),
        ],
        ..Spec::default()
    });
    let info = BootInfo::parse(&blob, 0x4400_0000).unwrap();
    let kdl = vec![
        MemoryDesc {
            name: "dram0",
            base: 0x4000_0000,
            size: GIB,
            numa_node: 1,
            from_firmware: crate::platform::FromFirmware::Nothing,
        },
        MemoryDesc {
            name: "dram1",
            base: 0x8000_0000,
            size: GIB,
            numa_node: 2,
            from_firmware: crate::platform::FromFirmware::Nothing,
        },
    ];
    let plan = plan_ram(&info, &kdl, HV, STAGING).unwrap();
    let nodes: Vec<u32> = plan.regions.iter().map(|r| r.numa_node).collect();
    assert_eq!(nodes, vec![1, 3, 0]);
    let w = plan.warning.unwrap();
    assert!(
        w.starts_with("board KDL memory \"dram0\" + \"dram1\": 2 GiB"),
        "{w}"
    );
}

#[test]
fn no_memory_node_is_an_error_for_the_plan() {
    let blob = dtb(&Spec {
        memory: vec![],
        ..Spec::default()
    });
    let info = BootInfo::parse(&blob, 0).unwrap();
    assert_eq!(
        plan_ram(&info, &kdl_2g(), HV, STAGING),
        Err(RamError::NoRam)
    );
}

#[test]
fn bad_properties_are_errors() {
    // An hv,vm-image module without hv,path.
    let blob = dtb(&Spec {
        modules: vec![(0x4800_0000, 0x800, "hv,vm-image", None)],
        ..Spec::default()
    });
    let e = BootInfo::parse(&blob, 0).unwrap_err();
    assert!(e.to_string().contains("hv,path"), "{e}");

    // reg that is not a whole number of cells; 3 address cells; a short rsdp.
    let build = |f: &dyn Fn(&mut FdtWriter)| {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        f(&mut w);
        w.end_node(root).unwrap();
        w.finish().unwrap()
    };
    let odd = build(&|w| {
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let m = w.begin_node("memory@0").unwrap();
        w.property_array_u32("reg", &[0, 0x4000_0000, 0]).unwrap();
        w.end_node(m).unwrap();
    });
    let e = BootInfo::parse(&odd, 0).unwrap_err();
    assert!(e.to_string().contains("/memory@0: property `reg`"), "{e}");
    let three = build(&|w| {
        w.property_u32("#address-cells", 3).unwrap();
        let m = w.begin_node("memory@0").unwrap();
        w.property_array_u32("reg", &[0, 0, 0, 1]).unwrap();
        w.end_node(m).unwrap();
    });
    let e = BootInfo::parse(&three, 0).unwrap_err();
    assert!(e.to_string().contains("#address-cells"), "{e}");
    let rsdp = build(&|w| {
        let c = w.begin_node("chosen").unwrap();
        w.property_u32("hv,acpi-rsdp", 5).unwrap();
        w.end_node(c).unwrap();
    });
    let e = BootInfo::parse(&rsdp, 0).unwrap_err();
    assert!(e.to_string().contains("hv,acpi-rsdp"), "{e}");
    let wrap = build(&|w| {
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let m = w.begin_node("memory@0").unwrap();
        w.property_array_u64("reg", &[u64::MAX - 5, 0x1000])
            .unwrap();
        w.end_node(m).unwrap();
    });
    assert!(BootInfo::parse(&wrap, 0).is_err());
}

#[test]
fn header_checks() {
    let blob = dtb(&Spec::default());
    assert_eq!(dtb_total_size(&blob[..HEADER_SIZE]), Ok(blob.len()));
    assert!(matches!(
        dtb_total_size(&[0; 40]),
        Err(DtbError::BadMagic(0))
    ));
    assert!(matches!(
        dtb_total_size(&[0xd0, 0x0d]),
        Err(DtbError::Truncated { .. })
    ));
    let mut big = blob.clone();
    big[4..8].copy_from_slice(&(64u32 << 20).to_be_bytes());
    assert_eq!(dtb_total_size(&big), Err(DtbError::TooLarge(64 << 20)));
    assert!(matches!(
        BootInfo::parse(&big, 0),
        Err(DtbError::TooLarge(_))
    ));
    // Cut short: totalsize says more than there is.
    assert!(matches!(
        BootInfo::parse(&blob[..blob.len() - 8], 0),
        Err(DtbError::Truncated { .. })
    ));
}

/// Every truncation and every single-byte corruption of a real tree gives a result or an
/// error, never a panic (a fuzz in miniature).
#[test]
fn no_panic_on_corrupted_blobs() {
    let blob = dtb(&Spec {
        reservations: vec![(0x4100_0000, 0x1000)],
        reserved_memory: vec![(0x5000_0000, 4 * MIB)],
        rsdp: Some(0x5000),
        modules: vec![(0x4800_0000, 0x800, "hv,vm-image", Some("a.bin"))],
        ..Spec::default()
    });
    for len in 0..blob.len() {
        let _ = BootInfo::parse(&blob[..len], 0);
    }
    let mut errors = 0;
    for i in 0..blob.len() {
        for v in [0x00, 0x01, 0x02, 0x03, 0x09, 0x7f, 0xff] {
            let mut b = blob.clone();
            b[i] = v;
            if let Ok(info) = BootInfo::parse(&b, 0) {
                let _ = plan_ram(&info, &kdl_2g(), HV, STAGING);
            } else {
                errors += 1;
            }
        }
    }
    assert!(errors > 100, "only {errors} corruptions were noticed");
}

#[test]
fn structure_errors_name_what_is_wrong() {
    let mut blob = dtb(&Spec::default());
    let off = u32::from_be_bytes(blob[8..12].try_into().unwrap()) as usize;
    // The first token: FDT_BEGIN_NODE of the root; make it an unknown token.
    blob[off + 3] = 0x42;
    let e = BootInfo::parse(&blob, 0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "malformed structure block at offset 0x0: unknown token"
    );
}

#[test]
fn hex_and_size_spellings() {
    assert_eq!(hex(0x4000_0000), "0x4000_0000");
    assert_eq!(hex(0x1_0000_0000), "0x1_0000_0000");
    assert_eq!(hex(0x800), "0x800");
    assert_eq!(size(3 * GIB), "3 GiB");
    assert_eq!(size(1536 * MIB), "1536 MiB");
    assert_eq!(size(100), "100 bytes");
}

#[test]
fn choice_falls_back_to_the_kdl_with_a_reason() {
    let kdl = kdl_2g();
    let c = choose_ram(None, &kdl, HV, STAGING);
    assert_eq!(c.regions, kdl);
    assert_eq!(c.reserved, vec![HV, STAGING]);
    assert!(c.lines[0].contains("no device tree"), "{:?}", c.lines);
    let c = choose_ram(
        Some((0x4800_0000, Err(DtbError::BadMagic(0)))),
        &kdl,
        HV,
        STAGING,
    );
    assert_eq!(c.regions, kdl);
    assert!(c.info.is_none() && c.refusal.is_none());
    assert!(
        c.lines[0].contains("the device tree at 0x4800_0000 is not usable: no device tree there"),
        "{:?}",
        c.lines
    );
    // A tree without RAM: the KDL, with the reason.
    let blob = dtb(&Spec {
        memory: vec![],
        ..Spec::default()
    });
    let c = choose_ram(
        Some((0x4800_0000, BootInfo::parse(&blob, 0x4800_0000))),
        &kdl,
        HV,
        STAGING,
    );
    assert_eq!(c.regions, kdl);
    assert!(c.lines[0].contains("describes no RAM"), "{:?}", c.lines);
}

#[test]
fn choice_takes_the_firmware_ram_or_refuses() {
    let kdl = kdl_2g();
    let blob = dtb(&Spec::default());
    let c = choose_ram(
        Some((0x4800_0000, BootInfo::parse(&blob, 0x4800_0000))),
        &kdl,
        HV,
        STAGING,
    );
    assert_eq!(c.regions[0].size, 3 * GIB);
    assert!(c.info.is_some());
    assert!(c.warning.is_some());
    assert!(c.refusal.is_none());
    let blob = dtb(&Spec {
        memory: vec![("memory@80000000", vec![(0x8000_0000, 2 * GIB)], None)],
        ..Spec::default()
    });
    let c = choose_ram(
        Some((0x8000_0000, BootInfo::parse(&blob, 0x8000_0000))),
        &kdl,
        HV,
        STAGING,
    );
    assert!(c.refusal.unwrap().contains("refusing to go on"));
}

struct Facts;

impl crate::config::define::BoardFacts for Facts {
    fn board_name(&self) -> &str {
        "test"
    }
    fn port_groups(&self) -> Vec<String> {
        vec!["default".into()]
    }
    fn device(&self, _: &str) -> Option<crate::config::define::DeviceUse> {
        None
    }
    fn passable_devices(&self) -> Vec<String> {
        vec![]
    }
    fn numa_nodes(&self) -> u32 {
        1
    }
}

const VM_FILE: &str = r#"
[[vm]]
name = "linux"
vcpus = 2
memory_mib = 256
kernel = "vmlinuz-6.1"
initrd = "initrd.img"
cmdline = "console=ttyAMA0"
autostart = true

[[vm]]
name = "guest"
vcpus = 1
memory_mib = 64
kernel = "test-guest.bin"
cmdline = ""

[[vm]]
name = "missing"
vcpus = 1
memory_mib = 64
kernel = "not-there.bin"
cmdline = ""
"#;

#[test]
fn modules_define_vms_with_images_in_place() {
    let blob = dtb(&Spec {
        modules: vec![
            (0x4800_0000, 0x1000, "hv,vm-config", None),
            (0x4900_0000, 0x80_0000, "hv,vm-image", Some("vmlinuz-6.1")),
            (0x4a00_0000, 0x40_0000, "hv,vm-image", Some("initrd.img")),
            (0x4b00_0000, 0x1_0000, "hv,vm-image", Some("test-guest.bin")),
        ],
        ..Spec::default()
    });
    let info = BootInfo::parse(&blob, 0x4400_0000).unwrap();
    // The file as a loader may hand it over: padded with NULs.
    let mut text = VM_FILE.as_bytes().to_vec();
    text.resize(0x1000, 0);
    let read = |m: &Module| -> Result<&[u8], String> {
        assert_eq!(m.base, 0x4800_0000);
        Ok(&text)
    };
    let out = define_modules(&info, &Facts, read);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].module, "module@48000000");
    assert_eq!(out[0].console_escape, None);
    let vms = out[0].vms.as_ref().unwrap();
    assert_eq!(vms.len(), 3);
    let linux = vms[0].result.as_ref().unwrap();
    assert!(vms[0].autostart);
    assert_eq!(linux.name, "linux");
    assert_eq!(
        (
            linux.kernel.staging_base,
            linux.kernel.size,
            linux.kernel.path
        ),
        (0x4900_0000, 0x80_0000, "vmlinuz-6.1")
    );
    let initrd = linux.initrd.unwrap();
    assert_eq!((initrd.staging_base, initrd.size), (0x4a00_0000, 0x40_0000));
    assert!(!vms[1].autostart);
    assert_eq!(
        vms[1].result.as_ref().unwrap().kernel.staging_base,
        0x4b00_0000
    );
    // A VM whose image no module holds is refused on its own, naming what is there.
    let e = vms[2].result.as_ref().unwrap_err().to_string();
    assert!(
        e.contains("no hv,vm-image module has hv,path \"not-there.bin\""),
        "{e}"
    );
    assert!(e.contains("\"vmlinuz-6.1\""), "{e}");
}

#[test]
fn a_bad_module_file_is_reported_not_fatal() {
    let blob = dtb(&Spec {
        modules: vec![(0x4800_0000, 0x10, "hv,vm-config", None)],
        ..Spec::default()
    });
    let info = BootInfo::parse(&blob, 0).unwrap();
    let out = define_modules(&info, &Facts, |_| Ok(&b"[[vm]]\nname = 5\n"[..]));
    assert!(out[0].vms.as_ref().is_err());
    // A wrong `[console]` refuses the file, and sets no key.
    let out = define_modules(&info, &Facts, |_| {
        Ok(&b"vm = []\n[console]\nescape = \"ctrl-m\"\n"[..])
    });
    let e = out[0].vms.as_ref().unwrap_err();
    assert!(e.contains("ctrl-m"), "{e}");
    assert_eq!(out[0].console_escape, None);
    let out = define_modules(&info, &Facts, |_| {
        Ok(&b"vm = []\n[console]\nescape = \"ctrl-b\"\n"[..])
    });
    assert_eq!(out[0].vms.as_ref().map(Vec::len), Ok(0));
    assert_eq!(out[0].console_escape, Some(0x02));
    let out = define_modules(&info, &Facts, |_| Ok(&[0xff, 0xfe][..]));
    assert!(out[0].vms.as_ref().unwrap_err().contains("UTF-8"));
    let out = define_modules(&info, &Facts, |_| Err("outside RAM".into()));
    assert_eq!(out[0].vms.as_ref().unwrap_err(), "outside RAM");
}

fn kdl_firmware(from: crate::platform::FromFirmware) -> Vec<MemoryDesc> {
    let base = match from {
        crate::platform::FromFirmware::BaseAndSize => 0,
        _ => 0x4000_0000,
    };
    vec![MemoryDesc {
        name: "dram0",
        base,
        size: 0,
        numa_node: 0,
        from_firmware: from,
    }]
}

#[test]
fn firmware_memory_takes_the_tree_quietly_and_checks_the_base() {
    use crate::platform::FromFirmware;
    let blob = dtb(&Spec::default()); // 3 GiB at 0x4000_0000
    let info = BootInfo::parse(&blob, 0x4400_0000).unwrap();
    for from in [FromFirmware::Size, FromFirmware::BaseAndSize] {
        let plan = plan_ram(&info, &kdl_firmware(from), HV, STAGING).unwrap();
        assert_eq!(plan.warning, None, "{from:?}");
        assert_eq!(plan.regions[0].size, 3 * GIB);
        assert!(
            plan.report[0].contains("from the firmware"),
            "{:?}",
            plan.report
        );
    }
    // The KDL's base is a fact: RAM that starts elsewhere is worth a warning.
    let mut kdl = kdl_firmware(FromFirmware::Size);
    kdl[0].base = 0x2000_0000;
    let plan = plan_ram(&info, &kdl, HV, STAGING).unwrap();
    let w = plan.warning.unwrap();
    assert!(w.contains("\"dram0\" starts at 0x2000_0000"), "{w}");
}

#[test]
fn firmware_memory_without_a_tree_stops_naming_the_memory_node() {
    use crate::platform::FromFirmware;
    let kdl = kdl_firmware(FromFirmware::Size);
    let c = choose_ram(None, &kdl, HV, STAGING);
    // Only the hypervisor's own region is mapped (to print the refusal), and it is reserved.
    let own: Vec<_> = c.regions.iter().map(|r| (r.base, r.size)).collect();
    assert_eq!(own, vec![HV], "RAM guessed: {:?}", c.regions);
    assert!(c.reserved.contains(&HV));
    let why = c.refusal.unwrap();
    assert!(
        why.contains("board KDL memory \"dram0\" comes from the firmware")
            && why.contains("no device tree"),
        "{why}"
    );
    // A tree without RAM is no better.
    let blob = dtb(&Spec {
        memory: vec![],
        ..Spec::default()
    });
    let c = choose_ram(
        Some((0x4800_0000, BootInfo::parse(&blob, 0x4800_0000))),
        &kdl_firmware(FromFirmware::BaseAndSize),
        HV,
        STAGING,
    );
    assert_eq!(c.regions.len(), 1);
    assert!(c.refusal.unwrap().contains("describes no RAM"));
}

#[test]
fn plan_refuses_a_staging_area_outside_the_firmware_ram() {
    // RAM that holds the hypervisor but ends before the staging area.
    let blob = dtb(&Spec {
        memory: vec![("memory@40000000", vec![(0x4000_0000, 0x0230_0000)], None)],
        ..Spec::default()
    });
    let info = BootInfo::parse(&blob, 0x4000_0000).unwrap();
    let e = plan_ram(&info, &kdl_2g(), HV, STAGING).unwrap_err();
    assert!(matches!(e, RamError::StagingOutsideRam { .. }), "{e}");
    assert!(e.to_string().contains("0x4240_0000..0x4260_0000"), "{e}");
}
