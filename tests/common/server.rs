//! The server under test: writes a temporary config and store, starts `selfprov serve`, reads
//! its ready line (bounded), and offers the admin CLI (`user add`, `device list --json`).
//!
//! The server is killed when the [`Server`] is dropped; if the test is panicking at that moment,
//! the tail of the server's stderr log is printed so the failure can be diagnosed from CI output.

use super::{read_lossy, run_bounded, tail, RunOutput};
use serde::Deserialize;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long the server may take to print its ready line (debug build, first SQLite migration,
/// language pack decoding).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound for one admin CLI call.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings the tests vary; everything else is the fixed test config.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `non-secure`, `secure-users` or `secure-users-and-admins`.
    pub auth_mode: &'static str,
    pub admin_auth_code: Option<String>,
    pub first_digit_timeout_ms: Option<u64>,
    pub inter_digit_timeout_ms: Option<u64>,
    pub extensions: Vec<String>,
    /// Extra `key = value` lines for a config section, as (section, line), e.g.
    /// `("rtp", "inactivity_timeout_ms = 2000")`; lines for a section the fixed config does not
    /// write go into a new section of that name.
    pub extra: Vec<(&'static str, String)>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            auth_mode: "secure-users",
            admin_auth_code: None,
            first_digit_timeout_ms: None,
            inter_digit_timeout_ms: None,
            extensions: vec!["8000".into()],
            extra: Vec::new(),
        }
    }
}

/// A user for `selfprov user add`.
#[derive(Debug, Clone)]
pub struct User {
    pub user_id: &'static str,
    pub self_provisioning_id: &'static str,
    pub extension: &'static str,
    pub pin: &'static str,
    pub first_name: &'static str,
    pub last_name: &'static str,
}

/// The user every provisioning test binds: ID 1001, PIN 4321, extension 1001.
pub const JDOE: User = User {
    user_id: "jdoe",
    self_provisioning_id: "1001",
    extension: "1001",
    pin: "4321",
    first_name: "Jane",
    last_name: "Doe",
};

/// One line of a device, as printed by `device list --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Line {
    pub position: u32,
    pub number: String,
}

/// One device, as printed by `device list --json` (unknown fields are kept in `raw`).
#[derive(Debug, Clone)]
pub struct Device {
    pub owner: Option<String>,
    pub state: Option<String>,
    pub user_agent: Option<String>,
    pub lines: Vec<Line>,
    pub raw: serde_json::Value,
}

/// A running `selfprov serve`.
pub struct Server {
    child: Option<Child>,
    /// The SIP address (UDP and TCP) from the ready line.
    pub sip: SocketAddr,
    /// The phones' provisioning HTTP server (`Provisioning listening on http://ADDR/`).
    pub provisioning: Option<SocketAddr>,
    /// The phones' TFTP server (`TFTP listening on ADDR`), when `provisioning.tftp_listen` is
    /// set.
    pub tftp: Option<SocketAddr>,
    /// The admin API (`API listening on http://ADDR/api/v1`).
    pub api: Option<SocketAddr>,
    pub config_path: PathBuf,
    pub stderr_path: PathBuf,
    /// Holds the config, the store and the logs; tests put their peers' files here too.
    pub dir: tempfile::TempDir,
    stdout_rx: mpsc::Receiver<String>,
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_selfprov")
}

/// The test configuration (see the brief in the module docs of the e2e tests).
fn config_text(dir: &Path, opts: &ServerOptions) -> String {
    let extensions = opts
        .extensions
        .iter()
        .map(|e| format!("{e:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut ivr = format!(
        "extensions = [{extensions}]\nauth_mode = {:?}\n",
        opts.auth_mode
    );
    if let Some(code) = &opts.admin_auth_code {
        ivr += &format!("admin_auth_code = {code:?}\n");
    }
    if let Some(ms) = opts.first_digit_timeout_ms {
        ivr += &format!("first_digit_timeout_ms = {ms}\n");
    }
    if let Some(ms) = opts.inter_digit_timeout_ms {
        ivr += &format!("inter_digit_timeout_ms = {ms}\n");
    }
    let db = dir.join("selfprov.db");
    // TOML forbids defining a table twice: extra lines go into their section.
    let extra = |section: &str| -> String {
        opts.extra
            .iter()
            .filter(|(s, _)| *s == section)
            .map(|(_, l)| format!("{l}\n"))
            .collect()
    };
    let fixed = ["sip", "rtp", "ivr", "store", "http", "provisioning", "log"];
    let mut others = String::new();
    for (section, _) in &opts.extra {
        let header = format!("[{section}]\n");
        if !fixed.contains(section) && !others.contains(&header) {
            others += &format!("\n{header}{}", extra(section));
        }
    }
    format!(
        "[sip]\nlisten = \"127.0.0.1:0\"\n{}\n\
         [rtp]\nport_min = 20000\nport_max = 30000\n{}\n\
         [ivr]\n{ivr}{}\n\
         [store]\nurl = \"sqlite://{}\"\n{}\n\
         [http]\nlisten = \"127.0.0.1:0\"\n{}\n\
         [provisioning]\nhttp_listen = \"127.0.0.1:0\"\n{}\n\
         [log]\nlevel = \"debug\"\n{}{others}",
        extra("sip"),
        extra("rtp"),
        extra("ivr"),
        db.display(),
        extra("store"),
        extra("http"),
        extra("provisioning"),
        extra("log"),
    )
}

/// Starts `selfprov serve --config CONFIG`, its stderr appended to `stderr_path`, its stdout
/// lines sent to the returned channel (drained for as long as the process runs, so it never
/// blocks on a full pipe).
fn spawn_serve(config_path: &Path, stderr_path: &Path) -> (Child, mpsc::Receiver<String>) {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stderr_path)
        .expect("open the stderr log");
    let mut child = Command::new(binary())
        .arg("serve")
        .arg("--config")
        .arg(config_path)
        .current_dir(super::repo_root())
        .env_remove("RUST_LOG") // the config's log level applies
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .expect("start selfprov serve");
    let (tx, stdout_rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, stdout_rx)
}

impl Server {
    /// Starts the server with the default test options (secure-users, extension 8000).
    pub fn start() -> Server {
        Server::start_with(&ServerOptions::default())
    }

    pub fn start_with(opts: &ServerOptions) -> Server {
        // SELFPROV_E2E_KEEP=1 keeps the dir (config, store, logs, pcaps, SIPp traces) for
        // post-mortems; its path is printed.
        let keep = std::env::var_os("SELFPROV_E2E_KEEP").is_some_and(|v| v == "1");
        let dir = tempfile::Builder::new()
            .prefix("selfprov-e2e-")
            .disable_cleanup(keep)
            .tempdir()
            .expect("create a temp dir");
        if keep {
            eprintln!("keeping the test dir {}", dir.path().display());
        }
        let config_path = dir.path().join("selfprov.toml");
        std::fs::write(&config_path, config_text(dir.path(), opts)).expect("write the config");
        let stderr_path = dir.path().join("selfprov.stderr.log");
        let (child, stdout_rx) = spawn_serve(&config_path, &stderr_path);
        let mut server = Server {
            child: Some(child),
            sip: "127.0.0.1:0".parse().expect("placeholder"),
            provisioning: None,
            tftp: None,
            api: None,
            config_path,
            stderr_path,
            dir,
            stdout_rx,
        };
        server.sip = server.wait_ready();
        server
    }

    /// Kills the server with SIGKILL (no clean-up of any kind) and starts it again on the same
    /// config and store; its addresses are those of the new process.
    pub fn kill9_and_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let (child, rx) = spawn_serve(&self.config_path, &self.stderr_path);
        self.child = Some(child);
        self.stdout_rx = rx;
        self.sip = self.wait_ready();
    }

    fn wait_ready(&mut self) -> SocketAddr {
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stdout_rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = parse_ready_line(&line) {
                        return addr;
                    }
                    if let Some(a) = parse_listen_line(&line, "Provisioning listening on http://") {
                        self.provisioning = Some(a);
                    }
                    if let Some(a) = parse_listen_line(&line, "TFTP listening on ") {
                        self.tftp = Some(a);
                    }
                    if let Some(a) = parse_listen_line(&line, "API listening on http://") {
                        self.api = Some(a);
                    }
                    seen.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "selfprov did not print its ready line within {READY_TIMEOUT:?}; stdout so \
                     far: {seen:?}\n--- stderr ---\n{}",
                    tail(&self.log(), 200)
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.as_mut().and_then(|c| c.wait().ok());
                    panic!(
                        "selfprov exited before it was ready ({status:?}); stdout: {seen:?}\n\
                         --- stderr ---\n{}",
                        tail(&self.log(), 200)
                    )
                }
            }
        }
    }

    /// The server's stderr log so far (ANSI colour codes removed, should the server write
    /// them to a file).
    pub fn log(&self) -> String {
        strip_ansi(&read_lossy(&self.stderr_path))
    }

    /// Panics (with the log) unless the server process is still running.
    pub fn assert_alive(&mut self) {
        let log = self.log();
        let child = self.child.as_mut().expect("server child");
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "selfprov died ({status}); stderr tail:\n{}",
                tail(&log, 200)
            );
        }
    }

    /// A server whose phones can provision themselves from scratch: an autoregistration range
    /// 2000-2009 and the registrar offering `digest_algorithms` (a TOML array; SIPp and baresip
    /// answer only MD5, so MD5 goes first), plus `extra` config lines.
    pub fn start_with_autoreg(
        digest_algorithms: &str,
        mut extra: Vec<(&'static str, String)>,
    ) -> Server {
        extra.push((
            "registrar",
            format!("digest_algorithms = {digest_algorithms}"),
        ));
        let server = Server::start_with(&ServerOptions {
            extra,
            ..ServerOptions::default()
        });
        let out = server.cli(&[
            "settings",
            "update",
            "--data",
            r#"{"autoreg_start_dn": "2000", "autoreg_end_dn": "2009"}"#,
        ]);
        assert!(
            out.success(),
            "settings update: {}\n{}",
            out.stdout,
            out.stderr
        );
        server
    }

    /// Runs `selfprov <args> --config <this config>` (bounded) and returns its output.
    pub fn cli(&self, args: &[&str]) -> RunOutput {
        let mut cmd = Command::new(binary());
        cmd.args(args)
            .arg("--config")
            .arg(&self.config_path)
            .current_dir(super::repo_root())
            .env_remove("RUST_LOG");
        run_bounded(cmd, CLI_TIMEOUT)
    }

    /// `selfprov user add ...`; panics if it fails.
    pub fn add_user(&self, u: &User) {
        let out = self.cli(&[
            "user",
            "add",
            "--user-id",
            u.user_id,
            "--self-provisioning-id",
            u.self_provisioning_id,
            "--extension",
            u.extension,
            "--pin",
            u.pin,
            "--first-name",
            u.first_name,
            "--last-name",
            u.last_name,
        ]);
        assert!(
            out.success(),
            "`selfprov user add {}` failed ({:?}):\nstdout: {}\nstderr: {}",
            u.user_id,
            out.status,
            out.stdout,
            out.stderr
        );
    }

    /// `selfprov device list --json`, parsed.
    pub fn devices(&self) -> Vec<Device> {
        let out = self.cli(&["device", "list", "--json"]);
        assert!(
            out.success(),
            "`selfprov device list --json` failed ({:?}):\nstdout: {}\nstderr: {}",
            out.status,
            out.stdout,
            out.stderr
        );
        parse_devices(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "device list is not the documented JSON ({e}):\n{}",
                out.stdout
            )
        })
    }

    /// Asserts the store shows exactly one device, owned by `user_id`, line 1 = `extension`.
    pub fn assert_bound(&self, user_id: &str, extension: &str) -> Device {
        let devices = self.devices();
        assert_eq!(
            devices.len(),
            1,
            "expected exactly one device after provisioning, got {devices:#?}\n--- server log ---\n{}",
            tail(&self.log(), 150)
        );
        let d = devices.into_iter().next().expect("one device");
        assert_eq!(
            d.owner.as_deref(),
            Some(user_id),
            "device not owned by {user_id}: {:#}\n--- server log ---\n{}",
            d.raw,
            tail(&self.log(), 150)
        );
        let line1 = d.lines.iter().find(|l| l.position == 1);
        assert_eq!(
            line1.map(|l| l.number.as_str()),
            Some(extension),
            "line 1 of the device is not {extension}: {:#}",
            d.raw
        );
        d
    }

    /// Asserts no device in the store has an owner (a failed or abandoned call binds nothing).
    pub fn assert_nothing_bound(&self) {
        let devices = self.devices();
        let owned: Vec<&Device> = devices.iter().filter(|d| d.owner.is_some()).collect();
        assert!(
            owned.is_empty(),
            "no device may be bound, got {owned:#?}\n--- server log ---\n{}",
            tail(&self.log(), 150)
        );
        for d in &devices {
            assert!(
                d.lines.is_empty() || d.lines.iter().all(|l| l.number.is_empty()),
                "an unbound device must not carry a user's line: {:#}",
                d.raw
            );
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = super::wait_deadline(&mut child, Duration::from_secs(10));
        }
        if std::thread::panicking() {
            eprintln!(
                "--- selfprov stderr ({}), last 300 lines ---\n{}\n--- end of selfprov stderr ---",
                self.stderr_path.display(),
                tail(&self.log(), 300)
            );
        }
    }
}

/// `SIP listening on 127.0.0.1:<port> (udp+tcp)` → the address.
pub fn parse_ready_line(line: &str) -> Option<SocketAddr> {
    let rest = line.trim().strip_prefix("SIP listening on ")?;
    let addr = rest.strip_suffix(" (udp+tcp)")?;
    addr.parse().ok()
}

/// `<prefix>ADDR/...` → ADDR (the listen lines printed before the ready line).
pub fn parse_listen_line(line: &str, prefix: &str) -> Option<SocketAddr> {
    let rest = line.trim().strip_prefix(prefix)?;
    rest.split('/').next()?.parse().ok()
}

/// Parses the `device list --json` array.
pub fn parse_devices(text: &str) -> Result<Vec<Device>, String> {
    let v: serde_json::Value = serde_json::from_str(text.trim()).map_err(|e| e.to_string())?;
    let arr = v.as_array().ok_or("not a JSON array")?;
    arr.iter()
        .map(|d| {
            let s = |k: &str| d.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            let lines = match d.get("lines") {
                Some(l) => serde_json::from_value::<Vec<Line>>(l.clone())
                    .map_err(|e| format!("lines: {e}"))?,
                None => return Err(format!("device without `lines`: {d}")),
            };
            if d.get("owner").is_none() {
                return Err(format!("device without `owner`: {d}"));
            }
            Ok(Device {
                owner: s("owner"),
                state: s("state"),
                user_agent: s("user_agent"),
                lines,
                raw: d.clone(),
            })
        })
        .collect()
}

/// Removes ANSI escape sequences (`ESC [ ... letter`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
