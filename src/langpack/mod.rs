//! The prompt catalogue (`prompts/catalogue.toml`) and language packs (`lang-packs/<tag>/`):
//! every prompt is decoded, resampled to 8 kHz and G.711-encoded once at load, then shared by
//! every call.
