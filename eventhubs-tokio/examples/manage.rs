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

use eventhubs_emulator::{Emulator, EmulatorConfig};
use eventhubs_proto::management::ManagementEndpoint;
use eventhubs_tokio::management::{EntityStatus, HubDescription, HubEntity};
use eventhubs_tokio::HubManager;

const USAGE: &str = "\
Creates, shows, lists, updates and deletes event hubs (the hub manager).

Usage: manage create NAME [--partitions N] [--retention-days D] [--user-metadata TEXT]
       manage update NAME [--retention-days D] [--status STATUS] [--user-metadata TEXT]
       manage get NAME
       manage list
       manage delete NAME
Options of every command:
       --endpoint URL   the management endpoint (e.g. http://127.0.0.1:5300 for
                        an emulator started elsewhere), instead of the
                        connection string's namespace

The namespace and its key are EVENTHUB_CONNECTION_STRING's (a policy with
Manage rights; EntityPath is ignored). When it is not set, an embedded
emulator is started with its management API; it lives only as long as the
command, with its configured hub eh1. An update resets the properties it is
not given to the service's defaults, as the service does.
";

#[derive(Debug, PartialEq, Eq)]
enum Command {
    Create(String, HubDescription),
    Update(String, HubDescription),
    Get(String),
    List,
    Delete(String),
}

fn parse(args: Vec<String>) -> Result<(Command, Option<String>), common::ArgError> {
    use common::ArgError;
    let mut it = args.into_iter();
    let verb = match it.next() {
        Some(v) if v == "-h" || v == "--help" => return Err(ArgError::Help),
        Some(v) => v,
        None => {
            return Err(ArgError::Invalid {
                flag: "command",
                value: String::new(),
                reason: "give one of create, update, get, list and delete".into(),
            })
        }
    };
    let rest: Vec<String> = it.collect();
    let (name, flags) = match verb.as_str() {
        "list" => (None, rest),
        "create" | "update" | "get" | "delete" => match rest.split_first() {
            Some((n, tail)) if !n.starts_with("--") => (Some(n.clone()), tail.to_vec()),
            _ => {
                return Err(ArgError::Invalid {
                    flag: "NAME",
                    value: String::new(),
                    reason: format!("{verb} needs the event hub's name"),
                })
            }
        },
        other => {
            return Err(ArgError::Invalid {
                flag: "command",
                value: other.to_owned(),
                reason: "not one of create, update, get, list and delete".into(),
            })
        }
    };
    let allowed: &[&'static str] = match verb.as_str() {
        "create" => &[
            "--endpoint",
            "--partitions",
            "--retention-days",
            "--user-metadata",
        ],
        "update" => &[
            "--endpoint",
            "--retention-days",
            "--status",
            "--user-metadata",
        ],
        _ => &["--endpoint"],
    };
    let a = common::Args::parse(allowed, flags)?;
    let mut d = HubDescription::new();
    if let Some(n) = a.number("--partitions", 1)? {
        d = d.with_partition_count(u32::try_from(n).unwrap_or(u32::MAX));
    }
    if let Some(n) = a.number("--retention-days", 1)? {
        d = d.with_message_retention_in_days(u32::try_from(n).unwrap_or(u32::MAX));
    }
    if let Some(s) = a.parse_value::<EntityStatus>("--status")? {
        d = d.with_status(s);
    }
    if let Some(m) = a.get("--user-metadata") {
        d = d.with_user_metadata(m);
    }
    let endpoint = a.get("--endpoint").map(str::to_owned);
    let name = name.unwrap_or_default();
    let command = match verb.as_str() {
        "create" => Command::Create(name, d),
        "update" => Command::Update(name, d),
        "get" => Command::Get(name),
        "delete" => Command::Delete(name),
        _ => Command::List,
    };
    Ok((command, endpoint))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (command, endpoint) =
        match common::check_args(USAGE, parse(std::env::args().skip(1).collect())) {
            Ok(c) => c,
            Err(code) => return code,
        };
    common::init_tracing();
    match run(command, endpoint).await {
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
        Command::Create(name, d) => {
            let hub = m.put(&name, &d).await?;
            println!("created");
            print_hub(&hub);
        }
        Command::Update(name, d) => {
            let hub = m.update(&name, &d).await?;
            println!("updated");
            print_hub(&hub);
        }
        Command::Get(name) => match m.get(&name).await? {
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
        Command::Delete(name) => {
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

    fn args(a: &[&str]) -> Result<(Command, Option<String>), common::ArgError> {
        parse(a.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn commands() {
        assert_eq!(
            args(&["create", "t", "--partitions", "5", "--retention-days=3"]).unwrap(),
            (
                Command::Create(
                    "t".into(),
                    HubDescription::new()
                        .with_partition_count(5)
                        .with_message_retention_in_days(3)
                ),
                None
            )
        );
        assert_eq!(
            args(&[
                "update",
                "t",
                "--status",
                "Disabled",
                "--endpoint",
                "http://x"
            ])
            .unwrap(),
            (
                Command::Update(
                    "t".into(),
                    HubDescription::new().with_status(EntityStatus::Disabled)
                ),
                Some("http://x".into())
            )
        );
        assert_eq!(args(&["list"]).unwrap().0, Command::List);
        assert_eq!(args(&["get", "t"]).unwrap().0, Command::Get("t".into()));
        assert!(args(&[]).is_err());
        assert!(args(&["get"]).is_err());
        assert!(args(&["get", "--endpoint", "x"]).is_err());
        assert!(args(&["frob"]).is_err());
        assert!(args(&["get", "t", "--partitions", "2"]).is_err());
        assert!(args(&["create", "t", "--partitions", "0"]).is_err());
        assert!(args(&["update", "t", "--status", "Sleeping"]).is_err());
        assert_eq!(args(&["--help"]).unwrap_err(), common::ArgError::Help);
    }
}
