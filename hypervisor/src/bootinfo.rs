//! What the boot loader tells the hypervisor in the device tree it passes in x0 (the boot
//! handoff contract, docs/ARCHITECTURE.md "Boot"): RAM (`/memory*` nodes), what is not RAM
//! for the hypervisor (`/reserved-memory` children, the FDT memory-reservation block, the
//! blob itself, the modules), and `/chosen`'s `hv,acpi-rsdp`, `hv,memory-source` and
//! modules (`module@ADDR` nodes: a VM TOML file or a VM image).
//!
//! Then [`plan_ram`] turns that into the RAM the hypervisor uses, checked against the board
//! KDL's `memory` (the expectation): a different size is a warning naming the KDL node, RAM
//! that does not hold the hypervisor's own region is refused.
//!
//! The blob comes from outside the hypervisor, so nothing here may panic on it: the
//! flattened-tree walker below checks every offset and length and returns a
//! [`DtbError`] instead (the `fdt` crate asserts on a malformed structure block, which
//! would stop the hypervisor before its console is up).
#![deny(unsafe_code)]

use crate::platform::{FromFirmware, MemoryDesc};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;
/// The header's size (version 17).
pub const HEADER_SIZE: usize = 40;
/// The largest blob accepted (Linux's `MAX_FDT_SIZE`).
pub const MAX_DTB_SIZE: usize = 2 << 20;
/// Nodes deeper than this are refused (a real tree is a handful of levels deep).
const MAX_DEPTH: usize = 32;

/// Why a device tree blob was not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DtbError {
    /// Shorter than its header or than `totalsize`.
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes there are.
        have: usize,
    },
    /// The magic number is not 0xd00dfeed.
    BadMagic(u32),
    /// x0 is not 8-byte aligned (the boot protocol requires it).
    Misaligned(u64),
    /// `totalsize` larger than [`MAX_DTB_SIZE`].
    TooLarge(usize),
    /// `last_comp_version` newer than 17 (the format this reads).
    Version(u32),
    /// A block (structure, strings, reservations) lies outside the blob.
    BlockOutside(&'static str),
    /// The structure block is malformed at this offset.
    Structure {
        /// Offset into the structure block.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// A property is malformed (wrong length, bad cell counts, not a string).
    Property {
        /// Node path.
        node: String,
        /// Property name.
        prop: &'static str,
        /// What is wrong.
        what: String,
    },
}

impl fmt::Display for DtbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { need, have } => {
                write!(f, "truncated: needs {need} bytes, has {have}")
            }
            Self::BadMagic(m) => {
                write!(f, "no device tree there (magic {m:#010x}, want 0xd00dfeed)")
            }
            Self::Misaligned(pa) => write!(
                f,
                "{} is not 8-byte aligned, as booting.rst requires",
                hex(*pa)
            ),
            Self::TooLarge(n) => write!(
                f,
                "totalsize {n} bytes is larger than the {} MiB a device tree may have",
                MAX_DTB_SIZE >> 20
            ),
            Self::Version(v) => write!(f, "format version {v} is newer than the 17 this reads"),
            Self::BlockOutside(b) => write!(f, "the {b} block lies outside the blob"),
            Self::Structure { offset, what } => {
                write!(f, "malformed structure block at offset {offset:#x}: {what}")
            }
            Self::Property { node, prop, what } => write!(f, "{node}: property `{prop}`: {what}"),
        }
    }
}

/// A node of the flattened tree: its name, depth, parent and raw properties.
#[derive(Debug)]
struct Node<'a> {
    name: &'a str,
    parent: Option<usize>,
    props: Vec<(&'a str, &'a [u8])>,
}

impl<'a> Node<'a> {
    fn prop(&self, name: &str) -> Option<&'a [u8]> {
        self.props.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(((be32(b, at)? as u64) << 32) | be32(b, at.checked_add(4)?)? as u64)
}

/// The NUL-terminated string at the start of `b`, and its length with the NUL.
fn cstr(b: &[u8]) -> Option<(&str, usize)> {
    let end = b.iter().position(|&c| c == 0)?;
    Some((core::str::from_utf8(&b[..end]).ok()?, end + 1))
}

/// A parsed blob: the header's blocks and every node.
struct Tree<'a> {
    nodes: Vec<Node<'a>>,
    reservations: Vec<(u64, u64)>,
}

impl<'a> Tree<'a> {
    fn parse(blob: &'a [u8]) -> Result<Self, DtbError> {
        let have = blob.len();
        if have < HEADER_SIZE {
            return Err(DtbError::Truncated {
                need: HEADER_SIZE,
                have,
            });
        }
        let h = |i: usize| be32(blob, i * 4).unwrap_or(0);
        if h(0) != FDT_MAGIC {
            return Err(DtbError::BadMagic(h(0)));
        }
        let total = h(1) as usize;
        if total > MAX_DTB_SIZE {
            return Err(DtbError::TooLarge(total));
        }
        if total > have || total < HEADER_SIZE {
            return Err(DtbError::Truncated { need: total, have });
        }
        let blob = &blob[..total];
        if h(6) > 17 {
            return Err(DtbError::Version(h(6)));
        }
        let block = |off: u32, size: u32, what| {
            let (off, size) = (off as usize, size as usize);
            off.checked_add(size)
                .filter(|&end| end <= total)
                .map(|end| &blob[off..end])
                .ok_or(DtbError::BlockOutside(what))
        };
        let structure = block(h(2), h(9), "structure")?;
        let strings = block(h(3), h(8), "strings")?;
        // Memory reservations: (address, size) pairs up to a (0, 0) pair.
        let mut reservations = Vec::new();
        let mut at = h(4) as usize;
        loop {
            let (Some(addr), Some(size)) = (be64(blob, at), be64(blob, at.saturating_add(8)))
            else {
                return Err(DtbError::BlockOutside("memory reservation"));
            };
            if addr == 0 && size == 0 {
                break;
            }
            reservations.push((addr, size));
            at += 16;
        }
        let nodes = Self::walk(structure, strings)?;
        Ok(Self {
            nodes,
            reservations,
        })
    }

    fn walk(s: &'a [u8], strings: &'a [u8]) -> Result<Vec<Node<'a>>, DtbError> {
        let bad = |offset, what| Err(DtbError::Structure { offset, what });
        let mut nodes: Vec<Node<'a>> = Vec::new();
        let mut stack: Vec<usize> = Vec::new();
        let mut at = 0usize;
        loop {
            let Some(token) = be32(s, at) else {
                return bad(at, "ends without FDT_END");
            };
            let tok_at = at;
            at += 4;
            match token {
                FDT_BEGIN_NODE => {
                    let Some((name, len)) = s.get(at..).and_then(cstr) else {
                        return bad(tok_at, "node name is not a NUL-terminated UTF-8 string");
                    };
                    at = (at + len + 3) & !3;
                    if stack.is_empty() && !nodes.is_empty() {
                        return bad(tok_at, "a second root node");
                    }
                    if stack.len() >= MAX_DEPTH {
                        return bad(tok_at, "nodes nested too deep");
                    }
                    nodes.push(Node {
                        name,
                        parent: stack.last().copied(),
                        props: Vec::new(),
                    });
                    stack.push(nodes.len() - 1);
                }
                FDT_END_NODE => {
                    if stack.pop().is_none() {
                        return bad(tok_at, "FDT_END_NODE without a node");
                    }
                }
                FDT_PROP => {
                    let (Some(len), Some(nameoff)) = (be32(s, at), be32(s, at + 4)) else {
                        return bad(tok_at, "property header cut short");
                    };
                    at += 8;
                    let Some(&node) = stack.last() else {
                        return bad(tok_at, "a property outside any node");
                    };
                    let Some(value) = at.checked_add(len as usize).and_then(|end| s.get(at..end))
                    else {
                        return bad(tok_at, "property value runs past the structure block");
                    };
                    let Some((name, _)) = strings.get(nameoff as usize..).and_then(cstr) else {
                        return bad(tok_at, "property name is not in the strings block");
                    };
                    nodes[node].props.push((name, value));
                    at = (at + len as usize + 3) & !3;
                }
                FDT_NOP => {}
                FDT_END => {
                    if !stack.is_empty() {
                        return bad(tok_at, "FDT_END inside a node");
                    }
                    if nodes.is_empty() {
                        return bad(tok_at, "no root node");
                    }
                    return Ok(nodes);
                }
                _ => return bad(tok_at, "unknown token"),
            }
        }
    }

    fn path(&self, i: usize) -> String {
        let mut parts = Vec::new();
        let mut cur = Some(i);
        while let Some(n) = cur {
            parts.push(self.nodes[n].name);
            cur = self.nodes[n].parent;
        }
        let mut p = String::new();
        for part in parts.iter().rev().skip(1) {
            p.push('/');
            p.push_str(part);
        }
        if p.is_empty() {
            p.push('/');
        }
        p
    }

    fn children(&self, parent: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(move |&i| self.nodes[i].parent == Some(parent))
    }

    fn child(&self, parent: usize, name: &str) -> Option<usize> {
        self.children(parent).find(|&i| self.nodes[i].name == name)
    }

    fn prop_err(&self, node: usize, prop: &'static str, what: String) -> DtbError {
        DtbError::Property {
            node: self.path(node),
            prop,
            what,
        }
    }

    /// `#address-cells`/`#size-cells` of `node` (for its children's `reg`), defaults 2/1.
    fn cells(&self, node: usize) -> Result<(u32, u32), DtbError> {
        let get = |prop: &'static str, default: u32| match self.nodes[node].prop(prop) {
            None => Ok(default),
            Some(v) => match be32(v, 0) {
                Some(n @ 1..=2) if v.len() == 4 => Ok(n),
                Some(0) if prop == "#size-cells" && v.len() == 4 => Ok(0),
                _ => Err(self.prop_err(
                    node,
                    prop,
                    format!("{v:02x?}: only 1 or 2 cells (one 32-bit value) are supported"),
                )),
            },
        };
        Ok((get("#address-cells", 2)?, get("#size-cells", 1)?))
    }

    /// `reg` of `node` as (address, size) pairs with its parent's cell counts.
    fn reg(&self, node: usize) -> Result<Option<Vec<(u64, u64)>>, DtbError> {
        let Some(v) = self.nodes[node].prop("reg") else {
            return Ok(None);
        };
        let parent = self.nodes[node].parent.unwrap_or(0);
        let (ac, sc) = self.cells(parent)?;
        let stride = ((ac + sc) * 4) as usize;
        if v.is_empty() || v.len() % stride != 0 {
            return Err(self.prop_err(
                node,
                "reg",
                format!(
                    "{} bytes is not a whole number of ({ac} address + {sc} size) cells",
                    v.len()
                ),
            ));
        }
        let read = |at: usize, cells: u32| -> u64 {
            match cells {
                1 => be32(v, at).unwrap_or(0) as u64,
                2 => be64(v, at).unwrap_or(0),
                _ => 0,
            }
        };
        let mut out = Vec::new();
        for at in (0..v.len()).step_by(stride) {
            let addr = read(at, ac);
            let size = read(at + ac as usize * 4, sc);
            if addr.checked_add(size).is_none() {
                return Err(self.prop_err(
                    node,
                    "reg",
                    format!("{addr:#x} + {size:#x} runs past the end of the address space"),
                ));
            }
            out.push((addr, size));
        }
        Ok(Some(out))
    }

    fn string(&self, node: usize, prop: &'static str) -> Result<Option<&'a str>, DtbError> {
        match self.nodes[node].prop(prop) {
            None => Ok(None),
            Some(v) => match cstr(v) {
                Some((s, _)) => Ok(Some(s)),
                None => Err(self.prop_err(node, prop, "not a NUL-terminated string".into())),
            },
        }
    }

    fn strings(&self, node: usize, prop: &'static str) -> Vec<&'a str> {
        let mut out = Vec::new();
        let mut rest = self.nodes[node].prop(prop).unwrap_or(&[]);
        while let Some((s, len)) = cstr(rest) {
            out.push(s);
            rest = &rest[len..];
        }
        out
    }
}

/// A RAM region the firmware describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirmwareRam {
    /// The memory node's name (`memory@40000000`).
    pub node_name: String,
    /// Physical base.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
    /// The node's `numa-node-id`, if it has one.
    pub numa_node: Option<u32>,
}

/// What a module holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModuleKind {
    /// `compatible = "hv,vm-config"`: a VM TOML file (one or more `[[vm]]`).
    VmConfig,
    /// `compatible = "hv,vm-image"`: an image, named by `hv,path` as the TOML writes it.
    VmImage {
        /// `hv,path`.
        path: String,
    },
    /// Another `compatible` (kept out of RAM, otherwise unused).
    Other(String),
}

impl fmt::Display for ModuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::VmConfig => f.write_str("hv,vm-config"),
            Self::VmImage { path } => write!(f, "hv,vm-image \"{path}\""),
            Self::Other(c) => write!(f, "\"{c}\" (not used)"),
        }
    }
}

/// A module the loader placed in memory for the hypervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// The node's name (`module@48000000`).
    pub node_name: String,
    /// Physical base.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
    /// What it holds.
    pub kind: ModuleKind,
}

/// Where the loader says the RAM description came from (`/chosen/hv,memory-source`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemorySource {
    /// Absent: the device tree's own `/memory` nodes.
    DeviceTree,
    /// `"uefi"`: the UEFI memory map, written into the device tree by the UEFI loader.
    Uefi,
    /// Another value, kept as written.
    Other(String),
}

impl fmt::Display for MemorySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DeviceTree => f.write_str("the device tree"),
            Self::Uefi => f.write_str("the UEFI memory map"),
            Self::Other(s) => write!(f, "`{s}` (per the device tree)"),
        }
    }
}

/// Everything the hypervisor takes from the loader's device tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootInfo {
    /// Where the blob is and its `totalsize`.
    pub dtb: (u64, u64),
    /// RAM, as the `/memory*` nodes give it.
    pub ram: Vec<FirmwareRam>,
    /// Not RAM for the hypervisor: the reservation block and `/reserved-memory` children.
    pub reserved: Vec<(u64, u64)>,
    /// `/chosen/hv,acpi-rsdp`.
    pub acpi_rsdp: Option<u64>,
    /// `/chosen/hv,memory-source`.
    pub memory_source: MemorySource,
    /// `/chosen/module@*`.
    pub modules: Vec<Module>,
}

impl BootInfo {
    /// Reads the blob `blob`, which the loader placed at physical address `pa`.
    pub fn parse(blob: &[u8], pa: u64) -> Result<Self, DtbError> {
        let tree = Tree::parse(blob)?;
        let total = be32(blob, 4).unwrap_or(0) as u64;
        let root = 0;
        let mut ram = Vec::new();
        for i in tree.children(root) {
            let name = tree.nodes[i].name;
            if name != "memory" && !name.starts_with("memory@") {
                continue;
            }
            let numa_node = match tree.nodes[i].prop("numa-node-id") {
                None => None,
                Some(v) if v.len() == 4 => be32(v, 0),
                Some(v) => {
                    return Err(tree.prop_err(
                        i,
                        "numa-node-id",
                        format!("{} bytes, want one 32-bit cell", v.len()),
                    ))
                }
            };
            for (base, size) in tree.reg(i)?.unwrap_or_default() {
                if size > 0 {
                    ram.push(FirmwareRam {
                        node_name: name.to_string(),
                        base,
                        size,
                        numa_node,
                    });
                }
            }
        }
        let mut reserved = tree.reservations.clone();
        if let Some(rm) = tree.child(root, "reserved-memory") {
            for c in tree.children(rm) {
                reserved.extend(tree.reg(c)?.unwrap_or_default());
            }
        }
        let mut acpi_rsdp = None;
        let mut memory_source = MemorySource::DeviceTree;
        let mut modules = Vec::new();
        if let Some(chosen) = tree.child(root, "chosen") {
            if let Some(v) = tree.nodes[chosen].prop("hv,acpi-rsdp") {
                acpi_rsdp = match v.len() {
                    8 => be64(v, 0),
                    _ => {
                        return Err(tree.prop_err(
                            chosen,
                            "hv,acpi-rsdp",
                            format!("{} bytes, want <hi lo> (two 32-bit cells)", v.len()),
                        ))
                    }
                };
            }
            memory_source = match tree.string(chosen, "hv,memory-source")? {
                None | Some("device tree") => MemorySource::DeviceTree,
                Some("uefi") => MemorySource::Uefi,
                Some(other) => MemorySource::Other(other.to_string()),
            };
            for m in tree.children(chosen) {
                let name = tree.nodes[m].name;
                if !name.starts_with("module@") && name != "module" {
                    continue;
                }
                let regs = tree.reg(m)?.unwrap_or_default();
                let [(base, size)] = regs[..] else {
                    return Err(tree.prop_err(
                        m,
                        "reg",
                        format!("{} ranges, a module has exactly one", regs.len()),
                    ));
                };
                let compat = tree.strings(m, "compatible");
                let kind = if compat.contains(&"hv,vm-config") {
                    ModuleKind::VmConfig
                } else if compat.contains(&"hv,vm-image") {
                    match tree.string(m, "hv,path")? {
                        Some(p) if !p.is_empty() => ModuleKind::VmImage { path: p.into() },
                        _ => return Err(tree.prop_err(
                            m,
                            "hv,path",
                            "missing: an hv,vm-image module needs the path the VM file names it by"
                                .into(),
                        )),
                    }
                } else {
                    ModuleKind::Other(compat.first().copied().unwrap_or("").to_string())
                };
                modules.push(Module {
                    node_name: name.to_string(),
                    base,
                    size,
                    kind,
                });
            }
        }
        Ok(Self {
            dtb: (pa, total),
            ram,
            reserved,
            acpi_rsdp,
            memory_source,
            modules,
        })
    }

    /// The module of kind `hv,vm-image` whose `hv,path` is `path` (a leading `/` and
    /// case are ignored, as on the datastore).
    pub fn image_module(&self, path: &str) -> Option<&Module> {
        let want = path.trim_start_matches('/');
        self.modules.iter().find(|m| {
            matches!(&m.kind, ModuleKind::VmImage { path } if path.trim_start_matches('/').eq_ignore_ascii_case(want))
        })
    }
}

/// Reads the `totalsize` of the blob whose first [`HEADER_SIZE`] bytes are `header`, after
/// checking its magic and size: how many bytes the caller may then map and pass to
/// [`BootInfo::parse`].
pub fn dtb_total_size(header: &[u8]) -> Result<usize, DtbError> {
    let magic = be32(header, 0).ok_or(DtbError::Truncated {
        need: HEADER_SIZE,
        have: header.len(),
    })?;
    if magic != FDT_MAGIC {
        return Err(DtbError::BadMagic(magic));
    }
    let total = be32(header, 4).unwrap_or(0) as usize;
    if total > MAX_DTB_SIZE {
        return Err(DtbError::TooLarge(total));
    }
    if total < HEADER_SIZE {
        return Err(DtbError::Truncated {
            need: HEADER_SIZE,
            have: total,
        });
    }
    Ok(total)
}

/// The RAM the hypervisor uses when the firmware described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RamPlan {
    /// The firmware's RAM regions with their NUMA nodes (for the EL2 map and the pool).
    pub regions: Vec<MemoryDesc>,
    /// Ranges to keep out of the pool: reservations, the DTB, the modules, the
    /// hypervisor's region and the build-time staging area.
    pub reserved: Vec<(u64, u64)>,
    /// Lines for the banner: what the KDL said and what the firmware says.
    pub report: Vec<String>,
    /// Set when the firmware's RAM differs from the KDL's: the warning to print.
    pub warning: Option<String>,
}

/// Why the firmware's RAM cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RamError {
    /// The device tree has no `/memory` node with a non-empty `reg`.
    NoRam,
    /// The hypervisor's own region is not inside the firmware's RAM: refused.
    HypervisorOutsideRam {
        /// The region.
        region: (u64, u64),
        /// The firmware's RAM, for the message.
        ram: String,
    },
    /// The build-time VM images' staging area is not inside the firmware's RAM: refused
    /// (the loader could not have put them there).
    StagingOutsideRam {
        /// The staging area.
        region: (u64, u64),
        /// The firmware's RAM, for the message.
        ram: String,
    },
}

impl fmt::Display for RamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRam => f.write_str("the device tree describes no RAM (no /memory node with a reg)"),
            Self::HypervisorOutsideRam { region, ram } => write!(
                f,
                "the hypervisor's region {}..{} is not inside the RAM the firmware describes ({ram}): \
                 the loader placed the image outside RAM, or the device tree's /memory nodes are wrong; refusing to go on",
                hex(region.0),
                hex(region.0.saturating_add(region.1))
            ),
            Self::StagingOutsideRam { region, ram } => write!(
                f,
                "the build-time VM images' staging area {}..{} is not inside the RAM the firmware describes ({ram}): \
                 the board KDL's `hypervisor load=` is too close to the end of this machine's RAM; refusing to go on",
                hex(region.0),
                hex(region.0.saturating_add(region.1))
            ),
        }
    }
}

/// `0x4000_0000`: hexadecimal with a `_` every four digits, as the KDL writes addresses.
pub fn hex(v: u64) -> String {
    let digits = format!("{v:x}");
    let mut out = String::from("0x");
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 4 == 0 {
            out.push('_');
        }
        out.push(c);
    }
    out
}

/// `3 GiB`, `512 MiB`, `4 KiB` or bytes: the largest unit that divides `v`.
pub fn size(v: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if v >= unit && v.is_multiple_of(unit) {
            return format!("{} {name}", v / unit);
        }
    }
    format!("{v} bytes")
}

/// Turns the firmware's RAM into the hypervisor's, checked against the KDL's `kdl` memory.
/// `hv` is the hypervisor's region at run time (`[load address, + image_size)`) and
/// `staging` the build-time VM table's staging area (base, size).
pub fn plan_ram(
    info: &BootInfo,
    kdl: &[MemoryDesc],
    hv: (u64, u64),
    staging: (u64, u64),
) -> Result<RamPlan, RamError> {
    if info.ram.is_empty() {
        return Err(RamError::NoRam);
    }
    let describe = |r: &[(u64, u64)]| {
        r.iter()
            .map(|&(b, s)| format!("{} at {}", size(s), hex(b)))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    let fw: Vec<(u64, u64)> = info.ram.iter().map(|r| (r.base, r.size)).collect();
    let hv_end = hv.0.saturating_add(hv.1);
    if !fw
        .iter()
        .any(|&(b, s)| b <= hv.0 && hv_end <= b.saturating_add(s))
    {
        return Err(RamError::HypervisorOutsideRam {
            region: hv,
            ram: describe(&fw),
        });
    }
    let regions: Vec<MemoryDesc> = info
        .ram
        .iter()
        .map(|r| {
            let node = r.numa_node.unwrap_or_else(|| {
                kdl.iter()
                    .find(|k| match k.from_firmware {
                        FromFirmware::Nothing => k.base <= r.base && r.base - k.base < k.size,
                        // Sized by the firmware: RAM from its base on.
                        FromFirmware::Size => k.base <= r.base,
                        FromFirmware::BaseAndSize => false,
                    })
                    .map_or(0, |k| k.numa_node)
            });
            MemoryDesc {
                name: Box::leak(r.node_name.clone().into_boxed_str()),
                base: r.base,
                size: r.size,
                numa_node: node,
                from_firmware: FromFirmware::Nothing,
            }
        })
        .collect();
    let mut reserved = info.reserved.clone();
    reserved.push(info.dtb);
    reserved.extend(info.modules.iter().map(|m| (m.base, m.size)));
    reserved.push(hv);
    if staging.1 > 0 {
        reserved.push(staging);
    }
    if staging.1 > 0 {
        let staging_end = staging.0.saturating_add(staging.1);
        if !fw
            .iter()
            .any(|&(b, s)| b <= staging.0 && staging_end <= b.saturating_add(s))
        {
            return Err(RamError::StagingOutsideRam {
                region: staging,
                ram: describe(&fw),
            });
        }
    }
    let fw_total: u64 = fw.iter().map(|r| r.1).sum();
    let names = kdl
        .iter()
        .map(|k| format!("\"{}\"", k.name))
        .collect::<Vec<_>>()
        .join(" + ");
    let mut report = Vec::new();
    let ram_line = format!(
        "RAM from {}: {} ({})",
        info.memory_source,
        size(fw_total),
        describe(&fw)
    );
    let warning = if kdl.iter().all(|k| k.from_firmware == FromFirmware::Nothing) {
        let kdl_ranges: Vec<(u64, u64)> = kdl.iter().map(|k| (k.base, k.size)).collect();
        let kdl_total: u64 = kdl.iter().map(|k| k.size).sum();
        report.push(format!(
            "board KDL memory {names}: {} ({})",
            size(kdl_total),
            describe(&kdl_ranges)
        ));
        if fw_total != kdl_total {
            Some(format!(
                "board KDL memory {names}: {}, {} says {}; using {}",
                size(kdl_total),
                info.memory_source,
                describe(&fw),
                info.memory_source
            ))
        } else if fw != kdl_ranges {
            Some(format!(
                "board KDL memory {names}: {}, {} puts it at {}; using {}",
                describe(&kdl_ranges),
                info.memory_source,
                describe(&fw),
                info.memory_source
            ))
        } else {
            None
        }
    } else {
        // `from="firmware"`: the firmware's RAM is the fact; what the KDL knows (a base) is
        // compared with it.
        let kdl_said: Vec<String> = kdl
            .iter()
            .map(|k| match k.from_firmware {
                FromFirmware::Nothing => format!("{} at {}", size(k.size), hex(k.base)),
                FromFirmware::Size => format!("at {}, size from the firmware", hex(k.base)),
                FromFirmware::BaseAndSize => "base and size from the firmware".into(),
            })
            .collect();
        report.push(format!(
            "board KDL memory {names}: {}",
            kdl_said.join(" + ")
        ));
        kdl.iter()
            .find(|k| {
                k.from_firmware != FromFirmware::BaseAndSize && !fw.iter().any(|&(b, _)| b == k.base)
            })
            .map(|k| {
                format!(
                    "board KDL memory \"{}\" starts at {}, but {} has no RAM starting there ({}); using {}",
                    k.name,
                    hex(k.base),
                    info.memory_source,
                    describe(&fw),
                    info.memory_source
                )
            })
    };
    report.push(ram_line);
    Ok(RamPlan {
        regions,
        reserved,
        report,
        warning,
    })
}

/// The RAM the hypervisor settled on at boot, and what to print about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RamChoice {
    /// RAM regions (with NUMA nodes) for the EL2 identity map and the pool.
    pub regions: Vec<MemoryDesc>,
    /// Ranges to keep out of the pool.
    pub reserved: Vec<(u64, u64)>,
    /// The loader's device tree, when it was read and used.
    pub info: Option<BootInfo>,
    /// Banner lines: where RAM came from, what the KDL expected.
    pub lines: Vec<String>,
    /// A difference from the KDL worth a warning.
    pub warning: Option<String>,
    /// Set when the hypervisor must not go on (its region is not in the firmware's RAM).
    pub refusal: Option<String>,
}

/// Decides which RAM the hypervisor uses: the firmware's, when the loader passed a device
/// tree (`dtb`: its address and what reading it gave) that describes RAM holding the
/// hypervisor's region `hv`; the board KDL's `kdl` memory otherwise, with the reason. A
/// device tree whose RAM does not hold the hypervisor is a refusal (the map is then the
/// KDL's, only so that the console can say so).
pub fn choose_ram(
    dtb: Option<(u64, Result<BootInfo, DtbError>)>,
    kdl: &[MemoryDesc],
    hv: (u64, u64),
    staging: (u64, u64),
) -> RamChoice {
    let mut kdl_reserved = alloc::vec![hv];
    if staging.1 > 0 {
        kdl_reserved.push(staging);
    }
    // A board whose KDL leaves RAM to the firmware has nothing to fall back on: it stops
    // rather than guess.
    let from_firmware = kdl
        .iter()
        .find(|k| k.from_firmware != FromFirmware::Nothing);
    let kdl_choice = |why: String, refusal: Option<String>| match from_firmware {
        Some(k) if refusal.is_none() => RamChoice {
            // Only the hypervisor's own region (which it runs from, wherever that is), so
            // that the EL2 map holds the code that prints the refusal; nothing for the pool.
            regions: alloc::vec![MemoryDesc {
                name: "the hypervisor's own region",
                base: hv.0,
                size: hv.1,
                numa_node: 0,
                from_firmware: FromFirmware::Nothing,
            }],
            reserved: kdl_reserved.clone(),
            info: None,
            lines: alloc::vec![format!("no RAM: {why}")],
            warning: None,
            refusal: Some(format!(
                "board KDL memory \"{}\" comes from the firmware (`from=\"firmware\"`), but {why}; \
                 no RAM to use: boot the Image through a loader that passes a device tree \
                 describing RAM (U-Boot `booti`, the UEFI loader, QEMU `-kernel` with the Image)",
                k.name
            )),
        },
        _ => RamChoice {
            regions: kdl.to_vec(),
            reserved: kdl_reserved.clone(),
            info: None,
            lines: alloc::vec![format!("RAM from the board KDL: {why}")],
            warning: None,
            refusal,
        },
    };
    let Some((pa, parsed)) = dtb else {
        return kdl_choice("the loader passed no device tree (x0 = 0)".into(), None);
    };
    let info = match parsed {
        Ok(info) => info,
        Err(e) => {
            return kdl_choice(
                format!("the device tree at {} is not usable: {e}", hex(pa)),
                None,
            )
        }
    };
    match plan_ram(&info, kdl, hv, staging) {
        Ok(plan) => {
            let mut lines = plan.report;
            lines.insert(
                0,
                format!(
                    "device tree from the loader at {} ({} bytes)",
                    hex(pa),
                    info.dtb.1
                ),
            );
            RamChoice {
                regions: plan.regions,
                reserved: plan.reserved,
                info: Some(info),
                lines,
                warning: plan.warning,
                refusal: None,
            }
        }
        Err(e @ RamError::NoRam) => kdl_choice(format!("device tree at {}: {e}", hex(pa)), None),
        Err(e) => kdl_choice(
            format!("device tree at {} refused", hex(pa)),
            Some(e.to_string()),
        ),
    }
}

/// Takes a VM's images from the `hv,vm-image` modules of the boot device tree, by the
/// path the VM file writes (`hv,path`): the image stays where the loader put it (the range
/// is the hypervisor's: kept out of the pool, never written).
pub struct ModuleImages<'a> {
    /// The boot device tree's content.
    pub info: &'a BootInfo,
}

impl crate::config::define::ImageLoader for ModuleImages<'_> {
    fn load(&mut self, path: &str) -> Result<crate::config::ImageDesc, String> {
        let m = self.info.image_module(path).ok_or_else(|| {
            let have: Vec<String> = self
                .info
                .modules
                .iter()
                .filter_map(|m| match &m.kind {
                    ModuleKind::VmImage { path } => Some(format!("\"{path}\"")),
                    _ => None,
                })
                .collect();
            format!(
                "no hv,vm-image module has hv,path \"{path}\" (the loader passed {})",
                if have.is_empty() {
                    "none".to_string()
                } else {
                    have.join(", ")
                }
            )
        })?;
        Ok(crate::config::ImageDesc {
            path: "",
            staging_base: m.base,
            size: m.size,
        })
    }
}

/// What defining the VMs of one `hv,vm-config` module gave.
#[derive(Debug)]
pub struct ModuleVms {
    /// The module's node name.
    pub module: String,
    /// Each VM of the file, or why the whole file was refused (or could not be read).
    pub vms: Result<Vec<crate::config::define::FileVm>, String>,
    /// The file's `[console] escape` (the switch key), if it has one and was not refused.
    pub console_escape: Option<u8>,
}

/// Defines the VMs of every `hv,vm-config` module of `info`, their images taken from its
/// `hv,vm-image` modules ([`ModuleImages`]); `bytes` reads a module's content.
pub fn define_modules<'m>(
    info: &BootInfo,
    facts: &dyn crate::config::define::BoardFacts,
    bytes: impl Fn(&Module) -> Result<&'m [u8], String>,
) -> Vec<ModuleVms> {
    info.modules
        .iter()
        .filter(|m| m.kind == ModuleKind::VmConfig)
        .map(|m| {
            let mut console_escape = None;
            let vms = bytes(m).and_then(|b| {
                // A loader may pad the file with NULs up to a page.
                let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
                let text =
                    core::str::from_utf8(&b[..end]).map_err(|e| format!("not UTF-8 text: {e}"))?;
                let vms =
                    crate::config::define::define_file(text, facts, &mut ModuleImages { info })
                        .map_err(|e| e.to_string())?;
                // define_file refused a file whose `[console]` is wrong.
                console_escape = vm_config::parse_host_settings(text)
                    .ok()
                    .and_then(|h| h.console_escape);
                Ok(vms)
            });
            ModuleVms {
                module: m.node_name.clone(),
                vms,
                console_escape,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
