//! End to end: a phone (SIPp) calls the IVR and types its keys as SIP INFO
//! (application/dtmf-relay), pausing like a caller listening to the prompts; each INFO gets
//! 200, the server plays the success prompt and hangs up; the store shows the phone bound to
//! jdoe with line 1 = 1001.

mod common;

use common::server::{Server, JDOE};
use common::sipp::Sipp;
use common::SUCCESS_PROMPT_MIN_MS;

#[test]
fn provisions_with_sip_info_keys() {
    let mut server = Server::start();
    server.add_user(&JDOE);
    let outcome = Sipp::new("uac_dtmf_info.xml")
        .key("mac", "0004f2a1b2c4")
        .run(server.sip, server.dir.path());
    outcome.assert_success("provisioning call with SIP INFO keys 1001# 4321# 1");

    // Every INFO was accepted (the scenario requires a 200 for each: 11 keys).
    let info_ok = outcome.responses("SIP/2.0 200", "INFO").len();
    assert_eq!(info_ok, 11, "one 200 per INFO\n{}", outcome.describe());
    // The scenario's pauses add up to 3 + 5 x 0.25 + 1.5 + 5 x 0.25 + 5.5 = 12.5 s before the
    // last key; the success prompt follows.
    let min_ms = 12_500 + SUCCESS_PROMPT_MIN_MS;
    assert!(
        outcome.run.elapsed.as_millis() >= u128::from(min_ms),
        "the call ended after {:?}, before the success prompt could have played",
        outcome.run.elapsed
    );
    server.assert_bound("jdoe", "1001");
    server.assert_alive();
}
