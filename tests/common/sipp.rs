//! Runs SIPp (package `sip-tester`, 3.6.1) with a scenario from `tests/sipp/` against the server.
//!
//! Every run uses `-i 127.0.0.1`, its own free `-p` (SIP) and `-mp` (media) ports, `-m 1`,
//! `-timeout 60s -timeout_error` (a scenario stuck waiting fails instead of hanging), and traces
//! messages, unexpected messages (`-trace_err`) and `<log>` actions to files in the work dir; the
//! harness also kills SIPp if it outlives the timeout. [`SippOutcome::assert_success`] checks
//! the exit code (0: the call succeeded) and prints all of it otherwise.
//!
//! Scenario parameters go through `-key name value` (`[name]` in messages and in
//! `play_pcap_audio="[name]"`, substituted when the scenario loads) and `-set name value`
//! (`[$name]`, and `<pause variable="name"/>`).

use super::{ports, read_lossy, require_tool, scenario_path, tail, wait_deadline, RunOutput};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The MAC the INVITE scenarios announce (Cisco-style `+sip.instance`), unless a test sets
/// `-key mac`.
pub const DEFAULT_MAC: &str = "0004f2a1b2c3";

/// SIPp's own global timeout for one call.
pub const SIPP_TIMEOUT_S: u32 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// One SIPp run: a scenario file, the Request-URI user and parameters.
#[derive(Debug, Clone)]
pub struct Sipp {
    scenario: String,
    service: String,
    transport: Transport,
    keys: Vec<(String, String)>,
    sets: Vec<(String, String)>,
    args: Vec<String>,
    port: Option<u16>,
    timeout_s: u32,
}

/// What a SIPp run left behind.
#[derive(Debug)]
pub struct SippOutcome {
    pub run: RunOutput,
    pub command: String,
    pub errors: String,
    pub messages: String,
    pub logs: String,
    pub screen: String,
}

impl Sipp {
    /// `scenario` is a file name in `tests/sipp/`; the Request-URI user defaults to 8000.
    pub fn new(scenario: &str) -> Self {
        Sipp {
            scenario: scenario.to_owned(),
            service: "8000".into(),
            transport: Transport::Udp,
            // Defaults the INVITE scenarios read; a -key a scenario does not use is harmless.
            keys: vec![
                ("dtmf_pt".into(), "101".into()),
                ("mac".into(), DEFAULT_MAC.into()),
            ],
            sets: Vec::new(),
            args: Vec::new(),
            port: None,
            timeout_s: SIPP_TIMEOUT_S,
        }
    }

    /// The Request-URI / To user (`[service]`).
    pub fn service(mut self, s: &str) -> Self {
        self.service = s.to_owned();
        self
    }

    /// SIPp's SIP port (`-p`); by default a free one. A phone that registers, then calls, then
    /// waits for a NOTIFY runs three scenarios from one port.
    pub fn port(mut self, p: u16) -> Self {
        self.port = Some(p);
        self
    }

    /// Extra command-line arguments, e.g. `-au USER -ap PASSWORD` for `[authentication]`.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    pub fn transport(mut self, t: Transport) -> Self {
        self.transport = t;
        self
    }

    /// `-key name value`: `[name]` in the scenario (replaces an earlier value).
    pub fn key(mut self, name: &str, value: impl ToString) -> Self {
        self.keys.retain(|(k, _)| k != name);
        self.keys.push((name.to_owned(), value.to_string()));
        self
    }

    /// `-set name value`: the variable `[$name]`.
    pub fn set(mut self, name: &str, value: impl ToString) -> Self {
        self.sets.push((name.to_owned(), value.to_string()));
        self
    }

    pub fn timeout_s(mut self, s: u32) -> Self {
        self.timeout_s = s;
        self
    }

    /// Runs the scenario once against `target`, files in `workdir`, and waits for the end.
    pub fn run(&self, target: SocketAddr, workdir: &Path) -> SippOutcome {
        self.start(Some(target), workdir).finish()
    }

    /// Starts SIPp in the background (a UAS scenario passes no target); see [`RunningSipp`].
    pub fn start(&self, target: Option<SocketAddr>, workdir: &Path) -> RunningSipp {
        let sipp = require_tool("sipp", "sip-tester");
        let scenario = scenario_path(&self.scenario);
        let sip_port = self.port.unwrap_or_else(ports::free_port);
        let media_port = ports::free_port_block(4, true);
        let stem = self.scenario.trim_end_matches(".xml");
        let file =
            |suffix: &str| -> PathBuf { workdir.join(format!("sipp-{stem}-{sip_port}-{suffix}")) };
        let files = [
            file("errors.log"),
            file("messages.log"),
            file("logs.log"),
            file("screen.log"),
            file("stdout.log"),
            file("stderr.log"),
        ];
        let mut cmd = Command::new(&sipp);
        cmd.current_dir(workdir);
        if let Some(t) = target {
            cmd.arg(t.to_string());
        }
        cmd.arg("-sf")
            .arg(&scenario)
            .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .arg("-p")
            .arg(sip_port.to_string())
            .arg("-mp")
            .arg(media_port.to_string())
            .args(["-s", &self.service])
            .args(["-m", "1", "-l", "1"])
            .arg("-timeout")
            .arg(format!("{}s", self.timeout_s))
            .arg("-timeout_error")
            .args(["-nostdin", "-trace_err", "-error_file"])
            .arg(&files[0])
            .args(["-trace_msg", "-message_file"])
            .arg(&files[1])
            .args(["-trace_logs", "-log_file"])
            .arg(&files[2])
            .args(["-trace_screen", "-screen_file"])
            .arg(&files[3])
            .args([
                "-t",
                match self.transport {
                    Transport::Udp => "u1",
                    Transport::Tcp => "t1",
                },
            ]);
        for (k, v) in &self.keys {
            cmd.arg("-key").arg(k).arg(v);
        }
        for (k, v) in &self.sets {
            cmd.arg("-set").arg(k).arg(v);
        }
        cmd.args(&self.args);
        let command = format!("{cmd:?}");
        let stdout = std::fs::File::create(&files[4]).expect("create sipp stdout log");
        let stderr = std::fs::File::create(&files[5]).expect("create sipp stderr log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
        RunningSipp {
            child: Some(child),
            sip_port,
            media_port,
            command,
            files,
            started: Instant::now(),
            // SIPp's own timeout ends a stuck call; the margin covers its shutdown.
            deadline: Duration::from_secs(u64::from(self.timeout_s) + 20),
        }
    }
}

/// A SIPp process started by [`Sipp::start`]; killed on drop if still running.
pub struct RunningSipp {
    child: Option<Child>,
    /// Its SIP port (where a UAS scenario can be called).
    pub sip_port: u16,
    pub media_port: u16,
    command: String,
    files: [PathBuf; 6],
    started: Instant,
    deadline: Duration,
}

impl RunningSipp {
    /// Waits for SIPp to end (bounded by its timeout plus a margin; then it is killed).
    pub fn finish(mut self) -> SippOutcome {
        let mut child = self.child.take().expect("not finished yet");
        let left = self.deadline.saturating_sub(self.started.elapsed());
        let status = wait_deadline(&mut child, left);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let [errors, messages, logs, screen, stdout, stderr] = &self.files;
        SippOutcome {
            run: RunOutput {
                status,
                stdout: read_lossy(stdout),
                stderr: read_lossy(stderr),
                elapsed: self.started.elapsed(),
            },
            command: self.command.clone(),
            errors: read_lossy(errors),
            messages: read_lossy(messages),
            logs: read_lossy(logs),
            screen: read_lossy(screen),
        }
    }
}

impl Drop for RunningSipp {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl SippOutcome {
    pub fn exit_code(&self) -> Option<i32> {
        self.run.code()
    }

    /// Everything SIPp said, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "sipp exit: {:?} after {:.1} s\ncommand: {}\n--- sipp stderr ---\n{}\n\
             --- sipp unexpected messages (-trace_err) ---\n{}\n--- sipp <log> ---\n{}\n\
             --- sipp SIP trace (last 150 lines) ---\n{}\n--- sipp screen (last 40 lines) ---\n{}",
            self.run.status,
            self.run.elapsed.as_secs_f64(),
            self.command,
            tail(&self.run.stderr, 60),
            tail(&self.errors, 100),
            self.logs,
            tail(&self.messages, 150),
            tail(&self.screen, 40),
        )
    }

    /// Panics with the whole story unless SIPp exited 0 (its one call succeeded).
    pub fn assert_success(&self, what: &str) {
        assert_eq!(
            self.exit_code(),
            Some(0),
            "{what}: SIPp scenario failed\n{}",
            self.describe()
        );
    }

    /// The 200 OK to the INVITE, as SIPp received it (panics if there is none).
    pub fn invite_answer(&self) -> String {
        self.responses("SIP/2.0 200", "INVITE")
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no 200 OK to the INVITE in the trace\n{}", self.describe()))
    }

    /// Received responses whose status line starts with `status` and whose CSeq method is
    /// `method`.
    pub fn responses(&self, status: &str, method: &str) -> Vec<String> {
        self.received(status)
            .into_iter()
            .filter(|m| {
                header(m, "CSeq").is_some_and(|v| {
                    v.split_whitespace()
                        .nth(1)
                        .is_some_and(|meth| meth.eq_ignore_ascii_case(method))
                })
            })
            .collect()
    }

    /// SIP messages SIPp received (from its `-trace_msg` file) whose first line starts with
    /// `start_line`. The trace holds blocks "----- <time>\n<TRANSPORT> message received [n]
    /// bytes :\n\n<message>".
    pub fn received(&self, start_line: &str) -> Vec<String> {
        self.messages
            .split("----------------------------------------------- ")
            .filter_map(|block| {
                let (_, rest) = block.split_once('\n')?;
                let (what, msg) = rest.split_once('\n')?;
                if !what.contains("message received") {
                    return None;
                }
                let msg = msg.trim_start();
                msg.starts_with(start_line).then(|| msg.to_owned())
            })
            .collect()
    }
}

/// The value of the first header `name` (case-insensitive; no compact forms) in a SIP message.
pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines()
        .take_while(|l| !l.trim().is_empty())
        .skip(1)
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
}
