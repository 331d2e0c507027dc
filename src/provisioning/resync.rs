//! The resync request a phone understands: which `Event` (and body) the NOTIFY sent after a
//! binding carries, per vendor, with an admin override. Pure: the SIP endpoint sends it, the
//! server layer decides when.
//!
//! Vendors (docs/phones/*.md):
//! - Yealink and Snom re-read their config on `check-sync` but reboot only with `;reboot=true`;
//!   a new account needs the reboot on most firmware, so that is what we send.
//! - Polycom and Grandstream: `check-sync` (the phone's own setting decides whether it reboots;
//!   Grandstream honours it only with P26015 "Allow SIP reset" on).
//! - Cisco enterprise firmware: `Event: service-control` with a `text/plain` body
//!   `action=restart`, and `RegisterCallId={<Call-ID of its REGISTER>}`: the phone ignores a
//!   service-control whose RegisterCallId is not its own registration's.
//! - Anything else: `check-sync`, the de facto standard (Linksys/SPA also know `resync`).
//!
//! The override is a string an admin puts in config or a template: `check-sync`,
//! `check-sync;reboot=false`, `resync`, `service-control` (Cisco form with `action=restart`) or
//! `service-control;action=reset`.

use crate::phoneprov::Vendor;

/// What the NOTIFY carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResyncNotify {
    /// The `Event` header value.
    pub event: String,
    /// `(Content-Type, body)`, or none (Content-Length: 0).
    pub body: Option<(String, String)>,
}

/// Why an override string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "resync event {0:?} is not one of check-sync, check-sync;reboot=true|false, resync, \
     service-control, service-control;action=restart|reset"
)]
pub struct BadResyncEvent(pub String);

/// Checks an admin's override before it is stored.
pub fn validate_override(s: &str) -> Result<(), BadResyncEvent> {
    parse_override(s, None).map(|_| ())
}

/// The NOTIFY for `vendor` (None: unknown vendor), or for `override_event` when given.
/// `register_call_id` is the Call-ID of the phone's REGISTER (Cisco needs it).
pub fn resync_notify(
    vendor: Option<Vendor>,
    override_event: Option<&str>,
    register_call_id: Option<&str>,
) -> Result<ResyncNotify, BadResyncEvent> {
    if let Some(o) = override_event.map(str::trim).filter(|o| !o.is_empty()) {
        return parse_override(o, register_call_id);
    }
    Ok(match vendor {
        Some(Vendor::Cisco) => service_control("restart", register_call_id),
        Some(Vendor::Yealink) | Some(Vendor::Snom) => plain("check-sync;reboot=true"),
        Some(Vendor::Polycom) | Some(Vendor::Grandstream) | None => plain("check-sync"),
    })
}

fn plain(event: &str) -> ResyncNotify {
    ResyncNotify {
        event: event.to_string(),
        body: None,
    }
}

fn service_control(action: &str, register_call_id: Option<&str>) -> ResyncNotify {
    // Cisco's body: one key=value per line. A Call-ID cannot hold CR/LF (the parser refuses
    // them), but strip them anyway so nothing can inject a line.
    let call_id: String = register_call_id
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let body = format!(
        "action={action}\r\nRegisterCallId={{{call_id}}}\r\nConfigVersionStamp={{}}\r\n\
         DialplanVersionStamp={{}}\r\nSoftkeyVersionStamp={{}}\r\n"
    );
    ResyncNotify {
        event: "service-control".into(),
        body: Some(("text/plain".into(), body)),
    }
}

fn parse_override(s: &str, register_call_id: Option<&str>) -> Result<ResyncNotify, BadResyncEvent> {
    let bad = || BadResyncEvent(s.to_string());
    let lower = s.trim().to_ascii_lowercase();
    let (name, param) = match lower.split_once(';') {
        Some((n, p)) => (n.trim(), Some(p.trim())),
        None => (lower.as_str(), None),
    };
    match (name, param) {
        ("check-sync", None) => Ok(plain("check-sync")),
        ("check-sync", Some("reboot=true")) => Ok(plain("check-sync;reboot=true")),
        ("check-sync", Some("reboot=false")) => Ok(plain("check-sync;reboot=false")),
        ("resync", None) => Ok(plain("resync")),
        ("service-control", None) | ("service-control", Some("action=restart")) => {
            Ok(service_control("restart", register_call_id))
        }
        ("service-control", Some("action=reset")) => Ok(service_control("reset", register_call_id)),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_vendor_defaults() {
        let ev = |v| resync_notify(v, None, Some("abc@1.2.3.4")).unwrap().event;
        assert_eq!(ev(Some(Vendor::Yealink)), "check-sync;reboot=true");
        assert_eq!(ev(Some(Vendor::Snom)), "check-sync;reboot=true");
        assert_eq!(ev(Some(Vendor::Polycom)), "check-sync");
        assert_eq!(ev(Some(Vendor::Grandstream)), "check-sync");
        assert_eq!(ev(None), "check-sync");
        let cisco = resync_notify(Some(Vendor::Cisco), None, Some("abc@1.2.3.4")).unwrap();
        assert_eq!(cisco.event, "service-control");
        let (ctype, body) = cisco.body.unwrap();
        assert_eq!(ctype, "text/plain");
        assert!(body.starts_with("action=restart\r\n"), "{body}");
        assert!(body.contains("RegisterCallId={abc@1.2.3.4}\r\n"), "{body}");
    }

    #[test]
    fn overrides() {
        let n = resync_notify(Some(Vendor::Cisco), Some(" Check-Sync "), None).unwrap();
        assert_eq!(n, plain("check-sync"));
        let n = resync_notify(
            Some(Vendor::Yealink),
            Some("service-control;action=reset"),
            None,
        )
        .unwrap();
        assert!(n.body.unwrap().1.starts_with("action=reset\r\n"));
        assert_eq!(
            resync_notify(None, Some("resync"), None).unwrap().event,
            "resync"
        );
        assert_eq!(
            resync_notify(None, Some("check-sync;reboot=false"), None)
                .unwrap()
                .event,
            "check-sync;reboot=false"
        );
        for bad in [
            "reboot",
            "check-sync;reboot=maybe",
            "check-sync\r\nX: y",
            "x;y;z",
        ] {
            assert!(validate_override(bad).is_err(), "{bad}");
        }
        // An empty override means "the vendor's default".
        assert_eq!(
            resync_notify(Some(Vendor::Snom), Some(""), None)
                .unwrap()
                .event,
            "check-sync;reboot=true"
        );
    }

    #[test]
    fn call_id_cannot_inject_lines() {
        let n = resync_notify(Some(Vendor::Cisco), None, Some("a\r\naction=reset")).unwrap();
        let body = n.body.unwrap().1;
        // Still five lines, the first one ours: the Call-ID stays inside its braces.
        assert_eq!(body.lines().count(), 5, "{body}");
        assert!(body.starts_with("action=restart\r\n"), "{body}");
        assert!(
            body.contains("RegisterCallId={aaction=reset}\r\n"),
            "{body}"
        );
    }
}
