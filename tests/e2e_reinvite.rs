//! End to end: re-INVITEs in an IVR call (RFC 3261 §14, RFC 3264 §8), as a phone does them.
//!
//! A hand-written UAC (tests/common/uac.rs) records every RTP packet of the server while it:
//!
//! * refreshes the session with a re-INVITE carrying the same SDP: the 200's SDP is unchanged,
//!   `o=` line included (RFC 3264 §8: the version changes only when the SDP does);
//! * puts the IVR on hold (`a=sendonly`): the 200 answers `a=recvonly` with the `o=` version
//!   incremented by one, and the server sends no RTP while held (only what was in flight);
//! * resumes (`a=sendrecv`): the 200 answers `a=sendrecv`, and RTP resumes in the SAME stream
//!   (same SSRC, the sequence number following the last one before the hold, the timestamp
//!   advanced by the time the hold lasted);
//! * hangs up (BYE, 200).
//!
//! And SIPp (tests/sipp/uac_reinvite_hold.xml) does hold/resume with its own SIP stack.

mod common;

use common::server::{Server, ServerOptions};
use common::sipp::Sipp;
use common::uac::{
    sdp, sdp_audio_addr, sdp_direction, sdp_origin, sdp_origin_version, RtpEndpoint, RtpRx,
    SipMessage, Uac,
};
use std::time::{Duration, Instant};

/// What may still arrive after the hold's 200/ACK: packets the server had already sent.
const IN_FLIGHT: Duration = Duration::from_millis(60);

fn ok_body(uac: &Uac, resp: &SipMessage, what: &str) -> String {
    assert_eq!(
        resp.status(),
        Some(200),
        "{what}: expected 200\n{}",
        uac.trace()
    );
    assert!(
        resp.header("content-type")
            .is_some_and(|c| c.eq_ignore_ascii_case("application/sdp")),
        "{what}: the 200 must carry an SDP answer\n{}",
        resp.raw
    );
    resp.body.clone()
}

fn origin_session(body: &str) -> Option<String> {
    // username, sess-id: what identifies the session across versions.
    let o = sdp_origin(body)?;
    let f: Vec<&str> = o.split_whitespace().collect();
    Some(format!("{} {}", f.first()?, f.get(1)?))
}

#[test]
fn hold_resume_and_session_refresh_keep_one_rtp_stream() {
    let mut server = Server::start();
    let rtp = RtpEndpoint::bind();
    let port = rtp.addr.port();
    let pcmu = [(0u8, "PCMU")];
    let mut uac = Uac::new(server.sip, "8000");

    // The call.
    let offer1 = sdp(1, port, &pcmu, Some(101), "sendrecv");
    let ok = uac.invite(Some(&offer1));
    let answer1 = ok_body(&uac, &ok, "INVITE");
    let server_rtp = sdp_audio_addr(&answer1).expect("audio address in the answer");
    uac.ack(None);
    let sender = rtp.start_sending(server_rtp, 0);
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        rtp.packets().len() >= 25,
        "the IVR's RTP before any re-INVITE: {} packets in 700 ms",
        rtp.packets().len()
    );

    // Session refresh: same offer, same answer (RFC 3264 §8).
    let ok = uac.reinvite(Some(&offer1));
    let refresh = ok_body(&uac, &ok, "session refresh re-INVITE");
    assert_eq!(
        sdp_origin(&refresh),
        sdp_origin(&answer1),
        "a refresh with an unchanged offer must get an unchanged o= line\nfirst answer:\n\
         {answer1}\nrefresh answer:\n{refresh}"
    );
    assert_eq!(
        refresh, answer1,
        "a refresh with an unchanged offer must get the same SDP"
    );

    // Hold.
    std::thread::sleep(Duration::from_millis(300));
    let hold_offer = sdp(2, port, &pcmu, Some(101), "sendonly");
    let ok = uac.reinvite(Some(&hold_offer));
    let hold_acked = Instant::now();
    let hold = ok_body(&uac, &ok, "hold re-INVITE (a=sendonly)");
    assert_eq!(
        sdp_direction(&hold),
        "recvonly",
        "a sendonly offer is answered recvonly:\n{hold}"
    );
    assert_eq!(
        sdp_audio_addr(&hold),
        Some(server_rtp),
        "the RTP address stays:\n{hold}"
    );
    std::thread::sleep(Duration::from_millis(1_200));
    let before_resume = rtp.packets();
    let held: Vec<&RtpRx> = before_resume
        .iter()
        .filter(|p| p.at > hold_acked + IN_FLIGHT)
        .collect();
    assert!(
        held.is_empty(),
        "the server must not send RTP while held (a=recvonly): {} packets arrived more than \
         {IN_FLIGHT:?} after the hold was acknowledged",
        held.len()
    );
    let last_before = before_resume.last().cloned().expect("RTP before the hold");

    // Resume.
    let resume_offer = sdp(3, port, &pcmu, Some(101), "sendrecv");
    let ok = uac.reinvite(Some(&resume_offer));
    let resume = ok_body(&uac, &ok, "resume re-INVITE (a=sendrecv)");
    assert_eq!(
        sdp_direction(&resume),
        "sendrecv",
        "resume answered sendrecv:\n{resume}"
    );
    std::thread::sleep(Duration::from_millis(1_000));
    let after: Vec<RtpRx> = rtp
        .packets()
        .into_iter()
        .filter(|p| p.at > last_before.at)
        .collect();
    assert!(
        after.len() >= 40,
        "RTP must resume after the hold: {} packets in 1 s",
        after.len()
    );
    let first = &after[0];
    assert_eq!(
        first.ssrc, last_before.ssrc,
        "the resumed RTP must be the same stream (SSRC)"
    );
    assert_eq!(
        first.seq,
        last_before.seq.wrapping_add(1),
        "sequence numbers continue across the hold (last before hold {})",
        last_before.seq
    );
    // The RTP clock ran on during the hold: the timestamp jump matches the time between the two
    // packets (within 40 ms = 320 samples of scheduling noise).
    let ts_jump = i64::from(first.ts.wrapping_sub(last_before.ts));
    let wall = (first.at - last_before.at).as_secs_f64() * 8_000.0;
    assert!(
        (ts_jump as f64 - wall).abs() <= 320.0,
        "timestamp advanced by {ts_jump} samples across a hold of {:.0} samples of wall time",
        wall
    );
    for w in after.windows(2) {
        assert_eq!(w[1].ssrc, first.ssrc, "one SSRC after the resume");
        assert_eq!(
            w[1].seq,
            w[0].seq.wrapping_add(1),
            "sequence +1 after resume"
        );
        assert_eq!(
            w[1].ts,
            w[0].ts.wrapping_add(160),
            "timestamp +160 after resume"
        );
    }

    // Refresh after the resume: unchanged again.
    let ok = uac.reinvite(Some(&resume_offer));
    let refresh2 = ok_body(&uac, &ok, "second session refresh");
    assert_eq!(
        sdp_origin(&refresh2),
        sdp_origin(&resume),
        "refresh after resume: o= unchanged\nresume answer:\n{resume}\nrefresh:\n{refresh2}"
    );

    // The caller hangs up.
    assert_eq!(uac.bye(), 200, "BYE answered 200\n{}", uac.trace());
    drop(sender);
    let requests = uac.pending_requests(Duration::from_millis(200));
    assert!(
        requests.is_empty(),
        "the server sent requests during the call: {:?}",
        requests.iter().map(|r| &r.start_line).collect::<Vec<_>>()
    );
    server.assert_alive();
}

/// RFC 3264 §8: "If the SDP is changed, the version in the origin field MUST increment by one";
/// the session id and username stay.
#[test]
fn changed_answers_increment_the_origin_version_by_one() {
    let mut server = Server::start();
    let rtp = RtpEndpoint::bind();
    let port = rtp.addr.port();
    let pcmu = [(0u8, "PCMU")];
    let mut uac = Uac::new(server.sip, "8000");
    let ok = uac.invite(Some(&sdp(1, port, &pcmu, Some(101), "sendrecv")));
    let answer1 = ok_body(&uac, &ok, "INVITE");
    let server_rtp = sdp_audio_addr(&answer1).expect("audio address");
    uac.ack(None);
    let sender = rtp.start_sending(server_rtp, 0);

    let ok = uac.reinvite(Some(&sdp(2, port, &pcmu, Some(101), "sendonly")));
    let hold = ok_body(&uac, &ok, "hold");
    let ok = uac.reinvite(Some(&sdp(3, port, &pcmu, Some(101), "sendrecv")));
    let resume = ok_body(&uac, &ok, "resume");
    assert_eq!(uac.bye(), 200, "BYE answered 200\n{}", uac.trace());
    drop(sender);

    let v = |b: &str| sdp_origin_version(b).unwrap_or_else(|| panic!("no o= version in\n{b}"));
    assert_eq!(origin_session(&hold), origin_session(&answer1), "{hold}");
    assert_eq!(
        origin_session(&resume),
        origin_session(&answer1),
        "{resume}"
    );
    assert_eq!(
        v(&hold),
        v(&answer1) + 1,
        "the hold answer (recvonly) differs from the first answer (sendrecv): its o= version \
         must be the previous one + 1\nfirst:\n{answer1}\nhold:\n{hold}"
    );
    assert_eq!(
        v(&resume),
        v(&hold) + 1,
        "the resume answer differs from the hold answer: o= version + 1\nhold:\n{hold}\n\
         resume:\n{resume}"
    );
    server.assert_alive();
}

#[test]
fn sipp_hold_and_resume() {
    let mut server = Server::start();
    let outcome = Sipp::new("uac_reinvite_hold.xml").run(server.sip, server.dir.path());
    outcome.assert_success("SIPp: call, hold (sendonly -> recvonly), resume, BYE");
    let oks = outcome.responses("SIP/2.0 200", "INVITE");
    let dirs: Vec<String> = oks
        .iter()
        .map(|m| {
            let body = m
                .lines()
                .skip_while(|l| !l.trim().is_empty())
                .collect::<Vec<_>>()
                .join("\r\n");
            sdp_direction(&body)
        })
        .collect();
    assert_eq!(
        dirs,
        ["sendrecv", "recvonly", "sendrecv"],
        "the directions of the three 200s (call, hold, resume)\n{}",
        outcome.describe()
    );
    server.assert_alive();
}

/// A hold with `a=inactive` longer than the RTP inactivity timeout: the caller sends nothing
/// while held, as it should, and must not be hung up when it resumes (the silence of a hold is
/// not inactivity). Without the reset at resume the server's BYE came at once.
#[test]
fn a_hold_longer_than_the_inactivity_timeout_is_not_inactivity() {
    let server = Server::start_with(&ServerOptions {
        extra: vec![("rtp", "inactivity_timeout_ms = 1500".into())],
        ..ServerOptions::default()
    });
    let rtp = RtpEndpoint::bind();
    let port = rtp.addr.port();
    let pcmu = [(0u8, "PCMU")];
    let mut uac = Uac::new(server.sip, "8000");
    let offer = sdp(1, port, &pcmu, Some(101), "sendrecv");
    let ok = uac.invite(Some(&offer));
    let answer = ok_body(&uac, &ok, "INVITE");
    let server_rtp = sdp_audio_addr(&answer).expect("audio address in the answer");
    uac.ack(None);
    let sender = rtp.start_sending(server_rtp, 0);
    std::thread::sleep(Duration::from_millis(500));

    // Hold, inactive both ways: the caller stops sending.
    let ok = uac.reinvite(Some(&sdp(2, port, &pcmu, Some(101), "inactive")));
    let hold = ok_body(&uac, &ok, "hold re-INVITE (a=inactive)");
    assert_eq!(sdp_direction(&hold), "inactive", "{hold}");
    sender.stop();
    std::thread::sleep(Duration::from_millis(2_500));
    assert!(
        uac.pending_requests(Duration::from_millis(10)).is_empty(),
        "no BYE while held (the caller is not expected to send):\n{}",
        uac.trace()
    );

    // Resume and send again: the call goes on.
    let ok = uac.reinvite(Some(&sdp(3, port, &pcmu, Some(101), "sendrecv")));
    let resume = ok_body(&uac, &ok, "resume re-INVITE");
    assert_eq!(sdp_direction(&resume), "sendrecv", "{resume}");
    let sender = rtp.start_sending(server_rtp, 0);
    let bye = uac.wait_request("BYE", Duration::from_millis(1_200));
    assert!(
        bye.is_none(),
        "hung up right after the resume, as if the hold were inactivity:\n{}",
        uac.trace()
    );
    drop(sender);
}
