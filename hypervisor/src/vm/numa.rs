//! A VM's NUMA layout: which host node each part of its RAM comes from, and the virtual
//! topology its device tree shows when it spans nodes.
//!
//! A VM on one node gets all its RAM from that node. A VM whose vCPUs run on several nodes
//! (`numa = "spread"`) gets one part of RAM per node, in proportion to its vCPUs there,
//! laid one after the other in guest-physical space (lowest host node first); its device
//! tree then has one virtual node per host node: `numa-node-id` on each vCPU and on one
//! memory node per part, and a `distance-map` with the board's distances.
#![deny(unsafe_code)]

use crate::mm::BLOCK_2M;
use alloc::vec::Vec;

/// Errors laying a VM's RAM out over nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NumaError {
    /// The RAM has fewer 2 MiB blocks than the VM spans nodes.
    #[error(
        "{memory_mib} MiB of RAM cannot be split over {nodes} NUMA nodes in 2 MiB blocks: \
         give the VM more RAM or drop `numa = \"spread\"`"
    )]
    TooSmall {
        /// The VM's RAM in MiB.
        memory_mib: u64,
        /// Nodes its vCPUs run on.
        nodes: usize,
    },
    /// A VM with no vCPU.
    #[error("a VM without vCPUs has no NUMA node")]
    NoVcpus,
}

/// The host nodes `vcpu_nodes` (the node of each vCPU's physical CPU) touch, ascending.
pub fn nodes_of(vcpu_nodes: &[u32]) -> Vec<u32> {
    let mut nodes = vcpu_nodes.to_vec();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
}

/// How much of `memory` bytes of guest RAM comes from which host node: `(node, bytes)` per
/// node the vCPUs run on, ascending, in proportion to the vCPUs there, each a whole number
/// of 2 MiB blocks (the last node takes the rounding). One entry for a VM on one node.
pub fn ram_split(memory: u64, vcpu_nodes: &[u32]) -> Result<Vec<(u32, u64)>, NumaError> {
    let nodes = nodes_of(vcpu_nodes);
    if nodes.is_empty() {
        return Err(NumaError::NoVcpus);
    }
    let blocks = memory / BLOCK_2M;
    let too_small = NumaError::TooSmall {
        memory_mib: memory >> 20,
        nodes: nodes.len(),
    };
    if blocks < nodes.len() as u64 {
        return Err(too_small);
    }
    let total = vcpu_nodes.len() as u64;
    let mut out = Vec::with_capacity(nodes.len());
    let mut given = 0;
    for (i, &node) in nodes.iter().enumerate() {
        let share = if i + 1 == nodes.len() {
            blocks - given
        } else {
            let on_node = vcpu_nodes.iter().filter(|&&n| n == node).count() as u64;
            // At least one block, and one left for each node after this one.
            let left_for_rest = (nodes.len() - i - 1) as u64;
            (blocks * on_node / total)
                .max(1)
                .min(blocks - given - left_for_rest)
        };
        if share == 0 {
            return Err(too_small);
        }
        given += share;
        out.push((node, share * BLOCK_2M));
    }
    Ok(out)
}

/// The virtual NUMA topology of a VM spanning nodes, as its device tree states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestNuma {
    /// Guest RAM parts in guest order: size in bytes and virtual node.
    pub memory: Vec<(u64, u32)>,
    /// Virtual node of each vCPU.
    pub vcpu_nodes: Vec<u32>,
    /// `distances[a][b]`: distance between virtual nodes `a` and `b`.
    pub distances: Vec<Vec<u32>>,
}

/// The virtual topology of a VM whose RAM parts come from host nodes `ram_nodes` (in guest
/// order, with their sizes) and whose vCPUs run on host nodes `vcpu_nodes`: virtual node
/// `k` is the `k`-th distinct host node of the RAM, distances are the host's
/// (`distance(a, b)` between host nodes). `None` when the VM uses one node only, or when
/// its vCPUs run on a node that gave it no RAM (the pool fell back to another node): the
/// guest then sees no NUMA rather than a wrong one.
pub fn guest_numa(
    ram_nodes: &[(u32, u64)],
    vcpu_nodes: &[u32],
    distance: impl Fn(u32, u32) -> u8,
) -> Option<GuestNuma> {
    let mut host: Vec<u32> = Vec::new();
    for &(node, _) in ram_nodes {
        if !host.contains(&node) {
            host.push(node);
        }
    }
    if host.len() < 2 {
        return None;
    }
    let virt = |h: u32| host.iter().position(|&n| n == h).map(|v| v as u32);
    let vcpus: Option<Vec<u32>> = vcpu_nodes.iter().map(|&h| virt(h)).collect();
    let memory: Option<Vec<(u64, u32)>> = ram_nodes
        .iter()
        .map(|&(h, size)| virt(h).map(|v| (size, v)))
        .collect();
    let distances = host
        .iter()
        .map(|&a| host.iter().map(|&b| u32::from(distance(a, b))).collect())
        .collect();
    Some(GuestNuma {
        memory: memory?,
        vcpu_nodes: vcpus?,
        distances,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn one_node_takes_all_the_ram() {
        assert_eq!(ram_split(64 * MIB, &[1, 1]), Ok(alloc::vec![(1, 64 * MIB)]));
    }

    #[test]
    fn a_spread_vm_gets_ram_from_each_node_for_its_vcpus_there() {
        assert_eq!(
            ram_split(256 * MIB, &[0, 1]),
            Ok(alloc::vec![(0, 128 * MIB), (1, 128 * MIB)])
        );
        // Three vCPUs on node 1, one on node 0: a quarter from node 0.
        assert_eq!(
            ram_split(256 * MIB, &[1, 0, 1, 1]),
            Ok(alloc::vec![(0, 64 * MIB), (1, 192 * MIB)])
        );
        // Blocks that do not divide: the last node takes the rest, all whole blocks.
        let s = ram_split(10 * MIB, &[0, 1, 2]).unwrap();
        assert_eq!(s.iter().map(|p| p.1).sum::<u64>(), 10 * MIB);
        assert!(s.iter().all(|p| p.1 % BLOCK_2M == 0 && p.1 > 0), "{s:?}");
    }

    #[test]
    fn too_little_ram_to_split_is_an_error() {
        assert_eq!(
            ram_split(2 * MIB, &[0, 1]),
            Err(NumaError::TooSmall {
                memory_mib: 2,
                nodes: 2
            })
        );
        assert_eq!(ram_split(2 * MIB, &[]), Err(NumaError::NoVcpus));
    }

    fn dist(a: u32, b: u32) -> u8 {
        if a == b {
            10
        } else {
            25
        }
    }

    #[test]
    fn virtual_nodes_follow_the_ram_and_carry_the_host_distances() {
        let g = guest_numa(&[(0, 128 * MIB), (1, 128 * MIB)], &[0, 1], dist).unwrap();
        assert_eq!(g.memory, [(128 * MIB, 0), (128 * MIB, 1)]);
        assert_eq!(g.vcpu_nodes, [0, 1]);
        assert_eq!(g.distances, [[10, 25], [25, 10]]);
        // Host nodes 2 and 5 become virtual nodes 0 and 1.
        let g = guest_numa(&[(2, 4 * MIB), (5, 4 * MIB)], &[5, 2, 5], dist).unwrap();
        assert_eq!(g.vcpu_nodes, [1, 0, 1]);
    }

    #[test]
    fn no_virtual_topology_on_one_node_or_for_a_vcpu_without_ram() {
        assert_eq!(guest_numa(&[(1, 64 * MIB)], &[1, 1], dist), None);
        // RAM fell back to node 0 for both parts' worth: vCPU on node 1 has no memory.
        assert_eq!(
            guest_numa(&[(0, 4 * MIB), (2, 4 * MIB)], &[0, 1], dist),
            None
        );
    }
}
