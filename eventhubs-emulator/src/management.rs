//! The emulator's side of the Service Bus Atom management API (the REST
//! docs' "Event Hubs management"), and Microsoft's emulator's health check.
//!
//! Sans-IO over the [`Broker`]: [`decide`] reads a parsed HTTP request and
//! either answers it at once (reads, refusals) or plans a [`Change`];
//! [`apply`] makes it, changing the broker and writing the reply, which the
//! server sends once it has recorded the change (with a data directory),
//! all under the broker's lock. Served
//! paths, relative to the namespace:
//!
//! | Request | Operation |
//! |---|---|
//! | `GET /health` (no `Authorization`) | `200 {"status":"healthy",…}` |
//! | `GET /$Resources/EventHubs` | List Event Hubs (configured and created) |
//! | `PUT /<hub>` | Create Event Hub (201), or with `If-Match: *` Update (200) |
//! | `GET /<hub>` | Get Event Hub; a missing hub is 200 with the service's empty feed |
//! | `DELETE /<hub>` | Delete Event Hub (200; 404 when missing); its links are detached with `amqp:not-found` |
//! | `GET /<hub>/consumergroups` | List Consumer Groups |
//! | `PUT`/`GET`/`DELETE /<hub>/consumergroups/<group>` | the same for a consumer group |
//!
//! Every operation needs a SAS token with Manage rights whose resource
//! covers the path (its HMAC checked over `sr` as sent; scheme, host,
//! port and query of the resource are ignored, the path compared without
//! case at a segment boundary), or an Entra ID token (`Bearer`, or bare as
//! azure-event-hubs-go sends it) whose identity holds Manage
//! ([`check_jwt`]).
//! Refusals are the service's statuses with an
//! `<Error><Code>…</Code><Detail>…</Detail></Error>` body. Values are
//! checked as the service checks them: 1 to 32 partitions, 1 to 90 days
//! of retention, Azure's naming rules, up to [`MAX_HUBS`] hubs and
//! [`MAX_CONSUMER_GROUPS`] consumer groups besides `$Default`. A bare
//! create gets [`DEFAULT_PARTITION_COUNT`] partitions and
//! [`DEFAULT_RETENTION_DAYS`] days, as the service gave
//! azure-event-hubs-go's live tests.

use bytes::Bytes;
use eventhubs_proto::codec::Timestamp;
use eventhubs_proto::eventhubs::sas::SharedAccessSignature;
use eventhubs_proto::http::date::format_http_date;
use eventhubs_proto::management::xml::{
    parse_consumer_group_description, parse_hub_description, write_consumer_group_entry,
    write_consumer_group_feed, write_error, write_hub_entry, write_hub_feed,
    write_missing_entity_feed,
};
use eventhubs_proto::management::{
    check_consumer_group_name, check_hub_name, ConsumerGroupDescription, ConsumerGroupEntity,
    EntityStatus, HubDescription, HubEntity, API_VERSION, ATOM_ENTRY_CONTENT_TYPE,
    ATOM_FEED_CONTENT_TYPE, DEFAULT_CONSUMER_GROUP, PARTITION_COUNT_RANGE, RETENTION_DAYS_RANGE,
};
use eventhubs_proto::storage::percent_decode;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, DATE, HOST, IF_MATCH};
use http::{Method, Request, Response, StatusCode};
use tracing::{debug, info};

use crate::broker::{covers, Broker, ConsumerGroupState, HubState, Now};

/// Most hubs a namespace holds (the service's Premium tier allows 100 per
/// processing unit; Microsoft's emulator 10 from its configuration).
pub const MAX_HUBS: usize = 100;

/// Most consumer groups a hub holds besides `$Default` (the Standard
/// tier's 20).
pub const MAX_CONSUMER_GROUPS: usize = 20;

/// Partitions of a hub created without `PartitionCount`.
pub const DEFAULT_PARTITION_COUNT: u32 = 4;

/// Retention of a hub created (or updated) without
/// `MessageRetentionInDays`.
pub const DEFAULT_RETENTION_DAYS: u32 = 7;

/// Longest `UserMetadata`.
pub const MAX_USER_METADATA_LEN: usize = 1024;

/// The health check's body when healthy, as Microsoft's emulator answers.
pub const HEALTHY: &str = r#"{"status":"healthy","message":"Service is healthy."}"#;

/// What a request asks for, once routed and its body read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// `GET /health`.
    Health,
    /// List Event Hubs.
    ListHubs,
    /// Get Event Hub.
    GetHub(String),
    /// Create Event Hub, or Update with `If-Match: *`.
    PutHub {
        /// The hub.
        name: String,
        /// The request's description.
        description: HubDescription,
        /// `If-Match: *` was sent.
        update: bool,
    },
    /// Delete Event Hub.
    DeleteHub(String),
    /// List Consumer Groups.
    ListConsumerGroups(String),
    /// Get Consumer Group.
    GetConsumerGroup {
        /// The hub.
        hub: String,
        /// The group.
        group: String,
    },
    /// Create Consumer Group, or Update with `If-Match: *`.
    PutConsumerGroup {
        /// The hub.
        hub: String,
        /// The group.
        group: String,
        /// The request's description.
        description: ConsumerGroupDescription,
        /// `If-Match: *` was sent.
        update: bool,
    },
    /// Delete Consumer Group.
    DeleteConsumerGroup {
        /// The hub.
        hub: String,
        /// The group.
        group: String,
    },
}

/// A request refused: the status and the `Detail` of the error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: StatusCode,
    /// What is wrong, in the service's words where known.
    pub detail: String,
}

fn refuse(status: StatusCode, detail: impl Into<String>) -> Refusal {
    Refusal {
        status,
        detail: detail.into(),
    }
}

/// A change to the entities, planned by [`decide`] and made by [`apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// Add a hub.
    CreateHub(HubState),
    /// Change a hub's writable properties.
    UpdateHub {
        /// The hub's name as it exists.
        name: String,
        /// The new retention.
        message_retention_in_days: u32,
        /// The new status.
        status: EntityStatus,
        /// The new metadata.
        user_metadata: Option<String>,
    },
    /// Remove a hub.
    DeleteHub(String),
    /// Add a consumer group.
    CreateConsumerGroup {
        /// The hub's name as it exists.
        hub: String,
        /// The group.
        group: ConsumerGroupState,
    },
    /// Change a consumer group's metadata.
    UpdateConsumerGroup {
        /// The hub's name as it exists.
        hub: String,
        /// The group's name as it exists.
        group: String,
        /// The new metadata.
        user_metadata: Option<String>,
    },
    /// Remove a consumer group.
    DeleteConsumerGroup {
        /// The hub's name as it exists.
        hub: String,
        /// The group's name as it exists.
        group: String,
    },
}

/// A planned change and what the reply needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The change.
    pub change: Change,
    /// `scheme://host` of the request, for the reply's ids.
    base: String,
}

/// What to do with a request.
#[derive(Debug)]
pub enum Decision {
    /// Answer with this; nothing changes.
    Respond(Response<Bytes>),
    /// [`apply`] this change for the reply (and record it, with a data
    /// directory, before sending that).
    Apply(Plan),
}

/// Where a request goes, before its body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Health,
    Hubs,
    Hub(String),
    Groups(String),
    Group(String, String),
}

impl Target {
    /// The entity path a token must cover.
    fn scope(&self) -> String {
        match self {
            Target::Health => String::new(),
            Target::Hubs => "$resources/eventhubs".into(),
            Target::Hub(h) => h.to_ascii_lowercase(),
            Target::Groups(h) => format!("{}/consumergroups", h.to_ascii_lowercase()),
            Target::Group(h, g) => format!(
                "{}/consumergroups/{}",
                h.to_ascii_lowercase(),
                g.to_ascii_lowercase()
            ),
        }
    }
}

fn not_allowed(method: &Method) -> Refusal {
    refuse(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("The method {method} is not allowed on this resource."),
    )
}

/// The path's segments, percent-decoded; empty ones dropped.
fn segments(request: &Request<Bytes>) -> Result<Vec<String>, Refusal> {
    request
        .uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_decode(s).ok_or_else(|| {
                refuse(
                    StatusCode::BAD_REQUEST,
                    format!("The request path segment {s:?} is not valid percent-encoded UTF-8."),
                )
            })
        })
        .collect()
}

fn target(request: &Request<Bytes>) -> Result<Target, Refusal> {
    let segs = segments(request)?;
    let method = request.method();
    let is = |s: &String, word: &str| s.eq_ignore_ascii_case(word);
    let target = match segs.as_slice() {
        [h] if is(h, "health") && !request.headers().contains_key(AUTHORIZATION) => Target::Health,
        [r, e] if is(r, "$Resources") && is(e, "EventHubs") => Target::Hubs,
        [h] if !h.starts_with('$') => Target::Hub(h.clone()),
        [h, c] if is(c, "consumergroups") => Target::Groups(h.clone()),
        [h, c, g] if is(c, "consumergroups") => Target::Group(h.clone(), g.clone()),
        _ => {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                format!(
                    "No management resource at '{}': the emulator serves /$Resources/EventHubs, /<hub> and /<hub>/consumergroups[/<group>].",
                    request.uri().path()
                ),
            ))
        }
    };
    let allowed = match &target {
        Target::Health | Target::Hubs | Target::Groups(_) => {
            matches!(*method, Method::GET)
        }
        Target::Hub(_) | Target::Group(..) => {
            matches!(*method, Method::GET | Method::PUT | Method::DELETE)
        }
    };
    if !allowed {
        return Err(not_allowed(method));
    }
    Ok(target)
}

/// `If-Match: *` present (an update); another value is refused.
fn update_condition(request: &Request<Bytes>) -> Result<bool, Refusal> {
    match request.headers().get(IF_MATCH) {
        None => Ok(false),
        Some(v) if v.as_bytes().trim_ascii() == b"*" => Ok(true),
        Some(_) => Err(refuse(
            StatusCode::PRECONDITION_FAILED,
            "If-Match must be '*' to update an entity.",
        )),
    }
}

fn operation(target: Target, request: &Request<Bytes>) -> Result<Operation, Refusal> {
    let method = request.method();
    let bad_body = |what: &str, e: &dyn std::fmt::Display| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("The request body is not a valid {what} entry: {e}."),
        )
    };
    Ok(match target {
        Target::Health => Operation::Health,
        Target::Hubs => Operation::ListHubs,
        Target::Groups(hub) => Operation::ListConsumerGroups(hub),
        Target::Hub(name) => match *method {
            Method::GET => Operation::GetHub(name),
            Method::DELETE => Operation::DeleteHub(name),
            _ => Operation::PutHub {
                description: parse_hub_description(request.body())
                    .map_err(|e| bad_body("EventHubDescription", &e))?,
                update: update_condition(request)?,
                name,
            },
        },
        Target::Group(hub, group) => match *method {
            Method::GET => Operation::GetConsumerGroup { hub, group },
            Method::DELETE => Operation::DeleteConsumerGroup { hub, group },
            _ => Operation::PutConsumerGroup {
                description: parse_consumer_group_description(request.body())
                    .map_err(|e| bad_body("ConsumerGroupDescription", &e))?,
                update: update_condition(request)?,
                hub,
                group,
            },
        },
    })
}

/// Routes `request` and reads its body, without authorizing it: the
/// operation it asks for, or why it cannot be served.
pub fn route(request: &Request<Bytes>) -> Result<Operation, Refusal> {
    operation(target(request)?, request)
}

/// The entity path a SAS resource names: scheme, host (with port) and
/// query dropped, percent-decoded, lower case, no outer slashes
/// (`https://ns.servicebus.windows.net:443/hub1?api-version=2017-04` →
/// `hub1`). A bare host names the whole namespace.
fn sas_scope(resource: &str) -> String {
    let (has_scheme, rest) = match resource.find("://") {
        Some(i) => (true, &resource[i + 3..]),
        None => (false, resource),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let path = match rest.split_once('/') {
        Some((host, path)) if has_scheme || host.contains(['.', ':']) => path,
        Some(_) => rest,
        None if has_scheme || rest.contains(['.', ':']) => "",
        None => rest,
    };
    percent_decode(path)
        .unwrap_or_else(|| path.to_owned())
        .trim_matches('/')
        .to_ascii_lowercase()
}

/// Entra ID (JWT) tokens on the management API, checked as the CBS path
/// checks them ([`crate::entra`]: issuer, signature, audience, expiry, role
/// assignments); the identity needs Manage on the path's hub (a namespace
/// path such as `$Resources/EventHubs` needs an assignment on every hub).
pub fn check_jwt(broker: &Broker, now: Now, jwt: &str, scope: &str) -> Result<(), Refusal> {
    let now_unix = (now.unix_ms / 1000).max(0) as u64;
    let grant =
        crate::entra::check_put_token(broker.config().entra_id.as_ref(), jwt, scope, now_unix)
            .map_err(|why| refuse(StatusCode::UNAUTHORIZED, why))?;
    if !grant.rights.manage {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            format!(
                "Unauthorized access. 'Manage' claim(s) are required to perform this operation. Resource: '{scope}'."
            ),
        ));
    }
    Ok(())
}

/// Checks the request's `Authorization`: a SAS token of a policy with
/// Manage rights, signed, unexpired, whose resource covers `scope`.
fn authorize(
    broker: &Broker,
    now: Now,
    request: &Request<Bytes>,
    scope: &str,
) -> Result<(), Refusal> {
    let unauthorized = |detail: String| refuse(StatusCode::UNAUTHORIZED, detail);
    let Some(value) = request.headers().get(AUTHORIZATION) else {
        return Err(unauthorized(
            "MissingToken: The request has no Authorization header. Sign it with a SAS token of a policy with Manage rights.".into(),
        ));
    };
    let value = value
        .to_str()
        .map_err(|_| unauthorized("InvalidToken: the Authorization header is not ASCII.".into()))?
        .trim();
    if !value.starts_with("SharedAccessSignature ") {
        let jwt = value.strip_prefix("Bearer ").unwrap_or(value).trim();
        if jwt.split('.').count() == 3 {
            return check_jwt(broker, now, jwt, scope);
        }
        return Err(unauthorized(
            "InvalidToken: the Authorization header is neither a SharedAccessSignature nor a Bearer token.".into(),
        ));
    }
    let sas = SharedAccessSignature::parse(value)
        .map_err(|e| unauthorized(format!("InvalidSignature: {e}.")))?;
    let key_name = sas.key_name().unwrap_or_default();
    let policy = broker
        .config()
        .policies
        .iter()
        .find(|p| p.name == key_name)
        .ok_or_else(|| unauthorized(format!("InvalidSignature: unknown key name '{key_name}'.")))?;
    if !sas.verify(&policy.key) {
        return Err(unauthorized(
            "InvalidSignature: The token has an invalid signature.".into(),
        ));
    }
    if sas.expires_at_unix() <= (now.unix_ms / 1000).max(0) as u64 {
        return Err(unauthorized("ExpiredToken: The token is expired.".into()));
    }
    let resource = sas_scope(&sas.resource_uri().unwrap_or_default());
    if !covers(&resource, scope) {
        return Err(unauthorized(format!(
            "InvalidAudience: The token's audience '{resource}' does not cover '{scope}'."
        )));
    }
    if !policy.manage {
        return Err(unauthorized(format!(
            "Unauthorized access. 'Manage' claim(s) are required to perform this operation. Resource: '{scope}'."
        )));
    }
    Ok(())
}

/// `scheme://host` for the reply's ids and links.
fn base(request: &Request<Bytes>) -> String {
    let host = request
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or("localhost");
    format!("http://{host}")
}

fn entity_url(base: &str, path: &str) -> String {
    let mut out = format!("{base}/");
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'$' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str("?api-version=");
    out.push_str(API_VERSION);
    out
}

fn hub_entity(broker: &Broker, state: &HubState, base: &str) -> HubEntity {
    let mut e = HubEntity::new(state.name.clone());
    e.id = Some(entity_url(base, &state.name));
    e.published = Some(Timestamp(state.created_ms));
    e.updated = Some(Timestamp(state.updated_ms));
    e.message_retention_in_days = Some(state.retention_days(broker.config().retention_ms));
    e.size_in_bytes = broker.hub_size_bytes(&state.name);
    e.status = Some(state.status);
    e.created_at = Some(Timestamp(state.created_ms));
    e.updated_at = Some(Timestamp(state.updated_ms));
    e.user_metadata = state.user_metadata.clone();
    e.partition_count = Some(state.partition_count);
    e.partition_ids = (0..state.partition_count).map(|i| i.to_string()).collect();
    e.entity_availability_status = Some("Available".into());
    e
}

fn group_entity(hub: &str, g: &ConsumerGroupState, base: &str) -> ConsumerGroupEntity {
    let mut e = ConsumerGroupEntity::new(g.name.clone());
    e.id = Some(entity_url(
        base,
        &format!("{hub}/consumergroups/{}", g.name),
    ));
    e.created_at = Some(Timestamp(g.created_ms));
    e.updated_at = Some(Timestamp(g.updated_ms));
    e.user_metadata = g.user_metadata.clone();
    e
}

fn response(
    now: Now,
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from(body));
    *r.status_mut() = status;
    let headers = r.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(date) = HeaderValue::from_str(&format_http_date(now.unix_ms.div_euclid(1000))) {
        headers.insert(DATE, date);
    }
    r
}

/// The error reply for `refusal`, its detail followed by the tracker and
/// time as the service appends them.
pub fn error_response(broker: &Broker, now: Now, refusal: &Refusal) -> Response<Bytes> {
    let detail = format!(
        "{} SystemTracker:{}, Timestamp:{}",
        refusal.detail,
        broker.config().namespace,
        eventhubs_proto::management::time::format_rfc3339(Timestamp(now.unix_ms))
    );
    response(
        now,
        refusal.status,
        "application/xml; charset=utf-8",
        write_error(refusal.status.as_u16(), &detail),
    )
}

fn entry(now: Now, status: StatusCode, body: String) -> Response<Bytes> {
    response(now, status, ATOM_ENTRY_CONTENT_TYPE, body)
}

fn feed(now: Now, body: String) -> Response<Bytes> {
    response(now, StatusCode::OK, ATOM_FEED_CONTENT_TYPE, body)
}

fn missing(now: Now, base: &str, path: &str) -> Response<Bytes> {
    feed(
        now,
        write_missing_entity_feed(&entity_url(base, path), Timestamp(now.unix_ms)),
    )
}

fn no_hub(name: &str) -> Refusal {
    refuse(
        StatusCode::NOT_FOUND,
        format!("SubCode=40400. Not Found. The messaging entity '{name}' could not be found."),
    )
}

fn check_metadata(m: &Option<String>) -> Result<(), Refusal> {
    match m {
        Some(m) if m.chars().count() > MAX_USER_METADATA_LEN => Err(refuse(
            StatusCode::BAD_REQUEST,
            format!(
                "UserMetadata is {} characters long; at most {MAX_USER_METADATA_LEN} are allowed.",
                m.chars().count()
            ),
        )),
        _ => Ok(()),
    }
}

fn check_retention(days: u32) -> Result<u32, Refusal> {
    if RETENTION_DAYS_RANGE.contains(&days) {
        Ok(days)
    } else {
        Err(refuse(
            StatusCode::BAD_REQUEST,
            format!(
                "SubCode=40000. The value {days} of MessageRetentionInDays is out of range: it must be {} to {} days.",
                RETENTION_DAYS_RANGE.start(),
                RETENTION_DAYS_RANGE.end()
            ),
        ))
    }
}

fn conflict(what: &str, name: &str) -> Refusal {
    refuse(
        StatusCode::CONFLICT,
        format!("SubCode=40900. Conflict. The {what} '{name}' already exists. Send If-Match: * to update it."),
    )
}

/// Plans or answers `op` against the broker's state.
fn plan(broker: &Broker, now: Now, op: Operation, base: String) -> Result<Decision, Refusal> {
    let planned = |change| {
        Ok(Decision::Apply(Plan {
            change,
            base: base.clone(),
        }))
    };
    match op {
        Operation::Health => Ok(Decision::Respond(response(
            now,
            StatusCode::OK,
            "application/json",
            HEALTHY.into(),
        ))),
        Operation::ListHubs => {
            let hubs: Vec<HubEntity> = broker
                .hubs()
                .iter()
                .map(|h| hub_entity(broker, h, &base))
                .collect();
            let body = write_hub_feed(
                &hubs,
                &entity_url(&base, "$Resources/EventHubs"),
                &broker.config().namespace,
                Timestamp(now.unix_ms),
            );
            Ok(Decision::Respond(feed(now, body)))
        }
        Operation::GetHub(name) => Ok(Decision::Respond(match broker.hub(&name) {
            Some(h) => entry(
                now,
                StatusCode::OK,
                write_hub_entry(&hub_entity(broker, &h, &base), &broker.config().namespace),
            ),
            None => missing(now, &base, &name),
        })),
        Operation::DeleteHub(name) => match broker.hub(&name) {
            Some(h) => planned(Change::DeleteHub(h.name)),
            None => Err(no_hub(&name)),
        },
        Operation::PutHub {
            name,
            description: d,
            update,
        } => {
            check_metadata(&d.user_metadata)?;
            let status = d.status.unwrap_or_default();
            let retention = check_retention(
                d.message_retention_in_days
                    .unwrap_or(DEFAULT_RETENTION_DAYS),
            )?;
            match (broker.hub(&name), update) {
                (Some(h), false) => Err(conflict("messaging entity", &h.name)),
                (None, true) => Err(no_hub(&name)),
                (Some(h), true) => {
                    if let Some(n) = d.partition_count.filter(|n| *n != h.partition_count) {
                        return Err(refuse(
                            StatusCode::BAD_REQUEST,
                            format!("SubCode=40000. The partition count of event hub '{}' cannot be changed from {} to {n}.", h.name, h.partition_count),
                        ));
                    }
                    planned(Change::UpdateHub {
                        name: h.name,
                        message_retention_in_days: retention,
                        status,
                        user_metadata: d.user_metadata,
                    })
                }
                (None, false) => {
                    check_hub_name(&name).map_err(|e| {
                        refuse(StatusCode::BAD_REQUEST, format!("SubCode=40000. {e}."))
                    })?;
                    let count = d.partition_count.unwrap_or(DEFAULT_PARTITION_COUNT);
                    if !PARTITION_COUNT_RANGE.contains(&count) {
                        return Err(refuse(
                            StatusCode::BAD_REQUEST,
                            format!(
                                "SubCode=40000. The value {count} of PartitionCount is out of range: it must be {} to {}.",
                                PARTITION_COUNT_RANGE.start(),
                                PARTITION_COUNT_RANGE.end()
                            ),
                        ));
                    }
                    if broker.hubs().len() >= MAX_HUBS {
                        return Err(refuse(
                            StatusCode::FORBIDDEN,
                            format!("SubCode=40300. The maximum number of event hubs ({MAX_HUBS}) in the namespace has been reached."),
                        ));
                    }
                    planned(Change::CreateHub(HubState {
                        name,
                        partition_count: count,
                        message_retention_in_days: Some(retention),
                        status,
                        user_metadata: d.user_metadata,
                        created_ms: now.unix_ms,
                        updated_ms: now.unix_ms,
                        from_config: false,
                        consumer_groups: Vec::new(),
                    }))
                }
            }
        }
        Operation::ListConsumerGroups(hub) => {
            let h = broker.hub(&hub).ok_or_else(|| no_hub(&hub))?;
            let groups: Vec<ConsumerGroupEntity> = h
                .consumer_groups
                .iter()
                .map(|g| group_entity(&h.name, g, &base))
                .collect();
            let body = write_consumer_group_feed(
                &groups,
                &entity_url(&base, &format!("{}/consumergroups", h.name)),
                &broker.config().namespace,
                Timestamp(now.unix_ms),
            );
            Ok(Decision::Respond(feed(now, body)))
        }
        Operation::GetConsumerGroup { hub, group } => {
            let h = broker.hub(&hub).ok_or_else(|| no_hub(&hub))?;
            Ok(Decision::Respond(
                match h
                    .consumer_groups
                    .iter()
                    .find(|g| g.name.eq_ignore_ascii_case(&group))
                {
                    Some(g) => entry(
                        now,
                        StatusCode::OK,
                        write_consumer_group_entry(
                            &group_entity(&h.name, g, &base),
                            &broker.config().namespace,
                        ),
                    ),
                    None => missing(now, &base, &format!("{}/consumergroups/{group}", h.name)),
                },
            ))
        }
        Operation::PutConsumerGroup {
            hub,
            group,
            description,
            update,
        } => {
            let h = broker.hub(&hub).ok_or_else(|| no_hub(&hub))?;
            check_metadata(&description.user_metadata)?;
            let existing = h
                .consumer_groups
                .iter()
                .find(|g| g.name.eq_ignore_ascii_case(&group));
            match (existing, update) {
                (Some(g), false) => Err(conflict(
                    "consumer group",
                    &format!("{}/{}", h.name, g.name),
                )),
                (None, true) => Err(no_hub(&format!("{}/consumergroups/{group}", h.name))),
                (Some(g), true) => planned(Change::UpdateConsumerGroup {
                    hub: h.name.clone(),
                    group: g.name.clone(),
                    user_metadata: description.user_metadata,
                }),
                (None, false) => {
                    check_consumer_group_name(&group).map_err(|e| {
                        refuse(StatusCode::BAD_REQUEST, format!("SubCode=40000. {e}."))
                    })?;
                    if h.consumer_groups.len() > MAX_CONSUMER_GROUPS {
                        return Err(refuse(
                            StatusCode::FORBIDDEN,
                            format!("SubCode=40300. The maximum number of consumer groups ({MAX_CONSUMER_GROUPS}) of event hub '{}' has been reached.", h.name),
                        ));
                    }
                    planned(Change::CreateConsumerGroup {
                        hub: h.name.clone(),
                        group: ConsumerGroupState {
                            name: group,
                            created_ms: now.unix_ms,
                            updated_ms: now.unix_ms,
                            user_metadata: description.user_metadata,
                        },
                    })
                }
            }
        }
        Operation::DeleteConsumerGroup { hub, group } => {
            if group.eq_ignore_ascii_case(DEFAULT_CONSUMER_GROUP) {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "SubCode=40000. The consumer group $Default cannot be deleted.",
                ));
            }
            let h = broker.hub(&hub).ok_or_else(|| no_hub(&hub))?;
            match h
                .consumer_groups
                .iter()
                .find(|g| g.name.eq_ignore_ascii_case(&group))
            {
                Some(g) => planned(Change::DeleteConsumerGroup {
                    hub: h.name.clone(),
                    group: g.name.clone(),
                }),
                None => Err(no_hub(&format!("{}/consumergroups/{group}", h.name))),
            }
        }
    }
}

/// Decides what to do with `request`: route it, answer the health check,
/// authorize it, read its body, check it against the broker's state.
/// Nothing is changed; a [`Decision::Apply`] says what to change.
pub fn decide(broker: &Broker, now: Now, request: &Request<Bytes>) -> Decision {
    let result = target(request).and_then(|target| {
        if target != Target::Health {
            authorize(broker, now, request, &target.scope())?;
        }
        let op = operation(target, request)?;
        plan(broker, now, op, base(request))
    });
    match result {
        Ok(d) => d,
        Err(refusal) => {
            info!(method = %request.method(), path = %request.uri().path(), status = refusal.status.as_u16(), detail = %refusal.detail, "management request refused");
            Decision::Respond(error_response(broker, now, &refusal))
        }
    }
}

/// Makes a planned change to the broker and writes its reply: 201 and the
/// entry for a create, 200 and the entry for an update, 200 for a delete.
pub fn apply(broker: &mut Broker, now: Now, plan: &Plan) -> Response<Bytes> {
    let base = &plan.base;
    let failed = |broker: &Broker, e: crate::broker::EntityError| {
        let status = match e {
            crate::broker::EntityError::HubExists(_)
            | crate::broker::EntityError::GroupExists { .. } => StatusCode::CONFLICT,
            crate::broker::EntityError::NoSuchHub(_)
            | crate::broker::EntityError::NoSuchGroup { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        };
        error_response(broker, now, &refuse(status, e.to_string()))
    };
    let hub_reply = |broker: &Broker, status, name: &str| match broker.hub(name) {
        Some(h) => entry(
            now,
            status,
            write_hub_entry(&hub_entity(broker, &h, base), &broker.config().namespace),
        ),
        None => error_response(broker, now, &no_hub(name)),
    };
    let group_reply = |broker: &Broker, status, hub: &str, group: &ConsumerGroupState| {
        entry(
            now,
            status,
            write_consumer_group_entry(&group_entity(hub, group, base), &broker.config().namespace),
        )
    };
    let deleted = || response(now, StatusCode::OK, ATOM_ENTRY_CONTENT_TYPE, String::new());
    debug!(change = ?plan.change, "management change");
    match &plan.change {
        Change::CreateHub(state) => match broker.add_hub(state.clone()) {
            Ok(()) => hub_reply(broker, StatusCode::CREATED, &state.name),
            Err(e) => failed(broker, e),
        },
        Change::UpdateHub {
            name,
            message_retention_in_days,
            status,
            user_metadata,
        } => match broker.update_hub(
            now,
            name,
            *message_retention_in_days,
            *status,
            user_metadata.clone(),
        ) {
            Ok(_) => hub_reply(broker, StatusCode::OK, name),
            Err(e) => failed(broker, e),
        },
        Change::DeleteHub(name) => match broker.remove_hub(now, name) {
            Ok(_) => deleted(),
            Err(e) => failed(broker, e),
        },
        Change::CreateConsumerGroup { hub, group } => {
            match broker.add_consumer_group(hub, group.clone()) {
                Ok(()) => group_reply(broker, StatusCode::CREATED, hub, group),
                Err(e) => failed(broker, e),
            }
        }
        Change::UpdateConsumerGroup {
            hub,
            group,
            user_metadata,
        } => match broker.update_consumer_group(now, hub, group, user_metadata.clone()) {
            Ok(g) => group_reply(broker, StatusCode::OK, hub, &g),
            Err(e) => failed(broker, e),
        },
        Change::DeleteConsumerGroup { hub, group } => {
            match broker.remove_consumer_group(now, hub, group) {
                Ok(_) => deleted(),
                Err(e) => failed(broker, e),
            }
        }
    }
}

/// [`decide`], then [`apply`] when there is a change: for callers that
/// persist nothing (tests, fuzzing, an emulator without a data directory).
pub fn handle(broker: &mut Broker, now: Now, request: &Request<Bytes>) -> Response<Bytes> {
    match decide(broker, now, request) {
        Decision::Respond(r) => r,
        Decision::Apply(plan) => apply(broker, now, &plan),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Request<Bytes> {
        Request::get(path).body(Bytes::new()).unwrap()
    }

    #[test]
    fn sas_scopes() {
        for (resource, scope) in [
            (
                "https://ns.servicebus.windows.net/hub1?api-version=2017-04",
                "hub1",
            ),
            ("https://ns.servicebus.windows.net:443/Hub1/", "hub1"),
            (
                "http://127.0.0.1:5300/$Resources/EventHubs?x=1",
                "$resources/eventhubs",
            ),
            ("sb://ns.servicebus.windows.net/", ""),
            ("ns.servicebus.windows.net", ""),
            ("127.0.0.1:5300/hub%201", "hub 1"),
            ("localhost", "localhost"),
            ("hub1/consumergroups/cg", "hub1/consumergroups/cg"),
        ] {
            assert_eq!(sas_scope(resource), scope, "{resource}");
        }
    }

    #[test]
    fn routes() {
        assert_eq!(route(&get("/health")), Ok(Operation::Health));
        let mut authorized = get("/health");
        authorized
            .headers_mut()
            .insert(AUTHORIZATION, HeaderValue::from_static("x"));
        assert_eq!(route(&authorized), Ok(Operation::GetHub("health".into())));
        assert_eq!(
            route(&get("/$resources/eventhubs?api-version=2014-01")),
            Ok(Operation::ListHubs)
        );
        assert_eq!(
            route(&get("/eh1/ConsumerGroups/$Default/")),
            Ok(Operation::GetConsumerGroup {
                hub: "eh1".into(),
                group: "$Default".into()
            })
        );
        assert_eq!(
            route(&get("/hub%201")),
            Ok(Operation::GetHub("hub 1".into()))
        );
        for (path, status) in [
            ("/", 404),
            ("/$Resources", 404),
            ("/a/b", 404),
            ("/a/consumergroups/b/c", 404),
            ("/%ff", 400),
            ("/%zz", 400),
        ] {
            assert_eq!(
                route(&get(path)).map_err(|r| r.status.as_u16()),
                Err(status),
                "{path}"
            );
        }
        let post = Request::post("/eh1").body(Bytes::new()).unwrap();
        assert_eq!(route(&post).map_err(|r| r.status.as_u16()), Err(405));
        let put = Request::put("/eh1").body(Bytes::new()).unwrap();
        let refusal = route(&put).unwrap_err();
        assert_eq!(refusal.status, 400);
        assert!(
            refusal.detail.contains("EventHubDescription"),
            "{refusal:?}"
        );
    }
}
