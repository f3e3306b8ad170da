//! Locks for the core and its plugins: spin locks whose wait loop executes `YIELD`.
//!
//! `spin::Mutex`'s default wait is `core::hint::spin_loop()` (an `ISB` on AArch64). A
//! waiting CPU then looks busy to whatever schedules physical CPUs: QEMU's round-robin TCG
//! (one host thread for all CPUs, as under `-icount`) gives the waiter its whole time slice
//! while the lock holder waits its turn, and an SMT core gives it the pipeline. `YIELD` is
//! the architecture's hint for exactly this: QEMU switches to another CPU on it, SMT cores
//! favour the sibling, other cores treat it as a no-op.
#![deny(unsafe_code)]

/// The wait step of [`Mutex`].
pub struct Relax;

impl spin::RelaxStrategy for Relax {
    #[inline(always)]
    fn relax() {
        #[cfg(target_arch = "aarch64")]
        crate::arch::cpu::yield_now();
        #[cfg(not(target_arch = "aarch64"))]
        core::hint::spin_loop();
    }
}

/// A spin lock that yields while it waits (see the module doc).
pub type Mutex<T> = spin::mutex::Mutex<T, Relax>;
/// Guard of [`Mutex`].
pub type MutexGuard<'a, T> = spin::mutex::MutexGuard<'a, T>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contended_lock_is_exclusive() {
        static COUNT: Mutex<u64> = Mutex::new(0);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..10_000 {
                        *COUNT.lock() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*COUNT.lock(), 40_000);
    }
}
