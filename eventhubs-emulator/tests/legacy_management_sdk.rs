//! Microsoft's legacy Python SDK for Service Bus (`azure-servicebus` 0.21.1,
//! `ServiceBusService.create_event_hub` and friends), an independent client
//! of the Atom management API, against the emulator's HTTP listener
//! (`tests/python_sdk/legacy_management.py`); the hub it creates is then
//! used over AMQP.
//!
//! The SDK lives in its own virtual environment, `.venv-servicebus/` at the
//! workspace root (or the Python named by `EVENTHUBS_LEGACY_SB_PYTHON`):
//!
//! ```sh
//! python3 -m venv .venv-servicebus && .venv-servicebus/bin/pip install azure-servicebus==0.21.1
//! ```
//!
//! Without it the test says SKIPPED, and fails under
//! `EVENTHUBS_INTEROP=require`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use eventhubs_emulator::Emulator;
use eventhubs_proto::codec::message::Message;
use eventhubs_proto::codec::messaging::DeliveryState;
use eventhubs_proto::codec::{Decode, Encode};
use eventhubs_proto::engine::Event;
use eventhubs_proto::eventhubs::EventPosition;
use eventhubs_testkit::tcp::{emulator_plain, event, event_number, EngineClient as Client};

const INSTALL: &str =
    "python3 -m venv .venv-servicebus && .venv-servicebus/bin/pip install azure-servicebus==0.21.1";

/// The Python with the legacy SDK, or why there is none.
fn python() -> Result<PathBuf, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var_os("EVENTHUBS_LEGACY_SB_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv-servicebus/bin/python"));
    let ok = Command::new(&python)
        .args(["-c", "from azure.servicebus import ServiceBusService"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Ok(python)
    } else {
        Err(format!(
            "{} cannot import azure.servicebus.ServiceBusService",
            python.display()
        ))
    }
}

#[test]
fn the_legacy_python_sdk_manages_hubs_that_amqp_then_serves() {
    let python = match python() {
        Ok(p) => p,
        Err(why) => {
            if std::env::var("EVENTHUBS_INTEROP").as_deref() == Ok("require") {
                panic!("EVENTHUBS_INTEROP=require but {why} ({INSTALL})");
            }
            println!("SKIPPED: {why} ({INSTALL})");
            return;
        }
    };
    let emu = Emulator::builder()
        .management(true)
        .start()
        .expect("emulator");
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/python_sdk/legacy_management.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(emu.management_addr().unwrap().port().to_string())
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.starts_with("OK "),
        "legacy SDK failed:\n{stdout}\n{stderr}"
    );
    println!("{}", stdout.trim());

    // The hub it created takes and gives events over AMQP.
    let mut c = Client::connect(emu.addr(), emulator_plain()).expect("connect");
    let tx = c.sender("py-made/Partitions/2").expect("sender");
    let state = c.publish(tx, 0, event(11, 64).to_bytes());
    assert!(matches!(state, DeliveryState::Accepted(_)), "{state:?}");
    let rx = c
        .receiver(
            "py-made/ConsumerGroups/$Default/Partitions/2",
            Some(EventPosition::Earliest),
        )
        .expect("receiver");
    c.conn.link(rx).flow(10).unwrap();
    let payload = c
        .until(Duration::from_secs(10), |_, e| match e {
            Event::Delivery { payload, .. } => Some(payload.clone()),
            _ => None,
        })
        .expect("the event");
    assert_eq!(
        event_number(&Message::decode_all(&payload).unwrap()),
        Some(11)
    );
}
