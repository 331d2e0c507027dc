//! The provisioning HTTP server (`phoneprov::serve`) on a temporary SQLite store: guest configs
//! for unknown MACs of each vendor (unique accounts, idempotent, the keyed config URL),
//! autoregistration disabled / range full, the unknown-MAC rate limit, provisioned phones'
//! files refused without the key / from a foreign address / without digest, served with the
//! key, from the registered address and with digest, the state change on fetch, vendor default
//! files, junk paths. Most requests go through `tower::ServiceExt::oneshot` with the peer
//! address set as axum's `ConnectInfo`; one test uses a real socket on 127.0.0.1.

mod common;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use selfprov::config::FileAuth;
use selfprov::phoneprov::serve::{router, serve, ProvSettings, ProvState};
use selfprov::phoneprov::{Renderer, SipServer};
use selfprov::sip::digest::{ha1, response_hex, Algorithm};
use selfprov::store::{DeviceState, Store, Transport};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const PUBLIC: &str = "http://prov.example:8081";
const PHONE: &str = "192.0.2.50";
const OTHER: &str = "203.0.113.9";

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    app: axum::Router,
}

async fn env_with(range: Option<(&str, &str)>, per_minute: u32, auth: FileAuth) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let store = Store::open(&url).await.unwrap();
    if let Some((a, b)) = range {
        let mut s = store.get_settings().await.unwrap();
        s.autoreg_start_dn = Some(a.into());
        s.autoreg_end_dn = Some(b.into());
        s.ivr_extensions = vec!["8500".into()];
        store.update_settings(s).await.unwrap();
    }
    let state = ProvState::new(
        store.clone(),
        Arc::new(Renderer::new().unwrap()),
        ProvSettings {
            server: SipServer {
                host: "192.0.2.1".into(),
                port: 5060,
                transport: Transport::Udp,
                pbx: None,
            },
            public_url: format!("{PUBLIC}/"),
            file_auth: auth,
            unknown_mac_per_minute: per_minute,
            realm: "selfprov".into(),
        },
    );
    Env {
        _dir: dir,
        store,
        app: router(state),
    }
}

async fn env() -> Env {
    env_with(Some(("7000", "7099")), 100, FileAuth::UrlKey).await
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn request(
    app: &axum::Router,
    method: &str,
    path: &str,
    ua: Option<&str>,
    ip: &str,
    auth: Option<&str>,
) -> Resp {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(ua) = ua {
        b = b.header("user-agent", ua);
    }
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    let mut req = b.body(Body::empty()).unwrap();
    let peer: SocketAddr = SocketAddr::new(ip.parse().unwrap(), 40000);
    req.extensions_mut().insert(ConnectInfo(peer));
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    Resp {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn get(app: &axum::Router, path: &str, ua: Option<&str>, ip: &str) -> Resp {
    request(app, "GET", path, ua, ip, None).await
}

/// (file, User-Agent, MAC, whether the vendor's file names a config-server URL)
fn vendor_files() -> Vec<(&'static str, &'static str, &'static str, bool)> {
    vec![
        (
            "SEP0022905C8E01.cnf.xml",
            "Cisco-CP8851/14.2.1",
            "0022905C8E01",
            false,
        ),
        (
            "001565aabb02.cfg",
            "Yealink SIP-T46S 66.86.0.15",
            "001565AABB02",
            true,
        ),
        (
            "0004f2aabb03-user.cfg",
            "FileTransport PolycomVVX-VVX_411-UA/6.4.0.0",
            "0004F2AABB03",
            true,
        ),
        (
            "cfg000b82aabb04.xml",
            "Grandstream Model HW GXP2170 SW 1.0.11.3 DEV 000b82aabb04",
            "000B82AABB04",
            true,
        ),
        (
            "snomD785-000413AABB05.htm",
            "Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33)",
            "000413AABB05",
            true,
        ),
    ]
}

#[tokio::test]
async fn unknown_macs_of_each_vendor_get_unique_guest_configs() {
    let e = env().await;
    let mut users = Vec::new();
    for (file, ua, mac, has_url) in vendor_files() {
        let r = get(&e.app, &format!("/{file}"), Some(ua), PHONE).await;
        assert_eq!(r.status, StatusCode::OK, "{file}: {}", r.body);
        assert_eq!(r.headers["cache-control"], "no-store");
        let d = e.store.find_device_by_mac(mac).await.unwrap().unwrap();
        assert_eq!(d.state, DeviceState::Autoprov, "{file}");
        assert!(
            d.last_ip.is_none(),
            "an unauthenticated fetch trusts no address"
        );
        let acc = e.store.guest_account(d.id).await.unwrap().unwrap();
        for needle in [&acc.auth_username, &acc.password, &acc.number] {
            assert!(
                r.body.contains(needle.as_str()),
                "{file} lacks {needle}:\n{}",
                r.body
            );
        }
        assert!(r.body.contains("192.0.2.1"), "{file}: registrar");
        let key = e.store.device_config_key(d.id).await.unwrap();
        // Grandstream's P237 takes it without the scheme.
        let url = format!("prov.example:8081/{key}/");
        assert_eq!(
            r.body.contains(&url),
            has_url,
            "{file}: config URL\n{}",
            r.body
        );
        // Second fetch (also under the key): the same account, no new device.
        let again = get(&e.app, &format!("/{key}/{file}"), Some(ua), PHONE).await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(again.body, r.body, "{file}");
        users.push(acc.auth_username);
    }
    users.sort();
    users.dedup();
    assert_eq!(users.len(), 5, "one account per phone");
    assert_eq!(e.store.list_devices().await.unwrap().len(), 5);
    // The guest config points at the IVR.
    let r = get(&e.app, "/001565aabb02.cfg", None, PHONE).await;
    assert!(r.body.contains("8500"), "{}", r.body);
    assert!(r
        .body
        .contains("static.auto_provision.server.url = http://prov.example:8081/"));
}

#[tokio::test]
async fn autoreg_disabled_or_full_gives_404_and_no_device() {
    let e = env_with(None, 100, FileAuth::UrlKey).await;
    let r = get(&e.app, "/001565aabb02.cfg", None, PHONE).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(e.store.list_devices().await.unwrap().is_empty());

    let e = env_with(Some(("70", "70")), 100, FileAuth::UrlKey).await;
    assert_eq!(
        get(&e.app, "/001565aabb02.cfg", None, PHONE).await.status,
        StatusCode::OK
    );
    let r = get(&e.app, "/001565aabb03.cfg", None, PHONE).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(!r.body.contains("70"));
    assert_eq!(e.store.list_devices().await.unwrap().len(), 1);
}

#[tokio::test]
async fn unknown_macs_are_rate_limited_per_source_ip() {
    let e = env_with(Some(("7000", "7099")), 2, FileAuth::UrlKey).await;
    for i in 0..2 {
        let r = get(&e.app, &format!("/001565aabb0{i}.cfg"), None, PHONE).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let r = get(&e.app, "/001565aabb09.cfg", None, PHONE).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(e
        .store
        .find_device_by_mac("001565AABB09")
        .await
        .unwrap()
        .is_none());
    // Another address has its own budget; a known phone is not limited.
    assert_eq!(
        get(&e.app, "/001565aabb09.cfg", None, OTHER).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&e.app, "/001565aabb00.cfg", None, PHONE).await.status,
        StatusCode::OK
    );
    // Vendor default files are not limited either.
    assert_eq!(
        get(&e.app, "/y000000000028.cfg", None, PHONE).await.status,
        StatusCode::OK
    );
}

/// Autoprov'd by a fetch, then bound to jdoe (extension 2001): returns (device id, key).
async fn bound_phone(e: &Env, file: &str, mac: &str) -> (i64, String) {
    assert_eq!(
        get(&e.app, &format!("/{file}"), None, PHONE).await.status,
        StatusCode::OK
    );
    let d = common::store::bind_to_jdoe(&e.store, mac).await;
    let key = e.store.device_config_key(d.id).await.unwrap();
    (d.id, key)
}

#[tokio::test]
async fn provisioned_files_need_the_key_or_the_registered_address() {
    let e = env().await;
    let (id, key) = bound_phone(&e, "001565aabb02.cfg", "001565AABB02").await;
    let line = e.store.get_device(id).await.unwrap().unwrap().lines[0].clone();
    let sip = e
        .store
        .get_sip_endpoint(
            e.store
                .get_line(line.line_id.unwrap())
                .await
                .unwrap()
                .unwrap()
                .sip_endpoint_id
                .unwrap(),
        )
        .await
        .unwrap()
        .unwrap();

    // The bare path: refused to everyone (no address is trusted yet), even the guest's.
    for ip in [PHONE, OTHER] {
        let r = get(&e.app, "/001565aabb02.cfg", None, ip).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{ip}");
        assert!(!r.body.contains(&sip.password));
    }
    assert_eq!(
        e.store.get_device(id).await.unwrap().unwrap().state,
        DeviceState::Provisioning
    );
    // Another device's file under this key, or a wrong key: refused.
    let r = get(&e.app, &format!("/{key}/001565aabb03.cfg"), None, PHONE).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let wrong = "f".repeat(32);
    let r = get(&e.app, &format!("/{wrong}/001565aabb02.cfg"), None, PHONE).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // With the key: the user's line, and the device is provisioned.
    let r = get(&e.app, &format!("/{key}/001565aabb02.cfg"), None, PHONE).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("account.1.user_name = 2001"), "{}", r.body);
    assert!(r
        .body
        .contains(&format!("account.1.auth_name = {}", sip.auth_username)));
    assert!(r
        .body
        .contains(&format!("account.1.password = {}", sip.password)));
    assert!(r.body.contains(&format!("{PUBLIC}/{key}/")));
    let d = e.store.get_device(id).await.unwrap().unwrap();
    assert_eq!(d.state, DeviceState::Provisioned);
    assert_eq!(d.last_ip.as_deref(), Some(PHONE));
    assert!(d.config_fetched_at.is_some());

    // The bare path from that address now works; from another, still not.
    assert_eq!(
        get(&e.app, "/001565aabb02.cfg", None, PHONE).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&e.app, "/001565aabb02.cfg", None, OTHER).await.status,
        StatusCode::FORBIDDEN
    );
    // A REGISTER from a new address moves the trust there (a Cisco phone's only way).
    e.store
        .record_registration(sip.id, OTHER.parse::<IpAddr>().unwrap())
        .await
        .unwrap();
    assert_eq!(
        get(&e.app, "/001565aabb02.cfg", None, OTHER).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&e.app, "/001565aabb02.cfg", None, PHONE).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn refusals_count_against_the_rate_limit() {
    let e = env_with(Some(("7000", "7099")), 3, FileAuth::UrlKey).await;
    bound_phone(&e, "001565aabb02.cfg", "001565AABB02").await; // 1 token
    assert_eq!(
        get(&e.app, "/001565aabb02.cfg", None, PHONE).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(&e.app, "/001565aabb02.cfg", None, PHONE).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(&e.app, "/001565aabb02.cfg", None, PHONE).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn digest_auth_serves_the_bare_path_when_allowed() {
    let e = env_with(Some(("7000", "7099")), 100, FileAuth::UrlKeyOrDigest).await;
    let (id, _) = bound_phone(&e, "001565aabb02.cfg", "001565AABB02").await;
    let d = e.store.get_device(id).await.unwrap().unwrap();
    let line = e
        .store
        .get_line(d.lines[0].line_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    let sip = e
        .store
        .get_sip_endpoint(line.sip_endpoint_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    let path = "/001565aabb02.cfg";
    let r = get(&e.app, path, None, OTHER).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let challenges: Vec<&str> = r
        .headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    let md5 = challenges
        .iter()
        .find(|c| c.contains("MD5"))
        .expect("an MD5 challenge");
    let param = |name: &str| -> String {
        let start = md5.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        let end = md5[start..].find('"').unwrap();
        md5[start..start + end].to_string()
    };
    let (nonce, realm) = (param("nonce"), param("realm"));
    assert_eq!(realm, "selfprov");
    let authz = |password: &str| {
        let h = ha1(Algorithm::Md5, &sip.auth_username, &realm, password);
        let resp = response_hex(
            Algorithm::Md5,
            &h,
            &nonce,
            Some(("auth", "00000001", "abcdef")),
            "GET",
            path,
        );
        format!(
            "Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{path}\", \
             response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"abcdef\"",
            sip.auth_username
        )
    };
    let bad = request(&e.app, "GET", path, None, OTHER, Some(&authz("wrong"))).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let ok = request(
        &e.app,
        "GET",
        path,
        None,
        OTHER,
        Some(&authz(&sip.password)),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert!(ok.body.contains("account.1.user_name = 2001"));
    // The same nonce count again is a replay (asked from a third address: the digest fetch
    // made OTHER the trusted address).
    let replay = request(
        &e.app,
        "GET",
        path,
        None,
        "198.51.100.77",
        Some(&authz(&sip.password)),
    )
    .await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    // In url-key mode there is no challenge: a plain 403.
    let e2 = env().await;
    bound_phone(&e2, "001565aabb02.cfg", "001565AABB02").await;
    let r = get(&e2.app, path, None, OTHER).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.headers.get("www-authenticate").is_none());
}

#[tokio::test]
async fn vendor_default_files_are_public_and_junk_is_404() {
    let e = env().await;
    for file in [
        "XmlDefault.cnf.xml",
        "000000000000.cfg",
        "y000000000028.cfg",
    ] {
        let r = get(&e.app, &format!("/{file}"), None, OTHER).await;
        assert_eq!(r.status, StatusCode::OK, "{file}");
        assert!(!r.body.contains("password"), "{file}: {}", r.body);
    }
    // Under a device's key too (a phone pointed at its keyed URL asks for them there).
    let r = get(&e.app, "/001565aabb02.cfg", None, PHONE).await;
    assert_eq!(r.status, StatusCode::OK);
    let d = e
        .store
        .find_device_by_mac("001565AABB02")
        .await
        .unwrap()
        .unwrap();
    let key = e.store.device_config_key(d.id).await.unwrap();
    assert_eq!(
        get(&e.app, &format!("/{key}/y000000000028.cfg"), None, PHONE)
            .await
            .status,
        StatusCode::OK
    );
    for junk in [
        "/",
        "/index.html",
        "/../etc/passwd",
        "/%2e%2e/etc/passwd",
        "/a/b/c.cfg",
        "/abc/001565aabb02.cfg",
        "/SEPZZZZZZZZZZZZ.cnf.xml",
        "/001565aabb02.cfg.bak",
        &format!("/{}.cfg", "a".repeat(300)),
    ] {
        let r = get(&e.app, junk, None, OTHER).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{junk}");
    }
    let r = request(&e.app, "POST", "/001565aabb02.cfg", None, PHONE, None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(e.store.list_devices().await.unwrap().len(), 1);
}

/// Sends one HTTP/1.1 request on a fresh connection and reads the whole response.
async fn raw_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: prov.example\r\nUser-Agent: Yealink SIP-T46S 66.86.0.15\r\n\
         Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("response within 10 s")
        .unwrap();
    let text = String::from_utf8(buf).unwrap();
    let status = text
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    (status, text)
}

#[tokio::test]
async fn real_socket_guest_then_source_ip_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap();
    let mut s = store.get_settings().await.unwrap();
    s.autoreg_start_dn = Some("0700".into());
    s.autoreg_end_dn = Some("0799".into());
    store.update_settings(s).await.unwrap();
    let state = ProvState::new(
        store.clone(),
        Arc::new(Renderer::new().unwrap()),
        ProvSettings {
            server: SipServer {
                host: "127.0.0.1".into(),
                port: 5060,
                transport: Transport::Udp,
                pbx: None,
            },
            public_url: PUBLIC.into(),
            file_auth: FileAuth::UrlKey,
            unknown_mac_per_minute: 30,
            realm: "selfprov".into(),
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve(listener, state));

    let (status, text) = raw_get(addr, "/001565aabb02.cfg").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("account.1.user_name = 0700"), "{text}");
    let (status, _) = raw_get(addr, "/nothing-here").await;
    assert_eq!(status, 404);

    // Bound, and its line registered from 127.0.0.1: the bare path is served to that address
    // (the peer address comes from the real connection).
    let d = common::store::bind_to_jdoe(&store, "001565AABB02").await;
    let (status, _) = raw_get(addr, "/001565aabb02.cfg").await;
    assert_eq!(status, 403);
    let line = store
        .get_line(d.lines[0].line_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    store
        .record_registration(line.sip_endpoint_id.unwrap(), "127.0.0.1".parse().unwrap())
        .await
        .unwrap();
    let (status, text) = raw_get(addr, "/001565aabb02.cfg").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("account.1.user_name = 2001"), "{text}");
    assert_eq!(
        store.get_device(d.id).await.unwrap().unwrap().state,
        DeviceState::Provisioned
    );
    server.abort();
}
