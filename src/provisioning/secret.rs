//! PINs and the administrator's authentication code: validation, argon2id hashing (PHC strings)
//! and constant-time verification.
//!
//! Hashing and verifying cost tens of milliseconds of CPU and about 19 MiB of memory by design
//! (argon2id defaults, OWASP's minimum): async callers run them with [`run_hashing`], on
//! threads of their own at a low scheduling priority ([`verify_secret_async`] does). Secrets are
//! never logged and never put in errors.
//!
//! Why not tokio's blocking pool: its threads run at the runtime's priority, so a burst of PIN
//! checks (an admin's row of phones, or someone guessing) competes on equal terms with the
//! threads that pace RTP and answer SIP. At nice 10 the scheduler gives the runtime nearly all
//! of a core whenever it has work (weight 110 against 1024 at nice 0), and a PIN check takes
//! the time left over. The threads are few (one per core), so a flood of PIN attempts queues
//! instead of multiplying threads: each caller's check waits, nothing else does. (At the bench's
//! 2 checks a second, about a tenth of a core, the RTP figures did not move either way:
//! `docs/performance.md`, notify phase.)

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use std::sync::OnceLock;
use subtle::ConstantTimeEq;

/// Longest PIN or admin code accepted (digits typed on a keypad).
pub const MAX_SECRET_DIGITS: usize = 20;

/// Why a PIN or code was refused. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} must be digits 0-9 only")]
    NotDigits { what: &'static str },
    #[error("{what} must be at most {MAX_SECRET_DIGITS} digits")]
    TooLong { what: &'static str },
    #[error("hashing failed: {0} (the system random source may be unavailable)")]
    Hash(String),
}

fn validate_digits(what: &'static str, s: &str) -> Result<(), SecretError> {
    if s.is_empty() {
        return Err(SecretError::Empty { what });
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SecretError::NotDigits { what });
    }
    if s.len() > MAX_SECRET_DIGITS {
        return Err(SecretError::TooLong { what });
    }
    Ok(())
}

/// A user's PIN: 1 to 20 digits.
pub fn validate_pin(pin: &str) -> Result<(), SecretError> {
    validate_digits("the PIN", pin)
}

/// The administrator's authentication code: 1 to 20 digits (an empty configured code means
/// "no admin code" and is handled by the config, not here).
pub fn validate_admin_code(code: &str) -> Result<(), SecretError> {
    validate_digits("the admin code", code)
}

/// Hashes a secret with argon2id and a fresh random salt; returns the PHC string
/// (`$argon2id$v=19$m=19456,t=2,p=1$...`). CPU-heavy: see the module doc.
pub fn hash_secret(secret: &str) -> Result<String, SecretError> {
    Argon2::default()
        .hash_password(secret.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| SecretError::Hash(e.to_string()))
}

/// True when `candidate` matches `stored`: an argon2 PHC string (verified with the parameters
/// it records), or a plain configured admin code (compared in constant time). An empty stored
/// value or an empty candidate never matches, and a malformed hash never matches.
pub fn verify_secret(stored: &str, candidate: &str) -> bool {
    if stored.is_empty() || candidate.is_empty() {
        return false;
    }
    if stored.starts_with("$argon2") {
        return Argon2::default()
            .verify_password(candidate.as_bytes(), stored)
            .is_ok();
    }
    // Plain code from the config. `ct_eq` on slices of different lengths returns false at once:
    // only the length leaks, which a keypad code's length hardly protects anyway.
    bool::from(stored.as_bytes().ct_eq(candidate.as_bytes()))
}

/// [`verify_secret`] on the hashing threads ([`run_hashing`]). A check that could not run counts
/// as a mismatch.
pub async fn verify_secret_async(stored: String, candidate: String) -> bool {
    run_hashing(move || verify_secret(&stored, &candidate))
        .await
        .unwrap_or(false)
}

/// Nice value of the hashing threads (0 is normal, 19 the lowest).
pub const HASHING_NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads: as many as cores, at [`HASHING_NICE`], started on first use.
fn hashing_pool() -> &'static std::sync::mpsc::Sender<Job> {
    static POOL: OnceLock<std::sync::mpsc::Sender<Job>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        for i in 0..n {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("selfprov-hash-{i}"))
                .spawn(move || {
                    lower_this_thread_priority();
                    loop {
                        // A poisoned lock only means another hashing thread panicked while
                        // waiting: the receiver inside is intact.
                        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a hashing thread");
            }
        }
        tx
    })
}

/// Sets the calling thread's nice value to [`HASHING_NICE`] (Linux: nice is per thread). A
/// failure is logged once and leaves the thread at normal priority.
fn lower_this_thread_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take no pointers; they act on this thread only.
        let r = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, HASHING_NICE)
        };
        if r != 0 {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    error = %std::io::Error::last_os_error(),
                    "could not lower the priority of the PIN hashing threads: PIN checks will \
                     compete with call media for the CPU"
                )
            });
        }
    }
}

/// Runs `f` (argon2 hashing or verification) on the hashing threads and waits for it without
/// blocking the async worker. `None` if it could not run (it panicked, or the threads could not
/// be started).
pub async fn run_hashing<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r.ok());
    });
    if hashing_pool().send(job).is_err() {
        return None;
    }
    rx.await.ok().flatten()
}

/// Spends the same work as verifying a real PIN, for a caller whose user does not exist or has
/// no PIN, so response timing does not tell which user IDs exist. Always false.
pub fn verify_against_dummy(candidate: &str) -> bool {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    if let Some(phc) = DUMMY
        .get_or_init(|| hash_secret("00000000000000000000").ok())
        .as_deref()
    {
        let _ = verify_secret(phc, candidate);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hashing work runs on the low-priority threads, gives its result back, and a job that
    /// panics gives `None` without taking the threads down.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_are_niced_and_survive_a_panic() {
        let nice = run_hashing(|| {
            // SAFETY: no pointers; this thread only.
            unsafe {
                *libc::__errno_location() = 0;
                libc::getpriority(libc::PRIO_PROCESS, libc::syscall(libc::SYS_gettid) as _)
            }
        })
        .await;
        assert!(
            nice.is_some_and(|n| n >= HASHING_NICE),
            "nice of a hashing thread: {nice:?}"
        );
        let name = run_hashing(|| std::thread::current().name().map(str::to_owned)).await;
        assert!(
            name.flatten()
                .is_some_and(|n| n.starts_with("selfprov-hash-")),
            "not on a hashing thread"
        );
        assert_eq!(run_hashing(|| -> u8 { panic!("boom") }).await, None);
        let phc = run_hashing(|| hash_secret("4321")).await.unwrap().unwrap();
        assert!(verify_secret_async(phc.clone(), "4321".into()).await);
        assert!(!verify_secret_async(phc, "1234".into()).await);
    }

    #[test]
    fn hash_is_argon2id_phc_and_verifies() {
        let phc = hash_secret("123456").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
        assert!(!phc.contains("123456"));
        assert!(verify_secret(&phc, "123456"));
        assert!(!verify_secret(&phc, "123457"));
        assert!(!verify_secret(&phc, "12345"));
        assert!(!verify_secret(&phc, ""));
        // Fresh salt each time.
        assert_ne!(phc, hash_secret("123456").unwrap());
    }

    #[test]
    fn plain_codes_compare_exactly() {
        assert!(verify_secret("4711", "4711"));
        assert!(!verify_secret("4711", "47110"));
        assert!(!verify_secret("4711", "471"));
        assert!(!verify_secret("4711", "4712"));
        // No configured code: nothing matches, not even nothing.
        assert!(!verify_secret("", ""));
        assert!(!verify_secret("", "0"));
    }

    #[test]
    fn malformed_hash_never_matches() {
        assert!(!verify_secret("$argon2id$garbage", "1234"));
        assert!(!verify_secret("$argon2id$v=19$m=19456,t=2,p=1$", "1234"));
    }

    #[test]
    fn pin_validation() {
        assert!(validate_pin("0").is_ok());
        assert!(validate_pin("12345678901234567890").is_ok());
        assert_eq!(
            validate_pin(""),
            Err(SecretError::Empty { what: "the PIN" })
        );
        assert_eq!(
            validate_pin("123456789012345678901"),
            Err(SecretError::TooLong { what: "the PIN" })
        );
        assert_eq!(
            validate_pin("12a4"),
            Err(SecretError::NotDigits { what: "the PIN" })
        );
        assert_eq!(
            validate_pin("12 4"),
            Err(SecretError::NotDigits { what: "the PIN" })
        );
        assert_eq!(
            validate_pin("١٢٣"),
            Err(SecretError::NotDigits { what: "the PIN" })
        );
        assert!(validate_admin_code("99").is_ok());
        assert!(validate_admin_code("*9").is_err());
        // Errors never echo the secret.
        assert!(!validate_pin("12a4")
            .unwrap_err()
            .to_string()
            .contains("12a4"));
    }

    #[tokio::test]
    async fn async_verify_and_dummy() {
        let phc = hash_secret("2468").unwrap();
        assert!(verify_secret_async(phc.clone(), "2468".into()).await);
        assert!(!verify_secret_async(phc, "2469".into()).await);
        assert!(!verify_against_dummy("00000000000000000000"));
    }
}
