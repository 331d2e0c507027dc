//! The Kamailio connector: a live line is a row of Kamailio's `subscriber` table (the one its
//! `auth_db` module checks), on Kamailio's own database (PostgreSQL, or SQLite through
//! `db_sqlite`). The table is Kamailio's (the SQL its packages ship); selfprov never creates or
//! alters it and only ever changes rows it created itself, which it remembers in its own store
//! ([`Store::pbx_objects`]).
//!
//! The row: `username` = the line's number (the address-of-record user phones register), `domain`
//! = the configured SIP domain, `password` (unless `store_password = false`), `ha1` =
//! MD5(username:domain:password) and `ha1b` = MD5(username@domain:domain:password), the
//! realm being the domain as in Kamailio's default configuration.

use super::db::DbConnector;
use super::event::LineState;
use super::DeliveryError;
use crate::pbx::PbxConfig;
use crate::store::Store;
use md5::{Digest, Md5};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use std::str::FromStr;
use std::time::Duration;

/// Longest `username` and `domain` in Kamailio's schema (VARCHAR(64)).
const MAX_FIELD: usize = 64;

enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

pub struct Kamailio {
    name: String,
    domain: String,
    store_password: bool,
    pool: Pool,
}

/// A subscriber row as selfprov writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscriber {
    username: String,
    password: String,
    ha1: String,
    ha1b: String,
}

fn md5_hex(s: &str) -> String {
    let d = Md5::digest(s.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

macro_rules! on_pool {
    ($self:expr, |$pool:ident| $body:expr) => {
        match &$self.pool {
            Pool::Postgres($pool) => $body,
            Pool::Sqlite($pool) => $body,
        }
    };
}

/// Constraint and data errors are the row's own fault (parked after a few tries); anything
/// else (connection refused, database or table missing, timeouts) is the PBX being unavailable
/// and is retried for as long as it takes.
fn classify(e: sqlx::Error) -> DeliveryError {
    let transient = match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            !(matches!(
                db.kind(),
                sqlx::error::ErrorKind::UniqueViolation
                    | sqlx::error::ErrorKind::ForeignKeyViolation
                    | sqlx::error::ErrorKind::NotNullViolation
                    | sqlx::error::ErrorKind::CheckViolation
            ) || code.starts_with("22"))
        }
        _ => true,
    };
    DeliveryError {
        transient,
        message: format!("Kamailio database: {e}"),
    }
}

impl Kamailio {
    /// The connector; connects lazily (an unreachable database does not stop start-up: rows
    /// wait in the outbox).
    pub fn new(cfg: &PbxConfig) -> Result<Kamailio, String> {
        let url = cfg.db_url.as_deref().unwrap_or_default();
        let timeout = Duration::from_secs(cfg.timeout_secs);
        let pool = if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(|e| format!("db_url: {e}"))?
                .create_if_missing(false)
                .busy_timeout(timeout);
            Pool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(timeout)
                    .connect_lazy_with(opts),
            )
        } else {
            Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(timeout)
                    .connect_lazy(url)
                    .map_err(|e| format!("db_url: {e}"))?,
            )
        };
        Ok(Kamailio {
            name: cfg.name.clone(),
            domain: cfg.sip_domain(),
            store_password: cfg.store_password,
            pool,
        })
    }

    fn object_key(&self, username: &str) -> String {
        format!("{username}@{}", self.domain)
    }

    fn subscriber(&self, line: &LineState) -> Subscriber {
        let (u, d, p) = (&line.number, &self.domain, &line.password);
        Subscriber {
            username: u.clone(),
            password: if self.store_password {
                p.clone()
            } else {
                String::new()
            },
            ha1: md5_hex(&format!("{u}:{d}:{p}")),
            ha1b: md5_hex(&format!("{u}@{d}:{d}:{p}")),
        }
    }

    /// The subscriber row for `username` in our domain, if any.
    async fn read_row(&self, username: &str) -> Result<Option<Subscriber>, DeliveryError> {
        on_pool!(self, |pool| {
            let row: Option<(String, String, String, String)> = sqlx::query_as(
                "SELECT username, password, ha1, ha1b FROM subscriber \
                 WHERE username = $1 AND domain = $2",
            )
            .bind(username)
            .bind(self.domain.as_str())
            .fetch_optional(pool)
            .await
            .map_err(classify)?;
            Ok(row.map(|(username, password, ha1, ha1b)| Subscriber {
                username,
                password,
                ha1,
                ha1b,
            }))
        })
    }

    async fn write_row(&self, s: &Subscriber) -> Result<(), DeliveryError> {
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO subscriber (username, domain, password, ha1, ha1b) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (username, domain) DO UPDATE \
                 SET password = $3, ha1 = $4, ha1b = $5",
            )
            .bind(s.username.as_str())
            .bind(self.domain.as_str())
            .bind(s.password.as_str())
            .bind(s.ha1.as_str())
            .bind(s.ha1b.as_str())
            .execute(pool)
            .await
            .map_err(classify)?;
            Ok(())
        })
    }

    /// Deletes the row named by an object key (`username@domain`) selfprov owns.
    async fn delete_row(&self, object: &str) -> Result<(), DeliveryError> {
        let (user, domain) = object.rsplit_once('@').unwrap_or((object, &self.domain));
        on_pool!(self, |pool| {
            sqlx::query("DELETE FROM subscriber WHERE username = $1 AND domain = $2")
                .bind(user)
                .bind(domain)
                .execute(pool)
                .await
                .map_err(classify)?;
            Ok(())
        })
    }

    /// Contacts in Kamailio's `location` table (usrloc writing to the database) for the lines
    /// selfprov owns there.
    pub async fn registrations(
        &self,
        store: &Store,
        line_ids: &[i64],
    ) -> Result<Vec<super::PbxRegistration>, DeliveryError> {
        let owned = store
            .pbx_objects(&self.name)
            .await
            .map_err(DeliveryError::store)?;
        let mut out = Vec::new();
        for o in owned.iter().filter(|o| line_ids.contains(&o.line_id)) {
            let (user, domain) = o
                .object
                .rsplit_once('@')
                .unwrap_or((&o.object, &self.domain));
            let rows: Vec<(Option<String>, Option<String>, Option<String>)> =
                on_pool!(self, |pool| {
                    sqlx::query_as(
                        "SELECT user_agent, contact, instance FROM location \
                     WHERE username = $1 AND domain = $2",
                    )
                    .bind(user)
                    .bind(domain)
                    .fetch_all(pool)
                    .await
                    .map_err(classify)?
                });
            for (ua, contact, instance) in rows {
                out.push(super::PbxRegistration {
                    line_id: o.line_id,
                    user_agent: ua.unwrap_or_default(),
                    contact: format!(
                        "{} {}",
                        contact.unwrap_or_default(),
                        instance.unwrap_or_default()
                    ),
                });
            }
        }
        Ok(out)
    }
}

impl DbConnector for Kamailio {
    type Row = Subscriber;

    fn name(&self) -> &str {
        &self.name
    }

    fn object(&self, line: &LineState) -> String {
        self.object_key(&line.number)
    }

    fn describe(&self, object: &str) -> String {
        format!("subscriber {object}")
    }

    fn want(&self, line: &LineState) -> Subscriber {
        self.subscriber(line)
    }

    fn check(&self, line: &LineState) -> Result<(), DeliveryError> {
        if line.number.len() > MAX_FIELD || self.domain.len() > MAX_FIELD {
            return Err(DeliveryError::permanent(format!(
                "line {} ({}@{}) does not fit Kamailio's subscriber columns (64 characters)",
                line.line_id, line.number, self.domain
            )));
        }
        Ok(())
    }

    async fn read(&self, line: &LineState) -> Result<Option<Subscriber>, DeliveryError> {
        self.read_row(&line.number).await
    }

    async fn write(&self, line: &LineState) -> Result<(), DeliveryError> {
        self.write_row(&self.subscriber(line)).await
    }

    async fn remove(&self, object: &str) -> Result<(), DeliveryError> {
        self.delete_row(object).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn row_hashes_are_kamailios() {
        let cfg: PbxConfig = toml::from_str::<toml::Table>(
            "name = \"k\"\nkind = \"kamailio\"\nregistrar = \"127.0.0.1:5060\"\n\
             db_url = \"sqlite:///nonexistent.db\"\nstore_password = false",
        )
        .unwrap()
        .try_into()
        .unwrap();
        let k = Kamailio::new(&cfg).unwrap();
        let line = LineState {
            line_id: 1,
            number: "1001".into(),
            context: "default".into(),
            caller_id_name: String::new(),
            voicemail: None,
            max_calls: 4,
            auth_username: "x".into(),
            password: "s3cret".into(),
            transport: "udp".into(),
            device_ids: vec![1],
        };
        let s = k.subscriber(&line);
        // Python: hashlib.md5(b"1001:127.0.0.1:s3cret") and (b"1001@127.0.0.1:127.0.0.1:s3cret").
        assert_eq!(s.ha1, "18c73f73ceca04ff0bb311344a5da019");
        assert_eq!(s.ha1b, "ee16308e03b6a1b6f62c76d0cfd943d5");
        assert_eq!(
            s.password, "",
            "store_password = false keeps only the hashes"
        );
        assert_eq!(k.object_key("1001"), "1001@127.0.0.1");
    }
}
