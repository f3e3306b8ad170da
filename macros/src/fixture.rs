//! Test boards for the generator unit tests.

use platform_dsl::model::*;

fn irq(intid: u32, trigger: Trigger) -> Irq {
    Irq { intid, trigger }
}

fn reg(name: &str, base: u64, size: u64) -> Reg {
    Reg {
        name: name.into(),
        base,
        size,
    }
}

/// Two sockets (two NUMA nodes), GICv3 with two redistributor regions, one disabled device.
pub fn two_socket() -> Board {
    Board {
        name: "test-2s".into(),
        model: "Test two-socket".into(),
        soc: "test-soc".into(),
        support: SupportLevel::Supported,
        verified_by: Verification::Qemu {
            machine: "virt,virtualization=on,gic-version=3".into(),
            cpu: "cortex-a57".into(),
            smp: 2,
            memory_mib: 2048,
            extra: vec![],
        },
        topology: Topology {
            sockets: 2,
            clusters_per_socket: 1,
            cores_per_cluster: 1,
        },
        cpus: vec![
            Cpu {
                mpidr: 0x0,
                socket: 0,
                cluster: 0,
                core: "arm,neoverse-n1".into(),
                enable_method: Default::default(),
            },
            Cpu {
                mpidr: 0x1_0000_0000,
                socket: 1,
                cluster: 0,
                core: "arm,neoverse-n1".into(),
                enable_method: Default::default(),
            },
        ],
        numa_nodes: vec![NumaNode { id: 0, socket: 0 }, NumaNode { id: 1, socket: 1 }],
        numa_distances: vec![vec![10, 20], vec![20, 10]],
        memory: vec![
            MemoryRegion {
                name: "dram0".into(),
                base: 0x8000_0000,
                size: 0x8000_0000,
                numa_node: 0,
                from_firmware: FromFirmware::Nothing,
            },
            MemoryRegion {
                name: "dram1".into(),
                base: 0x100_0000_0000,
                size: 0x4000_0000,
                numa_node: 1,
                from_firmware: FromFirmware::Nothing,
            },
        ],
        hypervisor: HypervisorPlacement {
            load_address: Some(0x8020_0000),
            size: 0x0200_0000,
        },
        gic: Gic {
            version: GicVersion::V3,
            compatible: "arm,gic-v3".into(),
            distributor: reg("gicd", 0x1000_0000, 0x1_0000),
            redistributors: vec![
                reg("gicr0", 0x1008_0000, 0x2_0000),
                reg("gicr1", 0x2008_0000, 0x2_0000),
            ],
            cpu_interface: None,
            hyp_interface: None,
            virtual_cpu_interface: None,
            its: Some(reg("its", 0x1004_0000, 0x2_0000)),
            maintenance_irq: irq(25, Trigger::Level),
            spi_count: 320,
        },
        timer: Timer {
            secure_phys: irq(29, Trigger::Level),
            phys: irq(30, Trigger::Level),
            virt: irq(27, Trigger::Level),
            hyp_phys: irq(26, Trigger::Level),
            hyp_virt: None,
        },
        pmu: Pmu::Ppi(irq(23, Trigger::Level)),
        console: Some("uart0".into()),
        console_unavailable: None,
        devices: vec![
            Device {
                name: "gpu".into(),
                compatible: vec!["nvidia,gv11b".into()],
                regs: vec![reg("regs", 0x1700_0000, 0x100_0000)],
                irqs: vec![irq(102, Trigger::Level)],
                status: Status::Disabled {
                    reason: "integrated GPU cannot be shared".into(),
                },
                bus_id: None,
                clock_hz: None,
                dma_coherent: false,
            },
            Device {
                name: "uart0".into(),
                compatible: vec!["arm,pl011".into(), "arm,primecell".into()],
                regs: vec![reg("regs", 0x0900_0000, 0x1000)],
                irqs: vec![irq(33, Trigger::Level)],
                status: Status::Okay,
                bus_id: None,
                clock_hz: Some(24_000_000),
                dma_coherent: false,
            },
            Device {
                name: "nic".into(),
                compatible: vec!["usb0bda,8153".into()],
                regs: vec![],
                irqs: vec![],
                status: Status::Okay,
                bus_id: Some("usb:0bda:8153".into()),
                clock_hz: None,
                dma_coherent: false,
            },
        ],
        quirks: vec![QuirkRef {
            name: "rtl8153-usb-nic".into(),
            matches: "usb:0bda:8153".into(),
        }],
        network: platform_dsl::model::Network::default(),
        // A QEMU `virt` machine: 4 KiB stage-2 pages.
        stage2_ram_mappings: Stage2RamMappings::Pages,
        source: platform_dsl::model::Source::default(),
    }
}

/// A GICv2 board at experimental support level.
pub fn gicv2_experimental() -> Board {
    let mut b = two_socket();
    b.name = "test-v2".into();
    b.support = SupportLevel::Experimental;
    b.verified_by = Verification::DeviceTree {
        dtb: "broadcom/bcm2711-rpi-4-b.dtb".into(),
    };
    b.stage2_ram_mappings = Stage2RamMappings::Blocks;
    b.gic = Gic {
        version: GicVersion::V2,
        compatible: "arm,gic-400".into(),
        distributor: reg("gicd", 0xff84_1000, 0x1000),
        redistributors: vec![],
        cpu_interface: Some(reg("gicc", 0xff84_2000, 0x2000)),
        hyp_interface: Some(reg("gich", 0xff84_4000, 0x2000)),
        virtual_cpu_interface: Some(reg("gicv", 0xff84_6000, 0x2000)),
        its: None,
        maintenance_irq: irq(25, Trigger::Level),
        spi_count: 192,
    };
    b
}

/// A build model of a file with both boards above, `test-2s` selected, VMs not planned.
pub fn model() -> platform_dsl::image::Model {
    platform_dsl::image::Model {
        board_file: "/w/boards.kdl".into(),
        board: "test-2s".into(),
        allow_experimental: false,
        boards: Ok(vec![two_socket(), gicv2_experimental()]),
        vms_file: "/w/vms.toml".into(),
        vms: Err("not planned".into()),
        drivers: None,
    }
}
