//! Media: SDP offer/answer (RFC 3264), RTP packets (RFC 3550), G.711, drift-free pacing, and DTMF
//! from RFC 4733 events, SIP INFO bodies and in-band tones. All sans-IO; sockets live in
//! [`crate::server`].
//!
//! | module | owns |
//! |---|---|
//! | [`g711`] | mu-law / A-law conversion (ITU-T G.711, G.191 conventions) and the [`g711::Codec`] enum |
//! | [`rtp`] | building and parsing RTP packets (RFC 3550 §5.1), 16-bit sequence arithmetic |
//! | [`pacing`] | drift-free packet deadlines for the 20 ms send clock |
//! | [`playout`] | a queue of pre-encoded prompts cut into one payload per packet |
//! | [`sdp`] | parsing remote SDP, offer/answer negotiation (RFC 3264), writing our SDP (RFC 4566) |
//! | [`session`] | one call's media as a state machine: packets due, datagrams received, digits, inactivity |
//! | [`dtmf`] | digits from RFC 4733 events, SIP INFO bodies and in-band tones (ITU-T Q.24) |

pub mod dtmf;
pub mod g711;
pub mod pacing;
pub mod playout;
pub mod rtp;
pub mod sdp;
pub mod session;
