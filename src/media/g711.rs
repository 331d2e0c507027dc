//! G.711 (ITU-T G.711) mu-law and A-law: sample conversion and the [`Codec`] enum negotiated in
//! SDP (static RTP payload types 0 and 8, RFC 3551 §6).
//!
//! Conventions follow the ITU-T G.191 Software Tool Library reference (`g711.c`,
//! `ulaw_compress`/`alaw_compress`): inputs are 16-bit linear samples; negative values are
//! folded with the one's complement (`!x`) before quantisation. The widely copied Sun `g711.c`
//! negates instead (`-x`), which moves some negative inputs that sit exactly on a
//! quantisation boundary to the neighbouring codeword. With the G.191 convention, the encoder is
//! exactly symmetric: `encode(x)` and `encode(!x)` differ only in the sign bit, and `-1` maps to
//! mu-law "negative zero" (0x7F), A-law 0x55.
//!
//! Decoding is a 256-entry table built at compile time (one load per sample); encoding is a few
//! integer operations (a leading-zero count finds the segment), with no branches on the data
//! beyond the sign.

/// mu-law decode table, indexed by the received byte. Built by the G.191 `ulaw_expand` formula.
static ULAW_TABLE: [i16; 256] = build_ulaw_table();
/// A-law decode table, indexed by the received byte. Built by the G.191 `alaw_expand` formula.
static ALAW_TABLE: [i16; 256] = build_alaw_table();

const fn build_ulaw_table() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        let byte = i as u8;
        let inv = !byte;
        let exponent = ((inv >> 4) & 0x07) as i32;
        let mantissa = (inv & 0x0F) as i32;
        let step = 4 << (exponent + 1);
        let magnitude = (0x80 << exponent) + step * mantissa + step / 2 - 4 * 33;
        t[i] = if byte < 0x80 {
            -magnitude as i16
        } else {
            magnitude as i16
        };
        i += 1;
    }
    t
}

const fn build_alaw_table() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        let byte = i as u8;
        let ix = (byte ^ 0x55) & 0x7F;
        let exponent = (ix >> 4) as i32;
        let mut mant = (ix & 0x0F) as i32;
        if exponent > 0 {
            mant += 16;
        }
        mant = (mant << 4) + 8;
        if exponent > 1 {
            mant <<= exponent - 1;
        }
        t[i] = if byte > 127 {
            mant as i16
        } else {
            -mant as i16
        };
        i += 1;
    }
    t
}

/// Encodes one 16-bit linear sample to mu-law (G.191 convention, see the module doc).
#[inline]
pub fn ulaw_encode(s: i16) -> u8 {
    // One's complement folds -1..=-4 onto the same magnitude as 0..=3 (symmetric quantiser).
    let (mag, sign) = if s < 0 { (!s, 0x00u8) } else { (s, 0x80u8) };
    // 14-bit magnitude plus the bias of 33, clipped to 0x1FFF.
    let absno = ((mag >> 2) as u16 + 33).min(0x1FFF);
    // Segment 1..=8: position of the highest set bit above bit 5 (absno >= 33 so bit 5 or above
    // is always set). 16 - leading_zeros = bit length; bit length 6 -> segment 1.
    let bits = 16 - absno.leading_zeros() as u16;
    let segno = bits - 5;
    let high = (8 - segno) as u8;
    let low = 0x0F - ((absno >> segno) & 0x0F) as u8;
    ((high << 4) | low) | sign
}

/// Decodes one mu-law byte to a 16-bit linear sample (table lookup).
#[inline]
pub fn ulaw_decode(b: u8) -> i16 {
    ULAW_TABLE[b as usize]
}

/// Encodes one 16-bit linear sample to A-law (G.191 convention, see the module doc).
#[inline]
pub fn alaw_encode(s: i16) -> u8 {
    let (mag, sign) = if s < 0 { (!s, 0x00u8) } else { (s, 0x80u8) };
    // 12-bit magnitude (0..=2047).
    let mut ix = (mag >> 4) as u16;
    if ix > 15 {
        // Segment: bit length of ix minus 4 (ix 16..=31 -> segment 1, ..., up to 7).
        let bits = 16 - ix.leading_zeros() as u16;
        let iexp = bits - 4;
        ix = ((ix >> (iexp - 1)) - 16) + (iexp << 4);
    }
    ((ix as u8) | sign) ^ 0x55
}

/// Decodes one A-law byte to a 16-bit linear sample (table lookup).
#[inline]
pub fn alaw_decode(b: u8) -> i16 {
    ALAW_TABLE[b as usize]
}

/// The audio codecs selfprov speaks: G.711 mu-law and A-law at 8 kHz, one byte per sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 mu-law, static payload type 0 (RFC 3551 §6).
    Pcmu,
    /// G.711 A-law, static payload type 8 (RFC 3551 §6).
    Pcma,
}

impl Codec {
    /// All supported codecs, in our default preference order.
    pub const ALL: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];

    /// The static RTP payload type (RFC 3551 §6).
    pub fn payload_type(&self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The encoding name as written in `a=rtpmap` (RFC 3551 §4.5.14).
    pub fn name(&self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// Sampling clock rate in Hz (also the RTP timestamp rate).
    pub fn clock_rate(&self) -> u32 {
        8000
    }

    /// The byte that encodes digital silence (linear 0): 0xFF for mu-law, 0xD5 for A-law.
    pub fn silence_byte(&self) -> u8 {
        match self {
            Codec::Pcmu => 0xFF,
            Codec::Pcma => 0xD5,
        }
    }

    /// The codec for a static payload type, if it is one of ours.
    pub fn from_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// The codec for an rtpmap encoding name and clock rate (name compared case-insensitively,
    /// RFC 4855 §3).
    pub fn from_rtpmap(name: &str, rate: u32) -> Option<Codec> {
        if rate != 8000 {
            return None;
        }
        if name.eq_ignore_ascii_case("PCMU") {
            Some(Codec::Pcmu)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(Codec::Pcma)
        } else {
            None
        }
    }

    /// Appends the encoding of `pcm` to `out` (one byte per sample). `out` is not cleared.
    pub fn encode(&self, pcm: &[i16], out: &mut Vec<u8>) {
        out.reserve(pcm.len());
        match self {
            Codec::Pcmu => out.extend(pcm.iter().map(|&s| ulaw_encode(s))),
            Codec::Pcma => out.extend(pcm.iter().map(|&s| alaw_encode(s))),
        }
    }

    /// Appends the decoding of `bytes` to `out` (one sample per byte). `out` is not cleared.
    pub fn decode(&self, bytes: &[u8], out: &mut Vec<i16>) {
        out.reserve(bytes.len());
        let table = match self {
            Codec::Pcmu => &ULAW_TABLE,
            Codec::Pcma => &ALAW_TABLE,
        };
        out.extend(bytes.iter().map(|&b| table[b as usize]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Literal transliterations of the ITU-T G.191 STL `g711.c` loops (ulaw_compress,
    // alaw_compress), kept deliberately different in form from the production code (loop-based
    // segment search instead of leading_zeros) so the exhaustive comparison below is meaningful.
    fn g191_ulaw_compress(lin: i16) -> u8 {
        let lin = lin as i32;
        let mut absno = if lin < 0 {
            ((!lin) >> 2) + 33
        } else {
            (lin >> 2) + 33
        };
        if absno > 0x1FFF {
            absno = 0x1FFF;
        }
        let mut i = absno >> 6;
        let mut segno = 1;
        while i != 0 {
            segno += 1;
            i >>= 1;
        }
        let high_nibble = 0x0008 - segno;
        let mut low_nibble = (absno >> segno) & 0x000F;
        low_nibble = 0x000F - low_nibble;
        let mut out = (high_nibble << 4) | low_nibble;
        if lin >= 0 {
            out |= 0x0080;
        }
        out as u8
    }

    fn g191_alaw_compress(lin: i16) -> u8 {
        let lin = lin as i32;
        let mut ix = if lin < 0 { (!lin) >> 4 } else { lin >> 4 };
        if ix > 15 {
            let mut iexp = 1;
            while ix > 16 + 15 {
                ix >>= 1;
                iexp += 1;
            }
            ix -= 16;
            ix += iexp << 4;
        }
        if lin >= 0 {
            ix |= 0x0080;
        }
        (ix ^ 0x0055) as u8
    }

    #[test]
    fn encoders_match_g191_reference_for_every_input() {
        for s in i16::MIN..=i16::MAX {
            assert_eq!(ulaw_encode(s), g191_ulaw_compress(s), "ulaw {s}");
            assert_eq!(alaw_encode(s), g191_alaw_compress(s), "alaw {s}");
        }
    }

    #[test]
    fn published_reference_values() {
        // Decoder values from the G.711 tables (identical in G.191 and Sun g711.c).
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0x01), -31100);
        assert_eq!(ulaw_decode(0x02), -30076);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_decode(0xCE), 988);
        assert_eq!(ulaw_decode(0x4E), -988);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(alaw_decode(0x00), -5504);
        assert_eq!(alaw_decode(0x80), 5504);
        // Encoder values.
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(-1), 0x7F); // G.191 one's complement: -1 is "negative zero"
        assert_eq!(ulaw_encode(1000), 0xCE);
        assert_eq!(ulaw_encode(-1001), 0x4E);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
    }

    #[test]
    fn g191_convention_is_symmetric() {
        // x and !x (= -x-1) differ only in the sign bit.
        for s in 0..=i16::MAX {
            assert_eq!(ulaw_encode(s) ^ 0x80, ulaw_encode(!s), "{s}");
            assert_eq!(alaw_encode(s) ^ 0x80, alaw_encode(!s), "{s}");
        }
        // The convention matters exactly on negative multiples of 4 at a code boundary: -4
        // folds to 3 (code 0x7F, like -1) where a negating encoder would give 4 (code 0x7E).
        assert_eq!(ulaw_encode(-4), 0x7F);
        assert_eq!(ulaw_encode(-5), 0x7E);
    }

    #[test]
    fn decode_then_encode_is_identity() {
        for b in 0..=255u8 {
            let expect_u = if b == 0x7F { 0xFF } else { b }; // -0 and +0 both decode to 0
            assert_eq!(ulaw_encode(ulaw_decode(b)), expect_u, "ulaw {b:#04x}");
            assert_eq!(alaw_encode(alaw_decode(b)), b, "alaw {b:#04x}");
        }
    }

    #[test]
    fn encode_then_decode_error_is_within_half_a_step() {
        for s in i16::MIN..=i16::MAX {
            let s32 = s as i32;
            let u = ulaw_decode(ulaw_encode(s)) as i32;
            let a = alaw_decode(alaw_encode(s)) as i32;
            // Half a quantisation step is at most |s|/16 in every segment, plus the few units
            // lost when the 16-bit input is truncated to 14 (mu-law) or 12 (A-law) bits; the
            // clipped extremes (|s| > 32124 / 32256) are covered by the same bound.
            let mag = s32.abs();
            let u_bound = mag / 16 + 12;
            let a_bound = mag / 16 + 12;
            assert!((u - s32).abs() <= u_bound, "ulaw {s} -> {u}");
            assert!((a - s32).abs() <= a_bound, "alaw {s} -> {a}");
        }
    }

    #[test]
    fn decode_tables_are_monotonic_within_sign() {
        // Positive mu-law codes 0xFF..=0x80 increase in magnitude; A-law likewise by segment.
        let mut prev = -1;
        for b in (0x80..=0xFFu8).rev() {
            let v = ulaw_decode(b) as i32;
            assert!(v > prev || (b == 0xFF && v == 0), "{b:#x}");
            prev = v;
        }
        let mut vals: Vec<i16> = (0..=255u8).map(alaw_decode).collect();
        vals.sort();
        vals.dedup();
        assert_eq!(vals.len(), 256, "A-law has no duplicate levels");
    }

    #[test]
    fn codec_metadata_and_buffers() {
        assert_eq!(Codec::Pcmu.payload_type(), 0);
        assert_eq!(Codec::Pcma.payload_type(), 8);
        assert_eq!(Codec::Pcmu.name(), "PCMU");
        assert_eq!(Codec::Pcma.name(), "PCMA");
        assert_eq!(ulaw_decode(Codec::Pcmu.silence_byte()), 0);
        assert_eq!(alaw_encode(0), Codec::Pcma.silence_byte());
        assert_eq!(Codec::from_rtpmap("pcma", 8000), Some(Codec::Pcma));
        assert_eq!(Codec::from_rtpmap("PCMU", 16000), None);

        let pcm: Vec<i16> = (0..160)
            .map(|i| ((i * 397) % 20000 - 10000) as i16)
            .collect();
        for codec in Codec::ALL {
            let mut bytes = vec![0xAB];
            codec.encode(&pcm, &mut bytes);
            assert_eq!(bytes.len(), 161, "appends");
            assert_eq!(bytes[0], 0xAB);
            let mut back = Vec::new();
            codec.decode(&bytes[1..], &mut back);
            assert_eq!(back.len(), 160);
            for (a, b) in pcm.iter().zip(&back) {
                assert!((*a as i32 - *b as i32).abs() <= 320, "{codec:?} {a} {b}");
            }
        }
    }
}
