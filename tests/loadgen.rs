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
    let out = run_bounded(cmd, Duration::from_secs(60));
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
