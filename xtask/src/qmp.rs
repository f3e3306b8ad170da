//! A small QMP client: QEMU's machine protocol over a Unix socket, for scenarios that look
//! at the machine from outside while the guest runs (a drive's flush count, pausing).
//!
//! QEMU is started with `-qmp unix:PATH,server=on,wait=off`; [`Qmp::connect`] reads the
//! greeting and leaves capabilities negotiation mode, [`Qmp::execute`] sends one command
//! and returns its `return` value (events that arrive meanwhile are skipped).

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A QMP connection.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

/// Counters of one drive, from `query-blockstats`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriveStats {
    /// The block device's node name or device name (`-drive id=`).
    pub device: String,
    /// Flush requests completed.
    pub flush_operations: u64,
    /// Write requests completed.
    pub wr_operations: u64,
    /// Bytes written.
    pub wr_bytes: u64,
    /// Failed writes.
    pub failed_wr_operations: u64,
    /// Failed reads.
    pub failed_rd_operations: u64,
}

impl Qmp {
    /// Connects to the socket at `path`, waiting up to `wait` for QEMU to create it.
    pub fn connect(path: &Path, wait: Duration) -> Result<Self, String> {
        let deadline = Instant::now() + wait;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("QMP socket {}: {e}", path.display()))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut qmp = Self {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(format!("not a QMP greeting: {greeting}"));
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    fn read_message(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| format!("QMP read: {e}"))?;
        if n == 0 {
            return Err("QMP: QEMU closed the connection".into());
        }
        serde_json::from_str(&line).map_err(|e| format!("QMP: bad JSON `{}`: {e}", line.trim()))
    }

    /// Runs `command` with `arguments`; its `return` value, or its error as text.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, String> {
        let msg = json!({ "execute": command, "arguments": arguments });
        writeln!(self.writer, "{msg}").map_err(|e| format!("QMP write: {e}"))?;
        loop {
            let reply = self.read_message()?;
            if reply.get("event").is_some() {
                continue;
            }
            if let Some(r) = reply.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = reply.get("error") {
                return Err(format!("QMP {command}: {e}"));
            }
            return Err(format!("QMP {command}: unexpected reply {reply}"));
        }
    }

    /// `query-blockstats`: the counters of every drive.
    pub fn blockstats(&mut self) -> Result<Vec<DriveStats>, String> {
        parse_blockstats(&self.execute("query-blockstats", json!({}))?)
    }
}

/// The drives of a `query-blockstats` reply.
pub fn parse_blockstats(reply: &Value) -> Result<Vec<DriveStats>, String> {
    let list = reply
        .as_array()
        .ok_or_else(|| format!("query-blockstats: not a list: {reply}"))?;
    list.iter()
        .map(|d| {
            let stats = d
                .get("stats")
                .ok_or_else(|| format!("query-blockstats: entry without stats: {d}"))?;
            let n = |k: &str| {
                stats
                    .get(k)
                    .and_then(Value::as_u64)
                    .ok_or_else(|| format!("query-blockstats: no `{k}` in {stats}"))
            };
            let name = d
                .get("device")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .or_else(|| d.get("node-name").and_then(Value::as_str))
                .unwrap_or("")
                .to_owned();
            Ok(DriveStats {
                device: name,
                flush_operations: n("flush_operations")?,
                wr_operations: n("wr_operations")?,
                wr_bytes: n("wr_bytes")?,
                failed_wr_operations: n("failed_wr_operations")?,
                failed_rd_operations: n("failed_rd_operations")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake QEMU: greeting, capabilities, an event, then a blockstats reply.
    #[test]
    fn negotiates_skips_events_and_reads_blockstats() {
        let dir = std::env::temp_dir().join(format!("xtask-qmp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("qmp.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            writeln!(w, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert!(line.contains("qmp_capabilities"), "{line}");
            writeln!(w, r#"{{"return": {{}}}}"#).unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
            assert!(line.contains("query-blockstats"), "{line}");
            writeln!(w, r#"{{"event": "RESUME", "timestamp": {{}}}}"#).unwrap();
            let reply = r#"{"return": [{"device": "nvm0", "stats": {"flush_operations": 3,
                "wr_operations": 7, "wr_bytes": 4096, "failed_wr_operations": 0,
                "failed_rd_operations": 1}}]}"#
                .replace('\n', " ");
            writeln!(w, "{reply}").unwrap();
        });
        let mut q = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        let stats = q.blockstats().unwrap();
        server.join().unwrap();
        assert_eq!(
            stats,
            vec![DriveStats {
                device: "nvm0".into(),
                flush_operations: 3,
                wr_operations: 7,
                wr_bytes: 4096,
                failed_wr_operations: 0,
                failed_rd_operations: 1,
            }]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn errors_and_malformed_stats_are_reported() {
        assert!(parse_blockstats(&json!({})).is_err());
        let e = parse_blockstats(&json!([{ "device": "d", "stats": {} }])).unwrap_err();
        assert!(e.contains("flush_operations"), "{e}");
    }
}
