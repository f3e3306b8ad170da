//! Fuzz target: whatever bytes a client sends, split wherever TCP splits them, the
//! management HTTP request reader (`mgmt::http::RequestReader`) never panics, never hands
//! out a body over `MAX_BODY`, and answers errors with a 4xx/5xx status.
//!
//! Input: the first byte chooses the requests allowed per connection (1 to 8); then
//! chunks, each a length byte `n` followed by up to `n` bytes fed at once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mgmt::http::{write_response, Next, RequestReader};
use mgmt::request::{Response, MAX_BODY};

fuzz_target!(|data: &[u8]| {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let mut reader = RequestReader::new(u32::from(first % 8) + 1);
    let mut out = Vec::new();
    while let Some((&n, tail)) = rest.split_first() {
        let take = usize::from(n).min(tail.len());
        reader.feed(&tail[..take]);
        rest = &tail[take..];
        loop {
            match reader.next_request() {
                Next::Request { request, close } => {
                    assert!(request.body.len() <= MAX_BODY);
                    let resp = Response::json(200, request.path.as_bytes().to_vec());
                    write_response(&resp, close, &mut out);
                    out.clear();
                }
                Next::Error(resp) => assert!(resp.status >= 400),
                Next::NeedMore | Next::Closed => break,
            }
        }
    }
});
