//! Receiver start positions as selector filters: the
//! `apache.org:selector-filter:string` source filter the Event Hubs service
//! reads (`amqp.annotation.x-opt-offset > '…'`, sequence numbers, enqueued
//! times), as the Azure SDKs send it.
//!
//! A receiver attaches with `source.filter` holding one entry: key symbol
//! `apache.org:selector-filter:string`, value a described string whose
//! descriptor is ulong `0x0000468C00000004` and whose text is an SQL-like
//! expression such as `amqp.annotation.x-opt-offset > '-1'`. This module
//! writes the expression the way Go, JS and Python do (quoted values, `>`
//! exclusive, `>=` inclusive, enqueued time in ms since the epoch) and
//! parses every form the SDKs send back into an [`EventPosition`] (the
//! emulator needs that), including .NET's unquoted values and its
//! Microsoft descriptor `0x000001370000000A` or Python's symbolic one.

use bytestring::ByteString;
use std::fmt;
use std::str::FromStr;

use crate::codec::performatives::Fields;
use crate::codec::{Described, Descriptor, Symbol, Timestamp, Value};

/// Key of the selector entry in `source.filter`, and Python's descriptor.
pub const SELECTOR_FILTER_NAME: &str = "apache.org:selector-filter:string";

/// The selector filter's descriptor code (Apache; Go and JS send it).
pub const SELECTOR_FILTER_CODE: u64 = 0x0000_468C_0000_0004;

/// The Microsoft descriptor code .NET sends (`AmqpFilter.ConsumerFilterCode`).
pub const MICROSOFT_SELECTOR_FILTER_CODE: u64 = 0x0000_0137_0000_000A;

/// Filter operand naming the offset annotation.
pub const OFFSET_OPERAND: &str = "amqp.annotation.x-opt-offset";

/// Filter operand naming the sequence-number annotation.
pub const SEQUENCE_NUMBER_OPERAND: &str = "amqp.annotation.x-opt-sequence-number";

/// Filter operand naming the enqueued-time annotation.
pub const ENQUEUED_TIME_OPERAND: &str = "amqp.annotation.x-opt-enqueued-time";

/// The offset meaning "before the first event".
pub const EARLIEST_OFFSET: &str = "-1";

/// The offset meaning "after the last event at attach time".
pub const LATEST_OFFSET: &str = "@latest";

/// Where a receiver starts reading a partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum EventPosition {
    /// From the first event retained: offset `-1`, exclusive.
    Earliest,
    /// Only events enqueued after the link attaches: offset `@latest`,
    /// exclusive. The Go `PartitionClient` default.
    #[default]
    Latest,
    /// From an offset, as received in `x-opt-offset` (a string: opaque on
    /// geo-replicated hubs).
    Offset {
        /// The offset.
        offset: String,
        /// Include the event at `offset` (`>=`) or start after it (`>`).
        inclusive: bool,
    },
    /// From a sequence number (`x-opt-sequence-number`).
    SequenceNumber {
        /// The sequence number.
        sequence_number: i64,
        /// Include the event with this number (`>=`) or start after it (`>`).
        inclusive: bool,
    },
    /// From an enqueue instant (`x-opt-enqueued-time`).
    EnqueuedTime {
        /// The instant, ms since the Unix epoch.
        enqueued_time: Timestamp,
        /// Include events enqueued exactly then (`>=`; Go and Python honour
        /// it, JS and .NET always send `>`).
        inclusive: bool,
    },
}

/// Why a selector expression or filter entry was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// The expression is empty or blank.
    #[error("the selector filter expression is empty")]
    Empty,
    /// The operand is not one of the three annotations a start position uses.
    #[error("selector filter operand {operand:?} is not amqp.annotation.x-opt-offset, -sequence-number or -enqueued-time")]
    UnknownOperand {
        /// The operand as written.
        operand: String,
    },
    /// No comparison operator after the operand.
    #[error("the selector filter has no '>' or '>=' after {operand}")]
    MissingOperator {
        /// The operand.
        operand: &'static str,
    },
    /// An operator other than `>` or `>=`.
    #[error(
        "selector filter operator {operator:?} is not supported; a start position uses '>' or '>='"
    )]
    UnsupportedOperator {
        /// The operator as written.
        operator: String,
    },
    /// Nothing after the operator.
    #[error("the selector filter has no value after the operator")]
    MissingValue,
    /// A quoted value without its closing quote.
    #[error("the selector filter's quoted value has no closing quote")]
    UnterminatedQuote,
    /// Text after the value (e.g. a second condition joined with AND).
    #[error("unexpected text {rest:?} after the selector filter's value")]
    TrailingInput {
        /// The unexpected text.
        rest: String,
    },
    /// A sequence number or enqueued time that is not a 64-bit integer.
    #[error("selector filter value {value:?} for {operand} is not a 64-bit integer")]
    InvalidNumber {
        /// The operand.
        operand: &'static str,
        /// The value as written.
        value: String,
    },
    /// The filter entry's value is not a described type.
    #[error("the selector filter entry is not a described value")]
    NotDescribed,
    /// The filter entry's descriptor is not a selector-filter descriptor.
    #[error("selector filter descriptor {descriptor} is not 0x0000468c:0x00000004, 0x00000137:0x0000000a or apache.org:selector-filter:string")]
    UnknownDescriptor {
        /// The descriptor given.
        descriptor: String,
    },
    /// The described value is not a string.
    #[error("the selector filter's described value is not a string")]
    NotAString,
}

/// The three operands, with their canonical spelling.
#[derive(Clone, Copy)]
enum FilterField {
    Offset,
    SequenceNumber,
    EnqueuedTime,
}

impl FilterField {
    fn name(self) -> &'static str {
        match self {
            FilterField::Offset => OFFSET_OPERAND,
            FilterField::SequenceNumber => SEQUENCE_NUMBER_OPERAND,
            FilterField::EnqueuedTime => ENQUEUED_TIME_OPERAND,
        }
    }
}

impl EventPosition {
    /// Start at `offset`, including it or not.
    pub fn offset(offset: impl Into<String>, inclusive: bool) -> Self {
        EventPosition::Offset {
            offset: offset.into(),
            inclusive,
        }
    }

    /// Start at `sequence_number`, including it or not. Reconnecting
    /// receivers use `sequence_number(last_received, false)`.
    pub fn sequence_number(sequence_number: i64, inclusive: bool) -> Self {
        EventPosition::SequenceNumber {
            sequence_number,
            inclusive,
        }
    }

    /// Start at events enqueued after (or at, if inclusive) `enqueued_time`.
    pub fn enqueued_time(enqueued_time: Timestamp, inclusive: bool) -> Self {
        EventPosition::EnqueuedTime {
            enqueued_time,
            inclusive,
        }
    }

    /// The selector expression, as Go, JS and Python write it, e.g.
    /// `amqp.annotation.x-opt-sequence-number >= '42'`. A `'` inside an
    /// offset is doubled (SQL quoting), so the expression always parses.
    pub fn selector_expression(&self) -> String {
        let op = |inclusive: bool| if inclusive { ">=" } else { ">" };
        match self {
            EventPosition::Earliest => format!("{OFFSET_OPERAND} > '{EARLIEST_OFFSET}'"),
            EventPosition::Latest => format!("{OFFSET_OPERAND} > '{LATEST_OFFSET}'"),
            EventPosition::Offset { offset, inclusive } => format!(
                "{OFFSET_OPERAND} {} '{}'",
                op(*inclusive),
                offset.replace('\'', "''")
            ),
            EventPosition::SequenceNumber {
                sequence_number,
                inclusive,
            } => format!(
                "{SEQUENCE_NUMBER_OPERAND} {} '{sequence_number}'",
                op(*inclusive)
            ),
            EventPosition::EnqueuedTime {
                enqueued_time,
                inclusive,
            } => format!(
                "{ENQUEUED_TIME_OPERAND} {} '{}'",
                op(*inclusive),
                enqueued_time.millis()
            ),
        }
    }

    /// The filter entry's value: the expression as a string described by
    /// [`SELECTOR_FILTER_CODE`].
    pub fn filter_value(&self) -> Value {
        Value::Described(Box::new(Described::new(
            Descriptor::Code(SELECTOR_FILTER_CODE),
            Value::String(ByteString::from(self.selector_expression())),
        )))
    }

    /// The `source.filter` entry: `(apache.org:selector-filter:string, value)`.
    pub fn filter_entry(&self) -> (Symbol, Value) {
        (
            Symbol::from_static(SELECTOR_FILTER_NAME),
            self.filter_value(),
        )
    }

    /// A `source.filter` map holding only this position's entry.
    pub fn filter_set(&self) -> Fields {
        let (key, value) = self.filter_entry();
        let mut map = Fields::new();
        map.insert(key, value);
        map
    }

    /// Parses a selector expression in any form the SDKs send:
    /// `<operand> <op> <value>` with `<op>` `>` or `>=`, the value quoted
    /// (`'…'`, `''` standing for a quote) or bare, whitespace optional
    /// around the operator. Operands match case-insensitively. Offsets `-1`
    /// and `@latest` read as [`EventPosition::Earliest`] and
    /// [`EventPosition::Latest`] whatever the operator (Go sends `>=` for an
    /// inclusive Latest).
    pub fn parse_expression(expression: &str) -> Result<Self, FilterError> {
        let s = expression.trim();
        if s.is_empty() {
            return Err(FilterError::Empty);
        }
        let (operand, rest) = split_operand(s)?;
        let (inclusive, rest) = split_operator(operand, rest)?;
        let value = parse_value(rest)?;
        let number = |value: &str| {
            value
                .parse::<i64>()
                .map_err(|_| FilterError::InvalidNumber {
                    operand: operand.name(),
                    value: value.to_owned(),
                })
        };
        Ok(match operand {
            FilterField::Offset if value == EARLIEST_OFFSET => EventPosition::Earliest,
            FilterField::Offset if value == LATEST_OFFSET => EventPosition::Latest,
            FilterField::Offset => EventPosition::Offset {
                offset: value,
                inclusive,
            },
            FilterField::SequenceNumber => EventPosition::SequenceNumber {
                sequence_number: number(&value)?,
                inclusive,
            },
            FilterField::EnqueuedTime => EventPosition::EnqueuedTime {
                enqueued_time: Timestamp(number(&value)?),
                inclusive,
            },
        })
    }

    /// Reads a filter entry's value: a described string under any of the
    /// three descriptors the SDKs use.
    pub fn from_filter_value(value: &Value) -> Result<Self, FilterError> {
        let Value::Described(described) = value else {
            return Err(FilterError::NotDescribed);
        };
        let known = match &described.descriptor {
            Descriptor::Code(code) => {
                *code == SELECTOR_FILTER_CODE || *code == MICROSOFT_SELECTOR_FILTER_CODE
            }
            Descriptor::Symbol(name) => name.as_str() == SELECTOR_FILTER_NAME,
        };
        if !known {
            return Err(FilterError::UnknownDescriptor {
                descriptor: described.descriptor.to_string(),
            });
        }
        let Value::String(expression) = &described.value else {
            return Err(FilterError::NotAString);
        };
        Self::parse_expression(expression)
    }

    /// Finds the selector entry in a `source.filter` map and parses it;
    /// `Ok(None)` when there is none (the receiver then starts at the
    /// service's default).
    pub fn from_filter_set(filter: &Fields) -> Result<Option<Self>, FilterError> {
        filter
            .iter()
            .find(|(key, _)| key.as_str() == SELECTOR_FILTER_NAME)
            .map(|(_, value)| Self::from_filter_value(value))
            .transpose()
    }
}

/// The operand at the start of `s` (case-insensitive), and the rest.
fn split_operand(s: &str) -> Result<(FilterField, &str), FilterError> {
    let end = s
        .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '=' | '!'))
        .unwrap_or(s.len());
    let (text, rest) = s.split_at(end);
    let operand = [
        FilterField::Offset,
        FilterField::SequenceNumber,
        FilterField::EnqueuedTime,
    ]
    .into_iter()
    .find(|o| o.name().eq_ignore_ascii_case(text))
    .ok_or_else(|| FilterError::UnknownOperand {
        operand: text.to_owned(),
    })?;
    Ok((operand, rest))
}

/// The operator after the operand: `>` (exclusive) or `>=` (inclusive),
/// and the rest.
fn split_operator(operand: FilterField, rest: &str) -> Result<(bool, &str), FilterError> {
    let rest = rest.trim_start();
    let end = rest
        .find(|c: char| !matches!(c, '<' | '>' | '=' | '!'))
        .unwrap_or(rest.len());
    let (op, rest) = rest.split_at(end);
    let inclusive = match op {
        ">" => false,
        ">=" => true,
        "" => {
            return Err(FilterError::MissingOperator {
                operand: operand.name(),
            })
        }
        other => {
            return Err(FilterError::UnsupportedOperator {
                operator: other.to_owned(),
            })
        }
    };
    Ok((inclusive, rest))
}

/// The value after the operator, quoted or bare, with nothing after it.
fn parse_value(rest: &str) -> Result<String, FilterError> {
    let rest = rest.trim_start();
    if rest.is_empty() {
        return Err(FilterError::MissingValue);
    }
    let (value, rest) = if let Some(quoted) = rest.strip_prefix('\'') {
        parse_quoted(quoted)?
    } else {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (v, r) = rest.split_at(end);
        (v.to_owned(), r)
    };
    if !rest.trim().is_empty() {
        return Err(FilterError::TrailingInput {
            rest: rest.trim().to_owned(),
        });
    }
    Ok(value)
}

/// Reads a quoted value after its opening quote: up to the next lone `'`,
/// with `''` standing for one quote. Returns the value and the rest.
fn parse_quoted(s: &str) -> Result<(String, &str), FilterError> {
    let mut value = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            if let Some(&(_, '\'')) = chars.peek() {
                value.push('\'');
                chars.next();
            } else {
                return Ok((value, &s[i + 1..]));
            }
        } else {
            value.push(c);
        }
    }
    Err(FilterError::UnterminatedQuote)
}

impl fmt::Display for EventPosition {
    /// The selector expression.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.selector_expression())
    }
}

impl FromStr for EventPosition {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_expression(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<EventPosition, FilterError> {
        EventPosition::parse_expression(s)
    }

    #[test]
    fn expressions_as_the_sdks_write_them() {
        use EventPosition as P;
        let cases = [
            (P::Earliest, "amqp.annotation.x-opt-offset > '-1'"),
            (P::Latest, "amqp.annotation.x-opt-offset > '@latest'"),
            (
                P::offset("12345", false),
                "amqp.annotation.x-opt-offset > '12345'",
            ),
            (
                P::offset("12345", true),
                "amqp.annotation.x-opt-offset >= '12345'",
            ),
            (
                P::sequence_number(42, false),
                "amqp.annotation.x-opt-sequence-number > '42'",
            ),
            (
                P::sequence_number(42, true),
                "amqp.annotation.x-opt-sequence-number >= '42'",
            ),
            (
                P::sequence_number(-1, false),
                "amqp.annotation.x-opt-sequence-number > '-1'",
            ),
            (
                P::enqueued_time(Timestamp(1_700_000_000_123), false),
                "amqp.annotation.x-opt-enqueued-time > '1700000000123'",
            ),
            (
                P::enqueued_time(Timestamp(1_700_000_000_123), true),
                "amqp.annotation.x-opt-enqueued-time >= '1700000000123'",
            ),
        ];
        for (position, expression) in cases {
            assert_eq!(position.selector_expression(), expression);
            assert_eq!(position.to_string(), expression);
            assert_eq!(parse(expression), Ok(position.clone()), "{expression}");
            assert_eq!(expression.parse::<EventPosition>(), Ok(position));
        }
    }

    #[test]
    fn dotnet_unquoted_forms() {
        assert_eq!(
            parse("amqp.annotation.x-opt-offset > 12345"),
            Ok(EventPosition::offset("12345", false))
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-offset >= 12345"),
            Ok(EventPosition::offset("12345", true))
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-offset > -1"),
            Ok(EventPosition::Earliest)
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-offset > @latest"),
            Ok(EventPosition::Latest)
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-sequence-number >= 7"),
            Ok(EventPosition::sequence_number(7, true))
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-enqueued-time > 1700000000123"),
            Ok(EventPosition::enqueued_time(
                Timestamp(1_700_000_000_123),
                false
            ))
        );
    }

    #[test]
    fn earliest_and_latest_whatever_the_operator() {
        assert_eq!(
            parse("amqp.annotation.x-opt-offset >= '@latest'"),
            Ok(EventPosition::Latest)
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-offset >= '-1'"),
            Ok(EventPosition::Earliest)
        );
    }

    #[test]
    fn lenient_whitespace_and_case() {
        assert_eq!(
            parse("  amqp.annotation.x-opt-sequence-number>='5'  "),
            Ok(EventPosition::sequence_number(5, true))
        );
        assert_eq!(
            parse("AMQP.ANNOTATION.X-OPT-OFFSET\t>\t'9'"),
            Ok(EventPosition::offset("9", false))
        );
    }

    #[test]
    fn opaque_offsets_and_quotes() {
        let p = EventPosition::offset("geo:1:2:3", false);
        assert_eq!(parse(&p.selector_expression()), Ok(p));
        let p = EventPosition::offset("it's", true);
        assert_eq!(
            p.selector_expression(),
            "amqp.annotation.x-opt-offset >= 'it''s'"
        );
        assert_eq!(parse(&p.selector_expression()), Ok(p));
        let p = EventPosition::offset("with space", false);
        assert_eq!(parse(&p.selector_expression()), Ok(p));
        assert_eq!(
            parse("amqp.annotation.x-opt-offset > ''"),
            Ok(EventPosition::offset("", false))
        );
    }

    #[test]
    fn errors() {
        use FilterError as E;
        assert_eq!(parse(""), Err(E::Empty));
        assert_eq!(parse("   "), Err(E::Empty));
        assert_eq!(
            parse("amqp.annotation.x-opt-partition-key > 'a'"),
            Err(E::UnknownOperand {
                operand: "amqp.annotation.x-opt-partition-key".into()
            })
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-offset"),
            Err(E::MissingOperator {
                operand: OFFSET_OPERAND
            })
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-offset '5'"),
            Err(E::MissingOperator {
                operand: OFFSET_OPERAND
            })
        );
        for op in ["<", "<=", "=", "<>", "!=", ">>", "=>"] {
            assert_eq!(
                parse(&format!("amqp.annotation.x-opt-offset {op} '5'")),
                Err(E::UnsupportedOperator {
                    operator: op.into()
                }),
                "{op}"
            );
        }
        assert_eq!(
            parse("amqp.annotation.x-opt-offset >"),
            Err(E::MissingValue)
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-offset > '5"),
            Err(E::UnterminatedQuote)
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-offset > '5' AND amqp.annotation.x-opt-offset < '9'"),
            Err(E::TrailingInput {
                rest: "AND amqp.annotation.x-opt-offset < '9'".into()
            })
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-offset > 5 6"),
            Err(E::TrailingInput { rest: "6".into() })
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-sequence-number > 'abc'"),
            Err(E::InvalidNumber {
                operand: SEQUENCE_NUMBER_OPERAND,
                value: "abc".into()
            })
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-enqueued-time > '99999999999999999999'"),
            Err(E::InvalidNumber {
                operand: ENQUEUED_TIME_OPERAND,
                value: "99999999999999999999".into()
            })
        );
        assert_eq!(
            parse("amqp.annotation.x-opt-enqueued-time > '2024-01-01T00:00:00Z'"),
            Err(E::InvalidNumber {
                operand: ENQUEUED_TIME_OPERAND,
                value: "2024-01-01T00:00:00Z".into()
            })
        );
    }

    #[test]
    fn filter_entry_shape() {
        let p = EventPosition::sequence_number(10, false);
        let (key, value) = p.filter_entry();
        assert_eq!(key.as_str(), "apache.org:selector-filter:string");
        match &value {
            Value::Described(d) => {
                assert_eq!(d.descriptor, Descriptor::Code(0x0000_468C_0000_0004));
                assert_eq!(
                    d.value,
                    Value::String("amqp.annotation.x-opt-sequence-number > '10'".into())
                );
            }
            other => panic!("not described: {other:?}"),
        }
        let set = p.filter_set();
        assert_eq!(set.len(), 1);
        assert_eq!(EventPosition::from_filter_set(&set), Ok(Some(p)));
        assert_eq!(EventPosition::from_filter_set(&Fields::new()), Ok(None));
    }

    #[test]
    fn filter_entry_descriptors_from_every_sdk() {
        let expr = || Value::String("amqp.annotation.x-opt-offset > 5".into());
        for descriptor in [
            Descriptor::Code(SELECTOR_FILTER_CODE),
            Descriptor::Code(MICROSOFT_SELECTOR_FILTER_CODE),
            Descriptor::Symbol(Symbol::from_static(SELECTOR_FILTER_NAME)),
        ] {
            let v = Value::Described(Box::new(Described::new(descriptor, expr())));
            assert_eq!(
                EventPosition::from_filter_value(&v),
                Ok(EventPosition::offset("5", false))
            );
        }
        assert_eq!(
            EventPosition::from_filter_value(&expr()),
            Err(FilterError::NotDescribed)
        );
        let v = Value::Described(Box::new(Described::new(Descriptor::Code(0x1234), expr())));
        assert!(matches!(
            EventPosition::from_filter_value(&v),
            Err(FilterError::UnknownDescriptor { .. })
        ));
        let v = Value::Described(Box::new(Described::new(
            Descriptor::Code(SELECTOR_FILTER_CODE),
            Value::Symbol(Symbol::from_static("amqp.annotation.x-opt-offset > 5")),
        )));
        assert_eq!(
            EventPosition::from_filter_value(&v),
            Err(FilterError::NotAString)
        );
        // Other filters in the set are ignored.
        let mut set = Fields::new();
        set.insert(Symbol::from_static("other"), Value::Null);
        let (k, v) = EventPosition::Earliest.filter_entry();
        set.insert(k, v);
        assert_eq!(
            EventPosition::from_filter_set(&set),
            Ok(Some(EventPosition::Earliest))
        );
    }

    #[test]
    fn default_is_latest() {
        assert_eq!(EventPosition::default(), EventPosition::Latest);
    }
}
