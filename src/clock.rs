//! The only place in the crate that reads the wall clock or the monotonic
//! clock. The engine gets time passed in; the driver asks this module.

use std::time::Instant;

/// The current monotonic instant.
#[allow(clippy::disallowed_methods)]
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// Milliseconds since the Unix epoch (record timestamps); 0 if the system
/// clock is before 1970.
pub(crate) fn unix_millis() -> i64 {
    unix_micros() / 1000
}

/// Microseconds since the Unix epoch; 0 if the system clock is before 1970.
#[allow(clippy::disallowed_methods)]
pub(crate) fn unix_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
