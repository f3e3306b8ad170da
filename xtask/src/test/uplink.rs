//! Uplink scenarios: the machine's own NICs, each brought up by its driver plugin and
//! proven by the boot-time self-test (image feature `net-selftest`: every registered
//! uplink ARPs QEMU's user-network gateway 10.0.2.2 and must hear its answer from
//! slirp's gateway MAC 52:55:0a:00:02:02, libslirp's `special_ethaddr` with the
//! gateway's address in its last four bytes).

use super::{guest_passes, storage_target};
use crate::qemu::{HostNic, Scenario};

/// `net-uplink-usb`: a `qemu-xhci` controller on the machine's PCIe with QEMU's `usb-net`
/// (0525:a4a2, full speed, RNDIS and CDC-ECM configurations) on its first USB 2 port
/// (QEMU numbers its USB 3 ports 1-4 first, so port 5):
/// the xhci plugin starts the controller and enumerates the device, the CDC-ECM
/// configuration is chosen over RNDIS (the first), the usb-cdc-ecm plugin reads the MAC
/// QEMU gives the NIC (52:54:00:12:34:56) and registers the uplink, the ARP self-test
/// round-trips through bulk OUT and bulk IN (with the controller's INTx), and the test
/// guest still passes. With `noncoherent`, on the KDL-only qemu-virt whose PCIe is not
/// `dma-coherent`: every ring, context and buffer goes through cache maintenance.
pub fn net_uplink_usb(noncoherent: bool) -> Scenario {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut expect = Vec::new();
    if noncoherent {
        expect.push("[hv] board: qemu-virt-noncoherent ".to_string());
    }
    expect.extend(s(&[
        ": controller running, ",
        " port 5: 0525:a4a2 full-speed, slot 1, configuration 1 of 2 (2 interface(s))",
        "[hv] usb-nic 0525:a4a2 port 5: CDC-ECM, MAC 52:54:00:12:34:56, data interface 1 setting 1",
        " port 5: driver cdc-ecm",
        " 1b36:000d class 0c0330: driver xhci",
        " for xhci, on CPU 0",
        "[hv] net selftest usb-nic 0525:a4a2 port 5 (usb): ARP reply from 10.0.2.2 at 52:55:0a:00:02:02",
    ]));
    expect.extend(guest_passes("test"));
    expect.push("[hv] all VMs stopped; powering off".into());
    Scenario {
        host_nic: Some(HostNic {
            features: &["net-selftest"],
            devices: &["qemu-xhci,id=xhci", "usb-net,bus=xhci.0,netdev=net0"],
            netdev_options: "",
            hostfwd_to: None,
        }),
        ..Scenario::new(
            if noncoherent {
                "net-uplink-usb-noncoherent"
            } else {
                "net-uplink-usb"
            },
            storage_target(noncoherent),
            expect,
        )
    }
}
