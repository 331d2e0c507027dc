//! Turning a recording file into 8 kHz mono PCM: decode with symphonia (WAV PCM / mu-law /
//! A-law, FLAC, Ogg Vorbis, MP3; any rate; stereo is downmixed), resample with rubato's
//! anti-aliased sinc resampler, normalise the loudness ([`super::level`]), and quantise to `i16`.
//!
//! This runs once per prompt at start-up, never per call, so it favours quality over speed.

use std::fs::File;
use std::path::Path;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, FixedAsync, Resampler, SincInterpolationParameters, WindowFunction};
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use super::LangpackError;

/// The telephony sample rate every prompt is converted to.
pub const TARGET_RATE: u32 = 8000;

/// Lowest source rate accepted: below this a recording cannot carry intelligible telephone
/// speech (and is almost certainly a mislabelled file).
pub const MIN_SOURCE_RATE: u32 = 4000;
/// Highest source rate accepted (covers every real recording format).
pub const MAX_SOURCE_RATE: u32 = 384_000;
/// The longest recording accepted. Prompts are seconds long; the cap keeps a wrong or hostile
/// file (hours of audio) from exhausting memory at start-up.
pub const MAX_DURATION_SECS: u32 = 120;
/// Recordings with more channels than this are rejected rather than guessed at.
pub const MAX_CHANNELS: usize = 8;

/// A decoded recording: mono samples in [-1.0, 1.0] at the file's own rate.
#[derive(Debug, Clone)]
pub struct DecodedAudio {
    /// Sample rate of `samples`, in Hz.
    pub sample_rate: u32,
    /// Channel count of the source (before the downmix).
    pub source_channels: usize,
    /// Mono samples (the mean of the source channels).
    pub samples: Vec<f32>,
}

/// Decodes a recording file. The file extension is only a hint; the content decides.
pub fn decode_file(path: &Path) -> Result<DecodedAudio, LangpackError> {
    // A decoder bug triggered by a malformed file must become an error naming that file, not
    // abort start-up with a backtrace into symphonia. Nothing is shared with the closure except
    // the path, so no broken state can leak out of an unwind.
    let result = std::panic::catch_unwind(|| decode_file_inner(path))
        .unwrap_or_else(|_| Err("the decoder failed on it (malformed file)".into()));
    result.map_err(|reason| LangpackError::Audio {
        path: path.to_path_buf(),
        reason,
    })
}

fn decode_file_inner(path: &Path) -> Result<DecodedAudio, String> {
    let file = File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| format!("not a recognised audio file ({e})"))?;

    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| "it has no audio track".to_string())?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| "its audio track has no codec parameters".to_string())?;
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(|e| format!("unsupported audio codec ({e})"))?;

    let mut rate: Option<u32> = None;
    let mut channels = 0usize;
    let mut mono: Vec<f32> = Vec::new();
    let mut interleaved: Vec<f32> = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // A chained Ogg stream (a second logical stream after the first); a prompt is one
            // recording, so stopping would silently drop audio.
            Err(SymphoniaError::ResetRequired) => {
                return Err("it contains chained streams; export a single stream".into())
            }
            // Symphonia 0.6 signals a clean end with `Ok(None)`; running out of bytes inside a
            // packet means the file was cut short, and a cut-off prompt must not ship.
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err("it is truncated (the file ends inside the audio data)".into())
            }
            Err(e) => return Err(format!("cannot read it ({e})")),
        };
        if packet.track_id != track_id {
            continue;
        }
        // A prompt must play exactly as recorded: a corrupt packet fails the load instead of
        // being skipped and turning into a gap.
        let buf = decoder
            .decode(&packet)
            .map_err(|e| format!("decoding failed ({e})"))?;
        if buf.frames() == 0 {
            continue;
        }
        let spec = buf.spec();
        let this_rate = spec.rate();
        match rate {
            None => {
                if !(MIN_SOURCE_RATE..=MAX_SOURCE_RATE).contains(&this_rate) {
                    return Err(format!(
                        "its sample rate {this_rate} Hz is outside {MIN_SOURCE_RATE}..{MAX_SOURCE_RATE} Hz"
                    ));
                }
                rate = Some(this_rate);
            }
            Some(r) if r != this_rate => {
                return Err(format!(
                    "its sample rate changes mid-stream ({r} Hz to {this_rate} Hz)"
                ))
            }
            Some(_) => {}
        }
        let planes = buf.num_planes();
        if planes == 0 || planes > MAX_CHANNELS {
            return Err(format!("it has {planes} channels; use mono or stereo"));
        }
        if channels != 0 && channels != planes {
            return Err("its channel count changes mid-stream".into());
        }
        channels = planes;
        let max_frames = (MAX_DURATION_SECS as usize).saturating_mul(this_rate as usize);
        if mono.len().saturating_add(buf.frames()) > max_frames {
            return Err(format!(
                "it is longer than {MAX_DURATION_SECS} s; prompts are short"
            ));
        }
        buf.copy_to_vec_interleaved(&mut interleaved);
        downmix_into(&interleaved, planes, &mut mono);
    }
    let sample_rate = rate.ok_or_else(|| "it contains no audio".to_string())?;
    if mono.is_empty() {
        return Err("it contains no audio".into());
    }
    Ok(DecodedAudio {
        sample_rate,
        source_channels: channels,
        samples: mono,
    })
}

/// Appends the per-frame mean of `channels` interleaved channels to `out`. Averaging (rather
/// than summing) cannot clip; a stereo file with one silent side comes out 6 dB quieter, which
/// is acceptable for prompts that should be recorded mono anyway.
fn downmix_into(interleaved: &[f32], channels: usize, out: &mut Vec<f32>) {
    if channels <= 1 {
        out.extend_from_slice(interleaved);
        return;
    }
    let scale = 1.0 / channels as f32;
    out.extend(
        interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() * scale),
    );
}

/// Resamples mono audio from `rate` to [`TARGET_RATE`] with a band-limited (anti-aliased) sinc
/// resampler; the output is aligned with the input (the filter delay is removed). Audio already
/// at 8 kHz is returned unchanged.
pub fn resample_to_8k(samples: &[f32], rate: u32) -> Result<Vec<f32>, String> {
    if rate == TARGET_RATE {
        return Ok(samples.to_vec());
    }
    if !(MIN_SOURCE_RATE..=MAX_SOURCE_RATE).contains(&rate) {
        return Err(format!("cannot resample from {rate} Hz"));
    }
    if samples.is_empty() {
        return Ok(Vec::new());
    }
    let ratio = f64::from(TARGET_RATE) / f64::from(rate);
    // 256 taps with a Blackman-Harris window and rubato's automatic cutoff put the passband edge
    // near 0.95 x 4 kHz and stop-band rejection far beyond what 16-bit PCM or G.711 can show, so
    // energy above 4 kHz (fricatives, a 6 kHz test tone) cannot fold back into the voice band.
    let params = SincInterpolationParameters::new(256, WindowFunction::BlackmanHarris2);
    let mut resampler = Async::<f32>::new_sinc(ratio, 1.0, &params, 1024, 1, FixedAsync::Input)
        .map_err(|e| format!("cannot build the resampler ({e})"))?;
    let input = InterleavedSlice::new(samples, 1, samples.len())
        .map_err(|e| format!("bad resampler input ({e})"))?;
    let output = resampler
        .process_all(&input, samples.len(), None)
        .map_err(|e| format!("resampling failed ({e})"))?;
    Ok(output.take_data())
}

/// Quantises [-1.0, 1.0] samples to `i16` with rounding and clipping (the resampler can
/// overshoot full scale slightly on a full-scale source).
pub fn to_i16(samples: &[f32]) -> Vec<i16> {
    samples
        .iter()
        .map(|&s| {
            let v = (s * 32768.0).round();
            // NaN casts to 0; the clamp keeps overshoot from wrapping.
            v.clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

/// Decodes `path` and returns its audio as 8 kHz mono `i16` PCM, loudness-normalised
/// ([`super::level::normalise`]): exactly what the IVR plays.
pub fn load_pcm_8k(path: &Path) -> Result<Vec<i16>, LangpackError> {
    Ok(load_pcm_8k_with_level(path)?.0)
}

/// [`load_pcm_8k`], also saying what normalisation did.
pub fn load_pcm_8k_with_level(
    path: &Path,
) -> Result<(Vec<i16>, super::level::Normalised), LangpackError> {
    let decoded = decode_file(path)?;
    let mut resampled =
        resample_to_8k(&decoded.samples, decoded.sample_rate).map_err(|reason| {
            LangpackError::Audio {
                path: path.to_path_buf(),
                reason,
            }
        })?;
    // After resampling, so the level and the peak are those of the 8 kHz signal that is sent
    // (the resampler removes energy above 4 kHz and can move peaks), and before quantising.
    let level = super::level::normalise(&mut resampled);
    Ok((to_i16(&resampled), level))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, secs: f64, amp: f32) -> Vec<f32> {
        let n = (f64::from(rate) * secs) as usize;
        (0..n)
            .map(|i| {
                amp * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin() as f32
            })
            .collect()
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64).sqrt()
    }

    #[test]
    fn downmix_averages_frames() {
        let mut out = vec![];
        downmix_into(&[1.0, 0.0, 0.5, 0.5, -1.0, -0.5], 2, &mut out);
        assert_eq!(out, [0.5, 0.5, -0.75]);
        let mut mono = vec![];
        downmix_into(&[0.1, 0.2], 1, &mut mono);
        assert_eq!(mono, [0.1, 0.2]);
    }

    #[test]
    fn to_i16_rounds_and_clips() {
        assert_eq!(
            to_i16(&[0.0, 1.0, -1.0, 2.0, -2.0, 0.5, f32::NAN]),
            [0, 32767, -32768, 32767, -32768, 16384, 0]
        );
    }

    #[test]
    fn eight_khz_is_passed_through() {
        let x = tone(1000.0, 8000, 0.1, 0.5);
        assert_eq!(resample_to_8k(&x, 8000).unwrap(), x);
    }

    #[test]
    fn resampling_keeps_length_and_level() {
        let x = tone(440.0, 44_100, 1.0, 0.5);
        let y = resample_to_8k(&x, 44_100).unwrap();
        assert!((y.len() as i64 - 8000).abs() <= 1, "len {}", y.len());
        // Steady-state level (skip the edges where the filter sees the clip boundary).
        let level = rms(&y[400..7600]);
        assert!((level - 0.5 / 2f64.sqrt()).abs() < 0.01, "rms {level}");
    }

    #[test]
    fn rejects_absurd_rates() {
        assert!(resample_to_8k(&[0.0; 10], 100).is_err());
        assert!(resample_to_8k(&[0.0; 10], 10_000_000).is_err());
    }
}
