//! The run's result: computed once from the engine at the end, printed as a table for people
//! and as one JSON line for scripts (`deploy/bench.sh` appends it to its results file).

use crate::stats::{window_usage, Histogram, ProcSample};
use crate::{tally, Engine};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Instant;

/// Percentiles in milliseconds (null without samples).
#[derive(Debug, Serialize, Default)]
pub struct Percentiles {
    pub samples: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub mean_ms: Option<f64>,
}

impl Percentiles {
    fn of(h: &Histogram) -> Percentiles {
        let ms = |us: Option<u64>| us.map(|u| u as f64 / 1000.0);
        Percentiles {
            samples: h.count(),
            p50_ms: ms(h.percentile_us(0.5)),
            p99_ms: ms(h.percentile_us(0.99)),
            p999_ms: ms(h.percentile_us(0.999)),
            max_ms: ms(h.max_us()),
            mean_ms: h.mean_us().map(|u| u / 1000.0),
        }
    }
}

impl Percentiles {
    /// Exact percentiles of a few samples (durations of any length).
    fn of_samples(mut v: Vec<std::time::Duration>) -> Percentiles {
        v.sort();
        let ms = |d: &std::time::Duration| d.as_secs_f64() * 1000.0;
        let at = |q: f64| {
            let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len().max(1)) - 1;
            v.get(i).map(ms)
        };
        Percentiles {
            samples: v.len() as u64,
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: v.last().map(ms),
            mean_ms: (!v.is_empty()).then(|| v.iter().map(ms).sum::<f64>() / v.len() as f64),
        }
    }
}

/// Phone mode: registration and the resync NOTIFY after each provisioning, timed from the
/// first packet of the script's last key.
#[derive(Debug, Serialize, Default)]
pub struct PhoneReport {
    /// Phones whose REGISTER got a 2xx.
    pub registered: u64,
    /// Phones the server hung up on after every key was sent: each should get a NOTIFY if its
    /// provisioning succeeded (the caller cannot tell from SIP; count the devices bound).
    pub notify_expected: u64,
    pub notify_received: u64,
    /// NOTIFYs by Event header (`check-sync;reboot=true`...).
    pub notify_events: BTreeMap<String, u64>,
    /// NOTIFYs to contacts that are not ours (answered 404).
    pub notify_unmatched: u64,
    /// Last key → NOTIFY, end to end (includes the closing prompts the caller hears).
    pub key_to_notify: Percentiles,
    /// Last key → first packet of sound (key detected, provisioning committed, prompt begun,
    /// and the prompt's own lead-in: 50 ms of near-silence in the shipped prompts). Only means
    /// that when no prompt is playing as the key goes out: a prompt still playing counts as
    /// sound at once.
    pub key_to_audio: Percentiles,
    /// First packet of sound → the server's BYE (the closing prompts playing).
    pub audio_to_bye: Percentiles,
    /// The server's BYE → NOTIFY (the resync: contacts looked up, NOTIFY built and sent).
    pub bye_to_notify: Percentiles,
}

fn phone_report(e: &Engine) -> PhoneReport {
    let mut r = PhoneReport {
        notify_unmatched: e.counters.notify_unmatched,
        ..PhoneReport::default()
    };
    let (mut k2n, mut k2a, mut a2b, mut b2n) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let gap = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
        (Some(a), Some(b)) => Some(b.saturating_duration_since(a)),
        _ => None,
    };
    for c in &e.calls {
        r.registered += u64::from(c.registered);
        if let Some(ev) = &c.notify_event {
            *r.notify_events.entry(ev.clone()).or_insert(0) += 1;
        }
        r.notify_received += u64::from(c.notify_at.is_some());
        let all_keys = c
            .media
            .as_ref()
            .is_some_and(|m| m.keys_sent == c.script.keys.len() as u64);
        if c.server_bye_at.is_some() && all_keys {
            r.notify_expected += 1;
        }
        k2n.extend(gap(c.last_key_at, c.notify_at));
        k2a.extend(gap(c.last_key_at, c.audio_after_last_key));
        a2b.extend(gap(c.audio_after_last_key, c.server_bye_at));
        b2n.extend(gap(c.server_bye_at, c.notify_at));
    }
    r.key_to_notify = Percentiles::of_samples(k2n);
    r.key_to_audio = Percentiles::of_samples(k2a);
    r.audio_to_bye = Percentiles::of_samples(a2b);
    r.bye_to_notify = Percentiles::of_samples(b2n);
    r
}

/// CPU (% of one core) and memory of a process over the steady-state window.
#[derive(Debug, Serialize, Default)]
pub struct ProcUsage {
    pub cpu_percent: Option<f64>,
    pub cpu_percent_per_call: Option<f64>,
    pub rss_mb: Option<f64>,
    pub rss_idle_mb: Option<f64>,
    pub rss_per_call_kb: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub label: String,
    pub target: String,
    pub calls_attempted: u64,
    pub calls_answered: u64,
    pub calls_failed: u64,
    pub failed_by_reason: BTreeMap<String, u64>,
    /// How calls ended: server_bye, our_bye, bye_timeout, aborted, failed.
    pub ended_by: BTreeMap<&'static str, u64>,
    pub rate_cps: f64,
    pub hold_s: f64,
    pub duration_s: f64,
    pub setup_latency: Percentiles,
    /// |inter-arrival − 20 ms| of the server's RTP, all calls.
    pub rtp_deviation: Percentiles,
    pub rtp_received: u64,
    pub rtp_lost: u64,
    pub rtp_loss_percent: f64,
    /// Packets the server skipped (its timestamps jumped ahead of its sequence numbers).
    pub rtp_sender_skipped: u64,
    pub rtp_sender_skipped_percent: f64,
    /// Mean packets per second per answered call (first to last packet).
    pub rtp_pps_mean: Option<f64>,
    pub rtp_pps_min: Option<f64>,
    /// Answered calls that received no RTP at all.
    pub calls_without_rtp: u64,
    pub rtp_sent: u64,
    pub digits_scripted: u64,
    pub digits_sent: u64,
    /// Answered calls whose every scripted key went out.
    pub calls_all_digits_sent: u64,
    pub steady_window_s: Option<f64>,
    pub server: Option<ProcUsage>,
    pub loadgen_cpu_percent: Option<f64>,
    pub loadgen_cpu_percent_window: Option<f64>,
    pub loadgen_rss_mb: Option<f64>,
    pub sip_unparseable: u64,
    pub sip_unmatched: u64,
    pub invite_retransmissions: u64,
    pub send_errors: u64,
    pub late_ticks: u64,
    /// How late the load generator's wheel ran (its own scheduling delay).
    pub loop_lag: Percentiles,
    pub skipped_ticks: u64,
    /// RTP sockets on which the kernel would not timestamp arrivals (their packets are timed
    /// when read, up to 20 ms late: the jitter figures are then not to be trusted).
    pub rtp_sockets_without_kernel_timestamps: u64,
    /// Phone mode only (`--register`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<PhoneReport>,
}

const MB: f64 = 1024.0 * 1024.0;

pub fn build(
    e: &Engine,
    self_start: Option<ProcSample>,
    self_end: Option<ProcSample>,
    ended_at: Instant,
) -> Report {
    let ends: Vec<_> = e.calls.iter().filter_map(|c| c.end.as_ref()).collect();
    let (failed_by_reason, ended_by) = tally(ends.iter().copied());
    let answered: Vec<_> = e.calls.iter().filter(|c| c.answered_at.is_some()).collect();
    let deviation = &e.deviation;
    let (mut received, mut lost, mut expected, mut skipped) = (0u64, 0u64, 0u64, 0u64);
    let mut pps = Vec::new();
    let mut without_rtp = 0;
    for c in &answered {
        let rx = &c.rx;
        received += rx.received;
        lost += rx.lost();
        expected += rx.expected();
        skipped += rx.sender_skipped;
        match (rx.first_at, rx.last_at) {
            (Some(a), Some(b)) if b > a => {
                pps.push((rx.received.saturating_sub(1)) as f64 / (b - a).as_secs_f64())
            }
            _ => {}
        }
        if rx.received == 0 {
            without_rtp += 1;
        }
    }
    let digits_scripted: u64 = answered.iter().map(|c| c.script.keys.len() as u64).sum();
    let digits_sent: u64 = answered
        .iter()
        .filter_map(|c| c.media.as_ref())
        .map(|m| m.keys_sent)
        .sum();
    let all_digits = answered
        .iter()
        .filter(|c| {
            c.media
                .as_ref()
                .is_some_and(|m| m.keys_sent == c.script.keys.len() as u64)
        })
        .count() as u64;
    let rtp_sent = e
        .calls
        .iter()
        .filter_map(|c| c.media.as_ref())
        .map(|m| m.packets_sent)
        .sum();

    // Steady state: every call set up (half a second of margin) until the first answered call
    // ends.
    let window = match (e.settled_at, e.first_end_at) {
        (Some(a), Some(b)) => Some((a + std::time::Duration::from_millis(500), b)),
        (Some(a), None) => Some((a + std::time::Duration::from_millis(500), ended_at)),
        _ => None,
    }
    .filter(|(a, b)| b > a);
    let n_up = answered.len().max(1) as f64;
    let server = e.args.server_pid.map(|_| {
        let idle = e.server_idle.map(|s| s.rss as f64);
        let mut u = ProcUsage {
            rss_idle_mb: idle.map(|r| r / MB),
            ..ProcUsage::default()
        };
        if let Some((cpu, rss)) = window.and_then(|(a, b)| window_usage(&e.server_samples, a, b)) {
            u.cpu_percent = Some(cpu);
            u.cpu_percent_per_call = Some(cpu / n_up);
            u.rss_mb = Some(rss as f64 / MB);
            u.rss_per_call_kb = idle.map(|i| (rss as f64 - i) / 1024.0 / n_up);
        }
        u
    });
    let loadgen_cpu = match (self_start, self_end) {
        (Some(a), Some(b)) => {
            let dt = b.at.saturating_duration_since(a.at).as_secs_f64();
            (dt > 0.0).then(|| (b.cpu_s - a.cpu_s) / dt * 100.0)
        }
        _ => None,
    };
    let loadgen_window = window.and_then(|(a, b)| window_usage(&e.self_samples, a, b));
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    Report {
        label: e.args.label.clone(),
        target: e.args.target.to_string(),
        calls_attempted: e.calls.len() as u64,
        calls_answered: answered.len() as u64,
        calls_failed: failed_by_reason.values().sum(),
        failed_by_reason,
        ended_by,
        rate_cps: e.args.rate,
        hold_s: e.args.hold.as_secs_f64(),
        duration_s: ended_at.saturating_duration_since(e.t0).as_secs_f64(),
        setup_latency: Percentiles::of(&e.setup),
        rtp_deviation: Percentiles::of(deviation),
        rtp_received: received,
        rtp_lost: lost,
        rtp_loss_percent: if expected > 0 {
            lost as f64 * 100.0 / expected as f64
        } else {
            0.0
        },
        rtp_sender_skipped: skipped,
        rtp_sender_skipped_percent: if expected + skipped > 0 {
            skipped as f64 * 100.0 / (expected + skipped) as f64
        } else {
            0.0
        },
        rtp_pps_mean: mean(&pps),
        rtp_pps_min: pps.iter().copied().reduce(f64::min),
        calls_without_rtp: without_rtp,
        rtp_sent,
        digits_scripted,
        digits_sent,
        calls_all_digits_sent: all_digits,
        steady_window_s: window.map(|(a, b)| (b - a).as_secs_f64()),
        server,
        loadgen_cpu_percent: loadgen_cpu,
        loadgen_cpu_percent_window: loadgen_window.map(|(c, _)| c),
        loadgen_rss_mb: self_end.map(|s| s.rss as f64 / MB),
        sip_unparseable: e.counters.sip_unparseable,
        sip_unmatched: e.counters.sip_unmatched,
        invite_retransmissions: e.counters.invite_retransmissions,
        send_errors: e.counters.send_errors,
        late_ticks: e.counters.late_ticks,
        loop_lag: Percentiles::of(&e.loop_lag),
        skipped_ticks: e.counters.skipped_ticks,
        rtp_sockets_without_kernel_timestamps: e.no_kernel_stamps,
        phone: e.args.register.map(|_| phone_report(e)),
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

impl Report {
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn table(&self) -> String {
        let mut t = String::new();
        let pct = |p: &Percentiles| {
            format!(
                "p50 {}  p99 {}  p99.9 {}  max {} ms  ({} samples)",
                opt(p.p50_ms, 3),
                opt(p.p99_ms, 3),
                opt(p.p999_ms, 3),
                opt(p.max_ms, 3),
                p.samples
            )
        };
        let _ = writeln!(t, "selfprov-load against {} {}", self.target, self.label);
        let _ = writeln!(
            t,
            "  calls         attempted {}  answered {}  failed {}  (rate {} cps, hold {} s, run {:.1} s)",
            self.calls_attempted,
            self.calls_answered,
            self.calls_failed,
            self.rate_cps,
            self.hold_s,
            self.duration_s
        );
        for (why, n) in &self.failed_by_reason {
            let _ = writeln!(t, "    failed: {why}: {n}");
        }
        let ended: Vec<String> = self
            .ended_by
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(t, "  ended by      {}", ended.join(", "));
        let _ = writeln!(t, "  set-up        {}", pct(&self.setup_latency));
        let _ = writeln!(t, "  RTP jitter    {}", pct(&self.rtp_deviation));
        let _ = writeln!(
            t,
            "  RTP           received {}  lost {} ({:.3}%)  skipped by the server {} ({:.3}%)  pps/call mean {} min {}  calls without RTP {}  sent {}",
            self.rtp_received,
            self.rtp_lost,
            self.rtp_loss_percent,
            self.rtp_sender_skipped,
            self.rtp_sender_skipped_percent,
            opt(self.rtp_pps_mean, 1),
            opt(self.rtp_pps_min, 1),
            self.calls_without_rtp,
            self.rtp_sent
        );
        let _ = writeln!(
            t,
            "  digits        sent {} of {}  calls with every key sent {}",
            self.digits_sent, self.digits_scripted, self.calls_all_digits_sent
        );
        let _ = writeln!(t, "  steady window {} s", opt(self.steady_window_s, 1));
        if let Some(s) = &self.server {
            let _ = writeln!(
                t,
                "  server        CPU {}% of a core ({}% per call)  RSS {} MB (idle {} MB, {} KB per call)",
                opt(s.cpu_percent, 1),
                opt(s.cpu_percent_per_call, 4),
                opt(s.rss_mb, 1),
                opt(s.rss_idle_mb, 1),
                opt(s.rss_per_call_kb, 1)
            );
        }
        let _ = writeln!(
            t,
            "  load gen      CPU {}% over the run, {}% in the window, RSS {} MB",
            opt(self.loadgen_cpu_percent, 1),
            opt(self.loadgen_cpu_percent_window, 1),
            opt(self.loadgen_rss_mb, 1)
        );
        let _ = writeln!(t, "  load gen lag  {}", pct(&self.loop_lag));
        if let Some(p) = &self.phone {
            let events: Vec<String> = p
                .notify_events
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let _ = writeln!(
                t,
                "  phones        registered {}  NOTIFY received {} of {} expected ({})  unmatched {}",
                p.registered,
                p.notify_received,
                p.notify_expected,
                events.join(", "),
                p.notify_unmatched
            );
            let _ = writeln!(t, "  key → NOTIFY  {}", pct(&p.key_to_notify));
            let _ = writeln!(t, "  key → sound   {}", pct(&p.key_to_audio));
            let _ = writeln!(t, "  sound → BYE   {}", pct(&p.audio_to_bye));
            let _ = writeln!(t, "  BYE → NOTIFY  {}", pct(&p.bye_to_notify));
        }
        let _ = writeln!(
            t,
            "  anomalies     unparseable SIP {}  unmatched {}  INVITE retransmissions {}  send errors {}  late ticks {}  skipped ticks {}  RTP sockets without kernel timestamps {}",
            self.sip_unparseable,
            self.sip_unmatched,
            self.invite_retransmissions,
            self.send_errors,
            self.late_ticks,
            self.skipped_ticks,
            self.rtp_sockets_without_kernel_timestamps
        );
        t
    }
}
