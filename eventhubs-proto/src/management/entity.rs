//! What the management API describes: event hubs and consumer groups, the
//! fields a caller may write and those the service returns, and the
//! service's naming rules.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use crate::codec::Timestamp;

/// Partition counts a Standard namespace accepts when a hub is created.
pub const PARTITION_COUNT_RANGE: RangeInclusive<u32> = 1..=32;

/// Retention, in days, the service accepts (Premium and Dedicated allow up
/// to 90; Standard up to 7).
pub const RETENTION_DAYS_RANGE: RangeInclusive<u32> = 1..=90;

/// Longest event hub name (Azure's naming rules for
/// `Microsoft.EventHub/namespaces/eventhubs`).
pub const MAX_HUB_NAME_LEN: usize = 256;

/// Longest consumer group name (`namespaces/eventhubs/consumergroups`).
pub const MAX_CONSUMER_GROUP_NAME_LEN: usize = 50;

/// The consumer group every hub has, which cannot be created or deleted.
pub const DEFAULT_CONSUMER_GROUP: &str = "$Default";

/// An entity's status (the `EntityStatus` enumeration of the REST docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum EntityStatus {
    /// Sends and receives are allowed.
    #[default]
    Active,
    /// Being created.
    Creating,
    /// Being deleted.
    Deleting,
    /// Neither sends nor receives are allowed.
    Disabled,
    /// Receives are refused.
    ReceiveDisabled,
    /// Being renamed.
    Renaming,
    /// Being restored.
    Restoring,
    /// Sends are refused.
    SendDisabled,
    /// Not known to the service, or a value this client does not know.
    Unknown,
}

impl EntityStatus {
    /// Every status.
    pub const ALL: [EntityStatus; 9] = [
        EntityStatus::Active,
        EntityStatus::Creating,
        EntityStatus::Deleting,
        EntityStatus::Disabled,
        EntityStatus::ReceiveDisabled,
        EntityStatus::Renaming,
        EntityStatus::Restoring,
        EntityStatus::SendDisabled,
        EntityStatus::Unknown,
    ];

    /// The status as the service spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityStatus::Active => "Active",
            EntityStatus::Creating => "Creating",
            EntityStatus::Deleting => "Deleting",
            EntityStatus::Disabled => "Disabled",
            EntityStatus::ReceiveDisabled => "ReceiveDisabled",
            EntityStatus::Renaming => "Renaming",
            EntityStatus::Restoring => "Restoring",
            EntityStatus::SendDisabled => "SendDisabled",
            EntityStatus::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for EntityStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is none of [`EntityStatus::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown entity status {0:?}; expected one of Active, Creating, Deleting, Disabled, ReceiveDisabled, Renaming, Restoring, SendDisabled, Unknown")]
pub struct UnknownStatus(pub String);

impl FromStr for EntityStatus {
    type Err = UnknownStatus;
    /// Matches the service's spelling, ignoring ASCII case and surrounding
    /// whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        EntityStatus::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// The writable properties of an event hub (the `EventHubDescription` of
/// a create or update request). Unset properties are not sent: on create
/// the service uses its defaults, on update it resets them to those
/// defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct HubDescription {
    /// `MessageRetentionInDays`: how long events are kept.
    pub message_retention_in_days: Option<u32>,
    /// `Status`.
    pub status: Option<EntityStatus>,
    /// `UserMetadata`: free text, up to 1,024 characters.
    pub user_metadata: Option<String>,
    /// `PartitionCount`: fixed once the hub exists.
    pub partition_count: Option<u32>,
}

impl HubDescription {
    /// No property set: the service's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// With `count` partitions.
    pub fn with_partition_count(mut self, count: u32) -> Self {
        self.partition_count = Some(count);
        self
    }

    /// Retaining events `days` days.
    pub fn with_message_retention_in_days(mut self, days: u32) -> Self {
        self.message_retention_in_days = Some(days);
        self
    }

    /// With status `status`.
    pub fn with_status(mut self, status: EntityStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// With user metadata `text`.
    pub fn with_user_metadata(mut self, text: impl Into<String>) -> Self {
        self.user_metadata = Some(text.into());
        self
    }
}

/// An event hub as the service describes it: an Atom entry's `title`,
/// `published` and `updated`, and every field of its
/// `EventHubDescription`. A field the reply does not carry is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct HubEntity {
    /// The hub's name (the entry's `title`).
    pub name: String,
    /// The entry's `id` (the hub's URL).
    pub id: Option<String>,
    /// The entry's `published` time.
    pub published: Option<Timestamp>,
    /// The entry's `updated` time.
    pub updated: Option<Timestamp>,
    /// `MessageRetentionInDays`.
    pub message_retention_in_days: Option<u32>,
    /// `SizeInBytes`: the size of the retained events.
    pub size_in_bytes: Option<u64>,
    /// `Status`; a value this client does not know reads as
    /// [`EntityStatus::Unknown`].
    pub status: Option<EntityStatus>,
    /// `CreatedAt`.
    pub created_at: Option<Timestamp>,
    /// `UpdatedAt`.
    pub updated_at: Option<Timestamp>,
    /// `UserMetadata`.
    pub user_metadata: Option<String>,
    /// `PartitionCount`.
    pub partition_count: Option<u32>,
    /// `PartitionIds`, in the service's order (`0`, `1`, ...).
    pub partition_ids: Vec<String>,
    /// `EntityAvailabilityStatus` (`Available`, ...), as sent.
    pub entity_availability_status: Option<String>,
}

impl HubEntity {
    /// An entity named `name` with no field set (for servers that write
    /// replies, and tests).
    pub fn new(name: impl Into<String>) -> Self {
        HubEntity {
            name: name.into(),
            ..Self::default()
        }
    }

    /// The writable part, to change and send back in an update.
    pub fn description(&self) -> HubDescription {
        HubDescription {
            message_retention_in_days: self.message_retention_in_days,
            status: self.status,
            user_metadata: self.user_metadata.clone(),
            partition_count: self.partition_count,
        }
    }
}

/// The writable properties of a consumer group
/// (`ConsumerGroupDescription`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ConsumerGroupDescription {
    /// `UserMetadata`: free text, up to 1,024 characters.
    pub user_metadata: Option<String>,
}

impl ConsumerGroupDescription {
    /// No property set.
    pub fn new() -> Self {
        Self::default()
    }

    /// With user metadata `text`.
    pub fn with_user_metadata(mut self, text: impl Into<String>) -> Self {
        self.user_metadata = Some(text.into());
        self
    }
}

/// A consumer group as the service describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ConsumerGroupEntity {
    /// The group's name (the entry's `title`).
    pub name: String,
    /// The entry's `id` (the group's URL).
    pub id: Option<String>,
    /// `CreatedAt`.
    pub created_at: Option<Timestamp>,
    /// `UpdatedAt`.
    pub updated_at: Option<Timestamp>,
    /// `UserMetadata`.
    pub user_metadata: Option<String>,
}

impl ConsumerGroupEntity {
    /// An entity named `name` with no field set.
    pub fn new(name: impl Into<String>) -> Self {
        ConsumerGroupEntity {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// A name the service refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {entity} name {name:?}: {reason}")]
pub struct NameError {
    /// `event hub` or `consumer group`.
    pub entity: &'static str,
    /// The name given.
    pub name: String,
    /// What is wrong.
    pub reason: &'static str,
}

fn check_name(entity: &'static str, name: &str, max: usize) -> Result<(), NameError> {
    let fail = |reason| {
        Err(NameError {
            entity,
            name: name.to_owned(),
            reason,
        })
    };
    let bytes = name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (None, _) | (_, None) => return fail("it is empty"),
        (Some(first), Some(last)) => {
            if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
                return fail("it must start and end with a letter or a digit");
            }
        }
    }
    if bytes.len() > max {
        return fail(if max == MAX_HUB_NAME_LEN {
            "it is longer than 256 characters"
        } else {
            "it is longer than 50 characters"
        });
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return fail("only letters, digits, periods, hyphens and underscores are allowed");
    }
    Ok(())
}

/// Checks an event hub name against Azure's rules: 1 to 256 letters,
/// digits, periods, hyphens and underscores, starting and ending with a
/// letter or digit.
pub fn check_hub_name(name: &str) -> Result<(), NameError> {
    check_name("event hub", name, MAX_HUB_NAME_LEN)
}

/// Checks a consumer group name against Azure's rules: 1 to 50 letters,
/// digits, periods, hyphens and underscores, starting and ending with a
/// letter or digit. ([`DEFAULT_CONSUMER_GROUP`] exists already and is not
/// a name one can create.)
pub fn check_consumer_group_name(name: &str) -> Result<(), NameError> {
    check_name("consumer group", name, MAX_CONSUMER_GROUP_NAME_LEN)
}
