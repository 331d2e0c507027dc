//! The provisioning TFTP server (`phoneprov::tftp`) on 127.0.0.1 with a temporary SQLite store,
//! fetched with real software (curl's TFTP client): an unknown Cisco MAC gets its guest config
//! (with and without options, `--tftp-blksize 1024`), a provisioned phone's file is refused to
//! an address its account has not registered from and served under its key or from its
//! registered address, missing files and writes are refused, the unknown-MAC rate limit.
//! A raw UDP client checks what curl does not show: the transfer's own port (TID),
//! retransmission, ERROR 5 to strangers, the transfer limit. Last, the real binary started
//! with `provisioning.tftp_listen` prints its TFTP line and serves.

mod common;

use selfprov::config::FileAuth;
use selfprov::phoneprov::serve::{ProvSettings, ProvState};
use selfprov::phoneprov::tftp::{self, encode, parse, Limits, Packet, RawRequest};
use selfprov::phoneprov::{Renderer, SipServer};
use selfprov::store::{DeviceState, Store, Transport};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

const MAC: &str = "0022905C8E01";
const FILE: &str = "SEP0022905C8E01.cnf.xml";
const FOREIGN: &str = "192.0.2.50";

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn env_with(per_minute: u32, limits: Limits) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap();
    let mut s = store.get_settings().await.unwrap();
    s.autoreg_start_dn = Some("7000".into());
    s.autoreg_end_dn = Some("7099".into());
    s.ivr_extensions = vec!["8500".into()];
    store.update_settings(s).await.unwrap();
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
            public_url: "http://192.0.2.1:8081".into(),
            file_auth: FileAuth::UrlKey,
            unknown_mac_per_minute: per_minute,
            realm: "selfprov".into(),
        },
    );
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let server = tokio::spawn(tftp::serve(socket, state, limits));
    Env {
        _dir: dir,
        store,
        addr,
        server,
    }
}

async fn env() -> Env {
    env_with(100, Limits::default()).await
}

struct Curl {
    code: i32,
    body: Vec<u8>,
    stderr: String,
}

/// Runs curl (bounded by `--max-time`) off the runtime's threads.
async fn curl(args: Vec<String>) -> Curl {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "15"])
            .args(&args)
            .output()
            .expect("curl is installed (with tftp support)")
    })
    .await
    .unwrap();
    Curl {
        code: out.status.code().unwrap_or(-1),
        body: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn fetch(addr: SocketAddr, path: &str, extra: &[&str]) -> Curl {
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    args.push(format!("tftp://{addr}/{path}"));
    curl(args).await
}

/// The text of `<tag>` under the first `<line button="1">`.
fn line1(xml: &str, tag: &str) -> String {
    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("{e}: {xml}"));
    let line = doc
        .descendants()
        .find(|n| n.has_tag_name("line") && n.attribute("button") == Some("1"))
        .unwrap_or_else(|| panic!("no line 1: {xml}"));
    line.children()
        .find(|n| n.has_tag_name(tag))
        .and_then(|n| n.text())
        .unwrap_or_else(|| panic!("no {tag}: {xml}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_cisco_mac_gets_its_guest_config_over_tftp() {
    let e = env().await;
    let r = fetch(e.addr, FILE, &[]).await;
    assert_eq!(r.code, 0, "curl: {}", r.stderr);
    let xml = String::from_utf8(r.body.clone()).unwrap();
    assert!(
        xml.len() > 1024,
        "several blocks at any size: {}",
        xml.len()
    );
    let d = e.store.find_device_by_mac(MAC).await.unwrap().unwrap();
    assert_eq!(d.state, DeviceState::Autoprov);
    assert_eq!(d.vendor.as_deref(), Some("cisco"));
    assert!(
        d.last_ip.is_none(),
        "an unauthenticated fetch trusts no address"
    );
    let acc = e.store.guest_account(d.id).await.unwrap().unwrap();
    assert_eq!(line1(&xml, "name"), acc.number);
    assert_eq!(line1(&xml, "authName"), acc.auth_username);
    assert_eq!(line1(&xml, "authPassword"), acc.password);
    assert_eq!(line1(&xml, "proxy"), "192.0.2.1");
    assert_eq!(line1(&xml, "port"), "5060");
    assert!(line1(&xml, "featureLabel").contains("8500"), "{xml}");

    // The same file with a negotiated block size, and without any option (plain RFC 1350):
    // byte for byte, and still one device.
    for extra in [
        &["--tftp-blksize", "1024"][..],
        &["--tftp-blksize", "8"][..],
        &["--tftp-no-options"][..],
    ] {
        let again = fetch(e.addr, FILE, extra).await;
        assert_eq!(again.code, 0, "{extra:?}: {}", again.stderr);
        assert_eq!(again.body, r.body, "{extra:?}");
    }
    assert_eq!(e.store.list_devices().await.unwrap().len(), 1);

    // The vendor default file is public.
    let r = fetch(e.addr, "XmlDefault.cnf.xml", &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let xml = String::from_utf8(r.body).unwrap();
    roxmltree::Document::parse(&xml).unwrap();
    assert!(!xml.contains("authPassword"), "{xml}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisioned_phones_file_is_refused_to_a_foreign_address() {
    let e = env().await;
    assert_eq!(fetch(e.addr, FILE, &[]).await.code, 0);
    let d = common::store::bind_to_jdoe(&e.store, MAC).await;
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
    // Its line registered from another address: the test's 127.0.0.1 is a stranger.
    e.store
        .record_registration(sip.id, FOREIGN.parse::<IpAddr>().unwrap())
        .await
        .unwrap();
    let r = fetch(e.addr, FILE, &[]).await;
    assert_eq!(
        r.code, 69,
        "curl's code for TFTP access violation: {}",
        r.stderr
    );
    assert!(r.body.is_empty());
    let d = e.store.get_device(d.id).await.unwrap().unwrap();
    assert!(d.config_fetched_at.is_none(), "nothing was served");

    // Under its key (a TFTP path `<key>/<file>`): served, and the phone is provisioned.
    let key = e.store.device_config_key(d.id).await.unwrap();
    let r = fetch(
        e.addr,
        &format!("{key}/{FILE}"),
        &["--tftp-blksize", "1024"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let xml = String::from_utf8(r.body).unwrap();
    assert_eq!(line1(&xml, "name"), "2001");
    assert_eq!(line1(&xml, "authName"), sip.auth_username);
    assert_eq!(line1(&xml, "authPassword"), sip.password);
    let d = e.store.get_device(d.id).await.unwrap().unwrap();
    assert_eq!(d.state, DeviceState::Provisioned);
    assert!(d.config_fetched_at.is_some());
    assert_eq!(d.last_ip.as_deref(), Some("127.0.0.1"));
    // A key of another device, or a wrong one, does not open this file.
    let r = fetch(e.addr, &format!("{}/{FILE}", "f".repeat(32)), &[]).await;
    assert_eq!(r.code, 68, "{}", r.stderr);

    // The bare path from the address it fetched from now works; after a REGISTER from
    // elsewhere, it is refused again.
    let r = fetch(e.addr, FILE, &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(line1(&String::from_utf8(r.body).unwrap(), "name"), "2001");
    e.store
        .record_registration(sip.id, FOREIGN.parse::<IpAddr>().unwrap())
        .await
        .unwrap();
    assert_eq!(fetch(e.addr, FILE, &[]).await.code, 69);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_files_writes_and_scanners_are_refused() {
    let e = env_with(2, Limits::default()).await;
    for missing in [
        "nothing-here.txt",
        "SEPZZZZZZZZZZZZ.cnf.xml",
        "../etc/passwd",
        "a/b/c.cfg",
    ] {
        let r = fetch(e.addr, missing, &[]).await;
        assert_eq!(r.code, 68, "{missing}: curl's code for TFTP file not found");
        assert!(r.body.is_empty());
    }
    // A write request.
    let upload = e._dir.path().join("up.cfg");
    std::fs::write(&upload, "x").unwrap();
    let r = curl(vec![
        "-T".into(),
        upload.display().to_string(),
        format!("tftp://{}/up.cfg", e.addr),
    ])
    .await;
    assert_eq!(r.code, 69, "{}", r.stderr);
    // Unknown MACs: two per minute from one address, then refused with nothing created.
    for i in 1..=2 {
        let r = fetch(e.addr, &format!("SEP0022905C8E0{i}.cnf.xml"), &[]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let r = fetch(e.addr, "SEP0022905C8E03.cnf.xml", &[]).await;
    assert_eq!(r.code, 69, "{}", r.stderr);
    assert!(e
        .store
        .find_device_by_mac("0022905C8E03")
        .await
        .unwrap()
        .is_none());
    assert_eq!(e.store.list_devices().await.unwrap().len(), 2);
}

fn rrq(file: &str, options: &[(&str, &str)]) -> Vec<u8> {
    encode(&Packet::Rrq(RawRequest {
        filename: file.into(),
        mode: "octet".into(),
        options: options
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    }))
}

async fn recv(s: &tokio::net::UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 70_000];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), s.recv_from(&mut buf))
        .await
        .expect("a packet within 5 s")
        .unwrap();
    buf.truncate(n);
    (buf, from)
}

async fn client() -> tokio::net::UdpSocket {
    tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_use_their_own_port_retransmit_and_are_bounded() {
    let e = env_with(
        100,
        Limits {
            max_transfers: 1,
            timeout: Duration::from_millis(800),
            ..Limits::default()
        },
    )
    .await;
    let a = client().await;
    a.send_to(&rrq("XmlDefault.cnf.xml", &[("blksize", "100")]), e.addr)
        .await
        .unwrap();
    let (oack, tid) = recv(&a).await;
    assert_ne!(tid, e.addr, "a transfer answers from a port of its own");
    assert_eq!(
        parse(&oack).unwrap(),
        Packet::Oack {
            options: vec![("blksize".into(), "100".into())]
        }
    );
    // The one transfer slot is taken: another client is told the server is busy.
    let b = client().await;
    b.send_to(&rrq("XmlDefault.cnf.xml", &[]), e.addr)
        .await
        .unwrap();
    let (busy, from) = recv(&b).await;
    assert_eq!(from, e.addr);
    assert!(
        matches!(parse(&busy).unwrap(), Packet::Error { code: 0, ref message } if message.contains("busy")),
        "{busy:?}"
    );
    // A stranger writing to the transfer's port gets ERROR 5; the transfer goes on.
    b.send_to(&encode(&Packet::Ack { block: 0 }), tid)
        .await
        .unwrap();
    let (e5, from) = recv(&b).await;
    assert_eq!(from, tid);
    assert!(matches!(parse(&e5).unwrap(), Packet::Error { code: 5, .. }));

    // Not acknowledged: the OACK is not sent again (a forged request draws one packet), and a
    // retransmitted RRQ from A while the transfer runs is not a second transfer.
    a.send_to(&rrq("XmlDefault.cnf.xml", &[("blksize", "100")]), e.addr)
        .await
        .unwrap();
    let mut buf = [0u8; 2048];
    let quiet = tokio::time::timeout(Duration::from_millis(1_500), a.recv_from(&mut buf)).await;
    assert!(
        quiet.is_err(),
        "nothing more for an unanswered transfer: {quiet:?}"
    );
    // Its timeout has passed: A's request again is a new transfer, on a port of its own.
    a.send_to(&rrq("XmlDefault.cnf.xml", &[("blksize", "100")]), e.addr)
        .await
        .unwrap();
    let (oack2, tid) = recv(&a).await;
    assert_eq!(oack2, oack);
    // Lock-step to the end; duplicates (retransmitted OACKs) are ignored by block number.
    let mut file = Vec::new();
    let mut expect: u16 = 1;
    a.send_to(&encode(&Packet::Ack { block: 0 }), tid)
        .await
        .unwrap();
    loop {
        let (p, from) = recv(&a).await;
        assert_eq!(from, tid, "only the transfer's port answers");
        match parse(&p).unwrap() {
            Packet::Data { block, data } if block == expect => {
                file.extend_from_slice(data);
                a.send_to(&encode(&Packet::Ack { block }), tid)
                    .await
                    .unwrap();
                expect += 1;
                if data.len() < 100 {
                    break;
                }
            }
            Packet::Oack { .. } | Packet::Data { .. } => continue,
            other => panic!("{other:?}"),
        }
    }
    let xml = String::from_utf8(file).unwrap();
    roxmltree::Document::parse(&xml).unwrap();
    assert!(xml.contains("5060"), "{xml}");

    // The slot is free again.
    let served = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            b.send_to(&rrq("XmlDefault.cnf.xml", &[]), e.addr)
                .await
                .unwrap();
            let (p, _) = recv(&b).await;
            if let Packet::Data { block: 1, .. } = parse(&p).unwrap() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(served.is_ok(), "the finished transfer released its slot");
}

#[test]
fn the_server_binary_serves_tftp_when_configured() {
    let server = common::server::Server::start_with(&common::server::ServerOptions {
        extra: vec![("provisioning", "tftp_listen = \"127.0.0.1:0\"".into())],
        ..Default::default()
    });
    let addr = server.tftp.expect("a `TFTP listening on` line");
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "15"])
        .arg(format!("tftp://{addr}/XmlDefault.cnf.xml"))
        .output()
        .expect("curl");
    assert!(out.status.success(), "{out:?}");
    let xml = String::from_utf8(out.stdout).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    assert!(
        xml.contains(&server.sip.port().to_string()),
        "the SIP port in the default file: {xml}"
    );
    assert!(doc.root_element().has_tag_name("Default"), "{xml}");
    // Without the key the server prints no TFTP line.
    let plain = common::server::Server::start();
    assert!(plain.tftp.is_none());
}
