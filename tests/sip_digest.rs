//! Digest authentication verifier (src/sip/digest.rs): RFC test vectors, SIP vectors computed
//! independently (Python hashlib), challenge/response round trips, expiry, stale, forgery,
//! replay, parsing of hostile input.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use selfprov::sip::digest::{
    ha1, parse_authorization, response_hex, uri_matches, Algorithm, DigestConfig, Outcome,
    Rejection, Secret, Verifier,
};

const REALM: &str = "selfprov.example";
const USER: &str = "alice";
const PASS: &str = "s3cr3t";
const RURI: &str = "sip:selfprov.example";

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn verifier() -> Verifier {
    Verifier::new(DigestConfig::new(REALM), [42; 32]).unwrap()
}

/// The value of `name` in a challenge we generated (quoted or token).
fn challenge_param(ch: &str, name: &str) -> Option<String> {
    let rest = ch.strip_prefix("Digest ")?;
    for part in rest.split(", ") {
        let (n, v) = part.split_once('=')?;
        if n == name {
            return Some(v.trim_matches('"').to_string());
        }
    }
    None
}

struct Client<'a> {
    alg: Algorithm,
    user: &'a str,
    realm: &'a str,
    pass: &'a str,
    method: &'a str,
    uri: &'a str,
    nonce: String,
    opaque: Option<String>,
    nc: u32,
    qop: bool,
}

impl Client<'_> {
    fn from_challenge(ch: &str) -> Client<'static> {
        Client {
            alg: Algorithm::from_name(&challenge_param(ch, "algorithm").unwrap()).unwrap(),
            user: USER,
            realm: REALM,
            pass: PASS,
            method: "REGISTER",
            uri: RURI,
            nonce: challenge_param(ch, "nonce").unwrap(),
            opaque: challenge_param(ch, "opaque"),
            nc: 1,
            qop: true,
        }
    }

    fn header(&self) -> String {
        let h1 = ha1(self.alg, self.user, self.realm, self.pass);
        let nc = format!("{:08x}", self.nc);
        let cnonce = "a1b2c3d4";
        let qop = self.qop.then_some(("auth", nc.as_str(), cnonce));
        let resp = response_hex(self.alg, &h1, &self.nonce, qop, self.method, self.uri);
        let mut h = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}",
            self.user, self.realm, self.nonce, self.uri, resp, self.alg.name()
        );
        if self.qop {
            h.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
        }
        if let Some(o) = &self.opaque {
            h.push_str(&format!(", opaque=\"{o}\""));
        }
        h
    }
}

fn check(v: &mut Verifier, header: &str, now: SystemTime) -> Outcome {
    v.verify_header(header, "REGISTER", RURI, now, |u| {
        (u == USER).then_some(Secret::Password(PASS))
    })
}

fn ok() -> Outcome {
    Outcome::Ok {
        username: USER.to_string(),
    }
}

// ------------------------------------------------------------------ RFC and independent vectors

/// RFC 7616 §3.9.1: the SHA-256 and MD5 responses for Mufasa / "Circle of Life".
#[test]
fn rfc7616_example_vectors() {
    let header = r#"Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;
    let c = parse_authorization(header).unwrap();
    assert_eq!(c.username, "Mufasa");
    assert_eq!(c.realm, "http-auth@example.org");
    assert_eq!(c.algorithm, Algorithm::Sha256);
    assert_eq!(
        c.opaque.as_deref(),
        Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
    );
    let q = c.qop.as_ref().unwrap();
    assert_eq!((q.nc.as_str(), q.nc_value), ("00000001", 1));
    for (alg, expected) in [
        (
            Algorithm::Sha256,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        ),
        (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
        // Not in the RFC: computed with Python hashlib.new("sha512_256").
        (
            Algorithm::Sha512_256,
            "430d05014cecc49cab6fbe03176d41a1da86cbfe24a16580e22aaad928d960d0",
        ),
    ] {
        let h1 = ha1(alg, &c.username, &c.realm, "Circle of Life");
        let got = response_hex(
            alg,
            &h1,
            &c.nonce,
            Some((&q.qop, &q.nc, &q.cnonce)),
            "GET",
            &c.uri,
        );
        assert_eq!(got, expected, "{alg:?}");
    }
    assert_eq!(
        c.response,
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
}

/// RFC 2617 §3.5 (note the capital O in "Circle Of Life" there).
#[test]
fn rfc2617_example_vector() {
    let header = r#"Digest username="Mufasa",
                 realm="testrealm@host.com",
                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                 uri="/dir/index.html",
                 qop=auth,
                 nc=00000001,
                 cnonce="0a4f113b",
                 response="6629fae49393a05397450978507c4ef1",
                 opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
    let c = parse_authorization(header).unwrap();
    assert_eq!(c.algorithm, Algorithm::Md5, "absent algorithm means MD5");
    let q = c.qop.as_ref().unwrap();
    let h1 = ha1(
        Algorithm::Md5,
        "Mufasa",
        "testrealm@host.com",
        "Circle Of Life",
    );
    let got = response_hex(
        Algorithm::Md5,
        &h1,
        &c.nonce,
        Some((&q.qop, &q.nc, &q.cnonce)),
        "GET",
        &c.uri,
    );
    assert_eq!(got, "6629fae49393a05397450978507c4ef1");
    assert_eq!(got, c.response);
    // The RFC's nonce is not ours: a verifier must not accept it.
    let mut v = Verifier::new(DigestConfig::new("testrealm@host.com"), [1; 32]).unwrap();
    let out = v.verify(
        &c,
        "GET",
        "/dir/index.html",
        &Secret::Password("Circle Of Life"),
        t(0),
    );
    assert_eq!(out, Outcome::BadNonce);
}

/// SIP REGISTER vectors computed independently with Python hashlib.
#[test]
fn sip_register_vectors() {
    let qop = Some(("auth", "00000001", "0a4f113b"));
    for (alg, h1, resp) in [
        (
            Algorithm::Md5,
            "3ee1e423bd78398b72da10b2b4623d86",
            "a5de4d858bd3e0c48c18496d0c688a43",
        ),
        (
            Algorithm::Sha256,
            "7a1b55c0e6c6340e1e08c90d2397df69789adb69d29d25f7b1ab6431e983d839",
            "a66836ad72ae8fc656666a71e54cb6aadf4b13aa3a1b22891f1a991e075b90a1",
        ),
        (
            Algorithm::Sha512_256,
            "cf5fe82e7ac9e67efe64f7450f70dacd66c0003c06c253547a94de12fd45b2dc",
            "0c5a507819cf10c72ebfa17b77bf1c261dc36179da58a0369ee7b98b5b7b7026",
        ),
    ] {
        assert_eq!(ha1(alg, USER, REALM, PASS), h1);
        assert_eq!(
            response_hex(alg, h1, "b6f2a7c1", qop, "REGISTER", RURI),
            resp
        );
    }
    // RFC 2069 form (no qop).
    let h1 = ha1(Algorithm::Md5, USER, REALM, PASS);
    assert_eq!(
        response_hex(Algorithm::Md5, &h1, "b6f2a7c1", None, "REGISTER", RURI),
        "92721edeebbb9c0e96f0cead8dc8ae4d"
    );
}

// ------------------------------------------------------------------ challenges and round trips

#[test]
fn challenges_one_per_algorithm_sha256_first() {
    let v = verifier();
    let chs = v.challenges(t(1_000), false);
    assert_eq!(chs.len(), 2);
    assert_eq!(
        challenge_param(&chs[0], "algorithm").as_deref(),
        Some("SHA-256")
    );
    assert_eq!(
        challenge_param(&chs[1], "algorithm").as_deref(),
        Some("MD5")
    );
    for ch in &chs {
        assert!(
            ch.starts_with("Digest realm=\"selfprov.example\", "),
            "{ch}"
        );
        assert_eq!(challenge_param(ch, "qop").as_deref(), Some("auth"));
        assert_eq!(challenge_param(ch, "opaque").as_deref(), Some(v.opaque()));
        assert!(!ch.contains("stale"));
    }
    assert_eq!(
        challenge_param(&chs[0], "nonce"),
        challenge_param(&chs[1], "nonce")
    );
    // Fresh nonce per challenge, even within the same second.
    let again = v.challenges(t(1_000), true);
    assert_ne!(
        challenge_param(&chs[0], "nonce"),
        challenge_param(&again[0], "nonce")
    );
    assert!(again.iter().all(|c| c.ends_with(", stale=true")));
    // Our own challenge parses back as the params we wrote (escaping of the realm).
    let odd = Verifier::new(DigestConfig::new(r#"a "quoted" \realm"#), [0; 32]).unwrap();
    let ch = &odd.challenges(t(5), false)[0];
    assert!(ch.contains(r#"realm="a \"quoted\" \\realm""#), "{ch}");
}

#[test]
fn config_errors() {
    assert!(Verifier::new(DigestConfig::new("bad\r\nrealm"), [0; 32]).is_err());
    assert!(Verifier::new(DigestConfig::new(""), [0; 32]).is_err());
    let mut c = DigestConfig::new("r");
    c.algorithms.clear();
    assert!(Verifier::new(c, [0; 32]).is_err());
}

#[test]
fn round_trip_every_algorithm_with_password_and_stored_ha1() {
    for alg in [Algorithm::Sha256, Algorithm::Md5, Algorithm::Sha512_256] {
        let mut cfg = DigestConfig::new(REALM);
        cfg.algorithms = vec![alg];
        let mut v = Verifier::new(cfg, [7; 32]).unwrap();
        let ch = &v.challenges(t(10_000), false)[0];
        let mut client = Client::from_challenge(ch);
        assert_eq!(client.alg, alg);
        assert_eq!(check(&mut v, &client.header(), t(10_001)), ok(), "{alg:?}");

        // Stored HA1 (uppercase hex tolerated) instead of the password.
        client.nc = 2;
        let stored = ha1(alg, USER, REALM, PASS).to_uppercase();
        let list = [(alg, stored.as_str())];
        let c = parse_authorization(&client.header()).unwrap();
        assert_eq!(
            v.verify(&c, "REGISTER", RURI, &Secret::Ha1(&list), t(10_002)),
            ok()
        );

        // A stored HA1 list without this algorithm.
        client.nc = 3;
        let other = if alg == Algorithm::Md5 {
            Algorithm::Sha256
        } else {
            Algorithm::Md5
        };
        let h = ha1(other, USER, REALM, PASS);
        let list = [(other, h.as_str())];
        let c = parse_authorization(&client.header()).unwrap();
        assert_eq!(
            v.verify(&c, "REGISTER", RURI, &Secret::Ha1(&list), t(10_002)),
            Outcome::NoCredential(alg)
        );
    }
}

#[test]
fn uppercase_response_hex_accepted() {
    let mut v = verifier();
    let client = Client::from_challenge(&v.challenges(t(50), false)[0]);
    let h = client.header();
    let resp = challenge_param(&h, "response").unwrap();
    let h = h.replace(&resp, &resp.to_uppercase());
    assert_eq!(check(&mut v, &h, t(51)), ok());
}

// ------------------------------------------------------------------ failures

#[test]
fn wrong_password_is_bad_response() {
    let mut v = verifier();
    let mut client = Client::from_challenge(&v.challenges(t(100), false)[0]);
    client.pass = "guess";
    assert_eq!(
        check(&mut v, &client.header(), t(101)),
        Outcome::BadResponse
    );
    // A failed attempt does not consume the nc: the right password still works with nc=1.
    client.pass = PASS;
    assert_eq!(check(&mut v, &client.header(), t(102)), ok());
}

#[test]
fn expiry_gives_stale_only_with_the_right_password() {
    let mut v = verifier(); // lifetime 300 s
    let ch = v.challenges(t(1_000), false);
    let mut client = Client::from_challenge(&ch[0]);
    assert_eq!(
        check(&mut v, &client.header(), t(1_300)),
        ok(),
        "at the lifetime edge"
    );
    client.nc = 2;
    let out = check(&mut v, &client.header(), t(1_301));
    assert_eq!(out, Outcome::Stale);
    assert!(out.challenge_stale());
    client.pass = "wrong";
    assert_eq!(
        check(&mut v, &client.header(), t(1_301)),
        Outcome::BadResponse
    );
    // A nonce from the future (clock stepped back a lot) is stale too.
    let mut client = Client::from_challenge(&v.challenges(t(5_000), false)[0]);
    client.nc = 1;
    assert_eq!(check(&mut v, &client.header(), t(4_000)), Outcome::Stale);
    // Configurable lifetime.
    let mut cfg = DigestConfig::new(REALM);
    cfg.nonce_lifetime = Duration::from_secs(10);
    let mut v = Verifier::new(cfg, [9; 32]).unwrap();
    let client = Client::from_challenge(&v.challenges(t(0), false)[0]);
    assert_eq!(check(&mut v, &client.header(), t(11)), Outcome::Stale);
}

#[test]
fn forged_and_foreign_nonces_are_bad_nonce() {
    let mut v = verifier();
    let mut client = Client::from_challenge(&v.challenges(t(100), false)[0]);
    // Push the timestamp forward (first 16 hex digits) to dodge expiry: the MAC breaks.
    let mut n = client.nonce.clone().into_bytes();
    n[14] = if n[14] == b'f' { b'e' } else { b'f' };
    client.nonce = String::from_utf8(n).unwrap();
    assert_eq!(check(&mut v, &client.header(), t(101)), Outcome::BadNonce);
    // Truncated, garbage, or from a verifier with another secret.
    for nonce in [
        "",
        "abcd",
        "zz",
        "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    ] {
        client.nonce = nonce.to_string();
        let out = check(&mut v, &client.header(), t(101));
        assert!(
            matches!(out, Outcome::BadNonce | Outcome::Malformed(_)),
            "{nonce}: {out:?}"
        );
    }
    let other = Verifier::new(DigestConfig::new(REALM), [43; 32]).unwrap();
    let mut client = Client::from_challenge(&other.challenges(t(100), false)[0]);
    client.opaque = None; // so only the nonce can fail
    assert_eq!(check(&mut v, &client.header(), t(101)), Outcome::BadNonce);
}

#[test]
fn opaque_checked_when_present_tolerated_when_absent() {
    let mut v = verifier();
    let mut client = Client::from_challenge(&v.challenges(t(100), false)[0]);
    client.opaque = Some("not-ours".into());
    assert_eq!(check(&mut v, &client.header(), t(101)), Outcome::BadNonce);
    client.opaque = None;
    assert_eq!(check(&mut v, &client.header(), t(101)), ok());
}

#[test]
fn wrong_realm_uri_user_and_algorithm() {
    let mut v = verifier();
    let ch = v.challenges(t(100), false);
    let mut client = Client::from_challenge(&ch[0]);
    client.realm = "other.example";
    assert_eq!(check(&mut v, &client.header(), t(101)), Outcome::WrongRealm);

    let mut client = Client::from_challenge(&ch[0]);
    client.uri = "sip:other.example";
    assert_eq!(
        check(&mut v, &client.header(), t(101)),
        Outcome::UriMismatch
    );

    let mut client = Client::from_challenge(&ch[0]);
    client.user = "mallory";
    assert_eq!(
        check(&mut v, &client.header(), t(101)),
        Outcome::UnknownUser
    );

    // A method other than the one signed.
    let client = Client::from_challenge(&ch[0]);
    let out = v.verify_header(&client.header(), "INVITE", RURI, t(101), |_| {
        Some(Secret::Password(PASS))
    });
    assert_eq!(out, Outcome::BadResponse);

    // An algorithm we know but did not offer.
    let mut cfg = DigestConfig::new(REALM);
    cfg.algorithms = vec![Algorithm::Sha256];
    let mut v2 = Verifier::new(cfg, [42; 32]).unwrap();
    let mut client = Client::from_challenge(&ch[1]);
    assert_eq!(client.alg, Algorithm::Md5);
    client.nc = 9;
    assert_eq!(
        check(&mut v2, &client.header(), t(101)),
        Outcome::AlgorithmNotOffered(Algorithm::Md5)
    );
}

#[test]
fn replayed_nc_is_refused_and_window_allows_reordering() {
    let mut v = verifier();
    let mut client = Client::from_challenge(&v.challenges(t(100), false)[0]);
    let first = client.header();
    assert_eq!(check(&mut v, &first, t(101)), ok());
    let out = check(&mut v, &first, t(102));
    assert_eq!(out, Outcome::Replayed);
    assert!(out.challenge_stale());
    client.nc = 3;
    assert_eq!(check(&mut v, &client.header(), t(103)), ok());
    client.nc = 2; // late but inside the window
    assert_eq!(check(&mut v, &client.header(), t(103)), ok());
    assert_eq!(check(&mut v, &client.header(), t(103)), Outcome::Replayed);
    assert_eq!(v.tracked_nonces(), 1);
}

#[test]
fn replay_table_bounded_and_evicted_nonces_are_stale_not_accepted() {
    let mut cfg = DigestConfig::new(REALM);
    cfg.replay_capacity = 2;
    let mut v = Verifier::new(cfg, [5; 32]).unwrap();
    let a = Client::from_challenge(&v.challenges(t(100), false)[0]);
    let b = Client::from_challenge(&v.challenges(t(101), false)[0]);
    let c = Client::from_challenge(&v.challenges(t(102), false)[0]);
    assert_eq!(check(&mut v, &a.header(), t(103)), ok());
    assert_eq!(check(&mut v, &b.header(), t(103)), ok());
    assert_eq!(check(&mut v, &c.header(), t(103)), ok());
    assert_eq!(v.tracked_nonces(), 2);
    // a was evicted: its captured header must not pass again.
    assert_eq!(check(&mut v, &a.header(), t(104)), Outcome::Stale);
}

#[test]
fn legacy_rfc2069_nonce_is_single_use_or_disabled() {
    let mut v = verifier();
    let ch = &v.challenges(t(100), false)[1];
    let mut client = Client::from_challenge(ch);
    client.qop = false;
    let h = client.header();
    assert!(!h.contains("qop"));
    assert_eq!(check(&mut v, &h, t(101)), ok());
    assert_eq!(check(&mut v, &h, t(102)), Outcome::Replayed);

    let mut cfg = DigestConfig::new(REALM);
    cfg.allow_legacy_no_qop = false;
    let mut v = Verifier::new(cfg, [42; 32]).unwrap();
    let mut client = Client::from_challenge(&v.challenges(t(100), false)[0]);
    client.qop = false;
    assert!(matches!(
        check(&mut v, &client.header(), t(101)),
        Outcome::Unsupported(_)
    ));
}

#[test]
fn select_credentials_picks_our_realm() {
    let v = verifier();
    let mut client = Client::from_challenge(&v.challenges(t(100), false)[0]);
    let ours = client.header();
    client.realm = "proxy.other";
    let theirs = client.header();
    assert_eq!(v.select_credentials(&[&theirs, &ours]), Some(ours.as_str()));
    assert_eq!(v.select_credentials(&["garbage", &theirs]), Some("garbage"));
    assert_eq!(v.select_credentials(&[]), None);
}

#[test]
fn tolerant_uri_compare() {
    assert!(uri_matches("sip:selfprov.example", "sip:selfprov.example"));
    assert!(uri_matches(
        "sip:SelfProv.Example:5060;transport=udp",
        "sip:selfprov.example"
    ));
    assert!(uri_matches(
        "SIP:selfprov.example",
        "sip:selfprov.example;lr"
    ));
    assert!(uri_matches("sips:example.com", "sips:example.com:5061"));
    assert!(!uri_matches(
        "sip:selfprov.example:5070",
        "sip:selfprov.example"
    ));
    assert!(!uri_matches(
        "sips:selfprov.example",
        "sip:selfprov.example"
    ));
    assert!(!uri_matches(
        "sip:bob@selfprov.example",
        "sip:selfprov.example"
    ));
    assert!(
        !uri_matches("sip:Alice@h", "sip:alice@h"),
        "user part is case-sensitive"
    );
    assert!(uri_matches(
        "http://10.0.0.1:8081/cfg/001565.cfg",
        "/cfg/001565.cfg"
    ));
    assert!(uri_matches("/a?x=1", "HTTPS://h/a?x=1"));
    assert!(!uri_matches("/a", "/b"));
    assert!(!uri_matches("sip:h", "/h"));
}

#[test]
fn tolerant_uri_in_full_verification() {
    let mut v = verifier();
    let mut client = Client::from_challenge(&v.challenges(t(100), false)[0]);
    client.uri = "sip:SELFPROV.example:5060;transport=udp";
    assert_eq!(check(&mut v, &client.header(), t(101)), ok());
}

// ------------------------------------------------------------------ parsing

#[test]
fn parse_is_case_insensitive_and_accepts_tokens_and_escapes() {
    let h = "dIGEST  USERNAME=\"a\\\"b\\\\c\" ,Realm=r,NONCE=\"n\",,  uri = \"sip:x\" , \
             Response=\"0123456789ABCDEF0123456789abcdef\", Algorithm=md5, QOP=\"auth\", \
             NC=1, CNonce=zz, future-param=\"ignored\", userhash=false";
    let c = parse_authorization(h).unwrap();
    assert_eq!(c.username, "a\"b\\c");
    assert_eq!(c.realm, "r");
    assert_eq!(c.uri, "sip:x");
    assert_eq!(c.response, "0123456789abcdef0123456789abcdef");
    assert_eq!(c.algorithm, Algorithm::Md5);
    let q = c.qop.unwrap();
    assert_eq!(
        (q.qop.as_str(), q.nc.as_str(), q.nc_value),
        ("auth", "1", 1)
    );
    assert_eq!(q.cnonce, "zz");
}

#[test]
fn parse_refusals_are_clear() {
    let base = |extra: &str, resp: &str| {
        format!(
            "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"/\", response=\"{resp}\"{extra}"
        )
    };
    let md5 = "0123456789abcdef0123456789abcdef";
    let sha = format!("{md5}{md5}");
    assert_eq!(
        parse_authorization(&base(", userhash=true", md5)),
        Err(Rejection::Unsupported("userhash (RFC 7616 §3.4.4)"))
    );
    assert!(matches!(
        parse_authorization(&base(", algorithm=MD5-sess", md5)),
        Err(Rejection::Unsupported(_))
    ));
    assert!(matches!(
        parse_authorization(&base(", algorithm=SHA-256-sess", &sha)),
        Err(Rejection::Unsupported(_))
    ));
    assert_eq!(
        parse_authorization(&base(", algorithm=SHA-1", md5)),
        Err(Rejection::UnknownAlgorithm("SHA-1".into()))
    );
    assert!(matches!(
        parse_authorization(&base(", qop=auth-int, nc=1, cnonce=x", md5)),
        Err(Rejection::Unsupported(_))
    ));
    assert!(matches!(
        parse_authorization(&base(", username*=UTF-8''x", md5)),
        Err(Rejection::Unsupported(_))
    ));
    for (h, why) in [
        (base("", "abc"), "short response"),
        (
            base(", algorithm=SHA-256", md5),
            "MD5-length response for SHA-256",
        ),
        (base(", qop=auth", md5), "qop without nc/cnonce"),
        (base(", qop=auth, nc=0, cnonce=x", md5), "nc zero"),
        (
            base(", qop=auth, nc=123456789, cnonce=x", md5),
            "nc too long",
        ),
        (base(", qop=auth, nc=xyz, cnonce=x", md5), "nc not hex"),
        (base(", nc=1", md5), "nc without qop"),
        (base(", realm=\"again\"", md5), "duplicate"),
        (base(", qop=bogus", md5), "unknown qop"),
        ("Basic dXNlcjpwYXNz".to_string(), "Basic"),
        ("Digest".to_string(), "no params"),
        (
            format!("Digest realm=\"r\", nonce=\"n\", uri=\"/\", response=\"{md5}\""),
            "no user",
        ),
        ("Digest username=\"u".to_string(), "unterminated"),
        ("Digest username".to_string(), "no ="),
        ("Digest username=\"u\" realm=\"r\"".to_string(), "no comma"),
        ("Digest username=\"a\u{1}\"".to_string(), "control char"),
        (format!("Digest username={}", "a".repeat(9000)), "too long"),
    ] {
        assert!(
            matches!(parse_authorization(&h), Err(Rejection::Malformed(_))),
            "{why}: {:?}",
            parse_authorization(&h)
        );
    }
}

// ------------------------------------------------------------------ hostile input

/// Deterministic xorshift, so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn fuzz_mutations_never_panic_and_never_authenticate() {
    let mut v = verifier();
    let mut client = Client::from_challenge(&v.challenges(t(100), false)[0]);
    client.nc = 5;
    let original = client.header();
    assert_eq!(check(&mut v, &original, t(101)), ok());
    let alphabet: &[&str] = &[
        "\"",
        "\\",
        ",",
        "=",
        " ",
        "\t",
        "\r\n",
        "a",
        "0",
        "f",
        "é",
        "\u{0}",
        "Digest",
        "nc=",
        "qop=auth",
        "\"\"",
        ",,",
        "€",
        "MD5-sess",
        "userhash=true",
    ];
    let mut rng = Rng(0x005e_edd1_6e57);
    for i in 0..20_000 {
        let mut s: Vec<char> = original.chars().collect();
        for _ in 0..1 + rng.below(4) {
            let pos = rng.below(s.len() + 1);
            match rng.below(5) {
                0 if !s.is_empty() => {
                    s.remove(pos.min(s.len() - 1));
                }
                1 => {
                    let ins = alphabet[rng.below(alphabet.len())];
                    for (k, c) in ins.chars().enumerate() {
                        s.insert((pos + k).min(s.len()), c);
                    }
                }
                2 if !s.is_empty() => {
                    let p = pos.min(s.len() - 1);
                    s[p] = char::from_u32(rng.below(0x250) as u32).unwrap_or('x');
                }
                3 => s.truncate(pos),
                _ => {
                    let p = pos.min(s.len());
                    let extra: Vec<char> = s[p..].to_vec();
                    s.extend(extra);
                }
            }
        }
        let h: String = s.into_iter().collect();
        let _ = parse_authorization(&h);
        let out = v.verify_header(&h, "REGISTER", RURI, t(102), |_| {
            Some(Secret::Password(PASS))
        });
        assert!(
            !matches!(out, Outcome::Ok { .. }),
            "iteration {i}: mutated header authenticated: {h:?}"
        );
    }
    // Random bytes, lossily decoded.
    for _ in 0..5_000 {
        let len = rng.below(300);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let h = format!("Digest {}", String::from_utf8_lossy(&bytes));
        let _ = check(&mut v, &h, t(102));
    }
}
