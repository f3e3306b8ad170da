//! ACPI discovery: what a server's firmware says about the machine (MADT, GTDT, SPCR, MCFG,
//! SRAT, SLIT, PPTT), read through [`PhysRead`] and compared with the board's KDL
//! ([`check`]).
//!
//! The board's KDL stays the statement of what the board is; the tables are the firmware's
//! view of the machine in hand. [`discover`] finds the XSDT (or RSDT) from the RSDP and
//! parses the tables it knows, validating every length and checksum: a bad table is an
//! [`AcpiError`] naming it, never a panic. [`check`] turns each disagreement into a
//! [`Finding`]: [`Severity::Refuse`] where going on would drive hardware at the wrong
//! address (GIC, console), [`Severity::Warn`] where it would not (CPUs, timer PPIs, ECAM,
//! NUMA). Each message names the KDL file and line (from [`BoardDesc::source`]) and the
//! firmware's value. See `docs/acpi.md`.
//!
//! The `acpi` crate (rust-osdev) is not used: its table access goes through an
//! `AcpiHandler` that maps physical memory and hands out raw pointers to it (`unsafe`,
//! which this module may not use, and which host tests and the fuzz target could not fake
//! with plain bytes). Every table here is copied out through [`PhysRead`] and parsed from a
//! byte slice with bounds-checked reads.
#![deny(unsafe_code)]

mod check;
mod parse;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::fmt;

pub use check::{check, Finding, Severity};
pub use parse::{discover, MAX_TABLE_LEN};

use crate::platform::{BoardDesc, MemoryDesc};

/// Reads host-physical memory (the tables the firmware left in RAM).
pub trait PhysRead {
    /// Fills `buf` with the bytes at physical address `pa`, or fails without a partial
    /// read having any meaning (`pa` not RAM, or the range wraps).
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), PhysReadError>;
}

/// [`PhysRead::read`] could not read a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot read {len:#x} bytes at physical address {pa:#x}")]
pub struct PhysReadError {
    /// Start of the range.
    pub pa: u64,
    /// Its length.
    pub len: u64,
}

/// A table signature, shown as text (`APIC`, `XSDT`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sig(pub [u8; 4]);

impl fmt::Display for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            let c = if b.is_ascii_graphic() { b as char } else { '?' };
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sig({self})")
    }
}

/// Why the tables could not be read. Each names the table and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AcpiError {
    /// Memory could not be read.
    #[error("ACPI: {0}")]
    Read(#[from] PhysReadError),
    /// No `RSD PTR ` at the address given.
    #[error(
        "ACPI: no RSDP at {pa:#x} (signature is not `RSD PTR `): the loader passed a wrong address"
    )]
    NoRsdp {
        /// Where it was looked for.
        pa: u64,
    },
    /// A checksum does not sum to zero.
    #[error("ACPI: the {table} at {pa:#x} has a bad checksum (bytes sum to {sum:#04x}, not 0): the table is corrupt")]
    Checksum {
        /// Which table (`RSDP`, `APIC`, ...).
        table: Sig,
        /// Its address.
        pa: u64,
        /// The byte sum.
        sum: u8,
    },
    /// A length field is smaller than the structure or larger than allowed.
    #[error("ACPI: the {table} at {pa:#x} says it is {len} bytes long, {why}")]
    Length {
        /// Which table.
        table: Sig,
        /// Its address.
        pa: u64,
        /// Its length field.
        len: u64,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A table pointer led to a table of another signature.
    #[error("ACPI: the {expected} pointer leads to a table signed `{found}` at {pa:#x}")]
    Signature {
        /// What the pointer should reach.
        expected: Sig,
        /// What is there.
        found: Sig,
        /// Where.
        pa: u64,
    },
    /// A sub-structure does not fit its table.
    #[error("ACPI: {table} entry at offset {offset:#x}: {why}")]
    Entry {
        /// Which table.
        table: Sig,
        /// Offset of the entry in the table.
        offset: usize,
        /// What is wrong.
        why: &'static str,
    },
    /// A table every Arm ACPI system has is missing.
    #[error("ACPI: the firmware's {0} lists no {1} table: without it the machine cannot be checked against the board")]
    Missing(Sig, Sig),
}

/// One CPU from a MADT GICC structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gicc {
    /// ACPI processor UID (what SRAT and PPTT refer to).
    pub uid: u32,
    /// GICv2 CPU interface number.
    pub cpu_interface: u32,
    /// MPIDR affinity (Aff3 39:32, Aff2..Aff0 23:0).
    pub mpidr: u64,
    /// Flags bit 0: the CPU is usable now.
    pub enabled: bool,
    /// Flags bit 3 (ACPI 6.5): the CPU can be brought online later.
    pub online_capable: bool,
    /// PMU overflow GSIV (0: none).
    pub pmu_gsiv: u32,
    /// GICv2 GICC physical base (0 on GICv3).
    pub gicc_base: u64,
    /// GICV base (0: not given).
    pub gicv_base: u64,
    /// GICH base (0: not given).
    pub gich_base: u64,
    /// VGIC maintenance GSIV.
    pub maintenance_gsiv: u32,
    /// This CPU's redistributor (0 when GICR structures describe them instead).
    pub gicr_base: u64,
}

impl Gicc {
    /// Usable now or later.
    pub fn present(&self) -> bool {
        self.enabled || self.online_capable
    }
}

/// The MADT GICD structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gicd {
    /// Physical base.
    pub base: u64,
    /// GIC version: 1..=4, 0 when the firmware does not say.
    pub version: u8,
}

/// A MADT GICR structure: a range of redistributors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GicrRange {
    /// Discovery range base.
    pub base: u64,
    /// Its length in bytes.
    pub length: u32,
}

/// A MADT GIC ITS structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GicIts {
    /// ITS id.
    pub id: u32,
    /// Physical base.
    pub base: u64,
}

/// What the MADT says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Madt {
    /// CPUs in table order.
    pub cpus: Vec<Gicc>,
    /// The distributor (the first, if a broken table has several; `gicd_count` says).
    pub gicd: Option<Gicd>,
    /// Number of GICD structures (exactly one on a sane machine).
    pub gicd_count: usize,
    /// Redistributor ranges (one per socket on multi-socket machines).
    pub gicr: Vec<GicrRange>,
    /// ITSes.
    pub its: Vec<GicIts>,
}

/// A GTDT timer interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerIrq {
    /// GSIV (= INTID for a PPI); 0 when not provided.
    pub gsiv: u32,
    /// Flags bit 0: edge-triggered.
    pub edge: bool,
    /// Flags bit 1: active low.
    pub active_low: bool,
}

/// What the GTDT says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gtdt {
    /// Secure EL1 physical timer.
    pub secure_el1: TimerIrq,
    /// Non-secure EL1 physical timer.
    pub nonsecure_el1: TimerIrq,
    /// EL1 virtual timer.
    pub virtual_el1: TimerIrq,
    /// EL2 physical timer.
    pub el2: TimerIrq,
    /// EL2 virtual timer (GTDT revision 3 and later).
    pub el2_virtual: Option<TimerIrq>,
}

/// What the SPCR says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spcr {
    /// Interface type (0x03 PL011, 0x0e SBSA generic UART, 0x00/0x12 16550, ...).
    pub interface_type: u8,
    /// Address space of the base (0 memory).
    pub address_space: u8,
    /// Register base.
    pub base: u64,
    /// GSIV, if the interrupt type says there is one (bit 3: GIC).
    pub gsiv: Option<u32>,
}

impl Spcr {
    /// The interface type's name.
    pub fn interface_name(&self) -> &'static str {
        match self.interface_type {
            0x00 => "16550",
            0x01 => "16450",
            0x03 => "ARM PL011",
            0x0d => "ARM SBSA 32-bit UART",
            0x0e => "ARM SBSA generic UART",
            0x0f => "ARM DCC",
            0x12 => "16550-compatible",
            _ => "other UART",
        }
    }
}

/// An MCFG entry: one PCI segment's ECAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mcfg {
    /// ECAM base.
    pub base: u64,
    /// PCI segment group.
    pub segment: u16,
    /// First bus.
    pub bus_start: u8,
    /// Last bus.
    pub bus_end: u8,
}

impl Mcfg {
    /// ECAM bytes for the bus range (1 MiB per bus).
    pub fn size(&self) -> u64 {
        (u64::from(self.bus_end.saturating_sub(self.bus_start)) + 1) << 20
    }
}

/// SRAT memory affinity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemAffinity {
    /// Proximity domain.
    pub domain: u32,
    /// Base.
    pub base: u64,
    /// Length.
    pub length: u64,
    /// Flags bit 0.
    pub enabled: bool,
    /// Flags bit 1.
    pub hot_pluggable: bool,
}

/// SRAT GICC affinity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuAffinity {
    /// Proximity domain.
    pub domain: u32,
    /// ACPI processor UID (a MADT GICC's).
    pub uid: u32,
    /// Flags bit 0.
    pub enabled: bool,
}

/// What the SRAT says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Srat {
    /// Memory ranges.
    pub memory: Vec<MemAffinity>,
    /// CPUs.
    pub cpus: Vec<CpuAffinity>,
}

impl Srat {
    /// The distinct proximity domains of enabled entries, ascending.
    pub fn domains(&self) -> Vec<u32> {
        let mut d: Vec<u32> = self
            .memory
            .iter()
            .filter(|m| m.enabled)
            .map(|m| m.domain)
            .chain(self.cpus.iter().filter(|c| c.enabled).map(|c| c.domain))
            .collect();
        d.sort_unstable();
        d.dedup();
        d
    }

    /// The domain of the CPU with processor UID `uid`.
    pub fn cpu_domain(&self, uid: u32) -> Option<u32> {
        self.cpus
            .iter()
            .find(|c| c.enabled && c.uid == uid)
            .map(|c| c.domain)
    }
}

/// The SLIT distance matrix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slit {
    /// Number of localities.
    pub localities: usize,
    /// Row-major `localities * localities` distances (10 = local).
    pub distances: Vec<u8>,
}

impl Slit {
    /// Distance from locality `from` to `to`.
    pub fn distance(&self, from: usize, to: usize) -> Option<u8> {
        if from >= self.localities || to >= self.localities {
            return None;
        }
        self.distances.get(from * self.localities + to).copied()
    }
}

/// One CPU's place in the PPTT hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuPlace {
    /// ACPI processor UID.
    pub uid: u32,
    /// Package (socket) index, in order of first appearance.
    pub package: u32,
    /// Cluster index within the package, in order of first appearance (0 when the core
    /// sits directly under its package).
    pub cluster: u32,
    /// The leaf is a hardware thread.
    pub thread: bool,
}

/// Everything read from the firmware's tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AcpiInfo {
    /// RSDP revision (0: ACPI 1.0, RSDT only; 2: XSDT).
    pub revision: u8,
    /// The tables were listed by an XSDT (else an RSDT).
    pub xsdt: bool,
    /// Signatures of every table listed, in order.
    pub tables: Vec<Sig>,
    /// MADT (always present: [`discover`] fails without one).
    pub madt: Madt,
    /// GTDT.
    pub gtdt: Option<Gtdt>,
    /// SPCR.
    pub spcr: Option<Spcr>,
    /// MCFG entries (empty without an MCFG).
    pub mcfg: Vec<Mcfg>,
    /// SRAT.
    pub srat: Option<Srat>,
    /// SLIT.
    pub slit: Option<Slit>,
    /// PPTT, one entry per leaf processor with a valid UID.
    pub pptt: Option<Vec<CpuPlace>>,
}

impl AcpiInfo {
    /// The GICC of the CPU with processor UID `uid`.
    pub fn cpu_by_uid(&self, uid: u32) -> Option<&Gicc> {
        self.madt.cpus.iter().find(|c| c.uid == uid)
    }
}

/// Whether `[pa, pa + len)` may be read as firmware tables: wholly inside one region of
/// `memory` and clear of the hypervisor's own region `own` (`(base, size)`: image, stacks,
/// heap), without wrapping. The rule of `arch::mem::FirmwareRam`, kept here so that it is
/// host-tested.
pub fn readable_firmware_ram(memory: &[MemoryDesc], own: (u64, u64), pa: u64, len: u64) -> bool {
    let Some(end) = pa.checked_add(len) else {
        return false;
    };
    let in_ram = memory
        .iter()
        .any(|m| pa >= m.base && m.base.checked_add(m.size).is_some_and(|e| end <= e));
    let (own_base, own_size) = own;
    let in_own = pa < own_base.saturating_add(own_size) && own_base < end;
    in_ram && !in_own
}

/// Reads the tables from `rsdp` and checks them against `board`: the run-time entry point.
/// The caller prints every finding and stops if any is [`Severity::Refuse`].
pub fn discover_and_check(
    rsdp: u64,
    mem: &dyn PhysRead,
    board: &BoardDesc,
) -> Result<(AcpiInfo, Vec<Finding>), AcpiError> {
    let info = discover(rsdp, mem)?;
    let findings = check(board, &info);
    Ok((info, findings))
}

/// The one-paragraph banner summary: CPUs and GIC from the MADT, timers from the GTDT,
/// console from the SPCR, ECAM from the MCFG, nodes from the SRAT/SLIT.
impl fmt::Display for AcpiInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.madt;
        let enabled = m.cpus.iter().filter(|c| c.enabled).count();
        let capable = m
            .cpus
            .iter()
            .filter(|c| !c.enabled && c.online_capable)
            .count();
        write!(
            f,
            "ACPI {} (rev {}): MADT {} CPUs enabled",
            if self.xsdt { "XSDT" } else { "RSDT" },
            self.revision,
            enabled
        )?;
        if capable > 0 {
            write!(f, " (+{capable} online-capable)")?;
        }
        match m.gicd {
            Some(d) if d.version != 0 => write!(f, ", GICv{} GICD {:#x}", d.version, d.base)?,
            Some(d) => write!(f, ", GIC GICD {:#x}", d.base)?,
            None => write!(f, ", no GICD")?,
        }
        for r in &m.gicr {
            write!(f, ", GICR {:#x}+{:#x}", r.base, r.length)?;
        }
        if m.gicr.is_empty() && m.cpus.iter().any(|c| c.gicr_base != 0) {
            write!(f, ", GICR per CPU")?;
        }
        if !m.its.is_empty() {
            write!(f, ", {} ITS", m.its.len())?;
        }
        match &self.gtdt {
            Some(t) => write!(
                f,
                "; GTDT timers phys {} virt {} hyp {}",
                t.nonsecure_el1.gsiv, t.virtual_el1.gsiv, t.el2.gsiv
            )?,
            None => write!(f, "; no GTDT")?,
        }
        match &self.spcr {
            Some(s) => {
                write!(f, "; SPCR console {} at {:#x}", s.interface_name(), s.base)?;
                if let Some(g) = s.gsiv {
                    write!(f, " GSIV {g}")?;
                }
            }
            None => write!(f, "; no SPCR")?,
        }
        if self.mcfg.is_empty() {
            write!(f, "; no MCFG")?;
        }
        for e in &self.mcfg {
            write!(
                f,
                "; ECAM seg {} at {:#x} buses {}-{}",
                e.segment, e.base, e.bus_start, e.bus_end
            )?;
        }
        match &self.srat {
            Some(s) => {
                let d = s.domains();
                write!(f, "; SRAT {} NUMA node(s)", d.len())?;
            }
            None => write!(f, "; no SRAT")?,
        }
        if let Some(s) = self.slit.as_ref().filter(|s| s.localities > 8) {
            write!(f, ", SLIT {} localities", s.localities)?;
        }
        if let Some(s) = self.slit.as_ref().filter(|s| s.localities <= 8) {
            write!(f, ", SLIT distances [")?;
            for i in 0..s.localities {
                if i > 0 {
                    write!(f, "; ")?;
                }
                for j in 0..s.localities {
                    if j > 0 {
                        write!(f, " ")?;
                    }
                    write!(f, "{}", s.distance(i, j).unwrap_or(0))?;
                }
            }
            write!(f, "]")?;
        }
        if let Some(p) = &self.pptt {
            let packages = p.iter().map(|c| c.package + 1).max().unwrap_or(0);
            write!(f, "; PPTT {} CPUs in {packages} package(s)", p.len())?;
        }
        Ok(())
    }
}
