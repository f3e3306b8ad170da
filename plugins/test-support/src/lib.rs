//! Host-test helpers for plugin crates: leaked `'static` device and board descriptions, and
//! a fake DMA environment ([`dma::FakeEnv`]) for drivers that do DMA.
//!
//! Probes take `&'static DeviceDesc` and `&'static BoardDesc`; tests build them around a
//! fake register block in host memory:
//!
//! ```ignore
//! let regs = Box::leak(Box::new(FakeRegs::default()));
//! let dev = plugin_test_support::device(&["arm,pl011"], regs as *mut _ as u64, 0x1000, None);
//! let board = plugin_test_support::board(plugin_test_support::gic_v3(0, &[]));
//! (DRIVER.probe)(dev, board)
//! ```
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod dma;

use alloc::boxed::Box;
use hypervisor::platform::{
    BoardDesc, CpuDesc, CpuEnable, DeviceDesc, DeviceStatus, GicDesc, GicVersion, IrqDesc, PmuDesc,
    RegDesc, SupportLevel, TimerDesc, Trigger, VerificationDesc,
};

const PPI: fn(u32) -> IrqDesc = |intid| IrqDesc {
    intid,
    trigger: Trigger::Level,
};

/// A region named `name` at `base`.
pub fn reg(name: &'static str, base: u64, size: u64) -> RegDesc {
    RegDesc { name, base, size }
}

/// An enabled device with one MMIO window (`base`, `size`), leaked to `'static`.
pub fn device(
    compatible: &'static [&'static str],
    base: u64,
    size: u64,
    clock_hz: Option<u64>,
) -> &'static DeviceDesc {
    let regs: &'static [RegDesc] = Box::leak(Box::new([reg("regs", base, size)]));
    Box::leak(Box::new(DeviceDesc {
        name: "dut",
        compatible,
        regs,
        irqs: &[],
        status: DeviceStatus::Okay,
        bus_id: None,
        clock_hz,
        dma_coherent: false,
    }))
}

/// An enabled device without any MMIO window.
pub fn device_without_reg(compatible: &'static [&'static str]) -> &'static DeviceDesc {
    Box::leak(Box::new(DeviceDesc {
        name: "dut",
        compatible,
        regs: &[],
        irqs: &[],
        status: DeviceStatus::Okay,
        bus_id: None,
        clock_hz: None,
        dma_coherent: false,
    }))
}

/// A GICv3 description with its distributor at `gicd` and the given redistributor regions.
pub fn gic_v3(gicd: u64, redistributors: &[RegDesc]) -> GicDesc {
    GicDesc {
        version: GicVersion::V3,
        compatible: "arm,gic-v3",
        distributor: reg("gicd", gicd, 0x1_0000),
        redistributors: Box::leak(redistributors.to_vec().into_boxed_slice()),
        cpu_interface: None,
        hyp_interface: None,
        virtual_cpu_interface: None,
        its: None,
        maintenance_irq: PPI(25),
        spi_count: 32,
    }
}

/// A GICv2 description with its distributor at `gicd` and CPU interface at `gicc`.
pub fn gic_v2(gicd: u64, gicc: u64) -> GicDesc {
    GicDesc {
        version: GicVersion::V2,
        compatible: "arm,gic-400",
        distributor: reg("gicd", gicd, 0x1000),
        redistributors: &[],
        cpu_interface: Some(reg("gicc", gicc, 0x2000)),
        hyp_interface: None,
        virtual_cpu_interface: None,
        its: None,
        maintenance_irq: PPI(25),
        spi_count: 32,
    }
}

/// A CPU with the given MPIDR affinity value.
pub fn cpu(mpidr: u64) -> CpuDesc {
    CpuDesc {
        mpidr,
        socket: 0,
        cluster: 0,
        numa_node: 0,
        core: "arm,cortex-a53",
        enable: CpuEnable::Psci,
    }
}

/// A board with `gic` and `cpus` and no devices, leaked to `'static`.
pub fn board(gic: GicDesc, cpus: &[CpuDesc]) -> &'static BoardDesc {
    Box::leak(Box::new(BoardDesc {
        name: "test-board",
        model: "host test board",
        soc: "none",
        support: SupportLevel::Community,
        verified_by: VerificationDesc::None,
        cpus: Box::leak(cpus.to_vec().into_boxed_slice()),
        memory: &[],
        hypervisor_base: None,
        hypervisor_size: 0,
        gic,
        timer: TimerDesc {
            secure_phys: PPI(29),
            phys: PPI(30),
            virt: PPI(27),
            hyp_phys: PPI(26),
        },
        pmu: PmuDesc::Ppi(PPI(23)),
        console: Some(0),
        interrupt_controller: 0,
        devices: &[],
        quirks: &[],
        network: hypervisor::platform::NetworkDesc::DEFAULT,
        stage2_ram_mappings: hypervisor::platform::Stage2RamMappings::Blocks,
        source: hypervisor::platform::SourceDesc::NONE,
        numa_distances: &[],
    }))
}
