//! The store test suite shared by both backends: every case here runs once on SQLite
//! (`tests/store_sqlite.rs`) and once on PostgreSQL (`tests/store_postgres.rs`), each on a
//! fresh database, through [`store_suite_tests!`].
//!
//! PostgreSQL: `SELFPROV_TEST_POSTGRES_URL` names a role allowed to create databases
//! (`. scripts/pg-test-env.sh` starts a throwaway server and sets it); each case creates and
//! drops its own database. The PostgreSQL cases are `#[ignore]`d so a plain `cargo test` shows
//! them as ignored; run them with `-- --include-ignored`. With `CI` set, a guard test fails
//! when the variable is missing or the ignored cases were not included, so CI cannot skip them.

#![allow(dead_code)]

#[path = "../common/pg.rs"]
mod pg;
#[allow(unused_imports)] // used by store_postgres.rs only
pub use pg::drop_database;

pub mod binding;
pub mod crud;
pub mod outbox;

use selfprov::provisioning::DeviceIdentity;
use selfprov::store::{NewUser, Store, User};
use sqlx::{Connection, PgConnection, SqliteConnection};

pub const PG_ENV: &str = "SELFPROV_TEST_POSTGRES_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// One test's database and a store open on it.
pub struct Ctx {
    pub store: Store,
    pub kind: Kind,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl Ctx {
    pub async fn open(kind: Kind) -> Ctx {
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("selfprov.db").display());
                let store = Store::open(&url).await.unwrap();
                Ctx {
                    store,
                    kind,
                    url,
                    _dir: Some(dir),
                    pg: None,
                }
            }
            Kind::Postgres => {
                let admin_url = std::env::var(PG_ENV).unwrap_or_else(|_| {
                    panic!(
                        "{PG_ENV} is not set: source scripts/pg-test-env.sh first \
                         (these PostgreSQL cases were asked for with --include-ignored)"
                    )
                });
                let name = format!(
                    "selfprov_t{}_{}",
                    std::process::id(),
                    rand::random::<u64>() % 1_000_000_000_000
                );
                let mut admin = PgConnection::connect(&admin_url)
                    .await
                    .expect("connect to SELFPROV_TEST_POSTGRES_URL");
                // The name is made here of letters, digits and '_' only: safe to splice.
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
                let store = Store::open(&url).await.unwrap();
                assert_eq!(store.backend_name(), "postgres");
                Ctx {
                    store,
                    kind,
                    url,
                    _dir: None,
                    pg: Some((admin_url, name)),
                }
            }
        }
    }

    /// A second, independent store on the same database (another process, for concurrency).
    pub async fn open_again(&self) -> Store {
        Store::open(&self.url).await.unwrap()
    }

    /// Runs SQL on a raw connection of its own (fault injection, checks behind the store).
    pub async fn exec(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self.kind {
            Kind::Sqlite => {
                let mut c = SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
                c.close().await.unwrap();
            }
            Kind::Postgres => {
                let mut c = PgConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
                c.close().await.unwrap();
            }
        }
    }

    /// `SELECT COUNT(*) ...` on a raw connection.
    pub async fn count(&self, sql: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self.kind {
            Kind::Sqlite => {
                let mut c = SqliteConnection::connect(&self.url).await.unwrap();
                let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap();
                c.close().await.unwrap();
                n
            }
            Kind::Postgres => {
                let mut c = PgConnection::connect(&self.url).await.unwrap();
                let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap();
                c.close().await.unwrap();
                n
            }
        }
    }

    /// Makes every INSERT into `table` fail, to break a transaction half way.
    pub async fn break_inserts(&self, table: &str) {
        match self.kind {
            Kind::Sqlite => {
                self.exec(&format!(
                    "CREATE TRIGGER fail_{table} BEFORE INSERT ON {table} \
                     BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
                ))
                .await
            }
            Kind::Postgres => {
                self.exec(&format!(
                    "CREATE OR REPLACE FUNCTION selfprov_test_fail() RETURNS trigger \
                     LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$; \
                     CREATE TRIGGER fail_{table} BEFORE INSERT ON {table} FOR EACH ROW \
                     EXECUTE FUNCTION selfprov_test_fail();"
                ))
                .await
            }
        }
    }

    pub async fn repair_inserts(&self, table: &str) {
        match self.kind {
            Kind::Sqlite => self.exec(&format!("DROP TRIGGER fail_{table}")).await,
            Kind::Postgres => {
                self.exec(&format!("DROP TRIGGER fail_{table} ON {table}"))
                    .await
            }
        }
    }

    /// Closes the store and drops the PostgreSQL database. (A failed test leaves its
    /// database behind: the throwaway cluster is deleted as a whole.)
    pub async fn finish(self) {
        self.store.close().await;
        if let Some((admin_url, name)) = self.pg {
            pg::drop_database(&admin_url, &name).await;
        }
    }
}

pub fn new_user(user_id: &str, extension: &str) -> NewUser {
    NewUser {
        user_id: user_id.into(),
        selfprov_id: None,
        first_name: "Jane".into(),
        last_name: "Doe".into(),
        extension: extension.into(),
        pin_hash: None,
        selfprov_enabled: true,
    }
}

pub async fn add_user(store: &Store, user_id: &str, first: &str, last: &str, ext: &str) -> User {
    store
        .add_user(NewUser {
            first_name: first.into(),
            last_name: last.into(),
            ..new_user(user_id, ext)
        })
        .await
        .unwrap()
}

pub fn cisco(mac: &str) -> DeviceIdentity {
    DeviceIdentity {
        mac: Some(mac.into()),
        device_name: Some(format!("SEP{mac}")),
        vendor: Some("Cisco".into()),
        model: Some("CP-8851".into()),
        firmware: Some("14.2.1".into()),
        user_agent: Some("Cisco-CP8851/14.2.1".into()),
        sip_identity: "autoprov@pbx.example.com".into(),
        contact: None,
    }
}

/// Generates one `#[tokio::test]` per case for a backend: `store_suite_tests!(sqlite)` or
/// `store_suite_tests!(postgres)` (ignored unless `--include-ignored`).
macro_rules! store_suite_tests {
    ($kind:ident) => {
        store_suite_tests!(@gen $kind;
            crud::seeded_defaults_make_a_fresh_install_work,
            crud::users_page_search_order_and_update,
            crud::lines_and_sip_endpoints,
            crud::wazo_flow_associations_are_checked,
            crud::templates_refuse_bad_patterns_and_stay_consistent,
            crud::settings_round_trip_and_are_checked,
            crud::api_tokens_verify_and_revoke,
            crud::audit_is_filtered_and_paged,
            crud::legacy_cli_methods_still_work,
            binding::binding_builds_line_and_device_from_templates,
            binding::binding_again_is_idempotent,
            binding::phone_of_another_user_is_refused_or_taken_over,
            binding::device_limit_is_enforced,
            binding::profile_must_allow_provisioning,
            binding::unknown_or_disabled_users_bind_nothing,
            binding::concurrent_binding_of_one_phone_has_one_winner,
            binding::failure_mid_binding_leaves_nothing,
            binding::extension_line_of_another_user_is_refused,
            outbox::binding_writes_outbox_rows_for_every_connector,
            outbox::unbinding_revokes_the_phones_credentials_only,
            outbox::a_failed_binding_writes_no_outbox_row,
            outbox::delivery_bookkeeping,
        );
    };
    (@gen sqlite; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let ctx = store_suite::Ctx::open(store_suite::Kind::Sqlite).await;
                store_suite::$module::$case(&ctx).await;
                ctx.finish().await;
            }
        )*
    };
    (@gen postgres; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "needs PostgreSQL: `. scripts/pg-test-env.sh`, then `cargo test --test store_postgres -- --include-ignored`"]
            async fn $case() {
                let ctx = store_suite::Ctx::open(store_suite::Kind::Postgres).await;
                store_suite::$module::$case(&ctx).await;
                ctx.finish().await;
            }
        )*
    };
}
