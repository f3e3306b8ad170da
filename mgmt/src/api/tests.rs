//! The API against a fake host.

use super::*;
use crate::auth::tests::{cheap_phc, fake_fill};
use crate::host::{Evaluation, HostSummary};
use std::string::ToString;
use std::sync::Mutex;
use std::vec;

/// One VM of the fake.
struct FakeVm {
    info: VmInfo,
    stats: VmStats,
    /// Everything the VM has written to its console.
    output: Vec<u8>,
    /// Everything written to its console input.
    input: Vec<u8>,
}

/// A host with VMs in memory.
struct FakeHost {
    vms: Mutex<Vec<FakeVm>>,
    expired: bool,
    /// `Failed` for every datastore write (create, delete).
    broken_store: bool,
}

fn vm(name: &str, state: VmState) -> FakeVm {
    FakeVm {
        info: VmInfo {
            name: name.to_string(),
            state,
            vcpus: 2,
            memory_mib: 512,
            autostart: false,
        },
        stats: VmStats {
            cpu_time_ms: 1234,
            exits: 99,
            memory_mib: if state == VmState::Stopped { 0 } else { 512 },
        },
        output: Vec::new(),
        input: Vec::new(),
    }
}

impl FakeHost {
    fn new() -> Self {
        let mut web = vm("web", VmState::Running);
        web.output = b"Linux version 6.1\nlogin: ".to_vec();
        Self {
            vms: Mutex::new(vec![
                web,
                vm("db", VmState::Stopped),
                vm("a b", VmState::Stopped),
            ]),
            expired: false,
            broken_store: false,
        }
    }

    fn with<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut FakeVm) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut vms = self.vms.lock().unwrap();
        let vm = vms
            .iter_mut()
            .find(|v| v.info.name == name)
            .ok_or_else(|| ApiError::NoSuchVm(name.to_string()))?;
        f(vm)
    }

    fn state(&self, name: &str) -> VmState {
        self.with(name, |v| Ok(v.info.state)).unwrap()
    }
}

fn need(vm: &FakeVm, state: VmState) -> Result<(), ApiError> {
    if vm.info.state == state {
        Ok(())
    } else {
        Err(ApiError::Conflict(format!(
            "VM \"{}\" is {:?}",
            vm.info.name, vm.info.state
        )))
    }
}

impl Host for FakeHost {
    fn summary(&self) -> HostSummary {
        HostSummary {
            board: "qemu-virt".to_string(),
            support: "supported".to_string(),
            cpus: 4,
            memory_mib: 4096,
            memory_free_mib: 3000,
            uptime_s: 3661,
            evaluation: Some(Evaluation {
                days_left: if self.expired { 0 } else { 170 },
                expired: self.expired,
            }),
        }
    }

    fn vms(&self) -> Vec<VmInfo> {
        self.vms
            .lock()
            .unwrap()
            .iter()
            .map(|v| v.info.clone())
            .collect()
    }

    fn stats(&self, name: &str) -> Result<VmStats, ApiError> {
        self.with(name, |v| Ok(v.stats.clone()))
    }

    fn start(&self, name: &str) -> Result<(), ApiError> {
        self.with(name, |v| {
            need(v, VmState::Stopped)?;
            if self.expired {
                return Err(ApiError::Forbidden(
                    "evaluation period ended on 2025-01-01".to_string(),
                ));
            }
            v.info.state = VmState::Running;
            Ok(())
        })
    }

    fn shutdown(&self, name: &str) -> Result<(), ApiError> {
        self.with(name, |v| {
            need(v, VmState::Running)?;
            v.info.state = VmState::ShuttingDown;
            Ok(())
        })
    }

    fn stop(&self, name: &str) -> Result<(), ApiError> {
        self.with(name, |v| {
            if v.info.state == VmState::Stopped {
                return need(v, VmState::Running);
            }
            v.info.state = VmState::Stopped;
            Ok(())
        })
    }

    fn reset(&self, name: &str) -> Result<(), ApiError> {
        self.with(name, |v| {
            need(v, VmState::Running)?;
            v.stats.cpu_time_ms = 0;
            Ok(())
        })
    }

    fn create(&self, toml: &str) -> Result<String, ApiError> {
        // A toy parser: `name = "X"` on a line after `[[vm]]`.
        if !toml.starts_with("[[vm]]\n") {
            return Err(ApiError::Invalid {
                message: "expected [[vm]]".to_string(),
                line: Some(1),
                column: Some(1),
            });
        }
        let name = toml
            .lines()
            .find_map(|l| l.strip_prefix("name = \"")?.strip_suffix('"'))
            .ok_or_else(|| ApiError::Invalid {
                message: "missing field `name`".to_string(),
                line: None,
                column: None,
            })?;
        if self.broken_store {
            return Err(ApiError::Failed("datastore write failed".to_string()));
        }
        let mut vms = self.vms.lock().unwrap();
        if vms.iter().any(|v| v.info.name == name) {
            return Err(ApiError::Conflict(format!("VM \"{name}\" exists")));
        }
        vms.push(vm(name, VmState::Stopped));
        Ok(name.to_string())
    }

    fn delete(&self, name: &str) -> Result<(), ApiError> {
        self.with(name, |v| need(v, VmState::Stopped))?;
        self.vms.lock().unwrap().retain(|v| v.info.name != name);
        Ok(())
    }

    fn console_read(&self, name: &str, since: u64) -> Result<(u64, Vec<u8>), ApiError> {
        self.with(name, |v| {
            let end = v.output.len() as u64;
            let from = since.min(end) as usize;
            Ok((end, v.output[from..].to_vec()))
        })
    }

    fn console_write(&self, name: &str, bytes: &[u8]) -> Result<(), ApiError> {
        self.with(name, |v| {
            v.input.extend_from_slice(bytes);
            Ok(())
        })
    }
}

fn api(host: &FakeHost) -> Api<'_> {
    Api::new(
        host,
        Auth::new("root", &cheap_phc("pw"), fake_fill).unwrap(),
    )
}

fn req<'a>(method: &'a str, path: &'a str, auth: Option<&'a str>, body: &'a [u8]) -> Request<'a> {
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    Request {
        method,
        path,
        query,
        authorization: auth,
        body,
    }
}

fn body(r: &Response) -> serde_json::Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&r.body)))
}

fn header<'r>(r: &'r Response, name: &str) -> Option<&'r str> {
    r.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Logs in and returns the `Authorization` value.
fn login(api: &mut Api<'_>, now_ms: u64) -> String {
    let r = api.handle(
        &req(
            "POST",
            "/api/login",
            None,
            br#"{"user":"root","password":"pw"}"#,
        ),
        now_ms,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.content_type, "application/json");
    let token = body(&r)["token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 64);
    format!("Bearer {token}")
}

/// Every route of the table (method, path, body).
const ROUTES: &[(&str, &str, &[u8])] = &[
    ("POST", "/api/logout", b""),
    ("GET", "/api/host", b""),
    ("GET", "/api/vms", b""),
    ("POST", "/api/vms", b"[[vm]]\nname = \"new\"\n"),
    ("GET", "/api/vms/web", b""),
    ("POST", "/api/vms/db/start", b""),
    ("POST", "/api/vms/web/shutdown", b""),
    ("POST", "/api/vms/web/stop", b""),
    ("POST", "/api/vms/web/reset", b""),
    ("DELETE", "/api/vms/db", b""),
    ("GET", "/api/vms/web/console?since=0", b""),
    ("POST", "/api/vms/web/console", b"ls\n"),
    ("GET", "/api/vms/web/stats", b""),
];

#[test]
fn every_route_needs_a_token() {
    let host = FakeHost::new();
    let mut api = api(&host);
    let good = login(&mut api, 0);
    let wrong = format!("Bearer {}", "0".repeat(64));
    let malformed = good.replacen("Bearer ", "Basic ", 1);
    let routes = ROUTES
        .iter()
        .copied()
        .chain([("GET", "/api/nope", &b""[..]), ("GET", "/api/login", b"")]);
    for (method, path, b) in routes {
        for auth in [None, Some(wrong.as_str()), Some(malformed.as_str())] {
            let r = api.handle(&req(method, path, auth, b), 1);
            assert_eq!(r.status, 401, "{method} {path} with {auth:?}");
            assert_eq!(header(&r, "WWW-Authenticate"), Some("Bearer"));
            assert!(body(&r)["error"].is_string());
        }
    }
    // Nothing happened to the host.
    assert_eq!(host.state("db"), VmState::Stopped);
    assert_eq!(host.state("web"), VmState::Running);
    assert_eq!(host.vms().len(), 3);
    // And the good token still works.
    let r = api.handle(&req("GET", "/api/host", Some(&good), b""), 2);
    assert_eq!(r.status, 200);
}

#[test]
fn every_route_answers_with_a_token() {
    for (method, path, b) in ROUTES {
        // A fresh API per route: logout ends the session, start/stop change states.
        let host = FakeHost::new();
        let mut api = api(&host);
        let auth = login(&mut api, 0);
        let r = api.handle(&req(method, path, Some(&auth), b), 1);
        let expected = if *path == "/api/vms" && *method == "POST" {
            201
        } else {
            200
        };
        assert_eq!(
            r.status,
            expected,
            "{method} {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.content_type, "application/json");
        assert_eq!(header(&r, "Cache-Control"), Some("no-store"));
        body(&r);
    }
}

#[test]
fn host_and_vm_answers_are_the_documented_json() {
    let host = FakeHost::new();
    let mut api = api(&host);
    let auth = login(&mut api, 0);
    let get = |api: &mut Api<'_>, path| body(&api.handle(&req("GET", path, Some(&auth), b""), 1));

    let h = get(&mut api, "/api/host");
    assert_eq!(
        h,
        serde_json::json!({
            "board": "qemu-virt", "support": "supported", "cpus": 4, "memory_mib": 4096,
            "memory_free_mib": 3000, "uptime_s": 3661,
            "evaluation": {"days_left": 170, "expired": false}
        })
    );
    let vms = get(&mut api, "/api/vms");
    assert_eq!(
        vms[0],
        serde_json::json!({"name": "web", "state": "running", "vcpus": 2, "memory_mib": 512,
                           "autostart": false})
    );
    assert_eq!(vms.as_array().unwrap().len(), 3);
    assert_eq!(vms[1]["state"], "stopped");

    let one = get(&mut api, "/api/vms/web");
    assert_eq!(
        one,
        serde_json::json!({"name": "web", "state": "running", "vcpus": 2, "memory_mib": 512,
                           "autostart": false,
                           "stats": {"cpu_time_ms": 1234, "exits": 99, "memory_mib": 512}})
    );
    // Percent-encoded names.
    assert_eq!(get(&mut api, "/api/vms/a%20b")["name"], "a b");
    assert_eq!(
        get(&mut api, "/api/vms/web/stats"),
        serde_json::json!({"cpu_time_ms": 1234, "exits": 99, "memory_mib": 512})
    );
}

#[test]
fn lifecycle_actions_reach_the_host() {
    let host = FakeHost::new();
    let mut api = api(&host);
    let auth = login(&mut api, 0);
    let mut post = |path: &str| api.handle(&req("POST", path, Some(&auth), b""), 1);

    assert_eq!(post("/api/vms/db/start").status, 200);
    assert_eq!(host.state("db"), VmState::Running);
    assert_eq!(post("/api/vms/db/shutdown").status, 200);
    assert_eq!(host.state("db"), VmState::ShuttingDown);
    assert_eq!(post("/api/vms/db/stop").status, 200);
    assert_eq!(host.state("db"), VmState::Stopped);
    // Conflicts are 409 with the host's message.
    let r = post("/api/vms/db/stop");
    assert_eq!(r.status, 409);
    assert_eq!(body(&r)["error"], "VM \"db\" is Stopped");
    assert_eq!(post("/api/vms/web/reset").status, 200);
    assert_eq!(host.stats("web").unwrap().cpu_time_ms, 0);

    let r = api.handle(&req("DELETE", "/api/vms/web", Some(&auth), b""), 2);
    assert_eq!(r.status, 409);
    let r = api.handle(&req("DELETE", "/api/vms/db", Some(&auth), b""), 2);
    assert_eq!(r.status, 200);
    assert!(host.vms().iter().all(|v| v.name != "db"));
}

#[test]
fn unknown_vm_is_404_on_every_vm_route() {
    let host = FakeHost::new();
    let mut api = api(&host);
    let auth = login(&mut api, 0);
    for (method, path) in [
        ("GET", "/api/vms/ghost"),
        ("DELETE", "/api/vms/ghost"),
        ("POST", "/api/vms/ghost/start"),
        ("POST", "/api/vms/ghost/shutdown"),
        ("POST", "/api/vms/ghost/stop"),
        ("POST", "/api/vms/ghost/reset"),
        ("GET", "/api/vms/ghost/console"),
        ("POST", "/api/vms/ghost/console"),
        ("GET", "/api/vms/ghost/stats"),
    ] {
        let r = api.handle(&req(method, path, Some(&auth), b""), 1);
        assert_eq!(r.status, 404, "{method} {path}");
        assert_eq!(body(&r)["error"], "no VM named \"ghost\"");
    }
}

#[test]
fn unknown_paths_404_and_wrong_methods_405() {
    let host = FakeHost::new();
    let mut api = api(&host);
    let auth = login(&mut api, 0);
    for path in [
        "/api/",
        "/api",
        "/api/vms/",
        "/api/vms//start",
        "/api/vms/web/explode",
        "/api/vms/web/start/now",
        "/api/hosts",
    ] {
        let r = api.handle(&req("GET", path, Some(&auth), b""), 1);
        assert_eq!(r.status, 404, "{path}");
    }
    for (method, path, allow) in [
        ("GET", "/api/login", "POST"),
        ("GET", "/api/logout", "POST"),
        ("POST", "/api/host", "GET"),
        ("DELETE", "/api/vms", "GET, POST"),
        ("POST", "/api/vms/web", "GET, DELETE"),
        ("GET", "/api/vms/web/start", "POST"),
        ("DELETE", "/api/vms/web/console", "GET, POST"),
        ("POST", "/api/vms/web/stats", "GET"),
    ] {
        let r = api.handle(&req(method, path, Some(&auth), b""), 1);
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(header(&r, "Allow"), Some(allow), "{method} {path}");
    }
    // A bad escape in a name is a 400, not a panic.
    for path in [
        "/api/vms/a%2/start",
        "/api/vms/%zz",
        "/api/vms/%ff%fe/stats",
        "/api/vms/%",
    ] {
        let r = api.handle(&req("POST", path, Some(&auth), b""), 1);
        let r = if r.status == 405 {
            api.handle(&req("GET", path, Some(&auth), b""), 1)
        } else {
            r
        };
        assert_eq!(r.status, 400, "{path}");
    }
}

#[test]
fn login_logout_and_malformed_login_bodies() {
    let host = FakeHost::new();
    let mut api = api(&host);
    for bad in [
        &b""[..],
        b"{",
        b"user=root&password=pw",
        br#"{"user":"root"}"#,
        br#"{"user":1,"password":"pw"}"#,
        b"\xff\xfe",
        b"[]",
    ] {
        let r = api.handle(&req("POST", "/api/login", None, bad), 0);
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(bad));
        assert!(body(&r)["error"].as_str().unwrap().contains("login body"));
    }
    // Malformed bodies do not count as failures.
    let auth = login(&mut api, 0);
    assert_eq!(api.auth().sessions().len(), 1);
    let r = api.handle(&req("POST", "/api/logout", Some(&auth), b""), 1);
    assert_eq!(r.status, 200);
    assert_eq!(api.auth().sessions().len(), 0);
    let r = api.handle(&req("GET", "/api/vms", Some(&auth), b""), 2);
    assert_eq!(r.status, 401);
}

#[test]
fn failed_logins_back_off_with_429() {
    let host = FakeHost::new();
    let mut api = api(&host);
    let wrong = br#"{"user":"root","password":"guess"}"#;
    let right = br#"{"user":"root","password":"pw"}"#;

    let r = api.handle(&req("POST", "/api/login", None, wrong), 10_000);
    assert_eq!(r.status, 401);
    assert_eq!(header(&r, "Retry-After"), Some("1"));
    assert_eq!(body(&r)["error"], "wrong user or password");

    let r = api.handle(&req("POST", "/api/login", None, right), 10_500);
    assert_eq!(r.status, 429);
    assert_eq!(header(&r, "Retry-After"), Some("1"));

    let r = api.handle(&req("POST", "/api/login", None, wrong), 11_000);
    assert_eq!(r.status, 401);
    assert_eq!(header(&r, "Retry-After"), Some("2"));
    let r = api.handle(&req("POST", "/api/login", None, right), 11_001);
    assert_eq!(r.status, 429);
    assert_eq!(header(&r, "Retry-After"), Some("2"));
    assert!(body(&r)["error"].as_str().unwrap().contains("2 s"));

    // After the back-off the right password works.
    login(&mut api, 13_000);
}

#[test]
fn create_answers_201_or_400_with_the_place() {
    let host = FakeHost::new();
    let mut api = api(&host);
    let auth = login(&mut api, 0);
    let mut post = |b: &[u8]| api.handle(&req("POST", "/api/vms", Some(&auth), b), 1);

    let r = post(b"[[vm]]\nname = \"mail\"\n");
    assert_eq!(r.status, 201);
    assert_eq!(body(&r), serde_json::json!({"name": "mail"}));
    assert!(host.vms().iter().any(|v| v.name == "mail"));

    let r = post(b"[vm]\n");
    assert_eq!(r.status, 400);
    assert_eq!(
        body(&r),
        serde_json::json!({"error": "expected [[vm]]", "line": 1, "column": 1})
    );
    // Without a place, no line or column.
    let r = post(b"[[vm]]\n");
    assert_eq!(r.status, 400);
    assert_eq!(
        body(&r),
        serde_json::json!({"error": "missing field `name`"})
    );
    // Not UTF-8.
    let r = post(b"[[vm]]\nname = \"\xff\"\n");
    assert_eq!(r.status, 400);
    assert!(body(&r)["error"].as_str().unwrap().contains("UTF-8"));
    // Exists already.
    assert_eq!(post(b"[[vm]]\nname = \"web\"\n").status, 409);
}

#[test]
fn forbidden_and_failed_map_to_403_and_500() {
    let mut host = FakeHost::new();
    host.expired = true;
    host.broken_store = true;
    let mut api = api(&host);
    let auth = login(&mut api, 0);
    let r = api.handle(&req("POST", "/api/vms/db/start", Some(&auth), b""), 1);
    assert_eq!(r.status, 403);
    assert_eq!(body(&r)["error"], "evaluation period ended on 2025-01-01");
    let r = api.handle(
        &req("POST", "/api/vms", Some(&auth), b"[[vm]]\nname = \"x\"\n"),
        1,
    );
    assert_eq!(r.status, 500);
    assert_eq!(body(&r)["error"], "datastore write failed");
}

#[test]
fn console_reads_from_an_offset_and_writes_input() {
    let host = FakeHost::new();
    let mut api = api(&host);
    let auth = login(&mut api, 0);
    let mut get = |path: &str| api.handle(&req("GET", path, Some(&auth), b""), 1);

    let all = get("/api/vms/web/console");
    assert_eq!(all.status, 200);
    assert_eq!(
        body(&all),
        serde_json::json!({"next": 25, "data": "Linux version 6.1\nlogin: "})
    );
    assert_eq!(
        body(&get("/api/vms/web/console?since=18")),
        serde_json::json!({"next": 25, "data": "login: "})
    );
    assert_eq!(
        body(&get("/api/vms/web/console?since=25")),
        serde_json::json!({"next": 25, "data": ""})
    );
    for bad in [
        "since=abc",
        "since=-1",
        "since=+1",
        "since= 1",
        "since=",
        "since",
        "since=1&since=2",
        "from=1",
        "since=99999999999999999999999",
    ] {
        let r = get(&format!("/api/vms/web/console?{bad}"));
        assert_eq!(r.status, 400, "{bad}");
        assert!(body(&r)["error"].is_string());
    }

    let r = api.handle(
        &req("POST", "/api/vms/web/console", Some(&auth), b"root\n"),
        1,
    );
    assert_eq!(r.status, 200);
    let input = host.with("web", |v| Ok(v.input.clone())).unwrap();
    assert_eq!(input, b"root\n");
}

#[test]
fn console_bytes_are_decoded_lossily() {
    let host = FakeHost::new();
    // "é" whole, then "€" (e2 82 ac) cut after two bytes, then a stray 0xff.
    host.with("web", |v| {
        v.output = b"\xc3\xa9 \xff \xe2\x82".to_vec();
        Ok(())
    })
    .unwrap();
    let mut api = api(&host);
    let auth = login(&mut api, 0);
    let r = api.handle(&req("GET", "/api/vms/web/console", Some(&auth), b""), 1);
    assert_eq!(
        body(&r),
        serde_json::json!({"next": 7, "data": "é \u{fffd} \u{fffd}"})
    );
}

#[test]
fn web_client_is_served_without_a_token() {
    let host = FakeHost::new();
    let mut api = api(&host);
    for (path, ty, content) in [
        ("/", "text/html; charset=utf-8", INDEX_HTML),
        ("/app.js", "text/javascript; charset=utf-8", APP_JS),
        ("/app.css", "text/css; charset=utf-8", APP_CSS),
    ] {
        let r = api.handle(&req("GET", path, None, b""), 0);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.content_type, ty);
        assert_eq!(r.body, content.as_bytes());
        assert!(!r.body.is_empty());
        assert_eq!(header(&r, "Cache-Control"), Some("no-cache"));
        assert_eq!(header(&r, "X-Content-Type-Options"), Some("nosniff"));
        assert!(header(&r, "Content-Security-Policy")
            .unwrap()
            .contains("default-src 'self'"));
        let r = api.handle(&req("POST", path, None, b""), 0);
        assert_eq!(r.status, 405);
    }
    for path in [
        "/index.html",
        "/app.js/",
        "/favicon.ico",
        "/../etc/passwd",
        "//",
        "",
    ] {
        let r = api.handle(&req("GET", path, None, b""), 0);
        assert_eq!(r.status, 404, "{path}");
    }
}

#[test]
fn index_references_the_script_and_the_ids_the_browser_test_uses() {
    assert!(INDEX_HTML.contains(r#"<script src="/app.js""#));
    assert!(INDEX_HTML.contains(r#"<link rel="stylesheet" href="/app.css""#));
    for id in [
        "user", "password", "login", "host", "vms", "console", "message",
    ] {
        assert!(
            INDEX_HTML.contains(&format!("id=\"{id}\"")),
            "index.html lacks id=\"{id}\""
        );
    }
    // The script builds the VM rows with these.
    for needle in [
        "data-vm",
        "data-action",
        "'state'",
        "sessionStorage",
        "since=",
    ] {
        assert!(APP_JS.contains(needle), "app.js lacks {needle}");
    }
    // No external fetches: every URL the client names is same-origin.
    for text in [INDEX_HTML, APP_JS, APP_CSS] {
        assert!(!text.contains("http://") && !text.contains("https://"));
        assert!(!text.contains("//cdn"));
    }
}
