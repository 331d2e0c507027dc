//! End to end: the whole life of a phone (issue 4) for Cisco, Polycom, Grandstream and Snom
//! (Yealink's is `e2e_phone_life.rs`), with SIPp as the phone and real HTTP.
//!
//! For each vendor, against the real server with an autoregistration range:
//! 1. the phone fetches its per-device file(s) for its MAC with the vendor's own User-Agent
//!    (Polycom: the master `<mac>.cfg`, then the files its `CONFIG_FILES` lists);
//! 2. the guest account is read out of the vendor's format the way that phone reads it (XML
//!    elements or attributes, Grandstream P-values) and must point at selfprov: server, port,
//!    user, auth user, password, display name, label, and where the vendor has one, the config
//!    server URL (keyed) and the speed dial to the IVR;
//! 3. it registers with those credentials and dials the IVR from the same port (407 answered),
//!    typing jdoe's ID and PIN as RFC 4733 events;
//! 4. it receives the resync NOTIFY with the vendor's Event (Cisco: `service-control` with a
//!    `text/plain` body `action=restart`, read from SIPp's message trace);
//! 5. it fetches its new config where the guest config told it to (the keyed URL; Cisco has no
//!    such setting, so its bare path is served because the fetch comes from the address its
//!    account registered from): the file holds jdoe's line 1001 with its own credentials, the
//!    device is `provisioned`, and those credentials register.

mod common;

use common::pcap::{write_rfc4733, Rfc4733Options};
use common::server::{Server, JDOE};
use common::sipp::{header, Sipp, SippOutcome};
use common::{ports, provisioning_keys_after, wait_for, LEAD_MS};

use std::time::Duration;

/// The IVR extension of the test config (the guest's speed dial and the number it dials).
const IVR: &str = "8000";

/// GET that must succeed; the body.
fn fetch_ok(server: &Server, path: &str, ua: &str) -> String {
    let prov = server
        .provisioning
        .expect("the server printed its provisioning address");
    let r = common::http::get(prov, path, ua);
    assert_eq!(
        r.status,
        200,
        "GET {path} (User-Agent {ua:?}): {}\n{}",
        r.body,
        common::tail(&server.log(), 60)
    );
    r.body
}

/// A SIP account as the phone read it from its config file.
#[derive(Debug, Clone, Default)]
struct Account {
    number: String,
    auth_name: String,
    password: String,
    display_name: String,
    label: String,
    host: String,
    port: String,
}

/// What a phone takes from its per-device file(s).
#[derive(Debug, Clone, Default)]
struct PhoneView {
    /// Line 1.
    account: Account,
    /// The URL the phone fetches its file from next time, with the file name filled in as the
    /// phone would (None: the vendor has no such setting).
    next_url: Option<String>,
    /// Speed dial numbers written into the file(s).
    speed_dials: Vec<String>,
}

/// One vendor's phone: its MAC, how it asks for its file, what it expects from the NOTIFY.
struct Phone {
    vendor: &'static str,
    /// 12 hex digits, lower case.
    mac: &'static str,
    user_agent: &'static str,
    /// The Event header of its resync NOTIFY.
    resync_event: &'static str,
    /// Fetches and reads the per-device file(s) under `prefix` (`""` or `/<config_key>`).
    read: fn(&Server, &Phone, &str) -> PhoneView,
}

fn xml(body: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(body).unwrap_or_else(|e| panic!("not XML ({e}):\n{body}"))
}

/// Text of the first element `tag` below `node` (an empty element reads as "").
fn child_text(node: roxmltree::Node<'_, '_>, tag: &str) -> Option<String> {
    node.descendants()
        .find(|n| n.has_tag_name(tag))
        .map(|n| n.text().unwrap_or("").trim().to_string())
}

fn required(v: Option<String>, what: &str, body: &str) -> String {
    v.unwrap_or_else(|| panic!("the file lacks {what}:\n{body}"))
}

/// `host:port` into its parts (`P47` of Grandstream, `user_host` of Snom).
fn host_port(v: &str, body: &str) -> (String, String) {
    let (h, p) = v
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{v:?} is not host:port:\n{body}"));
    (h.to_string(), p.to_string())
}

/// Cisco `SEP<MAC>.cnf.xml`: `<sipLines><line button="1">` with featureID 9 is the account;
/// featureID 2 lines are speed dials; the registrar is in `<callManagerGroup>` too.
fn read_cisco(server: &Server, phone: &Phone, prefix: &str) -> PhoneView {
    let file = format!("{prefix}/SEP{}.cnf.xml", phone.mac.to_ascii_uppercase());
    let body = fetch_ok(server, &file, phone.user_agent);
    let doc = xml(&body);
    let root = doc.root_element();
    assert!(root.has_tag_name("device"), "{body}");
    let lines: Vec<_> = root
        .descendants()
        .filter(|n| n.has_tag_name("sipLines"))
        .flat_map(|n| n.children().filter(|c| c.has_tag_name("line")))
        .collect();
    let line1 = lines
        .iter()
        .find(|l| {
            l.attribute("button") == Some("1")
                && child_text(**l, "featureID").as_deref() == Some("9")
        })
        .unwrap_or_else(|| panic!("no SIP line on button 1:\n{body}"));
    let get = |tag: &str| required(child_text(*line1, tag), tag, &body);
    let account = Account {
        number: get("name"),
        auth_name: get("authName"),
        password: get("authPassword"),
        display_name: get("displayName"),
        label: get("featureLabel"),
        host: get("proxy"),
        port: get("port"),
    };
    assert_eq!(get("contact"), account.number, "{body}");
    let cm = root
        .descendants()
        .find(|n| n.has_tag_name("callManager"))
        .unwrap_or_else(|| panic!("no callManager:\n{body}"));
    assert_eq!(
        (child_text(cm, "processNodeName"), child_text(cm, "sipPort")),
        (Some(account.host.clone()), Some(account.port.clone())),
        "the call manager is the line's registrar:\n{body}"
    );
    let speed_dials = lines
        .iter()
        .filter(|l| child_text(**l, "featureID").as_deref() == Some("2"))
        .filter_map(|l| child_text(*l, "speedDialNumber"))
        .collect();
    PhoneView {
        account,
        // Cisco has no config-server setting: DHCP option 150 names its TFTP server.
        next_url: None,
        speed_dials,
    }
}

/// Polycom: the master `<mac>.cfg` (`<APPLICATION CONFIG_FILES="a, b">`), then every file it
/// lists from the same place; `reg.1.*` attributes of `<reg>` are the account,
/// `device.prov.serverName` the next provisioning server. The directory file
/// (`<mac>-directory.xml`, fetched by the phone without being listed) holds the speed dials.
fn read_polycom(server: &Server, phone: &Phone, prefix: &str) -> PhoneView {
    let master = fetch_ok(
        server,
        &format!("{prefix}/{}.cfg", phone.mac),
        phone.user_agent,
    );
    let doc = xml(&master);
    let app = doc.root_element();
    assert!(app.has_tag_name("APPLICATION"), "{master}");
    let files: Vec<String> = app
        .attribute("CONFIG_FILES")
        .unwrap_or_else(|| panic!("no CONFIG_FILES:\n{master}"))
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|f| f.replace("[PHONE_MAC_ADDRESS]", phone.mac))
        .collect();
    assert!(!files.is_empty(), "CONFIG_FILES lists nothing:\n{master}");
    let mut view = None;
    for f in &files {
        let body = fetch_ok(server, &format!("{prefix}/{f}"), phone.user_agent);
        let doc = xml(&body);
        let Some(reg) = doc.descendants().find(|n| n.has_tag_name("reg")) else {
            continue;
        };
        let get = |a: &str| required(reg.attribute(a).map(str::to_string), a, &body);
        let account = Account {
            number: get("reg.1.address"),
            auth_name: get("reg.1.auth.userId"),
            password: get("reg.1.auth.password"),
            display_name: get("reg.1.displayName"),
            label: get("reg.1.label"),
            host: get("reg.1.server.1.address"),
            port: get("reg.1.server.1.port"),
        };
        assert_eq!(get("reg.1.server.1.transport"), "UDPOnly", "{body}");
        let dev = doc
            .descendants()
            .find(|n| n.attribute("device.prov.serverName").is_some());
        let next_url = dev.map(|d| {
            assert_eq!(
                d.attribute("device.prov.serverType"),
                Some("2"),
                "HTTP provisioning server:\n{body}"
            );
            format!(
                "{}{}.cfg",
                d.attribute("device.prov.serverName").unwrap_or(""),
                phone.mac
            )
        });
        view = Some(PhoneView {
            account,
            next_url,
            speed_dials: Vec::new(),
        });
        break;
    }
    let mut view = view.unwrap_or_else(|| panic!("no <reg> in {files:?}"));
    let dir = fetch_ok(
        server,
        &format!("{prefix}/{}-directory.xml", phone.mac),
        phone.user_agent,
    );
    let doc = xml(&dir);
    view.speed_dials = doc
        .descendants()
        .filter(|n| n.has_tag_name("item"))
        .filter(|i| child_text(*i, "sd").is_some_and(|s| !s.is_empty()))
        .filter_map(|i| child_text(i, "ct"))
        .collect();
    view
}

/// Grandstream `cfg<mac>.xml`: `<config>` P-values of account 1 (P47 server `host:port`, P35
/// user, P36 auth ID, P34 password, P3 display name, P270 account name, P271 active); P212 and
/// P237 the upgrade server (`1` HTTP, path without the scheme).
fn read_grandstream(server: &Server, phone: &Phone, prefix: &str) -> PhoneView {
    let file = format!("{prefix}/cfg{}.xml", phone.mac);
    let body = fetch_ok(server, &file, phone.user_agent);
    let doc = xml(&body);
    let root = doc.root_element();
    assert!(root.has_tag_name("gs_provision"), "{body}");
    assert_eq!(
        child_text(root, "mac").as_deref(),
        Some(phone.mac),
        "{body}"
    );
    let config = root
        .children()
        .find(|n| n.has_tag_name("config"))
        .unwrap_or_else(|| panic!("no <config>:\n{body}"));
    let p = |n: u32| child_text(config, &format!("P{n}"));
    let get = |n: u32| required(p(n), &format!("P{n}"), &body);
    assert_eq!(get(271), "1", "account 1 active:\n{body}");
    assert_eq!(get(130), "0", "UDP:\n{body}");
    assert_eq!(
        get(26015),
        "1",
        "Allow SIP reset (check-sync honoured):\n{body}"
    );
    let (host, port) = host_port(&get(47), &body);
    let account = Account {
        number: get(35),
        auth_name: get(36),
        password: get(34),
        display_name: get(3),
        label: get(270),
        host,
        port,
    };
    let next_url = p(237).map(|rest| {
        let scheme = match get(212).as_str() {
            "1" => "http",
            "2" => "https",
            other => panic!("P212 {other:?} is not HTTP(S):\n{body}"),
        };
        format!("{scheme}://{rest}cfg{}.xml", phone.mac)
    });
    PhoneView {
        account,
        next_url,
        // Grandstream programmable keys are model-specific: none written (docs/phones).
        speed_dials: Vec::new(),
    }
}

/// Snom `snom<model>-<MAC>.htm`: `<phone-settings>` elements with `idx="1"`; `setting_server`
/// with `{mac}` (the phone puts its MAC there, upper case); speed dials are
/// `<fkey>speed <number></fkey>`.
fn read_snom(server: &Server, phone: &Phone, prefix: &str) -> PhoneView {
    let mac = phone.mac.to_ascii_uppercase();
    let file = format!("{prefix}/snomD785-{mac}.htm");
    let body = fetch_ok(server, &file, phone.user_agent);
    let doc = xml(&body);
    let settings = doc
        .descendants()
        .find(|n| n.has_tag_name("phone-settings"))
        .unwrap_or_else(|| panic!("no <phone-settings>:\n{body}"));
    let idx1 = |tag: &str| {
        settings
            .children()
            .find(|n| n.has_tag_name(tag) && n.attribute("idx") == Some("1"))
            .map(|n| n.text().unwrap_or("").trim().to_string())
    };
    let get = |tag: &str| required(idx1(tag), tag, &body);
    assert_eq!(get("user_active"), "on", "{body}");
    assert_eq!(
        get("user_outbound"),
        "",
        "UDP straight to the registrar:\n{body}"
    );
    let (host, port) = host_port(&get("user_host"), &body);
    let account = Account {
        number: get("user_name"),
        auth_name: get("user_pname"),
        password: get("user_pass"),
        display_name: get("user_realname"),
        label: get("user_idle_text"),
        host,
        port,
    };
    let next_url = child_text(settings, "setting_server").map(|s| {
        assert!(
            s.contains("{mac}"),
            "setting_server names the phone's file: {s}"
        );
        s.replace("{mac}", &mac)
    });
    let speed_dials = doc
        .descendants()
        .filter(|n| n.has_tag_name("fkey"))
        .filter_map(|n| {
            n.text()?
                .trim()
                .strip_prefix("speed ")
                .map(|s| s.trim().to_string())
        })
        .collect();
    PhoneView {
        account,
        next_url,
        speed_dials,
    }
}

/// SIPp 3.6 knows only MD5 and answers the first challenge it reads: MD5 goes first (as in
/// e2e_phone_life.rs; the registrar's own tests cover SHA-256).
fn server_with_autoreg() -> Server {
    Server::start_with_autoreg(r#"["MD5", "SHA-256"]"#, vec![])
}

/// The account points at selfprov's SIP address and carries everything a line needs.
fn check_points_at_server(server: &Server, a: &Account, what: &str) {
    assert_eq!(
        (a.host.as_str(), a.port.as_str()),
        (
            server.sip.ip().to_string().as_str(),
            server.sip.port().to_string().as_str()
        ),
        "{what}: registers with selfprov: {a:?}"
    );
    assert!(!a.auth_name.is_empty(), "{what}: auth user: {a:?}");
    assert!(
        a.password.len() >= 12,
        "{what}: a generated password: {a:?}"
    );
    assert!(!a.display_name.is_empty(), "{what}: display name: {a:?}");
    assert!(!a.label.is_empty(), "{what}: label: {a:?}");
}

/// The path of `url` on the provisioning server (which `url` must name).
fn path_on(server: &Server, url: &str) -> String {
    let prov = server.provisioning.expect("provisioning address");
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("an HTTP URL: {url}"));
    let (authority, path) = rest
        .split_once('/')
        .unwrap_or_else(|| panic!("a URL with a path: {url}"));
    assert_eq!(
        authority,
        prov.to_string(),
        "the URL names the provisioning server: {url}"
    );
    format!("/{path}")
}

/// SIPp's digest `uri` defaults to `sip:<remote_ip>:<remote_port>`; the server checks the
/// Request-URI (RFC 7616 §3.4.6). SIPp puts `sip:` in front.
fn auth_uri(server: &Server, service: &str) -> String {
    format!("{service}@{}", server.sip)
}

fn register(server: &Server, a: &Account, port: u16) -> SippOutcome {
    let out = Sipp::new("phone_register.xml")
        .port(port)
        .key("user", &a.number)
        .key("expires", 300)
        .args(&["-au", &a.auth_name, "-ap", &a.password])
        .run(server.sip, server.dir.path());
    out.assert_success(&format!("REGISTER {} with digest authentication", a.number));
    out
}

fn call_ivr(server: &Server, a: &Account, port: u16) {
    let pcap = server.dir.path().join("keys.pcap");
    write_rfc4733(
        &pcap,
        &provisioning_keys_after(0),
        &Rfc4733Options::default(),
    );
    Sipp::new("phone_call.xml")
        .port(port)
        .key("user", &a.number)
        .key("pcap", pcap.display())
        .set("lead_ms", LEAD_MS)
        .args(&["-au", &a.auth_name, "-ap", &a.password])
        .args(&["-auth_uri", &auth_uri(server, IVR)])
        .run(server.sip, server.dir.path())
        .assert_success("the guest provisions through the IVR (407 answered)");
}

/// The body of a SIP message (after the blank line).
fn sip_body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n")
        .or_else(|| msg.split_once("\n\n"))
        .map_or("", |(_, b)| b)
}

/// What the life of one phone left, for vendor-specific checks.
struct Life {
    server: Server,
    /// The NOTIFY as the phone received it.
    notify: String,
    /// The phone's REGISTER (guest account), as sent.
    register: SippOutcome,
}

/// Steps 1 to 5 for `phone`; returns the server and what the phone saw.
fn phone_life(phone: &Phone) -> Life {
    let server = server_with_autoreg();
    server.add_user(&JDOE);

    // 1. + 2. The guest config, read as the phone reads it.
    let guest = (phone.read)(&server, phone, "");
    let g = &guest.account;
    check_points_at_server(&server, g, "guest config");
    assert_eq!(g.number, "2000", "the first number of the range: {g:?}");
    assert_ne!(g.auth_name, g.number, "a random auth user: {g:?}");
    assert!(
        g.label.contains(IVR),
        "the label says how to provision: {g:?}"
    );
    if phone.vendor != "grandstream" {
        assert_eq!(
            guest.speed_dials,
            vec![IVR.to_string()],
            "a speed dial to the IVR"
        );
    }
    let again = (phone.read)(&server, phone, "");
    assert_eq!(
        (
            again.account.number.as_str(),
            again.account.auth_name.as_str()
        ),
        (g.number.as_str(), g.auth_name.as_str()),
        "a second fetch gives the same account"
    );
    let devices = server.devices();
    assert_eq!(devices.len(), 1, "{devices:#?}");
    let d = &devices[0].raw;
    assert_eq!(d["state"], "autoprov", "{d:#}");
    assert_eq!(d["mac"], phone.mac.to_ascii_uppercase(), "{d:#}");
    assert_eq!(
        d["vendor"].as_str().map(str::to_ascii_lowercase).as_deref(),
        Some(phone.vendor),
        "{d:#}"
    );

    // 3. Register, then call the IVR from the same port.
    let port = ports::free_port();
    let guest_register = register(&server, g, port);
    call_ivr(&server, g, port);

    // 4. The resync NOTIFY reaches the port the phone registered from.
    let notify = Sipp::new("phone_notify.xml")
        .port(port)
        .timeout_s(20)
        .start(None, server.dir.path())
        .finish();
    notify.assert_success("resync NOTIFY after the binding");
    let event = notify
        .logs
        .lines()
        .find_map(|l| l.trim().strip_prefix("resync: "))
        .unwrap_or_else(|| panic!("the Event was logged\n{}", notify.describe()));
    assert_eq!(
        event, phone.resync_event,
        "{}'s resync event: {}",
        phone.vendor, notify.logs
    );
    let notify_msg = notify
        .received("NOTIFY ")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no NOTIFY in the trace\n{}", notify.describe()));

    let device = server.assert_bound("jdoe", "1001");
    assert_eq!(
        device.raw["mac"],
        phone.mac.to_ascii_uppercase(),
        "{:#}",
        device.raw
    );

    assert_eq!(
        device.state.as_deref(),
        Some("provisioning"),
        "bound, told to resync, not yet fetched: {:#}",
        device.raw
    );

    // 5. The new config, from where the guest config said (Cisco: the bare path, from the
    // address it registered from).
    let prefix = match &guest.next_url {
        Some(url) => {
            let path = path_on(&server, url);
            let (dir, _file) = path.rsplit_once('/').expect("a path");
            assert!(
                dir.len() > 32,
                "the config URL carries the device's key: {url}"
            );
            dir.to_string()
        }
        None => {
            assert_eq!(phone.vendor, "cisco", "only Cisco has no config URL");
            String::new()
        }
    };
    let provisioned = (phone.read)(&server, phone, &prefix);
    // Why the server handed the file over: the key, or (Cisco) the registered address.
    let access = if prefix.is_empty() { "SourceIp" } else { "Key" };
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("outcome=\"provisioned-config\"")
                && l.contains(&format!("access={access}"))),
        "served as a provisioned file with access={access}:\n{}",
        common::tail(&log, 60)
    );
    let a = &provisioned.account;
    check_points_at_server(&server, a, "provisioned config");
    assert_eq!(a.number, "1001", "jdoe's line: {a:?}");
    assert_ne!(
        a.auth_name, g.auth_name,
        "the user's own account, not the guest one"
    );
    assert_ne!(a.password, g.password, "the user's own password");
    if let (Some(before), Some(after)) = (&guest.next_url, &provisioned.next_url) {
        assert_eq!(after, before, "the same keyed URL for later fetches");
    }

    let state = wait_for(Duration::from_secs(5), || {
        let d = server.devices().into_iter().next()?;
        (d.raw["state"] == "provisioned").then_some(d)
    });
    let d = state.unwrap_or_else(|| {
        panic!(
            "the fetch moves the device to provisioned: {:#?}\n{}",
            server.devices(),
            common::tail(&server.log(), 80)
        )
    });
    let outcome = d.raw["resync_outcome"].as_str().unwrap_or("");
    assert!(
        outcome.contains(&format!("{} 200 from 127.0.0.1:", phone.resync_event)),
        "the NOTIFY's answer is recorded on the device: {:#}",
        d.raw
    );

    // The credentials the phone read are the line's real ones: they register.
    register(&server, a, ports::free_port());
    Life {
        server,
        notify: notify_msg,
        register: guest_register,
    }
}

const CISCO: Phone = Phone {
    vendor: "cisco",
    mac: "6c416aa1b2c3",
    user_agent: "Cisco-CP8851/12.1.1",
    resync_event: "service-control",
    read: read_cisco,
};

const POLYCOM: Phone = Phone {
    vendor: "polycom",
    mac: "0004f2a1b2c3",
    user_agent: "FileTransport PolycomVVX-VVX_410-UA/5.9.5.0614",
    resync_event: "check-sync",
    read: read_polycom,
};

const GRANDSTREAM: Phone = Phone {
    vendor: "grandstream",
    mac: "000b82a1b2c3",
    user_agent: "Grandstream Model HW GXP2170 SW 1.0.11.3 DevId 000b82a1b2c3",
    resync_event: "check-sync",
    read: read_grandstream,
};

const SNOM: Phone = Phone {
    vendor: "snom",
    mac: "000413a1b2c3",
    user_agent: "Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33; 00:04:13:a1:b2:c3)",
    resync_event: "check-sync;reboot=true",
    read: read_snom,
};

/// Cisco's service-control NOTIFY: `text/plain`, `action=restart` first, and
/// `RegisterCallId={<Call-ID of the phone's REGISTER>}`: a Cisco phone ignores a
/// service-control that does not name its own registration (src/provisioning/resync.rs).
fn check_cisco_notify(life: &Life) {
    let msg = &life.notify;
    let ctype = header(msg, "Content-Type").unwrap_or("");
    assert!(
        ctype.eq_ignore_ascii_case("text/plain"),
        "service-control carries text/plain: {msg}"
    );
    let body = sip_body(msg);
    assert!(
        body.starts_with("action=restart\r\n"),
        "the phone re-reads its config: {msg}"
    );
    let call_id = life
        .register
        .messages
        .split("----------------------------------------------- ")
        .filter(|b| b.contains("message sent"))
        .find_map(|b| {
            let msg = b.split_once("\n\n").map_or("", |(_, m)| m.trim_start());
            msg.starts_with("REGISTER ")
                .then(|| header(msg, "Call-ID").map(str::to_string))
                .flatten()
        })
        .unwrap_or_else(|| panic!("no REGISTER in SIPp's trace\n{}", life.register.describe()));
    assert!(
        body.contains(&format!("RegisterCallId={{{call_id}}}\r\n")),
        "RegisterCallId is the Call-ID of the phone's REGISTER {call_id:?}: {msg}"
    );
}

/// A check-sync NOTIFY carries no body.
fn check_no_body(life: &Life) {
    assert_eq!(
        header(&life.notify, "Content-Length"),
        Some("0"),
        "check-sync has no body: {}",
        life.notify
    );
}

#[test]
fn cisco_phone_life() {
    let mut life = phone_life(&CISCO);
    check_cisco_notify(&life);
    life.server.assert_alive();
}

#[test]
fn polycom_phone_life() {
    let mut life = phone_life(&POLYCOM);
    check_no_body(&life);
    life.server.assert_alive();
}

#[test]
fn grandstream_phone_life() {
    let mut life = phone_life(&GRANDSTREAM);
    check_no_body(&life);
    life.server.assert_alive();
}

#[test]
fn snom_phone_life() {
    let mut life = phone_life(&SNOM);
    check_no_body(&life);
    life.server.assert_alive();
}
