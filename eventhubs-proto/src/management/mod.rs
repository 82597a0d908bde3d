//! Event hub and consumer group management over the Service Bus Atom REST
//! API (the REST docs' "Event Hubs management": Create, Update, Get, List
//! and Delete Event Hub and Consumer Group), as azure-event-hubs-go's
//! `HubManager` uses it. No I/O: requests are built as
//! [`http::Request`]s for any HTTP client (this project's
//! [`crate::http`] exchange), replies are read from [`http::Response`]s.
//!
//! - [`ManagementEndpoint`] builds the requests: `PUT`/`GET`/`DELETE
//!   /<hub>`, `GET /$Resources/EventHubs`, the same under
//!   `/<hub>/consumergroups`, and raw ones; every URL carries
//!   `?api-version=2017-04`; a create becomes an update with
//!   [`PutMode::Update`] (`If-Match: *`).
//! - [`sign`] and [`authorize`] set `Authorization`: a SAS token signed
//!   over the full request URL, query included, or an Entra ID token as
//!   `Bearer`.
//! - [`HubDescription`] and [`ConsumerGroupDescription`] are what a caller
//!   writes, [`HubEntity`] and [`ConsumerGroupEntity`] what the service
//!   returns; [`xml`] writes and reads their Atom XML (both sides, so an
//!   emulator can serve the API too).
//! - [`hub_from_response`] and its siblings read replies; an error status
//!   becomes a [`ServiceError`] carrying the service's `Code` and `Detail`;
//!   a Get of a missing entity reads as `None`.
//!
//! ```
//! use eventhubs_proto::eventhubs::SasKeyProvider;
//! use eventhubs_proto::management::{sign, HubDescription, ManagementEndpoint, PutMode};
//!
//! let endpoint = ManagementEndpoint::parse("https://myns.servicebus.windows.net")?;
//! let description = HubDescription::new()
//!     .with_partition_count(4)
//!     .with_message_retention_in_days(7);
//! let mut request = endpoint.put_hub("hub1", &description, PutMode::Create)?;
//! let mut key = SasKeyProvider::new("RootManageSharedAccessKey", "c2VjcmV0")?;
//! sign(&mut request, &mut key, 1_700_000_000 - 7200)?;
//! assert_eq!(request.uri(), "https://myns.servicebus.windows.net/hub1?api-version=2017-04");
//! assert!(request.headers()["authorization"].to_str()?.starts_with(
//!     "SharedAccessSignature sr=https%3a%2f%2fmyns.servicebus.windows.net%2fhub1%3fapi-version%3d2017-04&sig="
//! ));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod entity;
mod error;
mod reply;
mod request;
pub mod time;
pub mod xml;

pub use entity::{
    check_consumer_group_name, check_hub_name, ConsumerGroupDescription, ConsumerGroupEntity,
    EntityStatus, HubDescription, HubEntity, NameError, UnknownStatus, DEFAULT_CONSUMER_GROUP,
    MAX_CONSUMER_GROUP_NAME_LEN, MAX_HUB_NAME_LEN, PARTITION_COUNT_RANGE, RETENTION_DAYS_RANGE,
};
pub use error::{ManagementError, ServiceError};
pub use reply::{
    consumer_group_from_response, consumer_groups_from_response, deleted_from_response,
    hub_from_response, hubs_from_response, optional_consumer_group_from_response,
    optional_hub_from_response,
};
pub use request::{
    authorize, sas_audience, sign, ManagementEndpoint, PutMode, API_VERSION,
    ATOM_ENTRY_CONTENT_TYPE, ATOM_FEED_CONTENT_TYPE, EMULATOR_MANAGEMENT_PORT, LIST_HUBS_PATH,
};
pub use xml::XmlError;

#[cfg(test)]
mod tests;
