//! The store on PostgreSQL: the backend-independent suite (`store_suite/`, also run on SQLite by
//! store_sqlite.rs) plus a migration/concurrency smoke test.
//!
//! Needs a server: `. scripts/pg-test-env.sh` starts a throwaway one and sets
//! `SELFPROV_TEST_POSTGRES_URL` (a role allowed to create databases; each test creates and
//! drops its own). The tests are `#[ignore]`d so a plain `cargo test` lists them as ignored:
//! run `cargo test --test store_postgres -- --include-ignored`. With `CI` set,
//! [`postgres_suite_is_not_skipped_in_ci`] fails unless the variable is set and the ignored
//! tests are included, so CI can never pass by skipping PostgreSQL.

#[macro_use]
mod store_suite;
store_suite_tests!(postgres);

/// With `CI` set: the PostgreSQL tests must run, not be skipped.
#[test]
fn postgres_suite_is_not_skipped_in_ci() {
    // With CI set, a missing database is a failure, not a skip. (Whether the #[ignore]d cases
    // ran cannot be seen from inside one test under nextest, which runs each test in its own
    // process: scripts/test.sh passes `--run-ignored all`, and the run's summary lists them.)
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    let url = std::env::var(store_suite::PG_ENV).ok();
    if !ci {
        if url.is_none() {
            println!(
                "PostgreSQL store tests not run: `. scripts/pg-test-env.sh` then \
                 `cargo test --test store_postgres -- --include-ignored`"
            );
        }
        return;
    }
    assert!(
        url.is_some(),
        "CI is set but {} is not: source scripts/pg-test-env.sh before the tests",
        store_suite::PG_ENV
    );
}

use selfprov::provisioning::DeviceIdentity;
use selfprov::store::{AuthMethod, DeviceState, NewUser, Store, StoreError};
use sqlx::{Connection, PgConnection};

struct PgDb {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDb {
    async fn create() -> Option<PgDb> {
        let Ok(admin_url) = std::env::var("SELFPROV_TEST_POSTGRES_URL") else {
            panic!("SELFPROV_TEST_POSTGRES_URL is not set: source scripts/pg-test-env.sh first");
        };
        let name = format!(
            "selfprov_test_{}_{}",
            std::process::id(),
            rand::random::<u32>()
        );
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .expect("connect to SELFPROV_TEST_POSTGRES_URL");
        // The name is generated here from digits and letters only: safe to splice.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(&admin_url);
        let url = format!("{base}/{name}");
        Some(PgDb {
            admin_url,
            name,
            url,
        })
    }

    async fn drop_db(self) {
        store_suite::drop_database(&self.admin_url, &self.name).await;
    }
}

fn user(user_id: &str, extension: &str, selfprov_id: Option<&str>) -> NewUser {
    NewUser {
        user_id: user_id.into(),
        selfprov_id: selfprov_id.map(Into::into),
        first_name: "Jane".into(),
        last_name: "Doe".into(),
        extension: extension.into(),
        pin_hash: None,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: `. scripts/pg-test-env.sh`, then `cargo test --test store_postgres -- --include-ignored`"]
async fn postgres_store_behaves_like_sqlite() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    {
        // Two processes opening a new database at once: migrations applied once.
        let (a, b) = tokio::join!(Store::open(&db.url), Store::open(&db.url));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.backend_name(), "postgres");
        assert_eq!(a.schema_version().await.unwrap(), 4);

        a.add_user(user("jdoe", "1001", Some("4711")))
            .await
            .unwrap();
        a.add_user(user("asmith", "1002", None)).await.unwrap();
        let e = b.add_user(user("jdoe", "1003", None)).await.unwrap_err();
        assert!(matches!(e, StoreError::UserExists(_)), "{e}");
        let e = b.add_user(user("x", "1001", None)).await.unwrap_err();
        assert!(matches!(e, StoreError::ExtensionTaken { .. }), "{e}");
        assert_eq!(
            b.find_user_for_ivr("4711").await.unwrap().unwrap().user_id,
            "jdoe"
        );
        assert!(b.find_user_for_ivr("1001").await.unwrap().is_none());

        let d = a
            .bind_device(&cisco("0022905C8E3A"), "jdoe", AuthMethod::Pin)
            .await
            .unwrap();
        assert_eq!(d.owner.as_deref(), Some("jdoe"));
        assert_eq!(d.state, DeviceState::Provisioning);
        assert_eq!(d.lines[0].number, "1001");
        assert_eq!(
            b.bind_device(&cisco("0022905C8E3A"), "jdoe", AuthMethod::Pin)
                .await
                .unwrap()
                .id,
            d.id
        );
        let e = b
            .bind_device(&cisco("0022905C8E3A"), "asmith", AuthMethod::Pin)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::AlreadyBound { .. }), "{e}");

        // Racing binds of one new phone by two users: one row, one winner.
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
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        let devices = a.list_devices().await.unwrap();
        assert_eq!(devices.len(), 2);

        assert!(a.remove_user("jdoe").await.unwrap());
        let after = a.get_device(d.id).await.unwrap().unwrap();
        assert_eq!((after.owner, after.state), (None, DeviceState::Autoprov));
        let audit = a.list_audit(20).await.unwrap();
        assert!(audit.iter().any(|e| e.outcome == "already-bound"));
        assert_eq!(audit[0].outcome, "unbound");
        a.close().await;
        b.close().await;

        // Reopening applies nothing again.
        let c = Store::open(&db.url).await.unwrap();
        assert_eq!(c.list_users().await.unwrap().len(), 1);
        c.close().await;
    }
    db.drop_db().await;
}
