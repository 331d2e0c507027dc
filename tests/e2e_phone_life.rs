//! End to end: the whole life of a phone (issue 4), with SIPp as the phone and real HTTP.
//!
//! 1. An unknown phone (Yealink MAC and User-Agent) fetches `<mac>.cfg` from the provisioning
//!    server: autoregistration gives it a guest account of its own (number from the range).
//! 2. It registers with the credentials from that file (SIPp answers the digest challenge).
//! 3. It dials the IVR from the same port: the INVITE is challenged (407) and retried with
//!    Proxy-Authorization; it types jdoe's ID and PIN as RFC 4733 events; the server hangs up.
//! 4. It receives the resync NOTIFY (`check-sync;reboot=true` for Yealink) on that port.
//! 5. It fetches its new config with the key from the guest config: the file holds jdoe's line
//!    1001 and its credentials, and the device moves to `provisioned`.
//!
//! Plus the refusals: a wrong password gets 401 again and never registers; the guest limit
//! gives 503; a guest dialing anything but the IVR gets 403; a stale nonce gets stale=true; a
//! provisioned phone's file is refused without its key.

mod common;

use common::http::{self, api, cfg_value};
use common::pcap::{write_rfc4733, Rfc4733Options};
use common::phone::{
    auth_uri, call_ivr_and_take_notify, fetch_guest, register, Guest, YEALINK_MAC, YEALINK_UA,
};
use common::server::{Server, JDOE};
use common::sipp::Sipp;
use common::{ports, provisioning_keys_after, wait_for, LEAD_MS};
use std::net::SocketAddr;
use std::time::Duration;

/// The Prometheus text of `GET /metrics` (no token needed).
fn metrics_text(addr: SocketAddr) -> String {
    http::request(addr, "GET", "/metrics", &[]).body
}

/// SIPp 3.6 knows only MD5 and answers the first challenge it reads: MD5 goes first (the
/// SHA-256 challenge is still offered, second). The registrar's own tests cover SHA-256.
fn server_with_autoreg(extra: Vec<(&'static str, String)>) -> Server {
    Server::start_with_autoreg(r#"["MD5", "SHA-256"]"#, extra)
}

#[test]
fn a_new_phone_fetches_a_guest_config_registers_provisions_and_resyncs() {
    let mut server = server_with_autoreg(vec![]);
    server.add_user(&JDOE);
    let prov = server.provisioning.expect("provisioning address");

    // 1. The guest config: an account of its own, numbered from the range.
    let guest = fetch_guest(&server, YEALINK_MAC, YEALINK_UA);
    assert_eq!(guest.number, "2000", "the first number of the range");
    let again = fetch_guest(&server, YEALINK_MAC, YEALINK_UA);
    assert_eq!(
        (again.number.as_str(), again.auth_name.as_str()),
        (guest.number.as_str(), guest.auth_name.as_str()),
        "a second fetch gives the same account"
    );

    // 2. + 3. Register, then call the IVR from the same port.
    let port = ports::free_port();
    register(&server, &guest, port);
    // The registrar's gauges on the admin listener's /metrics.
    let metrics = metrics_text(server.api.expect("API address"));
    assert!(
        metrics
            .lines()
            .any(|l| l == "selfprov_registrations_active 1")
            && metrics.lines().any(|l| l == "selfprov_guests_registered 1"),
        "one guest registered:\n{metrics}"
    );
    let notify = call_ivr_and_take_notify(&server, &guest, port);
    assert!(
        notify.contains("resync: check-sync;reboot=true"),
        "Yealink's resync event: {notify}"
    );

    let device = server.assert_bound("jdoe", "1001");
    assert_eq!(
        device.raw["mac"],
        YEALINK_MAC.to_ascii_uppercase(),
        "{:#}",
        device.raw
    );

    // A stranger asking for the bare file name gets nothing now: the file holds jdoe's
    // password. (The test runs on one host, so the registered-IP rule would let 127.0.0.1 in:
    // the key is what is checked here, from the URL the guest config gave.)
    let keyed_base = guest.config_url.trim_end_matches('/').to_string();
    assert!(
        keyed_base.starts_with("http://"),
        "the guest config gives the phone its keyed URL: {keyed_base}"
    );
    let keyed_path = format!(
        "{}/{YEALINK_MAC}.cfg",
        keyed_base
            .splitn(4, '/')
            .nth(3)
            .map(|p| format!("/{p}"))
            .unwrap_or_default()
    );

    // 5. The new config, fetched with the key.
    let r = http::get(prov, &keyed_path, YEALINK_UA);
    assert_eq!(
        r.status,
        200,
        "keyed fetch {keyed_path}: {}\n{}",
        r.body,
        server.log()
    );
    assert_eq!(
        cfg_value(&r.body, "account.1.user_name").as_deref(),
        Some("1001"),
        "{}",
        r.body
    );
    let auth = cfg_value(&r.body, "account.1.auth_name").expect("auth name");
    let password = cfg_value(&r.body, "account.1.password").expect("password");
    assert_ne!(
        auth, guest.auth_name,
        "the user's own account, not the guest one"
    );
    assert!(password.len() >= 12, "a generated password: {password:?}");

    let state = wait_for(Duration::from_secs(5), || {
        let d = server.devices().into_iter().next()?;
        (d.raw["state"] == "provisioned").then_some(d)
    });
    assert!(
        state.is_some(),
        "the fetch moves the device to provisioned: {:#?}\n{}",
        server.devices(),
        common::tail(&server.log(), 80)
    );
    let d = server.devices().into_iter().next().unwrap();
    let outcome = d.raw["resync_outcome"].as_str().unwrap_or("");
    assert!(
        outcome.contains("check-sync;reboot=true 200 from 127.0.0.1:"),
        "the NOTIFY's answer is recorded on the device: {:#}",
        d.raw
    );

    // The provisioned phone registers with its new line account.
    let line = Guest {
        number: "1001".into(),
        auth_name: auth,
        password,
        config_url: String::new(),
    };
    register(&server, &line, ports::free_port());

    // The admin API: a resync on demand, then the phone back to autoprov (Wazo's
    // GET /devices/{id}/autoprov): no lines, a guest config again for the bare path.
    let out = server.cli(&["token", "create", "--name", "e2e"]);
    assert!(out.success(), "token create: {}", out.stderr);
    let token = out.stdout.trim().to_string();
    let api_addr = server.api.expect("API address");
    let id = d.raw["id"].as_i64().expect("device id");
    let (status, body) = api(
        api_addr,
        "POST",
        &format!("/api/v1/devices/{id}/resync"),
        &token,
    );
    assert_eq!(status, 202, "{body:#}");
    assert_eq!(body["resync_queued"], true, "{body:#}");
    let told = wait_for(Duration::from_secs(5), || {
        let d = server.devices().into_iter().next()?;
        let o = d.raw["resync_outcome"].as_str()?.to_string();
        (o != outcome).then_some(o)
    });
    assert!(
        told.is_some(),
        "the admin's resync reached the line's registration: {:#?}",
        server.devices()
    );
    let (status, body) = api(
        api_addr,
        "GET",
        &format!("/api/v1/devices/{id}/autoprov"),
        &token,
    );
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["device"]["state"], "autoprov", "{body:#}");
    assert_eq!(
        body["device"]["lines"].as_array().map(Vec::len),
        Some(0),
        "{body:#}"
    );
    let again = fetch_guest(&server, YEALINK_MAC, YEALINK_UA);
    assert_ne!(again.config_url, guest.config_url, "a new config URL key");
    let (status, _) = api(api_addr, "GET", "/api/v1/devices/999/autoprov", &token);
    assert_eq!(status, 404);
    server.assert_alive();
}

#[test]
fn wrong_password_never_registers_and_a_stale_nonce_is_reported() {
    let mut server = server_with_autoreg(vec![("registrar", "nonce_lifetime_secs = 1".into())]);
    let guest = fetch_guest(&server, YEALINK_MAC, YEALINK_UA);
    let out = Sipp::new("phone_register_refused.xml")
        .key("user", &guest.number)
        .key("expires", 300)
        .args(&["-au", &guest.auth_name, "-ap", "not-the-password"])
        .run(server.sip, server.dir.path());
    out.assert_success("wrong password refused");
    assert!(
        out.logs.contains("refused: SIP/2.0 401"),
        "401 again: {}",
        out.logs
    );
    let d = server
        .devices()
        .into_iter()
        .next()
        .expect("the autoprov device");
    assert!(d.raw["last_ip"].is_null(), "never registered: {:#}", d.raw);
    Sipp::new("phone_register_stale.xml")
        .key("user", &guest.number)
        .key("expires", 300)
        .set("wait_ms", 2500)
        .args(&["-au", &guest.auth_name, "-ap", &guest.password])
        .run(server.sip, server.dir.path())
        .assert_success("expired nonce: 401 stale=true, then 200");
    server.assert_alive();
}

#[test]
fn guest_limit_and_guests_calling_elsewhere_are_refused() {
    let mut server = server_with_autoreg(vec![("registrar", "max_guests = 1".into())]);
    let first = fetch_guest(&server, YEALINK_MAC, YEALINK_UA);
    let second = fetch_guest(
        &server,
        "805ec0a1b2c4",
        "Yealink SIP-T46S 66.86.0.15 80:5e:c0:a1:b2:c4",
    );
    assert_ne!(
        second.auth_name, first.auth_name,
        "never one account shared by all phones"
    );
    assert_eq!(
        (first.number.as_str(), second.number.as_str()),
        ("2000", "2001")
    );
    let port = ports::free_port();
    register(&server, &first, port);
    let out = Sipp::new("phone_register_refused.xml")
        .key("user", &second.number)
        .key("expires", 300)
        .args(&["-au", &second.auth_name, "-ap", &second.password])
        .run(server.sip, server.dir.path());
    out.assert_success("max_guests reached");
    let refused = out.logs.to_ascii_lowercase();
    assert!(
        refused.contains("refused: sip/2.0 503") && refused.contains("guest"),
        "503 with a reason that names the guest limit: {}",
        out.logs
    );
    Sipp::new("phone_call_refused.xml")
        .port(port)
        .service("1001")
        .key("user", &first.number)
        .args(&["-au", &first.auth_name, "-ap", &first.password])
        .args(&["-auth_uri", &auth_uri(&server, "1001")])
        .run(server.sip, server.dir.path())
        .assert_success("a guest dialing a non-IVR number: 403");
    server.assert_alive();
}

#[test]
fn autoregistration_off_serves_no_config_and_creates_no_device() {
    let server = Server::start();
    let prov = server.provisioning.expect("provisioning address");
    let r = http::get(prov, &format!("/{YEALINK_MAC}.cfg"), YEALINK_UA);
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(server.devices().is_empty(), "{:#?}", server.devices());
    assert!(
        server.log().contains("autoreg"),
        "the log says how to turn autoregistration on:\n{}",
        common::tail(&server.log(), 40)
    );
}

#[test]
fn resync_is_not_waited_for_forever() {
    // A phone that is bound but never fetches its config is flagged `error`.
    let mut server = server_with_autoreg(vec![("provisioning", "resync_timeout_secs = 1".into())]);
    server.add_user(&JDOE);
    let guest = fetch_guest(&server, YEALINK_MAC, YEALINK_UA);
    let port = ports::free_port();
    register(&server, &guest, port);
    let pcap = server.dir.path().join("keys.pcap");
    write_rfc4733(
        &pcap,
        &provisioning_keys_after(0),
        &Rfc4733Options::default(),
    );
    Sipp::new("phone_call.xml")
        .port(port)
        .key("user", &guest.number)
        .key("pcap", pcap.display())
        .set("lead_ms", LEAD_MS)
        .args(&["-au", &guest.auth_name, "-ap", &guest.password])
        .args(&["-auth_uri", &auth_uri(&server, "8000")])
        .run(server.sip, server.dir.path())
        .assert_success("provisioning call");
    let flagged = wait_for(Duration::from_secs(10), || {
        let d = server.devices().into_iter().next()?;
        (d.raw["state"] == "error").then_some(d)
    });
    assert!(
        flagged.is_some(),
        "no config fetch within resync_timeout_secs: state error; {:#?}\n{}",
        server.devices(),
        common::tail(&server.log(), 60)
    );
    server.assert_alive();
}
