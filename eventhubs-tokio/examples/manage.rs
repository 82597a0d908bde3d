//! Creates, shows, lists, updates and deletes event hubs with the hub
//! manager.
//!
//! ```text
//! cargo run -p eventhubs-tokio --example manage -- create telemetry --partitions 4 --retention-days 3
//! cargo run -p eventhubs-tokio --example manage -- list
//! ```
//!
//! Uses `EVENTHUB_CONNECTION_STRING`'s namespace and key (a policy with
//! Manage rights) when set; otherwise starts an embedded emulator with its
//! management API, which lives as long as the command.

mod common;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use eventhubs_emulator::{Emulator, EmulatorConfig};
use eventhubs_tokio::management::{EntityStatus, HubDescription, HubEntity, ManagementEndpoint};
use eventhubs_tokio::HubManager;

/// Creates, shows, lists, updates and deletes event hubs (the hub manager).
#[derive(Debug, Parser)]
#[command(
    name = "manage",
    after_help = "The namespace and its key are EVENTHUB_CONNECTION_STRING's (a policy with\n\
                  Manage rights; EntityPath is ignored). When it is not set, an embedded\n\
                  emulator is started with its management API; it lives only as long as the\n\
                  command, with its configured hub eh1. An update resets the properties it is\n\
                  not given to the service's defaults, as the service does."
)]
struct Options {
    /// The management endpoint (e.g. http://127.0.0.1:5300 for an emulator
    /// started elsewhere), instead of the connection string's namespace
    #[arg(long, value_name = "URL", global = true)]
    endpoint: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
enum Command {
    /// Creates an event hub
    Create {
        /// The event hub
        name: String,
        /// Partitions
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        partitions: Option<u32>,
        #[command(flatten)]
        common: Properties,
    },
    /// Updates an event hub
    Update {
        /// The event hub
        name: String,
        /// Active, Disabled, SendDisabled or ReceiveDisabled
        #[arg(long, value_name = "STATUS")]
        status: Option<EntityStatus>,
        #[command(flatten)]
        common: Properties,
    },
    /// Shows an event hub
    Get {
        /// The event hub
        name: String,
    },
    /// Lists the event hubs
    List,
    /// Deletes an event hub
    Delete {
        /// The event hub
        name: String,
    },
}

/// What create and update both set.
#[derive(Debug, PartialEq, Eq, clap::Args)]
struct Properties {
    /// Days events are kept
    #[arg(long, value_name = "D", value_parser = clap::value_parser!(u32).range(1..))]
    retention_days: Option<u32>,
    /// Free text kept with the hub
    #[arg(long, value_name = "TEXT")]
    user_metadata: Option<String>,
}

impl Properties {
    fn describe(&self, mut d: HubDescription) -> HubDescription {
        if let Some(n) = self.retention_days {
            d = d.with_message_retention_in_days(n);
        }
        if let Some(m) = &self.user_metadata {
            d = d.with_user_metadata(m);
        }
        d
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = Options::parse();
    common::init_tracing();
    match run(options.command, options.endpoint).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("manage: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The manager, and the embedded emulator it talks to when
/// `EVENTHUB_CONNECTION_STRING` is not set.
fn manager(
    endpoint: Option<String>,
) -> Result<(HubManager, Option<Emulator>), Box<dyn std::error::Error>> {
    let (manager, emulator) = match std::env::var("EVENTHUB_CONNECTION_STRING") {
        Ok(cs) if !cs.trim().is_empty() => (HubManager::from_connection_string(&cs)?, None),
        _ => {
            let emulator = Emulator::builder()
                .config(EmulatorConfig::default())
                .management(true)
                .start()?;
            let url = emulator
                .management_endpoint()
                .ok_or("the embedded emulator has no management listener")?;
            eprintln!("EVENTHUB_CONNECTION_STRING is not set: started an embedded emulator, management API on {url}");
            let m = HubManager::from_connection_string(&emulator.connection_string("eh1"))?
                .with_endpoint(ManagementEndpoint::parse(&url)?);
            (m, Some(emulator))
        }
    };
    let manager = match endpoint {
        Some(url) => manager.with_endpoint(ManagementEndpoint::parse(&url)?),
        None => manager,
    };
    eprintln!("managing {}", manager.endpoint().base_url());
    Ok((manager, emulator))
}

async fn run(
    command: Command,
    endpoint: Option<String>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let (m, _emulator) = manager(endpoint)?;
    match command {
        Command::Create {
            name,
            partitions,
            common,
        } => {
            let mut d = HubDescription::new();
            if let Some(n) = partitions {
                d = d.with_partition_count(n);
            }
            let hub = m.put(&name, &common.describe(d)).await?;
            println!("created");
            print_hub(&hub);
        }
        Command::Update {
            name,
            status,
            common,
        } => {
            let mut d = HubDescription::new();
            if let Some(s) = status {
                d = d.with_status(s);
            }
            let hub = m.update(&name, &common.describe(d)).await?;
            println!("updated");
            print_hub(&hub);
        }
        Command::Get { name } => match m.get(&name).await? {
            Some(hub) => print_hub(&hub),
            None => {
                eprintln!("manage: no event hub {name:?}");
                return Ok(ExitCode::FAILURE);
            }
        },
        Command::List => {
            let hubs = m.list().await?;
            let n = hubs.len();
            println!("{n} event hub{}", if n == 1 { "" } else { "s" });
            for h in hubs {
                println!(
                    "{:<32} partitions {:<3} retention {} day(s), {}",
                    h.name,
                    h.partition_count.map_or("-".into(), |n| n.to_string()),
                    h.message_retention_in_days
                        .map_or("-".into(), |n| n.to_string()),
                    h.status.map_or("-", |s| s.as_str())
                );
            }
        }
        Command::Delete { name } => {
            m.delete(&name).await?;
            println!("deleted {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_hub(h: &HubEntity) {
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    println!("hub {}", h.name);
    println!(
        "  partitions              {} ({})",
        or_dash(h.partition_count.map(|n| n.to_string())),
        h.partition_ids.join(", ")
    );
    println!(
        "  retention               {} day(s)",
        or_dash(h.message_retention_in_days.map(|n| n.to_string()))
    );
    println!(
        "  status                  {}",
        or_dash(h.status.map(|s| s.to_string()))
    );
    println!(
        "  size                    {} bytes",
        or_dash(h.size_in_bytes.map(|n| n.to_string()))
    );
    println!(
        "  created at              {}",
        or_dash(h.created_at.map(common::format_time))
    );
    println!(
        "  updated at              {}",
        or_dash(h.updated_at.map(common::format_time))
    );
    if let Some(m) = &h.user_metadata {
        println!("  user metadata           {m}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Options, clap::Error> {
        Options::try_parse_from(std::iter::once("manage").chain(a.iter().copied()))
    }

    #[test]
    fn commands() {
        let o = args(&["create", "t", "--partitions", "5", "--retention-days=3"]).unwrap();
        assert_eq!(
            o.command,
            Command::Create {
                name: "t".into(),
                partitions: Some(5),
                common: Properties {
                    retention_days: Some(3),
                    user_metadata: None
                }
            }
        );
        let o = args(&[
            "update",
            "t",
            "--status",
            "Disabled",
            "--endpoint",
            "http://x",
        ])
        .unwrap();
        assert_eq!(o.endpoint.as_deref(), Some("http://x"));
        assert!(matches!(
            o.command,
            Command::Update {
                status: Some(EntityStatus::Disabled),
                ..
            }
        ));
        assert_eq!(args(&["list"]).unwrap().command, Command::List);
        assert!(args(&[]).is_err());
        assert!(args(&["get"]).is_err());
        assert!(args(&["frob"]).is_err());
        assert!(args(&["get", "t", "--partitions", "2"]).is_err());
        assert!(args(&["create", "t", "--partitions", "0"]).is_err());
        assert!(args(&["update", "t", "--status", "Sleeping"]).is_err());
    }
}
