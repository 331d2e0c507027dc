//! End to end: a phone that offers PCMU WITHOUT telephone-event types its keys as in-band DTMF
//! tones in its audio (one continuous PCMU stream, tests/common/pcap.rs); the server must detect
//! them in the audio and provision: jdoe bound, line 1 = 1001.

mod common;

use common::pcap::{write_inband, InbandOptions};
use common::server::{Server, JDOE};
use common::sipp::Sipp;
use common::{provisioning_keys_after, LEAD_MS, SUCCESS_PROMPT_MIN_MS};

#[test]
fn provisions_with_inband_tones() {
    let mut server = Server::start();
    server.add_user(&JDOE);
    let pcap = server.dir.path().join("inband.pcap");
    // The caller's audio starts with the call (the scenario plays it right after the ACK):
    // silence while the welcome plays, then the keys.
    let plan = provisioning_keys_after(LEAD_MS);
    let summary = write_inband(&pcap, &plan, &InbandOptions::default());

    let outcome = Sipp::new("uac_dtmf_inband.xml")
        .key("pcap", pcap.display())
        .key("mac", "0004f2a1b2c5")
        .set("lead_ms", 0)
        .run(server.sip, server.dir.path());
    outcome.assert_success(&format!(
        "provisioning call, keys {} as in-band tones",
        summary.keys
    ));

    let answer = outcome.invite_answer();
    assert!(
        !answer.to_ascii_lowercase().contains("telephone-event"),
        "no telephone-event was offered, none may be answered:\n{answer}"
    );
    assert!(
        answer
            .lines()
            .any(|l| l.trim().starts_with("m=audio ") && l.trim().ends_with(" 0")),
        "the answer must be PCMU (PT 0):\n{answer}"
    );
    let min_ms = summary.duration_ms + SUCCESS_PROMPT_MIN_MS;
    assert!(
        outcome.run.elapsed.as_millis() >= u128::from(min_ms),
        "the call ended after {:?}, before the success prompt could have played",
        outcome.run.elapsed
    );
    server.assert_bound("jdoe", "1001");
    server.assert_alive();
}
