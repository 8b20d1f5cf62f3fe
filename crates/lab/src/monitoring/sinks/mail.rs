//! Just enough of MIME to read what Alertmanager mails: headers (folded, with RFC 2047
//! encoded words), multipart bodies, quoted-printable and base64 parts, and HTML reduced to text.
//!
//! Lenient by design: anything it cannot decode is kept as raw text, never an error, so a
//! message always gets recorded.

use base64::Engine;

/// How deep multipart parts may nest before the rest is kept raw.
const MAX_DEPTH: usize = 4;

/// A received message, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub subject: String,
    /// The text/plain part if there is one, else the text/html part reduced to text, else the
    /// raw body.
    pub text: String,
}

/// Decodes a message as received after DATA (dot-unstuffed, CRLF or LF line ends).
pub fn parse_mail(raw: &[u8]) -> Mail {
    let raw = String::from_utf8_lossy(raw).replace("\r\n", "\n");
    let (headers, body) = split_head(&raw);
    let subject = header(&headers, "subject")
        .map(decode_words)
        .unwrap_or_default();
    let (plain, html) = texts(&headers, body, 0);
    let text = plain
        .or_else(|| html.map(|html| html_to_text(&html)))
        .unwrap_or_else(|| body.to_string());
    Mail { subject, text }
}

/// Headers (unfolded, as name/value pairs) and the body.
fn split_head(message: &str) -> (Vec<(String, String)>, &str) {
    let (head, body) = match message.find("\n\n") {
        Some(end) => (&message[..end], &message[end + 2..]),
        None => (message, ""),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    (headers, body)
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(header, _)| header == name)
        .map(|(_, value)| value.as_str())
}

/// The value of `name=` in a header such as `multipart/alternative; boundary="x"`.
fn parameter(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|part| {
        let (key, value) = part.trim().split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().trim_matches('"').to_string())
    })
}

/// The first text/plain and text/html bodies, decoded, looking into multipart parts.
fn texts(
    headers: &[(String, String)],
    body: &str,
    depth: usize,
) -> (Option<String>, Option<String>) {
    let content_type = header(headers, "content-type").unwrap_or("text/plain");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if media.starts_with("multipart/") && depth < MAX_DEPTH {
        let Some(boundary) = parameter(content_type, "boundary").filter(|b| !b.is_empty()) else {
            return (Some(body.to_string()), None);
        };
        let delimiter = format!("--{boundary}");
        let (mut plain, mut html) = (None, None);
        // Parts sit between delimiter lines; the first chunk is the preamble.
        for part in body.split(delimiter.as_str()).skip(1) {
            if part.starts_with("--") {
                break;
            }
            let part = part.strip_prefix('\n').unwrap_or(part);
            let (part_headers, part_body) = split_head(part);
            let (part_plain, part_html) = texts(&part_headers, part_body, depth + 1);
            plain = plain.or(part_plain);
            html = html.or(part_html);
        }
        return (plain, html);
    }
    let encoding = header(headers, "content-transfer-encoding")
        .unwrap_or("7bit")
        .to_ascii_lowercase();
    let decoded = match encoding.trim() {
        "quoted-printable" => String::from_utf8_lossy(&decode_quoted_printable(body)).into_owned(),
        "base64" => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            match base64::engine::general_purpose::STANDARD.decode(compact) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(_) => body.to_string(),
            }
        }
        _ => body.to_string(),
    };
    match media.as_str() {
        "text/html" => (None, Some(decoded)),
        _ => (Some(decoded), None),
    }
}

/// Quoted-printable (RFC 2045): `=XX` bytes and `=` soft line breaks; a stray `=` is kept.
pub fn decode_quoted_printable(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] != b'=' {
            out.push(bytes[index]);
            index += 1;
            continue;
        }
        let rest = &bytes[index + 1..];
        if rest.starts_with(b"\r\n") {
            index += 3;
        } else if rest.starts_with(b"\n") {
            index += 2;
        } else if let Some(byte) = rest
            .get(..2)
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok())
        {
            out.push(byte);
            index += 3;
        } else {
            out.push(b'=');
            index += 1;
        }
    }
    out
}

/// Decodes RFC 2047 encoded words (`=?UTF-8?q?…?=`, `=?utf-8?B?…?=`) in a header value;
/// whitespace between two encoded words is dropped, as the RFC says. Anything malformed stays.
pub fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut previous_was_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, candidate) = rest.split_at(start);
        match decode_word(candidate) {
            Some((decoded, used)) => {
                if !(previous_was_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&decoded);
                rest = &candidate[used..];
                previous_was_word = true;
            }
            None => {
                out.push_str(before);
                out.push_str("=?");
                rest = &candidate[2..];
                previous_was_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// One encoded word at the start of `text`: its decoded text and the bytes it took.
fn decode_word(text: &str) -> Option<(String, usize)> {
    let inner = text.strip_prefix("=?")?;
    let (_charset, inner) = inner.split_once('?')?;
    let (encoding, inner) = inner.split_once('?')?;
    let end = inner.find("?=")?;
    let payload = &inner[..end];
    let used = text.len() - inner.len() + end + 2;
    let bytes = match encoding {
        "q" | "Q" => decode_quoted_printable(&payload.replace('_', " ")),
        "b" | "B" => base64::engine::general_purpose::STANDARD
            .decode(payload)
            .ok()?,
        _ => return None,
    };
    Some((String::from_utf8_lossy(&bytes).into_owned(), used))
}

/// HTML reduced to readable text: style and script dropped, line-ending tags made newlines,
/// other tags removed, the common entities decoded, blank lines squeezed.
pub fn html_to_text(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        text.push_str(&rest[..start]);
        let tag_and_after = &rest[start..];
        let Some(end) = tag_and_after.find('>') else {
            rest = "";
            break;
        };
        let tag = tag_and_after[1..end].trim().to_ascii_lowercase();
        rest = &tag_and_after[end + 1..];
        let name = tag
            .trim_start_matches('/')
            .split([' ', '/'])
            .next()
            .unwrap_or_default()
            .to_string();
        if !tag.starts_with('/') && (name == "style" || name == "script") {
            // Skips to the closing tag; its content is not text.
            let closing = format!("</{name}");
            match rest.to_ascii_lowercase().find(&closing) {
                Some(at) => rest = &rest[at..],
                None => rest = "",
            }
            continue;
        }
        if [
            "br", "p", "tr", "div", "li", "table", "h1", "h2", "h3", "hr",
        ]
        .contains(&name.as_str())
        {
            text.push('\n');
        } else if name == "td" {
            text.push(' ');
        }
    }
    text.push_str(rest);
    let text = text
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    text.lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}
