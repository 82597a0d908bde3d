//! The broker model as the service of `eventhubs_testkit::sim` worlds,
//! shared by the simulations of this crate's tests.

#![allow(dead_code)]

use eventhubs_emulator::EmulatorConfig;
use eventhubs_testkit::sim::{self, Network, Service};

/// The broker model as the simulations' service.
pub struct Model(pub eventhubs_emulator::Broker);

impl std::ops::Deref for Model {
    type Target = eventhubs_emulator::Broker;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Model {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

fn model_now(now: eventhubs_proto::client::Now) -> eventhubs_emulator::Now {
    eventhubs_emulator::Now {
        instant: now.instant,
        unix_ms: now.unix_ms,
    }
}

impl Service for Model {
    type Conn = eventhubs_emulator::ConnId;
    fn connect(&mut self, now: eventhubs_proto::client::Now) -> Self::Conn {
        self.0.connect(model_now(now))
    }
    fn handle_input(&mut self, conn: Self::Conn, now: eventhubs_proto::client::Now, data: &[u8]) {
        self.0.handle_input(conn, model_now(now), data)
    }
    fn poll_transmit(
        &mut self,
        conn: Self::Conn,
        now: eventhubs_proto::client::Now,
        buf: &mut Vec<u8>,
    ) -> usize {
        self.0.poll_transmit(conn, model_now(now), buf)
    }
    fn disconnect(&mut self, conn: Self::Conn) {
        self.0.disconnect(conn)
    }
    fn is_closed(&self, conn: Self::Conn) -> bool {
        self.0.is_closed(conn)
    }
    fn poll_timeout(&self) -> Option<std::time::Instant> {
        self.0.poll_timeout()
    }
    fn handle_timeout(&mut self, now: eventhubs_proto::client::Now) {
        self.0.handle_timeout(model_now(now))
    }
}

pub type World = sim::World<Model>;

/// A world around a fresh broker model with `config`.
pub fn world(seed: u64, config: EmulatorConfig, net: Network) -> World {
    let start = std::time::Instant::now();
    let now = eventhubs_emulator::Now {
        instant: start,
        unix_ms: sim::T0_MS,
    };
    let broker = eventhubs_emulator::Broker::new(config, now);
    sim::World::new(seed, start, Model(broker), net)
}
