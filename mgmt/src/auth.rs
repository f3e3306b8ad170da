//! The administrator's password check, the sessions it opens, and the back-off that slows
//! password guessing.
//!
//! The password is stored on the datastore as an Argon2id PHC string (`HV/ADMIN.PWD`, written
//! at install with m=8192 KiB, t=2, p=1). A PHC string whose cost exceeds [`MAX_M_COST_KIB`]
//! or [`MAX_T_COST`] is refused when [`Auth`] is built, so a planted file cannot stall the
//! single-threaded management server for minutes per login.
//!
//! A good login opens a session: a token of 32 random bytes, hex-encoded, that the client
//! sends as `Authorization: Bearer TOKEN`. At most [`MAX_SESSIONS`] are kept (the least
//! recently used one is dropped for a new one) and one unused for [`IDLE_TIMEOUT_MS`] ends.
//!
//! Failed logins do not sleep (the server has one thread): after a failure, attempts before
//! the back-off has passed are refused without checking the password (the API answers 429
//! with `Retry-After`). The back-off is 1 s after the first failure and doubles with each
//! consecutive one up to [`MAX_BACKOFF_MS`]; a good login resets it.

use alloc::string::String;
use alloc::vec::Vec;
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use subtle::ConstantTimeEq;

/// Largest Argon2 memory cost accepted, in KiB (64 MiB).
pub const MAX_M_COST_KIB: u32 = 65536;
/// Largest Argon2 time cost (passes) accepted.
pub const MAX_T_COST: u32 = 10;
/// Most sessions open at once.
pub const MAX_SESSIONS: usize = 16;
/// A session unused for this long ends (30 min).
pub const IDLE_TIMEOUT_MS: u64 = 30 * 60 * 1000;
/// The back-off after the first failed login.
pub const FIRST_BACKOFF_MS: u64 = 1000;
/// The longest back-off.
pub const MAX_BACKOFF_MS: u64 = 30_000;
/// Random bytes in a session token (hex-encoded: twice as many characters).
pub const TOKEN_BYTES: usize = 32;

/// Fills a buffer with cryptographically secure random bytes (`mgmt::rng::fill` on the
/// host); `Err(())` when no randomness is available.
pub type FillRandom = fn(&mut [u8]) -> Result<(), ()>;

/// Why the stored password hash cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The text is not a PHC string (`$argon2id$v=19$m=...,t=...,p=...$SALT$HASH`).
    #[error("the administrator password file is not a PHC string: {0}")]
    Malformed(String),
    /// The PHC string is of another algorithm than Argon2id.
    #[error("the administrator password hash is {0}, not argon2id: reinstall the password")]
    Algorithm(String),
    /// The PHC string has no hash part.
    #[error("the administrator password PHC string has no hash")]
    NoHash,
    /// The cost is above what the host accepts.
    #[error(
        "the administrator password hash costs m={m_kib} KiB, t={t}: \
         at most m={MAX_M_COST_KIB}, t={MAX_T_COST} are accepted"
    )]
    TooCostly {
        /// Memory cost in KiB.
        m_kib: u32,
        /// Time cost (passes).
        t: u32,
    },
}

/// Why a login was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginError {
    /// Wrong user or password; no attempt is checked for the next `retry_after_s` seconds.
    Wrong {
        /// Whole seconds of back-off now in force.
        retry_after_s: u64,
    },
    /// A previous failure's back-off has not passed: retry after this many seconds.
    TooSoon {
        /// Whole seconds to wait (at least 1).
        retry_after_s: u64,
    },
    /// The password hash could not be computed (e.g. out of memory).
    Hash(String),
    /// No randomness for a token.
    NoRandomness,
}

/// Checks a password against a PHC string, refusing costs above the limits.
///
/// Returns `Ok(true)` if it matches, `Ok(false)` if not, and an error if the PHC string is
/// malformed, not Argon2id or too costly (nothing is computed then).
pub fn verify_password(phc: &str, password: &[u8]) -> Result<bool, AuthError> {
    let hash = parse_phc(phc)?;
    match Argon2::default().verify_password(password, &hash) {
        Ok(()) => Ok(true),
        Err(password_hash::Error::Password) => Ok(false),
        Err(e) => Err(AuthError::Malformed(alloc::format!("{e}"))),
    }
}

/// Parses and vets a PHC string: Argon2id, a hash present, cost within the limits.
fn parse_phc(phc: &str) -> Result<PasswordHash<'_>, AuthError> {
    let hash = PasswordHash::new(phc).map_err(|e| AuthError::Malformed(alloc::format!("{e}")))?;
    if hash.algorithm != argon2::ARGON2ID_IDENT {
        return Err(AuthError::Algorithm(String::from(hash.algorithm.as_str())));
    }
    if hash.hash.is_none() {
        return Err(AuthError::NoHash);
    }
    let params =
        argon2::Params::try_from(&hash).map_err(|e| AuthError::Malformed(alloc::format!("{e}")))?;
    if params.m_cost() > MAX_M_COST_KIB || params.t_cost() > MAX_T_COST {
        return Err(AuthError::TooCostly {
            m_kib: params.m_cost(),
            t: params.t_cost(),
        });
    }
    Ok(hash)
}

/// One open session.
#[derive(Clone, Debug)]
struct Session {
    /// The token as sent by the client (hex).
    token: [u8; TOKEN_BYTES * 2],
    /// When it was last used (`now_ms`).
    last_used_ms: u64,
}

/// The open sessions.
#[derive(Debug)]
pub struct Sessions {
    fill: FillRandom,
    open: Vec<Session>,
}

impl Sessions {
    /// No sessions; tokens are drawn from `fill`.
    pub fn new(fill: FillRandom) -> Self {
        Self {
            fill,
            open: Vec::new(),
        }
    }

    /// Opens a session at `now_ms` and returns its token (64 hex digits). Sessions idle for
    /// [`IDLE_TIMEOUT_MS`] end first; if [`MAX_SESSIONS`] are still open, the least recently
    /// used one ends.
    pub fn open(&mut self, now_ms: u64) -> Result<String, LoginError> {
        let mut raw = [0u8; TOKEN_BYTES];
        (self.fill)(&mut raw).map_err(|()| LoginError::NoRandomness)?;
        let mut token = [0u8; TOKEN_BYTES * 2];
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (i, b) in raw.iter().enumerate() {
            token[2 * i] = HEX[usize::from(b >> 4)];
            token[2 * i + 1] = HEX[usize::from(b & 15)];
        }
        self.expire(now_ms);
        if self.open.len() >= MAX_SESSIONS {
            if let Some(oldest) = (0..self.open.len()).min_by_key(|&i| self.open[i].last_used_ms) {
                self.open.remove(oldest);
            }
        }
        self.open.push(Session {
            token,
            last_used_ms: now_ms,
        });
        // The token is hex digits only, so it is valid UTF-8.
        Ok(token.iter().map(|&b| char::from(b)).collect())
    }

    /// Whether `token` names an open session at `now_ms`; if so, the session's idle time
    /// starts again. Every open token is compared, in constant time.
    pub fn check(&mut self, token: &str, now_ms: u64) -> bool {
        self.expire(now_ms);
        match self.find(token) {
            Some(i) => {
                self.open[i].last_used_ms = now_ms;
                true
            }
            None => false,
        }
    }

    /// Ends the session of `token`; false if there was none.
    pub fn close(&mut self, token: &str) -> bool {
        match self.find(token) {
            Some(i) => {
                self.open.remove(i);
                true
            }
            None => false,
        }
    }

    /// Sessions open (idle ones not yet swept included).
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// No session is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// The index of `token`'s session, comparing against every session without an early
    /// exit so that the time taken says nothing about the tokens.
    fn find(&self, token: &str) -> Option<usize> {
        let token = token.as_bytes();
        if token.len() != TOKEN_BYTES * 2 {
            return None;
        }
        let mut found = None;
        for (i, s) in self.open.iter().enumerate() {
            if bool::from(s.token[..].ct_eq(token)) {
                found = Some(i);
            }
        }
        found
    }

    /// Ends sessions idle for [`IDLE_TIMEOUT_MS`] or more.
    fn expire(&mut self, now_ms: u64) {
        self.open
            .retain(|s| now_ms.saturating_sub(s.last_used_ms) < IDLE_TIMEOUT_MS);
    }
}

/// The back-off after failed logins.
#[derive(Clone, Debug, Default)]
struct Backoff {
    /// Consecutive failures.
    failures: u32,
    /// No attempt is checked before this time.
    next_allowed_ms: u64,
}

impl Backoff {
    /// `Err(seconds to wait)` if an attempt at `now_ms` is too soon.
    fn check(&self, now_ms: u64) -> Result<(), u64> {
        if now_ms < self.next_allowed_ms {
            Err((self.next_allowed_ms - now_ms).div_ceil(1000))
        } else {
            Ok(())
        }
    }

    /// A failure at `now_ms`: 1 s, 2 s, 4 s, ... at most [`MAX_BACKOFF_MS`].
    fn fail(&mut self, now_ms: u64) {
        self.failures = self.failures.saturating_add(1);
        let shift = (self.failures - 1).min(16);
        let delay = (FIRST_BACKOFF_MS << shift).min(MAX_BACKOFF_MS);
        self.next_allowed_ms = now_ms.saturating_add(delay);
    }

    /// A good login: no back-off.
    fn reset(&mut self) {
        *self = Self::default();
    }
}

/// The administrator's credentials, the sessions and the login back-off.
#[derive(Debug)]
pub struct Auth {
    user: String,
    phc: String,
    sessions: Sessions,
    backoff: Backoff,
}

impl Auth {
    /// The administrator `user` whose password hash is `phc` (an Argon2id PHC string, as in
    /// `HV/ADMIN.PWD`; surrounding whitespace such as a final newline is ignored). Session
    /// tokens come from `fill`. The PHC string is vetted now: malformed, not Argon2id or
    /// too costly gives an error.
    pub fn new(user: &str, phc: &str, fill: FillRandom) -> Result<Self, AuthError> {
        let phc = phc.trim();
        parse_phc(phc)?;
        Ok(Self {
            user: String::from(user),
            phc: String::from(phc),
            sessions: Sessions::new(fill),
            backoff: Backoff::default(),
        })
    }

    /// Checks a login at `now_ms` and opens a session, returning its token.
    ///
    /// Before the back-off of a previous failure has passed, the attempt is refused without
    /// looking at the password ([`LoginError::TooSoon`]). The password hash is computed even
    /// for a wrong user, so the time taken does not tell which part was wrong.
    pub fn login(&mut self, user: &str, password: &str, now_ms: u64) -> Result<String, LoginError> {
        self.backoff
            .check(now_ms)
            .map_err(|retry_after_s| LoginError::TooSoon { retry_after_s })?;
        let user_ok = bool::from(user.as_bytes().ct_eq(self.user.as_bytes()));
        let password_ok = match verify_password(&self.phc, password.as_bytes()) {
            Ok(ok) => ok,
            Err(e) => return Err(LoginError::Hash(alloc::format!("{e}"))),
        };
        if user_ok && password_ok {
            self.backoff.reset();
            self.sessions.open(now_ms)
        } else {
            self.backoff.fail(now_ms);
            let retry_after_s = self.backoff.check(now_ms).err().unwrap_or(0);
            Err(LoginError::Wrong { retry_after_s })
        }
    }

    /// Whether an `Authorization` header value (`Bearer TOKEN`) names an open session at
    /// `now_ms` (which then stays open for another [`IDLE_TIMEOUT_MS`]).
    pub fn authorize(&mut self, authorization: Option<&str>, now_ms: u64) -> bool {
        match authorization.and_then(bearer_token) {
            Some(token) => self.sessions.check(token, now_ms),
            None => false,
        }
    }

    /// Ends the session named by an `Authorization` header value; false if there was none.
    pub fn logout(&mut self, authorization: Option<&str>) -> bool {
        match authorization.and_then(bearer_token) {
            Some(token) => self.sessions.close(token),
            None => false,
        }
    }

    /// The open sessions.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }
}

/// The token of a `Bearer TOKEN` header value (the scheme is case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim();
    let (scheme, token) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(token.trim_start())
    } else {
        None
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, SaltString};
    use argon2::{Algorithm, Params, Version};
    use core::sync::atomic::{AtomicU8, Ordering};

    /// A PHC string of `password` with the given cost.
    pub(crate) fn phc(password: &str, m: u32, t: u32, p: u32) -> String {
        let params = Params::new(m, t, p, None).unwrap();
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        argon
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    /// A cheap PHC string for tests that do not test the cost.
    pub(crate) fn cheap_phc(password: &str) -> String {
        phc(password, 64, 1, 1)
    }

    /// Deterministic "randomness": each call gives a new counter value in every byte.
    pub(crate) fn fake_fill(buf: &mut [u8]) -> Result<(), ()> {
        static NEXT: AtomicU8 = AtomicU8::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = n.wrapping_add(i as u8);
        }
        Ok(())
    }

    fn no_fill(_: &mut [u8]) -> Result<(), ()> {
        Err(())
    }

    #[test]
    fn install_cost_hash_verifies() {
        let stored = phc("s3cret", 8192, 2, 1);
        assert!(stored.starts_with("$argon2id$v=19$m=8192,t=2,p=1$"));
        assert_eq!(verify_password(&stored, b"s3cret"), Ok(true));
        assert_eq!(verify_password(&stored, b"s3cret "), Ok(false));
    }

    #[test]
    fn costly_or_foreign_hashes_are_refused() {
        let costly_m = "$argon2id$v=19$m=65537,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$\
                        AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(
            verify_password(costly_m, b"x"),
            Err(AuthError::TooCostly { m_kib: 65537, t: 1 })
        );
        let costly_t = "$argon2id$v=19$m=64,t=11,p=1$MDEyMzQ1Njc4OWFiY2RlZg$\
                        AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(
            verify_password(costly_t, b"x"),
            Err(AuthError::TooCostly { m_kib: 64, t: 11 })
        );
        let argon2i = "$argon2i$v=19$m=64,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$\
                       AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert!(matches!(
            verify_password(argon2i, b"x"),
            Err(AuthError::Algorithm(_))
        ));
        assert!(matches!(
            verify_password("$argon2id$v=19$m=64,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg", b"x"),
            Err(AuthError::NoHash)
        ));
        for bad in [
            "",
            "hunter2",
            "$argon2id$",
            "$argon2id$v=19$m=x,t=1,p=1$AA$AA",
        ] {
            assert!(
                matches!(verify_password(bad, b"x"), Err(AuthError::Malformed(_))),
                "{bad}"
            );
            assert!(Auth::new("root", bad, fake_fill).is_err());
        }
        assert!(Auth::new("root", costly_m, fake_fill).is_err());
        // The limits themselves are accepted (parsed only: computing it would take long).
        let at_limit = "$argon2id$v=19$m=65536,t=10,p=1$MDEyMzQ1Njc4OWFiY2RlZg$\
                        AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert!(parse_phc(at_limit).is_ok());
    }

    #[test]
    fn login_opens_a_session_and_logout_ends_it() {
        let mut auth = Auth::new("root", &(cheap_phc("pw") + "\n"), fake_fill).unwrap();
        let token = auth.login("root", "pw", 0).unwrap();
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        let header = alloc::format!("Bearer {token}");
        assert!(auth.authorize(Some(&header), 10));
        assert!(auth.authorize(Some(&alloc::format!("bearer {token}")), 10));
        assert!(!auth.authorize(Some(&token), 10));
        assert!(!auth.authorize(None, 10));
        let mut wrong = token.clone().into_bytes();
        wrong[63] = if wrong[63] == b'0' { b'1' } else { b'0' };
        let wrong = alloc::format!("Bearer {}", String::from_utf8(wrong).unwrap());
        assert!(!auth.authorize(Some(&wrong), 10));
        assert!(auth.logout(Some(&header)));
        assert!(!auth.authorize(Some(&header), 20));
        assert!(!auth.logout(Some(&header)));
    }

    #[test]
    fn tokens_differ() {
        let mut s = Sessions::new(fake_fill);
        let a = s.open(0).unwrap();
        let b = s.open(0).unwrap();
        assert_ne!(a, b);
        assert!(s.check(&a, 1) && s.check(&b, 1));
        // Closing one leaves the other.
        assert!(s.close(&b));
        assert!(!s.check(&b, 2));
        assert!(s.check(&a, 2));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn idle_sessions_expire_and_use_keeps_them() {
        let mut s = Sessions::new(fake_fill);
        let a = s.open(0).unwrap();
        let b = s.open(0).unwrap();
        assert!(s.check(&a, IDLE_TIMEOUT_MS - 1));
        assert!(s.check(&a, 2 * IDLE_TIMEOUT_MS - 2));
        assert!(!s.check(&b, 2 * IDLE_TIMEOUT_MS - 2));
        assert!(!s.check(&a, 3 * IDLE_TIMEOUT_MS));
        assert!(s.is_empty());
        // Exactly the timeout of idleness ends a session.
        let c = s.open(0).unwrap();
        assert!(!s.check(&c, IDLE_TIMEOUT_MS));
    }

    #[test]
    fn at_most_sixteen_sessions_least_recently_used_dropped() {
        let mut s = Sessions::new(fake_fill);
        let tokens: Vec<String> = (0..MAX_SESSIONS as u64)
            .map(|t| s.open(t).unwrap())
            .collect();
        // Use the first so that the second is now the least recently used.
        assert!(s.check(&tokens[0], 100));
        let extra = s.open(101).unwrap();
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(!s.check(&tokens[1], 102));
        assert!(s.check(&tokens[0], 102));
        assert!(s.check(&tokens[2], 102));
        assert!(s.check(&extra, 102));
    }

    #[test]
    fn failures_back_off_doubling_to_thirty_seconds() {
        let mut auth = Auth::new("root", &cheap_phc("pw"), fake_fill).unwrap();
        let mut now = 1_000_000;
        let mut expected = FIRST_BACKOFF_MS;
        for _ in 0..8 {
            assert_eq!(
                auth.login("root", "nope", now),
                Err(LoginError::Wrong {
                    retry_after_s: expected / 1000
                })
            );
            // Too soon, even with the right password: the password is not even checked.
            assert_eq!(
                auth.login("root", "pw", now + expected - 1),
                Err(LoginError::TooSoon { retry_after_s: 1 })
            );
            assert_eq!(
                auth.login("root", "pw", now),
                Err(LoginError::TooSoon {
                    retry_after_s: expected / 1000
                })
            );
            now += expected;
            expected = (expected * 2).min(MAX_BACKOFF_MS);
        }
        assert_eq!(expected, MAX_BACKOFF_MS);
        // A wrong user counts as a failure too.
        assert_eq!(
            auth.login("admin", "pw", now),
            Err(LoginError::Wrong { retry_after_s: 30 })
        );
        now += MAX_BACKOFF_MS;
        assert!(auth.login("root", "pw", now).is_ok());
        // Reset: the next failure waits 1 s again.
        assert_eq!(
            auth.login("root", "nope", now),
            Err(LoginError::Wrong { retry_after_s: 1 })
        );
        assert!(auth.login("root", "pw", now + FIRST_BACKOFF_MS).is_ok());
    }

    #[test]
    fn no_randomness_is_an_error_not_a_weak_token() {
        let mut auth = Auth::new("root", &cheap_phc("pw"), no_fill).unwrap();
        assert_eq!(auth.login("root", "pw", 0), Err(LoginError::NoRandomness));
        assert!(auth.sessions().is_empty());
    }
}
