//! End to end: what goes wrong, with real SIP software (SIPp) and raw sockets.
//!
//! * Wrong PIN three times: "that PIN is not correct" ... "too many attempts, goodbye", the
//!   server hangs up, nothing is bound.
//! * The caller hangs up in the middle of the PIN: 200 to the BYE, nothing is bound.
//! * CANCEL right behind the INVITE: the server answers at once, so the CANCEL races the 200;
//!   both RFC 3261 outcomes are accepted (see tests/sipp/uac_cancel.xml), nothing is bound.
//! * An offer with only G.729: 488. OPTIONS: 200 with Allow. INVITE to 9999 (not an IVR
//!   number): 404.
//! * Garbage (random bytes, truncated and oversized requests) over UDP and TCP: the server
//!   shrugs it off and still answers OPTIONS.
//! * The whole provisioning call over TCP.

mod common;

use common::pcap::{write_rfc4733, KeyPlan, Rfc4733Options};
use common::server::{Server, JDOE};
use common::sipp::{Sipp, Transport};
use common::{provisioning_keys, tail, LEAD_MS, SUCCESS_PROMPT_MIN_MS};
use rand::Rng;
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

fn server_with_jdoe() -> Server {
    let server = Server::start();
    server.add_user(&JDOE);
    server
}

#[test]
fn wrong_pin_three_times_ends_the_call_and_binds_nothing() {
    let mut server = server_with_jdoe();
    // After a wrong PIN the server says "that PIN is not correct. Please try again. Please
    // enter your PIN" (6.4 s); the caller types the next attempt 3.5 s in, during "enter your
    // PIN" (barge-in). After the third: "too many unsuccessful attempts. Goodbye." and BYE.
    let plan = KeyPlan::new()
        .keys("1001#")
        .silence(1_500)
        .keys("1111#")
        .silence(3_500)
        .keys("2222#")
        .silence(3_500)
        .keys("3333#");
    let pcap = server.dir.path().join("wrong-pins.pcap");
    let summary = write_rfc4733(&pcap, &plan, &Rfc4733Options::default());
    let outcome = Sipp::new("uac_dtmf_rfc4733.xml")
        .key("pcap", pcap.display())
        .set("lead_ms", LEAD_MS)
        .run(server.sip, server.dir.path());
    outcome.assert_success(&format!(
        "wrong PIN three times ({}): the server must hang up",
        summary.keys
    ));
    // "That PIN is not correct. Too many unsuccessful attempts. Goodbye." is about 4.7 s.
    let min_ms = LEAD_MS + summary.duration_ms + 3_000;
    assert!(
        outcome.run.elapsed.as_millis() >= u128::from(min_ms),
        "the server hung up after {:?}, before its closing prompts could have played",
        outcome.run.elapsed
    );
    server.assert_nothing_bound();
    // Each failed attempt is in the audit log, without the digits typed.
    let out = server.cli(&["audit"]);
    assert!(out.success(), "audit: {}", out.stderr);
    let audit: serde_json::Value = serde_json::from_str(&out.stdout).expect("audit JSON");
    let outcomes: Vec<&str> = audit["items"]
        .as_array()
        .expect("audit items")
        .iter()
        .filter_map(|e| e["outcome"].as_str())
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == "bad-pin").count(),
        3,
        "{audit:#}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == "too-many-attempts")
            .count(),
        1,
        "{audit:#}"
    );
    for pin in ["1111", "2222", "3333"] {
        assert!(
            !out.stdout.contains(pin),
            "the audit log must not hold the digits typed: {audit:#}"
        );
    }
    server.assert_alive();
}

#[test]
fn caller_hanging_up_mid_entry_gets_200_and_binds_nothing() {
    let mut server = server_with_jdoe();
    // The ID, then two digits of the PIN; the caller hangs up 1.5 s after the last key (well
    // inside the 5 s inter-digit timeout: the PIN is never submitted).
    let plan = KeyPlan::new().keys("1001#").silence(1_500).keys("43");
    let pcap = server.dir.path().join("partial.pcap");
    let summary = write_rfc4733(&pcap, &plan, &Rfc4733Options::default());
    let outcome = Sipp::new("uac_hangup_mid_entry.xml")
        .key("pcap", pcap.display())
        .set("lead_ms", LEAD_MS)
        .set("hangup_ms", summary.duration_ms + 1_500)
        .run(server.sip, server.dir.path());
    outcome.assert_success("caller hangs up mid-entry: BYE must get 200");
    // Let the server finish tearing the call down before looking at the store.
    std::thread::sleep(Duration::from_millis(500));
    server.assert_nothing_bound();
    server.assert_alive();
    options_answered(&server, Transport::Udp);
}

#[test]
fn cancel_right_after_invite_is_handled_either_way() {
    let mut server = server_with_jdoe();
    let outcome = Sipp::new("uac_cancel.xml").run(server.sip, server.dir.path());
    outcome.assert_success("INVITE then CANCEL");
    let log = &outcome.logs;
    assert!(
        !log.contains("outcome=answered-after-cancel"),
        "the server accepted the CANCEL (200) and then answered the INVITE with 200 instead of \
         487 (RFC 3261 9.2)\n{}",
        outcome.describe()
    );
    let path = if log.contains("outcome=cancelled") {
        "200 to CANCEL, 487 to INVITE, ACK"
    } else if log.contains("outcome=answered-before-cancel") {
        "200 to INVITE before the CANCEL could be sent; ACK + BYE"
    } else if log.contains("outcome=answered") {
        "200 to INVITE first, then ACK + BYE (CANCEL answered 200/481)"
    } else {
        panic!("the scenario logged no outcome\n{}", outcome.describe())
    };
    let cancel_response = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("cancel_response="))
        .unwrap_or("-");
    eprintln!("CANCEL race resolved as: {path}; CANCEL answered: {cancel_response}");
    std::thread::sleep(Duration::from_millis(300));
    server.assert_nothing_bound();
    server.assert_alive();
}

/// Runs uac_invite_rejected.xml and returns the final code it logged.
fn rejected_with(server: &Server, service: &str, fmt: u8, codec: &str) -> u16 {
    let outcome = Sipp::new("uac_invite_rejected.xml")
        .service(service)
        .key("fmt", fmt)
        .key("codec", codec)
        .run(server.sip, server.dir.path());
    outcome.assert_success(&format!(
        "INVITE to {service} offering {fmt} {codec} must be refused"
    ));
    outcome
        .logs
        .lines()
        .find_map(|l| l.trim().strip_prefix("final=")?.parse().ok())
        .unwrap_or_else(|| panic!("no final code logged\n{}", outcome.describe()))
}

#[test]
fn g729_only_offer_is_refused_with_488() {
    let mut server = server_with_jdoe();
    assert_eq!(rejected_with(&server, "8000", 18, "G729/8000"), 488);
    server.assert_alive();
}

#[test]
fn invite_to_a_number_that_is_not_the_ivr_gets_404() {
    let mut server = server_with_jdoe();
    assert_eq!(rejected_with(&server, "9999", 0, "PCMU/8000"), 404);
    server.assert_alive();
}

fn options_answered(server: &Server, transport: Transport) {
    Sipp::new("options.xml")
        .transport(transport)
        .timeout_s(15)
        .run(server.sip, server.dir.path())
        .assert_success(&format!(
            "OPTIONS over {transport:?} must get 200 with Allow: INVITE, ACK, BYE, CANCEL, OPTIONS"
        ));
}

#[test]
fn options_gets_200_with_allow() {
    let mut server = Server::start();
    options_answered(&server, Transport::Udp);
    options_answered(&server, Transport::Tcp);
    server.assert_alive();
}

/// A syntactically plausible INVITE (for truncating and bloating).
fn invite_text(port: u16, extra_header: &str) -> String {
    let body = "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    format!(
        "INVITE sip:8000@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-garbage-{}\r\n\
         From: <sip:garbage@127.0.0.1>;tag=g1\r\nTo: <sip:8000@127.0.0.1>\r\n\
         Call-ID: garbage-{}@127.0.0.1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\
         Contact: <sip:garbage@127.0.0.1:9>\r\n{extra_header}\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        rand::rng().random::<u32>(),
        rand::rng().random::<u32>(),
        body.len()
    )
}

#[test]
fn garbage_does_not_stop_the_server() {
    let mut server = Server::start();
    let port = server.sip.port();
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    // Replies (if any) go to a port nobody reads; they are irrelevant here.
    sock.connect(server.sip).expect("connect");
    let mut rng = rand::rng();
    let mut datagrams: Vec<Vec<u8>> = Vec::new();
    // Random bytes of many sizes, including the UDP maximum.
    for &len in &[1usize, 2, 3, 4, 13, 100, 512, 1_400, 4_096, 65_507] {
        datagrams.push((0..len).map(|_| rng.random::<u8>()).collect());
    }
    datagrams.push(Vec::new()); // empty datagram
    datagrams.push(b"\r\n\r\n".to_vec()); // keep-alive
    let invite = invite_text(port, "");
    // The same INVITE cut at every interesting point.
    for cut in [7, 20, 40, 80, 200, invite.len() / 2, invite.len() - 10] {
        datagrams.push(invite.as_bytes()[..cut.min(invite.len())].to_vec());
    }
    // A 60 kB header; 1000 headers; a Content-Length far beyond the datagram; NUL bytes;
    // invalid UTF-8; an unsolicited response; a request line with no version.
    datagrams.push(invite_text(port, &format!("Subject: {}\r\n", "x".repeat(60_000))).into_bytes());
    datagrams.push(invite_text(port, &"X-Many: y\r\n".repeat(1_000)).into_bytes());
    datagrams.push(
        invite_text(port, "")
            .replace("Content-Length: ", "Content-Length: 9999")
            .into_bytes(),
    );
    datagrams.push(invite_text(port, "X-Nul: a\0b\r\n").into_bytes());
    let mut bad_utf8 = invite_text(port, "").into_bytes();
    bad_utf8.splice(30..30, [0xFF, 0xFE, 0xC3]);
    datagrams.push(bad_utf8);
    datagrams.push(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\nCSeq: 1 INVITE\r\n\r\n"
            .to_vec(),
    );
    datagrams.push(b"INVITE sip:8000@127.0.0.1\r\n\r\n".to_vec());
    datagrams.push(b"OPTIONS sip:8000@127.0.0.1 SIP/2.0\r\nContent-Length: -5\r\n\r\n".to_vec());
    for d in &datagrams {
        // A send error (e.g. EMSGSIZE, or ECONNREFUSED from an earlier ICMP) is not the point.
        let _ = sock.send(d);
        std::thread::sleep(Duration::from_millis(5));
    }

    // TCP: garbage, a truncated request left hanging, and an endless header.
    for payload in [
        (0..2_000).map(|_| rng.random::<u8>()).collect::<Vec<u8>>(),
        invite.as_bytes()[..invite.len() / 2].to_vec(),
        format!(
            "INVITE sip:8000@127.0.0.1 SIP/2.0\r\nSubject: {}",
            "y".repeat(300_000)
        )
        .into_bytes(),
    ] {
        if let Ok(mut s) = TcpStream::connect_timeout(&server.sip, Duration::from_secs(2)) {
            let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(&payload);
            // Dropped: the connection closes mid-message.
        }
    }

    std::thread::sleep(Duration::from_millis(300));
    server.assert_alive();
    options_answered(&server, Transport::Udp);
    options_answered(&server, Transport::Tcp);
    server.assert_alive();
    assert!(
        !server.log().contains("panicked"),
        "the server panicked on garbage:\n{}",
        tail(&server.log(), 80)
    );
}

#[test]
fn provisions_over_tcp() {
    let mut server = server_with_jdoe();
    let plan = provisioning_keys();
    let pcap = server.dir.path().join("keys-tcp.pcap");
    let summary = write_rfc4733(&pcap, &plan, &Rfc4733Options::default());
    let outcome = Sipp::new("uac_dtmf_rfc4733.xml")
        .transport(Transport::Tcp)
        .key("pcap", pcap.display())
        .key("mac", "0004f2a1b2c6")
        .set("lead_ms", LEAD_MS)
        .run(server.sip, server.dir.path());
    outcome.assert_success("provisioning call over TCP");
    let min_ms = LEAD_MS + summary.duration_ms + SUCCESS_PROMPT_MIN_MS;
    assert!(
        outcome.run.elapsed.as_millis() >= u128::from(min_ms),
        "the call ended after {:?}, before the success prompt could have played",
        outcome.run.elapsed
    );
    server.assert_bound("jdoe", "1001");
    server.assert_alive();
}
