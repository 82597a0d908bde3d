//! The server side, on the same framing as the client: a request parsed
//! from bytes and a response written as bytes (for a local emulator of an
//! HTTP API).

use bytes::Bytes;
use http::header::{HeaderMap, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{Method, Request, Response, StatusCode, Uri, Version};

use super::error::HttpError;
use super::framing::{
    find_head_end, framing_headers, head_error, header_pair, leading_newlines, persistent,
    BodyDecoder, BodyLength, Limits,
};

#[derive(Debug)]
enum State {
    Head,
    Body(BodyDecoder),
    Done,
    Failed,
}

/// Parses one request from bytes (RFC 9112): the head with `httparse`,
/// then a body by `Content-Length` or chunked coding; a request with
/// neither has no body. The same contract as
/// [`ResponseParser`](super::ResponseParser): `handle_input` returns the
/// bytes consumed, and stops at the end of the request, so a pipelined
/// next request stays with the caller for a new parser.
#[derive(Debug)]
pub struct RequestParser {
    limits: Limits,
    state: State,
    scanned: usize,
    parts: Option<http::request::Parts>,
    persistent: bool,
    request: Option<Request<Bytes>>,
}

impl RequestParser {
    /// A parser for one request.
    pub fn new(limits: Limits) -> Self {
        RequestParser {
            limits,
            state: State::Head,
            scanned: 0,
            parts: None,
            persistent: false,
            request: None,
        }
    }

    /// Parses from `data`; returns the bytes consumed.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<usize, HttpError> {
        let r = self.parse(data);
        if r.is_err() {
            self.state = State::Failed;
        }
        r
    }

    fn parse(&mut self, data: &[u8]) -> Result<usize, HttpError> {
        let mut at = 0;
        loop {
            match &mut self.state {
                State::Done | State::Failed => return Ok(at),
                State::Body(decoder) => {
                    at += decoder.decode(&data[at..])?;
                    if decoder.is_done() {
                        self.complete();
                    }
                    return Ok(at);
                }
                State::Head => {
                    if self.scanned == 0 {
                        at += leading_newlines(&data[at..]);
                    }
                    let rest = &data[at..];
                    let Some(end) =
                        find_head_end(rest, &mut self.scanned, self.limits.max_head_bytes)?
                    else {
                        return Ok(at);
                    };
                    let head = &rest[..end];
                    at += end;
                    self.head(head)?;
                }
            }
        }
    }

    fn head(&mut self, head: &[u8]) -> Result<(), HttpError> {
        let mut slots = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
        let mut parsed = httparse::Request::new(&mut slots);
        match parsed.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return Err(HttpError::MalformedHead {
                    reason: "incomplete head".into(),
                })
            }
            Err(e) => return Err(head_error(e, self.limits.max_headers)),
        }
        let method = Method::from_bytes(parsed.method.unwrap_or("").as_bytes()).map_err(|_| {
            HttpError::MalformedHead {
                reason: "invalid method".into(),
            }
        })?;
        let target = parsed.path.unwrap_or("");
        let uri: Uri = target.parse().map_err(|_| HttpError::MalformedHead {
            reason: format!("invalid request target {target:?}"),
        })?;
        let minor = parsed.version.unwrap_or(1);
        let mut headers = HeaderMap::with_capacity(parsed.headers.len());
        for f in parsed.headers.iter() {
            let (name, value) = header_pair(f.name, f.value)?;
            headers.append(name, value);
        }
        // RFC 9112 6.3: a request without framing headers has no body; with
        // both, it is refused (a smuggling vector).
        let (length, both) = framing_headers(&headers)?;
        if both {
            return Err(HttpError::MalformedHead {
                reason: "both Transfer-Encoding and Content-Length".into(),
            });
        }
        self.persistent = persistent(minor, &headers);
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .version(if minor == 0 {
                Version::HTTP_10
            } else {
                Version::HTTP_11
            });
        if let Some(h) = builder.headers_mut() {
            *h = headers;
        }
        let (parts, ()) = builder
            .body(())
            .map_err(|e| HttpError::MalformedHead {
                reason: e.to_string(),
            })?
            .into_parts();
        self.parts = Some(parts);
        self.state = State::Body(BodyDecoder::new(
            length.unwrap_or(BodyLength::Empty),
            self.limits,
        )?);
        Ok(())
    }

    fn complete(&mut self) {
        let State::Body(decoder) = &mut self.state else {
            return;
        };
        let body = decoder.take_body();
        if let Some(parts) = self.parts.take() {
            self.request = Some(Request::from_parts(parts, body));
        }
        self.state = State::Done;
    }

    /// The connection ended: an error unless nothing had arrived (a client
    /// closing an idle connection) or the request was complete.
    pub fn handle_eof(&mut self) -> Result<(), HttpError> {
        match &self.state {
            State::Done => Ok(()),
            State::Head if self.scanned == 0 => Ok(()),
            State::Head => Err(HttpError::UnexpectedEof {
                during: "in the head",
            }),
            State::Body(_) | State::Failed => {
                self.state = State::Failed;
                Err(HttpError::UnexpectedEof {
                    during: "in the body",
                })
            }
        }
    }

    /// The request, once complete; returned once.
    #[must_use]
    pub fn poll_request(&mut self) -> Option<Request<Bytes>> {
        self.request.take()
    }

    /// Whether the client keeps the connection open after this request.
    pub fn persistent(&self) -> bool {
        matches!(self.state, State::Done) && self.persistent
    }
}

/// Writes `response` as HTTP/1.1 into `out`, with a `Content-Length`
/// unless the status forbids a body (`1xx`, `204`, `304`). For the answer
/// to a `HEAD` request pass `head_request`: the length is written, the
/// body is not.
pub fn write_response(response: &Response<Bytes>, head_request: bool, out: &mut Vec<u8>) {
    let status = response.status();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in response.headers() {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if !bodiless {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(response.body().len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !bodiless && !head_request {
        out.extend_from_slice(response.body());
    }
}
