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
// API (bodies to be implemented; signatures are the contract other modules code against).
// ---------------------------------------------------------------------------------------------

/// Parses one complete message (a UDP datagram, or one frame from [`super::framing`]).
/// Accepts CRLF or bare LF line ends, folded header lines, compact header names, any amount of
/// whitespace around the colon. The body is bounded by Content-Length when present (on UDP a
/// missing Content-Length means "the rest of the datagram").
pub fn parse(_buf: &[u8]) -> Result<Message, ParseError> {
    todo!("sip::message::parse")
}

impl Method {
    pub fn as_str(&self) -> &str {
        todo!()
    }
}

impl std::str::FromStr for Method {
    type Err = ParseError;
    /// Methods are case-sensitive tokens (RFC 3261 §7.1); a valid unknown token gives `Other`.
    fn from_str(_s: &str) -> Result<Self, Self::Err> {
        todo!()
    }
}

impl Params {
    /// Case-insensitive lookup. `Some(None)` means present without a value (`;rport`, `;lr`).
    pub fn get(&self, _name: &str) -> Option<Option<&str>> {
        todo!()
    }
    /// Replaces the value of `name` or appends it.
    pub fn set(&mut self, _name: &str, _value: Option<&str>) {
        todo!()
    }
}

impl Headers {
    /// First value of a header (canonical or compact name accepted, case-insensitive).
    pub fn get(&self, _name: &str) -> Option<&str> {
        todo!()
    }
    /// Every header line with that name, in order (not split at commas).
    pub fn get_all<'a>(&'a self, _name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        std::iter::empty()
    }
    /// Appends a header (name as given).
    pub fn push(&mut self, _name: &str, _value: impl Into<String>) {
        todo!()
    }
    /// Removes every header with that name.
    pub fn remove(&mut self, _name: &str) {
        todo!()
    }
    /// Replaces every header with that name by one with this value.
    pub fn set(&mut self, _name: &str, _value: impl Into<String>) {
        todo!()
    }
}

impl Request {
    /// Every Via value, top first, split at commas (quote-aware) across all Via lines.
    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        todo!()
    }
    pub fn top_via(&self) -> Result<Via, ParseError> {
        todo!()
    }
    pub fn from(&self) -> Result<NameAddr, ParseError> {
        todo!()
    }
    pub fn to(&self) -> Result<NameAddr, ParseError> {
        todo!()
    }
    pub fn call_id(&self) -> Result<&str, ParseError> {
        todo!()
    }
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        todo!()
    }
    /// `None` when absent; an error when present but not a number 0..=255.
    pub fn max_forwards(&self) -> Result<Option<u32>, ParseError> {
        todo!()
    }
    /// Every Contact value, split at commas (quote- and bracket-aware). `*` gives an empty list
    /// and is reported by [`Request::contact_is_star`].
    pub fn contacts(&self) -> Result<Vec<NameAddr>, ParseError> {
        todo!()
    }
    pub fn contact_is_star(&self) -> bool {
        todo!()
    }
    /// Record-Route values, top first.
    pub fn record_routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        todo!()
    }
    /// Content-Type without parameters, lower case (`application/sdp`).
    pub fn content_type(&self) -> Option<String> {
        todo!()
    }
    /// Checks the headers every request must carry and be parseable (Via, From, To, Call-ID,
    /// CSeq with the same method as the request line, Max-Forwards if present).
    pub fn validate(&self) -> Result<(), ParseError> {
        todo!()
    }
    /// Serialises, computing Content-Length from the body (any Content-Length header is replaced).
    pub fn to_bytes(&self) -> Bytes {
        todo!()
    }
}

impl Response {
    /// A response to `req` per RFC 3261 §8.2.6.2: copies Via (all), From, To, Call-ID and CSeq;
    /// the caller adds a To tag where needed.
    pub fn for_request(_req: &Request, _status: u16, _reason: &str) -> Response {
        todo!()
    }
    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        todo!()
    }
    pub fn from(&self) -> Result<NameAddr, ParseError> {
        todo!()
    }
    pub fn to(&self) -> Result<NameAddr, ParseError> {
        todo!()
    }
    pub fn call_id(&self) -> Result<&str, ParseError> {
        todo!()
    }
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        todo!()
    }
    pub fn content_type(&self) -> Option<String> {
        todo!()
    }
    pub fn to_bytes(&self) -> Bytes {
        todo!()
    }
}

/// The standard reason phrase for a status code ("Not Found" for 404...).
pub fn reason_phrase(_status: u16) -> &'static str {
    todo!()
}

impl Uri {
    /// Parses a URI as it appears in a Request-URI or inside `<...>`.
    pub fn parse(_s: &str) -> Result<Uri, ParseError> {
        todo!()
    }
    /// The user part of a SIP URI or the number of a tel URI (visual separators removed).
    pub fn user(&self) -> Option<&str> {
        todo!()
    }
}

impl NameAddr {
    pub fn parse(_s: &str) -> Result<NameAddr, ParseError> {
        todo!()
    }
    pub fn tag(&self) -> Option<&str> {
        todo!()
    }
}

impl Via {
    pub fn parse(_s: &str) -> Result<Via, ParseError> {
        todo!()
    }
    pub fn branch(&self) -> Option<&str> {
        todo!()
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Display for Host {
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        todo!("IPv6 in brackets")
    }
}
impl fmt::Display for Params {
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        todo!(";name=value;flag (quoted when needed)")
    }
}
impl fmt::Display for Uri {
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        todo!()
    }
}
impl fmt::Display for NameAddr {
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        todo!("always in <> form")
    }
}
impl fmt::Display for Via {
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        todo!()
    }
}
