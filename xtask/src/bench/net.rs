//! Network rows of `cargo xtask bench`: TCP throughput and ping round trips of a Linux guest,
//! bare QEMU against a VM on the hypervisor's virtual switch, in the same run.
//!
//! - **VM -> host through each uplink** (QEMU `usb-net` on `qemu-xhci`, `e1000e`): the guest
//!   (`net.role=bench-host` of `examples/initramfs/net-init`) pings the gateway 10.0.2.2
//!   (QEMU's user network answers itself) and sends N MiB with `examples/netbench` to
//!   10.0.2.2:PORT, which QEMU's user network connects to 127.0.0.1:PORT, where xtask
//!   listens, counts the bytes and their word sum and answers; netbench's figure runs from
//!   its `connect` to that answer. Bare, the guest drives the QEMU NIC itself; under the
//!   hypervisor the same QEMU NIC is the machine's uplink and the VM has a virtio-net NIC
//!   on the switch.
//! - **VM <-> VM**: under the hypervisor two VMs on the switch (`bench-send` to `bench-recv`,
//!   ping, then netbench). Bare QEMU has no switch: its row is one guest with QEMU's own
//!   `virtio-net-pci` (the NIC model the VMs see) sending to the host and pinging the
//!   gateway, the nearest bare path; the table says so.
//!
//! Both sides run the generic Debian 6.1 kernel (`guest::net::Flavour::Generic`: the cloud
//! kernel has no USB and no `e1000e`) with the same initramfs, at -smp/vCPUs
//! [`NET_CPUS`] and [`NET_MIB`] MiB. Like the storage rows they use `-icount
//! shift=0,sleep=on`: a guest waiting for a reply idles, and with `sleep=off` QEMU would
//! jump its clock to the next timer deadline, so a round trip would measure the timer, not
//! the network. Idle time then passes at host speed and follows the host's load: a full run
//! boots each side [`NET_REPS`] times, interleaved, and shows the median and min..max.

use super::{bare_command, hv_command, image, mkdir, qemu_virt, run_qemu, write_file, BenchError};
use crate::guest::net::{net_guest, Flavour};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// CPUs of the bare guest and vCPUs of each VM.
const NET_CPUS: u32 = 2;
/// Their RAM.
const NET_MIB: u32 = 512;
/// MiB sent, and pings, of a full run and of `--smoke`.
const NET_SEND_MIB: u64 = 16;
const NET_PINGS: u32 = 10;
const NET_SEND_MIB_SMOKE: u64 = 2;
const NET_PINGS_SMOKE: u32 = 3;
/// Runs each way of a full run (interleaved); each figure is the median.
const NET_REPS: usize = 3;
/// The netbench line the throughput comes from.
const SEND_LINE: &str = "[netbench] send MBps=";
/// The ping line the round trip comes from.
const PING_LINE: &str = "[netbench] ping to=";

/// Names of the rows `--row` selects: the two uplinks and VM <-> VM.
pub(super) const ROWS: [&str; 3] = ["usb-net", "e1000e", "vm2vm"];

/// A QEMU NIC of the bench: bare, the guest's own NIC; under the hypervisor, the machine's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Nic {
    /// Shown in the table.
    name: &'static str,
    /// `-device` values (the NIC names `netdev=net0`).
    devices: &'static [&'static str],
}

const USB_NET: Nic = Nic {
    name: "usb-net",
    devices: &["qemu-xhci,id=xhci", "usb-net,bus=xhci.0,netdev=net0"],
};
const E1000E: Nic = Nic {
    name: "e1000e",
    devices: &["e1000e,netdev=net0,romfile="],
};
const VIRTIO_NET: Nic = Nic {
    name: "virtio-net-pci",
    devices: &["virtio-net-pci,netdev=net0,romfile=,disable-legacy=on"],
};

/// What one guest measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct NetFigures {
    /// netbench's send throughput, MB/s (10^6 bytes) of guest time.
    mbps: f64,
    /// Mean ping round trip, ms of guest time.
    rtt_ms: f64,
}

/// One path measured both ways.
pub(super) struct NetResult {
    /// Row label.
    what: String,
    /// What the bare column ran.
    bare_what: String,
    bare: Vec<NetFigures>,
    hv: Vec<NetFigures>,
    /// Host-side MB/s (wall clock) of the bare and hypervisor runs that sent to the host.
    host_mbps_bare: Vec<f64>,
    host_mbps_hv: Vec<f64>,
}

/// Sizes of one run.
#[derive(Clone, Copy)]
struct Sizes {
    mib: u64,
    pings: u32,
}

/// Runs the network benchmark (see the module doc) and returns its figures.
pub(super) fn run(
    out_dir: &Path,
    machine_opt: &Option<String>,
    smoke: bool,
    rows: &[String],
    walls: &mut Vec<(String, f64)>,
) -> Result<Vec<NetResult>, BenchError> {
    let wanted = |row: &str| rows.is_empty() || rows.iter().any(|r| r == row);
    let (sizes, reps, uplinks) = if smoke {
        (
            Sizes {
                mib: NET_SEND_MIB_SMOKE,
                pings: NET_PINGS_SMOKE,
            },
            1,
            vec![E1000E],
        )
    } else {
        (
            Sizes {
                mib: NET_SEND_MIB,
                pings: NET_PINGS,
            },
            NET_REPS,
            vec![USB_NET, E1000E],
        )
    };
    let mut images = crate::guest::ensure().map_err(BenchError::Build)?;
    let guest = net_guest(&mut images, Flavour::Generic).map_err(BenchError::Build)?;
    let dir = out_dir.join("net");
    mkdir(&dir)?;
    let kernel = guest.kernel.image.display().to_string();
    let initrd = guest.initramfs.display().to_string();
    let cmdline = |words: &str| format!("{} {words}", super::LINUX_CMDLINE);
    let host_words = |port: u16| {
        format!(
            "net.role=bench-host net.ip=10.0.2.15 net.port={port} net.mib={} net.pings={}",
            sizes.mib, sizes.pings
        )
    };
    let bare_cmd = |nic: Nic, port: u16| -> Command {
        let mut c = bare_command(machine_opt, NET_CPUS, NET_MIB);
        c.arg("-kernel")
            .arg(&kernel)
            .arg("-initrd")
            .arg(&initrd)
            .args(["-append", &cmdline(&host_words(port))])
            .args(super::ICOUNT_ARGS)
            .args(["-netdev", "user,id=net0"]);
        for d in nic.devices {
            c.args(["-device", d]);
        }
        super::storage::with_storage_icount(&c)
    };
    // The hypervisor's VM file: one VM whose command line carries a placeholder port
    // (written per run: the port is picked when the run starts).
    let vm = |name: &str, words: &str, mac: &str| {
        format!(
            "[[vm]]\nname = \"{name}\"\nvcpus = {NET_CPUS}\nmemory_mib = {NET_MIB}\nkernel = \"{kernel}\"\n\
             initrd = \"{initrd}\"\ncmdline = \"{}\"\n[[vm.nic]]\nmac = \"{mac}\"\n",
            cmdline(words)
        )
    };
    let mut results = Vec::new();
    for nic in uplinks.into_iter().filter(|n| wanted(n.name)) {
        let tag = format!("net-{}", nic.name);
        let mut r = NetResult {
            what: format!("VM -> host, {} uplink", nic.name),
            bare_what: format!("bare QEMU {}", nic.name),
            bare: Vec::new(),
            hv: Vec::new(),
            host_mbps_bare: Vec::new(),
            host_mbps_hv: Vec::new(),
        };
        for rep in 1..=reps {
            let (port, listener) = HostSink::start()?;
            let out = run_qemu(
                bare_cmd(nic, port),
                &format!("{tag}-bare-{rep}"),
                out_dir,
                300,
            )?;
            walls.push((out.name.clone(), out.wall_s));
            // The guest's figures first: their error names what the guest said.
            r.bare.push(figures(&out, sizes.pings)?);
            r.host_mbps_bare.push(listener.finish(&out)?);

            let (port, listener) = HostSink::start()?;
            // The port is on the VM's command line, so the image is built per run; the
            // build after the first is cargo's no-op plus the VM table.
            let vms = write_file(
                &dir.join(format!("{tag}-hv-{rep}.toml")),
                &vm("net", &host_words(port), "52:54:00:00:00:20"),
            )?;
            let img = image(&qemu_virt(vms), out_dir, &format!("{tag}-{rep}"))?;
            let mut hv = hv_command(&img, machine_opt)?;
            hv.args(["-netdev", "user,id=net0"]);
            for d in nic.devices {
                hv.args(["-device", d]);
            }
            let hv = super::storage::with_storage_icount(&hv);
            let out = run_qemu(hv, &format!("{tag}-hv-{rep}"), out_dir, 600)?;
            walls.push((out.name.clone(), out.wall_s));
            r.hv.push(figures(&out, sizes.pings)?);
            r.host_mbps_hv.push(listener.finish(&out)?);
        }
        results.push(r);
    }
    if (!smoke && rows.is_empty()) || (!rows.is_empty() && wanted("vm2vm")) {
        // VM <-> VM: two VMs on the switch; bare: QEMU's virtio-net-pci to the host.
        let mut r = NetResult {
            what: "VM <-> VM on the switch".into(),
            bare_what: "bare QEMU virtio-net-pci -> host".into(),
            bare: Vec::new(),
            hv: Vec::new(),
            host_mbps_bare: Vec::new(),
            host_mbps_hv: Vec::new(),
        };
        let peers = format!(
            "{}{}",
            vm("recv", "net.role=bench-recv net.ip=10.0.2.15", "52:54:00:00:00:21"),
            vm(
                "send",
                &format!(
                    "net.role=bench-send net.ip=10.0.2.16 net.peer=10.0.2.15 net.mib={} net.pings={}",
                    sizes.mib, sizes.pings
                ),
                "52:54:00:00:00:22"
            )
        );
        // Two VMs of NET_CPUS vCPUs each on the board's CPUs: the VMs get one each here.
        let peers = peers.replace(&format!("vcpus = {NET_CPUS}"), "vcpus = 1");
        let vms = write_file(&dir.join("net-vm2vm.toml"), &peers)?;
        let img = image(&qemu_virt(vms), out_dir, "net-vm2vm")?;
        for rep in 1..=reps {
            let (port, listener) = HostSink::start()?;
            let out = run_qemu(
                bare_cmd(VIRTIO_NET, port),
                &format!("net-vm2vm-bare-{rep}"),
                out_dir,
                300,
            )?;
            walls.push((out.name.clone(), out.wall_s));
            // The guest's figures first: their error names what the guest said.
            r.bare.push(figures(&out, sizes.pings)?);
            r.host_mbps_bare.push(listener.finish(&out)?);
            let hv = super::storage::with_storage_icount(&hv_command(&img, machine_opt)?);
            let out = run_qemu(hv, &format!("net-vm2vm-hv-{rep}"), out_dir, 600)?;
            walls.push((out.name.clone(), out.wall_s));
            r.hv.push(figures(&out, sizes.pings)?);
        }
        results.push(r);
    }
    Ok(results)
}

/// The `[netbench] send` and `[netbench] ping` figures of a run (any VM prefix).
fn figures(out: &super::RunOutput, pings: u32) -> Result<NetFigures, BenchError> {
    let err_line = out
        .lines
        .iter()
        .find(|l| l.contains("[netbench] error: ") || l.contains("FAIL"))
        .map(|l| format!(" (the guest said `{}`)", l.trim()));
    let what = |m: &str| format!("{m}..{}", err_line.clone().unwrap_or_default());
    let mbps = out.require(parse_send(&out.lines), &what(SEND_LINE))?;
    let rtt_ms = out.require(
        parse_ping(&out.lines, pings),
        &what(&format!("{PING_LINE}.. {pings} packets received")),
    )?;
    Ok(NetFigures { mbps, rtt_ms })
}

/// `MBps=` of the first `[netbench] send` line; zero or missing rejects it.
fn parse_send(lines: &[String]) -> Option<f64> {
    let line = lines.iter().find(|l| l.contains(SEND_LINE))?;
    let at = line.find(SEND_LINE)? + SEND_LINE.len();
    line[at..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
}

/// The mean round trip of the first `[netbench] ping to=.. N packets received round-trip
/// min/avg/max = a/b/c ms` line, only when all `pings` came back (a lost ping is not a
/// round trip to average over).
fn parse_ping(lines: &[String], pings: u32) -> Option<f64> {
    let line = lines.iter().find(|l| l.contains(PING_LINE))?;
    if !line.contains(&format!(" {pings} packets received ")) {
        return None;
    }
    let stats = line.split("min/avg/max = ").nth(1)?;
    stats
        .split('/')
        .nth(1)?
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
}

/// xtask's end of the VM -> host stream: a listener on 127.0.0.1 (QEMU's user network
/// connects 10.0.2.2:PORT there) that takes one connection, reads netbench's length and
/// stream, and answers `ok BYTES SUM` like netbench's receiver.
struct HostSink {
    rx: mpsc::Receiver<Result<f64, String>>,
}

/// How long the sink waits for its connection (the guest boots first).
const SINK_WAIT: Duration = Duration::from_secs(600);

impl HostSink {
    /// Listens on a free port; returns it and the sink.
    fn start() -> Result<(u16, Self), BenchError> {
        let l = TcpListener::bind("127.0.0.1:0").map_err(|source| BenchError::Io {
            path: "127.0.0.1:0 (listen)".into(),
            source,
        })?;
        let port = l
            .local_addr()
            .map_err(|source| BenchError::Io {
                path: "127.0.0.1 (listener address)".into(),
                source,
            })?
            .port();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(sink(&l));
        });
        Ok((port, Self { rx }))
    }

    /// After the run: the host's MB/s (wall clock), or why the stream was not whole.
    fn finish(self, out: &super::RunOutput) -> Result<f64, BenchError> {
        match self.rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(mbps)) => Ok(mbps),
            Ok(Err(why)) => Err(BenchError::Missing {
                run: out.name.clone(),
                what: format!("a whole stream at the host ({why})"),
                log: out.log.display().to_string(),
            }),
            Err(_) => Err(BenchError::Missing {
                run: out.name.clone(),
                what: "a connection to the host's listener".into(),
                log: out.log.display().to_string(),
            }),
        }
    }
}

/// Accepts one connection (within [`SINK_WAIT`]) and receives one netbench stream.
fn sink(l: &TcpListener) -> Result<f64, String> {
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + SINK_WAIT;
    let mut c = loop {
        match l.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return Err("no connection".into());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    };
    c.set_nonblocking(false).map_err(|e| e.to_string())?;
    c.set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| e.to_string())?;
    receive_stream(&mut c)
}

/// netbench's stream on `c`: its length, then that many bytes; answers `ok BYTES SUM`
/// (the wrapping sum of the little-endian 64-bit words) and returns MB/s of host time.
fn receive_stream(c: &mut (impl Read + Write)) -> Result<f64, String> {
    let mut len = [0u8; 8];
    c.read_exact(&mut len).map_err(|e| format!("length: {e}"))?;
    let bytes = u64::from_le_bytes(len);
    let t0 = Instant::now();
    let (mut got, mut sum) = (0u64, 0u64);
    let mut buf = vec![0u8; 1 << 16];
    let mut carry: Vec<u8> = Vec::new();
    while got < bytes {
        let want = ((bytes - got) as usize).min(buf.len());
        let n = c
            .read(&mut buf[..want])
            .map_err(|e| format!("after {got} of {bytes} bytes: {e}"))?;
        if n == 0 {
            return Err(format!("closed after {got} of {bytes} bytes"));
        }
        carry.extend_from_slice(&buf[..n]);
        let whole = carry.len() / 8 * 8;
        for w in carry[..whole].chunks_exact(8) {
            sum = sum.wrapping_add(u64::from_le_bytes(w.try_into().unwrap_or([0; 8])));
        }
        carry.drain(..whole);
        got += n as u64;
    }
    let secs = t0.elapsed().as_secs_f64().max(1e-9);
    c.write_all(format!("ok {got} {sum}\n").as_bytes())
        .map_err(|e| format!("answer: {e}"))?;
    Ok(got as f64 / secs / 1e6)
}

/// `median (min..max)` of `v`, or the single value.
fn show(v: &[f64], digits: usize) -> String {
    let m = super::median(v).unwrap_or(0.0);
    match super::spread(v) {
        Some((lo, hi)) if v.len() > 1 => format!("{m:.digits$} ({lo:.digits$}..{hi:.digits$})"),
        _ => format!("{m:.digits$}"),
    }
}

/// One figure of a [`NetFigures`].
type Figure = fn(&NetFigures) -> f64;

fn med(v: &[NetFigures], f: Figure) -> f64 {
    super::median(&v.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0)
}

/// Prints the network table.
pub(super) fn print(results: &[NetResult], smoke: bool) {
    let (mib, pings, reps) = if smoke {
        (NET_SEND_MIB_SMOKE, NET_PINGS_SMOKE, 1)
    } else {
        (NET_SEND_MIB, NET_PINGS, NET_REPS)
    };
    println!(
        "\nnetwork (netbench: {mib} MiB over TCP, from connect to the receiver's answer; ping: mean of {pings}; \
         Debian 6.1 generic kernel, -smp {NET_CPUS}, {NET_MIB} MiB; guest time under -icount shift=0,sleep=on; \
         median (min..max) of {reps} run(s) each way)"
    );
    println!(
        "{:<44} {:>5} {:>34} {:>22} {:>8}",
        "figure", "unit", "bare QEMU", "hypervisor", "hv/bare"
    );
    for r in results {
        let rows: [(&str, &str, Figure, usize); 2] = [
            ("TCP throughput", "MB/s", |f| f.mbps, 2),
            ("ping round trip", "ms", |f| f.rtt_ms, 3),
        ];
        for (name, unit, f, digits) in rows {
            let bare: Vec<f64> = r.bare.iter().map(f).collect();
            let hv: Vec<f64> = r.hv.iter().map(f).collect();
            println!(
                "{:<44} {:>5} {:>34} {:>22} {:>7.2}x",
                format!("{}: {name}", r.what),
                unit,
                format!("{} [{}]", show(&bare, digits), r.bare_what),
                show(&hv, digits),
                med(&r.hv, f) / med(&r.bare, f),
            );
        }
    }
    println!(
        "(hv/bare: hypervisor median over bare median; above 1 is better for MB/s, worse for ms)"
    );
}

/// The network figures for `results.json`: every run and the medians.
pub(super) fn json(results: &[NetResult]) -> serde_json::Value {
    use serde_json::json;
    let runs = |v: &[NetFigures]| {
        v.iter()
            .map(|f| json!({ "tcp_mbps": f.mbps, "ping_rtt_ms": f.rtt_ms }))
            .collect::<Vec<_>>()
    };
    json!(results
        .iter()
        .map(|r| json!({
            "path": r.what,
            "bare": r.bare_what,
            "bare_runs": runs(&r.bare),
            "hypervisor_runs": runs(&r.hv),
            "host_wall_mbps_bare": r.host_mbps_bare,
            "host_wall_mbps_hypervisor": r.host_mbps_hv,
            "median_tcp_mbps": { "bare": med(&r.bare, |f| f.mbps), "hypervisor": med(&r.hv, |f| f.mbps) },
            "median_ping_rtt_ms": { "bare": med(&r.bare, |f| f.rtt_ms), "hypervisor": med(&r.hv, |f| f.rtt_ms) },
        }))
        .collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn send_and_ping_lines_are_parsed_with_a_vm_prefix() {
        let l = lines(&[
            "[net] [netbench] ping to=10.0.2.2 5 packets received round-trip min/avg/max = 0.928/2.266/4.954 ms",
            "[net] [netbench] send MBps=19.46 bytes=2097152 ns=107759264 sum=1 to=10.0.2.2:1",
        ]);
        assert_eq!(parse_send(&l), Some(19.46));
        assert_eq!(parse_ping(&l, 5), Some(2.266));
        // One ping lost: no round-trip figure.
        assert_eq!(parse_ping(&l, 6), None);
    }

    #[test]
    fn missing_or_zero_figures_are_none() {
        let l = lines(&[
            "[netbench] ping to=10.0.2.2 0 packets received ",
            "[netbench] send MBps=0.00 bytes=0",
        ]);
        assert_eq!(parse_send(&l), None);
        assert_eq!(parse_ping(&l, 0), None);
        assert_eq!(parse_send(&[]), None);
    }

    /// A stream in memory: what netbench sends, and what the sink answers.
    struct Pipe {
        input: std::io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }
    impl Read for Pipe {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            // Odd-sized reads, so words straddle them.
            let n = b.len().min(13);
            self.input.read(&mut b[..n])
        }
    }
    impl Write for Pipe {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.output.write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_sink_answers_netbenchs_count_and_word_sum() {
        let data: Vec<u8> = (0..64u64).flat_map(|i| (i * 3 + 1).to_le_bytes()).collect();
        let sum: u64 = (0..64u64).map(|i| i * 3 + 1).sum();
        let mut stream = (data.len() as u64).to_le_bytes().to_vec();
        stream.extend_from_slice(&data);
        let mut p = Pipe {
            input: std::io::Cursor::new(stream.clone()),
            output: Vec::new(),
        };
        assert!(receive_stream(&mut p).is_ok());
        assert_eq!(
            String::from_utf8(p.output).unwrap(),
            format!("ok 512 {sum}\n")
        );
        // A stream cut short is an error, not a figure.
        stream.truncate(100);
        let mut p = Pipe {
            input: std::io::Cursor::new(stream),
            output: Vec::new(),
        };
        assert!(receive_stream(&mut p)
            .unwrap_err()
            .contains("closed after 92 of 512 bytes"));
    }
}
