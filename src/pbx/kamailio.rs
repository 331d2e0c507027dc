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

use super::event::{LineState, PbxEvent};
use super::{DeliveryError, SyncAction};
use crate::pbx::PbxConfig;
use crate::store::{OutboxRow, Store};
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
struct Subscriber {
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

    fn object(&self, username: &str) -> String {
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
    async fn read(&self, username: &str) -> Result<Option<Subscriber>, DeliveryError> {
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

    async fn write(&self, s: &Subscriber) -> Result<(), DeliveryError> {
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
    async fn remove(&self, object: &str) -> Result<(), DeliveryError> {
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

    async fn upsert(&self, store: &Store, line: &LineState) -> Result<(), DeliveryError> {
        if line.number.len() > MAX_FIELD || self.domain.len() > MAX_FIELD {
            return Err(DeliveryError::permanent(format!(
                "line {} ({}@{}) does not fit Kamailio's subscriber columns (64 characters)",
                line.line_id, line.number, self.domain
            )));
        }
        let object = self.object(&line.number);
        let owned = store
            .pbx_object(&self.name, line.line_id)
            .await
            .map_err(DeliveryError::store)?;
        if owned.as_deref() != Some(object.as_str()) {
            if self.read(&line.number).await?.is_some() {
                return Err(DeliveryError::permanent(format!(
                    "Kamailio already has subscriber {object}, which selfprov did not create: \
                     delete it there (or give line {} another number), then `selfprov pbx \
                     retry {}`",
                    line.line_id, self.name
                )));
            }
            if let Some(old) = &owned {
                // The line was renumbered: its old account goes.
                self.remove(old).await?;
            }
            store
                .set_pbx_object(&self.name, line.line_id, Some(&object))
                .await
                .map_err(DeliveryError::store)?;
        }
        self.write(&self.subscriber(line)).await
    }

    async fn delete(&self, store: &Store, line_id: i64) -> Result<(), DeliveryError> {
        let owned = store
            .pbx_object(&self.name, line_id)
            .await
            .map_err(DeliveryError::store)?;
        if let Some(object) = owned {
            self.remove(&object).await?;
            store
                .set_pbx_object(&self.name, line_id, None)
                .await
                .map_err(DeliveryError::store)?;
        }
        Ok(())
    }

    pub async fn deliver(&self, store: &Store, row: &OutboxRow) -> Result<(), DeliveryError> {
        match &row.event {
            PbxEvent::LineUpserted(line) => self.upsert(store, line).await,
            PbxEvent::LineDeleted { line_id, .. } => self.delete(store, *line_id).await,
            PbxEvent::DeviceBound(_) | PbxEvent::DeviceUnbound(_) => Ok(()),
        }
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

    /// What differs between the live lines and the rows selfprov owns at Kamailio.
    pub async fn diff(
        &self,
        store: &Store,
        live: &[LineState],
    ) -> Result<Vec<SyncAction>, DeliveryError> {
        let owned = store
            .pbx_objects(&self.name)
            .await
            .map_err(DeliveryError::store)?;
        let mut out = Vec::new();
        for line in live {
            let object = self.object(&line.number);
            let mine = owned
                .iter()
                .any(|o| o.line_id == line.line_id && o.object == object);
            let want = self.subscriber(line);
            match self.read(&line.number).await? {
                None => out.push(SyncAction::Create {
                    line_id: line.line_id,
                    object,
                }),
                Some(_) if !mine => out.push(SyncAction::Conflict {
                    line_id: line.line_id,
                    object,
                    reason: "the row exists at the PBX and selfprov did not create it".into(),
                }),
                Some(have) if have != want => out.push(SyncAction::Update {
                    line_id: line.line_id,
                    object,
                }),
                Some(_) => {}
            }
        }
        for o in &owned {
            let live_object = live
                .iter()
                .find(|l| l.line_id == o.line_id)
                .map(|l| self.object(&l.number));
            if live_object.as_deref() != Some(o.object.as_str()) {
                out.push(SyncAction::Delete {
                    line_id: o.line_id,
                    object: o.object.clone(),
                });
            }
        }
        Ok(out)
    }

    /// Applies one difference found by [`Kamailio::diff`].
    pub async fn apply(
        &self,
        store: &Store,
        live: &[LineState],
        action: &SyncAction,
    ) -> Result<(), DeliveryError> {
        match action {
            SyncAction::Create { line_id, .. } | SyncAction::Update { line_id, .. } => {
                match live.iter().find(|l| l.line_id == *line_id) {
                    Some(line) => self.upsert(store, line).await,
                    None => Ok(()),
                }
            }
            SyncAction::Delete { line_id, object } => {
                self.remove(object).await?;
                store
                    .set_pbx_object(&self.name, *line_id, None)
                    .await
                    .map_err(DeliveryError::store)
            }
            SyncAction::Conflict { .. } | SyncAction::Send { .. } => Ok(()),
        }
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
        assert_eq!(k.object("1001"), "1001@127.0.0.1");
    }
}
