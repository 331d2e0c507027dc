//! `selfprov langpack check/build/list/info` end to end: a deliberately broken pack made at test
//! time (each kind of problem reported with its file name, non-zero exit, the same problems in
//! `--json`), the four shipped packs passing the checker, and a TTS build of a tiny pack.
//!
//! The build test needs espeak-ng and sox (Debian: `apt-get install espeak-ng sox`); CI installs
//! them, and the test fails with a message saying so when they are missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use selfprov::langpack::check::{check_pack, Limits, ProblemKind, Severity};
use selfprov::langpack::{Catalogue, PromptSet};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn selfprov(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_selfprov"))
        .args(args)
        .env_remove("SELFPROV_CONFIG")
        .output()
        .expect("run selfprov")
}

fn write_wav(path: &Path, rate: u32, samples: &[f64]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample((s * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
}

/// A 300 Hz tone with a 4 Hz envelope (speech-like syllables), peak `amp`.
fn speechish(rate: u32, secs: f64, amp: f64) -> Vec<f64> {
    let n = (f64::from(rate) * secs) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let env = 0.6 + 0.4 * (2.0 * std::f64::consts::PI * 4.0 * t).sin();
            amp * env * (2.0 * std::f64::consts::PI * 300.0 * t).sin()
        })
        .collect()
}

const MANIFEST: &str =
    "tag = \"xx-XX\"\nname = \"Test\"\nversion = \"0.1\"\nvoice = \"espeak-ng en-us\"\n";

fn catalogue_toml(ids: &[&str]) -> String {
    ids.iter()
        .map(|id| format!("[[prompt]]\nid = \"{id}\"\ntext = \"The {id} prompt.\"\n\n"))
        .collect()
}

/// The broken pack: one good prompt and one of each problem.
fn broken_pack(tmp: &Path) -> (PathBuf, PathBuf) {
    let ids = [
        "good",
        "missing_one",
        "undecodable",
        "silent",
        "clipped",
        "too_long",
        "too_quiet",
    ];
    let cat = tmp.join("catalogue.toml");
    std::fs::write(&cat, catalogue_toml(&ids)).unwrap();
    let dir = tmp.join("xx-XX");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("pack.toml"), MANIFEST).unwrap();
    let texts: String = ids
        .iter()
        .map(|id| format!("{id} = \"Text {id}.\"\n"))
        .collect();
    std::fs::write(dir.join("texts.toml"), texts).unwrap();

    write_wav(&dir.join("good.wav"), 16_000, &speechish(16_000, 1.0, 0.2));
    std::fs::write(
        dir.join("undecodable.wav"),
        b"RIFF\x10\0\0\0WAVEthis is not audio",
    )
    .unwrap();
    write_wav(&dir.join("silent.wav"), 8000, &vec![0.0; 8000]);
    // A loud tone driven 6 dB past full scale: the tops are flattened.
    write_wav(&dir.join("clipped.wav"), 8000, &speechish(8000, 1.0, 2.0));
    write_wav(&dir.join("too_long.wav"), 8000, &speechish(8000, 35.0, 0.2));
    // Peak -40 dBFS: audible but far below the telephony range.
    write_wav(
        &dir.join("too_quiet.wav"),
        8000,
        &speechish(8000, 1.0, 0.01),
    );
    write_wav(&dir.join("stray.wav"), 8000, &speechish(8000, 1.0, 0.2));
    (dir, cat)
}

#[test]
fn broken_pack_reports_every_problem_with_its_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, cat) = broken_pack(tmp.path());
    let (dir_s, cat_s) = (dir.to_str().unwrap(), cat.to_str().unwrap());

    let out = selfprov(&["langpack", "check", dir_s, "--catalogue", cat_s]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a broken pack must fail:\n{stdout}");
    assert!(stderr.contains("errors"), "{stderr}");
    let expect = [
        ("error", "missing_one.wav", "is missing"),
        ("error", "undecodable.wav", "cannot be decoded"),
        ("error", "silent.wav", "is silent"),
        ("error", "clipped.wav", "is clipped"),
        ("error", "too_long.wav", "lasts 35.0 s"),
        (
            "warning",
            "too_quiet.wav",
            "too quiet: active speech level -4",
        ),
        (
            "warning",
            "stray.wav",
            "not a recording of a catalogue prompt",
        ),
    ];
    for (sev, file, what) in expect {
        let prefix = format!("{sev}: {file}: ");
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&prefix) && l.contains(what)),
            "no {sev} line for {file} containing {what:?}:\n{stdout}"
        );
    }
    assert!(
        !stdout.lines().any(|l| l.contains("good.wav")),
        "the good prompt has no problem:\n{stdout}"
    );

    let out = selfprov(&["langpack", "check", dir_s, "--json", "--catalogue", cat_s]);
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(report["ok"], false);
    assert_eq!(report["errors"], 5, "{report:#}");
    // too_quiet, stray, and clipped.wav is also far too loud.
    assert_eq!(report["warnings"], 3, "{report:#}");
    // good and too_quiet: a warning does not make a prompt unusable.
    assert_eq!(report["complete"], 2);
    assert_eq!(report["catalogue"], 7);
    let problems = report["problems"].as_array().unwrap();
    let has = |file: &str, kind: &str, sev: &str| {
        problems
            .iter()
            .any(|p| p["file"] == file && p["kind"] == kind && p["severity"] == sev)
    };
    for (file, kind, sev) in [
        ("missing_one.wav", "missing", "error"),
        ("undecodable.wav", "undecodable", "error"),
        ("silent.wav", "silent", "error"),
        ("clipped.wav", "clipped", "error"),
        ("too_long.wav", "too_long", "error"),
        ("too_quiet.wav", "too_quiet", "warning"),
        ("stray.wav", "unknown", "warning"),
    ] {
        assert!(
            has(file, kind, sev),
            "{file} {kind} {sev} not in {report:#}"
        );
    }
    // The measured figures are in the report.
    let prompts = report["prompts"].as_array().unwrap();
    let stats = |id: &str| {
        prompts
            .iter()
            .find(|p| p["id"] == id)
            .unwrap_or_else(|| panic!("{id} not in prompts"))["stats"]
            .clone()
    };
    let clipped = stats("clipped")["full_scale_samples"].as_u64().unwrap();
    assert!(clipped > 1000, "clipped samples {clipped}");
    let quiet = stats("too_quiet")["active_dbfs"].as_f64().unwrap();
    assert!((-46.0..-42.0).contains(&quiet), "too_quiet level {quiet}");
    assert!((stats("too_long")["duration_s"].as_f64().unwrap() - 35.0).abs() < 0.01);
    assert_eq!(stats("good")["sample_rate"], 16_000);
    assert!(stats("undecodable").is_null());

    // Fixing every error leaves a passing pack (warnings do not fail it).
    for f in [
        "undecodable.wav",
        "silent.wav",
        "clipped.wav",
        "too_long.wav",
    ] {
        write_wav(&dir.join(f), 8000, &speechish(8000, 1.0, 0.2));
    }
    write_wav(
        &dir.join("missing_one.wav"),
        8000,
        &speechish(8000, 1.0, 0.2),
    );
    let out = selfprov(&["langpack", "check", dir_s, "--catalogue", cat_s]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("warning: "))
            .count(),
        2
    );
}

#[test]
fn ambiguous_recordings_and_bad_manifest_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cat = Catalogue::parse(&catalogue_toml(&["a"])).unwrap();
    let dir = tmp.path().join("p");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("pack.toml"),
        "tag = \"bad tag\"\nname = \"x\"\nversion = \"1\"\n",
    )
    .unwrap();
    write_wav(&dir.join("a.wav"), 8000, &speechish(8000, 1.0, 0.2));
    write_wav(&dir.join("a.WAV"), 8000, &speechish(8000, 1.0, 0.2));
    let r = check_pack(&dir, &cat, &Limits::default()).unwrap();
    assert!(!r.ok);
    let errors: Vec<_> = r
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .map(|p| (p.kind, p.file.as_str()))
        .collect();
    assert!(
        errors.contains(&(ProblemKind::ManifestInvalid, "pack.toml")),
        "{errors:?}"
    );
    assert!(
        errors.contains(&(ProblemKind::Ambiguous, "a.WAV")),
        "{errors:?}"
    );
    assert!(
        errors.contains(&(ProblemKind::Ambiguous, "a.wav")),
        "{errors:?}"
    );
    // No texts.toml: a warning, not an error.
    assert!(r
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::TextsInvalid && p.severity == Severity::Warning));
}

#[test]
fn shipped_packs_pass_check_and_load() {
    let catalogue = Catalogue::load(&root().join("prompts/catalogue.toml")).unwrap();
    for tag in ["en-US", "fr-FR", "de-DE", "es-ES"] {
        let dir = root().join("lang-packs").join(tag);
        let r = check_pack(&dir, &catalogue, &Limits::default()).unwrap();
        assert!(r.ok, "{tag}: {:#?}", r.problems);
        assert!(r.problems.is_empty(), "{tag}: {:#?}", r.problems);
        assert_eq!(r.tag.as_deref(), Some(tag));
        // fr-FR reads extensions in pairs: it also holds number_10 .. number_99.
        let expected = if tag == "fr-FR" {
            catalogue.len() + 90
        } else {
            catalogue.len()
        };
        assert_eq!(r.complete, expected, "{tag}");
        assert_eq!(r.catalogue, expected, "{tag}");
        for p in &r.prompts {
            let s = p.stats.as_ref().unwrap();
            let active = s.active_dbfs.unwrap();
            assert!(
                (-22.0..=-14.0).contains(&active),
                "{tag} {}: {active}",
                p.id
            );
            assert!(s.peak_dbfs.unwrap() <= -0.9, "{tag} {}", p.id);
        }
        let set = PromptSet::load_tag(&root().join("lang-packs"), tag, &catalogue).unwrap();
        assert_eq!(set.len(), expected);
    }
    // The CLI agrees, and `list` shows all four complete.
    let out = selfprov(&[
        "langpack",
        "check",
        root().join("lang-packs/fr-FR").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = selfprov(&[
        "langpack",
        "list",
        "--json",
        "--dir",
        root().join("lang-packs").to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    for tag in ["en-US", "fr-FR", "de-DE", "es-ES"] {
        let row = list
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["tag"] == tag)
            .unwrap_or_else(|| panic!("{tag} not listed: {list:#}"));
        assert_eq!(row["ok"], true);
        assert_eq!(row["complete"], row["catalogue"]);
        let extra = if tag == "fr-FR" { 90 } else { 0 };
        assert_eq!(row["complete"], catalogue.len() + extra);
    }
}

fn tools_present() {
    for tool in ["espeak-ng", "sox"] {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            ok,
            "{tool} is needed for this test (Debian: apt-get install espeak-ng sox)"
        );
    }
}

#[test]
fn tts_build_of_a_tiny_pack() {
    tools_present();
    let tmp = tempfile::tempdir().unwrap();
    let cat = tmp.path().join("catalogue.toml");
    std::fs::write(&cat, catalogue_toml(&["hello", "digit_1", "goodbye"])).unwrap();
    let dir = tmp.path().join("xx-XX");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("pack.toml"), MANIFEST).unwrap();
    std::fs::write(
        dir.join("texts.toml"),
        "hello = \"Hello, and welcome.\"\ndigit_1 = \"one\"\n",
    )
    .unwrap();
    let (dir_s, cat_s) = (dir.to_str().unwrap(), cat.to_str().unwrap());

    // A prompt without a text stops the build before anything is rendered, naming it.
    let out = selfprov(&[
        "langpack",
        "build",
        "--tts",
        "espeak-ng",
        dir_s,
        "--catalogue",
        cat_s,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no text for goodbye"), "{err}");
    assert!(!dir.join("hello.wav").exists());

    std::fs::write(
        dir.join("texts.toml"),
        "hello = \"Hello, and welcome.\"\ndigit_1 = \"one\"\ngoodbye = \"Goodbye.\"\n",
    )
    .unwrap();
    // An old recording in another format would make goodbye ambiguous: the build replaces it.
    write_wav(&dir.join("goodbye.flac"), 8000, &[0.0; 10]);
    let out = selfprov(&[
        "langpack",
        "build",
        "--tts",
        "espeak-ng",
        dir_s,
        "--catalogue",
        cat_s,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("[  1/3] hello"), "{stdout}");
    assert!(stdout.contains("[  3/3] goodbye"), "{stdout}");
    assert!(!dir.join("goodbye.flac").exists());

    let catalogue = Catalogue::load(&cat).unwrap();
    let r = check_pack(&dir, &catalogue, &Limits::default()).unwrap();
    assert!(r.ok && r.problems.is_empty(), "{:#?}", r.problems);
    for p in &r.prompts {
        let s = p.stats.as_ref().unwrap();
        assert_eq!(s.sample_rate, 8000);
        assert_eq!(s.channels, 1);
        // RMS -18 dBFS unless the -1 dBFS peak ceiling bound first.
        let rms = s.rms_dbfs.unwrap();
        let peak = s.peak_dbfs.unwrap();
        assert!(peak <= -0.9, "{} peak {peak}", p.id);
        assert!(
            (rms + 18.0).abs() < 0.3 || (peak + 1.0).abs() < 0.3,
            "{} rms {rms} peak {peak}",
            p.id
        );
        // 50 ms of padding each side, as in scripts/build-en-us-pack.sh.
        assert!(
            s.leading_silence_s < 0.15 && s.trailing_silence_s < 0.15,
            "{s:?}"
        );
    }
    let one = r.prompts.iter().find(|p| p.id == "digit_1").unwrap();
    let hello = r.prompts.iter().find(|p| p.id == "hello").unwrap();
    let d1 = one.stats.as_ref().unwrap().duration_s;
    let dh = hello.stats.as_ref().unwrap().duration_s;
    assert!((0.2..1.0).contains(&d1), "digit_1 lasts {d1}");
    assert!(dh > d1 + 0.3, "hello {dh} vs one {d1}");
    PromptSet::load(&dir, &catalogue).expect("the built pack loads");

    // `info` shows the figures.
    let out = selfprov(&["langpack", "info", dir_s, "--catalogue", cat_s]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("complete  3/3 prompts"), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("digit_1 ")),
        "{stdout}"
    );

    // A voice espeak-ng does not know fails the build with its message.
    std::fs::write(
        dir.join("pack.toml"),
        MANIFEST.replace("espeak-ng en-us", "espeak-ng zz-nonexistent"),
    )
    .unwrap();
    let out = selfprov(&[
        "langpack",
        "build",
        "--tts",
        "espeak-ng",
        dir_s,
        "--catalogue",
        cat_s,
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("espeak-ng failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
