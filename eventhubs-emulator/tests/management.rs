//! The management API over the emulator's HTTP listener: hubs and consumer
//! groups created, updated, listed and deleted at run time, at once usable
//! (and detached) over AMQP; the service's refusals; `--data-dir`.
//!
//! Requests are built and signed by the core (`eventhubs_proto::management`)
//! and sent with a blocking loop over the core's sans-IO HTTP exchange.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use eventhubs_emulator::config::Policy;
use eventhubs_emulator::{Emulator, EmulatorConfig};
use eventhubs_proto::codec::message::Message;
use eventhubs_proto::codec::messaging::DeliveryState;
use eventhubs_proto::codec::{Decode, Encode};
use eventhubs_proto::engine::{Event, LinkId};
use eventhubs_proto::eventhubs::sas::{sign as sign_sas, ResourceEncoding};
use eventhubs_proto::eventhubs::{EventPosition, SasKeyProvider};
use eventhubs_proto::http::{Exchange, Limits};
use eventhubs_proto::management::xml::parse_error;
use eventhubs_proto::management::*;
use eventhubs_testkit::tcp::{emulator_plain, event, event_number, EngineClient as Client};
use eventhubs_testkit::TempDir;
use http::{Method, Request, Response};

const WAIT: Duration = Duration::from_secs(10);

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sends `request` on a new connection and reads the response.
fn send(addr: SocketAddr, request: &Request<Bytes>) -> Response<Bytes> {
    let mut exchange = Exchange::new(request, Limits::default()).expect("request");
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
        .write_all(&exchange.poll_transmit().expect("bytes"))
        .unwrap();
    let mut buf = vec![0; 64 * 1024];
    loop {
        if let Some(r) = exchange.poll_response() {
            return r;
        }
        let n = stream.read(&mut buf).expect("read");
        if n == 0 {
            exchange.handle_eof().expect("complete at EOF");
        } else {
            let used = exchange.handle_input(&buf[..n]).expect("valid HTTP");
            assert_eq!(used, n);
        }
    }
}

/// Raw bytes in, raw bytes out (until the server closes).
fn send_raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

struct Manager {
    addr: SocketAddr,
    endpoint: ManagementEndpoint,
    key: SasKeyProvider,
}

impl Manager {
    fn new(emulator: &Emulator) -> Manager {
        Manager::with_key(emulator, "RootManageSharedAccessKey", "SAS_KEY_VALUE")
    }

    fn with_key(emulator: &Emulator, name: &str, key: &str) -> Manager {
        let url = emulator.management_endpoint().expect("management listener");
        Manager {
            addr: emulator.management_addr().unwrap(),
            endpoint: ManagementEndpoint::parse(&url).unwrap(),
            key: SasKeyProvider::new(name, key).unwrap(),
        }
    }

    fn signed(&mut self, mut request: Request<Bytes>) -> Response<Bytes> {
        sign(&mut request, &mut self.key, now_unix()).unwrap();
        send(self.addr, &request)
    }

    fn put(&mut self, name: &str, d: &HubDescription, mode: PutMode) -> Response<Bytes> {
        let r = self.endpoint.put_hub(name, d, mode).unwrap();
        self.signed(r)
    }

    fn get(&mut self, name: &str) -> Option<HubEntity> {
        let r = self.endpoint.get_hub(name).unwrap();
        optional_hub_from_response(&self.signed(r)).unwrap()
    }

    fn list(&mut self) -> Vec<HubEntity> {
        let r = self.endpoint.list_hubs().unwrap();
        hubs_from_response(&self.signed(r)).unwrap()
    }

    fn delete(&mut self, name: &str) -> Response<Bytes> {
        let r = self.endpoint.delete_hub(name).unwrap();
        self.signed(r)
    }
}

/// The status and the `Detail` of an error reply.
fn refused(r: &Response<Bytes>) -> (u16, String) {
    let (code, detail) = parse_error(r.body()).unwrap_or_else(|| {
        panic!(
            "not error XML: {} {}",
            r.status(),
            String::from_utf8_lossy(r.body())
        )
    });
    assert_eq!(
        code.as_deref(),
        Some(r.status().as_str()),
        "Code is the status"
    );
    (r.status().as_u16(), detail.unwrap_or_default())
}

fn emulator() -> Emulator {
    Emulator::builder()
        .management(true)
        .start()
        .expect("emulator")
}

fn publish(c: &mut Client, tx: LinkId, payload: Bytes) {
    let state = c.publish(tx, 0, payload);
    assert!(matches!(state, DeliveryState::Accepted(_)), "{state:?}");
}

fn receive_one(c: &mut Client, rx: LinkId) -> u64 {
    let payload = c
        .until(WAIT, |_, e| match e {
            Event::Delivery { link, payload, .. } if *link == rx => Some(payload.clone()),
            _ => None,
        })
        .expect("an event");
    event_number(&Message::decode_all(&payload).unwrap()).unwrap()
}

fn detached_with(c: &mut Client, rx: LinkId) -> String {
    c.until(WAIT, |_, e| match e {
        Event::LinkDetached { link, error, .. } if *link == rx => Some(
            error
                .as_ref()
                .map(|e| e.condition.to_string())
                .unwrap_or_default(),
        ),
        _ => None,
    })
    .expect("a detach")
}

#[test]
fn a_hub_created_at_run_time_is_served_over_amqp_until_deleted() {
    let emu = emulator();
    let mut m = Manager::new(&emu);
    let d = HubDescription::new()
        .with_partition_count(5)
        .with_message_retention_in_days(3)
        .with_user_metadata("team: ingest");
    let r = m.put("telemetry", &d, PutMode::Create);
    assert_eq!(r.status(), 201, "{}", String::from_utf8_lossy(r.body()));
    assert_eq!(
        r.headers()["content-type"],
        "application/atom+xml;type=entry;charset=utf-8"
    );
    let hub = hub_from_response(&r).unwrap();
    assert_eq!(hub.name, "telemetry");
    assert_eq!(hub.partition_count, Some(5));
    assert_eq!(hub.partition_ids, ["0", "1", "2", "3", "4"]);
    assert_eq!(hub.message_retention_in_days, Some(3));
    assert_eq!(hub.status, Some(EntityStatus::Active));
    assert_eq!(hub.user_metadata.as_deref(), Some("team: ingest"));
    assert_eq!(hub.entity_availability_status.as_deref(), Some("Available"));
    assert!(hub.created_at.is_some() && hub.created_at == hub.updated_at);

    let names: Vec<String> = m.list().into_iter().map(|h| h.name).collect();
    assert_eq!(
        names,
        ["eh1", "telemetry"],
        "configured hubs are listed too"
    );

    // Every partition takes and gives events at once.
    let mut c = Client::connect(emu.addr(), emulator_plain()).expect("connect");
    let mut receivers = Vec::new();
    for p in 0..5u64 {
        let tx = c
            .sender(&format!("telemetry/Partitions/{p}"))
            .expect("sender");
        publish(&mut c, tx, event(p, 100).to_bytes());
        let rx = c
            .receiver(
                &format!("telemetry/ConsumerGroups/$Default/Partitions/{p}"),
                Some(EventPosition::Earliest),
            )
            .expect("receiver");
        c.conn.link(rx).flow(10).unwrap();
        assert_eq!(receive_one(&mut c, rx), p);
        receivers.push(rx);
    }
    assert!(m.get("telemetry").unwrap().size_in_bytes.unwrap() > 0);

    // Update: with If-Match: * only; the partition count cannot change.
    let r = m.put(
        "telemetry",
        &d.clone().with_message_retention_in_days(5),
        PutMode::Create,
    );
    let (status, detail) = refused(&r);
    assert_eq!(status, 409, "{detail}");
    assert!(detail.contains("already exists"), "{detail}");
    let r = m.put(
        "telemetry",
        &HubDescription::new()
            .with_partition_count(5)
            .with_message_retention_in_days(5),
        PutMode::Update,
    );
    assert_eq!(r.status(), 200);
    let updated = hub_from_response(&r).unwrap();
    assert_eq!(updated.message_retention_in_days, Some(5));
    assert_eq!(updated.user_metadata, None, "omitted properties are reset");
    assert_eq!(updated.created_at, hub.created_at);
    assert!(updated.updated_at >= hub.updated_at);
    assert_eq!(
        m.get("TELEMETRY").unwrap().message_retention_in_days,
        Some(5)
    );
    let r = m.put(
        "telemetry",
        &HubDescription::new().with_partition_count(6),
        PutMode::Update,
    );
    assert_eq!(refused(&r).0, 400);
    let r = m.put("nothere", &HubDescription::new(), PutMode::Update);
    assert_eq!(refused(&r).0, 404);

    // Delete: the receivers and senders are detached with amqp:not-found.
    let r = m.delete("telemetry");
    assert_eq!(r.status(), 200);
    for rx in receivers {
        assert_eq!(detached_with(&mut c, rx), "amqp:not-found");
    }
    assert_eq!(m.get("telemetry"), None, "a missing hub is the empty feed");
    let e = deleted_from_response(&m.delete("telemetry")).unwrap_err();
    assert!(e.service().unwrap().is_not_found(), "{e}");
    let refused_attach = c.sender("telemetry").expect_err("no such hub");
    assert_eq!(
        refused_attach.map(|e| e.condition.to_string()).as_deref(),
        Some("amqp:not-found")
    );
    // eh1 is untouched (and its links keep their hub after the index shift).
    let tx = c.sender("eh1/Partitions/1").expect("sender");
    publish(&mut c, tx, event(9, 10).to_bytes());
    let names: Vec<String> = m.list().into_iter().map(|h| h.name).collect();
    assert_eq!(names, ["eh1"]);
}

#[test]
fn links_of_later_hubs_survive_the_deletion_of_an_earlier_one() {
    let emu = emulator();
    let mut m = Manager::new(&emu);
    for name in ["first", "second"] {
        let r = m.put(
            name,
            &HubDescription::new().with_partition_count(2),
            PutMode::Create,
        );
        assert_eq!(r.status(), 201);
    }
    let mut c = Client::connect(emu.addr(), emulator_plain()).expect("connect");
    let rx = c
        .receiver(
            "second/ConsumerGroups/$Default/Partitions/1",
            Some(EventPosition::Earliest),
        )
        .expect("receiver");
    c.conn.link(rx).flow(10).unwrap();
    let tx = c.sender("second/Partitions/1").expect("sender");
    assert_eq!(m.delete("first").status(), 200);
    publish(&mut c, tx, event(42, 10).to_bytes());
    assert_eq!(receive_one(&mut c, rx), 42);
    assert_eq!(
        m.get("second").unwrap().size_in_bytes,
        m.list()[1].size_in_bytes
    );
}

#[test]
fn the_services_refusals() {
    let mut config = EmulatorConfig::default();
    config.policies.push(Policy {
        name: "SendOnly".into(),
        key: "send-key".into(),
        send: true,
        listen: true,
        manage: false,
    });
    let emu = Emulator::builder()
        .config(config)
        .management(true)
        .start()
        .unwrap();
    let mut m = Manager::new(&emu);

    // A policy without Manage rights.
    let mut weak = Manager::with_key(&emu, "SendOnly", "send-key");
    let r = weak.put("h", &HubDescription::new(), PutMode::Create);
    let (status, detail) = refused(&r);
    assert_eq!(status, 401);
    assert!(
        detail.contains("'Manage' claim(s) are required"),
        "{detail}"
    );
    let r = weak.signed(weak.endpoint.list_hubs().unwrap());
    assert_eq!(refused(&r).0, 401);

    // No token, a wrong key, an expired one, one for another entity, a JWT.
    let unsigned = m.endpoint.list_hubs().unwrap();
    let (status, detail) = refused(&send(m.addr, &unsigned));
    assert_eq!(status, 401);
    assert!(detail.starts_with("MissingToken"), "{detail}");
    let mut wrong = Manager::with_key(&emu, "RootManageSharedAccessKey", "not-the-key");
    let (status, detail) = refused(&wrong.signed(wrong.endpoint.list_hubs().unwrap()));
    assert_eq!(status, 401);
    assert!(detail.contains("invalid signature"), "{detail}");
    let with_token = |token: String| {
        let mut r = m.endpoint.get_hub("eh1").unwrap();
        r.headers_mut()
            .insert("authorization", token.parse().unwrap());
        refused(&send(m.addr, &r))
    };
    let url = sas_audience(&m.endpoint.get_hub("eh1").unwrap());
    let expired = sign_sas(
        &url,
        "RootManageSharedAccessKey",
        "SAS_KEY_VALUE",
        now_unix() - 10,
        ResourceEncoding::GoLowercase,
    )
    .unwrap();
    assert!(with_token(expired).1.starts_with("ExpiredToken"));
    let other = sign_sas(
        &format!("{}/eh2", m.endpoint.base_url()),
        "RootManageSharedAccessKey",
        "SAS_KEY_VALUE",
        now_unix() + 600,
        ResourceEncoding::Uppercase,
    )
    .unwrap();
    assert!(with_token(other).1.starts_with("InvalidAudience"));
    assert!(with_token("Bearer eyJhbGciOi.eyJhdWQiOi.c2ln".into())
        .1
        .contains("JWT"));

    // Tokens for the namespace: the bare host, an explicit port, Uppercase.
    for resource in [
        "127.0.0.1".to_string(),
        format!("http://127.0.0.1:{}/", m.addr.port()),
        "sb://emulatorns1.servicebus.windows.net/EH1".to_string(),
    ] {
        let token = sign_sas(
            &resource,
            "RootManageSharedAccessKey",
            "SAS_KEY_VALUE",
            now_unix() + 600,
            ResourceEncoding::Uppercase,
        )
        .unwrap();
        let mut r = m.endpoint.get_hub("eh1").unwrap();
        r.headers_mut()
            .insert("authorization", token.parse().unwrap());
        let reply = send(m.addr, &r);
        assert_eq!(reply.status(), 200, "{resource}");
    }

    // Values out of range and names the service refuses.
    for (d, needle) in [
        (
            HubDescription::new().with_partition_count(0),
            "PartitionCount",
        ),
        (
            HubDescription::new().with_partition_count(33),
            "PartitionCount",
        ),
        (
            HubDescription::new().with_message_retention_in_days(0),
            "MessageRetentionInDays",
        ),
        (
            HubDescription::new().with_message_retention_in_days(91),
            "MessageRetentionInDays",
        ),
        (
            HubDescription::new().with_user_metadata("x".repeat(1025)),
            "UserMetadata",
        ),
    ] {
        let (status, detail) = refused(&m.put("h", &d, PutMode::Create));
        assert_eq!(status, 400, "{d:?}");
        assert!(detail.contains(needle), "{detail}");
    }
    for name in ["-h", "h_", "a b", "h%2Fx", "ä", &"h".repeat(257)] {
        let (status, detail) = refused(&m.put(name, &HubDescription::new(), PutMode::Create));
        assert_eq!(status, 400, "{name}");
        assert!(detail.contains("invalid event hub name"), "{detail}");
    }
    assert_eq!(m.list().len(), 1, "nothing was created");

    // Malformed XML: 400 with the error XML.
    let mut r = m
        .endpoint
        .put_hub("h", &HubDescription::new(), PutMode::Create)
        .unwrap();
    *r.body_mut() = Bytes::from_static(b"<entry xmlns=\"http://www.w3.org/2005/Atom\"><content>");
    let reply = m.signed(r);
    assert_eq!(
        reply.headers()["content-type"],
        "application/xml; charset=utf-8"
    );
    let (status, detail) = refused(&reply);
    assert_eq!(status, 400);
    assert!(
        detail.contains("not a valid EventHubDescription entry"),
        "{detail}"
    );
    let mut r = m
        .endpoint
        .put_hub("h", &HubDescription::new(), PutMode::Create)
        .unwrap();
    *r.body_mut() = Bytes::from(write_like_go("<PartitionCount>many</PartitionCount>"));
    assert_eq!(refused(&m.signed(r)).0, 400);

    // Other paths and methods.
    let r = m.endpoint.raw(Method::POST, "eh1", Bytes::new()).unwrap();
    assert_eq!(refused(&m.signed(r)).0, 405);
    let r = m
        .endpoint
        .raw(Method::GET, "eh1/partitions/0", Bytes::new())
        .unwrap();
    assert_eq!(refused(&m.signed(r)).0, 404);
    let mut r = m
        .endpoint
        .put_hub("eh1", &HubDescription::new(), PutMode::Update)
        .unwrap();
    r.headers_mut()
        .insert("if-match", "\"etag\"".parse().unwrap());
    assert_eq!(refused(&m.signed(r)).0, 412);
}

fn write_like_go(inner: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<entry xmlns=\"http://www.w3.org/2005/Atom\"><content type=\"application/xml\"><EventHubDescription xmlns=\"http://schemas.microsoft.com/netservices/2010/10/servicebus/connect\">{inner}</EventHubDescription></content></entry>"
    )
}

#[test]
fn health_keep_alive_and_malformed_http() {
    let emu = emulator();
    let addr = emu.management_addr().unwrap();
    let health = Request::get(format!("http://{addr}/health"))
        .body(Bytes::new())
        .unwrap();
    let r = send(addr, &health);
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(
        &r.body()[..],
        br#"{"status":"healthy","message":"Service is healthy."}"#
    );

    // Two pipelined requests on one connection, then a close.
    let text = send_raw(
        addr,
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert!(text.contains("connection: close"), "{text}");

    // Bytes that are not HTTP: 400 with the error XML, connection closed.
    let text = send_raw(addr, b"GARBAGE\0\r\n\r\n");
    assert!(text.starts_with("HTTP/1.1 400 Bad Request"), "{text}");
    assert!(text.contains("<Error><Code>400</Code>"), "{text}");
    let big = format!(
        "PUT /h HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        2 * 1024 * 1024
    );
    let text = send_raw(addr, big.as_bytes());
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
}

#[test]
fn consumer_groups_at_run_time() {
    let emu = emulator();
    let mut m = Manager::new(&emu);
    let e = m.endpoint.clone();
    let r = m.signed(
        e.put_consumer_group(
            "eh1",
            "analytics",
            &ConsumerGroupDescription::new().with_user_metadata("nightly"),
            PutMode::Create,
        )
        .unwrap(),
    );
    assert_eq!(r.status(), 201);
    let g = consumer_group_from_response(&r).unwrap();
    assert_eq!(g.name, "analytics");
    assert_eq!(g.user_metadata.as_deref(), Some("nightly"));
    let groups =
        consumer_groups_from_response(&m.signed(e.list_consumer_groups("eh1").unwrap())).unwrap();
    assert_eq!(
        groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(),
        ["$Default", "cg1", "analytics"]
    );
    let again = m.signed(
        e.put_consumer_group(
            "eh1",
            "ANALYTICS",
            &ConsumerGroupDescription::new(),
            PutMode::Create,
        )
        .unwrap(),
    );
    assert_eq!(refused(&again).0, 409);
    let updated = m.signed(
        e.put_consumer_group(
            "eh1",
            "analytics",
            &ConsumerGroupDescription::new(),
            PutMode::Update,
        )
        .unwrap(),
    );
    assert_eq!(
        consumer_group_from_response(&updated)
            .unwrap()
            .user_metadata,
        None
    );
    let got = optional_consumer_group_from_response(
        &m.signed(e.get_consumer_group("eh1", "$Default").unwrap()),
    )
    .unwrap();
    assert_eq!(got.map(|g| g.name).as_deref(), Some("$Default"));
    assert_eq!(
        optional_consumer_group_from_response(
            &m.signed(e.get_consumer_group("eh1", "nope").unwrap())
        )
        .unwrap(),
        None
    );

    // A receiver in the new group, detached when the group goes.
    let mut c = Client::connect(emu.addr(), emulator_plain()).expect("connect");
    let rx = c
        .receiver(
            "eh1/ConsumerGroups/analytics/Partitions/0",
            Some(EventPosition::Earliest),
        )
        .expect("a receiver in the new group");
    let keep = c
        .receiver(
            "eh1/ConsumerGroups/cg1/Partitions/0",
            Some(EventPosition::Earliest),
        )
        .expect("receiver");
    let r = m.signed(e.delete_consumer_group("eh1", "analytics").unwrap());
    assert_eq!(r.status(), 200);
    assert_eq!(detached_with(&mut c, rx), "amqp:not-found");
    c.conn.link(keep).flow(10).unwrap();
    let tx = c.sender("eh1/Partitions/0").expect("sender");
    publish(&mut c, tx, event(3, 10).to_bytes());
    assert_eq!(receive_one(&mut c, keep), 3, "other groups keep receiving");

    let r = m.signed(e.delete_consumer_group("eh1", "$Default").unwrap());
    assert_eq!(refused(&r).0, 400);
    let r = m.signed(e.delete_consumer_group("eh1", "analytics").unwrap());
    assert_eq!(refused(&r).0, 404);
    let r = m.signed(
        e.put_consumer_group(
            "eh1",
            "bad name",
            &ConsumerGroupDescription::new(),
            PutMode::Create,
        )
        .unwrap(),
    );
    assert_eq!(refused(&r).0, 400);
    let r = m.signed(e.list_consumer_groups("nohub").unwrap());
    assert_eq!(refused(&r).0, 404);
    // The quota: 20 besides $Default (cg1 is one).
    for i in 0..19 {
        let r = m.signed(
            e.put_consumer_group(
                "eh1",
                &format!("g{i}"),
                &ConsumerGroupDescription::new(),
                PutMode::Create,
            )
            .unwrap(),
        );
        assert_eq!(r.status(), 201, "{i}");
    }
    let r = m.signed(
        e.put_consumer_group(
            "eh1",
            "one-too-many",
            &ConsumerGroupDescription::new(),
            PutMode::Create,
        )
        .unwrap(),
    );
    assert_eq!(refused(&r).0, 403);
}

fn with_dir(dir: &TempDir) -> Emulator {
    Emulator::builder()
        .config(EmulatorConfig::default().with_data_dir(&dir.0))
        .management(true)
        .start()
        .expect("emulator")
}

#[test]
fn created_hubs_survive_a_restart_and_deleted_ones_do_not() {
    let tmp = TempDir::new("restart");
    let created = {
        let emu = with_dir(&tmp);
        let mut m = Manager::new(&emu);
        let r = m.put(
            "orders",
            &HubDescription::new()
                .with_partition_count(3)
                .with_message_retention_in_days(2),
            PutMode::Create,
        );
        assert_eq!(r.status(), 201);
        let e = m.endpoint.clone();
        let r = m.signed(
            e.put_consumer_group(
                "orders",
                "billing",
                &ConsumerGroupDescription::new(),
                PutMode::Create,
            )
            .unwrap(),
        );
        assert_eq!(r.status(), 201);
        let r = m.put("doomed", &HubDescription::new(), PutMode::Create);
        assert_eq!(r.status(), 201);
        // A configured hub's change is kept too.
        let r = m.put(
            "eh1",
            &HubDescription::new().with_message_retention_in_days(4),
            PutMode::Update,
        );
        assert_eq!(r.status(), 200);
        let mut c = Client::connect(emu.addr(), emulator_plain()).expect("connect");
        let tx = c.sender("orders/Partitions/2").expect("sender");
        publish(&mut c, tx, event(7, 50).to_bytes());
        assert_eq!(m.delete("doomed").status(), 200);
        assert!(!tmp.0.join("doomed").exists(), "its files are gone");
        assert!(tmp.0.join("orders/2").is_dir());
        m.get("orders").unwrap()
    };
    let emu = with_dir(&tmp);
    let mut m = Manager::new(&emu);
    let names: Vec<String> = m.list().into_iter().map(|h| h.name).collect();
    assert_eq!(names, ["eh1", "orders"]);
    let orders = m.get("orders").unwrap();
    assert_eq!(orders.partition_count, Some(3));
    assert_eq!(orders.message_retention_in_days, Some(2));
    assert_eq!(orders.created_at, created.created_at);
    assert_eq!(m.get("eh1").unwrap().message_retention_in_days, Some(4));
    let mut c = Client::connect(emu.addr(), emulator_plain()).expect("connect");
    let rx = c
        .receiver(
            "orders/ConsumerGroups/billing/Partitions/2",
            Some(EventPosition::Earliest),
        )
        .expect("the created group is back");
    c.conn.link(rx).flow(10).unwrap();
    assert_eq!(receive_one(&mut c, rx), 7, "its events too");
    // Re-creating a deleted hub starts empty.
    let r = m.put(
        "doomed",
        &HubDescription::new().with_partition_count(1),
        PutMode::Create,
    );
    assert_eq!(r.status(), 201);
    assert_eq!(m.get("doomed").unwrap().size_in_bytes, Some(0));
}

#[test]
fn builder_and_addresses() {
    let plain = Emulator::builder().start().unwrap();
    assert_eq!(plain.management_addr(), None);
    assert_eq!(plain.management_endpoint(), None);
    let emu = emulator();
    let addr = emu.management_addr().unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    assert_eq!(emu.management_endpoint(), Some(format!("http://{addr}")));
    // Its entries name the address they were asked at.
    let mut m = Manager::new(&emu);
    let hub = m.get("eh1").unwrap();
    assert_eq!(
        hub.id.as_deref(),
        Some(format!("http://{addr}/eh1?api-version=2017-04").as_str())
    );
}
