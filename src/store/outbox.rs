//! The PBX outbox's store side: rows written by the changes (see the `*_in_tx!` macros in
//! `mod.rs`), read and retired by the delivery worker ([`crate::pbx::worker`]), the objects
//! selfprov owns at each PBX, and each connector's status.

use super::{now_millis, to_u32, Backend, Store, StoreError, WritePool};
use crate::pbx::event::{LineState, PbxEvent};
use serde::Serialize;
use std::sync::Arc;

/// One outbox row.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub connector: String,
    pub event: PbxEvent,
    /// UTC ms.
    pub created_at: i64,
    pub attempts: u32,
    /// UTC ms before which it is not tried again.
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    /// UTC ms; `Some`: parked, the worker skips it until an admin retries it.
    pub parked_at: Option<i64>,
}

/// A connector's delivery status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PbxStatus {
    /// Rows waiting (not parked).
    pub pending: u64,
    /// Rows parked after failing for a reason of their own.
    pub parked: u64,
    /// When the oldest waiting row was written (UTC ms).
    pub oldest_pending_at: Option<i64>,
    /// Rows delivered since the store was created.
    pub delivered: u64,
    pub last_success_at: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
}

/// An object selfprov created at a PBX for a line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PbxObject {
    pub line_id: i64,
    /// The connector's key for it (Kamailio: `username@domain`).
    pub object: String,
}

type RowTuple = (
    i64,
    String,
    String,
    i64,
    i64,
    i64,
    Option<String>,
    Option<i64>,
);

macro_rules! row_columns {
    () => {
        "SELECT id, connector, payload, created_at, attempts, next_attempt_at, last_error, \
         parked_at FROM pbx_outbox"
    };
}

fn decode(r: RowTuple) -> Result<OutboxRow, StoreError> {
    let event: PbxEvent = serde_json::from_str(&r.2)
        .map_err(|e| StoreError::Corrupt(format!("outbox row {}: {e}", r.0)))?;
    Ok(OutboxRow {
        id: r.0,
        connector: r.1,
        event,
        created_at: r.3,
        attempts: u32::try_from(r.4).unwrap_or(u32::MAX),
        next_attempt_at: r.5,
        last_error: r.6,
        parked_at: r.7,
    })
}

impl Store {
    pub(super) fn with_backend(backend: Backend) -> Store {
        Store {
            backend,
            pbx: Arc::from(Vec::new()),
            registration_watch: false,
            outbox_wake: Arc::new(tokio::sync::watch::channel(0u64).0),
        }
    }

    /// The store, writing one outbox row per connector in `names` for every change a PBX must
    /// learn of (the `[[pbx]]` names of the config; every process that writes to the store,
    /// server and CLI, must give the same list).
    pub fn with_pbx_connectors(mut self, names: Vec<String>) -> Store {
        self.pbx = Arc::from(names);
        self
    }

    /// The store, leaving a device that fetched its new file in `provisioning` until a PBX
    /// connector sees its line register ([`Store::line_registered`]).
    pub fn with_registration_watch(mut self, on: bool) -> Store {
        self.registration_watch = on;
        self
    }

    /// The connector names outbox rows are written for.
    pub fn pbx_connectors(&self) -> &[String] {
        &self.pbx
    }

    /// Changes each time this process commits outbox rows (the worker also polls, for rows
    /// written by other processes).
    pub fn outbox_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.outbox_wake.subscribe()
    }

    /// Tells the delivery workers of this process that rows were written.
    pub(super) fn outbox_written(&self) {
        if !self.pbx.is_empty() {
            self.outbox_wake.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// The connector's next row to deliver: its oldest row that is not parked.
    pub async fn outbox_next(&self, connector: &str) -> Result<Option<OutboxRow>, StoreError> {
        Ok(self.outbox_batch(connector, 1).await?.pop())
    }

    /// The connector's next rows to deliver, oldest first (at most `limit`, none parked).
    pub async fn outbox_batch(
        &self,
        connector: &str,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        self.outbox_select(connector, limit, false).await
    }

    /// The connector's rows, waiting and parked, oldest first (at most `limit`).
    pub async fn outbox_rows(
        &self,
        connector: &str,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        self.outbox_select(connector, limit, true).await
    }

    async fn outbox_select(
        &self,
        connector: &str,
        limit: u32,
        parked_too: bool,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let sql = if parked_too {
            concat!(row_columns!(), " WHERE connector = $1 ORDER BY id LIMIT $2")
        } else {
            concat!(
                row_columns!(),
                " WHERE connector = $1 AND parked_at IS NULL ORDER BY id LIMIT $2"
            )
        };
        with_pool!(self, |pool| {
            let rows: Vec<RowTuple> = sqlx::query_as(sql)
                .bind(connector)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            rows.into_iter().map(decode).collect()
        })
    }

    /// Row `id` reached the PBX: it goes, and the connector's status records the success.
    pub async fn outbox_delivered(&self, connector: &str, id: i64) -> Result<(), StoreError> {
        self.outbox_delivered_many(connector, &[id]).await
    }

    /// Rows `ids` reached the PBX: they go in one transaction, and the connector's status
    /// records the successes.
    pub async fn outbox_delivered_many(
        &self,
        connector: &str,
        ids: &[i64],
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = now_millis();
        let n = i64::try_from(ids.len()).unwrap_or(i64::MAX);
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            for id in ids {
                sqlx::query("DELETE FROM pbx_outbox WHERE id = $1")
                    .bind(*id)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO pbx_status (connector, delivered, last_success_at) VALUES ($1, $3, $2) \
                 ON CONFLICT (connector) DO UPDATE SET delivered = pbx_status.delivered + $3, \
                 last_success_at = $2",
            )
            .bind(connector)
            .bind(now)
            .bind(n)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Row `id` failed: tried again at `next_attempt_at` (UTC ms), or parked when `park`.
    pub async fn outbox_failed(
        &self,
        connector: &str,
        id: i64,
        error: &str,
        next_attempt_at: i64,
        park: bool,
    ) -> Result<(), StoreError> {
        let now = now_millis();
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "UPDATE pbx_outbox SET attempts = attempts + 1, next_attempt_at = $2, \
                 last_error = $3, parked_at = $4 WHERE id = $1",
            )
            .bind(id)
            .bind(next_attempt_at)
            .bind(error)
            .bind(park.then_some(now))
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO pbx_status (connector, last_error, last_error_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (connector) DO UPDATE SET last_error = $2, last_error_at = $3",
            )
            .bind(connector)
            .bind(error)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Puts the connector's parked rows back in line (tried again at once). Returns how many.
    pub async fn outbox_retry_parked(&self, connector: &str) -> Result<u64, StoreError> {
        let now = now_millis();
        let n = with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let done = sqlx::query(
                "UPDATE pbx_outbox SET parked_at = NULL, attempts = 0, next_attempt_at = $2 \
                 WHERE connector = $1 AND parked_at IS NOT NULL",
            )
            .bind(connector)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok::<u64, StoreError>(done.rows_affected())
        })?;
        self.outbox_written();
        Ok(n)
    }

    /// The connector's delivery status.
    pub async fn pbx_status(&self, connector: &str) -> Result<PbxStatus, StoreError> {
        with_pool!(self, |pool| {
            let (pending, parked, oldest): (i64, i64, Option<i64>) = sqlx::query_as(
                "SELECT COALESCE(SUM(CASE WHEN parked_at IS NULL THEN 1 ELSE 0 END), 0), \
                 COALESCE(SUM(CASE WHEN parked_at IS NULL THEN 0 ELSE 1 END), 0), \
                 MIN(CASE WHEN parked_at IS NULL THEN created_at END) \
                 FROM pbx_outbox WHERE connector = $1",
            )
            .bind(connector)
            .fetch_one(pool)
            .await?;
            type S = (i64, Option<i64>, Option<String>, Option<i64>);
            let s: Option<S> = sqlx::query_as(
                "SELECT delivered, last_success_at, last_error, last_error_at FROM pbx_status \
                 WHERE connector = $1",
            )
            .bind(connector)
            .fetch_optional(pool)
            .await?;
            let (delivered, last_success_at, last_error, last_error_at) =
                s.unwrap_or((0, None, None, None));
            Ok(PbxStatus {
                pending: u64::try_from(pending).unwrap_or(0),
                parked: u64::try_from(parked).unwrap_or(0),
                oldest_pending_at: oldest,
                delivered: u64::try_from(delivered).unwrap_or(0),
                last_success_at,
                last_error,
                last_error_at,
            })
        })
    }

    /// What selfprov created at the connector's PBX for line `line_id`.
    pub async fn pbx_object(
        &self,
        connector: &str,
        line_id: i64,
    ) -> Result<Option<String>, StoreError> {
        with_pool!(self, |pool| {
            Ok(sqlx::query_scalar(
                "SELECT object FROM pbx_objects WHERE connector = $1 AND line_id = $2",
            )
            .bind(connector)
            .bind(line_id)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// Everything selfprov owns at the connector's PBX, by line.
    pub async fn pbx_objects(&self, connector: &str) -> Result<Vec<PbxObject>, StoreError> {
        with_pool!(self, |pool| {
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "SELECT line_id, object FROM pbx_objects WHERE connector = $1 ORDER BY line_id",
            )
            .bind(connector)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(line_id, object)| PbxObject { line_id, object })
                .collect())
        })
    }

    /// Records (`Some`) or forgets (`None`) the object selfprov owns at the PBX for a line.
    /// Recorded BEFORE the PBX row is written, so a crash in between leaves a claim the retry
    /// honours rather than a row selfprov would take for someone else's.
    pub async fn set_pbx_object(
        &self,
        connector: &str,
        line_id: i64,
        object: Option<&str>,
    ) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            match object {
                Some(o) => {
                    sqlx::query(
                        "INSERT INTO pbx_objects (connector, line_id, object, created_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (connector, line_id) \
                         DO UPDATE SET object = $3",
                    )
                    .bind(connector)
                    .bind(line_id)
                    .bind(o)
                    .bind(now_millis())
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query("DELETE FROM pbx_objects WHERE connector = $1 AND line_id = $2")
                        .bind(connector)
                        .bind(line_id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Every live line (on at least one device, with a SIP endpoint): what each PBX should
    /// hold. Used by `pbx sync`.
    pub async fn live_lines(&self) -> Result<Vec<LineState>, StoreError> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT DISTINCT line_id FROM device_lines WHERE line_id IS NOT NULL \
                 ORDER BY line_id",
            )
            .fetch_all(&mut *tx)
            .await?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(state) = line_state_in_tx!(tx, id) {
                    out.push(state);
                }
            }
            tx.commit().await?;
            Ok(out)
        })
    }
}

impl Store {
    /// Writes `events` as outbox rows of one connector only (`pbx sync` of a webhook).
    pub async fn enqueue_pbx_events(
        &self,
        connector: &str,
        events: &[PbxEvent],
    ) -> Result<(), StoreError> {
        let one = [connector.to_string()];
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            for e in events {
                enqueue_in_tx!(&one, tx, e);
            }
            tx.commit().await?;
            Ok::<(), StoreError>(())
        })?;
        self.outbox_wake.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }
}

/// A device waiting for its line to register at the PBX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwaitingDevice {
    pub device_id: i64,
    pub mac: Option<String>,
    pub line_ids: Vec<i64>,
}

impl Store {
    /// Devices in `provisioning` (or `error`: late) that have lines: the ones whose line registering at the PBX
    /// makes them `provisioned`.
    pub async fn devices_awaiting_registration(&self) -> Result<Vec<AwaitingDevice>, StoreError> {
        with_pool!(self, |pool| {
            let rows: Vec<(i64, Option<String>, i64)> = sqlx::query_as(
                "SELECT d.id, d.mac, dl.line_id FROM devices d \
                 JOIN device_lines dl ON dl.device_id = d.id \
                 WHERE d.state IN ($1, $2) AND dl.line_id IS NOT NULL ORDER BY d.id, dl.line_id",
            )
            .bind(super::DeviceState::Provisioning.as_str())
            .bind(super::DeviceState::Error.as_str())
            .fetch_all(pool)
            .await?;
            let mut out: Vec<AwaitingDevice> = Vec::new();
            for (device_id, mac, line_id) in rows {
                match out.last_mut() {
                    Some(d) if d.device_id == device_id => d.line_ids.push(line_id),
                    _ => out.push(AwaitingDevice {
                        device_id,
                        mac,
                        line_ids: vec![line_id],
                    }),
                }
            }
            Ok(out)
        })
    }
}
