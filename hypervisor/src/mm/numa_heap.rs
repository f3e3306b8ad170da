//! Which NUMA node's heap serves an allocation (the policy of `arch::heap`, kept here so
//! that host tests cover it).
//!
//! The hypervisor keeps one heap per NUMA node: the home node's is the free part of the
//! hypervisor's own region, every other node's a block of that node's RAM taken from the
//! pool at boot. An allocation comes from the node the calling CPU prefers (a scoped
//! override, e.g. the node of the VM being built, else the CPU's own node) and falls back
//! to the home node, then to the others; memory goes back to the heap whose range holds it.

/// Nodes with a heap of their own, at most.
pub const MAX_NODES: usize = 8;
/// "No node": no override set, or a CPU whose node is not known yet.
pub const NO_NODE: u8 = u8::MAX;

/// The node a CPU allocates from: its override when one is set, else its own node, else
/// `home`. Nodes beyond [`MAX_NODES`] have no heap and count as unset.
pub fn preferred(override_node: u8, cpu_node: u8, home: u8) -> u8 {
    [override_node, cpu_node]
        .into_iter()
        .find(|&n| usize::from(n) < MAX_NODES)
        .unwrap_or(home)
}

/// The heaps to try, in order: `preferred`, then `home`, then every other node
/// ascending, each once.
pub fn try_order(preferred: u8, home: u8) -> impl Iterator<Item = usize> {
    let first = [usize::from(preferred), usize::from(home)];
    let rest = (0..MAX_NODES).filter(move |n| !first.contains(n));
    let mut seen_first = None;
    first
        .into_iter()
        .filter(move |&n| {
            let dup = seen_first == Some(n);
            seen_first = Some(n);
            n < MAX_NODES && !dup
        })
        .chain(rest)
}

/// The node whose heap range `[start, end)` holds `addr`.
pub fn owner(ranges: &[(usize, usize)], addr: usize) -> Option<usize> {
    ranges
        .iter()
        .position(|&(start, end)| start <= addr && addr < end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn the_override_wins_then_the_cpus_node_then_home() {
        assert_eq!(preferred(1, 0, 0), 1);
        assert_eq!(preferred(NO_NODE, 1, 0), 1);
        assert_eq!(preferred(NO_NODE, NO_NODE, 2), 2);
        // A node without a heap slot is no preference.
        assert_eq!(preferred(200, 1, 0), 1);
    }

    #[test]
    fn every_node_is_tried_once_preferred_first_then_home() {
        let order: Vec<usize> = try_order(1, 0).collect();
        assert_eq!(order, [1, 0, 2, 3, 4, 5, 6, 7]);
        let order: Vec<usize> = try_order(0, 0).collect();
        assert_eq!(order, [0, 1, 2, 3, 4, 5, 6, 7]);
        let order: Vec<usize> = try_order(3, 1).collect();
        assert_eq!(order, [3, 1, 0, 2, 4, 5, 6, 7]);
    }

    #[test]
    fn memory_goes_back_to_the_heap_that_holds_it() {
        let ranges = [
            (0x4100_0000, 0x4200_0000),
            (0, 0),
            (0x8000_0000, 0x8100_0000),
        ];
        assert_eq!(owner(&ranges, 0x4100_0000), Some(0));
        assert_eq!(owner(&ranges, 0x41ff_ffff), Some(0));
        assert_eq!(owner(&ranges, 0x4200_0000), None);
        assert_eq!(owner(&ranges, 0x8000_1000), Some(2));
        // An empty range holds nothing, not even address 0.
        assert_eq!(owner(&ranges, 0), None);
    }
}
