//! `hostile` mode's pure parts (host-tested): its bootargs, a xorshift PRNG, and the chooser
//! that turns random numbers into operations that can never touch the guest's own RAM nor
//! end the run (`hostile_run.rs` executes them).

use crate::dt::{Conduit, GicInfo, Region, MAX_CPUS};

/// Iterations when bootargs give no `iters=`.
pub const DEFAULT_ITERS: u32 = 2000;
/// Seed when bootargs give no `seed=`.
pub const DEFAULT_SEED: u64 = 1;

/// What `hostile seed=N iters=N` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Args {
    /// PRNG seed (0 is replaced by a fixed non-zero value: xorshift stays at 0 for ever).
    pub seed: u64,
    /// Operations to run.
    pub iters: u32,
    /// `reset`: after the first run, reset the VM with PSCI SYSTEM_RESET and run again.
    pub reset: bool,
}

/// Why the `hostile` words of bootargs cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    /// `seed=` is not a number.
    #[error("hostile: seed= wants a decimal or 0x-prefixed hex number below 2^64, e.g. seed=7")]
    BadSeed,
    /// `iters=` is not a number.
    #[error(
        "hostile: iters= wants a decimal or 0x-prefixed hex number below 2^32, e.g. iters=2000"
    )]
    BadIters,
}

fn number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// The `seed=` and `iters=` words of `bootargs` (defaults 1 and 2000).
pub fn parse_args(bootargs: &str) -> Result<Args, ArgsError> {
    let mut args = Args {
        seed: DEFAULT_SEED,
        iters: DEFAULT_ITERS,
        reset: false,
    };
    for word in bootargs.split_ascii_whitespace() {
        if word == "reset" {
            args.reset = true;
        } else if let Some(value) = word.strip_prefix("seed=") {
            args.seed = number(value).ok_or(ArgsError::BadSeed)?;
        } else if let Some(value) = word.strip_prefix("iters=") {
            args.iters = number(value)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or(ArgsError::BadIters)?;
        }
    }
    Ok(args)
}

/// Marsaglia's xorshift64 (shifts 13, 7, 17): small, fast and the same on every machine.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed` (0 becomes a fixed non-zero state).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (`n` > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A number in `lo..hi` (`lo` < `hi`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

/// The operation families, in the order their summary lines are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// (a) loads/stores outside RAM and inside the GIC and PL011 frames.
    Mmio,
    /// (b) `hvc #0` with a random function ID and arguments.
    Hvc,
    /// (b) `smc #0` with a random function ID and arguments.
    Smc,
    /// (c) trapped system registers: `CNTP_*`, `ICC_SGI1R_EL1`, IMPDEF `s3_*_c15_*`.
    Sysreg,
    /// (d) unaligned and syndrome-less (ISV=0) accesses to the PL011 and GICD.
    NoIsv,
    /// (e) SGIs to vCPUs that do not exist.
    Sgi,
    /// (f) PSCI `CPU_ON` with a bad entry point or target.
    CpuOn,
}

impl Kind {
    /// Every kind, in summary order.
    pub const ALL: [Kind; 7] = [
        Kind::Mmio,
        Kind::Hvc,
        Kind::Smc,
        Kind::Sysreg,
        Kind::NoIsv,
        Kind::Sgi,
        Kind::CpuOn,
    ];

    /// The name in `hostile: <kind> ops=...`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Mmio => "mmio",
            Kind::Hvc => "hvc",
            Kind::Smc => "smc",
            Kind::Sysreg => "sysreg",
            Kind::NoIsv => "noisv",
            Kind::Sgi => "sgi",
            Kind::CpuOn => "cpu_on",
        }
    }

    /// Index into [`Kind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Relative frequency, out of [`WEIGHT_TOTAL`].
    pub fn weight(self) -> u64 {
        match self {
            Kind::Mmio => 25,
            Kind::Hvc => 15,
            Kind::Smc => 10,
            Kind::Sysreg => 15,
            Kind::NoIsv => 15,
            Kind::Sgi => 10,
            Kind::CpuOn => 10,
        }
    }
}

/// Sum of the kinds' weights.
pub const WEIGHT_TOTAL: u64 = 100;

/// PSCI function numbers (the low 16 bits) that must never be called at random, with either
/// the SMC32 (0x8400_xxxx) or SMC64 (0xC400_xxxx) prefix (PSCI DEN0022E, 5.1): CPU_SUSPEND
/// (1), CPU_OFF (2), CPU_ON (3, only the controlled `cpu_on` kind starts CPUs), MIGRATE (5),
/// SYSTEM_OFF (8), SYSTEM_RESET (9), CPU_FREEZE (0xB), CPU_DEFAULT_SUSPEND (0xC),
/// SYSTEM_SUSPEND (0xE), SYSTEM_RESET2 (0x12), MEM_PROTECT (0x13), SYSTEM_OFF2 (0x15): they
/// end the run, stop the calling CPU until an interrupt that never comes, or start a CPU at
/// a random address.
pub const FORBIDDEN_PSCI: [u32; 12] = [1, 2, 3, 5, 8, 9, 0xb, 0xc, 0xe, 0x12, 0x13, 0x15];

/// PSCI `CPU_ON` (SMC64 convention).
pub const PSCI_CPU_ON_64: u32 = 0xc400_0003;
/// PSCI `CPU_ON` (SMC32 convention).
pub const PSCI_CPU_ON_32: u32 = 0x8400_0003;

/// Whether `x0` must not be passed to `hvc`/`smc` at random: SMCCC reads the function ID
/// from W0 only, so the upper 32 bits do not make a forbidden ID safe.
pub fn is_forbidden_call(x0: u64) -> bool {
    let id = x0 as u32;
    let prefix = id & 0xffff_0000;
    (prefix == 0x8400_0000 || prefix == 0xc400_0000) && FORBIDDEN_PSCI.contains(&(id & 0xffff))
}

/// What the chooser knows of the machine (all from the DTB).
#[derive(Clone, Copy, Debug)]
pub struct Targets {
    /// Guest RAM: no operation ever reads, writes or starts a CPU inside it.
    pub ram: Region,
    /// GIC distributor frame.
    pub gicd: Region,
    /// GICR regions (v3) or the GICC frame (v2).
    pub cpu_frames: [Region; crate::dt::MAX_GICR_REGIONS],
    /// Valid entries of `cpu_frames`.
    pub cpu_frame_count: usize,
    /// PL011 frame.
    pub uart: Region,
    /// GICv3 (system-register CPU interface) rather than GICv2.
    pub gic_v3: bool,
    /// MPIDR affinities of the DTB's CPUs.
    pub mpidrs: [u64; MAX_CPUS],
    /// Valid entries of `mpidrs`.
    pub cpu_count: usize,
    /// The MPIDR affinity of the CPU running the operations.
    pub own_mpidr: u64,
    /// PSCI conduit, for `CPU_ON`.
    pub conduit: Conduit,
}

impl Targets {
    /// The chooser's view of a parsed platform, run by the CPU with affinity `own_mpidr`.
    pub fn new(platform: &crate::dt::Platform, own_mpidr: u64) -> Self {
        let empty = Region { base: 0, size: 0 };
        let (gicd, cpu_frames, cpu_frame_count, gic_v3) = match platform.gic {
            GicInfo::V2 { gicd, gicc } => {
                let mut frames = [empty; crate::dt::MAX_GICR_REGIONS];
                frames[0] = gicc;
                (gicd, frames, 1, false)
            }
            GicInfo::V3 {
                gicd,
                gicr,
                gicr_count,
            } => (gicd, gicr, gicr_count, true),
        };
        Self {
            ram: platform.ram,
            gicd,
            cpu_frames,
            cpu_frame_count,
            uart: platform.uart,
            gic_v3,
            mpidrs: platform.mpidrs,
            cpu_count: platform.cpu_count,
            own_mpidr,
            conduit: platform.conduit,
        }
    }

    /// Whether any byte of `addr..addr + len` is guest RAM.
    pub fn touches_ram(&self, addr: u64, len: u64) -> bool {
        addr < self.ram.end() && addr.saturating_add(len) > self.ram.base
    }

    fn is_cpu(&self, mpidr: u64) -> bool {
        self.mpidrs[..self.cpu_count].contains(&mpidr)
    }
}

/// Most significant bit (exclusive) of the addresses tried outside RAM: 1 TiB, past QEMU
/// `virt`'s high PCIe window and beyond most IPA sizes (so some accesses hit no map at all).
pub const ADDRESS_LIMIT: u64 = 1 << 40;

/// Offsets of the PL011 never written: `UARTDR` (0x000) and `UARTRSR` (0x004), so that the
/// console carries only the guest's own lines.
pub const PL011_NO_WRITE_BELOW: u64 = 0x8;

/// An operation and its random operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A naturally aligned load (`value` None) or store of `width` bytes at `addr`.
    Mmio {
        /// Guest-physical address (never in RAM).
        addr: u64,
        /// 1, 2, 4 or 8.
        width: u8,
        /// What to store, or None for a load.
        value: Option<u64>,
    },
    /// `hvc #0` / `smc #0` with x0..x3 = `args` (x0 never forbidden).
    Call {
        /// Which instruction.
        conduit: Conduit,
        /// x0..x3.
        args: [u64; 4],
    },
    /// A system register access.
    Sysreg(SysregOp),
    /// A syndrome-less or unaligned access at `addr`.
    NoIsv {
        /// The instruction form.
        form: NoIsvForm,
        /// Address of the first byte accessed (never in RAM).
        addr: u64,
        /// What stores write.
        value: u64,
    },
    /// A GICv3 `ICC_SGI1R_EL1` write naming only absent CPUs.
    SgiV3(u64),
    /// A GICv2 `GICD_SGIR` write (at `gicd + 0xf00`) naming only absent CPUs.
    SgiV2(u32),
    /// PSCI `CPU_ON` through the platform's conduit.
    CpuOn {
        /// `CPU_ON` function ID (SMC32 or SMC64).
        function: u32,
        /// Target MPIDR.
        target: u64,
        /// Entry point (never an aligned address in RAM).
        entry: u64,
        /// Context ID.
        context: u64,
    },
}

/// A system register operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysregOp {
    /// Write then read back `CNTP_CTL_EL0`.
    CntpCtl(u64),
    /// Write then read back `CNTP_CVAL_EL0`.
    CntpCval(u64),
    /// Write then read `CNTP_TVAL_EL0`.
    CntpTval(u64),
    /// Write `ICC_SGI1R_EL1` (any target list, affinity, IRM, RS).
    Sgi1r(u64),
    /// `MRS` of the `n`-th IMPDEF `s3_<op1>_c15_<CRm>_<op2>` in `sysreg::IMPDEF`.
    Impdef(usize),
}

/// How many IMPDEF encodings `SysregOp::Impdef` chooses among (`sysreg::read_impdef`).
pub const IMPDEF_COUNT: usize = 8;

/// Load/store forms whose data abort has no instruction syndrome (ESR_ELx.ISV = 0), or that
/// are unaligned (an alignment fault on Device memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoIsvForm {
    /// `ldp w, w, [x]`.
    LdpW,
    /// `ldp x, x, [x]`.
    LdpX,
    /// `stp w, w, [x]`.
    StpW,
    /// `stp x, x, [x]`.
    StpX,
    /// `ldr w, [x], #4` (post-index).
    LdrPost,
    /// `ldr w, [x, #4]!` (pre-index; the base is `addr - 4`).
    LdrPre,
    /// `str w, [x], #4`.
    StrPost,
    /// `str w, [x, #4]!`.
    StrPre,
    /// `ldr w, [x]` at an address that is not 4-byte aligned.
    LdrUnaligned,
    /// `str w, [x]` at an address that is not 4-byte aligned.
    StrUnaligned,
}

impl NoIsvForm {
    const ALL: [NoIsvForm; 10] = [
        NoIsvForm::LdpW,
        NoIsvForm::LdpX,
        NoIsvForm::StpW,
        NoIsvForm::StpX,
        NoIsvForm::LdrPost,
        NoIsvForm::LdrPre,
        NoIsvForm::StrPost,
        NoIsvForm::StrPre,
        NoIsvForm::LdrUnaligned,
        NoIsvForm::StrUnaligned,
    ];

    /// Bytes accessed.
    pub fn len(self) -> u64 {
        match self {
            NoIsvForm::LdpX | NoIsvForm::StpX => 16,
            NoIsvForm::LdpW | NoIsvForm::StpW => 8,
            _ => 4,
        }
    }

    /// Whether it writes.
    pub fn is_store(self) -> bool {
        matches!(
            self,
            NoIsvForm::StpW
                | NoIsvForm::StpX
                | NoIsvForm::StrPost
                | NoIsvForm::StrPre
                | NoIsvForm::StrUnaligned
        )
    }

    fn is_unaligned(self) -> bool {
        matches!(self, NoIsvForm::LdrUnaligned | NoIsvForm::StrUnaligned)
    }
}

impl Op {
    /// The family the operation is counted in.
    pub fn kind(&self) -> Kind {
        match self {
            Op::Mmio { .. } => Kind::Mmio,
            Op::Call {
                conduit: Conduit::Hvc,
                ..
            } => Kind::Hvc,
            Op::Call {
                conduit: Conduit::Smc,
                ..
            } => Kind::Smc,
            Op::Sysreg(_) => Kind::Sysreg,
            Op::NoIsv { .. } => Kind::NoIsv,
            Op::SgiV3(_) | Op::SgiV2(_) => Kind::Sgi,
            Op::CpuOn { .. } => Kind::CpuOn,
        }
    }
}

/// Picks a kind by weight, then its operands.
pub fn choose(rng: &mut Rng, t: &Targets) -> Op {
    let mut pick = rng.below(WEIGHT_TOTAL);
    let mut kind = Kind::Mmio;
    for k in Kind::ALL {
        if pick < k.weight() {
            kind = k;
            break;
        }
        pick -= k.weight();
    }
    match kind {
        Kind::Mmio => mmio(rng, t),
        Kind::Hvc => call(rng, Conduit::Hvc),
        Kind::Smc => call(rng, Conduit::Smc),
        Kind::Sysreg => Op::Sysreg(sysreg(rng)),
        Kind::NoIsv => no_isv(rng, t),
        Kind::Sgi => sgi(rng, t),
        Kind::CpuOn => cpu_on(rng, t),
    }
}

/// A random address outside RAM, aligned to `align`, below [`ADDRESS_LIMIT`].
fn outside_ram(rng: &mut Rng, t: &Targets, align: u64) -> u64 {
    let below = t.ram.base >= align && (t.ram.end() >= ADDRESS_LIMIT || rng.one_in(2));
    let addr = if below {
        rng.below(t.ram.base - align + 1)
    } else {
        let lo = t.ram.end().max(1).next_multiple_of(align);
        rng.range(lo, ADDRESS_LIMIT.max(lo + align))
    };
    addr & !(align - 1)
}

/// A random device frame of the GIC or PL011 that does not overlap RAM, if there is one.
fn window(rng: &mut Rng, t: &Targets) -> Option<Region> {
    let slot = rng.below(2 + t.cpu_frame_count as u64) as usize;
    let frame = match slot {
        0 => t.gicd,
        1 => t.uart,
        n => t.cpu_frames[n - 2],
    };
    (frame.size >= 16 && !t.touches_ram(frame.base, frame.size)).then_some(frame)
}

fn mmio(rng: &mut Rng, t: &Targets) -> Op {
    let width = 1_u8 << rng.below(4);
    let w = u64::from(width);
    let value = rng.one_in(2).then(|| rng.next_u64());
    let addr = match window(rng, t).filter(|_| rng.one_in(2) || t.ram.base < 8) {
        Some(frame) => {
            let mut offset = rng.below(frame.size / w) * w;
            if value.is_some() && frame == t.uart && offset < PL011_NO_WRITE_BELOW {
                offset = PL011_NO_WRITE_BELOW;
            }
            frame.base + offset
        }
        None => outside_ram(rng, t, w),
    };
    Op::Mmio { addr, width, value }
}

fn call(rng: &mut Rng, conduit: Conduit) -> Op {
    loop {
        let x0 = match rng.below(4) {
            // Anywhere in the 32-bit ID space, upper half of x0 random too.
            0 => rng.next_u64(),
            // A fast call of a random owner (SMCCC DEN0028, 2.5), function 0..0x1ff.
            1 => 0x8000_0000 | (rng.below(2) << 30) | (rng.below(64) << 24) | rng.below(0x200),
            // PSCI (owner 4), SMC32 or SMC64.
            2 => 0x8400_0000 | (rng.below(2) << 30) | rng.below(0x20),
            // Arm architecture calls (owner 0): SMCCC_VERSION, ARCH_FEATURES, workarounds.
            _ => 0x8000_0000 | [0, 1, 2, 0x3fff, 0x7fff, 0x8000][rng.below(6) as usize],
        };
        if !is_forbidden_call(x0) {
            return Op::Call {
                conduit,
                args: [x0, rng.next_u64(), rng.next_u64(), rng.next_u64()],
            };
        }
    }
}

fn sysreg(rng: &mut Rng) -> SysregOp {
    match rng.below(5) {
        0 => SysregOp::CntpCtl(rng.next_u64()),
        1 => SysregOp::CntpCval(rng.next_u64()),
        2 => SysregOp::CntpTval(rng.next_u64()),
        3 => SysregOp::Sgi1r(rng.next_u64()),
        _ => SysregOp::Impdef(rng.below(IMPDEF_COUNT as u64) as usize),
    }
}

fn no_isv(rng: &mut Rng, t: &Targets) -> Op {
    let form = NoIsvForm::ALL[rng.below(NoIsvForm::ALL.len() as u64) as usize];
    let frame = if rng.one_in(2) { t.uart } else { t.gicd };
    let len = form.len();
    let value = rng.next_u64();
    let usable = frame.size >= 0x20 && !t.touches_ram(frame.base, frame.size);
    let addr = if usable {
        // Stores keep off the PL011's data register; every access stays inside the frame.
        let lo = if form.is_store() && frame == t.uart {
            PL011_NO_WRITE_BELOW
        } else {
            0
        };
        let mut offset = rng.range(lo, frame.size - 16) & !3;
        offset = offset.max(lo);
        if form.is_unaligned() {
            offset += rng.range(1, 4);
        }
        frame.base + offset
    } else {
        outside_ram(rng, t, 4) + if form.is_unaligned() { 1 } else { 0 }
    };
    debug_assert!(!t.touches_ram(addr, len));
    Op::NoIsv { form, addr, value }
}

/// `ICC_SGI1R_EL1` / `GICD_SGIR` naming only CPUs that the DTB does not list.
fn sgi(rng: &mut Rng, t: &Targets) -> Op {
    let intid = rng.below(16);
    if !t.gic_v3 {
        // GICD_SGIR (GICv2 IHI 0048B, 4.3.15): CPUTargetList 23:16, INTID 3:0; CPU interface
        // numbers 0..cpu_count exist.
        let absent = 0xff_u64 & !((1_u64 << t.cpu_count.min(8)) - 1);
        let targets = rng.next_u64() & absent;
        let targets = if targets == 0 { absent } else { targets };
        // With 8 CPUs nobody is absent: the reserved TargetListFilter 0b11 names no CPU.
        let filter = if absent == 0 { 3 } else { 0 };
        return Op::SgiV2(((filter << 24) | (targets << 16) | intid) as u32);
    }
    // ICC_SGI1R_EL1 (GICv3 IHI 0069H, 12.2.23): Aff3 55:48, RS 47:44, Aff2 39:32, INTID
    // 27:24, Aff1 23:16, TargetList 15:0 (Aff0 = RS * 16 + bit); IRM 0.
    loop {
        let aff3 = if rng.one_in(2) { 0 } else { rng.below(256) };
        let aff2 = if rng.one_in(2) { 0 } else { rng.below(256) };
        let aff1 = if rng.one_in(2) { 0 } else { rng.below(256) };
        let rs = if rng.one_in(2) { 0 } else { rng.below(16) };
        let mut list = rng.below(1 << 16);
        for bit in 0..16 {
            let mpidr = (aff3 << 32) | (aff2 << 16) | (aff1 << 8) | (rs * 16 + bit);
            if t.is_cpu(mpidr) {
                list &= !(1 << bit);
            }
        }
        if list != 0 {
            return Op::SgiV3(
                (aff3 << 48) | (rs << 44) | (aff2 << 32) | (intid << 24) | (aff1 << 16) | list,
            );
        }
    }
}

/// An MPIDR affinity that no listed CPU has.
fn absent_mpidr(rng: &mut Rng, t: &Targets) -> u64 {
    loop {
        let mpidr = match rng.below(3) {
            0 => rng.below(256),
            1 => rng.next_u64() & 0xff_00ff_ffff,
            // RES0 bits set around a listed affinity.
            _ => t.mpidrs[rng.below(t.cpu_count as u64) as usize] | (1 << rng.range(24, 32)),
        };
        if !t.is_cpu(mpidr) {
            return mpidr;
        }
    }
}

/// Whether a `CPU_ON` entry point is one a hypervisor must refuse: unaligned, or not in RAM.
fn bad_entry(t: &Targets, entry: u64) -> bool {
    entry % 4 != 0 || !t.touches_ram(entry, 4)
}

fn cpu_on(rng: &mut Rng, t: &Targets) -> Op {
    let others: usize = t.mpidrs[..t.cpu_count]
        .iter()
        .filter(|&&m| m != t.own_mpidr)
        .count();
    let target = match rng.below(3) {
        0 => t.own_mpidr,
        1 if others > 0 => {
            let n = rng.below(others as u64) as usize;
            t.mpidrs[..t.cpu_count]
                .iter()
                .copied()
                .filter(|&m| m != t.own_mpidr)
                .nth(n)
                .unwrap_or(t.own_mpidr)
        }
        _ => absent_mpidr(rng, t),
    };
    let function = if rng.one_in(4) {
        PSCI_CPU_ON_32
    } else {
        PSCI_CPU_ON_64
    };
    // The SMC32 call passes only the low 32 bits of the entry point (SMCCC: W registers), so
    // its entry must be bad after truncation too: retry until it is.
    let mut entry;
    loop {
        entry = if rng.one_in(2) {
            // In RAM but not 4-byte aligned.
            ((t.ram.base + rng.below(t.ram.size.max(4))) & !3) + rng.range(1, 4)
        } else {
            outside_ram(rng, t, 4)
        };
        if function == PSCI_CPU_ON_64 || bad_entry(t, entry & 0xffff_ffff) {
            break;
        }
    }
    Op::CpuOn {
        function,
        target,
        entry,
        context: rng.next_u64(),
    }
}

/// Exception class of an `ESR_ELx` value.
pub fn esr_ec(esr: u64) -> u64 {
    (esr >> 26) & 0x3f
}

/// `ESR_ELx.EC` of an unknown reason, such as an undefined instruction.
pub const EC_UNKNOWN: u64 = 0x00;
/// `ESR_ELx.EC` of a data abort from a lower EL.
pub const EC_DATA_ABORT_LOWER: u64 = 0x24;
/// `ESR_ELx.EC` of a data abort at the same EL.
pub const EC_DATA_ABORT_SAME: u64 = 0x25;

/// Outcome counters of one kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Operations run.
    pub ops: u32,
    /// Data aborts taken.
    pub aborts: u32,
    /// Undefined-instruction exceptions (EC 0x00) taken.
    pub undef: u32,
    /// Error outcomes: a negative SMCCC return (`hvc`, `smc`, `cpu_on`), a read-back that
    /// differs from what was written (`sysreg`), or an exception of any other class.
    pub errors: u32,
}

/// Distinct values of W0 (as a signed SMCCC return) seen, up to `N` of them.
#[derive(Clone, Copy, Debug)]
pub struct Distinct<const N: usize> {
    values: [i32; N],
    len: usize,
    /// Values not kept because the table was full.
    pub overflow: u32,
}

impl<const N: usize> Default for Distinct<N> {
    fn default() -> Self {
        Self {
            values: [0; N],
            len: 0,
            overflow: 0,
        }
    }
}

impl<const N: usize> Distinct<N> {
    /// Records `value` if new.
    pub fn insert(&mut self, value: i32) {
        if self.values[..self.len].contains(&value) {
            return;
        }
        match self.values.get_mut(self.len) {
            Some(slot) => {
                *slot = value;
                self.len += 1;
            }
            None => self.overflow += 1,
        }
    }

    /// The values seen, sorted.
    pub fn sorted(&self) -> [i32; N] {
        let mut values = self.values;
        values[..self.len].sort_unstable();
        values
    }

    /// How many distinct values were kept.
    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dt::Platform;

    fn targets(v3: bool) -> Targets {
        let blob: &[u8] = if v3 {
            include_bytes!("../fixtures/qemu-virt-gicv3.dtb")
        } else {
            include_bytes!("../fixtures/qemu-virt-gicv2.dtb")
        };
        let p: Platform = crate::dt::parse(&fdt::Fdt::new(blob).expect("DTB")).expect("parses");
        Targets::new(&p, 0)
    }

    /// Whether a `CPU_ON` entry point is one a hypervisor must refuse.
    fn is_bad_entry(t: &Targets, entry: u64) -> bool {
        bad_entry(t, entry)
    }

    fn ops(seed: u64, n: usize, t: &Targets) -> impl Iterator<Item = Op> + '_ {
        let mut rng = Rng::new(seed);
        (0..n).map(move |_| choose(&mut rng, t))
    }

    #[test]
    fn xorshift64_matches_the_reference_sequence() {
        // x ^= x << 13; x ^= x >> 7; x ^= x << 17 from 1.
        let mut rng = Rng::new(1);
        assert_eq!(rng.next_u64(), 0x4082_2041);
        assert_eq!(rng.next_u64(), 0x1000_4106_0c01_1441);
        assert_eq!(rng.next_u64(), 0x9b1e_842f_6e86_2629);
    }

    #[test]
    fn the_same_seed_gives_the_same_operations() {
        let t = targets(true);
        assert!(ops(7, 500, &t).eq(ops(7, 500, &t)));
        assert!(!ops(7, 50, &t).eq(ops(8, 50, &t)));
    }

    #[test]
    fn seed_zero_does_not_stick_at_zero() {
        let mut rng = Rng::new(0);
        assert_ne!(rng.next_u64(), 0);
    }

    #[test]
    fn every_kind_is_chosen_near_its_weight() {
        for v3 in [true, false] {
            let t = targets(v3);
            let n = 100_000;
            let mut counts = [0_u64; 7];
            for op in ops(3, n, &t) {
                counts[op.kind().index()] += 1;
            }
            for kind in Kind::ALL {
                let want = n as u64 * kind.weight() / WEIGHT_TOTAL;
                let got = counts[kind.index()];
                assert!(
                    got.abs_diff(want) < want / 10,
                    "{} chosen {got} times, want about {want}",
                    kind.name()
                );
            }
        }
    }

    #[test]
    fn no_access_ever_touches_ram() {
        for v3 in [true, false] {
            let t = targets(v3);
            for op in ops(11, 200_000, &t) {
                match op {
                    Op::Mmio { addr, width, .. } => {
                        assert!(!t.touches_ram(addr, width.into()), "{op:x?}");
                        assert_eq!(addr % u64::from(width), 0, "{op:x?}");
                        assert!(addr < ADDRESS_LIMIT);
                    }
                    Op::NoIsv { form, addr, .. } => {
                        // Pre-index forms also compute addr - 4 as the base: still no access.
                        assert!(!t.touches_ram(addr, form.len()), "{op:x?}")
                    }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn ram_at_zero_still_gets_accesses_outside_it() {
        let mut t = targets(true);
        t.ram = Region {
            base: 0,
            size: 0x8000_0000,
        };
        t.gicd.base = 0; // a frame inside RAM is never used
        for op in ops(5, 20_000, &t) {
            if let Op::Mmio { addr, width, .. } = op {
                assert!(!t.touches_ram(addr, width.into()), "{op:x?}");
            }
        }
    }

    #[test]
    fn the_pl011_data_register_is_never_written() {
        let t = targets(true);
        for op in ops(13, 200_000, &t) {
            let (addr, len) = match op {
                Op::Mmio {
                    addr,
                    width,
                    value: Some(_),
                } => (addr, u64::from(width)),
                Op::NoIsv { form, addr, .. } if form.is_store() => (addr, form.len()),
                _ => continue,
            };
            assert!(
                addr + len <= t.uart.base || addr >= t.uart.base + PL011_NO_WRITE_BELOW,
                "{op:x?}"
            );
        }
    }

    #[test]
    fn forbidden_psci_ids_are_never_called() {
        let t = targets(true);
        let mut calls = 0;
        for op in ops(17, 200_000, &t) {
            if let Op::Call { args, .. } = op {
                calls += 1;
                assert!(!is_forbidden_call(args[0]), "{op:x?}");
            }
        }
        assert!(calls > 40_000);
    }

    #[test]
    fn the_forbidden_list_covers_what_ends_the_run() {
        for id in [
            0x8400_0008_u64,
            0x8400_0009,
            0xc400_0012,
            0x8400_0012,
            0x8400_0002,
            0xffff_ffff_8400_0008,
            0x8400_0003,
            0xc400_0003,
            0xc400_0001,
        ] {
            assert!(is_forbidden_call(id), "{id:#x}");
        }
        for id in [
            0x8400_0000_u64,
            0x8400_000a,
            0xc400_0004,
            0x8500_0008,
            0x0400_0008,
        ] {
            assert!(!is_forbidden_call(id), "{id:#x}");
        }
    }

    #[test]
    fn psci_ids_are_tried_often() {
        let t = targets(true);
        let psci = ops(19, 100_000, &t)
            .filter(|op| matches!(op, Op::Call { args, .. } if args[0] as u32 >> 24 & 0xbf == 0x84))
            .count();
        assert!(psci > 3_000, "{psci}");
    }

    #[test]
    fn cpu_on_always_has_a_bad_entry_or_a_bad_target() {
        let t = targets(true);
        let (mut own, mut other, mut absent) = (0, 0, 0);
        for op in ops(23, 100_000, &t) {
            if let Op::CpuOn {
                function,
                target,
                entry,
                ..
            } = op
            {
                assert!(is_bad_entry(&t, entry), "{op:x?}");
                if function == PSCI_CPU_ON_32 {
                    assert!(
                        is_bad_entry(&t, entry & 0xffff_ffff),
                        "SMC32 truncation: {op:x?}"
                    );
                }
                match target {
                    0 => own += 1,
                    1 => other += 1,
                    m => {
                        assert!(!t.is_cpu(m));
                        absent += 1
                    }
                }
            }
        }
        assert!(own > 1000 && other > 1000 && absent > 1000);
    }

    #[test]
    fn sgis_never_name_a_listed_cpu() {
        let t = targets(true);
        for op in ops(29, 100_000, &t) {
            if let Op::SgiV3(v) = op {
                let (aff3, rs, aff2, aff1) = (
                    v >> 48 & 0xff,
                    v >> 44 & 0xf,
                    v >> 32 & 0xff,
                    v >> 16 & 0xff,
                );
                assert_eq!(v >> 40 & 1, 0, "IRM set: {v:#x}");
                assert_ne!(v & 0xffff, 0);
                for bit in 0..16 {
                    if v >> bit & 1 == 1 {
                        let mpidr = aff3 << 32 | aff2 << 16 | aff1 << 8 | (rs * 16 + bit);
                        assert!(!t.is_cpu(mpidr), "{v:#x}");
                    }
                }
            }
        }
        let t2 = targets(false);
        for op in ops(29, 100_000, &t2) {
            if let Op::SgiV2(v) = op {
                assert_eq!(v >> 16 & 0b11, 0, "CPU 0 or 1 named: {v:#x}");
                assert_ne!(v >> 16 & 0xff, 0);
            }
        }
    }

    #[test]
    fn bootargs_defaults() {
        assert_eq!(
            parse_args("hostile"),
            Ok(Args {
                seed: 1,
                iters: 2000,
                reset: false
            })
        );
    }

    #[test]
    fn bootargs_reset_word() {
        assert_eq!(
            parse_args("hostile seed=3 reset").map(|a| (a.seed, a.reset)),
            Ok((3, true))
        );
    }

    #[test]
    fn bootargs_seed_and_iters() {
        assert_eq!(
            parse_args("console=ttyAMA0 hostile seed=7 iters=0x10"),
            Ok(Args {
                seed: 7,
                iters: 16,
                reset: false
            })
        );
    }

    #[test]
    fn bootargs_bad_numbers_are_reported() {
        assert_eq!(parse_args("hostile seed=x"), Err(ArgsError::BadSeed));
        assert_eq!(
            parse_args("hostile iters=5000000000"),
            Err(ArgsError::BadIters)
        );
        assert_eq!(parse_args("hostile iters="), Err(ArgsError::BadIters));
    }

    #[test]
    fn distinct_keeps_each_value_once_and_sorts() {
        let mut d = Distinct::<3>::default();
        for v in [-1, 0, -1, 5, 0, 7] {
            d.insert(v);
        }
        assert_eq!(d.len(), 3);
        assert_eq!(d.sorted(), [-1, 0, 5]);
        assert_eq!(d.overflow, 1);
    }
}
