//! A timer with the kernel's resolution, for the media engine's packet clock.
//!
//! tokio's timer wheel has 1 ms ticks and its driver parks for a whole number of milliseconds
//! counted from whenever it parks, so a sleep ends anywhere in the millisecond after its deadline:
//! up to 1 ms of jitter on every packet sent at the wake-up, which is the whole jitter budget of
//! a media server. A `timerfd` armed with the absolute deadline (`CLOCK_MONOTONIC`, the clock of
//! `Instant` on Linux) makes the reactor wake at the deadline itself. tokio has no such timer and
//! no crate we use offers one that plugs into its reactor, hence these few `libc` calls; where
//! `timerfd` is missing (not Linux, or the call fails) it falls back to tokio's sleep.

use std::time::Instant;

pub struct PreciseTimer {
    inner: Inner,
}

enum Inner {
    #[cfg(target_os = "linux")]
    Fd {
        fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
        /// The same moment as an `Instant` and as CLOCK_MONOTONIC.
        base: (Instant, std::time::Duration),
    },
    Tokio(std::pin::Pin<Box<tokio::time::Sleep>>),
}

impl PreciseTimer {
    /// A disarmed timer. Needs a tokio runtime with the reactor enabled.
    pub fn new() -> PreciseTimer {
        #[cfg(target_os = "linux")]
        if let Some(inner) = Self::timerfd() {
            return PreciseTimer { inner };
        }
        PreciseTimer {
            inner: Inner::Tokio(Box::pin(tokio::time::sleep(std::time::Duration::ZERO))),
        }
    }

    /// True when the kernel timer is in use (false: tokio's, 1 ms resolution).
    pub fn is_precise(&self) -> bool {
        !matches!(self.inner, Inner::Tokio(_))
    }

    #[cfg(target_os = "linux")]
    fn timerfd() -> Option<Inner> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain system calls; the descriptor is owned by the OwnedFd from here on.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let base = (Instant::now(), monotonic_now()?);
        // SAFETY: the OwnedFd owns the descriptor, keeps it open and returns it from as_raw_fd
        // for as long as the AsyncFd holds it.
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE)
        }
        .ok()?;
        Some(Inner::Fd { fd, base })
    }

    /// Arms the timer for `at` (in the past: fires at once), replacing any earlier deadline.
    pub fn set(&mut self, at: Instant) {
        match &mut self.inner {
            #[cfg(target_os = "linux")]
            Inner::Fd { fd, base } => {
                use std::os::fd::AsRawFd;
                let mono = match at.checked_duration_since(base.0) {
                    Some(d) => base.1 + d,
                    None => base.1.saturating_sub(base.0 - at),
                };
                // An all-zero value would disarm the timer: 1 ns is long past.
                let mono = mono.max(std::time::Duration::from_nanos(1));
                let spec = libc::itimerspec {
                    it_interval: libc::timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    },
                    it_value: libc::timespec {
                        tv_sec: mono.as_secs() as libc::time_t,
                        tv_nsec: mono.subsec_nanos() as libc::c_long,
                    },
                };
                // SAFETY: a valid timerfd and a valid itimerspec; the old value is not asked for.
                unsafe {
                    libc::timerfd_settime(
                        fd.as_raw_fd(),
                        libc::TFD_TIMER_ABSTIME,
                        &spec,
                        std::ptr::null_mut(),
                    );
                }
            }
            Inner::Tokio(sleep) => sleep.as_mut().reset(at.into()),
        }
    }

    /// Waits until the deadline last given to [`PreciseTimer::set`] has passed. Cancel-safe.
    pub async fn wait(&mut self) {
        match &mut self.inner {
            #[cfg(target_os = "linux")]
            Inner::Fd { fd, .. } => loop {
                let Ok(mut guard) = fd.readable().await else {
                    return;
                };
                let mut expirations = [0u8; 8];
                // SAFETY: reads at most 8 bytes into an 8-byte buffer.
                let n = unsafe {
                    libc::read(
                        std::os::fd::AsRawFd::as_raw_fd(guard.get_inner()),
                        expirations.as_mut_ptr().cast(),
                        expirations.len(),
                    )
                };
                if n == 8 {
                    return;
                }
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock {
                    guard.clear_ready();
                } else {
                    return;
                }
            },
            Inner::Tokio(sleep) => sleep.as_mut().await,
        }
    }
}

impl Default for PreciseTimer {
    fn default() -> Self {
        PreciseTimer::new()
    }
}

#[cfg(target_os = "linux")]
fn monotonic_now() -> Option<std::time::Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec we own.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (r == 0)
        .then(|| std::time::Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), ts.tv_nsec as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn fires_at_its_deadline_not_before() {
        let mut t = PreciseTimer::new();
        #[cfg(target_os = "linux")]
        assert!(t.is_precise());
        for wait_us in [300u64, 2_700, 15_000] {
            let at = Instant::now() + Duration::from_micros(wait_us);
            t.set(at);
            tokio::time::timeout(Duration::from_secs(5), t.wait())
                .await
                .expect("the timer fires");
            let woke = Instant::now();
            assert!(woke >= at, "{wait_us} us: woke {:?} early", at - woke);
        }
        // A deadline in the past fires at once; a re-armed timer takes the new deadline.
        t.set(Instant::now() - Duration::from_millis(5));
        tokio::time::timeout(Duration::from_secs(1), t.wait())
            .await
            .expect("fires at once");
        t.set(Instant::now() + Duration::from_secs(3600));
        t.set(Instant::now() + Duration::from_millis(10));
        tokio::time::timeout(Duration::from_secs(2), t.wait())
            .await
            .expect("the later set wins");
    }
}
