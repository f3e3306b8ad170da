//! HTTP/1.1 on the wire: an incremental request reader over a byte stream and a response
//! writer. Limits: the head at most [`MAX_HEAD`] bytes (431), the body at most
//! [`MAX_BODY`] bytes from `Content-Length` (413), no `Transfer-Encoding` (501), malformed
//! requests 400; at most [`MAX_REQUESTS`] requests per connection, the last answered with
//! `Connection: close`. An error answer always closes the connection.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use crate::request::{Request, Response, MAX_BODY, MAX_HEAD};

/// What answers requests (the API router, in the runtime).
pub trait Handler {
    /// The response to `req`; `now_ms` is the monotonic time in milliseconds.
    fn handle(&mut self, req: &Request<'_>, now_ms: u64) -> Response;
}

impl<F: FnMut(&Request<'_>, u64) -> Response> Handler for F {
    fn handle(&mut self, req: &Request<'_>, now_ms: u64) -> Response {
        self(req, now_ms)
    }
}

/// Requests served on one connection before it is closed.
pub const MAX_REQUESTS: u32 = 100;
/// Header lines accepted in one request (more: 431).
pub const MAX_HEADERS: usize = 32;

/// What [`RequestReader::next_request`] found.
#[derive(Debug)]
pub enum Next<'a> {
    /// More bytes are needed.
    NeedMore,
    /// A complete request; answer it with `Connection: close` if `close`.
    Request {
        /// The request (borrows the reader until the next call).
        request: Request<'a>,
        /// Whether this is the last request of the connection.
        close: bool,
    },
    /// The bytes are not an acceptable request: send this answer, then close.
    Error(Response),
    /// The connection is done: no more requests are read from it.
    Closed,
}

/// Reads requests from a connection's bytes; see the module documentation.
#[derive(Debug)]
pub struct RequestReader {
    buf: Vec<u8>,
    /// Bytes of the last returned request, removed at the next call.
    consumed: usize,
    served: u32,
    max_requests: u32,
    closed: bool,
}

impl Default for RequestReader {
    fn default() -> Self {
        Self::new(MAX_REQUESTS)
    }
}

struct Head {
    len: usize,
    body_len: usize,
    close: bool,
}

impl RequestReader {
    /// A reader that serves at most `max_requests` requests (at least one).
    pub fn new(max_requests: u32) -> Self {
        Self {
            buf: Vec::new(),
            consumed: 0,
            served: 0,
            max_requests: max_requests.max(1),
            closed: false,
        }
    }

    /// Adds bytes received from the peer. Bytes after the connection is closed are
    /// dropped; at most one full request (head and body) is ever buffered ahead.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.drop_consumed();
        if !self.closed {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Whether buffered bytes exceed what one request may hold, so the caller may stop
    /// reading the socket until [`Self::next_request`] has taken a request.
    pub fn is_full(&self) -> bool {
        self.buf.len() - self.consumed >= MAX_HEAD + MAX_BODY
    }

    /// Whether no more requests will be read.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    fn drop_consumed(&mut self) {
        if self.consumed > 0 {
            self.buf.drain(..self.consumed);
            self.consumed = 0;
        }
    }

    fn fail(&mut self, status: u16, message: &str) -> Next<'static> {
        self.closed = true;
        self.buf = Vec::new();
        Next::Error(Response::error(status, message))
    }

    /// The next complete request, if the buffered bytes hold one. The request borrows the
    /// reader; its bytes are dropped at the next call.
    pub fn next_request(&mut self) -> Next<'_> {
        self.drop_consumed();
        if self.closed {
            return Next::Closed;
        }
        let head = match self.parse_head() {
            Ok(Some(h)) => h,
            Ok(None) => return Next::NeedMore,
            Err((status, message)) => return self.fail(status, message),
        };
        let total = head.len + head.body_len;
        if self.buf.len() < total {
            return Next::NeedMore;
        }
        self.served += 1;
        let close = head.close || self.served >= self.max_requests;
        if close {
            self.closed = true;
        }
        self.consumed = total;
        // Parse again into a request that borrows the buffer (the head was checked above).
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        // (Field writes only below: the request borrows `self.buf`.)
        let parsed = matches!(
            req.parse(&self.buf[..head.len]),
            Ok(httparse::Status::Complete(_))
        );
        let (true, Some(method), Some(target)) = (parsed, req.method, req.path) else {
            self.closed = true;
            return Next::Error(Response::error(400, "malformed request"));
        };
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let authorization = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("authorization"))
            .and_then(|h| core::str::from_utf8(h.value).ok());
        Next::Request {
            request: Request {
                method,
                path,
                query,
                authorization,
                body: &self.buf[head.len..total],
            },
            close,
        }
    }

    /// Checks the head at the front of the buffer: `Ok(None)` if incomplete.
    fn parse_head(&self) -> Result<Option<Head>, (u16, &'static str)> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let window = &self.buf[..self.buf.len().min(MAX_HEAD + 1)];
        let len = match req.parse(window) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                return if window.len() > MAX_HEAD {
                    Err((431, "request head too large"))
                } else {
                    Ok(None)
                };
            }
            Err(httparse::Error::TooManyHeaders) => return Err((431, "too many headers")),
            Err(_) => return Err((400, "malformed request")),
        };
        if len > MAX_HEAD {
            return Err((431, "request head too large"));
        }
        if req.version != Some(1) && req.version != Some(0) {
            return Err((505, "HTTP version not supported"));
        }
        if !req.path.is_some_and(|p| p.starts_with('/')) {
            return Err((400, "the request target must be a path"));
        }
        // HTTP/1.0 closes after one request unless it asks otherwise; keep it simple.
        let mut close = req.version == Some(0);
        let mut body_len: Option<usize> = None;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let v = parse_content_length(h.value).ok_or((400, "bad Content-Length"))?;
                if body_len.is_some_and(|old| old != v) {
                    return Err((400, "conflicting Content-Length headers"));
                }
                body_len = Some(v);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                return Err((
                    501,
                    "Transfer-Encoding is not supported: send Content-Length",
                ));
            } else if h.name.eq_ignore_ascii_case("connection") {
                let v = core::str::from_utf8(h.value).unwrap_or("");
                if v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")) {
                    close = true;
                }
            } else if h.name.eq_ignore_ascii_case("authorization")
                && core::str::from_utf8(h.value).is_err()
            {
                return Err((400, "Authorization is not text"));
            }
        }
        let body_len = body_len.unwrap_or(0);
        if body_len > MAX_BODY {
            return Err((413, "request body too large"));
        }
        Ok(Some(Head {
            len,
            body_len,
            close,
        }))
    }
}

/// A `Content-Length` value: decimal digits only; a value too big for `usize` is
/// `usize::MAX` (too large a body either way).
fn parse_content_length(v: &[u8]) -> Option<usize> {
    let v = v.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0usize, |n, d| {
        n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
    }))
}

/// The reason phrase for a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Appends `resp` as HTTP/1.1 to `out`, with `Connection: close` if `close`. Header values
/// lose any CR, LF or other control characters, so a value cannot add headers.
pub fn write_response(resp: &Response, close: bool, out: &mut Vec<u8>) {
    let mut head = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        resp.status,
        reason(resp.status),
        clean(resp.content_type),
        resp.body.len()
    );
    for (name, value) in &resp.headers {
        let _ = write!(head, "{}: {}\r\n", clean(name), clean(value));
    }
    head.push_str(if close {
        "Connection: close\r\n\r\n"
    } else {
        "Connection: keep-alive\r\n\r\n"
    });
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&resp.body);
}

fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Method, path, query, body and `close` of a request.
    type Parsed = (String, String, Option<String>, Vec<u8>, bool);

    fn one(bytes: &[u8]) -> Result<Parsed, u16> {
        let mut r = RequestReader::default();
        r.feed(bytes);
        match r.next_request() {
            Next::Request { request, close } => Ok((
                request.method.into(),
                request.path.into(),
                request.query.map(Into::into),
                request.body.to_vec(),
                close,
            )),
            Next::Error(resp) => Err(resp.status),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn simple_get_with_query_and_auth() {
        let mut r = RequestReader::default();
        r.feed(b"GET /api/vms/web/console?since=12 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer abc\r\n\r\n");
        let Next::Request { request, close } = r.next_request() else {
            panic!("no request")
        };
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/api/vms/web/console");
        assert_eq!(request.query, Some("since=12"));
        assert_eq!(request.authorization, Some("Bearer abc"));
        assert!(request.body.is_empty());
        assert!(!close);
        assert!(matches!(r.next_request(), Next::NeedMore));
    }

    #[test]
    fn body_from_content_length_and_connection_close() {
        let got =
            one(b"POST /api/login HTTP/1.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
                .unwrap();
        assert_eq!(got.0, "POST");
        assert_eq!(got.3, b"hello");
        assert!(got.4);
    }

    #[test]
    fn errors_have_the_right_status() {
        assert_eq!(one(b"\x00\x01garbage\r\n\r\n").unwrap_err(), 400);
        assert_eq!(one(b"GET http://x/ HTTP/1.1\r\n\r\n").unwrap_err(), 400);
        assert_eq!(
            one(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap_err(),
            501
        );
        assert_eq!(
            one(b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n").unwrap_err(),
            413
        );
        assert_eq!(
            one(b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n").unwrap_err(),
            413
        );
        assert_eq!(
            one(format!(
                "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                MAX_BODY + 1
            )
            .as_bytes())
            .unwrap_err(),
            413
        );
        assert_eq!(
            one(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").unwrap_err(),
            400
        );
        assert_eq!(
            one(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n").unwrap_err(),
            400
        );
        let many: String = (0..40).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(
            one(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()).unwrap_err(),
            431
        );
    }

    #[test]
    fn a_megabyte_of_header_is_refused_early() {
        let mut r = RequestReader::default();
        r.feed(b"GET / HTTP/1.1\r\nX-Big: ");
        let chunk = vec![b'a'; 4096];
        let mut status = None;
        for _ in 0..256 {
            r.feed(&chunk);
            match r.next_request() {
                Next::NeedMore => {}
                Next::Error(resp) => {
                    status = Some(resp.status);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(status, Some(431));
        // Refused once the head passed the limit, not after a megabyte.
        assert!(r.is_closed());
        assert!(matches!(r.next_request(), Next::Closed));
        r.feed(&chunk);
        assert!(r.buf.is_empty(), "bytes after the error are dropped");
    }

    #[test]
    fn split_reads_byte_by_byte() {
        let req = b"POST /api/vms HTTP/1.1\r\nContent-Length: 11\r\n\r\n[[vm]]\nx=1\n";
        let mut r = RequestReader::default();
        for (i, b) in req.iter().enumerate() {
            r.feed(&[*b]);
            match r.next_request() {
                Next::NeedMore => assert!(i + 1 < req.len()),
                Next::Request { request, .. } => {
                    assert_eq!(i + 1, req.len());
                    assert_eq!(request.body, b"[[vm]]\nx=1\n");
                    return;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        panic!("never complete");
    }

    #[test]
    fn pipelined_requests_and_the_per_connection_limit() {
        let mut r = RequestReader::new(3);
        let mut bytes = Vec::new();
        for i in 0..5 {
            bytes.extend_from_slice(
                format!("POST /r{i} HTTP/1.1\r\nContent-Length: 2\r\n\r\n{i}{i}").as_bytes(),
            );
        }
        r.feed(&bytes);
        let mut seen = Vec::new();
        loop {
            match r.next_request() {
                Next::Request { request, close } => {
                    seen.push((request.path.to_string(), request.body.to_vec(), close))
                }
                Next::Closed => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            seen,
            vec![
                ("/r0".to_string(), b"00".to_vec(), false),
                ("/r1".to_string(), b"11".to_vec(), false),
                ("/r2".to_string(), b"22".to_vec(), true),
            ]
        );
    }

    #[test]
    fn writer_formats_and_strips_control_characters() {
        let mut resp = Response::json(201, b"{}".to_vec());
        resp.headers
            .push(("Retry-After", "5\r\nSet-Cookie: evil".into()));
        let mut out = Vec::new();
        write_response(&resp, true, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\
             Retry-After: 5Set-Cookie: evil\r\nConnection: close\r\n\r\n{}"
        );
        let mut out = Vec::new();
        write_response(&Response::error(404, "no"), false, &mut out);
        assert!(out.starts_with(b"HTTP/1.1 404 Not Found\r\n"));
        assert!(out.windows(24).any(|w| w == b"Connection: keep-alive\r\n"));
    }

    /// A xorshift generator: fixed seed, so a failure is repeatable.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut g = XorShift(0x9e37_79b9_7f4a_7c15);
        let pieces: [&[u8]; 11] = [
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET ",
            b"POST ",
            b"/api/x?y ",
            b"HTTP/1.1\r\n",
            b"Content-Length: 3\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"Connection: close\r\n",
            b"\r\n",
            b"Authorization: \xff\xfe\r\n",
            b"abc",
        ];
        let mut requests = 0;
        for _ in 0..3000 {
            let mut r = RequestReader::new(4);
            for _ in 0..(g.next() % 12) {
                let mut chunk = Vec::new();
                if g.next().is_multiple_of(3) {
                    for _ in 0..(g.next() % 40) {
                        chunk.push(g.next() as u8);
                    }
                } else {
                    chunk.extend_from_slice(pieces[(g.next() % 11) as usize]);
                }
                r.feed(&chunk);
                loop {
                    match r.next_request() {
                        Next::Request { request, .. } => {
                            requests += 1;
                            assert!(request.body.len() <= MAX_BODY);
                        }
                        Next::Error(resp) => assert!(resp.status >= 400),
                        Next::NeedMore | Next::Closed => break,
                    }
                }
            }
        }
        assert!(requests > 0, "the generator never made a valid request");
    }
}
