//! The PBX connectors against real receivers, through the delivery worker:
//!
//! - webhook: an HTTP receiver in the test checks each event's HMAC-SHA256 signature, sees the
//!   events in the order the changes were made, and answers the first one 500: it comes again
//!   with the same idempotency key, and the rest follow only after it;
//! - kamailio on PostgreSQL (Kamailio's own schema): rows written and removed;
//! - asterisk-realtime (PostgreSQL): the `ps_aors`, `ps_auths` and `ps_endpoints` rows of a
//!   binding fit Asterisk's schema (types, keys, enum columns) and go with the unbinding; a row
//!   selfprov did not create is left alone and reported by `pbx sync`.

mod common;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use md5::Digest as _;
use selfprov::pbx::{Pbx, PbxConfig};
use selfprov::provisioning::DeviceIdentity;
use selfprov::store::{AuthMethod, NewUser, Store};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn identity(mac: &str) -> DeviceIdentity {
    DeviceIdentity {
        mac: Some(mac.into()),
        sip_identity: format!("{mac}@x"),
        ..Default::default()
    }
}

fn user(id: &str, ext: &str) -> NewUser {
    NewUser {
        user_id: id.into(),
        first_name: "Jane".into(),
        last_name: "Doe".into(),
        extension: ext.into(),
        selfprov_enabled: true,
        ..Default::default()
    }
}

fn pbx(toml_text: &str) -> Arc<Pbx> {
    let cfg: PbxConfig = toml::from_str(toml_text).unwrap();
    cfg.validate().unwrap();
    Arc::new(Pbx::new(&cfg).unwrap())
}

/// (idempotency key, event, signature ok, status answered)
type Seen = Arc<Mutex<Vec<(String, String, bool, u16)>>>;

const SECRET: &str = "0123456789abcdef-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_events_are_signed_ordered_and_retried() {
    let seen: Seen = Arc::default();
    let app = {
        let seen = seen.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let seen = seen.clone();
                async move {
                    let h = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string()
                    };
                    let sig_ok = h("x-selfprov-signature")
                        == selfprov::pbx::webhook::signature(SECRET, &body);
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(v["id"].as_str().unwrap(), h("idempotency-key"));
                    assert_eq!(v["event"].as_str().unwrap(), h("x-selfprov-event"));
                    let mut seen = seen.lock().unwrap();
                    // The very first request fails: the receiver is "down".
                    let status = if seen.is_empty() { 500 } else { 204 };
                    seen.push((
                        h("idempotency-key"),
                        v["event"].as_str().unwrap().to_string(),
                        sig_ok,
                        status,
                    ));
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap()
        .with_pbx_connectors(vec!["hook".into()]);
    store.add_user(user("jdoe", "1001")).await.unwrap();
    store.add_user(user("asmith", "1002")).await.unwrap();
    store
        .bind_device(&identity("0004F2000001"), "jdoe", AuthMethod::Pin)
        .await
        .unwrap();
    store
        .bind_device(&identity("0004F2000002"), "asmith", AuthMethod::Pin)
        .await
        .unwrap();
    let hook = pbx(&format!(
        "name = \"hook\"\nkind = \"webhook\"\nregistrar = \"127.0.0.1:5060\"\n\
         url = \"http://{addr}/hook\"\nsecret = \"{SECRET}\""
    ));
    let worker = tokio::spawn(selfprov::pbx::worker::run(hook, store.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while store.pbx_status("hook").await.unwrap().pending > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not delivered: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.abort();
    let seen = seen.lock().unwrap().clone();
    assert!(seen.iter().all(|s| s.2), "every signature checks: {seen:?}");
    let events: Vec<&str> = seen.iter().map(|s| s.1.as_str()).collect();
    assert_eq!(
        events,
        [
            "line.upserted",
            "line.upserted",
            "device.bound",
            "line.upserted",
            "device.bound"
        ],
        "the refused first event again, then the rest in order"
    );
    assert_eq!(
        seen[0].0, seen[1].0,
        "a retry carries the same idempotency key"
    );
    assert_eq!((seen[0].3, seen[1].3), (500, 204));
    let st = store.pbx_status("hook").await.unwrap();
    assert_eq!((st.pending, st.parked, st.delivered), (0, 0, 4));
}

/// The current password of the device's line 1.
async fn line1_password(store: &Store, d: &selfprov::store::Device) -> String {
    let line = store
        .get_line(d.lines[0].line_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    store
        .get_sip_endpoint(line.sip_endpoint_id.unwrap())
        .await
        .unwrap()
        .unwrap()
        .password
}

/// A new PostgreSQL database on the test server (`SELFPROV_TEST_POSTGRES_URL`): (admin URL,
/// database name, its URL). Dropped by the test with `common::pg::drop_database`.
async fn pg_database(tag: &str) -> (String, String, String) {
    use sqlx::{Connection, PgConnection};
    let admin_url = std::env::var("SELFPROV_TEST_POSTGRES_URL")
        .expect("SELFPROV_TEST_POSTGRES_URL: source scripts/pg-test-env.sh first");
    let name = format!("selfprov_{tag}{}", std::process::id());
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    // Letters, digits and '_' only: safe to splice.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap();
    let url = format!("{base}/{name}");
    (admin_url, name, url)
}

/// Asterisk's realtime tables as its schema (contrib/ast-db-manage) defines the columns the
/// connector writes and reads: `id` VARCHAR(40) keys, the yes/no and auth-type columns as
/// PostgreSQL enum types, the other columns Asterisk has left out.
const ASTERISK_SCHEMA: &str = "
CREATE TYPE ast_bool_values AS ENUM ('0', '1', 'off', 'on', 'false', 'true', 'no', 'yes');
CREATE TYPE pjsip_auth_type_values_v2 AS ENUM ('md5', 'userpass', 'google_oauth');
CREATE TABLE ps_aors (
    id VARCHAR(40) NOT NULL PRIMARY KEY,
    contact VARCHAR(255),
    default_expiration INTEGER,
    mailboxes VARCHAR(80),
    max_contacts INTEGER,
    minimum_expiration INTEGER,
    remove_existing ast_bool_values,
    qualify_frequency INTEGER,
    authenticate_qualify ast_bool_values,
    maximum_expiration INTEGER,
    outbound_proxy VARCHAR(40),
    support_path ast_bool_values
);
CREATE TABLE ps_auths (
    id VARCHAR(40) NOT NULL PRIMARY KEY,
    auth_type pjsip_auth_type_values_v2,
    nonce_lifetime INTEGER,
    md5_cred VARCHAR(40),
    password VARCHAR(80),
    realm VARCHAR(40),
    username VARCHAR(40)
);
CREATE TABLE ps_endpoints (
    id VARCHAR(40) NOT NULL PRIMARY KEY,
    transport VARCHAR(40),
    aors VARCHAR(200),
    auth VARCHAR(40),
    context VARCHAR(40),
    disallow VARCHAR(200),
    allow VARCHAR(200),
    direct_media ast_bool_values,
    mailboxes VARCHAR(40),
    callerid VARCHAR(40)
);
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: `. scripts/pg-test-env.sh`, then `cargo test --test pbx_connectors -- --include-ignored`"]
async fn asterisk_realtime_rows_fit_asterisks_schema() {
    use sqlx::{Connection, PgConnection};
    let (admin_url, name, url) = pg_database("ast").await;
    let mut ast = PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(ASTERISK_SCHEMA)
        .execute(&mut ast)
        .await
        .unwrap();
    // Someone else's endpoint, which selfprov must leave alone.
    sqlx::raw_sql(
        "INSERT INTO ps_endpoints (id, context) VALUES ('1002', 'other'); \
         INSERT INTO ps_auths (id, auth_type, username, password) VALUES ('1002', 'userpass', '1002', 'theirs')",
    )
    .execute(&mut ast)
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap()
        .with_pbx_connectors(vec!["ast".into()]);
    store.add_user(user("jdoe", "1001")).await.unwrap();
    store.add_user(user("asmith", "1002")).await.unwrap();
    let d = store
        .bind_device(&identity("0004F2000001"), "jdoe", AuthMethod::Pin)
        .await
        .unwrap();
    store
        .bind_device(&identity("0004F2000002"), "asmith", AuthMethod::Pin)
        .await
        .unwrap();
    let ast_pbx = pbx(&format!(
        "name = \"ast\"\nkind = \"asterisk-realtime\"\nregistrar = \"127.0.0.1:5060\"\n\
         db_url = \"{url}\"\nmax_contacts = 3\npark_after = 1"
    ));
    let worker = tokio::spawn(selfprov::pbx::worker::run(ast_pbx.clone(), store.clone()));
    // 1002 belongs to someone else: its line is parked at once (park_after = 1), with an
    // error naming it, and the changes after it go on.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let st = store.pbx_status("ast").await.unwrap();
        if st.parked == 1
            && st.pending == 0
            && st.last_error.as_deref().is_some_and(|e| e.contains("1002"))
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{st:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let row: (String, String, String, Option<String>, String) = sqlx::query_as(
        "SELECT e.context, e.allow, e.callerid, e.mailboxes, e.disallow FROM ps_endpoints e \
         WHERE e.id = '1001'",
    )
    .fetch_one(&mut ast)
    .await
    .unwrap();
    assert_eq!(row.0, "default");
    assert_eq!(row.1, "ulaw,alaw");
    assert_eq!(row.2, "\"Jane Doe\" <1001>");
    assert_eq!(row.4, "all");
    let auth: (String, String, String) = sqlx::query_as(
        "SELECT auth_type::text, username, password FROM ps_auths WHERE id = '1001'",
    )
    .fetch_one(&mut ast)
    .await
    .unwrap();
    let password = line1_password(&store, &d).await;
    assert_eq!(auth, ("userpass".into(), "1001".into(), password.clone()));
    let aor: (i32, String) =
        sqlx::query_as("SELECT max_contacts, remove_existing::text FROM ps_aors WHERE id = '1001'")
            .fetch_one(&mut ast)
            .await
            .unwrap();
    assert_eq!(aor, (3, "no".into()));
    let theirs: String = sqlx::query_scalar("SELECT password FROM ps_auths WHERE id = '1002'")
        .fetch_one(&mut ast)
        .await
        .unwrap();
    assert_eq!(
        theirs, "theirs",
        "a row selfprov did not create is left alone"
    );
    let actions = ast_pbx.sync(&store, true).await.unwrap();
    assert!(
        actions.iter().any(
            |a| matches!(a, selfprov::pbx::SyncAction::Conflict { object, .. } if object == "1002")
        ),
        "{actions:?}"
    );

    // jdoe's phone unbound: its endpoint, auth and AOR go.
    worker.abort();
    let parked_or_pending = store.pbx_status("ast").await.unwrap();
    store.unbind_device(d.id, "test").await.unwrap();
    let worker = tokio::spawn(selfprov::pbx::worker::run(ast_pbx.clone(), store.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ps_aors WHERE id = '1001'")
            .fetch_one(&mut ast)
            .await
            .unwrap();
        if n == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "1001 not removed: {parked_or_pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for table in ["ps_endpoints", "ps_auths"] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {table} WHERE id = '1001'"
        )))
        .fetch_one(&mut ast)
        .await
        .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    worker.abort();
    ast.close().await.unwrap();
    common::pg::drop_database(&admin_url, &name).await;
}

/// Kamailio's `subscriber` rows: (username, domain, password, ha1).
async fn subscribers(db: &std::path::Path) -> Vec<(String, String, String, String)> {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let rows = sqlx::query_as(
        "SELECT username, domain, password, ha1 FROM subscriber ORDER BY username, domain",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    c.close().await.unwrap();
    rows
}

async fn kam_exec(db: &std::path::Path, sql: &'static str) {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
    c.close().await.unwrap();
}

/// Runs the worker until the connector's outbox is empty (bounded).
async fn drain(p: &Arc<Pbx>, store: &Store) {
    let worker = tokio::spawn(selfprov::pbx::worker::run(p.clone(), store.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let st = store.pbx_status(p.name()).await.unwrap();
        if st.pending == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{st:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_rows_follow_the_lines_and_sync_mends_hand_edits() {
    let dir = tempfile::tempdir().unwrap();
    let kam_db = dir.path().join("kamailio.db");
    common::kamailio::create_sqlite_db(&kam_db).await;
    // Someone else's account in another domain, and one in ours: never touched.
    kam_exec(
        &kam_db,
        "INSERT INTO subscriber (username, domain, password) VALUES ('1001', 'other.example', 'x'); \
         INSERT INTO subscriber (username, domain, password) VALUES ('9999', 'voice.example', 'y')",
    )
    .await;
    let store = Store::open(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap()
        .with_pbx_connectors(vec!["kam".into()]);
    let kam = pbx(&format!(
        "name = \"kam\"\nkind = \"kamailio\"\nregistrar = \"10.0.0.2:5060\"\n\
         domain = \"voice.example\"\nstore_password = false\ndb_url = \"sqlite://{}\"",
        kam_db.display()
    ));
    store.add_user(user("jdoe", "1001")).await.unwrap();
    store.add_user(user("asmith", "1002")).await.unwrap();
    let a = store
        .bind_device(&identity("0004F2000001"), "jdoe", AuthMethod::Pin)
        .await
        .unwrap();
    store
        .bind_device(&identity("0004F2000002"), "asmith", AuthMethod::Pin)
        .await
        .unwrap();
    drain(&kam, &store).await;
    let rows = subscribers(&kam_db).await;
    let ours: Vec<_> = rows.iter().filter(|r| r.1 == "voice.example").collect();
    assert_eq!(ours.len(), 3, "1001, 1002 and the foreign 9999: {rows:?}");
    let line_a = a.lines[0].line_id.unwrap();
    let pw = line1_password(&store, &a).await;
    let r1001 = ours.iter().find(|r| r.0 == "1001").unwrap();
    assert_eq!(r1001.2, "", "store_password = false: no plain password");
    assert_eq!(
        r1001.3,
        md5::Md5::digest(format!("1001:voice.example:{pw}").as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        "ha1 = MD5(user:realm:password)"
    );

    // A line renumbered: the old account goes, the new one comes.
    let mut spec = store.get_line(line_a).await.unwrap().unwrap().spec;
    spec.number = "1005".into();
    store.update_line(line_a, spec).await.unwrap();
    drain(&kam, &store).await;
    let names: Vec<String> = subscribers(&kam_db)
        .await
        .into_iter()
        .filter(|r| r.1 == "voice.example")
        .map(|r| r.0)
        .collect();
    assert_eq!(names, ["1002", "1005", "9999"]);

    // Hand edits at Kamailio: 1002 deleted, 1005's hash changed.
    kam_exec(
        &kam_db,
        "DELETE FROM subscriber WHERE username = '1002' AND domain = 'voice.example'; \
         UPDATE subscriber SET ha1 = 'tampered' WHERE username = '1005'",
    )
    .await;
    let found = kam.sync(&store, true).await.unwrap();
    let kinds: Vec<String> = found
        .iter()
        .map(|a| {
            serde_json::to_value(a).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds, ["update", "create"], "{found:?}");
    assert!(
        subscribers(&kam_db)
            .await
            .iter()
            .all(|r| r.0 != "1002" || r.1 != "voice.example"),
        "a dry run changes nothing"
    );
    kam.sync(&store, false).await.unwrap();
    assert!(kam.sync(&store, true).await.unwrap().is_empty(), "mended");
    let rows = subscribers(&kam_db).await;
    assert!(rows.iter().any(|r| r.0 == "1002" && r.1 == "voice.example"));
    assert!(rows.iter().all(|r| r.3 != "tampered"));
    assert!(
        rows.iter()
            .any(|r| r.0 == "1001" && r.1 == "other.example" && r.2 == "x")
            && rows.iter().any(|r| r.0 == "9999" && r.2 == "y"),
        "rows selfprov did not create are untouched: {rows:?}"
    );

    // Every phone of a line gone: its account goes, the others stay.
    store.unbind_device(a.id, "test").await.unwrap();
    drain(&kam, &store).await;
    let names: Vec<String> = subscribers(&kam_db)
        .await
        .into_iter()
        .filter(|r| r.1 == "voice.example")
        .map(|r| r.0)
        .collect();
    assert_eq!(names, ["1002", "9999"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: `. scripts/pg-test-env.sh`, then `cargo test --test pbx_connectors -- --include-ignored`"]
async fn kamailio_on_postgresql_gets_its_subscriber_rows() {
    use sqlx::{Connection, PgConnection};
    let (admin_url, name, url) = pg_database("kam").await;
    // Kamailio's own PostgreSQL schema, as Debian's kamailio-postgres-modules ships it.
    common::kamailio::create_pg_schema(&url).await;

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap()
        .with_pbx_connectors(vec!["kam".into()]);
    store.add_user(user("jdoe", "1001")).await.unwrap();
    let d = store
        .bind_device(&identity("0004F2000001"), "jdoe", AuthMethod::Pin)
        .await
        .unwrap();
    let kam = pbx(&format!(
        "name = \"kam\"\nkind = \"kamailio\"\nregistrar = \"127.0.0.1:5060\"\n\
         domain = \"voice.example\"\ndb_url = \"{url}\""
    ));
    drain(&kam, &store).await;
    let mut c = PgConnection::connect(&url).await.unwrap();
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT username, domain, password FROM subscriber")
            .fetch_all(&mut c)
            .await
            .unwrap();
    let password = line1_password(&store, &d).await;
    assert_eq!(
        rows,
        [("1001".to_string(), "voice.example".to_string(), password)]
    );
    assert!(kam.sync(&store, true).await.unwrap().is_empty(), "in step");
    store.unbind_device(d.id, "test").await.unwrap();
    drain(&kam, &store).await;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM subscriber")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 0);
    c.close().await.unwrap();
    common::pg::drop_database(&admin_url, &name).await;
}
