//! Headless Chromium driven over the W3C WebDriver protocol, for the web client's browser
//! scenario (docs/management.md). Debian's `chromium` and `chromium-driver` packages;
//! requests with `ureq`, bodies with `serde_json`.
//!
//! `cargo xtask browser-selftest` proves the whole chain against a page served here.

use base64::Engine as _;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The key under which WebDriver returns an element reference (W3C WebDriver, "elements").
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The Debian packages this needs.
const PACKAGES: [&str; 2] = ["chromium", "chromium-driver"];

/// `name` found on `PATH`, if it is there and executable.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Whether this process runs as root (`id -u` is 0).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Finds Chromium and ChromeDriver, installing Debian's `chromium` and `chromium-driver`
/// with apt-get if either is missing (as `ensure_qemu` installs QEMU; not being root, through
/// `sudo -n`, which fails rather than asks for a password). Returns (chromium, chromedriver).
pub fn ensure_chromium() -> Result<(PathBuf, PathBuf), String> {
    if let (Some(c), Some(d)) = (on_path("chromium"), on_path("chromedriver")) {
        return Ok((c, d));
    }
    eprintln!("xtask: chromium or chromedriver not found; installing Debian's chromium and chromium-driver");
    let root = is_root();
    let apt = |args: &[&str]| {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "apt-get"]);
            c
        };
        crate::build::run(cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive"))
    };
    let started = Instant::now();
    apt(&["update", "-q"])
        .and_then(|_| {
            let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
            args.extend(PACKAGES);
            apt(&args)
        })
        .map_err(|e| {
            format!(
                "{e}\nchromium is missing and could not be installed; install Debian's `chromium` and \
                 `chromium-driver` packages (as root: apt-get install chromium chromium-driver)"
            )
        })?;
    eprintln!(
        "xtask: installed chromium in {} s",
        started.elapsed().as_secs()
    );
    match (on_path("chromium"), on_path("chromedriver")) {
        (Some(c), Some(d)) => Ok((c, d)),
        _ => Err(
            "apt-get installed chromium and chromium-driver, but `chromium --version` or \
                  `chromedriver --version` still does not run"
                .into(),
        ),
    }
}

/// A WebDriver error or an unexpected answer.
type Res<T> = Result<T, String>;

/// A headless Chromium session behind a ChromeDriver process this owns.
pub struct Browser {
    driver: Child,
    /// `http://127.0.0.1:PORT/session/ID`.
    session: String,
    agent: ureq::Agent,
    quit: bool,
}

/// An element of the current page.
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

/// A port nobody listens on now (the OS picks it; it is free again when this returns).
fn free_port() -> Res<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free local port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free local port: {e}"))
}

/// Sends one WebDriver command; its `value` on success, its `error: message` otherwise.
fn send(agent: &ureq::Agent, method: &str, url: &str, body: Option<&Value>) -> Res<Value> {
    let req = agent.request(method, url);
    let result = match body {
        Some(b) => req
            .set("Content-Type", "application/json")
            .send_string(&b.to_string()),
        None => req.call(),
    };
    let text = match result {
        Ok(r) => r.into_string(),
        Err(ureq::Error::Status(code, r)) => {
            let text = r.into_string().unwrap_or_default();
            let v: Value = serde_json::from_str(&text).unwrap_or_default();
            let e = &v["value"];
            return Err(match (e["error"].as_str(), e["message"].as_str()) {
                (Some(err), Some(msg)) => format!("WebDriver {method} {url}: {err}: {msg}"),
                _ => format!("WebDriver {method} {url}: HTTP {code}: {text}"),
            });
        }
        Err(e) => return Err(format!("WebDriver {method} {url}: {e}")),
    }
    .map_err(|e| format!("WebDriver {method} {url}: reading the answer: {e}"))?;
    let mut v: Value = serde_json::from_str(&text)
        .map_err(|e| format!("WebDriver {method} {url}: not JSON ({e}): {text}"))?;
    Ok(v["value"].take())
}

impl Browser {
    /// Installs Chromium if needed, starts ChromeDriver on a free port and opens a headless
    /// session that accepts the host's certificate (signed by the install CA, which the
    /// browser does not know).
    pub fn start() -> Res<Browser> {
        let (chromium, chromedriver) = ensure_chromium()?;
        let port = free_port()?;
        let log = crate::build::target_dir().join("browser");
        std::fs::create_dir_all(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let log = log.join("chromedriver.log");
        let mut driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", chromedriver.display()))?;
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build();
        let base = format!("http://127.0.0.1:{port}");
        let ready = wait_ready(&agent, &base, &mut driver);
        let session = ready.and_then(|()| {
            let caps = json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "acceptInsecureCerts": true,
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1280,900"],
                },
            }}});
            let v = send(&agent, "POST", &format!("{base}/session"), Some(&caps))?;
            v["sessionId"]
                .as_str()
                .map(|id| format!("{base}/session/{id}"))
                .ok_or_else(|| format!("new session: no sessionId in {v}"))
        });
        match session {
            Ok(session) => Ok(Browser {
                driver,
                session,
                agent,
                quit: false,
            }),
            Err(e) => {
                let _ = driver.kill();
                let _ = driver.wait();
                Err(format!("{e} (ChromeDriver's log: {})", log.display()))
            }
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<&Value>) -> Res<Value> {
        send(
            &self.agent,
            method,
            &format!("{}{path}", self.session),
            body,
        )
    }

    /// Loads `url` and waits for it (WebDriver's page load strategy `normal`).
    pub fn goto(&self, url: &str) -> Res<()> {
        self.cmd("POST", "/url", Some(&json!({ "url": url })))
            .map(drop)
    }

    /// The first element matching the CSS selector `css`.
    pub fn find(&self, css: &str) -> Res<Element<'_>> {
        let v = self.cmd(
            "POST",
            "/element",
            Some(&json!({"using": "css selector", "value": css})),
        )?;
        match v[ELEMENT_KEY].as_str() {
            Some(id) => Ok(Element {
                browser: self,
                id: id.to_owned(),
            }),
            None => Err(format!("find `{css}`: no element reference in {v}")),
        }
    }

    /// Waits until an element matches `css` and its text satisfies `pred`, polling every
    /// 100 ms; the error after `timeout` says what the text last was.
    pub fn wait_for(
        &self,
        css: &str,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Res<Element<'_>> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.find(css).and_then(|e| e.text().map(|t| (e, t))) {
                Ok((e, t)) if pred(&t) => return Ok(e),
                Ok((_, t)) => format!("text {t:?}"),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "waited {} s for `{css}`: last {last}",
                    timeout.as_secs_f32()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Saves a PNG of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) -> Res<()> {
        let v = self.cmd("GET", "/screenshot", None)?;
        let b64 = v
            .as_str()
            .ok_or_else(|| format!("screenshot: not a string: {v}"))?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("screenshot: bad base64: {e}"))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// `result`, and on error a screenshot at `path` whose name is added to the message.
    pub fn or_screenshot<T>(&self, result: Res<T>, path: &Path) -> Res<T> {
        result.map_err(|e| match self.screenshot(path) {
            Ok(()) => format!("{e} (screenshot: {})", path.display()),
            Err(s) => format!("{e} (no screenshot: {s})"),
        })
    }

    /// Ends the session (closing Chromium) and stops ChromeDriver.
    pub fn quit(mut self) -> Res<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Res<()> {
        if self.quit {
            return Ok(());
        }
        self.quit = true;
        let r = self.cmd("DELETE", "", None).map(drop);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        r
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

impl Element<'_> {
    fn path(&self, what: &str) -> String {
        format!("/element/{}/{what}", self.id)
    }

    /// Clicks it (scrolled into view first, as WebDriver does).
    pub fn click(&self) -> Res<()> {
        self.browser
            .cmd("POST", &self.path("click"), Some(&json!({})))
            .map(drop)
    }

    /// Empties an input field.
    pub fn clear(&self) -> Res<()> {
        self.browser
            .cmd("POST", &self.path("clear"), Some(&json!({})))
            .map(drop)
    }

    /// Types `text` into it.
    pub fn send_keys(&self, text: &str) -> Res<()> {
        self.browser
            .cmd("POST", &self.path("value"), Some(&json!({ "text": text })))
            .map(drop)
    }

    /// Its rendered text.
    pub fn text(&self) -> Res<String> {
        let v = self.browser.cmd("GET", &self.path("text"), None)?;
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("element text: not a string: {v}"))
    }
}

/// Polls until ChromeDriver answers `/status` with `ready: true` (20 s at most).
fn wait_ready(agent: &ureq::Agent, base: &str, driver: &mut Child) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(v) = send(agent, "GET", &format!("{base}/status"), None) {
            if v["ready"] == true {
                return Ok(());
            }
        }
        if let Ok(Some(status)) = driver.try_wait() {
            return Err(format!("chromedriver exited at start ({status})"));
        }
        if Instant::now() >= deadline {
            return Err("chromedriver did not become ready in 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The self-test page: a login form whose button changes a `<span>` (a little later, so that
/// `wait_for` has something to wait for).
const PAGE: &str = r#"<!doctype html>
<html><head><title>selftest</title></head><body>
<form id="login" onsubmit="return false">
  <input id="user" name="user"> <input id="password" type="password">
  <button id="go" type="button">Log in</button>
</form>
<span id="status">logged out</span>
<script>
document.getElementById('go').addEventListener('click', function () {
  var u = document.getElementById('user').value;
  var p = document.getElementById('password').value;
  setTimeout(function () {
    document.getElementById('status').textContent =
      p === 'secret' ? 'welcome ' + u : 'wrong password';
  }, 300);
});
</script>
</body></html>
"#;

/// Answers every request on `l` with [`PAGE`] (`/`) or 404.
fn serve_page(l: TcpListener) {
    for s in l.incoming().flatten() {
        let _ = answer(s);
    }
}

fn answer(mut s: TcpStream) -> std::io::Result<()> {
    let mut r = BufReader::new(s.try_clone()?);
    let mut first = String::new();
    r.read_line(&mut first)?;
    let mut line = String::new();
    while r.read_line(&mut line)? > 2 {
        line.clear();
    }
    let (status, body) = match first.split_whitespace().nth(1) {
        Some("/") => ("200 OK", PAGE),
        _ => ("404 Not Found", "not found\n"),
    };
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// `cargo xtask browser-selftest`: drives the self-test page through a real headless
/// Chromium: types, clicks, waits for the text; checks a wait that must fail does, and that
/// a screenshot is a PNG.
pub fn selftest() -> Res<()> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot listen: {e}"))?;
    let url = format!(
        "http://{}/",
        l.local_addr().map_err(|e| format!("cannot listen: {e}"))?
    );
    std::thread::spawn(move || serve_page(l));
    let started = Instant::now();
    let b = Browser::start()?;
    let shot = crate::build::target_dir().join("browser/selftest-failure.png");
    let steps = || -> Res<()> {
        b.goto(&url)?;
        let status = b.find("#status")?;
        if status.text()? != "logged out" {
            return Err(format!("#status reads {:?} before login", status.text()?));
        }
        b.find("#user")?.send_keys("root")?;
        b.find("#password")?.send_keys("secret")?;
        b.find("#go")?.click()?;
        b.wait_for("#status", |t| t == "welcome root", Duration::from_secs(10))?;
        // A wait that cannot succeed must time out with the text it saw.
        match b.wait_for("#status", |t| t == "never", Duration::from_millis(500)) {
            Err(e) if e.contains("welcome root") => {}
            Err(e) => return Err(format!("failing wait gave an unexpected error: {e}")),
            Ok(_) => return Err("wait_for accepted a text its predicate refuses".into()),
        }
        if b.find("#no-such-element").is_ok() {
            return Err("find succeeded for a missing element".into());
        }
        let png = crate::build::target_dir().join("browser/selftest.png");
        b.screenshot(&png)?;
        let bytes = std::fs::read(&png).map_err(|e| format!("{}: {e}", png.display()))?;
        if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Err(format!("{} is not a PNG", png.display()));
        }
        Ok(())
    };
    b.or_screenshot(steps(), &shot)?;
    b.quit()?;
    println!(
        "browser-selftest ok ({:.1} s)",
        started.elapsed().as_secs_f32()
    );
    Ok(())
}
