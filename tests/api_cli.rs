//! The CLI side of the admin API: `selfprov token create` prints a token the API accepts, and
//! the parity commands (`line`, `endpoint`, `user add-line`, `device find`, `settings`,
//! `audit`, `api`) run the API's operations on the store the config names.

use axum::body::Body;
use axum::http::Request;
use selfprov::store::Store;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
    url: String,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("selfprov.db");
    let url = format!("sqlite://{}", db.display());
    let config = dir.path().join("selfprov.toml");
    std::fs::write(&config, format!("[store]\nurl = \"{url}\"\n")).unwrap();
    Env { dir, config, url }
}

impl Env {
    fn run(&self, args: &[&str], stdin: Option<&Path>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_selfprov"));
        cmd.args(args)
            .arg("--config")
            .arg(&self.config)
            .current_dir(self.dir.path())
            .env_remove("SELFPROV_CONFIG")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match stdin {
            Some(p) => cmd.stdin(std::fs::File::open(p).unwrap()),
            None => cmd.stdin(Stdio::null()),
        };
        cmd.output().expect("run selfprov")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, None);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args, None);
        assert!(
            !out.status.success(),
            "{args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_create_prints_a_token_the_api_accepts_and_revoke_stops_it() {
    let e = env();
    let out = tokio::task::block_in_place(|| e.run(&["token", "create", "--name", "ci"], None));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.trim().to_string();
    assert_eq!(
        stdout.lines().count(),
        1,
        "only the token on stdout: {stdout:?}"
    );
    assert!(token.len() >= 32, "{token:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("shown this once"));

    let store = Store::open(&e.url).await.unwrap();
    let router = selfprov::api::router(selfprov::api::ApiState::new(store.clone()));
    let call = |token: String| {
        let router = router.clone();
        async move {
            use tower::ServiceExt;
            let req = Request::builder()
                .uri("/api/v1/users")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            router.oneshot(req).await.unwrap().status().as_u16()
        }
    };
    assert_eq!(call(token.clone()).await, 200);
    assert_eq!(call(format!("{token}x")).await, 401);

    let list = tokio::task::block_in_place(|| e.json(&["token", "list"]));
    assert_eq!(list[0]["name"], "ci");
    assert!(
        !list.to_string().contains(&token),
        "list never shows tokens"
    );
    let id = list[0]["id"].as_i64().unwrap().to_string();
    tokio::task::block_in_place(|| e.ok(&["token", "revoke", &id]));
    assert_eq!(call(token).await, 401);
    let err = tokio::task::block_in_place(|| e.fails(&["token", "revoke", &id]));
    assert!(err.contains("no API token"), "{err}");
    store.close().await;
}

#[test]
fn parity_commands_run_the_wazo_flow() {
    let e = env();
    e.ok(&["user", "add", "--user-id", "jdoe", "--extension", "1001"]);
    let line = e.json(&["line", "create", "--data", r#"{"number": "1001"}"#]);
    let line_id = line["id"].to_string();
    let sip = e.json(&["endpoint", "create", "--data", "{}"]);
    assert!(sip["password"].as_str().is_some_and(|p| p.len() >= 16));
    let sip_id = sip["id"].to_string();
    let body = e.dir.path().join("device.json");
    std::fs::write(&body, r#"{"mac": "00:11:22:33:44:55", "model": "T54W"}"#).unwrap();
    let device = e.json(&[
        "device",
        "create",
        "--data",
        &format!("@{}", body.display()),
    ]);
    let device_id = device["id"].to_string();

    e.ok(&["user", "add-line", "jdoe", &line_id]);
    e.ok(&["line", "set-endpoint", &line_id, &sip_id]);
    let found = e.json(&["device", "find", "--search", "00:11:22:33:44:55"]);
    assert_eq!(found["total"], 1);
    e.ok(&[
        "line",
        "add-device",
        &line_id,
        &device_id,
        "--position",
        "1",
    ]);
    let shown = e.json(&["device", "show", &device_id]);
    assert_eq!(shown["lines"][0]["number"], "1001");
    let line = e.json(&["line", "show", &line_id]);
    assert_eq!(line["device_ids"][0].to_string(), device_id);

    // The API's errors, with field and status, and a failing exit.
    let err = e.fails(&["line", "create", "--data", r#"{"number": "1001"}"#]);
    assert!(err.contains("field number") && err.contains("409"), "{err}");
    let err = e.fails(&["line", "show", "999"]);
    assert!(err.contains("404"), "{err}");
    let err = e.fails(&["line", "create", "--data", "{nope"]);
    assert!(err.contains("400"), "{err}");

    // Settings, audit, the generic escape hatch, the other resources' lists.
    e.ok(&[
        "settings",
        "update",
        "--data",
        r#"{"languages": ["fr-FR", "en-US"]}"#,
    ]);
    assert_eq!(e.json(&["settings", "show"])["languages"][0], "fr-FR");
    assert!(e.json(&["audit", "--limit", "5"])["items"].is_array());
    let page = e.json(&["api", "get", "/api/v1/lines?search=100"]);
    assert_eq!(page["total"], 1);
    for cmd in ["device-template", "line-template", "profile", "endpoint"] {
        assert_eq!(
            e.json(&[cmd, "list", "--limit", "1"])["items"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
    e.ok(&[
        "user",
        "update",
        "jdoe",
        "--data",
        r#"{"first_name": "Jane"}"#,
    ]);
    assert_eq!(e.json(&["user", "show", "jdoe"])["first_name"], "Jane");
    e.ok(&["line", "remove-device", &line_id, &device_id]);
    e.ok(&["line", "unset-endpoint", &line_id, &sip_id]);
    e.ok(&["user", "remove-line", "jdoe", &line_id]);
    e.ok(&["line", "delete", &line_id]);
    e.fails(&["line", "show", &line_id]);

    // CSV import from a file.
    let csv = e.dir.path().join("users.csv");
    std::fs::write(&csv, "user_id,extension\nalice,2001\nbob,2001\n").unwrap();
    let r = e.json(&["user", "import", csv.to_str().unwrap()]);
    assert_eq!(r["created"], 1);
    assert_eq!(r["errors"][0]["row"], 3);
    // The existing table output still works.
    assert!(e.ok(&["user", "list"]).contains("alice"));
}
