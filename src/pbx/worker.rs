//! The delivery worker: one task per connector sends that connector's outbox rows in order.
//!
//! The head row is tried; on success it goes and the next follows at once. On failure it is
//! tried again after an exponential back-off (1 s doubling to [`MAX_BACKOFF`]); while it waits,
//! later rows wait too, so a PBX never sees a line's changes out of order. A failure the PBX
//! blames on the row itself (a constraint, a 4xx) parks the row after `park_after` tries, with
//! its error, and the rows after it go on; an unavailable PBX parks nothing, however long it is
//! down. The task wakes when this process commits rows and polls every [`POLL`] for rows other
//! processes (the CLI) wrote.

use super::Pbx;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn, Instrument};

/// How often an idle worker looks for rows written by another process.
pub const POLL: Duration = Duration::from_secs(1);
/// Longest wait between two tries of a row.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The wait before try number `attempts + 1` of a row that failed `attempts` times (>= 1).
pub fn backoff(attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exp).min(MAX_BACKOFF)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Starts one delivery task per connector.
pub fn spawn_all(pbxs: &[Arc<Pbx>], store: &Store) -> Vec<tokio::task::JoinHandle<()>> {
    pbxs.iter()
        .map(|p| {
            let p = p.clone();
            let span = tracing::info_span!("pbx", connector = %p.name());
            tokio::spawn(run(p, store.clone()).instrument(span))
        })
        .collect()
}

/// Delivers `pbx`'s rows until the process ends.
pub async fn run(pbx: Arc<Pbx>, store: Store) {
    let name = pbx.name().to_string();
    let metrics = crate::metrics::global();
    let timeout = Duration::from_secs(pbx.config.timeout_secs);
    let park_after = pbx.config.park_after;
    let mut wake = store.outbox_watch();
    let mut failing = false;
    metrics.pbx_connector(&name);
    loop {
        if let Ok(s) = store.pbx_status(&name).await {
            metrics.set_pbx_outbox(&name, s.pending, s.parked);
        }
        let wait = match store.outbox_next(&name).await {
            Err(e) => {
                warn!(error = %e, "reading the PBX outbox failed; trying again");
                POLL
            }
            Ok(None) => POLL,
            Ok(Some(row)) => {
                let now = now_ms();
                if row.next_attempt_at > now {
                    Duration::from_millis(u64::try_from(row.next_attempt_at - now).unwrap_or(0))
                } else {
                    let result =
                        match tokio::time::timeout(timeout, pbx.deliver(&store, &row)).await {
                            Ok(r) => r,
                            Err(_) => Err(super::DeliveryError {
                                transient: true,
                                message: format!("no answer within {}s", timeout.as_secs()),
                            }),
                        };
                    match result {
                        Ok(()) => {
                            if let Err(e) = store.outbox_delivered(&name, row.id).await {
                                warn!(row = row.id, error = %e, "recording a delivery failed; \
                                      the row will be sent again (deliveries are idempotent)");
                                POLL
                            } else {
                                metrics.pbx_delivery(&name, "delivered");
                                if failing {
                                    info!(row = row.id, "the PBX takes deliveries again");
                                    failing = false;
                                }
                                continue;
                            }
                        }
                        Err(e) => {
                            let attempts = row.attempts.saturating_add(1);
                            let park = !e.transient && attempts >= park_after;
                            let delay = backoff(attempts);
                            let next =
                                now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
                            if park {
                                warn!(row = row.id, event = row.event.name(), error = %e,
                                      "the PBX refused this change {attempts} times: parked. \
                                       Fix the cause, then `selfprov pbx retry {name}`");
                                metrics.pbx_delivery(&name, "parked");
                            } else {
                                if !failing || attempts == 1 {
                                    warn!(row = row.id, event = row.event.name(), error = %e,
                                          attempts, "delivery failed; retrying in {}s (later \
                                          changes wait, in order)", delay.as_secs());
                                }
                                failing = true;
                                metrics.pbx_delivery(&name, "retry");
                            }
                            if let Err(se) = store
                                .outbox_failed(&name, row.id, &e.message, next, park)
                                .await
                            {
                                warn!(row = row.id, error = %se, "recording a failed delivery \
                                      failed");
                            }
                            if park {
                                continue;
                            }
                            delay
                        }
                    }
                }
            }
        };
        tokio::select! {
            _ = wake.changed() => {}
            _ = tokio::time::sleep(wait.min(MAX_BACKOFF)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(6), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
        assert_eq!(backoff(0), Duration::from_secs(1));
    }
}
