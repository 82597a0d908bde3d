//! Message framing shared by both directions (RFC 9112 sections 6 and 7):
//! how long a body is, decoding it from bytes as they arrive, and the head
//! parsing both parsers share.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH};
use http::header::{TRANSFER_ENCODING, UPGRADE};

use super::error::HttpError;

/// Size limits on what a peer may send. Anything above them is refused
/// with a typed [`HttpError`] before it is buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Longest head (start line, header fields and the blank line), and
    /// longest trailer section. Default 64 KiB.
    pub max_head_bytes: usize,
    /// Most header fields in a head or trailer section. Default 128.
    pub max_headers: usize,
    /// Longest body. Default 32 MiB (a List Blobs page of 5,000 blobs with
    /// metadata fits many times over).
    pub max_body_bytes: u64,
    /// Longest chunk-size line, extensions included. Default 4 KiB.
    pub max_chunk_line_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 64 * 1024,
            max_headers: 128,
            max_body_bytes: 32 * 1024 * 1024,
            max_chunk_line_bytes: 4096,
        }
    }
}

impl Limits {
    /// These limits with another maximum head size.
    pub fn with_max_head_bytes(mut self, n: usize) -> Self {
        self.max_head_bytes = n;
        self
    }

    /// These limits with another maximum header field count.
    pub fn with_max_headers(mut self, n: usize) -> Self {
        self.max_headers = n;
        self
    }

    /// These limits with another maximum body size.
    pub fn with_max_body_bytes(mut self, n: u64) -> Self {
        self.max_body_bytes = n;
        self
    }
}

/// How the body of a message is delimited (RFC 9112 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// No body at all (HEAD, 1xx, 204, 304, a request without framing
    /// headers).
    Empty,
    /// `Content-Length` bytes.
    Fixed(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the peer closes the connection (a response with
    /// neither header).
    UntilEof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Fixed {
        remaining: u64,
    },
    /// Expecting a chunk-size line.
    ChunkSize,
    ChunkData {
        remaining: u64,
    },
    /// Expecting the CRLF after a chunk's data.
    ChunkEnd,
    Trailers,
    UntilEof,
    Done,
}

/// Decodes one body from bytes as they arrive.
///
/// [`decode`](Self::decode) takes the unconsumed bytes and returns how many
/// it consumed; the caller MUST present the rest again, with more bytes
/// appended, on the next call. Incomplete lines (a chunk size, the trailer
/// section) are left unconsumed until complete, and scanned only once.
#[derive(Debug)]
pub struct BodyDecoder {
    state: State,
    limits: Limits,
    body: Vec<u8>,
    trailers: HeaderMap,
    /// How far an incomplete line was already searched.
    scanned: usize,
}

impl BodyDecoder {
    /// A decoder for a body delimited by `length`. A `Content-Length` above
    /// the limit is refused at once.
    pub fn new(length: BodyLength, limits: Limits) -> Result<Self, HttpError> {
        let state = match length {
            BodyLength::Empty | BodyLength::Fixed(0) => State::Done,
            BodyLength::Fixed(n) if n > limits.max_body_bytes => {
                return Err(HttpError::BodyTooLarge {
                    limit: limits.max_body_bytes,
                })
            }
            BodyLength::Fixed(n) => State::Fixed { remaining: n },
            BodyLength::Chunked => State::ChunkSize,
            BodyLength::UntilEof => State::UntilEof,
        };
        let capacity = match state {
            // A declared length sizes the buffer, up to 1 MiB: a peer
            // that declares more must send it to make the body grow.
            State::Fixed { remaining } => remaining.min(1 << 20) as usize,
            _ => 0,
        };
        Ok(BodyDecoder {
            state,
            limits,
            body: Vec::with_capacity(capacity),
            trailers: HeaderMap::new(),
            scanned: 0,
        })
    }

    /// True once the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// True when only the end of the connection ends this body.
    pub fn reads_until_eof(&self) -> bool {
        self.state == State::UntilEof
    }

    /// Decodes from `data`; returns the number of bytes consumed. Stops at
    /// the end of the body, so bytes after it are not consumed.
    pub fn decode(&mut self, data: &[u8]) -> Result<usize, HttpError> {
        let mut at = 0;
        loop {
            let rest = &data[at..];
            match self.state {
                State::Done => return Ok(at),
                State::Fixed { remaining } | State::ChunkData { remaining } => {
                    if rest.is_empty() {
                        return Ok(at);
                    }
                    let n = rest
                        .len()
                        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    self.append(&rest[..n])?;
                    at += n;
                    let left = remaining - n as u64;
                    self.state = match (self.state, left) {
                        (State::Fixed { .. }, 0) => State::Done,
                        (State::Fixed { .. }, _) => State::Fixed { remaining: left },
                        (_, 0) => State::ChunkEnd,
                        (_, _) => State::ChunkData { remaining: left },
                    };
                }
                State::UntilEof => {
                    self.append(rest)?;
                    return Ok(data.len());
                }
                State::ChunkEnd => {
                    if rest.len() < 2 {
                        if rest.first().is_some_and(|&b| b != b'\r') {
                            return Err(HttpError::MalformedChunk {
                                reason: "chunk data not followed by CRLF",
                            });
                        }
                        return Ok(at);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(HttpError::MalformedChunk {
                            reason: "chunk data not followed by CRLF",
                        });
                    }
                    at += 2;
                    self.state = State::ChunkSize;
                }
                State::ChunkSize => {
                    let Some(line_end) = self.find_line(rest, self.limits.max_chunk_line_bytes)?
                    else {
                        return Ok(at);
                    };
                    let size = parse_chunk_size(&rest[..line_end])?;
                    at += line_end + 2;
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        if self.body.len() as u64 + size > self.limits.max_body_bytes {
                            return Err(HttpError::BodyTooLarge {
                                limit: self.limits.max_body_bytes,
                            });
                        }
                        State::ChunkData { remaining: size }
                    };
                }
                State::Trailers => {
                    if rest.starts_with(b"\r\n") {
                        at += 2;
                        self.state = State::Done;
                        continue;
                    }
                    if rest.len() < 2 {
                        return Ok(at);
                    }
                    let Some(end) = self.find_blank_line(rest)? else {
                        return Ok(at);
                    };
                    self.trailers = parse_trailers(&rest[..end], self.limits.max_headers)?;
                    at += end;
                    self.state = State::Done;
                }
            }
        }
    }

    /// The connection ended. Completes a body read until the end of the
    /// connection; any other unfinished body is an error.
    pub fn finish_at_eof(&mut self) -> Result<(), HttpError> {
        match self.state {
            State::Done => Ok(()),
            State::UntilEof => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(HttpError::UnexpectedEof {
                during: "in the body",
            }),
        }
    }

    /// The decoded body. Complete once [`is_done`](Self::is_done).
    pub fn take_body(&mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut self.body))
    }

    /// The trailer fields of a chunked body (RFC 9112 7.1.2), if any.
    pub fn take_trailers(&mut self) -> HeaderMap {
        std::mem::take(&mut self.trailers)
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), HttpError> {
        if self.body.len() as u64 + bytes.len() as u64 > self.limits.max_body_bytes {
            return Err(HttpError::BodyTooLarge {
                limit: self.limits.max_body_bytes,
            });
        }
        self.body.extend_from_slice(bytes);
        Ok(())
    }

    /// The index of the CRLF ending the line at the start of `rest`, or
    /// `None` if it has not arrived yet.
    fn find_line(&mut self, rest: &[u8], limit: usize) -> Result<Option<usize>, HttpError> {
        let from = self.scanned.saturating_sub(1).min(rest.len());
        match find(&rest[from..], b"\r\n") {
            Some(i) => {
                self.scanned = 0;
                if from + i > limit {
                    return Err(HttpError::MalformedChunk {
                        reason: "chunk-size line too long",
                    });
                }
                Ok(Some(from + i))
            }
            None if rest.len() > limit => Err(HttpError::MalformedChunk {
                reason: "chunk-size line too long",
            }),
            None => {
                self.scanned = rest.len();
                Ok(None)
            }
        }
    }

    /// The length of the trailer section at the start of `rest`, through
    /// its closing blank line, or `None` if it has not all arrived.
    fn find_blank_line(&mut self, rest: &[u8]) -> Result<Option<usize>, HttpError> {
        let limit = self.limits.max_head_bytes;
        let from = self.scanned.saturating_sub(3).min(rest.len());
        match find(&rest[from..], b"\r\n\r\n") {
            Some(i) if from + i + 4 > limit => Err(HttpError::HeadTooLarge { limit }),
            Some(i) => {
                self.scanned = 0;
                Ok(Some(from + i + 4))
            }
            None if rest.len() > limit => Err(HttpError::HeadTooLarge { limit }),
            None => {
                self.scanned = rest.len();
                Ok(None)
            }
        }
    }
}

/// The position of `needle` in `hay`.
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `chunk-size [ chunk-ext ]` (RFC 9112 7.1): hex digits, then optional
/// whitespace and `;`-extensions, which are ignored.
fn parse_chunk_size(line: &[u8]) -> Result<u64, HttpError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(HttpError::MalformedChunk {
            reason: "chunk size is not a hexadecimal number",
        });
    }
    let ext = &line[digits..];
    let ext = ext.trim_ascii_start();
    if !ext.is_empty() && ext[0] != b';' {
        return Err(HttpError::MalformedChunk {
            reason: "junk after the chunk size",
        });
    }
    if ext.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(HttpError::MalformedChunk {
            reason: "control character in a chunk extension",
        });
    }
    let hex = &line[..digits];
    let significant = &hex[hex.iter().take_while(|&&b| b == b'0').count()..];
    if significant.len() > 15 {
        return Err(HttpError::MalformedChunk {
            reason: "chunk size too large",
        });
    }
    Ok(significant.iter().fold(0u64, |n, &b| {
        n * 16 + u64::from((b as char).to_digit(16).unwrap_or(0))
    }))
}

fn parse_trailers(block: &[u8], max_headers: usize) -> Result<HeaderMap, HttpError> {
    let mut slots = vec![httparse::EMPTY_HEADER; max_headers];
    match httparse::parse_headers(block, &mut slots) {
        Ok(httparse::Status::Complete((_, fields))) => {
            let mut map = HeaderMap::new();
            for f in fields {
                let (name, value) = header_pair(f.name, f.value)?;
                map.append(name, value);
            }
            Ok(map)
        }
        Ok(httparse::Status::Partial) => Err(HttpError::MalformedChunk {
            reason: "malformed trailer section",
        }),
        Err(httparse::Error::TooManyHeaders) => {
            Err(HttpError::TooManyHeaders { limit: max_headers })
        }
        Err(_) => Err(HttpError::MalformedChunk {
            reason: "malformed trailer field",
        }),
    }
}

/// One parsed header field as `http` types.
pub(crate) fn header_pair(
    name: &str,
    value: &[u8],
) -> Result<(HeaderName, HeaderValue), HttpError> {
    let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| HttpError::MalformedHead {
        reason: format!("invalid header name {name:?}"),
    })?;
    let v = HeaderValue::from_bytes(value).map_err(|_| HttpError::MalformedHead {
        reason: format!("invalid value of header {name:?}"),
    })?;
    Ok((n, v))
}

/// httparse's error as ours.
pub(crate) fn head_error(e: httparse::Error, max_headers: usize) -> HttpError {
    match e {
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders { limit: max_headers },
        e => HttpError::MalformedHead {
            reason: e.to_string(),
        },
    }
}

/// Finds the end of a head at the start of `data` (after the blank line),
/// resuming the search at `*scanned`. Empty lines before the start line
/// (RFC 9112 2.2) are skipped by the caller.
pub(crate) fn find_head_end(
    data: &[u8],
    scanned: &mut usize,
    limit: usize,
) -> Result<Option<usize>, HttpError> {
    let from = scanned.saturating_sub(2).min(data.len());
    let window = &data[from..];
    let end = window.iter().enumerate().find_map(|(i, &b)| {
        if b != b'\n' {
            return None;
        }
        let after = &window[i + 1..];
        if after.starts_with(b"\n") {
            Some(from + i + 2)
        } else if after.starts_with(b"\r\n") {
            Some(from + i + 3)
        } else {
            None
        }
    });
    match end {
        Some(n) if n > limit => Err(HttpError::HeadTooLarge { limit }),
        Some(n) => {
            *scanned = 0;
            Ok(Some(n))
        }
        None if data.len() > limit => Err(HttpError::HeadTooLarge { limit }),
        None => {
            *scanned = data.len();
            Ok(None)
        }
    }
}

/// The number of CR and LF bytes at the start of `data`.
pub(crate) fn leading_newlines(data: &[u8]) -> usize {
    data.iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()
}

/// The comma-separated tokens of every `name` field, lowercased.
pub(crate) fn tokens(headers: &HeaderMap, name: &HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// What the framing headers say (RFC 9112 6.1-6.3), for a message that
/// may have a body: `Ok(Some(length))`, or `Ok(None)` when neither
/// `Transfer-Encoding` nor `Content-Length` is present. Also returns
/// whether both were present (the connection must then be closed).
pub(crate) fn framing_headers(
    headers: &HeaderMap,
) -> Result<(Option<BodyLength>, bool), HttpError> {
    let te = tokens(headers, &TRANSFER_ENCODING);
    let has_cl = headers.contains_key(CONTENT_LENGTH);
    if headers.contains_key(TRANSFER_ENCODING) {
        let joined = || te.join(", ");
        // Only `chunked`, once, is supported; anything else would need a
        // decoder (gzip...) nobody here asks for.
        if te.len() != 1 || te[0] != "chunked" {
            return Err(HttpError::UnsupportedTransferEncoding { value: joined() });
        }
        return Ok((Some(BodyLength::Chunked), has_cl));
    }
    if !has_cl {
        return Ok((None, false));
    }
    let mut length: Option<u64> = None;
    let mut all = Vec::new();
    for v in headers.get_all(CONTENT_LENGTH) {
        for part in v.as_bytes().split(|&b| b == b',') {
            let part = part.trim_ascii();
            all.push(String::from_utf8_lossy(part).into_owned());
            let n = parse_decimal(part);
            match (n, length) {
                (None, _) => {
                    return Err(HttpError::InvalidContentLength {
                        value: all.join(","),
                    })
                }
                (Some(n), Some(l)) if n != l => {
                    return Err(HttpError::InvalidContentLength {
                        value: all.join(","),
                    })
                }
                (Some(n), _) => length = Some(n),
            }
        }
    }
    match length {
        Some(n) => Ok((Some(BodyLength::Fixed(n)), false)),
        None => Err(HttpError::InvalidContentLength {
            value: String::new(),
        }),
    }
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Whether a message of this minor `version` with these headers leaves the
/// connection open (RFC 9112 9.3): HTTP/1.1 unless `Connection: close`,
/// HTTP/1.0 only with `Connection: keep-alive`.
pub(crate) fn persistent(minor_version: u8, headers: &HeaderMap) -> bool {
    let connection = tokens(headers, &CONNECTION);
    if connection.iter().any(|t| t == "close")
        || headers.contains_key(UPGRADE) && connection.iter().any(|t| t == "upgrade")
    {
        return false;
    }
    minor_version >= 1 || connection.iter().any(|t| t == "keep-alive")
}
