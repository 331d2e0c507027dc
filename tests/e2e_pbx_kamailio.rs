//! End to end with a real Kamailio 5.6 as the site's registrar (`deploy/kamailio/selfprov-pbx.cfg`,
//! Kamailio's own schema on SQLite through `db_sqlite`):
//!
//! - a new phone (SIPp as a Yealink) provisions itself at the IVR; the `kamailio` connector
//!   writes its line's `subscriber` row; the phone's new file names Kamailio as the line's
//!   registrar with the line's number as the digest user, and Kamailio accepts the REGISTER
//!   made with those credentials; the device becomes `provisioned` when that registration shows
//!   in Kamailio's `location` table (`watch_registrations`), not when the file is fetched; a
//!   resync asked for then reaches it through Kamailio;
//!   after an unbinding (API) Kamailio refuses it;
//! - two phones provision themselves from scratch, SIPp as a Yealink and baresip, and their
//!   lines then call each other through Kamailio with audio both ways;
//! - Kamailio's database unreachable while 20 phones are bound: `pbx status` shows the changes
//!   pending; once the database is there every line is delivered once, in order, none lost or
//!   doubled, also across a `kill -9` of selfprov between the bindings and their delivery.

mod common;

use common::audio::{goertzel_power, read_wav};
use common::baresip::{type_keys, wait_registration, Baresip, Registration};
use common::http::{self, api, cfg_value};
use common::kamailio::{create_sqlite_db, Kamailio};
use common::phone::{
    call_ivr_and_take_notify, fetch_guest, keyed_path, register, Guest, YEALINK_MAC, YEALINK_UA,
};
use common::server::{Server, User, JDOE};
use common::sipp::Sipp;
use common::{ports, tail, wait_for};
use std::path::Path;
use std::time::Duration;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Rows of Kamailio's `subscriber` table: (username, domain, password, ha1).
fn subscribers(db: &Path) -> Vec<(String, String, String, String)> {
    rt().block_on(async {
        use sqlx::Connection;
        let Ok(mut c) =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await
        else {
            return Vec::new();
        };
        let rows = sqlx::query_as(
            "SELECT username, domain, password, ha1 FROM subscriber ORDER BY username",
        )
        .fetch_all(&mut c)
        .await
        .unwrap_or_default();
        let _ = c.close().await;
        rows
    })
}

fn pbx_table(kam_db: &Path, registrar: &str, watch: bool) -> (&'static str, String) {
    (
        "[pbx]",
        format!(
            "name = \"kam\"\nkind = \"kamailio\"\nregistrar = \"{registrar}\"\n\
             db_url = \"sqlite://{}\"\nwatch_registrations = {watch}",
            kam_db.display()
        ),
    )
}

fn device_state(server: &Server) -> String {
    server.devices()[0].raw["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn metric(server: &Server, line_start: &str) -> Option<f64> {
    let text = http::request(server.api.unwrap(), "GET", "/metrics", &[]).body;
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn a_phone_provisioned_at_the_ivr_registers_its_line_at_kamailio() {
    let work = tempfile::tempdir().unwrap();
    let kam_db = work.path().join("kamailio.db");
    rt().block_on(create_sqlite_db(&kam_db));
    let kam = Kamailio::registrar(
        work.path(),
        &format!("sqlite://{}", kam_db.display()),
        &["WITH_USRLOC_DB"],
    );
    let mut server = Server::start_with_autoreg(
        r#"["MD5"]"#,
        vec![pbx_table(&kam_db, &kam.addr.to_string(), true)],
    );
    server.add_user(&JDOE);

    // The phone's life at selfprov: guest config, REGISTER, the IVR, the resync NOTIFY.
    let guest = fetch_guest(&server, YEALINK_MAC, YEALINK_UA);
    let port = ports::free_port();
    register(&server, &guest, port);
    let notify = call_ivr_and_take_notify(&server, &guest, port);
    assert!(notify.contains("resync: check-sync"), "{notify}");

    // The line is live at Kamailio: its subscriber row, with the line's number.
    let rows = wait_for(Duration::from_secs(10), || {
        let r = subscribers(&kam_db);
        (!r.is_empty()).then_some(r)
    })
    .unwrap_or_else(|| panic!("no subscriber row:\n{}", tail(&server.log(), 60)));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1.as_str()),
        ("1001", "127.0.0.1")
    );

    // The phone's new file: the line registers at Kamailio, as 1001, with the row's password.
    let r = http::get(
        server.provisioning.unwrap(),
        &keyed_path(&guest, YEALINK_MAC),
        YEALINK_UA,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let get = |k: &str| cfg_value(&r.body, k).unwrap_or_else(|| panic!("no {k}:\n{}", r.body));
    assert_eq!(get("account.1.sip_server.1.address"), "127.0.0.1");
    assert_eq!(
        get("account.1.sip_server.1.port"),
        kam.addr.port().to_string()
    );
    assert_eq!(get("account.1.user_name"), "1001");
    assert_eq!(get("account.1.auth_name"), "1001");
    let password = get("account.1.password");
    assert_eq!(rows[0].2, password, "the row holds the phone's password");
    // The file alone does not make the device provisioned: its line must come up at Kamailio.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(device_state(&server), "provisioning");

    // Kamailio accepts the line's REGISTER with those credentials.
    let line = Guest {
        number: "1001".into(),
        auth_name: "1001".into(),
        password: password.clone(),
        config_url: String::new(),
    };
    let line_port = ports::free_port();
    Sipp::new("phone_register.xml")
        .port(line_port)
        .key("user", &line.number)
        .key("expires", 300)
        .args(&["-au", &line.auth_name, "-ap", &line.password])
        .run(kam.addr, server.dir.path())
        .assert_success("the provisioned line registers at Kamailio");
    let up = wait_for(Duration::from_secs(10), || {
        (device_state(&server) == "provisioned").then_some(())
    });
    assert!(
        up.is_some(),
        "Kamailio's location table shows the line: provisioned ({})\n{}",
        device_state(&server),
        tail(&server.log(), 30)
    );
    assert!(
        metric(
            &server,
            "selfprov_pbx_deliveries_total{connector=\"kam\",result=\"delivered\"}"
        )
        .unwrap_or(0.0)
            >= 2.0,
        "deliveries counted"
    );
    let out = server.cli(&["pbx", "status", "--json"]);
    assert!(out.success(), "pbx status: {}", out.stderr);
    let status: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(status[0]["name"], "kam", "{status:#}");
    assert_eq!(status[0]["pending"], 0, "{status:#}");
    assert!(status[0]["last_success_at"].is_string(), "{status:#}");

    // A resync asked for now reaches the phone through Kamailio: selfprov has no registration
    // of the line, so the NOTIFY goes to 1001@127.0.0.1 at the PBX, which relays it.
    let out = server.cli(&["token", "create", "--name", "e2e"]);
    let token = out.stdout.trim().to_string();
    let id = server.devices()[0].raw["id"].as_i64().unwrap();
    let notify = Sipp::new("phone_notify.xml")
        .port(line_port)
        .timeout_s(20)
        .start(None, server.dir.path());
    std::thread::sleep(Duration::from_millis(500));
    let (status, body) = api(
        server.api.unwrap(),
        "POST",
        &format!("/api/v1/devices/{id}/resync"),
        &token,
    );
    assert_eq!(status, 202, "{body:#}");
    let notify = notify.finish();
    notify.assert_success("the resync NOTIFY through Kamailio");
    assert!(
        notify.logs.contains("resync: check-sync"),
        "{}",
        notify.logs
    );
    let outcome = wait_for(Duration::from_secs(10), || {
        let o = server.devices()[0].raw["resync_outcome"]
            .as_str()?
            .to_string();
        o.contains(" 200 from ").then_some(o)
    });
    assert!(outcome.is_some(), "{:#?}", server.devices()[0].raw);

    // Unbinding the phone (Wazo's GET /devices/{id}/autoprov) revokes the line at Kamailio.
    let (status, body) = api(
        server.api.unwrap(),
        "GET",
        &format!("/api/v1/devices/{id}/autoprov"),
        &token,
    );
    assert_eq!(status, 200, "{body:#}");
    let gone = wait_for(Duration::from_secs(10), || {
        subscribers(&kam_db).is_empty().then_some(())
    });
    assert!(gone.is_some(), "{:?}", subscribers(&kam_db));
    let out = Sipp::new("phone_register_refused.xml")
        .port(ports::free_port())
        .key("user", "1001")
        .key("expires", 300)
        .args(&["-au", "1001", "-ap", &password])
        .run(kam.addr, server.dir.path());
    out.assert_success("Kamailio refuses the unbound phone's REGISTER");
    assert!(out.logs.contains("refused: SIP/2.0 401"), "{}", out.logs);
    server.assert_alive();
    drop(kam);
}

#[test]
fn changes_wait_for_kamailios_database_and_survive_a_kill_9() {
    let work = tempfile::tempdir().unwrap();
    // Not created yet: Kamailio's database is unreachable.
    let kam_db = work.path().join("kamailio.db");
    let mut server = Server::start_with(&common::server::ServerOptions {
        extra: vec![pbx_table(&kam_db, "127.0.0.1:5060", false)],
        ..Default::default()
    });
    // 20 users, each with a phone bound (as the IVR binds them), by the admin CLI's store: a
    // process other than the server writes the outbox rows.
    let store_url = format!(
        "sqlite://{}",
        server.dir.path().join("selfprov.db").display()
    );
    rt().block_on(async {
        let store = selfprov::store::Store::open(&store_url)
            .await
            .unwrap()
            .with_pbx_connectors(vec!["kam".into()]);
        for i in 0..20 {
            store
                .add_user(selfprov::store::NewUser {
                    user_id: format!("u{i}"),
                    first_name: "U".into(),
                    last_name: format!("{i}"),
                    extension: format!("{}", 3000 + i),
                    selfprov_enabled: true,
                    ..Default::default()
                })
                .await
                .unwrap();
            store
                .bind_device(
                    &selfprov::provisioning::DeviceIdentity {
                        mac: Some(format!("0004F2{i:06X}")),
                        sip_identity: format!("p{i}@x"),
                        ..Default::default()
                    },
                    &format!("u{i}"),
                    selfprov::store::AuthMethod::Pin,
                )
                .await
                .unwrap();
        }
        store.close().await;
    });
    // Pending, with the reason, while the database is missing.
    let status = wait_for(Duration::from_secs(10), || {
        let out = server.cli(&["pbx", "status", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
        v[0]["last_error"].is_string().then_some(v)
    })
    .unwrap_or_else(|| panic!("no delivery error reported:\n{}", tail(&server.log(), 40)));
    assert_eq!(
        status[0]["pending"], 40,
        "20 line + 20 device events: {status:#}"
    );
    assert_eq!(
        status[0]["parked"], 0,
        "an unreachable PBX parks nothing: {status:#}"
    );
    let text = server.cli(&["pbx", "status"]).stdout;
    assert!(text.contains("kam") && text.contains("40"), "{text}");

    // selfprov dies without a word; the database comes; selfprov starts again.
    server.kill9_and_restart();
    rt().block_on(create_sqlite_db(&kam_db));
    let rows = wait_for(Duration::from_secs(60), || {
        let r = subscribers(&kam_db);
        (r.len() == 20).then_some(r)
    })
    .unwrap_or_else(|| {
        panic!(
            "not all delivered: {:?}\n{}",
            subscribers(&kam_db),
            tail(&server.log(), 40)
        )
    });
    let users: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let expected: Vec<String> = (0..20).map(|i| format!("{}", 3000 + i)).collect();
    assert_eq!(users, expected, "each line once");
    let drained = wait_for(Duration::from_secs(10), || {
        let out = server.cli(&["pbx", "status", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
        (v[0]["pending"] == 0).then_some(v)
    });
    assert!(drained.is_some(), "the outbox drains");
    server.assert_alive();
}

/// The second user: self-provisioning ID 1002, PIN 5678.
const ASMITH: User = User {
    user_id: "asmith",
    self_provisioning_id: "1002",
    extension: "1002",
    pin: "5678",
    first_name: "Alice",
    last_name: "Smith",
};

/// A mono 16-bit 8 kHz WAV of a `freq` Hz tone at -12 dBFS, `seconds` long.
fn write_tone_wav(path: &Path, freq: f64, seconds: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for n in 0..(8000 * seconds) {
        let t = f64::from(n) / 8000.0;
        let v = 0.25 * (2.0 * std::f64::consts::PI * freq * t).sin();
        w.write_sample((v * f64::from(i16::MAX)) as i16).unwrap();
    }
    w.finalize().unwrap();
}

/// A baresip account line for `number` registering at Kamailio (also its outbound proxy).
fn kamailio_account(kam: &Kamailio, number: &str, password: &str) -> String {
    format!(
        "<sip:{number}@{k}>;auth_user={number};auth_pass={password};regint=60;\
         outbound=\"sip:{k}\";audio_codecs=PCMU/8000/1",
        k = kam.addr
    )
}

/// The line account a provisioned phone's new file gives it: (number, auth name, password,
/// registrar port).
fn new_file_account(
    server: &Server,
    guest: &Guest,
    mac: &str,
    ua: &str,
) -> (String, String, String, String) {
    let r = http::get(server.provisioning.unwrap(), &keyed_path(guest, mac), ua);
    assert_eq!(r.status, 200, "{}", r.body);
    let get = |k: &str| cfg_value(&r.body, k).unwrap_or_else(|| panic!("no {k}:\n{}", r.body));
    (
        get("account.1.user_name"),
        get("account.1.auth_name"),
        get("account.1.password"),
        get("account.1.sip_server.1.port"),
    )
}

/// The tone's share of the recording's energy at `freq` against the other phone's tone.
fn hears(recording: &Path, freq: f64, other: f64) -> bool {
    let m = read_wav(recording);
    // Skip the first half second (jitter buffer, call set-up).
    let x: Vec<f32> = m
        .samples
        .iter()
        .skip(m.rate as usize / 2)
        .copied()
        .collect();
    x.len() > m.rate as usize / 2
        && goertzel_power(&x, m.rate, freq) > 10.0 * goertzel_power(&x, m.rate, other)
        && common::audio::rms_dbfs(&x) > -40.0
}

#[test]
fn two_phones_provisioned_at_the_ivr_call_each_other_through_kamailio() {
    let work = tempfile::tempdir().unwrap();
    let kam_db = work.path().join("kamailio.db");
    rt().block_on(create_sqlite_db(&kam_db));
    let kam = Kamailio::registrar(work.path(), &format!("sqlite://{}", kam_db.display()), &[]);
    let mut server = Server::start_with_autoreg(
        r#"["MD5"]"#,
        vec![pbx_table(&kam_db, &kam.addr.to_string(), false)],
    );
    server.add_user(&JDOE);
    server.add_user(&ASMITH);

    // Phone A, SIPp as a Yealink: guest config, REGISTER, IVR (jdoe), NOTIFY.
    let guest_a = fetch_guest(&server, YEALINK_MAC, YEALINK_UA);
    let port = ports::free_port();
    register(&server, &guest_a, port);
    call_ivr_and_take_notify(&server, &guest_a, port);
    let a = new_file_account(&server, &guest_a, YEALINK_MAC, YEALINK_UA);
    assert_eq!((a.0.as_str(), a.1.as_str()), ("1001", "1001"));
    assert_eq!(
        a.3,
        kam.addr.port().to_string(),
        "A's line registers at Kamailio"
    );

    // Phone B, baresip: its own guest account (another Yealink MAC), the IVR as asmith.
    const MAC_B: &str = "805ec0a1b2c4";
    const UA_B: &str = "Yealink SIP-T46S 66.86.0.15 80:5e:c0:a1:b2:c4";
    let guest_b = fetch_guest(&server, MAC_B, UA_B);
    let dir_b = work.path().join("phone-b");
    std::fs::create_dir_all(&dir_b).unwrap();
    let silence = work.path().join("silence.wav");
    common::audio::write_silence_wav(&silence, 8_000, 120);
    let guest_line = format!(
        "<sip:{n}@{s}>;auth_user={u};auth_pass={p};regint=60;outbound=\"sip:{s}\";\
         audio_codecs=PCMU/8000/1",
        n = guest_b.number,
        u = guest_b.auth_name,
        p = guest_b.password,
        s = server.sip
    );
    let mut phone_b = Baresip::start_with_account(&dir_b, &silence, &guest_line);
    assert_eq!(
        wait_registration(&mut phone_b, Duration::from_secs(15)),
        Registration::Ok,
        "B's guest registration:\n{}",
        tail(&server.log(), 40)
    );
    phone_b.command_ok("dial", &format!("sip:8000@{}", server.sip));
    assert!(
        phone_b
            .wait_event("CALL_ESTABLISHED", Duration::from_secs(10))
            .is_some(),
        "the IVR answers B:\n{}",
        tail(&server.log(), 60)
    );
    std::thread::sleep(Duration::from_millis(3_000));
    type_keys(&mut phone_b, "1002#");
    std::thread::sleep(Duration::from_millis(1_500));
    type_keys(&mut phone_b, "5678#");
    std::thread::sleep(Duration::from_millis(5_500));
    type_keys(&mut phone_b, "1");
    assert!(
        phone_b
            .wait_event("CALL_CLOSED", Duration::from_secs(30))
            .is_some(),
        "the IVR hangs up after B's binding:\n{}",
        tail(&server.log(), 60)
    );
    phone_b.quit();
    let b = new_file_account(&server, &guest_b, MAC_B, UA_B);
    assert_eq!((b.0.as_str(), b.1.as_str()), ("1002", "1002"));

    // Both lines are at Kamailio.
    let rows = wait_for(Duration::from_secs(10), || {
        let r = subscribers(&kam_db);
        (r.len() == 2).then_some(r)
    })
    .unwrap_or_else(|| panic!("{:?}\n{}", subscribers(&kam_db), tail(&server.log(), 40)));
    assert_eq!(rows[0].0, "1001");
    assert_eq!(rows[1].0, "1002");

    // The phones come back with their new files (what the resync does): each registers its
    // line at Kamailio. A's audio side is a softphone with A's line (SIPp cannot play a tone
    // and record at once): it sends 600 Hz, B sends 1000 Hz.
    let tone_a = work.path().join("tone-a.wav");
    let tone_b = work.path().join("tone-b.wav");
    write_tone_wav(&tone_a, 600.0, 60);
    write_tone_wav(&tone_b, 1000.0, 60);
    let dir_a2 = work.path().join("phone-a-line");
    let dir_b2 = work.path().join("phone-b-line");
    std::fs::create_dir_all(&dir_a2).unwrap();
    std::fs::create_dir_all(&dir_b2).unwrap();
    let mut line_a =
        Baresip::start_with_account(&dir_a2, &tone_a, &kamailio_account(&kam, &a.0, &a.2));
    let mut line_b =
        Baresip::start_with_account(&dir_b2, &tone_b, &kamailio_account(&kam, &b.0, &b.2));
    for (who, phone) in [("A", &mut line_a), ("B", &mut line_b)] {
        assert_eq!(
            wait_registration(phone, Duration::from_secs(15)),
            Registration::Ok,
            "{who}'s line registers at Kamailio:\n{}",
            tail(&kam.log(), 40)
        );
    }

    // A calls B's extension through Kamailio; B answers.
    line_a.command_ok("dial", &format!("sip:1002@{}", kam.addr));
    assert!(
        line_b
            .wait_event("CALL_INCOMING", Duration::from_secs(10))
            .is_some(),
        "B rings: A's events {:#?}\n{}",
        line_a.events(),
        tail(&kam.log(), 40)
    );
    line_b.command_ok("accept", "");
    for (who, phone) in [("A", &mut line_a), ("B", &mut line_b)] {
        assert!(
            phone
                .wait_event("CALL_ESTABLISHED", Duration::from_secs(10))
                .is_some(),
            "{who}: call established: {:#?}",
            phone.events()
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    line_a.command_ok("hangup", "");
    assert!(
        line_b
            .wait_event("CALL_CLOSED", Duration::from_secs(10))
            .is_some(),
        "A's BYE reaches B through Kamailio"
    );
    line_a.quit();
    line_b.quit();
    let rec_a = line_a
        .received_recording()
        .expect("A recorded what it heard");
    let rec_b = line_b
        .received_recording()
        .expect("B recorded what it heard");
    assert!(hears(&rec_a, 1000.0, 600.0), "A hears B's 1000 Hz tone");
    assert!(hears(&rec_b, 600.0, 1000.0), "B hears A's 600 Hz tone");
    server.assert_alive();
}
