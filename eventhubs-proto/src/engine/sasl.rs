//! The SASL layer (OASIS AMQP 1.0 part 5.3) of a [`Connection`]: a client
//! picks the first of its mechanisms the server offers and reads the
//! outcome; a server offers its mechanisms and checks the client's init
//! (PLAIN with the configured check, the others accepted).

use bytestring::ByteString;

use super::connection::{Connection, Event, Expect, Out, SaslConfig, SaslMechanism, Side};
use super::error::ConnectionError;
use crate::codec::frame::{ProtocolHeader, ProtocolId};
use crate::codec::sasl::{SaslCode, SaslFrame, SaslInit, SaslMechanisms, SaslOutcome};

impl Connection {
    /// A SASL frame, for the side we play.
    pub(super) fn on_sasl(&mut self, s: SaslFrame) -> Result<(), ConnectionError> {
        match (self.config.side, s) {
            (Side::Client, SaslFrame::Mechanisms(m)) => self.sasl_mechanisms(&m),
            (Side::Client, SaslFrame::Challenge(_)) => {
                // None of our mechanisms has a challenge step.
                Err(ConnectionError::SaslFailed(SaslCode::Auth))
            }
            (Side::Client, SaslFrame::Outcome(o)) => self.sasl_outcome(&o),
            (Side::Server, SaslFrame::Init(init)) => {
                self.sasl_init(init);
                Ok(())
            }
            (_, other) => Err(ConnectionError::Decode(crate::codec::DecodeError {
                offset: 0,
                kind: crate::codec::DecodeErrorKind::UnexpectedDescriptor {
                    expected: "SASL frame for this side",
                    found: format!("{other:?}").chars().take(40).collect(),
                },
            })),
        }
    }

    /// Client: the server's mechanisms; the first of ours it offers is
    /// chosen and its init sent.
    fn sasl_mechanisms(&mut self, m: &SaslMechanisms) -> Result<(), ConnectionError> {
        let offered = &m.sasl_server_mechanisms;
        let ours: &[SaslMechanism] = match &self.config.sasl {
            SaslConfig::Client(ours) => ours,
            _ => &[],
        };
        let Some(mech) = ours.iter().find(|o| offered.contains(&o.name())).cloned() else {
            return Err(ConnectionError::NoSaslMechanism(
                offered.iter().map(|s| s.to_string()).collect(),
            ));
        };
        let init = SaslInit {
            mechanism: mech.name(),
            initial_response: mech.initial_response(),
            hostname: self.config.hostname.as_deref().map(ByteString::from),
        };
        self.chosen = Some(mech);
        self.out_sasl.push_back(Out::Sasl(SaslFrame::Init(init)));
        Ok(())
    }

    /// Client: the outcome; on success the AMQP header follows.
    fn sasl_outcome(&mut self, o: &SaslOutcome) -> Result<(), ConnectionError> {
        if o.code != SaslCode::Ok {
            return Err(ConnectionError::SaslFailed(o.code));
        }
        let mechanism = self
            .chosen
            .as_ref()
            .map(SaslMechanism::name)
            .unwrap_or_default();
        self.events.push_back(Event::Authenticated {
            mechanism,
            user: None,
        });
        self.sasl_done = true;
        self.expect = Expect::Header(ProtocolId::Amqp);
        self.out.push_front(Out::Header(ProtocolHeader::AMQP));
        Ok(())
    }

    /// Server: the client's init, answered with the outcome.
    fn sasl_init(&mut self, init: SaslInit) {
        let (code, user) = self.check_init(&init);
        self.out_sasl
            .push_back(Out::Sasl(SaslFrame::Outcome(SaslOutcome {
                code,
                additional_data: None,
            })));
        if code != SaslCode::Ok {
            self.expect = Expect::Nothing;
            self.failed = true;
            self.events
                .push_back(Event::Failed(ConnectionError::SaslFailed(code)));
            return;
        }
        self.events.push_back(Event::Authenticated {
            mechanism: init.mechanism,
            user,
        });
        self.sasl_done = true;
        self.expect = Expect::Header(ProtocolId::Amqp);
    }

    fn check_init(&mut self, init: &SaslInit) -> (SaslCode, Option<String>) {
        let SaslConfig::Server {
            mechanisms,
            plain_check,
        } = &mut self.config.sasl
        else {
            return (SaslCode::SysPerm, None);
        };
        if !mechanisms.contains(&init.mechanism) {
            return (SaslCode::Auth, None);
        }
        match init.mechanism.as_str() {
            "PLAIN" => {
                let resp = init.initial_response.as_deref().unwrap_or_default();
                let mut parts = resp.split(|&b| b == 0);
                let (_authz, user, pass) = (parts.next(), parts.next(), parts.next());
                let (Some(user), Some(pass), None) = (user, pass, parts.next()) else {
                    return (SaslCode::Auth, None);
                };
                let (Ok(user), Ok(pass)) = (std::str::from_utf8(user), std::str::from_utf8(pass))
                else {
                    return (SaslCode::Auth, None);
                };
                if plain_check.as_mut().is_some_and(|check| check(user, pass)) {
                    (SaslCode::Ok, Some(user.to_string()))
                } else {
                    (SaslCode::Auth, None)
                }
            }
            _ => (SaslCode::Ok, None),
        }
    }
}
