//! Provisioning: identifying the calling phone from what it says about itself (never its IP),
//! PIN/admin-code hashing and verification, and binding a phone to a user.
//!
//! The binding itself is one store transaction ([`crate::store::Store::bind_device`]); this
//! module owns what comes before it: who is calling ([`identify`]) and whether the digits typed
//! prove the right to bind ([`secret`]), and the `#Tag#` patterns of the universal templates
//! ([`templates`]), and which resync NOTIFY a phone understands ([`resync`]).

pub mod identify;
pub mod resync;
pub mod secret;
pub mod templates;

pub use crate::store::AuthMethod;
pub use identify::{identify, DeviceIdentity};
pub use secret::{
    hash_secret, validate_admin_code, validate_pin, verify_secret, verify_secret_async, SecretError,
};
