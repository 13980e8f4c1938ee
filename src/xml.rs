//! The text of one element in the small XML documents Hikvision devices send (an alert from
//! `alertStream`, the `ResponseStatus` a camera answers instead of a picture). A tolerant
//! scan, not a parser: these documents are a few hundred bytes, namespaced differently by
//! firmware, and only a handful of leaf elements are ever read. A leaf: it knows no stage.

/// The text of the first `<tag>…</tag>` (any namespace prefix) in a small XML document.
pub fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let mut rest = xml;
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        let end = rest.find('>')?;
        let name = rest[..end].split_whitespace().next().unwrap_or("");
        let local = name.rsplit(':').next().unwrap_or(name);
        if local == tag && !rest[..end].ends_with('/') {
            let body = &rest[end + 1..];
            let close = body.find("</")?;
            let value = body[..close].trim();
            return (!value.is_empty()).then(|| value.chars().take(200).collect());
        }
    }
    None
}
