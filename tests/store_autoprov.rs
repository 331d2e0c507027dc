//! Autoregistration and the phone's provisioning life in the store (issue 4): number
//! allocation (order, leading zeros, numbers in use skipped, range full, disabled, races),
//! idempotent autoprov, the registrar's credential lookup, config keys, resync bookkeeping,
//! reset to autoprov, device-type line limits.
//!
//! Every case runs on SQLite, and on PostgreSQL when asked for: the PostgreSQL cases are
//! `#[ignore]`d (run them with `. scripts/pg-test-env.sh` then
//! `cargo test --test store_autoprov -- --include-ignored`); with `CI` set,
//! `postgres_cases_are_not_skipped_in_ci` fails unless `SELFPROV_TEST_POSTGRES_URL` is set, as
//! in `store_postgres.rs`.

#[allow(unused_macros)] // the suite's own test generator is not used here
mod store_suite;

use selfprov::provisioning::DeviceIdentity;
use selfprov::store::{
    is_config_key, AccountKind, AuthMethod, DeviceState, DeviceType, NewDevice, NewLine,
    NewSipEndpoint, Store, StoreError,
};
use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;
use store_suite::{new_user, Ctx, Kind};

/// One `#[tokio::test]` per case and backend.
macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let t = super::Ctx::open(super::Kind::Sqlite).await;
                    super::$case(&t).await;
                    t.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                #[ignore = "needs PostgreSQL: `. scripts/pg-test-env.sh`, then `cargo test --test store_autoprov -- --include-ignored`"]
                async fn $case() {
                    let t = super::Ctx::open(super::Kind::Postgres).await;
                    super::$case(&t).await;
                    t.finish().await;
                }
            )*
        }
    };
}

cases!(
    allocation_order_leading_zeros_and_numbers_in_use,
    disabled_autoreg_creates_nothing,
    full_range_is_refused_and_leaves_nothing,
    autoprov_is_idempotent_and_refuses_bound_devices,
    concurrent_autoprov_of_20_macs_gets_20_numbers,
    sip_accounts_for_guests_and_lines,
    config_fetch_provisions_and_releases_the_guest,
    stale_resyncs_are_flagged,
    reset_to_autoprov_gives_a_new_key_and_guest,
    devices_for_account_and_registration_ip,
    device_type_line_limit,
    registering_with_the_line_account_provisions,
);

/// With `CI` set: the PostgreSQL cases must run, not be skipped.
#[test]
fn postgres_cases_are_not_skipped_in_ci() {
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    if ci {
        assert!(
            std::env::var(store_suite::PG_ENV).is_ok(),
            "CI is set but {} is not: source scripts/pg-test-env.sh before the tests",
            store_suite::PG_ENV
        );
    }
}

const IP: &str = "192.0.2.10";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn set_range(s: &Store, start: Option<&str>, end: Option<&str>) {
    let mut settings = s.get_settings().await.unwrap();
    settings.autoreg_start_dn = start.map(Into::into);
    settings.autoreg_end_dn = end.map(Into::into);
    s.update_settings(settings).await.unwrap();
}

fn mac(i: u32) -> String {
    format!("001565{i:06X}")
}

fn identity(mac: &str) -> DeviceIdentity {
    DeviceIdentity {
        mac: Some(mac.into()),
        vendor: Some("Yealink".into()),
        model: Some("T46S".into()),
        sip_identity: "guest@pbx.example.com".into(),
        ..Default::default()
    }
}

/// A line with a SIP endpoint and a user: ready to go on a device.
async fn ready_line(s: &Store, number: &str, user_id: i64) -> (i64, i64) {
    let line = s
        .create_line(NewLine {
            number: number.into(),
            ..NewLine::default()
        })
        .await
        .unwrap();
    let sip = s
        .create_sip_endpoint(NewSipEndpoint::default())
        .await
        .unwrap();
    s.associate_line_endpoint(line.id, sip.id).await.unwrap();
    s.associate_user_line(user_id, line.id).await.unwrap();
    (line.id, sip.id)
}

async fn allocation_order_leading_zeros_and_numbers_in_use(t: &Ctx) {
    let s = &t.store;
    set_range(s, Some("0100"), Some("0199")).await;
    let mut settings = s.get_settings().await.unwrap();
    settings.ivr_extensions = vec!["0104".into(), "8000".into()];
    s.update_settings(settings).await.unwrap();
    // In use: a line (another context too), a user's extension, an IVR extension.
    s.create_line(NewLine {
        number: "0100".into(),
        ..NewLine::default()
    })
    .await
    .unwrap();
    s.create_line(NewLine {
        number: "0102".into(),
        context: "other".into(),
        ..NewLine::default()
    })
    .await
    .unwrap();
    s.add_user(new_user("jdoe", "0103")).await.unwrap();
    // Same digits, other width: not a clash.
    s.create_line(NewLine {
        number: "101".into(),
        ..NewLine::default()
    })
    .await
    .unwrap();

    let mut got = Vec::new();
    for i in 0..3 {
        let a = s
            .autoprov_device(&mac(i), "yealink", Some("T46S"), Some("Yealink SIP-T46S"))
            .await
            .unwrap();
        assert!(a.created);
        assert_eq!(a.device.state, DeviceState::Autoprov);
        assert_eq!(a.device.mac.as_deref(), Some(mac(i).as_str()));
        assert_eq!(a.device.vendor.as_deref(), Some("yealink"));
        assert_eq!(a.device.model.as_deref(), Some("T46S"));
        assert_eq!(a.device.user_agent.as_deref(), Some("Yealink SIP-T46S"));
        assert_eq!(
            a.device.autoreg_number.as_deref(),
            Some(a.account.number.as_str())
        );
        assert!(a.device.owner.is_none() && a.device.lines.is_empty());
        assert!(is_config_key(&a.config_key), "{}", a.config_key);
        assert!(a.account.password.len() >= 20);
        assert_ne!(a.account.auth_username, a.account.number);
        // The settings' autoregistration template is applied.
        assert_eq!(
            a.device.template_id,
            s.get_settings().await.unwrap().autoreg_device_template_id
        );
        // Secrets stay out of Debug and of the device's JSON.
        let dbg = format!("{a:?}");
        assert!(!dbg.contains(&a.account.password) && !dbg.contains(&a.config_key));
        let json = serde_json::to_string(&a.device).unwrap();
        assert!(!json.contains(&a.config_key) && !json.contains(&a.account.password));
        got.push(a);
    }
    let numbers: Vec<&str> = got.iter().map(|a| a.account.number.as_str()).collect();
    assert_eq!(numbers, ["0101", "0105", "0106"]);
    let users: HashSet<&str> = got
        .iter()
        .map(|a| a.account.auth_username.as_str())
        .collect();
    let keys: HashSet<&str> = got.iter().map(|a| a.config_key.as_str()).collect();
    assert_eq!(
        (users.len(), keys.len()),
        (3, 3),
        "accounts and keys unique"
    );
    // Lookups by MAC (any spelling) and key.
    let by_mac = s
        .find_device_by_mac("00:15:65:00:00:01")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_mac.id, got[1].device.id);
    assert!(s.find_device_by_mac("not a mac").await.unwrap().is_none());
    assert!(s.find_device_by_mac(&mac(99)).await.unwrap().is_none());
    let by_key = s
        .find_device_by_config_key(&got[2].config_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_key.id, got[2].device.id);
    assert!(s
        .find_device_by_config_key(&"0".repeat(32))
        .await
        .unwrap()
        .is_none());
    assert!(s
        .find_device_by_config_key("' OR 1=1 --")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        s.device_config_key(got[0].device.id).await.unwrap(),
        got[0].config_key
    );
    assert!(matches!(
        s.device_config_key(999_999).await,
        Err(StoreError::NotFound { .. })
    ));
    // A device created by hand gets a key on first ask, and keeps it.
    let manual = s
        .create_device(NewDevice {
            mac: Some(mac(50)),
            ..NewDevice::default()
        })
        .await
        .unwrap();
    let k = s.device_config_key(manual.id).await.unwrap();
    assert!(is_config_key(&k));
    assert_eq!(s.device_config_key(manual.id).await.unwrap(), k);
    // ... and a guest account when autoprov'd (it is in autoprov).
    let a = s
        .autoprov_device(&mac(50), "snom", None, None)
        .await
        .unwrap();
    assert!(!a.created);
    assert_eq!(
        (a.config_key.as_str(), a.account.number.as_str()),
        (k.as_str(), "0107")
    );
    // Bad input.
    assert!(matches!(
        s.autoprov_device("xyz", "snom", None, None).await,
        Err(StoreError::Invalid { field: "mac", .. })
    ));
}

async fn disabled_autoreg_creates_nothing(t: &Ctx) {
    let s = &t.store;
    // A fresh install has no range.
    let e = s
        .autoprov_device(&mac(1), "cisco", None, None)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::AutoregDisabled), "{e}");
    assert!(e.to_string().contains("autoreg_start_dn"), "{e}");
    assert_eq!(e.http_status(), 403);
    assert_eq!(t.count("SELECT COUNT(*) FROM devices").await, 0);
    assert_eq!(t.count("SELECT COUNT(*) FROM sip_endpoints").await, 0);
    // An existing autoprov device without a guest account cannot get one either.
    let d = s
        .create_device(NewDevice {
            mac: Some(mac(2)),
            ..NewDevice::default()
        })
        .await
        .unwrap();
    assert!(matches!(
        s.autoprov_device(&mac(2), "cisco", None, None).await,
        Err(StoreError::AutoregDisabled)
    ));
    assert!(s.guest_account(d.id).await.unwrap().is_none());
    assert_eq!(t.count("SELECT COUNT(*) FROM sip_endpoints").await, 0);
}

async fn full_range_is_refused_and_leaves_nothing(t: &Ctx) {
    let s = &t.store;
    set_range(s, Some("500"), Some("501")).await;
    s.autoprov_device(&mac(1), "cisco", None, None)
        .await
        .unwrap();
    s.autoprov_device(&mac(2), "cisco", None, None)
        .await
        .unwrap();
    let e = s
        .autoprov_device(&mac(3), "cisco", None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::AutoregRangeFull { start, end } if start == "500" && end == "501"),
        "{e}"
    );
    assert!(e.to_string().contains("widen the range"), "{e}");
    assert_eq!(t.count("SELECT COUNT(*) FROM devices").await, 2);
    assert_eq!(t.count("SELECT COUNT(*) FROM sip_endpoints").await, 2);
    // A known phone still gets its account while the range is full.
    let again = s
        .autoprov_device(&mac(1), "cisco", None, None)
        .await
        .unwrap();
    assert_eq!(again.account.number, "500");
    // Widening the range helps.
    set_range(s, Some("500"), Some("502")).await;
    let a = s
        .autoprov_device(&mac(3), "cisco", None, None)
        .await
        .unwrap();
    assert_eq!(a.account.number, "502");
}

async fn autoprov_is_idempotent_and_refuses_bound_devices(t: &Ctx) {
    let s = &t.store;
    set_range(s, Some("7000"), Some("7099")).await;
    let a = s
        .autoprov_device("001565aabbcc", "yealink", None, Some("Yealink T46S"))
        .await
        .unwrap();
    let b = s
        .autoprov_device("00:15:65:AA:BB:CC", "yealink", Some("T46S"), None)
        .await
        .unwrap();
    assert!(a.created && !b.created);
    assert_eq!(a.device.id, b.device.id);
    assert_eq!(a.account, b.account);
    assert_eq!(a.config_key, b.config_key);
    // What the phone said later fills the gaps; nothing is lost.
    assert_eq!(b.device.model.as_deref(), Some("T46S"));
    assert_eq!(b.device.user_agent.as_deref(), Some("Yealink T46S"));
    assert_eq!(t.count("SELECT COUNT(*) FROM devices").await, 1);
    assert_eq!(t.count("SELECT COUNT(*) FROM sip_endpoints").await, 1);
    assert_eq!(
        s.guest_account(a.device.id).await.unwrap().as_ref(),
        Some(&a.account)
    );

    // Bound: no guest config any more.
    s.add_user(new_user("jdoe", "2001")).await.unwrap();
    s.bind_device(&identity("001565AABBCC"), "jdoe", AuthMethod::Pin)
        .await
        .unwrap();
    let e = s
        .autoprov_device("001565AABBCC", "yealink", None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::NotAutoprov { device_id, ref state } if device_id == a.device.id && state == "provisioning"),
        "{e}"
    );
    assert!(e.is_conflict());
}

async fn concurrent_autoprov_of_20_macs_gets_20_numbers(t: &Ctx) {
    set_range(&t.store, Some("0300"), Some("0399")).await;
    // Two stores on one database: like two server processes (or nodes).
    let other = t.open_again().await;
    let mut tasks = Vec::new();
    for i in 0..20u32 {
        let store = if i % 2 == 0 {
            t.store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            store.autoprov_device(&mac(i), "polycom", None, None).await
        }));
    }
    // And the same MAC twice at once: one device.
    let dup = {
        let (a, b) = (t.store.clone(), other.clone());
        tokio::join!(
            tokio::spawn(async move { a.autoprov_device(&mac(7), "polycom", None, None).await }),
            tokio::spawn(async move { b.autoprov_device(&mac(7), "polycom", None, None).await }),
        )
    };
    let mut numbers = HashSet::new();
    let mut users = HashSet::new();
    for task in tasks {
        let a = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("autoprov finished")
            .unwrap()
            .unwrap();
        numbers.insert(a.account.number);
        users.insert(a.account.auth_username);
    }
    assert_eq!(numbers.len(), 20, "{numbers:?}");
    assert_eq!(users.len(), 20);
    let expected: HashSet<String> = (300..320).map(|n| format!("{n:04}")).collect();
    assert_eq!(numbers, expected, "the lowest 20 numbers, no gaps");
    let (d1, d2) = (dup.0.unwrap().unwrap(), dup.1.unwrap().unwrap());
    assert_eq!(d1.device.id, d2.device.id);
    assert_eq!(d1.account, d2.account);
    assert_eq!(t.count("SELECT COUNT(*) FROM devices").await, 20);
    assert_eq!(t.count("SELECT COUNT(*) FROM sip_endpoints").await, 20);
    other.close().await;
}

async fn sip_accounts_for_guests_and_lines(t: &Ctx) {
    let s = &t.store;
    set_range(s, Some("7000"), Some("7099")).await;
    let a = s
        .autoprov_device(&mac(1), "snom", None, None)
        .await
        .unwrap();
    let acc = s
        .find_sip_account(&a.account.auth_username)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        acc.kind,
        AccountKind::Guest {
            device_id: a.device.id
        }
    );
    assert_eq!(acc.number, "7000");
    assert_eq!(acc.password, a.account.password);
    assert!(!format!("{acc:?}").contains(&a.account.password));

    let user = s.add_user(new_user("jdoe", "2001")).await.unwrap();
    let (line_id, sip_id) = ready_line(s, "2001", user.id).await;
    let sip = s.get_sip_endpoint(sip_id).await.unwrap().unwrap();
    let acc = s
        .find_sip_account(&sip.auth_username)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(acc.kind, AccountKind::Line { line_id });
    assert_eq!(
        (acc.endpoint_id, acc.number.as_str(), acc.password.as_str()),
        (sip_id, "2001", sip.password.as_str())
    );
    // An endpoint on no line and no device has no address of record.
    let loose = s
        .create_sip_endpoint(NewSipEndpoint::default())
        .await
        .unwrap();
    assert!(s
        .find_sip_account(&loose.auth_username)
        .await
        .unwrap()
        .is_none());
    assert!(s.find_sip_account("nobody").await.unwrap().is_none());
}

async fn config_fetch_provisions_and_releases_the_guest(t: &Ctx) {
    let s = &t.store;
    set_range(s, Some("7000"), Some("7099")).await;
    let a = s
        .autoprov_device(&mac(1), "yealink", None, None)
        .await
        .unwrap();
    // A fetch by a device in autoprov changes no state.
    let d = s.config_fetched(a.device.id, ip(IP)).await.unwrap();
    assert_eq!(d.state, DeviceState::Autoprov);
    assert!(d.config_fetched_at.is_some());
    assert!(s.guest_account(a.device.id).await.unwrap().is_some());

    s.add_user(new_user("jdoe", "2001")).await.unwrap();
    let bound = s
        .bind_device(&identity(&mac(1)), "jdoe", AuthMethod::Pin)
        .await
        .unwrap();
    assert_eq!(
        (bound.id, bound.state),
        (a.device.id, DeviceState::Provisioning)
    );
    // Until the phone takes its new config, its guest account still works.
    assert!(s
        .find_sip_account(&a.account.auth_username)
        .await
        .unwrap()
        .is_some());
    s.record_resync(a.device.id, "200").await.unwrap();
    let d = s.get_device(a.device.id).await.unwrap().unwrap();
    assert_eq!(d.resync_outcome.as_deref(), Some("200"));
    assert!(d.resync_at.is_some());

    let d = s
        .config_fetched(a.device.id, ip("2001:db8::7"))
        .await
        .unwrap();
    assert_eq!(d.state, DeviceState::Provisioned);
    assert_eq!(d.last_ip.as_deref(), Some("2001:db8::7"));
    assert!(d.config_fetched_at.is_some());
    assert_eq!(d.lines[0].number, "2001");
    // The guest account is gone and its number free again.
    assert_eq!(d.autoreg_number, None);
    assert!(s.guest_account(a.device.id).await.unwrap().is_none());
    assert!(s
        .find_sip_account(&a.account.auth_username)
        .await
        .unwrap()
        .is_none());
    let next = s
        .autoprov_device(&mac(2), "yealink", None, None)
        .await
        .unwrap();
    assert_eq!(next.account.number, "7000");
    // The key survives provisioning (the phone's config URL).
    assert_eq!(
        s.device_config_key(a.device.id).await.unwrap(),
        a.config_key
    );

    assert!(matches!(
        s.config_fetched(999_999, ip(IP)).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.record_resync(999_999, "200").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.record_resync(a.device.id, "bad\r\noutcome").await,
        Err(StoreError::Invalid { .. })
    ));
}

async fn stale_resyncs_are_flagged(t: &Ctx) {
    let s = &t.store;
    set_range(s, Some("7000"), Some("7099")).await;
    s.add_user(new_user("jdoe", "2001")).await.unwrap();
    s.add_user(new_user("asmith", "2002")).await.unwrap();
    s.add_user(new_user("bwho", "2003")).await.unwrap();
    let mut ids = Vec::new();
    for (i, user) in [(1, "jdoe"), (2, "asmith"), (3, "bwho")] {
        s.autoprov_device(&mac(i), "yealink", None, None)
            .await
            .unwrap();
        ids.push(
            s.bind_device(&identity(&mac(i)), user, AuthMethod::Pin)
                .await
                .unwrap()
                .id,
        );
    }
    // 1: told to resync, never came back. 2: came back. 3: never told (not flagged).
    s.record_resync(ids[0], "timeout").await.unwrap();
    s.record_resync(ids[1], "200").await.unwrap();
    s.config_fetched(ids[1], ip(IP)).await.unwrap();
    assert!(s
        .flag_stale_resyncs(Duration::from_secs(3600))
        .await
        .unwrap()
        .is_empty());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let flagged = s
        .flag_stale_resyncs(Duration::from_millis(5))
        .await
        .unwrap();
    assert_eq!(flagged.iter().map(|d| d.id).collect::<Vec<_>>(), [ids[0]]);
    assert_eq!(flagged[0].state, DeviceState::Error);
    assert_eq!(flagged[0].resync_outcome.as_deref(), Some("timeout"));
    let states: Vec<DeviceState> = {
        let mut v = Vec::new();
        for id in &ids {
            v.push(s.get_device(*id).await.unwrap().unwrap().state);
        }
        v
    };
    assert_eq!(
        states,
        [
            DeviceState::Error,
            DeviceState::Provisioned,
            DeviceState::Provisioning
        ]
    );
    // Flagged once only.
    assert!(s
        .flag_stale_resyncs(Duration::from_millis(5))
        .await
        .unwrap()
        .is_empty());
    // A late fetch still provisions it.
    let d = s.config_fetched(ids[0], ip(IP)).await.unwrap();
    assert_eq!(d.state, DeviceState::Provisioned);
}

async fn reset_to_autoprov_gives_a_new_key_and_guest(t: &Ctx) {
    let s = &t.store;
    set_range(s, Some("7000"), Some("7099")).await;
    s.add_user(new_user("jdoe", "2001")).await.unwrap();
    let a = s
        .autoprov_device(&mac(1), "cisco", None, None)
        .await
        .unwrap();
    s.bind_device(&identity(&mac(1)), "jdoe", AuthMethod::Pin)
        .await
        .unwrap();
    s.record_resync(a.device.id, "200").await.unwrap();
    s.config_fetched(a.device.id, ip(IP)).await.unwrap();

    let r = s.reset_to_autoprov(a.device.id).await.unwrap();
    assert!(!r.created);
    assert_eq!(r.device.state, DeviceState::Autoprov);
    assert!(r.device.lines.is_empty() && r.device.owner.is_none());
    assert_eq!(
        (r.device.resync_at, r.device.last_ip.as_deref()),
        (None, None)
    );
    assert_ne!(r.config_key, a.config_key, "old URLs stop working");
    assert!(s
        .find_device_by_config_key(&a.config_key)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        s.find_device_by_config_key(&r.config_key)
            .await
            .unwrap()
            .unwrap()
            .id,
        a.device.id
    );
    assert_eq!(r.account.number, "7000");
    assert_ne!(r.account.auth_username, a.account.auth_username);
    assert_eq!(
        s.find_sip_account(&r.account.auth_username)
            .await
            .unwrap()
            .unwrap()
            .kind,
        AccountKind::Guest {
            device_id: a.device.id
        }
    );
    // The user's line stays (only its appearance on the phone goes).
    assert_eq!(t.count("SELECT COUNT(*) FROM lines").await, 1);
    let audit = s.list_audit(1).await.unwrap();
    assert_eq!(
        (audit[0].outcome.as_str(), audit[0].detail.as_str()),
        ("unbound", "reset to autoprov")
    );

    // A guest whose number a line took meanwhile gets a new number; one whose number is
    // still free keeps its account.
    let b = s
        .autoprov_device(&mac(2), "cisco", None, None)
        .await
        .unwrap();
    assert_eq!(b.account.number, "7001");
    s.create_line(NewLine {
        number: "7001".into(),
        ..NewLine::default()
    })
    .await
    .unwrap();
    let rb = s.reset_to_autoprov(b.device.id).await.unwrap();
    assert_eq!(rb.account.number, "7002");
    assert_eq!(rb.account.auth_username, b.account.auth_username);
    let rr = s.reset_to_autoprov(a.device.id).await.unwrap();
    assert_eq!(rr.account, r.account);

    assert!(matches!(
        s.reset_to_autoprov(999_999).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn devices_for_account_and_registration_ip(t: &Ctx) {
    let s = &t.store;
    set_range(s, Some("7000"), Some("7099")).await;
    let a = s
        .autoprov_device(&mac(1), "yealink", None, None)
        .await
        .unwrap();
    let guest = s
        .find_sip_account(&a.account.auth_username)
        .await
        .unwrap()
        .unwrap();
    let found = s.devices_for_account(guest.endpoint_id).await.unwrap();
    assert_eq!(
        found.iter().map(|d| d.id).collect::<Vec<_>>(),
        [a.device.id]
    );
    s.record_registration(guest.endpoint_id, ip("198.51.100.4"))
        .await
        .unwrap();
    assert_eq!(
        s.get_device(a.device.id)
            .await
            .unwrap()
            .unwrap()
            .last_ip
            .as_deref(),
        Some("198.51.100.4")
    );

    // A shared line on two devices: both carry the account.
    let user = s.add_user(new_user("jdoe", "2001")).await.unwrap();
    let (line_id, sip_id) = ready_line(s, "2001", user.id).await;
    let mut devs = Vec::new();
    for i in [5, 6] {
        let d = s
            .create_device(NewDevice {
                mac: Some(mac(i)),
                ..NewDevice::default()
            })
            .await
            .unwrap();
        s.associate_line_device(line_id, d.id).await.unwrap();
        devs.push(d.id);
    }
    let found = s.devices_for_account(sip_id).await.unwrap();
    assert_eq!(found.iter().map(|d| d.id).collect::<Vec<_>>(), devs);
    assert_eq!(found[0].lines[0].line_id, Some(line_id));
    s.record_registration(sip_id, ip(IP)).await.unwrap();
    for id in &devs {
        assert_eq!(
            s.get_device(*id).await.unwrap().unwrap().last_ip.as_deref(),
            Some(IP)
        );
    }
    // The guest device was not touched.
    assert_eq!(
        s.get_device(a.device.id)
            .await
            .unwrap()
            .unwrap()
            .last_ip
            .as_deref(),
        Some("198.51.100.4")
    );
    assert!(s.devices_for_account(999_999).await.unwrap().is_empty());
}

async fn device_type_line_limit(t: &Ctx) {
    let s = &t.store;
    let user = s.add_user(new_user("jdoe", "2001")).await.unwrap();
    let basic = s
        .create_device(NewDevice {
            mac: Some(mac(1)),
            device_type: DeviceType::Basic,
            ..NewDevice::default()
        })
        .await
        .unwrap();
    let advanced = s
        .create_device(NewDevice {
            mac: Some(mac(2)),
            device_type: DeviceType::Advanced,
            ..NewDevice::default()
        })
        .await
        .unwrap();
    let mut lines = Vec::new();
    for n in 0..9 {
        lines.push(ready_line(s, &format!("30{n:02}"), user.id).await.0);
    }
    s.associate_line_device(lines[0], basic.id).await.unwrap();
    let e = s
        .associate_line_device(lines[1], basic.id)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::LineLimit {
                max: 1,
                device_type: "basic",
                ..
            }
        ),
        "{e}"
    );
    for l in &lines[..8] {
        s.associate_line_device(*l, advanced.id).await.unwrap();
    }
    let e = s
        .associate_line_device(lines[8], advanced.id)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::LineLimit { max: 8, .. }), "{e}");
    // Turning a device with 8 lines into a basic one is refused too.
    let e = s
        .update_device(
            advanced.id,
            NewDevice {
                mac: Some(mac(2)),
                device_type: DeviceType::Basic,
                ..NewDevice::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::LineLimit { .. }), "{e}");
    assert_eq!(
        s.get_device(advanced.id)
            .await
            .unwrap()
            .unwrap()
            .lines
            .len(),
        8
    );
}

/// A phone that registers with its new line account has its config even if no fetch was seen.
async fn registering_with_the_line_account_provisions(t: &Ctx) {
    let s = &t.store;
    set_range(s, Some("7000"), Some("7099")).await;
    let a = s
        .autoprov_device(&mac(3), "snom", None, None)
        .await
        .unwrap();
    s.add_user(new_user("jdoe", "2001")).await.unwrap();
    let bound = s
        .bind_device(&identity(&mac(3)), "jdoe", AuthMethod::Pin)
        .await
        .unwrap();
    assert_eq!(bound.state, DeviceState::Provisioning);
    // The guest account registering changes no state.
    let guest = s
        .find_sip_account(&a.account.auth_username)
        .await
        .unwrap()
        .expect("guest account");
    s.record_registration(guest.endpoint_id, ip(IP))
        .await
        .unwrap();
    let d = s.get_device(a.device.id).await.unwrap().unwrap();
    assert_eq!(d.state, DeviceState::Provisioning);
    // The line account registering does, and releases the guest number.
    let line = s
        .get_line(d.lines[0].line_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    let ep = line.sip_endpoint_id.expect("the line has an endpoint");
    s.record_registration(ep, ip("192.0.2.9")).await.unwrap();
    let d = s.get_device(a.device.id).await.unwrap().unwrap();
    assert_eq!(d.state, DeviceState::Provisioned);
    assert_eq!(d.last_ip.as_deref(), Some("192.0.2.9"));
    assert_eq!(d.autoreg_number, None);
    assert!(s.guest_account(a.device.id).await.unwrap().is_none());
}
