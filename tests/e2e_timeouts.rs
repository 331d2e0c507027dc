//! End to end: the digit timers, with short configured timeouts (ivr.first_digit_timeout_ms and
//! ivr.inter_digit_timeout_ms = 1.5 s) so the calls stay short.
//!
//! * A caller who never types (its phone keeps sending silent audio): after each prompt the
//!   first-digit timer fires ("no entry was received, please try again"); the third time the
//!   server says goodbye and hangs up; nothing is bound.
//! * A caller who never presses #: the inter-digit timer submits what was typed, for the ID and
//!   for the PIN; the phone is provisioned.

mod common;

use common::pcap::{write_rfc4733, AudioFill, KeyPlan, Rfc4733Options};
use common::server::{Server, ServerOptions, JDOE};
use common::sipp::Sipp;
use common::SUCCESS_PROMPT_MIN_MS;

fn short_timeouts() -> Server {
    let server = Server::start_with(&ServerOptions {
        first_digit_timeout_ms: Some(1_500),
        inter_digit_timeout_ms: Some(1_500),
        ..ServerOptions::default()
    });
    server.add_user(&JDOE);
    server
}

#[test]
fn silent_caller_is_prompted_three_times_then_hung_up_on() {
    let mut server = short_timeouts();
    // 45 s of PCMU silence from the answer on: RTP keeps flowing, no key is ever sent.
    let plan = KeyPlan::new().silence(45_000);
    let pcap = server.dir.path().join("silence.pcap");
    write_rfc4733(
        &pcap,
        &plan,
        &Rfc4733Options {
            audio: AudioFill::BetweenEvents,
            ..Rfc4733Options::default()
        },
    );
    let outcome = Sipp::new("uac_dtmf_rfc4733.xml")
        .key("pcap", pcap.display())
        .set("lead_ms", 0)
        .run(server.sip, server.dir.path());
    outcome.assert_success("a caller who types nothing must be hung up on");
    // welcome + enter_id (6.4 s), then 3 x (1.5 s timer + "no entry ... try again ... enter
    // your ID" 6.9 s), the last one ending in "too many attempts, goodbye" instead: about 29 s.
    let elapsed = outcome.run.elapsed.as_secs_f64();
    assert!(
        (20.0..45.0).contains(&elapsed),
        "the server hung up after {elapsed:.1} s; three first-digit timeouts of 1.5 s after the \
         prompts take about 29 s"
    );
    server.assert_nothing_bound();
    server.assert_alive();
}

#[test]
fn entries_without_pound_are_submitted_by_the_inter_digit_timer() {
    let mut server = short_timeouts();
    // ID without '#': submitted 1.5 s after the last key; the PIN 2.5 s after it, during "enter
    // your PIN"; again no '#'; 1.5 s later the confirmation starts and "1" comes 5.5 s into it.
    let plan = KeyPlan::new()
        .keys("1001")
        .silence(2_500)
        .keys("4321")
        .silence(7_000)
        .keys("1");
    let pcap = server.dir.path().join("no-pound.pcap");
    let summary = write_rfc4733(&pcap, &plan, &Rfc4733Options::default());
    let outcome = Sipp::new("uac_dtmf_rfc4733.xml")
        .key("pcap", pcap.display())
        .set("lead_ms", common::LEAD_MS)
        .run(server.sip, server.dir.path());
    outcome.assert_success("ID and PIN without '#', submitted by the inter-digit timer");
    let min_ms = common::LEAD_MS + summary.duration_ms + SUCCESS_PROMPT_MIN_MS;
    assert!(
        outcome.run.elapsed.as_millis() >= u128::from(min_ms),
        "the call ended after {:?}, before the success prompt could have played",
        outcome.run.elapsed
    );
    server.assert_bound("jdoe", "1001");
    server.assert_alive();
}
