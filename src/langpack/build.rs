//! `selfprov langpack build --tts espeak-ng DIR`: renders every catalogue prompt from the pack's
//! `texts.toml` with espeak-ng and shapes it with sox exactly like
//! `scripts/build-en-us-pack.sh`, so a synthesised pack sounds like the shipped ones:
//!
//! 1. `espeak-ng -v <voice> -s <wpm> -w raw.wav -- <text>` (the voice comes from `pack.toml`);
//! 2. sox: downmix, 100 Hz high-pass, very-high-quality resample to 8 kHz, silence below
//!    -50 dBFS trimmed at both ends, 50 ms padding, into a 32-bit float intermediate;
//! 3. the gain that brings the whole-file RMS to -18 dBFS, capped so the peak stays at or below
//!    -1 dBFS ([`level_gain_db`]);
//! 4. sox: that gain, TPDF dither, 16-bit mono 8 kHz WAV (`-R`: fixed seed, reproducible).
//!
//! The external tools are run with explicit argument vectors (no shell), so prompt texts are
//! never interpreted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::audio;
use super::check::{load_texts, measure, AudioStats};
use super::{Catalogue, PackManifest, AUDIO_EXTENSIONS};

/// Whole-file RMS target of a rendered prompt (dBFS), as in the en-US build script.
pub const TARGET_RMS_DBFS: f64 = -18.0;
/// Peak ceiling of a rendered prompt (dBFS).
pub const PEAK_CEILING_DBFS: f64 = -1.0;
/// Default espeak-ng speaking rate (words per minute).
pub const DEFAULT_SPEED_WPM: u32 = 150;
const RATE: &str = "8000";
const SILENCE_DB: &str = "-50d";
const PAD_S: &str = "0.05";

/// The TTS engines `build` can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tts {
    EspeakNg,
}

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub tts: Tts,
    /// Speaking rate, words per minute (espeak-ng `-s`).
    pub speed_wpm: u32,
    /// Overrides the voice of `pack.toml`.
    pub voice: Option<String>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            tts: Tts::EspeakNg,
            speed_wpm: DEFAULT_SPEED_WPM,
            voice: None,
        }
    }
}

/// One rendered prompt.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub id: String,
    pub file: PathBuf,
    /// Gain applied after shaping, dB.
    pub gain_db: f64,
}

/// The gain (dB) that brings `rms_dbfs` to `target`, lowered if it would push `peak_dbfs` above
/// `ceiling`.
pub fn level_gain_db(rms_dbfs: f64, peak_dbfs: f64, target: f64, ceiling: f64) -> f64 {
    let g = target - rms_dbfs;
    if peak_dbfs + g > ceiling {
        ceiling - peak_dbfs
    } else {
        g
    }
}

/// The espeak-ng voice named by a manifest `voice` field: `"espeak-ng fr"` or `"fr"` → `fr`.
/// Voice names are restricted to what espeak-ng uses (letters, digits, `-`, `_`, `+`, `/`), so
/// a manifest cannot pass an option to the engine.
pub fn espeak_voice(manifest_voice: &str) -> Result<String, String> {
    let v = manifest_voice.trim();
    let v = v.strip_prefix("espeak-ng").map(str::trim).unwrap_or(v);
    if v.is_empty()
        || v.starts_with('-')
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'/'))
    {
        return Err(format!(
            "voice {manifest_voice:?} is not an espeak-ng voice; write e.g. voice = \"espeak-ng fr\" \
             in pack.toml (list voices with `espeak-ng --voices`)"
        ));
    }
    Ok(v.to_string())
}

/// The texts to render, in catalogue order; every catalogue prompt must have one.
pub fn texts_to_render(
    catalogue: &Catalogue,
    texts: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, String> {
    let missing: Vec<&str> = catalogue
        .ids()
        .filter(|id| texts.get(*id).is_none_or(|t| t.trim().is_empty()))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "texts.toml has no text for {}; add a line `id = \"text\"` for each",
            missing.join(", ")
        ));
    }
    Ok(catalogue
        .ids()
        .filter_map(|id| {
            texts
                .get(id)
                .map(|t| (id.to_string(), t.trim().to_string()))
        })
        .collect())
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| {
        format!("cannot run {what} ({e}); install it (Debian: apt-get install espeak-ng sox)")
    })?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// A scratch folder removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Renders every catalogue prompt of the pack in `dir` into `<dir>/<id>.wav`, calling
/// `progress(index, total, id)` before each. A recording of the same prompt in another format
/// (`<id>.mp3`...) is removed, since two recordings of one prompt are ambiguous. Stops at the
/// first failure, naming the prompt; prompts rendered before it are kept.
pub fn build_pack(
    dir: &Path,
    catalogue: &Catalogue,
    opts: &BuildOptions,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Vec<Rendered>, String> {
    let manifest = PackManifest::load(dir).map_err(|e| e.to_string())?;
    // A pairs pack also renders its number prompts (number_10 .. number_99).
    let catalogue = &catalogue.for_readback(manifest.extension_readback);
    let voice = match &opts.voice {
        Some(v) => espeak_voice(v)?,
        None => espeak_voice(manifest.voice.as_deref().unwrap_or_default())?,
    };
    let texts =
        load_texts(dir).map_err(|e| format!("{}: {e}", dir.join("texts.toml").display()))?;
    let jobs = texts_to_render(catalogue, &texts)?;

    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "selfprov-langpack-build-{}-{nanos}",
        std::process::id()
    )));
    std::fs::create_dir_all(&scratch.0)
        .map_err(|e| format!("cannot create {}: {e}", scratch.0.display()))?;

    let total = jobs.len();
    let mut done = Vec::with_capacity(total);
    for (i, (id, text)) in jobs.iter().enumerate() {
        progress(i, total, id);
        let fail = |e: String| format!("prompt {id:?}: {e}");
        let raw = scratch.0.join(format!("{id}.raw.wav"));
        let shaped = scratch.0.join(format!("{id}.shaped.wav"));
        let out_tmp = scratch.0.join(format!("{id}.wav"));
        match opts.tts {
            Tts::EspeakNg => run(
                Command::new("espeak-ng")
                    .arg("-v")
                    .arg(&voice)
                    .arg("-s")
                    .arg(opts.speed_wpm.to_string())
                    .arg("-w")
                    .arg(&raw)
                    .arg("--")
                    .arg(text),
                "espeak-ng",
            )
            .map_err(fail)?,
        }
        run(
            Command::new("sox")
                .args(["-R", "-V1"])
                .arg(&raw)
                .args(["-e", "floating-point", "-b", "32"])
                .arg(&shaped)
                .args(["remix", "-", "highpass", "100", "rate", "-v", RATE])
                .args(["silence", "1", "0.01", SILENCE_DB, "reverse"])
                .args(["silence", "1", "0.01", SILENCE_DB, "reverse"])
                .args(["pad", PAD_S, PAD_S]),
            "sox",
        )
        .map_err(fail)?;
        let decoded = audio::decode_file(&shaped).map_err(|e| fail(e.to_string()))?;
        let stats: AudioStats = measure(&decoded.samples, decoded.sample_rate, 1);
        let (Some(rms), Some(peak)) = (stats.rms_dbfs, stats.peak_dbfs) else {
            return Err(fail(format!(
                "the synthesised audio is silent; check its text {text:?} and the voice {voice:?}"
            )));
        };
        let gain = level_gain_db(rms, peak, TARGET_RMS_DBFS, PEAK_CEILING_DBFS);
        run(
            Command::new("sox")
                .args(["-R", "-V1"])
                .arg(&shaped)
                .args(["-e", "signed-integer", "-b", "16", "-c", "1", "-r", RATE])
                .arg(&out_tmp)
                .args(["gain", &format!("{gain:.2}"), "dither"]),
            "sox",
        )
        .map_err(fail)?;
        let dest = dir.join(format!("{id}.wav"));
        // rename() cannot cross file systems (the scratch folder is in /tmp): copy.
        std::fs::copy(&out_tmp, &dest)
            .map_err(|e| fail(format!("cannot write {}: {e}", dest.display())))?;
        remove_other_recordings(dir, id, &dest).map_err(fail)?;
        done.push(Rendered {
            id: id.clone(),
            file: dest,
            gain_db: gain,
        });
    }
    Ok(done)
}

/// Removes `<dir>/<id>.<ext>` recordings other than `keep` (any case of a known extension).
fn remove_other_recordings(dir: &Path, id: &str, keep: &Path) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path == keep || !path.is_file() {
            continue;
        }
        let (Some(stem), Some(ext)) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|e| e.to_str()),
        ) else {
            continue;
        };
        if stem == id && AUDIO_EXTENSIONS.iter().any(|k| k.eq_ignore_ascii_case(ext)) {
            std::fs::remove_file(&path)
                .map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gain_targets_rms_under_a_peak_ceiling() {
        assert!((level_gain_db(-30.0, -15.0, -18.0, -1.0) - 12.0).abs() < 1e-9);
        // +12 dB would put the peak at +1 dBFS: the ceiling wins.
        assert!((level_gain_db(-30.0, -11.0, -18.0, -1.0) - 10.0).abs() < 1e-9);
        assert!((level_gain_db(-10.0, -2.0, -18.0, -1.0) - -8.0).abs() < 1e-9);
    }

    #[test]
    fn voices() {
        assert_eq!(espeak_voice("espeak-ng fr").unwrap(), "fr");
        assert_eq!(espeak_voice("de").unwrap(), "de");
        assert_eq!(espeak_voice(" espeak-ng  en-us ").unwrap(), "en-us");
        assert_eq!(espeak_voice("espeak-ng mb/mb-fr1").unwrap(), "mb/mb-fr1");
        for bad in ["", "espeak-ng", "--help", "fr; rm -rf /", "espeak-ng -w x"] {
            assert!(espeak_voice(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_prompt_needs_a_text() {
        let c = Catalogue::parse(
            "[[prompt]]\nid = \"a\"\ntext = \"A.\"\n[[prompt]]\nid = \"b\"\ntext = \"B.\"\n",
        )
        .unwrap();
        let mut t = BTreeMap::new();
        t.insert("b".to_string(), " Bé. ".to_string());
        t.insert("zz".to_string(), "ignored".to_string());
        assert!(texts_to_render(&c, &t)
            .unwrap_err()
            .contains("no text for a"));
        t.insert("a".to_string(), "Ah.".to_string());
        assert_eq!(
            texts_to_render(&c, &t).unwrap(),
            [("a".into(), "Ah.".into()), ("b".into(), "Bé.".into())]
        );
    }
}
