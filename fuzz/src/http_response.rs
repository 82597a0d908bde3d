//! The `http_response` harness: an HTTP/1.1 response (or a bare XML body)
//! from a hostile server, through the core's response parser and the Blob
//! Storage readers.
//!
//! Input: the first byte is the mode, the rest the bytes.
//!
//! - bit 0: the bytes are a List Blobs / error body only (no HTTP framing);
//! - bit 1: the request was `HEAD` (no body expected);
//! - bit 2: the connection ends after the bytes (`handle_eof`);
//! - bits 3-7: the second split point, as a fraction of the length.
//!
//! The response is parsed three ways: whole, split in three at points
//! derived from the mode and the length, and (for inputs up to 4 KiB) a
//! byte at a time, with the driver's contract (unconsumed bytes presented
//! again with the next piece). All three must agree exactly: the same
//! response (status, headers, body, reuse) or the same error, and the same
//! number of bytes consumed. The body never exceeds the limit. A complete
//! body goes to `parse_list_blobs`, `parse_error_body` and
//! `ServiceError::from_parts`, and the headers to `BlobVersion::of` and
//! `BlobProperties::of`; none may panic, and a parsed page never holds
//! more blobs than the body has bytes.

use eventhubs_proto::http::{HttpError, Limits, ResponseParser};
use eventhubs_proto::storage::{
    parse_error_body, parse_list_blobs, BlobProperties, BlobVersion, ServiceError,
};
use http::{Method, Response};

/// Small limits, so that the fuzzer reaches them.
pub fn limits() -> Limits {
    Limits::default()
        .with_max_head_bytes(2048)
        .with_max_headers(16)
        .with_max_body_bytes(16 * 1024)
}

/// What one way of parsing gave.
#[derive(Debug, PartialEq)]
enum Outcome {
    Response {
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
        persistent: bool,
        consumed: usize,
    },
    Incomplete {
        consumed: usize,
    },
    Error(String),
}

fn outcome(p: &mut ResponseParser, consumed: usize, result: Result<(), HttpError>) -> Outcome {
    if let Err(e) = result {
        return Outcome::Error(e.to_string());
    }
    let persistent = p.persistent();
    match p.poll_response() {
        Some(r) => {
            check_storage(&r);
            Outcome::Response {
                status: r.status().as_u16(),
                headers: r
                    .headers()
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                    .collect(),
                body: r.body().to_vec(),
                persistent,
                consumed,
            }
        }
        None => Outcome::Incomplete { consumed },
    }
}

/// Parses `wire` fed in pieces ending at `cuts` (then the rest).
fn parse(method: &Method, wire: &[u8], cuts: &[usize], eof: bool) -> Outcome {
    let mut p = ResponseParser::new(method, limits());
    let mut pending: Vec<u8> = Vec::new();
    let mut last = 0;
    let mut consumed = 0;
    for &cut in cuts.iter().chain(std::iter::once(&wire.len())) {
        let cut = cut.clamp(last, wire.len());
        pending.extend_from_slice(&wire[last..cut]);
        last = cut;
        match p.handle_input(&pending) {
            Ok(n) => {
                assert!(
                    n <= pending.len(),
                    "consumed {n} of {} bytes",
                    pending.len()
                );
                consumed += n;
                pending.drain(..n);
            }
            Err(e) => return outcome(&mut p, consumed, Err(e)),
        }
        if p.is_complete() {
            return outcome(&mut p, consumed, Ok(()));
        }
        // An incomplete head or line is bounded by the limits.
        assert!(
            pending.len() <= 2048 + 4096 + 4,
            "{} unconsumed bytes buffered",
            pending.len()
        );
    }
    let r = if eof { p.handle_eof() } else { Ok(()) };
    outcome(&mut p, consumed, r)
}

fn check_storage(r: &Response<bytes::Bytes>) {
    assert!(r.body().len() as u64 <= limits().max_body_bytes);
    let _ = BlobVersion::of(r);
    let _ = BlobProperties::of(r);
    let e = ServiceError::from_response(r);
    let _ = e.to_string();
    check_xml(r.body());
}

/// The Blob Storage readers on a body.
pub fn check_xml(body: &[u8]) {
    match parse_list_blobs(body) {
        Ok(page) => {
            assert!(page.blobs.len() <= body.len());
            for b in &page.blobs {
                let _ = b.metadata_value("ownerid");
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let _ = parse_error_body(body);
    let _ = ServiceError::from_parts(412, &http::HeaderMap::new(), body);
}

/// The harness.
pub fn run(data: &[u8]) {
    let Some((&mode, wire)) = data.split_first() else {
        return;
    };
    if mode & 1 == 1 {
        check_xml(wire);
        return;
    }
    let method = if mode & 2 == 2 {
        Method::HEAD
    } else {
        Method::GET
    };
    let eof = mode & 4 == 4;
    let whole = parse(&method, wire, &[], eof);
    let n = wire.len();
    let second = n * usize::from(mode >> 3) / 31;
    let first = (n / 3).min(second);
    let split = parse(&method, wire, &[first, second], eof);
    assert_eq!(whole, split, "whole vs split at {first} and {second}");
    if n <= 4096 {
        let cuts: Vec<usize> = (1..n).collect();
        let bytewise = parse(&method, wire, &cuts, eof);
        assert_eq!(whole, bytewise, "whole vs byte at a time");
    }
}
