//! The prompt IDs the IVR dialogue plays, as constants.
//!
//! Every ID here must exist in `prompts/catalogue.toml` (the language packs supply one recording
//! per catalogue ID); a unit test below checks that, so a renamed or missing catalogue entry fails
//! the build's tests rather than a live call.

pub const WELCOME: &str = "welcome";
pub const ENTER_ID: &str = "enter_id";
pub const ENTER_PIN: &str = "enter_pin";
pub const ENTER_PIN_OR_ADMIN_CODE: &str = "enter_pin_or_admin_code";
pub const INVALID_ID: &str = "invalid_id";
pub const INVALID_PIN: &str = "invalid_pin";
pub const NO_INPUT: &str = "no_input";
pub const TRY_AGAIN: &str = "try_again";
pub const SELFPROV_DISABLED: &str = "selfprov_disabled";
pub const CONFIRM_EXTENSION: &str = "confirm_extension";
pub const CONFIRM_CHOICE: &str = "confirm_choice";
pub const SUCCESS: &str = "success";
pub const SUCCESS_RESTART: &str = "success_restart";
pub const CANCELLED: &str = "cancelled";
pub const TOO_MANY_ATTEMPTS: &str = "too_many_attempts";
pub const PROVISIONING_FAILED: &str = "provisioning_failed";
pub const ALREADY_BOUND: &str = "already_bound";
pub const DEVICE_LIMIT: &str = "device_limit";
pub const GOODBYE: &str = "goodbye";
/// The language menu's option: "For English, press" in each pack's own language, followed in
/// the menu by that language's digit prompt for the key (`digit_1` .. `digit_9`).
pub const LANG_SELECT: &str = "lang_select";

/// `digit_0` .. `digit_9`, indexed by the digit's value.
pub const DIGITS: [&str; 10] = [
    "digit_0", "digit_1", "digit_2", "digit_3", "digit_4", "digit_5", "digit_6", "digit_7",
    "digit_8", "digit_9",
];

/// Every prompt ID the dialogue can emit (for the catalogue test and for callers that want to
/// check a language pack covers the dialogue before taking calls).
pub const ALL: &[&str] = &[
    WELCOME,
    ENTER_ID,
    ENTER_PIN,
    ENTER_PIN_OR_ADMIN_CODE,
    INVALID_ID,
    INVALID_PIN,
    NO_INPUT,
    TRY_AGAIN,
    SELFPROV_DISABLED,
    CONFIRM_EXTENSION,
    CONFIRM_CHOICE,
    SUCCESS,
    SUCCESS_RESTART,
    CANCELLED,
    TOO_MANY_ATTEMPTS,
    PROVISIONING_FAILED,
    ALREADY_BOUND,
    DEVICE_LIMIT,
    GOODBYE,
    LANG_SELECT,
    DIGITS[0],
    DIGITS[1],
    DIGITS[2],
    DIGITS[3],
    DIGITS[4],
    DIGITS[5],
    DIGITS[6],
    DIGITS[7],
    DIGITS[8],
    DIGITS[9],
];

/// The prompt reading `c` aloud, for an ASCII digit; `None` for anything else.
pub fn digit(c: char) -> Option<&'static str> {
    let value = c.to_digit(10)?;
    DIGITS.get(usize::try_from(value).ok()?).copied()
}

/// The prompts reading `number` digit by digit. Characters that are not ASCII digits (`+`, `-`,
/// spaces, letters, non-ASCII digits) are skipped: a recording exists only for 0-9.
pub fn read_digits(number: &str) -> impl Iterator<Item = &'static str> + '_ {
    number
        .chars()
        .filter(char::is_ascii_digit)
        .filter_map(digit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[derive(serde::Deserialize)]
    struct Catalogue {
        prompt: Vec<Entry>,
    }

    #[derive(serde::Deserialize)]
    struct Entry {
        id: String,
        #[allow(dead_code)]
        text: String,
    }

    fn catalogue_ids() -> HashSet<String> {
        let text = include_str!("../../prompts/catalogue.toml");
        let cat: Catalogue = toml::from_str(text).expect("prompts/catalogue.toml parses");
        cat.prompt.into_iter().map(|e| e.id).collect()
    }

    #[test]
    fn every_prompt_id_is_in_the_catalogue() {
        let ids = catalogue_ids();
        assert!(
            ids.len() >= ALL.len(),
            "catalogue looks truncated: {} ids",
            ids.len()
        );
        let missing: Vec<&str> = ALL
            .iter()
            .copied()
            .filter(|id| !ids.contains(*id))
            .collect();
        assert!(
            missing.is_empty(),
            "prompt IDs missing from prompts/catalogue.toml: {missing:?}"
        );
    }

    #[test]
    fn all_is_unique_and_digits_map_by_value() {
        let set: HashSet<&str> = ALL.iter().copied().collect();
        assert_eq!(set.len(), ALL.len());
        for (i, c) in ('0'..='9').enumerate() {
            assert_eq!(digit(c), Some(DIGITS[i]));
            assert_eq!(DIGITS[i], format!("digit_{i}"));
        }
        assert_eq!(digit('#'), None);
        assert_eq!(digit('a'), None);
        // A non-ASCII decimal digit (Arabic-Indic three) has no recording.
        assert_eq!(read_digits("\u{0663}").count(), 0);
    }

    #[test]
    fn read_digits_skips_non_digits() {
        let got: Vec<&str> = read_digits("+1 (20)-3x").collect();
        assert_eq!(got, vec!["digit_1", "digit_2", "digit_0", "digit_3"]);
    }
}
