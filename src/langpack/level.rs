//! Loudness normalisation at load: every prompt is scaled once, when it is decoded, to one
//! active speech level, so that prompts recorded by different people, tools or engines (and the
//! prompts of different languages) play at the same loudness on the line.
//!
//! The level measured is the checker's active speech level ([`super::check::measure`]): the RMS
//! over the 10 ms frames above -45 dBFS, i.e. the loudness of the speech itself, not diluted by
//! pauses. The gain that brings it to [`TARGET_ACTIVE_DBFS`] is lowered when it would push the
//! peak above [`PEAK_CEILING_DBFS`] (a plain gain cap, not a compressor: a very peaky recording
//! ends up somewhat below the target rather than distorted), and bounded to
//! [`MAX_GAIN_DB`] so that a nearly silent file is not blown up into loud noise.

use super::audio::TARGET_RATE;
use super::check::measure;

/// The active speech level every prompt is brought to (dBFS). About -18 dBFS active level is
/// the middle of the telephony range the checker accepts (-30..-12): loud enough over G.711's
/// noise floor, with headroom for speech peaks.
pub const TARGET_ACTIVE_DBFS: f64 = -18.0;
/// No sample of a normalised prompt exceeds this (dBFS): 1 dB of headroom keeps G.711 and any
/// later filtering from clipping.
pub const PEAK_CEILING_DBFS: f64 = -1.0;
/// The largest boost applied (dB). A recording quieter than about -42 dBFS active level stays
/// below the target; the checker reports it as too quiet.
pub const MAX_GAIN_DB: f64 = 24.0;
/// The most the peak limiter may take off the loudest peak (dB). Speech recordings often have a
/// few peaks well above the rest; the limiter lets such a recording reach the target by turning
/// those peaks down briefly instead of turning the whole prompt down. Beyond this the prompt
/// stays below the target rather than sounding squashed.
pub const MAX_LIMIT_DB: f64 = 6.0;
/// Limiter attack: gain may fall by at most this per sample (1.0 → 0.5 in 2 ms at 8 kHz), and
/// starts falling ahead of the peak (the limiter sees the whole prompt, so it looks ahead).
const ATTACK_PER_SAMPLE: f32 = 0.5 / 16.0;
/// Limiter release: gain recovers by at most this per sample (0.5 → 1.0 in 50 ms).
const RELEASE_PER_SAMPLE: f32 = 0.5 / 400.0;

/// What normalisation measured and did to one prompt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalised {
    /// Active speech level before, dBFS (`None`: no active frame; the prompt is left as is).
    pub active_before_dbfs: Option<f64>,
    /// Gain applied before the peak limiter, dB (0 when nothing was done).
    pub gain_db: f64,
    /// Whether the gain was capped (by [`MAX_GAIN_DB`] or by [`MAX_LIMIT_DB`] of limiting) so
    /// the prompt stays below the target.
    pub limited: bool,
}

/// The gain (dB) that brings `active_dbfs` to [`TARGET_ACTIVE_DBFS`], capped so that the peak
/// limiter takes at most [`MAX_LIMIT_DB`] off `peak_dbfs` and the boost is at most
/// [`MAX_GAIN_DB`]; with whether it was capped.
pub fn gain_db(active_dbfs: f64, peak_dbfs: f64) -> (f64, bool) {
    let wanted = TARGET_ACTIVE_DBFS - active_dbfs;
    let allowed = max_gain_db(peak_dbfs);
    if wanted > allowed {
        (allowed, true)
    } else {
        (wanted, false)
    }
}

fn max_gain_db(peak_dbfs: f64) -> f64 {
    (PEAK_CEILING_DBFS + MAX_LIMIT_DB - peak_dbfs).min(MAX_GAIN_DB)
}

/// Scales 8 kHz mono samples in [-1, 1] in place to the target active level and limits the
/// peaks to the ceiling (see the module documentation); says what was done.
pub fn normalise(samples: &mut [f32]) -> Normalised {
    let before = measure(samples, TARGET_RATE, 1);
    let (Some(active), Some(peak)) = (before.active_dbfs, before.peak_dbfs) else {
        return Normalised {
            active_before_dbfs: before.active_dbfs,
            gain_db: 0.0,
            limited: false,
        };
    };
    let (mut total, mut limited) = gain_db(active, peak);
    let mut out = gained_and_limited(samples, total);
    // The activity gate is a fixed -45 dBFS, so a gain moves quiet frames (breaths, decays)
    // across it, and the limiter lowers peaks: both change the active level the gain was meant
    // to set. Re-measure and correct, a few rounds (it settles within 0.05 dB in one or two).
    for _ in 0..4 {
        let Some(now) = measure(&out, TARGET_RATE, 1).active_dbfs else {
            break;
        };
        let step = TARGET_ACTIVE_DBFS - now;
        if step.abs() < 0.02 || (limited && step > 0.0) {
            break;
        }
        let wanted = total + step;
        let allowed = max_gain_db(peak);
        (total, limited) = if wanted > allowed {
            (allowed, true)
        } else {
            (wanted, false)
        };
        out = gained_and_limited(samples, total);
    }
    samples.copy_from_slice(&out);
    Normalised {
        active_before_dbfs: Some(active),
        gain_db: total,
        limited,
    }
}

/// `samples` times `gain_db`, then through the peak limiter.
fn gained_and_limited(samples: &[f32], gain_db: f64) -> Vec<f32> {
    let factor = 10f64.powf(gain_db / 20.0) as f32;
    let mut out: Vec<f32> = samples.iter().map(|&s| s * factor).collect();
    limit_peaks(&mut out, 10f64.powf(PEAK_CEILING_DBFS / 20.0) as f32);
    out
}

/// A look-ahead peak limiter over a whole prompt: every sample ends at or below `ceiling`, with
/// the gain ramping down before a peak and back up after it (no hard clipping, no clicks).
pub fn limit_peaks(samples: &mut [f32], ceiling: f32) {
    // The gain each sample needs on its own.
    let mut gain: Vec<f32> = samples
        .iter()
        .map(|&s| {
            let a = s.abs();
            if a > ceiling {
                ceiling / a
            } else {
                1.0
            }
        })
        .collect();
    if gain.iter().all(|&g| g >= 1.0) {
        return;
    }
    // Release (forward) then attack (backward): each pass only lowers the gain, so every sample
    // keeps at most the gain it needs, and the changes are slew-limited.
    for i in 1..gain.len() {
        gain[i] = gain[i].min(gain[i - 1] + RELEASE_PER_SAMPLE);
    }
    for i in (0..gain.len().saturating_sub(1)).rev() {
        gain[i] = gain[i].min(gain[i + 1] + ATTACK_PER_SAMPLE);
    }
    for (s, g) in samples.iter_mut().zip(gain) {
        *s *= g;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "word": 0.3 s of a 500 Hz tone at `amp` between 0.2 s pauses, three times.
    fn speechlike(amp: f32) -> Vec<f32> {
        let mut out = Vec::new();
        for _ in 0..3 {
            out.extend(std::iter::repeat_n(0.0, 1600));
            out.extend(
                (0..2400)
                    .map(|i| amp * (2.0 * std::f32::consts::PI * 500.0 * i as f32 / 8000.0).sin()),
            );
        }
        out.extend(std::iter::repeat_n(0.0, 1600));
        out
    }

    fn active(x: &[f32]) -> f64 {
        measure(x, TARGET_RATE, 1).active_dbfs.unwrap()
    }

    #[test]
    fn quiet_and_loud_end_at_the_same_active_level() {
        let mut quiet = speechlike(0.01); // about -43 dBFS active: needs +25 dB, capped at +24
        let mut soft = speechlike(0.03); // about -33.5 dBFS
        let mut loud = speechlike(0.7); // about -6 dBFS: brought down
        let q = normalise(&mut quiet);
        let s = normalise(&mut soft);
        let l = normalise(&mut loud);
        assert!((active(&soft) - TARGET_ACTIVE_DBFS).abs() < 0.05, "{s:?}");
        assert!((active(&loud) - TARGET_ACTIVE_DBFS).abs() < 0.05, "{l:?}");
        assert!(!s.limited && !l.limited);
        assert!(l.gain_db < -11.0 && s.gain_db > 15.0);
        // Same level: the pauses are not counted, so the figure is the speech's own loudness.
        assert!((active(&soft) - active(&loud)).abs() < 0.1);
        // The very quiet one gets the largest boost allowed and is flagged as limited.
        assert!(q.limited && (q.gain_db - MAX_GAIN_DB).abs() < 1e-9, "{q:?}");
        // The pauses stay silent.
        assert!(loud[..1600].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn peaky_recording_is_limited_by_the_ceiling_and_never_clips() {
        // Quiet speech with one near-full-scale click: the full gain would clip the click.
        let mut x = speechlike(0.03);
        x[100] = 0.9;
        let n = normalise(&mut x);
        assert!(n.limited, "{n:?}");
        let peak = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let peak_db = 20.0 * f64::from(peak).log10();
        assert!((peak_db - PEAK_CEILING_DBFS).abs() < 0.01, "peak {peak_db}");
        assert!(active(&x) < TARGET_ACTIVE_DBFS);
    }

    #[test]
    fn limiter_keeps_peaks_under_the_ceiling_smoothly() {
        // Speech-like bursts with a loud spike region: the full gain is within the limiter's
        // 6 dB, so the target is reached and the spike is turned down, not clipped.
        let mut x = speechlike(0.1);
        for v in &mut x[2000..2040] {
            *v *= 4.0;
        }
        let n = normalise(&mut x);
        assert!(!n.limited, "{n:?}");
        assert!(
            (active(&x) - TARGET_ACTIVE_DBFS).abs() < 0.1,
            "{}",
            active(&x)
        );
        let ceiling = 10f32.powf(PEAK_CEILING_DBFS as f32 / 20.0);
        assert!(x.iter().all(|v| v.abs() <= ceiling * 1.0001));
        // Direct test of the limiter: no jump in gain, gain 1 far from the peak.
        let input: Vec<f32> = (0..4000)
            .map(|i| if i == 2000 { 1.0 } else { 0.5 })
            .collect();
        let mut y = input.clone();
        limit_peaks(&mut y, 0.8);
        assert!(y.iter().all(|v| *v <= 0.8 + 1e-6));
        assert!((y[2000] - 0.8).abs() < 1e-6);
        assert_eq!((y[0], y[3999]), (0.5, 0.5));
        // The gain starts falling before the peak (look-ahead) and changes gradually.
        assert!(y[1995] < 0.5 && y[2005] < 0.5);
        let gain: Vec<f32> = y.iter().zip(&input).map(|(o, i)| o / i).collect();
        for w in gain.windows(2) {
            assert!((w[0] - w[1]).abs() <= ATTACK_PER_SAMPLE + 1e-6, "{w:?}");
        }
    }

    #[test]
    fn silence_is_left_alone() {
        let mut x = vec![0.0f32; 800];
        let n = normalise(&mut x);
        assert_eq!(n.gain_db, 0.0);
        assert!(x.iter().all(|&v| v == 0.0));
        let mut hiss = vec![0.001f32; 800]; // -60 dBFS: no active frame
        assert_eq!(normalise(&mut hiss).gain_db, 0.0);
        assert_eq!(hiss[0], 0.001);
    }

    #[test]
    fn gain_rules() {
        assert_eq!(gain_db(-30.0, -14.0), (12.0, false));
        assert_eq!(gain_db(-30.0, -5.0), (10.0, true));
        assert_eq!(gain_db(-10.0, -2.0), (-8.0, false));
        assert_eq!(gain_db(-60.0, -40.0), (MAX_GAIN_DB, true));
    }
}
