//! The `management_request` harness: HTTP request bytes to the emulator's
//! management handler's decision, against the broker model.
//!
//! Input: one byte of flags, then a byte stream of HTTP/1.1 requests (as
//! a client would pipeline them on one connection).
//!
//! - bit 0: sign each request with the default policy
//!   (`RootManageSharedAccessKey`, Manage rights) over its URL, replacing
//!   any `Authorization` it has, so inputs get past authorization;
//! - bit 1: sign with a policy without Manage rights instead;
//! - bits 2-3: the clock advances 0, 1 s, 1 h or 8 days per request.
//!
//! Requests are parsed with the core's `RequestParser` within the HTTP
//! listener's limits, answered by `eventhubs_emulator::management::handle`
//! (decide, then apply), and the reply written as the listener writes it.
//! Invariants, checked on every request:
//!
//! - no panic; the reply's status is one the handler documents;
//! - an error reply carries `<Error>` XML whose `Code` is the status;
//! - a 200/201 entry or feed reads back with the core's reply parser
//!   (hub or consumer group), and an entry's partition ids are `0..n`;
//! - the broker's hubs stay within the quota, have 1 to 32 partitions,
//!   unique names (ignoring case), and `$Default` in every hub.

use std::time::{Duration, Instant};

use bytes::Bytes;
use eventhubs_emulator::config::Policy;
use eventhubs_emulator::http_server::limits;
use eventhubs_emulator::management::{handle, MAX_HUBS};
use eventhubs_emulator::{Broker, EmulatorConfig, Now};
use eventhubs_proto::eventhubs::SasKeyProvider;
use eventhubs_proto::http::{write_response, RequestParser};
use eventhubs_proto::management::xml::{
    parse_consumer_group_reply, parse_error, parse_hub_reply, Reply,
};
use eventhubs_proto::management::{sign, ATOM_ENTRY_CONTENT_TYPE, ATOM_FEED_CONTENT_TYPE};
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{Request, Uri};

/// The emulator's clock at the start of every run.
const START_UNIX_MS: i64 = 1_700_000_000_000;

/// Statuses the handler answers with.
const STATUSES: [u16; 12] = [200, 201, 400, 401, 403, 404, 405, 409, 412, 413, 431, 500];

fn check_broker(broker: &Broker) {
    let hubs = broker.hubs();
    assert!(hubs.len() <= MAX_HUBS + broker.config().hubs.len());
    for (i, h) in hubs.iter().enumerate() {
        assert!((1..=32).contains(&h.partition_count), "{h:?}");
        assert!(
            hubs[..i]
                .iter()
                .all(|o| !o.name.eq_ignore_ascii_case(&h.name)),
            "duplicate hub {}",
            h.name
        );
        assert!(
            h.consumer_groups
                .iter()
                .any(|g| g.name.eq_ignore_ascii_case("$Default")),
            "{h:?}"
        );
    }
}

fn check_reply(response: &http::Response<Bytes>) {
    let status = response.status().as_u16();
    assert!(STATUSES.contains(&status), "status {status}");
    let body = response.body();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if status >= 400 {
        let (code, _) = parse_error(body).expect("an error reply carries <Error> XML");
        assert_eq!(code.as_deref(), Some(response.status().as_str()));
        return;
    }
    if body.is_empty() {
        return;
    }
    if content_type == ATOM_ENTRY_CONTENT_TYPE || content_type == ATOM_FEED_CONTENT_TYPE {
        let as_hub = parse_hub_reply(body);
        let as_group = parse_consumer_group_reply(body);
        assert!(
            as_hub.is_ok() || as_group.is_ok(),
            "a success reply reads back: {as_hub:?} / {as_group:?}"
        );
        if let Ok(Reply::Entry(hub)) = as_hub {
            let count = hub.partition_count.expect("a partition count") as usize;
            assert_eq!(hub.partition_ids.len(), count);
            assert!(hub
                .partition_ids
                .iter()
                .enumerate()
                .all(|(i, p)| *p == i.to_string()));
        }
    }
}

/// Replaces `Authorization` with a SAS of `key` over the request's URL.
fn sign_with(request: &mut Request<Bytes>, key: &mut SasKeyProvider, now_unix: u64) {
    let host = request
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or("localhost")
        .to_owned();
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    request.headers_mut().remove(AUTHORIZATION);
    // Sign over an absolute URL, as a client does; the request itself keeps
    // its origin-form target.
    let original = request.uri().clone();
    let Ok(absolute) = format!("http://{host}{target}").parse::<Uri>() else {
        return;
    };
    *request.uri_mut() = absolute;
    let _ = sign(request, key, now_unix);
    *request.uri_mut() = original;
}

/// Runs one input; returns the status of every reply, in order (for the
/// native tests that replay inputs).
pub fn run(data: &[u8]) -> Vec<u16> {
    let mut statuses = Vec::new();
    let Some((&flags, stream)) = data.split_first() else {
        return statuses;
    };
    let mut config = EmulatorConfig::default();
    config.policies.push(Policy {
        name: "SendListen".into(),
        key: "send-listen-key".into(),
        send: true,
        listen: true,
        manage: false,
    });
    let t0 = Instant::now();
    let mut now = Now {
        instant: t0,
        unix_ms: START_UNIX_MS,
    };
    let step_ms: i64 = match (flags >> 2) & 3 {
        0 => 0,
        1 => 1000,
        2 => 3_600_000,
        _ => 8 * 86_400_000,
    };
    let mut broker = Broker::new(config, now);
    let mut manage = SasKeyProvider::new("RootManageSharedAccessKey", "SAS_KEY_VALUE")
        .expect("the default policy");
    let mut weak = SasKeyProvider::new("SendListen", "send-listen-key").expect("a policy");
    let mut at = 0;
    let mut out = Vec::new();
    while at < stream.len() {
        let mut parser = RequestParser::new(limits());
        let consumed = match parser.handle_input(&stream[at..]) {
            Ok(n) => n,
            // The listener answers 400 and closes.
            Err(_) => {
                statuses.push(400);
                return statuses;
            }
        };
        at += consumed;
        let Some(mut request) = parser.poll_request() else {
            let _ = parser.handle_eof();
            return statuses;
        };
        let now_unix = (now.unix_ms / 1000) as u64;
        if flags & 2 != 0 {
            sign_with(&mut request, &mut weak, now_unix);
        } else if flags & 1 != 0 {
            sign_with(&mut request, &mut manage, now_unix);
        }
        let response = handle(&mut broker, now, &request);
        check_reply(&response);
        statuses.push(response.status().as_u16());
        out.clear();
        write_response(&response, false, &mut out);
        check_broker(&broker);
        if !parser.persistent() || consumed == 0 {
            break;
        }
        now.unix_ms += step_ms;
        now.instant += Duration::from_millis(step_ms as u64);
    }
    statuses
}
