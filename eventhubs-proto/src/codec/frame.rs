//! Part 2.3 framing: protocol headers, frame headers and frame bodies.

use bytes::{BufMut, Bytes, BytesMut};
use nom::number::complete::{be_u16, be_u32, be_u8};
use nom::Parser;

use super::decode::{Decode, Decoder};
use super::encode::{Encode, Form};
use super::error::{DecodeError, DecodeErrorKind};
use super::performatives::Performative;
use super::sasl::SaslFrame;

/// Size of the fixed frame header (2.3.1).
pub const FRAME_HEADER_LEN: usize = 8;

/// The smallest max-frame-size a peer may impose (2.7.1).
pub const MIN_MAX_FRAME_SIZE: u32 = 512;

/// Frame type 0x00: an AMQP frame.
pub const FRAME_TYPE_AMQP: u8 = 0x00;
/// Frame type 0x01: a SASL frame.
pub const FRAME_TYPE_SASL: u8 = 0x01;

/// The 8-byte protocol header that opens each protocol layer (2.2): `AMQP`,
/// a protocol id, and the version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolHeader {
    /// Which layer.
    pub id: ProtocolId,
    /// Major version (1).
    pub major: u8,
    /// Minor version (0).
    pub minor: u8,
    /// Revision (0).
    pub revision: u8,
}

/// The protocol id of a [`ProtocolHeader`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolId {
    /// 0: AMQP itself.
    Amqp = 0,
    /// 2: TLS (5.2).
    Tls = 2,
    /// 3: SASL (5.3).
    Sasl = 3,
}

impl ProtocolHeader {
    /// Length of a protocol header.
    pub const LEN: usize = 8;

    /// `AMQP 0 1 0 0`.
    pub const AMQP: ProtocolHeader = ProtocolHeader::v1_0(ProtocolId::Amqp);
    /// `AMQP 2 1 0 0`.
    pub const TLS: ProtocolHeader = ProtocolHeader::v1_0(ProtocolId::Tls);
    /// `AMQP 3 1 0 0`.
    pub const SASL: ProtocolHeader = ProtocolHeader::v1_0(ProtocolId::Sasl);

    const fn v1_0(id: ProtocolId) -> Self {
        ProtocolHeader {
            id,
            major: 1,
            minor: 0,
            revision: 0,
        }
    }

    /// Parses a protocol header. Returns `Ok(None)` while fewer than 8 bytes
    /// are available.
    pub fn parse(buf: &[u8]) -> Result<Option<ProtocolHeader>, DecodeError> {
        type E<'a> = nom::error::Error<&'a [u8]>;
        let mut header = (
            nom::bytes::complete::tag::<_, _, E<'_>>(&b"AMQP"[..]),
            be_u8,
            be_u8,
            be_u8,
            be_u8,
        );
        match header.parse(buf) {
            Ok((_, (_, id, major, minor, revision))) => {
                let id = match id {
                    0 => ProtocolId::Amqp,
                    2 => ProtocolId::Tls,
                    3 => ProtocolId::Sasl,
                    _ => return Err(bad_header(buf)),
                };
                Ok(Some(ProtocolHeader {
                    id,
                    major,
                    minor,
                    revision,
                }))
            }
            // Fewer than 8 bytes that so far agree with "AMQP": wait.
            Err(_) if buf.len() < Self::LEN && b"AMQP".starts_with(&buf[..buf.len().min(4)]) => {
                Ok(None)
            }
            Err(_) => Err(bad_header(buf)),
        }
    }

    /// The eight bytes on the wire.
    pub fn to_bytes(self) -> [u8; 8] {
        [
            b'A',
            b'M',
            b'Q',
            b'P',
            self.id as u8,
            self.major,
            self.minor,
            self.revision,
        ]
    }

    /// True for version 1.0.0.
    pub fn is_v1_0(&self) -> bool {
        (self.major, self.minor, self.revision) == (1, 0, 0)
    }
}

fn bad_header(b: &[u8]) -> DecodeError {
    let mut h = [0u8; 8];
    let n = b.len().min(8);
    h[..n].copy_from_slice(&b[..n]);
    DecodeError {
        offset: 0,
        kind: DecodeErrorKind::InvalidProtocolHeader(h),
    }
}

/// The fixed part of a frame header (2.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Total frame size, header included.
    pub size: u32,
    /// Data offset in 4-byte words (at least 2).
    pub doff: u8,
    /// Frame type: [`FRAME_TYPE_AMQP`] or [`FRAME_TYPE_SASL`].
    pub frame_type: u8,
    /// Channel (AMQP frames); ignored for SASL frames.
    pub channel: u16,
}

impl FrameHeader {
    /// Parses and validates a frame header. Returns `Ok(None)` while fewer
    /// than 8 bytes are available. The size is checked against
    /// `max_frame_size` here, before anything is buffered for the body.
    pub fn parse(buf: &[u8], max_frame_size: u32) -> Result<Option<FrameHeader>, DecodeError> {
        type E<'a> = nom::error::Error<&'a [u8]>;
        let Ok((_, (size, doff, frame_type, channel))) =
            (be_u32::<_, E<'_>>, be_u8, be_u8, be_u16).parse(buf)
        else {
            return Ok(None);
        };
        let header = FrameHeader {
            size,
            doff,
            frame_type,
            channel,
        };
        let fail = |offset, why| {
            Err(DecodeError {
                offset,
                kind: DecodeErrorKind::InvalidFrame(why),
            })
        };
        if size < FRAME_HEADER_LEN as u32 {
            return fail(0, "size smaller than the frame header");
        }
        if size > max_frame_size {
            return fail(0, "size above max-frame-size");
        }
        if header.doff < 2 {
            return fail(4, "data offset below 2");
        }
        if header.doff as u32 * 4 > size {
            return fail(4, "data offset beyond the frame");
        }
        if header.frame_type != FRAME_TYPE_AMQP && header.frame_type != FRAME_TYPE_SASL {
            return fail(5, "unknown frame type");
        }
        Ok(Some(header))
    }
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// An AMQP frame with no body: a heartbeat (2.4.5).
    Empty {
        /// The channel it was sent on.
        channel: u16,
    },
    /// An AMQP frame: a performative and, for transfers, payload bytes that
    /// share the frame's buffer.
    Amqp {
        /// The channel.
        channel: u16,
        /// The performative.
        performative: Performative,
        /// Bytes after the performative (a transfer's message data).
        payload: Bytes,
    },
    /// A SASL frame.
    Sasl(SaslFrame),
}

impl Frame {
    /// Decodes one whole frame, header included, from `frame`, which MUST
    /// hold exactly one frame (as split off by [`split_frame`]). Any
    /// extended header is skipped.
    pub fn decode(frame: &Bytes) -> Result<Frame, DecodeError> {
        let header = FrameHeader::parse(frame, u32::MAX)?.ok_or_else(|| DecodeError {
            offset: frame.len(),
            kind: DecodeErrorKind::UnexpectedEnd {
                needed: FRAME_HEADER_LEN - frame.len(),
            },
        })?;
        if header.size as usize != frame.len() {
            return Err(DecodeError {
                offset: 0,
                kind: DecodeErrorKind::InvalidFrame("size differs from the bytes given"),
            });
        }
        let mut d = Decoder::new(frame);
        d.take(header.doff as usize * 4)?;
        match header.frame_type {
            FRAME_TYPE_AMQP if d.is_empty() => Ok(Frame::Empty {
                channel: header.channel,
            }),
            FRAME_TYPE_AMQP => {
                let performative = Performative::decode(&mut d)?;
                let payload = d.take_rest();
                Ok(Frame::Amqp {
                    channel: header.channel,
                    performative,
                    payload,
                })
            }
            _ => {
                if d.is_empty() {
                    return Err(d.err(DecodeErrorKind::InvalidFrame("empty SASL frame")));
                }
                let body = SaslFrame::decode(&mut d)?;
                d.finish()?;
                Ok(Frame::Sasl(body))
            }
        }
    }
}

/// Splits one complete frame off the front of `buf`.
///
/// Returns `Ok(None)` while the frame is incomplete. The header is validated
/// (including `size <= max_frame_size`) as soon as its 8 bytes are present,
/// so an oversized frame is refused before its body is buffered.
pub fn split_frame(buf: &mut BytesMut, max_frame_size: u32) -> Result<Option<Bytes>, DecodeError> {
    match FrameHeader::parse(buf, max_frame_size)? {
        Some(h) if buf.len() >= h.size as usize => Ok(Some(buf.split_to(h.size as usize).freeze())),
        _ => Ok(None),
    }
}

/// Length of an AMQP frame carrying `performative` and `payload_len` bytes.
pub fn amqp_frame_len(performative: &Performative, payload_len: usize, form: Form) -> usize {
    FRAME_HEADER_LEN + performative.encoded_len_as(form) + payload_len
}

fn put_header<B: BufMut>(buf: &mut B, size: usize, frame_type: u8, channel: u16) {
    buf.put_u32(size as u32);
    buf.put_slice(&[2, frame_type]);
    buf.put_u16(channel);
}

/// Writes an AMQP frame: header, performative, payload.
pub fn encode_amqp_frame<B: BufMut>(
    buf: &mut B,
    channel: u16,
    performative: &Performative,
    payload: &[u8],
    form: Form,
) {
    put_header(
        buf,
        amqp_frame_len(performative, payload.len(), form),
        FRAME_TYPE_AMQP,
        channel,
    );
    performative.encode_as(form, buf);
    buf.put_slice(payload);
}

/// Writes a SASL frame.
pub fn encode_sasl_frame<B: BufMut>(buf: &mut B, body: &SaslFrame, form: Form) {
    put_header(
        buf,
        FRAME_HEADER_LEN + body.encoded_len_as(form),
        FRAME_TYPE_SASL,
        0,
    );
    body.encode_as(form, buf);
}

/// The empty frame sent as a heartbeat (2.4.5).
pub const EMPTY_FRAME: [u8; 8] = [0, 0, 0, 8, 2, 0, 0, 0];
