//! Networking scenarios: Linux VMs (Debian 6.1 cloud kernel, `virtio_net` from the
//! initramfs, `examples/initramfs/net-init`) on the hypervisor's virtual switch, with and
//! without a machine NIC as uplink to QEMU's user network.
//!
//! | scenario | boots | checks |
//! |---|---|---|
//! | `net-vm-to-vm+net-spoof` | 2 VMs, no machine NIC | ping both ways, a 2 MiB file through busybox `nc` arrives with the sender's SHA-256; then `b` sends 32 raw frames with `a`'s MAC and 32 with its own: `a` sees its own 32 and none of the spoofed, `b` still pings `a`, and the `net` console command counts >= 32 spoofed frames on `b`'s port and none on `a`'s |
//! | `net-web-server-usb+net-usb-replug` | 1 VM, QEMU `usb-net` uplink | xtask fetches the VM's busybox `httpd` page through `hostfwd` and finds the value the guest made at run time; then QMP removes the USB NIC while the VM pings the gateway, pings get lost, QMP adds it back, pings resume and the hypervisor powers off cleanly after the VM |
//! | `net-web-server-pci` | 1 VM, QEMU `e1000e` uplink | the same page through the PCI NIC |
//!
//! The VM files are `examples/vms/net-*.toml`; the initramfs they name is built here first
//! (`guest::net`).

use super::{linux_forbid, target};
use crate::guest::net::{net_guest, Flavour};
use crate::qemu::{HostNic, LiveCtx, LiveStep, Scenario};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Frames the spoofing VM sends with the other VM's MAC (and as many with its own):
/// `count` of `netbench spoof` in `net-init`.
const SPOOF_FRAMES: u64 = 32;

/// Size of the file `b` sends `a` (`dd ... bs=1024 count=2048` in `net-init`).
const FILE_BYTES: u64 = 2 << 20;

/// Forbidden output of the network scenarios: Linux's, and `FAIL` (what `net-init` prints
/// when something it waits for does not come).
fn forbid() -> Vec<String> {
    let mut f = linux_forbid();
    f.push("FAIL".into());
    f
}

/// Every network scenario (builds the cloud network guest the VM files name).
pub fn scenarios(images: &crate::guest::GuestImages) -> Result<Vec<Scenario>, String> {
    let mut images = images.clone();
    net_guest(&mut images, Flavour::Cloud)?;
    Ok(vec![vm_to_vm_and_spoof(), web_usb_and_replug(), web_pci()])
}

/// `net-vm-to-vm+net-spoof`: see the module doc.
fn vm_to_vm_and_spoof() -> Scenario {
    let stopped_a = "[hv] VM 0 `a` stopped";
    let stopped_b = "[hv] VM 1 `b` stopped";
    let spoof_sent = "[b] [netbench] spoof sent spoofed=32 own=32 src=52:54:00:00:00:0a";
    Scenario {
        expect_unordered: s(&[
            "[a] [net] eth0 driver=virtio_net mac=52:54:00:00:00:0a ip=10.0.2.15 carrier=1",
            "[b] [net] eth0 driver=virtio_net mac=52:54:00:00:00:0b ip=10.0.2.16 carrier=1",
            "[a] [vm2vm] a received bytes=2097152 sha256=",
            "[b] [vm2vm] b sending bytes=2097152 sha256=",
            "[a] [vm2vm] a pinged b: 3 packets received",
            "[b] [vm2vm] b pinged a: 3 packets received",
            "[a] [netbench] sniff own=32 spoofed=0 end=yes",
            "[b] [spoof] b pinged a after spoofing: 3 packets received",
            // The switch reports the first spoofed frame of a port.
            "[hv] net: port `b` nic0 sent from 52:54:00:00:00:0a, not its own 52:54:00:00:00:0b",
        ]),
        // Once b has spoofed, the console's `net` command shows the switch's counters; once
        // both VMs are off, power the machine off (a console command keeps it up).
        input: vec![
            (s(&[spoof_sent]), "\x1d:net\r".into()),
            (s(&[stopped_a, stopped_b]), "\x1d:poweroff\r".into()),
        ],
        check_lines: Some(vm_to_vm_and_spoof_lines),
        forbid: forbid(),
        timeout: Duration::from_secs(300),
        ..Scenario::new(
            "net-vm-to-vm+net-spoof",
            target("qemu-virt", "examples/vms/net-vm-to-vm.toml"),
            s(&[spoof_sent, "[hv] net: port", "[hv] powering off"]),
        )
    }
}

/// The value after `key` (up to white space or a comma) on `line`.
fn word_after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(key)? + key.len();
    line[at..]
        .split(|c: char| c.is_whitespace() || c == ',')
        .find(|w| !w.is_empty())
}

/// After the run: `a` received exactly what `b` sent (the SHA-256 each printed), and the
/// switch's `net` lines printed after `b`'s spoofing count at least [`SPOOF_FRAMES`]
/// spoofed frames on `b`'s port and none on `a`'s.
fn vm_to_vm_and_spoof_lines(lines: &[String]) -> Result<(), String> {
    let printed = |marker: &str| -> Result<&str, String> {
        lines
            .iter()
            .find_map(|l| word_after(l, marker).filter(|_| l.contains(marker)))
            .ok_or(format!("no `{marker}` line"))
    };
    let sent = printed("[vm2vm] b sending bytes=2097152 sha256=")?;
    let got = printed("[vm2vm] a received bytes=2097152 sha256=")?;
    if sent != got {
        return Err(format!(
            "net-vm-to-vm: a received a file with SHA-256 {got}, b sent {sent} ({FILE_BYTES} bytes each)"
        ));
    }
    let after = lines
        .iter()
        .position(|l| l.contains("[netbench] spoof sent"))
        .ok_or("net-spoof: b never said it sent the frames")?;
    let spoofed_on = |vm: &str| -> Result<u64, String> {
        let tag = format!("`{vm}`");
        let line = lines[after..]
            .iter()
            .find(|l| l.contains("[hv] net: port") && l.contains(&tag) && l.contains(" spoofed "))
            .ok_or(format!(
                "net-spoof: no `[hv] net: port ... {tag} ...` line after the spoofing"
            ))?;
        word_after(line, "spoofed ")
            .and_then(|w| w.parse().ok())
            .ok_or(format!("net-spoof: no `spoofed N` in `{line}`"))
    };
    let (a, b) = (spoofed_on("a")?, spoofed_on("b")?);
    if b < SPOOF_FRAMES || a != 0 {
        return Err(format!(
            "net-spoof: the switch counted {b} spoofed frames on b's port (want >= {SPOOF_FRAMES}) and {a} on a's (want 0)"
        ));
    }
    Ok(())
}

/// Fetches `http://127.0.0.1:PORT/` (the hostfwd port) and checks that the page holds the
/// value the guest printed on its last `[web] serving value=` line. Retries for 30 s: slirp
/// accepts a forwarded connection before the guest does and closes it when the guest does
/// not answer.
fn http_fetch(ctx: &mut LiveCtx<'_>) -> Result<String, String> {
    let port = ctx
        .hostfwd_port
        .ok_or("the scenario forwards no host port")?;
    let value = ctx
        .lines
        .iter()
        .rev()
        .find_map(|l| word_after(l, "[web] serving value="))
        .ok_or("no `[web] serving value=` line")?
        .to_string();
    fetch_value(port, &value, Duration::from_secs(30))
}

/// GETs `/` from 127.0.0.1:`port` until the page holds `value=VALUE` or `wait` passes.
fn fetch_value(port: u16, value: &str, wait: Duration) -> Result<String, String> {
    let deadline = Instant::now() + wait;
    let mut last = String::new();
    while Instant::now() < deadline {
        match http_get(port) {
            Ok(body) if body.contains(&format!("value={value}")) => {
                return Ok(format!(
                    "[xtask] http: fetched value={value} from 127.0.0.1:{port} (hostfwd)"
                ))
            }
            Ok(body) => last = format!("the page was {body:?}"),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(format!(
        "GET http://127.0.0.1:{port}/ never showed value={value}; last: {last}"
    ))
}

/// One `GET /` over HTTP/1.0; the body.
fn http_get(port: u16) -> Result<String, String> {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    c.write_all(b"GET / HTTP/1.0\r\nHost: vm\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut r = Vec::new();
    c.read_to_end(&mut r).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&r);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or(format!("no HTTP response: {text:?}"))?;
    if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
        return Err(format!(
            "HTTP status `{}`",
            head.lines().next().unwrap_or("")
        ));
    }
    Ok(body.to_string())
}

/// The QEMU id of the machine's USB NIC in `net-web-server-usb+net-usb-replug`.
const USB_NIC: &str = "usb-net,id=usbnic,bus=xhci.0,netdev=net0";

fn usb_remove(ctx: &mut LiveCtx<'_>) -> Result<String, String> {
    ctx.qmp
        .execute("device_del", serde_json::json!({ "id": "usbnic" }))?;
    Ok("[xtask] usb NIC removed (QMP device_del usbnic)".into())
}

fn usb_add(ctx: &mut LiveCtx<'_>) -> Result<String, String> {
    ctx.qmp.execute(
        "device_add",
        serde_json::json!({ "driver": "usb-net", "id": "usbnic", "bus": "xhci.0", "netdev": "net0" }),
    )?;
    Ok("[xtask] usb NIC added (QMP device_add usb-net)".into())
}

/// `net-web-server-usb+net-usb-replug`: see the module doc.
fn web_usb_and_replug() -> Scenario {
    Scenario {
        host_nic: Some(HostNic {
            features: &[],
            devices: &["qemu-xhci,id=xhci", USB_NIC],
            netdev_options: "",
            hostfwd_to: Some("10.0.2.15:80"),
        }),
        live: vec![
            LiveStep {
                at: s(&["[web] [web] serving value="]),
                action: http_fetch,
            },
            LiveStep {
                at: s(&["[web] [replug] ping ok"]),
                action: usb_remove,
            },
            // Three pings in a row lost after the removal: the NIC is really gone.
            LiveStep {
                at: s(&["[web] [replug] ping lost", "run=3."]),
                action: usb_add,
            },
        ],
        // The VM's virtio-net NIC must stay through the uplink's replug (net-init
        // reconfigures a NIC that came back only when the guest drives the USB NIC itself).
        forbid: [forbid(), s(&["[replug] interface"])].concat(),
        timeout: Duration::from_secs(300),
        ..Scenario::new(
            "net-web-server-usb+net-usb-replug",
            target("qemu-virt", "examples/vms/net-web-usb.toml"),
            s(&[
                "[web] [net] eth0 driver=virtio_net mac=52:54:00:00:00:1a ip=10.0.2.15 carrier=1",
                "[web] [web] serving value=",
                "[xtask] http: fetched value=",
                "[web] [replug] ping ok",
                "[xtask] usb NIC removed",
                // The switch saw its uplink go, and bind the NIC that came back.
                " gone; frames for outside are dropped until a NIC comes",
                "[web] [replug] ping lost",
                "[xtask] usb NIC added",
                ") bound",
                "[web] [replug] pings resumed after",
                "[hv] VM 0 `web` stopped: guest called PSCI SYSTEM_OFF",
                "[hv] all VMs stopped; powering off",
            ]),
        )
    }
}

/// `net-web-server-pci`: see the module doc.
fn web_pci() -> Scenario {
    Scenario {
        host_nic: Some(HostNic {
            features: &[],
            devices: &["e1000e,netdev=net0,romfile="],
            netdev_options: "",
            hostfwd_to: Some("10.0.2.15:80"),
        }),
        live: vec![LiveStep {
            at: s(&["[web] [web] serving value="]),
            action: http_fetch,
        }],
        // The guest waits for a console line once it serves; send it after the fetch.
        input: vec![(s(&["[xtask] http: fetched value="]), "done\n".into())],
        forbid: forbid(),
        timeout: Duration::from_secs(240),
        ..Scenario::new(
            "net-web-server-pci",
            target("qemu-virt", "examples/vms/net-web-pci.toml"),
            s(&[
                "[web] [net] eth0 driver=virtio_net mac=52:54:00:00:00:1a ip=10.0.2.15 carrier=1",
                "[web] [web] serving value=",
                "[xtask] http: fetched value=",
                "[hv] VM 0 `web` stopped: guest called PSCI SYSTEM_OFF",
                "[hv] all VMs stopped; powering off",
            ]),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|l| l.to_string()).collect()
    }

    const GOOD: [&str; 5] = [
        "[b] [vm2vm] b sending bytes=2097152 sha256=abc123",
        "[a] [vm2vm] a received bytes=2097152 sha256=abc123",
        "[b] [netbench] spoof sent spoofed=32 own=32 src=52:54:00:00:00:0a",
        "[hv] net: port 0 `a` nic0 52:54:00:00:00:0a vlan -: rx 9/99 B, tx 9/99 B, dropped 0, spoofed 0",
        "[hv] net: port 1 `b` nic0 52:54:00:00:00:0b vlan -: rx 9/99 B, tx 9/99 B, dropped 32, spoofed 32",
    ];

    #[test]
    fn equal_checksums_and_counted_spoofing_pass() {
        assert_eq!(vm_to_vm_and_spoof_lines(&lines(&GOOD)), Ok(()));
    }

    #[test]
    fn a_different_checksum_fails() {
        let mut l = lines(&GOOD);
        l[1] = "[a] [vm2vm] a received bytes=2097152 sha256=abc124".into();
        let e = vm_to_vm_and_spoof_lines(&l).unwrap_err();
        assert!(e.contains("SHA-256 abc124, b sent abc123"), "{e}");
    }

    #[test]
    fn too_few_spoofed_frames_or_counts_on_the_victim_fail() {
        let mut l = lines(&GOOD);
        l[4] = l[4].replace("spoofed 32", "spoofed 31");
        assert!(vm_to_vm_and_spoof_lines(&l)
            .unwrap_err()
            .contains("31 spoofed frames on b's port"));
        let mut l = lines(&GOOD);
        l[3] = l[3].replace("spoofed 0", "spoofed 2");
        assert!(vm_to_vm_and_spoof_lines(&l)
            .unwrap_err()
            .contains("and 2 on a's"));
    }

    #[test]
    fn counters_printed_before_the_spoofing_do_not_count() {
        let l = lines(&[GOOD[0], GOOD[1], GOOD[3], GOOD[4], GOOD[2]]);
        let e = vm_to_vm_and_spoof_lines(&l).unwrap_err();
        assert!(e.contains("no `[hv] net: port"), "{e}");
    }

    /// Serves `page` over HTTP/1.0 to every connection; returns the port.
    fn serve(page: &'static str) -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { break };
                let mut req = [0u8; 512];
                let _ = c.read(&mut req);
                let _ = write!(
                    c,
                    "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n{page}"
                );
            }
        });
        port
    }

    #[test]
    fn the_page_must_hold_the_guests_value() {
        let port = serve("value=1234-abcd\n");
        let ok = fetch_value(port, "1234-abcd", Duration::from_secs(2)).unwrap();
        assert!(ok.contains("fetched value=1234-abcd"), "{ok}");
        let e = fetch_value(port, "1234-abce", Duration::from_secs(1)).unwrap_err();
        assert!(e.contains("never showed value=1234-abce"), "{e}");
        assert!(e.contains("value=1234-abcd"), "{e}");
    }

    #[test]
    fn words_end_at_commas_and_spaces() {
        assert_eq!(word_after("x spoofed 3, y", "spoofed "), Some("3"));
        assert_eq!(word_after("value=ab-c d", "value="), Some("ab-c"));
        assert_eq!(word_after("nothing", "value="), None);
    }
}
