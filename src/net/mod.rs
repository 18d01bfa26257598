//! The tokio layer: sockets, the per-broker connection tasks, the producer's
//! driver task, and the clock. Nothing outside this module touches a socket
//! or reads the time.

pub(crate) mod bootstrap;
pub(crate) mod buffer_gate;
pub(crate) mod clock;
pub(crate) mod compress;
pub(crate) mod connect_log;
pub(crate) mod connection;
pub(crate) mod driver;
pub(crate) mod inbox;
pub(crate) mod pool;
pub(crate) mod reporter;
pub(crate) mod token_ring;
pub(crate) mod txn_wire;
