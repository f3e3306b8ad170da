//! The hypervisor's heap, one per NUMA node ([`crate::mm::numa_heap`] says which serves an
//! allocation): the home node's is the free part of the hypervisor's region, every other
//! node's a block of its RAM from the pool ([`add_node_heap`]). A CPU allocates on its own
//! node, or on the node [`with_alloc_node`] names while a VM is being built, so that a VM's
//! vGIC, devices and stage-2 tables, and a CPU's run queue, live next to the CPUs that use
//! them.

use super::cpu;
use crate::mm::numa_heap::{self, MAX_NODES, NO_NODE};
use buddy_system_allocator::Heap;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use spin::Mutex;

/// Buddy orders: blocks up to 2^31 bytes.
const ORDER: usize = 32;
const CPUS: usize = super::boot::MAX_CPUS;

struct NodeHeaps {
    heaps: [Mutex<Heap<ORDER>>; MAX_NODES],
    /// `[start, end)` of each node's heap memory; `(0, 0)` while it has none.
    ranges: [(AtomicUsize, AtomicUsize); MAX_NODES],
    /// The node of the hypervisor's own region.
    home: AtomicU8,
    /// Each CPU's NUMA node ([`NO_NODE`] until [`set_cpu_node`]).
    cpu_node: [AtomicU8; CPUS],
    /// Each CPU's scoped override ([`with_alloc_node`]).
    override_node: [AtomicU8; CPUS],
}

#[global_allocator]
static HEAP: NodeHeaps = NodeHeaps {
    heaps: [const { Mutex::new(Heap::empty()) }; MAX_NODES],
    ranges: [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; MAX_NODES],
    home: AtomicU8::new(0),
    cpu_node: [const { AtomicU8::new(NO_NODE) }; CPUS],
    override_node: [const { AtomicU8::new(NO_NODE) }; CPUS],
};

impl NodeHeaps {
    fn preferred(&self) -> u8 {
        let home = self.home.load(Ordering::Relaxed);
        let me = cpu::current_index();
        match (self.override_node.get(me), self.cpu_node.get(me)) {
            (Some(o), Some(c)) => {
                numa_heap::preferred(o.load(Ordering::Relaxed), c.load(Ordering::Relaxed), home)
            }
            _ => home,
        }
    }

    fn ranges(&self) -> [(usize, usize); MAX_NODES] {
        core::array::from_fn(|n| {
            (
                self.ranges[n].0.load(Ordering::Acquire),
                self.ranges[n].1.load(Ordering::Acquire),
            )
        })
    }
}

// SAFETY: every block comes from one node's buddy heap, which hands a block out once until
// it is returned; `dealloc` returns it to the heap whose range holds it, the one it came
// from (the ranges never overlap: each is RAM that only that heap was given).
unsafe impl GlobalAlloc for NodeHeaps {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let home = self.home.load(Ordering::Relaxed);
        for n in numa_heap::try_order(self.preferred(), home) {
            if let Ok(p) = self.heaps[n].lock().alloc(layout) {
                return p.as_ptr();
            }
        }
        // Still before the MMU (only the early arena is in the heap): take the rest of the
        // region rather than fail; [`early_span`] then covers all of it.
        if grow_home_heap() {
            if let Ok(p) = self.heaps[0].lock().alloc(layout) {
                return p.as_ptr();
            }
        }
        core::ptr::null_mut()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let (Some(n), Some(p)) = (
            numa_heap::owner(&self.ranges(), ptr as usize),
            NonNull::new(ptr),
        ) else {
            // Not a block of ours: leaking it is the only safe answer.
            return;
        };
        // SAFETY: the caller's contract (`ptr` came from `alloc` with `layout`), and the
        // block lies in node `n`'s range, so it came from that heap.
        unsafe { self.heaps[n].lock().dealloc(p, layout) }
    }
}

/// Bytes of the region the home heap starts with, while the MMU and caches are off: the
/// boot CPU's allocations before the MMU (the RAM list, the EL2 page tables) fit in it on
/// every board, and only this much (not the whole region) then needs its cache lines
/// invalidated ([`early_span`]). A board that needs more takes the rest at once.
const EARLY_ARENA: usize = 2 << 20;

/// The end of what the home heap was given before [`grow_home_heap`]; 0 before
/// [`init_heap`].
static EARLY_END: AtomicUsize = AtomicUsize::new(0);

/// Gives the home heap the first [`EARLY_ARENA`] bytes of the free part of the hypervisor's
/// region (after the image and .bss) and returns the size of the whole free part, which the
/// heap has once [`grow_home_heap`] ran (after the MMU is on). Called once, on the boot CPU,
/// before any allocation.
pub fn init_heap() -> u64 {
    let (_, end, region_end) = super::image_layout();
    let start = (end + 0xfff) & !0xfff;
    let size = region_end.saturating_sub(start);
    let early = (size as usize).min(EARLY_ARENA);
    // SAFETY: (1) `[start, region_end)` is reserved for the hypervisor by the board's
    // `hypervisor` placement and the linker script; (2) nothing else uses it: the image and
    // .bss end at `__image_end`; (3) this runs once, before any allocation, so the home heap
    // (node 0 until `set_home_node`) is still empty; the rest of the range is added once,
    // by `grow_home_heap`.
    unsafe { HEAP.heaps[0].lock().init(start as usize, early) };
    EARLY_END.store(start as usize + early, Ordering::Release);
    HEAP.ranges[0].0.store(start as usize, Ordering::Release);
    HEAP.ranges[0]
        .1
        .store(region_end as usize, Ordering::Release);
    size
}

/// Adds the rest of the hypervisor's region to the home heap (once; later calls do
/// nothing). The boot CPU calls it once the MMU and caches are on, and the allocator when
/// the early arena runs out before that. Returns whether it added anything.
pub fn grow_home_heap() -> bool {
    let (_, _, region_end) = super::image_layout();
    let from = EARLY_END.swap(region_end as usize, Ordering::AcqRel);
    if from == 0 || from >= region_end as usize {
        return false;
    }
    // SAFETY: `[from, region_end)` is the part of the home heap's reserved range that
    // `init_heap` held back; the swap above hands it over exactly once. Before
    // `set_home_node` runs (it needs the MMU, after this), the home heap is slot 0.
    unsafe { HEAP.heaps[0].lock().add_to_heap(from, region_end as usize) };
    true
}

/// `[start, end)` of the home heap memory the boot CPU may have written with the MMU and
/// caches off: the early arena (all of the region if the arena ran out).
pub fn early_span() -> (u64, u64) {
    let start = HEAP.ranges[0].0.load(Ordering::Acquire) as u64;
    (start, EARLY_END.load(Ordering::Acquire) as u64)
}

/// Says which node the hypervisor's region is on (the home heap moves to that slot).
/// Called once on the boot CPU, before any other CPU runs and before [`add_node_heap`].
pub fn set_home_node(node: u32) {
    let Some(n) = usize::try_from(node)
        .ok()
        .filter(|&n| n < MAX_NODES && n != 0)
    else {
        return;
    };
    let mut from = HEAP.heaps[0].lock();
    let mut to = HEAP.heaps[n].lock();
    core::mem::swap(&mut *from, &mut *to);
    for i in 0..2 {
        let (a, b) = (&HEAP.ranges[0], &HEAP.ranges[n]);
        let (x, y) = if i == 0 { (&a.0, &b.0) } else { (&a.1, &b.1) };
        let v = x.swap(0, Ordering::AcqRel);
        y.store(v, Ordering::Release);
    }
    HEAP.home.store(n as u8, Ordering::Release);
}

/// Records that CPU `cpu` is on NUMA node `node`: it allocates there from now on.
pub fn set_cpu_node(cpu: usize, node: u32) {
    if let (Some(slot), Ok(node)) = (HEAP.cpu_node.get(cpu), u8::try_from(node)) {
        slot.store(node, Ordering::Relaxed);
    }
}

/// Runs `f` with this CPU's allocations coming from node `node`'s heap (falling back as
/// usual when it is full): a VM is built on the CPU that creates it, but its state belongs
/// on the node of the CPUs that will run it.
pub fn with_alloc_node<R>(node: u32, f: impl FnOnce() -> R) -> R {
    let me = cpu::current_index();
    let Some(slot) = HEAP.override_node.get(me) else {
        return f();
    };
    let before = slot.swap(u8::try_from(node).unwrap_or(NO_NODE), Ordering::Relaxed);
    let r = f();
    slot.store(before, Ordering::Relaxed);
    r
}

/// Why a node got no heap of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NodeHeapError {
    /// The node number has no heap slot.
    #[error("node {0} is beyond the {MAX_NODES} nodes the hypervisor keeps heaps on")]
    TooMany(u32),
    /// The node already has its heap.
    #[error("node {0} already has a heap")]
    Exists(u32),
    /// The pool has no such block on that node.
    #[error("the RAM pool has no {1} MiB free on node {0}")]
    NoRam(u32, u64),
}

/// Gives node `node` a heap of `size` bytes of its own RAM, taken from the pool for good,
/// and returns its base. After [`super::mem::init_pool`], on the boot CPU.
pub fn add_node_heap(node: u32, size: u64) -> Result<u64, NodeHeapError> {
    let n = usize::try_from(node)
        .ok()
        .filter(|&n| n < MAX_NODES)
        .ok_or(NodeHeapError::TooMany(node))?;
    if HEAP.ranges[n].1.load(Ordering::Acquire) != 0 {
        return Err(NodeHeapError::Exists(node));
    }
    let ram = super::mem::alloc_ram(size, crate::mm::BLOCK_2M, Some(node))
        .map_err(|_| NodeHeapError::NoRam(node, size >> 20))?;
    if super::mem::node_of(ram.base()) != Some(node) {
        // The pool fell back to another node: give it back.
        return Err(NodeHeapError::NoRam(node, size >> 20));
    }
    let base = ram.base().0;
    // The heap owns the range for the life of the host: the `HostRam` is never dropped.
    core::mem::forget(ram);
    // SAFETY: (1) `[base, base + size)` is pool RAM, identity-mapped read-write, that the
    // pool handed out once and will never hand out again (its owner was forgotten); (2) the
    // node's heap is empty (its range was unset).
    unsafe { HEAP.heaps[n].lock().init(base as usize, size as usize) };
    HEAP.ranges[n].0.store(base as usize, Ordering::Release);
    HEAP.ranges[n]
        .1
        .store((base + size) as usize, Ordering::Release);
    Ok(base)
}

/// Bytes of heap in use on every node, counted as the allocator hands them out (rounded up
/// to its power-of-two blocks): what the hypervisor's data structures really occupy.
pub fn heap_used() -> u64 {
    HEAP.heaps
        .iter()
        .map(|h| h.lock().stats_alloc_actual() as u64)
        .sum()
}

/// Bytes of heap not handed out, on every node (some of it may be too fragmented for a
/// large block).
pub fn heap_free() -> u64 {
    HEAP.heaps
        .iter()
        .map(|h| {
            let h = h.lock();
            h.stats_total_bytes().saturating_sub(h.stats_alloc_actual()) as u64
        })
        .sum()
}

/// The node whose heap holds `addr`, if any.
pub fn heap_node_of(addr: usize) -> Option<u32> {
    numa_heap::owner(&HEAP.ranges(), addr).map(|n| n as u32)
}
