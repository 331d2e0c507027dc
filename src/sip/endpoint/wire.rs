//! Response construction for the endpoint: where a response goes and how its top Via is stamped
//! (RFC 3261 §18.2.1/§18.2.2, RFC 3581), the To tag and Server header every response carries,
//! and the 400 answer to a message that [`message::parse`](crate::sip::message::parse) rejected
//! but whose Via, From, To, Call-ID and CSeq lines are still readable.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use crate::sip::endpoint::{Peer, Transport};
use crate::sip::message::{reason_phrase, Header, Headers, Host, NameAddr, Request, Response, Via};

/// The default SIP port for UDP/TCP sent-by without a port (RFC 3261 §18.2.2).
const DEFAULT_PORT: u16 = 5060;

/// Where a response to a request from `src` whose top Via is `top` must go, and the top Via
/// stamped with `received`/`rport` when it needs to change.
///
/// - RFC 3581: an empty `rport` gets the source port, `received` the source IP, and the response
///   goes back to the source address and port.
/// - RFC 3261 §18.2.1: without `rport`, `received` is added when the sent-by host is not the
///   source IP; §18.2.2: on UDP the response then goes to the source IP and the sent-by port.
/// - On TCP the response always goes back on the connection the request came on.
pub fn route_response(top: Option<&Via>, src: &Peer) -> (Peer, Option<Via>) {
    let Some(via) = top else {
        return (*src, None);
    };
    let src_ip = src.addr.ip().to_canonical();
    let host_is_src = match &via.host {
        Host::V4(a) => IpAddr::V4(*a) == src_ip,
        Host::V6(a) => IpAddr::V6(*a).to_canonical() == src_ip,
        Host::Name(_) => false,
    };
    let rport = matches!(via.params.get("rport"), Some(None));
    let mut stamped = None;
    if rport {
        let mut v = via.clone();
        v.params.set("received", Some(&src_ip.to_string()));
        v.params.set("rport", Some(&src.addr.port().to_string()));
        stamped = Some(v);
    } else if !host_is_src {
        let mut v = via.clone();
        v.params.set("received", Some(&src_ip.to_string()));
        stamped = Some(v);
    }
    let dest = match src.transport {
        Transport::Tcp => *src,
        Transport::Udp if rport => *src,
        Transport::Udp => Peer {
            addr: SocketAddr::new(src.addr.ip(), via.port.unwrap_or(DEFAULT_PORT)),
            ..*src
        },
    };
    (dest, stamped)
}

/// Replaces the first Via value of `headers` by `via` (splitting a comma-joined first line).
pub fn stamp_top_via(headers: &mut Headers, via: &Via) {
    let Some(pos) = headers
        .0
        .iter()
        .position(|h| h.name.eq_ignore_ascii_case("Via") || h.name == "v")
    else {
        return;
    };
    let rest = split_first_value(&headers.0[pos].value)
        .1
        .map(|r| r.trim().to_owned());
    headers.0[pos].value = via.to_string();
    if let Some(rest) = rest.filter(|r| !r.is_empty()) {
        headers.0.insert(
            pos + 1,
            Header {
                name: "Via".into(),
                value: rest,
            },
        );
    }
}

/// Splits a header value at its first top-level comma (outside quotes and angle brackets).
pub(crate) fn split_first_value(s: &str) -> (&str, Option<&str>) {
    let mut in_quotes = false;
    let mut escaped = false;
    let mut depth = 0u32;
    for (i, c) in s.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                return (s.get(..i).unwrap_or(s), s.get(i + 1..));
            }
            _ => {}
        }
    }
    (s, None)
}

/// Every comma-separated token of every `name` header line (Require, Supported...).
pub fn header_tokens(headers: &Headers, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Copies the request's Record-Route lines, in order, into a response that creates a dialog
/// (18x and 2xx to the initial INVITE, RFC 3261 §12.1.1), so the caller learns the route set.
pub fn copy_record_route(req: &Request, resp: &mut Response) {
    for v in req.headers.get_all("Record-Route") {
        resp.headers.push("Record-Route", v);
    }
}

/// Appends `;tag=<tag>` to the To header unless it already has a tag.
pub fn add_to_tag(headers: &mut Headers, tag: &str) {
    let Some(to) = headers
        .0
        .iter_mut()
        .find(|h| h.name.eq_ignore_ascii_case("To") || h.name == "t")
    else {
        return;
    };
    let has_tag = match NameAddr::parse(to.value.trim()) {
        Ok(na) => na.tag().is_some(),
        Err(_) => to.value.to_ascii_lowercase().contains(";tag="),
    };
    if !has_tag {
        to.value = format!("{};tag={tag}", to.value.trim_end());
    }
}

/// A response to `req` from `src`: Via/From/To/Call-ID/CSeq copied (§8.2.6.2), the top Via
/// stamped per RFC 3581, a To tag on everything but 100 (`to_tag`, or a fresh one when None and
/// the To has none), and a Server header. Returns it with its destination.
pub fn build_response(
    req: &Request,
    src: &Peer,
    status: u16,
    to_tag: Option<&str>,
    server: &str,
) -> (Response, Peer) {
    let mut resp = Response::for_request(req, status, reason_phrase(status));
    let top = req.top_via().ok();
    let (dest, stamped) = route_response(top.as_ref(), src);
    if let Some(v) = stamped {
        stamp_top_via(&mut resp.headers, &v);
    }
    if status != 100 {
        match to_tag {
            Some(t) => add_to_tag(&mut resp.headers, t),
            None => add_to_tag(&mut resp.headers, &crate::sip::dialog::new_tag()),
        }
    }
    if !server.is_empty() {
        resp.headers.push("Server", server);
    }
    (resp, dest)
}

/// The reason phrase for answering a parse error with `status`: for 400 the error text, made
/// safe (printable ASCII only, bounded length); otherwise the standard phrase.
pub fn reason_for(status: u16, err: &str) -> String {
    if status == 400 {
        reason_from_error(err)
    } else {
        reason_phrase(status).to_owned()
    }
}

/// Turns an error text into a safe 400 reason phrase: printable ASCII only, bounded length.
pub fn reason_from_error(err: &str) -> String {
    let mut s: String = format!("Bad Request ({err})")
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(160)
        .collect();
    if s.len() >= 160 {
        s.push_str("...)");
    }
    s
}

/// A request message that did not parse, reduced to what a 400 needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRequest {
    pub method: String,
    pub vias: Vec<String>,
    pub from: String,
    pub to: String,
    pub call_id: String,
    pub cseq: String,
}

/// Scans an unparseable message for a request line and the Via, From, To, Call-ID and CSeq
/// lines (compact names and folded lines understood). Returns None for responses, ACKs (never
/// answered) and anything missing one of those headers.
pub fn scan_raw_request(data: &[u8]) -> Option<RawRequest> {
    // Headers of real messages are far below this; it bounds the work on hostile input.
    let head = data.get(..data.len().min(16 * 1024)).unwrap_or(data);
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start = lines.by_ref().find(|l| !l.trim().is_empty())?;
    if start.starts_with("SIP/") {
        return None;
    }
    let method = start.split_whitespace().next()?.to_owned();
    if method.eq_ignore_ascii_case("ACK") {
        return None;
    }
    // Unfold: continuation lines start with whitespace.
    let mut unfolded: Vec<String> = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = unfolded.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
            continue;
        }
        unfolded.push(line.to_owned());
    }
    let mut raw = RawRequest {
        method,
        vias: Vec::new(),
        from: String::new(),
        to: String::new(),
        call_id: String::new(),
        cseq: String::new(),
    };
    for line in &unfolded {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let value = value.trim();
        if value.is_empty() || value.contains('\r') {
            continue;
        }
        let slot = if name.eq_ignore_ascii_case("Via") || name.eq_ignore_ascii_case("v") {
            raw.vias.push(value.to_owned());
            continue;
        } else if name.eq_ignore_ascii_case("From") || name.eq_ignore_ascii_case("f") {
            &mut raw.from
        } else if name.eq_ignore_ascii_case("To") || name.eq_ignore_ascii_case("t") {
            &mut raw.to
        } else if name.eq_ignore_ascii_case("Call-ID") || name.eq_ignore_ascii_case("i") {
            &mut raw.call_id
        } else if name.eq_ignore_ascii_case("CSeq") {
            &mut raw.cseq
        } else {
            continue;
        };
        if slot.is_empty() {
            *slot = value.to_owned();
        }
    }
    let complete = !raw.vias.is_empty()
        && !raw.from.is_empty()
        && !raw.to.is_empty()
        && !raw.call_id.is_empty()
        && !raw.cseq.is_empty();
    complete.then_some(raw)
}

/// The error response (400, 505, 513) for a [`RawRequest`], with its destination.
pub fn raw_bad_request(
    raw: &RawRequest,
    src: &Peer,
    status: u16,
    reason: &str,
    server: &str,
) -> (Bytes, Peer) {
    let mut headers = Headers::default();
    let h = |name: &str, value: &str| Header {
        name: name.to_owned(),
        value: value.to_owned(),
    };
    for v in &raw.vias {
        headers.0.push(h("Via", v));
    }
    headers.0.push(h("From", &raw.from));
    headers.0.push(h("To", &raw.to));
    headers.0.push(h("Call-ID", &raw.call_id));
    headers.0.push(h("CSeq", &raw.cseq));
    let top = raw
        .vias
        .first()
        .and_then(|v| Via::parse(split_first_value(v).0.trim()).ok());
    let (dest, stamped) = route_response(top.as_ref(), src);
    if let Some(v) = stamped {
        stamp_top_via(&mut headers, &v);
    }
    add_to_tag(&mut headers, &crate::sip::dialog::new_tag());
    if !server.is_empty() {
        headers.0.push(h("Server", server));
    }
    let resp = Response {
        status,
        reason: reason.to_owned(),
        headers,
        body: Bytes::new(),
    };
    (resp.to_bytes(), dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(addr: &str) -> Peer {
        Peer {
            transport: Transport::Udp,
            addr: addr.parse().unwrap(),
            conn: None,
        }
    }

    #[test]
    fn split_respects_quotes_and_brackets() {
        assert_eq!(split_first_value("a, b"), ("a", Some(" b")));
        assert_eq!(
            split_first_value("\"x, y\" <sip:a@b>, c"),
            ("\"x, y\" <sip:a@b>", Some(" c"))
        );
        assert_eq!(
            split_first_value("<sip:a@b;x=1,2>"),
            ("<sip:a@b;x=1,2>", None)
        );
        assert_eq!(split_first_value("\"a\\\",\" b"), ("\"a\\\",\" b", None));
    }

    #[test]
    fn rport_stamps_and_routes_to_source() {
        let via = Via::parse("SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bKa;rport").unwrap();
        let src = udp("198.51.100.7:40000");
        let (dest, stamped) = route_response(Some(&via), &src);
        assert_eq!(dest, src);
        let v = stamped.unwrap();
        assert_eq!(v.params.get("rport"), Some(Some("40000")));
        assert_eq!(v.params.get("received"), Some(Some("198.51.100.7")));
    }

    #[test]
    fn no_rport_uses_sent_by_port_and_received() {
        let via = Via::parse("SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bKa").unwrap();
        let src = udp("198.51.100.7:40000");
        let (dest, stamped) = route_response(Some(&via), &src);
        assert_eq!(dest.addr, "198.51.100.7:5062".parse().unwrap());
        let v = stamped.unwrap();
        assert_eq!(v.params.get("received"), Some(Some("198.51.100.7")));
        assert_eq!(v.params.get("rport"), None);
        // Same host as source, no port: port 5060 and no stamp.
        let via = Via::parse("SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKa").unwrap();
        let (dest, stamped) = route_response(Some(&via), &src);
        assert_eq!(dest.addr, "198.51.100.7:5060".parse().unwrap());
        assert!(stamped.is_none());
    }

    #[test]
    fn tcp_goes_back_on_the_connection() {
        let via = Via::parse("SIP/2.0/TCP 10.0.0.5:5062;branch=z9hG4bKa").unwrap();
        let src = Peer {
            transport: Transport::Tcp,
            addr: "198.51.100.7:40001".parse().unwrap(),
            conn: Some(9),
        };
        let (dest, _) = route_response(Some(&via), &src);
        assert_eq!(dest, src);
    }

    #[test]
    fn raw_scan_needs_all_five_headers() {
        let ok = b"FOO sip:x@y SIP/2.0\r\nv: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n\
                   f: <sip:a@b>;tag=1\r\nt: <sip:c@d>\r\ni: abc\r\nCSeq: 1 FOO\r\n\
                   Max-Forwards: banana\r\n\r\n";
        let raw = scan_raw_request(ok).unwrap();
        assert_eq!(raw.method, "FOO");
        assert_eq!(raw.call_id, "abc");
        let missing = b"FOO sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4\r\n\r\n";
        assert!(scan_raw_request(missing).is_none());
        assert!(scan_raw_request(b"SIP/2.0 200 OK\r\n\r\n").is_none());
        assert!(scan_raw_request(b"\xff\xfe\x00").is_none());
        assert!(scan_raw_request(b"").is_none());
    }

    #[test]
    fn reason_is_sanitised() {
        let r = reason_from_error("bad\r\nthing\u{7f}");
        assert!(!r.contains('\r') && !r.contains('\n'));
        assert!(r.starts_with("Bad Request ("));
        assert!(reason_from_error(&"x".repeat(1000)).len() < 200);
    }
}
