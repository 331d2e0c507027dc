//! DTMF digits from the three places phones put them:
//!
//! | module | source |
//! |---|---|
//! | [`rfc4733`] | RTP telephone-event packets (RFC 4733 §2.3, §2.5) |
//! | [`info`] | SIP INFO bodies (`application/dtmf-relay`, `application/dtmf`) |
//! | [`inband`] | tones in the audio itself (Goertzel detector, ITU-T Q.23/Q.24) |
//!
//! All three give digits as `char`: `0`-`9`, `*`, `#`, `A`-`D`.

pub mod inband;
pub mod info;
pub mod rfc4733;

/// The character for an RFC 4733 §3.2 DTMF event code (0-9, 10 = `*`, 11 = `#`, 12-15 = A-D).
pub fn event_to_char(event: u8) -> Option<char> {
    match event {
        0..=9 => Some((b'0' + event) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + event - 12) as char),
        _ => None,
    }
}

/// The RFC 4733 event code for a DTMF character (inverse of [`event_to_char`]; `a`-`d` accepted).
pub fn char_to_event(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(c as u8 - b'A' + 12),
        'a'..='d' => Some(c as u8 - b'a' + 12),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_codes() {
        let all: String = (0..=16).filter_map(event_to_char).collect();
        assert_eq!(all, "0123456789*#ABCD");
        for e in 0..16 {
            assert_eq!(char_to_event(event_to_char(e).unwrap()), Some(e));
        }
        assert_eq!(char_to_event('x'), None);
    }
}
