//! The Atom XML of the management API, written and read with quick-xml.
//!
//! Requests carry an Atom `entry` whose `content` holds an
//! `EventHubDescription` or `ConsumerGroupDescription` in the Service Bus
//! namespace; replies are such entries, `feed`s of them, or an `Error`
//! body. Reading is namespace-aware (prefixes are resolved, so
//! `<a:entry xmlns:a="http://www.w3.org/2005/Atom">` is an entry) and
//! tolerant: unknown elements, attributes and foreign namespaces are
//! ignored, properties may come in any order (the first of a name counts).
//! Entities other than XML's five and character references are refused,
//! and nesting is bounded.

use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use quick_xml::Writer;

use super::entity::{
    ConsumerGroupDescription, ConsumerGroupEntity, EntityStatus, HubDescription, HubEntity,
};
use super::time::{format_rfc3339, parse_rfc3339};
use crate::codec::Timestamp;

/// The Atom namespace (RFC 4287).
pub const ATOM_NS: &str = "http://www.w3.org/2005/Atom";
/// The namespace of `EventHubDescription` and `ConsumerGroupDescription`.
pub const SERVICE_BUS_NS: &str =
    "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect";
/// XML Schema instance (`xmlns:i`).
pub const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// The namespace of `PartitionIds`' `string` children.
pub const ARRAYS_NS: &str = "http://schemas.microsoft.com/2003/10/Serialization/Arrays";

/// The title of the empty feed the service answers a GET of an entity
/// that does not exist with.
pub const MISSING_ENTITY_FEED_TITLE: &str = "Publicly Listed Services";

const HUB_DESCRIPTION: &str = "EventHubDescription";
const CONSUMER_GROUP_DESCRIPTION: &str = "ConsumerGroupDescription";

/// Deepest element nesting accepted (the service's replies nest 6 deep).
const MAX_DEPTH: usize = 32;

/// XML that is not what the management API sends or expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed management XML: {reason}")]
pub struct XmlError {
    /// What is wrong.
    pub reason: String,
}

fn xml_error(reason: impl std::fmt::Display) -> XmlError {
    XmlError {
        reason: reason.to_string(),
    }
}

// ---------------------------------------------------------------- writing

type W = Writer<Vec<u8>>;

/// Runs `body` on a writer after the XML declaration and returns the text.
/// Writing into a `Vec` cannot fail, so the `io::Result`s are dropped.
fn document(body: impl FnOnce(&mut W) -> std::io::Result<()>) -> String {
    let mut w = Writer::new(Vec::with_capacity(1024));
    let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
    w.get_mut().push(b'\n');
    let _ = body(&mut w);
    String::from_utf8_lossy(&w.into_inner()).into_owned()
}

/// Text with `<`, `>` and `&` escaped (quotes need no escaping in text, and
/// the service writes them as they are).
fn text(t: &str) -> BytesText<'_> {
    BytesText::from_escaped(quick_xml::escape::partial_escape(t))
}

fn leaf(w: &mut W, name: &str, t: &str) -> std::io::Result<()> {
    w.create_element(name)
        .write_text_content(text(t))
        .map(|_| ())
}

fn opt_leaf(w: &mut W, name: &str, text: Option<String>) -> std::io::Result<()> {
    match text {
        Some(t) => leaf(w, name, &t),
        None => Ok(()),
    }
}

fn time(t: Option<Timestamp>) -> Option<String> {
    t.map(format_rfc3339)
}

/// A create or update request's body for `description`, as
/// azure-event-hubs-go writes it: the declaration, one newline, then
/// `<entry xmlns="…Atom"><content type="application/xml"><EventHubDescription
/// xmlns="…connect">…</EventHubDescription></content></entry>` with the set
/// properties in the order the service requires (MessageRetentionInDays,
/// Status, UserMetadata, PartitionCount; properties out of that order are
/// taken as user properties by the service).
pub fn write_hub_description_entry(description: &HubDescription) -> String {
    document(|w| {
        request_entry(w, HUB_DESCRIPTION, |w| {
            let d = description;
            opt_leaf(
                w,
                "MessageRetentionInDays",
                d.message_retention_in_days.map(|v| v.to_string()),
            )?;
            opt_leaf(w, "Status", d.status.map(|s| s.as_str().to_owned()))?;
            opt_leaf(w, "UserMetadata", d.user_metadata.clone())?;
            opt_leaf(
                w,
                "PartitionCount",
                d.partition_count.map(|v| v.to_string()),
            )
        })
    })
}

/// A create or update request's body for a consumer group.
pub fn write_consumer_group_description_entry(description: &ConsumerGroupDescription) -> String {
    document(|w| {
        request_entry(w, CONSUMER_GROUP_DESCRIPTION, |w| {
            opt_leaf(w, "UserMetadata", description.user_metadata.clone())
        })
    })
}

fn request_entry(
    w: &mut W,
    description: &str,
    fields: impl FnOnce(&mut W) -> std::io::Result<()>,
) -> std::io::Result<()> {
    w.create_element("entry")
        .with_attribute(("xmlns", ATOM_NS))
        .write_inner_content(|w| {
            w.create_element("content")
                .with_attribute(("type", "application/xml"))
                .write_inner_content(|w| {
                    w.create_element(description)
                        .with_attribute(("xmlns", SERVICE_BUS_NS))
                        .write_inner_content(fields)
                        .map(|_| ())
                })
                .map(|_| ())
        })
        .map(|_| ())
}

/// Where an entry sits: alone (it declares the Atom namespace) or in a
/// feed (it names the feed's URL as `xml:base`).
#[derive(Clone, Copy)]
enum Place<'a> {
    Alone,
    InFeed(&'a str),
}

/// The Atom head of a reply entry: `id`, `title`, `published`, `updated`,
/// `author/name`, `link rel="self"`, then `content` by `description`.
fn reply_entry(
    w: &mut W,
    place: Place<'_>,
    head: EntryHead<'_>,
    description: impl FnOnce(&mut W) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let start = w.create_element("entry");
    let start = match place {
        Place::Alone => start.with_attribute(("xmlns", ATOM_NS)),
        Place::InFeed(base) => start.with_attribute(("xml:base", base)),
    };
    start
        .write_inner_content(|w| {
            leaf(w, "id", head.id)?;
            w.create_element("title")
                .with_attribute(("type", "text"))
                .write_text_content(text(head.title))?;
            opt_leaf(w, "published", time(head.published))?;
            opt_leaf(w, "updated", time(head.updated))?;
            w.create_element("author")
                .write_inner_content(|w| leaf(w, "name", head.author))?;
            w.create_element("link")
                .with_attribute(("rel", "self"))
                .with_attribute(("href", head.id))
                .write_empty()?;
            w.create_element("content")
                .with_attribute(("type", "application/xml"))
                .write_inner_content(description)
                .map(|_| ())
        })
        .map(|_| ())
}

struct EntryHead<'a> {
    id: &'a str,
    title: &'a str,
    published: Option<Timestamp>,
    updated: Option<Timestamp>,
    author: &'a str,
}

fn hub_entry_into(w: &mut W, place: Place<'_>, e: &HubEntity, author: &str) -> std::io::Result<()> {
    let head = EntryHead {
        id: e.id.as_deref().unwrap_or_default(),
        title: &e.name,
        published: e.published.or(e.created_at),
        updated: e.updated.or(e.updated_at),
        author,
    };
    reply_entry(w, place, head, |w| {
        w.create_element(HUB_DESCRIPTION)
            .with_attribute(("xmlns", SERVICE_BUS_NS))
            .with_attribute(("xmlns:i", XSI_NS))
            .write_inner_content(|w| {
                opt_leaf(
                    w,
                    "MessageRetentionInDays",
                    e.message_retention_in_days.map(|v| v.to_string()),
                )?;
                opt_leaf(w, "SizeInBytes", e.size_in_bytes.map(|v| v.to_string()))?;
                w.create_element("AuthorizationRules")
                    .write_inner_content(|_| Ok(()))?;
                opt_leaf(w, "Status", e.status.map(|s| s.as_str().to_owned()))?;
                opt_leaf(w, "CreatedAt", time(e.created_at))?;
                opt_leaf(w, "UpdatedAt", time(e.updated_at))?;
                opt_leaf(w, "UserMetadata", e.user_metadata.clone())?;
                opt_leaf(
                    w,
                    "PartitionCount",
                    e.partition_count.map(|v| v.to_string()),
                )?;
                w.create_element("PartitionIds")
                    .with_attribute(("xmlns:d2p1", ARRAYS_NS))
                    .write_inner_content(|w| {
                        for id in &e.partition_ids {
                            leaf(w, "d2p1:string", id)?;
                        }
                        Ok(())
                    })?;
                opt_leaf(
                    w,
                    "EntityAvailabilityStatus",
                    e.entity_availability_status.clone(),
                )
            })
            .map(|_| ())
    })
}

fn group_entry_into(
    w: &mut W,
    place: Place<'_>,
    e: &ConsumerGroupEntity,
    author: &str,
) -> std::io::Result<()> {
    let head = EntryHead {
        id: e.id.as_deref().unwrap_or_default(),
        title: &e.name,
        published: e.created_at,
        updated: e.updated_at,
        author,
    };
    reply_entry(w, place, head, |w| {
        w.create_element(CONSUMER_GROUP_DESCRIPTION)
            .with_attribute(("xmlns", SERVICE_BUS_NS))
            .with_attribute(("xmlns:i", XSI_NS))
            .write_inner_content(|w| {
                opt_leaf(w, "CreatedAt", time(e.created_at))?;
                opt_leaf(w, "UpdatedAt", time(e.updated_at))?;
                opt_leaf(w, "UserMetadata", e.user_metadata.clone())
            })
            .map(|_| ())
    })
}

/// A reply entry for `hub`, as the service writes one (Create, Update and
/// Get Event Hub): its `id` and self link are `hub.id`, `published` and
/// `updated` its creation and update times, `author` the namespace name.
pub fn write_hub_entry(hub: &HubEntity, namespace: &str) -> String {
    document(|w| hub_entry_into(w, Place::Alone, hub, namespace))
}

/// A reply entry for a consumer group.
pub fn write_consumer_group_entry(group: &ConsumerGroupEntity, namespace: &str) -> String {
    document(|w| group_entry_into(w, Place::Alone, group, namespace))
}

fn feed(
    w: &mut W,
    title: &str,
    feed_id: &str,
    updated: Timestamp,
    entries: impl FnOnce(&mut W) -> std::io::Result<()>,
) -> std::io::Result<()> {
    w.create_element("feed")
        .with_attribute(("xmlns", ATOM_NS))
        .write_inner_content(|w| {
            w.create_element("title")
                .with_attribute(("type", "text"))
                .write_text_content(text(title))?;
            leaf(w, "id", feed_id)?;
            leaf(w, "updated", &format_rfc3339(updated))?;
            w.create_element("link")
                .with_attribute(("rel", "self"))
                .with_attribute(("href", feed_id))
                .write_empty()?;
            entries(w)
        })
        .map(|_| ())
}

/// The List Event Hubs reply: a feed titled `EventHubs` at `feed_id`.
pub fn write_hub_feed(
    hubs: &[HubEntity],
    feed_id: &str,
    namespace: &str,
    updated: Timestamp,
) -> String {
    document(|w| {
        feed(w, "EventHubs", feed_id, updated, |w| {
            for hub in hubs {
                hub_entry_into(w, Place::InFeed(feed_id), hub, namespace)?;
            }
            Ok(())
        })
    })
}

/// The List Consumer Groups reply: a feed titled `ConsumerGroups`.
pub fn write_consumer_group_feed(
    groups: &[ConsumerGroupEntity],
    feed_id: &str,
    namespace: &str,
    updated: Timestamp,
) -> String {
    document(|w| {
        feed(w, "ConsumerGroups", feed_id, updated, |w| {
            for group in groups {
                group_entry_into(w, Place::InFeed(feed_id), group, namespace)?;
            }
            Ok(())
        })
    })
}

/// The empty feed the service answers a GET of a missing entity with,
/// titled [`MISSING_ENTITY_FEED_TITLE`].
pub fn write_missing_entity_feed(feed_id: &str, updated: Timestamp) -> String {
    document(|w| {
        w.create_element("feed")
            .with_attribute(("xmlns", ATOM_NS))
            .write_inner_content(|w| {
                w.create_element("title")
                    .with_attribute(("type", "text"))
                    .write_text_content(text(MISSING_ENTITY_FEED_TITLE))?;
                w.create_element("subtitle")
                    .with_attribute(("type", "text"))
                    .write_text_content(text(
                        "This is the list of publicly-listed services currently available.",
                    ))?;
                leaf(w, "id", feed_id)?;
                leaf(w, "updated", &format_rfc3339(updated))?;
                leaf(w, "generator", "Service Bus 1.1")
            })
            .map(|_| ())
    })
}

/// An error body: `<Error><Code>code</Code><Detail>detail</Detail></Error>`.
pub fn write_error(code: u16, detail: &str) -> String {
    document(|w| {
        w.create_element("Error")
            .write_inner_content(|w| {
                leaf(w, "Code", &code.to_string())?;
                leaf(w, "Detail", detail)
            })
            .map(|_| ())
    })
}

// ---------------------------------------------------------------- reading

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ns {
    Atom,
    ServiceBus,
    Other,
}

#[derive(Debug)]
struct Node {
    ns: Ns,
    name: String,
}

enum Step {
    Start,
    End(String),
    Eof,
}

/// Reads elements, tracking the path of (namespace, local name) and the
/// text of the innermost one.
struct Walker<'a> {
    reader: NsReader<&'a [u8]>,
    path: Vec<Node>,
    text: String,
    pop: bool,
}

impl<'a> Walker<'a> {
    fn new(body: &'a [u8]) -> Result<Self, XmlError> {
        let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
        let text = std::str::from_utf8(body).map_err(|_| xml_error("the body is not UTF-8"))?;
        let mut reader = NsReader::from_str(text);
        let config = reader.config_mut();
        config.expand_empty_elements = true;
        config.check_end_names = true;
        Ok(Walker {
            reader,
            path: Vec::new(),
            text: String::new(),
            pop: false,
        })
    }

    fn step(&mut self) -> Result<Step, XmlError> {
        if std::mem::take(&mut self.pop) {
            self.path.pop();
        }
        loop {
            let (ns, event) = self.reader.read_resolved_event().map_err(xml_error)?;
            let ns = match ns {
                ResolveResult::Bound(n) if n.0 == ATOM_NS => Ns::Atom,
                ResolveResult::Bound(n) if n.0 == SERVICE_BUS_NS => Ns::ServiceBus,
                ResolveResult::Unknown(prefix) => {
                    return Err(xml_error(format!("undeclared namespace prefix {prefix:?}")))
                }
                _ => Ns::Other,
            };
            match event {
                Event::Start(s) => {
                    if self.path.len() >= MAX_DEPTH {
                        return Err(xml_error("elements nested too deep"));
                    }
                    let name = s.local_name().as_ref().to_owned();
                    self.path.push(Node { ns, name });
                    self.text.clear();
                    return Ok(Step::Start);
                }
                Event::End(_) => {
                    self.pop = true;
                    return Ok(Step::End(std::mem::take(&mut self.text)));
                }
                e @ (Event::Text(_) | Event::CData(_) | Event::GeneralRef(_)) => {
                    crate::xml::push_text(&mut self.text, &e).map_err(xml_error)?;
                }
                Event::Eof => {
                    if !self.path.is_empty() {
                        return Err(xml_error("the document ends inside an element"));
                    }
                    return Ok(Step::Eof);
                }
                Event::Empty(_)
                | Event::Comment(_)
                | Event::Decl(_)
                | Event::PI(_)
                | Event::DocType(_) => {}
            }
        }
    }

    /// The node at `depth` (0 is the root).
    fn node(&self, depth: usize) -> Option<&Node> {
        self.path.get(depth)
    }

    fn is(&self, depth: usize, ns: Ns, name: &str) -> bool {
        self.node(depth)
            .is_some_and(|n| n.ns == ns && n.name == name)
    }
}

/// An entity description's fields as text, before typing.
#[derive(Debug, Default)]
struct RawDescription {
    /// The local name: `EventHubDescription`, `ConsumerGroupDescription`, ...
    kind: String,
    /// Leaf properties in document order.
    fields: Vec<(String, String)>,
    partition_ids: Vec<String>,
}

impl RawDescription {
    /// The first property named `name`.
    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, XmlError> {
        self.get(name)
            .map(|v| {
                v.trim().parse::<T>().map_err(|_| {
                    xml_error(format!(
                        "{name} {v:?} is not a whole number in the accepted range"
                    ))
                })
            })
            .transpose()
    }

    fn time(&self, name: &str) -> Result<Option<Timestamp>, XmlError> {
        self.get(name).map(|v| rfc3339(name, v)).transpose()
    }
}

fn rfc3339(name: &str, v: &str) -> Result<Timestamp, XmlError> {
    parse_rfc3339(v).ok_or_else(|| xml_error(format!("{name} {v:?} is not an RFC 3339 time")))
}

#[derive(Debug, Default)]
struct RawEntry {
    title: Option<String>,
    id: Option<String>,
    published: Option<String>,
    updated: Option<String>,
    has_content: bool,
    description: Option<RawDescription>,
}

#[derive(Debug)]
enum RawDocument {
    Entry(RawEntry),
    Feed {
        title: Option<String>,
        entries: Vec<RawEntry>,
    },
}

fn set_once(slot: &mut Option<String>, text: String) {
    if slot.is_none() {
        *slot = Some(text);
    }
}

/// Parses an Atom entry or feed into raw entries.
fn parse_document(body: &[u8]) -> Result<RawDocument, XmlError> {
    let mut w = Walker::new(body)?;
    let mut feed: Option<(Option<String>, Vec<RawEntry>)> = None;
    let mut single: Option<RawEntry> = None;
    let mut current: Option<RawEntry> = None;
    let mut root_seen = false;
    loop {
        match w.step()? {
            Step::Eof => break,
            Step::Start => {
                if w.path.len() == 1 {
                    if root_seen {
                        return Err(xml_error("more than one root element"));
                    }
                    root_seen = true;
                    if w.is(0, Ns::Atom, "feed") {
                        feed = Some((None, Vec::new()));
                    } else if w.is(0, Ns::Atom, "entry") {
                        current = Some(RawEntry::default());
                    } else {
                        let n = &w.path[0];
                        return Err(xml_error(format!(
                            "the root element <{}> is not an Atom entry or feed",
                            n.name
                        )));
                    }
                    continue;
                }
                let base = usize::from(feed.is_some());
                if feed.is_some() && w.path.len() == 2 && w.is(1, Ns::Atom, "entry") {
                    current = Some(RawEntry::default());
                }
                let Some(entry) = current.as_mut() else {
                    continue;
                };
                let depth = w.path.len() - 1;
                if depth == base + 1 && w.is(depth, Ns::Atom, "content") {
                    entry.has_content = true;
                } else if depth == base + 2
                    && w.is(base + 1, Ns::Atom, "content")
                    && entry.description.is_none()
                {
                    if let Some(n) = w.node(depth).filter(|n| n.ns == Ns::ServiceBus) {
                        entry.description = Some(RawDescription {
                            kind: n.name.clone(),
                            ..RawDescription::default()
                        });
                    }
                }
            }
            Step::End(text) => {
                let depth = w.path.len() - 1;
                let base = usize::from(feed.is_some());
                if let Some((title, entries)) = feed.as_mut() {
                    if depth == 1 && w.is(1, Ns::Atom, "title") {
                        set_once(title, text);
                        continue;
                    }
                    if depth == 1 && w.is(1, Ns::Atom, "entry") {
                        entries.extend(current.take());
                        continue;
                    }
                } else if depth == 0 {
                    single = current.take();
                    continue;
                }
                let Some(entry) = current.as_mut() else {
                    continue;
                };
                if depth == base + 1 {
                    let Some(n) = w.node(depth).filter(|n| n.ns == Ns::Atom) else {
                        continue;
                    };
                    match n.name.as_str() {
                        "title" => set_once(&mut entry.title, text),
                        "id" => set_once(&mut entry.id, text.trim().to_owned()),
                        "published" => set_once(&mut entry.published, text),
                        "updated" => set_once(&mut entry.updated, text),
                        _ => {}
                    }
                    continue;
                }
                // content / Description / field [/ string]
                let in_description = depth >= base + 3
                    && w.is(base + 1, Ns::Atom, "content")
                    && w.node(base + 2).is_some_and(|n| n.ns == Ns::ServiceBus);
                let Some(d) = entry.description.as_mut().filter(|_| in_description) else {
                    continue;
                };
                let field = &w.path[base + 3];
                if depth == base + 3 && field.ns == Ns::ServiceBus && field.name != "PartitionIds" {
                    d.fields.push((field.name.clone(), text));
                } else if depth == base + 4
                    && field.ns == Ns::ServiceBus
                    && field.name == "PartitionIds"
                    && w.node(depth).is_some_and(|n| n.name == "string")
                {
                    d.partition_ids.push(text.trim().to_owned());
                }
            }
        }
    }
    if let Some((title, entries)) = feed {
        return Ok(RawDocument::Feed { title, entries });
    }
    single
        .map(RawDocument::Entry)
        .ok_or_else(|| xml_error("no Atom entry or feed"))
}

fn description_of<'e>(entry: &'e RawEntry, kind: &str) -> Result<&'e RawDescription, XmlError> {
    if !entry.has_content {
        return Err(xml_error("the entry has no content"));
    }
    match &entry.description {
        Some(d) if d.kind == kind => Ok(d),
        Some(d) => Err(xml_error(format!(
            "the entry's content is a {}, not an {kind}",
            d.kind
        ))),
        None => Err(xml_error(format!("the entry's content holds no {kind}"))),
    }
}

fn hub_from_raw(entry: &RawEntry) -> Result<HubEntity, XmlError> {
    let d = description_of(entry, HUB_DESCRIPTION)?;
    let name = entry
        .title
        .clone()
        .ok_or_else(|| xml_error("the entry has no title (the hub's name)"))?;
    let opt_time =
        |name: &str, v: &Option<String>| v.as_deref().map(|v| rfc3339(name, v)).transpose();
    Ok(HubEntity {
        name,
        id: entry.id.clone(),
        published: opt_time("published", &entry.published)?,
        updated: opt_time("updated", &entry.updated)?,
        message_retention_in_days: d.number("MessageRetentionInDays")?,
        size_in_bytes: d.number("SizeInBytes")?,
        status: d
            .get("Status")
            .map(|s| s.parse().unwrap_or(EntityStatus::Unknown)),
        created_at: d.time("CreatedAt")?,
        updated_at: d.time("UpdatedAt")?,
        user_metadata: d.get("UserMetadata").map(str::to_owned),
        partition_count: d.number("PartitionCount")?,
        partition_ids: d.partition_ids.clone(),
        entity_availability_status: d
            .get("EntityAvailabilityStatus")
            .map(|s| s.trim().to_owned()),
    })
}

fn group_from_raw(entry: &RawEntry) -> Result<ConsumerGroupEntity, XmlError> {
    let d = description_of(entry, CONSUMER_GROUP_DESCRIPTION)?;
    let name = entry
        .title
        .clone()
        .ok_or_else(|| xml_error("the entry has no title (the consumer group's name)"))?;
    Ok(ConsumerGroupEntity {
        name,
        id: entry.id.clone(),
        created_at: d.time("CreatedAt")?,
        updated_at: d.time("UpdatedAt")?,
        user_metadata: d.get("UserMetadata").map(str::to_owned),
    })
}

fn only_entry(body: &[u8]) -> Result<RawEntry, XmlError> {
    match parse_document(body)? {
        RawDocument::Entry(e) => Ok(e),
        RawDocument::Feed { .. } => Err(xml_error("expected an Atom entry, found a feed")),
    }
}

/// The description in a create or update request for an event hub: the
/// writable properties (read-only ones such as `CreatedAt` are ignored).
/// A status other than the service's names is an error.
pub fn parse_hub_description(body: &[u8]) -> Result<HubDescription, XmlError> {
    let entry = only_entry(body)?;
    let d = description_of(&entry, HUB_DESCRIPTION)?;
    Ok(HubDescription {
        message_retention_in_days: d.number("MessageRetentionInDays")?,
        status: d
            .get("Status")
            .map(|s| s.parse().map_err(xml_error))
            .transpose()?,
        user_metadata: d.get("UserMetadata").map(str::to_owned),
        partition_count: d.number("PartitionCount")?,
    })
}

/// The description in a create or update request for a consumer group.
pub fn parse_consumer_group_description(body: &[u8]) -> Result<ConsumerGroupDescription, XmlError> {
    let entry = only_entry(body)?;
    let d = description_of(&entry, CONSUMER_GROUP_DESCRIPTION)?;
    Ok(ConsumerGroupDescription {
        user_metadata: d.get("UserMetadata").map(str::to_owned),
    })
}

/// What a reply body holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<T> {
    /// One entry.
    Entry(T),
    /// A feed: its title and entries.
    Feed {
        /// The feed's `title` (`EventHubs`, `ConsumerGroups`, or
        /// [`MISSING_ENTITY_FEED_TITLE`]).
        title: Option<String>,
        /// Its entries, in order.
        entries: Vec<T>,
    },
}

fn typed<T>(
    body: &[u8],
    convert: impl Fn(&RawEntry) -> Result<T, XmlError>,
) -> Result<Reply<T>, XmlError> {
    Ok(match parse_document(body)? {
        RawDocument::Entry(e) => Reply::Entry(convert(&e)?),
        RawDocument::Feed { title, entries } => Reply::Feed {
            title,
            entries: entries.iter().map(convert).collect::<Result<_, _>>()?,
        },
    })
}

/// Reads a reply about event hubs: an entry or a feed of entries.
pub fn parse_hub_reply(body: &[u8]) -> Result<Reply<HubEntity>, XmlError> {
    typed(body, hub_from_raw)
}

/// Reads a reply about consumer groups: an entry or a feed of entries.
pub fn parse_consumer_group_reply(body: &[u8]) -> Result<Reply<ConsumerGroupEntity>, XmlError> {
    typed(body, group_from_raw)
}

/// The `Code` and `Detail` of an `<Error>` body (in any namespace); `None`
/// when the body is not one.
pub fn parse_error(body: &[u8]) -> Option<(Option<String>, Option<String>)> {
    let mut w = Walker::new(body).ok()?;
    let (mut code, mut detail) = (None, None);
    let mut root_seen = false;
    loop {
        match w.step().ok()? {
            Step::Eof => break,
            Step::Start => {
                if w.path.len() == 1 {
                    if root_seen || w.path[0].name != "Error" {
                        return None;
                    }
                    root_seen = true;
                }
            }
            Step::End(text) => {
                if w.path.len() == 2 {
                    match w.path[1].name.as_str() {
                        "Code" => set_once(&mut code, text.trim().to_owned()),
                        "Detail" => set_once(&mut detail, text),
                        _ => {}
                    }
                }
            }
        }
    }
    root_seen.then_some((code, detail))
}
