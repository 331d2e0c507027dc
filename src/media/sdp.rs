//! SDP offer/answer for one audio stream (RFC 3264 on RFC 4566 SDP).
//!
//! Parsing uses the `sdp` crate (webrtc-rs) for the syntax; what a session *means* for us
//! (which stream, which address, which codecs, on hold or not) and the offer/answer rules are
//! ours:
//!
//! - [`parse_remote`] extracts the first usable audio stream of a remote offer or answer into
//!   [`RemoteMedia`]: connection address (media-level `c=` overrides session-level, RFC 4566
//!   §5.7; IPv4 and IPv6 literals), port (0 = stream rejected / disabled, RFC 3264 §5.1, §8.2),
//!   formats in the offer's order with their `a=rtpmap`/`a=fmtp` (static payload types 0 and 8
//!   are recognised without rtpmap, RFC 3551 §6), the telephone-event payload type (RFC 4733
//!   §7.1.1; any dynamic PT with clock rate 8000), `a=ptime`/`a=maxptime` (RFC 4566 §6), the
//!   direction attribute (RFC 3264 §5.1; media-level overrides session-level, default
//!   sendrecv), and whether the stream is on hold (`a=sendonly`/`a=inactive`, or the RFC 2543
//!   style `c=0.0.0.0`, RFC 3264 §8.4). "Usable" means the first `m=audio` line with an
//!   `RTP/AVP` or `RTP/AVPF` transport; if there is none (e.g. only `RTP/SAVP`), the first audio
//!   line is returned and [`negotiate`] refuses it.
//! - [`negotiate`] answers an offer (RFC 3264 §6.1): the first codec in the **offer's** order
//!   that we support and that the caller allows, the offer's telephone-event PT, the offer's
//!   ptime when it is 10..=60 ms and a multiple of 10 (else 20 ms; capped by maxptime), and the
//!   answering direction (sendonly -> recvonly, recvonly -> sendonly, inactive -> inactive).
//! - [`build_answer`] writes the answer with as many `m=` lines as the offer, each other stream
//!   rejected with port 0 (RFC 3264 §6). [`build_offer`] and [`negotiate_answer`] serve the
//!   late-offer flow (INVITE without SDP: our offer goes in the 200 OK, the answer comes in the
//!   ACK, RFC 3261 §13.2.1).
//!
//! Versioning (RFC 3264 §8): the `o=` line's session version is chosen by the caller
//! ([`LocalMedia::session_version`]); it must be bumped only when the SDP changes, so a
//! re-INVITE session refresh with unchanged media gets a byte-identical answer.
//!
//! Lenient parsing: the `sdp` crate is strict about line order and rejects a body without an
//! `s=` line (RFC 4566 §5.3 makes it mandatory, and some embedded stacks omit it or send the
//! session-level lines out of order). When the strict parse fails, the body is normalised once
//! (session-level lines put in RFC 4566 order, a missing `s=` replaced by `s=-` and a missing
//! `t=` by `t=0 0`, lines we do not use and that the crate might reject dropped: `i= u= e= p=
//! z= k= r=` and unknown types; unknown media types/transports rewritten to a neutral form for
//! the crate only) and parsed again; only if that fails too is the body refused
//! ([`SdpError::Malformed`], answer 400). So a missing `s=` is accepted.

use std::fmt::Write as _;
use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

use sdp::description::common::Attribute;
use sdp::description::media::MediaDescription;
use sdp::SessionDescription;

use super::g711::Codec;

/// Media direction (RFC 3264 §5.1, §6.1), from the point of view of the SDP's author.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `a=sendrecv` (the default).
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Parses an attribute name (case-sensitive, as RFC 4566 attribute names are).
    pub fn from_attr(s: &str) -> Option<Direction> {
        match s {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// The direction an answerer that can send and receive puts in its answer (RFC 3264 §6.1).
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// The author of this SDP sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// The author of this SDP receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// One payload format of an `m=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    /// RTP payload type (0..=127).
    pub pt: u8,
    /// Encoding name from `a=rtpmap` (or the RFC 3551 static table); empty when unknown.
    pub encoding: String,
    /// Clock rate from `a=rtpmap` (or the static table); 0 when unknown.
    pub clock_rate: u32,
    /// Channel count from `a=rtpmap`, when given.
    pub channels: Option<u16>,
    /// The `a=fmtp` parameters, when given.
    pub fmtp: Option<String>,
}

impl Format {
    /// The codec this format is, if we support it (G.711 at 8000 Hz, mono).
    pub fn codec(&self) -> Option<Codec> {
        if self.channels.is_some_and(|c| c != 1) {
            return None;
        }
        Codec::from_rtpmap(&self.encoding, self.clock_rate)
    }
}

/// The negotiated telephone-event (RFC 4733) payload type and its fmtp (event list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Dynamic payload type.
    pub pt: u8,
    /// `a=fmtp` parameters as offered, e.g. `0-15` or `0-16`.
    pub fmtp: Option<String>,
}

/// One `m=` line as written (kept verbatim to answer every stream, RFC 3264 §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaLine {
    /// Media type: `audio`, `video`, `application`, `image`, ...
    pub media: String,
    /// Port (0 = rejected/disabled).
    pub port: u16,
    /// Transport protocol, e.g. `RTP/AVP`.
    pub proto: String,
    /// The format list.
    pub formats: Vec<String>,
}

/// The remote party's audio stream, as described by its SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMedia {
    /// `o=` session id.
    pub session_id: u64,
    /// `o=` session version (changes when the remote SDP changes, RFC 3264 §8).
    pub session_version: u64,
    /// Connection address of the audio stream (may be `0.0.0.0` for an RFC 2543 hold).
    pub addr: IpAddr,
    /// RTP port (0 = stream rejected or disabled).
    pub port: u16,
    /// Transport protocol of the audio `m=` line.
    pub proto: String,
    /// Payload formats in the order of the `m=` line.
    pub formats: Vec<Format>,
    /// The telephone-event format at 8000 Hz, if offered.
    pub telephone_event: Option<TelephoneEvent>,
    /// `a=ptime` in ms, if given (media level, else session level).
    pub ptime: Option<u32>,
    /// `a=maxptime` in ms, if given.
    pub maxptime: Option<u32>,
    /// Direction attribute (media level, else session level, else sendrecv).
    pub direction: Direction,
    /// The remote party put the call on hold: sendonly, inactive, or `c=0.0.0.0` / `::`.
    pub on_hold: bool,
    /// Every `m=` line of the SDP, in order.
    pub media_lines: Vec<MediaLine>,
    /// Index in `media_lines` of the audio stream described above.
    pub audio_index: usize,
}

impl RemoteMedia {
    /// Where to send RTP: `None` when the stream is rejected (port 0) or the address is
    /// unspecified (`0.0.0.0`/`::`, RFC 2543 hold).
    pub fn rtp_addr(&self) -> Option<SocketAddr> {
        (self.port != 0 && !self.addr.is_unspecified())
            .then(|| SocketAddr::new(self.addr, self.port))
    }
}

/// The outcome of offer/answer for the audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The codec both sides use.
    pub codec: Codec,
    /// The telephone-event payload type (and fmtp), if both sides support RFC 4733.
    pub telephone_event: Option<TelephoneEvent>,
    /// Packet duration in ms.
    pub ptime: u32,
    /// Our direction (what we put in our SDP).
    pub direction: Direction,
    /// Where to send RTP (`None`: do not send; stream rejected or remote on RFC 2543 hold).
    pub remote_rtp: Option<SocketAddr>,
    /// The audio stream was rejected (port 0 in the offer): our answer rejects it too.
    pub rejected: bool,
    /// The offer's `m=` lines (our answer has one per line).
    pub media_lines: Vec<MediaLine>,
    /// Index of the audio stream in `media_lines`.
    pub audio_index: usize,
}

impl Negotiated {
    /// The telephone-event payload type, if negotiated.
    pub fn te_pt(&self) -> Option<u8> {
        self.telephone_event.as_ref().map(|t| t.pt)
    }

    /// Samples (= RTP timestamp units) per packet: ptime x 8 for G.711.
    pub fn samples_per_packet(&self) -> u32 {
        self.ptime * self.codec.clock_rate() / 1000
    }

    /// We may send audio (the negotiated direction allows it and there is an address).
    pub fn we_send(&self) -> bool {
        self.direction.sends() && self.remote_rtp.is_some()
    }
}

/// Our side of the session: where we receive RTP, and the `o=` line's numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    /// Address we receive RTP on (also written in `o=`).
    pub addr: IpAddr,
    /// RTP port we receive on.
    pub port: u16,
    /// `o=` session id (chosen once per dialog).
    pub session_id: u64,
    /// `o=` session version; bump only when our SDP changes (RFC 3264 §8).
    pub session_version: u64,
}

/// Why an SDP was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// Not parseable as SDP, even leniently.
    #[error("malformed SDP: {0}")]
    Malformed(String),
    /// No `m=audio` line.
    #[error("no audio stream in SDP")]
    NoAudio,
    /// The audio stream has no `c=` line at either level.
    #[error("no connection address for the audio stream")]
    NoConnection,
    /// The connection address is not an IP literal (e.g. a host name).
    #[error("unsupported connection address {0:?}")]
    BadAddress(String),
    /// The audio stream's transport is not plain RTP (e.g. `RTP/SAVP`).
    #[error("unsupported audio transport {0:?}")]
    UnsupportedTransport(String),
    /// None of the offered or answered codecs is one we accept.
    #[error("no common codec")]
    NoCommonCodec,
}

impl SdpError {
    /// The SIP response for an INVITE whose SDP fails this way: 400 for unparseable SDP,
    /// 488 Not Acceptable Here otherwise (RFC 3261 §13.3.1.1).
    pub fn sip_status(&self) -> u16 {
        match self {
            SdpError::Malformed(_) => 400,
            _ => 488,
        }
    }
}

// ----------------------------------------------------------------------------------------
// Parsing

/// Parses a remote SDP (offer or answer) and extracts its audio stream.
pub fn parse_remote(body: &[u8]) -> Result<RemoteMedia, SdpError> {
    let text = String::from_utf8_lossy(body);
    let media_lines = scan_media_lines(&text);
    let sd = match parse_strict(text.as_bytes()) {
        Ok(sd) => sd,
        Err(first) => {
            parse_strict(normalise(&text).as_bytes()).map_err(|_| SdpError::Malformed(first))?
        }
    };
    // The raw scan and the crate must agree on the m= lines (the normaliser keeps them all).
    if sd.media_descriptions.len() != media_lines.len() {
        return Err(SdpError::Malformed("inconsistent m= lines".into()));
    }

    let is_audio = |m: &MediaLine| m.media.eq_ignore_ascii_case("audio");
    let plain_rtp = |m: &MediaLine| {
        m.proto.eq_ignore_ascii_case("RTP/AVP") || m.proto.eq_ignore_ascii_case("RTP/AVPF")
    };
    let audio_index = media_lines
        .iter()
        .position(|m| is_audio(m) && plain_rtp(m))
        .or_else(|| media_lines.iter().position(is_audio))
        .ok_or(SdpError::NoAudio)?;
    let md = &sd.media_descriptions[audio_index];
    let line = &media_lines[audio_index];

    let conn = md
        .connection_information
        .as_ref()
        .and_then(|c| c.address.as_ref())
        .or_else(|| {
            sd.connection_information
                .as_ref()
                .and_then(|c| c.address.as_ref())
        })
        .ok_or(SdpError::NoConnection)?;
    let addr = parse_conn_addr(&conn.address)?;

    let mut formats = Vec::with_capacity(line.formats.len());
    for f in &line.formats {
        let Ok(pt) = f.parse::<u8>() else { continue };
        if pt > 127 {
            continue;
        }
        formats.push(format_for(md, pt));
    }
    let telephone_event = formats
        .iter()
        .find(|f| f.encoding.eq_ignore_ascii_case("telephone-event") && f.clock_rate == 8000)
        .map(|f| TelephoneEvent {
            pt: f.pt,
            fmtp: f.fmtp.clone(),
        });

    let ptime = media_attr(md, "ptime")
        .or_else(|| session_attr(&sd, "ptime"))
        .and_then(parse_ms);
    let maxptime = media_attr(md, "maxptime")
        .or_else(|| session_attr(&sd, "maxptime"))
        .and_then(parse_ms);
    let direction = direction_of(&md.attributes)
        .or_else(|| direction_of(&sd.attributes))
        .unwrap_or(Direction::SendRecv);
    let on_hold =
        matches!(direction, Direction::SendOnly | Direction::Inactive) || addr.is_unspecified();

    Ok(RemoteMedia {
        session_id: sd.origin.session_id,
        session_version: sd.origin.session_version,
        addr,
        port: line.port,
        proto: line.proto.clone(),
        formats,
        telephone_event,
        ptime,
        maxptime,
        direction,
        on_hold,
        media_lines,
        audio_index,
    })
}

fn parse_strict(bytes: &[u8]) -> Result<SessionDescription, String> {
    SessionDescription::unmarshal(&mut Cursor::new(bytes)).map_err(|e| e.to_string())
}

/// Our own scan of the `m=` lines, kept verbatim (the crate refuses some transports we must
/// still be able to answer with port 0, e.g. `TCP/BFCP`).
fn scan_media_lines(text: &str) -> Vec<MediaLine> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.trim_end().strip_prefix("m=") else {
            continue;
        };
        let mut parts = rest.split_ascii_whitespace();
        let media = parts.next().unwrap_or("").to_string();
        // "port/number-of-ports": the first port is the one that matters.
        let port = parts
            .next()
            .and_then(|p| p.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let proto = parts.next().unwrap_or("").to_string();
        let formats = parts.map(str::to_string).collect();
        out.push(MediaLine {
            media,
            port,
            proto,
            formats,
        });
    }
    out
}

fn parse_conn_addr(s: &str) -> Result<IpAddr, SdpError> {
    // "224.2.1.1/127" (multicast TTL) or "FF15::101/3": the address is before the slash.
    let a = s.split('/').next().unwrap_or("");
    let a = a.trim_start_matches('[').trim_end_matches(']');
    a.parse().map_err(|_| SdpError::BadAddress(s.to_string()))
}

fn media_attr<'a>(md: &'a MediaDescription, key: &str) -> Option<&'a str> {
    md.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_deref())
}

fn session_attr<'a>(sd: &'a SessionDescription, key: &str) -> Option<&'a str> {
    sd.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_deref())
}

/// "20", or "20.0" (sent by a few stacks) -> 20.
fn parse_ms(v: &str) -> Option<u32> {
    let v = v.trim();
    v.parse::<u32>().ok().or_else(|| {
        v.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e6)
            .map(|f| f as u32)
    })
}

fn direction_of(attrs: &[Attribute]) -> Option<Direction> {
    // The last direction attribute wins if a (broken) SDP carries several.
    attrs
        .iter()
        .rev()
        .find_map(|a| Direction::from_attr(&a.key))
}

/// Static payload types of RFC 3551 §6 that may appear without rtpmap.
fn static_format(pt: u8) -> (&'static str, u32) {
    match pt {
        0 => ("PCMU", 8000),
        3 => ("GSM", 8000),
        4 => ("G723", 8000),
        5 => ("DVI4", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        13 => ("CN", 8000),
        18 => ("G729", 8000),
        _ => ("", 0),
    }
}

fn format_for(md: &MediaDescription, pt: u8) -> Format {
    let mut f = Format {
        pt,
        encoding: String::new(),
        clock_rate: 0,
        channels: None,
        fmtp: None,
    };
    let pt_prefix = |v: &str| -> Option<String> {
        let (p, rest) = v
            .trim_start()
            .split_once(|c: char| c.is_ascii_whitespace())?;
        (p.parse::<u8>().ok()? == pt).then(|| rest.trim().to_string())
    };
    let mut have_rtpmap = false;
    for a in &md.attributes {
        let Some(v) = a.value.as_deref() else {
            continue;
        };
        if a.key == "rtpmap" && !have_rtpmap {
            if let Some(map) = pt_prefix(v) {
                let mut parts = map.split('/');
                f.encoding = parts.next().unwrap_or("").trim().to_string();
                f.clock_rate = parts
                    .next()
                    .and_then(|r| r.trim().parse().ok())
                    .unwrap_or(0);
                f.channels = parts.next().and_then(|c| c.trim().parse().ok());
                have_rtpmap = true;
            }
        } else if a.key == "fmtp" && f.fmtp.is_none() {
            f.fmtp = pt_prefix(v);
        }
    }
    if !have_rtpmap {
        let (name, rate) = static_format(pt);
        f.encoding = name.to_string();
        f.clock_rate = rate;
    }
    f
}

/// Rewrites an SDP the strict parser refused into the order and subset it accepts (see the
/// module doc). Only used as a second attempt.
fn normalise(text: &str) -> String {
    const SESSION_ORDER: &[u8] = b"vosctba";
    let mut session: Vec<(usize, String)> = Vec::new();
    let mut media: Vec<String> = Vec::new();
    let mut in_media = false;
    for raw in text.lines() {
        let line = raw.trim();
        let b = line.as_bytes();
        if b.len() < 2 || b[1] != b'=' {
            continue;
        }
        let t = b[0];
        if t == b'm' {
            in_media = true;
            media.push(neutral_m_line(line));
            continue;
        }
        if in_media {
            if matches!(t, b'c' | b'b' | b'a') {
                media.push(line.to_string());
            }
        } else if let Some(rank) = SESSION_ORDER.iter().position(|&k| k == t) {
            // Keep only the first v/o/s/t; c/b/a may repeat.
            if matches!(t, b'v' | b'o' | b's' | b't') && session.iter().any(|(r, _)| *r == rank) {
                continue;
            }
            session.push((rank, line.to_string()));
        }
    }
    if !session.iter().any(|(r, _)| *r == 2) {
        session.push((2, "s=-".to_string()));
    }
    if !session.iter().any(|(r, _)| *r == 5) {
        session.push((5, "t=0 0".to_string()));
    }
    session.sort_by_key(|(r, _)| *r); // stable: keeps a= lines in their order
    let mut out = String::with_capacity(text.len() + 16);
    for l in session.iter().map(|(_, l)| l).chain(media.iter()) {
        out.push_str(l);
        out.push_str("\r\n");
    }
    out
}

/// Media types and transports the `sdp` crate accepts; others are replaced for the crate's
/// benefit only (our own [`scan_media_lines`] keeps the real values).
fn neutral_m_line(line: &str) -> String {
    const MEDIA: &[&str] = &["audio", "video", "text", "application", "message", "image"];
    const PROTO: &[&str] = &[
        "UDP", "RTP", "AVP", "SAVP", "SAVPF", "TLS", "DTLS", "SCTP", "AVPF", "udptl",
    ];
    let rest = &line[2..];
    let mut parts = rest.split_ascii_whitespace();
    let media = parts.next().unwrap_or("");
    let port = parts.next().unwrap_or("0");
    let port = if port
        .split('/')
        .next()
        .is_some_and(|p| p.parse::<u16>().is_ok())
    {
        port
    } else {
        "0"
    };
    let proto = parts.next().unwrap_or("");
    let fmts: Vec<&str> = parts.collect();
    let media = if MEDIA.contains(&media) {
        media
    } else {
        "application"
    };
    let proto = if !proto.is_empty() && proto.split('/').all(|p| PROTO.contains(&p)) {
        proto
    } else {
        "UDP"
    };
    let fmts = if fmts.is_empty() {
        "*".to_string()
    } else {
        fmts.join(" ")
    };
    format!("m={media} {port} {proto} {fmts}")
}

// ----------------------------------------------------------------------------------------
// Negotiation

/// Default and bounds for ptime (ms).
const DEFAULT_PTIME: u32 = 20;

fn choose_ptime(ptime: Option<u32>, maxptime: Option<u32>) -> u32 {
    let mut p = match ptime {
        Some(p) if (10..=60).contains(&p) && p % 10 == 0 => p,
        _ => DEFAULT_PTIME,
    };
    if let Some(max) = maxptime {
        if max >= 10 && p > max {
            p = (max / 10 * 10).min(60);
        }
    }
    p
}

/// Answers a remote offer (RFC 3264 §6.1). `allowed` lists the codecs we accept (empty = all we
/// support); the choice follows the **offer's** order, as the offerer lists its preference
/// first. See the module doc for ptime, telephone-event and direction.
///
/// A stream offered with port 0 is answered as rejected (port 0, `rejected`). An RFC 2543 hold
/// (`c=0.0.0.0`) keeps the direction its attribute gives, but `remote_rtp` is `None`, so nothing
/// is sent until a re-INVITE brings a real address.
pub fn negotiate(remote: &RemoteMedia, allowed: &[Codec]) -> Result<Negotiated, SdpError> {
    let allowed = if allowed.is_empty() {
        &Codec::ALL[..]
    } else {
        allowed
    };
    let line = remote.media_lines.get(remote.audio_index);
    let proto = line.map(|l| l.proto.as_str()).unwrap_or("");
    let rejected = remote.port == 0;
    let plain_rtp = proto.eq_ignore_ascii_case("RTP/AVP") || proto.eq_ignore_ascii_case("RTP/AVPF");
    if !rejected && !plain_rtp {
        return Err(SdpError::UnsupportedTransport(proto.to_string()));
    }
    let codec = remote
        .formats
        .iter()
        .filter_map(Format::codec)
        .find(|c| allowed.contains(c));
    let codec = match (codec, rejected) {
        (Some(c), _) => c,
        // A rejected stream is answered with port 0; the format list is then only a formality.
        (None, true) => allowed[0],
        (None, false) => return Err(SdpError::NoCommonCodec),
    };
    Ok(Negotiated {
        codec,
        telephone_event: remote.telephone_event.clone(),
        ptime: choose_ptime(remote.ptime, remote.maxptime),
        direction: remote.direction.answer(),
        remote_rtp: if rejected { None } else { remote.rtp_addr() },
        rejected,
        media_lines: remote.media_lines.clone(),
        audio_index: remote.audio_index,
    })
}

/// Processes the answer to our offer (late-offer flow). `offered` are the codecs of our offer
/// and `te_pt` its telephone-event PT (see [`build_offer`]). The codec is the first one of the
/// answer's list that we offered (RFC 3264 §7); the telephone-event PT is the answer's (it should
/// equal ours; the PT we send with is the one the receiver declared).
pub fn negotiate_answer(
    answer: &RemoteMedia,
    offered: &[Codec],
    te_pt: u8,
) -> Result<Negotiated, SdpError> {
    let offered = if offered.is_empty() {
        &Codec::ALL[..]
    } else {
        offered
    };
    let rejected = answer.port == 0;
    let codec = answer
        .formats
        .iter()
        .filter_map(Format::codec)
        .find(|c| offered.contains(c));
    let codec = match (codec, rejected) {
        (Some(c), _) => c,
        (None, true) => offered[0],
        (None, false) => return Err(SdpError::NoCommonCodec),
    };
    let telephone_event = if is_dynamic(te_pt) {
        answer.telephone_event.clone()
    } else {
        None
    };
    Ok(Negotiated {
        codec,
        telephone_event,
        ptime: choose_ptime(answer.ptime, answer.maxptime),
        direction: answer.direction.answer(),
        remote_rtp: if rejected { None } else { answer.rtp_addr() },
        rejected,
        media_lines: answer.media_lines.clone(),
        audio_index: answer.audio_index,
    })
}

fn is_dynamic(pt: u8) -> bool {
    (96..=127).contains(&pt)
}

// ----------------------------------------------------------------------------------------
// Writing

fn session_header(out: &mut String, local: &LocalMedia) {
    let ip = if local.addr.is_ipv4() { "IP4" } else { "IP6" };
    let _ = write!(
        out,
        "v=0\r\no=selfprov {} {} IN {ip} {}\r\ns=selfprov\r\nc=IN {ip} {}\r\nt=0 0\r\n",
        local.session_id, local.session_version, local.addr, local.addr
    );
}

fn audio_section(
    out: &mut String,
    port: u16,
    proto: &str,
    codecs: &[Codec],
    te: Option<(u8, &str)>,
    ptime: u32,
    dir: Direction,
) {
    let _ = write!(out, "m=audio {port} {proto}");
    for c in codecs {
        let _ = write!(out, " {}", c.payload_type());
    }
    if let Some((pt, _)) = te {
        let _ = write!(out, " {pt}");
    }
    out.push_str("\r\n");
    for c in codecs {
        let _ = write!(
            out,
            "a=rtpmap:{} {}/{}\r\n",
            c.payload_type(),
            c.name(),
            c.clock_rate()
        );
    }
    if let Some((pt, events)) = te {
        let _ = write!(
            out,
            "a=rtpmap:{pt} telephone-event/8000\r\na=fmtp:{pt} {events}\r\n"
        );
    }
    let _ = write!(out, "a=ptime:{ptime}\r\na={}\r\n", dir.as_str());
}

/// Writes our answer: one `m=` line per offered line, the negotiated audio stream at its place
/// and every other stream rejected with port 0 (RFC 3264 §6).
pub fn build_answer(local: &LocalMedia, n: &Negotiated) -> String {
    let mut out = String::with_capacity(320);
    session_header(&mut out, local);
    // The DTMF events we understand (RFC 4733 §3.2: 0-15).
    let te = n.telephone_event.as_ref().map(|t| (t.pt, "0-15"));
    if n.media_lines.is_empty() {
        audio_section(
            &mut out,
            local.port,
            "RTP/AVP",
            &[n.codec],
            te,
            n.ptime,
            n.direction,
        );
        return out;
    }
    for (i, m) in n.media_lines.iter().enumerate() {
        if i == n.audio_index && !n.rejected {
            let proto = if m.proto.is_empty() {
                "RTP/AVP"
            } else {
                m.proto.as_str()
            };
            audio_section(
                &mut out,
                local.port,
                proto,
                &[n.codec],
                te,
                n.ptime,
                n.direction,
            );
        } else if i == n.audio_index {
            let _ = write!(out, "m=audio 0 {} {}\r\n", m.proto, n.codec.payload_type());
        } else {
            // RFC 4566 needs at least one format; echo the offer's first.
            let fmt = m.formats.first().map(String::as_str).unwrap_or("*");
            let _ = write!(out, "m={} 0 {} {}\r\n", m.media, m.proto, fmt);
        }
    }
    out
}

/// Writes our offer (late offer: INVITE without SDP, our offer in the 200 OK). `te_pt` must be
/// a dynamic payload type (96..=127) or telephone-event is left out; `ptime` outside 10..=60 or
/// not a multiple of 10 is replaced by 20.
pub fn build_offer(local: &LocalMedia, codecs: &[Codec], te_pt: u8, ptime: u32) -> String {
    let codecs = if codecs.is_empty() {
        &Codec::ALL[..]
    } else {
        codecs
    };
    let mut out = String::with_capacity(320);
    session_header(&mut out, local);
    let te = is_dynamic(te_pt).then_some((te_pt, "0-15"));
    audio_section(
        &mut out,
        local.port,
        "RTP/AVP",
        codecs,
        te,
        choose_ptime(Some(ptime), None),
        Direction::SendRecv,
    );
    out
}
