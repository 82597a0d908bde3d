//! Request/response messages of the `$cbs` and `$management` nodes
//! (the AMQP claims-based security draft's `put-token`, and the service's
//! management `READ` of `com.microsoft:eventhub` and
//! `com.microsoft:partition`): building requests, reading responses.

use bytestring::ByteString;

use crate::codec::message::{Body, Message};
use crate::codec::messaging::{ApplicationProperties, MessageId, Properties};
use crate::codec::{Symbol, Timestamp, Value};
use crate::eventhubs::sas::Token;

/// Type of a hub information request.
pub const EVENTHUB_TYPE: &str = "com.microsoft:eventhub";
/// Type of a partition information request.
pub const PARTITION_TYPE: &str = "com.microsoft:partition";

/// Status of an RPC response: `status-code` (or `statusCode`),
/// description and optional `error-condition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcStatus {
    /// HTTP-like status; 2xx is success.
    pub code: i32,
    /// `status-description`.
    pub description: Option<String>,
    /// `error-condition`, when the service gave one.
    pub condition: Option<Symbol>,
}

impl RpcStatus {
    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// The failed status as an error, with the condition its code implies
    /// when the service gave none.
    pub fn into_error(self) -> super::ClientError {
        super::ClientError::status(self.code, self.description, self.condition)
    }
}

fn props(pairs: &[(&str, Value)]) -> ApplicationProperties {
    pairs
        .iter()
        .map(|(k, v)| (ByteString::from(*k), v.clone()))
        .collect()
}

fn request(message_id: &str, reply_to: &str, app: ApplicationProperties, body: Value) -> Message {
    Message {
        properties: Some(Properties {
            message_id: Some(MessageId::String(message_id.into())),
            reply_to: Some(reply_to.into()),
            ..Default::default()
        }),
        application_properties: Some(app),
        body: Body::Value(body),
        ..Default::default()
    }
}

/// A CBS `put-token` request for `audience`.
pub fn put_token_request(
    message_id: &str,
    reply_to: &str,
    audience: &str,
    token: &Token,
) -> Message {
    let token_type = token.token_type.cbs_type();
    let mut pairs = vec![
        ("operation", Value::String("put-token".into())),
        ("type", Value::String(token_type.into())),
        ("name", Value::String(audience.into())),
    ];
    if token.expires_at_unix > 0 {
        let ms = i64::try_from(token.expires_at_unix.saturating_mul(1000)).unwrap_or(i64::MAX);
        pairs.push(("expiration", Value::Timestamp(Timestamp(ms))));
    }
    request(
        message_id,
        reply_to,
        props(&pairs),
        Value::String(token.token.as_str().into()),
    )
}

/// What to read from `$management`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ManagementRequest {
    /// Hub runtime information.
    Hub,
    /// Runtime information of one partition.
    Partition(String),
}

/// A `$management` READ request for `hub`, carrying `security_token`.
pub fn management_request(
    message_id: &str,
    reply_to: &str,
    hub: &str,
    what: &ManagementRequest,
    security_token: Option<&str>,
) -> Message {
    let mut pairs = vec![
        ("operation", Value::String("READ".into())),
        ("name", Value::String(hub.into())),
    ];
    match what {
        ManagementRequest::Hub => pairs.push(("type", Value::String(EVENTHUB_TYPE.into()))),
        ManagementRequest::Partition(p) => {
            pairs.push(("type", Value::String(PARTITION_TYPE.into())));
            pairs.push(("partition", Value::String(p.as_str().into())));
        }
    }
    if let Some(t) = security_token {
        pairs.push(("security_token", Value::String(t.into())));
    }
    request(message_id, reply_to, props(&pairs), Value::Null)
}

/// The correlation id of a response, as a string, to match it with its
/// request.
pub fn correlation_id(m: &Message) -> Option<String> {
    match m.properties.as_ref()?.correlation_id.as_ref()? {
        MessageId::String(s) => Some(s.to_string()),
        MessageId::Ulong(n) => Some(n.to_string()),
        MessageId::Uuid(u) => Some(format!("{u}")),
        MessageId::Binary(_) => None,
    }
}

/// Reads the status of a response. `None` when it has no status code.
pub fn response_status(m: &Message) -> Option<RpcStatus> {
    let app = m.application_properties.as_ref()?;
    let get = |a: &str, b: &str| app.get(a).or_else(|| app.get(b));
    let code = get("status-code", "statusCode")?.as_i64()?;
    let description = get("status-description", "statusDescription").and_then(|v| match v {
        Value::String(s) => Some(s.to_string()),
        Value::Symbol(s) => Some(s.as_str().to_owned()),
        _ => None,
    });
    let condition = app.get("error-condition").and_then(|v| match v {
        Value::Symbol(s) => Some(s.clone()),
        Value::String(s) => Symbol::new(s.clone()),
        _ => None,
    });
    Some(RpcStatus {
        code: i32::try_from(code).unwrap_or(i32::MAX),
        description,
        condition,
    })
}

/// Hub runtime information (azure-event-hubs-go's `HubRuntimeInformation`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HubRuntimeInformation {
    /// The hub name.
    pub path: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// Number of partitions.
    pub partition_count: usize,
    /// Partition ids, in order.
    pub partition_ids: Vec<String>,
    /// Above 1 when the hub is geo-replicated.
    pub georeplication_factor: i64,
}

/// Partition runtime information (azure-event-hubs-go's
/// `HubPartitionRuntimeInformation`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartitionRuntimeInformation {
    /// The hub name.
    pub hub_path: String,
    /// The partition id.
    pub partition_id: String,
    /// First sequence number still retained.
    pub begin_sequence_number: i64,
    /// Sequence number of the last enqueued event.
    pub last_sequence_number: i64,
    /// Offset of the last enqueued event.
    pub last_enqueued_offset: String,
    /// Enqueued time of the last event.
    pub last_enqueued_time_utc: Timestamp,
    /// True when the partition holds no event.
    pub is_empty: bool,
}

/// Why a management response could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The body is not a map.
    #[error("management response body is not a map")]
    NotAMap,
    /// A required field is missing or has the wrong type.
    #[error("management response field {0:?} is missing or malformed")]
    Field(&'static str),
}

struct Fields<'a>(&'a crate::codec::Map<Value, Value>);

impl<'a> Fields<'a> {
    fn of(m: &'a Message) -> Result<Self, ResponseError> {
        match &m.body {
            Body::Value(Value::Map(map)) => Ok(Fields(map)),
            _ => Err(ResponseError::NotAMap),
        }
    }
    fn get(&self, k: &str) -> Option<&'a Value> {
        self.0
            .iter()
            .find(|(key, _)| {
                matches!(key, Value::String(s) if s == k)
                    || matches!(key, Value::Symbol(s) if s.as_str() == k)
            })
            .map(|(_, v)| v)
    }
    fn string(&self, k: &'static str) -> Result<String, ResponseError> {
        match self.get(k) {
            Some(Value::String(s)) => Ok(s.to_string()),
            Some(v) => v
                .as_i64()
                .map(|n| n.to_string())
                .ok_or(ResponseError::Field(k)),
            None => Err(ResponseError::Field(k)),
        }
    }
    fn int(&self, k: &'static str) -> Result<i64, ResponseError> {
        self.get(k)
            .and_then(Value::as_i64)
            .ok_or(ResponseError::Field(k))
    }
    fn time(&self, k: &'static str) -> Result<Timestamp, ResponseError> {
        match self.get(k) {
            Some(Value::Timestamp(t)) => Ok(*t),
            Some(v) => v.as_i64().map(Timestamp).ok_or(ResponseError::Field(k)),
            None => Err(ResponseError::Field(k)),
        }
    }
}

/// Reads a `com.microsoft:eventhub` response.
pub fn parse_hub_information(m: &Message) -> Result<HubRuntimeInformation, ResponseError> {
    let f = Fields::of(m)?;
    let ids: Vec<String> = match f.get("partition_ids") {
        Some(Value::Array(a)) => a
            .items()
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>(),
        Some(Value::List(l)) => l
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>(),
        _ => None,
    }
    .ok_or(ResponseError::Field("partition_ids"))?;
    Ok(HubRuntimeInformation {
        path: f.string("name")?,
        created_at: f.time("created_at")?,
        partition_count: f
            .int("partition_count")
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(ids.len()),
        partition_ids: ids,
        georeplication_factor: f.int("georeplication_factor").unwrap_or(1),
    })
}

/// Reads a `com.microsoft:partition` response.
pub fn parse_partition_information(
    m: &Message,
) -> Result<PartitionRuntimeInformation, ResponseError> {
    let f = Fields::of(m)?;
    let last = f.int("last_enqueued_sequence_number")?;
    let begin = f.int("begin_sequence_number")?;
    Ok(PartitionRuntimeInformation {
        hub_path: f.string("name")?,
        partition_id: f.string("partition")?,
        begin_sequence_number: begin,
        last_sequence_number: last,
        last_enqueued_offset: f.string("last_enqueued_offset")?,
        last_enqueued_time_utc: f.time("last_enqueued_time_utc")?,
        is_empty: match f.get("is_partition_empty") {
            Some(Value::Bool(b)) => *b,
            _ => last < begin,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Decode, Encode, Map};
    use crate::eventhubs::sas::{TokenType, CBS_TYPE_SAS};

    #[test]
    fn put_token_request_carries_the_fields_the_service_reads() {
        let t = Token {
            token: "SharedAccessSignature sr=x&sig=y&se=100&skn=k".into(),
            expires_at_unix: 100,
            token_type: TokenType::SasToken,
        };
        let m = Message::decode_all(
            &put_token_request("id-1", "cbs-reply", "amqps://h/eh1", &t).to_bytes(),
        )
        .unwrap();
        let app = m.application_properties.as_ref().unwrap();
        assert_eq!(app.get("operation").unwrap().as_str(), Some("put-token"));
        assert_eq!(app.get("type").unwrap().as_str(), Some(CBS_TYPE_SAS));
        assert_eq!(app.get("name").unwrap().as_str(), Some("amqps://h/eh1"));
        assert_eq!(
            app.get("expiration"),
            Some(&Value::Timestamp(Timestamp(100_000)))
        );
        assert_eq!(m.body, Body::Value(Value::String(t.token.as_str().into())));
        let p = m.properties.unwrap();
        assert_eq!(p.reply_to.as_deref(), Some("cbs-reply"));
        assert_eq!(p.message_id, Some(MessageId::String("id-1".into())));
    }

    #[test]
    fn status_is_read_in_both_spellings_and_any_int_width() {
        let mut m = Message {
            application_properties: Some(props(&[
                ("statusCode", Value::Uint(202)),
                ("statusDescription", Value::String("Accepted".into())),
            ])),
            ..Message::default()
        };
        let s = response_status(&m).unwrap();
        assert!(s.is_success());
        assert_eq!((s.code, s.description.as_deref()), (202, Some("Accepted")));
        m.application_properties = Some(props(&[
            ("status-code", Value::Int(401)),
            (
                "error-condition",
                Value::Symbol("amqp:unauthorized-access".into()),
            ),
        ]));
        let s = response_status(&m).unwrap();
        assert!(!s.is_success());
        assert_eq!(s.condition.unwrap().as_str(), "amqp:unauthorized-access");
        assert_eq!(response_status(&Message::default()), None);
    }

    #[test]
    fn hub_and_partition_information_parse() {
        let mut map = Map::new();
        let s = |x: &str| Value::String(x.into());
        map.insert(s("name"), s("eh1"));
        map.insert(s("created_at"), Value::Timestamp(Timestamp(7)));
        map.insert(s("partition_count"), Value::Int(2));
        map.insert(
            s("partition_ids"),
            Value::Array(crate::codec::Array::new(0xa1, vec![s("0"), s("1")]).unwrap()),
        );
        map.insert(s("georeplication_factor"), Value::Int(1));
        let m = Message::with_value(Value::Map(map));
        let h = parse_hub_information(&Message::decode_all(&m.to_bytes()).unwrap()).unwrap();
        assert_eq!(h.path, "eh1");
        assert_eq!(h.partition_ids, vec!["0", "1"]);
        assert_eq!((h.partition_count, h.georeplication_factor), (2, 1));

        let mut map = Map::new();
        map.insert(s("name"), s("eh1"));
        map.insert(s("partition"), s("1"));
        map.insert(s("begin_sequence_number"), Value::Long(0));
        map.insert(s("last_enqueued_sequence_number"), Value::Long(-1));
        map.insert(s("last_enqueued_offset"), s("-1"));
        map.insert(s("last_enqueued_time_utc"), Value::Timestamp(Timestamp(0)));
        map.insert(s("is_partition_empty"), Value::Bool(true));
        let p = parse_partition_information(&Message::with_value(Value::Map(map.clone()))).unwrap();
        assert!(p.is_empty);
        assert_eq!((p.partition_id.as_str(), p.last_sequence_number), ("1", -1));
        map.remove(&s("last_enqueued_offset"));
        assert_eq!(
            parse_partition_information(&Message::with_value(Value::Map(map))),
            Err(ResponseError::Field("last_enqueued_offset"))
        );
        assert_eq!(
            parse_hub_information(&Message::default()),
            Err(ResponseError::NotAMap)
        );
    }

    #[test]
    fn management_request_names_hub_partition_and_token() {
        let m = management_request(
            "m1",
            "mgmt-reply",
            "eh1",
            &ManagementRequest::Partition("3".into()),
            Some("tok"),
        );
        let app = m.application_properties.unwrap();
        assert_eq!(app.get("operation").unwrap().as_str(), Some("READ"));
        assert_eq!(app.get("type").unwrap().as_str(), Some(PARTITION_TYPE));
        assert_eq!(app.get("partition").unwrap().as_str(), Some("3"));
        assert_eq!(app.get("security_token").unwrap().as_str(), Some("tok"));
    }
}
