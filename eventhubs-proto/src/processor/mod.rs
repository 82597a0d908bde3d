//! Sans-IO pieces of the event processor: the load balancer that decides,
//! from a checkpoint store's ownership records, which partitions a
//! processor claims, renews and relinquishes.

mod balance;

pub use balance::{
    owned_by, plan, Claim, LoadBalancingConfig, LoadBalancingError, LoadBalancingStrategy,
    OwnershipView, Plan,
};
