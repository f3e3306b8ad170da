//! The management API: routing, sessions and JSON over a [`Host`], and the web client's
//! static files. See the table in `docs/management.md`.
//!
//! The HTTP layer parses a request into a [`Request`] and writes the [`Response`]
//! [`Api::handle`] gives back. Nothing here panics on input: every malformed request gets a
//! 4xx answer with a JSON `{"error": "..."}` body.
//!
//! Every `/api/` path but `POST /api/login` needs `Authorization: Bearer TOKEN`; without a
//! good token the answer is 401 with `WWW-Authenticate: Bearer`, whatever the path (so an
//! unauthenticated client learns nothing of the routes). Then unknown paths get 404 and a
//! known path with another method 405 with `Allow`.
//!
//! Console output (`GET /api/vms/NAME/console?since=N`) is bytes; it is sent as a JSON
//! string decoded lossily as UTF-8: a byte that is not valid UTF-8, including half of a
//! multi-byte character cut at the end of one read, becomes U+FFFD. `next` is always the
//! offset after the last byte read, so nothing is sent twice.

use crate::auth::{Auth, LoginError};
use crate::host::{ApiError, Host, VmInfo, VmState, VmStats};
use crate::request::{Request, Response};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// The web client's page.
pub const INDEX_HTML: &str = include_str!("web/index.html");
/// The web client's script.
pub const APP_JS: &str = include_str!("web/app.js");
/// The web client's style sheet.
pub const APP_CSS: &str = include_str!("web/app.css");

/// The management API over one host.
pub struct Api<'h> {
    host: &'h dyn Host,
    auth: Auth,
}

/// What a VM path asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VmAction {
    Start,
    Shutdown,
    Stop,
    Reset,
}

/// A known API path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route<'a> {
    Login,
    Logout,
    Host,
    Vms,
    /// `/api/vms/NAME` (the name still percent-encoded).
    Vm(&'a str),
    Action(&'a str, VmAction),
    Console(&'a str),
    Stats(&'a str),
}

impl Route<'_> {
    /// The methods the route answers, for 405's `Allow`.
    fn allow(&self) -> &'static str {
        match self {
            Route::Login | Route::Logout | Route::Action(..) => "POST",
            Route::Host | Route::Stats(_) => "GET",
            Route::Vms | Route::Console(_) => "GET, POST",
            Route::Vm(_) => "GET, DELETE",
        }
    }
}

/// The route of a path under `/api/`, if it is one.
fn route(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix("/api/")?;
    let mut parts = rest.split('/');
    let first = parts.next()?;
    let second = parts.next();
    let third = parts.next();
    if parts.next().is_some() {
        return None;
    }
    match (first, second, third) {
        ("login", None, None) => Some(Route::Login),
        ("logout", None, None) => Some(Route::Logout),
        ("host", None, None) => Some(Route::Host),
        ("vms", None, None) => Some(Route::Vms),
        ("vms", Some(""), _) => None,
        ("vms", Some(name), None) => Some(Route::Vm(name)),
        ("vms", Some(name), Some(what)) => match what {
            "start" => Some(Route::Action(name, VmAction::Start)),
            "shutdown" => Some(Route::Action(name, VmAction::Shutdown)),
            "stop" => Some(Route::Action(name, VmAction::Stop)),
            "reset" => Some(Route::Action(name, VmAction::Reset)),
            "console" => Some(Route::Console(name)),
            "stats" => Some(Route::Stats(name)),
            _ => None,
        },
        _ => None,
    }
}

/// `POST /api/login`'s body.
#[derive(Deserialize)]
struct LoginBody {
    user: String,
    password: String,
}

/// `POST /api/login`'s answer.
#[derive(Serialize)]
struct LoginAnswer<'a> {
    token: &'a str,
}

/// `POST /api/vms`'s answer.
#[derive(Serialize)]
struct Created<'a> {
    name: &'a str,
}

/// `GET /api/vms/NAME`'s answer: the VM as in the list, plus its counters.
#[derive(Serialize)]
struct VmDetail<'a> {
    name: &'a str,
    state: VmState,
    vcpus: u32,
    memory_mib: u64,
    autostart: bool,
    stats: VmStats,
}

/// `GET /api/vms/NAME/console`'s answer.
#[derive(Serialize)]
struct ConsoleAnswer {
    next: u64,
    data: String,
}

/// A refused VM definition's answer.
#[derive(Serialize)]
struct InvalidAnswer<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<u32>,
}

impl<'h> Api<'h> {
    /// The API over `host`, with `auth`'s password and sessions.
    pub fn new(host: &'h dyn Host, auth: Auth) -> Self {
        Self { host, auth }
    }

    /// The sessions and password check (e.g. to count open sessions).
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// Answers one request at `now_ms` (a monotonic clock in milliseconds: it times session
    /// expiry and the login back-off).
    pub fn handle(&mut self, req: &Request<'_>, now_ms: u64) -> Response {
        let mut response = if req.path == "/api" || req.path.starts_with("/api/") {
            let mut r = self.api(req, now_ms);
            r.headers.push(("Cache-Control", String::from("no-store")));
            r
        } else {
            static_file(req)
        };
        response
            .headers
            .push(("X-Content-Type-Options", String::from("nosniff")));
        response
    }

    /// An `/api/` request.
    fn api(&mut self, req: &Request<'_>, now_ms: u64) -> Response {
        if req.path == "/api/login" && req.method == "POST" {
            return self.login(req.body, now_ms);
        }
        if !self.auth.authorize(req.authorization, now_ms) {
            let mut r = Response::error(401, "log in first: Authorization: Bearer TOKEN");
            r.headers.push(("WWW-Authenticate", String::from("Bearer")));
            return r;
        }
        let Some(route) = route(req.path) else {
            return Response::error(404, "no such API path");
        };
        let result = match (req.method, route) {
            ("POST", Route::Logout) => {
                self.auth.logout(req.authorization);
                Ok(ok())
            }
            ("GET", Route::Host) => Ok(json(200, &self.host.summary())),
            ("GET", Route::Vms) => Ok(json(200, &self.host.vms())),
            ("POST", Route::Vms) => self.create(req.body),
            ("GET", Route::Vm(name)) => self.vm(name),
            ("DELETE", Route::Vm(name)) => {
                vm_name(name).and_then(|n| self.host.delete(&n).map(|()| ok()))
            }
            ("POST", Route::Action(name, action)) => vm_name(name).and_then(|n| {
                match action {
                    VmAction::Start => self.host.start(&n),
                    VmAction::Shutdown => self.host.shutdown(&n),
                    VmAction::Stop => self.host.stop(&n),
                    VmAction::Reset => self.host.reset(&n),
                }
                .map(|()| ok())
            }),
            ("GET", Route::Console(name)) => self.console_read(name, req.query),
            ("POST", Route::Console(name)) => {
                vm_name(name).and_then(|n| self.host.console_write(&n, req.body).map(|()| ok()))
            }
            ("GET", Route::Stats(name)) => {
                vm_name(name).and_then(|n| self.host.stats(&n).map(|s| json(200, &s)))
            }
            (_, route) => {
                let mut r = Response::error(405, "method not allowed on this path");
                r.headers.push(("Allow", String::from(route.allow())));
                Ok(r)
            }
        };
        result.unwrap_or_else(|e| api_error(&e))
    }

    /// `POST /api/login`.
    fn login(&mut self, body: &[u8], now_ms: u64) -> Response {
        let login = match serde_json::from_slice::<LoginBody>(body) {
            Ok(login) => login,
            Err(e) => {
                return Response::error(
                    400,
                    &format!(
                        "the login body must be {{\"user\":\"...\",\"password\":\"...\"}}: {e}"
                    ),
                )
            }
        };
        match self.auth.login(&login.user, &login.password, now_ms) {
            Ok(token) => json(200, &LoginAnswer { token: &token }),
            Err(LoginError::Wrong { retry_after_s }) => {
                let mut r = Response::error(401, "wrong user or password");
                r.headers.push(("WWW-Authenticate", String::from("Bearer")));
                r.headers.push(("Retry-After", format!("{retry_after_s}")));
                r
            }
            Err(LoginError::TooSoon { retry_after_s }) => {
                let mut r = Response::error(
                    429,
                    &format!("too many failed logins: try again in {retry_after_s} s"),
                );
                r.headers.push(("Retry-After", format!("{retry_after_s}")));
                r
            }
            Err(LoginError::Hash(e)) => Response::error(500, &e),
            Err(LoginError::NoRandomness) => {
                Response::error(500, "no randomness for a session token")
            }
        }
    }

    /// `POST /api/vms`.
    fn create(&self, body: &[u8]) -> Result<Response, ApiError> {
        let toml = core::str::from_utf8(body).map_err(|e| ApiError::Invalid {
            message: format!("the VM definition is not UTF-8: {e}"),
            line: None,
            column: None,
        })?;
        let name = self.host.create(toml)?;
        Ok(json(201, &Created { name: &name }))
    }

    /// `GET /api/vms/NAME`.
    fn vm(&self, name: &str) -> Result<Response, ApiError> {
        let name = vm_name(name)?;
        let vms = self.host.vms();
        let vm: &VmInfo = vms
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| ApiError::NoSuchVm(name.clone()))?;
        let stats = self.host.stats(&name)?;
        Ok(json(
            200,
            &VmDetail {
                name: &vm.name,
                state: vm.state,
                vcpus: vm.vcpus,
                memory_mib: vm.memory_mib,
                autostart: vm.autostart,
                stats,
            },
        ))
    }

    /// `GET /api/vms/NAME/console?since=N`.
    fn console_read(&self, name: &str, query: Option<&str>) -> Result<Response, ApiError> {
        let name = vm_name(name)?;
        let since = parse_since(query).map_err(|message| ApiError::Invalid {
            message,
            line: None,
            column: None,
        })?;
        let (next, bytes) = self.host.console_read(&name, since)?;
        let data = String::from_utf8_lossy(&bytes).into_owned();
        Ok(json(200, &ConsoleAnswer { next, data }))
    }
}

/// A 200 `{}`.
fn ok() -> Response {
    Response::json(200, Vec::from(&b"{}"[..]))
}

/// A JSON answer of `value` (500 if it cannot be serialized, which the types here never do).
fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => Response::json(status, body),
        Err(e) => Response::error(500, &format!("cannot write the answer: {e}")),
    }
}

/// The status and body of a host error.
fn api_error(e: &ApiError) -> Response {
    match e {
        ApiError::NoSuchVm(_) => Response::error(404, &format!("{e}")),
        ApiError::Conflict(m) => Response::error(409, m),
        ApiError::Invalid {
            message,
            line,
            column,
        } => json(
            400,
            &InvalidAnswer {
                error: message,
                line: *line,
                column: *column,
            },
        ),
        ApiError::Forbidden(m) => Response::error(403, m),
        ApiError::Failed(m) => Response::error(500, m),
    }
}

/// A VM name from a path segment, percent-decoded (`web%20a` is `web a`).
fn vm_name(segment: &str) -> Result<String, ApiError> {
    let invalid = |what: &str| ApiError::Invalid {
        message: format!("bad VM name in the path: {what}"),
        line: None,
        column: None,
    };
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .ok_or_else(|| invalid("% must be followed by two hex digits"))?;
            let digit = |b: u8| char::from(b).to_digit(16);
            match (digit(hex[0]), digit(hex[1])) {
                (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                _ => return Err(invalid("% must be followed by two hex digits")),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid("not UTF-8"))
}

/// The `since` of a console query: absent is 0; otherwise exactly `since=DIGITS`.
fn parse_since(query: Option<&str>) -> Result<u64, String> {
    let query = match query {
        None | Some("") => return Ok(0),
        Some(q) => q,
    };
    let mut since = None;
    for pair in query.split('&') {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("bad query \"{pair}\": expected since=N"))?;
        if key != "since" {
            return Err(format!(
                "unknown query parameter \"{key}\": expected since=N"
            ));
        }
        if since.is_some() {
            return Err(String::from("since is given twice"));
        }
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "since must be a byte offset (digits), not \"{value}\""
            ));
        }
        let n = value
            .parse::<u64>()
            .map_err(|_| format!("since {value} is too large"))?;
        since = Some(n);
    }
    Ok(since.unwrap_or(0))
}

/// The web client's files (`GET /`, `/app.js`, `/app.css`); anything else is 404.
fn static_file(req: &Request<'_>) -> Response {
    let (content_type, body) = match req.path {
        "/" => ("text/html; charset=utf-8", INDEX_HTML),
        "/app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "/app.css" => ("text/css; charset=utf-8", APP_CSS),
        _ => return Response::error(404, "not found"),
    };
    if req.method != "GET" {
        let mut r = Response::error(405, "method not allowed on this path");
        r.headers.push(("Allow", String::from("GET")));
        return r;
    }
    Response {
        status: 200,
        content_type,
        headers: alloc::vec![
            // Always revalidated, so that a new hypervisor build's client is picked up.
            ("Cache-Control", String::from("no-cache")),
            (
                "Content-Security-Policy",
                String::from("default-src 'self'; frame-ancestors 'none'"),
            ),
            ("Referrer-Policy", String::from("no-referrer")),
        ],
        body: Vec::from(body.as_bytes()),
    }
}

#[cfg(test)]
mod tests;
