//! Fuzz target: any bytes as the physical memory that holds the firmware's ACPI tables
//! (mapped at physical address 0, the RSDP at 0). `acpi::discover` must return tables or
//! an error without a panic, and whatever it returns must check against a board (a
//! QEMU-virt-like GICv3 board and a two-region one) and print as a banner without one.
#![no_main]

use hypervisor::acpi::{check, discover, PhysRead, PhysReadError};
use hypervisor::platform::{
    BoardDesc, CpuDesc, CpuEnable, DeviceDesc, DeviceStatus, GicDesc, GicVersion, IrqDesc,
    MemoryDesc, NetworkDesc, PmuDesc, RegDesc, SourceDesc, SupportLevel, TimerDesc, Trigger,
    VerificationDesc,
};
use libfuzzer_sys::fuzz_target;

struct Flat<'a>(&'a [u8]);

impl PhysRead for Flat<'_> {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), PhysReadError> {
        let err = PhysReadError {
            pa,
            len: buf.len() as u64,
        };
        let start = usize::try_from(pa).map_err(|_| err)?;
        let end = start.checked_add(buf.len()).ok_or(err)?;
        buf.copy_from_slice(self.0.get(start..end).ok_or(err)?);
        Ok(())
    }
}

const fn level(intid: u32) -> IrqDesc {
    IrqDesc {
        intid,
        trigger: Trigger::Level,
    }
}

const fn cpu(mpidr: u64, socket: u32) -> CpuDesc {
    CpuDesc {
        mpidr,
        socket,
        cluster: 0,
        numa_node: socket,
        core: "arm,cortex-a57",
        enable: CpuEnable::Psci,
    }
}

static DEVICES: [DeviceDesc; 2] = [
    DeviceDesc {
        name: "uart0",
        compatible: &["arm,pl011"],
        regs: &[RegDesc {
            name: "regs",
            base: 0x0900_0000,
            size: 0x1000,
        }],
        irqs: &[level(33)],
        status: DeviceStatus::Okay,
        bus_id: None,
        clock_hz: Some(24_000_000),
        dma_coherent: false,
    },
    DeviceDesc {
        name: "pcie",
        compatible: &["pci-host-ecam-generic"],
        regs: &[RegDesc {
            name: "ecam",
            base: 0x40_1000_0000,
            size: 0x1000_0000,
        }],
        irqs: &[],
        status: DeviceStatus::Okay,
        bus_id: None,
        clock_hz: None,
        dma_coherent: true,
    },
];

static BOARD: BoardDesc = BoardDesc {
    name: "fuzz",
    model: "fuzz",
    soc: "fuzz",
    support: SupportLevel::Community,
    verified_by: VerificationDesc::None,
    cpus: &[cpu(0, 0), cpu(1, 0), cpu(0x1_0000_0000, 1)],
    memory: &[
        MemoryDesc {
            name: "dram0",
            base: 0x4000_0000,
            size: 0x4000_0000,
            numa_node: 0,
            from_firmware: hypervisor::platform::FromFirmware::Nothing,
        },
        MemoryDesc {
            name: "dram1",
            base: 0x8000_0000,
            size: 0x4000_0000,
            numa_node: 1,
            from_firmware: hypervisor::platform::FromFirmware::Nothing,
        },
    ],
    hypervisor_base: Some(0x4020_0000),
    hypervisor_size: 0x200_0000,
    gic: GicDesc {
        version: GicVersion::V3,
        compatible: "arm,gic-v3",
        distributor: RegDesc {
            name: "gicd",
            base: 0x0800_0000,
            size: 0x1_0000,
        },
        redistributors: &[
            RegDesc {
                name: "gicr0",
                base: 0x080a_0000,
                size: 0xf6_0000,
            },
            RegDesc {
                name: "gicr1",
                base: 0x1_080a_0000,
                size: 0x10_0000,
            },
        ],
        cpu_interface: None,
        hyp_interface: None,
        virtual_cpu_interface: None,
        its: Some(RegDesc {
            name: "its",
            base: 0x0808_0000,
            size: 0x2_0000,
        }),
        maintenance_irq: level(25),
        spi_count: 256,
    },
    timer: TimerDesc {
        secure_phys: level(29),
        phys: level(30),
        virt: level(27),
        hyp_phys: level(26),
    },
    pmu: PmuDesc::Ppi(level(23)),
    console: Some(0),
    interrupt_controller: 2,
    devices: &DEVICES,
    quirks: &[],
    network: NetworkDesc::DEFAULT,
    stage2_ram_mappings: hypervisor::platform::Stage2RamMappings::Blocks,
    source: SourceDesc {
        file: "fuzz.kdl",
        lines: &[("gic.distributor", 3), ("cpus", 10)],
    },
    numa_distances: &[],
};

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = discover(0, &Flat(data)) {
        for f in check(&BOARD, &info) {
            assert!(!f.message.is_empty(), "a finding says what differs");
        }
        let _ = info.to_string();
    }
});
