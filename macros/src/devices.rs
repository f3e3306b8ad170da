//! Devices: `RegDesc` windows, `DeviceDesc` with status and reason, and the console index.

use crate::lit::{hex, option, slice};
use platform_dsl::model::{Board, Device, Gic, Reg, Status};
use proc_macro2::TokenStream;
use quote::quote;

/// One `RegDesc`.
pub fn reg(r: &Reg) -> TokenStream {
    let (name, base, size) = (&r.name, hex(r.base), hex(r.size));
    quote!(::hypervisor::platform::RegDesc { name: #name, base: #base, size: #size })
}

fn status(s: &Status) -> TokenStream {
    match s {
        Status::Okay => quote!(::hypervisor::platform::DeviceStatus::Okay),
        Status::Disabled { reason } => {
            quote!(::hypervisor::platform::DeviceStatus::Disabled { reason: #reason })
        }
    }
}

fn device(d: &Device) -> TokenStream {
    let name = &d.name;
    let compatible = slice(&d.compatible);
    let regs = slice(d.regs.iter().map(reg));
    let irqs = slice(d.irqs.iter().map(crate::interrupts::irq));
    let status = status(&d.status);
    let bus_id = option(d.bus_id.as_ref(), |b| quote!(#b));
    let clock_hz = option(d.clock_hz.as_ref(), |c| quote!(#c));
    let dma_coherent = d.dma_coherent;
    quote! {
        ::hypervisor::platform::DeviceDesc {
            name: #name,
            compatible: #compatible,
            regs: #regs,
            irqs: #irqs,
            status: #status,
            bus_id: #bus_id,
            clock_hz: #clock_hz,
            dma_coherent: #dma_coherent,
        }
    }
}

/// `&[DeviceDesc]`, enabled and disabled, in declaration order, then the interrupt
/// controller (at [`interrupt_controller_index`]).
pub fn devices(board: &Board) -> TokenStream {
    slice(
        board
            .devices
            .iter()
            .map(device)
            .chain(core::iter::once(gic_device(&board.gic))),
    )
}

/// Name of the interrupt controller's device.
pub const GIC_DEVICE: &str = "gic";

/// Index of the interrupt controller in `devices`: after the board's own devices.
pub fn interrupt_controller_index(board: &Board) -> usize {
    board.devices.len()
}

/// The GIC as a device: its compatible, every register window it has (distributor,
/// redistributors or GICv2 CPU, hyp and virtual CPU interfaces, ITS), the maintenance
/// interrupt. The facts only a GIC has stay in `GicDesc`.
fn gic_device(gic: &Gic) -> TokenStream {
    let compatible = slice(core::iter::once(&gic.compatible));
    let windows = core::iter::once(&gic.distributor)
        .chain(&gic.redistributors)
        .chain(&gic.cpu_interface)
        .chain(&gic.hyp_interface)
        .chain(&gic.virtual_cpu_interface)
        .chain(&gic.its);
    let regs = slice(windows.map(reg));
    let irqs = slice(core::iter::once(crate::interrupts::irq(
        &gic.maintenance_irq,
    )));
    quote! {
        ::hypervisor::platform::DeviceDesc {
            name: #GIC_DEVICE,
            compatible: #compatible,
            regs: #regs,
            irqs: #irqs,
            status: ::hypervisor::platform::DeviceStatus::Okay,
            bus_id: ::core::option::Option::None,
            clock_hz: ::core::option::Option::None,
            dma_coherent: false,
        }
    }
}

/// Index of the console device in `devices`; `None` for a board without a console
/// (`console unavailable=`).
pub fn console_index(board: &Board) -> Result<Option<usize>, String> {
    let Some(name) = board.console.as_deref() else {
        return Ok(None);
    };
    board
        .devices
        .iter()
        .position(|d| d.name == name)
        .map(Some)
        .ok_or_else(|| {
            format!(
                "board `{}`: console `{name}` is not one of its devices; set `console` to a device name",
                board.name
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;
    use crate::lit::compact;

    #[test]
    fn disabled_device_keeps_its_reason() {
        let out = compact(&devices(&fixture::two_socket()));
        assert!(
            out.contains("status:::hypervisor::platform::DeviceStatus::Disabled{reason:\"integratedGPUcannotbeshared\"}"),
            "{out}"
        );
    }

    #[test]
    fn enabled_device_has_regs_irqs_compatibles_and_clock() {
        let out = compact(&devices(&fixture::two_socket()));
        assert!(out.contains(
            "name:\"uart0\",compatible:&[\"arm,pl011\",\"arm,primecell\"],\
             regs:&[::hypervisor::platform::RegDesc{name:\"regs\",base:0x900_0000_u64,size:0x1000_u64}],\
             irqs:&[::hypervisor::platform::IrqDesc{intid:33u32,trigger:::hypervisor::platform::Trigger::Level}],\
             status:::hypervisor::platform::DeviceStatus::Okay,bus_id:::core::option::Option::None,\
             clock_hz:::core::option::Option::Some(24000000u64)"
        ), "{out}");
    }

    #[test]
    fn bus_device_has_its_bus_id() {
        let out = compact(&devices(&fixture::two_socket()));
        assert!(
            out.contains("bus_id:::core::option::Option::Some(\"usb:0bda:8153\")"),
            "{out}"
        );
    }

    #[test]
    fn the_gic_is_the_last_device_with_every_window_and_the_maintenance_irq() {
        let b = fixture::gicv2_experimental();
        let out = compact(&devices(&b));
        let gic = out.rfind("name:\"gic\"").expect("a gic device");
        let tail = &out[gic..];
        assert!(tail.contains("compatible:&[\"arm,gic-400\"]"), "{tail}");
        // Distributor, GICC, GICH, GICV.
        assert_eq!(tail.matches("RegDesc{").count(), 4, "{tail}");
        assert!(tail.contains("intid:25u32"), "{tail}");
        assert_eq!(interrupt_controller_index(&b), b.devices.len());
    }

    #[test]
    fn console_index_points_at_the_console_device() {
        assert_eq!(console_index(&fixture::two_socket()), Ok(Some(1)));
        // A board without a console (`console unavailable=`) has no index.
        let mut b = fixture::two_socket();
        b.console = None;
        b.console_unavailable = Some("no UART".into());
        assert_eq!(console_index(&b), Ok(None));
    }

    #[test]
    fn missing_console_device_is_an_error() {
        let mut b = fixture::two_socket();
        b.console = Some("uart9".into());
        let e = console_index(&b).unwrap_err();
        assert!(e.contains("console `uart9`"), "{e}");
    }

    #[test]
    fn generated_table_is_valid_rust() {
        syn::parse2::<syn::Expr>(devices(&fixture::two_socket())).unwrap();
    }
}
