//! The IVR dialogue: a sans-IO state machine (events in: digits, timers, playback finished,
//! lookups done, hang-up; actions out: play, stop, timers, lookups, provision, hang up).
//!
//! The flow follows Cisco UCM's self-provisioning IVR: welcome, enter the user or
//! self-provisioning ID, then (secure modes) the PIN or the admin authentication code, hear the
//! extension read back and press 1 to confirm (2 cancels); the phone is then bound and restarts.
//! [`machine`] holds the state machine and its contract with the runtime layer (playback,
//! timer, secrets, hang-up); [`prompts`] the prompt IDs, all present in `prompts/catalogue.toml`.

pub mod machine;
pub mod prompts;

pub use machine::{
    Action, AuthMethod, AuthOutcome, CallAction, Event, FailReason, Ivr, IvrSettings, Language,
    LanguageListError, LanguageOptions, Outcome, ProvisionError, UserInfo, DEFAULT_MAX_DIGITS,
    MAX_LANGUAGES,
};

#[cfg(test)]
mod tests;
