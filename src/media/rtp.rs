//! RTP packets (RFC 3550 §5.1): the sending side's header state ([`RtpSender`]), zero-copy
//! parsing of received packets ([`parse`]), and 16-bit sequence-number arithmetic (RFC 3550
//! Appendix A.1, RFC 1982 serial-number comparison) used by the DTMF receiver.
//!
//! The wire format is done by the `rtp-rs` crate: [`rtp_rs::RtpPacketBuilder`] writes our
//! header into the caller's buffer and [`rtp_rs::RtpReader`] validates and splits incoming
//! packets (version 2, CSRC list, header extension and padding, all bounds-checked, never
//! panicking). Both are allocation-free; `build` reuses the `Vec` it is given.
//!
//! RTCP is not handled here: the IVR sends no RTCP, and RTCP arriving on the RTP port (rtcp-mux,
//! RFC 5761) is recognised by [`is_rtcp`] so it can be ignored rather than taken for audio.

use rand::Rng;
use rtp_rs::{RtpPacketBuilder, RtpReader, Seq};

/// Size of the fixed RTP header we write (no CSRC, no extension).
pub const HEADER_LEN: usize = 12;

/// The sending half of one RTP stream (one SSRC).
///
/// Per RFC 3550 §5.1 the initial sequence number and timestamp are random, and the SSRC is
/// random (§8). The timestamp advances by the number of samples each packet represents
/// ([`RtpSender::advance_timestamp`]) and is independent of the sequence number, which advances
/// by one per packet sent ([`RtpSender::build`]).
#[derive(Debug, Clone)]
pub struct RtpSender {
    /// Synchronisation source identifier.
    pub ssrc: u32,
    /// Sequence number of the next packet to be built.
    pub seq: u16,
    /// RTP timestamp of the next packet to be built (8 kHz units for G.711).
    pub timestamp: u32,
    /// Packets built so far (for statistics; RFC 3550 §6.4.1 sender's packet count).
    pub packets_sent: u64,
    /// Payload octets built so far (RFC 3550 §6.4.1 sender's octet count).
    pub octets_sent: u64,
}

impl Default for RtpSender {
    fn default() -> Self {
        Self::new()
    }
}

impl RtpSender {
    /// A sender with random SSRC, sequence number and timestamp.
    pub fn new() -> Self {
        let mut rng = rand::rng();
        Self::with_initial(rng.random(), rng.random(), rng.random())
    }

    /// A sender with the given initial values (tests, or continuing a stream).
    pub fn with_initial(ssrc: u32, seq: u16, timestamp: u32) -> Self {
        RtpSender {
            ssrc,
            seq,
            timestamp,
            packets_sent: 0,
            octets_sent: 0,
        }
    }

    /// Writes one packet (12-byte header + `payload`) into `out`, replacing its contents, and
    /// advances the sequence number by one (wrapping). Does not allocate when `out` already has
    /// capacity for `12 + payload.len()` bytes. The timestamp is not advanced: call
    /// [`RtpSender::advance_timestamp`] once per packet duration (RFC 4733 event packets of one
    /// event share a timestamp, so the two must be separate).
    ///
    /// `pt` is masked to 7 bits.
    pub fn build(&mut self, pt: u8, marker: bool, payload: &[u8], out: &mut Vec<u8>) {
        let builder = RtpPacketBuilder::new()
            .payload_type(pt & 0x7F)
            .marked(marker)
            .sequence(Seq::from(self.seq))
            .timestamp(self.timestamp)
            .ssrc(self.ssrc)
            .payload(payload);
        let len = builder.target_length();
        out.clear();
        out.resize(len, 0);
        // Cannot fail: the buffer has exactly target_length() bytes and the payload type is
        // 7 bits; build_into_unchecked skips the redundant re-validation.
        let written = builder.build_into_unchecked(out.as_mut_slice());
        out.truncate(written);
        self.seq = self.seq.wrapping_add(1);
        self.packets_sent += 1;
        self.octets_sent += payload.len() as u64;
    }

    /// Turns `packet`, a packet this sender built with [`RtpSender::build`] (same payload
    /// type), into the next one with the same payload: clears the marker, writes the current
    /// sequence number and timestamp, and advances the sequence number like `build`. A stream of
    /// identical payloads (silence between prompts) then costs 7 bytes written per packet
    /// instead of a whole packet built. Returns false, changing nothing, for a buffer shorter
    /// than a header.
    pub fn rebuild_header(&mut self, packet: &mut [u8]) -> bool {
        let Some(header) = packet.get_mut(..12) else {
            return false;
        };
        header[1] &= 0x7F;
        header[2..4].copy_from_slice(&self.seq.to_be_bytes());
        header[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        self.seq = self.seq.wrapping_add(1);
        self.packets_sent += 1;
        self.octets_sent += (packet.len() - 12) as u64;
        true
    }

    /// Advances the timestamp by `samples` sampling periods (wrapping modulo 2^32).
    pub fn advance_timestamp(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
    }
}

/// A received RTP packet, borrowing its payload from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpIn<'a> {
    /// Payload type (7 bits).
    pub pt: u8,
    /// Marker bit (for RFC 4733: the first packet of an event).
    pub marker: bool,
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// The payload, after the CSRC list and header extension, before any padding.
    pub payload: &'a [u8],
}

/// Parses an RTP packet. Returns `None` for anything that is not a well-formed RTP version 2
/// packet: shorter than 12 bytes, another version, CSRC list or header extension running past
/// the end, padding length 0 or longer than the packet. Also `None` for RTCP multiplexed on the
/// same port (payload-type range 64..=95 with the marker bit, RFC 5761 §4), which would
/// otherwise be misread as RTP. Never panics.
pub fn parse(buf: &[u8]) -> Option<RtpIn<'_>> {
    if is_rtcp(buf) {
        return None;
    }
    let r = RtpReader::new(buf).ok()?;
    Some(RtpIn {
        pt: r.payload_type(),
        marker: r.mark(),
        seq: u16::from(r.sequence_number()),
        timestamp: r.timestamp(),
        ssrc: r.ssrc(),
        payload: r.payload(),
    })
}

/// True if `buf` looks like RTCP multiplexed on the RTP port: version 2 and a second byte of
/// 192..=223 (RTCP packet types 192..=223 as in RFC 5761 §4: SR 200, RR 201, SDES 202, BYE 203,
/// APP 204, RTPFB 205, PSFB 206, ...).
pub fn is_rtcp(buf: &[u8]) -> bool {
    match buf {
        [b0, b1, ..] => b0 >> 6 == 2 && (192..=223).contains(b1),
        _ => false,
    }
}

/// `a` is newer than `b` in 16-bit sequence space (RFC 1982 serial arithmetic: the forward
/// distance from `b` to `a` is 1..=32767). Handles the wrap from 65535 to 0.
#[inline]
pub fn seq_newer(a: u16, b: u16) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d < 0x8000
}

/// Signed distance from `b` to `a` in 16-bit sequence space (`a - b`, in -32768..=32767).
#[inline]
pub fn seq_diff(a: u16, b: u16) -> i16 {
    a.wrapping_sub(b) as i16
}

/// `a` is newer than `b` in 32-bit RTP timestamp space (serial arithmetic modulo 2^32).
#[inline]
pub fn ts_newer(a: u32, b: u32) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d < 0x8000_0000
}

/// Tracks the highest sequence number seen on a stream and extends it to 64 bits across
/// wrap-arounds (RFC 3550 Appendix A.1 in spirit, without the probation logic).
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    /// Highest extended sequence number seen, if any packet was seen.
    highest: Option<u64>,
}

/// How a packet's sequence number relates to what was seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqStatus {
    /// The first packet seen.
    First,
    /// Newer than everything before; `gap` packets were skipped (0 = in order).
    Newer { gap: u16 },
    /// The same sequence number as the newest (a duplicate).
    Duplicate,
    /// Older than the newest (reordered or retransmitted), by this many.
    Older { behind: u16 },
}

impl SeqTracker {
    /// A tracker that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `seq` and classifies it relative to the newest sequence number so far.
    pub fn update(&mut self, seq: u16) -> SeqStatus {
        let Some(highest) = self.highest else {
            // Start the extended counter one cycle up so "older" packets never underflow.
            self.highest = Some((1u64 << 16) | seq as u64);
            return SeqStatus::First;
        };
        let d = seq_diff(seq, highest as u16);
        if d > 0 {
            self.highest = Some(highest + d as u64);
            SeqStatus::Newer {
                gap: (d - 1) as u16,
            }
        } else if d == 0 {
            SeqStatus::Duplicate
        } else {
            SeqStatus::Older {
                behind: d.unsigned_abs(),
            }
        }
    }

    /// The highest extended (64-bit, wrap-counting) sequence number seen.
    pub fn highest_extended(&self) -> Option<u64> {
        self.highest
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_rebuilt_header_equals_a_fresh_build() {
        let payload = [0xFFu8; 160];
        let mut a = RtpSender::with_initial(0x1234_5678, 0xFFFF, 0xFFFF_FF00);
        let mut b = a.clone();
        let mut pa = Vec::new();
        let mut pb = Vec::new();
        a.build(0, true, &payload, &mut pa);
        b.build(0, true, &payload, &mut pb);
        for _ in 0..3 {
            a.advance_timestamp(160);
            b.advance_timestamp(160);
            a.build(0, false, &payload, &mut pa);
            assert!(b.rebuild_header(&mut pb));
            assert_eq!(pa, pb, "sequence and timestamp wrap the same way");
        }
        assert_eq!(
            (a.seq, a.packets_sent, a.octets_sent),
            (b.seq, b.packets_sent, b.octets_sent)
        );
        assert!(!b.rebuild_header(&mut [0u8; 11]));
    }

    use super::*;

    #[test]
    fn build_writes_header_and_advances_seq() {
        let mut tx = RtpSender::with_initial(0x1122_3344, 0xFFFF, 0xFFFF_FFC0);
        let mut out = Vec::with_capacity(200);
        let cap = out.capacity();
        let ptr = out.as_ptr();
        tx.build(0, true, &[0xFF; 160], &mut out);
        assert_eq!(out.len(), 172);
        assert_eq!(
            &out[..12],
            &[0x80, 0x80, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xC0, 0x11, 0x22, 0x33, 0x44]
        );
        assert!(out[12..].iter().all(|&b| b == 0xFF));
        assert_eq!(tx.seq, 0, "wraps");
        tx.advance_timestamp(160);
        assert_eq!(tx.timestamp, 0x60, "wraps");
        tx.build(101, false, &[1, 2, 3, 4], &mut out);
        assert_eq!(out.len(), 16);
        assert_eq!(
            &out[..12],
            &[0x80, 101, 0, 0, 0, 0, 0, 0x60, 0x11, 0x22, 0x33, 0x44]
        );
        assert_eq!(out.capacity(), cap, "no reallocation");
        assert_eq!(out.as_ptr(), ptr, "same buffer");
        assert_eq!(tx.packets_sent, 2);
        assert_eq!(tx.octets_sent, 164);
    }

    #[test]
    fn random_initial_values_differ() {
        let a = RtpSender::new();
        let b = RtpSender::new();
        // 80 random bits colliding is impossible in practice.
        assert!(a.ssrc != b.ssrc || a.seq != b.seq || a.timestamp != b.timestamp);
    }

    #[test]
    fn parse_round_trip() {
        let mut tx = RtpSender::with_initial(7, 100, 8000);
        let mut out = Vec::new();
        tx.build(8, true, b"hello", &mut out);
        let p = parse(&out).unwrap();
        assert_eq!(
            p,
            RtpIn {
                pt: 8,
                marker: true,
                seq: 100,
                timestamp: 8000,
                ssrc: 7,
                payload: b"hello"
            }
        );
    }

    #[test]
    fn parse_csrc_extension_padding() {
        // V=2 P=1 X=1 CC=2, M=0 PT=0, seq 5, ts 6, ssrc 7, 2 CSRCs, ext id 0xBEDE len 1 word,
        // payload "ab", padding 3 bytes (last byte = 3).
        let mut p = vec![0xB2, 0x00, 0, 5, 0, 0, 0, 6, 0, 0, 0, 7];
        p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
        p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 9, 9, 9, 9]);
        p.extend_from_slice(b"ab");
        p.extend_from_slice(&[0, 0, 3]);
        let r = parse(&p).unwrap();
        assert_eq!(r.payload, b"ab");
        assert_eq!((r.seq, r.timestamp, r.ssrc, r.pt), (5, 6, 7, 0));
        // Bad padding length (0, or larger than the packet) is rejected.
        let mut bad = p.clone();
        *bad.last_mut().unwrap() = 0;
        assert!(parse(&bad).is_none());
        let mut bad = p.clone();
        *bad.last_mut().unwrap() = 200;
        assert!(parse(&bad).is_none());
        // Extension running past the end.
        let mut bad = p.clone();
        bad[22] = 0x40;
        assert!(parse(&bad).is_none());
        // Version 1 and short packets.
        let mut bad = p.clone();
        bad[0] = 0x72;
        assert!(parse(&bad).is_none());
        assert!(parse(&p[..11]).is_none());
        assert!(parse(&[]).is_none());
        // CSRC count 15 with only 12 bytes.
        assert!(parse(&[0x8F, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_none());
    }

    #[test]
    fn rtcp_is_not_rtp() {
        // Receiver report, version 2, PT 201.
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
        assert!(is_rtcp(&rr));
        assert!(parse(&[0x81, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]).is_none());
        // PT 0 with marker (0x80) is RTP, not RTCP.
        assert!(!is_rtcp(&[0x80, 0x80, 0, 0]));
    }

    #[test]
    fn random_garbage_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5EED);
        let mut buf = [0u8; 64];
        let mut parsed = 0;
        for i in 0..200_000 {
            let len = rng.random_range(0..=64);
            rng.fill(&mut buf[..len]);
            if i % 2 == 0 && len > 0 {
                buf[0] = (buf[0] & 0x3F) | 0x80; // force version 2 half the time
            }
            if let Some(p) = parse(&buf[..len]) {
                parsed += 1;
                assert!(p.payload.len() <= len.saturating_sub(12));
                assert!(p.pt < 128);
            }
        }
        assert!(
            parsed > 1000,
            "the fuzz exercised the success path ({parsed})"
        );
    }

    #[test]
    fn sequence_comparison_wraps() {
        assert!(seq_newer(1, 0));
        assert!(seq_newer(0, 65535));
        assert!(seq_newer(5, 65530));
        assert!(!seq_newer(65530, 5));
        assert!(!seq_newer(7, 7));
        assert!(seq_newer(0x7FFF, 0));
        assert!(!seq_newer(0x8000, 0));
        assert_eq!(seq_diff(2, 65534), 4);
        assert_eq!(seq_diff(65534, 2), -4);
        assert!(ts_newer(10, 0xFFFF_FF00));
        assert!(!ts_newer(0xFFFF_FF00, 10));
    }

    #[test]
    fn seq_tracker_extends_across_wrap() {
        let mut t = SeqTracker::new();
        assert_eq!(t.update(65534), SeqStatus::First);
        let base = t.highest_extended().unwrap();
        assert_eq!(t.update(65535), SeqStatus::Newer { gap: 0 });
        assert_eq!(t.update(1), SeqStatus::Newer { gap: 1 });
        assert_eq!(t.highest_extended().unwrap(), base + 3);
        assert_eq!(t.update(0), SeqStatus::Older { behind: 1 });
        assert_eq!(t.update(1), SeqStatus::Duplicate);
        assert_eq!(t.update(65535), SeqStatus::Older { behind: 2 });
        assert_eq!(t.highest_extended().unwrap(), base + 3);
    }
}
