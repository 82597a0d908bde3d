//! Seed inputs for the `client_input` fuzz target (fuzz/README.md): whole
//! sessions of the client core against the broker model, recorded as the
//! bytes the broker sent, together with the clock steps and caller
//! commands that the target replays around them.
//!
//! The target's harness (`eventhubs_testkit::client_input`) is the one
//! driven here, so a recording drives exactly the code the target runs: same
//! calls at the same virtual times, hence the same link names, message
//! ids and correlation ids, and the broker's bytes fit the replay. Each
//! test replays its recording on a fresh harness and checks that the
//! replay goes as deep as the session did (put-token and management
//! replies, sends accepted, events delivered).
//!
//! `FUZZ_SEEDS_DIR=<dir>` writes the recordings there (fuzz/seed.sh does,
//! into fuzz/corpus/client_input/).

use std::collections::HashMap;
use std::time::Duration;

use eventhubs_emulator::{Broker, ConnId, EmulatorConfig, LinkSelector};
use eventhubs_proto::codec::performatives::AmqpError;
use eventhubs_proto::codec::Symbol;
use eventhubs_testkit::client_input::{self, tag, Harness, Recorder, Report, Scenario};

/// How the broker's bytes are cut into feed records.
#[derive(Clone, Copy)]
enum Chunks {
    /// Everything the broker had at once.
    Whole,
    /// Pieces of 1 to `n` bytes, in turn.
    Small(usize),
}

struct Session {
    h: Harness,
    rec: Recorder,
    broker: Broker,
    conns: HashMap<u64, ConnId>,
    chunks: Chunks,
    turn: usize,
    /// Events reported consumed.
    consumed: u32,
}

impl Session {
    fn new(scenario: Scenario, chunks: Chunks) -> Session {
        let h = Harness::new(scenario, true);
        let n = h.now();
        let broker = Broker::new(
            EmulatorConfig::default(),
            eventhubs_emulator::Now {
                instant: n.instant,
                unix_ms: n.unix_ms,
            },
        );
        let mut s = Session {
            h,
            rec: Recorder::new(scenario),
            broker,
            conns: HashMap::new(),
            chunks,
            turn: 0,
            consumed: 0,
        };
        s.sync();
        s
    }

    fn bnow(&self) -> eventhubs_emulator::Now {
        let n = self.h.now();
        eventhubs_emulator::Now {
            instant: n.instant,
            unix_ms: n.unix_ms,
        }
    }

    fn conn(&self) -> Option<ConnId> {
        self.h
            .transport()
            .and_then(|t| self.conns.get(&t.0).copied())
    }

    /// Moves bytes both ways until neither side has anything to say.
    fn sync(&mut self) {
        loop {
            let bnow = self.bnow();
            let mut progressed = false;
            for t in std::mem::take(&mut self.h.connected) {
                let c = self.broker.connect(bnow);
                self.conns.insert(t.0, c);
            }
            for (t, bytes) in self.h.take_sent() {
                if let Some(&c) = self.conns.get(&t.0) {
                    self.broker.handle_input(c, bnow, &bytes);
                    progressed = true;
                }
            }
            for (t, last) in std::mem::take(&mut self.h.retired) {
                if let Some(c) = self.conns.remove(&t.0) {
                    self.broker.handle_input(c, bnow, &last);
                    self.broker.disconnect(c);
                    progressed = true;
                }
            }
            if let Some(c) = self.conn() {
                let mut buf = Vec::new();
                self.broker.poll_transmit(c, bnow, &mut buf);
                if !buf.is_empty() {
                    progressed = true;
                    self.deliver(&buf);
                } else if self.broker.is_closed(c) {
                    // The broker closed the connection and said all it
                    // had to: the socket closes.
                    progressed = true;
                    self.command(tag::DISCONNECT, 0);
                }
            }
            if !progressed {
                break;
            }
        }
    }

    fn deliver(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let n = match self.chunks {
                Chunks::Whole => bytes.len(),
                Chunks::Small(max) => {
                    self.turn += 1;
                    1 + self.turn % max
                }
            }
            .min(bytes.len());
            self.rec.feed(&bytes[..n]);
            self.h.feed(&bytes[..n]);
            bytes = &bytes[n..];
        }
    }

    fn command(&mut self, cmd: u8, arg: u8) {
        self.rec.command(cmd, arg);
        self.h.command(cmd, arg);
        if cmd == tag::DISCONNECT {
            // The socket is gone for the broker too.
            let current = self.h.transport().map(|t| t.0);
            let stale: Vec<u64> = self
                .conns
                .keys()
                .copied()
                .filter(|t| Some(*t) != current)
                .collect();
            for t in stale {
                if let Some(c) = self.conns.remove(&t) {
                    self.broker.disconnect(c);
                }
            }
        }
        self.sync();
    }

    /// Lets time pass up to the next timer of either side, at most `max`.
    fn idle(&mut self, max: Duration) {
        let now = self.h.now().instant;
        let mut next = now + max;
        for t in [self.h.client.poll_timeout(), self.broker.poll_timeout()]
            .into_iter()
            .flatten()
        {
            next = next.min(t);
        }
        let ms = next
            .saturating_duration_since(now)
            .as_millis()
            .clamp(1, u128::from(u16::MAX)) as u16;
        self.rec.advance_ms(ms);
        self.h.advance(Duration::from_millis(u64::from(ms)));
        let bnow = self.bnow();
        if self
            .broker
            .poll_timeout()
            .is_some_and(|t| t <= bnow.instant)
        {
            self.broker.handle_timeout(bnow);
        }
        self.sync();
    }

    /// Runs until `done` holds of the report, or `limit` of virtual time,
    /// consuming every event received, as an application would.
    fn until(&mut self, limit: Duration, done: impl Fn(&Report) -> bool) {
        let end = self.h.elapsed() + limit;
        loop {
            let fresh = self.h.report.received - self.consumed;
            if fresh > 0 {
                self.consumed += fresh;
                self.command(tag::CREDIT, fresh.min(255) as u8);
            }
            if done(&self.h.report) {
                return;
            }
            assert!(self.h.elapsed() < end, "session stuck: {:?}", self.h.report);
            self.idle(Duration::from_millis(100));
        }
    }

    /// Lets `d` of virtual time pass.
    fn pass(&mut self, d: Duration) {
        let end = self.h.elapsed() + d;
        while self.h.elapsed() < end {
            let left = end - self.h.elapsed();
            self.idle(left.min(Duration::from_millis(100)));
        }
    }

    /// Checks that the recording replays as deep as the session went, and
    /// writes it when asked to.
    fn finish(self, name: &str) -> Vec<u8> {
        let bytes = self.rec.bytes;
        let recorded = self.h.report.clone();
        let replayed = client_input::run(&bytes);
        eprintln!(
            "{name}: {} bytes; recorded {recorded:?}; replayed {replayed:?}",
            bytes.len()
        );
        for (what, got, want) in [
            ("sends accepted", replayed.sends_ok, recorded.sends_ok),
            ("hub information", replayed.hub_ok, recorded.hub_ok),
            (
                "partition information",
                replayed.partition_ok,
                recorded.partition_ok,
            ),
            (
                "receivers opened",
                replayed.receivers_opened,
                recorded.receivers_opened,
            ),
            ("events received", replayed.received, recorded.received),
        ] {
            assert_eq!(got, want, "{name}: {what} in the replay");
        }
        if let Some(dir) = std::env::var_os("FUZZ_SEEDS_DIR") {
            let dir = std::path::PathBuf::from(dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{name}.bin")), &bytes).unwrap();
        }
        bytes
    }
}

const MINUTE: Duration = Duration::from_secs(60);

/// Everything at the start goes through; then more sends and credit, and a
/// clean close.
fn full_session(scenario: Scenario, chunks: Chunks, name: &str) {
    let mut s = Session::new(scenario, chunks);
    s.until(MINUTE, |r| {
        r.sends_ok >= 1 && r.hub_ok >= 1 && r.partition_ok >= 1 && r.received >= 1
    });
    s.command(tag::SEND, 2); // three events in one batch
    s.until(MINUTE, |r| r.sends_ok >= 2 && r.received >= 4);
    s.command(tag::HUB, 0);
    s.command(tag::PARTITION, 1);
    s.until(MINUTE, |r| r.hub_ok >= 2 && r.partition_ok >= 2);
    s.command(tag::CLOSE, 10);
    s.until(MINUTE, |r| r.closed);
    let report = s.h.report.clone();
    assert_eq!(report.sends_failed + report.info_failed, 0, "{report:?}");
    s.finish(name);
}

#[test]
fn sas_provider_whole_chunks() {
    full_session(Scenario::FULL, Chunks::Whole, "sas_whole");
}

#[test]
fn sas_provider_small_chunks() {
    full_session(Scenario::FULL, Chunks::Small(13), "sas_small");
}

#[test]
fn sasl_plain() {
    full_session(Scenario(Scenario::FULL.0 | 1), Chunks::Whole, "plain");
}

#[test]
fn external_tokens_prefetch_one_last_enqueued() {
    full_session(
        Scenario(Scenario::FULL.0 | 2 | 0x40 | 0x80),
        Chunks::Whole,
        "external_prefetch1_tracked",
    );
}

/// Two-minute tokens: the client puts fresh ones while links stay up.
#[test]
fn token_refresh() {
    let mut s = Session::new(Scenario(Scenario::FULL.0 | 3), Chunks::Whole);
    s.until(MINUTE, |r| r.sends_ok >= 1 && r.received >= 1);
    s.pass(3 * MINUTE);
    s.command(tag::SEND, 0);
    s.until(MINUTE, |r| r.sends_ok >= 2 && r.received >= 2);
    s.finish("token_refresh");
}

/// The transport fails mid-session; the client reconnects, resends and
/// resumes its receiver after the last event.
#[test]
fn reconnect() {
    let mut s = Session::new(Scenario::FULL, Chunks::Whole);
    s.until(MINUTE, |r| r.sends_ok >= 1 && r.received >= 1);
    s.command(tag::DISCONNECT, 0);
    s.command(tag::SEND, 1);
    s.until(MINUTE, |r| {
        r.sends_ok >= 2 && r.received >= 3 && r.connects >= 2
    });
    s.finish("reconnect");
}

/// The broker's faults: throttled sends, detached links, a closed
/// connection.
#[test]
fn broker_faults() {
    let mut s = Session::new(Scenario::FULL, Chunks::Whole);
    s.until(MINUTE, |r| r.sends_ok >= 1 && r.received >= 1);
    s.broker.throttle_sends(1);
    s.command(tag::SEND, 0);
    s.until(MINUTE, |r| r.sends_ok >= 2 && r.received >= 2);
    let bnow = s.bnow();
    let busy = AmqpError::new(
        Symbol::from_static("amqp:link:detach-forced"),
        "fault: detached".to_owned(),
    );
    s.broker.detach_links(bnow, LinkSelector::All, busy);
    s.sync();
    s.command(tag::SEND, 0);
    s.until(MINUTE, |r| r.sends_ok >= 3 && r.received >= 3);
    if let Some(c) = s.conn() {
        let forced = AmqpError::new(
            Symbol::from_static("amqp:connection:forced"),
            "fault: closed".to_owned(),
        );
        s.broker.close_connection(c, bnow, Some(forced));
    }
    s.sync();
    s.command(tag::SEND, 0);
    s.until(MINUTE, |r| {
        r.sends_ok >= 4 && r.received >= 4 && r.connects >= 2
    });
    s.finish("broker_faults");
}

/// Sender links opened for their max-message-size; operations cancelled
/// (an information request before its answer, a send as it goes out).
#[test]
fn senders_opened_and_cancels() {
    let mut s = Session::new(Scenario::FULL, Chunks::Whole);
    s.until(MINUTE, |r| r.sends_ok >= 1 && r.hub_ok >= 1);
    s.command(tag::OPEN_SENDER, 1);
    s.command(tag::OPEN_SENDER, 9);
    s.until(MINUTE, |r| r.senders_opened >= 2);
    // Answers held back: the request is pending when it is cancelled, and
    // its late answer is ignored.
    s.broker.set_response_delay(Duration::from_secs(5));
    s.command(tag::HUB, 0);
    s.command(tag::CANCEL, 0);
    s.command(tag::SEND, 1);
    s.command(tag::CANCEL, 0);
    s.until(MINUTE, |r| r.cancelled >= 1);
    s.broker.set_response_delay(Duration::ZERO);
    s.pass(MINUTE);
    s.command(tag::CLOSE, 10);
    s.until(MINUTE, |r| r.closed);
    s.finish("senders_and_cancels");
}

/// Replies held back: operations time out, late replies arrive for them.
#[test]
fn late_replies() {
    let mut s = Session::new(Scenario::FULL, Chunks::Whole);
    s.until(MINUTE, |r| r.sends_ok >= 1 && r.hub_ok >= 1);
    s.broker.set_response_delay(Duration::from_secs(45));
    s.command(tag::SEND, 0);
    s.command(tag::HUB, 0);
    s.until(MINUTE, |r| r.sends_failed >= 1 && r.info_failed >= 1);
    s.pass(MINUTE);
    s.finish("late_replies");
}
