//! See [`crate::sip`].
