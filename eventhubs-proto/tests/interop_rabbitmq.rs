//! Interop with RabbitMQ's AMQP 1.0 plugin (Debian's rabbitmq-server 3.10,
//! plugin rabbitmq_amqp1_0, bound to 127.0.0.1:5672 by `.ci/rabbitmq.sh`):
//! our client engine sends to and receives from `/queue/NAME` addresses.

mod interop_support;

use std::net::TcpStream;
use std::time::Duration;

use eventhubs_proto::engine::SaslMechanism;
use interop_support::*;

fn rabbitmq() -> bool {
    let up = TcpStream::connect_timeout(&"127.0.0.1:5672".parse().unwrap(), Duration::from_secs(2))
        .is_ok();
    if !up {
        missing("RabbitMQ on 127.0.0.1:5672 (run .ci/rabbitmq.sh)");
    }
    up
}

/// A queue address unique to this run, so queues left over from earlier
/// runs on the same node cannot interfere.
fn queue(name: &str) -> String {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "/queue/eventhubs-interop-{name}-{}-{nonce}",
        std::process::id()
    )
}

fn guest() -> SaslMechanism {
    SaslMechanism::Plain {
        username: "guest".into(),
        password: "guest".into(),
    }
}

#[test]
fn our_client_against_rabbitmq_unsettled() {
    if !rabbitmq() {
        return;
    }
    round_trip(5672, guest(), &queue("unsettled"), 2_000, 100, false);
}

#[test]
fn our_client_against_rabbitmq_presettled() {
    if !rabbitmq() {
        return;
    }
    round_trip(5672, guest(), &queue("settled"), 2_000, 100, true);
}

#[test]
fn our_client_against_rabbitmq_large_messages() {
    if !rabbitmq() {
        return;
    }
    round_trip(5672, guest(), &queue("large"), 4, 256 * 1024, false);
}

#[test]
fn our_client_against_rabbitmq_anonymous() {
    if !rabbitmq() {
        return;
    }
    round_trip(
        5672,
        SaslMechanism::Anonymous,
        &queue("anonymous"),
        50,
        10,
        false,
    );
}
