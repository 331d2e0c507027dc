//! Criterion micro-benchmarks of the per-call and per-packet hot paths (issue 6):
//!
//! | group | what one iteration is |
//! |---|---|
//! | `sip_parse` | parse one real phone message (`tests/fixtures/sip/phones/`) |
//! | `sip_serialise` | serialise the parsed message again (`Message::to_bytes`) |
//! | `sip_endpoint` | a fresh INVITE into the UA core (100 + `Incoming`), and a retransmitted INVITE matched to its transaction among 1,000 live calls |
//! | `sdp` | parse a phone's offer, negotiate, write the answer |
//! | `rtp` | build one 20 ms PCMU packet; parse one |
//! | `g711` | encode 160 samples (one 20 ms frame) to mu-law and A-law |
//! | `dtmf` | the in-band (Goertzel) detector on a 20 ms frame; one RFC 4733 packet into the receiver |
//! | `ivr` | one digit into the dialogue state machine; a whole provisioning dialogue |
//!
//! Run: `cargo bench --bench micro` (or `-- --warm-up-time 1 --measurement-time 2` for a quick
//! pass). The figures are recorded in `docs/performance.md`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use selfprov::config::AuthMode;
use selfprov::ivr::{AuthOutcome, Event, Ivr, IvrSettings, Outcome, UserInfo};
use selfprov::media::dtmf::inband::InbandDetector;
use selfprov::media::dtmf::rfc4733::Rfc4733Receiver;
use selfprov::media::g711::Codec;
use selfprov::media::rtp::{self, RtpSender};
use selfprov::media::sdp::{self, LocalMedia};
use selfprov::sip::endpoint::{Endpoint, EndpointConfig, Peer, Transport};
use selfprov::sip::message::{parse, Message};

/// The phone fixtures benchmarked: one INVITE per vendor plus the in-dialog messages a call
/// carries (ACK, BYE, INFO) and a keep-alive OPTIONS.
const PHONE_FIXTURES: &[&str] = &[
    "yealink_t46s_invite.sip",
    "cisco_cp8851_invite.sip",
    "polycom_vvx411_register.sip",
    "snom_d785_invite.sip",
    "yealink_ack.sip",
    "yealink_bye.sip",
    "yealink_info_dtmf_relay.sip",
    "grandstream_options_keepalive.sip",
];

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sip/phones")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sip_parse_serialise(c: &mut Criterion) {
    let mut g = c.benchmark_group("sip_parse");
    for name in PHONE_FIXTURES {
        let bytes = fixture(name);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(name.trim_end_matches(".sip"), |b| {
            b.iter(|| parse(black_box(&bytes)).expect("fixture parses"))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("sip_serialise");
    for name in PHONE_FIXTURES {
        let msg = parse(&fixture(name)).expect("fixture parses");
        g.bench_function(name.trim_end_matches(".sip"), |b| {
            b.iter(|| black_box(&msg).to_bytes())
        });
    }
    g.finish();
}

const PHONE: &str = "198.51.100.7:5062";

fn endpoint() -> Endpoint {
    Endpoint::new(EndpointConfig {
        local_addr: "203.0.113.10:5060".parse().expect("address"),
        ivr_extensions: vec!["*99".into(), "8000".into()],
        user_agent: "selfprov-bench".into(),
        ..EndpointConfig::default()
    })
}

fn udp_peer() -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: PHONE.parse::<SocketAddr>().expect("address"),
        conn: None,
    }
}

/// Drains everything the endpoint wants done; returns how many datagrams and events it had.
fn drain(ep: &mut Endpoint) -> (usize, usize) {
    let (mut t, mut e) = (0, 0);
    while let Some(tx) = ep.poll_transmit() {
        black_box(tx);
        t += 1;
    }
    while let Some(ev) = ep.poll_event() {
        black_box(ev);
        e += 1;
    }
    (t, e)
}

/// The Yealink INVITE with its Call-ID, From tag and branch made unique by `n`.
fn invite_variant(template: &str, n: usize) -> Vec<u8> {
    template
        .replace("0_2356815342@", &format!("{n}_2356815342@"))
        .replace("tag=2104583412", &format!("tag={n}x2104583412"))
        .replace(
            "branch=z9hG4bK-sbc-7a1f09c2",
            &format!("branch=z9hG4bK-sbc-{n}"),
        )
        .into_bytes()
}

fn sip_endpoint(c: &mut Criterion) {
    let invite = fixture("yealink_t46s_invite.sip");
    let template = String::from_utf8(invite.clone()).expect("fixture is UTF-8");
    let mut g = c.benchmark_group("sip_endpoint");

    // A new call: parse, validate, create the server transaction and the call, 100 Trying,
    // `Incoming`. A fresh endpoint per iteration so every INVITE is new (setup not timed).
    g.bench_function("invite_new_call", |b| {
        b.iter_batched_ref(
            endpoint,
            |ep| {
                ep.handle_input(Instant::now(), black_box(&invite), udp_peer());
                let (t, e) = drain(ep);
                assert_eq!((t, e), (1, 1), "100 Trying and Incoming");
            },
            BatchSize::SmallInput,
        )
    });

    // Transaction matching: 1,000 calls are waiting for the layer's answer; a retransmission
    // of one of their INVITEs must be matched to its transaction (and answered with the last
    // provisional response) without creating a call.
    const LIVE: usize = 1_000;
    let mut ep = endpoint();
    let now = Instant::now();
    for n in 0..LIVE {
        ep.handle_input(now, &invite_variant(&template, n), udp_peer());
    }
    let (t, e) = drain(&mut ep);
    assert_eq!((t, e), (LIVE, LIVE), "one 100 and one Incoming per call");
    let retransmit = invite_variant(&template, LIVE / 2);
    g.bench_function("invite_retransmission_1000_calls", |b| {
        b.iter(|| {
            ep.handle_input(now, black_box(&retransmit), udp_peer());
            let (t, e) = drain(&mut ep);
            debug_assert_eq!(e, 0, "a retransmission is not a new call");
            t
        })
    });
    assert_eq!(ep.call_count(), LIVE, "retransmissions created no call");
    g.finish();
}

fn sdp_answer(c: &mut Criterion) {
    let Ok(Message::Request(invite)) = parse(&fixture("yealink_t46s_invite.sip")) else {
        panic!("the Yealink INVITE is a request");
    };
    let body = invite.body.clone();
    let local = LocalMedia {
        addr: "203.0.113.10".parse().expect("address"),
        port: 30_000,
        session_id: 42,
        session_version: 1,
    };
    let mut g = c.benchmark_group("sdp");
    g.bench_function("parse_negotiate_answer", |b| {
        b.iter(|| {
            let remote = sdp::parse_remote(black_box(&body)).expect("offer parses");
            let n = sdp::negotiate(&remote, &[]).expect("PCMU is offered");
            sdp::build_answer(&local, &n)
        })
    });
    let remote = sdp::parse_remote(&body).expect("offer parses");
    let n = sdp::negotiate(&remote, &[]).expect("PCMU is offered");
    g.bench_function("build_answer_only", |b| {
        b.iter(|| sdp::build_answer(black_box(&local), black_box(&n)))
    });
    g.finish();
}

fn rtp_packets(c: &mut Criterion) {
    let payload = [0xFFu8; 160];
    let mut sender = RtpSender::with_initial(0x1234_5678, 1, 0);
    let mut out = Vec::with_capacity(rtp::HEADER_LEN + payload.len());
    let mut g = c.benchmark_group("rtp");
    g.bench_function("build_pcmu_20ms", |b| {
        b.iter(|| {
            sender.build(0, false, black_box(&payload), &mut out);
            sender.advance_timestamp(160);
            out.len()
        })
    });
    let packet = out.clone();
    g.bench_function("parse_pcmu_20ms", |b| {
        b.iter(|| rtp::parse(black_box(&packet)).map(|p| p.payload.len()))
    });
    g.finish();
}

/// 20 ms of a 440 Hz tone at -10 dBFS, 8 kHz.
fn tone_frame() -> [i16; 160] {
    let mut f = [0i16; 160];
    for (n, s) in f.iter_mut().enumerate() {
        let t = n as f32 / 8000.0;
        *s = (10_000.0 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()) as i16;
    }
    f
}

/// 20 ms of DTMF '5' (770 + 1336 Hz), each tone at about -10 dBm0.
fn dtmf_frame(offset: usize) -> [i16; 160] {
    let mut f = [0i16; 160];
    for (n, s) in f.iter_mut().enumerate() {
        let t = (n + offset) as f32 / 8000.0;
        let v = 7_000.0 * (2.0 * std::f32::consts::PI * 770.0 * t).sin()
            + 7_000.0 * (2.0 * std::f32::consts::PI * 1336.0 * t).sin();
        *s = v as i16;
    }
    f
}

fn g711_encode(c: &mut Criterion) {
    let frame = tone_frame();
    let mut out = Vec::with_capacity(160);
    let mut g = c.benchmark_group("g711");
    g.throughput(Throughput::Elements(160));
    for codec in [Codec::Pcmu, Codec::Pcma] {
        g.bench_function(format!("encode_20ms_{}", codec.name()), |b| {
            b.iter(|| {
                out.clear();
                codec.encode(black_box(&frame), &mut out);
                out.len()
            })
        });
    }
    g.finish();
}

fn dtmf(c: &mut Criterion) {
    let mut g = c.benchmark_group("dtmf");
    let speech = tone_frame();
    let mut det = InbandDetector::new();
    g.bench_function("inband_20ms_tone_no_digit", |b| {
        b.iter(|| det.process(black_box(&speech)))
    });
    // A held key: the detector runs through its hit/hold path on every frame.
    let frames: Vec<[i16; 160]> = (0..50).map(|i| dtmf_frame(i * 160)).collect();
    let mut det = InbandDetector::new();
    let mut i = 0usize;
    g.bench_function("inband_20ms_dtmf_held", |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            det.process(black_box(&frames[i]))
        })
    });

    // One RFC 4733 update packet of a held key (same event timestamp: absorbed).
    let mut rx = Rfc4733Receiver::new();
    let mut seq = 1u16;
    let mut duration = 160u16;
    assert_eq!(rx.on_packet(seq, 8000, true, &[5, 10, 0, 160]), Some('5'));
    g.bench_function("rfc4733_update_packet", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            duration = duration.wrapping_add(160).max(160);
            let [hi, lo] = duration.to_be_bytes();
            rx.on_packet(seq, 8000, false, black_box(&[5, 10, hi, lo]))
        })
    });
    g.finish();
}

fn ivr_step(c: &mut Criterion) {
    let settings = IvrSettings {
        auth_mode: AuthMode::SecureUsers,
        first_digit_timeout: Duration::from_secs(10),
        inter_digit_timeout: Duration::from_secs(5),
        max_attempts: 3,
        max_digits: 20,
    };
    let user = UserInfo {
        user_id: "jdoe".into(),
        extension: "1001".into(),
        selfprov_enabled: true,
    };
    let mut g = c.benchmark_group("ivr");

    // One key while collecting the ID (re-arms the inter-digit timer). The entry is submitted
    // with '#' and restarted every 10 keys so it never reaches max_digits.
    let mut ivr = Ivr::new(settings.clone());
    ivr.handle(Event::Start);
    ivr.handle(Event::PlaybackFinished);
    let mut out = Vec::with_capacity(8);
    let mut k = 0u32;
    g.bench_function("digit_step", |b| {
        b.iter(|| {
            out.clear();
            k += 1;
            if k % 10 == 0 {
                // '*' clears the entry: keeps the machine in collect_id below max_digits.
                ivr.handle_into(Event::Digit('*'), &mut out);
            } else {
                ivr.handle_into(black_box(Event::Digit('1')), &mut out);
            }
            out.len()
        })
    });
    assert_eq!(
        ivr.state_name(),
        "collect_id",
        "the bench stayed in collect_id"
    );

    // A whole successful provisioning dialogue: 17 events, Start to HangUp.
    let dialogue = || {
        let mut ivr = Ivr::new(settings.clone());
        let mut out = Vec::with_capacity(8);
        ivr.handle_into(Event::Start, &mut out);
        ivr.handle_into(Event::PlaybackFinished, &mut out);
        for d in "1001#".chars() {
            ivr.handle_into(Event::Digit(d), &mut out);
        }
        ivr.handle_into(Event::UserLookup(Some(user.clone())), &mut out);
        ivr.handle_into(Event::PlaybackFinished, &mut out);
        for d in "4321#".chars() {
            ivr.handle_into(Event::Digit(d), &mut out);
        }
        ivr.handle_into(Event::AuthResult(AuthOutcome::User), &mut out);
        ivr.handle_into(Event::PlaybackFinished, &mut out);
        ivr.handle_into(Event::Digit('1'), &mut out);
        ivr.handle_into(Event::ProvisionResult(Ok(())), &mut out);
        ivr.handle_into(Event::PlaybackFinished, &mut out);
        (ivr, out.len())
    };
    let (done, _) = dialogue();
    assert!(
        matches!(done.outcome(), Some(Outcome::Provisioned { .. })) && done.is_finished(),
        "the scripted dialogue provisions and hangs up: {:?}",
        done.outcome()
    );
    g.bench_function("full_provisioning_dialogue", |b| b.iter(|| dialogue().1));
    g.finish();
}

criterion_group!(
    benches,
    sip_parse_serialise,
    sip_endpoint,
    sdp_answer,
    rtp_packets,
    g711_encode,
    dtmf,
    ivr_step
);
criterion_main!(benches);
