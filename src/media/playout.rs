//! Playout: turns a queue of pre-encoded prompts into one RTP payload per packet interval.
//!
//! Pure logic, no I/O. Prompts are shared `Arc`s encoded once at load; a call only keeps a cursor
//! into them. Between and after prompts the stream carries codec silence so that it never stops
//! (phones and NAT bindings expect a continuous stream).

use crate::langpack::Prompt;
use crate::media::g711::Codec;
use std::collections::VecDeque;
use std::sync::Arc;

pub struct Playout {
    codec: Codec,
    samples_per_packet: usize,
    queue: VecDeque<Arc<Prompt>>,
    /// Byte offset into the front prompt (G.711: one byte per sample).
    offset: usize,
    /// Set when the queue ran dry; reported once by [`Playout::next_payload`].
    finished_pending: bool,
}

/// One packet's worth of audio.
pub struct Frame<'a> {
    pub payload: &'a [u8],
    /// The queue became empty with this frame: the IVR gets `PlaybackFinished`.
    pub queue_finished: bool,
}

impl Playout {
    pub fn new(codec: Codec, ptime_ms: u32) -> Self {
        Playout {
            codec,
            samples_per_packet: (8 * ptime_ms) as usize,
            queue: VecDeque::new(),
            offset: 0,
            finished_pending: false,
        }
    }

    /// Changes codec or packet time (a re-INVITE) without losing the queue or the position in it:
    /// G.711 is one byte per sample in both laws, so the byte offset stays valid.
    pub fn reconfigure(&mut self, codec: Codec, ptime_ms: u32) {
        self.codec = codec;
        self.samples_per_packet = (8 * ptime_ms) as usize;
    }

    pub fn samples_per_packet(&self) -> usize {
        self.samples_per_packet
    }

    /// Replaces whatever is playing with this queue. An empty queue counts as finished at once.
    pub fn play(&mut self, prompts: impl IntoIterator<Item = Arc<Prompt>>) {
        self.queue.clear();
        self.queue.extend(prompts);
        self.offset = 0;
        self.finished_pending = self.queue.is_empty();
    }

    /// Stops playback (barge-in). No `PlaybackFinished` is reported for an interrupted queue.
    pub fn stop(&mut self) {
        self.queue.clear();
        self.offset = 0;
        self.finished_pending = false;
    }

    pub fn is_playing(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Nothing queued and nothing to report: every next payload is silence.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && !self.finished_pending
    }

    /// The next packet's payload, written into `buf` (cleared first).
    pub fn next_payload<'a>(&mut self, buf: &'a mut Vec<u8>) -> Frame<'a> {
        buf.clear();
        let n = self.samples_per_packet;
        while buf.len() < n {
            let Some(front) = self.queue.front() else {
                break;
            };
            let data = front.encoded(self.codec);
            let take = (n - buf.len()).min(data.len().saturating_sub(self.offset));
            buf.extend_from_slice(&data[self.offset..self.offset + take]);
            self.offset += take;
            if self.offset >= data.len() {
                self.queue.pop_front();
                self.offset = 0;
                if self.queue.is_empty() {
                    self.finished_pending = true;
                }
            }
        }
        buf.resize(n, self.codec.silence_byte());
        let queue_finished = std::mem::take(&mut self.finished_pending);
        Frame {
            payload: buf,
            queue_finished,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(id: &str, samples: usize) -> Arc<Prompt> {
        // A ramp, so that positions in the encoded stream are recognisable.
        let pcm: Vec<i16> = (0..samples).map(|i| (i as i16).wrapping_mul(97)).collect();
        Arc::new(Prompt::from_pcm(id, pcm))
    }

    #[test]
    fn frames_are_contiguous_across_prompts_and_padded_with_silence() {
        let a = prompt("a", 200);
        let b = prompt("b", 100);
        let mut expected: Vec<u8> = a.encoded(Codec::Pcmu).to_vec();
        expected.extend_from_slice(b.encoded(Codec::Pcmu));
        let mut p = Playout::new(Codec::Pcmu, 20);
        p.play([a, b]);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        let mut finished_at = None;
        for i in 0..3 {
            let f = p.next_payload(&mut buf);
            assert_eq!(f.payload.len(), 160);
            if f.queue_finished {
                finished_at = Some(i);
            }
            got.extend_from_slice(f.payload);
        }
        assert_eq!(&got[..300], &expected[..]);
        assert!(got[300..].iter().all(|&b| b == Codec::Pcmu.silence_byte()));
        assert_eq!(
            finished_at,
            Some(1),
            "300 samples end inside the second 160-sample frame"
        );
        assert!(!p.is_playing());
    }

    #[test]
    fn reconfigure_keeps_the_queue_and_position() {
        let a = prompt("a", 400);
        let mut p = Playout::new(Codec::Pcmu, 20);
        p.play([a.clone()]);
        let mut buf = Vec::new();
        p.next_payload(&mut buf);
        p.reconfigure(Codec::Pcma, 10);
        let f = p.next_payload(&mut buf);
        assert_eq!(f.payload, &a.encoded(Codec::Pcma)[160..240]);
        assert!(p.is_playing());
    }

    #[test]
    fn stop_reports_no_finish_and_sends_silence() {
        let mut p = Playout::new(Codec::Pcma, 20);
        p.play([prompt("a", 1000)]);
        let mut buf = Vec::new();
        assert!(!p.next_payload(&mut buf).queue_finished);
        p.stop();
        let f = p.next_payload(&mut buf);
        assert!(!f.queue_finished);
        assert!(f.payload.iter().all(|&b| b == Codec::Pcma.silence_byte()));
    }

    #[test]
    fn empty_queue_finishes_at_once_and_ptime_sets_frame_size() {
        let mut p = Playout::new(Codec::Pcmu, 30);
        p.play(Vec::new());
        let mut buf = Vec::new();
        let f = p.next_payload(&mut buf);
        assert_eq!(f.payload.len(), 240);
        assert!(f.queue_finished);
        assert!(!p.next_payload(&mut buf).queue_finished, "reported once");
    }
}
