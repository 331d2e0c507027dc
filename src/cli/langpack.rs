//! `selfprov langpack ...`: the language-pack author's tools: `check` (is the pack fit to ship),
//! `build --tts espeak-ng` (synthesise it from `texts.toml`), `list` (installed packs) and
//! `info` (one pack in detail), `render` and `play` (hear a prompt sequence exactly as the IVR
//! sends it). The logic lives in [`crate::langpack::check`], [`crate::langpack::build`] and
//! [`render_wire`]; this mostly parses arguments and prints.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};

use super::ConfigArg;
use crate::config::Config;
use crate::ivr::prompts as ivr_prompts;
use crate::langpack::build::{self, BuildOptions, Tts};
use crate::langpack::check::{self, Limits, PackReport, Severity};
use crate::langpack::{Catalogue, PromptSet};
use crate::media::g711::Codec;
use crate::media::playout::Playout;

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
    /// Render every prompt of DIR/texts.toml with a TTS engine into DIR/ID.wav, then check.
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
    /// Write a prompt sequence to a WAV file exactly as the IVR sends it: loaded like the IVR
    /// loads it (resampled, loudness-normalised, G.711-encoded), packetised, decoded back to
    /// 8 kHz 16-bit mono.
    Render {
        #[command(flatten)]
        what: RenderArgs,
        /// The WAV file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Play a prompt sequence as the IVR sends it (what `render` writes), through `aplay`
    /// (alsa-utils) or `play` (sox).
    Play {
        #[command(flatten)]
        what: RenderArgs,
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

/// What `render` and `play` send: a prompt sequence of one pack.
#[derive(Args, Debug, Clone)]
pub struct RenderArgs {
    /// The pack folder, e.g. lang-packs/fr-FR.
    pub dir: PathBuf,
    /// Prompt IDs to play in order, e.g. `welcome enter_id`.
    pub prompts: Vec<String>,
    /// Append the pack's read-back of this extension (digits or pairs, as its pack.toml says).
    /// Without prompt IDs: the IVR's whole confirmation, confirm_extension + read-back +
    /// confirm_choice.
    #[arg(long)]
    pub extension: Option<String>,
    /// The G.711 law the IVR would send.
    #[arg(long, value_enum, default_value = "pcmu")]
    pub codec: CodecArg,
    /// Packet time in ms (the last packet is padded with codec silence, as on the wire).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(10..=60))]
    pub ptime: u32,
    #[command(flatten)]
    pub catalogue: CatalogueArg,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum CodecArg {
    Pcmu,
    Pcma,
}

impl From<CodecArg> for Codec {
    fn from(c: CodecArg) -> Codec {
        match c {
            CodecArg::Pcmu => Codec::Pcmu,
            CodecArg::Pcma => Codec::Pcma,
        }
    }
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
            // A bar redrawn in place on a terminal; one line per prompt otherwise (CI logs).
            use std::io::{IsTerminal, Write};
            let tty = std::io::stderr().is_terminal();
            let rendered = build::build_pack(&dir, &catalogue, &opts, |i, n, id| {
                if tty {
                    eprint!("\r{}", progress_bar(i, n, id));
                    let _ = std::io::stderr().flush();
                } else {
                    println!("[{:>3}/{n}] {id}", i + 1);
                }
            });
            if tty {
                eprintln!();
            }
            let rendered = rendered
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
        LangpackCommand::Render { what, out } => {
            let (ids, pcm) = render(&what)?;
            let wav = wav_bytes(&pcm)?;
            std::fs::write(&out, wav).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "{}: {} ({:.2} s, {} via {} ms packets)",
                out.display(),
                ids.join(" "),
                pcm.len() as f64 / 8000.0,
                Codec::from(what.codec).name(),
                what.ptime
            );
            Ok(())
        }
        LangpackCommand::Play { what } => {
            let (ids, pcm) = render(&what)?;
            eprintln!(
                "playing {} ({:.2} s)",
                ids.join(" "),
                pcm.len() as f64 / 8000.0
            );
            play_wav(&wav_bytes(&pcm)?)
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

/// The prompt IDs `args` asks for, with the pack's read-back of `--extension`.
fn render_ids(set: &PromptSet, args: &RenderArgs) -> anyhow::Result<Vec<String>> {
    let mut ids = args.prompts.clone();
    if let Some(ext) = &args.extension {
        let readback = set.readback_sequence(ext);
        if readback.is_empty() {
            bail!("--extension {ext:?} has no digit to read back");
        }
        let whole = ids.is_empty();
        if whole {
            ids.push(ivr_prompts::CONFIRM_EXTENSION.to_string());
        }
        ids.extend(readback.iter().map(|s| s.to_string()));
        if whole {
            ids.push(ivr_prompts::CONFIRM_CHOICE.to_string());
        }
    }
    if ids.is_empty() {
        bail!("nothing to render: give prompt IDs (e.g. welcome) and/or --extension");
    }
    Ok(ids)
}

/// What the IVR sends for the prompt queue `ids` of `set`, decoded back to 8 kHz PCM: the
/// prompts' G.711 encoding (made once at load) cut into `ptime` packets by the call's own
/// [`Playout`], the last packet padded with codec silence, then decoded. Fails naming a prompt
/// the set does not have.
pub fn render_wire(
    set: &PromptSet,
    ids: &[impl AsRef<str>],
    codec: Codec,
    ptime_ms: u32,
) -> anyhow::Result<Vec<i16>> {
    let mut prompts = Vec::with_capacity(ids.len());
    for id in ids {
        let id = id.as_ref();
        prompts.push(set.get(id).with_context(|| {
            format!(
                "pack {} has no prompt {id:?} (see `selfprov langpack check {}`)",
                set.language,
                set.dir().display()
            )
        })?);
    }
    let total: usize = prompts.iter().map(|p| p.pcm.len()).sum();
    let mut playout = Playout::new(codec, ptime_ms);
    playout.play(prompts);
    let mut payload = Vec::new();
    let mut wire = Vec::with_capacity(total + playout.samples_per_packet());
    // Bounded: one packet more than the queue holds is always enough to finish it.
    for _ in 0..=total / playout.samples_per_packet().max(1) + 1 {
        let frame = playout.next_payload(&mut payload);
        wire.extend_from_slice(frame.payload);
        if frame.queue_finished {
            break;
        }
    }
    let mut pcm = Vec::with_capacity(wire.len());
    codec.decode(&wire, &mut pcm);
    Ok(pcm)
}

/// Loads the pack as the IVR does (an incomplete pack is fine: only the prompts asked for must
/// be there) and renders the sequence.
fn render(args: &RenderArgs) -> anyhow::Result<(Vec<String>, Vec<i16>)> {
    let catalogue = load_catalogue(&args.catalogue)?;
    if !args.dir.is_dir() {
        bail!(
            "{} is not a folder; give the pack folder, e.g. lang-packs/fr-FR",
            args.dir.display()
        );
    }
    let (set, _missing) = PromptSet::load_incomplete(&args.dir, &catalogue)
        .with_context(|| format!("loading {}", args.dir.display()))?;
    let ids = render_ids(&set, args)?;
    let pcm = render_wire(&set, &ids, args.codec.into(), args.ptime)?;
    Ok((ids, pcm))
}

fn wav_bytes(pcm: &[i16]) -> anyhow::Result<Vec<u8>> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cursor = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut cursor, spec)?;
    for &s in pcm {
        w.write_sample(s)?;
    }
    w.finalize()?;
    Ok(cursor.into_inner())
}

/// The first of `names` found as an executable file on `PATH`.
fn find_on_path(names: &[&str]) -> Option<(String, PathBuf)> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some((name.to_string(), candidate));
            }
        }
    }
    None
}

/// Pipes a WAV to `aplay` or sox's `play` on stdin.
fn play_wav(wav: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let Some((name, path)) = find_on_path(&["aplay", "play"]) else {
        bail!(
            "no audio player found: install alsa-utils (aplay) or sox (play), e.g. \
             `apt-get install alsa-utils`, or use `selfprov langpack render ... --out file.wav`"
        );
    };
    let mut cmd = Command::new(&path);
    match name.as_str() {
        "aplay" => cmd.args(["-q", "-"]),
        _ => cmd.args(["-q", "-t", "wav", "-"]),
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", path.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(wav)
            .with_context(|| format!("sending the audio to {name}"))?;
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
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

/// `[##########..........]  12/32  enter_pin` (fixed width, so a redraw covers the last one).
fn progress_bar(i: usize, n: usize, id: &str) -> String {
    const WIDTH: usize = 30;
    let done = (i * WIDTH).checked_div(n).unwrap_or(WIDTH);
    format!(
        "[{}{}] {:>4}/{n}  {:<24}",
        "#".repeat(done),
        ".".repeat(WIDTH - done),
        i + 1,
        id.chars().take(24).collect::<String>()
    )
}

#[cfg(test)]
mod progress_tests {
    #[test]
    fn bar_has_a_fixed_width_and_fills() {
        let a = super::progress_bar(0, 32, "welcome");
        let b = super::progress_bar(31, 32, "a_very_long_prompt_identifier_indeed");
        assert_eq!(a.chars().count(), b.chars().count());
        assert!(a.starts_with("[......"), "{a}");
        assert!(b.starts_with("[#############################."), "{b}");
        assert!(b.contains("32/32"), "{b}");
    }
}
