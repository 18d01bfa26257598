//! The producer's runtime: the tokio side of one producer, between the
//! [`Producer`](crate::Producer) handle and the sans-IO engine.
//!
//! - `driver`: the task that owns the engine, turns its transmits into
//!   requests on the broker pool and feeds the answers back;
//! - `inbox`: the segmented command queue from the handles to the driver;
//! - `buffer_gate`: `buffer_memory` back-pressure on the sending side;
//! - `token_ring`: the driver's table of unsettled records;
//! - `reporter`: where each record's outcome goes (its future, or the
//!   delivery callback and the thread that runs it);
//! - `outbound`: compression of Produce requests on the way out, off the
//!   driver task.
//!
//! Connections come from [`crate::net`]; nothing here opens a socket.

pub(crate) mod buffer_gate;
pub(crate) mod driver;
pub(crate) mod inbox;
pub(crate) mod outbound;
pub(crate) mod reporter;
pub(crate) mod token_ring;
