//! The processor's settings: who it is, what it consumes, how it balances,
//! where partitions start, how events are batched and checkpointed.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::balance::{LoadBalancingConfig, LoadBalancingError};
use crate::eventhubs::EventPosition;

/// Where a partition's receiver starts when the store holds no checkpoint
/// for it: one position for every partition, or one per partition.
#[derive(Clone, Debug, PartialEq)]
pub struct StartPositions {
    /// For partitions not listed in `per_partition`. [`EventPosition::Earliest`]
    /// by default (as the .NET processor), so that events sent before the
    /// first processor started are not skipped.
    pub default: EventPosition,
    /// Overrides by partition id.
    pub per_partition: BTreeMap<String, EventPosition>,
}

impl Default for StartPositions {
    fn default() -> Self {
        StartPositions {
            default: EventPosition::Earliest,
            per_partition: BTreeMap::new(),
        }
    }
}

impl StartPositions {
    /// Every partition without a checkpoint starts at `position`.
    pub fn all(position: EventPosition) -> Self {
        StartPositions {
            default: position,
            per_partition: BTreeMap::new(),
        }
    }

    /// With `partition_id` starting at `position` when it has no
    /// checkpoint.
    pub fn with(mut self, partition_id: impl Into<String>, position: EventPosition) -> Self {
        self.per_partition.insert(partition_id.into(), position);
        self
    }

    /// The position for `partition_id`.
    pub fn for_partition(&self, partition_id: &str) -> &EventPosition {
        self.per_partition
            .get(partition_id)
            .unwrap_or(&self.default)
    }
}

/// When the processor writes checkpoints by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CheckpointPolicy {
    /// After every batch the handlers processed without error, at its
    /// last event (as azure-event-hubs-go checkpoints after every event
    /// its handlers accept). One store write per batch.
    #[default]
    AfterBatch,
    /// At the last processed event of each partition at most once per
    /// interval, and when the processor stops: fewer store writes (cost),
    /// more events processed again after a crash.
    Interval(Duration),
    /// Only when the application asks, by partition context; and on stop
    /// if [`StopOptions::checkpoint`] says so.
    Manual,
}

/// How a graceful stop proceeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopOptions {
    /// Write a checkpoint at the last processed event of every owned
    /// partition before relinquishing (always done under
    /// [`CheckpointPolicy::Interval`]).
    pub checkpoint: bool,
    /// How long batches already handed to the application may take to be
    /// processed before the processor relinquishes its partitions anyway.
    pub drain_timeout: Duration,
}

impl Default for StopOptions {
    fn default() -> Self {
        StopOptions {
            checkpoint: false,
            drain_timeout: Duration::from_secs(60),
        }
    }
}

/// Settings of a [`Processor`](super::Processor).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ProcessorConfig {
    /// The namespace as blob names spell it: the authority of the
    /// connection string's `Endpoint`, port included
    /// ([`namespace_of_endpoint`](crate::checkpoint::namespace_of_endpoint)).
    pub fully_qualified_namespace: String,
    /// The event hub.
    pub event_hub: String,
    /// The consumer group (`$Default` by default).
    pub consumer_group: String,
    /// This processor's id in ownership records; unique in the fleet.
    pub owner_id: String,
    /// Strategy, update interval, ownership expiry.
    pub load_balancing: LoadBalancingConfig,
    /// Owner level (epoch) of the receivers: `Some(0)`, as every official
    /// processor, so that a new owner's receiver takes the partition from
    /// the old one (`amqp:link:stolen`). `None` opens non-exclusive
    /// receivers and relies on the store alone.
    pub owner_level: Option<i64>,
    /// Credit of each receiver.
    pub prefetch: u32,
    /// Where partitions without a checkpoint start.
    pub start_positions: StartPositions,
    /// Most events in one batch handed to the application.
    pub max_batch_size: usize,
    /// Longest time an event waits for its batch to fill: a batch is
    /// handed over when it holds `max_batch_size` events, or this long
    /// after its first event arrived. Zero hands over what has arrived at
    /// once.
    pub max_wait: Duration,
    /// When the processor checkpoints by itself.
    pub checkpoint_policy: CheckpointPolicy,
    /// Time allowed to each store request (a listing, a round of claims, a
    /// checkpoint write); a slower one counts as failed and its late
    /// answer is ignored. By default the update interval, so a slow store
    /// can delay a cycle but never make it act on a stale listing.
    pub store_timeout: Option<Duration>,
    /// Seed of the cycle jitter and of the balancer's random choices.
    pub seed: u64,
}

impl ProcessorConfig {
    /// Defaults for consumer group `$Default` of `event_hub` in
    /// `fully_qualified_namespace`, as `owner_id`: the load-balancing
    /// defaults (balanced, 10 s, 60 s), owner level 0, prefetch 300,
    /// batches of up to 100 events waiting at most 1 s, a checkpoint
    /// after every batch, earliest position without a checkpoint.
    pub fn new(
        fully_qualified_namespace: impl Into<String>,
        event_hub: impl Into<String>,
        owner_id: impl Into<String>,
    ) -> Self {
        ProcessorConfig {
            fully_qualified_namespace: fully_qualified_namespace.into(),
            event_hub: event_hub.into(),
            consumer_group: "$Default".into(),
            owner_id: owner_id.into(),
            load_balancing: LoadBalancingConfig::default(),
            owner_level: Some(0),
            prefetch: 300,
            start_positions: StartPositions::default(),
            max_batch_size: 100,
            max_wait: Duration::from_secs(1),
            checkpoint_policy: CheckpointPolicy::default(),
            store_timeout: None,
            seed: 0,
        }
    }

    /// The time allowed to one store request.
    pub fn store_timeout(&self) -> Duration {
        self.store_timeout
            .unwrap_or(self.load_balancing.update_interval)
    }

    /// Refuses settings that cannot work, saying which.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.load_balancing
            .validate()
            .map_err(ConfigError::LoadBalancing)?;
        let empty = |what: &'static str, v: &str| {
            if v.trim().is_empty() {
                Err(ConfigError::Empty(what))
            } else {
                Ok(())
            }
        };
        empty("fully qualified namespace", &self.fully_qualified_namespace)?;
        empty("event hub", &self.event_hub)?;
        empty("consumer group", &self.consumer_group)?;
        empty("owner id", &self.owner_id)?;
        if self.max_batch_size == 0 {
            return Err(ConfigError::Invalid(
                "the maximum batch size must be at least 1".into(),
            ));
        }
        if self.prefetch == 0 {
            return Err(ConfigError::Invalid(
                "the receivers' prefetch must be at least 1".into(),
            ));
        }
        if let CheckpointPolicy::Interval(d) = self.checkpoint_policy {
            if d.is_zero() {
                return Err(ConfigError::Invalid(
                    "the checkpoint interval must be greater than zero".into(),
                ));
            }
        }
        if self.store_timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::Invalid(
                "the store time-out must be greater than zero".into(),
            ));
        }
        if self.store_timeout() >= self.load_balancing.ownership_expiry {
            return Err(ConfigError::Invalid(format!(
                "the store time-out ({:?}) must be shorter than the ownership expiry ({:?}): \
                 a claim answered after the expiry may already be someone else's",
                self.store_timeout(),
                self.load_balancing.ownership_expiry
            )));
        }
        Ok(())
    }
}

/// A processor setting that cannot work.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The load-balancing settings.
    LoadBalancing(LoadBalancingError),
    /// A name that must not be empty.
    Empty(&'static str),
    /// Another setting, with what is wrong.
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::LoadBalancing(e) => e.fmt(f),
            ConfigError::Empty(what) => write!(f, "the processor's {what} is empty"),
            ConfigError::Invalid(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ConfigError {}
