//! Self-tests of the end-to-end harness (tests/common): they do not need the server.
//!
//! * The RFC 4733 pcap writer: parsed back with an independent reader (pcap, Ethernet, IPv4 and
//!   UDP checksums, RTP), checked event by event, and cross-checked with tshark's RTP event
//!   dissector, so a harness bug cannot pass for a server bug (or hide one).
//! * The in-band writer: the tones decoded back from the pcap by a Goertzel detector.
//! * The audio check of the baresip test: a SIPp UAS plays the welcome prompt to a real baresip;
//!   the recording must correlate with the prompt, and not with another prompt. This is where the
//!   correlation threshold of e2e_baresip comes from.

mod common;

use common::audio::{active_fraction, best_correlation, detect_dtmf, read_wav, rms_dbfs};
use common::baresip::Baresip;
use common::g711::{linear_to_ulaw, ulaw_to_linear};
use common::pcap::{
    checksum, write_inband, write_pcmu, write_rfc4733, AudioFill, InbandOptions, KeyPlan,
    Rfc4733Options,
};
use common::sipp::Sipp;
use common::{require_tool, run_bounded};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// One packet read back from a pcap: capture time and the RTP bytes.
struct Captured {
    time_us: u64,
    rtp: Vec<u8>,
}

/// An independent classic-pcap reader: validates every layer and returns the UDP payloads.
fn read_pcap(path: &Path) -> Vec<Captured> {
    let data = std::fs::read(path).expect("read pcap");
    assert!(data.len() >= 24, "pcap shorter than its header");
    assert_eq!(
        &data[0..4],
        &[0xD4, 0xC3, 0xB2, 0xA1],
        "classic pcap, µs, little endian"
    );
    assert_eq!(u16::from_le_bytes([data[4], data[5]]), 2);
    assert_eq!(u16::from_le_bytes([data[6], data[7]]), 4);
    assert_eq!(
        u32::from_le_bytes(data[20..24].try_into().unwrap()),
        1,
        "Ethernet"
    );
    let mut off = 24;
    let mut out = Vec::new();
    while off < data.len() {
        let h = &data[off..off + 16];
        let sec = u32::from_le_bytes(h[0..4].try_into().unwrap());
        let usec = u32::from_le_bytes(h[4..8].try_into().unwrap());
        let incl = u32::from_le_bytes(h[8..12].try_into().unwrap()) as usize;
        let orig = u32::from_le_bytes(h[12..16].try_into().unwrap()) as usize;
        assert_eq!(incl, orig, "no truncated packets");
        assert!(usec < 1_000_000);
        let frame = &data[off + 16..off + 16 + incl];
        off += 16 + incl;
        assert_eq!(&frame[12..14], &[0x08, 0x00], "IPv4 ethertype");
        let ip = &frame[14..];
        assert_eq!(ip[0], 0x45);
        let ip_len = u16::from_be_bytes([ip[2], ip[3]]) as usize;
        assert_eq!(ip_len, ip.len(), "IP total length");
        assert_eq!(ip[9], 17, "UDP");
        assert_eq!(checksum(&[&ip[..20]]), 0, "IPv4 header checksum");
        let udp = &ip[20..];
        let udp_len = u16::from_be_bytes([udp[4], udp[5]]) as usize;
        assert_eq!(udp_len, udp.len(), "UDP length");
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&ip[12..20]);
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
        assert_eq!(checksum(&[&pseudo, udp]), 0, "UDP checksum");
        out.push(Captured {
            time_us: u64::from(sec) * 1_000_000 + u64::from(usec),
            rtp: udp[8..].to_vec(),
        });
    }
    out
}

struct Rtp<'a> {
    marker: bool,
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: &'a [u8],
}

fn parse_rtp(p: &[u8]) -> Rtp<'_> {
    assert!(p.len() >= 12);
    assert_eq!(p[0], 0x80, "RTP v2, no padding/extension/CSRC");
    Rtp {
        marker: p[1] & 0x80 != 0,
        pt: p[1] & 0x7F,
        seq: u16::from_be_bytes([p[2], p[3]]),
        ts: u32::from_be_bytes(p[4..8].try_into().unwrap()),
        ssrc: u32::from_be_bytes(p[8..12].try_into().unwrap()),
        payload: &p[12..],
    }
}

/// Decodes the RFC 4733 events of a stream the way a receiver does: a new event is a new
/// timestamp (not the marker alone); returns the keys, and checks every event's shape.
fn decode_events(pkts: &[Captured], event_pt: u8) -> String {
    const KEYS: &[u8] = b"0123456789*#ABCD";
    let mut keys = String::new();
    let mut current: Option<(u32, u8)> = None; // (timestamp, event)
    let mut last_duration = 0u16;
    let mut ends = 0;
    let mut last_time_in_event = 0u64;
    for c in pkts {
        let r = parse_rtp(&c.rtp);
        if r.pt != event_pt {
            continue;
        }
        assert_eq!(r.payload.len(), 4);
        let (event, end, duration) = (
            r.payload[0],
            r.payload[1] & 0x80 != 0,
            u16::from_be_bytes([r.payload[2], r.payload[3]]),
        );
        if current.map(|(ts, _)| ts) != Some(r.ts) {
            if let Some((_, _)) = current {
                assert_eq!(ends, 3, "three end packets per event");
            }
            assert!(r.marker, "marker on the first packet of each event");
            current = Some((r.ts, event));
            keys.push(KEYS[event as usize] as char);
            last_duration = 0;
            ends = 0;
        } else {
            assert!(!r.marker, "marker only on the first packet of an event");
            assert_eq!(
                current.unwrap().1,
                event,
                "event code constant within an event"
            );
            assert!(
                c.time_us - last_time_in_event == 20_000,
                "event packets every 20 ms"
            );
        }
        last_time_in_event = c.time_us;
        if ends > 0 {
            assert!(end, "nothing but end packets after the first end packet");
            assert_eq!(
                duration, last_duration,
                "end packets repeat the final duration"
            );
        } else {
            assert!(duration > last_duration, "duration grows");
        }
        if end {
            ends += 1;
        }
        last_duration = duration;
    }
    if current.is_some() {
        assert_eq!(ends, 3, "three end packets on the last event");
    }
    keys
}

/// Checks one-stream properties: one SSRC, sequence +1 per packet (wrapping), capture times
/// non-decreasing, audio timestamps advance by exactly the elapsed time.
fn check_stream(pkts: &[Captured]) {
    let first = parse_rtp(&pkts[0].rtp);
    let mut prev_seq = first.seq;
    let mut prev_time = pkts[0].time_us;
    let mut prev_audio: Option<(u64, u32)> = None;
    for (i, c) in pkts.iter().enumerate() {
        let r = parse_rtp(&c.rtp);
        assert_eq!(r.ssrc, first.ssrc, "one SSRC");
        if i > 0 {
            assert_eq!(r.seq, prev_seq.wrapping_add(1), "sequence +1 at packet {i}");
            assert!(c.time_us >= prev_time);
        }
        if r.pt == 0 {
            assert_eq!(r.payload.len(), 160, "20 ms of PCMU");
            if let Some((t, ts)) = prev_audio {
                let elapsed_samples = ((c.time_us - t) / 125) as u32;
                assert_eq!(
                    r.ts.wrapping_sub(ts),
                    elapsed_samples,
                    "audio clock = 8 kHz"
                );
            }
            prev_audio = Some((c.time_us, r.ts));
        }
        prev_seq = r.seq;
        prev_time = c.time_us;
    }
}

#[test]
fn rfc4733_pcap_is_one_stream_with_distinct_repeated_digits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.pcap");
    let plan = KeyPlan::new()
        .keys("1001#")
        .silence(1500)
        .keys("4321#")
        .silence(1000)
        .keys("1");
    let s = write_rfc4733(&path, &plan, &Rfc4733Options::default());
    assert_eq!(s.keys, "1001#4321#1");
    let pkts = read_pcap(&path);
    assert_eq!(pkts.len(), s.packets);
    check_stream(&pkts);
    // "00" must stay two events: a receiver that goes by timestamps sees both.
    assert_eq!(decode_events(&pkts, 101), "1001#4321#1");
    // 100 ms tone = 5 packets, of which the last is the first of 3 end packets: 7 per key.
    assert_eq!(s.event_packets, 11 * 7);
    assert_eq!(s.audio_packets, 0);
    // Timing: the PIN's first key starts after the ID (5 keys of 7 ticks + 100 ms gaps) and
    // the 1.5 s pause.
    let first = parse_rtp(&pkts[0].rtp).ts;
    let pin_start = pkts
        .iter()
        .map(|c| parse_rtp(&c.rtp))
        .filter(|r| r.marker)
        .nth(5)
        .unwrap()
        .ts;
    assert_eq!(pin_start.wrapping_sub(first), (5 * (7 + 5) + 75) * 160);
}

#[test]
fn rfc4733_pcap_with_continuous_audio_wraps_sequence_and_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys-audio.pcap");
    let plan = KeyPlan::new().silence(200).keys("55*").silence(300);
    let opts = Rfc4733Options {
        event_pt: 96,
        audio: AudioFill::Continuous,
        first_seq: 65_530,
        first_timestamp: u32::MAX - 1_000,
        ..Rfc4733Options::default()
    };
    let s = write_rfc4733(&path, &plan, &opts);
    let pkts = read_pcap(&path);
    check_stream(&pkts);
    assert_eq!(decode_events(&pkts, 96), "55*");
    // Audio never stops: one PCMU packet per 20 ms tick over the whole plan.
    assert_eq!(s.audio_packets as u32, s.duration_ms / 20);
    assert!(
        pkts.iter().any(|c| parse_rtp(&c.rtp).seq == 0),
        "sequence wrapped"
    );
    let audio_markers = pkts
        .iter()
        .map(|c| parse_rtp(&c.rtp))
        .filter(|r| r.pt == 0 && r.marker)
        .count();
    assert_eq!(audio_markers, 1, "one talkspurt");
}

#[test]
fn rfc4733_pcap_with_audio_between_events_has_no_audio_during_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys-gaps.pcap");
    let plan = KeyPlan::new().silence(100).keys("77").silence(100);
    write_rfc4733(
        &path,
        &plan,
        &Rfc4733Options {
            audio: AudioFill::BetweenEvents,
            ..Rfc4733Options::default()
        },
    );
    let pkts = read_pcap(&path);
    check_stream(&pkts);
    assert_eq!(decode_events(&pkts, 101), "77");
    // Within an event's span (first packet to last end packet), no audio packet.
    let rtps: Vec<Rtp> = pkts.iter().map(|c| parse_rtp(&c.rtp)).collect();
    let mut in_event = false;
    let mut ends = 0;
    for r in &rtps {
        if r.pt == 101 {
            in_event = true;
            if r.payload[1] & 0x80 != 0 {
                ends += 1;
                if ends == 3 {
                    in_event = false;
                    ends = 0;
                }
            }
        } else {
            assert!(!in_event, "audio packet inside an event");
        }
    }
}

/// tshark's RTP event dissector agrees: same events, three end packets each, same durations.
#[test]
fn tshark_reads_the_rfc4733_pcap() {
    let tshark = require_tool("tshark", "tshark");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tshark.pcap");
    let plan = KeyPlan::new().keys("1001#").silence(500).keys("9");
    write_rfc4733(&path, &plan, &Rfc4733Options::default());
    let mut cmd = Command::new(tshark);
    cmd.arg("-r")
        .arg(&path)
        .args(["-d", "udp.port==40002,rtp"])
        .args(["-Y", "rtpevent.end_of_event==1", "-T", "fields"])
        .args([
            "-e",
            "rtp.timestamp",
            "-e",
            "rtpevent.event_id",
            "-e",
            "rtpevent.duration",
        ])
        .env("HOME", dir.path()); // tshark wants a writable profile dir
    let out = run_bounded(cmd, Duration::from_secs(60));
    assert!(
        out.success(),
        "tshark failed: {}\n{}",
        out.stderr,
        out.stdout
    );
    let rows: Vec<Vec<String>> = out
        .stdout
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    // 6 events x 3 end packets.
    assert_eq!(rows.len(), 18, "tshark output:\n{}", out.stdout);
    let mut events = Vec::new();
    for chunk in rows.chunks(3) {
        assert!(
            chunk.iter().all(|r| r == &chunk[0]),
            "3 identical end packets: {chunk:?}"
        );
        assert_eq!(chunk[0][2], "800", "100 ms = 800 samples");
        events.push(chunk[0][1].clone());
    }
    assert_eq!(events, ["1", "0", "0", "1", "11", "9"]);
    let ts: Vec<u64> = rows
        .iter()
        .step_by(3)
        .map(|r| r[0].parse().unwrap())
        .collect();
    assert!(
        ts.windows(2).all(|w| w[1] > w[0]),
        "distinct timestamps: {ts:?}"
    );
}

#[test]
fn inband_pcap_carries_detectable_tones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inband.pcap");
    let plan = KeyPlan::new()
        .silence(200)
        .keys("1001#")
        .silence(400)
        .keys("4321#*0");
    let s = write_inband(&path, &plan, &InbandOptions::default());
    let pkts = read_pcap(&path);
    check_stream(&pkts);
    assert_eq!(pkts.len(), s.packets);
    let samples: Vec<f32> = pkts
        .iter()
        .flat_map(|c| parse_rtp(&c.rtp).payload.to_vec())
        .map(|b| f32::from(ulaw_to_linear(b)) / 32_768.0)
        .collect();
    assert_eq!(detect_dtmf(&samples), "1001#4321#*0");
    // The silence between keys is digital silence.
    assert!(rms_dbfs(&samples[..1_600]) < -90.0);
}

#[test]
fn ulaw_round_trip_is_within_quantisation_error() {
    for x in (-32_768i32..=32_767).step_by(7) {
        let x = x as i16;
        let y = ulaw_to_linear(linear_to_ulaw(x));
        let err = (i32::from(x) - i32::from(y)).abs();
        // µ-law steps grow with the level: about 1/16 of the segment, at most 1024.
        let bound = (i32::from(x).abs() / 16).max(8) + 8;
        assert!(err <= bound.min(1_100), "{x} -> {y}");
    }
    assert_eq!(linear_to_ulaw(0), 0xFF);
}

#[test]
fn ready_line_and_device_json_parse() {
    use common::server::{parse_devices, parse_ready_line};
    assert_eq!(
        parse_ready_line("SIP listening on 127.0.0.1:40123 (udp+tcp)"),
        Some("127.0.0.1:40123".parse().unwrap())
    );
    assert_eq!(parse_ready_line("SIP listening on 127.0.0.1:40123"), None);
    let d = parse_devices(
        r#"[{"id":1,"mac":"0004F2A1B2C3","device_name":null,"vendor":"Cisco","model":"CP8845",
             "user_agent":"Cisco-CP8845/14.2.1","sip_identity":"e2e@127.0.0.1","owner":"jdoe",
             "state":"provisioned","lines":[{"position":1,"number":"1001"}]}]"#,
    )
    .unwrap();
    assert_eq!(d[0].owner.as_deref(), Some("jdoe"));
    assert_eq!(d[0].lines[0].number, "1001");
    assert!(
        parse_devices(r#"[{"owner":null}]"#).is_err(),
        "lines are required"
    );
    assert_eq!(
        common::server::strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[34mDEBUG\u{1b}[0m x"),
        "2026 DEBUG x"
    );
}

/// A SIPp UAS plays the welcome prompt (through our PCMU writer) to a real baresip, which
/// records what it decodes. Measured here (see e2e_baresip for how the threshold follows):
/// the recording correlates with the welcome prompt at about 0.99 (G.711 twice is nearly
/// transparent), while another prompt of similar length (try_again, enter_pin) peaks far lower.
#[test]
fn baresip_records_what_the_far_end_plays() {
    require_tool("sipp", "sip-tester");
    require_tool("baresip", "baresip");
    let dir = tempfile::tempdir().unwrap();
    let welcome = read_wav(&common::prompt_wav("welcome"));
    assert_eq!(welcome.rate, 8_000);
    let mut samples = vec![0i16; 4_000];
    samples.extend(welcome.samples.iter().map(|&v| (v * 32_768.0) as i16));
    samples.extend(vec![0i16; 8_000]);
    let pcap = dir.path().join("welcome.pcap");
    write_pcmu(&pcap, &samples, 0x0BAD_CAFE, 7, 12_345);

    let uas = Sipp::new("uas_play_pcap.xml")
        .key("pcap", pcap.display())
        .timeout_s(40)
        .start(None, dir.path());
    let silence = dir.path().join("silence.wav");
    common::audio::write_silence_wav(&silence, 8_000, 30);
    let mut phone = Baresip::start(dir.path(), &silence);
    phone.command_ok("dial", &format!("sip:uas@127.0.0.1:{}", uas.sip_port));
    assert!(
        phone
            .wait_event("CALL_ESTABLISHED", Duration::from_secs(10))
            .is_some(),
        "baresip did not establish the call to the SIPp UAS"
    );
    std::thread::sleep(Duration::from_millis(
        (samples.len() as u64 * 1_000 / 8_000) + 1_000,
    ));
    phone.command_ok("hangup", "");
    let _ = phone.wait_event("CALL_CLOSED", Duration::from_secs(5));
    phone.quit();
    let outcome = uas.finish();
    outcome.assert_success("SIPp UAS playing the welcome prompt");

    let rec_path = phone
        .received_recording()
        .unwrap_or_else(|| panic!("no dump-*-dec.wav in {}", phone.snd_path.display()));
    let rec = read_wav(&rec_path);
    assert_eq!(rec.rate, 8_000, "PCMU is decoded at 8 kHz");
    assert!(
        active_fraction(&rec.samples, rec.rate, -45.0) > 0.2,
        "the recording is (nearly) silent: {:.1} dBFS",
        rms_dbfs(&rec.samples)
    );
    let (same, lag) = best_correlation(&rec.samples, &welcome.samples);
    let other = read_wav(&common::prompt_wav("enter_pin"));
    let (different, _) = best_correlation(&rec.samples, &other.samples);
    eprintln!(
        "baresip recording {:.2} s: NCC with welcome {same:.3} at {:.3} s; with enter_pin \
         {different:.3}",
        rec.duration_s(),
        lag as f64 / 8_000.0
    );
    assert!(
        same > 0.9,
        "the recording is not the played prompt: NCC {same:.3}"
    );
    assert!(
        different < 0.5,
        "a different prompt must not match: NCC {different:.3}"
    );
}
