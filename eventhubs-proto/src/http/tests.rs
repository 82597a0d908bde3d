//! Unit tests of the exchange: every response split at every byte,
//! framing, limits, reuse and the retry rule.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};

use super::*;

fn get(uri: &str) -> Request<Bytes> {
    Request::get(uri).body(Bytes::new()).unwrap()
}

/// Feeds `wire` in pieces cut at `cuts`, as a driver does: unconsumed
/// bytes are kept and presented again with the next piece.
fn feed(parser: &mut ResponseParser, wire: &[u8], cuts: &[usize]) -> Result<usize, HttpError> {
    let mut pending: Vec<u8> = Vec::new();
    let mut last = 0;
    let mut consumed = 0;
    for &cut in cuts.iter().chain(std::iter::once(&wire.len())) {
        pending.extend_from_slice(&wire[last..cut]);
        last = cut;
        let n = parser.handle_input(&pending)?;
        consumed += n;
        pending.drain(..n);
        if parser.is_complete() {
            break;
        }
    }
    Ok(consumed)
}

fn parse_whole(method: &Method, wire: &[u8]) -> (Response<Bytes>, usize, bool) {
    let mut p = ResponseParser::new(method, Limits::default());
    let n = feed(&mut p, wire, &[]).expect("parses");
    let persistent = p.persistent();
    (p.poll_response().expect("complete"), n, persistent)
}

/// Parses `wire` whole, split in two at every byte, and a byte at a time;
/// all must give the same response and consume the same bytes.
fn check_every_split(method: &Method, wire: &[u8], expect_body: &[u8]) -> Response<Bytes> {
    let (whole, n, persistent) = parse_whole(method, wire);
    assert_eq!(&whole.body()[..], expect_body);
    for cut in 0..=wire.len() {
        let mut p = ResponseParser::new(method, Limits::default());
        let m = feed(&mut p, wire, &[cut]).expect("parses when split");
        assert_eq!(m, n, "consumed at split {cut}");
        assert_eq!(p.persistent(), persistent);
        let r = p
            .poll_response()
            .unwrap_or_else(|| panic!("complete at split {cut}"));
        assert_eq!(r.status(), whole.status());
        assert_eq!(r.headers(), whole.headers());
        assert_eq!(r.body(), whole.body(), "body at split {cut}");
    }
    let mut p = ResponseParser::new(method, Limits::default());
    let cuts: Vec<usize> = (1..wire.len()).collect();
    assert_eq!(feed(&mut p, wire, &cuts).expect("byte at a time"), n);
    assert_eq!(p.poll_response().expect("complete").body(), whole.body());
    whole
}

#[test]
fn content_length_at_every_split() {
    let wire = b"HTTP/1.1 201 Created\r\nETag: \"0x1\"\r\nContent-Length: 5\r\n\r\nhello";
    let r = check_every_split(&Method::PUT, wire, b"hello");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["etag"], "\"0x1\"");
}

#[test]
fn chunked_with_extensions_and_trailers_at_every_split() {
    let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;name=value\r\nhello\r\n1 \r\n,\r\n0006\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n";
    let r = check_every_split(&Method::GET, wire, b"hello, world");
    let trailers = r.extensions().get::<Trailers>().expect("trailers");
    assert_eq!(trailers.0["x-checksum"], "abc");
}

#[test]
fn chunked_without_trailers_at_every_split() {
    // Azurite's error replies and List Blobs pages look like this.
    let xml =
        b"<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>ContainerNotFound</Code></Error>";
    let mut wire = b"HTTP/1.1 404 The specified container does not exist.\r\nx-ms-error-code: ContainerNotFound\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    wire.extend_from_slice(format!("{:x}\r\n", xml.len()).as_bytes());
    wire.extend_from_slice(xml);
    wire.extend_from_slice(b"\r\n0\r\n\r\n");
    let r = check_every_split(&Method::GET, &wire, xml);
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[test]
fn head_and_bodiless_statuses_have_no_body() {
    // A HEAD 200 carries the blob's length, but no body follows.
    let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nx-ms-meta-ownerid: a\r\n\r\n";
    let r = check_every_split(&Method::HEAD, wire, b"");
    assert_eq!(r.headers()["content-length"], "1234");
    // A HEAD 404 with neither framing header (Azurite) is complete too.
    let wire = b"HTTP/1.1 404 Not Found\r\nx-ms-error-code: BlobNotFound\r\n\r\n";
    let (_, n, persistent) = parse_whole(&Method::HEAD, wire);
    assert_eq!(n, wire.len());
    assert!(persistent);
    for status in ["204 No Content", "304 Not Modified"] {
        let wire = format!("HTTP/1.1 {status}\r\nContent-Length: 10\r\n\r\n");
        check_every_split(&Method::GET, wire.as_bytes(), b"");
    }
}

#[test]
fn interim_responses_are_skipped() {
    let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let r = check_every_split(&Method::PUT, wire, b"ok");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!r.headers().contains_key("link"));
    let mut p = ResponseParser::new(&Method::GET, Limits::default());
    assert_eq!(
        p.handle_input(b"HTTP/1.1 101 Switching Protocols\r\n\r\n"),
        Err(HttpError::UnexpectedUpgrade)
    );
    let many = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(17);
    let mut p = ResponseParser::new(&Method::GET, Limits::default());
    assert!(matches!(
        p.handle_input(&many),
        Err(HttpError::TooManyInterimResponses { .. })
    ));
}

#[test]
fn read_until_eof_and_connection_reuse() {
    let wire = b"HTTP/1.1 200 OK\r\n\r\nall of it";
    let mut p = ResponseParser::new(&Method::GET, Limits::default());
    assert_eq!(p.handle_input(wire), Ok(wire.len()));
    assert!(p.poll_response().is_none());
    p.handle_eof().expect("EOF ends the body");
    assert!(!p.persistent());
    assert_eq!(
        &p.poll_response().expect("complete").body()[..],
        b"all of it"
    );

    let close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    assert!(!parse_whole(&Method::GET, close).2);
    let http10 = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert!(!parse_whole(&Method::GET, http10).2);
    let http10_keep = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n";
    assert!(parse_whole(&Method::GET, http10_keep).2);
    let both = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n";
    let (r, _, persistent) = parse_whole(&Method::GET, both);
    assert_eq!(&r.body()[..], b"a");
    assert!(!persistent, "both framing headers: close afterwards");
}

#[test]
fn eof_errors_say_where() {
    let mut p = ResponseParser::new(&Method::GET, Limits::default());
    let e = p.handle_eof().unwrap_err();
    assert!(e.is_closed_before_response(), "{e}");
    let mut p = ResponseParser::new(&Method::GET, Limits::default());
    p.handle_input(b"HTTP/1.1 200").unwrap();
    assert_eq!(
        p.handle_eof(),
        Err(HttpError::UnexpectedEof {
            during: "in the head"
        })
    );
    let mut p = ResponseParser::new(&Method::GET, Limits::default());
    p.handle_input(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort")
        .unwrap();
    assert_eq!(
        p.handle_eof(),
        Err(HttpError::UnexpectedEof {
            during: "in the body"
        })
    );
    let mut p = ResponseParser::new(&Method::GET, Limits::default());
    p.handle_input(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
        .unwrap();
    assert!(p.handle_eof().is_err());
}

#[test]
fn oversize_is_refused() {
    let small = Limits::default()
        .with_max_head_bytes(64)
        .with_max_body_bytes(8)
        .with_max_headers(2);
    // A head that never ends.
    let mut p = ResponseParser::new(&Method::GET, small);
    let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
    endless.extend(std::iter::repeat_n(b'a', 100));
    assert_eq!(
        p.handle_input(&endless),
        Err(HttpError::HeadTooLarge { limit: 64 })
    );
    // Too many fields.
    let mut p = ResponseParser::new(&Method::GET, small);
    assert_eq!(
        p.handle_input(b"HTTP/1.1 200 OK\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n"),
        Err(HttpError::TooManyHeaders { limit: 2 })
    );
    // A declared length above the limit is refused before any body byte.
    let mut p = ResponseParser::new(&Method::GET, small);
    assert_eq!(
        p.handle_input(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"),
        Err(HttpError::BodyTooLarge { limit: 8 })
    );
    // Chunks adding up past the limit.
    let mut p = ResponseParser::new(&Method::GET, small);
    assert_eq!(
        p.handle_input(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n4\r\n"),
        Err(HttpError::BodyTooLarge { limit: 8 })
    );
    // A body until EOF past the limit.
    let mut p = ResponseParser::new(&Method::GET, small);
    assert_eq!(
        p.handle_input(b"HTTP/1.1 200 OK\r\n\r\n123456789"),
        Err(HttpError::BodyTooLarge { limit: 8 })
    );
    // A chunk size that overflows, and an endless chunk-size line.
    let mut p = ResponseParser::new(&Method::GET, Limits::default());
    assert!(matches!(
        p.handle_input(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n"
        ),
        Err(HttpError::MalformedChunk { .. } | HttpError::BodyTooLarge { .. })
    ));
    let mut p = ResponseParser::new(&Method::GET, Limits::default());
    let mut long = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;".to_vec();
    long.extend(std::iter::repeat_n(b'x', 5000));
    assert!(matches!(
        p.handle_input(&long),
        Err(HttpError::MalformedChunk { .. })
    ));
}

#[test]
fn malformed_framing_is_refused() {
    for (wire, what) in [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"[..],
            "negative length",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
            "two lengths",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "two fields",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "overflow",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "gzip",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "hex",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc",
            "no CRLF after data",
        ),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "status"),
        (b"HTTP/2.0 200 OK\r\n\r\n", "version"),
        (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "header name"),
    ] {
        let mut p = ResponseParser::new(&Method::GET, Limits::default());
        assert!(p.handle_input(wire).is_err(), "{what}");
        assert!(p.poll_response().is_none());
    }
    // Repeated identical lengths are one length (RFC 9110 8.6).
    let (r, _, _) = parse_whole(
        &Method::GET,
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
    );
    assert_eq!(&r.body()[..], b"ok");
}

#[test]
fn requests_are_written_with_host_and_length() {
    let mut out = Vec::new();
    let r = Request::put("https://acct.blob.core.windows.net/c/a%2Fb?comp=metadata")
        .header("x-ms-meta-ownerid", "me")
        .body(Bytes::new())
        .unwrap();
    write_request(&r, &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "PUT /c/a%2Fb?comp=metadata HTTP/1.1\r\nhost: acct.blob.core.windows.net\r\nx-ms-meta-ownerid: me\r\ncontent-length: 0\r\n\r\n"
    );
    let mut out = Vec::new();
    let r = Request::post("http://127.0.0.1:8080/token")
        .header("host", "login.example")
        .body(Bytes::from_static(b"a=b"))
        .unwrap();
    write_request(&r, &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "POST /token HTTP/1.1\r\nhost: login.example\r\ncontent-length: 3\r\n\r\na=b"
    );
    let mut out = Vec::new();
    write_request(&get("http://h"), &mut out).unwrap();
    assert!(out.starts_with(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n"));

    let no_host = Request::get("/x").body(Bytes::new()).unwrap();
    assert_eq!(
        write_request(&no_host, &mut Vec::new()),
        Err(RequestError::MissingHost)
    );
    let wrong = Request::put("http://h/")
        .header("content-length", "3")
        .body(Bytes::from_static(b"ab"))
        .unwrap();
    assert!(matches!(
        write_request(&wrong, &mut Vec::new()),
        Err(RequestError::InvalidFraming { .. })
    ));
    let chunked = Request::put("http://h/")
        .header("transfer-encoding", "chunked")
        .body(Bytes::new())
        .unwrap();
    assert!(write_request(&chunked, &mut Vec::new()).is_err());
}

#[test]
fn exchange_reuse_and_retry_rule() {
    let mut x = Exchange::new(&get("http://h/"), Limits::default()).unwrap();
    assert!(x.poll_transmit().is_some());
    assert!(x.poll_transmit().is_none(), "the request is given once");
    // Closed before any byte: retry, but only on a reused connection.
    assert!(x.handle_eof().unwrap_err().is_closed_before_response());
    assert!(x.retry_on_fresh_connection(true));
    assert!(!x.retry_on_fresh_connection(false));

    // A reply byte arrived: no retry.
    let mut x = Exchange::new(&get("http://h/"), Limits::default()).unwrap();
    x.handle_input(b"HTTP/1.1 5").unwrap();
    assert!(x.handle_eof().is_err());
    assert!(!x.retry_on_fresh_connection(true));

    let mut x = Exchange::new(&get("http://h/"), Limits::default()).unwrap();
    let wire = b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(x.handle_input(wire), Ok(wire.len()));
    assert!(x.poll_response().is_some());
    assert!(x.reusable());
    assert_eq!(
        x.keep_alive_timeout(),
        Some(std::time::Duration::from_secs(5))
    );

    // Bytes after the response: not reusable.
    let mut x = Exchange::new(&get("http://h/"), Limits::default()).unwrap();
    let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n";
    assert_eq!(x.handle_input(wire), Ok(38));
    assert!(x.poll_response().is_some());
    assert!(!x.reusable());

    // We asked to close: not reusable.
    let r = Request::get("http://h/")
        .header("connection", "close")
        .body(Bytes::new())
        .unwrap();
    let mut x = Exchange::new(&r, Limits::default()).unwrap();
    x.handle_input(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    assert!(x.poll_response().is_some());
    assert!(!x.reusable());
}

#[test]
fn request_parser_shares_the_framing() {
    let wire = b"\r\nPUT /c/b?comp=metadata HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    let end = wire.len() - b"GET / HTTP/1.1\r\n".len();
    for cut in 0..=wire.len() {
        let mut p = RequestParser::new(Limits::default());
        let mut pending = wire[..cut].to_vec();
        let n = p.handle_input(&pending).unwrap();
        pending.drain(..n);
        pending.extend_from_slice(&wire[cut..]);
        let m = p.handle_input(&pending).unwrap();
        assert_eq!(n + m, end, "split at {cut}");
        let r = p.poll_request().expect("request");
        assert_eq!(r.method(), Method::PUT);
        assert_eq!(r.uri().query(), Some("comp=metadata"));
        assert_eq!(&r.body()[..], b"abc");
        assert!(p.persistent());
    }
    let mut p = RequestParser::new(Limits::default());
    p.handle_input(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    assert!(p.poll_request().expect("bodiless").body().is_empty());
    let mut p = RequestParser::new(Limits::default());
    assert!(p
        .handle_input(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
        .is_err());

    // A response written by the server side parses on the client side.
    let response = Response::builder()
        .status(201)
        .header("etag", "\"0x2\"")
        .body(Bytes::from_static(b"done"))
        .unwrap();
    let mut out = Vec::new();
    write_response(&response, false, &mut out);
    let (r, n, persistent) = parse_whole(&Method::PUT, &out);
    assert_eq!(
        (r.status().as_u16(), &r.body()[..], n, persistent),
        (201, &b"done"[..], out.len(), true)
    );
}
