//! Self-provisioning settings at run time.
//!
//! The settings (auth mode, admin code, IVR extensions...) live in the store, where the API and
//! `selfprov settings` edit them, possibly from another process or another node sharing a
//! PostgreSQL database. The server reads them at start, then polls the one-row table every
//! [`POLL_INTERVAL`] and publishes changes on a `watch` channel: a new call takes the settings
//! current when it arrives and keeps them for its whole life; the SIP task updates the extensions
//! it answers.
//!
//! `[ivr]` keys set in the config file (`auth_mode`, `admin_auth_code`, `extensions`) are written
//! to the stored settings at start-up, so a file-managed deployment keeps working.

use crate::config::{AuthMode, IvrConfig};
use crate::provisioning::secret::{hash_secret, run_hashing, verify_secret};
use crate::store::{SelfProvSettings, Store};
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the stored settings are re-read.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What the IVR needs of the settings, parsed once per change.
#[derive(Clone, PartialEq, Eq)]
pub struct IvrRuntime {
    pub auth_mode: AuthMode,
    /// argon2 PHC of the admin code; `None`: no admin code.
    pub admin_code_hash: Option<String>,
    pub extensions: Vec<String>,
    pub allow_admin_takeover: bool,
    /// IVR languages (pack tags), highest priority first.
    pub languages: Vec<String>,
}

impl std::fmt::Debug for IvrRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IvrRuntime")
            .field("auth_mode", &self.auth_mode.as_str())
            .field("has_admin_code", &self.admin_code_hash.is_some())
            .field("extensions", &self.extensions)
            .field("allow_admin_takeover", &self.allow_admin_takeover)
            .field("languages", &self.languages)
            .finish()
    }
}

impl IvrRuntime {
    pub fn from_stored(s: &SelfProvSettings) -> anyhow::Result<IvrRuntime> {
        let auth_mode = s
            .auth_mode
            .parse::<AuthMode>()
            .map_err(|e| anyhow::anyhow!("stored self-provisioning settings: {e}"))?;
        Ok(IvrRuntime {
            auth_mode,
            admin_code_hash: s.admin_code_hash.clone().filter(|h| !h.is_empty()),
            extensions: s.ivr_extensions.clone(),
            allow_admin_takeover: s.allow_admin_takeover,
            languages: s.languages.clone(),
        })
    }
}

/// Writes the `[ivr]` keys present in the config file into the stored settings (no write when
/// they already match). A plain admin code is hashed before it is stored.
pub async fn apply_config(store: &Store, ivr: &IvrConfig) -> anyhow::Result<()> {
    let stored = store
        .get_settings()
        .await
        .context("reading the self-provisioning settings")?;
    let (s, changed) = merge_config(stored, ivr).await?;
    if !changed.is_empty() {
        store.update_settings(s).await.with_context(|| {
            format!(
                "storing the config file's {} in the self-provisioning settings",
                changed.join(", ")
            )
        })?;
        tracing::info!(keys = ?changed, "config file values written to the self-provisioning settings");
    }
    Ok(())
}

/// The settings `s` with the config file's `[ivr]` keys applied, and the keys that changed
/// them; fails where they cannot run (the admin mode without a code). Writes nothing (`config
/// check` uses it too).
pub async fn merge_config(
    mut s: SelfProvSettings,
    ivr: &IvrConfig,
) -> anyhow::Result<(SelfProvSettings, Vec<&'static str>)> {
    let mut changed = Vec::new();
    if let Some(mode) = ivr.auth_mode {
        if s.auth_mode != mode.as_str() {
            s.auth_mode = mode.as_str().to_string();
            changed.push("ivr.auth_mode");
        }
    }
    if let Some(exts) = &ivr.extensions {
        if &s.ivr_extensions != exts {
            s.ivr_extensions = exts.clone();
            changed.push("ivr.extensions");
        }
    }
    let languages = ivr
        .languages
        .clone()
        .or_else(|| ivr.language.clone().map(|l| vec![l]));
    if let Some(langs) = languages {
        if s.languages != langs {
            s.languages = langs;
            changed.push("ivr.languages");
        }
    }
    if let Some(code) = &ivr.admin_auth_code {
        let current = s.admin_code_hash.as_deref().unwrap_or("");
        let same = if code.is_empty() {
            current.is_empty()
        } else if code.starts_with("$argon2") {
            current == code
        } else {
            // Re-hashing would give a new salt on every start: keep a hash that matches.
            let (hash, code) = (current.to_string(), code.clone());
            !hash.is_empty()
                && run_hashing(move || verify_secret(&hash, &code))
                    .await
                    .unwrap_or(false)
        };
        if !same {
            s.admin_code_hash = if code.is_empty() {
                None
            } else if code.starts_with("$argon2") {
                Some(code.clone())
            } else {
                let code = code.clone();
                Some(
                    run_hashing(move || hash_secret(&code))
                        .await
                        .context("hashing ivr.admin_auth_code: the hashing thread failed")?
                        .context("hashing ivr.admin_auth_code")?,
                )
            };
            changed.push("ivr.admin_auth_code");
        }
    }
    if s.auth_mode == AuthMode::SecureUsersAndAdmins.as_str() && s.admin_code_hash.is_none() {
        anyhow::bail!(
            "auth mode secure-users-and-admins needs an admin code: set ivr.admin_auth_code in the \
             config file, or the admin code with `selfprov settings update`"
        );
    }
    Ok((s, changed))
}

/// Reads the settings and keeps them current in the background.
pub async fn watch(store: Store) -> anyhow::Result<watch::Receiver<Arc<IvrRuntime>>> {
    let stored = store
        .get_settings()
        .await
        .context("reading the self-provisioning settings")?;
    let initial = IvrRuntime::from_stored(&stored)?;
    tracing::info!(settings = ?initial, "self-provisioning settings");
    let (tx, rx) = watch::channel(Arc::new(initial));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if tx.is_closed() {
                return;
            }
            let next = match store
                .get_settings()
                .await
                .map_err(anyhow::Error::from)
                .and_then(|s| IvrRuntime::from_stored(&s))
            {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "could not re-read the self-provisioning settings; keeping the current ones");
                    continue;
                }
            };
            if **tx.borrow() != next {
                tracing::info!(settings = ?next, "self-provisioning settings changed");
                let _ = tx.send(Arc::new(next));
            }
        }
    });
    Ok(rx)
}
