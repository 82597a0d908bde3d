//! `eventhubs-emulator`: a local Azure Event Hubs broker.
//!
//! ```text
//! eventhubs-emulator [--listen ADDR] [--config Config.json]
//!     [--tls-listen ADDR] [--ws-listen ADDR] [--wss-listen ADDR]
//!     [--tls-cert PEM --tls-key PEM]
//! ```
//!
//! Listens on 127.0.0.1:5672 by default, plain AMQP as Microsoft's emulator
//! does; optionally also AMQP over TLS, over WebSocket
//! (`/$servicebus/websocket`, subprotocol `AMQPWSB10`) and over WebSocket
//! over TLS, each printed as `LISTENING-TLS|WS|WSS PORT` after `LISTENING`. Connection string:
//! `Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;EntityPath=eh1`.
//! Set `RUST_LOG` (e.g. `debug`) for more detail.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use eventhubs_emulator::config::EmulatorConfig;
use eventhubs_emulator::listeners::ListenerArgs;
use tracing_subscriber::EnvFilter;

fn usage() -> ExitCode {
    eprintln!(
        "usage: eventhubs-emulator [--listen ADDR] [--config Config.json] {}",
        ListenerArgs::USAGE
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut listen: SocketAddr = "127.0.0.1:5672".parse().expect("address");
    let mut config_path: Option<PathBuf> = None;
    let mut extra = ListenerArgs::default();
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
            "-h" | "--help" => {
                let _ = usage();
                return ExitCode::SUCCESS;
            }
            flag => match extra.take(flag, &mut args) {
                Ok(true) => {}
                Ok(false) => return usage(),
                Err(e) => {
                    eprintln!("eventhubs-emulator: {e}");
                    return usage();
                }
            },
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
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("eventhubs-emulator: cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let hubs: Vec<String> = config.hubs.iter().map(|h| format!("{} ({} partitions)", h.name, h.partition_count)).collect();
        tracing::info!(%listen, namespace = %config.namespace, hubs = ?hubs, "eventhubs-emulator listening");
        println!("LISTENING {}", listener.local_addr().map(|a| a.port()).unwrap_or(0));
        let addrs = listeners.addrs();
        for (name, addr) in [("TLS", addrs.tls), ("WS", addrs.ws), ("WSS", addrs.wss)] {
            if let Some(addr) = addr {
                tracing::info!(%addr, "also listening for AMQP over {name}");
                println!("LISTENING-{name} {}", addr.port());
            }
        }
        match eventhubs_emulator::server::serve_with(listener, config, listeners).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("eventhubs-emulator: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
