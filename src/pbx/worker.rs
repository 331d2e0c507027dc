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
        .flat_map(|p| {
            let p = p.clone();
            let span = tracing::info_span!("pbx", connector = %p.name());
            let mut tasks = vec![tokio::spawn(
                run(p.clone(), store.clone()).instrument(span.clone()),
            )];
            if p.config.watch_registrations {
                tasks.push(tokio::spawn(
                    watch_registrations(p, store.clone()).instrument(span),
                ));
            }
            tasks
        })
        .collect()
}

/// How often the PBX's registrations are read.
pub const REGISTRATION_POLL: Duration = Duration::from_secs(2);

/// Which awaiting devices the registrations show: a device whose MAC a registration of one of
/// its lines names, or, when none names any MAC we wait for, the only device waiting on that
/// line (a phone that does not reveal its MAC).
pub fn registered_devices(
    awaiting: &[crate::store::AwaitingDevice],
    regs: &[super::PbxRegistration],
) -> Vec<i64> {
    let mut out = Vec::new();
    for d in awaiting {
        let mine = regs.iter().filter(|r| d.line_ids.contains(&r.line_id));
        let by_mac = d.mac.as_deref().is_some_and(|m| {
            regs.iter()
                .any(|r| d.line_ids.contains(&r.line_id) && r.names_mac(m))
        });
        let alone = mine.clone().any(|r| {
            let waiting_here = awaiting
                .iter()
                .filter(|o| o.line_ids.contains(&r.line_id))
                .count();
            let names_other = awaiting.iter().any(|o| {
                o.device_id != d.device_id && o.mac.as_deref().is_some_and(|m| r.names_mac(m))
            });
            waiting_here == 1 && !names_other
        });
        if by_mac || alone {
            out.push(d.device_id);
        }
    }
    out
}

/// Moves devices to `provisioned` when their line registers at the PBX (`watch_registrations`).
pub async fn watch_registrations(pbx: Arc<Pbx>, store: Store) {
    let mut tick = tokio::time::interval(REGISTRATION_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let awaiting = match store.devices_awaiting_registration().await {
            Ok(a) if a.is_empty() => continue,
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "reading the devices waiting for their line failed");
                continue;
            }
        };
        let mut lines: Vec<i64> = awaiting.iter().flat_map(|d| d.line_ids.clone()).collect();
        lines.sort_unstable();
        lines.dedup();
        let regs = match pbx.registrations(&store, &lines).await {
            Ok(r) => {
                failing = false;
                r
            }
            Err(e) => {
                if !failing {
                    warn!(error = %e, "reading the PBX's registrations failed; devices stay \
                          provisioning until it can be read (watch_registrations)");
                }
                failing = true;
                continue;
            }
        };
        for id in registered_devices(&awaiting, &regs) {
            match store.line_registered(id).await {
                Ok(true) => info!(
                    device = id,
                    "the device's line registered at the PBX: provisioned"
                ),
                Ok(false) => {}
                Err(e) => warn!(device = id, error = %e, "recording a registration failed"),
            }
        }
    }
}

/// Rows read from the outbox at a time; the delivered ones are retired together.
pub const BATCH: u32 = 64;

/// Delivers `pbx`'s rows until the process ends.
pub async fn run(pbx: Arc<Pbx>, store: Store) {
    let name = pbx.name().to_string();
    let metrics = crate::metrics::global();
    let mut wake = store.outbox_watch();
    let mut failing = false;
    metrics.pbx_connector(&name);
    loop {
        if let Ok(s) = store.pbx_status(&name).await {
            metrics.set_pbx_outbox(&name, s.pending, s.parked);
        }
        let wait = match store.outbox_batch(&name, BATCH).await {
            Err(e) => {
                warn!(error = %e, "reading the PBX outbox failed; trying again");
                POLL
            }
            Ok(rows) if rows.is_empty() => POLL,
            Ok(rows) => match deliver_batch(&pbx, &store, &rows, &mut failing).await {
                // All delivered (or the head parked): straight on with the next batch.
                None => continue,
                Some(wait) => wait,
            },
        };
        tokio::select! {
            _ = wake.changed() => {}
            _ = tokio::time::sleep(wait.min(MAX_BACKOFF)) => {}
        }
    }
}

/// Delivers `rows` in order until one fails or must wait; retires the delivered ones in one
/// transaction. `None`: carry on at once; `Some(wait)`: the head row waits that long.
async fn deliver_batch(
    pbx: &Pbx,
    store: &Store,
    rows: &[crate::store::OutboxRow],
    failing: &mut bool,
) -> Option<Duration> {
    let name = pbx.name();
    let metrics = crate::metrics::global();
    let timeout = Duration::from_secs(pbx.config.timeout_secs);
    let mut delivered: Vec<i64> = Vec::new();
    let mut outcome = None;
    for row in rows {
        let now = now_ms();
        if row.next_attempt_at > now {
            outcome = Some(Duration::from_millis(
                u64::try_from(row.next_attempt_at - now).unwrap_or(0),
            ));
            break;
        }
        let result = match tokio::time::timeout(timeout, pbx.deliver(store, row)).await {
            Ok(r) => r,
            Err(_) => Err(super::DeliveryError {
                transient: true,
                message: format!("no answer within {}s", timeout.as_secs()),
            }),
        };
        match result {
            Ok(()) => {
                delivered.push(row.id);
                metrics.pbx_delivery(name, "delivered");
                metrics.pbx_delivered_after(
                    name,
                    Duration::from_millis(u64::try_from(now_ms() - row.created_at).unwrap_or(0)),
                );
                if *failing {
                    info!(row = row.id, "the PBX takes deliveries again");
                    *failing = false;
                }
            }
            Err(e) => {
                let attempts = row.attempts.saturating_add(1);
                let park = !e.transient && attempts >= pbx.config.park_after;
                let delay = backoff(attempts);
                let next = now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
                if park {
                    warn!(row = row.id, event = row.event.name(), error = %e,
                          "the PBX refused this change {attempts} times: parked. Fix the \
                           cause, then `selfprov pbx retry {name}`");
                    metrics.pbx_delivery(name, "parked");
                } else {
                    if !*failing || attempts == 1 {
                        warn!(row = row.id, event = row.event.name(), error = %e, attempts,
                              "delivery failed; retrying in {}s (later changes wait, in order)",
                              delay.as_secs());
                    }
                    *failing = true;
                    metrics.pbx_delivery(name, "retry");
                }
                if let Err(se) = store
                    .outbox_failed(name, row.id, &e.message, next, park)
                    .await
                {
                    warn!(row = row.id, error = %se, "recording a failed delivery failed");
                }
                // A parked row is out of the way: the rows after it go on at once.
                outcome = (!park).then_some(delay);
                break;
            }
        }
    }
    if let Err(e) = store.outbox_delivered_many(name, &delivered).await {
        warn!(error = %e, "recording deliveries failed; those rows will be sent again \
              (deliveries are idempotent)");
        return Some(POLL);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_name_their_device() {
        use crate::pbx::PbxRegistration;
        use crate::store::AwaitingDevice;
        let d = |id, mac: Option<&str>, lines: &[i64]| AwaitingDevice {
            device_id: id,
            mac: mac.map(Into::into),
            line_ids: lines.to_vec(),
        };
        let r = |line, ua: &str| PbxRegistration {
            line_id: line,
            user_agent: ua.into(),
            contact: String::new(),
        };
        let awaiting = [
            d(1, Some("805EC0A1B2C3"), &[10]),
            d(2, Some("805EC0A1B2C4"), &[10]),
            d(3, Some("0004F2000003"), &[11]),
        ];
        // Two phones wait on line 10: only the one the User-Agent names.
        let regs = [r(10, "Yealink SIP-T46S 66.86.0.15 80:5e:c0:a1:b2:c3")];
        assert_eq!(registered_devices(&awaiting, &regs), vec![1]);
        // A phone alone on its line that does not tell its MAC.
        let regs = [r(11, "Softphone 1.0")];
        assert_eq!(registered_devices(&awaiting, &regs), vec![3]);
        // Nothing registered: nothing provisioned; an anonymous contact on a shared line proves
        // nothing about either phone.
        assert!(registered_devices(&awaiting, &[]).is_empty());
        assert!(registered_devices(&awaiting, &[r(10, "Softphone 1.0")]).is_empty());
    }

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
