//! Splitting a reply or event line into positional words and `KEYWORD=value` arguments.
//!
//! Values may be QuotedStrings (control-spec §2.1); tor writes many of them as CStrings
//! (§2.1.1), so unquoting follows the spec's compatible rule: `\n \t \r` and octal
//! `\0`..`\377` are C escapes, a backslash before any other character yields that character.

/// The arguments of one line: positional words in order, then keyword arguments in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Args {
    pub positional: Vec<String>,
    pub keywords: Vec<(String, String)>,
}

impl Args {
    /// Splits `text`; never fails (an unterminated quote runs to the end of the line).
    pub fn parse(text: &str) -> Args {
        let mut args = Args::default();
        args.extend(text);
        args
    }

    /// Adds the arguments of one more line (extra lines of a multi-line event, §4.1).
    pub fn extend(&mut self, text: &str) {
        let mut rest = text;
        loop {
            rest = rest.trim_start_matches(' ');
            if rest.is_empty() {
                return;
            }
            if rest.starts_with('"') {
                let (value, after) = take_quoted(rest);
                self.positional.push(value);
                rest = after;
                continue;
            }
            if let Some(key_len) = keyword_len(rest) {
                let key = &rest[..key_len];
                let after_eq = &rest[key_len + 1..];
                let (value, after) = if after_eq.starts_with('"') {
                    take_quoted(after_eq)
                } else {
                    let end = after_eq.find(' ').unwrap_or(after_eq.len());
                    (after_eq[..end].to_string(), &after_eq[end..])
                };
                self.keywords.push((key.to_string(), value));
                rest = after;
                continue;
            }
            let end = rest.find(' ').unwrap_or(rest.len());
            self.positional.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }

    /// The first value of `key` (tor sends each keyword once; a repeat is ignored).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.keywords
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Positional word `index`, if present.
    pub fn pos(&self, index: usize) -> Option<&str> {
        self.positional.get(index).map(String::as_str)
    }
}

/// Length of `KEY` when `text` starts with `KEY=`: a letter, then letters, digits, `_`.
/// Words like `$FP=nick` (old LongName) or `a=b` inside a path are not keywords because
/// they do not start with a letter-led keyword directly followed by `=`.
fn keyword_len(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    if !bytes.first()?.is_ascii_alphabetic() {
        return None;
    }
    let len = bytes
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_'))?;
    (bytes[len] == b'=').then_some(len)
}

/// Reads a quoted string at the start of `text` (which starts with `"`); returns the
/// unescaped value and the rest after the closing quote.
fn take_quoted(text: &str) -> (String, &str) {
    let bytes = text.as_bytes();
    let mut out: Vec<u8> = Vec::new();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return (String::from_utf8_lossy(&out).into_owned(), &text[i + 1..]),
            b'\\' if i + 1 < bytes.len() => {
                let next = bytes[i + 1];
                i += 2;
                match next {
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'0'..=b'7' => {
                        // Up to three octal digits; values over 0o377 keep the low byte.
                        let mut value = u32::from(next - b'0');
                        let mut digits = 1;
                        while digits < 3 && i < bytes.len() && (b'0'..=b'7').contains(&bytes[i]) {
                            value = value * 8 + u32::from(bytes[i] - b'0');
                            i += 1;
                            digits += 1;
                        }
                        out.push((value & 0xff) as u8);
                    }
                    other => out.push(other),
                }
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), "")
}

/// Writes `value` as a QuotedString a controller may send (§2.1): backslash and quote
/// escaped; CR and LF escaped too so the value cannot end the command line.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kw(args: &Args) -> Vec<(&str, &str)> {
        args.keywords
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn positional_then_keywords_in_any_order() {
        let args = Args::parse("1 FAILED 0 x.onion:80 PURPOSE=USER REASON=RESOLVEFAILED");
        assert_eq!(args.positional, ["1", "FAILED", "0", "x.onion:80"]);
        assert_eq!(
            kw(&args),
            [("PURPOSE", "USER"), ("REASON", "RESOLVEFAILED")]
        );
        assert_eq!(args.get("REASON"), Some("RESOLVEFAILED"));
        assert_eq!(args.get("MISSING"), None);
    }

    #[test]
    fn quoted_values_with_escapes() {
        let args = Args::parse(
            r#"NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done \"quoted\" a\\b" X="tab\there" O="\101\0\377""#,
        );
        assert_eq!(args.get("SUMMARY"), Some(r#"Done "quoted" a\b"#));
        assert_eq!(args.get("X"), Some("tab\there"));
        // \101 = 'A', \0 = NUL, \377 = 0xff (not UTF-8: replaced).
        assert_eq!(args.get("O"), Some("A\0\u{fffd}"));
    }

    #[test]
    fn spaces_inside_quotes_do_not_split() {
        let args = Args::parse(
            r#"AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE="/var/run/tor dir/control_auth_cookie""#,
        );
        assert_eq!(args.positional, ["AUTH"]);
        assert_eq!(
            args.get("COOKIEFILE"),
            Some("/var/run/tor dir/control_auth_cookie")
        );
    }

    #[test]
    fn long_names_with_equal_sign_stay_positional() {
        let args = Args::parse("5 BUILT $AAAA=nick,$BBBB~other PURPOSE=GENERAL");
        assert_eq!(args.positional, ["5", "BUILT", "$AAAA=nick,$BBBB~other"]);
        assert_eq!(args.get("PURPOSE"), Some("GENERAL"));
    }

    #[test]
    fn odd_input_never_fails() {
        for text in [
            "",
            " ",
            "\"",
            "A=\"unterminated",
            "A=",
            "=x",
            "\\",
            "A=\"\\",
            "A=\"\\7",
            "x  y",
        ] {
            let _ = Args::parse(text);
        }
        assert_eq!(Args::parse("A=").get("A"), Some(""));
        assert_eq!(Args::parse("=x").positional, ["=x"]);
        assert_eq!(Args::parse("A=\"open end").get("A"), Some("open end"));
    }

    #[test]
    fn quote_round_trips() {
        for value in ["plain", "with space", "q\"uote", "back\\slash", "new\nline"] {
            let args = Args::parse(&format!("K={}", quote(value)));
            assert_eq!(args.get("K"), Some(value));
        }
    }
}
