//! The SIP registrar (RFC 3261 §10.3) as a sans-IO table: owns the bindings (address-of-record
//! → contacts), the REGISTER analysis (Contact, `*`, Expires, Min-Expires, the Call-ID/CSeq
//! ordering rule), the guest rules (`guest` switch, `max_guests`) and the digest
//! [`Verifier`] used for REGISTER (401) and for INVITEs from registered phones (407).
//!
//! The [`Endpoint`](super::endpoint::Endpoint) owns the transactions and the timer heap and
//! drives this table; the public types here are the endpoint's registrar API (see the endpoint's
//! `poll_auth_request`, `credential`, `poll_registrar_event`, `contacts`, `send_notify`).
//!
//! Decisions worth knowing:
//! - **One AOR per account.** The credential's `number` is the AOR user part; the To user must
//!   equal it (403 otherwise), so bindings are keyed by `account_id`.
//! - **Contact identity** (§10.3 step 7, URI comparison of §19.1.4, simplified): scheme, user,
//!   host (case-insensitive), port and the `transport`, `user`, `maddr` URI parameters.
//! - **Limits.** A global cap on bindings (a full table answers 503) and a cap on contacts per
//!   AOR: a REGISTER naming more contacts than the cap gets 403, and a new contact beyond the cap
//!   evicts the AOR's least recently refreshed binding. Evicting rather than refusing matters for
//!   phones behind NAT, which come back with a new Contact after every reboot: a 503 would lock
//!   them out until their stale bindings expire.
//! - **Atomic updates** (§10.3 step 7): every binding change of one REGISTER is computed first
//!   and committed only if all succeed; a same-Call-ID update with a CSeq not above the stored one
//!   fails the whole request with 500 and changes nothing.
//! - **Clock.** The digest nonces carry a timestamp and the verifier wants a `SystemTime`; the
//!   endpoint only has the `Instant`s it is given. Nonces never outlive the process (the verifier
//!   has a random secret), so a synthetic wall clock anchored at the first `Instant` seen is
//!   exact for nonce ageing and keeps everything deterministic under simulated time.
//! - **No Date header** in the 200 (a SHOULD of §10.3 step 8): the core has no wall clock.
//! - **Path** (RFC 3327): a REGISTER's Path is stored with each binding it makes and echoed in
//!   the 200 only to a phone that said `Supported: path` (§5.3); requests to the contact use it
//!   as their route set. Such bindings are not indexed by source address (their source is the
//!   proxy, which carries many phones' calls). Every AOR with a live binding is also indexed by
//!   its number, which a trusted proxy's P-Asserted-Identity names.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::RegistrarConfig;
use crate::sip::digest::{
    self, parse_authorization, Credentials, DigestConfig, Outcome, Rejection, Secret, Verifier,
};
use crate::sip::endpoint::Peer;
use crate::sip::message::{Host, NameAddr, Params, Request, Uri};

/// Largest `Expires` we represent (RFC 3261 §20.19: larger values mean 2^32-1).
const EXPIRES_CAP: u32 = u32::MAX;

/// The handle of one credential lookup the endpoint asked the layer for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AuthId(pub u64);

/// A credential lookup to do (store query by digest username). Answer it with
/// [`Endpoint::credential`](super::endpoint::Endpoint::credential).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    pub id: AuthId,
    /// The digest `username` the phone sent (untrusted input: look it up, do not log it raw
    /// without escaping).
    pub username: String,
}

/// A SIP account's digest credential, as the store has it.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub account_id: i64,
    pub auth_username: String,
    pub password: String,
    /// The AOR user part (the guest's autoreg number, or the line's number).
    pub number: String,
    /// An autoprov guest account (subject to `guest` and `max_guests`).
    pub guest: bool,
}

// Hand-written so the password never reaches a log line.
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("account_id", &self.account_id)
            .field("auth_username", &self.auth_username)
            .field("password", &"<redacted>")
            .field("number", &self.number)
            .field("guest", &self.guest)
            .finish()
    }
}

/// Our handle for a request we sent outside any dialog ([`Endpoint::send_notify`]).
///
/// [`Endpoint::send_notify`]: super::endpoint::Endpoint::send_notify
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// One live binding, as [`Registrar::registrations`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub contact: Uri,
    /// Where its REGISTER came from (requests to the phone go there).
    pub peer: Peer,
    /// The Call-ID of that REGISTER.
    pub call_id: String,
    /// The REGISTER's `Path` (RFC 3327), top first: the route set of requests to the contact.
    pub path: Vec<NameAddr>,
}

/// What the registrar reports to the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrarEvent {
    /// A REGISTER that adds, refreshes or removes contacts was accepted and the account still
    /// has at least one binding (so also once per refresh; a query without Contact emits
    /// nothing). `peer` is where the REGISTER came from, `contacts` every current contact.
    Registered {
        account_id: i64,
        peer: Peer,
        contacts: Vec<Uri>,
    },
    /// The account has no binding left (removed by REGISTER, or expired).
    Unregistered { account_id: i64 },
    /// The outcome of a request we sent: the final status, or None on timeout (timer F) or when
    /// the TCP connection it was sent on closed.
    RequestDone { id: RequestId, status: Option<u16> },
}

/// Capacity limits of the registrar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrarLimits {
    /// Bindings in the whole table; a REGISTER that would add beyond it gets 503. Default 100,000.
    pub max_bindings: usize,
    /// Contacts per AOR (see the module doc for what happens beyond). Default 10.
    pub max_contacts_per_aor: usize,
    /// Credential lookups waiting for the layer; beyond it new authenticated requests get 503.
    /// Default 4,096.
    pub max_pending_auth: usize,
    /// Failed INVITE authentications (same source and Call-ID) answered 407 before 403.
    /// Default 3.
    pub max_invite_auth_failures: u32,
}

impl Default for RegistrarLimits {
    fn default() -> Self {
        RegistrarLimits {
            max_bindings: 100_000,
            max_contacts_per_aor: 10,
            max_pending_auth: 4096,
            max_invite_auth_failures: 3,
        }
    }
}

/// A final response the registrar wants sent instead of going on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: u16,
    /// Reason phrase; None = the standard one.
    pub reason: Option<String>,
    pub headers: Vec<(&'static str, String)>,
}

impl Refusal {
    pub fn new(status: u16) -> Refusal {
        Refusal {
            status,
            reason: None,
            headers: Vec::new(),
        }
    }
    pub fn reason(status: u16, reason: &str) -> Refusal {
        Refusal {
            status,
            reason: Some(reason.to_owned()),
            headers: Vec::new(),
        }
    }
    fn header(mut self, name: &'static str, value: String) -> Refusal {
        self.headers.push((name, value));
        self
    }
}

/// One contact of a REGISTER, with its granted expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContactReq {
    /// The Contact value without its `expires` parameter.
    pub contact: NameAddr,
    pub key: String,
    /// Granted seconds (0 = remove).
    pub expires: u32,
}

/// What a REGISTER asks for, checked syntactically (before authentication).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ContactUpdate {
    /// `Contact: *` with `Expires: 0`: remove every binding.
    RemoveAll,
    /// Add, refresh or remove these (empty: a query).
    List(Vec<ContactReq>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RegisterPlan {
    /// The To URI's user part (the AOR).
    pub to_user: String,
    pub call_id: String,
    pub cseq: u32,
    pub update: ContactUpdate,
    /// The REGISTER's `Path` values, top first (RFC 3327): kept with its bindings.
    pub path: Vec<NameAddr>,
    /// The REGISTER said `Supported: path`: its 200 echoes the Path (RFC 3327 §5.3).
    pub echo_path: bool,
}

#[derive(Debug, Clone)]
struct Binding {
    contact: NameAddr,
    key: String,
    peer: Peer,
    expires_at: Instant,
    call_id: String,
    cseq: u32,
    refreshed_at: Instant,
    /// The REGISTER's Path: requests to this contact go through it.
    path: Vec<NameAddr>,
}

#[derive(Debug, Clone)]
struct Aor {
    guest: bool,
    /// The AOR user part (the credential's number), for [`Registrar::account_by_number`].
    number: String,
    bindings: Vec<Binding>,
    /// The deadline of this AOR's live entry in the endpoint's timer heap. A new entry is
    /// pushed only when the next expiry moves earlier than it, so refreshes (which move it
    /// later) add nothing to the heap: the armed entry fires, finds nothing due and re-arms.
    armed: Option<Instant>,
}

/// The outcome of a committed REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Applied {
    /// Every current contact with its remaining seconds (for the 200's Contact headers).
    pub contacts: Vec<(NameAddr, u64)>,
    pub event: Option<RegistrarEvent>,
}

/// The credentials found in a request, before the password is known.
#[derive(Debug)]
pub(crate) enum Presented {
    /// None for our realm (or none at all): challenge.
    Nothing,
    /// Well-formed and plausibly ours: look the user up and verify.
    Credentials(Box<Credentials>),
    /// Unusable without any lookup; `malformed` = answer 400 rather than re-challenge.
    Unusable { why: String, malformed: bool },
}

/// The registrar state. See the module documentation.
#[derive(Debug)]
pub(crate) struct Registrar {
    pub cfg: RegistrarConfig,
    pub limits: RegistrarLimits,
    verifier: Verifier,
    anchor: Option<Instant>,
    aors: HashMap<i64, Aor>,
    bindings: usize,
    guests_bound: usize,
    /// Source address → number of live bindings registered from it (INVITE authentication).
    by_addr: HashMap<SocketAddr, usize>,
    /// AOR user part → account, for the AORs with live bindings (asserted identities).
    by_number: HashMap<String, i64>,
}

impl Registrar {
    pub fn new(
        cfg: RegistrarConfig,
        limits: RegistrarLimits,
    ) -> Result<Registrar, digest::ConfigError> {
        let verifier = Verifier::with_random_secret(digest_config(&cfg))?;
        Ok(Registrar {
            cfg,
            limits,
            verifier,
            anchor: None,
            aors: HashMap::new(),
            bindings: 0,
            guests_bound: 0,
            by_addr: HashMap::new(),
            by_number: HashMap::new(),
        })
    }

    /// Replaces the configuration, keeping the bindings. A new realm or nonce lifetime needs a
    /// new verifier (outstanding nonces then get a fresh challenge).
    pub fn reconfigure(
        &mut self,
        cfg: RegistrarConfig,
        limits: RegistrarLimits,
    ) -> Result<(), digest::ConfigError> {
        let (new, old) = (digest_config(&cfg), digest_config(&self.cfg));
        if new.realm != old.realm
            || new.nonce_lifetime != old.nonce_lifetime
            || new.algorithms != old.algorithms
        {
            self.verifier = Verifier::with_random_secret(new)?;
        }
        self.cfg = cfg;
        self.limits = limits;
        Ok(())
    }

    /// The synthetic wall clock for the verifier (see the module doc).
    fn wall(&mut self, now: Instant) -> SystemTime {
        let anchor = *self.anchor.get_or_insert(now);
        // A fixed, plausible epoch offset; only differences matter.
        UNIX_EPOCH + Duration::from_secs(1_700_000_000) + now.saturating_duration_since(anchor)
    }

    /// Challenge values (one per algorithm, SHA-256 first) with a fresh nonce.
    pub fn challenges(&mut self, now: Instant, stale: bool) -> Vec<String> {
        let t = self.wall(now);
        self.verifier.challenges(t, stale)
    }

    /// Reads the credentials a request carries in `header` (several values allowed, one per
    /// realm) and does every check that needs no password.
    pub fn presented(&self, req: &Request, header: &str) -> Presented {
        let values: Vec<&str> = req.headers.get_all(header).collect();
        let Some(value) = self.verifier.select_credentials(&values) else {
            return Presented::Nothing;
        };
        let creds = match parse_authorization(value) {
            Ok(c) => c,
            Err(Rejection::Malformed(m)) => {
                return Presented::Unusable {
                    why: m.to_owned(),
                    malformed: true,
                }
            }
            Err(Rejection::Unsupported(m)) => {
                return Presented::Unusable {
                    why: m.to_owned(),
                    malformed: false,
                }
            }
            Err(Rejection::UnknownAlgorithm(a)) => {
                return Presented::Unusable {
                    why: format!("unknown algorithm {a}"),
                    malformed: false,
                }
            }
        };
        if creds.realm != self.cfg.realm {
            // Credentials for another realm only: ours were never answered.
            return Presented::Nothing;
        }
        if !self.verifier.config().algorithms.contains(&creds.algorithm) {
            return Presented::Unusable {
                why: format!("algorithm {} not offered", creds.algorithm.name()),
                malformed: false,
            };
        }
        if !digest::uri_matches(&creds.uri, &req.uri.to_string()) {
            return Presented::Unusable {
                why: "digest uri does not match the Request-URI".into(),
                malformed: false,
            };
        }
        Presented::Credentials(Box::new(creds))
    }

    /// Verifies `creds` for `req` against `password`.
    pub fn verify(
        &mut self,
        now: Instant,
        creds: &Credentials,
        req: &Request,
        password: &str,
    ) -> Outcome {
        let t = self.wall(now);
        let uri = req.uri.to_string();
        self.verifier.verify(
            creds,
            req.method.as_str(),
            &uri,
            &Secret::Password(password),
            t,
        )
    }

    /// Syntactic analysis of a REGISTER (§10.3 steps 5 and 6, Expires rules). Done before
    /// authentication: none of these answers depends on who asks.
    pub fn plan(&self, req: &Request) -> Result<RegisterPlan, Refusal> {
        let to = req
            .to()
            .map_err(|_| Refusal::reason(400, "Bad Request (To)"))?;
        let to_user = match &to.uri {
            Uri::Sip(u) => u.user.clone(),
            _ => None,
        }
        .filter(|u| !u.is_empty())
        .ok_or_else(|| Refusal::reason(404, "Not Found (To needs a sip: AOR with a user)"))?;
        let call_id = req
            .call_id()
            .map_err(|_| Refusal::reason(400, "Bad Request (Call-ID)"))?
            .to_owned();
        let cseq = req
            .cseq()
            .map_err(|_| Refusal::reason(400, "Bad Request (CSeq)"))?
            .seq;
        let header_expires = match req.headers.get("Expires") {
            None => None,
            Some(v) => Some(
                parse_delta_seconds(v)
                    .ok_or_else(|| Refusal::reason(400, "Bad Request (Expires)"))?,
            ),
        };
        if req.headers.count("Expires") > 1 {
            return Err(Refusal::reason(400, "Bad Request (several Expires)"));
        }
        let path = req
            .paths()
            .map_err(|_| Refusal::reason(400, "Bad Request (Path)"))?;
        if path.iter().any(|p| !matches!(p.uri, Uri::Sip(_))) {
            return Err(Refusal::reason(400, "Bad Request (Path must be sip: URIs)"));
        }
        let echo_path = !path.is_empty()
            && req
                .headers
                .get_list("Supported")
                .iter()
                .any(|t| t.trim().eq_ignore_ascii_case("path"));
        if req.contact_is_star() {
            // §10.3 step 6: `*` only alone and with Expires: 0.
            if req.headers.get_list("Contact").len() != 1 {
                return Err(Refusal::reason(
                    400,
                    "Bad Request (Contact * must be the only contact)",
                ));
            }
            if header_expires != Some(0) {
                return Err(Refusal::reason(
                    400,
                    "Bad Request (Contact * needs Expires: 0)",
                ));
            }
            return Ok(RegisterPlan {
                to_user,
                call_id,
                cseq,
                update: ContactUpdate::RemoveAll,
                path,
                echo_path,
            });
        }
        let contacts = req
            .contacts()
            .map_err(|_| Refusal::reason(400, "Bad Request (Contact)"))?;
        if contacts.len() > self.limits.max_contacts_per_aor {
            return Err(Refusal::reason(403, "Forbidden (too many contacts)"));
        }
        let mut list: Vec<ContactReq> = Vec::with_capacity(contacts.len());
        for mut c in contacts {
            if !matches!(c.uri, Uri::Sip(_)) {
                return Err(Refusal::reason(
                    416,
                    "Unsupported URI Scheme (contacts must be sip: or sips:)",
                ));
            }
            let asked = match c.params.get("expires") {
                Some(Some(v)) => Some(
                    parse_delta_seconds(v)
                        .ok_or_else(|| Refusal::reason(400, "Bad Request (expires parameter)"))?,
                ),
                Some(None) => return Err(Refusal::reason(400, "Bad Request (expires parameter)")),
                None => header_expires,
            };
            let asked = asked.unwrap_or(self.cfg.default_expires_secs);
            if asked != 0 && asked < self.cfg.min_expires_secs {
                return Err(
                    Refusal::new(423).header("Min-Expires", self.cfg.min_expires_secs.to_string())
                );
            }
            let expires = asked.min(self.cfg.max_expires_secs.max(1));
            c.params.remove("expires");
            let key = contact_key(&c.uri);
            // The same contact twice in one request: the last one wins.
            list.retain(|x| x.key != key);
            list.push(ContactReq {
                contact: c,
                key,
                expires,
            });
        }
        Ok(RegisterPlan {
            to_user,
            call_id,
            cseq,
            update: ContactUpdate::List(list),
            path,
            echo_path,
        })
    }

    /// The guest switch, for REGISTER and INVITE alike.
    pub fn authorize_guest(&self, cred: &Credential) -> Result<(), Refusal> {
        if cred.guest && !self.cfg.guest {
            return Err(Refusal::reason(
                403,
                "Forbidden (guest registration disabled)",
            ));
        }
        Ok(())
    }

    /// §10.3 step 4: the authenticated account may only register its own AOR.
    pub fn authorize_register(
        &self,
        cred: &Credential,
        plan: &RegisterPlan,
    ) -> Result<(), Refusal> {
        self.authorize_guest(cred)?;
        if plan.to_user != cred.number {
            return Err(Refusal::reason(
                403,
                "Forbidden (To does not match the account)",
            ));
        }
        Ok(())
    }

    /// Applies an authenticated, authorized REGISTER (§10.3 steps 7 and 8).
    pub fn apply(
        &mut self,
        now: Instant,
        cred: &Credential,
        plan: &RegisterPlan,
        peer: Peer,
    ) -> Result<Applied, Refusal> {
        let existing = self.aors.get(&cred.account_id);
        let old: Vec<Binding> = existing.map(|a| a.bindings.clone()).unwrap_or_default();
        let mut new = old.clone();
        let stale_update = |b: &Binding| b.call_id == plan.call_id && plan.cseq <= b.cseq;
        let out_of_order = || Refusal::reason(500, "Server Internal Error (CSeq out of order)");
        match &plan.update {
            ContactUpdate::RemoveAll => {
                if new.iter().any(stale_update) {
                    return Err(out_of_order());
                }
                new.clear();
            }
            ContactUpdate::List(list) => {
                for c in list {
                    match new.iter().position(|b| b.key == c.key) {
                        Some(i) => {
                            if new.get(i).is_some_and(stale_update) {
                                return Err(out_of_order());
                            }
                            if c.expires == 0 {
                                new.remove(i);
                            } else if let Some(b) = new.get_mut(i) {
                                b.contact = c.contact.clone();
                                b.peer = peer;
                                b.expires_at = expiry(now, c.expires);
                                b.call_id = plan.call_id.clone();
                                b.cseq = plan.cseq;
                                b.refreshed_at = now;
                                b.path = plan.path.clone();
                            }
                        }
                        None if c.expires == 0 => {}
                        None => new.push(Binding {
                            contact: c.contact.clone(),
                            key: c.key.clone(),
                            peer,
                            expires_at: expiry(now, c.expires),
                            call_id: plan.call_id.clone(),
                            cseq: plan.cseq,
                            refreshed_at: now,
                            path: plan.path.clone(),
                        }),
                    }
                }
                // Per-AOR cap: evict the least recently refreshed (see the module doc).
                while new.len() > self.limits.max_contacts_per_aor.max(1) {
                    let Some(oldest) = new
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, b)| b.refreshed_at)
                        .map(|(i, _)| i)
                    else {
                        break;
                    };
                    new.remove(oldest);
                }
            }
        }
        // Drop what already expired (the timer may not have fired yet at this `now`).
        new.retain(|b| b.expires_at > now);
        if new.len() > old.len()
            && self.bindings.saturating_sub(old.len()) + new.len() > self.limits.max_bindings
        {
            return Err(Refusal::reason(503, "Service Unavailable (registrar full)")
                .header("Retry-After", "60".into()));
        }
        if cred.guest
            && old.is_empty()
            && !new.is_empty()
            && self.guests_bound >= self.cfg.max_guests
        {
            return Err(
                Refusal::reason(503, "Service Unavailable (guest limit reached)")
                    .header("Retry-After", "300".into()),
            );
        }
        let changed = matches!(&plan.update, ContactUpdate::RemoveAll)
            || matches!(&plan.update, ContactUpdate::List(l) if !l.is_empty());
        // Commit.
        self.replace_aor(cred.account_id, cred.guest, &cred.number, new);
        let contacts = self.current(cred.account_id, now);
        let event = if !changed {
            None
        } else if contacts.is_empty() {
            (!old.is_empty()).then_some(RegistrarEvent::Unregistered {
                account_id: cred.account_id,
            })
        } else {
            Some(RegistrarEvent::Registered {
                account_id: cred.account_id,
                peer,
                contacts: contacts.iter().map(|(c, _)| c.uri.clone()).collect(),
            })
        };
        Ok(Applied { contacts, event })
    }

    fn current(&self, account_id: i64, now: Instant) -> Vec<(NameAddr, u64)> {
        self.aors
            .get(&account_id)
            .map(|a| {
                a.bindings
                    .iter()
                    .map(|b| {
                        let left = b.expires_at.saturating_duration_since(now);
                        // Round up: a binding still live must not be shown as 0 (removed).
                        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                        (b.contact.clone(), secs.max(1))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Replaces an AOR's bindings, keeping the counters and the address index right.
    fn replace_aor(&mut self, account_id: i64, guest: bool, number: &str, bindings: Vec<Binding>) {
        let mut armed = None;
        if let Some(old) = self.aors.remove(&account_id) {
            armed = old.armed;
            if self.by_number.get(&old.number) == Some(&account_id) {
                self.by_number.remove(&old.number);
            }
            // Saturating: the counters are exact by construction, but a slip must never panic
            // (or wrap) on the network path.
            self.bindings = self.bindings.saturating_sub(old.bindings.len());
            if old.guest && !old.bindings.is_empty() {
                self.guests_bound = self.guests_bound.saturating_sub(1);
            }
            for b in old.bindings.iter().filter(|b| b.path.is_empty()) {
                if let Some(n) = self.by_addr.get_mut(&b.peer.addr) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.by_addr.remove(&b.peer.addr);
                    }
                }
            }
        }
        if bindings.is_empty() {
            return;
        }
        self.bindings += bindings.len();
        if guest {
            self.guests_bound += 1;
        }
        for b in bindings.iter().filter(|b| b.path.is_empty()) {
            *self.by_addr.entry(b.peer.addr).or_insert(0) += 1;
        }
        self.by_number.insert(number.to_owned(), account_id);
        self.aors.insert(
            account_id,
            Aor {
                guest,
                number: number.to_owned(),
                bindings,
                armed,
            },
        );
    }

    /// The deadline of the account's live timer entry (see [`Aor`]'s `armed`).
    pub fn armed(&self, account_id: i64) -> Option<Instant> {
        self.aors.get(&account_id)?.armed
    }

    /// After a change or a timer: the deadline to push into the heap, if one is needed (the
    /// next expiry is earlier than the entry already armed, or none is armed).
    pub fn rearm(&mut self, account_id: i64) -> Option<Instant> {
        let next = self.next_expiry(account_id)?;
        let aor = self.aors.get_mut(&account_id)?;
        match aor.armed {
            Some(a) if a <= next => None,
            _ => {
                aor.armed = Some(next);
                Some(next)
            }
        }
    }

    /// The armed timer entry fired: it is no longer armed.
    pub fn disarm(&mut self, account_id: i64) {
        if let Some(a) = self.aors.get_mut(&account_id) {
            a.armed = None;
        }
    }

    /// The earliest expiry among the account's bindings.
    pub fn next_expiry(&self, account_id: i64) -> Option<Instant> {
        self.aors
            .get(&account_id)?
            .bindings
            .iter()
            .map(|b| b.expires_at)
            .min()
    }

    /// Removes the account's bindings expired at `now`.
    pub fn expire(&mut self, account_id: i64, now: Instant) -> Option<RegistrarEvent> {
        let aor = self.aors.get(&account_id)?;
        let (guest, number) = (aor.guest, aor.number.clone());
        let kept: Vec<Binding> = aor
            .bindings
            .iter()
            .filter(|b| b.expires_at > now)
            .cloned()
            .collect();
        if kept.len() == aor.bindings.len() {
            return None;
        }
        self.replace_aor(account_id, guest, &number, kept);
        (!self.aors.contains_key(&account_id))
            .then_some(RegistrarEvent::Unregistered { account_id })
    }

    /// Live bindings of an account: contact URI and where its REGISTER came from.
    pub fn contacts(&self, account_id: i64) -> Vec<(Uri, Peer)> {
        self.aors
            .get(&account_id)
            .map(|a| {
                a.bindings
                    .iter()
                    .map(|b| (b.contact.uri.clone(), b.peer))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Live bindings of an account with the Call-ID of the REGISTER that made each (Cisco's
    /// resync NOTIFY must quote it as `RegisterCallId`).
    pub fn registrations(&self, account_id: i64) -> Vec<Registration> {
        self.aors
            .get(&account_id)
            .map(|a| {
                a.bindings
                    .iter()
                    .map(|b| Registration {
                        contact: b.contact.uri.clone(),
                        peer: b.peer,
                        call_id: b.call_id.clone(),
                        path: b.path.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether some live binding was registered from `addr` directly. Bindings registered
    /// through a proxy (with `Path`) do not count: their source is the proxy, which forwards
    /// calls of many phones.
    pub fn is_bound_source(&self, addr: &SocketAddr) -> bool {
        self.by_addr.contains_key(addr)
    }

    /// The account whose AOR user part is `number` and whether it is a guest, when it has a
    /// live binding (a P-Asserted-Identity from a trusted proxy names the caller this way).
    pub fn account_by_number(&self, number: &str) -> Option<(i64, bool)> {
        let id = *self.by_number.get(number)?;
        Some((id, self.aors.get(&id)?.guest))
    }

    /// A TCP connection closed: bindings that pointed at it now mean "open a new one".
    pub fn connection_closed(&mut self, conn: u64) {
        for a in self.aors.values_mut() {
            for b in &mut a.bindings {
                if b.peer.conn == Some(conn) {
                    b.peer.conn = None;
                }
            }
        }
    }

    pub fn binding_count(&self) -> usize {
        self.bindings
    }

    pub fn guests_bound(&self) -> usize {
        self.guests_bound
    }
}

fn digest_config(cfg: &RegistrarConfig) -> DigestConfig {
    let mut d = DigestConfig::new(cfg.realm.clone());
    d.nonce_lifetime = Duration::from_secs(cfg.nonce_lifetime_secs.max(1));
    // The config is validated at load; an unknown name left by a caller is skipped, and an
    // empty result keeps DigestConfig's default (SHA-256, MD5).
    let algorithms: Vec<_> = cfg
        .digest_algorithms
        .iter()
        .filter_map(|a| digest::Algorithm::from_name(a))
        .collect();
    if !algorithms.is_empty() {
        d.algorithms = algorithms;
    }
    d
}

fn expiry(now: Instant, secs: u32) -> Instant {
    now.checked_add(Duration::from_secs(u64::from(secs)))
        .unwrap_or(now)
}

/// `delta-seconds` (RFC 3261 §25.1): digits only; values beyond 2^32-1 mean 2^32-1.
pub(crate) fn parse_delta_seconds(v: &str) -> Option<u32> {
    let v = v.trim_matches([' ', '\t']);
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = v.trim_start_matches('0');
    if digits.is_empty() {
        return Some(0);
    }
    if digits.len() > 10 {
        return Some(EXPIRES_CAP);
    }
    Some(
        digits
            .parse::<u64>()
            .map_or(EXPIRES_CAP, |n| u32::try_from(n).unwrap_or(EXPIRES_CAP)),
    )
}

/// The identity of a contact URI (see the module doc).
pub(crate) fn contact_key(uri: &Uri) -> String {
    match uri {
        Uri::Sip(u) => {
            let host = match &u.host {
                Host::Name(n) => n.to_ascii_lowercase(),
                h => h.to_string(),
            };
            let mut key = format!(
                "{}:{}@{}:{}",
                if u.secure { "sips" } else { "sip" },
                u.user.as_deref().unwrap_or(""),
                host,
                u.port.map_or(String::new(), |p| p.to_string())
            );
            for p in ["transport", "user", "maddr"] {
                if let Some(v) = param_lower(&u.params, p) {
                    key.push_str(&format!(";{p}={v}"));
                }
            }
            key
        }
        other => other.to_string(),
    }
}

fn param_lower(params: &Params, name: &str) -> Option<String> {
    params
        .get(name)
        .map(|v| v.unwrap_or("").to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_seconds() {
        assert_eq!(parse_delta_seconds("3600"), Some(3600));
        assert_eq!(parse_delta_seconds(" 0 "), Some(0));
        assert_eq!(parse_delta_seconds("000"), Some(0));
        assert_eq!(parse_delta_seconds("99999999999999"), Some(u32::MAX));
        assert_eq!(parse_delta_seconds("4294967296"), Some(u32::MAX));
        assert_eq!(parse_delta_seconds("-1"), None);
        assert_eq!(parse_delta_seconds(""), None);
        assert_eq!(parse_delta_seconds("1e3"), None);
    }

    #[test]
    fn contact_keys_compare_like_uris() {
        let k = |s: &str| contact_key(&Uri::parse(s).unwrap());
        assert_eq!(k("sip:a@HOST.example:5060"), k("sip:a@host.example:5060"));
        assert_ne!(k("sip:a@host:5060"), k("sip:a@host:5062"));
        assert_ne!(k("sip:a@host"), k("sip:b@host"));
        assert_ne!(k("sip:a@host"), k("sip:a@host;transport=tcp"));
        assert_eq!(
            k("sip:a@host;transport=TCP"),
            k("sip:a@host;transport=tcp;ob")
        );
    }
}
