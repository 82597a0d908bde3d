//! What the XML readers of the Blob Storage and management bodies share:
//! an element's text gathered from quick-xml's text, CDATA and reference
//! events.

use quick_xml::events::Event;

/// Appends the text `event` carries to `text`; `Ok(false)` when `event`
/// carries none. An unknown entity or a bad character reference is an
/// error that says so.
pub(crate) fn push_text(text: &mut String, event: &Event<'_>) -> Result<bool, String> {
    match event {
        Event::Text(t) => text.push_str(&t.xml10_content()),
        Event::CData(t) => text.push_str(&t.xml10_content()),
        Event::GeneralRef(r) => {
            if let Some(c) = r.resolve_char_ref().map_err(|e| e.to_string())? {
                text.push(c);
            } else {
                let entity = quick_xml::escape::resolve_xml_entity(r)
                    .ok_or_else(|| format!("unknown entity &{};", &**r))?;
                text.push_str(entity);
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}
