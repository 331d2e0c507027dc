//! Admin subcommands: users, devices, secrets, API tokens, and the admin REST API's operations
//! run in process ([`api_request`]). Each opens the store named by the config (the same store a
//! running server uses; SQLite in WAL mode lets both work at once).
//!
//! Output: a plain table for people, or `--json` (stable field names, RFC 3339 times) for
//! scripts. Errors say what went wrong and which flag to change. PINs and hashes are never
//! printed, except the hash `secret hash` exists to print.

use super::{ConfigArg, TokenCommand, UserAddArgs};
use crate::config::Config;
use crate::provisioning::secret::{hash_secret, validate_pin, MAX_SECRET_DIGITS};
use crate::store::{format_time, Device, NewUser, Store, StoreError, User};
use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal, Read, Write};

async fn open(config: &Config) -> anyhow::Result<Store> {
    Ok(Store::open(&config.store.url)
        .await?
        .with_pbx_connectors(config.pbx.iter().map(|p| p.name.clone()).collect())
        .with_registration_watch(config.pbx.iter().any(|p| p.watch_registrations)))
}

pub async fn user_add(config: &Config, args: &UserAddArgs) -> anyhow::Result<()> {
    if args.extension.is_empty() || !args.extension.bytes().all(|b| b.is_ascii_digit()) {
        bail!(
            "--extension {:?} must be digits only (the number line 1 of the phone will get)",
            args.extension
        );
    }
    if let Some(sp) = &args.self_provisioning_id {
        if sp.is_empty() || !sp.bytes().all(|b| b.is_ascii_digit()) {
            bail!(
                "--self-provisioning-id {sp:?} must be digits only (callers type it on the keypad)"
            );
        }
    }
    let pin = match args.pin.as_deref() {
        None => None,
        // `--pin -` reads the PIN from standard input, keeping it out of shell history and `ps`.
        Some("-") => Some(read_secret_line("PIN")?),
        Some(p) => Some(p.to_string()),
    };
    let pin_hash = match pin {
        None => None,
        Some(pin) => {
            validate_pin(&pin)
                .map_err(|e| anyhow!("--pin: {e} (1 to {MAX_SECRET_DIGITS} digits)"))?;
            // argon2 is deliberately slow: keep it off the async worker.
            let hash = tokio::task::spawn_blocking(move || hash_secret(&pin))
                .await
                .context("hashing the PIN")??;
            Some(hash)
        }
    };
    let store = open(config).await?;
    let new = NewUser {
        user_id: args.user_id.clone(),
        selfprov_id: args.self_provisioning_id.clone(),
        first_name: args.first_name.clone(),
        last_name: args.last_name.clone(),
        extension: args.extension.clone(),
        pin_hash,
        selfprov_enabled: !args.disabled,
    };
    let result = store.add_user(new).await;
    store.close().await;
    let user = result.map_err(cli_error)?;
    println!(
        "added user {} (extension {}{}{}{})",
        user.user_id,
        user.extension,
        user.selfprov_id
            .as_deref()
            .map(|s| format!(", self-provisioning ID {s}"))
            .unwrap_or_default(),
        if user.pin_hash.is_some() {
            ", with PIN"
        } else {
            ", no PIN"
        },
        if user.selfprov_enabled {
            ""
        } else {
            ", self-provisioning disabled"
        },
    );
    Ok(())
}

/// Rewords store conflicts in terms of the command's flags.
fn cli_error(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::UserExists(u) => {
            anyhow!("user {u} already exists: use a different --user-id or remove it first (selfprov user remove {u})")
        }
        StoreError::ExtensionTaken { extension, user } => anyhow!(
            "extension {extension} is already the primary extension of user {user}: use a different --extension"
        ),
        StoreError::SelfProvIdTaken { selfprov_id, user } => anyhow!(
            "self-provisioning ID {selfprov_id} is already used by user {user}: use a different --self-provisioning-id"
        ),
        StoreError::AmbiguousId { value, field, user } => anyhow!(
            "{value} is already the {field} of user {user}: callers typing it would be ambiguous; \
             use a different --user-id / --self-provisioning-id"
        ),
        other => other.into(),
    }
}

pub async fn user_list(config: &Config, json: bool) -> anyhow::Result<()> {
    let store = open(config).await?;
    let users = store.list_users().await;
    store.close().await;
    let users = users?;
    if json {
        let list: Vec<Value> = users.iter().map(user_json).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if users.is_empty() {
        println!("no users (add one with: selfprov user add --user-id ID --extension NUMBER --pin DIGITS)");
        return Ok(());
    }
    let rows = users
        .iter()
        .map(|u| {
            vec![
                u.user_id.clone(),
                u.selfprov_id.clone().unwrap_or_else(|| "-".into()),
                u.extension.clone(),
                full_name(u),
                yes_no(u.pin_hash.is_some()),
                yes_no(u.selfprov_enabled),
                format_time(u.created_at),
            ]
        })
        .collect();
    print_table(
        &[
            "USER ID",
            "SELFPROV ID",
            "EXTENSION",
            "NAME",
            "PIN",
            "ENABLED",
            "CREATED",
        ],
        rows,
    );
    Ok(())
}

/// The JSON shape of `user list --json`. Never the PIN hash.
pub fn user_json(u: &User) -> Value {
    json!({
        "id": u.id,
        "user_id": u.user_id,
        "selfprov_id": u.selfprov_id,
        "first_name": u.first_name,
        "last_name": u.last_name,
        "extension": u.extension,
        "has_pin": u.pin_hash.is_some(),
        "selfprov_enabled": u.selfprov_enabled,
        "created_at": format_time(u.created_at),
    })
}

pub async fn user_remove(config: &Config, user_id: &str) -> anyhow::Result<()> {
    let store = open(config).await?;
    let removed = store.remove_user(user_id).await;
    store.close().await;
    if !removed? {
        bail!("no user {user_id}: check the user ID (selfprov user list shows them)");
    }
    println!("removed user {user_id}; any phones bound to them are back in autoprov");
    Ok(())
}

pub async fn device_list(config: &Config, json: bool) -> anyhow::Result<()> {
    let store = open(config).await?;
    let devices = store.list_devices().await;
    store.close().await;
    let devices = devices?;
    if json {
        let list: Vec<Value> = devices.iter().map(device_json).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if devices.is_empty() {
        println!("no devices yet (a phone appears here once it has called the IVR and been bound)");
        return Ok(());
    }
    let dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    let rows = devices
        .iter()
        .map(|d| {
            let lines = d
                .lines
                .iter()
                .map(|l| format!("{}:{}", l.position, l.number))
                .collect::<Vec<_>>()
                .join(",");
            vec![
                d.id.to_string(),
                dash(&d.mac),
                dash(&d.device_name),
                dash(&d.vendor),
                dash(&d.model),
                dash(&d.firmware),
                d.sip_identity.clone(),
                dash(&d.owner),
                d.state.to_string(),
                if lines.is_empty() { "-".into() } else { lines },
                format_time(d.last_seen),
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "MAC",
            "NAME",
            "VENDOR",
            "MODEL",
            "FIRMWARE",
            "SIP IDENTITY",
            "OWNER",
            "STATE",
            "LINES",
            "LAST SEEN",
        ],
        rows,
    );
    Ok(())
}

/// The JSON shape of `device list --json`.
pub fn device_json(d: &Device) -> Value {
    json!({
        "id": d.id,
        "mac": d.mac,
        "device_name": d.device_name,
        "vendor": d.vendor,
        "model": d.model,
        "firmware": d.firmware,
        "user_agent": d.user_agent,
        "sip_identity": d.sip_identity,
        "owner": d.owner,
        "state": d.state.as_str(),
        "lines": d.lines.iter().map(|l| json!({"position": l.position, "number": l.number})).collect::<Vec<_>>(),
        "created_at": format_time(d.created_at),
        "last_seen": format_time(d.last_seen),
        "autoreg_number": d.autoreg_number,
        "resync_at": d.resync_at.map(format_time),
        "resync_outcome": d.resync_outcome,
        "config_fetched_at": d.config_fetched_at.map(format_time),
        "last_ip": d.last_ip,
    })
}

/// `selfprov secret hash`: digits on standard input, the argon2id PHC string on standard output.
pub fn secret_hash() -> anyhow::Result<()> {
    let mut input = String::new();
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("digits to hash (PIN or admin code), then Enter: ");
        let _ = std::io::stderr().flush();
        stdin
            .lock()
            .read_line(&mut input)
            .context("reading standard input")?;
    } else {
        stdin
            .lock()
            .take(4096)
            .read_to_string(&mut input)
            .context("reading standard input")?;
    }
    let digits = input.trim();
    if digits.is_empty() {
        bail!("no digits on standard input: try `echo 123456 | selfprov secret hash`");
    }
    validate_pin(digits)
        .map_err(|e| anyhow!("{e}: give 1 to {MAX_SECRET_DIGITS} digits on standard input"))?;
    println!("{}", hash_secret(digits)?);
    Ok(())
}

/// One line from standard input (prompted when it is a terminal), trimmed.
fn read_secret_line(what: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("{what}: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin
        .lock()
        .take(4096)
        .read_line(&mut line)
        .with_context(|| format!("reading the {what} from standard input"))?;
    Ok(line.trim().to_string())
}

fn full_name(u: &User) -> String {
    let name = format!("{} {}", u.first_name, u.last_name)
        .trim()
        .to_string();
    if name.is_empty() {
        "-".into()
    } else {
        name
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

/// Left-aligned columns separated by two spaces.
fn print_table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_string()
    };
    println!("{}", line(header.to_vec()));
    for row in &rows {
        println!("{}", line(row.iter().map(String::as_str).collect()));
    }
}

// ---------------------------------------------------------------------------------------------
// API tokens
// ---------------------------------------------------------------------------------------------

/// `selfprov token create|list|revoke`.
pub async fn token(config: &Config, cmd: &TokenCommand) -> anyhow::Result<()> {
    let store = open(config).await?;
    let result = token_in(&store, cmd).await;
    store.close().await;
    result
}

async fn token_in(store: &Store, cmd: &TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create { name, .. } => {
            let (id, secret) = store.create_api_token(name).await?;
            // The token alone on standard output (for `TOKEN=$(selfprov token create ...)`);
            // the advice on standard error.
            println!("{secret}");
            eprintln!(
                "created API token {id} ({name}); it is shown this once: use it as \
                 `Authorization: Bearer <token>`, revoke it with `selfprov token revoke {id}`"
            );
        }
        TokenCommand::List { .. } => {
            let tokens = store.list_api_tokens().await?;
            let list: Vec<Value> = tokens
                .iter()
                .map(|t| {
                    json!({
                        "id": t.id,
                        "name": t.name,
                        "created_at": format_time(t.created_at),
                        "last_used": t.last_used.map(format_time),
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        TokenCommand::Revoke { id, .. } => {
            if !store.delete_api_token(*id).await? {
                bail!("no API token {id}: `selfprov token list` shows them");
            }
            println!("revoked API token {id}");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Admin API requests run in process
// ---------------------------------------------------------------------------------------------

/// A request body for [`api_request`].
#[derive(Debug, Clone)]
pub struct Body {
    content_type: &'static str,
    bytes: Vec<u8>,
}

/// Largest body read from a file or standard input.
const MAX_BODY: u64 = 16 << 20;

fn read_source(source: &str, what: &str) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if source == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_BODY)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading the {what} from standard input"))?;
    } else {
        let file = std::fs::File::open(source)
            .with_context(|| format!("opening the {what} file {source}"))?;
        file.take(MAX_BODY)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading the {what} file {source}"))?;
    }
    Ok(bytes)
}

impl Body {
    /// `--data`: JSON text, `@FILE`, or `-` (standard input).
    pub fn json(data: &str) -> anyhow::Result<Body> {
        let bytes = match data {
            "-" => read_source("-", "JSON body")?,
            d if d.starts_with('@') => read_source(d.get(1..).unwrap_or(""), "JSON body")?,
            d => d.as_bytes().to_vec(),
        };
        Ok(Body {
            content_type: "application/json",
            bytes,
        })
    }

    /// A CSV file (or `-`).
    pub fn csv_file(path: &std::path::Path) -> anyhow::Result<Body> {
        Ok(Body {
            content_type: "text/csv",
            bytes: read_source(&path.to_string_lossy(), "CSV")?,
        })
    }
}

/// One API request of an admin command.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub config: ConfigArg,
    pub method: String,
    pub path: String,
    pub body: Option<Body>,
}

impl ApiRequest {
    pub fn new(config: &ConfigArg, method: &str, path: String, body: Option<Body>) -> Self {
        ApiRequest {
            config: config.clone(),
            method: method.to_string(),
            path,
            body,
        }
    }
}

/// `?a=1&b=x` from the parameters that are set (empty when none are).
pub fn query_string(params: &[(&str, Option<String>)]) -> String {
    let set: Vec<(&str, &str)> = params
        .iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
        .collect();
    if set.is_empty() {
        return String::new();
    }
    match serde_urlencoded::to_string(&set) {
        Ok(q) => format!("?{q}"),
        Err(_) => String::new(),
    }
}

/// A user ID as a path segment (percent-encoded: user IDs may hold `/`, `?`, `%`...).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Runs `req` through the admin API's router in process (no socket, no token: the caller
/// reaches the store through the config file already) and prints the JSON answer. A non-2xx
/// answer is an error carrying the API's message and field.
pub async fn api_request(config: &Config, req: ApiRequest) -> anyhow::Result<()> {
    use tower::ServiceExt;
    let method = axum::http::Method::from_bytes(req.method.as_bytes()).map_err(|_| {
        anyhow!(
            "{:?} is not an HTTP method (GET, POST, PUT, DELETE)",
            req.method
        )
    })?;
    if !req.path.starts_with("/api/v1/") {
        bail!(
            "the path {:?} must start with /api/v1/ (docs/api.md lists the routes)",
            req.path
        );
    }
    let mut builder = axum::http::Request::builder()
        .method(method)
        .uri(req.path.as_str());
    let body = match req.body {
        Some(b) => {
            builder = builder.header(axum::http::header::CONTENT_TYPE, b.content_type);
            axum::body::Body::from(b.bytes)
        }
        None => axum::body::Body::empty(),
    };
    let request = builder
        .body(body)
        .map_err(|e| anyhow!("bad request path {:?}: {e}", req.path))?;
    let store = open(config).await?;
    let pbx = crate::pbx::connectors(&config.pbx)
        .map_err(|e| anyhow!(e))?
        .into_iter()
        .map(std::sync::Arc::new)
        .collect();
    let router =
        crate::api::router_without_auth(crate::api::ApiState::new(store.clone()).with_pbx(pbx));
    let response = router.oneshot(request).await;
    let result = match response {
        Ok(resp) => {
            let status = resp.status();
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await;
            bytes
                .map(|b| (status, b))
                .map_err(|e| anyhow!("reading the answer: {e}"))
        }
        Err(e) => match e {},
    };
    store.close().await;
    let (status, bytes) = result?;
    let value: Option<Value> = serde_json::from_slice(&bytes).ok();
    if status.is_success() {
        match value {
            Some(v) => println!("{}", serde_json::to_string_pretty(&v)?),
            None if bytes.is_empty() => println!("done ({})", status.as_u16()),
            None => println!("{}", String::from_utf8_lossy(&bytes)),
        }
        return Ok(());
    }
    let message = value
        .as_ref()
        .and_then(|v| v["message"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
    match value.as_ref().and_then(|v| v["field"].as_str()) {
        Some(field) => bail!("{message} (field {field}; HTTP {})", status.as_u16()),
        None => bail!("{message} (HTTP {})", status.as_u16()),
    }
}

/// `selfprov pbx status`: each connector's outbox and last delivery.
pub async fn pbx_status(config: &Config, json: bool) -> anyhow::Result<()> {
    let store = open(config).await?;
    let mut rows = Vec::new();
    let mut list = Vec::new();
    for p in &config.pbx {
        let s = store.pbx_status(&p.name).await?;
        let t = |ms: Option<i64>| {
            ms.map(|m| {
                format_time(
                    std::time::UNIX_EPOCH
                        + std::time::Duration::from_millis(u64::try_from(m).unwrap_or(0)),
                )
            })
        };
        list.push(json!({
            "name": p.name,
            "kind": p.kind.as_str(),
            "registrar": p.registrar,
            "pending": s.pending,
            "parked": s.parked,
            "oldest_pending_at": t(s.oldest_pending_at),
            "delivered": s.delivered,
            "last_success_at": t(s.last_success_at),
            "last_error": s.last_error,
            "last_error_at": t(s.last_error_at),
        }));
        rows.push(vec![
            p.name.clone(),
            p.kind.as_str().to_string(),
            s.pending.to_string(),
            s.parked.to_string(),
            s.delivered.to_string(),
            t(s.last_success_at).unwrap_or_else(|| "-".into()),
            s.last_error.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    store.close().await;
    if json {
        println!("{}", serde_json::to_string_pretty(&Value::Array(list))?);
        return Ok(());
    }
    if rows.is_empty() {
        println!(
            "no PBX connector configured: lines register at selfprov. Add a [[pbx]] table to \
             the config file (docs/pbx.md)"
        );
        return Ok(());
    }
    print_table(
        &[
            "NAME",
            "KIND",
            "PENDING",
            "PARKED",
            "DELIVERED",
            "LAST SUCCESS",
            "LAST ERROR",
        ],
        rows,
    );
    Ok(())
}
