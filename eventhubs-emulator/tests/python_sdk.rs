//! Runs the compatibility suite of Microsoft's official Python SDK
//! (`tests/python_sdk/compat.py`, `azure-eventhub`) against the emulator:
//! the whole suite over plain AMQP against an in-process emulator, and the
//! transport scenarios over AMQP over TLS and over WebSocket over TLS
//! against the emulator binary (`--tls-listen`, `--wss-listen`) with a
//! fresh self-signed certificate for `localhost`, which the SDK verifies.
//!
//! Without the SDK (`python3 -c "import azure.eventhub"` fails), or for
//! WebSocket without `websocket-client`, a test is skipped, unless
//! `EVENTHUBS_INTEROP=require`, which makes it fail instead.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use eventhubs_emulator::{Emulator, EmulatorConfig};
use eventhubs_testkit::TempDir;

/// Whether python3 can import `modules`.
fn python_imports(modules: &str) -> Result<(), String> {
    match Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "python3 cannot import {modules}: {}",
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

/// True when `modules` import; otherwise prints SKIPPED and returns false,
/// or panics under `EVENTHUBS_INTEROP=require`.
fn have_python(modules: &str, install: &str) -> bool {
    let Err(why) = python_imports(modules) else {
        return true;
    };
    if std::env::var("EVENTHUBS_INTEROP").as_deref() == Ok("require") {
        panic!("EVENTHUBS_INTEROP=require but {why} ({install})");
    }
    println!("SKIPPED: {why} ({install})");
    false
}

const INSTALL_SDK: &str = "python3 -m pip install azure-eventhub";

/// Runs compat.py with `args` and checks it passed every scenario it ran.
fn run_compat(args: &[String]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/python_sdk/compat.py");
    let output = Command::new("python3")
        .arg(&script)
        .args(args)
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
        "compat.py {args:?} exited with {}; last line: {last:?}",
        output.status
    );
    let last = last.expect("compat.py printed a summary");
    assert!(
        last.ends_with(" passed, 0 failed"),
        "unexpected summary: {last}"
    );
}

#[test]
fn official_python_sdk_compat_suite() {
    if !have_python("azure.eventhub", INSTALL_SDK) {
        return;
    }
    let emulator = Emulator::start(EmulatorConfig::default()).expect("emulator starts");
    run_compat(&["--port".into(), emulator.addr().port().to_string()]);
}

/// The emulator binary serving AMQP over TLS and over WebSocket over TLS
/// with a self-signed certificate for `localhost`; killed on drop. Its log
/// (stderr) goes to a file in its temp dir.
struct EmulatorProcess {
    child: Child,
    tls_port: u16,
    wss_port: u16,
    ca: PathBuf,
    log: PathBuf,
    _dir: TempDir,
}

impl EmulatorProcess {
    fn start(name: &str) -> EmulatorProcess {
        let dir = TempDir::created(name);
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
        let cert = dir.0.join("cert.pem");
        let key = dir.0.join("key.pem");
        let log = dir.0.join("emulator.log");
        fs::write(&cert, certified.cert.pem()).expect("write cert.pem");
        fs::write(&key, certified.signing_key.serialize_pem()).expect("write key.pem");
        let any = "127.0.0.1:0";
        let mut child = Command::new(env!("CARGO_BIN_EXE_eventhubs-emulator"))
            .args(["--listen", any, "--tls-listen", any, "--wss-listen", any])
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("the emulator binary starts");
        // `LISTENING-TLS PORT` and `LISTENING-WSS PORT`, read on a thread so
        // a silent emulator fails the test instead of hanging it.
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut tls_port, mut wss_port) = (None, None);
        while tls_port.is_none() || wss_port.is_none() {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the emulator did not print its TLS and WSS ports; log:\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            };
            let port = |prefix: &str| {
                line.strip_prefix(prefix)
                    .map(|p| p.trim().parse::<u16>().expect("a port"))
            };
            tls_port = tls_port.or(port("LISTENING-TLS "));
            wss_port = wss_port.or(port("LISTENING-WSS "));
        }
        EmulatorProcess {
            child,
            tls_port: tls_port.expect("TLS port"),
            wss_port: wss_port.expect("WSS port"),
            ca: cert,
            log,
            _dir: dir,
        }
    }

    /// Stops the emulator and returns its log.
    fn stop(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        fs::read_to_string(&self.log).expect("emulator log")
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs compat.py's transport scenarios over `transport` (`tls` or `wss`)
/// against the emulator binary, then checks in the emulator's log that the
/// SDK came in over that listener only (`transport="amqps"` or `"wss"`),
/// and that the scenario refusing an untrusted certificate and a wrong
/// host name was refused in the TLS handshake.
fn over_transport(transport: &str, logged_as: &str, port: impl Fn(&EmulatorProcess) -> u16) {
    let mut emulator = EmulatorProcess::start(transport);
    run_compat(&[
        "--transport".into(),
        transport.into(),
        "--port".into(),
        port(&emulator).to_string(),
        "--host".into(),
        "localhost".into(),
        "--ca".into(),
        path_arg(&emulator.ca),
    ]);
    let log = emulator.stop();
    let lines = |needles: &[&str]| {
        log.lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    };
    let over = format!("transport=\"{logged_as}\"");
    assert!(
        lines(&["client connected", &over]) >= 2,
        "no SDK connection over {logged_as} in the emulator's log:\n{log}"
    );
    assert_eq!(
        lines(&["client connected", "transport=\"amqp\""]),
        0,
        "the SDK used the plain listener:\n{log}"
    );
    assert!(
        lines(&["handshake failed", &over, "stage=\"tls\""]) >= 2,
        "the untrusted-certificate scenario was not refused in the TLS handshake:\n{log}"
    );
}

fn path_arg(p: &Path) -> String {
    p.to_str().expect("a UTF-8 temp path").to_string()
}

#[test]
fn official_python_sdk_over_tls() {
    if !have_python("azure.eventhub", INSTALL_SDK) {
        return;
    }
    over_transport("tls", "amqps", |e| e.tls_port);
}

#[test]
fn official_python_sdk_over_websocket_tls() {
    // The SDK's synchronous WebSocket transport is websocket-client.
    if !have_python(
        "azure.eventhub, websocket",
        "python3 -m pip install azure-eventhub websocket-client",
    ) {
        return;
    }
    over_transport("wss", "wss", |e| e.wss_port);
}
