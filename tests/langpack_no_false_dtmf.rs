//! Talk-off check: no shipped en-US prompt may look like a DTMF digit to our own in-band
//! detector. Prompts play while the caller types (barge-in), and phones or gateways that echo
//! audio back would otherwise turn a prompt into phantom digits. Every prompt's 8 kHz PCM is fed
//! to `InbandDetector` in 20 ms (160-sample) chunks, as RTP would deliver it, and must produce no
//! digit. Also run through the G.711 round trip, which is what actually reaches a detector.

use std::path::PathBuf;

use selfprov::langpack::{Catalogue, PromptSet};
use selfprov::media::dtmf::inband::InbandDetector;
use selfprov::media::g711::Codec;

fn digits_in(samples: &[i16]) -> Vec<(usize, char)> {
    let mut det = InbandDetector::new();
    let mut found = Vec::new();
    for (i, chunk) in samples.chunks(160).enumerate() {
        if let Some(d) = det.process(chunk) {
            found.push((i * 20, d));
        }
    }
    // Flush: a digit whose tone ended with the prompt is reported on the following silence.
    for i in 0..10 {
        if let Some(d) = det.process(&[0i16; 160]) {
            found.push((samples.len() / 8 + i * 20, d));
        }
    }
    found
}

#[test]
fn shipped_en_us_prompts_contain_no_dtmf() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let catalogue = Catalogue::load(&root.join("prompts/catalogue.toml")).unwrap();
    let set = PromptSet::load(&root.join("lang-packs/en-US"), &catalogue).unwrap();
    let mut failures = Vec::new();
    for id in catalogue.ids() {
        let p = set.get(id).unwrap();
        let found = digits_in(&p.pcm);
        if !found.is_empty() {
            failures.push(format!("{id} (PCM): digits at ms {found:?}"));
        }
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let mut pcm = Vec::new();
            codec.decode(p.encoded(codec), &mut pcm);
            let found = digits_in(&pcm);
            if !found.is_empty() {
                failures.push(format!("{id} ({codec:?}): digits at ms {found:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "prompts detected as DTMF:\n{}",
        failures.join("\n")
    );
}

/// Guards the test above against a detector that never fires: a real DTMF digit spliced into
/// a prompt must be found.
#[test]
fn detector_sees_a_digit_spliced_into_a_prompt() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let catalogue = Catalogue::load(&root.join("prompts/catalogue.toml")).unwrap();
    let set = PromptSet::load(&root.join("lang-packs/en-US"), &catalogue).unwrap();
    let mut pcm: Vec<i16> = set.get("goodbye").unwrap().pcm.to_vec();
    pcm.extend(std::iter::repeat_n(0i16, 800));
    // Digit '5': 770 Hz + 1336 Hz, 100 ms, each tone at -10 dBFS peak.
    let amp = 32768.0 * 10f64.powf(-10.0 / 20.0);
    pcm.extend((0..800).map(|n| {
        let t = f64::from(n) / 8000.0;
        let v = amp
            * ((2.0 * std::f64::consts::PI * 770.0 * t).sin()
                + (2.0 * std::f64::consts::PI * 1336.0 * t).sin());
        v.round() as i16
    }));
    pcm.extend(std::iter::repeat_n(0i16, 800));
    let found: Vec<char> = digits_in(&pcm).into_iter().map(|(_, d)| d).collect();
    assert_eq!(found, ['5']);
}
