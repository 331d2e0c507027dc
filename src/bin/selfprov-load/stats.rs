//! Measurement plumbing of the load generator: a fixed-size latency histogram (no allocation
//! per sample), per-call RTP receive statistics (loss from sequence gaps, inter-arrival
//! deviation from the packet interval), and `/proc` readings of a process's CPU time and RSS.

use selfprov::media::rtp::{SeqStatus, SeqTracker};
use std::time::{Duration, Instant};

/// Microsecond histogram: 1 µs buckets up to 10 ms, 100 µs buckets up to 1 s, then one
/// overflow bucket. 20,000 `u64`s (160 KB) whatever the number of samples; the exact maximum
/// is kept on the side.
#[derive(Debug, Clone)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max_us: u64,
    sum_us: u128,
}

const FINE_LIMIT_US: u64 = 10_000;
const COARSE_STEP_US: u64 = 100;
const COARSE_LIMIT_US: u64 = 1_000_000;
const BUCKETS: usize =
    (FINE_LIMIT_US + (COARSE_LIMIT_US - FINE_LIMIT_US) / COARSE_STEP_US + 1) as usize;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; BUCKETS],
            count: 0,
            max_us: 0,
            sum_us: 0,
        }
    }
}

impl Histogram {
    fn bucket(us: u64) -> usize {
        if us < FINE_LIMIT_US {
            us as usize
        } else if us < COARSE_LIMIT_US {
            (FINE_LIMIT_US + (us - FINE_LIMIT_US) / COARSE_STEP_US) as usize
        } else {
            BUCKETS - 1
        }
    }

    /// The smallest value of a bucket (what a percentile reports: never above the truth by more
    /// than the bucket width, 1 µs below 10 ms).
    fn bucket_floor(b: usize) -> u64 {
        let b = b as u64;
        if b < FINE_LIMIT_US {
            b
        } else {
            FINE_LIMIT_US + (b - FINE_LIMIT_US) * COARSE_STEP_US
        }
    }

    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.record_us(us);
    }

    pub fn record_us(&mut self, us: u64) {
        if let Some(b) = self.buckets.get_mut(Self::bucket(us)) {
            *b += 1;
        }
        self.count += 1;
        self.max_us = self.max_us.max(us);
        self.sum_us += us as u128;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max_us(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max_us)
    }

    pub fn mean_us(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_us as f64 / self.count as f64)
    }

    /// The value below which a fraction `q` (0..=1) of the samples lie (nearest rank), in µs;
    /// `None` without samples. The top rank reports the exact maximum.
    pub fn percentile_us(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        if rank >= self.count {
            return Some(self.max_us);
        }
        let mut seen = 0u64;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Self::bucket_floor(i).min(self.max_us));
            }
        }
        Some(self.max_us)
    }
}

/// RTP timestamp units per 20 ms G.711 packet.
const SAMPLES_PER_PACKET: u32 = 160;

/// What one call's RTP receiver saw.
#[derive(Debug, Default)]
pub struct RxStats {
    /// Packets of the server's stream (its first SSRC), any payload type.
    pub received: u64,
    /// Packets from another SSRC than the first one (a server that restarts its stream).
    pub other_ssrc: u64,
    pub duplicates: u64,
    /// Packets older than the newest seen (reordered).
    pub reordered: u64,
    /// Datagrams that are not RTP.
    pub not_rtp: u64,
    /// 20 ms packets the sender skipped: between two in-order audio packets the RTP timestamp
    /// moved on by more than 160 per sequence step (a sender that fell behind and kept its clock,
    /// which the sequence numbers do not show as loss; the listener hears a gap).
    pub sender_skipped: u64,
    /// (payload type, timestamp) of the newest in-order packet.
    last_pt_ts: Option<(u8, u32)>,
    ssrc: Option<u32>,
    seq: SeqTracker,
    first_ext: Option<u64>,
    last: Option<Instant>,
    pub first_at: Option<Instant>,
    pub last_at: Option<Instant>,
}

impl RxStats {
    /// Records one datagram that arrived at `at`; `interval` is the stream's packet interval.
    /// `deviation` (shared by all calls, so memory does not grow with them) gets
    /// |arrival gap − interval × sequence step| of every in-order packet after the first.
    pub fn on_datagram(
        &mut self,
        buf: &[u8],
        at: Instant,
        interval: Duration,
        deviation: &mut Histogram,
    ) {
        let Some(p) = selfprov::media::rtp::parse(buf) else {
            self.not_rtp += 1;
            return;
        };
        match self.ssrc {
            None => self.ssrc = Some(p.ssrc),
            Some(s) if s != p.ssrc => {
                self.other_ssrc += 1;
                return;
            }
            Some(_) => {}
        }
        self.received += 1;
        self.first_at.get_or_insert(at);
        self.last_at = Some(at);
        match self.seq.update(p.seq) {
            SeqStatus::First => {
                self.first_ext = self.seq.highest_extended();
                self.last = Some(at);
                self.last_pt_ts = Some((p.pt, p.timestamp));
            }
            SeqStatus::Newer { gap } => {
                let steps = u32::from(gap) + 1;
                if let Some((pt, ts)) = self.last_pt_ts {
                    // Audio to audio only (events keep their start timestamp).
                    if pt == p.pt && (pt == 0 || pt == 8) {
                        let ts_step = p.timestamp.wrapping_sub(ts);
                        // A backwards or absurd jump (> 10 s) is a new timeline, not skips.
                        if ts_step < 80_000 {
                            let packets = ts_step / SAMPLES_PER_PACKET;
                            self.sender_skipped += u64::from(packets.saturating_sub(steps));
                        }
                    }
                }
                self.last_pt_ts = Some((p.pt, p.timestamp));
                if let Some(prev) = self.last {
                    let expected = interval * (u32::from(gap) + 1);
                    let gap_t = at.saturating_duration_since(prev);
                    deviation.record(gap_t.abs_diff(expected));
                }
                self.last = Some(at);
            }
            SeqStatus::Duplicate => self.duplicates += 1,
            SeqStatus::Older { .. } => self.reordered += 1,
        }
    }

    /// Packets the sequence numbers say were sent (first to highest seen).
    pub fn expected(&self) -> u64 {
        match (self.first_ext, self.seq.highest_extended()) {
            (Some(first), Some(high)) => high.saturating_sub(first) + 1,
            _ => 0,
        }
    }

    /// Packets missing from the sequence (never negative: duplicates do not hide losses).
    pub fn lost(&self) -> u64 {
        let unique = self.received.saturating_sub(self.duplicates);
        self.expected().saturating_sub(unique)
    }
}

/// CPU time and resident memory of a process at one instant.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    pub at: Instant,
    /// utime + stime, seconds.
    pub cpu_s: f64,
    /// VmRSS, bytes.
    pub rss: u64,
}

/// Linux reports utime/stime in USER_HZ ticks, 100 on every architecture the kernel ships
/// (it is fixed at build time for the user ABI; `getconf CLK_TCK` prints it).
const USER_HZ: f64 = 100.0;

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status` (`pid` "self" for this process).
pub fn read_proc(pid: &str) -> Option<ProcSample> {
    let at = Instant::now();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let cpu_s = parse_stat_cpu(&stat)? as f64 / USER_HZ;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = parse_status_rss(&status)?;
    Some(ProcSample { at, cpu_s, rss })
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name (field 2)
/// is in parentheses and may itself contain spaces and parentheses: fields are counted from
/// the last `)`.
pub fn parse_stat_cpu(stat: &str) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    // After ')': field 3 (state) is the first; utime is field 14, so skip 11.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS:   12345 kB` → bytes.
pub fn parse_status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU use (percent of one core) and the highest RSS between two instants, from the samples
/// taken in that window (the first at or after `from`, the last at or before `to`).
pub fn window_usage(samples: &[ProcSample], from: Instant, to: Instant) -> Option<(f64, u64)> {
    let inside: Vec<&ProcSample> = samples
        .iter()
        .filter(|s| s.at >= from && s.at <= to)
        .collect();
    let (first, last) = (inside.first()?, inside.last()?);
    let dt = last.at.saturating_duration_since(first.at).as_secs_f64();
    if dt < 0.5 {
        return None;
    }
    let cpu = (last.cpu_s - first.cpu_s) / dt * 100.0;
    let rss = inside.iter().map(|s| s.rss).max()?;
    Some((cpu, rss))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_samples() {
        let mut h = Histogram::default();
        for us in 1..=1000u64 {
            h.record_us(us);
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.percentile_us(0.5), Some(500));
        assert_eq!(h.percentile_us(0.99), Some(990));
        assert_eq!(h.percentile_us(0.999), Some(999));
        assert_eq!(h.percentile_us(1.0), Some(1000));
        assert_eq!(h.max_us(), Some(1000));
        // Coarse range: floors to 100 µs, the top rank is the exact max.
        let mut h = Histogram::default();
        h.record_us(12_345);
        h.record_us(12_399);
        h.record_us(2_000_000);
        assert_eq!(h.percentile_us(0.34), Some(12_300));
        assert_eq!(h.percentile_us(1.0), Some(2_000_000));
        assert_eq!(Histogram::default().percentile_us(0.5), None);
    }

    fn pkt(seq: u16, ssrc: u32) -> Vec<u8> {
        pkt_ts(seq, ssrc, u32::from(seq.wrapping_add(2)) * 160)
    }

    fn pkt_ts(seq: u16, ssrc: u32, ts: u32) -> Vec<u8> {
        let mut s = selfprov::media::rtp::RtpSender::with_initial(ssrc, seq, ts);
        let mut out = Vec::new();
        s.build(0, false, &[0xFF; 160], &mut out);
        out
    }

    #[test]
    fn loss_deviation_and_wrap() {
        let iv = Duration::from_millis(20);
        let t0 = Instant::now();
        let mut rx = RxStats::default();
        let mut dev = Histogram::default();
        // 65534, 65535, 0, 2 one ms late (1 missing), duplicate 2, 1 late (reordered),
        // 5 on time (3 and 4 lost), another SSRC, garbage.
        rx.on_datagram(&pkt(65534, 7), t0, iv, &mut dev);
        rx.on_datagram(&pkt(65535, 7), t0 + iv, iv, &mut dev);
        rx.on_datagram(&pkt(0, 7), t0 + iv * 2, iv, &mut dev);
        rx.on_datagram(
            &pkt(2, 7),
            t0 + iv * 4 + Duration::from_millis(1),
            iv,
            &mut dev,
        );
        rx.on_datagram(&pkt(2, 7), t0 + iv * 5, iv, &mut dev);
        rx.on_datagram(&pkt(1, 7), t0 + iv * 5, iv, &mut dev);
        rx.on_datagram(&pkt(5, 7), t0 + iv * 7, iv, &mut dev);
        rx.on_datagram(&pkt(6, 99), t0 + iv * 8, iv, &mut dev);
        rx.on_datagram(b"not rtp", t0, iv, &mut dev);
        assert_eq!(rx.expected(), 8);
        assert_eq!(rx.received, 7);
        assert_eq!(rx.duplicates, 1);
        assert_eq!(rx.reordered, 1);
        assert_eq!(rx.lost(), 2);
        assert_eq!(rx.other_ssrc, 1);
        assert_eq!(rx.not_rtp, 1);
        // Deviations: 0, 0, 1 ms (late 2), 1 ms (5 is 1 ms less than 3 intervals after 2).
        assert_eq!(dev.count(), 4);
        assert_eq!(dev.max_us(), Some(1000));
        assert_eq!(dev.percentile_us(0.5), Some(0));
        assert_eq!(dev.percentile_us(0.75), Some(1000));
        assert_eq!(rx.sender_skipped, 0, "sequence gaps are loss, not skips");
    }

    #[test]
    fn sender_skips_from_timestamps() {
        let iv = Duration::from_millis(20);
        let t0 = Instant::now();
        let mut rx = RxStats::default();
        let mut dev = Histogram::default();
        // seq 10..12 at ts 0,160,320; seq 13 at ts 960 (3 packets skipped); seq 15 at 1440
        // (one lost, one more skipped... 1440-960 = 3 packets over 2 steps: 1 skipped).
        for (seq, ts) in [(10u16, 0u32), (11, 160), (12, 320), (13, 960), (15, 1440)] {
            rx.on_datagram(&pkt_ts(seq, 1, ts), t0, iv, &mut dev);
        }
        assert_eq!(rx.sender_skipped, 4);
        assert_eq!(rx.lost(), 1);
    }

    #[test]
    fn proc_parsing() {
        let stat = "1234 (sel f) prov)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(parse_stat_cpu(stat), Some(300));
        assert_eq!(parse_stat_cpu("garbage"), None);
        assert_eq!(
            parse_status_rss("Name:\tx\nVmRSS:\t   2048 kB\nVmSwap: 0 kB\n"),
            Some(2048 * 1024)
        );
        let me = read_proc("self").expect("/proc/self is readable");
        assert!(me.rss > 0);
    }

    #[test]
    fn window_usage_uses_samples_inside() {
        let t0 = Instant::now();
        let s = |ms: u64, cpu_s: f64, rss: u64| ProcSample {
            at: t0 + Duration::from_millis(ms),
            cpu_s,
            rss,
        };
        let samples = [
            s(0, 0.0, 1),
            s(1000, 1.0, 5),
            s(3000, 1.5, 9),
            s(4000, 9.0, 50),
        ];
        let (cpu, rss) = window_usage(
            &samples,
            t0 + Duration::from_millis(500),
            t0 + Duration::from_millis(3500),
        )
        .expect("two samples 2 s apart");
        assert!((cpu - 25.0).abs() < 1e-9, "{cpu}");
        assert_eq!(rss, 9);
        assert!(window_usage(&samples, t0, t0).is_none());
    }
}
