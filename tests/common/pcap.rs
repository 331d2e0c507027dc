//! RTP streams for SIPp's `play_pcap_audio`, written as classic pcap files (not pcapng):
//! Ethernet / IPv4 / UDP / RTP, microsecond timestamps, link type 1.
//!
//! Why our own: SIPp's shipped `dtmf_2833_*.pcap` are slices of one capture with fixed SSRC,
//! sequence numbers and timestamps, so playing "1001" from them repeats the same event and a
//! correct receiver hears "101" (see shared/reference/test-peers.md). Here a whole key sequence is
//! ONE continuous stream, like a phone sends it: one SSRC, sequence numbers +1 per packet (they
//! may wrap), timestamps on the 8 kHz clock, RFC 4733 event packets every 20 ms with a growing
//! duration and the marker bit on the first packet of each event, the final packet sent three
//! times with the E bit, then the gap. Optionally PCMU silence packets are interleaved in the same
//! stream (phones keep sending audio around, and some during, the events).
//!
//! SIPp replays the packets paced by their pcap timestamps, relative to the FIRST packet, and
//! rewrites only addresses and ports: leading silence without packets is therefore lost (the
//! scenarios pause before playing instead), and everything else here reaches the server as
//! written.
//!
//! The in-band variant ([`write_inband`]) is a PCMU stream whose audio carries DTMF tones (the
//! two ITU-T Q.23 frequencies, synthesised here), for calls that negotiated no telephone-event.

use super::g711::{linear_to_ulaw, ULAW_SILENCE};
use std::io::Write;
use std::path::Path;

/// One 20 ms packetisation interval at 8 kHz.
pub const TICK_MS: u32 = 20;
pub const SAMPLES_PER_TICK: u32 = 160;
/// The UDP ports written in the file. SIPp replaces them (source: its media port; destination:
/// the port of the answer's SDP), so any values work.
pub const PCAP_SRC_PORT: u16 = 40_000;
pub const PCAP_DST_PORT: u16 = 40_002;

/// What the caller types and when: keys separated by gaps, and silences.
#[derive(Debug, Clone)]
pub struct KeyPlan {
    steps: Vec<Step>,
    tone_ms: u32,
    gap_ms: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Key(char),
    Silence(u32),
}

impl Default for KeyPlan {
    fn default() -> Self {
        KeyPlan::new()
    }
}

impl KeyPlan {
    /// Keys last 100 ms (tone or event, before the end packets) with 100 ms gaps: about 4 keys
    /// a second, a brisk but ordinary typing speed (Q.24 allows up to 10/s).
    pub fn new() -> Self {
        KeyPlan {
            steps: Vec::new(),
            tone_ms: 100,
            gap_ms: 100,
        }
    }

    /// Length of each key's tone (in-band) or event (RFC 4733, before the three end packets).
    pub fn tone_ms(mut self, ms: u32) -> Self {
        assert!(ms >= TICK_MS, "a key lasts at least one packet");
        self.tone_ms = ms;
        self
    }

    /// Silence after each key.
    pub fn gap_ms(mut self, ms: u32) -> Self {
        self.gap_ms = ms;
        self
    }

    /// Types `keys` (0-9, *, #, A-D), each followed by the gap.
    pub fn keys(mut self, keys: &str) -> Self {
        for k in keys.chars() {
            assert!(
                event_code(k).is_some(),
                "{k:?} is not a DTMF key (0-9, *, #, A-D)"
            );
            self.steps.push(Step::Key(k));
            if self.gap_ms > 0 {
                self.steps.push(Step::Silence(self.gap_ms));
            }
        }
        self
    }

    /// A pause (the caller listens to a prompt).
    pub fn silence(mut self, ms: u32) -> Self {
        self.steps.push(Step::Silence(ms));
        self
    }

    /// The keys in order.
    pub fn key_string(&self) -> String {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Key(k) => Some(*k),
                Step::Silence(_) => None,
            })
            .collect()
    }

    /// The timeline in 20 ms ticks: each key's first tick, and the total length. `key_ticks` is
    /// how long one key occupies (tone, plus end packets for RFC 4733).
    fn timeline(&self, key_ticks: u32) -> (Vec<(char, u32)>, u32) {
        let mut tick = 0u32;
        let mut keys = Vec::new();
        for step in &self.steps {
            match *step {
                Step::Key(k) => {
                    keys.push((k, tick));
                    tick += key_ticks;
                }
                Step::Silence(ms) => tick += ms.div_ceil(TICK_MS),
            }
        }
        (keys, tick)
    }

    fn tone_ticks(&self) -> u32 {
        self.tone_ms.div_ceil(TICK_MS)
    }
}

/// RFC 4733 event code of a key.
pub fn event_code(key: char) -> Option<u8> {
    match key {
        '0'..='9' => Some(key as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(12 + (key as u8 - b'A')),
        _ => None,
    }
}

/// Audio packets (PCMU silence, PT 0) in the same stream as the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFill {
    /// Events only.
    None,
    /// Audio in the silences, none while an event is being sent (most phones).
    BetweenEvents,
    /// Audio every 20 ms without a break, also while events are sent (some phones do).
    Continuous,
}

/// Stream parameters of an RFC 4733 pcap.
#[derive(Debug, Clone)]
pub struct Rfc4733Options {
    /// The telephone-event payload type the call's offer uses.
    pub event_pt: u8,
    pub audio: AudioFill,
    pub ssrc: u32,
    pub first_seq: u16,
    pub first_timestamp: u32,
    /// Volume field of the events (0..=63, -dBm0).
    pub volume: u8,
}

impl Default for Rfc4733Options {
    fn default() -> Self {
        Rfc4733Options {
            event_pt: 101,
            audio: AudioFill::None,
            ssrc: 0x5E1F_9A0C,
            first_seq: 1_000,
            first_timestamp: 160_000,
            volume: 10,
        }
    }
}

/// What was written, for the test's messages.
#[derive(Debug, Clone)]
pub struct PcapSummary {
    pub packets: usize,
    pub event_packets: usize,
    pub audio_packets: usize,
    pub duration_ms: u32,
    pub keys: String,
}

/// Writes `plan` as one continuous RFC 4733 stream (see the module docs).
pub fn write_rfc4733(path: &Path, plan: &KeyPlan, opts: &Rfc4733Options) -> PcapSummary {
    assert!(opts.event_pt < 128 && opts.volume < 64);
    let tone = plan.tone_ticks();
    // The tone's packets (durations 160, 320, ..), then the final packet twice more: three
    // packets carry the E bit (RFC 4733 §2.5.1.4), 20 ms apart.
    let key_ticks = tone + 2;
    let (keys, total_ticks) = plan.timeline(key_ticks);
    let mut rtp = RtpStream::new(opts.ssrc, opts.first_seq);
    let mut audio_marker_pending = true;

    for tick in 0..total_ticks {
        let time_us = u64::from(tick) * u64::from(TICK_MS) * 1_000;
        let ts_now = opts
            .first_timestamp
            .wrapping_add(tick.wrapping_mul(SAMPLES_PER_TICK));
        let event = keys
            .iter()
            .find(|(_, start)| tick >= *start && tick < *start + key_ticks);
        if let Some(&(key, start)) = event {
            let i = tick - start; // packet index within the event
            let duration_ticks = (i + 1).min(tone);
            let end = i + 1 >= tone;
            let code = event_code(key).expect("validated in keys()");
            let mut payload = [0u8; 4];
            payload[0] = code;
            payload[1] = (if end { 0x80 } else { 0 }) | opts.volume;
            let duration = (duration_ticks * SAMPLES_PER_TICK).min(0xFFFF) as u16;
            payload[2..4].copy_from_slice(&duration.to_be_bytes());
            let event_ts = opts
                .first_timestamp
                .wrapping_add(start.wrapping_mul(SAMPLES_PER_TICK));
            rtp.push(time_us, i == 0, opts.event_pt, event_ts, &payload, true);
            if opts.audio == AudioFill::Continuous {
                let marker = std::mem::take(&mut audio_marker_pending);
                // Same capture time as the event packet: one packet of each kind per tick.
                rtp.push(time_us, marker, 0, ts_now, &[ULAW_SILENCE; 160], false);
            } else {
                // After an event the audio is a new talkspurt.
                audio_marker_pending = true;
            }
        } else if opts.audio != AudioFill::None {
            let marker = std::mem::take(&mut audio_marker_pending);
            rtp.push(time_us, marker, 0, ts_now, &[ULAW_SILENCE; 160], false);
        }
    }
    rtp.write(path, &plan.key_string(), total_ticks)
}

/// Stream parameters of an in-band (PCMU audio) pcap.
#[derive(Debug, Clone)]
pub struct InbandOptions {
    pub ssrc: u32,
    pub first_seq: u16,
    pub first_timestamp: u32,
    /// Peak level of the low-group tone, dBFS.
    pub low_dbfs: f64,
    /// Peak level of the high-group tone, dBFS (a few dB above the low group, as phones send).
    pub high_dbfs: f64,
}

impl Default for InbandOptions {
    fn default() -> Self {
        InbandOptions {
            ssrc: 0x1B2C_3D4E,
            first_seq: 20_000,
            first_timestamp: 3_200,
            low_dbfs: -12.0,
            high_dbfs: -10.0,
        }
    }
}

/// The Q.23 frequencies of a key: (low group, high group) in Hz.
pub fn dtmf_frequencies(key: char) -> Option<(f64, f64)> {
    const LOW: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
    const HIGH: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    let (row, col) = match key {
        '1' => (0, 0),
        '2' => (0, 1),
        '3' => (0, 2),
        'A' => (0, 3),
        '4' => (1, 0),
        '5' => (1, 1),
        '6' => (1, 2),
        'B' => (1, 3),
        '7' => (2, 0),
        '8' => (2, 1),
        '9' => (2, 2),
        'C' => (2, 3),
        '*' => (3, 0),
        '0' => (3, 1),
        '#' => (3, 2),
        'D' => (3, 3),
        _ => return None,
    };
    Some((LOW[row], HIGH[col]))
}

/// The linear 8 kHz signal of `plan` for in-band DTMF: tones for keys, digital silence between.
pub fn inband_samples(plan: &KeyPlan, opts: &InbandOptions) -> Vec<i16> {
    let tone = plan.tone_ticks();
    let (keys, total_ticks) = plan.timeline(tone);
    let n = (total_ticks * SAMPLES_PER_TICK) as usize;
    let mut out = vec![0i16; n];
    let a_low = 32_767.0 * 10f64.powf(opts.low_dbfs / 20.0);
    let a_high = 32_767.0 * 10f64.powf(opts.high_dbfs / 20.0);
    let tone_samples = (tone * SAMPLES_PER_TICK) as usize;
    for &(key, start) in &keys {
        let (fl, fh) = dtmf_frequencies(key).expect("validated in keys()");
        let first = (start * SAMPLES_PER_TICK) as usize;
        for i in 0..tone_samples {
            let t = i as f64 / 8_000.0;
            let v = a_low * (2.0 * std::f64::consts::PI * fl * t).sin()
                + a_high * (2.0 * std::f64::consts::PI * fh * t).sin();
            if let Some(s) = out.get_mut(first + i) {
                *s = v.round().clamp(-32_768.0, 32_767.0) as i16;
            }
        }
    }
    out
}

/// Writes `plan` as a continuous PCMU (PT 0) stream with the keys as in-band tones.
pub fn write_inband(path: &Path, plan: &KeyPlan, opts: &InbandOptions) -> PcapSummary {
    let samples = inband_samples(plan, opts);
    let mut summary = write_pcmu(
        path,
        &samples,
        opts.ssrc,
        opts.first_seq,
        opts.first_timestamp,
    );
    summary.keys = plan.key_string();
    summary
}

/// Writes 8 kHz linear audio as a continuous PCMU (PT 0) stream, 20 ms per packet (a trailing
/// partial packet is dropped).
pub fn write_pcmu(
    path: &Path,
    samples: &[i16],
    ssrc: u32,
    first_seq: u16,
    first_timestamp: u32,
) -> PcapSummary {
    let mut rtp = RtpStream::new(ssrc, first_seq);
    let ticks = samples.len() / SAMPLES_PER_TICK as usize;
    for (tick, frame) in samples.chunks_exact(SAMPLES_PER_TICK as usize).enumerate() {
        let payload: Vec<u8> = frame.iter().map(|&s| linear_to_ulaw(s)).collect();
        let ts = first_timestamp.wrapping_add((tick as u32).wrapping_mul(SAMPLES_PER_TICK));
        rtp.push(tick as u64 * 20_000, tick == 0, 0, ts, &payload, false);
    }
    rtp.write(path, "", ticks as u32)
}

/// Packets of one RTP stream (one SSRC, sequence numbers +1 per packet).
struct RtpStream {
    ssrc: u32,
    next_seq: u16,
    packets: Vec<(u64, Vec<u8>)>,
    events: usize,
    audio: usize,
}

impl RtpStream {
    fn new(ssrc: u32, first_seq: u16) -> Self {
        RtpStream {
            ssrc,
            next_seq: first_seq,
            packets: Vec::new(),
            events: 0,
            audio: 0,
        }
    }

    fn push(&mut self, time_us: u64, marker: bool, pt: u8, ts: u32, payload: &[u8], event: bool) {
        let mut p = Vec::with_capacity(12 + payload.len());
        p.push(0x80); // V=2, no padding, no extension, no CSRC
        p.push((if marker { 0x80 } else { 0 }) | (pt & 0x7F));
        p.extend_from_slice(&self.next_seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        self.next_seq = self.next_seq.wrapping_add(1);
        if event {
            self.events += 1;
        } else {
            self.audio += 1;
        }
        self.packets.push((time_us, p));
    }

    fn write(self, path: &Path, keys: &str, ticks: u32) -> PcapSummary {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(path)
                .unwrap_or_else(|e| panic!("create {}: {e}", path.display())),
        );
        f.write_all(&global_header()).expect("write pcap");
        // An arbitrary wall-clock origin; SIPp only uses the differences.
        const EPOCH_S: u64 = 1_700_000_000;
        for (i, (time_us, rtp)) in self.packets.iter().enumerate() {
            let frame = udp_frame(i as u16, PCAP_SRC_PORT, PCAP_DST_PORT, rtp);
            let mut rec = Vec::with_capacity(16);
            rec.extend_from_slice(&((EPOCH_S + time_us / 1_000_000) as u32).to_le_bytes());
            rec.extend_from_slice(&((time_us % 1_000_000) as u32).to_le_bytes());
            rec.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            rec.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            f.write_all(&rec).expect("write pcap");
            f.write_all(&frame).expect("write pcap");
        }
        f.flush().expect("flush pcap");
        PcapSummary {
            packets: self.packets.len(),
            event_packets: self.events,
            audio_packets: self.audio,
            duration_ms: ticks * TICK_MS,
            keys: keys.to_owned(),
        }
    }
}

/// Classic pcap header: magic a1b2c3d4 (little-endian file, µs), v2.4, snaplen 65535, Ethernet.
fn global_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xA1B2_C3D4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    // thiszone, sigfigs: 0
    h[16..20].copy_from_slice(&65_535u32.to_le_bytes());
    h[20..24].copy_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    h
}

/// Ethernet II + IPv4 (127.0.0.1 → 127.0.0.1) + UDP around `payload`, checksums filled in.
fn udp_frame(ip_id: u16, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let ip_len = 20 + udp_len;
    let mut f = Vec::with_capacity(14 + ip_len);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // destination MAC (locally administered)
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // source MAC
    f.extend_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    let src = [127, 0, 0, 1];
    let dst = [127, 0, 0, 1];
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[1] = 0xB8; // DSCP EF, as phones mark voice
    ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&ip_id.to_be_bytes());
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // don't fragment
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let c = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut udp = [0u8; 8];
    udp[0..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&dport.to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src);
    pseudo[4..8].copy_from_slice(&dst);
    pseudo[9] = 17;
    pseudo[10..12].copy_from_slice(&(udp_len as u16).to_be_bytes());
    let mut c = checksum(&[&pseudo, &udp, payload]);
    if c == 0 {
        c = 0xFFFF; // 0 means "no checksum" in UDP over IPv4
    }
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&udp);
    f.extend_from_slice(payload);
    f
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}
