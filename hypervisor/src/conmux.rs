//! Console multiplexing logic (pure): which VM receives input, and when a partial output
//! line is a prompt worth printing. `runtime::console` applies it to the physical UART.
#![deny(unsafe_code)]

use alloc::vec::Vec;

/// The default switch key, `Ctrl-]` (0x1d); a VM file's `[console] escape` sets another
/// ([`InputRouter::set_switch_key`]).
pub const SWITCH_KEY: u8 = vm_config::DEFAULT_ESCAPE;

/// After [`SWITCH_KEY`], this key opens a hypervisor command line (ended by Enter).
pub const COMMAND_KEY: u8 = b':';
/// Longest hypervisor command line kept; longer input is cut.
pub const MAX_COMMAND: usize = 128;

/// Input routing state: which VM receives keystrokes, or the command line being typed.
pub struct InputRouter {
    focus: usize,
    switch: u8,
    escape: bool,
    command: Option<Vec<u8>>,
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
    /// Consumed (first half of an escape, or part of a command line).
    Nothing,
    /// A hypervisor command line was entered (`Ctrl-]` `:` ... Enter).
    Command(Vec<u8>),
    /// `Ctrl-]` `?`: list the VMs and the keys.
    List,
}

/// After [`SWITCH_KEY`]: list the VMs and the keys.
pub const LIST_KEY: u8 = b'?';
/// After [`SWITCH_KEY`]: input to the next VM slot (wrapping), for more than ten VMs.
pub const NEXT_KEY: u8 = b'n';
/// After [`SWITCH_KEY`]: input to the previous VM slot (wrapping).
pub const PREVIOUS_KEY: u8 = b'p';

/// The keys, as the boot banner and `Ctrl-]` `?` print them, for switch key `switch`.
pub fn keys_help(switch: u8) -> alloc::string::String {
    let k = vm_config::escape_key_name(switch);
    alloc::format!(
        "{k} then 0-9 picks a VM, n / p the next / previous one, ? lists them, : opens the \
         command line (`console N` picks any VM); {k} {k} sends {k}"
    )
}

impl InputRouter {
    /// Input starts at VM 0.
    pub const fn new() -> Self {
        Self {
            focus: 0,
            switch: SWITCH_KEY,
            escape: false,
            command: None,
        }
    }

    /// Routes one byte, given how many VM slots exist.
    pub fn route(&mut self, byte: u8, vm_count: usize) -> Routed {
        if let Some(line) = self.command.as_mut() {
            return match byte {
                b'\r' | b'\n' => Routed::Command(self.command.take().unwrap_or_default()),
                b if b == self.switch => {
                    // Abandons the command line.
                    self.command = None;
                    Routed::Nothing
                }
                _ => {
                    if line.len() < MAX_COMMAND {
                        line.push(byte);
                    }
                    Routed::Nothing
                }
            };
        }
        if self.escape {
            self.escape = false;
            if byte == self.switch {
                return Routed::Deliver {
                    vm: self.focus,
                    byte,
                };
            }
            if byte == COMMAND_KEY {
                self.command = Some(Vec::new());
                return Routed::Nothing;
            }
            if byte.is_ascii_digit() && ((byte - b'0') as usize) < vm_count {
                self.focus = (byte - b'0') as usize;
                return Routed::Switched(self.focus);
            }
            if byte == LIST_KEY {
                return Routed::List;
            }
            if (byte == NEXT_KEY || byte == PREVIOUS_KEY) && vm_count > 0 {
                let step = if byte == NEXT_KEY { 1 } else { vm_count - 1 };
                self.focus = (self.focus.min(vm_count - 1) + step) % vm_count;
                return Routed::Switched(self.focus);
            }
            return Routed::Nothing;
        }
        if byte == self.switch {
            self.escape = true;
            return Routed::Nothing;
        }
        Routed::Deliver {
            vm: self.focus,
            byte,
        }
    }
}

impl InputRouter {
    /// Makes `key` the switch key (a VM file's `[console] escape`).
    pub fn set_switch_key(&mut self, key: u8) {
        self.switch = key;
        self.escape = false;
    }

    /// The switch key.
    pub fn switch_key(&self) -> u8 {
        self.switch
    }

    /// Sends input to VM slot `vm` (`console N`), if it is one of `vm_count`.
    pub fn focus(&mut self, vm: usize, vm_count: usize) -> bool {
        if vm < vm_count {
            self.focus = vm;
        }
        vm < vm_count
    }

    /// The VM slot input goes to.
    pub fn focused(&self) -> usize {
        self.focus
    }
}

impl Default for InputRouter {
    fn default() -> Self {
        Self::new()
    }
}

/// A hypervisor console command (`Ctrl-]` `:` then the line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `vms`: list the VM slots and their state.
    List,
    /// `create NAME`: create and start a VM from the image's VM table.
    Create(&'a str),
    /// `stop N`: power VM `N` off now.
    Stop(usize),
    /// `start N`: start stopped VM `N` again (as after a reset: images reloaded, RAM zeroed).
    Start(usize),
    /// `destroy N`: free a stopped VM's RAM, stage-2 tables, VMID and slot.
    Destroy(usize),
    /// `power N`: press VM `N`'s power button (the guest shuts itself down).
    Power(usize),
    /// `mem`: the hypervisor's heap and the free RAM of the pool.
    Mem,
    /// `net`: the virtual switch's ports and the uplinks, with their counters.
    Net,
    /// `poweroff`: stop every VM and power the machine off.
    PowerOff,
    /// `console N`: console input to VM `N` (any slot, also beyond 9).
    Console(usize),
}

/// Why a command line was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Not a known command.
    #[error(
        "unknown command `{0}`: try vms, console N, create NAME, start N, stop N, power N, destroy N, mem, net, poweroff"
    )]
    Unknown(alloc::string::String),
    /// The argument is missing or not what the command takes.
    #[error("`{0}` takes {1}")]
    Argument(&'static str, &'static str),
}

impl<'a> Command<'a> {
    /// Parses a command line (surrounding spaces ignored).
    pub fn parse(line: &'a [u8]) -> Result<Self, CommandError> {
        let text = core::str::from_utf8(line).map_err(|_| {
            CommandError::Unknown(alloc::string::String::from_utf8_lossy(line).into_owned())
        })?;
        let mut words = text.split_ascii_whitespace();
        let verb = words.next().unwrap_or("");
        let arg = words.next();
        let number = |name: &'static str| {
            arg.and_then(|a| a.parse().ok())
                .ok_or(CommandError::Argument(name, "a VM number (see `vms`)"))
        };
        Ok(match verb {
            "vms" => Command::List,
            "create" => Command::Create(arg.ok_or(CommandError::Argument(
                "create",
                "a VM name from the VM table",
            ))?),
            "stop" => Command::Stop(number("stop")?),
            "start" => Command::Start(number("start")?),
            "destroy" => Command::Destroy(number("destroy")?),
            "power" => Command::Power(number("power")?),
            "mem" => Command::Mem,
            "net" => Command::Net,
            "poweroff" => Command::PowerOff,
            "console" => Command::Console(number("console")?),
            other => return Err(CommandError::Unknown(other.into())),
        })
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

    /// True if the partial line looks like a shell prompt waiting for input.
    pub fn shows_prompt(&self) -> bool {
        is_prompt(&self.line)
    }

    /// Emits a partial line that looks like a shell prompt waiting for input (`# `, `$ `),
    /// called when the VM goes idle; other partial lines wait for their newline so that a
    /// line written in pieces is not split.
    pub fn flush_prompt(&mut self) {
        if self.shows_prompt() {
            self.flush_line();
        }
    }

    fn flush_line(&mut self) {
        (self.sink)(self.tag, &self.line);
        self.line.clear();
    }
}

#[cfg(test)]
mod router_tests {
    use super::*;

    fn press(r: &mut InputRouter, keys: &[u8], vms: usize) -> Routed {
        let mut last = Routed::Nothing;
        for &k in keys {
            last = r.route(k, vms);
        }
        last
    }

    #[test]
    fn question_mark_lists_and_n_p_reach_every_vm_beyond_ten() {
        let mut r = InputRouter::new();
        assert_eq!(press(&mut r, &[SWITCH_KEY, LIST_KEY], 12), Routed::List);
        // From VM 9, `n` reaches 10 and 11, then wraps to 0; `p` goes back to 11.
        assert_eq!(press(&mut r, &[SWITCH_KEY, b'9'], 12), Routed::Switched(9));
        assert_eq!(
            press(&mut r, &[SWITCH_KEY, NEXT_KEY], 12),
            Routed::Switched(10)
        );
        assert_eq!(
            press(&mut r, &[SWITCH_KEY, NEXT_KEY], 12),
            Routed::Switched(11)
        );
        assert_eq!(r.route(b'x', 12), Routed::Deliver { vm: 11, byte: b'x' });
        assert_eq!(
            press(&mut r, &[SWITCH_KEY, NEXT_KEY], 12),
            Routed::Switched(0)
        );
        assert_eq!(
            press(&mut r, &[SWITCH_KEY, PREVIOUS_KEY], 12),
            Routed::Switched(11)
        );
        // `console N` reaches any slot that exists.
        assert!(r.focus(10, 12));
        assert!(!r.focus(12, 12));
        assert_eq!(r.focused(), 10);
        assert_eq!(Command::parse(b"console 11"), Ok(Command::Console(11)));
        // No VM: nothing to switch to.
        assert_eq!(press(&mut r, &[SWITCH_KEY, NEXT_KEY], 0), Routed::Nothing);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn commands_parse_with_their_arguments() {
        assert_eq!(Command::parse(b" vms "), Ok(Command::List));
        assert_eq!(
            Command::parse(b"create linux0"),
            Ok(Command::Create("linux0"))
        );
        assert_eq!(Command::parse(b"stop 3"), Ok(Command::Stop(3)));
        assert_eq!(Command::parse(b"start 3"), Ok(Command::Start(3)));
        assert_eq!(Command::parse(b"destroy 1"), Ok(Command::Destroy(1)));
        assert_eq!(Command::parse(b"power 2"), Ok(Command::Power(2)));
        assert!(matches!(
            Command::parse(b"power"),
            Err(CommandError::Argument("power", _))
        ));
        assert_eq!(Command::parse(b"mem"), Ok(Command::Mem));
        assert_eq!(Command::parse(b" net "), Ok(Command::Net));
        assert_eq!(Command::parse(b"poweroff"), Ok(Command::PowerOff));
    }

    #[test]
    fn bad_commands_say_what_to_type() {
        assert!(matches!(
            Command::parse(b"destroy x"),
            Err(CommandError::Argument("destroy", _))
        ));
        assert!(matches!(
            Command::parse(b"create"),
            Err(CommandError::Argument("create", _))
        ));
        let e = Command::parse(b"reboot").unwrap_err();
        assert!(
            e.to_string().contains("try vms, console N, create NAME"),
            "{e}"
        );
        assert!(Command::parse(&[0xff, 0xfe]).is_err());
    }

    fn route_all(r: &mut InputRouter, bytes: &[u8]) -> Vec<Routed> {
        bytes.iter().map(|&b| r.route(b, 2)).collect()
    }

    #[test]
    fn ctrl_bracket_colon_collects_a_command_line_until_enter() {
        let mut r = InputRouter::new();
        let out = route_all(&mut r, b"\x1d:destroy 1\r");
        assert_eq!(out.last(), Some(&Routed::Command(b"destroy 1".to_vec())));
        assert!(out[..out.len() - 1].iter().all(|o| *o == Routed::Nothing));
        // Back to the VM afterwards.
        assert_eq!(r.route(b'x', 2), Routed::Deliver { vm: 0, byte: b'x' });
    }

    #[test]
    fn ctrl_bracket_abandons_a_command_line() {
        let mut r = InputRouter::new();
        let out = route_all(&mut r, b"\x1d:stop\x1dx");
        assert!(out[..out.len() - 1].iter().all(|o| *o == Routed::Nothing));
        assert_eq!(out.last(), Some(&Routed::Deliver { vm: 0, byte: b'x' }));
    }

    #[test]
    fn a_command_line_is_bounded() {
        let mut r = InputRouter::new();
        r.route(SWITCH_KEY, 1);
        r.route(COMMAND_KEY, 1);
        for _ in 0..10 * MAX_COMMAND {
            r.route(b'a', 1);
        }
        let Routed::Command(line) = r.route(b'\n', 1) else {
            panic!("no command")
        };
        assert_eq!(line.len(), MAX_COMMAND);
    }

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

    #[test]
    fn a_configured_switch_key_replaces_ctrl_bracket() {
        let mut r = InputRouter::new();
        r.set_switch_key(0x02);
        assert_eq!(r.switch_key(), 0x02);
        // Ctrl-] is now an ordinary byte for the guest.
        assert_eq!(
            r.route(SWITCH_KEY, 2),
            Routed::Deliver {
                vm: 0,
                byte: SWITCH_KEY
            }
        );
        assert_eq!(r.route(0x02, 2), Routed::Nothing);
        assert_eq!(r.route(b'1', 2), Routed::Switched(1));
        r.route(0x02, 2);
        assert_eq!(r.route(0x02, 2), Routed::Deliver { vm: 1, byte: 0x02 });
        assert!(keys_help(0x02).starts_with("Ctrl-B then 0-9 picks a VM"));
        assert!(keys_help(0x02).ends_with("Ctrl-B Ctrl-B sends Ctrl-B"));
        assert!(keys_help(SWITCH_KEY).starts_with("Ctrl-] then 0-9"));
    }
}
