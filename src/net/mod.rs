//! The tokio layer: sockets, the per-broker connection tasks, and the clock.
//! Nothing outside this module touches a socket or reads the time.

pub(crate) mod clock;
pub(crate) mod connection;
