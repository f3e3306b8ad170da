//! The only room with `unsafe`: boot, vectors, system registers, the world switch, the heap.
//!
//! Everything else in the core gets safe functions from here.

pub mod boot;
pub mod cpu;
pub mod exception;
pub mod heap;
pub mod mem;
pub mod mmu;
pub mod sysreg;
pub mod vgic_hw;

use crate::config::VmTable;
use crate::platform::BoardDesc;
use core::fmt;
use core::sync::atomic::{AtomicPtr, Ordering};

unsafe extern "Rust" {
    /// The board table, defined by `board!()` in the image crate.
    static HV_BOARD: &'static BoardDesc;
    /// The VM table, defined by `vms!()` in the image crate.
    static HV_VMS: &'static VmTable;
}

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
    static __hv_region_end: u8;
}

/// The board this image was generated for.
pub fn board() -> &'static BoardDesc {
    // SAFETY: `HV_BOARD` is an immutable static emitted by `board!()`; reading it is a
    // plain load of a `&'static` reference.
    unsafe { HV_BOARD }
}

/// The VM table this image was generated with.
pub fn vm_table() -> &'static VmTable {
    // SAFETY: as for `board()`, an immutable static emitted by `vms!()`.
    unsafe { HV_VMS }
}

/// `[start, end)` of the hypervisor image in memory, and the end of its reserved region.
pub fn image_layout() -> (u64, u64, u64) {
    (
        core::ptr::addr_of!(__image_start) as u64,
        core::ptr::addr_of!(__image_end) as u64,
        core::ptr::addr_of!(__hv_region_end) as u64,
    )
}

pub use heap::{early_span, grow_home_heap, heap_used, init_heap};

type EmergencyWriter = fn(fmt::Arguments<'_>);
static EMERGENCY: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Registers the function used to print fatal errors (set once the console is up).
pub fn set_emergency_console(f: EmergencyWriter) {
    EMERGENCY.store(f as *mut (), Ordering::Release);
}

/// Prints through the emergency console, if one is registered.
pub fn console_emergency(args: fmt::Arguments<'_>) {
    let p = EMERGENCY.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: the only non-null value ever stored is an `EmergencyWriter` fn pointer.
        let f: EmergencyWriter = unsafe { core::mem::transmute::<*mut (), EmergencyWriter>(p) };
        f(args);
    }
}

/// Runs a vCPU until its next exit. The caller (the run loop) has loaded the vCPU's EL1
/// state and its VM's VTTBR_EL2; EL2 was configured by [`cpu::init_el2`], so stage-2 is on
/// and the guest reaches only memory its VM was given.
pub fn run_guest(regs: &mut exception::GuestRegs) -> exception::ExitKind {
    // SAFETY: (1) HCR_EL2.VM was set by `cpu::init_el2` before any vCPU runs and VTTBR_EL2
    // holds the tables of this vCPU's VM, which map only that VM's RAM; (2) the run loop
    // restored this vCPU's EL1 context before calling.
    unsafe { exception::guest_enter(regs) }
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    console_emergency(format_args!(
        "\n[hv] PANIC on CPU {}: {}\n",
        cpu::current_index(),
        info
    ));
    loop {
        cpu::wait_for_interrupt();
    }
}
