//! One simulated caller: the SIP requests it writes (INVITE with a PCMU + telephone-event
//! offer, ACK, BYE, and the 200 it answers a server BYE with), its digit script, and the RTP
//! stream it sends, in which RFC 4733 events replace the audio packets while a key is down.
//!
//! The stream is one RTP stream (one SSRC, one sequence space): packet `p` (counted from the
//! start of media, one per 20 ms) is either silence PCMU with timestamp `base + 160 p`, or,
//! while an event is on, a telephone-event packet carrying the event's start timestamp
//! (RFC 4733 §2.3.1, §2.5.1.2): the first with the marker bit, then updates with a growing
//! duration, then three end packets (E bit, final duration; §2.5.1.4). Audio resumes with the
//! timestamp of the real time, so sequence numbers stay consecutive and timestamps monotonic.

use selfprov::media::dtmf::char_to_event;
use selfprov::media::rtp::RtpSender;
use std::net::SocketAddr;
use std::time::Duration;

/// Samples per 20 ms packet at 8 kHz.
pub const SAMPLES: u32 = 160;
/// Packet interval.
pub const PTIME: Duration = Duration::from_millis(20);
/// RFC 4733 §2.5.1.4: the end packet is sent three times.
pub const END_PACKETS: u64 = 3;
/// Volume field of our events: -10 dBm0 (RFC 4733 §2.3.4; typical phones send 10).
const VOLUME: u8 = 10;

/// One key press, in packets from the start of media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPress {
    pub start: u64,
    pub event: u8,
    /// Packets with the key down (each adds 160 to the duration); the end packets follow.
    pub down: u64,
}

/// The digit script of one call: key presses in time order, none overlapping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    pub keys: Vec<KeyPress>,
}

/// How keys are timed: pause before each group (the last pause repeats), key-down time and the
/// silence between keys of one group.
#[derive(Debug, Clone)]
pub struct Timing {
    pub pauses: Vec<Duration>,
    pub key_down: Duration,
    pub key_gap: Duration,
}

fn packets(d: Duration) -> u64 {
    (d.as_micros() / PTIME.as_micros()) as u64
}

impl Script {
    /// Builds the script for groups like `["1001#", "4321#", "1"]`. Characters that are not
    /// DTMF keys are refused.
    pub fn new(groups: &[String], timing: &Timing) -> Result<Script, String> {
        let down = packets(timing.key_down).max(1);
        let gap = packets(timing.key_gap);
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        for (i, group) in groups.iter().enumerate() {
            let pause = timing
                .pauses
                .get(i)
                .or(timing.pauses.last())
                .copied()
                .unwrap_or_default();
            cursor += packets(pause);
            for (j, c) in group.chars().enumerate() {
                let event = char_to_event(c)
                    .ok_or_else(|| format!("{c:?} in {group:?} is not a DTMF key"))?;
                if j > 0 {
                    cursor += gap;
                }
                keys.push(KeyPress {
                    start: cursor,
                    event,
                    down,
                });
                cursor += down + END_PACKETS;
            }
        }
        Ok(Script { keys })
    }

    /// Packets from the start of media to the last end packet.
    pub fn len_packets(&self) -> u64 {
        self.keys
            .last()
            .map_or(0, |k| k.start + k.down + END_PACKETS)
    }
}

/// What packet `p` of the stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet {
    Audio,
    /// `k`-th packet (0-based) of key press `index`.
    Event {
        index: usize,
        k: u64,
    },
}

/// The sending side of one call's RTP: the script cursor and the header state.
#[derive(Debug)]
pub struct MediaTx {
    pub rtp: RtpSender,
    base_ts: u32,
    te_pt: Option<u8>,
    next_key: usize,
    /// Key presses whose last end packet went out.
    pub keys_sent: u64,
    pub packets_sent: u64,
    buf: Vec<u8>,
}

/// Digital silence in mu-law: one shared payload for every call.
static SILENCE: [u8; SAMPLES as usize] = [0xFF; SAMPLES as usize];

impl MediaTx {
    pub fn new(te_pt: Option<u8>) -> MediaTx {
        let rtp = RtpSender::new();
        let base_ts = rtp.timestamp;
        MediaTx {
            rtp,
            base_ts,
            te_pt,
            next_key: 0,
            keys_sent: 0,
            packets_sent: 0,
            buf: Vec::with_capacity(12 + SAMPLES as usize),
        }
    }

    /// Classifies packet `p`: audio, or a packet of the current key press.
    pub fn classify(&self, script: &Script, p: u64) -> Packet {
        if self.te_pt.is_none() {
            return Packet::Audio;
        }
        match script.keys.get(self.next_key) {
            Some(key) if p >= key.start && p < key.start + key.down + END_PACKETS => {
                Packet::Event {
                    index: self.next_key,
                    k: p - key.start,
                }
            }
            _ => Packet::Audio,
        }
    }

    /// Builds packet `p` (packets are built in increasing `p`; a `p` that skips ahead past a
    /// key press abandons it, which is then not counted as sent). Returns the datagram.
    pub fn build(&mut self, script: &Script, p: u64) -> &[u8] {
        // Skip keys whose time is over (the sender fell behind by more than a key).
        while let Some(key) = script.keys.get(self.next_key) {
            if p >= key.start + key.down + END_PACKETS {
                self.next_key += 1;
            } else {
                break;
            }
        }
        let packet = self.classify(script, p);
        match (packet, self.te_pt) {
            (Packet::Event { index, k }, Some(pt)) => {
                let key = script.keys[index];
                self.rtp.timestamp = self
                    .base_ts
                    .wrapping_add((key.start as u32).wrapping_mul(SAMPLES));
                let (end, duration) = if k < key.down {
                    (false, (k + 1) * SAMPLES as u64)
                } else {
                    (true, key.down * SAMPLES as u64)
                };
                let duration = duration.min(u16::MAX as u64) as u16;
                let [hi, lo] = duration.to_be_bytes();
                let flags = if end { 0x80 | VOLUME } else { VOLUME };
                let payload = [key.event, flags, hi, lo];
                self.rtp.build(pt, k == 0, &payload, &mut self.buf);
                if k + 1 == key.down + END_PACKETS {
                    self.keys_sent += 1;
                    self.next_key += 1;
                }
            }
            _ => {
                self.rtp.timestamp = self.base_ts.wrapping_add((p as u32).wrapping_mul(SAMPLES));
                self.rtp.build(0, p == 0, &SILENCE, &mut self.buf);
            }
        }
        self.packets_sent += 1;
        &self.buf
    }
}

/// Identity and dialog state of one call's SIP side.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: String,
    pub from_tag: String,
    pub to_tag: Option<String>,
    pub local_user: String,
    /// Our SIP socket's address (Via, Contact).
    pub local: SocketAddr,
    pub request_uri: String,
    pub to_uri: String,
    /// The remote target from the 200's Contact (in-dialog requests go to it).
    pub remote_target: Option<String>,
    pub invite_branch: String,
    /// CSeq of the current INVITE (2 after a 407); the BYE takes the next one.
    pub invite_cseq: u32,
    /// Answer to the server's 407, sent with the INVITE once challenged.
    pub proxy_authorization: Option<String>,
}

impl Dialog {
    fn header_from(&self) -> String {
        format!(
            "<sip:{}@{}>;tag={}",
            self.local_user,
            self.local.ip(),
            self.from_tag
        )
    }

    fn header_to(&self) -> String {
        match &self.to_tag {
            Some(t) => format!("<{}>;tag={t}", self.to_uri),
            None => format!("<{}>", self.to_uri),
        }
    }

    fn common(&self, method: &str, uri: &str, branch: &str, cseq: u32) -> String {
        format!(
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: {}\r\n\
             To: {}\r\n\
             Call-ID: {}\r\n\
             CSeq: {cseq} {method}\r\n\
             User-Agent: selfprov-load/{}\r\n",
            self.local,
            self.header_from(),
            self.header_to(),
            self.call_id,
            env!("CARGO_PKG_VERSION"),
        )
    }

    /// The INVITE with our offer: PCMU and telephone-event/8000 at 101, 20 ms, sendrecv.
    pub fn invite(&self, rtp: SocketAddr, session_id: u64) -> String {
        let ip = rtp.ip();
        let ipv = if ip.is_ipv4() { "IP4" } else { "IP6" };
        let sdp = format!(
            "v=0\r\n\
             o=- {session_id} 1 IN {ipv} {ip}\r\n\
             s=selfprov-load\r\n\
             c=IN {ipv} {ip}\r\n\
             t=0 0\r\n\
             m=audio {} RTP/AVP 0 101\r\n\
             a=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\n\
             a=fmtp:101 0-15\r\n\
             a=ptime:20\r\n\
             a=sendrecv\r\n",
            rtp.port()
        );
        let mut m = self.common(
            "INVITE",
            &self.request_uri,
            &self.invite_branch,
            self.invite_cseq,
        );
        if let Some(a) = &self.proxy_authorization {
            m += &format!("Proxy-Authorization: {a}\r\n");
        }
        m += &format!(
            "Contact: <sip:{}@{}>\r\n\
             Allow: INVITE, ACK, BYE, CANCEL, OPTIONS\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{sdp}",
            self.local_user,
            self.local,
            sdp.len()
        );
        m
    }

    /// ACK of a 2xx (a new transaction: its own branch, §13.2.2.4) or of a non-2xx final
    /// response (the INVITE's branch, §17.1.1.3). `to_tag` must be set from the response first.
    pub fn ack(&self, for_2xx: bool, branch: &str) -> String {
        let (uri, branch) = if for_2xx {
            (
                self.remote_target.as_deref().unwrap_or(&self.request_uri),
                branch,
            )
        } else {
            (self.request_uri.as_str(), self.invite_branch.as_str())
        };
        let mut m = self.common("ACK", uri, branch, self.invite_cseq);
        m += "Content-Length: 0\r\n\r\n";
        m
    }

    pub fn bye(&self, branch: &str) -> String {
        let uri = self.remote_target.as_deref().unwrap_or(&self.request_uri);
        let mut m = self.common("BYE", uri, branch, self.invite_cseq + 1);
        m += "Content-Length: 0\r\n\r\n";
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfprov::media::dtmf::rfc4733::Rfc4733Receiver;
    use selfprov::media::rtp;
    use selfprov::sip::message::{parse, Message};

    fn timing() -> Timing {
        Timing {
            pauses: vec![Duration::from_secs(1), Duration::from_millis(200)],
            key_down: Duration::from_millis(100),
            key_gap: Duration::from_millis(60),
        }
    }

    #[test]
    fn script_timing() {
        let s = Script::new(&["12".into(), "#".into(), "9".into()], &timing()).unwrap();
        assert_eq!(
            s.keys,
            vec![
                KeyPress {
                    start: 50,
                    event: 1,
                    down: 5
                },
                KeyPress {
                    start: 50 + 8 + 3,
                    event: 2,
                    down: 5
                },
                KeyPress {
                    start: 61 + 8 + 10,
                    event: 11,
                    down: 5
                },
                // The last pause repeats.
                KeyPress {
                    start: 79 + 8 + 10,
                    event: 9,
                    down: 5
                },
            ]
        );
        assert_eq!(s.len_packets(), 97 + 8);
        assert!(Script::new(&["1x".into()], &timing()).is_err());
    }

    /// The stream of a scripted call, fed to the server's own RFC 4733 receiver: every key is
    /// recognised exactly once, seq/timestamps follow RFC 3550 and RFC 4733.
    #[test]
    fn stream_carries_each_key_once() {
        let groups = vec!["1001#".to_string(), "4321#".into(), "1".into()];
        let script = Script::new(&groups, &timing()).unwrap();
        let mut tx = MediaTx::new(Some(101));
        let mut rx = Rfc4733Receiver::new();
        let mut digits = String::new();
        let mut prev: Option<(u16, u32)> = None;
        let mut event_ts: Option<u32> = None;
        for p in 0..script.len_packets() + 20 {
            let pkt = tx.build(&script, p).to_vec();
            let r = rtp::parse(&pkt).expect("valid RTP");
            if let Some((seq, _)) = prev {
                assert_eq!(r.seq, seq.wrapping_add(1), "consecutive sequence numbers");
            }
            match r.pt {
                0 => {
                    assert_eq!(r.payload.len(), 160);
                    assert_eq!(r.marker, p == 0);
                    if let Some((_, ts)) = prev {
                        assert!(rtp::ts_newer(r.timestamp, ts), "audio timestamps increase");
                    }
                    event_ts = None;
                }
                101 => {
                    let ets = *event_ts.get_or_insert(r.timestamp);
                    assert_eq!(r.timestamp, ets, "one timestamp per event");
                    assert_eq!(r.payload.len(), 4);
                }
                other => panic!("unexpected PT {other}"),
            }
            if let Some(d) = rx.on_rtp(&r, 101) {
                digits.push(d);
            }
            prev = Some((r.seq, r.timestamp));
        }
        assert_eq!(digits, "1001#4321#1");
        assert_eq!(tx.keys_sent, 11);
        // Each key: 1 marker packet, down-1 updates, 3 end packets with the E bit.
        let mut tx = MediaTx::new(Some(101));
        let one = Script::new(&["5".into()], &timing()).unwrap();
        let start = one.keys[0].start;
        let pkts: Vec<Vec<u8>> = (0..start + 10)
            .map(|p| tx.build(&one, p).to_vec())
            .collect();
        let ev: Vec<_> = pkts
            .iter()
            .filter_map(|b| rtp::parse(b))
            .filter(|r| r.pt == 101)
            .map(|r| {
                (
                    r.marker,
                    r.payload[1] & 0x80 != 0,
                    u16::from_be_bytes([r.payload[2], r.payload[3]]),
                )
            })
            .collect();
        assert_eq!(
            ev,
            vec![
                (true, false, 160),
                (false, false, 320),
                (false, false, 480),
                (false, false, 640),
                (false, false, 800),
                (false, true, 800),
                (false, true, 800),
                (false, true, 800),
            ]
        );
    }

    #[test]
    fn no_events_without_telephone_event() {
        let script = Script::new(&["1".into()], &timing()).unwrap();
        let mut tx = MediaTx::new(None);
        for p in 0..script.len_packets() {
            let pt = rtp::parse(tx.build(&script, p)).unwrap().pt;
            assert_eq!(pt, 0);
        }
        assert_eq!(tx.keys_sent, 0);
    }

    #[test]
    fn requests_parse() {
        let mut d = Dialog {
            call_id: "c1@load".into(),
            from_tag: "ft".into(),
            to_tag: None,
            local_user: "load7".into(),
            local: "127.0.0.1:40000".parse().unwrap(),
            request_uri: "sip:8000@127.0.0.1:5060".into(),
            to_uri: "sip:8000@127.0.0.1:5060".into(),
            remote_target: None,
            invite_branch: "z9hG4bK1".into(),
            invite_cseq: 1,
            proxy_authorization: None,
        };
        let inv = d.invite("127.0.0.1:41000".parse().unwrap(), 9);
        let Ok(Message::Request(r)) = parse(inv.as_bytes()) else {
            panic!("INVITE parses:\n{inv}");
        };
        r.validate().unwrap();
        let m = selfprov::media::sdp::parse_remote(&r.body).unwrap();
        assert_eq!(m.port, 41000);
        assert_eq!(m.telephone_event.map(|t| t.pt), Some(101));
        d.to_tag = Some("tt".into());
        d.remote_target = Some("sip:ivr@127.0.0.1:5060".into());
        for msg in [d.ack(true, "z9hG4bK2"), d.ack(false, ""), d.bye("z9hG4bK3")] {
            let Ok(Message::Request(r)) = parse(msg.as_bytes()) else {
                panic!("parses:\n{msg}");
            };
            r.validate().unwrap();
            assert_eq!(r.to().unwrap().tag(), Some("tt"));
        }
        assert!(d.ack(false, "").contains("branch=z9hG4bK1;"));
        assert!(d
            .bye("z9hG4bK3")
            .starts_with("BYE sip:ivr@127.0.0.1:5060 SIP/2.0"));
    }
}
