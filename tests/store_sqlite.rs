//! The store on SQLite files in temporary folders: schema and migrations, users, binding phones
//! (lookup order, idempotence, refusals, rollback, concurrency), the audit trail; and the whole
//! backend-independent suite (`store_suite/`), which `store_postgres.rs` runs on PostgreSQL.

#[macro_use]
mod store_suite;
store_suite_tests!(sqlite);

use selfprov::provisioning::DeviceIdentity;
use selfprov::store::{AuditOutcome, AuthMethod, DeviceState, NewUser, Store, StoreError};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use std::path::{Path, PathBuf};
use std::str::FromStr;

struct TestDb {
    _dir: tempfile::TempDir,
    path: PathBuf,
    url: String,
}

fn test_db() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    // A nested folder that does not exist yet: open() must create it.
    let path = dir.path().join("data").join("nested").join("selfprov.db");
    let url = format!("sqlite://{}", path.display());
    TestDb {
        _dir: dir,
        path,
        url,
    }
}

async fn raw(path: &Path) -> sqlx::SqliteConnection {
    SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn count(path: &Path, sql: &'static str) -> i64 {
    let mut c = raw(path).await;
    let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap();
    c.close().await.unwrap();
    n
}

fn user(user_id: &str, extension: &str, selfprov_id: Option<&str>) -> NewUser {
    NewUser {
        user_id: user_id.into(),
        selfprov_id: selfprov_id.map(Into::into),
        first_name: "Jane".into(),
        last_name: "Doe".into(),
        extension: extension.into(),
        pin_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g".into()),
        selfprov_enabled: true,
    }
}

fn cisco(mac: &str) -> DeviceIdentity {
    DeviceIdentity {
        mac: Some(mac.into()),
        device_name: Some(format!("SEP{mac}")),
        vendor: Some("Cisco".into()),
        model: Some("CP8851".into()),
        firmware: Some("14.2.1".into()),
        user_agent: Some("Cisco-CP8851/14.2.1".into()),
        sip_identity: "autoprov@pbx.example.com".into(),
        contact: None,
    }
}

fn yealink(sip_identity: &str) -> DeviceIdentity {
    DeviceIdentity {
        vendor: Some("Yealink".into()),
        model: Some("SIP-T46S".into()),
        firmware: Some("66.86.0.15".into()),
        user_agent: Some("Yealink SIP-T46S 66.86.0.15".into()),
        sip_identity: sip_identity.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn open_creates_folders_uses_wal_and_migrates_once() {
    let db = test_db();
    let store = Store::open(&db.url).await.unwrap();
    assert!(db.path.exists());
    assert_eq!(store.backend_name(), "sqlite");
    assert_eq!(store.schema_version().await.unwrap(), 4);
    store.close().await;

    let mut c = raw(&db.path).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    c.close().await.unwrap();

    // Reopening applies nothing twice and keeps the data.
    let store = Store::open(&db.url).await.unwrap();
    store.add_user(user("jdoe", "1001", None)).await.unwrap();
    store.close().await;
    let store = Store::open(&db.url).await.unwrap();
    assert_eq!(store.list_users().await.unwrap().len(), 1);
    assert_eq!(
        count(&db.path, "SELECT COUNT(*) FROM selfprov_schema").await,
        4
    );
}

#[tokio::test]
async fn concurrent_first_opens_migrate_exactly_once() {
    let db = test_db();
    // Six at once on a new file (a server and CLI commands started together): each must open
    // (SQLite answers the WAL switch with SQLITE_BUSY at once; the store retries it).
    let (a, b, c, d, e, f) = tokio::join!(
        Store::open(&db.url),
        Store::open(&db.url),
        Store::open(&db.url),
        Store::open(&db.url),
        Store::open(&db.url),
        Store::open(&db.url)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    for other in [c, d, e, f] {
        other.unwrap().close().await;
    }
    a.add_user(user("u1", "1001", None)).await.unwrap();
    assert_eq!(b.list_users().await.unwrap().len(), 1);
    assert_eq!(
        count(&db.path, "SELECT COUNT(*) FROM selfprov_schema").await,
        4
    );
}

#[tokio::test]
async fn newer_or_edited_schema_is_refused() {
    let db = test_db();
    Store::open(&db.url).await.unwrap().close().await;
    let mut c = raw(&db.path).await;
    sqlx::query("UPDATE selfprov_schema SET checksum = 'edited' WHERE version = 1")
        .execute(&mut c)
        .await
        .unwrap();
    let e = Store::open(&db.url).await.unwrap_err();
    assert!(matches!(e, StoreError::Migration(_)), "{e}");
    assert!(
        e.to_string().contains("was changed after it was applied"),
        "{e}"
    );

    sqlx::query("INSERT INTO selfprov_schema VALUES (99, 'future', 'x', 0)")
        .execute(&mut c)
        .await
        .unwrap();
    let e = Store::open(&db.url).await.unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::SchemaTooNew {
                found: 99,
                supported: 4
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("upgrade selfprov"), "{e}");
    c.close().await.unwrap();
}

#[tokio::test]
async fn unsupported_and_unopenable_urls() {
    let e = Store::open("mysql://localhost/x").await.unwrap_err();
    assert!(matches!(e, StoreError::UnsupportedUrl(_)), "{e}");
    // The parent "folder" is a file: creating the folder fails with a helpful message.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plainfile");
    std::fs::write(&file, b"x").unwrap();
    let e = Store::open(&format!("sqlite://{}/db.sqlite", file.display()))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Open { .. }), "{e}");
    assert!(e.to_string().contains("cannot create folder"), "{e}");
}

#[tokio::test]
async fn in_memory_store_works() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    store.add_user(user("mem", "1", None)).await.unwrap();
    assert_eq!(store.list_users().await.unwrap()[0].user_id, "mem");
}

#[tokio::test]
async fn users_add_list_get_remove() {
    let db = test_db();
    let store = Store::open(&db.url).await.unwrap();
    let a = store
        .add_user(user("jdoe", "1001", Some("4711")))
        .await
        .unwrap();
    assert_eq!(a.user_id, "jdoe");
    assert!(a.selfprov_enabled);
    let mut b = user("asmith", "1002", None);
    b.pin_hash = None;
    b.selfprov_enabled = false;
    store.add_user(b).await.unwrap();

    let users = store.list_users().await.unwrap();
    assert_eq!(
        users.iter().map(|u| u.user_id.as_str()).collect::<Vec<_>>(),
        ["asmith", "jdoe"]
    );
    let got = store.get_user("jdoe").await.unwrap().unwrap();
    assert_eq!(got, a, "read back equals what add_user returned");
    assert_eq!(
        store.get_user("asmith").await.unwrap().unwrap().pin_hash,
        None
    );
    assert!(store.get_user("nobody").await.unwrap().is_none());

    assert!(store.remove_user("jdoe").await.unwrap());
    assert!(!store.remove_user("jdoe").await.unwrap());
    assert!(store.get_user("jdoe").await.unwrap().is_none());
}

#[tokio::test]
async fn duplicate_and_ambiguous_users_are_refused_with_reasons() {
    let db = test_db();
    let store = Store::open(&db.url).await.unwrap();
    store
        .add_user(user("jdoe", "1001", Some("4711")))
        .await
        .unwrap();
    store.add_user(user("1234", "1003", None)).await.unwrap();

    let e = store
        .add_user(user("jdoe", "1002", None))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::UserExists(u) if u == "jdoe"),
        "{e}"
    );
    assert!(e.is_conflict());
    assert!(e.to_string().contains("user jdoe already exists"), "{e}");

    let e = store
        .add_user(user("other", "1001", None))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::ExtensionTaken { user, .. } if user == "jdoe"),
        "{e}"
    );

    let e = store
        .add_user(user("other", "1002", Some("4711")))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::SelfProvIdTaken { user, .. } if user == "jdoe"),
        "{e}"
    );

    // A self-provisioning ID equal to someone's user ID, or the reverse, is ambiguous at the IVR.
    let e = store
        .add_user(user("other", "1002", Some("1234")))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::AmbiguousId { user, .. } if user == "1234"),
        "{e}"
    );
    let e = store
        .add_user(user("4711", "1002", None))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::AmbiguousId { user, .. } if user == "jdoe"),
        "{e}"
    );

    for (bad, field) in [
        (user("x", "10a1", None), "extension"),
        (user("x", "", None), "extension"),
        (user("x", "1009", Some("12#")), "self-provisioning ID"),
        (user("", "1009", None), "user ID"),
        (user("has space", "1009", None), "user ID"),
    ] {
        let e = store.add_user(bad).await.unwrap_err();
        assert!(
            matches!(&e, StoreError::Invalid { field: f, .. } if *f == field),
            "{e}"
        );
    }
    let mut plain = user("x", "1009", None);
    plain.pin_hash = Some("1234".into());
    assert!(matches!(
        store.add_user(plain).await,
        Err(StoreError::Invalid {
            field: "PIN hash",
            ..
        })
    ));

    // Nothing of the refused users was written.
    assert_eq!(store.list_users().await.unwrap().len(), 2);
}

#[tokio::test]
async fn ivr_lookup_by_selfprov_id_or_user_id() {
    let db = test_db();
    let store = Store::open(&db.url).await.unwrap();
    store
        .add_user(user("jdoe", "1001", Some("4711")))
        .await
        .unwrap();
    store.add_user(user("5555", "1002", None)).await.unwrap();
    assert_eq!(
        store
            .find_user_for_ivr("4711")
            .await
            .unwrap()
            .unwrap()
            .user_id,
        "jdoe"
    );
    assert_eq!(
        store
            .find_user_for_ivr("5555")
            .await
            .unwrap()
            .unwrap()
            .user_id,
        "5555"
    );
    assert!(
        store.find_user_for_ivr("1001").await.unwrap().is_none(),
        "an extension is not an ID"
    );
    assert!(store.find_user_for_ivr("471").await.unwrap().is_none());
    assert!(store.find_user_for_ivr("").await.unwrap().is_none());
    assert!(
        store.find_user_for_ivr("jdoe").await.unwrap().is_none(),
        "only digits are typed"
    );
    assert!(store
        .find_user_for_ivr("4711' OR 1=1 --")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn bind_creates_device_with_line_one_and_audits() {
    let db = test_db();
    let store = Store::open(&db.url).await.unwrap();
    assert!(store.list_devices().await.unwrap().is_empty());
    store.add_user(user("jdoe", "1001", None)).await.unwrap();

    let d = store
        .bind_device(&cisco("0022905C8E3A"), "jdoe", AuthMethod::Pin)
        .await
        .unwrap();
    assert_eq!(d.mac.as_deref(), Some("0022905C8E3A"));
    assert_eq!(d.device_name.as_deref(), Some("SEP0022905C8E3A"));
    assert_eq!(d.vendor.as_deref(), Some("Cisco"));
    assert_eq!(d.owner.as_deref(), Some("jdoe"));
    assert_eq!(d.state, DeviceState::Provisioning);
    assert_eq!(d.lines.len(), 1);
    assert_eq!(
        (d.lines[0].position, d.lines[0].number.as_str()),
        (1, "1001")
    );

    let listed = store.list_devices().await.unwrap();
    assert_eq!(listed, vec![d.clone()]);

    let audit = store.list_audit(10).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].outcome, "bound");
    assert_eq!(audit[0].device, "0022905C8E3A");
    assert_eq!(audit[0].device_id, Some(d.id));
    assert_eq!(audit[0].user_id.as_deref(), Some("jdoe"));
    assert_eq!(audit[0].auth_method, Some(AuthMethod::Pin));

    assert!(store
        .set_device_state(d.id, DeviceState::Provisioned)
        .await
        .unwrap());
    assert!(!store
        .set_device_state(d.id + 100, DeviceState::Provisioned)
        .await
        .unwrap());
    assert_eq!(
        store.get_device(d.id).await.unwrap().unwrap().state,
        DeviceState::Provisioned
    );
}

#[tokio::test]
async fn binding_again_to_the_same_user_is_idempotent() {
    let db = test_db();
    let store = Store::open(&db.url).await.unwrap();
    store.add_user(user("jdoe", "1001", None)).await.unwrap();
    let first = store
        .bind_device(&cisco("0022905C8E3A"), "jdoe", AuthMethod::Pin)
        .await
        .unwrap();
    store
        .set_device_state(first.id, DeviceState::Provisioned)
        .await
        .unwrap();

    // Same phone, new firmware, no device name this time: found by MAC and updated.
    let mut again = cisco("0022905C8E3A");
    again.firmware = Some("14.3.1".into());
    again.device_name = None;
    let second = store
        .bind_device(&again, "jdoe", AuthMethod::AdminCode)
        .await
        .unwrap();
    assert_eq!(second.id, first.id);
    assert_eq!(second.firmware.as_deref(), Some("14.3.1"));
    assert_eq!(
        second.device_name.as_deref(),
        Some("SEP0022905C8E3A"),
        "kept when not re-sent"
    );
    assert_eq!(second.state, DeviceState::Provisioning, "configured again");
    assert_eq!(second.lines, first.lines);
    assert!(second.last_seen >= first.last_seen);
    assert_eq!(count(&db.path, "SELECT COUNT(*) FROM devices").await, 1);
    assert_eq!(
        count(&db.path, "SELECT COUNT(*) FROM device_lines").await,
        1
    );
}

#[tokio::test]
async fn phone_of_another_user_is_refused_and_audited() {
    let db = test_db();
    let store = Store::open(&db.url).await.unwrap();
    store.add_user(user("jdoe", "1001", None)).await.unwrap();
    store.add_user(user("asmith", "1002", None)).await.unwrap();
    let d = store
        .bind_device(&cisco("0022905C8E3A"), "jdoe", AuthMethod::Pin)
        .await
        .unwrap();

    let mut other_fw = cisco("0022905C8E3A");
    other_fw.firmware = Some("99".into());
    let e = store
        .bind_device(&other_fw, "asmith", AuthMethod::Pin)
        .await
        .unwrap_err();
    match &e {
        StoreError::AlreadyBound { device, owner } => {
            assert_eq!(device, "0022905C8E3A");
            assert_eq!(owner, "jdoe");
        }
        other => panic!("expected AlreadyBound, got {other}"),
    }
    assert!(e.is_conflict());
    // Untouched: owner, line, firmware.
    assert_eq!(store.get_device(d.id).await.unwrap().unwrap(), d);
    let audit = store.list_audit(10).await.unwrap();
    assert_eq!(audit[0].outcome, "already-bound");
    assert_eq!(audit[0].user_id.as_deref(), Some("asmith"));
    assert_eq!(audit[0].device_id, Some(d.id));
}

#[tokio::test]
async fn unknown_or_disabled_user_binds_nothing() {
    let db = test_db();
    let store = Store::open(&db.url).await.unwrap();
    let mut off = user("off", "1005", None);
    off.selfprov_enabled = false;
    store.add_user(off).await.unwrap();
    let e = store
        .bind_device(&cisco("0022905C8E3A"), "ghost", AuthMethod::None)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::UnknownUser(_)), "{e}");
    let e = store
        .bind_device(&cisco("0022905C8E3A"), "off", AuthMethod::None)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::UserDisabled(_)), "{e}");
    assert!(store.list_devices().await.unwrap().is_empty());
    let outcomes: Vec<String> = store
        .list_audit(10)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.outcome)
        .collect();
    assert_eq!(outcomes, ["user-disabled", "unknown-user"]);
    let e = store
        .bind_device(&DeviceIdentity::default(), "off", AuthMethod::None)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NoIdentity), "{e}");
    let bad_mac = DeviceIdentity {
        mac: Some("00:11:22:33:44:55".into()),
        ..yealink("x@y")
    };
    assert!(matches!(
        store.bind_device(&bad_mac, "off", AuthMethod::None).await,
        Err(StoreError::Invalid { .. })
    ));
}

#[tokio::test]
async fn lookup_order_mac_then_device_name_then_sip_identity() {
    let db = test_db();
    let store = Store::open(&db.url).await.unwrap();
    store.add_user(user("jdoe", "1001", None)).await.unwrap();
    store.add_user(user("asmith", "1002", None)).await.unwrap();

    // Known first by device name only; later the MAC shows: the same row, MAC filled in.
    let by_name = DeviceIdentity {
        device_name: Some("SEP00AABBCCDDEE".into()),
        ..yealink("2001@pbx")
    };
    let d1 = store
        .bind_device(&by_name, "jdoe", AuthMethod::Pin)
        .await
        .unwrap();
    let d1b = store
        .bind_device(&cisco("00AABBCCDDEE"), "jdoe", AuthMethod::Pin)
        .await
        .unwrap();
    assert_eq!(d1b.id, d1.id);
    assert_eq!(d1b.mac.as_deref(), Some("00AABBCCDDEE"));

    // Phones without hardware IDs are known by their SIP identity.
    let y = store
        .bind_device(&yealink("ap1@pbx"), "asmith", AuthMethod::Pin)
        .await
        .unwrap();
    assert_eq!(
        store
            .bind_device(&yealink("ap1@pbx"), "asmith", AuthMethod::Pin)
            .await
            .unwrap()
            .id,
        y.id
    );

    // A phone WITH a MAC sharing that autoprov account is a different phone, not y.
    let mut shared = cisco("001122334455");
    shared.device_name = None;
    shared.sip_identity = "ap1@pbx".into();
    let c = store
        .bind_device(&shared, "jdoe", AuthMethod::Pin)
        .await
        .unwrap();
    assert_ne!(c.id, y.id);
    assert_eq!(
        store
            .get_device(y.id)
            .await
            .unwrap()
            .unwrap()
            .owner
            .as_deref(),
        Some("asmith")
    );

    // A device name seen on a phone with a different MAC does not capture that phone.
    let clash = DeviceIdentity {
        mac: Some("0000AA000001".into()),
        device_name: Some("SEP00AABBCCDDEE".into()),
        ..yealink("z@pbx")
    };
    let c2 = store
        .bind_device(&clash, "asmith", AuthMethod::Pin)
        .await
        .unwrap();
    assert_ne!(c2.id, d1.id);
    assert_eq!(store.list_devices().await.unwrap().len(), 4);
}

#[tokio::test]
async fn removing_a_user_unbinds_their_phones() {
    let db = test_db();
    let store = Store::open(&db.url).await.unwrap();
    store.add_user(user("jdoe", "1001", None)).await.unwrap();
    let d = store
        .bind_device(&cisco("0022905C8E3A"), "jdoe", AuthMethod::Pin)
        .await
        .unwrap();
    assert!(store.remove_user("jdoe").await.unwrap());
    let after = store.get_device(d.id).await.unwrap().unwrap();
    assert_eq!(after.owner, None);
    assert!(after.lines.is_empty());
    assert_eq!(after.state, DeviceState::Autoprov);
    let audit = store.list_audit(1).await.unwrap();
    assert_eq!(
        (audit[0].outcome.as_str(), audit[0].user_id.as_deref()),
        ("unbound", Some("jdoe"))
    );

    // The phone is free again: another user can take it.
    store.add_user(user("asmith", "1002", None)).await.unwrap();
    let rebound = store
        .bind_device(&cisco("0022905C8E3A"), "asmith", AuthMethod::Pin)
        .await
        .unwrap();
    assert_eq!(rebound.id, d.id);
    assert_eq!(rebound.lines[0].number, "1002");

    assert!(store.unbind_device(d.id, "admin request").await.unwrap());
    assert!(!store.unbind_device(d.id + 1000, "none").await.unwrap());
    assert_eq!(store.get_device(d.id).await.unwrap().unwrap().owner, None);
}

#[tokio::test]
async fn failure_mid_bind_rolls_everything_back() {
    let db = test_db();
    let store = Store::open(&db.url).await.unwrap();
    store.add_user(user("jdoe", "1001", None)).await.unwrap();
    // Make the last write of the bind (after the device row is created) fail.
    let mut c = raw(&db.path).await;
    sqlx::query(
        "CREATE TRIGGER fail_lines BEFORE INSERT ON device_lines BEGIN SELECT RAISE(ABORT, 'injected'); END",
    )
    .execute(&mut c)
    .await
    .unwrap();
    let e = store
        .bind_device(&cisco("0022905C8E3A"), "jdoe", AuthMethod::Pin)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("injected"), "{e}");
    assert_eq!(
        count(&db.path, "SELECT COUNT(*) FROM devices").await,
        0,
        "no half-written device"
    );
    assert_eq!(
        count(&db.path, "SELECT COUNT(*) FROM audit_events").await,
        0
    );
    sqlx::query("DROP TRIGGER fail_lines")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    store
        .bind_device(&cisco("0022905C8E3A"), "jdoe", AuthMethod::Pin)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_binds_of_one_new_phone_make_one_device() {
    let db = test_db();
    // Two stores on one file: like the server and a second process at once.
    let a = Store::open(&db.url).await.unwrap();
    let b = Store::open(&db.url).await.unwrap();
    a.add_user(user("jdoe", "1001", None)).await.unwrap();
    a.add_user(user("asmith", "1002", None)).await.unwrap();

    for round in 0..5u8 {
        let mac = format!("0022905C8E{round:02X}");
        // Same user twice: both succeed, one row.
        let (r1, r2) = tokio::join!(
            tokio::spawn({
                let (a, id) = (a.clone(), cisco(&mac));
                async move { a.bind_device(&id, "jdoe", AuthMethod::Pin).await }
            }),
            tokio::spawn({
                let (b, id) = (b.clone(), cisco(&mac));
                async move { b.bind_device(&id, "jdoe", AuthMethod::Pin).await }
            }),
        );
        let (d1, d2) = (r1.unwrap().unwrap(), r2.unwrap().unwrap());
        assert_eq!(d1.id, d2.id, "round {round}");
    }
    assert_eq!(count(&db.path, "SELECT COUNT(*) FROM devices").await, 5);
    assert_eq!(
        count(&db.path, "SELECT COUNT(*) FROM device_lines").await,
        5
    );

    // Two users racing for one new phone: exactly one wins, the other is refused.
    let mac = "00AA00BB00CC";
    let (r1, r2) = tokio::join!(
        tokio::spawn({
            let (a, id) = (a.clone(), cisco(mac));
            async move { a.bind_device(&id, "jdoe", AuthMethod::Pin).await }
        }),
        tokio::spawn({
            let (b, id) = (b.clone(), cisco(mac));
            async move { b.bind_device(&id, "asmith", AuthMethod::Pin).await }
        }),
    );
    let results = [r1.unwrap(), r2.unwrap()];
    let wins: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(wins.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(StoreError::AlreadyBound { .. }))),
        "{results:?}"
    );
    let devices = a.list_devices().await.unwrap();
    let phone: Vec<_> = devices
        .iter()
        .filter(|d| d.mac.as_deref() == Some(mac))
        .collect();
    assert_eq!(phone.len(), 1);
    assert_eq!(phone[0].owner, wins[0].owner);
    let expected_line = if wins[0].owner.as_deref() == Some("jdoe") {
        "1001"
    } else {
        "1002"
    };
    assert_eq!(phone[0].lines.len(), 1);
    assert_eq!(phone[0].lines[0].number, expected_line);
}

#[tokio::test]
async fn failed_attempts_are_audited_without_digits() {
    let db = test_db();
    let store = Store::open(&db.url).await.unwrap();
    store.add_user(user("jdoe", "1001", None)).await.unwrap();
    // Unknown phone: no device row is created for a failed attempt.
    store
        .record_audit(
            &cisco("0022905C8E3A"),
            Some("jdoe"),
            Some(AuthMethod::Pin),
            AuditOutcome::BadPin,
            "attempt 1 of 3",
        )
        .await
        .unwrap();
    assert!(store.list_devices().await.unwrap().is_empty());
    let d = store
        .bind_device(&cisco("0022905C8E3A"), "jdoe", AuthMethod::Pin)
        .await
        .unwrap();
    store
        .record_audit(
            &cisco("0022905C8E3A"),
            None,
            None,
            AuditOutcome::UnknownUser,
            "",
        )
        .await
        .unwrap();

    let audit = store.list_audit(10).await.unwrap();
    assert_eq!(
        audit.iter().map(|a| a.outcome.as_str()).collect::<Vec<_>>(),
        ["unknown-user", "bound", "bad-pin"]
    );
    assert_eq!(audit[2].device_id, None, "the phone was not known yet");
    assert_eq!(audit[2].detail, "attempt 1 of 3");
    assert_eq!(audit[0].device_id, Some(d.id));
    assert_eq!(audit[0].user_id, None);
    assert_eq!(audit[0].auth_method, None);
    assert_eq!(store.list_audit(1).await.unwrap().len(), 1);
}
