//! The load generator (`selfprov-load`) against the real server: a small run of concurrent
//! calls with RFC 4733 keys, checked from both ends.
//!
//! From the load generator's JSON line: every call attempted and answered, none failed, every
//! call ended by our BYE at the end of the hold, the server's RTP received at 50 packets a
//! second with no loss and (almost) no packet skipped by its pacer, every scripted key sent, the server's CPU and RSS read from `/proc`.
//! From the server's debug log: each call's keys were recognised once each (the RFC 4733
//! stream the load generator writes is one the IVR understands, audio and events interleaved).

mod common;

use common::server::{Server, ServerOptions, JDOE};
use common::{run_bounded, tail};
use std::process::Command;
use std::time::Duration;

const CALLS: usize = 6;
const KEYS: &str = "1001#";

/// The PID of the `selfprov serve` started with `config` (the harness keeps its `Child`
/// private, so it is found by its command line).
fn server_pid(config: &std::path::Path) -> u32 {
    let needle = config.to_string_lossy().to_string();
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "serve") && args.contains(&needle) {
            return pid;
        }
    }
    panic!("no `selfprov serve --config {needle}` process found");
}

/// Runs `selfprov-load` (bounded in time), checks it succeeded, and returns its JSON report
/// with a context string (its output and the server's log) for assertion messages.
fn run_load(cmd: Command, limit: Duration, server: &Server) -> (serde_json::Value, String) {
    let out = run_bounded(cmd, limit);
    let ctx = format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}\n--- server log ---\n{}",
        out.status,
        out.stdout,
        out.stderr,
        tail(&server.log(), 80)
    );
    assert!(out.success(), "selfprov-load failed: {ctx}");
    let line = out
        .stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line: {ctx}"));
    let r: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON ({e}): {ctx}"));
    (r, ctx)
}

#[test]
fn concurrent_calls_with_rfc4733_keys() {
    let server = Server::start_with(&ServerOptions::default());
    server.add_user(&JDOE);
    let pid = server_pid(&server.config_path);

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_selfprov-load"));
    cmd.args(["--target", &server.sip.to_string()])
        .args(["--extension", "8000"])
        .args(["--calls", &CALLS.to_string()])
        .args(["--rate", "20"])
        .args(["--hold", "4s"])
        .args(["--digits", KEYS])
        .args(["--digit-pauses", "1s"])
        .args(["--server-pid", &pid.to_string()])
        .args(["--max-time", "30s"])
        .args(["--label", "tests/loadgen"])
        .arg("--json");
    let (r, ctx) = run_load(cmd, Duration::from_secs(60), &server);
    let n = |k: &str| {
        r.get(k)
            .and_then(|v| v.as_f64())
            .unwrap_or_else(|| panic!("{k} missing or not a number: {ctx}"))
    };

    assert_eq!(n("calls_attempted"), CALLS as f64, "{ctx}");
    assert_eq!(n("calls_answered"), CALLS as f64, "{ctx}");
    assert_eq!(n("calls_failed"), 0.0, "{ctx}");
    assert_eq!(
        r["ended_by"]["our_bye"].as_u64(),
        Some(CALLS as u64),
        "every call lasts its hold and ends by our BYE: {ctx}"
    );
    assert_eq!(n("sip_unparseable"), 0.0, "{ctx}");

    // RTP: 50 packets a second from each call, nothing missing, jitter measured.
    assert_eq!(n("calls_without_rtp"), 0.0, "{ctx}");
    let pps_min = n("rtp_pps_min");
    let pps_mean = n("rtp_pps_mean");
    assert!(
        (48.0..=52.0).contains(&pps_min) && (49.0..=51.0).contains(&pps_mean),
        "RTP at 50 pps per call (min {pps_min}, mean {pps_mean}): {ctx}"
    );
    // Four seconds of hold: at least ~3.5 s of packets per call.
    assert!(n("rtp_received") >= (CALLS * 175) as f64, "{ctx}");
    assert_eq!(n("rtp_lost"), 0.0, "loopback loses nothing: {ctx}");
    assert!(
        n("rtp_sender_skipped_percent") <= 2.0,
        "the server keeps its 20 ms clock (packets skipped by its pacer): {ctx}"
    );
    let dev = &r["rtp_deviation"];
    assert!(
        dev["samples"].as_u64().unwrap_or(0) >= (CALLS * 170) as u64
            && dev["p50_ms"].as_f64().is_some_and(|v| v < 20.0),
        "inter-arrival deviation measured: {ctx}"
    );

    // Keys: all sent, and the server recognised each exactly once per call.
    let keys = KEYS.chars().count();
    assert_eq!(n("digits_scripted"), (CALLS * keys) as f64, "{ctx}");
    assert_eq!(n("digits_sent"), (CALLS * keys) as f64, "{ctx}");
    assert_eq!(n("calls_all_digits_sent"), CALLS as f64, "{ctx}");
    let log = server.log();
    let recognised = log
        .lines()
        .filter(|l| l.contains("selfprov-load") && l.contains("DTMF via RFC 4733"))
        .count();
    assert_eq!(
        recognised,
        CALLS * keys,
        "the server recognised each key once: {ctx}"
    );

    // The server's usage was read over the steady-state window; the load generator's own CPU
    // is reported.
    let server_usage = &r["server"];
    assert!(
        server_usage["cpu_percent"]
            .as_f64()
            .is_some_and(|v| v >= 0.0)
            && server_usage["rss_mb"].as_f64().is_some_and(|v| v > 1.0),
        "server CPU and RSS over the window: {ctx}"
    );
    assert!(n("steady_window_s") > 1.0, "{ctx}");
    assert!(n("loadgen_cpu_percent") >= 0.0, "{ctx}");
}

/// Phone mode: two new phones fetch their guest configs, register (401 answered), dial the IVR
/// (407 answered), provision two users with ID, PIN and confirmation, and get the resync NOTIFY
/// after the server hangs up; the load generator times last key → NOTIFY and its parts.
#[test]
fn phone_mode_provisions_and_times_the_resync_notify() {
    let server = Server::start_with_autoreg(r#"["SHA-256", "MD5"]"#, vec![]);
    server.add_user(&JDOE);
    server.add_user(&common::server::User {
        user_id: "asmith",
        self_provisioning_id: "1002",
        extension: "1002",
        ..JDOE
    });
    let prov = server
        .provisioning
        .expect("the server printed its provisioning address");

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_selfprov-load"));
    cmd.args(["--target", &server.sip.to_string()])
        .args(["--register", &prov.to_string()])
        .args(["--calls", "2"])
        .args(["--rate", "2"])
        .args(["--hold", "40s"])
        .args(["--digits", "{n}#,4321#,1"])
        .args(["--digit-pauses", "3s,1500ms,5500ms"])
        .args(["--index-base", "1001"])
        .args(["--notify-timeout", "10s"])
        .args(["--max-time", "60s"])
        .arg("--json");
    let (r, ctx) = run_load(cmd, Duration::from_secs(90), &server);
    assert_eq!(r["calls_failed"].as_u64(), Some(0), "{ctx}");
    assert_eq!(
        r["ended_by"]["server_bye"].as_u64(),
        Some(2),
        "the server hangs up after the success prompt: {ctx}"
    );
    let p = &r["phone"];
    assert_eq!(p["registered"].as_u64(), Some(2), "{ctx}");
    assert_eq!(p["notify_expected"].as_u64(), Some(2), "{ctx}");
    assert_eq!(p["notify_received"].as_u64(), Some(2), "{ctx}");
    assert_eq!(
        p["notify_events"]["check-sync;reboot=true"].as_u64(),
        Some(2),
        "Yealink's resync event: {ctx}"
    );
    let ms = |k: &str, q: &str| {
        p[k][q]
            .as_f64()
            .unwrap_or_else(|| panic!("phone.{k}.{q} missing: {ctx}"))
    };
    // The NOTIFY follows the closing prompts (the phone reboots once the caller has heard
    // them), and comes quickly after the hang-up.
    assert!(
        ms("key_to_notify", "p50_ms") >= f64::from(common::SUCCESS_PROMPT_MIN_MS),
        "{ctx}"
    );
    assert!(ms("bye_to_notify", "max_ms") < 2_000.0, "{ctx}");
    assert!(ms("key_to_audio", "max_ms") < 2_000.0, "{ctx}");
    assert!(
        ms("audio_to_bye", "p50_ms") >= f64::from(common::SUCCESS_PROMPT_MIN_MS) - 1_000.0,
        "{ctx}"
    );
    // Both phones now carry their user's extension as line 1.
    let mut bound: Vec<(String, String)> = server
        .devices()
        .into_iter()
        .map(|d| {
            (
                d.owner.unwrap_or_default(),
                d.lines
                    .first()
                    .map(|l| l.number.clone())
                    .unwrap_or_default(),
            )
        })
        .collect();
    bound.sort();
    assert_eq!(
        bound,
        vec![
            ("asmith".to_string(), "1002".to_string()),
            ("jdoe".to_string(), "1001".to_string())
        ],
        "{ctx}"
    );
}
