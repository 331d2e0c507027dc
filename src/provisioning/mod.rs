//! Provisioning: identifying the calling phone from what it says about itself (never its IP),
//! PIN/admin-code hashing and verification, and binding a phone to a user.
