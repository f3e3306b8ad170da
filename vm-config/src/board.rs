//! The rules that need the board: passthrough devices and port groups.

use crate::{ConfigError, ErrorKind, NumaPolicy, VmDevice, VmNic, VmSpans};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// What may be done with a board device named by a VM's `devices`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceUse {
    /// It can be passed through.
    Passable,
    /// The board disables it, for this reason.
    Disabled {
        /// Why, as the board says it.
        reason: String,
    },
    /// It is the hypervisor's console.
    Console,
    /// One of its 4 KiB pages also holds another window (`other`), at page `page`.
    SharesPage {
        /// The shared page's address.
        page: u64,
        /// What else is in it, for messages.
        other: String,
    },
}

/// 4 KiB: the granule a VM is given MMIO by (stage 2).
pub const PAGE: u64 = 0x1000;

/// The 4 KiB pages covering the windows `windows` (`(base, size)`), merged into sorted,
/// disjoint `(base, size)` ranges: what a passed-through device's stage-2 mapping is (its
/// windows need not be page aligned; [`page_neighbour`] makes sure the pages are its own).
pub fn covering_pages(windows: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut pages: Vec<(u64, u64)> = windows
        .iter()
        .filter(|w| w.1 > 0)
        .map(|&(b, s)| {
            let start = b & !(PAGE - 1);
            let end = b.saturating_add(s).saturating_add(PAGE - 1) & !(PAGE - 1);
            (start, end)
        })
        .collect();
    pages.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (start, end) in pages {
        match out.last_mut() {
            Some(last) if start <= last.0 + last.1 => {
                last.1 = last.1.max(end - last.0);
            }
            _ => out.push((start, end - start)),
        }
    }
    out
}

/// The first window of `others` that lies in one of the 4 KiB pages covering a window of
/// `mine` (`(base, size)` pairs; `others`: `(description, base, size)`), with that page.
/// Passing a device through maps those pages into the VM, so they must be its own.
pub fn page_neighbour<'a>(
    mine: &[(u64, u64)],
    others: impl IntoIterator<Item = (String, u64, u64)> + 'a,
) -> Option<(u64, String)> {
    let pages = |base: u64, size: u64| {
        let first = base & !(PAGE - 1);
        let last = base.saturating_add(size.max(1) - 1) & !(PAGE - 1);
        (first, last)
    };
    for (what, base, size) in others {
        let (o_first, o_last) = pages(base, size);
        for &(b, s) in mine {
            let (first, last) = pages(b, s);
            if o_first <= last && first <= o_last {
                return Some((first.max(o_first), what));
            }
        }
    }
    None
}

/// What the VM rules need to know about the board: the build-time board model
/// (`platform_dsl`) and the running hypervisor's tables both answer these.
pub trait BoardFacts {
    /// The board's name, for messages.
    fn board_name(&self) -> &str;
    /// Names of the board's port groups, in the board's order.
    fn port_groups(&self) -> Vec<String>;
    /// What a VM may do with the board device `name`; `None`: the board has no such device.
    /// A disabled console is reported as disabled.
    fn device(&self, name: &str) -> Option<DeviceUse>;
    /// Names of the devices that can be passed through (for messages).
    fn passable_devices(&self) -> Vec<String>;
    /// Number of NUMA nodes (1 on a board with one socket).
    fn numa_nodes(&self) -> u32;
}

/// Checks a VM's `numa-node` against the board's nodes.
pub fn check_numa(
    board: &dyn BoardFacts,
    vm: &str,
    numa: NumaPolicy,
    spans: Option<&VmSpans>,
) -> Result<(), ConfigError> {
    let nodes = board.numa_nodes();
    match numa {
        NumaPolicy::Node(node) if node >= nodes => Err(ConfigError::new(
            ErrorKind::UnknownNumaNode {
                vm: vm.into(),
                node,
                board: board.board_name().into(),
                nodes,
            },
            spans.and_then(|s| s.numa_node.clone()),
        )),
        _ => Ok(()),
    }
}

/// Checks one VM's passthrough devices and its NICs' port groups against the board.
/// `spans` (from parsing) places the error; `None` gives errors without a location.
pub fn check_board(
    board: &dyn BoardFacts,
    vm: &str,
    devices: &[VmDevice],
    nics: &[VmNic],
    spans: Option<&VmSpans>,
) -> Result<(), ConfigError> {
    for (i, VmDevice::Passthrough(name)) in devices.iter().enumerate() {
        let at = spans.and_then(|s| s.devices.get(i)).cloned();
        let kind = match board.device(name) {
            Some(DeviceUse::Passable) => continue,
            None => {
                let known = board.passable_devices();
                ErrorKind::UnknownDevice {
                    vm: vm.into(),
                    device: name.clone(),
                    board: board.board_name().into(),
                    known: if known.is_empty() {
                        "(the board has no device to pass through)".into()
                    } else {
                        known.join(", ")
                    },
                }
            }
            Some(DeviceUse::Disabled { reason }) => ErrorKind::DisabledDevice {
                vm: vm.into(),
                device: name.clone(),
                board: board.board_name().into(),
                reason,
            },
            Some(DeviceUse::Console) => ErrorKind::ConsolePassthrough {
                vm: vm.into(),
                device: name.clone(),
                board: board.board_name().into(),
            },
            Some(DeviceUse::SharesPage { page, other }) => ErrorKind::PassthroughSharesPage {
                vm: vm.into(),
                device: name.clone(),
                board: board.board_name().into(),
                page,
                other,
            },
        };
        return Err(ConfigError::new(kind, at));
    }
    for (index, n) in nics.iter().enumerate() {
        let Some(group) = &n.port_group else {
            continue;
        };
        let groups = board.port_groups();
        if groups.iter().any(|g| g == group) {
            continue;
        }
        let known: Vec<String> = groups.iter().map(|g| format!("`{g}`")).collect();
        let at = spans
            .and_then(|s| s.nics.get(index))
            .and_then(|n| n.port_group.clone());
        let kind = ErrorKind::UnknownPortGroup {
            vm: vm.into(),
            index,
            group: group.clone(),
            board: board.board_name().into(),
            known: known.join(", "),
        };
        return Err(ConfigError::new(kind, at));
    }
    Ok(())
}
