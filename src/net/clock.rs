//! The only place in the crate that reads the wall clock or the monotonic
//! clock. The engine gets time passed in; the driver asks this module.

use std::time::Instant;

/// The current monotonic instant.
#[allow(clippy::disallowed_methods)]
pub(crate) fn now() -> Instant {
    Instant::now()
}
