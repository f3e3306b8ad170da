//! Interrupts: `IrqDesc`, the GIC (`GicDesc`), timer PPIs and the PMU interrupt.

use crate::devices::reg;
use crate::lit::{hex, option, slice};
use platform_dsl::model::{Gic, GicVersion, Irq, Pmu, Timer, Trigger};
use proc_macro2::TokenStream;
use quote::quote;

/// One `IrqDesc`.
pub fn irq(irq: &Irq) -> TokenStream {
    let intid = irq.intid;
    let trigger = match irq.trigger {
        Trigger::Level => quote!(::hypervisor::platform::Trigger::Level),
        Trigger::Edge => quote!(::hypervisor::platform::Trigger::Edge),
    };
    quote!(::hypervisor::platform::IrqDesc { intid: #intid, trigger: #trigger })
}

/// The `GicDesc`.
pub fn gic(gic: &Gic) -> TokenStream {
    let version = match gic.version {
        GicVersion::V2 => quote!(::hypervisor::platform::GicVersion::V2),
        GicVersion::V3 => quote!(::hypervisor::platform::GicVersion::V3),
    };
    let compatible = &gic.compatible;
    let distributor = reg(&gic.distributor);
    let redistributors = slice(gic.redistributors.iter().map(reg));
    let cpu_interface = option(gic.cpu_interface.as_ref(), reg);
    let hyp_interface = option(gic.hyp_interface.as_ref(), reg);
    let virtual_cpu_interface = option(gic.virtual_cpu_interface.as_ref(), reg);
    let its = option(gic.its.as_ref(), reg);
    let maintenance_irq = irq(&gic.maintenance_irq);
    let spi_count = gic.spi_count;
    quote! {
        ::hypervisor::platform::GicDesc {
            version: #version,
            compatible: #compatible,
            distributor: #distributor,
            redistributors: #redistributors,
            cpu_interface: #cpu_interface,
            hyp_interface: #hyp_interface,
            virtual_cpu_interface: #virtual_cpu_interface,
            its: #its,
            maintenance_irq: #maintenance_irq,
            spi_count: #spi_count,
        }
    }
}

/// The `TimerDesc`.
pub fn timer(timer: &Timer) -> TokenStream {
    let (s, p, v, h) = (
        irq(&timer.secure_phys),
        irq(&timer.phys),
        irq(&timer.virt),
        irq(&timer.hyp_phys),
    );
    quote! {
        ::hypervisor::platform::TimerDesc { secure_phys: #s, phys: #p, virt: #v, hyp_phys: #h }
    }
}

/// The `PmuDesc`: one PPI, or `(SPI, MPIDR)` pairs in CPU boot order.
pub fn pmu(pmu: &Pmu) -> TokenStream {
    match pmu {
        Pmu::Ppi(i) => {
            let i = irq(i);
            quote!(::hypervisor::platform::PmuDesc::Ppi(#i))
        }
        Pmu::PerCpuSpi(spis) => {
            let pairs = slice(spis.iter().map(|s| {
                let i = irq(&s.irq);
                let mpidr = hex(s.mpidr);
                quote!((#i, #mpidr))
            }));
            quote!(::hypervisor::platform::PmuDesc::PerCpuSpi(#pairs))
        }
        Pmu::Unavailable { reason } => {
            quote!(::hypervisor::platform::PmuDesc::Unavailable(#reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;
    use crate::lit::compact;
    use platform_dsl::model::PmuSpi;

    #[test]
    fn an_unavailable_pmu_keeps_its_reason() {
        let out = compact(&pmu(&Pmu::Unavailable {
            reason: "via-the-PIC".into(),
        }));
        assert_eq!(
            out,
            "::hypervisor::platform::PmuDesc::Unavailable(\"via-the-PIC\")"
        );
    }

    #[test]
    fn irq_keeps_intid_and_trigger() {
        let out = compact(&irq(&Irq {
            intid: 33,
            trigger: Trigger::Edge,
        }));
        assert_eq!(
            out,
            "::hypervisor::platform::IrqDesc{intid:33u32,trigger:::hypervisor::platform::Trigger::Edge}"
        );
    }

    #[test]
    fn gicv3_has_redistributors_its_and_no_v2_interfaces() {
        let out = compact(&gic(&fixture::two_socket().gic));
        assert!(
            out.contains("version:::hypervisor::platform::GicVersion::V3"),
            "{out}"
        );
        assert!(out.contains("name:\"gicr0\",base:0x1008_0000_u64"), "{out}");
        assert!(out.contains("name:\"gicr1\",base:0x2008_0000_u64"), "{out}");
        assert!(
            out.contains("cpu_interface:::core::option::Option::None"),
            "{out}"
        );
        assert!(
            out.contains(
                "its:::core::option::Option::Some(::hypervisor::platform::RegDesc{name:\"its\""
            ),
            "{out}"
        );
        assert!(out.contains("spi_count:320u32"), "{out}");
    }

    #[test]
    fn gicv2_has_cpu_hyp_and_virtual_interfaces() {
        let out = compact(&gic(&fixture::gicv2_experimental().gic));
        assert!(
            out.contains("version:::hypervisor::platform::GicVersion::V2"),
            "{out}"
        );
        assert!(out.contains("redistributors:&[]"), "{out}");
        assert!(out.contains("cpu_interface:::core::option::Option::Some(::hypervisor::platform::RegDesc{name:\"gicc\",base:0xff84_2000_u64"), "{out}");
        assert!(out.contains("hyp_interface:::core::option::Option::Some(::hypervisor::platform::RegDesc{name:\"gich\""), "{out}");
        assert!(out.contains("virtual_cpu_interface:::core::option::Option::Some(::hypervisor::platform::RegDesc{name:\"gicv\""), "{out}");
    }

    #[test]
    fn timer_maps_each_ppi() {
        let out = compact(&timer(&fixture::two_socket().timer));
        for (field, intid) in [
            ("secure_phys", 29),
            ("phys", 30),
            ("virt", 27),
            ("hyp_phys", 26),
        ] {
            assert!(
                out.contains(&format!(
                    "{field}:::hypervisor::platform::IrqDesc{{intid:{intid}u32"
                )),
                "{field}: {out}"
            );
        }
    }

    #[test]
    fn pmu_ppi_is_one_irq() {
        let out = compact(&pmu(&fixture::two_socket().pmu));
        assert_eq!(
            out,
            "::hypervisor::platform::PmuDesc::Ppi(::hypervisor::platform::IrqDesc{intid:23u32,trigger:::hypervisor::platform::Trigger::Level})"
        );
    }

    #[test]
    fn pmu_per_cpu_spis_pair_each_irq_with_its_mpidr() {
        let spi = |intid, mpidr| PmuSpi {
            irq: Irq {
                intid,
                trigger: Trigger::Level,
            },
            mpidr,
        };
        let out = compact(&pmu(&Pmu::PerCpuSpi(vec![spi(48, 0x0), spi(49, 0x100)])));
        assert!(
            out.starts_with("::hypervisor::platform::PmuDesc::PerCpuSpi(&["),
            "{out}"
        );
        assert!(
            out.contains("(::hypervisor::platform::IrqDesc{intid:48u32,trigger:::hypervisor::platform::Trigger::Level},0x0_u64)"),
            "{out}"
        );
        assert!(
            out.contains("(::hypervisor::platform::IrqDesc{intid:49u32,trigger:::hypervisor::platform::Trigger::Level},0x100_u64)"),
            "{out}"
        );
    }

    #[test]
    fn generated_tables_are_valid_rust() {
        let b = fixture::two_socket();
        syn::parse2::<syn::Expr>(gic(&b.gic)).unwrap();
        syn::parse2::<syn::Expr>(timer(&b.timer)).unwrap();
        syn::parse2::<syn::Expr>(pmu(&b.pmu)).unwrap();
        let spis = Pmu::PerCpuSpi(vec![PmuSpi {
            irq: Irq {
                intid: 48,
                trigger: Trigger::Level,
            },
            mpidr: 0,
        }]);
        syn::parse2::<syn::Expr>(pmu(&spis)).unwrap();
    }
}
