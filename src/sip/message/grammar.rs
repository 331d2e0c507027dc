//! Low-level RFC 3261 §25 lexical helpers shared by the message parser: token and quoted-string
//! scanning, generic parameter lists, comma splitting, hosts and ports.
//!
//! Safety rule for everything here: byte offsets are only ever taken at ASCII bytes (or just after
//! one), which are always `char` boundaries in UTF-8, so slicing a `&str` can never panic.

use super::{Host, Params, ParseError};
use std::net::{Ipv4Addr, Ipv6Addr};

/// `token` characters (RFC 3261 §25.1): alphanum and `-.!%*_+`'~`.
pub(crate) fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// Linear white space once folding has been undone (CR/LF tolerated for values built by hand).
pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

pub(crate) fn trim_ws(s: &str) -> &str {
    s.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\r' || c == '\n')
}

pub(crate) fn header_err(header: &str, reason: impl Into<String>) -> ParseError {
    ParseError::Header {
        header: header.to_string(),
        reason: reason.into(),
    }
}

/// A forward-only scanner over a `&str`.
pub(crate) struct Cursor<'a> {
    pub s: &'a str,
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(s: &'a str) -> Self {
        Cursor { s, pos: 0 }
    }
    pub fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }
    pub fn eof(&self) -> bool {
        self.pos >= self.s.len()
    }
    pub fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }
    pub fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b) if is_ws(b)) {
            self.pos += 1;
        }
    }
    /// Consumes `b` (ASCII) if it is next.
    pub fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    /// Consumes ASCII bytes while `f` holds (`f` must reject every non-ASCII byte).
    pub fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while matches!(self.peek(), Some(b) if b.is_ascii() && f(b)) {
            self.pos += 1;
        }
        self.s.get(start..self.pos).unwrap_or("")
    }
    /// Parses a quoted-string starting at the opening `"`; returns the unescaped content.
    pub fn quoted(&mut self) -> Option<String> {
        if !self.eat(b'"') {
            return None;
        }
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Some(out);
                }
                '\\' => match chars.next() {
                    Some((_, e)) => out.push(e),
                    None => return None,
                },
                _ => out.push(c),
            }
        }
        None
    }
}

/// Splits a header value at top-level commas: commas inside a quoted string (with `\` escapes)
/// or inside `<...>` do not split. Elements are trimmed.
pub(crate) fn split_list(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let (mut in_quote, mut in_angle, mut escaped) = (false, false, false);
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quote = false;
            }
            continue;
        }
        match b {
            b'"' => in_quote = true,
            b'<' => in_angle = true,
            b'>' => in_angle = false,
            b',' if !in_angle => {
                out.push(trim_ws(s.get(start..i).unwrap_or("")));
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(trim_ws(s.get(start..).unwrap_or("")));
    out
}

/// Characters of an unquoted parameter value. Wider than `token` so that IPv6 references and
/// addresses (`received=2001:db8::9`, `maddr=[::1]`) and the odd real-world value survive.
fn is_value_char(b: u8) -> bool {
    is_token_char(b) || b":[]/@?&=$#^{}|".contains(&b)
}

/// Parses `*( SEMI generic-param )` with LWS allowed around `;` and `=`. Quoted values are
/// stored unescaped. `what` names the header for error messages. Stops at end of input only:
/// anything that is not a parameter is an error.
pub(crate) fn parse_header_params(c: &mut Cursor<'_>, what: &str) -> Result<Params, ParseError> {
    let mut params = Params::default();
    loop {
        c.skip_ws();
        if c.eof() {
            return Ok(params);
        }
        if !c.eat(b';') {
            return Err(header_err(
                what,
                format!("unexpected text {:?}", truncate(c.rest())),
            ));
        }
        c.skip_ws();
        let name = c.take_while(is_token_char);
        if name.is_empty() {
            return Err(header_err(what, "empty parameter name"));
        }
        c.skip_ws();
        let value = if c.eat(b'=') {
            c.skip_ws();
            if c.peek() == Some(b'"') {
                match c.quoted() {
                    Some(v) => Some(v),
                    None => {
                        return Err(header_err(
                            what,
                            format!("unterminated quoted value of {name}"),
                        ))
                    }
                }
            } else {
                let v = c.take_while(is_value_char);
                if v.is_empty() {
                    return Err(header_err(what, format!("parameter {name} has no value")));
                }
                Some(v.to_string())
            }
        } else {
            None
        };
        params.0.push((name.to_string(), value));
    }
}

/// Parses raw URI parameters `;a=b;c` (no LWS, no quoting; escapes kept as written).
pub(crate) fn parse_uri_params(s: &str, what: &str) -> Result<Params, ParseError> {
    let mut params = Params::default();
    if s.is_empty() {
        return Ok(params);
    }
    for p in s.split(';') {
        let (name, value) = match p.find('=') {
            Some(i) => (
                p.get(..i).unwrap_or(""),
                Some(p.get(i + 1..).unwrap_or("").to_string()),
            ),
            None => (p, None),
        };
        if name.is_empty() {
            return Err(header_err(what, "empty URI parameter name"));
        }
        if !name.bytes().all(is_uri_char)
            || !value.as_deref().unwrap_or("").bytes().all(is_uri_char)
        {
            return Err(header_err(what, format!("bad URI parameter {p:?}")));
        }
        params.0.push((name.to_string(), value));
    }
    Ok(params)
}

/// Characters allowed (leniently) inside a URI: visible ASCII except the delimiters that can
/// never appear unescaped in a SIP URI component.
pub(crate) fn is_uri_char(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"' | b'\\' | b'{' | b'}' | b'|' | b'^')
}

/// Checks `%XX` escapes are complete hex pairs.
pub(crate) fn escapes_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            match (b.get(i + 1), b.get(i + 2)) {
                (Some(x), Some(y)) if x.is_ascii_hexdigit() && y.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else {
            i += 1;
        }
    }
    true
}

/// Parses a host: `[IPv6]`, dotted IPv4, or a host name (alphanum, `-`, `.`, `_`).
pub(crate) fn parse_host(s: &str, what: &str) -> Result<Host, ParseError> {
    if let Some(inner) = s.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| header_err(what, format!("unterminated IPv6 reference {s:?}")))?;
        return inner
            .parse::<Ipv6Addr>()
            .map(Host::V6)
            .map_err(|_| header_err(what, format!("bad IPv6 address {inner:?}")));
    }
    if s.is_empty() {
        return Err(header_err(what, "empty host"));
    }
    if let Ok(v4) = s.parse::<Ipv4Addr>() {
        return Ok(Host::V4(v4));
    }
    // A bare IPv6 address where a host is expected (seen in some Via sent-by values).
    if s.contains(':') {
        return s
            .parse::<Ipv6Addr>()
            .map(Host::V6)
            .map_err(|_| header_err(what, format!("bad host {s:?}")));
    }
    if s.len() > 255
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err(header_err(what, format!("bad host {:?}", truncate(s))));
    }
    Ok(Host::Name(s.to_string()))
}

pub(crate) fn parse_port(s: &str, what: &str) -> Result<u16, ParseError> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(header_err(what, format!("bad port {:?}", truncate(s))));
    }
    s.parse::<u16>()
        .map_err(|_| header_err(what, format!("port {s} out of range")))
}

/// Splits `host[:port]` where host may be an `[IPv6]` reference. Returns (host, port text).
pub(crate) fn split_hostport(s: &str) -> (&str, Option<&str>) {
    if s.starts_with('[') {
        if let Some(end) = s.find(']') {
            let host = s.get(..=end).unwrap_or(s);
            let rest = s.get(end + 1..).unwrap_or("");
            return match rest.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None if rest.is_empty() => (host, None),
                // Garbage after `]`: hand it to the host parser, which rejects it.
                None => (s, None),
            };
        }
        return (s, None);
    }
    // Exactly one colon: host:port. Several colons: a bare IPv6 address without a port.
    match (s.find(':'), s.rfind(':')) {
        (Some(i), Some(j)) if i == j => (s.get(..i).unwrap_or(""), s.get(i + 1..)),
        _ => (s, None),
    }
}

/// Shortens untrusted text quoted in error messages.
pub(crate) fn truncate(s: &str) -> &str {
    let mut end = s.len().min(60);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// Writes `s` as a quoted-string, escaping `"` and `\`.
pub(crate) fn write_quoted(f: &mut impl std::fmt::Write, s: &str) -> std::fmt::Result {
    f.write_char('"')?;
    for ch in s.chars() {
        if ch == '"' || ch == '\\' {
            f.write_char('\\')?;
        }
        f.write_char(ch)?;
    }
    f.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_respects_quotes_and_angles() {
        let v = split_list(r#""a, \"b," <sip:x@y;p=1,2>;q=1 , <sip:z>"#);
        assert_eq!(v, vec![r#""a, \"b," <sip:x@y;p=1,2>;q=1"#, "<sip:z>"]);
        assert_eq!(split_list("a,,b"), vec!["a", "", "b"]);
    }

    #[test]
    fn quoted_string_unescapes() {
        let mut c = Cursor::new(r#""J Rosenberg \\\"" rest"#);
        assert_eq!(c.quoted().as_deref(), Some(r#"J Rosenberg \""#));
        assert_eq!(c.rest(), " rest");
        assert!(Cursor::new(r#""open"#).quoted().is_none());
        assert!(Cursor::new(r#""open\"#).quoted().is_none());
    }

    #[test]
    fn header_params_with_lws_and_quotes() {
        let mut c = Cursor::new(r#" ;  tag = 98asjd8 ; lr ;+sip.instance="<urn:uuid:1>""#);
        let p = parse_header_params(&mut c, "From").unwrap();
        assert_eq!(p.get("TAG"), Some(Some("98asjd8")));
        assert_eq!(p.get("lr"), Some(None));
        assert_eq!(p.get("+sip.instance"), Some(Some("<urn:uuid:1>")));
        assert!(parse_header_params(&mut Cursor::new(";;"), "x").is_err());
        assert!(parse_header_params(&mut Cursor::new(";a=b c"), "x").is_err());
        assert!(parse_header_params(&mut Cursor::new(";a="), "x").is_err());
    }

    #[test]
    fn hosts() {
        assert_eq!(
            parse_host("[2001:db8::1]", "x").unwrap(),
            Host::V6("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            parse_host("192.0.2.1", "x").unwrap(),
            Host::V4(Ipv4Addr::new(192, 0, 2, 1))
        );
        assert!(parse_host("[::1", "x").is_err());
        assert!(parse_host("a b", "x").is_err());
        assert_eq!(split_hostport("[::1]:5060"), ("[::1]", Some("5060")));
        assert_eq!(split_hostport("h:5"), ("h", Some("5")));
        assert_eq!(split_hostport("2001:db8::9"), ("2001:db8::9", None));
        assert!(parse_port("65536", "x").is_err());
        assert!(escapes_ok("a%41") && !escapes_ok("a%4") && !escapes_ok("%zz"));
    }
}
