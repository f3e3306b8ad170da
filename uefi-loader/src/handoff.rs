//! The device tree the loader hands to the hypervisor (`/work/notes/handoff.md`, issue 16):
//! usable RAM as `/memory@…` nodes, the loader's allocations (the hypervisor's region and
//! each module) as `/reserved-memory` children, the blob itself in the memory-reservation
//! block, and `/chosen` with `hv,memory-source = "uefi"`, `hv,acpi-rsdp` and the modules.

use alloc::format;
use alloc::vec::Vec;

/// What a module is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleKind<'a> {
    /// A VM file (`compatible = "hv,vm-config"`).
    VmConfig,
    /// An image a VM file names (`compatible = "hv,vm-image"`), by the path written there.
    VmImage {
        /// The path as the VM file writes it.
        path: &'a str,
    },
}

/// A file the loader put in memory for the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Module<'a> {
    /// Physical address.
    pub addr: u64,
    /// Length in bytes (the file's, not rounded).
    pub size: u64,
    /// What it is.
    pub kind: ModuleKind<'a>,
}

/// Everything the DTB says.
#[derive(Clone, Copy, Debug)]
pub struct Handoff<'a> {
    /// Usable RAM, sorted `(start, size)` ranges.
    pub ram: &'a [(u64, u64)],
    /// The hypervisor's region `(load address, image_size)`.
    pub hypervisor: (u64, u64),
    /// The modules.
    pub modules: &'a [Module<'a>],
    /// Physical address of the ACPI RSDP, if the firmware has one.
    pub rsdp: Option<u64>,
    /// Where the blob itself goes `(address, bytes reserved for it)`.
    pub dtb: (u64, u64),
}

/// Why the DTB could not be written.
#[derive(Debug)]
pub struct DtbError(pub vm_fdt::Error);

impl core::fmt::Display for DtbError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "cannot write the handoff device tree: {}", self.0)
    }
}

impl From<vm_fdt::Error> for DtbError {
    fn from(e: vm_fdt::Error) -> Self {
        Self(e)
    }
}

/// The flattened device tree for `h`.
pub fn write_dtb(h: &Handoff<'_>) -> Result<Vec<u8>, DtbError> {
    let reserve = [vm_fdt::FdtReserveEntry::new(h.dtb.0, h.dtb.1)?];
    let mut w = vm_fdt::FdtWriter::new_with_mem_reserv(&reserve)?;
    let root = w.begin_node("")?;
    w.property_u32("#address-cells", 2)?;
    w.property_u32("#size-cells", 2)?;
    w.property_string("model", "hypervisor UEFI handoff")?;

    for &(start, size) in h.ram {
        let node = w.begin_node(&format!("memory@{start:x}"))?;
        w.property_string("device_type", "memory")?;
        w.property_array_u64("reg", &[start, size])?;
        w.end_node(node)?;
    }

    let rm = w.begin_node("reserved-memory")?;
    w.property_u32("#address-cells", 2)?;
    w.property_u32("#size-cells", 2)?;
    w.property_null("ranges")?;
    let (hv, hv_size) = h.hypervisor;
    let node = w.begin_node(&format!("hypervisor@{hv:x}"))?;
    w.property_array_u64("reg", &[hv, hv_size])?;
    w.property_null("no-map")?;
    w.end_node(node)?;
    for m in h.modules {
        let node = w.begin_node(&format!("module@{:x}", m.addr))?;
        w.property_array_u64("reg", &[m.addr, m.size])?;
        w.property_null("no-map")?;
        w.end_node(node)?;
    }
    w.end_node(rm)?;

    let chosen = w.begin_node("chosen")?;
    w.property_u32("#address-cells", 2)?;
    w.property_u32("#size-cells", 2)?;
    w.property_string("hv,memory-source", "uefi")?;
    if let Some(rsdp) = h.rsdp {
        w.property_u64("hv,acpi-rsdp", rsdp)?;
    }
    for m in h.modules {
        let node = w.begin_node(&format!("module@{:x}", m.addr))?;
        w.property_array_u64("reg", &[m.addr, m.size])?;
        match m.kind {
            ModuleKind::VmConfig => w.property_string("compatible", "hv,vm-config")?,
            ModuleKind::VmImage { path } => {
                w.property_string("compatible", "hv,vm-image")?;
                w.property_string("hv,path", path)?;
            }
        }
        w.end_node(node)?;
    }
    w.end_node(chosen)?;
    w.end_node(root)?;
    Ok(w.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec;

    fn reg(node: &fdt::node::FdtNode<'_, '_>) -> (u64, u64) {
        let b = node.property("reg").unwrap().value;
        (
            u64::from_be_bytes(b[..8].try_into().unwrap()),
            u64::from_be_bytes(b[8..16].try_into().unwrap()),
        )
    }

    #[test]
    fn the_handoff_tree_says_what_the_contract_says() {
        let ram = [(0x4000_0000, 0x3c00_0000), (0x7c10_0000, 0x100_0000)];
        let modules = [
            Module {
                addr: 0x5000_0000,
                size: 321,
                kind: ModuleKind::VmConfig,
            },
            Module {
                addr: 0x5100_0000,
                size: 0x123_4567,
                kind: ModuleKind::VmImage {
                    path: "IMAGES/Image",
                },
            },
        ];
        let blob = write_dtb(&Handoff {
            ram: &ram,
            hypervisor: (0x4400_0000, 0x200_0000),
            modules: &modules,
            rsdp: Some(0x7bff_0018),
            dtb: (0x4fff_0000, 0x1_0000),
        })
        .unwrap();
        let t = fdt::Fdt::new(&blob).unwrap();
        let mem: vec::Vec<_> = t
            .all_nodes()
            .filter(|n| n.name.starts_with("memory@"))
            .map(|n| {
                assert_eq!(n.property("device_type").unwrap().as_str(), Some("memory"));
                reg(&n)
            })
            .collect();
        assert_eq!(mem, ram);
        let rm = t.find_node("/reserved-memory").unwrap();
        let reserved: vec::Vec<_> = rm.children().map(|n| (n.name, reg(&n))).collect();
        assert_eq!(
            reserved,
            [
                ("hypervisor@44000000", (0x4400_0000, 0x200_0000)),
                ("module@50000000", (0x5000_0000, 321)),
                ("module@51000000", (0x5100_0000, 0x123_4567)),
            ]
        );
        let blocks: vec::Vec<_> = t
            .memory_reservations()
            .map(|r| (r.address() as u64, r.size() as u64))
            .collect();
        assert_eq!(blocks, [(0x4fff_0000, 0x1_0000)]);
        let chosen = t.find_node("/chosen").unwrap();
        assert_eq!(
            chosen.property("hv,memory-source").unwrap().as_str(),
            Some("uefi")
        );
        assert_eq!(
            chosen.property("hv,acpi-rsdp").unwrap().as_usize(),
            Some(0x7bff_0018)
        );
        let mods: vec::Vec<_> = chosen
            .children()
            .map(|n| {
                (
                    n.name,
                    reg(&n),
                    n.property("compatible").unwrap().as_str().unwrap(),
                    n.property("hv,path").and_then(|p| p.as_str()),
                )
            })
            .collect();
        assert_eq!(
            mods,
            [
                ("module@50000000", (0x5000_0000, 321), "hv,vm-config", None),
                (
                    "module@51000000",
                    (0x5100_0000, 0x123_4567),
                    "hv,vm-image",
                    Some("IMAGES/Image")
                ),
            ]
        );
    }

    #[test]
    fn without_an_rsdp_there_is_no_property() {
        let blob = write_dtb(&Handoff {
            ram: &[(0x4000_0000, 0x1000_0000)],
            hypervisor: (0x4400_0000, 0x200_0000),
            modules: &[],
            rsdp: None,
            dtb: (0x4fff_0000, 0x1000),
        })
        .unwrap();
        let t = fdt::Fdt::new(&blob).unwrap();
        assert!(t
            .find_node("/chosen")
            .unwrap()
            .property("hv,acpi-rsdp")
            .is_none());
    }
}
