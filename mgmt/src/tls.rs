//! TLS 1.3 server sessions: `rustls` without `std` (`UnbufferedServerConnection`) and the
//! pure-Rust `rustls-rustcrypto` provider. [`TlsSession`] wraps rustls' unbuffered state
//! machine so that its caller only moves bytes: ciphertext in with
//! [`TlsSession::receive`], plaintext out with [`TlsSession::take_plaintext`], plaintext in
//! with [`TlsSession::send`], ciphertext out with [`TlsSession::pending_output`] and
//! [`TlsSession::consume_output`].
//!
//! Randomness comes from [`crate::rng`] (through `getrandom` on bare metal); the wall time
//! from the function given to [`set_clock`].

use alloc::sync::Arc;
use alloc::vec::Vec;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::UnbufferedServerConnection;
use rustls::time_provider::TimeProvider;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::ServerConfig;
use spin::Mutex;

/// Ciphertext buffered ahead of processing before the peer is cut off: two full records.
const MAX_INCOMING: usize = 2 * (16384 + 2048);
/// Decrypted bytes not yet taken by the caller before the peer is cut off.
const MAX_PLAINTEXT: usize = 256 * 1024;

/// A TLS failure.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused the configuration or the peer's messages.
    #[error("TLS: {0}")]
    Rustls(rustls::Error),
    /// The peer sent more than is buffered without being read.
    #[error("TLS: the peer sends faster than it is read")]
    Overrun,
    /// Encrypting application data failed.
    #[error("TLS: cannot encrypt: {0}")]
    Encrypt(EncryptError),
    /// Encoding a handshake message failed.
    #[error("TLS: cannot encode: {0}")]
    Encode(EncodeError),
    /// The session has already failed or closed.
    #[error("TLS: the session is closed")]
    Closed,
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        Self::Rustls(e)
    }
}

/// The wall clock: seconds since the Unix epoch, or `None` if unknown.
pub type Clock = fn() -> Option<u64>;

static CLOCK: Mutex<Option<Clock>> = Mutex::new(None);

/// Sets the wall clock rustls asks (certificate and ticket times). Without it, rustls
/// is told the time is unknown.
pub fn set_clock(clock: Clock) {
    *CLOCK.lock() = Some(clock);
}

#[derive(Debug)]
struct HvTime;

impl TimeProvider for HvTime {
    fn current_time(&self) -> Option<UnixTime> {
        let clock = *CLOCK.lock();
        clock
            .and_then(|f| f())
            .map(|s| UnixTime::since_unix_epoch(core::time::Duration::from_secs(s)))
    }
}

/// Builds server configurations.
///
/// Sessions are not resumable, so rustls needs the wall time only for client
/// certificates (not used); [`set_clock`] is still honoured when it asks.
pub struct TlsConfig;

impl TlsConfig {
    /// A TLS 1.3-only server configuration presenting `cert_chain_der` (the host
    /// certificate first, then any intermediates) with the PKCS#8 (or SEC1) ECDSA P-256
    /// key `key_pkcs8_der`, the key type the installer makes; another key type is refused
    /// with an error (see [`provider`]). No client authentication, no ALPN (clients speak
    /// HTTP/1.1).
    // `new` as the issue names it; what it makes is shared by every session.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(
        cert_chain_der: Vec<Vec<u8>>,
        key_pkcs8_der: Vec<u8>,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let chain = cert_chain_der
            .into_iter()
            .map(CertificateDer::from)
            .collect::<Vec<_>>();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8_der));
        let config = ServerConfig::builder_with_details(Arc::new(provider()), Arc::new(HvTime))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        let mut config = config;
        // No resumption: no ticket keys or session cache to keep, the same behaviour with
        // and without `std`, and the wall time (which a board may not know) is then never
        // needed by the handshake.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
    }
}

/// One server-side TLS session; see the module documentation.
pub struct TlsSession {
    conn: UnbufferedServerConnection,
    incoming: Vec<u8>,
    outgoing: Vec<u8>,
    plaintext_in: Vec<u8>,
    plaintext_out: Vec<u8>,
    handshaking: bool,
    close_requested: bool,
    close_sent: bool,
    peer_closed: bool,
    closed: bool,
    failed: bool,
}

impl TlsSession {
    /// A new session awaiting the client's hello.
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, TlsError> {
        Ok(Self {
            conn: UnbufferedServerConnection::new(config)?,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            plaintext_in: Vec::new(),
            plaintext_out: Vec::new(),
            handshaking: true,
            close_requested: false,
            close_sent: false,
            peer_closed: false,
            closed: false,
            failed: false,
        })
    }

    /// Takes ciphertext received from the peer and processes what is complete of it.
    /// An error is final: send [`Self::pending_output`] (an alert, if any), then close.
    pub fn receive(&mut self, ciphertext: &[u8]) -> Result<(), TlsError> {
        if self.failed || self.closed {
            return Err(TlsError::Closed);
        }
        if self.incoming.len() + ciphertext.len() > MAX_INCOMING
            || self.plaintext_in.len() > MAX_PLAINTEXT
        {
            self.failed = true;
            return Err(TlsError::Overrun);
        }
        self.incoming.extend_from_slice(ciphertext);
        self.process()
    }

    /// Queues `plaintext` to be encrypted (once the handshake is done).
    pub fn send(&mut self, plaintext: &[u8]) -> Result<(), TlsError> {
        if self.failed || self.closed || self.close_requested {
            return Err(TlsError::Closed);
        }
        self.plaintext_out.extend_from_slice(plaintext);
        self.process()
    }

    /// Queues a `close_notify` after any queued plaintext.
    pub fn close(&mut self) -> Result<(), TlsError> {
        if self.failed || self.closed {
            return Err(TlsError::Closed);
        }
        self.close_requested = true;
        self.process()
    }

    /// Takes the decrypted bytes received so far.
    pub fn take_plaintext(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.plaintext_in)
    }

    /// Ciphertext waiting to be sent to the peer.
    pub fn pending_output(&self) -> &[u8] {
        &self.outgoing
    }

    /// Drops the first `n` bytes of [`Self::pending_output`], which were sent.
    pub fn consume_output(&mut self, n: usize) {
        self.outgoing.drain(..n.min(self.outgoing.len()));
    }

    /// Whether the handshake is still going on.
    pub fn is_handshaking(&self) -> bool {
        self.handshaking
    }

    /// Whether plaintext queued with [`Self::send`] is still waiting to be encrypted.
    pub fn has_unsent_plaintext(&self) -> bool {
        !self.plaintext_out.is_empty()
    }

    /// Whether the peer has sent `close_notify`: no more plaintext will come.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Whether the session is over (closed both ways, our `close_notify` queued, or
    /// failed): once [`Self::pending_output`] is sent, the transport can be closed.
    pub fn is_closed(&self) -> bool {
        self.closed || self.failed || self.close_sent
    }

    /// Runs the state machine until it needs more input from the peer.
    fn process(&mut self) -> Result<(), TlsError> {
        // Each turn either consumes input, produces output or stops; the bound is a
        // safety net against a state machine that would spin.
        for _ in 0..1000 {
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut self.incoming);
            let mut stop = false;
            let mut error = None;
            match state {
                Err(e) => error = Some(TlsError::Rustls(e)),
                Ok(ConnectionState::ReadTraffic(mut r)) => {
                    while let Some(rec) = r.next_record() {
                        match rec {
                            Ok(rec) => self.plaintext_in.extend_from_slice(rec.payload),
                            Err(e) => {
                                error = Some(TlsError::Rustls(e));
                                break;
                            }
                        }
                    }
                }
                Ok(ConnectionState::ReadEarlyData(mut r)) => {
                    // Early data is never enabled in the configuration; drop it if any.
                    while let Some(rec) = r.next_record() {
                        if let Err(e) = rec {
                            error = Some(TlsError::Rustls(e));
                            break;
                        }
                    }
                }
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    let start = self.outgoing.len();
                    self.outgoing.resize(start + 2048, 0);
                    let r = match e.encode(&mut self.outgoing[start..]) {
                        Err(EncodeError::InsufficientSize(s)) => {
                            self.outgoing.resize(start + s.required_size, 0);
                            e.encode(&mut self.outgoing[start..])
                        }
                        r => r,
                    };
                    match r {
                        Ok(n) => self.outgoing.truncate(start + n),
                        Err(err) => {
                            self.outgoing.truncate(start);
                            error = Some(TlsError::Encode(err));
                        }
                    }
                }
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    // The bytes are in `outgoing`; the caller transmits them.
                    t.done();
                }
                Ok(ConnectionState::BlockedHandshake) => stop = true,
                Ok(ConnectionState::WriteTraffic(mut w)) => {
                    self.handshaking = false;
                    if !self.plaintext_out.is_empty() {
                        let data = core::mem::take(&mut self.plaintext_out);
                        if let Err(e) =
                            encrypt_into(&mut self.outgoing, &data, |p, out| w.encrypt(p, out))
                        {
                            error = Some(e);
                        }
                    }
                    if error.is_none() && self.close_requested && !self.close_sent {
                        match encrypt_into(&mut self.outgoing, &[], |_, out| {
                            w.queue_close_notify(out)
                        }) {
                            Ok(()) => self.close_sent = true,
                            Err(e) => error = Some(e),
                        }
                    }
                    stop = true;
                }
                Ok(ConnectionState::PeerClosed) => self.peer_closed = true,
                Ok(ConnectionState::Closed) => {
                    self.peer_closed = true;
                    self.closed = true;
                    stop = true;
                }
                Ok(_) => stop = true,
            }
            self.incoming.drain(..discard.min(self.incoming.len()));
            if let Some(e) = error {
                self.failed = true;
                return Err(e);
            }
            if stop {
                return Ok(());
            }
        }
        self.failed = true;
        Err(TlsError::Closed)
    }
}

/// Appends the output of `f` (an encryption into a buffer) to `out`, growing the buffer
/// to what rustls says it needs.
fn encrypt_into(
    out: &mut Vec<u8>,
    data: &[u8],
    mut f: impl FnMut(&[u8], &mut [u8]) -> Result<usize, EncryptError>,
) -> Result<(), TlsError> {
    let start = out.len();
    out.resize(start + data.len() + 1024, 0);
    let r = match f(data, &mut out[start..]) {
        Err(EncryptError::InsufficientSize(s)) => {
            out.resize(start + s.required_size, 0);
            f(data, &mut out[start..])
        }
        r => r,
    };
    match r {
        Ok(n) => {
            out.truncate(start + n);
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(TlsError::Encrypt(e))
        }
    }
}

/// The cipher suites the server offers: the two TLS 1.3 suites on SHA-256. Every TLS 1.3
/// client implements AES-128-GCM (RFC 8446 section 9.1 makes it mandatory); ChaCha20-Poly1305
/// serves clients without AES hardware. AES-256-GCM-SHA384 is left out: it would bring
/// SHA-384 (the SHA-512 core) for no client that lacks the other two.
static CIPHER_SUITES: &[rustls::SupportedCipherSuite] = &[
    rustls_rustcrypto::TLS13_AES_128_GCM_SHA256,
    rustls_rustcrypto::TLS13_CHACHA20_POLY1305_SHA256,
];

/// The key exchange groups, in order of preference: X25519 and P-256 (the two every TLS 1.3
/// client offers; RFC 8446 section 9.1 makes P-256 mandatory).
static KX_GROUPS: &[&dyn rustls::crypto::SupportedKxGroup] = &[&kx::X25519, &kx::P256];

/// The crypto provider of the management server: `rustls-rustcrypto`'s primitives, but only
/// what a TLS 1.3 server with the installer's ECDSA P-256 key and no client certificates
/// uses. `rustls_rustcrypto::provider()` brings every suite, group and key type it has (RSA
/// with its big-integer arithmetic, P-384, Ed25519), over 200 KiB of the image that no
/// handshake here reaches.
///
/// - Signing: ECDSA P-256 with SHA-256 only ([`EcdsaP256KeyProvider`]).
/// - Signature verification: none. rustls verifies signatures only for client certificates,
///   and the server asks for none (`with_no_client_auth`), so the set is empty; a
///   configuration that asked for client certificates would find no algorithm and fail.
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::CryptoProvider {
        cipher_suites: CIPHER_SUITES.to_vec(),
        kx_groups: KX_GROUPS.to_vec(),
        signature_verification_algorithms: rustls::crypto::WebPkiSupportedAlgorithms {
            all: &[],
            mapping: &[],
        },
        secure_random: &rustls_rustcrypto::Provider,
        key_provider: &EcdsaP256KeyProvider,
    }
}

/// Loads the host key: ECDSA P-256 (PKCS#8 or SEC1); any other key is an error naming it.
#[derive(Debug)]
struct EcdsaP256KeyProvider;

impl rustls::crypto::KeyProvider for EcdsaP256KeyProvider {
    fn load_private_key(
        &self,
        key_der: PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        use rustls_rustcrypto::sign::ecdsa::EcdsaSigningKeyP256;
        EcdsaSigningKeyP256::try_from(&key_der)
            .map(|k| Arc::new(k) as Arc<dyn rustls::sign::SigningKey>)
            .map_err(|_| {
                rustls::Error::General(
                    "the host key is not an ECDSA P-256 key (the only type the management \
                     server loads)"
                        .into(),
                )
            })
    }
}

/// The key exchanges of [`KX_GROUPS`], ephemeral keys from [`crate::rng`] (via `getrandom`).
mod kx {
    use alloc::boxed::Box;
    use rustls::crypto::{ActiveKeyExchange, SharedSecret, SupportedKxGroup};
    use rustls::{Error, NamedGroup, PeerMisbehaved};

    /// X25519 (RFC 7748).
    #[derive(Debug)]
    pub(super) struct X25519;

    struct X25519Exchange {
        secret: x25519_dalek::EphemeralSecret,
        public: x25519_dalek::PublicKey,
    }

    impl SupportedKxGroup for X25519 {
        fn name(&self) -> NamedGroup {
            NamedGroup::X25519
        }

        fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
            let secret = x25519_dalek::EphemeralSecret::random_from_rng(rand_core::OsRng);
            let public = x25519_dalek::PublicKey::from(&secret);
            Ok(Box::new(X25519Exchange { secret, public }))
        }
    }

    impl ActiveKeyExchange for X25519Exchange {
        fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, Error> {
            let peer: [u8; 32] = peer
                .try_into()
                .map_err(|_| Error::from(PeerMisbehaved::InvalidKeyShare))?;
            let shared = self
                .secret
                .diffie_hellman(&x25519_dalek::PublicKey::from(peer));
            // An all-zero secret means a low-order peer point (RFC 7748 section 6.1).
            if !shared.was_contributory() {
                return Err(PeerMisbehaved::InvalidKeyShare.into());
            }
            Ok(SharedSecret::from(&shared.as_bytes()[..]))
        }

        fn pub_key(&self) -> &[u8] {
            self.public.as_bytes()
        }

        fn group(&self) -> NamedGroup {
            NamedGroup::X25519
        }
    }

    /// ECDH on NIST P-256 (secp256r1), uncompressed SEC1 points.
    #[derive(Debug)]
    pub(super) struct P256;

    struct P256Exchange {
        secret: p256::ecdh::EphemeralSecret,
        public: Box<[u8]>,
    }

    impl SupportedKxGroup for P256 {
        fn name(&self) -> NamedGroup {
            NamedGroup::secp256r1
        }

        fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
            let secret = p256::ecdh::EphemeralSecret::random(&mut rand_core::OsRng);
            let public = p256::PublicKey::from(&secret).to_sec1_bytes();
            Ok(Box::new(P256Exchange { secret, public }))
        }
    }

    impl ActiveKeyExchange for P256Exchange {
        fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, Error> {
            let peer = p256::PublicKey::from_sec1_bytes(peer)
                .map_err(|_| Error::from(PeerMisbehaved::InvalidKeyShare))?;
            let shared = self.secret.diffie_hellman(&peer);
            Ok(SharedSecret::from(shared.raw_secret_bytes().as_slice()))
        }

        fn pub_key(&self) -> &[u8] {
            &self.public
        }

        fn group(&self) -> NamedGroup {
            NamedGroup::secp256r1
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A CA and a host certificate for `hv.test` and 10.0.0.1, made fresh.
    pub(crate) struct TestPki {
        pub ca_der: Vec<u8>,
        pub chain: Vec<Vec<u8>>,
        pub key: Vec<u8>,
    }

    pub(crate) fn pki() -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA cert");
        let key = KeyPair::generate().expect("host key");
        let mut params = CertificateParams::new(vec!["hv.test".to_string()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress("10.0.0.1".parse().expect("ip")));
        let cert = params.signed_by(&key, &ca, &ca_key).expect("host cert");
        TestPki {
            ca_der: ca.der().to_vec(),
            chain: vec![cert.der().to_vec()],
            key: key.serialize_der(),
        }
    }

    pub(crate) fn client_config(
        ca_der: &[u8],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca_der.to_vec()))
            .expect("CA root");
        // ring's provider is deprecated only for lacking post-quantum key exchange; it is
        // here as an independent TLS implementation to talk to.
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(provider))
                .with_protocol_versions(versions)
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// Moves bytes both ways until neither side has anything to send; the plaintext the
    /// client received goes to `got`.
    fn pump(
        client: &mut rustls::ClientConnection,
        server: &mut TlsSession,
        got: &mut Vec<u8>,
    ) -> Result<(), TlsError> {
        for _ in 0..50 {
            let mut to_server = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut to_server).expect("client write");
            }
            if !to_server.is_empty() {
                server.receive(&to_server)?;
            }
            let out = server.pending_output().to_vec();
            server.consume_output(out.len());
            let mut rd = &out[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).expect("client read");
                client.process_new_packets().expect("client process");
                let mut b = [0u8; 4096];
                while let Ok(n @ 1..) = client.reader().read(&mut b) {
                    got.extend_from_slice(&b[..n]);
                }
            }
            if to_server.is_empty() && out.is_empty() {
                return Ok(());
            }
        }
        panic!("no quiescence");
    }

    #[test]
    fn handshake_and_http_exchange_with_a_ring_client() {
        let pki = pki();
        let server_config = TlsConfig::new(pki.chain.clone(), pki.key.clone()).expect("config");
        let mut server = TlsSession::new(server_config).expect("session");
        let client_config = client_config(&pki.ca_der, &[&rustls::version::TLS13]);
        let mut client =
            rustls::ClientConnection::new(client_config, "hv.test".try_into().expect("name"))
                .expect("client");
        client
            .writer()
            .write_all(b"GET /api/host HTTP/1.1\r\nHost: hv.test\r\n\r\n")
            .expect("write");
        let mut got = Vec::new();
        pump(&mut client, &mut server, &mut got).expect("pump");
        assert!(got.is_empty());
        assert!(!server.is_handshaking());
        assert_eq!(
            client.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        assert_eq!(
            server.take_plaintext(),
            b"GET /api/host HTTP/1.1\r\nHost: hv.test\r\n\r\n"
        );
        // A response bigger than one record.
        let mut response = b"HTTP/1.1 200 OK\r\nContent-Length: 40000\r\n\r\n".to_vec();
        response.extend((0..40000u32).map(|i| (i % 251) as u8));
        server.send(&response).expect("send");
        server.close().expect("close");
        assert!(server.is_closed());
        pump(&mut client, &mut server, &mut got).expect("pump");
        assert!(
            got == response,
            "got {} bytes, want {}",
            got.len(),
            response.len()
        );
        // The client saw our close_notify: a further read is a clean EOF.
        assert!(matches!(client.reader().read(&mut [0u8; 1]), Ok(0)));
    }

    #[test]
    fn a_tls12_only_client_is_refused() {
        let pki = pki();
        let server_config = TlsConfig::new(pki.chain, pki.key).expect("config");
        // TLS 1.3 only twice over: in the configuration, and no TLS 1.2 suite in the
        // provider (rustls-rustcrypto's `tls12` feature stays off).
        assert!(server_config
            .crypto_provider()
            .cipher_suites
            .iter()
            .all(|s| s.version() == &rustls::version::TLS13));
        let mut server = TlsSession::new(server_config).expect("session");
        let client_config = client_config(&pki.ca_der, &[&rustls::version::TLS12]);
        let mut client =
            rustls::ClientConnection::new(client_config, "hv.test".try_into().expect("name"))
                .expect("client");
        let mut hello = Vec::new();
        client.write_tls(&mut hello).expect("hello");
        let err = server.receive(&hello).expect_err("TLS 1.2 must be refused");
        assert!(
            matches!(err, TlsError::Rustls(rustls::Error::PeerIncompatible(_))),
            "{err:?}"
        );
        assert!(server.is_closed());
        assert!(matches!(server.receive(b"more"), Err(TlsError::Closed)));
    }

    #[test]
    fn garbage_first_flight_is_an_error_not_a_panic() {
        let pki = pki();
        let server_config = TlsConfig::new(pki.chain, pki.key).expect("config");
        for garbage in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            &[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5][..],
            &[0xff; 300][..],
        ] {
            let mut server = TlsSession::new(server_config.clone()).expect("session");
            assert!(server.receive(garbage).is_err(), "{garbage:?}");
            assert!(server.is_closed());
        }
        // An incomplete record is not an error yet.
        let mut server = TlsSession::new(server_config).expect("session");
        assert!(server.receive(&[0x16, 0x03, 0x01]).is_ok());
        assert!(!server.is_closed());
    }

    #[test]
    fn bad_key_is_an_error() {
        let pki = pki();
        assert!(TlsConfig::new(pki.chain, b"not a key".to_vec()).is_err());
    }

    #[test]
    fn a_key_other_than_p256_is_refused_by_name() {
        let pki = pki();
        for alg in [&rcgen::PKCS_ECDSA_P384_SHA384, &rcgen::PKCS_ED25519] {
            let key = rcgen::KeyPair::generate_for(alg).expect("key");
            let err = TlsConfig::new(pki.chain.clone(), key.serialize_der())
                .expect_err("only P-256 keys load");
            assert!(err.to_string().contains("not an ECDSA P-256 key"), "{err}");
        }
    }

    /// A handshake with a ring client offering only `suite` and `group`: the server's
    /// provider must have both, and they are what is negotiated.
    fn handshake_with(
        suite: rustls::SupportedCipherSuite,
        group: &'static dyn rustls::crypto::SupportedKxGroup,
    ) -> Result<(), TlsError> {
        let pki = pki();
        let mut server =
            TlsSession::new(TlsConfig::new(pki.chain, pki.key).expect("config")).expect("session");
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(pki.ca_der))
            .expect("CA root");
        #[allow(deprecated)]
        let provider = rustls::crypto::CryptoProvider {
            cipher_suites: vec![suite],
            kx_groups: vec![group],
            ..rustls::crypto::ring::default_provider()
        };
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut client =
            rustls::ClientConnection::new(Arc::new(config), "hv.test".try_into().expect("name"))
                .expect("client");
        client.writer().write_all(b"ping").expect("write");
        pump(&mut client, &mut server, &mut Vec::new())?;
        assert!(!server.is_handshaking());
        assert_eq!(server.take_plaintext(), b"ping");
        assert_eq!(
            client.negotiated_cipher_suite().map(|s| s.suite()),
            Some(suite.suite())
        );
        assert_eq!(
            client.negotiated_key_exchange_group().map(|g| g.name()),
            Some(group.name())
        );
        Ok(())
    }

    #[test]
    fn every_offered_suite_and_group_completes_a_handshake() {
        use rustls::crypto::ring::{cipher_suite, kx_group};
        for suite in [
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ] {
            for group in [kx_group::X25519, kx_group::SECP256R1] {
                handshake_with(suite, group).expect("handshake");
            }
        }
    }

    #[test]
    fn a_client_without_a_common_suite_or_group_is_refused() {
        use rustls::crypto::ring::{cipher_suite, kx_group};
        let err = handshake_with(cipher_suite::TLS13_AES_256_GCM_SHA384, kx_group::X25519)
            .expect_err("no common suite");
        assert!(matches!(err, TlsError::Rustls(_)), "{err:?}");
        let err = handshake_with(cipher_suite::TLS13_AES_128_GCM_SHA256, kx_group::SECP384R1)
            .expect_err("no common group");
        assert!(matches!(err, TlsError::Rustls(_)), "{err:?}");
    }
}
