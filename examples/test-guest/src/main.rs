//! Bare-metal EL1 test guest: checks what a hypervisor gives a VM (console, timer, SGIs,
//! PSCI, stage-2 aborts, the EL1 physical timer, SMCCC workaround discovery, a passed-through PL031 RTC if the DTB has one) and prints one `[test-guest] PASS|FAIL <check>` line per check.
//!
//! It boots as a Linux arm64 `Image` (see `boot.rs` and `README.md`), learns the machine from
//! the DTB in x0, runs the checks on the boot CPU with the secondaries started by PSCI, prints
//! `[test-guest] RESULT: N passed, M failed` and powers off with PSCI `SYSTEM_OFF` (in `echo`
//! mode, after echoing console lines until a line `off`). `hostile seed=N iters=N` replaces the
//! checks with seeded random hostile operations and a summary per kind (`hostile.rs`);
//! `secret` and `scan` replace them with the two halves of an isolation scenario
//! (`isolation.rs`); `storage-hostile` and `storage-neighbour` drive the VM's virtual disk
//! controllers (`storage.rs`), `net-hostile` and `net-neighbour` its virtio-net NIC
//! (`net.rs`). On the build machine only the pure parts (`dt`, `hostile`,
//! `isolation`, `line`, `net`, `spec`, `storage`) are compiled, for their tests.

#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]
#![cfg_attr(
    not(target_os = "none"),
    allow(dead_code, reason = "the host build exists only for the unit tests")
)]

mod dt;
mod hostile;
mod isolation;
mod line;
mod net;
mod spec;
mod storage;

#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
mod checks;
#[cfg(target_os = "none")]
mod conformance;
#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod echo;
#[cfg(target_os = "none")]
mod exceptions;
#[cfg(target_os = "none")]
mod gic;
#[cfg(target_os = "none")]
mod hostile_run;
#[cfg(target_os = "none")]
mod isolation_run;
#[cfg(target_os = "none")]
mod mmio;
#[cfg(target_os = "none")]
mod net_run;
#[cfg(target_os = "none")]
mod pci_run;
#[cfg(target_os = "none")]
mod rtc;
#[cfg(target_os = "none")]
mod storage_run;
#[cfg(target_os = "none")]
mod suspend;
#[cfg(target_os = "none")]
mod sysreg;

#[cfg(target_os = "none")]
pub use guest::{primary_main, secondary_main};

#[cfg(target_os = "none")]
mod guest {
    //! Entry points called from `boot.rs` and the panic handler.

    use crate::checks::{self, CPU_MPIDR, GIC, PLATFORM};
    use crate::console::{self, Pl011};
    use crate::dt::{self, Conduit, Region};
    use crate::echo;
    use crate::gic::Gic;
    use crate::mmio::Mmio;
    use crate::println;
    use aarch64_cpu::asm::wfi;
    use aarch64_cpu::registers::{Readable, Writeable, MPIDR_EL1, TPIDR_EL1};
    use core::sync::atomic::{AtomicU8, Ordering::SeqCst};
    use smccc::psci;
    use smccc::{Hvc, Smc};

    /// `MPIDR_EL1` affinity fields Aff3 (39:32) and Aff2..Aff0 (23:0), as in DTB `reg`.
    const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

    /// 0: unknown yet, 1: HVC, 2: SMC (for the panic handler's SYSTEM_OFF).
    static CONDUIT: AtomicU8 = AtomicU8::new(0);

    fn set_conduit(conduit: Conduit) {
        CONDUIT.store(if conduit == Conduit::Hvc { 1 } else { 2 }, SeqCst);
    }

    /// Powers off through PSCI if the conduit is known, else sleeps forever.
    fn halt() -> ! {
        match CONDUIT.load(SeqCst) {
            1 => {
                let _ = psci::system_off::<Hvc>();
            }
            2 => {
                let _ = psci::system_off::<Smc>();
            }
            _ => {}
        }
        loop {
            wfi();
        }
    }

    fn uart(region: Region) -> Pl011 {
        // SAFETY: (1) the region is the PL011's `reg` from the DTB, device memory Rust never
        // uses; (2) PL011 register accesses do not change memory.
        Pl011::new(unsafe { Mmio::new(region.base as usize, region.size as usize) })
    }

    /// The DTB at `dtb` as a mutable byte slice, if it has a valid header.
    fn dtb_blob(dtb: usize) -> Option<&'static mut [u8]> {
        if dtb == 0 || dtb % 8 != 0 {
            return None;
        }
        let mut header = [0_u8; 40];
        for (i, byte) in header.iter_mut().enumerate() {
            // SAFETY: the boot protocol passes the address of a DTB (at least its 40-byte
            // header, 8-byte aligned) in x0; reading it has no side effect.
            *byte = unsafe { core::ptr::read_volatile((dtb + i) as *const u8) };
        }
        let size = dt::blob_size(&header).ok()?;
        // SAFETY: (1) the boot protocol places the DTB, `size` bytes (<= 2 MiB, checked), in
        // RAM outside the image, its `.bss` and stacks; (2) nothing else in the guest refers
        // to that memory, and this runs once on the boot CPU, so the slice is unaliased.
        Some(unsafe { core::slice::from_raw_parts_mut(dtb as *mut u8, size) })
    }

    fn own_mpidr() -> u64 {
        MPIDR_EL1.get() & MPIDR_AFFINITY_MASK
    }

    /// Boot CPU entry, MMU off, on CPU 0's stack, `.bss` zeroed; `dtb` is x0 from the loader.
    pub extern "C" fn primary_main(dtb: usize, entry_ticks: u64) -> ! {
        TPIDR_EL1.set(0);
        // Without a DTB there is no console and no PSCI conduit to report with: just stop.
        let Some(blob) = dtb_blob(dtb) else { halt() };
        if dt::strip_nops(blob).is_err() {
            halt()
        }
        let Ok(fdt) = fdt::Fdt::new(blob) else { halt() };
        let platform = match dt::parse(&fdt) {
            Ok(platform) => platform,
            Err(e) => {
                if let Ok(conduit) = dt::conduit(&fdt) {
                    set_conduit(conduit);
                }
                if let Some(region) = dt::console_region(&fdt) {
                    console::init(uart(region));
                }
                println!("FAIL boot: {e}");
                println!("RESULT: 0 passed, 1 failed");
                halt()
            }
        };
        set_conduit(platform.conduit);
        let console = console::init(uart(platform.uart));
        let gic = GIC.call_once(|| Gic::new(&platform.gic));
        println!(
            "EL1 up: {} CPU(s), RAM {:#x}+{:#x}, {}, PSCI via {:?}, vtimer INTID {}, UART {:#x} INTID {:?}, counter: first_instruction_at={entry_ticks}",
            platform.cpu_count,
            platform.ram.base,
            platform.ram.size,
            gic.name(),
            platform.conduit,
            platform.vtimer_intid,
            platform.uart.base,
            platform.uart_intid,
        );

        // CPU index 0 is the boot CPU; the others follow in DTB order.
        let me = own_mpidr();
        let listed = &platform.mpidrs[..platform.cpu_count];
        if !listed.contains(&me) {
            println!(
                "FAIL boot: the boot CPU's MPIDR {me:#x} is not among the DTB's CPUs {listed:#x?}"
            );
            println!("RESULT: 0 passed, 1 failed");
            halt()
        }
        CPU_MPIDR[0].store(me, SeqCst);
        for (slot, &mpidr) in CPU_MPIDR[1..]
            .iter()
            .zip(listed.iter().filter(|&&m| m != me))
        {
            slot.store(mpidr, SeqCst);
        }
        let platform = PLATFORM.call_once(|| platform);

        if let Err(e) = gic.init_distributor().and_then(|()| gic.init_cpu(0, me)) {
            println!("FAIL boot: GIC setup: {e}");
            println!("RESULT: 0 passed, 1 failed");
            halt()
        }

        // Hostile and isolation modes skip the checks: they exist to load the machine from the
        // start, or to observe another VM while it runs.
        match platform.after {
            dt::AfterChecks::PowerOff | dt::AfterChecks::Echo => {}
            dt::AfterChecks::Hostile(Err(e)) => {
                println!("FAIL {e}");
                halt()
            }
            dt::AfterChecks::Hostile(Ok(args)) => {
                if platform.reset_count > 0 {
                    println!(
                        "hostile: running again after reset {}",
                        platform.reset_count
                    );
                }
                crate::hostile_run::run(platform, args, me);
                if args.reset && platform.reset_count == 0 {
                    // The guest resets itself; the hypervisor reloads it and says so in
                    // /chosen/hypervisor,reset-count, so the second run powers off.
                    println!("hostile: resetting itself");
                    match platform.conduit {
                        Conduit::Hvc => {
                            let _ = psci::system_reset::<Hvc>();
                        }
                        Conduit::Smc => {
                            let _ = psci::system_reset::<Smc>();
                        }
                    }
                }
                halt()
            }
            dt::AfterChecks::Secret => {
                crate::isolation_run::secret(platform, gic);
                halt()
            }
            dt::AfterChecks::Scan { reset } => {
                if platform.reset_count > 0 {
                    println!("scan: running again after reset {}", platform.reset_count);
                }
                crate::isolation_run::scan(platform, gic);
                if reset {
                    // Leave the pattern in this VM's own RAM: after the reset, or in a VM
                    // created later in the same RAM, the scan must not find it (the
                    // hypervisor gives RAM out zeroed).
                    crate::isolation_run::write_secret(platform);
                }
                if reset && platform.reset_count == 0 {
                    println!("scan: resetting itself");
                    match platform.conduit {
                        Conduit::Hvc => {
                            let _ = psci::system_reset::<Hvc>();
                        }
                        Conduit::Smc => {
                            let _ = psci::system_reset::<Smc>();
                        }
                    }
                }
                halt()
            }
            dt::AfterChecks::NumaMark => {
                crate::isolation_run::numa_mark(platform);
                halt()
            }
            dt::AfterChecks::StorageHostile => {
                crate::storage_run::hostile(platform, crate::storage::pci_host(&fdt));
                halt()
            }
            dt::AfterChecks::StorageNeighbour => {
                crate::storage_run::neighbour(platform, crate::storage::pci_host(&fdt));
                halt()
            }
            dt::AfterChecks::NetHostile => {
                crate::net_run::hostile(platform, crate::storage::pci_host(&fdt));
                halt()
            }
            dt::AfterChecks::NetNeighbour => {
                crate::net_run::neighbour(platform, crate::storage::pci_host(&fdt));
                halt()
            }
            dt::AfterChecks::Spin => {
                println!("hostile: spinning for ever");
                loop {
                    core::hint::spin_loop();
                }
            }
            dt::AfterChecks::Wild => {
                println!("hostile: jumping outside RAM");
                // SAFETY: deliberately branches to an unmapped address; the resulting
                // aborts are the point of this mode and never return here.
                unsafe { core::arch::asm!("mov x0, #0x1000", "br x0", options(noreturn)) }
            }
        }

        let report = match platform.conduit {
            Conduit::Hvc => checks::run::<Hvc>(platform, gic, console),
            Conduit::Smc => checks::run::<Smc>(platform, gic, console),
        };
        if platform.bench {
            match platform.conduit {
                Conduit::Hvc => checks::bench::<Hvc>(platform, gic, console),
                Conduit::Smc => checks::bench::<Smc>(platform, gic, console),
            }
        }
        println!("RESULT: {} passed, {} failed", report.passed, report.failed);
        if platform.after == dt::AfterChecks::Echo {
            if let Err(e) = echo::run(platform, gic, console) {
                println!("FAIL echo: {e}");
            }
        }
        halt()
    }

    /// Secondary entry after `CPU_ON`: own stack and vector table set, `cpu` = context id.
    pub extern "C" fn secondary_main(cpu: usize) -> ! {
        TPIDR_EL1.set(cpu as u64);
        checks::secondary(cpu, own_mpidr())
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        console::print_force(format_args!("[test-guest] FAIL panic: {info}\n"));
        console::print_force(format_args!("[test-guest] RESULT: 0 passed, 1 failed\n"));
        halt()
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "test-guest is a bare-metal image: build it with \
         `cargo build -p test-guest --target aarch64-unknown-none --release`"
    );
    std::process::exit(1);
}
