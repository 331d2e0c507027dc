//! SIP message parsing and serialisation (RFC 3261 §7, §20, §25).
//!
//! Parsing is two-stage, as in most production stacks: [`parse`] is lenient and only splits the
//! start line, the header fields (unfolded, compact names expanded to their long form) and the body
//! bounded by Content-Length; typed views ([`Via`], [`NameAddr`], [`CSeq`]...) are parsed on demand
//! by the accessors. This way a message with one bad header can still be answered with a 400 that
//! copies its Via, From, To, Call-ID and CSeq.
//!
//! Hand-written, not a crate: see `docs/decisions.md`. In short, rsip 0.4 (unmaintained) fails on
//! compact headers, folded lines and IPv6; rsipstack's fork rejects unknown methods and
//! `algorithm=SHA-256`; ezk-sip-types has no `tel:` URI at all. Real phones send all of these.

use bytes::Bytes;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A SIP method. Unknown extension methods are kept by name (a UAS answers them 501).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Info,
    Register,
    Notify,
    Subscribe,
    Refer,
    Message,
    Update,
    Prack,
    Publish,
    Other(String),
}

/// The host part of a SIP URI or Via sent-by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Name(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

/// A `;name=value` or `;name` parameter. Names compare case-insensitively via [`Params::get`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Params(pub Vec<(String, Option<String>)>);

/// `sip:` / `sips:` URI (RFC 3261 §19.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    pub secure: bool,
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Params,
    /// `?name=value&...` URI headers, raw.
    pub headers: Vec<(String, String)>,
}

/// `tel:` URI (RFC 3966): the number (global `+...` or local) and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelUri {
    pub number: String,
    pub params: Params,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    Sip(SipUri),
    Tel(TelUri),
    /// Any other absolute URI (`urn:`, `mailto:`...), kept as written.
    Other(String),
}

/// `display-name <uri>;params` or `uri;params` (From, To, Contact, Route...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    pub uri: Uri,
    /// Header parameters (after the `>`): tag, expires, +sip.instance, q...
    pub params: Params,
}

/// One Via value: `SIP/2.0/UDP host:port;branch=...;rport`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Upper case: UDP, TCP, TLS, WS, WSS, SCTP.
    pub transport: String,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Params,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

/// One header field as it appeared, unfolded, with its name in canonical long form
/// (`v` becomes `Via`, `i` becomes `Call-ID`, `content-length` becomes `Content-Length`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// Header fields in order. Lookups are case-insensitive on the canonical name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers(pub Vec<Header>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: Headers,
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

/// Why a message or a header could not be parsed. `Display` says what was wrong in words an
/// operator can act on (it is logged and used as the 400 reason phrase).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("message is empty")]
    Empty,
    #[error("bad start line: {0}")]
    StartLine(String),
    #[error("bad header line: {0}")]
    HeaderLine(String),
    #[error("bad {header} header: {reason}")]
    Header { header: String, reason: String },
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("body shorter than Content-Length ({expected} expected, {got} present)")]
    Truncated { expected: usize, got: usize },
    #[error("message larger than {0} bytes")]
    TooLarge(usize),
}

// ---------------------------------------------------------------------------------------------
// API (signatures are the contract other modules code against).
// ---------------------------------------------------------------------------------------------

mod grammar;
pub mod names;

use grammar::{
    escapes_ok, header_err, is_token, is_token_char, is_uri_char, is_ws, parse_header_params,
    parse_host, parse_port, parse_uri_params, split_hostport, split_list, trim_ws, truncate,
    write_quoted, Cursor,
};
pub use names::canonical_name;

/// Hard limit on the size of one message (head + body), on every transport. Anything larger is
/// rejected before any parsing work is done.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// Prefix of the [`ParseError::StartLine`] text for a SIP version other than 2.0; see
/// [`ParseError::status_code`].
const VERSION_ERROR: &str = "unsupported SIP version";

/// Parses one complete message (a UDP datagram, or one frame from [`super::framing`]).
/// Accepts CRLF or bare LF line ends, folded header lines, compact header names, any amount of
/// whitespace around the colon. The body is bounded by Content-Length when present (on UDP a
/// missing Content-Length means "the rest of the datagram").
pub fn parse(buf: &[u8]) -> Result<Message, ParseError> {
    parse_inner(buf, |start, len| {
        Bytes::copy_from_slice(buf.get(start..start + len).unwrap_or(&[]))
    })
}

/// Like [`parse`], but the body shares `buf`'s allocation instead of being copied (use it with
/// the frames of [`super::framing::StreamFramer`]).
pub fn parse_bytes(buf: &Bytes) -> Result<Message, ParseError> {
    parse_inner(buf, |start, len| buf.slice(start..start + len))
}

/// `body(start, len)` extracts the body; the caller guarantees `start + len <= buf.len()`.
fn parse_inner(
    buf: &[u8],
    body: impl FnOnce(usize, usize) -> Bytes,
) -> Result<Message, ParseError> {
    if buf.len() > MAX_MESSAGE_SIZE {
        return Err(ParseError::TooLarge(MAX_MESSAGE_SIZE));
    }
    // RFC 3261 §7.5: ignore CRLFs before the start line (keep-alives, stream leftovers).
    let skip = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .ok_or(ParseError::Empty)?;
    let (head_end, body_start) = find_head_end(buf, skip)?;
    let head = String::from_utf8_lossy(buf.get(skip..head_end).unwrap_or(&[]));
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start_line = lines.next().unwrap_or("");
    let headers = parse_header_lines(lines)?;

    let available = buf.len().saturating_sub(body_start);
    let body_len = match content_length(&headers)? {
        Some(n) if n > available => {
            return Err(ParseError::Truncated {
                expected: n,
                got: available,
            })
        }
        Some(n) => n,
        None => available,
    };
    let body = if body_len == 0 {
        Bytes::new()
    } else {
        body(body_start, body_len)
    };

    let start_line = start_line.trim_end_matches([' ', '\t']);
    if start_line
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
    {
        let (status, reason) = parse_status_line(start_line)?;
        Ok(Message::Response(Response {
            status,
            reason,
            headers,
            body,
        }))
    } else {
        let (method, uri) = parse_request_line(start_line)?;
        Ok(Message::Request(Request {
            method,
            uri,
            headers,
            body,
        }))
    }
}

/// Finds the empty line ending the head: returns (end of the head, start of the body). A
/// datagram that ends right after a complete header line (no empty line) is accepted with an
/// empty body, as most stacks do; a head cut inside a line is an error.
fn find_head_end(buf: &[u8], from: usize) -> Result<(usize, usize), ParseError> {
    let mut pos = from;
    while let Some(off) = buf
        .get(pos..)
        .and_then(|r| r.iter().position(|&b| b == b'\n'))
    {
        let nl = pos + off;
        match (buf.get(nl + 1), buf.get(nl + 2)) {
            (Some(b'\n'), _) => return Ok((nl, nl + 2)),
            (Some(b'\r'), Some(b'\n')) => return Ok((nl, nl + 3)),
            _ => pos = nl + 1,
        }
    }
    if pos == buf.len() && pos > from {
        Ok((buf.len(), buf.len()))
    } else {
        Err(ParseError::HeaderLine(
            "header section not terminated by an empty line".into(),
        ))
    }
}

fn parse_header_lines<'a>(lines: impl Iterator<Item = &'a str>) -> Result<Headers, ParseError> {
    let mut headers: Vec<Header> = Vec::with_capacity(16);
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // Folded continuation (RFC 3261 §7.3.1): same as one SP.
            let cont = trim_ws(line);
            let last = headers.last_mut().ok_or_else(|| {
                ParseError::HeaderLine("continuation line before the first header".into())
            })?;
            if !cont.is_empty() {
                if !last.value.is_empty() {
                    last.value.push(' ');
                }
                last.value.push_str(cont);
            }
            continue;
        }
        let colon = line
            .find(':')
            .ok_or_else(|| ParseError::HeaderLine(format!("no colon in {:?}", truncate(line))))?;
        let name = line
            .get(..colon)
            .unwrap_or("")
            .trim_end_matches([' ', '\t']);
        if !is_token(name) {
            return Err(ParseError::HeaderLine(format!(
                "bad header name {:?}",
                truncate(name)
            )));
        }
        let name = match canonical_name(name) {
            Some(n) => n.to_string(),
            None => name.to_string(),
        };
        let value = trim_ws(line.get(colon + 1..).unwrap_or("")).to_string();
        headers.push(Header { name, value });
    }
    Ok(Headers(headers))
}

/// The Content-Length value; several headers must agree (RFC 4475 §3.1.2.15 mcl01).
fn content_length(headers: &Headers) -> Result<Option<usize>, ParseError> {
    let mut found: Option<usize> = None;
    for v in headers.get_all("Content-Length") {
        let v = trim_ws(v);
        if v.is_empty() || v.len() > 9 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(header_err(
                "Content-Length",
                format!("not a length: {:?}", truncate(v)),
            ));
        }
        let n: usize = v
            .parse()
            .map_err(|_| header_err("Content-Length", "not a length"))?;
        match found {
            Some(prev) if prev != n => {
                return Err(header_err("Content-Length", "several different values"))
            }
            _ => found = Some(n),
        }
    }
    Ok(found)
}

fn check_version(v: &str) -> Result<(), ParseError> {
    if v.eq_ignore_ascii_case("SIP/2.0") {
        Ok(())
    } else {
        Err(ParseError::StartLine(format!(
            "{VERSION_ERROR} {:?}",
            truncate(v)
        )))
    }
}

fn parse_request_line(line: &str) -> Result<(Method, Uri), ParseError> {
    let bad = || ParseError::StartLine(format!("{:?}", truncate(line)));
    let (method, rest) = line.split_once(' ').ok_or_else(bad)?;
    let (uri, version) = rest.rsplit_once(' ').ok_or_else(bad)?;
    // Exactly one SP between the elements and none inside the URI (RFC 4475 lwsstart, lwsruri).
    if uri.is_empty() || uri.bytes().any(is_ws) {
        return Err(ParseError::StartLine(format!(
            "whitespace in or around the Request-URI: {:?}",
            truncate(line)
        )));
    }
    let method: Method = method.parse()?;
    check_version(version)?;
    let uri =
        Uri::parse(uri).map_err(|e| ParseError::StartLine(format!("bad Request-URI: {e}")))?;
    Ok((method, uri))
}

fn parse_status_line(line: &str) -> Result<(u16, String), ParseError> {
    let (version, rest) = line.split_once(' ').unwrap_or((line, ""));
    check_version(version)?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    let status = if code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) {
        code.parse::<u16>().ok()
    } else {
        None
    };
    match status {
        Some(s @ 100..=699) => Ok((s, reason.to_string())),
        _ => Err(ParseError::StartLine(format!(
            "bad status code {:?}",
            truncate(code)
        ))),
    }
}

impl ParseError {
    /// The status a UAS answers a request that failed with this error: 505 for a SIP version
    /// other than 2.0, 513 for an oversized message, 400 otherwise.
    pub fn status_code(&self) -> u16 {
        match self {
            ParseError::StartLine(s) if s.starts_with(VERSION_ERROR) => 505,
            ParseError::TooLarge(_) => 513,
            _ => 400,
        }
    }
}

impl Method {
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Register => "REGISTER",
            Method::Notify => "NOTIFY",
            Method::Subscribe => "SUBSCRIBE",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl std::str::FromStr for Method {
    type Err = ParseError;
    /// Methods are case-sensitive tokens (RFC 3261 §7.1); a valid unknown token gives `Other`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "REGISTER" => Method::Register,
            "NOTIFY" => Method::Notify,
            "SUBSCRIBE" => Method::Subscribe,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "PUBLISH" => Method::Publish,
            _ if is_token(s) => Method::Other(s.to_string()),
            _ => {
                return Err(ParseError::StartLine(format!(
                    "invalid method {:?}",
                    truncate(s)
                )))
            }
        })
    }
}

impl Params {
    /// Case-insensitive lookup. `Some(None)` means present without a value (`;rport`, `;lr`).
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
    /// Replaces the value of `name` or appends it.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        match self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(p) => p.1 = value.map(str::to_string),
            None => self.0.push((name.to_string(), value.map(str::to_string))),
        }
    }
    /// Removes every parameter with that name (case-insensitive).
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }
    /// Writes the parameters raw (`;name=value`, no quoting), as URI parameters must be.
    fn write_raw(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, v) in &self.0 {
            write!(f, ";{n}")?;
            if let Some(v) = v {
                write!(f, "={v}")?;
            }
        }
        Ok(())
    }
}

/// Does a header name (as stored) match the canonical form of a looked-up name?
fn name_matches(stored: &str, canonical: &str) -> bool {
    stored.eq_ignore_ascii_case(canonical)
        || (stored.len() == 1 && canonical_name(stored) == Some(canonical))
}

fn canonical_or_self(name: &str) -> &str {
    canonical_name(name).unwrap_or(name)
}

impl Headers {
    /// First value of a header (canonical or compact name accepted, case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        let canon = canonical_or_self(name);
        self.0
            .iter()
            .find(|h| name_matches(&h.name, canon))
            .map(|h| h.value.as_str())
    }
    /// Every header line with that name, in order (not split at commas).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let canon = canonical_or_self(name);
        self.0
            .iter()
            .filter(move |h| name_matches(&h.name, canon))
            .map(|h| h.value.as_str())
    }
    /// Every value of a comma-separated list header, across all its lines, split at top-level
    /// commas (quote- and bracket-aware). Empty elements are kept so callers can reject them.
    pub fn get_list<'a>(&'a self, name: &'a str) -> Vec<&'a str> {
        let mut out = Vec::new();
        for line in self.get_all(name) {
            out.extend(split_list(line));
        }
        out
    }
    /// How many lines carry that header.
    pub fn count(&self, name: &str) -> usize {
        self.get_all(name).count()
    }
    /// Appends a header (name as given).
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.0.push(Header {
            name: name.to_string(),
            value: value.into(),
        });
    }
    /// Removes every header with that name.
    pub fn remove(&mut self, name: &str) {
        let canon = canonical_or_self(name);
        self.0.retain(|h| !name_matches(&h.name, canon));
    }
    /// Replaces every header with that name by one with this value.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let canon = canonical_or_self(name);
        let value = value.into();
        match self.0.iter().position(|h| name_matches(&h.name, canon)) {
            Some(first) => {
                let mut i = 0;
                self.0.retain(|h| {
                    let keep = i <= first || !name_matches(&h.name, canon);
                    i += 1;
                    keep
                });
                if let Some(h) = self.0.get_mut(first) {
                    h.value = value;
                }
            }
            None => self.push(name, value),
        }
    }

    // Typed accessors shared by requests and responses.

    fn vias(&self) -> Result<Vec<Via>, ParseError> {
        self.get_list("Via").into_iter().map(Via::parse).collect()
    }
    fn name_addr(&self, name: &'static str) -> Result<NameAddr, ParseError> {
        let v = self.get(name).ok_or(ParseError::Missing(name))?;
        NameAddr::parse(v).map_err(|e| rename_err(e, name))
    }
    fn call_id(&self) -> Result<&str, ParseError> {
        let v = trim_ws(self.get("Call-ID").ok_or(ParseError::Missing("Call-ID"))?);
        if v.is_empty() || v.bytes().any(is_ws) {
            return Err(header_err("Call-ID", "empty or contains whitespace"));
        }
        Ok(v)
    }
    fn cseq(&self) -> Result<CSeq, ParseError> {
        let v = self.get("CSeq").ok_or(ParseError::Missing("CSeq"))?;
        CSeq::parse(v)
    }
    fn name_addr_list(&self, name: &'static str) -> Result<Vec<NameAddr>, ParseError> {
        self.get_list(name)
            .into_iter()
            .map(|v| NameAddr::parse(v).map_err(|e| rename_err(e, name)))
            .collect()
    }
    fn content_type(&self) -> Option<String> {
        let v = self.get("Content-Type")?;
        let t = trim_ws(v.split(';').next().unwrap_or(""));
        (!t.is_empty()).then(|| t.to_ascii_lowercase())
    }
    /// Writes the header section, replacing Content-Length (in place, or appended) by the
    /// body's length. CR and LF in values are replaced by spaces (no header injection).
    fn write(&self, out: &mut Vec<u8>, body_len: usize) {
        let mut wrote_cl = false;
        for h in &self.0 {
            if name_matches(&h.name, "Content-Length") {
                if !wrote_cl {
                    out.extend_from_slice(format!("Content-Length: {body_len}\r\n").as_bytes());
                    wrote_cl = true;
                }
                continue;
            }
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            if h.value.bytes().any(|b| b == b'\r' || b == b'\n') {
                out.extend(
                    h.value
                        .bytes()
                        .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
                );
            } else {
                out.extend_from_slice(h.value.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
        if !wrote_cl {
            out.extend_from_slice(format!("Content-Length: {body_len}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    fn size_hint(&self) -> usize {
        self.0
            .iter()
            .map(|h| h.name.len() + h.value.len() + 4)
            .sum::<usize>()
            + 32
    }
}

/// Errors from a typed header parser name the header they came from.
fn rename_err(e: ParseError, name: &str) -> ParseError {
    match e {
        ParseError::Header { reason, .. } => ParseError::Header {
            header: name.to_string(),
            reason,
        },
        other => other,
    }
}

impl CSeq {
    /// Parses `1*DIGIT LWS Method` (leading zeros allowed; the number must fit in 32 bits).
    pub fn parse(s: &str) -> Result<CSeq, ParseError> {
        let s = trim_ws(s);
        let mut it = s.split([' ', '\t']).filter(|p| !p.is_empty());
        let (num, method) = match (it.next(), it.next(), it.next()) {
            (Some(n), Some(m), None) => (n, m),
            _ => {
                return Err(header_err(
                    "CSeq",
                    format!("not `number method`: {:?}", truncate(s)),
                ))
            }
        };
        if !num.bytes().all(|b| b.is_ascii_digit()) {
            return Err(header_err("CSeq", "sequence number is not a number"));
        }
        let digits = num.trim_start_matches('0');
        let seq = if digits.is_empty() {
            0
        } else if digits.len() > 10 {
            return Err(header_err("CSeq", "sequence number too large"));
        } else {
            digits
                .parse::<u32>()
                .map_err(|_| header_err("CSeq", "sequence number too large"))?
        };
        let method = method
            .parse::<Method>()
            .map_err(|_| header_err("CSeq", format!("invalid method {:?}", truncate(method))))?;
        Ok(CSeq { seq, method })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

impl Request {
    /// Every Via value, top first, split at commas (quote-aware) across all Via lines.
    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        self.headers.vias()
    }
    pub fn top_via(&self) -> Result<Via, ParseError> {
        let first = self.headers.get("Via").ok_or(ParseError::Missing("Via"))?;
        let top = split_list(first).into_iter().next().unwrap_or("");
        Via::parse(top)
    }
    pub fn from(&self) -> Result<NameAddr, ParseError> {
        self.headers.name_addr("From")
    }
    pub fn to(&self) -> Result<NameAddr, ParseError> {
        self.headers.name_addr("To")
    }
    pub fn call_id(&self) -> Result<&str, ParseError> {
        self.headers.call_id()
    }
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        self.headers.cseq()
    }
    /// `None` when absent; an error when present but not a number 0..=255.
    pub fn max_forwards(&self) -> Result<Option<u32>, ParseError> {
        let Some(v) = self.headers.get("Max-Forwards") else {
            return Ok(None);
        };
        let v = trim_ws(v);
        let digits = v.trim_start_matches('0');
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 3 {
            return Err(header_err(
                "Max-Forwards",
                format!("not 0..=255: {:?}", truncate(v)),
            ));
        }
        let n: u32 = if digits.is_empty() {
            0
        } else {
            digits.parse().unwrap_or(u32::MAX)
        };
        if n > 255 {
            return Err(header_err("Max-Forwards", format!("{n} is over 255")));
        }
        Ok(Some(n))
    }
    /// Every Contact value, split at commas (quote- and bracket-aware). `*` gives an empty list
    /// and is reported by [`Request::contact_is_star`].
    pub fn contacts(&self) -> Result<Vec<NameAddr>, ParseError> {
        if self.contact_is_star() {
            return Ok(Vec::new());
        }
        self.headers.name_addr_list("Contact")
    }
    pub fn contact_is_star(&self) -> bool {
        self.headers.get_all("Contact").any(|v| trim_ws(v) == "*")
    }
    /// Record-Route values, top first.
    pub fn record_routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.headers.name_addr_list("Record-Route")
    }
    /// Route values, top first.
    pub fn routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.headers.name_addr_list("Route")
    }
    /// Path values (RFC 3327), top first.
    pub fn paths(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.headers.name_addr_list("Path")
    }
    /// P-Asserted-Identity values (RFC 3325), in order.
    pub fn asserted_identities(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.headers.name_addr_list("P-Asserted-Identity")
    }
    /// Content-Type without parameters, lower case (`application/sdp`).
    pub fn content_type(&self) -> Option<String> {
        self.headers.content_type()
    }
    /// Checks the headers every request must carry and be parseable (Via, From, To, Call-ID,
    /// CSeq with the same method as the request line, Max-Forwards if present).
    ///
    /// Also rejects several From, To, Call-ID, CSeq or Max-Forwards lines (RFC 4475 multi01).
    pub fn validate(&self) -> Result<(), ParseError> {
        let vias = self.vias()?;
        if vias.is_empty() {
            return Err(ParseError::Missing("Via"));
        }
        self.from()?;
        self.to()?;
        self.call_id()?;
        let cseq = self.cseq()?;
        if cseq.method != self.method {
            return Err(header_err(
                "CSeq",
                format!(
                    "method {} does not match the request line's {}",
                    cseq.method, self.method
                ),
            ));
        }
        self.max_forwards()?;
        check_single(
            &self.headers,
            &["From", "To", "Call-ID", "CSeq", "Max-Forwards"],
        )
    }
    /// Serialises, computing Content-Length from the body (any Content-Length header is replaced).
    pub fn to_bytes(&self) -> Bytes {
        let uri = self.uri.to_string();
        let mut out =
            Vec::with_capacity(self.headers.size_hint() + uri.len() + self.body.len() + 32);
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(uri.as_bytes());
        out.extend_from_slice(b" SIP/2.0\r\n");
        self.headers.write(&mut out, self.body.len());
        out.extend_from_slice(&self.body);
        Bytes::from(out)
    }
}

fn check_single(headers: &Headers, names: &[&'static str]) -> Result<(), ParseError> {
    for name in names {
        if headers.count(name) > 1 {
            return Err(header_err(name, "appears more than once"));
        }
    }
    Ok(())
}

impl Response {
    /// A response to `req` per RFC 3261 §8.2.6.2: copies Via (all), From, To, Call-ID and CSeq;
    /// the caller adds a To tag where needed. An empty `reason` gives [`reason_phrase`].
    /// A 100 also copies Timestamp (§8.2.6.1).
    pub fn for_request(req: &Request, status: u16, reason: &str) -> Response {
        let mut headers = Vec::with_capacity(8);
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            let canon = canonical_or_self(name);
            let lines = req
                .headers
                .0
                .iter()
                .filter(|h| name_matches(&h.name, canon));
            // Via: every line; the others are single-valued: the first one only.
            let take = if name == "Via" { usize::MAX } else { 1 };
            headers.extend(lines.take(take).map(|h| Header {
                name: name.to_string(),
                value: h.value.clone(),
            }));
        }
        if status == 100 {
            if let Some(ts) = req.headers.get("Timestamp") {
                headers.push(Header {
                    name: "Timestamp".into(),
                    value: ts.to_string(),
                });
            }
        }
        Response {
            status,
            reason: if reason.is_empty() {
                reason_phrase(status).to_string()
            } else {
                reason.to_string()
            },
            headers: Headers(headers),
            body: Bytes::new(),
        }
    }
    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        self.headers.vias()
    }
    pub fn from(&self) -> Result<NameAddr, ParseError> {
        self.headers.name_addr("From")
    }
    pub fn to(&self) -> Result<NameAddr, ParseError> {
        self.headers.name_addr("To")
    }
    pub fn call_id(&self) -> Result<&str, ParseError> {
        self.headers.call_id()
    }
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        self.headers.cseq()
    }
    /// Contact values of the response (a 2xx to INVITE carries the remote target).
    pub fn contacts(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.headers.name_addr_list("Contact")
    }
    /// Record-Route values, top first.
    pub fn record_routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.headers.name_addr_list("Record-Route")
    }
    pub fn content_type(&self) -> Option<String> {
        self.headers.content_type()
    }
    /// The checks a UAC applies before matching a response to a transaction: Via, From, To,
    /// Call-ID, CSeq present, parseable and (except Via) single.
    pub fn validate(&self) -> Result<(), ParseError> {
        if self.vias()?.is_empty() {
            return Err(ParseError::Missing("Via"));
        }
        self.from()?;
        self.to()?;
        self.call_id()?;
        self.cseq()?;
        check_single(&self.headers, &["From", "To", "Call-ID", "CSeq"])
    }
    pub fn to_bytes(&self) -> Bytes {
        let mut out =
            Vec::with_capacity(self.headers.size_hint() + self.reason.len() + self.body.len() + 16);
        out.extend_from_slice(format!("SIP/2.0 {} ", self.status).as_bytes());
        out.extend(
            self.reason
                .bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        out.extend_from_slice(b"\r\n");
        self.headers.write(&mut out, self.body.len());
        out.extend_from_slice(&self.body);
        Bytes::from(out)
    }
}

impl Message {
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }
    pub fn body(&self) -> &Bytes {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

/// The standard reason phrase for a status code ("Not Found" for 404...).
pub fn reason_phrase(status: u16) -> &'static str {
    names::reason(status)
}

fn is_scheme(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'-' || c == b'.')
}

impl Uri {
    /// Parses a URI as it appears in a Request-URI or inside `<...>`.
    pub fn parse(s: &str) -> Result<Uri, ParseError> {
        let s = trim_ws(s);
        if s.bytes().any(|b| is_ws(b) || b.is_ascii_control()) {
            return Err(header_err(
                "URI",
                format!("whitespace in URI {:?}", truncate(s)),
            ));
        }
        let (scheme, rest) = s
            .split_once(':')
            .ok_or_else(|| header_err("URI", format!("no scheme in {:?}", truncate(s))))?;
        if !is_scheme(scheme) {
            return Err(header_err(
                "URI",
                format!("bad scheme in {:?}", truncate(s)),
            ));
        }
        if scheme.eq_ignore_ascii_case("sip") {
            SipUri::parse_after_scheme(rest, false).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse_after_scheme(rest, true).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("tel") {
            TelUri::parse_after_scheme(rest).map(Uri::Tel)
        } else if rest.is_empty() || !rest.bytes().all(is_uri_char) {
            Err(header_err("URI", format!("bad URI {:?}", truncate(s))))
        } else {
            Ok(Uri::Other(s.to_string()))
        }
    }
    /// The user part of a SIP URI or the number of a tel URI (visual separators removed).
    pub fn user(&self) -> Option<&str> {
        match self {
            Uri::Sip(u) => u.user.as_deref(),
            Uri::Tel(t) => Some(&t.number),
            Uri::Other(_) => None,
        }
    }
    /// The SIP URI, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }
}

impl SipUri {
    fn parse_after_scheme(s: &str, secure: bool) -> Result<SipUri, ParseError> {
        // userinfo never contains an unescaped `@`, so the first one ends it (its user part may
        // contain `;`, `?` and `/`: RFC 4475 intmeth, semiuri).
        let (userinfo, hostpart) = match s.find('@') {
            Some(i) => (Some(s.get(..i).unwrap_or("")), s.get(i + 1..).unwrap_or("")),
            None => (None, s),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(ui) => {
                let (u, p) = match ui.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (ui, None),
                };
                if u.is_empty() || !u.bytes().all(is_uri_char) || !escapes_ok(u) {
                    return Err(header_err(
                        "URI",
                        format!("bad user part {:?}", truncate(u)),
                    ));
                }
                if let Some(p) = p {
                    if !p.bytes().all(is_uri_char) || !escapes_ok(p) {
                        return Err(header_err("URI", "bad password part"));
                    }
                }
                (Some(u.to_string()), p.map(str::to_string))
            }
        };
        let (before_headers, headers_part) = match hostpart.find('?') {
            Some(i) => (hostpart.get(..i).unwrap_or(""), hostpart.get(i + 1..)),
            None => (hostpart, None),
        };
        let (hostport, params_part) = match before_headers.find(';') {
            Some(i) => (
                before_headers.get(..i).unwrap_or(""),
                before_headers.get(i + 1..).unwrap_or(""),
            ),
            None => (before_headers, ""),
        };
        let (host, port) = split_hostport(hostport);
        let host = parse_host(host, "URI")?;
        let port = port.map(|p| parse_port(p, "URI")).transpose()?;
        let params = if before_headers.contains(';') {
            parse_uri_params(params_part, "URI")?
        } else {
            Params::default()
        };
        let mut headers = Vec::new();
        if let Some(hp) = headers_part {
            for h in hp.split('&') {
                let (n, v) = h.split_once('=').unwrap_or((h, ""));
                if n.is_empty() || !h.bytes().all(is_uri_char) {
                    return Err(header_err(
                        "URI",
                        format!("bad URI header {:?}", truncate(h)),
                    ));
                }
                headers.push((n.to_string(), v.to_string()));
            }
        }
        Ok(SipUri {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }
}

impl TelUri {
    /// RFC 3966: `+digits` (global) or local digits/`*`/`#`/hex; visual separators `-.()` are
    /// dropped; parameters kept raw.
    fn parse_after_scheme(s: &str) -> Result<TelUri, ParseError> {
        let (num, params) = match s.find(';') {
            Some(i) => (s.get(..i).unwrap_or(""), s.get(i + 1..).unwrap_or("")),
            None => (s, ""),
        };
        let (global, digits) = match num.strip_prefix('+') {
            Some(d) => (true, d),
            None => (false, num),
        };
        let mut number = String::with_capacity(num.len());
        if global {
            number.push('+');
        }
        for b in digits.bytes() {
            match b {
                b'-' | b'.' | b'(' | b')' => {}
                b'0'..=b'9' => number.push(b as char),
                b'*' | b'#' | b'a'..=b'f' | b'A'..=b'F' if !global => number.push(b as char),
                _ => {
                    return Err(header_err(
                        "URI",
                        format!("bad tel number {:?}", truncate(num)),
                    ))
                }
            }
        }
        if number.len() == usize::from(global) {
            return Err(header_err("URI", "tel URI without digits"));
        }
        let params = if s.contains(';') {
            parse_uri_params(params, "URI")?
        } else {
            Params::default()
        };
        Ok(TelUri { number, params })
    }
}

impl NameAddr {
    /// Parses `"display" <uri>;params`, `display tokens <uri>;params` or `addr-spec;params`
    /// (where parameters after a bare URI are header parameters, RFC 3261 §20.10). A bare
    /// addr-spec with `?headers` is rejected (it must be in `<>`, RFC 4475 regbadct). Spaces
    /// just inside `<` and `>` are tolerated (RFC 4475 badaspec).
    pub fn parse(s: &str) -> Result<NameAddr, ParseError> {
        const W: &str = "name-addr";
        let s = trim_ws(s);
        let mut c = Cursor::new(s);
        let display;
        if c.peek() == Some(b'"') {
            let d = c
                .quoted()
                .ok_or_else(|| header_err(W, "unterminated quoted display name"))?;
            c.skip_ws();
            if c.peek() != Some(b'<') {
                return Err(header_err(W, "display name not followed by <URI>"));
            }
            display = Some(d);
        } else if let Some(lt) = s
            .find(['<', ';', '"'])
            .filter(|&i| s.as_bytes().get(i) == Some(&b'<'))
        {
            let d = trim_ws(s.get(..lt).unwrap_or(""));
            if !d
                .bytes()
                .all(|b| is_token_char(b) || b == b' ' || b == b'\t')
            {
                return Err(header_err(
                    W,
                    format!(
                        "unquoted display name with special characters {:?}",
                        truncate(d)
                    ),
                ));
            }
            display = (!d.is_empty()).then(|| {
                // Collapse LWS between the tokens to one space.
                d.split([' ', '\t'])
                    .filter(|p| !p.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            });
            c.pos = lt;
        } else {
            // addr-spec: the URI runs to the first `;`.
            let (uri_s, rest) = match s.find(';') {
                Some(i) => (s.get(..i).unwrap_or(""), s.get(i..).unwrap_or("")),
                None => (s, ""),
            };
            if uri_s.contains('?') || uri_s.contains(',') {
                return Err(header_err(W, "URI with headers or commas must be in <>"));
            }
            let uri = Uri::parse(uri_s)?;
            let params = parse_header_params(&mut Cursor::new(rest), W)?;
            return Ok(NameAddr {
                display: None,
                uri,
                params,
            });
        }
        // At `<`.
        c.eat(b'<');
        let inner_start = c.pos;
        let close = c
            .rest()
            .find('>')
            .ok_or_else(|| header_err(W, "missing >"))?;
        let uri = Uri::parse(s.get(inner_start..inner_start + close).unwrap_or(""))?;
        c.pos = inner_start + close + 1;
        let params = parse_header_params(&mut c, W)?;
        Ok(NameAddr {
            display,
            uri,
            params,
        })
    }
    pub fn tag(&self) -> Option<&str> {
        self.params.get("tag").flatten()
    }
}

impl Via {
    /// Parses one via-parm: `SIP / 2.0 / transport sent-by *(; via-params)`, LWS allowed around
    /// `/`, `:`, `;` and `=` (RFC 3261 §25.1, RFC 4475 wsinv).
    pub fn parse(s: &str) -> Result<Via, ParseError> {
        const W: &str = "Via";
        let mut c = Cursor::new(trim_ws(s));
        let name = c.take_while(is_token_char);
        c.skip_ws();
        if !name.eq_ignore_ascii_case("SIP") || !c.eat(b'/') {
            return Err(header_err(
                W,
                format!("bad sent-protocol in {:?}", truncate(s)),
            ));
        }
        c.skip_ws();
        let version = c.take_while(is_token_char);
        c.skip_ws();
        if version != "2.0" || !c.eat(b'/') {
            return Err(header_err(
                W,
                format!("unsupported version {:?}", truncate(version)),
            ));
        }
        c.skip_ws();
        let transport = c.take_while(is_token_char);
        if transport.is_empty() {
            return Err(header_err(W, "missing transport"));
        }
        let transport = transport.to_ascii_uppercase();
        c.skip_ws();
        let host_s = if c.peek() == Some(b'[') {
            let start = c.pos;
            let end = c
                .rest()
                .find(']')
                .ok_or_else(|| header_err(W, "missing ]"))?;
            c.pos += end + 1;
            c.s.get(start..c.pos).unwrap_or("")
        } else {
            c.take_while(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        };
        let host = parse_host(host_s, W)?;
        c.skip_ws();
        let port = if c.eat(b':') {
            c.skip_ws();
            Some(parse_port(c.take_while(|b| b.is_ascii_digit()), W)?)
        } else {
            None
        };
        let params = parse_header_params(&mut c, W)?;
        Ok(Via {
            transport,
            host,
            port,
            params,
        })
    }
    pub fn branch(&self) -> Option<&str> {
        self.params.get("branch").flatten()
    }
    /// `received` parameter, if any.
    pub fn received(&self) -> Option<&str> {
        self.params.get("received").flatten()
    }
    /// `rport`: `None` absent, `Some(None)` requested (no value), `Some(Some(p))` filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }
}

/// Whether a parameter value must be written as a quoted-string: anything that is not a token or
/// an IP address (`received=2001:db8::9`, `maddr=[::1]`), and every feature-tag value
/// (`+sip.instance`, `+u.sip!devicename...`; RFC 3840 always quotes them).
fn needs_quotes(name: &str, value: &str) -> bool {
    if name.starts_with('+') {
        return true;
    }
    if is_token(value) {
        return false;
    }
    let inner = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(value);
    inner.parse::<Ipv6Addr>().is_err()
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}
impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, v) in &self.0 {
            write!(f, ";{n}")?;
            if let Some(v) = v {
                f.write_str("=")?;
                if needs_quotes(n, v) {
                    write_quoted(f, v)?;
                } else {
                    f.write_str(v)?;
                }
            }
        }
        Ok(())
    }
}
impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        self.params.write_raw(f)?;
        for (i, (n, v)) in self.headers.iter().enumerate() {
            write!(f, "{}{n}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}
impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => write!(f, "{u}"),
            Uri::Tel(t) => {
                write!(f, "tel:{}", t.number)?;
                t.params.write_raw(f)
            }
            Uri::Other(s) => f.write_str(s),
        }
    }
}
impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write_quoted(f, d)?;
            f.write_str(" ")?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}
impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPT: &[u8] = b"OPTIONS sip:ivr@192.0.2.1 SIP/2.0\r\n\
v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1, SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bK2\r\n\
f: \"A, B\" <sip:a@b>;tag=1\r\nt: <sip:ivr@192.0.2.1>\r\ni: x@y\r\nCSeq: 01 OPTIONS\r\nl: 0\r\n\r\n";

    fn opt() -> Request {
        match parse(OPT) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn headers_lookup_set_remove() {
        let mut r = opt();
        assert_eq!(r.headers.get("via"), r.headers.get("v"));
        assert_eq!(r.headers.get("CALL-ID"), Some("x@y"));
        assert_eq!(r.headers.get_all("Via").count(), 1);
        assert_eq!(r.vias().unwrap().len(), 2);
        r.headers.push("v", "SIP/2.0/UDP h3;branch=z9hG4bK3");
        assert_eq!(
            r.vias().unwrap().len(),
            3,
            "a pushed compact name still matches"
        );
        r.headers.set("Via", "SIP/2.0/UDP h4;branch=z9hG4bK4");
        assert_eq!(r.headers.count("Via"), 1);
        assert_eq!(r.headers.0[0].name, "Via", "set keeps the first position");
        assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK4"));
        r.headers.remove("via");
        assert_eq!(r.top_via(), Err(ParseError::Missing("Via")));
        assert!(r.validate().is_err());
        r.headers.set("X-New", "1");
        assert_eq!(r.headers.0.last().map(|h| h.name.as_str()), Some("X-New"));
    }

    #[test]
    fn typed_accessors() {
        let r = opt();
        r.validate().unwrap();
        assert_eq!(r.from().unwrap().display.as_deref(), Some("A, B"));
        assert_eq!(
            r.cseq().unwrap(),
            CSeq {
                seq: 1,
                method: Method::Options
            }
        );
        assert_eq!(r.max_forwards().unwrap(), None);
        assert!(r.contacts().unwrap().is_empty());
        assert!(!r.contact_is_star());
        let mut r = r;
        r.headers.push("Contact", " * ");
        assert!(r.contact_is_star());
        assert!(r.contacts().unwrap().is_empty());
        r.headers.push("Max-Forwards", "256");
        assert!(r.max_forwards().is_err());
    }

    #[test]
    fn uris() {
        let u = Uri::parse("sips:alice:pw@Example.COM:5061;transport=tls;lr?subject=x&h=").unwrap();
        let Uri::Sip(s) = &u else { panic!() };
        assert!(s.secure);
        assert_eq!(s.password.as_deref(), Some("pw"));
        assert_eq!(s.host, Host::Name("Example.COM".into()));
        assert_eq!(s.headers.len(), 2);
        assert_eq!(
            u.to_string(),
            "sips:alice:pw@Example.COM:5061;transport=tls;lr?subject=x&h="
        );
        for bad in [
            "sip:",
            "sip:@h",
            "sip:a@",
            "sip:a@h:99999",
            "sip:a@[::1",
            "sip:a b@h",
            "<sip:a@h>",
            "1sip:a",
            "sip:a%2@h",
            "sip:a@h;;x",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Uri::parse("urn:service:sos").unwrap(),
            Uri::Other("urn:service:sos".into())
        );
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse("sip:a@b;tag=1;+sip.instance=\"<urn:x>\"").unwrap();
        assert_eq!(n.tag(), Some("1"));
        assert!(n.uri.as_sip().unwrap().params.0.is_empty());
        assert_eq!(n.to_string(), "<sip:a@b>;tag=1;+sip.instance=\"<urn:x>\"");
        assert!(NameAddr::parse("\"x\" sip:a@b").is_err());
        assert!(NameAddr::parse("<sip:a@b").is_err());
        assert!(NameAddr::parse("Bell, A <sip:a@b>").is_err());
    }

    #[test]
    fn response_line() {
        let m =
            parse(b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\r\n").unwrap();
        let Message::Response(r) = m else { panic!() };
        assert_eq!((r.status, r.reason.as_str()), (486, "Busy Here"));
        for bad in [
            &b"SIP/2.0 99 x\r\n\r\n"[..],
            b"SIP/2.0 700 x\r\n\r\n",
            b"SIP/2.0 2000\r\n\r\n",
        ] {
            assert!(matches!(parse(bad), Err(ParseError::StartLine(_))));
        }
        assert_eq!(reason_phrase(422), "Session Interval Too Small");
        assert_eq!(reason_phrase(429), "Provide Referrer Identity");
        assert_eq!(reason_phrase(489), "Bad Event");
    }
}
