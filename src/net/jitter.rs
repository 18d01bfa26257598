//! Jitter for retries that many clients would otherwise make in step
//! (reconnects, re-authentication): fractions in `0.0..1.0` from a hasher
//! seeded by the OS.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// Jitter fractions seeded from the OS per pool (and per re-authenticating
/// connection), so many clients started together do not reconnect, or
/// re-authenticate, in step.
pub(crate) struct Jitter {
    state: std::collections::hash_map::RandomState,
    counter: AtomicU64,
}

impl Jitter {
    pub(crate) fn from_os() -> Jitter {
        Jitter {
            state: std::collections::hash_map::RandomState::new(),
            counter: AtomicU64::new(0),
        }
    }

    /// The next fraction in `0.0..1.0`.
    pub(crate) fn next_fraction(&self) -> f64 {
        let mut hasher = self.state.build_hasher();
        hasher.write_u64(self.counter.fetch_add(1, Ordering::Relaxed));
        (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
    }
}
