//! Provisioning: identifying the calling phone from what it says about itself (never its IP),
//! PIN/admin-code hashing and verification, and binding a phone to a user.
//!
//! The binding itself is one store transaction ([`crate::store::Store::bind_device`]); this
//! module owns what comes before it: who is calling ([`identify`]) and whether the digits typed
//! prove the right to bind ([`secret`]).

pub mod identify;
pub mod secret;

pub use crate::store::AuthMethod;
pub use identify::{identify, DeviceIdentity};
pub use secret::{
    hash_secret, validate_admin_code, validate_pin, verify_secret, verify_secret_async, SecretError,
};
