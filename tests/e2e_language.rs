//! End to end: the IVR's languages in a real call, and reloading the packs under a call.
//!
//! A hand-written UAC (tests/common/uac.rs) calls the real server, records every RTP payload
//! it receives and types keys as RFC 4733 telephone-events in its own RTP stream (the server
//! latches symmetric RTP to that stream). What the caller hears is checked byte for byte
//! against the packs' own encoded prompts, loaded in the test through the library exactly as
//! the server loads them (`Catalogue::load` + `PromptSets::load`, same dir, same tags): the
//! server's playout copies each prompt's PCMU bytes into consecutive 20 ms payloads, so a
//! prompt queue is a contiguous run of the received byte stream.
//!
//! * language menu: with `languages = ["en-US", "fr-FR"]` the call opens with en-US
//!   `lang_select`, en-US `digit_1`, fr-FR `lang_select` (contiguous, from the first packet);
//!   key `2` (RFC 4733) makes the rest of the dialogue French: fr-FR `welcome` then `enter_id`,
//!   starting on a packet boundary, and no en-US `welcome`/`enter_id` frame anywhere;
//! * a phone whose device template has locale fr-FR hears no menu: fr-FR `welcome` from the
//!   first packet;
//! * reload under a call: a broken pack is refused (422 with the loader's message, the call
//!   keeps its 50 packets per second, no BYE); a repaired and changed pack reloads (200); the
//!   call in progress still plays the recording it started with, a new call the new one; SIGHUP
//!   reloads too (logged).

mod common;

use common::server::{Server, ServerOptions};
use common::uac::{sdp, sdp_audio_addr, RtpEndpoint, RtpSender, SipMessage, Uac};
use common::{repo_root, tail, wait_for};
use selfprov::langpack::{Catalogue, PromptSets};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// The telephone-event payload type the UAC offers.
const TE_PT: u8 = 101;
/// One 20 ms PCMU frame.
const FRAME: usize = 160;
/// How long a key is held (RFC 4733 start, updates, end x3).
const KEY_HELD: Duration = Duration::from_millis(100);

/// The packs as the server loads them: `dir` (the shipped `lang-packs/` or a copy), the repo's
/// catalogue, `tags` in priority order.
fn load_sets(dir: &Path, tags: &[&str]) -> PromptSets {
    let catalogue = Catalogue::load(&repo_root().join("prompts/catalogue.toml"))
        .expect("load the prompt catalogue");
    PromptSets::load(dir, &catalogue, tags)
        .unwrap_or_else(|e| panic!("load the packs {tags:?} from {}: {e}", dir.display()))
        .0
}

/// The PCMU bytes the server sends for prompt `id` of language `tag`.
fn pcmu(sets: &PromptSets, tag: &str, id: &str) -> Vec<u8> {
    let p = sets
        .prompt(tag, id)
        .unwrap_or_else(|| panic!("no prompt {id} in {tag}"));
    assert!(p.pcmu.len() > 4 * FRAME, "{tag}/{id} is too short to test");
    p.pcmu.to_vec()
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Position of `needle` in `hay` at or after `from`.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    (from..=hay.len() - needle.len()).find(|&i| hay.get(i..i + needle.len()) == Some(needle))
}

/// The server's PCMU stream as received: payloads concatenated in arrival order (loopback
/// keeps the order; the sequence numbers are checked), with each packet's arrival time and
/// offset in the bytes.
struct Heard {
    bytes: Vec<u8>,
    packets: Vec<(Instant, usize)>,
}

impl Heard {
    fn of(rtp: &RtpEndpoint, server_rtp: SocketAddr) -> Heard {
        let mut bytes = Vec::new();
        let mut packets = Vec::new();
        let mut last_seq: Option<u16> = None;
        for p in rtp.packets() {
            assert_eq!(p.from, server_rtp, "RTP from an unexpected source");
            assert_eq!(p.pt, 0, "the server sends PCMU only");
            if let Some(prev) = last_seq {
                assert_eq!(
                    p.seq,
                    prev.wrapping_add(1),
                    "a packet was lost or reordered"
                );
            }
            last_seq = Some(p.seq);
            packets.push((p.at, bytes.len()));
            bytes.extend_from_slice(&p.payload);
        }
        Heard { bytes, packets }
    }

    /// Byte offset of the first packet received at or after `t`.
    fn offset_at(&self, t: Instant) -> usize {
        self.packets
            .iter()
            .find(|(at, _)| *at >= t)
            .map_or(self.bytes.len(), |(_, o)| *o)
    }

    /// The 160-byte payloads, from byte `from` on.
    fn frames_from(&self, from: usize) -> impl Iterator<Item = &[u8]> {
        self.bytes.get(from..).unwrap_or_default().chunks(FRAME)
    }
}

/// The frames of `prompt` a caller could only have heard from that recording: whole 20 ms
/// frames that are not one repeated byte (silence) and occur nowhere in `other`.
fn distinctive_frames(prompt: &[u8], other: &[u8]) -> Vec<Vec<u8>> {
    prompt
        .chunks_exact(FRAME)
        .filter(|f| f.iter().any(|&b| b != f[0]))
        .filter(|f| find(other, f, 0).is_none())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Calls 8000 offering PCMU + telephone-event 101 to `rtp`, ACKs, and starts the caller's own
/// stream from `rtp` (the server latches to it; keys go in it). Returns the UAC, the server's
/// RTP address and the sender.
fn call(server: &Server, rtp: &RtpEndpoint) -> (Uac, SocketAddr, RtpSender) {
    let mut uac = Uac::new(server.sip, "8000");
    let offer = sdp(1, rtp.addr.port(), &[(0, "PCMU")], Some(TE_PT), "sendrecv");
    let ok = uac.invite(Some(&offer));
    assert_eq!(ok.status(), Some(200), "the IVR answers\n{}", uac.trace());
    let server_rtp = sdp_audio_addr(&ok.body)
        .unwrap_or_else(|| panic!("no audio address in the answer:\n{}", ok.body));
    uac.ack(None);
    let sender = rtp.start_sending(server_rtp, 0);
    (uac, server_rtp, sender)
}

/// Waits (bounded) until the stream holds `needle` at or after the byte offset `from(heard)`;
/// returns the stream and the match position.
fn wait_heard(
    server: &Server,
    rtp: &RtpEndpoint,
    server_rtp: SocketAddr,
    timeout: Duration,
    needle: &[u8],
    what: &str,
    from: impl Fn(&Heard) -> usize,
) -> (Heard, usize) {
    wait_for(timeout, || {
        let heard = Heard::of(rtp, server_rtp);
        let pos = find(&heard.bytes, needle, from(&heard))?;
        Some((heard, pos))
    })
    .unwrap_or_else(|| {
        let heard = Heard::of(rtp, server_rtp);
        panic!(
            "{what}: not heard within {timeout:?} ({} packets received)\n--- server log ---\n{}",
            heard.packets.len(),
            tail(&server.log(), 80)
        )
    })
}

/// Presses `key` as RFC 4733 events in the caller's stream; returns when its first packet left.
fn press(sender: &RtpSender, key: char) -> Instant {
    let before = sender.keys_started().len();
    sender.send_key(TE_PT, key, KEY_HELD);
    assert!(
        sender.wait_keys_sent(before as u32 + 1, Duration::from_secs(3)),
        "the key {key} was not sent"
    );
    sender.keys_started()[before]
}

fn assert_no_bye(uac: &mut Uac, server: &Server) {
    let pending: Vec<SipMessage> = uac.pending_requests(Duration::from_millis(200));
    assert!(
        pending.iter().all(|r| r.method() != Some("BYE")),
        "the server hung up the call\n{}\n--- server log ---\n{}",
        uac.trace(),
        tail(&server.log(), 80)
    );
}

fn two_languages() -> ServerOptions {
    ServerOptions {
        extra: vec![("ivr", r#"languages = ["en-US", "fr-FR"]"#.into())],
        ..Default::default()
    }
}

#[test]
fn language_menu_key_2_makes_the_dialogue_french() {
    let server = Server::start_with(&two_languages());
    let sets = load_sets(&repo_root().join("lang-packs"), &["en-US", "fr-FR"]);
    let en_menu = pcmu(&sets, "en-US", "lang_select");
    let en_1 = pcmu(&sets, "en-US", "digit_1");
    let fr_menu = pcmu(&sets, "fr-FR", "lang_select");
    let fr_welcome = pcmu(&sets, "fr-FR", "welcome");
    let fr_enter_id = pcmu(&sets, "fr-FR", "enter_id");
    let en_welcome = pcmu(&sets, "en-US", "welcome");
    let en_enter_id = pcmu(&sets, "en-US", "enter_id");

    let rtp = RtpEndpoint::bind();
    let (mut uac, server_rtp, sender) = call(&server, &rtp);

    // The menu: "For English, press 1" in English, then "Pour le français, appuyez sur" in
    // French, one queue from the first packet of the call.
    let menu = concat(&[&en_menu, &en_1, &fr_menu]);
    let (_, at) = wait_heard(
        &server,
        &rtp,
        server_rtp,
        Duration::from_secs(15),
        &menu,
        "the menu (en-US lang_select, en-US digit_1, fr-FR lang_select)",
        |_| 0,
    );
    assert_eq!(at, 0, "the menu must open the call (found at byte {at})");

    let key_at = press(&sender, '2');

    // The rest of the call is French: the welcome, then "enter your ID", from a packet start.
    let french = concat(&[&fr_welcome, &fr_enter_id[..fr_enter_id.len().min(8_000)]]);
    let (heard, at) = wait_heard(
        &server,
        &rtp,
        server_rtp,
        Duration::from_secs(12),
        &french,
        "fr-FR welcome + enter_id after the key 2",
        |h| h.offset_at(key_at),
    );
    assert_eq!(
        at % FRAME,
        0,
        "the welcome starts a new queue, so a new packet (byte {at})"
    );
    let after_key = heard.offset_at(key_at);
    assert!(
        at - after_key <= 10 * FRAME,
        "the welcome must follow the key at once (barge-in): {} ms after it",
        (at - after_key) / 8
    );

    // Nothing of the English dialogue, anywhere in the call.
    let french_all = concat(&[&fr_welcome, &fr_enter_id]);
    for (id, en) in [("welcome", &en_welcome), ("enter_id", &en_enter_id)] {
        let frames = distinctive_frames(en, &french_all);
        assert!(
            frames.len() * 2 > en.len() / FRAME,
            "en-US {id} is too like the French prompts for the check to mean anything"
        );
        let heard_en = heard
            .frames_from(0)
            .filter(|f| frames.iter().any(|e| e == f))
            .count();
        assert_eq!(heard_en, 0, "{heard_en} frames of en-US {id} were sent");
    }
    assert!(
        server.log().contains("caller's language language=fr-FR"),
        "the server logs the caller's language\n{}",
        tail(&server.log(), 60)
    );
    assert_no_bye(&mut uac, &server);
    drop(sender);
    assert_eq!(uac.bye(), 200, "BYE answered 200\n{}", uac.trace());
}

/// Runs `selfprov <args>` against the server's store and returns its JSON output.
fn cli_json(server: &Server, args: &[&str]) -> serde_json::Value {
    let out = server.cli(args);
    assert!(
        out.success(),
        "`selfprov {}` failed ({:?}):\n{}\n{}",
        args.join(" "),
        out.status,
        out.stdout,
        out.stderr
    );
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "`selfprov {}` printed no JSON ({e}):\n{}",
            args.join(" "),
            out.stdout
        )
    })
}

#[test]
fn a_phone_whose_template_says_fr_fr_hears_no_menu() {
    let server = Server::start_with(&two_languages());
    let sets = load_sets(&repo_root().join("lang-packs"), &["en-US", "fr-FR"]);
    let fr_welcome = pcmu(&sets, "fr-FR", "welcome");
    let en_menu = pcmu(&sets, "en-US", "lang_select");

    // The phone is known: a device with the UAC's MAC and a template whose locale is fr-FR
    // (a phone being re-provisioned).
    let rtp = RtpEndpoint::bind();
    let uac_mac = Uac::new(server.sip, "8000").mac;
    let template = cli_json(
        &server,
        &[
            "device-template",
            "create",
            "--data",
            r#"{"name": "French phones", "locale": "fr-FR"}"#,
        ],
    );
    let template_id = template["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no id in {template}"));
    let device = serde_json::json!({"mac": uac_mac, "template_id": template_id});
    let device = cli_json(
        &server,
        &[
            "api",
            "POST",
            "/api/v1/devices",
            "--data",
            &device.to_string(),
        ],
    );
    assert_eq!(
        device["template_id"].as_i64(),
        Some(template_id),
        "{device}"
    );

    let (mut uac, server_rtp, sender) = call(&server, &rtp);
    let (heard, at) = wait_heard(
        &server,
        &rtp,
        server_rtp,
        Duration::from_secs(10),
        &fr_welcome,
        "fr-FR welcome",
        |_| 0,
    );
    assert_eq!(at, 0, "the French welcome must open the call: no menu");
    assert!(
        find(&heard.bytes, &en_menu[..8 * FRAME], 0).is_none(),
        "the menu was played"
    );
    assert_no_bye(&mut uac, &server);
    drop(sender);
    assert_eq!(uac.bye(), 200, "BYE answered 200\n{}", uac.trace());
}

/// One admin API request with a bearer token and an empty body; returns the status and JSON.
fn api(addr: SocketAddr, method: &str, path: &str, token: &str) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let json = serde_json::from_str(body.trim()).unwrap_or(serde_json::Value::Null);
    (status, json)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the pack copy");
    for e in std::fs::read_dir(from).expect("read the pack") {
        let e = e.expect("dir entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy a pack file");
    }
}

/// The pid of the `selfprov serve` using this server's config (its path is unique to the
/// test), found in /proc: the harness keeps its child private.
fn server_pid(server: &Server) -> Option<u32> {
    let config = server.config_path.to_string_lossy().into_owned();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        (args.iter().any(|a| a == "serve") && args.contains(&config)).then_some(pid)
    })
}

#[test]
fn reload_refuses_a_broken_pack_and_never_changes_a_call_in_progress() {
    // The server reads a copy of the en-US pack that the test breaks and changes.
    let packs = tempfile::tempdir().expect("temp dir for the packs");
    let en_dir = packs.path().join("en-US");
    copy_dir(&repo_root().join("lang-packs/en-US"), &en_dir);
    let server = Server::start_with(&ServerOptions {
        extra: vec![
            ("ivr", r#"languages = ["en-US"]"#.into()),
            ("langpacks", format!("dir = {:?}", packs.path())),
        ],
        ..Default::default()
    });
    let old = load_sets(packs.path(), &["en-US"]);
    let old_welcome = pcmu(&old, "en-US", "welcome");
    let old_enter_id = pcmu(&old, "en-US", "enter_id");
    let no_input = pcmu(&old, "en-US", "no_input");
    let try_again = pcmu(&old, "en-US", "try_again");
    let out = server.cli(&["token", "create", "--name", "e2e-language"]);
    assert!(out.success(), "token create: {}", out.stderr);
    let token = out.stdout.trim().to_string();
    let api_addr = server.api.expect("the API address");

    let rtp = RtpEndpoint::bind();
    let (mut uac, server_rtp, sender) = call(&server, &rtp);
    wait_heard(
        &server,
        &rtp,
        server_rtp,
        Duration::from_secs(10),
        &old_welcome[..25 * FRAME],
        "the start of the welcome",
        |_| 0,
    );

    // A broken pack: the welcome is no audio file any more. Refused, with the loader's
    // message; the call goes on.
    std::fs::write(
        en_dir.join("welcome.wav"),
        b"RIFF\x04\0\0\0junk, not a recording",
    )
    .expect("break the pack");
    let (status, body) = api(api_addr, "POST", "/api/v1/langpacks/reload", &token);
    let message = body["message"].as_str().unwrap_or_default().to_string();
    assert_eq!(status, 422, "a broken pack is refused: {body}");
    assert!(
        message.contains("welcome.wav") && message.contains("packs in service stay"),
        "the refusal names the broken file and says the packs stay: {message}"
    );
    assert!(
        server.log().contains("language pack reload refused"),
        "the refusal is logged\n{}",
        tail(&server.log(), 40)
    );
    let window_start = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let in_window = rtp
        .packets()
        .iter()
        .filter(|p| p.at >= window_start && p.at < window_start + Duration::from_secs(2))
        .count();
    assert!(
        (95..=105).contains(&in_window),
        "the call keeps 50 packets per second after the refused reload: {in_window} in 2 s"
    );
    assert_no_bye(&mut uac, &server);

    // Repaired, and "enter your ID" re-recorded (here: another valid recording, French):
    // reloaded.
    std::fs::copy(
        repo_root().join("lang-packs/en-US/welcome.wav"),
        en_dir.join("welcome.wav"),
    )
    .expect("repair the pack");
    std::fs::copy(
        repo_root().join("lang-packs/fr-FR/enter_id.wav"),
        en_dir.join("enter_id.wav"),
    )
    .expect("change a recording");
    let (status, body) = api(api_addr, "POST", "/api/v1/langpacks/reload", &token);
    assert_eq!(status, 200, "the repaired pack reloads: {body}");
    assert!(
        body["packs"]
            .as_str()
            .is_some_and(|p| p.starts_with("en-US ")),
        "the answer names the packs in service: {body}"
    );
    let new = load_sets(packs.path(), &["en-US"]);
    let new_enter_id = pcmu(&new, "en-US", "enter_id");
    assert_ne!(new_enter_id, old_enter_id);

    // The call in progress keeps its packs: `#` with no ID replays "enter your ID" from them.
    let key_at = press(&sender, '#');
    let replay = concat(&[&no_input, &try_again, &old_enter_id]);
    let (heard, _) = wait_heard(
        &server,
        &rtp,
        server_rtp,
        Duration::from_secs(15),
        &replay,
        "the old call's no_input, try_again, enter_id from the packs it started with",
        |h| h.offset_at(key_at),
    );
    let changed = distinctive_frames(&new_enter_id, &old_enter_id);
    assert!(changed.len() * 2 > new_enter_id.len() / FRAME);
    assert!(
        heard
            .frames_from(0)
            .all(|f| !changed.iter().any(|c| c == f)),
        "the call in progress played the reloaded enter_id"
    );
    assert_no_bye(&mut uac, &server);
    drop(sender);
    assert_eq!(uac.bye(), 200, "BYE answered 200\n{}", uac.trace());

    // A new call gets the reloaded packs.
    let rtp2 = RtpEndpoint::bind();
    let (mut uac2, server_rtp2, sender2) = call(&server, &rtp2);
    let fresh = concat(&[&old_welcome, &new_enter_id[..new_enter_id.len().min(8_000)]]);
    let (_, at) = wait_heard(
        &server,
        &rtp2,
        server_rtp2,
        Duration::from_secs(12),
        &fresh,
        "a new call's welcome and reloaded enter_id",
        |_| 0,
    );
    assert_eq!(at, 0);
    drop(sender2);
    assert_eq!(uac2.bye(), 200, "BYE answered 200\n{}", uac2.trace());

    // SIGHUP reloads as well.
    let pid = server_pid(&server).expect("the server's pid in /proc");
    let before = server.log().matches("language packs reloaded").count();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -HUP {pid}");
    let line = wait_for(Duration::from_secs(15), || {
        let log = server.log();
        (log.matches("language packs reloaded").count() > before)
            .then(|| {
                log.lines()
                    .rev()
                    .find(|l| l.contains("language packs reloaded"))
                    .map(str::to_owned)
            })
            .flatten()
    })
    .unwrap_or_else(|| panic!("no reload after SIGHUP\n{}", tail(&server.log(), 40)));
    assert!(line.contains("SIGHUP"), "the log says why: {line}");
}
