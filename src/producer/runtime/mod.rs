//! The producer's runtime: the tokio side of one producer, between the
//! [`Producer`](crate::Producer) handle and the sans-IO engine.
//!
//! - `driver`: the task that owns the engine, turns its transmits into
//!   requests on the broker pool and feeds the answers back;
//! - `dispatch`: the ordered Produce queue of each broker, and the answers
//!   in write order;
//! - `response`: what those tasks report to the driver, on one channel;
//! - `inbox`: the segmented command queue from the handles to the driver,
//!   and when a record wakes the driver (its quiet wait between runs);
//! - `fine_timer`: the driver's timer for deadlines under a second (a
//!   linger's end), to the microsecond where the platform allows;
//! - `buffer_gate`: `buffer_memory` back-pressure on the sending side;
//! - `known_topics`: the topics a waiting `send` hands over at once;
//! - `token_ring`: the driver's table of unsettled records;
//! - `reporter`: where each record's outcome goes (its future, or the
//!   delivery callback and the thread that runs it);
//! - `outbound`: compression of Produce requests on the way out, off the
//!   driver task.
//!
//! Connections come from [`crate::net`]; nothing here opens a socket.
//!
//! Each policy has one owner:
//!
//! | policy | owner | how the others learn it |
//! |---|---|---|
//! | `buffer_memory` | `buffer_gate`: every record is charged before it reaches the driver, in arrival order | the engine runs with `BufferOwner::Caller` (it counts, never holds back); `Producer::stats` reads the gate |
//! | compression placement | the engine's configuration (`CompressAt::Dispatch` for the producer) | `outbound::Outbound::for_engine` reads it; the engine learns wire sizes back |
//! | known topics | the engine's metadata cache | the driver copies the names into `known_topics` after each metadata answer, for `send`'s fast path |
//! | flush | the engine (its flush mark makes every record up to a token ready) | the driver keeps each `flush` caller's token and answers it once those records settled |
//! | close | the driver (its deadline, then `Engine::abort`) | handles see the commands channel close |
//! | when a record wakes the driver | the driver sets each quiet wait (until its next deadline, at most a linger away); the inbox applies it | senders stamp a record with its send instant while the driver waits quietly; the engine appends it as of then |

pub(crate) mod buffer_gate;
pub(crate) mod dispatch;
pub(crate) mod driver;
pub(crate) mod fine_timer;
pub(crate) mod inbox;
pub(crate) mod known_topics;
pub(crate) mod outbound;
pub(crate) mod reporter;
pub(crate) mod response;
pub(crate) mod token_ring;
