//! USB for drivers of the machine's own devices: descriptors, enumeration policy, and the
//! class-driver registry.
//!
//! A host-controller driver (such as the `xhci` plugin) finds a device on a root port,
//! gives it an address and calls [`enumerate`] with a [`EnumBus`] (control transfers on
//! endpoint 0, and the port's link power management): it reads and checks the device and
//! configuration descriptors, picks a configuration ([`choose_configuration`], overridden
//! by the board's USB quirks, [`quirks_for`]), applies the quirks' link power management
//! setting and sets the configuration. The controller driver then hands the device to the
//! first [`UsbDriverEntry`] of [`USB_DRIVERS`] that matches it (vendor:product before
//! interface class), giving it a [`UsbBus`] to move data and receiving back a
//! [`UsbFunction`] to which it reports completed transfers and the unplugging.
//!
//! A community crate adds a class or vendor driver the way a PCI driver is added:
//!
//! ```ignore
//! use hypervisor::plugin::usb::{UsbDriverEntry, UsbMatch, UsbProbe, USB_DRIVERS};
//! #[linkme::distributed_slice(USB_DRIVERS)]
//! static MY_NIC: UsbDriverEntry = UsbDriverEntry {
//!     name: "my-nic",
//!     // One chip by ID, and every interface of class ff/ff/00 it has.
//!     matches: &[UsbMatch::id(0x0bda, 0x8153)],
//!     probe,
//! };
//! ```
//!
//! Descriptors come from the device, which the hypervisor does not trust: every parser
//! here refuses malformed input (a zero or overlong `bLength`, a `wTotalLength` that
//! disagrees with what was read, too many interfaces or endpoints, an endpoint outside an
//! interface) with a [`DescError`] that says what is wrong, and never panics.
//!
//! References: USB 2.0 specification chapter 9 (9.3 requests, 9.6 descriptors), USB 3.2
//! specification 9.6.7 (SuperSpeed endpoint companion), Linux
//! `drivers/usb/core/config.c:usb_parse_configuration` (the checks) and
//! `drivers/usb/core/generic.c:usb_choose_configuration` (the generic choice).
#![deny(unsafe_code)]

use super::{ProbeError, QuirkData, QuirkEntry, UsbConfigSelect};
use crate::platform::BoardDesc;
use crate::sync::Mutex;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use linkme::distributed_slice;

/// Descriptor types (USB 2.0 table 9-5, USB 3.2 table 9-6).
pub mod dt {
    /// Device.
    pub const DEVICE: u8 = 1;
    /// Configuration.
    pub const CONFIGURATION: u8 = 2;
    /// String.
    pub const STRING: u8 = 3;
    /// Interface.
    pub const INTERFACE: u8 = 4;
    /// Endpoint.
    pub const ENDPOINT: u8 = 5;
    /// Interface association (USB ECN, 2003).
    pub const INTERFACE_ASSOCIATION: u8 = 11;
    /// Class-specific interface descriptor (CDC 1.2 table 12).
    pub const CS_INTERFACE: u8 = 0x24;
    /// SuperSpeed endpoint companion (USB 3.2 9.6.7).
    pub const SS_ENDPOINT_COMPANION: u8 = 48;
}

/// Standard requests (USB 2.0 table 9-4).
pub mod req {
    /// GET_STATUS.
    pub const GET_STATUS: u8 = 0;
    /// CLEAR_FEATURE.
    pub const CLEAR_FEATURE: u8 = 1;
    /// SET_FEATURE.
    pub const SET_FEATURE: u8 = 3;
    /// GET_DESCRIPTOR.
    pub const GET_DESCRIPTOR: u8 = 6;
    /// SET_CONFIGURATION.
    pub const SET_CONFIGURATION: u8 = 9;
    /// SET_INTERFACE.
    pub const SET_INTERFACE: u8 = 11;
}

/// Interface class codes (usb.org "Defined Class Codes").
pub mod class {
    /// Communications and CDC control.
    pub const COMM: u8 = 0x02;
    /// CDC data.
    pub const CDC_DATA: u8 = 0x0a;
    /// Wireless controller (RNDIS is e0/01/03).
    pub const WIRELESS: u8 = 0xe0;
    /// Miscellaneous (ActiveSync is ef/01/01).
    pub const MISC: u8 = 0xef;
    /// Vendor specific.
    pub const VENDOR: u8 = 0xff;
}

/// Most interface descriptors (all alternate settings together) a configuration may
/// have; Linux allows 32 interfaces (`USB_MAXINTERFACES`), each with a few settings.
pub const MAX_INTERFACE_DESCRIPTORS: usize = 64;
/// Most endpoints an interface may have: 15 IN and 15 OUT besides endpoint 0 (USB 2.0
/// 9.6.5, Linux `USB_MAXENDPOINTS` 30).
pub const MAX_ENDPOINTS: usize = 30;
/// Most configurations a device may have (Linux `USB_MAXCONFIG`).
pub const MAX_CONFIGURATIONS: usize = 8;

/// A device gave a descriptor that cannot be right.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DescError {
    /// Fewer bytes than the descriptor needs.
    #[error("{0}: {1} bytes, too short")]
    Short(&'static str, usize),
    /// A descriptor of the wrong type where this one was expected.
    #[error("expected a {0} descriptor, got type {1:#04x}")]
    WrongType(&'static str, u8),
    /// `bLength` is zero, too small for its type, or runs past the end.
    #[error("descriptor at byte {at}: bLength {len} {why}")]
    BadLength {
        /// Offset in the configuration.
        at: usize,
        /// Its `bLength`.
        len: u8,
        /// What is wrong with it.
        why: &'static str,
    },
    /// `wTotalLength` disagrees with the bytes read.
    #[error("wTotalLength {total} but {got} bytes")]
    TotalLength {
        /// What the configuration descriptor says.
        total: usize,
        /// What the device sent.
        got: usize,
    },
    /// More of something than the limits allow.
    #[error("too many {0} ({1})")]
    TooMany(&'static str, usize),
    /// Anything else, said in words.
    #[error("{0}")]
    Invalid(&'static str),
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// The device descriptor (USB 2.0 9.6.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceDescriptor {
    /// `bcdUSB`.
    pub usb_version: u16,
    /// `bDeviceClass`.
    pub class: u8,
    /// `bDeviceSubClass`.
    pub subclass: u8,
    /// `bDeviceProtocol`.
    pub protocol: u8,
    /// `bMaxPacketSize0`: bytes, or the exponent (9 = 512) for USB 3.
    pub max_packet0: u8,
    /// `idVendor`.
    pub vendor: u16,
    /// `idProduct`.
    pub product: u16,
    /// `bcdDevice`.
    pub device_version: u16,
    /// `iManufacturer`.
    pub manufacturer: u8,
    /// `iProduct`.
    pub product_string: u8,
    /// `iSerialNumber`.
    pub serial: u8,
    /// `bNumConfigurations`.
    pub configurations: u8,
}

impl DeviceDescriptor {
    /// Parses the 18-byte device descriptor.
    pub fn parse(b: &[u8]) -> Result<Self, DescError> {
        if b.len() < 18 {
            return Err(DescError::Short("device descriptor", b.len()));
        }
        if b[1] != dt::DEVICE {
            return Err(DescError::WrongType("device", b[1]));
        }
        if b[0] < 18 {
            return Err(DescError::BadLength {
                at: 0,
                len: b[0],
                why: "is shorter than a device descriptor (18)",
            });
        }
        let d = Self {
            usb_version: le16(b, 2),
            class: b[4],
            subclass: b[5],
            protocol: b[6],
            max_packet0: b[7],
            vendor: le16(b, 8),
            product: le16(b, 10),
            device_version: le16(b, 12),
            manufacturer: b[14],
            product_string: b[15],
            serial: b[16],
            configurations: b[17],
        };
        if d.configurations == 0 {
            return Err(DescError::Invalid("device has no configuration"));
        }
        if usize::from(d.configurations) > MAX_CONFIGURATIONS {
            return Err(DescError::TooMany(
                "configurations",
                usize::from(d.configurations),
            ));
        }
        Ok(d)
    }

    /// Endpoint 0's maximum packet size in bytes at `speed` (USB 3.2 9.6.1: a SuperSpeed
    /// device gives the exponent, 9 for 512), or why it is unusable.
    pub fn ep0_max_packet(&self, speed: Speed) -> Result<u16, DescError> {
        match speed {
            Speed::Super | Speed::SuperPlus if self.max_packet0 == 9 => Ok(512),
            Speed::Super | Speed::SuperPlus => Err(DescError::Invalid(
                "bMaxPacketSize0 of a SuperSpeed device is not 9",
            )),
            _ if matches!(self.max_packet0, 8 | 16 | 32 | 64) => Ok(u16::from(self.max_packet0)),
            _ => Err(DescError::Invalid("bMaxPacketSize0 is not 8, 16, 32 or 64")),
        }
    }
}

/// Transfer type of an endpoint (`bmAttributes` bits 1:0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointKind {
    /// Control.
    Control,
    /// Isochronous.
    Isochronous,
    /// Bulk.
    Bulk,
    /// Interrupt.
    Interrupt,
}

/// An endpoint descriptor (USB 2.0 9.6.6) with its SuperSpeed companion (USB 3.2 9.6.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `bEndpointAddress`: number in bits 3:0, bit 7 set for IN.
    pub address: u8,
    /// `bmAttributes`.
    pub attributes: u8,
    /// `wMaxPacketSize` bits 10:0 (bytes per packet).
    pub max_packet: u16,
    /// `wMaxPacketSize` bits 12:11: extra transactions per microframe (high speed).
    pub extra_transactions: u8,
    /// `bInterval`.
    pub interval: u8,
    /// Companion `bMaxBurst` (0 without a companion).
    pub max_burst: u8,
}

impl Endpoint {
    /// An IN endpoint.
    pub fn is_in(&self) -> bool {
        self.address & 0x80 != 0
    }

    /// Its number (1..=15).
    pub fn number(&self) -> u8 {
        self.address & 0x0f
    }

    /// Its transfer type.
    pub fn kind(&self) -> EndpointKind {
        match self.attributes & 3 {
            0 => EndpointKind::Control,
            1 => EndpointKind::Isochronous,
            2 => EndpointKind::Bulk,
            _ => EndpointKind::Interrupt,
        }
    }
}

/// One interface descriptor (one alternate setting) with its endpoints and the
/// class-specific descriptors that follow it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// `bInterfaceNumber`.
    pub number: u8,
    /// `bAlternateSetting`.
    pub alternate: u8,
    /// `bInterfaceClass`.
    pub class: u8,
    /// `bInterfaceSubClass`.
    pub subclass: u8,
    /// `bInterfaceProtocol`.
    pub protocol: u8,
    /// `iInterface`.
    pub string: u8,
    /// Its endpoints, in descriptor order.
    pub endpoints: Vec<Endpoint>,
    /// Other descriptors between it and the next interface (class-specific ones such as
    /// CDC functional descriptors), each whole, in order.
    pub extra: Vec<Vec<u8>>,
}

impl Interface {
    /// The first endpoint of `kind` in direction `inward`.
    pub fn endpoint(&self, kind: EndpointKind, inward: bool) -> Option<&Endpoint> {
        self.endpoints
            .iter()
            .find(|e| e.kind() == kind && e.is_in() == inward)
    }
}

/// A configuration descriptor with everything `wTotalLength` covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Configuration {
    /// `bConfigurationValue` (what SET_CONFIGURATION takes).
    pub value: u8,
    /// `bNumInterfaces`.
    pub num_interfaces: u8,
    /// `iConfiguration`.
    pub string: u8,
    /// `bmAttributes`.
    pub attributes: u8,
    /// `bMaxPower` (2 mA units, 8 mA at SuperSpeed).
    pub max_power: u8,
    /// Every interface descriptor (each alternate setting), in order.
    pub interfaces: Vec<Interface>,
}

impl Configuration {
    /// Parses a whole configuration (`b` is what GET_DESCRIPTOR returned for
    /// `wTotalLength` bytes).
    pub fn parse(b: &[u8]) -> Result<Self, DescError> {
        if b.len() < 9 {
            return Err(DescError::Short("configuration descriptor", b.len()));
        }
        if b[1] != dt::CONFIGURATION {
            return Err(DescError::WrongType("configuration", b[1]));
        }
        if b[0] < 9 {
            return Err(DescError::BadLength {
                at: 0,
                len: b[0],
                why: "is shorter than a configuration descriptor (9)",
            });
        }
        let total = usize::from(le16(b, 2));
        if total != b.len() {
            return Err(DescError::TotalLength {
                total,
                got: b.len(),
            });
        }
        let mut c = Self {
            num_interfaces: b[4],
            value: b[5],
            string: b[6],
            attributes: b[7],
            max_power: b[8],
            interfaces: Vec::new(),
        };
        if usize::from(c.num_interfaces) > 32 {
            return Err(DescError::TooMany(
                "interfaces",
                usize::from(c.num_interfaces),
            ));
        }
        let mut at = usize::from(b[0]);
        while at < b.len() {
            let rest = &b[at..];
            if rest.len() < 2 {
                return Err(DescError::BadLength {
                    at,
                    len: rest[0],
                    why: "leaves no room for bDescriptorType",
                });
            }
            let (len, kind) = (rest[0], rest[1]);
            let why = if len < 2 {
                Some("is below 2")
            } else if usize::from(len) > rest.len() {
                Some("runs past wTotalLength")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(DescError::BadLength { at, len, why });
            }
            let d = &rest[..usize::from(len)];
            match kind {
                dt::INTERFACE => {
                    if len < 9 {
                        return Err(DescError::BadLength {
                            at,
                            len,
                            why: "is shorter than an interface descriptor (9)",
                        });
                    }
                    if c.interfaces.len() == MAX_INTERFACE_DESCRIPTORS {
                        return Err(DescError::TooMany(
                            "interface descriptors",
                            c.interfaces.len() + 1,
                        ));
                    }
                    c.interfaces.push(Interface {
                        number: d[2],
                        alternate: d[3],
                        class: d[5],
                        subclass: d[6],
                        protocol: d[7],
                        string: d[8],
                        endpoints: Vec::new(),
                        extra: Vec::new(),
                    });
                }
                dt::ENDPOINT => {
                    if len < 7 {
                        return Err(DescError::BadLength {
                            at,
                            len,
                            why: "is shorter than an endpoint descriptor (7)",
                        });
                    }
                    let i = c.interfaces.last_mut().ok_or(DescError::Invalid(
                        "an endpoint descriptor before any interface",
                    ))?;
                    if i.endpoints.len() == MAX_ENDPOINTS {
                        return Err(DescError::TooMany("endpoints", MAX_ENDPOINTS + 1));
                    }
                    let mps = le16(d, 4);
                    let e = Endpoint {
                        address: d[2],
                        attributes: d[3],
                        max_packet: mps & 0x7ff,
                        extra_transactions: ((mps >> 11) & 3) as u8,
                        interval: d[6],
                        max_burst: 0,
                    };
                    if e.number() == 0 {
                        return Err(DescError::Invalid("an interface names endpoint 0"));
                    }
                    if e.max_packet == 0 && e.kind() != EndpointKind::Isochronous {
                        return Err(DescError::Invalid("an endpoint with wMaxPacketSize 0"));
                    }
                    if i.endpoints.iter().any(|o| o.address == e.address) {
                        return Err(DescError::Invalid(
                            "an interface lists the same endpoint twice",
                        ));
                    }
                    i.endpoints.push(e);
                }
                dt::SS_ENDPOINT_COMPANION => {
                    if len < 6 {
                        return Err(DescError::BadLength {
                            at,
                            len,
                            why: "is shorter than an endpoint companion (6)",
                        });
                    }
                    let e = c
                        .interfaces
                        .last_mut()
                        .and_then(|i| i.endpoints.last_mut())
                        .ok_or(DescError::Invalid(
                            "an endpoint companion without its endpoint",
                        ))?;
                    // USB 3.2 9.6.7: bMaxBurst is 0..=15.
                    e.max_burst = d[2].min(15);
                }
                dt::DEVICE | dt::CONFIGURATION => {
                    return Err(DescError::Invalid(
                        "a device or configuration descriptor inside a configuration",
                    ))
                }
                _ => {
                    // Class-specific and other descriptors belong to the interface before
                    // them; those before the first interface (an interface association)
                    // are skipped.
                    if let Some(i) = c.interfaces.last_mut() {
                        if i.extra.len() == 64 {
                            return Err(DescError::TooMany("class-specific descriptors", 65));
                        }
                        i.extra.push(d.to_vec());
                    }
                }
            }
            at += usize::from(len);
        }
        let mut numbers: Vec<u8> = c.interfaces.iter().map(|i| i.number).collect();
        numbers.sort_unstable();
        numbers.dedup();
        if numbers.len() != usize::from(c.num_interfaces) {
            return Err(DescError::Invalid(
                "bNumInterfaces disagrees with the interface descriptors",
            ));
        }
        Ok(c)
    }

    /// The first interface descriptor (setting 0 of the first interface), if any.
    pub fn first_interface(&self) -> Option<&Interface> {
        self.interfaces.first()
    }

    /// Interface `number`, alternate setting `alternate`.
    pub fn interface(&self, number: u8, alternate: u8) -> Option<&Interface> {
        self.interfaces
            .iter()
            .find(|i| i.number == number && i.alternate == alternate)
    }
}

/// The text of a string descriptor (USB 2.0 9.6.7: UTF-16LE after the 2-byte header);
/// unpaired surrogates become U+FFFD.
pub fn parse_string(b: &[u8]) -> Result<String, DescError> {
    if b.len() < 2 {
        return Err(DescError::Short("string descriptor", b.len()));
    }
    if b[1] != dt::STRING {
        return Err(DescError::WrongType("string", b[1]));
    }
    let len = usize::from(b[0]);
    if len < 2 || len > b.len() || len % 2 != 0 {
        return Err(DescError::BadLength {
            at: 0,
            len: b[0],
            why: "is not an even length within what was read",
        });
    }
    let units = b[2..len]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]));
    Ok(char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect())
}

/// Link speed of a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Speed {
    /// 1.5 Mb/s.
    Low,
    /// 12 Mb/s.
    Full,
    /// 480 Mb/s.
    High,
    /// 5 Gb/s.
    Super,
    /// 10 Gb/s or more.
    SuperPlus,
}

impl Speed {
    /// For messages.
    pub fn name(self) -> &'static str {
        match self {
            Speed::Low => "low-speed",
            Speed::Full => "full-speed",
            Speed::High => "high-speed",
            Speed::Super => "SuperSpeed",
            Speed::SuperPlus => "SuperSpeedPlus",
        }
    }

    /// SuperSpeed or faster.
    pub fn is_super(self) -> bool {
        matches!(self, Speed::Super | Speed::SuperPlus)
    }
}

/// A control request's setup packet (USB 2.0 9.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setup {
    /// `bmRequestType`: bit 7 device-to-host, bits 6:5 type, bits 4:0 recipient.
    pub request_type: u8,
    /// `bRequest`.
    pub request: u8,
    /// `wValue`.
    pub value: u16,
    /// `wIndex`.
    pub index: u16,
    /// `wLength`.
    pub length: u16,
}

impl Setup {
    /// The 8 bytes on the wire.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.request_type;
        b[1] = self.request;
        b[2..4].copy_from_slice(&self.value.to_le_bytes());
        b[4..6].copy_from_slice(&self.index.to_le_bytes());
        b[6..8].copy_from_slice(&self.length.to_le_bytes());
        b
    }

    /// A device-to-host request.
    pub fn is_in(&self) -> bool {
        self.request_type & 0x80 != 0
    }

    /// GET_DESCRIPTOR of `kind`, `index`, `length` bytes (strings: `language` in wIndex).
    pub const fn get_descriptor(kind: u8, index: u8, language: u16, length: u16) -> Self {
        Self {
            request_type: 0x80,
            request: req::GET_DESCRIPTOR,
            value: ((kind as u16) << 8) | index as u16,
            index: language,
            length,
        }
    }

    /// SET_CONFIGURATION `value`.
    pub const fn set_configuration(value: u8) -> Self {
        Self {
            request_type: 0x00,
            request: req::SET_CONFIGURATION,
            value: value as u16,
            index: 0,
            length: 0,
        }
    }

    /// SET_INTERFACE `interface` to `alternate`.
    pub const fn set_interface(interface: u8, alternate: u8) -> Self {
        Self {
            request_type: 0x01,
            request: req::SET_INTERFACE,
            value: alternate as u16,
            index: interface as u16,
            length: 0,
        }
    }

    /// A class request to an interface, host to device (`bmRequestType` 0x21).
    pub const fn class_out(request: u8, value: u16, interface: u8, length: u16) -> Self {
        Self {
            request_type: 0x21,
            request,
            value,
            index: interface as u16,
            length,
        }
    }
}

/// Why a USB operation failed; none of them stops the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UsbError {
    /// The endpoint stalled (the device refused the request).
    #[error("stall")]
    Stall,
    /// The device did not answer in time.
    #[error("timeout")]
    Timeout,
    /// The device is gone (unplugged, or torn down).
    #[error("device disconnected")]
    Disconnected,
    /// The host controller reported completion code `0`.
    #[error("transfer failed with completion code {0}")]
    Transfer(u8),
    /// A controller command failed with completion code `0`.
    #[error("command failed with completion code {0}")]
    Command(u8),
    /// Every transfer slot of the endpoint is in use.
    #[error("endpoint queue full")]
    Busy,
    /// More bytes than the endpoint's buffers hold.
    #[error("transfer too long")]
    TooLong,
    /// No DMA memory left.
    #[error("no DMA memory")]
    NoMemory,
    /// The endpoint was not opened, or the request makes no sense for it.
    #[error("{0}")]
    Invalid(&'static str),
    /// The device sent malformed descriptors.
    #[error("malformed descriptor")]
    Descriptor,
}

/// What [`enumerate`] needs of a host controller for one addressed device: control
/// transfers on its endpoint 0, and its port's link power management.
pub trait EnumBus {
    /// A control transfer with a data stage from the device; the bytes it sent.
    fn control_in(&mut self, setup: Setup, buf: &mut [u8]) -> Result<usize, UsbError>;
    /// A control transfer with no or an outgoing data stage.
    fn control_out(&mut self, setup: Setup, data: &[u8]) -> Result<(), UsbError>;
    /// Endpoint 0's maximum packet size is `bytes` (the controller updates its context).
    fn set_ep0_max_packet(&mut self, bytes: u16) -> Result<(), UsbError>;
    /// Sets the port's U1/U2 inactivity timeouts (USB 3 ports; 0 = that state disabled).
    fn set_u1_u2_timeouts(&mut self, u1: u8, u2: u8) -> Result<(), UsbError>;
}

/// U1 inactivity timeout the host programs when link power management is on: Linux's
/// `USB3_LPM_U1_MAX_TIMEOUT` (0x7f, 127 µs; `include/linux/usb.h`).
pub const U1_TIMEOUT: u8 = 0x7f;
/// U2 inactivity timeout when link power management is on: Linux's
/// `USB3_LPM_U2_MAX_TIMEOUT` (0xfe, 65.024 ms in 256 µs units).
pub const U2_TIMEOUT: u8 = 0xfe;

/// A device after enumeration: what drivers are matched and probed with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Its device descriptor.
    pub device: DeviceDescriptor,
    /// Every configuration, in the device's order.
    pub configurations: Vec<Configuration>,
    /// Index into `configurations` of the one set.
    pub selected: usize,
    /// Link speed.
    pub speed: Speed,
    /// Root-hub port (1-based).
    pub port: u8,
    /// U1/U2 link power management left on.
    pub lpm: bool,
    /// Language ID of its strings (0 if it has none).
    pub language: u16,
}

impl DeviceInfo {
    /// The configuration set.
    pub fn configuration(&self) -> &Configuration {
        &self.configurations[self.selected]
    }

    /// `usb:vvvv:pppp`, the bus ID quirk entries name.
    pub fn bus_id(&self) -> String {
        bus_id(self.device.vendor, self.device.product)
    }
}

/// `usb:vvvv:pppp` (lower-case hex).
pub fn bus_id(vendor: u16, product: u16) -> String {
    format!("usb:{vendor:04x}:{product:04x}")
}

/// The USB NIC settings of the quirk entries in `quirks`, folded: LPM off if any says so,
/// the first configuration choice that is not generic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsbPolicy {
    /// U1/U2 link power management off.
    pub disable_lpm: bool,
    /// Which configuration to select.
    pub configuration: UsbConfigSelect,
}

impl UsbPolicy {
    /// The policy without quirks.
    pub const GENERIC: Self = Self {
        disable_lpm: false,
        configuration: UsbConfigSelect::Generic,
    };

    /// Folds the USB NIC quirk entries of `quirks`.
    pub fn from_quirks<'a>(quirks: impl IntoIterator<Item = &'a QuirkData>) -> Self {
        let mut p = Self::GENERIC;
        for q in quirks {
            if let QuirkData::UsbNic {
                disable_lpm,
                configuration,
                ..
            } = *q
            {
                p.disable_lpm |= disable_lpm;
                if p.configuration == UsbConfigSelect::Generic {
                    p.configuration = configuration;
                }
            }
        }
        p
    }
}

/// The quirk entries for device `vendor:product` on `board`: those whose match list names
/// its bus ID and that the board lists for that bus ID (`quirk "rtl8153-usb-nic"
/// matches="usb:0bda:8153"` in `boards.kdl`).
pub fn quirks_for<'a>(
    quirks: &'a [QuirkEntry],
    board: &BoardDesc,
    vendor: u16,
    product: u16,
) -> Vec<&'a QuirkEntry> {
    let id = bus_id(vendor, product);
    quirks
        .iter()
        .filter(|q| q.matches.contains(&id.as_str()))
        .filter(|q| {
            board
                .quirks
                .iter()
                .any(|r| r.name == q.name && r.matches == id)
        })
        .collect()
}

fn is_rndis(i: &Interface) -> bool {
    // Linux generic.c is_rndis(): e0/01/03.
    (i.class, i.subclass, i.protocol) == (class::WIRELESS, 1, 3)
}

fn is_activesync(i: &Interface) -> bool {
    // Linux generic.c is_activesync(): ef/01/01.
    (i.class, i.subclass, i.protocol) == (class::MISC, 1, 1)
}

/// The generic choice of configuration (an index into `configs`), Linux's
/// `usb_choose_configuration` (`drivers/usb/core/generic.c`) without its power budget:
/// a first configuration whose first interface is RNDIS or ActiveSync is passed over when
/// there are others (the hypervisor has no RNDIS driver; QEMU's `usb-net` lists RNDIS
/// first), then the first configuration whose first interface is not vendor-specific is
/// taken (class drivers are likelier than vendor ones), else the first.
///
/// The RTL8153 quirk ([`UsbConfigSelect::FirstInterface`]) and a driver registered for the
/// device's own vendor:product (which, like Linux's `r8152-cfgselector`
/// `rtl8152_cfgselector_choose_configuration`, wants the configuration whose interfaces it
/// claims) come first: see [`select_configuration`].
pub fn choose_configuration(device: &DeviceDescriptor, configs: &[Configuration]) -> usize {
    let mut best = None;
    for (i, c) in configs.iter().enumerate() {
        let first = c.first_interface();
        if i == 0 && configs.len() > 1 && first.is_some_and(|f| is_rndis(f) || is_activesync(f)) {
            continue;
        }
        if device.class != class::VENDOR && first.is_some_and(|f| f.class != class::VENDOR) {
            return i;
        }
        best.get_or_insert(i);
    }
    best.unwrap_or(0)
}

/// The configuration enumeration selects: the one `policy` names if the device has it;
/// else the first whose interfaces a driver registered for this device's vendor:product
/// claims (a vendor driver, as Linux's `r8152-cfgselector` picks the RTL8153's vendor
/// configuration); else the first with an interface a registered class driver matches
/// (QEMU's `usb-net` lists its RNDIS configuration first, whose control interface is
/// 02/02/ff, which Linux's generic rule would take); else [`choose_configuration`].
pub fn select_configuration(
    device: &DeviceDescriptor,
    configs: &[Configuration],
    policy: &UsbPolicy,
    drivers: &[UsbDriverEntry],
) -> usize {
    if let UsbConfigSelect::FirstInterface { class, subclass } = policy.configuration {
        if let Some(i) = configs.iter().position(|c| {
            c.first_interface()
                .is_some_and(|f| f.class == class && f.subclass == subclass)
        }) {
            return i;
        }
    }
    let by_id = drivers.iter().filter(|d| {
        d.matches.iter().any(|m| {
            matches!(m, UsbMatch::Id { vendor, product } if *vendor == device.vendor && *product == device.product)
        })
    });
    for d in by_id {
        if let Some(i) = configs
            .iter()
            .position(|c| c.interfaces.iter().any(|i| (d.claims)(device, i)))
        {
            return i;
        }
    }
    if let Some(i) = configs.iter().position(|c| {
        c.interfaces
            .iter()
            .any(|i| i.alternate == 0 && interface_driver(drivers, i).is_some())
    }) {
        return i;
    }
    choose_configuration(device, configs)
}

fn interface_driver<'a>(
    drivers: &'a [UsbDriverEntry],
    i: &Interface,
) -> Option<&'a UsbDriverEntry> {
    drivers.iter().find(|drv| {
        drv.matches.iter().any(|m| match *m {
            UsbMatch::Interface {
                class,
                subclass,
                protocol,
            } => {
                i.class == class
                    && i.subclass == subclass
                    && protocol.is_none_or(|p| p == i.protocol)
            }
            UsbMatch::Id { .. } => false,
        })
    })
}

/// Why enumeration failed (for the console).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnumError {
    /// A request failed.
    #[error("{0} failed: {1}")]
    Request(&'static str, UsbError),
    /// The device's descriptors are malformed.
    #[error("{0}: {1}")]
    Descriptor(&'static str, DescError),
}

/// Enumerates an addressed device on `port` at `speed`: reads the device descriptor
/// (first 8 bytes, then endpoint 0's packet size, then all 18), every configuration
/// (9 bytes, then `wTotalLength`), the language of its strings, picks the configuration
/// ([`select_configuration`] with `policy`, the board's quirks for the device's IDs), sets the port's U1/U2 timeouts on
/// a SuperSpeed link (Linux's maxima, or 0 when a quirk turns link power management off,
/// as `USB_QUIRK_NO_LPM` does), and sets the configuration.
pub fn enumerate(
    bus: &mut dyn EnumBus,
    speed: Speed,
    port: u8,
    policy: &dyn Fn(&DeviceDescriptor) -> UsbPolicy,
    drivers: &[UsbDriverEntry],
) -> Result<DeviceInfo, EnumError> {
    let req = |what| move |e| EnumError::Request(what, e);
    let desc = |what| move |e| EnumError::Descriptor(what, e);
    let mut head = [0u8; 18];
    let n = bus
        .control_in(Setup::get_descriptor(dt::DEVICE, 0, 0, 8), &mut head[..8])
        .map_err(req("GET_DESCRIPTOR(device, 8)"))?;
    if n < 8 || head[1] != dt::DEVICE {
        return Err(EnumError::Descriptor(
            "device",
            DescError::Short("device descriptor head", n),
        ));
    }
    let max0 = match speed {
        Speed::Super | Speed::SuperPlus if head[7] == 9 => 512,
        _ if matches!(head[7], 8 | 16 | 32 | 64) => u16::from(head[7]),
        _ => {
            return Err(EnumError::Descriptor(
                "device",
                DescError::Invalid("bMaxPacketSize0 is not valid for the link speed"),
            ))
        }
    };
    bus.set_ep0_max_packet(max0)
        .map_err(req("Evaluate Context (endpoint 0)"))?;
    let n = bus
        .control_in(Setup::get_descriptor(dt::DEVICE, 0, 0, 18), &mut head)
        .map_err(req("GET_DESCRIPTOR(device)"))?;
    let device = DeviceDescriptor::parse(&head[..n]).map_err(desc("device"))?;
    device.ep0_max_packet(speed).map_err(desc("device"))?;
    let mut configurations = Vec::new();
    for index in 0..device.configurations {
        let mut top = [0u8; 9];
        let n = bus
            .control_in(
                Setup::get_descriptor(dt::CONFIGURATION, index, 0, 9),
                &mut top,
            )
            .map_err(req("GET_DESCRIPTOR(configuration, 9)"))?;
        if n < 9 || top[1] != dt::CONFIGURATION {
            return Err(EnumError::Descriptor(
                "configuration",
                DescError::Short("configuration descriptor", n),
            ));
        }
        let total = usize::from(le16(&top, 2));
        if total < 9 {
            return Err(EnumError::Descriptor(
                "configuration",
                DescError::TotalLength { total, got: n },
            ));
        }
        let mut all = alloc::vec![0u8; total];
        let n = bus
            .control_in(
                Setup::get_descriptor(dt::CONFIGURATION, index, 0, total as u16),
                &mut all,
            )
            .map_err(req("GET_DESCRIPTOR(configuration)"))?;
        all.truncate(n);
        configurations.push(Configuration::parse(&all).map_err(desc("configuration"))?);
    }
    // String descriptor 0: the languages (USB 2.0 9.6.7). A device without strings may
    // stall it.
    let mut langs = [0u8; 4];
    let language = match bus.control_in(Setup::get_descriptor(dt::STRING, 0, 0, 4), &mut langs) {
        Ok(n) if n >= 4 && langs[1] == dt::STRING && langs[0] >= 4 => le16(&langs, 2),
        _ => 0,
    };
    let policy = policy(&device);
    let selected = select_configuration(&device, &configurations, &policy, drivers);
    let lpm = speed.is_super() && !policy.disable_lpm;
    if speed.is_super() {
        let (u1, u2) = if lpm {
            (U1_TIMEOUT, U2_TIMEOUT)
        } else {
            (0, 0)
        };
        bus.set_u1_u2_timeouts(u1, u2)
            .map_err(req("U1/U2 timeouts"))?;
    }
    let value = configurations[selected].value;
    bus.control_out(Setup::set_configuration(value), &[])
        .map_err(req("SET_CONFIGURATION"))?;
    Ok(DeviceInfo {
        device,
        configurations,
        selected,
        speed,
        port,
        lpm,
        language,
    })
}

/// Identifies a queued transfer on an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TransferId(pub u32);

/// A transfer that ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// Its endpoint address (bit 7 set for IN).
    pub endpoint: u8,
    /// Which one.
    pub id: TransferId,
    /// What the device sent (IN), or how many bytes it took (OUT: empty data), or why
    /// it failed.
    pub result: Result<Completed, UsbError>,
}

/// A transfer that succeeded (possibly short).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Completed {
    /// IN: the bytes received.
    pub data: Vec<u8>,
    /// Bytes moved.
    pub length: usize,
}

/// What a class driver does with its device; a host-controller driver implements it for
/// each device it enumerated. Every call may fail with [`UsbError::Disconnected`] once
/// the device is unplugged.
pub trait UsbBus: Send {
    /// A control transfer reading from the device (waits for it).
    fn control_in(&mut self, setup: Setup, buf: &mut [u8]) -> Result<usize, UsbError>;
    /// A control transfer with no or an outgoing data stage (waits for it).
    fn control_out(&mut self, setup: Setup, data: &[u8]) -> Result<(), UsbError>;
    /// Makes `endpoint` usable (xHCI Configure Endpoint), with room for `queue` transfers
    /// in flight of at most `max_transfer` bytes each.
    fn open(
        &mut self,
        endpoint: &Endpoint,
        queue: usize,
        max_transfer: usize,
    ) -> Result<(), UsbError>;
    /// Queues an IN transfer of up to `length` bytes on `endpoint`; its completion comes
    /// to the driver's [`UsbFunction::completed`].
    fn submit_in(&mut self, endpoint: u8, length: usize) -> Result<TransferId, UsbError>;
    /// Queues an OUT transfer of `data` on `endpoint`, followed by a zero-length packet
    /// if `zero_packet`.
    fn submit_out(
        &mut self,
        endpoint: u8,
        data: &[u8],
        zero_packet: bool,
    ) -> Result<TransferId, UsbError>;
}

/// Work a driver leaves for after its lock (and the controller's) is released: handing
/// received frames to the switch, dropping an uplink handle.
pub type Deferred = Vec<Box<dyn FnOnce() + Send>>;

/// A bound class driver, as its host controller sees it.
pub trait UsbFunction: Send {
    /// A transfer it queued ended (successfully, short, or with an error).
    fn completed(&mut self, c: Completion, later: &mut Deferred);
    /// The device was unplugged: every queued transfer has been completed with
    /// [`UsbError::Disconnected`] already; release what it registered.
    fn disconnected(&mut self, later: &mut Deferred);
}

/// What a USB driver's probe gets.
pub struct UsbProbe<'a> {
    /// The enumerated device, configured.
    pub info: &'a DeviceInfo,
    /// The interface (setting 0) the driver matched on, if it matched by class.
    pub interface: Option<&'a Interface>,
    /// Its way to the device.
    pub bus: Box<dyn UsbBus>,
    /// The quirk entries for its bus ID that the board lists.
    pub quirks: &'a [&'static QuirkEntry],
    /// Name for messages and uplinks, such as `0525:a4a2 port 1`.
    pub name: &'a str,
}

/// What a USB driver handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsbMatch {
    /// One device by vendor and product ID (a vendor driver).
    Id {
        /// `idVendor`.
        vendor: u16,
        /// `idProduct`.
        product: u16,
    },
    /// Interfaces of a class, subclass and protocol (`None`: any).
    Interface {
        /// `bInterfaceClass`.
        class: u8,
        /// `bInterfaceSubClass`.
        subclass: u8,
        /// `bInterfaceProtocol`, if it matters.
        protocol: Option<u8>,
    },
}

impl UsbMatch {
    /// One device.
    pub const fn id(vendor: u16, product: u16) -> Self {
        Self::Id { vendor, product }
    }

    /// Interfaces of `class`/`subclass`, any protocol.
    pub const fn interface(class: u8, subclass: u8) -> Self {
        Self::Interface {
            class,
            subclass,
            protocol: None,
        }
    }
}

/// A bound driver's function (shared with whatever else it registered, e.g. an uplink).
pub type SharedFunction = Arc<Mutex<dyn UsbFunction>>;

/// A USB driver registration: plain data.
pub struct UsbDriverEntry {
    /// Driver name, e.g. `cdc-ecm`.
    pub name: &'static str,
    /// What it handles.
    pub matches: &'static [UsbMatch],
    /// Whether it would drive interface `i` of `device` (used to pick a configuration a
    /// vendor driver wants, see [`select_configuration`]).
    pub claims: fn(&DeviceDescriptor, &Interface) -> bool,
    /// Probe: called once per matched, configured device.
    pub probe: fn(UsbProbe<'_>) -> Result<SharedFunction, ProbeError>,
}

/// Registered USB drivers.
#[distributed_slice]
pub static USB_DRIVERS: [UsbDriverEntry];

/// The driver for a configured device, and the interface it matched on: a driver naming
/// the device's vendor:product first, else the first driver matching an interface
/// (setting 0) of the selected configuration, in interface order.
pub fn match_usb_driver<'a, 'i>(
    drivers: &'a [UsbDriverEntry],
    info: &'i DeviceInfo,
) -> Option<(&'a UsbDriverEntry, Option<&'i Interface>)> {
    let d = &info.device;
    if let Some(drv) = drivers.iter().find(|drv| {
        drv.matches.iter().any(
            |m| matches!(m, UsbMatch::Id { vendor, product } if *vendor == d.vendor && *product == d.product),
        )
    }) {
        return Some((drv, None));
    }
    info.configuration()
        .interfaces
        .iter()
        .filter(|i| i.alternate == 0)
        .find_map(|i| interface_driver(drivers, i).map(|drv| (drv, Some(i))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// QEMU 7.2's `usb-net` (hw/usb/dev-network.c `desc_device_net`, assembled by
    /// hw/usb/desc.c): the device descriptor (MAC from `-netdev`, serial "1").
    const QEMU_USB_NET_DEVICE: [u8; 18] = [
        18, 1, 0x00, 0x02, 0x02, 0, 0, 64, 0x25, 0x05, 0xa2, 0xa4, 0, 0, 1, 2, 10, 2,
    ];

    /// QEMU `usb-net`'s first configuration: RNDIS (value 2).
    const QEMU_USB_NET_RNDIS: [u8; 67] = [
        9, 2, 67, 0, 2, 2, 9, 0xc0, 0x32, // configuration
        9, 4, 0, 0, 1, 0x02, 0x02, 0xff, 6, // RNDIS control interface
        5, 0x24, 0x00, 0x10, 0x01, // header
        5, 0x24, 0x01, 0x00, 0x01, // call management
        4, 0x24, 0x02, 0x00, // ACM
        5, 0x24, 0x06, 0x00, 0x01, // union
        7, 5, 0x81, 3, 16, 0, 32, // status endpoint
        9, 4, 1, 0, 2, 0x0a, 0, 0, 4, // data interface
        7, 5, 0x82, 2, 64, 0, 0, //
        7, 5, 0x02, 2, 64, 0, 0,
    ];

    /// QEMU `usb-net`'s second configuration: CDC Ethernet (value 1).
    const QEMU_USB_NET_ECM: [u8; 80] = [
        9, 2, 80, 0, 2, 1, 7, 0xc0, 0x32, // configuration
        9, 4, 0, 0, 1, 0x02, 0x06, 0x00, 5, // CDC control interface
        5, 0x24, 0x00, 0x10, 0x01, // header
        5, 0x24, 0x06, 0x00, 0x01, // union
        13, 0x24, 0x0f, 3, 0, 0, 0, 0, 0xea, 0x05, 0, 0, 0, // Ethernet
        7, 5, 0x81, 3, 16, 0, 32, // notification endpoint
        9, 4, 1, 0, 0, 0x0a, 0, 0, 0, // data interface, setting 0: no endpoints
        9, 4, 1, 1, 2, 0x0a, 0, 0, 4, // data interface, setting 1
        7, 5, 0x82, 2, 64, 0, 0, //
        7, 5, 0x02, 2, 64, 0, 0,
    ];

    #[test]
    fn qemu_usb_net_parses_and_the_generic_choice_skips_rndis() {
        let d = DeviceDescriptor::parse(&QEMU_USB_NET_DEVICE).unwrap();
        assert_eq!((d.vendor, d.product, d.configurations), (0x0525, 0xa4a2, 2));
        let rndis = Configuration::parse(&QEMU_USB_NET_RNDIS).unwrap();
        let ecm = Configuration::parse(&QEMU_USB_NET_ECM).unwrap();
        assert_eq!(ecm.interfaces.len(), 3);
        let data = ecm.interface(1, 1).unwrap();
        assert_eq!(
            data.endpoint(EndpointKind::Bulk, true).unwrap().address,
            0x82
        );
        assert_eq!(ecm.interface(0, 0).unwrap().extra.len(), 3);
        let configs = vec![rndis, ecm];
        // Linux's RNDIS test is e0/01/03, but QEMU's RNDIS control interface is 02/02/ff:
        // not vendor-specific, so Linux's generic rule takes it (index 0, RNDIS).
        assert_eq!(choose_configuration(&d, &configs), 0);
        // With a CDC Ethernet class driver registered, the configuration it can drive.
        static ECM: [UsbDriverEntry; 1] = [UsbDriverEntry {
            name: "ecm",
            matches: &[UsbMatch::interface(0x02, 0x06)],
            claims: none,
            probe: ok_probe,
        }];
        let generic = UsbPolicy::GENERIC;
        assert_eq!(select_configuration(&d, &configs, &generic, &ECM), 1);
        assert_eq!(select_configuration(&d, &configs, &generic, &[]), 0);
    }

    #[test]
    fn malformed_configurations_are_refused_with_a_reason() {
        let good = QEMU_USB_NET_ECM;
        let mut zero = good;
        zero[9] = 0; // the first interface's bLength
        assert!(matches!(
            Configuration::parse(&zero),
            Err(DescError::BadLength { at: 9, len: 0, .. })
        ));
        let mut past = good;
        past[73] = 9; // the last endpoint claims 9 bytes, 7 remain
        assert!(matches!(
            Configuration::parse(&past),
            Err(DescError::BadLength { at: 73, len: 9, .. })
        ));
        let mut lie = good;
        lie[2] = 200; // wTotalLength says more than was read
        assert_eq!(
            Configuration::parse(&lie),
            Err(DescError::TotalLength {
                total: 200,
                got: 80
            })
        );
        let mut count = good;
        count[4] = 3; // bNumInterfaces 3, two interfaces
        assert!(matches!(
            Configuration::parse(&count),
            Err(DescError::Invalid(_))
        ));
        // An endpoint before any interface.
        let orphan = [9, 2, 16, 0, 0, 1, 0, 0x80, 50, 7, 5, 0x81, 2, 64, 0, 0];
        assert!(Configuration::parse(&orphan).is_err());
        // Too many interfaces: 65 interface descriptors.
        let mut many = vec![9, 2, 0, 0, 1, 1, 0, 0x80, 50];
        for alt in 0..65u8 {
            many.extend_from_slice(&[9, 4, 0, alt, 0, 0xff, 0, 0, 0]);
        }
        let len = many.len() as u16;
        many[2..4].copy_from_slice(&len.to_le_bytes());
        assert_eq!(
            Configuration::parse(&many),
            Err(DescError::TooMany("interface descriptors", 65))
        );
        // Too many endpoints in one interface.
        let mut eps = vec![9, 2, 0, 0, 1, 1, 0, 0x80, 50, 9, 4, 0, 0, 31, 0xff, 0, 0, 0];
        for n in 0..31u8 {
            eps.extend_from_slice(&[7, 5, 0x80 | ((n % 15) + 1) | (n / 15) << 4, 2, 64, 0, 0]);
        }
        let len = eps.len() as u16;
        eps[2..4].copy_from_slice(&len.to_le_bytes());
        assert!(matches!(
            Configuration::parse(&eps),
            Err(DescError::TooMany("endpoints", _)) | Err(DescError::Invalid(_))
        ));
        // Device descriptors.
        let mut d = QEMU_USB_NET_DEVICE;
        d[17] = 0;
        assert!(DeviceDescriptor::parse(&d).is_err());
        d[17] = 9;
        assert_eq!(
            DeviceDescriptor::parse(&d),
            Err(DescError::TooMany("configurations", 9))
        );
        assert!(DeviceDescriptor::parse(&QEMU_USB_NET_DEVICE[..10]).is_err());
        // Strings.
        assert_eq!(
            parse_string(&[10, 3, b'5', 0, b'2', 0, b'5', 0, b'4', 0]).unwrap(),
            "5254"
        );
        assert!(parse_string(&[11, 3, b'5', 0]).is_err());
        assert!(parse_string(&[0, 3]).is_err());
    }

    fn ok_probe(_: UsbProbe<'_>) -> Result<SharedFunction, ProbeError> {
        Err(ProbeError::Hardware("test"))
    }

    fn any(_: &DeviceDescriptor, i: &Interface) -> bool {
        i.class == class::VENDOR
    }

    fn none(_: &DeviceDescriptor, _: &Interface) -> bool {
        false
    }

    #[test]
    fn drivers_match_by_id_first_then_by_interface_in_order() {
        static TABLE: [UsbDriverEntry; 2] = [
            UsbDriverEntry {
                name: "ecm",
                matches: &[UsbMatch::interface(0x02, 0x06)],
                claims: none,
                probe: ok_probe,
            },
            UsbDriverEntry {
                name: "vendor",
                matches: &[UsbMatch::id(0x0525, 0xa4a2)],
                claims: any,
                probe: ok_probe,
            },
        ];
        let d = DeviceDescriptor::parse(&QEMU_USB_NET_DEVICE).unwrap();
        let configs = vec![
            Configuration::parse(&QEMU_USB_NET_RNDIS).unwrap(),
            Configuration::parse(&QEMU_USB_NET_ECM).unwrap(),
        ];
        let mut info = DeviceInfo {
            device: d.clone(),
            configurations: configs,
            selected: 1,
            speed: Speed::Full,
            port: 1,
            lpm: false,
            language: 0x409,
        };
        let (drv, _) = match_usb_driver(&TABLE, &info).unwrap();
        assert_eq!(drv.name, "vendor");
        let (drv, i) = match_usb_driver(&TABLE[..1], &info).unwrap();
        assert_eq!((drv.name, i.map(|i| i.number)), ("ecm", Some(0)));
        info.selected = 0;
        assert!(match_usb_driver(&TABLE[..1], &info).is_none());
    }
}
