//! Finding and parsing the tables: every read is bounds-checked, every length and checksum
//! validated before the bytes are trusted.

use alloc::vec;
use alloc::vec::Vec;

use super::{
    AcpiError, AcpiInfo, CpuAffinity, CpuPlace, GicIts, Gicc, Gicd, GicrRange, Gtdt, Madt, Mcfg,
    MemAffinity, PhysRead, Sig, Slit, Spcr, Srat, TimerIrq,
};

/// Largest table read (a 160-CPU MADT is ~13 KiB; a bad length must not become a huge
/// allocation).
pub const MAX_TABLE_LEN: u32 = 1 << 20;
/// Most tables an XSDT/RSDT may list.
const MAX_TABLES: usize = 256;
/// Standard table header.
const HEADER_LEN: usize = 36;

const RSDP: Sig = Sig(*b"RSDP");
const XSDT: Sig = Sig(*b"XSDT");
const RSDT: Sig = Sig(*b"RSDT");
const APIC: Sig = Sig(*b"APIC");
const GTDT: Sig = Sig(*b"GTDT");
const SPCR: Sig = Sig(*b"SPCR");
const MCFG: Sig = Sig(*b"MCFG");
const SRAT: Sig = Sig(*b"SRAT");
const SLIT: Sig = Sig(*b"SLIT");
const PPTT: Sig = Sig(*b"PPTT");

/// A table's bytes, each read bounds-checked; a short table is an [`AcpiError::Entry`].
struct Bytes<'a> {
    sig: Sig,
    b: &'a [u8],
}

impl Bytes<'_> {
    fn arr<const N: usize>(&self, off: usize, what: &'static str) -> Result<[u8; N], AcpiError> {
        off.checked_add(N)
            .and_then(|end| self.b.get(off..end))
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or(AcpiError::Entry {
                table: self.sig,
                offset: off,
                why: what,
            })
    }
    fn u8(&self, off: usize, what: &'static str) -> Result<u8, AcpiError> {
        Ok(self.arr::<1>(off, what)?[0])
    }
    fn u16(&self, off: usize, what: &'static str) -> Result<u16, AcpiError> {
        Ok(u16::from_le_bytes(self.arr(off, what)?))
    }
    fn u32(&self, off: usize, what: &'static str) -> Result<u32, AcpiError> {
        Ok(u32::from_le_bytes(self.arr(off, what)?))
    }
    fn u64(&self, off: usize, what: &'static str) -> Result<u64, AcpiError> {
        Ok(u64::from_le_bytes(self.arr(off, what)?))
    }

    /// The `(type, offset, length)` of each sub-structure from `start` (type and length
    /// bytes first, as in MADT, SRAT and PPTT); a length under 2 or past the end is an
    /// error.
    fn entries(&self, start: usize) -> Result<Vec<(u8, usize, usize)>, AcpiError> {
        let mut out = Vec::new();
        let mut off = start;
        while off < self.b.len() {
            let ty = self.u8(off, "entry type past the end of the table")?;
            let len = usize::from(self.u8(off + 1, "entry length past the end of the table")?);
            if len < 2 {
                return Err(self.bad(off, "entry length under 2 bytes"));
            }
            if off + len > self.b.len() {
                return Err(self.bad(off, "entry runs past the end of the table"));
            }
            out.push((ty, off, len));
            off += len;
        }
        Ok(out)
    }

    fn bad(&self, offset: usize, why: &'static str) -> AcpiError {
        AcpiError::Entry {
            table: self.sig,
            offset,
            why,
        }
    }

    /// The entry at `off` of `len` bytes as its own slice (reads past it fail).
    fn sub(&self, off: usize, len: usize) -> Bytes<'_> {
        Bytes {
            sig: self.sig,
            b: self.b.get(off..off.saturating_add(len)).unwrap_or_default(),
        }
    }
}

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}

fn read_vec(mem: &dyn PhysRead, pa: u64, len: usize) -> Result<Vec<u8>, AcpiError> {
    let mut v = vec![0u8; len];
    mem.read(pa, &mut v)?;
    Ok(v)
}

/// The XSDT/RSDT address and whether it is an XSDT, from a checked RSDP.
fn rsdp(pa: u64, mem: &dyn PhysRead) -> Result<(u8, u64, bool), AcpiError> {
    let mut head = [0u8; 20];
    mem.read(pa, &mut head)?;
    if &head[..8] != b"RSD PTR " {
        return Err(AcpiError::NoRsdp { pa });
    }
    let s = sum(&head);
    if s != 0 {
        return Err(AcpiError::Checksum {
            table: RSDP,
            pa,
            sum: s,
        });
    }
    let revision = head[15];
    let rsdt = u32::from_le_bytes([head[16], head[17], head[18], head[19]]);
    if revision < 2 {
        return Ok((revision, u64::from(rsdt), false));
    }
    let mut ext = [0u8; 36];
    mem.read(pa, &mut ext)?;
    let len = u32::from_le_bytes([ext[20], ext[21], ext[22], ext[23]]);
    if !(36..=4096).contains(&len) {
        return Err(AcpiError::Length {
            table: RSDP,
            pa,
            len: len.into(),
            why: "not between 36 and 4096 bytes",
        });
    }
    let all = read_vec(mem, pa, len as usize)?;
    let s = sum(&all);
    if s != 0 {
        return Err(AcpiError::Checksum {
            table: RSDP,
            pa,
            sum: s,
        });
    }
    let xsdt = u64::from_le_bytes([
        ext[24], ext[25], ext[26], ext[27], ext[28], ext[29], ext[30], ext[31],
    ]);
    if xsdt != 0 {
        Ok((revision, xsdt, true))
    } else {
        Ok((revision, u64::from(rsdt), false))
    }
}

/// The whole table at `pa`: its header's length checked against `min` and
/// [`MAX_TABLE_LEN`], its checksum checked.
fn table(pa: u64, mem: &dyn PhysRead, min: usize) -> Result<(Sig, Vec<u8>), AcpiError> {
    let mut head = [0u8; HEADER_LEN];
    mem.read(pa, &mut head)?;
    let sig = Sig([head[0], head[1], head[2], head[3]]);
    let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let err = |why| AcpiError::Length {
        table: sig,
        pa,
        len: len.into(),
        why,
    };
    if (len as usize) < min.max(HEADER_LEN) {
        return Err(err("shorter than its fixed fields"));
    }
    if len > MAX_TABLE_LEN {
        return Err(err("more than the 1 MiB a table may have here"));
    }
    let bytes = read_vec(mem, pa, len as usize)?;
    let s = sum(&bytes);
    if s != 0 {
        return Err(AcpiError::Checksum {
            table: sig,
            pa,
            sum: s,
        });
    }
    Ok((sig, bytes))
}

/// Minimum lengths of the tables parsed (their fixed fields).
fn min_len(sig: Sig) -> usize {
    match &sig.0 {
        b"APIC" => 44,
        b"GTDT" => 96,
        b"SPCR" => 58,
        b"MCFG" => 44,
        b"SRAT" => 48,
        b"SLIT" => 44,
        _ => HEADER_LEN,
    }
}

/// Finds the XSDT (or RSDT) from the RSDP at `rsdp` and parses the MADT, GTDT, SPCR,
/// MCFG, SRAT, SLIT and PPTT it lists. A table other than these is only named in
/// [`AcpiInfo::tables`] (its signature is read, its contents are not judged). The first of
/// several tables with one signature is used.
pub fn discover(rsdp_pa: u64, mem: &dyn PhysRead) -> Result<AcpiInfo, AcpiError> {
    let (revision, root_pa, xsdt) = rsdp(rsdp_pa, mem)?;
    let expected = if xsdt { XSDT } else { RSDT };
    let (sig, root) = table(root_pa, mem, HEADER_LEN)?;
    if sig != expected {
        return Err(AcpiError::Signature {
            expected,
            found: sig,
            pa: root_pa,
        });
    }
    let width = if xsdt { 8 } else { 4 };
    let body = &root[HEADER_LEN..];
    if !body.len().is_multiple_of(width) {
        return Err(AcpiError::Length {
            table: sig,
            pa: root_pa,
            len: root.len() as u64,
            why: "not a whole number of table pointers",
        });
    }
    if body.len() / width > MAX_TABLES {
        return Err(AcpiError::Length {
            table: sig,
            pa: root_pa,
            len: root.len() as u64,
            why: "listing more than 256 tables",
        });
    }
    let mut info = AcpiInfo {
        revision,
        xsdt,
        ..AcpiInfo::default()
    };
    let mut madt = None;
    for chunk in body.chunks_exact(width) {
        let mut p = [0u8; 8];
        p[..width].copy_from_slice(chunk);
        let pa = u64::from_le_bytes(p);
        let mut head = [0u8; 4];
        mem.read(pa, &mut head)?;
        let sig = Sig(head);
        info.tables.push(sig);
        // Tables this module does not parse are only named; a second table with one
        // signature is ignored (the first is the one an OS would use).
        let seen = info.tables.iter().filter(|s| **s == sig).count() > 1;
        let wanted = [APIC, GTDT, SPCR, MCFG, SRAT, SLIT, PPTT].contains(&sig);
        if seen || !wanted {
            continue;
        }
        let (_, bytes) = table(pa, mem, min_len(sig))?;
        let b = Bytes { sig, b: &bytes };
        match &sig.0 {
            b"APIC" => madt = Some(parse_madt(&b)?),
            b"GTDT" => info.gtdt = Some(parse_gtdt(&b)?),
            b"SPCR" => info.spcr = Some(parse_spcr(&b)?),
            b"MCFG" => info.mcfg = parse_mcfg(&b)?,
            b"SRAT" => info.srat = Some(parse_srat(&b)?),
            b"SLIT" => info.slit = Some(parse_slit(&b)?),
            b"PPTT" => info.pptt = Some(parse_pptt(&b)?),
            _ => {}
        }
    }
    info.madt = madt.ok_or(AcpiError::Missing(expected, APIC))?;
    Ok(info)
}

/// MADT: GICC (0x0b), GICD (0x0c), GICR (0x0e), GIC ITS (0x0f); others skipped by length.
fn parse_madt(t: &Bytes<'_>) -> Result<Madt, AcpiError> {
    let mut m = Madt::default();
    for (ty, off, len) in t.entries(44)? {
        let e = t.sub(off, len);
        match ty {
            0x0b => {
                // ACPI 5.1 GICC is 76 bytes (MPIDR at 68); 6.0 adds 4, 6.3/6.5 more.
                if len < 76 {
                    return Err(t.bad(off, "GICC structure shorter than 76 bytes"));
                }
                let flags = e.u32(12, "GICC flags")?;
                m.cpus.push(Gicc {
                    cpu_interface: e.u32(4, "GICC CPU interface number")?,
                    uid: e.u32(8, "GICC processor UID")?,
                    enabled: flags & 1 != 0,
                    online_capable: flags & (1 << 3) != 0,
                    pmu_gsiv: e.u32(20, "GICC performance interrupt")?,
                    gicc_base: e.u64(32, "GICC physical base")?,
                    gicv_base: e.u64(40, "GICV base")?,
                    gich_base: e.u64(48, "GICH base")?,
                    maintenance_gsiv: e.u32(56, "VGIC maintenance interrupt")?,
                    gicr_base: e.u64(60, "GICR base")?,
                    mpidr: e.u64(68, "MPIDR")?,
                });
            }
            0x0c => {
                if len < 24 {
                    return Err(t.bad(off, "GICD structure shorter than 24 bytes"));
                }
                m.gicd_count += 1;
                let d = Gicd {
                    base: e.u64(8, "GICD base")?,
                    version: e.u8(20, "GICD version")?,
                };
                m.gicd.get_or_insert(d);
            }
            0x0e => {
                if len < 16 {
                    return Err(t.bad(off, "GICR structure shorter than 16 bytes"));
                }
                m.gicr.push(GicrRange {
                    base: e.u64(4, "GICR discovery range base")?,
                    length: e.u32(12, "GICR discovery range length")?,
                });
            }
            0x0f => {
                if len < 20 {
                    return Err(t.bad(off, "GIC ITS structure shorter than 20 bytes"));
                }
                m.its.push(GicIts {
                    id: e.u32(4, "ITS id")?,
                    base: e.u64(8, "ITS base")?,
                });
            }
            _ => {}
        }
    }
    Ok(m)
}

fn timer_irq(t: &Bytes<'_>, off: usize) -> Result<TimerIrq, AcpiError> {
    let flags = t.u32(off + 4, "GTDT timer flags")?;
    Ok(TimerIrq {
        gsiv: t.u32(off, "GTDT timer GSIV")?,
        edge: flags & 1 != 0,
        active_low: flags & 2 != 0,
    })
}

/// GTDT: the four (five from revision 3) per-CPU timer GSIVs and their flags.
fn parse_gtdt(t: &Bytes<'_>) -> Result<Gtdt, AcpiError> {
    let revision = t.u8(8, "GTDT revision")?;
    let el2_virtual = if revision >= 3 && t.b.len() >= 104 {
        Some(timer_irq(t, 96)?)
    } else {
        None
    };
    Ok(Gtdt {
        secure_el1: timer_irq(t, 48)?,
        nonsecure_el1: timer_irq(t, 56)?,
        virtual_el1: timer_irq(t, 64)?,
        el2: timer_irq(t, 72)?,
        el2_virtual,
    })
}

/// SPCR: interface type, base address (a GAS), interrupt.
fn parse_spcr(t: &Bytes<'_>) -> Result<Spcr, AcpiError> {
    let irq_type = t.u8(52, "SPCR interrupt type")?;
    Ok(Spcr {
        interface_type: t.u8(36, "SPCR interface type")?,
        address_space: t.u8(40, "SPCR base address space")?,
        base: t.u64(44, "SPCR base address")?,
        gsiv: if irq_type & (1 << 3) != 0 {
            Some(t.u32(54, "SPCR global system interrupt")?)
        } else {
            None
        },
    })
}

/// MCFG: 16-byte entries after 8 reserved bytes.
fn parse_mcfg(t: &Bytes<'_>) -> Result<Vec<Mcfg>, AcpiError> {
    let body = t.b.len() - 44;
    if !body.is_multiple_of(16) {
        return Err(t.bad(44, "MCFG entries are not a whole number of 16-byte entries"));
    }
    let mut out = Vec::new();
    for i in 0..body / 16 {
        let off = 44 + 16 * i;
        let start = t.u8(off + 10, "MCFG start bus")?;
        let end = t.u8(off + 11, "MCFG end bus")?;
        if end < start {
            return Err(t.bad(off, "MCFG end bus below its start bus"));
        }
        out.push(Mcfg {
            base: t.u64(off, "MCFG ECAM base")?,
            segment: t.u16(off + 8, "MCFG segment")?,
            bus_start: start,
            bus_end: end,
        });
    }
    Ok(out)
}

/// SRAT: memory affinity (1) and GICC affinity (3); others skipped by length.
fn parse_srat(t: &Bytes<'_>) -> Result<Srat, AcpiError> {
    let mut s = Srat::default();
    for (ty, off, len) in t.entries(48)? {
        let e = t.sub(off, len);
        match ty {
            1 => {
                if len < 40 {
                    return Err(t.bad(off, "memory affinity structure shorter than 40 bytes"));
                }
                let lo = |o| e.u32(o, "memory affinity range");
                let base = u64::from(lo(8)?) | (u64::from(lo(12)?) << 32);
                let length = u64::from(lo(16)?) | (u64::from(lo(20)?) << 32);
                let flags = e.u32(28, "memory affinity flags")?;
                s.memory.push(MemAffinity {
                    domain: e.u32(2, "proximity domain")?,
                    base,
                    length,
                    enabled: flags & 1 != 0,
                    hot_pluggable: flags & 2 != 0,
                });
            }
            3 => {
                if len < 18 {
                    return Err(t.bad(off, "GICC affinity structure shorter than 18 bytes"));
                }
                s.cpus.push(CpuAffinity {
                    domain: e.u32(2, "proximity domain")?,
                    uid: e.u32(6, "processor UID")?,
                    enabled: e.u32(10, "GICC affinity flags")? & 1 != 0,
                });
            }
            _ => {}
        }
    }
    Ok(s)
}

/// SLIT: the locality count and its square matrix, which must fit the table exactly.
fn parse_slit(t: &Bytes<'_>) -> Result<Slit, AcpiError> {
    let n = t.u64(36, "SLIT locality count")?;
    let body = (t.b.len() - 44) as u64;
    let cells = n
        .checked_mul(n)
        .ok_or(t.bad(36, "SLIT locality count overflows"))?;
    if cells != body {
        return Err(t.bad(36, "SLIT matrix is not localities x localities bytes"));
    }
    Ok(Slit {
        localities: n as usize,
        distances: t.b[44..].to_vec(),
    })
}

/// A PPTT processor hierarchy node: `(offset, flags, parent offset, uid)`.
type PpttNode = (usize, u32, u32, u32);

/// PPTT: processor hierarchy nodes (type 0); each leaf with a valid processor ID becomes a
/// [`CpuPlace`] by walking its parents to the physical package.
fn parse_pptt(t: &Bytes<'_>) -> Result<Vec<CpuPlace>, AcpiError> {
    const PACKAGE: u32 = 1 << 0;
    const ID_VALID: u32 = 1 << 1;
    const THREAD: u32 = 1 << 2;
    const LEAF: u32 = 1 << 3;
    let mut nodes: Vec<PpttNode> = Vec::new();
    for (ty, off, len) in t.entries(HEADER_LEN)? {
        if ty != 0 {
            continue;
        }
        if len < 20 {
            return Err(t.bad(off, "processor hierarchy node shorter than 20 bytes"));
        }
        let e = t.sub(off, len);
        nodes.push((
            off,
            e.u32(4, "PPTT node flags")?,
            e.u32(8, "PPTT parent")?,
            e.u32(12, "PPTT processor ID")?,
        ));
    }
    let node_at = |off: u32| nodes.iter().find(|n| n.0 == off as usize);
    let has_children = |off: usize| nodes.iter().any(|n| n.2 as usize == off);
    let mut packages: Vec<usize> = Vec::new();
    let mut clusters: Vec<(usize, usize)> = Vec::new();
    let mut out = Vec::new();
    for n in &nodes {
        let (off, flags, _, uid) = *n;
        let leaf = flags & LEAF != 0 || !has_children(off);
        if !leaf || flags & ID_VALID == 0 {
            continue;
        }
        // Walk up to the package; a thread's core is its parent.
        let mut chain = vec![*n];
        let mut cur = *n;
        while cur.1 & PACKAGE == 0 {
            if chain.len() > 16 {
                return Err(t.bad(off, "PPTT parent chain is deeper than 16 or loops"));
            }
            match node_at(cur.2) {
                Some(p) if cur.2 != 0 => {
                    chain.push(*p);
                    cur = *p;
                }
                _ => return Err(t.bad(cur.0, "PPTT node has no physical package above it")),
            }
        }
        let package = cur.0;
        let pkg_index = match packages.iter().position(|&p| p == package) {
            Some(i) => i,
            None => {
                packages.push(package);
                packages.len() - 1
            }
        };
        let thread = flags & THREAD != 0;
        // chain: leaf, [core if thread], [cluster], package. The cluster is the node just
        // below the package, unless that is the core itself.
        let core_depth = usize::from(thread);
        let cluster_index = if chain.len() >= core_depth + 3 {
            let cl = chain[chain.len() - 2].0;
            let in_pkg: Vec<usize> = clusters
                .iter()
                .filter(|(p, _)| *p == package)
                .map(|(_, c)| *c)
                .collect();
            match in_pkg.iter().position(|&c| c == cl) {
                Some(i) => i,
                None => {
                    clusters.push((package, cl));
                    in_pkg.len()
                }
            }
        } else {
            0
        };
        out.push(CpuPlace {
            uid,
            package: pkg_index as u32,
            cluster: cluster_index as u32,
            thread,
        });
    }
    Ok(out)
}
