//! What is wrong with a VM definition, and where in its TOML text.

use crate::{ImageKind, MAX_PARTITION_LABEL, MAX_VCPUS};
use alloc::boxed::Box;
use alloc::string::String;
use core::ops::Range;
use thiserror::Error;

/// A place in the TOML text: a byte range and the 1-based line and column of its start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// Byte range in the text.
    pub span: Range<usize>,
    /// 1-based line of `span.start`.
    pub line: usize,
    /// 1-based column of `span.start`, in characters.
    pub column: usize,
}

impl Location {
    /// The location of `span` in `text` (a span past the end is clamped to it).
    pub fn of(text: &str, span: Range<usize>) -> Self {
        let mut start = span.start.min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let before = &text[..start];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Self {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
            span,
        }
    }
}

/// A VM definition that cannot be used: what is wrong ([`ErrorKind`]) and, where the
/// error belongs to a key or a table, where it is. Boxed: errors are rare, results are many.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{}", .0.kind)]
pub struct ConfigError(Box<Inner>);

#[derive(Clone, Debug, PartialEq, Eq)]
struct Inner {
    kind: ErrorKind,
    at: Option<Location>,
}

impl ConfigError {
    /// An error at `at` (`None`: about the whole text).
    pub fn new(kind: ErrorKind, at: Option<Location>) -> Self {
        Self(Box::new(Inner { kind, at }))
    }

    /// What is wrong, and what to write instead.
    pub fn kind(&self) -> &ErrorKind {
        &self.0.kind
    }

    /// Where; `None` for errors about the whole text (no VM at all).
    pub fn location(&self) -> Option<&Location> {
        self.0.at.as_ref()
    }

    /// Byte range in the TOML text the error belongs to.
    pub fn span(&self) -> Option<Range<usize>> {
        self.location().map(|l| l.span.clone())
    }

    /// 1-based line and column in the TOML text the error belongs to.
    pub fn line_col(&self) -> Option<(usize, usize)> {
        self.location().map(|l| (l.line, l.column))
    }

    /// Splits the error into what and where.
    pub fn into_parts(self) -> (ErrorKind, Option<Location>) {
        let Inner { kind, at } = *self.0;
        (kind, at)
    }
}

/// What is wrong with a VM definition. The messages say what to write instead.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ErrorKind {
    /// TOML syntax error, a wrong type, a missing or an unknown field.
    #[error("{message}")]
    Syntax {
        /// `toml`'s message.
        message: String,
    },
    /// The text declares no VM.
    #[error("the VM file declares no VM; add a `[[vm]]` table with name, vcpus, memory_mib, kernel and cmdline (or write `vm = []` for an image whose VMs all come from its datastore)")]
    NoVms,
    /// A definition meant to hold one VM holds more.
    #[error("a VM definition holds exactly one `[[vm]]` table; this is a second one: define each VM on its own")]
    MoreThanOne,
    /// `[console] escape` is not a key the console can use.
    #[error("`escape = \"{written}\"` is not a switch key the console can use; write \"ctrl-\" and a letter (not h, i, j or m, which terminals need) or one of ] \\ ^ _, e.g. escape = \"ctrl-b\"")]
    BadEscapeKey {
        /// What was written.
        written: String,
    },
    /// `[console]` in the definition of a single VM.
    #[error("`[console]` is a setting of the host, not of one VM: write it in the VM file the image is built with (or boots with), not in a VM's own definition")]
    HostSettingInVm,
    /// A VM has an empty name.
    #[error("VM #{index} has an empty `name`; write e.g. name = \"linux\"")]
    EmptyName {
        /// Position of the `[[vm]]` table (0-based).
        index: usize,
    },
    /// Two VMs share a name.
    #[error("VM name `{name}` is used twice; give each `[[vm]]` a unique `name`")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
    /// `vcpus` is 0 or above [`MAX_VCPUS`].
    #[error("VM `{vm}`: vcpus = {vcpus} is out of range; write a value in 1..={MAX_VCPUS}")]
    VcpusOutOfRange {
        /// VM name.
        vm: String,
        /// Value given.
        vcpus: u32,
    },
    /// `numa-node` and `numa = "spread"` together.
    #[error("VM `{vm}`: numa-node = {node} pins the VM to one node, numa = \"spread\" spreads it over all; write one of them")]
    NumaNodeAndSpread {
        /// VM name.
        vm: String,
        /// The node written.
        node: u32,
    },
    /// `numa-node` names a node the board does not have.
    #[error("VM `{vm}`: numa-node = {node}, but board `{board}` has {nodes} NUMA node(s); write a node in 0..{nodes}, or leave `numa-node` out")]
    UnknownNumaNode {
        /// VM name.
        vm: String,
        /// The node written.
        node: u32,
        /// Board name.
        board: String,
        /// The board's node count.
        nodes: u32,
    },
    /// `memory_mib` is below 2.
    #[error("VM `{vm}`: memory_mib = {memory_mib} is too small; write at least 2 (guest RAM is mapped in 2 MiB blocks)")]
    MemoryTooSmall {
        /// VM name.
        vm: String,
        /// Value given.
        memory_mib: u64,
    },
    /// `memory_mib` is not a multiple of 2.
    #[error("VM `{vm}`: memory_mib = {memory_mib} is not a multiple of 2; write {rounded} (guest RAM is mapped in 2 MiB blocks)")]
    MemoryNotAligned {
        /// VM name.
        vm: String,
        /// Value given.
        memory_mib: u64,
        /// The next multiple of 2.
        rounded: u64,
    },
    /// `memory_mib` overflows a 64-bit byte count.
    #[error("VM `{vm}`: memory_mib = {memory_mib} is larger than any board's RAM; write a size in MiB that the board can hold")]
    MemoryTooLarge {
        /// VM name.
        vm: String,
        /// Value given.
        memory_mib: u64,
    },
    /// An image path is empty.
    #[error("VM `{vm}`: {field} = \"\" names no file; write the path of the {field} image")]
    EmptyImagePath {
        /// VM name.
        vm: String,
        /// Which image.
        field: ImageKind,
    },
    /// A disk's partition label is empty or longer than GPT allows.
    #[error(
        "VM `{vm}`: disk partition label `{label}` must be 1..={MAX_PARTITION_LABEL} characters \
         (a GPT partition name); write the label given to the partition when the disk was made"
    )]
    BadPartitionLabel {
        /// The VM.
        vm: String,
        /// The label written.
        label: String,
    },
    /// `size-mib = 0`, or a size whose byte count overflows.
    #[error(
        "VM `{vm}`: disk `{label}` has size-mib = 0 or a size beyond 64-bit byte counts; \
         remove the key to use the whole partition"
    )]
    DiskSizeZero {
        /// The VM.
        vm: String,
        /// The disk's partition label.
        label: String,
    },
    /// A partition is used by two disks and at least one writes it.
    #[error(
        "partition `{label}` is a disk of `{first}` and of `{second}`, and at least one may \
         write it; give each VM its own partition, or make every use `read-only = true`"
    )]
    DiskShared {
        /// The partition label.
        label: String,
        /// The first VM using it.
        first: String,
        /// The second.
        second: String,
    },
    /// A NIC's MAC address is not a unicast `aa:bb:cc:dd:ee:ff`.
    #[error(
        "VM `{vm}`: NIC {index} has mac = \"{mac}\": {why}; write six hex pairs separated by `:` \
         with an even first byte, e.g. \"52:54:00:12:34:56\", or leave `mac` out for a generated one"
    )]
    BadMac {
        /// The VM.
        vm: String,
        /// The NIC's position among the VM's `[[vm.nic]]` tables.
        index: usize,
        /// What was written.
        mac: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Two NICs have the same MAC address.
    #[error("MAC address {mac} is given to a NIC of `{first}` and of `{second}`; every NIC needs its own")]
    DuplicateMac {
        /// The address.
        mac: String,
        /// The first VM.
        first: String,
        /// The second.
        second: String,
    },
    /// A NIC names a port group the board does not have.
    #[error("VM `{vm}`: NIC {index} joins port group `{group}`, which board `{board}` does not have (its groups: {known}); add `port-group \"{group}\"` to the board's `network` node or use one of those")]
    UnknownPortGroup {
        /// The VM.
        vm: String,
        /// The NIC's position.
        index: usize,
        /// The group written.
        group: String,
        /// Board name.
        board: String,
        /// The board's groups.
        known: String,
    },
    /// A passthrough device is not a device of the board.
    #[error("VM `{vm}`: passthrough device `{device}` is not a device of board `{board}`; write one of: {known}")]
    UnknownDevice {
        /// VM name.
        vm: String,
        /// Device asked for.
        device: String,
        /// Board name.
        board: String,
        /// Comma-separated devices that can be passed through.
        known: String,
    },
    /// A passthrough device is disabled on the board.
    #[error("VM `{vm}`: passthrough device `{device}` is disabled on board `{board}` ({reason}); remove it from `devices`")]
    DisabledDevice {
        /// VM name.
        vm: String,
        /// Device asked for.
        device: String,
        /// Board name.
        board: String,
        /// Why the board disables it.
        reason: String,
    },
    /// The board's console cannot be given to a guest.
    #[error("VM `{vm}`: device `{device}` is the hypervisor console of board `{board}` and cannot be passed through; pick another device")]
    ConsolePassthrough {
        /// VM name.
        vm: String,
        /// The console device.
        device: String,
        /// Board name.
        board: String,
    },
    /// A passthrough device's 4 KiB pages also hold another device's window: the VM would
    /// reach that device too.
    #[error("VM `{vm}`: device `{device}` of board `{board}` cannot be passed through: its 4 KiB page {page:#x} also holds {other}; a VM is given whole pages, so it would reach that too (pass through only devices whose pages are their own)")]
    PassthroughSharesPage {
        /// VM name.
        vm: String,
        /// The device.
        device: String,
        /// Board name.
        board: String,
        /// The shared page's address.
        page: u64,
        /// What else is in that page (`device "uart1" window `regs` [0x1000_0400, +0x100]`).
        other: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(Location::of(text, 0..1).line, 1);
        let l = Location::of(text, 10..11);
        assert_eq!((l.line, l.column), (2, 4));
        // Past the end: clamped, no panic.
        let l = Location::of(text, 100..101);
        assert_eq!((l.line, l.column), (3, 1));
        // Inside a multi-byte character: its start.
        let l = Location::of(text, 8..9);
        assert_eq!((l.line, l.column), (2, 2));
    }
}
