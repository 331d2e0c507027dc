//! Loaded prompts: [`Prompt`] (one recording as 8 kHz PCM plus its PCMU and PCMA encodings,
//! computed once) and [`PromptSet`] (one language pack, complete against the catalogue). Calls
//! share the `Arc`s; nothing is decoded or encoded per call.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::audio::{self, TARGET_RATE};
use super::{Catalogue, LangpackError, Readback};
use crate::media::g711::{alaw_encode, ulaw_encode, Codec};

/// Recording file extensions a pack may use, in the order they are looked for.
pub const AUDIO_EXTENSIONS: [&str; 4] = ["wav", "flac", "ogg", "mp3"];

/// The manifest file every pack folder holds.
pub const MANIFEST_FILE: &str = "pack.toml";

/// A prompt whose RMS level is below this (dBFS) is reported as silent at load.
const SILENT_RMS_DBFS: f64 = -50.0;

/// One prompt, ready to play: 8 kHz mono PCM and both G.711 encodings of it.
pub struct Prompt {
    /// The catalogue prompt ID.
    pub id: String,
    /// 8 kHz mono 16-bit PCM.
    pub pcm: Arc<[i16]>,
    /// `pcm` encoded as G.711 mu-law, one byte per sample.
    pub pcmu: Arc<[u8]>,
    /// `pcm` encoded as G.711 A-law, one byte per sample.
    pub pcma: Arc<[u8]>,
}

impl Prompt {
    /// Builds a prompt from 8 kHz PCM, encoding it to PCMU and PCMA once.
    pub fn from_pcm(id: impl Into<String>, pcm: Vec<i16>) -> Prompt {
        let pcmu: Arc<[u8]> = pcm.iter().map(|&s| ulaw_encode(s)).collect();
        let pcma: Arc<[u8]> = pcm.iter().map(|&s| alaw_encode(s)).collect();
        Prompt {
            id: id.into(),
            pcm: pcm.into(),
            pcmu,
            pcma,
        }
    }

    /// Decodes, resamples, loudness-normalises ([`super::level`]) and encodes the recording at
    /// `path`.
    pub fn load_file(id: impl Into<String>, path: &Path) -> Result<Prompt, LangpackError> {
        let (pcm, level) = audio::load_pcm_8k_with_level(path)?;
        if level.limited {
            tracing::debug!(
                file = %path.display(),
                active_dbfs = ?level.active_before_dbfs,
                gain_db = level.gain_db,
                "prompt normalised below the target level (peak ceiling or boost limit)"
            );
        }
        Ok(Prompt::from_pcm(id, pcm))
    }

    /// Playing time at 8 kHz.
    pub fn duration(&self) -> Duration {
        // 125 µs per sample at 8 kHz.
        Duration::from_micros(
            (self.pcm.len() as u64).saturating_mul(1_000_000 / u64::from(TARGET_RATE)),
        )
    }

    /// The prompt encoded for `codec` (one byte per 8 kHz sample).
    pub fn encoded(&self, codec: Codec) -> &[u8] {
        match codec {
            Codec::Pcmu => &self.pcmu,
            Codec::Pcma => &self.pcma,
        }
    }

    /// Peak level in dBFS (−inf for digital silence).
    pub fn peak_dbfs(&self) -> f64 {
        let peak = self
            .pcm
            .iter()
            .map(|&s| i32::from(s).unsigned_abs())
            .max()
            .unwrap_or(0);
        20.0 * (f64::from(peak) / 32768.0).log10()
    }

    /// RMS level in dBFS over the whole prompt (−inf for digital silence). Full-scale sine
    /// reads −3 dBFS on this scale.
    pub fn rms_dbfs(&self) -> f64 {
        if self.pcm.is_empty() {
            return f64::NEG_INFINITY;
        }
        let sum: f64 = self.pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        let rms = (sum / self.pcm.len() as f64).sqrt();
        20.0 * (rms / 32768.0).log10()
    }
}

impl fmt::Debug for Prompt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prompt")
            .field("id", &self.id)
            .field("samples", &self.pcm.len())
            .field("duration", &self.duration())
            .finish()
    }
}

/// The contents of a pack's `pack.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PackManifest {
    /// BCP 47 language tag, e.g. `en-US`; also the pack's folder name.
    pub tag: String,
    /// Human-readable language name, e.g. `English (US)`.
    pub name: String,
    /// Version of the pack's recordings.
    pub version: String,
    /// Who made the recordings.
    #[serde(default)]
    pub author: Option<String>,
    /// Licence of the recordings.
    #[serde(default)]
    pub licence: Option<String>,
    /// Speaker or synthesiser voice.
    #[serde(default)]
    pub voice: Option<String>,
    /// How extensions are read back: `"digits"` (default) or `"pairs"` (needs `number_10` ..
    /// `number_99`); see [`Readback`].
    #[serde(default)]
    pub extension_readback: Readback,
}

impl PackManifest {
    /// Reads and validates `<dir>/pack.toml`.
    pub fn load(dir: &Path) -> Result<PackManifest, LangpackError> {
        let path = dir.join(MANIFEST_FILE);
        let invalid = |reason: String| LangpackError::ManifestInvalid {
            path: path.clone(),
            reason,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            invalid(format!(
                "cannot read it ({e}); every pack needs a pack.toml with tag, name and version"
            ))
        })?;
        let manifest: PackManifest = toml::from_str(&text)
            .map_err(|e| invalid(format!("not valid (needs tag, name, version): {e}")))?;
        if !valid_tag(&manifest.tag) {
            return Err(invalid(format!(
                "tag {:?} is not a language tag (letters, digits and '-', e.g. \"en-US\")",
                manifest.tag
            )));
        }
        if manifest.name.trim().is_empty() || manifest.version.trim().is_empty() {
            return Err(invalid("name and version must not be empty".into()));
        }
        Ok(manifest)
    }
}

/// Whether `tag` looks like a BCP 47 tag and is therefore safe as a folder name.
fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 35
        && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !tag.starts_with('-')
        && !tag.ends_with('-')
}

/// One loaded language pack: a [`Prompt`] for every catalogue ID (and for the extra prompts of
/// its read-back mode).
#[derive(Debug, Clone)]
pub struct PromptSet {
    /// The pack's language tag (from `pack.toml`).
    pub language: String,
    manifest: PackManifest,
    dir: PathBuf,
    prompts: HashMap<String, Arc<Prompt>>,
    /// Prompts taken from another language: (prompt ID, language tag), in catalogue order.
    fallbacks: Vec<(String, String)>,
}

impl PromptSet {
    /// Loads the pack in `dir`: `pack.toml` and one recording `<dir>/<id>.<ext>` (ext one of
    /// [`AUDIO_EXTENSIONS`]) for every catalogue ID, plus the extra prompts of the pack's
    /// read-back mode. Any missing, ambiguous or undecodable recording fails the whole load,
    /// naming the file, so a broken pack stops start-up rather than a call going silent later.
    /// [`PromptSets::load`] loads several packs and lets a prompt missing from one come from
    /// another.
    pub fn load(dir: &Path, catalogue: &Catalogue) -> Result<PromptSet, LangpackError> {
        let (set, missing) = PromptSet::load_incomplete(dir, catalogue)?;
        match missing.into_iter().next() {
            None => Ok(set),
            Some(id) => Err(LangpackError::PromptMissing {
                dir: dir.to_path_buf(),
                text: catalogue.text(&id).unwrap_or_default().to_string(),
                id,
            }),
        }
    }

    /// Loads what the pack in `dir` has, returning the catalogue IDs it lacks (in catalogue
    /// order) instead of failing on them (for tools such as `langpack render`, which work on a
    /// pack still being made). Everything else fails as in [`PromptSet::load`]: a
    /// missing read-back prompt (`number_NN` of a pairs pack) is an error, because reading an
    /// extension with numbers of another language would make no sense.
    pub fn load_incomplete(
        dir: &Path,
        catalogue: &Catalogue,
    ) -> Result<(PromptSet, Vec<String>), LangpackError> {
        if !dir.is_dir() {
            return Err(LangpackError::PackMissing {
                dir: dir.to_path_buf(),
            });
        }
        let manifest = PackManifest::load(dir)?;
        if dir.file_name().and_then(|n| n.to_str()) != Some(manifest.tag.as_str()) {
            tracing::warn!(
                dir = %dir.display(),
                tag = %manifest.tag,
                "language pack folder name differs from the tag in its pack.toml"
            );
        }
        let files = list_recordings(dir)?;
        let wanted = catalogue.for_readback(manifest.extension_readback);

        let mut prompts = HashMap::with_capacity(wanted.len());
        let mut missing = Vec::new();
        for id in wanted.ids() {
            let path = match files.get(id).map(Vec::as_slice) {
                None | Some([]) if catalogue.contains(id) => {
                    missing.push(id.to_string());
                    continue;
                }
                None | Some([]) => {
                    return Err(LangpackError::PromptMissing {
                        dir: dir.to_path_buf(),
                        id: id.to_string(),
                        text: format!(
                            "{} (needed because pack.toml says extension_readback = \"pairs\")",
                            wanted.text(id).unwrap_or_default()
                        ),
                    })
                }
                Some([one]) => one,
                Some(many) => {
                    return Err(LangpackError::PromptAmbiguous {
                        id: id.to_string(),
                        files: many.to_vec(),
                    })
                }
            };
            let prompt = Prompt::load_file(id, path)?;
            if prompt.rms_dbfs() < SILENT_RMS_DBFS {
                tracing::warn!(
                    file = %path.display(),
                    rms_dbfs = prompt.rms_dbfs(),
                    "prompt recording is nearly silent"
                );
            }
            prompts.insert(id.to_string(), Arc::new(prompt));
        }
        for id in files.keys().filter(|id| !wanted.contains(id)) {
            tracing::warn!(dir = %dir.display(), id = %id, "recording is not in the prompt catalogue; ignored");
        }
        tracing::info!(
            language = %manifest.tag,
            version = %manifest.version,
            prompts = prompts.len(),
            missing = missing.len(),
            "language pack loaded"
        );
        Ok((
            PromptSet {
                language: manifest.tag.clone(),
                manifest,
                dir: dir.to_path_buf(),
                prompts,
                fallbacks: Vec::new(),
            },
            missing,
        ))
    }

    /// Loads the pack for language `tag` from `<packs_dir>/<tag>/`, rejecting tags that are
    /// not plain language tags (so a configured tag cannot point outside `packs_dir`).
    pub fn load_tag(
        packs_dir: &Path,
        tag: &str,
        catalogue: &Catalogue,
    ) -> Result<PromptSet, LangpackError> {
        if !valid_tag(tag) {
            return Err(LangpackError::InvalidTag {
                tag: tag.to_string(),
            });
        }
        let set = PromptSet::load(&packs_dir.join(tag), catalogue)?;
        check_tag_matches(packs_dir, tag, &set)?;
        Ok(set)
    }

    /// How this pack reads extensions back (`extension_readback` in `pack.toml`).
    pub fn readback(&self) -> Readback {
        self.manifest.extension_readback
    }

    /// The prompt IDs reading `extension` aloud in this pack's read-back mode; every one of them
    /// is in the set. See [`Readback::sequence`].
    pub fn readback_sequence(&self, extension: &str) -> Vec<&'static str> {
        self.readback().sequence(extension)
    }

    /// The prompts taken from another language at load (prompt ID, language tag), in catalogue
    /// order; empty for a complete pack.
    pub fn fallbacks(&self) -> &[(String, String)] {
        &self.fallbacks
    }

    /// The prompt for `id` (a shared handle, not a copy).
    pub fn get(&self, id: &str) -> Option<Arc<Prompt>> {
        self.prompts.get(id).cloned()
    }

    /// The IDs of all loaded prompts (in no particular order).
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.prompts.keys().map(String::as_str)
    }

    /// Number of prompts.
    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    /// Whether the set is empty (never true for a loaded pack).
    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }

    /// The pack's manifest.
    pub fn manifest(&self) -> &PackManifest {
        &self.manifest
    }

    /// The folder the pack was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn check_tag_matches(packs_dir: &Path, tag: &str, set: &PromptSet) -> Result<(), LangpackError> {
    if set.language.eq_ignore_ascii_case(tag) {
        return Ok(());
    }
    Err(LangpackError::ManifestInvalid {
        path: packs_dir.join(tag).join(MANIFEST_FILE),
        reason: format!(
            "its tag {:?} does not match the folder name {tag:?}",
            set.language
        ),
    })
}

/// Something wrong at load that does not stop start-up: log it (each has a `Display` line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadWarning {
    /// `language` has no recording of `prompt`; the one of `from` plays instead.
    Fallback {
        language: String,
        prompt: String,
        from: String,
    },
}

impl fmt::Display for LoadWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadWarning::Fallback {
                language,
                prompt,
                from,
            } => write!(
                f,
                "language pack {language} has no recording for prompt {prompt:?}; callers in \
                 {language} hear the {from} recording (add {prompt}.wav to the {language} pack)"
            ),
        }
    }
}

/// Several language packs loaded together, in priority order (the order of the IVR's language
/// menu). Every set is complete against the catalogue: a prompt a pack lacks is shared from the
/// highest-priority complete pack that has it (or, when no complete pack has it, from the
/// highest-priority pack that does), with a [`LoadWarning`].
///
/// Cheap to clone (`Arc`s); a call keeps the `Arc<PromptSet>` of its language for its whole
/// life, so replacing the `PromptSets` (a reload) never changes a call in progress.
#[derive(Debug, Clone)]
pub struct PromptSets {
    sets: Vec<Arc<PromptSet>>,
}

impl PromptSets {
    /// Loads `<packs_dir>/<tag>/` for each tag in `tags` (priority order, first = default). A
    /// broken pack (bad manifest, undecodable or ambiguous recording, a missing read-back prompt)
    /// or a prompt no pack has fails the whole load; a prompt only some packs lack is a
    /// [`LoadWarning::Fallback`].
    pub fn load<S: AsRef<str>>(
        packs_dir: &Path,
        catalogue: &Catalogue,
        tags: &[S],
    ) -> Result<(PromptSets, Vec<LoadWarning>), LangpackError> {
        let tags: Vec<&str> = tags.iter().map(AsRef::as_ref).collect();
        let list_error = |reason: &str| LangpackError::LanguageList {
            languages: tags.iter().map(|t| t.to_string()).collect(),
            reason: reason.to_string(),
        };
        if tags.is_empty() {
            return Err(list_error("no language given; list at least one pack"));
        }
        for (i, t) in tags.iter().enumerate() {
            if tags[..i].iter().any(|u| u.eq_ignore_ascii_case(t)) {
                return Err(list_error(&format!("{t:?} is listed twice")));
            }
        }
        let mut loaded = Vec::with_capacity(tags.len());
        for tag in &tags {
            if !valid_tag(tag) {
                return Err(LangpackError::InvalidTag {
                    tag: tag.to_string(),
                });
            }
            let (set, missing) = PromptSet::load_incomplete(&packs_dir.join(tag), catalogue)?;
            check_tag_matches(packs_dir, tag, &set)?;
            loaded.push((set, missing));
        }
        let warnings = fill_fallbacks(&mut loaded, catalogue)?;
        for w in &warnings {
            tracing::warn!("{w}");
        }
        Ok((
            PromptSets {
                sets: loaded.into_iter().map(|(set, _)| Arc::new(set)).collect(),
            },
            warnings,
        ))
    }

    /// Wraps packs that are already loaded and complete (e.g. one [`PromptSet::load_tag`]).
    pub fn from_sets(sets: Vec<Arc<PromptSet>>) -> Option<PromptSets> {
        (!sets.is_empty()).then_some(PromptSets { sets })
    }

    /// The pack for `tag` (ASCII case-insensitive), shared.
    pub fn get(&self, tag: &str) -> Option<Arc<PromptSet>> {
        self.sets
            .iter()
            .find(|s| s.language.eq_ignore_ascii_case(tag))
            .cloned()
    }

    /// The highest-priority pack (the default language).
    pub fn default_set(&self) -> Arc<PromptSet> {
        // Never empty: `load` and `from_sets` refuse an empty list.
        self.sets[0].clone()
    }

    /// The prompt `id` in language `tag`.
    pub fn prompt(&self, tag: &str, id: &str) -> Option<Arc<Prompt>> {
        self.get(tag)?.get(id)
    }

    /// The language tags, in priority order.
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.sets.iter().map(|s| s.language.as_str())
    }

    /// The packs, in priority order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<PromptSet>> {
        self.sets.iter()
    }

    /// Number of languages (at least 1).
    pub fn len(&self) -> usize {
        self.sets.len()
    }

    /// Always false (there is at least one language); for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }
}

/// Completes every loaded set from the others (see [`PromptSets`]); the sets are in priority
/// order, each with the catalogue IDs it lacks.
fn fill_fallbacks(
    loaded: &mut [(PromptSet, Vec<String>)],
    catalogue: &Catalogue,
) -> Result<Vec<LoadWarning>, LangpackError> {
    // Donor order: complete packs first, then the others, each group by priority.
    let mut donors: Vec<usize> = (0..loaded.len()).collect();
    donors.sort_by_key(|&i| (!loaded[i].1.is_empty(), i));
    let mut warnings = Vec::new();
    for i in 0..loaded.len() {
        let missing = std::mem::take(&mut loaded[i].1);
        for id in &missing {
            let donor = donors
                .iter()
                // Only a pack's own recordings: one filled by fallback is not a donor.
                .filter(|&&d| d != i && !loaded[d].1.contains(id))
                .find_map(|&d| Some((d, loaded[d].0.prompts.get(id)?.clone())));
            let Some((d, prompt)) = donor else {
                return Err(LangpackError::PromptMissingEverywhere {
                    id: id.clone(),
                    text: catalogue.text(id).unwrap_or_default().to_string(),
                    languages: loaded.iter().map(|(s, _)| s.language.clone()).collect(),
                });
            };
            let from = loaded[d].0.language.clone();
            let set = &mut loaded[i].0;
            set.prompts.insert(id.clone(), prompt);
            set.fallbacks.push((id.clone(), from.clone()));
            warnings.push(LoadWarning::Fallback {
                language: set.language.clone(),
                prompt: id.clone(),
                from,
            });
        }
        // Keep the record of what was missing for the donor order of later sets.
        loaded[i].1 = missing;
    }
    Ok(warnings)
}

/// Maps each file stem to the recordings with that stem (extension matched case-insensitively).
fn list_recordings(dir: &Path) -> Result<HashMap<String, Vec<PathBuf>>, LangpackError> {
    let unreadable = |source| LangpackError::PackUnreadable {
        dir: dir.to_path_buf(),
        source,
    };
    let mut found: HashMap<String, Vec<PathBuf>> = HashMap::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        let (Some(stem), Some(ext)) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|e| e.to_str()),
        ) else {
            continue;
        };
        if !AUDIO_EXTENSIONS
            .iter()
            .any(|known| known.eq_ignore_ascii_case(ext))
            || !path.is_file()
        {
            continue;
        }
        found
            .entry(stem.to_string())
            .or_default()
            .push(path.clone());
    }
    for paths in found.values_mut() {
        paths.sort();
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::g711::{alaw_decode, ulaw_decode};

    #[test]
    fn encodes_once_and_decodes_back_close() {
        let pcm: Vec<i16> = (0..8000)
            .map(|i| {
                (12_000.0 * (2.0 * std::f64::consts::PI * 440.0 * f64::from(i) / 8000.0).sin())
                    as i16
            })
            .collect();
        let p = Prompt::from_pcm("t", pcm.clone());
        assert_eq!(p.duration(), Duration::from_secs(1));
        assert_eq!(p.pcmu.len(), pcm.len());
        assert_eq!(p.pcma.len(), pcm.len());
        assert_eq!(p.encoded(Codec::Pcmu).as_ptr(), p.pcmu.as_ptr());
        assert_eq!(p.encoded(Codec::Pcma).as_ptr(), p.pcma.as_ptr());
        // G.711 keeps roughly 38 dB SNR on a loud sine; per-sample error is bounded by half a
        // quantisation step of the segment, at most ~1/32 of the magnitude plus a floor.
        for (codec, decode) in [
            (Codec::Pcmu, ulaw_decode as fn(u8) -> i16),
            (Codec::Pcma, alaw_decode),
        ] {
            let mut err2 = 0.0;
            let mut sig2 = 0.0;
            for (&s, &b) in pcm.iter().zip(p.encoded(codec)) {
                let d = i32::from(decode(b)) - i32::from(s);
                assert!(
                    d.abs() <= i32::from(s).abs() / 16 + 16,
                    "{codec:?}: {s} -> {}",
                    decode(b)
                );
                err2 += f64::from(d * d);
                sig2 += f64::from(s) * f64::from(s);
            }
            let snr = 10.0 * (sig2 / err2).log10();
            assert!(snr > 33.0, "{codec:?} SNR {snr:.1} dB");
        }
    }

    #[test]
    fn levels() {
        let p = Prompt::from_pcm("x", vec![16384, -16384, 16384, -16384]);
        assert!((p.peak_dbfs() - -6.02).abs() < 0.01);
        assert!((p.rms_dbfs() - -6.02).abs() < 0.01);
        assert_eq!(
            Prompt::from_pcm("s", vec![0; 10]).rms_dbfs(),
            f64::NEG_INFINITY
        );
    }

    #[test]
    fn tags() {
        for ok in ["en-US", "fr", "zh-Hant-TW"] {
            assert!(valid_tag(ok), "{ok}");
        }
        for bad in ["", "..", "en/US", "-en", "en-", "en_US", "../../etc"] {
            assert!(!valid_tag(bad), "{bad}");
        }
    }
}
