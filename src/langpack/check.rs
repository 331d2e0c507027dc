//! The language-pack checker behind `selfprov langpack check` and `info`: what is wrong with a
//! pack folder, per file, before it ever reaches the IVR.
//!
//! The measurements ([`measure`]) and the rules ([`judge`], [`classify_files`]) are pure
//! functions over decoded audio and the catalogue, so they are unit-tested without files;
//! [`check_pack`] is the thin layer that lists the folder and decodes each recording.
//!
//! Errors make a pack unusable or unfit to ship (a prompt missing, undecodable, silent, clipped,
//! absurdly short or long); warnings are worth a look but the IVR copes (leading/trailing silence,
//! a level outside the telephony range, a file the catalogue does not know).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::audio::{self, DecodedAudio};
use super::{Catalogue, PackManifest, AUDIO_EXTENSIONS, MANIFEST_FILE};

/// The transcript file of a pack (`id = "text"` lines).
pub const TEXTS_FILE: &str = "texts.toml";

/// Thresholds the checker applies. [`Limits::default`] is what `langpack check` uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Shorter than this (seconds) is an error: even "one" takes longer to say.
    pub min_duration_s: f64,
    /// Longer than this (seconds) is an error: a prompt is a sentence or two, and a caller
    /// cannot interrupt a long one before its digits are collected.
    pub max_duration_s: f64,
    /// Whole-file RMS below this (dBFS) means the file is silent (an error).
    pub silent_rms_dbfs: f64,
    /// Active speech level range (dBFS) expected on a telephone line; outside it, a warning
    /// with the measured figure.
    pub loudness_min_dbfs: f64,
    /// See `loudness_min_dbfs`.
    pub loudness_max_dbfs: f64,
    /// This many samples at full scale or more is clipping (an error); fewer is a warning.
    pub clip_error_samples: usize,
    /// Leading or trailing silence longer than this (seconds) is a warning: it sounds like a
    /// dead line between prompts.
    pub max_edge_silence_s: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            min_duration_s: 0.15,
            max_duration_s: 30.0,
            silent_rms_dbfs: -50.0,
            // G.711 telephony: speech is normally carried around -20 dBm0 (about -23 dBFS
            // active level); -30..-12 leaves room for voices and engines without sounding
            // faint next to, or much louder than, the other prompts.
            loudness_min_dbfs: -30.0,
            loudness_max_dbfs: -12.0,
            clip_error_samples: 3,
            max_edge_silence_s: 0.5,
        }
    }
}

/// Frame length (seconds) for the active level and the silence edges.
const FRAME_S: f64 = 0.010;
/// A frame quieter than this (dBFS RMS) is silence, both for the active level gate and the
/// leading/trailing silence measure.
const ACTIVITY_GATE_DBFS: f64 = -45.0;
/// |sample| at or above this is at full scale (the largest 16-bit magnitude, 32767/32768).
const FULL_SCALE: f32 = 32767.0 / 32768.0;

/// What was measured on one recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AudioStats {
    /// Sample rate of the file (Hz).
    pub sample_rate: u32,
    /// Channels in the file (measurements are on the mono downmix).
    pub channels: usize,
    /// Duration in seconds.
    pub duration_s: f64,
    /// Peak level, dBFS (`null` in JSON for digital silence).
    pub peak_dbfs: Option<f64>,
    /// Whole-file RMS level, dBFS.
    pub rms_dbfs: Option<f64>,
    /// Active speech level: RMS over the 10 ms frames above the activity gate, dBFS. This is the
    /// loudness a caller hears; `None` when no frame is active.
    pub active_dbfs: Option<f64>,
    /// Samples at full scale (a sign of clipping).
    pub full_scale_samples: usize,
    /// Silence before the first active frame, seconds.
    pub leading_silence_s: f64,
    /// Silence after the last active frame, seconds.
    pub trailing_silence_s: f64,
}

fn dbfs(linear: f64) -> Option<f64> {
    (linear > 0.0).then(|| 20.0 * linear.log10())
}

/// Measures mono samples in [-1, 1] at `rate` Hz.
pub fn measure(samples: &[f32], rate: u32, channels: usize) -> AudioStats {
    let rate = rate.max(1);
    let frame = ((f64::from(rate) * FRAME_S).round() as usize).max(1);
    let mut peak = 0f64;
    let mut sum2 = 0f64;
    let mut full_scale = 0usize;
    for &s in samples {
        let a = f64::from(s.abs());
        peak = peak.max(a);
        sum2 += a * a;
        if s.abs() >= FULL_SCALE {
            full_scale += 1;
        }
    }
    let n = samples.len();
    let rms = if n == 0 {
        0.0
    } else {
        (sum2 / n as f64).sqrt()
    };

    let gate = 10f64.powf(ACTIVITY_GATE_DBFS / 20.0);
    let mut active_sum2 = 0f64;
    let mut active_n = 0usize;
    let mut first_active: Option<usize> = None;
    let mut last_active_end = 0usize;
    for (i, chunk) in samples.chunks(frame).enumerate() {
        let e: f64 = chunk.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        if (e / chunk.len() as f64).sqrt() >= gate {
            active_sum2 += e;
            active_n += chunk.len();
            let start = i * frame;
            first_active.get_or_insert(start);
            last_active_end = start + chunk.len();
        }
    }
    let secs = |k: usize| k as f64 / f64::from(rate);
    let (leading, trailing) = match first_active {
        Some(first) => (secs(first), secs(n.saturating_sub(last_active_end))),
        None => (secs(n), secs(n)),
    };
    AudioStats {
        sample_rate: rate,
        channels,
        duration_s: secs(n),
        peak_dbfs: dbfs(peak),
        rms_dbfs: dbfs(rms),
        active_dbfs: (active_n > 0)
            .then(|| dbfs((active_sum2 / active_n as f64).sqrt()))
            .flatten(),
        full_scale_samples: full_scale,
        leading_silence_s: leading,
        trailing_silence_s: trailing,
    }
}

/// How serious a problem is: errors fail `check`, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// The kind of a problem (stable names for `--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    ManifestInvalid,
    TextsInvalid,
    TextMissing,
    TextUnknown,
    Missing,
    Ambiguous,
    Unknown,
    Undecodable,
    TooShort,
    TooLong,
    Silent,
    Clipped,
    FullScale,
    LeadingSilence,
    TrailingSilence,
    TooQuiet,
    TooLoud,
}

/// One problem, tied to the file it is about.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub kind: ProblemKind,
    /// File name inside the pack (for a missing prompt: `<id>.wav`, the name to add).
    pub file: String,
    /// The prompt ID concerned, when there is one.
    pub prompt: Option<String>,
    /// What is wrong and what to do, with the measured figure.
    pub message: String,
}

impl Problem {
    fn new(
        severity: Severity,
        kind: ProblemKind,
        file: &str,
        prompt: Option<&str>,
        message: String,
    ) -> Problem {
        Problem {
            severity,
            kind,
            file: file.to_string(),
            prompt: prompt.map(str::to_string),
            message,
        }
    }
}

/// Applies `limits` to the measurements of one recording (`file` names it in the problems).
pub fn judge(file: &str, prompt: Option<&str>, s: &AudioStats, limits: &Limits) -> Vec<Problem> {
    use ProblemKind as K;
    use Severity::{Error, Warning};
    let mut out = Vec::new();
    let mut push = |sev, kind, msg: String| out.push(Problem::new(sev, kind, file, prompt, msg));
    let silent = s.rms_dbfs.is_none_or(|r| r < limits.silent_rms_dbfs);
    if s.duration_s < limits.min_duration_s {
        push(
            Error,
            K::TooShort,
            format!(
                "lasts {:.2} s, shorter than {:.2} s: it cannot hold a spoken prompt",
                s.duration_s, limits.min_duration_s
            ),
        );
    }
    if s.duration_s > limits.max_duration_s {
        push(
            Error,
            K::TooLong,
            format!(
                "lasts {:.1} s, longer than {:.0} s: shorten or split the prompt",
                s.duration_s, limits.max_duration_s
            ),
        );
    }
    if silent {
        push(
            Error,
            K::Silent,
            format!(
                "is silent (RMS {}, below {:.0} dBFS): re-record or re-export it",
                fmt_db(s.rms_dbfs),
                limits.silent_rms_dbfs
            ),
        );
    }
    if s.full_scale_samples >= limits.clip_error_samples {
        push(
            Error,
            K::Clipped,
            format!(
                "is clipped: {} samples at full scale; lower the recording gain and re-export",
                s.full_scale_samples
            ),
        );
    } else if s.full_scale_samples > 0 {
        push(
            Warning,
            K::FullScale,
            format!(
                "touches full scale ({} samples); keep the peak below -1 dBFS",
                s.full_scale_samples
            ),
        );
    }
    if silent {
        // Edges and loudness mean nothing on a silent file; it is already an error.
        return out;
    }
    // With no active frame the whole file is "edge": the too-quiet warning below says it all.
    let has_speech = s.active_dbfs.is_some();
    if has_speech && s.leading_silence_s > limits.max_edge_silence_s {
        push(
            Warning,
            K::LeadingSilence,
            format!(
                "starts with {:.2} s of silence (more than {:.2} s); trim it",
                s.leading_silence_s, limits.max_edge_silence_s
            ),
        );
    }
    if has_speech && s.trailing_silence_s > limits.max_edge_silence_s {
        push(
            Warning,
            K::TrailingSilence,
            format!(
                "ends with {:.2} s of silence (more than {:.2} s); trim it",
                s.trailing_silence_s, limits.max_edge_silence_s
            ),
        );
    }
    match s.active_dbfs {
        Some(l) if l < limits.loudness_min_dbfs => push(
            Warning,
            K::TooQuiet,
            format!(
                "is too quiet: active speech level {l:.1} dBFS, below the telephony range \
                 {:.0}..{:.0} dBFS; raise it to about -18 dBFS",
                limits.loudness_min_dbfs, limits.loudness_max_dbfs
            ),
        ),
        Some(l) if l > limits.loudness_max_dbfs => push(
            Warning,
            K::TooLoud,
            format!(
                "is too loud: active speech level {l:.1} dBFS, above the telephony range \
                 {:.0}..{:.0} dBFS; lower it to about -18 dBFS",
                limits.loudness_min_dbfs, limits.loudness_max_dbfs
            ),
        ),
        None => push(
            Warning,
            K::TooQuiet,
            format!(
                "is too quiet: no 10 ms stretch rises above {ACTIVITY_GATE_DBFS:.0} dBFS \
                 (RMS {})",
                fmt_db(s.rms_dbfs)
            ),
        ),
        _ => {}
    }
    out
}

fn fmt_db(v: Option<f64>) -> String {
    v.map_or_else(|| "-inf dBFS".to_string(), |d| format!("{d:.1} dBFS"))
}

/// The recordings of a pack folder sorted against the catalogue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileMap {
    /// Catalogue ID → its recording file names (more than one is ambiguous).
    pub recordings: BTreeMap<String, Vec<String>>,
    /// Catalogue IDs with no recording, in catalogue order.
    pub missing: Vec<String>,
    /// Files that are not a recording of a catalogue prompt (audio or not), except the
    /// manifest, the transcript and dotfiles.
    pub unknown: Vec<String>,
}

/// Sorts the file names of a pack folder against the catalogue.
pub fn classify_files<'a>(
    catalogue: &Catalogue,
    names: impl IntoIterator<Item = &'a str>,
) -> FileMap {
    let mut map = FileMap::default();
    for name in names {
        if name == MANIFEST_FILE || name == TEXTS_FILE || name.starts_with('.') {
            continue;
        }
        let known = name.rsplit_once('.').filter(|(stem, ext)| {
            AUDIO_EXTENSIONS.iter().any(|k| k.eq_ignore_ascii_case(ext)) && catalogue.contains(stem)
        });
        match known {
            Some((stem, _)) => map
                .recordings
                .entry(stem.to_string())
                .or_default()
                .push(name.to_string()),
            None => map.unknown.push(name.to_string()),
        }
    }
    for files in map.recordings.values_mut() {
        files.sort();
    }
    map.unknown.sort();
    map.missing = catalogue
        .ids()
        .filter(|id| !map.recordings.contains_key(*id))
        .map(str::to_string)
        .collect();
    map
}

/// Compares a pack's transcript (`texts.toml` as parsed) with the catalogue.
pub fn check_texts(catalogue: &Catalogue, texts: &BTreeMap<String, String>) -> Vec<Problem> {
    let mut out = Vec::new();
    for id in catalogue.ids() {
        if texts.get(id).is_none_or(|t| t.trim().is_empty()) {
            out.push(Problem::new(
                Severity::Warning,
                ProblemKind::TextMissing,
                TEXTS_FILE,
                Some(id),
                format!(
                    "has no text for prompt {id:?} (English: {:?}); add `{id} = \"...\"`",
                    catalogue.text(id).unwrap_or_default()
                ),
            ));
        }
    }
    for id in texts.keys().filter(|id| !catalogue.contains(id)) {
        out.push(Problem::new(
            Severity::Warning,
            ProblemKind::TextUnknown,
            TEXTS_FILE,
            Some(id),
            format!("has a text for {id:?}, which is not in the prompt catalogue; remove it"),
        ));
    }
    out
}

/// Reads `<dir>/texts.toml`: a flat table of prompt ID → text.
pub fn load_texts(dir: &Path) -> Result<BTreeMap<String, String>, String> {
    let path = dir.join(TEXTS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read it ({e})"))?;
    toml::from_str(&text).map_err(|e| format!("not a table of `id = \"text\"` lines: {e}"))
}

/// One catalogue prompt's recording and what was measured on it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptReport {
    pub id: String,
    pub file: String,
    /// `None` when the file could not be decoded.
    pub stats: Option<AudioStats>,
}

/// The result of checking one pack folder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PackReport {
    pub dir: PathBuf,
    /// The manifest, when `pack.toml` is valid.
    pub tag: Option<String>,
    pub name: Option<String>,
    pub version: Option<String>,
    pub voice: Option<String>,
    /// Catalogue prompts with exactly one decodable recording.
    pub complete: usize,
    /// Catalogue size.
    pub catalogue: usize,
    pub errors: usize,
    pub warnings: usize,
    /// Whether the pack passes (no errors).
    pub ok: bool,
    /// Every catalogue prompt with a recording, in catalogue order.
    pub prompts: Vec<PromptReport>,
    /// Every problem, errors first, then by file name.
    pub problems: Vec<Problem>,
}

/// Checks the pack in `dir` against the catalogue: manifest, transcript, file set, and each
/// recording decoded and judged by `limits`. Only an unreadable folder is an `Err`; everything
/// else is a [`Problem`] in the report.
pub fn check_pack(
    dir: &Path,
    catalogue: &Catalogue,
    limits: &Limits,
) -> Result<PackReport, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read the folder {}: {e}", dir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read the folder {}: {e}", dir.display()))?;
        if entry.path().is_file() {
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_string());
            }
        }
    }
    let mut problems = Vec::new();
    let manifest = match PackManifest::load(dir) {
        Ok(m) => Some(m),
        Err(e) => {
            problems.push(Problem::new(
                Severity::Error,
                ProblemKind::ManifestInvalid,
                MANIFEST_FILE,
                None,
                e.to_string(),
            ));
            None
        }
    };
    // A pairs pack must also hold its number prompts; they are then not "unknown" files.
    let with_readback;
    let catalogue = match &manifest {
        Some(m) => {
            with_readback = catalogue.for_readback(m.extension_readback);
            &with_readback
        }
        None => catalogue,
    };
    match load_texts(dir) {
        Ok(texts) => problems.extend(check_texts(catalogue, &texts)),
        Err(reason) => problems.push(Problem::new(
            Severity::Warning,
            ProblemKind::TextsInvalid,
            TEXTS_FILE,
            None,
            format!("{reason}; the transcript is what reviewers and `langpack build` read"),
        )),
    }

    let map = classify_files(catalogue, names.iter().map(String::as_str));
    for id in &map.missing {
        problems.push(Problem::new(
            Severity::Error,
            ProblemKind::Missing,
            &format!("{id}.wav"),
            Some(id),
            format!(
                "is missing: no recording for prompt {id:?} (English: {:?}); add {id}.wav \
                 (or .flac, .ogg, .mp3)",
                catalogue.text(id).unwrap_or_default()
            ),
        ));
    }
    for name in &map.unknown {
        problems.push(Problem::new(
            Severity::Warning,
            ProblemKind::Unknown,
            name,
            None,
            "is not a recording of a catalogue prompt (<id>.wav|flac|ogg|mp3); it is ignored, \
             remove it or check its name"
                .into(),
        ));
    }

    let mut prompts = Vec::new();
    let mut complete = 0;
    for id in catalogue.ids() {
        let Some(files) = map.recordings.get(id) else {
            continue;
        };
        if files.len() > 1 {
            for f in files {
                problems.push(Problem::new(
                    Severity::Error,
                    ProblemKind::Ambiguous,
                    f,
                    Some(id),
                    format!(
                        "is one of {} recordings of {id:?} ({}); keep exactly one",
                        files.len(),
                        files.join(", ")
                    ),
                ));
            }
        }
        let Some(file) = files.first() else { continue };
        let stats = match audio::decode_file(&dir.join(file)) {
            Ok(DecodedAudio {
                sample_rate,
                source_channels,
                samples,
            }) => {
                let stats = measure(&samples, sample_rate, source_channels);
                let found = judge(file, Some(id), &stats, limits);
                if files.len() == 1 && !found.iter().any(|p| p.severity == Severity::Error) {
                    complete += 1;
                }
                problems.extend(found);
                Some(stats)
            }
            Err(e) => {
                problems.push(Problem::new(
                    Severity::Error,
                    ProblemKind::Undecodable,
                    file,
                    Some(id),
                    format!("cannot be decoded: {}", undecodable_reason(&e)),
                ));
                None
            }
        };
        prompts.push(PromptReport {
            id: id.to_string(),
            file: file.clone(),
            stats,
        });
    }
    problems.sort_by(|a, b| (a.severity, &a.file).cmp(&(b.severity, &b.file)));
    let errors = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    Ok(PackReport {
        dir: dir.to_path_buf(),
        tag: manifest.as_ref().map(|m| m.tag.clone()),
        name: manifest.as_ref().map(|m| m.name.clone()),
        version: manifest.as_ref().map(|m| m.version.clone()),
        voice: manifest.as_ref().and_then(|m| m.voice.clone()),
        complete,
        catalogue: catalogue.len(),
        errors,
        warnings: problems.len() - errors,
        ok: errors == 0,
        prompts,
        problems,
    })
}

/// The decoder's reason without the path (the problem line names the file already).
fn undecodable_reason(e: &super::LangpackError) -> String {
    match e {
        super::LangpackError::Audio { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 8000;

    fn tone(secs: f64, amp: f32) -> Vec<f32> {
        let n = (f64::from(RATE) * secs) as usize;
        (0..n)
            .map(|i| amp * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 8000.0).sin() as f32)
            .collect()
    }

    fn kinds(p: &[Problem]) -> Vec<ProblemKind> {
        p.iter().map(|p| p.kind).collect()
    }

    fn cat() -> Catalogue {
        Catalogue::parse(
            "[[prompt]]\nid = \"a\"\ntext = \"A.\"\n[[prompt]]\nid = \"b_1\"\ntext = \"B.\"\n\
             [[prompt]]\nid = \"c\"\ntext = \"C.\"\n",
        )
        .unwrap()
    }

    #[test]
    fn measures_a_sine() {
        // 0.1 amplitude sine: peak -20 dBFS, RMS -23 dBFS, all frames active.
        let s = measure(&tone(1.0, 0.1), RATE, 1);
        assert!((s.duration_s - 1.0).abs() < 1e-9);
        assert!((s.peak_dbfs.unwrap() - -20.0).abs() < 0.05, "{s:?}");
        assert!((s.rms_dbfs.unwrap() - -23.01).abs() < 0.05, "{s:?}");
        assert!((s.active_dbfs.unwrap() - -23.01).abs() < 0.05, "{s:?}");
        assert_eq!(s.full_scale_samples, 0);
        assert_eq!(s.leading_silence_s, 0.0);
        assert_eq!(s.trailing_silence_s, 0.0);
        assert!(judge("x.wav", None, &s, &Limits::default()).is_empty());
    }

    #[test]
    fn active_level_ignores_silence_and_edges_are_measured() {
        let mut x = vec![0.0; 6000]; // 0.75 s
        x.extend(tone(1.0, 0.1));
        x.extend(vec![0.0; 8000]); // 1 s
        let s = measure(&x, RATE, 2);
        assert_eq!(s.channels, 2);
        assert!((s.leading_silence_s - 0.75).abs() < 0.011, "{s:?}");
        assert!((s.trailing_silence_s - 1.0).abs() < 0.011, "{s:?}");
        // Whole-file RMS is diluted by the silence; the active level is not.
        assert!((s.active_dbfs.unwrap() - -23.01).abs() < 0.1, "{s:?}");
        assert!(s.rms_dbfs.unwrap() < -26.0);
        let p = judge("x.wav", Some("x"), &s, &Limits::default());
        assert_eq!(
            kinds(&p),
            [ProblemKind::LeadingSilence, ProblemKind::TrailingSilence]
        );
        assert!(p.iter().all(|p| p.severity == Severity::Warning));
        assert!(p[0].message.contains("0.75 s"), "{}", p[0].message);
    }

    #[test]
    fn silent_clipped_short_long_quiet_loud() {
        let l = Limits::default();
        let silent = measure(&vec![0.0; 8000], RATE, 1);
        assert_eq!(silent.rms_dbfs, None);
        assert_eq!(
            kinds(&judge("s.wav", None, &silent, &l)),
            [ProblemKind::Silent]
        );

        let mut clipped = tone(1.0, 0.3);
        for s in clipped.iter_mut().take(100).skip(90) {
            *s = 1.0;
        }
        let c = measure(&clipped, RATE, 1);
        assert_eq!(c.full_scale_samples, 10);
        let p = judge("c.wav", None, &c, &l);
        assert_eq!(kinds(&p), [ProblemKind::Clipped]);
        assert!(p[0].message.contains("10 samples"), "{}", p[0].message);
        // One sample at -1.0 only touches full scale: a warning.
        let mut touch = tone(1.0, 0.3);
        touch[5] = -1.0;
        let p = judge("t.wav", None, &measure(&touch, RATE, 1), &l);
        assert_eq!(kinds(&p), [ProblemKind::FullScale]);
        assert_eq!(p[0].severity, Severity::Warning);

        let p = judge("short.wav", None, &measure(&tone(0.1, 0.1), RATE, 1), &l);
        assert_eq!(kinds(&p), [ProblemKind::TooShort]);
        let p = judge("long.wav", None, &measure(&tone(31.0, 0.1), RATE, 1), &l);
        assert_eq!(kinds(&p), [ProblemKind::TooLong]);
        assert!(p[0].message.contains("31.0 s"), "{}", p[0].message);

        // -40 dBFS sine: active level -43 dBFS, quiet but not silent.
        let p = judge("q.wav", None, &measure(&tone(1.0, 0.01), RATE, 1), &l);
        assert_eq!(kinds(&p), [ProblemKind::TooQuiet]);
        assert!(p[0].message.contains("-43.0 dBFS"), "{}", p[0].message);
        // -49 dBFS RMS (below the gate, above the silent threshold).
        let p = judge("q2.wav", None, &measure(&tone(1.0, 0.005), RATE, 1), &l);
        assert_eq!(kinds(&p), [ProblemKind::TooQuiet]);

        let p = judge("loud.wav", None, &measure(&tone(1.0, 0.9), RATE, 1), &l);
        assert_eq!(kinds(&p), [ProblemKind::TooLoud]);
        assert_eq!(p[0].severity, Severity::Warning);
        assert!(p[0].message.contains("-3.9 dBFS"), "{}", p[0].message);
    }

    #[test]
    fn classifies_files_against_the_catalogue() {
        let m = classify_files(
            &cat(),
            [
                "a.wav",
                "b_1.WAV",
                "b_1.mp3",
                "zzz.wav",
                "notes.txt",
                "pack.toml",
                "texts.toml",
                ".DS_Store",
                "A.wav",
            ],
        );
        assert_eq!(m.recordings["a"], ["a.wav"]);
        assert_eq!(m.recordings["b_1"], ["b_1.WAV", "b_1.mp3"]);
        assert_eq!(m.missing, ["c"]);
        assert_eq!(m.unknown, ["A.wav", "notes.txt", "zzz.wav"]);
    }

    #[test]
    fn texts_against_the_catalogue() {
        let mut t = BTreeMap::new();
        t.insert("a".to_string(), "Ah.".to_string());
        t.insert("b_1".to_string(), "  ".to_string());
        t.insert("old".to_string(), "Old.".to_string());
        let p = check_texts(&cat(), &t);
        let got: Vec<_> = p
            .iter()
            .map(|p| (p.kind, p.prompt.clone().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (ProblemKind::TextMissing, "b_1".to_string()),
                (ProblemKind::TextMissing, "c".to_string()),
                (ProblemKind::TextUnknown, "old".to_string()),
            ]
        );
        assert!(p.iter().all(|p| p.file == TEXTS_FILE));
    }
}
