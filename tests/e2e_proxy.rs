//! End to end: selfprov behind a site proxy, with a real Kamailio 5.6 running
//! `deploy/kamailio/ivr-proxy.cfg` and SIPp as the phone (everything on 127.0.0.1).
//!
//! - A new phone fetches its guest config, registers its guest account through Kamailio (which
//!   forwards the REGISTER to selfprov with a Path), calls the IVR through Kamailio (record-
//!   routed; the INVITE names no device, Kamailio asserts the caller with P-Asserted-Identity)
//!   and types its keys as SIP INFO: the ACK, the INFOs and selfprov's BYE pass through
//!   Kamailio, the phone's own autoprov device is the one bound (no new device), and the resync
//!   NOTIFY comes back to the phone through Kamailio.
//! - The same call sent straight to selfprov with the phone's own P-Asserted-Identity, from an
//!   address selfprov does not trust: the header is ignored, the autoprov device stays unbound
//!   and a device of its own is made from the INVITE.
//! - A phone that requires 100rel (RFC 3262) provisions: reliable 180, PRACK, then the 200;
//!   directly and through Kamailio (the PRACK follows the 180's Record-Route).

mod common;

use common::http::{self, cfg_value};
use common::kamailio::Kamailio;
use common::server::{Server, JDOE};
use common::sipp::Sipp;
use common::{ports, tail};

const YEALINK_MAC: &str = "805ec0a1b2c3";
const YEALINK_UA: &str = "Yealink SIP-T46S 66.86.0.15 80:5e:c0:a1:b2:c3";

struct Guest {
    number: String,
    auth_name: String,
    password: String,
}

/// The phone's first config fetch: an autoprov device with a guest account.
fn fetch_guest(server: &Server) -> Guest {
    let prov = server.provisioning.expect("provisioning address");
    let r = http::get(prov, &format!("/{YEALINK_MAC}.cfg"), YEALINK_UA);
    assert_eq!(r.status, 200, "guest config: {}\n{}", r.body, server.log());
    let get = |k: &str| cfg_value(&r.body, k).unwrap_or_else(|| panic!("no {k}:\n{}", r.body));
    Guest {
        number: get("account.1.user_name"),
        auth_name: get("account.1.auth_name"),
        password: get("account.1.password"),
    }
}

fn autoreg_server(extra: Vec<(&'static str, String)>) -> Server {
    // SIPp answers only MD5 challenges: MD5 first.
    Server::start_with_autoreg(r#"["MD5", "SHA-256"]"#, extra)
}

/// How many lines of `log` contain `needle`.
fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn a_guest_provisions_through_kamailio_and_the_resync_comes_back_through_it() {
    // Everything runs on 127.0.0.1, so the phone's address is trusted too; what this test
    // shows is the proxy's path. The untrusted case is the next test.
    let server = autoreg_server(vec![("sip", r#"trusted_proxies = ["127.0.0.1"]"#.into())]);
    server.add_user(&JDOE);
    let guest = fetch_guest(&server);
    assert_eq!(server.devices().len(), 1, "the autoprov device");
    let kamailio = Kamailio::start(server.sip, "8000", server.dir.path());
    let port = ports::free_port();

    // REGISTER through the proxy: 401 from selfprov, then 200, both relayed.
    Sipp::new("phone_register.xml")
        .port(port)
        .key("user", &guest.number)
        .key("expires", 300)
        .args(&["-au", &guest.auth_name, "-ap", &guest.password])
        .run(kamailio.addr, server.dir.path())
        .assert_success("guest REGISTER through Kamailio");
    let klog = kamailio.log();
    assert!(
        count(&klog, &format!("guest REGISTER {} from", guest.number)) >= 1,
        "Kamailio forwarded the REGISTER with a Path:\n{}",
        tail(&klog, 40)
    );

    // The call through the proxy, keys as SIP INFO.
    let call = Sipp::new("proxy_phone_call.xml")
        .port(port)
        .key("user", &guest.number)
        .run(kamailio.addr, server.dir.path());
    call.assert_success("provisioning call through Kamailio");
    let ok = call.invite_answer();
    let rr = common::sipp::header(&ok, "Record-Route").unwrap_or_default();
    assert!(
        rr.contains(&kamailio.addr.to_string()) && rr.contains(";lr"),
        "the 200 carries Kamailio's Record-Route:\n{ok}"
    );
    let byes = call.received("BYE ");
    assert_eq!(byes.len(), 1, "{}", call.describe());
    assert!(
        common::sipp::header(&byes[0], "Via")
            .is_some_and(|v| v.contains(&kamailio.addr.to_string())),
        "selfprov's BYE came through Kamailio:\n{}",
        byes[0]
    );

    // The resync NOTIFY, back through Kamailio to the port the phone registered from.
    let notify = Sipp::new("phone_notify.xml")
        .port(port)
        .timeout_s(20)
        .start(None, server.dir.path())
        .finish();
    notify.assert_success("resync NOTIFY through Kamailio");
    let n = notify.received("NOTIFY ");
    assert!(!n.is_empty(), "{}", notify.describe());
    assert!(
        common::sipp::header(&n[0], "Via").is_some_and(|v| v.contains(&kamailio.addr.to_string())),
        "the NOTIFY came through Kamailio (its Via on top):\n{}",
        n[0]
    );

    let klog = kamailio.log();
    assert_eq!(
        count(&klog, &format!("INVITE from {} asserted", guest.number)),
        1,
        "Kamailio asserted the caller:\n{}",
        tail(&klog, 60)
    );
    assert!(
        count(&klog, "in-dialog ACK from") >= 1,
        "the ACK went through Kamailio:\n{}",
        tail(&klog, 60)
    );
    assert_eq!(
        count(&klog, "in-dialog INFO from"),
        11,
        "every INFO went through Kamailio:\n{}",
        tail(&klog, 60)
    );
    assert!(
        count(&klog, "in-dialog BYE from") >= 1,
        "selfprov's BYE went through Kamailio:\n{}",
        tail(&klog, 60)
    );
    assert!(
        count(&klog, "NOTIFY to sip:") >= 1 && count(&klog, "routed by Path") >= 1,
        "the NOTIFY was routed by the Path:\n{}",
        tail(&klog, 60)
    );

    // The phone's own autoprov device is the one bound: no device made from the INVITE.
    let device = server.assert_bound("jdoe", "1001");
    assert_eq!(
        device.raw["mac"],
        YEALINK_MAC.to_ascii_uppercase(),
        "{:#}",
        device.raw
    );
}

#[test]
fn an_asserted_identity_from_an_untrusted_address_is_ignored() {
    // No trusted proxies: the phone's own P-Asserted-Identity names its guest account.
    let server = autoreg_server(vec![]);
    server.add_user(&JDOE);
    let guest = fetch_guest(&server);
    // Registered from one port, calling from another (a source that is not a binding, so the
    // INVITE is not challenged: only the header could name the account).
    Sipp::new("phone_register.xml")
        .port(ports::free_port())
        .key("user", &guest.number)
        .key("expires", 300)
        .args(&["-au", &guest.auth_name, "-ap", &guest.password])
        .run(server.sip, server.dir.path())
        .assert_success("guest REGISTER");
    Sipp::new("proxy_phone_call.xml")
        .port(ports::free_port())
        .key("user", &guest.number)
        .run(server.sip, server.dir.path())
        .assert_success("provisioning call with a forged P-Asserted-Identity");
    let devices = server.devices();
    assert_eq!(devices.len(), 2, "a device of its own: {devices:#?}");
    let autoprov = devices
        .iter()
        .find(|d| d.raw["mac"] == YEALINK_MAC.to_ascii_uppercase())
        .expect("the autoprov device");
    assert_eq!(
        autoprov.owner, None,
        "the header did not make this call the guest's: {:#}",
        autoprov.raw
    );
    let bound = devices
        .iter()
        .find(|d| d.owner.as_deref() == Some("jdoe"))
        .expect("the caller's own device is bound");
    assert_ne!(bound.raw["mac"], YEALINK_MAC.to_ascii_uppercase());
}

#[test]
fn a_phone_requiring_100rel_provisions() {
    let server = Server::start();
    server.add_user(&JDOE);
    let outcome = Sipp::new("uac_100rel_info.xml").run(server.sip, server.dir.path());
    outcome.assert_success("provisioning call requiring 100rel");
    assert!(
        outcome.logs.contains("reliable 180, RSeq"),
        "{}",
        outcome.describe()
    );
    let prack_ok = outcome.responses("SIP/2.0 200", "PRACK");
    assert_eq!(prack_ok.len(), 1, "{}", outcome.describe());
    assert_eq!(outcome.responses("SIP/2.0 200", "INFO").len(), 11);
    server.assert_bound("jdoe", "1001");
}

#[test]
fn a_phone_requiring_100rel_provisions_through_kamailio() {
    let server = Server::start();
    server.add_user(&JDOE);
    let kamailio = Kamailio::start(server.sip, "8000", server.dir.path());
    let outcome = Sipp::new("uac_100rel_info.xml").run(kamailio.addr, server.dir.path());
    outcome.assert_success("provisioning call requiring 100rel, through Kamailio");
    let r180 = outcome.received("SIP/2.0 180");
    assert!(
        r180.first()
            .and_then(|m| common::sipp::header(m, "Record-Route"))
            .is_some_and(|rr| rr.contains(&kamailio.addr.to_string())),
        "the reliable 180 carries Kamailio's Record-Route: {r180:?}"
    );
    let klog = kamailio.log();
    assert_eq!(
        count(&klog, "in-dialog PRACK from"),
        1,
        "the PRACK went through Kamailio:\n{}",
        tail(&klog, 60)
    );
    server.assert_bound("jdoe", "1001");
}
