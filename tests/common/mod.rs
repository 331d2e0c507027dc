//! Shared end-to-end harness: used as `mod common;` by `tests/e2e_*.rs`.
//!
//! It owns everything a test needs to drive the real `selfprov` binary with real SIP software:
//! [`server`] (start/stop the server with a temporary config and store, the admin CLI),
//! [`sipp`] (run a SIPp scenario from `tests/sipp/` and check its outcome), [`baresip`] (a
//! headless baresip driven over `ctrl_tcp`), [`pcap`] (RTP streams written as classic pcap files
//! for SIPp's `play_pcap_audio`: RFC 4733 events and in-band DTMF tones), [`g711`] and
//! [`audio`] (µ-law, WAV reading, tone and correlation measurements), [`ports`], and [`uac`] (a
//! hand-written SIP UAC over UDP with recording RTP endpoints, for the media tests).
//!
//! Peers are never optional: a missing `sipp`, `baresip` or `tshark` makes the test FAIL with a
//! message naming the package (scripts/test.sh installs them), it never skips.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod audio;
pub mod baresip;
pub mod g711;
pub mod http;
pub mod kamailio;
pub mod pcap;
pub mod ports;
pub mod server;
pub mod sipp;
pub mod store;
pub mod uac;

use pcap::KeyPlan;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What the provisioning callers wait after the answer before typing: the welcome prompt
/// (2.3 s) has played and "enter your self-provisioning ID" has begun (keys barge in).
pub const LEAD_MS: u32 = 3_000;

/// The keys of a successful provisioning call (user JDOE) and when they are typed, counted from
/// the end of [`LEAD_MS`]: ID `1001#` (about 1.3 s), 1.5 s for the lookup and the start of
/// "enter your PIN", PIN `4321#`, then 5.5 s into "this phone will be assigned to extension
/// 1 0 0 1 (4.7 s), press 1 to confirm or 2 to cancel", `1`. The success prompt that follows
/// lasts about 8.5 s before the server's BYE.
pub fn provisioning_keys() -> KeyPlan {
    provisioning_keys_after(0)
}

/// [`provisioning_keys`] preceded by `lead_ms` of silence, for streams that carry audio from
/// the start of the call (the pcap then starts right after the ACK).
pub fn provisioning_keys_after(lead_ms: u32) -> KeyPlan {
    let plan = KeyPlan::new();
    let plan = if lead_ms > 0 {
        plan.silence(lead_ms)
    } else {
        plan
    };
    plan.keys("1001#")
        .silence(1_500)
        .keys("4321#")
        .silence(5_500)
        .keys("1")
}

/// The success prompt ("this phone is now assigned to extension 1 0 0 1. The phone will now
/// restart...") is about 8.5 s: the server's BYE cannot come much sooner after the last key.
pub const SUCCESS_PROMPT_MIN_MS: u32 = 6_000;

/// The crate root (where `tests/`, `lang-packs/` live).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Absolute path of a scenario in `tests/sipp/`.
pub fn scenario_path(name: &str) -> PathBuf {
    let p = repo_root().join("tests").join("sipp").join(name);
    assert!(p.is_file(), "SIPp scenario {} does not exist", p.display());
    p
}

/// Absolute path of a prompt recording in the shipped en-US pack.
pub fn prompt_wav(prompt_id: &str) -> PathBuf {
    repo_root()
        .join("lang-packs")
        .join("en-US")
        .join(format!("{prompt_id}.wav"))
}

/// Finds `tool` on PATH or panics naming the Debian package that provides it. E2E tests call
/// this first: a missing peer is a failed test, never a skipped one.
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(tool);
        if is_executable(&candidate) {
            return candidate;
        }
    }
    panic!(
        "required test peer `{tool}` is not installed (Debian package `{package}`); \
         run scripts/test.sh, which installs every peer"
    );
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Output of a bounded child process run.
#[derive(Debug)]
pub struct RunOutput {
    /// `None` when the process had to be killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl RunOutput {
    pub fn success(&self) -> bool {
        self.status.map(|s| s.success()).unwrap_or(false)
    }

    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
}

/// Runs `cmd` to completion with a deadline: stdout and stderr are captured, stdin is closed. At
/// the deadline the child (and only it, by its own handle) is killed and `status` is `None`.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> RunOutput {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let out_rx = drain(child.stdout.take());
    let err_rx = drain(child.stderr.take());
    let status = wait_deadline(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    // The readers end when the pipes close (the child exited or was killed).
    let stdout = out_rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_default();
    let stderr = err_rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_default();
    RunOutput {
        status,
        stdout,
        stderr,
        elapsed: started.elapsed(),
    }
}

/// Waits for `child` to exit, at most `timeout`.
pub fn wait_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => return None,
        }
    }
}

/// Reads a pipe to its end on a thread; the whole text arrives on the returned channel.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

/// The last `n` lines of `text` (logs printed on failure stay readable).
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

/// Reads a file that may not exist (logs of a peer that failed early).
pub fn read_lossy(p: &Path) -> String {
    std::fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Polls `check` every 50 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
