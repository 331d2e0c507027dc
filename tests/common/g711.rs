//! G.711 µ-law for the harness (ITU-T G.711, the classic segment/bias algorithm), kept separate
//! from the crate's codec on purpose: the tests must not use the code under test to make their
//! stimulus.

const BIAS: i32 = 0x84;
const CLIP: i32 = 32_635;

/// Linear 16-bit → µ-law byte.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    // Segment: position of the highest set bit above bit 7.
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// µ-law byte → linear 16-bit.
pub fn ulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let sign = u & 0x80;
    let exponent = i32::from((u >> 4) & 0x07);
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
    (if sign != 0 { -magnitude } else { magnitude }) as i16
}

/// The µ-law code of digital silence.
pub const ULAW_SILENCE: u8 = 0xFF;
