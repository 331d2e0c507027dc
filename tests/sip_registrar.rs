//! The endpoint's registrar (RFC 3261 §10.3), its digest authentication of REGISTER and of
//! INVITEs from registered phones, and the out-of-dialog NOTIFY client transaction, driven with
//! wire messages shaped like real phones' (a Yealink and SIPp) and simulated time.
//!
//! The digest responses are computed here from scratch with the md-5 / sha2 crates (not with
//! `selfprov::sip::digest`), so a wrong verifier fails these tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use md5::Md5;
use selfprov::config::RegistrarConfig;
use selfprov::sip::endpoint::{CallEvent, Endpoint, EndpointConfig, Peer, Transmit, Transport};
use selfprov::sip::message::{parse, Message, Method, Request, Response, Uri};
use selfprov::sip::registrar::{Credential, RegistrarEvent, RegistrarLimits, RequestId};
use sha2::{Digest, Sha256};

const LOCAL: &str = "203.0.113.10:5060";
const YEALINK: &str = "198.51.100.7:5062";
const SIPP: &str = "198.51.100.8:5061";
const T0_REALM: &str = "selfprov.test";

fn reg_cfg() -> RegistrarConfig {
    RegistrarConfig {
        realm: T0_REALM.into(),
        guest: true,
        max_guests: 10,
        min_expires_secs: 60,
        max_expires_secs: 3600,
        default_expires_secs: 1800,
        nonce_lifetime_secs: 300,
        // What RFC 8760 recommends and the verifier's own tests exercise (the shipped default
        // is MD5 only, for phones that choke on a second challenge).
        digest_algorithms: vec!["SHA-256".into(), "MD5".into()],
    }
}

fn endpoint_with(cfg: RegistrarConfig, limits: RegistrarLimits) -> Endpoint {
    let mut ep = Endpoint::new(EndpointConfig {
        local_addr: LOCAL.parse().unwrap(),
        ivr_extensions: vec!["7000".into()],
        user_agent: "selfprov-test".into(),
        ..EndpointConfig::default()
    });
    ep.enable_registrar(cfg, limits).unwrap();
    ep
}

fn endpoint() -> Endpoint {
    endpoint_with(reg_cfg(), RegistrarLimits::default())
}

fn cred(id: i64, user: &str, pass: &str, number: &str, guest: bool) -> Credential {
    Credential {
        account_id: id,
        auth_username: user.into(),
        password: pass.into(),
        number: number.into(),
        guest,
    }
}

/// The test's "store".
fn accounts() -> Vec<Credential> {
    vec![
        cred(1, "g-a1b2c3", "s3cret-guest", "8001", true),
        cred(2, "g-d4e5f6", "other-guest", "8002", true),
        cred(3, "line101", "line-pass", "101", false),
    ]
}

/// Answers every pending credential lookup from `store`; returns the user names asked for.
fn answer(ep: &mut Endpoint, now: Instant, store: &[Credential]) -> Vec<String> {
    let mut asked = Vec::new();
    while let Some(r) = ep.poll_auth_request() {
        let c = store
            .iter()
            .find(|c| c.auth_username == r.username)
            .cloned();
        asked.push(r.username.clone());
        ep.credential(now, r.id, c);
    }
    asked
}

fn drain(ep: &mut Endpoint) -> Vec<Transmit> {
    std::iter::from_fn(|| ep.poll_transmit()).collect()
}

fn reg_events(ep: &mut Endpoint) -> Vec<RegistrarEvent> {
    std::iter::from_fn(|| ep.poll_registrar_event()).collect()
}

fn resp(t: &Transmit) -> Response {
    match parse(&t.data) {
        Ok(Message::Response(r)) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

fn req(t: &Transmit) -> Request {
    match parse(&t.data) {
        Ok(Message::Request(r)) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn one_response(ep: &mut Endpoint) -> Response {
    let out = drain(ep);
    assert_eq!(out.len(), 1, "expected one response, got {}", out.len());
    resp(&out[0])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn h(alg: &str, data: &str) -> String {
    match alg {
        "MD5" => hex(&Md5::digest(data.as_bytes())),
        "SHA-256" => hex(&Sha256::digest(data.as_bytes())),
        other => panic!("test does not do {other}"),
    }
}

/// A challenge's parameters (parsed here, independently of the crate).
#[derive(Debug, Clone)]
struct Chal {
    realm: String,
    nonce: String,
    opaque: Option<String>,
    algorithm: String,
    stale: bool,
    qop: String,
}

fn parse_challenge(v: &str) -> Chal {
    let rest = v.strip_prefix("Digest ").expect("Digest scheme");
    let mut m = HashMap::new();
    for part in rest.split(',') {
        let (k, val) = part.trim().split_once('=').expect("k=v");
        m.insert(k.to_ascii_lowercase(), val.trim_matches('"').to_owned());
    }
    Chal {
        realm: m["realm"].clone(),
        nonce: m["nonce"].clone(),
        opaque: m.get("opaque").cloned(),
        algorithm: m["algorithm"].clone(),
        stale: m
            .get("stale")
            .is_some_and(|s| s.eq_ignore_ascii_case("true")),
        qop: m["qop"].clone(),
    }
}

/// The challenge for `alg` among a 401/407's challenge headers.
fn challenge(r: &Response, header: &str, alg: &str) -> Chal {
    let all: Vec<Chal> = r.headers.get_all(header).map(parse_challenge).collect();
    all.into_iter()
        .find(|c| c.algorithm == alg)
        .unwrap_or_else(|| panic!("no {alg} challenge in {r:?}"))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Style {
    /// Quoted display names, `<...>` contacts with +sip.instance, spaces after commas, MD5 or
    /// SHA-256 as offered.
    Yealink,
    /// Bare-URI contact, no spaces in Authorization.
    Sipp,
}

/// A phone: its address, account and the state a real UA keeps (Call-ID, CSeq, nonce count).
struct Phone {
    style: Style,
    peer: Peer,
    aor: String,
    auth_user: String,
    password: String,
    call_id: String,
    cseq: u32,
    nc: u32,
    branch: u32,
    chal: Option<Chal>,
    alg: &'static str,
}

impl Phone {
    fn yealink(aor: &str, auth_user: &str, password: &str) -> Phone {
        Phone {
            style: Style::Yealink,
            peer: Peer {
                transport: Transport::Udp,
                addr: YEALINK.parse().unwrap(),
                conn: None,
            },
            aor: aor.into(),
            auth_user: auth_user.into(),
            password: password.into(),
            call_id: "0_1234567890@192.168.1.20".into(),
            cseq: 0,
            nc: 0,
            branch: 0,
            chal: None,
            alg: "MD5",
        }
    }

    fn sipp(aor: &str, auth_user: &str, password: &str) -> Phone {
        Phone {
            style: Style::Sipp,
            peer: Peer {
                transport: Transport::Udp,
                addr: SIPP.parse().unwrap(),
                conn: None,
            },
            call_id: "1-4242@198.51.100.8".into(),
            alg: "SHA-256",
            ..Phone::yealink(aor, auth_user, password)
        }
    }

    fn contact(&self) -> String {
        match self.style {
            Style::Yealink => format!(
                "<sip:{}@192.168.1.20:5062>;reg-id=1;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-001565aabbcc>\"",
                self.aor
            ),
            Style::Sipp => format!("sip:{}@198.51.100.8:5061", self.aor),
        }
    }

    /// The Authorization value for `method`/`uri` answering the last challenge.
    fn authorization(&mut self, method: &str, uri: &str, password: &str) -> String {
        let c = self.chal.clone().expect("no challenge yet");
        self.nc += 1;
        let nc = format!("{:08x}", self.nc);
        let cnonce = format!("6b8b4567{:04x}", self.nc);
        let ha1 = h(
            &c.algorithm,
            &format!("{}:{}:{password}", self.auth_user, c.realm),
        );
        let ha2 = h(&c.algorithm, &format!("{method}:{uri}"));
        let response = h(
            &c.algorithm,
            &format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", c.nonce),
        );
        assert_eq!(c.qop, "auth");
        let opaque = c
            .opaque
            .map(|o| format!("opaque=\"{o}\""))
            .unwrap_or_default();
        match self.style {
            Style::Yealink => format!(
                "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", \
                 response=\"{response}\", algorithm={}, cnonce=\"{cnonce}\", {opaque}, \
                 qop=auth, nc={nc}",
                self.auth_user, c.realm, c.nonce, c.algorithm
            ),
            Style::Sipp => format!(
                "Digest username=\"{}\",realm=\"{}\",cnonce=\"{cnonce}\",nc={nc},qop=auth,\
                 uri=\"{uri}\",nonce=\"{}\",response=\"{response}\",algorithm={},{opaque}",
                self.auth_user, c.realm, c.nonce, c.algorithm
            ),
        }
    }

    fn next_branch(&mut self) -> String {
        self.branch += 1;
        format!(
            "z9hG4bK{:?}{}-{}x{}",
            self.style,
            self.aor,
            self.peer.addr.port(),
            self.branch
        )
    }

    /// A REGISTER as this phone sends it. `contacts`: Contact header values (None = the phone's
    /// own); `expires`: the Expires header (None = absent); `auth`: add Authorization.
    fn register(
        &mut self,
        contacts: Option<&[&str]>,
        expires: Option<&str>,
        auth: bool,
    ) -> Vec<u8> {
        self.register_pw(contacts, expires, auth, &self.password.clone())
    }

    fn register_pw(
        &mut self,
        contacts: Option<&[&str]>,
        expires: Option<&str>,
        auth: bool,
        password: &str,
    ) -> Vec<u8> {
        self.cseq += 1;
        let branch = self.next_branch();
        let uri = "sip:203.0.113.10:5060";
        let own = self.contact();
        let contact_lines: String = match contacts {
            None => format!("Contact: {own}\r\n"),
            Some(list) => list.iter().map(|c| format!("Contact: {c}\r\n")).collect(),
        };
        let expires = expires
            .map(|e| format!("Expires: {e}\r\n"))
            .unwrap_or_default();
        let authz = if auth {
            format!(
                "Authorization: {}\r\n",
                self.authorization("REGISTER", uri, password)
            )
        } else {
            String::new()
        };
        let via_host = match self.style {
            Style::Yealink => "192.168.1.20:5062",
            Style::Sipp => "198.51.100.8:5061",
        };
        match self.style {
            Style::Yealink => format!(
                "REGISTER {uri} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {via_host};branch={branch};rport\r\n\
                 From: \"{aor}\" <sip:{aor}@203.0.113.10:5060>;tag=2093791745\r\n\
                 To: \"{aor}\" <sip:{aor}@203.0.113.10:5060>\r\n\
                 Call-ID: {cid}\r\n\
                 CSeq: {cseq} REGISTER\r\n\
                 {contact_lines}\
                 {authz}\
                 X-Grandstream-PBX: false\r\n\
                 Max-Forwards: 70\r\n\
                 User-Agent: Yealink SIP-T46S 66.86.0.15\r\n\
                 {expires}\
                 Allow: INVITE, INFO, PRACK, ACK, BYE, CANCEL, OPTIONS, NOTIFY, REGISTER, SUBSCRIBE, REFER, PUBLISH, UPDATE, MESSAGE\r\n\
                 Allow-Events: talk,hold,conference,refer,check-sync\r\n\
                 Content-Length: 0\r\n\r\n",
                aor = self.aor,
                cid = self.call_id,
                cseq = self.cseq,
            ),
            Style::Sipp => format!(
                "REGISTER {uri} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {via_host};branch={branch}\r\n\
                 From: <sip:{aor}@203.0.113.10>;tag=4242SIPpTag001\r\n\
                 To: <sip:{aor}@203.0.113.10>\r\n\
                 Call-ID: {cid}\r\n\
                 CSeq: {cseq} REGISTER\r\n\
                 {contact_lines}\
                 Max-Forwards: 70\r\n\
                 Subject: Performance Test\r\n\
                 {authz}\
                 {expires}\
                 Content-Length: 0\r\n\r\n",
                aor = self.aor,
                cid = self.call_id,
                cseq = self.cseq,
            ),
        }
        .into_bytes()
    }

    /// Sends an unauthenticated REGISTER, expects 401 and learns the challenge.
    fn get_challenge(&mut self, ep: &mut Endpoint, now: Instant) -> Response {
        let msg = self.register(None, Some("3600"), false);
        ep.handle_input(now, &msg, self.peer);
        let r = one_response(ep);
        assert_eq!(r.status, 401, "{r:?}");
        assert!(
            ep.poll_auth_request().is_none(),
            "no lookup without credentials"
        );
        self.chal = Some(challenge(&r, "WWW-Authenticate", self.alg));
        self.nc = 0;
        r
    }

    /// The whole dance: 401, then the authenticated REGISTER, answered from `store`.
    fn register_fully(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        store: &[Credential],
        contacts: Option<&[&str]>,
        expires: Option<&str>,
    ) -> Response {
        if self.chal.is_none() {
            self.get_challenge(ep, now);
        }
        let msg = self.register(contacts, expires, true);
        ep.handle_input(now, &msg, self.peer);
        assert!(
            drain(ep).is_empty(),
            "nothing is sent before the credential comes"
        );
        assert_eq!(answer(ep, now, store), vec![self.auth_user.clone()]);
        one_response(ep)
    }

    /// An INVITE from this phone to `ext`, with an optional Proxy-Authorization.
    fn invite(&mut self, ext: &str, call_id: &str, proxy_auth: Option<&str>) -> Vec<u8> {
        self.cseq += 1;
        let branch = self.next_branch();
        let pa = proxy_auth
            .map(|a| format!("Proxy-Authorization: {a}\r\n"))
            .unwrap_or_default();
        let sdp = "v=0\r\no=- 1 1 IN IP4 192.168.1.20\r\ns=-\r\nc=IN IP4 192.168.1.20\r\n\
                   t=0 0\r\nm=audio 11780 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        format!(
            "INVITE sip:{ext}@203.0.113.10:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.168.1.20:5062;branch={branch};rport\r\n\
             From: \"{aor}\" <sip:{aor}@203.0.113.10:5060>;tag=1714158474\r\n\
             To: <sip:{ext}@203.0.113.10:5060>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} INVITE\r\n\
             Contact: <sip:{aor}@192.168.1.20:5062>\r\n\
             {pa}\
             Max-Forwards: 70\r\n\
             User-Agent: Yealink SIP-T46S 66.86.0.15\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: {len}\r\n\r\n{sdp}",
            aor = self.aor,
            cseq = self.cseq,
            len = sdp.len(),
        )
        .into_bytes()
    }
}

fn contact_expires(r: &Response) -> Vec<(String, u64)> {
    r.contacts()
        .unwrap()
        .into_iter()
        .map(|c| {
            let e = c
                .params
                .get("expires")
                .flatten()
                .expect("expires param")
                .parse()
                .unwrap();
            (c.uri.to_string(), e)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// REGISTER: challenge and digest
// ---------------------------------------------------------------------------------------------

#[test]
fn challenge_offers_sha256_then_md5_with_qop_auth() {
    let mut ep = endpoint();
    let now = Instant::now();
    let mut p = Phone::yealink("8001", "g-a1b2c3", "s3cret-guest");
    let r = p.get_challenge(&mut ep, now);
    let chals: Vec<Chal> = r
        .headers
        .get_all("WWW-Authenticate")
        .map(parse_challenge)
        .collect();
    assert_eq!(
        chals
            .iter()
            .map(|c| c.algorithm.as_str())
            .collect::<Vec<_>>(),
        vec!["SHA-256", "MD5"]
    );
    for c in &chals {
        assert_eq!(c.realm, T0_REALM);
        assert_eq!(c.qop, "auth");
        assert!(!c.stale);
        assert!(c.nonce.len() >= 32);
    }
    assert_eq!(ep.binding_count(), 0);
    assert!(reg_events(&mut ep).is_empty());
}

#[test]
fn the_shipped_default_offers_one_md5_challenge() {
    let cfg = RegistrarConfig {
        realm: T0_REALM.into(),
        ..RegistrarConfig::default()
    };
    let mut ep = endpoint_with(cfg, RegistrarLimits::default());
    let mut p = Phone::yealink("8001", "g-a1b2c3", "s3cret-guest");
    let r = p.get_challenge(&mut ep, Instant::now());
    let algorithms: Vec<String> = r
        .headers
        .get_all("WWW-Authenticate")
        .map(parse_challenge)
        .map(|c| c.algorithm)
        .collect();
    assert_eq!(algorithms, vec!["MD5".to_string()]);
}

#[test]
fn yealink_md5_registers_and_the_200_lists_the_binding() {
    let mut ep = endpoint();
    let now = Instant::now();
    let store = accounts();
    let mut p = Phone::yealink("8001", "g-a1b2c3", "s3cret-guest");
    p.get_challenge(&mut ep, now);
    let msg = p.register(None, Some("3600"), true);
    ep.handle_input(now, &msg, p.peer);
    assert!(drain(&mut ep).is_empty());
    // A retransmission while the lookup is pending is absorbed (no second lookup).
    ep.handle_input(now + Duration::from_millis(500), &msg, p.peer);
    assert!(drain(&mut ep).is_empty());
    assert_eq!(answer(&mut ep, now, &store), vec!["g-a1b2c3".to_string()]);
    let r = one_response(&mut ep);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        contact_expires(&r),
        vec![("sip:8001@192.168.1.20:5062".to_string(), 3600)]
    );
    let c = &r.contacts().unwrap()[0];
    assert_eq!(r.headers.get("Expires"), Some("3600"));
    assert!(
        c.params.get("+sip.instance").is_some(),
        "contact params kept"
    );
    let evs = reg_events(&mut ep);
    assert_eq!(
        evs,
        vec![RegistrarEvent::Registered {
            account_id: 1,
            peer: p.peer,
            contacts: vec![Uri::parse("sip:8001@192.168.1.20:5062").unwrap()],
        }]
    );
    let bound = ep.contacts(1);
    assert_eq!(bound.len(), 1);
    assert_eq!(bound[0].1, p.peer);
    // A retransmission after the 200 gets the same 200 again.
    ep.handle_input(now + Duration::from_secs(1), &msg, p.peer);
    assert_eq!(one_response(&mut ep).status, 200);
    assert_eq!(ep.poll_auth_request(), None);
}

#[test]
fn sipp_sha256_registers() {
    let mut ep = endpoint();
    let now = Instant::now();
    let store = accounts();
    let mut p = Phone::sipp("101", "line101", "line-pass");
    let r = p.register_fully(&mut ep, now, &store, None, Some("600"));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        contact_expires(&r),
        vec![("sip:101@198.51.100.8:5061".to_string(), 600)]
    );
    // Response goes back to the Via sent-by (no rport), which is the source here.
    assert_eq!(
        ep.contacts(3)[0].1.addr,
        SIPP.parse::<SocketAddr>().unwrap()
    );
}

#[test]
fn wrong_password_gets_401_again_and_never_binds() {
    let mut ep = endpoint();
    let now = Instant::now();
    let store = accounts();
    let mut p = Phone::yealink("8001", "g-a1b2c3", "s3cret-guest");
    p.get_challenge(&mut ep, now);
    for i in 0..3 {
        let msg = p.register_pw(None, Some("3600"), true, "not-the-password");
        ep.handle_input(now, &msg, p.peer);
        answer(&mut ep, now, &store);
        let r = one_response(&mut ep);
        assert_eq!(r.status, 401, "attempt {i}");
        let c = challenge(&r, "WWW-Authenticate", "MD5");
        assert!(!c.stale, "a wrong password is never reported stale");
    }
    assert_eq!(ep.binding_count(), 0);
    assert!(ep.contacts(1).is_empty());
    assert!(reg_events(&mut ep).is_empty());
}

#[test]
fn unknown_user_is_answered_like_a_wrong_password() {
    let mut ep = endpoint();
    let now = Instant::now();
    let mut p = Phone::yealink("8009", "nobody", "x");
    p.get_challenge(&mut ep, now);
    let msg = p.register(None, Some("3600"), true);
    ep.handle_input(now, &msg, p.peer);
    assert_eq!(answer(&mut ep, now, &[]), vec!["nobody".to_string()]);
    assert_eq!(one_response(&mut ep).status, 401);
    assert_eq!(ep.binding_count(), 0);
}

#[test]
fn expired_nonce_with_right_password_is_stale_and_the_retry_registers() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let store = accounts();
    let mut p = Phone::yealink("8001", "g-a1b2c3", "s3cret-guest");
    p.get_challenge(&mut ep, t0);
    let later = t0 + Duration::from_secs(301);
    // Wrong password with the old nonce: plain 401, not stale.
    let msg = p.register_pw(None, Some("3600"), true, "wrong");
    ep.handle_input(later, &msg, p.peer);
    answer(&mut ep, later, &store);
    let r = one_response(&mut ep);
    assert_eq!(r.status, 401);
    assert!(!challenge(&r, "WWW-Authenticate", "MD5").stale);
    // Right password with the old nonce: stale=true.
    let msg = p.register(None, Some("3600"), true);
    ep.handle_input(later, &msg, p.peer);
    answer(&mut ep, later, &store);
    let r = one_response(&mut ep);
    assert_eq!(r.status, 401);
    let c = challenge(&r, "WWW-Authenticate", "MD5");
    assert!(c.stale);
    assert_eq!(ep.binding_count(), 0);
    // The phone retries with the new nonce without asking the user.
    p.chal = Some(c);
    p.nc = 0;
    let msg = p.register(None, Some("3600"), true);
    ep.handle_input(later, &msg, p.peer);
    answer(&mut ep, later, &store);
    assert_eq!(one_response(&mut ep).status, 200);
}

#[test]
fn replayed_authorization_is_not_accepted_twice() {
    let mut ep = endpoint();
    let now = Instant::now();
    let store = accounts();
    let mut p = Phone::yealink("8001", "g-a1b2c3", "s3cret-guest");
    p.get_challenge(&mut ep, now);
    let msg = p.register(None, Some("3600"), true);
    ep.handle_input(now, &msg, p.peer);
    answer(&mut ep, now, &store);
    assert_eq!(one_response(&mut ep).status, 200);
    // Same Authorization (same nc) in a new transaction, another contact: refused.
    let text = String::from_utf8(msg).unwrap();
    let replay = text
        .replace(
            &format!("branch=z9hG4bKYealink8001-5062x{}", p.branch),
            "branch=z9hG4bKreplay",
        )
        .replace("192.168.1.20:5062>", "10.66.66.66:5060>");
    ep.handle_input(now, replay.as_bytes(), p.peer);
    answer(&mut ep, now, &store);
    let r = one_response(&mut ep);
    assert_eq!(r.status, 401);
    assert_eq!(ep.contacts(1).len(), 1, "the replay bound nothing");
}

// ---------------------------------------------------------------------------------------------
// Expires, contacts, ordering
// ---------------------------------------------------------------------------------------------

#[test]
fn binding_expires_on_its_own_and_emits_unregistered() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let store = accounts();
    let mut p = Phone::yealink("8001", "g-a1b2c3", "s3cret-guest");
    assert_eq!(
        p.register_fully(&mut ep, t0, &store, None, Some("120"))
            .status,
        200
    );
    reg_events(&mut ep);
    // The endpoint's next deadline is the binding's expiry (nothing else is pending after the
    // non-INVITE transaction's timer J, which is 32 s).
    ep.handle_timeout(t0 + Duration::from_secs(119));
    assert_eq!(ep.contacts(1).len(), 1);
    assert!(reg_events(&mut ep).is_empty());
    assert_eq!(ep.poll_timeout(), Some(t0 + Duration::from_secs(120)));
    ep.handle_timeout(t0 + Duration::from_secs(120));
    assert!(ep.contacts(1).is_empty());
    assert_eq!(
        reg_events(&mut ep),
        vec![RegistrarEvent::Unregistered { account_id: 1 }]
    );
    assert_eq!(ep.binding_count(), 0);
    assert_eq!(ep.guests_registered(), 0);
    assert_eq!(ep.poll_timeout(), None);
}

#[test]
fn refresh_moves_the_expiry() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let store = accounts();
    let mut p = Phone::yealink("8001", "g-a1b2c3", "s3cret-guest");
    p.register_fully(&mut ep, t0, &store, None, Some("120"));
    let t1 = t0 + Duration::from_secs(100);
    let r = p.register_fully(&mut ep, t1, &store, None, Some("120"));
    assert_eq!(r.status, 200);
    ep.handle_timeout(t0 + Duration::from_secs(121));
    assert_eq!(ep.contacts(1).len(), 1, "refreshed binding still there");
    ep.handle_timeout(t1 + Duration::from_secs(120));
    assert!(ep.contacts(1).is_empty());
}

#[test]
fn a_shorter_contact_added_later_expires_first_alone() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let store = accounts();
    let mut p = Phone::yealink("8001", "g-a1b2c3", "s3cret-guest");
    let long = "<sip:8001@192.168.1.20:5062>";
    let short = "<sip:8001@192.168.1.20:5064>";
    p.register_fully(&mut ep, t0, &store, Some(&[long]), Some("3600"));
    let t1 = t0 + Duration::from_secs(10);
    let r = p.register_fully(&mut ep, t1, &store, Some(&[short]), Some("60"));
    assert_eq!(contact_expires(&r).len(), 2);
    reg_events(&mut ep);
    ep.handle_timeout(t1 + Duration::from_secs(59));
    assert_eq!(ep.contacts(1).len(), 2);
    ep.handle_timeout(t1 + Duration::from_secs(60));
    let left: Vec<String> = ep.contacts(1).iter().map(|(u, _)| u.to_string()).collect();
    assert_eq!(left, vec!["sip:8001@192.168.1.20:5062".to_string()]);
    assert!(
        reg_events(&mut ep).is_empty(),
        "the account is still registered"
    );
    // Many refreshes of the long one do not disturb its expiry.
    let mut t = t1 + Duration::from_secs(60);
    for _ in 0..50 {
        t += Duration::from_secs(1);
        assert_eq!(
            p.register_fully(&mut ep, t, &store, Some(&[long]), Some("3600"))
                .status,
            200
        );
    }
    assert_eq!(reg_events(&mut ep).len(), 50, "one Registered per refresh");
    ep.handle_timeout(t + Duration::from_secs(3599));
    assert_eq!(ep.contacts(1).len(), 1);
    ep.handle_timeout(t + Duration::from_secs(3600));
    assert!(ep.contacts(1).is_empty());
    assert_eq!(
        reg_events(&mut ep),
        vec![RegistrarEvent::Unregistered { account_id: 1 }]
    );
}

#[test]
fn tcp_registration_keeps_its_connection_until_it_closes() {
    let mut ep = endpoint();
    let now = Instant::now();
    let store = accounts();
    let mut p = Phone::sipp("101", "line101", "line-pass");
    p.peer.transport = Transport::Tcp;
    p.peer.conn = Some(42);
    // SIPp over TCP: the same message with a TCP Via.
    p.get_challenge(&mut ep, now);
    let msg = String::from_utf8(p.register(None, Some("600"), true))
        .unwrap()
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    ep.handle_input(now, msg.as_bytes(), p.peer);
    answer(&mut ep, now, &store);
    let out = drain(&mut ep);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].peer, p.peer, "answered on the same connection");
    assert_eq!(resp(&out[0]).status, 200);
    assert_eq!(ep.contacts(3)[0].1.conn, Some(42));
    ep.connection_closed(42);
    let (_, peer) = ep.contacts(3)[0].clone();
    assert_eq!(peer.conn, None);
    assert_eq!(peer.addr, p.peer.addr);
    assert_eq!(peer.transport, Transport::Tcp);
}

#[test]
fn several_contacts_unregister_one_then_star() {
    let mut ep = endpoint();
    let now = Instant::now();
    let store = accounts();
    let mut p = Phone::yealink("8001", "g-a1b2c3", "s3cret-guest");
    let a = "<sip:8001@192.168.1.20:5062>";
    let b = "<sip:8001@192.168.1.20:5070;transport=tcp>;expires=600";
    let r = p.register_fully(&mut ep, now, &store, Some(&[a, b]), Some("3600"));
    assert_eq!(r.status, 200);
    let mut listed = contact_expires(&r);
    listed.sort();
    assert_eq!(
        listed,
        vec![
            ("sip:8001@192.168.1.20:5062".to_string(), 3600),
            ("sip:8001@192.168.1.20:5070;transport=tcp".to_string(), 600),
        ]
    );
    assert_eq!(ep.contacts(1).len(), 2);
    // A query (no Contact) lists them without changing anything.
    let r = p.register_fully(&mut ep, now, &store, Some(&[]), None);
    assert_eq!(r.status, 200);
    assert_eq!(contact_expires(&r).len(), 2);
    reg_events(&mut ep);
    // Remove one with expires=0 (the host in another case: the same contact).
    let r = p.register_fully(
        &mut ep,
        now,
        &store,
        Some(&["<sip:8001@192.168.1.20:5070;transport=TCP>;expires=0"]),
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        contact_expires(&r),
        vec![("sip:8001@192.168.1.20:5062".to_string(), 3600)]
    );
    assert!(matches!(
        &reg_events(&mut ep)[..],
        [RegistrarEvent::Registered { contacts, .. }] if contacts.len() == 1
    ));
    // `*` with Expires: 0 removes the rest.
    let r = p.register_fully(&mut ep, now, &store, Some(&["*"]), Some("0"));
    assert_eq!(r.status, 200);
    assert!(r.contacts().unwrap().is_empty());
    assert!(ep.contacts(1).is_empty());
    assert_eq!(
        reg_events(&mut ep),
        vec![RegistrarEvent::Unregistered { account_id: 1 }]
    );
}

#[test]
fn star_needs_expires_zero_and_to_be_alone() {
    let mut ep = endpoint();
    let now = Instant::now();
    let mut p = Phone::yealink("8001", "g-a1b2c3", "s3cret-guest");
    for (contacts, expires) in [
        (vec!["*"], Some("3600")),
        (vec!["*"], None),
        (vec!["*", "<sip:8001@192.168.1.20:5062>"], Some("0")),
    ] {
        let msg = p.register(Some(&contacts), expires, false);
        ep.handle_input(now, &msg, p.peer);
        let r = one_response(&mut ep);
        assert_eq!(r.status, 400, "{contacts:?} {expires:?}");
        assert!(ep.poll_auth_request().is_none());
    }
}

#[test]
fn too_brief_is_423_with_min_expires_and_too_long_is_clamped() {
    let mut ep = endpoint();
    let now = Instant::now();
    let store = accounts();
    let mut p = Phone::yealink("8001", "g-a1b2c3", "s3cret-guest");
    let msg = p.register(None, Some("30"), false);
    ep.handle_input(now, &msg, p.peer);
    let r = one_response(&mut ep);
    assert_eq!(r.status, 423);
    assert_eq!(r.headers.get("Min-Expires"), Some("60"));
    // The contact parameter wins over the header.
    let msg = p.register(
        Some(&["<sip:8001@192.168.1.20:5062>;expires=59"]),
        Some("3600"),
        false,
    );
    ep.handle_input(now, &msg, p.peer);
    assert_eq!(one_response(&mut ep).status, 423);
    // Above the maximum: granted the maximum.
    let r = p.register_fully(&mut ep, now, &store, None, Some("86400"));
    assert_eq!(r.status, 200);
    assert_eq!(contact_expires(&r)[0].1, 3600);
    assert_eq!(r.headers.get("Expires"), Some("3600"));
    // No Expires at all: the default.
    let r = p.register_fully(
        &mut ep,
        now,
        &store,
        Some(&["<sip:8001@192.168.1.20:5099>"]),
        None,
    );
    let listed = contact_expires(&r);
    assert!(listed.contains(&("sip:8001@192.168.1.20:5099".to_string(), 1800)));
}

#[test]
fn same_call_id_with_lower_or_equal_cseq_is_refused_without_change() {
    let mut ep = endpoint();
    let now = Instant::now();
    let store = accounts();
    let mut p = Phone::yealink("8001", "g-a1b2c3", "s3cret-guest");
    p.cseq = 10;
    let r = p.register_fully(&mut ep, now, &store, None, Some("600"));
    assert_eq!(r.status, 200);
    let stored_cseq = p.cseq; // 12 (11 got the 401)
    reg_events(&mut ep);
    // An older update of the same binding arriving late (same Call-ID, lower CSeq).
    p.cseq = stored_cseq - 2;
    let msg = p.register(None, Some("0"), true);
    ep.handle_input(now, &msg, p.peer);
    answer(&mut ep, now, &store);
    let r = one_response(&mut ep);
    assert_eq!(r.status, 500);
    assert_eq!(ep.contacts(1).len(), 1, "binding unchanged");
    assert!(reg_events(&mut ep).is_empty());
    // Equal CSeq: refused too.
    p.cseq = stored_cseq - 1;
    let msg = p.register(None, Some("0"), true);
    ep.handle_input(now, &msg, p.peer);
    answer(&mut ep, now, &store);
    assert_eq!(one_response(&mut ep).status, 500);
    // Another Call-ID may use any CSeq.
    p.call_id = "other-call-id@192.168.1.20".into();
    p.cseq = 0;
    let msg = p.register(None, Some("0"), true);
    ep.handle_input(now, &msg, p.peer);
    answer(&mut ep, now, &store);
    assert_eq!(one_response(&mut ep).status, 200);
    assert!(ep.contacts(1).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Authorization: To, guests, limits
// ---------------------------------------------------------------------------------------------

#[test]
fn to_must_be_the_accounts_number() {
    let mut ep = endpoint();
    let now = Instant::now();
    let store = accounts();
    // Right credentials of account 1 (number 8001), but registering 8002.
    let mut p = Phone::yealink("8002", "g-a1b2c3", "s3cret-guest");
    let r = p.register_fully(&mut ep, now, &store, None, Some("600"));
    assert_eq!(r.status, 403);
    assert!(r.reason.contains("To"), "{}", r.reason);
    assert_eq!(ep.binding_count(), 0);
}

#[test]
fn guest_registration_disabled_is_403_lines_still_register() {
    let cfg = RegistrarConfig {
        guest: false,
        ..reg_cfg()
    };
    let mut ep = endpoint_with(cfg, RegistrarLimits::default());
    let now = Instant::now();
    let store = accounts();
    let mut g = Phone::yealink("8001", "g-a1b2c3", "s3cret-guest");
    let r = g.register_fully(&mut ep, now, &store, None, Some("600"));
    assert_eq!(r.status, 403);
    assert!(
        r.reason.contains("guest registration disabled"),
        "{}",
        r.reason
    );
    let mut l = Phone::sipp("101", "line101", "line-pass");
    assert_eq!(
        l.register_fully(&mut ep, now, &store, None, Some("600"))
            .status,
        200
    );
}

#[test]
fn max_guests_reached_is_503_with_retry_after() {
    let cfg = RegistrarConfig {
        max_guests: 1,
        ..reg_cfg()
    };
    let mut ep = endpoint_with(cfg, RegistrarLimits::default());
    let now = Instant::now();
    let store = accounts();
    let mut a = Phone::yealink("8001", "g-a1b2c3", "s3cret-guest");
    assert_eq!(
        a.register_fully(&mut ep, now, &store, None, Some("600"))
            .status,
        200
    );
    let mut b = Phone::sipp("8002", "g-d4e5f6", "other-guest");
    b.alg = "MD5";
    let r = b.register_fully(&mut ep, now, &store, None, Some("600"));
    assert_eq!(r.status, 503);
    assert!(r.reason.contains("guest limit reached"), "{}", r.reason);
    assert!(r.headers.get("Retry-After").is_some());
    assert!(ep.contacts(2).is_empty());
    // A bound guest may refresh; a line account is not counted.
    assert_eq!(
        a.register_fully(&mut ep, now, &store, None, Some("600"))
            .status,
        200
    );
    let mut l = Phone::sipp("101", "line101", "line-pass");
    l.peer.addr = "198.51.100.9:5061".parse().unwrap();
    assert_eq!(
        l.register_fully(&mut ep, now, &store, None, Some("600"))
            .status,
        200
    );
    // Once the first guest leaves, the second may come.
    assert_eq!(
        a.register_fully(&mut ep, now, &store, Some(&["*"]), Some("0"))
            .status,
        200
    );
    assert_eq!(
        b.register_fully(&mut ep, now, &store, None, Some("600"))
            .status,
        200
    );
    assert_eq!(ep.guests_registered(), 1);
}

#[test]
fn full_table_is_503_and_contacts_per_aor_are_capped() {
    let limits = RegistrarLimits {
        max_bindings: 3,
        max_contacts_per_aor: 2,
        ..RegistrarLimits::default()
    };
    let mut ep = endpoint_with(reg_cfg(), limits);
    let now = Instant::now();
    let store = accounts();
    let mut a = Phone::yealink("8001", "g-a1b2c3", "s3cret-guest");
    // Three contacts in one request: more than an AOR may have.
    let three = [
        "<sip:8001@10.0.0.1:5060>",
        "<sip:8001@10.0.0.2:5060>",
        "<sip:8001@10.0.0.3:5060>",
    ];
    let msg = a.register(Some(&three), Some("600"), false);
    ep.handle_input(now, &msg, a.peer);
    assert_eq!(one_response(&mut ep).status, 403);
    // Two, then a third one later: the least recently refreshed is evicted.
    let r = a.register_fully(&mut ep, now, &store, Some(&three[..2]), Some("600"));
    assert_eq!(r.status, 200);
    let later = now + Duration::from_secs(1);
    let r = a.register_fully(&mut ep, later, &store, Some(&three[2..]), Some("600"));
    assert_eq!(r.status, 200);
    assert_eq!(contact_expires(&r).len(), 2);
    assert_eq!(ep.binding_count(), 2);
    // Another account: one more binding fits (3), the next does not.
    let mut l = Phone::sipp("101", "line101", "line-pass");
    assert_eq!(
        l.register_fully(&mut ep, now, &store, None, Some("600"))
            .status,
        200
    );
    let r = l.register_fully(
        &mut ep,
        now,
        &store,
        Some(&["sip:101@198.51.100.8:5099"]),
        Some("600"),
    );
    assert_eq!(r.status, 503);
    assert!(r.headers.get("Retry-After").is_some());
    assert_eq!(ep.binding_count(), 3);
}

#[test]
fn credential_that_never_comes_times_out_with_500() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let mut p = Phone::yealink("8001", "g-a1b2c3", "s3cret-guest");
    p.get_challenge(&mut ep, t0);
    let msg = p.register(None, Some("600"), true);
    ep.handle_input(t0, &msg, p.peer);
    let ask = ep.poll_auth_request().expect("lookup asked");
    assert!(drain(&mut ep).is_empty());
    // 32*T1 = 16 s later: 500 with Retry-After, before the phone's own timer F (32 s).
    ep.handle_timeout(t0 + Duration::from_secs(15));
    assert!(drain(&mut ep).is_empty());
    ep.handle_timeout(t0 + Duration::from_secs(16));
    let r = one_response(&mut ep);
    assert_eq!(r.status, 500);
    assert!(r.headers.get("Retry-After").is_some());
    // The late answer is ignored.
    ep.credential(
        t0 + Duration::from_secs(17),
        ask.id,
        Some(accounts()[0].clone()),
    );
    assert!(drain(&mut ep).is_empty());
    assert_eq!(ep.binding_count(), 0);
}

#[test]
fn a_failed_lookup_is_500_at_once() {
    let mut ep = endpoint();
    let now = Instant::now();
    let mut p = Phone::yealink("8001", "g-a1b2c3", "s3cret-guest");
    p.get_challenge(&mut ep, now);
    ep.handle_input(now, &p.register(None, Some("600"), true), p.peer);
    let ask = ep.poll_auth_request().unwrap();
    ep.credential_failed(now, ask.id);
    let r = one_response(&mut ep);
    assert_eq!(r.status, 500);
    assert!(r.headers.get("Retry-After").is_some());
    // Nothing more happens later (the lookup is no longer pending).
    ep.handle_timeout(now + Duration::from_secs(20));
    assert!(drain(&mut ep).is_empty());
}

#[test]
fn allow_lists_register_once_enabled() {
    let mut ep = endpoint();
    let now = Instant::now();
    let msg = "OPTIONS sip:203.0.113.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bKo1\r\n\
               From: <sip:a@b>;tag=1\r\nTo: <sip:203.0.113.10>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\n\
               Content-Length: 0\r\n\r\n";
    ep.handle_input(now, msg.as_bytes(), Phone::yealink("1", "x", "y").peer);
    let r = one_response(&mut ep);
    assert!(r.headers.get("Allow").unwrap().contains("REGISTER"));
}

// ---------------------------------------------------------------------------------------------
// INVITE from registered phones
// ---------------------------------------------------------------------------------------------

fn registered_guest(ep: &mut Endpoint, now: Instant) -> Phone {
    let mut p = Phone::yealink("8001", "g-a1b2c3", "s3cret-guest");
    assert_eq!(
        p.register_fully(ep, now, &accounts(), None, Some("3600"))
            .status,
        200
    );
    reg_events(ep);
    p
}

/// INVITE without credentials → 407 (ACKed), learns the Proxy-Authenticate challenge.
fn invite_challenge(ep: &mut Endpoint, now: Instant, p: &mut Phone, ext: &str, cid: &str) {
    let msg = p.invite(ext, cid, None);
    ep.handle_input(now, &msg, p.peer);
    let r = one_response(ep);
    assert_eq!(r.status, 407, "{r:?}");
    assert!(r.headers.get("WWW-Authenticate").is_none());
    assert!(ep.poll_auth_request().is_none());
    assert!(std::iter::from_fn(|| ep.poll_event()).next().is_none());
    p.chal = Some(challenge(&r, "Proxy-Authenticate", "MD5"));
    p.nc = 0;
}

#[test]
fn invite_from_registered_phone_is_challenged_then_incoming_with_account() {
    let mut ep = endpoint();
    let now = Instant::now();
    let mut p = registered_guest(&mut ep, now);
    invite_challenge(&mut ep, now, &mut p, "7000", "call-1@192.168.1.20");
    let auth = p.authorization("INVITE", "sip:7000@203.0.113.10:5060", "s3cret-guest");
    let msg = p.invite("7000", "call-1@192.168.1.20", Some(&auth));
    ep.handle_input(now, &msg, p.peer);
    let r = one_response(&mut ep);
    assert_eq!(
        r.status, 100,
        "100 Trying while the credential is looked up"
    );
    assert!(ep.poll_event().is_none());
    assert_eq!(
        answer(&mut ep, now, &accounts()),
        vec!["g-a1b2c3".to_string()]
    );
    let evs: Vec<_> = std::iter::from_fn(|| ep.poll_event()).collect();
    match &evs[..] {
        [(
            id,
            CallEvent::Incoming {
                account, source, ..
            },
        )] => {
            assert_eq!(*account, Some(1));
            assert_eq!(*source, p.peer);
            ep.accept(now, *id, Bytes::from_static(b"v=0\r\n"));
            assert_eq!(one_response(&mut ep).status, 200);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn guest_calling_a_non_ivr_number_gets_403_line_gets_404() {
    let mut ep = endpoint();
    let now = Instant::now();
    let mut p = registered_guest(&mut ep, now);
    invite_challenge(&mut ep, now, &mut p, "5551234", "call-2@192.168.1.20");
    let auth = p.authorization("INVITE", "sip:5551234@203.0.113.10:5060", "s3cret-guest");
    let msg = p.invite("5551234", "call-2@192.168.1.20", Some(&auth));
    ep.handle_input(now, &msg, p.peer);
    assert_eq!(one_response(&mut ep).status, 100);
    answer(&mut ep, now, &accounts());
    let r = one_response(&mut ep);
    assert_eq!(r.status, 403);
    assert_eq!(r.reason, "Forbidden (guests may only call the IVR)");
    assert!(ep.poll_event().is_none());
    assert_eq!(ep.call_count(), 0);

    // A line account registered from another address: 404 for a number that is not ours.
    let mut l = Phone::yealink("101", "line101", "line-pass");
    l.peer.addr = "198.51.100.20:5062".parse().unwrap();
    assert_eq!(
        l.register_fully(&mut ep, now, &accounts(), None, Some("600"))
            .status,
        200
    );
    invite_challenge(&mut ep, now, &mut l, "5551234", "call-3@192.168.1.20");
    let auth = l.authorization("INVITE", "sip:5551234@203.0.113.10:5060", "line-pass");
    let msg = l.invite("5551234", "call-3@192.168.1.20", Some(&auth));
    ep.handle_input(now, &msg, l.peer);
    assert_eq!(one_response(&mut ep).status, 100);
    answer(&mut ep, now, &accounts());
    assert_eq!(one_response(&mut ep).status, 404);
}

#[test]
fn wrong_invite_credentials_get_407_then_403_after_three_failures() {
    let mut ep = endpoint();
    let now = Instant::now();
    let mut p = registered_guest(&mut ep, now);
    let cid = "call-4@192.168.1.20";
    invite_challenge(&mut ep, now, &mut p, "7000", cid);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let auth = p.authorization("INVITE", "sip:7000@203.0.113.10:5060", "bad");
        let msg = p.invite("7000", cid, Some(&auth));
        ep.handle_input(now, &msg, p.peer);
        answer(&mut ep, now, &accounts());
        let out = drain(&mut ep);
        statuses.push(out.iter().map(|t| resp(t).status).collect::<Vec<_>>());
        if let Some(r) = out.iter().map(resp).find(|r| r.status == 407) {
            p.chal = Some(challenge(&r, "Proxy-Authenticate", "MD5"));
            p.nc = 0;
        }
    }
    assert_eq!(
        statuses,
        vec![vec![100, 407], vec![100, 407], vec![100, 403]]
    );
    // Further tries of that call are refused at once, without a lookup.
    let auth = p.authorization("INVITE", "sip:7000@203.0.113.10:5060", "s3cret-guest");
    ep.handle_input(now, &p.invite("7000", cid, Some(&auth)), p.peer);
    assert_eq!(one_response(&mut ep).status, 403);
    assert!(ep.poll_auth_request().is_none());
    assert_eq!(ep.call_count(), 0);
}

/// The account of the one call the endpoint reports (`None`: a caller without account).
fn incoming_account(ep: &mut Endpoint) -> Option<i64> {
    match &std::iter::from_fn(|| ep.poll_event()).collect::<Vec<_>>()[..] {
        [(_, CallEvent::Incoming { account, .. })] => *account,
        other => panic!("{other:?}"),
    }
}

#[test]
fn invite_from_unregistered_source_is_unchanged() {
    let mut ep = endpoint();
    let now = Instant::now();
    let _p = registered_guest(&mut ep, now);
    let mut other = Phone::yealink("8001", "g-a1b2c3", "s3cret-guest");
    other.peer.addr = "198.51.100.99:5062".parse().unwrap();
    ep.handle_input(now, &other.invite("7000", "call-5@x", None), other.peer);
    assert_eq!(one_response(&mut ep).status, 100);
    assert_eq!(incoming_account(&mut ep), None);
}

#[test]
fn cancel_while_the_credential_is_looked_up_gives_487() {
    let mut ep = endpoint();
    let now = Instant::now();
    let mut p = registered_guest(&mut ep, now);
    let cid = "call-6@192.168.1.20";
    invite_challenge(&mut ep, now, &mut p, "7000", cid);
    let auth = p.authorization("INVITE", "sip:7000@203.0.113.10:5060", "s3cret-guest");
    let inv = String::from_utf8(p.invite("7000", cid, Some(&auth))).unwrap();
    ep.handle_input(now, inv.as_bytes(), p.peer);
    assert_eq!(one_response(&mut ep).status, 100);
    let branch = format!("z9hG4bKYealink8001-5062x{}", p.branch);
    let cancel = format!(
        "CANCEL sip:7000@203.0.113.10:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.168.1.20:5062;branch={branch};rport\r\n\
         From: \"8001\" <sip:8001@203.0.113.10:5060>;tag=1714158474\r\n\
         To: <sip:7000@203.0.113.10:5060>\r\nCall-ID: {cid}\r\nCSeq: {} CANCEL\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        p.cseq
    );
    ep.handle_input(now, cancel.as_bytes(), p.peer);
    let out = drain(&mut ep);
    let mut st: Vec<u16> = out.iter().map(|t| resp(t).status).collect();
    st.sort();
    assert_eq!(st, vec![200, 487]);
    answer(&mut ep, now, &accounts());
    assert!(drain(&mut ep).is_empty());
    assert!(ep.poll_event().is_none());
}

// ---------------------------------------------------------------------------------------------
// NOTIFY (resync)
// ---------------------------------------------------------------------------------------------

fn notify_target() -> (Uri, Peer) {
    (
        Uri::parse("sip:8001@192.168.1.20:5062").unwrap(),
        Peer {
            transport: Transport::Udp,
            addr: YEALINK.parse().unwrap(),
            conn: None,
        },
    )
}

fn run_until(ep: &mut Endpoint, until: Instant) -> Vec<(Instant, Transmit)> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        match ep.poll_timeout() {
            Some(t) if t <= until => {
                ep.handle_timeout(t);
                out.extend(drain(ep).into_iter().map(|x| (t, x)));
            }
            _ => break,
        }
    }
    out
}

#[test]
fn notify_is_well_formed_and_retransmitted_on_udp_until_timer_f() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (to, peer) = notify_target();
    let id = ep.send_notify(t0, &to, peer, "check-sync;reboot=true", None);
    let first = drain(&mut ep);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].peer, peer);
    let n = req(&first[0]);
    assert_eq!(n.method, Method::Notify);
    assert_eq!(n.uri, to);
    assert_eq!(n.headers.get("Event"), Some("check-sync;reboot=true"));
    assert_eq!(n.headers.get("Subscription-State"), Some("terminated"));
    assert_eq!(n.cseq().unwrap().method, Method::Notify);
    assert!(n.from().unwrap().tag().is_some());
    assert!(n.to().unwrap().tag().is_none());
    assert!(n
        .top_via()
        .unwrap()
        .branch()
        .unwrap()
        .starts_with("z9hG4bK"));
    assert!(n.body.is_empty());
    n.validate().unwrap();

    let sent = run_until(&mut ep, t0 + Duration::from_secs(40));
    let times: Vec<u128> = sent.iter().map(|(t, _)| (*t - t0).as_millis()).collect();
    // Timer E: 500 ms doubling to T2 = 4 s, then every 4 s; timer F at 32 s.
    assert_eq!(
        times,
        vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    for (_, t) in &sent {
        assert_eq!(t.data, first[0].data, "retransmissions are identical");
    }
    assert_eq!(
        reg_events(&mut ep),
        vec![RegistrarEvent::RequestDone { id, status: None }]
    );
    assert_eq!(ep.poll_timeout(), None);
}

fn answer_notify(ep: &mut Endpoint, now: Instant, n: &Request, status: u16, peer: Peer) {
    let mut r = Response::for_request(n, status, "");
    r.headers
        .set("To", format!("{};tag=ph1", n.headers.get("To").unwrap()));
    ep.handle_input(now, &r.to_bytes(), peer);
}

#[test]
fn notify_200_ends_it_and_is_reported() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (to, peer) = notify_target();
    let id = ep.send_notify(
        t0,
        &to,
        peer,
        "service-control",
        Some(("text/plain", Bytes::from_static(b"action=restart"))),
    );
    let n = req(&drain(&mut ep)[0]);
    assert_eq!(n.headers.get("Content-Type"), Some("text/plain"));
    assert_eq!(&n.body[..], b"action=restart");
    // A 100 does not end it; the 200 does.
    answer_notify(&mut ep, t0 + Duration::from_millis(100), &n, 100, peer);
    assert!(reg_events(&mut ep).is_empty());
    answer_notify(&mut ep, t0 + Duration::from_millis(200), &n, 200, peer);
    assert_eq!(
        reg_events(&mut ep),
        vec![RegistrarEvent::RequestDone {
            id,
            status: Some(200)
        }]
    );
    // No more retransmissions; a retransmitted 200 is absorbed (timer K).
    answer_notify(&mut ep, t0 + Duration::from_millis(300), &n, 200, peer);
    assert!(run_until(&mut ep, t0 + Duration::from_secs(40)).is_empty());
    assert!(reg_events(&mut ep).is_empty());
}

#[test]
fn notify_over_tcp_is_not_retransmitted_and_times_out() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (to, mut peer) = notify_target();
    peer.transport = Transport::Tcp;
    peer.conn = Some(7);
    let id = ep.send_notify(t0, &to, peer, "check-sync", None);
    let n = req(&drain(&mut ep)[0]);
    assert!(n.top_via().unwrap().transport == "TCP");
    assert!(run_until(&mut ep, t0 + Duration::from_secs(31)).is_empty());
    assert!(reg_events(&mut ep).is_empty());
    assert!(run_until(&mut ep, t0 + Duration::from_secs(32)).is_empty());
    assert_eq!(
        reg_events(&mut ep),
        vec![RegistrarEvent::RequestDone { id, status: None }]
    );
    // A connection that closes fails a pending NOTIFY at once.
    let id2 = ep.send_notify(t0, &to, peer, "check-sync", None);
    drain(&mut ep);
    ep.connection_closed(7);
    assert_eq!(
        reg_events(&mut ep),
        vec![RegistrarEvent::RequestDone {
            id: id2,
            status: None
        }]
    );
}

#[test]
fn notify_with_header_injection_is_not_sent() {
    let mut ep = endpoint();
    let (to, peer) = notify_target();
    let id = ep.send_notify(Instant::now(), &to, peer, "check-sync\r\nX-Evil: 1", None);
    assert!(drain(&mut ep).is_empty());
    assert_eq!(
        reg_events(&mut ep),
        vec![RegistrarEvent::RequestDone { id, status: None }]
    );
    assert_ne!(id, RequestId(0));
}

// ---------------------------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------------------------

#[test]
fn hostile_registers_never_panic_and_never_bind() {
    let mut ep = endpoint();
    let now = Instant::now();
    let store = accounts();
    let mut p = Phone::yealink("8001", "g-a1b2c3", "s3cret-guest");
    p.get_challenge(&mut ep, now);
    let good = String::from_utf8(p.register(None, Some("3600"), true)).unwrap();
    let variants: Vec<String> = vec![
        good.replace("Expires: 3600", "Expires: 99999999999999999999999"),
        good.replace("Expires: 3600", "Expires: -5"),
        good.replace("Expires: 3600", "Expires: 12abc"),
        good.replace("Expires: 3600", "Expires: 3600\r\nExpires: 0"),
        good.replace("reg-id=1", "expires"),
        good.replace("reg-id=1", "expires=ab"),
        good.replace("<sip:8001@192.168.1.20:5062>", "<tel:+15551234>"),
        good.replace("<sip:8001@192.168.1.20:5062>", "<mailto:a@b>"),
        good.replace("<sip:8001@192.168.1.20:5062>", "<sip:>"),
        good.replace(
            "To: \"8001\" <sip:8001@203.0.113.10:5060>",
            "To: <sip:203.0.113.10>",
        ),
        good.replace(
            "To: \"8001\" <sip:8001@203.0.113.10:5060>",
            "To: <tel:8001>",
        ),
        good.replace("Digest username", "Basic username"),
        good.replace("Digest username", "Digest username*"),
        good.replace("algorithm=MD5", "algorithm=MD5-sess"),
        good.replace("algorithm=MD5", "algorithm=SHA-512-256"),
        good.replace("algorithm=MD5", "algorithm=ROT13"),
        good.replace("qop=auth", "qop=auth-int"),
        good.replace("nc=00000001", "nc=zzzz"),
        good.replace("realm=\"selfprov.test\"", "realm=\"evil\""),
        good.replace(
            "uri=\"sip:203.0.113.10:5060\"",
            "uri=\"sip:elsewhere.example\"",
        ),
        good.replace("response=\"", "response=\"00"),
        good.replace("nonce=\"", "nonce=\"ff"),
        good.replace(
            "Authorization: ",
            &format!("Authorization: {}", "x".repeat(9000)),
        ),
        good.replace(
            "Contact: ",
            &format!("Contact: {}", "<sip:a@10.0.0.1>,".repeat(200)),
        ),
        good.replace("CSeq: 2 REGISTER", "CSeq: 4294967295 REGISTER"),
        good.replace("\r\n\r\n", "\r\nRequire: gruu\r\n\r\n"),
        good.replace("Max-Forwards: 70", "Max-Forwards: 0"),
    ];
    let mut rng_state = 0x2545F4914F6CDD1Du64;
    let mut next = || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    let mut inputs: Vec<Vec<u8>> = variants.into_iter().map(String::into_bytes).collect();
    // Byte-level mutations of the good message: flips, truncations, insertions.
    for _ in 0..2000 {
        let mut m = good.clone().into_bytes();
        for _ in 0..(1 + next() % 4) {
            let i = (next() as usize) % m.len();
            match next() % 3 {
                0 => m[i] = (next() % 256) as u8,
                1 => m.truncate(i.max(1)),
                _ => m.insert(i, b",;<>\"=*\r\n\0"[(next() % 10) as usize]),
            }
        }
        inputs.push(m);
    }
    for (i, m) in inputs.iter().enumerate() {
        let mut peer = p.peer;
        peer.addr.set_port(10_000 + (i % 50_000) as u16);
        ep.handle_input(now, m, peer);
        drain(&mut ep);
        // Lookups answered with the real store: a mutation outside the digest-covered parts
        // may bind once (its nc is fresh); replays of that nc cannot.
        answer(&mut ep, now, &store);
        drain(&mut ep);
    }
    run_until(&mut ep, now + Duration::from_secs(7200));
    // Whatever happened, the table is consistent and expired.
    assert_eq!(ep.binding_count(), 0);
    assert_eq!(ep.guests_registered(), 0);
}

// ---------------------------------------------------------------------------------------------
// Behind a proxy: Path (RFC 3327), P-Asserted-Identity from trusted proxies (RFC 3325)
// ---------------------------------------------------------------------------------------------

const PROXY: &str = "10.0.0.2:5070";
const PATH: &str = "<sip:10.0.0.2:5070;lr;received=sip:192.168.1.20:5062>";

fn proxy_peer() -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: PROXY.parse().unwrap(),
        conn: None,
    }
}

/// A phone's request as the proxy forwards it: the proxy's Via on top, and `extra` headers.
fn via_proxy(msg: Vec<u8>, n: u32, extra: &str) -> Vec<u8> {
    let raw = String::from_utf8(msg).unwrap();
    raw.replacen(
        "\r\nVia: ",
        &format!("\r\n{extra}Via: SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bKpx{n}\r\nVia: "),
        1,
    )
    .into_bytes()
}

fn endpoint_trusting(proxies: &[&str]) -> Endpoint {
    let mut ep = Endpoint::new(EndpointConfig {
        local_addr: LOCAL.parse().unwrap(),
        ivr_extensions: vec!["7000".into()],
        user_agent: "selfprov-test".into(),
        trusted_proxies: proxies.iter().map(|p| p.parse().unwrap()).collect(),
        ..EndpointConfig::default()
    });
    ep.enable_registrar(reg_cfg(), RegistrarLimits::default())
        .unwrap();
    ep
}

/// The guest 8001 registers through the proxy, which adds `Path` (and the phone said it
/// supports path when `supported`). Returns the 200 as the proxy received it.
fn register_through_proxy(ep: &mut Endpoint, now: Instant, supported: bool) -> (Phone, Transmit) {
    let mut p = Phone::yealink("8001", "g-a1b2c3", "s3cret-guest");
    let extra = format!(
        "Path: {PATH}\r\n{}",
        if supported { "Supported: path\r\n" } else { "" }
    );
    let msg = via_proxy(p.register(None, Some("3600"), false), 1, &extra);
    ep.handle_input(now, &msg, proxy_peer());
    let r = one_response(ep);
    assert_eq!(r.status, 401, "{r:?}");
    p.chal = Some(challenge(&r, "WWW-Authenticate", "MD5"));
    p.nc = 0;
    let msg = via_proxy(p.register(None, Some("3600"), true), 2, &extra);
    ep.handle_input(now, &msg, proxy_peer());
    answer(ep, now, &accounts());
    let out = drain(ep);
    assert_eq!(out.len(), 1);
    assert_eq!(resp(&out[0]).status, 200);
    reg_events(ep);
    (p, out.into_iter().next().unwrap())
}

#[test]
fn path_is_kept_echoed_for_supporting_phones_and_routes_the_notify() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (_, ok) = register_through_proxy(&mut ep, now, true);
    assert_eq!(ok.peer, proxy_peer(), "the 200 goes back through the proxy");
    assert_eq!(resp(&ok).headers.get("Path"), Some(PATH));
    let regs = ep.registrations(1);
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0].peer, proxy_peer());
    assert_eq!(regs[0].path.len(), 1);
    assert_eq!(regs[0].path[0].to_string(), PATH);

    let r = &regs[0];
    ep.send_notify_routed(now, &r.contact, r.peer, &r.path, "check-sync", None);
    let out = drain(&mut ep);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].peer,
        proxy_peer(),
        "the NOTIFY goes to the first Path hop"
    );
    let n = req(&out[0]);
    assert_eq!(
        n.uri, r.contact,
        "the Request-URI stays the contact (loose routing)"
    );
    let routes: Vec<&str> = n.headers.get_all("Route").collect();
    assert_eq!(routes, [PATH]);
    n.validate().unwrap();
}

#[test]
fn path_is_not_echoed_to_a_phone_that_did_not_ask_and_bad_path_is_400() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (mut p, ok) = register_through_proxy(&mut ep, now, false);
    assert_eq!(resp(&ok).headers.get("Path"), None);
    assert_eq!(ep.registrations(1)[0].path.len(), 1, "stored all the same");
    let msg = via_proxy(
        p.register(None, Some("3600"), false),
        3,
        "Path: <sip:10.0.0.2:5070;lr\r\n",
    );
    ep.handle_input(now, &msg, proxy_peer());
    assert_eq!(one_response(&mut ep).status, 400);
}

#[test]
fn a_proxy_registering_phones_is_not_a_registered_source() {
    // Its INVITEs carry many phones' calls: they are not challenged for one account.
    let mut ep = endpoint();
    let now = Instant::now();
    let (mut p, _) = register_through_proxy(&mut ep, now, true);
    let msg = via_proxy(p.invite("7000", "px-1@192.168.1.20", None), 4, "");
    ep.handle_input(now, &msg, proxy_peer());
    assert_eq!(one_response(&mut ep).status, 100);
    assert_eq!(incoming_account(&mut ep), None);
}

#[test]
fn a_trusted_proxys_asserted_identity_names_the_account() {
    let mut ep = endpoint_trusting(&["10.0.0.0/24"]);
    let now = Instant::now();
    let (mut p, _) = register_through_proxy(&mut ep, now, true);
    let pai = "P-Asserted-Identity: \"8001\" <sip:8001@10.0.0.2>\r\n";
    let msg = via_proxy(p.invite("7000", "pai-1@192.168.1.20", None), 4, pai);
    ep.handle_input(now, &msg, proxy_peer());
    assert_eq!(one_response(&mut ep).status, 100, "not challenged");
    assert_eq!(incoming_account(&mut ep), Some(1));
    // The guest rule holds for an asserted guest too.
    let msg = via_proxy(p.invite("5555", "pai-2@192.168.1.20", None), 5, pai);
    ep.handle_input(now, &msg, proxy_peer());
    assert_eq!(one_response(&mut ep).status, 403);
    // An identity naming no registered account: a caller without account.
    let other = "P-Asserted-Identity: <sip:9999@10.0.0.2>\r\n";
    let msg = via_proxy(p.invite("7000", "pai-3@192.168.1.20", None), 6, other);
    ep.handle_input(now, &msg, proxy_peer());
    assert_eq!(one_response(&mut ep).status, 100);
    assert_eq!(incoming_account(&mut ep), None);
    // A malformed one is ignored, not fatal.
    let bad = "P-Asserted-Identity: <sip:8001@10.0.0.2\r\n";
    let msg = via_proxy(p.invite("7000", "pai-4@192.168.1.20", None), 7, bad);
    ep.handle_input(now, &msg, proxy_peer());
    assert_eq!(one_response(&mut ep).status, 100);
    assert_eq!(incoming_account(&mut ep), None);
}

#[test]
fn an_asserted_identity_from_an_untrusted_source_is_ignored_and_removed() {
    let mut ep = endpoint_trusting(&["10.9.9.9"]);
    let now = Instant::now();
    let (mut p, _) = register_through_proxy(&mut ep, now, true);
    let pai = "P-Asserted-Identity: <sip:8001@10.0.0.2>\r\n";
    let msg = via_proxy(p.invite("7000", "pai-u@192.168.1.20", None), 4, pai);
    ep.handle_input(now, &msg, proxy_peer());
    assert_eq!(one_response(&mut ep).status, 100);
    match &std::iter::from_fn(|| ep.poll_event()).collect::<Vec<_>>()[..] {
        [(
            _,
            CallEvent::Incoming {
                account, invite, ..
            },
        )] => {
            assert_eq!(*account, None);
            assert_eq!(invite.headers.get("P-Asserted-Identity"), None);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn notify_to_a_tcp_binding_whose_connection_closed_goes_to_its_contact() {
    let mut ep = endpoint();
    let now = Instant::now();
    let mut p = Phone::sipp("101", "line101", "line-pass");
    p.peer.transport = Transport::Tcp;
    p.peer.conn = Some(42);
    p.peer.addr = "198.51.100.8:40111".parse().unwrap();
    p.get_challenge(&mut ep, now);
    let contact = "<sip:101@198.51.100.8:5061;transport=tcp>";
    let msg = String::from_utf8(p.register(Some(&[contact]), Some("600"), true))
        .unwrap()
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    ep.handle_input(now, msg.as_bytes(), p.peer);
    answer(&mut ep, now, &accounts());
    assert_eq!(resp(&drain(&mut ep)[0]).status, 200);
    ep.connection_closed(42);
    let r = ep.registrations(3).remove(0);
    ep.send_notify_routed(now, &r.contact, r.peer, &r.path, "check-sync", None);
    let out = drain(&mut ep);
    assert_eq!(
        out[0].peer,
        Peer {
            transport: Transport::Tcp,
            addr: "198.51.100.8:5061".parse().unwrap(),
            conn: None,
        },
        "a new connection to the contact, not the closed one's port, not UDP"
    );
    assert!(req(&out[0])
        .headers
        .get("Via")
        .unwrap()
        .starts_with("SIP/2.0/TCP "));
}

#[test]
fn a_notify_to_an_unreachable_tcp_contact_fails_when_the_connection_cannot_be_opened() {
    let mut ep = endpoint();
    let now = Instant::now();
    let to = Uri::parse("sip:101@198.51.100.8:5061;transport=tcp").unwrap();
    let closed = Peer {
        transport: Transport::Tcp,
        addr: "198.51.100.8:40111".parse().unwrap(),
        conn: None,
    };
    let id = ep.send_notify_routed(now, &to, closed, &[], "check-sync", None);
    let out = drain(&mut ep);
    assert_eq!(out[0].peer.addr, "198.51.100.8:5061".parse().unwrap());
    // Another address failing changes nothing; this one ends the transaction at once.
    ep.connect_failed("198.51.100.9:5061".parse().unwrap());
    assert!(reg_events(&mut ep).is_empty());
    ep.connect_failed("198.51.100.8:5061".parse().unwrap());
    assert_eq!(
        reg_events(&mut ep),
        vec![RegistrarEvent::RequestDone { id, status: None }]
    );
    assert_eq!(ep.poll_timeout(), None, "no timer left");
}

#[test]
fn an_asserted_number_whose_binding_expired_names_no_account() {
    let mut ep = endpoint_trusting(&["10.0.0.2"]);
    let t0 = Instant::now();
    let (mut p, _) = register_through_proxy(&mut ep, t0, true);
    // The binding (3600 s) expires.
    let later = t0 + Duration::from_secs(3601);
    run_until(&mut ep, later);
    assert_eq!(
        reg_events(&mut ep),
        vec![RegistrarEvent::Unregistered { account_id: 1 }]
    );
    let pai = "P-Asserted-Identity: <sip:8001@10.0.0.2>\r\n";
    let msg = via_proxy(p.invite("7000", "pai-x@192.168.1.20", None), 9, pai);
    ep.handle_input(later, &msg, proxy_peer());
    assert_eq!(one_response(&mut ep).status, 100);
    assert_eq!(incoming_account(&mut ep), None);
}

#[test]
fn a_line_account_asserted_by_a_trusted_proxy_is_the_calls_account() {
    let mut ep = endpoint_trusting(&["10.0.0.2"]);
    let now = Instant::now();
    let mut p = Phone::sipp("101", "line101", "line-pass");
    p.peer = proxy_peer();
    p.alg = "MD5";
    let extra = format!("Path: {PATH}\r\n");
    let msg = via_proxy(p.register(None, Some("600"), false), 1, &extra);
    ep.handle_input(now, &msg, proxy_peer());
    let r = one_response(&mut ep);
    p.chal = Some(challenge(&r, "WWW-Authenticate", "MD5"));
    let msg = via_proxy(p.register(None, Some("600"), true), 2, &extra);
    ep.handle_input(now, &msg, proxy_peer());
    answer(&mut ep, now, &accounts());
    assert_eq!(one_response(&mut ep).status, 200);
    let pai = "P-Asserted-Identity: <sip:101@10.0.0.2>\r\n";
    let mut caller = Phone::yealink("101", "line101", "line-pass");
    let msg = via_proxy(caller.invite("7000", "pai-l@192.168.1.20", None), 3, pai);
    ep.handle_input(now, &msg, proxy_peer());
    assert_eq!(one_response(&mut ep).status, 100);
    assert_eq!(incoming_account(&mut ep), Some(3));
}
