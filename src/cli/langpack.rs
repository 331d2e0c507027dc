//! `selfprov langpack ...`: the language-pack author's tools: `check` (is the pack fit to ship),
//! `build --tts espeak-ng` (synthesise it from `texts.toml`), `list` (installed packs) and
//! `info` (one pack in detail). The logic lives in [`crate::langpack::check`] and
//! [`crate::langpack::build`]; this only parses arguments and prints.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};

use super::ConfigArg;
use crate::config::Config;
use crate::langpack::build::{self, BuildOptions, Tts};
use crate::langpack::check::{self, Limits, PackReport, Severity};
use crate::langpack::Catalogue;

/// Where the catalogue comes from: `--catalogue`, else the configuration's
/// `langpacks.catalogue` (the shipped `prompts/catalogue.toml` by default).
#[derive(Args, Debug, Clone)]
pub struct CatalogueArg {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The prompt catalogue to check against (default: langpacks.catalogue of the config).
    #[arg(long)]
    pub catalogue: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum LangpackCommand {
    /// Check a pack folder: every catalogue prompt present, no unknown files, each file decodes,
    /// duration, clipping, silence and loudness. Exits non-zero on errors (not on warnings).
    Check {
        /// The pack folder, e.g. lang-packs/fr-FR.
        dir: PathBuf,
        /// Print a machine-readable JSON report instead of one line per problem.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        catalogue: CatalogueArg,
    },
    /// Render every prompt of DIR/texts.toml with a TTS engine into DIR/<id>.wav, then check.
    Build {
        /// The TTS engine.
        #[arg(long, value_enum)]
        tts: TtsArg,
        /// The pack folder (holding pack.toml and texts.toml).
        dir: PathBuf,
        /// Speaking rate in words per minute.
        #[arg(long, default_value_t = build::DEFAULT_SPEED_WPM)]
        speed: u32,
        /// Voice to use instead of pack.toml's `voice` (e.g. "fr").
        #[arg(long)]
        voice: Option<String>,
        #[command(flatten)]
        catalogue: CatalogueArg,
    },
    /// List the installed packs with their version and completeness.
    List {
        /// The packs folder (default: langpacks.dir of the config).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        catalogue: CatalogueArg,
    },
    /// Show a pack: manifest, completeness, and each prompt's duration and level.
    Info {
        /// The pack folder.
        dir: PathBuf,
        /// Print the full JSON report.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        catalogue: CatalogueArg,
    },
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum TtsArg {
    #[value(name = "espeak-ng")]
    EspeakNg,
}

fn config(arg: &ConfigArg) -> anyhow::Result<Config> {
    Ok(Config::load(arg.config.as_deref())?)
}

fn load_catalogue(arg: &CatalogueArg) -> anyhow::Result<Catalogue> {
    let path = match &arg.catalogue {
        Some(p) => p.clone(),
        None => config(&arg.config)?.langpacks.catalogue,
    };
    Ok(Catalogue::load(&path)?)
}

fn check_dir(dir: &Path, catalogue: &Catalogue) -> anyhow::Result<PackReport> {
    if !dir.is_dir() {
        bail!(
            "{} is not a folder; give the pack folder, e.g. lang-packs/fr-FR",
            dir.display()
        );
    }
    check::check_pack(dir, catalogue, &Limits::default()).map_err(anyhow::Error::msg)
}

/// Runs a `langpack` subcommand.
pub fn run(cmd: LangpackCommand) -> anyhow::Result<()> {
    match cmd {
        LangpackCommand::Check {
            dir,
            json,
            catalogue,
        } => {
            let catalogue = load_catalogue(&catalogue)?;
            let report = check_dir(&dir, &catalogue)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_problems(&report);
            }
            verdict(&report)
        }
        LangpackCommand::Build {
            tts,
            dir,
            speed,
            voice,
            catalogue,
        } => {
            let catalogue = load_catalogue(&catalogue)?;
            if !(80..=450).contains(&speed) {
                bail!("--speed {speed} is outside 80..450 words per minute");
            }
            let opts = BuildOptions {
                tts: match tts {
                    TtsArg::EspeakNg => Tts::EspeakNg,
                },
                speed_wpm: speed,
                voice,
            };
            let rendered = build::build_pack(&dir, &catalogue, &opts, |i, n, id| {
                println!("[{:>3}/{n}] {id}", i + 1);
            })
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("building {}", dir.display()))?;
            println!("rendered {} prompts into {}", rendered.len(), dir.display());
            let report = check_dir(&dir, &catalogue)?;
            print_table(&report);
            print_problems(&report);
            verdict(&report)
        }
        LangpackCommand::List {
            dir,
            json,
            catalogue,
        } => {
            let packs_dir = match dir {
                Some(d) => d,
                None => config(&catalogue.config)?.langpacks.dir,
            };
            let catalogue = load_catalogue(&catalogue)?;
            list(&packs_dir, &catalogue, json)
        }
        LangpackCommand::Info {
            dir,
            json,
            catalogue,
        } => {
            let catalogue = load_catalogue(&catalogue)?;
            let report = check_dir(&dir, &catalogue)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(());
            }
            println!("pack      {}", dir.display());
            println!(
                "tag       {}",
                report.tag.as_deref().unwrap_or("? (pack.toml invalid)")
            );
            println!("name      {}", report.name.as_deref().unwrap_or("?"));
            println!("version   {}", report.version.as_deref().unwrap_or("?"));
            println!("voice     {}", report.voice.as_deref().unwrap_or("-"));
            println!(
                "complete  {}/{} prompts ({} errors, {} warnings)",
                report.complete, report.catalogue, report.errors, report.warnings
            );
            print_table(&report);
            print_problems(&report);
            Ok(())
        }
    }
}

fn verdict(report: &PackReport) -> anyhow::Result<()> {
    if report.ok {
        eprintln!(
            "{}: OK ({}/{} prompts, {} warnings)",
            report.dir.display(),
            report.complete,
            report.catalogue,
            report.warnings
        );
        Ok(())
    } else {
        bail!(
            "{}: {} errors, {} warnings",
            report.dir.display(),
            report.errors,
            report.warnings
        )
    }
}

fn print_problems(report: &PackReport) {
    for p in &report.problems {
        let sev = match p.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        println!("{sev}: {}: {}", p.file, p.message);
    }
}

fn db(v: Option<f64>) -> String {
    v.map_or_else(|| "-inf".into(), |d| format!("{d:.1}"))
}

fn print_table(report: &PackReport) {
    println!(
        "{:<26} {:>7} {:>8} {:>8} {:>9} {:>6} {:>6}",
        "prompt", "dur(s)", "peak dB", "RMS dB", "active dB", "lead", "trail"
    );
    for p in &report.prompts {
        match &p.stats {
            Some(s) => println!(
                "{:<26} {:>7.2} {:>8} {:>8} {:>9} {:>6.2} {:>6.2}",
                p.id,
                s.duration_s,
                db(s.peak_dbfs),
                db(s.rms_dbfs),
                db(s.active_dbfs),
                s.leading_silence_s,
                s.trailing_silence_s
            ),
            None => println!("{:<26} (cannot be decoded: {})", p.id, p.file),
        }
    }
}

fn list(packs_dir: &Path, catalogue: &Catalogue, json: bool) -> anyhow::Result<()> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(packs_dir)
        .with_context(|| format!("cannot list the packs folder {}", packs_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.join(crate::langpack::MANIFEST_FILE).is_file())
        .collect();
    dirs.sort();
    let mut rows = Vec::new();
    for dir in &dirs {
        rows.push(check_dir(dir, catalogue)?);
    }
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "dir": r.dir, "tag": r.tag, "name": r.name, "version": r.version,
                    "voice": r.voice, "complete": r.complete, "catalogue": r.catalogue,
                    "errors": r.errors, "warnings": r.warnings, "ok": r.ok,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!(
            "no packs in {} (a pack is a folder with a pack.toml)",
            packs_dir.display()
        );
        return Ok(());
    }
    println!(
        "{:<10} {:<22} {:<9} {:>9} {:>6} {:>8}",
        "tag", "name", "version", "complete", "errors", "warnings"
    );
    for r in &rows {
        println!(
            "{:<10} {:<22} {:<9} {:>9} {:>6} {:>8}",
            r.tag.as_deref().unwrap_or("?"),
            r.name.as_deref().unwrap_or("?"),
            r.version.as_deref().unwrap_or("?"),
            format!("{}/{}", r.complete, r.catalogue),
            r.errors,
            r.warnings
        );
    }
    Ok(())
}
