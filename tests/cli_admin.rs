//! The admin commands of the real `selfprov` binary against a SQLite store in a temporary
//! folder, run from another working directory (migrations must be embedded in the binary).

use selfprov::provisioning::DeviceIdentity;
use selfprov::store::{AuthMethod, Store};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
    db: PathBuf,
}

/// A config whose store is a file in a fresh temporary folder.
fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store").join("selfprov.db");
    let config = dir.path().join("selfprov.toml");
    std::fs::write(
        &config,
        format!("[store]\nurl = \"sqlite://{}\"\n", db.display()),
    )
    .unwrap();
    Env { dir, config, db }
}

fn run_in(cwd: &Path, config: Option<&Path>, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_selfprov"));
    cmd.args(args);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.current_dir(cwd)
        .env_remove("SELFPROV_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run selfprov");
    if let Some(input) = stdin {
        // A child that exits early (bad arguments) closes its end: the test then checks the
        // exit status instead of failing on the broken pipe here.
        let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    }
    child.wait_with_output().unwrap()
}

impl Env {
    fn run(&self, args: &[&str]) -> Output {
        // Another working directory than the crate's: nothing may be read relative to it.
        let cwd = self.dir.path().join("elsewhere");
        std::fs::create_dir_all(&cwd).unwrap();
        run_in(&cwd, Some(&self.config), args, None)
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "{args:?} should fail; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }
    fn json(&self, args: &[&str]) -> Vec<Value> {
        let out = self.ok(args);
        match serde_json::from_str::<Value>(&out) {
            Ok(Value::Array(a)) => a,
            other => panic!("{args:?} printed no JSON array: {other:?}\n{out}"),
        }
    }
}

#[test]
fn user_add_list_remove() {
    let e = env();
    let out = e.ok(&[
        "user",
        "add",
        "--user-id",
        "jdoe",
        "--extension",
        "1001",
        "--pin",
        "123456",
        "--self-provisioning-id",
        "4711",
        "--first-name",
        "Jane",
        "--last-name",
        "Doe",
    ]);
    assert!(out.contains("added user jdoe"), "{out}");
    assert!(
        e.db.exists(),
        "the store file is created where store.url says"
    );
    e.ok(&[
        "user",
        "add",
        "--user-id",
        "asmith",
        "--extension",
        "1002",
        "--disabled",
    ]);

    let table = e.ok(&["user", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("USER ID"), "{table}");
    assert!(
        lines[1].starts_with("asmith") && lines[1].contains("1002"),
        "{table}"
    );
    assert!(
        lines[2].starts_with("jdoe") && lines[2].contains("4711") && lines[2].contains("Jane Doe"),
        "{table}"
    );

    let raw = e.ok(&["user", "list", "--json"]);
    assert!(
        !raw.contains("argon2") && !raw.contains("pin_hash") && !raw.contains("123456"),
        "{raw}"
    );
    let users = e.json(&["user", "list", "--json"]);
    assert_eq!(users.len(), 2);
    let jdoe = &users[1];
    assert_eq!(jdoe["user_id"], "jdoe");
    assert_eq!(jdoe["selfprov_id"], "4711");
    assert_eq!(jdoe["extension"], "1001");
    assert_eq!(jdoe["first_name"], "Jane");
    assert_eq!(jdoe["has_pin"], true);
    assert_eq!(jdoe["selfprov_enabled"], true);
    assert!(
        humantime::parse_rfc3339(jdoe["created_at"].as_str().unwrap()).is_ok(),
        "{jdoe}"
    );
    assert_eq!(users[0]["selfprov_id"], Value::Null);
    assert_eq!(users[0]["has_pin"], false);
    assert_eq!(users[0]["selfprov_enabled"], false);

    let out = e.ok(&["user", "remove", "jdoe"]);
    assert!(out.contains("removed user jdoe"), "{out}");
    let users = e.json(&["user", "list", "--json"]);
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["user_id"], "asmith");
    let err = e.fails(&["user", "remove", "jdoe"]);
    assert!(err.contains("no user jdoe"), "{err}");
}

#[test]
fn duplicates_and_bad_input_say_what_to_do() {
    let e = env();
    e.ok(&["user", "add", "--user-id", "jdoe", "--extension", "1001"]);
    let err = e.fails(&["user", "add", "--user-id", "jdoe", "--extension", "1002"]);
    assert!(
        err.contains("user jdoe already exists: use a different --user-id or remove it first"),
        "{err}"
    );
    let err = e.fails(&["user", "add", "--user-id", "other", "--extension", "1001"]);
    assert!(
        err.contains("extension 1001") && err.contains("--extension"),
        "{err}"
    );
    let err = e.fails(&["user", "add", "--user-id", "x", "--extension", "10a"]);
    assert!(err.contains("--extension"), "{err}");
    let err = e.fails(&[
        "user",
        "add",
        "--user-id",
        "x",
        "--extension",
        "1003",
        "--pin",
        "12ab",
    ]);
    assert!(err.contains("--pin") && !err.contains("12ab"), "{err}");
    let err = e.fails(&[
        "user",
        "add",
        "--user-id",
        "x",
        "--extension",
        "1003",
        "--self-provisioning-id",
        "9x",
    ]);
    assert!(err.contains("--self-provisioning-id"), "{err}");
    // None of the refused users exists.
    assert_eq!(e.json(&["user", "list", "--json"]).len(), 1);
}

#[test]
fn pin_from_standard_input() {
    let e = env();
    let cwd = e.dir.path();
    let out = run_in(
        cwd,
        Some(&e.config),
        &[
            "user",
            "add",
            "--user-id",
            "p",
            "--extension",
            "7",
            "--pin",
            "-",
        ],
        Some("2468\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let users = e.json(&["user", "list", "--json"]);
    assert_eq!(users[0]["has_pin"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn device_list_json_empty_then_with_a_bound_phone() {
    let e = env();
    assert_eq!(e.ok(&["device", "list", "--json"]).trim(), "[]");
    let table = e.ok(&["device", "list"]);
    assert!(table.contains("no devices"), "{table}");
    e.ok(&["user", "add", "--user-id", "jdoe", "--extension", "1001"]);

    // The server's side, in this process, on the same file.
    let store = Store::open(&format!("sqlite://{}", e.db.display()))
        .await
        .unwrap();
    let identity = DeviceIdentity {
        mac: Some("0022905C8E3A".into()),
        device_name: Some("SEP0022905C8E3A".into()),
        vendor: Some("Cisco".into()),
        model: Some("CP8851".into()),
        firmware: Some("14.2.1".into()),
        user_agent: Some("Cisco-CP8851/14.2.1".into()),
        sip_identity: "autoprov@pbx.example.com".into(),
        contact: None,
    };
    let bound = store
        .bind_device(&identity, "jdoe", AuthMethod::Pin)
        .await
        .unwrap();

    let e2 = &e;
    let devices = tokio::task::block_in_place(|| e2.json(&["device", "list", "--json"]));
    assert_eq!(devices.len(), 1);
    let d = &devices[0];
    let mut keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "autoreg_number",
            "config_fetched_at",
            "created_at",
            "device_name",
            "firmware",
            "id",
            "last_ip",
            "last_seen",
            "lines",
            "mac",
            "model",
            "owner",
            "resync_at",
            "resync_outcome",
            "sip_identity",
            "state",
            "user_agent",
            "vendor"
        ]
    );
    assert_eq!(d["id"], bound.id);
    assert_eq!(d["mac"], "0022905C8E3A");
    assert_eq!(d["device_name"], "SEP0022905C8E3A");
    assert_eq!(d["vendor"], "Cisco");
    assert_eq!(d["model"], "CP8851");
    assert_eq!(d["firmware"], "14.2.1");
    assert_eq!(d["user_agent"], "Cisco-CP8851/14.2.1");
    assert_eq!(d["sip_identity"], "autoprov@pbx.example.com");
    assert_eq!(d["owner"], "jdoe");
    assert_eq!(d["state"], "provisioning");
    assert_eq!(
        d["lines"],
        serde_json::json!([{"position": 1, "number": "1001"}])
    );
    for t in ["created_at", "last_seen"] {
        assert!(
            humantime::parse_rfc3339(d[t].as_str().unwrap()).is_ok(),
            "{t}: {d}"
        );
    }

    let table = tokio::task::block_in_place(|| e2.ok(&["device", "list"]));
    assert!(
        table.contains("0022905C8E3A") && table.contains("jdoe") && table.contains("1:1001"),
        "{table}"
    );

    // Removing the user from the CLI unbinds the phone the server bound.
    tokio::task::block_in_place(|| e2.ok(&["user", "remove", "jdoe"]));
    let after = store.get_device(bound.id).await.unwrap().unwrap();
    assert_eq!(after.owner, None);
    store.close().await;
}

#[test]
fn relative_store_path_is_relative_to_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[store]\nurl = \"sqlite://rel/data/x.db\"\n").unwrap();
    let out = run_in(
        dir.path(),
        Some(&config),
        &["device", "list", "--json"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("rel/data/x.db").exists());
}

#[test]
fn secret_hash_reads_digits_and_prints_a_phc_string() {
    let e = env();
    let out = run_in(e.dir.path(), None, &["secret", "hash"], Some("987654\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let phc = String::from_utf8(out.stdout).unwrap();
    let phc = phc.trim();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    assert!(selfprov::provisioning::verify_secret(phc, "987654"));
    assert!(!selfprov::provisioning::verify_secret(phc, "987655"));

    for bad in ["", "12a4\n", "123456789012345678901\n"] {
        let out = run_in(e.dir.path(), None, &["secret", "hash"], Some(bad));
        assert!(!out.status.success(), "{bad:?} accepted");
        assert!(out.stdout.is_empty());
    }
}

/// `config check` fails wherever `serve` would, and says why; it writes nothing.
#[test]
fn config_check_fails_wherever_serve_would() {
    let e = env();
    let out = e.ok(&["config", "check"]);
    assert!(out.contains("configuration OK"), "{out}");
    assert!(
        out.contains("language packs: en-US"),
        "the packs are loaded: {out}"
    );
    assert!(out.contains("store: none yet"), "{out}");
    assert!(!e.db.exists(), "config check creates no store");
    let base = std::fs::read_to_string(&e.config).unwrap();
    let with = |extra: &str| {
        std::fs::write(&e.config, format!("{base}{extra}")).unwrap();
        let err = e.fails(&["config", "check"]);
        std::fs::write(&e.config, &base).unwrap();
        err
    };
    let err = with("[ivr]\nlanguages = [\"en-US\", \"it-IT\"]\n");
    assert!(err.contains("it-IT"), "names the missing pack: {err}");
    let err = with("[ivr]\nauth_mode = \"secure-users-and-admins\"\n");
    assert!(err.contains("admin code"), "{err}");
    let err = with(
        "[[pbx]]\nname = \"kam\"\nkind = \"kamailio\"\nregistrar = \"10.0.0.2:5060\"\n\
         db_url = \"postgres://k:s@host:notaport/kamailio\"\n",
    );
    assert!(err.contains("pbx") && err.contains("db_url"), "{err}");
    // With a store, its settings are what is checked.
    e.ok(&[
        "settings",
        "update",
        "--data",
        r#"{"languages": ["fr-FR", "en-US"]}"#,
    ]);
    let out = e.ok(&["config", "check"]);
    assert!(
        out.contains("fr-FR") && out.contains("store: sqlite"),
        "{out}"
    );
}
