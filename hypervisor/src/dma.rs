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
/// counts). How drivers wait for a device bit without trusting it ever to come. Between
/// two looks it naps ([`Env::pause`]) for an eighth of the time waited so far, at least a
/// microsecond and at most a millisecond: a device that answers at once is seen at once,
/// and a long wait (a reset, a link that never comes) naps about 170 times in its first
/// 100 ms and then once per millisecond, not once per microsecond (under QEMU every nap's
/// wake-up also costs host time).
pub fn wait_until<E: Env>(env: &E, ms: u64, mut done: impl FnMut() -> bool) -> bool {
    let t0 = env.now();
    let limit = ms.saturating_mul(env.ticks_per_ms());
    loop {
        if done() {
            return true;
        }
        let waited = env.now().wrapping_sub(t0);
        if waited > limit {
            return done();
        }
        pause_after(env, waited);
    }
}

/// The nap of a driver that has waited `waited` ticks for its device (see [`wait_until`]):
/// an eighth of it, at least a microsecond and at most a millisecond.
pub fn pause_after<E: Env>(env: &E, waited: u64) {
    let waited_us = waited.saturating_mul(1000) / env.ticks_per_ms().max(1);
    env.pause((waited_us / 8).clamp(1, 1000));
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use core::cell::RefCell;
    use std::rc::Rc;

    /// A clock at 1000 ticks per millisecond (one per microsecond) that a nap moves on by
    /// its length; every nap is recorded.
    #[derive(Clone, Default)]
    struct Clock(Rc<RefCell<(u64, Vec<u64>)>>);

    struct NoBuf;

    impl Dma for NoBuf {
        fn bus_addr(&self) -> u64 {
            0
        }
        fn write(&mut self, _: u64, _: &[u8]) -> Result<(), DmaError> {
            Err(DmaError)
        }
        fn read(&self, _: u64, _: &mut [u8]) -> Result<(), DmaError> {
            Err(DmaError)
        }
    }

    impl Env for Clock {
        type Buf = NoBuf;
        fn alloc(&self, _: u64, _: bool) -> Result<NoBuf, DmaError> {
            Err(DmaError)
        }
        fn now(&self) -> u64 {
            self.0.borrow().0
        }
        fn ticks_per_ms(&self) -> u64 {
            1000
        }
        fn sync_dma(&self, _: &DmaList<'_>, _: bool) {}
        fn pause(&self, us: u64) {
            let mut c = self.0.borrow_mut();
            c.0 += us;
            c.1.push(us);
        }
    }

    #[test]
    fn waits_nap_an_eighth_of_the_time_waited_between_one_microsecond_and_one_millisecond() {
        // A device that answers at once: no nap.
        let clock = Clock::default();
        assert!(wait_until(&clock, 10, || true));
        assert!(clock.0.borrow().1.is_empty());
        // One that answers after 3 us: seen within a microsecond of it.
        let clock = Clock::default();
        let c = clock.clone();
        assert!(wait_until(&clock, 10, || c.now() >= 3));
        assert_eq!(clock.now(), 3);
        // One that never answers, for 100 ms: under 200 naps, each at most 1 ms, growing
        // with the time waited, and the deadline checked once more.
        let clock = Clock::default();
        let looks = RefCell::new(0u32);
        assert!(!wait_until(&clock, 100, || {
            *looks.borrow_mut() += 1;
            false
        }));
        let naps = clock.0.borrow().1.clone();
        assert!(naps.len() < 200, "{} naps", naps.len());
        assert!(naps.iter().all(|&n| (1..=1000).contains(&n)));
        assert!(naps.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*naps.last().unwrap(), 1000);
        assert!(
            (100_000..=101_000).contains(&clock.now()),
            "{}",
            clock.now()
        );
        assert_eq!(*looks.borrow() as usize, naps.len() + 2);
    }
}
