//! The webhook connector: each outbox event is POSTed as JSON to the configured URL, for
//! receivers that drive a PBX through its own API (Wazo's confd, FreePBX, 3CX...).
//!
//! Body ([`crate::pbx::event::PbxEvent`] with two more keys): `{"id": "<connector>-<row id>", "event": "line.upserted", "time": "<RFC 3339>",
//! "data": {...}}`. Headers: `X-Selfprov-Event`, `Idempotency-Key` (= `id`, the same on every
//! retry of a row, so a receiver can drop a repeat), and `X-Selfprov-Signature: sha256=<hex>`,
//! the HMAC-SHA256 of the exact body bytes with the shared `secret`. A 2xx is a delivery; a 5xx,
//! 408, 429 or no answer is retried for as long as it takes; any other status is the event's own
//! fault and parks it after `park_after` tries.

use super::DeliveryError;
use crate::pbx::PbxConfig;
use crate::store::OutboxRow;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::time::Duration;

/// The signature header's name.
pub const SIGNATURE_HEADER: &str = "X-Selfprov-Signature";

pub struct Webhook {
    name: String,
    url: String,
    secret: String,
    client: reqwest::Client,
}

/// `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    let out = mac.finalize().into_bytes();
    let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The JSON body of one row.
pub fn body(connector: &str, row: &OutboxRow) -> Vec<u8> {
    let mut v = serde_json::to_value(&row.event).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("id".into(), format!("{connector}-{}", row.id).into());
        let created = std::time::UNIX_EPOCH
            + Duration::from_millis(u64::try_from(row.created_at).unwrap_or(0));
        obj.insert("time".into(), crate::store::format_time(created).into());
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

impl Webhook {
    pub fn new(cfg: &PbxConfig) -> Result<Webhook, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.timeout_secs))
            .user_agent(concat!("selfprov/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Webhook {
            name: cfg.name.clone(),
            url: cfg.url.clone().unwrap_or_default(),
            secret: cfg.secret.clone().unwrap_or_default(),
            client,
        })
    }

    pub async fn deliver(&self, row: &OutboxRow) -> Result<(), DeliveryError> {
        self.post(row).await
    }

    /// POSTs one row (also used by `pbx sync` to send the live lines again).
    pub async fn post(&self, row: &OutboxRow) -> Result<(), DeliveryError> {
        let body = body(&self.name, row);
        let id = format!("{}-{}", self.name, row.id);
        let response = self
            .client
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("X-Selfprov-Event", row.event.name())
            .header("Idempotency-Key", id.as_str())
            .header(SIGNATURE_HEADER, signature(&self.secret, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| DeliveryError {
                transient: true,
                message: format!("POST {}: {e}", self.url),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let text: String = text.chars().take(200).collect();
        let transient = status.is_server_error() || matches!(status.as_u16(), 408 | 429);
        Err(DeliveryError {
            transient,
            message: format!("POST {} answered {status}: {text}", self.url),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
