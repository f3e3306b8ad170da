//! A tiny EL3 firmware for QEMU `virt,secure=on,virtualization=on,gic-version=3` that starts
//! the hypervisor the way the Raspberry Pi's stock firmware does (raspberrypi/tools
//! `armstubs/armstub8.S`): the boot CPU enters the hypervisor at EL2 with x0 = the device
//! tree, and every secondary CPU waits on its own spin-table release word until the
//! hypervisor writes an entry point there.
//!
//! QEMU loads it as `-bios` into flash 0 at 0x0 (secure-only with `secure=on`), and with an
//! EL3 firmware it starts every CPU at 0x0 (its own PSCI is off). Each CPU: `SCR_EL3` (NS,
//! HCE, RW; SMC is not disabled, so that one is seen and reported), `CPTR_EL3` = 0, the GICv3 CPU
//! interface's system registers (`ICC_SRE_EL3`), its redistributor woken (`GICR_WAKER`) with
//! its SGIs/PPIs in non-secure group 1 (`GICR_IGROUPR0`), `SCTLR_EL2`, `CNTVOFF_EL2`. CPU 0
//! (MPIDR Aff0 = 0) also sets up the distributor (affinity routing for both security states,
//! every SPI in non-secure group 1, group 1 NS enabled), then ERETs to EL2h at
//! [`HV_ENTRY`] with x0 = [`DTB`] if a device tree is there (QEMU puts its own at the RAM
//! base when it boots a firmware) or 0. A secondary (Aff0 = n) polls the 64-bit word at
//! [`RELEASE_BASE`] + 8 n (`wfe` between reads, caches off, as the spin-table protocol wants)
//! and ERETs to EL2h at the address it finds, x0 = 0.
//!
//! The stock armstub8 sets `SCR_EL3.SMD`: it has no PSCI, and an `smc` is undefined. A
//! hypervisor on such a board must make no SMC at all, so this stub makes any SMC that does
//! reach it (SMD is left clear, so that it is seen) loud and fatal: it writes `SMC!` on its
//! own line to the PL011 console ([`UART`]) and stops the calling CPU (`wfi` forever).
//! Scenario `spin-table` forbids that word.
//!
//! The addresses below must match the board KDL the hypervisor was built for
//! (`examples/boards/qemu-virt-spin-table.kdl`).

#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

/// Where the hypervisor's flat Image is placed (`-device loader,addr=`; its link address,
/// the KDL's `hypervisor load=`).
pub const HV_ENTRY: u64 = 0x4040_0000;
/// Where QEMU places its device tree when it boots a firmware: the RAM base.
pub const DTB: u64 = 0x4000_0000;
/// CPU n's release word is at `RELEASE_BASE + 8 * n` (the Pi's 0xd8, 0xe0, 0xe8, 0xf0, in a
/// page of RAM below the hypervisor: QEMU virt has no RAM at 0).
pub const RELEASE_BASE: u64 = 0x4030_00d8;
/// GICv3 distributor (virt.c `VIRT_GIC_DIST`).
pub const GICD: u64 = 0x0800_0000;
/// First redistributor (virt.c `VIRT_GIC_REDIST`); CPU n's is 0x2_0000 bytes further on.
pub const GICR: u64 = 0x080a_0000;
/// The PL011 the hypervisor also uses as its console (virt.c `VIRT_UART`); its data
/// register at offset 0 takes a byte without any set-up under QEMU.
pub const UART: u64 = 0x0900_0000;

#[cfg(target_os = "none")]
core::arch::global_asm!(
    r#"
.section .text.stub, "ax"
.global _start
_start:
    // Every CPU, EL3, MMU and caches off. Non-secure lower ELs, EL2 in AArch64, HVC on;
    // SMC reaches us (SMD clear) to be reported as fatal.
    mov     x0, #0x531              // RW | HCE | RES1 5:4 | NS
    msr     scr_el3, x0
    msr     cptr_el3, xzr
    adr     x0, 20f
    msr     vbar_el3, x0
    // GICv3 CPU interface by system registers at every EL, EL2 may use ICC_SRE_EL2.
    mov     x0, #0xf                // ICC_SRE_EL3: SRE | DFB | DIB | Enable
    msr     S3_6_C12_C12_5, x0
    isb
    mov     x0, #1                  // ICC_IGRPEN1_EL3: EnableGrp1NS
    msr     S3_6_C12_C12_7, x0
    // EL2's entry state: MMU and caches off, little-endian (armstub8's value).
    ldr     x0, =0x30c50830
    msr     sctlr_el2, x0
    msr     cntvoff_el2, xzr
    // Our redistributor (QEMU virt numbers CPUs by Aff0 within a cluster of up to 8).
    mrs     x6, mpidr_el1
    and     x6, x6, #0xff
    ldr     x1, ={gicr}
    add     x1, x1, x6, lsl #17
    ldr     w2, [x1, #0x14]         // GICR_WAKER: clear ProcessorSleep ...
    bic     w2, w2, #2
    str     w2, [x1, #0x14]
1:  ldr     w2, [x1, #0x14]         // ... and wait until ChildrenAsleep clears
    tbnz    w2, #2, 1b
    add     x1, x1, #0x10000        // SGI frame
    movn    w2, #0
    str     w2, [x1, #0x80]         // GICR_IGROUPR0: SGIs and PPIs non-secure group 1
    str     wzr, [x1, #0xd00]       // GICR_IGRPMODR0
    cbnz    x6, 10f

    // CPU 0: the distributor. Affinity routing for both states first, then groups.
    ldr     x1, ={gicd}
    mov     w2, #0x30               // GICD_CTLR: ARE_S | ARE_NS
    str     w2, [x1]
2:  ldr     w2, [x1]                // RWP
    tbnz    w2, #31, 2b
    ldr     w3, [x1, #4]            // GICD_TYPER.ITLinesNumber: IGROUPR1..N
    and     w3, w3, #0x1f
    mov     x4, #1
    movn    w2, #0
    add     x5, x1, #0x80           // GICD_IGROUPR<n>
    add     x7, x1, #0xd00          // GICD_IGRPMODR<n>
3:  cmp     x4, x3
    b.hi    4f
    str     w2, [x5, x4, lsl #2]
    str     wzr, [x7, x4, lsl #2]
    add     x4, x4, #1
    b       3b
4:  mov     w2, #0x32               // + EnableGrp1NS
    str     w2, [x1]
5:  ldr     w2, [x1]
    tbnz    w2, #31, 5b
    // x0 = the device tree if one is at the RAM base (magic 0xd00dfeed, big-endian).
    ldr     x1, ={dtb}
    ldr     w2, [x1]
    ldr     w3, =0xedfe0dd0
    cmp     w2, w3
    csel    x0, x1, xzr, eq
    ldr     x4, ={hv_entry}
    b       11f

    // Secondaries: poll the release word (read first: the event of the store may already
    // be gone), wfe between reads.
10: ldr     x5, ={release}
    add     x5, x5, x6, lsl #3
12: ldr     x4, [x5]
    cbnz    x4, 13f
    wfe
    b       12b
13: mov     x0, #0
11: mov     x1, #0
    mov     x2, #0
    mov     x3, #0
    msr     elr_el3, x4
    mov     x5, #0x3c9              // EL2h, DAIF masked
    msr     spsr_el3, x5
    eret

    // EL3 vectors: only an SMC from a lower EL in AArch64 (offset 0x400) is expected.
    .balign 2048
20:
    .rept 8
    b       .
    .balign 0x80
    .endr
    b       30f                     // 0x400: synchronous, lower EL, AArch64
    .balign 0x80
    .rept 7
    b       .
    .balign 0x80
    .endr

    // An SMC: say so on the console, on a line of its own, and stop this CPU.
30: ldr     x1, ={uart}
    mov     w2, #0x0a               // "\nSMC!\n"
    str     w2, [x1]
    mov     w2, #0x53               // S
    str     w2, [x1]
    mov     w2, #0x4d               // M
    str     w2, [x1]
    mov     w2, #0x43               // C
    str     w2, [x1]
    mov     w2, #0x21               // !
    str     w2, [x1]
    mov     w2, #0x0a
    str     w2, [x1]
34: wfi
    b       34b
.ltorg
"#,
    gicr = const GICR,
    gicd = const GICD,
    dtb = const DTB,
    hv_entry = const HV_ENTRY,
    release = const RELEASE_BASE,
    uart = const UART,
);

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
