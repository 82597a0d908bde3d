//! Runs the compatibility suite of Microsoft's official Python SDK
//! (`tests/python_sdk/compat.py`, `azure-eventhub`) against an in-process
//! emulator.
//!
//! Without the SDK (`python3 -c "import azure.eventhub"` fails) the test is
//! skipped, unless `EVENTHUBS_INTEROP=require`, which makes it fail instead.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use eventhubs_emulator::{Emulator, EmulatorConfig};

fn sdk_available() -> Result<(), String> {
    match Command::new("python3")
        .args(["-c", "import azure.eventhub"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "python3 cannot import azure.eventhub: {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
        )),
        Err(e) => Err(format!("python3 cannot be run: {e}")),
    }
}

#[test]
fn official_python_sdk_compat_suite() {
    if let Err(why) = sdk_available() {
        if std::env::var("EVENTHUBS_INTEROP").as_deref() == Ok("require") {
            panic!("EVENTHUBS_INTEROP=require but {why} (python3 -m pip install azure-eventhub)");
        }
        println!("SKIPPED: {why} (python3 -m pip install azure-eventhub)");
        return;
    }
    let emulator = Emulator::start(EmulatorConfig::default()).expect("emulator starts");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/python_sdk/compat.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg("--port")
        .arg(emulator.addr().port().to_string())
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    if !stderr.trim().is_empty() {
        eprintln!("{stderr}");
    }
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
    assert!(
        output.status.success(),
        "compat.py exited with {}; last line: {last:?}",
        output.status
    );
    let last = last.expect("compat.py printed a summary");
    assert!(
        last.ends_with(" passed, 0 failed"),
        "unexpected summary: {last}"
    );
}
