//! In-band DTMF detection (ITU-T Q.23 frequencies, Q.24 receiver requirements) for callers
//! whose phones send digits as tones in the audio.
//!
//! Analysis: a 160-sample (20 ms) Hann-windowed frame every 32 samples (4 ms hop). On each
//! frame the Goertzel algorithm gives the complex spectrum at the eight DTMF frequencies (rows
//! 697/770/852/941 Hz, columns 1209/1336/1477/1633 Hz). The Hann window keeps the other group's
//! tone out of each bin (sidelobes below -50 dB at the group spacing) and puts a neighbouring
//! frequency of the same group (~10% away, 1.5 bins) 14 dB down.
//!
//! A frame is a *hit* for a digit when all of these hold:
//! 1. the strongest row and column bins each dominate the other bins of their group by 8 dB;
//! 2. frequency accuracy: the true frequency of each tone is estimated from the phase advance of
//!    its bin between this frame and the previous one (4 ms apart; unambiguous within
//!    ±125 Hz), and must be within ±2.5% of nominal (Q.24: accept ±1.5%, reject ±3.5%). This
//!    also means a hit needs two consecutive frames of tone;
//! 3. level: each tone at least [`MIN_LEVEL_DBM0`] (amplitudes are corrected for the frequency
//!    offset, using the Hann window's response);
//! 4. twist: the row tone at most 8 dB above the column tone ("normal" twist, the usual result
//!    of the line's high-frequency loss) and at most 4 dB below it ("reverse" twist);
//! 5. purity: the two tones carry at least 75% of the frame's energy (speech and noise spread
//!    their energy), and their second harmonics are at least 12 dB down (voiced speech is rich in
//!    harmonics, DTMF generators are not). A row tone's harmonic is not checked when it falls
//!    within 110 Hz of the column tone actually present (2 x 697 = 1394 Hz is 58 Hz from 1336 Hz
//!    and would measure the column tone instead).
//!
//! Timing (Q.24: accept tones of 40 ms, reject under 23 ms, bridge interruptions of up to
//! 10 ms, need a pause of 40 ms between digits):
//! - a digit is reported after [`MIN_HITS`] (6) consecutive hits for it. The Hann window
//!   barely looks at its edges, so frames only partly covered by a tone still hit: measured
//!   over all alignments, a 40 ms tone gives 8-9 hits, a 23 ms tone at most 4, a 16 ms tone 3;
//! - it is reported once; the detector then waits for [`RELEASE_MISSES`] (8) consecutive frames
//!   without that digit before a new digit can be reported. A 10 ms dropout spoils at most 5
//!   frames (bridged), a 40 ms pause at least 11 (separate digits); the boundary lies near
//!   25 ms.
//!
//! Cost: a few multiply-adds per sample for the windowed energy; the eight Goertzel filters
//! (about 40 multiply-adds per sample) run only on frames with enough energy for a tone.

use std::collections::VecDeque;

const FS: f32 = 8000.0;
/// Analysis frame length (samples).
const N: usize = 160;
/// Hop between frames (samples).
const HOP: usize = 32;
/// Row (low group) and column (high group) frequencies, ITU-T Q.23.
const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const COLS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// Amplitude (16-bit linear) of a 0 dBm0 sine: G.711's digital milliwatt peaks at about 22,700
/// (the full-scale sine is +3.2 dBm0).
pub const DBM0_AMPLITUDE: f32 = 22_700.0;
/// Minimum level of each tone, in dBm0.
pub const MIN_LEVEL_DBM0: f32 = -36.0;
/// Consecutive hits needed to report a digit.
pub const MIN_HITS: u32 = 6;
/// Consecutive frames without the digit that end it (re-arm the detector).
pub const RELEASE_MISSES: u32 = 8;

/// Maximum relative frequency deviation accepted.
const MAX_FREQ_DEV: f32 = 0.025;
/// Power ratios.
const GROUP_DOMINANCE: f32 = 6.31; // 8 dB
const NORMAL_TWIST: f32 = 6.31; // row may exceed column by 8 dB
const REVERSE_TWIST: f32 = 2.51; // column may exceed row by 4 dB
const TONE_ENERGY_FRACTION: f32 = 0.75;
const HARMONIC_RATIO: f32 = 0.063; // 12 dB

/// Goertzel coefficients for one frequency.
#[derive(Debug, Clone, Copy)]
struct Bin {
    freq: f32,
    omega: f32,
    coeff: f32,
    cos: f32,
    sin: f32,
}

impl Bin {
    fn new(freq: f32) -> Self {
        let omega = 2.0 * std::f32::consts::PI * freq / FS;
        Bin {
            freq,
            omega,
            coeff: 2.0 * omega.cos(),
            cos: omega.cos(),
            sin: omega.sin(),
        }
    }

    /// Complex Goertzel output over `x` (equal to the DFT at `freq` times a constant phase
    /// factor that depends only on `freq` and the length, so phase differences between frames
    /// of equal length are meaningful).
    #[inline]
    fn run(&self, x: &[f32; N]) -> (f32, f32) {
        let (mut s1, mut s2) = (0.0f32, 0.0f32);
        for &v in x {
            let s0 = v + self.coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        (s1 - self.cos * s2, self.sin * s2)
    }
}

/// Hann window's amplitude response at `x` bins from its centre (normalised to 1 at 0).
fn hann_response(x: f32) -> f32 {
    let x = x.abs();
    if x < 1e-4 {
        return 1.0;
    }
    if (x - 1.0).abs() < 1e-3 {
        return 0.5;
    }
    let px = std::f32::consts::PI * x;
    (px.sin() / px) / (1.0 - x * x)
}

/// Detects DTMF digits in 8 kHz PCM.
#[derive(Debug, Clone)]
pub struct InbandDetector {
    window: [f32; N],
    bins: [Bin; 8],
    ring: [f32; N],
    /// Next write position in `ring`.
    pos: usize,
    /// Samples received so far, saturating at N (frames start once the ring is full).
    filled: usize,
    /// Samples since the last frame.
    since_frame: usize,
    /// Complex outputs of the previous frame, if it was analysed.
    prev: Option<[(f32, f32); 8]>,
    candidate: Option<char>,
    hits: u32,
    down: Option<char>,
    misses: u32,
    pending: VecDeque<char>,
    min_amp: f32,
    scratch: [f32; N],
}

impl Default for InbandDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl InbandDetector {
    /// A detector with the default thresholds.
    pub fn new() -> Self {
        let mut window = [0.0f32; N];
        for (n, w) in window.iter_mut().enumerate() {
            // Periodic Hann: sum = N/2, sum of squares = 3N/8 exactly.
            *w = 0.5 - 0.5 * (2.0 * std::f32::consts::PI * n as f32 / N as f32).cos();
        }
        let mut bins = [Bin::new(0.0); 8];
        for (i, f) in ROWS.iter().chain(COLS.iter()).enumerate() {
            bins[i] = Bin::new(*f);
        }
        InbandDetector {
            window,
            bins,
            ring: [0.0; N],
            pos: 0,
            filled: 0,
            since_frame: 0,
            prev: None,
            candidate: None,
            hits: 0,
            down: None,
            misses: 0,
            pending: VecDeque::new(),
            min_amp: DBM0_AMPLITUDE * 10f32.powf(MIN_LEVEL_DBM0 / 20.0),
            scratch: [0.0; N],
        }
    }

    /// Feeds samples (any chunk size) and returns a digit when one was recognised. Should a
    /// single call contain more than one digit (a long chunk), the others are returned by the
    /// following calls; [`InbandDetector::process_into`] returns them all at once.
    pub fn process(&mut self, samples: &[i16]) -> Option<char> {
        for &s in samples {
            self.push(s);
        }
        self.pending.pop_front()
    }

    /// Feeds samples and appends every digit recognised to `out`.
    pub fn process_into(&mut self, samples: &[i16], out: &mut String) {
        for &s in samples {
            self.push(s);
        }
        out.extend(self.pending.drain(..));
    }

    /// Forgets all state (e.g. when the call's audio source changes).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    #[inline]
    fn push(&mut self, s: i16) {
        self.ring[self.pos] = s as f32;
        self.pos = (self.pos + 1) % N;
        if self.filled < N {
            self.filled += 1;
            if self.filled < N {
                return;
            }
            self.since_frame = HOP; // first full frame: analyse now
        } else {
            self.since_frame += 1;
        }
        if self.since_frame >= HOP {
            self.since_frame = 0;
            let r = self.analyse();
            self.step(r);
        }
    }

    /// Per-frame analysis results for `samples` (tests: measuring hit and miss runs).
    #[cfg(test)]
    fn frames(&mut self, samples: &[i16]) -> Vec<Option<char>> {
        let mut v = vec![];
        for &s in samples {
            self.ring[self.pos] = s as f32;
            self.pos = (self.pos + 1) % N;
            self.filled = (self.filled + 1).min(N);
            self.since_frame += 1;
            if self.filled == N && self.since_frame >= HOP {
                self.since_frame = 0;
                v.push(self.analyse());
            }
        }
        v
    }

    /// The state machine over per-frame results (see the module doc, "Timing").
    fn step(&mut self, r: Option<char>) {
        match r {
            Some(d) if self.candidate == Some(d) => self.hits += 1,
            Some(d) => {
                self.candidate = Some(d);
                self.hits = 1;
            }
            None => {
                self.candidate = None;
                self.hits = 0;
            }
        }
        if let Some(d) = self.down {
            if r == Some(d) {
                self.misses = 0;
            } else {
                self.misses += 1;
                if self.misses >= RELEASE_MISSES {
                    self.down = None;
                }
            }
        }
        if self.down.is_none() && self.hits >= MIN_HITS {
            self.down = self.candidate;
            self.misses = 0;
            if let Some(d) = self.candidate {
                self.pending.push_back(d);
            }
        }
    }

    /// Analyses the current frame; `Some(digit)` on a hit.
    fn analyse(&mut self) -> Option<char> {
        // Window the frame (oldest sample first) and measure its energy.
        let mut energy = 0.0f32;
        for n in 0..N {
            let v = self.ring[(self.pos + n) % N] * self.window[n];
            self.scratch[n] = v;
            energy += v * v;
        }
        // A single tone at the minimum level has energy A^2/2 * 3N/8 after windowing.
        let min_energy = self.min_amp * self.min_amp * 0.5 * (3.0 * N as f32 / 8.0);
        if energy < min_energy {
            self.prev = None;
            return None;
        }
        let mut cur = [(0.0f32, 0.0f32); 8];
        let mut power = [0.0f32; 8];
        for i in 0..8 {
            cur[i] = self.bins[i].run(&self.scratch);
            power[i] = cur[i].0 * cur[i].0 + cur[i].1 * cur[i].1;
        }
        let prev = self.prev.replace(cur)?;
        let r = argmax(&power[..4]);
        let c = 4 + argmax(&power[4..]);

        // 1. Group dominance.
        for i in 0..8 {
            let best = if i < 4 { r } else { c };
            if i != best && power[best] < GROUP_DOMINANCE * power[i] {
                return None;
            }
        }
        // 2. Frequency accuracy, from the phase advance over one hop.
        let mut amp = [0.0f32; 2];
        for (k, &i) in [r, c].iter().enumerate() {
            let bin = &self.bins[i];
            let (re, im) = (
                cur[i].0 * prev[i].0 + cur[i].1 * prev[i].1,
                cur[i].1 * prev[i].0 - cur[i].0 * prev[i].1,
            );
            let advance = im.atan2(re);
            let expected = bin.omega * HOP as f32;
            let dphi = wrap_pi(advance - expected);
            let df = dphi * FS / (2.0 * std::f32::consts::PI * HOP as f32);
            if df.abs() > MAX_FREQ_DEV * bin.freq {
                return None;
            }
            // Amplitude, corrected for the window's response at this offset: A = 4|X|/N.
            let offset_bins = df * N as f32 / FS;
            amp[k] = 4.0 * power[i].sqrt() / N as f32 / hann_response(offset_bins);
        }
        let (row_amp, col_amp) = (amp[0], amp[1]);
        // 3. Level.
        if row_amp < self.min_amp || col_amp < self.min_amp {
            return None;
        }
        // 4. Twist (power ratios).
        let (rp, cp) = (row_amp * row_amp, col_amp * col_amp);
        if rp > NORMAL_TWIST * cp || cp > REVERSE_TWIST * rp {
            return None;
        }
        // 5a. The tones carry most of the frame's energy (each: A^2/2 * 3N/8 windowed).
        let tone_energy = (rp + cp) * 0.5 * (3.0 * N as f32 / 8.0);
        if tone_energy < TONE_ENERGY_FRACTION * energy {
            return None;
        }
        // 5b. Second harmonics.
        let harmonic = |f: f32, scratch: &[f32; N]| {
            let (re, im) = Bin::new(2.0 * f).run(scratch);
            re * re + im * im
        };
        let (rf, cf) = (ROWS[r], COLS[c - 4]);
        if harmonic(cf, &self.scratch) > HARMONIC_RATIO * power[c] {
            return None;
        }
        if (2.0 * rf - cf).abs() > 110.0 && harmonic(rf, &self.scratch) > HARMONIC_RATIO * power[r]
        {
            return None;
        }
        Some(KEYS[r][c - 4])
    }
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for i in 1..v.len() {
        if v[i] > v[best] {
            best = i;
        }
    }
    best
}

fn wrap_pi(mut x: f32) -> f32 {
    use std::f32::consts::PI;
    x %= 2.0 * PI;
    if x > PI {
        x -= 2.0 * PI;
    } else if x < -PI {
        x += 2.0 * PI;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn amp(dbm0: f32) -> f32 {
        DBM0_AMPLITUDE * 10f32.powf(dbm0 / 20.0)
    }

    fn freqs(d: char) -> (f32, f32) {
        for (r, row) in KEYS.iter().enumerate() {
            for (c, &k) in row.iter().enumerate() {
                if k == d {
                    return (ROWS[r], COLS[c]);
                }
            }
        }
        panic!("not a digit {d}");
    }

    /// Appends a dual tone: row/column levels in dBm0, frequencies scaled by `fr`/`fc`.
    fn tone(out: &mut Vec<f32>, d: char, ms: u32, row_db: f32, col_db: f32, fr: f32, fc: f32) {
        let (f1, f2) = freqs(d);
        let (a1, a2) = (amp(row_db), amp(col_db));
        let start = out.len();
        for n in 0..(ms * 8) as usize {
            let t = (start + n) as f32 / FS;
            let w1 = 2.0 * std::f32::consts::PI * f1 * fr * t;
            let w2 = 2.0 * std::f32::consts::PI * f2 * fc * t;
            out.push(a1 * (w1 + 0.3).sin() + a2 * (w2 + 1.1).sin());
        }
    }

    fn silence(out: &mut Vec<f32>, ms: u32) {
        out.extend(std::iter::repeat_n(0.0, (ms * 8) as usize));
    }

    fn to_pcm(x: &[f32]) -> Vec<i16> {
        x.iter()
            .map(|v| v.round().clamp(-32768.0, 32767.0) as i16)
            .collect()
    }

    /// Runs the detector over `x` in 20 ms chunks (through G.711 mu-law, as audio arrives).
    fn detect(x: &[f32]) -> String {
        let mut pcm = to_pcm(x);
        for s in pcm.iter_mut() {
            *s = crate::media::g711::ulaw_decode(crate::media::g711::ulaw_encode(*s));
        }
        let mut det = InbandDetector::new();
        let mut out = String::new();
        for chunk in pcm.chunks(160) {
            out.extend(det.process(chunk));
        }
        for _ in 0..4 {
            out.extend(det.process(&[0; 160]));
        }
        out
    }

    fn add_white_noise(x: &mut [f32], rms: f32, seed: u64) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for v in x.iter_mut() {
            // Sum of 12 uniforms: approximately Gaussian, unit variance.
            let g: f32 = (0..12).map(|_| rng.random::<f32>()).sum::<f32>() - 6.0;
            *v += g * rms;
        }
    }

    const ALL: &str = "123A456B789C*0#D";

    #[test]
    fn all_sixteen_digits_at_several_levels() {
        for level in [-3.0, -10.0, -20.0, -30.0] {
            let mut x = vec![];
            silence(&mut x, 30);
            for d in ALL.chars() {
                tone(&mut x, d, 60, level, level, 1.0, 1.0);
                silence(&mut x, 60);
            }
            assert_eq!(detect(&x), ALL, "level {level} dBm0");
        }
    }

    #[test]
    fn too_quiet_is_ignored() {
        let mut x = vec![];
        tone(&mut x, '5', 200, -42.0, -42.0, 1.0, 1.0);
        assert_eq!(detect(&x), "");
    }

    #[test]
    fn frequency_tolerance() {
        for d in ALL.chars() {
            for (fr, fc, expect) in [
                (1.015, 1.015, true),
                (0.985, 0.985, true),
                (1.015, 0.985, true),
                (1.035, 1.0, false),
                (0.965, 1.0, false),
                (1.0, 1.035, false),
                (1.0, 0.965, false),
            ] {
                let mut x = vec![];
                silence(&mut x, 20);
                tone(&mut x, d, 100, -10.0, -10.0, fr, fc);
                silence(&mut x, 50);
                let want = if expect { d.to_string() } else { String::new() };
                assert_eq!(detect(&x), want, "digit {d} row x{fr} col x{fc}");
            }
        }
    }

    #[test]
    fn twist_limits() {
        // Row louder than column: accepted up to 8 dB ("normal"), column louder: up to 4 dB.
        for d in ['1', '5', '9', '#', 'D', '0'] {
            for (row, col, expect) in [
                (-5.0, -11.0, true),  // 6 dB normal twist
                (-5.0, -15.0, false), // 10 dB normal twist
                (-10.0, -7.5, true),  // 2.5 dB reverse twist
                (-12.0, -6.0, false), // 6 dB reverse twist
            ] {
                let mut x = vec![];
                tone(&mut x, d, 100, row, col, 1.0, 1.0);
                silence(&mut x, 50);
                let want = if expect { d.to_string() } else { String::new() };
                assert_eq!(detect(&x), want, "digit {d} row {row} col {col}");
            }
        }
    }

    #[test]
    fn duration_limits() {
        // Every 4-sample alignment of the tone against the 32-sample hop, loud and quiet.
        for (offset, level) in (0..8).flat_map(|o| [(o, -3.0), (o, -25.0)]) {
            for d in ['1', '6', '8', '*', 'D'] {
                let mut x = vec![];
                silence(&mut x, 10);
                x.extend(std::iter::repeat_n(0.0, offset * 4));
                tone(&mut x, d, 40, level, level, 1.0, 1.0);
                silence(&mut x, 60);
                assert_eq!(detect(&x), d.to_string(), "40 ms {d} offset {offset}");

                for ms in [16, 20, 23] {
                    let mut x = vec![];
                    silence(&mut x, 10);
                    x.extend(std::iter::repeat_n(0.0, offset * 4));
                    tone(&mut x, d, ms, level, level, 1.0, 1.0);
                    silence(&mut x, 60);
                    assert_eq!(detect(&x), "", "{ms} ms {d} offset {offset}");
                }
            }
        }
    }

    #[test]
    fn one_report_per_tone_dropouts_bridged_pauses_separate() {
        // A long tone is one digit.
        let mut x = vec![];
        tone(&mut x, '7', 2000, -10.0, -10.0, 1.0, 1.0);
        assert_eq!(detect(&x), "7");
        // A 10 ms dropout inside a tone does not make two digits.
        for dropout in [4, 6, 8, 10] {
            let mut x = vec![];
            tone(&mut x, '3', 100, -10.0, -10.0, 1.0, 1.0);
            silence(&mut x, dropout);
            tone(&mut x, '3', 100, -10.0, -10.0, 1.0, 1.0);
            silence(&mut x, 60);
            assert_eq!(detect(&x), "3", "dropout {dropout} ms");
        }
        // 40 ms pauses separate digits, the same one repeated included (10 digits/s: 50 ms
        // tone + 50 ms pause, and the 40/40 minimum).
        for (on, off) in [(50, 50), (40, 40)] {
            let mut x = vec![];
            for d in "1155990##".chars() {
                tone(&mut x, d, on, -10.0, -10.0, 1.0, 1.0);
                silence(&mut x, off);
            }
            assert_eq!(detect(&x), "1155990##", "{on}/{off} ms");
        }
    }

    #[test]
    fn detected_in_noise_at_15_db_snr() {
        for (seed, d) in ALL.chars().enumerate() {
            let mut x = vec![];
            silence(&mut x, 40);
            tone(&mut x, d, 60, -15.0, -15.0, 1.0, 1.0);
            silence(&mut x, 60);
            tone(&mut x, d, 60, -15.0, -15.0, 1.0, 1.0);
            silence(&mut x, 60);
            // Signal power: two tones of amplitude A: A^2. Noise power 15 dB below.
            let a = amp(-15.0);
            add_white_noise(&mut x, (a * a / 10f32.powf(1.5)).sqrt(), seed as u64);
            assert_eq!(detect(&x), format!("{d}{d}"), "digit {d}");
        }
    }

    #[test]
    fn white_noise_gives_nothing() {
        for (seed, db) in [(1, -30.0), (2, -15.0), (3, -5.0)] {
            let mut x = vec![0.0; 8000 * 5];
            add_white_noise(&mut x, amp(db), seed);
            assert_eq!(detect(&x), "", "noise at {db} dBm0");
        }
    }

    /// A vowel-like signal: harmonics of a gliding f0 shaped by two formant resonances.
    fn vowel(out: &mut Vec<f32>, ms: u32, f0_start: f32, f0_end: f32, f1: f32, f2: f32, db: f32) {
        let n = (ms * 8) as usize;
        let a = amp(db);
        let mut phase = [0.0f32; 40];
        for i in 0..n {
            let f0 = f0_start + (f0_end - f0_start) * i as f32 / n as f32;
            let mut v = 0.0;
            for (h, ph) in phase.iter_mut().enumerate() {
                let f = f0 * (h + 1) as f32;
                if f > 3400.0 {
                    break;
                }
                *ph += 2.0 * std::f32::consts::PI * f / FS;
                // Formant gain: two resonance peaks (bandwidth ~100 Hz) on a falling slope.
                let g = 1.0 / (1.0 + ((f - f1) / 100.0).powi(2))
                    + 0.6 / (1.0 + ((f - f2) / 120.0).powi(2))
                    + 0.05;
                v += g * ph.sin() / (h + 1) as f32;
            }
            out.push(a * v);
        }
    }

    #[test]
    fn speech_like_signals_give_nothing() {
        let mut x = vec![];
        // Vowels with formants placed right on DTMF frequencies, steady and gliding pitch.
        let formants = [
            (697.0, 1209.0),
            (770.0, 1336.0),
            (852.0, 1477.0),
            (941.0, 1633.0),
            (730.0, 1090.0),
            (300.0, 2300.0),
        ];
        for (i, &(f1, f2)) in formants.iter().enumerate() {
            for f0 in [100.0, 120.0, 174.25, 200.0, 232.3] {
                vowel(&mut x, 300, f0, f0, f1, f2, -8.0);
                vowel(&mut x, 300, f0, f0 * 1.3, f1, f2, -8.0);
                silence(&mut x, 20 + i as u32);
            }
        }
        // Harmonic complexes: a few equal-amplitude harmonics of f0 (f0 chosen so that two of
        // them are near a DTMF pair: 697 = 4 x 174.25 and 1219.75 = 7 x 174.25).
        for f0 in [174.25f32, 139.4, 232.33, 120.0] {
            let start = x.len();
            for n in 0..(8 * 400) {
                let t = (start + n) as f32 / FS;
                let v: f32 = (1..=8)
                    .map(|h| (2.0 * std::f32::consts::PI * f0 * h as f32 * t).sin())
                    .sum();
                x.push(amp(-15.0) * v);
            }
        }
        assert_eq!(detect(&x), "");
    }

    #[test]
    fn chunk_size_does_not_matter() {
        let mut x = vec![];
        for d in "2580".chars() {
            tone(&mut x, d, 70, -12.0, -12.0, 1.0, 1.0);
            silence(&mut x, 70);
        }
        let pcm = to_pcm(&x);
        for size in [1, 7, 80, 160, 333, pcm.len()] {
            let mut det = InbandDetector::new();
            let mut out = String::new();
            for c in pcm.chunks(size) {
                det.process_into(c, &mut out);
            }
            assert_eq!(out, "2580", "chunks of {size}");
        }
        // One call containing several digits: process() hands them out one per call.
        let mut det = InbandDetector::new();
        assert_eq!(det.process(&pcm), Some('2'));
        assert_eq!(det.process(&[]), Some('5'));
        assert_eq!(det.process(&[]), Some('8'));
        assert_eq!(det.process(&[]), Some('0'));
        assert_eq!(det.process(&[]), None);
    }

    fn runs(x: &[f32]) -> String {
        let mut det = InbandDetector::new();
        det.frames(&to_pcm(x))
            .iter()
            .map(|r| r.unwrap_or('.'))
            .collect()
    }

    /// Longest run of hits for `d` / longest run of misses after the first hit.
    fn longest(frames: &str, c: char) -> usize {
        frames.split(|x| x != c).map(str::len).max().unwrap_or(0)
    }

    #[test]
    fn timing_margins_hold_at_every_alignment() {
        // The doc's claims, with a margin of two frames on each side of each threshold.
        let (min_hits, release) = (MIN_HITS as usize, RELEASE_MISSES as usize);
        for off in (0..32).step_by(4) {
            for d in ['1', '6', 'D'] {
                for level in [-3.0, -25.0] {
                    let run = |ms| {
                        let mut x = vec![];
                        silence(&mut x, 10);
                        x.extend(std::iter::repeat_n(0.0, off));
                        tone(&mut x, d, ms, level, level, 1.0, 1.0);
                        silence(&mut x, 40);
                        longest(&runs(&x), d)
                    };
                    assert!(run(40) >= min_hits + 2, "40 ms {d} {off} {level}");
                    assert!(run(23) + 2 <= min_hits, "23 ms {d} {off} {level}");
                    let gap = |ms| {
                        let mut x = vec![];
                        silence(&mut x, 10);
                        x.extend(std::iter::repeat_n(0.0, off));
                        tone(&mut x, d, 60, level, level, 1.0, 1.0);
                        silence(&mut x, ms);
                        tone(&mut x, d, 60, level, level, 1.0, 1.0);
                        let f = runs(&x);
                        let inner = f.trim_matches('.');
                        longest(inner, '.')
                    };
                    assert!(gap(10) + 3 <= release, "10 ms dropout {d} {off} {level}");
                    assert!(gap(40) >= release + 3, "40 ms gap {d} {off} {level}");
                }
            }
        }
    }

    #[test]
    fn extreme_input_never_panics() {
        let mut det = InbandDetector::new();
        let mut out = String::new();
        det.process_into(&[i16::MAX; 4000], &mut out);
        det.process_into(&[i16::MIN; 4000], &mut out);
        let square: Vec<i16> = (0..8000)
            .map(|i| if i % 8 < 4 { i16::MAX } else { i16::MIN })
            .collect();
        det.process_into(&square, &mut out);
        assert_eq!(out, "");
    }
}
