//! One HTTP request and its response as the API sees them: the wire format (parsing,
//! limits, keep-alive) is `http`'s; routing and JSON are `api`'s.

use alloc::string::String;
use alloc::vec::Vec;

/// Largest request body accepted (bigger: 413).
pub const MAX_BODY: usize = 64 * 1024;
/// Largest request head (request line and headers) accepted (bigger: 431).
pub const MAX_HEAD: usize = 8 * 1024;

/// A parsed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// `GET`, `POST`, `DELETE`, ...
    pub method: &'a str,
    /// The path without the query (`/api/vms/web/console`).
    pub path: &'a str,
    /// The query after `?`, if any (`since=120`).
    pub query: Option<&'a str>,
    /// The `Authorization` header's value, if any.
    pub authorization: Option<&'a str>,
    /// The body (at most [`MAX_BODY`] bytes).
    pub body: &'a [u8],
}

/// A response to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra headers (name, value), e.g. `Retry-After`.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a JSON body.
    pub fn json(status: u16, body: Vec<u8>) -> Self {
        Self {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body,
        }
    }

    /// A JSON `{"error": message}` response.
    pub fn error(status: u16, message: &str) -> Self {
        let mut body = Vec::from(&b"{\"error\":"[..]);
        push_json_string(&mut body, message);
        body.push(b'}');
        Self::json(status, body)
    }
}

/// Appends `s` as a JSON string literal (quotes and escapes included).
pub fn push_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                let hex = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(hex[(c as usize) >> 4]);
                out.push(hex[(c as usize) & 15]);
            }
            c => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_escaped_json() {
        let r = Response::error(400, "bad \"x\"\n\u{1}");
        assert_eq!(r.body, b"{\"error\":\"bad \\\"x\\\"\\n\\u0001\"}");
        assert_eq!(r.status, 400);
    }
}
