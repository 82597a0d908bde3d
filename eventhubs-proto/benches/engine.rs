//! Transfers per second through a client and a server engine wired
//! together in memory (no sockets): 1 KiB messages, unsettled, each accepted
//! with a disposition. Also prints the heap allocations and bytes allocated
//! per transfer, counted by a wrapping global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use eventhubs_proto::codec::messaging::{Source, Target};
use eventhubs_proto::codec::performatives::Role;
use eventhubs_proto::engine::Settlement;
use eventhubs_proto::engine::{
    Connection, ConnectionConfig, Event, LinkConfig, LinkId, SaslConfig, SessionConfig, Side,
};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A connected pair with one sender (client) and its receiver (server).
struct Bench {
    now: Instant,
    client: Connection,
    server: Connection,
    tx: LinkId,
    rx: Option<LinkId>,
    wire: Vec<u8>,
    payload: Bytes,
    accepted: u64,
}

impl Bench {
    fn new() -> Bench {
        let now = Instant::now();
        let mut cc = ConnectionConfig::new(Side::Client, "bench-client");
        cc.sasl = SaslConfig::None;
        let mut client = Connection::new(cc, now);
        let server = Connection::new(ConnectionConfig::new(Side::Server, "bench-server"), now);
        client.open().unwrap();
        let ch = client.begin_session(SessionConfig::default()).unwrap();
        let tx = client
            .session(ch)
            .attach(LinkConfig {
                name: "tx".into(),
                role: Role::Sender,
                source: Some(Source::with_address("bench")),
                target: Some(Target::with_address("q")),
                ..Default::default()
            })
            .unwrap();
        let mut b = Bench {
            now,
            client,
            server,
            tx,
            rx: None,
            wire: Vec::with_capacity(1 << 20),
            payload: Bytes::from(vec![0x5a; 1024]),
            accepted: 0,
        };
        b.pump();
        assert!(b.rx.is_some() && b.client.credit(tx) > 0);
        b
    }

    fn pump(&mut self) {
        loop {
            self.wire.clear();
            let _ = self.client.poll_transmit(self.now, &mut self.wire);
            let c2s = !self.wire.is_empty();
            self.server.handle_input(self.now, &self.wire);
            while let Some(e) = self.server.poll_event() {
                match e {
                    Event::Opened(_) => self.server.open().unwrap(),
                    Event::LinkAttached {
                        link,
                        attach,
                        peer_initiated: true,
                    } => {
                        self.server
                            .link(link)
                            .answer(LinkConfig::answering(&attach))
                            .unwrap();
                        self.server.link(link).flow(10_000).unwrap();
                        self.rx = Some(link);
                    }
                    Event::Delivery {
                        link, delivery_id, ..
                    } => {
                        self.server.link(link).accept(delivery_id).unwrap();
                    }
                    _ => {}
                }
            }
            self.wire.clear();
            let _ = self.server.poll_transmit(self.now, &mut self.wire);
            let s2c = !self.wire.is_empty();
            self.client.handle_input(self.now, &self.wire);
            while let Some(e) = self.client.poll_event() {
                if let Event::Disposition { .. } = e {
                    self.accepted += 1;
                }
            }
            if !c2s && !s2c {
                return;
            }
        }
    }

    /// Sends `n` messages and waits until all are accepted.
    fn round(&mut self, n: u64) {
        let target = self.accepted + n;
        let mut sent = 0;
        while self.accepted < target {
            while sent < n && self.client.credit(self.tx) > 0 {
                self.client
                    .link(self.tx)
                    .send(
                        Bytes::from_static(b"tag"),
                        0,
                        Settlement::Unsettled,
                        self.payload.clone(),
                    )
                    .unwrap();
                sent += 1;
            }
            self.pump();
            if let Some(rx) = self.rx {
                if self.client.credit(self.tx) == 0 {
                    self.server.link(rx).flow(10_000).unwrap();
                }
            }
        }
    }
}

fn transfers(c: &mut Criterion) {
    const N: u64 = 1000;
    let mut b = Bench::new();
    b.round(N); // warm the buffers
    let (a0, b0) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    b.round(N);
    let (a1, b1) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    println!(
        "engine pair, 1 KiB unsettled transfers: {:.2} allocations and {:.0} bytes allocated per transfer (both engines, dispositions included)",
        (a1 - a0) as f64 / N as f64,
        (b1 - b0) as f64 / N as f64
    );
    let mut g = c.benchmark_group("engine_pair");
    g.throughput(Throughput::Elements(N));
    g.bench_function("transfer_1k_unsettled", |bench| bench.iter(|| b.round(N)));
    g.finish();
}

criterion_group!(benches, transfers);
criterion_main!(benches);
