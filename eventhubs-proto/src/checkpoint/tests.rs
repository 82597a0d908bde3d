//! Unit tests of the layout and the in-memory store.

use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::eventhubs::EventPosition;
use crate::storage::{parse_list_blobs, BlobEndpoint, BlobService};

#[test]
fn namespaces_keep_the_port() {
    assert_eq!(
        namespace_of_endpoint("sb://ns.servicebus.windows.net/"),
        "ns.servicebus.windows.net"
    );
    assert_eq!(
        namespace_of_endpoint("sb://127.0.0.1:5673"),
        "127.0.0.1:5673"
    );
    assert_eq!(
        namespace_of_endpoint("sb://LocalHost:5672/;x"),
        "LocalHost:5672"
    );
    assert_eq!(namespace_of_endpoint("sb://[::1]:5672/"), "[::1]:5672");
    assert_eq!(
        namespace_of_endpoint("ns.servicebus.windows.net"),
        "ns.servicebus.windows.net"
    );
}

#[test]
fn names_are_lowercase() {
    let o = PartitionOwnership::new("LocalHost:5672", "EH1", "$Default", "0", "Owner-A");
    assert_eq!(
        ownership_blob_name(&o),
        "localhost:5672/eh1/$default/ownership/0"
    );
    assert_eq!(
        ownership_prefix("LocalHost:5672", "EH1", "$Default"),
        "localhost:5672/eh1/$default/ownership/"
    );
    let c = PartitionCheckpoint::new("NS.servicebus.windows.net", "Hub", "CG", "3", "4096", 7);
    assert_eq!(
        checkpoint_blob_name(&c),
        "ns.servicebus.windows.net/hub/cg/checkpoint/3"
    );
    assert_eq!(checkpoint_prefix("a", "b", "c"), "a/b/c/checkpoint/");
}

#[test]
fn claims_use_one_condition() {
    let svc =
        BlobService::new(BlobEndpoint::parse("http://127.0.0.1:10000/devstoreaccount1").unwrap());
    let fresh = PartitionOwnership::new("127.0.0.1:5672", "eh1", "$Default", "0", "owner-a");
    let r = claim_request(&fresh).request(&svc, "checkpoints").unwrap();
    assert_eq!(r.method(), http::Method::PUT);
    assert_eq!(r.uri().query(), None);
    assert_eq!(r.headers()["if-none-match"], "*");
    assert!(!r.headers().contains_key("if-match"));
    assert_eq!(r.headers()["x-ms-blob-type"], "BlockBlob");
    assert_eq!(r.headers()["x-ms-meta-ownerid"], "owner-a");

    let listed = PartitionOwnership {
        etag: Some("\"0x1\"".into()),
        ..fresh.clone()
    };
    let renew = claim_request(&listed);
    assert_eq!(renew.etag.as_deref(), Some("0x1"));
    let r = renew.request(&svc, "checkpoints").unwrap();
    assert_eq!(r.uri().query(), Some("comp=metadata"));
    assert_eq!(r.headers()["if-match"], "\"0x1\"");
    assert!(!r.headers().contains_key("if-none-match"));
    let r = claim_request(&listed.relinquished())
        .request(&svc, "checkpoints")
        .unwrap();
    assert_eq!(r.headers()["x-ms-meta-ownerid"], "");

    let reply = |status: u16, code: &str| {
        let mut b = http::Response::builder().status(status);
        if !code.is_empty() {
            b = b.header("x-ms-error-code", code);
        }
        b.header("etag", "\"0x2\"")
            .header("last-modified", "Tue, 01 Dec 2026 10:00:01 GMT")
            .body(Bytes::new())
            .unwrap()
    };
    assert_eq!(
        renew.outcome(&reply(200, "")),
        Ok(Some(crate::storage::BlobVersion {
            etag: Some("0x2".into()),
            last_modified_unix_ms: Some(1_796_119_201_000)
        }))
    );
    assert_eq!(renew.outcome(&reply(412, "ConditionNotMet")), Ok(None));
    assert_eq!(renew.outcome(&reply(404, "BlobNotFound")), Ok(None));
    assert!(renew.outcome(&reply(404, "ContainerNotFound")).is_err());
    assert!(renew.outcome(&reply(403, "AuthenticationFailed")).is_err());
    let create = claim_request(&fresh);
    assert_eq!(create.outcome(&reply(409, "BlobAlreadyExists")), Ok(None));
    assert!(create.outcome(&reply(404, "ContainerNotFound")).is_err());
}

#[test]
fn listed_blobs_become_records() {
    let xml = b"<EnumerationResults><Blobs>\
        <Blob><Name>127.0.0.1:5672/eh1/$default/ownership/0</Name><Properties><Last-Modified>Tue, 01 Dec 2026 10:00:01 GMT</Last-Modified><Etag>0x1</Etag></Properties><Metadata><ownerid>a</ownerid></Metadata></Blob>\
        <Blob><Name>127.0.0.1:5672/eh1/$default/ownership/1</Name><Properties><Etag>0x2</Etag></Properties><Metadata><ownerid/></Metadata></Blob>\
        <Blob><Name>127.0.0.1:5672/eh1/$default/ownership</Name><Properties><Etag>0x3</Etag></Properties></Blob>\
        <Blob><Name>127.0.0.1:5672/eh1/$default/checkpoint/0</Name><Metadata><offset>100</offset><sequencenumber>5</sequencenumber></Metadata></Blob>\
        <Blob><Name>127.0.0.1:5672/eh1/$default/checkpoint/1</Name><Metadata><offset></offset><sequencenumber>9</sequencenumber></Metadata></Blob>\
        <Blob><Name>127.0.0.1:5672/eh1/$default/checkpoint/2</Name><Metadata><offset/><sequencenumber/></Metadata></Blob>\
        </Blobs></EnumerationResults>";
    let page = parse_list_blobs(xml).unwrap();
    let owners: Vec<_> = page
        .blobs
        .iter()
        .filter_map(|b| ownership_from_blob("127.0.0.1:5672", "eh1", "$Default", b))
        .collect();
    assert_eq!(owners.len(), 2, "the entry without ownerid is skipped");
    assert_eq!(owners[0].partition_id, "0");
    assert_eq!(owners[0].owner_id, "a");
    assert_eq!(owners[0].consumer_group, "$Default");
    assert_eq!(owners[0].etag.as_deref(), Some("0x1"));
    assert_eq!(owners[0].last_modified_unix_ms, Some(1_796_119_201_000));
    assert!(owners[1].is_relinquished());
    let cps: Vec<_> = page
        .blobs
        .iter()
        .filter_map(|b| checkpoint_from_blob("127.0.0.1:5672", "eh1", "$Default", b))
        .collect();
    assert_eq!(cps.len(), 2);
    assert_eq!(
        (cps[0].offset.as_deref(), cps[0].sequence_number),
        (Some("100"), Some(5))
    );
    assert_eq!(
        cps[0].resume_position(),
        Some(EventPosition::Offset {
            offset: "100".into(),
            inclusive: false
        })
    );
    assert_eq!(
        (cps[1].offset.as_deref(), cps[1].sequence_number),
        (None, Some(9))
    );
    assert_eq!(
        cps[1].resume_position(),
        Some(EventPosition::SequenceNumber {
            sequence_number: 9,
            inclusive: false
        })
    );
}

#[test]
fn checkpoints_need_both_fields() {
    let mut c = PartitionCheckpoint::new("ns", "hub", "cg", "0", "100", 5);
    assert_eq!(
        checkpoint_metadata(&c).unwrap(),
        [
            ("offset", "100".to_owned()),
            ("sequencenumber", "5".to_owned())
        ]
    );
    c.offset = Some(String::new());
    assert_eq!(checkpoint_metadata(&c).unwrap_err().missing, "offset");
    c.sequence_number = None;
    assert_eq!(
        checkpoint_metadata(&c).unwrap_err().missing,
        "offset and sequence number"
    );
    c.offset = Some("1".into());
    assert_eq!(
        checkpoint_metadata(&c).unwrap_err().missing,
        "sequence number"
    );
}

#[test]
fn ownership_expiry() {
    let mut o = PartitionOwnership::new("ns", "hub", "cg", "0", "a");
    assert!(!o.is_active(0, Duration::from_secs(60)), "never written");
    o.last_modified_unix_ms = Some(1_000_000);
    assert!(o.is_active(1_059_999, Duration::from_secs(60)));
    assert!(!o.is_active(1_060_000, Duration::from_secs(60)));
    assert!(!o
        .relinquished()
        .is_active(1_000_000, Duration::from_secs(60)));
    assert_eq!(
        o.last_modified(),
        Some(std::time::UNIX_EPOCH + Duration::from_secs(1000))
    );
}

#[test]
fn memory_store_races_like_the_blob_store() {
    let mut s = MemoryStore::new();
    let a = PartitionOwnership::new("NS:5672", "eh1", "$Default", "0", "a");
    let b = a.claimed_by("b");
    // The first claim of a never-owned partition wins; a second claim of
    // the same (absent) version loses.
    let won = s.claim_ownership(1_000, std::slice::from_ref(&a));
    assert_eq!(won.len(), 1);
    assert_eq!(won[0].last_modified_unix_ms, Some(1_000));
    assert!(s
        .claim_ownership(1_001, std::slice::from_ref(&b))
        .is_empty());
    // Listing sees a's record under the caller's names.
    let listed = s.list_ownership("ns:5672", "EH1", "$default");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].owner_id.as_str(),
            listed[0].event_hub_name.as_str()
        ),
        ("a", "EH1")
    );
    assert_eq!(listed[0].etag, won[0].etag);
    // b claims at the listed version and wins; a's renewal at the old one
    // then loses.
    let stolen = s.claim_ownership(2_000, &[listed[0].claimed_by("b")]);
    assert_eq!(stolen.len(), 1);
    assert_ne!(stolen[0].etag, won[0].etag);
    assert!(s.claim_ownership(2_001, &[won[0].clone()]).is_empty());
    // Renewal with the new ETag (quoted works too), then relinquish.
    let quoted = PartitionOwnership {
        etag: stolen[0].etag.as_ref().map(|e| format!("\"{e}\"")),
        ..stolen[0].clone()
    };
    let renewed = s.claim_ownership(3_000, &[quoted]);
    assert_eq!(renewed[0].last_modified_unix_ms, Some(3_000));
    let released = s.claim_ownership(4_000, &[renewed[0].relinquished()]);
    assert!(s.list_ownership("ns:5672", "eh1", "$default")[0].is_relinquished());
    assert_eq!(released.len(), 1);
    // An ETag for a record that does not exist loses.
    let ghost = PartitionOwnership {
        etag: Some("0x1".into()),
        ..a.clone()
    };
    let ghost = PartitionOwnership {
        partition_id: "9".into(),
        ..ghost
    };
    assert!(s.claim_ownership(5_000, &[ghost]).is_empty());
    // Only what was won comes back from a mixed batch.
    let batch = [
        PartitionOwnership::new("ns:5672", "eh1", "$default", "1", "a"),
        a.clone(),
    ];
    let won = s.claim_ownership(6_000, &batch);
    assert_eq!(
        won.iter()
            .map(|o| o.partition_id.as_str())
            .collect::<Vec<_>>(),
        ["1"]
    );
    // Deterministic ETags: the same calls give the same ETags.
    let mut t = MemoryStore::new();
    assert_eq!(
        t.claim_ownership(1_000, std::slice::from_ref(&a))[0].etag,
        MemoryStore::new().claim_ownership(9, &[a])[0].etag
    );

    // Checkpoints.
    s.update_checkpoint(&PartitionCheckpoint::new(
        "NS:5672", "eh1", "$Default", "0", "100", 5,
    ))
    .unwrap();
    s.update_checkpoint(&PartitionCheckpoint::new(
        "ns:5672", "eh1", "$default", "0", "200", 9,
    ))
    .unwrap();
    let cps = s.list_checkpoints("ns:5672", "eh1", "$Default");
    assert_eq!(cps.len(), 1);
    assert_eq!(
        (cps[0].offset.as_deref(), cps[0].sequence_number),
        (Some("200"), Some(9))
    );
    let mut bad = cps[0].clone();
    bad.sequence_number = None;
    assert!(s.update_checkpoint(&bad).is_err());
    assert!(s.list_checkpoints("other", "eh1", "$default").is_empty());
}
