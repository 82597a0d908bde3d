//! Hub management scenarios of the async API ([`HubManager`]) against the
//! emulator's management API over real sockets, written once, generic over
//! the runtime. Each adapter's `tests/management.rs` includes this file and
//! instantiates every scenario with [`management_tests!`].

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use eventhubs_async::management::ManagementEndpoint;
use eventhubs_async::management::{
    ConsumerGroupDescription, EntityStatus, HubDescription, ManagementCredential,
};
use eventhubs_async::{
    Error, EventData, EventPosition, EventStream, Hub, HubManager, HubOptions, ReceiveOptions,
    Runtime, SasTokenProvider,
};
use eventhubs_emulator::config::Policy;
use eventhubs_emulator::{Emulator, EmulatorConfig};
use futures_util::StreamExt;
use http::Method;

/// Runs `f`, failing if it takes longer than `secs`.
async fn within<R: Runtime, T>(secs: u64, what: &str, f: impl Future<Output = T>) -> T {
    let sleep = R::default().sleep(Duration::from_secs(secs));
    match futures_util::future::select(Box::pin(f), sleep).await {
        futures_util::future::Either::Left((t, _)) => t,
        futures_util::future::Either::Right(_) => panic!("{what}: no result within {secs} s"),
    }
}

fn emulator(config: EmulatorConfig) -> Emulator {
    Emulator::builder()
        .config(config)
        .management(true)
        .start()
        .expect("emulator")
}

/// A manager from the emulator's connection string, sent to its
/// management endpoint.
fn manager<R: Runtime>(e: &Emulator) -> HubManager<R> {
    let endpoint = ManagementEndpoint::parse(&e.management_endpoint().expect("HTTP listener"))
        .expect("endpoint");
    HubManager::from_connection_string(&e.connection_string("eh1"))
        .expect("manager")
        .with_endpoint(endpoint)
}

fn earliest() -> ReceiveOptions {
    ReceiveOptions::new().with_start_position(EventPosition::Earliest)
}

async fn next_event<R: Runtime>(s: &mut EventStream) -> eventhubs_async::ReceivedEvent {
    match within::<R, _>(30, "receiving", s.next()).await {
        Some(Ok(e)) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Sends `event` to partition `p` of `hub` with a partitioned sender.
async fn send_to<R: Runtime>(e: &Emulator, hub: &str, p: &str, event: EventData) {
    let sender = Hub::<R>::from_connection_string(
        &e.connection_string(hub),
        HubOptions::new().with_partitioned_sender(p),
    )
    .expect("hub");
    sender.send(event).await.expect("sent");
    sender.close().await.ok();
}

fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::Service(_)) && e.condition() == Some("amqp:not-found")
}

/// Create a hub with 5 partitions and 3 days, see it listed, send to and
/// receive from every partition, update its retention, delete it and see
/// its receivers detached with `amqp:not-found`.
pub async fn hub_lifecycle<R: Runtime>() {
    let e = emulator(EmulatorConfig::default());
    let m = manager::<R>(&e);
    let created = m
        .put(
            "orders",
            &HubDescription::new()
                .with_partition_count(5)
                .with_message_retention_in_days(3),
        )
        .await
        .expect("created");
    assert_eq!(created.name, "orders");
    assert_eq!(created.partition_count, Some(5));
    assert_eq!(created.partition_ids, ["0", "1", "2", "3", "4"]);
    assert_eq!(created.message_retention_in_days, Some(3));
    assert_eq!(created.status, Some(EntityStatus::Active));
    let names: Vec<String> = m
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|h| h.name)
        .collect();
    assert_eq!(names, ["eh1", "orders"]);

    let hub =
        Hub::<R>::from_connection_string(&e.connection_string("orders"), HubOptions::default())
            .expect("hub");
    let info = hub.runtime_information().await.expect("information");
    assert_eq!(info.partition_ids, created.partition_ids);
    let mut streams = Vec::new();
    for p in &created.partition_ids {
        let mut s = hub.receiver(p, earliest()).await.expect("receiver");
        let ev = EventData::new(format!("to {p}")).with_property("p", p.as_str());
        send_to::<R>(&e, "orders", p, ev).await;
        let got = next_event::<R>(&mut s).await;
        assert_eq!(got.partition_id(), *p);
        assert_eq!(&got.body()[..], format!("to {p}").as_bytes());
        streams.push(s);
    }

    let updated = m
        .update(
            "orders",
            &created.description().with_message_retention_in_days(7),
        )
        .await
        .expect("updated");
    assert_eq!(updated.message_retention_in_days, Some(7));
    assert_eq!(updated.partition_count, Some(5));
    let read = m.get("orders").await.expect("get").expect("exists");
    assert_eq!(read.message_retention_in_days, Some(7));
    assert!(read.size_in_bytes.unwrap_or(0) > 0, "it holds five events");
    assert_eq!(read.created_at, created.created_at);

    m.delete("orders").await.expect("deleted");
    for mut s in streams {
        match within::<R, _>(30, "detach", s.next()).await {
            Some(Err(err)) => assert!(is_not_found(&err), "{err}"),
            other => panic!("expected amqp:not-found, got {other:?}"),
        }
    }
    assert!(
        m.get("orders").await.expect("get").is_none(),
        "Ok(None) once gone"
    );
    let again = m.delete("orders").await.expect_err("already gone");
    assert_eq!(again.status(), Some(404), "{again}");
    hub.close().await.ok();
}

/// Creating an existing hub without the update condition is a conflict; a
/// policy without Manage rights is refused; malformed XML is a 400 with
/// the service's error XML.
pub async fn refusals<R: Runtime>() {
    let mut config = EmulatorConfig::default();
    config.policies.push(Policy {
        name: "SendListen".into(),
        key: "not-a-manager".into(),
        send: true,
        listen: true,
        manage: false,
    });
    let e = emulator(config);
    let m = manager::<R>(&e);

    let conflict = m
        .put("eh1", &HubDescription::new().with_partition_count(2))
        .await
        .expect_err("eh1 exists");
    let s = conflict.service().expect("a service error");
    assert!(s.is_conflict(), "{conflict}");
    assert_eq!(s.code.as_deref(), Some("409"));
    assert!(
        s.detail.as_deref().unwrap_or("").contains("already exists"),
        "{conflict}"
    );

    let weak = HubManager::<R>::for_endpoint(
        m.endpoint().clone(),
        ManagementCredential::shared_access_key("SendListen", "not-a-manager").unwrap(),
    )
    .unwrap();
    let denied = weak.list().await.expect_err("no Manage right");
    assert_eq!(denied.status(), Some(401), "{denied}");
    assert!(
        denied
            .to_string()
            .contains("'Manage' claim(s) are required"),
        "{denied}"
    );
    let wrong_key = HubManager::<R>::for_endpoint(
        m.endpoint().clone(),
        ManagementCredential::SharedAccessSignature(std::sync::Arc::new(
            SasTokenProvider::from_key("RootManageSharedAccessKey", "wrong").unwrap(),
        )),
    )
    .unwrap();
    let denied = wrong_key.get("eh1").await.expect_err("wrong key");
    assert!(denied.service().unwrap().is_unauthorized(), "{denied}");

    let r = m
        .execute(
            Method::PUT,
            "malformed",
            Bytes::from_static(b"<entry xmlns=\"http://www.w3.org/2005/Atom\"><content"),
        )
        .await
        .expect("a reply");
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.headers()["content-type"],
        "application/xml; charset=utf-8"
    );
    let body = String::from_utf8_lossy(r.body());
    assert!(body.contains("<Error><Code>400</Code><Detail>"), "{body}");
    assert!(m.get("malformed").await.unwrap().is_none());

    for (d, what) in [
        (
            HubDescription::new().with_partition_count(33),
            "33 partitions",
        ),
        (
            HubDescription::new().with_message_retention_in_days(91),
            "91 days",
        ),
    ] {
        let err = m.put("too-big", &d).await.expect_err(what);
        assert!(err.service().unwrap().is_bad_request(), "{what}: {err}");
    }
    let err = m
        .put("no spaces", &HubDescription::new())
        .await
        .expect_err("a bad name");
    assert!(err.service().unwrap().is_bad_request(), "{err}");
    let err = m
        .update("absent", &HubDescription::new())
        .await
        .expect_err("update of a missing hub");
    assert!(err.service().unwrap().is_not_found(), "{err}");
}

/// Consumer groups by the same API: a receiver in a created group, which is
/// detached when the group is deleted; `$Default` cannot be.
pub async fn consumer_groups<R: Runtime>() {
    let e = emulator(EmulatorConfig::default());
    let m = manager::<R>(&e);
    let g = m
        .put_consumer_group(
            "eh1",
            "audit",
            &ConsumerGroupDescription::new().with_user_metadata("compliance"),
        )
        .await
        .expect("created");
    assert_eq!(g.user_metadata.as_deref(), Some("compliance"));
    let names: Vec<String> = m
        .list_consumer_groups("eh1")
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(names, ["$Default", "cg1", "audit"]);
    let g = m
        .update_consumer_group("eh1", "audit", &ConsumerGroupDescription::new())
        .await
        .unwrap();
    assert_eq!(g.user_metadata, None);
    assert!(m.get_consumer_group("eh1", "nope").await.unwrap().is_none());

    let hub = Hub::<R>::from_connection_string(&e.connection_string("eh1"), HubOptions::default())
        .expect("hub");
    let mut s = hub
        .receiver("0", earliest().with_consumer_group("audit"))
        .await
        .expect("a receiver in the new group");
    send_to::<R>(&e, "eh1", "0", EventData::new("audited")).await;
    assert_eq!(&next_event::<R>(&mut s).await.body()[..], b"audited");
    m.delete_consumer_group("eh1", "audit").await.unwrap();
    match within::<R, _>(30, "detach", s.next()).await {
        Some(Err(err)) => assert!(is_not_found(&err), "{err}"),
        other => panic!("expected amqp:not-found, got {other:?}"),
    }
    let err = m
        .delete_consumer_group("eh1", "$Default")
        .await
        .expect_err("$Default stays");
    assert_eq!(err.status(), Some(400));
    hub.close().await.ok();
}

/// Instantiates every scenario as a `#[test]` for one runtime:
/// `management_tests!(MyRuntime, |f| block_on(f));`
#[macro_export]
macro_rules! management_tests {
    ($rt:ty, $block_on:expr) => {
        management_tests!(@each $rt, $block_on; hub_lifecycle, refusals, consumer_groups);
    };
    (@each $rt:ty, $block_on:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                let block_on = $block_on;
                block_on(management::$name::<$rt>());
            }
        )*
    };
}
