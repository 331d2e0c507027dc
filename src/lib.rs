//! selfprov: a self-provisioning IVR engine.
//!
//! A new desk phone dials the IVR extension; selfprov answers as a SIP user agent, plays prompts
//! over RTP, collects DTMF (a user or self-provisioning ID, then a PIN or an admin code), and binds
//! the phone to the user: the phone's line 1 becomes the user's primary extension.
//!
//! The protocol cores are sans-IO state machines (events in, actions out); [`server`] is the thin
//! tokio layer that owns sockets and timers. Module map:
//!
//! | module | owns |
//! |---|---|
//! | [`sip`] | SIP message parsing/serialisation, stream framing, transactions, dialogs, the UA endpoint core |
//! | [`media`] | SDP offer/answer, RTP packets, G.711, drift-free pacing, DTMF (RFC 4733, SIP INFO, in-band) |
//! | [`langpack`] | the prompt catalogue and language packs: decode, resample, encode once at load |
//! | [`ivr`] | the IVR dialogue state machine |
//! | [`provisioning`] | identifying the calling phone, secrets (argon2), binding a phone to a user |
//! | [`pbx`] | call-control connectors (Kamailio, Asterisk realtime, webhook): the outbox's events, their delivery, `pbx sync` |
//! | [`phoneprov`] | per-vendor phone configuration files: the neutral view, templates, file-name routing |
//! | [`store`] | the persistent store (SQLite by default) and its migrations |
//! | [`config`] | the TOML configuration with its documented defaults |
//! | [`server`] | the tokio runtime layer: SIP transports, RTP sockets, call tasks |
//! | [`api`] | the admin REST API (`/api/v1`, bearer tokens, OpenAPI) and `GET /metrics` |
//! | [`metrics`] | the process-wide Prometheus metrics (`GET /metrics` on the admin listener) |
//! | [`cli`] | the `selfprov` command line |

pub mod api;
pub mod cli;
pub mod config;
pub mod ivr;
pub mod langpack;
pub mod media;
pub mod metrics;
pub mod pbx;
pub mod phoneprov;
pub mod provisioning;
pub mod server;
pub mod sip;
pub mod store;
