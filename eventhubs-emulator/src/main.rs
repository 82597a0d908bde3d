//! `eventhubs-emulator`: a local Azure Event Hubs broker.
//!
//! ```text
//! eventhubs-emulator [--listen ADDR] [--config Config.json]
//! ```
//!
//! Listens on 127.0.0.1:5672 by default, plain AMQP as Microsoft's emulator
//! does. Connection string:
//! `Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;EntityPath=eh1`.
//! Set `RUST_LOG` (e.g. `debug`) for more detail.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use eventhubs_emulator::config::EmulatorConfig;
use tracing_subscriber::EnvFilter;

fn usage() -> ExitCode {
    eprintln!("usage: eventhubs-emulator [--listen ADDR] [--config Config.json]");
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
            _ => return usage(),
        }
    }
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
        match eventhubs_emulator::server::serve(listener, config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("eventhubs-emulator: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
