//! Console multiplexing logic (pure): which VM receives input, and when a partial output
//! line is a prompt worth printing. `runtime::console` applies it to the physical UART.
#![deny(unsafe_code)]

use alloc::vec::Vec;

/// The switch key, `Ctrl-]` (0x1d).
pub const SWITCH_KEY: u8 = 0x1d;

/// Input routing state: which VM receives keystrokes.
pub struct InputRouter {
    focus: usize,
    escape: bool,
}

/// What to do with one input byte.
#[derive(Debug, PartialEq, Eq)]
pub enum Routed {
    /// Deliver `byte` to VM `vm`.
    Deliver {
        /// VM index.
        vm: usize,
        /// The byte.
        byte: u8,
    },
    /// Input now goes to VM `vm`.
    Switched(usize),
    /// Consumed (first half of an escape).
    Nothing,
}

impl InputRouter {
    /// Input starts at VM 0.
    pub const fn new() -> Self {
        Self {
            focus: 0,
            escape: false,
        }
    }

    /// Routes one byte, given how many VMs exist.
    pub fn route(&mut self, byte: u8, vm_count: usize) -> Routed {
        if self.escape {
            self.escape = false;
            if byte == SWITCH_KEY {
                return Routed::Deliver {
                    vm: self.focus,
                    byte,
                };
            }
            if byte.is_ascii_digit() && ((byte - b'0') as usize) < vm_count {
                self.focus = (byte - b'0') as usize;
                return Routed::Switched(self.focus);
            }
            return Routed::Nothing;
        }
        if byte == SWITCH_KEY {
            self.escape = true;
            return Routed::Nothing;
        }
        Routed::Deliver {
            vm: self.focus,
            byte,
        }
    }
}

impl Default for InputRouter {
    fn default() -> Self {
        Self::new()
    }
}

/// True if `line` ends like an interactive prompt.
pub fn is_prompt(line: &[u8]) -> bool {
    matches!(line, [.., b'#' | b'$', b' '])
}

/// Where a VM's completed console lines go: the runtime prints them on the physical console
/// tagged with the VM's name; host tests collect them.
pub type LineSink = fn(tag: &str, line: &[u8]);

/// Longest line kept before it is emitted without its newline.
pub const MAX_LINE: usize = 512;

/// A VM's console output, cut into lines (each emitted whole, so that lines of different
/// VMs never interleave on the physical console).
pub struct VmOutput {
    tag: &'static str,
    line: Vec<u8>,
    sink: LineSink,
}

impl VmOutput {
    /// A buffer for the VM named `tag` whose lines go to `sink`.
    pub const fn new(tag: &'static str, sink: LineSink) -> Self {
        Self {
            tag,
            line: Vec::new(),
            sink,
        }
    }

    /// Appends bytes from the VM's UART, emitting each completed line.
    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match b {
                b'\n' => self.flush_line(),
                b'\r' => {}
                _ => {
                    self.line.push(b);
                    if self.line.len() >= MAX_LINE {
                        self.flush_line();
                    }
                }
            }
        }
    }

    /// Emits a partial line now (the VM stopped).
    pub fn flush_partial(&mut self) {
        if !self.line.is_empty() {
            self.flush_line();
        }
    }

    /// Emits a partial line that looks like a shell prompt waiting for input (`# `, `$ `),
    /// called when the VM goes idle; other partial lines wait for their newline so that a
    /// line written in pieces is not split.
    pub fn flush_prompt(&mut self) {
        if is_prompt(&self.line) {
            self.flush_line();
        }
    }

    fn flush_line(&mut self) {
        (self.sink)(self.tag, &self.line);
        self.line.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_prompts_are_prompts() {
        assert!(is_prompt(b"~ # "));
        assert!(is_prompt(b"user@host:~$ "));
    }

    #[test]
    fn a_line_paused_after_a_colon_or_arrow_is_not_a_prompt() {
        // `echo "userspace up: $(uname -r)"` writes "...up: " before running uname; the
        // line must not be split there.
        assert!(!is_prompt(b"[initramfs] userspace up: "));
        assert!(!is_prompt(b"timer interrupts 3012 -> "));
    }

    #[test]
    fn a_line_cut_mid_word_is_not_a_prompt() {
        assert!(!is_prompt(b"[    2.99] evm: security"));
        assert!(!is_prompt(b""));
    }

    #[test]
    fn input_goes_to_vm_0_until_switched() {
        let mut r = InputRouter::new();
        assert_eq!(r.route(b'a', 2), Routed::Deliver { vm: 0, byte: b'a' });
        assert_eq!(r.route(SWITCH_KEY, 2), Routed::Nothing);
        assert_eq!(r.route(b'1', 2), Routed::Switched(1));
        assert_eq!(r.route(b'b', 2), Routed::Deliver { vm: 1, byte: b'b' });
    }

    #[test]
    fn switch_key_twice_sends_it_and_bad_digits_are_dropped() {
        let mut r = InputRouter::new();
        r.route(SWITCH_KEY, 2);
        assert_eq!(
            r.route(SWITCH_KEY, 2),
            Routed::Deliver {
                vm: 0,
                byte: SWITCH_KEY
            }
        );
        r.route(SWITCH_KEY, 2);
        assert_eq!(r.route(b'7', 2), Routed::Nothing);
        assert_eq!(r.route(b'x', 2), Routed::Deliver { vm: 0, byte: b'x' });
    }
}
