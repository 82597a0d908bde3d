//! A fault proxy on loopback: clients connect to it, it connects each to
//! the upstream (an emulator) and relays the bytes both ways, hurting them
//! on the way as a bad network does: delays, writes split into pieces,
//! stalls, a connection truncated (closed after part of a chunk, so a
//! frame ends in the middle), reset in the middle of a frame (RST, linger
//! zero), and half-closed (one direction shut, the other left open). Which
//! chunk is hurt is drawn from a seeded generator per connection; whole
//! connections are also cut on demand ([`FaultProxy::cut_all`]).
//!
//! Blocking sockets and two threads per connection: the proxy is for
//! tests, and threads keep it apart from whatever runtime the client under
//! test uses.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use eventhubs_proto::eventhubs::SplitMix64;

/// How often each fault hits, per chunk read from either side (in parts
/// per million), and how long delays and stalls last.
#[derive(Clone, Debug)]
pub struct Faults {
    /// A chunk held for 1 ms up to `max_delay` before it goes on.
    pub delay_ppm: u32,
    /// The longest delay.
    pub max_delay: Duration,
    /// A chunk written in 2 to 8 pieces, a moment apart.
    pub split_ppm: u32,
    /// The direction stops for `max_stall / 4` up to `max_stall`, then
    /// goes on.
    pub stall_ppm: u32,
    /// The longest stall.
    pub max_stall: Duration,
    /// Part of the chunk is written, then both sockets are closed.
    pub truncate_ppm: u32,
    /// Part of the chunk is written, then both sockets are reset.
    pub reset_ppm: u32,
    /// The chunk is written, then this direction is shut (the reader sees
    /// end of stream) while the other direction stays open.
    pub half_close_ppm: u32,
}

impl Faults {
    /// No faults: a plain relay.
    pub fn none() -> Faults {
        Faults {
            delay_ppm: 0,
            max_delay: Duration::ZERO,
            split_ppm: 0,
            stall_ppm: 0,
            max_stall: Duration::ZERO,
            truncate_ppm: 0,
            reset_ppm: 0,
            half_close_ppm: 0,
        }
    }

    /// A bad network: many small delays and splits, a stall, truncation,
    /// reset or half-close every few thousand chunks.
    pub fn hostile() -> Faults {
        Faults {
            delay_ppm: 20_000,
            max_delay: Duration::from_millis(50),
            split_ppm: 50_000,
            stall_ppm: 1_000,
            max_stall: Duration::from_secs(3),
            truncate_ppm: 300,
            reset_ppm: 300,
            half_close_ppm: 300,
        }
    }
}

/// What the proxy did, counted since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Client connections accepted.
    pub connections: u64,
    /// Client connections whose upstream connect failed (closed at once).
    pub upstream_refused: u64,
    /// Bytes relayed toward the upstream.
    pub bytes_up: u64,
    /// Bytes relayed toward the clients.
    pub bytes_down: u64,
    /// Chunks delayed.
    pub delays: u64,
    /// Chunks split.
    pub splits: u64,
    /// Stalls.
    pub stalls: u64,
    /// Connections closed after part of a chunk.
    pub truncations: u64,
    /// Connections reset after part of a chunk.
    pub resets: u64,
    /// Directions shut while the other stayed open.
    pub half_closes: u64,
    /// Connections reset by [`FaultProxy::cut_all`].
    pub cuts: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    upstream_refused: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    delays: AtomicU64,
    splits: AtomicU64,
    stalls: AtomicU64,
    truncations: AtomicU64,
    resets: AtomicU64,
    half_closes: AtomicU64,
    cuts: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One relayed connection: both sockets, for cutting it from outside.
struct Pair {
    client: TcpStream,
    upstream: TcpStream,
    dead: AtomicBool,
}

impl Pair {
    /// Closes both sockets, with an RST when `reset`; the relay threads
    /// see their reads fail and end.
    fn kill(&self, reset: bool) {
        if self.dead.swap(true, Ordering::AcqRel) {
            return;
        }
        for s in [&self.client, &self.upstream] {
            if reset {
                let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
            }
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

struct Shared {
    upstream: SocketAddr,
    faults: Mutex<Faults>,
    /// Faults are drawn only while on.
    on: AtomicBool,
    stop: AtomicBool,
    pairs: Mutex<Vec<Arc<Pair>>>,
    counters: Counters,
}

/// The proxy; dropping it stops accepting and resets every connection.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on an ephemeral loopback port and relays every connection
    /// to `upstream`, with `faults` drawn from `seed`.
    pub fn start(upstream: SocketAddr, faults: Faults, seed: u64) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            faults: Mutex::new(faults),
            on: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            pairs: Mutex::new(Vec::new()),
            counters: Counters::default(),
        });
        let s = shared.clone();
        let accept = thread::Builder::new()
            .name("fault-proxy-accept".into())
            .spawn(move || accept_loop(listener, s, seed))?;
        Ok(FaultProxy {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Turns fault drawing on or off (connections stay; off, the proxy is
    /// a plain relay).
    pub fn set_faults_on(&self, on: bool) {
        self.shared.on.store(on, Ordering::Release);
    }

    /// Resets every connection relayed now; returns how many.
    pub fn cut_all(&self) -> usize {
        let pairs: Vec<Arc<Pair>> = std::mem::take(&mut *self.shared.pairs.lock().unwrap());
        let mut n = 0;
        for p in pairs {
            if !p.dead.load(Ordering::Acquire) {
                p.kill(true);
                n += 1;
            }
        }
        self.shared.counters.cuts.fetch_add(n, Ordering::Relaxed);
        n as usize
    }

    /// Connections relayed now.
    pub fn open_connections(&self) -> usize {
        let mut pairs = self.shared.pairs.lock().unwrap();
        pairs.retain(|p| !p.dead.load(Ordering::Acquire));
        pairs.len()
    }

    /// What it did so far.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProxyStats {
            connections: l(&c.connections),
            upstream_refused: l(&c.upstream_refused),
            bytes_up: l(&c.bytes_up),
            bytes_down: l(&c.bytes_down),
            delays: l(&c.delays),
            splits: l(&c.splits),
            stalls: l(&c.stalls),
            truncations: l(&c.truncations),
            resets: l(&c.resets),
            half_closes: l(&c.half_closes),
            cuts: l(&c.cuts),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        self.cut_all();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, seed: u64) {
    let mut rng = SplitMix64::new(seed);
    for socket in listener.incoming() {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let Ok(client) = socket else { continue };
        bump(&shared.counters.connections);
        let upstream = match TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(5)) {
            Ok(u) => u,
            Err(_) => {
                bump(&shared.counters.upstream_refused);
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
            continue;
        };
        let pair = Arc::new(Pair {
            client,
            upstream,
            dead: AtomicBool::new(false),
        });
        {
            let mut pairs = shared.pairs.lock().unwrap();
            pairs.retain(|p| !p.dead.load(Ordering::Acquire));
            pairs.push(pair.clone());
        }
        let (Ok(c3), Ok(u3)) = (c2.try_clone(), u2.try_clone()) else {
            pair.kill(false);
            continue;
        };
        let up_seed = rng.next_u64();
        let down_seed = rng.next_u64();
        let (s1, p1) = (shared.clone(), pair.clone());
        let _ = thread::Builder::new()
            .name("fault-proxy-up".into())
            .spawn(move || relay(c2, u2, s1, p1, true, up_seed));
        let (s2, p2) = (shared.clone(), pair);
        let _ = thread::Builder::new()
            .name("fault-proxy-down".into())
            .spawn(move || relay(u3, c3, s2, p2, false, down_seed));
    }
}

/// Sleeps for `d` in small steps, returning early (false) once the pair is
/// dead.
fn nap(d: Duration, pair: &Pair) -> bool {
    let step = Duration::from_millis(20);
    let mut left = d;
    while !left.is_zero() {
        if pair.dead.load(Ordering::Acquire) {
            return false;
        }
        let s = left.min(step);
        thread::sleep(s);
        left -= s;
    }
    !pair.dead.load(Ordering::Acquire)
}

/// A draw in `[0, n)`.
fn below(rng: &mut SplitMix64, n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        rng.next_u64() % n
    }
}

fn between(rng: &mut SplitMix64, lo: Duration, hi: Duration) -> Duration {
    let (lo, hi) = (lo.as_millis() as u64, hi.as_millis() as u64);
    Duration::from_millis(lo + below(rng, hi.saturating_sub(lo) + 1))
}

/// Copies `from` to `to` until either ends, hurting chunks as drawn.
fn relay(
    mut from: TcpStream,
    mut to: TcpStream,
    shared: Arc<Shared>,
    pair: Arc<Pair>,
    up: bool,
    seed: u64,
) {
    let mut rng = SplitMix64::new(seed);
    let mut buf = vec![0u8; 16 * 1024];
    let counters = &shared.counters;
    let bytes = if up {
        &counters.bytes_up
    } else {
        &counters.bytes_down
    };
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => {
                // End of stream: pass the half-close on.
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(_) => {
                pair.kill(true);
                return;
            }
        };
        if pair.dead.load(Ordering::Acquire) {
            return;
        }
        let chunk = &buf[..n];
        let f = shared.faults.lock().unwrap().clone();
        let on = shared.on.load(Ordering::Acquire);
        let draw = if on {
            below(&mut rng, 1_000_000) as u32
        } else {
            u32::MAX
        };
        let mut edge = 0u32;
        let mut hit = |ppm: u32| {
            edge = edge.saturating_add(ppm);
            draw < edge
        };
        let written = if hit(f.reset_ppm) || hit(f.truncate_ppm) {
            let reset = draw < f.reset_ppm;
            let cut = below(&mut rng, n as u64) as usize;
            let _ = to.write_all(&chunk[..cut]);
            bytes.fetch_add(cut as u64, Ordering::Relaxed);
            bump(if reset {
                &counters.resets
            } else {
                &counters.truncations
            });
            pair.kill(reset);
            return;
        } else if hit(f.half_close_ppm) {
            let r = to.write_all(chunk);
            bytes.fetch_add(n as u64, Ordering::Relaxed);
            bump(&counters.half_closes);
            let _ = to.shutdown(Shutdown::Write);
            let _ = from.shutdown(Shutdown::Read);
            // This direction is over; the other goes on until its peer
            // notices.
            let _ = r;
            return;
        } else if hit(f.stall_ppm) {
            bump(&counters.stalls);
            let d = between(&mut rng, f.max_stall / 4, f.max_stall);
            nap(d, &pair) && to.write_all(chunk).is_ok()
        } else if hit(f.delay_ppm) {
            bump(&counters.delays);
            let d = between(&mut rng, Duration::from_millis(1), f.max_delay);
            nap(d, &pair) && to.write_all(chunk).is_ok()
        } else if hit(f.split_ppm) && n > 1 {
            bump(&counters.splits);
            let pieces = 2 + below(&mut rng, 7) as usize;
            let mut ok = true;
            let mut at = 0;
            for i in 0..pieces {
                let end = if i + 1 == pieces {
                    n
                } else {
                    (at + 1 + below(&mut rng, (n - at) as u64) as usize).min(n)
                };
                if at < end {
                    ok = to.write_all(&chunk[at..end]).is_ok();
                    at = end;
                }
                if !ok || at == n {
                    break;
                }
                thread::sleep(Duration::from_micros(200 + below(&mut rng, 2000)));
            }
            ok
        } else {
            to.write_all(chunk).is_ok()
        };
        if !written {
            pair.kill(true);
            return;
        }
        bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on loopback; returns its address.
    fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                thread::spawn(move || {
                    let mut b = [0u8; 4096];
                    while let Ok(n) = s.read(&mut b) {
                        if n == 0 || s.write_all(&b[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn round_trip(s: &mut TcpStream, data: &[u8]) -> io::Result<Vec<u8>> {
        s.write_all(data)?;
        let mut got = vec![0u8; data.len()];
        s.read_exact(&mut got)?;
        Ok(got)
    }

    #[test]
    fn relays_bytes_whole_through_delays_and_splits() {
        let mut f = Faults::none();
        f.delay_ppm = 300_000;
        f.max_delay = Duration::from_millis(5);
        f.split_ppm = 600_000;
        let p = FaultProxy::start(echo(), f, 7).unwrap();
        let mut s = TcpStream::connect(p.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for i in 0..50u32 {
            let data: Vec<u8> = (0..1000u32).map(|j| (i * 31 + j) as u8).collect();
            assert_eq!(round_trip(&mut s, &data).unwrap(), data);
        }
        // The counters are bumped after each write: let the last land.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while p.stats().bytes_down < 50_000 && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        let st = p.stats();
        assert!(st.delays > 0 && st.splits > 0, "{st:?}");
        assert_eq!(st.bytes_up, 50_000);
        assert_eq!(st.bytes_down, 50_000);
    }

    #[test]
    fn resets_and_truncations_end_the_connection_mid_chunk() {
        let mut f = Faults::none();
        f.reset_ppm = 1_000_000;
        let p = FaultProxy::start(echo(), f, 1).unwrap();
        let mut s = TcpStream::connect(p.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert!(round_trip(&mut s, &[1u8; 1000]).is_err());
        assert!(p.stats().resets >= 1);

        let mut f = Faults::none();
        f.truncate_ppm = 1_000_000;
        let p = FaultProxy::start(echo(), f, 2).unwrap();
        let mut s = TcpStream::connect(p.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert!(round_trip(&mut s, &[1u8; 1000]).is_err());
        assert!(p.stats().truncations >= 1);
    }

    #[test]
    fn a_half_close_shuts_one_direction_and_cut_all_resets_the_rest() {
        let mut f = Faults::none();
        f.half_close_ppm = 1_000_000;
        let p = FaultProxy::start(echo(), f, 3).unwrap();
        let mut s = TcpStream::connect(p.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"ping").unwrap();
        // The upward direction was shut after "ping": the echo gives it
        // back and then sees the end; the reply comes whole, then the end.
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        assert_eq!(got, b"ping");
        assert!(p.stats().half_closes >= 1);

        let p = FaultProxy::start(echo(), Faults::none(), 4).unwrap();
        let mut a = TcpStream::connect(p.addr()).unwrap();
        let mut b = TcpStream::connect(p.addr()).unwrap();
        a.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        b.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(round_trip(&mut a, b"a").unwrap(), b"a");
        assert_eq!(round_trip(&mut b, b"b").unwrap(), b"b");
        assert_eq!(p.open_connections(), 2);
        assert_eq!(p.cut_all(), 2);
        let mut x = [0u8; 1];
        assert!(!matches!(a.read(&mut x), Ok(1)));
        assert!(!matches!(b.read(&mut x), Ok(1)));
        assert_eq!(p.stats().cuts, 2);
    }
}
