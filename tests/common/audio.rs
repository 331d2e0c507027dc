//! Audio measurements for the tests: read WAV files, levels, normalised cross-correlation (is the
//! received audio really the prompt?), and a small Goertzel DTMF detector used only to check the
//! harness's own in-band tone generator.

use std::path::Path;

/// A mono signal as f32 in [-1, 1].
#[derive(Debug, Clone)]
pub struct Mono {
    pub rate: u32,
    pub samples: Vec<f32>,
}

impl Mono {
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.rate)
    }
}

/// Reads a 16-bit PCM WAV (any channel count: the first channel is kept).
pub fn read_wav(path: &Path) -> Mono {
    let mut r = hound::WavReader::open(path)
        .unwrap_or_else(|e| panic!("cannot read WAV {}: {e}", path.display()));
    let spec = r.spec();
    assert_eq!(
        (spec.sample_format, spec.bits_per_sample),
        (hound::SampleFormat::Int, 16),
        "{}: expected 16-bit PCM",
        path.display()
    );
    let ch = usize::from(spec.channels.max(1));
    let samples = r
        .samples::<i16>()
        .step_by(ch)
        .map(|s| f32::from(s.expect("WAV sample")) / 32_768.0)
        .collect();
    Mono {
        rate: spec.sample_rate,
        samples,
    }
}

/// Writes `seconds` of digital silence as a 16-bit mono WAV at `rate`.
pub fn write_silence_wav(path: &Path, rate: u32, seconds: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    for _ in 0..rate * seconds {
        w.write_sample(0i16).expect("write sample");
    }
    w.finalize().expect("finalize WAV");
}

/// RMS level in dBFS (-inf for digital silence is returned as -200).
pub fn rms_dbfs(x: &[f32]) -> f64 {
    if x.is_empty() {
        return -200.0;
    }
    let e: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64;
    if e <= 0.0 {
        -200.0
    } else {
        10.0 * e.log10()
    }
}

/// Fraction of 20 ms frames (at `rate`) whose RMS is above `threshold_dbfs`.
pub fn active_fraction(x: &[f32], rate: u32, threshold_dbfs: f64) -> f64 {
    let frame = (rate / 50) as usize;
    let frames: Vec<&[f32]> = x.chunks_exact(frame.max(1)).collect();
    if frames.is_empty() {
        return 0.0;
    }
    let active = frames
        .iter()
        .filter(|f| rms_dbfs(f) > threshold_dbfs)
        .count();
    active as f64 / frames.len() as f64
}

/// Normalised cross-correlation of `template` against `signal` at `lag`:
/// Σ s[lag+i]·t[i] / sqrt(Σ s[lag+i]² · Σ t[i]²). 1.0 means identical up to a gain.
fn ncc_at(signal: &[f32], template: &[f32], lag: usize) -> f64 {
    let Some(window) = signal.get(lag..lag + template.len()) else {
        return 0.0;
    };
    let (mut st, mut ss, mut tt) = (0f64, 0f64, 0f64);
    for (&s, &t) in window.iter().zip(template) {
        let (s, t) = (f64::from(s), f64::from(t));
        st += s * t;
        ss += s * s;
        tt += t * t;
    }
    if ss <= 0.0 || tt <= 0.0 {
        0.0
    } else {
        st / (ss * tt).sqrt()
    }
}

/// Averages groups of `factor` samples (a crude low-pass plus decimation, enough to locate a
/// correlation peak before refining it at the full rate).
fn decimate(x: &[f32], factor: usize) -> Vec<f32> {
    x.chunks(factor)
        .map(|c| c.iter().sum::<f32>() / c.len() as f32)
        .collect()
}

/// Best normalised cross-correlation of `template` inside `signal` (same sample rate), and the
/// lag (in samples) where it occurs. Coarse search at 1/4 rate over every lag, then a full-rate
/// refinement around the three best coarse peaks: quick enough in a debug build for a 20 s
/// recording and a 2-3 s prompt, and exact at the refined peak.
pub fn best_correlation(signal: &[f32], template: &[f32]) -> (f64, usize) {
    if template.is_empty() || signal.len() < template.len() {
        return (0.0, 0);
    }
    const F: usize = 4;
    let s4 = decimate(signal, F);
    let t4 = decimate(template, F);
    let lags4 = s4.len().saturating_sub(t4.len()) + 1;
    let mut coarse: Vec<(f64, usize)> = (0..lags4).map(|l| (ncc_at(&s4, &t4, l), l)).collect();
    coarse.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut best = (0.0f64, 0usize);
    for &(_, l4) in coarse.iter().take(3) {
        let centre = l4 * F;
        let lo = centre.saturating_sub(2 * F);
        let hi = (centre + 2 * F).min(signal.len() - template.len());
        for lag in lo..=hi {
            let c = ncc_at(signal, template, lag);
            if c > best.0 {
                best = (c, lag);
            }
        }
    }
    best
}

/// Power of `freq` in `x` (Goertzel), normalised by the block length.
pub fn goertzel_power(x: &[f32], rate: u32, freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0f64, 0f64);
    for &v in x {
        let s0 = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let p = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    p / (x.len() as f64 * x.len() as f64)
}

/// Detects DTMF keys in an 8 kHz signal (20 ms blocks): a block holds a key when the strongest
/// low and high group frequencies each dominate their group and carry most of the block's
/// energy; a key is reported once when seen in two consecutive blocks, and again only after a
/// block without it. For checking the harness's tone generator, not a production detector.
pub fn detect_dtmf(x: &[f32]) -> String {
    const LOW: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
    const HIGH: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    const KEYS: [[char; 4]; 4] = [
        ['1', '2', '3', 'A'],
        ['4', '5', '6', 'B'],
        ['7', '8', '9', 'C'],
        ['*', '0', '#', 'D'],
    ];
    let mut out = String::new();
    let mut prev: Option<char> = None;
    let mut reported = false;
    for block in x.chunks_exact(160) {
        let energy: f64 = block
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            / 160.0;
        let pl: Vec<f64> = LOW
            .iter()
            .map(|&f| goertzel_power(block, 8_000, f))
            .collect();
        let ph: Vec<f64> = HIGH
            .iter()
            .map(|&f| goertzel_power(block, 8_000, f))
            .collect();
        let (li, lmax) = max_index(&pl);
        let (hi, hmax) = max_index(&ph);
        // A pure sine of amplitude A has energy A²/2 and Goertzel power A²/4 here.
        let tonal = 2.0 * (lmax + hmax);
        let dominant = pl
            .iter()
            .enumerate()
            .all(|(i, &p)| i == li || p * 10.0 < lmax)
            && ph
                .iter()
                .enumerate()
                .all(|(i, &p)| i == hi || p * 10.0 < hmax);
        let key = (energy > 1e-5 && dominant && tonal > 0.7 * energy).then(|| KEYS[li][hi]);
        match key {
            Some(k) if prev == Some(k) => {
                if !reported {
                    out.push(k);
                    reported = true;
                }
            }
            _ => reported = false,
        }
        prev = key;
    }
    out
}

fn max_index(v: &[f64]) -> (usize, f64) {
    v.iter().copied().enumerate().fold(
        (0, f64::MIN),
        |best, (i, p)| if p > best.1 { (i, p) } else { best },
    )
}
