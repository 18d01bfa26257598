//! The sans-IO producer engine: everything that decides *what* to send,
//! with no sockets, no tasks, no clock reads and no global randomness. Time
//! comes in as an argument and randomness from seeded generators, so every
//! run can be replayed.
//!
//! Today it holds the partitioners; the accumulator, metadata cache,
//! in-flight tracking and retry policy join it with the producer.

pub mod partitioner;
