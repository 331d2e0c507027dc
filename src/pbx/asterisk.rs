//! The Asterisk realtime connector: a live line is a PJSIP endpoint in Asterisk's realtime
//! tables on PostgreSQL, as Asterisk's own schema (contrib/ast-db-manage) defines them:
//! `ps_aors` (the address of record, `max_contacts` phones), `ps_auths` (digest `userpass`,
//! the line's number and password) and `ps_endpoints` (`context` and `mailboxes` from the line,
//! `callerid` from its caller-ID name, the codecs allowed), all with `id` = the line's number,
//! so a dialplan reaches the line with `Dial(PJSIP/${EXTEN})`. The three rows of a line are
//! written in one transaction. Enumerated columns take SQL literals (never bound text), so
//! they fit Asterisk's enum types whatever their names in a given schema version.

use super::db::DbConnector;
use super::event::LineState;
use super::DeliveryError;
use crate::pbx::PbxConfig;
use crate::store::Store;
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::time::Duration;

/// Longest `id` in Asterisk's schema (VARCHAR(40) in the first realtime revisions).
const MAX_ID: usize = 40;

pub struct Asterisk {
    name: String,
    codecs: String,
    max_contacts: i32,
    pool: PgPool,
}

/// An endpoint as selfprov writes it (compared by `pbx sync`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    context: String,
    allow: String,
    mailboxes: Option<String>,
    callerid: String,
    password: String,
    max_contacts: i32,
}

fn classify(e: sqlx::Error) -> DeliveryError {
    let transient = match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            !(code.starts_with("23") || code.starts_with("22"))
        }
        _ => true,
    };
    DeliveryError {
        transient,
        message: format!("Asterisk realtime database: {e}"),
    }
}

impl Asterisk {
    pub fn new(cfg: &PbxConfig) -> Result<Asterisk, String> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(cfg.timeout_secs))
            .connect_lazy(cfg.db_url.as_deref().unwrap_or_default())
            .map_err(|e| format!("db_url: {e}"))?;
        Ok(Asterisk {
            name: cfg.name.clone(),
            codecs: cfg.codecs.join(","),
            max_contacts: i32::try_from(cfg.max_contacts).unwrap_or(i32::MAX),
            pool,
        })
    }

    fn endpoint(&self, line: &LineState) -> Endpoint {
        let callerid = if line.caller_id_name.trim().is_empty() {
            format!("<{}>", line.number)
        } else {
            // Quotes and angle brackets would break Asterisk's "Name" <number> parsing.
            let clean: String = line
                .caller_id_name
                .chars()
                .filter(|c| !matches!(c, '"' | '<' | '>' | '\\'))
                .collect();
            format!("\"{clean}\" <{}>", line.number)
        };
        Endpoint {
            context: line.context.clone(),
            allow: self.codecs.clone(),
            mailboxes: line
                .voicemail
                .as_ref()
                .map(|v| format!("{v}@{}", line.context)),
            callerid,
            password: line.password.clone(),
            max_contacts: self.max_contacts,
        }
    }

    async fn read_row(&self, id: &str) -> Result<Option<Endpoint>, DeliveryError> {
        type Row = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i32>,
        );
        let row: Option<Row> = sqlx::query_as(
            "SELECT e.context, e.allow, e.mailboxes, e.callerid, a.password, r.max_contacts \
             FROM ps_endpoints e LEFT JOIN ps_auths a ON a.id = e.auth \
             LEFT JOIN ps_aors r ON r.id = e.aors WHERE e.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        Ok(row.map(|r| Endpoint {
            context: r.0.unwrap_or_default(),
            allow: r.1.unwrap_or_default(),
            mailboxes: r.2,
            callerid: r.3.unwrap_or_default(),
            password: r.4.unwrap_or_default(),
            max_contacts: r.5.unwrap_or_default(),
        }))
    }

    async fn write_row(&self, id: &str, e: &Endpoint) -> Result<(), DeliveryError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        sqlx::query(
            "INSERT INTO ps_aors (id, max_contacts, remove_existing) VALUES ($1, $2, 'no') \
             ON CONFLICT (id) DO UPDATE SET max_contacts = $2, remove_existing = 'no'",
        )
        .bind(id)
        .bind(e.max_contacts)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        sqlx::query(
            "INSERT INTO ps_auths (id, auth_type, username, password) \
             VALUES ($1, 'userpass', $1, $2) \
             ON CONFLICT (id) DO UPDATE SET auth_type = 'userpass', username = $1, password = $2",
        )
        .bind(id)
        .bind(e.password.as_str())
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        sqlx::query(
            "INSERT INTO ps_endpoints (id, aors, auth, context, disallow, allow, mailboxes, \
             callerid) VALUES ($1, $1, $1, $2, 'all', $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET aors = $1, auth = $1, context = $2, \
             disallow = 'all', allow = $3, mailboxes = $4, callerid = $5",
        )
        .bind(id)
        .bind(e.context.as_str())
        .bind(e.allow.as_str())
        .bind(e.mailboxes.as_deref())
        .bind(e.callerid.as_str())
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)
    }

    async fn delete_row(&self, id: &str) -> Result<(), DeliveryError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        for sql in [
            "DELETE FROM ps_endpoints WHERE id = $1",
            "DELETE FROM ps_auths WHERE id = $1",
            "DELETE FROM ps_aors WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)
    }

    /// Contacts in Asterisk's `ps_contacts` (realtime) for the lines selfprov owns there.
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
            let rows: Vec<(Option<String>, Option<String>)> =
                sqlx::query_as("SELECT user_agent, uri FROM ps_contacts WHERE endpoint = $1")
                    .bind(o.object.as_str())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(classify)?;
            for (ua, uri) in rows {
                out.push(super::PbxRegistration {
                    line_id: o.line_id,
                    user_agent: ua.unwrap_or_default(),
                    contact: uri.unwrap_or_default(),
                });
            }
        }
        Ok(out)
    }
}

impl DbConnector for Asterisk {
    type Row = Endpoint;

    fn name(&self) -> &str {
        &self.name
    }

    fn object(&self, line: &LineState) -> String {
        line.number.clone()
    }

    fn describe(&self, object: &str) -> String {
        format!("PJSIP endpoint {object}")
    }

    fn want(&self, line: &LineState) -> Endpoint {
        self.endpoint(line)
    }

    fn check(&self, line: &LineState) -> Result<(), DeliveryError> {
        if line.number.len() > MAX_ID {
            return Err(DeliveryError::permanent(format!(
                "line {} ({}) is longer than Asterisk's {MAX_ID}-character ids",
                line.line_id, line.number
            )));
        }
        Ok(())
    }

    async fn read(&self, line: &LineState) -> Result<Option<Endpoint>, DeliveryError> {
        self.read_row(&line.number).await
    }

    async fn write(&self, line: &LineState) -> Result<(), DeliveryError> {
        self.write_row(&line.number, &self.endpoint(line)).await
    }

    async fn remove(&self, object: &str) -> Result<(), DeliveryError> {
        self.delete_row(object).await
    }
}
