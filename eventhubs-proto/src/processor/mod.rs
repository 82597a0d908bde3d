//! The event processor, sans-IO: load-balanced, checkpointed consumption
//! of a hub by a fleet of processors sharing a checkpoint store.
//!
//! - [`plan`] (`balance.rs`): the load balancer, a pure function from the
//!   partitions and the ownership records to what one cycle claims and
//!   renews; [`cycle_delay`] draws the jittered wait between cycles.
//! - [`Processor`] (`state.rs`, with `state/cycle.rs`, `session.rs`,
//!   `checkpoints.rs`, `stop.rs`): every decision of one processor as a
//!   state machine: cycles (list, plan, claim, read checkpoints), one
//!   receiver per owned partition started after its checkpoint, batches
//!   for the application, checkpoints, ownership lost, a graceful stop
//!   that drains, checkpoints and relinquishes. Its inputs and outputs
//!   are in `io.rs`, its settings in `config.rs`.
//!
//! An async driver (`eventhubs-async`'s processor) runs the store
//! requests, receivers and handlers it asks for; simulations drive it
//! against the emulator's broker model and [`MemoryStore`](crate::checkpoint::MemoryStore)
//! under a virtual clock.

mod balance;
mod config;
mod io;
mod state;

pub use balance::{
    cycle_delay, max_cycle_delay, owned_by, plan, Claim, LoadBalancingConfig, LoadBalancingError,
    LoadBalancingStrategy, OwnershipView, Plan,
};
pub use config::{CheckpointPolicy, ConfigError, ProcessorConfig, StartPositions, StopOptions};
pub use io::{
    Action, BatchId, BatchOutcome, CheckpointRefused, CheckpointRequestId, CloseReason, ErrorKind,
    OpenReceiver, PartitionBatch, ProcessorError, ProcessorEvent, ProcessorStats, ReceiverFailure,
    ReceiverKey, StoreFailure, StoreOpId, StoreReply,
};
pub use state::Processor;
