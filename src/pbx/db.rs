//! What the connectors that keep rows in the PBX's own database (Kamailio, Asterisk realtime)
//! have in common: the ownership rule, delivery of line events, and `pbx sync`.
//!
//! A connector says how a line looks at its PBX ([`DbConnector`]); this module decides what to
//! write. selfprov records what it created at the PBX ([`Store::pbx_objects`]) BEFORE it
//! writes it, never touches a row it did not create (a live line whose row already exists and
//! is not selfprov's is refused, and parked), and removes its row when the line stops being
//! live or is renumbered.

use super::event::{LineState, PbxEvent};
use super::{DeliveryError, SyncAction};
use crate::store::{OutboxRow, Store};

/// A connector writing one object per live line in the PBX's database.
pub(crate) trait DbConnector {
    /// The object as selfprov writes it, compared by `pbx sync`.
    type Row: PartialEq;
    /// The connector's name (its `[[pbx]]` table's).
    fn name(&self) -> &str;
    /// The key selfprov records for the line's object (Kamailio `user@domain`, Asterisk id).
    fn object(&self, line: &LineState) -> String;
    /// How the PBX names such an object in messages ("subscriber 1001@example.com").
    fn describe(&self, object: &str) -> String;
    /// The line's object as it should be at the PBX.
    fn want(&self, line: &LineState) -> Self::Row;
    /// A line the PBX's schema cannot hold (too long...): the reason.
    fn check(&self, line: &LineState) -> Result<(), DeliveryError>;
    /// What the PBX holds under the line's object key, if anything.
    async fn read(&self, line: &LineState) -> Result<Option<Self::Row>, DeliveryError>;
    /// Writes (inserts or replaces) the line's object.
    async fn write(&self, line: &LineState) -> Result<(), DeliveryError>;
    /// Deletes the object recorded as `object`.
    async fn remove(&self, object: &str) -> Result<(), DeliveryError>;
}

/// Makes the line's object at the PBX what the line says, under the ownership rule.
pub(crate) async fn upsert<C: DbConnector>(
    c: &C,
    store: &Store,
    line: &LineState,
) -> Result<(), DeliveryError> {
    c.check(line)?;
    let object = c.object(line);
    let owned = store
        .pbx_object(c.name(), line.line_id)
        .await
        .map_err(DeliveryError::store)?;
    if owned.as_deref() != Some(object.as_str()) {
        if c.read(line).await?.is_some() {
            return Err(DeliveryError::permanent(format!(
                "the PBX already has {}, which selfprov did not create: delete it there (or \
                 give line {} another number), then `selfprov pbx retry {}`",
                c.describe(&object),
                line.line_id,
                c.name()
            )));
        }
        if let Some(old) = &owned {
            // The line was renumbered: its old object goes.
            c.remove(old).await?;
        }
        // Recorded before the write: a crash in between leaves a claim the retry honours.
        store
            .set_pbx_object(c.name(), line.line_id, Some(&object))
            .await
            .map_err(DeliveryError::store)?;
    }
    c.write(line).await
}

/// Removes what selfprov created for the line, if anything.
pub(crate) async fn delete<C: DbConnector>(
    c: &C,
    store: &Store,
    line_id: i64,
) -> Result<(), DeliveryError> {
    let owned = store
        .pbx_object(c.name(), line_id)
        .await
        .map_err(DeliveryError::store)?;
    if let Some(object) = owned {
        c.remove(&object).await?;
        store
            .set_pbx_object(c.name(), line_id, None)
            .await
            .map_err(DeliveryError::store)?;
    }
    Ok(())
}

/// Delivers one outbox row (device events concern webhooks only).
pub(crate) async fn deliver<C: DbConnector>(
    c: &C,
    store: &Store,
    row: &OutboxRow,
) -> Result<(), DeliveryError> {
    match &row.event {
        PbxEvent::LineUpserted(line) => upsert(c, store, line).await,
        PbxEvent::LineDeleted { line_id, .. } => delete(c, store, *line_id).await,
        PbxEvent::DeviceBound(_) | PbxEvent::DeviceUnbound(_) => Ok(()),
    }
}

/// What differs between the live lines and what the PBX holds of selfprov's.
pub(crate) async fn diff<C: DbConnector>(
    c: &C,
    store: &Store,
    live: &[LineState],
) -> Result<Vec<SyncAction>, DeliveryError> {
    let owned = store
        .pbx_objects(c.name())
        .await
        .map_err(DeliveryError::store)?;
    let mut out = Vec::new();
    for line in live {
        let object = c.object(line);
        let mine = owned
            .iter()
            .any(|o| o.line_id == line.line_id && o.object == object);
        let line_id = line.line_id;
        match c.read(line).await? {
            None => out.push(SyncAction::Create { line_id, object }),
            Some(_) if !mine => out.push(SyncAction::Conflict {
                line_id,
                object,
                reason: "the PBX holds it and selfprov did not create it".into(),
            }),
            Some(have) if have != c.want(line) => out.push(SyncAction::Update { line_id, object }),
            Some(_) => {}
        }
    }
    for o in &owned {
        let live_object = live
            .iter()
            .find(|l| l.line_id == o.line_id)
            .map(|l| c.object(l));
        if live_object.as_deref() != Some(o.object.as_str()) {
            out.push(SyncAction::Delete {
                line_id: o.line_id,
                object: o.object.clone(),
            });
        }
    }
    Ok(out)
}

/// Mends one difference found by [`diff`].
pub(crate) async fn apply<C: DbConnector>(
    c: &C,
    store: &Store,
    live: &[LineState],
    action: &SyncAction,
) -> Result<(), DeliveryError> {
    match action {
        SyncAction::Create { line_id, .. } | SyncAction::Update { line_id, .. } => {
            match live.iter().find(|l| l.line_id == *line_id) {
                Some(line) => upsert(c, store, line).await,
                None => Ok(()),
            }
        }
        SyncAction::Delete { line_id, object } => {
            c.remove(object).await?;
            store
                .set_pbx_object(c.name(), *line_id, None)
                .await
                .map_err(DeliveryError::store)
        }
        SyncAction::Conflict { .. } | SyncAction::Send { .. } => Ok(()),
    }
}
