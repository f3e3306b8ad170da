//! HTTPS requests to the management API and the errors they come back with.

use crate::Error;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A failed API call, before it is turned into a message.
#[derive(Debug)]
pub enum Failure {
    /// The host answered with an error status.
    Status {
        /// The HTTP status code.
        code: u16,
        /// The answer's `"error"` field, if it was a JSON object with one.
        error: Option<String>,
        /// The answer's `"line"` field (1-based), for TOML errors.
        line: Option<u64>,
        /// The answer's `"column"` field (1-based), for TOML errors.
        column: Option<u64>,
    },
    /// The host could not be reached, TLS failed, or the answer was unreadable.
    Transport(String),
}

impl Failure {
    /// The message for a failure with no more specific handling: 401 means no (valid) token,
    /// else the API's `"error"` field, else the status code.
    pub fn into_error(self) -> Error {
        match self {
            Failure::Status { code: 401, .. } => Error::msg("not logged in (run hvctl login)"),
            Failure::Status { error: Some(e), .. } => Error::Msg(e),
            Failure::Status { code, .. } => Error::Msg(format!("the host answered HTTP {code}")),
            Failure::Transport(e) => Error::Msg(e),
        }
    }
}

/// A connection to one host's API: its base URL, the TLS trust and the session token.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

/// What a request sends.
pub enum Body<'a> {
    /// No body.
    None,
    /// A JSON document.
    Json(&'a str),
    /// A TOML document (`POST /api/vms`).
    Toml(&'a str),
    /// Raw bytes (console input).
    Bytes(&'a [u8]),
}

impl Client {
    /// A client of `host` (see [`base_url`]) trusting only the DER (or PEM) certificate in
    /// `ca`, or the public web roots without it. Certificates are always verified.
    pub fn new(host: &str, ca: Option<&Path>, token: Option<String>) -> Result<Client, Error> {
        let base = base_url(host)?;
        let mut roots = rustls::RootCertStore::empty();
        match ca {
            Some(path) => roots.add(read_ca(path)?).map_err(|e| {
                Error::Msg(format!(
                    "{}: not a usable CA certificate: {e}",
                    path.display()
                ))
            })?,
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        // ring (as ureq 2 itself uses): it builds with a C compiler alone. Deprecated in
        // rustls 0.23.48 for lacking post-quantum key exchange, which the host's TLS
        // (rustls-rustcrypto) does not offer either.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Msg(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let agent = ureq::AgentBuilder::new()
            .tls_config(Arc::new(config))
            .timeout_connect(Duration::from_secs(10))
            // A failed login is answered after up to 8 s on purpose.
            .timeout(Duration::from_secs(60))
            .redirects(0)
            .user_agent(concat!("hvctl/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Client { agent, base, token })
    }

    /// The base URL requests go to (`https://HOST:PORT`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends `method path` with `body`; the answer's body on 2xx.
    pub fn call(&self, method: &str, path: &str, body: Body<'_>) -> Result<String, Failure> {
        let mut req = self.agent.request(method, &format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let result = match body {
            Body::None => req.call(),
            Body::Json(s) => req.set("Content-Type", "application/json").send_string(s),
            Body::Toml(s) => req.set("Content-Type", "application/toml").send_string(s),
            Body::Bytes(b) => req
                .set("Content-Type", "application/octet-stream")
                .send_bytes(b),
        };
        match result {
            Ok(resp) => resp.into_string().map_err(|e| {
                Failure::Transport(format!("reading the answer from {}: {e}", self.base))
            }),
            Err(ureq::Error::Status(code, resp)) => {
                let body = resp.into_string().unwrap_or_default();
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                Err(Failure::Status {
                    code,
                    error: v.get("error").and_then(|e| e.as_str()).map(str::to_owned),
                    line: v.get("line").and_then(|l| l.as_u64()),
                    column: v.get("column").and_then(|c| c.as_u64()),
                })
            }
            Err(ureq::Error::Transport(t)) => Err(Failure::Transport(format!(
                "cannot reach {}: {t}",
                self.base
            ))),
        }
    }

    /// `call`, with failures turned into their generic message.
    pub fn call_or_err(&self, method: &str, path: &str, body: Body<'_>) -> Result<String, Error> {
        self.call(method, path, body).map_err(Failure::into_error)
    }

    /// GETs `path` and decodes the JSON answer as `T`.
    pub fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        decode(&self.call_or_err("GET", path, Body::None)?)
    }
}

/// Decodes a JSON answer, with a message that says the host sent something unexpected.
pub fn decode<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, Error> {
    serde_json::from_str(body).map_err(|e| {
        Error::Msg(format!(
            "unexpected answer from the host ({e}): {}",
            excerpt(body)
        ))
    })
}

fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(200).collect();
    if out.len() < s.len() {
        out.push_str("...");
    }
    out
}

fn read_ca(path: &Path) -> Result<CertificateDer<'static>, Error> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::Msg(format!(
            "cannot read CA certificate {}: {e}",
            path.display()
        ))
    })?;
    if bytes.starts_with(b"-----BEGIN") {
        return CertificateDer::from_pem_slice(&bytes)
            .map_err(|e| Error::Msg(format!("{}: no PEM certificate: {e}", path.display())));
    }
    Ok(CertificateDer::from(bytes))
}

/// The API's base URL from `--host`: `https://HOST[:PORT]`, or `HOST[:PORT]` taken as https.
/// Plain http is refused (the password and token would travel in clear), as is a path.
pub fn base_url(host: &str) -> Result<String, Error> {
    let h = host.trim();
    let rest = if let Some(rest) = h.strip_prefix("https://") {
        rest.trim_end_matches('/')
    } else if h.starts_with("http://") {
        return Err(Error::msg(
            "--host: the API is HTTPS only; use https://HOST[:PORT]",
        ));
    } else if h.contains("://") {
        return Err(Error::Msg(format!(
            "--host `{host}`: only https:// URLs are supported"
        )));
    } else {
        h.trim_end_matches('/')
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) || rest.contains(char::is_whitespace)
    {
        return Err(Error::Msg(format!(
            "--host `{host}`: give https://HOST[:PORT] with no path"
        )));
    }
    Ok(format!("https://{rest}"))
}

/// `name` as one URL path segment: unreserved characters as they are, others %-encoded.
/// Empty names and `.`/`..` (which URL parsers fold away) are refused.
pub fn segment(name: &str) -> Result<String, Error> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(Error::Msg(format!("`{name}` is not a VM name")));
    }
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            base_url("https://10.0.2.15:8443/").unwrap(),
            "https://10.0.2.15:8443"
        );
        assert_eq!(base_url("host.lan").unwrap(), "https://host.lan");
        assert_eq!(base_url("[::1]:443").unwrap(), "https://[::1]:443");
        assert!(base_url("http://host").is_err());
        assert!(base_url("ftp://host").is_err());
        assert!(base_url("https://host/api").is_err());
        assert!(base_url("https://").is_err());
        assert!(base_url("").is_err());
    }

    #[test]
    fn segments() {
        assert_eq!(segment("web-1.a_b").unwrap(), "web-1.a_b");
        assert_eq!(segment("a/b c").unwrap(), "a%2Fb%20c");
        assert_eq!(segment("é").unwrap(), "%C3%A9");
        assert!(segment("..").is_err());
        assert!(segment(".").is_err());
        assert!(segment("").is_err());
    }

    #[test]
    fn failures() {
        let s = |code, error: Option<&str>| Failure::Status {
            code,
            error: error.map(str::to_owned),
            line: None,
            column: None,
        };
        assert_eq!(
            s(401, Some("bad token")).into_error().to_string(),
            "hvctl: not logged in (run hvctl login)"
        );
        assert_eq!(
            s(403, Some("expired")).into_error().to_string(),
            "hvctl: expired"
        );
        assert_eq!(
            s(500, None).into_error().to_string(),
            "hvctl: the host answered HTTP 500"
        );
    }

    #[test]
    fn ca_must_be_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ca.der");
        std::fs::write(&f, b"not a certificate").unwrap();
        let e = Client::new("https://h", Some(&f), None).err().unwrap();
        assert!(e.to_string().contains("not a usable CA certificate"), "{e}");
        let missing = dir.path().join("missing.der");
        let e = Client::new("https://h", Some(&missing), None)
            .err()
            .unwrap();
        assert!(e.to_string().contains("cannot read CA certificate"), "{e}");
    }
}
