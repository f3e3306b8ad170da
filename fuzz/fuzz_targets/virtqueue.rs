//! Fuzz target: whatever a guest puts in its RAM (descriptor table, available ring,
//! indirect tables, request headers, ring addresses and queue size), the split virtqueue
//! and the virtio-blk device serving it never panic or hang, and a device pass never
//! returns more chains than the queue holds.
//!
//! Input: a 16-byte header, then the guest's RAM (up to 16 KiB, the rest zero).
//!
//! ```text
//! header  [0] queue size: 1 << (b % 10) (or b itself when bit 7 of [1] is set: invalid
//!             sizes too)        [1] bit 0: read-only disk   bit 1: disk fails
//!         [2..4] next available index the device expects (u16 LE)
//!         [4..8]  descriptor table offset in RAM   (u32 LE, or a full address with
//!         [8..12] available ring offset in RAM      bit 6 of [1]: outside RAM)
//!         [12..16] used ring offset in RAM
//! ```
#![no_main]

use hypervisor::block::{MemDisk, Partition};
use hypervisor::sync::Mutex;
use hypervisor::types::GuestPhysAddr;
use hypervisor::virtio::blk::VirtioBlk;
use hypervisor::virtio::queue::SplitQueue;
use hypervisor::virtio::VirtioDevice;
use hypervisor::vm::layout;
use hypervisor::vm::mem::FakeGuestMemory;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

const RAM_SIZE: usize = 0x4000;

fuzz_target!(|data: &[u8]| {
    let Some((h, ram)) = data.split_first_chunk::<16>() else {
        return;
    };
    let mut mem = FakeGuestMemory::new(GuestPhysAddr(layout::RAM_BASE), RAM_SIZE);
    let n = ram.len().min(RAM_SIZE);
    mem.bytes_mut()[..n].copy_from_slice(&ram[..n]);

    let size = if h[1] & 0x80 != 0 {
        u16::from(h[0])
    } else {
        1u16 << (h[0] % 10)
    };
    let word = |i: usize| u64::from(u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    let place = |off: u64| {
        if h[1] & 0x40 != 0 {
            off << 12
        } else {
            layout::RAM_BASE + off % RAM_SIZE as u64
        }
    };
    let mut q = SplitQueue::new(256);
    q.size = size;
    q.desc_table = place(word(4)) & !15;
    q.avail_ring = place(word(8)) & !1;
    q.used_ring = place(word(12)) & !3;
    q.ready = true;
    if !q.is_valid() {
        return;
    }
    // Where the device is in the ring: pop as many as the header says first.
    let skip = u16::from_le_bytes([h[2], h[3]]) % (size + 1);
    for _ in 0..skip {
        if !matches!(q.pop(&mut mem), Ok(Some(_))) {
            break;
        }
    }

    let mut disk = MemDisk::new(32);
    if h[1] & 2 != 0 {
        disk.fail_with = Some(1);
    }
    let disk = Partition::new(Arc::new(Mutex::new(disk)), 0, 32, h[1] & 1 != 0)
        .expect("a partition of the whole disk");
    let mut blk = VirtioBlk::new(Box::new(disk), "fuzz");
    let before = q.next_used();
    let result = blk.process_queue(0, &mut q, &mut mem);
    assert!(
        q.next_used().wrapping_sub(before) <= size,
        "one pass used more chains than the queue holds"
    );
    if result == Ok(false) {
        assert_eq!(q.next_used(), before, "chains used but not reported");
    }
    // A second pass over whatever is left, as a second notify would.
    let _ = blk.process_queue(0, &mut q, &mut mem);
});
