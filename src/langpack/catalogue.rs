//! The prompt catalogue (`prompts/catalogue.toml`): every prompt ID the IVR can play, in
//! catalogue order, with its English reference text.
//!
//! IDs double as file names inside a pack (`<dir>/<id>.wav`), so they are restricted to
//! `[a-z0-9_]`: that keeps them portable and means an ID can never escape the pack folder.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::{LangpackError, Readback};

/// The longest prompt ID accepted (it becomes a file name).
const MAX_ID_LEN: usize = 64;

#[derive(Deserialize)]
struct CatalogueFile {
    #[serde(default)]
    prompt: Vec<CatalogueEntry>,
}

#[derive(Deserialize)]
struct CatalogueEntry {
    id: String,
    text: String,
}

/// The loaded prompt catalogue: prompt IDs in file order, each with its reference text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalogue {
    entries: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl Catalogue {
    /// Reads and validates the catalogue at `path`.
    pub fn load(path: &Path) -> Result<Catalogue, LangpackError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| LangpackError::CatalogueRead {
                path: path.to_path_buf(),
                source,
            })?;
        Catalogue::parse(&text).map_err(|reason| LangpackError::CatalogueInvalid {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses catalogue TOML; the error is a human-readable reason (no path).
    pub fn parse(toml_text: &str) -> Result<Catalogue, String> {
        let file: CatalogueFile = toml::from_str(toml_text).map_err(|e| {
            format!("not a valid catalogue ([[prompt]] tables with id and text): {e}")
        })?;
        if file.prompt.is_empty() {
            return Err("it lists no prompts; add [[prompt]] tables with `id` and `text`".into());
        }
        let mut entries = Vec::with_capacity(file.prompt.len());
        let mut index = HashMap::with_capacity(file.prompt.len());
        for entry in file.prompt {
            validate_id(&entry.id)?;
            if entry.text.trim().is_empty() {
                return Err(format!("prompt {:?} has an empty text", entry.id));
            }
            if index.insert(entry.id.clone(), entries.len()).is_some() {
                return Err(format!("prompt ID {:?} appears more than once", entry.id));
            }
            entries.push((entry.id, entry.text));
        }
        Ok(Catalogue { entries, index })
    }

    /// All prompt IDs, in catalogue order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(id, _)| id.as_str())
    }

    /// The English reference text of a prompt.
    pub fn text(&self, id: &str) -> Option<&str> {
        let i = *self.index.get(id)?;
        self.entries.get(i).map(|(_, text)| text.as_str())
    }

    /// Whether the catalogue defines this prompt ID.
    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// Number of prompts.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the catalogue has no prompts (never true for a loaded catalogue).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The prompts a pack reading extensions with `readback` must hold: this catalogue plus the
    /// mode's extra prompts ([`Readback::extra_prompts`], e.g. `number_10` .. `number_99` for
    /// pairs) with their English texts, after the catalogue's own. IDs already in the catalogue
    /// are not repeated.
    pub fn for_readback(&self, readback: Readback) -> Catalogue {
        let mut out = self.clone();
        for id in readback.extra_prompts() {
            if out.contains(id) {
                continue;
            }
            let text = Readback::extra_text(id).unwrap_or_else(|| id.to_string());
            out.index.insert(id.to_string(), out.entries.len());
            out.entries.push((id.to_string(), text));
        }
        out
    }
}

fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(format!(
            "prompt ID {id:?} must be 1 to {MAX_ID_LEN} characters long"
        ));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(format!(
            "prompt ID {id:?} may only contain a-z, 0-9 and '_' (it is used as a file name)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_in_order_with_texts() {
        let c = Catalogue::parse(
            "[[prompt]]\nid = \"b\"\ntext = \"Bee.\"\n[[prompt]]\nid = \"a_1\"\ntext = \"A.\"\n",
        )
        .unwrap();
        assert_eq!(c.ids().collect::<Vec<_>>(), ["b", "a_1"]);
        assert_eq!(c.text("a_1"), Some("A."));
        assert_eq!(c.text("zz"), None);
        assert_eq!(c.len(), 2);
        assert!(c.contains("b"));
    }

    #[test]
    fn rejects_duplicates_bad_ids_and_empty() {
        let dup = "[[prompt]]\nid = \"a\"\ntext = \"x\"\n[[prompt]]\nid = \"a\"\ntext = \"y\"\n";
        assert!(Catalogue::parse(dup)
            .unwrap_err()
            .contains("more than once"));
        for bad in ["../etc", "A", "a b", "", "a.wav"] {
            let t = format!("[[prompt]]\nid = {bad:?}\ntext = \"x\"\n");
            assert!(Catalogue::parse(&t).is_err(), "{bad:?} accepted");
        }
        assert!(Catalogue::parse("").unwrap_err().contains("no prompts"));
        assert!(Catalogue::parse("[[prompt]]\nid = \"a\"\ntext = \" \"\n").is_err());
        assert!(Catalogue::parse("[[prompt]]\nid = \"a\"\n").is_err());
    }

    #[test]
    fn shipped_catalogue_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/catalogue.toml");
        let c = Catalogue::load(&path).unwrap();
        for d in 0..10 {
            assert!(c.contains(&format!("digit_{d}")), "digit_{d} missing");
        }
        assert!(c.contains("welcome"));
    }

    #[test]
    fn readback_extras_follow_the_catalogue() {
        let c = Catalogue::parse("[[prompt]]\nid = \"a\"\ntext = \"A.\"\n").unwrap();
        assert_eq!(c.for_readback(Readback::Digits), c);
        let p = c.for_readback(Readback::Pairs);
        assert_eq!(p.len(), 91);
        assert_eq!(p.ids().next(), Some("a"));
        assert_eq!(p.text("number_42"), Some("forty-two"));
        assert_eq!(p.ids().last(), Some("number_99"));
    }

    #[test]
    fn missing_file_names_path() {
        let err = Catalogue::load(Path::new("/nonexistent/cat.toml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cat.toml"), "{err}");
    }
}
