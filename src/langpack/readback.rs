//! How a pack reads an extension back ([`Readback`], the `extension_readback` field of
//! `pack.toml`) and the prompt sequence that results ([`Readback::sequence`]).
//!
//! * `"digits"` (the default): one digit prompt per digit, `digit_0` .. `digit_9` (catalogue
//!   prompts every pack has). 1042 → "one, zero, four, two".
//! * `"pairs"`: the digits grouped in twos, as French and other languages say phone numbers.
//!   An odd-length extension starts with its first digit alone; a pair starting with 0 is read
//!   as two digits; any other pair is one number prompt `number_10` .. `number_99`, which a pairs
//!   pack must supply on top of the catalogue (the loader and the checker require them).
//!   1042 → "ten, forty-two"; 12345 → "one, twenty-three, forty-five"; 1205 → "twelve, zero,
//!   five".
//!
//! Characters other than ASCII digits are skipped in both modes (there is no recording for
//! them).

use serde::Deserialize;

/// The extra prompts a `"pairs"` pack supplies: `number_10` .. `number_99`, by value - 10.
pub const NUMBERS: [&str; 90] = [
    "number_10",
    "number_11",
    "number_12",
    "number_13",
    "number_14",
    "number_15",
    "number_16",
    "number_17",
    "number_18",
    "number_19",
    "number_20",
    "number_21",
    "number_22",
    "number_23",
    "number_24",
    "number_25",
    "number_26",
    "number_27",
    "number_28",
    "number_29",
    "number_30",
    "number_31",
    "number_32",
    "number_33",
    "number_34",
    "number_35",
    "number_36",
    "number_37",
    "number_38",
    "number_39",
    "number_40",
    "number_41",
    "number_42",
    "number_43",
    "number_44",
    "number_45",
    "number_46",
    "number_47",
    "number_48",
    "number_49",
    "number_50",
    "number_51",
    "number_52",
    "number_53",
    "number_54",
    "number_55",
    "number_56",
    "number_57",
    "number_58",
    "number_59",
    "number_60",
    "number_61",
    "number_62",
    "number_63",
    "number_64",
    "number_65",
    "number_66",
    "number_67",
    "number_68",
    "number_69",
    "number_70",
    "number_71",
    "number_72",
    "number_73",
    "number_74",
    "number_75",
    "number_76",
    "number_77",
    "number_78",
    "number_79",
    "number_80",
    "number_81",
    "number_82",
    "number_83",
    "number_84",
    "number_85",
    "number_86",
    "number_87",
    "number_88",
    "number_89",
    "number_90",
    "number_91",
    "number_92",
    "number_93",
    "number_94",
    "number_95",
    "number_96",
    "number_97",
    "number_98",
    "number_99",
];

/// `digit_0` .. `digit_9`, by value (the same IDs as the catalogue's digit prompts).
const DIGITS: [&str; 10] = [
    "digit_0", "digit_1", "digit_2", "digit_3", "digit_4", "digit_5", "digit_6", "digit_7",
    "digit_8", "digit_9",
];

/// How a pack reads extensions back (`extension_readback` in `pack.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Readback {
    /// Digit by digit (the default).
    #[default]
    Digits,
    /// In pairs of digits, with `number_10` .. `number_99`.
    Pairs,
}

impl Readback {
    /// The prompt IDs this mode needs beyond the catalogue (empty for `Digits`).
    pub fn extra_prompts(self) -> &'static [&'static str] {
        match self {
            Readback::Digits => &[],
            Readback::Pairs => &NUMBERS,
        }
    }

    /// The English reference text of an extra prompt (`number_42` → "forty-two"), for the
    /// checker and the transcript; `None` for an ID that is not one.
    pub fn extra_text(id: &str) -> Option<String> {
        let n: u32 = id.strip_prefix("number_")?.parse().ok()?;
        (10..=99).contains(&n).then(|| english_number(n))
    }

    /// The prompt IDs reading `extension` aloud in this mode (see the module documentation).
    pub fn sequence(self, extension: &str) -> Vec<&'static str> {
        let digits: Vec<usize> = extension
            .chars()
            .filter_map(|c| c.is_ascii_digit().then(|| c.to_digit(10)).flatten())
            .filter_map(|d| usize::try_from(d).ok())
            .collect();
        let digit = |d: usize| DIGITS.get(d).copied();
        match self {
            Readback::Digits => digits.iter().filter_map(|&d| digit(d)).collect(),
            Readback::Pairs => {
                let mut out = Vec::with_capacity(digits.len());
                let (head, rest) = digits.split_at(digits.len() % 2);
                out.extend(head.iter().filter_map(|&d| digit(d)));
                for pair in rest.chunks_exact(2) {
                    let (tens, units) = (pair[0], pair[1]);
                    if tens == 0 {
                        out.extend(digit(0));
                        out.extend(digit(units));
                    } else {
                        out.extend(NUMBERS.get(tens * 10 + units - 10).copied());
                    }
                }
                out
            }
        }
    }
}

fn english_number(n: u32) -> String {
    const SMALL: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 10] = [
        "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    let n = n as usize;
    match (n / 10, n % 10) {
        _ if n < 20 => SMALL.get(n).copied().unwrap_or_default().to_string(),
        (t, 0) => TENS.get(t).copied().unwrap_or_default().to_string(),
        (t, u) => format!(
            "{}-{}",
            TENS.get(t).copied().unwrap_or_default(),
            SMALL.get(u).copied().unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_mode() {
        assert_eq!(
            Readback::Digits.sequence("+1 (04)-2x"),
            ["digit_1", "digit_0", "digit_4", "digit_2"]
        );
        assert!(Readback::Digits.sequence("").is_empty());
        assert!(Readback::Digits.sequence("\u{0663}").is_empty());
        assert!(Readback::Digits.extra_prompts().is_empty());
    }

    #[test]
    fn pairs_mode() {
        assert_eq!(Readback::Pairs.sequence("1042"), ["number_10", "number_42"]);
        assert_eq!(
            Readback::Pairs.sequence("12345"),
            ["digit_1", "number_23", "number_45"]
        );
        assert_eq!(
            Readback::Pairs.sequence("1205"),
            ["number_12", "digit_0", "digit_5"]
        );
        assert_eq!(Readback::Pairs.sequence("7"), ["digit_7"]);
        assert_eq!(
            Readback::Pairs.sequence("99-00"),
            ["number_99", "digit_0", "digit_0"]
        );
        assert!(Readback::Pairs.sequence("").is_empty());
        // Every ID it can produce is an extra prompt or a catalogue digit.
        for n in 0..10_000u32 {
            for id in Readback::Pairs.sequence(&n.to_string()) {
                assert!(NUMBERS.contains(&id) || DIGITS.contains(&id), "{id}");
            }
        }
    }

    #[test]
    fn numbers_table_and_texts() {
        for (i, id) in NUMBERS.iter().enumerate() {
            assert_eq!(*id, format!("number_{}", i + 10));
        }
        assert_eq!(Readback::extra_text("number_10").as_deref(), Some("ten"));
        assert_eq!(
            Readback::extra_text("number_17").as_deref(),
            Some("seventeen")
        );
        assert_eq!(Readback::extra_text("number_40").as_deref(), Some("forty"));
        assert_eq!(
            Readback::extra_text("number_99").as_deref(),
            Some("ninety-nine")
        );
        assert_eq!(Readback::extra_text("number_9"), None);
        assert_eq!(Readback::extra_text("digit_1"), None);
    }

    #[test]
    fn manifest_values() {
        #[derive(Deserialize)]
        struct M {
            #[serde(default)]
            r: Readback,
        }
        let m: M = toml::from_str("r = \"pairs\"").unwrap();
        assert_eq!(m.r, Readback::Pairs);
        let m: M = toml::from_str("").unwrap();
        assert_eq!(m.r, Readback::Digits);
        assert!(toml::from_str::<M>("r = \"triples\"").is_err());
    }
}
