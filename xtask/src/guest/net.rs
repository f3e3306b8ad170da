//! The network guests of the networking scenarios and bench rows: Debian's 6.1 kernel with
//! an initramfs of busybox-static, the NIC drivers from the kernel package's own modules,
//! `examples/netbench`, and `examples/initramfs/net-init` as `/init` (its role comes from
//! `net.*` words on the kernel command line; see that file).
//!
//! Two flavours of the same kernel version:
//! - [`Flavour::Cloud`]: `linux-image-6.1.*-cloud-arm64`, as the storage guests use. VMs
//!   under the hypervisor see a virtio-net NIC, a module there (`virtio_net`, with
//!   `virtio_pci` for the VM's virtual PCIe).
//! - [`Flavour::Generic`]: `linux-image-6.1.*-arm64`. Debian's cloud kernels have no USB
//!   and no `e1000e` at all, so a bare-QEMU guest that drives the same QEMU NIC as the
//!   hypervisor's uplink (`usb-net` on `qemu-xhci`, `e1000e`) needs this one; it also
//!   carries `virtio_net`, so the bench runs it on both sides.

use super::{
    ensure_generic_61, kernel_modules, write_initramfs_with_modules_and_files, GuestImages,
    GuestKernel, GENERIC_61,
};
use std::path::{Path, PathBuf};

/// The `/init` of every network guest.
pub const NET_INIT: &str = include_str!("../../../examples/initramfs/net-init");

/// Which build of Debian's 6.1 kernel a network guest runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// `-cloud-arm64`: virtio-net only.
    Cloud,
    /// `-arm64`: virtio-net, `e1000e` and QEMU's `usb-net` (CDC Ethernet on xHCI).
    Generic,
}

impl Flavour {
    /// The modules `/init` loads (dependencies are added and ordered by
    /// [`kernel_modules`]; built-in ones are reported as such).
    pub fn modules(self) -> &'static [&'static str] {
        match self {
            Flavour::Cloud => &["virtio_net", "virtio_pci"],
            // usb-net offers an RNDIS and a CDC-ECM configuration; cdc_ether binds the latter.
            Flavour::Generic => &[
                "virtio_net",
                "virtio_pci",
                "e1000e",
                "xhci_pci",
                "cdc_ether",
            ],
        }
    }

    fn series(self) -> &'static str {
        match self {
            Flavour::Cloud => "6.1",
            Flavour::Generic => GENERIC_61,
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Flavour::Cloud => "cloud",
            Flavour::Generic => "generic",
        }
    }
}

/// A built network guest.
#[derive(Clone, Debug)]
pub struct NetGuest {
    /// Its kernel.
    pub kernel: GuestKernel,
    /// Its initramfs (gzip'd newc cpio).
    pub initramfs: PathBuf,
    /// The lines `/init` prints while it loads the modules, in order.
    pub module_lines: Vec<String>,
}

/// Where [`net_guest`] writes the initramfs of `flavour` (the `examples/vms/net-*.toml`
/// files name the cloud one).
pub fn initramfs_path(flavour: Flavour) -> PathBuf {
    crate::build::workspace_root()
        .join("target/net-guest")
        .join(format!("initramfs-{}.cpio.gz", flavour.tag()))
}

/// Builds `examples/netbench` and the initramfs of `flavour` at [`initramfs_path`]
/// (rewritten only when its bytes change), fetching the generic kernel on first use.
pub fn net_guest(images: &mut GuestImages, flavour: Flavour) -> Result<NetGuest, String> {
    let kernel = match flavour {
        Flavour::Cloud => images
            .kernel("6.1")
            .ok_or("no 6.1 kernel in the guest cache")?
            .clone(),
        Flavour::Generic => ensure_generic_61(images)?,
    };
    let netbench = crate::build::netbench()?;
    let out = initramfs_path(flavour);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let modules = flavour.modules();
    write_initramfs_with_modules_and_files(
        images,
        flavour.series(),
        modules,
        &[("bin/netbench", Path::new(&netbench), 0o755)],
        NET_INIT,
        &out,
    )?;
    let module_lines = kernel_modules(images, flavour.series(), modules)?.load_lines("[initramfs]");
    Ok(NetGuest {
        kernel,
        initramfs: out,
        module_lines,
    })
}

/// `cargo xtask guest net [cloud|generic]`: builds the network guest and prints its files.
pub fn cmd(args: &[&str]) -> Result<(), String> {
    let flavour = match args {
        [] | ["cloud"] => Flavour::Cloud,
        ["generic"] => Flavour::Generic,
        _ => return Err("usage: cargo xtask guest net [cloud|generic]".into()),
    };
    let mut images = super::ensure()?;
    let g = net_guest(&mut images, flavour)?;
    println!(
        "kernel    {} ({})",
        g.kernel.image.display(),
        g.kernel.release
    );
    println!("initramfs {}", g.initramfs.display());
    for l in &g.module_lines {
        println!("  {l}");
    }
    Ok(())
}
