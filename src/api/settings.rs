//! `GET/PUT /selfprov/settings`: the self-provisioning settings editable at run time (CUCM's
//! `updateSelfProvisioning` plus autoregistration). The admin code is write-only: `PUT` takes
//! it in clear and stores its argon2 hash; `GET` says only whether one is set.

use super::error::{ApiError, JsonBody};
use super::schema::apply_put;
use super::ApiState;
use crate::provisioning::secret::{
    hash_secret, run_hashing, validate_admin_code, MAX_SECRET_DIGITS,
};
use crate::store::SelfProvSettings;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How callers prove the right to bind a phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum AuthMode {
    /// No PIN asked.
    #[serde(rename = "non-secure")]
    NonSecure,
    /// The user's PIN.
    #[serde(rename = "secure-users")]
    SecureUsers,
    /// The user's PIN or the administrator's code.
    #[serde(rename = "secure-users-and-admins")]
    SecureUsersAndAdmins,
}

impl AuthMode {
    fn as_str(self) -> &'static str {
        match self {
            AuthMode::NonSecure => "non-secure",
            AuthMode::SecureUsers => "secure-users",
            AuthMode::SecureUsersAndAdmins => "secure-users-and-admins",
        }
    }
}

/// The settings as `GET` shows them and `PUT` changes them (`PUT` also takes `admin_code`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub auth_mode: AuthMode,
    /// Whether an administrator code is set (read-only: set it with `admin_code`).
    #[serde(default)]
    pub has_admin_code: bool,
    /// Extensions answered by the IVR (digits).
    pub ivr_extensions: Vec<String>,
    /// IVR languages (language tags), highest priority first; 1 to 9.
    pub languages: Vec<String>,
    /// Profile of users who have none.
    pub default_profile_id: Option<i64>,
    /// Autoregistration directory-number range (digits, start <= end, same length).
    pub autoreg_start_dn: Option<String>,
    pub autoreg_end_dn: Option<String>,
    pub autoreg_device_template_id: Option<i64>,
    pub autoreg_line_template_id: Option<i64>,
    /// May a caller with the admin code take over a phone bound to another user (audited).
    pub allow_admin_takeover: bool,
}

/// The body of `PUT /selfprov/settings`: any of the [`Settings`] fields, and `admin_code`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // documents the body; the handler merges a JSON object into `Settings`
pub struct SettingsUpdate {
    pub auth_mode: Option<AuthMode>,
    /// 1 to 20 digits (stored as an argon2 hash); `""` removes the code; absent or null keeps it.
    pub admin_code: Option<String>,
    pub ivr_extensions: Option<Vec<String>>,
    pub languages: Option<Vec<String>>,
    pub default_profile_id: Option<i64>,
    pub autoreg_start_dn: Option<String>,
    pub autoreg_end_dn: Option<String>,
    pub autoreg_device_template_id: Option<i64>,
    pub autoreg_line_template_id: Option<i64>,
    pub allow_admin_takeover: Option<bool>,
}

fn to_api(s: &SelfProvSettings) -> Result<Settings, ApiError> {
    let SelfProvSettings {
        auth_mode,
        admin_code_hash,
        ivr_extensions,
        languages,
        default_profile_id,
        autoreg_start_dn,
        autoreg_end_dn,
        autoreg_device_template_id,
        autoreg_line_template_id,
        allow_admin_takeover,
    } = s;
    let auth_mode =
        serde_json::from_value(serde_json::Value::String(auth_mode.clone())).map_err(|_| {
            tracing::error!(auth_mode = %auth_mode, "stored settings hold an unknown auth mode");
            ApiError::internal("the stored settings hold an unknown auth mode: see the server log")
        })?;
    Ok(Settings {
        auth_mode,
        has_admin_code: admin_code_hash.is_some(),
        ivr_extensions: ivr_extensions.clone(),
        languages: languages.clone(),
        default_profile_id: *default_profile_id,
        autoreg_start_dn: autoreg_start_dn.clone(),
        autoreg_end_dn: autoreg_end_dn.clone(),
        autoreg_device_template_id: *autoreg_device_template_id,
        autoreg_line_template_id: *autoreg_line_template_id,
        allow_admin_takeover: *allow_admin_takeover,
    })
}

/// The self-provisioning settings.
#[utoipa::path(
    get,
    path = "/selfprov/settings",
    tag = "settings",
    responses(
        (status = 200, description = "The settings", body = Settings),
        (status = 401, description = "No valid token", body = super::error::ErrorBody),
    )
)]
pub async fn get_settings(State(state): State<ApiState>) -> Result<Json<Settings>, ApiError> {
    Ok(Json(to_api(&state.store.get_settings().await?)?))
}

/// Change the settings: the fields in the body are replaced, the others kept.
#[utoipa::path(
    put,
    path = "/selfprov/settings",
    tag = "settings",
    request_body = SettingsUpdate,
    responses(
        (status = 204, description = "Updated"),
        (status = 400, description = "Body is not valid JSON", body = super::error::ErrorBody),
        (status = 401, description = "No valid token", body = super::error::ErrorBody),
        (status = 422, description = "A field is invalid", body = super::error::ErrorBody),
    )
)]
pub async fn update_settings(
    State(state): State<ApiState>,
    JsonBody(mut patch): JsonBody<serde_json::Value>,
) -> Result<StatusCode, ApiError> {
    let current = state.store.get_settings().await?;
    // The admin code is not part of what GET shows: take it out before the merge.
    let admin_code = match patch.as_object_mut().and_then(|o| o.remove("admin_code")) {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(_) => {
            return Err(ApiError::invalid(
                "admin_code",
                "field admin_code: expected a string of digits",
            ))
        }
    };
    if let Some(o) = patch.as_object_mut() {
        if o.contains_key("has_admin_code") {
            return Err(ApiError::invalid(
                "has_admin_code",
                "has_admin_code is read-only: set or remove the code with admin_code",
            ));
        }
    }
    let merged: Settings = apply_put(&to_api(&current)?, patch)?;
    let admin_code_hash = match admin_code {
        None => current.admin_code_hash.clone(),
        Some(code) if code.is_empty() => None,
        Some(code) => {
            validate_admin_code(&code).map_err(|e| {
                ApiError::invalid(
                    "admin_code",
                    format!("{e} (1 to {MAX_SECRET_DIGITS} digits; \"\" removes the code)"),
                )
            })?;
            let hash = run_hashing(move || hash_secret(&code))
                .await
                .ok_or_else(|| {
                    ApiError::internal("hashing the admin code failed: the hashing thread failed")
                })?
                .map_err(|e| ApiError::internal(format!("hashing the admin code failed: {e}")))?;
            Some(hash)
        }
    };
    if let Some(dir) = &state.langpacks {
        check_installed(dir, &merged.languages)?;
    }
    let Settings {
        auth_mode,
        has_admin_code: _,
        ivr_extensions,
        languages,
        default_profile_id,
        autoreg_start_dn,
        autoreg_end_dn,
        autoreg_device_template_id,
        autoreg_line_template_id,
        allow_admin_takeover,
    } = merged;
    state
        .store
        .update_settings(SelfProvSettings {
            auth_mode: auth_mode.as_str().to_string(),
            admin_code_hash,
            ivr_extensions,
            languages,
            default_profile_id,
            autoreg_start_dn,
            autoreg_end_dn,
            autoreg_device_template_id,
            autoreg_line_template_id,
            allow_admin_takeover,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Refuses languages whose pack is not installed in `dir` (its manifest does not load): the
/// server could not start with them, nor reload.
fn check_installed(dir: &std::path::Path, languages: &[String]) -> Result<(), ApiError> {
    for tag in languages {
        if crate::langpack::PackManifest::load(&dir.join(tag)).is_err() {
            let mut installed: Vec<String> = std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok())
                        .filter(|e| e.path().join(crate::langpack::MANIFEST_FILE).is_file())
                        .filter_map(|e| e.file_name().into_string().ok())
                        .collect()
                })
                .unwrap_or_default();
            installed.sort();
            return Err(ApiError::invalid(
                "languages",
                format!(
                    "no language pack {tag} is installed in {}: install it there (docs/lang-packs.md) \
                     or choose among the installed packs: {}",
                    dir.display(),
                    if installed.is_empty() {
                        "none".to_string()
                    } else {
                        installed.join(", ")
                    }
                ),
            ));
        }
    }
    Ok(())
}
