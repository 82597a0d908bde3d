//! Invariant checks shared by the fuzz targets.
//!
//! The invariant is byte stability of the encoder over whatever the decoder
//! accepts: for a decoded `x` and each [`Form`], `encode(x)` is exactly
//! `encoded_len(x)` bytes, those bytes decode again, and re-encoding that
//! decoding gives the same bytes. Comparing bytes rather than values keeps
//! the check meaningful for NaN floats, which are never `==` themselves.
//! Any violation panics, which libFuzzer reports as a crash.

use bytes::{Bytes, BytesMut};
use eventhubs_proto::codec::frame::{
    amqp_frame_len, encode_amqp_frame, encode_sasl_frame, split_frame, Frame, ProtocolHeader,
    FRAME_HEADER_LEN,
};
use eventhubs_proto::codec::message::Message;
use eventhubs_proto::codec::performatives::Performative;
use eventhubs_proto::codec::{Decode, Encode, Form};

/// Both layouts of composite types.
pub const FORMS: [Form; 2] = [Form::Compact, Form::Full];

/// Largest frame the stream target accepts.
pub const MAX_FRAME_SIZE: u32 = 64 * 1024;

/// Encodes `x` in `form`, checking that `encoded_len_as` is exact.
pub fn encode<T: Encode + std::fmt::Debug>(x: &T, form: Form) -> Vec<u8> {
    let n = x.encoded_len_as(form);
    let mut v = Vec::with_capacity(n);
    x.encode_as(form, &mut v);
    assert_eq!(
        v.len(),
        n,
        "encoded_len_as({form:?}) = {n} but encode_as wrote {} bytes for {x:?}",
        v.len()
    );
    v
}

/// Checks `encode(decode(encode(x))) == encode(x)` in both forms.
pub fn check_roundtrip<T: Encode + Decode + std::fmt::Debug>(x: &T) {
    for form in FORMS {
        let b1 = Bytes::from(encode(x, form));
        let y = T::decode_all(&b1).unwrap_or_else(|e| {
            panic!("{form:?} encoding does not decode: {e}\nvalue {x:?}\nbytes {b1:02x?}")
        });
        let b2 = encode(&y, form);
        assert_eq!(
            &b1[..],
            &b2[..],
            "{form:?} re-encoding differs\nfirst  {x:?}\nsecond {y:?}"
        );
    }
}

/// Decodes `bytes` as a message; when it decodes, checks the round trip of
/// the message and of every inner message of it read as a batch.
pub fn check_message(bytes: &Bytes) {
    check_event_decode(bytes);
    let Ok(m) = Message::decode_all(bytes) else {
        return;
    };
    check_roundtrip(&m);
    if let Ok(sections) = m.batch_sections() {
        sections.iter().for_each(check_event_decode);
    }
    if let Ok(inner) = m.unbatch() {
        for m in &inner {
            check_roundtrip(m);
        }
    }
}

/// A received event decoded straight from `bytes` is the event that
/// decoding the message and mapping it gives, or both fail.
fn check_event_decode(bytes: &Bytes) {
    use eventhubs_proto::client::ReceivedEvent;
    let direct = ReceivedEvent::decode("0", bytes).ok();
    let mapped = Message::decode_all(bytes)
        .ok()
        .and_then(|m| ReceivedEvent::from_message("0", m).ok());
    // Compared as printed: a NaN in an annotation is unequal to itself.
    assert_eq!(
        format!("{direct:?}"),
        format!("{mapped:?}"),
        "direct decode and decode + map differ"
    );
}

/// Encodes a frame in `form`, checking the length the header declares and
/// the length helpers against the bytes written.
pub fn encode_frame(f: &Frame, form: Form) -> Vec<u8> {
    let mut v = Vec::new();
    let expected = match f {
        Frame::Empty { channel } => {
            v.extend_from_slice(&[0, 0, 0, 8, 2, 0]);
            v.extend_from_slice(&channel.to_be_bytes());
            FRAME_HEADER_LEN
        }
        Frame::Amqp {
            channel,
            performative,
            payload,
        } => {
            encode_amqp_frame(&mut v, *channel, performative, payload, form);
            amqp_frame_len(performative, payload.len(), form)
        }
        Frame::Sasl(body) => {
            encode_sasl_frame(&mut v, body, form);
            FRAME_HEADER_LEN + body.encoded_len_as(form)
        }
    };
    assert_eq!(
        v.len(),
        expected,
        "{form:?} frame length {expected} but {} bytes written for {f:?}",
        v.len()
    );
    let declared = u32::from_be_bytes([v[0], v[1], v[2], v[3]]) as usize;
    assert_eq!(declared, v.len(), "frame header size is wrong for {f:?}");
    v
}

/// Checks that a decoded frame re-encodes to bytes that decode to a frame
/// re-encoding to the same bytes, in both forms.
pub fn check_frame(f: &Frame) {
    for form in FORMS {
        let b1 = Bytes::from(encode_frame(f, form));
        let g = Frame::decode(&b1).unwrap_or_else(|e| {
            panic!("{form:?} frame encoding does not decode: {e}\nframe {f:?}\nbytes {b1:02x?}")
        });
        let b2 = encode_frame(&g, form);
        assert_eq!(
            &b1[..],
            &b2[..],
            "{form:?} frame re-encoding differs\nfirst  {f:?}\nsecond {g:?}"
        );
    }
    // A transfer's payload is usually a whole message.
    if let Frame::Amqp {
        performative: Performative::Transfer(_),
        payload,
        ..
    } = f
    {
        check_message(payload);
    }
}

/// Reads `data` as a connection's byte stream: protocol headers wherever a
/// frame could start (a frame that starts with `A` would be larger than
/// [`MAX_FRAME_SIZE`], so this is unambiguous), and frames split off with
/// [`split_frame`] and decoded with [`Frame::decode`]. Stops at the first
/// framing error or incomplete frame.
pub fn check_stream(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    loop {
        if buf.first() == Some(&b'A') {
            match ProtocolHeader::parse(&buf) {
                Ok(Some(h)) => {
                    assert_eq!(&h.to_bytes()[..], &buf[..ProtocolHeader::LEN]);
                    let _ = buf.split_to(ProtocolHeader::LEN);
                    continue;
                }
                Ok(None) | Err(_) => return,
            }
        }
        let frame = match split_frame(&mut buf, MAX_FRAME_SIZE) {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(_) => return,
        };
        assert!(frame.len() >= FRAME_HEADER_LEN && frame.len() <= MAX_FRAME_SIZE as usize);
        assert_eq!(
            u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize,
            frame.len()
        );
        if let Ok(f) = Frame::decode(&frame) {
            check_frame(&f);
        }
    }
}

pub use eventhubs_testkit::client_input;
pub mod engine_server;
pub mod http_response;
pub mod management_request;
