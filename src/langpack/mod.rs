//! The prompt catalogue (`prompts/catalogue.toml`) and language packs (`lang-packs/<tag>/`):
//! every prompt is decoded, resampled to 8 kHz, loudness-normalised ([`level`]) and
//! G.711-encoded once at load, then shared by every call.
//!
//! A pack is a folder holding `pack.toml` ([`PackManifest`]) and one recording per catalogue
//! prompt ID, `<id>.wav|flac|ogg|mp3` (see [`audio`] for what is accepted). Typical start-up:
//!
//! ```no_run
//! # use std::path::Path;
//! # use selfprov::langpack::{Catalogue, PromptSet};
//! let catalogue = Catalogue::load(Path::new("prompts/catalogue.toml"))?;
//! let prompts = PromptSet::load_tag(Path::new("lang-packs"), "en-US", &catalogue)?;
//! let welcome = prompts.get("welcome").expect("complete against the catalogue");
//! # Ok::<(), selfprov::langpack::LangpackError>(())
//! ```

pub mod audio;
pub mod build;
mod catalogue;
pub mod check;
mod error;
pub mod level;
mod prompt;
pub mod readback;

pub use catalogue::Catalogue;
pub use error::LangpackError;
pub use prompt::{
    LoadWarning, PackManifest, Prompt, PromptSet, PromptSets, AUDIO_EXTENSIONS, MANIFEST_FILE,
};
pub use readback::Readback;
