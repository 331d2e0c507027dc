//! End to end: a phone (SIPp) calls the IVR, types its keys as RFC 4733 telephone-events in one
//! continuous RTP stream (tests/common/pcap.rs), hears the success prompt, and the server hangs
//! up; the store then shows the phone bound to jdoe with line 1 = 1001.
//!
//! Two callers: the common one (PT 101, events only), and one that offers telephone-event as
//! PT 96 and keeps sending PCMU audio in the same stream while it sends events, with sequence
//! numbers and timestamps that wrap during the call.

mod common;

use common::pcap::{write_rfc4733, AudioFill, KeyPlan, Rfc4733Options};
use common::server::{Server, ServerOptions, JDOE};
use common::sipp::Sipp;
use common::{provisioning_keys_after, LEAD_MS, SUCCESS_PROMPT_MIN_MS};

fn provision(opts: Rfc4733Options, mac: &str) {
    let mut server = Server::start();
    server.add_user(&JDOE);
    // Events alone: SIPp drops leading silence without packets, so the scenario waits. With
    // audio: the stream starts at the answer, silence while the welcome plays.
    let lead_in_scenario = if opts.audio == AudioFill::None {
        LEAD_MS
    } else {
        0
    };
    let plan = provisioning_keys_after(LEAD_MS - lead_in_scenario);
    let pcap = server.dir.path().join("keys.pcap");
    let summary = write_rfc4733(&pcap, &plan, &opts);

    let outcome = Sipp::new("uac_dtmf_rfc4733.xml")
        .key("dtmf_pt", opts.event_pt)
        .key("pcap", pcap.display())
        .key("mac", mac)
        .set("lead_ms", lead_in_scenario)
        .run(server.sip, server.dir.path());
    outcome.assert_success(&format!(
        "provisioning call, keys {} as RFC 4733 PT {} ({:?} audio)",
        summary.keys, opts.event_pt, opts.audio
    ));

    // The answer keeps the offer's telephone-event payload type.
    let answer = outcome.invite_answer();
    let te = format!("a=rtpmap:{} telephone-event/8000", opts.event_pt);
    assert!(
        answer.lines().any(|l| l.trim().eq_ignore_ascii_case(&te)),
        "the answer must accept telephone-event as PT {} ({te}):\n{answer}",
        opts.event_pt
    );
    // The server's BYE came after the success prompt, not right after the last key.
    let min_ms = lead_in_scenario + summary.duration_ms + SUCCESS_PROMPT_MIN_MS;
    assert!(
        outcome.run.elapsed.as_millis() >= u128::from(min_ms),
        "the call ended after {:?}, before the success prompt could have played (>= {min_ms} ms)",
        outcome.run.elapsed
    );

    let device = server.assert_bound("jdoe", "1001");
    assert_eq!(
        device.raw.get("mac").and_then(|m| m.as_str()),
        Some(mac.to_ascii_uppercase().as_str()),
        "the phone is identified by the MAC of its +sip.instance: {:#}",
        device.raw
    );
    // Issue 3: the phone and its line are built from the universal templates (the seeded
    // defaults: description "#FirstName# #LastName# (#Product# #Protocol#)", line caller-ID
    // "#FirstName# #LastName#" and label "#Extension# - #FirstName#").
    let id = device.raw["id"].to_string();
    let out = server.cli(&["device", "show", &id]);
    assert!(out.success(), "device show: {}", out.stderr);
    let shown: serde_json::Value = serde_json::from_str(&out.stdout).expect("device show JSON");
    let description = shown["description"].as_str().unwrap_or("");
    assert!(
        description.starts_with("Jane Doe (") && description.ends_with("SIP)"),
        "device description from the device template: {shown:#}"
    );
    let out = server.cli(&["line", "list", "--search", "1001"]);
    assert!(out.success(), "line list: {}", out.stderr);
    let lines: serde_json::Value = serde_json::from_str(&out.stdout).expect("line list JSON");
    let line = lines["items"]
        .as_array()
        .and_then(|items| items.iter().find(|l| l["number"] == "1001"))
        .unwrap_or_else(|| panic!("the user's line 1001 exists: {lines:#}"));
    assert_eq!(line["caller_id_name"], "Jane Doe", "{line:#}");
    assert_eq!(line["label"], "1001 - Jane", "{line:#}");
    server.assert_alive();
}

#[test]
fn provisions_with_rfc4733_keys() {
    provision(Rfc4733Options::default(), "0004f2a1b2c3");
}

#[test]
fn provisions_with_pt96_events_amid_continuous_audio_and_wrapping_counters() {
    provision(
        Rfc4733Options {
            event_pt: 96,
            audio: AudioFill::Continuous,
            ssrc: 0xDEAD_BEEF,
            first_seq: 65_400,
            first_timestamp: u32::MAX - 20_000,
            volume: 10,
        },
        "0004f2d4e5f6",
    );
}

/// Runs one RFC 4733 call with `plan` against a server with `opts` and checks the binding.
fn provision_with(opts: &ServerOptions, plan: &KeyPlan, what: &str) {
    let mut server = Server::start_with(opts);
    server.add_user(&JDOE);
    let pcap = server.dir.path().join("keys.pcap");
    let summary = write_rfc4733(&pcap, plan, &Rfc4733Options::default());
    let outcome = Sipp::new("uac_dtmf_rfc4733.xml")
        .key("pcap", pcap.display())
        .set("lead_ms", LEAD_MS)
        .run(server.sip, server.dir.path());
    outcome.assert_success(&format!("{what}: keys {}", summary.keys));
    let min_ms = LEAD_MS + summary.duration_ms + SUCCESS_PROMPT_MIN_MS;
    assert!(
        outcome.run.elapsed.as_millis() >= u128::from(min_ms),
        "{what}: the call ended after {:?}, before the success prompt could have played",
        outcome.run.elapsed
    );
    server.assert_bound("jdoe", "1001");
    server.assert_alive();
}

#[test]
fn provisions_with_the_admin_code_instead_of_the_pin() {
    // "Please enter your PIN, or the administrator authentication code" (6 s): typed into it.
    let plan = KeyPlan::new()
        .keys("1001#")
        .silence(1_500)
        .keys("123456#")
        .silence(5_500)
        .keys("1");
    let opts = ServerOptions {
        auth_mode: "secure-users-and-admins",
        admin_auth_code: Some("123456".into()),
        ..ServerOptions::default()
    };
    provision_with(&opts, &plan, "secure-users-and-admins, admin code");
}

#[test]
fn provisions_in_non_secure_mode_with_the_id_alone() {
    // No PIN step: the confirmation follows the ID.
    let plan = KeyPlan::new().keys("1001#").silence(5_500).keys("1");
    let opts = ServerOptions {
        auth_mode: "non-secure",
        ..ServerOptions::default()
    };
    provision_with(&opts, &plan, "non-secure mode");
}
