//! Regression tests for crashes found by the fuzz targets in `fuzz/` (inputs kept in
//! `fuzz/regressions/<target>/`), each written as the plain API calls the input made.

use hypervisor::types::VcpuId;
use hypervisor::vgic::v2::GICD_SGIR;
use hypervisor::vgic::VGic;

/// `fuzz/regressions/vgic_mmio/gicv2-sgir-from-vcpu-80`: a `GICD_SGIR` write with
/// TargetListFilter 0b01 ("all but me") or 0b10 ("only me") from vCPU 64 or above shifted
/// a `u64` by the vCPU number and panicked. `VGic::new_v2` accepted up to 128 vCPUs, while
/// a GICv2 has 8 CPU interfaces. Either refusing such a vGIC or sending the SGI without a
/// panic is correct.
#[test]
fn gicv2_sgir_self_and_others_filters_never_panic_whatever_the_vcpu_count() {
    for vcpus in [1, 8, 9, 64, 65, 80, 128] {
        let Ok(mut gic) = VGic::new_v2(vcpus, 64) else {
            continue;
        };
        for sender in 0..vcpus {
            for filter in 0..4u64 {
                let _ = gic.gicd_v2_write(VcpuId(sender), GICD_SGIR, 4, filter << 24 | 1);
            }
        }
    }
}
