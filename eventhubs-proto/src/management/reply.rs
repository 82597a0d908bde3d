//! Management replies read into typed results: an error status becomes a
//! [`ServiceError`] with the service's code and detail; a success body is
//! read as the entry or feed the operation returns.

use bytes::Bytes;
use http::Response;

use super::entity::{ConsumerGroupEntity, HubEntity};
use super::error::{ManagementError, ServiceError};
use super::xml::{parse_consumer_group_reply, parse_hub_reply, Reply, XmlError};

fn check_status(response: &Response<Bytes>) -> Result<u16, ManagementError> {
    let status = response.status();
    if status.is_success() {
        Ok(status.as_u16())
    } else {
        Err(ManagementError::Service(ServiceError::from_response(
            response,
        )))
    }
}

fn invalid(status: u16, reason: &str) -> ManagementError {
    ManagementError::InvalidReply {
        status,
        source: XmlError {
            reason: reason.to_owned(),
        },
    }
}

fn one<T>(
    response: &Response<Bytes>,
    parse: fn(&[u8]) -> Result<Reply<T>, XmlError>,
) -> Result<Option<T>, ManagementError> {
    let status = check_status(response)?;
    match parse(response.body())
        .map_err(|source| ManagementError::InvalidReply { status, source })?
    {
        Reply::Entry(e) => Ok(Some(e)),
        // The service answers a GET of a missing entity with 200 and an
        // empty feed titled "Publicly Listed Services".
        Reply::Feed { entries, .. } if entries.is_empty() => Ok(None),
        Reply::Feed { .. } => Err(invalid(status, "expected one entry, found a feed")),
    }
}

fn many<T>(
    response: &Response<Bytes>,
    parse: fn(&[u8]) -> Result<Reply<T>, XmlError>,
) -> Result<Vec<T>, ManagementError> {
    let status = check_status(response)?;
    match parse(response.body())
        .map_err(|source| ManagementError::InvalidReply { status, source })?
    {
        Reply::Feed { entries, .. } => Ok(entries),
        Reply::Entry(_) => Err(invalid(status, "expected a feed, found one entry")),
    }
}

/// The hub a create or update answered with (201 or 200 and an entry).
pub fn hub_from_response(response: &Response<Bytes>) -> Result<HubEntity, ManagementError> {
    let status = response.status().as_u16();
    one(response, parse_hub_reply)?
        .ok_or_else(|| invalid(status, "expected the hub's entry, found an empty feed"))
}

/// The hub a Get Event Hub answered with; `None` for a hub that does not
/// exist (404, or 200 with the service's empty feed).
pub fn optional_hub_from_response(
    response: &Response<Bytes>,
) -> Result<Option<HubEntity>, ManagementError> {
    if response.status() == 404 {
        return Ok(None);
    }
    one(response, parse_hub_reply)
}

/// The hubs a List Event Hubs answered with.
pub fn hubs_from_response(response: &Response<Bytes>) -> Result<Vec<HubEntity>, ManagementError> {
    many(response, parse_hub_reply)
}

/// The consumer group a create or update answered with.
pub fn consumer_group_from_response(
    response: &Response<Bytes>,
) -> Result<ConsumerGroupEntity, ManagementError> {
    let status = response.status().as_u16();
    one(response, parse_consumer_group_reply)?.ok_or_else(|| {
        invalid(
            status,
            "expected the consumer group's entry, found an empty feed",
        )
    })
}

/// The consumer group a Get Consumer Group answered with; `None` when it
/// does not exist.
pub fn optional_consumer_group_from_response(
    response: &Response<Bytes>,
) -> Result<Option<ConsumerGroupEntity>, ManagementError> {
    if response.status() == 404 {
        return Ok(None);
    }
    one(response, parse_consumer_group_reply)
}

/// The consumer groups a List Consumer Groups answered with.
pub fn consumer_groups_from_response(
    response: &Response<Bytes>,
) -> Result<Vec<ConsumerGroupEntity>, ManagementError> {
    many(response, parse_consumer_group_reply)
}

/// Checks the reply to a delete: success, or the service's error (404
/// when the entity does not exist).
pub fn deleted_from_response(response: &Response<Bytes>) -> Result<(), ManagementError> {
    check_status(response).map(|_| ())
}
