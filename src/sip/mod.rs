//! SIP (RFC 3261) as sans-IO state machines.
//!
//! - [`message`]: parsing and serialising requests and responses (hand-written; see
//!   `docs/decisions.md` for why no published parser crate is used).
//! - [`framing`]: splitting a TCP byte stream into messages by Content-Length.
//! - [`transaction`]: server and client transactions with their timers (A..K).
//! - [`dialog`]: dialog state (Call-ID, tags, CSeq, route set, remote target).
//! - [`registrar`]: the REGISTER binding table, guest rules and digest checks the endpoint
//!   drives (RFC 3261 §10.3).
//! - [`route`]: route sets (Record-Route, Path) applied to the requests we send, and their next
//!   hop.
//! - [`trust`]: trusted proxies and the identities they assert (P-Asserted-Identity).
//! - [`endpoint`]: the user-agent core the server drives: datagrams and time in, datagrams to send
//!   and call events out. It never touches a socket or a clock itself.

pub mod dialog;
pub mod digest;
pub mod endpoint;
pub mod framing;
pub mod message;
pub mod registrar;
pub mod route;
pub mod transaction;
pub mod trust;
