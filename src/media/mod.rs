//! Media: SDP offer/answer (RFC 3264), RTP packets (RFC 3550), G.711, drift-free pacing, and DTMF
//! from RFC 4733 events, SIP INFO bodies and in-band tones. All sans-IO; sockets live in
//! [`crate::server`].
