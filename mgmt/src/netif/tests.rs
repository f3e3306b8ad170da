//! Two smoltcp stacks wired back to back: the server ([`MgmtNet`]) and a test client.

use super::*;
use crate::request::{Request, Response};
use crate::tls::tests::{client_config, pki};
use smoltcp::socket::icmp;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, DhcpMessageType, DhcpPacket, DhcpRepr, EthernetFrame,
    EthernetProtocol, EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpAddress, IpProtocol, Ipv4Packet,
    Ipv4Repr, UdpPacket, UdpRepr,
};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::rc::Rc;

type Queue = Rc<RefCell<VecDeque<Vec<u8>>>>;

/// One end of an in-memory Ethernet cable.
struct Wire {
    rx: Queue,
    tx: Queue,
    mac: [u8; 6],
    /// Every frame this end sent.
    log: Rc<RefCell<Vec<Vec<u8>>>>,
}

impl FramePort for Wire {
    fn receive(&mut self) -> Option<Vec<u8>> {
        self.rx.borrow_mut().pop_front()
    }
    fn transmit(&mut self, frame: &[u8]) {
        self.log.borrow_mut().push(frame.to_vec());
        self.tx.borrow_mut().push_back(frame.to_vec());
    }
    fn mac(&self) -> [u8; 6] {
        self.mac
    }
}

const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

fn cable() -> (Wire, Wire) {
    let a: Queue = Rc::default();
    let b: Queue = Rc::default();
    (
        Wire {
            rx: a.clone(),
            tx: b.clone(),
            mac: SERVER_MAC,
            log: Rc::default(),
        },
        Wire {
            rx: b,
            tx: a,
            mac: CLIENT_MAC,
            log: Rc::default(),
        },
    )
}

fn static_config() -> NetConfig {
    NetConfig {
        address: Address::Static {
            ip: SERVER_IP,
            prefix: 24,
            gateway: None,
        },
        port: 443,
    }
}

struct ClientStack {
    wire: Wire,
    iface: Interface,
    sockets: SocketSet<'static>,
}

fn client_stack(wire: Wire) -> ClientStack {
    let mut wire = wire;
    let mut iface = Interface::new(
        Config::new(HardwareAddress::Ethernet(EthernetAddress(CLIENT_MAC))),
        &mut PortDevice(&mut wire),
        Instant::ZERO,
    );
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::v4(10, 0, 0, 2), 24))
            .expect("room")
    });
    ClientStack {
        wire,
        iface,
        sockets: SocketSet::new(Vec::new()),
    }
}

impl ClientStack {
    fn poll(&mut self, now: u64) {
        self.iface.poll(
            Instant::from_millis(now as i64),
            &mut PortDevice(&mut self.wire),
            &mut self.sockets,
        );
    }
}

/// A handler that echoes the path, method and body.
fn echo(req: &Request<'_>, _now: u64) -> Response {
    let mut body = format!("{} {} ", req.method, req.path).into_bytes();
    body.extend_from_slice(req.body);
    Response {
        status: 200,
        content_type: "text/plain",
        headers: vec![("X-Test", "yes".into())],
        body,
    }
}

/// Runs an HTTPS exchange: sends `request` and reads until the client sees EOF or
/// `want` bytes; returns the plaintext the client got and whether it saw close_notify.
fn https_exchange(
    server: &mut MgmtNet<Wire>,
    client: &mut ClientStack,
    tls: &mut rustls::ClientConnection,
    h: SocketHandle,
    request: &[u8],
    now: &mut u64,
    until: impl Fn(&[u8]) -> bool,
) -> (Vec<u8>, bool) {
    tls.writer().write_all(request).expect("queue request");
    let mut to_send = Vec::new();
    let mut got = Vec::new();
    let mut eof = false;
    let mut handler = echo;
    for _ in 0..3000 {
        *now += 1;
        server.poll(*now, &mut handler);
        client.poll(*now);
        let s = client.sockets.get_mut::<tcp::Socket>(h);
        let mut buf = [0u8; 4096];
        while s.can_recv() {
            let n = s.recv_slice(&mut buf).expect("recv");
            let mut rd = &buf[..n];
            while !rd.is_empty() {
                tls.read_tls(&mut rd).expect("read_tls");
                tls.process_new_packets().expect("client TLS");
            }
        }
        loop {
            let mut b = [0u8; 4096];
            match tls.reader().read(&mut b) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => got.extend_from_slice(&b[..n]),
                Err(_) => break,
            }
        }
        while tls.wants_write() {
            tls.write_tls(&mut to_send).expect("write_tls");
        }
        if s.can_send() && !to_send.is_empty() {
            let n = s.send_slice(&to_send).expect("send");
            to_send.drain(..n);
        }
        if eof || until(&got) {
            break;
        }
    }
    (got, eof)
}

#[test]
fn https_get_through_two_smoltcp_stacks() {
    crate::rng::seed(&[b"netif test"]);
    let pki = pki();
    let (server_wire, client_wire) = cable();
    let tls_config = crate::tls::TlsConfig::new(pki.chain, pki.key).expect("tls");
    let mut server = MgmtNet::new(server_wire, static_config(), tls_config).expect("net");
    assert_eq!(
        server.take_events(),
        vec![NetEvent::Configured {
            address: Ipv4Cidr::new(SERVER_IP, 24),
            gateway: None,
            dhcp: false,
            port: 443
        }]
    );
    let mut client = client_stack(client_wire);
    let mut sock = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 65536]),
        tcp::SocketBuffer::new(vec![0; 65536]),
    );
    sock.connect(
        client.iface.context(),
        (IpAddress::Ipv4(SERVER_IP), 443),
        49152,
    )
    .expect("connect");
    let h = client.sockets.add(sock);
    let mut tls = rustls::ClientConnection::new(
        client_config(&pki.ca_der, &[&rustls::version::TLS13]),
        "hv.test".try_into().expect("name"),
    )
    .expect("client");
    let mut now = 0;

    // A keep-alive request, then one with a body that closes the connection.
    let first = b"GET /api/host?x=1 HTTP/1.1\r\nHost: hv.test\r\n\r\n";
    let (got, eof) = https_exchange(
        &mut server,
        &mut client,
        &mut tls,
        h,
        first,
        &mut now,
        |g| g.ends_with(b"GET /api/host "),
    );
    let text = String::from_utf8(got).expect("utf8");
    assert!(!eof);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("X-Test: yes\r\n"), "{text}");
    assert!(text.contains("Connection: keep-alive\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nGET /api/host "), "{text}");
    assert_eq!(server.connection_count(), 1);

    let second = b"POST /api/login HTTP/1.1\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd";
    let (got, eof) = https_exchange(
        &mut server,
        &mut client,
        &mut tls,
        h,
        second,
        &mut now,
        |_| false,
    );
    let text = String::from_utf8(got).expect("utf8");
    assert!(eof, "the server must send close_notify");
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nPOST /api/login abcd"), "{text}");
    // The client closes its side; the server forgets the connection.
    client.sockets.get_mut::<tcp::Socket>(h).close();
    let mut handler = echo;
    for _ in 0..200 {
        now += 10;
        server.poll(now, &mut handler);
        client.poll(now);
    }
    assert_eq!(server.connection_count(), 0);
}

#[test]
fn garbage_over_tcp_closes_the_connection() {
    crate::rng::seed(&[b"netif test"]);
    let pki = pki();
    let (server_wire, client_wire) = cable();
    let tls_config = crate::tls::TlsConfig::new(pki.chain, pki.key).expect("tls");
    let mut server = MgmtNet::new(server_wire, static_config(), tls_config).expect("net");
    let mut client = client_stack(client_wire);
    let mut sock = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 4096]),
        tcp::SocketBuffer::new(vec![0; 4096]),
    );
    sock.connect(
        client.iface.context(),
        (IpAddress::Ipv4(SERVER_IP), 443),
        49153,
    )
    .expect("connect");
    let h = client.sockets.add(sock);
    let mut handler = echo;
    let mut sent = false;
    let mut now = 0;
    let mut was_connected = false;
    for _ in 0..500 {
        now += 5;
        server.poll(now, &mut handler);
        client.poll(now);
        let s = client.sockets.get_mut::<tcp::Socket>(h);
        if s.can_send() && !sent {
            s.send_slice(b"GET / HTTP/1.1\r\n\r\n").expect("send");
            sent = true;
            was_connected = true;
        }
        if sent && !s.may_recv() {
            break;
        }
    }
    assert!(was_connected);
    let s = client.sockets.get::<tcp::Socket>(h);
    assert!(!s.may_recv(), "the server must close, state {}", s.state());
}

#[test]
fn static_address_answers_arp_and_ping() {
    let (server_wire, client_wire) = cable();
    let server_log = server_wire.log.clone();
    let pki = pki();
    let tls_config = crate::tls::TlsConfig::new(pki.chain, pki.key).expect("tls");
    let mut server = MgmtNet::new(server_wire, static_config(), tls_config).expect("net");
    let mut client = client_stack(client_wire);
    let mut sock = icmp::Socket::new(
        icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 1024]),
        icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 1024]),
    );
    sock.bind(icmp::Endpoint::Ident(0x1234)).expect("bind");
    let h = client.sockets.add(sock);
    let request = Icmpv4Repr::EchoRequest {
        ident: 0x1234,
        seq_no: 7,
        data: b"hello hv",
    };
    {
        let s = client.sockets.get_mut::<icmp::Socket>(h);
        let buf = s
            .send(request.buffer_len(), IpAddress::Ipv4(SERVER_IP))
            .expect("queue ping");
        request.emit(
            &mut Icmpv4Packet::new_unchecked(buf),
            &smoltcp::phy::ChecksumCapabilities::default(),
        );
    }
    let mut handler = echo;
    let mut reply = None;
    for now in 0..200u64 {
        server.poll(now * 10, &mut handler);
        client.poll(now * 10);
        let s = client.sockets.get_mut::<icmp::Socket>(h);
        if let Ok((data, from)) = s.recv() {
            let pkt = Icmpv4Packet::new_checked(data).expect("icmp");
            let repr = Icmpv4Repr::parse(&pkt, &smoltcp::phy::ChecksumCapabilities::default())
                .expect("repr");
            if let Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data,
            } = repr
            {
                reply = Some((from, ident, seq_no, data.to_vec()));
                break;
            }
        }
    }
    assert_eq!(
        reply,
        Some((IpAddress::Ipv4(SERVER_IP), 0x1234, 7, b"hello hv".to_vec()))
    );
    let arp_reply = server_log.borrow().iter().any(|f| {
        let Ok(eth) = EthernetFrame::new_checked(&f[..]) else {
            return false;
        };
        if eth.ethertype() != EthernetProtocol::Arp {
            return false;
        }
        let Ok(pkt) = ArpPacket::new_checked(eth.payload()) else {
            return false;
        };
        matches!(
            ArpRepr::parse(&pkt),
            Ok(ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr,
                source_protocol_addr,
                ..
            }) if source_hardware_addr == EthernetAddress(SERVER_MAC)
                && source_protocol_addr == SERVER_IP
        )
    });
    assert!(arp_reply, "the server must answer ARP for its address");
}

/// A DHCP server that offers 10.0.2.15/24 via 10.0.2.2 to whoever asks.
fn fake_dhcp_reply(frame: &[u8]) -> Option<Vec<u8>> {
    let server_ip = Ipv4Addr::new(10, 0, 2, 2);
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.next_header() != IpProtocol::Udp {
        return None;
    }
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    if udp.dst_port() != 67 {
        return None;
    }
    let dhcp = DhcpPacket::new_checked(udp.payload()).ok()?;
    let req = DhcpRepr::parse(&dhcp).ok()?;
    let message_type = match req.message_type {
        DhcpMessageType::Discover => DhcpMessageType::Offer,
        DhcpMessageType::Request => DhcpMessageType::Ack,
        _ => return None,
    };
    let reply = DhcpRepr {
        message_type,
        transaction_id: req.transaction_id,
        secs: 0,
        client_hardware_address: req.client_hardware_address,
        client_ip: Ipv4Addr::UNSPECIFIED,
        your_ip: Ipv4Addr::new(10, 0, 2, 15),
        server_ip,
        router: Some(server_ip),
        subnet_mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
        relay_agent_ip: Ipv4Addr::UNSPECIFIED,
        broadcast: false,
        requested_ip: None,
        client_identifier: None,
        server_identifier: Some(server_ip),
        parameter_request_list: None,
        dns_servers: None,
        max_size: None,
        lease_duration: Some(3600),
        renew_duration: None,
        rebind_duration: None,
        additional_options: &[],
    };
    let caps = smoltcp::phy::ChecksumCapabilities::default();
    let dhcp_len = reply.buffer_len();
    let udp_repr = UdpRepr {
        src_port: 67,
        dst_port: 68,
    };
    let ip_repr = Ipv4Repr {
        src_addr: server_ip,
        dst_addr: Ipv4Addr::BROADCAST,
        next_header: IpProtocol::Udp,
        payload_len: udp_repr.header_len() + dhcp_len,
        hop_limit: 64,
    };
    let eth_repr = EthernetRepr {
        src_addr: EthernetAddress([0x02, 0, 0, 0, 0, 0x99]),
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut buf = vec![0u8; eth_repr.buffer_len() + ip_repr.buffer_len() + ip_repr.payload_len];
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
    eth_repr.emit(&mut eth);
    let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip_repr.emit(&mut ip, &caps);
    let mut udp = UdpPacket::new_unchecked(ip.payload_mut());
    udp_repr.emit(
        &mut udp,
        &IpAddress::Ipv4(server_ip),
        &IpAddress::Ipv4(Ipv4Addr::BROADCAST),
        dhcp_len,
        |b| {
            let _ = reply.emit(&mut DhcpPacket::new_unchecked(b));
        },
        &caps,
    );
    Some(buf)
}

#[test]
fn dhcp_lease_from_a_fake_server_is_reported() {
    let (server_wire, client_wire) = cable();
    let pki = pki();
    let tls_config = crate::tls::TlsConfig::new(pki.chain, pki.key).expect("tls");
    let mut server = MgmtNet::new(server_wire, NetConfig::default(), tls_config).expect("net");
    assert!(server.take_events().is_empty());
    assert_eq!(server.address(), None);
    let mut handler = echo;
    let mut events = Vec::new();
    for step in 0..300u64 {
        server.poll(step * 100, &mut handler);
        let frames: Vec<Vec<u8>> = client_wire.rx.borrow_mut().drain(..).collect();
        for f in frames {
            if let Some(reply) = fake_dhcp_reply(&f) {
                client_wire.tx.borrow_mut().push_back(reply);
            }
        }
        events.extend(server.take_events());
        if !events.is_empty() {
            break;
        }
    }
    assert_eq!(
        events,
        vec![NetEvent::Configured {
            address: Ipv4Cidr::new(Ipv4Addr::new(10, 0, 2, 15), 24),
            gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
            dhcp: true,
            port: 443,
        }]
    );
    assert_eq!(
        events[0].to_string(),
        "mgmt: 10.0.2.15/24 via DHCP, gateway 10.0.2.2, https://10.0.2.15:443/"
    );
    assert_eq!(
        server.address(),
        Some(Ipv4Cidr::new(Ipv4Addr::new(10, 0, 2, 15), 24))
    );
}

#[test]
fn bad_mac_and_port_are_errors() {
    let pki = pki();
    let tls_config = crate::tls::TlsConfig::new(pki.chain, pki.key).expect("tls");
    let (mut w, _) = cable();
    w.mac = [0x01, 0, 0x5e, 0, 0, 1];
    assert!(matches!(
        MgmtNet::new(w, static_config(), tls_config.clone()),
        Err(NetError::BadMac(_))
    ));
    let (w, _) = cable();
    let mut c = static_config();
    c.port = 0;
    assert!(matches!(
        MgmtNet::new(w, c, tls_config),
        Err(NetError::BadPort)
    ));
}

#[test]
fn host_tom_parsing() {
    assert_eq!(NetConfig::from_toml("").unwrap(), NetConfig::default());
    assert_eq!(
        NetConfig::from_toml("[other]\nx = 1\n[mgmt]\naddress = \"dhcp\"\nport = 8443\n").unwrap(),
        NetConfig {
            address: Address::Dhcp,
            port: 8443
        }
    );
    assert_eq!(
        NetConfig::from_toml("[mgmt]\naddress = \"10.0.2.15/24\"\ngateway = \"10.0.2.2\"\n")
            .unwrap(),
        NetConfig {
            address: Address::Static {
                ip: Ipv4Addr::new(10, 0, 2, 15),
                prefix: 24,
                gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
            },
            port: 443
        }
    );
    let err = |t: &str| NetConfig::from_toml(t).unwrap_err();
    let e = err("[mgmt]\nport = 443\naddress = \"10.0.2.300/24\"\n");
    assert_eq!(e.line, Some(3), "{e}");
    assert!(
        e.to_string()
            .starts_with("HV/HOST.TOM line 3: address `10.0.2.300/24`"),
        "{e}"
    );
    assert_eq!(err("[mgmt]\naddress = \"10.0.2.15\"\n").line, Some(2));
    assert_eq!(err("[mgmt]\naddress = \"10.0.2.15/33\"\n").line, Some(2));
    assert_eq!(err("[mgmt]\n\nport = 70000\n").line, Some(3));
    assert_eq!(err("[mgmt]\nport = 0\n").line, Some(2));
    assert_eq!(err("[mgmt]\ngateway = \"10.0.2.2\"\n").line, Some(2));
    assert_eq!(err("[mgmt]\nadress = \"dhcp\"\n").line, Some(2));
    assert_eq!(
        err("[mgmt]\naddress = \"10.0.2.15/24\"\ngateway = \"x\"\n").line,
        Some(3)
    );
    assert_eq!(err("[mgmt\n").line, Some(1));
}
