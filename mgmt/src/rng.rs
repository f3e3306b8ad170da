//! The hypervisor's CSPRNG: ChaCha20 (`rand_chacha`) keyed by SHA-256 of every entropy
//! source the runtime has (FEAT_RNG, the SMCCC TRNG, the datastore seed file, counter
//! jitter). [`seed`] can be called again at any time to add entropy: the new key is the
//! SHA-256 of the old key and the new input, so adding a weak source never weakens it.
//!
//! On bare metal (`target_os = "none"`) it is also the `getrandom` 0.2 backend, so that
//! the TLS provider's randomness (`rand_core::OsRng`) comes from here; until [`seed`] has
//! been called, `getrandom` fails rather than hand out predictable bytes.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use spin::Mutex;

/// Why [`fill`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RngError {
    /// [`seed`] has not been called yet.
    #[error("the random number generator has not been seeded")]
    Unseeded,
}

struct State {
    rng: ChaCha20Rng,
    /// The current key, kept to be mixed into the next reseed.
    key: [u8; 32],
}

static RNG: Mutex<Option<State>> = Mutex::new(None);

/// Mixes `inputs` (each hashed with its length, so the split between inputs counts) into
/// the generator's key, seeding it on the first call.
pub fn seed(inputs: &[&[u8]]) {
    let mut rng = RNG.lock();
    let mut h = Sha256::new();
    h.update(b"hv-mgmt-rng-v1");
    if let Some(old) = rng.as_ref() {
        h.update([1u8]);
        h.update(old.key);
    } else {
        h.update([0u8]);
    }
    for input in inputs {
        h.update((input.len() as u64).to_le_bytes());
        h.update(input);
    }
    let key: [u8; 32] = h.finalize().into();
    *rng = Some(State {
        rng: ChaCha20Rng::from_seed(key),
        key,
    });
}

/// Whether [`seed`] has been called.
pub fn is_seeded() -> bool {
    RNG.lock().is_some()
}

/// Fills `buf` with random bytes; fails until [`seed`] has been called.
pub fn fill(buf: &mut [u8]) -> Result<(), RngError> {
    let mut rng = RNG.lock();
    let state = rng.as_mut().ok_or(RngError::Unseeded)?;
    state.rng.fill_bytes(buf);
    Ok(())
}

/// Forgets the seed (tests only: the generator is global).
#[cfg(test)]
fn reset() {
    *RNG.lock() = None;
}

#[cfg(target_os = "none")]
mod backend {
    /// `getrandom::Error::CUSTOM_START` is the first code a custom backend may use.
    const UNSEEDED: u32 = getrandom::Error::CUSTOM_START + 1;

    fn hv_getrandom(buf: &mut [u8]) -> Result<(), getrandom::Error> {
        super::fill(buf).map_err(|_| match core::num::NonZeroU32::new(UNSEEDED) {
            Some(code) => getrandom::Error::from(code),
            None => getrandom::Error::UNSUPPORTED,
        })
    }

    getrandom::register_custom_getrandom!(hv_getrandom);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The generator is global: tests that seed it take this lock so they do not race.
    pub(crate) static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn stream(n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        fill(&mut v).expect("seeded");
        v
    }

    #[test]
    fn unseeded_fill_fails() {
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        reset();
        let mut b = [0u8; 16];
        assert_eq!(fill(&mut b), Err(RngError::Unseeded));
        assert!(!is_seeded());
        seed(&[b"x"]);
        assert!(is_seeded());
        assert_eq!(fill(&mut b), Ok(()));
    }

    #[test]
    fn same_seed_same_stream_different_seed_different_stream() {
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        reset();
        seed(&[b"alpha", b"beta"]);
        let a = stream(64);
        reset();
        seed(&[b"alpha", b"beta"]);
        let b = stream(64);
        assert_eq!(a, b);
        reset();
        seed(&[b"alphab", b"eta"]);
        let c = stream(64);
        assert_ne!(a, c, "the split between inputs must count");
        reset();
        seed(&[b"gamma"]);
        assert_ne!(a, stream(64));
    }

    #[test]
    fn reseeding_mixes_old_key_and_new_input() {
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        reset();
        seed(&[b"one"]);
        seed(&[b"two"]);
        let after_one = stream(32);
        reset();
        seed(&[b"three"]);
        seed(&[b"two"]);
        let after_three = stream(32);
        assert_ne!(after_one, after_three, "the old key must be mixed in");
        // The stream continues rather than repeating.
        assert_ne!(stream(32), after_three);
    }
}
