//! The provisioning HTTP server: phones GET their config files here (a listener of its own,
//! apart from the admin API: phones sit on a voice network that must not reach the API).
//!
//! Paths: `/<file>` (the bare path a phone finds through DHCP option 66/150) and
//! `/<config_key>/<file>` (the keyed path the guest config points the phone to). The file name
//! and User-Agent are mapped by [`super::route`]. What is served:
//!
//! - vendor default files (`XmlDefault.cnf.xml`, `000000000000.cfg`, `y0000000000xx.cfg`):
//!   to anyone, they hold no secret;
//! - an unknown MAC: rate-limited per source IP (a token bucket, `unknown_mac_per_minute`:
//!   scanners guess MACs; beyond it 429), then [`Store::autoprov_device`] and the guest config
//!   (a SIP account unique to the phone, config URL `<public_url>/<config_key>/`).
//!   Autoregistration disabled or its range full: 404 and a `warn!` saying what to set;
//! - a device in autoprov: its guest config;
//! - any other device (its file holds its users' SIP passwords): only under its key, or from
//!   the address its account last registered from (`last_ip`: Cisco phones cannot send a key
//!   or a digest), or, with `file_auth = url-key-or-digest`, with HTTP digest auth (RFC 7616)
//!   by line 1's credentials. Otherwise 403 (401 with a challenge when digest is allowed), and
//!   the refusal counts against the same per-IP budget as unknown MACs. A served file calls
//!   [`Store::config_fetched`] (`provisioning` → `provisioned`).
//!
//! Every request is logged in a `phoneprov` span (protocol, peer, file, vendor, mac) with its
//! outcome. See `docs/phones/security.md` for the trade-offs.
//!
//! The decision is protocol-neutral ([`ProvState::fetch`] → [`FetchResult`]): the HTTP handler
//! maps it to a response, the TFTP server ([`super::tftp`]) to DATA or an ERROR packet. TFTP
//! carries no User-Agent and no credentials, so over TFTP only the file name identifies the
//! phone and a provisioned phone's file is served under its key or to its registered address.

use super::{
    route, DeviceInfo, FileKind, PhoneConfig, Renderer, Request as FileRequest, SipServer,
    StoreLine,
};
use crate::config::FileAuth;
use crate::metrics::FetchKind;
use crate::sip::digest::{parse_authorization, DigestConfig, Outcome, Secret, Verifier};
use crate::store::{is_config_key, Device, DeviceState, Store, StoreError};
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};
use tracing::Instrument;

/// What the server needs besides the store and the templates.
#[derive(Debug, Clone)]
pub struct ProvSettings {
    /// selfprov's SIP address, written into guest configs and default files.
    pub server: SipServer,
    /// Base URL phones reach this server at (`http://192.0.2.1:8081`); keyed URLs are
    /// `<public_url>/<config_key>/`.
    pub public_url: String,
    pub file_auth: FileAuth,
    /// Unknown-MAC requests (and refused ones) accepted per source IP per minute.
    pub unknown_mac_per_minute: u32,
    /// Digest realm for `url-key-or-digest`.
    pub realm: String,
}

/// The server's shared state. Cheap to clone.
#[derive(Clone)]
pub struct ProvState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    renderer: Arc<Renderer>,
    settings: ProvSettings,
    limiter: Mutex<RateLimiter>,
    /// `None` unless `file_auth = url-key-or-digest`.
    digest: Option<Mutex<Verifier>>,
}

impl std::fmt::Debug for ProvState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvState")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl ProvState {
    pub fn new(store: Store, renderer: Arc<Renderer>, settings: ProvSettings) -> ProvState {
        let digest = (settings.file_auth == FileAuth::UrlKeyOrDigest)
            .then(|| Verifier::with_random_secret(DigestConfig::new(settings.realm.clone())))
            .and_then(|r| match r {
                Ok(v) => Some(Mutex::new(v)),
                Err(e) => {
                    tracing::error!(error = %e, "provisioning digest auth disabled: bad realm");
                    None
                }
            });
        let limiter = RateLimiter::new(settings.unknown_mac_per_minute, MAX_TRACKED_IPS);
        ProvState {
            inner: Arc::new(Inner {
                store,
                renderer,
                settings,
                limiter: Mutex::new(limiter),
                digest,
            }),
        }
    }
}

/// Source addresses tracked by the rate limiter at most (memory bound under a scan from many
/// addresses).
const MAX_TRACKED_IPS: usize = 4096;

/// Per-IP token buckets: `per_minute` tokens, refilled continuously. Bounded: when full,
/// buckets that are full again (idle IPs) go first, then the least recently used one.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    max: usize,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimiter {
    pub fn new(per_minute: u32, max: usize) -> RateLimiter {
        RateLimiter {
            per_minute: per_minute.max(1),
            max: max.max(1),
            buckets: HashMap::new(),
        }
    }

    fn level(&self, tokens: f64, last: Instant, now: Instant) -> f64 {
        let cap = f64::from(self.per_minute);
        let refill = now.saturating_duration_since(last).as_secs_f64() * cap / 60.0;
        (tokens + refill).min(cap)
    }

    /// Takes a token for `ip`; false when it has none left.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let cap = f64::from(self.per_minute);
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= self.max {
            let full: Vec<IpAddr> = self
                .buckets
                .iter()
                .filter(|(_, (t, l))| self.level(*t, *l, now) >= cap)
                .map(|(k, _)| *k)
                .collect();
            for k in full {
                self.buckets.remove(&k);
            }
            if self.buckets.len() >= self.max {
                if let Some(oldest) = self
                    .buckets
                    .iter()
                    .min_by_key(|(_, (_, l))| *l)
                    .map(|(k, _)| *k)
                {
                    self.buckets.remove(&oldest);
                }
            }
        }
        let (tokens, last) = self.buckets.get(&ip).copied().unwrap_or((cap, now));
        let level = self.level(tokens, last, now);
        let (left, ok) = if level >= 1.0 {
            (level - 1.0, true)
        } else {
            (level, false)
        };
        self.buckets.insert(ip, (left, now));
        ok
    }

    /// Addresses currently tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

/// The server's routes: every GET/HEAD path goes to one handler.
pub fn router(state: ProvState) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// Serves `router(state)` on `listener` (with the peer address, which the IP checks need)
/// until the task is dropped or the listener fails.
pub async fn serve(listener: tokio::net::TcpListener, state: ProvState) -> anyhow::Result<()> {
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, "provisioning HTTP server listening");
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], text).into_response()
}

/// What the server decided for one request, whatever the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchResult {
    /// The rendered file; `xml`: an XML document (else a text file).
    File { body: String, xml: bool },
    /// Not a file of a known phone, an unknown key, or no guest config for a new phone
    /// (autoregistration disabled or its range full). HTTP 404, TFTP error 1.
    NotFound,
    /// A per-device file refused: without the device's key or from an address it has not
    /// registered from, or under another device's key. HTTP 403, TFTP error 2.
    Forbidden,
    /// Refused, but HTTP digest auth (`url-key-or-digest`) could open it: HTTP 401 with
    /// challenges (`stale`: the right password with an old nonce). TFTP error 2.
    AuthRequired { stale: bool },
    /// Too many unknown-MAC or refused requests from this address. HTTP 429, TFTP error 2.
    RateLimited,
    /// The config could not be built or rendered (logged). HTTP 500, TFTP error 0.
    Failed { reason: &'static str },
    /// The store failed (logged); `status` is 503 when retrying may help, else 500.
    /// TFTP error 0.
    Unavailable { status: u16 },
}

/// The HTTP request's parts digest auth needs.
struct HttpAuth<'a> {
    uri: &'a Uri,
    headers: &'a HeaderMap,
}

async fn handle(State(state): State<ProvState>, request: axum::extract::Request) -> Response {
    // Without the peer address (a router used without connect info) nothing is trusted by IP.
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let (parts, _body) = request.into_parts();
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    if method != Method::GET && method != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| truncate(s, 1024));
    let auth = HttpAuth {
        uri: &uri,
        headers: &headers,
    };
    let result = state
        .decide("http", uri.path(), ua, peer, Some(&auth))
        .await;
    state.http_response(result)
}

impl ProvState {
    /// Decides what to serve for `path` (`/<file>`, `/<key>/<file>`, or the same without the
    /// leading `/` as TFTP clients send it) asked for by `peer`, without HTTP credentials: the
    /// TFTP server's entry point. Logs the request and its outcome like the HTTP handler does.
    pub async fn fetch(&self, path: &str, user_agent: Option<&str>, peer: IpAddr) -> FetchResult {
        self.decide("tftp", path, user_agent, peer, None).await
    }

    async fn decide(
        &self,
        proto: &'static str,
        path: &str,
        ua: Option<&str>,
        peer: IpAddr,
        auth: Option<&HttpAuth<'_>>,
    ) -> FetchResult {
        let owned;
        let path = if path.starts_with('/') {
            path
        } else {
            owned = format!("/{path}");
            &owned
        };
        let span = tracing::info_span!("phoneprov", proto, %peer, path = %truncate(path, 100));
        let result = async move {
            let Some((key, file)) = split_path(path) else {
                tracing::info!(outcome = "not-found", "not a config file path");
                return FetchResult::NotFound;
            };
            let Some(req) = route(file, ua) else {
                tracing::info!(outcome = "not-found", "not a file of a known phone");
                return FetchResult::NotFound;
            };
            tracing::Span::current().record("path", file);
            let span = tracing::info_span!(
                "file",
                vendor = req.vendor.as_str(),
                mac = req.mac.as_deref().unwrap_or("-"),
            );
            match self
                .serve_file(&req, key, ua, peer, auth)
                .instrument(span)
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    let status = if e.http_status() == 503 { 503 } else { 500 };
                    tracing::error!(outcome = "error", error = %e, "config file not served");
                    FetchResult::Unavailable { status }
                }
            }
        }
        .instrument(span)
        .await;
        // Files are counted by kind where they are served ([`served`]).
        let refused = match &result {
            FetchResult::File { .. } => None,
            FetchResult::NotFound => Some(FetchKind::NotFound),
            FetchResult::Forbidden | FetchResult::AuthRequired { .. } => Some(FetchKind::Refused),
            FetchResult::RateLimited => Some(FetchKind::RateLimited),
            FetchResult::Failed { .. } | FetchResult::Unavailable { .. } => Some(FetchKind::Error),
        };
        if let Some(kind) = refused {
            crate::metrics::global().config_fetch(kind);
        }
        result
    }

    fn http_response(&self, result: FetchResult) -> Response {
        match result {
            FetchResult::File { body, xml } => {
                let ctype = if xml {
                    "text/xml; charset=utf-8"
                } else {
                    "text/plain; charset=utf-8"
                };
                (
                    StatusCode::OK,
                    [
                        (header::CONTENT_TYPE, ctype),
                        (header::CACHE_CONTROL, "no-store"),
                    ],
                    Body::from(body),
                )
                    .into_response()
            }
            FetchResult::NotFound => plain(StatusCode::NOT_FOUND, "not found\n"),
            FetchResult::Forbidden => plain(StatusCode::FORBIDDEN, "forbidden\n"),
            FetchResult::AuthRequired { stale } => self.refusal(stale),
            FetchResult::RateLimited => plain(StatusCode::TOO_MANY_REQUESTS, "slow down\n"),
            FetchResult::Failed { reason } => plain(StatusCode::INTERNAL_SERVER_ERROR, reason),
            FetchResult::Unavailable { status } => plain(
                if status == 503 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                },
                "try again later\n",
            ),
        }
    }
}

/// `/<file>` → `(None, file)`; `/<key>/<file>` → `(Some(key), file)`; anything else `None`.
fn split_path(path: &str) -> Option<(Option<&str>, &str)> {
    let rest = path.strip_prefix('/')?;
    match rest.split_once('/') {
        None => Some((None, rest)),
        Some((key, file)) if is_config_key(key) && !file.contains('/') => Some((Some(key), file)),
        Some(_) => None,
    }
}

/// Counts a file served as `kind` (a render failure is counted as an error by the caller).
fn served(kind: FetchKind, result: FetchResult) -> FetchResult {
    if matches!(result, FetchResult::File { .. }) {
        crate::metrics::global().config_fetch(kind);
    }
    result
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

/// How a per-device request was authorised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Key,
    SourceIp,
    Digest,
}

impl ProvState {
    fn rate_ok(&self, peer: IpAddr) -> bool {
        match self.inner.limiter.lock() {
            Ok(mut l) => l.allow(peer, Instant::now()),
            // A poisoned lock (a panic elsewhere): fail closed.
            Err(_) => false,
        }
    }

    fn config_url(&self, key: &str) -> String {
        format!(
            "{}/{key}/",
            self.inner.settings.public_url.trim_end_matches('/')
        )
    }

    fn rendered(&self, kind: &FileKind, cfg: &PhoneConfig, url: Option<&str>) -> FetchResult {
        match self.inner.renderer.render_with_config_url(kind, cfg, url) {
            Ok(body) => FetchResult::File {
                body,
                xml: kind.template_name().ends_with(".xml"),
            },
            Err(e) => {
                tracing::error!(outcome = "render-error", error = %e, "template failed");
                FetchResult::Failed {
                    reason: "cannot render\n",
                }
            }
        }
    }

    async fn serve_file(
        &self,
        req: &FileRequest,
        key: Option<&str>,
        ua: Option<&str>,
        peer: IpAddr,
        auth: Option<&HttpAuth<'_>>,
    ) -> Result<FetchResult, StoreError> {
        let store = &self.inner.store;
        let keyed = match key {
            Some(k) => match store.find_device_by_config_key(k).await? {
                Some(d) => Some(d),
                None => {
                    tracing::warn!(outcome = "bad-key", "unknown config key");
                    if !self.rate_ok(peer) {
                        return Ok(FetchResult::RateLimited);
                    }
                    return Ok(FetchResult::NotFound);
                }
            },
            None => None,
        };
        if !req.kind.is_per_device() {
            let cfg =
                PhoneConfig::defaults(&self.inner.settings.server, req.model.clone(), req.vendor);
            tracing::info!(outcome = "default-file", "served");
            return Ok(served(
                FetchKind::Default,
                self.rendered(&req.kind, &cfg, None),
            ));
        }
        let Some(mac) = req.mac.as_deref() else {
            tracing::info!(outcome = "not-found", "per-device file without a MAC");
            return Ok(FetchResult::NotFound);
        };
        let is_keyed = keyed.is_some();
        let device = match keyed {
            Some(d) if d.mac.as_deref() != Some(mac) => {
                tracing::warn!(
                    outcome = "refused",
                    device = d.id,
                    "a device's key used for another MAC's file"
                );
                return Ok(FetchResult::Forbidden);
            }
            Some(d) => Some(d),
            None => store.find_device_by_mac(mac).await?,
        };
        let Some(device) = device else {
            if !self.rate_ok(peer) {
                tracing::warn!(
                    outcome = "rate-limited",
                    "unknown MAC dropped: too many from this address"
                );
                return Ok(FetchResult::RateLimited);
            }
            return self.guest(req, mac, ua).await;
        };
        if device.state == DeviceState::Autoprov {
            return self.guest(req, mac, ua).await;
        }
        let mut stale = false;
        let access = if is_keyed {
            Some(Access::Key)
        } else if device
            .last_ip
            .as_deref()
            .and_then(|s| s.parse::<IpAddr>().ok())
            == Some(peer)
        {
            Some(Access::SourceIp)
        } else if let Some(auth) = auth {
            let (access, is_stale) = self.check_digest(&device, auth).await?;
            stale = is_stale;
            access
        } else {
            None
        };
        let Some(access) = access else {
            if !self.rate_ok(peer) {
                tracing::warn!(
                    outcome = "rate-limited",
                    device = device.id,
                    "refused: too many from this address"
                );
                return Ok(FetchResult::RateLimited);
            }
            tracing::warn!(
                outcome = "refused",
                device = device.id,
                state = device.state.as_str(),
                "provisioned phone's file asked for without its key, from an address it has not \
                 registered from"
            );
            return Ok(if self.inner.digest.is_some() {
                FetchResult::AuthRequired { stale }
            } else {
                FetchResult::Forbidden
            });
        };
        self.provisioned(req, device, access, peer).await
    }

    /// 403, or 401 with digest challenges when digest auth is allowed.
    fn refusal(&self, stale: bool) -> Response {
        let Some(digest) = &self.inner.digest else {
            return plain(StatusCode::FORBIDDEN, "forbidden\n");
        };
        let challenges = match digest.lock() {
            Ok(v) => v.challenges(SystemTime::now(), stale),
            Err(_) => return plain(StatusCode::FORBIDDEN, "forbidden\n"),
        };
        let mut resp = plain(StatusCode::UNAUTHORIZED, "authentication required\n");
        for c in challenges {
            if let Ok(v) = HeaderValue::from_str(&c) {
                resp.headers_mut().append(header::WWW_AUTHENTICATE, v);
            }
        }
        resp
    }

    /// `Some(Access::Digest)` when digest auth is on and the request carries line 1's
    /// credentials; the flag: re-challenge with `stale=true` (right password, old nonce).
    async fn check_digest(
        &self,
        device: &Device,
        auth: &HttpAuth<'_>,
    ) -> Result<(Option<Access>, bool), StoreError> {
        let (uri, headers) = (auth.uri, auth.headers);
        const NO: (Option<Access>, bool) = (None, false);
        let Some(digest) = &self.inner.digest else {
            return Ok(NO);
        };
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(NO);
        };
        let Ok(creds) = parse_authorization(value) else {
            tracing::info!("malformed Authorization header");
            return Ok(NO);
        };
        let Some(line) = device
            .lines
            .iter()
            .min_by_key(|l| l.position)
            .and_then(|l| l.line_id)
        else {
            return Ok(NO);
        };
        let Some(endpoint) = (match self.inner.store.get_line(line).await? {
            Some(l) => match l.sip_endpoint_id {
                Some(e) => self.inner.store.get_sip_endpoint(e).await?,
                None => None,
            },
            None => None,
        }) else {
            return Ok(NO);
        };
        if creds.username != endpoint.auth_username {
            tracing::info!("digest user is not the device's line 1");
            return Ok(NO);
        }
        let request_uri = uri
            .path_and_query()
            .map_or_else(|| uri.path().to_string(), |p| p.as_str().to_string());
        let outcome = match digest.lock() {
            Ok(mut v) => v.verify(
                &creds,
                "GET",
                &request_uri,
                &Secret::Password(&endpoint.password),
                SystemTime::now(),
            ),
            Err(_) => return Ok(NO),
        };
        match outcome {
            Outcome::Ok { .. } => Ok((Some(Access::Digest), false)),
            other => {
                tracing::info!(?other, "digest auth failed");
                Ok((None, other.challenge_stale()))
            }
        }
    }

    async fn guest(
        &self,
        req: &FileRequest,
        mac: &str,
        ua: Option<&str>,
    ) -> Result<FetchResult, StoreError> {
        let store = &self.inner.store;
        let auto = match store
            .autoprov_device(mac, req.vendor.as_str(), req.model.as_deref(), ua)
            .await
        {
            Ok(a) => a,
            Err(e @ (StoreError::AutoregDisabled | StoreError::AutoregRangeFull { .. })) => {
                tracing::warn!(outcome = "no-guest-config", error = %e, "new phone gets no config");
                return Ok(FetchResult::NotFound);
            }
            Err(e @ StoreError::NotAutoprov { .. }) => {
                // Bound meanwhile: the caller's view was stale; refuse rather than guess.
                tracing::warn!(outcome = "refused", error = %e, "device left autoprov meanwhile");
                return Ok(FetchResult::Forbidden);
            }
            Err(e) => return Err(e),
        };
        let settings = store.get_settings().await?;
        let ivr = settings
            .ivr_extensions
            .first()
            .cloned()
            .unwrap_or_else(|| "8000".into());
        let template = match auto
            .device
            .template_id
            .or(settings.autoreg_device_template_id)
        {
            Some(id) => store.get_device_template(id).await?,
            None => None,
        };
        let info = DeviceInfo {
            mac: Some(mac.to_string()),
            model: auto.device.model.clone().or_else(|| req.model.clone()),
            vendor: Some(req.vendor),
        };
        let cfg = PhoneConfig::guest(
            info,
            &auto.account,
            &ivr,
            &self.inner.settings.server,
            template.as_ref(),
        );
        tracing::info!(
            outcome = if auto.created { "autoprov-created" } else { "guest" },
            device = auto.device.id,
            number = %auto.account.number,
            "guest config served"
        );
        Ok(served(
            FetchKind::Guest,
            self.rendered(&req.kind, &cfg, Some(&self.config_url(&auto.config_key))),
        ))
    }

    async fn provisioned(
        &self,
        req: &FileRequest,
        device: Device,
        access: Access,
        peer: IpAddr,
    ) -> Result<FetchResult, StoreError> {
        let store = &self.inner.store;
        let mut records = Vec::new();
        for dl in &device.lines {
            let Some(line_id) = dl.line_id else { continue };
            let Some(line) = store.get_line(line_id).await? else {
                continue;
            };
            let endpoint = match line.sip_endpoint_id {
                Some(e) => store.get_sip_endpoint(e).await?,
                None => None,
            };
            if let Some(ep) = endpoint {
                records.push((line, ep));
            }
        }
        let lines: Vec<StoreLine<'_>> = records
            .iter()
            .map(|(line, endpoint)| StoreLine { line, endpoint })
            .collect();
        let template = match device.template_id {
            Some(id) => store.get_device_template(id).await?,
            None => None,
        };
        let cfg = match PhoneConfig::from_store(
            &device,
            &lines,
            template.as_ref(),
            &self.inner.settings.server,
        ) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(outcome = "build-error", device = device.id, error = %e, "config not built");
                return Ok(FetchResult::Failed {
                    reason: "cannot build config\n",
                });
            }
        };
        let key = store.device_config_key(device.id).await?;
        let resp = self.rendered(&req.kind, &cfg, Some(&self.config_url(&key)));
        // Only the file with the accounts moves the device to provisioned (a Polycom that got
        // its master file but not `<mac>-user.cfg` has not got its line).
        if matches!(resp, FetchResult::File { .. }) && req.kind.holds_credentials() {
            let after = store.config_fetched(device.id, peer).await?;
            tracing::info!(
                outcome = "provisioned-config",
                device = device.id,
                access = ?access,
                state = after.state.as_str(),
                "config served"
            );
        }
        Ok(served(FetchKind::Provisioned, resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn paths_split_into_key_and_file() {
        let key = "0123456789abcdef0123456789abcdef";
        assert_eq!(split_path("/a.cfg"), Some((None, "a.cfg")));
        assert_eq!(
            split_path(&format!("/{key}/a.cfg")),
            Some((Some(key), "a.cfg"))
        );
        assert_eq!(split_path("/x/a.cfg"), None);
        assert_eq!(split_path(&format!("/{key}/x/a.cfg")), None);
        assert_eq!(split_path("a.cfg"), None);
        assert_eq!(truncate("héllo", 2), "hé");
    }

    #[test]
    fn token_bucket_limits_refills_and_stays_bounded() {
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let mut l = RateLimiter::new(3, 2);
        assert!((0..3).all(|_| l.allow(a, t0)));
        assert!(!l.allow(a, t0));
        assert!(l.allow(b, t0), "per address");
        // 20 s later: one token back (3 per minute).
        assert!(l.allow(a, t0 + Duration::from_secs(20)));
        assert!(!l.allow(a, t0 + Duration::from_secs(21)));
        // A third address evicts one: never more than `max` tracked.
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        assert!(l.allow(c, t0 + Duration::from_secs(22)));
        assert_eq!(l.tracked(), 2);
        for i in 0..100u8 {
            l.allow(IpAddr::from([10, 0, 0, i]), t0 + Duration::from_secs(23));
        }
        assert_eq!(l.tracked(), 2);
    }
}
