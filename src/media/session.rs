//! One call's media, as a sans-IO state machine: what to send when (prompts cut into packets on a
//! drift-free clock, silence between them, nothing on hold), what a received datagram means
//! (symmetric-RTP latching, RFC 4733 and in-band digits), and when the caller has gone silent.
//!
//! The session owns no socket and no timer. Its driver (the media engine in
//! [`crate::server::media_engine`]) calls [`MediaSession::on_tick`] at or after
//! [`MediaSession::next_deadline`] with a closure that sends a packet, feeds it every datagram
//! received with [`MediaSession::on_datagram`], and forwards [`MediaSession::poll_event`]'s
//! events to the call. One driver runs thousands of sessions from one timer wheel; nothing here
//! allocates per packet.

use super::dtmf::inband::InbandDetector;
use super::dtmf::rfc4733::Rfc4733Receiver;
use super::g711::Codec;
use super::pacing::Pacer;
use super::playout::Playout;
use super::rtp::{self, RtpSender};
use crate::langpack::Prompt;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Late packets sent back to back when the driver was late; older ones are skipped (see
/// [`crate::media::pacing`]).
pub const MAX_CATCH_UP: u64 = 3;

/// What the call agreed on for its audio stream (from SDP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaParams {
    pub codec: Codec,
    /// Packet time in ms.
    pub ptime: u32,
    /// The telephone-event payload type, when RFC 4733 was negotiated.
    pub te_pt: Option<u8>,
    /// We send audio (not on hold).
    pub sends: bool,
    /// We expect audio from the caller (its silence then counts as inactivity).
    pub receives: bool,
    /// Where the caller's SDP says to send; replaced by the source of its RTP once it arrives.
    pub remote: Option<SocketAddr>,
}

/// How a digit reached us through the media stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitSource {
    Rfc4733,
    Inband,
}

/// What the session tells the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    /// A key press, reported once per press.
    Digit(char, DigitSource),
    /// The queue given by [`MediaSession::play`] with this generation has been sent out.
    PlaybackFinished { generation: u64 },
    /// The caller's RTP now comes from this address; we send there (symmetric RTP, RFC 4961).
    Latched(SocketAddr),
    /// No RTP from the caller for the inactivity timeout while it should be sending. Reported once.
    Inactive,
}

/// Packet counters since the last [`MediaSession::take_counts`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub sent: u64,
    pub received: u64,
    /// Packets the pacer skipped because the driver was late beyond [`MAX_CATCH_UP`].
    pub skipped: u64,
    /// Sends the socket refused (full buffer, unreachable).
    pub send_errors: u64,
}

pub struct MediaSession {
    params: MediaParams,
    latched: bool,
    playout: Playout,
    generation: u64,
    sender: RtpSender,
    first_packet: bool,
    pacer: Pacer,
    rfc4733: Rfc4733Receiver,
    inband: Option<InbandDetector>,
    last_rx: Instant,
    inactivity: Duration,
    inactive_reported: bool,
    events: VecDeque<MediaEvent>,
    counts: Counts,
    payload: Vec<u8>,
    packet: Vec<u8>,
    /// `packet` holds a silence packet of the current format: while the playout is idle, the
    /// next packets only get a new header (no payload cut, no packet built).
    silence_built: bool,
    pcm: Vec<i16>,
}

impl MediaSession {
    /// A session whose first packet is due at `start` (the driver picks it on its own grid).
    pub fn new(params: MediaParams, start: Instant, inactivity: Duration) -> Self {
        let bytes = (8 * params.ptime.max(1)) as usize;
        MediaSession {
            playout: Playout::new(params.codec, params.ptime),
            pacer: Self::pacer(start, params.ptime),
            inband: params.te_pt.is_none().then(InbandDetector::new),
            params,
            latched: false,
            generation: 0,
            sender: RtpSender::new(),
            first_packet: true,
            rfc4733: Rfc4733Receiver::new(),
            last_rx: start,
            inactivity,
            inactive_reported: false,
            events: VecDeque::new(),
            counts: Counts::default(),
            payload: Vec::with_capacity(bytes),
            packet: Vec::with_capacity(bytes + 12),
            silence_built: false,
            pcm: Vec::with_capacity(bytes),
        }
    }

    fn pacer(start: Instant, ptime: u32) -> Pacer {
        Pacer::new(start, Duration::from_millis(u64::from(ptime.max(1))))
            .with_max_burst(MAX_CATCH_UP)
    }

    pub fn params(&self) -> &MediaParams {
        &self.params
    }

    /// Where packets go now (the latched source, else the SDP address).
    pub fn remote(&self) -> Option<SocketAddr> {
        self.params.remote
    }

    /// When [`MediaSession::on_tick`] next has something to do.
    pub fn next_deadline(&self) -> Instant {
        self.pacer.next_deadline()
    }

    /// Applies renegotiated media (a re-INVITE). A new codec or packet time restarts the clock at
    /// `restart` (the driver's grid) and keeps the prompt position; a resumed stream restarts the
    /// inactivity clock (the silence of a hold is not inactivity). Returns true when the clock
    /// was restarted, so the driver reschedules the session.
    pub fn update(&mut self, mut params: MediaParams, now: Instant, restart: Instant) -> bool {
        if self.latched {
            params.remote = self.params.remote;
        }
        if params.receives && !self.params.receives {
            self.last_rx = now;
            self.inactive_reported = false;
        }
        if params.te_pt.is_none() && self.inband.is_none() {
            self.inband = Some(InbandDetector::new());
        }
        let format_changed = params.codec != self.params.codec || params.ptime != self.params.ptime;
        if format_changed {
            self.silence_built = false;
            self.playout.reconfigure(params.codec, params.ptime);
            self.pacer = Self::pacer(restart, params.ptime);
        }
        self.params = params;
        format_changed
    }

    /// Replaces what is playing; [`MediaEvent::PlaybackFinished`] with `generation` follows when
    /// the queue has been sent (at once for an empty queue).
    pub fn play(&mut self, prompts: impl IntoIterator<Item = Arc<Prompt>>, generation: u64) {
        self.generation = generation;
        self.silence_built = false;
        self.playout.play(prompts);
    }

    /// Stops playback (barge-in); no `PlaybackFinished` follows.
    pub fn stop(&mut self) {
        self.playout.stop();
    }

    /// Sends what is due at `now` through `send` (packet bytes, destination; true when the socket
    /// took it) and checks inactivity. A late call sends at most [`MAX_CATCH_UP`] packets back to
    /// back and skips the older ones: their audio and RTP timestamps are passed over, so the
    /// stream stays on real time.
    pub fn on_tick(&mut self, now: Instant, mut send: impl FnMut(&[u8], SocketAddr) -> bool) {
        let due = self.pacer.catch_up_detailed(now);
        let spp = self.playout.samples_per_packet() as u32;
        for i in 0..due.skipped + due.send {
            let sending = i >= due.skipped;
            // Idle with a silence packet at hand: only its header changes.
            let reuse = self.silence_built && self.playout.is_idle();
            let mut finished = false;
            // The payload was cut while idle: all silence (a frame with a prompt's end is not).
            let mut silence = reuse;
            if !reuse {
                silence = self.playout.is_idle();
                finished = self.playout.next_payload(&mut self.payload).queue_finished;
            }
            if sending && self.params.sends {
                if let Some(remote) = self.params.remote {
                    if !(reuse && self.sender.rebuild_header(&mut self.packet)) {
                        self.sender.build(
                            self.params.codec.payload_type(),
                            self.first_packet,
                            &self.payload,
                            &mut self.packet,
                        );
                        // Only a packet actually built from silence may be reused.
                        self.silence_built = silence;
                    }
                    self.first_packet = false;
                    if send(&self.packet, remote) {
                        self.counts.sent += 1;
                    } else {
                        self.counts.send_errors += 1;
                    }
                }
            }
            self.sender.advance_timestamp(spp);
            if sending {
                self.pacer.tick();
            }
            if finished {
                self.events.push_back(MediaEvent::PlaybackFinished {
                    generation: self.generation,
                });
            }
        }
        self.counts.skipped += due.skipped;
        if self.params.receives
            && !self.inactive_reported
            && now.saturating_duration_since(self.last_rx) >= self.inactivity
        {
            self.inactive_reported = true;
            self.events.push_back(MediaEvent::Inactive);
        }
    }

    /// One datagram received on the call's RTP port. The first RTP packet fixes where we send
    /// (symmetric RTP); packets from elsewhere afterwards are dropped.
    pub fn on_datagram(&mut self, now: Instant, data: &[u8], from: SocketAddr) {
        let Some(pkt) = rtp::parse(data) else {
            return;
        };
        if !self.latched {
            self.latched = true;
            if self.params.remote != Some(from) {
                self.events.push_back(MediaEvent::Latched(from));
            }
            self.params.remote = Some(from);
        } else if self.params.remote != Some(from) {
            return;
        }
        self.last_rx = now;
        self.counts.received += 1;
        if Some(pkt.pt) == self.params.te_pt {
            if let Some(d) = self.rfc4733.on_rtp(&pkt, pkt.pt) {
                self.events
                    .push_back(MediaEvent::Digit(d, DigitSource::Rfc4733));
            }
        } else if pkt.pt == self.params.codec.payload_type() {
            if let Some(det) = self.inband.as_mut() {
                self.pcm.clear();
                self.params.codec.decode(pkt.payload, &mut self.pcm);
                if let Some(d) = det.process(&self.pcm) {
                    self.events
                        .push_back(MediaEvent::Digit(d, DigitSource::Inband));
                }
            }
        }
    }

    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    /// The counters since the last call, reset.
    pub fn take_counts(&mut self) -> Counts {
        std::mem::take(&mut self.counts)
    }
}

#[cfg(test)]
impl MediaParams {
    /// What most phones agree on: PCMU at 20 ms, telephone-event at 101, both directions.
    pub(crate) fn usual_phone(remote: SocketAddr) -> MediaParams {
        MediaParams {
            codec: Codec::Pcmu,
            ptime: 20,
            te_pt: Some(101),
            sends: true,
            receives: true,
            remote: Some(remote),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::parse;

    const MS: Duration = Duration::from_millis(1);

    fn params() -> MediaParams {
        MediaParams::usual_phone("127.0.0.1:4000".parse().unwrap())
    }

    fn prompt(samples: usize) -> Arc<Prompt> {
        Arc::new(Prompt::from_pcm("p", vec![1000; samples]))
    }

    fn rtp(pt: u8, marker: bool, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut s = RtpSender::with_initial(7, seq, ts);
        let mut out = Vec::new();
        s.build(pt, marker, payload, &mut out);
        out
    }

    fn tick(s: &mut MediaSession, now: Instant) -> Vec<(Vec<u8>, SocketAddr)> {
        let mut out = Vec::new();
        s.on_tick(now, |p, to| {
            out.push((p.to_vec(), to));
            true
        });
        out
    }

    #[test]
    fn sends_one_packet_per_interval_and_reports_the_end_of_the_queue_once() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(params(), t0, Duration::from_secs(10));
        s.play([prompt(400)], 7);
        assert!(
            tick(&mut s, t0 - MS).is_empty(),
            "nothing before the first deadline"
        );
        let mut seqs = Vec::new();
        let mut finished = Vec::new();
        for n in 0..5u32 {
            let now = t0 + 20 * MS * n;
            let out = tick(&mut s, now);
            assert_eq!(out.len(), 1, "packet {n}");
            let p = parse(&out[0].0).unwrap();
            assert_eq!(p.payload.len(), 160);
            assert_eq!(p.marker, n == 0, "marker on the first packet only");
            seqs.push((p.seq, p.timestamp));
            while let Some(e) = s.poll_event() {
                finished.push((n, e));
            }
        }
        for w in seqs.windows(2) {
            assert_eq!(w[1].0, w[0].0.wrapping_add(1));
            assert_eq!(w[1].1, w[0].1.wrapping_add(160));
        }
        // 400 samples end inside the third packet.
        assert_eq!(
            finished,
            vec![(2, MediaEvent::PlaybackFinished { generation: 7 })]
        );
        assert_eq!(s.next_deadline(), t0 + 100 * MS);
        assert_eq!(s.take_counts().sent, 5);
    }

    #[test]
    fn silence_between_prompts_is_reused_and_a_new_prompt_replaces_it() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(params(), t0, Duration::from_secs(10));
        let mut all = Vec::new();
        let mut n = 0u32;
        let mut run = |s: &mut MediaSession, k: u32, all: &mut Vec<Vec<u8>>| {
            for _ in 0..k {
                for (p, _) in tick(s, t0 + 20 * MS * n) {
                    all.push(p);
                }
                n += 1;
            }
        };
        run(&mut s, 4, &mut all); // silence from the start
        s.play([prompt(320)], 1); // two packets of audio
        run(&mut s, 5, &mut all);
        s.play([prompt(160)], 2);
        run(&mut s, 3, &mut all);
        let silence = Codec::Pcmu.silence_byte();
        let audio = prompt(1).encoded(Codec::Pcmu)[0];
        let kinds: Vec<char> = all
            .iter()
            .map(|p| {
                let p = parse(p).unwrap();
                assert_eq!(p.payload.len(), 160);
                if p.payload.iter().all(|&b| b == silence) {
                    's'
                } else {
                    assert!(p.payload.iter().all(|&b| b == audio));
                    'a'
                }
            })
            .collect();
        assert_eq!(kinds.iter().collect::<String>(), "ssssaasssass");
        for (k, w) in all.windows(2).enumerate() {
            let (a, b) = (parse(&w[0]).unwrap(), parse(&w[1]).unwrap());
            assert_eq!(b.seq, a.seq.wrapping_add(1), "packet {k}");
            assert_eq!(b.timestamp, a.timestamp.wrapping_add(160), "packet {k}");
            assert!(!b.marker, "packet {k}");
        }
        assert!(parse(&all[0]).unwrap().marker);
    }

    #[test]
    fn a_late_driver_sends_a_bounded_burst_and_skips_the_rest_on_the_clock() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(params(), t0, Duration::from_secs(10));
        let first = tick(&mut s, t0);
        let ts0 = parse(&first[0].0).unwrap().timestamp;
        // 1 s late: 50 packets due, 3 sent, the rest skipped; timestamps stay on real time.
        let out = tick(&mut s, t0 + 1000 * MS);
        assert_eq!(out.len() as u64, MAX_CATCH_UP);
        let last = parse(&out.last().unwrap().0).unwrap();
        assert_eq!(last.timestamp.wrapping_sub(ts0), 50 * 160);
        let c = s.take_counts();
        assert_eq!((c.sent, c.skipped), (4, 47));
        assert_eq!(s.next_deadline(), t0 + 1020 * MS);
    }

    #[test]
    fn hold_keeps_the_clock_but_sends_nothing_and_resume_restarts_inactivity() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(params(), t0, Duration::from_millis(100));
        let held = MediaParams {
            sends: false,
            receives: false,
            ..params()
        };
        assert!(!s.update(held, t0, t0));
        for n in 0..20u32 {
            assert!(tick(&mut s, t0 + 20 * MS * n).is_empty());
        }
        assert_eq!(s.poll_event(), None, "silence on hold is not inactivity");
        let now = t0 + 400 * MS;
        assert!(!s.update(params(), now, now));
        assert_eq!(tick(&mut s, now).len(), 1);
        assert_eq!(s.poll_event(), None);
        tick(&mut s, now + 100 * MS);
        assert_eq!(s.poll_event(), Some(MediaEvent::Inactive));
        tick(&mut s, now + 200 * MS);
        assert_eq!(s.poll_event(), None, "reported once");
    }

    #[test]
    fn a_new_packet_time_restarts_the_clock_and_keeps_the_prompt_position() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(params(), t0, Duration::from_secs(10));
        s.play([prompt(1000)], 1);
        tick(&mut s, t0);
        let restart = t0 + 30 * MS;
        assert!(s.update(
            MediaParams {
                ptime: 30,
                codec: Codec::Pcma,
                ..params()
            },
            t0 + 25 * MS,
            restart
        ));
        assert_eq!(s.next_deadline(), restart);
        let out = tick(&mut s, restart);
        let p = parse(&out[0].0).unwrap();
        assert_eq!((p.pt, p.payload.len()), (8, 240));
    }

    #[test]
    fn latches_on_the_first_rtp_source_and_ignores_others() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(params(), t0, Duration::from_secs(10));
        let nat: SocketAddr = "192.0.2.7:30000".parse().unwrap();
        s.on_datagram(t0, &rtp(0, false, 1, 160, &[0xff; 160]), nat);
        assert_eq!(s.poll_event(), Some(MediaEvent::Latched(nat)));
        assert_eq!(tick(&mut s, t0)[0].1, nat);
        // A re-INVITE's SDP address does not undo the latch.
        s.update(params(), t0, t0);
        assert_eq!(s.remote(), Some(nat));
        // A stranger's telephone-event is not a digit.
        let stranger: SocketAddr = "192.0.2.9:40000".parse().unwrap();
        s.on_datagram(t0, &rtp(101, true, 5, 800, &[5, 0x0a, 0, 160]), stranger);
        assert_eq!(s.poll_event(), None);
        s.on_datagram(t0, &rtp(101, true, 2, 800, &[5, 0x0a, 0, 160]), nat);
        assert_eq!(
            s.poll_event(),
            Some(MediaEvent::Digit('5', DigitSource::Rfc4733))
        );
        // Garbage is dropped without a word.
        s.on_datagram(t0, &[0u8; 5], nat);
        s.on_datagram(t0, &[], nat);
        assert_eq!(s.poll_event(), None);
        assert_eq!(s.take_counts().received, 2);
    }

    #[test]
    fn inband_digits_without_telephone_event() {
        let t0 = Instant::now();
        let p = MediaParams {
            te_pt: None,
            ..params()
        };
        let mut s = MediaSession::new(p, t0, Duration::from_secs(10));
        let from = params().remote.unwrap();
        // '1' = 697 Hz + 1209 Hz, 100 ms, then 100 ms of silence.
        let tone: Vec<i16> = (0..800)
            .map(|i| {
                let t = i as f64 / 8000.0;
                let v = (2.0 * std::f64::consts::PI * 697.0 * t).sin()
                    + (2.0 * std::f64::consts::PI * 1209.0 * t).sin();
                (v * 6000.0) as i16
            })
            .chain(std::iter::repeat_n(0, 800))
            .collect();
        let mut digits = Vec::new();
        for (k, frame) in tone.chunks(160).enumerate() {
            let mut enc = Vec::new();
            Codec::Pcmu.encode(frame, &mut enc);
            s.on_datagram(t0, &rtp(0, false, k as u16, 160 * k as u32, &enc), from);
            while let Some(e) = s.poll_event() {
                digits.push(e);
            }
        }
        assert_eq!(digits, vec![MediaEvent::Digit('1', DigitSource::Inband)]);
    }
}
