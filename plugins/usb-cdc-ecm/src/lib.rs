//! USB CDC Ethernet (Ethernet Control Model) class driver: a USB NIC that speaks CDC ECM
//! 1.2 (QEMU's `usb-net`, the RTL8153 in its configuration 2, most USB Ethernet gadgets)
//! becomes an uplink of the virtual switch ([`hypervisor::net::uplink`]).
//!
//! Matched by its communication interface (class 02, subclass 06, CDC ECM 1.2 section
//! 4.1, table 4). The probe reads the CDC Union functional descriptor (its data
//! interface) and the Ethernet Networking functional descriptor (ECM 1.2 section 5.4,
//! table 3: `iMACAddress`, `wMaxSegmentSize`), reads the MAC address from string
//! descriptor `iMACAddress` (12 hex digits, table 3), opens the data interface's bulk
//! endpoints and the notification endpoint, selects the data interface's setting with the
//! endpoints (SET_INTERFACE, section 3.3.1: setting 0 has none, so the device sends
//! nothing until the host is ready), asks for every frame (SET_ETHERNET_PACKET_FILTER
//! with promiscuous, all-multicast, directed, broadcast and multicast, section 6.2.4:
//! the switch forwards frames for the VMs' MACs, not only this NIC's) and keeps several
//! bulk-IN transfers queued. Frames go out as one bulk-OUT transfer each, followed by a
//! zero-length packet when the frame is a multiple of `wMaxPacketSize` (ECM 1.2 section
//! 3.3.1: a frame ends with a short packet). NETWORK_CONNECTION notifications (section
//! 6.3.1) set the uplink's link state. Unplugging drops the uplink.
//!
//! How much one bulk-IN transfer may carry comes from the board's USB NIC quirks
//! ([`plugin_quirks_rtl8153::apply`]: 32 KiB on SuperSpeed, 16 KiB below for the RTL8153).
//! Linux's counterpart: `drivers/net/usb/cdc_ether.c` (`usbnet_cdc_bind`,
//! `usbnet_cdc_update_filter`, `usbnet_cdc_status`) over `usbnet.c`.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use hypervisor::net::uplink::{self, UplinkDevice, UplinkError, UplinkHandle, UplinkKind};
use hypervisor::net::MacAddr;
use hypervisor::plugin::usb::{
    self, class, Completion, Deferred, DeviceDescriptor, EndpointKind, Interface, Setup,
    SharedFunction, Speed, UsbBus, UsbDriverEntry, UsbError, UsbFunction, UsbMatch, UsbProbe,
    USB_DRIVERS,
};
use hypervisor::plugin::ProbeError;
use hypervisor::sync::Mutex;
use plugin_quirks_rtl8153::{UsbNicConfig, UsbSpeed};

/// A console line: the hypervisor's console on the machine, nowhere in host tests.
macro_rules! log {
    ($($a:tt)*) => {{
        #[cfg(target_arch = "aarch64")]
        hypervisor::hvprintln!($($a)*);
        #[cfg(not(target_arch = "aarch64"))]
        {
            let _ = alloc::format!($($a)*);
        }
    }};
}

/// CDC functional descriptor subtypes (CDC 1.2 table 13).
const CS_UNION: u8 = 0x06;
/// Ethernet Networking functional descriptor (CDC 1.2 table 13, ECM 1.2 table 3).
const CS_ETHERNET: u8 = 0x0f;
/// SET_ETHERNET_PACKET_FILTER (ECM 1.2 section 6.2.4).
pub const SET_ETHERNET_PACKET_FILTER: u8 = 0x43;
/// The filter bits (ECM 1.2 table 8): promiscuous, all multicast, directed, broadcast,
/// multicast.
pub const PACKET_FILTER: u16 = 0x1f;
/// NETWORK_CONNECTION notification (ECM 1.2 section 6.3.1).
const NETWORK_CONNECTION: u8 = 0x00;
/// Bytes of bulk-IN buffers kept queued per NIC; the number of transfers is this over
/// the transfer size, between [`MIN_RX_QUEUE`] and [`MAX_RX_QUEUE`].
const RX_BUDGET: usize = 128 << 10;
/// Fewest bulk-IN transfers queued.
pub const MIN_RX_QUEUE: usize = 4;
/// Most bulk-IN transfers queued.
pub const MAX_RX_QUEUE: usize = 16;
/// Bulk-OUT transfers in flight before transmit answers `QueueFull`.
pub const TX_QUEUE: usize = 16;
/// Consecutive failed receive transfers after which the NIC stops receiving (a device
/// that fails every transfer would otherwise keep the controller's interrupt busy).
const MAX_RX_ERRORS: u32 = 64;

/// What the probe learnt from the descriptors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcmLayout {
    /// The communication interface.
    pub control: u8,
    /// The data interface and its setting with the bulk endpoints.
    pub data: (u8, u8),
    /// Bulk IN and OUT endpoints.
    pub bulk_in: usb::Endpoint,
    /// Bulk OUT.
    pub bulk_out: usb::Endpoint,
    /// The notification endpoint.
    pub notify: Option<usb::Endpoint>,
    /// `iMACAddress`.
    pub mac_string: u8,
    /// `wMaxSegmentSize`: the longest frame, without FCS.
    pub max_segment: u16,
}

/// Reads the ECM layout of a configuration from its communication interface `comm`.
pub fn layout(cfg: &usb::Configuration, comm: &Interface) -> Result<EcmLayout, &'static str> {
    let mut data = None;
    let mut eth = None;
    for d in &comm.extra {
        if d.len() >= 3 && d[1] == usb::dt::CS_INTERFACE {
            match d[2] {
                CS_UNION if d.len() >= 5 => data = Some(d[4]),
                CS_ETHERNET if d.len() >= 13 => {
                    eth = Some((d[3], u16::from_le_bytes([d[8], d[9]])))
                }
                _ => {}
            }
        }
    }
    let data = data.ok_or("no CDC Union descriptor naming the data interface")?;
    let (mac_string, max_segment) = eth.ok_or("no Ethernet Networking descriptor")?;
    if mac_string == 0 {
        return Err("iMACAddress is 0");
    }
    if !(60..=9014).contains(&max_segment) {
        return Err("wMaxSegmentSize out of range");
    }
    let setting = cfg
        .interfaces
        .iter()
        .filter(|i| i.number == data && i.class == class::CDC_DATA)
        .find(|i| {
            i.endpoint(EndpointKind::Bulk, true).is_some()
                && i.endpoint(EndpointKind::Bulk, false).is_some()
        })
        .ok_or("the data interface has no setting with bulk IN and OUT endpoints")?;
    Ok(EcmLayout {
        control: comm.number,
        data: (setting.number, setting.alternate),
        bulk_in: *setting
            .endpoint(EndpointKind::Bulk, true)
            .ok_or("no bulk IN")?,
        bulk_out: *setting
            .endpoint(EndpointKind::Bulk, false)
            .ok_or("no bulk OUT")?,
        notify: comm.endpoint(EndpointKind::Interrupt, true).copied(),
        mac_string,
        max_segment,
    })
}

/// The MAC address in an `iMACAddress` string: 12 hex digits, most significant first.
pub fn parse_mac(s: &str) -> Option<MacAddr> {
    let b = s.as_bytes();
    if b.len() != 12 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, m) in mac.iter_mut().enumerate() {
        let pair = core::str::from_utf8(&b[i * 2..i * 2 + 2]).ok()?;
        *m = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(MacAddr(mac))
}

/// The receive plan for a NIC at `speed` with the board's quirk entries: the transfer
/// size (the quirks' bulk-in size, see `plugin_quirks_rtl8153`) and how many are queued.
pub fn rx_plan<'a>(
    speed: Speed,
    quirks: impl IntoIterator<Item = &'a hypervisor::plugin::QuirkData>,
) -> (UsbNicConfig, usize) {
    let s = if speed.is_super() {
        UsbSpeed::Super
    } else {
        UsbSpeed::High
    };
    let mut cfg = UsbNicConfig::default_for(s);
    for q in quirks {
        plugin_quirks_rtl8153::apply(q, &mut cfg);
    }
    let size = (cfg.rx_transfer_size as usize).clamp(2048, 64 << 10);
    cfg.rx_transfer_size = size as u32;
    let queue = (RX_BUDGET / size).clamp(MIN_RX_QUEUE, MAX_RX_QUEUE);
    (cfg, queue)
}

/// One CDC ECM NIC.
pub struct CdcEcm {
    bus: Box<dyn UsbBus>,
    name: String,
    layout: EcmLayout,
    /// Its MAC address.
    pub mac: MacAddr,
    /// Bytes per bulk-IN transfer.
    pub rx_size: usize,
    handle: Option<Arc<UplinkHandle>>,
    gone: bool,
    rx_errors: u32,
    /// Frames received (for tests and counters).
    pub rx_frames: u64,
}

impl CdcEcm {
    /// Brings the NIC up on a configured device: layout, MAC, endpoints, SET_INTERFACE,
    /// packet filter, receive queue. The uplink is registered by [`probe`].
    pub fn start(p: UsbProbe<'_>) -> Result<Self, String> {
        let UsbProbe {
            info,
            interface,
            mut bus,
            quirks,
            name,
        } = p;
        let cfg = info.configuration();
        let comm = interface
            .or_else(|| {
                cfg.interfaces
                    .iter()
                    .find(|i| i.class == class::COMM && i.subclass == 0x06)
            })
            .ok_or("no CDC Ethernet communication interface")?;
        let layout = layout(cfg, comm)?;
        let mut raw = [0u8; 64];
        let n = bus
            .control_in(
                Setup::get_descriptor(usb::dt::STRING, layout.mac_string, info.language, 64),
                &mut raw,
            )
            .map_err(|e| format!("reading iMACAddress: {e}"))?;
        let text = usb::parse_string(&raw[..n]).map_err(|e| format!("iMACAddress: {e}"))?;
        let mac =
            parse_mac(&text).ok_or_else(|| format!("iMACAddress {text:?} is not 12 hex digits"))?;
        let (plan, queue) = rx_plan(info.speed, quirks.iter().map(|q| &q.data));
        let rx_size = plan.rx_transfer_size as usize;
        let frame = usize::from(layout.max_segment);
        bus.open(&layout.bulk_in, queue, rx_size)
            .map_err(|e| format!("opening bulk IN: {e}"))?;
        bus.open(&layout.bulk_out, TX_QUEUE, frame)
            .map_err(|e| format!("opening bulk OUT: {e}"))?;
        if let Some(n) = &layout.notify {
            bus.open(n, 2, usize::from(n.max_packet).max(16))
                .map_err(|e| format!("opening the notification endpoint: {e}"))?;
        }
        let (data, alt) = layout.data;
        bus.control_out(Setup::set_interface(data, alt), &[])
            .map_err(|e| format!("SET_INTERFACE {data} {alt}: {e}"))?;
        // Linux's usbnet_cdc_update_filter ignores a failure: some devices stall it.
        if let Err(e) = bus.control_out(
            Setup::class_out(SET_ETHERNET_PACKET_FILTER, PACKET_FILTER, layout.control, 0),
            &[],
        ) {
            log!("[hv] usb-nic {name}: SET_ETHERNET_PACKET_FILTER refused ({e}); going on");
        }
        for _ in 0..queue {
            bus.submit_in(layout.bulk_in.address, rx_size)
                .map_err(|e| format!("queueing receive transfers: {e}"))?;
        }
        if let Some(n) = &layout.notify {
            let len = usize::from(n.max_packet).max(16);
            let _ = bus.submit_in(n.address, len);
        }
        log!(
            "[hv] usb-nic {name}: CDC-ECM, MAC {mac}, data interface {data} setting {alt}, {queue} x {} KiB receive transfers",
            rx_size >> 10
        );
        Ok(Self {
            bus,
            name: String::from(name),
            layout,
            mac,
            rx_size,
            handle: None,
            gone: false,
            rx_errors: 0,
            rx_frames: 0,
        })
    }

    fn resubmit_rx(&mut self) {
        if let Err(e) = self
            .bus
            .submit_in(self.layout.bulk_in.address, self.rx_size)
        {
            if e != UsbError::Disconnected {
                log!(
                    "[hv] usb-nic {}: cannot queue a receive transfer: {e}",
                    self.name
                );
            }
        }
    }
}

impl UplinkDevice for CdcEcm {
    fn transmit(&mut self, frame: &[u8]) -> Result<(), UplinkError> {
        if self.gone {
            return Err(UplinkError::LinkDown);
        }
        if frame.len() > usize::from(self.layout.max_segment) || frame.len() < 14 {
            return Err(UplinkError::TooLong);
        }
        let mps = usize::from(self.layout.bulk_out.max_packet).max(1);
        let zlp = frame.len().is_multiple_of(mps);
        match self
            .bus
            .submit_out(self.layout.bulk_out.address, frame, zlp)
        {
            Ok(_) => Ok(()),
            Err(UsbError::Busy) => Err(UplinkError::QueueFull),
            Err(UsbError::Disconnected) => Err(UplinkError::LinkDown),
            Err(UsbError::TooLong) => Err(UplinkError::TooLong),
            Err(_) => Err(UplinkError::Hardware("bulk OUT transfer refused")),
        }
    }
}

impl UsbFunction for CdcEcm {
    fn completed(&mut self, c: Completion, later: &mut Deferred) {
        let ep = c.endpoint;
        if ep == self.layout.bulk_in.address {
            match c.result {
                Ok(done) => {
                    self.rx_errors = 0;
                    // A zero-length transfer ends a frame that filled whole packets.
                    if done.data.len() >= 14 {
                        self.rx_frames += 1;
                        if let Some(h) = self.handle.clone() {
                            let frame = done.data;
                            later.push(Box::new(move || h.receive(&frame)));
                        }
                    }
                    self.resubmit_rx();
                }
                Err(UsbError::Disconnected) => {}
                Err(e) => {
                    self.rx_errors += 1;
                    if self.rx_errors < MAX_RX_ERRORS {
                        self.resubmit_rx();
                    } else if self.rx_errors == MAX_RX_ERRORS {
                        log!("[hv] usb-nic {}: {MAX_RX_ERRORS} receive errors in a row (last: {e}); receiving stopped", self.name);
                    }
                }
            }
        } else if self.layout.notify.is_some_and(|n| n.address == ep) {
            if let Ok(done) = &c.result {
                let d = &done.data;
                // ECM 1.2 section 6.3: an 8-byte header like a setup packet.
                if d.len() >= 8 && d[0] == 0xa1 && d[1] == NETWORK_CONNECTION {
                    let up = u16::from_le_bytes([d[2], d[3]]) != 0;
                    if let Some(h) = self.handle.clone() {
                        later.push(Box::new(move || h.set_link(up)));
                    }
                }
            }
            if !matches!(c.result, Err(UsbError::Disconnected)) && !self.gone {
                if let Some(n) = self.layout.notify {
                    let _ = self
                        .bus
                        .submit_in(n.address, usize::from(n.max_packet).max(16));
                }
            }
        }
        // Bulk OUT completions: the uplink counters already counted the frame.
    }

    fn disconnected(&mut self, later: &mut Deferred) {
        self.gone = true;
        if let Some(h) = self.handle.take() {
            let name = self.name.clone();
            later.push(Box::new(move || {
                drop(h);
                log!("[hv] usb-nic {name}: uplink unregistered");
            }));
        }
    }
}

fn claims(_: &DeviceDescriptor, i: &Interface) -> bool {
    i.class == class::COMM && i.subclass == 0x06
}

/// Probe: brings the NIC up and registers it as an uplink `usb-nic VVVV:PPPP port N`.
pub fn probe(p: UsbProbe<'_>) -> Result<SharedFunction, ProbeError> {
    let name = String::from(p.name);
    let nic = CdcEcm::start(p).map_err(|e| {
        log!("[hv] usb-nic {name}: {e}");
        ProbeError::Hardware("CDC-ECM bring-up failed")
    })?;
    let mac = nic.mac;
    let nic = Arc::new(Mutex::new(nic));
    let handle = uplink::register(
        &format!("usb-nic {name}"),
        UplinkKind::Usb,
        mac,
        nic.clone(),
    );
    nic.lock().handle = Some(Arc::new(handle));
    Ok(nic)
}

/// Registration: every CDC Ethernet communication interface (02/06).
#[linkme::distributed_slice(USB_DRIVERS)]
static CDC_ECM: UsbDriverEntry = UsbDriverEntry {
    name: "cdc-ecm",
    matches: &[UsbMatch::interface(class::COMM, 0x06)],
    claims,
    probe,
};

#[cfg(test)]
mod tests;
