//! Connection failures are logged at WARN, as librdkafka logs them: the
//! first failure to reach an address, then at most one line per
//! [`WARN_EVERY`] for as long as it keeps failing, counting the failures
//! left out in between (those go to DEBUG). A success resets the address,
//! so the next failure is reported at once again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a broker that keeps failing is logged at WARN.
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(30);

/// Addresses tracked at most; past it the table starts over (a client
/// talks to a handful of brokers, so this only bounds a pathological case).
const MAX_TRACKED: usize = 1024;

/// Per address, when it was last logged at WARN and how many failures were
/// not logged at WARN since.
#[derive(Debug, Default)]
pub(crate) struct ConnectLog {
    failing: HashMap<String, (Instant, u64)>,
}

/// What to do with one connection failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Report {
    /// Log it at WARN, saying how many failures went unreported before it.
    Warn { suppressed: u64 },
    /// Log it at DEBUG only.
    Quiet,
}

impl ConnectLog {
    /// A failure to reach `addr` at `now`.
    pub(crate) fn failed(&mut self, addr: &str, now: Instant) -> Report {
        if let Some((last, suppressed)) = self.failing.get_mut(addr) {
            if now.saturating_duration_since(*last) < WARN_EVERY {
                *suppressed += 1;
                return Report::Quiet;
            }
            let report = Report::Warn {
                suppressed: *suppressed,
            };
            *last = now;
            *suppressed = 0;
            return report;
        }
        if self.failing.len() >= MAX_TRACKED {
            self.failing.clear();
        }
        self.failing.insert(addr.to_string(), (now, 0));
        Report::Warn { suppressed: 0 }
    }

    /// `addr` was reached: its next failure is reported at once.
    pub(crate) fn reached(&mut self, addr: &str) {
        self.failing.remove(addr);
    }
}

static LOG: Mutex<Option<ConnectLog>> = Mutex::new(None);

/// Logs a failure to connect to `addr`, rate-limited per address.
pub(crate) fn failed(addr: &str, error: &crate::error::Error) {
    let report = LOG
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(ConnectLog::default)
        .failed(addr, crate::clock::now());
    match report {
        Report::Warn { suppressed: 0 } => {
            tracing::warn!(%addr, %error, "cannot connect to broker");
        }
        Report::Warn { suppressed } => {
            tracing::warn!(
                %addr, %error, suppressed,
                "cannot connect to broker (still failing; {suppressed} similar failure(s) not logged at WARN since)"
            );
        }
        Report::Quiet => tracing::debug!(%addr, %error, "cannot connect to broker"),
    }
}

/// Records that `addr` was reached.
pub(crate) fn reached(addr: &str) {
    if let Some(log) = LOG.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        log.reached(addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_failure_warns_then_once_per_interval_until_reached() {
        let mut log = ConnectLog::default();
        let t0 = crate::clock::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(log.failed("a:1", at(0)), Report::Warn { suppressed: 0 });
        // Another broker is reported on its own.
        assert_eq!(log.failed("b:1", at(10)), Report::Warn { suppressed: 0 });
        assert_eq!(log.failed("a:1", at(100)), Report::Quiet);
        assert_eq!(log.failed("a:1", at(29_999)), Report::Quiet);
        assert_eq!(
            log.failed("a:1", at(30_000)),
            Report::Warn { suppressed: 2 }
        );
        assert_eq!(log.failed("a:1", at(30_001)), Report::Quiet);
        // Reached again: the next failure is news.
        log.reached("a:1");
        assert_eq!(
            log.failed("a:1", at(30_002)),
            Report::Warn { suppressed: 0 }
        );
    }
}
