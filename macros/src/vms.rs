//! `vms!`: takes the VM file and its staging plan from the build's model, emits `HV_VMS`.

use crate::args::VmsArgs;
use crate::lit::{hex, option, slice};
use crate::select::{self, Env};
use crate::track;
use platform_dsl::vmconfig::{DiskController, ImageKind, Plan, VmConfig, VmDevice, VmDisk, VmNic};
use proc_macro2::{Span, TokenStream};
use quote::quote;

fn image(plan: &Plan, vm: usize, kind: ImageKind) -> Option<TokenStream> {
    plan.image(vm, kind).map(|i| {
        let path = i.path.display().to_string();
        let (base, size) = (hex(i.addr), hex(i.size));
        quote!(::hypervisor::config::ImageDesc { path: #path, staging_base: #base, size: #size })
    })
}

fn device(d: &VmDevice) -> TokenStream {
    match d {
        VmDevice::Passthrough(device) => {
            quote!(::hypervisor::config::VmDeviceDesc::Passthrough { device: #device })
        }
    }
}

fn disk(d: &VmDisk) -> TokenStream {
    let partition = &d.partition;
    let controller = match d.controller {
        DiskController::Nvme => quote!(Nvme),
        DiskController::VirtioBlk => quote!(VirtioBlk),
        DiskController::Ahci => quote!(Ahci),
    };
    let read_only = d.read_only;
    let size = option(
        d.size_mib
            .map(|m| hex(m.saturating_mul(1024 * 1024)))
            .as_ref(),
        |t| quote!(#t),
    );
    quote!(::hypervisor::config::VmDiskDesc {
        partition: #partition,
        controller: ::hypervisor::config::DiskController::#controller,
        read_only: #read_only,
        size: #size,
    })
}

fn nic(n: &VmNic) -> Result<TokenStream, String> {
    let mac = match &n.mac {
        Some(m) => {
            let b = platform_dsl::vmconfig::parse_mac(m)
                .map_err(|why| format!("MAC address `{m}`: {why}"))?;
            quote!(::core::option::Option::Some([#(#b),*]))
        }
        None => quote!(::core::option::Option::None),
    };
    let group = option(n.port_group.as_ref(), |g| quote!(#g));
    Ok(quote!(::hypervisor::config::VmNicDesc { mac: #mac, port_group: #group }))
}

/// The `VmTable` expression: VMs in order, images at their staging addresses.
pub fn vm_table(config: &VmConfig, plan: &Plan) -> Result<TokenStream, String> {
    let mut vms = Vec::new();
    for (index, vm) in config.vms.iter().enumerate() {
        let name = &vm.name;
        let vcpus = vm.vcpus;
        let memory_size = hex(vm.memory_bytes);
        let kernel = image(plan, index, ImageKind::Kernel).ok_or_else(|| {
            format!("VM `{name}`: the staging plan has no kernel (internal error)")
        })?;
        let initrd = option(image(plan, index, ImageKind::Initrd).as_ref(), |t| {
            t.clone()
        });
        let dtb = option(image(plan, index, ImageKind::Dtb).as_ref(), |t| t.clone());
        let cmdline = &vm.cmdline;
        let devices = slice(vm.devices.iter().map(device));
        let disks = slice(vm.disks.iter().map(disk));
        let nics = slice(vm.nics.iter().map(nic).collect::<Result<Vec<_>, _>>()?);
        let numa = match vm.numa {
            platform_dsl::vmconfig::NumaPolicy::Local => {
                quote!(::hypervisor::config::VmNuma::Local)
            }
            platform_dsl::vmconfig::NumaPolicy::Node(n) => {
                quote!(::hypervisor::config::VmNuma::Node(#n))
            }
            platform_dsl::vmconfig::NumaPolicy::Spread => {
                quote!(::hypervisor::config::VmNuma::Spread)
            }
        };
        vms.push(quote! {
            ::hypervisor::config::VmDesc {
                name: #name,
                vcpus: #vcpus,
                memory_size: #memory_size,
                kernel: #kernel,
                initrd: #initrd,
                dtb: #dtb,
                cmdline: #cmdline,
                devices: #devices,
                disks: #disks,
                nics: #nics,
                numa: #numa,
            }
        });
    }
    let vms = slice(vms);
    let (base, end) = (hex(plan.staging_base), hex(plan.staging_end));
    let escape = option(config.console_escape.as_ref(), |b| quote!(#b));
    Ok(quote! {
        ::hypervisor::config::VmTable {
            vms: #vms,
            staging_base: #base,
            staging_end: #end,
            console_escape: #escape,
        }
    })
}

/// The items `vms!` expands to.
pub fn items(config: &VmConfig, plan: &Plan) -> Result<TokenStream, String> {
    let table = vm_table(config, plan)?;
    let max_vcpus = config
        .vms
        .iter()
        .map(|v| u64::from(v.vcpus))
        .max()
        .unwrap_or(0);
    Ok(quote! {
        /// The VMs this image starts (generated from the VM TOML by `vms!`).
        static VM_TABLE: ::hypervisor::config::VmTable = #table;
        /// The VM table the core reads at boot.
        #[unsafe(no_mangle)]
        pub static HV_VMS: &'static ::hypervisor::config::VmTable = &VM_TABLE;
        // platform_dsl::vmconfig::MAX_VCPUS must stay within the guest-physical layout.
        const _: () = ::core::assert!(#max_vcpus <= ::hypervisor::vm::layout::MAX_VCPUS);
    })
}

/// Expands a `vms!(...)` call.
pub fn expand(args: &VmsArgs, env: &Env) -> TokenStream {
    let track = track::inputs(env.model_path());
    match generate(args, env) {
        Ok(items) => quote!(#items #track),
        Err(e) => {
            let err = e.to_compile_error();
            quote!(#err #track)
        }
    }
}

/// The items for the build's VM file, or the error for `compile_error!`.
fn generate(args: &VmsArgs, env: &Env) -> syn::Result<TokenStream> {
    let model = select::model(env)?;
    select::vms(args, env, &model)?;
    let span = args.file.as_ref().map_or(Span::call_site(), |f| f.span());
    // The build script's report for a VM file (or board) that does not load or fit.
    let vms = model
        .vms
        .as_ref()
        .map_err(|report| syn::Error::new(span, report))?;
    items(&vms.config, &vms.plan).map_err(|msg| syn::Error::new(span, msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;
    use crate::lit::compact;
    use platform_dsl::vmconfig;
    use std::path::PathBuf;

    fn config(dir: &std::path::Path) -> VmConfig {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("k"), [1u8; 4096]).unwrap();
        std::fs::write(dir.join("i"), [2u8; 10]).unwrap();
        VmConfig::parse(
            r#"
            [[vm]]
            name = "linux"
            vcpus = 2
            memory_mib = 256
            kernel = "k"
            initrd = "i"
            cmdline = "console=ttyAMA0"
            devices = [{ passthrough = "nic" }]
            "#,
            &dir.join("vms.toml"),
        )
        .unwrap()
    }

    fn scratch(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("macros-vms-{}-{tag}", std::process::id()))
    }

    #[test]
    fn table_places_images_at_their_staging_addresses() {
        let dir = scratch("table");
        let cfg = config(&dir);
        let plan = vmconfig::plan(&fixture::two_socket(), &cfg).unwrap();
        let out = compact(&vm_table(&cfg, &plan).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
        // hypervisor 0x8020_0000 + 0x200_0000 -> staging at 0x8220_0000.
        assert!(out.contains(&format!(
            "kernel:::hypervisor::config::ImageDesc{{path:\"{}\",staging_base:0x8220_0000_u64,size:0x1000_u64}}",
            dir.join("k").display()
        )), "{out}");
        assert!(
            out.contains("initrd:::core::option::Option::Some(::hypervisor::config::ImageDesc{"),
            "{out}"
        );
        assert!(
            out.contains("staging_base:0x8240_0000_u64,size:0xa_u64"),
            "{out}"
        );
        assert!(out.contains("dtb:::core::option::Option::None"), "{out}");
        assert!(
            out.contains("staging_base:0x8220_0000_u64,staging_end:0x8260_0000_u64,console_escape:::core::option::Option::None,}"),
            "{out}"
        );
    }

    #[test]
    fn table_keeps_vm_fields_and_devices() {
        let dir = scratch("fields");
        let cfg = config(&dir);
        let plan = vmconfig::plan(&fixture::two_socket(), &cfg).unwrap();
        let out = compact(&vm_table(&cfg, &plan).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.contains("name:\"linux\",vcpus:2u32,memory_size:0x1000_0000_u64"),
            "{out}"
        );
        assert!(out.contains("cmdline:\"console=ttyAMA0\""), "{out}");
        assert!(
            out.contains(
                "devices:&[::hypervisor::config::VmDeviceDesc::Passthrough{device:\"nic\"}]"
            ),
            "{out}"
        );
    }

    #[test]
    fn items_define_hv_vms_and_check_max_vcpus() {
        let dir = scratch("items");
        let cfg = config(&dir);
        let plan = vmconfig::plan(&fixture::two_socket(), &cfg).unwrap();
        let tokens = items(&cfg, &plan).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let out = compact(&tokens);
        assert!(out.contains("#[unsafe(no_mangle)]pubstaticHV_VMS:&'static::hypervisor::config::VmTable=&VM_TABLE;"), "{out}");
        assert!(
            out.contains("assert!(2u64<=::hypervisor::vm::layout::MAX_VCPUS)"),
            "{out}"
        );
        syn::parse2::<syn::File>(tokens).unwrap();
    }

    #[test]
    fn no_model_expands_to_compile_error() {
        let out = compact(&expand(&VmsArgs::default(), &Env::default()));
        assert!(out.starts_with("::core::compile_error!"), "{out}");
    }

    #[test]
    fn the_build_scripts_report_becomes_the_compile_error() {
        let dir = scratch("report");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hv-model.json");
        fixture::model().write(&path).unwrap();
        let env = Env {
            manifest_dir: None,
            model: Some(path.display().to_string()),
        };
        let out = compact(&expand(&VmsArgs::default(), &env));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.starts_with("::core::compile_error!{\"notplanned\"}"),
            "{out}"
        );
    }
}
