//! End to end: the self-provisioning settings are stored and editable at run time. An admin
//! changes the IVR extensions with `selfprov settings update` (another process, the same store)
//! while the server runs; within the server's poll interval the new number is answered and the
//! old one gets 404, without a restart.

mod common;

use common::server::Server;
use common::wait_for;
use std::net::UdpSocket;
use std::time::Duration;

/// Sends an INVITE (PCMU offer) to `number` and returns the final status code; for a 2xx the
/// call is ACKed and hung up with BYE so the server is left clean.
fn call_status(server: &Server, number: &str, tag: &str) -> u16 {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = sock.local_addr().unwrap();
    let sip = server.sip;
    let call_id = format!("settings-{tag}@127.0.0.1");
    let sdp = format!(
        "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        me.port() + 2
    );
    let invite = format!(
        "INVITE sip:{number}@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{tag}-1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:tester@127.0.0.1>;tag={tag}\r\nTo: <sip:{number}@{sip}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:tester@{me}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    sock.send_to(invite.as_bytes(), sip).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let (n, _) = sock.recv_from(&mut buf).expect("a response to the INVITE");
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        let status: u16 = text
            .get(8..11)
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        if status < 200 {
            continue;
        }
        if (200..300).contains(&status) {
            let to = text
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("to:"))
                .unwrap()
                .trim_start_matches(|c: char| c != ':')[1..]
                .trim()
                .to_string();
            let common = format!(
                "Max-Forwards: 70\r\nFrom: <sip:tester@127.0.0.1>;tag={tag}\r\nTo: {to}\r\n\
                 Call-ID: {call_id}\r\nContent-Length: 0\r\n"
            );
            let ack = format!(
                "ACK sip:{number}@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{tag}-2\r\n\
                 CSeq: 1 ACK\r\n{common}\r\n"
            );
            let bye = format!(
                "BYE sip:{number}@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{tag}-3\r\n\
                 CSeq: 2 BYE\r\n{common}\r\n"
            );
            sock.send_to(ack.as_bytes(), sip).unwrap();
            sock.send_to(bye.as_bytes(), sip).unwrap();
        }
        return status;
    }
}

#[test]
fn ivr_extensions_changed_at_run_time_take_effect_without_restart() {
    let mut server = Server::start();
    assert_eq!(
        call_status(&server, "8100", "a"),
        404,
        "8100 is not the IVR yet"
    );
    assert_eq!(call_status(&server, "8000", "b"), 200, "8000 is the IVR");

    let out = server.cli(&[
        "settings",
        "update",
        "--data",
        r#"{"ivr_extensions": ["8100"]}"#,
    ]);
    assert!(
        out.success(),
        "settings update failed: {}{}",
        out.stdout,
        out.stderr
    );

    // The server re-reads the settings every 2 s.
    let mut n = 0;
    let answered = wait_for(Duration::from_secs(10), || {
        n += 1;
        (call_status(&server, "8100", &format!("c{n}")) == 200).then_some(())
    });
    assert!(
        answered.is_some(),
        "8100 never answered after the settings change:\n{}",
        server.log()
    );
    assert_eq!(
        call_status(&server, "8000", "d"),
        404,
        "8000 is no longer the IVR"
    );
    assert!(server.log().contains("IVR extensions updated"));
    server.assert_alive();
}
