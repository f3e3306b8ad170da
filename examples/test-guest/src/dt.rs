//! What the guest learns from the device tree the loader passed in x0.

use fdt::node::FdtNode;
use fdt::Fdt;

/// Most CPUs the guest brings up (each gets a stack in `.stacks`, see `image.ld`).
pub const MAX_CPUS: usize = 8;
/// Most GICv3 redistributor regions the guest looks at.
pub const MAX_GICR_REGIONS: usize = 4;

/// A physical address range taken from a `reg` property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
}

impl Region {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }
}

/// Which instruction reaches the PSCI firmware (`/psci` `method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    /// `hvc #0`: a hypervisor implements PSCI.
    Hvc,
    /// `smc #0`: EL3 firmware implements PSCI.
    Smc,
}

/// The interrupt controller and the frames the guest programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicInfo {
    /// `arm,cortex-a15-gic` / `arm,gic-400`: distributor and memory-mapped CPU interface.
    V2 {
        /// GICD frame.
        gicd: Region,
        /// GICC frame.
        gicc: Region,
    },
    /// `arm,gic-v3`: distributor and redistributor regions; CPU interface by system registers.
    V3 {
        /// GICD frame.
        gicd: Region,
        /// Redistributor regions (`#redistributor-regions` of them, first ones used).
        gicr: [Region; MAX_GICR_REGIONS],
        /// How many entries of `gicr` are valid.
        gicr_count: usize,
    },
}

/// Everything the checks need about the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Platform {
    /// First `/memory` region.
    pub ram: Region,
    /// MPIDR affinity values of `/cpus/cpu@*`, in device-tree order (index 0 is the boot CPU's
    /// slot only if the boot CPU is listed first; the checks look the boot CPU up by MPIDR).
    pub mpidrs: [u64; MAX_CPUS],
    /// How many entries of `mpidrs` are valid.
    pub cpu_count: usize,
    /// PSCI conduit.
    pub conduit: Conduit,
    /// Interrupt controller.
    pub gic: GicInfo,
    /// PL011 registers.
    pub uart: Region,
    /// PL011 interrupt as a GIC INTID, if the node has one.
    pub uart_intid: Option<u32>,
    /// The PL011 interrupt's flags cell selects an edge trigger (QEMU `virt`: level-high).
    pub uart_edge: bool,
    /// Virtual timer PPI INTID (third entry of the `arm,armv8-timer` node's `interrupts`).
    pub vtimer_intid: u32,
    /// EL1 (non-secure) physical timer PPI INTID (the node's second entry), if it has one.
    pub ptimer_intid: Option<u32>,
    /// PMU overflow interrupt INTID (first entry of the `arm,armv8-pmuv3` node), if any.
    pub pmu_intid: Option<u32>,
    /// `no-pmu-irq` is not in bootargs: the machine delivers PMU overflow interrupts (QEMU's
    /// `xlnx-zcu102` does not connect the CPUs' PMU output to its GIC).
    pub pmu_irq_wired: bool,
    /// `/chosen/bootargs` contains the word `bench`.
    pub bench: bool,
    /// Hostile and isolation modes (`spin`, `wild`, `hostile`, `secret`, `scan` in bootargs)
    /// replace the checks.
    pub after: AfterChecks,
    /// How many times the hypervisor has reset this VM (`/chosen/hypervisor,reset-count`,
    /// 0 when absent).
    pub reset_count: u32,
    /// The PL031 RTC passed through to the guest (first enabled `arm,pl031` node), or `None`
    /// if the DTB has none; `Some(Err(..))` if the node is there but unusable.
    pub rtc: Option<Result<Rtc, RtcNodeError>>,
}

/// A PL031 real-time clock from an `arm,pl031` node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rtc {
    /// Its register frame (first `reg` entry).
    pub regs: Region,
    /// Its interrupt (first `interrupts` entry), an SPI.
    pub intid: u32,
    /// Whether that specifier's flags cell says edge-triggered (else level-sensitive).
    pub edge: bool,
}

/// Smallest PL031 register frame: the identification registers end at 0xFFC
/// (PL031 TRM DDI 0224C, 3.2).
pub const PL031_FRAME: u64 = 0x1000;

/// Why an `arm,pl031` node cannot be used by the passthrough check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RtcNodeError {
    /// No `reg`, or an entry without a size.
    #[error("the arm,pl031 node has no reg property: give it the RTC's register frame, e.g. reg = <0x0 0x9010000 0x0 0x1000>")]
    NoReg,
    /// The frame is smaller than the PL031's 4 KiB.
    #[error("the arm,pl031 node's reg is {size:#x} bytes, want at least 0x1000 (the ID registers end at 0xffc)")]
    FrameTooSmall {
        /// Size from `reg`.
        size: u64,
    },
    /// No 3-cell GIC interrupt specifier.
    #[error("the arm,pl031 node has no 3-cell GIC interrupt: give it interrupts = <GIC_SPI n IRQ_TYPE_LEVEL_HIGH>")]
    NoInterrupt,
    /// The interrupt is not an SPI.
    #[error("the arm,pl031 node's interrupt is INTID {intid}, not an SPI (32..1019): a device interrupt must be <GIC_SPI n ...>")]
    NotSpi {
        /// The INTID the specifier names.
        intid: u32,
    },
}

/// Why the device tree could not describe the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DtError {
    /// No usable memory node.
    #[error("no /memory node with a reg property: describe guest RAM in the DTB")]
    NoMemory,
    /// No CPU nodes.
    #[error("no /cpus/cpu@* node with a reg property: describe every vCPU in the DTB")]
    NoCpus,
    /// More CPUs than the guest has stacks for.
    #[error(
        "the DTB lists more than {MAX_CPUS} CPUs: raise MAX_CPUS in dt.rs and the stack count"
    )]
    TooManyCpus,
    /// No `/psci` node, or no `method`.
    #[error("no /psci node with a method property: add one with method = \"hvc\" or \"smc\"")]
    NoPsci,
    /// `method` is neither `hvc` nor `smc`.
    #[error("/psci method is neither \"hvc\" nor \"smc\"")]
    BadPsciMethod,
    /// No supported GIC node.
    #[error("no arm,gic-v3, arm,gic-400 or arm,cortex-a15-gic node with two reg entries")]
    NoGic,
    /// No PL011 node.
    #[error("no arm,pl011 node with a reg property: the guest needs it for its console")]
    NoUart,
    /// No architected timer node, or it lacks the virtual timer interrupt.
    #[error("no arm,armv8-timer node with at least three 3-cell interrupts (virtual timer is the third)")]
    NoTimer,
}

/// Largest DTB the guest accepts (the arm64 boot protocol's limit).
pub const MAX_DTB_SIZE: usize = 2 << 20;

// Flattened device tree header fields and structure tokens (Devicetree Specification v0.4, 5.2
// and 5.4.1); all big-endian 32-bit.
const FDT_MAGIC: u32 = 0xd00d_feed;
const HDR_TOTALSIZE: usize = 4;
const HDR_OFF_DT_STRUCT: usize = 8;
const HDR_SIZE_DT_STRUCT: usize = 36;
const HDR_LEN: usize = 40;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// Why a blob is not a usable flattened device tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// Wrong magic or a header that does not fit.
    #[error("x0 does not point at a DTB (bad magic or header): the loader must pass the DTB address in x0")]
    NotADtb,
    /// `totalsize` over the boot protocol limit.
    #[error("the DTB's totalsize {0:#x} exceeds 2 MiB, the arm64 boot protocol limit")]
    TooLarge(usize),
    /// The structure block has a bad token or overruns.
    #[error("the DTB structure block is malformed at offset {0:#x}")]
    Malformed(usize),
}

/// The `totalsize` of the DTB whose first `HDR_LEN` bytes are `header`.
pub fn blob_size(header: &[u8]) -> Result<usize, BlobError> {
    if header.len() < HDR_LEN || be32(header, 0) != FDT_MAGIC {
        return Err(BlobError::NotADtb);
    }
    let size = be32(header, HDR_TOTALSIZE) as usize;
    match size {
        HDR_LEN.. if size <= MAX_DTB_SIZE => Ok(size),
        HDR_LEN.. => Err(BlobError::TooLarge(size)),
        _ => Err(BlobError::NotADtb),
    }
}

/// Removes `FDT_NOP` tokens from the structure block in place (and shrinks
/// `size_dt_struct`), because the `fdt` crate (0.1.5) stops looking for a node at a NOP
/// between siblings. Loaders that edit a DTB in place (QEMU with `-dtb`, U-Boot, libfdt's
/// `fdt_nop_property`) leave NOPs behind.
pub fn strip_nops(blob: &mut [u8]) -> Result<(), BlobError> {
    if blob_size(blob)? > blob.len() {
        return Err(BlobError::NotADtb);
    }
    let start = be32(blob, HDR_OFF_DT_STRUCT) as usize;
    let end = start
        .checked_add(be32(blob, HDR_SIZE_DT_STRUCT) as usize)
        .filter(|&end| end <= blob.len())
        .ok_or(BlobError::NotADtb)?;
    let align4 = |n: usize| (n + 3) & !3;
    let (mut read, mut write) = (start, start);
    while read < end {
        let bad = BlobError::Malformed(read);
        if read + 4 > end {
            return Err(bad);
        }
        let token = be32(blob, read);
        let len = match token {
            FDT_BEGIN_NODE => {
                let name = blob[read + 4..end]
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(bad)?;
                4 + align4(name + 1)
            }
            FDT_PROP if read + 12 <= end => 12 + align4(be32(blob, read + 4) as usize),
            FDT_END_NODE | FDT_NOP | FDT_END => 4,
            _ => return Err(bad),
        };
        if read + len > end {
            return Err(bad);
        }
        if token != FDT_NOP {
            blob.copy_within(read..read + len, write);
            write += len;
        }
        read += len;
        if token == FDT_END {
            break;
        }
    }
    let new_size = ((write - start) as u32).to_be_bytes();
    blob[HDR_SIZE_DT_STRUCT..HDR_SIZE_DT_STRUCT + 4].copy_from_slice(&new_size);
    Ok(())
}

/// Reads the machine description from a flattened device tree.
pub fn parse(fdt: &Fdt<'_>) -> Result<Platform, DtError> {
    let ram = fdt
        .find_node("/memory")
        .and_then(|n| n.reg())
        .and_then(|mut r| r.next())
        .and_then(|r| Some(region(r.starting_address as u64, r.size? as u64)))
        .ok_or(DtError::NoMemory)?;

    let (mpidrs, cpu_count) = cpus(fdt)?;

    let conduit = conduit(fdt)?;

    let gic = gic(fdt)?;

    let uart_node = fdt.find_compatible(&["arm,pl011"]).ok_or(DtError::NoUart)?;
    let uart = first_reg(uart_node).ok_or(DtError::NoUart)?;
    let uart_irq = interrupt_specifier(uart_node, 0);
    let uart_intid = uart_irq.map(|(intid, _)| intid);
    let uart_edge = uart_irq.is_some_and(|(_, flags)| is_edge_triggered(flags));

    let timer_node = fdt.find_compatible(&["arm,armv8-timer", "arm,armv7-timer"]);
    let vtimer_intid = timer_node
        .and_then(|n| interrupt(n, 2))
        .ok_or(DtError::NoTimer)?;
    let ptimer_intid = timer_node.and_then(|n| interrupt(n, 1));

    let pmu_intid = fdt
        .find_compatible(&["arm,armv8-pmuv3"])
        .and_then(|n| interrupt(n, 0));

    let bootargs = fdt
        .find_node("/chosen")
        .and_then(|n| n.property("bootargs"))
        .and_then(|p| p.as_str())
        .unwrap_or("");
    let bench = has_word(bootargs, "bench");
    let after = after_checks(bootargs);

    Ok(Platform {
        ram,
        mpidrs,
        cpu_count,
        conduit,
        gic,
        uart,
        uart_intid,
        uart_edge,
        vtimer_intid,
        ptimer_intid,
        pmu_intid,
        pmu_irq_wired: !has_word(bootargs, "no-pmu-irq"),
        bench,
        after,
        reset_count: fdt
            .find_node("/chosen")
            .and_then(|n| n.property("hypervisor,reset-count"))
            .and_then(|p| p.as_usize())
            .map_or(0, |v| v as u32),
        rtc: rtc(fdt),
    })
}

/// The first enabled `arm,pl031` node, if any, and what the passthrough check needs of it.
pub fn rtc(fdt: &Fdt<'_>) -> Option<Result<Rtc, RtcNodeError>> {
    let node = fdt.all_nodes().find(|n| {
        n.compatible()
            .is_some_and(|c| c.all().any(|s| s == "arm,pl031"))
            && is_enabled(*n)
    })?;
    Some(rtc_node(node))
}

fn rtc_node(node: FdtNode<'_, '_>) -> Result<Rtc, RtcNodeError> {
    let regs = first_reg(node).ok_or(RtcNodeError::NoReg)?;
    if regs.size < PL031_FRAME {
        return Err(RtcNodeError::FrameTooSmall { size: regs.size });
    }
    let (intid, flags) = interrupt_specifier(node, 0).ok_or(RtcNodeError::NoInterrupt)?;
    if !(32..1020).contains(&intid) {
        return Err(RtcNodeError::NotSpi { intid });
    }
    Ok(Rtc {
        regs,
        intid,
        edge: is_edge_triggered(flags),
    })
}

/// A node without `status`, or with `"okay"` / `"ok"`, is enabled (Devicetree Specification
/// v0.4, 2.3.4).
fn is_enabled(node: FdtNode<'_, '_>) -> bool {
    match node.property("status").and_then(|p| p.as_str()) {
        None => true,
        Some(status) => status == "okay" || status == "ok",
    }
}

/// Whether a GIC specifier's flags cell selects an edge trigger (`IRQ_TYPE_EDGE_RISING` 1 or
/// `IRQ_TYPE_EDGE_FALLING` 2) rather than a level (`IRQ_TYPE_LEVEL_HIGH` 4 / `_LOW` 8); see
/// the Linux `arm,gic` binding and `dt-bindings/interrupt-controller/irq.h`.
pub fn is_edge_triggered(flags: u32) -> bool {
    flags & 0x3 != 0
}

/// What the guest does after its checks: the hostile modes let scenarios check that a
/// guest which never stops, or faults for ever, does not disturb its neighbours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterChecks {
    /// PSCI SYSTEM_OFF (default).
    PowerOff,
    /// `spin`: loop for ever with interrupts masked, never WFI.
    Spin,
    /// `wild`: jump to an address outside RAM, faulting for ever.
    Wild,
    /// `echo`: after the checks and the summary, echo console input line by line until a
    /// line `off` (see `echo.rs`).
    Echo,
    /// `hostile [seed=N] [iters=N]`: instead of the checks, random hostile operations (see
    /// `hostile.rs`), a summary per kind, then power off.
    Hostile(Result<crate::hostile::Args, crate::hostile::ArgsError>),
    /// `secret`: instead of the checks, fill free RAM with an address-dependent pattern, stay
    /// up about 3 s, then power off (the victim of an isolation scenario, see `isolation.rs`).
    Secret,
    /// `scan [reset]`: instead of the checks, look for the `secret` pattern in all of RAM and
    /// probe addresses outside RAM, each of which must abort (the attacker, see
    /// `isolation.rs`). With `reset`, each run then writes the pattern over its own free
    /// RAM; the first resets itself, the run after the reset scans again (RAM must come
    /// back zeroed) and powers off, leaving the pattern for a VM created in its RAM.
    Scan {
        /// Write the pattern and reset after the first scan.
        reset: bool,
    },
    /// `storage-hostile`: instead of the checks, drive every NVMe, AHCI and virtio-blk
    /// controller of the VM's PCIe bus with requests outside the disk and DMA outside RAM,
    /// each of which must be refused, then write a marker to each disk (see `storage.rs`).
    StorageHostile,
    /// `storage-neighbour`: instead of the checks, write a value to LBA 0 of the VM's NVMe
    /// disk and read it back for a few seconds, while a hostile VM runs beside it.
    StorageNeighbour,
    /// `net-hostile`: instead of the checks, drive the VM's virtio-net NIC with broken
    /// queues and frames it must drop, pinging a `net-neighbour` VM after each (see `net.rs`).
    NetHostile,
    /// `net-neighbour`: instead of the checks, tick to the switch, answer pings and count
    /// every frame that must never arrive, until the hostile VM says bye.
    NetNeighbour,
    /// `numa-mark`: instead of the checks, write a marker holding a value read at run time
    /// (the counter) many times over free RAM, print the value, then power off (the host
    /// then finds it in the backing file of the NUMA node the VM's RAM came from).
    NumaMark,
}

/// Whether the kernel command line `bootargs` contains `word` as a whole word.
fn has_word(bootargs: &str, word: &str) -> bool {
    bootargs.split_ascii_whitespace().any(|w| w == word)
}

/// What `/chosen/bootargs` asks the guest to do after (or instead of) its checks; a hostile
/// or isolation mode wins over `echo`.
pub fn after_checks(bootargs: &str) -> AfterChecks {
    if has_word(bootargs, "storage-hostile") {
        AfterChecks::StorageHostile
    } else if has_word(bootargs, "storage-neighbour") {
        AfterChecks::StorageNeighbour
    } else if has_word(bootargs, "net-hostile") {
        AfterChecks::NetHostile
    } else if has_word(bootargs, "net-neighbour") {
        AfterChecks::NetNeighbour
    } else if has_word(bootargs, "numa-mark") {
        AfterChecks::NumaMark
    } else if has_word(bootargs, "spin") {
        AfterChecks::Spin
    } else if has_word(bootargs, "wild") {
        AfterChecks::Wild
    } else if has_word(bootargs, "hostile") {
        AfterChecks::Hostile(crate::hostile::parse_args(bootargs))
    } else if has_word(bootargs, "secret") {
        AfterChecks::Secret
    } else if has_word(bootargs, "scan") {
        AfterChecks::Scan {
            reset: has_word(bootargs, "reset"),
        }
    } else if has_word(bootargs, "echo") {
        AfterChecks::Echo
    } else {
        AfterChecks::PowerOff
    }
}

/// The PSCI conduit from `/psci` `method`.
pub fn conduit(fdt: &Fdt<'_>) -> Result<Conduit, DtError> {
    let method = fdt
        .find_node("/psci")
        .and_then(|n| n.property("method"))
        .and_then(|p| p.as_str())
        .ok_or(DtError::NoPsci)?;
    match method {
        "hvc" => Ok(Conduit::Hvc),
        "smc" => Ok(Conduit::Smc),
        _ => Err(DtError::BadPsciMethod),
    }
}

/// Just the PL011's registers, so that a DTB that `parse` rejects can still be reported.
pub fn console_region(fdt: &Fdt<'_>) -> Option<Region> {
    first_reg(fdt.find_compatible(&["arm,pl011"])?)
}

fn region(base: u64, size: u64) -> Region {
    Region { base, size }
}

fn first_reg(node: FdtNode<'_, '_>) -> Option<Region> {
    nth_reg(node, 0)
}

fn nth_reg(node: FdtNode<'_, '_>, n: usize) -> Option<Region> {
    let r = node.reg()?.nth(n)?;
    Some(region(r.starting_address as u64, r.size? as u64))
}

fn cpus(fdt: &Fdt<'_>) -> Result<([u64; MAX_CPUS], usize), DtError> {
    let parent = fdt.find_node("/cpus").ok_or(DtError::NoCpus)?;
    let address_cells = parent
        .property("#address-cells")
        .and_then(|p| p.as_usize())
        .unwrap_or(1);
    let mut mpidrs = [0; MAX_CPUS];
    let mut count = 0;
    for cpu in parent
        .children()
        .filter(|c| c.name.split('@').next() == Some("cpu"))
    {
        let reg = cpu.property("reg").ok_or(DtError::NoCpus)?.value;
        let mpidr = match (address_cells, reg.len()) {
            (1, 4..) => u64::from(be32(reg, 0)),
            (2, 8..) => (u64::from(be32(reg, 0)) << 32) | u64::from(be32(reg, 4)),
            _ => return Err(DtError::NoCpus),
        };
        *mpidrs.get_mut(count).ok_or(DtError::TooManyCpus)? = mpidr;
        count += 1;
    }
    if count == 0 {
        return Err(DtError::NoCpus);
    }
    Ok((mpidrs, count))
}

fn gic(fdt: &Fdt<'_>) -> Result<GicInfo, DtError> {
    if let Some(node) = fdt.find_compatible(&["arm,gic-v3"]) {
        let gicd = first_reg(node).ok_or(DtError::NoGic)?;
        let regions = node
            .property("#redistributor-regions")
            .and_then(|p| p.as_usize())
            .unwrap_or(1)
            .min(MAX_GICR_REGIONS);
        let mut gicr = [region(0, 0); MAX_GICR_REGIONS];
        for (i, slot) in gicr.iter_mut().enumerate().take(regions) {
            *slot = nth_reg(node, 1 + i).ok_or(DtError::NoGic)?;
        }
        return Ok(GicInfo::V3 {
            gicd,
            gicr,
            gicr_count: regions,
        });
    }
    let node = fdt
        .find_compatible(&["arm,gic-400", "arm,cortex-a15-gic"])
        .ok_or(DtError::NoGic)?;
    Ok(GicInfo::V2 {
        gicd: nth_reg(node, 0).ok_or(DtError::NoGic)?,
        gicc: nth_reg(node, 1).ok_or(DtError::NoGic)?,
    })
}

/// The INTID of the `index`-th 3-cell GIC interrupt specifier of `node`.
fn interrupt(node: FdtNode<'_, '_>, index: usize) -> Option<u32> {
    interrupt_specifier(node, index).map(|(intid, _)| intid)
}

/// The INTID and flags cell of the `index`-th 3-cell GIC interrupt specifier of `node`.
fn interrupt_specifier(node: FdtNode<'_, '_>, index: usize) -> Option<(u32, u32)> {
    let value = node.property("interrupts")?.value;
    let at = index.checked_mul(12)?;
    if value.len() < at + 12 {
        return None;
    }
    let intid = intid_from_specifier(be32(value, at), be32(value, at + 4))?;
    Some((intid, be32(value, at + 8)))
}

/// Converts a GIC binding specifier (type cell, number cell) to an INTID: type 0 is an SPI
/// (INTID 32 + n), type 1 a PPI (INTID 16 + n); see the Linux `arm,gic` binding.
pub fn intid_from_specifier(kind: u32, number: u32) -> Option<u32> {
    match kind {
        0 => number.checked_add(32),
        1 if number < 16 => Some(16 + number),
        _ => None,
    }
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(blob: &[u8]) -> Platform {
        parse(&Fdt::new(blob).expect("fixture is a DTB")).expect("fixture describes the machine")
    }

    const V3: &[u8] = include_bytes!("../fixtures/qemu-virt-gicv3.dtb");
    const V2: &[u8] = include_bytes!("../fixtures/qemu-virt-gicv2.dtb");
    /// QEMU virt (GICv3, 2 CPUs, 1 GiB) after QEMU edited a `-dtb` file in place: 54 FDT_NOPs.
    const NOPS: &[u8] = include_bytes!("../fixtures/qemu-virt-gicv3-with-nops.dtb");

    #[test]
    fn memory_is_the_first_memory_region() {
        assert_eq!(
            platform(V3).ram,
            Region {
                base: 0x4000_0000,
                size: 0x4000_0000
            }
        );
    }

    #[test]
    fn cpus_are_listed_by_mpidr() {
        let p = platform(V3);
        assert_eq!(&p.mpidrs[..p.cpu_count], &[0, 1]);
    }

    #[test]
    fn psci_method_hvc_selects_the_hvc_conduit() {
        assert_eq!(platform(V3).conduit, Conduit::Hvc);
    }

    #[test]
    fn gic_v3_has_distributor_and_one_redistributor_region() {
        let GicInfo::V3 {
            gicd,
            gicr,
            gicr_count,
        } = platform(V3).gic
        else {
            panic!("expected GICv3");
        };
        assert_eq!(
            gicd,
            Region {
                base: 0x0800_0000,
                size: 0x1_0000
            }
        );
        assert_eq!(gicr_count, 1);
        assert_eq!(
            gicr[0],
            Region {
                base: 0x080a_0000,
                size: 0xf6_0000
            }
        );
    }

    #[test]
    fn gic_v2_has_distributor_and_cpu_interface() {
        assert_eq!(
            platform(V2).gic,
            GicInfo::V2 {
                gicd: Region {
                    base: 0x0800_0000,
                    size: 0x1_0000
                },
                gicc: Region {
                    base: 0x0801_0000,
                    size: 0x1_0000
                },
            }
        );
    }

    #[test]
    fn uart_is_the_pl011_with_spi_1() {
        let p = platform(V2);
        assert_eq!(
            p.uart,
            Region {
                base: 0x0900_0000,
                size: 0x1000
            }
        );
        assert_eq!(p.uart_intid, Some(33));
    }

    #[test]
    fn virtual_timer_is_the_third_timer_interrupt() {
        assert_eq!(platform(V3).vtimer_intid, 27);
        assert_eq!(platform(V3).ptimer_intid, Some(30));
        assert_eq!(platform(V3).pmu_intid, Some(23));
    }

    #[test]
    fn no_bootargs_means_no_bench() {
        assert!(!platform(V3).bench);
    }

    #[test]
    fn no_bootargs_means_power_off_after_the_checks() {
        assert_eq!(platform(V3).after, AfterChecks::PowerOff);
    }

    #[test]
    fn echo_in_bootargs_selects_echo_mode() {
        assert_eq!(after_checks("console=ttyAMA0 echo"), AfterChecks::Echo);
    }

    #[test]
    fn echo_must_be_a_whole_word() {
        assert_eq!(after_checks("echoes noecho"), AfterChecks::PowerOff);
    }

    #[test]
    fn a_hostile_mode_wins_over_echo() {
        assert_eq!(after_checks("echo spin"), AfterChecks::Spin);
    }

    #[test]
    fn hostile_in_bootargs_selects_hostile_mode_with_its_numbers() {
        assert_eq!(
            after_checks("echo hostile seed=7 iters=20"),
            AfterChecks::Hostile(Ok(crate::hostile::Args {
                seed: 7,
                iters: 20,
                reset: false
            }))
        );
    }

    #[test]
    fn secret_in_bootargs_selects_secret_mode() {
        assert_eq!(after_checks("console=ttyAMA0 secret"), AfterChecks::Secret);
    }

    #[test]
    fn scan_in_bootargs_selects_scan_mode() {
        assert_eq!(
            after_checks("scan echo"),
            AfterChecks::Scan { reset: false }
        );
        assert_eq!(
            after_checks("scan reset"),
            AfterChecks::Scan { reset: true }
        );
    }

    #[test]
    fn secret_and_scan_must_be_whole_words() {
        assert_eq!(after_checks("secrets scanner"), AfterChecks::PowerOff);
    }

    #[test]
    fn storage_modes_are_whole_words_and_not_hostile() {
        assert_eq!(
            after_checks("console=ttyAMA0 storage-hostile"),
            AfterChecks::StorageHostile
        );
        assert_eq!(
            after_checks("storage-neighbour echo"),
            AfterChecks::StorageNeighbour
        );
        assert_eq!(after_checks("storage-hostiles"), AfterChecks::PowerOff);
    }

    #[test]
    fn net_modes_are_whole_words_and_not_hostile() {
        assert_eq!(
            after_checks("console=ttyAMA0 net-hostile"),
            AfterChecks::NetHostile
        );
        assert_eq!(after_checks("net-neighbour"), AfterChecks::NetNeighbour);
        assert_eq!(after_checks("console=x numa-mark"), AfterChecks::NumaMark);
        assert_eq!(after_checks("numa-marks"), AfterChecks::PowerOff);
        assert_eq!(after_checks("net-hostiles"), AfterChecks::PowerOff);
        assert_eq!(after_checks("net"), AfterChecks::PowerOff);
    }

    #[test]
    fn secret_wins_over_scan() {
        assert_eq!(after_checks("scan secret"), AfterChecks::Secret);
    }

    #[test]
    fn spin_wins_over_hostile() {
        assert_eq!(after_checks("hostile spin"), AfterChecks::Spin);
    }

    #[test]
    fn qemu_uart_interrupt_is_level_triggered() {
        assert!(!platform(V3).uart_edge);
    }

    #[test]
    fn nops_between_nodes_hide_cpus_from_the_fdt_crate() {
        let blob = NOPS.to_vec();
        let fdt = Fdt::new(&blob).expect("fixture is a DTB");
        assert!(fdt.find_node("/cpus").is_none());
    }

    #[test]
    fn stripping_nops_makes_the_dtb_parse() {
        let mut blob = NOPS.to_vec();
        strip_nops(&mut blob).expect("fixture is well formed");
        let p = platform(&blob);
        assert_eq!(p.cpu_count, 2);
        assert_eq!(
            p.ram,
            Region {
                base: 0x4000_0000,
                size: 0x4000_0000
            }
        );
    }

    #[test]
    fn stripping_a_dtb_without_nops_changes_nothing() {
        let mut blob = V2.to_vec();
        strip_nops(&mut blob).expect("fixture is well formed");
        assert_eq!(blob, V2);
    }

    #[test]
    fn a_blob_without_the_magic_is_rejected() {
        assert_eq!(blob_size(&[0; 64]), Err(BlobError::NotADtb));
    }

    #[test]
    fn a_truncated_structure_block_is_rejected() {
        let mut blob = V2.to_vec();
        let start = be32(&blob, HDR_OFF_DT_STRUCT) as usize;
        // A property whose length runs past the structure block.
        blob[start + 8..start + 12].copy_from_slice(&FDT_PROP.to_be_bytes());
        blob[start + 12..start + 16].copy_from_slice(&0x00ff_ffff_u32.to_be_bytes());
        assert!(matches!(
            strip_nops(&mut blob),
            Err(BlobError::Malformed(_))
        ));
    }

    /// The V3 fixture with the `pl031@9010000` node removed (as a hypervisor's guest DTB
    /// without a passed-through RTC), then with the node `status = "disabled"`, without
    /// `interrupts`, and with a PPI (`<1 2 1>`) instead of SPI 2; made from `V3` with `dtc`.
    const NO_PL031: &[u8] = include_bytes!("../fixtures/qemu-virt-gicv3-no-pl031.dtb");
    const PL031_DISABLED: &[u8] = include_bytes!("../fixtures/qemu-virt-gicv3-pl031-disabled.dtb");
    const PL031_NO_IRQ: &[u8] =
        include_bytes!("../fixtures/qemu-virt-gicv3-pl031-no-interrupts.dtb");
    const PL031_PPI: &[u8] = include_bytes!("../fixtures/qemu-virt-gicv3-pl031-ppi.dtb");
    /// `V3` with the `pl031@9010000` `reg` size 0x100.
    const PL031_SMALL: &[u8] = include_bytes!("../fixtures/qemu-virt-gicv3-pl031-small-frame.dtb");

    const QEMU_PL031: Rtc = Rtc {
        regs: Region {
            base: 0x0901_0000,
            size: 0x1000,
        },
        intid: 34,
        edge: false,
    };

    #[test]
    fn qemu_virt_pl031_is_found_with_its_frame_and_spi_2() {
        assert_eq!(platform(V3).rtc, Some(Ok(QEMU_PL031)));
    }

    #[test]
    fn pl031_is_found_on_gic_v2_too() {
        assert_eq!(platform(V2).rtc, Some(Ok(QEMU_PL031)));
    }

    #[test]
    fn pl031_is_found_after_stripping_nops() {
        let mut blob = NOPS.to_vec();
        strip_nops(&mut blob).expect("fixture is well formed");
        assert_eq!(platform(&blob).rtc, Some(Ok(QEMU_PL031)));
    }

    #[test]
    fn a_dtb_without_pl031_has_no_rtc_and_still_parses() {
        let p = platform(NO_PL031);
        assert_eq!(p.rtc, None);
        assert_eq!(p.uart_intid, Some(33));
    }

    #[test]
    fn a_disabled_pl031_is_ignored() {
        assert_eq!(platform(PL031_DISABLED).rtc, None);
    }

    #[test]
    fn a_pl031_without_interrupts_is_reported() {
        assert_eq!(
            platform(PL031_NO_IRQ).rtc,
            Some(Err(RtcNodeError::NoInterrupt))
        );
    }

    #[test]
    fn a_pl031_with_a_ppi_is_reported() {
        assert_eq!(
            platform(PL031_PPI).rtc,
            Some(Err(RtcNodeError::NotSpi { intid: 18 }))
        );
    }

    #[test]
    fn a_pl031_frame_smaller_than_4k_is_reported() {
        assert_eq!(
            platform(PL031_SMALL).rtc,
            Some(Err(RtcNodeError::FrameTooSmall { size: 0x100 }))
        );
    }

    #[test]
    fn specifier_flags_edge_and_level() {
        assert!(is_edge_triggered(1));
        assert!(is_edge_triggered(2));
        assert!(!is_edge_triggered(4));
        assert!(!is_edge_triggered(8));
    }

    #[test]
    fn specifier_types_map_to_spi_and_ppi_ranges() {
        assert_eq!(intid_from_specifier(0, 1), Some(33));
        assert_eq!(intid_from_specifier(1, 11), Some(27));
        assert_eq!(intid_from_specifier(1, 16), None);
        assert_eq!(intid_from_specifier(2, 0), None);
    }
}
