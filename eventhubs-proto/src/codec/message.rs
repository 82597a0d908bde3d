//! The AMQP message (3.2) as a whole, and Event Hubs batch messages.

use bytes::{BufMut, Bytes};

use super::composite::{descriptor_len, put_descriptor};
use super::decode::{Decode, Decoder};
use super::encode::{variable_len, Encode, Form};
use super::error::{DecodeError, DecodeErrorKind};
use super::format_code as fc;
use super::messaging::{
    described_code, put_section, section_code as sc, section_len, Annotations,
    ApplicationProperties, Header, Properties,
};
use super::value::Value;
use super::Descriptor;

/// Message format of an Event Hubs batch: one `data` section per encoded
/// inner message.
pub const BATCH_MESSAGE_FORMAT: u32 = 0x8001_3700;

/// The body of a message: data sections, amqp-sequence sections, or one
/// amqp-value section.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Body {
    /// No body section.
    #[default]
    Empty,
    /// 3.2.6 one or more data sections (opaque binary; Event Hubs events).
    Data(Vec<Bytes>),
    /// 3.2.7 one or more amqp-sequence sections.
    Sequence(Vec<Vec<Value>>),
    /// 3.2.8 a single amqp-value section.
    Value(Value),
}

/// An annotated AMQP message (3.2): header, annotations, properties,
/// application properties, body and footer. Body bytes decoded from a
/// buffer share it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Message {
    /// 3.2.1 header.
    pub header: Option<Header>,
    /// 3.2.2 delivery-annotations.
    pub delivery_annotations: Option<Annotations>,
    /// 3.2.3 message-annotations.
    pub message_annotations: Option<Annotations>,
    /// 3.2.4 properties.
    pub properties: Option<Properties>,
    /// 3.2.5 application-properties.
    pub application_properties: Option<ApplicationProperties>,
    /// The body sections.
    pub body: Body,
    /// 3.2.9 footer.
    pub footer: Option<Annotations>,
}

impl Message {
    /// A message with a single data section.
    pub fn with_data(data: impl Into<Bytes>) -> Self {
        Message {
            body: Body::Data(vec![data.into()]),
            ..Default::default()
        }
    }

    /// A message with an amqp-value body.
    pub fn with_value(value: Value) -> Self {
        Message {
            body: Body::Value(value),
            ..Default::default()
        }
    }

    fn head_len(&self, f: Form) -> usize {
        self.header.as_ref().map_or(0, |h| h.encoded_len_as(f))
            + self
                .delivery_annotations
                .as_ref()
                .map_or(0, |a| section_len(sc::DELIVERY_ANNOTATIONS, a))
            + self
                .message_annotations
                .as_ref()
                .map_or(0, |a| section_len(sc::MESSAGE_ANNOTATIONS, a))
            + self.properties.as_ref().map_or(0, |p| p.encoded_len_as(f))
            + self
                .application_properties
                .as_ref()
                .map_or(0, |a| section_len(sc::APPLICATION_PROPERTIES, a))
    }

    fn put_head<B: BufMut>(&self, f: Form, buf: &mut B) {
        if let Some(h) = &self.header {
            h.encode_as(f, buf);
        }
        if let Some(a) = &self.delivery_annotations {
            put_section(sc::DELIVERY_ANNOTATIONS, a, buf);
        }
        if let Some(a) = &self.message_annotations {
            put_section(sc::MESSAGE_ANNOTATIONS, a, buf);
        }
        if let Some(p) = &self.properties {
            p.encode_as(f, buf);
        }
        if let Some(a) = &self.application_properties {
            put_section(sc::APPLICATION_PROPERTIES, a, buf);
        }
    }

    fn body_len(&self) -> usize {
        match &self.body {
            Body::Empty => 0,
            Body::Data(d) => d.iter().map(|b| section_len(sc::DATA, b)).sum(),
            Body::Sequence(s) => s.iter().map(|l| section_len(sc::AMQP_SEQUENCE, l)).sum(),
            Body::Value(v) => section_len(sc::AMQP_VALUE, v),
        }
    }

    fn put_body<B: BufMut>(&self, buf: &mut B) {
        match &self.body {
            Body::Empty => {}
            Body::Data(d) => d.iter().for_each(|b| put_section(sc::DATA, b, buf)),
            Body::Sequence(s) => s
                .iter()
                .for_each(|l| put_section(sc::AMQP_SEQUENCE, l, buf)),
            Body::Value(v) => put_section(sc::AMQP_VALUE, v, buf),
        }
    }

    fn footer_len(&self) -> usize {
        self.footer
            .as_ref()
            .map_or(0, |a| section_len(sc::FOOTER, a))
    }

    fn put_footer<B: BufMut>(&self, buf: &mut B) {
        if let Some(a) = &self.footer {
            put_section(sc::FOOTER, a, buf);
        }
    }

    /// Decodes the inner messages of an Event Hubs batch (message format
    /// [`BATCH_MESSAGE_FORMAT`]): each data section is one encoded message.
    /// The inner messages share this message's buffer.
    pub fn unbatch(&self) -> Result<Vec<Message>, DecodeError> {
        let sections = self.batch_sections()?;
        // Sized once: a message is several hundred bytes, and growing the
        // vector by doubling would copy each one again.
        let mut events = Vec::with_capacity(sections.len());
        for s in sections {
            // Decoded where it is stored: returning then pushing a message
            // copied it twice.
            events.push(Message::default());
            let m = events.last_mut().expect("just pushed");
            let mut d = Decoder::new(s);
            decode_sections(&mut d, m)?;
            d.finish()?;
        }
        Ok(events)
    }

    /// The encoded events of an Event Hubs batch: its data sections, or an
    /// error when its body is of another kind.
    pub fn batch_sections(&self) -> Result<&[Bytes], DecodeError> {
        match &self.body {
            Body::Data(sections) => Ok(sections),
            _ => Err(DecodeError {
                offset: 0,
                kind: DecodeErrorKind::UnexpectedDescriptor {
                    expected: "batch of data sections",
                    found: "non-data body".into(),
                },
            }),
        }
    }
}

impl Encode for Message {
    fn encoded_len_as(&self, f: Form) -> usize {
        self.head_len(f) + self.body_len() + self.footer_len()
    }

    fn encode_as<B: BufMut>(&self, f: Form, buf: &mut B) {
        self.put_head(f, buf);
        self.put_body(buf);
        self.put_footer(buf);
    }
}

impl Decode for Message {
    /// Reads sections until the input ends. Sections must come in the order
    /// of 3.2; only data and amqp-sequence may repeat, and a body is of one
    /// kind.
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let mut m = Message::default();
        decode_sections(d, &mut m)?;
        Ok(m)
    }

    /// As the default, but the message is built where it is returned from:
    /// going through [`Message::decode`] moved its 560 bytes once more.
    fn decode_all(bytes: &Bytes) -> Result<Self, DecodeError> {
        let mut m = Message::default();
        let mut d = Decoder::new(bytes);
        decode_sections(&mut d, &mut m)?;
        d.finish()?;
        Ok(m)
    }
}

/// What [`decode_sections`] hands each section to, its descriptor read:
/// `section` decodes the section's value from `d`. The order and
/// repetition rules of 3.2 are checked once, in [`decode_sections`],
/// whatever a sink keeps of the sections.
pub(crate) trait Sections {
    /// Decodes the section with descriptor code `code` (one of
    /// [`section_code`](sc)).
    fn section(&mut self, code: u64, d: &mut Decoder<'_>) -> Result<(), DecodeError>;
}

impl Sections for Message {
    fn section(&mut self, code: u64, d: &mut Decoder<'_>) -> Result<(), DecodeError> {
        let m = self;
        match code {
            sc::HEADER => m.header = Some(Header::decode_fields(d)?),
            sc::DELIVERY_ANNOTATIONS => m.delivery_annotations = Some(Annotations::decode(d)?),
            sc::MESSAGE_ANNOTATIONS => m.message_annotations = Some(Annotations::decode(d)?),
            sc::PROPERTIES => m.properties = Some(Properties::decode_fields(d)?),
            sc::APPLICATION_PROPERTIES => {
                m.application_properties = Some(ApplicationProperties::decode(d)?)
            }
            sc::DATA => {
                let b = Bytes::decode(d)?;
                match &mut m.body {
                    Body::Data(v) => v.push(b),
                    body => *body = Body::Data(vec![b]),
                }
            }
            sc::AMQP_SEQUENCE => {
                let l = Vec::<Value>::decode(d)?;
                match &mut m.body {
                    Body::Sequence(v) => v.push(l),
                    body => *body = Body::Sequence(vec![l]),
                }
            }
            sc::AMQP_VALUE => m.body = Body::Value(Value::decode(d)?),
            _ => m.footer = Some(Annotations::decode(d)?),
        }
        Ok(())
    }
}

/// Reads the sections of a message until the input ends, handing each to
/// `sink` ([`Message::decode`] is this with a message as the sink).
pub(crate) fn decode_sections<S: Sections>(
    d: &mut Decoder<'_>,
    sink: &mut S,
) -> Result<(), DecodeError> {
    let mut last = 0u64;
    while !d.is_empty() {
        let at = d.offset();
        let code = described_code(d, "message section", sc::from_symbol)?;
        let repeatable = matches!(code, sc::DATA | sc::AMQP_SEQUENCE) && code == last;
        let body_clash = (sc::DATA..=sc::AMQP_VALUE).contains(&code)
            && (sc::DATA..=sc::AMQP_VALUE).contains(&last)
            && code != last;
        if !(sc::HEADER..=sc::FOOTER).contains(&code) || (code <= last && !repeatable) || body_clash
        {
            return Err(d.err_at(
                at,
                DecodeErrorKind::UnexpectedDescriptor {
                    expected: "message section in order",
                    found: Descriptor::Code(code).to_string(),
                },
            ));
        }
        d.descend(|d| sink.section(code, d))?;
        last = code;
    }
    Ok(())
}

/// An Event Hubs batch ready to encode without intermediate buffers: the
/// envelope's sections other than its body, then each event as one data
/// section, then the envelope's footer. Send it with message format
/// [`BATCH_MESSAGE_FORMAT`].
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    /// Header, annotations and properties of the outer message; its body is
    /// ignored.
    pub envelope: &'a Message,
    /// The events, each encoded as a complete message in its own data
    /// section.
    pub events: &'a [Message],
}

/// Encoded length of `event` once wrapped in a data section of a batch.
pub fn batch_section_len(event: &Message, f: Form) -> usize {
    descriptor_len(sc::DATA) + variable_len(event.encoded_len_as(f))
}

impl Encode for Batch<'_> {
    fn encoded_len_as(&self, f: Form) -> usize {
        self.envelope.head_len(f)
            + self
                .events
                .iter()
                .map(|e| batch_section_len(e, f))
                .sum::<usize>()
            + self.envelope.footer_len()
    }

    fn encode_as<B: BufMut>(&self, f: Form, buf: &mut B) {
        self.envelope.put_head(f, buf);
        for e in self.events {
            let n = e.encoded_len_as(f);
            put_descriptor(buf, sc::DATA);
            if n <= 255 {
                buf.put_slice(&[fc::VBIN8, n as u8]);
            } else {
                buf.put_u8(fc::VBIN32);
                buf.put_u32(n as u32);
            }
            e.encode_as(f, buf);
        }
        self.envelope.put_footer(buf);
    }
}
