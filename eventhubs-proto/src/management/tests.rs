//! Unit tests: the SAS vector over a management URL, the request body
//! azure-event-hubs-go writes, the service's replies, errors and names.

use bytes::Bytes;
use http::{Method, Response};

use super::time::parse_rfc3339;
use super::xml::*;
use super::*;
use crate::codec::Timestamp;
use crate::eventhubs::sas::{Token, TokenType};
use crate::eventhubs::{ConnectionString, SasKeyProvider};

fn endpoint() -> ManagementEndpoint {
    ManagementEndpoint::parse("https://myns.servicebus.windows.net/").unwrap()
}

fn reply(status: u16, body: &str) -> Response<Bytes> {
    Response::builder()
        .status(status)
        .body(Bytes::from(body.to_owned()))
        .unwrap()
}

/// The computed vector: key name `RootManageSharedAccessKey`, key
/// `c2VjcmV0`, se 1700000000, over the full URL with its query.
#[test]
fn sas_over_the_full_url() {
    let mut request = endpoint().get_hub("hub1").expect("request");
    assert_eq!(
        sas_audience(&request),
        "https://myns.servicebus.windows.net/hub1?api-version=2017-04"
    );
    let mut key = SasKeyProvider::new("RootManageSharedAccessKey", "c2VjcmV0").unwrap();
    // Tokens live two hours: signed at se - 7200.
    sign(&mut request, &mut key, 1_700_000_000 - 7200).unwrap();
    assert_eq!(
        request.headers()["authorization"],
        "SharedAccessSignature sr=https%3a%2f%2fmyns.servicebus.windows.net%2fhub1%3fapi-version%3d2017-04&sig=KPJ9WwKZV0AGn6PuCncjBAusqRzF693IDc2oKvu5nq0%3D&se=1700000000&skn=RootManageSharedAccessKey"
    );
    assert!(
        request.headers().get("content-type").is_none(),
        "GET has none"
    );
}

#[test]
fn bearer_tokens() {
    let mut request = endpoint().list_hubs().unwrap();
    let jwt = Token {
        token: "eyJ.x.y".into(),
        expires_at_unix: 0,
        token_type: TokenType::Jwt,
    };
    authorize(&mut request, &jwt).unwrap();
    assert_eq!(request.headers()["authorization"], "Bearer eyJ.x.y");
    let bad = Token {
        token: "a\nb".into(),
        ..jwt
    };
    assert_eq!(
        authorize(&mut request, &bad),
        Err(ManagementError::InvalidToken)
    );
}

/// The body azure-event-hubs-go writes for
/// `Put(ctx, "hub1", HubWithMessageRetentionInDays(7), HubWithPartitionCount(4))`.
#[test]
fn put_body_as_go_writes_it() {
    let d = HubDescription::new()
        .with_message_retention_in_days(7)
        .with_partition_count(4);
    let request = endpoint().put_hub("hub1", &d, PutMode::Create).unwrap();
    assert_eq!(request.method(), Method::PUT);
    assert_eq!(
        request.uri(),
        "https://myns.servicebus.windows.net/hub1?api-version=2017-04"
    );
    assert_eq!(
        request.headers()["content-type"],
        "application/atom+xml;type=entry;charset=utf-8"
    );
    assert!(request.headers().get("if-match").is_none());
    assert_eq!(
        std::str::from_utf8(request.body()).unwrap(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<entry xmlns=\"http://www.w3.org/2005/Atom\"><content type=\"application/xml\"><EventHubDescription xmlns=\"http://schemas.microsoft.com/netservices/2010/10/servicebus/connect\"><MessageRetentionInDays>7</MessageRetentionInDays><PartitionCount>4</PartitionCount></EventHubDescription></content></entry>"
    );
    let empty = write_hub_description_entry(&HubDescription::new());
    assert!(empty.ends_with("<EventHubDescription xmlns=\"http://schemas.microsoft.com/netservices/2010/10/servicebus/connect\"></EventHubDescription></content></entry>"), "{empty}");

    let update = endpoint().put_hub("hub1", &d, PutMode::Update).unwrap();
    assert_eq!(update.headers()["if-match"], "*");

    // Every writable property, in the service's order, escaped.
    let full = HubDescription::new()
        .with_partition_count(2)
        .with_user_metadata("a<b & \"c\"")
        .with_status(EntityStatus::SendDisabled)
        .with_message_retention_in_days(3);
    let body = write_hub_description_entry(&full);
    assert!(body.contains("<MessageRetentionInDays>3</MessageRetentionInDays><Status>SendDisabled</Status><UserMetadata>a&lt;b &amp; \"c\"</UserMetadata><PartitionCount>2</PartitionCount>"), "{body}");
    assert_eq!(parse_hub_description(body.as_bytes()), Ok(full));
}

#[test]
fn paths_and_raw_requests() {
    let e = endpoint();
    assert_eq!(
        e.list_hubs().unwrap().uri(),
        "https://myns.servicebus.windows.net/$Resources/EventHubs?api-version=2017-04"
    );
    assert_eq!(
        e.get_consumer_group("hub 1", "$Default").unwrap().uri(),
        "https://myns.servicebus.windows.net/hub%201/consumergroups/$Default?api-version=2017-04"
    );
    assert_eq!(
        e.list_consumer_groups("hub1").unwrap().uri(),
        "https://myns.servicebus.windows.net/hub1/consumergroups?api-version=2017-04"
    );
    let del = e.delete_hub("hub1").unwrap();
    assert_eq!(del.method(), Method::DELETE);
    assert!(del.headers().contains_key("content-type"));
    assert!(matches!(
        e.get_hub(""),
        Err(ManagementError::InvalidName { .. })
    ));
    let raw = e
        .raw(
            Method::POST,
            "/hub1/messages?timeout=60",
            Bytes::from_static(b"x"),
        )
        .unwrap();
    assert_eq!(
        raw.uri(),
        "https://myns.servicebus.windows.net/hub1/messages?timeout=60&api-version=2017-04"
    );
    let raw = e
        .raw(Method::GET, "hub1?api-version=2014-01", Bytes::new())
        .unwrap();
    assert_eq!(
        raw.uri(),
        "https://myns.servicebus.windows.net/hub1?api-version=2014-01"
    );
    assert!(e.raw(Method::GET, "a b", Bytes::new()).is_err());
}

#[test]
fn endpoints() {
    let cs = ConnectionString::parse(
        "Endpoint=sb://myns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=v",
    )
    .unwrap();
    assert_eq!(
        ManagementEndpoint::from_connection_string(&cs)
            .unwrap()
            .base_url(),
        "https://myns.servicebus.windows.net"
    );
    let cs = ConnectionString::parse(
        "Endpoint=sb://localhost:5673;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true",
    )
    .unwrap();
    assert_eq!(
        ManagementEndpoint::from_connection_string(&cs)
            .unwrap()
            .base_url(),
        "http://localhost:5300"
    );
    assert_eq!(
        ManagementEndpoint::parse("HTTP://127.0.0.1:5300")
            .unwrap()
            .base_url(),
        "http://127.0.0.1:5300"
    );
    for bad in [
        "ftp://x",
        "myns.servicebus.windows.net",
        "https://u@x",
        "https://x/path",
        "https://x/?q",
    ] {
        assert!(
            matches!(
                ManagementEndpoint::parse(bad),
                Err(ManagementError::InvalidEndpoint { .. })
            ),
            "{bad}"
        );
    }
}

/// A Get Event Hub reply in the service's shape (REST docs, with the
/// properties 14.2 lists).
const SERVICE_ENTRY: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<entry xmlns="http://www.w3.org/2005/Atom">
  <id>https://myns.servicebus.windows.net/hub1?api-version=2017-04</id>
  <title type="text">hub1</title>
  <published>2018-07-18T17:04:00Z</published>
  <updated>2018-07-18T17:04:00.67Z</updated>
  <author><name>myns</name></author>
  <link rel="self" href="https://myns.servicebus.windows.net/hub1?api-version=2017-04"/>
  <content type="application/xml">
    <EventHubDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
      <MessageRetentionInDays>7</MessageRetentionInDays>
      <SizeInBytes>1024</SizeInBytes>
      <AuthorizationRules></AuthorizationRules>
      <Status>Active</Status>
      <CreatedAt>2018-07-18T17:04:00.67Z</CreatedAt>
      <UpdatedAt>2018-07-18T17:04:00.6700000Z</UpdatedAt>
      <PartitionCount>4</PartitionCount>
      <PartitionIds xmlns:d2p1="http://schemas.microsoft.com/2003/10/Serialization/Arrays">
        <d2p1:string>0</d2p1:string><d2p1:string>1</d2p1:string><d2p1:string>2</d2p1:string><d2p1:string>3</d2p1:string>
      </PartitionIds>
      <EntityAvailabilityStatus>Available</EntityAvailabilityStatus>
    </EventHubDescription>
  </content>
</entry>"#;

fn t(s: &str) -> Timestamp {
    parse_rfc3339(s).unwrap()
}

#[test]
fn reads_the_services_entry() {
    let hub = hub_from_response(&reply(200, SERVICE_ENTRY)).unwrap();
    assert_eq!(hub.name, "hub1");
    assert_eq!(
        hub.id.as_deref(),
        Some("https://myns.servicebus.windows.net/hub1?api-version=2017-04")
    );
    assert_eq!(hub.published, Some(t("2018-07-18T17:04:00Z")));
    assert_eq!(hub.message_retention_in_days, Some(7));
    assert_eq!(hub.size_in_bytes, Some(1024));
    assert_eq!(hub.status, Some(EntityStatus::Active));
    assert_eq!(hub.created_at, Some(t("2018-07-18T17:04:00.670Z")));
    assert_eq!(hub.updated_at, hub.created_at);
    assert_eq!(hub.partition_count, Some(4));
    assert_eq!(hub.partition_ids, ["0", "1", "2", "3"]);
    assert_eq!(hub.entity_availability_status.as_deref(), Some("Available"));
    assert_eq!(hub.user_metadata, None);
    assert_eq!(
        hub.description(),
        HubDescription::new()
            .with_partition_count(4)
            .with_message_retention_in_days(7)
            .with_status(EntityStatus::Active)
    );
}

#[test]
fn namespace_aware_reading() {
    // Prefixed Atom, the fuller entry other clients send, unknown children.
    let body = r#"<a:entry xmlns:a="http://www.w3.org/2005/Atom" xmlns:d="x" xmlns:m="y">
      <a:title/><a:updated>2020-01-01T00:00:00Z</a:updated><a:author><a:name/></a:author><a:id/>
      <a:content type="application/xml">
        <s:EventHubDescription xmlns:s="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect">
          <s:PartitionCount>5</s:PartitionCount><s:Bogus>1</s:Bogus>
          <d:PartitionCount>99</d:PartitionCount>
          <s:MessageRetentionInDays> 3 </s:MessageRetentionInDays>
          <s:PartitionCount>6</s:PartitionCount>
        </s:EventHubDescription>
      </a:content></a:entry>"#;
    assert_eq!(
        parse_hub_description(body.as_bytes()),
        Ok(HubDescription::new()
            .with_partition_count(5)
            .with_message_retention_in_days(3))
    );
    // The same local names in no namespace are not an Atom entry.
    let plain = r#"<entry><content><EventHubDescription><PartitionCount>5</PartitionCount></EventHubDescription></content></entry>"#;
    assert!(parse_hub_description(plain.as_bytes()).is_err());
    // A description outside the Service Bus namespace is no description.
    let foreign = r#"<entry xmlns="http://www.w3.org/2005/Atom"><content><EventHubDescription xmlns="urn:other"><PartitionCount>5</PartitionCount></EventHubDescription></content></entry>"#;
    let e = parse_hub_description(foreign.as_bytes()).unwrap_err();
    assert!(e.reason.contains("holds no EventHubDescription"), "{e}");
}

#[test]
fn malformed_request_bodies() {
    let wrap = |inner: &str| {
        format!(
            r#"<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml"><EventHubDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect">{inner}</EventHubDescription></content></entry>"#
        )
    };
    for (body, needle) in [
        ("".to_string(), "no Atom entry"),
        ("<entry".to_string(), "malformed"),
        ("\u{fffe}".to_string(), "malformed"),
        (wrap("<PartitionCount>four</PartitionCount>"), "PartitionCount"),
        (wrap("<PartitionCount>-1</PartitionCount>"), "PartitionCount"),
        (wrap("<PartitionCount>99999999999</PartitionCount>"), "PartitionCount"),
        (wrap("<Status>Sleeping</Status>"), "unknown entity status"),
        (wrap("<UserMetadata>&xxe;</UserMetadata>"), "unknown entity"),
        (wrap("<UserMetadata>a</Other>"), "malformed"),
        (
            r#"<entry xmlns="http://www.w3.org/2005/Atom"></entry>"#.to_string(),
            "no content",
        ),
        (
            r#"<feed xmlns="http://www.w3.org/2005/Atom"></feed>"#.to_string(),
            "found a feed",
        ),
        (
            r#"<entry xmlns="http://www.w3.org/2005/Atom"><content><ConsumerGroupDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"/></content></entry>"#.to_string(),
            "not an EventHubDescription",
        ),
        (
            format!("<x:entry>{}", "<a>".repeat(40)),
            "malformed",
        ),
        ("<Error/>".to_string(), "not an Atom entry"),
    ] {
        let e = parse_hub_description(body.as_bytes()).expect_err(&body);
        assert!(e.to_string().contains(needle), "{body}: {e}");
    }
    let deep = format!(
        r#"<entry xmlns="http://www.w3.org/2005/Atom">{}{}</entry>"#,
        "<a>".repeat(40),
        "</a>".repeat(40)
    );
    let e = parse_hub_description(deep.as_bytes()).unwrap_err();
    assert!(e.reason.contains("too deep"), "{e}");
    // Character references and predefined entities are text.
    let ok = wrap("<UserMetadata>&#65;&amp;&#x42;<![CDATA[<c>]]></UserMetadata>");
    assert_eq!(
        parse_hub_description(ok.as_bytes())
            .unwrap()
            .user_metadata
            .as_deref(),
        Some("A&B<c>")
    );
}

#[test]
fn writes_what_it_reads() {
    let mut hub = HubEntity::new("hub-1");
    hub.id = Some("http://127.0.0.1:5300/hub-1?api-version=2017-04".into());
    hub.message_retention_in_days = Some(3);
    hub.size_in_bytes = Some(0);
    hub.status = Some(EntityStatus::Active);
    hub.created_at = Some(Timestamp(1_700_000_000_123));
    hub.updated_at = Some(Timestamp(1_700_000_100_000));
    hub.user_metadata = Some("<team>".into());
    hub.partition_count = Some(5);
    hub.partition_ids = (0..5).map(|i| i.to_string()).collect();
    hub.entity_availability_status = Some("Available".into());
    let entry = write_hub_entry(&hub, "emulatorNs1");
    let mut read = hub_from_response(&reply(201, &entry)).unwrap();
    assert_eq!(read.published, hub.created_at);
    assert_eq!(read.updated, hub.updated_at);
    read.published = None;
    read.updated = None;
    assert_eq!(read, hub);

    let mut other = HubEntity::new("eh1");
    other.id = Some("http://127.0.0.1:5300/eh1?api-version=2017-04".into());
    other.partition_ids = vec!["0".into()];
    let feed = write_hub_feed(
        &[hub.clone(), other],
        "http://127.0.0.1:5300/$Resources/EventHubs?api-version=2017-04",
        "emulatorNs1",
        Timestamp(0),
    );
    let hubs = hubs_from_response(&reply(200, &feed)).unwrap();
    assert_eq!(
        hubs.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
        ["hub-1", "eh1"]
    );
    assert_eq!(hubs[0].partition_ids.len(), 5);
    assert!(matches!(
        hub_from_response(&reply(200, &feed)),
        Err(ManagementError::InvalidReply { status: 200, .. })
    ));

    let mut group = ConsumerGroupEntity::new("cg1");
    group.id = Some("http://h/hub-1/consumergroups/cg1?api-version=2017-04".into());
    group.created_at = Some(Timestamp(5));
    group.updated_at = Some(Timestamp(6));
    group.user_metadata = Some("m".into());
    let entry = write_consumer_group_entry(&group, "ns");
    assert_eq!(
        consumer_group_from_response(&reply(201, &entry)).unwrap(),
        group
    );
    let feed = write_consumer_group_feed(&[group.clone()], "http://h/f", "ns", Timestamp(0));
    assert_eq!(
        consumer_groups_from_response(&reply(200, &feed)).unwrap(),
        [group]
    );
    // A hub entry is not a consumer group.
    let e = consumer_group_from_response(&reply(200, SERVICE_ENTRY)).unwrap_err();
    assert!(
        e.to_string().contains("not an ConsumerGroupDescription"),
        "{e}"
    );
}

#[test]
fn missing_hubs_and_errors() {
    // The service's answer to a GET of a missing hub: 200, empty feed.
    let missing = r#"<feed xmlns="http://www.w3.org/2005/Atom"><title type="text">Publicly Listed Services</title><subtitle type="text">This is the list of publicly-listed services currently available.</subtitle><id>uuid:2ce9bb4c-5f1e-4bf5-a6cb-4c2a4e6e8a7e;id=30</id><updated>2019-12-27T13:11:47Z</updated><generator>Service Bus 1.1</generator></feed>"#;
    assert_eq!(
        optional_hub_from_response(&reply(200, missing)).unwrap(),
        None
    );
    let ours = write_missing_entity_feed("uuid:0;id=1", Timestamp(0));
    assert!(ours.contains("Publicly Listed Services"));
    assert_eq!(
        optional_hub_from_response(&reply(200, &ours)).unwrap(),
        None
    );
    assert_eq!(optional_hub_from_response(&reply(404, "")).unwrap(), None);
    assert_eq!(
        optional_hub_from_response(&reply(200, SERVICE_ENTRY))
            .unwrap()
            .map(|h| h.name),
        Some("hub1".into())
    );
    assert_eq!(
        optional_consumer_group_from_response(&reply(200, missing)).unwrap(),
        None
    );

    let conflict = r#"<Error><Code>409</Code><Detail>SubCode=40900. Conflict. You're requesting an operation that isn't allowed in the resource's current state. To know more visit https://aka.ms/sbResourceMgrExceptions. . TrackingId:1, SystemTracker:myns.servicebus.windows.net:hub1, Timestamp:2019-12-27T13:11:47</Detail></Error>"#;
    let e = hub_from_response(&reply(409, conflict)).unwrap_err();
    let s = e.service().expect("a service error");
    assert!(s.is_conflict() && !s.is_retryable());
    assert_eq!(s.code.as_deref(), Some("409"));
    assert!(s
        .detail
        .as_deref()
        .unwrap()
        .starts_with("SubCode=40900. Conflict."));
    assert!(
        e.to_string()
            .contains("answered 409 (code 409): SubCode=40900"),
        "{e}"
    );
    assert_eq!(e.status(), Some(409));

    let ours = write_error(401, "InvalidSignature: The token has an invalid signature.");
    let e = deleted_from_response(&reply(401, &ours)).unwrap_err();
    assert!(e.service().unwrap().is_unauthorized());
    assert_eq!(
        e.service().unwrap().detail.as_deref(),
        Some("InvalidSignature: The token has an invalid signature.")
    );
    assert_eq!(
        parse_error(ours.as_bytes()).unwrap().0.as_deref(),
        Some("401")
    );

    // A body that is not error XML is kept as the detail, cut short.
    let e = hubs_from_response(&reply(502, &"x".repeat(2000))).unwrap_err();
    assert_eq!(e.service().unwrap().detail.as_ref().unwrap().len(), 512);
    assert!(!e.service().unwrap().is_bad_request());
    let e = hubs_from_response(&reply(500, "")).unwrap_err();
    assert_eq!(e.service().unwrap().detail, None);
    assert!(e.service().unwrap().is_retryable());
    assert!(deleted_from_response(&reply(200, "")).is_ok());
    // A success that is not XML.
    assert!(matches!(
        hubs_from_response(&reply(200, "{}")),
        Err(ManagementError::InvalidReply { .. })
    ));
    // An entry without content, which crashes azure-event-hubs-go, is an error.
    let e = hub_from_response(&reply(
        200,
        r#"<entry xmlns="http://www.w3.org/2005/Atom"><title>h</title></entry>"#,
    ))
    .unwrap_err();
    assert!(e.to_string().contains("no content"), "{e}");
}

#[test]
fn names_and_statuses() {
    for ok in ["a", "eh1", "my.hub-1_x", &"h".repeat(256)] {
        assert_eq!(check_hub_name(ok), Ok(()), "{ok}");
    }
    for bad in [
        "",
        "-a",
        "a-",
        ".a",
        "a_",
        "a b",
        "a/b",
        "ä",
        "$Default",
        &"h".repeat(257),
    ] {
        assert!(check_hub_name(bad).is_err(), "{bad}");
    }
    assert!(check_consumer_group_name(&"g".repeat(50)).is_ok());
    let e = check_consumer_group_name(&"g".repeat(51)).unwrap_err();
    assert!(e.to_string().contains("longer than 50"), "{e}");
    for s in EntityStatus::ALL {
        assert_eq!(s.as_str().parse::<EntityStatus>(), Ok(s));
    }
    assert_eq!(" senddisabled ".parse(), Ok(EntityStatus::SendDisabled));
    assert!("Paused".parse::<EntityStatus>().is_err());
    // An unknown status in a reply reads as Unknown, not an error.
    let odd = SERVICE_ENTRY.replace("<Status>Active</Status>", "<Status>Paused</Status>");
    assert_eq!(
        hub_from_response(&reply(200, &odd)).unwrap().status,
        Some(EntityStatus::Unknown)
    );
}
