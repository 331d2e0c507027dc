//! End to end with a real softphone: baresip 1.0.0 calls the IVR, listens to the welcome
//! prompt, types 1001# 4321# 1 (RFC 4733, one key at a time over ctrl_tcp), and the server
//! hangs up after the success prompt. Checked like a user would: the phone is bound to jdoe
//! with line 1 = 1001, and what the phone heard is the welcome prompt: the recording of the
//! decoded audio (sndfile `dump-*-dec.wav`) is not silence and correlates with
//! lang-packs/en-US/welcome.wav.
//!
//! The threshold (0.8) comes from measurements (tests/e2e_harness.rs,
//! `baresip_records_what_the_far_end_plays`, and this test against the server): the welcome
//! prompt sent through G.711 and decoded by baresip correlates at 0.99-1.00 with the WAV, while
//! a different prompt of similar length (enter_pin) peaks at about 0.05 against the same
//! recording. 0.8 sits far above any unrelated speech and leaves room for a server that
//! resamples, changes the level (NCC ignores gain) or uses PCMA instead of PCMU.

mod common;

use common::audio::{active_fraction, best_correlation, read_wav, rms_dbfs, write_silence_wav};
use common::baresip::Baresip;
use common::server::{Server, JDOE};
use common::{prompt_wav, tail};
use std::time::Duration;

const NCC_THRESHOLD: f64 = 0.8;

fn type_keys(phone: &mut Baresip, keys: &str) {
    for k in keys.chars() {
        phone.send_key(k);
        // baresip sends about 180 ms of event per key; leave a gap like a person would.
        std::thread::sleep(Duration::from_millis(350));
    }
}

#[test]
fn baresip_provisions_and_hears_the_welcome_prompt() {
    let mut server = Server::start();
    server.add_user(&JDOE);
    let dir = server.dir.path().to_path_buf();
    // The microphone: silence that outlasts the call (baresip hangs up when its source ends).
    let silence = dir.join("silence.wav");
    write_silence_wav(&silence, 8_000, 90);

    let mut phone = Baresip::start(&dir, &silence);
    phone.command_ok("dial", &format!("sip:8000@{}", server.sip));
    assert!(
        phone
            .wait_event("CALL_ESTABLISHED", Duration::from_secs(10))
            .is_some(),
        "the IVR did not answer baresip\n--- server log ---\n{}",
        tail(&server.log(), 100)
    );
    // The welcome prompt (2.3 s), then the ID during "enter your self-provisioning ID".
    std::thread::sleep(Duration::from_millis(3_000));
    type_keys(&mut phone, "1001#");
    std::thread::sleep(Duration::from_millis(1_500));
    type_keys(&mut phone, "4321#");
    // "This phone will be assigned to extension 1 0 0 1, press 1 to confirm ..." (7.5 s).
    std::thread::sleep(Duration::from_millis(5_500));
    type_keys(&mut phone, "1");
    // The success prompt (about 8.5 s), then the server hangs up.
    let closed = phone.wait_event("CALL_CLOSED", Duration::from_secs(30));
    assert!(
        closed.is_some(),
        "the server did not hang up after the success prompt; events: {:#?}\n--- server log ---\n{}",
        phone.events(),
        tail(&server.log(), 100)
    );
    phone.quit();

    server.assert_bound("jdoe", "1001");
    server.assert_alive();

    // What the phone heard.
    let rec_path = phone.received_recording().unwrap_or_else(|| {
        panic!(
            "baresip wrote no dump-*-dec.wav in {}",
            phone.snd_path.display()
        )
    });
    let rec = read_wav(&rec_path);
    assert_eq!(rec.rate, 8_000, "G.711 decodes at 8 kHz");
    assert!(
        rec.duration_s() > 10.0,
        "the recording is only {:.1} s for a call of about 20 s",
        rec.duration_s()
    );
    let active = active_fraction(&rec.samples, rec.rate, -45.0);
    assert!(
        active > 0.3,
        "the phone heard (nearly) nothing: {:.0} % of 20 ms frames above -45 dBFS, {:.1} dBFS RMS",
        active * 100.0,
        rms_dbfs(&rec.samples)
    );
    let welcome = read_wav(&prompt_wav("welcome"));
    // The welcome prompt is the first thing played: search the first 6 s.
    let head_len = (6 * rec.rate as usize).min(rec.samples.len());
    let (ncc, lag) = best_correlation(&rec.samples[..head_len], &welcome.samples);
    eprintln!(
        "baresip heard {:.1} s ({:.0} % active); welcome prompt NCC {ncc:.3} at {:.2} s",
        rec.duration_s(),
        active * 100.0,
        lag as f64 / f64::from(rec.rate)
    );
    // ... and after the confirmation, "this phone is now assigned to extension": searched in
    // the last 14 s (the success prompts take about 8.5 s, then the server hangs up).
    let success = read_wav(&prompt_wav("success"));
    let tail_start = rec.samples.len().saturating_sub(14 * rec.rate as usize);
    let (ncc_success, _) = best_correlation(&rec.samples[tail_start..], &success.samples);
    eprintln!("success prompt NCC {ncc_success:.3}");
    assert!(
        ncc_success >= NCC_THRESHOLD,
        "the phone did not hear the success prompt before the hang-up: NCC {ncc_success:.3}"
    );
    assert!(
        ncc >= NCC_THRESHOLD,
        "the audio baresip received does not match the welcome prompt: NCC {ncc:.3} < \
         {NCC_THRESHOLD} (best at {:.2} s); recording kept at {}",
        lag as f64 / f64::from(rec.rate),
        rec_path.display()
    );
}
