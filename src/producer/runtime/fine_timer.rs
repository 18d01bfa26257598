//! The producer task's timer for deadlines that set its latency (linger
//! ends, retry backoffs), kept to the microsecond.
//!
//! The runtime's timers fire on millisecond ticks: a task that sleeps until
//! a linger's end wakes up to a millisecond after it, a fifth of a 5 ms
//! linger. On Linux the task arms a timerfd instead, which the runtime's own
//! event loop watches like a socket: no thread of its own and no wake-up
//! from another thread, one system call when the deadline moves and one
//! when it fires. Elsewhere, or if the timerfd cannot be made, [`FineTimer::new`]
//! gives `None` and the task sleeps on the runtime's timer.

use std::time::Instant;

/// One task's fine timer: armed for one deadline at a time.
pub(crate) struct FineTimer {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
    /// The deadline the timer is armed for (`None`: disarmed or fired).
    armed: Option<Instant>,
}

impl FineTimer {
    /// A timer in the current runtime's event loop; `None` where there is
    /// none to be had.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn new() -> Option<FineTimer> {
        use rustix::time::{TimerfdClockId, TimerfdFlags, timerfd_create};
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )
        .ok()?;
        // The safe constructor, deprecated in recent tokio for descriptors
        // that could be closed or replaced while registered (its successor
        // is `unsafe`): an `OwnedFd` moved in here and never given out is
        // the case that is sound.
        #[allow(deprecated)]
        let fd = tokio::io::unix::AsyncFd::with_interest(fd, tokio::io::Interest::READABLE).ok()?;
        Some(FineTimer { fd, armed: None })
    }

    /// No fine timer on this platform.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub(crate) fn new() -> Option<FineTimer> {
        None
    }

    /// Arms the timer for `deadline` (read against `now`), unless it is
    /// armed for it already. Returns whether it is armed: if the system
    /// refuses, the caller sleeps on the runtime's timer instead.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn arm(&mut self, now: Instant, deadline: Instant) -> bool {
        use rustix::time::{Itimerspec, TimerfdTimerFlags, Timespec, timerfd_settime};
        if self.armed == Some(deadline) {
            return true;
        }
        // A relative time: the timerfd's clock and `Instant` need not share
        // an origin. Zero would disarm it, so a deadline come already is a
        // nanosecond away.
        let after = deadline.saturating_duration_since(now);
        let value = Timespec {
            tv_sec: i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(after.subsec_nanos()).max(i64::from(after.is_zero())),
        };
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: value,
        };
        let armed = timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &spec).is_ok();
        self.armed = armed.then_some(deadline);
        armed
    }

    /// No fine timer on this platform: never armed.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub(crate) fn arm(&mut self, _now: Instant, _deadline: Instant) -> bool {
        false
    }

    /// Waits until the armed deadline passes. Pending for ever if the timer
    /// is not armed.
    pub(crate) async fn fired(&mut self) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        loop {
            let Ok(mut ready) = self.fd.readable().await else {
                return std::future::pending().await;
            };
            let mut expirations = [0u8; 8];
            match rustix::io::read(self.fd.get_ref(), &mut expirations) {
                Ok(_) => {
                    self.armed = None;
                    return;
                }
                Err(rustix::io::Errno::AGAIN) => ready.clear_ready(),
                Err(_) => return std::future::pending().await,
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        std::future::pending().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;
    use std::time::Duration;

    #[tokio::test]
    async fn fires_at_its_deadline_and_never_before() {
        let Some(mut timer) = FineTimer::new() else {
            return;
        };
        for micros in [0, 300, 1300, 2700] {
            let now = clock::now();
            let deadline = now + Duration::from_micros(micros);
            assert!(timer.arm(now, deadline));
            tokio::time::timeout(Duration::from_secs(5), timer.fired())
                .await
                .expect("fired");
            assert!(clock::now() >= deadline);
        }
    }

    #[tokio::test]
    async fn armed_again_it_fires_at_the_new_deadline() {
        let Some(mut timer) = FineTimer::new() else {
            return;
        };
        let now = clock::now();
        assert!(timer.arm(now, now + Duration::from_secs(3600)));
        let near = now + Duration::from_millis(2);
        assert!(timer.arm(now, near));
        tokio::time::timeout(Duration::from_secs(5), timer.fired())
            .await
            .expect("the nearer deadline replaced the far one");
        assert!(clock::now() >= near);
    }
}
