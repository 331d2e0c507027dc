//! A phone's side of self-provisioning, shared by the end-to-end tests: a Yealink fetching its
//! guest config, registering with SIPp, calling the IVR, and fetching its new file.

use super::http::{self, cfg_value};
use super::pcap::{write_rfc4733, Rfc4733Options};
use super::server::Server;
use super::sipp::Sipp;
use super::{provisioning_keys_after, LEAD_MS};

pub const YEALINK_MAC: &str = "805ec0a1b2c3";
pub const YEALINK_UA: &str = "Yealink SIP-T46S 66.86.0.15 80:5e:c0:a1:b2:c3";

/// The account a config file gives a phone.
pub struct Guest {
    pub number: String,
    pub auth_name: String,
    pub password: String,
    pub config_url: String,
}

/// Fetches `<mac>.cfg` as a Yealink and checks it is a guest config registering at selfprov.
pub fn fetch_guest(server: &Server, mac: &str, ua: &str) -> Guest {
    let prov = server
        .provisioning
        .expect("the server printed its provisioning address");
    let r = http::get(prov, &format!("/{mac}.cfg"), ua);
    assert_eq!(
        r.status,
        200,
        "guest config for {mac}: {}\n{}",
        r.body,
        server.log()
    );
    let get = |k: &str| {
        cfg_value(&r.body, k).unwrap_or_else(|| panic!("guest config lacks {k}:\n{}", r.body))
    };
    let guest = Guest {
        number: get("account.1.user_name"),
        auth_name: get("account.1.auth_name"),
        password: get("account.1.password"),
        config_url: get("static.auto_provision.server.url"),
    };
    assert_eq!(
        get("account.1.sip_server.1.port"),
        server.sip.port().to_string(),
        "the guest account registers with selfprov:\n{}",
        r.body
    );
    assert_eq!(
        get("linekey.2.value"),
        "8000",
        "a speed dial to the IVR:\n{}",
        r.body
    );
    guest
}

/// SIPp's digest `uri` defaults to `sip:<remote_ip>:<remote_port>`; RFC 7616 §3.4.6 wants the
/// Request-URI, which the server checks: an INVITE's credentials name the dialled URI. SIPp
/// puts `sip:` in front of what `-auth_uri` gives.
pub fn auth_uri(server: &Server, service: &str) -> String {
    format!("{service}@{}", server.sip)
}

/// REGISTERs `guest` at `server` from `port` with SIPp (digest answered).
pub fn register(server: &Server, guest: &Guest, port: u16) {
    Sipp::new("phone_register.xml")
        .port(port)
        .key("user", &guest.number)
        .key("expires", 300)
        .args(&["-au", &guest.auth_name, "-ap", &guest.password])
        .run(server.sip, server.dir.path())
        .assert_success("guest REGISTER with digest authentication");
}

/// The registered guest (from `port`) calls the IVR: the INVITE is challenged (407) and
/// retried with Proxy-Authorization, jdoe's ID, PIN and confirmation are typed as RFC 4733
/// events, the server hangs up; then the resync NOTIFY is awaited on the same port. Returns
/// SIPp's log of the NOTIFY scenario (`resync: <event>`).
pub fn call_ivr_and_take_notify(server: &Server, guest: &Guest, port: u16) -> String {
    let pcap = server.dir.path().join(format!("keys-{port}.pcap"));
    let plan = provisioning_keys_after(0);
    write_rfc4733(&pcap, &plan, &Rfc4733Options::default());
    Sipp::new("phone_call.xml")
        .port(port)
        .key("user", &guest.number)
        .key("pcap", pcap.display())
        .set("lead_ms", LEAD_MS)
        .args(&["-au", &guest.auth_name, "-ap", &guest.password])
        .args(&["-auth_uri", &auth_uri(server, "8000")])
        .run(server.sip, server.dir.path())
        .assert_success("registered guest provisions through the IVR (407 answered)");
    // The resync NOTIFY reaches the port the phone registered from (a retransmission if the
    // first one came while SIPp was switching scenarios).
    let notify = Sipp::new("phone_notify.xml")
        .port(port)
        .timeout_s(20)
        .start(None, server.dir.path())
        .finish();
    notify.assert_success("resync NOTIFY after the binding");
    notify.logs
}

/// The path (with the device's key) of the file `guest.config_url` points at.
pub fn keyed_path(guest: &Guest, mac: &str) -> String {
    let base = guest.config_url.trim_end_matches('/');
    assert!(base.starts_with("http://"), "a keyed config URL: {base}");
    format!(
        "{}/{mac}.cfg",
        base.splitn(4, '/')
            .nth(3)
            .map(|p| format!("/{p}"))
            .unwrap_or_default()
    )
}
