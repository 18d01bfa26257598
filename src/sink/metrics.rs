//! The counters of a [`Sink`](super::Sink) and their [`SinkMetrics`]
//! snapshot. The counters are atomics updated as records settle; the same
//! moments feed the `metrics` facade (see [`crate::telemetry`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::breaker::BreakerState;

/// A snapshot of a sink's counters, from [`Sink::metrics`](super::Sink::metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SinkMetrics {
    /// Records delivered.
    pub sent: u64,
    /// Records that failed for good after they were accepted (after any
    /// retries, dead-lettered or not).
    pub failed: u64,
    /// Sends refused at the call: serialization errors, an open breaker, a
    /// full tracker or producer buffer. Nothing was sent for them.
    pub refused: u64,
    /// Key and value bytes of the delivered records.
    pub bytes_sent: u64,
    /// Sends tried again by the sink's retry policy.
    pub retries: u64,
    /// Mean time from `send` to delivery of the delivered records.
    pub avg_latency: Duration,
    /// Longest such time.
    pub max_latency: Duration,
    /// How many times the breaker opened.
    pub breaker_trips: u64,
    /// The breaker's state; `None` without a breaker.
    pub breaker_state: Option<BreakerState>,
    /// Records written to the dead-letter topic.
    pub dead_lettered: u64,
    /// Records whose outcome is not known yet.
    pub pending: u64,
    /// Finished entries the delivery tracker dropped to make room.
    pub evicted: u64,
    /// The text of the latest error.
    pub last_error: Option<String>,
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub refused: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub retries: AtomicU64,
    pub latency_total_us: AtomicU64,
    pub latency_max_us: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

impl Counters {
    pub fn delivered(&self, bytes: usize, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent
            .fetch_add(u64::try_from(bytes).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.latency_total_us.fetch_add(us, Ordering::Relaxed);
        self.latency_max_us.fetch_max(us, Ordering::Relaxed);
    }

    pub fn error(&self, message: String) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
    }

    /// The snapshot, with the breaker's and the tracker's figures.
    pub fn snapshot(
        &self,
        breaker: Option<(u64, BreakerState)>,
        pending: usize,
        evicted: u64,
    ) -> SinkMetrics {
        let sent = self.sent.load(Ordering::Relaxed);
        let total = self.latency_total_us.load(Ordering::Relaxed);
        SinkMetrics {
            sent,
            failed: self.failed.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            avg_latency: Duration::from_micros(total.checked_div(sent).unwrap_or(0)),
            max_latency: Duration::from_micros(self.latency_max_us.load(Ordering::Relaxed)),
            breaker_trips: breaker.map_or(0, |(trips, _)| trips),
            breaker_state: breaker.map(|(_, state)| state),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            pending: u64::try_from(pending).unwrap_or(u64::MAX),
            evicted,
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_average_and_maximum() {
        let c = Counters::default();
        assert_eq!(c.snapshot(None, 0, 0).avg_latency, Duration::ZERO);
        c.delivered(10, Duration::from_millis(2));
        c.delivered(5, Duration::from_millis(6));
        c.error("boom".into());
        let m = c.snapshot(Some((1, BreakerState::Open)), 3, 2);
        assert_eq!((m.sent, m.bytes_sent), (2, 15));
        assert_eq!(m.avg_latency, Duration::from_millis(4));
        assert_eq!(m.max_latency, Duration::from_millis(6));
        assert_eq!(m.breaker_state, Some(BreakerState::Open));
        assert_eq!((m.breaker_trips, m.pending, m.evicted), (1, 3, 2));
        assert_eq!(m.last_error.as_deref(), Some("boom"));
    }
}
