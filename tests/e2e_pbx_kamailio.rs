//! End to end with a real Kamailio 5.6 as the site's registrar (`deploy/kamailio/selfprov-pbx.cfg`,
//! Kamailio's own schema on SQLite through `db_sqlite`):
//!
//! - a new phone (SIPp as a Yealink) provisions itself at the IVR; the `kamailio` connector
//!   writes its line's `subscriber` row; the phone's new file names Kamailio as the line's
//!   registrar with the line's number as the digest user, and Kamailio accepts the REGISTER
//!   made with those credentials; the device becomes `provisioned` when that registration shows
//!   in Kamailio's `location` table (`watch_registrations`), not when the file is fetched;
//!   after an unbinding (API) Kamailio refuses it;
//! - Kamailio's database unreachable while 20 phones are bound: `pbx status` shows the changes
//!   pending; once the database is there every line is delivered once, in order, none lost or
//!   doubled, also across a `kill -9` of selfprov between the bindings and their delivery.

mod common;

use common::http::{self, api, cfg_value};
use common::kamailio::{create_sqlite_db, Kamailio};
use common::phone::{
    call_ivr_and_take_notify, fetch_guest, keyed_path, register, Guest, YEALINK_MAC, YEALINK_UA,
};
use common::server::{Server, JDOE};
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
    let kam = Kamailio::start(
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
    Sipp::new("phone_register.xml")
        .port(ports::free_port())
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

    // Unbinding the phone (Wazo's GET /devices/{id}/autoprov) revokes the line at Kamailio.
    let out = server.cli(&["token", "create", "--name", "e2e"]);
    let token = out.stdout.trim().to_string();
    let id = server.devices()[0].raw["id"].as_i64().unwrap();
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
