//! The hypervisor's own address on the uplink: `smoltcp` over a [`FramePort`] (the
//! runtime's host port on the virtual switch), DHCP or a static address from
//! `HV/HOST.TOM`, and up to [`MAX_CONNECTIONS`] HTTPS connections on one port. Each
//! connection moves bytes TCP -> [`TlsSession`] -> [`RequestReader`] -> [`Handler`] ->
//! [`write_response`] -> [`TlsSession`] -> TCP, and closes on any error, after a response
//! with `Connection: close`, or after [`IDLE_TIMEOUT_MS`] without traffic.

use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv4Addr;

use rustls::ServerConfig;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::{dhcpv4, tcp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Cidr};

pub use crate::http::Handler;
use crate::http::{write_response, Next, RequestReader};
use crate::tls::TlsSession;

/// Connections served at once (one more client waits in the TCP backlog of none: it is
/// refused until one closes).
pub const MAX_CONNECTIONS: usize = 8;
/// A connection without traffic for this long is dropped.
pub const IDLE_TIMEOUT_MS: u64 = 60_000;
/// Ciphertext queued for one connection above which no further request is answered until
/// it has drained (pipelined requests wait).
const OUTPUT_HIGH_WATER: usize = 64 * 1024;
const TCP_RX_BUFFER: usize = 8 * 1024;
const TCP_TX_BUFFER: usize = 16 * 1024;

/// Frames in and out of the host port of the virtual switch (the runtime implements it).
pub trait FramePort {
    /// The next Ethernet frame addressed to the host, if any.
    fn receive(&mut self) -> Option<Vec<u8>>;
    /// Sends one Ethernet frame to the uplink.
    fn transmit(&mut self, frame: &[u8]);
    /// The host port's MAC address (unicast).
    fn mac(&self) -> [u8; 6];
}

/// How the host gets its address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// From a DHCP server on the uplink.
    Dhcp,
    /// A fixed address.
    Static {
        /// The host's address.
        ip: Ipv4Addr,
        /// The network prefix length (`24` for a /24).
        prefix: u8,
        /// The default gateway, if any.
        gateway: Option<Ipv4Addr>,
    },
}

/// The `[mgmt]` settings of `HV/HOST.TOM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// How the address is found.
    pub address: Address,
    /// The HTTPS port.
    pub port: u16,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            address: Address::Dhcp,
            port: 443,
        }
    }
}

/// A mistake in `HV/HOST.TOM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The 1-based line, if known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "HV/HOST.TOM line {l}: {}", self.message),
            None => write!(f, "HV/HOST.TOM: {}", self.message),
        }
    }
}

#[derive(serde::Deserialize)]
struct HostFile {
    mgmt: Option<MgmtTable>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MgmtTable {
    address: Option<toml::Spanned<String>>,
    gateway: Option<toml::Spanned<String>>,
    port: Option<toml::Spanned<u16>>,
}

impl NetConfig {
    /// Reads the `[mgmt]` table of `HV/HOST.TOM` (other tables are left to their owners):
    /// `address = "dhcp"` (the default) or `"10.0.2.15/24"`, `gateway = "10.0.2.2"`
    /// (static only), `port = 443` (the default).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let line_of = |offset: usize| {
            Some(
                text.as_bytes()[..offset.min(text.len())]
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count()
                    + 1,
            )
        };
        let file: HostFile = toml::from_str(text).map_err(|e| ConfigError {
            line: e.span().and_then(|s| line_of(s.start)),
            message: e.message().to_string(),
        })?;
        let Some(m) = file.mgmt else {
            return Ok(Self::default());
        };
        let port = match &m.port {
            Some(p) if *p.get_ref() == 0 => {
                return Err(ConfigError {
                    line: line_of(p.span().start),
                    message: "port must be 1 to 65535".into(),
                })
            }
            Some(p) => *p.get_ref(),
            None => 443,
        };
        let gateway = match &m.gateway {
            Some(g) => Some(g.get_ref().parse::<Ipv4Addr>().map_err(|_| ConfigError {
                line: line_of(g.span().start),
                message: alloc::format!("gateway `{}` is not an IPv4 address", g.get_ref()),
            })?),
            None => None,
        };
        let address = match &m.address {
            None => Address::Dhcp,
            Some(a) if a.get_ref().eq_ignore_ascii_case("dhcp") => Address::Dhcp,
            Some(a) => {
                let bad = || ConfigError {
                    line: line_of(a.span().start),
                    message: alloc::format!(
                        "address `{}` is neither \"dhcp\" nor an IPv4 address with a prefix \
                         like \"10.0.2.15/24\"",
                        a.get_ref()
                    ),
                };
                let (ip, prefix) = a.get_ref().split_once('/').ok_or_else(bad)?;
                let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
                let prefix: u8 = prefix.parse().map_err(|_| bad())?;
                if prefix == 0 || prefix > 32 || ip.is_unspecified() || ip.is_multicast() {
                    return Err(bad());
                }
                Address::Static {
                    ip,
                    prefix,
                    gateway,
                }
            }
        };
        if address == Address::Dhcp {
            if let Some(g) = &m.gateway {
                return Err(ConfigError {
                    line: line_of(g.span().start),
                    message: "gateway is only for a static address; DHCP gives its own".into(),
                });
            }
        }
        Ok(Self { address, port })
    }
}

/// Something the runtime should tell the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetEvent {
    /// The host has an address.
    Configured {
        /// Address and prefix.
        address: Ipv4Cidr,
        /// Default gateway.
        gateway: Option<Ipv4Addr>,
        /// From DHCP (else static).
        dhcp: bool,
        /// The HTTPS port.
        port: u16,
    },
    /// The DHCP lease was lost: no address until a new one.
    Deconfigured,
}

impl fmt::Display for NetEvent {
    /// `mgmt: 10.0.2.15/24 via DHCP, https://10.0.2.15:443/`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetEvent::Configured {
                address,
                gateway,
                dhcp,
                port,
            } => {
                write!(f, "mgmt: {address}")?;
                if *dhcp {
                    write!(f, " via DHCP")?;
                }
                if let Some(g) = gateway {
                    write!(f, ", gateway {g}")?;
                }
                write!(f, ", https://{}:{port}/", address.address())
            }
            NetEvent::Deconfigured => write!(f, "mgmt: DHCP lease lost, no address"),
        }
    }
}

/// Why [`MgmtNet::new`] failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// The port's MAC is multicast or zero.
    #[error("mgmt: the host port's MAC {0:02x?} is not a unicast address")]
    BadMac([u8; 6]),
    /// Port 0.
    #[error("mgmt: port 0 cannot be listened on")]
    BadPort,
}

struct Connection {
    handle: SocketHandle,
    tls: TlsSession,
    http: RequestReader,
    /// No more requests: close once the output is sent.
    closing: bool,
    last_active_ms: u64,
}

/// The management network stack; see the module documentation.
pub struct MgmtNet<P: FramePort> {
    port: P,
    iface: Interface,
    sockets: SocketSet<'static>,
    dhcp: Option<SocketHandle>,
    listener: Option<SocketHandle>,
    connections: Vec<Connection>,
    config: NetConfig,
    tls: Arc<ServerConfig>,
    events: Vec<NetEvent>,
}

struct PortDevice<'a, P: FramePort>(&'a mut P);

struct Rx(Vec<u8>);

struct Tx<'a, P: FramePort>(&'a mut P);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl<P: FramePort> TxToken for Tx<'_, P> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.0.transmit(&frame);
        r
    }
}

impl<P: FramePort> Device for PortDevice<'_, P> {
    type RxToken<'a>
        = Rx
    where
        Self: 'a;
    type TxToken<'a>
        = Tx<'a, P>
    where
        Self: 'a;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_, P>)> {
        let frame = self.0.receive()?;
        Some((Rx(frame), Tx(self.0)))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_, P>> {
        Some(Tx(self.0))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

impl<P: FramePort> MgmtNet<P> {
    /// The stack on `port`: a static address is set at once (and reported by the first
    /// [`Self::take_events`]), DHCP starts at the first [`Self::poll`].
    pub fn new(mut port: P, config: NetConfig, tls: Arc<ServerConfig>) -> Result<Self, NetError> {
        let mac = port.mac();
        let eth = EthernetAddress(mac);
        if !eth.is_unicast() {
            return Err(NetError::BadMac(mac));
        }
        if config.port == 0 {
            return Err(NetError::BadPort);
        }
        let mut ic = Config::new(HardwareAddress::Ethernet(eth));
        // TCP initial sequence numbers and ephemeral ports: random when the CSPRNG is
        // seeded (it is before the network starts), else from the MAC.
        let mut seed = [0u8; 8];
        if crate::rng::fill(&mut seed).is_err() {
            seed[..6].copy_from_slice(&mac);
        }
        ic.random_seed = u64::from_le_bytes(seed);
        let iface = Interface::new(ic, &mut PortDevice(&mut port), Instant::ZERO);
        let mut net = Self {
            port,
            iface,
            sockets: SocketSet::new(Vec::new()),
            dhcp: None,
            listener: None,
            connections: Vec::new(),
            config,
            tls,
            events: Vec::new(),
        };
        match net.config.address.clone() {
            Address::Dhcp => {
                net.dhcp = Some(net.sockets.add(dhcpv4::Socket::new()));
            }
            Address::Static {
                ip,
                prefix,
                gateway,
            } => net.set_address(Ipv4Cidr::new(ip, prefix), gateway, false),
        }
        Ok(net)
    }

    /// Events since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<NetEvent> {
        core::mem::take(&mut self.events)
    }

    /// The current address, if any.
    pub fn address(&self) -> Option<Ipv4Cidr> {
        let IpCidr::Ipv4(c) = self.iface.ip_addrs().first()?;
        Some(*c)
    }

    /// Connections open now.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    fn set_address(&mut self, address: Ipv4Cidr, gateway: Option<Ipv4Addr>, dhcp: bool) {
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            // One address: the vector has room for it.
            let _ = addrs.push(IpCidr::Ipv4(address));
        });
        match gateway {
            Some(g) => {
                let _ = self.iface.routes_mut().add_default_ipv4_route(g);
            }
            None => {
                self.iface.routes_mut().remove_default_ipv4_route();
            }
        }
        self.events.push(NetEvent::Configured {
            address,
            gateway,
            dhcp,
            port: self.config.port,
        });
    }

    /// Moves frames and bytes; call it when a frame arrives or when the returned number of
    /// milliseconds has passed (`None`: only on a frame). `now_ms` is monotonic.
    pub fn poll(&mut self, now_ms: u64, handler: &mut dyn Handler) -> Option<u64> {
        let ts = Instant::from_millis(i64::try_from(now_ms).unwrap_or(i64::MAX));
        self.iface
            .poll(ts, &mut PortDevice(&mut self.port), &mut self.sockets);
        self.poll_dhcp();
        self.accept(now_ms);
        for i in 0..self.connections.len() {
            self.serve(i, now_ms, handler);
        }
        self.reap();
        self.ensure_listener();
        self.iface
            .poll(ts, &mut PortDevice(&mut self.port), &mut self.sockets);
        let delay = self
            .iface
            .poll_delay(ts, &self.sockets)
            .map(|d| d.total_millis());
        if self.connections.is_empty() {
            delay
        } else {
            // Idle timeouts and requests held back by a full output queue.
            Some(delay.map_or(1000, |d| d.min(1000)))
        }
    }

    fn poll_dhcp(&mut self) {
        let Some(h) = self.dhcp else { return };
        let event = match self.sockets.get_mut::<dhcpv4::Socket>(h).poll() {
            None => return,
            Some(dhcpv4::Event::Configured(c)) => Some((c.address, c.router)),
            Some(dhcpv4::Event::Deconfigured) => None,
        };
        match event {
            Some((address, router)) => self.set_address(address, router, true),
            // smoltcp reports "deconfigured" when it starts too: only a lost lease counts.
            None if self.address().is_none() => {}
            None => {
                self.iface.update_ip_addrs(|a| a.clear());
                self.iface.routes_mut().remove_default_ipv4_route();
                self.events.push(NetEvent::Deconfigured);
            }
        }
    }

    fn ensure_listener(&mut self) {
        if self.listener.is_some() || self.connections.len() >= MAX_CONNECTIONS {
            return;
        }
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; TCP_RX_BUFFER]),
            tcp::SocketBuffer::new(vec![0; TCP_TX_BUFFER]),
        );
        s.set_timeout(Some(Duration::from_millis(IDLE_TIMEOUT_MS)));
        s.set_nagle_enabled(false);
        // The port is not 0 (checked in `new`), the only way `listen` fails.
        if s.listen(self.config.port).is_ok() {
            self.listener = Some(self.sockets.add(s));
        }
    }

    fn accept(&mut self, now_ms: u64) {
        let Some(h) = self.listener else { return };
        match self.sockets.get::<tcp::Socket>(h).state() {
            // Still waiting, or half way through the TCP handshake.
            tcp::State::Listen | tcp::State::SynReceived => return,
            // Reset during the handshake: listen anew.
            tcp::State::Closed => {
                self.sockets.remove(h);
                self.listener = None;
                return;
            }
            _ => {}
        }
        self.listener = None;
        match TlsSession::new(self.tls.clone()) {
            Ok(tls) => self.connections.push(Connection {
                handle: h,
                tls,
                http: RequestReader::default(),
                closing: false,
                last_active_ms: now_ms,
            }),
            Err(_) => {
                self.sockets.get_mut::<tcp::Socket>(h).abort();
                self.sockets.remove(h);
            }
        }
    }

    fn serve(&mut self, i: usize, now_ms: u64, handler: &mut dyn Handler) {
        let Connection {
            handle,
            tls,
            http,
            closing,
            last_active_ms,
        } = &mut self.connections[i];
        let sock = self.sockets.get_mut::<tcp::Socket>(*handle);
        if now_ms.saturating_sub(*last_active_ms) > IDLE_TIMEOUT_MS {
            sock.abort();
            return;
        }
        let mut failed = false;
        // Ciphertext in, while the request reader has room.
        let mut buf = [0u8; 2048];
        while !*closing && !failed && sock.can_recv() && !http.is_full() {
            let n = match sock.recv_slice(&mut buf) {
                Ok(n) if n > 0 => n,
                _ => break,
            };
            *last_active_ms = now_ms;
            if tls.receive(&buf[..n]).is_err() {
                failed = true;
            }
            http.feed(&tls.take_plaintext());
        }
        // Requests to responses, while the output queue has room.
        while !*closing && !failed && tls.pending_output().len() < OUTPUT_HIGH_WATER {
            let (response, close) = match http.next_request() {
                Next::NeedMore | Next::Closed => break,
                Next::Request { request, close } => (handler.handle(&request, now_ms), close),
                Next::Error(response) => (response, true),
            };
            let mut out = Vec::new();
            write_response(&response, close, &mut out);
            if tls.send(&out).is_err() {
                failed = true;
            }
            if close {
                *closing = true;
            }
        }
        if tls.peer_closed() || (!sock.may_recv() && !tls.is_handshaking()) {
            *closing = true;
        }
        if *closing && !failed && !tls.is_closed() && tls.close().is_err() {
            failed = true;
        }
        // Ciphertext out (an alert too, after a failure).
        while !tls.pending_output().is_empty() && sock.can_send() {
            match sock.send_slice(tls.pending_output()) {
                Ok(n) if n > 0 => {
                    tls.consume_output(n);
                    *last_active_ms = now_ms;
                }
                _ => break,
            }
        }
        if failed || tls.is_closed() || (!sock.may_recv() && tls.is_handshaking()) {
            *closing = true;
            if tls.pending_output().is_empty() || !sock.may_send() {
                sock.close();
            }
        }
    }

    fn reap(&mut self) {
        let sockets = &mut self.sockets;
        self.connections.retain(|c| {
            let state = sockets.get::<tcp::Socket>(c.handle).state();
            let done = matches!(state, tcp::State::Closed | tcp::State::TimeWait);
            if done {
                sockets.remove(c.handle);
            }
            !done
        });
    }
}

#[cfg(test)]
mod tests;
