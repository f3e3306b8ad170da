//! A flattened device tree as an indexed tree: properties, phandles, cells, address translation.

use std::collections::HashMap;

/// One node.
#[derive(Debug)]
pub struct Node {
    /// Full path, e.g. `/soc/serial@ff000000`.
    pub path: String,
    /// Node name with unit address.
    pub name: String,
    /// Parent index (`None` for the root).
    pub parent: Option<usize>,
    /// Child indices.
    pub children: Vec<usize>,
    props: Vec<(String, Vec<u8>)>,
}

/// The whole tree; node 0 is the root.
#[derive(Debug)]
pub struct Tree {
    /// Nodes in depth-first order.
    pub nodes: Vec<Node>,
    phandles: HashMap<u32, usize>,
}

impl Tree {
    /// Parses a DTB with the `fdt` crate.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let fdt = fdt::Fdt::new(bytes).map_err(|e| format!("not a valid DTB: {e:?}"))?;
        let root = fdt
            .find_node("/")
            .ok_or("the DTB has no root node; is it a device tree blob (magic d00dfeed)?")?;
        let mut tree = Tree {
            nodes: Vec::new(),
            phandles: HashMap::new(),
        };
        tree.add(root, None);
        for i in 0..tree.nodes.len() {
            for p in ["phandle", "linux,phandle"] {
                if let Some(h) = tree.u32(i, p) {
                    tree.phandles.insert(h, i);
                }
            }
        }
        Ok(tree)
    }

    fn add(&mut self, n: fdt::node::FdtNode<'_, '_>, parent: Option<usize>) -> usize {
        let path = match parent {
            None => "/".to_string(),
            Some(p) if self.nodes[p].path == "/" => format!("/{}", n.name),
            Some(p) => format!("{}/{}", self.nodes[p].path, n.name),
        };
        let idx = self.nodes.len();
        self.nodes.push(Node {
            path,
            name: n.name.to_string(),
            parent,
            children: Vec::new(),
            props: n
                .properties()
                .map(|p| (p.name.to_string(), p.value.to_vec()))
                .collect(),
        });
        for c in n.children() {
            let ci = self.add(c, Some(idx));
            self.nodes[idx].children.push(ci);
        }
        idx
    }

    /// A property's raw bytes.
    pub fn prop(&self, i: usize, name: &str) -> Option<&[u8]> {
        self.nodes[i]
            .props
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// A property as big-endian cells.
    pub fn cells(&self, i: usize, name: &str) -> Option<Vec<u32>> {
        self.prop(i, name).map(|v| {
            v.chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
    }

    /// A one-cell property.
    pub fn u32(&self, i: usize, name: &str) -> Option<u32> {
        self.cells(i, name).and_then(|c| c.first().copied())
    }

    /// A string-list property (`compatible`).
    pub fn strings(&self, i: usize, name: &str) -> Vec<String> {
        self.prop(i, name)
            .map(|v| {
                v.split(|b| *b == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first string of a property.
    pub fn string(&self, i: usize, name: &str) -> Option<String> {
        self.strings(i, name).into_iter().next()
    }

    /// The node a phandle names.
    pub fn by_phandle(&self, h: u32) -> Option<usize> {
        self.phandles.get(&h).copied()
    }

    /// The node at a full path.
    pub fn by_path(&self, path: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.path == path)
    }

    /// `compatible` contains one of `any`.
    pub fn is_compatible(&self, i: usize, any: &[&str]) -> bool {
        self.strings(i, "compatible")
            .iter()
            .any(|c| any.contains(&c.as_str()))
    }

    /// `status` is neither absent nor "okay"/"ok".
    pub fn is_disabled(&self, i: usize) -> bool {
        self.string(i, "status")
            .is_some_and(|s| s != "okay" && s != "ok")
    }

    fn address_cells(&self, i: usize) -> usize {
        self.u32(i, "#address-cells").unwrap_or(2) as usize
    }

    fn size_cells(&self, i: usize) -> usize {
        self.u32(i, "#size-cells").unwrap_or(1) as usize
    }

    /// The `reg` entries of a node in its parent's address space (untranslated).
    pub fn raw_reg(&self, i: usize) -> Vec<(u64, u64)> {
        let Some(p) = self.nodes[i].parent else {
            return Vec::new();
        };
        let (ac, sc) = (self.address_cells(p), self.size_cells(p));
        let cells = self.cells(i, "reg").unwrap_or_default();
        if ac == 0 || ac > 2 || sc > 2 {
            return Vec::new();
        }
        cells
            .chunks_exact(ac + sc)
            .map(|c| (join(&c[..ac]), join(&c[ac..])))
            .collect()
    }

    /// The `reg` entries as CPU physical addresses, through every parent's `ranges`; `None`
    /// when some bus on the way has no `ranges` (an I2C or SPI bus, a PHY on MDIO) or a
    /// window falls outside the ranges.
    pub fn reg(&self, i: usize) -> Option<Vec<(u64, u64)>> {
        let p = self.nodes[i].parent?;
        if self.size_cells(p) == 0 {
            return None;
        }
        self.raw_reg(i)
            .into_iter()
            .map(|(a, s)| self.translate(p, a).map(|a| (a, s)))
            .collect()
    }

    /// Translates an address of bus `bus`'s child space to the root's space.
    pub fn translate(&self, bus: usize, addr: u64) -> Option<u64> {
        let Some(up) = self.nodes[bus].parent else {
            return Some(addr);
        };
        let ranges = self.cells(bus, "ranges")?;
        if ranges.is_empty() {
            return self.translate(up, addr);
        }
        let (cac, pac, sc) = (
            self.address_cells(bus),
            self.address_cells(up),
            self.size_cells(bus),
        );
        if cac > 2 || pac > 2 || sc > 2 {
            return None;
        }
        for r in ranges.chunks_exact(cac + pac + sc) {
            let (child, parent, size) = (
                join(&r[..cac]),
                join(&r[cac..cac + pac]),
                join(&r[cac + pac..]),
            );
            if addr >= child && addr - child < size {
                return self.translate(up, parent + (addr - child));
            }
        }
        None
    }

    /// The interrupt parent of a node (its own `interrupt-parent` or an ancestor's).
    pub fn interrupt_parent(&self, i: usize) -> Option<usize> {
        let mut n = Some(i);
        while let Some(k) = n {
            if let Some(h) = self.u32(k, "interrupt-parent") {
                return self.by_phandle(h);
            }
            n = self.nodes[k].parent;
        }
        None
    }

    /// `(label, path)` pairs of `__symbols__` (DTBs built with `-@`, as Debian's are).
    pub fn symbols(&self) -> Vec<(String, String)> {
        let Some(s) = self.by_path("/__symbols__") else {
            return Vec::new();
        };
        self.nodes[s]
            .props
            .iter()
            .map(|(n, v)| {
                let path = String::from_utf8_lossy(v)
                    .trim_end_matches('\0')
                    .to_string();
                (n.clone(), path)
            })
            .collect()
    }

    /// Resolves an alias (`serial0`) or a path to a node.
    pub fn resolve(&self, alias_or_path: &str) -> Option<usize> {
        if alias_or_path.starts_with('/') {
            return self.by_path(alias_or_path);
        }
        let aliases = self.by_path("/aliases")?;
        let path = self.string(aliases, alias_or_path)?;
        self.by_path(&path)
    }
}

/// One or two cells as a number.
fn join(cells: &[u32]) -> u64 {
    cells.iter().fold(0u64, |a, c| (a << 32) | u64::from(*c))
}
