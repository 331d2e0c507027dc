//! A headless baresip 1.0.0 (a real softphone) driven over its `ctrl_tcp` module.
//!
//! The config dir is generated per test: loopback only (`net_interface`/`sip_listen` on
//! 127.0.0.1, RTP ports from a free block), G.711 only, an `aufile` audio source (a paced WAV;
//! when it ends baresip hangs up, so it must outlast the call), the `sndfile` filter recording
//! what baresip decodes from the far end (`snd_path/dump-*-dec.wav`) and what it sends
//! (`-enc.wav`). Commands are netstring-framed JSON (`{"command","params","token"}`); responses
//! carry `"response":true` and the token, events `"event":true` and a `type` such as
//! `CALL_ESTABLISHED` or `CALL_CLOSED`.

use super::{ports, read_lossy, require_tool, tail, wait_deadline};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The account of [`Baresip::start`]: a From identity and codecs, no registration.
const NO_REGISTRATION: &str =
    "<sip:e2e-baresip@127.0.0.1>;regint=0;audio_codecs=PCMU/8000/1,PCMA/8000/1";

/// How baresip plays what it receives. Notes on the choice are in [`Baresip::start`].
pub const AUDIO_PLAYER: &str = "aubridge,e2e";

pub struct Baresip {
    child: Option<Child>,
    pub config_dir: PathBuf,
    /// Where the sndfile module writes its `dump-*.wav` files.
    pub snd_path: PathBuf,
    pub log_path: PathBuf,
    pub sip_port: u16,
    ctrl: TcpStream,
    rx: mpsc::Receiver<Value>,
    pending_events: VecDeque<Value>,
    seen_events: Vec<Value>,
    next_token: u32,
}

fn write_config(
    dir: &Path,
    sip_port: u16,
    ctrl_port: u16,
    rtp_base: u16,
    source: &Path,
    snd: &Path,
    account: &str,
) {
    // Why aubridge as the player: baresip needs an audio player for the call's audio to start.
    // ALSA's `null` device is not paced, so its thread would spin and starve this 2-core box;
    // there is no aufile player in 1.0.0. The sndfile filter records in the receive path (after
    // the decoder, before the player's buffer), so the recording does not depend on the player.
    let config = format!(
        "poll_method\t\tepoll\n\
         sip_listen\t\t127.0.0.1:{sip_port}\n\
         sip_transports\t\tudp\n\
         net_interface\t\t127.0.0.1\n\
         call_local_timeout\t120\n\
         call_max_calls\t\t1\n\
         audio_player\t\t{AUDIO_PLAYER}\n\
         audio_source\t\taufile,{source}\n\
         audio_alert\t\t{AUDIO_PLAYER}\n\
         ausrc_srate\t\t8000\n\
         auplay_srate\t\t8000\n\
         ausrc_channels\t\t1\n\
         auplay_channels\t\t1\n\
         audio_level\t\tno\n\
         rtp_tos\t\t\t184\n\
         rtp_ports\t\t{rtp_base}-{rtp_end}\n\
         rtcp_mux\t\tno\n\
         jitter_buffer_delay\t1-4\n\
         rtp_stats\t\tno\n\
         module_path\t\t/usr/lib/baresip/modules\n\
         module\t\t\tg711.so\n\
         module\t\t\taufile.so\n\
         module\t\t\taubridge.so\n\
         module\t\t\tsndfile.so\n\
         module_tmp\t\tuuid.so\n\
         module_tmp\t\taccount.so\n\
         module_app\t\tmenu.so\n\
         module_app\t\tctrl_tcp.so\n\
         ctrl_tcp_listen\t\t127.0.0.1:{ctrl_port}\n\
         snd_path\t\t{snd}\n",
        source = source.display(),
        snd = snd.display(),
        rtp_end = rtp_base + 9,
    );
    std::fs::write(dir.join("config"), config).expect("write baresip config");
    std::fs::write(dir.join("accounts"), format!("{account}\n")).expect("write baresip accounts");
    std::fs::write(dir.join("contacts"), "").expect("write baresip contacts");
}

impl Baresip {
    /// Starts baresip with `audio_source` (an 8 kHz mono 16-bit WAV) as its microphone.
    pub fn start(workdir: &Path, audio_source: &Path) -> Baresip {
        // No registration (regint=0): the account only gives the From identity and codecs.
        Self::launch(workdir, audio_source, NO_REGISTRATION, false)
    }

    /// Like [`Baresip::start`] with `account_line` as the only line of the `accounts` file
    /// (e.g. `<sip:2000@127.0.0.1:5060>;auth_user=..;auth_pass=..;regint=60;...`), so baresip
    /// registers like a real phone. `sip_listen` is known only inside: the line cannot name
    /// it, and need not. The SIP trace (`-s`) goes to the log, line-buffered, so a test
    /// can check what baresip sent and received.
    pub fn start_with_account(workdir: &Path, audio_source: &Path, account_line: &str) -> Baresip {
        Self::launch(workdir, audio_source, account_line, true)
    }

    fn launch(workdir: &Path, audio_source: &Path, account: &str, sip_trace: bool) -> Baresip {
        let exe = require_tool("baresip", "baresip");
        let config_dir = workdir.join("baresip");
        let snd_path = workdir.join("baresip-snd");
        std::fs::create_dir_all(&config_dir).expect("mkdir baresip config");
        std::fs::create_dir_all(&snd_path).expect("mkdir baresip snd_path");
        let sip_port = ports::free_port();
        let ctrl_port = ports::free_port();
        let rtp_base = ports::free_port_block(10, true);
        write_config(
            &config_dir,
            sip_port,
            ctrl_port,
            rtp_base,
            audio_source,
            &snd_path,
            account,
        );
        let log_path = workdir.join("baresip.log");
        let log = std::fs::File::create(&log_path).expect("create baresip log");
        let log2 = log.try_clone().expect("clone log handle");
        let mut cmd = if sip_trace {
            // stdout is a file, so fully buffered: line buffering (coreutils' stdbuf) lets a
            // test read a SIP message from the log as soon as baresip has handled it.
            let mut c = Command::new("stdbuf");
            c.arg("-oL").arg(exe);
            c
        } else {
            Command::new(exe)
        };
        cmd.arg("-f").arg(&config_dir).arg("-v");
        if sip_trace {
            cmd.arg("-s");
        }
        let child = cmd
            .current_dir(workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .expect("start baresip");
        let mut child = Some(child);

        // Connect to ctrl_tcp once baresip listens (bounded).
        let addr: SocketAddr = ([127, 0, 0, 1], ctrl_port).into();
        let deadline = Instant::now() + Duration::from_secs(15);
        let ctrl = loop {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Ok(s) => break s,
                Err(e) => {
                    let exited = child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                    if exited.is_some() || Instant::now() >= deadline {
                        if let Some(mut c) = child.take() {
                            let _ = c.kill();
                            let _ = c.wait();
                        }
                        panic!(
                            "baresip ctrl_tcp on {addr} not reachable ({e}; exit: {exited:?})\n\
                             --- baresip log ---\n{}",
                            tail(&read_lossy(&log_path), 100)
                        );
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        let reader = ctrl.try_clone().expect("clone ctrl socket");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || read_netstrings(reader, tx));
        Baresip {
            child,
            config_dir,
            snd_path,
            log_path,
            sip_port,
            ctrl,
            rx,
            pending_events: VecDeque::new(),
            seen_events: Vec::new(),
            next_token: 1,
        }
    }

    pub fn log(&self) -> String {
        read_lossy(&self.log_path)
    }

    /// Sends a command and waits (bounded) for its response; events that arrive meanwhile are
    /// kept for [`Baresip::wait_event`].
    pub fn command(&mut self, command: &str, params: &str) -> Value {
        let token = format!("t{}", self.next_token);
        self.next_token += 1;
        let msg = json!({"command": command, "params": params, "token": token}).to_string();
        let frame = format!("{}:{},", msg.len(), msg);
        self.ctrl
            .write_all(frame.as_bytes())
            .unwrap_or_else(|e| panic!("send `{command}` to baresip: {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(v) if v.get("response").and_then(Value::as_bool) == Some(true) => {
                    if v.get("token").and_then(Value::as_str) == Some(token.as_str()) {
                        return v;
                    }
                }
                Ok(v) => {
                    self.seen_events.push(v.clone());
                    self.pending_events.push_back(v);
                }
                Err(e) => panic!(
                    "no response from baresip to `{command} {params}` ({e:?})\n--- baresip log ---\n{}",
                    tail(&self.log(), 100)
                ),
            }
        }
    }

    /// Like [`Baresip::command`], and panics unless the response says `ok`.
    pub fn command_ok(&mut self, command: &str, params: &str) -> Value {
        let v = self.command(command, params);
        assert_eq!(
            v.get("ok").and_then(Value::as_bool),
            Some(true),
            "baresip refused `{command} {params}`: {v}\n--- baresip log ---\n{}",
            tail(&self.log(), 100)
        );
        v
    }

    /// Waits for an event of type `ty` (e.g. `CALL_ESTABLISHED`), at most `timeout`.
    pub fn wait_event(&mut self, ty: &str, timeout: Duration) -> Option<Value> {
        let is = |v: &Value| v.get("type").and_then(Value::as_str) == Some(ty);
        if let Some(i) = self.pending_events.iter().position(is) {
            return self.pending_events.remove(i);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(v) if v.get("response").and_then(Value::as_bool) == Some(true) => {}
                Ok(v) => {
                    self.seen_events.push(v.clone());
                    if is(&v) {
                        return Some(v);
                    }
                    self.pending_events.push_back(v);
                }
                Err(_) => return None,
            }
        }
    }

    /// Every event seen so far (for failure messages).
    pub fn events(&self) -> &[Value] {
        &self.seen_events
    }

    /// Sends one key as RFC 4733 (baresip sends about 180 ms of event per key).
    pub fn send_key(&mut self, key: char) {
        self.command_ok("sndcode", &key.to_string());
    }

    /// The recording of what baresip received and decoded (`dump-*-dec.wav`), if any.
    pub fn received_recording(&self) -> Option<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&self.snd_path)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("dump-") && n.ends_with("-dec.wav"))
            })
            .collect();
        found.sort();
        found.pop()
    }

    /// Asks baresip to quit and waits for it (bounded); kills it if it does not go.
    pub fn quit(&mut self) {
        let msg = json!({"command": "quit", "params": "", "token": "quit"}).to_string();
        let _ = self
            .ctrl
            .write_all(format!("{}:{},", msg.len(), msg).as_bytes());
        if let Some(mut c) = self.child.take() {
            if wait_deadline(&mut c, Duration::from_secs(5)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = wait_deadline(&mut c, Duration::from_secs(5));
        }
        if std::thread::panicking() {
            eprintln!(
                "--- baresip events ---\n{:#?}\n--- baresip log ({}), last 150 lines ---\n{}",
                self.seen_events,
                self.log_path.display(),
                tail(&self.log(), 150)
            );
        }
    }
}

/// Reads netstrings (`len:payload,`) of JSON from baresip until the socket closes.
fn read_netstrings(mut s: TcpStream, tx: mpsc::Sender<Value>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Parse every complete frame in the buffer.
        while let Some(colon) = buf.iter().position(|&b| b == b':') {
            let Some(len) = std::str::from_utf8(&buf[..colon])
                .ok()
                .and_then(|t| t.trim().parse::<usize>().ok())
            else {
                return; // not a netstring: give up on this connection
            };
            let end = colon + 1 + len;
            if buf.len() < end + 1 {
                break;
            }
            if let Ok(v) = serde_json::from_slice::<Value>(&buf[colon + 1..end]) {
                if tx.send(v).is_err() {
                    return;
                }
            }
            buf.drain(..=end); // payload and the trailing ','
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// How baresip's registration ended, as far as it can be seen within `timeout`.
#[derive(Debug, PartialEq)]
pub enum Registration {
    Ok,
    Failed(String),
    Pending,
}

/// Waits (bounded) for the end of baresip's first registration. The REGISTER_OK/FAIL event
/// can come before the test is connected to ctrl_tcp (baresip registers before it loads its
/// app modules, and the server answers at once), so `reginfo` is asked too: its status is
/// `OK ` after a 200, `ERR` after a failure status, `zzz` while pending (or after a local
/// error such as an unsupported challenge, which the log then names).
pub fn wait_registration(phone: &mut Baresip, timeout: Duration) -> Registration {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if phone
            .wait_event("REGISTER_OK", Duration::from_millis(10))
            .is_some()
        {
            return Registration::Ok;
        }
        if let Some(e) = phone.wait_event("REGISTER_FAIL", Duration::from_millis(10)) {
            return Registration::Failed(e.to_string());
        }
        let info = phone.command_ok("reginfo", "");
        let data = super::server::strip_ansi(info["data"].as_str().unwrap_or(""));
        if data.contains(" OK  ") || data.contains(" OK ") {
            return Registration::Ok;
        }
        if data.contains(" ERR ") {
            return Registration::Failed(data);
        }
        let log = phone.log();
        if let Some(l) = log.lines().find(|l| l.contains(": Register: ")) {
            return Registration::Failed(l.to_string());
        }
        if std::time::Instant::now() >= deadline {
            return Registration::Pending;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Types `keys` as RFC 4733 events, about as fast as a person would.
pub fn type_keys(phone: &mut Baresip, keys: &str) {
    for k in keys.chars() {
        phone.send_key(k);
        // baresip sends about 180 ms of event per key; leave a gap like a person would.
        std::thread::sleep(Duration::from_millis(350));
    }
}
