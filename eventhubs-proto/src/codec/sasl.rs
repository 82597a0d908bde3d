//! Part 5 SASL: the five SASL frame bodies (5.3.3).

use bytes::{BufMut, Bytes};
use bytestring::ByteString;

use super::composite::composite;
use super::decode::{Decode, Decoder};
use super::encode::{Encode, Form};
use super::error::{DecodeError, DecodeErrorKind};
use super::messaging::described_code;
use super::performatives::ubyte_enum;
use super::types::{Descriptor, Symbol};

ubyte_enum! {
    /// 5.3.3.6 sasl-code: the outcome of the SASL dialog.
    SaslCode {
        /// Connection authentication succeeded.
        #[default]
        Ok = 0,
        /// Connection authentication failed due to an unspecified problem
        /// with the supplied credentials.
        Auth = 1,
        /// Connection authentication failed due to a system error.
        Sys = 2,
        /// Connection authentication failed due to a system error that is
        /// unlikely to be corrected without intervention.
        SysPerm = 3,
        /// Connection authentication failed due to a transient system error.
        SysTemp = 4,
    }
}

composite! {
    /// 5.3.3.1 SASL Mechanisms: the mechanisms the server supports.
    pub struct SaslMechanisms = (0x40, "amqp:sasl-mechanisms:list") {
        /// Supported SASL mechanisms, in decreasing order of preference.
        sasl_server_mechanisms: multi,
    }
}

composite! {
    /// 5.3.3.2 SASL Init: the mechanism the client selected.
    pub struct SaslInit = (0x41, "amqp:sasl-init:list") {
        /// Selected security mechanism.
        mechanism: req(Symbol),
        /// Security response data.
        initial_response: opt(Bytes),
        /// The name of the target host.
        hostname: opt(ByteString),
    }
}

composite! {
    /// 5.3.3.3 SASL Challenge: security mechanism challenge.
    pub struct SaslChallenge = (0x42, "amqp:sasl-challenge:list") {
        /// Security challenge data.
        challenge: req(Bytes),
    }
}

composite! {
    /// 5.3.3.4 SASL Response: security mechanism response.
    pub struct SaslResponse = (0x43, "amqp:sasl-response:list") {
        /// Security response data.
        response: req(Bytes),
    }
}

composite! {
    /// 5.3.3.5 SASL Outcome: the result of the SASL dialog.
    pub struct SaslOutcome = (0x44, "amqp:sasl-outcome:list") {
        /// Indicates the outcome of the sasl dialog.
        code: req(SaslCode),
        /// Additional data as specified in RFC 4422.
        additional_data: opt(Bytes),
    }
}

/// The body of a SASL frame.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum SaslFrame {
    Mechanisms(SaslMechanisms),
    Init(SaslInit),
    Challenge(SaslChallenge),
    Response(SaslResponse),
    Outcome(SaslOutcome),
}

impl SaslFrame {
    fn code_from_symbol(s: &str) -> Option<u64> {
        Some(match s {
            SaslMechanisms::SYMBOL => SaslMechanisms::CODE,
            SaslInit::SYMBOL => SaslInit::CODE,
            SaslChallenge::SYMBOL => SaslChallenge::CODE,
            SaslResponse::SYMBOL => SaslResponse::CODE,
            SaslOutcome::SYMBOL => SaslOutcome::CODE,
            _ => return None,
        })
    }
}

impl Encode for SaslFrame {
    fn encoded_len_as(&self, f: Form) -> usize {
        match self {
            SaslFrame::Mechanisms(s) => s.encoded_len_as(f),
            SaslFrame::Init(s) => s.encoded_len_as(f),
            SaslFrame::Challenge(s) => s.encoded_len_as(f),
            SaslFrame::Response(s) => s.encoded_len_as(f),
            SaslFrame::Outcome(s) => s.encoded_len_as(f),
        }
    }
    fn encode_as<B: BufMut>(&self, f: Form, buf: &mut B) {
        match self {
            SaslFrame::Mechanisms(s) => s.encode_as(f, buf),
            SaslFrame::Init(s) => s.encode_as(f, buf),
            SaslFrame::Challenge(s) => s.encode_as(f, buf),
            SaslFrame::Response(s) => s.encode_as(f, buf),
            SaslFrame::Outcome(s) => s.encode_as(f, buf),
        }
    }
}

impl Decode for SaslFrame {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let at = d.offset();
        let code = described_code(d, "SASL frame body", SaslFrame::code_from_symbol)?;
        d.descend(|d| {
            Ok(match code {
                SaslMechanisms::CODE => SaslFrame::Mechanisms(SaslMechanisms::decode_fields(d)?),
                SaslInit::CODE => SaslFrame::Init(SaslInit::decode_fields(d)?),
                SaslChallenge::CODE => SaslFrame::Challenge(SaslChallenge::decode_fields(d)?),
                SaslResponse::CODE => SaslFrame::Response(SaslResponse::decode_fields(d)?),
                SaslOutcome::CODE => SaslFrame::Outcome(SaslOutcome::decode_fields(d)?),
                c => {
                    return Err(d.err_at(
                        at,
                        DecodeErrorKind::UnexpectedDescriptor {
                            expected: "SASL frame body",
                            found: Descriptor::Code(c).to_string(),
                        },
                    ))
                }
            })
        })
    }
}
