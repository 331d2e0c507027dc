//! [`LangpackError`]: every way loading the catalogue or a language pack can fail. Each message
//! names the file concerned and says what to do, because these errors stop start-up and are
//! read by whoever installs or translates a pack.

use std::path::PathBuf;

/// An error loading the prompt catalogue or a language pack.
#[derive(Debug, thiserror::Error)]
pub enum LangpackError {
    /// The catalogue file could not be read.
    #[error(
        "cannot read the prompt catalogue {path}: {source}; check `langpacks.catalogue` in the \
         configuration (it should point at prompts/catalogue.toml)"
    )]
    CatalogueRead {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The catalogue file is not what a catalogue must look like.
    #[error("the prompt catalogue {path} is invalid: {reason}")]
    CatalogueInvalid { path: PathBuf, reason: String },

    /// The language tag cannot name a pack folder.
    #[error(
        "invalid language tag {tag:?}: use a BCP 47 tag made of letters, digits and '-' \
         (for example \"en-US\"), matching a folder under the lang-packs directory"
    )]
    InvalidTag { tag: String },

    /// The pack folder does not exist or is not a folder.
    #[error(
        "language pack folder {dir} not found: install the pack there, or set `ivr.language` / \
         `langpacks.dir` in the configuration to an installed pack"
    )]
    PackMissing { dir: PathBuf },

    /// The pack folder could not be listed.
    #[error("cannot read language pack folder {dir}: {source}; check its permissions")]
    PackUnreadable {
        dir: PathBuf,
        source: std::io::Error,
    },

    /// `pack.toml` is missing, unreadable or invalid.
    #[error("language pack manifest {path}: {reason}")]
    ManifestInvalid { path: PathBuf, reason: String },

    /// A catalogue prompt has no recording in the pack.
    #[error(
        "language pack {dir} has no recording for prompt {id:?} (text: {text:?}): add \
         {dir}/{id}.wav (or .flac, .ogg, .mp3)"
    )]
    PromptMissing {
        dir: PathBuf,
        id: String,
        text: String,
    },

    /// A catalogue prompt has no recording in any of the packs loaded together, so there is
    /// nothing to fall back to.
    #[error(
        "no language pack has a recording for prompt {id:?} (text: {text:?}); packs tried: {}; \
         add {id}.wav to at least one of them (`selfprov langpack check` lists what is missing)",
        .languages.join(", ")
    )]
    PromptMissingEverywhere {
        id: String,
        text: String,
        languages: Vec<String>,
    },

    /// No language was given to load, or the same one twice.
    #[error("language list {languages:?}: {reason}")]
    LanguageList {
        languages: Vec<String>,
        reason: String,
    },

    /// A catalogue prompt has more than one recording, so which one plays would be a guess.
    #[error(
        "prompt {id:?} has more than one recording: {}; keep exactly one of them",
        .files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    PromptAmbiguous { id: String, files: Vec<PathBuf> },

    /// A recording could not be opened, decoded or converted.
    #[error(
        "cannot load recording {path}: {reason}; re-export it as WAV (PCM, mu-law or A-law), \
         FLAC, Ogg Vorbis or MP3, mono or stereo, 8 kHz or higher"
    )]
    Audio { path: PathBuf, reason: String },
}
