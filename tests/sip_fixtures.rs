//! Fixture tests for `selfprov::sip::message` (parser/serialiser) and `selfprov::sip::framing`.
//!
//! Fixtures live in `tests/fixtures/sip/`, one message per file, raw bytes as sent:
//! - `phones/`: messages as real phones and test peers send them (Yealink, Cisco, Polycom,
//!   Grandstream, Snom, baresip, SIPp);
//! - `rfc4475/`: the RFC 4475 torture messages, byte for byte, named as in the RFC;
//! - `edge/`: compact-only, folded, LF-only, IPv6, tel:, unknown method, Content-Length cases,
//!   two glued messages.

use selfprov::sip::framing::{Frame, FramingError, StreamFramer};
use selfprov::sip::message::{
    parse, reason_phrase, Host, Message, Method, NameAddr, ParseError, Request, Response, Uri, Via,
    MAX_MESSAGE_SIZE,
};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sip")
}

fn load(rel: &str) -> Vec<u8> {
    std::fs::read(dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every fixture file, as (relative path, bytes), sorted.
fn all_fixtures() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["phones", "rfc4475", "edge"] {
        let mut names: Vec<_> = std::fs::read_dir(dir().join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        for n in names {
            let rel = format!("{sub}/{n}");
            let bytes = load(&rel);
            out.push((rel, bytes));
        }
    }
    assert!(out.len() >= 70, "fixtures missing: {}", out.len());
    out
}

fn req(rel: &str) -> Request {
    match parse(&load(rel)) {
        Ok(Message::Request(r)) => r,
        other => panic!("{rel}: expected a request, got {other:?}"),
    }
}

fn resp(rel: &str) -> Response {
    match parse(&load(rel)) {
        Ok(Message::Response(r)) => r,
        other => panic!("{rel}: expected a response, got {other:?}"),
    }
}

fn sip(uri: &Uri) -> &selfprov::sip::message::SipUri {
    match uri {
        Uri::Sip(u) => u,
        other => panic!("not a SIP URI: {other:?}"),
    }
}

fn name(h: &str) -> Host {
    Host::Name(h.to_string())
}

/// Fixtures whose parse must fail (RFC 4475 outcome or edge case), with the expected error.
fn expected_parse_error(rel: &str) -> Option<fn(&ParseError) -> bool> {
    Some(match rel {
        // §3.1.2.2 clerr: Content-Length larger than the datagram.
        "rfc4475/clerr.dat" => |e| matches!(e, ParseError::Truncated { expected: 9999, .. }),
        // §3.1.2.3 ncl: negative Content-Length.
        "rfc4475/ncl.dat" => {
            |e| matches!(e, ParseError::Header { header, .. } if header == "Content-Length")
        }
        // §3.1.2.15 mcl01: several conflicting Content-Length values.
        "rfc4475/mcl01.dat" => {
            |e| matches!(e, ParseError::Header { header, .. } if header == "Content-Length")
        }
        // §3.1.2.7 ltgtruri: Request-URI in <>.
        "rfc4475/ltgtruri.dat" => |e| matches!(e, ParseError::StartLine(_)),
        // §3.1.2.8 lwsruri: whitespace inside the Request-URI.
        "rfc4475/lwsruri.dat" => |e| matches!(e, ParseError::StartLine(_)),
        // §3.1.2.9 lwsstart: several SP between Request-Line elements.
        "rfc4475/lwsstart.dat" => |e| matches!(e, ParseError::StartLine(_)),
        // §3.1.2.14 badvers: SIP/7.0, to be answered 505.
        "rfc4475/badvers.dat" => {
            |e| matches!(e, ParseError::StartLine(_)) && e.status_code() == 505
        }
        // §3.1.2.17 bigcode: response code > 699, to be dropped.
        "rfc4475/bigcode.dat" => |e| matches!(e, ParseError::StartLine(_)),
        "edge/short_body.sip" => |e| {
            *e == ParseError::Truncated {
                expected: 40,
                got: 10,
            }
        },
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Every fixture: parse outcome, round trip, Display round trips.
// ---------------------------------------------------------------------------------------------

fn headers_without_cl(m: &Message) -> Vec<(String, String)> {
    m.headers()
        .0
        .iter()
        .filter(|h| h.name != "Content-Length")
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect()
}

fn check_display_round_trips(rel: &str, m: &Message) {
    let h = m.headers();
    for v in h.get_list("Via") {
        if let Ok(via) = Via::parse(v) {
            let again = Via::parse(&via.to_string())
                .unwrap_or_else(|e| panic!("{rel}: {via} does not re-parse: {e}"));
            assert_eq!(again, via, "{rel}: Via display round trip");
        }
    }
    for name in [
        "From",
        "To",
        "Contact",
        "Route",
        "Record-Route",
        "P-Asserted-Identity",
    ] {
        for v in h.get_list(name) {
            if let Ok(na) = NameAddr::parse(v) {
                let shown = na.to_string();
                let again = NameAddr::parse(&shown)
                    .unwrap_or_else(|e| panic!("{rel}: {shown} does not re-parse: {e}"));
                assert_eq!(again, na, "{rel}: {name} display round trip via {shown}");
            }
        }
    }
}

#[test]
fn every_fixture_parses_or_fails_as_documented_and_round_trips() {
    for (rel, bytes) in all_fixtures() {
        let parsed = parse(&bytes);
        if let Some(check) = expected_parse_error(&rel) {
            match parsed {
                Err(e) => assert!(check(&e), "{rel}: unexpected error {e:?}"),
                Ok(m) => panic!("{rel}: should not parse, got {m:?}"),
            }
            continue;
        }
        let m = parsed.unwrap_or_else(|e| panic!("{rel}: {e}"));
        // Serialise and parse again: same start line, headers, body.
        let wire = m.to_bytes();
        assert!(wire.ends_with(m.body()), "{rel}");
        let head = &wire[..wire.len() - m.body().len()];
        let head = std::str::from_utf8(head).expect("head is UTF-8");
        assert!(
            head.ends_with("\r\n\r\n"),
            "{rel}: head must end with CRLF CRLF"
        );
        assert!(
            !head.replace("\r\n", "").contains('\n'),
            "{rel}: bare LF in serialised head"
        );
        let again = parse(&wire).unwrap_or_else(|e| panic!("{rel}: re-parse failed: {e}"));
        assert_eq!(headers_without_cl(&again), headers_without_cl(&m), "{rel}");
        assert_eq!(again.body(), m.body(), "{rel}");
        assert_eq!(
            again.headers().get("Content-Length"),
            Some(m.body().len().to_string().as_str()),
            "{rel}"
        );
        match (&m, &again) {
            (Message::Request(a), Message::Request(b)) => {
                assert_eq!(a.method, b.method, "{rel}");
                assert_eq!(a.uri, b.uri, "{rel}");
                assert_eq!(a.vias().ok(), b.vias().ok(), "{rel}");
                assert_eq!(a.validate().is_ok(), b.validate().is_ok(), "{rel}");
            }
            (Message::Response(a), Message::Response(b)) => {
                assert_eq!((a.status, &a.reason), (b.status, &b.reason), "{rel}");
            }
            _ => panic!("{rel}: kind changed"),
        }
        // Serialising twice gives identical bytes.
        assert_eq!(again.to_bytes(), wire, "{rel}: not a fixed point");
        check_display_round_trips(&rel, &m);
    }
}

#[test]
fn every_phone_fixture_validates() {
    for (rel, bytes) in all_fixtures() {
        if !rel.starts_with("phones/") {
            continue;
        }
        let Ok(Message::Request(r)) = parse(&bytes) else {
            panic!("{rel}")
        };
        r.validate().unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert!(
            r.top_via()
                .unwrap()
                .branch()
                .unwrap()
                .starts_with("z9hG4bK"),
            "{rel}"
        );
        // SIPp's default scenario sends no User-Agent; every phone does.
        assert_eq!(
            r.headers.get("User-Agent").is_some(),
            !rel.contains("sipp"),
            "{rel}"
        );
        assert!(r.from().unwrap().tag().is_some(), "{rel}");
    }
}

// ---------------------------------------------------------------------------------------------
// Real phones.
// ---------------------------------------------------------------------------------------------

#[test]
fn yealink_invite_two_via_lines_and_sdp() {
    let r = req("phones/yealink_t46s_invite.sip");
    assert_eq!(r.method, Method::Invite);
    let u = sip(&r.uri);
    assert_eq!(
        (u.user.as_deref(), &u.host, u.port),
        (Some("*99"), &name("pbx.example.com"), Some(5060))
    );
    let vias = r.vias().unwrap();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].host, Host::V4(Ipv4Addr::new(192, 0, 2, 10)));
    assert_eq!(vias[0].rport(), Some(None));
    assert_eq!(vias[1].received(), Some("198.51.100.7"));
    assert_eq!(vias[1].rport(), Some(Some(5060)));
    assert_eq!(vias[1].branch(), Some("z9hG4bK1862432071"));
    assert_eq!(r.top_via().unwrap(), vias[0]);
    let from = r.from().unwrap();
    assert_eq!(from.display.as_deref(), Some("Reception 1001"));
    assert_eq!(from.tag(), Some("2104583412"));
    assert_eq!(r.to().unwrap().tag(), None);
    assert_eq!(r.call_id().unwrap(), "0_2356815342@10.0.0.23");
    let cseq = r.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (1, Method::Invite));
    assert_eq!(r.max_forwards().unwrap(), Some(69));
    assert_eq!(r.content_type().as_deref(), Some("application/sdp"));
    assert!(r.body.starts_with(b"v=0\r\n") && r.body.ends_with(b"a=sendrecv\r\n"));
    assert_eq!(
        r.headers.get("user-agent"),
        Some("Yealink SIP-T46S 66.86.0.15")
    );
}

#[test]
fn cisco_contact_feature_params() {
    let r = req("phones/cisco_cp8851_invite.sip");
    assert_eq!(sip(&r.uri).params.get("user"), Some(Some("phone")));
    let contacts = r.contacts().unwrap();
    assert_eq!(contacts.len(), 1);
    let c = &contacts[0];
    assert_eq!(
        c.params.get("+sip.instance"),
        Some(Some("<urn:uuid:00000000-0000-0000-0000-0004f2a1b2c3>"))
    );
    assert_eq!(
        c.params.get("+u.sip!devicename.ccm.cisco.com"),
        Some(Some("SEP0004F2A1B2C3"))
    );
    assert_eq!(c.params.get("video"), Some(None));
    assert_eq!(sip(&c.uri).params.get("transport"), Some(Some("tcp")));
    assert_eq!(sip(&c.uri).port, Some(51634));
    // Feature-tag values stay quoted when written back (RFC 3840).
    let shown = c.to_string();
    assert!(
        shown.contains(r#";+u.sip!devicename.ccm.cisco.com="SEP0004F2A1B2C3""#),
        "{shown}"
    );
    assert!(shown.contains(r#";+sip.instance="<urn:uuid:00000000-0000-0000-0000-0004f2a1b2c3>""#));
    assert_eq!(r.headers.get_all("Recv-Info").count(), 2);
    assert_eq!(r.top_via().unwrap().transport, "TCP");
    assert_eq!(r.headers.get("User-Agent"), Some("Cisco-CP8851/14.2.1"));
}

#[test]
fn polycom_register_contact_params() {
    let r = req("phones/polycom_vvx411_register.sip");
    assert_eq!(r.method, Method::Register);
    let c = &r.contacts().unwrap()[0];
    assert_eq!(c.params.get("expires"), Some(Some("3600")));
    assert_eq!(c.params.get("q"), Some(Some("0.5")));
    assert_eq!(c.params.get("reg-id"), Some(Some("1")));
    assert_eq!(
        c.params.get("methods"),
        Some(Some("INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, MESSAGE, SUBSCRIBE, NOTIFY, PRACK, UPDATE, REFER"))
    );
    assert_eq!(
        c.params.get("+sip.instance"),
        Some(Some("<urn:uuid:00000000-0000-0000-0000-64167fa1b2c3>"))
    );
    assert_eq!(
        r.headers.get("User-Agent"),
        Some("PolycomVVX-VVX_411-UA/6.4.3.5018")
    );
}

#[test]
fn grandstream_snom_baresip_sipp() {
    let g = req("phones/grandstream_gxp2170_invite.sip");
    assert_eq!(
        g.headers.get("User-Agent"),
        Some("Grandstream GXP2170 1.0.11.23")
    );
    assert_eq!(g.top_via().unwrap().port, Some(5062));
    assert_eq!(g.call_id().unwrap(), "1938283614-5062-1@BJC.BGI.A.FC");

    let s = req("phones/snom_d785_invite.sip");
    let from = s.from().unwrap();
    assert_eq!(from.display.as_deref(), Some(r#"J. "Jo" Doe"#));
    assert_eq!(
        from.to_string(),
        r#""J. \"Jo\" Doe" <sip:1005@pbx.example.com>;tag=cqt9bq8xfm"#
    );
    assert_eq!(s.headers.get("User-Agent"), Some("snomD785/10.1.159.12"));
    assert_eq!(
        s.to().unwrap().uri.as_sip().unwrap().params.get("user"),
        Some(Some("phone"))
    );

    let b = req("phones/baresip_invite.sip");
    assert_eq!(b.cseq().unwrap().seq, 4711);
    assert_eq!(b.from().unwrap().display, None);

    let p = req("phones/sipp_uac_invite.sip");
    // `Contact: sip:...` without <> and `To: service <sip:...>` with a token display name.
    let c = &p.contacts().unwrap()[0];
    assert_eq!(sip(&c.uri).user.as_deref(), Some("sipp"));
    assert_eq!(p.to().unwrap().display.as_deref(), Some("service"));
    assert_eq!(p.headers.get("Subject"), Some("Performance Test"));
    assert_eq!(p.body.len(), 129);
}

#[test]
fn info_dtmf_bodies() {
    let r = req("phones/yealink_info_dtmf_relay.sip");
    assert_eq!(r.method, Method::Info);
    assert_eq!(r.content_type().as_deref(), Some("application/dtmf-relay"));
    assert_eq!(&r.body[..], b"Signal=5\r\nDuration=160\r\n");
    let r = req("phones/cisco_info_dtmf.sip");
    assert_eq!(r.content_type().as_deref(), Some("application/dtmf"));
    assert_eq!(&r.body[..], b"5");
}

#[test]
fn options_bye_ack_cancel() {
    assert_eq!(
        req("phones/grandstream_options_keepalive.sip").method,
        Method::Options
    );
    let bye = req("phones/yealink_bye.sip");
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.to().unwrap().tag(), Some("ivr-5f1c2a"));
    let ack = req("phones/yealink_ack.sip");
    assert_eq!(ack.cseq().unwrap().method, Method::Ack);
    let routes = ack.routes().unwrap();
    assert_eq!(routes.len(), 2, "two Route values on one line");
    assert_eq!(sip(&routes[1].uri).params.get("lr"), Some(None));
    let cancel = req("phones/yealink_cancel.sip");
    assert_eq!(cancel.method, Method::Cancel);
    assert_eq!(cancel.vias().unwrap().len(), 2);
    cancel.validate().unwrap();
}

// ---------------------------------------------------------------------------------------------
// RFC 4475 §3.1.1: valid messages.
// ---------------------------------------------------------------------------------------------

/// RFC 4475 §3.1.1.1 wsinv: a short tortuous INVITE.
#[test]
fn rfc4475_wsinv() {
    let r = req("rfc4475/wsinv.dat");
    r.validate().unwrap();
    assert_eq!(r.method, Method::Invite);
    let u = sip(&r.uri);
    assert_eq!(u.user.as_deref(), Some("vivekg"));
    assert_eq!(u.params.get("unknownparam"), Some(None));
    let to = r.to().unwrap();
    assert_eq!(to.tag(), Some("1918181833n"));
    assert_eq!(to.display, None);
    let from = r.from().unwrap();
    assert_eq!(from.display.as_deref(), Some(r#"J Rosenberg \""#));
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(r.max_forwards().unwrap(), Some(68));
    assert_eq!(r.call_id().unwrap(), "wsinv.ndaksdj@192.0.2.1");
    let cseq = r.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (9, Method::Invite));
    let vias = r.vias().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(
        (vias[0].transport.as_str(), &vias[0].host),
        ("UDP", &Host::V4(Ipv4Addr::new(192, 0, 2, 2)))
    );
    assert_eq!(vias[0].branch(), Some("390skdjuw"));
    assert_eq!(
        (vias[1].transport.as_str(), &vias[1].host),
        ("TCP", &name("spindle.example.com"))
    );
    assert_eq!(vias[1].branch(), Some("z9hG4bK9ikj8"));
    assert_eq!(vias[2].branch(), Some("z9hG4bK30239"));
    assert_eq!(r.headers.get("Subject"), Some(""));
    assert_eq!(
        r.headers.get("NewFangledHeader"),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(
        r.headers.get("UnknownHeaderWithUnusualValue"),
        Some(";;,,;;,;")
    );
    let c = &r.contacts().unwrap()[0];
    assert_eq!(c.display.as_deref(), Some(r#"Quoted string """#));
    assert_eq!(c.params.get("newparam"), Some(Some("newvalue")));
    assert_eq!(c.params.get("secondparam"), Some(None));
    assert_eq!(c.params.get("q"), Some(Some("0.33")));
    let route = &r.routes().unwrap()[0];
    assert_eq!(sip(&route.uri).params.get("unknown-no-value"), Some(None));
    assert_eq!(r.body.len(), 150);
}

/// RFC 4475 §3.1.1.2 intmeth: wide range of valid characters.
#[test]
fn rfc4475_intmeth() {
    let r = req("rfc4475/intmeth.dat");
    let m = Method::Other("!interesting-Method0123456789_*+`.%indeed'~".into());
    assert_eq!(r.method, m);
    r.validate().unwrap();
    let u = sip(&r.uri);
    assert_eq!(
        u.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        u.password.as_deref(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(u.host, name("example.com"));
    assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK-.!%66*_+`'~"));
    assert_eq!(
        r.to().unwrap().display.as_deref(),
        Some("BEL:\x07 NUL:\0 DEL:\x7f")
    );
    let from = r.from().unwrap();
    assert_eq!(
        from.display.as_deref(),
        Some("token1~` token2'+_ token3*%!.-")
    );
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    assert_eq!(
        from.params.get("fromParam''~+*_!.-%"),
        Some(Some(
            "\u{440}\u{430}\u{431}\u{43e}\u{442}\u{430}\u{44e}\u{449}\u{438}\u{439}"
        ))
    );
    assert_eq!(
        r.call_id().unwrap(),
        "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    );
    assert_eq!(r.cseq().unwrap().method, m);
    assert_eq!(r.max_forwards().unwrap(), Some(255));
    assert!(r.headers.get("extensionHeader-!.%*+_`'~").is_some());
}

/// RFC 4475 §3.1.1.3 esc01 and §3.1.1.4 escnull: escapes kept as written.
#[test]
fn rfc4475_esc01_escnull() {
    let r = req("rfc4475/esc01.dat");
    r.validate().unwrap();
    assert_eq!(
        sip(&r.uri).user.as_deref(),
        Some("sips%3Auser%40example.com")
    );
    assert_eq!(r.uri.user(), Some("sips%3Auser%40example.com"));
    assert_eq!(sip(&r.to().unwrap().uri).user.as_deref(), Some("%75se%72"));
    assert_eq!(
        sip(&r.from().unwrap().uri).user.as_deref(),
        Some("I%20have%20spaces")
    );
    let c = &r.contacts().unwrap()[0];
    assert_eq!(sip(&c.uri).params.get("%6C%72"), Some(None));
    assert_eq!(
        sip(&c.uri).params.get("n%61me"),
        Some(Some("v%61lue%25%34%31"))
    );
    assert_eq!(r.content_type().as_deref(), Some("application/sdp"));

    let r = req("rfc4475/escnull.dat");
    r.validate().unwrap();
    let cs = r.contacts().unwrap();
    assert_eq!(cs.len(), 2);
    assert_eq!(sip(&cs[0].uri).user.as_deref(), Some("%00"));
    assert_eq!(sip(&cs[1].uri).user.as_deref(), Some("%00%00"));
    assert_eq!(
        sip(&r.to().unwrap().uri).user.as_deref(),
        Some("null-%00-null")
    );
}

/// RFC 4475 §3.1.1.5 esc02: % is not an escape in methods, display names or header names.
#[test]
fn rfc4475_esc02() {
    let r = req("rfc4475/esc02.dat");
    assert_eq!(r.method, Method::Other("RE%47IST%45R".into()));
    r.validate().unwrap();
    assert_eq!(r.to().unwrap().display.as_deref(), Some("%Z%45"));
    assert_eq!(
        r.contacts().unwrap().len(),
        2,
        "C%6Fntact is another header"
    );
    assert_eq!(
        r.headers.get("C%6Fntact"),
        Some("<sip:alias2@host2.example.com>")
    );
}

/// RFC 4475 §3.1.1.6 lwsdisp, §3.1.1.7 longreq, §3.1.1.9 semiuri, §3.1.1.10 transports.
#[test]
fn rfc4475_lwsdisp_longreq_semiuri_transports() {
    let r = req("rfc4475/lwsdisp.dat");
    r.validate().unwrap();
    assert_eq!(r.from().unwrap().display.as_deref(), Some("caller"));

    let r = req("rfc4475/longreq.dat");
    r.validate().unwrap();
    assert_eq!(r.vias().unwrap().len(), 34);
    assert_eq!(r.vias().unwrap()[33].received(), Some("192.0.2.5"));
    assert_eq!(sip(&r.to().unwrap().uri).port, Some(6000));
    assert_eq!(r.body.len(), 150);

    let r = req("rfc4475/semiuri.dat");
    r.validate().unwrap();
    let u = sip(&r.uri);
    assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
    assert_eq!(u.host, name("example.com"));
    assert!(u.params.0.is_empty());
    assert_eq!(r.headers.get_list("Accept").len(), 6);

    let r = req("rfc4475/transports.dat");
    r.validate().unwrap();
    let t: Vec<_> = r.vias().unwrap().into_iter().map(|v| v.transport).collect();
    assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
}

/// RFC 4475 §3.1.1.8 dblreq: over UDP the bytes after Content-Length are ignored; on a
/// stream they are the next message.
#[test]
fn rfc4475_dblreq() {
    let bytes = load("rfc4475/dblreq.dat");
    let r = req("rfc4475/dblreq.dat");
    assert_eq!(r.method, Method::Register);
    assert!(r.body.is_empty());
    let mut f = StreamFramer::new();
    f.push(&bytes);
    let first = f.next_message().unwrap().unwrap();
    let second = f.next_message().unwrap().unwrap();
    assert_eq!(parse(&first).unwrap(), Message::Request(r));
    let Message::Request(inv) = parse(&second).unwrap() else {
        panic!()
    };
    assert_eq!(inv.method, Method::Invite);
    assert_eq!(inv.body.len(), 150);
    // The INVITE's SDP is 152 bytes but its Content-Length says 150: on a stream the 2 extra
    // bytes start a "message" without Content-Length, which is fatal for the connection.
    assert_eq!(f.next_message(), Err(FramingError::MissingContentLength));
}

/// RFC 4475 §3.1.1.11 mpart01 (binary multipart body), §3.1.1.12 unreason, §3.1.1.13 noreason.
#[test]
fn rfc4475_mpart01_unreason_noreason() {
    let r = req("rfc4475/mpart01.dat");
    r.validate().unwrap();
    assert_eq!(r.method, Method::Message);
    assert_eq!(r.content_type().as_deref(), Some("multipart/mixed"));
    assert_eq!(r.body.len(), 553);
    assert!(r.body.ends_with(b"--7a9cbec02ceef655--\r\n"));
    assert_eq!(r.top_via().unwrap().rport(), Some(None));

    let r = resp("rfc4475/unreason.dat");
    assert_eq!(r.status, 200);
    assert!(r.reason.starts_with("= 2**3 * 5**2 "), "{}", r.reason);
    assert!(r
        .reason
        .ends_with("\u{43f}\u{440}\u{43e}\u{441}\u{442}\u{43e}\u{435}"));
    r.validate().unwrap();
    assert_eq!(r.body.len(), 154);

    let r = resp("rfc4475/noreason.dat");
    assert_eq!((r.status, r.reason.as_str()), (100, ""));
    r.validate().unwrap();
}

/// Other RFC 4475 messages that are valid (§3.1.1, §3.3, §3.4): they parse and validate.
#[test]
fn rfc4475_other_valid() {
    for f in [
        "zeromf",
        "invut",
        "bext01",
        "regaut01",
        "sdp01",
        "regescrt",
        "unkscm",
        "unksm2",
        "novelsc",
        "inv2543",
        "cparam01",
        "cparam02",
        "escruri",
        "baddate",
        "badbranch",
    ] {
        let r = req(&format!("rfc4475/{f}.dat"));
        r.validate().unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    assert_eq!(req("rfc4475/zeromf.dat").max_forwards().unwrap(), Some(0));
    assert_eq!(
        req("rfc4475/invut.dat").content_type().as_deref(),
        Some("application/unknownformat")
    );
    // §3.3.1 unkscm, §3.3.2 novelsc: unknown schemes kept raw.
    assert_eq!(
        req("rfc4475/unkscm.dat").uri,
        Uri::Other("nobodyKnowsThisScheme:totallyopaquecontent".into())
    );
    assert_eq!(
        req("rfc4475/novelsc.dat").uri,
        Uri::Other("soap.beep://192.0.2.103:3002".into())
    );
    // §3.3.3 unksm2: unknown schemes in To/From/Contact.
    let r = req("rfc4475/unksm2.dat");
    assert_eq!(r.to().unwrap().uri, Uri::Other("isbn:2983792873".into()));
    assert_eq!(
        r.from().unwrap().uri,
        Uri::Other("http://www.example.com".into())
    );
    assert_eq!(
        r.contacts().unwrap()[0].uri,
        Uri::Other("name:John_Smith".into())
    );
    // §3.3.9 regescrt: escaped headers in a Contact URI in <> are fine.
    let c = &req("rfc4475/regescrt.dat").contacts().unwrap()[0];
    assert_eq!(
        sip(&c.uri).headers,
        vec![("Route".to_string(), "%3Csip:sip.example.com%3E".to_string())]
    );
    // §3.3.11/§3.3.12 cparam01/02: a param after a bare URI belongs to the header, in <> to the URI.
    let c = &req("rfc4475/cparam01.dat").contacts().unwrap()[0];
    assert_eq!(c.params.get("unknownparam"), Some(None));
    assert!(sip(&c.uri).params.0.is_empty());
    assert_eq!(sip(&c.uri).user.as_deref(), Some("+19725552222"));
    let c = &req("rfc4475/cparam02.dat").contacts().unwrap()[0];
    assert!(c.params.0.is_empty());
    assert_eq!(sip(&c.uri).params.get("unknownparam"), Some(None));
    // §3.3.15 inv2543: RFC 2543 style, no Content-Length on UDP: body = rest of datagram.
    let r = req("rfc4475/inv2543.dat");
    assert!(r.body.starts_with(b"v=0") && r.body.ends_with(b"RTP/AVP 0\r\n"));
    assert_eq!(r.top_via().unwrap().branch(), None);
    assert_eq!(sip(&r.to().unwrap().uri).params.0.len(), 0);
    assert_eq!(r.to().unwrap().params.get("user"), Some(Some("phone")));
    // §3.1.2.11 escruri: accepted liberally, headers of the Request-URI kept apart.
    assert_eq!(sip(&req("rfc4475/escruri.dat").uri).headers.len(), 1);
    // §3.1.2.13 baddate: Date is not interpreted, so no error.
    // §3.1.2.18 badbranch: branch z9hG4bK without identifier still parses.
    assert_eq!(
        req("rfc4475/badbranch.dat").top_via().unwrap().branch(),
        Some("z9hG4bK")
    );
}

// ---------------------------------------------------------------------------------------------
// RFC 4475 §3.1.2: invalid messages. Parse errors are listed in `expected_parse_error`; these
// ones parse (so a 400 can echo their headers) and fail `validate()` or the typed accessor.
// ---------------------------------------------------------------------------------------------

#[test]
fn rfc4475_invalid_fail_validation() {
    // §3.1.2.1 badinv01: empty Via and Contact parameters.
    let r = req("rfc4475/badinv01.dat");
    assert!(matches!(r.validate(), Err(ParseError::Header { header, .. }) if header == "Via"));
    assert!(r.contacts().is_err());
    // §3.1.2.4 scalar02: overlarge CSeq, Max-Forwards.
    let r = req("rfc4475/scalar02.dat");
    assert!(matches!(r.cseq(), Err(ParseError::Header { header, .. }) if header == "CSeq"));
    assert!(r.max_forwards().is_err());
    assert!(r.validate().is_err());
    // §3.1.2.5 scalarlg: overlarge CSeq in a response: dropped by the UAC.
    let resp_lg = resp("rfc4475/scalarlg.dat");
    assert!(resp_lg.cseq().is_err() && resp_lg.validate().is_err());
    // §3.1.2.6 quotbal: unterminated quoted display name.
    let r = req("rfc4475/quotbal.dat");
    assert!(matches!(r.to(), Err(ParseError::Header { header, .. }) if header == "To"));
    assert!(r.validate().is_err());
    // §3.1.2.12 regbadct: URI with headers outside <>.
    assert!(req("rfc4475/regbadct.dat").contacts().is_err());
    // §3.1.2.16 mismatch01: CSeq method differs from the request line.
    assert!(
        matches!(req("rfc4475/mismatch01.dat").validate(), Err(ParseError::Header { header, .. }) if header == "CSeq")
    );
    // §3.1.2.17 mismatch02: unknown method (501 candidate) with a mismatching CSeq.
    let r = req("rfc4475/mismatch02.dat");
    assert_eq!(r.method, Method::Other("NEWMETHOD".into()));
    assert!(r.validate().is_err());
    // §3.1.2.19 insuf: missing To, From, Call-ID.
    assert!(matches!(
        req("rfc4475/insuf.dat").validate(),
        Err(ParseError::Missing(_))
    ));
    // §3.1.2.x multi01: several To/From/CSeq/Call-ID.
    assert!(req("rfc4475/multi01.dat").validate().is_err());
    // §3.1.2.x baddn: unquoted display names with non-token characters.
    let r = req("rfc4475/baddn.dat");
    assert!(r.from().is_err() && r.to().is_err() && r.validate().is_err());
    // §3.1.2.10 trws: trailing SP after SIP-Version: tolerated.
    req("rfc4475/trws.dat").validate().unwrap();
    // badaspec: spaces inside <>: tolerated (the RFC allows being liberal).
    let to = req("rfc4475/badaspec.dat").to().unwrap();
    assert_eq!(sip(&to.uri).user.as_deref(), Some("t.watson"));
    assert_eq!(to.display.as_deref(), Some("Watson, Thomas"));
    // bcast: a response with a broadcast Via parses; refusing to send there is the transport's job.
    let b = resp("rfc4475/bcast.dat");
    assert_eq!(b.vias().unwrap()[1].host, Host::V4(Ipv4Addr::BROADCAST));
}

#[test]
fn parse_errors_map_to_status_codes() {
    assert_eq!(
        parse(&load("rfc4475/badvers.dat"))
            .unwrap_err()
            .status_code(),
        505
    );
    assert_eq!(
        parse(&load("rfc4475/clerr.dat")).unwrap_err().status_code(),
        400
    );
    let big = vec![b'a'; MAX_MESSAGE_SIZE + 1];
    assert_eq!(parse(&big), Err(ParseError::TooLarge(MAX_MESSAGE_SIZE)));
    assert_eq!(parse(&big).unwrap_err().status_code(), 513);
    assert_eq!(parse(b""), Err(ParseError::Empty));
    assert_eq!(parse(b"\r\n\r\n"), Err(ParseError::Empty));
    assert!(matches!(
        parse(b"INV@TE sip:a@b SIP/2.0\r\n\r\n"),
        Err(ParseError::StartLine(_))
    ));
    assert!(matches!(
        parse(b"OPTIONS sip:a@b SIP/2.0\r\nVia SIP/2.0/UDP h\r\n\r\n"),
        Err(ParseError::HeaderLine(_))
    ));
    assert!(matches!(
        parse(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UD"),
        Err(ParseError::HeaderLine(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Edge cases.
// ---------------------------------------------------------------------------------------------

#[test]
fn compact_only() {
    let r = req("edge/compact_only.sip");
    r.validate().unwrap();
    let names: Vec<_> = r.headers.0.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Via",
            "From",
            "To",
            "Call-ID",
            "CSeq",
            "Contact",
            "Supported",
            "Subject",
            "Event",
            "Refer-To",
            "Allow-Events",
            "Content-Encoding",
            "Content-Type",
            "Content-Length",
            "Max-Forwards"
        ]
    );
    assert_eq!(r.headers.get("r"), Some("<sip:1002@pbx.example.com>"));
    assert_eq!(
        r.headers.get("refer-to"),
        Some("<sip:1002@pbx.example.com>")
    );
    assert_eq!(r.headers.get("O"), Some("refer"));
    assert_eq!(&r.body[..], b"ok");
}

#[test]
fn folded_lines() {
    let r = req("edge/folded.sip");
    r.validate().unwrap();
    let v = r.top_via().unwrap();
    assert_eq!(v.branch(), Some("z9hG4bKfold1"));
    assert_eq!(v.rport(), Some(None));
    assert_eq!(v.port, Some(5060));
    assert_eq!(r.from().unwrap().display.as_deref(), Some("Folded Name"));
    assert_eq!(r.from().unwrap().tag(), Some("f1"));
    assert_eq!(r.cseq().unwrap().method, Method::Options);
    assert_eq!(r.headers.get("Subject"), Some("first part second part"));
}

#[test]
fn lf_only() {
    let r = req("edge/lf_only.sip");
    r.validate().unwrap();
    assert_eq!(&r.body[..], b"Signal=#\nDuration=250\n");
    assert_eq!(r.call_id().unwrap(), "lf-only-1@10.0.0.9");
    // Written back with CRLF.
    assert!(r
        .to_bytes()
        .starts_with(b"INFO sip:ivr@192.0.2.20 SIP/2.0\r\nVia: "));
}

#[test]
fn ipv6_everywhere() {
    let r = req("edge/ipv6.sip");
    r.validate().unwrap();
    let v6 = |s: &str| Host::V6(s.parse::<Ipv6Addr>().unwrap());
    let u = sip(&r.uri);
    assert_eq!((&u.host, u.port), (&v6("2001:db8::1"), Some(5060)));
    assert_eq!(r.uri.to_string(), "sip:8000@[2001:db8::1]:5060");
    let vias = r.vias().unwrap();
    assert_eq!(vias.len(), 3, "one line with one value, one with two");
    assert_eq!(
        (&vias[0].host, vias[0].port),
        (&v6("2001:db8::10"), Some(5060))
    );
    assert_eq!(vias[0].received(), Some("2001:db8::9"));
    assert_eq!(vias[0].rport(), Some(Some(5070)));
    assert_eq!(
        vias[0].to_string(),
        "SIP/2.0/UDP [2001:db8::10]:5060;branch=z9hG4bKv6a;received=2001:db8::9;rport=5070"
    );
    assert_eq!((&vias[1].host, vias[1].port), (&v6("2001:db8::20"), None));
    assert_eq!(vias[2].transport, "UDP");
    assert_eq!(sip(&r.contacts().unwrap()[0].uri).host, v6("2001:db8::10"));
    assert_eq!(
        r.contacts().unwrap()[0].params.get("expires"),
        Some(Some("3600"))
    );
    assert_eq!(
        sip(&r.record_routes().unwrap()[0].uri).host,
        v6("2001:db8::20")
    );
    assert_eq!(r.call_id().unwrap(), "v6-1@2001:db8::10");
}

#[test]
fn tel_uris() {
    let r = req("edge/tel_ruri.sip");
    r.validate().unwrap();
    match &r.uri {
        Uri::Tel(t) => assert_eq!(t.number, "+12015550123"),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.uri.user(), Some("+12015550123"));
    assert_eq!(r.from().unwrap().uri.user(), Some("+12015550100"));
    assert_eq!(r.from().unwrap().tag(), Some("tel1"));
    let pai = r.headers.get_list("P-Asserted-Identity");
    assert_eq!(pai.len(), 2);
    let first = NameAddr::parse(pai[0]).unwrap();
    assert_eq!(first.display.as_deref(), Some("Front Desk"));
    assert!(matches!(first.uri, Uri::Tel(_)));
    let second = NameAddr::parse(pai[1]).unwrap();
    assert_eq!(sip(&second.uri).params.get("user"), Some(Some("phone")));
    assert!(Uri::parse("tel:").is_err());
    assert!(
        Uri::parse("tel:+12a").is_err(),
        "global numbers are digits only"
    );
    assert_eq!(
        Uri::parse("tel:7042;phone-context=example.com")
            .unwrap()
            .to_string(),
        "tel:7042;phone-context=example.com"
    );
}

#[test]
fn escaped_user_and_quoted_display() {
    let r = req("edge/escaped_user.sip");
    r.validate().unwrap();
    assert_eq!(r.uri.user(), Some("%2B12015550123"));
    assert_eq!(sip(&r.uri).params.get("user"), Some(Some("phone")));
    let from = r.from().unwrap();
    assert_eq!(from.display.as_deref(), Some(r#"J. "Jo" Doe"#));
    assert_eq!(from.uri.user(), Some("jo%20doe"));
    let to = r.to().unwrap();
    assert!(sip(&to.uri).secure);
    assert_eq!(
        to.params.get("user"),
        Some(Some("phone")),
        "bare URI: param is a header param"
    );
    assert_eq!(to.uri.to_string(), "sips:%2B12015550123@pbx.example.com");
}

#[test]
fn unknown_method_foo() {
    let r = req("edge/unknown_method_foo.sip");
    assert_eq!(r.method, Method::Other("FOO".into()));
    r.validate().unwrap();
    let resp = Response::for_request(&r, 501, "");
    assert_eq!(resp.reason, "Not Implemented");
}

#[test]
fn content_length_bounds_the_body() {
    let r = req("edge/extra_bytes.sip");
    assert_eq!(
        &r.body[..],
        b"7",
        "bytes after Content-Length are ignored on UDP"
    );
    let r = req("edge/no_content_length.sip");
    assert_eq!(
        &r.body[..],
        b"Signal=9\r\nDuration=100\r\n",
        "no Content-Length: rest of datagram"
    );
    assert_eq!(
        parse(&load("edge/short_body.sip")),
        Err(ParseError::Truncated {
            expected: 40,
            got: 10
        })
    );
    // Glued messages in one datagram: the first one only.
    let r = req("edge/glued_two_messages.sip");
    assert_eq!(r.method, Method::Options);
    assert!(r.body.is_empty());
}

#[test]
fn response_with_via_and_record_route_lists() {
    let r = resp("edge/proxied_200.sip");
    r.validate().unwrap();
    assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
    let vias = r.vias().unwrap();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[1].received(), Some("198.51.100.7"));
    let rr = r.record_routes().unwrap();
    assert_eq!(rr.len(), 3);
    assert_eq!(rr[1].display.as_deref(), Some("Edge, Proxy"));
    assert_eq!(r.contacts().unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Building responses and messages.
// ---------------------------------------------------------------------------------------------

#[test]
fn response_for_request_copies_the_right_headers() {
    let r = req("phones/yealink_t46s_invite.sip");
    let mut resp = Response::for_request(&r, 180, "");
    assert_eq!(resp.reason, "Ringing");
    let names: Vec<_> = resp.headers.0.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["Via", "Via", "From", "To", "Call-ID", "CSeq"]);
    assert_eq!(resp.vias().unwrap(), r.vias().unwrap());
    assert_eq!(resp.from().unwrap(), r.from().unwrap());
    assert_eq!(resp.to().unwrap(), r.to().unwrap());
    assert_eq!(resp.call_id().unwrap(), r.call_id().unwrap());
    assert_eq!(resp.cseq().unwrap(), r.cseq().unwrap());
    assert!(resp.body.is_empty());
    // The caller adds the To tag.
    let mut to = resp.to().unwrap();
    to.params.set("tag", Some("ivr-1"));
    resp.headers.set("To", to.to_string());
    let wire = resp.to_bytes();
    let text = std::str::from_utf8(&wire).unwrap();
    assert!(
        text.starts_with("SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;"),
        "{text}"
    );
    assert!(
        text.contains("\r\nTo: <sip:*99@pbx.example.com:5060>;tag=ivr-1\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\nContent-Length: 0\r\n\r\n"), "{text}");
    let Message::Response(back) = parse(&wire).unwrap() else {
        panic!()
    };
    assert_eq!(back.to().unwrap().tag(), Some("ivr-1"));
    // Compact names in the request are copied under their long names.
    let c = req("edge/compact_only.sip");
    let resp = Response::for_request(&c, 200, "OK");
    assert_eq!(resp.call_id().unwrap(), "compact01@192.0.2.20");
    assert_eq!(resp.headers.0.len(), 5);
    // A 100 copies Timestamp (RFC 3261 §8.2.6.1).
    let mut t = r.clone();
    t.headers.push("Timestamp", "54");
    assert_eq!(
        Response::for_request(&t, 100, "").headers.get("Timestamp"),
        Some("54")
    );
}

#[test]
fn to_bytes_computes_content_length_and_strips_injection() {
    let mut r = req("phones/yealink_info_dtmf_relay.sip");
    r.body = bytes::Bytes::from_static(b"Signal=7\r\nDuration=100\r\n");
    r.headers.push("X-Evil", "a\r\nVia: injected");
    let wire = r.to_bytes();
    let Message::Request(back) = parse(&wire).unwrap() else {
        panic!()
    };
    assert_eq!(back.body, r.body);
    assert_eq!(back.headers.get("Content-Length"), Some("24"));
    assert_eq!(back.headers.count("Content-Length"), 1);
    assert_eq!(back.vias().unwrap().len(), 1, "no header injection");
    // Position of Content-Length kept.
    let pos =
        |h: &selfprov::sip::message::Headers| h.0.iter().position(|x| x.name == "Content-Length");
    assert_eq!(pos(&back.headers), pos(&r.headers));
}

#[test]
fn display_impls() {
    assert_eq!(
        Host::V6("2001:db8::1".parse().unwrap()).to_string(),
        "[2001:db8::1]"
    );
    assert_eq!(Host::V4(Ipv4Addr::new(10, 0, 0, 1)).to_string(), "10.0.0.1");
    let mut p = selfprov::sip::message::Params::default();
    p.set("tag", Some("abc"));
    p.set("lr", None);
    p.set("text", Some("two words"));
    p.set("empty", Some(""));
    p.set("received", Some("2001:db8::9"));
    p.set("TAG", Some("xyz"));
    assert_eq!(
        p.to_string(),
        r#";tag=xyz;lr;text="two words";empty="";received=2001:db8::9"#
    );
    let na = NameAddr::parse(r#"<sip:a@b>;x="q\"uote""#).unwrap();
    assert_eq!(na.params.get("x"), Some(Some(r#"q"uote"#)));
    assert_eq!(na.to_string(), r#"<sip:a@b>;x="q\"uote""#);
    let v = Via::parse("SIP/2.0/udp host.example.com : 5062 ; branch = z9hG4bKa ; rport").unwrap();
    assert_eq!(
        v.to_string(),
        "SIP/2.0/UDP host.example.com:5062;branch=z9hG4bKa;rport"
    );
    assert_eq!(Method::Other("FOO".into()).to_string(), "FOO");
    assert!("INV ITE".parse::<Method>().is_err());
    assert!("".parse::<Method>().is_err());
    assert_eq!(
        "invite".parse::<Method>().unwrap(),
        Method::Other("invite".into()),
        "case-sensitive"
    );
}

#[test]
fn reason_phrases() {
    for (code, text) in [
        (100, "Trying"),
        (180, "Ringing"),
        (181, "Call Is Being Forwarded"),
        (182, "Queued"),
        (183, "Session Progress"),
        (200, "OK"),
        (300, "Multiple Choices"),
        (301, "Moved Permanently"),
        (302, "Moved Temporarily"),
        (305, "Use Proxy"),
        (380, "Alternative Service"),
        (400, "Bad Request"),
        (401, "Unauthorized"),
        (402, "Payment Required"),
        (403, "Forbidden"),
        (404, "Not Found"),
        (405, "Method Not Allowed"),
        (406, "Not Acceptable"),
        (407, "Proxy Authentication Required"),
        (408, "Request Timeout"),
        (410, "Gone"),
        (413, "Request Entity Too Large"),
        (414, "Request-URI Too Long"),
        (415, "Unsupported Media Type"),
        (416, "Unsupported URI Scheme"),
        (420, "Bad Extension"),
        (421, "Extension Required"),
        (422, "Session Interval Too Small"),
        (423, "Interval Too Brief"),
        (429, "Provide Referrer Identity"),
        (480, "Temporarily Unavailable"),
        (481, "Call/Transaction Does Not Exist"),
        (482, "Loop Detected"),
        (483, "Too Many Hops"),
        (484, "Address Incomplete"),
        (485, "Ambiguous"),
        (486, "Busy Here"),
        (487, "Request Terminated"),
        (488, "Not Acceptable Here"),
        (489, "Bad Event"),
        (491, "Request Pending"),
        (493, "Undecipherable"),
        (500, "Server Internal Error"),
        (501, "Not Implemented"),
        (502, "Bad Gateway"),
        (503, "Service Unavailable"),
        (504, "Server Time-out"),
        (505, "Version Not Supported"),
        (513, "Message Too Large"),
        (600, "Busy Everywhere"),
        (603, "Decline"),
        (604, "Does Not Exist Anywhere"),
        (606, "Not Acceptable"),
    ] {
        assert_eq!(reason_phrase(code), text, "{code}");
    }
    assert_eq!(reason_phrase(499), "Client Error");
}

// ---------------------------------------------------------------------------------------------
// Framing.
// ---------------------------------------------------------------------------------------------

/// Length of head + Content-Length body when the fixture is a complete stream message.
fn stream_len(bytes: &[u8]) -> Option<usize> {
    let m = parse(bytes).ok()?;
    m.headers().get("Content-Length")?;
    let text = bytes;
    let head_end = text
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| text.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))?;
    Some(head_end + m.body().len())
}

#[test]
fn framing_every_fixture_byte_by_byte() {
    let mut framed = 0;
    for (rel, bytes) in all_fixtures() {
        let Some(len) = stream_len(&bytes) else {
            continue;
        };
        let mut f = StreamFramer::new();
        let mut got = None;
        for (i, b) in bytes.iter().enumerate() {
            f.push(std::slice::from_ref(b));
            if let Some(m) = f.next_message().unwrap_or_else(|e| panic!("{rel}: {e}")) {
                assert_eq!(i + 1, len, "{rel}: message complete too early or late");
                got = Some(m);
                break;
            }
        }
        let m = got.unwrap_or_else(|| panic!("{rel}: no message framed"));
        assert_eq!(&m[..], &bytes[..len], "{rel}");
        assert_eq!(parse(&m).unwrap(), parse(&bytes).unwrap(), "{rel}");
        framed += 1;
    }
    assert!(framed >= 40, "only {framed} fixtures framed");
}

#[test]
fn framing_glued_messages_and_keepalives() {
    let bytes = load("edge/glued_two_messages.sip");
    let a = load("phones/grandstream_options_keepalive.sip");
    let b = load("phones/yealink_info_dtmf_relay.sip");
    let mut stream = b"\r\n\r\n".to_vec();
    stream.extend_from_slice(&bytes);
    stream.extend_from_slice(b"\r\n\r\n\r\n");
    let mut f = StreamFramer::new();
    f.push(&stream);
    assert_eq!(f.next_frame().unwrap(), Some(Frame::Ping));
    assert_eq!(f.next_frame().unwrap(), Some(Frame::Message(a.into())));
    assert_eq!(
        f.next_frame().unwrap(),
        Some(Frame::Message(b.clone().into()))
    );
    assert_eq!(f.next_frame().unwrap(), Some(Frame::Ping));
    assert_eq!(
        f.next_frame().unwrap(),
        None,
        "a lone CRLF may still become a ping"
    );
    f.push(b"INFO");
    assert_eq!(f.next_frame().unwrap(), Some(Frame::Pong));
    assert_eq!(f.next_frame().unwrap(), None);
    // Split at every position: same two messages.
    for cut in 0..bytes.len() {
        let mut f = StreamFramer::new();
        f.push(&bytes[..cut]);
        let mut out = Vec::new();
        while let Some(m) = f.next_message().unwrap() {
            out.push(m);
        }
        f.push(&bytes[cut..]);
        while let Some(m) = f.next_message().unwrap() {
            out.push(m);
        }
        assert_eq!(out.len(), 2, "cut at {cut}");
        assert_eq!(&out[1][..], &b[..]);
    }
}

#[test]
fn framing_errors() {
    let mut f = StreamFramer::new();
    f.push(&load("edge/no_content_length.sip"));
    assert_eq!(f.next_message(), Err(FramingError::MissingContentLength));
    let mut f = StreamFramer::new();
    f.push(&load("rfc4475/ncl.dat"));
    assert!(matches!(
        f.next_message(),
        Err(FramingError::BadContentLength(_))
    ));
    let mut f = StreamFramer::new();
    f.push(&load("rfc4475/mcl01.dat"));
    assert!(matches!(
        f.next_message(),
        Err(FramingError::BadContentLength(_))
    ));
    // A head that never ends.
    let mut f = StreamFramer::new();
    f.push(b"INVITE sip:a@b SIP/2.0\r\n");
    let line = b"X-Filler: 0123456789012345678901234567890123456789012345678901234567890123\r\n";
    let mut result = Ok(None);
    for _ in 0..2000 {
        f.push(line);
        result = f.next_message();
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(FramingError::HeadTooLarge));
    assert!(f.buffered() == 0, "buffer released after a fatal error");
    // A body over the limit.
    let mut f = StreamFramer::new();
    f.push(b"MESSAGE sip:a@b SIP/2.0\r\nl: 70000\r\n\r\n");
    assert_eq!(f.next_message(), Err(FramingError::BodyTooLarge(70000)));
}

// ---------------------------------------------------------------------------------------------
// Hostile input: never panics, always answers quickly.
// ---------------------------------------------------------------------------------------------

/// Runs the parser and every accessor on `bytes`; panics only if the code under test does.
fn exercise(bytes: &[u8]) {
    if let Ok(m) = parse(bytes) {
        let _ = m.to_bytes();
        match &m {
            Message::Request(r) => {
                let _ = (
                    r.vias(),
                    r.top_via(),
                    r.from(),
                    r.to(),
                    r.call_id(),
                    r.cseq(),
                );
                let _ = (
                    r.max_forwards(),
                    r.contacts(),
                    r.record_routes(),
                    r.routes(),
                );
                let _ = (
                    r.content_type(),
                    r.validate(),
                    r.uri.to_string(),
                    r.uri.user(),
                );
                if let Ok(vs) = r.vias() {
                    for v in vs {
                        let _ = Via::parse(&v.to_string());
                    }
                }
                for c in r.contacts().unwrap_or_default() {
                    let _ = NameAddr::parse(&c.to_string());
                }
                let _ = Response::for_request(r, 400, "").to_bytes();
            }
            Message::Response(r) => {
                let _ = (
                    r.vias(),
                    r.from(),
                    r.to(),
                    r.call_id(),
                    r.cseq(),
                    r.validate(),
                );
            }
        }
    }
    let mut f = StreamFramer::new();
    f.push(bytes);
    for _ in 0..64 {
        match f.next_frame() {
            Ok(Some(_)) => {}
            _ => break,
        }
    }
}

#[test]
fn hostile_input_never_panics() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5e1f_9e0f);
    let fixtures = all_fixtures();
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut timed = |bytes: &[u8]| {
        let t = Instant::now();
        exercise(bytes);
        slowest = slowest.max(t.elapsed());
    };
    // Every truncation of every fixture.
    for (_, bytes) in &fixtures {
        for cut in 0..=bytes.len() {
            timed(&bytes[..cut]);
        }
    }
    // Random mutations of fixtures: byte flips, insertions of SIP-significant bytes, deletions.
    const SPECIAL: &[u8] = b"\r\n \t:;,=\"<>[]@%\\?&/0\x00\xff\xc3";
    for i in 0..3000 {
        let (_, base) = &fixtures[i % fixtures.len()];
        let mut m = base.clone();
        for _ in 0..rng.random_range(1..8) {
            if m.is_empty() {
                break;
            }
            let pos = rng.random_range(0..m.len());
            match rng.random_range(0..3) {
                0 => m[pos] = SPECIAL[rng.random_range(0..SPECIAL.len())],
                1 => m.insert(pos, SPECIAL[rng.random_range(0..SPECIAL.len())]),
                _ => {
                    m.remove(pos);
                }
            }
        }
        timed(&m);
    }
    // Pure random bytes, and random bytes behind a valid start line.
    for _ in 0..2000 {
        let len = rng.random_range(0..2048);
        let mut v: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        timed(&v);
        let mut framed = b"INVITE sip:a@b SIP/2.0\r\nVia: ".to_vec();
        framed.append(&mut v);
        timed(&framed);
    }
    // Pathological shapes: many commas, deep quotes, huge header count, max size.
    let mut big = b"OPTIONS sip:a@b SIP/2.0\r\nVia: ".to_vec();
    big.extend(std::iter::repeat_n(b',', MAX_MESSAGE_SIZE - big.len() - 4));
    big.extend_from_slice(b"\r\n\r\n");
    timed(&big);
    let mut many = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
    while many.len() < MAX_MESSAGE_SIZE - 16 {
        many.extend_from_slice(b"v:SIP/2.0/UDP h\r\n");
    }
    many.extend_from_slice(b"\r\n");
    timed(&many);
    let mut quotes = b"OPTIONS sip:a@b SIP/2.0\r\nContact: ".to_vec();
    quotes.extend(std::iter::repeat_n(b'"', 60000));
    quotes.extend_from_slice(b"\r\n\r\n");
    timed(&quotes);
    assert!(
        slowest < Duration::from_millis(500),
        "slowest input took {slowest:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(120));
}
