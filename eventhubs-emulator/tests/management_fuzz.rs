//! The `management_request` fuzz target's harness run natively: seed-like
//! inputs reach every operation, and inputs that once broke the handler
//! stay fixed (each a byte literal with what it broke).

#[path = "../../fuzz/src/management_request.rs"]
#[allow(dead_code)]
mod management_request;

use management_request::run;

fn request(method: &str, path: &str, body: &str, headers: &[&str]) -> Vec<u8> {
    let mut head =
        format!("{method} {path}?api-version=2017-04 HTTP/1.1\r\nHost: 127.0.0.1:5300\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    if method == "PUT" {
        head.push_str(&format!(
            "Content-Type: application/atom+xml;type=entry;charset=utf-8\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    head.push_str(body);
    head.into_bytes()
}

fn entry(kind: &str, inner: &str) -> String {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<entry xmlns=\"http://www.w3.org/2005/Atom\"><content type=\"application/xml\"><{kind} xmlns=\"http://schemas.microsoft.com/netservices/2010/10/servicebus/connect\">{inner}</{kind}></content></entry>")
}

fn lifecycle(flags: u8) -> Vec<u8> {
    let hub = |i: &str| entry("EventHubDescription", i);
    let group = |i: &str| entry("ConsumerGroupDescription", i);
    let mut input = vec![flags];
    for part in [
        request("PUT", "/telemetry", &hub("<MessageRetentionInDays>3</MessageRetentionInDays><PartitionCount>5</PartitionCount>"), &[]),
        request("GET", "/$Resources/EventHubs", "", &[]),
        request("PUT", "/telemetry", &hub("<MessageRetentionInDays>3</MessageRetentionInDays>"), &[]),
        request("PUT", "/telemetry", &hub("<MessageRetentionInDays>5</MessageRetentionInDays><Status>SendDisabled</Status>"), &["If-Match: *"]),
        request("PUT", "/telemetry/consumergroups/cg", &group("<UserMetadata>x</UserMetadata>"), &[]),
        request("GET", "/telemetry/consumergroups", "", &[]),
        request("DELETE", "/telemetry/consumergroups/cg", "", &[]),
        request("DELETE", "/telemetry", "", &[]),
        request("GET", "/telemetry", "", &[]),
        request("PUT", "/h", &hub("<PartitionCount>33</PartitionCount>"), &[]),
        request("PUT", "/h", "<entry", &[]),
        request("POST", "/eh1", "", &[]),
        request("GET", "/health", "", &[]),
    ] {
        input.extend(part);
    }
    input
}

#[test]
fn seeds_reach_every_operation() {
    // Signed, the last GET /health is a Get Event Hub of a hub named
    // health: 200 with the empty feed.
    assert_eq!(
        run(&lifecycle(1)),
        [201, 200, 409, 200, 201, 200, 200, 200, 200, 400, 400, 405, 200]
    );
    // Unsigned: everything is refused but the health check (and the method
    // no resource allows, refused before authorization).
    assert_eq!(
        run(&lifecycle(0)),
        [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 405, 200]
    );
    // Without Manage rights, the same; a signed GET /health names a hub.
    assert_eq!(
        run(&lifecycle(2)),
        [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 405, 401]
    );
    assert_eq!(run(b"\x01GARBAGE\0\r\n\r\n"), [400]);
    assert!(run(b"").is_empty());
}
