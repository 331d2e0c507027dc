//! The IVR dialogue state machine ([`Ivr`]) and its vocabulary: [`Event`]s in, [`Action`]s out.
//!
//! Sans-IO: no sockets, no clocks, no store. The runtime layer feeds events (DTMF digits, the
//! single digit timer firing, playback finished, answers to lookups) and carries out the actions
//! (play prompts, start/cancel the timer, look a user up, check a PIN, provision, hang up). Every
//! request action gets exactly one answering event; the machine never needs two answers at once.
//!
//! # Contract with the runtime layer
//!
//! * `Play` replaces whatever is playing. `PlaybackFinished` must be reported when a queue has
//!   played to its end (also when a prompt of it could not be played, so the dialogue never
//!   stalls); it must not be reported for a queue that was stopped or replaced. A stray
//!   `PlaybackFinished` while nothing is playing is ignored.
//! * There is one digit timer. `StartTimer` (re)arms it, `CancelTimer` disarms it. A `Timeout`
//!   while the machine believes the timer disarmed (a late fire racing a cancel) is ignored.
//! * Digits (and timeouts) that arrive while a lookup, an authentication or provisioning is
//!   pending are ignored: the caller is waiting for an answer, and buffering keys typed into the
//!   silence would feed them to a step whose prompt the caller has not heard yet.
//! * `HangUp` (the event) ends the machine at once: it emits nothing more, not even
//!   `CancelTimer`/`StopPlayback` (the layer tears the call down). If it arrives while provisioning
//!   is pending, the machine still ends with [`Outcome::HungUp`]; what to do with the late
//!   `ProvisionResult` (let the store transaction finish, log it) is the layer's decision, and
//!   feeding it to the finished machine is harmless (ignored).
//! * After the closing prompts (success, cancelled, goodbye, ...) the machine waits for
//!   `PlaybackFinished`, then emits `Action::HangUp` and is finished.
//!
//! # Languages
//!
//! [`Ivr::new`] makes a single-language machine: no menu, extensions read digit by digit, and
//! [`Ivr::handle`] gives plain [`Action`]s. [`Ivr::with_languages`] takes the offered languages
//! ([`LanguageOptions`]: tags by priority, 1 to [`MAX_LANGUAGES`], each with its pack's
//! [`Readback`]; and an optional preset locale) and is driven with [`Ivr::handle_call`], whose
//! [`CallAction`]s add two things for the layer:
//!
//! * `CallAction::PlayMixed(queue)`: the language menu, each `(tag, prompt)` from that
//!   language's pack. For each language *i* (1-based) the queue holds `lang_select` ("For
//!   English, press") and `digit_<i>`, both in that language. Otherwise it behaves like `Play`.
//! * `CallAction::SetLanguage(tag)`: every later `Play` of the call uses that pack. The layer
//!   keeps the `Arc<PromptSet>` for the call from here on. It comes once, before the dialogue's
//!   first `Play`.
//!
//! With more than one language and no matching preset, `Start` plays the menu. When it has
//! played, the first-digit timer runs. A key `1`..`n` (barge-in allowed) picks that language.
//! `0`, `*`, `#` or a key above `n` replays the menu, and after `max_attempts` such keys the first
//! language is taken. A timeout also takes the first language. Menu keys are not failed attempts.
//! With one language, or a preset that matches an offered language, `Start` emits `SetLanguage`
//! and the welcome at once. The confirm and success prompts read the extension with the chosen
//! language's [`Readback::sequence`].
//!
//! # Secrets
//!
//! The digits of the PIN / admin-code step are secrets. The `Debug` impls here never print them:
//! [`Action::Authenticate`] shows its digits as `<redacted>`, [`Event::Digit`] redacts every
//! `0`-`9` (an event does not know which step it belongs to; `*`, `#` and `A`-`D` are shown), and
//! the `Debug` of [`Ivr`] shows only the length of a secret entry. A layer that wants to log ID
//! digits can check [`Ivr::in_secret_entry`] first. `LookupUser` digits (the user or
//! self-provisioning ID) are not secret and are shown.
//!
//! # Attempts
//!
//! One counter for the whole call: an unknown ID, a wrong PIN/code, an empty or over-long entry,
//! a first-digit timeout, and an invalid key or timeout at the confirm step each count one failed
//! attempt; a success does not reset it (so a caller cannot probe PINs forever by alternating
//! with a valid ID). When the count reaches `max_attempts`, the cause's prompt is followed by
//! `too_many_attempts` and `goodbye`, and the call ends.

use super::prompts as p;
use crate::config::{AuthMode, IvrConfig};
use crate::langpack::Readback;
use std::fmt;
use std::time::Duration;

/// The default longest entry (ID, PIN or admin code), matching Cisco's 0-20 digit auth code.
pub const DEFAULT_MAX_DIGITS: usize = 20;

/// What the dialogue needs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IvrSettings {
    pub auth_mode: AuthMode,
    /// Armed when a prompt queue has finished playing (and by `*`): time allowed for the first key.
    pub first_digit_timeout: Duration,
    /// Re-armed after each digit: time allowed between keys; when it fires, the digits entered so
    /// far are submitted as if `#` had been pressed.
    pub inter_digit_timeout: Duration,
    /// Failed attempts allowed in one call (0 is treated as 1).
    pub max_attempts: u32,
    /// Longest entry; one more digit ends the entry as invalid (0 is treated as 1).
    pub max_digits: usize,
}

impl IvrSettings {
    pub fn from_config(cfg: &IvrConfig) -> Self {
        IvrSettings {
            auth_mode: cfg.auth_mode.unwrap_or(AuthMode::SecureUsers),
            first_digit_timeout: cfg.first_digit_timeout(),
            inter_digit_timeout: cfg.inter_digit_timeout(),
            max_attempts: cfg.max_attempts,
            max_digits: DEFAULT_MAX_DIGITS,
        }
    }
}

impl Default for IvrSettings {
    /// The configuration defaults: secure-users, 10 s / 5 s, 3 attempts, 20 digits.
    fn default() -> Self {
        IvrSettings::from_config(&IvrConfig::default())
    }
}

/// A user found by [`Action::LookupUser`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub user_id: String,
    /// The primary extension, read back to the caller digit by digit (non-digits are skipped).
    pub extension: String,
    pub selfprov_enabled: bool,
}

/// The answer to [`Action::Authenticate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// The user's own PIN matched.
    User,
    /// The administrator's authentication code matched (accepted only in
    /// [`AuthMode::SecureUsersAndAdmins`]; in any other mode it is treated as `Failed`).
    Admin,
    Failed,
}

/// How the caller proved the right to provision, carried into [`Action::Provision`]: the same
/// type the store records in the audit log.
pub use crate::store::AuthMethod;

/// Why provisioning failed (the answer in [`Event::ProvisionResult`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvisionError {
    /// The phone is already bound to another user (it must be released first).
    #[error("the phone is already bound to another user")]
    AlreadyBound,
    /// The user already has as many phones as their profile allows.
    #[error("the user already has as many devices as their profile allows")]
    DeviceLimit,
    /// A policy refused it (profile does not allow self-provisioning, no profile, ...).
    #[error("provisioning refused: {0}")]
    Refused(String),
    #[error("internal error while provisioning: {0}")]
    Internal(String),
}

/// Something that happened, fed to [`Ivr::handle`].
#[derive(Clone, PartialEq, Eq)]
pub enum Event {
    /// The call is answered and media is flowing.
    Start,
    /// A key: `0`-`9`, `*`, `#`, `A`-`D` (`A`-`D` and anything else are ignored).
    Digit(char),
    /// The whole queue given by the last `Play` has played.
    PlaybackFinished,
    /// The digit timer fired.
    Timeout,
    /// The answer to [`Action::LookupUser`]: `None` when no user has that ID.
    UserLookup(Option<UserInfo>),
    /// The answer to [`Action::Authenticate`].
    AuthResult(AuthOutcome),
    /// The answer to [`Action::Provision`].
    ProvisionResult(Result<(), ProvisionError>),
    /// The caller hung up: the machine ends and emits nothing more.
    HangUp,
}

/// Something for the runtime layer to do, returned by [`Ivr::handle`].
#[derive(Clone, PartialEq, Eq)]
pub enum Action {
    /// Replace whatever is playing with this queue of prompt IDs (from [`super::prompts`]).
    Play(Vec<&'static str>),
    StopPlayback,
    /// (Re)start the single digit timer.
    StartTimer(Duration),
    CancelTimer,
    /// Find the user by user ID or self-provisioning ID; answer with [`Event::UserLookup`].
    LookupUser {
        digits: String,
    },
    /// Check `digits` as the user's PIN (or, in secure-users-and-admins mode, as the admin code);
    /// answer with [`Event::AuthResult`]. `digits` is secret: `Debug` redacts it.
    Authenticate {
        user_id: String,
        digits: String,
    },
    /// Bind the calling phone to the user; answer with [`Event::ProvisionResult`].
    Provision {
        user_id: String,
        auth: AuthMethod,
    },
    /// End the call (send BYE).
    HangUp,
}

/// The most languages a menu offers: one key each, 1 to 9.
pub const MAX_LANGUAGES: usize = 9;

/// One language the IVR offers (see [`LanguageOptions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Language {
    /// The language pack's tag, e.g. `fr-FR` (as in `PromptSets::tags`).
    pub tag: String,
    /// How that pack reads extensions back (`PromptSet::readback`).
    pub readback: Readback,
}

impl Language {
    pub fn new(tag: impl Into<String>, readback: Readback) -> Self {
        Language {
            tag: tag.into(),
            readback,
        }
    }
}

/// The languages of a call, for [`Ivr::with_languages`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LanguageOptions {
    /// The languages offered, by priority (the first is the default), 1 to [`MAX_LANGUAGES`].
    /// With more than one, the call starts with the language menu.
    pub languages: Vec<Language>,
    /// The caller's language when it is known before the call, e.g. the locale of the phone's
    /// device template: a BCP 47 tag (`fr-FR`, `fr_FR` or just `fr`). When it matches an offered
    /// language (the exact tag, ignoring case and `_`/`-`, else the first offered language with
    /// the same primary subtag) the menu is skipped; otherwise it is ignored.
    pub preset: Option<String>,
}

/// Why [`Ivr::with_languages`] refused a language list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LanguageListError {
    #[error("no language offered; list at least one")]
    Empty,
    #[error("{0} languages offered; a menu offers at most 9 (keys 1-9)")]
    TooMany(usize),
    #[error("a language tag is empty")]
    EmptyTag,
    #[error("language {0:?} is offered twice")]
    Duplicate(String),
}

/// The offered language matching `locale` (see [`LanguageOptions::preset`]).
fn match_locale(languages: &[Language], locale: &str) -> Option<usize> {
    let norm = |t: &str| t.trim().replace('_', "-").to_ascii_lowercase();
    let want = norm(locale);
    if want.is_empty() {
        return None;
    }
    let primary = |t: &str| t.split('-').next().unwrap_or_default().to_string();
    languages
        .iter()
        .position(|l| norm(&l.tag) == want)
        .or_else(|| {
            languages
                .iter()
                .position(|l| primary(&norm(&l.tag)) == primary(&want))
        })
}

/// An action of a call that may offer several languages: what [`Ivr::handle_call`] returns.
#[derive(Clone, PartialEq, Eq)]
pub enum CallAction {
    /// A dialogue action. `Play` plays its prompts in the call's current language: the last
    /// `SetLanguage`, or the default (first) language before any.
    Ivr(Action),
    /// The language menu: replace whatever is playing with this queue, each prompt from the pack
    /// of its language tag. Otherwise like `Play` (`PlaybackFinished` when it has played).
    PlayMixed(Vec<(String, &'static str)>),
    /// From now on every `Play` of this call uses this language's pack (its tag). Emitted once,
    /// before the first `Play` of the dialogue proper.
    SetLanguage(String),
}

impl CallAction {
    /// The single-language view of this action (see [`Ivr::handle`]).
    pub fn into_action(self) -> Option<Action> {
        match self {
            CallAction::Ivr(a) => Some(a),
            CallAction::PlayMixed(q) => {
                Some(Action::Play(q.into_iter().map(|(_, id)| id).collect()))
            }
            CallAction::SetLanguage(_) => None,
        }
    }
}

impl fmt::Debug for CallAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The inner Debug redacts secrets.
            CallAction::Ivr(a) => a.fmt(f),
            CallAction::PlayMixed(q) => f.debug_tuple("PlayMixed").field(q).finish(),
            CallAction::SetLanguage(t) => f.debug_tuple("SetLanguage").field(t).finish(),
        }
    }
}

/// The actions being collected by one `handle_call`.
struct Out(Vec<CallAction>);

impl Out {
    fn push(&mut self, a: Action) {
        self.0.push(CallAction::Ivr(a));
    }
}

/// Why a call ended without provisioning (other than cancel or hang-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    TooManyAttempts,
    /// The user exists but is not allowed to self-provision.
    SelfProvDisabled,
    /// The user has no primary extension (no digit to read back and nothing to bind).
    NoExtension,
    Provisioning(ProvisionError),
}

/// How the dialogue ended; see [`Ivr::outcome`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Provisioned {
        user_id: String,
    },
    Cancelled,
    Failed(FailReason),
    /// The caller hung up before a result was decided.
    HungUp,
}

/// Which entry the caller is typing.
#[derive(Clone, PartialEq, Eq)]
enum Step {
    Id,
    /// PIN or admin code, for this (found, enabled) user.
    Secret {
        user: UserInfo,
    },
}

#[derive(Clone, PartialEq, Eq)]
enum State {
    /// Waiting for `Start`.
    Idle,
    /// The language menu is playing or waiting for a key; `invalid` keys so far.
    LanguageMenu {
        invalid: u32,
    },
    Collect {
        step: Step,
        entry: String,
    },
    LookupPending,
    AuthPending {
        user: UserInfo,
    },
    Confirm {
        user: UserInfo,
        auth: AuthMethod,
    },
    ProvisionPending {
        user: UserInfo,
    },
    /// Playing the closing prompts; `HangUp` once they have played.
    Closing,
    Finished,
}

/// The dialogue of one call. Create with [`Ivr::new`], feed [`Event`]s to [`Ivr::handle`].
pub struct Ivr {
    settings: IvrSettings,
    state: State,
    /// Failed attempts so far in this call.
    attempts: u32,
    /// A `Play` queue is (believed to be) playing.
    playing: bool,
    /// The digit timer is (believed to be) armed.
    timer_armed: bool,
    outcome: Option<Outcome>,
    /// The languages offered, by priority (empty: single-language machine, digit read-back).
    languages: Vec<Language>,
    /// Index into `languages` of a language known before the call (skips the menu).
    preset: Option<usize>,
    /// Index into `languages` of the call's language, once chosen.
    current: Option<usize>,
}

impl Ivr {
    /// A single-language dialogue (no menu; extensions read digit by digit). For several
    /// languages or a pack's own read-back, see [`Ivr::with_languages`].
    pub fn new(mut settings: IvrSettings) -> Self {
        settings.max_attempts = settings.max_attempts.max(1);
        settings.max_digits = settings.max_digits.max(1);
        Ivr {
            settings,
            state: State::Idle,
            attempts: 0,
            playing: false,
            timer_armed: false,
            outcome: None,
            languages: Vec::new(),
            preset: None,
            current: None,
        }
    }

    /// A dialogue offering `languages` (see [`LanguageOptions`] and the module documentation,
    /// "Languages"). Drive it with [`Ivr::handle_call`].
    pub fn with_languages(
        settings: IvrSettings,
        options: LanguageOptions,
    ) -> Result<Self, LanguageListError> {
        let LanguageOptions { languages, preset } = options;
        if languages.is_empty() {
            return Err(LanguageListError::Empty);
        }
        if languages.len() > MAX_LANGUAGES {
            return Err(LanguageListError::TooMany(languages.len()));
        }
        for (i, l) in languages.iter().enumerate() {
            if l.tag.trim().is_empty() {
                return Err(LanguageListError::EmptyTag);
            }
            if languages[..i]
                .iter()
                .any(|m| m.tag.eq_ignore_ascii_case(&l.tag))
            {
                return Err(LanguageListError::Duplicate(l.tag.clone()));
            }
        }
        let preset = preset
            .as_deref()
            .and_then(|loc| match_locale(&languages, loc));
        let mut ivr = Ivr::new(settings);
        ivr.languages = languages;
        ivr.preset = preset;
        Ok(ivr)
    }

    /// The call's language tag, once chosen (by the menu, the preset, or the only language);
    /// `None` on a single-language machine and while the menu runs.
    pub fn language(&self) -> Option<&str> {
        self.languages.get(self.current?).map(|l| l.tag.as_str())
    }

    /// The languages offered, by priority.
    pub fn languages(&self) -> &[Language] {
        &self.languages
    }

    /// Feeds one event; returns the actions to carry out, in order.
    ///
    /// This is the single-language interface: it has no way to say which language a prompt is
    /// in. On a machine made with [`Ivr::with_languages`] use [`Ivr::handle_call`] instead; here
    /// its language actions are flattened ([`CallAction::into_action`]): `SetLanguage` is
    /// dropped and the menu's `PlayMixed` becomes a plain `Play` of the same IDs.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        self.handle_into(event, &mut out);
        out
    }

    /// Like [`Ivr::handle`], appending to a reusable buffer (not cleared first).
    pub fn handle_into(&mut self, event: Event, out: &mut Vec<Action>) {
        out.extend(
            self.handle_call(event)
                .into_iter()
                .filter_map(CallAction::into_action),
        );
    }

    /// Feeds one event; returns the actions to carry out, in order, including the language
    /// actions ([`CallAction::SetLanguage`], [`CallAction::PlayMixed`]). The interface for a
    /// layer that offers more than one language.
    pub fn handle_call(&mut self, event: Event) -> Vec<CallAction> {
        let mut out = Out(Vec::new());
        self.step(event, &mut out);
        out.0
    }

    fn step(&mut self, event: Event, out: &mut Out) {
        if matches!(self.state, State::Finished) {
            return;
        }
        if event == Event::HangUp {
            self.state = State::Finished;
            self.playing = false;
            self.timer_armed = false;
            if self.outcome.is_none() {
                self.outcome = Some(Outcome::HungUp);
            }
            return;
        }
        let state = std::mem::replace(&mut self.state, State::Finished);
        self.state = match (state, event) {
            (State::Idle, Event::Start) => {
                if self.languages.len() > 1 && self.preset.is_none() {
                    self.play_menu(out);
                    State::LanguageMenu { invalid: 0 }
                } else {
                    if !self.languages.is_empty() {
                        self.choose_language(out, self.preset.unwrap_or(0));
                    }
                    self.begin(out)
                }
            }
            (State::LanguageMenu { invalid }, event) => self.on_menu(out, invalid, event),
            (State::Collect { step, entry }, event) => self.on_collect(out, step, entry, event),
            (State::LookupPending, Event::UserLookup(found)) => self.on_lookup(out, found),
            (State::AuthPending { user }, Event::AuthResult(result)) => {
                self.on_auth(out, user, result)
            }
            (State::Confirm { user, auth }, event) => self.on_confirm(out, user, auth, event),
            (State::ProvisionPending { user }, Event::ProvisionResult(result)) => {
                self.on_provisioned(out, user, result)
            }
            (State::Closing, Event::PlaybackFinished) if self.playing => {
                self.playing = false;
                out.push(Action::HangUp);
                State::Finished
            }
            // Anything else is out of place for the state (a digit while a lookup is pending, a
            // stray answer, a second Start): ignored, the state is unchanged.
            (state, _) => state,
        };
    }

    /// True once the call is over: the machine emitted `HangUp` or was told of a hang-up.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }

    /// A short name of the current state, for logs.
    pub fn state_name(&self) -> &'static str {
        match &self.state {
            State::Idle => "idle",
            State::LanguageMenu { .. } => "language_menu",
            State::Collect { step: Step::Id, .. } => "collect_id",
            State::Collect {
                step: Step::Secret { .. },
                ..
            } => "collect_secret",
            State::LookupPending => "lookup_pending",
            State::AuthPending { .. } => "auth_pending",
            State::Confirm { .. } => "confirm",
            State::ProvisionPending { .. } => "provision_pending",
            State::Closing => "closing",
            State::Finished => "finished",
        }
    }

    /// The result, once decided (it may be decided while the closing prompts still play).
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome.clone()
    }

    /// Failed attempts counted so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// True while the caller is typing a PIN or admin code: digit events must not be logged.
    pub fn in_secret_entry(&self) -> bool {
        matches!(
            self.state,
            State::Collect {
                step: Step::Secret { .. },
                ..
            }
        )
    }

    pub fn settings(&self) -> &IvrSettings {
        &self.settings
    }

    // ---- media and timer helpers: they keep `playing` / `timer_armed` in step with the actions.

    fn play(&mut self, out: &mut Out, queue: Vec<&'static str>) {
        self.playing = true;
        out.push(Action::Play(queue));
    }

    fn stop_playback(&mut self, out: &mut Out) {
        if self.playing {
            self.playing = false;
            out.push(Action::StopPlayback);
        }
    }

    fn start_timer(&mut self, out: &mut Out, d: Duration) {
        self.timer_armed = true;
        out.push(Action::StartTimer(d));
    }

    fn cancel_timer(&mut self, out: &mut Out) {
        if self.timer_armed {
            self.timer_armed = false;
            out.push(Action::CancelTimer);
        }
    }

    // ---- per-state handlers: each returns the next state.

    fn on_collect(&mut self, out: &mut Out, step: Step, mut entry: String, event: Event) -> State {
        match event {
            Event::PlaybackFinished if self.playing => {
                self.playing = false;
                // Digits stop playback, so the entry is empty here; the first-digit timer starts
                // only now, so a long prompt does not eat into the caller's time.
                let d = if entry.is_empty() {
                    self.settings.first_digit_timeout
                } else {
                    self.settings.inter_digit_timeout
                };
                self.start_timer(out, d);
                State::Collect { step, entry }
            }
            Event::Timeout if self.timer_armed => {
                self.timer_armed = false;
                if entry.is_empty() {
                    self.fail_attempt(out, step, p::NO_INPUT)
                } else {
                    self.submit(out, step, entry)
                }
            }
            Event::Digit(c @ '0'..='9') => {
                // Barge-in: the key interrupts the prompt and is the entry's first digit.
                self.stop_playback(out);
                entry.push(c);
                if entry.len() > self.settings.max_digits {
                    let cause = match step {
                        Step::Id => p::INVALID_ID,
                        Step::Secret { .. } => p::INVALID_PIN,
                    };
                    return self.fail_attempt(out, step, cause);
                }
                self.start_timer(out, self.settings.inter_digit_timeout);
                State::Collect { step, entry }
            }
            Event::Digit('*') => {
                self.stop_playback(out);
                entry.clear();
                self.start_timer(out, self.settings.first_digit_timeout);
                State::Collect { step, entry }
            }
            Event::Digit('#') => {
                self.stop_playback(out);
                if entry.is_empty() {
                    self.fail_attempt(out, step, p::NO_INPUT)
                } else {
                    self.submit(out, step, entry)
                }
            }
            // A-D, anything else, stray timer/playback events, out-of-place answers.
            _ => State::Collect { step, entry },
        }
    }

    /// How the call's language reads extensions back (digits until a language is chosen).
    fn readback(&self) -> Readback {
        self.current
            .and_then(|i| self.languages.get(i))
            .map(|l| l.readback)
            .unwrap_or_default()
    }

    /// The welcome and the ID prompt: the provisioning dialogue proper begins.
    fn begin(&mut self, out: &mut Out) -> State {
        self.play(out, vec![p::WELCOME, p::ENTER_ID]);
        State::Collect {
            step: Step::Id,
            entry: String::new(),
        }
    }

    fn choose_language(&mut self, out: &mut Out, index: usize) {
        let Some(lang) = self.languages.get(index) else {
            return;
        };
        self.current = Some(index);
        out.0.push(CallAction::SetLanguage(lang.tag.clone()));
    }

    /// "For <language>, press <n>", each option in its own language.
    fn play_menu(&mut self, out: &mut Out) {
        let queue = self
            .languages
            .iter()
            .zip(p::DIGITS.iter().skip(1))
            .flat_map(|(l, &digit)| [(l.tag.clone(), p::LANG_SELECT), (l.tag.clone(), digit)])
            .collect();
        self.playing = true;
        out.0.push(CallAction::PlayMixed(queue));
    }

    fn on_menu(&mut self, out: &mut Out, invalid: u32, event: Event) -> State {
        match event {
            Event::PlaybackFinished if self.playing => {
                self.playing = false;
                self.start_timer(out, self.settings.first_digit_timeout);
                State::LanguageMenu { invalid }
            }
            Event::Digit(c @ '0'..='9' | c @ '*' | c @ '#') => {
                self.stop_playback(out);
                self.cancel_timer(out);
                let choice = c
                    .to_digit(10)
                    .and_then(|d| usize::try_from(d).ok())
                    .filter(|&d| (1..=self.languages.len()).contains(&d));
                if let Some(d) = choice {
                    self.choose_language(out, d - 1);
                    return self.begin(out);
                }
                // Not a menu key: hear the menu again. The caller is pressing keys, so this is
                // not an endless loop by itself, but it is bounded anyway: after max_attempts
                // wrong keys the first language is taken, as on a timeout. Menu keys are not
                // failed provisioning attempts.
                let invalid = invalid.saturating_add(1);
                if invalid >= self.settings.max_attempts {
                    self.choose_language(out, 0);
                    return self.begin(out);
                }
                self.play_menu(out);
                State::LanguageMenu { invalid }
            }
            Event::Timeout if self.timer_armed => {
                // No choice: the highest-priority language.
                self.timer_armed = false;
                self.choose_language(out, 0);
                self.begin(out)
            }
            // A-D, stray events.
            _ => State::LanguageMenu { invalid },
        }
    }

    /// The entry is complete (`#` or inter-digit timeout): ask the layer to check it.
    fn submit(&mut self, out: &mut Out, step: Step, entry: String) -> State {
        self.cancel_timer(out);
        match step {
            Step::Id => {
                out.push(Action::LookupUser { digits: entry });
                State::LookupPending
            }
            Step::Secret { user } => {
                out.push(Action::Authenticate {
                    user_id: user.user_id.clone(),
                    digits: entry,
                });
                State::AuthPending { user }
            }
        }
    }

    /// Counts a failed attempt of `step` (cause: the prompt saying what went wrong), then either
    /// re-prompts the same step or, at the limit, says goodbye.
    fn fail_attempt(&mut self, out: &mut Out, step: Step, cause: &'static str) -> State {
        self.cancel_timer(out);
        if let Some(end) = self.count_attempt(out, Some(cause)) {
            return end;
        }
        let again = match &step {
            Step::Id => p::ENTER_ID,
            Step::Secret { .. } => self.secret_prompt(),
        };
        self.play(out, vec![cause, p::TRY_AGAIN, again]);
        State::Collect {
            step,
            entry: String::new(),
        }
    }

    /// Counts one failed attempt; at the limit plays `cause` (if any), too_many_attempts,
    /// goodbye and returns the closing state.
    fn count_attempt(&mut self, out: &mut Out, cause: Option<&'static str>) -> Option<State> {
        self.attempts = self.attempts.saturating_add(1);
        if self.attempts >= self.settings.max_attempts {
            let mut queue: Vec<&'static str> = cause.into_iter().collect();
            queue.extend([p::TOO_MANY_ATTEMPTS, p::GOODBYE]);
            Some(self.close(out, queue, Outcome::Failed(FailReason::TooManyAttempts)))
        } else {
            None
        }
    }

    fn secret_prompt(&self) -> &'static str {
        match self.settings.auth_mode {
            AuthMode::SecureUsersAndAdmins => p::ENTER_PIN_OR_ADMIN_CODE,
            _ => p::ENTER_PIN,
        }
    }

    fn on_lookup(&mut self, out: &mut Out, found: Option<UserInfo>) -> State {
        let Some(user) = found else {
            return self.fail_attempt(out, Step::Id, p::INVALID_ID);
        };
        if !user.selfprov_enabled {
            return self.close(
                out,
                vec![p::SELFPROV_DISABLED],
                Outcome::Failed(FailReason::SelfProvDisabled),
            );
        }
        match self.settings.auth_mode {
            AuthMode::NonSecure => self.enter_confirm(out, user, AuthMethod::None),
            AuthMode::SecureUsers | AuthMode::SecureUsersAndAdmins => {
                let prompt = self.secret_prompt();
                self.play(out, vec![prompt]);
                State::Collect {
                    step: Step::Secret { user },
                    entry: String::new(),
                }
            }
        }
    }

    fn on_auth(&mut self, out: &mut Out, user: UserInfo, result: AuthOutcome) -> State {
        let method = match (result, self.settings.auth_mode) {
            (AuthOutcome::User, AuthMode::SecureUsers | AuthMode::SecureUsersAndAdmins) => {
                Some(AuthMethod::Pin)
            }
            (AuthOutcome::Admin, AuthMode::SecureUsersAndAdmins) => Some(AuthMethod::AdminCode),
            // Defence in depth: an admin code is never accepted where admins are not allowed,
            // and no authentication happens at all in non-secure mode.
            _ => None,
        };
        match method {
            Some(auth) => self.enter_confirm(out, user, auth),
            None => self.fail_attempt(out, Step::Secret { user }, p::INVALID_PIN),
        }
    }

    /// Reads the extension back and asks for 1 (confirm) or 2 (cancel).
    fn enter_confirm(&mut self, out: &mut Out, user: UserInfo, auth: AuthMethod) -> State {
        let mut queue = vec![p::CONFIRM_EXTENSION];
        queue.extend(self.readback().sequence(&user.extension));
        if queue.len() == 1 {
            return self.close(
                out,
                vec![p::PROVISIONING_FAILED],
                Outcome::Failed(FailReason::NoExtension),
            );
        }
        queue.push(p::CONFIRM_CHOICE);
        self.play(out, queue);
        State::Confirm { user, auth }
    }

    fn on_confirm(
        &mut self,
        out: &mut Out,
        user: UserInfo,
        auth: AuthMethod,
        event: Event,
    ) -> State {
        match event {
            Event::PlaybackFinished if self.playing => {
                self.playing = false;
                self.start_timer(out, self.settings.first_digit_timeout);
                State::Confirm { user, auth }
            }
            Event::Digit('1') => {
                self.stop_playback(out);
                self.cancel_timer(out);
                out.push(Action::Provision {
                    user_id: user.user_id.clone(),
                    auth,
                });
                State::ProvisionPending { user }
            }
            Event::Digit('2') => {
                self.stop_playback(out);
                self.close(out, vec![p::CANCELLED], Outcome::Cancelled)
            }
            // Any other DTMF key (A-D stay ignored), or no key in time: one failed attempt.
            Event::Digit('0' | '3'..='9' | '*' | '#') => {
                self.stop_playback(out);
                self.confirm_retry(out, user, auth)
            }
            Event::Timeout if self.timer_armed => {
                self.timer_armed = false;
                self.confirm_retry(out, user, auth)
            }
            _ => State::Confirm { user, auth },
        }
    }

    fn confirm_retry(&mut self, out: &mut Out, user: UserInfo, auth: AuthMethod) -> State {
        self.cancel_timer(out);
        // At the limit just "too many attempts, goodbye": replaying "press 1 or 2" would mislead.
        if let Some(end) = self.count_attempt(out, None) {
            return end;
        }
        self.play(out, vec![p::CONFIRM_CHOICE]);
        State::Confirm { user, auth }
    }

    fn on_provisioned(
        &mut self,
        out: &mut Out,
        user: UserInfo,
        result: Result<(), ProvisionError>,
    ) -> State {
        match result {
            Ok(()) => {
                let mut queue = vec![p::SUCCESS];
                queue.extend(self.readback().sequence(&user.extension));
                queue.push(p::SUCCESS_RESTART);
                self.close(
                    out,
                    queue,
                    Outcome::Provisioned {
                        user_id: user.user_id,
                    },
                )
            }
            Err(e) => {
                // Say why where the caller can act on it (Cisco's IVR does likewise).
                let prompt = match e {
                    ProvisionError::AlreadyBound => p::ALREADY_BOUND,
                    ProvisionError::DeviceLimit => p::DEVICE_LIMIT,
                    ProvisionError::Refused(_) | ProvisionError::Internal(_) => {
                        p::PROVISIONING_FAILED
                    }
                };
                self.close(
                    out,
                    vec![prompt],
                    Outcome::Failed(FailReason::Provisioning(e)),
                )
            }
        }
    }

    /// Decides the outcome and plays the closing prompts; `HangUp` follows when they have played.
    fn close(&mut self, out: &mut Out, queue: Vec<&'static str>, outcome: Outcome) -> State {
        self.cancel_timer(out);
        self.outcome = Some(outcome);
        self.play(out, queue);
        State::Closing
    }
}

// ---- Debug impls that never print a PIN or admin code (see the module doc, "Secrets").

/// Printed in place of secret digits.
const REDACTED: &str = "<redacted>";

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Start => f.write_str("Start"),
            // The event does not know whether it belongs to the PIN step, so every digit value
            // is hidden; the control keys are shown because they are useful and not secret.
            Event::Digit(c) if c.is_ascii_digit() => write!(f, "Digit({REDACTED})"),
            Event::Digit(c) => f.debug_tuple("Digit").field(c).finish(),
            Event::PlaybackFinished => f.write_str("PlaybackFinished"),
            Event::Timeout => f.write_str("Timeout"),
            Event::UserLookup(u) => f.debug_tuple("UserLookup").field(u).finish(),
            Event::AuthResult(r) => f.debug_tuple("AuthResult").field(r).finish(),
            Event::ProvisionResult(r) => f.debug_tuple("ProvisionResult").field(r).finish(),
            Event::HangUp => f.write_str("HangUp"),
        }
    }
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Play(q) => f.debug_tuple("Play").field(q).finish(),
            Action::StopPlayback => f.write_str("StopPlayback"),
            Action::StartTimer(d) => f.debug_tuple("StartTimer").field(d).finish(),
            Action::CancelTimer => f.write_str("CancelTimer"),
            Action::LookupUser { digits } => f
                .debug_struct("LookupUser")
                .field("digits", digits)
                .finish(),
            Action::Authenticate { user_id, digits: _ } => f
                .debug_struct("Authenticate")
                .field("user_id", user_id)
                .field("digits", &format_args!("{REDACTED}"))
                .finish(),
            Action::Provision { user_id, auth } => f
                .debug_struct("Provision")
                .field("user_id", user_id)
                .field("auth", auth)
                .finish(),
            Action::HangUp => f.write_str("HangUp"),
        }
    }
}

impl fmt::Debug for Ivr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Ivr");
        d.field("state", &self.state_name());
        match &self.state {
            State::Collect {
                step: Step::Id,
                entry,
            } => {
                d.field("entry", entry);
            }
            State::Collect {
                step: Step::Secret { user },
                entry,
            } => {
                d.field("user_id", &user.user_id);
                d.field("entry_len", &entry.len());
            }
            State::AuthPending { user }
            | State::Confirm { user, .. }
            | State::ProvisionPending { user } => {
                d.field("user_id", &user.user_id);
            }
            State::Idle
            | State::LanguageMenu { .. }
            | State::LookupPending
            | State::Closing
            | State::Finished => {}
        }
        d.field("attempts", &self.attempts)
            .field("playing", &self.playing)
            .field("timer_armed", &self.timer_armed)
            .field("outcome", &self.outcome)
            .finish()
    }
}
