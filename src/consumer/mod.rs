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
mod config;
mod consumed;
#[cfg_attr(not(feature = "tokio-runtime"), allow(dead_code))]
mod decode;
#[cfg(feature = "tokio-runtime")]
mod fetcher;
mod properties;
#[cfg(feature = "tokio-runtime")]
mod reader;

pub use crate::group::{ConsumerGroupMetadata, OffsetToCommit};
pub use assignor::{Assignor, GroupMember, RebalanceProtocol};
pub use config::{AutoOffsetReset, IsolationLevel, ReaderConfig, StartOffset};
pub use consumed::ConsumedRecord;
#[cfg(feature = "tokio-runtime")]
pub use reader::PartitionReader;
