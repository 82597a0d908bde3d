//! Claims-based security (CBS): a token per audience
//! (`amqps://host/hub[/Partitions/p]`,
//! `.../ConsumerGroups/g/Partitions/p`), asked of the caller, put on the
//! `$cbs` node of every connection, refreshed 10 minutes (or a fifth of
//! its life) before it expires, and asked for again after a refusal. A
//! link attaches only once the current token of its audience is
//! acknowledged on the connection.

use std::time::Duration;

use tracing::{debug, warn};

use super::client::Client;
use super::error::ClientError;
use super::links::retry_delay;
use super::options::{ClientEvent, Now, OpId, ReceiverId, ReceiverOptions, SendTarget};
use super::requests::{Node, Request};
use super::rpc::{put_token_request, RpcStatus};
use super::timers::Timer;
use crate::eventhubs::sas::{Token, TokenError};

/// Where an audience's token stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(super) enum TokenState {
    /// A token is needed: none yet, or the current one is due for
    /// refreshing.
    #[default]
    Due,
    /// Asked for with [`ClientEvent::TokenRequired`].
    Requested,
    /// At hand; [`Timer::TokenRefresh`] says when to refresh it.
    Fresh,
    /// Could not be had or was refused; [`Timer::TokenRetry`] says when to
    /// ask again.
    BackingOff,
}

/// An audience's token.
#[derive(Debug, Default)]
pub(super) struct TokenSlot {
    token: Option<Token>,
    /// Counts the tokens supplied, so a put-token names the one it put.
    generation: u64,
    state: TokenState,
    /// Refusals in a row.
    failures: u32,
}

/// The put-token state of an audience on one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Auth {
    /// The generation the service acknowledged.
    done: Option<u64>,
    /// The generation being put.
    putting: Option<u64>,
}

/// How long after `now_unix_secs` to put a fresh token: 10 minutes before
/// expiry (as azure-event-hubs-go does), or a fifth of the remaining life
/// before it for shorter tokens; never for tokens of unknown expiry.
fn refresh_delay(now_unix_secs: u64, token: &Token) -> Option<Duration> {
    if token.expires_at_unix == 0 {
        return None;
    }
    let remaining = Duration::from_secs(token.expires_at_unix.saturating_sub(now_unix_secs));
    let lead = (remaining / 5).min(Duration::from_secs(600));
    Some(remaining.saturating_sub(lead).max(Duration::from_secs(1)))
}

impl Client {
    fn audience(&self, path: &str) -> String {
        format!("amqps://{}/{}", self.options.host, path)
    }

    pub(super) fn sender_audience(&self, target: &SendTarget) -> String {
        self.audience(&target.address(&self.options.hub))
    }

    pub(super) fn receiver_audience(&self, o: &ReceiverOptions) -> String {
        self.audience(&format!(
            "{}/ConsumerGroups/{}/Partitions/{}",
            self.options.hub, o.consumer_group, o.partition_id
        ))
    }

    pub(super) fn management_audience(&self) -> String {
        self.audience(&self.options.hub)
    }

    /// Audiences the current work needs, in a fixed order.
    fn needed_audiences(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        let mut add = |a: String| {
            if !v.contains(&a) {
                v.push(a);
            }
        };
        for (target, s) in &self.senders {
            if s.has_work() || s.link.slot.link().is_some() {
                add(self.sender_audience(target));
            }
        }
        for r in self.receivers.values() {
            add(self.receiver_audience(&r.options));
        }
        if !self.mgmt_queue.is_empty() {
            add(self.management_audience());
        }
        v
    }

    /// The token of `audience` and its generation, while it is fresh: a
    /// token past its refresh instant is not put on a connection any more
    /// (it may expire before the service reads it); its successor is.
    fn fresh_token(&self, audience: &str) -> Option<(&Token, u64)> {
        let slot = self.tokens.get(audience)?;
        match (&slot.token, slot.state) {
            (Some(t), TokenState::Fresh) => Some((t, slot.generation)),
            _ => None,
        }
    }

    /// True when some audience the work needs has a fresh token.
    pub(super) fn any_token_ready(&self) -> bool {
        self.needed_audiences()
            .iter()
            .any(|a| self.fresh_token(a).is_some())
    }

    /// The current token of `audience`, as text.
    pub(super) fn token_text(&self, audience: &str) -> Option<String> {
        self.tokens
            .get(audience)?
            .token
            .as_ref()
            .map(|t| t.token.clone())
    }

    /// Asks the caller for every token that is needed and due.
    pub(super) fn acquire_tokens(&mut self) {
        for audience in self.needed_audiences() {
            let slot = self.tokens.entry(audience.clone()).or_default();
            if slot.state == TokenState::Due {
                slot.state = TokenState::Requested;
                debug!(audience = %audience, "token required");
                self.events
                    .push_back(ClientEvent::TokenRequired { audience });
            }
        }
    }

    /// The caller's answer to [`ClientEvent::TokenRequired`].
    pub(super) fn token_supplied(
        &mut self,
        now: Now,
        audience: &str,
        token: Result<Token, TokenError>,
    ) {
        match token {
            Ok(token) => {
                let refresh = refresh_delay(now.unix_secs(), &token).map(|d| now.instant + d);
                let slot = self.tokens.entry(audience.to_owned()).or_default();
                slot.generation += 1;
                slot.token = Some(token);
                slot.state = TokenState::Fresh;
                self.timers
                    .set_or_stop(Timer::TokenRefresh(audience.to_owned()), refresh);
                self.timers.stop(&Timer::TokenRetry(audience.to_owned()));
            }
            Err(e) => {
                warn!(audience = %audience, error = %e, "no token");
                self.token_failed(now, audience, ClientError::Token(e), false);
            }
        }
    }

    /// A refresh or retry timer fired: the token is asked for again.
    pub(super) fn token_due(&mut self, audience: &str) {
        if let Some(slot) = self.tokens.get_mut(audience) {
            if matches!(slot.state, TokenState::Fresh | TokenState::BackingOff) {
                slot.state = TokenState::Due;
            }
        }
    }

    /// True when `audience` is authorised on the current connection with
    /// its current, fresh token: while a token is being refreshed and put,
    /// new links wait for it, so that an attach never overtakes the
    /// put-token that covers it, nor relies on a token about to expire.
    pub(super) fn authorised(&self, audience: &str) -> bool {
        if !self.uses_cbs() {
            return true;
        }
        let Some((_, generation)) = self.fresh_token(audience) else {
            return false;
        };
        self.phase.conn().is_some_and(|c| {
            c.auth
                .get(audience)
                .is_some_and(|a| a.done == Some(generation))
        })
    }

    /// Puts every token the service has not acknowledged yet.
    pub(super) fn put_tokens(&mut self, now: Now) {
        for audience in self.needed_audiences() {
            let Some((token, generation)) =
                self.fresh_token(&audience).map(|(t, g)| (t.clone(), g))
            else {
                continue;
            };
            let Some(c) = self.phase.conn() else { return };
            let auth = c.auth.get(&audience).copied().unwrap_or_default();
            let stale = auth.putting.is_none() && auth.done.is_none_or(|g| g < generation);
            if !stale {
                continue;
            }
            let Some(tx) = self.rpc_ready(Node::Cbs) else {
                return;
            };
            let what = Request::PutToken {
                audience: audience.clone(),
                generation,
            };
            let sent = self.send_request(now, Node::Cbs, tx, what, |id, reply_to| {
                put_token_request(id, reply_to, &audience, &token)
            });
            if sent.is_none() {
                return;
            }
            debug!(audience = %audience, "put-token sent");
            if let Some(c) = self.phase.conn_mut() {
                c.auth.entry(audience).or_default().putting = Some(generation);
            }
        }
    }

    /// The service answered a put-token (or it was given up).
    pub(super) fn put_token_answered(
        &mut self,
        now: Now,
        audience: &str,
        generation: u64,
        status: RpcStatus,
    ) {
        if let Some(c) = self.phase.conn_mut() {
            let auth = c.auth.entry(audience.to_owned()).or_default();
            auth.putting = None;
            if status.is_success() {
                auth.done = Some(generation);
            }
        }
        if status.is_success() {
            debug!(audience = %audience, code = status.code, "put-token accepted");
            if let Some(s) = self.tokens.get_mut(audience) {
                s.failures = 0;
            }
            return;
        }
        warn!(audience = %audience, code = status.code, "put-token refused");
        let error = ClientError::TokenRefused {
            audience: audience.to_owned(),
            refusal: Box::new(status.into_error()),
        };
        let retryable = error.recovery().is_retryable();
        self.token_failed(now, audience, error, retryable);
    }

    /// A token could not be had or was refused: the audience waits for a
    /// retry, or what depends on it fails.
    fn token_failed(&mut self, now: Now, audience: &str, error: ClientError, retryable: bool) {
        let until_deadline = self.options.retry_until_deadline && !self.ops.is_empty();
        let slot = self.tokens.entry(audience.to_owned()).or_default();
        slot.failures += 1;
        let failures = slot.failures;
        let delay = retryable
            .then(|| {
                retry_delay(
                    &self.options.retry,
                    &mut self.rng,
                    failures,
                    error.condition(),
                    until_deadline,
                )
            })
            .flatten();
        let dependents = self.dependents(audience);
        if let Some(d) = delay {
            if let Some(slot) = self.tokens.get_mut(audience) {
                slot.state = TokenState::BackingOff;
            }
            self.timers
                .set(Timer::TokenRetry(audience.to_owned()), now.instant + d);
            for op in dependents.0 {
                self.note_op_error(op, failures, error.clone());
            }
            return;
        }
        if let Some(slot) = self.tokens.get_mut(audience) {
            *slot = TokenSlot {
                generation: slot.generation,
                ..TokenSlot::default()
            };
        }
        self.timers.stop(&Timer::TokenRefresh(audience.to_owned()));
        self.timers.stop(&Timer::TokenRetry(audience.to_owned()));
        for op in dependents.0 {
            self.fail_op(op, error.clone());
        }
        for r in dependents.1 {
            self.end_receiver(r, Some(error.clone()));
        }
    }

    /// The operations and receivers that need `audience`.
    fn dependents(&self, audience: &str) -> (Vec<OpId>, Vec<ReceiverId>) {
        let management = self.management_audience() == audience;
        let ops = self
            .ops
            .iter()
            .filter(|(_, o)| match &o.kind {
                super::client::OpKind::Send(s) => self.sender_audience(&s.target) == audience,
                super::client::OpKind::OpenSender(target) => {
                    self.sender_audience(target) == audience
                }
                super::client::OpKind::Management(_) => management,
            })
            .map(|(id, _)| *id)
            .collect();
        let receivers = self
            .receivers
            .iter()
            .filter(|(_, r)| self.receiver_audience(&r.options) == audience)
            .map(|(id, _)| *id)
            .collect();
        (ops, receivers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_comes_ten_minutes_early_or_at_four_fifths_of_short_lives() {
        let now = 1_000_000_000;
        let token = |secs: u64| Token {
            token: String::new(),
            expires_at_unix: 1_000_000_000 + secs,
            token_type: crate::eventhubs::sas::TokenType::SasToken,
        };
        let at = |secs| refresh_delay(now, &token(secs));
        assert_eq!(at(7200), Some(Duration::from_secs(6600)));
        assert_eq!(at(300), Some(Duration::from_secs(240)));
        assert_eq!(
            at(0),
            Some(Duration::from_secs(1)),
            "an expired token is replaced at once"
        );
        let unknown = Token {
            expires_at_unix: 0,
            ..token(0)
        };
        assert_eq!(refresh_delay(now, &unknown), None);
    }
}
