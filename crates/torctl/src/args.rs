//! Splitting a reply or event line into positional words and `KEYWORD=value` arguments.
//!
//! Values may be QuotedStrings (control-spec §2.1); tor writes many of them as CStrings
//! (§2.1.1), so unquoting follows the spec's compatible rule: `\n \t \r` and octal
//! `\0`..`\377` are C escapes, a backslash before any other character yields that character.

use std::borrow::Cow;

/// The arguments of one line: positional words in order, then keyword arguments in order.
///
/// Words and values borrow from the line; only a quoted value with escapes is copied
/// (allocating a `String` per word was a third of the parser's time).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Args<'a> {
    pub positional: Vec<Cow<'a, str>>,
    pub keywords: Vec<(&'a str, Cow<'a, str>)>,
}

impl<'a> Args<'a> {
    /// Splits `text`; never fails (an unterminated quote runs to the end of the line).
    pub fn parse(text: &'a str) -> Args<'a> {
        // Room for a STREAM or CIRC line's words without regrowing.
        let mut args = Args {
            positional: Vec::with_capacity(8),
            keywords: Vec::with_capacity(8),
        };
        args.extend(text);
        args
    }

    /// Adds the arguments of one more line (extra lines of a multi-line event, §4.1).
    ///
    /// A word is `KEY=value` when it starts with a letter, then letters, digits or `_` up to
    /// `=`; so `$FP=nick` (an old LongName) or `a/b=c` stays positional.
    ///
    /// One pass over the bytes: each word is scanned once, for its end and for whether it
    /// starts with `KEY=`. Every index it slices at is at an ASCII byte (space, quote, `=`,
    /// a key character) or the end, so always a char boundary.
    pub fn extend(&mut self, text: &'a str) {
        let bytes = text.as_bytes();
        let word_end =
            |from: usize| memchr::memchr(b' ', &bytes[from..]).map_or(bytes.len(), |at| from + at);
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b' ' => i += 1,
                b'"' => {
                    let (value, after) = take_quoted(&text[i..]);
                    self.positional.push(value);
                    i = text.len() - after.len();
                }
                first => {
                    // Where a key would end: the first byte that cannot be in a key.
                    let scanned = if first.is_ascii_alphabetic() {
                        bytes[i..]
                            .iter()
                            .position(|&b| !KEY_BYTE[usize::from(b)])
                            .map_or(bytes.len(), |len| i + len)
                    } else {
                        i
                    };
                    let key_end = (bytes.get(scanned) == Some(&b'=')).then_some(scanned);
                    match key_end.filter(|_| scanned > i) {
                        Some(key_end) => {
                            let key = &text[i..key_end];
                            let value = key_end + 1;
                            if bytes.get(value) == Some(&b'"') {
                                let (value, after) = take_quoted(&text[value..]);
                                self.keywords.push((key, value));
                                i = text.len() - after.len();
                            } else {
                                let end = word_end(value);
                                self.keywords.push((key, Cow::Borrowed(&text[value..end])));
                                i = end;
                            }
                        }
                        None => {
                            // No space before `scanned`: search on from there.
                            let end = word_end(scanned);
                            self.positional.push(Cow::Borrowed(&text[i..end]));
                            i = end;
                        }
                    }
                }
            }
        }
    }

    /// The first value of `key` (tor sends each keyword once; a repeat is ignored).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.keywords
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// Positional word `index`, if present.
    pub fn pos(&self, index: usize) -> Option<&str> {
        self.positional.get(index).map(|word| word.as_ref())
    }

    /// Positional word `index`, borrowing from the line when it can (a copy only for a
    /// quoted word with escapes).
    pub fn word(&self, index: usize) -> Option<Cow<'a, str>> {
        self.positional.get(index).cloned()
    }

    /// The first value of `key`, borrowing from the line when it can.
    pub fn value(&self, key: &str) -> Option<Cow<'a, str>> {
        self.keywords
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }
}

/// Bytes a keyword may hold after its first letter: letters, digits, `_`. A table, because
/// the scan runs over every long positional word (onion hosts, paths) too.
const KEY_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric() || b == b'_' as usize;
        b += 1;
    }
    table
};

/// Reads a quoted string at the start of `text` (which starts with `"`); returns the
/// unescaped value and the rest after the closing quote. Borrowed when it has no escapes.
fn take_quoted(text: &str) -> (Cow<'_, str>, &str) {
    let bytes = text.as_bytes();
    // Fast path: no backslash before the closing quote (quote and backslash are ASCII, so
    // the slice boundaries are char boundaries).
    match bytes[1..].iter().position(|&b| b == b'"' || b == b'\\') {
        Some(at) if bytes[1 + at] == b'"' => {
            return (Cow::Borrowed(&text[1..1 + at]), &text[2 + at..]);
        }
        None => return (Cow::Borrowed(&text[1..]), ""),
        Some(_) => {}
    }
    let mut out: Vec<u8> = Vec::new();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return (Cow::Owned(utf8_lossy(out)), &text[i + 1..]),
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
    (Cow::Owned(utf8_lossy(out)), "")
}

/// Bytes as a `String`, invalid UTF-8 replaced (U+FFFD).
fn utf8_lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
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

    fn kw<'a>(args: &'a Args) -> Vec<(&'a str, &'a str)> {
        args.keywords
            .iter()
            .map(|(k, v)| (*k, v.as_ref()))
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
            let line = format!("K={}", quote(value));
            let args = Args::parse(&line);
            assert_eq!(args.get("K"), Some(value));
        }
    }
}

/// The borrowed one-pass splitter against the owned, word-by-word splitter it replaced
/// (kept here as the reference), on arbitrary text.
#[cfg(test)]
mod reference {
    use super::*;
    use proptest::prelude::*;

    fn reference(text: &str) -> (Vec<String>, Vec<(String, String)>) {
        let (mut positional, mut keywords) = (Vec::new(), Vec::new());
        let mut rest = text;
        loop {
            rest = rest.trim_start_matches(' ');
            if rest.is_empty() {
                return (positional, keywords);
            }
            if rest.starts_with('"') {
                let (value, after) = take_quoted(rest);
                positional.push(value.into_owned());
                rest = after;
                continue;
            }
            let bytes = rest.as_bytes();
            let key_len = bytes[0]
                .is_ascii_alphabetic()
                .then(|| {
                    bytes
                        .iter()
                        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_'))
                })
                .flatten()
                .filter(|&len| bytes[len] == b'=');
            if let Some(key_len) = key_len {
                let after_eq = &rest[key_len + 1..];
                let (value, after) = if after_eq.starts_with('"') {
                    let (value, after) = take_quoted(after_eq);
                    (value.into_owned(), after)
                } else {
                    let end = after_eq.find(' ').unwrap_or(after_eq.len());
                    (after_eq[..end].to_string(), &after_eq[end..])
                };
                keywords.push((rest[..key_len].to_string(), value));
                rest = after;
                continue;
            }
            let end = rest.find(' ').unwrap_or(rest.len());
            positional.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }

    proptest! {
        #[test]
        fn same_words_as_the_reference(text in "([A-Za-z_0-9 =\"\\\\$~,.:é\u{0}]|KEY=|\\\\[0-7nrt\"]){0,40}") {
            let args = Args::parse(&text);
            let positional: Vec<String> = args.positional.iter().map(|w| w.to_string()).collect();
            let keywords: Vec<(String, String)> =
                args.keywords.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            prop_assert_eq!((positional, keywords), reference(&text));
        }
    }
}
