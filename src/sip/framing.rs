//! Sans-IO framing of SIP over a byte stream (TCP, TLS): splits the stream into messages by the
//! empty line ending the head and the Content-Length of the body (RFC 3261 §18.3), and reports
//! RFC 5626 §3.5.1 keep-alives.
//!
//! Usage: [`StreamFramer::push`] every read, then call [`StreamFramer::next_frame`] until it
//! returns `Ok(None)`:
//! - [`Frame::Message`]: one complete message (head and body), ready for
//!   [`super::message::parse_bytes`];
//! - [`Frame::Ping`]: the peer sent a double-CRLF keep-alive ping; answer with a single CRLF
//!   pong (`b"\r\n"`) on the same connection;
//! - [`Frame::Pong`]: a single CRLF between messages (the pong to our own ping, or a stray line
//!   end); nothing to do except refresh the keep-alive timer.
//!
//! [`StreamFramer::next_message`] is the same with keep-alives skipped, for callers that do not
//! answer pings.
//!
//! Any error is fatal for the connection: the stream can no longer be resynchronised, so the
//! caller must close it. The framer stays in the error state and repeats the error.

use bytes::{Bytes, BytesMut};

/// Largest head (start line and headers) accepted on a stream.
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest body accepted on a stream.
pub const MAX_BODY: usize = 64 * 1024;

/// One unit read from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete message: head and exactly Content-Length bytes of body.
    Message(Bytes),
    /// RFC 5626 keep-alive ping (CRLF CRLF): answer with a single CRLF.
    Ping,
    /// A single CRLF between messages (a keep-alive pong, or a stray line end).
    Pong,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("message head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("body of {0} bytes is larger than {MAX_BODY} bytes")]
    BodyTooLarge(usize),
    #[error("message without Content-Length on a stream transport")]
    MissingContentLength,
    #[error("bad Content-Length: {0}")]
    BadContentLength(String),
}

/// Splits a byte stream into SIP messages. Work is linear in the bytes pushed: the search for
/// the end of the head resumes where the previous call stopped.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: BytesMut,
    /// Offset in `buf` up to which no end of head was found (for the message at the front).
    scanned: usize,
    /// Head length and body length of the message at the front, once its head is complete.
    pending: Option<(usize, usize)>,
    failed: Option<FramingError>,
}

impl StreamFramer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes buffered and not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, skipping keep-alives. `Ok(None)`: more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, FramingError> {
        loop {
            match self.next_frame()? {
                Some(Frame::Message(m)) => return Ok(Some(m)),
                Some(Frame::Ping | Frame::Pong) => continue,
                None => return Ok(None),
            }
        }
    }

    /// The next frame (message or keep-alive). `Ok(None)`: more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.next_frame_inner();
        if let Err(e) = &r {
            self.failed = Some(e.clone());
            self.buf = BytesMut::new();
        }
        r
    }

    fn next_frame_inner(&mut self) -> Result<Option<Frame>, FramingError> {
        if self.pending.is_none() {
            // Between messages: keep-alives and stray line ends.
            loop {
                match (
                    self.buf.first(),
                    self.buf.get(1),
                    self.buf.get(2),
                    self.buf.get(3),
                ) {
                    (None, ..) => return Ok(None),
                    (Some(b'\r'), Some(b'\n'), Some(b'\r'), Some(b'\n')) => {
                        let _ = self.buf.split_to(4);
                        self.scanned = 0;
                        return Ok(Some(Frame::Ping));
                    }
                    (Some(b'\r'), Some(b'\n'), Some(b'\r'), None) => return Ok(None),
                    (Some(b'\r'), Some(b'\n'), None, _) => return Ok(None),
                    (Some(b'\r'), None, ..) => return Ok(None),
                    (Some(b'\r'), Some(b'\n'), Some(_), _) => {
                        let _ = self.buf.split_to(2);
                        self.scanned = 0;
                        return Ok(Some(Frame::Pong));
                    }
                    // A lone CR or LF (some stacks send bare-LF keep-alives): skip it.
                    (Some(b'\r' | b'\n'), ..) => {
                        let _ = self.buf.split_to(1);
                        self.scanned = 0;
                    }
                    _ => break,
                }
            }
            let Some(head_len) = self.find_head_end() else {
                if self.buf.len() > MAX_HEAD {
                    return Err(FramingError::HeadTooLarge);
                }
                return Ok(None);
            };
            if head_len > MAX_HEAD {
                return Err(FramingError::HeadTooLarge);
            }
            let body_len = content_length(self.buf.get(..head_len).unwrap_or(&[]))?;
            self.pending = Some((head_len, body_len));
        }
        let Some((head_len, body_len)) = self.pending else {
            return Ok(None);
        };
        let total = head_len + body_len;
        if self.buf.len() < total {
            return Ok(None);
        }
        self.pending = None;
        self.scanned = 0;
        Ok(Some(Frame::Message(self.buf.split_to(total).freeze())))
    }

    /// Finds the end of the head (after the empty line) of the message at the front, resuming
    /// the scan at `self.scanned`. Accepts CRLF CRLF and bare-LF variants.
    fn find_head_end(&mut self) -> Option<usize> {
        let buf = &self.buf[..];
        let mut pos = self.scanned;
        while let Some(off) = buf
            .get(pos..)
            .and_then(|r| r.iter().position(|&b| b == b'\n'))
        {
            let nl = pos + off;
            match (buf.get(nl + 1), buf.get(nl + 2)) {
                (Some(b'\n'), _) => return Some(nl + 2),
                (Some(b'\r'), Some(b'\n')) => return Some(nl + 3),
                // Not enough bytes yet to decide: rescan from this line end next time.
                (None, _) | (Some(b'\r'), None) => {
                    self.scanned = nl;
                    return None;
                }
                _ => pos = nl + 1,
            }
        }
        self.scanned = buf.len();
        None
    }
}

/// Reads Content-Length (or compact `l`) from a head. Several headers must agree.
fn content_length(head: &[u8]) -> Result<usize, FramingError> {
    let mut found: Option<usize> = None;
    let mut lines = head.split(|&b| b == b'\n').peekable();
    let _start_line = lines.next();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = trim(line.get(..colon).unwrap_or(&[]));
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let mut value: Vec<u8> = trim(line.get(colon + 1..).unwrap_or(&[])).to_vec();
        // A folded value continues on lines starting with SP/HTAB.
        while let Some(next) = lines.peek() {
            if next.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                let next = next.strip_suffix(b"\r").unwrap_or(next);
                value.extend_from_slice(trim(next));
                lines.next();
            } else {
                break;
            }
        }
        let text = String::from_utf8_lossy(&value).into_owned();
        if value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
            return Err(FramingError::BadContentLength(
                text.chars().take(40).collect(),
            ));
        }
        let n: usize = text
            .parse()
            .map_err(|_| FramingError::BadContentLength(text.clone()))?;
        if n > MAX_BODY {
            return Err(FramingError::BodyTooLarge(n));
        }
        if found.is_some_and(|prev| prev != n) {
            return Err(FramingError::BadContentLength(
                "several different values".into(),
            ));
        }
        found = Some(n);
    }
    found.ok_or(FramingError::MissingContentLength)
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\
l: 5\r\n\r\nhello";

    #[test]
    fn two_messages_in_one_read() {
        let mut f = StreamFramer::new();
        let mut two = REQ.to_vec();
        two.extend_from_slice(REQ);
        f.push(&two);
        assert_eq!(f.next_message().unwrap().as_deref(), Some(REQ));
        assert_eq!(f.next_message().unwrap().as_deref(), Some(REQ));
        assert_eq!(f.next_message().unwrap(), None);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn byte_by_byte() {
        let mut f = StreamFramer::new();
        for (i, b) in REQ.iter().enumerate() {
            assert_eq!(f.next_message().unwrap(), None, "early at {i}");
            f.push(&[*b]);
        }
        assert_eq!(f.next_message().unwrap().as_deref(), Some(REQ));
    }

    #[test]
    fn keepalives() {
        let mut f = StreamFramer::new();
        f.push(b"\r\n\r\n");
        assert_eq!(f.next_frame().unwrap(), Some(Frame::Ping));
        f.push(b"\r\n");
        assert_eq!(f.next_frame().unwrap(), None, "could still become a ping");
        f.push(b"\r\n");
        assert_eq!(f.next_frame().unwrap(), Some(Frame::Ping));
        f.push(b"\r\n");
        f.push(REQ);
        assert_eq!(f.next_frame().unwrap(), Some(Frame::Pong));
        assert_eq!(
            f.next_frame().unwrap(),
            Some(Frame::Message(Bytes::from_static(REQ)))
        );
    }

    #[test]
    fn errors_are_fatal() {
        let mut f = StreamFramer::new();
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n");
        assert_eq!(f.next_message(), Err(FramingError::MissingContentLength));
        f.push(REQ);
        assert_eq!(f.next_message(), Err(FramingError::MissingContentLength));

        let mut f = StreamFramer::new();
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 65537\r\n\r\n");
        assert_eq!(f.next_message(), Err(FramingError::BodyTooLarge(65537)));

        let mut f = StreamFramer::new();
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n");
        assert!(matches!(
            f.next_message(),
            Err(FramingError::BadContentLength(_))
        ));

        let mut f = StreamFramer::new();
        let big = vec![b'a'; MAX_HEAD + 1];
        f.push(&big);
        assert_eq!(f.next_message(), Err(FramingError::HeadTooLarge));
    }

    #[test]
    fn lf_only_and_folded_length() {
        let mut f = StreamFramer::new();
        f.push(b"BYE sip:a@b SIP/2.0\nContent-Length:\n 2\n\nokNEXT");
        assert_eq!(
            f.next_message().unwrap().as_deref(),
            Some(&b"BYE sip:a@b SIP/2.0\nContent-Length:\n 2\n\nok"[..])
        );
        assert_eq!(f.buffered(), 4);
    }
}
