//! Scenarios for the PCI uplink drivers: the machine has a NIC of its own on QEMU's user
//! network (`-netdev user`, gateway 10.0.2.2) and the image's boot-time self-test (image
//! feature `net-selftest`) sends an ARP request for the gateway through every uplink and
//! must hear the answer, which takes the driver's transmit ring, receive ring and INTx
//! interrupt path. The test guest still passes afterwards.

use super::{guest_passes, storage_target};
use crate::qemu::{HostNic, Scenario};

/// The MAC address QEMU's user network (libslirp) answers ARP with for its own addresses:
/// `52:55` followed by the IPv4 address (slirp's `special_ethaddr`, `arp_input`), so
/// 52:55:0a:00:02:02 for the gateway 10.0.2.2.
const GATEWAY_MAC: &str = "52:55:0a:00:02:02";

/// One PCI NIC scenario: `device` on `net0`, its probe lines, the self-test's answer. With
/// `noncoherent`, on the KDL-only qemu-virt whose PCIe is not `dma-coherent`, so every
/// descriptor and buffer is cleaned or invalidated around the device's accesses.
fn uplink(
    name: &str,
    noncoherent: bool,
    device: &'static str,
    probe: &[&str],
    uplink: &str,
) -> Scenario {
    let mut expect: Vec<String> = Vec::new();
    if noncoherent {
        expect.push("[hv] board: qemu-virt-noncoherent ".into());
    }
    expect.extend(probe.iter().map(|s| s.to_string()));
    expect.push(format!(
        "[hv] net selftest {uplink} (pci): ARP reply from 10.0.2.2 at {GATEWAY_MAC}"
    ));
    expect.extend(guest_passes("test"));
    expect.push("[hv] all VMs stopped; powering off".into());
    let devices: &'static [&'static str] = Box::leak(Box::new([device]));
    Scenario {
        host_nic: Some(HostNic {
            features: &["net-selftest"],
            devices,
            netdev_options: "",
            hostfwd_to: None,
        }),
        forbid: [
            "FAIL",
            "PANIC",
            "FATAL",
            "no ARP reply",
            "transmit failed",
            "no uplink registered",
        ]
        .map(String::from)
        .to_vec(),
        ..Scenario::new(name, storage_target(noncoherent), expect)
    }
}

/// `net-uplink-e1000e` (QEMU `-device e1000e`, an Intel 82574L) and `net-uplink-virtio`
/// (`-device virtio-net-pci` without its legacy interface, 1af4:1041), each also on the
/// non-coherent board (`-noncoherent`).
pub fn scenarios() -> Vec<Scenario> {
    let mut all = Vec::new();
    for noncoherent in [false, true] {
        let suffix = if noncoherent { "-noncoherent" } else { "" };
        all.push(uplink(
            &format!("net-uplink-e1000e{suffix}"),
            noncoherent,
            // No option ROM: the machine has no firmware that would run it.
            "e1000e,netdev=net0,romfile=",
            &[
                "[hv] e1000e 00:01.0: MAC 52:54:00:12:34:56, link up",
                "[hv] pci pcie 00:01.0 8086:10d3 class 020000: driver e1000e",
                "[hv] interrupt ",
            ],
            "e1000e 00:01.0",
        ));
        all.push(uplink(
            &format!("net-uplink-virtio{suffix}"),
            noncoherent,
            "virtio-net-pci,netdev=net0,disable-legacy=on,romfile=",
            &[
                "[hv] virtio-net 00:01.0: MAC 52:54:00:12:34:56, link up",
                "[hv] pci pcie 00:01.0 1af4:1041 class 020000: driver virtio-net",
                "[hv] interrupt ",
            ],
            "virtio-net 00:01.0",
        ));
    }
    all
}
