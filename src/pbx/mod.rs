//! Call-control connectors: what selfprov decides (a line made live by a binding, changed,
//! revoked) reaches the site's PBX, without loss.
//!
//! Every change that touches what a PBX knows writes outbox rows in the same store transaction
//! as the change ([`event`] has what they say; the `*_in_tx!` macros of the store write them).
//! The IVR never waits for a PBX: one delivery task per connector ([`worker`]) sends that
//! connector's rows in order, retrying with exponential back-off while the PBX is unavailable
//! and parking a row that the PBX keeps refusing, with its error. `pbx sync` compares what a
//! PBX holds with the store and mends the difference.
//!
//! | connector | writes |
//! |---|---|
//! | [`kamailio`] | Kamailio's `subscriber` rows (auth_db), PostgreSQL or SQLite |
//! | [`asterisk`] | Asterisk PJSIP realtime rows (`ps_endpoints`, `ps_auths`, `ps_aors`), PostgreSQL |
//! | [`webhook`] | a signed JSON event per change, POSTed to a URL |

pub mod asterisk;
pub mod config;
mod db;
pub mod event;
pub mod kamailio;
pub mod webhook;
pub mod worker;

pub use config::{PbxConfig, PbxKind};

use crate::store::{OutboxRow, Store, StoreError};
use event::LineState;
use serde::Serialize;

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryError {
    /// True: the PBX (or selfprov's store) is unavailable; the row waits and is tried again,
    /// however long it takes. False: the PBX refused this row; it is parked after
    /// `park_after` tries.
    pub transient: bool,
    pub message: String,
}

impl DeliveryError {
    pub fn permanent(message: String) -> DeliveryError {
        DeliveryError {
            transient: false,
            message,
        }
    }

    pub fn store(e: StoreError) -> DeliveryError {
        DeliveryError {
            transient: true,
            message: format!("selfprov's store: {e}"),
        }
    }
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A contact registered at the PBX for a line selfprov owns there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbxRegistration {
    pub line_id: i64,
    /// The phone's User-Agent, as the PBX stored it.
    pub user_agent: String,
    /// The contact and its `+sip.instance`, where the PBX keeps them.
    pub contact: String,
}

impl PbxRegistration {
    /// Whether this registration names the MAC (12 hex digits): in the User-Agent (Yealink,
    /// Snom, Grandstream), the contact or its instance (Cisco `SEP<MAC>`, `urn:uuid:...<MAC>`).
    pub fn names_mac(&self, mac: &str) -> bool {
        let want = mac.to_ascii_lowercase();
        [&self.user_agent, &self.contact].iter().any(|s| {
            let hex: String = s
                .chars()
                .filter(|c| c.is_ascii_hexdigit())
                .collect::<String>()
                .to_ascii_lowercase();
            hex.contains(&want)
        })
    }
}

/// One difference `pbx sync` found between a PBX and the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum SyncAction {
    /// A live line has no row at the PBX.
    Create { line_id: i64, object: String },
    /// The PBX's row differs from the line (password, caller ID...).
    Update { line_id: i64, object: String },
    /// selfprov owns a row at the PBX for a line that is no longer live.
    Delete { line_id: i64, object: String },
    /// A live line's row exists at the PBX but selfprov did not create it: left alone.
    Conflict {
        line_id: i64,
        object: String,
        reason: String,
    },
    /// A webhook holds no state to compare: each live line is sent again.
    Send { line_id: i64, object: String },
}

/// A configured connector.
pub enum Connector {
    Kamailio(kamailio::Kamailio),
    Asterisk(asterisk::Asterisk),
    Webhook(webhook::Webhook),
}

/// One configured connector with its settings.
pub struct Pbx {
    pub config: PbxConfig,
    pub connector: Connector,
}

impl Pbx {
    /// Builds the connector (no I/O: database pools connect on first use).
    pub fn new(config: &PbxConfig) -> Result<Pbx, String> {
        let connector = match config.kind {
            PbxKind::Kamailio => Connector::Kamailio(kamailio::Kamailio::new(config)?),
            PbxKind::AsteriskRealtime => Connector::Asterisk(asterisk::Asterisk::new(config)?),
            PbxKind::Webhook => Connector::Webhook(webhook::Webhook::new(config)?),
        };
        Ok(Pbx {
            config: config.clone(),
            connector,
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Sends one outbox row.
    pub async fn deliver(&self, store: &Store, row: &OutboxRow) -> Result<(), DeliveryError> {
        match &self.connector {
            Connector::Kamailio(k) => db::deliver(k, store, row).await,
            Connector::Asterisk(a) => db::deliver(a, store, row).await,
            Connector::Webhook(w) => w.deliver(row).await,
        }
    }

    /// The registrations the PBX holds for `line_ids` (only connectors that can see them;
    /// others answer none).
    pub async fn registrations(
        &self,
        store: &Store,
        line_ids: &[i64],
    ) -> Result<Vec<PbxRegistration>, DeliveryError> {
        match &self.connector {
            Connector::Kamailio(k) => k.registrations(store, line_ids).await,
            Connector::Asterisk(a) => a.registrations(store, line_ids).await,
            Connector::Webhook(_) => Ok(Vec::new()),
        }
    }

    /// What `pbx sync` would change.
    pub async fn diff(
        &self,
        store: &Store,
        live: &[LineState],
    ) -> Result<Vec<SyncAction>, DeliveryError> {
        match &self.connector {
            Connector::Kamailio(k) => db::diff(k, store, live).await,
            Connector::Asterisk(a) => db::diff(a, store, live).await,
            Connector::Webhook(_) => Ok(live
                .iter()
                .map(|l| SyncAction::Send {
                    line_id: l.line_id,
                    object: l.number.clone(),
                })
                .collect()),
        }
    }

    /// Compares the PBX with the store and, unless `dry_run`, mends each difference. Returns
    /// the differences found (a webhook gets every live line again, through its outbox).
    pub async fn sync(&self, store: &Store, dry_run: bool) -> Result<Vec<SyncAction>, String> {
        let live = store.live_lines().await.map_err(|e| e.to_string())?;
        let actions = self
            .diff(store, &live)
            .await
            .map_err(|e| format!("reading {}: {e}", self.name()))?;
        if dry_run {
            return Ok(actions);
        }
        if let Connector::Webhook(_) = &self.connector {
            let events: Vec<event::PbxEvent> = live
                .iter()
                .cloned()
                .map(event::PbxEvent::LineUpserted)
                .collect();
            store
                .enqueue_pbx_events(self.name(), &events)
                .await
                .map_err(|e| e.to_string())?;
            return Ok(actions);
        }
        for a in &actions {
            let r = match &self.connector {
                Connector::Kamailio(k) => db::apply(k, store, &live, a).await,
                Connector::Asterisk(x) => db::apply(x, store, &live, a).await,
                Connector::Webhook(_) => Ok(()),
            };
            r.map_err(|e| format!("{}: {a:?}: {e}", self.name()))?;
        }
        Ok(actions)
    }
}

/// Builds every configured connector.
pub fn connectors(list: &[PbxConfig]) -> Result<Vec<Pbx>, String> {
    list.iter()
        .map(|c| Pbx::new(c).map_err(|e| format!("[[pbx]] {:?}: {e}", c.name)))
        .collect()
}

/// The registrar (and outbound proxy) written into phones' files for PBX-served lines: the
/// first `[[pbx]]` table's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRegistrar {
    pub host: String,
    pub port: u16,
    pub proxy: Option<(String, u16)>,
}

/// The [`LineRegistrar`] of the configuration, if any `[[pbx]]` is set.
pub fn line_registrar(list: &[PbxConfig]) -> Option<LineRegistrar> {
    let first = list.first()?;
    // Bare hosts (IPv6 without brackets), as the vendor templates expect.
    let bare = |(h, p): (String, u16)| {
        (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p,
        )
    };
    let (host, port) = bare(config::split_host_port(&first.registrar)?);
    Some(LineRegistrar {
        host,
        port,
        proxy: first
            .outbound_proxy
            .as_deref()
            .and_then(config::split_host_port)
            .map(bare),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(kind: &str, extra: &str) -> PbxConfig {
        toml::from_str(&format!(
            "name = \"p\"\nkind = \"{kind}\"\nregistrar = \"10.0.0.2:5060\"\n{extra}"
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn connectors_are_built_without_connecting() {
        let ok = [
            table("kamailio", "db_url = \"postgres://k:s@192.0.2.1/kamailio\""),
            table("kamailio", "db_url = \"sqlite:///nonexistent/kamailio.db\""),
            table(
                "asterisk-realtime",
                "db_url = \"postgres://a:s@192.0.2.1/asterisk\"",
            ),
            table(
                "webhook",
                "url = \"https://192.0.2.1/hook\"\nsecret = \"0123456789abcdef\"",
            ),
        ];
        for c in &ok {
            c.validate().unwrap();
        }
        assert_eq!(connectors(&ok).unwrap().len(), 4);
        // A URL the driver cannot parse fails where `serve` would (and `config check`).
        let bad = table(
            "kamailio",
            "db_url = \"postgres://k:s@host:notaport/kamailio\"",
        );
        bad.validate().unwrap();
        let e = connectors(&[bad]).err().unwrap();
        assert!(e.contains("\"p\"") && e.contains("db_url"), "{e}");
    }

    #[test]
    fn the_first_table_gives_the_phones_registrar() {
        let mut a = table(
            "webhook",
            "url = \"http://h/x\"\nsecret = \"0123456789abcdef\"",
        );
        a.registrar = "[2001:db8::2]:5070".into();
        a.outbound_proxy = Some("10.0.0.3".into());
        let r = line_registrar(&[a]).unwrap();
        assert_eq!(
            r,
            LineRegistrar {
                host: "2001:db8::2".into(),
                port: 5070,
                proxy: Some(("10.0.0.3".into(), 5060)),
            }
        );
        assert_eq!(line_registrar(&[]), None);
    }
}
