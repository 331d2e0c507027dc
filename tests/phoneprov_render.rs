//! Phone configuration files: every vendor's output for a two-line device parsed back and
//! checked for what the phone needs to register each line; XML escaping; template overrides;
//! guest configs; file-name and User-Agent routing; hostile paths.

use selfprov::phoneprov::{
    route, DeviceInfo, FileKind, GuestAccount, LineConfig, PhoneConfig, Renderer, SipServer,
    SpeedDialConfig, Vendor,
};
use selfprov::store::Transport;
use std::collections::HashMap;

const NASTY: &str = "Zoë <\"R&D\"> O'Neil";

fn server() -> SipServer {
    SipServer {
        host: "selfprov.example.net".into(),
        port: 5060,
        transport: Transport::Udp,
        pbx: None,
    }
}

fn two_lines(vendor: Vendor, mac: &str) -> PhoneConfig {
    let line = |position: u32, number: &str, display: &str, label: &str| LineConfig {
        position,
        number: number.into(),
        display_name: display.into(),
        label: label.into(),
        auth_username: format!("auth{number}"),
        password: format!("pw&<{number}>\"'"),
        registrar_host: "pbx.example.com".into(),
        registrar_port: 5070,
        transport: Transport::Udp,
        proxy: None,
    };
    PhoneConfig {
        device: DeviceInfo {
            mac: Some(mac.into()),
            model: None,
            vendor: Some(vendor),
        },
        lines: vec![
            line(1, "1001", NASTY, "1001 - Zoë"),
            line(2, "1002", "Second Line", "Sales & <Support>"),
        ],
        line_keys: 2,
        speed_dials: vec![SpeedDialConfig {
            position: 1,
            number: "8000".into(),
            label: "IVR".into(),
        }],
        locale: "en-US".into(),
        timezone: "Europe/Paris".into(),
        ntp_server: Some("ntp.example.com".into()),
        server: server(),
        guest: false,
    }
}

/// What a line must carry to register, read back from a rendered file.
#[derive(Debug, PartialEq)]
struct Reg {
    server: String,
    port: String,
    user: String,
    auth_user: String,
    password: String,
    display_name: String,
    label: String,
}

fn expect_lines(got: &[Reg], cfg: &PhoneConfig) {
    assert_eq!(got.len(), cfg.lines.len(), "{got:?}");
    for (g, l) in got.iter().zip(&cfg.lines) {
        assert_eq!(
            g,
            &Reg {
                server: l.registrar_host.clone(),
                port: l.registrar_port.to_string(),
                user: l.number.clone(),
                auth_user: l.auth_username.clone(),
                password: l.password.clone(),
                display_name: l.display_name.clone(),
                label: l.label.clone(),
            }
        );
    }
}

fn child_text<'a>(n: roxmltree::Node<'a, 'a>, name: &str) -> String {
    n.children()
        .find(|c| c.has_tag_name(name))
        .and_then(|c| c.text())
        .unwrap_or_default()
        .to_string()
}

fn render(kind: FileKind, cfg: &PhoneConfig) -> String {
    Renderer::new().unwrap().render(&kind, cfg).unwrap()
}

#[test]
fn cisco_sep_file_registers_each_line() {
    let cfg = two_lines(Vendor::Cisco, "001122AABBCC");
    let xml = render(FileKind::CiscoDevice, &cfg);
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let lines: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("line") && child_text(*n, "featureID") == "9")
        .collect();
    let regs: Vec<Reg> = lines
        .iter()
        .map(|n| Reg {
            server: child_text(*n, "proxy"),
            port: child_text(*n, "port"),
            user: child_text(*n, "name"),
            auth_user: child_text(*n, "authName"),
            password: child_text(*n, "authPassword"),
            display_name: child_text(*n, "displayName"),
            label: child_text(*n, "featureLabel"),
        })
        .collect();
    expect_lines(&regs, &cfg);
    let buttons: Vec<_> = lines.iter().map(|n| n.attribute("button")).collect();
    assert_eq!(buttons, [Some("1"), Some("2")]);
    for n in &lines {
        assert_eq!(child_text(*n, "contact"), child_text(*n, "name"));
    }
    // The speed dial comes after the two line keys.
    let sd = doc
        .descendants()
        .find(|n| n.has_tag_name("line") && child_text(*n, "featureID") == "2")
        .expect("speed dial");
    assert_eq!(sd.attribute("button"), Some("3"));
    assert_eq!(child_text(sd, "speedDialNumber"), "8000");
    let cm = doc
        .descendants()
        .find(|n| n.has_tag_name("callManager"))
        .unwrap();
    assert_eq!(child_text(cm, "processNodeName"), "pbx.example.com");
    let sip_port = doc
        .descendants()
        .find(|n| n.has_tag_name("sipPort"))
        .unwrap();
    assert_eq!(sip_port.text(), Some("5070"));
    assert!(doc
        .descendants()
        .any(|n| n.has_tag_name("ntp") && child_text(n, "name") == "ntp.example.com"));

    let def = render(
        FileKind::CiscoDefault,
        &PhoneConfig::defaults(&server(), None, Vendor::Cisco),
    );
    let doc = roxmltree::Document::parse(&def).unwrap();
    let cm = doc
        .descendants()
        .find(|n| n.has_tag_name("callManager"))
        .unwrap();
    assert_eq!(child_text(cm, "processNodeName"), "selfprov.example.net");
}

/// `key = value` lines (Yealink), `#` comments skipped; duplicate keys are an error.
fn parse_cfg(text: &str) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("{line:?}"));
        assert!(
            m.insert(k.trim().to_string(), v.trim().to_string())
                .is_none(),
            "duplicate {k}"
        );
    }
    m
}

#[test]
fn yealink_cfg_registers_each_line() {
    let cfg = two_lines(Vendor::Yealink, "001565AABBCC");
    let text = render(FileKind::YealinkDevice, &cfg);
    assert!(text.starts_with("#!version:1.0.0.1\n"), "{text}");
    let kv = parse_cfg(&text);
    let get = |n: u32, k: &str| {
        kv.get(&format!("account.{n}.{k}"))
            .cloned()
            .unwrap_or_default()
    };
    let regs: Vec<Reg> = (1..=2)
        .map(|n| {
            assert_eq!(get(n, "enable"), "1");
            assert_eq!(get(n, "sip_server.1.transport_type"), "0");
            Reg {
                server: get(n, "sip_server.1.address"),
                port: get(n, "sip_server.1.port"),
                user: get(n, "user_name"),
                auth_user: get(n, "auth_name"),
                password: get(n, "password"),
                display_name: get(n, "display_name"),
                label: get(n, "label"),
            }
        })
        .collect();
    expect_lines(&regs, &cfg);
    assert_eq!(kv["linekey.3.type"], "13");
    assert_eq!(kv["linekey.3.value"], "8000");
    assert_eq!(kv["local_time.ntp_server1"], "ntp.example.com");
}

#[test]
fn yealink_cfg_value_cannot_inject_a_setting() {
    let mut cfg = two_lines(Vendor::Yealink, "001565AABBCC");
    cfg.lines[0].display_name = "Bob\naccount.1.sip_server.1.address = evil.example\r".into();
    let kv = parse_cfg(&render(FileKind::YealinkDevice, &cfg));
    assert_eq!(kv["account.1.sip_server.1.address"], "pbx.example.com");
    assert_eq!(
        kv["account.1.display_name"],
        "Bob account.1.sip_server.1.address = evil.example"
    );
}

#[test]
fn polycom_files_register_each_line() {
    let cfg = two_lines(Vendor::Polycom, "0004F2AABBCC");
    let master = render(FileKind::PolycomMaster, &cfg);
    let doc = roxmltree::Document::parse(&master).unwrap();
    let app = doc.root_element();
    assert_eq!(app.tag_name().name(), "APPLICATION");
    assert_eq!(app.attribute("CONFIG_FILES"), Some("0004f2aabbcc-user.cfg"));
    let default = render(
        FileKind::PolycomMasterDefault,
        &PhoneConfig::defaults(&server(), None, Vendor::Polycom),
    );
    let doc = roxmltree::Document::parse(&default).unwrap();
    assert_eq!(
        doc.root_element().attribute("CONFIG_FILES"),
        Some("[PHONE_MAC_ADDRESS]-user.cfg")
    );

    let user = render(FileKind::PolycomUser, &cfg);
    let doc = roxmltree::Document::parse(&user).unwrap_or_else(|e| panic!("{e}\n{user}"));
    let reg = doc.descendants().find(|n| n.has_tag_name("reg")).unwrap();
    let a = |n: u32, k: &str| {
        reg.attribute(format!("reg.{n}.{k}").as_str())
            .unwrap_or_default()
            .to_string()
    };
    let regs: Vec<Reg> = (1..=2)
        .map(|n| {
            assert_eq!(a(n, "server.1.transport"), "UDPOnly");
            Reg {
                server: a(n, "server.1.address"),
                port: a(n, "server.1.port"),
                user: a(n, "address"),
                auth_user: a(n, "auth.userId"),
                password: a(n, "auth.password"),
                display_name: a(n, "displayName"),
                label: a(n, "label"),
            }
        })
        .collect();
    expect_lines(&regs, &cfg);

    let dir = render(FileKind::PolycomDirectory, &cfg);
    let doc = roxmltree::Document::parse(&dir).unwrap();
    let item = doc.descendants().find(|n| n.has_tag_name("item")).unwrap();
    assert_eq!(child_text(item, "ct"), "8000");
    assert_eq!(child_text(item, "sd"), "1");
}

#[test]
fn grandstream_file_registers_each_line() {
    let cfg = two_lines(Vendor::Grandstream, "000B82AABBCC");
    let xml = render(FileKind::GrandstreamDevice, &cfg);
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    assert_eq!(doc.root_element().tag_name().name(), "gs_provision");
    assert_eq!(child_text(doc.root_element(), "mac"), "000b82aabbcc");
    let p: HashMap<String, String> = doc
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name().starts_with('P'))
        .map(|n| {
            (
                n.tag_name().name().to_string(),
                n.text().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let g = |k: &str| p.get(k).cloned().unwrap_or_default();
    let split = |s: String| {
        let (h, port) = s.rsplit_once(':').unwrap_or_default();
        (h.to_string(), port.to_string())
    };
    let mut regs = Vec::new();
    for (active, server, user, auth, pw, disp, label) in [
        ("P271", "P47", "P35", "P36", "P34", "P3", "P270"),
        ("P401", "P402", "P404", "P405", "P406", "P407", "P417"),
    ] {
        assert_eq!(g(active), "1");
        let (host, port) = split(g(server));
        regs.push(Reg {
            server: host,
            port,
            user: g(user),
            auth_user: g(auth),
            password: g(pw),
            display_name: g(disp),
            label: g(label),
        });
    }
    expect_lines(&regs, &cfg);
    assert_eq!(g("P26015"), "1");

    // Account 5 has no mapping: an error, not a silently dropped line.
    let mut five = cfg.clone();
    five.lines[1].position = 5;
    assert!(Renderer::new()
        .unwrap()
        .render(&FileKind::GrandstreamDevice, &five)
        .is_err());
}

#[test]
fn snom_file_registers_each_line() {
    let cfg = two_lines(Vendor::Snom, "000413AABBCC");
    let xml = render(FileKind::SnomDevice, &cfg);
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let get = |name: &str, idx: u32| {
        doc.descendants()
            .find(|n| n.has_tag_name(name) && n.attribute("idx") == Some(&idx.to_string()))
            .and_then(|n| n.text())
            .unwrap_or_default()
            .to_string()
    };
    let regs: Vec<Reg> = (1..=2)
        .map(|i| {
            assert_eq!(get("user_active", i), "on");
            let host = get("user_host", i);
            let (h, port) = host.rsplit_once(':').unwrap();
            Reg {
                server: h.into(),
                port: port.into(),
                user: get("user_name", i),
                auth_user: get("user_pname", i),
                password: get("user_pass", i),
                display_name: get("user_realname", i),
                label: get("user_idle_text", i),
            }
        })
        .collect();
    expect_lines(&regs, &cfg);
    let fkey = doc.descendants().find(|n| n.has_tag_name("fkey")).unwrap();
    assert_eq!(fkey.text(), Some("speed 8000"));
    assert_eq!(fkey.attribute("idx"), Some("2"));
}

#[test]
fn xml_special_characters_are_escaped() {
    let cfg = two_lines(Vendor::Cisco, "001122AABBCC");
    for kind in [
        FileKind::CiscoDevice,
        FileKind::PolycomUser,
        FileKind::GrandstreamDevice,
        FileKind::SnomDevice,
    ] {
        let xml = render(kind.clone(), &cfg);
        assert!(!xml.contains(NASTY), "{kind:?} left the raw name:\n{xml}");
        assert!(
            xml.contains("&lt;&quot;R&amp;D&quot;&gt;"),
            "{kind:?}:\n{xml}"
        );
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let found = doc
            .descendants()
            .any(|n| n.text() == Some(NASTY) || n.attributes().any(|a| a.value() == NASTY));
        assert!(found, "{kind:?} lost the display name");
    }
    // Control characters that XML 1.0 forbids are dropped, not written.
    let mut bad = cfg.clone();
    bad.lines[0].display_name = "a\u{1}b\tc".into();
    let xml = render(FileKind::PolycomUser, &bad);
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let reg = doc.descendants().find(|n| n.has_tag_name("reg")).unwrap();
    assert_eq!(reg.attribute("reg.1.displayName"), Some("ab\tc"));
}

#[test]
fn template_override_replaces_the_embedded_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("yealink-device.cfg"),
        "#!version:1.0.0.1\n# site override\n{% for line in lines %}account.{{ line.position }}.user_name = {{ line.number }}\n{% endfor %}custom.key = {{ device.mac_lower }}\n",
    )
    .unwrap();
    let r = Renderer::with_overrides(Some(dir.path())).unwrap();
    assert_eq!(r.overridden(), ["yealink-device.cfg"]);
    let cfg = two_lines(Vendor::Yealink, "001565AABBCC");
    let kv = parse_cfg(&r.render(&FileKind::YealinkDevice, &cfg).unwrap());
    assert_eq!(kv["custom.key"], "001565aabbcc");
    assert_eq!(kv["account.2.user_name"], "1002");
    assert!(!kv.contains_key("account.1.password"));
    // Other vendors keep the embedded template.
    let xml = r.render(&FileKind::SnomDevice, &cfg).unwrap();
    assert!(xml.contains("<user_pname"));

    // A broken override fails at start-up; an unknown variable fails at render.
    std::fs::write(dir.path().join("snom-device.xml"), "{% for x in %}").unwrap();
    assert!(Renderer::with_overrides(Some(dir.path())).is_err());
    std::fs::write(dir.path().join("snom-device.xml"), "{{ no_such_thing }}").unwrap();
    let r = Renderer::with_overrides(Some(dir.path())).unwrap();
    assert!(r.render(&FileKind::SnomDevice, &cfg).is_err());
}

#[test]
fn guest_config_has_one_account_and_an_ivr_speed_dial() {
    let account = GuestAccount {
        number: "9001".into(),
        auth_username: "ap7x3k9q2m".into(),
        password: "GuestSecret123".into(),
    };
    let device = DeviceInfo {
        mac: Some("001565AABBCC".into()),
        model: Some("T46S".into()),
        vendor: Some(Vendor::Yealink),
    };
    let cfg = PhoneConfig::guest(device, &account, "8000", &server(), None);
    assert!(cfg.guest);
    let kv = parse_cfg(&render(FileKind::YealinkDevice, &cfg));
    assert_eq!(kv["account.1.label"], "Dial 8000 to set up");
    assert_eq!(kv["account.1.auth_name"], "ap7x3k9q2m");
    assert_eq!(kv["account.1.password"], "GuestSecret123");
    assert_eq!(kv["account.1.user_name"], "9001");
    assert_eq!(kv["account.1.sip_server.1.address"], "selfprov.example.net");
    assert!(!kv.contains_key("account.2.enable"));
    assert_eq!(kv["linekey.2.value"], "8000");
    assert_eq!(kv["linekey.2.type"], "13");
}

#[test]
fn per_device_file_needs_a_mac() {
    let cfg = PhoneConfig::defaults(&server(), None, Vendor::Cisco);
    assert!(Renderer::new()
        .unwrap()
        .render(&FileKind::CiscoDevice, &cfg)
        .is_err());
}

#[test]
fn routes_every_file_name() {
    let r = |p: &str, ua: Option<&str>| route(p, ua).map(|q| (q.vendor, q.mac, q.model, q.kind));
    let m = |s: &str| Some(s.to_string());
    assert_eq!(
        r("/SEP001122AABBCC.cnf.xml", None),
        Some((
            Vendor::Cisco,
            m("001122AABBCC"),
            None,
            FileKind::CiscoDevice
        ))
    );
    assert_eq!(
        r("/XmlDefault.cnf.xml", None),
        Some((Vendor::Cisco, None, None, FileKind::CiscoDefault))
    );
    let yl_ua = "Yealink SIP-T46S 66.85.0.5 00:15:65:aa:bb:cc";
    assert_eq!(
        r("/001565aabbcc.cfg", Some(yl_ua)),
        Some((
            Vendor::Yealink,
            m("001565AABBCC"),
            m("T46S"),
            FileKind::YealinkDevice
        ))
    );
    assert_eq!(
        r("/y000000000028.cfg", Some(yl_ua)),
        Some((
            Vendor::Yealink,
            None,
            m("T46S"),
            FileKind::YealinkModel { code: "28".into() }
        ))
    );
    // Same MAC-named file, told apart by User-Agent, else by OUI.
    let pc_ua = "FileTransport PolycomVVX-VVX_410-UA/5.9.5.0614 Type/Application";
    assert_eq!(
        r("/0004f2aabbcc.cfg", Some(pc_ua)),
        Some((
            Vendor::Polycom,
            m("0004F2AABBCC"),
            m("VVX410"),
            FileKind::PolycomMaster
        ))
    );
    assert_eq!(
        r("/0004f2aabbcc.cfg", None).map(|x| x.0),
        Some(Vendor::Polycom)
    );
    assert_eq!(
        r("/001565aabbcc.cfg", None).map(|x| x.0),
        Some(Vendor::Yealink)
    );
    assert_eq!(r("/a0b1c2d3e4f5.cfg", None), None, "unknown OUI, no UA");
    assert_eq!(
        r("/000000000000.cfg", Some(pc_ua)),
        Some((
            Vendor::Polycom,
            None,
            m("VVX410"),
            FileKind::PolycomMasterDefault
        ))
    );
    assert_eq!(
        r("/0004f2aabbcc-user.cfg", None),
        Some((
            Vendor::Polycom,
            m("0004F2AABBCC"),
            None,
            FileKind::PolycomUser
        ))
    );
    assert_eq!(
        r("/0004f2aabbcc-directory.xml", None).map(|x| x.3),
        Some(FileKind::PolycomDirectory)
    );
    let gs_ua = "Grandstream Model HW GXP2170 SW 1.0.11.3 DevId 000b82aabbcc";
    for p in ["/cfg000b82aabbcc.xml", "/cfg000b82aabbcc"] {
        assert_eq!(
            r(p, Some(gs_ua)),
            Some((
                Vendor::Grandstream,
                m("000B82AABBCC"),
                m("GXP2170"),
                FileKind::GrandstreamDevice
            ))
        );
    }
    let snom_ua = "Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33 2010.12-00004-gd311851; 00:04:13:aa:bb:cc)";
    assert_eq!(
        r("/snomD785-000413AABBCC.htm", Some(snom_ua)),
        Some((
            Vendor::Snom,
            m("000413AABBCC"),
            m("D785"),
            FileKind::SnomDevice
        ))
    );
    assert_eq!(
        r("/000413AABBCC.xml", Some(snom_ua)),
        Some((
            Vendor::Snom,
            m("000413AABBCC"),
            m("D785"),
            FileKind::SnomDevice
        ))
    );
    // Query strings are ignored; the leading slash is optional.
    assert_eq!(
        r("SEP001122AABBCC.cnf.xml?x=1", None).map(|x| x.3),
        Some(FileKind::CiscoDevice)
    );
}

#[test]
fn user_agent_mac_must_match_the_file() {
    let ua = "Yealink SIP-T46S 66.85.0.5 00:15:65:11:22:33";
    assert_eq!(route("/001565aabbcc.cfg", Some(ua)), None);
    let gs = "Grandstream Model HW GXP2170 SW 1.0.11.3 DevId 000b82112233";
    assert_eq!(route("/cfg000b82aabbcc.xml", Some(gs)), None);
}

#[test]
fn hostile_paths_give_none() {
    let long = format!("/{}.cfg", "a".repeat(5000));
    let hostile = [
        "",
        "/",
        "/../../etc/passwd",
        "/..%2f..%2fetc%2fpasswd",
        "/SEP001122AABBCC.cnf.xml/../../x",
        "/dir/SEP001122AABBCC.cnf.xml",
        "\\SEP001122AABBCC.cnf.xml",
        "/SEP001122AABBCC.cnf.xml\0",
        "/SEP001122AABBC.cnf.xml",
        "/SEP0011-2AABBCC.cnf.xml",
        "/SEPZZ1122AABBCC.cnf.xml",
        "/SEP000000000000.cnf.xml",
        "/SEPFFFFFFFFFFFF.cnf.xml",
        "/cfg.xml",
        "/cfg",
        "/snom-000413AABBCC.htm",
        "/snomD785-.htm",
        "/snomD785000413AABBCC.htm",
        "/y00000000002.cfg",
        "/y0000000000ab.cfg",
        "/.cfg",
        "/-user.cfg",
        "/Ω001565aabbcc.cfg",
        "/001565aabbcc.cfg.bak",
        "/index.html",
        long.as_str(),
    ];
    for p in hostile {
        assert_eq!(route(p, None), None, "{p:?}");
        assert_eq!(
            route(p, Some("Yealink SIP-T46S 1 00:15:65:aa:bb:cc")),
            None,
            "{p:?}"
        );
    }
    // Junk User-Agents never panic.
    for ua in [
        "",
        "Yealink",
        "Grandstream DevId",
        "snom",
        "Polycom",
        "Cisco-",
        "\u{0}\u{fffd}ΩΩ",
    ] {
        let _ = route("/001565aabbcc.cfg", Some(ua));
        let _ = route("/cfg000b82aabbcc.xml", Some(ua));
    }
}

mod from_store {
    use super::*;
    use selfprov::phoneprov::{BuildError, StoreLine};
    use selfprov::store::{
        Device, DeviceLine, DeviceState, DeviceTemplate, DeviceType, Line, NewDeviceTemplate,
        NewLine, Protocol, SipEndpoint, SpeedDial,
    };
    use std::time::SystemTime;

    fn line(id: i64, number: &str, cid: &str) -> (Line, SipEndpoint) {
        (
            Line {
                id,
                spec: NewLine {
                    number: number.into(),
                    caller_id_name: cid.into(),
                    label: format!("L{number}"),
                    ..Default::default()
                },
                user_ids: vec![1],
                sip_endpoint_id: Some(id + 100),
                device_ids: vec![7],
                created_at: SystemTime::UNIX_EPOCH,
            },
            SipEndpoint {
                id: id + 100,
                auth_username: format!("u{id}"),
                password: format!("secret{id}"),
                transport: Transport::Tcp,
                digest_required: true,
                line_id: Some(id),
                created_at: SystemTime::UNIX_EPOCH,
            },
        )
    }

    fn device(lines: &[(u32, i64, &str, &str)], device_type: DeviceType) -> Device {
        Device {
            id: 7,
            mac: Some("001565AABBCC".into()),
            device_name: None,
            vendor: Some("Yealink".into()),
            model: Some("T46S".into()),
            firmware: None,
            user_agent: None,
            sip_identity: "x".into(),
            owner: Some("jdoe".into()),
            owner_id: Some(1),
            state: DeviceState::Provisioning,
            protocol: Protocol::Sip,
            device_type,
            description: String::new(),
            template_id: Some(3),
            lines: lines
                .iter()
                .map(|&(position, id, number, label)| DeviceLine {
                    position,
                    number: number.into(),
                    line_id: Some(id),
                    label: label.into(),
                })
                .collect(),
            created_at: SystemTime::UNIX_EPOCH,
            last_seen: SystemTime::UNIX_EPOCH,
            autoreg_number: None,
            resync_at: None,
            resync_outcome: None,
            config_fetched_at: None,
            last_ip: None,
        }
    }

    fn template() -> DeviceTemplate {
        DeviceTemplate {
            id: 3,
            spec: NewDeviceTemplate {
                name: "t".into(),
                line_keys: 3,
                speed_dials: vec![SpeedDial {
                    position: 1,
                    number: "8000".into(),
                    label: String::new(),
                }],
                timezone: "Europe/Paris".into(),
                ntp_server: Some("ntp.example.com".into()),
                registrar_address: Some("pbx.example.com".into()),
                registrar_port: 5070,
                proxy_address: Some("sbc.example.com".into()),
                proxy_port: 5080,
                ..Default::default()
            },
        }
    }

    #[test]
    fn builds_lines_from_device_lines_and_endpoints() {
        let (l1, e1) = line(11, "1001", "John Doe");
        let (l2, e2) = line(12, "1002", "");
        let d = device(
            &[(2, 12, "1002", ""), (1, 11, "1001", "1001 - John")],
            DeviceType::Advanced,
        );
        let sl = [
            StoreLine {
                line: &l2,
                endpoint: &e2,
            },
            StoreLine {
                line: &l1,
                endpoint: &e1,
            },
        ];
        let t = template();
        let cfg = PhoneConfig::from_store(&d, &sl, Some(&t), &server()).unwrap();
        assert_eq!(cfg.device.vendor, Some(Vendor::Yealink));
        assert_eq!(cfg.lines.len(), 2);
        let a = &cfg.lines[0];
        assert_eq!(
            (
                a.position,
                a.number.as_str(),
                a.display_name.as_str(),
                a.label.as_str()
            ),
            (1, "1001", "John Doe", "1001 - John")
        );
        assert_eq!(
            (a.auth_username.as_str(), a.password.as_str()),
            ("u11", "secret11")
        );
        assert_eq!(
            (a.registrar_host.as_str(), a.registrar_port),
            ("pbx.example.com", 5070)
        );
        assert_eq!(a.transport, Transport::Tcp);
        assert_eq!(a.proxy, Some(("sbc.example.com".into(), 5080)));
        // Empty caller ID name and device-line label fall back to the line's label / number.
        let b = &cfg.lines[1];
        assert_eq!(
            (b.display_name.as_str(), b.label.as_str()),
            ("1002", "L1002")
        );
        assert_eq!(cfg.line_keys, 3);
        assert_eq!(cfg.speed_dials[0].label, "8000");
        assert_eq!(cfg.timezone, "Europe/Paris");

        let kv = parse_cfg(
            &Renderer::new()
                .unwrap()
                .render(&FileKind::YealinkDevice, &cfg)
                .unwrap(),
        );
        assert_eq!(kv["account.1.outbound_proxy.1.address"], "sbc.example.com");
        assert_eq!(kv["account.2.sip_server.1.transport_type"], "1");
        assert_eq!(kv["linekey.4.value"], "8000");

        // No template: lines register with selfprov itself.
        let cfg = PhoneConfig::from_store(&d, &sl, None, &server()).unwrap();
        assert_eq!(cfg.lines[0].registrar_host, "selfprov.example.net");
        assert_eq!(cfg.lines[0].proxy, None);
    }

    #[test]
    fn a_pbx_serves_the_lines_in_every_vendors_file() {
        let (l1, e1) = line(11, "1001", "John Doe");
        let d = device(&[(1, 11, "1001", "")], DeviceType::Advanced);
        let sl = [StoreLine {
            line: &l1,
            endpoint: &e1,
        }];
        let mut with_pbx = server();
        with_pbx.pbx = Some(selfprov::pbx::LineRegistrar {
            host: "10.9.8.7".into(),
            port: 5070,
            proxy: Some(("10.9.8.6".into(), 5080)),
        });
        // No template registrar: the PBX's, with the account its connector made (user =
        // the number) and its outbound proxy.
        let cfg = PhoneConfig::from_store(&d, &sl, None, &with_pbx).unwrap();
        let a = &cfg.lines[0];
        assert_eq!(
            (a.registrar_host.as_str(), a.registrar_port),
            ("10.9.8.7", 5070)
        );
        assert_eq!(
            (a.auth_username.as_str(), a.password.as_str()),
            ("1001", "secret11")
        );
        assert_eq!(a.proxy, Some(("10.9.8.6".into(), 5080)));
        let r = Renderer::new().unwrap();
        for kind in [
            FileKind::CiscoDevice,
            FileKind::YealinkDevice,
            FileKind::PolycomUser,
            FileKind::GrandstreamDevice,
            FileKind::SnomDevice,
        ] {
            let text = r.render(&kind, &cfg).unwrap();
            assert!(
                text.contains("10.9.8.7"),
                "{kind:?} names the PBX registrar:\n{text}"
            );
            assert!(text.contains("5070"), "{kind:?} names its port:\n{text}");
            assert!(!text.contains("selfprov.example.net"), "{kind:?}:\n{text}");
            assert!(
                !text.contains("u11"),
                "{kind:?} uses the number as digest user:\n{text}"
            );
        }
        // A template that names a registrar still wins over the PBX's.
        let t = template();
        let cfg = PhoneConfig::from_store(&d, &sl, Some(&t), &with_pbx).unwrap();
        assert_eq!(cfg.lines[0].registrar_host, "pbx.example.com");
        assert_eq!(cfg.lines[0].auth_username, "u11");
    }

    #[test]
    fn refuses_incomplete_or_oversized_devices() {
        let (l1, e1) = line(11, "1001", "A");
        let sl = [StoreLine {
            line: &l1,
            endpoint: &e1,
        }];
        let d = device(
            &[(1, 11, "1001", ""), (2, 12, "1002", "")],
            DeviceType::Advanced,
        );
        assert_eq!(
            PhoneConfig::from_store(&d, &sl, None, &server()),
            Err(BuildError::MissingLine { position: 2 })
        );
        let d = device(
            &[(1, 11, "1001", ""), (1, 11, "1001", "")],
            DeviceType::Advanced,
        );
        assert_eq!(
            PhoneConfig::from_store(&d, &sl, None, &server()),
            Err(BuildError::DuplicatePosition { position: 1 })
        );
        let d = device(
            &[(1, 11, "1001", ""), (2, 11, "1001", "")],
            DeviceType::Basic,
        );
        assert!(matches!(
            PhoneConfig::from_store(&d, &sl, None, &server()),
            Err(BuildError::TooManyLines { max: 1, .. })
        ));
    }
}
