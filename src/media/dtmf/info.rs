//! DTMF carried in SIP INFO request bodies (no RFC standardises these; they are de-facto
//! formats, see RFC 6086 §1 on "legacy INFO usage"):
//!
//! - `application/dtmf-relay` (Cisco's format, sent by Cisco, Yealink, Polycom, Grandstream,
//!   Snom and others): lines `Signal=5` and `Duration=160` (ms). We accept any line ending
//!   (CRLF, LF-only), keys in any case, spaces around `=` and around the value (`Signal= *`).
//! - `application/dtmf`: the body is the digit itself (`5`, possibly followed by a line end).
//!
//! Values: one of `0-9 * # A-D` (`a-d` too). Numeric event codes are also accepted the way
//! Asterisk's `res_pjsip_dtmf_info` accepts them (`get_event()`): `10` = `*`, `11` = `#`,
//! `12`-`15` = `A`-`D`, the RFC 4733 §3.2 event numbering, which some endpoints put in `Signal=`.
//! So `Signal=11` is `#`, never "1 then 1". `!` / `16` (hook flash) and anything else give `None`.
//!
//! The media type is matched case-insensitively and parameters (`; charset=...`) are ignored.
//! Any other content type (e.g. `application/media_control+xml`, `text/plain`) gives `None`.

use super::event_to_char;

/// The digit carried by a SIP INFO body, or `None` when the content type is not a DTMF type or
/// the body does not carry a DTMF digit.
pub fn parse_info_body(content_type: &str, body: &[u8]) -> Option<char> {
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if media_type.eq_ignore_ascii_case("application/dtmf-relay") {
        parse_dtmf_relay(body)
    } else if media_type.eq_ignore_ascii_case("application/dtmf") {
        let text = std::str::from_utf8(body).ok()?;
        parse_signal_value(text.lines().next().unwrap_or(""))
    } else {
        None
    }
}

fn parse_dtmf_relay(body: &[u8]) -> Option<char> {
    let text = std::str::from_utf8(body).ok()?;
    // str::lines splits on '\n' and strips a trailing '\r'; a bare '\r' separator (seen from
    // old gateways) is also handled by splitting on it.
    for line in text.split(['\n', '\r']) {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim().eq_ignore_ascii_case("signal") {
            return parse_signal_value(value);
        }
    }
    None
}

fn parse_signal_value(value: &str) -> Option<char> {
    let v = value.trim();
    let mut chars = v.chars();
    let first = chars.next()?;
    if chars.next().is_none() {
        return match first {
            '0'..='9' | '*' | '#' | 'A'..='D' => Some(first),
            'a'..='d' => Some(first.to_ascii_uppercase()),
            _ => None,
        };
    }
    // Multi-character: an RFC 4733 event number such as "10" or "11".
    let n: u8 = v.parse().ok()?;
    event_to_char(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELAY: &str = "application/dtmf-relay";

    #[test]
    fn dtmf_relay_variants() {
        assert_eq!(
            parse_info_body(RELAY, b"Signal=5\r\nDuration=160\r\n"),
            Some('5')
        );
        assert_eq!(
            parse_info_body(RELAY, b"Signal=5\nDuration=160\n"),
            Some('5')
        );
        assert_eq!(
            parse_info_body(RELAY, b"Duration=250\r\nSignal=#\r\n"),
            Some('#')
        );
        assert_eq!(
            parse_info_body(RELAY, b"Signal= *\r\nDuration= 160\r\n"),
            Some('*')
        );
        assert_eq!(parse_info_body(RELAY, b"signal=9"), Some('9'));
        assert_eq!(parse_info_body(RELAY, b"SIGNAL = d\r\n"), Some('D'));
        assert_eq!(
            parse_info_body(RELAY, b"Signal=A\rDuration=100\r"),
            Some('A')
        );
        assert_eq!(
            parse_info_body("Application/DTMF-Relay; charset=utf-8", b"Signal=0"),
            Some('0')
        );
        // Event numbers.
        assert_eq!(
            parse_info_body(RELAY, b"Signal=10\r\nDuration=160"),
            Some('*')
        );
        assert_eq!(
            parse_info_body(RELAY, b"Signal=11\r\nDuration=160"),
            Some('#')
        );
        assert_eq!(parse_info_body(RELAY, b"Signal=15"), Some('D'));
        assert_eq!(parse_info_body(RELAY, b"Signal=07"), Some('7'));
    }

    #[test]
    fn dtmf_relay_rejects() {
        assert_eq!(parse_info_body(RELAY, b""), None);
        assert_eq!(parse_info_body(RELAY, b"Duration=160"), None);
        assert_eq!(parse_info_body(RELAY, b"Signal="), None);
        assert_eq!(parse_info_body(RELAY, b"Signal=!"), None, "hook flash");
        assert_eq!(parse_info_body(RELAY, b"Signal=16"), None, "hook flash");
        assert_eq!(parse_info_body(RELAY, b"Signal=E"), None);
        assert_eq!(parse_info_body(RELAY, b"Signal=12345678901"), None);
        assert_eq!(parse_info_body(RELAY, b"Signal=\xff"), None);
        assert_eq!(parse_info_body(RELAY, b"Signals=5"), None);
    }

    #[test]
    fn application_dtmf() {
        assert_eq!(parse_info_body("application/dtmf", b"5"), Some('5'));
        assert_eq!(parse_info_body("application/dtmf", b"#\r\n"), Some('#'));
        assert_eq!(parse_info_body("application/dtmf", b" 11 "), Some('#'));
        assert_eq!(parse_info_body("application/dtmf", b""), None);
        assert_eq!(parse_info_body("application/dtmf", b"x"), None);
    }

    #[test]
    fn other_types_are_ignored() {
        assert_eq!(
            parse_info_body("application/media_control+xml", b"Signal=5"),
            None
        );
        assert_eq!(parse_info_body("text/plain", b"5"), None);
        assert_eq!(parse_info_body("", b"Signal=5"), None);
        assert_eq!(
            parse_info_body("application/dtmf-relayx", b"Signal=5"),
            None
        );
    }
}
