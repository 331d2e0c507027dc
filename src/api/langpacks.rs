//! `/langpacks/reload`: load the language packs again from disk without a restart (the same as
//! SIGHUP). Calls in progress keep the packs they started with; a broken pack is refused with
//! the loader's message and the packs in service stay.

use super::error::ApiError;
use super::ApiState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The packs now in service.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Reloaded {
    /// e.g. `en-US 1.1.0, fr-FR 1.1.0`.
    pub packs: String,
}

/// Reload the language packs.
///
/// Loads every pack of the settings' `languages` again (decode, resample, normalise, encode)
/// and puts them in service only if all of them load.
#[utoipa::path(
    post,
    path = "/langpacks/reload",
    tag = "settings",
    responses(
        (status = 200, description = "Reloaded", body = Reloaded),
        (status = 401, description = "No valid token", body = super::error::ErrorBody),
        (status = 422, description = "A pack is broken; the packs in service stay", body = super::error::ErrorBody),
        (status = 503, description = "No server runs in this process", body = super::error::ErrorBody),
    )
)]
pub async fn reload_langpacks(State(state): State<ApiState>) -> Result<Json<Reloaded>, ApiError> {
    let unavailable = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no SIP server runs in this process: send SIGHUP to the running `selfprov serve`",
        )
    };
    let tx = state.reload.as_ref().ok_or_else(unavailable)?;
    let (reply, rx) = tokio::sync::oneshot::channel();
    tx.send(reply).map_err(|_| unavailable())?;
    match rx.await.map_err(|_| unavailable())? {
        Ok(packs) => Ok(Json(Reloaded { packs })),
        Err(e) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("reload refused, the packs in service stay: {e}"),
        )),
    }
}
