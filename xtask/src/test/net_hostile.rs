//! `net-hostile`: a hostile test guest drives its virtio-net NIC with transmit chains
//! outside its RAM, oversized and offload-asking frames, broken queues (loops, nested
//! indirect tables, indices out of range, an available index running ahead), receive
//! buffers it cannot be given frames in, and a flood of frames with its neighbour's
//! address as source, while a second test guest on the same virtual switch ticks to it
//! and answers its pings (test guest modes `net-hostile` and `net-neighbour`,
//! `examples/test-guest/src/net.rs`, VM file `examples/vms/net-hostile.toml`).
//!
//! What each probe must end in is what `hypervisor/src/virtio/net.rs` and `queue.rs`
//! promise:
//! - a chain whose *buffers* the device cannot use (outside RAM, in MMIO, a header too
//!   short for `virtio_net_hdr`), a frame over 1518 bytes, a header asking for checksum
//!   or segmentation offload that was not offered, a frame shorter than an Ethernet
//!   header: the chain comes back in the used ring and the frame is dropped (counted by
//!   the device, or by the switch for runts); the queue itself is fine, so the device
//!   keeps running (`used, device ok`). That the frame really went nowhere the neighbour
//!   says: every probe frame is of a kind it counts, and it reports its count in its
//!   answer to the ping that follows every probe (`neighbour saw 0 probe frames`); and
//!   the switch's `tx` count on the hostile port must equal the valid frames the guest
//!   says it sent.
//! - a broken *queue* (a descriptor loop, an indirect table inside an indirect table, a
//!   `next` beyond the table, a readable descriptor after a writable one, a chain of more
//!   than 4 GiB, an available index more than a queue ahead, a descriptor table outside
//!   RAM): `DEVICE_NEEDS_RESET` (virtio 1.2 §2.1.2), after which the guest resets the
//!   device and brings it up again.
//! - receive buffers outside RAM, read-only, or too small for a frame: each comes back
//!   used, with 0 bytes (12 for the buffer straddling RAM's end: the header fits below
//!   the end, the frame does not), the frame in it lost; the device keeps running.
//! - frames with the neighbour's source address: the device sends them (it does not
//!   look at addresses), the switch drops and counts them: `spoofed 16` on the hostile
//!   port in the console's `net` command, typed once the guest says its flood is done
//!   (the guest then waits for a byte on its console, so that the counters hold still).
//!
//! Then a last ping with a run-time marker must come back echoed, the neighbour must
//! report no probe frame, no frame from its own address and nothing unexpected, both VMs
//! power off, no `[hv]` line speaks of a fault or panic, and the hypervisor stays up
//! until `poweroff` is typed.

use super::target;
use crate::qemu::Scenario;
use std::time::Duration;

const NAME: &str = "net-hostile";
/// The VMs' addresses (`examples/vms/net-hostile.toml`).
const HOSTILE_MAC: &str = "52:54:00:4e:48:01";
const NEIGHBOUR_MAC: &str = "52:54:00:4e:48:02";
/// Frames of the forged flood (`FORGED` in the guest's `net_run.rs`).
const FORGED: u64 = 16;

const USED: &str = "used, device ok";
const RESET: &str = "NEEDS_RESET, reset and up again";

/// Each probe the hostile guest makes, in order, and the outcome it must have.
const PROBES: [(&str, &str); 22] = [
    ("tx frame at RAM end", USED),
    ("tx frame straddling RAM end", USED),
    ("tx frame at 1 TiB", USED),
    ("tx frame in its own MMIO", USED),
    ("tx header at RAM end", USED),
    ("tx oversized frame (1519 bytes)", USED),
    ("tx jumbo frame (9000 bytes)", USED),
    ("tx header-only chain", USED),
    ("tx short header (6 bytes)", USED),
    ("tx header with NEEDS_CSUM", USED),
    ("tx header with GSO TCPv4", USED),
    ("tx descriptor loop", RESET),
    ("tx indirect table inside an indirect table", RESET),
    ("tx next index beyond the table", RESET),
    ("tx readable descriptor after a writable one", RESET),
    ("tx chain of more than 4 GiB", RESET),
    ("tx available index more than a queue ahead", RESET),
    ("tx descriptor table at RAM end", RESET),
    (
        "rx buffers outside RAM (at its end, straddling it, 1 TiB, its MMIO)",
        "4 of 4 used with 0/12/0/0 bytes, device ok",
    ),
    (
        "rx buffer the device may not write",
        "used with 0 bytes, device ok",
    ),
    (
        "rx buffer smaller than a frame (32 bytes)",
        "used with 0 bytes, device ok",
    ),
    (
        "frames with the neighbour's source address",
        "16 of 16 used, device ok",
    ),
];

fn hostile(s: &str) -> String {
    format!("[hostile] [test-guest] net-hostile: {s}")
}

fn neighbour(s: &str) -> String {
    format!("[neighbour] [test-guest] net-neighbour: {s}")
}

/// The hostile guest's lines, in order.
fn hostile_lines() -> Vec<String> {
    let mut v = vec![
        hostile(&format!(
            "virtio-net up (VERSION_1, MAC), MAC {HOSTILE_MAC}"
        )),
        hostile(&format!(
            "neighbour {NEIGHBOUR_MAC} ticks and answers pings"
        )),
    ];
    for (probe, outcome) in PROBES {
        v.push(hostile(&format!(
            "{probe} -> {outcome}; neighbour saw 0 probe frames, 0 from its own address"
        )));
    }
    v.push(hostile(&format!(
        "flood done: {FORGED} frames from {NEIGHBOUR_MAC}, "
    )));
    v.push(hostile(&format!(
        "after {} probes, device works: echo from neighbour {NEIGHBOUR_MAC} (marker=",
        PROBES.len()
    )));
    v.push(hostile("done, "));
    v
}

/// The value after `key` (up to white space or a comma) on `line`.
fn word_after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(key)? + key.len();
    line[at..]
        .split(|c: char| c.is_whitespace() || c == ',' || c == '/')
        .find(|w| !w.is_empty())
}

/// After the run: the `net` line of the hostile port, printed after the flood, counts
/// exactly the forged frames as spoofed and exactly the valid frames the guest said it
/// sent as transmitted (so no probe frame passed the switch).
fn check_counters(lines: &[String]) -> Result<(), String> {
    let flood = lines
        .iter()
        .position(|l| l.contains("net-hostile: flood done:"))
        .ok_or("the hostile guest never said its flood was done")?;
    let valid: u64 = word_after(&lines[flood], ", ")
        .and_then(|w| w.parse().ok())
        .ok_or(format!("no `, N valid frames sent` in `{}`", lines[flood]))?;
    let tag = format!("`hostile` nic0 {HOSTILE_MAC} vlan");
    let line = lines[flood..]
        .iter()
        .find(|l| l.contains("[hv] net: port") && l.contains(&tag))
        .ok_or(format!(
            "no `[hv] net: port ... {tag} ...` line after the flood"
        ))?;
    let num = |key: &str| -> Result<u64, String> {
        word_after(line, key)
            .and_then(|w| w.parse().ok())
            .ok_or(format!("no `{key}N` in `{line}`"))
    };
    let (spoofed, tx) = (num("spoofed ")?, num("tx ")?);
    let mut errors = Vec::new();
    if spoofed != FORGED {
        errors.push(format!(
            "the switch counted {spoofed} spoofed frames on the hostile port, the guest sent {FORGED}"
        ));
    }
    if tx != valid {
        errors.push(format!(
            "the switch passed {tx} frames from the hostile port, the guest sent {valid} valid ones (a probe frame got through?)"
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n  in `{line}`", errors.join("; ")))
    }
}

/// `net-hostile` (see the module documentation).
pub fn scenario() -> Scenario {
    let flood_done = hostile("flood done:");
    let stats = format!("`hostile` nic0 {HOSTILE_MAC} vlan");
    let stopped_h = "[hv] VM 0 `hostile` stopped: guest called PSCI SYSTEM_OFF".to_string();
    let stopped_n = "[hv] VM 1 `neighbour` stopped: guest called PSCI SYSTEM_OFF".to_string();
    let mut expect = hostile_lines();
    expect.push("[hv] powering off".into());
    Scenario {
        expect_unordered: vec![
            neighbour(&format!(
                "virtio-net up (VERSION_1, MAC), MAC {NEIGHBOUR_MAC}"
            )),
            neighbour(&format!("bye from {HOSTILE_MAC} after ")),
            "ticks sent); saw 0 probe frames, 0 from its own address, 0 unexpected".into(),
            format!("[hv] net: port `hostile` nic0 sent from {NEIGHBOUR_MAC}, not its own {HOSTILE_MAC}: dropped (counted)"),
            stats.clone(),
            stopped_h.clone(),
            stopped_n.clone(),
        ],
        // Once the flood is done, the switch's counters; once they are printed, a byte
        // for the hostile guest (VM 0 has the console) to go on; once both VMs are off,
        // power the machine off (a console command keeps it up).
        input: vec![
            (vec![flood_done], "\x1d:net\r".into()),
            (vec![stats], "c".into()),
            (vec![stopped_h, stopped_n], "\x1d:poweroff\r".into()),
        ],
        check_lines: Some(check_counters),
        forbid: [
            "FAIL",
            "PANIC",
            "panic",
            "FATAL",
            // `[hv] VM `hostile` vCPU 0: fault at ...`, not the word `default`.
            " fault",
            "unhandled exception",
            "cannot give it RAM",
        ]
        .map(String::from)
        .to_vec(),
        timeout: Duration::from_secs(180),
        ..Scenario::new(
            NAME,
            target("qemu-virt", "examples/vms/net-hostile.toml"),
            expect,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(tx: u64, spoofed: u64) -> String {
        format!("[hv] net: port 1 `hostile` nic0 {HOSTILE_MAC} vlan -: rx 300/18000 B, tx {tx}/1380 B, dropped 40, spoofed {spoofed}")
    }

    fn console(tx: u64, spoofed: u64) -> Vec<String> {
        vec![
            hostile(&format!(
                "flood done: 16 frames from {NEIGHBOUR_MAC}, 23 valid frames sent"
            )),
            format!("[hv] net: port 2 `neighbour` nic0 {NEIGHBOUR_MAC} vlan -: rx 23/1380 B, tx 900/54000 B, dropped 0, spoofed 0"),
            stats(tx, spoofed),
        ]
    }

    #[test]
    fn exact_counts_pass() {
        check_counters(&console(23, 16)).unwrap();
    }

    #[test]
    fn a_wrong_spoof_or_tx_count_fails() {
        let e = check_counters(&console(23, 15)).unwrap_err();
        assert!(e.contains("15 spoofed"), "{e}");
        let e = check_counters(&console(24, 16)).unwrap_err();
        assert!(e.contains("passed 24 frames"), "{e}");
    }

    #[test]
    fn counters_before_the_flood_do_not_count() {
        let mut lines = vec![stats(23, 16)];
        lines.push(hostile(&format!(
            "flood done: 16 frames from {NEIGHBOUR_MAC}, 23 valid frames sent"
        )));
        let e = check_counters(&lines).unwrap_err();
        assert!(e.contains("after the flood"), "{e}");
        assert!(check_counters(&[]).is_err());
    }

    #[test]
    fn every_probe_has_a_line() {
        let l = hostile_lines();
        assert_eq!(l.len(), 2 + PROBES.len() + 3);
        assert!(l[2].ends_with("tx frame at RAM end -> used, device ok; neighbour saw 0 probe frames, 0 from its own address"));
    }
}
