//! The sans-IO producer engine: everything that decides *what* to send,
//! with no sockets, no tasks, no clock reads and no global randomness. Time
//! comes in as an argument and randomness from seeded generators, so every
//! run can be replayed.
//!
//! Comments that cite "Scenario N" refer to the numbered list of failures
//! the producer must survive, `docs/fault-scenarios.md`.
//!
//! | file | owns |
//! |---|---|
//! | `producer/` | the engine: inputs, outputs, waiting records, drain, in-flight requests, outcomes, identity (one file per job) |
//! | `accumulator` | per-partition batch queues, readiness, expiry |
//! | `in_flight_orders` | which of a partition's batches are in flight |
//! | `idempotence` | producer id and epoch, sequence numbers, what sequence errors mean |
//! | `metadata_cache` | leaders and leader epochs (never backwards), refresh schedule |
//! | `retry` | the retry decision table and backoff with jitter |
//! | `stats` | counters: totals, per partition, per broker |
//! | `topic_table` | a table of topics in name order, also found by a fixed slot |
//! | `txn` | the transactional state machine: coordinator, partitions added, offsets, commit and abort |
//! | `partitioner` | where records go |

// Without the tokio driver nothing drives the engine yet; it still builds
// (that build shows the engine needs no tokio; clippy's disallowed-methods
// rule in clippy.toml is what keeps it free of clock reads).
#![cfg_attr(not(feature = "tokio-runtime"), allow(dead_code, unused_imports))]

pub(crate) mod accumulator;
#[cfg(test)]
mod fixtures;
pub(crate) mod idempotence;
pub(crate) mod in_flight_orders;
pub(crate) mod metadata_cache;
pub mod partitioner;
pub(crate) mod producer;
pub(crate) mod retry;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod sim_scenarios;
pub(crate) mod stats;
#[cfg(test)]
pub(crate) mod sticky_spread;
pub(crate) mod topic_table;
pub(crate) mod txn;
#[cfg(test)]
mod txn_scenarios;

pub use producer::Acks;
pub(crate) use producer::{
    BufferOwner, CompressAt, DeliveredBatch, Engine, EngineConfig, Event, SendFailure, Transmit,
};
pub use stats::{BrokerStats, PartitionStats, ProducerStats};
pub(crate) use txn::{CoordinatorKind, TxnAnswer, TxnOp, TxnRequest};
