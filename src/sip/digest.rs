//! HTTP/SIP Digest access authentication (RFC 7616, RFC 8760, RFC 3261 §22), sans-IO.
//!
//! Owns: building `WWW-Authenticate` / `Proxy-Authenticate` challenge values, parsing
//! `Authorization` / `Proxy-Authorization` credentials, and verifying them. Used by the guest
//! registrar (REGISTER) and the phone-config HTTP server. A small client side ([`Challenge`],
//! [`Challenge::authorization`]) answers a challenge the way a phone does; the load generator
//! uses it to register and to dial as a guest phone. Nothing here reads a clock or touches a
//! socket: every call that needs the time takes `now: SystemTime`.
//!
//! # Decisions
//!
//! - **Algorithms**: `MD5`, `SHA-256` and `SHA-512-256`. Challenges are sent one per configured
//!   algorithm, in configuration order, SHA-256 first by default (RFC 8760 §2.3, RFC 7616 §3.7):
//!   a client uses the first one it supports. The `-sess` variants are refused
//!   ([`Outcome::Unsupported`]): we never offer them, and a client may only answer with an
//!   algorithm it was offered. `userhash=true`, `username*` and `qop=auth-int` are refused the
//!   same way, with a reason naming the feature.
//! - **Stateless nonces**: `hex(ts ‖ random ‖ mac)` where `ts` is the issue time (unix seconds,
//!   8 bytes), `random` 12 bytes, and `mac` the first 16 bytes of HMAC-SHA-256 keyed with a
//!   server secret over the realm, `ts` and `random`. No table is needed to know a nonce is ours
//!   and how old it is; one cannot be forged without the secret; an authentic nonce older than
//!   the lifetime gives [`Outcome::Stale`] (answer with `stale=true`, RFC 7616 §3.3) — but only
//!   when the response itself is right, so a wrong password is never reported as stale.
//! - **Replay** (`nc`): a bounded table remembers, per nonce actually used, the highest `nc` and a
//!   64-wide window below it (like the IPsec anti-replay window). A repeated or too old `nc` gives
//!   [`Outcome::Replayed`]. This matters for SIP: the digest covers only method and Request-URI,
//!   so a captured REGISTER's `Authorization` could otherwise be replayed with another Contact.
//!   When the table is full, expired entries go first, then the oldest nonce; nonces issued no
//!   later than an evicted one are then answered [`Outcome::Stale`] (never silently accepted),
//!   so eviction costs a re-challenge, not safety.
//! - **RFC 2069 form** (no `qop`, for old phones): accepted when
//!   [`DigestConfig::allow_legacy_no_qop`] is set (default), with each nonce then good for ONE
//!   request: there is no `nc` to tell a replay apart, so a second use is [`Outcome::Replayed`]
//!   and the caller re-challenges with `stale=true`, which such phones answer without a prompt.
//! - **URI check**: the credentials' `uri` must designate the Request-URI (RFC 3261 §22.4, RFC 7616
//!   §3.4.6). Exact match, or, tolerated because phones and ALGs rewrite them: for SIP URIs the
//!   same scheme, user, host (case-insensitive) and port (absent = 5060 / 5061), URI parameters
//!   and headers ignored; for HTTP an absolute `http(s)://host/path` matches the origin-form
//!   `/path`. The response hash still uses the `uri` as the client sent it.
//! - **Opaque**: one value per verifier (derived from the secret). If the client returns it, it
//!   must match ([`Outcome::BadNonce`] otherwise); a missing opaque is tolerated (some phones drop
//!   it, and it carries no security here: the nonce is self-authenticating).
//! - Response hex is compared case-insensitively in constant time (`subtle`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};
use subtle::ConstantTimeEq;

use crate::sip::message::{Host, Uri};

/// Longest `Authorization` value we parse; longer is [`Rejection::Malformed`].
pub const MAX_HEADER_LEN: usize = 8 * 1024;
/// Longest single parameter value (username, uri, cnonce...).
const MAX_VALUE_LEN: usize = 2 * 1024;
/// How far in the future (seconds) a nonce's timestamp may be before it is treated as stale
/// (the wall clock may step back a little between issue and use).
const FUTURE_SKEW_SECS: u64 = 60;
/// Width of the per-nonce `nc` replay window.
const NC_WINDOW: u32 = 64;

const NONCE_TS_LEN: usize = 8;
const NONCE_RAND_LEN: usize = 12;
const NONCE_MAC_LEN: usize = 16;
const NONCE_LEN: usize = NONCE_TS_LEN + NONCE_RAND_LEN + NONCE_MAC_LEN;
/// The nonce's identity for the replay table: timestamp and random part.
type NonceKey = [u8; NONCE_TS_LEN + NONCE_RAND_LEN];

type HmacSha256 = Hmac<Sha256>;

/// A digest algorithm (RFC 7616 §3.2 / §6.1). `-sess` variants are deliberately absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
    Sha512_256,
}

impl Algorithm {
    /// The name as written in the `algorithm` parameter.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha512_256 => "SHA-512-256",
        }
    }

    /// Case-insensitive lookup of an `algorithm` parameter (no `-sess`).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        [Algorithm::Md5, Algorithm::Sha256, Algorithm::Sha512_256]
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// `H(data)` as lowercase hex (RFC 7616 §3.4).
    pub fn hash_hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => to_hex(&Md5::digest(data)),
            Algorithm::Sha256 => to_hex(&Sha256::digest(data)),
            Algorithm::Sha512_256 => to_hex(&Sha512_256::digest(data)),
        }
    }

    /// Length of a response in hex digits.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 | Algorithm::Sha512_256 => 64,
        }
    }
}

/// `HA1 = H(username ":" realm ":" password)` in lowercase hex: what a store may keep instead of
/// the password (one per algorithm; it is realm-bound and password-equivalent for that realm).
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hash_hex(format!("{username}:{realm}:{password}").as_bytes())
}

/// The `qop=auth` part of a response: the nonce count as sent and the client nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QopAuth {
    /// `qop` as sent (`auth`, any case): it enters the hash verbatim.
    pub qop: String,
    /// `nc` as sent (normally 8 hex digits): it enters the hash verbatim.
    pub nc: String,
    /// `nc` as a number (≥ 1).
    pub nc_value: u32,
    pub cnonce: String,
}

/// `response` per RFC 7616 §3.4.1 (with `qop`) or RFC 2069 (without), lowercase hex.
/// `ha1` is lowercase hex; `uri` is the credentials' `uri` as sent.
pub fn response_hex(
    algorithm: Algorithm,
    ha1: &str,
    nonce: &str,
    qop: Option<(&str, &str, &str)>,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = algorithm.hash_hex(format!("{method}:{uri}").as_bytes());
    let kd = match qop {
        Some((qop, nc, cnonce)) => format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}"),
        None => format!("{ha1}:{nonce}:{ha2}"),
    };
    algorithm.hash_hex(kd.as_bytes())
}

/// Parsed `Digest` credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    /// Lowercased hex, length checked against the algorithm.
    pub response: String,
    pub algorithm: Algorithm,
    /// `None`: the RFC 2069 form.
    pub qop: Option<QopAuth>,
    pub opaque: Option<String>,
}

/// Why a credentials value could not be used at all (before any cryptographic check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Not a well-formed Digest credentials value; the reason is for logs.
    Malformed(&'static str),
    /// Well-formed, but uses a feature we refuse (userhash, -sess, auth-int, username*).
    Unsupported(&'static str),
    /// An `algorithm` we do not know (sanitised, at most 32 characters).
    UnknownAlgorithm(String),
}

/// The verdict on a request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Authenticated.
    Ok {
        username: String,
    },
    /// Right password, but the nonce expired (or is no longer tracked): re-challenge with
    /// `stale=true`.
    Stale,
    /// Right password, but this `nc` (or this one-time RFC 2069 nonce) was already used.
    /// Re-challenge with `stale=true` too: an honest client then simply retries.
    Replayed,
    /// Wrong password (or HA1).
    BadResponse,
    /// The nonce (or opaque) is not one we issued.
    BadNonce,
    /// The credentials are for another realm.
    WrongRealm,
    /// The credentials' `uri` does not designate the Request-URI.
    UriMismatch,
    /// No credentials for that user (only from [`Verifier::verify_header`]).
    UnknownUser,
    /// A known algorithm we did not offer.
    AlgorithmNotOffered(Algorithm),
    /// The stored secret has no HA1 for the algorithm the client used.
    NoCredential(Algorithm),
    Malformed(&'static str),
    Unsupported(&'static str),
    UnknownAlgorithm(String),
}

impl Outcome {
    /// Whether the re-challenge should carry `stale=true`.
    pub fn challenge_stale(&self) -> bool {
        matches!(self, Outcome::Stale | Outcome::Replayed)
    }
}

impl From<Rejection> for Outcome {
    fn from(r: Rejection) -> Outcome {
        match r {
            Rejection::Malformed(m) => Outcome::Malformed(m),
            Rejection::Unsupported(m) => Outcome::Unsupported(m),
            Rejection::UnknownAlgorithm(a) => Outcome::UnknownAlgorithm(a),
        }
    }
}

/// What the verifier checks the response against.
#[derive(Debug, Clone, Copy)]
pub enum Secret<'a> {
    /// The plaintext password: HA1 is computed for whichever algorithm the client used.
    Password(&'a str),
    /// Stored HA1 values (lowercase or uppercase hex), one per algorithm the store keeps.
    Ha1(&'a [(Algorithm, &'a str)]),
}

/// Verifier configuration.
#[derive(Debug, Clone)]
pub struct DigestConfig {
    /// The realm (RFC 3261 §22.1: typically the domain). No control characters.
    pub realm: String,
    /// Algorithms offered, in challenge order (at least one).
    pub algorithms: Vec<Algorithm>,
    /// How long a nonce stays good.
    pub nonce_lifetime: Duration,
    /// Accept responses without `qop` (RFC 2069), each nonce then good for one request.
    pub allow_legacy_no_qop: bool,
    /// Maximum number of nonces tracked for `nc` replay.
    pub replay_capacity: usize,
}

impl DigestConfig {
    /// SHA-256 then MD5, 5-minute nonces, RFC 2069 allowed, 4096 tracked nonces.
    pub fn new(realm: impl Into<String>) -> DigestConfig {
        DigestConfig {
            realm: realm.into(),
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            nonce_lifetime: Duration::from_secs(300),
            allow_legacy_no_qop: true,
            replay_capacity: 4096,
        }
    }
}

/// A configuration the verifier cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("digest realm is empty or contains control characters")]
    BadRealm,
    #[error("no digest algorithm configured")]
    NoAlgorithm,
    #[error("digest replay capacity must be at least 1")]
    NoCapacity,
}

/// The server side of Digest authentication for one realm. `verify` takes `&mut self` (it
/// records `nc` values); share one behind a mutex if several tasks verify.
pub struct Verifier {
    config: DigestConfig,
    secret: [u8; 32],
    opaque: String,
    replay: ReplayTable,
}

// Hand-written so the secret never reaches a log line.
impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("config", &self.config)
            .field("secret", &"<redacted>")
            .field("tracked_nonces", &self.replay.map.len())
            .finish()
    }
}

impl Verifier {
    /// A verifier whose nonces are keyed with `secret`. Nonces from a verifier with another
    /// secret (e.g. before a restart) are [`Outcome::BadNonce`]: clients get a fresh challenge.
    pub fn new(config: DigestConfig, secret: [u8; 32]) -> Result<Verifier, ConfigError> {
        if config.realm.is_empty() || config.realm.chars().any(char::is_control) {
            return Err(ConfigError::BadRealm);
        }
        if config.algorithms.is_empty() {
            return Err(ConfigError::NoAlgorithm);
        }
        if config.replay_capacity == 0 {
            return Err(ConfigError::NoCapacity);
        }
        let opaque = {
            let mut mac = hmac_with(&secret);
            mac.update(b"selfprov digest opaque v1\0");
            mac.update(config.realm.as_bytes());
            let tag = mac.finalize().into_bytes();
            to_hex(tag.get(..16).unwrap_or(&tag))
        };
        Ok(Verifier {
            replay: ReplayTable::new(config.replay_capacity),
            config,
            secret,
            opaque,
        })
    }

    /// A verifier with a fresh random secret (nonces do not survive a restart).
    pub fn with_random_secret(config: DigestConfig) -> Result<Verifier, ConfigError> {
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        Verifier::new(config, secret)
    }

    pub fn config(&self) -> &DigestConfig {
        &self.config
    }

    /// The opaque value sent in every challenge.
    pub fn opaque(&self) -> &str {
        &self.opaque
    }

    /// A fresh nonce issued at `now`.
    pub fn new_nonce(&self, now: SystemTime) -> String {
        let mut random = [0u8; NONCE_RAND_LEN];
        rand::fill(&mut random);
        self.nonce_with(unix_secs(now), &random)
    }

    fn nonce_with(&self, ts: u64, random: &[u8; NONCE_RAND_LEN]) -> String {
        let mut raw = [0u8; NONCE_LEN];
        raw[..NONCE_TS_LEN].copy_from_slice(&ts.to_be_bytes());
        raw[NONCE_TS_LEN..NONCE_TS_LEN + NONCE_RAND_LEN].copy_from_slice(random);
        let tag = self.nonce_mac(ts, random);
        raw[NONCE_TS_LEN + NONCE_RAND_LEN..].copy_from_slice(&tag);
        to_hex(&raw)
    }

    fn nonce_mac(&self, ts: u64, random: &[u8]) -> [u8; NONCE_MAC_LEN] {
        let mut mac = hmac_with(&self.secret);
        mac.update(b"selfprov digest nonce v1\0");
        // Length-prefix the realm so (realm, ts) pairs cannot collide.
        mac.update(&(self.config.realm.len() as u64).to_be_bytes());
        mac.update(self.config.realm.as_bytes());
        mac.update(&ts.to_be_bytes());
        mac.update(random);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; NONCE_MAC_LEN];
        if let Some(head) = full.get(..NONCE_MAC_LEN) {
            out.copy_from_slice(head);
        }
        out
    }

    /// Checks a nonce is ours; returns its issue time and replay key.
    fn open_nonce(&self, nonce: &str) -> Option<(u64, NonceKey)> {
        let raw = from_hex(nonce)?;
        if raw.len() != NONCE_LEN {
            return None;
        }
        let ts_bytes: [u8; NONCE_TS_LEN] = raw.get(..NONCE_TS_LEN)?.try_into().ok()?;
        let ts = u64::from_be_bytes(ts_bytes);
        let random = raw.get(NONCE_TS_LEN..NONCE_TS_LEN + NONCE_RAND_LEN)?;
        let tag = raw.get(NONCE_TS_LEN + NONCE_RAND_LEN..)?;
        let expected = self.nonce_mac(ts, random);
        if !bool::from(expected.as_slice().ct_eq(tag)) {
            return None;
        }
        let key: NonceKey = raw.get(..NONCE_TS_LEN + NONCE_RAND_LEN)?.try_into().ok()?;
        Some((ts, key))
    }

    /// One challenge value per configured algorithm, in order, sharing one fresh nonce. Send each
    /// as its own `WWW-Authenticate` (HTTP, SIP registrar/UAS) or `Proxy-Authenticate` header.
    pub fn challenges(&self, now: SystemTime, stale: bool) -> Vec<String> {
        let nonce = self.new_nonce(now);
        self.config
            .algorithms
            .iter()
            .map(|&a| self.challenge_with_nonce(a, &nonce, stale))
            .collect()
    }

    /// A challenge value for one algorithm and a given nonce.
    pub fn challenge_with_nonce(&self, algorithm: Algorithm, nonce: &str, stale: bool) -> String {
        let mut s = String::with_capacity(200);
        s.push_str("Digest realm=");
        push_quoted(&mut s, &self.config.realm);
        s.push_str(", nonce=");
        push_quoted(&mut s, nonce);
        s.push_str(", opaque=");
        push_quoted(&mut s, &self.opaque);
        s.push_str(", algorithm=");
        s.push_str(algorithm.name());
        s.push_str(", qop=\"auth\"");
        if stale {
            s.push_str(", stale=true");
        }
        s
    }

    /// Of several `Authorization` / `Proxy-Authorization` values (a request may carry one per
    /// realm, RFC 3261 §22.3), the one for our realm; otherwise the first one, so that its
    /// failure is what gets reported. `None` when there are none.
    pub fn select_credentials<'a>(&self, values: &[&'a str]) -> Option<&'a str> {
        values
            .iter()
            .find(|v| parse_authorization(v).is_ok_and(|c| c.realm == self.config.realm))
            .or(values.first())
            .copied()
    }

    /// Parses `header_value`, looks the user up with `lookup(username)` and verifies.
    pub fn verify_header<'s>(
        &mut self,
        header_value: &str,
        method: &str,
        request_uri: &str,
        now: SystemTime,
        lookup: impl FnOnce(&str) -> Option<Secret<'s>>,
    ) -> Outcome {
        let creds = match parse_authorization(header_value) {
            Ok(c) => c,
            Err(r) => return r.into(),
        };
        match lookup(&creds.username) {
            Some(secret) => self.verify(&creds, method, request_uri, &secret, now),
            None => Outcome::UnknownUser,
        }
    }

    /// Verifies parsed credentials for a request (`method` as on the request line; for SIP the
    /// CSeq method, which equals it). Records the `nc` on success.
    pub fn verify(
        &mut self,
        creds: &Credentials,
        method: &str,
        request_uri: &str,
        secret: &Secret<'_>,
        now: SystemTime,
    ) -> Outcome {
        if !self.config.algorithms.contains(&creds.algorithm) {
            return Outcome::AlgorithmNotOffered(creds.algorithm);
        }
        if creds.realm != self.config.realm {
            return Outcome::WrongRealm;
        }
        if let Some(op) = &creds.opaque {
            if !bool::from(op.as_bytes().ct_eq(self.opaque.as_bytes())) {
                return Outcome::BadNonce;
            }
        }
        let Some((ts, key)) = self.open_nonce(&creds.nonce) else {
            return Outcome::BadNonce;
        };
        if creds.qop.is_none() && !self.config.allow_legacy_no_qop {
            return Outcome::Unsupported("digest without qop (RFC 2069) is disabled");
        }
        if !uri_matches(&creds.uri, request_uri) {
            return Outcome::UriMismatch;
        }
        let ha1_hex = match secret {
            Secret::Password(p) => ha1(creds.algorithm, &creds.username, &creds.realm, p),
            Secret::Ha1(list) => match list.iter().find(|(a, _)| *a == creds.algorithm) {
                Some((_, h)) => h.to_ascii_lowercase(),
                None => return Outcome::NoCredential(creds.algorithm),
            },
        };
        let qop = creds
            .qop
            .as_ref()
            .map(|q| (q.qop.as_str(), q.nc.as_str(), q.cnonce.as_str()));
        let expected = response_hex(
            creds.algorithm,
            &ha1_hex,
            &creds.nonce,
            qop,
            method,
            &creds.uri,
        );
        if !bool::from(expected.as_bytes().ct_eq(creds.response.as_bytes())) {
            return Outcome::BadResponse;
        }
        // Only now, with the password proven, may we say "stale" (RFC 7616 §3.3) and touch the
        // replay state (else anyone could burn nc values).
        let now_s = unix_secs(now);
        let lifetime = self.config.nonce_lifetime.as_secs();
        if now_s.saturating_sub(ts) > lifetime || ts > now_s.saturating_add(FUTURE_SKEW_SECS) {
            return Outcome::Stale;
        }
        let use_ = match &creds.qop {
            Some(q) => NonceUse::Count(q.nc_value),
            None => NonceUse::Once,
        };
        match self.replay.record(key, ts, use_, now_s, lifetime) {
            Recorded::Fresh => Outcome::Ok {
                username: creds.username.clone(),
            },
            Recorded::Replay => Outcome::Replayed,
            Recorded::Forgotten => Outcome::Stale,
        }
    }

    /// Number of nonces currently tracked for replay (for metrics and tests).
    pub fn tracked_nonces(&self) -> usize {
        self.replay.map.len()
    }
}

fn hmac_with(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this never fails; the fallback keeps it panic-free.
    match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => HmacSha256::new(&Default::default()),
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.len() % 2 != 0 || b.len() > 2 * NONCE_LEN {
        return None;
    }
    b.chunks_exact(2)
        .map(|p| match p {
            [hi, lo] => Some((hex_val(*hi)? << 4) | hex_val(*lo)?),
            _ => None,
        })
        .collect()
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn push_quoted(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

// ---------------------------------------------------------------------------------------------
// Client side

/// A parsed `WWW-Authenticate` / `Proxy-Authenticate` value with the `Digest` scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// `qop="auth"` (or a list holding `auth`) was offered; `false`: the RFC 2069 form.
    pub qop_auth: bool,
    pub stale: bool,
}

impl Challenge {
    /// Parses a challenge. A missing `algorithm` means MD5 (RFC 7616 §3.3); an unknown one is
    /// [`Rejection::UnknownAlgorithm`], so a client can skip to the next challenge.
    pub fn parse(value: &str) -> Result<Challenge, Rejection> {
        use Rejection::Malformed;
        if value.len() > MAX_HEADER_LEN {
            return Err(Malformed("challenge too long"));
        }
        let v = value.trim_matches(is_lws_char);
        let scheme_end = v.find(is_lws_char).unwrap_or(v.len());
        if !v
            .get(..scheme_end)
            .is_some_and(|s| s.eq_ignore_ascii_case("Digest"))
        {
            return Err(Malformed("not the Digest scheme"));
        }
        let mut realm = None;
        let mut nonce = None;
        let mut opaque = None;
        let mut algorithm = Algorithm::Md5;
        let mut qop_auth = false;
        let mut stale = false;
        for (name, value) in parse_params(v.get(scheme_end..).unwrap_or(""))? {
            match name.to_ascii_lowercase().as_str() {
                "realm" => realm = Some(value),
                "nonce" => nonce = Some(value),
                "opaque" => opaque = Some(value),
                "algorithm" => {
                    algorithm = Algorithm::from_name(&value).ok_or_else(|| {
                        Rejection::UnknownAlgorithm(value.chars().take(32).collect())
                    })?
                }
                "qop" => {
                    qop_auth = value
                        .split(',')
                        .any(|q| q.trim().eq_ignore_ascii_case("auth"))
                }
                "stale" => stale = value.eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        Ok(Challenge {
            realm: realm.ok_or(Malformed("challenge without realm"))?,
            nonce: nonce.ok_or(Malformed("challenge without nonce"))?,
            opaque,
            algorithm,
            qop_auth,
            stale,
        })
    }

    /// The `Authorization` / `Proxy-Authorization` value answering this challenge for a
    /// request (`method`, `uri` = its Request-URI). `nc` counts the requests made with this
    /// nonce (from 1); `cnonce` is the client's random string.
    pub fn authorization(
        &self,
        username: &str,
        password: &str,
        method: &str,
        uri: &str,
        nc: u32,
        cnonce: &str,
    ) -> String {
        let ha1 = ha1(self.algorithm, username, &self.realm, password);
        let nc = format!("{nc:08x}");
        let qop = self.qop_auth.then_some(("auth", nc.as_str(), cnonce));
        let response = response_hex(self.algorithm, &ha1, &self.nonce, qop, method, uri);
        let mut s = String::with_capacity(300);
        s.push_str("Digest username=");
        push_quoted(&mut s, username);
        s.push_str(", realm=");
        push_quoted(&mut s, &self.realm);
        s.push_str(", nonce=");
        push_quoted(&mut s, &self.nonce);
        s.push_str(", uri=");
        push_quoted(&mut s, uri);
        s.push_str(", response=\"");
        s.push_str(&response);
        s.push_str("\", algorithm=");
        s.push_str(self.algorithm.name());
        if let Some(o) = &self.opaque {
            s.push_str(", opaque=");
            push_quoted(&mut s, o);
        }
        if self.qop_auth {
            let _ = write!(s, ", qop=auth, nc={nc}, cnonce=");
            push_quoted(&mut s, cnonce);
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------
// Replay table

#[derive(Debug, Clone, Copy)]
enum NonceUse {
    Count(u32),
    Once,
}

#[derive(Debug, PartialEq, Eq)]
enum Recorded {
    Fresh,
    Replay,
    /// Evicted from a full table earlier: we cannot tell, so the client must re-authenticate.
    Forgotten,
}

#[derive(Debug, Default, Clone)]
struct NcWindow {
    /// Highest nc accepted (0: none yet).
    highest: u32,
    /// Bit i set: nc `highest - i` was accepted.
    seen: u64,
    /// The RFC 2069 (no qop) single use was spent.
    once_used: bool,
}

impl NcWindow {
    fn accept(&mut self, use_: NonceUse) -> bool {
        match use_ {
            NonceUse::Once => !std::mem::replace(&mut self.once_used, true),
            NonceUse::Count(0) => false,
            NonceUse::Count(nc) if nc > self.highest => {
                let shift = nc - self.highest;
                self.seen = if shift >= 64 { 0 } else { self.seen << shift };
                self.seen |= 1;
                self.highest = nc;
                true
            }
            NonceUse::Count(nc) => {
                let back = self.highest - nc;
                if back >= NC_WINDOW {
                    return false;
                }
                let bit = 1u64 << back;
                if self.seen & bit != 0 {
                    return false;
                }
                self.seen |= bit;
                true
            }
        }
    }
}

#[derive(Debug)]
struct ReplayTable {
    map: HashMap<NonceKey, (u64, NcWindow)>,
    capacity: usize,
    /// Nonces issued at or before this time that are not in the map were evicted.
    floor: Option<u64>,
}

impl ReplayTable {
    fn new(capacity: usize) -> ReplayTable {
        ReplayTable {
            map: HashMap::new(),
            capacity,
            floor: None,
        }
    }

    fn record(
        &mut self,
        key: NonceKey,
        ts: u64,
        use_: NonceUse,
        now: u64,
        lifetime: u64,
    ) -> Recorded {
        if let Some((_, w)) = self.map.get_mut(&key) {
            return if w.accept(use_) {
                Recorded::Fresh
            } else {
                Recorded::Replay
            };
        }
        if self.floor.is_some_and(|f| ts <= f) {
            return Recorded::Forgotten;
        }
        if self.map.len() >= self.capacity {
            self.map
                .retain(|_, (t, _)| now.saturating_sub(*t) <= lifetime);
        }
        while self.map.len() >= self.capacity {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(k, (t, _))| (*k, *t));
            let Some((k, t)) = oldest else { break };
            self.map.remove(&k);
            self.floor = Some(self.floor.map_or(t, |f| f.max(t)));
            if ts <= t {
                // The incoming nonce is no newer than what we just had to forget.
                return Recorded::Forgotten;
            }
        }
        let mut w = NcWindow::default();
        if !w.accept(use_) {
            return Recorded::Replay;
        }
        self.map.insert(key, (ts, w));
        Recorded::Fresh
    }
}

// ---------------------------------------------------------------------------------------------
// URI comparison

/// Whether the credentials' `uri` designates the Request-URI (see the module doc).
pub fn uri_matches(cred_uri: &str, request_uri: &str) -> bool {
    if cred_uri == request_uri {
        return true;
    }
    let is_sip = |s: &str| {
        let l = s.get(..5).unwrap_or("");
        l.eq_ignore_ascii_case("sips:")
            || s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("sip:"))
    };
    if is_sip(cred_uri) && is_sip(request_uri) {
        return match (Uri::parse(cred_uri), Uri::parse(request_uri)) {
            (Ok(Uri::Sip(a)), Ok(Uri::Sip(b))) => {
                let default = |secure: bool| if secure { 5061 } else { 5060 };
                a.secure == b.secure
                    && a.user == b.user
                    && host_eq(&a.host, &b.host)
                    && a.port.unwrap_or(default(a.secure)) == b.port.unwrap_or(default(b.secure))
            }
            _ => false,
        };
    }
    match (http_origin_form(cred_uri), http_origin_form(request_uri)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn host_eq(a: &Host, b: &Host) -> bool {
    match (a, b) {
        (Host::Name(x), Host::Name(y)) => x.eq_ignore_ascii_case(y),
        _ => a == b,
    }
}

/// `/path?query` of an origin-form or absolute http(s) URI.
fn http_origin_form(s: &str) -> Option<&str> {
    if s.starts_with('/') {
        return Some(s);
    }
    let lower_prefix = |p: &str| s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
    let rest = if lower_prefix("http://") {
        s.get(7..)?
    } else if lower_prefix("https://") {
        s.get(8..)?
    } else {
        return None;
    };
    match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes().get(i) == Some(&b'/') => rest.get(i..),
        _ => Some("/"),
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

/// Parses an `Authorization` / `Proxy-Authorization` value with the `Digest` scheme.
pub fn parse_authorization(value: &str) -> Result<Credentials, Rejection> {
    use Rejection::{Malformed, Unsupported};
    if value.len() > MAX_HEADER_LEN {
        return Err(Malformed("credentials too long"));
    }
    let v = value.trim_matches(is_lws_char);
    let scheme_end = v.find(is_lws_char).unwrap_or(v.len());
    let scheme = v.get(..scheme_end).unwrap_or("");
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(Malformed("not the Digest scheme"));
    }
    let params = parse_params(v.get(scheme_end..).unwrap_or(""))?;

    let mut username = None;
    let mut realm = None;
    let mut nonce = None;
    let mut uri = None;
    let mut response = None;
    let mut algorithm = None;
    let mut qop = None;
    let mut nc = None;
    let mut cnonce = None;
    let mut opaque = None;
    for (name, value) in params {
        let slot = match name.to_ascii_lowercase().as_str() {
            "username" => &mut username,
            "realm" => &mut realm,
            "nonce" => &mut nonce,
            "uri" => &mut uri,
            "response" => &mut response,
            "algorithm" => &mut algorithm,
            "qop" => &mut qop,
            "nc" => &mut nc,
            "cnonce" => &mut cnonce,
            "opaque" => &mut opaque,
            "username*" => return Err(Unsupported("username* (RFC 7616 §3.4.4)")),
            "userhash" => {
                if value.eq_ignore_ascii_case("true") {
                    return Err(Unsupported("userhash (RFC 7616 §3.4.4)"));
                }
                continue;
            }
            // Unknown parameters are ignored (RFC 7616 §3.4, RFC 3261 auth-param).
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(Malformed("duplicate parameter"));
        }
    }
    let username = username.ok_or(Malformed("no username"))?;
    let realm = realm.ok_or(Malformed("no realm"))?;
    let nonce = nonce.ok_or(Malformed("no nonce"))?;
    let uri = uri.ok_or(Malformed("no uri"))?;
    let response = response.ok_or(Malformed("no response"))?;
    if nonce.is_empty() || uri.is_empty() {
        return Err(Malformed("empty nonce or uri"));
    }

    let algorithm = match algorithm {
        None => Algorithm::Md5, // RFC 7616 §3.4: absent means MD5
        Some(a) => match Algorithm::from_name(&a) {
            Some(alg) => alg,
            None if a.len() > 5
                && a.get(a.len() - 5..)
                    .is_some_and(|t| t.eq_ignore_ascii_case("-sess"))
                && Algorithm::from_name(a.get(..a.len() - 5).unwrap_or("")).is_some() =>
            {
                return Err(Unsupported("-sess algorithms"));
            }
            None => {
                let clean: String = a.chars().filter(|c| !c.is_control()).take(32).collect();
                return Err(Rejection::UnknownAlgorithm(clean));
            }
        },
    };

    let response = response.to_ascii_lowercase();
    if response.len() != algorithm.hex_len() || !response.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Malformed(
            "response is not a hex digest of the algorithm's length",
        ));
    }

    let qop = match qop {
        None => {
            if nc.is_some() || cnonce.is_some() {
                return Err(Malformed("nc or cnonce without qop"));
            }
            None
        }
        Some(q) if q.eq_ignore_ascii_case("auth") => {
            let nc = nc.ok_or(Malformed("qop without nc"))?;
            let cnonce = cnonce.ok_or(Malformed("qop without cnonce"))?;
            if cnonce.is_empty() {
                return Err(Malformed("empty cnonce"));
            }
            if nc.is_empty() || nc.len() > 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Malformed("nc is not 1 to 8 hex digits"));
            }
            let nc_value = u32::from_str_radix(&nc, 16).map_err(|_| Malformed("nc is not hex"))?;
            if nc_value == 0 {
                return Err(Malformed("nc is zero"));
            }
            Some(QopAuth {
                qop: q,
                nc,
                nc_value,
                cnonce,
            })
        }
        Some(q) if q.eq_ignore_ascii_case("auth-int") => {
            return Err(Unsupported("qop=auth-int"));
        }
        Some(_) => return Err(Malformed("unknown qop")),
    };

    Ok(Credentials {
        username,
        realm,
        nonce,
        uri,
        response,
        algorithm,
        qop,
        opaque,
    })
}

fn is_lws_char(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// `name=value` pairs separated by commas (empty list elements tolerated, RFC 7230 §7).
/// Values are tokens or quoted-strings (quoted-pairs unescaped).
fn parse_params(s: &str) -> Result<Vec<(String, String)>, Rejection> {
    use Rejection::Malformed;
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while b
            .get(*i)
            .is_some_and(|&c| c == b' ' || c == b'\t' || c == b'\r' || c == b'\n')
        {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        while b.get(i) == Some(&b',') {
            i += 1;
            skip_ws(&mut i);
        }
        if i >= b.len() {
            break;
        }
        if out.len() >= 32 {
            return Err(Malformed("too many parameters"));
        }
        let start = i;
        while b.get(i).is_some_and(|&c| is_token_byte(c)) {
            i += 1;
        }
        if i == start {
            return Err(Malformed("expected a parameter name"));
        }
        let name = s.get(start..i).ok_or(Malformed("bad parameter name"))?;
        skip_ws(&mut i);
        if b.get(i) != Some(&b'=') {
            return Err(Malformed("parameter without '='"));
        }
        i += 1;
        skip_ws(&mut i);
        let value = if b.get(i) == Some(&b'"') {
            i += 1;
            let mut v: Vec<u8> = Vec::new();
            loop {
                match b.get(i) {
                    None => return Err(Malformed("unterminated quoted string")),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        let c = *b
                            .get(i + 1)
                            .ok_or(Malformed("unterminated quoted string"))?;
                        v.push(c);
                        i += 2;
                    }
                    Some(&c) => {
                        v.push(c);
                        i += 1;
                    }
                }
                if v.len() > MAX_VALUE_LEN {
                    return Err(Malformed("parameter value too long"));
                }
            }
            // Unescaping ASCII bytes cannot split a UTF-8 sequence, but the input of a quoted
            // pair may be the first byte of one: check.
            String::from_utf8(v).map_err(|_| Malformed("quoted string is not UTF-8"))?
        } else {
            let vstart = i;
            while b.get(i).is_some_and(|&c| is_token_byte(c)) {
                i += 1;
            }
            if i == vstart {
                return Err(Malformed("empty parameter value"));
            }
            s.get(vstart..i).ok_or(Malformed("bad token"))?.to_string()
        };
        if value.len() > MAX_VALUE_LEN {
            return Err(Malformed("parameter value too long"));
        }
        if value.chars().any(|c| c.is_control()) {
            return Err(Malformed("control character in parameter value"));
        }
        out.push((name.to_string(), value));
        skip_ws(&mut i);
        match b.get(i) {
            None => break,
            Some(b',') => i += 1,
            Some(_) => return Err(Malformed("expected ',' between parameters")),
        }
    }
    Ok(out)
}

/// RFC 3261 token characters (a superset of RFC 7230's tchar, minus nothing we need), plus `*`
/// for `username*`.
fn is_token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'.'
                | b'!'
                | b'%'
                | b'*'
                | b'_'
                | b'+'
                | b'`'
                | b'\''
                | b'~'
                | b'#'
                | b'$'
                | b'&'
                | b'^'
                | b'|'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> NonceKey {
        [n; NONCE_TS_LEN + NONCE_RAND_LEN]
    }

    #[test]
    fn nc_window_accepts_out_of_order_within_window_once() {
        let mut w = NcWindow::default();
        assert!(w.accept(NonceUse::Count(1)));
        assert!(w.accept(NonceUse::Count(5)));
        assert!(w.accept(NonceUse::Count(3)));
        assert!(!w.accept(NonceUse::Count(3)));
        assert!(!w.accept(NonceUse::Count(5)));
        assert!(!w.accept(NonceUse::Count(1)));
        assert!(w.accept(NonceUse::Count(100)));
        assert!(
            !w.accept(NonceUse::Count(100 - NC_WINDOW)),
            "outside the window"
        );
        assert!(w.accept(NonceUse::Count(100 - NC_WINDOW + 1)));
        assert!(!w.accept(NonceUse::Count(0)));
        assert!(w.accept(NonceUse::Once));
        assert!(!w.accept(NonceUse::Once));
    }

    #[test]
    fn replay_table_eviction_never_forgets_silently() {
        let mut t = ReplayTable::new(2);
        let life = 300;
        assert_eq!(
            t.record(key(1), 100, NonceUse::Count(1), 110, life),
            Recorded::Fresh
        );
        assert_eq!(
            t.record(key(2), 101, NonceUse::Count(1), 110, life),
            Recorded::Fresh
        );
        // Full: the oldest (ts 100) is evicted to admit ts 102.
        assert_eq!(
            t.record(key(3), 102, NonceUse::Count(1), 110, life),
            Recorded::Fresh
        );
        assert_eq!(t.map.len(), 2);
        // key(1) was evicted: a replay of its nc=1 must not pass.
        assert_eq!(
            t.record(key(1), 100, NonceUse::Count(1), 110, life),
            Recorded::Forgotten
        );
        // Tracked ones still work.
        assert_eq!(
            t.record(key(2), 101, NonceUse::Count(1), 110, life),
            Recorded::Replay
        );
        assert_eq!(
            t.record(key(2), 101, NonceUse::Count(2), 110, life),
            Recorded::Fresh
        );
    }

    #[test]
    fn replay_table_floor_refuses_untracked_old_nonces_even_with_room() {
        // Room in the table, but a nonce no newer than an evicted one comes back (e.g. after
        // the wall clock stepped back): it must not be admitted as fresh.
        let mut t = ReplayTable::new(8);
        t.floor = Some(500);
        assert_eq!(
            t.record(key(1), 500, NonceUse::Count(1), 510, 300),
            Recorded::Forgotten
        );
        assert_eq!(
            t.record(key(2), 501, NonceUse::Count(1), 510, 300),
            Recorded::Fresh
        );
    }

    #[test]
    fn replay_table_purges_expired_before_evicting() {
        let mut t = ReplayTable::new(2);
        assert_eq!(
            t.record(key(1), 100, NonceUse::Count(1), 100, 10),
            Recorded::Fresh
        );
        assert_eq!(
            t.record(key(2), 200, NonceUse::Count(1), 200, 10),
            Recorded::Fresh
        );
        assert_eq!(
            t.record(key(3), 201, NonceUse::Count(1), 201, 10),
            Recorded::Fresh
        );
        assert_eq!(t.floor, None, "expired entry purged, nothing live evicted");
        assert_eq!(t.map.len(), 2);
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let v = Verifier::new(DigestConfig::new("r"), [0xab; 32]).unwrap();
        let d = format!("{v:?}");
        assert!(d.contains("redacted") && !d.contains("171"), "{d}");
    }

    #[test]
    fn hex_roundtrip_and_rejects() {
        assert_eq!(from_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(from_hex("0"), None);
        assert_eq!(from_hex("zz"), None);
        assert_eq!(to_hex(&[0xab, 0x01]), "ab01");
    }

    #[test]
    fn nonce_is_bound_to_secret_and_realm() {
        let a = Verifier::new(DigestConfig::new("a"), [1; 32]).unwrap();
        let a2 = Verifier::new(DigestConfig::new("b"), [1; 32]).unwrap();
        let b = Verifier::new(DigestConfig::new("a"), [2; 32]).unwrap();
        let n = a.nonce_with(1000, &[7; NONCE_RAND_LEN]);
        assert_eq!(n.len(), 2 * NONCE_LEN);
        assert_eq!(a.open_nonce(&n).map(|x| x.0), Some(1000));
        assert!(a2.open_nonce(&n).is_none());
        assert!(b.open_nonce(&n).is_none());
        // Changing the timestamp breaks the MAC.
        let mut forged = n.clone().into_bytes();
        forged[15] = if forged[15] == b'0' { b'1' } else { b'0' };
        assert!(a
            .open_nonce(std::str::from_utf8(&forged).unwrap())
            .is_none());
    }

    /// The client side answers every challenge the server side issues (each algorithm, with
    /// and without a realm containing a quote), and the server accepts it; a wrong password
    /// and a second use of the same `nc` are refused.
    #[test]
    fn client_answers_our_own_challenges() {
        let mut config = DigestConfig::new("selfprov \"lab\"");
        config.algorithms = vec![Algorithm::Sha256, Algorithm::Md5, Algorithm::Sha512_256];
        let mut v = Verifier::new(config, [9; 32]).unwrap();
        let now = SystemTime::now();
        let uri = "sip:8000@127.0.0.1:5060";
        // The challenges of one round share a nonce: a fresh round for each algorithm.
        for i in 0..3 {
            let value = v.challenges(now, false).swap_remove(i);
            let c = Challenge::parse(&value).unwrap();
            assert!(c.qop_auth && !c.stale, "{value}");
            assert_eq!(c.realm, "selfprov \"lab\"");
            let auth = c.authorization("2000", "s3cret", "INVITE", uri, 1, "abc");
            let creds = parse_authorization(&auth).unwrap();
            assert_eq!(creds.algorithm, c.algorithm);
            assert_eq!(
                v.verify(&creds, "INVITE", uri, &Secret::Password("s3cret"), now),
                Outcome::Ok {
                    username: "2000".into()
                },
                "{auth}"
            );
            assert_eq!(
                v.verify(&creds, "INVITE", uri, &Secret::Password("s3cret"), now),
                Outcome::Replayed
            );
            let wrong = c.authorization("2000", "guess", "INVITE", uri, 2, "abc");
            let creds = parse_authorization(&wrong).unwrap();
            assert_eq!(
                v.verify(&creds, "INVITE", uri, &Secret::Password("s3cret"), now),
                Outcome::BadResponse
            );
        }
        let stale = Challenge::parse(&v.challenges(now, true)[0]).unwrap();
        assert!(stale.stale);
    }

    #[test]
    fn challenge_parsing_defaults_and_refusals() {
        let c = Challenge::parse(r#"Digest realm="r", nonce="n""#).unwrap();
        assert_eq!(
            (c.algorithm, c.qop_auth, c.opaque),
            (Algorithm::Md5, false, None)
        );
        let c = Challenge::parse(r#"digest nonce="n", qop="auth-int,auth", realm="r""#).unwrap();
        assert!(c.qop_auth);
        assert!(matches!(
            Challenge::parse(r#"Digest realm="r", nonce="n", algorithm=SHA-1"#),
            Err(Rejection::UnknownAlgorithm(a)) if a == "SHA-1"
        ));
        assert!(Challenge::parse(r#"Basic realm="r""#).is_err());
        assert!(Challenge::parse(r#"Digest realm="r""#).is_err());
        // RFC 2069 form: no qop, so no nc/cnonce in the answer.
        let c = Challenge::parse(r#"Digest realm="r", nonce="n""#).unwrap();
        let a = c.authorization("u", "p", "REGISTER", "sip:x", 1, "cn");
        assert!(!a.contains("nc=") && !a.contains("qop"), "{a}");
    }
}
