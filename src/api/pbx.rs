//! `/pbx`: the call-control connectors (`[[pbx]]` tables): delivery status, `sync` (compare
//! the PBX with the store and mend the difference) and `retry` (parked rows back in line).

use super::error::{ApiError, ErrorBody};
use super::ApiState;
use crate::pbx::SyncAction;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::time::{Duration, UNIX_EPOCH};
use utoipa::{IntoParams, ToSchema};

/// One connector and its outbox.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PbxOut {
    pub name: String,
    /// `kamailio`, `asterisk-realtime` or `webhook`.
    pub kind: String,
    /// Where the lines it serves register (`host:port`).
    pub registrar: String,
    /// Changes waiting for delivery.
    pub pending: u64,
    /// Changes the PBX refused `park_after` times; `POST /pbx/{name}/retry` puts them back.
    pub parked: u64,
    /// When the oldest waiting change was made (RFC 3339).
    pub oldest_pending_at: Option<String>,
    /// Changes delivered since the store was created.
    pub delivered: u64,
    pub last_success_at: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

/// What `POST /pbx/{name}/sync` found (and, unless `dry_run`, mended).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SyncOut {
    pub name: String,
    pub dry_run: bool,
    pub actions: Vec<SyncAction>,
}

/// What `POST /pbx/{name}/retry` did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RetryOut {
    pub name: String,
    /// Parked changes put back in line.
    pub retried: u64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SyncParams {
    /// Report the differences without changing anything.
    #[serde(default)]
    pub dry_run: bool,
}

fn time(ms: Option<i64>) -> Option<String> {
    ms.map(|m| {
        crate::store::format_time(UNIX_EPOCH + Duration::from_millis(u64::try_from(m).unwrap_or(0)))
    })
}

fn find<'a>(state: &'a ApiState, name: &str) -> Result<&'a crate::pbx::Pbx, ApiError> {
    state
        .pbx
        .0
        .iter()
        .map(|p| p.as_ref())
        .find(|p| p.name() == name)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no PBX connector named {name:?}: GET /api/v1/pbx lists the [[pbx]] tables of \
                 the config"
            ))
        })
}

/// The PBX connectors and their outboxes.
///
/// One entry per `[[pbx]]` table of the configuration, in its order.
#[utoipa::path(
    get,
    path = "/pbx",
    tag = "pbx",
    responses(
        (status = 200, description = "The connectors", body = Vec<PbxOut>),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn list_pbx(State(state): State<ApiState>) -> Result<Json<Vec<PbxOut>>, ApiError> {
    let mut out = Vec::new();
    for p in state.pbx.0.iter() {
        let s = state.store.pbx_status(p.name()).await?;
        out.push(PbxOut {
            name: p.name().to_string(),
            kind: p.config.kind.as_str().to_string(),
            registrar: p.config.registrar.clone(),
            pending: s.pending,
            parked: s.parked,
            oldest_pending_at: time(s.oldest_pending_at),
            delivered: s.delivered,
            last_success_at: time(s.last_success_at),
            last_error: s.last_error,
            last_error_at: time(s.last_error_at),
        });
    }
    Ok(Json(out))
}

/// Compare a PBX with the store and mend the difference.
///
/// Reads what the PBX holds for the lines selfprov owns there and for every live line, then
/// creates what is missing, updates what differs and deletes what selfprov owns for lines no
/// longer live; rows selfprov did not create are reported as conflicts and left alone. A
/// webhook holds no state: every live line is sent again. `dry_run=true` only reports.
#[utoipa::path(
    post,
    path = "/pbx/{name}/sync",
    tag = "pbx",
    params(("name" = String, Path, description = "The connector's name"), SyncParams),
    responses(
        (status = 200, description = "The differences found", body = SyncOut),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such connector", body = ErrorBody),
        (status = 503, description = "The PBX could not be read or written", body = ErrorBody),
    )
)]
pub async fn sync_pbx(
    State(state): State<ApiState>,
    super::error::PathParams(name): super::error::PathParams<String>,
    Query(params): Query<SyncParams>,
) -> Result<Json<SyncOut>, ApiError> {
    let p = find(&state, &name)?;
    let actions = p.sync(&state.store, params.dry_run).await.map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("{e}; try again when the PBX is reachable"),
        )
    })?;
    Ok(Json(SyncOut {
        name,
        dry_run: params.dry_run,
        actions,
    }))
}

/// Put a connector's parked changes back in line.
#[utoipa::path(
    post,
    path = "/pbx/{name}/retry",
    tag = "pbx",
    params(("name" = String, Path, description = "The connector's name")),
    responses(
        (status = 200, description = "How many were put back", body = RetryOut),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such connector", body = ErrorBody),
    )
)]
pub async fn retry_pbx(
    State(state): State<ApiState>,
    super::error::PathParams(name): super::error::PathParams<String>,
) -> Result<Json<RetryOut>, ApiError> {
    find(&state, &name)?;
    let retried = state.store.outbox_retry_parked(&name).await?;
    Ok(Json(RetryOut { name, retried }))
}
