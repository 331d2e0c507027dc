//! Drift-free packet pacing for the RTP send clock.
//!
//! Deadline `n` is computed as `start + n * interval` by one multiplication, never by adding
//! `interval` to the previous deadline: repeated addition accumulates any rounding and, worse,
//! every wake-up latency if the next deadline is taken from "now". With multiplication the
//! deadline of packet 1,000,000 is exactly 20,000 s after the start, whatever happened before.
//!
//! Late wake-ups (a busy runtime, a descheduled thread): [`Pacer::catch_up`] reports how many
//! packets are already due. The policy for RTP is to send late packets immediately, back to
//! back, up to a bound ([`Pacer::max_burst`], default [`DEFAULT_MAX_BURST`] = 5 packets =
//! 100 ms at 20 ms): a receiver's jitter buffer absorbs a short burst, and every packet keeps its
//! exact timestamp (the caller advances the RTP timestamp by one packet's samples per packet,
//! sent or skipped). Packets due beyond the bound are skipped: the pacer moves past them and
//! reports them as skipped, and the caller advances the RTP timestamp (and the prompt position)
//! by their samples without sending them, so the stream stays aligned to real time and the
//! receiver sees a timestamp jump without a sequence gap (as with silence suppression, RFC 3550
//! §5.1) instead of a long flood of stale audio.

use std::time::{Duration, Instant};

/// Default number of late packets sent back to back before the rest are skipped.
pub const DEFAULT_MAX_BURST: u64 = 5;

/// Deadlines `start + n * interval` for n = 0, 1, 2, ...
#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    interval: Duration,
    n: u64,
    max_burst: u64,
    skipped_total: u64,
}

/// The result of [`Pacer::catch_up_detailed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    /// Packets to send now, back to back (call [`Pacer::tick`] after each).
    pub send: u64,
    /// Packets skipped by this call (the pacer has already moved past them): advance the RTP
    /// timestamp by their samples without sending.
    pub skipped: u64,
}

impl Pacer {
    /// A pacer whose first deadline (n = 0) is `start`. `interval` must be non-zero; a zero
    /// interval is replaced by 1 ns to keep the arithmetic defined.
    pub fn new(start: Instant, interval: Duration) -> Self {
        let interval = if interval.is_zero() {
            Duration::from_nanos(1)
        } else {
            interval
        };
        Pacer {
            start,
            interval,
            n: 0,
            max_burst: DEFAULT_MAX_BURST,
            skipped_total: 0,
        }
    }

    /// Sets the late-packet bound (at least 1).
    pub fn with_max_burst(mut self, max_burst: u64) -> Self {
        self.max_burst = max_burst.max(1);
        self
    }

    /// The late-packet bound.
    pub fn max_burst(&self) -> u64 {
        self.max_burst
    }

    /// The packet interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Number of deadlines passed so far (packets sent plus packets skipped).
    pub fn ticks(&self) -> u64 {
        self.n
    }

    /// Total packets skipped by [`Pacer::catch_up`] since the start.
    pub fn skipped_total(&self) -> u64 {
        self.skipped_total
    }

    /// Deadline of packet `n`: `start + n * interval`, by multiplication. (Overflow would need a
    /// call lasting longer than `Instant` can represent, centuries; it saturates at `start`'s
    /// far future rather than panicking.)
    pub fn deadline_of(&self, n: u64) -> Instant {
        let nanos = self.interval.as_nanos().saturating_mul(n as u128);
        let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
        let offset = Duration::new(secs, (nanos % 1_000_000_000) as u32);
        self.start
            .checked_add(offset)
            .unwrap_or_else(|| self.start + Duration::from_secs(100 * 365 * 86_400))
    }

    /// Deadline of the next packet.
    pub fn next_deadline(&self) -> Instant {
        self.deadline_of(self.n)
    }

    /// Marks the next packet as sent.
    pub fn tick(&mut self) {
        self.n += 1;
    }

    /// How many packets are due at `now` (deadline <= now), bounded by the burst limit; packets
    /// beyond the bound are skipped (see the module doc). Does not tick for the packets to send:
    /// the caller calls [`Pacer::tick`] after sending each.
    pub fn catch_up(&mut self, now: Instant) -> u64 {
        self.catch_up_detailed(now).send
    }

    /// Like [`Pacer::catch_up`], also telling how many packets this call skipped.
    pub fn catch_up_detailed(&mut self, now: Instant) -> CatchUp {
        let next = self.next_deadline();
        if now < next {
            return CatchUp {
                send: 0,
                skipped: 0,
            };
        }
        // Index of the last deadline <= now, computed from the start (no accumulation).
        let elapsed = now.duration_since(self.start).as_nanos();
        let last = u64::try_from(elapsed / self.interval.as_nanos()).unwrap_or(u64::MAX);
        let due = last.saturating_sub(self.n).saturating_add(1);
        if due <= self.max_burst {
            return CatchUp {
                send: due,
                skipped: 0,
            };
        }
        // Keep the newest `max_burst` packets, skip the older ones.
        let skipped = due - self.max_burst;
        self.n += skipped;
        self.skipped_total += skipped;
        CatchUp {
            send: self.max_burst,
            skipped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS20: Duration = Duration::from_millis(20);

    #[test]
    fn no_drift_after_a_million_ticks() {
        let start = Instant::now();
        let mut p = Pacer::new(start, MS20);
        for _ in 0..1_000_000 {
            p.tick();
        }
        assert_eq!(p.next_deadline(), start + Duration::from_secs(20_000));
        assert_eq!(
            p.next_deadline() - start,
            Duration::from_millis(20) * 1_000_000
        );
    }

    #[test]
    fn non_integral_interval_does_not_accumulate_rounding() {
        // 1/3 ms intervals: adding 333_333 ns a million times would lose 333 us per million.
        let start = Instant::now();
        let interval = Duration::from_nanos(333_333);
        let p = Pacer::new(start, interval);
        assert_eq!(
            p.deadline_of(3_000_000) - start,
            Duration::from_nanos(999_999_000_000)
        );
        let mut acc = start;
        for _ in 0..3000 {
            acc += interval;
        }
        assert_eq!(
            p.deadline_of(3000),
            acc,
            "exact integer nanoseconds either way"
        );
    }

    #[test]
    fn catch_up_counts_due_packets() {
        let start = Instant::now() + Duration::from_secs(1);
        let mut p = Pacer::new(start, MS20);
        assert_eq!(p.catch_up(start - Duration::from_millis(1)), 0, "not yet");
        assert_eq!(p.catch_up(start), 1, "deadline reached exactly");
        assert_eq!(
            p.catch_up(start + Duration::from_millis(19)),
            1,
            "only packet 0 is due"
        );
        p.tick();
        assert_eq!(
            p.catch_up(start + Duration::from_millis(19)),
            0,
            "packet 1 at 20 ms"
        );
        assert_eq!(p.catch_up(start + Duration::from_millis(20)), 1);
        // Woke up 50 ms late for packet 1 (deadlines 20, 40, 60 ms have passed).
        assert_eq!(p.catch_up(start + Duration::from_millis(70)), 3);
        for _ in 0..3 {
            p.tick();
        }
        assert_eq!(p.next_deadline(), start + Duration::from_millis(80));
        assert_eq!(p.skipped_total(), 0);
    }

    #[test]
    fn long_stall_sends_a_bounded_burst_and_skips_the_rest() {
        let start = Instant::now();
        let mut p = Pacer::new(start, MS20).with_max_burst(5);
        // Stalled for one second: deadlines 0..=50 are due (51 packets).
        let c = p.catch_up_detailed(start + Duration::from_millis(1000));
        assert_eq!(
            c,
            CatchUp {
                send: 5,
                skipped: 46
            }
        );
        assert_eq!(p.ticks(), 46);
        // The packets to send are the newest ones: 46..=50.
        assert_eq!(p.next_deadline(), start + Duration::from_millis(46 * 20));
        for _ in 0..c.send {
            p.tick();
        }
        assert_eq!(p.next_deadline(), start + Duration::from_millis(1020));
        assert_eq!(p.skipped_total(), 46);
        // Nothing more due until 1020 ms; then back on the exact grid.
        assert_eq!(p.catch_up(start + Duration::from_millis(1019)), 0);
        assert_eq!(p.catch_up(start + Duration::from_millis(1020)), 1);
    }

    #[test]
    fn simulated_jittery_sender_stays_on_grid() {
        // Wake up at each deadline plus a pseudo-random 0..15 ms latency; after 10,000 packets
        // the deadlines are still on the 20 ms grid and no packet was lost or doubled.
        let start = Instant::now();
        let mut p = Pacer::new(start, MS20);
        let mut sent = 0u64;
        let mut x = 12345u64;
        while sent < 10_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let late = Duration::from_micros((x >> 33) % 15_000);
            let now = p.next_deadline() + late;
            let due = p.catch_up(now);
            assert!((1..=2).contains(&due));
            for _ in 0..due {
                p.tick();
                sent += 1;
            }
        }
        assert_eq!(p.skipped_total(), 0);
        assert_eq!(p.next_deadline() - start, MS20 * sent as u32);
    }
}
