//! Reading from Kafka: a [`PartitionReader`] that reads assigned partitions
//! from chosen offsets (read_committed by default), and what a consumer
//! knows about its group, which a transactional producer needs to commit
//! offsets in a transaction.
//!
//! ```text
//!  PartitionReader (reader)   assignment, positions, start offsets, retries
//!        │ one Fetch per broker, all partitions it serves
//!        ▼
//!  Fetcher (fetcher)          a broker connection; Fetch and ListOffsets
//!        │ records bytes, aborted transactions, watermarks
//!        ▼
//!  decode                     batches → ConsumedRecord, skipping what the
//!        │                    position and the isolation level rule out
//!        ▼
//!  aborted                    the read_committed filter (pure)
//! ```
//!
//! The reader does not join a consumer group; a group consumer can later
//! be built from the same fetcher, decoder and filter, with group
//! membership deciding the assignment.

// Without the tokio layer only the tests use the sans-IO decoding path.
#[cfg_attr(not(feature = "tokio-runtime"), allow(dead_code))]
mod aborted;
mod assignor;
mod consumed;
#[cfg(feature = "tokio-runtime")]
mod coordinator;
#[cfg_attr(not(feature = "tokio-runtime"), allow(dead_code))]
mod decode;
// Fetch sessions (KIP-227); only the tokio fetch path uses them.
#[cfg_attr(not(feature = "tokio-runtime"), allow(dead_code))]
mod fetch_session;
#[cfg(feature = "tokio-runtime")]
mod fetcher;
mod group_config;
#[cfg(feature = "tokio-runtime")]
mod group_consumer;
#[cfg(feature = "tokio-runtime")]
mod heartbeat;
#[cfg(feature = "tokio-runtime")]
mod join_round;
#[cfg_attr(not(feature = "tokio-runtime"), allow(dead_code))]
mod membership;
#[cfg(feature = "tokio-runtime")]
mod prefetch;
mod properties;
#[cfg(feature = "tokio-runtime")]
mod reader;
mod reader_config;
mod rebalance;
#[cfg(feature = "tokio-runtime")]
mod record_queue;

pub use crate::group::{ConsumerGroupMetadata, OffsetToCommit};
pub use assignor::{Assignor, GroupMember, RebalanceProtocol};
pub use consumed::ConsumedRecord;
pub use group_config::ConsumerConfig;
#[cfg(feature = "tokio-runtime")]
pub use group_consumer::{Consumer, ConsumerBuilder};
#[cfg(feature = "tokio-runtime")]
pub use reader::PartitionReader;
pub use reader_config::{AutoOffsetReset, IsolationLevel, ReaderConfig, StartOffset};
pub use rebalance::{RebalanceContext, RebalanceListener, TopicPartition};
