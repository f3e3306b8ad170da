//! Host tests: the RTL8153's real descriptors through enumeration (with and without its
//! quirk) and this driver's bring-up, transmit and receive against fakes.

use super::*;
use hypervisor::plugin::usb::{enumerate, Completed, DeviceInfo, EnumBus, TransferId, UsbPolicy};
use hypervisor::plugin::{match_quirks, QuirkEntry, QUIRKS};
use std::sync::Mutex as StdMutex;
use std::vec::Vec;

/// The RTL8153 (0bda:8153, bcdDevice 30.00) as `lsusb -v` printed it under Linux 6.6.52
/// on a Raspberry Pi 5 running OpenWrt (a public write-up, "OpenWrt on Raspberry Pi 5",
/// with a Dell DBQBCBC064 USB-C adapter): SuperSpeed, two configurations. Each field
/// below is the dump's, in descriptor order; `lsusb` prints `bMaxBurst` of the
/// SuperSpeed endpoint companions but not their `bmAttributes` (0 for these endpoints,
/// USB 3.2 9.6.7) nor `wBytesPerInterval` (reserved, 0, for bulk; for the interrupt
/// endpoints we put their `wMaxPacketSize`, 2 and 16, as one burst of one packet).
/// `MaxPower 288mA` at SuperSpeed is `bMaxPower` 36 (8 mA units).
const RTL8153_DEVICE: [u8; 18] = [
    18, 1, 0x00, 0x03, 0, 0, 0, 9, 0xda, 0x0b, 0x53, 0x81, 0x00, 0x30, 1, 2, 6, 2,
];

/// Configuration 1: the vendor mode (one interface ff/ff/00, bulk 0x81/0x02 of 1024 bytes
/// with bursts of 4, interrupt 0x83 of 2 bytes every 2^(8-1) microframes).
const RTL8153_CONFIG1: [u8; 57] = [
    9, 2, 0x39, 0x00, 1, 1, 0, 0xa0, 36, //
    9, 4, 0, 0, 3, 0xff, 0xff, 0, 0, //
    7, 5, 0x81, 2, 0x00, 0x04, 0, //
    6, 0x30, 3, 0, 0, 0, //
    7, 5, 0x02, 2, 0x00, 0x04, 0, //
    6, 0x30, 3, 0, 0, 0, //
    7, 5, 0x83, 3, 0x02, 0x00, 8, //
    6, 0x30, 0, 0, 2, 0,
];

/// Configuration 2: CDC Ethernet (02/06/00 with header 1.10, union 0 -> 1, Ethernet
/// functional descriptor with iMACAddress 3 and wMaxSegmentSize 1514, interrupt 0x83 of
/// 16 bytes; data interface 1 with setting 0 empty and setting 1 holding bulk 0x81/0x02).
const RTL8153_CONFIG2: [u8; 98] = [
    9, 2, 0x62, 0x00, 2, 2, 0, 0xa0, 36, //
    9, 4, 0, 0, 1, 0x02, 0x06, 0, 5, //
    5, 0x24, 0x00, 0x10, 0x01, //
    5, 0x24, 0x06, 0, 1, //
    13, 0x24, 0x0f, 3, 0, 0, 0, 0, 0xea, 0x05, 0, 0, 0, //
    7, 5, 0x83, 3, 0x10, 0x00, 8, //
    6, 0x30, 0, 0, 16, 0, //
    9, 4, 1, 0, 0, 0x0a, 0, 0, 0, //
    9, 4, 1, 1, 2, 0x0a, 0, 0, 4, //
    7, 5, 0x81, 2, 0x00, 0x04, 0, //
    6, 0x30, 3, 0, 0, 0, //
    7, 5, 0x02, 2, 0x00, 0x04, 0, //
    6, 0x30, 3, 0, 0, 0,
];

/// The dump's `iMacAddress 3 00E04C6B1289`.
const RTL8153_MAC: &str = "00E04C6B1289";

/// QEMU 7.2 `usb-net` (hw/usb/dev-network.c): device, RNDIS configuration (value 2)
/// first, CDC Ethernet (value 1) second; full speed, 64-byte bulk packets.
const QEMU_DEVICE: [u8; 18] = [
    18, 1, 0x00, 0x02, 0x02, 0, 0, 64, 0x25, 0x05, 0xa2, 0xa4, 0, 0, 1, 2, 10, 2,
];
const QEMU_RNDIS: [u8; 67] = [
    9, 2, 67, 0, 2, 2, 9, 0xc0, 0x32, 9, 4, 0, 0, 1, 0x02, 0x02, 0xff, 6, 5, 0x24, 0x00, 0x10,
    0x01, 5, 0x24, 0x01, 0x00, 0x01, 4, 0x24, 0x02, 0x00, 5, 0x24, 0x06, 0x00, 0x01, 7, 5, 0x81, 3,
    16, 0, 32, 9, 4, 1, 0, 2, 0x0a, 0, 0, 4, 7, 5, 0x82, 2, 64, 0, 0, 7, 5, 0x02, 2, 64, 0, 0,
];
const QEMU_ECM: [u8; 80] = [
    9, 2, 80, 0, 2, 1, 7, 0xc0, 0x32, 9, 4, 0, 0, 1, 0x02, 0x06, 0x00, 5, 5, 0x24, 0x00, 0x10,
    0x01, 5, 0x24, 0x06, 0x00, 0x01, 13, 0x24, 0x0f, 3, 0, 0, 0, 0, 0xea, 0x05, 0, 0, 0, 7, 5,
    0x81, 3, 16, 0, 32, 9, 4, 1, 0, 0, 0x0a, 0, 0, 0, 9, 4, 1, 1, 2, 0x0a, 0, 0, 4, 7, 5, 0x82, 2,
    64, 0, 0, 7, 5, 0x02, 2, 64, 0, 0,
];

fn string(s: &str) -> Vec<u8> {
    let mut v = vec![0u8, 3];
    for u in s.encode_utf16() {
        v.extend_from_slice(&u.to_le_bytes());
    }
    v[0] = v.len() as u8;
    v
}

/// A device at the control-request level: serves its descriptors, records what the
/// host set.
#[derive(Default)]
struct FakeDevice {
    device: Vec<u8>,
    configs: Vec<Vec<u8>>,
    mac: String,
    log: Vec<String>,
    stall_filter: bool,
}

impl FakeDevice {
    fn answer(&mut self, s: Setup, buf: &mut [u8]) -> Result<usize, UsbError> {
        self.log.push(format!(
            "in {:02x} {:02x} {:04x} {:04x} {}",
            s.request_type, s.request, s.value, s.index, s.length
        ));
        let (kind, index) = ((s.value >> 8) as u8, s.value as u8);
        let src: Vec<u8> = match (s.request, kind) {
            (6, 1) => self.device.clone(),
            (6, 2) => self
                .configs
                .get(usize::from(index))
                .ok_or(UsbError::Stall)?
                .clone(),
            (6, 3) if index == 0 => vec![4, 3, 0x09, 0x04],
            (6, 3) if index == 3 => string(&self.mac),
            _ => return Err(UsbError::Stall),
        };
        let n = src.len().min(buf.len()).min(usize::from(s.length));
        buf[..n].copy_from_slice(&src[..n]);
        Ok(n)
    }

    fn out(&mut self, s: Setup) -> Result<(), UsbError> {
        self.log.push(format!(
            "out {:02x} {:02x} {:04x} {:04x}",
            s.request_type, s.request, s.value, s.index
        ));
        if s.request == SET_ETHERNET_PACKET_FILTER && self.stall_filter {
            return Err(UsbError::Stall);
        }
        Ok(())
    }
}

struct Enum<'a>(&'a mut FakeDevice);

impl EnumBus for Enum<'_> {
    fn control_in(&mut self, s: Setup, buf: &mut [u8]) -> Result<usize, UsbError> {
        self.0.answer(s, buf)
    }
    fn control_out(&mut self, s: Setup, _: &[u8]) -> Result<(), UsbError> {
        self.0.out(s)
    }
    fn set_ep0_max_packet(&mut self, bytes: u16) -> Result<(), UsbError> {
        self.0.log.push(format!("ep0 {bytes}"));
        Ok(())
    }
    fn set_u1_u2_timeouts(&mut self, u1: u8, u2: u8) -> Result<(), UsbError> {
        self.0.log.push(format!("u1 {u1:#x} u2 {u2:#x}"));
        Ok(())
    }
}

/// A device's bus as a class driver sees it, over a shared [`FakeDevice`].
struct Bus {
    dev: Arc<StdMutex<FakeDevice>>,
    next: u32,
    tx_room: usize,
}

impl UsbBus for Bus {
    fn control_in(&mut self, s: Setup, buf: &mut [u8]) -> Result<usize, UsbError> {
        self.dev.lock().unwrap().answer(s, buf)
    }
    fn control_out(&mut self, s: Setup, _: &[u8]) -> Result<(), UsbError> {
        self.dev.lock().unwrap().out(s)
    }
    fn open(&mut self, e: &usb::Endpoint, queue: usize, max: usize) -> Result<(), UsbError> {
        self.dev
            .lock()
            .unwrap()
            .log
            .push(format!("open {:02x} {queue} {max}", e.address));
        Ok(())
    }
    fn submit_in(&mut self, ep: u8, len: usize) -> Result<TransferId, UsbError> {
        self.dev
            .lock()
            .unwrap()
            .log
            .push(format!("rx {ep:02x} {len}"));
        self.next += 1;
        Ok(TransferId(self.next))
    }
    fn submit_out(&mut self, ep: u8, data: &[u8], zlp: bool) -> Result<TransferId, UsbError> {
        if self.tx_room == 0 {
            return Err(UsbError::Busy);
        }
        self.tx_room -= 1;
        self.dev
            .lock()
            .unwrap()
            .log
            .push(format!("tx {ep:02x} {} zlp={zlp}", data.len()));
        self.next += 1;
        Ok(TransferId(self.next))
    }
}

fn rtl8153() -> FakeDevice {
    FakeDevice {
        device: RTL8153_DEVICE.to_vec(),
        configs: vec![RTL8153_CONFIG1.to_vec(), RTL8153_CONFIG2.to_vec()],
        mac: RTL8153_MAC.into(),
        ..FakeDevice::default()
    }
}

fn no_probe(_: UsbProbe<'_>) -> Result<SharedFunction, ProbeError> {
    Err(ProbeError::Hardware("not in this test"))
}

fn vendor_mode(d: &DeviceDescriptor, i: &Interface) -> bool {
    d.vendor == 0x0bda && i.class == class::VENDOR
}

/// A community vendor driver for the RTL8153 (as Linux's r8152 is), beside ours.
static WITH_VENDOR_DRIVER: [UsbDriverEntry; 2] = [
    UsbDriverEntry {
        name: "r8152-like",
        matches: &[UsbMatch::id(0x0bda, 0x8153)],
        claims: vendor_mode,
        probe: no_probe,
    },
    UsbDriverEntry {
        name: "cdc-ecm",
        matches: &[UsbMatch::interface(class::COMM, 0x06)],
        claims,
        probe,
    },
];

fn rtl8153_quirks() -> Vec<&'static QuirkEntry> {
    match_quirks(&QUIRKS, "usb:0bda:8153").collect()
}

fn enumerate_with(
    dev: &mut FakeDevice,
    quirks: &[&'static QuirkEntry],
    drivers: &[UsbDriverEntry],
    speed: Speed,
) -> DeviceInfo {
    let policy = |_: &DeviceDescriptor| UsbPolicy::from_quirks(quirks.iter().map(|q| &q.data));
    enumerate(&mut Enum(dev), speed, 1, &policy, drivers).unwrap()
}

#[test]
fn the_rtl8153_quirk_selects_cdc_ecm_turns_lpm_off_and_sizes_receive_transfers() {
    let quirks = rtl8153_quirks();
    assert_eq!(quirks.len(), 1, "the RTL8153 quirk set is linked");

    // Without the quirk, a vendor driver for 0bda:8153 takes the vendor configuration
    // (as r8152's configuration selector does), and U1/U2 stay on.
    let mut plain = rtl8153();
    let info = enumerate_with(&mut plain, &[], &WITH_VENDOR_DRIVER, Speed::Super);
    assert_eq!(info.configuration().value, 1);
    assert_eq!(info.configurations.len(), 2);
    assert!(info.lpm);
    assert!(
        plain.log.contains(&"u1 0x7f u2 0xfe".to_string()),
        "{:?}",
        plain.log
    );
    assert!(plain.log.contains(&"out 00 09 0001 0000".to_string()));
    assert!(plain.log.contains(&"ep0 512".to_string()));

    // With the quirk: configuration 2 (CDC Ethernet), U1/U2 timeouts 0 (off).
    let mut quirked = rtl8153();
    let info = enumerate_with(&mut quirked, &quirks, &WITH_VENDOR_DRIVER, Speed::Super);
    assert_eq!(info.configuration().value, 2);
    assert!(!info.lpm);
    assert!(
        quirked.log.contains(&"u1 0x0 u2 0x0".to_string()),
        "{:?}",
        quirked.log
    );
    assert!(quirked.log.contains(&"out 00 09 0002 0000".to_string()));

    // With only our class driver linked, the CDC configuration is also the one we can
    // drive, quirk or not (the quirk still turns LPM off).
    let mut ours = rtl8153();
    let info_plain = enumerate_with(&mut ours, &[], &WITH_VENDOR_DRIVER[1..], Speed::Super);
    assert_eq!(info_plain.configuration().value, 2);

    // The class driver on the quirked device: 32 KiB receive transfers at SuperSpeed
    // (64 KiB without the quirk), MAC from iMACAddress, data interface 1 setting 1.
    let dev = Arc::new(StdMutex::new(rtl8153()));
    let nic = CdcEcm::start(UsbProbe {
        info: &info,
        interface: info.configuration().interface(0, 0),
        bus: Box::new(Bus {
            dev: dev.clone(),
            next: 0,
            tx_room: 4,
        }),
        quirks: &quirks,
        name: "0bda:8153 port 1",
    })
    .unwrap();
    assert_eq!(nic.mac, MacAddr([0x00, 0xe0, 0x4c, 0x6b, 0x12, 0x89]));
    assert_eq!(nic.rx_size, 32 << 10);
    let log = dev.lock().unwrap().log.clone();
    assert!(log.contains(&"open 81 4 32768".to_string()), "{log:?}");
    assert!(log.contains(&"open 02 16 1514".to_string()), "{log:?}");
    assert!(log.contains(&"open 83 2 16".to_string()), "{log:?}");
    assert!(
        log.contains(&"out 01 0b 0001 0001".to_string()),
        "SET_INTERFACE 1 alt 1"
    );
    assert!(
        log.contains(&"out 21 43 001f 0000".to_string()),
        "packet filter"
    );
    assert_eq!(log.iter().filter(|l| *l == "rx 81 32768").count(), 4);
    let unquirked = rx_plan(Speed::Super, core::iter::empty());
    assert_eq!(unquirked.0.rx_transfer_size, 64 << 10);
    // Below SuperSpeed r8152 uses 16 KiB.
    let hs = rx_plan(Speed::High, quirks.iter().map(|q| &q.data));
    assert_eq!((hs.0.rx_transfer_size, hs.1), (16 << 10, 8));
}

fn qemu_nic(
    stall_filter: bool,
    tx_room: usize,
) -> (Arc<StdMutex<FakeDevice>>, Result<CdcEcm, String>) {
    let mut d = FakeDevice {
        device: QEMU_DEVICE.to_vec(),
        configs: vec![QEMU_RNDIS.to_vec(), QEMU_ECM.to_vec()],
        mac: "525400123456".into(),
        stall_filter,
        ..FakeDevice::default()
    };
    let info = enumerate_with(&mut d, &[], &USB_DRIVERS, Speed::Full);
    assert_eq!(
        info.configuration().value,
        1,
        "the CDC configuration, not RNDIS"
    );
    let dev = Arc::new(StdMutex::new(d));
    let nic = CdcEcm::start(UsbProbe {
        info: &info,
        interface: None,
        bus: Box::new(Bus {
            dev: dev.clone(),
            next: 0,
            tx_room,
        }),
        quirks: &[],
        name: "0525:a4a2 port 1",
    });
    (dev, nic)
}

#[test]
fn qemu_usb_net_comes_up_even_if_the_filter_request_stalls() {
    let (dev, nic) = qemu_nic(true, 4);
    let nic = nic.unwrap();
    assert_eq!(nic.mac, MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
    let log = dev.lock().unwrap().log.clone();
    assert!(log.contains(&"open 82 4 65536".to_string()), "{log:?}");
    assert!(log.contains(&"out 01 0b 0001 0001".to_string()));
}

#[test]
fn frames_of_whole_packets_end_with_a_zero_length_packet_and_a_full_queue_says_so() {
    let (dev, nic) = qemu_nic(false, 3);
    let mut nic = nic.unwrap();
    nic.transmit(&[0u8; 100]).unwrap();
    nic.transmit(&[0u8; 128]).unwrap();
    nic.transmit(&[0u8; 64]).unwrap();
    assert_eq!(nic.transmit(&[0u8; 60]), Err(UplinkError::QueueFull));
    assert_eq!(nic.transmit(&[0u8; 1515]), Err(UplinkError::TooLong));
    let log = dev.lock().unwrap().log.clone();
    assert!(log.contains(&"tx 02 100 zlp=false".to_string()), "{log:?}");
    assert!(log.contains(&"tx 02 128 zlp=true".to_string()));
    assert!(log.contains(&"tx 02 64 zlp=true".to_string()));
}

#[test]
fn received_frames_are_handed_over_after_the_lock_and_unplugging_unregisters() {
    let (dev, nic) = qemu_nic(false, 4);
    let nic = Arc::new(Mutex::new(nic.unwrap()));
    let mac = nic.lock().mac;
    let handle = uplink::register("usb-nic test", UplinkKind::Usb, mac, nic.clone());
    let id = handle.id();
    nic.lock().handle = Some(Arc::new(handle));
    let rx_before = dev
        .lock()
        .unwrap()
        .log
        .iter()
        .filter(|l| l.starts_with("rx 82"))
        .count();
    let mut later: Deferred = Vec::new();
    let frame = vec![0xffu8; 60];
    nic.lock().completed(
        Completion {
            endpoint: 0x82,
            id: TransferId(1),
            result: Ok(Completed {
                data: frame.clone(),
                length: 60,
            }),
        },
        &mut later,
    );
    // A zero-length transfer (end of a whole-packet frame) and an error: no frame, but
    // the receive queue is refilled each time.
    for result in [Ok(Completed::default()), Err(UsbError::Transfer(4))] {
        nic.lock().completed(
            Completion {
                endpoint: 0x82,
                id: TransferId(2),
                result,
            },
            &mut later,
        );
    }
    assert_eq!(later.len(), 1, "one frame to hand over");
    for job in later.drain(..) {
        job(); // the NIC's lock is not held here
    }
    let info = uplink::list().into_iter().find(|u| u.id == id).unwrap();
    assert_eq!(info.rx_frames, 1);
    let rx_after = dev
        .lock()
        .unwrap()
        .log
        .iter()
        .filter(|l| l.starts_with("rx 82"))
        .count();
    assert_eq!(rx_after, rx_before + 3);
    // Link down then up by NETWORK_CONNECTION notifications.
    for (value, up) in [(0u8, false), (1, true)] {
        nic.lock().completed(
            Completion {
                endpoint: 0x81,
                id: TransferId(3),
                result: Ok(Completed {
                    data: vec![0xa1, 0, value, 0, 0, 0, 0, 0],
                    length: 8,
                }),
            },
            &mut later,
        );
        for job in later.drain(..) {
            job();
        }
        let info = uplink::list().into_iter().find(|u| u.id == id).unwrap();
        assert_eq!(info.link_up, up);
    }
    nic.lock().disconnected(&mut later);
    for job in later.drain(..) {
        job();
    }
    assert!(uplink::list().iter().all(|u| u.id != id), "unregistered");
    assert_eq!(nic.lock().transmit(&[0u8; 60]), Err(UplinkError::LinkDown));
}

#[test]
fn malformed_cdc_descriptors_and_macs_are_refused() {
    assert_eq!(
        parse_mac("525400123456"),
        Some(MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]))
    );
    assert_eq!(parse_mac("5254001234"), None);
    assert_eq!(parse_mac("52540012345g"), None);
    let cfg = usb::Configuration::parse(&QEMU_ECM).unwrap();
    let mut comm = cfg.interface(0, 0).unwrap().clone();
    comm.extra.retain(|d| d[2] != CS_UNION);
    assert!(layout(&cfg, &comm).is_err());
    let mut comm = cfg.interface(0, 0).unwrap().clone();
    comm.extra.retain(|d| d[2] != CS_ETHERNET);
    assert!(layout(&cfg, &comm).is_err());
    // A MAC string that is not 12 hex digits fails bring-up with a message.
    let mut d = FakeDevice {
        device: QEMU_DEVICE.to_vec(),
        configs: vec![QEMU_RNDIS.to_vec(), QEMU_ECM.to_vec()],
        mac: "not-a-mac".into(),
        ..FakeDevice::default()
    };
    let info = enumerate_with(&mut d, &[], &USB_DRIVERS, Speed::Full);
    let err = CdcEcm::start(UsbProbe {
        info: &info,
        interface: None,
        bus: Box::new(Bus {
            dev: Arc::new(StdMutex::new(d)),
            next: 0,
            tx_room: 1,
        }),
        quirks: &[],
        name: "x",
    })
    .err()
    .unwrap();
    assert!(err.contains("not 12 hex digits"), "{err}");
}
