//! Behaviour of the sans-IO SIP endpoint (`selfprov::sip::endpoint`) driven with hand-written
//! messages and simulated time: every assertion is on the parsed datagrams it asks to send and
//! the call events it emits. No sockets, no sleeping.

use std::time::{Duration, Instant};

use bytes::Bytes;
use selfprov::sip::endpoint::{
    CallEvent, CallId, EndReason, Endpoint, EndpointConfig, Limits, Peer, Transmit, Transport,
};
use selfprov::sip::message::{parse, Message, Method, Request, Response};

const LOCAL: &str = "203.0.113.10:5060";
const PHONE: &str = "198.51.100.7:5062";
const SDP: &str = "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\n\
                   t=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
const ANSWER: &str = "v=0\r\no=- 2 2 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 203.0.113.10\r\n\
                      t=0 0\r\nm=audio 30000 RTP/AVP 0\r\n";

fn cfg() -> EndpointConfig {
    EndpointConfig {
        local_addr: LOCAL.parse().unwrap(),
        ivr_extensions: vec!["7000".into(), "*99".into()],
        user_agent: "selfprov-test".into(),
        ..EndpointConfig::default()
    }
}

fn udp() -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: PHONE.parse().unwrap(),
        conn: None,
    }
}

fn tcp(conn: u64) -> Peer {
    Peer {
        transport: Transport::Tcp,
        addr: PHONE.parse().unwrap(),
        conn: Some(conn),
    }
}

/// A request as a phone would send it. `to_tag` None = out of dialog.
struct Req<'a> {
    method: &'a str,
    uri: &'a str,
    via: String,
    call_id: &'a str,
    from_tag: &'a str,
    to_tag: Option<&'a str>,
    cseq: u32,
    extra: &'a str,
    content_type: Option<&'a str>,
    body: &'a str,
}

impl<'a> Req<'a> {
    fn new(method: &'a str, branch: &str, call_id: &'a str) -> Self {
        Req {
            method,
            uri: "sip:7000@203.0.113.10",
            via: format!("SIP/2.0/UDP 198.51.100.7:5062;branch={branch};rport"),
            call_id,
            from_tag: "ft1",
            to_tag: None,
            cseq: 1,
            extra: "",
            content_type: None,
            body: "",
        }
    }
    fn invite(branch: &str, call_id: &'a str) -> Self {
        Req {
            content_type: Some("application/sdp"),
            body: SDP,
            ..Req::new("INVITE", branch, call_id)
        }
    }
    fn bytes(&self) -> Vec<u8> {
        let to_tag = self.to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
        let ct = self
            .content_type
            .map(|c| format!("Content-Type: {c}\r\n"))
            .unwrap_or_default();
        format!(
            "{m} {uri} SIP/2.0\r\n\
             Via: {via}\r\n\
             Max-Forwards: 70\r\n\
             From: \"Desk\" <sip:phone@198.51.100.7>;tag={ft}\r\n\
             To: <sip:7000@203.0.113.10>{to_tag}\r\n\
             Call-ID: {cid}\r\n\
             CSeq: {cseq} {m}\r\n\
             Contact: <sip:phone@192.168.1.20:5062>\r\n\
             User-Agent: TestPhone/1.0\r\n\
             {extra}{ct}\
             Content-Length: {len}\r\n\r\n{body}",
            m = self.method,
            uri = self.uri,
            via = self.via,
            ft = self.from_tag,
            cid = self.call_id,
            cseq = self.cseq,
            extra = self.extra,
            len = self.body.len(),
            body = self.body,
        )
        .into_bytes()
    }
}

fn drain(ep: &mut Endpoint) -> Vec<Transmit> {
    std::iter::from_fn(|| ep.poll_transmit()).collect()
}

fn events(ep: &mut Endpoint) -> Vec<(CallId, CallEvent)> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

fn resp(t: &Transmit) -> Response {
    match parse(&t.data) {
        Ok(Message::Response(r)) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

fn req(t: &Transmit) -> Request {
    match parse(&t.data) {
        Ok(Message::Request(r)) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn statuses(ts: &[Transmit]) -> Vec<u16> {
    ts.iter().map(|t| resp(t).status).collect()
}

fn to_tag(r: &Response) -> Option<String> {
    r.to().unwrap().tag().map(str::to_owned)
}

/// Sends an INVITE and returns the call id and our To tag (from the 100, which has none, so the
/// tag is learnt at accept time by the callers that need it).
fn incoming(ep: &mut Endpoint, now: Instant, branch: &str, call_id: &str) -> CallId {
    ep.handle_input(now, &Req::invite(branch, call_id).bytes(), udp());
    let out = drain(ep);
    assert_eq!(statuses(&out), vec![100]);
    let ev = events(ep);
    assert_eq!(ev.len(), 1, "{ev:?}");
    match &ev[0] {
        (id, CallEvent::Incoming { .. }) => *id,
        other => panic!("unexpected {other:?}"),
    }
}

/// An answered and ACKed call; returns (call, our tag).
fn confirmed(ep: &mut Endpoint, now: Instant, call_id: &str) -> (CallId, String) {
    let id = incoming(ep, now, "z9hG4bKinv1", call_id);
    ep.accept(now, id, Bytes::from_static(ANSWER.as_bytes()));
    let ok = resp(&drain(ep)[0]);
    let tag = to_tag(&ok).unwrap();
    let mut ack = Req::new("ACK", "z9hG4bKack1", call_id);
    ack.to_tag = Some(&tag);
    ep.handle_input(now, &ack.bytes(), udp());
    assert!(drain(ep).is_empty());
    assert_eq!(
        events(ep),
        vec![(id, CallEvent::Confirmed { answer: None })]
    );
    (id, tag)
}

/// Runs every timer up to `until`, collecting (time, transmit) pairs.
fn run_until(ep: &mut Endpoint, until: Instant) -> Vec<(Instant, Transmit)> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        match ep.poll_timeout() {
            Some(t) if t <= until => {
                ep.handle_timeout(t);
                out.extend(drain(ep).into_iter().map(|x| (t, x)));
            }
            _ => break,
        }
    }
    out
}

fn gaps_ms(start: Instant, times: &[Instant]) -> Vec<u128> {
    let mut last = start;
    times
        .iter()
        .map(|t| {
            let g = (*t - last).as_millis();
            last = *t;
            g
        })
        .collect()
}

// ------------------------------------------------------------------------------------------
// INVITE server transaction, accept, 2xx retransmission, ACK
// ------------------------------------------------------------------------------------------

#[test]
fn invite_gets_100_at_once_and_an_incoming_event() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    ep.handle_input(now, &Req::invite("z9hG4bK1", "c1").bytes(), udp());
    let out = drain(&mut ep);
    assert_eq!(out.len(), 1);
    let r = resp(&out[0]);
    assert_eq!(r.status, 100);
    assert_eq!(to_tag(&r), None, "100 Trying carries no To tag");
    assert_eq!(r.call_id().unwrap(), "c1");
    assert_eq!(r.headers.get("Server"), Some("selfprov-test"));
    // RFC 3581: rport filled in, received added, sent back to the source port.
    let via = &r.vias().unwrap()[0];
    assert_eq!(via.params.get("rport"), Some(Some("5062")));
    assert_eq!(via.params.get("received"), Some(Some("198.51.100.7")));
    assert_eq!(out[0].peer, udp());
    let ev = events(&mut ep);
    match &ev[..] {
        [(
            _,
            CallEvent::Incoming {
                invite,
                offer,
                source,
                account,
            },
        )] => {
            assert_eq!(invite.method, Method::Invite);
            assert_eq!(offer.as_deref(), Some(SDP.as_bytes()));
            assert_eq!(*source, udp());
            assert_eq!(*account, None, "no registrar: never authenticated");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ep.call_count(), 1);
}

#[test]
fn late_offer_invite_has_no_offer_and_ack_carries_answer() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    let mut inv = Req::invite("z9hG4bK1", "late");
    inv.content_type = None;
    inv.body = "";
    ep.handle_input(now, &inv.bytes(), udp());
    drain(&mut ep);
    let ev = events(&mut ep);
    let id = match &ev[..] {
        [(id, CallEvent::Incoming { offer: None, .. })] => *id,
        other => panic!("{other:?}"),
    };
    ep.accept(now, id, Bytes::from_static(ANSWER.as_bytes()));
    let tag = to_tag(&resp(&drain(&mut ep)[0])).unwrap();
    let mut ack = Req::new("ACK", "z9hG4bKa", "late");
    ack.to_tag = Some(&tag);
    ack.content_type = Some("application/sdp");
    ack.body = SDP;
    ep.handle_input(now, &ack.bytes(), udp());
    assert_eq!(
        events(&mut ep),
        vec![(
            id,
            CallEvent::Confirmed {
                answer: Some(Bytes::from_static(SDP.as_bytes()))
            }
        )]
    );
}

#[test]
fn accept_sends_200_with_tag_contact_allow_and_sdp() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    let id = incoming(&mut ep, now, "z9hG4bK1", "c1");
    ep.accept(now, id, Bytes::from_static(ANSWER.as_bytes()));
    let out = drain(&mut ep);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].peer, udp());
    let r = resp(&out[0]);
    assert_eq!(r.status, 200);
    let tag = to_tag(&r).expect("To tag on 200");
    assert!(tag.len() >= 8, "tag {tag} too short");
    assert_eq!(
        r.headers.get("Contact"),
        Some("<sip:7000@203.0.113.10:5060>")
    );
    let allow = r.headers.get("Allow").unwrap();
    for m in ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO"] {
        assert!(allow.contains(m), "{allow}");
    }
    assert_eq!(r.content_type().as_deref(), Some("application/sdp"));
    assert_eq!(&r.body[..], ANSWER.as_bytes());
    assert_eq!(r.cseq().unwrap().method, Method::Invite);
    // A second accept is ignored.
    ep.accept(now, id, Bytes::from_static(b"x"));
    assert!(drain(&mut ep).is_empty());
}

#[test]
fn two_xx_is_retransmitted_with_doubling_intervals_until_ack() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let id = incoming(&mut ep, t0, "z9hG4bK1", "c1");
    ep.accept(t0, id, Bytes::from_static(ANSWER.as_bytes()));
    let first = drain(&mut ep);
    let tag = to_tag(&resp(&first[0])).unwrap();
    let sent = run_until(&mut ep, t0 + Duration::from_millis(15_600));
    let times: Vec<Instant> = sent.iter().map(|(t, _)| *t).collect();
    assert_eq!(gaps_ms(t0, &times), vec![500, 1000, 2000, 4000, 4000, 4000]);
    for (_, t) in &sent {
        assert_eq!(
            t.data, first[0].data,
            "retransmission must be byte-identical"
        );
        assert_eq!(t.peer, udp());
    }
    let mut ack = Req::new("ACK", "z9hG4bKack", "c1");
    ack.to_tag = Some(&tag);
    ep.handle_input(t0 + Duration::from_secs(16), &ack.bytes(), udp());
    assert!(drain(&mut ep).is_empty(), "no response to ACK");
    assert_eq!(
        events(&mut ep),
        vec![(id, CallEvent::Confirmed { answer: None })]
    );
    assert!(run_until(&mut ep, t0 + Duration::from_secs(120)).is_empty());
    // Retransmitted ACK: absorbed silently.
    ep.handle_input(t0 + Duration::from_secs(121), &ack.bytes(), udp());
    assert!(drain(&mut ep).is_empty());
    assert!(events(&mut ep).is_empty());
    assert_eq!(ep.call_count(), 1);
}

#[test]
fn no_ack_timer_h_sends_bye_and_ends_the_call() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let id = incoming(&mut ep, t0, "z9hG4bK1", "c1");
    ep.accept(t0, id, Bytes::from_static(ANSWER.as_bytes()));
    let tag = to_tag(&resp(&drain(&mut ep)[0])).unwrap();
    let sent = run_until(&mut ep, t0 + Duration::from_secs(32));
    let (retx, rest): (Vec<_>, Vec<_>) = sent
        .into_iter()
        .partition(|(_, t)| matches!(parse(&t.data), Ok(Message::Response(_))));
    // 0.5, 1.5, 3.5, 7.5, 11.5, ... 31.5 s: ten retransmissions before H at 32 s.
    assert_eq!(retx.len(), 10);
    assert_eq!(rest.len(), 1, "exactly one BYE at timer H");
    let (at, bye_t) = &rest[0];
    assert_eq!(*at - t0, Duration::from_secs(32));
    let bye = req(bye_t);
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(
        bye_t.peer,
        udp(),
        "BYE goes to the INVITE's source (symmetric)"
    );
    assert_eq!(bye.uri.to_string(), "sip:phone@192.168.1.20:5062");
    assert_eq!(bye.from().unwrap().tag(), Some(tag.as_str()));
    assert_eq!(bye.to().unwrap().tag(), Some("ft1"));
    assert_eq!(bye.call_id().unwrap(), "c1");
    assert_eq!(bye.cseq().unwrap().seq, 1);
    let via = bye.top_via().unwrap();
    assert!(via.branch().unwrap().starts_with("z9hG4bK"));
    assert!(via.to_string().contains("203.0.113.10:5060"), "{via}");
    assert_eq!(
        events(&mut ep),
        vec![(
            id,
            CallEvent::Ended {
                reason: EndReason::AckTimeout
            }
        )]
    );
    assert_eq!(ep.call_count(), 0);
    // The BYE's 200 produces no second Ended.
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: c1\r\nCSeq: 1 BYE\r\n\
         Content-Length: 0\r\n\r\n",
        bye.headers.get("Via").unwrap(),
        bye.headers.get("From").unwrap(),
        bye.headers.get("To").unwrap()
    );
    ep.handle_input(t0 + Duration::from_secs(33), ok.as_bytes(), udp());
    assert!(events(&mut ep).is_empty());
    assert!(drain(&mut ep).is_empty());
}

#[test]
fn retransmitted_invite_is_absorbed_in_every_state() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    let id = incoming(&mut ep, now, "z9hG4bK1", "c1");
    // Before the answer: 100 again, no new event.
    ep.handle_input(now, &Req::invite("z9hG4bK1", "c1").bytes(), udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![100]);
    assert!(events(&mut ep).is_empty());
    // After the 2xx (RFC 6026 Accepted): swallowed, still one call.
    ep.accept(now, id, Bytes::from_static(ANSWER.as_bytes()));
    drain(&mut ep);
    ep.handle_input(now, &Req::invite("z9hG4bK1", "c1").bytes(), udp());
    assert!(drain(&mut ep).is_empty());
    assert!(events(&mut ep).is_empty());
    assert_eq!(ep.call_count(), 1);
}

#[test]
fn reject_retransmits_final_until_ack_then_absorbs() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let id = incoming(&mut ep, t0, "z9hG4bK1", "c1");
    ep.reject(t0, id, 486);
    let out = drain(&mut ep);
    let r = resp(&out[0]);
    assert_eq!(r.status, 486);
    assert!(to_tag(&r).is_some());
    assert_eq!(
        events(&mut ep),
        vec![(
            id,
            CallEvent::Ended {
                reason: EndReason::Rejected
            }
        )]
    );
    assert_eq!(ep.call_count(), 0);
    // Retransmitted INVITE gets the 486 again.
    ep.handle_input(t0, &Req::invite("z9hG4bK1", "c1").bytes(), udp());
    assert_eq!(drain(&mut ep)[0].data, out[0].data);
    // Timer G.
    let sent = run_until(&mut ep, t0 + Duration::from_millis(3_600));
    let times: Vec<Instant> = sent.iter().map(|(t, _)| *t).collect();
    assert_eq!(gaps_ms(t0, &times), vec![500, 1000, 2000]);
    assert!(sent.iter().all(|(_, t)| t.data == out[0].data));
    // ACK (same branch, To tag of the 486) stops it; ACK and INVITE retransmissions absorbed.
    let tag = to_tag(&r).unwrap();
    let mut ack = Req::new("ACK", "z9hG4bK1", "c1");
    ack.to_tag = Some(&tag);
    ep.handle_input(t0 + Duration::from_secs(4), &ack.bytes(), udp());
    ep.handle_input(t0 + Duration::from_secs(4), &ack.bytes(), udp());
    ep.handle_input(
        t0 + Duration::from_secs(4),
        &Req::invite("z9hG4bK1", "c1").bytes(),
        udp(),
    );
    assert!(drain(&mut ep).is_empty());
    assert!(run_until(&mut ep, t0 + Duration::from_secs(60)).is_empty());
    assert_eq!(
        ep.poll_timeout(),
        None,
        "everything cleaned up after timer I"
    );
    assert!(events(&mut ep).is_empty());
}

#[test]
fn reject_with_non_error_status_becomes_500() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    let id = incoming(&mut ep, now, "z9hG4bK1", "c1");
    ep.reject(now, id, 200);
    assert_eq!(statuses(&drain(&mut ep)), vec![500]);
}

#[test]
fn hangup_before_answer_rejects_with_480() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    let id = incoming(&mut ep, now, "z9hG4bK1", "c1");
    ep.hangup(now, id);
    assert_eq!(statuses(&drain(&mut ep)), vec![480]);
    assert_eq!(
        events(&mut ep),
        vec![(
            id,
            CallEvent::Ended {
                reason: EndReason::Rejected
            }
        )]
    );
}

// ------------------------------------------------------------------------------------------
// CANCEL
// ------------------------------------------------------------------------------------------

#[test]
fn cancel_gets_200_and_invite_gets_487() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    let id = incoming(&mut ep, now, "z9hG4bKc1", "c1");
    let cancel = Req::new("CANCEL", "z9hG4bKc1", "c1");
    ep.handle_input(now, &cancel.bytes(), udp());
    let out = drain(&mut ep);
    assert_eq!(statuses(&out), vec![200, 487]);
    let (ok, term) = (resp(&out[0]), resp(&out[1]));
    assert_eq!(ok.cseq().unwrap().method, Method::Cancel);
    assert_eq!(term.cseq().unwrap().method, Method::Invite);
    assert_eq!(to_tag(&ok), to_tag(&term), "same To tag on both (§9.2)");
    assert_eq!(
        events(&mut ep),
        vec![
            (id, CallEvent::Cancelled),
            (
                id,
                CallEvent::Ended {
                    reason: EndReason::Cancelled
                }
            )
        ]
    );
    assert_eq!(ep.call_count(), 0);
    // The layer's late accept is ignored.
    ep.accept(now, id, Bytes::from_static(b"x"));
    assert!(drain(&mut ep).is_empty());
    // Retransmitted CANCEL: 200 again, nothing else.
    ep.handle_input(now, &cancel.bytes(), udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![200]);
    // ACK for the 487 absorbed.
    let tag = to_tag(&term).unwrap();
    let mut ack = Req::new("ACK", "z9hG4bKc1", "c1");
    ack.to_tag = Some(&tag);
    ep.handle_input(now, &ack.bytes(), udp());
    assert!(drain(&mut ep).is_empty());
    assert!(events(&mut ep).is_empty());
}

#[test]
fn cancel_for_nothing_is_481_and_after_answer_is_only_200() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    ep.handle_input(now, &Req::new("CANCEL", "z9hG4bKnone", "zz").bytes(), udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![481]);

    let id = incoming(&mut ep, now, "z9hG4bKc2", "c2");
    ep.accept(now, id, Bytes::from_static(ANSWER.as_bytes()));
    drain(&mut ep);
    ep.handle_input(now, &Req::new("CANCEL", "z9hG4bKc2", "c2").bytes(), udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![200]);
    assert!(events(&mut ep).is_empty());
    assert_eq!(ep.call_count(), 1);
}

// ------------------------------------------------------------------------------------------
// Non-INVITE server transactions, BYE from the phone, INFO, in-dialog checks
// ------------------------------------------------------------------------------------------

#[test]
fn options_gets_200_with_allow_and_accept_and_retransmission_same_bytes() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let opt = Req::new("OPTIONS", "z9hG4bKo1", "o1");
    ep.handle_input(t0, &opt.bytes(), udp());
    let out = drain(&mut ep);
    let r = resp(&out[0]);
    assert_eq!(r.status, 200);
    assert!(to_tag(&r).is_some());
    assert!(r.headers.get("Allow").unwrap().contains("INFO"));
    let accept = r.headers.get("Accept").unwrap();
    for t in [
        "application/sdp",
        "application/dtmf-relay",
        "application/dtmf",
    ] {
        assert!(accept.contains(t), "{accept}");
    }
    // Retransmission: identical response (same To tag).
    ep.handle_input(t0 + Duration::from_secs(1), &opt.bytes(), udp());
    assert_eq!(drain(&mut ep)[0].data, out[0].data);
    // Timer J = 64*T1 on UDP; afterwards the same branch is a new transaction (new To tag).
    assert_eq!(ep.poll_timeout(), Some(t0 + Duration::from_secs(32)));
    run_until(&mut ep, t0 + Duration::from_secs(32));
    assert_eq!(ep.poll_timeout(), None);
    ep.handle_input(t0 + Duration::from_secs(33), &opt.bytes(), udp());
    let again = resp(&drain(&mut ep)[0]);
    assert_ne!(to_tag(&again), to_tag(&r));
}

#[test]
fn non_invite_on_tcp_keeps_no_transaction() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    ep.handle_input(now, &Req::new("OPTIONS", "z9hG4bKo1", "o1").bytes(), tcp(3));
    let out = drain(&mut ep);
    assert_eq!(out[0].peer, tcp(3));
    assert_eq!(ep.poll_timeout(), None, "timer J is zero on TCP");
}

#[test]
fn bye_from_phone_gets_200_and_ends_the_call() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    let (id, tag) = confirmed(&mut ep, now, "c1");
    let mut bye = Req::new("BYE", "z9hG4bKb1", "c1");
    bye.to_tag = Some(&tag);
    bye.cseq = 2;
    ep.handle_input(now, &bye.bytes(), udp());
    let out = drain(&mut ep);
    assert_eq!(statuses(&out), vec![200]);
    assert_eq!(to_tag(&resp(&out[0])).as_deref(), Some(tag.as_str()));
    assert_eq!(
        events(&mut ep),
        vec![(
            id,
            CallEvent::Ended {
                reason: EndReason::RemoteBye
            }
        )]
    );
    assert_eq!(ep.call_count(), 0);
    // Retransmitted BYE: the same 200 again from the transaction, no event.
    ep.handle_input(now, &bye.bytes(), udp());
    assert_eq!(drain(&mut ep)[0].data, out[0].data);
    assert!(events(&mut ep).is_empty());
    // A new BYE for the ended dialog: 481.
    let mut bye2 = Req::new("BYE", "z9hG4bKb2", "c1");
    bye2.to_tag = Some(&tag);
    bye2.cseq = 3;
    ep.handle_input(now, &bye2.bytes(), udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![481]);
}

#[test]
fn requests_for_unknown_dialogs_get_481_and_ack_is_dropped() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    for (m, b) in [
        ("BYE", "z9hG4bKu1"),
        ("INFO", "z9hG4bKu2"),
        ("INVITE", "z9hG4bKu3"),
    ] {
        let mut r = Req::new(m, b, "nope");
        r.to_tag = Some("unknown");
        ep.handle_input(now, &r.bytes(), udp());
        assert_eq!(statuses(&drain(&mut ep)), vec![481], "{m}");
    }
    // Out-of-dialog BYE (no To tag): 481 too.
    ep.handle_input(now, &Req::new("BYE", "z9hG4bKu4", "nope").bytes(), udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![481]);
    let mut ack = Req::new("ACK", "z9hG4bKu5", "nope");
    ack.to_tag = Some("unknown");
    ep.handle_input(now, &ack.bytes(), udp());
    ep.handle_input(now, &Req::new("ACK", "z9hG4bKu6", "nope").bytes(), udp());
    assert!(drain(&mut ep).is_empty());
    assert!(events(&mut ep).is_empty());
}

#[test]
fn wrong_local_tag_is_481() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    let (_, _tag) = confirmed(&mut ep, now, "c1");
    let mut bye = Req::new("BYE", "z9hG4bKb1", "c1");
    bye.to_tag = Some("not-our-tag");
    bye.cseq = 2;
    ep.handle_input(now, &bye.bytes(), udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![481]);
    assert_eq!(ep.call_count(), 1);
}

#[test]
fn lower_cseq_in_dialog_is_500() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    let (_, tag) = confirmed(&mut ep, now, "c1");
    let mut info = Req::new("INFO", "z9hG4bKi1", "c1");
    info.to_tag = Some(&tag);
    info.cseq = 5;
    info.content_type = Some("application/dtmf-relay");
    info.body = "Signal=1\r\nDuration=160\r\n";
    ep.handle_input(now, &info.bytes(), udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![200]);
    info.via = "SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bKi2;rport".into();
    info.cseq = 4;
    ep.handle_input(now, &info.bytes(), udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![500]);
}

#[test]
fn info_dtmf_is_reported_other_types_get_415() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    let (id, tag) = confirmed(&mut ep, now, "c1");
    let mut info = Req::new("INFO", "z9hG4bKi1", "c1");
    info.to_tag = Some(&tag);
    info.cseq = 2;
    info.content_type = Some("application/dtmf-relay");
    info.body = "Signal=5\r\nDuration=160\r\n";
    ep.handle_input(now, &info.bytes(), udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![200]);
    assert_eq!(
        events(&mut ep),
        vec![(
            id,
            CallEvent::Info {
                content_type: "application/dtmf-relay".into(),
                body: Bytes::from_static(b"Signal=5\r\nDuration=160\r\n"),
            }
        )]
    );
    let mut dtmf = Req::new("INFO", "z9hG4bKi2", "c1");
    dtmf.to_tag = Some(&tag);
    dtmf.cseq = 3;
    dtmf.content_type = Some("application/dtmf");
    dtmf.body = "7";
    ep.handle_input(now, &dtmf.bytes(), udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![200]);
    assert_eq!(events(&mut ep).len(), 1);
    let mut other = Req::new("INFO", "z9hG4bKi3", "c1");
    other.to_tag = Some(&tag);
    other.cseq = 4;
    other.content_type = Some("application/media_control+xml");
    other.body = "<x/>";
    ep.handle_input(now, &other.bytes(), udp());
    let out = drain(&mut ep);
    let r = resp(&out[0]);
    assert_eq!(r.status, 415);
    assert!(r
        .headers
        .get("Accept")
        .unwrap()
        .contains("application/dtmf-relay"));
    assert!(events(&mut ep).is_empty());
}

// ------------------------------------------------------------------------------------------
// Our BYE: non-INVITE client transaction
// ------------------------------------------------------------------------------------------

fn answer_bye(bye: &Request, status: u16) -> Vec<u8> {
    format!(
        "SIP/2.0 {status} Whatever\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\n\
         CSeq: {} BYE\r\nContent-Length: 0\r\n\r\n",
        bye.headers.get("Via").unwrap(),
        bye.headers.get("From").unwrap(),
        bye.headers.get("To").unwrap(),
        bye.call_id().unwrap(),
        bye.cseq().unwrap().seq,
    )
    .into_bytes()
}

#[test]
fn hangup_sends_bye_retransmitted_by_timer_e_until_response() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let (id, tag) = confirmed(&mut ep, t0, "c1");
    ep.hangup(t0, id);
    let out = drain(&mut ep);
    assert_eq!(out.len(), 1);
    let bye = req(&out[0]);
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(out[0].peer, udp());
    assert_eq!(bye.from().unwrap().tag(), Some(tag.as_str()));
    assert_eq!(bye.to().unwrap().tag(), Some("ft1"));
    assert_eq!(bye.cseq().unwrap().seq, 1);
    assert_eq!(bye.headers.get("User-Agent"), Some("selfprov-test"));
    assert_eq!(bye.max_forwards().unwrap(), Some(70));
    let sent = run_until(&mut ep, t0 + Duration::from_millis(7_600));
    let times: Vec<Instant> = sent.iter().map(|(t, _)| *t).collect();
    assert_eq!(gaps_ms(t0, &times), vec![500, 1000, 2000, 4000]);
    assert!(sent.iter().all(|(_, t)| t.data == out[0].data));
    assert!(events(&mut ep).is_empty());
    // 100 Trying: no end yet; then 200.
    ep.handle_input(t0 + Duration::from_secs(8), &answer_bye(&bye, 100), udp());
    assert!(events(&mut ep).is_empty());
    ep.handle_input(t0 + Duration::from_secs(8), &answer_bye(&bye, 200), udp());
    assert_eq!(
        events(&mut ep),
        vec![(
            id,
            CallEvent::Ended {
                reason: EndReason::LocalBye
            }
        )]
    );
    // Retransmitted 200 absorbed; no more BYEs (timer K then cleanup).
    ep.handle_input(t0 + Duration::from_secs(9), &answer_bye(&bye, 200), udp());
    assert!(events(&mut ep).is_empty());
    assert!(run_until(&mut ep, t0 + Duration::from_secs(60)).is_empty());
    assert_eq!(ep.poll_timeout(), None);
}

#[test]
fn bye_final_error_still_ends_with_local_bye() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let (id, _) = confirmed(&mut ep, t0, "c1");
    ep.hangup(t0, id);
    let bye = req(&drain(&mut ep)[0]);
    ep.handle_input(t0, &answer_bye(&bye, 481), udp());
    assert_eq!(
        events(&mut ep),
        vec![(
            id,
            CallEvent::Ended {
                reason: EndReason::LocalBye
            }
        )]
    );
}

#[test]
fn bye_without_response_times_out_with_timer_f() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let (id, _) = confirmed(&mut ep, t0, "c1");
    ep.hangup(t0, id);
    drain(&mut ep);
    // Timer E: 0.5 1.5 3.5 7.5 11.5 15.5 19.5 23.5 27.5 31.5 s, then F at 32 s.
    let sent = run_until(&mut ep, t0 + Duration::from_millis(31_600));
    assert_eq!(sent.len(), 10);
    assert!(events(&mut ep).is_empty());
    run_until(&mut ep, t0 + Duration::from_secs(32));
    assert_eq!(
        events(&mut ep),
        vec![(
            id,
            CallEvent::Ended {
                reason: EndReason::LocalByeTimeout
            }
        )]
    );
    assert_eq!(ep.call_count(), 0);
}

#[test]
fn hangup_before_ack_waits_for_the_ack() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let id = incoming(&mut ep, t0, "z9hG4bK1", "c1");
    ep.accept(t0, id, Bytes::from_static(ANSWER.as_bytes()));
    let tag = to_tag(&resp(&drain(&mut ep)[0])).unwrap();
    ep.hangup(t0, id);
    assert!(drain(&mut ep).is_empty(), "no BYE before the ACK (§15)");
    let mut ack = Req::new("ACK", "z9hG4bKa", "c1");
    ack.to_tag = Some(&tag);
    ep.handle_input(t0 + Duration::from_millis(100), &ack.bytes(), udp());
    let out = drain(&mut ep);
    assert_eq!(out.len(), 1);
    assert_eq!(req(&out[0]).method, Method::Bye);
}

#[test]
fn phone_requests_while_our_bye_is_pending() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let (id, tag) = confirmed(&mut ep, t0, "c1");
    ep.hangup(t0, id);
    let bye = req(&drain(&mut ep)[0]);
    let mut reinv = Req::invite("z9hG4bKr1", "c1");
    reinv.to_tag = Some(&tag);
    reinv.cseq = 2;
    ep.handle_input(t0, &reinv.bytes(), udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![481]);
    // Crossing BYE: 200, but the call ends with our BYE's response.
    let mut their_bye = Req::new("BYE", "z9hG4bKb9", "c1");
    their_bye.to_tag = Some(&tag);
    their_bye.cseq = 3;
    ep.handle_input(t0, &their_bye.bytes(), udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![200]);
    assert!(events(&mut ep).is_empty());
    ep.handle_input(t0, &answer_bye(&bye, 200), udp());
    assert_eq!(
        events(&mut ep),
        vec![(
            id,
            CallEvent::Ended {
                reason: EndReason::LocalBye
            }
        )]
    );
}

#[test]
fn bye_uses_record_route_in_order() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    let mut inv = Req::invite("z9hG4bK1", "rr");
    inv.extra =
        "Record-Route: <sip:p1.example.com;lr>\r\nRecord-Route: <sip:p2.example.com;lr>\r\n";
    ep.handle_input(now, &inv.bytes(), udp());
    drain(&mut ep);
    let id = match &events(&mut ep)[..] {
        [(id, CallEvent::Incoming { .. })] => *id,
        other => panic!("{other:?}"),
    };
    ep.accept(now, id, Bytes::from_static(ANSWER.as_bytes()));
    let tag = to_tag(&resp(&drain(&mut ep)[0])).unwrap();
    let mut ack = Req::new("ACK", "z9hG4bKa", "rr");
    ack.to_tag = Some(&tag);
    ep.handle_input(now, &ack.bytes(), udp());
    ep.hangup(now, id);
    let out = drain(&mut ep);
    let bye = req(&out[0]);
    let routes: Vec<&str> = bye.headers.get_all("Route").collect();
    assert_eq!(routes.len(), 2);
    assert!(routes[0].contains("p1.example.com"));
    assert!(routes[1].contains("p2.example.com"));
    assert_eq!(bye.uri.to_string(), "sip:phone@192.168.1.20:5062");
}

// ------------------------------------------------------------------------------------------
// Out-of-dialog checks
// ------------------------------------------------------------------------------------------

#[test]
fn max_forwards_zero_is_483() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    for (m, b) in [("INVITE", "z9hG4bKm1"), ("OPTIONS", "z9hG4bKm2")] {
        let s = String::from_utf8(Req::new(m, b, "mf").bytes())
            .unwrap()
            .replace("Max-Forwards: 70", "Max-Forwards: 0");
        ep.handle_input(now, s.as_bytes(), udp());
        assert_eq!(statuses(&drain(&mut ep)), vec![483], "{m}");
    }
    assert!(events(&mut ep).is_empty());
}

#[test]
fn unknown_extension_is_404_and_tel_uri_is_accepted() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    let mut inv = Req::invite("z9hG4bK1", "c404");
    inv.uri = "sip:1234@203.0.113.10";
    ep.handle_input(now, &inv.bytes(), udp());
    let out = drain(&mut ep);
    assert_eq!(statuses(&out), vec![404]);
    assert!(to_tag(&resp(&out[0])).is_some());
    assert!(events(&mut ep).is_empty());
    let mut tel = Req::invite("z9hG4bK2", "ctel");
    tel.uri = "tel:7000";
    ep.handle_input(now, &tel.bytes(), udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![100]);
    let mut star = Req::invite("z9hG4bK3", "cstar");
    star.uri = "sip:*99@203.0.113.10";
    ep.handle_input(now, &star.bytes(), udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![100]);
    assert_eq!(events(&mut ep).len(), 2);
}

#[test]
fn unknown_method_is_501_unserved_method_is_405_both_with_allow() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    ep.handle_input(now, &Req::new("FOOBAR", "z9hG4bKf", "x1").bytes(), udp());
    let r = resp(&drain(&mut ep)[0]);
    assert_eq!(r.status, 501);
    assert!(r.headers.get("Allow").unwrap().contains("INVITE"));
    for m in ["REGISTER", "SUBSCRIBE", "MESSAGE", "REFER"] {
        ep.handle_input(
            now,
            &Req::new(m, &format!("z9hG4bK{m}"), "x2").bytes(),
            udp(),
        );
        let r = resp(&drain(&mut ep)[0]);
        assert_eq!(r.status, 405, "{m}");
        assert!(r.headers.get("Allow").is_some());
    }
}

#[test]
fn non_sdp_invite_body_is_415_with_accept() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    let mut inv = Req::invite("z9hG4bK1", "c415");
    inv.content_type = Some("text/plain");
    inv.body = "hello";
    ep.handle_input(now, &inv.bytes(), udp());
    let r = resp(&drain(&mut ep)[0]);
    assert_eq!(r.status, 415);
    assert_eq!(r.headers.get("Accept"), Some("application/sdp"));
    assert_eq!(ep.call_count(), 0);
}

#[test]
fn unsupported_require_is_420_with_unsupported() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    let mut inv = Req::invite("z9hG4bK1", "c420");
    inv.extra = "Require: 100rel, timer, foo\r\n";
    ep.handle_input(now, &inv.bytes(), udp());
    let r = resp(&drain(&mut ep)[0]);
    assert_eq!(r.status, 420);
    let u = r.headers.get("Unsupported").unwrap();
    assert!(u.contains("foo") && u.contains("timer"), "{u}");
    assert!(!u.contains("100rel"), "100rel is supported: {u}");
    assert_eq!(ep.call_count(), 0);
}

#[test]
fn merged_invite_is_482() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    incoming(&mut ep, now, "z9hG4bK1", "m1");
    // Same Call-ID, From tag and CSeq, different branch: a forked copy.
    ep.handle_input(now, &Req::invite("z9hG4bK2", "m1").bytes(), udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![482]);
    assert_eq!(ep.call_count(), 1);
}

#[test]
fn call_limit_gives_503_with_retry_after() {
    let mut ep = Endpoint::with_limits(
        cfg(),
        Limits {
            max_calls: 2,
            ..Limits::default()
        },
    );
    let now = Instant::now();
    incoming(&mut ep, now, "z9hG4bK1", "l1");
    incoming(&mut ep, now, "z9hG4bK2", "l2");
    ep.handle_input(now, &Req::invite("z9hG4bK3", "l3").bytes(), udp());
    let r = resp(&drain(&mut ep)[0]);
    assert_eq!(r.status, 503);
    assert!(r.headers.get("Retry-After").is_some());
    assert_eq!(ep.call_count(), 2);
}

#[test]
fn transaction_limit_gives_503() {
    let mut ep = Endpoint::with_limits(
        cfg(),
        Limits {
            max_transactions: 3,
            ..Limits::default()
        },
    );
    let now = Instant::now();
    for i in 0..3 {
        ep.handle_input(
            now,
            &Req::new("OPTIONS", &format!("z9hG4bKo{i}"), "o").bytes(),
            udp(),
        );
        assert_eq!(statuses(&drain(&mut ep)), vec![200]);
    }
    ep.handle_input(now, &Req::new("OPTIONS", "z9hG4bKo9", "o").bytes(), udp());
    let r = resp(&drain(&mut ep)[0]);
    assert_eq!(r.status, 503);
    assert!(r.headers.get("Retry-After").is_some());
}

// ------------------------------------------------------------------------------------------
// RFC 3581 / §18.2.2 routing, TCP
// ------------------------------------------------------------------------------------------

#[test]
fn without_rport_response_goes_to_sent_by_port_with_received() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    let mut opt = Req::new("OPTIONS", "z9hG4bKo1", "o1");
    opt.via = "SIP/2.0/UDP 192.168.1.20:5070;branch=z9hG4bKo1".into();
    let src = Peer {
        addr: "198.51.100.7:61000".parse().unwrap(),
        ..udp()
    };
    ep.handle_input(now, &opt.bytes(), src);
    let out = drain(&mut ep);
    assert_eq!(out[0].peer.addr, "198.51.100.7:5070".parse().unwrap());
    let via = &resp(&out[0]).vias().unwrap()[0];
    assert_eq!(via.params.get("received"), Some(Some("198.51.100.7")));
    assert_eq!(via.params.get("rport"), None);
}

#[test]
fn with_rport_response_goes_to_source_port() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    let mut opt = Req::new("OPTIONS", "z9hG4bKo1", "o1");
    opt.via = "SIP/2.0/UDP 192.168.1.20:5070;rport;branch=z9hG4bKo1".into();
    let src = Peer {
        addr: "198.51.100.7:61000".parse().unwrap(),
        ..udp()
    };
    ep.handle_input(now, &opt.bytes(), src);
    let out = drain(&mut ep);
    assert_eq!(out[0].peer, src);
    let via = &resp(&out[0]).vias().unwrap()[0];
    assert_eq!(via.params.get("rport"), Some(Some("61000")));
    assert_eq!(via.params.get("received"), Some(Some("198.51.100.7")));
}

#[test]
fn tcp_2xx_is_not_retransmitted_but_still_waits_for_ack() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let mut inv = Req::invite("z9hG4bK1", "t1");
    inv.via = "SIP/2.0/TCP 192.168.1.20:5062;branch=z9hG4bK1;rport".into();
    ep.handle_input(t0, &inv.bytes(), tcp(7));
    let out = drain(&mut ep);
    assert_eq!(out[0].peer, tcp(7));
    let id = match &events(&mut ep)[..] {
        [(id, CallEvent::Incoming { .. })] => *id,
        other => panic!("{other:?}"),
    };
    ep.accept(t0, id, Bytes::from_static(ANSWER.as_bytes()));
    let ok = drain(&mut ep);
    assert_eq!(ok[0].peer, tcp(7));
    let r = resp(&ok[0]);
    assert_eq!(
        r.headers.get("Contact"),
        Some("<sip:7000@203.0.113.10:5060;transport=tcp>")
    );
    // Only timer H (and L) pending: nothing is sent before 32 s.
    assert!(run_until(&mut ep, t0 + Duration::from_millis(31_900)).is_empty());
    let sent = run_until(&mut ep, t0 + Duration::from_secs(32));
    assert_eq!(sent.len(), 1);
    let bye = req(&sent[0].1);
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(sent[0].1.peer, tcp(7));
    assert!(bye.top_via().unwrap().transport.eq_ignore_ascii_case("TCP"));
    assert_eq!(
        events(&mut ep),
        vec![(
            id,
            CallEvent::Ended {
                reason: EndReason::AckTimeout
            }
        )]
    );
    // BYE over TCP: no timer E retransmissions either.
    assert!(run_until(&mut ep, t0 + Duration::from_secs(63)).is_empty());
}

#[test]
fn tcp_connection_closed_fails_pending_bye() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let mut inv = Req::invite("z9hG4bK1", "t2");
    inv.via = "SIP/2.0/TCP 192.168.1.20:5062;branch=z9hG4bK1".into();
    ep.handle_input(t0, &inv.bytes(), tcp(9));
    drain(&mut ep);
    let id = match &events(&mut ep)[..] {
        [(id, CallEvent::Incoming { .. })] => *id,
        other => panic!("{other:?}"),
    };
    ep.accept(t0, id, Bytes::from_static(ANSWER.as_bytes()));
    let tag = to_tag(&resp(&drain(&mut ep)[0])).unwrap();
    let mut ack = Req::new("ACK", "z9hG4bKa", "t2");
    ack.via = "SIP/2.0/TCP 192.168.1.20:5062;branch=z9hG4bKa".into();
    ack.to_tag = Some(&tag);
    ep.handle_input(t0, &ack.bytes(), tcp(9));
    events(&mut ep);
    ep.hangup(t0, id);
    assert_eq!(drain(&mut ep)[0].peer, tcp(9));
    ep.connection_closed(9);
    assert_eq!(
        events(&mut ep),
        vec![(
            id,
            CallEvent::Ended {
                reason: EndReason::TransportError
            }
        )]
    );
}

/// A call from 192.168.1.20:5062 over TCP connection 4, answered and ACKed; its id.
fn established_over_tcp(ep: &mut Endpoint, t0: Instant, call_id: &str) -> CallId {
    let mut inv = Req::invite("z9hG4bK1", call_id);
    inv.via = "SIP/2.0/TCP 192.168.1.20:5062;branch=z9hG4bK1".into();
    ep.handle_input(t0, &inv.bytes(), tcp(4));
    drain(ep);
    let id = match &events(ep)[..] {
        [(id, CallEvent::Incoming { .. })] => *id,
        other => panic!("{other:?}"),
    };
    ep.accept(t0, id, Bytes::from_static(ANSWER.as_bytes()));
    let tag = to_tag(&resp(&drain(ep)[0])).unwrap();
    let mut ack = Req::new("ACK", "z9hG4bKa", call_id);
    ack.to_tag = Some(&tag);
    ep.handle_input(t0, &ack.bytes(), tcp(4));
    events(ep);
    id
}

#[test]
fn tcp_connection_closed_makes_later_bye_open_a_new_connection() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let id = established_over_tcp(&mut ep, t0, "t3");
    ep.connection_closed(4);
    ep.hangup(t0, id);
    let out = drain(&mut ep);
    assert_eq!(out[0].peer.conn, None);
    assert_eq!(out[0].peer.transport, Transport::Tcp);
    // Not the closed connection's port: the Contact's address (the phone listens there).
    assert_eq!(out[0].peer.addr, "192.168.1.20:5062".parse().unwrap());
    let bye = req(&out[0]);
    assert!(
        bye.headers.get("Via").unwrap().starts_with("SIP/2.0/TCP "),
        "{bye:?}"
    );
}

// ------------------------------------------------------------------------------------------
// re-INVITE
// ------------------------------------------------------------------------------------------

#[test]
fn reinvite_flow_500_while_pending_491_while_awaiting_ack() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let (id, tag) = confirmed(&mut ep, t0, "r1");
    let mut re = Req::invite("z9hG4bKre1", "r1");
    re.to_tag = Some(&tag);
    re.cseq = 2;
    ep.handle_input(t0, &re.bytes(), udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![100]);
    assert_eq!(
        events(&mut ep),
        vec![(
            id,
            CallEvent::ReInvite {
                offer: Some(Bytes::from_static(SDP.as_bytes()))
            }
        )]
    );
    // Retransmission: 100 again.
    ep.handle_input(t0, &re.bytes(), udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![100]);
    // Second re-INVITE before we answered: 500 + Retry-After (§14.2).
    let mut re2 = Req::invite("z9hG4bKre2", "r1");
    re2.to_tag = Some(&tag);
    re2.cseq = 3;
    ep.handle_input(t0, &re2.bytes(), udp());
    let r = resp(&drain(&mut ep)[0]);
    assert_eq!(r.status, 500);
    let ra: u32 = r
        .headers
        .get("Retry-After")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(ra <= 10);
    // Answer the first.
    ep.accept_reinvite(t0, id, Bytes::from_static(ANSWER.as_bytes()));
    let ok = drain(&mut ep);
    let r = resp(&ok[0]);
    assert_eq!(r.status, 200);
    assert_eq!(r.cseq().unwrap().seq, 2);
    assert_eq!(&r.body[..], ANSWER.as_bytes());
    assert!(r.headers.get("Contact").is_some());
    // Third re-INVITE while our 2xx awaits its ACK: 491.
    let mut re3 = Req::invite("z9hG4bKre3", "r1");
    re3.to_tag = Some(&tag);
    re3.cseq = 4;
    ep.handle_input(t0, &re3.bytes(), udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![491]);
    // The 2xx is retransmitted until the ACK; so are the 500 and the 491 (timer G).
    let sent = run_until(&mut ep, t0 + Duration::from_millis(600));
    let mut st: Vec<u16> = sent.iter().map(|(_, t)| resp(t).status).collect();
    st.sort();
    assert_eq!(st, vec![200, 491, 500]);
    assert!(sent.iter().any(|(_, t)| t.data == ok[0].data));
    for (branch, cseq) in [("z9hG4bKre2", 3), ("z9hG4bKre3", 4)] {
        let mut ack = Req::new("ACK", branch, "r1");
        ack.to_tag = Some(&tag);
        ack.cseq = cseq;
        ep.handle_input(t0 + Duration::from_millis(700), &ack.bytes(), udp());
    }
    let mut ack = Req::new("ACK", "z9hG4bKra", "r1");
    ack.to_tag = Some(&tag);
    ack.cseq = 2;
    ep.handle_input(t0 + Duration::from_secs(1), &ack.bytes(), udp());
    assert!(
        events(&mut ep).is_empty(),
        "re-INVITE ACK with offer in INVITE: absorbed"
    );
    assert!(drain(&mut ep).is_empty());
    assert!(run_until(&mut ep, t0 + Duration::from_secs(20)).is_empty());
    assert_eq!(ep.call_count(), 1);
}

#[test]
fn reinvite_rejected_keeps_the_call() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let (id, tag) = confirmed(&mut ep, t0, "r2");
    let mut re = Req::invite("z9hG4bKre1", "r2");
    re.to_tag = Some(&tag);
    re.cseq = 2;
    ep.handle_input(t0, &re.bytes(), udp());
    drain(&mut ep);
    events(&mut ep);
    ep.reject_reinvite(t0, id, 488);
    let r = resp(&drain(&mut ep)[0]);
    assert_eq!(r.status, 488);
    assert_eq!(to_tag(&r).as_deref(), Some(tag.as_str()));
    assert!(events(&mut ep).is_empty());
    assert_eq!(ep.call_count(), 1);
}

#[test]
fn reinvite_without_sdp_gets_answer_in_ack() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let (id, tag) = confirmed(&mut ep, t0, "r3");
    let mut re = Req::new("INVITE", "z9hG4bKre1", "r3");
    re.to_tag = Some(&tag);
    re.cseq = 2;
    ep.handle_input(t0, &re.bytes(), udp());
    drain(&mut ep);
    assert_eq!(
        events(&mut ep),
        vec![(id, CallEvent::ReInvite { offer: None })]
    );
    ep.accept_reinvite(t0, id, Bytes::from_static(ANSWER.as_bytes()));
    drain(&mut ep);
    let mut ack = Req::new("ACK", "z9hG4bKra", "r3");
    ack.to_tag = Some(&tag);
    ack.cseq = 2;
    ack.content_type = Some("application/sdp");
    ack.body = SDP;
    ep.handle_input(t0, &ack.bytes(), udp());
    assert_eq!(
        events(&mut ep),
        vec![(
            id,
            CallEvent::Confirmed {
                answer: Some(Bytes::from_static(SDP.as_bytes()))
            }
        )]
    );
}

#[test]
fn bye_during_pending_reinvite_answers_it_487() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let (id, tag) = confirmed(&mut ep, t0, "r4");
    let mut re = Req::invite("z9hG4bKre1", "r4");
    re.to_tag = Some(&tag);
    re.cseq = 2;
    ep.handle_input(t0, &re.bytes(), udp());
    drain(&mut ep);
    events(&mut ep);
    let mut bye = Req::new("BYE", "z9hG4bKb", "r4");
    bye.to_tag = Some(&tag);
    bye.cseq = 3;
    ep.handle_input(t0, &bye.bytes(), udp());
    let out = drain(&mut ep);
    let mut st = statuses(&out);
    st.sort();
    assert_eq!(st, vec![200, 487]);
    assert_eq!(
        events(&mut ep),
        vec![(
            id,
            CallEvent::Ended {
                reason: EndReason::RemoteBye
            }
        )]
    );
}

// ------------------------------------------------------------------------------------------
// Malformed input
// ------------------------------------------------------------------------------------------

#[test]
fn invalid_header_with_readable_basics_gets_400_with_reason() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    let s = String::from_utf8(Req::invite("z9hG4bK1", "bad1").bytes())
        .unwrap()
        .replace("Max-Forwards: 70", "Max-Forwards: banana");
    ep.handle_input(now, s.as_bytes(), udp());
    let out = drain(&mut ep);
    assert_eq!(out.len(), 1);
    let r = resp(&out[0]);
    assert_eq!(r.status, 400);
    assert!(r.reason.contains("Max-Forwards"), "{}", r.reason);
    assert_eq!(r.call_id().unwrap(), "bad1");
    assert!(events(&mut ep).is_empty());
    // CSeq method mismatch.
    let s = String::from_utf8(Req::new("OPTIONS", "z9hG4bK2", "bad2").bytes())
        .unwrap()
        .replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
    ep.handle_input(now, s.as_bytes(), udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![400]);
}

#[test]
fn bad_ack_and_bad_responses_are_dropped() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    let s = String::from_utf8(Req::new("ACK", "z9hG4bK1", "x").bytes())
        .unwrap()
        .replace("Max-Forwards: 70", "Max-Forwards: banana");
    ep.handle_input(now, s.as_bytes(), udp());
    ep.handle_input(now, b"SIP/2.0 200 OK\r\nVia: garbage\r\n\r\n", udp());
    ep.handle_input(now, b"SIP/2.0 abc\r\n\r\n", udp());
    ep.handle_input(now, b"\r\n\r\n", udp());
    ep.handle_input(now, b"\0\0\0\0", udp());
    assert!(drain(&mut ep).is_empty());
}

#[test]
fn missing_headers_are_dropped_not_answered() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    ep.handle_input(
        now,
        b"INVITE sip:7000@h SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\n\r\n",
        udp(),
    );
    ep.handle_input(now, b"hello world", udp());
    assert!(drain(&mut ep).is_empty());
}

/// A small deterministic generator so the fuzz test is reproducible.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn garbage_never_panics_and_yields_nothing_or_error_responses() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let base = Req::invite("z9hG4bKfz", "fuzz").bytes();
    let mut rng = Lcg(42);
    let check = |ep: &mut Endpoint| {
        for t in drain(ep) {
            match parse(&t.data) {
                Ok(Message::Response(r)) => assert!(r.status >= 100, "{r:?}"),
                // A mutated INVITE may still be a valid one: a call, and later a BYE.
                Ok(Message::Request(r)) => assert_eq!(r.method, Method::Bye),
                Err(e) => panic!("endpoint sent unparseable bytes: {e}"),
            }
        }
        for (id, ev) in events(ep) {
            if matches!(ev, CallEvent::Incoming { .. }) {
                ep.reject(t0, id, 486);
            }
        }
    };
    // Every truncation.
    for n in 0..base.len() {
        ep.handle_input(t0, &base[..n], udp());
        check(&mut ep);
    }
    // Random byte flips, insertions of separators, and random bytes.
    for i in 0..1500 {
        let mut m = base.clone();
        for _ in 0..(1 + rng.next() % 4) {
            let pos = (rng.next() as usize) % m.len();
            let b = match rng.next() % 6 {
                0 => b'\r',
                1 => b'\n',
                2 => b':',
                3 => b';',
                4 => b'<',
                _ => rng.next() as u8,
            };
            m[pos] = b;
        }
        ep.handle_input(t0, &m, if i % 2 == 0 { udp() } else { tcp(1) });
        check(&mut ep);
        let junk: Vec<u8> = (0..(rng.next() % 200)).map(|_| rng.next() as u8).collect();
        ep.handle_input(t0, &junk, udp());
        check(&mut ep);
    }
    // Timers still work afterwards and drain to nothing.
    run_until(&mut ep, t0 + Duration::from_secs(3600));
    check(&mut ep);
    assert_eq!(ep.poll_timeout(), None);
}

#[test]
fn cancel_of_a_pending_reinvite_answers_it_487_and_keeps_the_call() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let (id, tag) = confirmed(&mut ep, t0, "r5");
    let mut re = Req::invite("z9hG4bKre1", "r5");
    re.to_tag = Some(&tag);
    re.cseq = 2;
    ep.handle_input(t0, &re.bytes(), udp());
    drain(&mut ep);
    events(&mut ep);
    let mut cancel = Req::new("CANCEL", "z9hG4bKre1", "r5");
    cancel.to_tag = Some(&tag);
    cancel.cseq = 2;
    ep.handle_input(t0, &cancel.bytes(), udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![200, 487]);
    assert!(events(&mut ep).is_empty());
    assert_eq!(ep.call_count(), 1);
    // The layer's late answer is ignored.
    ep.accept_reinvite(t0, id, Bytes::from_static(ANSWER.as_bytes()));
    assert!(drain(&mut ep).is_empty());
}

#[test]
fn hangup_with_pending_reinvite_answers_it_487_then_byes() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let (id, tag) = confirmed(&mut ep, t0, "r6");
    let mut re = Req::invite("z9hG4bKre1", "r6");
    re.to_tag = Some(&tag);
    re.cseq = 2;
    ep.handle_input(t0, &re.bytes(), udp());
    drain(&mut ep);
    events(&mut ep);
    ep.hangup(t0, id);
    let out = drain(&mut ep);
    assert_eq!(out.len(), 2);
    assert_eq!(resp(&out[0]).status, 487);
    assert_eq!(req(&out[1]).method, Method::Bye);
}

#[test]
fn non_sip_request_uri_is_416() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    let mut inv = Req::invite("z9hG4bK1", "u416");
    inv.uri = "urn:service:sos";
    ep.handle_input(now, &inv.bytes(), udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![416]);
}

#[test]
fn oversized_message_gets_513() {
    let mut ep = Endpoint::new(cfg());
    let now = Instant::now();
    let mut inv = Req::invite("z9hG4bK1", "big");
    let body = "a".repeat(70 * 1024);
    inv.body = &body;
    ep.handle_input(now, &inv.bytes(), udp());
    let out = drain(&mut ep);
    assert_eq!(statuses(&out), vec![513]);
    assert_eq!(resp(&out[0]).call_id().unwrap(), "big");
}

// ------------------------------------------------------------------------------------------
// Behind a proxy: Record-Route (RFC 3261 §12.1.1), 100rel/PRACK (RFC 3262), RFC 5923 alias
// ------------------------------------------------------------------------------------------

const PROXY: &str = "10.0.0.2:5070";

fn proxy_udp() -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: PROXY.parse().unwrap(),
        conn: None,
    }
}

/// An INVITE as a record-routing proxy forwards it: its Via on top, its Record-Route.
fn proxied(branch: &str, call_id: &'static str, extra: &'static str) -> Vec<u8> {
    let mut inv = Req::invite(branch, call_id);
    inv.extra = extra;
    let raw = String::from_utf8(inv.bytes()).unwrap();
    raw.replacen(
        "\r\nVia: ",
        "\r\nVia: SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bKproxy1\r\nVia: ",
        1,
    )
    .into_bytes()
}

fn incoming_from(ep: &mut Endpoint, now: Instant, msg: &[u8], peer: Peer) -> (CallId, Request) {
    ep.handle_input(now, msg, peer);
    let out = drain(ep);
    assert_eq!(statuses(&out), vec![100]);
    match &events(ep)[..] {
        [(id, CallEvent::Incoming { invite, .. })] => (*id, invite.clone()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn record_route_is_copied_into_the_2xx_and_the_bye_follows_the_route_set() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let msg = proxied(
        "z9hG4bK1",
        "rr1",
        "Record-Route: <sip:10.0.0.2:5070;lr;ftag=ft1>, <sip:10.0.0.9;lr>\r\n",
    );
    let (id, _) = incoming_from(&mut ep, t0, &msg, proxy_udp());
    ep.accept(t0, id, Bytes::from_static(ANSWER.as_bytes()));
    let out = drain(&mut ep);
    assert_eq!(out[0].peer, proxy_udp(), "the 2xx goes to the proxy's Via");
    let ok = resp(&out[0]);
    assert_eq!(ok.status, 200);
    let rr: Vec<String> = ok
        .record_routes()
        .unwrap()
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(rr, ["<sip:10.0.0.2:5070;lr;ftag=ft1>", "<sip:10.0.0.9;lr>"]);
    let tag = to_tag(&ok).unwrap();
    let mut ack = Req::new("ACK", "z9hG4bKa", "rr1");
    ack.to_tag = Some(&tag);
    ep.handle_input(t0, &ack.bytes(), proxy_udp());
    assert_eq!(
        events(&mut ep).len(),
        1,
        "the ACK through the proxy confirms"
    );
    ep.hangup(t0, id);
    let out = drain(&mut ep);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].peer, proxy_udp(), "the BYE goes to the first route");
    let bye = req(&out[0]);
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.uri.to_string(), "sip:phone@192.168.1.20:5062");
    let routes: Vec<&str> = bye.headers.get_all("Route").collect();
    assert_eq!(
        routes,
        ["<sip:10.0.0.2:5070;lr;ftag=ft1>", "<sip:10.0.0.9;lr>"]
    );
}

#[test]
fn a_first_route_elsewhere_is_where_the_bye_goes() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let msg = proxied(
        "z9hG4bK1",
        "rr2",
        "Record-Route: <sip:10.0.0.3:5080;transport=tcp;lr>\r\n",
    );
    let (id, _) = incoming_from(&mut ep, t0, &msg, proxy_udp());
    ep.accept(t0, id, Bytes::from_static(ANSWER.as_bytes()));
    let tag = to_tag(&resp(&drain(&mut ep)[0])).unwrap();
    let mut ack = Req::new("ACK", "z9hG4bKa", "rr2");
    ack.to_tag = Some(&tag);
    ep.handle_input(t0, &ack.bytes(), proxy_udp());
    ep.hangup(t0, id);
    let out = drain(&mut ep);
    assert_eq!(
        out[0].peer,
        Peer {
            transport: Transport::Tcp,
            addr: "10.0.0.3:5080".parse().unwrap(),
            conn: None,
        }
    );
    assert!(req(&out[0])
        .headers
        .get("Via")
        .unwrap()
        .starts_with("SIP/2.0/TCP "));
}

#[test]
fn a_strict_router_becomes_the_request_uri_of_the_bye() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let msg = proxied("z9hG4bK1", "rr3", "Record-Route: <sip:10.0.0.2:5070>\r\n");
    let (id, _) = incoming_from(&mut ep, t0, &msg, proxy_udp());
    ep.accept(t0, id, Bytes::from_static(ANSWER.as_bytes()));
    let tag = to_tag(&resp(&drain(&mut ep)[0])).unwrap();
    let mut ack = Req::new("ACK", "z9hG4bKa", "rr3");
    ack.to_tag = Some(&tag);
    ep.handle_input(t0, &ack.bytes(), proxy_udp());
    ep.hangup(t0, id);
    let out = drain(&mut ep);
    assert_eq!(out[0].peer, proxy_udp());
    let bye = req(&out[0]);
    assert_eq!(bye.uri.to_string(), "sip:10.0.0.2:5070");
    let routes: Vec<&str> = bye.headers.get_all("Route").collect();
    assert_eq!(routes, ["<sip:phone@192.168.1.20:5062>"]);
}

#[test]
fn a_malformed_record_route_is_400() {
    let mut ep = Endpoint::new(cfg());
    let msg = proxied("z9hG4bK1", "rr4", "Record-Route: <sip:10.0.0.2:5070;lr\r\n");
    ep.handle_input(Instant::now(), &msg, proxy_udp());
    let out = drain(&mut ep);
    assert_eq!(statuses(&out), vec![400]);
    assert!(events(&mut ep).is_empty());
    assert_eq!(ep.call_count(), 0);
}

#[test]
fn options_advertise_100rel_path_and_prack() {
    let mut ep = Endpoint::new(cfg());
    let o = Req::new("OPTIONS", "z9hG4bKo", "o1");
    ep.handle_input(Instant::now(), &o.bytes(), udp());
    let r = resp(&drain(&mut ep)[0]);
    assert_eq!(r.headers.get("Supported"), Some("100rel, path"));
    assert!(r.headers.get("Allow").unwrap().contains("PRACK"));
}

/// An INVITE requiring 100rel: returns the call, the reliable 180 and our tag.
fn reliable_call(ep: &mut Endpoint, now: Instant, call_id: &'static str) -> (CallId, Response) {
    let mut inv = Req::invite("z9hG4bKrel", call_id);
    inv.extra = "Require: 100rel\r\nSupported: 100rel, timer\r\n\
                 Record-Route: <sip:10.0.0.2:5070;lr>\r\n";
    ep.handle_input(now, &inv.bytes(), udp());
    let out = drain(ep);
    assert_eq!(statuses(&out), vec![100, 180]);
    let id = match &events(ep)[..] {
        [(id, CallEvent::Incoming { .. })] => *id,
        other => panic!("{other:?}"),
    };
    let r180 = resp(&out[1]);
    assert_eq!(r180.headers.get("Require"), Some("100rel"));
    assert!(r180.headers.get("RSeq").unwrap().parse::<u32>().unwrap() > 0);
    assert!(to_tag(&r180).is_some(), "the 180 carries our tag");
    assert!(r180.headers.get("Contact").is_some());
    assert_eq!(
        r180.headers.get("Record-Route"),
        Some("<sip:10.0.0.2:5070;lr>")
    );
    (id, r180)
}

fn prack(call_id: &str, tag: &str, rack: &str, branch: &str) -> Vec<u8> {
    let extra = format!("RAck: {rack}\r\n");
    let mut p = Req::new("PRACK", branch, call_id);
    p.to_tag = Some(tag);
    p.cseq = 2;
    p.extra = Box::leak(extra.into_boxed_str());
    p.bytes()
}

#[test]
fn require_100rel_gets_a_reliable_180_and_the_2xx_waits_for_the_prack() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let (id, r180) = reliable_call(&mut ep, t0, "rel1");
    let rseq: u32 = r180.headers.get("RSeq").unwrap().parse().unwrap();
    let tag = to_tag(&r180).unwrap();
    // The call task answers at once: the 2xx is held until the PRACK.
    ep.accept(t0, id, Bytes::from_static(ANSWER.as_bytes()));
    assert!(drain(&mut ep).is_empty(), "no 2xx before the PRACK");
    // Retransmitted with a doubling interval while unacknowledged.
    let sent = run_until(&mut ep, t0 + Duration::from_millis(3600));
    let at: Vec<u128> = sent
        .iter()
        .map(|(t, x)| {
            assert_eq!(resp(x).status, 180);
            assert_eq!(resp(x).headers.get("RSeq"), Some(rseq.to_string().as_str()));
            t.duration_since(t0).as_millis()
        })
        .collect();
    assert_eq!(at, [500, 1500, 3500]);
    // A PRACK for another RSeq: 481, still nothing else.
    let wrong = prack("rel1", &tag, &format!("{} 1 INVITE", rseq + 1), "z9hG4bKp0");
    ep.handle_input(t0, &wrong, udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![481]);
    // The right one: 200 to the PRACK, then the held 2xx.
    let right = prack("rel1", &tag, &format!("{rseq} 1 INVITE"), "z9hG4bKp1");
    let t1 = t0 + Duration::from_secs(4);
    ep.handle_input(t1, &right, udp());
    let out = drain(&mut ep);
    assert_eq!(statuses(&out), vec![200, 200]);
    assert_eq!(resp(&out[0]).cseq().unwrap().method, Method::Prack);
    let ok = resp(&out[1]);
    assert_eq!(ok.cseq().unwrap().method, Method::Invite);
    assert_eq!(to_tag(&ok).as_deref(), Some(tag.as_str()));
    assert_eq!(
        ok.headers.get("Record-Route"),
        Some("<sip:10.0.0.2:5070;lr>")
    );
    // No more 180s; the 2xx retransmits until the ACK.
    let later = run_until(&mut ep, t1 + Duration::from_millis(600));
    assert!(
        later.iter().all(|(_, x)| resp(x).status == 200),
        "{later:?}"
    );
    let mut ack = Req::new("ACK", "z9hG4bKa", "rel1");
    ack.to_tag = Some(&tag);
    ep.handle_input(t1, &ack.bytes(), udp());
    assert_eq!(
        events(&mut ep),
        vec![(id, CallEvent::Confirmed { answer: None })]
    );
    // A second PRACK for the same RSeq (new transaction): nothing outstanding, 481.
    let again = prack("rel1", &tag, &format!("{rseq} 1 INVITE"), "z9hG4bKp2");
    ep.handle_input(t1, &again, udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![481]);
}

#[test]
fn prack_before_the_answer_lets_the_2xx_go_at_once() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let (id, r180) = reliable_call(&mut ep, t0, "rel2");
    let rseq = r180.headers.get("RSeq").unwrap().to_owned();
    let tag = to_tag(&r180).unwrap();
    ep.handle_input(
        t0,
        &prack("rel2", &tag, &format!("{rseq} 1 INVITE"), "z9hG4bKp1"),
        udp(),
    );
    assert_eq!(statuses(&drain(&mut ep)), vec![200]);
    ep.accept(t0, id, Bytes::from_static(ANSWER.as_bytes()));
    assert_eq!(statuses(&drain(&mut ep)), vec![200]);
}

#[test]
fn a_prack_without_or_with_a_bad_rack_is_400() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let (_, r180) = reliable_call(&mut ep, t0, "rel3");
    let tag = to_tag(&r180).unwrap();
    let mut p = Req::new("PRACK", "z9hG4bKp1", "rel3");
    p.to_tag = Some(&tag);
    p.cseq = 2;
    ep.handle_input(t0, &p.bytes(), udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![400]);
    ep.handle_input(t0, &prack("rel3", &tag, "one 1 INVITE", "z9hG4bKp2"), udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![400]);
}

#[test]
fn no_prack_within_64_t1_rejects_the_invite_with_500() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let (id, _) = reliable_call(&mut ep, t0, "rel4");
    ep.accept(t0, id, Bytes::from_static(ANSWER.as_bytes()));
    let sent = run_until(&mut ep, t0 + Duration::from_secs(33));
    let statuses: Vec<u16> = sent.iter().map(|(_, x)| resp(x).status).collect();
    // 180s at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s, then at 32 s the 500 (retransmitted until ACKed).
    let first_500 = statuses.iter().position(|&s| s == 500).expect("a 500");
    assert_eq!(first_500, 6, "{statuses:?}");
    assert!(statuses[..first_500].iter().all(|&s| s == 180));
    assert!(statuses[first_500..].iter().all(|&s| s == 500));
    assert_eq!(
        events(&mut ep),
        vec![(
            id,
            CallEvent::Ended {
                reason: EndReason::Rejected
            }
        )]
    );
}

#[test]
fn a_supported_100rel_alone_gets_no_reliable_provisional() {
    let mut ep = Endpoint::new(cfg());
    let mut inv = Req::invite("z9hG4bK1", "rel5");
    inv.extra = "Supported: 100rel\r\n";
    ep.handle_input(Instant::now(), &inv.bytes(), udp());
    assert_eq!(statuses(&drain(&mut ep)), vec![100]);
}

#[test]
fn a_tcp_via_alias_offers_the_connection() {
    let mut ep = Endpoint::new(cfg());
    let mut inv = Req::invite("z9hG4bK1", "al1");
    inv.via = "SIP/2.0/TCP 192.168.1.20:5062;branch=z9hG4bK1;alias".into();
    ep.handle_input(Instant::now(), &inv.bytes(), tcp(9));
    assert_eq!(
        ep.poll_alias(),
        Some((9, "192.168.1.20:5062".parse().unwrap()))
    );
    assert_eq!(ep.poll_alias(), None);
    // Without alias, or on UDP: nothing.
    let mut inv = Req::invite("z9hG4bK2", "al2");
    inv.via = "SIP/2.0/TCP 192.168.1.20:5062;branch=z9hG4bK2".into();
    ep.handle_input(Instant::now(), &inv.bytes(), tcp(9));
    assert_eq!(ep.poll_alias(), None);
}

#[test]
fn a_bye_whose_connection_cannot_be_opened_ends_the_call_at_once() {
    let mut ep = Endpoint::new(cfg());
    let t0 = Instant::now();
    let id = established_over_tcp(&mut ep, t0, "cf1");
    ep.connection_closed(4);
    ep.hangup(t0, id);
    assert_eq!(drain(&mut ep).len(), 1);
    ep.connect_failed("192.168.1.20:5062".parse().unwrap());
    assert_eq!(
        events(&mut ep),
        vec![(
            id,
            CallEvent::Ended {
                reason: EndReason::TransportError
            }
        )]
    );
}
