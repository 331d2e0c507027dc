//! The process-wide metrics a Prometheus server scrapes at `GET /metrics` on the admin API
//! listener (`http.listen`; see docs/api.md, "Metrics", for the list).
//!
//! Built on `prometheus-client` (OpenMetrics text exposition). Every metric is an atomic: the
//! hot paths (calls, DTMF, RTP) never take a lock. Labelled families take a read lock on their
//! label map once per event (a call, a digit, a config fetch), never per RTP packet: RTP packets
//! are tallied per call in an [`RtpTally`] and added to the shared counters once a second's
//! worth of packets is counted and when the call ends. The one histogram,
//! `selfprov_media_engine_wake_lateness_seconds`, takes prometheus-client's (uncontended) mutex
//! once per media engine wake-up: at most 1,000 a second per engine, whatever the call count.
//!
//! One set exists per process ([`global`]); [`Metrics::new`] builds a private set for tests.

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;
use std::sync::LazyLock;

/// The content type of [`Metrics::encode`]'s text (OpenMetrics 1.0, which Prometheus asks for
/// and parses).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One label with a fixed set of values.
type Label = [(&'static str, &'static str); 1];

/// How an answered IVR call ended (`selfprov_calls_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The phone was bound to the caller's user.
    Provisioned,
    /// The caller declined at the confirmation step.
    Cancelled,
    /// Too many attempts, self-provisioning disabled, no extension, or the binding refused.
    Failed,
    /// The caller hung up (or RTP stopped) before a result.
    Abandoned,
    /// Answered but never established: no ACK, or an unusable SDP answer in it.
    NotEstablished,
}

impl CallOutcome {
    pub const ALL: [CallOutcome; 5] = [
        CallOutcome::Provisioned,
        CallOutcome::Cancelled,
        CallOutcome::Failed,
        CallOutcome::Abandoned,
        CallOutcome::NotEstablished,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Provisioned => "provisioned",
            CallOutcome::Cancelled => "cancelled",
            CallOutcome::Failed => "failed",
            CallOutcome::Abandoned => "abandoned",
            CallOutcome::NotEstablished => "not_established",
        }
    }

    /// The label of the IVR's outcome (`None`: the dialogue was cut before any result).
    pub fn of(outcome: Option<&crate::ivr::Outcome>) -> CallOutcome {
        use crate::ivr::Outcome;
        match outcome {
            Some(Outcome::Provisioned { .. }) => CallOutcome::Provisioned,
            Some(Outcome::Cancelled) => CallOutcome::Cancelled,
            Some(Outcome::Failed(_)) => CallOutcome::Failed,
            Some(Outcome::HungUp) | None => CallOutcome::Abandoned,
        }
    }
}

/// How a DTMF digit arrived (`selfprov_dtmf_digits_total{method}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfMethod {
    Rfc4733,
    Info,
    Inband,
}

impl DtmfMethod {
    pub const ALL: [DtmfMethod; 3] = [DtmfMethod::Rfc4733, DtmfMethod::Info, DtmfMethod::Inband];

    pub fn as_str(self) -> &'static str {
        match self {
            DtmfMethod::Rfc4733 => "rfc4733",
            DtmfMethod::Info => "info",
            DtmfMethod::Inband => "inband",
        }
    }
}

/// The result of a binding asked for by a call (`selfprov_provisionings_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisioningResult {
    /// The phone is bound to the user.
    Bound,
    /// Refused by the rules: bound to another user, device limit, profile, user disabled.
    Refused,
    /// The store failed.
    Error,
}

impl ProvisioningResult {
    pub const ALL: [ProvisioningResult; 3] = [
        ProvisioningResult::Bound,
        ProvisioningResult::Refused,
        ProvisioningResult::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProvisioningResult::Bound => "bound",
            ProvisioningResult::Refused => "refused",
            ProvisioningResult::Error => "error",
        }
    }
}

/// The result of one device's resync (`selfprov_resync_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncResult {
    /// NOTIFY sent and at least one contact sent a final response (whatever its status).
    Answered,
    /// NOTIFY sent; no contact answered before the transaction timed out.
    NoAnswer,
    /// Nothing sent: the device is gone or has no live registration.
    NotSent,
    /// The store or the SIP task failed, or the template's resync event is unusable.
    Error,
}

impl ResyncResult {
    pub const ALL: [ResyncResult; 4] = [
        ResyncResult::Answered,
        ResyncResult::NoAnswer,
        ResyncResult::NotSent,
        ResyncResult::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResyncResult::Answered => "answered",
            ResyncResult::NoAnswer => "no_answer",
            ResyncResult::NotSent => "not_sent",
            ResyncResult::Error => "error",
        }
    }
}

/// What a config file request (HTTP or TFTP) got (`selfprov_config_fetches_total{kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchKind {
    /// A guest config (a new phone, or one still in autoprov).
    Guest,
    /// A provisioned phone's own file.
    Provisioned,
    /// A vendor default file (no secret in it).
    Default,
    /// A per-device file refused (HTTP 403 or 401).
    Refused,
    NotFound,
    RateLimited,
    /// The config could not be built or rendered, or the store failed.
    Error,
}

impl FetchKind {
    pub const ALL: [FetchKind; 7] = [
        FetchKind::Guest,
        FetchKind::Provisioned,
        FetchKind::Default,
        FetchKind::Refused,
        FetchKind::NotFound,
        FetchKind::RateLimited,
        FetchKind::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FetchKind::Guest => "guest",
            FetchKind::Provisioned => "provisioned",
            FetchKind::Default => "default",
            FetchKind::Refused => "refused",
            FetchKind::NotFound => "not_found",
            FetchKind::RateLimited => "rate_limited",
            FetchKind::Error => "error",
        }
    }
}

/// A SIP status code as a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Status(u16);

impl EncodeLabelValue for Status {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        write!(encoder, "{}", self.0)
    }
}

/// Labels of the PBX connector series: the connector's name (and the result).
type ConnectorLabels = Vec<(&'static str, String)>;

/// The metrics. See the module doc; [`global`] is the process's set.
pub struct Metrics {
    registry: Registry,
    calls_active: Gauge,
    calls: Family<Label, Counter>,
    setup_rejected: Family<[(&'static str, Status); 1], Counter>,
    dtmf: Family<Label, Counter>,
    rtp_sent: Counter,
    rtp_received: Counter,
    rtp_skipped: Counter,
    provisionings: Family<Label, Counter>,
    registrations_active: Gauge,
    guests_registered: Gauge,
    resyncs: Family<Label, Counter>,
    config_fetches: Family<Label, Counter>,
    langpack_reloads: Family<Label, Counter>,
    media_wake_lateness: Histogram,
    pbx_deliveries: Family<ConnectorLabels, Counter>,
    pbx_outbox_pending: Family<ConnectorLabels, Gauge>,
    pbx_outbox_parked: Family<ConnectorLabels, Gauge>,
    pbx_delivery_seconds: Family<ConnectorLabels, Histogram, fn() -> Histogram>,
    binding_seconds: Histogram,
}

/// Buckets of the PBX delivery delay: 1 ms to about 33 s, by a factor of 1.5 (quantiles
/// interpolated within a bucket are good to a few per cent).
fn pbx_delivery_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1e-3, 1.5, 27))
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh set, every labelled series present at 0 (so `rate()` sees the first event, and
    /// a dashboard shows 0 rather than nothing), the start time set to now.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("selfprov");
        let m = Metrics {
            registry: Registry::default(),
            calls_active: Gauge::default(),
            calls: Family::default(),
            setup_rejected: Family::default(),
            dtmf: Family::default(),
            rtp_sent: Counter::default(),
            rtp_received: Counter::default(),
            rtp_skipped: Counter::default(),
            provisionings: Family::default(),
            registrations_active: Gauge::default(),
            guests_registered: Gauge::default(),
            resyncs: Family::default(),
            config_fetches: Family::default(),
            langpack_reloads: Family::default(),
            // 50 µs to 25.6 ms, doubling.
            media_wake_lateness: Histogram::new(exponential_buckets(50e-6, 2.0, 10)),
            pbx_deliveries: Family::default(),
            pbx_outbox_pending: Family::default(),
            pbx_outbox_parked: Family::default(),
            pbx_delivery_seconds: Family::new_with_constructor(pbx_delivery_histogram),
            // 0.5 ms to about 1.9 s, by a factor of 1.5.
            binding_seconds: Histogram::new(exponential_buckets(5e-4, 1.5, 21)),
        };
        registry.register(
            "pbx_delivery_seconds",
            "From the commit of a change (a binding...) to its delivery to the PBX, by connector",
            m.pbx_delivery_seconds.clone(),
        );
        registry.register(
            "binding_seconds",
            "How long the IVR's binding of a phone took (the store transaction, outbox rows \
             included), refusals too",
            m.binding_seconds.clone(),
        );
        registry.register(
            "pbx_deliveries",
            "PBX outbox rows tried, by connector and result (delivered; retry: the PBX was \
             unavailable or refused, tried again later; parked: refused park_after times)",
            m.pbx_deliveries.clone(),
        );
        registry.register(
            "pbx_outbox_pending",
            "PBX outbox rows waiting for delivery, by connector",
            m.pbx_outbox_pending.clone(),
        );
        registry.register(
            "pbx_outbox_parked",
            "PBX outbox rows parked after repeated refusals, by connector (`selfprov pbx status`)",
            m.pbx_outbox_parked.clone(),
        );
        // Counters get their `_total` suffix from the encoder.
        registry.register(
            "calls_active",
            "IVR calls in progress (answered, not yet ended)",
            m.calls_active.clone(),
        );
        registry.register(
            "calls",
            "IVR calls ended, by outcome (provisioned, cancelled, failed, abandoned, \
             not_established)",
            m.calls.clone(),
        );
        registry.register(
            "call_setup_rejected",
            "IVR calls rejected by the call task before the answer (no RTP port: 503; unusable \
             SDP offer: 488 or 400), by SIP status",
            m.setup_rejected.clone(),
        );
        registry.register(
            "dtmf_digits",
            "DTMF digits received, by method (rfc4733, info, inband)",
            m.dtmf.clone(),
        );
        registry.register(
            "rtp_packets_sent",
            "RTP packets sent to callers (updated by each media task at least once a second \
             and at the end of each call)",
            m.rtp_sent.clone(),
        );
        registry.register(
            "rtp_packets_received",
            "RTP packets received from callers on the latched stream (updated like \
             rtp_packets_sent)",
            m.rtp_received.clone(),
        );
        registry.register(
            "rtp_packets_skipped",
            "RTP packets not sent because the media task was late beyond its catch-up bound \
             (3 packets): the stream skips that audio to stay on time. Above 0, the server is \
             overloaded (updated like rtp_packets_sent)",
            m.rtp_skipped.clone(),
        );
        registry.register(
            "provisionings",
            "Bindings of a phone to a user asked for by a call, by result (bound, refused, \
             error)",
            m.provisionings.clone(),
        );
        registry.register(
            "registrations_active",
            "Live registrar bindings (contacts), all accounts",
            m.registrations_active.clone(),
        );
        registry.register(
            "guests_registered",
            "Guest (autoprov) accounts with at least one live registrar binding",
            m.guests_registered.clone(),
        );
        registry.register(
            "resync",
            "Resyncs of a device after a binding or an API request, by result (answered, \
             no_answer, not_sent, error)",
            m.resyncs.clone(),
        );
        registry.register(
            "config_fetches",
            "Phone config file requests over HTTP and TFTP, by what was served (guest, \
             provisioned, default) or why not (refused, not_found, rate_limited, error)",
            m.config_fetches.clone(),
        );
        registry.register(
            "langpack_reloads",
            "Language pack reloads (SIGHUP, API, language change), by result (ok, refused)",
            m.langpack_reloads.clone(),
        );
        let start: Gauge<f64, AtomicU64> = Gauge::default();
        start.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        registry.register_with_unit(
            "media_engine_wake_lateness",
            "How late a media engine woke for a packet slot, after the time the slot's packets \
             were due: what the callers see as jitter, from the server's side. A tail above a \
             millisecond means the engine's core is busy with other work",
            Unit::Seconds,
            m.media_wake_lateness.clone(),
        );
        registry.register_with_unit(
            "process_start_time",
            "Start time of the process since the Unix epoch",
            Unit::Seconds,
            start,
        );
        for o in CallOutcome::ALL {
            drop(m.calls.get_or_create(&[("outcome", o.as_str())]));
        }
        for d in DtmfMethod::ALL {
            drop(m.dtmf.get_or_create(&[("method", d.as_str())]));
        }
        for r in ProvisioningResult::ALL {
            drop(m.provisionings.get_or_create(&[("result", r.as_str())]));
        }
        for r in ResyncResult::ALL {
            drop(m.resyncs.get_or_create(&[("result", r.as_str())]));
        }
        for k in FetchKind::ALL {
            drop(m.config_fetches.get_or_create(&[("kind", k.as_str())]));
        }
        // The statuses the call task rejects with (others appear when first used).
        for status in [400, 488, 503] {
            drop(
                m.setup_rejected
                    .get_or_create(&[("status", Status(status))]),
            );
        }
        for r in ["ok", "refused"] {
            drop(m.langpack_reloads.get_or_create(&[("result", r)]));
        }
        Metrics { registry, ..m }
    }

    /// The OpenMetrics text exposition of every metric ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail; an encoder error would be a bug in a metric.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding the metrics failed");
        }
        out
    }

    /// Counts an answered call in progress until the returned guard is dropped.
    pub fn call_active(&'static self) -> ActiveCall {
        self.calls_active.inc();
        ActiveCall { metrics: self }
    }

    pub fn call_ended(&self, outcome: CallOutcome) {
        self.calls
            .get_or_create(&[("outcome", outcome.as_str())])
            .inc();
    }

    pub fn call_setup_rejected(&self, status: u16) {
        self.setup_rejected
            .get_or_create(&[("status", Status(status))])
            .inc();
    }

    pub fn dtmf_digit(&self, method: DtmfMethod) {
        self.dtmf
            .get_or_create(&[("method", method.as_str())])
            .inc();
    }

    /// A per-call RTP tally that adds to the shared counters in batches.
    pub fn rtp_tally(&'static self) -> RtpTally {
        RtpTally {
            metrics: self,
            sent: 0,
            received: 0,
            skipped: 0,
        }
    }

    pub fn provisioning(&self, result: ProvisioningResult) {
        self.provisionings
            .get_or_create(&[("result", result.as_str())])
            .inc();
    }

    /// Sets the registrar gauges: live bindings, and guest accounts with a binding.
    pub fn set_registrations(&self, bindings: usize, guests: usize) {
        self.registrations_active
            .set(i64::try_from(bindings).unwrap_or(i64::MAX));
        self.guests_registered
            .set(i64::try_from(guests).unwrap_or(i64::MAX));
    }

    pub fn resync(&self, result: ResyncResult) {
        self.resyncs
            .get_or_create(&[("result", result.as_str())])
            .inc();
    }

    pub fn config_fetch(&self, kind: FetchKind) {
        self.config_fetches
            .get_or_create(&[("kind", kind.as_str())])
            .inc();
    }

    /// A media engine woke `late` after the slot it was woken for was due.
    pub fn media_wake_lateness(&self, late: std::time::Duration) {
        self.media_wake_lateness.observe(late.as_secs_f64());
    }

    /// One PBX delivery attempt: `result` is `delivered`, `retry` or `parked`.
    pub fn pbx_delivery(&self, connector: &str, result: &'static str) {
        self.pbx_deliveries
            .get_or_create(&vec![
                ("connector", connector.to_string()),
                ("result", result.to_string()),
            ])
            .inc();
    }

    /// Creates a connector's series at 0 (a dashboard shows 0 rather than nothing).
    pub fn pbx_connector(&self, connector: &str) {
        for result in ["delivered", "retry", "parked"] {
            drop(self.pbx_deliveries.get_or_create(&vec![
                ("connector", connector.to_string()),
                ("result", result.to_string()),
            ]));
        }
        self.set_pbx_outbox(connector, 0, 0);
    }

    /// A change reached the PBX `delay` after its commit.
    pub fn pbx_delivered_after(&self, connector: &str, delay: std::time::Duration) {
        self.pbx_delivery_seconds
            .get_or_create(&vec![("connector", connector.to_string())])
            .observe(delay.as_secs_f64());
    }

    /// The IVR bound (or refused to bind) a phone in `took`.
    pub fn binding(&self, took: std::time::Duration) {
        self.binding_seconds.observe(took.as_secs_f64());
    }

    /// A connector's outbox depth.
    pub fn set_pbx_outbox(&self, connector: &str, pending: u64, parked: u64) {
        let label = vec![("connector", connector.to_string())];
        self.pbx_outbox_pending
            .get_or_create(&label)
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.pbx_outbox_parked
            .get_or_create(&label)
            .set(i64::try_from(parked).unwrap_or(i64::MAX));
    }

    pub fn langpack_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "refused" };
        self.langpack_reloads
            .get_or_create(&[("result", result)])
            .inc();
    }
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics (created, with the start time, on first use: the server touches it at
/// start-up).
pub fn global() -> &'static Metrics {
    &GLOBAL
}

/// Keeps `selfprov_calls_active` counting a call until dropped (whatever path ends the call).
#[derive(Debug)]
pub struct ActiveCall {
    metrics: &'static Metrics,
}

impl Drop for ActiveCall {
    fn drop(&mut self) {
        self.metrics.calls_active.dec();
    }
}

/// RTP packets not yet added to the shared counters: plain integers on one media task, added
/// every [`RtpTally::BATCH`] packets, on [`RtpTally::flush`] and on drop.
#[derive(Debug)]
pub struct RtpTally {
    metrics: &'static Metrics,
    sent: u64,
    received: u64,
    skipped: u64,
}

impl RtpTally {
    /// One second of 20 ms packets.
    pub const BATCH: u64 = 50;

    pub fn sent(&mut self) {
        self.sent += 1;
        if self.sent >= Self::BATCH {
            self.metrics.rtp_sent.inc_by(self.sent);
            self.sent = 0;
        }
    }

    pub fn received(&mut self) {
        self.received += 1;
        if self.received >= Self::BATCH {
            self.metrics.rtp_received.inc_by(self.received);
            self.received = 0;
        }
    }

    /// Counts several packets at once.
    pub fn add(&mut self, sent: u64, received: u64, skipped: u64) {
        self.sent += sent;
        self.received += received;
        self.skipped += skipped;
        if self.sent >= Self::BATCH || self.received >= Self::BATCH || self.skipped > 0 {
            self.flush();
        }
    }

    /// Adds what is pending now.
    pub fn flush(&mut self) {
        if self.skipped > 0 {
            self.metrics.rtp_skipped.inc_by(self.skipped);
            self.skipped = 0;
        }
        if self.sent > 0 {
            self.metrics.rtp_sent.inc_by(self.sent);
            self.sent = 0;
        }
        if self.received > 0 {
            self.metrics.rtp_received.inc_by(self.received);
            self.received = 0;
        }
    }
}

impl Drop for RtpTally {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the series `name` (with its labels, as written) in `text`.
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| {
            let (name, v) = l.rsplit_once(' ')?;
            (name == series).then(|| v.parse().ok())?
        })
    }

    fn leaked() -> &'static Metrics {
        Box::leak(Box::new(Metrics::new()))
    }

    #[test]
    fn fresh_exposition_has_every_series_at_zero_with_help_and_type() {
        let text = Metrics::new().encode();
        for (name, kind) in [
            ("selfprov_calls_active", "gauge"),
            ("selfprov_calls", "counter"),
            ("selfprov_call_setup_rejected", "counter"),
            ("selfprov_dtmf_digits", "counter"),
            ("selfprov_rtp_packets_sent", "counter"),
            ("selfprov_rtp_packets_received", "counter"),
            ("selfprov_rtp_packets_skipped", "counter"),
            ("selfprov_provisionings", "counter"),
            ("selfprov_registrations_active", "gauge"),
            ("selfprov_guests_registered", "gauge"),
            ("selfprov_resync", "counter"),
            ("selfprov_config_fetches", "counter"),
            ("selfprov_langpack_reloads", "counter"),
            ("selfprov_process_start_time_seconds", "gauge"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} {kind}:\n{text}"
            );
            assert!(text.contains(&format!("# HELP {name} ")), "{name}:\n{text}");
        }
        for o in CallOutcome::ALL {
            let s = format!("selfprov_calls_total{{outcome=\"{}\"}}", o.as_str());
            assert_eq!(value(&text, &s), Some(0.0), "{s}:\n{text}");
        }
        for k in FetchKind::ALL {
            let s = format!("selfprov_config_fetches_total{{kind=\"{}\"}}", k.as_str());
            assert_eq!(value(&text, &s), Some(0.0), "{s}:\n{text}");
        }
        assert_eq!(value(&text, "selfprov_rtp_packets_sent_total"), Some(0.0));
        assert_eq!(value(&text, "selfprov_calls_active"), Some(0.0));
        assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
        let start = value(&text, "selfprov_process_start_time_seconds").unwrap_or(0.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            start > 1.0e9 && start <= now,
            "start time {start}, now {now}"
        );
    }

    #[test]
    fn events_are_counted_under_their_labels() {
        let m = leaked();
        m.call_ended(CallOutcome::Provisioned);
        m.call_ended(CallOutcome::Abandoned);
        m.call_ended(CallOutcome::Abandoned);
        m.call_setup_rejected(488);
        m.call_setup_rejected(503);
        m.call_setup_rejected(503);
        m.dtmf_digit(DtmfMethod::Info);
        m.provisioning(ProvisioningResult::Refused);
        m.resync(ResyncResult::NoAnswer);
        m.config_fetch(FetchKind::RateLimited);
        m.langpack_reload(false);
        m.set_registrations(7, 2);
        let t = m.encode();
        let v = |s: &str| value(&t, s);
        assert_eq!(
            v("selfprov_calls_total{outcome=\"provisioned\"}"),
            Some(1.0)
        );
        assert_eq!(v("selfprov_calls_total{outcome=\"abandoned\"}"), Some(2.0));
        assert_eq!(v("selfprov_calls_total{outcome=\"failed\"}"), Some(0.0));
        assert_eq!(
            v("selfprov_call_setup_rejected_total{status=\"503\"}"),
            Some(2.0)
        );
        assert_eq!(
            v("selfprov_call_setup_rejected_total{status=\"488\"}"),
            Some(1.0)
        );
        assert_eq!(v("selfprov_dtmf_digits_total{method=\"info\"}"), Some(1.0));
        assert_eq!(
            v("selfprov_dtmf_digits_total{method=\"rfc4733\"}"),
            Some(0.0)
        );
        assert_eq!(
            v("selfprov_provisionings_total{result=\"refused\"}"),
            Some(1.0)
        );
        assert_eq!(v("selfprov_resync_total{result=\"no_answer\"}"), Some(1.0));
        assert_eq!(
            v("selfprov_config_fetches_total{kind=\"rate_limited\"}"),
            Some(1.0)
        );
        assert_eq!(
            v("selfprov_langpack_reloads_total{result=\"refused\"}"),
            Some(1.0)
        );
        assert_eq!(
            v("selfprov_langpack_reloads_total{result=\"ok\"}"),
            Some(0.0)
        );
        assert_eq!(v("selfprov_registrations_active"), Some(7.0));
        assert_eq!(v("selfprov_guests_registered"), Some(2.0));
    }

    #[test]
    fn active_calls_follow_the_guards() {
        let m = leaked();
        let a = m.call_active();
        let b = m.call_active();
        assert_eq!(value(&m.encode(), "selfprov_calls_active"), Some(2.0));
        drop(a);
        assert_eq!(value(&m.encode(), "selfprov_calls_active"), Some(1.0));
        drop(b);
        assert_eq!(value(&m.encode(), "selfprov_calls_active"), Some(0.0));
    }

    #[test]
    fn rtp_is_added_in_batches_and_on_drop() {
        let m = leaked();
        let sent = |m: &Metrics| value(&m.encode(), "selfprov_rtp_packets_sent_total");
        let received = |m: &Metrics| value(&m.encode(), "selfprov_rtp_packets_received_total");
        let mut tally = m.rtp_tally();
        for _ in 0..RtpTally::BATCH - 1 {
            tally.sent();
        }
        assert_eq!(sent(m), Some(0.0), "not yet a batch");
        tally.sent();
        assert_eq!(sent(m), Some(RtpTally::BATCH as f64), "a full batch");
        for _ in 0..3 {
            tally.sent();
            tally.received();
        }
        assert_eq!(received(m), Some(0.0));
        drop(tally);
        assert_eq!(
            sent(m),
            Some(RtpTally::BATCH as f64 + 3.0),
            "the rest on drop"
        );
        assert_eq!(received(m), Some(3.0));
        let mut tally = m.rtp_tally();
        tally.add(2, 1, 0);
        assert_eq!(sent(m), Some(RtpTally::BATCH as f64 + 3.0), "pending");
        tally.add(0, 0, 4);
        assert_eq!(
            sent(m),
            Some(RtpTally::BATCH as f64 + 5.0),
            "skips flush at once"
        );
        assert_eq!(
            value(&m.encode(), "selfprov_rtp_packets_skipped_total"),
            Some(4.0)
        );
    }

    #[test]
    fn ivr_outcomes_map_to_labels() {
        use crate::ivr::{FailReason, Outcome};
        assert_eq!(
            CallOutcome::of(Some(&Outcome::Provisioned {
                user_id: "u".into()
            })),
            CallOutcome::Provisioned
        );
        assert_eq!(
            CallOutcome::of(Some(&Outcome::Failed(FailReason::TooManyAttempts))),
            CallOutcome::Failed
        );
        assert_eq!(
            CallOutcome::of(Some(&Outcome::Cancelled)),
            CallOutcome::Cancelled
        );
        assert_eq!(
            CallOutcome::of(Some(&Outcome::HungUp)),
            CallOutcome::Abandoned
        );
        assert_eq!(CallOutcome::of(None), CallOutcome::Abandoned);
    }

    #[test]
    fn the_global_set_is_one_per_process() {
        assert!(std::ptr::eq(global(), global()));
    }
}
