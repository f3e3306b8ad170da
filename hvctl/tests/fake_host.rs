//! Runs the `hvctl` binary against a fake management API: an HTTPS server in this process
//! (rustls, certificate from a throwaway rcgen CA) answering canned JSON.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "tok-123";
const PASSWORD: &str = "s3cret pass";

/// A request the fake host received.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    auth: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

struct Fake {
    url: String,
    ca: PathBuf,
    /// XDG_CONFIG_HOME and the other files of one test.
    dir: tempfile::TempDir,
    seen: Arc<Mutex<Vec<Req>>>,
}

fn answer(r: &Req) -> (u16, String) {
    if r.method == "POST" && r.path == "/api/login" {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        return if v["user"] == "root" && v["password"] == PASSWORD {
            (200, format!(r#"{{"token":"{TOKEN}"}}"#))
        } else {
            (401, r#"{"error":"wrong user or password"}"#.into())
        };
    }
    if r.auth.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        return (401, r#"{"error":"missing or expired token"}"#.into());
    }
    match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/api/logout") => (200, "{}".into()),
        ("GET", "/api/vms") => (
            200,
            r#"[{"name":"web","state":"running","vcpus":2,"memory_mib":512,"autostart":true},
                {"name":"database","state":"stopped","vcpus":16,"memory_mib":16384,"autostart":false}]"#
                .into(),
        ),
        ("POST", "/api/vms") => {
            if String::from_utf8_lossy(&r.body).contains("vcpus = \"two\"") {
                (
                    400,
                    r#"{"error":"invalid type: string \"two\", expected u32","line":3,"column":9}"#
                        .into(),
                )
            } else {
                (201, r#"{"name":"web"}"#.into())
            }
        }
        ("POST", "/api/vms/old/start") => (
            403,
            r#"{"error":"evaluation period ended on 2025-01-01: install a licensed build"}"#.into(),
        ),
        ("POST", "/api/vms/web/start") => (200, "{}".into()),
        ("GET", "/api/vms/web/console?since=0") => (200, r#"{"next":6,"data":"hello\n"}"#.into()),
        ("GET", p) if p.starts_with("/api/vms/web/console?since=") => {
            (200, r#"{"next":6,"data":""}"#.into())
        }
        ("POST", "/api/vms/web/console") => (200, "{}".into()),
        _ => (404, format!(r#"{{"error":"no such thing: {}"}}"#, r.path)),
    }
}

fn read_request(s: &mut impl Read) -> Option<Req> {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let (mut auth, mut content_type, mut len) = (None, None, 0);
    loop {
        line.clear();
        r.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        match k.to_ascii_lowercase().as_str() {
            "authorization" => auth = Some(v.trim().to_owned()),
            "content-type" => content_type = Some(v.trim().to_owned()),
            "content-length" => len = v.trim().parse().ok()?,
            _ => {}
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Req {
        method,
        path,
        auth,
        content_type,
        body,
    })
}

fn serve(tls: Arc<rustls::ServerConfig>, tcp: TcpStream, seen: Arc<Mutex<Vec<Req>>>) {
    let Ok(conn) = rustls::ServerConnection::new(tls) else {
        return;
    };
    let mut s = rustls::StreamOwned::new(conn, tcp);
    // A client that rejects the certificate fails the handshake here.
    let Some(req) = read_request(&mut s) else {
        return;
    };
    let (code, body) = answer(&req);
    seen.lock().unwrap().push(req);
    let _ = write!(
        s,
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.conn.send_close_notify();
    let _ = s.flush();
}

fn start() -> Fake {
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let ca_path = dir.path().join("test.ca.der");
    std::fs::write(&ca_path, ca.der()).unwrap();

    #[allow(deprecated)] // see hvctl's client: ring, without post-quantum groups
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let tls = Arc::new(tls);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (tls, seen) = (tls.clone(), seen2.clone());
            std::thread::spawn(move || serve(tls, tcp, seen));
        }
    });
    Fake {
        url: format!("https://127.0.0.1:{port}"),
        ca: ca_path,
        dir,
        seen,
    }
}

impl Fake {
    /// `hvctl --host URL --ca CA ARGS`, with the test's own config directory.
    fn hvctl(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hvctl"));
        c.args(["--host", &self.url, "--ca"])
            .arg(&self.ca)
            .args(args)
            .env_remove("HVCTL_TOKEN")
            .env_remove("HVCTL_HOST")
            .env_remove("HVCTL_CA")
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("HOME", self.dir.path())
            .stdin(Stdio::null());
        c
    }

    fn token_file(&self) -> PathBuf {
        self.dir.path().join("config/hvctl/token")
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn login(&self) {
        let pw = self.file("pw", &format!("{PASSWORD}\n"));
        let out = self.hvctl(&["login", "--password-file", path(&pw)]);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    fn seen(&self) -> Vec<Req> {
        self.seen.lock().unwrap().clone()
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails_with(o: &Output, message: &str) {
    assert_eq!(o.status.code(), Some(1), "{}", stderr(o));
    assert_eq!(stderr(o), format!("{message}\n"));
}

#[test]
fn login_list_logout() {
    let f = start();
    f.login();
    assert_eq!(
        std::fs::read_to_string(f.token_file()).unwrap(),
        format!("{TOKEN}\n")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(f.token_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let login = &f.seen()[0];
    assert_eq!(login.content_type.as_deref(), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&login.body).unwrap();
    assert_eq!(body, serde_json::json!({"user":"root","password":PASSWORD}));

    let out = f.hvctl(&["vm", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "NAME      STATE    VCPUS  MEMORY     AUTOSTART\n\
         web       running  2      512 MiB    yes\n\
         database  stopped  16     16384 MiB  no\n"
    );
    assert_eq!(f.seen()[1].auth.as_deref(), Some("Bearer tok-123"));

    let out = f.hvctl(&["logout"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!f.token_file().exists());
    let last = f.seen().pop().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        ("POST", "/api/logout")
    );
    fails_with(
        &f.hvctl(&["vm", "list"]),
        "hvctl: not logged in (run hvctl login)",
    );
}

#[test]
fn wrong_password() {
    let f = start();
    let pw = f.file("pw", "guess\n");
    fails_with(
        &f.hvctl(&["login", "--password-file", path(&pw)]),
        "hvctl: login failed: wrong user or password",
    );
    assert!(!f.token_file().exists());
}

#[test]
fn unauthorized_is_not_logged_in() {
    let f = start();
    fails_with(
        &f.hvctl(&["vm", "list"]),
        "hvctl: not logged in (run hvctl login)",
    );
    // A stale token from the environment is sent, and refused the same way.
    let out = f
        .cmd(&["vm", "start", "web"])
        .env("HVCTL_TOKEN", "stale")
        .output()
        .unwrap();
    fails_with(&out, "hvctl: not logged in (run hvctl login)");
    assert_eq!(f.seen()[1].auth.as_deref(), Some("Bearer stale"));
}

#[test]
fn create_reports_line_and_column() {
    let f = start();
    f.login();
    let bad = f.file("bad.toml", "[[vm]]\nname = \"web\"\nvcpus = \"two\"\n");
    let out = f.hvctl(&["vm", "create", path(&bad)]);
    fails_with(
        &out,
        &format!(
            "{}:3:9: invalid type: string \"two\", expected u32",
            bad.display()
        ),
    );
    let sent = f.seen().pop().unwrap();
    assert_eq!(sent.content_type.as_deref(), Some("application/toml"));
    assert_eq!(sent.body, std::fs::read(&bad).unwrap());

    let good = f.file("good.toml", "[[vm]]\nname = \"web\"\nvcpus = 2\n");
    let out = f.hvctl(&["vm", "create", path(&good)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "web: created\n");
}

#[test]
fn api_errors_are_printed() {
    let f = start();
    f.login();
    fails_with(
        &f.hvctl(&["vm", "start", "old"]),
        "hvctl: evaluation period ended on 2025-01-01: install a licensed build",
    );
    fails_with(
        &f.hvctl(&["vm", "stop", "nope"]),
        "hvctl: no such thing: /api/vms/nope/stop",
    );
    // A name is one path segment, whatever it holds.
    fails_with(
        &f.hvctl(&["vm", "stop", "a/../b"]),
        "hvctl: no such thing: /api/vms/a%2F..%2Fb/stop",
    );
    let out = f.hvctl(&["vm", "start", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn only_the_given_ca_is_trusted() {
    let f = start();
    let pw = f.file("pw", PASSWORD);
    let out = Command::new(env!("CARGO_BIN_EXE_hvctl"))
        .args(["--host", &f.url, "login", "--password-file", path(&pw)])
        .env_remove("HVCTL_CA")
        .env("XDG_CONFIG_HOME", f.dir.path().join("config"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.starts_with(&format!("hvctl: cannot reach {}", f.url)),
        "{e}"
    );
    assert!(e.contains("UnknownIssuer"), "{e}");
    assert!(!f.token_file().exists());
}

#[test]
fn console_prints_and_follows() {
    let f = start();
    f.login();
    let out = f.hvctl(&["vm", "console", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello\n");

    let mut child = f
        .cmd(&["vm", "console", "web", "--follow"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"uname -a\n")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let done = |seen: &[Req]| {
        let input = seen.iter().any(|r| {
            r.method == "POST" && r.path == "/api/vms/web/console" && r.body == b"uname -a\n"
        });
        let polls = seen
            .iter()
            .filter(|r| r.path == "/api/vms/web/console?since=6")
            .count();
        input && polls >= 2
    };
    while !done(&f.seen()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(done(&f.seen()), "{:?}", f.seen());
    assert_eq!(stdout(&out), "hello\n");
}
