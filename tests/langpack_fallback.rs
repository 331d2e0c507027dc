//! Loading several language packs together (`PromptSets::load`): a prompt one pack lacks comes
//! from the highest-priority complete pack, with a warning; a prompt no pack has is an error; the
//! single-pack loader still refuses an incomplete pack; `extension_readback = "pairs"` packs
//! must hold their number prompts, and the read-back sequence only names prompts the set has.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use selfprov::langpack::{Catalogue, LangpackError, LoadWarning, PromptSet, PromptSets, Readback};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A 0.3 s tone burst (between short pauses) at `freq` Hz, 8 kHz 16-bit mono.
fn write_burst(path: &Path, freq: f64) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..4000 {
        let on = (400..2800).contains(&i);
        let v = if on {
            0.3 * (2.0 * std::f64::consts::PI * freq * f64::from(i) / 8000.0).sin()
        } else {
            0.0
        };
        w.write_sample((v * 32767.0).round() as i16).unwrap();
    }
    w.finalize().unwrap();
}

fn catalogue() -> Catalogue {
    Catalogue::parse(
        "[[prompt]]\nid = \"hello\"\ntext = \"Hello.\"\n\
         [[prompt]]\nid = \"bye\"\ntext = \"Bye.\"\n\
         [[prompt]]\nid = \"digit_1\"\ntext = \"one\"\n",
    )
    .unwrap()
}

/// Makes `<root>/<tag>/` with a manifest (plus `extra` manifest lines) and a recording for each
/// of `ids`, each language at its own tone frequency so the source of a prompt is audible.
fn pack(root: &Path, tag: &str, ids: &[&str], freq: f64, extra: &str) -> PathBuf {
    let dir = root.join(tag);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("pack.toml"),
        format!("tag = \"{tag}\"\nname = \"{tag}\"\nversion = \"1\"\n{extra}"),
    )
    .unwrap();
    for id in ids {
        write_burst(&dir.join(format!("{id}.wav")), freq);
    }
    dir
}

const ALL: [&str; 3] = ["hello", "bye", "digit_1"];

#[test]
fn missing_prompt_comes_from_the_highest_priority_complete_pack() {
    let tmp = tempfile::tempdir().unwrap();
    pack(tmp.path(), "aa", &ALL, 400.0, "");
    pack(tmp.path(), "bb", &["hello", "digit_1"], 500.0, "");
    pack(tmp.path(), "cc", &ALL, 600.0, "");
    // bb first: it is the default language, yet incomplete; cc outranks aa.
    let (sets, warnings) = PromptSets::load(tmp.path(), &catalogue(), &["bb", "cc", "aa"]).unwrap();
    assert_eq!(sets.tags().collect::<Vec<_>>(), ["bb", "cc", "aa"]);
    assert_eq!(sets.default_set().language, "bb");
    assert_eq!(
        warnings,
        [LoadWarning::Fallback {
            language: "bb".into(),
            prompt: "bye".into(),
            from: "cc".into(),
        }]
    );
    let line = warnings[0].to_string();
    assert!(
        line.contains("bb") && line.contains("\"bye\"") && line.contains("cc"),
        "{line}"
    );
    let bb = sets.get("BB").expect("case-insensitive");
    // The very recording of cc is shared, not a copy, and bb's own prompts stay its own.
    assert!(Arc::ptr_eq(
        &bb.get("bye").unwrap(),
        &sets.prompt("cc", "bye").unwrap()
    ));
    assert!(!Arc::ptr_eq(
        &bb.get("hello").unwrap(),
        &sets.prompt("cc", "hello").unwrap()
    ));
    assert_eq!(bb.fallbacks(), [("bye".to_string(), "cc".to_string())]);
    assert!(sets.get("cc").unwrap().fallbacks().is_empty());
    for set in sets.iter() {
        assert_eq!(set.len(), 3, "{}", set.language);
    }
    assert!(sets.get("dd").is_none());
}

#[test]
fn complete_packs_are_preferred_over_higher_priority_incomplete_ones() {
    let tmp = tempfile::tempdir().unwrap();
    // aa lacks bye, bb lacks hello, cc (lowest priority) is complete.
    pack(tmp.path(), "aa", &["hello", "digit_1"], 400.0, "");
    pack(tmp.path(), "bb", &["bye", "digit_1"], 500.0, "");
    pack(tmp.path(), "cc", &ALL, 600.0, "");
    let (sets, warnings) = PromptSets::load(tmp.path(), &catalogue(), &["aa", "bb", "cc"]).unwrap();
    assert_eq!(warnings.len(), 2);
    let cc_bye = sets.prompt("cc", "bye").unwrap();
    let cc_hello = sets.prompt("cc", "hello").unwrap();
    assert!(Arc::ptr_eq(&sets.prompt("aa", "bye").unwrap(), &cc_bye));
    assert!(Arc::ptr_eq(&sets.prompt("bb", "hello").unwrap(), &cc_hello));

    // Without a complete pack, the highest-priority pack that has its own recording gives it.
    std::fs::remove_dir_all(tmp.path().join("cc")).unwrap();
    let (sets, warnings) = PromptSets::load(tmp.path(), &catalogue(), &["aa", "bb"]).unwrap();
    assert_eq!(
        warnings,
        [
            LoadWarning::Fallback {
                language: "aa".into(),
                prompt: "bye".into(),
                from: "bb".into()
            },
            LoadWarning::Fallback {
                language: "bb".into(),
                prompt: "hello".into(),
                from: "aa".into()
            },
        ]
    );
    assert!(Arc::ptr_eq(
        &sets.prompt("aa", "bye").unwrap(),
        &sets.prompt("bb", "bye").unwrap()
    ));
}

#[test]
fn prompt_missing_everywhere_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    pack(tmp.path(), "aa", &["hello", "digit_1"], 400.0, "");
    pack(tmp.path(), "bb", &["hello", "digit_1"], 500.0, "");
    let err = PromptSets::load(tmp.path(), &catalogue(), &["aa", "bb"]).unwrap_err();
    match &err {
        LangpackError::PromptMissingEverywhere { id, languages, .. } => {
            assert_eq!(id, "bye");
            assert_eq!(languages, &["aa", "bb"]);
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("bye.wav") && msg.contains("aa, bb"), "{msg}");
}

#[test]
fn single_pack_api_still_refuses_an_incomplete_pack() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = pack(tmp.path(), "aa", &["hello", "digit_1"], 400.0, "");
    let err = PromptSet::load(&dir, &catalogue()).unwrap_err();
    assert!(
        matches!(err, LangpackError::PromptMissing { ref id, .. } if id == "bye"),
        "{err:?}"
    );
    // One complete language through PromptSets: no warning.
    pack(tmp.path(), "cc", &ALL, 600.0, "");
    let (sets, warnings) = PromptSets::load(tmp.path(), &catalogue(), &["cc"]).unwrap();
    assert!(warnings.is_empty());
    assert_eq!(sets.len(), 1);
    // An incomplete single language has nothing to fall back to.
    assert!(PromptSets::load(tmp.path(), &catalogue(), &["aa"]).is_err());
}

#[test]
fn bad_language_lists() {
    let tmp = tempfile::tempdir().unwrap();
    pack(tmp.path(), "aa", &ALL, 400.0, "");
    let empty: [&str; 0] = [];
    assert!(matches!(
        PromptSets::load(tmp.path(), &catalogue(), &empty),
        Err(LangpackError::LanguageList { .. })
    ));
    assert!(matches!(
        PromptSets::load(tmp.path(), &catalogue(), &["aa", "AA"]),
        Err(LangpackError::LanguageList { .. })
    ));
    assert!(matches!(
        PromptSets::load(tmp.path(), &catalogue(), &["aa", "../aa"]),
        Err(LangpackError::InvalidTag { .. })
    ));
    assert!(matches!(
        PromptSets::load(tmp.path(), &catalogue(), &["aa", "zz"]),
        Err(LangpackError::PackMissing { .. })
    ));
}

#[test]
fn pairs_pack_needs_its_number_prompts() {
    let tmp = tempfile::tempdir().unwrap();
    let readback = "extension_readback = \"pairs\"\n";
    let dir = pack(tmp.path(), "pp", &ALL, 400.0, readback);
    // Without number_10 .. number_99 it is refused, naming the first one, even with another
    // language to "fall back" to: numbers of another language would be nonsense mid-sentence.
    pack(tmp.path(), "aa", &ALL, 500.0, "");
    let err = PromptSets::load(tmp.path(), &catalogue(), &["aa", "pp"]).unwrap_err();
    assert!(
        matches!(err, LangpackError::PromptMissing { ref id, .. } if id == "number_10"),
        "{err:?}"
    );
    assert!(err.to_string().contains("pairs"), "{err}");
    for n in 10..100 {
        write_burst(&dir.join(format!("number_{n}.wav")), 700.0);
    }
    let (sets, warnings) = PromptSets::load(tmp.path(), &catalogue(), &["aa", "pp"]).unwrap();
    assert!(warnings.is_empty());
    let pp = sets.get("pp").unwrap();
    assert_eq!(pp.readback(), Readback::Pairs);
    assert_eq!(pp.len(), 3 + 90);
    assert_eq!(sets.get("aa").unwrap().readback(), Readback::Digits);
    assert_eq!(pp.readback_sequence("1042"), ["number_10", "number_42"]);
    assert_eq!(
        sets.get("aa").unwrap().readback_sequence("1042"),
        ["digit_1", "digit_0", "digit_4", "digit_2"]
    );
    // Every prompt of a pairs read-back is in the set (digits come from the catalogue).
    for ext in ["1", "21", "101", "99999", "1000000"] {
        for id in pp.readback_sequence(ext) {
            if id.starts_with("number_") {
                assert!(pp.get(id).is_some(), "{ext}: {id}");
            }
        }
    }
}

#[test]
fn shipped_packs_load_together_without_fallbacks() {
    let catalogue = Catalogue::load(&root().join("prompts/catalogue.toml")).unwrap();
    let tags = ["en-US", "fr-FR", "de-DE", "es-ES"];
    let (sets, warnings) = PromptSets::load(&root().join("lang-packs"), &catalogue, &tags).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(sets.tags().collect::<Vec<_>>(), tags);
    for set in sets.iter() {
        let wanted = catalogue.for_readback(set.readback());
        assert_eq!(set.len(), wanted.len(), "{}", set.language);
        for id in wanted.ids() {
            assert!(set.get(id).is_some(), "{} {id}", set.language);
        }
        assert!(set.fallbacks().is_empty());
    }
    // fr-FR reads extensions in pairs, the others digit by digit.
    let fr = sets.get("fr-FR").unwrap();
    assert_eq!(fr.readback(), Readback::Pairs);
    assert_eq!(fr.readback_sequence("2041"), ["number_20", "number_41"]);
    for tag in ["en-US", "de-DE", "es-ES"] {
        assert_eq!(sets.get(tag).unwrap().readback(), Readback::Digits, "{tag}");
    }
}

#[test]
fn checker_expects_the_number_prompts_of_a_pairs_pack() {
    use selfprov::langpack::check::{check_pack, Limits, ProblemKind};
    let tmp = tempfile::tempdir().unwrap();
    let dir = pack(
        tmp.path(),
        "pp",
        &ALL,
        400.0,
        "extension_readback = \"pairs\"\n",
    );
    for n in (10..100).filter(|&n| n != 42) {
        write_burst(&dir.join(format!("number_{n}.wav")), 700.0);
    }
    let report = check_pack(&dir, &catalogue(), &Limits::default()).unwrap();
    let missing: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::Missing)
        .map(|p| p.file.as_str())
        .collect();
    assert_eq!(missing, ["number_42.wav"]);
    assert!(!report.ok);
    // The other number prompts are expected files, not unknown ones.
    assert!(!report
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::Unknown));
    write_burst(&dir.join("number_42.wav"), 700.0);
    let report = check_pack(&dir, &catalogue(), &Limits::default()).unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.complete, 3 + 90);
    // The same recordings in a digits pack are unknown files (warnings).
    std::fs::write(
        dir.join("pack.toml"),
        "tag = \"pp\"\nname = \"pp\"\nversion = \"1\"\n",
    )
    .unwrap();
    let report = check_pack(&dir, &catalogue(), &Limits::default()).unwrap();
    assert_eq!(
        report
            .problems
            .iter()
            .filter(|p| p.kind == ProblemKind::Unknown)
            .count(),
        90
    );
}
