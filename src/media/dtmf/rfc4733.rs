//! RFC 4733 telephone-event receiver: one digit per key press, whatever the network does.
//!
//! Payload (RFC 4733 §2.3): `event` (8 bits), `E` end bit, `R`, volume (6 bits), `duration`
//! (16 bits, timestamp units). All packets of one event carry the event's start timestamp
//! (§2.3.1, §2.5.1.2): the start packet (marker bit set, §2.3.1), updates as the key is held,
//! then the end packet, sent three times (§2.5.1.4). A **new event is recognised by a new RTP
//! timestamp** (§2.5.1.2), and that is the whole trick of this receiver:
//!
//! - a digit is reported the first time a packet with a new, later timestamp is seen, whichever
//!   packet of the event that is (so lost start packets and lost end packets both still give
//!   exactly one digit, and a digit is reported as soon as the key goes down);
//! - further packets with the same timestamp (updates, the repeated end packets, duplicates,
//!   retransmissions) are absorbed;
//! - a packet with an earlier timestamp than the current event's, or any other timestamp but a
//!   sequence number slightly behind the newest seen, is a late (reordered) packet of an older
//!   event and is ignored; but when the sequence number moved *forward* while the timestamp
//!   went back, the sender restarted its timeline, and the packet starts a new event;
//! - a long event split into segments (§2.5.1.3: the duration field would overflow 0xFFFF, so
//!   the sender continues with a new timestamp, same event, no marker, no end bit seen) is not
//!   a new key press.
//!
//! Audio packets of the same stream keep running while digits are sent (the phone does not
//! stop its microphone stream). Their timestamps advance, the event packets' timestamps do not.
//! Receivers that look at the audio's timestamps or count event packets miscount (Asterisk has
//! reported one digit per event packet in that situation). Here only packets of the negotiated
//! telephone-event payload type reach the state machine ([`Rfc4733Receiver::on_rtp`] filters
//! them), so interleaved audio cannot disturb it.
//!
//! SIPp's shipped `dtmf_2833_*.pcap` files are slices of one capture with fixed sequence
//! numbers and timestamps. Playing the same file twice sends the very same packets twice:
//! indistinguishable from duplicates, so a correct receiver reports the digit once ("1155"
//! arrives as "15"). That is the expected behaviour, not a bug; tests that need repeated
//! digits must generate one continuous stream.
//!
//! Per packet: no allocation, a handful of comparisons.

use super::event_to_char;
use crate::media::rtp::{seq_diff, ts_newer, RtpIn};

/// What the receiver remembers about the current (most recent) event.
#[derive(Debug, Clone, Copy)]
struct Current {
    timestamp: u32,
    event: u8,
    ended: bool,
    duration: u16,
}

/// Turns RFC 4733 telephone-event packets into digits, one per key press.
#[derive(Debug, Clone, Default)]
pub struct Rfc4733Receiver {
    current: Option<Current>,
    /// Timestamps of the events before the current one (most recent first), so a late end
    /// packet of a previous event is recognised even after a timeline restart.
    previous: [Option<u32>; 4],
    highest_seq: Option<u16>,
    ssrc: Option<u32>,
}

/// Segments of a long event (§2.5.1.3) only occur after the duration field came close to its
/// 16-bit limit; a shorter previous segment means a genuinely new key press.
const LONG_SEGMENT: u16 = 0x8000;

/// How far behind the newest sequence number a packet may be and still count as a late packet
/// of the same stream (RFC 3550 Appendix A.1 MAX_MISORDER).
const MAX_MISORDER: i16 = 100;

impl Rfc4733Receiver {
    /// A receiver that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets all state (a new stream, or after a re-INVITE changed the remote party).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Feeds one received RTP packet. Packets whose payload type is not `te_pt` (the audio) are
    /// ignored. A change of SSRC (a new sender, e.g. SIPp's `play_dtmf` starts one per
    /// digit string) resets the state first.
    pub fn on_rtp(&mut self, packet: &RtpIn<'_>, te_pt: u8) -> Option<char> {
        if packet.pt != te_pt {
            return None;
        }
        if self.ssrc != Some(packet.ssrc) {
            self.reset();
            self.ssrc = Some(packet.ssrc);
        }
        self.on_packet(packet.seq, packet.timestamp, packet.marker, packet.payload)
    }

    /// Feeds one telephone-event packet (already known to be of the telephone-event payload
    /// type). Returns the digit when this packet is the first one seen of a new key press.
    /// Payloads shorter than 4 bytes are ignored; events other than 0-15 (e.g. flash, 16, or
    /// line tones) are tracked as events but give no digit.
    pub fn on_packet(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Option<char> {
        let [event, flags, d_hi, d_lo, ..] = *payload else {
            return None;
        };
        let end = flags & 0x80 != 0;
        let duration = u16::from_be_bytes([d_hi, d_lo]);

        // Sequence position relative to the newest event packet seen: forward, recently
        // behind (a late or reordered packet, within RFC 3550 A.1's MAX_MISORDER of 100), or
        // far away (a jump, or more than half the sequence space of audio since the last
        // event), which tells nothing.
        let d = self.highest_seq.map_or(1, |h| seq_diff(seq, h));
        let seq_forward = d > 0;
        let seq_late = (-MAX_MISORDER..=0).contains(&d);

        if let Some(cur) = self.current.as_mut() {
            if cur.timestamp == timestamp {
                // Same event: an update, a repeated end packet or a duplicate.
                cur.ended |= end;
                cur.duration = cur.duration.max(duration);
                if seq_forward {
                    self.highest_seq = Some(seq);
                }
                return None;
            }
            if self.previous.contains(&Some(timestamp)) {
                return None; // late packet of an event already reported
            }
            if seq_late {
                // Sent before the newest packet seen, yet not of the current event: a late
                // packet of an older event (RFC 4733 §2.5.1.2: ignore).
                return None;
            }
            if !seq_forward && !ts_newer(timestamp, cur.timestamp) {
                return None;
            }
            if event == cur.event
                && !cur.ended
                && !marker
                && cur.duration >= LONG_SEGMENT
                && timestamp.wrapping_sub(cur.timestamp) <= cur.duration as u32 + 8000
            {
                // Next segment of a long event (§2.5.1.3): same key, still held.
                cur.timestamp = timestamp;
                cur.duration = duration;
                cur.ended = end;
                self.highest_seq = Some(seq);
                return None;
            }
        }
        self.highest_seq = Some(seq);

        // A new event.
        if let Some(old) = self.current {
            self.previous.rotate_right(1);
            self.previous[0] = Some(old.timestamp);
        }
        self.current = Some(Current {
            timestamp,
            event,
            ended: end,
            duration,
        });
        event_to_char(event)
    }

    /// The current event's code, whether its end was seen, and its longest duration (timestamp
    /// units), if any event was seen.
    pub fn current_event(&self) -> Option<(u8, bool, u16)> {
        self.current.map(|c| (c.event, c.ended, c.duration))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::{parse, RtpSender};

    fn payload(event: u8, end: bool, duration: u16) -> [u8; 4] {
        let d = duration.to_be_bytes();
        [event, if end { 0x80 | 10 } else { 10 }, d[0], d[1]]
    }

    /// One RFC 4733 event as a sender emits it: start (marker), updates every 20 ms, three end
    /// packets. Returns (seq offset, marker, payload) with the event's timestamp implicit.
    fn event_packets(event: u8, updates: u16) -> Vec<(bool, [u8; 4])> {
        let mut v = vec![(true, payload(event, false, 160))];
        for i in 2..=updates {
            v.push((false, payload(event, false, 160 * i)));
        }
        for _ in 0..3 {
            v.push((false, payload(event, true, 160 * (updates + 1))));
        }
        v
    }

    /// Builds a whole stream: `digits` each preceded by `gap` audio packets; returns
    /// (seq, ts, marker, payload) of the event packets only.
    fn stream(digits: &str, start_seq: u16, start_ts: u32) -> Vec<(u16, u32, bool, [u8; 4])> {
        let mut seq = start_seq;
        let mut ts = start_ts;
        let mut out = vec![];
        for c in digits.chars() {
            seq = seq.wrapping_add(5);
            ts = ts.wrapping_add(800);
            let ev = crate::media::dtmf::char_to_event(c).unwrap();
            let pkts = event_packets(ev, 8);
            let n = pkts.len() as u32;
            for (m, p) in pkts {
                out.push((seq, ts, m, p));
                seq = seq.wrapping_add(1);
            }
            ts = ts.wrapping_add(160 * n);
        }
        out
    }

    fn feed(rx: &mut Rfc4733Receiver, pkts: &[(u16, u32, bool, [u8; 4])]) -> String {
        pkts.iter()
            .filter_map(|(s, t, m, p)| rx.on_packet(*s, *t, *m, p))
            .collect()
    }

    #[test]
    fn one_digit_per_event_with_triple_end() {
        let mut rx = Rfc4733Receiver::new();
        assert_eq!(
            feed(&mut rx, &stream("1234567890*#ABCD", 100, 1000)),
            "1234567890*#ABCD"
        );
        assert_eq!(rx.current_event(), Some((15, true, 1440)));
    }

    #[test]
    fn repeated_digits_are_distinct_events() {
        let mut rx = Rfc4733Receiver::new();
        assert_eq!(
            feed(&mut rx, &stream("1155", 65530, u32::MAX - 3000)),
            "1155",
            "wraps too"
        );
    }

    #[test]
    fn duplicated_and_retransmitted_packets() {
        let pkts = stream("5599", 7, 0);
        let mut dup = vec![];
        for p in &pkts {
            dup.push(*p);
            dup.push(*p);
        }
        dup.extend_from_slice(&pkts[pkts.len() - 6..]); // late retransmission of the last event
        let mut rx = Rfc4733Receiver::new();
        assert_eq!(feed(&mut rx, &dup), "5599");
    }

    #[test]
    fn reordered_packets() {
        let mut pkts = stream("123", 0, 0);
        // Swap neighbours across the whole stream, including across event boundaries.
        for i in (0..pkts.len() - 1).step_by(2) {
            pkts.swap(i, i + 1);
        }
        let mut rx = Rfc4733Receiver::new();
        assert_eq!(feed(&mut rx, &pkts), "123");
        // An end packet of event '1' arriving after event '3' started.
        let mut rx = Rfc4733Receiver::new();
        let pkts = stream("123", 0, 0);
        let late = pkts[5];
        let mut v: Vec<_> = pkts.iter().copied().filter(|p| p.0 != late.0).collect();
        v.push(late);
        assert_eq!(feed(&mut rx, &v), "123");
    }

    #[test]
    fn late_earlier_event_is_ignored() {
        let pkts = stream("12", 0, 0);
        let (first, second): (Vec<_>, Vec<_>) = pkts.iter().partition(|p| p.3[0] == 1);
        let mut rx = Rfc4733Receiver::new();
        // All of event '2' arrives before all of event '1': '1' is older and comes late.
        assert_eq!(feed(&mut rx, &second), "2");
        assert_eq!(feed(&mut rx, &first), "");
    }

    #[test]
    fn lost_start_and_lost_end_packets() {
        let pkts = stream("4567", 0, 0);
        // Lose the first three packets of every event (start + 2 updates).
        let mut rx = Rfc4733Receiver::new();
        let no_start: Vec<_> = pkts
            .iter()
            .copied()
            .enumerate()
            .filter(|(i, _)| i % 11 >= 3)
            .map(|x| x.1)
            .collect();
        assert_eq!(feed(&mut rx, &no_start), "4567");
        // Lose all end packets.
        let mut rx = Rfc4733Receiver::new();
        let no_end: Vec<_> = pkts
            .iter()
            .copied()
            .filter(|p| p.3[1] & 0x80 == 0)
            .collect();
        assert_eq!(feed(&mut rx, &no_end), "4567");
        // Only a single end packet of each event survives.
        let mut rx = Rfc4733Receiver::new();
        let only_end: Vec<_> = pkts
            .iter()
            .copied()
            .enumerate()
            .filter(|(i, _)| i % 11 == 9)
            .map(|x| x.1)
            .collect();
        assert_eq!(only_end.len(), 4);
        assert_eq!(feed(&mut rx, &only_end), "4567");
    }

    #[test]
    fn audio_interleaved_with_events_through_on_rtp() {
        // One continuous RTP stream (one SSRC, one sequence space): audio PT 0 every 20 ms
        // keeps running while the key is held, event packets (PT 101) interleaved with it.
        let mut tx = RtpSender::with_initial(0xABCD, 40_000, 123_456);
        let mut rx = Rfc4733Receiver::new();
        let mut buf = Vec::new();
        let mut got = String::new();
        let audio = [0xFFu8; 160];
        for c in "159#".chars() {
            for _ in 0..10 {
                tx.build(0, false, &audio, &mut buf);
                tx.advance_timestamp(160);
                got.extend(rx.on_rtp(&parse(&buf).unwrap(), 101));
            }
            let event_ts = tx.timestamp;
            let ev = crate::media::dtmf::char_to_event(c).unwrap();
            for (i, (m, p)) in event_packets(ev, 8).into_iter().enumerate() {
                // Event packet carrying the event start timestamp...
                let audio_ts = tx.timestamp;
                tx.timestamp = event_ts;
                tx.build(101, m, &p, &mut buf);
                tx.timestamp = audio_ts;
                got.extend(rx.on_rtp(&parse(&buf).unwrap(), 101));
                // ...and an audio packet with the running timestamp in between.
                if i < 8 {
                    tx.build(0, false, &audio, &mut buf);
                    tx.advance_timestamp(160);
                    got.extend(rx.on_rtp(&parse(&buf).unwrap(), 101));
                }
            }
        }
        assert_eq!(got, "159#");
    }

    #[test]
    fn sipp_shipped_pcap_replayed_twice_is_one_digit() {
        // SIPp's dtmf_2833_1.pcap replayed twice: the same ten packets (fixed seq/ts/SSRC).
        let capture: Vec<_> = event_packets(1, 6)
            .into_iter()
            .enumerate()
            .map(|(i, (m, p))| (1000 + i as u16, 48_000u32, m, p))
            .collect();
        let mut rx = Rfc4733Receiver::new();
        assert_eq!(feed(&mut rx, &capture), "1");
        assert_eq!(
            feed(&mut rx, &capture),
            "",
            "the replay is a duplicate of the same event"
        );
    }

    #[test]
    fn sender_timeline_restart_is_a_new_event() {
        // Timestamps jump backwards while sequence numbers continue forward.
        let mut rx = Rfc4733Receiver::new();
        assert_eq!(
            rx.on_packet(10, 90_000, true, &payload(3, false, 160)),
            Some('3')
        );
        assert_eq!(
            rx.on_packet(11, 90_000, false, &payload(3, true, 800)),
            None
        );
        assert_eq!(
            rx.on_packet(12, 1_000, true, &payload(3, false, 160)),
            Some('3')
        );
        assert_eq!(
            rx.on_packet(9, 89_000, false, &payload(2, true, 800)),
            None,
            "really late"
        );
    }

    #[test]
    fn long_event_segments_are_one_key_press() {
        let mut rx = Rfc4733Receiver::new();
        assert_eq!(rx.on_packet(1, 0, true, &payload(8, false, 160)), Some('8'));
        assert_eq!(rx.on_packet(2, 0, false, &payload(8, false, 0xFFFF)), None);
        // §2.5.1.3: next segment at timestamp + 0xFFFF, same event, no marker.
        assert_eq!(
            rx.on_packet(3, 0xFFFF, false, &payload(8, false, 160)),
            None
        );
        assert_eq!(
            rx.on_packet(4, 0xFFFF, false, &payload(8, true, 4000)),
            None
        );
        // A new press of the same key afterwards is a digit.
        assert_eq!(
            rx.on_packet(5, 0xFFFF + 8000, true, &payload(8, false, 160)),
            Some('8')
        );
    }

    #[test]
    fn ignored_payloads_and_events() {
        let mut rx = Rfc4733Receiver::new();
        assert_eq!(rx.on_packet(1, 0, true, &[5, 0, 0]), None, "short payload");
        assert_eq!(rx.on_packet(2, 0, true, &[]), None);
        assert_eq!(
            rx.on_packet(3, 160, true, &payload(16, false, 160)),
            None,
            "flash"
        );
        assert_eq!(rx.on_packet(4, 320, true, &payload(200, false, 160)), None);
        assert_eq!(
            rx.on_packet(5, 480, true, &payload(0, false, 160)),
            Some('0')
        );
        // Payload longer than 4 bytes (several events, RFC 4733 §2.5.1.5): first one used.
        assert_eq!(
            rx.on_packet(6, 640, true, &[7, 0, 0, 160, 8, 0, 0, 0]),
            Some('7')
        );
    }

    #[test]
    fn ssrc_change_resets() {
        let mut rx = Rfc4733Receiver::new();
        let mut a = RtpSender::with_initial(1, 500, 1_000_000);
        let mut b = RtpSender::with_initial(2, 10, 5);
        let mut buf = Vec::new();
        a.build(96, true, &payload(1, false, 160), &mut buf);
        assert_eq!(rx.on_rtp(&parse(&buf).unwrap(), 96), Some('1'));
        b.build(96, true, &payload(2, false, 160), &mut buf);
        assert_eq!(
            rx.on_rtp(&parse(&buf).unwrap(), 96),
            Some('2'),
            "older ts but new SSRC"
        );
        b.build(101, true, &payload(3, false, 160), &mut buf);
        assert_eq!(
            rx.on_rtp(&parse(&buf).unwrap(), 96),
            None,
            "not the telephone-event PT"
        );
    }

    #[test]
    fn random_payloads_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(4733);
        let mut rx = Rfc4733Receiver::new();
        let mut buf = [0u8; 8];
        for _ in 0..100_000 {
            let len = rng.random_range(0..=8);
            rng.fill(&mut buf[..len]);
            let _ = rx.on_packet(rng.random(), rng.random(), rng.random(), &buf[..len]);
        }
    }
}
