//! A small HTTPS client for the management scenarios: requests to the hypervisor's API
//! through QEMU's `hostfwd`, trusting only the install-time CA, and raw bytes over TLS for
//! the malformed-request checks.

use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A response: status code and body.
#[derive(Clone, Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Body as text (lossy UTF-8).
    pub body: String,
}

/// Talks to `127.0.0.1:port`, which must present a certificate for `10.0.2.15` signed by
/// the CA in `ca_der`.
pub struct Client {
    port: u16,
    config: Arc<rustls::ClientConfig>,
}

impl Client {
    /// A client trusting only the CA certificate (DER) at `ca`.
    pub fn new(port: u16, ca: &Path) -> Result<Self, String> {
        let der = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(der))
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", ca.display()))?;
        // ring: no cmake or NASM to install; post-quantum key exchange (which rustls marks
        // ring's provider deprecated for lacking) is not what this test client checks.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            port,
            config: Arc::new(config),
        })
    }

    /// Sends `bytes` as they are over a fresh TLS connection and returns everything the
    /// server sent back until it closed (or 60 s passed).
    pub fn raw(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let name = ServerName::try_from("10.0.2.15").map_err(|e| e.to_string())?;
        let conn =
            rustls::ClientConnection::new(self.config.clone(), name).map_err(|e| e.to_string())?;
        let sock = TcpStream::connect(("127.0.0.1", self.port))
            .map_err(|e| format!("connect 127.0.0.1:{}: {e}", self.port))?;
        sock.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, sock);
        tls.write_all(bytes)
            .map_err(|e| format!("TLS write: {e}"))?;
        tls.flush().map_err(|e| format!("TLS flush: {e}"))?;
        let mut out = Vec::new();
        let mut buf = [0u8; 16384];
        loop {
            match tls.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                // A peer that closes without close_notify still sent its answer.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) if !out.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => {
                    break
                }
                Err(e) => return Err(format!("TLS read: {e}")),
            }
        }
        Ok(out)
    }

    /// One request (`Connection: close`); `token` goes in `Authorization: Bearer`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> Result<Reply, String> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 10.0.2.15\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(t) = token {
            req += &format!("Authorization: Bearer {t}\r\n");
        }
        req += "\r\n";
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        let out = self.raw(&bytes)?;
        parse_reply(&out).ok_or_else(|| {
            format!(
                "{method} {path}: not an HTTP response: {:?}",
                String::from_utf8_lossy(&out[..out.len().min(200)])
            )
        })
    }
}

/// Status and body of an HTTP/1.1 response (body after the blank line).
pub fn parse_reply(out: &[u8]) -> Option<Reply> {
    let text = String::from_utf8_lossy(out);
    let status = text
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse::<u16>()
        .ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some(Reply {
        status,
        body: body.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_and_garbage_does_not() {
        let r = parse_reply(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_str()), (401, "{}"));
        assert!(parse_reply(b"garbage").is_none());
        assert!(parse_reply(b"HTTP/1.1 4x1 what").is_none());
    }
}
