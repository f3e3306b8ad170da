//! vCPU scheduling: a per-physical-CPU run queue (pure state machine) and vCPU placement.
//!
//! Every vCPU is pinned to one physical CPU by [`place`] / [`place_numa`] at VM creation.
//! Each physical CPU keeps a [`RunQueue`] of the vCPUs pinned to it (of all VMs) and asks
//! it which one to run; the queue works in counter ticks (`CNTPCT_EL0`) and never reads a
//! clock itself, so the run loop in `arch/`-facing code passes `now` and programs the EL2
//! timer with [`RunQueue::next_deadline`].
//!
//! ```
//! use hypervisor::sched::{time_slice_ticks, RunQueue, VcpuRunState};
//! let mut rq = RunQueue::new(time_slice_ticks(62_500_000));
//! rq.add('a', VcpuRunState::Runnable).unwrap();
//! rq.add('b', VcpuRunState::Runnable).unwrap();
//! assert_eq!(rq.pick_next(0), Some('a'));
//! assert_eq!(rq.next_deadline(), Some(625_000)); // 10 ms at 62.5 MHz: time to switch
//! assert_eq!(rq.pick_next(625_000), Some('b'));
//! ```
#![deny(unsafe_code)]

use crate::types::{PcpuId, VcpuId, VmId};
use alloc::vec;
use alloc::vec::Vec;

/// Length of a time slice: 10 ms.
pub const TIME_SLICE_MS: u64 = 10;

/// A time slice in counter ticks for a counter running at `counter_hz` (`CNTFRQ_EL0`);
/// at least one tick.
pub const fn time_slice_ticks(counter_hz: u64) -> u64 {
    let ticks = counter_hz / 1000 * TIME_SLICE_MS;
    if ticks == 0 {
        1
    } else {
        ticks
    }
}

/// Where a vCPU stands with respect to running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuRunState {
    /// Powered off (never started, or after PSCI `CPU_OFF`); waits for `CPU_ON`.
    Off,
    /// Ready to run.
    Runnable,
    /// Waiting in WFI for an interrupt, or until the counter reaches `wake_at` (its
    /// virtual timer's deadline converted to physical ticks).
    Blocked {
        /// Physical counter value at which to wake up regardless of interrupts.
        wake_at: Option<u64>,
    },
    /// Its VM is stopped (`SYSTEM_OFF`, a fatal guest error); never runs again.
    Stopped,
}

/// Errors from [`RunQueue`] operations: bugs in the caller's bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchedError {
    /// The handle is not in this queue.
    #[error("vCPU is not in this physical CPU's run queue: check the placement it was given")]
    NotQueued,
    /// The handle is already in this queue.
    #[error("vCPU is already in this run queue: add each vCPU once")]
    AlreadyQueued,
}

#[derive(Clone, Copy, Debug)]
struct Entry<H> {
    handle: H,
    state: VcpuRunState,
}

/// The run queue of one physical CPU: round robin among runnable vCPUs, with a time slice.
///
/// `H` is whatever names a vCPU to the caller (an index into its local table, or
/// `(VmId, VcpuId)`).
#[derive(Clone, Debug)]
pub struct RunQueue<H> {
    entries: Vec<Entry<H>>,
    /// Index of the vCPU last returned by `pick_next`.
    current: Option<usize>,
    /// Counter value at which the current vCPU's slice ends.
    slice_end: u64,
    slice: u64,
}

impl<H: Copy + Eq> RunQueue<H> {
    /// An empty queue whose slices last `slice_ticks` counter ticks.
    pub fn new(slice_ticks: u64) -> Self {
        Self {
            entries: Vec::new(),
            current: None,
            slice_end: 0,
            slice: slice_ticks.max(1),
        }
    }

    /// Adds a vCPU in `state`.
    pub fn add(&mut self, handle: H, state: VcpuRunState) -> Result<(), SchedError> {
        if self.index(handle).is_ok() {
            return Err(SchedError::AlreadyQueued);
        }
        self.entries.push(Entry { handle, state });
        Ok(())
    }

    fn index(&self, handle: H) -> Result<usize, SchedError> {
        self.entries
            .iter()
            .position(|e| e.handle == handle)
            .ok_or(SchedError::NotQueued)
    }

    fn entry_mut(&mut self, handle: H) -> Result<&mut Entry<H>, SchedError> {
        let i = self.index(handle)?;
        self.entries.get_mut(i).ok_or(SchedError::NotQueued)
    }

    /// Number of vCPUs in the queue.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no vCPU is pinned here.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The state of a vCPU.
    pub fn state(&self, handle: H) -> Result<VcpuRunState, SchedError> {
        let i = self.index(handle)?;
        self.entries
            .get(i)
            .map(|e| e.state)
            .ok_or(SchedError::NotQueued)
    }

    /// Sets a vCPU's state (power on/off, VM stopped).
    pub fn set_state(&mut self, handle: H, state: VcpuRunState) -> Result<(), SchedError> {
        self.entry_mut(handle)?.state = state;
        Ok(())
    }

    /// The vCPU executed WFI with nothing pending: it waits for [`RunQueue::wake`] or for
    /// the counter to reach `wake_at`. Only a runnable vCPU blocks.
    pub fn block(&mut self, handle: H, wake_at: Option<u64>) -> Result<(), SchedError> {
        let e = self.entry_mut(handle)?;
        if e.state == VcpuRunState::Runnable {
            e.state = VcpuRunState::Blocked { wake_at };
        }
        Ok(())
    }

    /// An interrupt became pending for a vCPU: a blocked one becomes runnable. Returns
    /// whether it was blocked (so the caller knows to reschedule or kick this CPU).
    pub fn wake(&mut self, handle: H) -> Result<bool, SchedError> {
        let e = self.entry_mut(handle)?;
        let was_blocked = matches!(e.state, VcpuRunState::Blocked { .. });
        if was_blocked {
            e.state = VcpuRunState::Runnable;
        }
        Ok(was_blocked)
    }

    /// The current vCPU gives up the rest of its slice (it just woke another vCPU of this
    /// CPU, e.g. with an SGI): the next [`RunQueue::pick_next`] moves on round robin.
    pub fn yield_current(&mut self) {
        self.slice_end = 0;
    }

    /// The vCPU last returned by [`RunQueue::pick_next`].
    pub fn current(&self) -> Option<H> {
        self.current
            .and_then(|i| self.entries.get(i))
            .map(|e| e.handle)
    }

    fn is_runnable(&self, i: usize) -> bool {
        self.entries
            .get(i)
            .is_some_and(|e| e.state == VcpuRunState::Runnable)
    }

    /// Chooses the vCPU to run at counter value `now`.
    ///
    /// Blocked vCPUs whose `wake_at` has passed become runnable first. The current vCPU
    /// keeps the CPU until its slice ends, unless it is no longer runnable; then the next
    /// runnable vCPU after it (round robin) gets a fresh slice. `None`: idle until an
    /// interrupt or [`RunQueue::next_deadline`].
    pub fn pick_next(&mut self, now: u64) -> Option<H> {
        for e in &mut self.entries {
            if let VcpuRunState::Blocked {
                wake_at: Some(deadline),
            } = e.state
            {
                if deadline <= now {
                    e.state = VcpuRunState::Runnable;
                }
            }
        }
        if let Some(c) = self.current {
            if self.is_runnable(c) && now < self.slice_end {
                return self.current();
            }
        }
        let n = self.entries.len();
        let start = self.current.map_or(0, |c| c + 1);
        let next = (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.is_runnable(i));
        self.current = next;
        if next.is_some() {
            self.slice_end = now.saturating_add(self.slice);
        }
        self.current()
    }

    /// The earliest counter value at which [`RunQueue::pick_next`] must run again without
    /// any interrupt: the end of the current slice if another vCPU is waiting for the CPU,
    /// or the earliest `wake_at` of a blocked vCPU. `None`: only an interrupt changes
    /// anything.
    pub fn next_deadline(&self) -> Option<u64> {
        let slice_end = self.current.filter(|&c| self.is_runnable(c)).and_then(|c| {
            let others = (0..self.entries.len()).any(|i| i != c && self.is_runnable(i));
            others.then_some(self.slice_end)
        });
        let wake = self
            .entries
            .iter()
            .filter_map(|e| match e.state {
                VcpuRunState::Blocked { wake_at } => wake_at,
                _ => None,
            })
            .min();
        match (slice_end, wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A NUMA node (a socket on a dual-socket server such as Mt. Jade).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NumaNode(pub u32);

/// Where a VM's vCPUs may go (the VM file's `numa-node` / `numa`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NumaChoice {
    /// All on one node: the least loaded (load per CPU), the lowest on a tie.
    #[default]
    Local,
    /// All on this node.
    Node(NumaNode),
    /// vCPU `k` on the `k % nodes`-th node that has CPUs: the VM spans the nodes.
    Spread,
}

/// What placement needs to know about one VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmPlacement {
    /// Number of vCPUs.
    pub vcpus: u32,
    /// Which node(s) its vCPUs (and so its memory) use.
    pub numa: NumaChoice,
}

/// Errors from [`place`] and [`place_numa`]: the VM table does not fit the board.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// The board has no physical CPU to run vCPUs on.
    #[error("no physical CPU to place vCPUs on: the board's CPU table is empty")]
    NoPcpus,
    /// A VM asks for a node that has no physical CPU.
    #[error(
        "VM {vm} asks for NUMA node {}, which has no CPU on this board: pick another \
         node in the VM table or drop the node preference",
        node.0
    )]
    NodeWithoutCpus {
        /// The VM.
        vm: VmId,
        /// The node it asked for.
        node: NumaNode,
    },
}

/// Pins every vCPU to a physical CPU, VM after VM, over `pcpus` CPUs of one node:
/// `vcpus_per_vm[i]` is the vCPU count of VM `i`.
pub fn place(
    vcpus_per_vm: &[u32],
    pcpus: usize,
) -> Result<Vec<(VmId, VcpuId, PcpuId)>, PlacementError> {
    let vms: Vec<VmPlacement> = vcpus_per_vm
        .iter()
        .map(|&vcpus| VmPlacement {
            vcpus,
            numa: NumaChoice::Local,
        })
        .collect();
    place_numa(&vms, &vec![NumaNode(0); pcpus])
}

/// Pins every vCPU of every VM to a physical CPU with [`place_vm`], VM after VM, each
/// seeing the load the earlier ones left. `pcpu_nodes[p]` is the node of physical CPU `p`.
pub fn place_numa(
    vms: &[VmPlacement],
    pcpu_nodes: &[NumaNode],
) -> Result<Vec<(VmId, VcpuId, PcpuId)>, PlacementError> {
    let mut load = vec![0u32; pcpu_nodes.len()];
    let mut out = Vec::new();
    for (i, vm) in vms.iter().enumerate() {
        let pcpus = place_vm(VmId(i), vm.vcpus, vm.numa, pcpu_nodes, &mut load)?;
        out.extend(
            pcpus
                .into_iter()
                .enumerate()
                .map(|(v, p)| (VmId(i), VcpuId(v), p)),
        );
    }
    Ok(out)
}

/// Pins the `vcpus` vCPUs of VM `vm` to physical CPUs: `pcpu_nodes[p]` is the node of
/// physical CPU `p` and `load[p]` how many vCPUs it already runs (updated here).
///
/// The node comes from `numa` ([`NumaChoice`]); within a node each vCPU goes to the least
/// loaded CPU (the lowest on a tie), so a VM's vCPUs land on distinct CPUs when there are
/// enough. Returns the CPU of vCPU 0, 1, ...
pub fn place_vm(
    vm: VmId,
    vcpus: u32,
    numa: NumaChoice,
    pcpu_nodes: &[NumaNode],
    load: &mut [u32],
) -> Result<Vec<PcpuId>, PlacementError> {
    let n = pcpu_nodes.len().min(load.len());
    if n == 0 {
        return Err(PlacementError::NoPcpus);
    }
    let mut nodes: Vec<NumaNode> = pcpu_nodes[..n].to_vec();
    nodes.sort_unstable();
    nodes.dedup();
    let cpus_of = |node: NumaNode| (0..n).filter(move |&p| pcpu_nodes[p] == node);
    let local = |load: &[u32]| {
        // Least load per CPU: compare sum_a / cnt_a < sum_b / cnt_b without dividing.
        let weight = |node: NumaNode| {
            let (sum, cnt) =
                cpus_of(node).fold((0u64, 0u64), |(s, c), p| (s + u64::from(load[p]), c + 1));
            (sum, cnt.max(1))
        };
        let mut best = nodes[0];
        for &node in &nodes[1..] {
            let ((s, c), (bs, bc)) = (weight(node), weight(best));
            if s * bc < bs * c {
                best = node;
            }
        }
        best
    };
    let home = match numa {
        NumaChoice::Node(node) if !nodes.contains(&node) => {
            return Err(PlacementError::NodeWithoutCpus { vm, node })
        }
        NumaChoice::Node(node) => Some(node),
        NumaChoice::Local => Some(local(load)),
        NumaChoice::Spread => None,
    };
    let mut out = Vec::with_capacity(vcpus as usize);
    for k in 0..vcpus as usize {
        let node = home.unwrap_or(nodes[k % nodes.len()]);
        let p = cpus_of(node)
            .min_by_key(|&p| load[p])
            .ok_or(PlacementError::NoPcpus)?;
        load[p] += 1;
        out.push(PcpuId(p));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLICE: u64 = 100;

    fn queue(states: &[VcpuRunState]) -> RunQueue<usize> {
        let mut rq = RunQueue::new(SLICE);
        for (i, s) in states.iter().enumerate() {
            rq.add(i, *s).unwrap();
        }
        rq
    }

    const R: VcpuRunState = VcpuRunState::Runnable;

    #[test]
    fn slice_is_10_ms_of_counter_ticks() {
        assert_eq!(time_slice_ticks(62_500_000), 625_000);
        assert_eq!(time_slice_ticks(1_000_000_000), 10_000_000);
        assert_eq!(time_slice_ticks(0), 1);
    }

    #[test]
    fn adding_a_vcpu_twice_is_an_error() {
        let mut rq = queue(&[R]);
        assert_eq!(rq.add(0, R), Err(SchedError::AlreadyQueued));
    }

    #[test]
    fn unknown_vcpu_is_an_error() {
        let mut rq = queue(&[R]);
        assert_eq!(rq.wake(7), Err(SchedError::NotQueued));
        assert_eq!(rq.block(7, None), Err(SchedError::NotQueued));
    }

    #[test]
    fn empty_queue_idles() {
        let mut rq: RunQueue<usize> = RunQueue::new(SLICE);
        assert_eq!(rq.pick_next(0), None);
        assert_eq!(rq.next_deadline(), None);
    }

    #[test]
    fn current_vcpu_keeps_the_cpu_until_its_slice_ends() {
        let mut rq = queue(&[R, R]);
        assert_eq!(rq.pick_next(0), Some(0));
        assert_eq!(rq.pick_next(SLICE - 1), Some(0));
        assert_eq!(rq.pick_next(SLICE), Some(1));
    }

    #[test]
    fn round_robin_is_fair_over_many_slices() {
        let mut rq = queue(&[R, R, R]);
        let mut runs = [0u32; 3];
        let mut now = 0;
        for _ in 0..300 {
            let v = rq.pick_next(now).unwrap();
            runs[v] += 1;
            now += SLICE;
        }
        assert_eq!(runs, [100, 100, 100]);
    }

    #[test]
    fn off_and_stopped_vcpus_never_run() {
        let mut rq = queue(&[VcpuRunState::Off, R, VcpuRunState::Stopped]);
        for k in 0..10 {
            assert_eq!(rq.pick_next(k * SLICE), Some(1));
        }
    }

    #[test]
    fn lone_vcpu_gets_no_slice_deadline() {
        let mut rq = queue(&[R, VcpuRunState::Off]);
        rq.pick_next(0);
        assert_eq!(rq.next_deadline(), None);
    }

    #[test]
    fn slice_end_is_the_deadline_when_another_vcpu_waits() {
        let mut rq = queue(&[R, R]);
        rq.pick_next(50);
        assert_eq!(rq.next_deadline(), Some(50 + SLICE));
    }

    #[test]
    fn blocking_the_current_vcpu_switches_at_once() {
        let mut rq = queue(&[R, R]);
        assert_eq!(rq.pick_next(0), Some(0));
        rq.block(0, None).unwrap();
        assert_eq!(rq.pick_next(1), Some(1));
        assert_eq!(rq.pick_next(SLICE + 1), Some(1), "0 stays blocked");
    }

    #[test]
    fn all_blocked_idles_until_the_earliest_wake_up() {
        let mut rq = queue(&[R, R]);
        rq.pick_next(0);
        rq.block(0, Some(500)).unwrap();
        rq.block(1, Some(300)).unwrap();
        assert_eq!(rq.pick_next(10), None);
        assert_eq!(rq.next_deadline(), Some(300));
    }

    #[test]
    fn blocked_vcpu_wakes_when_its_deadline_passes() {
        let mut rq = queue(&[R]);
        rq.pick_next(0);
        rq.block(0, Some(300)).unwrap();
        assert_eq!(rq.pick_next(299), None);
        assert_eq!(rq.pick_next(300), Some(0));
        assert_eq!(rq.state(0), Ok(VcpuRunState::Runnable));
    }

    #[test]
    fn blocked_vcpu_without_deadline_waits_for_wake() {
        let mut rq = queue(&[R]);
        rq.pick_next(0);
        rq.block(0, None).unwrap();
        assert_eq!(rq.pick_next(u64::MAX), None);
        assert_eq!(rq.wake(0), Ok(true));
        assert_eq!(rq.pick_next(u64::MAX), Some(0));
    }

    #[test]
    fn waking_a_runnable_vcpu_changes_nothing() {
        let mut rq = queue(&[R]);
        assert_eq!(rq.wake(0), Ok(false));
        assert_eq!(rq.state(0), Ok(R));
    }

    #[test]
    fn blocking_an_off_vcpu_leaves_it_off() {
        let mut rq = queue(&[VcpuRunState::Off]);
        rq.block(0, Some(1)).unwrap();
        assert_eq!(rq.state(0), Ok(VcpuRunState::Off));
    }

    #[test]
    fn woken_vcpu_waits_for_the_running_slice_to_end() {
        let mut rq = queue(&[R, R]);
        rq.pick_next(0);
        rq.block(1, None).unwrap();
        assert_eq!(rq.next_deadline(), None);
        rq.wake(1).unwrap();
        assert_eq!(rq.next_deadline(), Some(SLICE));
        assert_eq!(rq.pick_next(10), Some(0));
        assert_eq!(rq.pick_next(SLICE), Some(1));
    }

    #[test]
    fn deadline_is_the_earlier_of_slice_end_and_wake_up() {
        let mut rq = queue(&[R, R, R]);
        rq.pick_next(0);
        rq.block(2, Some(40)).unwrap();
        assert_eq!(rq.next_deadline(), Some(40));
        rq.set_state(2, VcpuRunState::Blocked { wake_at: Some(400) })
            .unwrap();
        assert_eq!(rq.next_deadline(), Some(SLICE));
    }

    #[test]
    fn four_vcpus_on_two_pcpus_alternate() {
        let p = place(&[4], 2).unwrap();
        let pcpus: Vec<usize> = p.iter().map(|(_, _, c)| c.0).collect();
        assert_eq!(pcpus, [0, 1, 0, 1]);
        assert_eq!(p[3], (VmId(0), VcpuId(3), PcpuId(1)));
    }

    #[test]
    fn placement_continues_round_robin_across_vms() {
        let p = place(&[1, 1, 1], 2).unwrap();
        assert_eq!(
            p,
            [
                (VmId(0), VcpuId(0), PcpuId(0)),
                (VmId(1), VcpuId(0), PcpuId(1)),
                (VmId(2), VcpuId(0), PcpuId(0)),
            ]
        );
    }

    #[test]
    fn placement_balances_load() {
        let p = place(&[3, 2, 4], 4).unwrap();
        let mut load = [0; 4];
        for (_, _, c) in &p {
            load[c.0] += 1;
        }
        assert_eq!(p.len(), 9);
        assert!(load.iter().max().unwrap() - load.iter().min().unwrap() <= 1);
    }

    #[test]
    fn placement_without_pcpus_is_an_error() {
        assert_eq!(place(&[1], 0), Err(PlacementError::NoPcpus));
    }

    #[test]
    fn numa_placement_keeps_a_vm_on_its_node() {
        let nodes = [NumaNode(0), NumaNode(0), NumaNode(1), NumaNode(1)];
        let vms = [
            VmPlacement {
                vcpus: 3,
                numa: NumaChoice::Node(NumaNode(1)),
            },
            VmPlacement {
                vcpus: 2,
                numa: NumaChoice::Local,
            },
        ];
        let p = place_numa(&vms, &nodes).unwrap();
        for (vm, _, c) in &p {
            if *vm == VmId(0) {
                assert!(c.0 >= 2, "VM 0 vCPU on {c:?}, outside node 1");
            }
        }
        // The unconstrained VM fills the idle node first.
        let vm1: Vec<usize> = p
            .iter()
            .filter(|(vm, _, _)| *vm == VmId(1))
            .map(|(_, _, c)| c.0)
            .collect();
        assert_eq!(vm1, [0, 1]);
    }

    const TWO_SOCKETS: [NumaNode; 4] = [NumaNode(0), NumaNode(0), NumaNode(1), NumaNode(1)];

    #[test]
    fn a_local_vm_stays_on_one_node_the_least_loaded() {
        let mut load = [0; 4];
        let a = place_vm(VmId(0), 2, NumaChoice::Local, &TWO_SOCKETS, &mut load).unwrap();
        assert_eq!(a, [PcpuId(0), PcpuId(1)]);
        // Node 0 is busy now: the next local VM goes to node 1, both vCPUs.
        let b = place_vm(VmId(1), 2, NumaChoice::Local, &TWO_SOCKETS, &mut load).unwrap();
        assert_eq!(b, [PcpuId(2), PcpuId(3)]);
        // More vCPUs than the node has CPUs: they double up on the node, not spill over.
        let c = place_vm(VmId(2), 3, NumaChoice::Local, &TWO_SOCKETS, &mut load).unwrap();
        assert!(c.iter().all(|p| p.0 < 2), "{c:?}");
        assert_eq!(load, [3, 2, 1, 1]);
    }

    #[test]
    fn a_pinned_vm_goes_to_its_node_even_when_it_is_busier() {
        let mut load = [0, 0, 5, 5];
        let p = place_vm(
            VmId(0),
            2,
            NumaChoice::Node(NumaNode(1)),
            &TWO_SOCKETS,
            &mut load,
        )
        .unwrap();
        assert_eq!(p, [PcpuId(2), PcpuId(3)]);
    }

    #[test]
    fn a_spread_vm_has_vcpus_on_every_node() {
        let mut load = [0; 4];
        let p = place_vm(VmId(0), 4, NumaChoice::Spread, &TWO_SOCKETS, &mut load).unwrap();
        assert_eq!(p, [PcpuId(0), PcpuId(2), PcpuId(1), PcpuId(3)]);
        let nodes: Vec<NumaNode> = p.iter().map(|c| TWO_SOCKETS[c.0]).collect();
        assert_eq!(nodes, [NumaNode(0), NumaNode(1), NumaNode(0), NumaNode(1)]);
    }

    #[test]
    fn numa_node_without_cpus_is_an_error() {
        let vms = [VmPlacement {
            vcpus: 1,
            numa: NumaChoice::Node(NumaNode(3)),
        }];
        assert_eq!(
            place_numa(&vms, &[NumaNode(0)]),
            Err(PlacementError::NodeWithoutCpus {
                vm: VmId(0),
                node: NumaNode(3)
            })
        );
    }

    #[test]
    fn yield_hands_the_cpu_to_the_next_runnable_vcpu_at_once() {
        let mut rq = RunQueue::new(100);
        rq.add(0u8, VcpuRunState::Runnable).unwrap();
        rq.add(1u8, VcpuRunState::Runnable).unwrap();
        assert_eq!(rq.pick_next(0), Some(0));
        rq.yield_current();
        assert_eq!(rq.pick_next(1), Some(1));
    }

    #[test]
    fn yield_with_nobody_else_runnable_keeps_the_vcpu() {
        let mut rq = RunQueue::new(100);
        rq.add(0u8, VcpuRunState::Runnable).unwrap();
        rq.add(1u8, VcpuRunState::Blocked { wake_at: None })
            .unwrap();
        assert_eq!(rq.pick_next(0), Some(0));
        rq.yield_current();
        assert_eq!(rq.pick_next(1), Some(0));
    }
}
