//! Patterns of the universal device and line templates: text with `#Tag#` placeholders (Cisco
//! UCM's syntax) filled in from the user and the phone when a phone is provisioned, e.g. the
//! default device description `#FirstName# #LastName# (#Product# #Protocol#)`.
//!
//! A pattern is checked when its template is saved ([`validate_pattern`]): an unknown tag is an
//! admin's typo, and must be refused then, not discovered when a phone is provisioned.
//! [`expand`] never fails.
//!
//! Syntax: `#` + one or more ASCII letters + `#` is a tag. Any other `#` is literal text, so
//! `Line #1` or `##` need no escaping; `#firstname#` (wrong case) is refused as an unknown tag.

/// The tags a pattern may use, as written between the `#`s.
pub const TAGS: &[&str] = &[
    "FirstName",
    "LastName",
    "UserID",
    "Extension",
    "Product",
    "Protocol",
];

/// Longest pattern accepted (and longest expansion produced).
pub const MAX_PATTERN_LEN: usize = 256;

/// What the tags expand to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatternValues<'a> {
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub user_id: &'a str,
    /// The user's primary extension (the line's number).
    pub extension: &'a str,
    /// The phone's model, e.g. `CP-8851`.
    pub product: &'a str,
    /// `SIP` (or `SCCP`).
    pub protocol: &'a str,
}

impl PatternValues<'_> {
    fn value(&self, tag: &str) -> Option<&str> {
        Some(match tag {
            "FirstName" => self.first_name,
            "LastName" => self.last_name,
            "UserID" => self.user_id,
            "Extension" => self.extension,
            "Product" => self.product,
            "Protocol" => self.protocol,
            _ => return None,
        })
    }
}

/// Why a pattern was refused. Names the template field, so an API error can point at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("{field}: unknown tag #{tag}# (known tags: {known})", known = known_tags())]
    UnknownTag { field: &'static str, tag: String },
    #[error("{field}: longer than {MAX_PATTERN_LEN} characters")]
    TooLong { field: &'static str },
    #[error("{field}: must not contain control characters")]
    ControlCharacter { field: &'static str },
}

impl PatternError {
    /// The template field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            PatternError::UnknownTag { field, .. }
            | PatternError::TooLong { field }
            | PatternError::ControlCharacter { field } => field,
        }
    }
}

fn known_tags() -> String {
    TAGS.iter()
        .map(|t| format!("#{t}#"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One piece of a parsed pattern.
enum Piece<'a> {
    Text(&'a str),
    Tag(&'a str),
}

/// Splits a pattern into literal text and tag names (without checking the names).
fn pieces(pattern: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = pattern;
    loop {
        let Some(start) = rest.find('#') else {
            if !rest.is_empty() {
                out.push(Piece::Text(rest));
            }
            return out;
        };
        let after = rest.get(start + 1..).unwrap_or("");
        let name_len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        let is_tag = name_len > 0 && after.as_bytes().get(name_len) == Some(&b'#');
        if is_tag {
            if start > 0 {
                out.push(Piece::Text(rest.get(..start).unwrap_or("")));
            }
            out.push(Piece::Tag(after.get(..name_len).unwrap_or("")));
            rest = after.get(name_len + 1..).unwrap_or("");
        } else {
            // A literal '#': keep it with the text before it and go on after it.
            out.push(Piece::Text(rest.get(..=start).unwrap_or("")));
            rest = after;
        }
    }
}

/// Checks a pattern for template field `field`: every `#Tag#` must be one of [`TAGS`].
pub fn validate_pattern(field: &'static str, pattern: &str) -> Result<(), PatternError> {
    if pattern.chars().count() > MAX_PATTERN_LEN {
        return Err(PatternError::TooLong { field });
    }
    if pattern.chars().any(char::is_control) {
        return Err(PatternError::ControlCharacter { field });
    }
    for piece in pieces(pattern) {
        if let Piece::Tag(tag) = piece {
            if !TAGS.contains(&tag) {
                return Err(PatternError::UnknownTag {
                    field,
                    tag: tag.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Fills in a pattern. Unknown tags (only possible for a pattern that skipped validation) are
/// kept as written. Values lose control characters; runs of spaces left by empty values are
/// collapsed and the ends trimmed (`#FirstName# #LastName#` for a user without a first name is
/// `Doe`, not ` Doe`). The result is cut to [`MAX_PATTERN_LEN`] characters.
pub fn expand(pattern: &str, values: &PatternValues<'_>) -> String {
    let mut out = String::with_capacity(pattern.len() + 32);
    for piece in pieces(pattern) {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Tag(tag) => match values.value(tag) {
                Some(v) => out.extend(v.chars().filter(|c| !c.is_control())),
                None => {
                    out.push('#');
                    out.push_str(tag);
                    out.push('#');
                }
            },
        }
    }
    let mut collapsed = String::with_capacity(out.len());
    let mut last_space = false;
    for c in out.trim().chars() {
        if c == ' ' {
            if !last_space {
                collapsed.push(c);
            }
            last_space = true;
        } else {
            collapsed.push(c);
            last_space = false;
        }
    }
    collapsed.chars().take(MAX_PATTERN_LEN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jane() -> PatternValues<'static> {
        PatternValues {
            first_name: "Jane",
            last_name: "Doe",
            user_id: "jdoe",
            extension: "1001",
            product: "CP-8851",
            protocol: "SIP",
        }
    }

    #[test]
    fn cucm_default_description_expands() {
        let p = "#FirstName# #LastName# (#Product# #Protocol#)";
        validate_pattern("description", p).unwrap();
        assert_eq!(expand(p, &jane()), "Jane Doe (CP-8851 SIP)");
        assert_eq!(expand("#Extension# - #FirstName#", &jane()), "1001 - Jane");
        assert_eq!(expand("#UserID#@#Extension#", &jane()), "jdoe@1001");
    }

    #[test]
    fn every_tag_is_known_and_expands() {
        for tag in TAGS {
            let p = format!("<#{tag}#>");
            validate_pattern("f", &p).unwrap();
            let e = expand(&p, &jane());
            assert!(!e.contains('#'), "{tag} -> {e}");
            assert_ne!(e, "<>", "{tag} expanded to nothing");
        }
    }

    #[test]
    fn unknown_tag_is_refused_naming_field_and_tag() {
        let e = validate_pattern("caller_id_name_pattern", "#FirstName# #Surname#").unwrap_err();
        assert_eq!(
            e,
            PatternError::UnknownTag {
                field: "caller_id_name_pattern",
                tag: "Surname".into()
            }
        );
        let msg = e.to_string();
        assert!(msg.contains("caller_id_name_pattern"), "{msg}");
        assert!(msg.contains("#Surname#"), "{msg}");
        assert!(msg.contains("#FirstName#"), "lists the known tags: {msg}");
        assert_eq!(e.field(), "caller_id_name_pattern");
        // Tags are case-sensitive, as in CUCM.
        assert!(validate_pattern("f", "#firstname#").is_err());
    }

    #[test]
    fn literal_hashes_need_no_escaping() {
        for p in [
            "Line #1",
            "##",
            "#",
            "a # b",
            "#1#",
            "# FirstName#",
            "#First Name#",
        ] {
            validate_pattern("f", p).unwrap_or_else(|e| panic!("{p}: {e}"));
            assert_eq!(expand(p, &jane()), p.trim(), "{p}");
        }
        assert_eq!(expand("##FirstName##", &jane()), "#Jane#");
        assert_eq!(expand("#FirstName#LastName#", &jane()), "JaneLastName#");
    }

    #[test]
    fn empty_values_leave_no_stray_spaces() {
        let v = PatternValues {
            first_name: "",
            ..jane()
        };
        assert_eq!(expand("#FirstName# #LastName#", &v), "Doe");
        assert_eq!(expand("#Extension# - #FirstName#", &v), "1001 -");
        assert_eq!(expand("", &v), "");
    }

    #[test]
    fn values_cannot_inject_control_characters_or_grow_unbounded() {
        let long = "x".repeat(1000);
        let v = PatternValues {
            first_name: "Ja\r\nne",
            last_name: &long,
            ..jane()
        };
        assert_eq!(expand("#FirstName#", &v), "Jane");
        assert_eq!(expand("#LastName#", &v).chars().count(), MAX_PATTERN_LEN);
        assert_eq!(
            validate_pattern("f", &"a".repeat(MAX_PATTERN_LEN + 1)),
            Err(PatternError::TooLong { field: "f" })
        );
        assert_eq!(
            validate_pattern("f", "a\nb"),
            Err(PatternError::ControlCharacter { field: "f" })
        );
        // Multi-byte text around tags.
        let v = PatternValues {
            first_name: "Zoë",
            last_name: "Ünal",
            ..jane()
        };
        assert_eq!(expand("«#FirstName#·#LastName#»", &v), "«Zoë·Ünal»");
    }
}
