//! Resync after a binding, and the watch on phones that do not come back.
//!
//! One task receives device IDs (from a call that bound a phone, or from the admin API), finds
//! the SIP accounts the device registers with (its guest account while it is being provisioned,
//! then its lines' accounts), asks the SIP task for their live contacts, and sends each the
//! vendor's resync NOTIFY ([`crate::provisioning::resync`]); the outcome is recorded on the
//! device. The same task flags devices told to resync that never fetched their new config
//! within `provisioning.resync_timeout_secs` as `error` (`GET /devices?state=error`).

use super::sip_task::SipCommand;
use super::Services;
use crate::metrics::ResyncResult;
use crate::phoneprov::Vendor;
use crate::provisioning::resync::resync_notify;
use crate::sip::registrar::Registration;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn, Instrument};

/// What asks for a resync: a device ID.
pub type ResyncSender = mpsc::UnboundedSender<i64>;

/// Runs until the channel closes.
pub async fn run(
    services: Arc<Services>,
    sip: mpsc::UnboundedSender<SipCommand>,
    mut requests: mpsc::UnboundedReceiver<i64>,
) {
    let timeout = Duration::from_secs(services.config.provisioning.resync_timeout_secs);
    // Check often enough that a device is flagged within a quarter of the timeout of it
    // expiring, but not more than once a second nor less than every 30 s.
    let period = (timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = requests.recv() => match r {
                Some(device_id) => {
                    let services = services.clone();
                    let sip = sip.clone();
                    let span = tracing::info_span!("resync", device = device_id);
                    tokio::spawn(async move { resync(&services, &sip, device_id).await }.instrument(span));
                }
                None => return,
            },
            _ = tick.tick() => match services.store.flag_stale_resyncs(timeout).await {
                Ok(flagged) => {
                    for d in flagged {
                        warn!(
                            device = d.id,
                            mac = d.mac.as_deref().unwrap_or("-"),
                            "the phone was told to resync {}s ago and has not fetched its new \
                             config: state error. Check that it reaches the provisioning server \
                             (provisioning.http_listen) and honours the resync NOTIFY, then \
                             POST /api/v1/devices/{}/resync",
                            timeout.as_secs(),
                            d.id
                        );
                    }
                }
                Err(e) => warn!(error = %e, "checking for phones that did not resync failed"),
            },
        }
    }
}

/// When a PBX is configured (the first `[[pbx]]`), a target per line of the device: the line's
/// address of record at the PBX (`sip:<number>@<domain>`), sent to the PBX's registrar over UDP.
/// The PBX relays it to every contact registered for the line (the user's other phones on the
/// line get the check-sync too, which is harmless). Empty without a PBX, or when the registrar's
/// name does not resolve.
async fn via_pbx(services: &Services, device: &crate::store::Device) -> Vec<Registration> {
    let Some(pbx) = services.config.pbx.first() else {
        return Vec::new();
    };
    let Some((host, port)) = crate::pbx::config::split_host_port(&pbx.registrar) else {
        return Vec::new();
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addr = match tokio::net::lookup_host((bare, port)).await {
        Ok(mut found) => found.next(),
        Err(e) => {
            warn!(registrar = %pbx.registrar, error = %e, "the PBX registrar's address does not resolve: no resync NOTIFY through it");
            None
        }
    };
    let Some(addr) = addr else {
        return Vec::new();
    };
    let domain = pbx.sip_domain();
    let domain = if domain.contains(':') {
        format!("[{domain}]")
    } else {
        domain
    };
    let mut out = Vec::new();
    for line in &device.lines {
        let Ok(to) = crate::sip::message::Uri::parse(&format!("sip:{}@{domain}", line.number))
        else {
            continue;
        };
        out.push(Registration {
            contact: to,
            peer: crate::sip::endpoint::Peer {
                transport: crate::sip::endpoint::Transport::Udp,
                addr,
                conn: None,
            },
            call_id: String::new(),
            path: Vec::new(),
        });
    }
    out
}

/// Sends the resync NOTIFY to every live contact of the device's accounts and records the
/// outcome on the device.
pub async fn resync(services: &Services, sip: &mpsc::UnboundedSender<SipCommand>, device_id: i64) {
    let outcome = match resync_inner(services, sip, device_id).await {
        Ok(o) => o,
        Err(e) => {
            crate::metrics::global().resync(ResyncResult::Error);
            format!("failed: {e}")
        }
    };
    info!(outcome = %outcome, "resync");
    if let Err(e) = services.store.record_resync(device_id, &outcome).await {
        warn!(error = %e, "recording the resync outcome failed");
    }
}

async fn resync_inner(
    services: &Services,
    sip: &mpsc::UnboundedSender<SipCommand>,
    device_id: i64,
) -> anyhow::Result<String> {
    let store = &services.store;
    let Some(device) = store.get_device(device_id).await? else {
        crate::metrics::global().resync(ResyncResult::NotSent);
        return Ok("not sent: the device no longer exists".into());
    };
    let mut accounts = Vec::new();
    if let Some(guest) = store.guest_account(device_id).await? {
        if let Some(acc) = store.find_sip_account(&guest.auth_username).await? {
            accounts.push(acc.endpoint_id);
        }
    }
    for line in &device.lines {
        if let Some(line_id) = line.line_id {
            if let Some(ep) = store
                .get_line(line_id)
                .await?
                .and_then(|l| l.sip_endpoint_id)
            {
                accounts.push(ep);
            }
        }
    }
    let mut targets: Vec<Registration> = Vec::new();
    for account_id in accounts {
        let (tx, rx) = oneshot::channel();
        if sip
            .send(SipCommand::Contacts {
                account_id,
                reply: tx,
            })
            .is_err()
        {
            anyhow::bail!("the SIP task stopped");
        }
        for c in rx.await.unwrap_or_default() {
            if !targets
                .iter()
                .any(|t| t.peer.addr == c.peer.addr && t.contact == c.contact)
            {
                targets.push(c);
            }
        }
    }
    if targets.is_empty() {
        // Lines registered at the site's PBX rather than here: the NOTIFY goes to each line's
        // address of record through the PBX's registrar, which relays it to the line's contacts.
        targets = via_pbx(services, &device).await;
    }
    if targets.is_empty() {
        crate::metrics::global().resync(ResyncResult::NotSent);
        return Ok(
            "not sent: the phone has no live registration (it will pick up its config \
                   when it next restarts)"
                .into(),
        );
    }
    let vendor = device.vendor.as_deref().and_then(Vendor::parse);
    // The device template's override, else the vendor's default.
    let template_event = match device.template_id {
        Some(id) => store
            .get_device_template(id)
            .await?
            .and_then(|t| t.spec.resync_event),
        None => None,
    };
    // Checked before anything is sent: a bad override fails the same way for every contact.
    let event = resync_notify(vendor, template_event.as_deref(), None)?.event;
    // Recorded before waiting for answers (up to timer F, 32 s): the resync timeout counts from
    // the moment the phone was told.
    store
        .record_resync(
            device_id,
            &format!(
                "{event} sent to {} contact(s), waiting for the answer",
                targets.len()
            ),
        )
        .await?;
    // All contacts are told at once; their answers are awaited together.
    let mut pending = Vec::new();
    for t in targets {
        let notify = resync_notify(vendor, template_event.as_deref(), Some(&t.call_id))?;
        let (tx, rx) = oneshot::channel();
        let cmd = SipCommand::Notify {
            to: t.contact,
            peer: t.peer,
            route: t.path,
            event: notify.event,
            body: notify.body,
            reply: tx,
        };
        if sip.send(cmd).is_err() {
            anyhow::bail!("the SIP task stopped");
        }
        pending.push((t.peer.addr, rx));
    }
    let mut results = Vec::new();
    let mut answered = false;
    for (addr, rx) in pending {
        results.push(match rx.await.ok().flatten() {
            Some(s) => {
                answered = true;
                format!("{event} {s} from {addr}")
            }
            None => format!("{event} to {addr}: no answer"),
        });
    }
    crate::metrics::global().resync(if answered {
        ResyncResult::Answered
    } else {
        ResyncResult::NoAnswer
    });
    Ok(results.join("; "))
}
