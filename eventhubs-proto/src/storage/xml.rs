//! The XML the Blob service answers with: a List Blobs page
//! (`EnumerationResults`) and the error body (`Error`), read with
//! quick-xml.

use std::collections::BTreeMap;

use quick_xml::events::Event;
use quick_xml::Reader;

use super::error::XmlError;
use super::request::percent_decode;
use crate::http::date::parse_http_date;

/// Deepest element nesting accepted (the service's pages nest 5 deep).
const MAX_DEPTH: usize = 32;

/// One blob of a List Blobs page.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlobItem {
    /// The blob name, entity- and (for `Encoded="true"`) percent-decoded.
    pub name: String,
    /// `Properties/Etag`, without quotes (the listing sends it bare, the
    /// headers quoted).
    pub etag: Option<String>,
    /// `Properties/Last-Modified`, Unix seconds.
    pub last_modified_unix: Option<i64>,
    /// `Properties/Content-Length`.
    pub content_length: Option<u64>,
    /// `Metadata`: element name to text, as stored (an empty element is an
    /// empty value).
    pub metadata: BTreeMap<String, String>,
}

impl BlobItem {
    /// The metadata value for `key`, matched case-insensitively (metadata
    /// names are case-insensitive, as HTTP header names are).
    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

/// One page of List Blobs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListBlobsPage {
    /// The blobs, in the service's (lexicographic) order.
    pub blobs: Vec<BlobItem>,
    /// `NextMarker`: where the next page starts; `None` (absent or empty)
    /// on the last page.
    pub next_marker: Option<String>,
}

/// The quotes of an HTTP entity tag removed: `"0x1D"` and `0x1D` give
/// `0x1D`; `W/` weak prefixes are kept.
pub fn unquote_etag(etag: &str) -> &str {
    let e = etag.trim();
    e.strip_prefix('"')
        .and_then(|e| e.strip_suffix('"'))
        .unwrap_or(e)
}

fn xml_error(e: impl std::fmt::Display) -> XmlError {
    XmlError {
        reason: e.to_string(),
    }
}

/// Reads elements, tracking the path of local names and the text of the
/// innermost one.
struct Walker<'a> {
    reader: Reader<&'a [u8]>,
    path: Vec<String>,
    text: String,
    /// The element that ended last is popped at the next step, so that
    /// its path is still there for the caller.
    pop: bool,
}

enum Step {
    /// An element started; with its `Encoded="true"` attribute.
    Start {
        encoded: bool,
    },
    /// An element ended, with its text.
    End(String),
    Eof,
}

impl<'a> Walker<'a> {
    fn new(body: &'a [u8]) -> Result<Self, XmlError> {
        let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
        let text = std::str::from_utf8(body).map_err(|_| xml_error("not UTF-8"))?;
        let mut reader = Reader::from_str(text);
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

    /// The next start or end of an element; text is gathered on the way.
    fn step(&mut self) -> Result<Step, XmlError> {
        if std::mem::take(&mut self.pop) {
            self.path.pop();
        }
        loop {
            match self.reader.read_event().map_err(xml_error)? {
                Event::Start(s) => {
                    if self.path.len() >= MAX_DEPTH {
                        return Err(xml_error("elements nested too deep"));
                    }
                    let name = s.local_name().as_ref().to_owned();
                    let encoded = s
                        .try_get_attribute("Encoded")
                        .ok()
                        .flatten()
                        .is_some_and(|a| &*a.value == "true");
                    self.path.push(name);
                    self.text.clear();
                    return Ok(Step::Start { encoded });
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
                        return Err(xml_error("document ends inside an element"));
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

    /// True when the current element's path is `names`.
    fn at(&self, names: &[&str]) -> bool {
        self.path.len() == names.len() && self.path.iter().zip(names).all(|(a, b)| a == b)
    }
}

/// Parses a List Blobs response body (`EnumerationResults`).
pub fn parse_list_blobs(body: &[u8]) -> Result<ListBlobsPage, XmlError> {
    const BLOB: [&str; 3] = ["EnumerationResults", "Blobs", "Blob"];
    let mut w = Walker::new(body)?;
    let mut page = ListBlobsPage::default();
    let mut blob: Option<BlobItem> = None;
    let mut name_encoded = false;
    let mut root_seen = false;
    loop {
        match w.step()? {
            Step::Eof => break,
            Step::Start { encoded } => {
                if w.path.len() == 1 {
                    if w.path[0] != "EnumerationResults" || root_seen {
                        return Err(xml_error(format!(
                            "unexpected root element <{}>",
                            w.path[0]
                        )));
                    }
                    root_seen = true;
                } else if w.at(&BLOB) {
                    blob = Some(BlobItem::default());
                } else if w.at(&["EnumerationResults", "Blobs", "Blob", "Name"]) {
                    name_encoded = encoded;
                }
            }
            Step::End(text) => {
                let path: Vec<&str> = w.path.iter().map(String::as_str).collect();
                match path.as_slice() {
                    ["EnumerationResults", "NextMarker"] => {
                        page.next_marker = Some(text).filter(|m| !m.is_empty());
                    }
                    ["EnumerationResults", "Blobs", "Blob"] => {
                        if let Some(b) = blob.take() {
                            page.blobs.push(b);
                        }
                    }
                    ["EnumerationResults", "Blobs", "Blob", field] => {
                        if let (Some(b), &"Name") = (blob.as_mut(), field) {
                            b.name = if name_encoded {
                                percent_decode(&text)
                                    .ok_or_else(|| xml_error("bad percent-encoding in <Name>"))?
                            } else {
                                text
                            };
                        }
                    }
                    ["EnumerationResults", "Blobs", "Blob", "Properties", field] => {
                        if let Some(b) = blob.as_mut() {
                            match *field {
                                "Etag" => b.etag = Some(unquote_etag(&text).to_owned()),
                                "Last-Modified" => {
                                    b.last_modified_unix =
                                        Some(parse_http_date(&text).ok_or_else(|| {
                                            xml_error(format!("bad Last-Modified {text:?}"))
                                        })?)
                                }
                                "Content-Length" => {
                                    b.content_length = Some(text.trim().parse().map_err(|_| {
                                        xml_error(format!("bad Content-Length {text:?}"))
                                    })?)
                                }
                                _ => {}
                            }
                        }
                    }
                    ["EnumerationResults", "Blobs", "Blob", "Metadata", key] => {
                        if let Some(b) = blob.as_mut() {
                            b.metadata.insert((*key).to_owned(), text);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    if !root_seen {
        return Err(xml_error("no <EnumerationResults> element"));
    }
    Ok(page)
}

/// The `Code` and `Message` of an `<Error>` body; `None` when the body is
/// not one (empty, as on HEAD, or something else).
pub fn parse_error_body(body: &[u8]) -> Option<(Option<String>, Option<String>)> {
    if body.is_empty() {
        return None;
    }
    let mut w = Walker::new(body).ok()?;
    let (mut code, mut message) = (None, None);
    let mut root_seen = false;
    loop {
        match w.step().ok()? {
            Step::Eof => break,
            Step::Start { .. } => {
                if w.path.len() == 1 {
                    if w.path[0] != "Error" {
                        return None;
                    }
                    root_seen = true;
                }
            }
            Step::End(text) => {
                if w.at(&["Error", "Code"]) {
                    code = Some(text.trim().to_owned());
                } else if w.at(&["Error", "Message"]) {
                    message = Some(text);
                }
            }
        }
    }
    root_seen.then_some((code, message))
}
