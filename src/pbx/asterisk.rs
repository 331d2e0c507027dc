//! The Asterisk realtime connector: a live line is a PJSIP endpoint in Asterisk's realtime
//! tables on PostgreSQL, as Asterisk's own schema (contrib/ast-db-manage) defines them:
//! `ps_aors` (the address of record, `max_contacts` phones), `ps_auths` (digest `userpass`,
//! the line's number and password) and `ps_endpoints` (`context` and `mailboxes` from the line,
//! `callerid` from its caller-ID name, the codecs allowed), all with `id` = the line's number,
//! so a dialplan reaches the line with `Dial(PJSIP/${EXTEN})`. The three rows of a line are
//! written in one transaction. Enumerated columns take SQL literals (never bound text), so
//! they fit Asterisk's enum types whatever their names in a given schema version.

use super::event::{LineState, PbxEvent};
use super::{DeliveryError, SyncAction};
use crate::pbx::PbxConfig;
use crate::store::{OutboxRow, Store};
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
struct Endpoint {
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

    async fn read(&self, id: &str) -> Result<Option<Endpoint>, DeliveryError> {
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

    async fn write(&self, id: &str, e: &Endpoint) -> Result<(), DeliveryError> {
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

    async fn remove(&self, id: &str) -> Result<(), DeliveryError> {
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

    async fn upsert(&self, store: &Store, line: &LineState) -> Result<(), DeliveryError> {
        let id = line.number.as_str();
        if id.len() > MAX_ID {
            return Err(DeliveryError::permanent(format!(
                "line {} ({id}) is longer than Asterisk's {MAX_ID}-character ids",
                line.line_id
            )));
        }
        let owned = store
            .pbx_object(&self.name, line.line_id)
            .await
            .map_err(DeliveryError::store)?;
        if owned.as_deref() != Some(id) {
            if self.read(id).await?.is_some() {
                return Err(DeliveryError::permanent(format!(
                    "Asterisk already has PJSIP endpoint {id}, which selfprov did not create: \
                     delete it there (or give line {} another number), then `selfprov pbx \
                     retry {}`",
                    line.line_id, self.name
                )));
            }
            if let Some(old) = &owned {
                self.remove(old).await?;
            }
            store
                .set_pbx_object(&self.name, line.line_id, Some(id))
                .await
                .map_err(DeliveryError::store)?;
        }
        self.write(id, &self.endpoint(line)).await
    }

    async fn delete(&self, store: &Store, line_id: i64) -> Result<(), DeliveryError> {
        let owned = store
            .pbx_object(&self.name, line_id)
            .await
            .map_err(DeliveryError::store)?;
        if let Some(id) = owned {
            self.remove(&id).await?;
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
            let object = line.number.clone();
            let mine = owned
                .iter()
                .any(|o| o.line_id == line.line_id && o.object == object);
            match self.read(&object).await? {
                None => out.push(SyncAction::Create {
                    line_id: line.line_id,
                    object,
                }),
                Some(_) if !mine => out.push(SyncAction::Conflict {
                    line_id: line.line_id,
                    object,
                    reason: "the endpoint exists at the PBX and selfprov did not create it".into(),
                }),
                Some(have) if have != self.endpoint(line) => out.push(SyncAction::Update {
                    line_id: line.line_id,
                    object,
                }),
                Some(_) => {}
            }
        }
        for o in &owned {
            let live_id = live
                .iter()
                .find(|l| l.line_id == o.line_id)
                .map(|l| &l.number);
            if live_id != Some(&o.object) {
                out.push(SyncAction::Delete {
                    line_id: o.line_id,
                    object: o.object.clone(),
                });
            }
        }
        Ok(out)
    }

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
