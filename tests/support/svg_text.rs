//! The text an SVG (or a page or dumped DOM holding one) shows, for tests of the map.

/// The text of every `<text>` element of an SVG, a page or a dumped DOM, tspans joined, entities decoded.
pub fn texts(dom: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(start) = rest.find("<text ") {
        let body_start = start + rest[start..].find('>').unwrap() + 1;
        let end = body_start + rest[body_start..].find("</text>").unwrap();
        let mut plain = String::new();
        let mut in_tag = false;
        for c in rest[body_start..end].chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => plain.push(c),
                _ => {}
            }
        }
        out.push(
            plain
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
        rest = &rest[end..];
    }
    out
}
