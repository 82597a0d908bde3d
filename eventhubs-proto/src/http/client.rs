//! The client side: a request written as bytes, the response parsed from
//! bytes, and one [`Exchange`] tying them to a connection's reuse.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{Method, Request, Response, StatusCode, Version};

use super::error::{HttpError, RequestError};
use super::framing::{
    find_head_end, framing_headers, head_error, header_pair, leading_newlines, persistent, tokens,
    BodyDecoder, BodyLength, Limits,
};

/// Most `1xx` responses accepted before the final one.
const MAX_INTERIM: usize = 16;

/// Writes `request` as an HTTP/1.1 message into `out`.
///
/// The request target is the URI's path and query (origin form, RFC 9112
/// 3.2.1). `Host` comes from the URI's authority unless set. A body is
/// always sent with a `Content-Length`, and `Content-Length: 0` is added
/// to bodiless `POST`, `PUT` and `PATCH` requests, which some servers
/// (Azure Storage among them) require.
pub fn write_request(request: &Request<Bytes>, out: &mut Vec<u8>) -> Result<(), RequestError> {
    if request.version() != Version::HTTP_11 {
        return Err(RequestError::UnsupportedVersion {
            version: format!("{:?}", request.version()),
        });
    }
    let headers = request.headers();
    if headers.contains_key(TRANSFER_ENCODING) {
        return Err(RequestError::InvalidFraming {
            reason: "Transfer-Encoding is not sent; bodies go with Content-Length".into(),
        });
    }
    let body = request.body();
    let declared = headers.get_all(CONTENT_LENGTH).iter().collect::<Vec<_>>();
    match declared.as_slice() {
        [] => {}
        [one] if one.as_bytes() == body.len().to_string().as_bytes() => {}
        _ => {
            return Err(RequestError::InvalidFraming {
                reason: format!(
                    "Content-Length {declared:?} does not match the body of {} bytes",
                    body.len()
                ),
            })
        }
    }
    let uri = request.uri();
    let host = match (headers.get(HOST), uri.authority()) {
        (Some(_), _) => None,
        (None, Some(a)) => Some(authority_without_userinfo(a.as_str())),
        (None, None) => return Err(RequestError::MissingHost),
    };
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let target = if target.is_empty() { "/" } else { target };
    out.extend_from_slice(request.method().as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(host) = host {
        field(out, "host", host.as_bytes());
    }
    for (name, value) in headers {
        field(out, name.as_str(), value.as_bytes());
    }
    let needs_length = !body.is_empty()
        || matches!(
            *request.method(),
            Method::POST | Method::PUT | Method::PATCH
        );
    if declared.is_empty() && needs_length {
        field(out, "content-length", body.len().to_string().as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Ok(())
}

fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn authority_without_userinfo(a: &str) -> &str {
    a.rsplit_once('@').map_or(a, |(_, host)| host)
}

#[derive(Debug)]
enum State {
    Head,
    Body(BodyDecoder),
    Done,
    Failed,
}

/// Parses one response from bytes (RFC 9112): the head with `httparse`,
/// then the body by `Content-Length`, chunked coding (with trailers) or
/// the end of the connection; none for `HEAD`, `1xx`, `204` and `304`.
/// `1xx` interim responses are skipped.
///
/// Feed it with [`handle_input`](Self::handle_input), which returns how
/// many bytes it consumed (the caller keeps the rest and presents it again
/// with more), and [`handle_eof`](Self::handle_eof) when the connection
/// ends; then [`poll_response`](Self::poll_response).
#[derive(Debug)]
pub struct ResponseParser {
    head_request: bool,
    limits: Limits,
    state: State,
    scanned: usize,
    interim: usize,
    received: bool,
    parts: Option<http::response::Parts>,
    persistent: bool,
    response: Option<Response<Bytes>>,
}

impl ResponseParser {
    /// A parser for the response to a request with `method`.
    pub fn new(method: &Method, limits: Limits) -> Self {
        ResponseParser {
            head_request: *method == Method::HEAD,
            limits,
            state: State::Head,
            scanned: 0,
            interim: 0,
            received: false,
            parts: None,
            persistent: false,
            response: None,
        }
    }

    /// Parses from `data`; returns the bytes consumed. Once the response is
    /// complete, nothing more is consumed. After an error the parser stays
    /// failed.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<usize, HttpError> {
        if !data.is_empty() {
            self.received = true;
        }
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

    /// Parses one complete head and picks the body framing.
    fn head(&mut self, head: &[u8]) -> Result<(), HttpError> {
        let mut slots = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
        let mut parsed = httparse::Response::new(&mut slots);
        match parsed.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return Err(HttpError::MalformedHead {
                    reason: "incomplete head".into(),
                })
            }
            Err(e) => return Err(head_error(e, self.limits.max_headers)),
        }
        let code = parsed.code.unwrap_or(0);
        let status = StatusCode::from_u16(code).map_err(|_| HttpError::MalformedHead {
            reason: format!("invalid status code {code}"),
        })?;
        let minor = parsed.version.unwrap_or(1);
        let mut headers = HeaderMap::with_capacity(parsed.headers.len());
        for f in parsed.headers.iter() {
            let (name, value) = header_pair(f.name, f.value)?;
            headers.append(name, value);
        }
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(HttpError::UnexpectedUpgrade);
        }
        if status.is_informational() {
            self.interim += 1;
            if self.interim > MAX_INTERIM {
                return Err(HttpError::TooManyInterimResponses { limit: MAX_INTERIM });
            }
            return Ok(());
        }
        let mut persistent = persistent(minor, &headers);
        let length = if self.head_request
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            BodyLength::Empty
        } else {
            let (length, both) = framing_headers(&headers)?;
            if both {
                // RFC 9112 6.3: Transfer-Encoding wins, and the
                // connection cannot be trusted afterwards.
                persistent = false;
            }
            length.unwrap_or(BodyLength::UntilEof)
        };
        if length == BodyLength::UntilEof {
            persistent = false;
        }
        self.persistent = persistent;
        let mut builder = Response::builder().status(status).version(if minor == 0 {
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
        // The parse loop completes an empty body at once.
        self.state = State::Body(BodyDecoder::new(length, self.limits)?);
        Ok(())
    }

    fn complete(&mut self) {
        let State::Body(decoder) = &mut self.state else {
            return;
        };
        let body = decoder.take_body();
        let trailers = decoder.take_trailers();
        if let Some(mut parts) = self.parts.take() {
            if !trailers.is_empty() {
                parts.extensions.insert(Trailers(trailers));
            }
            self.response = Some(Response::from_parts(parts, body));
        }
        self.state = State::Done;
    }

    /// The connection ended. Completes a body delimited by the end of the
    /// connection; anything else unfinished is an error saying where.
    pub fn handle_eof(&mut self) -> Result<(), HttpError> {
        let r = match &mut self.state {
            State::Done => Ok(()),
            State::Failed => Err(HttpError::UnexpectedEof {
                during: "after an error",
            }),
            State::Head if !self.received => Err(HttpError::UnexpectedEof {
                during: "before the response",
            }),
            State::Head => Err(HttpError::UnexpectedEof {
                during: "in the head",
            }),
            State::Body(decoder) => decoder.finish_at_eof(),
        };
        match r {
            Ok(()) => {
                if matches!(self.state, State::Body(_)) {
                    self.complete();
                }
                Ok(())
            }
            Err(e) => {
                self.state = State::Failed;
                Err(e)
            }
        }
    }

    /// The response, once complete; returned once.
    #[must_use]
    pub fn poll_response(&mut self) -> Option<Response<Bytes>> {
        self.response.take()
    }

    /// True once the final response has been parsed in full.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// True once any byte of a response has arrived.
    pub fn received_any(&self) -> bool {
        self.received
    }

    /// Whether the connection may carry another request after this
    /// response (RFC 9112 9.3): a complete response that did not ask to
    /// close, framed by length or chunks.
    pub fn persistent(&self) -> bool {
        self.is_complete() && self.persistent
    }
}

/// The trailer fields of a chunked response, kept in the response's
/// extensions when there are any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailers(pub HeaderMap);

/// One request and its response on one connection.
///
/// The polling order a driver follows: [`poll_transmit`](Self::poll_transmit)
/// and write all of it; then read, passing bytes to
/// [`handle_input`](Self::handle_input) (and keeping what it did not
/// consume) and the end of the connection to
/// [`handle_eof`](Self::handle_eof), until
/// [`poll_response`](Self::poll_response) gives the response. Afterwards
/// [`reusable`](Self::reusable) says whether the connection can go back to
/// a pool, and for how long ([`keep_alive_timeout`](Self::keep_alive_timeout)).
/// If it fails instead, [`retry_on_fresh_connection`](Self::retry_on_fresh_connection)
/// says whether to send it once more on a new connection.
#[derive(Debug)]
pub struct Exchange {
    request: Option<Bytes>,
    close_requested: bool,
    parser: ResponseParser,
    keep_alive_timeout: Option<Duration>,
    leftover: bool,
}

impl Exchange {
    /// An exchange for `request`, with `limits` on the response.
    pub fn new(request: &Request<Bytes>, limits: Limits) -> Result<Self, RequestError> {
        let mut out = Vec::with_capacity(256 + request.body().len());
        write_request(request, &mut out)?;
        let close_requested = tokens(request.headers(), &http::header::CONNECTION)
            .iter()
            .any(|t| t == "close");
        Ok(Exchange {
            request: Some(Bytes::from(out)),
            close_requested,
            parser: ResponseParser::new(request.method(), limits),
            keep_alive_timeout: None,
            leftover: false,
        })
    }

    /// The request's bytes, once.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.request.take()
    }

    /// Response bytes; returns how many were consumed. Bytes after a
    /// complete response are not consumed, and make the connection
    /// unusable (nothing was asked for them).
    pub fn handle_input(&mut self, data: &[u8]) -> Result<usize, HttpError> {
        let n = self.parser.handle_input(data)?;
        if self.parser.is_complete() && n < data.len() {
            self.leftover = true;
        }
        Ok(n)
    }

    /// The connection ended (read returned 0, or reset).
    pub fn handle_eof(&mut self) -> Result<(), HttpError> {
        self.parser.handle_eof()
    }

    /// The response, once complete; returned once.
    #[must_use]
    pub fn poll_response(&mut self) -> Option<Response<Bytes>> {
        let response = self.parser.poll_response()?;
        self.keep_alive_timeout = keep_alive_timeout(response.headers());
        Some(response)
    }

    /// Whether the connection can carry another request: the response is
    /// complete, neither side asked to close, nothing followed it.
    pub fn reusable(&self) -> bool {
        self.parser.persistent() && !self.close_requested && !self.leftover
    }

    /// How long the server keeps an idle connection open, from its
    /// `Keep-Alive: timeout=N` field (RFC 2068 19.7.1.1), if it said.
    pub fn keep_alive_timeout(&self) -> Option<Duration> {
        self.keep_alive_timeout
    }

    /// True when a failed exchange should be sent again on a fresh
    /// connection: the connection was reused from a pool
    /// (`connection_was_reused`) and not one byte of a response came back,
    /// which is how a keep-alive connection the server closed while idle
    /// looks. Only one such retry is due; a fresh connection that fails
    /// the same way is an error.
    pub fn retry_on_fresh_connection(&self, connection_was_reused: bool) -> bool {
        connection_was_reused && !self.parser.received_any()
    }
}

/// `Keep-Alive: timeout=N` as a duration.
fn keep_alive_timeout(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all("keep-alive")
        .iter()
        .filter_map(|v: &HeaderValue| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("timeout")
                .then(|| v.trim().parse::<u64>().ok())?
        })
        .map(Duration::from_secs)
        .next()
}
