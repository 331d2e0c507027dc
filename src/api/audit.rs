//! `GET /audit`: the self-provisioning audit trail (binds, unbinds, refused attempts), newest
//! first, filtered by device, user, outcome and time.

use super::error::{query_value, unknown_query_param, ApiError, FromQuery, QueryParams};
use super::list::Page;
use super::ApiState;
use crate::store::{format_time, AuditEvent, AuditQuery};
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::time::SystemTime;
use utoipa::{IntoParams, ToSchema};

/// One audit event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditOut {
    pub id: i64,
    /// RFC 3339 UTC.
    pub time: String,
    /// The stored device, when the phone is known.
    pub device_id: Option<i64>,
    /// What the phone identified itself by (MAC, device name or SIP identity).
    pub device: String,
    /// The user ID concerned, if any.
    pub user_id: Option<String>,
    /// `none`, `pin` or `admin-code`.
    pub auth_method: Option<String>,
    /// `bound`, `unbound`, `already-bound`, `unknown-user`, `user-disabled`, `bad-pin`,
    /// `bad-admin-code`, `no-pin`, `too-many-attempts`, `abandoned`, `error`...
    pub outcome: String,
    /// Free text for operators (never the digits a caller typed).
    pub detail: String,
}

impl From<&AuditEvent> for AuditOut {
    fn from(e: &AuditEvent) -> Self {
        AuditOut {
            id: e.id,
            time: format_time(e.time),
            device_id: e.device_id,
            device: e.device.clone(),
            user_id: e.user_id.clone(),
            auth_method: e.auth_method.map(|a| a.as_str().to_string()),
            outcome: e.outcome.clone(),
            detail: e.detail.clone(),
        }
    }
}

/// Filters of `GET /audit`.
#[derive(Debug, Clone, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only events of this device key (MAC, device name or SIP identity), exactly.
    pub device: Option<String>,
    /// Only events about this user ID.
    pub user: Option<String>,
    /// Only events with this outcome.
    pub outcome: Option<String>,
    /// Only events at or after this time (RFC 3339, UTC: `2026-11-02T09:30:00Z`).
    #[param(value_type = Option<String>)]
    pub from: Option<SystemTime>,
    /// Only events at or before this time (RFC 3339, UTC).
    #[param(value_type = Option<String>)]
    pub until: Option<SystemTime>,
    /// Most events to return (default 100, at most 1000).
    pub limit: Option<u32>,
    /// Events to skip first.
    pub offset: u32,
}

const AUDIT_PARAMS: &[&str] = &[
    "device", "user", "outcome", "from", "until", "limit", "offset",
];

/// Default page size of `/audit` (the trail grows without bound).
pub const AUDIT_DEFAULT_LIMIT: u32 = 100;
/// Largest page of `/audit`.
pub const AUDIT_MAX_LIMIT: u32 = 1000;

fn parse_time(name: &str, value: &str) -> Result<SystemTime, ApiError> {
    humantime::parse_rfc3339_weak(value).map_err(|e| {
        ApiError::bad_request(
            Some(name),
            format!(
                "query parameter {name}={value:?}: {e}; expected RFC 3339 UTC such as 2026-11-02T09:30:00Z"
            ),
        )
    })
}

impl FromQuery for AuditParams {
    fn from_pairs(pairs: Vec<(String, String)>) -> Result<Self, ApiError> {
        let mut p = AuditParams::default();
        for (name, value) in pairs {
            let text = || Some(value.clone()).filter(|v| !v.is_empty());
            match name.as_str() {
                "device" => p.device = text(),
                "user" => p.user = text(),
                "outcome" => p.outcome = text(),
                "from" => p.from = Some(parse_time(&name, &value)?),
                "until" => p.until = Some(parse_time(&name, &value)?),
                "limit" => {
                    let l: u32 = query_value(&name, &value, "a whole number 0-1000")?;
                    if l > AUDIT_MAX_LIMIT {
                        return Err(ApiError::bad_request(
                            Some("limit"),
                            format!("query parameter limit: at most {AUDIT_MAX_LIMIT}"),
                        ));
                    }
                    p.limit = Some(l);
                }
                "offset" => p.offset = query_value(&name, &value, "a whole number >= 0")?,
                _ => return Err(unknown_query_param(&name, AUDIT_PARAMS)),
            }
        }
        if let (Some(from), Some(until)) = (p.from, p.until) {
            if until < from {
                return Err(ApiError::bad_request(
                    Some("until"),
                    "query parameter until is before from",
                ));
            }
        }
        Ok(p)
    }
}

impl AuditParams {
    fn to_query(&self) -> AuditQuery {
        AuditQuery {
            device: self.device.clone(),
            user: self.user.clone(),
            outcome: self.outcome.clone(),
            since: self.from,
            until: self.until,
            limit: Some(self.limit.unwrap_or(AUDIT_DEFAULT_LIMIT)),
            offset: self.offset,
        }
    }
}

/// The audit trail, newest first.
#[utoipa::path(
    get,
    path = "/audit",
    tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, description = "One page of events, newest first", body = Page<AuditOut>),
        (status = 400, description = "Bad filter", body = super::error::ErrorBody),
        (status = 401, description = "No valid token", body = super::error::ErrorBody),
    )
)]
pub async fn list_audit(
    State(state): State<ApiState>,
    QueryParams(params): QueryParams<AuditParams>,
) -> Result<Json<Page<AuditOut>>, ApiError> {
    let page = state.store.list_audit(&params.to_query()).await?;
    Ok(Json(Page::from_store(page, |e| AuditOut::from(e))))
}
