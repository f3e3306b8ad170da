//! Device trees with boot modules for the scenarios: QEMU's own tree for the machine
//! (`dumpdtb`), copied node by node, with `/chosen/module@*` nodes added as the boot
//! handoff contract describes them (docs/ARCHITECTURE.md, "Boot"). QEMU then takes it with
//! `-dtb` (it still writes `/memory` and `/chosen/bootargs`) and passes it in x0.

use crate::build::{workspace_root, Image};
use platform_dsl::model::Verification;
use std::path::Path;
use std::process::Command;

/// A module: where the loader puts it, its file and its `compatible` / `hv,path`.
pub struct Module<'a> {
    /// Physical address.
    pub addr: u64,
    /// The file QEMU loads there.
    pub file: &'a Path,
    /// `hv,vm-config` or `hv,vm-image`.
    pub compatible: &'a str,
    /// `hv,path` of an image module.
    pub path: Option<&'a str>,
}

/// Copies `node` and its subtree into `w`, adding `modules` to `/chosen`.
fn copy(
    w: &mut vm_fdt::FdtWriter,
    node: fdt::node::FdtNode<'_, '_>,
    depth: usize,
    modules: &[(Module<'_>, u64)],
) -> Result<(), String> {
    let e = |e: vm_fdt::Error| e.to_string();
    let name = if depth == 0 { "" } else { node.name };
    let n = w.begin_node(name).map_err(e)?;
    let chosen = depth == 1 && node.name == "chosen";
    for p in node.properties() {
        if chosen && (p.name == "#address-cells" || p.name == "#size-cells") {
            continue;
        }
        w.property(p.name, p.value).map_err(e)?;
    }
    if chosen {
        w.property_u32("#address-cells", 2).map_err(e)?;
        w.property_u32("#size-cells", 2).map_err(e)?;
        for (m, size) in modules {
            let mn = w.begin_node(&format!("module@{:x}", m.addr)).map_err(e)?;
            w.property_array_u64("reg", &[m.addr, *size]).map_err(e)?;
            w.property_string("compatible", m.compatible).map_err(e)?;
            if let Some(p) = m.path {
                w.property_string("hv,path", p).map_err(e)?;
            }
            w.end_node(mn).map_err(e)?;
        }
    }
    for c in node.children() {
        copy(w, c, depth + 1, modules)?;
    }
    w.end_node(n).map_err(e)
}

/// `blob` (a flattened device tree) with `modules` added under `/chosen`.
pub fn with_modules(blob: &[u8], modules: &[Module<'_>]) -> Result<Vec<u8>, String> {
    let tree = fdt::Fdt::new(blob).map_err(|e| format!("QEMU's device tree: {e:?}"))?;
    let sized: Vec<(Module<'_>, u64)> = modules
        .iter()
        .map(|m| {
            let size = std::fs::metadata(m.file)
                .map_err(|e| format!("{}: {e}", m.file.display()))?
                .len();
            Ok((
                Module {
                    addr: m.addr,
                    file: m.file,
                    compatible: m.compatible,
                    path: m.path,
                },
                size,
            ))
        })
        .collect::<Result<_, String>>()?;
    let mut w = vm_fdt::FdtWriter::new().map_err(|e| e.to_string())?;
    let root = tree
        .find_node("/")
        .ok_or("QEMU's device tree has no root")?;
    copy(&mut w, root, 0, &sized)?;
    w.finish().map_err(|e| e.to_string())
}

/// The QEMU arguments of scenario `image-boot-modules`: a VM file module (VM `modvm`,
/// autostart, the test guest as its kernel by `hv,path`), the test guest as an image
/// module, and QEMU's device tree for `img`'s machine with both under `/chosen`.
pub fn modules_args(img: &Image) -> Result<Vec<String>, String> {
    let Verification::Qemu {
        machine,
        cpu,
        smp,
        memory_mib,
        ..
    } = &img.board.verified_by
    else {
        return Err(format!("board `{}` has no QEMU machine", img.board.name));
    };
    let dir = workspace_root().join("target/qemu-logs");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let qemu_dtb = dir.join("image-boot-modules.qemu.dtb");
    crate::build::run(Command::new("qemu-system-aarch64").args([
        "-M",
        &format!("{machine},dumpdtb={}", qemu_dtb.display()),
        "-cpu",
        cpu,
        "-m",
        &memory_mib.to_string(),
        "-smp",
        &smp.to_string(),
        "-nographic",
        "-net",
        "none",
    ]))?;
    let toml = dir.join("image-boot-modules.vms.toml");
    std::fs::write(
        &toml,
        "[[vm]]\nname = \"modvm\"\nvcpus = 2\nmemory_mib = 64\nkernel = \"test-guest.bin\"\n\
         cmdline = \"\"\nautostart = true\n",
    )
    .map_err(|e| e.to_string())?;
    let guest = workspace_root().join("target/guests/test-guest.bin");
    let modules = [
        Module {
            addr: 0x5000_0000,
            file: &toml,
            compatible: "hv,vm-config",
            path: None,
        },
        Module {
            addr: 0x5020_0000,
            file: &guest,
            compatible: "hv,vm-image",
            path: Some("test-guest.bin"),
        },
    ];
    let blob = std::fs::read(&qemu_dtb).map_err(|e| format!("{}: {e}", qemu_dtb.display()))?;
    let out = dir.join("image-boot-modules.dtb");
    std::fs::write(&out, with_modules(&blob, &modules)?).map_err(|e| e.to_string())?;
    let mut args = vec!["-dtb".to_string(), out.display().to_string()];
    for m in &modules {
        args.push("-device".into());
        args.push(format!(
            "loader,file={},addr={:#x},force-raw=on",
            m.file.display(),
            m.addr
        ));
    }
    Ok(args)
}
