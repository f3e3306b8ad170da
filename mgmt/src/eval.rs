//! Evaluation mode: the 180-day period of an image built with `--features evaluation`.
//!
//! The datastore keeps one small record, `HV/EVAL.BIN` ([`EvalRecord`]): the RTC time of the
//! first boot and the latest RTC time the host has seen. At boot (and whenever a VM is to be
//! started) the caller reads the record, calls [`check`] with the RTC's current time, writes
//! back the record it returns, and refuses VM starts while the status says
//! [`EvalStatus::expired`] (with [`EvalStatus::refusal`] as the message). Running VMs are
//! never stopped.
//!
//! Days used are counted from the high-water mark `max(latest_seen, now)`, so setting the
//! clock back does not give days back: the count just stops growing until the clock passes
//! the mark again.
//!
//! What a record's absence or damage means:
//! - **missing**: this is the first boot; a new record is written with `now` as first boot;
//! - **damaged** (wrong magic, version, length or checksum): the period is treated as
//!   ended, with a message telling the administrator the record is damaged, and the record
//!   is left as it is (rewriting it would be a reset). A forged or corrupted file must not
//!   give a new period.
//!
//! Known limit: without a secure store (a TPM, a fuse, a signed counter) nothing stops an
//! administrator from *deleting* the file, which then reads as a first boot and starts a new
//! period. This evaluation is a reminder to buy a licence, not a lock.
//!
//! ```
//! use mgmt::eval::{check, EvalRecord, SECONDS_PER_DAY};
//! let first = 1_700_000_000;
//! let (rec, st) = check(None, first);
//! let rec = rec.unwrap();
//! assert_eq!((st.days_used, st.days_left, st.expired), (0, 180, false));
//! let later = first + 181 * SECONDS_PER_DAY;
//! let (_, st) = check(Some(&rec.to_bytes()), later);
//! assert!(st.expired);
//! assert!(st.refusal().unwrap().starts_with("evaluation period ended on 2024-05-12"));
//! ```

use alloc::format;
use alloc::string::String;
use core::fmt;

/// Length of the evaluation period in days.
pub const EVALUATION_DAYS: u64 = 180;

/// Seconds in a day (RTC time is seconds since 1970-01-01 00:00 UTC, without leap seconds).
pub const SECONDS_PER_DAY: u64 = 86_400;

/// The record's magic bytes.
pub const MAGIC: [u8; 4] = *b"HVEV";

/// The record format's version.
pub const VERSION: u16 = 1;

/// Length of an encoded record: magic (4), version (2), reserved (2), first boot (8),
/// latest seen (8), CRC-32 (4), all integers little-endian.
pub const RECORD_LEN: usize = 28;

/// The evaluation record kept on the datastore (`HV/EVAL.BIN`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalRecord {
    /// RTC time (seconds since the Unix epoch) of the first boot.
    pub first_boot: u64,
    /// The latest RTC time seen; only grows.
    pub latest_seen: u64,
}

/// Why a stored record cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The file is not [`RECORD_LEN`] bytes long.
    #[error("it is {0} bytes long, not {RECORD_LEN}")]
    Length(usize),
    /// The file does not start with [`MAGIC`].
    #[error("it does not start with the evaluation record's magic")]
    Magic,
    /// The record has a version this build does not know.
    #[error("it has format version {0}, this build reads version {VERSION}")]
    Version(u16),
    /// The checksum does not match the contents.
    #[error("its checksum does not match its contents")]
    Checksum,
}

impl EvalRecord {
    /// The record's stable encoding (see [`RECORD_LEN`]).
    pub fn to_bytes(&self) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&VERSION.to_le_bytes());
        // 6..8 reserved, zero.
        b[8..16].copy_from_slice(&self.first_boot.to_le_bytes());
        b[16..24].copy_from_slice(&self.latest_seen.to_le_bytes());
        let crc = crc32(&b[..24]);
        b[24..28].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a stored record; any damage is an error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RecordError> {
        let b: &[u8; RECORD_LEN] = bytes
            .try_into()
            .map_err(|_| RecordError::Length(bytes.len()))?;
        if b[0..4] != MAGIC {
            return Err(RecordError::Magic);
        }
        let crc = u32::from_le_bytes([b[24], b[25], b[26], b[27]]);
        if crc != crc32(&b[..24]) {
            return Err(RecordError::Checksum);
        }
        let version = u16::from_le_bytes([b[4], b[5]]);
        if version != VERSION {
            return Err(RecordError::Version(version));
        }
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(w)
        };
        Ok(Self {
            first_boot: word(8),
            latest_seen: word(16),
        })
    }
}

/// Where the evaluation period stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalStatus {
    /// Whole days used since the first boot (0 when the record is damaged).
    pub days_used: u64,
    /// Whole days left (0 once expired).
    pub days_left: u64,
    /// VM starts are refused.
    pub expired: bool,
    /// RTC time of the first boot (0 when the record is damaged).
    pub first_boot: u64,
    /// The stored record could not be read (and the period is treated as ended).
    pub damaged: Option<RecordError>,
}

impl EvalStatus {
    /// The status of a host whose record is damaged: expired.
    pub fn damaged(error: RecordError) -> Self {
        Self {
            days_used: 0,
            days_left: 0,
            expired: true,
            first_boot: 0,
            damaged: Some(error),
        }
    }

    /// The message a refused VM start gets, `None` while starts are allowed.
    pub fn refusal(&self) -> Option<String> {
        if !self.expired {
            return None;
        }
        const INSTALL: &str = "install a licensed build (built without --features evaluation) \
                               to start VMs; running VMs keep running";
        Some(match self.damaged {
            Some(e) => format!(
                "the evaluation record HV/EVAL.BIN on the datastore is damaged ({e}), so the \
                 evaluation period is treated as ended: {INSTALL}"
            ),
            None => {
                let first = days_since_epoch(self.first_boot);
                format!(
                    "evaluation period ended on {} ({EVALUATION_DAYS} days after first boot on \
                     {}): {INSTALL}",
                    civil_from_days(first + EVALUATION_DAYS as i64),
                    civil_from_days(first),
                )
            }
        })
    }
}

/// Whole days since the epoch of an RTC time (seconds).
fn days_since_epoch(seconds: u64) -> i64 {
    // u64::MAX / 86400 fits an i64.
    (seconds / SECONDS_PER_DAY) as i64
}

/// Updates a record with the RTC time `now` and says where the period stands. Without a
/// record (first boot) a new one starts at `now`. `latest_seen` only grows, and days used
/// are counted to `max(latest_seen, now)`, so setting the clock back changes nothing.
/// Expired when at least [`EVALUATION_DAYS`] whole days are used: VMs start on day 179,
/// not on day 180 or later.
pub fn observe(record: Option<EvalRecord>, now: u64) -> (EvalRecord, EvalStatus) {
    let record = match record {
        Some(r) => EvalRecord {
            first_boot: r.first_boot,
            latest_seen: r.latest_seen.max(now),
        },
        None => EvalRecord {
            first_boot: now,
            latest_seen: now,
        },
    };
    let days_used = record.latest_seen.saturating_sub(record.first_boot) / SECONDS_PER_DAY;
    let status = EvalStatus {
        days_used,
        days_left: EVALUATION_DAYS.saturating_sub(days_used),
        expired: days_used >= EVALUATION_DAYS,
        first_boot: record.first_boot,
        damaged: None,
    };
    (record, status)
}

/// [`observe`] on the stored bytes of `HV/EVAL.BIN` (`None`: the file does not exist).
/// Returns the record to write back (`None` when the stored one is damaged: it is left as
/// it is) and the status.
pub fn check(stored: Option<&[u8]>, now: u64) -> (Option<EvalRecord>, EvalStatus) {
    let record = match stored.map(EvalRecord::from_bytes) {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => return (None, EvalStatus::damaged(e)),
    };
    let (record, status) = observe(record, now);
    (Some(record), status)
}

/// A calendar date (proleptic Gregorian, UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CivilDate {
    /// Year.
    pub year: i64,
    /// Month, 1-12.
    pub month: u8,
    /// Day of the month, 1-31.
    pub day: u8,
}

impl fmt::Display for CivilDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// The date `days` days after 1970-01-01 (negative: before), by Howard Hinnant's
/// `civil_from_days` (eras of 400 years, March-based years).
pub fn civil_from_days(days: i64) -> CivilDate {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    CivilDate { year, month, day }
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), as zlib and `cksum -a crc32b`.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = SECONDS_PER_DAY;
    /// 2024-01-15 12:00:00 UTC.
    const FIRST: u64 = 1_705_320_000;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn civil_dates_match_known_days() {
        let d = |y, m, dd| CivilDate {
            year: y,
            month: m,
            day: dd,
        };
        assert_eq!(civil_from_days(0), d(1970, 1, 1));
        assert_eq!(civil_from_days(-1), d(1969, 12, 31));
        assert_eq!(civil_from_days(59), d(1970, 3, 1));
        // 2000-02-29 (a leap day of a century divisible by 400): 11016 days.
        assert_eq!(civil_from_days(11_016), d(2000, 2, 29));
        assert_eq!(civil_from_days(11_017), d(2000, 3, 1));
        // 2100-03-01 follows 2100-02-28 (no leap day): 47540 / 47541.
        assert_eq!(civil_from_days(47_540), d(2100, 2, 28));
        assert_eq!(civil_from_days(47_541), d(2100, 3, 1));
        // 2024-01-15 = 1705276800 / 86400.
        assert_eq!(civil_from_days(19_737), d(2024, 1, 15));
        assert_eq!(civil_from_days(19_737).to_string(), "2024-01-15");
    }

    #[test]
    fn first_boot_starts_a_record() {
        let (rec, st) = observe(None, FIRST);
        assert_eq!(
            rec,
            EvalRecord {
                first_boot: FIRST,
                latest_seen: FIRST
            }
        );
        assert_eq!((st.days_used, st.days_left, st.expired), (0, 180, false));
        assert_eq!(st.refusal(), None);
    }

    #[test]
    fn day_179_starts_vms() {
        let (rec, _) = observe(None, FIRST);
        let (rec, st) = observe(Some(rec), FIRST + 179 * DAY + DAY / 2);
        assert_eq!((st.days_used, st.days_left, st.expired), (179, 1, false));
        assert_eq!(rec.latest_seen, FIRST + 179 * DAY + DAY / 2);
        assert_eq!(st.refusal(), None);
    }

    #[test]
    fn day_180_is_the_end() {
        let (rec, _) = observe(None, FIRST);
        let (_, st) = observe(Some(rec), FIRST + 180 * DAY - 1);
        assert!(!st.expired);
        let (_, st) = observe(Some(rec), FIRST + 180 * DAY);
        assert!(st.expired);
    }

    #[test]
    fn day_181_is_refused_with_both_dates() {
        let (rec, _) = observe(None, FIRST);
        let (_, st) = observe(Some(rec), FIRST + 181 * DAY);
        assert_eq!((st.days_used, st.days_left, st.expired), (181, 0, true));
        assert_eq!(
            st.refusal().unwrap(),
            "evaluation period ended on 2024-07-13 (180 days after first boot on 2024-01-15): \
             install a licensed build (built without --features evaluation) to start VMs; \
             running VMs keep running"
        );
    }

    #[test]
    fn clock_set_back_before_first_boot_after_day_181_stays_expired() {
        let (rec, _) = observe(None, FIRST);
        let (rec, _) = observe(Some(rec), FIRST + 181 * DAY);
        let (rec, st) = observe(Some(rec), FIRST - 30 * DAY);
        assert!(st.expired);
        assert_eq!(st.days_used, 181);
        assert_eq!(rec.latest_seen, FIRST + 181 * DAY);
    }

    #[test]
    fn clock_set_back_at_day_100_counts_on_from_the_high_water_mark() {
        let (rec, _) = observe(None, FIRST);
        let (rec, _) = observe(Some(rec), FIRST + 100 * DAY);
        // Set back to day 10: still 100 days used, the mark is kept.
        let (rec, st) = observe(Some(rec), FIRST + 10 * DAY);
        assert_eq!((st.days_used, rec.latest_seen), (100, FIRST + 100 * DAY));
        // The clock runs on past the mark: counting resumes from it.
        let (_, st) = observe(Some(rec), FIRST + 150 * DAY);
        assert_eq!(st.days_used, 150);
    }

    #[test]
    fn record_round_trips() {
        let rec = EvalRecord {
            first_boot: FIRST,
            latest_seen: FIRST + 5 * DAY + 7,
        };
        let b = rec.to_bytes();
        assert_eq!(&b[..4], b"HVEV");
        assert_eq!(EvalRecord::from_bytes(&b), Ok(rec));
    }

    #[test]
    fn damaged_bytes_are_refused() {
        let good = EvalRecord {
            first_boot: FIRST,
            latest_seen: FIRST,
        }
        .to_bytes();
        assert_eq!(
            EvalRecord::from_bytes(&good[..27]),
            Err(RecordError::Length(27))
        );
        assert_eq!(EvalRecord::from_bytes(&[]), Err(RecordError::Length(0)));
        let mut b = good;
        b[0] = b'X';
        assert_eq!(EvalRecord::from_bytes(&b), Err(RecordError::Magic));
        // Every single flipped bit after the magic is caught by the checksum.
        for i in 4 * 8..RECORD_LEN * 8 {
            let mut b = good;
            b[i / 8] ^= 1 << (i % 8);
            assert!(EvalRecord::from_bytes(&b).is_err(), "bit {i}");
        }
        // A well-formed record of an unknown version.
        let mut b = good;
        b[4] = 2;
        let crc = crc32(&b[..24]);
        b[24..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(EvalRecord::from_bytes(&b), Err(RecordError::Version(2)));
    }

    #[test]
    fn a_damaged_record_is_expired_and_left_alone() {
        let mut b = EvalRecord {
            first_boot: FIRST,
            latest_seen: FIRST,
        }
        .to_bytes();
        b[10] ^= 0xff;
        let (rec, st) = check(Some(&b), FIRST + DAY);
        assert_eq!(rec, None);
        assert!(st.expired);
        assert_eq!(st.damaged, Some(RecordError::Checksum));
        let msg = st.refusal().unwrap();
        assert!(msg.contains("HV/EVAL.BIN"), "{msg}");
        assert!(msg.contains("damaged"), "{msg}");
    }

    #[test]
    fn check_starts_and_continues_a_record() {
        let (rec, st) = check(None, FIRST);
        let rec = rec.unwrap();
        assert!(!st.expired);
        let (rec2, st) = check(Some(&rec.to_bytes()), FIRST + 3 * DAY);
        assert_eq!(st.days_used, 3);
        assert_eq!(rec2.unwrap().first_boot, FIRST);
    }
}
