//! What a driver plugin of the machine's own devices (NVMe, AHCI) needs besides its
//! registers: memory the device reaches by DMA, and a clock for its timeouts. Behind
//! traits, so that a driver's logic runs in host tests against a fake device whose DMA
//! memory is host memory; on the machine, [`Machine`]: buffers from the RAM pool
//! (`arch::mem::DmaBuffer`, cache maintenance by the bridge's `dma-coherent`) and the
//! generic timer.
#![deny(unsafe_code)]

use crate::block::DmaList;

/// A DMA allocation or copy failed (the RAM pool is empty, or a copy ran past a buffer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaError;

/// Memory a device reaches by DMA.
pub trait Dma {
    /// The address the device uses.
    fn bus_addr(&self) -> u64;
    /// Copies `data` in at `offset` and makes it visible to the device.
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), DmaError>;
    /// Copies out what the device left at `offset`.
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), DmaError>;
}

/// DMA memory and time, as a driver gets them.
pub trait Env: Clone {
    /// Its DMA buffers.
    type Buf: Dma + Send;
    /// `size` bytes of zeroed DMA memory, 4 KiB aligned.
    fn alloc(&self, size: u64, coherent: bool) -> Result<Self::Buf, DmaError>;
    /// A monotonic tick count.
    fn now(&self) -> u64;
    /// Ticks per millisecond.
    fn ticks_per_ms(&self) -> u64;
    /// Makes the memory of `list` right for the device (before it reads or writes it) and
    /// for the CPU (after it wrote it): for a device that does not snoop the CPU caches
    /// (`coherent == false`) each line is cleaned and invalidated to the point of
    /// coherency, so no dirty line is lost to the device nor written back over what it
    /// wrote, and no stale line hides it; for a coherent one only the accesses are ordered.
    fn sync_dma(&self, list: &DmaList<'_>, coherent: bool);
    /// Waits a little (about `us` microseconds, less when an interrupt comes) between two
    /// looks at a device that works on its own, leaving the CPU to whatever else the
    /// machine runs: on the machine a nap in `WFI`, so a drive's completion polled for
    /// does not cost a spinning core. By default (fakes) a spin-loop hint.
    fn pause(&self, us: u64) {
        let _ = us;
        core::hint::spin_loop();
    }
}

/// Polls `done` until it holds or `ms` milliseconds of `env`'s clock passed; the answer is
/// `done`'s last (checked once more at the deadline, so a device that finished just then
/// counts). How drivers wait for a device bit without trusting it ever to come.
pub fn wait_until<E: Env>(env: &E, ms: u64, mut done: impl FnMut() -> bool) -> bool {
    let t0 = env.now();
    let limit = ms.saturating_mul(env.ticks_per_ms());
    loop {
        if done() {
            return true;
        }
        if env.now().wrapping_sub(t0) > limit {
            return done();
        }
        core::hint::spin_loop();
    }
}

#[cfg(target_arch = "aarch64")]
mod machine {
    use super::{Dma, DmaError, Env};
    use crate::arch::cpu;
    use crate::arch::mem::{alloc_dma, DmaBuffer};
    use crate::block::DmaList;

    /// The machine: DMA buffers from the RAM pool, time from the generic timer.
    #[derive(Clone, Copy, Debug)]
    pub struct Machine;

    impl Dma for DmaBuffer {
        fn bus_addr(&self) -> u64 {
            DmaBuffer::bus_addr(self)
        }

        fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), DmaError> {
            DmaBuffer::write(self, offset, data).map_err(|_| DmaError)
        }

        fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), DmaError> {
            DmaBuffer::read(self, offset, buf).map_err(|_| DmaError)
        }
    }

    impl Env for Machine {
        type Buf = DmaBuffer;

        fn alloc(&self, size: u64, coherent: bool) -> Result<DmaBuffer, DmaError> {
            alloc_dma(size, coherent).map_err(|_| DmaError)
        }

        fn now(&self) -> u64 {
            cpu::counter()
        }

        fn ticks_per_ms(&self) -> u64 {
            (cpu::counter_frequency() / 1000).max(1)
        }

        fn pause(&self, us: u64) {
            let ticks = (cpu::counter_frequency() / 1_000_000).max(1) * us;
            cpu::nap_until(cpu::counter().wrapping_add(ticks));
        }

        fn sync_dma(&self, list: &DmaList<'_>, coherent: bool) {
            // A list's pieces are a VM's RAM (its contract), identity-mapped at EL2. A
            // coherent device needs only the barrier, once.
            if coherent {
                cpu::dma_sync_range(0, 0, true);
                return;
            }
            for s in list.segs() {
                cpu::dma_sync_range(s.addr, s.len, coherent);
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
pub use machine::Machine;
