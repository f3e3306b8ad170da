//! The recent console output of a VM, kept for `GET /api/vms/NAME/console?since=N`.
//!
//! Output is one stream per VM (kept across stops and starts) addressed by byte offset
//! since the host booted; the last [`KEEP`] bytes are kept. A reader asks from the offset
//! it got last time and gets what came since, or, if it fell behind by more than the kept
//! window, what is left (the offset it gets back tells it where the data starts).

use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Bytes of output kept per VM.
pub const KEEP: usize = 64 * 1024;

/// One VM's recent console output.
#[derive(Clone, Debug, Default)]
pub struct ConsoleLog {
    buf: VecDeque<u8>,
    /// Offset of the byte after the newest.
    end: u64,
}

impl ConsoleLog {
    /// An empty log.
    pub const fn new() -> Self {
        Self {
            buf: VecDeque::new(),
            end: 0,
        }
    }

    /// An empty log with room for [`KEEP`] bytes already allocated, so that recording
    /// never grows the heap afterwards (the hypervisor's heap stays level across VM
    /// lifecycles).
    pub fn preallocated() -> Self {
        Self {
            buf: VecDeque::with_capacity(KEEP),
            end: 0,
        }
    }

    /// Appends output, dropping the oldest beyond [`KEEP`].
    pub fn push(&mut self, bytes: &[u8]) {
        self.end += bytes.len() as u64;
        let bytes = &bytes[bytes.len().saturating_sub(KEEP)..];
        let over = (self.buf.len() + bytes.len()).saturating_sub(KEEP);
        self.buf.drain(..over);
        self.buf.extend(bytes);
    }

    /// Offset of the byte after the newest.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The bytes from offset `since` (or from the oldest kept, if `since` is older) to the
    /// end, at most `max` of them; returns the offset after the last byte given. A
    /// `since` beyond the end (a reader from before a reboot) reads from the oldest kept.
    pub fn read(&self, since: u64, max: usize) -> (u64, Vec<u8>) {
        let start = self.end - self.buf.len() as u64;
        let from = if since > self.end {
            start
        } else {
            since.max(start)
        };
        let skip = (from - start) as usize;
        let data: Vec<u8> = self.buf.iter().skip(skip).take(max).copied().collect();
        (from + data.len() as u64, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preallocated_log_never_reallocates() {
        let mut log = ConsoleLog::preallocated();
        let cap = log.buf.capacity();
        assert!(cap >= KEEP);
        for i in 0..3 * KEEP / 100 {
            log.push(&[i as u8; 100]);
        }
        assert_eq!(log.buf.capacity(), cap);
        assert_eq!(log.buf.len(), KEEP);
    }

    #[test]
    fn reads_what_came_since_and_skips_what_was_dropped() {
        let mut log = ConsoleLog::new();
        assert_eq!(log.read(0, 100), (0, vec![]));
        log.push(b"hello ");
        log.push(b"world\n");
        assert_eq!(log.read(0, 100), (12, b"hello world\n".to_vec()));
        assert_eq!(log.read(6, 100), (12, b"world\n".to_vec()));
        assert_eq!(log.read(6, 3), (9, b"wor".to_vec()));
        assert_eq!(log.read(12, 100), (12, vec![]));
        // Beyond the end: from the oldest kept.
        assert_eq!(log.read(99, 5), (5, b"hello".to_vec()));
        let big = vec![b'x'; KEEP + 10];
        log.push(&big);
        assert_eq!(log.end(), 12 + KEEP as u64 + 10);
        let (next, data) = log.read(0, usize::MAX);
        assert_eq!(data.len(), KEEP);
        assert_eq!(next, log.end());
        log.push(b"abc");
        let (next, data) = log.read(0, usize::MAX);
        assert_eq!((data.len(), next), (KEEP, log.end()));
        assert_eq!(&data[KEEP - 3..], b"abc");
    }
}
