//! Bounds on what clients may make the emulator hold, so that a hostile
//! or stalled peer cannot exhaust it: connections, unauthenticated
//! connections and the time to authenticate, sessions and links per
//! connection, deliveries waiting for a peer that does not read, and the
//! HTTP listener's connections.
//!
//! Each bound is answered as the service answers its own quotas:
//!
//! | bound | answer |
//! |---|---|
//! | [`max_connections`](Limits::max_connections) | the AMQP `open` is answered, then `close` with `amqp:resource-limit-exceeded` |
//! | [`max_unauthenticated`](Limits::max_unauthenticated) | the socket is closed at once, before a byte is exchanged (nothing has been said yet that an AMQP error could answer) |
//! | [`handshake_timeout`](Limits::handshake_timeout) | a connection without a SASL outcome and an `open` by then is dropped |
//! | the CBS deadline ([`EmulatorConfig::cbs_deadline_ms`](crate::EmulatorConfig::cbs_deadline_ms)) | `close` with `amqp:unauthorized-access` |
//! | [`max_sessions`](Limits::max_sessions) | announced as the `open`'s channel-max (2.7.1); a `begin` beyond it is a protocol error (`close`) |
//! | [`max_links`](Limits::max_links) | announced as each session's handle-max (2.7.2); an attach beyond the connection's count is refused: `attach` without terminus, `detach` with `amqp:resource-limit-exceeded` |
//! | [`max_pending_deliveries`](Limits::max_pending_deliveries) | a receiver gets no more events until its client reads what is queued (flow control, no error); a `$cbs` or `$management` reply link whose replies pile up without credit is detached with `amqp:resource-limit-exceeded` |
//! | [`max_http_connections`](Limits::max_http_connections) | `503 Service Unavailable` with `Retry-After`, and the socket closed |
//! | [`http_request_timeout`](Limits::http_request_timeout) | `408 Request Timeout`, and the socket closed |
//!
//! A connection the emulator closes for a bound is dropped when the client
//! has not answered the `close` within [`CLOSE_GRACE`].

use std::time::Duration;

/// How long a client has to answer a `close` the emulator sent because of
/// a bound (or the CBS deadline) before its socket is closed.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The emulator's bounds; see the [module documentation](self) for how
/// each is answered. The defaults are far above what a test or a
/// development setup opens, and low enough that a runaway client is
/// stopped well before the machine is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Connections at once, over every listener (AMQP, TLS, WebSocket);
    /// connections still authenticating count too. Default 1000.
    pub max_connections: usize,
    /// Connections at once that have not yet authenticated: still in the
    /// TLS or WebSocket handshake, in SASL, or (with `ANONYMOUS` or
    /// `MSSBCBS`) before their first accepted put-token. Default 128.
    pub max_unauthenticated: usize,
    /// Time from the TCP connection to the client's AMQP `open` (SASL
    /// included). Default 10 s.
    pub handshake_timeout: Duration,
    /// Sessions per connection (channel-max + 1). Default 1000.
    pub max_sessions: u16,
    /// Links attached per connection, `$cbs` and `$management` included.
    /// Default 1000.
    pub max_links: usize,
    /// Deliveries the emulator queues on one link for a client that has
    /// not taken them off the socket yet (events to a receiver, replies
    /// waiting for credit). Default 1000.
    pub max_pending_deliveries: usize,
    /// Connections to the HTTP listener at once. Default 64.
    pub max_http_connections: usize,
    /// Time an HTTP request has to arrive whole once its first byte has.
    /// Default 30 s.
    pub http_request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1000,
            max_unauthenticated: 128,
            handshake_timeout: Duration::from_secs(10),
            max_sessions: 1000,
            max_links: 1000,
            max_pending_deliveries: 1000,
            max_http_connections: 64,
            http_request_timeout: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// The usage text of the flags [`Limits::take`] reads.
    pub const USAGE: &'static str = "[--max-connections N] [--max-unauthenticated N] [--handshake-timeout SECS] [--cbs-timeout SECS] [--max-sessions N] [--max-links N] [--max-pending-deliveries N] [--max-http-connections N] [--http-request-timeout SECS]";

    /// What the flags mean, for `--help`.
    pub const HELP: &'static str = "\
limits (a client over one is answered as the service answers its quotas):
  --max-connections N          connections at once (default 1000); the next is closed
                               after its open with amqp:resource-limit-exceeded
  --max-unauthenticated N      connections not yet authenticated (default 128); more are
                               closed at once
  --handshake-timeout SECS     time to finish SASL and send open (default 10)
  --cbs-timeout SECS           time an anonymous connection has to put a token (default 60)
  --max-sessions N             sessions per connection (default 1000)
  --max-links N                links per connection (default 1000)
  --max-pending-deliveries N   deliveries queued per link for a client that does not read
                               (default 1000)
  --max-http-connections N     HTTP connections at once (default 64); more get 503
  --http-request-timeout SECS  time for an HTTP request to arrive whole (default 30); 408";

    /// Takes `flag` and its value from `rest` if it is one of the limit
    /// flags, setting it here (or, for `--cbs-timeout`, in `cbs_deadline_ms`):
    /// `Ok(true)` when taken, `Ok(false)` when not one of them, `Err` with
    /// a message when its value is missing or out of range.
    pub fn take(
        &mut self,
        flag: &str,
        rest: &mut impl Iterator<Item = String>,
        cbs_deadline_ms: &mut i64,
    ) -> Result<bool, String> {
        let mut number = |min: u64, max: u64| -> Result<u64, String> {
            let v = rest.next().ok_or(format!("{flag} needs a number"))?;
            match v.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(format!(
                    "{flag}: {v:?} is not a whole number from {min} to {max}"
                )),
            }
        };
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        match flag {
            "--max-connections" => self.max_connections = count(number(1, 1 << 20)?),
            "--max-unauthenticated" => self.max_unauthenticated = count(number(1, 1 << 20)?),
            "--handshake-timeout" => {
                self.handshake_timeout = Duration::from_secs(number(1, 86_400)?)
            }
            "--cbs-timeout" => *cbs_deadline_ms = number(1, 86_400)? as i64 * 1000,
            "--max-sessions" => self.max_sessions = number(1, 65_536)?.min(65_535) as u16,
            "--max-links" => self.max_links = count(number(1, 1 << 24)?),
            "--max-pending-deliveries" => self.max_pending_deliveries = count(number(1, 1 << 24)?),
            "--max-http-connections" => self.max_http_connections = count(number(1, 1 << 20)?),
            "--http-request-timeout" => {
                self.http_request_timeout = Duration::from_secs(number(1, 86_400)?)
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<(Limits, i64), String> {
        let mut limits = Limits::default();
        let mut cbs = 60_000;
        let mut it = args.iter().map(|s| s.to_string());
        while let Some(flag) = it.next() {
            if !limits.take(&flag, &mut it, &mut cbs)? {
                return Err(format!("unknown {flag}"));
            }
        }
        Ok((limits, cbs))
    }

    #[test]
    fn flags_set_limits_and_bad_values_say_why() {
        let (l, cbs) = parse(&[
            "--max-connections",
            "7",
            "--max-unauthenticated",
            "3",
            "--handshake-timeout",
            "2",
            "--cbs-timeout",
            "20",
            "--max-sessions",
            "4",
            "--max-links",
            "9",
            "--max-pending-deliveries",
            "50",
            "--max-http-connections",
            "2",
            "--http-request-timeout",
            "5",
        ])
        .unwrap();
        assert_eq!(
            l,
            Limits {
                max_connections: 7,
                max_unauthenticated: 3,
                handshake_timeout: Duration::from_secs(2),
                max_sessions: 4,
                max_links: 9,
                max_pending_deliveries: 50,
                max_http_connections: 2,
                http_request_timeout: Duration::from_secs(5),
            }
        );
        assert_eq!(cbs, 20_000);
        assert_eq!(parse(&[]).unwrap(), (Limits::default(), 60_000));
        let e = parse(&["--max-links", "0"]).unwrap_err();
        assert!(e.contains("from 1 to"), "{e}");
        let e = parse(&["--max-sessions", "x"]).unwrap_err();
        assert!(e.contains("\"x\" is not a whole number"), "{e}");
        let e = parse(&["--handshake-timeout"]).unwrap_err();
        assert!(e.contains("needs a number"), "{e}");
        assert_eq!(parse(&["--other"]).unwrap_err(), "unknown --other");
    }
}
