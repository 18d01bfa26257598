//! The connection layer every client shares: the broker pool (one per
//! client instance), the connections it opens (sockets, ApiVersions,
//! pipelined requests with timeouts), reaching the cluster through its
//! bootstrap servers, and the encoding of the transactional requests.
//! Nothing outside this module touches a socket; time is read through
//! [`crate::clock`] alone.

pub(crate) mod bootstrap;
pub(crate) mod connect_log;
pub(crate) mod connection;
pub(crate) mod frame_reader;
pub(crate) mod jitter;
pub(crate) mod open;
pub(crate) mod pool;
pub(crate) mod reauth;
pub(crate) mod sasl;
pub(crate) mod tls;
pub(crate) mod txn_wire;
