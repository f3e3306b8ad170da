//! The physical console: hypervisor messages, and every VM's virtual UART multiplexed onto it.
//!
//! Output of a VM is written line by line, each line tagged with the VM's name
//! (`[linux0] ...`). Input goes to one VM at a time: `Ctrl-]` then a digit, `n` or `p`
//! switches it (the keys: [`crate::conmux::keys_help`]), `Ctrl-]` twice sends a literal
//! `Ctrl-]`.

use crate::plugin::Console;
use crate::sync::Mutex;
use core::fmt::{self, Write};
use spin::Once;

pub use crate::conmux::{InputRouter, Routed, SWITCH_KEY};

static CONSOLE: Once<&'static dyn Console> = Once::new();
static LOCK: Mutex<()> = Mutex::new(());

/// Installs the board's console driver.
pub fn install(console: &'static dyn Console) {
    CONSOLE.call_once(|| console);
    crate::arch::set_emergency_console(emergency_print);
}

/// True once a console driver is installed.
pub fn is_up() -> bool {
    CONSOLE.get().is_some()
}

struct Raw;

impl Write for Raw {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(c) = CONSOLE.get() {
            for chunk in s.as_bytes().split_inclusive(|&b| b == b'\n') {
                if let Some((&b'\n', head)) = chunk.split_last() {
                    c.write_bytes(head);
                    c.write_bytes(b"\r\n");
                } else {
                    c.write_bytes(chunk);
                }
            }
        }
        Ok(())
    }
}

/// Prints formatted text atomically with respect to other console users.
pub fn print(args: fmt::Arguments<'_>) {
    let _g = LOCK.lock();
    let _ = Raw.write_fmt(args);
}

fn emergency_print(args: fmt::Arguments<'_>) {
    // Do not wait for the lock: the holder may be the CPU that faulted.
    let _ = Raw.write_fmt(args);
}

/// `println!` for the hypervisor console.
#[macro_export]
macro_rules! hvprintln {
    () => {
        $crate::runtime::console::print(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::runtime::console::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Prints one line of a VM's console output, tagged with the VM's name (the
/// [`crate::conmux::LineSink`] of every VM).
pub fn print_vm_line(tag: &str, line: &[u8]) {
    super::mgmt::record_console(tag, line);
    let _g = LOCK.lock();
    let mut w = Raw;
    let _ = write!(w, "[{tag}] ");
    if let Some(c) = CONSOLE.get() {
        c.write_bytes(line);
        c.write_bytes(b"\r\n");
    }
}

/// Turns the physical console's receive interrupt on (input is then routed to VMs).
pub fn enable_rx_interrupt() {
    if let Some(c) = CONSOLE.get() {
        c.set_rx_interrupt(true);
    }
}

/// Reads one byte from the physical console, if any.
pub fn read_byte() -> Option<u8> {
    CONSOLE.get().and_then(|c| c.read_byte())
}
