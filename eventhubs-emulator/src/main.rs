//! `eventhubs-emulator`: a local Azure Event Hubs broker.
//!
//! ```text
//! eventhubs-emulator [--listen ADDR] [--config Config.json] [--data-dir DIR]
//!     [--tls-listen ADDR] [--ws-listen ADDR] [--wss-listen ADDR]
//!     [--tls-cert PEM --tls-key PEM] [--http-listen ADDR|off]
//!     [--max-connections N] [--max-unauthenticated N] [--handshake-timeout SECS]
//!     [--cbs-timeout SECS] [--max-sessions N] [--max-links N]
//!     [--max-pending-deliveries N] [--max-http-connections N]
//!     [--http-request-timeout SECS]
//!     [--ms-sdk-outcome-delay MS] [--max-partition-bytes N]
//! ```
//!
//! Listens on 127.0.0.1:5672 by default, plain AMQP as Microsoft's emulator
//! does; optionally also AMQP over TLS, over WebSocket
//! (`/$servicebus/websocket`, subprotocol `AMQPWSB10`) and over WebSocket
//! over TLS, each printed as `LISTENING-TLS|WS|WSS PORT` after `LISTENING`.
//! HTTP (`--http-listen`, default 127.0.0.1:5300, skipped with a warning
//! when that port is taken; `off` to disable) serves the Atom management
//! API and `GET /health`, printed as `LISTENING-HTTP PORT`. Connection string:
//! `Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;EntityPath=eh1`.
//! With `--data-dir`, events are kept in DIR and served again after a
//! restart. The limit flags bound what clients may make it hold (see the
//! library's `limits` module; `--help` lists them with their defaults).
//! `--ms-sdk-outcome-delay` sets how long outcomes sent to
//! Microsoft's Rust SDK are held (20 ms by default; 0 answers it at once,
//! and it may then stall: see the `quirks` module). A partition keeps its
//! events for an hour and at most `--max-partition-bytes` of them (1 GiB
//! by default), the oldest dropped first. Logs go to stderr at `info` (connections, links, tokens,
//! errors); set `RUST_LOG` (e.g. `debug`, or
//! `eventhubs_emulator=debug`) for more or less.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use eventhubs_emulator::config::EmulatorConfig;
use eventhubs_emulator::listeners::ListenerArgs;
use eventhubs_emulator::server::Server;
use eventhubs_emulator::Limits;
use tracing_subscriber::EnvFilter;

fn usage() -> ExitCode {
    eprintln!(
        "usage: eventhubs-emulator [--listen ADDR] [--config Config.json] [--data-dir DIR] [--ms-sdk-outcome-delay MS] [--max-partition-bytes N] {} {}",
        ListenerArgs::USAGE,
        Limits::USAGE
    );
    ExitCode::from(2)
}

/// The log filter: `RUST_LOG` when it is set and valid, else `info`.
fn log_filter() -> EnvFilter {
    match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(&v).unwrap_or_else(|e| {
            eprintln!("eventhubs-emulator: ignoring RUST_LOG={v:?} ({e}); logging at info");
            EnvFilter::new("info")
        }),
        _ => EnvFilter::new("info"),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let mut listen: SocketAddr = "127.0.0.1:5672".parse().expect("address");
    let mut config_path: Option<PathBuf> = None;
    let mut extra = ListenerArgs::default();
    let mut data_dir: Option<PathBuf> = None;
    let mut limits = Limits::default();
    let mut cbs_deadline_ms: Option<i64> = None;
    let mut ms_sdk_outcome_delay: Option<std::time::Duration> = None;
    let mut max_partition_bytes: Option<u64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => match args.next().and_then(|v| v.parse().ok()) {
                Some(v) => listen = v,
                None => return usage(),
            },
            "--config" => match args.next() {
                Some(v) => config_path = Some(v.into()),
                None => return usage(),
            },
            "--data-dir" => match args.next() {
                Some(v) => data_dir = Some(v.into()),
                None => return usage(),
            },
            "--ms-sdk-outcome-delay" => match args.next().and_then(|v| v.parse().ok()) {
                Some(ms) => ms_sdk_outcome_delay = Some(std::time::Duration::from_millis(ms)),
                None => return usage(),
            },
            "--max-partition-bytes" => match args.next().and_then(|v| v.parse().ok()) {
                Some(n) if n > 0 => max_partition_bytes = Some(n),
                _ => return usage(),
            },
            "-h" | "--help" => {
                let _ = usage();
                eprintln!("{}", Limits::HELP);
                return ExitCode::SUCCESS;
            }
            flag => {
                let mut cbs = cbs_deadline_ms.unwrap_or(60_000);
                let taken = extra
                    .take(flag, &mut args)
                    .and_then(|t| Ok(t || limits.take(flag, &mut args, &mut cbs)?));
                match taken {
                    Ok(true) => {
                        if flag == "--cbs-timeout" {
                            cbs_deadline_ms = Some(cbs);
                        }
                    }
                    Ok(false) => return usage(),
                    Err(e) => {
                        eprintln!("eventhubs-emulator: {e}");
                        return usage();
                    }
                }
            }
        }
    }
    let listeners = match extra.into_options().and_then(|o| o.bind()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("eventhubs-emulator: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match config_path {
        Some(p) => match EmulatorConfig::from_file(&p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("eventhubs-emulator: {e}");
                return ExitCode::from(2);
            }
        },
        None => EmulatorConfig::default(),
    };
    let mut config = match data_dir {
        Some(dir) => config.with_data_dir(dir),
        None => config,
    };
    config.limits = limits;
    if let Some(ms) = cbs_deadline_ms {
        config.cbs_deadline_ms = ms;
    }
    if let Some(delay) = ms_sdk_outcome_delay {
        config.ms_sdk_outcome_delay = delay;
    }
    if let Some(n) = max_partition_bytes {
        config.max_partition_bytes = n;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("eventhubs-emulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let data_dir = config
        .data_dir
        .as_ref()
        .map_or("none (in memory)".to_string(), |d| d.display().to_string());
    let hubs: Vec<String> = config
        .hubs
        .iter()
        .map(|h| format!("{} ({} partitions)", h.name, h.partition_count))
        .collect();
    let namespace = config.namespace.clone();
    let server = match Server::new(config) {
        Ok(s) => s,
        // A data directory locked by another emulator names itself.
        Err(e) if e.kind() == std::io::ErrorKind::ResourceBusy => {
            eprintln!("eventhubs-emulator: {e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("eventhubs-emulator: data dir {data_dir}: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("eventhubs-emulator: cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let listen = listener.local_addr().unwrap_or(listen);
        tracing::info!(%listen, %namespace, hubs = ?hubs, %data_dir, "eventhubs-emulator listening");
        // One write for every line, errors ignored: a parent that reads the
        // first line and closes the pipe must not take the broker down (a
        // failed `println!` panics).
        let mut announce = format!("LISTENING {}\n", listen.port());
        let addrs = listeners.addrs();
        for (name, addr) in [("TLS", addrs.tls), ("WS", addrs.ws), ("WSS", addrs.wss)] {
            if let Some(addr) = addr {
                tracing::info!(%addr, "also listening for AMQP over {name}");
                announce.push_str(&format!("LISTENING-{name} {}\n", addr.port()));
            }
        }
        if let Some(addr) = addrs.http {
            tracing::info!(%addr, "management API and health check on http://{addr}");
            announce.push_str(&format!("LISTENING-HTTP {}\n", addr.port()));
        }
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(announce.as_bytes()).and_then(|()| out.flush());
        }
        match server.serve_with(listener, listeners).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("eventhubs-emulator: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
