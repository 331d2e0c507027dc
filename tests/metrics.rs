//! `GET /metrics` on the admin API listener, against the real server: one provisioning call
//! (SIPp, RFC 4733 keys) and a few config file requests (HTTP and TFTP) must show in the
//! counters a Prometheus scraper reads, without a token.

mod common;

use common::pcap::{write_rfc4733, Rfc4733Options};
use common::server::{Server, ServerOptions, JDOE};
use common::sipp::Sipp;
use common::{provisioning_keys_after, wait_for, LEAD_MS};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// The exposition, checked for its status and content type.
fn scrape(server: &Server) -> String {
    let api = server.api.expect("the server printed its API address");
    let r = common::http::get(api, "/metrics", "metrics-test");
    assert_eq!(r.status, 200, "GET /metrics without a token: {}", r.head);
    assert!(
        r.head
            .to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "OpenMetrics content type: {}",
        r.head
    );
    assert!(
        r.body.ends_with("# EOF\n"),
        "complete exposition:\n{}",
        r.body
    );
    r.body
}

/// The value of `series` (name with its labels as exposed), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (name, v) = l.rsplit_once(' ')?;
        (name == series).then(|| v.parse().ok())?
    })
}

fn must(text: &str, series: &str) -> f64 {
    value(text, series).unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

#[test]
fn a_provisioning_call_and_config_fetches_are_counted() {
    let opts = ServerOptions {
        extra: vec![("provisioning", "tftp_listen = \"127.0.0.1:0\"".into())],
        ..ServerOptions::default()
    };
    let mut server = Server::start_with(&opts);
    server.add_user(&JDOE);

    // Before anything: every series at 0, the process start time set.
    let before = scrape(&server);
    assert_eq!(
        must(&before, "selfprov_calls_total{outcome=\"provisioned\"}"),
        0.0
    );
    assert_eq!(must(&before, "selfprov_calls_active"), 0.0);
    assert_eq!(
        must(&before, "selfprov_config_fetches_total{kind=\"default\"}"),
        0.0
    );
    assert!(must(&before, "selfprov_process_start_time_seconds") > 1.0e9);
    // The API itself still wants a token: /metrics is public on purpose, not by accident.
    let api = server.api.expect("API address");
    assert_eq!(
        common::http::get(api, "/api/v1/users", "metrics-test").status,
        401
    );

    // One provisioning call with RFC 4733 keys.
    let plan = provisioning_keys_after(0);
    let pcap = server.dir.path().join("keys.pcap");
    let summary = write_rfc4733(&pcap, &plan, &Rfc4733Options::default());
    let outcome = Sipp::new("uac_dtmf_rfc4733.xml")
        .key("dtmf_pt", 101)
        .key("pcap", pcap.display())
        .key("mac", "0004f2a1b2c3")
        .set("lead_ms", LEAD_MS)
        .run(server.sip, server.dir.path());
    outcome.assert_success(&format!("provisioning call, keys {}", summary.keys));
    server.assert_bound("jdoe", "1001");

    // The call task counts its end after the BYE's transaction: wait for it, bounded.
    let after = wait_for(Duration::from_secs(10), || {
        let t = scrape(&server);
        (value(&t, "selfprov_calls_total{outcome=\"provisioned\"}") == Some(1.0)).then_some(t)
    })
    .unwrap_or_else(|| {
        panic!(
            "calls_total{{outcome=\"provisioned\"}} never reached 1:\n{}",
            scrape(&server)
        )
    });
    assert_eq!(must(&after, "selfprov_calls_active"), 0.0, "{after}");
    for other in ["failed", "abandoned", "cancelled", "not_established"] {
        assert_eq!(
            must(
                &after,
                &format!("selfprov_calls_total{{outcome=\"{other}\"}}")
            ),
            0.0,
            "{after}"
        );
    }
    // Every key of the plan was a digit the IVR took ("1001#", the PIN, "1" to confirm).
    let rfc4733 = must(&after, "selfprov_dtmf_digits_total{method=\"rfc4733\"}");
    assert_eq!(
        rfc4733,
        summary.keys.chars().count() as f64,
        "one count per RFC 4733 digit:\n{after}"
    );
    assert_eq!(
        must(&after, "selfprov_dtmf_digits_total{method=\"info\"}"),
        0.0
    );
    assert_eq!(
        must(&after, "selfprov_dtmf_digits_total{method=\"inband\"}"),
        0.0
    );
    // Several seconds of prompts at 50 packets a second.
    let sent = must(&after, "selfprov_rtp_packets_sent_total");
    assert!(sent > 100.0, "RTP packets sent: {sent}\n{after}");
    let received = must(&after, "selfprov_rtp_packets_received_total");
    assert!(received > 0.0, "RTP packets received: {received}\n{after}");
    // The media engine timed its wake-ups: about one per packet slot, a few hundred here,
    // each in some bucket, and the histogram's buckets are cumulative.
    let wakes = must(&after, "selfprov_media_engine_wake_lateness_seconds_count");
    assert!(
        wakes > 50.0,
        "media engine wake-ups timed: {wakes}\n{after}"
    );
    assert_eq!(
        must(
            &after,
            "selfprov_media_engine_wake_lateness_seconds_bucket{le=\"+Inf\"}"
        ),
        wakes
    );
    assert_eq!(
        must(&after, "selfprov_provisionings_total{result=\"bound\"}"),
        1.0
    );
    assert_eq!(
        must(&after, "selfprov_provisionings_total{result=\"refused\"}"),
        0.0
    );
    assert_eq!(
        must(&after, "selfprov_call_setup_rejected_total{status=\"503\"}"),
        0.0
    );

    // Config files: a vendor default file over HTTP, then over TFTP; a path no phone asks for.
    let prov = server.provisioning.expect("provisioning address");
    let r = common::http::get(prov, "/XmlDefault.cnf.xml", "metrics-test");
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(
        r.body.contains("<Default>"),
        "a Cisco default file:\n{}",
        r.body
    );
    assert_eq!(
        common::http::get(prov, "/no-such-file.txt", "metrics-test").status,
        404
    );
    let tftp = server.tftp.expect("the server printed its TFTP address");
    tftp_first_block(tftp, "XmlDefault.cnf.xml");
    let t = scrape(&server);
    assert_eq!(
        must(&t, "selfprov_config_fetches_total{kind=\"default\"}"),
        2.0,
        "one over HTTP, one over TFTP:\n{t}"
    );
    assert_eq!(
        must(&t, "selfprov_config_fetches_total{kind=\"not_found\"}"),
        1.0
    );
    assert_eq!(
        must(&t, "selfprov_config_fetches_total{kind=\"refused\"}"),
        0.0
    );
    server.assert_alive();
}

/// Reads the first DATA block of `file` over TFTP (RFC 1350), then aborts the transfer with an
/// ERROR packet so the server does not retransmit.
fn tftp_first_block(server: SocketAddr, file: &str) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rrq = vec![0, 1];
    rrq.extend_from_slice(file.as_bytes());
    rrq.push(0);
    rrq.extend_from_slice(b"octet\0");
    sock.send_to(&rrq, server).unwrap();
    let mut buf = [0u8; 1024];
    let (n, from) = sock.recv_from(&mut buf).expect("a TFTP answer");
    assert!(
        n >= 4 && buf[..4] == [0, 3, 0, 1],
        "DATA block 1: {:?}",
        &buf[..n.min(64)]
    );
    let mut error = vec![0, 5, 0, 0];
    error.extend_from_slice(b"test done\0");
    sock.send_to(&error, from).unwrap();
}
