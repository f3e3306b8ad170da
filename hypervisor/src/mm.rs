//! Memory management: per-VM stage-2 translation tables and the physical frame allocator
//! that hands out guest RAM.
#![deny(unsafe_code)]

pub mod blocks;
pub mod frames;
pub mod numa_heap;
pub mod stage2;

pub use blocks::BlockMap;
pub use frames::{FrameAllocator, FrameError};
pub use stage2::{Stage2, Stage2Error};

/// Size of a translation granule and of the smallest frame (4 KiB).
pub const PAGE_SIZE: u64 = 0x1000;
/// Size of a level-2 block: the unit guest RAM is allocated and mapped in.
pub const BLOCK_2M: u64 = 0x20_0000;
