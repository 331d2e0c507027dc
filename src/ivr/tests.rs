//! Unit tests of the IVR dialogue: scripted event sequences with exact expected actions, and a
//! bounded randomised run checking the safety invariants (no panic, Provision only after a real
//! authorisation and a '1').

use super::prompts as p;
use super::*;
use crate::config::AuthMode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

const FIRST: Duration = Duration::from_secs(10);
const INTER: Duration = Duration::from_secs(5);

fn settings(auth_mode: AuthMode) -> IvrSettings {
    IvrSettings {
        auth_mode,
        first_digit_timeout: FIRST,
        inter_digit_timeout: INTER,
        max_attempts: 3,
        max_digits: 20,
    }
}

fn alice() -> UserInfo {
    UserInfo {
        user_id: "alice".into(),
        extension: "1042".into(),
        selfprov_enabled: true,
    }
}

fn play(ids: &[&'static str]) -> Action {
    Action::Play(ids.to_vec())
}

fn start_first() -> Action {
    Action::StartTimer(FIRST)
}

fn start_inter() -> Action {
    Action::StartTimer(INTER)
}

/// Feeds `keys` one by one, returning the actions of each key.
fn keys(ivr: &mut Ivr, keys: &str) -> Vec<Vec<Action>> {
    keys.chars().map(|c| ivr.handle(Event::Digit(c))).collect()
}

/// Start → welcome played → first-digit timer running in collect_id.
fn started(mode: AuthMode) -> Ivr {
    let mut ivr = Ivr::new(settings(mode));
    assert_eq!(
        ivr.handle(Event::Start),
        vec![play(&[p::WELCOME, p::ENTER_ID])]
    );
    assert_eq!(ivr.handle(Event::PlaybackFinished), vec![start_first()]);
    ivr
}

/// Types `id#` in collect_id and checks the lookup request.
fn enter_id(ivr: &mut Ivr, id: &str) {
    for a in keys(ivr, id) {
        assert_eq!(a, vec![start_inter()]);
    }
    assert_eq!(
        ivr.handle(Event::Digit('#')),
        vec![
            Action::CancelTimer,
            Action::LookupUser { digits: id.into() }
        ]
    );
    assert_eq!(ivr.state_name(), "lookup_pending");
}

/// In a secure mode: reaches confirm for alice (PIN accepted).
fn at_confirm(mode: AuthMode) -> Ivr {
    let mut ivr = started(mode);
    enter_id(&mut ivr, "42");
    ivr.handle(Event::UserLookup(Some(alice())));
    ivr.handle(Event::PlaybackFinished);
    keys(&mut ivr, "1234#");
    ivr.handle(Event::AuthResult(AuthOutcome::User));
    assert_eq!(ivr.state_name(), "confirm");
    ivr
}

const CONFIRM_1042: [&str; 6] = [
    p::CONFIRM_EXTENSION,
    "digit_1",
    "digit_0",
    "digit_4",
    "digit_2",
    p::CONFIRM_CHOICE,
];
const SUCCESS_1042: [&str; 6] = [
    p::SUCCESS,
    "digit_1",
    "digit_0",
    "digit_4",
    "digit_2",
    p::SUCCESS_RESTART,
];

fn has_provision(actions: &[Action]) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::Provision { .. }))
}

// ---------------------------------------------------------------------------- happy paths

#[test]
fn happy_path_non_secure_exact_sequence() {
    let mut ivr = Ivr::new(settings(AuthMode::NonSecure));
    assert_eq!(ivr.state_name(), "idle");
    assert_eq!(
        ivr.handle(Event::Start),
        vec![play(&[p::WELCOME, p::ENTER_ID])]
    );
    assert_eq!(ivr.handle(Event::PlaybackFinished), vec![start_first()]);
    assert_eq!(ivr.handle(Event::Digit('4')), vec![start_inter()]);
    assert_eq!(ivr.handle(Event::Digit('2')), vec![start_inter()]);
    assert_eq!(
        ivr.handle(Event::Digit('#')),
        vec![
            Action::CancelTimer,
            Action::LookupUser {
                digits: "42".into()
            }
        ]
    );
    // No PIN step: straight to the read-back.
    assert_eq!(
        ivr.handle(Event::UserLookup(Some(alice()))),
        vec![play(&CONFIRM_1042)]
    );
    assert_eq!(ivr.state_name(), "confirm");
    assert_eq!(ivr.handle(Event::PlaybackFinished), vec![start_first()]);
    assert_eq!(
        ivr.handle(Event::Digit('1')),
        vec![
            Action::CancelTimer,
            Action::Provision {
                user_id: "alice".into(),
                auth: AuthMethod::None
            }
        ]
    );
    assert_eq!(ivr.state_name(), "provision_pending");
    assert_eq!(ivr.outcome(), None);
    assert_eq!(
        ivr.handle(Event::ProvisionResult(Ok(()))),
        vec![play(&SUCCESS_1042)]
    );
    assert_eq!(
        ivr.outcome(),
        Some(Outcome::Provisioned {
            user_id: "alice".into()
        })
    );
    assert!(
        !ivr.is_finished(),
        "the success prompt must play before the hang-up"
    );
    assert_eq!(
        ivr.handle(Event::Digit('5')),
        vec![],
        "keys during the goodbye are ignored"
    );
    assert_eq!(ivr.handle(Event::PlaybackFinished), vec![Action::HangUp]);
    assert!(ivr.is_finished());
    assert_eq!(ivr.state_name(), "finished");
    assert_eq!(ivr.handle(Event::PlaybackFinished), vec![]);
    assert_eq!(ivr.attempts(), 0);
}

#[test]
fn happy_path_secure_users_exact_sequence() {
    let mut ivr = started(AuthMode::SecureUsers);
    enter_id(&mut ivr, "42");
    assert_eq!(
        ivr.handle(Event::UserLookup(Some(alice()))),
        vec![play(&[p::ENTER_PIN])]
    );
    assert_eq!(ivr.state_name(), "collect_secret");
    assert!(ivr.in_secret_entry());
    assert_eq!(ivr.handle(Event::PlaybackFinished), vec![start_first()]);
    for a in keys(&mut ivr, "9876") {
        assert_eq!(a, vec![start_inter()]);
    }
    assert_eq!(
        ivr.handle(Event::Digit('#')),
        vec![
            Action::CancelTimer,
            Action::Authenticate {
                user_id: "alice".into(),
                digits: "9876".into()
            }
        ]
    );
    assert_eq!(ivr.state_name(), "auth_pending");
    assert!(!ivr.in_secret_entry());
    assert_eq!(
        ivr.handle(Event::AuthResult(AuthOutcome::User)),
        vec![play(&CONFIRM_1042)]
    );
    assert_eq!(ivr.handle(Event::PlaybackFinished), vec![start_first()]);
    assert_eq!(
        ivr.handle(Event::Digit('1')),
        vec![
            Action::CancelTimer,
            Action::Provision {
                user_id: "alice".into(),
                auth: AuthMethod::Pin
            }
        ]
    );
    assert_eq!(
        ivr.handle(Event::ProvisionResult(Ok(()))),
        vec![play(&SUCCESS_1042)]
    );
    assert_eq!(ivr.handle(Event::PlaybackFinished), vec![Action::HangUp]);
    assert!(ivr.is_finished());
    assert_eq!(
        ivr.outcome(),
        Some(Outcome::Provisioned {
            user_id: "alice".into()
        })
    );
}

#[test]
fn happy_path_secure_users_and_admins_with_pin() {
    let mut ivr = started(AuthMode::SecureUsersAndAdmins);
    enter_id(&mut ivr, "42");
    assert_eq!(
        ivr.handle(Event::UserLookup(Some(alice()))),
        vec![play(&[p::ENTER_PIN_OR_ADMIN_CODE])]
    );
    assert_eq!(ivr.handle(Event::PlaybackFinished), vec![start_first()]);
    keys(&mut ivr, "1111");
    assert_eq!(
        ivr.handle(Event::Digit('#')),
        vec![
            Action::CancelTimer,
            Action::Authenticate {
                user_id: "alice".into(),
                digits: "1111".into()
            }
        ]
    );
    assert_eq!(
        ivr.handle(Event::AuthResult(AuthOutcome::User)),
        vec![play(&CONFIRM_1042)]
    );
    ivr.handle(Event::PlaybackFinished);
    assert_eq!(
        ivr.handle(Event::Digit('1')),
        vec![
            Action::CancelTimer,
            Action::Provision {
                user_id: "alice".into(),
                auth: AuthMethod::Pin
            }
        ]
    );
}

#[test]
fn admin_code_path() {
    let mut ivr = started(AuthMode::SecureUsersAndAdmins);
    enter_id(&mut ivr, "42");
    ivr.handle(Event::UserLookup(Some(alice())));
    ivr.handle(Event::PlaybackFinished);
    keys(&mut ivr, "31415926535897932384"); // 20 digits: the longest admin code
    assert_eq!(
        ivr.handle(Event::Digit('#')),
        vec![
            Action::CancelTimer,
            Action::Authenticate {
                user_id: "alice".into(),
                digits: "31415926535897932384".into()
            }
        ]
    );
    assert_eq!(
        ivr.handle(Event::AuthResult(AuthOutcome::Admin)),
        vec![play(&CONFIRM_1042)]
    );
    ivr.handle(Event::PlaybackFinished);
    assert_eq!(
        ivr.handle(Event::Digit('1')),
        vec![
            Action::CancelTimer,
            Action::Provision {
                user_id: "alice".into(),
                auth: AuthMethod::AdminCode
            }
        ]
    );
    ivr.handle(Event::ProvisionResult(Ok(())));
    assert_eq!(ivr.handle(Event::PlaybackFinished), vec![Action::HangUp]);
}

#[test]
fn admin_result_is_refused_when_admins_are_not_allowed() {
    let mut ivr = started(AuthMode::SecureUsers);
    enter_id(&mut ivr, "42");
    ivr.handle(Event::UserLookup(Some(alice())));
    keys(&mut ivr, "5#");
    assert_eq!(
        ivr.handle(Event::AuthResult(AuthOutcome::Admin)),
        vec![play(&[p::INVALID_PIN, p::TRY_AGAIN, p::ENTER_PIN])]
    );
    assert_eq!(ivr.attempts(), 1);
    assert_eq!(ivr.state_name(), "collect_secret");
}

// ---------------------------------------------------------------------------- digit entry

#[test]
fn barge_in_stops_the_prompt_and_counts_as_first_digit() {
    let mut ivr = Ivr::new(settings(AuthMode::NonSecure));
    ivr.handle(Event::Start);
    // The welcome prompt is still playing: no timer yet.
    assert_eq!(
        ivr.handle(Event::Digit('7')),
        vec![Action::StopPlayback, start_inter()]
    );
    // A late "finished" for the stopped queue must not restart the first-digit timer.
    assert_eq!(ivr.handle(Event::PlaybackFinished), vec![]);
    assert_eq!(ivr.handle(Event::Digit('3')), vec![start_inter()]);
    assert_eq!(
        ivr.handle(Event::Digit('#')),
        vec![
            Action::CancelTimer,
            Action::LookupUser {
                digits: "73".into()
            }
        ]
    );
}

#[test]
fn barge_in_during_pin_prompt_and_confirm_readback() {
    let mut ivr = started(AuthMode::SecureUsers);
    enter_id(&mut ivr, "42");
    ivr.handle(Event::UserLookup(Some(alice())));
    assert_eq!(
        ivr.handle(Event::Digit('8')),
        vec![Action::StopPlayback, start_inter()]
    );
    assert_eq!(
        ivr.handle(Event::Digit('#')),
        vec![
            Action::CancelTimer,
            Action::Authenticate {
                user_id: "alice".into(),
                digits: "8".into()
            }
        ]
    );
    assert_eq!(
        ivr.handle(Event::AuthResult(AuthOutcome::User)),
        vec![play(&CONFIRM_1042)]
    );
    // '1' while the extension is being read: stop it and provision (no timer was armed).
    assert_eq!(
        ivr.handle(Event::Digit('1')),
        vec![
            Action::StopPlayback,
            Action::Provision {
                user_id: "alice".into(),
                auth: AuthMethod::Pin
            }
        ]
    );
}

#[test]
fn abcd_keys_are_ignored_everywhere() {
    let mut ivr = Ivr::new(settings(AuthMode::NonSecure));
    ivr.handle(Event::Start);
    for c in ['A', 'B', 'C', 'D', 'a', 'x', '\u{0663}'] {
        assert_eq!(ivr.handle(Event::Digit(c)), vec![], "{c:?} during a prompt");
    }
    ivr.handle(Event::PlaybackFinished);
    assert_eq!(ivr.handle(Event::Digit('A')), vec![]);
    ivr.handle(Event::Digit('4'));
    ivr.handle(Event::Digit('D'));
    assert_eq!(
        ivr.handle(Event::Digit('#')),
        vec![
            Action::CancelTimer,
            Action::LookupUser { digits: "4".into() }
        ]
    );
    ivr.handle(Event::UserLookup(Some(alice())));
    ivr.handle(Event::PlaybackFinished);
    assert_eq!(
        ivr.handle(Event::Digit('C')),
        vec![],
        "A-D at confirm is not an invalid key"
    );
    assert_eq!(ivr.attempts(), 0);
}

#[test]
fn star_clears_the_entry_and_restarts_first_digit_timer() {
    let mut ivr = started(AuthMode::NonSecure);
    keys(&mut ivr, "12");
    assert_eq!(ivr.handle(Event::Digit('*')), vec![start_first()]);
    keys(&mut ivr, "34");
    assert_eq!(
        ivr.handle(Event::Digit('#')),
        vec![
            Action::CancelTimer,
            Action::LookupUser {
                digits: "34".into()
            }
        ]
    );
    assert_eq!(ivr.attempts(), 0);

    // '*' during a prompt stops it and arms the first-digit timer at once.
    let mut ivr = Ivr::new(settings(AuthMode::NonSecure));
    ivr.handle(Event::Start);
    assert_eq!(
        ivr.handle(Event::Digit('*')),
        vec![Action::StopPlayback, start_first()]
    );
    // '*' then nothing: the first-digit timeout is a no-input failure, not a submit.
    assert_eq!(
        ivr.handle(Event::Timeout),
        vec![play(&[p::NO_INPUT, p::TRY_AGAIN, p::ENTER_ID])]
    );
}

#[test]
fn pound_on_empty_entry_is_a_failed_attempt() {
    let mut ivr = started(AuthMode::NonSecure);
    assert_eq!(
        ivr.handle(Event::Digit('#')),
        vec![
            Action::CancelTimer,
            play(&[p::NO_INPUT, p::TRY_AGAIN, p::ENTER_ID])
        ]
    );
    assert_eq!(ivr.attempts(), 1);
    assert_eq!(ivr.state_name(), "collect_id");
    // '#' during the re-prompt: barge-in, and another failed attempt.
    assert_eq!(
        ivr.handle(Event::Digit('#')),
        vec![
            Action::StopPlayback,
            play(&[p::NO_INPUT, p::TRY_AGAIN, p::ENTER_ID])
        ]
    );
    assert_eq!(ivr.attempts(), 2);
    // After '*' cleared the digits, '#' is an empty entry too.
    ivr.handle(Event::PlaybackFinished);
    keys(&mut ivr, "55*");
    assert_eq!(
        ivr.handle(Event::Digit('#')),
        vec![
            Action::CancelTimer,
            play(&[p::NO_INPUT, p::TOO_MANY_ATTEMPTS, p::GOODBYE])
        ]
    );
}

#[test]
fn twenty_digits_are_accepted_the_twenty_first_is_invalid() {
    let twenty = "12345678901234567890";
    let mut ivr = started(AuthMode::NonSecure);
    keys(&mut ivr, twenty);
    assert_eq!(
        ivr.handle(Event::Digit('#')),
        vec![
            Action::CancelTimer,
            Action::LookupUser {
                digits: twenty.into()
            }
        ]
    );

    let mut ivr = started(AuthMode::NonSecure);
    for a in keys(&mut ivr, twenty) {
        assert_eq!(a, vec![start_inter()]);
    }
    assert_eq!(
        ivr.handle(Event::Digit('1')),
        vec![
            Action::CancelTimer,
            play(&[p::INVALID_ID, p::TRY_AGAIN, p::ENTER_ID])
        ]
    );
    assert_eq!(ivr.attempts(), 1);
    // The next entry starts empty.
    ivr.handle(Event::PlaybackFinished);
    keys(&mut ivr, "9");
    assert_eq!(
        ivr.handle(Event::Digit('#')),
        vec![
            Action::CancelTimer,
            Action::LookupUser { digits: "9".into() }
        ]
    );

    // In the PIN step the 21st digit never reaches Authenticate.
    let mut ivr = started(AuthMode::SecureUsers);
    enter_id(&mut ivr, "42");
    ivr.handle(Event::UserLookup(Some(alice())));
    ivr.handle(Event::PlaybackFinished);
    keys(&mut ivr, twenty);
    assert_eq!(
        ivr.handle(Event::Digit('0')),
        vec![
            Action::CancelTimer,
            play(&[p::INVALID_PIN, p::TRY_AGAIN, p::ENTER_PIN])
        ]
    );
    assert_eq!(ivr.state_name(), "collect_secret");
}

#[test]
fn first_digit_timeout_is_no_input_and_reprompts() {
    let mut ivr = started(AuthMode::NonSecure);
    assert_eq!(
        ivr.handle(Event::Timeout),
        vec![play(&[p::NO_INPUT, p::TRY_AGAIN, p::ENTER_ID])]
    );
    assert_eq!(ivr.attempts(), 1);
    // The timer starts again only once the re-prompt has played.
    assert_eq!(
        ivr.handle(Event::Timeout),
        vec![],
        "no timer is armed while prompting"
    );
    assert_eq!(ivr.handle(Event::PlaybackFinished), vec![start_first()]);
    assert_eq!(ivr.handle(Event::Digit('6')), vec![start_inter()]);
}

#[test]
fn inter_digit_timeout_submits_the_digits() {
    let mut ivr = started(AuthMode::NonSecure);
    keys(&mut ivr, "314");
    assert_eq!(
        ivr.handle(Event::Timeout),
        vec![Action::LookupUser {
            digits: "314".into()
        }]
    );
    assert_eq!(ivr.attempts(), 0);

    let mut ivr = started(AuthMode::SecureUsers);
    enter_id(&mut ivr, "42");
    ivr.handle(Event::UserLookup(Some(alice())));
    ivr.handle(Event::PlaybackFinished);
    keys(&mut ivr, "2468");
    assert_eq!(
        ivr.handle(Event::Timeout),
        vec![Action::Authenticate {
            user_id: "alice".into(),
            digits: "2468".into()
        }]
    );
}

#[test]
fn stray_timeout_and_playback_events_are_ignored() {
    let mut ivr = Ivr::new(settings(AuthMode::NonSecure));
    assert_eq!(ivr.handle(Event::Timeout), vec![]);
    assert_eq!(ivr.handle(Event::PlaybackFinished), vec![]);
    assert_eq!(
        ivr.handle(Event::Digit('1')),
        vec![],
        "no digits before Start"
    );
    ivr.handle(Event::Start);
    assert_eq!(
        ivr.handle(Event::Timeout),
        vec![],
        "timer not armed during the welcome"
    );
    assert_eq!(
        ivr.handle(Event::Start),
        vec![],
        "a second Start is ignored"
    );
    assert_eq!(
        ivr.handle(Event::UserLookup(Some(alice()))),
        vec![],
        "unrequested answer"
    );
    assert_eq!(ivr.state_name(), "collect_id");
    ivr.handle(Event::PlaybackFinished);
    // A Timeout after '#' cancelled the timer (a fire racing the cancel) is ignored.
    ivr.handle(Event::Digit('1'));
    ivr.handle(Event::Digit('#'));
    assert_eq!(ivr.handle(Event::Timeout), vec![]);
    assert_eq!(ivr.state_name(), "lookup_pending");
    assert_eq!(ivr.attempts(), 0);
}

#[test]
fn digits_and_timeouts_are_ignored_while_lookup_or_auth_pending() {
    let mut ivr = started(AuthMode::SecureUsers);
    enter_id(&mut ivr, "42");
    for e in [
        Event::Digit('5'),
        Event::Digit('#'),
        Event::Digit('*'),
        Event::Timeout,
    ] {
        assert_eq!(ivr.handle(e), vec![]);
    }
    assert_eq!(
        ivr.handle(Event::AuthResult(AuthOutcome::User)),
        vec![],
        "not asked"
    );
    assert_eq!(
        ivr.handle(Event::UserLookup(Some(alice()))),
        vec![play(&[p::ENTER_PIN])]
    );
    ivr.handle(Event::PlaybackFinished);
    keys(&mut ivr, "77#");
    assert_eq!(ivr.state_name(), "auth_pending");
    for e in [
        Event::Digit('1'),
        Event::Digit('#'),
        Event::PlaybackFinished,
        Event::Timeout,
    ] {
        assert_eq!(ivr.handle(e), vec![]);
    }
    // The ignored '1' did not leak into the confirm step, and the PIN was not extended.
    assert_eq!(
        ivr.handle(Event::AuthResult(AuthOutcome::User)),
        vec![play(&CONFIRM_1042)]
    );
    assert_eq!(ivr.state_name(), "confirm");
    assert_eq!(ivr.attempts(), 0);
}

// ---------------------------------------------------------------------------- failures

#[test]
fn unknown_id_three_times_says_goodbye_and_hangs_up() {
    let mut ivr = started(AuthMode::SecureUsers);
    for round in 1..=2u32 {
        enter_id(&mut ivr, "999");
        assert_eq!(
            ivr.handle(Event::UserLookup(None)),
            vec![play(&[p::INVALID_ID, p::TRY_AGAIN, p::ENTER_ID])]
        );
        assert_eq!(ivr.attempts(), round);
        assert_eq!(ivr.state_name(), "collect_id");
        assert_eq!(ivr.handle(Event::PlaybackFinished), vec![start_first()]);
    }
    enter_id(&mut ivr, "999");
    assert_eq!(
        ivr.handle(Event::UserLookup(None)),
        vec![play(&[p::INVALID_ID, p::TOO_MANY_ATTEMPTS, p::GOODBYE])]
    );
    assert_eq!(
        ivr.outcome(),
        Some(Outcome::Failed(FailReason::TooManyAttempts))
    );
    assert_eq!(ivr.state_name(), "closing");
    assert_eq!(ivr.handle(Event::Digit('1')), vec![]);
    assert_eq!(ivr.handle(Event::PlaybackFinished), vec![Action::HangUp]);
    assert!(ivr.is_finished());
}

#[test]
fn wrong_pin_three_times_never_provisions() {
    let mut ivr = started(AuthMode::SecureUsers);
    enter_id(&mut ivr, "42");
    ivr.handle(Event::UserLookup(Some(alice())));
    let mut all = Vec::new();
    for round in 1..=3u32 {
        all.extend(ivr.handle(Event::PlaybackFinished));
        all.extend(keys(&mut ivr, "0000").concat());
        let submit = ivr.handle(Event::Digit('#'));
        // Every attempt is for the same user, with the newly typed digits only.
        assert_eq!(
            submit,
            vec![
                Action::CancelTimer,
                Action::Authenticate {
                    user_id: "alice".into(),
                    digits: "0000".into()
                }
            ]
        );
        let res = ivr.handle(Event::AuthResult(AuthOutcome::Failed));
        let expected = if round < 3 {
            play(&[p::INVALID_PIN, p::TRY_AGAIN, p::ENTER_PIN])
        } else {
            play(&[p::INVALID_PIN, p::TOO_MANY_ATTEMPTS, p::GOODBYE])
        };
        assert_eq!(res, vec![expected]);
        all.extend(submit);
        all.extend(res);
    }
    // Whatever the caller does now, nothing is provisioned.
    for e in [
        Event::Digit('1'),
        Event::AuthResult(AuthOutcome::User),
        Event::Digit('1'),
    ] {
        all.extend(ivr.handle(e));
    }
    all.extend(ivr.handle(Event::PlaybackFinished));
    assert_eq!(all.last(), Some(&Action::HangUp));
    assert!(!has_provision(&all));
    assert_eq!(
        ivr.outcome(),
        Some(Outcome::Failed(FailReason::TooManyAttempts))
    );
}

#[test]
fn a_mix_of_failures_counts_to_max_attempts() {
    let mut ivr = started(AuthMode::SecureUsers);
    // 1: unknown ID.
    enter_id(&mut ivr, "1");
    ivr.handle(Event::UserLookup(None));
    ivr.handle(Event::PlaybackFinished);
    // 2: no input.
    assert_eq!(
        ivr.handle(Event::Timeout),
        vec![play(&[p::NO_INPUT, p::TRY_AGAIN, p::ENTER_ID])]
    );
    ivr.handle(Event::PlaybackFinished);
    // A found user does not reset the count.
    enter_id(&mut ivr, "42");
    ivr.handle(Event::UserLookup(Some(alice())));
    ivr.handle(Event::PlaybackFinished);
    assert_eq!(ivr.attempts(), 2);
    // 3: wrong PIN → the end.
    keys(&mut ivr, "1#");
    assert_eq!(
        ivr.handle(Event::AuthResult(AuthOutcome::Failed)),
        vec![play(&[p::INVALID_PIN, p::TOO_MANY_ATTEMPTS, p::GOODBYE])]
    );
    assert_eq!(ivr.handle(Event::PlaybackFinished), vec![Action::HangUp]);
}

#[test]
fn max_attempts_one_ends_at_the_first_failure() {
    let mut s = settings(AuthMode::NonSecure);
    s.max_attempts = 1;
    let mut ivr = Ivr::new(s);
    ivr.handle(Event::Start);
    ivr.handle(Event::PlaybackFinished);
    assert_eq!(
        ivr.handle(Event::Timeout),
        vec![play(&[p::NO_INPUT, p::TOO_MANY_ATTEMPTS, p::GOODBYE])]
    );
    // max_attempts 0 behaves like 1 rather than looping forever.
    let mut s = settings(AuthMode::NonSecure);
    s.max_attempts = 0;
    let mut ivr = Ivr::new(s);
    ivr.handle(Event::Start);
    assert_eq!(
        ivr.handle(Event::Digit('#')),
        vec![
            Action::StopPlayback,
            play(&[p::NO_INPUT, p::TOO_MANY_ATTEMPTS, p::GOODBYE])
        ]
    );
}

#[test]
fn disabled_user_hears_selfprov_disabled_and_is_hung_up() {
    for mode in [
        AuthMode::NonSecure,
        AuthMode::SecureUsers,
        AuthMode::SecureUsersAndAdmins,
    ] {
        let mut ivr = started(mode);
        enter_id(&mut ivr, "42");
        let bob = UserInfo {
            selfprov_enabled: false,
            ..alice()
        };
        assert_eq!(
            ivr.handle(Event::UserLookup(Some(bob))),
            vec![play(&[p::SELFPROV_DISABLED])]
        );
        assert_eq!(
            ivr.outcome(),
            Some(Outcome::Failed(FailReason::SelfProvDisabled))
        );
        assert_eq!(ivr.handle(Event::Digit('1')), vec![]);
        assert_eq!(ivr.handle(Event::PlaybackFinished), vec![Action::HangUp]);
        assert!(ivr.is_finished());
    }
}

#[test]
fn user_without_extension_cannot_be_provisioned() {
    let mut ivr = started(AuthMode::NonSecure);
    enter_id(&mut ivr, "42");
    let carol = UserInfo {
        extension: "-".into(),
        ..alice()
    };
    assert_eq!(
        ivr.handle(Event::UserLookup(Some(carol))),
        vec![play(&[p::PROVISIONING_FAILED])]
    );
    assert_eq!(
        ivr.outcome(),
        Some(Outcome::Failed(FailReason::NoExtension))
    );
    assert_eq!(ivr.handle(Event::PlaybackFinished), vec![Action::HangUp]);
}

#[test]
fn extension_readback_skips_non_digits() {
    let mut ivr = started(AuthMode::NonSecure);
    enter_id(&mut ivr, "42");
    let dave = UserInfo {
        extension: "+3 5-7".into(),
        ..alice()
    };
    assert_eq!(
        ivr.handle(Event::UserLookup(Some(dave))),
        vec![play(&[
            p::CONFIRM_EXTENSION,
            "digit_3",
            "digit_5",
            "digit_7",
            p::CONFIRM_CHOICE
        ])]
    );
}

#[test]
fn confirm_two_cancels() {
    let mut ivr = at_confirm(AuthMode::SecureUsers);
    assert_eq!(ivr.handle(Event::PlaybackFinished), vec![start_first()]);
    assert_eq!(
        ivr.handle(Event::Digit('2')),
        vec![Action::CancelTimer, play(&[p::CANCELLED])]
    );
    assert_eq!(ivr.outcome(), Some(Outcome::Cancelled));
    assert_eq!(
        ivr.handle(Event::Digit('1')),
        vec![],
        "no second thoughts after cancel"
    );
    assert_eq!(ivr.handle(Event::PlaybackFinished), vec![Action::HangUp]);
    assert!(ivr.is_finished());
}

#[test]
fn invalid_confirm_key_or_timeout_replays_the_choice() {
    let mut ivr = at_confirm(AuthMode::SecureUsers);
    // A key during the read-back: stop it, count, replay the choice.
    assert_eq!(
        ivr.handle(Event::Digit('5')),
        vec![Action::StopPlayback, play(&[p::CONFIRM_CHOICE])]
    );
    assert_eq!(ivr.attempts(), 1);
    assert_eq!(ivr.handle(Event::PlaybackFinished), vec![start_first()]);
    // '#' is not a confirmation either.
    assert_eq!(
        ivr.handle(Event::Digit('#')),
        vec![Action::CancelTimer, play(&[p::CONFIRM_CHOICE])]
    );
    assert_eq!(ivr.attempts(), 2);
    // The third failure (a barge-in on the replay) ends the call without replaying the choice.
    assert_eq!(
        ivr.handle(Event::Digit('0')),
        vec![
            Action::StopPlayback,
            play(&[p::TOO_MANY_ATTEMPTS, p::GOODBYE])
        ]
    );
    assert_eq!(
        ivr.outcome(),
        Some(Outcome::Failed(FailReason::TooManyAttempts))
    );
    assert_eq!(ivr.handle(Event::Digit('1')), vec![]);
    assert_eq!(ivr.handle(Event::PlaybackFinished), vec![Action::HangUp]);

    let mut ivr = at_confirm(AuthMode::SecureUsers);
    ivr.handle(Event::PlaybackFinished);
    assert_eq!(ivr.handle(Event::Timeout), vec![play(&[p::CONFIRM_CHOICE])]);
    assert_eq!(ivr.attempts(), 1);
    assert_eq!(ivr.handle(Event::PlaybackFinished), vec![start_first()]);
    // Still possible to confirm afterwards.
    assert_eq!(
        ivr.handle(Event::Digit('1')),
        vec![
            Action::CancelTimer,
            Action::Provision {
                user_id: "alice".into(),
                auth: AuthMethod::Pin
            }
        ]
    );
}

#[test]
fn provisioning_failure_plays_failed_and_hangs_up() {
    let errors = [
        (ProvisionError::AlreadyBound, p::ALREADY_BOUND),
        (ProvisionError::DeviceLimit, p::DEVICE_LIMIT),
        (
            ProvisionError::Refused("no profile".into()),
            p::PROVISIONING_FAILED,
        ),
        (
            ProvisionError::Internal("db down".into()),
            p::PROVISIONING_FAILED,
        ),
    ];
    for (err, prompt) in errors {
        let mut ivr = at_confirm(AuthMode::SecureUsers);
        ivr.handle(Event::Digit('1'));
        assert_eq!(
            ivr.handle(Event::ProvisionResult(Err(err.clone()))),
            vec![play(&[prompt])]
        );
        assert_eq!(
            ivr.outcome(),
            Some(Outcome::Failed(FailReason::Provisioning(err)))
        );
        assert_eq!(ivr.handle(Event::PlaybackFinished), vec![Action::HangUp]);
        assert!(ivr.is_finished());
    }
}

// ---------------------------------------------------------------------------- hang-up

/// Every event kind, to check a finished machine stays silent.
fn every_event() -> Vec<Event> {
    let mut v = vec![
        Event::Start,
        Event::PlaybackFinished,
        Event::Timeout,
        Event::HangUp,
    ];
    v.extend("0123456789*#AD".chars().map(Event::Digit));
    v.extend([
        Event::UserLookup(None),
        Event::UserLookup(Some(alice())),
        Event::AuthResult(AuthOutcome::User),
        Event::AuthResult(AuthOutcome::Admin),
        Event::AuthResult(AuthOutcome::Failed),
        Event::ProvisionResult(Ok(())),
        Event::ProvisionResult(Err(ProvisionError::AlreadyBound)),
    ]);
    v
}

#[test]
fn hang_up_in_every_state_ends_the_machine_silently() {
    // (script to reach the state, its name, the outcome expected after the hang-up)
    let cases: Vec<(Vec<Event>, &str, Outcome)> = {
        use Event::*;
        let mut script = Vec::new();
        let mut cases = Vec::new();
        let mut step = |evs: Vec<Event>, name: &'static str, o: Outcome| {
            script.extend(evs);
            cases.push((script.clone(), name, o));
        };
        step(vec![], "idle", Outcome::HungUp);
        step(vec![Start], "collect_id", Outcome::HungUp);
        step(
            vec![PlaybackFinished, Digit('4')],
            "collect_id",
            Outcome::HungUp,
        );
        step(vec![Digit('#')], "lookup_pending", Outcome::HungUp);
        step(
            vec![UserLookup(Some(alice()))],
            "collect_secret",
            Outcome::HungUp,
        );
        step(vec![Digit('9')], "collect_secret", Outcome::HungUp);
        step(vec![Digit('#')], "auth_pending", Outcome::HungUp);
        step(
            vec![AuthResult(AuthOutcome::User)],
            "confirm",
            Outcome::HungUp,
        );
        step(vec![PlaybackFinished], "confirm", Outcome::HungUp);
        step(vec![Digit('1')], "provision_pending", Outcome::HungUp);
        let done = Outcome::Provisioned {
            user_id: "alice".into(),
        };
        step(vec![ProvisionResult(Ok(()))], "closing", done.clone());
        step(vec![PlaybackFinished], "finished", done);
        cases
    };
    for (script, name, outcome) in cases {
        let mut ivr = Ivr::new(settings(AuthMode::SecureUsers));
        for e in script {
            ivr.handle(e);
        }
        assert_eq!(ivr.state_name(), name);
        assert_eq!(ivr.handle(Event::HangUp), vec![], "in {name}");
        assert!(ivr.is_finished());
        assert_eq!(ivr.state_name(), "finished");
        for e in every_event() {
            assert_eq!(
                ivr.handle(e.clone()),
                vec![],
                "{e:?} after hang-up in {name}"
            );
        }
        assert_eq!(ivr.outcome(), Some(outcome), "in {name}");
    }
}

#[test]
fn hang_up_while_provision_pending_then_late_result_is_ignored() {
    let mut ivr = at_confirm(AuthMode::SecureUsers);
    assert!(has_provision(&ivr.handle(Event::Digit('1'))));
    assert_eq!(ivr.handle(Event::HangUp), vec![]);
    assert_eq!(ivr.outcome(), Some(Outcome::HungUp));
    assert_eq!(ivr.handle(Event::ProvisionResult(Ok(()))), vec![]);
    assert_eq!(
        ivr.outcome(),
        Some(Outcome::HungUp),
        "the layer owns the late result"
    );
}

#[test]
fn hang_up_at_confirm_never_provisions() {
    let mut ivr = at_confirm(AuthMode::SecureUsersAndAdmins);
    ivr.handle(Event::HangUp);
    for e in every_event() {
        assert!(!has_provision(&ivr.handle(e)));
    }
}

// ---------------------------------------------------------------------------- secrets

#[test]
fn debug_output_never_shows_secret_digits() {
    let a = Action::Authenticate {
        user_id: "alice".into(),
        digits: "482913".into(),
    };
    let s = format!("{a:?} {a:#?}");
    assert!(!s.contains("482913"), "{s}");
    assert!(s.contains("alice") && s.contains("<redacted>"), "{s}");

    let s = format!("{:?} {:?}", Event::Digit('7'), Event::Digit('#'));
    assert!(!s.contains('7'), "{s}");
    assert!(s.contains("'#'"), "{s}");

    // The ID is not secret: LookupUser shows it, and so does the machine while the ID is typed.
    let l = Action::LookupUser {
        digits: "5150".into(),
    };
    assert!(format!("{l:?}").contains("5150"));
    let mut ivr = started(AuthMode::SecureUsers);
    keys(&mut ivr, "5150");
    assert!(format!("{ivr:?}").contains("5150"));
    ivr.handle(Event::Digit('#'));
    ivr.handle(Event::UserLookup(Some(alice())));
    keys(&mut ivr, "482913");
    assert!(ivr.in_secret_entry());
    let s = format!("{ivr:?} {ivr:#?}");
    assert!(!s.contains("482913") && !s.contains("4829"), "{s}");
    assert!(s.contains("entry_len: 6"), "{s}");
}

// ---------------------------------------------------------------------------- randomised

/// What a run of the random test has seen, to judge every Provision against.
#[derive(Default)]
struct Oracle {
    /// (user_id, method) authorised by the last accepted lookup/auth answer.
    authorised: Option<(String, AuthMethod)>,
    /// The user of the outstanding Authenticate / the user of the last accepted lookup.
    asked_user: Option<String>,
    provisions: u32,
    provision_ok_fed: bool,
    hung_up: bool,
    finished_by_action: bool,
}

fn random_user(rng: &mut StdRng) -> UserInfo {
    let users = [
        UserInfo {
            user_id: "alice".into(),
            extension: "1042".into(),
            selfprov_enabled: true,
        },
        UserInfo {
            user_id: "bob".into(),
            extension: "77".into(),
            selfprov_enabled: true,
        },
        UserInfo {
            user_id: "eve".into(),
            extension: "3".into(),
            selfprov_enabled: false,
        },
        UserInfo {
            user_id: "nox".into(),
            extension: "".into(),
            selfprov_enabled: true,
        },
    ];
    users[rng.random_range(0..users.len())].clone()
}

fn random_event(rng: &mut StdRng, state: &str) -> Event {
    const KEYS: &[char] = &['0', '1', '2', '3', '5', '9', '*', '#', 'A', 'D', 'x'];
    let key = |rng: &mut StdRng| Event::Digit(KEYS[rng.random_range(0..KEYS.len())]);
    let auth = |rng: &mut StdRng| {
        Event::AuthResult(match rng.random_range(0..3) {
            0 => AuthOutcome::User,
            1 => AuthOutcome::Admin,
            _ => AuthOutcome::Failed,
        })
    };
    let lookup = |rng: &mut StdRng| {
        Event::UserLookup(if rng.random_bool(0.3) {
            None
        } else {
            Some(random_user(rng))
        })
    };
    let provision = |rng: &mut StdRng| {
        Event::ProvisionResult(if rng.random_bool(0.5) {
            Ok(())
        } else {
            Err(ProvisionError::AlreadyBound)
        })
    };
    if rng.random_bool(0.005) {
        return Event::HangUp;
    }
    // Mostly a plausible event for the state (to get deep into the dialogue), sometimes anything.
    if rng.random_bool(0.85) {
        match state {
            "idle" => Event::Start,
            "collect_id" | "collect_secret" | "confirm" => match rng.random_range(0..10) {
                0 => Event::PlaybackFinished,
                1 => Event::Timeout,
                2 if state == "confirm" => Event::Digit('1'),
                3 | 4 => Event::Digit('#'),
                _ => key(rng),
            },
            "lookup_pending" => lookup(rng),
            "auth_pending" => auth(rng),
            "provision_pending" => provision(rng),
            _ => Event::PlaybackFinished,
        }
    } else {
        match rng.random_range(0..9) {
            0 => Event::Start,
            1 => Event::PlaybackFinished,
            2 => Event::Timeout,
            3 => lookup(rng),
            4 => auth(rng),
            5 => provision(rng),
            _ => key(rng),
        }
    }
}

#[test]
fn random_event_sequences_keep_the_safety_invariants() {
    let modes = [
        AuthMode::NonSecure,
        AuthMode::SecureUsers,
        AuthMode::SecureUsersAndAdmins,
    ];
    let mut runs_with_provision = 0u32;
    let mut runs_finished = 0u32;
    let mut by_method = std::collections::BTreeMap::new();
    for seed in 0..2000u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mode = modes[(seed % 3) as usize];
        let max_attempts = rng.random_range(1..=4);
        let mut s = settings(mode);
        s.max_attempts = max_attempts;
        s.max_digits = rng.random_range(1..=20);
        let max_digits = s.max_digits;
        let mut ivr = Ivr::new(s);
        let mut o = Oracle::default();
        for _ in 0..rng.random_range(1..=120) {
            let before = ivr.state_name();
            let event = random_event(&mut rng, before);
            let actions = ivr.handle(event.clone());
            let ctx = || format!("seed {seed} mode {mode:?} in {before} on {event:?}: {actions:?}");

            if o.hung_up || o.finished_by_action {
                assert!(actions.is_empty(), "actions after the end: {}", ctx());
            }
            match &event {
                Event::HangUp => {
                    assert!(actions.is_empty(), "{}", ctx());
                    o.hung_up = true;
                }
                Event::UserLookup(Some(u)) if before == "lookup_pending" => {
                    o.asked_user = Some(u.user_id.clone());
                    let readable = u.extension.chars().any(|c| c.is_ascii_digit());
                    if mode == AuthMode::NonSecure && u.selfprov_enabled && readable {
                        o.authorised = Some((u.user_id.clone(), AuthMethod::None));
                    }
                }
                Event::AuthResult(r) if before == "auth_pending" => {
                    let method = match (r, mode) {
                        (AuthOutcome::User, _) => Some(AuthMethod::Pin),
                        (AuthOutcome::Admin, AuthMode::SecureUsersAndAdmins) => {
                            Some(AuthMethod::AdminCode)
                        }
                        _ => None,
                    };
                    if let (Some(m), Some(u)) = (method, o.asked_user.clone()) {
                        o.authorised = Some((u, m));
                    }
                }
                Event::ProvisionResult(Ok(())) if before == "provision_pending" => {
                    o.provision_ok_fed = true;
                }
                _ => {}
            }
            for a in &actions {
                match a {
                    Action::Play(q) => {
                        assert!(!q.is_empty(), "{}", ctx());
                        for id in q {
                            assert!(p::ALL.contains(id), "unknown prompt {id}: {}", ctx());
                        }
                    }
                    Action::LookupUser { digits } => {
                        assert!(before == "collect_id", "{}", ctx());
                        assert!(
                            !digits.is_empty() && digits.len() <= max_digits,
                            "{}",
                            ctx()
                        );
                        assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{}", ctx());
                    }
                    Action::Authenticate { user_id, digits } => {
                        assert_ne!(mode, AuthMode::NonSecure, "{}", ctx());
                        assert!(before == "collect_secret", "{}", ctx());
                        assert_eq!(Some(user_id), o.asked_user.as_ref(), "{}", ctx());
                        assert!(
                            !digits.is_empty() && digits.len() <= max_digits,
                            "{}",
                            ctx()
                        );
                        assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{}", ctx());
                    }
                    Action::Provision { user_id, auth } => {
                        assert_eq!(event, Event::Digit('1'), "{}", ctx());
                        assert_eq!(before, "confirm", "{}", ctx());
                        let (who, how) = o.authorised.as_ref().expect("authorised");
                        assert_eq!((user_id, auth), (who, how), "{}", ctx());
                        o.provisions += 1;
                        assert_eq!(o.provisions, 1, "{}", ctx());
                    }
                    Action::HangUp => {
                        assert_eq!(a, actions.last().unwrap(), "{}", ctx());
                        o.finished_by_action = true;
                    }
                    Action::StopPlayback | Action::StartTimer(_) | Action::CancelTimer => {}
                }
            }
            assert!(ivr.attempts() <= max_attempts.max(1), "{}", ctx());
            assert_eq!(
                ivr.is_finished(),
                o.hung_up || o.finished_by_action,
                "{}",
                ctx()
            );
            if let Some(Outcome::Provisioned { user_id }) = ivr.outcome() {
                assert!(o.provision_ok_fed && o.provisions == 1, "{}", ctx());
                assert_eq!(
                    Some(&user_id),
                    o.authorised.as_ref().map(|(u, _)| u),
                    "{}",
                    ctx()
                );
            }
            if ivr.is_finished() && rng.random_bool(0.5) {
                break;
            }
        }
        runs_with_provision += u32::from(o.provisions > 0);
        if o.provisions > 0 {
            if let Some((_, m)) = &o.authorised {
                *by_method.entry(format!("{m:?}")).or_insert(0u32) += 1;
            }
        }
        runs_finished += u32::from(ivr.is_finished());
    }
    // The generator must actually reach the interesting parts, or the test proves nothing.
    eprintln!("{runs_with_provision} runs provisioned {by_method:?}, {runs_finished} finished");
    for m in ["None", "Pin", "AdminCode"] {
        assert!(
            by_method.get(m).copied().unwrap_or(0) >= 5,
            "{m}: {by_method:?}"
        );
    }
    assert!(
        runs_with_provision >= 100,
        "only {runs_with_provision} runs provisioned"
    );
    assert!(runs_finished >= 1000, "only {runs_finished} runs finished");
}

// ---------------------------------------------------------------------------- languages

use crate::langpack::Readback;

fn langs(tags: &[&str]) -> LanguageOptions {
    LanguageOptions {
        languages: tags
            .iter()
            .map(|t| Language::new(*t, Readback::Digits))
            .collect(),
        preset: None,
    }
}

fn ivr_with(mode: AuthMode, options: LanguageOptions) -> Ivr {
    Ivr::with_languages(settings(mode), options).expect("valid language list")
}

fn c(a: Action) -> CallAction {
    CallAction::Ivr(a)
}

/// The menu queue for `tags`: each option's prompt and key digit in its own language.
fn menu(tags: &[&str]) -> CallAction {
    CallAction::PlayMixed(
        tags.iter()
            .enumerate()
            .flat_map(|(i, t)| {
                [
                    (t.to_string(), p::LANG_SELECT),
                    (t.to_string(), p::DIGITS[i + 1]),
                ]
            })
            .collect(),
    )
}

fn set(tag: &str) -> CallAction {
    CallAction::SetLanguage(tag.into())
}

fn welcome() -> CallAction {
    c(play(&[p::WELCOME, p::ENTER_ID]))
}

const THREE: [&str; 3] = ["en-US", "fr-FR", "de-DE"];

#[test]
fn menu_offers_each_language_in_its_own_language_then_uses_the_choice() {
    let mut ivr = ivr_with(AuthMode::NonSecure, langs(&THREE));
    assert_eq!(ivr.handle_call(Event::Start), vec![menu(&THREE)]);
    assert_eq!(ivr.state_name(), "language_menu");
    assert_eq!(ivr.language(), None);
    assert_eq!(
        ivr.handle_call(Event::PlaybackFinished),
        vec![c(start_first())]
    );
    // Key 2 after the menu has played: French, then the dialogue starts (in French).
    assert_eq!(
        ivr.handle_call(Event::Digit('2')),
        vec![c(Action::CancelTimer), set("fr-FR"), welcome()]
    );
    assert_eq!(ivr.language(), Some("fr-FR"));
    assert_eq!(ivr.state_name(), "collect_id");
    // From here on it is the ordinary dialogue, without further language actions.
    assert_eq!(
        ivr.handle_call(Event::PlaybackFinished),
        vec![c(start_first())]
    );
    assert_eq!(ivr.handle_call(Event::Digit('4')), vec![c(start_inter())]);
    assert_eq!(
        ivr.handle_call(Event::Digit('#')),
        vec![
            c(Action::CancelTimer),
            c(Action::LookupUser { digits: "4".into() })
        ]
    );
    assert_eq!(ivr.attempts(), 0);
}

#[test]
fn menu_key_barges_in() {
    let mut ivr = ivr_with(AuthMode::NonSecure, langs(&THREE));
    ivr.handle_call(Event::Start);
    assert_eq!(
        ivr.handle_call(Event::Digit('3')),
        vec![c(Action::StopPlayback), set("de-DE"), welcome()]
    );
    // The interrupted menu reports nothing; the welcome's end starts the ID timer.
    assert_eq!(
        ivr.handle_call(Event::PlaybackFinished),
        vec![c(start_first())]
    );
}

#[test]
fn invalid_menu_key_replays_the_menu_and_is_bounded() {
    let mut ivr = ivr_with(AuthMode::NonSecure, langs(&THREE));
    ivr.handle_call(Event::Start);
    // 4 is not offered (3 languages); A-D are ignored altogether.
    assert!(ivr.handle_call(Event::Digit('A')).is_empty());
    assert_eq!(
        ivr.handle_call(Event::Digit('4')),
        vec![c(Action::StopPlayback), menu(&THREE)]
    );
    ivr.handle_call(Event::PlaybackFinished);
    assert_eq!(
        ivr.handle_call(Event::Digit('0')),
        vec![c(Action::CancelTimer), menu(&THREE)]
    );
    assert_eq!(ivr.state_name(), "language_menu");
    // The third wrong key (max_attempts = 3) takes the first language instead of looping.
    assert_eq!(
        ivr.handle_call(Event::Digit('#')),
        vec![c(Action::StopPlayback), set("en-US"), welcome()]
    );
    // Menu keys are not failed provisioning attempts.
    assert_eq!(ivr.attempts(), 0);
    for key in ['*', '9'] {
        let mut ivr = ivr_with(AuthMode::NonSecure, langs(&THREE));
        ivr.handle_call(Event::Start);
        assert_eq!(
            ivr.handle_call(Event::Digit(key)),
            vec![c(Action::StopPlayback), menu(&THREE)],
            "{key}"
        );
    }
}

#[test]
fn menu_timeout_takes_the_first_language() {
    let mut ivr = ivr_with(AuthMode::NonSecure, langs(&THREE));
    ivr.handle_call(Event::Start);
    // A timeout before the timer was armed (the menu still playing) is stale: ignored.
    assert!(ivr.handle_call(Event::Timeout).is_empty());
    ivr.handle_call(Event::PlaybackFinished);
    assert_eq!(
        ivr.handle_call(Event::Timeout),
        vec![set("en-US"), welcome()]
    );
    assert_eq!(ivr.language(), Some("en-US"));
    assert_eq!(ivr.attempts(), 0);
}

#[test]
fn preset_language_skips_the_menu() {
    for (preset, expected) in [
        ("fr-FR", "fr-FR"),
        ("FR_fr", "fr-FR"),
        ("de", "de-DE"),
        ("de-AT", "de-DE"),
    ] {
        let mut options = langs(&THREE);
        options.preset = Some(preset.into());
        let mut ivr = ivr_with(AuthMode::NonSecure, options);
        assert_eq!(
            ivr.handle_call(Event::Start),
            vec![set(expected), welcome()],
            "{preset}"
        );
        assert_eq!(ivr.language(), Some(expected));
    }
    // An exact match wins over an earlier same-language pack.
    let mut options = langs(&["fr-CA", "fr-FR"]);
    options.preset = Some("fr-FR".into());
    let mut ivr = ivr_with(AuthMode::NonSecure, options);
    assert_eq!(ivr.handle_call(Event::Start), vec![set("fr-FR"), welcome()]);
    // A locale that is not offered does not skip the menu.
    for preset in ["it-IT", "", "  "] {
        let mut options = langs(&THREE);
        options.preset = Some(preset.into());
        let mut ivr = ivr_with(AuthMode::NonSecure, options);
        assert_eq!(
            ivr.handle_call(Event::Start),
            vec![menu(&THREE)],
            "{preset:?}"
        );
    }
}

#[test]
fn one_language_has_no_menu() {
    let mut ivr = ivr_with(AuthMode::NonSecure, langs(&["es-ES"]));
    assert_eq!(ivr.handle_call(Event::Start), vec![set("es-ES"), welcome()]);
    // The single-language interface sees just the dialogue.
    let mut ivr = ivr_with(AuthMode::NonSecure, langs(&["es-ES"]));
    assert_eq!(
        ivr.handle(Event::Start),
        vec![play(&[p::WELCOME, p::ENTER_ID])]
    );
    // And a plain Ivr::new never emits language actions.
    let mut ivr = Ivr::new(settings(AuthMode::NonSecure));
    assert_eq!(ivr.handle_call(Event::Start), vec![welcome()]);
    assert_eq!(ivr.language(), None);
}

#[test]
fn single_language_interface_flattens_the_menu() {
    let mut ivr = ivr_with(AuthMode::NonSecure, langs(&["en-US", "fr-FR"]));
    assert_eq!(
        ivr.handle(Event::Start),
        vec![play(&[
            p::LANG_SELECT,
            p::DIGITS[1],
            p::LANG_SELECT,
            p::DIGITS[2]
        ])]
    );
    assert_eq!(
        ivr.handle(Event::Digit('2')),
        vec![Action::StopPlayback, play(&[p::WELCOME, p::ENTER_ID])]
    );
    assert_eq!(ivr.language(), Some("fr-FR"));
}

#[test]
fn nine_languages_at_most_no_duplicates() {
    let nine: Vec<String> = (0..9).map(|i| format!("l{i}")).collect();
    let tags: Vec<&str> = nine.iter().map(String::as_str).collect();
    let mut ivr = ivr_with(AuthMode::NonSecure, langs(&tags));
    assert_eq!(ivr.handle_call(Event::Start), vec![menu(&tags)]);
    assert_eq!(
        ivr.handle_call(Event::Digit('9')),
        vec![c(Action::StopPlayback), set("l8"), welcome()]
    );
    let mut ten = tags.clone();
    ten.push("l9");
    let err = |o| Ivr::with_languages(settings(AuthMode::NonSecure), o).unwrap_err();
    assert_eq!(err(langs(&ten)), LanguageListError::TooMany(10));
    assert_eq!(err(langs(&[])), LanguageListError::Empty);
    assert_eq!(
        err(langs(&["en-US", "EN-us"])),
        LanguageListError::Duplicate("EN-us".into())
    );
    assert_eq!(err(langs(&["en-US", " "])), LanguageListError::EmptyTag);
}

#[test]
fn hang_up_during_the_menu() {
    let mut ivr = ivr_with(AuthMode::NonSecure, langs(&THREE));
    ivr.handle_call(Event::Start);
    assert!(ivr.handle_call(Event::HangUp).is_empty());
    assert!(ivr.is_finished());
    assert_eq!(ivr.outcome(), Some(Outcome::HungUp));
    assert!(ivr.handle_call(Event::Digit('1')).is_empty());
}

#[test]
fn extension_is_read_back_in_the_chosen_packs_style() {
    let options = LanguageOptions {
        languages: vec![
            Language::new("en-US", Readback::Digits),
            Language::new("fr-FR", Readback::Pairs),
        ],
        preset: None,
    };
    for (key, confirm, success) in [
        (
            '1',
            vec!["digit_1", "digit_0", "digit_4", "digit_2"],
            vec!["digit_1", "digit_0", "digit_4", "digit_2"],
        ),
        (
            '2',
            vec!["number_10", "number_42"],
            vec!["number_10", "number_42"],
        ),
    ] {
        let mut ivr = ivr_with(AuthMode::NonSecure, options.clone());
        ivr.handle_call(Event::Start);
        ivr.handle_call(Event::Digit(key));
        ivr.handle_call(Event::PlaybackFinished);
        ivr.handle_call(Event::Digit('4'));
        ivr.handle_call(Event::Digit('#'));
        let mut queue = vec![p::CONFIRM_EXTENSION];
        queue.extend(confirm);
        queue.push(p::CONFIRM_CHOICE);
        assert_eq!(
            ivr.handle_call(Event::UserLookup(Some(alice()))),
            vec![c(play(&queue))],
            "{key}"
        );
        ivr.handle_call(Event::PlaybackFinished);
        ivr.handle_call(Event::Digit('1'));
        let mut queue = vec![p::SUCCESS];
        queue.extend(success);
        queue.push(p::SUCCESS_RESTART);
        assert_eq!(
            ivr.handle_call(Event::ProvisionResult(Ok(()))),
            vec![c(play(&queue))],
            "{key}"
        );
    }
}

#[test]
fn call_action_debug_keeps_secrets_redacted() {
    let a = CallAction::Ivr(Action::Authenticate {
        user_id: "alice".into(),
        digits: "7391".into(),
    });
    let s = format!("{a:?}");
    assert!(!s.contains("7391") && s.contains("redacted"), "{s}");
    assert_eq!(format!("{:?}", set("fr-FR")), "SetLanguage(\"fr-FR\")");
}
