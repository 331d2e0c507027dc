//! The `[[pbx]]` tables of the config file: one per call-control system selfprov keeps informed.

use serde::Deserialize;

/// Which connector a `[[pbx]]` table configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PbxKind {
    /// Rows in Kamailio's `subscriber` table (its `auth_db` module), on its own database.
    Kamailio,
    /// Asterisk PJSIP realtime rows (`ps_endpoints`, `ps_auths`, `ps_aors`) in PostgreSQL.
    AsteriskRealtime,
    /// A signed JSON event per change, POSTed to a URL.
    Webhook,
}

impl PbxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PbxKind::Kamailio => "kamailio",
            PbxKind::AsteriskRealtime => "asterisk-realtime",
            PbxKind::Webhook => "webhook",
        }
    }
}

/// One `[[pbx]]` table. Keys that belong to another kind are refused by [`PbxConfig::validate`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PbxConfig {
    /// Unique; names the connector in the CLI, the API and metrics.
    pub name: String,
    pub kind: PbxKind,
    /// `host:port` the phones' lines register at (written into their config files).
    pub registrar: String,
    /// `host:port` of an outbound proxy written into the phones' files; unset: none.
    #[serde(default)]
    pub outbound_proxy: Option<String>,
    /// kamailio, asterisk-realtime: the PBX's database (`postgres://...`; kamailio also
    /// `sqlite:///path/to/kamailio.db`).
    #[serde(default)]
    pub db_url: Option<String>,
    /// kamailio: the SIP domain (and digest realm) phones register in. Unset: the
    /// registrar's host.
    #[serde(default)]
    pub domain: Option<String>,
    /// kamailio: also store the plain password (auth_db `calculate_ha1 = yes`); false keeps
    /// only `ha1` and `ha1b`.
    #[serde(default = "yes")]
    pub store_password: bool,
    /// asterisk-realtime: codecs allowed on the endpoints, in order.
    #[serde(default = "default_codecs")]
    pub codecs: Vec<String>,
    /// asterisk-realtime: most contacts a line's AOR accepts (phones sharing the line).
    #[serde(default = "default_max_contacts")]
    pub max_contacts: u32,
    /// webhook: where events are POSTed (`http://` or `https://`).
    #[serde(default)]
    pub url: Option<String>,
    /// webhook: the HMAC-SHA256 key of the `X-Selfprov-Signature` header.
    #[serde(default)]
    pub secret: Option<String>,
    /// kamailio, asterisk-realtime: read the PBX's registrations (Kamailio's `location` table,
    /// usrloc `db_mode` 1-3; Asterisk's `ps_contacts`): a bound phone becomes `provisioned`
    /// when its line registers there, not when it fetches its file.
    #[serde(default)]
    pub watch_registrations: bool,
    /// Seconds one delivery may take before it counts as failed.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// A row failing for a reason of its own (refused by the PBX, not unreachable) this many
    /// times is parked.
    #[serde(default = "default_park_after")]
    pub park_after: u32,
}

fn yes() -> bool {
    true
}
fn default_codecs() -> Vec<String> {
    vec!["ulaw".into(), "alaw".into()]
}
fn default_max_contacts() -> u32 {
    10
}
fn default_timeout() -> u64 {
    10
}
fn default_park_after() -> u32 {
    5
}

/// `host:port` split, with `[v6]:port` and a bare host (port 5060).
pub fn split_host_port(s: &str) -> Option<(String, u16)> {
    let s = s.trim();
    if s.is_empty() || s.contains(char::is_whitespace) {
        return None;
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok().filter(|p| *p > 0)?,
            None if after.is_empty() => 5060,
            None => return None,
        };
        return Some((format!("[{host}]"), port));
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
            (!host.is_empty()).then(|| (host.to_string(), port))
        }
        Some(_) => None,
        None => Some((s.to_string(), 5060)),
    }
}

impl PbxConfig {
    /// The SIP domain of the lines' accounts: `domain`, else the registrar's host (without the
    /// brackets of an IPv6 address).
    pub fn sip_domain(&self) -> String {
        match &self.domain {
            Some(d) => d.clone(),
            None => split_host_port(&self.registrar)
                .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']').to_string())
                .unwrap_or_default(),
        }
    }

    /// Checks one table; the message names the table and the key, and says what to do.
    pub fn validate(&self) -> Result<(), String> {
        let name = &self.name;
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "pbx name {name:?}: use 1 to 64 letters, digits, - and _"
            ));
        }
        let at = |key: &str| format!("[[pbx]] {name:?}: `{key}`");
        if split_host_port(&self.registrar).is_none() {
            return Err(format!(
                "{}: {:?} is not host:port (e.g. \"10.0.0.2:5060\" or \"[2001:db8::2]:5060\")",
                at("registrar"),
                self.registrar
            ));
        }
        if let Some(p) = &self.outbound_proxy {
            if split_host_port(p).is_none() {
                return Err(format!("{}: {p:?} is not host:port", at("outbound_proxy")));
            }
        }
        if self.timeout_secs == 0 || self.timeout_secs > 300 {
            return Err(format!("{}: give 1 to 300 seconds", at("timeout_secs")));
        }
        if self.park_after == 0 {
            return Err(format!("{}: must be at least 1", at("park_after")));
        }
        let only_for = |key: &str, set: bool, kinds: &[PbxKind]| -> Result<(), String> {
            if set && !kinds.contains(&self.kind) {
                return Err(format!(
                    "{}: not a key of kind {:?}; remove it",
                    at(key),
                    self.kind.as_str()
                ));
            }
            Ok(())
        };
        use PbxKind::*;
        only_for(
            "db_url",
            self.db_url.is_some(),
            &[Kamailio, AsteriskRealtime],
        )?;
        only_for("domain", self.domain.is_some(), &[Kamailio])?;
        only_for("store_password", !self.store_password, &[Kamailio])?;
        only_for("url", self.url.is_some(), &[Webhook])?;
        only_for(
            "watch_registrations",
            self.watch_registrations,
            &[Kamailio, AsteriskRealtime],
        )?;
        only_for("secret", self.secret.is_some(), &[Webhook])?;
        only_for(
            "codecs",
            self.codecs != default_codecs(),
            &[AsteriskRealtime],
        )?;
        only_for(
            "max_contacts",
            self.max_contacts != default_max_contacts(),
            &[AsteriskRealtime],
        )?;
        match self.kind {
            Kamailio | AsteriskRealtime => {
                let Some(url) = &self.db_url else {
                    return Err(format!(
                        "{}: missing; give the PBX's database, e.g. \
                         \"postgres://kamailio:secret@127.0.0.1/kamailio\"",
                        at("db_url")
                    ));
                };
                let pg = url.starts_with("postgres://") || url.starts_with("postgresql://");
                let sqlite = url.starts_with("sqlite:");
                if !(pg || (sqlite && self.kind == Kamailio)) {
                    return Err(format!(
                        "{}: {:?}: use postgres://...{}",
                        at("db_url"),
                        crate::store::redact_url(url),
                        if self.kind == Kamailio {
                            " or sqlite:///path/to/kamailio.db (Kamailio's db_sqlite)"
                        } else {
                            ""
                        }
                    ));
                }
                if self.kind == Kamailio {
                    let d = self.sip_domain();
                    if d.is_empty() || d.len() > 64 || d.contains(char::is_whitespace) {
                        return Err(format!(
                            "{}: {d:?} is not a SIP domain (at most 64 characters)",
                            at("domain")
                        ));
                    }
                }
                if self.kind == AsteriskRealtime {
                    if self.codecs.is_empty()
                        || self
                            .codecs
                            .iter()
                            .any(|c| c.is_empty() || !c.bytes().all(|b| b.is_ascii_alphanumeric()))
                    {
                        return Err(format!(
                            "{}: give Asterisk codec names, e.g. [\"ulaw\", \"alaw\"]",
                            at("codecs")
                        ));
                    }
                    if self.max_contacts == 0 {
                        return Err(format!("{}: must be at least 1", at("max_contacts")));
                    }
                }
            }
            Webhook => {
                match &self.url {
                    Some(u) if u.starts_with("http://") || u.starts_with("https://") => {}
                    Some(u) => {
                        return Err(format!(
                            "{}: {u:?}: give a full http:// or https:// URL",
                            at("url")
                        ))
                    }
                    None => return Err(format!("{}: missing; where to POST events", at("url"))),
                }
                match &self.secret {
                    Some(s) if s.len() >= 16 => {}
                    _ => {
                        return Err(format!(
                            "{}: give a shared secret of at least 16 characters (the receiver \
                             checks the HMAC-SHA256 signature with it)",
                            at("secret")
                        ))
                    }
                }
            }
        }
        Ok(())
    }
}

/// Checks the `[[pbx]]` tables together: each valid, names unique.
pub fn validate_all(list: &[PbxConfig]) -> Result<(), String> {
    for (i, p) in list.iter().enumerate() {
        p.validate()?;
        if list[..i].iter().any(|q| q.name == p.name) {
            return Err(format!(
                "two [[pbx]] tables are named {:?}: names must be unique",
                p.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> PbxConfig {
        #[derive(Deserialize)]
        struct W {
            pbx: Vec<PbxConfig>,
        }
        let w: W = toml::from_str(toml_text).unwrap();
        w.pbx.into_iter().next().unwrap()
    }

    #[test]
    fn host_port() {
        assert_eq!(
            split_host_port("10.0.0.2:5070"),
            Some(("10.0.0.2".into(), 5070))
        );
        assert_eq!(
            split_host_port("pbx.example"),
            Some(("pbx.example".into(), 5060))
        );
        assert_eq!(split_host_port("[::1]:5062"), Some(("[::1]".into(), 5062)));
        assert_eq!(split_host_port("[::1]"), Some(("[::1]".into(), 5060)));
        assert_eq!(split_host_port("::1"), None);
        assert_eq!(split_host_port("h:0"), None);
        assert_eq!(split_host_port(":5060"), None);
        assert_eq!(split_host_port("a b:1"), None);
    }

    #[test]
    fn kamailio_table() {
        let p = parse(
            r#"[[pbx]]
name = "kam"
kind = "kamailio"
registrar = "[2001:db8::2]:5060"
db_url = "sqlite:///var/lib/kamailio/kamailio.db"
"#,
        );
        p.validate().unwrap();
        assert_eq!(p.sip_domain(), "2001:db8::2");
        assert!(p.store_password);
    }

    /// A webhook table with `extra` lines.
    fn webhook(extra: &str) -> PbxConfig {
        parse(&format!(
            "[[pbx]]\nname = \"hook\"\nkind = \"webhook\"\nregistrar = \"10.0.0.2:5060\"\n\
             url = \"http://127.0.0.1:9/x\"\n{extra}"
        ))
    }

    #[test]
    fn errors_name_the_table_and_key() {
        let p =
            parse("[[pbx]]\nname = \"kam\"\nkind = \"kamailio\"\nregistrar = \"10.0.0.2:5060\"\n");
        let e = p.validate().unwrap_err();
        assert!(e.contains("\"kam\"") && e.contains("db_url"), "{e}");
        let e = webhook("secret = \"0123456789abcdef\"\ndb_url = \"postgres://x\"")
            .validate()
            .unwrap_err();
        assert!(e.contains("db_url") && e.contains("webhook"), "{e}");
        let e = webhook("secret = \"short\"").validate().unwrap_err();
        assert!(e.contains("secret"), "{e}");
        let e = webhook("secret = \"0123456789abcdef\"\nwatch_registrations = true")
            .validate()
            .unwrap_err();
        assert!(e.contains("watch_registrations"), "{e}");
        let ok = webhook("secret = \"0123456789abcdef\"");
        ok.validate().unwrap();
        assert!(validate_all(&[ok.clone(), ok])
            .unwrap_err()
            .contains("unique"));
    }
}
