//! `selfprov langpack render` and `play`: the audio written (or piped to the player) is exactly
//! what the IVR sends: the pack loaded by the IVR's loader (resampled, loudness-normalised,
//! G.711-encoded once), cut into packets with the last one padded with codec silence, decoded
//! back. The expected signal is rebuilt here from the loaded prompts and the G.711 tables.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use selfprov::langpack::{Catalogue, PromptSet};
use selfprov::media::g711::Codec;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn catalogue_path() -> PathBuf {
    root().join("prompts/catalogue.toml")
}

fn selfprov(args: &[&str], path_env: Option<&Path>, extra_env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_selfprov"));
    cmd.args(args)
        .current_dir(root())
        .env_remove("SELFPROV_CONFIG");
    if let Some(p) = path_env {
        cmd.env("PATH", p);
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().expect("run selfprov")
}

fn read_wav(path: &Path) -> Vec<i16> {
    let mut r = hound::WavReader::open(path).unwrap();
    let spec = r.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (1, 8000, 16)
    );
    r.samples::<i16>().map(Result::unwrap).collect()
}

/// The IVR's stream for `ids`: the loaded prompts' encodings back to back, padded with codec
/// silence to whole `ptime` packets, decoded.
fn expected_wire(set: &PromptSet, ids: &[&str], codec: Codec, ptime_ms: usize) -> Vec<i16> {
    let mut wire: Vec<u8> = ids
        .iter()
        .flat_map(|id| set.get(id).unwrap().encoded(codec).to_vec())
        .collect();
    let packet = 8 * ptime_ms;
    let padded = wire.len().div_ceil(packet) * packet;
    wire.resize(padded, codec.silence_byte());
    let mut pcm = Vec::new();
    codec.decode(&wire, &mut pcm);
    pcm
}

fn active_dbfs(pcm: &[i16]) -> f64 {
    let x: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32768.0).collect();
    selfprov::langpack::check::measure(&x, 8000, 1)
        .active_dbfs
        .unwrap()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn render_is_the_ivr_stream_of_the_shipped_pack() {
    let tmp = tempfile::tempdir().unwrap();
    let catalogue = Catalogue::load(&catalogue_path()).unwrap();
    let set = PromptSet::load(&root().join("lang-packs/fr-FR"), &catalogue).unwrap();
    let cat = catalogue_path();
    let cat_s = cat.to_str().unwrap();

    let out_wav = tmp.path().join("a.wav");
    let out = selfprov(
        &[
            "langpack",
            "render",
            "lang-packs/fr-FR",
            "welcome",
            "enter_id",
            "--out",
            out_wav.to_str().unwrap(),
            "--catalogue",
            cat_s,
        ],
        None,
        &[],
    );
    ok(&out);
    let got = read_wav(&out_wav);
    assert_eq!(
        got,
        expected_wire(&set, &["welcome", "enter_id"], Codec::Pcmu, 20)
    );
    // The normalised level survives G.711 and the trip through the file.
    assert!(
        (active_dbfs(&got) + 18.0).abs() < 1.0,
        "{}",
        active_dbfs(&got)
    );

    // --extension alone: the IVR's whole confirmation, read back as this pack says (fr-FR:
    // pairs, "dix, quarante-deux"); A-law at 30 ms packets.
    let out = selfprov(
        &[
            "langpack",
            "render",
            "lang-packs/fr-FR",
            "--extension",
            "1042",
            "--codec",
            "pcma",
            "--ptime",
            "30",
            "--out",
            out_wav.to_str().unwrap(),
            "--catalogue",
            cat_s,
        ],
        None,
        &[],
    );
    ok(&out);
    let ids = [
        "confirm_extension",
        "number_10",
        "number_42",
        "confirm_choice",
    ];
    assert_eq!(
        read_wav(&out_wav),
        expected_wire(&set, &ids, Codec::Pcma, 30)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&ids.join(" ")), "{stdout}");

    // An unknown prompt is named; nothing to render is refused.
    let out = selfprov(
        &[
            "langpack",
            "render",
            "lang-packs/fr-FR",
            "welcome",
            "no_such_prompt",
            "--out",
            out_wav.to_str().unwrap(),
            "--catalogue",
            cat_s,
        ],
        None,
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_prompt"));
    let out = selfprov(
        &[
            "langpack",
            "render",
            "lang-packs/fr-FR",
            "--out",
            "x.wav",
            "--catalogue",
            cat_s,
        ],
        None,
        &[],
    );
    assert!(!out.status.success());
    assert!(!root().join("x.wav").exists());
}

/// A pack with digit and number prompts only (tones at distinct frequencies), pairs read-back.
fn pairs_pack(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("pack.toml"),
        "tag = \"xx\"\nname = \"Test\"\nversion = \"1\"\nextension_readback = \"pairs\"\n",
    )
    .unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut ids: Vec<String> = (0..10).map(|d| format!("digit_{d}")).collect();
    ids.extend((10..100).map(|n| format!("number_{n}")));
    for (i, id) in ids.iter().enumerate() {
        let mut w = hound::WavWriter::create(dir.join(format!("{id}.wav")), spec).unwrap();
        let f = 300.0 + 25.0 * i as f64;
        // Odd lengths, so the packet padding is exercised.
        for n in 0..(3000 + 7 * i) {
            let v = 0.2 * (2.0 * std::f64::consts::PI * f * n as f64 / 16_000.0).sin();
            w.write_sample((v * 32767.0) as i16).unwrap();
        }
        w.finalize().unwrap();
    }
}

#[test]
fn render_extension_in_pairs_and_play_pipes_the_same_audio() {
    let tmp = tempfile::tempdir().unwrap();
    let pack = tmp.path().join("xx");
    pairs_pack(&pack);
    let cat = catalogue_path();
    let (cat_s, pack_s) = (cat.to_str().unwrap(), pack.to_str().unwrap());
    let out_wav = tmp.path().join("ext.wav");
    let out = selfprov(
        &[
            "langpack",
            "render",
            pack_s,
            "digit_9",
            "--extension",
            "12-05",
            "--out",
            out_wav.to_str().unwrap(),
            "--catalogue",
            cat_s,
        ],
        None,
        &[],
    );
    ok(&out);
    let catalogue = Catalogue::load(&cat).unwrap();
    let (set, missing) = PromptSet::load_incomplete(&pack, &catalogue).unwrap();
    assert!(missing.contains(&"welcome".to_string()));
    let ids = ["digit_9", "number_12", "digit_0", "digit_5"];
    let rendered = read_wav(&out_wav);
    assert_eq!(rendered, expected_wire(&set, &ids, Codec::Pcmu, 20));

    // `play` with a stand-in `aplay` on PATH that stores what it is fed on stdin.
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("aplay");
    std::fs::write(
        &fake,
        "#!/bin/sh\n[ \"$1\" = -q ] && [ \"$2\" = - ] || exit 3\nexec /bin/cat > \"$FAKE_OUT\"\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let piped = tmp.path().join("piped.wav");
    let out = selfprov(
        &[
            "langpack",
            "play",
            pack_s,
            "digit_9",
            "--extension",
            "1205",
            "--catalogue",
            cat_s,
        ],
        Some(&bin),
        &[("FAKE_OUT", &piped)],
    );
    ok(&out);
    assert_eq!(read_wav(&piped), rendered);

    // No player: the message says what to install.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = selfprov(
        &["langpack", "play", pack_s, "digit_9", "--catalogue", cat_s],
        Some(&empty),
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("alsa-utils") && err.contains("sox"), "{err}");
}
