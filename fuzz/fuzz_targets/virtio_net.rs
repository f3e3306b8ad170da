//! Fuzz target: whatever a guest puts in its RAM (descriptor tables, available rings,
//! transmit headers and frames, receive buffers) and whatever it writes to its virtio-net
//! function's registers, and whatever frames another VM sends it, the virtio-net device
//! (`VirtioPci<VirtioNet>` on the VM's PCI bus) and the virtual switch never panic or
//! hang; and dropping the VM leaves no port behind on the switch.
//!
//! The harness brings the NIC up as a driver would (BAR 0, bus mastering, features,
//! both queues in RAM at fixed places, `DRIVER_OK`); the input then owns the RAM and the
//! order of events.
//!
//! Input: an 8-byte header, a count `n`, `n` 8-byte operations, then the guest's RAM
//! (up to 64 KiB, the rest zero).
//!
//! ```text
//! header  [0] receiveq size 1 << (b % 9)   [1] transmitq size 1 << (b % 9)
//!         [2] bit 0: negotiate MRG_RXBUF   bit 1: the peer is in VLAN 7 (the NIC never
//!             hears it)   bit 2: no bus mastering
//! queues  receiveq: table RAM+0x0000, avail +0x1000, used +0x2000
//!         transmitq: table RAM+0x4000, avail +0x5000, used +0x6000
//! op      [0] kind   [1..3] a (u16 LE)   [3] b   [4..8] c (u32 LE)
//!   0  notify queue a & 1                1  the peer sends a frame: `a % 1600` bytes of
//!   2  poll the VM's devices (what the      RAM from offset `c`, addressed to the NIC
//!      runtime does after `notify`)         (b & 3 = 0), to all (1), elsewhere (2), or
//!   3  the guest writes c at RAM + 4a        sent from a forged source (3)
//!   4  a guest write of c (1 << (b & 3)  5  VM reset
//!      bytes) at BAR 0 + a % 0x4000      6  the peer sends PORT_QUEUE_LEN broadcasts
//!   7  ECAM write of c at config offset a % 0x100 (command register, BAR)
//! ```
#![no_main]

use hypervisor::mmio::AccessSize;
use hypervisor::net::switch::{PortConfig, Switch, PORT_QUEUE_LEN};
use hypervisor::net::MacAddr;
use hypervisor::platform::GicVersion;
use hypervisor::sync::Mutex;
use hypervisor::types::{GuestPhysAddr, VcpuId};
use hypervisor::virtio::net::{VirtioNet, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF};
use hypervisor::virtio::pci::{VirtioPci, COMMON_CFG, NOTIFY_CFG};
use hypervisor::virtio::{
    STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK, VIRTIO_F_VERSION_1,
};
use hypervisor::vm::devices::VmDevices;
use hypervisor::vm::layout;
use hypervisor::vm::mem::FakeGuestMemory;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

const RAM_SIZE: usize = 0x1_0000;
const RAM: u64 = layout::RAM_BASE;
const BAR0: u64 = layout::PCI_MMIO_BASE;
const NIC: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0x0a]);
const PEER: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0x0b]);

fn discard(_tag: &str, _line: &[u8]) {}

struct Vm {
    dev: VmDevices,
}

impl Vm {
    fn write(&mut self, addr: u64, size: AccessSize, value: u64) {
        let _ = self
            .dev
            .mmio_write(VcpuId(0), GuestPhysAddr(addr), size, value);
    }

    fn common(&mut self, off: u64, size: AccessSize, value: u64) {
        self.write(BAR0 + COMMON_CFG + off, size, value);
    }

    /// What `virtio_pci` + `virtio_net` do before the first frame.
    fn bring_up(&mut self, features: u64, sizes: [u16; 2], bus_master: bool) {
        let ecam = layout::PCI_ECAM_BASE; // slot 0
        self.write(ecam + 0x10, AccessSize::Word, BAR0);
        self.write(
            ecam + 0x04,
            AccessSize::HalfWord,
            if bus_master { 0x6 } else { 0x2 },
        );
        let s = u64::from(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        self.common(0x14, AccessSize::Byte, s);
        for (sel, word) in [(0, features & 0xffff_ffff), (1, features >> 32)] {
            self.common(0x08, AccessSize::Word, sel);
            self.common(0x0c, AccessSize::Word, word);
        }
        let s = s | u64::from(STATUS_FEATURES_OK);
        self.common(0x14, AccessSize::Byte, s);
        for (q, size) in sizes.into_iter().enumerate() {
            let base = RAM + 0x4000 * q as u64;
            self.common(0x16, AccessSize::HalfWord, q as u64);
            self.common(0x18, AccessSize::HalfWord, u64::from(size));
            self.common(0x20, AccessSize::DoubleWord, base);
            self.common(0x28, AccessSize::DoubleWord, base + 0x1000);
            self.common(0x30, AccessSize::DoubleWord, base + 0x2000);
            self.common(0x1c, AccessSize::HalfWord, 1);
        }
        self.common(0x14, AccessSize::Byte, s | u64::from(STATUS_DRIVER_OK));
    }
}

fn peer_frame(ram: &[u8], len: usize, from: usize, to: u8) -> Vec<u8> {
    let mut f: Vec<u8> = ram.iter().cycle().skip(from).take(len).copied().collect();
    if f.len() >= 12 {
        let dst = match to & 3 {
            0 => NIC,
            1 => MacAddr::BROADCAST,
            _ => MacAddr([2, 9, 9, 9, 9, 9]),
        };
        let src = if to & 3 == 3 { NIC } else { PEER };
        f[..6].copy_from_slice(&dst.0);
        f[6..12].copy_from_slice(&src.0);
    }
    f
}

fuzz_target!(|data: &[u8]| {
    let Some((h, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let Some((&n, rest)) = rest.split_first() else {
        return;
    };
    let ops_len = (usize::from(n) * 8).min(rest.len() / 8 * 8);
    let (ops, ram) = rest.split_at(ops_len);
    let mut image = vec![0u8; RAM_SIZE];
    let k = ram.len().min(RAM_SIZE);
    image[..k].copy_from_slice(&ram[..k]);
    let mem = Arc::new(Mutex::new(FakeGuestMemory::new(
        GuestPhysAddr(RAM),
        RAM_SIZE,
    )));
    mem.lock().bytes_mut().copy_from_slice(&image);

    let sw = Arc::new(Switch::new());
    let port = |name: &str, mac, vlan| PortConfig {
        name: name.into(),
        mac,
        vlan,
    };
    let nic_port = sw
        .add_vm_port(port("`fuzz` nic0", NIC, None), Arc::new(|| {}))
        .expect("a fresh switch takes the port");
    let peer_vlan = (h[2] & 2 != 0).then_some(7);
    let peer = sw
        .add_vm_port(port("`peer` nic0", PEER, peer_vlan), Arc::new(|| {}))
        .expect("another address");
    sw.set_port_enabled(peer, true);

    let Ok(dev) = VmDevices::new(GicVersion::V3, 2, "fuzz", discard) else {
        return;
    };
    let mut dev = dev.with_memory(mem.clone());
    let net = VirtioNet::new(NIC, sw.clone(), nic_port);
    dev.add_pci("nic0", Box::new(VirtioPci::new(net)))
        .expect("one PCI function fits");
    let mut vm = Vm { dev };
    let mut features = VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC;
    if h[2] & 1 != 0 {
        features |= VIRTIO_NET_F_MRG_RXBUF;
    }
    vm.bring_up(
        features,
        [1u16 << (h[0] % 9), 1u16 << (h[1] % 9)],
        h[2] & 4 == 0,
    );

    for op in ops.chunks_exact(8) {
        let a = u16::from_le_bytes([op[1], op[2]]);
        let b = op[3];
        let c = u32::from_le_bytes([op[4], op[5], op[6], op[7]]);
        match op[0] % 8 {
            0 => vm.write(
                BAR0 + NOTIFY_CFG + 4 * u64::from(a & 1),
                AccessSize::HalfWord,
                u64::from(a & 1),
            ),
            1 => {
                let f = peer_frame(&image, usize::from(a % 1600), c as usize % RAM_SIZE, b);
                let _ = sw.send_from_vm(peer, &f);
            }
            2 => {
                vm.dev.poll_io();
            }
            3 => {
                let at = (usize::from(a) * 4) % RAM_SIZE;
                mem.lock().bytes_mut()[at..at + 4].copy_from_slice(&c.to_le_bytes());
            }
            4 => vm.write(
                BAR0 + u64::from(a) % 0x4000,
                AccessSize::from_sas(b),
                u64::from(c),
            ),
            5 => {
                let _ = vm.dev.reset();
            }
            6 => {
                let f = peer_frame(&image, 60, c as usize % RAM_SIZE, 1);
                for _ in 0..PORT_QUEUE_LEN {
                    let _ = sw.send_from_vm(peer, &f);
                }
            }
            _ => vm.write(
                layout::PCI_ECAM_BASE + u64::from(a % 0x100),
                AccessSize::from_sas(b),
                u64::from(c),
            ),
        }
    }
    vm.dev.poll_io();
    drop(vm);
    let ports = sw.stats();
    assert!(
        ports.len() == 1 && ports[0].id == peer,
        "the destroyed VM's port is still on the switch"
    );
});
