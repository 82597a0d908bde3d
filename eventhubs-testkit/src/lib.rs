//! Test support for the workspace, written once: the loops that drive a
//! client core or an AMQP engine, which the tests, simulations, fuzz
//! targets and benches share instead of each writing their own.
//!
//! - [`sim`]: client cores against a sans-IO service (the emulator's broker
//!   model) in memory, under a virtual clock and a seeded network that
//!   splits, delays and cuts the byte streams and refuses connects; tokens
//!   come through `TokenRequired`, as production fetches them.
//! - [`client_input`]: the `client_input` fuzz harness, a client core fed
//!   hostile service bytes with clock steps and caller commands, with the
//!   invariants it must keep; the seed generator drives the same harness.
//! - [`pair`]: two engines, a client and a server, wired together in
//!   memory under a virtual clock, with knobs for chunking, latency and
//!   drops; the server can play a small broker.
//! - [`tcp`]: an engine over one blocking TCP socket, for tests and benches
//!   against real listeners (the emulator, Qpid Proton, RabbitMQ).
//!
//! It depends on `eventhubs-proto` and `std` only, so the fuzz crate (its
//! own workspace) can use it too. Not published.

#![forbid(unsafe_code)]

pub mod client_input;
pub mod pair;
pub mod sim;
pub mod tcp;
