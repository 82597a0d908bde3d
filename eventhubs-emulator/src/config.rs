//! Entities from a Config.json in the shape of Microsoft's Event Hubs
//! emulator (`UserConfig.NamespaceConfig[].Entities[]`), with its defaults.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::entra::{EntraIdConfig, EntraIdJson};
use crate::limits::Limits;

/// A shared access policy: name, key and rights.
#[derive(Clone, PartialEq, Eq)]
pub struct Policy {
    /// Key name (SharedAccessKeyName).
    pub name: String,
    /// Key (SharedAccessKey); never printed.
    pub key: String,
    /// May send.
    pub send: bool,
    /// May receive.
    pub listen: bool,
    /// May manage (implies send and listen).
    pub manage: bool,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .field("send", &self.send)
            .field("listen", &self.listen)
            .field("manage", &self.manage)
            .finish()
    }
}

/// One event hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubConfig {
    /// The hub name (entity path).
    pub name: String,
    /// Number of partitions, 1 to 32.
    pub partition_count: u32,
    /// Consumer groups; `$Default` is always present.
    pub consumer_groups: Vec<String>,
}

/// The emulator's entities and policies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmulatorConfig {
    /// Namespace name (`emulatorNs1`).
    pub namespace: String,
    /// The event hubs.
    pub hubs: Vec<HubConfig>,
    /// Shared access policies.
    pub policies: Vec<Policy>,
    /// Largest event or batch accepted, in bytes (1 MiB, as the service).
    pub max_message_size: u64,
    /// Events older than this are dropped, in milliseconds (1 h, as
    /// Microsoft's emulator).
    pub retention_ms: i64,
    /// The most encoded event bytes a partition keeps (1 GiB by default):
    /// past it the oldest events are dropped, as past the retention time,
    /// so a partition's memory is bounded however fast it is sent to.
    pub max_partition_bytes: u64,
    /// Time a connection authenticated anonymously has to put a CBS token.
    pub cbs_deadline_ms: i64,
    /// Where the server persists the partitions ([`crate::store`]); `None`
    /// (the default) keeps them in memory only. The broker model itself
    /// never reads it.
    pub data_dir: Option<PathBuf>,
    /// Which Entra ID (JWT) tokens are accepted ([`crate::entra`]); `None`
    /// refuses them all.
    pub entra_id: Option<EntraIdConfig>,
    /// Bounds on what clients may make the emulator hold
    /// ([`crate::limits`]).
    pub limits: Limits,
    /// How long outcomes sent to Microsoft's Rust SDK are held, which loses
    /// outcomes that arrive too early ([`crate::LATE_OUTCOME_DELAY`], the
    /// default, explains why); zero answers it at once, as other clients.
    pub ms_sdk_outcome_delay: std::time::Duration,
}

/// [`EmulatorConfig::max_partition_bytes`] by default: 1 GiB.
pub const DEFAULT_MAX_PARTITION_BYTES: u64 = 1 << 30;

/// The policy Microsoft's emulator ships with.
pub const DEFAULT_KEY_NAME: &str = "RootManageSharedAccessKey";
/// Its key.
pub const DEFAULT_KEY: &str = "SAS_KEY_VALUE";

impl Default for EmulatorConfig {
    /// Microsoft's defaults: namespace `emulatorNs1`, hub `eh1` with two
    /// partitions and consumer group `cg1` beside `$Default`, policy
    /// `RootManageSharedAccessKey` / `SAS_KEY_VALUE`.
    fn default() -> Self {
        EmulatorConfig {
            namespace: "emulatorNs1".into(),
            hubs: vec![HubConfig {
                name: "eh1".into(),
                partition_count: 2,
                consumer_groups: vec!["$Default".into(), "cg1".into()],
            }],
            policies: vec![Policy {
                name: DEFAULT_KEY_NAME.into(),
                key: DEFAULT_KEY.into(),
                send: true,
                listen: true,
                manage: true,
            }],
            max_message_size: 1024 * 1024,
            retention_ms: 60 * 60 * 1000,
            max_partition_bytes: DEFAULT_MAX_PARTITION_BYTES,
            cbs_deadline_ms: 60_000,
            data_dir: None,
            entra_id: None,
            limits: Limits::default(),
            ms_sdk_outcome_delay: crate::LATE_OUTCOME_DELAY,
        }
    }
}

impl EmulatorConfig {
    /// The same configuration, persisting the partitions in `dir` (created
    /// if needed; events found there are served again).
    pub fn with_data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// The same configuration, accepting the JWTs `entra_id` describes.
    pub fn with_entra_id(mut self, entra_id: EntraIdConfig) -> Self {
        self.entra_id = Some(entra_id);
        self
    }
}

/// A Config.json that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not JSON of the expected shape.
    #[error("Config.json is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// A rule of Microsoft's schema is broken.
    #[error("Config.json: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct File {
    user_config: UserConfig,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UserConfig {
    namespace_config: Vec<NamespaceConfig>,
    /// This emulator's extension: trusted JWT issuers and role assignments.
    #[serde(default)]
    entra_id: Option<EntraIdJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NamespaceConfig {
    #[serde(default)]
    r#type: Option<String>,
    name: String,
    #[serde(default)]
    entities: Vec<Entity>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entity {
    name: String,
    partition_count: serde_json::Value,
    #[serde(default)]
    consumer_groups: Vec<ConsumerGroup>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConsumerGroup {
    name: String,
}

impl EmulatorConfig {
    /// Reads a Config.json file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, path.parent())
    }

    /// Parses Config.json text, checking the rules of Microsoft's schema:
    /// one namespace of type EventHub, 1 to 10 hubs, 1 to 32 partitions, at
    /// most 20 consumer groups, `$Default` implicit.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        Self::parse(text, None)
    }

    /// As [`Self::from_json`]; relative paths in `EntraId` are resolved
    /// against `base`.
    fn parse(text: &str, base: Option<&Path>) -> Result<Self, ConfigError> {
        let file: File = serde_json::from_str(text)?;
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let [ns] = &file.user_config.namespace_config[..] else {
            return invalid(format!(
                "exactly one namespace is supported, found {}",
                file.user_config.namespace_config.len()
            ));
        };
        if let Some(t) = &ns.r#type {
            if !t.eq_ignore_ascii_case("EventHub") {
                return invalid(format!("namespace type {t:?} is not EventHub"));
            }
        }
        if ns.entities.is_empty() || ns.entities.len() > 10 {
            return invalid(format!(
                "1 to 10 event hubs are supported, found {}",
                ns.entities.len()
            ));
        }
        let mut hubs = Vec::new();
        for e in &ns.entities {
            let count = match &e.partition_count {
                serde_json::Value::Number(n) => n.as_u64(),
                serde_json::Value::String(s) => s.trim().parse().ok(),
                _ => None,
            };
            let Some(count @ 1..=32) = count else {
                return invalid(format!(
                    "hub {:?}: PartitionCount must be 1 to 32, found {}",
                    e.name, e.partition_count
                ));
            };
            if e.name.is_empty()
                || hubs
                    .iter()
                    .any(|h: &HubConfig| h.name.eq_ignore_ascii_case(&e.name))
            {
                return invalid(format!("hub name {:?} is empty or repeated", e.name));
            }
            let mut groups = vec!["$Default".to_string()];
            for g in &e.consumer_groups {
                if g.name.eq_ignore_ascii_case("$Default") {
                    return invalid(format!(
                        "hub {:?}: $Default exists already and cannot be declared",
                        e.name
                    ));
                }
                if groups.iter().any(|x| x.eq_ignore_ascii_case(&g.name)) {
                    return invalid(format!(
                        "hub {:?}: consumer group {:?} repeated",
                        e.name, g.name
                    ));
                }
                groups.push(g.name.clone());
            }
            if groups.len() > 21 {
                return invalid(format!("hub {:?}: at most 20 consumer groups", e.name));
            }
            hubs.push(HubConfig {
                name: e.name.clone(),
                partition_count: count as u32,
                consumer_groups: groups,
            });
        }
        let entra_id = match file.user_config.entra_id {
            Some(e) => Some(e.into_config(base).map_err(ConfigError::Invalid)?),
            None => None,
        };
        Ok(EmulatorConfig {
            namespace: ns.name.clone(),
            hubs,
            entra_id,
            ..EmulatorConfig::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microsoft_sample_config() {
        let c = EmulatorConfig::from_json(
            r#"{"UserConfig":{"NamespaceConfig":[{"Type":"EventHub","Name":"emulatorNs1","Entities":[
                {"Name":"eh1","PartitionCount":"2","ConsumerGroups":[{"Name":"cg1"}]},
                {"Name":"eh2","PartitionCount":4,"ConsumerGroups":[]}]}],
               "LoggingConfig":{"Type":"File"}}}"#,
        )
        .unwrap();
        assert_eq!(c.hubs.len(), 2);
        assert_eq!(c.hubs[0].consumer_groups, ["$Default", "cg1"]);
        assert_eq!(c.hubs[1].partition_count, 4);
        assert_eq!(c.policies[0].name, "RootManageSharedAccessKey");
    }

    #[test]
    fn schema_rules_are_enforced_with_reasons() {
        let bad = |json: &str, needle: &str| {
            let e = EmulatorConfig::from_json(json).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        };
        bad(
            r#"{"UserConfig":{"NamespaceConfig":[]}}"#,
            "exactly one namespace",
        );
        bad(
            r#"{"UserConfig":{"NamespaceConfig":[{"Name":"n","Entities":[{"Name":"h","PartitionCount":"33"}]}]}}"#,
            "PartitionCount must be 1 to 32",
        );
        bad(
            r#"{"UserConfig":{"NamespaceConfig":[{"Name":"n","Entities":[{"Name":"h","PartitionCount":1,"ConsumerGroups":[{"Name":"$default"}]}]}]}}"#,
            "$Default exists already",
        );
        bad(r#"{"UserConfig":{}}"#, "not valid");
        assert!(!format!("{:?}", EmulatorConfig::default()).contains("SAS_KEY_VALUE"));
    }
}
