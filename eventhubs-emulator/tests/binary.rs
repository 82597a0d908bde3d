//! The `eventhubs-emulator` binary as a parent process sees it.

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eventhubs_proto::codec::messaging::DeliveryState;
use eventhubs_proto::codec::Encode;
use eventhubs_testkit::tcp::{emulator_plain, event, EngineClient};

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A parent that stops reading the `LISTENING` lines (closes its end of the
/// pipe) must not take the broker down: a failed `println!` panics, and
/// Microsoft's Rust SDK harness read one line and dropped the pipe.
#[test]
fn a_closed_stdout_does_not_stop_the_broker() {
    let (amqp, http) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventhubs-emulator"))
        .args(["--listen", &format!("127.0.0.1:{amqp}")])
        .args(["--http-listen", &format!("127.0.0.1:{http}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the emulator binary");
    // Close the read end before the broker has written anything.
    drop(child.stdout.take());
    let addr: SocketAddr = format!("127.0.0.1:{amqp}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut client = loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the emulator exited ({status}) once its stdout was closed");
        }
        match EngineClient::connect(addr, emulator_plain()) {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("the emulator never served {addr}: {e}"),
        }
    };
    let tx = client.sender("eh1/Partitions/0").expect("sender");
    let state = client.publish(tx, 0, event(1, 100).to_bytes());
    assert!(matches!(state, DeliveryState::Accepted(_)), "{state:?}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(child.try_wait().unwrap().is_none(), "the emulator exited");
    let _ = child.kill();
    let _ = child.wait();
}
